//! `memlens top` on a set of child processes whose memory changes only when the test says
//! so (`tests/programs/top_child.c`), one step at a time, each step followed by two more
//! samples of memlens (counted in its CSV): a grower, a stable one, one with waves, one
//! that exits halfway, one restarted that grows again, and one restarted that is flat
//! after its restart. The ranking, each verdict and the before/after comparisons are
//! checked; no assertion depends on how fast anything runs.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn memlens_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memlens"))
}

/// A child driven through its stdin.
struct Driven {
    child: Child,
    args: Vec<String>,
}

impl Driven {
    fn start(prog: &Path, step_kib: u32, tag: &str) -> Driven {
        let args = vec![step_kib.to_string(), tag.to_string()];
        let child = Command::new(prog)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Driven { child, args }
    }

    fn pid(&self) -> i64 {
        self.child.id() as i64
    }

    /// Send one command and wait for it to be done.
    fn send(&mut self, c: u8) {
        self.child.stdin.as_mut().unwrap().write_all(&[c]).unwrap();
        let mut ack = [0u8];
        self.child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut ack)
            .unwrap();
        assert_eq!(ack[0], c);
    }

    /// Exit and be reaped.
    fn quit(&mut self) {
        drop(self.child.stdin.take());
        self.child.wait().unwrap();
    }
}

/// The resident memory of process `pid` now, as top reads it (/proc/PID/statm).
fn resident_bytes(pid: i64) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Samples memlens has taken so far: one `kernel:page_tables` row each in its CSV.
fn samples(csv: &Path) -> usize {
    std::fs::read_to_string(csv)
        .unwrap_or_default()
        .matches(",kernel:page_tables\n")
        .count()
}

/// Wait until memlens has taken `n` more samples (a hang guard, not a timing assertion).
fn wait_samples(csv: &Path, n: usize) {
    let target = samples(csv) + n;
    let start = Instant::now();
    while samples(csv) < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "memlens top stopped sampling"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until memlens follows `pid` (it appears in the CSV).
fn wait_followed(csv: &Path, pid: i64) {
    let start = Instant::now();
    let needle = format!(",{pid},");
    while !std::fs::read_to_string(csv)
        .unwrap_or_default()
        .contains(&needle)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pid {pid} never followed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn proc_of(j: &Value, pid: i64) -> &Value {
    j["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in the report: {j:#}"))
}

fn verdict(j: &Value, pid: i64) -> String {
    proc_of(j, pid)["trend"]["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn ranks_growers_follows_exits_and_compares_restarts() {
    let prog = build_c("top_child.c", "top_child");
    let dir = scratch("top");
    let (csv, json) = (dir.join("top.csv"), dir.join("top.json"));
    let svg = dir.join("top.svg");
    let pattern = format!("{}*", prog.display());
    let mut top = Command::new(memlens_bin())
        .args(["top", "-i", "50ms", "-n", "20", "--match", &pattern])
        .arg("--csv")
        .arg(&csv)
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut grower = Driven::start(&prog, 4096, "grower");
    let mut stable = Driven::start(&prog, 4096, "stable");
    let mut waves = Driven::start(&prog, 16384, "waves");
    let mut exiter = Driven::start(&prog, 1024, "exiter");
    let mut leak = Driven::start(&prog, 2048, "leak");
    let mut warm = Driven::start(&prog, 2048, "warm");
    for c in [&grower, &stable, &waves, &exiter, &leak, &warm] {
        wait_followed(&csv, c.pid());
    }
    // The grower's resident memory once it runs (answered a command): what top may
    // see first can be earlier, while ld.so is still loading it.
    grower.send(b'.');
    let grower_ready = resident_bytes(grower.pid());
    let (leak_before, warm_before) = (leak.pid(), warm.pid());
    let exiter_pid = exiter.pid();
    const STEPS: usize = 48;
    for step in 0..STEPS {
        grower.send(b'g');
        stable.send(b'.');
        waves.send(if step % 2 == 0 { b'w' } else { b'f' });
        if step < STEPS / 2 {
            exiter.send(b'g');
        } else if step == STEPS / 2 {
            exiter.quit();
        }
        if step == STEPS / 2 {
            // The test restarts both: same command line, new pid. The leak grows again;
            // the warm one was only warming up.
            leak.quit();
            warm.quit();
            leak = Driven::start(&prog, 2048, "leak");
            warm = Driven::start(&prog, 2048, "warm");
            assert_eq!(leak.args, vec!["2048", "leak"]);
            wait_followed(&csv, leak.pid());
            wait_followed(&csv, warm.pid());
        }
        leak.send(b'g');
        warm.send(if step < STEPS / 2 { b'g' } else { b'.' });
        wait_samples(&csv, 2);
    }
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(top.id() as i32, libc::SIGTERM) };
    let mut err = String::new();
    top.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = top.wait().unwrap();
    for c in [&mut grower, &mut stable, &mut waves, &mut leak, &mut warm] {
        c.quit();
    }
    assert_eq!(status.code(), Some(0), "{err}");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    // Verdicts.
    assert_eq!(verdict(&j, grower.pid()), "growing", "{err}");
    assert_eq!(verdict(&j, stable.pid()), "stable", "{err}");
    assert_eq!(verdict(&j, waves.pid()), "stable", "{err}");
    assert_eq!(verdict(&j, exiter_pid), "growing", "{err}");
    assert_eq!(verdict(&j, leak_before), "growing", "{err}");
    assert_eq!(verdict(&j, leak.pid()), "growing", "{err}");
    assert_eq!(verdict(&j, warm_before), "growing", "{err}");
    assert_eq!(verdict(&j, warm.pid()), "stable", "{err}");
    // Ranking: growing first, the fastest (4 MiB a step) on top; the stable ones last.
    assert_eq!(j["processes"][0]["pid"], grower.pid(), "{err}");
    let growing: Vec<i64> = j["processes"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|p| p["trend"]["verdict"] == "growing")
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(growing.len(), 5, "{growing:?}\n{err}");
    assert_eq!(
        *growing.last().unwrap(),
        exiter_pid,
        "1 MiB a step is the slowest"
    );
    // The growth: 4 MiB per step, every step seen, from the process's memory once it
    // ran (top's first sample of it may come while ld.so is still loading it); up to 64
    // pages more are allowed (a step missed would be 4 MiB).
    let g = &proc_of(&j, grower.pid())["rss"];
    assert!(g["first"].as_u64().unwrap() <= grower_ready, "{g}");
    let grown = g["now"].as_u64().unwrap() - grower_ready;
    let steps = STEPS as u64 * 4096 * 1024;
    assert!(
        grown >= steps && grown <= steps + (256 << 10),
        "{grown}: {g}"
    );
    let w = &proc_of(&j, waves.pid())["rss"];
    assert!(
        w["peak"].as_u64().unwrap() - w["min"].as_u64().unwrap() >= 16 << 20,
        "{w}"
    );
    // Exits are marked; the reused command line is a restart, not the same process.
    let e = proc_of(&j, exiter_pid);
    assert!(e["exited_s"].as_f64().is_some(), "{e}");
    assert_eq!(proc_of(&j, leak.pid())["restart_of"], leak_before);
    assert_eq!(proc_of(&j, leak_before)["restarted_by"], leak.pid());
    assert!(proc_of(&j, grower.pid())["exited_s"].is_null());
    // Before and after the restarts.
    let restart = |pid: i64| {
        j["restarts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["after_pid"] == pid)
            .unwrap_or_else(|| panic!("no restart into {pid}: {j:#}"))
            .clone()
    };
    assert_eq!(restart(leak.pid())["verdict"], "confirmed_leak");
    assert_eq!(restart(leak.pid())["before_pid"], leak_before);
    assert_eq!(restart(warm.pid())["verdict"], "warm_up");
    assert!(
        err.contains(&format!(
            "restart: pid {leak_before} -> pid {} ({} 2048 leak) at ",
            leak.pid(),
            prog.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(": grows again after the restart at +"),
        "{err}"
    );
    assert!(err.contains("): confirmed leak\n"), "{err}");
    assert!(
        err.contains("): the growth was a warm-up, not a leak\n"),
        "{err}"
    );
    // The report, and the next step for a growing native process.
    assert!(
        err.contains("==memlens== ended: stopped by SIGTERM;"),
        "{err}"
    );
    assert!(err.contains("==memlens== 5 processes growing"), "{err}");
    assert!(
        err.contains(&format!(
            "==memlens== next step for pid {pid}: native: `memlens snapshot {pid}` now and again later, and `memlens diff` of the two .snap files names the roots that grew; `memlens attach {pid} --duration 60s` records a minute of its allocations with their stacks and leak kinds",
            pid = grower.pid(),
        )),
        "{err}"
    );
    assert!(err.contains("==memlens== sampler: "), "{err}");
    assert!(!err.contains('\x1b'), "plain lines when not on a terminal");
    assert_eq!(j["processes"][0]["runtime"], "native");
    assert!(j["sampler"]["cpu_s"].as_f64().unwrap() >= 0.0);
    // The chart names the growers.
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.contains(&format!("pid {} ", grower.pid())), "{chart}");
}

#[test]
fn errors_are_one_sentence() {
    let o = Command::new(memlens_bin())
        .args(["top", "--cgroup", "/no/such/cgroup", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        "memlens: error: /no/such/cgroup is not a cgroup (it has no cgroup.procs)"
    );
    let o = Command::new(memlens_bin())
        .args(["top", "--unit", "no-such-unit-memlens", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("memlens: error: no cgroup for unit no-such-unit-memlens.service"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let o = Command::new(memlens_bin())
        .args(["top", "--interval", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn a_cgroup_is_followed_as_one() {
    // memlens's own memory cgroup, when it has one it can read (v1 or v2).
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(rel) = cg.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        (ctl.split(',').any(|c| c == "memory") || ctl.is_empty())
            .then(|| path.to_string())
            .filter(|p| p != "/")
    }) else {
        eprintln!("skipped: this process is in no memory cgroup of its own");
        return;
    };
    let dir = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .map(|r| PathBuf::from(format!("{r}{rel}")))
        .find(|d| d.join("cgroup.procs").is_file());
    let Some(dir) = dir else {
        eprintln!("skipped: the cgroup {rel} is not visible under /sys/fs/cgroup");
        return;
    };
    let o = Command::new(memlens_bin())
        .args([
            "top", "-q", "-i", "50ms", "-d", "500ms", "--json", "-", "--cgroup",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["watch"]["cgroup"], dir.display().to_string());
    assert!(j["cgroup_total"].is_object(), "{j:#}");
    // This test process is in that cgroup.
    let me = std::process::id() as i64;
    assert!(
        j["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == me),
        "{j:#}"
    );
}
