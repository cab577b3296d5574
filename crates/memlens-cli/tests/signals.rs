//! Fatal signals (tests/programs/signals.c): the leak check runs before the process dies
//! by a signal it does not handle, the process still dies by that signal, and what the
//! program sees of its own signal dispositions is what it would see without memlens.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Built once: the tests run in parallel threads.
fn program() -> std::path::PathBuf {
    static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| build_c("signals.c", "signals")).clone()
}

fn exit_of(trace: &Path) -> (String, i64) {
    let r = report(trace);
    (
        r["trace"]["exit"]["kind"].as_str().unwrap().to_string(),
        r["trace"]["exit"]["code"].as_i64().unwrap(),
    )
}

/// Bare run vs memlens run: same stdout, same exit status or signal.
fn same_as_bare(mode: &str) -> Run {
    let exe = program();
    let bare = Command::new(&exe).arg(mode).output().unwrap();
    let run = run_with(&["-q"], &exe, &[mode]);
    assert_eq!(run.output.stdout, bare.stdout, "{mode}: stdout");
    assert_eq!(run.output.status.code(), bare.status.code(), "{mode}");
    assert_eq!(run.output.status.signal(), bare.status.signal(), "{mode}");
    run
}

#[test]
fn a_segfault_is_scanned_and_still_kills() {
    let run = same_as_bare("segv");
    assert_eq!(run.output.status.signal(), Some(libc::SIGSEGV));
    let trace = run.only_trace();
    assert_eq!(exit_of(&trace), ("signal".to_string(), 11));
    let v = leaks_json(&trace, &[]);
    assert_eq!(amount(&v["summary"]["definitely_lost"]), (777, 1));
    assert_eq!(amount(&v["summary"]["still_reachable"]), (1000, 1));
    assert_eq!(v["records"][0]["stack"][0]["function"], "lose");
}

#[test]
fn sig_dfl_put_back_by_the_program_is_still_scanned() {
    let run = same_as_bare("reset");
    assert_eq!(run.output.status.signal(), Some(libc::SIGINT));
    let trace = run.only_trace();
    assert_eq!(exit_of(&trace), ("signal".to_string(), libc::SIGINT as i64));
    assert_eq!(
        amount(&leaks_json(&trace, &[])["summary"]["definitely_lost"]),
        (777, 1)
    );
}

#[test]
fn the_programs_own_handler_runs() {
    let run = same_as_bare("handler");
    assert_eq!(run.stdout(), "handled\n");
    assert_eq!(run.output.status.code(), Some(3));
    let trace = run.only_trace();
    assert_eq!(exit_of(&trace), ("_exit".to_string(), 3));
}

#[test]
fn dispositions_read_back_as_the_program_left_them() {
    let run = same_as_bare("query");
    assert_eq!(
        run.stdout(),
        "SIGTERM default flags 0\nSIGUSR1 was default\nSIGUSR1 was handler\n\
         SIGUSR1 was default\nSIGPIPE default\n"
    );
}

/// SIGTERM from outside while the program allocates in a loop: the signal often lands
/// inside the recorder, which then handles it on the hook's way out. Either way the
/// leak check is complete and memlens dies by SIGTERM too.
#[test]
fn sigterm_from_outside_during_allocations() {
    let exe = program();
    for round in 0..5 {
        let dir = scratch("signals-loop");
        let mut child = Command::new(memlens())
            .arg("run")
            .arg("-q")
            .arg("-o")
            .arg(dir.join("%p.trace"))
            .arg("--")
            .arg(&exe)
            .arg("loop")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid: i32 = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        // SAFETY: kill(2) on the program's pid, which is alive (it is looping).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "round {round}");
        let run = Run {
            output: std::process::Output {
                status,
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
            dir,
        };
        let trace = run.only_trace();
        assert_eq!(exit_of(&trace), ("signal".to_string(), 15), "round {round}");
        let v = leaks_json(&trace, &[]);
        assert_eq!(
            amount(&v["summary"]["definitely_lost"]),
            (777, 1),
            "round {round}: {}",
            v["summary"]
        );
        // The 100 kept blocks, and perhaps the loop's 64-byte block in flight.
        let (bytes, blocks) = amount(&v["summary"]["still_reachable"]);
        assert!(
            (bytes, blocks) == (100_000, 100) || (bytes, blocks) == (100_064, 101),
            "round {round}: still reachable {bytes} bytes in {blocks} blocks"
        );
    }
}

/// A signal handler of the program that calls `_exit` (or `exit`) while its thread is
/// inside the recorder (in a hook, holding its buffer or the writer's lock) ends the
/// process with the handler's status: it used to hang, spinning on a lock the
/// interrupted hook held, about one run in two. The trace reads back (cut short when the
/// handler interrupted the recorder).
#[test]
fn exit_from_a_handler_that_interrupted_a_hook_does_not_hang() {
    let exe = build_c("exit_in_handler.c", "exit_in_handler");
    for (arg, status) in [("_exit", 3), ("exit", 4)] {
        for i in 0..12 {
            let dir = scratch("exit-in-handler");
            let mut cmd = Command::new(memlens());
            cmd.args(["run", "-q", "-o"])
                .arg(dir.join("t.trace"))
                .arg("--")
                .arg(&exe)
                .arg(arg);
            let (o, _) = run_guarded(
                cmd,
                std::time::Duration::from_secs(60),
                &format!("{arg} #{i}"),
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(status), "{arg} #{i}: {err}");
            let r = report(&dir.join("t.trace"));
            assert!(
                r["totals"]["allocations"].as_u64().unwrap() > 0,
                "{arg} #{i}"
            );
        }
    }
}
