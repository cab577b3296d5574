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
