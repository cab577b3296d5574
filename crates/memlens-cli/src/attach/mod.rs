//! `memlens attach PID`: record a running process for a while, then let it run on.
//!
//! 1. Refuse in one sentence what cannot work (`target.rs`): no such process, no
//!    permission (another user, Yama's `ptrace_scope`), already traced, stopped, static,
//!    not glibc.
//! 2. Make a private directory next to the output (owned by the target's user, who
//!    writes the trace): the settings file, a control FIFO and a done FIFO.
//! 3. Take one thread of the target with ptrace (`inject.rs`), call the target's own
//!    `dlopen` on the recorder and the recorder's `memlens_attach(settings)`, give the
//!    thread back as it was. The recorder routes the allocation functions to itself and
//!    records (`crates/memlens-preload/src/attach/`).
//! 4. Wait for `--duration`, Ctrl-C, SIGTERM/SIGHUP, or the process's end. Unless
//!    `--leak-check=no`, take a heap snapshot of the still-recorded process
//!    (`crate::snapshot`), joined with the trace so far, into NAME.snap. Then write to
//!    the control FIFO: the recorder's own thread undoes the routing, ends the trace and
//!    answers `ok` on the done FIFO. No ptrace is needed for that, so a thread stopped in
//!    an awkward place can never hang the detach; if memlens dies, the control FIFO's end
//!    of file detaches the same way.
//! 5. Move the trace to its name and print `memlens run`'s summary of the window: its
//!    heap errors, and the LEAK SUMMARY of the blocks allocated in it (from the snapshot).

mod inject;
mod target;

use crate::run::LeakCheck;
use memlens_trace::env as var;
use std::ffi::CString;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The window was recorded and memlens detached: the process runs on.
pub const EXIT_DETACHED: u8 = 0;
/// Refused before the process was touched (one sentence says why).
pub const EXIT_REFUSED: u8 = 1;
/// The process ended (exit, exec, killed) while it was recorded; the summary covers
/// what was recorded until then.
pub const EXIT_PROCESS_ENDED: u8 = 2;
/// The recorder could not be loaded or started in the process; it runs on unchanged.
pub const EXIT_ATTACH_FAILED: u8 = 4;

#[derive(clap::Args)]
#[command(after_long_help = "\
Exit status: 0 the window was recorded and memlens detached (the process runs on); \
1 refused before touching the process (no such process, no permission, already traced, \
stopped, statically linked, not glibc-based); 2 the process ended while recorded (the summary \
covers what was recorded until then); 4 the recorder could not be loaded or started in the \
process (it runs on unchanged); 125 memlens itself failed (bad option, recorder library \
missing, output not writable, trace unreadable).

Example:
  memlens attach 4242 --duration 30s        # record 30 s of a running server
  memlens report memlens.myserver.4242.trace
  memlens leaks memlens.myserver.4242.snap   # the leak check at the window's end")]
pub struct AttachArgs {
    /// The running process to record (its pid). It must be dynamically linked against
    /// glibc, x86_64, and memlens must be allowed to ptrace it (same user, or root).
    #[arg(value_name = "PID")]
    pub pid: i32,
    /// Stop recording after this long (e.g. 500ms, 30s, 5m). Without it, recording
    /// lasts until Ctrl-C or SIGTERM to memlens, or until the process ends.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = memlens_common::units::parse_duration)]
    pub duration: Option<Duration>,
    /// Where to write the trace. Default: memlens.NAME.PID.trace in the current directory
    /// (replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Maximum number of frames recorded per stack (1-256).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub depth: u32,
    /// Interval between RSS samples in milliseconds (at least 1: the same thread also
    /// notices libraries loaded later and the end of the recording).
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub rss_interval: u64,
    /// Record the stack of every free/delete (costs time).
    #[arg(long)]
    pub free_stacks: bool,
    /// Leak check when the recording ends with the process still running: a heap
    /// snapshot of the whole process (as `memlens snapshot` takes it: every thread is
    /// stopped while its heap is walked, and the pause is printed), written beside the
    /// trace as NAME.snap. no: none, no pause; summary: the LEAK SUMMARY of the blocks
    /// allocated while attached, which have their stacks, and one line for the blocks
    /// from before the attach; full or yes: also the loss records, as `memlens leaks`
    /// prints them.
    #[arg(long, value_enum, default_value_t = LeakCheck::Summary)]
    pub leak_check: LeakCheck,
    #[command(flatten)]
    pub leak: crate::leaks::LeakOptions,
    /// Print nothing but errors (no summary).
    #[arg(short, long)]
    pub quiet: bool,
}

/// An error with the exit status it gives.
struct Failure(u8, String);

fn refused(msg: impl Into<String>) -> Failure {
    Failure(EXIT_REFUSED, msg.into())
}

fn own_failure(msg: impl Into<String>) -> Failure {
    Failure(crate::EXIT_USAGE, msg.into())
}

pub fn main(args: AttachArgs) -> ExitCode {
    match attach(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, msg)) => {
            crate::say!("memlens: error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The private directory of one attach: removed when dropped.
struct Workdir(PathBuf);

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn chown(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// Signals that end the recording, taken through a signalfd (blocked for the thread).
struct StopSignals {
    fd: i32,
}

impl StopSignals {
    fn new() -> Option<StopSignals> {
        // SAFETY: building a sigset, blocking it in this thread (the only one), and
        // making a signalfd of it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            (fd >= 0).then_some(StopSignals { fd })
        }
    }

    /// The signal received, if one was.
    fn take(&self) -> Option<i32> {
        // SAFETY: an all-zero signalfd_siginfo is valid.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        // SAFETY: a non-blocking read of at most one siginfo into `info`, from our fd.
        let n = unsafe {
            libc::read(
                self.fd,
                &mut info as *mut _ as *mut libc::c_void,
                std::mem::size_of::<libc::signalfd_siginfo>(),
            )
        };
        (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize)
            .then_some(info.ssi_signo as i32)
    }
}

/// Wait until `fd` is readable (or hung up), a stop signal arrives, or `until`.
/// Returns (fd ready, signal).
fn wait(fd: i32, signals: Option<&StopSignals>, until: Option<Instant>) -> (bool, Option<i32>) {
    loop {
        let mut fds = vec![libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(s) = signals {
            fds.push(libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = match until {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (false, None);
                }
                left.as_millis().min(i32::MAX as u128).max(1) as i32
            }
        };
        // SAFETY: poll on our pollfd array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue;
        }
        if let Some(sig) = signals.and_then(StopSignals::take) {
            return (false, Some(sig));
        }
        if fds[0].revents != 0 {
            return (true, None);
        }
    }
}

/// The recorder as the target can load it: where it is, when the target's user can read
/// it there (its own, or every directory on the way open to others); else a copy in
/// `/tmp/memlens-recorder-UID-SIZE-CRC/` (directory 0755 and file 0644, owned by us and
/// checked to be exactly our recorder when it exists already, so that every attach loads
/// the same file and nobody else can swap it).
fn loadable_copy(recorder: &Path, t: &target::Target) -> Result<PathBuf, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let open_to_others = |p: &Path, bit: u32| fs::metadata(p).is_ok_and(|m| m.mode() & bit != 0);
    let readable = t.uid == euid
        || (open_to_others(recorder, 0o004)
            && recorder
                .ancestors()
                .skip(1)
                .all(|d| open_to_others(d, 0o001)));
    if readable {
        return Ok(recorder.to_path_buf());
    }
    let bytes =
        fs::read(recorder).map_err(|e| format!("cannot read {}: {e}", recorder.display()))?;
    let dir = PathBuf::from(format!(
        "/tmp/memlens-recorder-{euid}-{}-{:08x}",
        bytes.len(),
        crc32fast::hash(&bytes)
    ));
    let copy = dir.join("libmemlens_preload.so");
    let ours = |p: &Path| {
        fs::symlink_metadata(p)
            .is_ok_and(|m| m.uid() == euid && m.mode() & 0o022 == 0 && !m.file_type().is_symlink())
    };
    if dir.exists() {
        if !ours(&dir) || !ours(&copy) || fs::read(&copy).ok().as_deref() != Some(&bytes[..]) {
            return Err(format!(
                "{} exists but is not memlens's own copy of the recorder for this process's user to load; remove it",
                dir.display()
            ));
        }
        return Ok(copy);
    }
    let tmp = PathBuf::from(format!("{}.tmp{}", dir.display(), std::process::id()));
    let made = fs::DirBuilder::new()
        .mode(0o755)
        .create(&tmp)
        .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)))
        .and_then(|_| fs::write(tmp.join("libmemlens_preload.so"), &bytes))
        .and_then(|_| {
            fs::set_permissions(
                tmp.join("libmemlens_preload.so"),
                fs::Permissions::from_mode(0o644),
            )
        })
        .and_then(|_| fs::rename(&tmp, &dir));
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&tmp);
        if !dir.exists() {
            return Err(format!(
                "process {} runs as another user, who cannot read {}, and a copy in /tmp could not be made: {e}",
                t.pid,
                recorder.display()
            ));
        }
    }
    Ok(copy)
}

fn attach(args: &AttachArgs) -> Result<u8, Failure> {
    let pid = args.pid;
    if pid <= 0 {
        return Err(refused(format!("{pid} is not a process id")));
    }
    // SAFETY: getpid has no preconditions.
    if pid == unsafe { libc::getpid() } {
        return Err(refused("memlens cannot attach to itself"));
    }
    let t = target::inspect(pid).map_err(refused)?;
    let recorder = crate::run::find_preload().map_err(|e| own_failure(e.parts().0))?;
    let recorder = recorder.canonicalize().unwrap_or(recorder);
    let recorder = loadable_copy(&recorder, &t).map_err(own_failure)?;
    // Another copy of the recorder (`memlens run`'s, or another installation's): a second
    // one would take the allocations away from the first.
    if let Some(other) = t
        .maps
        .iter()
        .find(|m| m.file_name().starts_with("libmemlens_preload") && Path::new(&m.path) != recorder)
    {
        return Err(refused(format!(
            "process {pid} ({}) already has a memlens recorder loaded ({}): it runs under \
             `memlens run`, or was attached by another memlens installation, which must be used \
             again",
            t.name, other.path
        )));
    }
    let output = match &args.output {
        Some(o) => o.clone(),
        None => PathBuf::from(format!("memlens.{}.{pid}.trace", sanitize(&t.name))),
    };
    let output = std::path::absolute(&output)
        .map_err(|e| own_failure(format!("bad output path {}: {e}", output.display())))?;
    let snapshot_out = snapshot_path(&output);
    // A bad suppressions file is said before the process is touched.
    let suppressions = args.leak.load_suppressions().map_err(own_failure)?;
    let dir = output.parent().unwrap_or(Path::new("/")).to_path_buf();
    let work = dir.join(format!(".memlens-attach-{pid}-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&work)
        .map_err(|e| own_failure(format!("cannot create {}: {e}", work.display())))?;
    let work = Workdir(work);
    let control = work.0.join("control");
    let done = work.0.join("done");
    let settings = work.0.join("settings");
    let trace_tmp = work.0.join("trace");
    mkfifo(&control)
        .and_then(|_| mkfifo(&done))
        .map_err(|e| own_failure(format!("cannot create FIFOs in {}: {e}", work.0.display())))?;
    let text = var::settings_text(&[
        (var::OUTPUT, trace_tmp.as_os_str().as_bytes().to_vec()),
        (var::DEPTH, args.depth.to_string().into_bytes()),
        (
            var::RSS_INTERVAL_MS,
            args.rss_interval.to_string().into_bytes(),
        ),
        (
            var::FREE_STACKS,
            if args.free_stacks { "1" } else { "0" }.into(),
        ),
        (var::ATTACH_CONTROL, control.as_os_str().as_bytes().to_vec()),
        (var::ATTACH_DONE, done.as_os_str().as_bytes().to_vec()),
    ]);
    fs::write(&settings, text)
        .map_err(|e| own_failure(format!("cannot write {}: {e}", settings.display())))?;
    // The target's user writes the trace and opens the FIFOs.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != t.uid {
        for p in [&work.0, &control, &done, &settings] {
            chown(p, t.uid, t.gid).map_err(|e| {
                own_failure(format!(
                    "cannot give {} to the process's user: {e}",
                    p.display()
                ))
            })?;
        }
    }
    // Our ends of the FIFOs, open before the recorder opens its ends (without blocking).
    let done_file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&done)
        .map_err(|e| own_failure(format!("cannot open {}: {e}", done.display())))?;
    let mut control_file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&control)
        .map_err(|e| own_failure(format!("cannot open {}: {e}", control.display())))?;
    // Ctrl-C and SIGTERM end the recording from here on, not memlens.
    let signals = StopSignals::new();

    let started = Instant::now();
    inject(&t, &recorder, &settings)?;
    let attach_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !args.quiet {
        crate::say!(
            "==memlens== attached to process {pid} ({}) in {attach_ms:.1} ms; recording{}",
            t.name,
            match args.duration {
                Some(d) => format!(
                    " for {}",
                    memlens_common::units::human_duration(d.as_secs_f64())
                ),
                None => " until Ctrl-C (or SIGTERM to memlens)".to_string(),
            }
        );
    }

    use std::os::fd::AsRawFd;
    let until = args.duration.map(|d| Instant::now() + d);
    let (ended_early, _sig) = wait(done_file.as_raw_fd(), signals.as_ref(), until);
    // The leak check, while the recorder still runs: it writes its buffered events for
    // the snapshot to join, and its live table says which blocks it saw allocated.
    let leak_check = (!ended_early && args.leak_check != LeakCheck::No)
        .then(|| crate::snapshot::write_snapshot(pid as u32, &trace_tmp, &snapshot_out));
    let mut answer = Vec::new();
    if !ended_early {
        // Ask the recorder to stop; it answers on the done FIFO.
        let _ = control_file.write_all(b"q");
    }
    // The recorder's answer (`ok`), or the end of file when the process is gone. A
    // second signal gives up waiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut gave_up = false;
    loop {
        let mut buf = [0u8; 64];
        // SAFETY: a non-blocking read into `buf`.
        let n = unsafe {
            libc::read(
                done_file.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n > 0 {
            answer.extend_from_slice(&buf[..n as usize]);
            continue;
        }
        if n == 0 {
            break;
        }
        let (_, sig) = wait(done_file.as_raw_fd(), signals.as_ref(), Some(deadline));
        if sig.is_some() || Instant::now() >= deadline {
            gave_up = true;
            break;
        }
    }
    drop(control_file);
    let detached = answer.starts_with(b"ok");
    if gave_up {
        return Err(Failure(
            EXIT_ATTACH_FAILED,
            format!(
                "the recorder in process {pid} did not finish the trace; it was asked to stop and \
                 will when it can; what was written is in {}",
                output.display()
            ),
        ))
        .inspect_err(|_| {
            let _ = fs::rename(&trace_tmp, &output);
        });
    }
    fs::rename(&trace_tmp, &output)
        .or_else(|_| fs::copy(&trace_tmp, &output).map(|_| ()))
        .map_err(|e| own_failure(format!("cannot write {}: {e}", output.display())))?;
    drop(work);
    // How the trace ended says what happened to the process when it did not detach.
    let end = memlens_trace::reader::TraceReader::open(&output)
        .and_then(|r| r.metadata())
        .ok()
        .and_then(|m| m.end);
    if !args.quiet {
        let opts = memlens_analysis::ReportOptions {
            top: 3,
            leaks: Some(args.leak.resolution()),
            heap_errors: true,
            ..Default::default()
        };
        match crate::report::analyse(&output, &opts) {
            Ok(mut r) => {
                crate::report::print_run_summary(&r, &output);
                // The window's heap errors (the trace has no scan: its leak report has
                // nothing else).
                if let Some(l) = r.leaks.take() {
                    let md = std::mem::take(&mut r.metadata);
                    let mut view = crate::leaks::LeakView::new(l, md, &args.leak, &suppressions);
                    crate::write_stderr(&crate::leaks::after_summary(&mut view, &output, false));
                }
            }
            Err(e) => {
                return Err(own_failure(format!(
                    "cannot summarize {}: {e}",
                    output.display()
                )))
            }
        }
        match leak_check {
            Some(Ok(pause)) => {
                if let Err(e) = window_leaks(&snapshot_out, pause, args, &suppressions) {
                    crate::say!("==memlens== no leak check: {e}");
                }
            }
            Some(Err(e)) => crate::say!("==memlens== no leak check: {e}"),
            None => {}
        }
        if detached {
            crate::say!("==memlens== detached: process {pid} runs on");
        } else {
            let how = match &end {
                Some(e) if e.kind == memlens_trace::ExitKind::Exit => {
                    format!("exited with status {}", e.code)
                }
                Some(e) if e.kind == memlens_trace::ExitKind::Signal => {
                    memlens_common::signal::killed_by(e.code)
                }
                _ => "ended (or replaced itself with exec, or called _exit)".to_string(),
            };
            crate::say!("==memlens== process {pid} {how} while recorded; the trace ends there");
        }
    }
    Ok(if detached {
        EXIT_DETACHED
    } else {
        EXIT_PROCESS_ENDED
    })
}

/// Where the leak check's snapshot goes: beside the trace, `.trace` replaced by `.snap`.
fn snapshot_path(trace: &Path) -> PathBuf {
    match trace.extension() {
        Some(x) if x == "trace" => trace.with_extension("snap"),
        _ => {
            let mut s = trace.as_os_str().to_owned();
            s.push(".snap");
            PathBuf::from(s)
        }
    }
}

/// The leak check of the window, from the snapshot taken at its end: the LEAK SUMMARY
/// (and with --leak-check=full the loss records) of the blocks allocated while attached,
/// which the recorder saw and which have stacks; one line for the blocks from before the
/// attach, which have none.
fn window_leaks(
    snap: &Path,
    pause: Duration,
    args: &AttachArgs,
    sup: &memlens_analysis::suppressions::Suppressions,
) -> Result<(), String> {
    use memlens_analysis::leaks::Summary;
    use memlens_common::units::{count, human_bytes, human_time, plural};
    let mut view = crate::leaks::LeakView::load(snap, &args.leak, sup).map_err(|e| {
        format!(
            "cannot read the leak check's snapshot {}: {e}",
            snap.display()
        )
    })?;
    let (before, window): (Vec<_>, Vec<_>) = std::mem::take(&mut view.report.records)
        .into_iter()
        .partition(|r| r.stack == 0);
    view.report.records = window;
    view.report.resummarize();
    // What the kinds below add up to, as memcheck's "in use at exit": at the snapshot.
    // The trace's figures above count on to the detach, a moment later.
    let w = &view.report.summary;
    let in_use = [
        w.definitely_lost,
        w.indirectly_lost,
        w.possibly_lost,
        w.still_reachable,
        w.suppressed,
    ];
    let mut text = format!(
        "==memlens== leak check at the end of the window: a heap snapshot of the whole process \
         (paused {}), in {}\n==memlens== of the blocks allocated while attached: {} bytes in {} \
         in use at the snapshot (the figures above count on to the detach)\n",
        human_time(pause.as_nanos() as u64),
        snap.display(),
        count(in_use.iter().map(|a| a.bytes).sum()),
        plural(in_use.iter().map(|a| a.blocks).sum(), "block", "blocks"),
    );
    text.push_str(&crate::leaks::after_summary(
        &mut view,
        snap,
        args.leak_check == LeakCheck::Full,
    ));
    let s = &Summary::of(&before);
    let kinds = [
        s.definitely_lost,
        s.indirectly_lost,
        s.possibly_lost,
        s.still_reachable,
    ];
    let blocks: u64 = kinds.iter().map(|a| a.blocks).sum();
    if blocks > 0 {
        text.push_str(&format!(
            "==memlens== blocks from before the attach (no stacks): {} in {}: {} B definitely \
             lost, {} B indirectly lost, {} B possibly lost, {} B still reachable\n",
            human_bytes(kinds.iter().map(|a| a.bytes).sum()),
            plural(blocks, "block", "blocks"),
            count(s.definitely_lost.bytes),
            count(s.indirectly_lost.bytes),
            count(s.possibly_lost.bytes),
            count(s.still_reachable.bytes),
        ));
    }
    crate::write_stderr(&text);
    Ok(())
}

/// Libraries whose code may hold a lock that `dlopen` or malloc take (the allocator's,
/// the loader's, stdio's, the C++ runtime's): a thread stopped running in them is not
/// taken.
const LOCKING_LIBRARIES: &[&str] = &[
    "libc.so",
    "ld-linux",
    "libpthread",
    "libdl",
    "libstdc++",
    "libgcc_s",
    "libmemlens_preload",
];

/// Whether a thread stopped in user code at `rip` may be taken: its code is the
/// program's own (or the vDSO, or JIT code), not a library that may hold a lock.
fn user_code_is_safe(maps: &[target::Map], rip: u64) -> bool {
    maps.iter()
        .find(|m| m.start <= rip && rip < m.end)
        .is_some_and(|m| {
            m.exec
                && !LOCKING_LIBRARIES
                    .iter()
                    .any(|l| m.file_name().starts_with(l))
        })
}

/// The thread to take, where it cannot hold a lock that loading the recorder needs:
/// first one waiting in a system call (read, poll, sleep...); from the second round on,
/// also one waiting on a futex (a condition variable, a join, the GIL: it might be
/// waiting for a lock while holding another) or one running the program's own code (a
/// busy loop; never inside libc, ld.so or the C++ runtime). Every thread is seized and
/// let go at once if it is not at such a point; rounds go on for 3 s.
fn take_thread(t: &target::Target) -> Result<inject::Thread, Failure> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut round = 0;
    loop {
        let tids: Vec<i32> = fs::read_dir(format!("/proc/{}/task", t.pid))
            .map_err(|_| Failure(EXIT_REFUSED, format!("process {} has exited", t.pid)))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        if tids.is_empty() {
            return Err(refused(format!("process {} has exited", t.pid)));
        }
        let relaxed = round > 0;
        // The map as it is now (libraries come and go).
        let maps = target::read_maps(t.pid).unwrap_or_else(|_| t.maps.clone());
        for &tid in &tids {
            let comm =
                fs::read_to_string(format!("/proc/{}/task/{tid}/comm", t.pid)).unwrap_or_default();
            if comm.trim() == "memlens-rss" {
                continue;
            }
            let th = match inject::Thread::seize(tid) {
                Ok(th) => th,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(refused(target::ptrace_refused(t.pid, &e)));
                }
                // The thread ended meanwhile.
                Err(_) => continue,
            };
            let safe = match th.waiting_in() {
                Some(nr) => inject::safe_wait(nr, relaxed).is_some(),
                None => relaxed && th.in_user_mode() && user_code_is_safe(&maps, th.pc()),
            };
            if safe {
                return Ok(th);
            }
            drop(th);
        }
        round += 1;
        if Instant::now() >= deadline {
            return Err(Failure(
                EXIT_ATTACH_FAILED,
                format!(
                    "no thread of process {} could be taken in 3 s of tries: each was inside \
                     libc, the loader or the C++ runtime, where it may hold a lock that loading \
                     the recorder needs; try again",
                    t.pid
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn inject(t: &target::Target, recorder: &Path, settings: &Path) -> Result<(), Failure> {
    let pid = t.pid;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Failure(
            EXIT_ATTACH_FAILED,
            format!("cannot load the recorder into process {pid}: {what}: {e}"),
        )
    };
    let libc_path = target::mapped_file(&t.maps, "libc.so.6")
        .ok_or_else(|| refused(format!("process {pid} has no libc.so.6 mapped")))?
        .to_string();
    // glibc 2.34 and later export dlopen from libc; before, only __libc_dlopen_mode
    // (which takes __RTLD_DLOPEN in its flags).
    let (dlopen, dlopen_flags) = match target::symbol_address(pid, &t.maps, &libc_path, "dlopen") {
        Ok(a) => (a, libc::RTLD_NOW as u64),
        Err(_) => (
            target::symbol_address(pid, &t.maps, &libc_path, "__libc_dlopen_mode")
                .map_err(|e| fail("no dlopen in its libc", &e))?,
            libc::RTLD_NOW as u64 | 0x8000_0000,
        ),
    };
    let dlerror = target::symbol_address(pid, &t.maps, &libc_path, "dlerror").ok();
    let text = target::text_of(&t.maps, &libc_path)
        .ok_or_else(|| fail("libc has no executable mapping", &"?"))?;

    let mut th = take_thread(t)?;
    th.save_xstate()
        .map_err(|e| fail("cannot save its registers", &e))?;
    th.find_syscall(text)
        .map_err(|e| fail("cannot find a syscall instruction", &e))?;
    let lib = recorder.as_os_str().as_bytes();
    let set = settings.as_os_str().as_bytes();
    let strings = th
        .map_page(&[lib, set])
        .map_err(|e| fail("cannot map a page in it", &e))?;
    let result = (|| {
        let handle = th
            .call(dlopen, &[strings[0], dlopen_flags])
            .map_err(|e| fail("dlopen failed", &e))?;
        if handle == 0 {
            let why = dlerror
                .and_then(|f| th.call(f, &[]).ok())
                .filter(|&p| p != 0)
                .and_then(|p| th.read_string(p).ok())
                .unwrap_or_else(|| "no reason given".to_string());
            return Err(fail(
                &format!("its dlopen of {} failed", recorder.display()),
                &why,
            ));
        }
        let maps = target::read_maps(pid).map_err(|e| fail("cannot read its memory map", &e))?;
        let lib_path = recorder.to_string_lossy().to_string();
        let entry = target::symbol_address(pid, &maps, &lib_path, var::ATTACH_ENTRY)
            .map_err(|e| fail("the recorder's entry point", &e))?;
        let r = th
            .call(entry, &[strings[1]])
            .map_err(|e| fail("the recorder's start failed", &e))? as i32;
        match r {
            0 => Ok(()),
            1 => Err(Failure(
                EXIT_REFUSED,
                format!(
                    "process {pid} is already recorded: it was started by `memlens run`, or \
                     another `memlens attach` records it"
                ),
            )),
            2 => Err(fail(
                "the recorder cannot read its settings",
                &settings.display(),
            )),
            3 => Err(fail(
                "the recorder cannot create the trace (its user may not write there)",
                &settings.parent().unwrap_or(Path::new("?")).display(),
            )),
            4 => Err(fail("the recorder cannot open its control FIFOs", &"?")),
            6 => Err(Failure(
                EXIT_REFUSED,
                format!(
                    "process {pid} does not allocate with glibc's malloc (it preloads or links \
                     another allocator, such as jemalloc, or defines its own malloc): memlens \
                     attach would free one allocator's blocks with the other; record it from \
                     its start with `memlens run`"
                ),
            )),
            n => Err(fail("the recorder did not start", &format!("code {n}"))),
        }
    })();
    let _ = th.unmap_page();
    let released = th.release();
    result?;
    released.map_err(|e| fail("cannot give its thread back", &e))?;
    Ok(())
}
