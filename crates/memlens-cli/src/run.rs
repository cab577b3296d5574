//! `memlens run`: launch a program with the recorder preloaded, wait for it, print the
//! summary, and exit exactly as the program did.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

/// memlens's own exit codes, following `env(1)`: 125 memlens failed, 126 the program
/// cannot be run, 127 the program was not found.
pub const EXIT_CANNOT_RUN: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(clap::Args)]
#[command(
    after_help = "The program's stdout and stderr are left untouched; memlens prints its summary on \
stderr after the program exits and then exits with the program's own status (or dies by the same \
signal). Each process writes its own trace: children started with fork get their own file, and \
programs started with exec are followed unless --no-follow is given.\n\n\
Examples:\n  memlens run -- ./myprog arg1 arg2\n  memlens run -o /tmp/%n.%p.trace -- python3 script.py\n  \
memlens run --quiet --no-follow -- make -j2"
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
    /// Do not trace programs started by exec (fork children are still traced).
    #[arg(long)]
    pub no_follow: bool,
    /// Maximum number of frames recorded per stack (1-256).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub depth: u32,
    /// Interval between RSS samples in milliseconds (0 turns sampling off).
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub rss_interval: u64,
    /// Write memlens's own messages (the summary) to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Leak check at exit: no (no scan), summary (LEAK SUMMARY in the summary), full
    /// (also the loss records, as `memlens leaks` prints them).
    #[arg(long, value_enum, default_value_t = LeakCheck::Summary)]
    pub leak_check: LeakCheck,
    #[command(flatten)]
    pub leak: crate::leaks::LeakOptions,
    /// Interior-pointer heuristics that make a block reachable: all, none, or a list of
    /// stdstring, length64, newarray, multipleinheritance (memcheck's option).
    #[arg(long, value_name = "SET", default_value = "all", value_parser = parse_heuristics)]
    pub leak_check_heuristics: u32,
    /// Exit with N instead of the program's status when there were errors: heap errors,
    /// or loss records of the kinds in --errors-for-leak-kinds (memcheck's meaning).
    /// 0 (the default for `run`) keeps the program's status.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub error_exitcode: u8,
    /// Record the stack of every free/delete, so heap errors show where a block was
    /// first freed (costs time).
    #[arg(long)]
    pub free_stacks: bool,
    /// The program to run, then its arguments (put them after `--`).
    #[arg(
        trailing_var_arg = true,
        required = true,
        value_name = "PROGRAM [ARGS]"
    )]
    pub command: Vec<OsString>,
}

/// Everything that can stop `memlens run` before the program starts.
#[derive(Debug)]
pub enum LaunchError {
    NotFound(String),
    NotRunnable(String),
    Other(String),
}

impl LaunchError {
    pub fn exit(&self) -> ExitCode {
        let (msg, code) = match self {
            LaunchError::NotFound(m) => (m, EXIT_NOT_FOUND),
            LaunchError::NotRunnable(m) => (m, EXIT_CANNOT_RUN),
            LaunchError::Other(m) => (m, crate::EXIT_USAGE),
        };
        eprintln!("memlens: error: {msg}");
        ExitCode::from(code)
    }
}

/// Find `prog` like execvp does: a name with a slash is a path, otherwise search PATH.
pub fn resolve_program(prog: &OsStr) -> Result<PathBuf, LaunchError> {
    let shown = prog.to_string_lossy();
    let candidate = |p: &Path| p.is_file();
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
        if candidate(&p) && is_executable(&p) {
            return Ok(p);
        }
    }
    Err(LaunchError::NotFound(format!(
        "cannot find program '{shown}' in PATH"
    )))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
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
    let dir = p.parent().unwrap_or(Path::new("/")).to_path_buf();
    if !dir.is_dir() {
        return Err(LaunchError::Other(format!(
            "cannot write traces to {}: no such directory",
            dir.display()
        )));
    }
    // Create and remove a probe file: permission bits alone do not tell (root passes
    // access(2) checks on file systems that refuse new files, like /proc).
    let probe = dir.join(format!(".memlens-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(LaunchError::Other(format!(
                "cannot write traces to {}: {e} (choose another directory with -o DIR/)",
                dir.display()
            )))
        }
    }
    Ok(p)
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// While the program runs: terminal signals (Ctrl-C, Ctrl-\) reach it directly through
/// the process group, so memlens ignores them and lives to print the summary; signals
/// sent to memlens alone (kill, timeout) are forwarded to the program.
fn install_signal_handling(child: i32) {
    CHILD.store(child, Ordering::Relaxed);
    // SAFETY: installing handlers / ignoring signals in our own process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2] {
            libc::signal(sig, forward_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Die by `sig` as the program did (without dumping a core of memlens itself).
fn die_by_signal(sig: i32) -> ! {
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

fn read_manifest(path: &Path) -> Vec<PathBuf> {
    std::fs::read(path)
        .map(|d| {
            d.split(|&c| c == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| PathBuf::from(OsStr::from_bytes(l)))
                .collect()
        })
        .unwrap_or_default()
}

/// `all`, `none` or a comma list of heuristic names -> a bit per heuristic value (1..4).
fn parse_heuristics(s: &str) -> Result<u32, String> {
    let mut bits = 0u32;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => bits = 0b11110,
            "none" => bits = 0,
            name => match memlens_trace::Heuristic::ALL.iter().find(|h| h.name() == name) {
                Some(h) => bits |= 1 << *h as u32,
                None => {
                    return Err(format!(
                        "unknown heuristic `{name}` (use stdstring, length64, newarray, multipleinheritance, all or none)"
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
    Full,
}

/// Budgets of `memlens check`.
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    pub max_peak: Option<u64>,
    pub max_leaked: Option<u64>,
    pub max_allocations: Option<u64>,
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
    let log = match &args.log_file {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| {
            LaunchError::Other(format!("cannot create the log file {}: {e}", p.display()))
        })?),
        None => None,
    };

    let manifest = std::env::temp_dir().join(format!(
        "memlens-manifest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    let _ = std::fs::remove_file(&manifest);
    let mut ld_preload = preload.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        ld_preload.push(":");
        ld_preload.push(old);
    }
    // Trace files older than this are left from earlier runs: their names are reused.
    let run_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut cmd = Command::new(&prog);
    cmd.arg0(&args.command[0])
        .args(&args.command[1..])
        .env("LD_PRELOAD", ld_preload)
        .env("MEMLENS_OUTPUT", &pattern)
        .env("MEMLENS_RUN_START", run_start.to_string())
        .env("MEMLENS_MANIFEST", &manifest)
        .env("MEMLENS_DEPTH", args.depth.to_string())
        .env("MEMLENS_RSS_INTERVAL_MS", args.rss_interval.to_string())
        .env(
            "MEMLENS_LEAK_CHECK",
            if args.leak_check == LeakCheck::No {
                "no"
            } else {
                "yes"
            },
        )
        .env(
            "MEMLENS_FREE_STACKS",
            if args.free_stacks { "1" } else { "0" },
        )
        .env("MEMLENS_HEURISTICS", args.leak_check_heuristics.to_string());
    if args.no_follow {
        cmd.env("MEMLENS_NO_FOLLOW", "1");
    } else {
        cmd.env_remove("MEMLENS_NO_FOLLOW");
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            LaunchError::NotFound(format!("cannot run {}: {e}", prog.display()))
        }
        _ => LaunchError::NotRunnable(format!("cannot run {}: {e}", prog.display())),
    })?;
    install_signal_handling(child.id() as i32);
    if let Some(f) = &log {
        use std::os::fd::AsRawFd;
        // SAFETY: replaces memlens's own stderr; the program keeps the original one.
        unsafe { libc::dup2(f.as_raw_fd(), 2) };
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(LaunchError::Other(format!(
                    "lost track of the program: {e}"
                )))
            }
        }
    };

    let traces = read_manifest(&manifest);
    let _ = std::fs::remove_file(&manifest);
    let main_trace = main_trace(&traces, child.id());
    // One pass over the trace serves the summary, the leak check and the budgets. None is
    // made when nothing would use it (quiet, no --error-exitcode, no budget).
    let gating_leaks = args.leak_check != LeakCheck::No && (!quiet || args.error_exitcode != 0);
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
        summarize(&traces, main_trace.as_ref(), analysis.as_ref());
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
                let leaked = view.as_ref().map(|v| {
                    v.report.summary.definitely_lost.bytes + v.report.summary.indirectly_lost.bytes
                });
                failed |= budget_gate(&report, b, leaked);
            }
        }
        (Some(t), Some(Err(e))) => {
            if quiet && gating_leaks {
                eprintln!(
                    "==memlens== cannot read the leak check of {}: {e}",
                    t.display()
                );
            }
            if budgets.is_some() {
                eprintln!("==memlens== check failed: cannot read {}: {e}", t.display());
                failed = true;
            }
        }
        (Some(_), None) => {}
        (None, _) => {
            if budgets.is_some() {
                eprintln!(
                    "==memlens== check failed: no trace was recorded, nothing could be checked"
                );
                failed = true;
            }
        }
    }

    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        die_by_signal(sig);
    }
    if failed && args.error_exitcode != 0 {
        return Ok(ExitCode::from(args.error_exitcode));
    }
    Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
}

/// Print the leak summary (and with --leak-check=full the records); true if there were
/// errors in memcheck's sense.
fn leak_gate(trace: &Path, view: &mut crate::leaks::LeakView, args: &RunArgs, quiet: bool) -> bool {
    if !quiet {
        let text = if args.leak_check == LeakCheck::Full {
            view.text("==memlens== ")
        } else {
            let mut s = String::new();
            for e in view
                .report
                .errors
                .iter()
                .filter(|e| e.suppressed_by.is_none())
            {
                s.push_str(&format!(
                    "==memlens== heap error: {}{}\n",
                    e.kind.title(),
                    if e.count > 1 {
                        format!(" ({} times)", e.count)
                    } else {
                        String::new()
                    }
                ));
            }
            if view.report.scan.is_some() {
                s.push_str(&view.summary_text("==memlens== "));
                if view.error_count() > 0 {
                    s.push_str(&format!(
                        "==memlens== {} error(s); `memlens leaks {}` shows the records and stacks\n",
                        view.error_count(),
                        trace.display()
                    ));
                }
            }
            s
        };
        eprint!("{text}");
    }
    view.error_count() > 0
}

/// `memlens check`'s budgets; true (and a message) if one is exceeded. `leaked` is the
/// leak check's definitely + indirectly lost bytes, if it could be read.
fn budget_gate(r: &memlens_analysis::Report, b: &Budgets, leaked: Option<u64>) -> bool {
    let mut failed = false;
    let h = crate::report::human_bytes;
    if let Some(max) = b.max_peak {
        if r.totals.peak_heap_bytes > max {
            eprintln!(
                "==memlens== check failed: peak heap {} exceeds --max-peak {}",
                h(r.totals.peak_heap_bytes),
                h(max)
            );
            failed = true;
        }
    }
    if let Some(max) = b.max_allocations {
        if r.totals.allocations > max {
            eprintln!(
                "==memlens== check failed: {} allocations exceed --max-allocations {max}",
                r.totals.allocations
            );
            failed = true;
        }
    }
    if let Some(max) = b.max_leaked {
        let leaked = leaked.unwrap_or(r.totals.not_freed_bytes);
        if leaked > max {
            eprintln!(
                "==memlens== check failed: {} leaked (definitely + indirectly lost) exceeds --max-leaked {}",
                h(leaked),
                h(max)
            );
            failed = true;
        }
    }
    failed
}

/// The program's own process's trace: its last one, the image that ran last after any
/// exec chain (`env`, shell wrappers).
fn main_trace(traces: &[PathBuf], root_pid: u32) -> Option<PathBuf> {
    let is_root = |p: &PathBuf| {
        memlens_trace::reader::TraceReader::open(p)
            .map(|r| r.header().pid == root_pid)
            .unwrap_or(false)
    };
    traces
        .iter()
        .rev()
        .find(|p| is_root(p))
        .or(traces.first())
        .cloned()
}

/// The summary of the program's own process and the names of the other traces.
fn summarize(
    traces: &[PathBuf],
    main: Option<&PathBuf>,
    analysis: Option<&Result<memlens_analysis::Report, String>>,
) {
    let Some(main) = main else {
        eprintln!(
            "==memlens== no trace was recorded: the program did not load the recorder \
             (it may clear LD_PRELOAD, or run a static program)"
        );
        return;
    };
    match analysis {
        Some(Ok(r)) => crate::report::print_run_summary(r, main),
        Some(Err(e)) => eprintln!("==memlens== cannot summarize {}: {e}", main.display()),
        None => {}
    }
    // Every file this run wrote, so that none is mistaken for another run's.
    let others: Vec<&PathBuf> = traces.iter().filter(|p| *p != main).collect();
    if !others.is_empty() {
        eprintln!("==memlens== {} more process trace(s):", others.len());
        for p in others {
            eprintln!("==memlens==   {}", p.display());
        }
    }
}
