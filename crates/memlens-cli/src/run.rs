//! `memlens run` and `memlens check`: launch a program with the recorder preloaded
//! (through [`crate::supervise`], which also passes signals on and waits), print the
//! summary and the leak check, apply `check`'s budgets, and exit exactly as the program
//! did.

use crate::supervise::{self, is_executable, resolve_program, LaunchError};
use memlens_trace::env;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(clap::Args)]
#[command(
    after_help = "The program's stdout and stderr are left untouched; memlens prints its summary on \
stderr after the program exits and then exits with the program's own status (or dies by the same \
signal). The program's process is recorded, and so is each program its process becomes by exec \
(a shim or wrapper script and the real program: each image writes its own trace, and the summary \
is of the last; the traces of shells and env that only exec'd the next image are not kept, so a \
pyenv shim leaves the interpreter's trace alone). A CPython program's stacks show its Python \
functions and lines (3.11-3.13), its objects are allocated with malloc (PYTHONMALLOC=malloc) so \
that each is seen, and its leak check runs when its work is done, before the interpreter tears \
itself down. With --trace-children=yes every other process it starts (fork, exec) is \
recorded too, each in its own trace.\n\n\
Examples:\n  memlens run -- ./myprog arg1 arg2\n  memlens run -o /tmp/%n.%p.trace -- python3 script.py\n  \
memlens run --trace-children=yes --trace-children-skip='*/sh,*/make' -- make -j2"
)]
pub struct RunArgs {
    /// Trace file name pattern: %p is replaced by the process id, %n by the program name.
    /// A directory (or a name ending in /) gets the traces inside it, with the default name.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATTERN",
        default_value = DEFAULT_OUTPUT
    )]
    pub output: String,
    /// Do not print the summary (same as MEMLENS_QUIET=1).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also record the processes the program starts, each in its own trace (yes), or only
    /// the program's own process and the programs it becomes by exec (no, the default, as
    /// Valgrind's).
    #[arg(long, value_name = "no|yes", default_value = "no", value_parser = crate::leaks::parse_yes_no, action = clap::ArgAction::Set)]
    pub trace_children: bool,
    /// Programs not to record when started by exec, nor anything they start: comma-separated
    /// patterns of the program's path, with `*` and `?` (Valgrind's option; repeatable).
    /// The program memlens starts is always recorded.
    #[arg(long, value_name = "PATTERNS")]
    pub trace_children_skip: Vec<String>,
    /// Do not record programs started by exec, not even those the program's own process
    /// becomes (with --trace-children=yes, forked children are still recorded).
    #[arg(long)]
    pub no_follow: bool,
    /// Maximum number of frames recorded per stack (1-256).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub depth: u32,
    /// Interval between RSS samples in milliseconds (0 turns sampling off).
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub rss_interval: u64,
    /// Write memlens's own messages (the summary) to FILE instead of stderr. As Valgrind's:
    /// %p is the program's process id, %q{VAR} the value of the environment variable VAR,
    /// %% a %.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<OsString>,
    /// Leak check at exit: no (no scan), summary (LEAK SUMMARY in the summary), full or
    /// yes (also the loss records, as `memlens leaks` prints them).
    #[arg(long, value_enum, default_value_t = LeakCheck::Summary)]
    pub leak_check: LeakCheck,
    #[command(flatten)]
    pub leak: crate::leaks::LeakOptions,
    /// Interior-pointer heuristics that make a block reachable: all, none, or a list of
    /// stdstring, length64, newarray, multipleinheritance (memcheck's option), pyobject
    /// (memlens's, for CPython: a reference to an object after its 16-byte GC header).
    #[arg(long, value_name = "SET", default_value = "all", value_parser = parse_heuristics)]
    pub leak_check_heuristics: u32,
    /// Exit with N instead of the program's status when there were errors: heap errors,
    /// or loss records of the kinds in --errors-for-leak-kinds (memcheck's meaning).
    /// 0 keeps the program's status: the default for `run` (`check`'s is 1).
    #[arg(long, value_name = "N")]
    pub error_exitcode: Option<u8>,
    /// Record the stack of every free/delete, so heap errors show where a block was
    /// first freed (costs time).
    #[arg(long)]
    pub free_stacks: bool,
    /// CPython: the allocator of Python's objects. malloc (the default) sets
    /// PYTHONMALLOC=malloc, so every Python object is one recorded block with its Python
    /// line (the program runs a little slower, as without pymalloc's free lists);
    /// pymalloc leaves Python's own allocator, whose objects of 512 bytes or less come
    /// from its arenas and are not seen one by one. A PYTHONMALLOC already set is kept,
    /// and python -E/-I ignore the environment (the summary says which was used).
    #[arg(long, value_enum, value_name = "malloc|pymalloc", default_value_t = PythonAllocator::Malloc)]
    pub python_allocator: PythonAllocator,
    /// CPython 3.11-3.13: show the Python functions and lines in stacks, in place of the
    /// interpreter's C frames (yes, the default), or record native stacks only (no; the
    /// leak check is still taken when the program's work is done, in Python terms).
    #[arg(long, value_name = "yes|no", default_value = "yes", value_parser = crate::leaks::parse_yes_no, action = clap::ArgAction::Set)]
    pub python_frames: bool,
    /// Poisson sampling by bytes: record on average one block per BYTES allocated (e.g.
    /// 512K), each standing for BYTES in expectation, instead of every block. Reports then
    /// print estimates and say so; there are no heap errors and no leak kinds (the recorder
    /// does not know the unsampled blocks). MEMLENS_SAMPLE_SEED=N picks the same blocks in
    /// every run of a single-threaded program.
    #[arg(long, value_name = "BYTES", value_parser = parse_sample)]
    pub sample: Option<u64>,
    /// Write a gzipped pprof profile of each recorded process (in-use and allocated
    /// space and objects) into DIR every DURATION (e.g. 60s), named
    /// memlens-PID-TIMESTAMP.pb.gz, and one more when it ends: for continuous-profiling
    /// backends that ingest pprof files. Best with --sample (each profile re-reads the
    /// trace).
    #[arg(long, num_args = 2, value_names = ["DURATION", "DIR"])]
    pub pprof_every: Option<Vec<OsString>>,
    /// Take a heap snapshot of the program every DURATION while it runs (60s, 500ms),
    /// as `memlens snapshot PID` does: numbered files memlens.PROGRAM.PID.N.snap beside
    /// the traces, for `memlens diff` and `memlens leaks`. Each pauses the program for a
    /// moment (the pause is printed).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_snapshot_every)]
    pub snapshot_every: Option<std::time::Duration>,
    /// The program to run, then its arguments (put them after `--`).
    #[arg(
        trailing_var_arg = true,
        required = true,
        value_name = "PROGRAM [ARGS]"
    )]
    pub command: Vec<OsString>,
}

/// `--python-allocator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PythonAllocator {
    Malloc,
    Pymalloc,
}

fn parse_snapshot_every(s: &str) -> Result<std::time::Duration, String> {
    let d = memlens_common::units::parse_duration(s)?;
    if d < std::time::Duration::from_millis(10) {
        return Err(format!(
            "{s} is too short: take snapshots at most every 10ms"
        ));
    }
    Ok(d)
}

/// `--snapshot-every`: a thread that runs `memlens snapshot` on the program every
/// `every` until told to stop. Each snapshot is a separate process, the tracer: the
/// supervisor's wait (`waitid` for exits only, `supervise.rs`) never sees its ptrace
/// stops, which are reported to the tracer alone.
struct Snapshots {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Snapshots {
    fn start(pid: u32, every: std::time::Duration, dir: PathBuf, quiet: bool) -> Option<Snapshots> {
        let me = std::env::current_exe().ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let prog = std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "process".into());
            let mut n = 1;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                // The name is fixed at the first snapshot (an exec may rename the program).
                let out = crate::snapshot::numbered(&dir, &prog, pid, n);
                let o = Command::new(&me)
                    .args(["snapshot", "--top", "3", "-o"])
                    .arg(&out)
                    .arg(pid.to_string())
                    .stdin(std::process::Stdio::null())
                    .output();
                match o {
                    Ok(o) if o.status.success() => {
                        if !quiet {
                            let text = String::from_utf8_lossy(&o.stdout);
                            let first = text.lines().next().unwrap_or("");
                            crate::say!("memlens: snapshot {n}: {} ({first})", out.display());
                        }
                        n += 1;
                    }
                    // The program ended meanwhile: nothing to say.
                    _ if stopped.try_recv().is_ok() => return,
                    Ok(o) => {
                        if !quiet {
                            let err = String::from_utf8_lossy(&o.stderr);
                            crate::say!(
                                "memlens: snapshot {n} not taken: {}",
                                err.trim().trim_start_matches("memlens: error: ")
                            );
                        }
                    }
                    Err(e) => {
                        crate::say!("memlens: snapshot {n} not taken: {e}");
                    }
                }
            }
        });
        Some(Snapshots { stop, thread })
    }

    fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Why a program cannot be recorded through LD_PRELOAD, if it cannot.
pub fn check_preloadable(path: &Path) -> Result<(), LaunchError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| LaunchError::NotRunnable(format!("cannot run {shown}: {e}")))?;
    if !is_executable(path) {
        return Err(LaunchError::NotRunnable(format!(
            "cannot run {shown}: it is not executable (chmod +x?)"
        )));
    }
    let mode = meta.permissions().mode();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    use std::os::unix::fs::MetadataExt;
    if (mode & 0o4000 != 0 && meta.uid() != uid) || (mode & 0o2000 != 0 && meta.gid() != gid) {
        return Err(LaunchError::Other(format!(
            "{shown} is setuid/setgid: the dynamic loader ignores LD_PRELOAD for it, so memlens cannot record it \
             (run a copy without the setuid bit, or use `memlens watch` to follow its memory from outside)"
        )));
    }
    let data = match std::fs::File::open(path).and_then(|f| {
        use std::io::Read;
        let mut buf = Vec::new();
        f.take(64 * 1024).read_to_end(&mut buf)?;
        Ok(buf)
    }) {
        Ok(d) => d,
        Err(e) => {
            return Err(LaunchError::NotRunnable(format!(
                "cannot read {shown}: {e}"
            )))
        }
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        // A script (#!) or something the kernel knows how to run: its interpreter is
        // what gets preloaded.
        return Ok(());
    }
    if data[4] != 2 {
        return Err(LaunchError::Other(format!(
            "{shown} is a 32-bit program; memlens records 64-bit (x86_64) programs only"
        )));
    }
    let u16at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u32at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
    let u64at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64at(32), u16at(54), u16at(56));
    let mut has_interp = false;
    let mut is_dyn_object = false;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            // Program headers beyond the first 64 KiB: let the loader decide.
            return Ok(());
        }
        match u32at(o) {
            3 => has_interp = true,    // PT_INTERP
            2 => is_dyn_object = true, // PT_DYNAMIC
            _ => {}
        }
    }
    if !has_interp {
        let what = if is_dyn_object {
            "has no program interpreter (a static-pie or a shared library)"
        } else {
            "is statically linked"
        };
        return Err(LaunchError::Other(format!(
            "{shown} {what}: memlens records through LD_PRELOAD, which such programs ignore. \
             Rebuild it dynamically linked, or use `memlens watch` to follow its memory from outside"
        )));
    }
    Ok(())
}

/// The recorder library: $MEMLENS_PRELOAD, next to this executable (the build directory),
/// or in ../lib/memlens/ relative to it (the installed layout).
pub fn find_preload() -> Result<PathBuf, LaunchError> {
    const NAME: &str = "libmemlens_preload.so";
    if let Some(p) = std::env::var_os("MEMLENS_PRELOAD") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LaunchError::Other(format!(
                "MEMLENS_PRELOAD names {}, which does not exist",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| LaunchError::Other(format!("cannot locate the memlens executable: {e}")))?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [dir.join(NAME), dir.join("../lib/memlens").join(NAME)];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
        }
    }
    Err(LaunchError::Other(format!(
        "cannot find the recorder library {NAME} next to {} or in {}; build it with `cargo build --release` \
         (it is built with the workspace) or install with `make install`",
        exe.display(),
        dir.join("../lib/memlens").display()
    )))
}

/// The trace name pattern when `-o` names none (or names a directory).
pub const DEFAULT_OUTPUT: &str = "memlens.%n.%p.trace";

/// Whether a file can be created at `path`: create it (never replacing one) and remove it
/// again. Permission bits alone do not tell (root passes access(2) checks on file systems
/// that refuse new files, like /proc). A file already there counts as creatable.
fn can_create(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make the output pattern absolute (the program may change directory) and check that
/// its directory is writable now, rather than losing the trace later. A directory (an
/// existing one, or any name ending in `/`) gets the traces inside it, with the default
/// name.
fn output_pattern(pattern: &str) -> Result<PathBuf, LaunchError> {
    if pattern.is_empty() {
        return Err(LaunchError::Other(
            "the output pattern (-o) is empty".into(),
        ));
    }
    let p = PathBuf::from(pattern);
    let p = if pattern.ends_with('/') || p.is_dir() {
        p.join(DEFAULT_OUTPUT)
    } else {
        p
    };
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| LaunchError::Other(format!("cannot read the current directory: {e}")))?
            .join(p)
    };
    // A device, FIFO or socket of that name would make the recorder write its trace
    // beside it (`NAME.1`), in /dev for `-o /dev/null`: refuse it now instead.
    if let Ok(m) = std::fs::symlink_metadata(&p) {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        let what = if t.is_char_device() {
            Some("a character device")
        } else if t.is_block_device() {
            Some("a block device")
        } else if t.is_fifo() {
            Some("a FIFO")
        } else if t.is_socket() {
            Some("a socket")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(LaunchError::Other(format!(
                "cannot write the trace to {}: it is {what}, not a file (memlens reads the \
                 trace back for its summary; name a file or a directory with -o)",
                p.display()
            )));
        }
    }
    let dir = p.parent().unwrap_or(Path::new("/")).to_path_buf();
    if !dir.is_dir() {
        return Err(LaunchError::Other(format!(
            "cannot write traces to {}: no such directory",
            dir.display()
        )));
    }
    let probe = dir.join(format!(".memlens-probe-{}", std::process::id()));
    can_create(&probe).map_err(|e| {
        LaunchError::Other(format!(
            "cannot write traces to {}: {e} (choose another directory with -o DIR/)",
            dir.display()
        ))
    })?;
    Ok(p)
}

/// The list of trace files the recorder writes to, one path per line, appended by each
/// process as it opens its trace. A memfd of memlens that the recorder opens as
/// `/proc/MEMLENS_PID/fd/N`: no file exists anywhere, so nothing is left behind even when
/// memlens is killed (the memory goes with its last descriptor).
struct Manifest {
    file: std::fs::File,
    path: PathBuf,
}

impl Manifest {
    fn new() -> Result<Manifest, LaunchError> {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a NUL-terminated name; a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"memlens-manifest".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(LaunchError::Other(format!(
                "cannot create the list of traces (memfd_create): {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Manifest {
            // SAFETY: fd is a new descriptor that nothing else owns.
            file: unsafe { std::fs::File::from_raw_fd(fd) },
            path: PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id())),
        })
    }

    /// The trace paths, in the order the processes opened them.
    fn read(&self) -> Vec<PathBuf> {
        use std::io::{Read, Seek};
        let mut data = Vec::new();
        let mut f = &self.file;
        if f.rewind().and_then(|()| f.read_to_end(&mut data)).is_err() {
            return Vec::new();
        }
        env::manifest_paths(&data)
    }
}

/// `--log-file`: where memlens's own messages go once the program has started.
enum LogFile {
    None,
    /// A name without `%p`, created before the program starts.
    Created(std::fs::File),
    /// A name with `%p` (the program's pid): its directory was checked before the program
    /// started; the file is created once the pid is known.
    PerPid(OsString),
}

impl LogFile {
    /// Expand and check the name now, so that a log memlens cannot create stops the run
    /// before the program starts.
    fn prepare(pattern: &OsStr) -> Result<LogFile, String> {
        let cannot = |p: &Path, e: std::io::Error| {
            format!("cannot create the log file {}: {e}", p.display())
        };
        let mine = log_file_name(pattern, std::process::id())?;
        if log_file_name(pattern, 0)? == mine {
            let f = std::fs::File::create(&mine).map_err(|e| cannot(&mine, e))?;
            return Ok(LogFile::Created(f));
        }
        // The same name but for the pid: if that one can be created, so can the real one.
        can_create(&mine).map_err(|e| cannot(&mine, e))?;
        Ok(LogFile::PerPid(pattern.to_os_string()))
    }

    /// The open log, created now for a name with `%p`. Failing that (checked before, so
    /// unlikely), one warning, and the messages stay on stderr.
    fn open(&mut self, pid: u32) -> Option<&std::fs::File> {
        if let LogFile::PerPid(pattern) = self {
            *self = match log_file_name(pattern, pid).and_then(|p| {
                std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))
            }) {
                Ok(f) => LogFile::Created(f),
                Err(e) => {
                    crate::say!(
                        "memlens: warning: cannot create the log file {e}; messages stay on stderr"
                    );
                    LogFile::None
                }
            };
        }
        match self {
            LogFile::Created(f) => Some(f),
            _ => None,
        }
    }
}

/// Valgrind's `--log-file` expansion: `%p` the pid, `%q{VAR}` the environment variable
/// VAR (which must be set), `%%` a `%`.
fn log_file_name(pattern: &OsStr, pid: u32) -> Result<PathBuf, String> {
    let p = pattern.as_bytes();
    let mut out = Vec::with_capacity(p.len() + 10);
    let mut i = 0;
    while i < p.len() {
        if p[i] != b'%' {
            out.push(p[i]);
            i += 1;
            continue;
        }
        match p.get(i + 1) {
            Some(b'p') => {
                out.extend_from_slice(pid.to_string().as_bytes());
                i += 2;
            }
            Some(b'%') => {
                out.push(b'%');
                i += 2;
            }
            Some(b'q') if p.get(i + 2) == Some(&b'{') => {
                let rest = &p[i + 3..];
                let Some(end) = rest.iter().position(|&c| c == b'}') else {
                    return Err("--log-file: `%q{` without its closing `}`".into());
                };
                let name = OsStr::from_bytes(&rest[..end]);
                let value = std::env::var_os(name).ok_or_else(|| {
                    format!(
                        "--log-file names the environment variable {} (%q{{...}}), which is not set",
                        name.to_string_lossy()
                    )
                })?;
                out.extend_from_slice(value.as_bytes());
                i += 3 + end + 1;
            }
            _ => {
                return Err(format!(
                    "--log-file: `%` must be followed by p (the pid), q{{VAR}} (an environment variable) or % in {}",
                    pattern.to_string_lossy()
                ))
            }
        }
    }
    if out.is_empty() {
        return Err("the log file name (--log-file) is empty".into());
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}

/// `--sample BYTES`: a size of at least 1 byte.
fn parse_sample(s: &str) -> Result<u64, String> {
    match memlens_common::units::parse_size(s)? {
        0 => Err("--sample needs a mean interval of at least 1 byte (e.g. 512K)".into()),
        n => Ok(n),
    }
}

/// `--pprof-every DURATION DIR`, checked: the period (at least 100 ms) and the directory,
/// created if missing and writable.
fn pprof_every(v: &[OsString]) -> Result<(std::time::Duration, PathBuf), LaunchError> {
    let [period, dir] = v else {
        return Err(LaunchError::Other(
            "--pprof-every takes two values: a DURATION and a DIR".into(),
        ));
    };
    let period = memlens_common::units::parse_duration(&period.to_string_lossy())
        .map_err(|e| LaunchError::Other(format!("--pprof-every: {e}")))?;
    if period < std::time::Duration::from_millis(100) {
        return Err(LaunchError::Other(
            "--pprof-every: the period must be at least 100ms".into(),
        ));
    }
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).map_err(|e| {
        LaunchError::Other(format!(
            "--pprof-every: cannot create the directory {}: {e}",
            dir.display()
        ))
    })?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let probe = dir.join(format!(".memlens-probe-{}", std::process::id()));
    can_create(&probe).map_err(|e| {
        LaunchError::Other(format!(
            "--pprof-every: cannot write profiles to {}: {e}",
            dir.display()
        ))
    })?;
    Ok((period, dir))
}

/// `all`, `none` or a comma list of heuristic names -> a bit per heuristic value (1..4).
fn parse_heuristics(s: &str) -> Result<u32, String> {
    let mut bits = 0u32;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => bits = 0b111110,
            "none" => bits = 0,
            name => match memlens_trace::Heuristic::ALL
                .iter()
                .filter(|&&h| h != memlens_trace::Heuristic::PyCycle)
                .find(|h| h.name() == name)
            {
                Some(h) => bits |= 1 << *h as u32,
                None => {
                    return Err(format!(
                        "unknown heuristic `{name}` (use stdstring, length64, newarray, multipleinheritance, pyobject, all or none)"
                    ))
                }
            },
        }
    }
    Ok(bits)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LeakCheck {
    No,
    Summary,
    /// Valgrind spells it `yes` too.
    #[value(alias = "yes")]
    Full,
}

/// Budgets of `memlens check`.
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    pub max_peak: Option<u64>,
    pub max_leaked: Option<u64>,
    pub max_allocations: Option<u64>,
    /// `--budgets` and the other options of `crate::budgets`.
    pub file: Option<crate::budgets::Gate>,
}

pub fn main(args: RunArgs) -> ExitCode {
    match run(args, None) {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

/// Run the program; with `budgets` (memlens check), also fail when one is exceeded.
pub fn run(args: RunArgs, budgets: Option<Budgets>) -> Result<ExitCode, LaunchError> {
    let prog = resolve_program(&args.command[0])?;
    check_preloadable(&prog)?;
    let preload = find_preload()?;
    let pattern = output_pattern(&args.output)?;
    // Read the suppression files now: a typo should not cost a whole run.
    let suppressions = args.leak.load_suppressions().map_err(LaunchError::Other)?;
    let quiet = args.quiet || std::env::var_os("MEMLENS_QUIET").is_some_and(|v| v == "1");
    let mut log = match &args.log_file {
        Some(pattern) => LogFile::prepare(pattern).map_err(LaunchError::Other)?,
        None => LogFile::None,
    };
    let periodic = args.pprof_every.as_deref().map(pprof_every).transpose()?;
    let manifest = Manifest::new()?;
    let mut ld_preload = preload.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        ld_preload.push(":");
        ld_preload.push(old);
    }
    // Trace files older than this are left from earlier runs: their names are reused.
    let run_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let flush_interval_ms = match &periodic {
        // The profiles are made from the trace as it grows: every thread's buffered
        // events reach it at least this often.
        Some((period, _)) => (period.as_millis() / 2).clamp(100, 1000) as u64,
        // A process killed without warning (SIGKILL, the OOM killer's signal) loses only
        // what its threads buffered since: at most this long.
        None => DEFAULT_FLUSH_INTERVAL_MS,
    };
    let flag = |on: bool| if on { "1" } else { "0" };
    let settings: Vec<(env::EnvVar, Vec<u8>)> = vec![
        (env::OUTPUT, pattern.as_os_str().as_bytes().to_vec()),
        (env::RUN_START, run_start.to_string().into_bytes()),
        (env::MANIFEST, manifest.path.as_os_str().as_bytes().to_vec()),
        (env::TRACE_CHILDREN, flag(args.trace_children).into()),
        (
            env::LAUNCHER_PID,
            std::process::id().to_string().into_bytes(),
        ),
        (env::PROGRAM, prog.as_os_str().as_bytes().to_vec()),
        (env::DEPTH, args.depth.to_string().into_bytes()),
        (
            env::RSS_INTERVAL_MS,
            args.rss_interval.to_string().into_bytes(),
        ),
        (
            env::LEAK_CHECK,
            if args.leak_check == LeakCheck::No {
                "no"
            } else {
                "yes"
            }
            .into(),
        ),
        (env::FREE_STACKS, flag(args.free_stacks).into()),
        (
            env::HEURISTICS,
            args.leak_check_heuristics.to_string().into_bytes(),
        ),
        (
            env::SAMPLE_BYTES,
            args.sample.unwrap_or(0).to_string().into_bytes(),
        ),
        (
            env::FLUSH_INTERVAL_MS,
            flush_interval_ms.to_string().into_bytes(),
        ),
        (env::NO_FOLLOW, flag(args.no_follow).into()),
        (
            env::TRACE_CHILDREN_SKIP,
            args.trace_children_skip.join(",").into_bytes(),
        ),
        (env::PYTHON_FRAMES, flag(args.python_frames).into()),
    ];
    let mut cmd = Command::new(&prog);
    // The recorder's settings in one variable (memlens_trace::env): the program's
    // environment grows by two (three with PYTHONMALLOC).
    cmd.arg0(&args.command[0])
        .args(&args.command[1..])
        .env("LD_PRELOAD", ld_preload)
        .env(
            env::CONFIG,
            OsString::from_vec(env::settings_text(&settings)),
        );
    if args.python_allocator == PythonAllocator::Malloc
        && std::env::var_os("PYTHONMALLOC").is_none()
    {
        cmd.env("PYTHONMALLOC", "malloc");
    }
    let mut child = supervise::spawn(&mut cmd, &prog)?;
    if let Some(f) = log.open(child.pid()) {
        use std::os::fd::AsRawFd;
        // SAFETY: replaces memlens's own stderr; the program keeps the original one.
        unsafe { libc::dup2(f.as_raw_fd(), 2) };
    }
    let profiles = periodic
        .map(|(period, dir)| crate::pprof_every::Writer::start(period, dir, manifest.path.clone()));
    let snapshots = args.snapshot_every.and_then(|every| {
        let dir = pattern.parent().unwrap_or(Path::new(".")).to_path_buf();
        Snapshots::start(child.pid(), every, dir, quiet)
    });
    let exit = child
        .wait()
        .map_err(|e| LaunchError::Other(format!("lost track of the program: {e}")));
    if let Some(s) = snapshots {
        s.finish();
    }
    if let Some(w) = profiles {
        // One last profile of each trace, now complete.
        w.finish();
    }
    let exit = exit?;

    let mut traces = manifest.read();
    let mut infos = trace_infos(&traces);
    let wrappers = if args.trace_children {
        Vec::new()
    } else {
        drop_wrapper_traces(&mut traces, &mut infos, child.pid())
    };
    let images = own_images(&infos, child.pid());
    let main_trace = main_trace(&traces, &images);
    // One pass over the trace serves the summary, the leak check and the budgets. None is
    // made when nothing would use it (quiet, no --error-exitcode, no budget).
    let error_exitcode = args.error_exitcode.unwrap_or(0);
    let gating_leaks = args.leak_check != LeakCheck::No && (!quiet || error_exitcode != 0);
    let wants_leaks = gating_leaks || budgets.as_ref().is_some_and(|b| b.max_leaked.is_some());
    let analysis = main_trace
        .as_ref()
        .filter(|_| !quiet || wants_leaks || budgets.is_some())
        .map(|t| {
            let opts = memlens_analysis::ReportOptions {
                top: 3,
                leaks: wants_leaks.then(|| args.leak.resolution()),
                heap_errors: true,
                ..Default::default()
            };
            crate::report::analyse(t, &opts)
        });
    if !quiet {
        summarize(&traces, &images, main_trace.as_ref(), analysis.as_ref());
        if let (crate::supervise::Exit::Signal(_), Some(Ok(r))) = (exit, analysis.as_ref()) {
            if r.end.is_none() {
                // SIGKILL (the OOM killer's) gives the recorder no moment to write.
                crate::say!(
                    "==memlens== the program {} before the recorder could finish its trace: \
                     the figures above are those of the events written until then (every \
                     thread's are written at least once a second)",
                    exit.describe()
                );
            }
        }
        if !wrappers.is_empty() {
            crate::say!(
                "==memlens== not kept: the trace{} of {} ({}), which only started the program by exec",
                if wrappers.len() == 1 { "" } else { "s" },
                if wrappers.len() == 1 { "the wrapper it ran first" } else { "the wrappers it ran first" },
                wrappers.join(" -> ")
            );
        }
    }
    let mut failed = false;
    match (&main_trace, analysis) {
        (Some(t), Some(Ok(mut report))) => {
            // The summary is printed: the leak view can have the definitions.
            let metadata = std::mem::take(&mut report.metadata);
            let mut view = report
                .leaks
                .take()
                .map(|l| crate::leaks::LeakView::new(l, metadata, &args.leak, &suppressions));
            if gating_leaks {
                if let Some(v) = view.as_mut() {
                    failed |= leak_gate(t, v, &args, quiet);
                }
            }
            if let Some(b) = &budgets {
                // A sampled trace has no leak kinds: --max-leaked then judges the estimate
                // of what was not freed at exit.
                let sampled = view.as_ref().is_some_and(|v| v.report.sample_interval != 0);
                let leaked = if sampled {
                    Leaked::NotFreed
                } else {
                    match view.as_ref().filter(|v| v.report.scan.is_some()) {
                        Some(v) => Leaked::Lost(
                            v.report.summary.definitely_lost.bytes
                                + v.report.summary.indirectly_lost.bytes,
                        ),
                        None => Leaked::Unknown,
                    }
                };
                failed |= budget_gate(&report, b, leaked);
                match &b.file {
                    Some(g) => failed |= g.gate(t, &suppressions, quiet),
                    // The program's own assertions and real-time marks gate `check`
                    // without a budget file.
                    None if crate::budgets::Gate::trace_uses_api(t) => {
                        failed |= crate::budgets::Gate::implicit().gate(t, &suppressions, quiet)
                    }
                    None => {}
                }
            }
        }
        (Some(t), Some(Err(e))) => {
            if quiet && gating_leaks {
                crate::say!(
                    "==memlens== cannot read the leak check of {}: {e}",
                    t.display()
                );
            }
            if budgets.is_some() {
                crate::say!("==memlens== check failed: cannot read {}: {e}", t.display());
                failed = true;
            }
        }
        (Some(_), None) => {}
        (None, _) => {
            if budgets.is_some() {
                crate::say!(
                    "==memlens== check failed: no trace was recorded, nothing could be checked"
                );
                failed = true;
            }
        }
    }

    exit.reraise();
    if failed && error_exitcode != 0 {
        return Ok(ExitCode::from(error_exitcode));
    }
    Ok(ExitCode::from(exit.status()))
}

/// Print the leak summary (and with --leak-check=full the records); true if there were
/// errors in memcheck's sense.
fn leak_gate(trace: &Path, view: &mut crate::leaks::LeakView, args: &RunArgs, quiet: bool) -> bool {
    let errors = view.error_count();
    if !quiet {
        crate::write_stderr(&crate::leaks::after_summary(
            view,
            trace,
            args.leak_check == LeakCheck::Full,
        ));
    } else if errors > 0 {
        // Quiet, but failing: one line, as `valgrind -q` still prints its errors.
        crate::say!(
            "==memlens== {errors} error{} in the leak check (heap errors, and loss records of \
             --errors-for-leak-kinds): `memlens leaks {}` lists them",
            if errors == 1 { "" } else { "s" },
            trace.display()
        );
    }
    errors > 0
}

/// How often, by default, every thread's buffered events reach the trace (ms).
const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;

/// What `--max-leaked` judges.
enum Leaked {
    /// The leak check's definitely + indirectly lost bytes.
    Lost(u64),
    /// A sampled trace: the estimate of what was not freed at exit.
    NotFreed,
    /// The trace has no leak check (`--leak-check=no`, or the program was killed).
    Unknown,
}

/// `memlens check`'s budgets; true (and a message) if one is exceeded, or cannot be judged.
fn budget_gate(r: &memlens_analysis::Report, b: &Budgets, leaked: Leaked) -> bool {
    let mut failed = false;
    let h = memlens_common::units::human_bytes;
    if let Some(max) = b.max_peak {
        if r.totals.peak_heap_bytes > max {
            crate::say!(
                "==memlens== check failed: peak heap {} exceeds --max-peak {}",
                h(r.totals.peak_heap_bytes),
                h(max)
            );
            failed = true;
        }
    }
    if let Some(max) = b.max_allocations {
        if r.totals.allocations > max {
            crate::say!(
                "==memlens== check failed: {} allocations exceed --max-allocations {max}",
                r.totals.allocations
            );
            failed = true;
        }
    }
    if let Some(max) = b.max_leaked {
        match leaked {
            Leaked::Lost(bytes) if bytes > max => {
                crate::say!(
                    "==memlens== check failed: {} leaked (definitely + indirectly lost) exceeds --max-leaked {}",
                    h(bytes),
                    h(max)
                );
                failed = true;
            }
            Leaked::NotFreed if r.totals.not_freed_bytes > max => {
                crate::say!(
                    "==memlens== check failed: {} not freed at exit (an estimate: the trace is sampled) exceeds --max-leaked {}",
                    h(r.totals.not_freed_bytes),
                    h(max)
                );
                failed = true;
            }
            Leaked::Unknown => {
                crate::say!(
                    "==memlens== check failed: --max-leaked cannot be judged: the trace has no leak check (--leak-check=no, or the program did not exit normally)"
                );
                failed = true;
            }
            _ => {}
        }
    }
    failed
}

/// What the summary needs of one trace's header.
struct TraceInfo {
    path: PathBuf,
    pid: u32,
    exe: String,
    /// The image ended by exec, into a program that was recorded.
    exec_followed: bool,
}

/// Programs that only start another one for the user: `env`, and shells running a shim
/// or wrapper script (pyenv's shims, launchers).
const WRAPPERS: &[&str] = &["env", "sh", "bash", "dash", "zsh", "ksh"];

/// Without --trace-children, the images of the program's own process that are only
/// wrappers run first (shells or env that ended by exec into the next, recorded, image,
/// before any other image: a pyenv shim runs env -> bash -> ... -> python) leave no
/// trace: their files are removed, so that the run leaves the program's trace only. The program's trace takes the first wrapper's
/// file name when it had the same name with a suffix (`-o FILE`). The wrappers' names
/// are returned.
fn drop_wrapper_traces(
    traces: &mut Vec<PathBuf>,
    infos: &mut Vec<TraceInfo>,
    root_pid: u32,
) -> Vec<String> {
    let own = infos.iter().filter(|t| t.pid == root_pid).count();
    let mut seen = 0;
    // Only the wrappers that ran first: a shell the program itself execs later is one of
    // its images like any other.
    let mut leading = true;
    let mut dropped = Vec::new();
    let mut first_freed: Option<PathBuf> = None;
    infos.retain(|t| {
        if t.pid != root_pid {
            return true;
        }
        seen += 1;
        let name = t.exe.rsplit('/').next().unwrap_or(&t.exe);
        leading &= seen < own && t.exec_followed && WRAPPERS.contains(&name);
        if leading && std::fs::remove_file(&t.path).is_ok() {
            traces.retain(|p| p != &t.path);
            dropped.push(name.to_string());
            first_freed.get_or_insert_with(|| t.path.clone());
            return false;
        }
        true
    });
    if let (Some(base), Some(last)) = (first_freed, infos.iter_mut().rfind(|t| t.pid == root_pid)) {
        let suffixed = last
            .path
            .to_str()
            .zip(base.to_str())
            .is_some_and(|(l, b)| l.strip_prefix(b).is_some_and(|rest| rest.starts_with('.')));
        if suffixed && std::fs::rename(&last.path, &base).is_ok() {
            for p in traces.iter_mut().filter(|p| **p == last.path) {
                *p = base.clone();
            }
            last.path = base;
        }
    }
    dropped
}

/// The headers of the traces written (unreadable ones are left out of the chain of
/// images but still listed).
fn trace_infos(traces: &[PathBuf]) -> Vec<TraceInfo> {
    traces
        .iter()
        .filter_map(|p| {
            let r = memlens_trace::reader::TraceReader::open(p).ok()?;
            // Its own records only: a forked child's inheritance would replay its
            // parent's trace up to the fork, once per child.
            let exec_followed = r.own_metadata().ok().and_then(|m| m.end).is_some_and(|e| {
                e.kind == memlens_trace::ExitKind::Exec
                    && e.code == memlens_trace::EXEC_RECORDER_KEPT
            });
            Some(TraceInfo {
                path: p.clone(),
                pid: r.header().pid,
                exe: r.header().exe.clone(),
                exec_followed,
            })
        })
        .collect()
}

/// The traces of the program's own process, one per image in the order they ran (a shim,
/// `env`, the real program).
fn own_images(infos: &[TraceInfo], root_pid: u32) -> Vec<&TraceInfo> {
    infos.iter().filter(|t| t.pid == root_pid).collect()
}

/// The program's own process's trace: its last one, the image that ran last after any
/// exec chain (`env`, shell wrappers).
fn main_trace(traces: &[PathBuf], images: &[&TraceInfo]) -> Option<PathBuf> {
    images
        .last()
        .map(|t| t.path.clone())
        .or_else(|| traces.first().cloned())
}

/// The summary of the program's own process and the names of the other traces.
fn summarize(
    traces: &[PathBuf],
    images: &[&TraceInfo],
    main: Option<&PathBuf>,
    analysis: Option<&Result<memlens_analysis::Report, String>>,
) {
    let Some(main) = main else {
        crate::say!(
            "==memlens== no trace was recorded: the program did not load the recorder \
             (it may clear LD_PRELOAD, or run a static program)"
        );
        return;
    };
    match analysis {
        Some(Ok(r)) => crate::report::print_run_summary(r, main),
        Some(Err(e)) => crate::say!("==memlens== cannot summarize {}: {e}", main.display()),
        None => {}
    }
    if images.len() > 1 {
        let names: Vec<&str> = images.iter().map(|t| t.exe.as_str()).collect();
        crate::say!(
            "==memlens== its process ran {} programs by exec: {}; this summary is of the last",
            images.len(),
            names.join(" -> ")
        );
    }
    // Every file this run wrote, so that none is mistaken for another run's.
    let others: Vec<&PathBuf> = traces.iter().filter(|p| *p != main).collect();
    if !others.is_empty() {
        crate::say!("==memlens== {} more process trace(s):", others.len());
        for p in others {
            crate::say!("==memlens==   {}", p.display());
        }
    }
}
