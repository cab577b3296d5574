//! `memlens run` refuses what it cannot record with one sentence and a documented code.

mod common;

use common::*;
use std::process::Command;

fn memlens_run(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(memlens())
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn one_line(s: &str) {
    assert_eq!(s.trim_end().lines().count(), 1, "not one line: {s:?}");
    assert!(!s.contains("panicked"), "{s}");
}

#[test]
fn missing_program() {
    let (code, err) = memlens_run(&["--", "no-such-program-memlens-test"]);
    assert_eq!(code, Some(127));
    assert!(
        err.contains("cannot find program 'no-such-program-memlens-test'"),
        "{err}"
    );
    one_line(&err);
    let (code, err) = memlens_run(&["--", "./no/such/file"]);
    assert_eq!(code, Some(127));
    one_line(&err);
}

#[test]
fn static_program_is_refused() {
    let prog = build("gcc", "exits.c", "exits-static", &["-static", "-O1"]);
    let (code, err) = memlens_run(&["--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("is statically linked") && err.contains("LD_PRELOAD"),
        "{err}"
    );
    one_line(&err);
}

#[test]
fn non_executable_and_directory() {
    let d = scratch("noexec");
    let f = d.join("data.txt");
    std::fs::write(&f, "hello").unwrap();
    let (code, err) = memlens_run(&["--", f.to_str().unwrap()]);
    assert_eq!(code, Some(126));
    assert!(err.contains("not executable"), "{err}");
    let (code, err) = memlens_run(&["--", d.to_str().unwrap()]);
    assert_eq!(code, Some(126));
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn unwritable_output_directory() {
    let prog = build_c("exits.c", "exits");
    let (code, err) = memlens_run(&[
        "-o",
        "/nonexistent-dir-memlens/%p.trace",
        "--",
        prog.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("cannot write traces to /nonexistent-dir-memlens"),
        "{err}"
    );
    one_line(&err);
    let (code, err) = memlens_run(&["-o", "/proc/memlens-%p.trace", "--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    one_line(&err);
}

#[test]
fn unknown_flag_is_an_error() {
    let (code, err) = memlens_run(&["--no-such-flag", "--", "true"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn report_of_non_trace() {
    let d = scratch("nontrace");
    let f = d.join("x.trace");
    std::fs::write(&f, vec![7u8; 1000]).unwrap();
    let o = Command::new(memlens())
        .arg("report")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a memlens trace"), "{err}");
    one_line(&err);
}

#[test]
fn setuid_program_is_refused() {
    // A setuid program owned by someone else: the loader ignores LD_PRELOAD for it.
    // As root, make one (a copy owned by nobody); otherwise any setuid-root tool will do.
    // SAFETY: geteuid has no preconditions.
    let prog = if unsafe { libc::geteuid() } == 0 {
        let d = scratch("setuid");
        let p = d.join("exits-setuid");
        std::fs::copy(build_c("exits.c", "exits"), &p).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        p
    } else {
        [
            "/usr/bin/su",
            "/bin/su",
            "/usr/bin/passwd",
            "/usr/bin/mount",
        ]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("a setuid-root program")
    };
    let (code, err) = memlens_run(&["--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("is setuid/setgid") && err.contains("LD_PRELOAD"),
        "{err}"
    );
    one_line(&err);
}
