//! `memlens run --sample BYTES` and `--pprof-every DURATION DIR`, on `sample_sites.c`,
//! whose sites allocate known bytes and blocks.
//!
//! With `MEMLENS_SAMPLE_SEED` fixed the sampler picks the same blocks in every run, so
//! these tests are deterministic; the tolerances are still those the variance justifies,
//! so that any seed would pass but for a 4-sigma event: for a site of `n` blocks of `s`
//! bytes sampled at mean interval T, each block is in the trace with probability
//! p = 1 - e^(-s/T) and the estimate's relative standard error is sqrt((1 - p) / (n p))
//! (`memlens_analysis::sampling::relative_error`).

mod common;

use common::*;
use memlens_analysis::sampling::relative_error;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const T: u64 = 512 * 1024;
const MIB: u64 = 1 << 20;

/// (function, blocks, bytes each) of the sites that allocate blocks of one size.
const SITES: [(&str, u64, u64); 4] = [
    ("site_a", 65_536, 4096),
    ("site_b", 1_048_576, 64),
    ("site_c", 64, MIB),
    ("site_e", 65_536, 1024),
];
/// site_d: 2,048 reallocs growing by 256 B.
const SITE_D_BYTES: u64 = 256 * 2048 * 2049 / 2;

fn program() -> PathBuf {
    build_c("sample_sites.c", "sample_sites")
}

/// `memlens run --sample 512K` with a fixed seed, and extra options.
fn sampled_run(extra: &[&str], args: &[&str]) -> Run {
    let prog = program();
    let dir = scratch("sample_sites");
    let output = Command::new(memlens())
        .arg("run")
        .arg("-o")
        .arg(dir.join("%n.%p.trace"))
        .args(["--sample", "512K"])
        .args(extra)
        .arg("--")
        .arg(&prog)
        .args(args)
        .env("MEMLENS_SAMPLE_SEED", "7")
        .output()
        .unwrap();
    Run { output, dir }
}

fn site<'a>(rep: &'a Value, func: &str) -> Vec<&'a Value> {
    let s = sites_at(rep, func);
    assert!(!s.is_empty(), "no site at {func}");
    s
}

/// `est` within `sigmas` standard errors `rse` (relative) of `truth`.
fn assert_close(what: &str, est: u64, truth: u64, rse: f64, sigmas: f64) {
    let err = (est as f64 - truth as f64).abs() / truth as f64;
    assert!(
        err <= sigmas * rse,
        "{what}: estimate {est}, true {truth}: error {:.1}% > {sigmas} x {:.1}%",
        err * 100.0,
        rse * 100.0
    );
}

/// The sites `s` of `func`, `blocks` blocks of `size` bytes in truth: their estimated
/// bytes and allocations within 4 standard errors.
fn assert_site_estimates(s: &[&Value], func: &str, blocks: u64, size: u64) {
    let rse = relative_error(size, blocks, T);
    assert_close(
        &format!("{func} bytes"),
        sum(s, "bytes_allocated"),
        blocks * size,
        rse,
        4.0,
    );
    // Counts are rounded up or down at random per block: a little more spread than the
    // bytes, well inside 4 sigmas plus 1%.
    assert_close(
        &format!("{func} allocations"),
        sum(s, "allocations"),
        blocks,
        rse + 0.01,
        4.0,
    );
}

#[test]
fn estimates_fall_within_the_sampling_error() {
    let r = sampled_run(&[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "sample_sites done\n");
    let rep = report(&r.only_trace());
    for (func, blocks, size) in SITES {
        assert_site_estimates(&site(&rep, func), func, blocks, size);
    }
    // Not freed at exit: site_c's 64 MiB, all of it.
    let c = site(&rep, "site_c");
    let rse_c = relative_error(MIB, 64, T);
    assert_close("site_c live", sum(&c, "live_bytes"), 64 * MIB, rse_c, 4.0);
    assert_close(
        "not freed",
        rep["totals"]["not_freed_bytes"].as_u64().unwrap(),
        64 * MIB,
        rse_c,
        4.0,
    );
    // site_d: blocks of 256 B to 512 KiB, 537 MB in all; its error is at most that of
    // the same bytes in blocks of 256 B (each larger block is sampled more surely).
    let d = site(&rep, "site_d");
    assert_eq!(d[0]["allocator"], "realloc");
    assert_close(
        "site_d bytes",
        sum(&d, "bytes_allocated"),
        SITE_D_BYTES,
        relative_error(256, SITE_D_BYTES / 256, T),
        4.0,
    );
    // Total: the sum of the sites (and the program's few other blocks, stdio's buffer).
    let total: u64 = SITES.iter().map(|(_, n, s)| n * s).sum::<u64>() + SITE_D_BYTES;
    let rse_total = (T as f64 / total as f64).sqrt();
    assert_close(
        "bytes allocated",
        rep["totals"]["bytes_allocated"].as_u64().unwrap(),
        total,
        rse_total,
        4.0,
    );
}

/// The peak, the exports and the flame graph work from the samples: site_c's 64 MiB
/// (the heap at its peak is site_c's blocks and site_d's buffer of at most 512 KiB).
#[test]
fn peak_exports_and_flame_graphs_are_estimates() {
    let r = sampled_run(&[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let trace = r.only_trace();
    let rse_c = relative_error(MIB, 64, T);
    let rep = report(&trace);
    // The 512 KiB of site_d's buffer, and the noise of the small blocks freed around the
    // peak (a sampled 64-byte block weighs T): a few T above site_c's estimate at most.
    let peak = rep["totals"]["peak_heap_bytes"].as_u64().unwrap();
    let c = sum(&site(&rep, "site_c"), "live_bytes");
    assert!(peak >= c && peak <= c + 4 * T, "peak {peak}, site_c {c}");
    assert_close("peak", peak, 64 * MIB, rse_c, 4.0);

    let o = Command::new(memlens())
        .args(["export", "--format", "json"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trace"]["sampling"]["interval_bytes"], T);
    let exit: u64 = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stack"][0]["function"] == "site_c")
        .map(|s| s["exit_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(exit, c, "export and report agree on site_c");
    assert_eq!(v["totals"]["leaked_bytes"], Value::Null, "no leak kinds");

    let svg = r.dir.join("flame.svg");
    let o = Command::new(memlens())
        .args(["flamegraph", "--metric", "allocated", "-o"])
        .arg(&svg)
        .arg(&trace)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&svg).unwrap();
    for f in ["site_a", "site_b", "site_c", "site_d", "site_e"] {
        assert!(svg.contains(f), "{f} not in the flame graph");
    }
}

#[test]
fn reports_say_the_figures_are_estimates() {
    let r = sampled_run(&[], &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let err = r.stderr();
    assert!(
        err.contains("==memlens== figures estimated from samples (1 in ~512 KiB)"),
        "{err}"
    );
    assert!(err.contains("==memlens== no leak kinds"), "{err}");
    let trace = r.only_trace();
    let rep = report(&trace);
    let sampling = &rep["trace"]["sampling"];
    assert_eq!(sampling["interval_bytes"], T);
    assert_eq!(sampling["estimated"], true);
    assert_eq!(sampling["note"], "estimated from samples (1 in ~512 KiB)");
    assert!(sampling["leak_kinds"]
        .as_str()
        .unwrap()
        .starts_with("no leak kinds"));
    // No leak kinds, and no temporary allocations counted.
    assert_eq!(rep["leaks"], Value::Null);
    assert_eq!(rep["totals"]["temporary"], 0);

    let text = Command::new(memlens())
        .arg("report")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("  sampling   every figure below is estimated from samples (1 in ~512 KiB)"),
        "{text}"
    );
    assert!(
        text.contains("Temporary allocations: not counted: a sampled run"),
        "{text}"
    );

    let leaks = Command::new(memlens())
        .arg("leaks")
        .arg(&trace)
        .output()
        .unwrap();
    let leaks = String::from_utf8(leaks.stdout).unwrap();
    assert!(
        leaks.contains(
            "No leak check: no leak kinds (definitely, indirectly, possibly lost): a sampled run"
        ),
        "{leaks}"
    );

    // A trace without --sample has `sampling: null`.
    let full = run(&program(), &[]);
    assert_eq!(report(&full.only_trace())["trace"]["sampling"], Value::Null);
}

/// Almost every release in `sample_sites` is of a block the sampler did not pick: none
/// is a heap error (the release goes to glibc), and the program's output and status are
/// its own.
/// A sampled run that dies by a signal says so without claiming a leak check, which a
/// sampled run never makes; a full run says the leak check ran at that point.
#[test]
fn a_sampled_run_killed_by_a_signal_claims_no_leak_check() {
    let prog = build_c("exits.c", "exits");
    for (opts, said) in [
        (
            &["--sample", "64"][..],
            "the figures are those of that moment",
        ),
        (&[][..], "the leak check ran at that point"),
    ] {
        let dir = scratch("sampled_abort");
        let r = Command::new(memlens())
            .arg("run")
            .arg("-o")
            .arg(dir.join("%n.%p.trace"))
            .args(opts)
            .arg("--")
            .arg(&prog)
            .arg("abort")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.signal(), Some(libc::SIGABRT), "{opts:?} {err}");
        let line = format!("==memlens== the program was killed by signal 6 (SIGABRT); {said}\n");
        assert!(err.contains(&line), "{opts:?}: {err}");
    }
}

#[test]
fn releases_of_unsampled_blocks_are_not_heap_errors() {
    let r = sampled_run(&["--error-exitcode", "9"], &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "sample_sites done\n");
    let trace = r.only_trace();
    let l = leaks_json(&trace, &[]);
    assert_eq!(l["errors"].as_array().map(Vec::len), Some(0), "{l}");
    let rep = report(&trace);
    assert_eq!(rep["totals"]["untracked_frees"], 0);
    // Sampled: far fewer events than the program's 2.2 million calls.
    let alloc_records = trace_allocs(&trace);
    assert!(
        (500..5000).contains(&alloc_records),
        "{alloc_records} sampled allocations"
    );
}

/// Allocation records in a trace (the blocks the sampler picked).
fn trace_allocs(trace: &Path) -> u64 {
    let r = memlens_trace::reader::TraceReader::open(trace).unwrap();
    r.events()
        .filter(|e| {
            matches!(
                e,
                Ok(memlens_trace::reader::Event::Alloc { .. })
                    | Ok(memlens_trace::reader::Event::Realloc { .. })
            )
        })
        .count() as u64
}

/// The same seed picks the same blocks: two runs give the same byte estimates.
#[test]
fn a_fixed_seed_picks_the_same_blocks() {
    let a = report(&sampled_run(&[], &[]).only_trace());
    let b = report(&sampled_run(&[], &[]).only_trace());
    for (func, _, _) in SITES {
        assert_eq!(
            sum(&site(&a, func), "bytes_allocated"),
            sum(&site(&b, func), "bytes_allocated"),
            "{func}"
        );
    }
}

/// `--pprof-every 200ms DIR`: the program waits until a profile appears in DIR (so one
/// was written while it ran), then ends; a last one is written after. Both read in `go
/// tool pprof`; the last holds site_c's 64 MiB in use, estimated.
#[test]
fn pprof_every_writes_profiles_go_tool_pprof_reads() {
    let out = scratch("pprof-every").join("profiles");
    let r = sampled_run(
        &["--pprof-every", "200ms", out.to_str().unwrap()],
        &[out.to_str().unwrap()],
    );
    assert_eq!(
        r.output.status.code(),
        Some(0),
        "{}{}",
        r.stdout(),
        r.stderr()
    );
    assert_eq!(r.stdout(), "sample_sites done\n");
    let pid = memlens_trace::reader::TraceReader::open(r.only_trace())
        .unwrap()
        .header()
        .pid;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let prefix = format!("memlens-{pid}-");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&prefix) && name.ends_with("Z.pb.gz"),
            "{name}"
        );
    }
    let Some(_) = tool("go", "golang-go") else {
        return;
    };
    let home = scratch("pprof-every-go");
    for f in &files {
        let top = go_pprof(&home, f, &["-top", "-sample_index=alloc_space"]);
        assert!(top.starts_with("File: sample_sites\n"), "{top}");
        assert!(
            top.contains("every value is estimated from samples (1 in ~512 KiB)"),
            "{top}"
        );
    }
    let last = files.last().unwrap();
    let raw = go_pprof(
        &home,
        last,
        &["-top", "-sample_index=inuse_space", "-unit=B"],
    );
    let line = raw
        .lines()
        .find(|l| l.trim_end().ends_with(" site_c"))
        .unwrap_or_else(|| panic!("no site_c in\n{raw}"));
    let flat: u64 = line
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('B')
        .parse()
        .unwrap();
    assert_close(
        "site_c in use",
        flat,
        64 * MIB,
        relative_error(MIB, 64, T),
        4.0,
    );
}

/// `memlens check --sample`: the budgets judge estimates, and --max-leaked, without leak
/// kinds, the estimate of what was not freed at exit (site_c's 64 MiB).
#[test]
fn check_judges_estimates() {
    let prog = program();
    let check = |limit: &str| {
        let dir = scratch("sample-check");
        Command::new(memlens())
            .args([
                "check",
                "-q",
                "--sample",
                "512K",
                "--max-leaked",
                limit,
                "-o",
            ])
            .arg(dir.join("%n.%p.trace"))
            .arg("--")
            .arg(&prog)
            .env("MEMLENS_SAMPLE_SEED", "7")
            .output()
            .unwrap()
    };
    let pass = check("200MiB");
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    let fail = check("16MiB");
    let err = String::from_utf8_lossy(&fail.stderr);
    assert_eq!(fail.status.code(), Some(1), "{err}");
    assert!(err.contains("exceeds --max-leaked 16.00 MiB"), "{err}");
}

#[test]
fn bad_values_are_refused_with_a_sentence() {
    let prog = program();
    let o = Command::new(memlens())
        .args(["run", "--sample", "0", "--"])
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--sample needs a mean interval of at least 1 byte"),
        "{err}"
    );
    let o = Command::new(memlens())
        .args(["run", "--pprof-every", "10ms", "/tmp", "--"])
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err,
        "memlens: error: --pprof-every: the period must be at least 100ms\n"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// (function, allocator, blocks, bytes each) of `sample_sites_cxx.cpp`'s sites.
const CXX_SITES: [(&str, &str, u64, u64); 4] = [
    ("site_new", "operator new", 65_536, 1024),
    ("site_new_array", "operator new[]", 65_536, 4096),
    ("site_nothrow", "operator new[]", 32_768, 2048),
    ("site_keep", "operator new[]", 64, MIB),
];

fn cxx_program() -> PathBuf {
    build("g++", "sample_sites_cxx.cpp", "sample_sites_cxx", CXX_FLAGS)
}

/// `memlens run` of `sample_sites_cxx` with a fixed seed and `extra` options.
fn cxx_run(extra: &[&str], args: &[&str]) -> Run {
    let dir = scratch("sample_sites_cxx");
    let output = Command::new(memlens())
        .arg("run")
        .arg("-o")
        .arg(dir.join("%n.%p.trace"))
        .args(extra)
        .arg("--")
        .arg(cxx_program())
        .args(args)
        .env("MEMLENS_SAMPLE_SEED", "7")
        .output()
        .unwrap();
    Run { output, dir }
}

/// C++'s operators sampled: `new`, `new[]` and `nothrow` `new[]` estimate their sites'
/// bytes and blocks within the sampling error, the kept blocks are live at exit, and
/// `delete` and `delete[]` of the blocks the sampler passed over are no heap errors.
#[test]
fn cxx_operators_are_sampled_and_their_releases_pass() {
    let r = cxx_run(&["--sample", "512K", "--error-exitcode", "9"], &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "sample_sites_cxx done\n");
    let trace = r.only_trace();
    let rep = report(&trace);
    for (func, allocator, blocks, size) in CXX_SITES {
        let s = site(&rep, func);
        assert!(s.iter().all(|s| s["allocator"] == allocator), "{func}");
        assert_site_estimates(&s, func, blocks, size);
    }
    let keep = site(&rep, "site_keep");
    assert_close(
        "site_keep live",
        sum(&keep, "live_bytes"),
        64 * MIB,
        relative_error(MIB, 64, T),
        4.0,
    );
    assert_eq!(sum(&site(&rep, "site_new"), "live_bytes"), 0);
    assert_eq!(rep["totals"]["untracked_frees"], 0);
    let l = leaks_json(&trace, &[]);
    assert_eq!(l["errors"].as_array().map(Vec::len), Some(0), "{l}");
}

/// A sampled run gives the C and C++ runtimes' buffers back at exit as a full run does
/// before its scan (libstdc++'s emergency pool, 71 KiB, is allocated when it loads and
/// is sampled at this interval): what is not freed at exit is the program's own. The
/// same with --leak-check=no.
#[test]
fn runs_without_a_scan_still_free_the_runtimes_buffers_at_exit() {
    for opts in [&["--sample", "64"][..], &["--leak-check=no"]] {
        let r = cxx_run(opts, &[]);
        assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
        let rep = report(&r.only_trace());
        let sites = rep["not_freed"]["sites"].as_array().unwrap();
        assert!(!sites.is_empty(), "{opts:?}: site_keep's blocks are kept");
        for s in sites {
            let module = s["stack"][0]["module"].as_str().unwrap_or("");
            assert!(!module.starts_with("libstdc++"), "{opts:?}: {s}");
        }
    }
}

/// When glibc has no memory, `new` runs the program's new-handler and throws
/// `std::bad_alloc`, and the `nothrow` form runs it and returns null, sampled or not: at 1 GiB most of the 256 MiB requests are passed
/// over by the sampler (the operator's fast path must not hand the program glibc's
/// null), without sampling every one is recorded. The program's output is its own.
#[test]
fn new_runs_the_new_handler_when_glibc_has_no_memory_sampled_or_not() {
    let bare = Command::new(cxx_program()).arg("oom").output().unwrap();
    assert!(bare.status.success());
    let expected =
        "new_handler=8 bad_alloc=8\nnothrow: new_handler=8 null=8\nsample_sites_cxx done\n";
    assert_eq!(String::from_utf8_lossy(&bare.stdout), expected);
    for extra in [&["--sample", "1G"][..], &[]] {
        let r = cxx_run(extra, &["oom"]);
        assert_eq!(r.output.status.code(), Some(0), "{extra:?}: {}", r.stderr());
        assert_eq!(r.stdout(), expected, "{extra:?}");
    }
}
