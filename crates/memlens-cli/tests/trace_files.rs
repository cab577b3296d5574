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
    let o = run_in(&dir, "%n.%p.trace", &[], &prog, &[]);
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
