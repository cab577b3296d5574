//! The one child supervisor of `memlens run`, `memlens check` and `memlens watch --
//! PROGRAM`: find the program, start it, pass signals on to it, wait for it, and turn
//! how it ended into memlens's own exit. Also the only place memlens handles signals:
//! `watch --pid` (no child) asks it for the signals that end a watch, and `watch`'s loop
//! for a self-pipe those signals write to.
//!
//! # Which signals reach the program, and how
//!
//! While the program runs, memlens catches SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1 and
//! SIGUSR2 and never dies of them: it must outlive the program to read its trace and
//! print the summary (or `watch`'s report) and to exit with the program's status.
//!
//! * **From the terminal** (Ctrl-C, Ctrl-\, a hangup: the kernel sends them, `si_code`
//!   `SI_KERNEL`): the terminal signals its whole foreground process group, the program
//!   included, so memlens passes nothing on. The program gets the signal once, as it
//!   would without memlens, and memlens waits for it to end.
//! * **Sent to memlens by a process** (`kill`, `timeout`, a service manager: `SI_USER`,
//!   `SI_QUEUE`, `SI_TKILL`): passed on to the program with `kill(2)`, the same signal.
//!   `kill -USR1 <memlens pid>` reaches a program that reloads on SIGUSR1;
//!   `kill <memlens pid>` stops the program, whose recorder writes its leak check, and
//!   memlens then reports and exits as the program did.
//!
//! A signal a process sends to the whole process group (`kill -TERM -PGID`) reaches the
//! program directly and again through memlens: memlens cannot tell it from one sent to it
//! alone. Other signals keep their default action.
//!
//! The signals are blocked from before the program is started until its pid is known, so
//! none sent in between is lost. Once the program has ended (`waitid` with `WNOWAIT`
//! tells without reaping it), nothing more is passed on, and only then is it reaped: a
//! signal can never go to a recycled pid. The default actions come back then, so Ctrl-C
//! stops a long summary; the trace is already complete.
//!
//! # Exit status
//!
//! memlens exits with the program's status: [`Exit::status`] (the status, or 128+N for
//! death by signal N, as shells give it) for `watch`; `run` and `check` die by the same
//! signal instead ([`Exit::reraise`]), so that their callers see exactly what the program
//! did. memlens's own failures never replace it. When the program cannot be started: 127
//! not found, 126 not runnable, 125 memlens failed (as `env(1)`).

use memlens_common::signal::killed_by;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The program cannot be run (126), or was not found (127), as in shells and `env(1)`.
pub const EXIT_CANNOT_RUN: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

/// Everything that can stop memlens before the program starts.
#[derive(Debug)]
pub enum LaunchError {
    NotFound(String),
    NotRunnable(String),
    Other(String),
}

impl LaunchError {
    /// The message and memlens's exit status for it.
    pub fn parts(self) -> (String, u8) {
        match self {
            LaunchError::NotFound(m) => (m, EXIT_NOT_FOUND),
            LaunchError::NotRunnable(m) => (m, EXIT_CANNOT_RUN),
            LaunchError::Other(m) => (m, crate::EXIT_USAGE),
        }
    }

    /// Say why, and give memlens's exit status.
    pub fn exit(self) -> ExitCode {
        let (msg, code) = self.parts();
        crate::say!("memlens: error: {msg}");
        ExitCode::from(code)
    }
}

/// Find `prog` like execvp does: a name with a slash is a path, otherwise search PATH.
pub fn resolve_program(prog: &OsStr) -> Result<PathBuf, LaunchError> {
    let shown = prog.to_string_lossy();
    if prog.as_bytes().contains(&b'/') {
        let p = PathBuf::from(prog);
        if p.is_dir() {
            return Err(LaunchError::NotRunnable(format!(
                "{shown} is a directory, not a program"
            )));
        }
        if !p.exists() {
            return Err(LaunchError::NotFound(format!(
                "cannot run {shown}: no such file"
            )));
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(prog);
        if p.is_file() && is_executable(&p) {
            return Ok(p);
        }
    }
    Err(LaunchError::NotFound(format!(
        "cannot find program '{shown}' in PATH"
    )))
}

/// Whether `p` has an execute permission bit.
pub fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// Signals

/// The signals passed on to the program (see the module documentation).
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The signals that end `watch --pid`.
const STOPPING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The program's pid while signals are passed on to it; 0 otherwise.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The write end of [`Wake`]'s pipe, or -1.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The last signal received while there was no program to pass it on to, or 0.
static STOP: AtomicI32 = AtomicI32::new(0);

/// `si_code` of a signal the kernel sent (the terminal's Ctrl-C, Ctrl-\, hangup), not
/// kill(2).
const SI_KERNEL: i32 = 0x80;

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if sig != libc::SIGCHLD {
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
            let code = if info.is_null() {
                0
            } else {
                unsafe { (*info).si_code }
            };
            if code != SI_KERNEL {
                // SAFETY: kill is async-signal-safe; the child is not reaped while CHILD
                // holds its pid.
                unsafe { libc::kill(child, sig) };
            }
        } else {
            STOP.store(sig, Ordering::SeqCst);
        }
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; the pipe is non-blocking.
        unsafe { libc::write(fd, [0u8].as_ptr().cast(), 1) };
    }
}

/// Route `signals` to [`on_signal`].
fn catch(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: installing a handler in our own process; it only uses atomics, kill and
        // write.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NOCLDSTOP | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Block (`how` = `SIG_BLOCK`) or unblock [`FORWARDED`]. Async-signal-safe.
fn mask_forwarded(how: libc::c_int) {
    // SAFETY: a sigset built here; changes this thread's mask only (memlens is one
    // thread while it supervises).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// The default actions of [`FORWARDED`] again. Async-signal-safe.
fn restore_defaults() {
    for sig in FORWARDED {
        // SAFETY: resetting our own dispositions.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// `watch --pid`: SIGINT, SIGTERM, SIGHUP and SIGQUIT end the watch instead of memlens;
/// [`take_stop`] tells.
pub fn stop_on_signals() {
    catch(&STOPPING);
}

/// The signal that asked to stop since the last call, if any.
pub fn take_stop() -> Option<i32> {
    match STOP.swap(0, Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// A self-pipe that every signal handled here writes to, the program's end (SIGCHLD)
/// included, so that a wait for the next sample ends at once.
pub struct Wake {
    read: std::os::fd::OwnedFd,
    _write: std::os::fd::OwnedFd,
}

impl Wake {
    pub fn install() -> std::io::Result<Wake> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut fds = [0i32; 2];
        // SAFETY: fds has room for two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: two new descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        catch(&[libc::SIGCHLD]);
        Ok(Wake {
            read,
            _write: write,
        })
    }

    /// Sleep until `deadline` or a signal.
    pub fn wait_until(&self, deadline: Instant) {
        use std::os::fd::AsRawFd;
        let now = Instant::now();
        if deadline > now {
            let d = deadline - now;
            let ts = libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            let mut pfd = libc::pollfd {
                fd: self.read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a null signal mask pointer keeps the current mask.
            unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        }
        let mut buf = [0u8; 64];
        // SAFETY: draining our own non-blocking pipe.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        WAKE_FD.store(-1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// The program

/// How the program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    fn of(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (_, Some(sig)) => Exit::Signal(sig),
            (code, None) => Exit::Code(code.unwrap_or(1)),
        }
    }

    /// The status as shells give it: the exit status, or 128+N for signal N.
    pub fn status(self) -> u8 {
        match self {
            Exit::Code(c) => c as u8,
            Exit::Signal(sig) => (128 + sig) as u8,
        }
    }

    /// `exited with status 3`, `was killed by signal 9 (SIGKILL)`.
    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited with status {c}"),
            Exit::Signal(sig) => format!("was {}", killed_by(sig)),
        }
    }

    /// Die by the program's signal, if one killed it (without dumping a core of memlens
    /// itself); otherwise return.
    pub fn reraise(self) {
        let Exit::Signal(sig) = self else {
            return;
        };
        // SAFETY: resetting our own dispositions and raising a signal at ourselves.
        unsafe {
            let lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig)
    }
}

/// The program memlens started, with signals passed on to it until it ends.
pub struct Supervised {
    child: std::process::Child,
    /// Set once it is reaped.
    exit: Option<Exit>,
}

/// Start `cmd` (the program `prog`, resolved) and pass signals on to it.
pub fn spawn(cmd: &mut Command, prog: &Path) -> Result<Supervised, LaunchError> {
    // Handlers first, with the signals blocked until the pid is known: a signal sent in
    // between waits and is passed on. The program gets them unblocked (a mask is
    // inherited across exec, and std's spawn keeps it) and with their default actions,
    // set before the unblocking so that one pending in the new process acts on it
    // rather than on a copy of memlens's handler.
    // SAFETY: the closure runs between fork and exec and only calls sigaction and
    // pthread_sigmask, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            restore_defaults();
            mask_forwarded(libc::SIG_UNBLOCK);
            Ok(())
        })
    };
    mask_forwarded(libc::SIG_BLOCK);
    catch(&FORWARDED);
    let spawned = cmd.spawn();
    if let Ok(child) = &spawned {
        CHILD.store(child.id() as i32, Ordering::SeqCst);
    } else {
        restore_defaults();
    }
    mask_forwarded(libc::SIG_UNBLOCK);
    let child = spawned.map_err(|e| {
        // The file is there: what is missing is the interpreter its `#!` line names.
        if e.kind() == std::io::ErrorKind::NotFound {
            if let Some(interp) = missing_interpreter(prog) {
                return LaunchError::NotFound(format!(
                    "cannot run {}: its interpreter {interp} (its #! line) does not exist",
                    prog.display()
                ));
            }
        }
        let msg = format!("cannot run {}: {e}", prog.display());
        match e.kind() {
            std::io::ErrorKind::NotFound => LaunchError::NotFound(msg),
            _ => LaunchError::NotRunnable(msg),
        }
    })?;
    Ok(Supervised { child, exit: None })
}

/// The interpreter named by `prog`'s `#!` line, if `prog` is a script whose interpreter
/// does not exist.
fn missing_interpreter(prog: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(prog).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&c| c == b'\n').unwrap_or(line.len())];
    let interp = String::from_utf8_lossy(line)
        .split_whitespace()
        .next()?
        .to_string();
    (!Path::new(&interp).exists()).then_some(interp)
}

impl Supervised {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the program to end.
    pub fn wait(&mut self) -> std::io::Result<Exit> {
        self.wait_for_end(0)
            .map(|e| e.expect("waited without WNOHANG"))
    }

    /// How the program ended, if it has.
    pub fn try_wait(&mut self) -> std::io::Result<Option<Exit>> {
        self.wait_for_end(libc::WNOHANG)
    }

    /// Stop the program: SIGTERM, 5 seconds of grace, then SIGKILL. Returns the signal
    /// that was needed.
    pub fn stop(&mut self) -> i32 {
        // SAFETY: signalling our own child, which is not reaped.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.try_wait() {
                return libc::SIGTERM;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; the child has not been reaped (try_wait found it running).
        unsafe { libc::kill(self.pid() as i32, libc::SIGKILL) };
        let _ = self.wait();
        libc::SIGKILL
    }

    /// `waitid` for the program's end (`flags`: 0 or `WNOHANG`) without reaping it; once
    /// it has ended, stop passing signals on, then reap it.
    fn wait_for_end(&mut self, flags: libc::c_int) -> std::io::Result<Option<Exit>> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        loop {
            // SAFETY: a zeroed siginfo for waitid to fill; si_pid stays 0 under WNOHANG
            // when the child has not ended.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waiting for our own child without reaping it (WNOWAIT).
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid(),
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT | flags,
                )
            };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: waitid filled info (or left it zeroed).
            if unsafe { info.si_pid() } == 0 {
                return Ok(None);
            }
            break;
        }
        CHILD.store(0, Ordering::SeqCst);
        restore_defaults();
        self.exit = Some(Exit::of(self.child.wait()?));
        Ok(self.exit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits() {
        assert_eq!(Exit::Code(3).status(), 3);
        assert_eq!(Exit::Signal(libc::SIGTERM).status(), 143);
        assert_eq!(Exit::Code(0).describe(), "exited with status 0");
        assert_eq!(
            Exit::Signal(libc::SIGKILL).describe(),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    /// memlens-common's table has no libc to check itself against.
    #[test]
    fn signal_names_match_libc() {
        use memlens_common::signal::signal_name;
        for (sig, name) in [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGSTKFLT, "SIGSTKFLT"),
            (libc::SIGCHLD, "SIGCHLD"),
            (libc::SIGSTOP, "SIGSTOP"),
            (libc::SIGURG, "SIGURG"),
            (libc::SIGWINCH, "SIGWINCH"),
            (libc::SIGIO, "SIGIO"),
            (libc::SIGPWR, "SIGPWR"),
            (libc::SIGSYS, "SIGSYS"),
        ] {
            assert_eq!(signal_name(sig), Some(name));
        }
        assert_eq!(signal_name(libc::SIGRTMIN()), None);
    }
}
