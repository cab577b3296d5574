//! Symbolization against a C program compiled at test time.

use memlens_analysis::Symbolizer;
use memlens_trace::reader::{Module, RawFrame};
use object::{Object, ObjectSymbol};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = r#"#include <stdlib.h>

__attribute__((noinline)) void *make_buffer(int n)
{
    void *p = malloc(n);
    return p;
}

int main(void)
{
    return make_buffer(3) == 0;
}
"#;

/// Compile the demo into a fresh directory; returns the binary's path.
fn compile(tag: &str) -> PathBuf {
    compile_source(tag, "demo", SOURCE)
}

/// Compile `source` as `NAME.c` into a fresh directory with debug information and a
/// build-id; returns the binary's path.
fn compile_source(tag: &str, name: &str, source: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memlens-sym-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let bin = dir.join(name);
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-Wl,--build-id", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("this test needs gcc");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// (ELF virtual address, size) of `name`, and the build-id, read with `object`.
fn symbol_and_build_id(bin: &Path, name: &str) -> ((u64, u64), Vec<u8>) {
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .expect("symbol in the table");
    let build_id = file
        .build_id()
        .unwrap()
        .expect("gcc wrote a build-id")
        .to_vec();
    ((sym.address(), sym.size()), build_id)
}

fn modules(bin: &Path, build_id: Vec<u8>) -> HashMap<u32, Module> {
    let m = Module {
        id: 1,
        path: bin.to_string_lossy().into_owned(),
        build_id,
        load_bias: 0x5555_5555_4000,
        segments: vec![],
        loaded_ns: 0,
        unloaded_ns: None,
    };
    HashMap::from([(1, m)])
}

#[test]
fn return_address_in_a_function_gives_its_name_file_and_line() {
    let bin = compile("ok");
    let ((addr, size), build_id) = symbol_and_build_id(&bin, "make_buffer");
    assert!(size > 8);
    assert_eq!(
        memlens_analysis::symbolize::read_build_id(&bin).unwrap(),
        build_id
    );

    let mut sym = Symbolizer::new(&modules(&bin, build_id));
    let raw = RawFrame {
        module: 1,
        offset: addr + size / 2,
    };
    let frames = sym.frame(raw).to_vec();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let f = &frames[0];
    assert_eq!(f.function, "make_buffer");
    assert_eq!(f.file_name(), Some("demo.c"));
    assert!(matches!(f.line, Some(3..=7)), "{f:?}");
    assert_eq!(f.module.as_deref(), Some("demo"));
    assert!(!f.inlined);
    assert!(sym.warnings().is_empty(), "{:?}", sym.warnings());

    // A stack: unknown-module frame and main.
    let ((main_addr, main_size), _) = symbol_and_build_id(&bin, "main");
    let stack = sym.stack(&[
        raw,
        RawFrame {
            module: 1,
            offset: main_addr + main_size / 2,
        },
        RawFrame {
            module: 0,
            offset: 0x7f00_1234,
        },
    ]);
    let names: Vec<&str> = stack.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, vec!["make_buffer", "main", "0x7f001234"]);
    assert_eq!(stack[2].module, None);

    // A return address is looked up one byte earlier: a call that is the last instruction
    // of make_buffer returns to the first byte of the next function (main, with gcc -O0
    // on x86-64), and must still be attributed to make_buffer.
    if addr + size == main_addr {
        assert_eq!(
            sym.frame(RawFrame {
                module: 1,
                offset: main_addr
            })[0]
                .function,
            "make_buffer"
        );
    }
    std::fs::remove_dir_all(bin.parent().unwrap()).ok();
}

#[test]
fn changed_binary_is_not_symbolized() {
    let bin = compile("mismatch");
    let ((addr, _), _) = symbol_and_build_id(&bin, "make_buffer");
    let mut sym = Symbolizer::new(&modules(&bin, vec![0xde, 0xad, 0xbe, 0xef]));
    let off = addr + 4;
    for _ in 0..2 {
        let f = sym
            .frame(RawFrame {
                module: 1,
                offset: off,
            })
            .to_vec();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].function, format!("demo+{off:#x}"));
        assert_eq!((f[0].file.as_deref(), f[0].line), (None, None));
    }
    let other = sym
        .innermost(&[RawFrame {
            module: 1,
            offset: off + 1,
        }])
        .unwrap();
    assert_eq!(other.function, format!("demo+{:#x}", off + 1));
    assert_eq!(
        sym.warnings(),
        &[format!("{} changed since the trace was recorded (build-id mismatch); its frames are shown as offsets", bin.display())]
    );
    std::fs::remove_dir_all(bin.parent().unwrap()).ok();
}

#[test]
fn missing_binary_is_said_once() {
    let mut sym = Symbolizer::new(&modules(Path::new("/nonexistent/libgone.so"), vec![1, 2]));
    let a = sym
        .frame(RawFrame {
            module: 1,
            offset: 0x1234,
        })
        .to_vec();
    let b = sym
        .frame(RawFrame {
            module: 1,
            offset: 0x5678,
        })
        .to_vec();
    assert_eq!(
        (a[0].function.as_str(), b[0].function.as_str()),
        ("libgone.so+0x1234", "libgone.so+0x5678")
    );
    assert_eq!(sym.warnings().len(), 1);
    assert!(
        sym.warnings()[0].starts_with("/nonexistent/libgone.so no longer exists"),
        "{:?}",
        sym.warnings()
    );
}

/// `prefetch` symbolizes on every core; what it caches must be what one-by-one lookups
/// give. A program of 800 functions, two frames in each: above the parallel threshold.
#[test]
fn parallel_prefetch_gives_the_same_frames_as_one_by_one() {
    let mut src = String::from("#include <stdlib.h>\n");
    for i in 0..800 {
        src.push_str(&format!(
            "__attribute__((noinline)) void *f{i}(void) {{ return malloc({}); }}\n",
            i + 1
        ));
    }
    src.push_str("int main(void) { return f0() == 0; }\n");
    let bin = compile_source("many", "many", &src);
    let mut raws = Vec::new();
    let mut build_id = Vec::new();
    for i in 0..800 {
        let ((addr, size), id) = symbol_and_build_id(&bin, &format!("f{i}"));
        build_id = id;
        raws.push(RawFrame {
            module: 1,
            offset: addr + 2,
        });
        raws.push(RawFrame {
            module: 1,
            offset: addr + size - 1,
        });
    }
    let mods = modules(&bin, build_id);
    let mut parallel = Symbolizer::new(&mods);
    parallel.prefetch(raws.iter().copied());
    let mut serial = Symbolizer::new(&mods);
    for (k, &r) in raws.iter().enumerate() {
        let want = serial.frame(r).to_vec();
        let got = parallel.frame(r).to_vec();
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "frame {k} ({r:?})");
        assert_eq!(want[0].function, format!("f{}", k / 2));
    }
    std::fs::remove_dir_all(bin.parent().unwrap()).ok();
}
