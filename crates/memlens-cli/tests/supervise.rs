//! The child supervisor shared by `memlens run`, `check` and `watch -- PROGRAM`
//! (`src/supervise.rs`): signals sent to memlens by a process reach the program, the
//! terminal's Ctrl-C reaches it once and does not stop memlens, and memlens exits as the
//! program did, its trace complete. The programs say they are ready by creating a file;
//! the tests wait for that file, never for a length of time.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Wait until `path` exists. The limit only catches a hang; it is no timing assertion.
fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("memlens ended ({s}) before {} appeared", path.display());
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{} did not appear (hang?)", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn send(child: &Child, sig: i32) {
    // SAFETY: kill(2) on memlens's pid, which has not been reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// `memlens COMMAND -q ... -- sh -c SCRIPT sh DIR`: the script finds its directory in
/// `$1`.
fn memlens_sh(command: &str, dir: &Path, script: &str) -> Command {
    let mut cmd = Command::new(memlens());
    cmd.arg(command).arg("-q");
    if command != "watch" {
        cmd.arg("-o").arg(dir.join("%p.trace"));
    } else {
        cmd.args(["-i", "20ms"]);
    }
    cmd.args(["--", "sh", "-c", script, "sh"])
        .arg(dir)
        .stdin(Stdio::null());
    cmd
}

/// The program traps SIGUSR1 and exits with 7: a SIGUSR1 sent to memlens alone reaches
/// it, and memlens exits with 7, for each command that starts a program.
#[test]
fn usr1_sent_to_memlens_reaches_the_program() {
    for command in ["run", "check", "watch"] {
        let dir = scratch(&format!("supervise-usr1-{command}"));
        let mut child = memlens_sh(
            command,
            &dir,
            r#"trap 'exit 7' USR1; : > "$1/ready"; while :; do sleep 0.05; done"#,
        )
        .spawn()
        .unwrap();
        wait_for(&dir.join("ready"), &mut child);
        send(&child, libc::SIGUSR1);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(7), "{command}: {status}");
    }
}

/// SIGINT sent with kill(2) to memlens is passed on too (Ctrl-C is not: see below).
#[test]
fn sigint_from_kill_reaches_the_program() {
    let dir = scratch("supervise-int");
    let mut child = memlens_sh(
        "run",
        &dir,
        r#"trap 'exit 5' INT; : > "$1/ready"; while :; do sleep 0.05; done"#,
    )
    .spawn()
    .unwrap();
    wait_for(&dir.join("ready"), &mut child);
    send(&child, libc::SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(5));
}

/// Ctrl-C in the terminal: the terminal sends SIGINT to its whole foreground process
/// group, memlens and the program. memlens must not die of it, and the program counts
/// one SIGINT; SIGUSR1 then makes it exit with 40 + its count, through memlens. (A
/// second SIGINT passed on by memlens would mostly merge with the first while pending,
/// so this shows that memlens survives and passes the status on, not that it never
/// passes a terminal's signal on: `on_signal` checks `si_code` for that.)
#[test]
fn ctrl_c_reaches_the_program_once_and_memlens_survives() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let dir = scratch("supervise-ctrl-c");
    let (mut master, slave) = pty();
    let slave_fd = slave.as_raw_fd();
    let mut cmd = memlens_sh(
        "run",
        &dir,
        r#"n=0
trap 'n=$((n+1)); : > "$1/int$n"' INT
trap 'exit $((40+n))' USR1
: > "$1/ready"
while :; do sleep 0.05; done"#,
    );
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: between fork and exec, only async-signal-safe calls: a new session whose
    // controlling terminal is the pty, so that its Ctrl-C signals memlens's group.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    wait_for(&dir.join("ready"), &mut child);
    master.write_all(b"\x03").unwrap();
    wait_for(&dir.join("int1"), &mut child);
    send(&child, libc::SIGUSR1);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(41), "{status}");
    assert!(!dir.join("int2").exists());
}

/// SIGTERM sent to memlens stops the program (tests/programs/signals.c, allocating in a
/// loop), whose recorder writes its leak check: the trace is complete, and memlens dies
/// by SIGTERM as the program did (`run`), or exits with 128 + 15 (`watch`).
#[test]
fn sigterm_to_memlens_stops_the_program_with_its_trace_complete() {
    let exe = build_c("signals.c", "signals");
    for command in ["run", "watch"] {
        let dir = scratch(&format!("supervise-term-{command}"));
        let mut cmd = Command::new(memlens());
        cmd.arg(command).arg("-q");
        if command == "run" {
            cmd.arg("-o").arg(dir.join("%p.trace"));
        } else {
            cmd.args(["-i", "20ms", "--json"])
                .arg(dir.join("watch.json"));
        }
        let mut child = cmd
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
        assert!(line.starts_with("ready "), "{line:?}");
        send(&child, libc::SIGTERM);
        let status = child.wait().unwrap();
        if command == "watch" {
            assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}");
            let j: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("watch.json")).unwrap()).unwrap();
            assert_eq!(j["watch"]["exit_status"]["signal"], libc::SIGTERM);
            continue;
        }
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
        let traces: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(traces.len(), 1, "{traces:?}");
        let r = report(&traces[0]);
        assert_eq!(r["trace"]["truncated"], serde_json::Value::Null);
        assert_eq!(r["trace"]["exit"]["kind"], "signal");
        assert_eq!(r["trace"]["exit"]["code"], libc::SIGTERM);
        let v = leaks_json(&traces[0], &[]);
        assert_eq!(amount(&v["summary"]["definitely_lost"]), (777, 1));
    }
}
