//! End-to-end recording tests: real C, C++ and Rust programs under `memlens run`, with
//! exact allocation counts, bytes, function names and file:line asserted from the report.
//!
//! Longer than 800 lines on purpose: every case is a program and its exact figures, and
//! one binary shares the programs' builds.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[test]
fn c_allocation_functions_exact_counts_and_lines() {
    let prog = build_c("sites.c", "sites");
    let r = run(&prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "sites done 6\n");
    let rep = report(&r.only_trace());

    let m = sites_at(&rep, "do_malloc");
    assert_eq!(
        (
            sum(&m, "allocations"),
            sum(&m, "bytes_allocated"),
            sum(&m, "live_blocks")
        ),
        (10, 1000, 0)
    );
    assert_eq!(m[0]["allocator"], "malloc");
    let f0 = &m[0]["stack"][0];
    assert!(f0["file"].as_str().unwrap().ends_with("sites.c"), "{f0}");
    assert_eq!(
        f0["line"].as_u64().unwrap(),
        line_of("sites.c", "p[i] = malloc(100)")
    );
    let f1 = &m[0]["stack"][1];
    assert_eq!(f1["function"], "main");
    assert_eq!(
        f1["line"].as_u64().unwrap(),
        line_of("sites.c", "    do_malloc();")
    );

    let c = sites_at(&rep, "do_calloc");
    assert_eq!(
        (
            sum(&c, "allocations"),
            sum(&c, "bytes_allocated"),
            sum(&c, "live_blocks"),
            sum(&c, "live_bytes")
        ),
        (5, 500, 5, 500)
    );
    assert_eq!(c[0]["allocator"], "calloc");

    let re = sites_at(&rep, "do_realloc");
    assert_eq!(
        (
            sum(&re, "allocations"),
            sum(&re, "bytes_allocated"),
            sum(&re, "live_blocks")
        ),
        (3, 60, 0)
    );
    let mut allocators: Vec<&str> = re
        .iter()
        .map(|s| s["allocator"].as_str().unwrap())
        .collect();
    allocators.sort();
    assert_eq!(allocators, ["malloc", "realloc", "realloc"]);

    let a = sites_at(&rep, "do_aligned");
    assert_eq!(
        (
            sum(&a, "allocations"),
            sum(&a, "bytes_allocated"),
            sum(&a, "live_blocks")
        ),
        (5, 380, 0)
    );
    let mut allocators: Vec<&str> = a.iter().map(|s| s["allocator"].as_str().unwrap()).collect();
    allocators.sort();
    assert_eq!(
        allocators,
        [
            "aligned_alloc",
            "memalign",
            "posix_memalign",
            "pvalloc",
            "valloc"
        ]
    );

    let ra = sites_at(&rep, "do_reallocarray");
    assert_eq!(
        (
            sum(&ra, "allocations"),
            sum(&ra, "bytes_allocated"),
            sum(&ra, "live_bytes")
        ),
        (1, 63, 63)
    );
    assert_eq!(ra[0]["allocator"], "reallocarray");

    // The summary on stderr names the trace and the not-freed total.
    assert!(r.stderr().contains("==memlens== trace: "), "{}", r.stderr());
}

/// Allocations made by libstdc++'s templates inlined into the program's own function
/// (-O2): the summary's lines name that function, not the header's code
/// (`std::vector<...>::_M_realloc_insert (vector.tcc:...)`).
#[test]
fn summary_lines_name_the_program_not_inlined_library_templates() {
    let prog = build("g++", "cxx_inlined.cpp", "cxx_inlined", &["-O2", "-g"]);
    let r = run_with(&[], &prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let err = r.stderr();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("==memlens==   ") && l.contains(" at "))
        .collect();
    assert!(!lines.is_empty(), "{err}");
    // No line is labelled by a header's code; the program's blocks are named by its
    // function. (Two sites of one line are then told apart by the library code they went
    // through, after the label: `... through std::vector::push_back (stl_vector.h:1294)`.)
    for l in &lines {
        let label = l.split(" through ").next().unwrap();
        assert!(
            !label.contains(".h:") && !label.contains(".tcc:"),
            "{l}\n{err}"
        );
    }
    let strings = lines
        .iter()
        .find(|l| l.contains("in 500 blocks"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        strings.contains(" at fill_names(int) (cxx_inlined.cpp:13) [cxx_inlined]"),
        "{strings}\n{err}"
    );
}

#[test]
fn cxx_new_delete_families_and_libstdcxx_frames() {
    let prog = build("g++", "cxx.cpp", "cxx", CXX_FLAGS);
    let r = run(&prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let rep = report(&r.only_trace());

    let o = sites_at(&rep, "make_objects");
    assert_eq!(
        (
            sum(&o, "allocations"),
            sum(&o, "bytes_allocated"),
            sum(&o, "live_bytes")
        ),
        (3, 72, 24)
    );
    assert!(o.iter().all(|s| s["allocator"] == "operator new"));

    let a = sites_at(&rep, "make_arrays");
    assert_eq!(
        (
            sum(&a, "allocations"),
            sum(&a, "bytes_allocated"),
            sum(&a, "live_bytes")
        ),
        (2, 320, 160)
    );
    assert!(a.iter().all(|s| s["allocator"] == "operator new[]"));

    // The stream grows its buffer inside libstdc++.so: stacks must go through it and
    // reach build_stream in the program, with demangled names.
    let s = sites_through(&rep, "build_stream");
    assert!(!s.is_empty());
    let through_lib = s.iter().any(|site| {
        let f = frames(site);
        let lib = f
            .iter()
            .position(|f| f["module"].as_str().unwrap_or("").starts_with("libstdc++"));
        let user = f.iter().position(|f| {
            f["function"]
                .as_str()
                .unwrap_or("")
                .contains("build_stream")
        });
        matches!((lib, user), (Some(l), Some(u)) if l < u)
            && f.iter()
                .any(|f| f["function"].as_str().unwrap_or("").contains("std::"))
    });
    assert!(
        through_lib,
        "no stack from build_stream through libstdc++: {s:#?}"
    );
}

/// Each thread's 40,000 events fill several logs (`rawlog.rs`): encoded by the writer
/// thread, or by the thread itself when the writer is behind; with `--rss-interval 0`
/// there is no writer and every thread encodes its own. Every event arrives either way.
#[test]
fn eight_threads_lose_no_events() {
    let prog = build_c("threads.c", "threads");
    for extra in [&[][..], &["--rss-interval", "0"][..]] {
        let r = run_with(extra, &prog, &[]);
        assert!(r.output.status.success(), "{extra:?}: {}", r.stderr());
        let rep = report(&r.only_trace());
        let churn = sites_at(&rep, "worker_churn");
        assert_eq!(sum(&churn, "allocations"), 8 * 20000, "{extra:?}");
        assert_eq!(sum(&churn, "live_blocks"), 0, "{extra:?}");
        let leak = sites_at(&rep, "worker_leak");
        assert_eq!(
            (
                sum(&leak, "allocations"),
                sum(&leak, "live_blocks"),
                sum(&leak, "live_bytes")
            ),
            (8, 8, 576),
            "{extra:?}"
        );
        assert!(rep["totals"]["frees"].as_u64().unwrap() >= 8 * 20000);
        let reader = memlens_trace::reader::TraceReader::open(r.only_trace()).unwrap();
        let end = reader.metadata().unwrap().end.expect("an End record");
        assert_eq!(end.counters.dropped_events, 0, "{extra:?}");
    }
}

#[test]
fn fork_and_exec_each_write_their_own_trace() {
    let prog = build_c("forkexec.c", "forkexec");
    let r = run_with(&["--trace-children=yes"], &prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "child exited 0\nstage2 done\n");
    let traces = r.traces();
    assert_eq!(traces.len(), 3, "{traces:?}");
    let reps: Vec<_> = traces.iter().map(|t| report(t)).collect();
    let pid_of = |v: &serde_json::Value| v["trace"]["pid"].as_u64().unwrap();
    let parent = reps
        .iter()
        .find(|v| v["trace"]["exit"]["kind"] == "exec")
        .expect("pre-exec trace");
    let child = reps
        .iter()
        .find(|v| v["trace"]["forked_from"].as_u64() == Some(pid_of(parent)))
        .expect("child trace");
    let stage2 = reps
        .iter()
        .find(|v| pid_of(v) == pid_of(parent) && v["trace"]["exit"]["kind"] == "exit")
        .expect("exec'd trace");
    assert_eq!(sum(&sites_at(parent, "alloc_parent"), "live_bytes"), 111);
    let c = sites_at(child, "alloc_child");
    assert_eq!((sum(&c, "allocations"), sum(&c, "live_bytes")), (3, 666));
    // The child inherited the parent's block (its allocation is in the parent's trace,
    // beside the child's): it is in the child's report with its stack, live at the
    // child's exit, as memcheck reports it in the child.
    let p = sites_at(child, "alloc_parent");
    assert_eq!((sum(&p, "allocations"), sum(&p, "live_bytes")), (1, 111));
    assert_eq!(child["totals"]["untracked_frees"], 0);
    assert_eq!(sum(&sites_at(stage2, "alloc_stage2"), "live_bytes"), 333);
    assert!(stage2["trace"]["argv"][1] == "stage2");
}

/// A process of `fork_inherit.c`'s three: its trace and report, (site, allocations, live
/// bytes) of each site, definitely lost bytes, still reachable bytes.
type Expected<'a> = (
    &'a (&'a std::path::PathBuf, serde_json::Value),
    [(&'a str, u64, u64); 5],
    u64,
    u64,
);

/// A forked child's reports include the blocks it inherited, with the parent's stacks
/// (from the parent's trace beside its own), as memcheck's leak check in the child does:
/// the parent's lost block is lost in the child and in the grandchild, a block the
/// child frees is its own free (not an untracked one) and gone from the grandchild's,
/// and "not freed at exit" agrees with the leak summary in each process. Without the
/// parent's trace the child's reports still read, the inherited blocks without stacks.
#[test]
fn a_forked_child_reports_the_blocks_it_inherited_with_their_stacks() {
    let prog = build_c("fork_inherit.c", "fork_inherit");
    let r = run_with(&["--trace-children=yes", "-q"], &prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "done\n");
    let traces = r.traces();
    assert_eq!(traces.len(), 3, "{traces:?}");
    let reps: Vec<_> = traces.iter().map(|t| (t, report(t))).collect();
    let pid_of = |v: &serde_json::Value| v["trace"]["pid"].as_u64();
    let parent = reps
        .iter()
        .find(|(_, v)| v["trace"]["forked_from"].is_null())
        .unwrap();
    let child = reps
        .iter()
        .find(|(_, v)| v["trace"]["forked_from"].as_u64() == pid_of(&parent.1))
        .unwrap();
    let grandchild = reps
        .iter()
        .find(|(_, v)| v["trace"]["forked_from"].as_u64() == pid_of(&child.1))
        .unwrap();
    let live = |v: &serde_json::Value, f: &str| sum(&sites_at(v, f), "live_bytes");
    let allocs = |v: &serde_json::Value, f: &str| sum(&sites_at(v, f), "allocations");
    let expect: [Expected; 3] = [
        (
            parent,
            [
                ("parent_lost", 1, 100),
                ("parent_kept", 1, 50),
                ("freed_by_child", 1, 70),
                ("child_lost", 0, 0),
                ("grandchild_kept", 0, 0),
            ],
            100,
            120,
        ),
        (
            child,
            [
                ("parent_lost", 1, 100),
                ("parent_kept", 1, 50),
                ("freed_by_child", 1, 0),
                ("child_lost", 1, 200),
                ("grandchild_kept", 0, 0),
            ],
            300,
            50,
        ),
        (
            grandchild,
            [
                ("parent_lost", 1, 100),
                ("parent_kept", 1, 50),
                ("freed_by_child", 0, 0),
                ("child_lost", 1, 200),
                ("grandchild_kept", 1, 30),
            ],
            300,
            80,
        ),
    ];
    assert!(parent.1["trace"]["inherited"].is_null());
    for ((_, v), from, blocks, bytes) in [(child, parent, 3, 220), (grandchild, child, 3, 350)] {
        assert_eq!(
            v["trace"]["inherited"],
            serde_json::json!({"parent_trace": from.0.to_string_lossy(), "blocks": blocks, "bytes": bytes})
        );
    }
    for ((path, v), sites, lost, reachable) in expect {
        for (f, n, bytes) in sites {
            assert_eq!((allocs(v, f), live(v, f)), (n, bytes), "{f} in {path:?}");
        }
        assert_eq!(v["totals"]["untracked_frees"], 0, "{path:?}");
        let l = leaks_json(path, &[]);
        let kind = |k: &str| l["summary"][k]["bytes"].as_u64().unwrap();
        assert_eq!(kind("definitely_lost"), lost, "{path:?}: {l}");
        assert_eq!(kind("still_reachable"), reachable, "{path:?}");
        // The program's stdio buffer aside (stdout's, allocated at the parent's printf,
        // after the fork): what is not freed is what the leak check found.
        assert_eq!(
            v["totals"]["not_freed_bytes"].as_u64().unwrap() - live(v, "_IO_file_doallocate"),
            lost + reachable,
            "{path:?}"
        );
    }
    // The parent's trace gone: the child's reports still read; the inherited blocks are
    // found by its leak check, without their allocations.
    std::fs::remove_file(parent.0).unwrap();
    let v = report(child.0);
    assert!(v["trace"]["inherited"].is_null());
    assert!(sites_at(&v, "parent_lost").is_empty());
    assert_eq!(live(&v, "child_lost"), 200);
    assert_eq!(v["totals"]["untracked_frees"], 1);
}

#[test]
fn no_follow_records_only_the_first_image() {
    let prog = build_c("forkexec.c", "forkexec");
    let r = run_with(&["--trace-children=yes", "--no-follow"], &prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let traces = r.traces();
    // The parent before exec and its fork child; not the exec'd image.
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert!(traces
        .iter()
        .all(|t| sites_at(&report(t), "alloc_stage2").is_empty()));
    // Without children: the launched image alone.
    let r = run_with(&["--no-follow"], &prog, &[]);
    assert_eq!(r.stdout(), "child exited 0\nstage2 done\n");
    let rep = report(&r.only_trace());
    assert_eq!(sum(&sites_at(&rep, "alloc_parent"), "live_bytes"), 111);
    assert_eq!(rep["trace"]["exit"]["kind"], "exec");
}

/// Valgrind's default, `--trace-children=no`: the launched process and the images its pid
/// execs into are recorded; a forked child runs on with the recorder passive (no trace)
/// and what it execs is not recorded.
#[test]
fn children_are_not_traced_by_default() {
    let prog = build_c("forkexec.c", "forkexec");
    let r = run(&prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "child exited 0\nstage2 done\n");
    let reps: Vec<_> = r.traces().iter().map(|t| report(t)).collect();
    // The image before exec and the one after: one pid, no forked child.
    assert_eq!(reps.len(), 2, "{:?}", r.traces());
    assert_eq!(reps[0]["trace"]["pid"], reps[1]["trace"]["pid"]);
    assert!(reps.iter().all(|v| v["trace"]["forked_from"].is_null()));
    assert!(reps.iter().all(|v| sites_at(v, "alloc_child").is_empty()));
    let err = r.stderr();
    assert!(
        err.contains("==memlens== its process ran 2 programs by exec: "),
        "{err}"
    );

    // A shell loop: one trace (the shell's), whatever it starts; its status passed on.
    let sh = std::path::Path::new("/bin/sh");
    let r = run_with(
        &["-q"],
        sh,
        &[
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; exit 3",
        ],
    );
    assert_eq!(r.output.status.code(), Some(3), "{}", r.stderr());
    assert_eq!(r.traces().len(), 1, "{:?}", r.traces());
}

/// Every way procs.c starts processes (fork loop, fork from a thread, posix_spawn,
/// vfork, system, exec chain, daemon) runs as it does bare with the children passive,
/// and only the launched pid's images are recorded.
#[test]
fn untraced_children_run_as_bare() {
    let prog = build_c("torture/procs.c", "procs-untraced");
    for mode in [
        "forkloop",
        "threadfork",
        "spawn",
        "vfork",
        "system",
        "execchain",
        "daemon",
    ] {
        let r = run_with(&["-q"], &prog, &[mode]);
        let bare = bare(&prog, mode);
        assert_eq!(r.output.stdout, bare.stdout, "{mode}: {}", r.stderr());
        assert_eq!(r.output.status.code(), bare.status.code(), "{mode}");
        let reps: Vec<_> = r.traces().iter().map(|t| report(t)).collect();
        let images = if mode == "execchain" { 6 } else { 1 };
        assert_eq!(reps.len(), images, "{mode}: {:?}", r.traces());
        assert!(
            reps.iter()
                .all(|v| v["trace"]["pid"] == reps[0]["trace"]["pid"]
                    && v["trace"]["truncated"].is_null()),
            "{mode}"
        );
    }
}

/// A shim (a shell script that runs helpers, then execs the real program through
/// `env`), as pyenv's: the summary is of the real program, and says which programs ran;
/// the shell's and env's traces are not kept (they only started it);
/// the shim's helpers are recorded only with --trace-children=yes, and
/// --trace-children-skip leaves out the programs it names.
#[test]
fn a_shim_resolves_to_the_real_program() {
    let prog = build_c("forkexec.c", "forkexec");
    let d = scratch("shim");
    let shim = d.join("shim");
    std::fs::write(
        &shim,
        "#!/bin/sh\nname=$(basename \"$0\")\n/bin/true\nexec /usr/bin/env \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exes = |r: &Run| -> Vec<String> {
        r.traces()
            .iter()
            .map(|t| report(t)["trace"]["exe"].as_str().unwrap().to_string())
            .collect()
    };

    let r = run_with(&[], &shim, &[prog.to_str().unwrap()]);
    assert_eq!(
        r.stdout(),
        "child exited 0\nstage2 done\n",
        "{}",
        r.stderr()
    );
    let err = r.stderr();
    // sh (the shim), env, forkexec, forkexec again (stage 2): one pid. The shell and env
    // only started the program: their traces are not kept.
    assert_eq!(r.traces().len(), 2, "{:?}", exes(&r));
    assert!(
        exes(&r).iter().all(|e| e == prog.to_str().unwrap()),
        "{:?}",
        exes(&r)
    );
    let chain = err
        .lines()
        .find(|l| l.starts_with("==memlens== its process ran 2 programs by exec: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        chain.ends_with(&format!(
            "{p} -> {p}; this summary is of the last",
            p = prog.display()
        )),
        "{chain}"
    );
    assert!(
        err.contains("==memlens== not kept: the traces of the wrappers it ran first (dash -> env), which only started the program by exec")
            || err.contains("==memlens== not kept: the traces of the wrappers it ran first (sh -> env), which only started the program by exec")
            || err.contains("==memlens== not kept: the traces of the wrappers it ran first (bash -> env), which only started the program by exec"),
        "{err}"
    );
    // The summary is stage 2's: its 333 bytes are what is not freed.
    assert!(
        err.contains("==memlens== not freed at exit: 333 B in 1 block\n"),
        "{err}"
    );

    let r = run_with(
        &["-q", "--trace-children=yes"],
        &shim,
        &[prog.to_str().unwrap()],
    );
    let all = exes(&r);
    assert!(all.iter().any(|e| e.ends_with("/basename")), "{all:?}");
    assert!(all.iter().any(|e| e.ends_with("/true")), "{all:?}");

    let r = run_with(
        &[
            "-q",
            "--trace-children=yes",
            "--trace-children-skip=*/basename",
            "--trace-children-skip=/bin/tr?e,*/env",
        ],
        &shim,
        &[prog.to_str().unwrap()],
    );
    assert_eq!(
        r.stdout(),
        "child exited 0\nstage2 done\n",
        "{}",
        r.stderr()
    );
    let some = exes(&r);
    assert!(
        !some
            .iter()
            .any(|e| e.ends_with("/basename") || e.ends_with("/true") || e.ends_with("/env")),
        "{some:?}"
    );
    // env was skipped, and nothing it started was recorded: no forkexec at all.
    assert!(!some.iter().any(|e| e.ends_with("/forkexec")), "{some:?}");
}

fn bare(prog: &std::path::Path, arg: &str) -> std::process::Output {
    Command::new(prog).arg(arg).output().unwrap()
}

#[test]
fn exit_statuses_and_signals_are_passed_on() {
    let prog = build_c("exits.c", "exits");
    for (how, code, sig) in [
        ("return", Some(0), None),
        ("exit3", Some(3), None),
        ("_exit4", Some(4), None),
        ("abort", None, Some(6)),
        ("segv", None, Some(11)),
    ] {
        let r = run_with(&["--quiet"], &prog, &[how]);
        let b = bare(&prog, how);
        assert_eq!(
            r.output.status.code(),
            code,
            "{how}: {:?} {}",
            r.output.status,
            r.stderr()
        );
        assert_eq!(r.output.status.signal(), sig, "{how}");
        assert_eq!(b.status.code(), code, "{how} bare");
        assert_eq!(r.output.stdout, b.stdout, "{how}: stdout differs");
        assert_eq!(r.output.stderr, b.stderr, "{how}: stderr differs (--quiet)");
        let t = r.only_trace();
        let rep = report(&t);
        match how {
            "abort" => assert_eq!(
                rep["trace"]["exit"],
                serde_json::json!({"kind": "signal", "code": 6})
            ),
            "exit3" => assert_eq!(
                rep["trace"]["exit"],
                serde_json::json!({"kind": "exit", "code": 3})
            ),
            "_exit4" => assert_eq!(
                rep["trace"]["exit"],
                serde_json::json!({"kind": "_exit", "code": 4})
            ),
            "return" => assert_eq!(
                rep["trace"]["exit"],
                serde_json::json!({"kind": "exit", "code": 0})
            ),
            _ => {}
        }
        // The 77-byte block from main is in every trace that got flushed.
        if how != "segv" {
            assert_eq!(sum(&sites_at(&rep, "main"), "bytes_allocated"), 77, "{how}");
        }
    }
}

/// Two sites on one line of the program, a std::string's buffer and a std::map node:
/// their stacks differ only in the library code inlined there, and the summary names it
/// ("through"), so that the two lines are not alike.
#[test]
fn sites_on_one_line_are_told_apart_by_what_they_called() {
    let prog = build("g++", "same_line_sites.cpp", "same_line_sites", CXX_FLAGS);
    let r = run(&prog, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "kept 10\n");
    let at = format!(
        "at cache_put(int) (same_line_sites.cpp:{}) [same_line_sites] through ",
        line_of("same_line_sites.cpp", "void cache_put(int k)")
    );
    let err = r.stderr();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(&at) && l.contains(" in 10 blocks "))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    // The library's names are shortened (no template arguments or parameters); its
    // header lines depend on the libstdc++ version.
    for through in [
        "through std::__cxx11::basic_string::basic_string (basic_string.h:",
        "through std::map::operator[] (stl_map.h:",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(through)).count(),
            1,
            "{through}: {err}"
        );
    }
}

#[test]
fn dlopened_then_dlclosed_library_frames_resolve() {
    let plugin = build(
        "gcc",
        "plugin.c",
        "plugin.so",
        &[C_FLAGS, &["-shared", "-fPIC"]].concat(),
    );
    let prog = build_c("dlopen_main.c", "dlopen_main");
    let r = run(&prog, &[plugin.to_str().unwrap()]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let rep = report(&r.only_trace());
    let p = sites_at(&rep, "plugin_alloc");
    assert_eq!(
        (sum(&p, "allocations"), sum(&p, "live_bytes")),
        (1, 4242),
        "{:#}",
        rep["not_freed"]
    );
    let f0 = &p[0]["stack"][0];
    assert!(f0["file"].as_str().unwrap().ends_with("plugin.c"));
    assert_eq!(
        f0["line"].as_u64().unwrap(),
        line_of("plugin.c", "return malloc(4242)")
    );
    assert_eq!(f0["module"], "plugin.so");
    assert_eq!(p[0]["stack"][1]["function"], "main");
}

#[test]
fn rust_program_boxes() {
    let prog = build(
        "rustc",
        "rust_alloc.rs",
        "rust_alloc",
        &["-g", "-C", "opt-level=0"],
    );
    let r = run(&prog, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "rust done 10\n");
    let rep = report(&r.only_trace());
    let b = sites_through(&rep, "rust_alloc::make_boxes");
    assert_eq!(
        (
            sum(&b, "allocations"),
            sum(&b, "bytes_allocated"),
            sum(&b, "live_bytes")
        ),
        (100, 4800, 4800)
    );
    // The summary names the program's line, not Rust's allocation plumbing
    // (`alloc::alloc::alloc`, `alloc::boxed::Box<T>::new`).
    let line = line_of("rust_alloc.rs", "Box::new");
    let err = r.stderr();
    assert!(
        err.contains(&format!(
            "==memlens==   4.69 KiB in 100 blocks at rust_alloc::make_boxes (rust_alloc.rs:{line}) [rust_alloc]\n"
        )),
        "{err}"
    );
}

#[test]
fn summary_goes_to_stderr_and_quiet_silences_it() {
    let prog = build_c("sites.c", "sites");
    let loud = run(&prog, &[]);
    let s = loud.stderr();
    assert!(s.contains("==memlens== not freed at exit:"), "{s}");
    assert!(s.contains("do_calloc"), "top not-freed site missing: {s}");
    let quiet = run_with(&["--quiet"], &prog, &[]);
    assert_eq!(quiet.stderr(), "");
    let out = Command::new(memlens())
        .args(["run", "-o"])
        .arg(scratch("q").join("%p.trace"))
        .arg("--")
        .arg(&prog)
        .env("MEMLENS_QUIET", "1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // --log-file takes the summary instead of stderr.
    let d = scratch("log");
    let log = d.join("memlens.log");
    let out = Command::new(memlens())
        .args(["run", "--log-file"])
        .arg(&log)
        .arg("-o")
        .arg(d.join("%p.trace"))
        .arg("--")
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("==memlens== trace:"));
}

#[test]
fn killed_program_leaves_a_readable_truncated_trace() {
    let prog = build_c("exits.c", "exits");
    let r = run_with(&["--quiet"], &prog, &["kill9"]);
    assert_eq!(r.output.status.signal(), Some(9));
    let rep = report(&r.only_trace());
    assert!(rep["trace"]["truncated"].is_string(), "{}", rep["trace"]);
    assert!(rep["trace"]["exit"].is_null());
    // The text report says so too.
    let o = Command::new(memlens())
        .arg("report")
        .arg(r.only_trace())
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .to_lowercase()
            .contains("truncated"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn programs_that_close_all_fds_or_lower_rlimit_keep_their_files_and_our_trace() {
    let prog = build_c("fds.c", "fds");
    let expected: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    for mode in ["closeall", "rlimit16"] {
        let d = scratch("fds-out");
        let out = d.join("out.txt");
        let r = run_with(&["--quiet"], &prog, &[mode, out.to_str().unwrap()]);
        assert!(r.output.status.success(), "{mode}: {}", r.stderr());
        assert_eq!(r.stdout(), format!("fds {mode} done, fd was 3\n"));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            expected,
            "{mode}: the program's own file was disturbed"
        );
        let rep = report(&r.only_trace());
        assert!(
            rep["trace"]["truncated"].is_null(),
            "{mode}: {}",
            rep["trace"]
        );
        let w = sites_at(&rep, "work");
        assert_eq!(
            (sum(&w, "allocations"), sum(&w, "live_bytes")),
            (5000, 200_000),
            "{mode}"
        );
    }
}

#[test]
fn installed_layout_finds_the_recorder() {
    let prefix = scratch("prefix");
    let bin = prefix.join("bin");
    let lib = prefix.join("lib/memlens");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let exe = memlens();
    std::fs::copy(&exe, bin.join("memlens")).unwrap();
    // Another test thread that forks while the copy's write descriptor is open hands it
    // to a child until that child execs: running the copy then fails with ETXTBSY.
    // Wait for those children to exec, by retrying that one error.
    for _ in 0..100 {
        match Command::new(bin.join("memlens")).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => break,
        }
    }
    let prog = build_c("sites.c", "sites");
    // Without the library next to it, memlens says where it looked.
    let o = Command::new(bin.join("memlens"))
        .args(["run", "-q", "--"])
        .arg(&prog)
        .current_dir(&prefix)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot find the recorder library"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::copy(
        exe.with_file_name("libmemlens_preload.so"),
        lib.join("libmemlens_preload.so"),
    )
    .unwrap();
    let o = Command::new(bin.join("memlens"))
        .args(["run", "-q", "--"])
        .arg(&prog)
        .current_dir(&prefix)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "sites done 6\n");
    let traces: Vec<_> = std::fs::read_dir(&prefix)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".trace"))
        .collect();
    assert_eq!(traces.len(), 1);
}

#[test]
fn rss_is_sampled_while_the_program_does_not_allocate() {
    let prog = build_c("exits.c", "exits");
    let r = run_with(&["--quiet", "--rss-interval", "10"], &prog, &["sleep300"]);
    assert!(r.output.status.success());
    let reader = memlens_trace::reader::TraceReader::open(r.only_trace()).unwrap();
    let samples = reader
        .events()
        .filter(|e| matches!(e, Ok(memlens_trace::reader::Event::Rss { .. })))
        .count();
    // 300 ms at 10 ms: about 30. The bound only proves sampling does not depend on
    // allocations (the program makes a handful, all before the sleep).
    assert!(samples >= 3, "{samples} RSS samples");
    // With sampling off there are none, and no sampler thread.
    let r = run_with(&["--quiet", "--rss-interval", "0"], &prog, &["sleep300"]);
    let reader = memlens_trace::reader::TraceReader::open(r.only_trace()).unwrap();
    assert_eq!(
        reader
            .events()
            .filter(|e| matches!(e, Ok(memlens_trace::reader::Event::Rss { .. })))
            .count(),
        0
    );
}

#[test]
fn posix_spawn_vfork_system_and_allocating_signal_handlers() {
    let prog = build_c("spawn.c", "spawn");
    // The children run exits.c ("spawned"/"vforked" are unknown modes: plain return 0).
    let child = build_c("exits.c", "exits");
    let r = run_with(
        &["--quiet", "--trace-children=yes"],
        &prog,
        &[child.to_str().unwrap()],
    );
    let bare = Command::new(&prog).arg(&child).output().unwrap();
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(
        r.stdout(),
        "signals 100\nending by spawned\nposix_spawn 0\nending by vforked\nvfork 0\nsystem 7\n"
    );
    assert_eq!(r.output.stdout, bare.stdout);
    let reps: Vec<_> = r.traces().iter().map(|t| report(t)).collect();
    let main = reps
        .iter()
        .find(|v| v["trace"]["exe"].as_str().unwrap().ends_with("/spawn"))
        .expect("spawn's trace");
    let h = sites_at(main, "on_signal");
    assert_eq!((sum(&h, "allocations"), sum(&h, "live_bytes")), (100, 3200));
    // The posix_spawn'ed and the vfork+exec'd children each wrote a trace of exits.
    let children: Vec<_> = reps
        .iter()
        .filter(|v| v["trace"]["exe"].as_str().unwrap().ends_with("/exits"))
        .collect();
    let mut modes: Vec<&str> = children
        .iter()
        .map(|v| v["trace"]["argv"][1].as_str().unwrap())
        .collect();
    modes.sort();
    assert_eq!(modes, ["spawned", "vforked"]);
    assert!(children
        .iter()
        .all(|v| v["trace"]["exit"]["kind"] == "exit"));
}

#[test]
fn unwind_caches_change_no_stack() {
    let prog = build_c("recursion.c", "recursion");
    let cached = run_with(&["--quiet"], &prog, &[]);
    let d = scratch("nocache");
    let out = Command::new(memlens())
        .args(["run", "--quiet", "-o"])
        .arg(d.join("%n.%p.trace"))
        .arg("--")
        .arg(&prog)
        .env("MEMLENS_UNWIND_CACHE", "0")
        .output()
        .unwrap();
    assert!(cached.output.status.success() && out.status.success());
    let a = site_counts(&report(&cached.only_trace()));
    let trace = std::fs::read_dir(&d)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let b = site_counts(&report(&trace));
    assert_eq!(a, b);
    // The recursion gives many distinct stacks, at many depths.
    let leaf_sites = a
        .keys()
        .filter(|k| k.starts_with("\"malloc\" <- \"leaf\""))
        .count();
    assert!(leaf_sites >= 40, "{leaf_sites} leaf stacks");
}

#[test]
fn full_disk_warns_once_and_keeps_what_was_written() {
    let prog = build_c("fds.c", "fds");
    let d = scratch("fsize-out");
    let out = d.join("out.txt");
    let r = run_with(&["--quiet"], &prog, &["fsize", out.to_str().unwrap()]);
    // The program is not disturbed: same output, same exit status, its file complete.
    assert!(r.output.status.success(), "{}", r.stderr());
    assert_eq!(r.stdout(), "fds fsize done, fd was 3\n");
    let expected: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    // One warning, then silence.
    let stderr = r.stderr();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memlens: cannot write the trace"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr());
    assert!(
        warnings[0].contains("File too large") && warnings[0].contains("the program runs on"),
        "{}",
        warnings[0]
    );
    // The trace stops at the limit, reads back, and says it was cut short.
    let trace = r.only_trace();
    assert_eq!(std::fs::metadata(&trace).unwrap().len(), 64 << 10);
    let rep = report(&trace);
    assert!(rep["trace"]["truncated"].is_string(), "{}", rep["trace"]);
    assert!(rep["totals"]["allocations"].as_u64().unwrap() > 0);
}

/// The site's stack is its first frame, called by main.
fn assert_called_from_main(site: &serde_json::Value) {
    let names: Vec<&str> = frames(site)
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert_eq!(names[1], "main", "{names:?}");
    assert_eq!(names[2..], BELOW_MAIN, "{names:?}");
}

/// Allocation wrappers (Valgrind's `--alloc-fn`): a well-known one (`xmalloc`) and one
/// given on the command line are treated as the allocator, so stacks start at their
/// callers; labels that would still be the same say where the stacks part.
#[test]
fn alloc_fn_wrappers_start_stacks_at_their_callers_and_labels_differ() {
    let prog = build_c("wrappers.c", "wrappers");
    let r = run(&prog, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "wrappers done\n");
    let trace = r.only_trace();
    let at = |func: &str, marker: &str| {
        format!(
            "{func} (wrappers.c:{}) [wrappers]",
            line_of("wrappers.c", marker)
        )
    };

    // xmalloc is built in: its sites start at keep_a and keep_b.
    let rep = report(&trace);
    for (func, bytes) in [("keep_a", 100), ("keep_b", 200)] {
        let s = sites_at(&rep, func);
        assert_eq!(s.len(), 1, "{func}: {rep:#}");
        assert_eq!(s[0]["live_bytes"], bytes);
        assert_called_from_main(s[0]);
    }
    // my_alloc is not: two sites at it, each label with the caller that tells them apart.
    let mine = sites_at(&rep, "my_alloc");
    assert_eq!(mine.len(), 2);
    let my_alloc = at("my_alloc", "my_alloc's call");
    let summary = r.stderr();
    for (func, bytes) in [("keep_d", 400), ("keep_c", 300)] {
        let caller = at(func, &format!("void {func}(void)"));
        let line = format!("==memlens==   {bytes} B in 1 block at {my_alloc} via {caller}\n");
        assert!(summary.contains(&line), "{line}{summary}");
    }
    let line = format!(
        "==memlens==   200 B in 1 block at {}\n",
        at("keep_b", "void keep_b(void)")
    );
    assert!(summary.contains(&line), "{line}{summary}");
    // The web page's chart legend: the same labels.
    let page = r.dir.join("wrappers.html");
    let o = Command::new(memlens())
        .arg("html")
        .arg(&trace)
        .arg("-o")
        .arg(&page)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(page).unwrap();
    for func in ["keep_c", "keep_d"] {
        let caller = at(func, &format!("void {func}(void)"));
        let label = format!("\"at\":\"{my_alloc} via {caller}\"");
        assert_eq!(page.matches(&label).count(), 1, "{label}");
    }

    // --alloc-fn=my_alloc, when reading the trace or when running.
    let o = Command::new(memlens())
        .args(["report", "--format", "json", "--alloc-fn=my_alloc"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(o.status.success());
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(sites_at(&rep, "my_alloc").is_empty(), "{rep:#}");
    for (func, bytes) in [("keep_c", 300), ("keep_d", 400)] {
        let s = sites_at(&rep, func);
        assert_eq!(s.len(), 1, "{func}: {rep:#}");
        assert_eq!(s[0]["live_bytes"], bytes);
        assert_called_from_main(s[0]);
    }
    let r = run_with(&["--alloc-fn", "my_alloc"], &prog, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    let line = format!(
        "==memlens==   400 B in 1 block at {}\n",
        at("keep_d", "void keep_d(void)")
    );
    assert!(r.stderr().contains(&line), "{line}{}", r.stderr());
    assert!(!r.stderr().contains("my_alloc"), "{}", r.stderr());
}

/// `memlens run` adds three variables to the program's environment: LD_PRELOAD,
/// MEMLENS_CONFIG (every setting of the recorder's, one line each) and PYTHONMALLOC.
/// Programs that copy their environment (perl, make) then show about the blocks they do
/// under memcheck, not three more per setting. The settings reach the recorder: the
/// trace is where `-o` says, though a newline is in its directory's name (and memlens,
/// which learns the traces' paths from a manifest, prints its summary), and `--depth 3`
/// keeps three return addresses.
#[test]
fn the_program_gets_three_variables_and_the_recorder_every_setting() {
    let dir = scratch("settings\nin one variable");
    let o = Command::new(memlens())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["run", "--depth", "3", "-o"])
        .arg(dir.join("env.trace"))
        .args(["--", "/usr/bin/env", "-0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // memlens found the trace (its manifest of trace paths holds any path) for its summary.
    assert!(
        err.contains("==memlens== ") && err.contains(" allocations, "),
        "{err}"
    );
    let mut names: Vec<String> = o
        .stdout
        .split(|&c| c == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8_lossy(e);
            e.split('=').next().unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["LD_PRELOAD", "MEMLENS_CONFIG", "PATH", "PYTHONMALLOC"]
    );
    let rep = report(&dir.join("env.trace"));
    let sites = rep["hotspots"]["by_allocations"].as_array().unwrap();
    assert!(!sites.is_empty());
    // Three return addresses; a function inlined at one is shown as a frame of its own.
    let depth = |s: &&serde_json::Value| frames(s).iter().filter(|f| f["inlined"] == false).count();
    assert!(sites.iter().all(|s| depth(&s) <= 3), "{sites:?}");
    assert!(sites.iter().any(|s| depth(&s) == 3), "{sites:?}");
}

/// `memlens leaks` of a run without its leak check says why there is none as far as the
/// trace tells: `--leak-check=no` for a process that exited, not "killed or replaced by
/// exec" (which it said for every trace without a scan).
#[test]
fn leaks_of_a_run_without_its_leak_check_says_why() {
    let prog = build_c("exits.c", "exits");
    let r = run_with(&["--leak-check=no"], &prog, &["return"]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let o = Command::new(memlens())
        .arg("leaks")
        .arg(r.only_trace())
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "No leak check: the trace has no exit scan (the run had --leak-check=no, or the scan \
         could not run).\n"
    );
}

/// A program that execs with an environment of its own making, keeping LD_PRELOAD but
/// not MEMLENS_CONFIG (and after a chdir): the new image records with memlens run's
/// settings, into the trace `-o` names, so that the summary and `memlens check` see its
/// leak. (It recorded with the defaults, into its new working directory, unknown to
/// memlens run, whose summary said the new image was not recorded; check passed.)
#[test]
fn an_exec_with_its_own_environment_keeps_the_settings() {
    let prog = build_c("exec_own_env.c", "exec_own_env");
    let dir = scratch("exec-own-env");
    let cwd = dir.join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let o = Command::new(memlens())
        .args(["check", "-o"])
        .arg(dir.join("%n.%p.trace"))
        .arg("--")
        .arg(&prog)
        .arg(&cwd)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "child FOO=custom\n");
    // The leak fails the check.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("definitely lost: 4,444 bytes in 1 blocks"),
        "{err}"
    );
    assert!(err.contains("ran 2 programs by exec"), "{err}");
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "a trace in the new cwd"
    );
    let traces = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".trace")
        })
        .count();
    assert_eq!(traces, 2, "{err}");
}

/// `memlens leaks` of a trace whose program is gone since says so on stderr, as `report`
/// does, instead of showing offsets without a word.
#[test]
fn leaks_warns_when_the_program_is_gone() {
    let prog = build_c("leak_at_exit.c", "leak_at_exit");
    let dir = scratch("leaks-gone");
    let copy = dir.join("gone_soon");
    std::fs::copy(&prog, &copy).unwrap();
    let r = run(&copy, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    std::fs::remove_file(&copy).unwrap();
    let o = Command::new(memlens())
        .arg("leaks")
        .arg(r.only_trace())
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "memlens: warning: {} no longer exists, so its frames are shown as offsets\n",
            copy.display()
        )
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("by gone_soon+0x"));
}
