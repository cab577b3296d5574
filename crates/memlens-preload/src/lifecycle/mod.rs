//! Start-up, fork, exec, dlopen/dlclose and exit.

use crate::config::Config;
use crate::thread::{self, now_ns, ACTIVE};
use crate::{modules, output, private_alloc, scan, stacks, tls, writer};
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use memlens_trace::{ExitKind, Header};

extern crate alloc;

mod exec;

/// Real implementations resolved with dlsym(RTLD_NEXT) in the constructor.
static REAL_DLCLOSE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXIT: AtomicUsize = AtomicUsize::new(0);
static REAL_PROGRAM_EXIT: AtomicUsize = AtomicUsize::new(0);
static REAL_UEXIT: AtomicUsize = AtomicUsize::new(0);
static REAL_ABORT: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVPE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVP: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECV: AtomicUsize = AtomicUsize::new(0);
static REAL_FEXECVE: AtomicUsize = AtomicUsize::new(0);
/// Set when the End record was written by exit: later events are not recorded.
static FINISHED: AtomicBool = AtomicBool::new(false);
/// `--trace-children=yes` (or no `memlens run`): a forked child records into its own
/// trace. Otherwise it runs on with the recorder passive.
static TRACE_CHILDREN: AtomicBool = AtomicBool::new(true);
static mut OUTPUT_PATTERN: Vec<u8> = Vec::new();
static mut MANIFEST: Vec<u8> = Vec::new();

/// Not in unit-test builds: the test binary must not start recording itself.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = memlens_init;

pub fn resolve(name: &CStr) -> usize {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
}

fn program_name(exe: &[u8]) -> Vec<u8> {
    let base = exe.rsplit(|&c| c == b'/').next().unwrap_or(exe);
    base.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b"._-+".contains(&c) {
                c
            } else {
                b'_'
            }
        })
        .collect()
}

/// The command line as read from /proc/self/cmdline in pieces: whole arguments up to
/// `ARGV_KEPT_BYTES` are kept; after the first that does not fit, every argument is
/// only counted (a command line can be megabytes long).
#[derive(Default)]
struct Cmdline {
    args: Vec<String>,
    kept_bytes: usize,
    omitted: u32,
    omitted_bytes: u64,
    /// The argument being read (while it may still be kept) and its length so far.
    arg: Vec<u8>,
    arg_len: usize,
}

impl Cmdline {
    fn fits(&self) -> bool {
        self.omitted == 0 && self.kept_bytes + self.arg_len <= memlens_trace::ARGV_KEPT_BYTES
    }

    /// Bytes read: arguments, each ended by a NUL.
    fn take(&mut self, data: &[u8]) {
        for piece in data.split_inclusive(|&c| c == 0) {
            self.arg_len += piece.len();
            if self.fits() {
                self.arg
                    .extend_from_slice(piece.strip_suffix(&[0]).unwrap_or(piece));
            }
            if piece.last() == Some(&0) {
                self.end_arg();
            }
        }
    }

    fn end_arg(&mut self) {
        if self.fits() {
            self.kept_bytes += self.arg_len;
            self.args
                .push(String::from_utf8_lossy(&self.arg).into_owned());
        } else {
            self.omitted += 1;
            self.omitted_bytes += self.arg_len as u64;
        }
        self.arg.clear();
        self.arg_len = 0;
    }

    /// The arguments kept, how many were left out and their bytes.
    fn finish(mut self) -> (Vec<String>, u32, u64) {
        // A last argument without its NUL (a program that rewrote its argument area).
        if self.arg_len > 0 {
            self.end_arg();
        }
        (self.args, self.omitted, self.omitted_bytes)
    }
}

fn read_cmdline() -> (Vec<String>, u32, u64) {
    let mut cmdline = Cmdline::default();
    // The fd is closed below.
    let fd = crate::sys::open_own(c"cmdline", libc::O_RDONLY);
    if fd >= 0 {
        let mut buf = alloc::vec![0u8; 16 * 1024];
        loop {
            // SAFETY: read writes at most buf.len() bytes into buf; fd is ours.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len()) };
            if n <= 0 {
                break;
            }
            cmdline.take(&buf[..n as usize]);
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
    cmdline.finish()
}

fn header(forked_from: u32, attach: Option<memlens_trace::AttachStart>) -> Header {
    // SAFETY: getpid/getppid/sysconf have no preconditions.
    let (pid, ppid, page) = unsafe {
        (
            libc::getpid() as u32,
            libc::getppid() as u32,
            libc::sysconf(libc::_SC_PAGESIZE) as u32,
        )
    };
    let mut wall = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills wall.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut wall) };
    let (argv, argv_omitted, argv_omitted_bytes) = read_cmdline();
    Header {
        pid,
        ppid,
        forked_from,
        start_unix_ns: wall.tv_sec as u64 * 1_000_000_000 + wall.tv_nsec as u64,
        exe: String::from_utf8_lossy(&crate::sys::exe_path()).into_owned(),
        argv,
        argv_omitted,
        argv_omitted_bytes,
        page_size: page,
        rss_interval_ns: thread::RSS_INTERVAL_NS.load(Ordering::Relaxed),
        max_depth: thread::MAX_DEPTH.load(Ordering::Relaxed),
        writer: String::from(concat!("memlens ", env!("CARGO_PKG_VERSION"))),
        sample_interval: crate::sample::INTERVAL.load(Ordering::Relaxed),
        attach,
    }
}

/// Open this process's trace (named from the pattern) and note it in the manifest.
fn open_trace(forked_from: u32) -> bool {
    let h = header(forked_from, None);
    let name = program_name(h.exe.as_bytes());
    // SAFETY: the pattern statics are written only in the constructor, before threads.
    let pattern: &[u8] = unsafe { &*core::ptr::addr_of!(OUTPUT_PATTERN) };
    let mut f = output::FILE.lock();
    if !f.create(pattern, h.pid, &name, &h) {
        output::DISABLED.store(true, Ordering::Relaxed);
        return false;
    }
    // SAFETY: as above.
    let manifest: &[u8] = unsafe { &*core::ptr::addr_of!(MANIFEST) };
    if !manifest.is_empty() {
        let mut line = f.path().to_vec();
        line.push(memlens_trace::env::MANIFEST_END);
        let mut c = manifest.to_vec();
        c.push(0);
        // SAFETY: NUL-terminated path; a single short O_APPEND write is atomic.
        unsafe {
            let fd = libc::open(
                c.as_ptr() as *const _,
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::write(fd, line.as_ptr() as *const _, line.len());
                libc::close(fd);
            }
        }
    }
    true
}

/// `memlens attach`: open the trace at exactly `path` (a file there from before is
/// replaced), its header saying that recording starts now with `live_heap_bytes` of heap
/// already in use. Caller is busy.
pub(crate) fn open_attached_trace(path: &[u8], live_heap_bytes: u64) -> bool {
    // `%` in the path is taken as it is, not as a pattern.
    let mut pattern = Vec::with_capacity(path.len() + 8);
    for &c in path {
        pattern.push(c);
        if c == b'%' {
            pattern.push(b'%');
        }
    }
    let h = header(0, Some(memlens_trace::AttachStart { live_heap_bytes }));
    output::RUN_START_NS.store(h.start_unix_ns, Ordering::Relaxed);
    TRACE_CHILDREN.store(false, Ordering::Relaxed);
    let mut f = output::FILE.lock();
    if !f.create(&pattern, h.pid, b"", &h) {
        output::DISABLED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// The fork and exit handlers (once per process): `memlens_init`, or the first attach.
pub(crate) fn register_process_handlers() {
    // SAFETY: registering handlers with valid function pointers.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        on_exit(at_exit, core::ptr::null_mut());
    }
}

/// End an attached recording (`memlens attach` detaches): flush, write the End record
/// (`Detach`), close the trace, and leave the recorder ready for another attach. False
/// if the process is exiting and its exit handler has ended the trace. On the
/// `memlens-rss` thread, which is busy.
pub(crate) fn finish_detached() -> bool {
    if FINISHED.swap(true, Ordering::AcqRel) {
        return false;
    }
    ACTIVE.store(false, Ordering::Release);
    thread::final_rss_sample();
    thread::flush_all();
    output::end(now_ns(), ExitKind::Detach, 0);
    output::FILE.lock().close();
    FINISHED.store(false, Ordering::Release);
    true
}

/// Whether one entry of LD_PRELOAD is this recorder.
fn names_recorder(part: &[u8]) -> bool {
    part.windows(16).any(|w| w == b"memlens_preload.") || part.ends_with(b"libmemlens_preload.so")
}

/// Set with `--no-follow` (which takes the recorder out of LD_PRELOAD).
static NO_FOLLOW: AtomicBool = AtomicBool::new(false);

/// The exec end record's code: whether the environment `envp` passed to the new image
/// still preloads the recorder (`memlens_trace::EXEC_*`).
fn exec_code(envp: *const *const c_char) -> i32 {
    if NO_FOLLOW.load(Ordering::Relaxed) {
        return memlens_trace::EXEC_NOT_FOLLOWED;
    }
    let mut i = 0;
    loop {
        // SAFETY: envp is exec's NULL-terminated array of NUL-terminated strings (a NULL
        // envp, which Linux takes as empty, is checked first).
        let entry = if envp.is_null() {
            core::ptr::null()
        } else {
            unsafe { *envp.add(i) }
        };
        if entry.is_null() {
            return memlens_trace::EXEC_RECORDER_REMOVED;
        }
        // SAFETY: as above.
        let entry = unsafe { CStr::from_ptr(entry) }.to_bytes();
        if let Some(value) = entry.strip_prefix(b"LD_PRELOAD=") {
            return if value.split(|&c| c == b':' || c == b' ').any(names_recorder) {
                memlens_trace::EXEC_RECORDER_KEPT
            } else {
                memlens_trace::EXEC_RECORDER_REMOVED
            };
        }
        i += 1;
    }
}

/// Remove our own entry from LD_PRELOAD in place, so programs started by exec are not
/// traced (`--no-follow`). Shrinking the string in place needs no allocation.
fn strip_ld_preload() {
    // SAFETY: getenv returns the live environment string; we only shorten it in place.
    unsafe {
        let p = libc::getenv(c"LD_PRELOAD".as_ptr());
        if p.is_null() {
            return;
        }
        let len = libc::strlen(p);
        let s = core::slice::from_raw_parts_mut(p as *mut u8, len);
        let mut out = 0;
        let mut first = true;
        // Parts are read from a copy while the live string is rewritten in place.
        let original = s.to_vec();
        for part in original.split(|&c| c == b':' || c == b' ') {
            if part.is_empty() || names_recorder(part) {
                continue;
            }
            if !first {
                s[out] = b':';
                out += 1;
            }
            s[out..out + part.len()].copy_from_slice(part);
            out += part.len();
            first = false;
        }
        if out < len {
            *p.add(out) = 0;
        }
    }
}

/// How this image takes part, decided at start-up from `memlens run`'s settings.
#[derive(PartialEq, Eq)]
enum Part {
    Record,
    /// `--trace-children=no` and not the launched process: hooks keep the live-block
    /// table (heap errors are still kept from glibc) and record nothing.
    Passive,
    /// Its path matches `--trace-children-skip`: passive, and LD_PRELOAD loses the
    /// recorder so that nothing it starts is recorded either (Valgrind does not trace into
    /// a skipped program, so nothing below it is traced).
    Skip,
}

/// The launched process is the one whose parent is `memlens run`: it and the images its
/// pid execs into (shims, wrapper scripts, `env`) are recorded whatever
/// `--trace-children` says. Skip patterns match the path given to execve (`AT_EXECFN`,
/// as Valgrind matches it), except for the program `memlens run` itself started.
fn part_of_this_image(cfg: &Config) -> Part {
    // SAFETY: getauxval has no preconditions; AT_EXECFN is the address of the
    // NUL-terminated path the kernel copied onto the initial stack, or 0.
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const c_char;
    let execfn: &[u8] = if execfn.is_null() {
        b""
    } else {
        // SAFETY: non-null AT_EXECFN points to a NUL-terminated string that lives as long
        // as the process.
        unsafe { CStr::from_ptr(execfn) }.to_bytes()
    };
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() } as u32;
    let launched = cfg.launcher_pid != 0 && ppid == cfg.launcher_pid;
    let launched_program = launched && cfg.program.is_some_and(|p| p.to_bytes() == execfn);
    let skipped = cfg
        .trace_children_skip
        .is_some_and(|l| memlens_common::glob::glob_list_match(l.to_bytes(), execfn));
    if skipped && !launched_program {
        Part::Skip
    } else if !cfg.trace_children && !launched {
        Part::Passive
    } else {
        Part::Record
    }
}

/// Set once initialisation has been attempted (it runs once).
static INIT_STARTED: AtomicBool = AtomicBool::new(false);

/// A hook ran before our constructor: the constructors of the program's shared
/// libraries (libstdc++'s, the program's own) run before a preloaded library's, and
/// their allocations deserve stacks too. Initialise now, unless libc is not ready yet
/// (no environment) or initialisation was already attempted. True if recording is on.
#[cold]
pub fn init_early() -> bool {
    if INIT_STARTED.load(Ordering::Relaxed) || FINISHED.load(Ordering::Relaxed) {
        return ACTIVE.load(Ordering::Acquire);
    }
    extern "C" {
        static environ: *const *const c_char;
    }
    // SAFETY: reading libc's environ pointer; null until libc's start-up set it.
    if unsafe { environ.is_null() } || tls::busy() {
        return false;
    }
    memlens_init();
    ACTIVE.load(Ordering::Acquire)
}

extern "C" fn memlens_init() {
    let Some(_busy) = tls::BusyGuard::enter() else {
        return;
    };
    if INIT_STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    if !crate::attach::loaded_at_start() {
        // dlopen'ed by `memlens attach`: dormant until it calls `memlens_attach`.
        crate::attach::LOADED_BY_ATTACH.store(true, Ordering::Release);
        crate::attach::note_loader_maps();
        return;
    }
    let cfg = Config::from_env();
    exec::remember_settings();
    crate::clock::start();
    thread::MAX_DEPTH.store(cfg.max_depth as u32, Ordering::Relaxed);
    thread::UNWIND_CACHE.store(cfg.unwind_cache, Ordering::Relaxed);
    thread::FREE_STACKS.store(cfg.free_stacks, Ordering::Relaxed);
    // A sampled run knows only the sampled blocks: no scan (see `sample.rs`).
    scan::ENABLED.store(cfg.leak_check && cfg.sample_bytes == 0, Ordering::Relaxed);
    scan::FREERES_AT_EXIT.store(true, Ordering::Relaxed);
    crate::sample::SEED.store(cfg.sample_seed, Ordering::Relaxed);
    if cfg.sample_bytes != 0 {
        // Releases of unsampled blocks learn without a lock that the table has none.
        crate::live::start_filter();
    }
    crate::sample::INTERVAL.store(cfg.sample_bytes, Ordering::Relaxed);
    thread::FLUSH_INTERVAL_NS.store(cfg.flush_interval_ns, Ordering::Relaxed);
    scan::HEURISTICS.store(cfg.heuristics, Ordering::Relaxed);
    thread::RSS_INTERVAL_NS.store(cfg.rss_interval_ns, Ordering::Relaxed);
    output::RUN_START_NS.store(cfg.run_start_ns, Ordering::Relaxed);
    // SAFETY: single-threaded start-up; nothing reads these yet.
    unsafe {
        OUTPUT_PATTERN = cfg
            .output
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_else(|| b"memlens.%n.%p.trace".to_vec());
        MANIFEST = cfg
            .manifest
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
    }
    if cfg.no_follow {
        // The exec end record says the next image was not followed (strip_ld_preload
        // runs below).
        NO_FOLLOW.store(true, Ordering::Relaxed);
    }
    REAL_DLCLOSE.store(resolve(c"dlclose"), Ordering::Relaxed);
    REAL_EXIT.store(resolve(c"_exit"), Ordering::Relaxed);
    REAL_PROGRAM_EXIT.store(resolve(c"exit"), Ordering::Relaxed);
    REAL_UEXIT.store(resolve(c"_Exit"), Ordering::Relaxed);
    REAL_ABORT.store(resolve(c"abort"), Ordering::Relaxed);
    REAL_EXECVE.store(resolve(c"execve"), Ordering::Relaxed);
    REAL_EXECVPE.store(resolve(c"execvpe"), Ordering::Relaxed);
    REAL_EXECVP.store(resolve(c"execvp"), Ordering::Relaxed);
    REAL_EXECV.store(resolve(c"execv"), Ordering::Relaxed);
    REAL_FEXECVE.store(resolve(c"fexecve"), Ordering::Relaxed);
    // The real exit and exec functions are resolved first: a passive image needs them too.
    let part = part_of_this_image(&cfg);
    if cfg.no_follow || part == Part::Skip {
        strip_ld_preload();
    }
    TRACE_CHILDREN.store(cfg.trace_children, Ordering::Relaxed);
    if part != Part::Record || !stacks::init() || !open_trace(0) {
        return;
    }
    modules::refresh(0);
    // What the exit scan needs from ld.so, now: at exit a stopped thread may hold its lock.
    scan::prepare();
    crate::dlsym::note_own_allocator(0);
    crate::python::prepare(0, cfg.python_frames);
    register_process_handlers();
    ACTIVE.store(true, Ordering::Release);
    crate::go_exit::install();
    crate::signals::init();
    thread::start_sampler();
}

extern "C" {
    fn on_exit(f: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
}

/// A fatal signal is about to kill the process: scan from the interrupted context, flush
/// and write the End record (once; a later call does nothing).
pub fn finish_by_signal(sig: c_int, ctx: &scan::Context) {
    finish(ExitKind::Signal, sig, ctx);
}

/// Scan (unless the process is exec'ing), flush everything and write the End record,
/// once. A process that does not own the trace (a `vfork` child that failed to exec and
/// `_exit`s, on its parent's memory) does nothing: the trace and the flags are the
/// parent's, and stopping the parent's threads for a scan would never end.
///
/// A thread that is inside the recorder (a signal handler of the program's that calls
/// `_exit` or `exit`, or `abort`, having interrupted a hook) does nothing either: it may
/// hold its own buffer's lock or the writer's, and waiting for them would hang the
/// program forever. The process ends as the program asked; its trace reads back as cut
/// short.
fn finish(kind: ExitKind, code: i32, ctx: &scan::Context) {
    if !ACTIVE.load(Ordering::Acquire) || !output::owns_trace() || tls::busy() {
        return;
    }
    if FINISHED.swap(true, Ordering::AcqRel) {
        return;
    }
    if kind != ExitKind::Exec && !output::DISABLED.load(Ordering::Relaxed) {
        {
            let _busy = tls::BusyGuard::enter();
            thread::final_rss_sample_at_exit();
        }
        if !SCANNED.swap(true, Ordering::AcqRel) {
            scan::run(kind, code, ctx);
        }
    }
    let busy = tls::BusyGuard::enter();
    thread::flush_all();
    output::end(now_ns(), kind, code);
    ACTIVE.store(false, Ordering::Release);
    drop(busy);
}

/// The leak check already ran (a Python program's, when its work was done): the exit
/// needs none.
static SCANNED: AtomicBool = AtomicBool::new(false);

/// A CPython program's work is done: its interpreter began finalizing (after the
/// program's threads were joined and its atexit callbacks ran, before module globals are
/// cleared). Mark the moment in the trace and run the leak check now, without stopping
/// the other threads (they go on; the interpreter waits for none of them from here),
/// so that what the program still holds is judged before the interpreter frees it.
/// Called by the thread that saw it, on its way out of a hook (not busy, no lock).
pub fn python_work_done() {
    if !ACTIVE.load(Ordering::Acquire) || FINISHED.load(Ordering::Relaxed) || !output::owns_trace()
    {
        return;
    }
    let ts = now_ns();
    {
        let Some(_busy) = tls::BusyGuard::enter() else {
            return;
        };
        output::notice(ts, memlens_trace::NoticeKind::PythonWorkDone, b"", b"");
    }
    if !output::DISABLED.load(Ordering::Relaxed) && !SCANNED.swap(true, Ordering::AcqRel) {
        scan::run_live(ExitKind::Exit, 0, &scan::Context::default());
    }
}

/// The caller's callee-saved registers and stack pointer at the program's own call to
/// `exit`/`_exit`/`_Exit`, stored by the naked stubs below before anything clobbers them.
/// The leak scan uses them as roots (memcheck sees them too: they are saved in the
/// frames of exit's machinery).
#[repr(C)]
pub(crate) struct ExitRegs {
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    sp: u64,
}

pub(crate) static mut EXIT_REGS: ExitRegs = ExitRegs {
    rbx: 0,
    rbp: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    sp: 0,
};

/// The stack pointer of `main_trampoline` once main has returned (0 before).
static MAIN_RETURNED_SP: AtomicU64 = AtomicU64::new(0);

/// The instructions that store rbx, rbp, r12-r15 and the caller's stack pointer (rsp + 8,
/// past the return address) into `EXIT_REGS` (operand `{r}`), at the entry of an exit
/// stub. Clobbers rax.
macro_rules! save_exit_regs {
    () => {
        concat!(
            "mov qword ptr [rip + {r}], rbx\n",
            "mov qword ptr [rip + {r} + 8], rbp\n",
            "mov qword ptr [rip + {r} + 16], r12\n",
            "mov qword ptr [rip + {r} + 24], r13\n",
            "mov qword ptr [rip + {r} + 32], r14\n",
            "mov qword ptr [rip + {r} + 40], r15\n",
            "lea rax, [rsp + 8]\n",
            "mov qword ptr [rip + {r} + 48], rax\n",
        )
    };
}
pub(crate) use save_exit_regs;

macro_rules! exit_stub {
    ($name:ident, $imp:ident) => {
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub extern "C" fn $name(status: c_int) -> ! {
            // Store rbx, rbp, r12-r15 and the caller's sp (rsp + 8 past the return
            // address) into EXIT_REGS, then tail-jump to the implementation with the
            // arguments untouched.
            core::arch::naked_asm!(
                save_exit_regs!(),
                "jmp {imp}",
                r = sym EXIT_REGS,
                imp = sym $imp,
            )
        }
    };
}

exit_stub!(exit, exit_impl);
exit_stub!(_exit, uexit_impl);
exit_stub!(_Exit, uexit2_impl);

type MainFn = extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;
static REAL_MAIN: AtomicUsize = AtomicUsize::new(0);

/// Calls the program's main, then records where its own frame is: after main returns,
/// glibc calls exit() itself (not through the PLT) and main's locals are dead, so the
/// scan must start above main's frame, as memcheck's does.
extern "C" fn main_trampoline(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    // SAFETY: REAL_MAIN was set from __libc_start_main's main argument just before.
    let main: MainFn = unsafe { core::mem::transmute(REAL_MAIN.load(Ordering::Relaxed)) };
    let r = main(argc, argv, envp);
    MAIN_RETURNED_SP.store(crate::sys::current_sp(), Ordering::Release);
    r
}

/// Interposed to call main through [`main_trampoline`].
///
/// # Safety
/// Called only by the program's `_start`, with glibc's `__libc_start_main` arguments.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __libc_start_main(
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    init: usize,
    fini: usize,
    rtld_fini: usize,
    stack_end: *mut c_void,
) -> c_int {
    type StartFn = unsafe extern "C" fn(
        MainFn,
        c_int,
        *mut *mut c_char,
        usize,
        usize,
        usize,
        *mut c_void,
    ) -> c_int;
    let real = resolve(c"__libc_start_main");
    if real == 0 {
        // Cannot happen with glibc; without it there is no way to start the program.
        libc::abort();
    }
    REAL_MAIN.store(main as usize, Ordering::Relaxed);
    // SAFETY: real is glibc's __libc_start_main, same signature.
    let real: StartFn = core::mem::transmute(real);
    real(
        main_trampoline,
        argc,
        argv,
        init,
        fini,
        rtld_fini,
        stack_end,
    )
}

/// The thread whose `exit`/`_exit`/`_Exit` call the stubs recorded.
pub(crate) static EXIT_TID: AtomicU32 = AtomicU32::new(0);

/// Where the exiting thread's live stack starts, and its registers at that point.
fn exit_context() -> scan::Context {
    let mut ctx = scan::Context::default();
    // SAFETY: a plain read of words the exit stubs wrote on this thread (or zeros).
    let regs = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(EXIT_REGS)) };
    let main_sp = MAIN_RETURNED_SP.load(Ordering::Acquire);
    if EXIT_TID.load(Ordering::Acquire) == crate::sys::gettid() && regs.sp != 0 {
        ctx.sp = regs.sp;
        ctx.regs[..6]
            .copy_from_slice(&[regs.rbx, regs.rbp, regs.r12, regs.r13, regs.r14, regs.r15]);
        ctx.nregs = 6;
    } else if main_sp != 0 {
        ctx.sp = main_sp;
    }
    ctx
}

/// Runs after every atexit handler registered later than our constructor, including
/// `_dl_fini` (the destructors of the program's libraries).
extern "C" fn at_exit(status: c_int, _arg: *mut c_void) {
    finish(ExitKind::Exit, status, &exit_context());
}

fn call_exit(slot: &AtomicUsize, status: c_int) -> ! {
    let f = slot.load(Ordering::Relaxed);
    if f != 0 {
        // SAFETY: f is the real _exit/_Exit resolved by dlsym.
        let f: extern "C" fn(c_int) -> ! = unsafe { core::mem::transmute(f) };
        f(status)
    }
    // SAFETY: exit_group never returns.
    unsafe {
        libc::syscall(libc::SYS_exit_group, status as libc::c_long);
        libc::abort()
    }
}

/// The program called `exit()` (the stub saved its registers first).
extern "C" fn exit_impl(status: c_int) -> ! {
    EXIT_TID.store(crate::sys::gettid(), Ordering::Release);
    call_exit(&REAL_PROGRAM_EXIT, status)
}

/// The program called `_exit()`.
extern "C" fn uexit_impl(status: c_int) -> ! {
    EXIT_TID.store(crate::sys::gettid(), Ordering::Release);
    finish(ExitKind::UnderscoreExit, status, &exit_context());
    call_exit(&REAL_EXIT, status)
}

/// A Go program is exiting (`runtime.exit`, redirected by go_exit.rs), on the recorder's
/// own stack: as `_exit`, finish with the registers the stub saved. The stack pointer is
/// left out: the goroutine's stack lies inside a Go heap arena, which is scanned whole
/// as an anonymous mapping.
pub(crate) fn finish_go_exit(code: c_int) {
    let mut ctx = exit_context();
    ctx.sp = 0;
    finish(ExitKind::UnderscoreExit, code, &ctx);
}

/// The program called `_Exit()`.
extern "C" fn uexit2_impl(status: c_int) -> ! {
    EXIT_TID.store(crate::sys::gettid(), Ordering::Release);
    finish(ExitKind::UnderscoreExit, status, &exit_context());
    call_exit(&REAL_UEXIT, status)
}

/// `abort()` (failed assertions, `std::terminate`): flush what was recorded and mark the
/// trace as ended by SIGABRT, then abort for real. If a SIGABRT handler returns control
/// to the program (longjmp), recording stops there: the trace already says how it ended.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn abort() -> ! {
    // The caller's frame is live: scan from it.
    let c = crate::caller!();
    let ctx = scan::Context {
        sp: c.sp,
        ..Default::default()
    };
    finish(ExitKind::Signal, libc::SIGABRT, &ctx);
    let f = REAL_ABORT.load(Ordering::Relaxed);
    if f != 0 {
        // SAFETY: f is glibc's abort, resolved by dlsym.
        let f: extern "C" fn() -> ! = unsafe { core::mem::transmute(f) };
        f()
    }
    // SAFETY: raise/exit_group are always safe to call; neither returns here.
    unsafe {
        libc::raise(libc::SIGABRT);
        libc::syscall(libc::SYS_exit_group, 127 as libc::c_long);
    }
    loop {
        core::hint::spin_loop();
    }
}

// ---- fork ----

/// The forking process's pid, taken before the fork: a child that asked getppid() could
/// get 1 (or a subreaper) when its parent exits at once, as a daemonizing middle child does.
static FORK_PARENT: AtomicU32 = AtomicU32::new(0);

extern "C" fn fork_prepare() {
    tls::busy_inc();
    // SAFETY: getpid has no preconditions.
    FORK_PARENT.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
    // Take every recorder lock, in the documented order, so that the child does not
    // inherit one held by a thread that does not exist there.
    core::mem::forget(thread::REGISTRY.lock());
    core::mem::forget(modules::REBUILD.lock());
    core::mem::forget(stacks::INSERT.lock());
    crate::python::lock_codes_for_fork();
    core::mem::forget(output::META.lock());
    core::mem::forget(writer::WRITING.lock());
    core::mem::forget(writer::QUEUE.lock());
    core::mem::forget(output::FILE.lock());
    core::mem::forget(private_alloc::FORK_GATE.lock());
    crate::live::lock_all();
}

fn release_fork_locks() {
    crate::live::unlock_all();
    // SAFETY: each lock was taken and forgotten by fork_prepare on this thread.
    unsafe {
        private_alloc::FORK_GATE.force_unlock();
        output::FILE.force_unlock();
        writer::QUEUE.force_unlock();
        writer::WRITING.force_unlock();
        output::META.force_unlock();
        crate::python::codes_force_unlock();
        stacks::INSERT.force_unlock();
        modules::REBUILD.force_unlock();
        thread::REGISTRY.force_unlock();
    }
}

extern "C" fn fork_parent() {
    release_fork_locks();
    tls::busy_dec();
}

extern "C" fn fork_child() {
    release_fork_locks();
    crate::sample::after_fork_child();
    crate::attach::after_fork_child();
    if ACTIVE.load(Ordering::Acquire) && !output::DISABLED.load(Ordering::Relaxed) {
        let parent = FORK_PARENT.load(Ordering::Relaxed);
        output::META.lock().discard();
        writer::after_fork_child();
        output::FILE.lock().forget();
        if !TRACE_CHILDREN.load(Ordering::Relaxed) {
            // --trace-children=no: the child runs on with the recorder passive. The
            // parent's trace is forgotten, never written; what it execs is not recorded
            // either (its parent is not `memlens run`).
            ACTIVE.store(false, Ordering::Release);
            tls::busy_dec();
            return;
        }
        // New trace, new stack ids space: stacks are defined again in the child's file.
        stacks::EPOCH.fetch_add(0x5851_F42D_4C95_7F2D, Ordering::Relaxed);
        crate::python::after_fork_child();
        if open_trace(parent) {
            let ts = now_ns();
            modules::reemit_all(ts);
            thread::after_fork_child(ts);
            crate::api::after_fork_child();
            thread::start_sampler();
        }
    }
    tls::busy_dec();
}

/// The function resolved into `slot`, if it was.
fn real<F: Copy>(slot: &AtomicUsize) -> Option<F> {
    let f = slot.load(Ordering::Relaxed);
    // SAFETY: F is the function-pointer type matching the symbol resolved into `slot`.
    (f != 0).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&f) })
}

// ---- dlclose ----
// dlopen is deliberately not interposed: glibc uses dlopen's return address to choose the
// caller's RUNPATH and namespace, so a wrapper would change which library gets loaded.
// New modules are picked up when a frame falls outside every known one
// (`modules::refresh_if_changed`). dlclose is interposed so that an unloaded library
// leaves the module set at once, before its addresses can be reused.

type DlcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// `dlclose(3)`: rescan the modules once the library is gone.
///
/// # Safety
/// dlclose's contract: `handle` came from dlopen.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let r = match real::<DlcloseFn>(&REAL_DLCLOSE) {
        Some(f) => f(handle),
        None => return -1,
    };
    if ACTIVE.load(Ordering::Acquire) {
        if let Some(_b) = tls::BusyGuard::enter() {
            modules::refresh(now_ns());
        }
    }
    r
}
