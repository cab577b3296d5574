//! Allocation functions found by symbol: an executable that defines its own malloc is
//! detected at start-up and the reports say so; and `dlsym` under the recorder, which
//! interposes it: `RTLD_NEXT` still answers relative to
//! the calling module (a malloc wrapper loaded after the recorder does not get its own
//! malloc back and recurse; an executable's own malloc forwards to the recorder's), and
//! glibc's malloc taken from its handle, as Python's ctypes does, is recorded. The C cases
//! with memcheck's numbers are in the leak corpus (`dlsym_leaks`).

mod common;

use common::*;
use serde_json::Value;

/// dlsym_next_lib, linked with libdlsym_wrapper.so (found through its RUNPATH).
fn wrapper_program() -> std::path::PathBuf {
    let lib = build(
        "gcc",
        "dlsym_wrapper.c",
        "libdlsym_wrapper.so",
        &[C_FLAGS, &["-shared", "-fPIC"]].concat(),
    );
    let rpath = format!("-Wl,-rpath,{}", lib.parent().unwrap().display());
    build(
        "gcc",
        "dlsym_next_lib.c",
        "dlsym_next_lib",
        &[
            C_FLAGS,
            &["-Wl,--no-as-needed", lib.to_str().unwrap(), &rpath],
        ]
        .concat(),
    )
}

/// A library linked by the program (so loaded after the recorder) defines malloc and free
/// and forwards them with dlsym(RTLD_NEXT): called through its handle, it gets glibc's
/// functions (not its own: that would recurse until the stack overflows) and counts its
/// two calls.
#[test]
fn rtld_next_in_a_library_after_the_recorder() {
    let exe = wrapper_program();
    let r = run_with(&["-q"], &exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "wrapper calls: 2\n");
}

/// An executable that defines malloc and free and forwards them with dlsym(RTLD_NEXT)
/// reaches the recorder's hooks (the next definitions after the executable): both blocks
/// are recorded with the executable's malloc as the allocating function's caller, the
/// unfreed one is definitely lost, and the program ends normally.
#[test]
fn rtld_next_from_the_executable_reaches_the_recorder() {
    let exe = build_c("dlsym_next_exe.c", "dlsym_next_exe");
    let r = run_with(&["-q"], &exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "own malloc forwarded\n");
    let rep = report(&r.only_trace());
    let sites = sites_at(&rep, "malloc");
    let mut sizes: Vec<u64> = sites
        .iter()
        .map(|s| s["bytes_allocated"].as_u64().unwrap())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [4001, 4002]);
    for s in &sites {
        assert!(
            frames(s)[0]["file"]
                .as_str()
                .unwrap()
                .ends_with("dlsym_next_exe.c"),
            "{s}"
        );
    }
    let leaks = leaks_json(&r.only_trace(), &[]);
    assert_eq!(amount(&leaks["summary"]["definitely_lost"]), (4001, 1));
}

/// Python's ctypes takes malloc from glibc's handle: a 12 MiB block allocated through
/// `CDLL("libc.so.6").malloc` and never freed is in the leak check.
#[test]
fn ctypes_malloc_is_recorded() {
    let Some(python) = tool("python3", "python3") else {
        return;
    };
    let script = "import ctypes\n\
                  libc = ctypes.CDLL('libc.so.6')\n\
                  libc.malloc.restype = ctypes.c_void_p\n\
                  libc.malloc(12 * 1024 * 1024)\n\
                  print('allocated')\n";
    // The interpreter itself, not a launcher script (pyenv's shims exec it).
    let exe = std::process::Command::new(&python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = std::path::PathBuf::from(String::from_utf8(exe.stdout).unwrap().trim());
    let r = run_with(&["-q", "--no-follow"], &python, &["-c", script]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "allocated\n");
    let leaks = leaks_json(&r.only_trace(), &["--show-leak-kinds=all"]);
    let big: Vec<&Value> = leaks["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rec| rec["bytes"].as_u64() == Some(12 << 20))
        .collect();
    assert_eq!(big.len(), 1, "{}", leaks["records"]);
    assert_eq!(big[0]["blocks"], 1);
    assert_eq!(big[0]["allocator"], "malloc");
    assert_ne!(big[0]["kind"], "still_reachable", "{}", big[0]);
}

const OWN_ALLOCATOR: &str = "own_malloc defines its own malloc, calloc, realloc and free: the blocks it serves itself never reach the C library's allocator, where memlens records, and cannot be seen; what it passes on to the C library (a call of glibc's `__libc_malloc` and the like, or of an allocation function it does not define) is recorded";

/// An executable with its own malloc family: `memlens run`'s summary and `memlens report`
/// (text and JSON) say in one sentence that its blocks cannot be seen, and why; what still
/// reaches the C library (posix_memalign's 5000 bytes, the 100,000 bytes its malloc
/// passes on to `__libc_malloc`) is recorded.
#[test]
fn an_executable_with_its_own_malloc_is_named() {
    let exe = build_c("own_malloc.c", "own_malloc");
    let r = run(&exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "own allocator: done\n");
    let stderr = r.stderr();
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("defines its own"))
        .collect();
    assert_eq!(said, [format!("==memlens== warning: {OWN_ALLOCATOR}")]);
    let rep = report(&r.only_trace());
    assert_eq!(rep["trace"]["warnings"], serde_json::json!([OWN_ALLOCATOR]));
    assert_eq!(rep["totals"]["allocations"], 2, "{}", rep["totals"]);
    // The forwarded block's innermost frame is the program's own `malloc`.
    let m = sites_through(&rep, "main");
    let mut got: Vec<(u64, &str)> = m
        .iter()
        .map(|s| {
            (
                s["bytes_allocated"].as_u64().unwrap(),
                s["allocator"].as_str().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, [(5000, "posix_memalign"), (100_000, "malloc")]);
    let text = std::process::Command::new(memlens())
        .arg("report")
        .arg(r.only_trace())
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.matches(OWN_ALLOCATOR).count(), 1, "{text}");
}

/// A forked child's trace carries the finding too.
#[test]
fn a_forked_child_of_such_an_executable_is_named_too() {
    let exe = build_c("own_malloc.c", "own_malloc");
    let r = run_with(&["-q", "--trace-children=yes"], &exe, &["fork"]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    let traces = r.traces();
    assert_eq!(traces.len(), 2, "{traces:?}");
    for t in &traces {
        assert_eq!(
            report(t)["trace"]["warnings"],
            serde_json::json!([OWN_ALLOCATOR])
        );
    }
}

/// A malloc defined by a library loaded after the recorder replaces nothing (the
/// recorder's comes first): no such warning.
#[test]
fn a_library_defining_malloc_is_not_named() {
    let exe = wrapper_program();
    let r = run_with(&["-q"], &exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    let rep = report(&r.only_trace());
    assert_eq!(rep["trace"]["warnings"], serde_json::json!([]));
}

/// libstdc++'s operator new taken from its handle is the recorder's: its blocks are
/// recorded as `operator new` (not as the malloc it would call inside), so releasing one
/// with operator delete is no mismatched-family error, and the unfreed one is lost.
#[test]
fn operator_new_from_libstdcxx_handle_is_recorded() {
    let exe = build("g++", "dlsym_cxx.cpp", "dlsym_cxx", CXX_FLAGS);
    let r = run_with(&["-q"], &exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "dlsym operators done\n");
    let rep = report(&r.only_trace());
    let mut news: Vec<(u64, String)> = sites_at(&rep, "main")
        .iter()
        .map(|s| {
            (
                s["bytes_allocated"].as_u64().unwrap(),
                s["allocator"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    news.sort();
    assert_eq!(
        news,
        [
            (6001, "operator new".to_string()),
            (6002, "operator new".to_string())
        ]
    );
    let leaks = leaks_json(&r.only_trace(), &[]);
    assert_eq!(leaks["errors"], serde_json::json!([]));
    assert_eq!(amount(&leaks["summary"]["definitely_lost"]), (6001, 1));
}
