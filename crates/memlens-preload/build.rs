// Builds the small C part of the recorder (initial-exec TLS, which stable Rust cannot
// declare) and links the library with BIND_NOW so that no lazy symbol resolution ever
// runs inside a hook.
fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    cc::Build::new()
        .file("src/shim.c")
        .flag("-ftls-model=initial-exec")
        .flag("-fvisibility=hidden")
        .opt_level(2)
        .compile("memlens_shim");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-link-lib=dl");
}
