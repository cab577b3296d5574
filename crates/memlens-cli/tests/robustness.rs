//! Issue 6, items 3 and 4: a trace cut short (the program or memlens killed with SIGKILL,
//! a full disk) reads back up to its last complete chunk and says so; a trace of another
//! format version names both versions; and every command that reads a file survives
//! truncated, corrupted and random input with a short error: no panic, no hang (a
//! 60 s guard kills it), no unbounded allocation (run under a 1 GiB RLIMIT_AS).
//! Cases and status: docs/RELIABILITY.md.
//!
//! Longer than 800 lines on purpose: one integration-test binary per concern keeps the
//! expensive fixtures (recorded traces, hostile-input generators) shared by its cases.

mod common;

use common::*;
use memlens_trace::{encode_chunk, refresh_checksums, varint, ChunkKind, Header, FORMAT_VERSION};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

fn killable() -> PathBuf {
    build_c("killable.c", "killable")
}

/// A deterministic pseudo-random sequence (xorshift64*), so every run tests the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Run `cmd` to completion under a 1 GiB address-space limit, killing it (and failing)
/// if it has not finished after 60 s: a hang detector, not a timing assertion.
fn guarded(mut cmd: Command) -> Output {
    // SAFETY: setrlimit is async-signal-safe; it only limits the child.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &r);
            Ok(())
        });
    }
    let shown = format!("{cmd:?}");
    run_guarded(cmd, Duration::from_secs(60), &shown).0
}

fn memlens_guarded(args: &[OsString]) -> Output {
    let mut c = Command::new(memlens());
    c.args(args);
    guarded(c)
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The text a person sees of one invocation.
fn seen(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn says_cut_short(o: &Output) -> bool {
    let s = seen(o).to_lowercase();
    s.contains("truncated") || s.contains("cut short")
}

// ---------------------------------------------------------------------------------------
// Item 3: SIGKILL, a full disk, another version.

/// `memlens run -q -o DIR/%n.%p.trace -- killable MODE BATCHES` with pipes on the
/// program's stdin and stdout; returns after the "pid P" line.
struct Recorded {
    memlens: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    pid: i32,
    dir: PathBuf,
    /// memlens's `TMPDIR`, empty of its own.
    tmpdir: PathBuf,
}

impl Recorded {
    fn start(mode: &str, batches: u32) -> Recorded {
        Recorded::start_with(mode, batches, &["-q"])
    }

    fn start_with(mode: &str, batches: u32, opts: &[&str]) -> Recorded {
        let dir = scratch("killable");
        let tmpdir = scratch("killable-tmp");
        let mut memlens = Command::new(memlens())
            .env("TMPDIR", &tmpdir)
            .arg("run")
            .args(opts)
            .arg("-o")
            .arg(dir.join("%n.%p.trace"))
            .arg("--")
            .arg(killable())
            .args([mode, &batches.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = memlens.stdin.take();
        let mut lines = BufReader::new(memlens.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let pid = first
            .strip_prefix("pid ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        Recorded {
            memlens,
            stdin,
            lines,
            pid,
            dir,
            tmpdir,
        }
    }

    /// Read progress lines up to batch `n`; returns the program's allocation count then.
    fn until_batch(&mut self, n: u32, step: bool) -> u64 {
        loop {
            let line = self.lines.next().expect("the program ended early").unwrap();
            let mut w = line.split_whitespace();
            assert_eq!(w.next(), Some("batch"), "{line}");
            let b: u32 = w.next().unwrap().parse().unwrap();
            let allocs: u64 = w.nth(1).unwrap().parse().unwrap();
            if b >= n {
                return allocs;
            }
            if step {
                self.stdin.as_mut().unwrap().write_all(b"c").unwrap();
            }
        }
    }

    fn trace(&self) -> PathBuf {
        let t: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(t.len(), 1, "{t:?}");
        t[0].clone()
    }
}

/// Allocations made at one of killable.c's 50 stacks (`alloc_at`).
fn killable_allocations(rep: &serde_json::Value) -> u64 {
    sum(&sites_through(rep, "alloc_at"), "allocations")
}

/// What a SIGKILL can take away from one thread: its log of 8,192 events, its own 64 KiB
/// chunk buffer, and the 16 entries that may wait for the writer thread, of which at most
/// 4 logs and the rest full 64 KiB buffers (`writer.rs`, `rawlog.rs`): at most this many
/// records (the smallest is 5 bytes).
const ONE_BUFFER_OF_EVENTS: u64 = 8192 + 13 * (64 << 10) / 5 + 4 * 8192;

/// The trace of a killed program reads back as truncated, through every reading
/// command, with the events up to the last complete chunk.
fn check_killed_trace(trace: &Path, reported: u64, exact_upper_bound: bool, what: &str) {
    let rep = report(trace);
    let truncated = rep["trace"]["truncated"].as_str().unwrap_or_else(|| {
        panic!(
            "{what}: the trace of a killed program is not truncated: {}",
            rep["trace"]
        )
    });
    assert!(rep["trace"]["exit"].is_null(), "{what}");
    let n = killable_allocations(&rep);
    // A consistent prefix: nothing invented, and at most one buffer of events lost.
    assert!(
        n + ONE_BUFFER_OF_EVENTS >= reported,
        "{what}: {n} allocations read back, the program had made {reported} ({truncated})"
    );
    if exact_upper_bound {
        assert!(
            n <= reported,
            "{what}: {n} allocations read back > {reported}"
        );
    }
    // Every reading command: success, a notice, no panic.
    let t = trace.as_os_str().to_owned();
    let out = scratch("killed-out");
    let svg = out.join("o.svg").into_os_string();
    let cmds: Vec<Vec<OsString>> = vec![
        vec!["report".into(), t.clone()],
        vec!["leaks".into(), t.clone()],
        vec!["plot".into(), t.clone(), "-o".into(), svg.clone()],
        vec!["flamegraph".into(), t.clone(), "-o".into(), svg.clone()],
        vec![
            "export".into(),
            "--format".into(),
            "json".into(),
            t.clone(),
            "-o".into(),
            out.join("o.json").into_os_string(),
        ],
        vec!["diff".into(), t.clone(), t.clone()],
    ];
    for args in cmds {
        let o = memlens_guarded(&args);
        assert!(o.status.success(), "{what}: {args:?}: {}", seen(&o));
        assert!(
            says_cut_short(&o),
            "{what}: {args:?} says nothing of the truncation: {}",
            seen(&o)
        );
        assert!(!seen(&o).contains("panicked"), "{what}: {args:?}");
    }
}

#[test]
fn sigkill_while_blocked_leaves_a_readable_prefix() {
    // Killed while waiting on stdin after batch N: the trace holds at most N * 1000 of
    // its allocations, and at least all but one buffer of them.
    for n in [1u32, 7, 23] {
        let mut r = Recorded::start("step", 1000);
        let reported = r.until_batch(n, true);
        // SAFETY: kill(2) on the program's pid, which memlens has not reaped yet (it
        // waits for it, and the program is blocked reading its stdin).
        assert_eq!(unsafe { libc::kill(r.pid, libc::SIGKILL) }, 0);
        let status = r.memlens.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "memlens dies as its program did"
        );
        check_killed_trace(&r.trace(), reported, true, &format!("blocked at batch {n}"));
    }
}

/// A program that allocates a little and then waits, killed by SIGKILL (as the OOM killer
/// kills): its buffered events reach the trace anyway (every thread's buffer is written
/// at least once a second), so the trace holds every allocation it made; and memlens's
/// summary says the program was killed before its trace was finished.
#[test]
fn sigkill_loses_nothing_written_a_second_before() {
    let mut r = Recorded::start_with("step", 1000, &[]);
    let reported = r.until_batch(2, true);
    let trace = r.trace();
    // Wait (a hang guard, not a timing assertion) until the periodic flush has written
    // the blocked program's events: nothing else would, its buffer is far from full.
    let start = std::time::Instant::now();
    loop {
        let o = memlens_guarded(&[
            "report".into(),
            "--format".into(),
            "json".into(),
            "--top".into(),
            "100000".into(),
            trace.clone().into_os_string(),
        ]);
        let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if !rep.is_null() && killable_allocations(&rep) >= reported {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the waiting program's events never reached its trace: {}",
            seen(&o)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the program's pid, blocked on its stdin, not yet reaped.
    assert_eq!(unsafe { libc::kill(r.pid, libc::SIGKILL) }, 0);
    let mut err = String::new();
    std::io::Read::read_to_string(r.memlens.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(r.memlens.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(killable_allocations(&report(&trace)), reported);
    assert!(
        err.contains(
            "==memlens== the program was killed by signal 9 (SIGKILL) before the recorder could \
             finish its trace"
        ),
        "{err}"
    );
}

#[test]
fn sigkill_at_random_moments_leaves_a_readable_prefix() {
    // Killed while running freely (allocating, or writing a chunk), after a number of
    // progress lines: fixed ones and seeded pseudo-random ones.
    let mut rng = Rng(0x6d65_6d6c_656e_7321);
    let mut points = vec![1u32, 3, 12, 40];
    points.extend((0..3).map(|_| 1 + rng.below(60) as u32));
    for n in points {
        let mut r = Recorded::start("run", 100_000);
        let reported = r.until_batch(n, false);
        // SAFETY: as above; the program runs 100,000 batches, so it has not exited.
        assert_eq!(unsafe { libc::kill(r.pid, libc::SIGKILL) }, 0);
        let status = r.memlens.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        check_killed_trace(
            &r.trace(),
            reported,
            false,
            &format!("running, after batch {n}"),
        );
    }
}

#[test]
fn killing_memlens_run_leaves_the_program_running_and_its_trace_complete() {
    // The recorder lives in the program: `memlens run` killed with SIGKILL takes nothing
    // with it. The program runs on (orphaned), finishes, and writes a complete trace;
    // only memlens's summary and the exit status it would have passed on are lost, and
    // no file of memlens's own stays behind.
    let mut r = Recorded::start("step", 5);
    r.until_batch(2, true);
    r.memlens.kill().unwrap(); // SIGKILL to memlens itself
    assert_eq!(r.memlens.wait().unwrap().signal(), Some(libc::SIGKILL));
    // The program is still there, blocked on its stdin; let it finish.
    // SAFETY: signal 0 only checks that the pid exists.
    assert_eq!(
        unsafe { libc::kill(r.pid, 0) },
        0,
        "the program died with memlens"
    );
    let mut stdin = r.stdin.take().unwrap();
    stdin.write_all(b"ccccc").unwrap();
    drop(stdin);
    let rest: Vec<String> = r.lines.by_ref().map(|l| l.unwrap()).collect();
    // End of file on its stdout: the program has exited (its trace is written before).
    assert_eq!(
        rest.last().map(String::as_str),
        Some("batch 5 allocations 5000"),
        "{rest:?}"
    );
    let rep = report(&r.trace());
    assert!(rep["trace"]["truncated"].is_null(), "{}", rep["trace"]);
    assert_eq!(rep["trace"]["exit"]["code"], 0, "{}", rep["trace"]);
    assert_eq!(killable_allocations(&rep), 5000);
    // And nothing of memlens's own is left behind in its TMPDIR (it kept a list of the
    // traces written there, /tmp/memlens-manifest-*, before).
    let left: Vec<_> = std::fs::read_dir(&r.tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
}

/// Run `sh -c script` as root in a private mount namespace if possible. `None`: mounting
/// a tmpfs is not permitted here.
fn with_small_tmpfs(dir: &Path, then: &str) -> Option<Output> {
    let mount = format!(
        "mount -t tmpfs -o size=512k memlens-test {d} && ( {then} ); s=$?; umount {d}; exit $s",
        d = dir.display()
    );
    // Directly (root), else in new user + mount namespaces (unprivileged).
    for prefix in [&[][..], &["unshare", "-rm"][..]] {
        let probe = Command::new(prefix.first().copied().unwrap_or("sh"))
            .args(prefix.iter().skip(1))
            .args(if prefix.is_empty() {
                vec![]
            } else {
                vec!["sh"]
            })
            .args([
                "-c",
                &format!(
                    "mount -t tmpfs -o size=512k memlens-test {d} && umount {d}",
                    d = dir.display()
                ),
            ])
            .stderr(Stdio::null())
            .status();
        if probe.is_ok_and(|s| s.success()) {
            let mut c = Command::new(prefix.first().copied().unwrap_or("sh"));
            c.args(prefix.iter().skip(1));
            if !prefix.is_empty() {
                c.arg("sh");
            }
            c.args(["-c", &mount]);
            return Some(guarded(c));
        }
    }
    None
}

#[test]
fn full_disk_lets_the_program_run_on_warns_once_and_keeps_what_was_written() {
    // A 512 KiB tmpfs fills up after a few thousand chunks' worth of events (400 batches
    // write about 1 MB). RLIMIT_FSIZE
    // (EFBIG) is record.rs's full_disk_warns_once_and_keeps_what_was_written.
    let prog = killable();
    let d = scratch("tmpfs");
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let bare = guarded({
        let mut c = Command::new(&prog);
        c.args(["run", "400"]);
        c
    });
    assert!(bare.status.success());
    let script = format!(
        "{} run -q -o {}/%n.%p.trace -- {} run 400 2>{}; s=$?; cp {}/* {}/; exit $s",
        memlens().display(),
        mnt.display(),
        prog.display(),
        d.join("stderr").display(),
        mnt.display(),
        d.display()
    );
    let Some(out) = with_small_tmpfs(&mnt, &script) else {
        eprintln!(
            "SKIPPED full_disk_lets_the_program_run_on...: cannot mount a tmpfs here, neither as \
             root nor with `unshare -rm` (user namespaces disabled?)"
        );
        return;
    };
    // The program is not disturbed: same output (but its pid), same exit status.
    let strip_pid = |s: &[u8]| {
        String::from_utf8_lossy(s)
            .lines()
            .filter(|l| !l.starts_with("pid "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(out.status.code(), Some(0), "{}", seen(&out));
    assert_eq!(strip_pid(&out.stdout), strip_pid(&bare.stdout));
    // One warning, one sentence, on stderr.
    let stderr = std::fs::read_to_string(d.join("stderr")).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("memlens: cannot write the trace ")
            && stderr.contains("No space left on device")
            && stderr.contains("the program runs on"),
        "{stderr}"
    );
    // The trace (copied out of the tmpfs) holds what was written, and says it was cut.
    let trace = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".trace"))
        .expect("no trace was written");
    let len = std::fs::metadata(&trace).unwrap().len();
    assert!(len > 400 << 10 && len <= 512 << 10, "{len} bytes");
    let rep = report(&trace);
    assert!(rep["trace"]["truncated"].is_string(), "{}", rep["trace"]);
    let n = killable_allocations(&rep);
    // Of the 400,000 made: some, not all.
    assert!(n > 10_000 && n < 400_000, "{n} allocations read back");
}

#[test]
fn trace_of_another_format_version_names_both_versions() {
    let r = run_with(&["-q"], &build_c("sites.c", "sites"), &[]);
    let mut data = std::fs::read(r.only_trace()).unwrap();
    let d = scratch("version");
    for v in [0u32, FORMAT_VERSION + 1, FORMAT_VERSION + 2, u32::MAX] {
        data[8..12].copy_from_slice(&v.to_le_bytes());
        let p = d.join(format!("v{v}.trace"));
        std::fs::write(&p, &data).unwrap();
        let want = format!("trace format version {v}; this memlens reads version {FORMAT_VERSION}");
        for cmd in [
            &["report"][..],
            &["leaks"],
            &["export", "--format", "json"],
            &["diff", p.to_str().unwrap()],
        ] {
            let mut args = os(cmd);
            args.push(p.clone().into_os_string());
            let o = memlens_guarded(&args);
            assert_eq!(o.status.code(), Some(125), "{cmd:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(&want), "{cmd:?}: {err}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Item 4: hostile input.

/// Every command that reads a trace, with `t` in the place of the trace.
fn trace_commands(t: &Path, valid: &Path, out: &Path) -> Vec<Vec<OsString>> {
    let t = t.as_os_str().to_owned();
    let valid = valid.as_os_str().to_owned();
    let o = |name: &str| out.join(name).into_os_string();
    vec![
        vec!["report".into(), t.clone()],
        vec!["report".into(), "--format".into(), "json".into(), t.clone()],
        vec!["leaks".into(), t.clone()],
        vec!["leaks".into(), "--format".into(), "sarif".into(), t.clone()],
        vec!["plot".into(), t.clone(), "-o".into(), o("plot.svg")],
        vec!["flamegraph".into(), t.clone(), "-o".into(), o("flame.svg")],
        vec![
            "export".into(),
            "--format".into(),
            "pprof".into(),
            t.clone(),
            "-o".into(),
            o("p.pb.gz"),
        ],
        vec![
            "export".into(),
            "--format".into(),
            "json".into(),
            t.clone(),
            "-o".into(),
            o("e.json"),
        ],
        vec!["diff".into(), t.clone(), valid.clone()],
        vec!["diff".into(), "--format".into(), "json".into(), valid, t],
    ]
}

/// One invocation on hostile input ended as it should: by itself, without a signal or a
/// panic, with success or memlens's error code 125 and one sentence; a success on a trace
/// known to be cut short says so.
fn check_survived(what: &str, args: &[OsString], o: &Output, cut_short: bool) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked"),
        "{what}: {args:?} panicked: {err}"
    );
    assert_eq!(
        o.status.signal(),
        None,
        "{what}: {args:?} killed by a signal: {err}"
    );
    match o.status.code() {
        Some(0) => {
            assert!(err.lines().count() <= 6, "{what}: {args:?}: {err}");
            if cut_short {
                assert!(
                    says_cut_short(o),
                    "{what}: {args:?} says nothing of the truncation: {}",
                    seen(o)
                );
            }
        }
        Some(125) => {
            // One error sentence, after at most the notices that a trace is truncated
            // (printed when it is opened, before the damage further on is found).
            let lines: Vec<&str> = err.lines().collect();
            let (last, notices) = lines.split_last().expect("no error message");
            assert!(
                last.starts_with("memlens: error: "),
                "{what}: {args:?}: {err}"
            );
            assert!(last.len() < 600, "{what}: {args:?}: {err}");
            assert!(notices.len() <= 2, "{what}: {args:?}: {err}");
            for n in notices {
                assert!(
                    n.starts_with("memlens: warning: ") && n.contains(" is truncated: "),
                    "{what}: {args:?}: {err}"
                );
            }
        }
        c => panic!("{what}: {args:?} exited with {c:?}: {err}"),
    }
}

/// A process killed right after its leak check at exit (before its End record): the trace
/// has every allocation the leak check found lost, with its stack, because every
/// buffered event and definition is written before the check's records. (They used to
/// come after: such a trace had the leaks "at malloc", of no allocation in the report.)
#[test]
fn a_trace_cut_right_after_its_leak_check_has_the_leaks_allocations() {
    let exe = build_c("leak_at_exit.c", "leak_at_exit");
    let r = run(&exe, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let trace = r.only_trace();
    let data = std::fs::read(&trace).unwrap();
    let starts = chunk_starts(&data);
    let scan = starts
        .iter()
        .position(|&off| off + 40 <= data.len() && data[off + 4] == ChunkKind::Scan as u8)
        .expect("a Scan chunk");
    let cut = r.dir.join("cut.trace");
    std::fs::write(&cut, &data[..starts[scan + 1]]).unwrap();
    let o = Command::new(memlens())
        .arg("leaks")
        .arg(&cut)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("1,045 bytes in 10 blocks are definitely lost")
            && out.contains("by main (leak_at_exit.c:12)"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rep = report(&cut);
    assert_eq!(rep["totals"]["allocations"], 10, "{}", rep["totals"]);
    // Cut before its End record: said to be cut short.
    assert!(
        rep["trace"]["truncated"]
            .as_str()
            .is_some_and(|t| t.starts_with("it has no end record")),
        "{}",
        rep["trace"]
    );
}

/// Offsets where the chunks of a trace start (and where the file ends).
fn chunk_starts(data: &[u8]) -> Vec<usize> {
    let hlen = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    let mut off = 16 + hlen + 4;
    let mut v = vec![off];
    while off + 40 <= data.len() {
        let len = u32::from_le_bytes(data[off + 16..off + 20].try_into().unwrap()) as usize;
        off += 40 + len;
        v.push(off);
    }
    v
}

/// A header for crafted traces.
fn header_bytes() -> Vec<u8> {
    let mut h = Vec::new();
    Header {
        pid: 1,
        exe: "/nonexistent".into(),
        argv: vec!["x".into()],
        page_size: 4096,
        writer: "test".into(),
        ..Default::default()
    }
    .encode(&mut h);
    h
}

fn chunk(kind: ChunkKind, thread: u32, raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; memlens_trace::max_encoded_chunk_len(raw.len())];
    let n = encode_chunk(kind, thread, 0, 10, raw, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Traces with absurd declared lengths and counts (valid checksums).
fn crafted_traces() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut v = Vec::new();
    let h = header_bytes();
    let mut end = Vec::new();
    end.push(memlens_trace::tag::END);
    for x in [5u64, 1, 0, 0, 0, 0, 0, 0] {
        varint::put_u64(&mut end, x);
    }
    let end_chunk = chunk(ChunkKind::End, 0, &end);
    // Header length 4 GiB, then 1 MiB + 1.
    for len in [u32::MAX, (1 << 20) + 1] {
        let mut t = h.clone();
        t[12..16].copy_from_slice(&len.to_le_bytes());
        v.push(("header length", t, false));
    }
    // A header payload whose exe string claims 2^62 bytes, and 2^16 argv strings.
    let mut p = Vec::new();
    for x in [1u64, 0, 0, 0, 1 << 62] {
        varint::put_u64(&mut p, x);
    }
    let mut t = Vec::new();
    t.extend_from_slice(&h[..12]);
    t.extend_from_slice(&(p.len() as u32).to_le_bytes());
    t.extend_from_slice(&p);
    t.extend_from_slice(&[0; 4]);
    refresh_checksums(&mut t);
    v.push(("string length 2^62 in the header", t, false));
    // A chunk that declares 16 MiB raw / 18 MiB stored, in a small file.
    let mut t = h.clone();
    let mut c = chunk(ChunkKind::Events, 0, &[4, 1, 1]);
    c[12..16].copy_from_slice(&(16u32 << 20).to_le_bytes());
    c[16..20].copy_from_slice(&(18u32 << 20).to_le_bytes());
    t.extend_from_slice(&c);
    v.push(("chunk of 18 MiB declared", t, true));
    // A chunk whose raw length is 16 MiB while its lz4 block gives 3 bytes.
    let mut t = h.clone();
    let mut c = chunk(ChunkKind::Events, 0, &[4, 1, 1]);
    c[12..16].copy_from_slice(&(16u32 << 20).to_le_bytes());
    t.extend_from_slice(&c);
    t.extend_from_slice(&end_chunk);
    v.push(("raw length 16 MiB, 3 bytes inside", t, false));
    // Definitions claiming 2^40 frames, segments, and a 2^60-byte path.
    for (what, rec) in [
        (
            "stack of 2^40 frames",
            vec![
                memlens_trace::tag::STACK,
                1,
                0x80,
                0x80,
                0x80,
                0x80,
                0x80,
                0x20,
            ],
        ),
        ("module with 2^40 segments", {
            let mut r = vec![memlens_trace::tag::MODULE_LOAD, 0, 1, 1, b'/', 0, 0];
            varint::put_u64(&mut r, 1 << 40);
            r
        }),
        ("module path of 2^60 bytes", {
            let mut r = vec![memlens_trace::tag::MODULE_LOAD, 0, 1];
            varint::put_u64(&mut r, 1 << 60);
            r
        }),
    ] {
        let mut t = h.clone();
        t.extend_from_slice(&chunk(ChunkKind::Meta, 0, &rec));
        t.extend_from_slice(&end_chunk);
        v.push((what, t, false));
    }
    // 16 MiB of RSS samples (3 bytes each: 5.6 million events) in one chunk, twice,
    // overlapping in time: memory stays bounded by what the file can decompress to.
    let mut rss = Vec::with_capacity(16 << 20);
    while rss.len() + 3 <= 16 << 20 {
        rss.extend_from_slice(&[memlens_trace::tag::RSS, 0, 1]);
    }
    let mut t = h.clone();
    let big = chunk(ChunkKind::Events, u32::MAX, &rss);
    t.extend_from_slice(&big);
    t.extend_from_slice(&big);
    t.extend_from_slice(&end_chunk);
    v.push(("two chunks of 16 MiB of samples", t, false));
    // A scan naming a root id and a block link of 2^31.
    let mut scan = vec![memlens_trace::tag::SCAN_BEGIN, 0, 1, 0];
    varint::put_u64(&mut scan, 1 << 40);
    scan.extend_from_slice(&[1, 0, 0, 0]);
    scan.extend_from_slice(&[memlens_trace::tag::SCAN_BLOCK, 2, 8, 0]);
    varint::put_u64(&mut scan, 1 << 32);
    scan.extend_from_slice(&[memlens_trace::tag::SCAN_BLOCK, 2, 8, 0]);
    varint::put_u64(&mut scan, ((1u64 << 31) << 1) | 1);
    scan.push(0);
    scan.extend_from_slice(&[memlens_trace::tag::SCAN_END, 0, 2]);
    let mut t = h.clone();
    t.extend_from_slice(&chunk(ChunkKind::Scan, 0, &scan));
    t.extend_from_slice(&end_chunk);
    v.push(("scan with dangling links and 2^40 blocks", t, false));
    v
}

/// Hostile variants of a valid trace: (name, bytes, known to be cut short).
fn hostile_traces(valid: &[u8]) -> Vec<(String, Vec<u8>, bool)> {
    let mut rng = Rng(0x686f_7374_696c_6521);
    let mut v: Vec<(String, Vec<u8>, bool)> = vec![
        ("empty".into(), Vec::new(), false),
        ("random 4 KiB".into(), rng.bytes(4096), false),
        ("random 64 KiB".into(), rng.bytes(65536), false),
    ];
    let mut magic_then_random = valid[..12].to_vec();
    magic_then_random.extend(rng.bytes(4096));
    v.push(("signature, then random".into(), magic_then_random, false));
    let mut header_then_random = valid[..chunk_starts(valid)[0]].to_vec();
    header_then_random.extend(rng.bytes(4096));
    v.push(("header, then random".into(), header_then_random, true));
    // Cut: inside the fixed header, at every chunk boundary and next to it, at random.
    let mut cuts: Vec<usize> = (0..24).step_by(5).collect();
    for b in chunk_starts(valid) {
        cuts.extend([b.saturating_sub(1), b, b + 1, b + 39]);
    }
    cuts.extend((0..12).map(|_| rng.below(valid.len() as u64) as usize));
    cuts.sort();
    cuts.dedup();
    for c in cuts.into_iter().filter(|&c| c < valid.len()) {
        v.push((format!("cut at {c}"), valid[..c].to_vec(), c >= 16));
    }
    // Flipped bytes, as they are (checksums catch them) and with checksums refreshed (the
    // decoders see them); a few at a time too.
    for i in 0..36 {
        let mut d = valid.to_vec();
        let k = if i < 24 { 1 } else { 1 + rng.below(8) as usize };
        for _ in 0..k {
            let at = rng.below(d.len() as u64) as usize;
            d[at] ^= 1 + rng.below(255) as u8;
        }
        if i % 2 == 1 {
            refresh_checksums(&mut d);
        }
        v.push((format!("flips {i}"), d, false));
    }
    v
}

#[test]
fn every_trace_command_survives_hostile_input() {
    // Traces written by the recorder and committed (the fuzzer's seeds, behind their mode
    // byte), so that the damage lands at the same places in every run: one in the
    // current format (format 7: events in columns, time in units, releases by block number), one in format 1
    // (still read).
    let d = scratch("hostile");
    let valid_path = d.join("valid.trace");
    let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for name in ["v7-sites.trace", "sites.trace"] {
        let seed = std::fs::read(repo_root().join("fuzz/corpus/trace_reader").join(name)).unwrap();
        let valid = seed[1..].to_vec();
        if cases.is_empty() {
            std::fs::write(&valid_path, &valid).unwrap();
        }
        cases.extend(
            hostile_traces(&valid)
                .into_iter()
                .map(|(what, b, cut)| (format!("{name}: {what}"), b, cut)),
        );
    }
    cases.extend(
        crafted_traces()
            .into_iter()
            .map(|(w, b, cut)| (w.to_string(), b, cut)),
    );
    // Two workers: the cases are independent.
    let cases = std::sync::Mutex::new(cases.into_iter().enumerate().collect::<Vec<_>>());
    std::thread::scope(|s| {
        for w in 0..2 {
            let (cases, d, valid_path) = (&cases, &d, &valid_path);
            s.spawn(move || {
                let out = d.join(format!("out{w}"));
                std::fs::create_dir_all(&out).unwrap();
                loop {
                    let Some((i, (what, bytes, cut))) = cases.lock().unwrap().pop() else {
                        return;
                    };
                    let p = d.join(format!("case{i}.trace"));
                    std::fs::write(&p, &bytes).unwrap();
                    for args in trace_commands(&p, valid_path, &out) {
                        let o = memlens_guarded(&args);
                        check_survived(&what, &args, &o, cut);
                    }
                }
            });
        }
    });
    // Not a regular file: a directory, a device that reads zeros forever.
    for special in ["/dev/zero", "/tmp", "/dev/null"] {
        for args in trace_commands(Path::new(special), &valid_path, &d) {
            let o = memlens_guarded(&args);
            check_survived(special, &args, &o, false);
            assert_ne!(o.status.code(), Some(0), "{args:?}");
        }
    }
}

/// Hostile suppression files, Valgrind's and LeakSanitizer's format.
fn hostile_suppressions() -> Vec<(String, Vec<u8>)> {
    // The fuzzer's seeds: every kind of line of both formats.
    let seeds = repo_root().join("fuzz/corpus/suppressions");
    let valgrind = std::fs::read(seeds.join("valgrind.supp")).unwrap();
    let lsan = std::fs::read(seeds.join("lsan.supp")).unwrap();
    let mut rng = Rng(0x7375_7070_7265_7373);
    let mut v = vec![
        ("empty".to_string(), Vec::new()),
        ("random".to_string(), rng.bytes(4096)),
        ("NUL bytes".to_string(), vec![0; 4096]),
        ("one long line".to_string(), vec![b'a'; 1 << 20]),
        ("a long pattern".to_string(), {
            let mut s = b"{\n n\n Memcheck:Leak\n fun:".to_vec();
            s.extend(std::iter::repeat_n(b"*a?".as_slice(), 100_000).flatten());
            s.extend_from_slice(b"\n}\n");
            s
        }),
        ("a long lsan pattern".to_string(), {
            let mut s = b"leak:".to_vec();
            s.extend(std::iter::repeat_n(b"*a".as_slice(), 100_000).flatten());
            s
        }),
        ("100,000 frames".to_string(), {
            let mut s = b"{\n n\n Memcheck:Leak\n".to_vec();
            s.extend(std::iter::repeat_n(b"...\n".as_slice(), 100_000).flatten());
            s.extend_from_slice(b"}\n");
            s
        }),
        ("nested braces".to_string(), b"{\n{\n{\n{\n}\n}\n".to_vec()),
        (
            "invalid UTF-8".to_string(),
            b"{\n \xff\xfe\n Memcheck:Leak\n fun:\xc3\n}\n".to_vec(),
        ),
    ];
    for (name, text) in [("valgrind", &valgrind), ("lsan", &lsan)] {
        for c in (0..text.len()).step_by(7) {
            v.push((format!("{name} cut at {c}"), text[..c].to_vec()));
        }
        for i in 0..20 {
            let mut t = text.clone();
            let at = rng.below(t.len() as u64) as usize;
            t[at] = match i % 4 {
                0 => b'\n',
                1 => b'{',
                2 => b':',
                _ => rng.next() as u8,
            };
            v.push((format!("{name} flipped {i}"), t));
        }
    }
    v
}

#[test]
fn suppression_files_survive_hostile_input() {
    // Each file goes through `memlens leaks --suppressions FILE TRACE` (a trace whose leak
    // check has records, so the patterns are matched against symbolized stacks too), and a
    // few through `memlens check`, which reads them before running the program.
    let prog = build_c("sites.c", "sites");
    let trace = run_with(&["-q"], &prog, &[]).only_trace();
    let d = scratch("hostile-supp");
    let files = hostile_suppressions();
    for (i, (what, bytes)) in files.iter().enumerate() {
        let f = d.join(format!("s{i}.supp"));
        std::fs::write(&f, bytes).unwrap();
        let args: Vec<OsString> = vec![
            "leaks".into(),
            "--show-leak-kinds=all".into(),
            "--suppressions".into(),
            f.clone().into_os_string(),
            trace.clone().into_os_string(),
        ];
        let o = memlens_guarded(&args);
        check_survived(what, &args, &o, false);
        if i % 10 == 0 {
            let args: Vec<OsString> = vec![
                "check".into(),
                "-q".into(),
                "-o".into(),
                d.join("c.%p.trace").into_os_string(),
                "--suppressions".into(),
                f.clone().into_os_string(),
                "--".into(),
                prog.clone().into_os_string(),
            ];
            let o = memlens_guarded(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert_eq!(o.status.signal(), None, "{what}: {err}");
        }
    }
    // Not a regular file: a directory, a device of endless zeros.
    for special in ["/dev/zero", "/tmp"] {
        let args = os(&["leaks", "--suppressions", special, trace.to_str().unwrap()]);
        let o = memlens_guarded(&args);
        check_survived(special, &args, &o, false);
        assert_eq!(o.status.code(), Some(125), "{special}: {}", seen(&o));
    }
}
