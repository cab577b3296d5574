//! Torture suite (issue 6: never break the program under test; never lose or misread a
//! trace). Each case runs a program from `tests/programs/torture/` bare and under
//! `memlens run -q`, and asserts: byte-identical stdout and stderr, the same exit status or
//! signal, every trace written reads back complete (`trace.truncated` is null), and the
//! main process's trace holds at least the allocations the program is known to make.
//! The cases and what each proves are listed in docs/RELIABILITY.md.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A hang guard, not a timing assert: a deadlocked run fails instead of hanging the suite.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A program of tests/programs/torture built once per test binary (tests run in parallel;
/// the lock keeps two of them from building the same output).
fn program(compiler: &str, src: &str, out: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(out) {
        return p.clone();
    }
    let p = build(compiler, &format!("torture/{src}"), out, flags);
    map.insert(out.to_string(), p.clone());
    p
}

fn c_program(src: &str, out: &str) -> PathBuf {
    program("gcc", src, out, C_FLAGS)
}

fn cxx_program(src: &str, out: &str) -> PathBuf {
    let mut flags = CXX_FLAGS.to_vec();
    flags.push("-pthread");
    program("g++", src, out, &flags)
}

/// A shared library from tests/programs/torture, built with -shared -fPIC.
fn library(src: &str, out: &str) -> PathBuf {
    let mut flags = C_FLAGS.to_vec();
    flags.extend(["-shared", "-fPIC"]);
    program("gcc", src, out, &flags)
}

/// One program invocation: the same for the bare run and the recorded one.
struct Case {
    prog: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl Case {
    fn new(prog: &Path, args: &[&str]) -> Case {
        Case {
            prog: prog.to_path_buf(),
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            cwd: None,
        }
    }
    fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pid: u32,
}

/// Run `cmd` to the end with the hang guard; its own process group, killed as a whole if
/// the guard trips.
fn finish(mut cmd: Command, what: &str) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > HANG_GUARD {
            // SAFETY: kill(2) on the process group this test created.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{what}: still running after {HANG_GUARD:?} (hang?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        pid,
    }
}

/// What a torture run leaves to assert on.
struct Outcome {
    stdout: String,
    status: ExitStatus,
    /// Every trace's report, in file name order.
    reports: Vec<Value>,
    /// The main process's report (its pid's trace with the most allocations, when it
    /// exec'ed).
    main: Value,
}

impl Outcome {
    fn allocations(r: &Value) -> u64 {
        r["totals"]["allocations"].as_u64().unwrap()
    }
    /// Reports of processes other than the main one.
    fn children(&self) -> Vec<&Value> {
        let main_pid = &self.main["trace"]["pid"];
        self.reports
            .iter()
            .filter(|r| &r["trace"]["pid"] != main_pid)
            .collect()
    }
}

/// The torture check: bare vs recorded, identical output and status; every trace complete;
/// the main process made at least `min_allocations`.
fn torture(case: &Case, min_allocations: u64) -> Outcome {
    let what = format!("{} {:?}", case.prog.display(), case.args);
    let mut bare = Command::new(&case.prog);
    bare.args(&case.args).envs(case.env.iter().cloned());
    if let Some(d) = &case.cwd {
        bare.current_dir(d);
    }
    let bare = finish(bare, &what);

    let dir = scratch(case.prog.file_name().unwrap().to_str().unwrap());
    let mut rec = Command::new(memlens());
    rec.arg("run")
        .arg("-q")
        .arg("-o")
        .arg(dir.join("%n.%p.trace"))
        .arg("--")
        .arg(&case.prog)
        .args(&case.args)
        .envs(case.env.iter().cloned());
    if let Some(d) = &case.cwd {
        rec.current_dir(d);
    }
    let rec = finish(rec, &what);

    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert_eq!(
        text(&rec.stdout),
        text(&bare.stdout),
        "{what}: stdout differs"
    );
    assert_eq!(
        text(&rec.stderr),
        text(&bare.stderr),
        "{what}: stderr differs"
    );
    assert_eq!(rec.stdout, bare.stdout, "{what}: stdout bytes differ");
    assert_eq!(rec.stderr, bare.stderr, "{what}: stderr bytes differ");
    assert_eq!(rec.status.code(), bare.status.code(), "{what}: exit status");
    assert_eq!(rec.status.signal(), bare.status.signal(), "{what}: signal");

    let run = Run {
        output: std::process::Output {
            status: rec.status,
            stdout: rec.stdout,
            stderr: rec.stderr,
        },
        dir,
    };
    let traces = run.traces();
    assert!(!traces.is_empty(), "{what}: no trace written");
    let reports: Vec<Value> = traces.iter().map(|t| report(t)).collect();
    for (t, r) in traces.iter().zip(&reports) {
        assert!(
            r["trace"]["truncated"].is_null(),
            "{what}: {} is truncated: {}",
            t.display(),
            r["trace"]["truncated"]
        );
        assert!(
            !r["trace"]["exit"]["kind"].is_null(),
            "{what}: {} has no exit",
            t.display()
        );
    }
    // The main process is memlens's child: not forked from a traced process.
    let main = reports
        .iter()
        .filter(|r| {
            r["trace"]["ppid"].as_u64() == Some(u64::from(rec.pid))
                && r["trace"]["forked_from"].is_null()
        })
        .max_by_key(|r| Outcome::allocations(r))
        .unwrap_or_else(|| panic!("{what}: no trace of the main process in {traces:?}"))
        .clone();
    assert!(
        Outcome::allocations(&main) >= min_allocations,
        "{what}: main process recorded {} allocations, expected at least {min_allocations}",
        Outcome::allocations(&main)
    );
    Outcome {
        stdout: text(&run.output.stdout),
        status: run.output.status,
        reports,
        main,
    }
}

// ---- 1. threads ---------------------------------------------------------------------

#[test]
fn t1_64_threads_free_each_others_blocks() {
    let exe = c_program("threads.c", "torture-threads");
    let o = torture(&Case::new(&exe, &[]), 64 * 1000);
    assert_eq!(o.stdout, "threads 64 x 1000, 32000 left on the queue\n");
    // Every block was freed, in whichever thread: nothing is live at exit.
    assert_eq!(o.main["totals"]["frees"].as_u64().unwrap() >= 64 * 1000, true);
}
