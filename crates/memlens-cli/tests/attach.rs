//! `memlens attach PID`: recording a running process without restarting it.
//!
//! Every program here is driven through its stdin, one command a line, and answers one
//! line per command: the test never sleeps to synchronise, it waits for the answer (and
//! for memlens's "attached" line). ptrace is needed: where the machine refuses it, each
//! test says so (and fails under CI, `MEMLENS_TEST_REQUIRE_ALL=1`).

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

/// A program answering commands on its stdin.
struct Program {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    transcript: Vec<String>,
}

impl Program {
    fn start(cmd: &mut Command) -> Program {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Program {
            child,
            stdin,
            out,
            transcript: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Read one line of output (it must come).
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "the program closed its output");
        self.transcript.push(l.clone());
        l.trim_end().to_string()
    }

    /// Send a command, return its one-line answer.
    fn cmd(&mut self, c: &str) -> String {
        writeln!(self.stdin, "{c}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }

    /// Send the last command (if any), close stdin, read everything left, wait for the
    /// exit.
    fn finish(mut self, last: &str) -> (Vec<String>, ExitStatus) {
        if !last.is_empty() {
            writeln!(self.stdin, "{last}").unwrap();
        }
        drop(self.stdin);
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        self.transcript
            .extend(rest.lines().map(|l| format!("{l}\n")));
        let status = self.child.wait().unwrap();
        (self.transcript, status)
    }
}

/// A running `memlens attach`.
struct Attach {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    said: String,
}

/// Why ptrace cannot be used here, if it cannot: memlens's own refusal sentence.
fn ptrace_refusal(said: &str) -> Option<&str> {
    said.lines()
        .find(|l| l.contains("ptrace") || l.contains("belongs to") || l.contains("refused"))
}

/// Start `memlens attach PID -o TRACE [extra]` and wait for its "attached" line. `None`
/// (after saying why) if ptrace is refused on this machine. (The child is waited for by
/// [`Attach::stop`] or [`Attach::wait`], which clippy cannot follow.)
#[allow(clippy::zombie_processes)]
fn attach(pid: u32, trace: &Path, extra: &[&str]) -> Option<Attach> {
    let mut child = Command::new(memlens())
        .arg("attach")
        .arg(pid.to_string())
        .arg("-o")
        .arg(trace)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut l = String::new();
        if stderr.read_line(&mut l).unwrap() == 0 {
            let status = child.wait().unwrap();
            if let Some(why) = ptrace_refusal(&said) {
                skip_or_fail(&format!("ptrace is refused here ({why})"));
                return None;
            }
            panic!("memlens attach ended ({status}) before attaching:\n{said}");
        }
        said.push_str(&l);
        if l.contains("==memlens== attached to process") {
            return Some(Attach {
                child,
                stderr,
                said,
            });
        }
    }
}

impl Attach {
    /// Ctrl-C to memlens (SIGINT, as a terminal sends it): it detaches, summarizes, exits.
    fn stop(self) -> (ExitStatus, String) {
        self.stop_with(libc::SIGINT)
    }

    /// `sig` to memlens (SIGINT, SIGTERM): it detaches, summarizes, exits.
    fn stop_with(mut self, sig: i32) -> (ExitStatus, String) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.stderr.read_to_string(&mut self.said).unwrap();
        (self.child.wait().unwrap(), self.said)
    }

    /// Wait for it to end by itself (`--duration`, the process's end).
    fn wait(mut self) -> (ExitStatus, String) {
        self.stderr.read_to_string(&mut self.said).unwrap();
        (self.child.wait().unwrap(), self.said)
    }
}

fn server() -> PathBuf {
    build_c("attach_server.c", "attach_server")
}

fn plugin() -> PathBuf {
    build(
        "gcc",
        "attach_plugin.c",
        "libattach_plugin.so",
        &[C_FLAGS, &["-shared", "-fPIC"]].concat(),
    )
}

/// The server's commands of one window, in order. In window 1 it loads a library and
/// allocates through it: attached, it first waits until memlens has routed that library.
fn window_commands(cycle: usize, attached: bool) -> Vec<String> {
    let mut v = vec![format!("alloc 50 {}", 4000 + cycle)];
    if cycle == 0 {
        v.push("free_pre".into());
        v.push("realloc_pre".into());
    }
    if cycle > 0 {
        let wait = if cycle == 1 && attached { " wait" } else { "" };
        v.push(format!(
            "plugin {} 7 {}{wait}",
            plugin().display(),
            5000 + cycle
        ));
    }
    v.push("free_new 20".into());
    v.push("check".into());
    v
}

/// The process's file descriptors and what each is.
fn open_files(pid: u32) -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    v.sort();
    v
}

fn labelled(report: &Value) -> (u64, u64) {
    let sites = sites_at(report, "labelled_site");
    (sum(&sites, "allocations"), sum(&sites, "bytes_allocated"))
}

/// Blocks of labelled_site live at the end of the window.
fn labelled_live(report: &Value) -> u64 {
    report["not_freed"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            frames(s)
                .first()
                .is_some_and(|f| f["function"].as_str() == Some("labelled_site"))
        })
        .map(|s| s["live_blocks"].as_u64().unwrap())
        .sum()
}

/// A threaded server keeps running through three attach/detach cycles: its output and
/// exit status are those of a run without memlens; each window's trace has exactly the
/// labelled allocations made in it, no heap error for the blocks from before, and says
/// when it started and how much heap was live.
#[test]
fn server_runs_on_unchanged_through_three_attach_cycles() {
    let prog = server();
    let dir = scratch("attach-server");
    // Without memlens.
    let mut bare = Program::start(&mut Command::new(&prog));
    assert_eq!(bare.line(), "ready");
    for cycle in 0..3 {
        for c in window_commands(cycle, false) {
            bare.cmd(&c);
        }
    }
    let (bare_out, bare_status) = bare.finish("quit 7");
    assert_eq!(bare_status.code(), Some(7));

    let mut p = Program::start(&mut Command::new(&prog));
    assert_eq!(p.line(), "ready");
    let fds = open_files(p.pid());
    let mut traces = Vec::new();
    let mut spans = Vec::new();
    for cycle in 0..3 {
        let trace = dir.join(format!("window{cycle}.trace"));
        let began = std::time::Instant::now();
        let Some(a) = attach(p.pid(), &trace, &[]) else {
            return;
        };
        for c in window_commands(cycle, true) {
            p.cmd(&c);
        }
        // Ctrl-C ends windows 0 and 2, SIGTERM window 1.
        let (status, said) = a.stop_with(if cycle == 1 {
            libc::SIGTERM
        } else {
            libc::SIGINT
        });
        assert_eq!(status.code(), Some(0), "memlens attach:\n{said}");
        assert!(said.contains("==memlens== detached: process"), "{said}");
        assert!(
            said.contains("recording started when memlens attached"),
            "{said}"
        );
        assert!(
            said.contains("50 allocations") && said.contains("labelled_site"),
            "the summary names the labelled site:\n{said}"
        );
        traces.push(trace);
        spans.push(began.elapsed());
        assert_eq!(
            open_files(p.pid()),
            fds,
            "window {cycle}: descriptors left open"
        );
    }
    let (out, status) = p.finish("quit 7");
    assert_eq!(out, bare_out, "the program's output changed");
    assert_eq!(status.code(), Some(7), "its exit status changed");

    for (cycle, trace) in traces.iter().enumerate() {
        let r = report(trace);
        let size = 4000 + cycle as u64;
        assert_eq!(labelled(&r), (50, 50 * size), "window {cycle}");
        // The library loaded in window 1, while attached, is routed then; in window 2
        // it is routed at the attach.
        let plugin = sites_at(&r, "plugin_site");
        let want = if cycle == 0 {
            0
        } else {
            7 * (5000 + cycle as u64)
        };
        assert_eq!(sum(&plugin, "bytes_allocated"), want, "window {cycle}");
        // free_new 20 frees the oldest kept blocks: this window's in the first, blocks
        // of earlier windows (unknown to this trace) later.
        let live = if cycle == 0 { 30 } else { 50 };
        assert_eq!(labelled_live(&r), live, "window {cycle}");
        assert_eq!(r["trace"]["exit"]["kind"], "detach");
        // Each window's time counts from its own attach: it lies within memlens's run.
        let runtime_ms = r["totals"]["runtime_ms"].as_f64().unwrap();
        assert!(
            runtime_ms <= spans[cycle].as_secs_f64() * 1000.0,
            "window {cycle}: {runtime_ms} ms recorded in {:?}",
            spans[cycle]
        );
        let attached = &r["trace"]["attached"];
        assert!(
            attached["live_heap_bytes"].as_u64().unwrap() > 100 * 777,
            "{attached}"
        );
        let untracked = r["totals"]["untracked_frees"].as_u64().unwrap();
        // Window 0: 90 frees and 10 reallocs of blocks from before; later ones: 20 frees
        // of blocks from earlier windows (the workers' own frees may add to it).
        assert!(
            untracked >= if cycle == 0 { 100 } else { 20 },
            "window {cycle}: {untracked}"
        );
        let leaks = leaks_json(trace, &[]);
        assert_eq!(leaks["error_count"], 0, "window {cycle}: {leaks}");
        assert!(leaks["errors"].as_array().unwrap().is_empty());
    }
}

/// `--duration` ends the recording by itself; the process runs on and answers.
#[test]
fn duration_ends_the_recording() {
    let prog = server();
    let dir = scratch("attach-duration");
    let mut p = Program::start(&mut Command::new(&prog));
    assert_eq!(p.line(), "ready");
    let trace = dir.join("d.trace");
    let Some(a) = attach(p.pid(), &trace, &["--duration", "300ms"]) else {
        return;
    };
    let (status, said) = a.wait();
    assert_eq!(status.code(), Some(0), "{said}");
    assert_eq!(report(&trace)["trace"]["exit"]["kind"], "detach");
    assert_eq!(p.cmd("alloc 3 100"), "allocated 3");
    let (_, status) = p.finish("quit 0");
    assert_eq!(status.code(), Some(0));
}

/// The lines of memlens's LEAK SUMMARY block that follows `heading` in `said`, as
/// (kind, "N bytes in M blocks").
fn summary_after<'a>(said: &'a str, heading: &str) -> Vec<(&'a str, &'a str)> {
    let from = said
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{said}"));
    said[from..]
        .lines()
        .skip_while(|l| !l.ends_with("LEAK SUMMARY:"))
        .skip(1)
        .take(5)
        .map(|l| {
            let (k, v) = l.trim_start_matches("==memlens==").split_once(':').unwrap();
            (k.trim(), v.trim())
        })
        .collect()
}

/// The leak check at the end of a window: a heap snapshot of the whole process, written
/// beside the trace. The blocks allocated while attached get memcheck's kinds with their
/// stacks: exactly the leaked ones are definitely lost (and the blocks they alone point
/// to indirectly lost). The blocks from before the attach are one line, in which neither
/// the recorder's own thread's block nor what ld.so allocated to load the recorder and
/// its libraries is counted: its possibly lost bytes are a snapshot's of the process
/// before the attach (the worker threads' DTVs). The process runs on; --leak-check=no
/// takes no snapshot.
#[test]
fn leak_check_at_the_end_of_the_window() {
    let prog = server();
    let dir = scratch("attach-leaks");
    let mut p = Program::start(&mut Command::new(&prog));
    assert_eq!(p.line(), "ready");
    let out = Command::new(memlens())
        .args(["snapshot", &p.pid().to_string(), "--format", "json", "-o"])
        .arg(dir.join("before.snap"))
        .output()
        .unwrap();
    if let Some(why) = ptrace_refusal(&String::from_utf8_lossy(&out.stderr)) {
        eprintln!("skipped: {why}");
        return;
    }
    let before: Value = serde_json::from_slice(&out.stdout).unwrap();
    let possibly_before = before["kinds"]["possibly_lost"]["bytes"].as_u64().unwrap();
    // What holds them: each worker's DTV is pointed into from its thread control block,
    // at the top of its own stack's mapping, not from the main thread's stack.
    let out = Command::new(memlens())
        .args(["leaks", "--show-leak-kinds", "possible"])
        .arg(dir.join("before.snap"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("pointed into by: the stack of thread ")
            .count(),
        usize::from(possibly_before > 0),
        "{text}"
    );
    assert!(!text.contains("the main thread's stack"), "{text}");
    let page = dir.join("before.html");
    let out = Command::new(memlens())
        .arg("html")
        .arg(dir.join("before.snap"))
        .arg("-o")
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    // The page's possibly lost records name the same holder. (A still reachable block
    // may well be held by the main thread's stack: whatever it had there when stopped.)
    let holders: Vec<&str> = html
        .split(r#""kind":"possibly_lost""#)
        .skip(1)
        .map(|rec| {
            let rec = &rec[..rec.find(r#""suppressed_by""#).unwrap_or(rec.len())];
            let at = rec
                .find(r#""kept_alive_by":""#)
                .map_or(rec.len(), |i| i + 17);
            &rec[at..at + rec[at..].find('"').unwrap_or(0)]
        })
        .collect();
    assert_eq!(
        holders
            .iter()
            .filter(|h| h.starts_with("the stack of thread "))
            .count(),
        usize::from(possibly_before > 0),
        "the web page names the same holder: {holders:?}"
    );
    assert!(
        !holders
            .iter()
            .any(|h| h.contains("the main thread's stack")),
        "{holders:?}"
    );
    let trace = dir.join("w.trace");
    let Some(a) = attach(p.pid(), &trace, &[]) else {
        return;
    };
    assert_eq!(p.cmd("alloc 40 300"), "allocated 40");
    assert_eq!(p.cmd("leak 7 64"), "leaked 7");
    assert_eq!(p.cmd("free_new 10"), "freed 10");
    let (status, said) = a.stop();
    assert_eq!(status.code(), Some(0), "{said}");
    let snap = dir.join("w.snap");
    assert!(
        said.contains("a heap snapshot of the whole process (paused ")
            && said.contains(&format!("), in {}", snap.display())),
        "{said}"
    );
    let window = summary_after(&said, "of the blocks allocated while attached:");
    assert_eq!(
        window[0],
        ("definitely lost", "448 bytes in 7 blocks"),
        "{said}"
    );
    assert_eq!(
        window[1],
        ("indirectly lost", "448 bytes in 7 blocks"),
        "{said}"
    );
    assert_eq!(
        window[2],
        ("possibly lost", "0 bytes in 0 blocks"),
        "{said}"
    );
    // The 30 labelled blocks kept, and whatever the workers held at that moment.
    assert_eq!(window[3].0, "still reachable");
    // The heading says what the five lines add up to, as memcheck's "in use at exit".
    let (mut bytes, mut blocks) = (0u64, 0u64);
    for (_, v) in &window {
        let (b, n) = v.split_once(" bytes in ").unwrap();
        bytes += b.replace(',', "").parse::<u64>().unwrap();
        blocks += n
            .trim_end_matches(" blocks")
            .replace(',', "")
            .parse::<u64>()
            .unwrap();
    }
    assert!(
        said.contains(&format!(
            "of the blocks allocated while attached: {} bytes in {} in use at the snapshot \
             (the figures above count on to the detach)\n",
            memlens_common::units::count(bytes),
            memlens_common::units::plural(blocks, "block", "blocks")
        )),
        "{said}"
    );
    assert!(
        said.contains("error(s); `memlens leaks ")
            && said.contains("blocks from before the attach (no stacks): "),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            ": 0 B definitely lost, 0 B indirectly lost, {} B possibly lost, ",
            memlens_common::units::count(possibly_before)
        )),
        "nothing from before the attach is lost, and what is possibly lost was so before it \
         ({possibly_before} B); the recorder's thread and ld.so's blocks for the recorder are \
         not the program's:\n{said}"
    );
    // The snapshot file, with the stacks.
    let leaks = leaks_json(&snap, &["--show-leak-kinds", "all"]);
    let records = leaks["records"].as_array().unwrap();
    let at = |func: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| {
                r["stack"]
                    .as_array()
                    .is_some_and(|s| s.first().is_some_and(|f| f["function"] == func))
            })
            .collect()
    };
    let lost = at("leaky_site");
    assert_eq!(lost.len(), 1, "{leaks}");
    assert_eq!(lost[0]["kind"], "definitely_lost");
    assert_eq!(
        (lost[0]["blocks"].as_u64(), lost[0]["bytes"].as_u64()),
        (Some(7), Some(448))
    );
    assert_eq!(
        (
            lost[0]["indirect_blocks"].as_u64(),
            lost[0]["indirect_bytes"].as_u64()
        ),
        (Some(7), Some(448))
    );
    let kept = at("labelled_site");
    assert_eq!(kept.len(), 1, "{leaks}");
    assert_eq!(kept[0]["kind"], "still_reachable");
    assert_eq!(
        (kept[0]["blocks"].as_u64(), kept[0]["bytes"].as_u64()),
        (Some(30), Some(9000))
    );
    // Held by the global array, named with its declaration (the program's DWARF).
    assert_eq!(
        kept[0]["kept_alive_by"], "global `kept` (attach_server.c:30) -> 30 blocks",
        "{leaks}"
    );
    // The process runs on and answers.
    assert!(p.cmd("check").starts_with("checksum "));

    // Without the leak check: no snapshot, no LEAK SUMMARY.
    let trace2 = dir.join("n.trace");
    let Some(a) = attach(p.pid(), &trace2, &["--leak-check=no"]) else {
        return;
    };
    assert_eq!(p.cmd("leak 2 64"), "leaked 2");
    let (status, said) = a.stop();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(
        !said.contains("LEAK SUMMARY") && !said.contains("leak check"),
        "{said}"
    );
    assert!(!dir.join("n.snap").exists());
    let (_, status) = p.finish("quit 0");
    assert_eq!(status.code(), Some(0));
}

/// The process exits while recorded: memlens says so, exits 2, and the trace ends with
/// the program's exit status.
#[test]
fn process_ending_while_recorded() {
    let prog = server();
    let dir = scratch("attach-exit");
    let mut p = Program::start(&mut Command::new(&prog));
    assert_eq!(p.line(), "ready");
    let trace = dir.join("e.trace");
    let Some(a) = attach(p.pid(), &trace, &[]) else {
        return;
    };
    assert_eq!(p.cmd("alloc 5 3000"), "allocated 5");
    let (_, status) = p.finish("quit 5");
    assert_eq!(status.code(), Some(5));
    let (status, said) = a.wait();
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(
        said.contains("exited with status 5 while recorded"),
        "{said}"
    );
    let r = report(&trace);
    assert_eq!(r["trace"]["exit"]["kind"], "exit");
    assert_eq!(r["trace"]["exit"]["code"], 5);
    assert_eq!(labelled(&r), (5, 15000));
}

fn attach_refusal(pid: &str) -> (Option<i32>, String) {
    let o = Command::new(memlens())
        .args(["attach", pid])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// One sentence and exit status 1 for what cannot be attached.
#[test]
fn refusals_are_one_sentence() {
    let (code, said) = attach_refusal("999999999");
    assert_eq!(code, Some(1));
    assert_eq!(said, "memlens: error: there is no process 999999999\n");

    // A statically linked program.
    let dir = scratch("attach-static");
    let exe = dir.join("static_reader");
    let src = dir.join("static_reader.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){char b[64]; while (fgets(b, sizeof b, stdin)) { puts(b); fflush(stdout); } return 0;}\n",
    )
    .unwrap();
    let built = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    if built.success() {
        let mut p = Program::start(&mut Command::new(&exe));
        assert_eq!(p.cmd("x"), "x");
        let (code, said) = attach_refusal(&p.pid().to_string());
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains("is a statically linked program"), "{said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        let (_, status) = p.finish("");
        assert!(status.success());
    } else {
        skip_or_fail("gcc -static failed (libc.a missing: apt-get install libc6-dev)");
    }

    // A program with ld.so but no libc (ld.so is glibc's, the allocator is not there).
    let nolibc = build(
        "gcc",
        "attach_nolibc.c",
        "attach_nolibc",
        &["-nostdlib", "-fno-stack-protector", "-O1"],
    );
    let mut p = Program::start(&mut Command::new(&nolibc));
    assert_eq!(p.line(), "ready");
    let (code, said) = attach_refusal(&p.pid().to_string());
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("is not glibc-based (no libc.so.6 is loaded)"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
    assert_eq!(p.cmd("still here"), "still here");
    let (_, status) = p.finish("");
    assert!(status.success());

    // A process another tracer holds: this test seizes it itself.
    let mut p = Program::start(&mut Command::new(server()));
    assert_eq!(p.line(), "ready");
    let pid = p.pid() as i32;
    // SAFETY: ptrace on our own child; detached below from this same thread.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) } == 0;
    if seized {
        let (code, said) = attach_refusal(&pid.to_string());
        // SAFETY: as above.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
        assert_eq!(code, Some(1), "{said}");
        assert!(
            said.contains("is already being traced by process"),
            "{said}"
        );
        assert_eq!(said.lines().count(), 1, "{said}");
    } else {
        skip_or_fail("ptrace is refused here: the already-traced refusal is not tested");
    }
    let (_, status) = p.finish("quit 0");
    assert_eq!(status.code(), Some(0));

    // Another user: memlens run as nobody, the target as us.
    if let Some(setpriv) = tool("setpriv", "util-linux") {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let mut p = Program::start(&mut Command::new(server()));
            assert_eq!(p.line(), "ready");
            let o = Command::new(setpriv)
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(memlens())
                .args(["attach", &p.pid().to_string()])
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{said}");
            assert!(said.contains("belongs to root"), "{said}");
            assert!(
                said.contains("run memlens attach as that user, or as root"),
                "{said}"
            );
            let (_, status) = p.finish("quit 0");
            assert_eq!(status.code(), Some(0));
        }
    }
}

/// CPython, attached and detached twice while it serves commands, answers as before and
/// exits 0; each window's trace has its allocations.
#[test]
fn python_attached_twice_runs_on() {
    let Some(python) = tool("python3", "python3") else {
        return;
    };
    // Debian's /usr/bin/python3 when there is one: a pyenv shim is a shell script.
    let python = if Path::new("/usr/bin/python3").exists() {
        PathBuf::from("/usr/bin/python3")
    } else {
        python
    };
    let script = "import sys\n\
        kept = []\n\
        def work(n):\n\
        \x20   kept.append(['x' * (i % 300 + 600) for i in range(n)])\n\
        print('ready', flush=True)\n\
        for line in sys.stdin:\n\
        \x20   n = int(line.split()[1])\n\
        \x20   work(n)\n\
        \x20   print('done', n, sum(len(s) for s in kept[-1]), flush=True)\n";
    let mut cmd = Command::new(&python);
    cmd.args(["-u", "-c", script]);
    let dir = scratch("attach-python");
    let commands = ["work 1000", "work 2000", "work 3000", "work 4000"];
    let mut bare = Program::start(&mut cmd);
    assert_eq!(bare.line(), "ready");
    for c in commands {
        bare.cmd(c);
    }
    let (bare_out, _) = bare.finish("");
    let mut p = Program::start(&mut cmd);
    assert_eq!(p.line(), "ready");
    for (i, pair) in commands.chunks(2).enumerate() {
        let trace = dir.join(format!("py{i}.trace"));
        let Some(a) = attach(p.pid(), &trace, &[]) else {
            return;
        };
        for c in pair {
            p.cmd(c);
        }
        let (status, said) = a.stop();
        assert_eq!(status.code(), Some(0), "{said}");
        let r = report(&trace);
        assert!(
            r["totals"]["allocations"].as_u64().unwrap() >= 1000,
            "window {i}: {}",
            r["totals"]
        );
        assert_eq!(leaks_json(&trace, &[])["error_count"], 0);
        // The strings (600 to 899 characters: above pymalloc's 512 bytes, so from malloc)
        // have the Python function that made them in their stacks, line 4 of the script,
        // in every window (the second trace defines its code objects again).
        let at_line_4: Vec<u64> = r["hotspots"]["by_allocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                frames(s).iter().any(|f| {
                    f["file"] == "<string>"
                        && f["line"] == 4
                        && f["function"]
                            .as_str()
                            .is_some_and(|n| n.starts_with("work"))
                })
            })
            .map(|s| s["allocations"].as_u64().unwrap())
            .collect();
        let want: u64 = pair.iter().map(|c| c[5..].parse::<u64>().unwrap()).sum();
        // (The line's site also counts what the interpreter allocated on it.)
        assert!(
            at_line_4
                .iter()
                .any(|&a| (want..=want + want / 4 + 16).contains(&a)),
            "window {i}: the sites under work (<string>:4) have {at_line_4:?} allocations; \
             one must have the {want} strings"
        );
    }
    let (out, status) = p.finish("");
    assert_eq!(out, bare_out);
    assert!(status.success());
}

/// sqlite3's shell, attached and detached twice between statements, answers as before
/// and exits 0.
#[test]
fn sqlite3_attached_twice_runs_on() {
    let Some(sqlite) = tool("sqlite3", "sqlite3") else {
        return;
    };
    let dir = scratch("attach-sqlite");
    let statements = [
        "create table t(a integer, b text);",
        "insert into t select value, printf('%0500d', value) from generate_series(1, 2000);",
        "select count(*), sum(length(b)) from t;",
        "create index ti on t(b);",
        "select count(*) from t where b > printf('%0500d', 1000);",
    ];
    let mut cmd = Command::new(&sqlite);
    cmd.arg(":memory:");
    let run_all = |p: &mut Program, attach_each: Option<&Path>| {
        // Each statement ends with a `select` so that it answers one line.
        for (i, s) in statements.iter().enumerate() {
            let a = attach_each.and_then(|d| {
                (i % 2 == 1).then(|| attach(p.pid(), &d.join(format!("sq{i}.trace")), &[]))
            });
            writeln!(p.stdin, "{s} select 'ok {i}';").unwrap();
            p.stdin.flush().unwrap();
            while !p.line().starts_with(&format!("ok {i}")) {}
            if let Some(a) = a {
                let Some(a) = a else { return false };
                let (status, said) = a.stop();
                assert_eq!(status.code(), Some(0), "{said}");
                let trace = d_join(attach_each.unwrap(), i);
                let r = report(&trace);
                assert!(
                    r["totals"]["allocations"].as_u64().unwrap() > 0,
                    "{}",
                    r["totals"]
                );
            }
        }
        true
    };
    fn d_join(d: &Path, i: usize) -> PathBuf {
        d.join(format!("sq{i}.trace"))
    }
    let mut bare = Program::start(&mut cmd);
    run_all(&mut bare, None);
    let (bare_out, _) = bare.finish(".quit");
    let mut p = Program::start(&mut cmd);
    if !run_all(&mut p, Some(&dir)) {
        return;
    }
    let (out, status) = p.finish(".quit");
    assert_eq!(out, bare_out);
    assert!(status.success());
}

/// CPython busy in a loop that makes no system call that waits: memlens takes its
/// thread where it runs the interpreter's own code, records a window, and the loop runs
/// on to the end it would have reached anyway.
#[test]
fn busy_python_loop_is_attached() {
    let Some(python) = tool("python3", "python3") else {
        return;
    };
    let python = if Path::new("/usr/bin/python3").exists() {
        PathBuf::from("/usr/bin/python3")
    } else {
        python
    };
    let dir = scratch("attach-busy-python");
    let stop = dir.join("stop");
    // Only the main thread; it never blocks: it checks for the stop file between rounds.
    let script = format!(
        "import os\n\
         print('ready', flush=True)\n\
         rounds = 0\n\
         while not os.path.exists({stop:?}):\n\
         \x20   l = [str(i) * 40 for i in range(3000)]\n\
         \x20   rounds += 1\n\
         print('stopped', rounds > 0, flush=True)\n",
        stop = stop.display().to_string()
    );
    let mut p = Program::start(Command::new(&python).args(["-c", &script]));
    assert_eq!(p.line(), "ready");
    let trace = dir.join("busy.trace");
    let Some(a) = attach(p.pid(), &trace, &["--duration", "200ms"]) else {
        return;
    };
    let (status, said) = a.wait();
    assert_eq!(status.code(), Some(0), "{said}");
    let r = report(&trace);
    assert!(
        r["totals"]["allocations"].as_u64().unwrap() >= 100,
        "{}",
        r["totals"]
    );
    std::fs::write(&stop, "").unwrap();
    assert_eq!(p.line(), "stopped True");
    let (_, status) = p.finish("");
    assert!(status.success());
}

/// A recorder that cannot be loaded (here: not an ELF file): memlens says why (glibc's
/// dlerror), exits 4, and the process runs on as if nothing happened.
#[test]
fn a_failed_load_leaves_the_process_unchanged() {
    let dir = scratch("attach-badlib");
    let bad = dir.join("libmemlens_preload.so");
    std::fs::write(&bad, "this is not a library\n".repeat(20)).unwrap();
    let mut p = Program::start(&mut Command::new(server()));
    assert_eq!(p.line(), "ready");
    let o = Command::new(memlens())
        .env("MEMLENS_PRELOAD", &bad)
        .args(["attach", &p.pid().to_string(), "-o"])
        .arg(dir.join("never.trace"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    if let Some(why) = ptrace_refusal(&said) {
        skip_or_fail(&format!("ptrace is refused here ({why})"));
        return;
    }
    assert_eq!(o.status.code(), Some(4), "{said}");
    assert!(
        said.starts_with("memlens: error: cannot load the recorder into process")
            && said.contains("dlopen")
            && said.contains("invalid ELF header"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(!dir.join("never.trace").exists());
    assert_eq!(p.cmd("alloc 4 100"), "allocated 4");
    assert_eq!(p.cmd("check"), p_check_after_alloc());
    let (_, status) = p.finish("quit 3");
    assert_eq!(status.code(), Some(3));
}

/// The checksum attach_server prints after `alloc 4 100` alone, from a run without
/// memlens.
fn p_check_after_alloc() -> String {
    let mut p = Program::start(&mut Command::new(server()));
    assert_eq!(p.line(), "ready");
    p.cmd("alloc 4 100");
    let c = p.cmd("check");
    p.finish("quit 0");
    c
}

/// As root, attaching to another user's process: the recorder runs as that user, so
/// memlens hands it its working files; the trace is written and the process runs on.
#[test]
fn root_attaches_to_another_users_process() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("not root: attaching to another user's process is not tested");
        return;
    }
    let Some(setpriv) = tool("setpriv", "util-linux") else {
        return;
    };
    // The server runs as nobody: its program and the output directory must be where
    // nobody can reach them, which a checkout (a home or temporary directory of mode 0700)
    // may not be. The recorder library is left where it is: memlens copies it where
    // nobody can read it when needed.
    let dir =
        std::env::temp_dir().join(format!("memlens-attach-other-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        let mut perms = std::fs::metadata(p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, m);
        std::fs::set_permissions(p, perms).unwrap();
    };
    mode(&dir, 0o755);
    let prog = dir.join("attach_server");
    std::fs::copy(server(), &prog).unwrap();
    mode(&prog, 0o755);
    let mut p = Program::start(
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&prog),
    );
    assert_eq!(p.line(), "ready");
    let trace = dir.join("nobody.trace");
    let Some(a) = attach(p.pid(), &trace, &[]) else {
        return;
    };
    assert_eq!(p.cmd("alloc 9 1234"), "allocated 9");
    let (status, said) = a.stop();
    assert_eq!(status.code(), Some(0), "{said}");
    assert_eq!(labelled(&report(&trace)), (9, 9 * 1234));
    let (_, status) = p.finish("quit 0");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// memlens killed while recording (SIGKILL: no chance to detach): the recorder sees its
/// control FIFO close, undoes the routing and finishes the trace by itself, in the
/// working directory memlens left; the process runs on and exits as it would have.
#[test]
fn memlens_killed_while_recording_leaves_the_process_running() {
    let dir = scratch("attach-killed");
    let mut p = Program::start(&mut Command::new(server()));
    assert_eq!(p.line(), "ready");
    let Some(mut a) = attach(p.pid(), &dir.join("k.trace"), &[]) else {
        return;
    };
    assert_eq!(p.cmd("alloc 6 2222"), "allocated 6");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // The process answers throughout (routed or not), and exits with its own status.
    for _ in 0..20 {
        assert_eq!(p.cmd("alloc 1 10"), "allocated 1");
        assert_eq!(p.cmd("free_new 1"), "freed 1");
    }
    let (_, status) = p.finish("quit 6");
    assert_eq!(status.code(), Some(6));
    let work: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".memlens-attach-")
        })
        .collect();
    assert_eq!(work.len(), 1, "{work:?}");
    let r = report(&work[0].join("trace"));
    assert!(
        matches!(r["trace"]["exit"]["kind"].as_str(), Some("detach" | "exit")),
        "{}",
        r["trace"]
    );
    let sites = sites_at(&r, "labelled_site");
    assert!(sum(&sites, "allocations") >= 6, "{}", r["totals"]);
}

const JEMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
const TCMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4";

/// An allocator that replaces glibc's malloc but not the `__libc_*` functions the hooks
/// call (jemalloc preloaded) is refused: routing would free jemalloc's blocks with
/// glibc. tcmalloc replaces both, so the hooks call it and the process is attached.
#[test]
fn other_allocators_are_refused_or_attached() {
    for lib in [JEMALLOC, TCMALLOC] {
        if !Path::new(lib).exists() {
            skip_or_fail(&format!(
                "{lib} is not installed (apt-get install libjemalloc2 libtcmalloc-minimal4)"
            ));
            continue;
        }
        let dir = scratch("attach-allocators");
        let trace = dir.join("a.trace");
        let mut p = Program::start(Command::new(server()).env("LD_PRELOAD", lib));
        assert_eq!(p.line(), "ready");
        if lib == JEMALLOC {
            let (code, said) = attach_refusal(&p.pid().to_string());
            if let Some(why) = ptrace_refusal(&said) {
                skip_or_fail(&format!("ptrace is refused here ({why})"));
                return;
            }
            assert_eq!(code, Some(1), "{said}");
            assert!(
                said.contains("does not allocate with glibc's malloc"),
                "{said}"
            );
            assert_eq!(said.lines().count(), 1, "{said}");
        } else {
            let Some(a) = attach(p.pid(), &trace, &[]) else {
                return;
            };
            assert_eq!(p.cmd("alloc 8 3333"), "allocated 8");
            assert_eq!(p.cmd("free_pre"), "freed_pre");
            let (status, said) = a.stop();
            assert_eq!(status.code(), Some(0), "{said}");
            let r = report(&trace);
            assert_eq!(labelled(&r), (8, 8 * 3333));
            assert!(r["totals"]["untracked_frees"].as_u64().unwrap() >= 90);
            assert_eq!(leaks_json(&trace, &[])["error_count"], 0);
        }
        assert_eq!(p.cmd("alloc 2 10"), "allocated 2");
        let (_, status) = p.finish("quit 9");
        assert_eq!(status.code(), Some(9), "{lib}");
    }
}

/// A process `memlens run` records already: refused in one sentence, and its own
/// recording goes on to its normal end.
#[test]
fn a_process_under_memlens_run_is_refused() {
    let dir = scratch("attach-under-run");
    let trace = dir.join("run.trace");
    let mut run = Program::start(
        Command::new(memlens())
            .args(["run", "-q", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(server()),
    );
    assert_eq!(run.line(), "ready");
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", run.pid(), run.pid()))
            .unwrap();
    let pid = children.split_whitespace().next().unwrap().to_string();
    let (code, said) = attach_refusal(&pid);
    if let Some(why) = ptrace_refusal(&said) {
        skip_or_fail(&format!("ptrace is refused here ({why})"));
        return;
    }
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("is already recorded"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert_eq!(run.cmd("alloc 5 1111"), "allocated 5");
    let (_, status) = run.finish("quit 0");
    assert_eq!(status.code(), Some(0));
    let r = report(&trace);
    // (Failed once in a fresh-clone CI run with (0, 0), not reproduced since: the sites
    // and the report's warnings say what the trace held.)
    assert_eq!(
        labelled(&r),
        (5, 5555),
        "sites: {:?}\nwarnings: {}",
        r["hotspots"]["by_allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (
                s["allocations"].as_u64(),
                frames(s)
                    .iter()
                    .take(3)
                    .map(|f| f["function"].as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>(),
        r["warnings"]
    );
    assert_eq!(r["trace"]["attached"], Value::Null);
}
