//! The trace files `memlens run` writes: their names (`-o`, a directory, a name used
//! again), their mode, and what the summary says about them.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// `memlens run -o <output> [extra] -- prog args` in `dir`, with umask 022 (the usual one:
/// a file created 0644 would stay 0644).
fn run_in(dir: &Path, output: &str, extra: &[&str], prog: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(memlens())
        .arg("run")
        .arg("-o")
        .arg(output)
        .args(extra)
        .arg("--")
        .arg(prog)
        .args(args)
        .current_dir(dir);
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The names of the files in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The permission bits, in octal.
fn mode(p: &Path) -> String {
    format!(
        "{:o}",
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    )
}

/// Item 4 of issue 15: a trace holds argv and heap addresses; only its owner reads it.
#[test]
fn traces_are_created_owner_only() {
    let prog = build_c("forkexec.c", "forkexec");
    let dir = scratch("trace-mode");
    let o = run_in(&dir, "%n.%p.trace", &["--trace-children=yes"], &prog, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let traces = names(&dir);
    assert_eq!(traces.len(), 3, "{traces:?}");
    for t in &traces {
        assert_eq!(mode(&dir.join(t)), "600", "{t}");
    }
}

/// `memlens run` of exits.c (one process, one 77-byte malloc, exit 0) with `-o <output>`.
fn run_exits(dir: &Path, output: &str) -> Output {
    let prog = build_c("exits.c", "exits");
    run_in(dir, output, &[], &prog, &["return"])
}

/// The summary's `trace:` line.
fn summary_trace(o: &Output) -> String {
    let err = stderr(o);
    err.lines()
        .find_map(|l| l.strip_prefix("==memlens== trace: "))
        .unwrap_or_else(|| panic!("no trace line in:\n{err}"))
        .to_string()
}

/// Item 3 of issue 15: `-o DIR/` and `-o DIR` (an existing directory) put the trace
/// inside it with the default name; `-o missing/` is refused before the program starts.
#[test]
fn output_naming_a_directory_puts_the_traces_inside() {
    for (arg, sub) in [("out/", "out"), ("out2", "out2"), ("./out3/", "out3")] {
        let dir = scratch("trace-dir");
        std::fs::create_dir(dir.join(sub)).unwrap();
        let o = run_exits(&dir, arg);
        assert_eq!(o.status.code(), Some(0), "{arg}: {}", stderr(&o));
        let inside = names(&dir.join(sub));
        assert_eq!(inside.len(), 1, "{arg}: {inside:?}");
        assert!(
            inside[0].starts_with("memlens.exits.") && inside[0].ends_with(".trace"),
            "{arg}: {inside:?}"
        );
        let trace = dir.join(sub).join(&inside[0]);
        assert_eq!(
            Path::new(&summary_trace(&o)).canonicalize().unwrap(),
            trace.canonicalize().unwrap()
        );
        assert_eq!(names(&dir), [sub], "{arg}: nothing written beside it");
    }
    let dir = scratch("trace-dir-missing");
    let o = run_exits(&dir, "missing/");
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(
        stderr(&o),
        format!(
            "memlens: error: cannot write traces to {}: no such directory\n",
            dir.canonicalize().unwrap().join("missing").display()
        )
    );
    assert!(o.stdout.is_empty(), "the program did not start");
    assert!(names(&dir).is_empty());
}

/// The summary's `trace:` file and the files it lists after it, as names in `dir`.
fn summary_names(o: &Output, dir: &Path) -> (String, Vec<String>) {
    let name = |p: &str| {
        Path::new(p)
            .strip_prefix(dir)
            .unwrap_or_else(|_| panic!("{p} is not in {}", dir.display()))
            .to_string_lossy()
            .into_owned()
    };
    let main = name(&summary_trace(o));
    let err = stderr(o);
    let mut others: Vec<String> = err
        .lines()
        .skip_while(|l| !l.contains("more process trace(s):"))
        .skip(1)
        .map_while(|l| l.strip_prefix("==memlens==   "))
        .map(name)
        .collect();
    others.sort();
    (main, others)
}

fn trace_report(p: &Path) -> serde_json::Value {
    let o = Command::new(memlens())
        .args(["report", "--format", "json", "--top", "1"])
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `memlens report` of a trace, as text.
fn report_text(p: &Path) -> String {
    let o = Command::new(memlens())
        .arg("report")
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The file name of the program a trace recorded.
fn exe_of(p: &Path) -> String {
    let r = trace_report(p);
    let exe = r["trace"]["exe"].as_str().unwrap();
    exe.rsplit('/').next().unwrap().to_string()
}

/// Item 2 of issue 15: running again with the same `-o` replaces the earlier run's file
/// (and a suffixed name this run needs); suffixes number the images of one run that share
/// the name (an exec chain keeps its pid); the summary names every file.
#[test]
fn same_output_again_replaces_the_earlier_run() {
    let dir = scratch("trace-again");
    let dir = dir.canonicalize().unwrap();
    let first = run_exits(&dir, "t.trace");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(names(&dir), ["t.trace"]);
    // A file with a suffix this run will use, from before it, readable by all.
    std::fs::write(dir.join("t.trace.3"), "an earlier file\n").unwrap();
    std::fs::set_permissions(dir.join("t.trace.3"), PermissionsExt::from_mode(0o644)).unwrap();

    // One process, six images: execl, execle, execv, execvp, execve; the last exits 6.
    let procs = build_c("torture/procs.c", "torture-procs");
    let o = run_in(&dir, "t.trace", &[], &procs, &["execchain"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let expected: Vec<String> = std::iter::once("t.trace".to_string())
        .chain((1..=5).map(|k| format!("t.trace.{k}")))
        .collect();
    assert_eq!(names(&dir), expected);
    for (k, name) in expected.iter().enumerate() {
        let p = dir.join(name);
        assert_eq!(mode(&p), "600", "{name}");
        assert_eq!(exe_of(&p), "torture-procs", "{name}");
        let r = trace_report(&p);
        let stage = r["trace"]["argv"][2].as_str().unwrap_or("0");
        assert_eq!(stage, k.to_string(), "{name}");
    }
    let (main, others) = summary_names(&o, &dir);
    assert_eq!(main, "t.trace.5");
    assert_eq!(others, expected[..5]);
}

/// A name taken by a file that is not a trace is replaced too (as a compiler's `-o`
/// does); a symbolic link is never followed: its target stays, the trace takes a suffix.
#[test]
fn earlier_files_are_replaced_but_links_not_followed() {
    let dir = scratch("trace-replace");
    let dir = dir.canonicalize().unwrap();
    std::fs::write(dir.join("notes.trace"), "not a trace\n").unwrap();
    let o = run_exits(&dir, "notes.trace");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(names(&dir), ["notes.trace"]);
    assert_eq!(exe_of(&dir.join("notes.trace")), "exits");
    assert_eq!(summary_names(&o, &dir), ("notes.trace".into(), vec![]));

    std::fs::write(dir.join("target.txt"), "keep\n").unwrap();
    std::os::unix::fs::symlink("target.txt", dir.join("link.trace")).unwrap();
    let o = run_exits(&dir, "link.trace");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("target.txt")).unwrap(),
        "keep\n"
    );
    assert!(std::fs::symlink_metadata(dir.join("link.trace"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(summary_names(&o, &dir), ("link.trace.1".into(), vec![]));
    assert_eq!(exe_of(&dir.join("link.trace.1")), "exits");
}

const NOT_RECORDED: &str =
    "==memlens== warning: the program replaced itself with exec and the new \
image was not recorded: the program took the recorder out of LD_PRELOAD (removed or replaced it) \
before exec'ing; this summary describes only the image before the exec\n";

/// Item 6 of issue 15: a program that execs itself after removing the recorder from
/// LD_PRELOAD (unsetenv, another library, an environment of its own): the summary and
/// the report say that the new image was not recorded, and why.
#[test]
fn exec_without_the_recorder_says_the_new_image_was_not_recorded() {
    let prog = build_c("reexec.c", "reexec");
    for mode in ["unset", "replace", "emptyenv"] {
        let dir = scratch("reexec");
        let o = run_in(&dir, "%n.%p.trace", &[], &prog, &[mode]);
        assert_eq!(o.status.code(), Some(0), "{mode}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "new image\n", "{mode}");
        let traces = names(&dir);
        assert_eq!(traces.len(), 1, "{mode}: {traces:?}");
        let trace = dir.join(&traces[0]);
        let r = trace_report(&trace);
        assert_eq!(r["trace"]["exit"]["kind"], "exec", "{mode}");
        assert_eq!(r["trace"]["exit"]["code"], 1, "{mode}");
        let err = stderr(&o);
        assert_eq!(err.matches(NOT_RECORDED).count(), 1, "{mode}:\n{err}");
        let text = report_text(&trace);
        assert!(
            text.contains("\n  ended      replaced itself with exec after ",)
                && text.contains(
                    "\n  note       the new image was not recorded: the program took the recorder \
                 out of LD_PRELOAD (removed or replaced it) before exec'ing\n"
                ),
            "{mode}:\n{text}"
        );
    }
}

/// A shell the program execs on its way (program -> sh -> program) is one of its images,
/// not a wrapper run first: its trace is kept and the chain names it.
#[test]
fn a_shell_in_the_middle_of_an_exec_chain_is_named() {
    let prog = build_c("reexec.c", "reexec");
    let dir = scratch("reexec-shell");
    let o = run_in(&dir, "%n.%p.trace", &[], &prog, &["shell"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(names(&dir).len(), 3, "{:?}", names(&dir));
    let err = stderr(&o);
    let chain = err
        .lines()
        .find(|l| l.starts_with("==memlens== its process ran 3 programs by exec: "))
        .unwrap_or_else(|| panic!("{err}"));
    let images: Vec<&str> = chain
        .trim_start_matches("==memlens== its process ran 3 programs by exec: ")
        .trim_end_matches("; this summary is of the last")
        .split(" -> ")
        .collect();
    assert_eq!(images.len(), 3, "{chain}");
    assert_eq!(images[0], prog.to_str().unwrap());
    assert!(
        ["sh", "dash", "bash"].contains(&images[1].rsplit('/').next().unwrap()),
        "{chain}"
    );
    assert_eq!(images[2], prog.to_str().unwrap());
    assert!(!err.contains("not kept"), "{err}");
    assert!(
        err.contains("definitely lost: 1,000 bytes in 1 blocks"),
        "{err}"
    );
}

/// The recorder kept: the new image has its own trace, which the summary describes, and
/// nothing is said; with --no-follow, the summary says why the new image has no trace.
#[test]
fn exec_keeping_the_recorder_is_followed_silently() {
    let prog = build_c("reexec.c", "reexec");
    let dir = scratch("reexec-keep");
    let o = run_in(&dir, "%n.%p.trace", &[], &prog, &["keep"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(names(&dir).len(), 2);
    let err = stderr(&o);
    assert!(!err.contains("not recorded"), "{err}");
    assert!(
        err.contains("definitely lost: 1,000 bytes in 1 blocks"),
        "{err}"
    );

    let dir = scratch("reexec-nofollow");
    let o = run_in(&dir, "%n.%p.trace", &["--no-follow"], &prog, &["keep"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let traces = names(&dir);
    assert_eq!(traces.len(), 1);
    assert_eq!(
        trace_report(&dir.join(&traces[0]))["trace"]["exit"]["code"],
        2
    );
    let err = stderr(&o);
    assert!(
        err.contains(
            "==memlens== warning: the program replaced itself with exec and the new image was \
             not recorded: --no-follow was given; this summary describes only the image before \
             the exec\n"
        ),
        "{err}"
    );
}

/// Item 5 of issue 15: a command line longer than the 64 KiB a trace keeps is cut between
/// arguments, and the trace says how many arguments (and bytes) were left out.
#[test]
fn long_command_lines_are_cut_between_arguments_and_say_so() {
    let prog = build_c("exits.c", "exits");
    let dir = scratch("argv-long");
    // 70 arguments of 1000 bytes (1001 with the NUL), each starting with its number.
    let long: Vec<String> = (0..70)
        .map(|i| format!("{i:03}{}", "x".repeat(997)))
        .collect();
    let mut args = vec!["return"];
    args.extend(long.iter().map(String::as_str));
    let o = run_in(&dir, "t.trace", &[], &prog, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let trace = dir.join("t.trace");
    let r = trace_report(&trace);
    let argv: Vec<&str> = r["trace"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // argv[0] is the path as given, then "return": whole arguments up to 65,536 bytes.
    let head = prog.to_str().unwrap().len() + 1 + "return".len() + 1;
    let kept = (65_536 - head) / 1001;
    assert_eq!(argv.len(), 2 + kept);
    assert_eq!(argv[0], prog.to_str().unwrap());
    assert_eq!(argv[1], "return");
    assert_eq!(argv[2..], long[..kept]);
    let omitted = 70 - kept;
    assert_eq!(
        r["trace"]["argv_omitted"],
        serde_json::json!({"arguments": omitted, "bytes": omitted * 1001})
    );
    let text = report_text(&trace);
    // (The size is printed as memlens prints sizes; JSON above has the exact bytes.)
    let note = text
        .lines()
        .find(|l| l.starts_with("  note       the command line was cut: "))
        .unwrap_or_else(|| panic!("no note in:\n{text}"));
    assert!(
        note.starts_with(&format!(
            "  note       the command line was cut: {omitted} more arguments ("
        )) && note.ends_with(" KiB) not recorded, past the first 64.00 KiB"),
        "{note}"
    );

    // A short command line is whole, and the report says nothing.
    let o = run_in(&dir, "short.trace", &[], &prog, &["return", "a", "b"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = trace_report(&dir.join("short.trace"));
    assert_eq!(r["trace"]["argv"].as_array().unwrap().len(), 4);
    assert!(r["trace"]["argv_omitted"].is_null());
}
