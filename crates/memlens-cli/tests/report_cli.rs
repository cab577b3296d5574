//! `memlens report` end to end on synthetic traces.

use memlens_trace::writer::TraceWriter;
use memlens_trace::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

const MS: u64 = 1_000_000;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("memlens-cli-{}-{name}", std::process::id()))
}

/// A trace of `/usr/bin/demo --fast` (pid 4242) whose frames are in no known module,
/// so the report is the same on every machine.
///
///  1 ms  t0 malloc 0x1000 100 (stack 1)      100
///  2 ms  t1 new    0x5000 3000 (stack 2)    3100
///  3 ms  t1 free   0x9999 (never allocated)
///  4 ms  t0 realloc 0x1000 -> 0x2000 2048 (stack 3)   5048 <- peak
///  5 ms  t0 free   0x5000                   2048
///  6 ms  t1 malloc 0x6000 16 (stack 1)      2064
///  7 ms  t1 malloc 0x7000 16 (stack 1)      2080
///  8 ms  t1 free   0x6000                   2064
///  exit(0) at 10 ms; not freed: 0x2000 (2048, stack 3), 0x7000 (16, stack 1)
fn write_trace(name: &str) -> PathBuf {
    let header = Header {
        pid: 4242,
        ppid: 7,
        exe: "/usr/bin/demo".into(),
        argv: vec!["demo".into(), "--fast".into()],
        page_size: 4096,
        max_depth: 64,
        writer: "test".into(),
        ..Default::default()
    };
    let mut w = TraceWriter::new(Vec::new(), &header).unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        b.alloc(MS, AllocFunc::Malloc, 0x1000, 100, 1)?;
        b.realloc(4 * MS, AllocFunc::Realloc, 0x1000, 0x2000, 2048, 3)?;
        b.free(5 * MS, AllocFunc::Free, 0x5000, 0)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 1, |b| {
        b.alloc(2 * MS, AllocFunc::New, 0x5000, 3000, 2)?;
        b.free(3 * MS, AllocFunc::Free, 0x9999, 0)?;
        b.alloc(6 * MS, AllocFunc::Malloc, 0x6000, 16, 1)?;
        b.alloc(7 * MS, AllocFunc::Malloc, 0x7000, 16, 1)?;
        b.free(8 * MS, AllocFunc::Free, 0x6000, 0)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, PROCESS_THREAD, |b| {
        b.rss(5 * MS, 5 << 20)
    })
    .unwrap();
    w.chunk(ChunkKind::Meta, 0, |b| {
        b.stack(1, &[(0, 0x7f00_0000_1111), (0, 0x7f00_0000_9999)])?;
        b.stack(2, &[(0, 0x7f00_0000_2222)])?;
        b.stack(3, &[(0, 0x7f00_0000_3333)])
    })
    .unwrap();
    w.chunk(ChunkKind::End, 0, |b| {
        b.end(10 * MS, ExitKind::Exit, 0, &EndCounters::default())
    })
    .unwrap();
    let p = tmp(name);
    std::fs::write(&p, w.finish().unwrap()).unwrap();
    p
}

fn memlens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memlens"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn text_report_has_the_numbers() {
    let p = write_trace("text.trace");
    let out = memlens(&["report", p.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "  program    /usr/bin/demo\n",
        "  command    demo --fast\n",
        "  process    pid 4242, parent 7\n",
        "  ended      exited with status 0 after 10.0 ms\n",
        "  allocations        5 (1 through realloc)\n",
        "  frees              3\n",
        "  untracked frees    1 ",
        "  bytes allocated    5.06 KiB\n",
        "  peak heap          4.93 KiB at 4.0 ms\n",
        "  peak RSS           5.00 MiB at 5.0 ms\n",
        "  temporary          1 (20.0% of allocations)\n",
        "  runtime            10.0 ms\n",
        "  not freed at exit  2.02 KiB in 2 blocks\n",
        "Not freed at exit: 2.02 KiB in 2 blocks from 2 sites\n",
        "  2.00 KiB in 1 block from realloc (1 allocation, 2.00 KiB in total)\n    at 0x7f0000003333\n",
        "  16 B in 1 block from malloc (3 allocations, 132 B in total)\n    at 0x7f0000001111\n    at 0x7f0000009999\n",
        "Heap at its peak (4.0 ms): 4.93 KiB in 2 blocks\n",
        "  2.93 KiB in 1 block from operator new (1 allocation, 2.93 KiB in total)\n",
        "Top 10 sites by number of allocations\n  3 allocations from malloc (132 B in total)\n",
        "Top 10 sites by bytes allocated\n  2.93 KiB from operator new in 1 allocation\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("TRUNCATED"));
    std::fs::remove_file(p).ok();
}

#[test]
fn json_report_has_the_documented_keys_and_exact_values() {
    let p = write_trace("json.trace");
    let out = memlens(&[
        "report",
        "--format",
        "json",
        "--top",
        "2",
        p.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let t = &v["trace"];
    assert_eq!(t["path"], p.to_str().unwrap());
    assert_eq!(
        (t["pid"].as_u64(), t["ppid"].as_u64()),
        (Some(4242), Some(7))
    );
    assert!(t["forked_from"].is_null());
    assert_eq!(t["exe"], "/usr/bin/demo");
    assert_eq!(t["argv"], serde_json::json!(["demo", "--fast"]));
    assert!(t["truncated"].is_null());
    assert_eq!(t["exit"], serde_json::json!({"kind": "exit", "code": 0}));
    assert_eq!(t["warnings"], serde_json::json!([]));

    assert_eq!(
        v["totals"],
        serde_json::json!({
            "allocations": 5, "frees": 3, "reallocs": 1, "bytes_allocated": 5180,
            "temporary": 1, "peak_heap_bytes": 5048, "peak_heap_time_ms": 4.0,
            "peak_rss_bytes": 5242880, "peak_rss_time_ms": 5.0,
            "runtime_ms": 10.0, "not_freed_bytes": 2064, "not_freed_blocks": 2, "untracked_frees": 1
        })
    );

    let frame = |addr: &str| serde_json::json!({"function": addr, "file": null, "line": null, "module": null, "inlined": false});
    let realloc_site = serde_json::json!({
        "allocations": 1, "bytes_allocated": 2048, "live_bytes": 2048, "live_blocks": 1,
        "temporary": 0, "allocator": "realloc", "stack": [frame("0x7f0000003333")]
    });
    assert_eq!(v["not_freed"]["bytes"], 2064);
    assert_eq!(v["not_freed"]["blocks"], 2);
    assert_eq!(
        v["not_freed"]["sites"],
        serde_json::json!([realloc_site, {
            "allocations": 3, "bytes_allocated": 132, "live_bytes": 16, "live_blocks": 1,
            "temporary": 0, "allocator": "malloc", "stack": [frame("0x7f0000001111"), frame("0x7f0000009999")]
        }])
    );

    assert_eq!(
        (v["peak"]["bytes"].as_u64(), v["peak"]["time_ms"].as_f64()),
        (Some(5048), Some(4.0))
    );
    let peak_sites = v["peak"]["sites"].as_array().unwrap();
    assert_eq!(peak_sites.len(), 2);
    assert_eq!(peak_sites[0]["allocator"], "operator new");
    assert_eq!(
        (
            peak_sites[0]["live_bytes"].as_u64(),
            peak_sites[1]["live_bytes"].as_u64()
        ),
        (Some(3000), Some(2048))
    );

    let by_alloc: Vec<u64> = v["hotspots"]["by_allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["allocations"].as_u64().unwrap())
        .collect();
    assert_eq!(by_alloc, vec![3, 1]); // --top 2
    let by_bytes: Vec<u64> = v["hotspots"]["by_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes_allocated"].as_u64().unwrap())
        .collect();
    assert_eq!(by_bytes, vec![3000, 2048]);
    std::fs::remove_file(p).ok();
}

#[test]
fn truncated_trace_says_so() {
    let p = write_trace("cut.trace");
    let data = std::fs::read(&p).unwrap();
    std::fs::write(&p, &data[..data.len() - 3]).unwrap(); // cut inside the end chunk
    let out = memlens(&["report", p.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("  TRUNCATED  the trace was cut short: the last chunk is incomplete"),
        "{text}"
    );
    assert!(text.contains("  ended      unknown"), "{text}");
    let out = memlens(&["report", "--format", "json", p.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["trace"]["truncated"]
        .as_str()
        .unwrap()
        .starts_with("the last chunk is incomplete"));
    assert!(v["trace"]["exit"].is_null());
    assert_eq!(v["totals"]["runtime_ms"], 8.0);
    std::fs::remove_file(p).ok();
}

#[test]
fn non_trace_and_missing_files_fail_with_one_line_and_125() {
    let p = tmp("not-a-trace.txt");
    std::fs::write(&p, "hello, I am a text file and not a trace\n").unwrap();
    for path in [p.to_str().unwrap(), "/nonexistent/memlens.trace"] {
        let out = memlens(&["report", path]);
        assert_eq!(out.status.code(), Some(125));
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("memlens: error: "), "{err}");
        assert!(err.contains(path), "{err}");
    }
    let out = memlens(&["report", p.to_str().unwrap()]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("is not a memlens trace"));
    std::fs::remove_file(p).ok();
}

/// `--top 0` is refused: its lists would be empty yet say how many more there are.
#[test]
fn top_zero_is_refused() {
    let t = write_trace("top-zero.trace");
    for cmd in [&["report"][..], &["html", "-o", "/dev/null"]] {
        let out = memlens(&[cmd, &["--top", "0", t.to_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(125), "{cmd:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("invalid value '0' for '--top <N>': it must be at least 1"),
            "{err}"
        );
    }
}

/// Option values that make no sense are refused in one sentence, with 125, on a trace
/// that reads: no section at all, a flame graph 0 pixels wide, a window from before the
/// run (given as `--from -5s`, which clap took for an unknown option).
#[test]
fn odd_option_values_are_refused() {
    let t = write_trace("odd-values.trace");
    let t = t.to_str().unwrap();
    for (args, said) in [
        (
            &["report", "--sections", "", t][..],
            "--sections names no section",
        ),
        (
            &["report", "--from", "-5s", t],
            "--from: `-5s` is not a time in the run",
        ),
        (
            &["plot", "--to", "-1s", "-o", "/tmp/odd.svg", t],
            "--to: `-1s`",
        ),
        (
            &["flamegraph", "--width", "0", "-o", "/dev/null", t],
            "invalid value '0' for '--width <PIXELS>'",
        ),
    ] {
        let out = memlens(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{err}");
    }
}

/// Compile a C program, return its path and (address, size) of `make_buffer` and `main`.
fn compile_demo(dir: &std::path::Path) -> (PathBuf, [(u64, u64); 2]) {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("demo.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n__attribute__((noinline)) void *make_buffer(int n)\n{\n    void *p = malloc(n);\n    return p;\n}\n\nint main(void)\n{\n    return make_buffer(3) == 0;\n}\n",
    )
    .unwrap();
    let bin = dir.join("demo");
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-Wl,--build-id", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("this test needs gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nm = Command::new("nm")
        .arg("-S")
        .arg(&bin)
        .output()
        .expect("this test needs nm");
    let nm = String::from_utf8(nm.stdout).unwrap();
    let sym = |name: &str| {
        let l = nm
            .lines()
            .find(|l| l.ends_with(&format!(" T {name}")))
            .unwrap_or_else(|| panic!("{name} in {nm}"));
        let mut it = l.split_whitespace().map(|x| u64::from_str_radix(x, 16));
        (it.next().unwrap().unwrap(), it.next().unwrap().unwrap())
    };
    (bin, [sym("make_buffer"), sym("main")])
}

fn symbolized_trace(
    name: &str,
    bin: &std::path::Path,
    build_id: &[u8],
    funcs: [(u64, u64); 2],
) -> PathBuf {
    let mut w = TraceWriter::new(
        Vec::new(),
        &Header {
            pid: 1,
            exe: bin.to_string_lossy().into(),
            ..Default::default()
        },
    )
    .unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        b.alloc(MS, AllocFunc::Malloc, 0x1000, 3, 1)
    })
    .unwrap();
    w.chunk(ChunkKind::Meta, 0, |b| {
        b.module_load(
            0,
            1,
            bin.to_str().unwrap().as_bytes(),
            build_id,
            0x5555_0000_0000,
            &[],
        )?;
        b.stack(
            1,
            &[
                (1, funcs[0].0 + funcs[0].1 / 2),
                (1, funcs[1].0 + funcs[1].1 / 2),
            ],
        )
    })
    .unwrap();
    w.chunk(ChunkKind::End, 0, |b| {
        b.end(2 * MS, ExitKind::Exit, 0, &EndCounters::default())
    })
    .unwrap();
    let p = tmp(name);
    std::fs::write(&p, w.finish().unwrap()).unwrap();
    p
}

#[test]
fn stacks_are_symbolized_unless_the_binary_changed() {
    let dir = tmp("symdir");
    let (bin, funcs) = compile_demo(&dir);
    let build_id = memlens_analysis::symbolize::read_build_id(&bin).unwrap();
    assert!(!build_id.is_empty());

    let p = symbolized_trace("sym.trace", &bin, &build_id, funcs);
    let out = memlens(&["report", p.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("  3 B in 1 block from malloc (1 allocation, 3 B in total)\n    at make_buffer (demo.c:"), "{text}");
    assert!(text.contains(") [demo]\n    at main (demo.c:"), "{text}");
    assert!(!text.contains("warning"), "{text}");
    let out = memlens(&["report", "--format", "json", p.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["not_freed"]["sites"][0]["stack"][0];
    assert_eq!(
        (
            f["function"].as_str(),
            f["module"].as_str(),
            f["inlined"].as_bool()
        ),
        (Some("make_buffer"), Some("demo"), Some(false))
    );
    assert!(f["file"].as_str().unwrap().ends_with("demo.c"), "{f}");
    assert!((3..=6).contains(&f["line"].as_u64().unwrap()), "{f}");

    let stale = symbolized_trace("stale.trace", &bin, &[1, 2, 3, 4], funcs);
    let out = memlens(&["report", stale.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let warning = format!("{} changed since the trace was recorded (build-id mismatch); its frames are shown as offsets", bin.display());
    assert!(
        text.contains(&format!("  warning    {warning}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("    at demo+{:#x}\n", funcs[0].0 + funcs[0].1 / 2)),
        "{text}"
    );
    let out = memlens(&["report", "--format", "json", stale.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trace"]["warnings"], serde_json::json!([warning]));
    for f in [p, stale] {
        std::fs::remove_file(f).ok();
    }
    std::fs::remove_dir_all(dir).ok();
}

/// memlens's own memory (mapped: 4 MiB) above the RSS it counts in (3 MiB): the text
/// report and the JSON (which the web page shows) give one number for it, at most the RSS.
#[test]
fn recorder_memory_is_one_number_in_every_format() {
    const MIB: u64 = 1 << 20;
    let mut w = TraceWriter::new(
        Vec::new(),
        &Header {
            pid: 1,
            exe: "/usr/bin/demo".into(),
            ..Default::default()
        },
    )
    .unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        b.alloc(MS, AllocFunc::Malloc, 0x1000, 1000, 1)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, PROCESS_THREAD, |b| {
        b.rss(2 * MS, 3 * MIB)
    })
    .unwrap();
    w.chunk(ChunkKind::Meta, 0, |b| b.stack(1, &[(0, 0x7f00_0000_1111)]))
        .unwrap();
    let counters = EndCounters {
        recorder_peak_bytes: 4 * MIB,
        ..Default::default()
    };
    w.chunk(ChunkKind::End, 0, |b| {
        b.end(3 * MS, ExitKind::Exit, 0, &counters)
    })
    .unwrap();
    let p = tmp("recorder-memory.trace");
    std::fs::write(&p, w.finish().unwrap()).unwrap();

    let out = memlens(&["report", p.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("(memlens's own memory, part of baseline and other: up to 3.00 MiB)"),
        "{text}"
    );
    assert!(
        text.contains("memlens's own memory (the recorder, up to 3.00 MiB) counts in this RSS"),
        "{text}"
    );
    assert!(!text.contains("4.00 MiB"), "{text}");
    let out = memlens(&["report", "--format", "json", p.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = &v["heap_vs_rss"];
    assert_eq!(h["at_peak_rss"]["recorder_bytes"], 3 * MIB);
    assert!(
        h["findings"].as_array().unwrap().iter().any(|f| f
            .as_str()
            .unwrap()
            .contains("(the recorder, up to 3.00 MiB)")),
        "{h}"
    );
    std::fs::remove_file(p).ok();
}
