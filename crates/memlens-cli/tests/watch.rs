//! `memlens watch` on small programs whose memory behaves in a known way: the verdict and
//! the measured rate are checked against the truth, not against the test's own timing.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: f64 = 1024.0 * 1024.0;

/// The memlens binary (watch needs no recorder library).
fn memlens_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memlens"))
}

struct Watch {
    out: Output,
    json: Value,
}

impl Watch {
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn verdict(&self) -> &str {
        self.json["trend"]["verdict"].as_str().unwrap()
    }
    fn rate(&self) -> f64 {
        self.json["trend"]["bytes_per_second"].as_f64().unwrap()
    }
    fn ended(&self) -> &str {
        self.json["watch"]["ended"].as_str().unwrap()
    }
}

/// `memlens watch ARGS --json FILE`, with the JSON report read back.
fn watch(args: &[&str]) -> Watch {
    let dir = scratch("watch");
    let json = dir.join("report.json");
    let out = Command::new(memlens_bin())
        .arg("watch")
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); status {:?}, stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Watch {
        json: serde_json::from_str(&text).unwrap(),
        out,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_rate(w: &Watch, truth: f64) {
    let rate = w.rate();
    assert!(
        (rate - truth).abs() <= 0.2 * truth,
        "measured {:.2} MiB/s, true rate {:.2} MiB/s\n{}",
        rate / MIB,
        truth / MIB,
        w.stderr()
    );
}

#[test]
fn unbounded_growth_is_growing_at_its_true_rate() {
    // 2 MiB touched every 100 ms: 20 MiB/s.
    let prog = build_c("watch_grow.c", "watch_grow");
    let w = watch(&["-i", "50ms", "-d", "3s", "--", s(&prog), "2048", "100"]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    assert_eq!(w.verdict(), "growing", "{}", w.stderr());
    assert_rate(&w, 20.0 * MIB);
    let j = &w.json;
    assert_eq!(w.ended(), "duration");
    assert_eq!(j["watch"]["stopped_with"], "SIGTERM");
    assert_eq!(j["watch"]["source"], "smaps_rollup");
    let lo = j["trend"]["ci95_bytes_per_hour"][0].as_f64().unwrap();
    assert!(lo > 0.0, "{j}");
    // RSS really grew by tens of MiB, and PSS/USS/anon were read too.
    let rss = &j["memory"]["rss"];
    assert!(rss["peak"].as_f64().unwrap() - rss["min"].as_f64().unwrap() > 30.0 * MIB);
    assert!(j["memory"]["uss"]["now"].as_u64().unwrap() > 30 << 20);
    assert!(j["memory"]["anon"]["now"].as_u64().unwrap() > 30 << 20);
    assert!(j["limit"]["seconds_to_limit"].as_f64().unwrap() > 0.0);
    // The report on stderr (not a terminal: plain lines).
    let err = w.stderr();
    assert!(
        err.contains("verdict: GROWING: the rss floor rises +"),
        "{err}"
    );
    assert!(err.contains("MiB/s"), "{err}");
    assert!(err.contains("==memlens== sampler: "), "{err}");
    assert!(
        !err.contains('\x1b'),
        "no terminal escapes when stderr is a file: {err}"
    );
}

#[test]
fn python_cache_is_growing_at_its_true_rate() {
    if Command::new("python3").arg("-c").arg("1").output().is_err() {
        eprintln!("python3 not found: skipped");
        return;
    }
    // 1 MiB objects every 50 ms: 20 MiB/s, after the interpreter's start-up.
    let script = source("watch_cache.py");
    let w = watch(&[
        "-i",
        "50ms",
        "-d",
        "3s",
        "--",
        "python3",
        s(&script),
        "1024",
        "50",
    ]);
    assert_eq!(w.verdict(), "growing", "{}", w.stderr());
    assert_rate(&w, 20.0 * MIB);
}

#[test]
fn waves_of_allocation_and_freeing_are_stable() {
    // 30 MiB touched over 100 ms, held 50 ms, unmapped, 150 ms rest; again and again.
    let prog = build_c("watch_waves.c", "watch_waves");
    let w = watch(&[
        "-i",
        "50ms",
        "-d",
        "5s",
        "--",
        s(&prog),
        "30",
        "100",
        "50",
        "150",
    ]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    assert_eq!(w.verdict(), "stable", "{}", w.stderr());
    // The waves were seen: RSS went up and down by most of 30 MiB.
    let rss = &w.json["memory"]["rss"];
    assert!(
        rss["peak"].as_f64().unwrap() - rss["min"].as_f64().unwrap() > 20.0 * MIB,
        "{rss}"
    );
    let samples = w.json["samples"].as_array().unwrap();
    let drops = samples
        .windows(2)
        .filter(|p| p[0]["rss"].as_f64().unwrap() - p[1]["rss"].as_f64().unwrap() > 15.0 * MIB)
        .count();
    assert!(drops >= 5, "{drops} drops");
}

#[test]
fn one_large_spike_is_not_growth() {
    // 200 MiB touched at 1.5 s, freed 200 ms later.
    let prog = build_c("watch_spike.c", "watch_spike");
    let w = watch(&[
        "-i",
        "50ms",
        "-d",
        "3s",
        "--",
        s(&prog),
        "200",
        "1500",
        "200",
    ]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    assert_ne!(w.verdict(), "growing", "{}", w.stderr());
    let rss = &w.json["memory"]["rss"];
    assert!(
        rss["peak"].as_f64().unwrap() > 200.0 * MIB,
        "spike seen: {rss}"
    );
    assert!(rss["now"].as_f64().unwrap() < 20.0 * MIB, "{rss}");
}

#[test]
fn include_children_sees_a_growing_child() {
    // The parent waits; its forked child grows 2 MiB every 100 ms.
    let prog = build_c("watch_forkgrow.c", "watch_forkgrow");
    let alone = watch(&["-i", "50ms", "-d", "3s", "--", s(&prog), "2048", "100"]);
    assert_eq!(alone.verdict(), "stable", "{}", alone.stderr());
    assert_eq!(alone.json["samples"][5]["processes"], 1);

    let tree = watch(&[
        "-c",
        "-i",
        "50ms",
        "-d",
        "3s",
        "--",
        s(&prog),
        "2048",
        "100",
    ]);
    assert_eq!(tree.code(), Some(0), "{}", tree.stderr());
    assert_eq!(tree.verdict(), "growing", "{}", tree.stderr());
    assert_rate(&tree, 20.0 * MIB);
    assert_eq!(tree.json["target"]["include_children"], true);
    let procs = tree.json["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["processes"].as_u64().unwrap())
        .max();
    assert_eq!(procs, Some(2));
    assert!(
        tree.stderr().contains("processes: 2 now"),
        "{}",
        tree.stderr()
    );
}

#[test]
fn max_rss_fails_the_run_at_once() {
    let prog = build_c("watch_grow.c", "watch_grow");
    let w = watch(&[
        "--max-rss",
        "30MiB",
        "-i",
        "50ms",
        "-d",
        "60s",
        "--",
        s(&prog),
        "2048",
        "100",
    ]);
    assert_eq!(w.code(), Some(3), "{}", w.stderr());
    assert_eq!(w.ended(), "max_rss");
    let b = &w.json["budgets"]["max_rss"];
    assert_eq!(b["exceeded"], true);
    assert!(b["rss_bytes"].as_u64().unwrap() > 30 << 20);
    // It stopped at the sample that crossed the budget, not at --duration.
    let last = w.json["samples"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["rss"], b["rss_bytes"]);
    assert_eq!(w.json["watch"]["stopped_with"], "SIGTERM");
    assert_eq!(w.json["exit_code"], 3);
    assert!(
        w.stderr().contains("--max-rss 30.00 MiB: EXCEEDED"),
        "{}",
        w.stderr()
    );

    // Under the budget: status 0.
    let w = watch(&[
        "--max-rss",
        "1GiB",
        "-i",
        "50ms",
        "-d",
        "1s",
        "--",
        s(&prog),
        "512",
        "100",
    ]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    assert!(
        w.stderr().contains("--max-rss 1.00 GiB: ok"),
        "{}",
        w.stderr()
    );
}

#[test]
fn max_growth_rate_fails_growth_only() {
    let grow = build_c("watch_grow.c", "watch_grow");
    let args = [
        "-q",
        "--max-growth-rate",
        "1MiB/s",
        "-i",
        "50ms",
        "-d",
        "2s",
        "--",
    ];
    let mut a: Vec<&str> = args.to_vec();
    a.extend([s(&grow), "2048", "100"]);
    let w = watch(&a);
    assert_eq!(w.code(), Some(3), "{}", w.stderr());
    assert_eq!(w.json["budgets"]["max_growth_rate"]["exceeded"], true);
    // -q still prints the failed budget.
    assert!(w.stderr().contains("--max-growth-rate"), "{}", w.stderr());
    assert!(w.stderr().contains("EXCEEDED"), "{}", w.stderr());

    // 0: any growth fails, but waves are not growth.
    let waves = build_c("watch_waves.c", "watch_waves");
    let w = watch(&[
        "--max-growth-rate",
        "0",
        "-i",
        "50ms",
        "-d",
        "4s",
        "--",
        s(&waves),
        "30",
        "100",
        "50",
        "150",
    ]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    assert_eq!(w.json["budgets"]["max_growth_rate"]["exceeded"], false);
}

fn one_line(s: &str) {
    assert_eq!(s.trim_end().lines().count(), 1, "not one line: {s:?}");
    assert!(!s.contains("panicked"), "{s}");
}

#[test]
fn missing_pid_is_one_clear_error() {
    // A pid that surely does not exist: above the kernel's pid_max.
    let max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4194304);
    let pid = (max + 1).to_string();
    let o = Command::new(memlens_bin())
        .args(["watch", "--pid", &pid])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!("memlens: error: no process with pid {pid}")
    );
    one_line(&err);

    // --pid and a program together, or neither: a usage error (125, as for every command).
    let o = Command::new(memlens_bin())
        .args(["watch", "--pid", "1", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let o = Command::new(memlens_bin())
        .args(["watch"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let o = Command::new(memlens_bin())
        .args(["watch", "--max-rss", "lots", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'lots' is not a size"));
    // A program that does not exist.
    let o = Command::new(memlens_bin())
        .args(["watch", "--", "no-such-program-memlens-test"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    one_line(&String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_watch_ends_when_the_process_exits() {
    let prog = build_c("exits.c", "exits");
    // Started by memlens: its status is passed on.
    let w = watch(&["-q", "-i", "20ms", "--", s(&prog), "_exit4"]);
    assert_eq!(w.code(), Some(4), "{}", w.stderr());
    assert_eq!(w.ended(), "exited");
    assert_eq!(w.json["watch"]["exit_status"]["code"], 4);
    let w = watch(&["-q", "-i", "20ms", "--", s(&prog), "kill9"]);
    assert_eq!(w.code(), Some(128 + 9), "{}", w.stderr());
    assert_eq!(w.json["watch"]["exit_status"]["signal"], 9);

    // Watched by pid: the watch ends when it exits (here a zombie until we reap it).
    let mut child = Command::new(&prog).arg("sleep300").spawn().unwrap();
    let pid = child.id().to_string();
    let w = watch(&["-i", "20ms", "-d", "30s", "--pid", &pid]);
    child.wait().unwrap();
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    assert_eq!(w.ended(), "exited");
    assert!(
        w.stderr().contains(&format!("ended: process {pid} exited")),
        "{}",
        w.stderr()
    );
    assert!(w.json["watch"]["samples"].as_u64().unwrap() >= 2);
}

#[test]
fn csv_and_plot_files() {
    let prog = build_c("watch_grow.c", "watch_grow");
    let dir = scratch("watch-files");
    let csv = dir.join("mem.csv");
    let svg = dir.join("mem.svg");
    let w = watch(&[
        "-q",
        "-i",
        "50ms",
        "-d",
        "1s",
        "--limit",
        "2GiB",
        "--csv",
        s(&csv),
        "--plot",
        s(&svg),
        "--",
        s(&prog),
        "1024",
        "100",
    ]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("t_s,unix_s,rss,pss,uss,swap,anon,file,processes")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len() as u64,
        w.json["watch"]["samples"].as_u64().unwrap()
    );
    for r in &rows {
        assert_eq!(r.len(), 9, "{r:?}");
        assert!(r[2].parse::<u64>().unwrap() > 0);
        assert_eq!(r[8], "1");
    }
    let t: Vec<f64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[1] > w[0]), "times increase: {t:?}");
    assert_eq!(w.json["limit"]["source"], "--limit");
    assert_eq!(w.json["limit"]["bytes"], 2u64 << 30);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    assert!(plot.contains("<polyline"), "{plot}");
    assert!(plot.contains("watch_grow"), "{plot}");
}

#[test]
fn unreadable_smaps_falls_back_to_status() {
    // As root: watch a root process as user nobody, who may not read its smaps_rollup.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipped");
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let o = Command::new(memlens_bin())
        .args(["watch", "-i", "50ms", "-d", "300ms", "--json", "-", "--pid"])
        .arg(target.id().to_string())
        .uid(65534)
        .gid(65534)
        .output();
    target.kill().unwrap();
    target.wait().unwrap();
    let o = match o {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "user nobody cannot run {}: skipped",
                memlens_bin().display()
            );
            return;
        }
        o => o.unwrap(),
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["watch"]["source"], "status");
    assert!(j["memory"]["rss"]["now"].as_u64().unwrap() > 0);
    assert!(j["memory"]["pss"].is_null());
    assert!(
        err.contains("smaps_rollup is not readable (permission denied"),
        "{err}"
    );

    // Asking for PSS then is one clear error.
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let o = Command::new(memlens_bin())
        .args(["watch", "--metric", "pss", "-d", "300ms", "--pid"])
        .arg(target.id().to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("PSS is not available for process"), "{err}");
    one_line(&err);
}

/// Run `memlens watch ARGS` with stderr on a new pseudo-terminal; what it wrote there.
fn on_terminal(args: &[&str]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (mut m, sl) = pty();
    // SAFETY: fcntl on a descriptor the File owns.
    unsafe { libc::fcntl(m.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match m.read(&mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ if d2.load(Ordering::SeqCst) => break,
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let mut cmd = Command::new(memlens_bin());
    cmd.arg("watch")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(sl);
    let status = cmd.spawn().unwrap().wait().unwrap();
    drop(cmd);
    std::thread::sleep(std::time::Duration::from_millis(50));
    done.store(true, Ordering::SeqCst);
    (status.code(), reader.join().unwrap())
}

#[test]
fn live_view_redraws_only_on_a_terminal_it_owns() {
    let prog = build_c("watch_grow.c", "watch_grow");
    // --pid: memlens owns the terminal and redraws its view in place.
    let mut target = Command::new(&prog).args(["256", "100"]).spawn().unwrap();
    let pid = target.id().to_string();
    let (code, out) = on_terminal(&["-i", "100ms", "-d", "1s", "--pid", &pid]);
    target.kill().unwrap();
    target.wait().unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("memlens watch: pid {pid}")), "{out}");
    assert!(
        out.contains("\x1b[5A"),
        "cursor moves up to redraw: {out:?}"
    );
    assert!(out.contains('▁'), "a sparkline: {out:?}");
    assert!(out.contains("==memlens== verdict: "), "{out}");

    // A program started by memlens shares the terminal: whole lines only, no cursor
    // movement that could overwrite or split the program's output.
    let (code, out) = on_terminal(&["-i", "100ms", "-d", "1s", "--", s(&prog), "256", "100"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains('\x1b'), "no escape sequences: {out:?}");
    assert!(out.contains("==memlens== 0:00 rss "), "{out}");
    assert!(out.contains("==memlens== verdict: "), "{out}");
}

#[test]
fn restart_every_confirms_a_leak_in_one_command() {
    // 2 MiB every 100 ms, restarted by memlens after 2 s: it grows again after.
    let prog = build_c("watch_grow.c", "watch_grow");
    let w = watch(&[
        "-i",
        "50ms",
        "-d",
        "4s",
        "--restart-every",
        "2s",
        "--",
        s(&prog),
        "2048",
        "100",
    ]);
    assert_eq!(w.code(), Some(0), "{}", w.stderr());
    let r = w.json["restarts"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{}", w.json);
    assert_eq!(r[0]["verdict"], "confirmed_leak", "{}", w.stderr());
    assert_eq!(r[0]["stopped_with"], "SIGTERM");
    assert_ne!(r[0]["before_pid"], r[0]["after_pid"]);
    assert_eq!(w.json["target"]["pid"], r[0]["after_pid"]);
    // The verdict is about the run since the restart.
    assert_eq!(w.verdict(), "growing", "{}", w.stderr());
    let err = w.stderr();
    assert!(
        err.contains("verdict (since the last restart): GROWING"),
        "{err}"
    );
    assert!(err.contains("==memlens== restart 1 at 0:02 (pid "), "{err}");
    assert!(
        err.contains(": grows again after the restart at +"),
        "{err}"
    );
    assert!(err.contains("): confirmed leak\n"), "{err}");

    // Only for a program memlens starts.
    let o = Command::new(memlens_bin())
        .args(["watch", "--restart-every", "1s", "--pid", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
}
