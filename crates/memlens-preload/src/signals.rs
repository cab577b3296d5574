//! Fatal signals: the leak scan runs, and the trace gets its end record, before the
//! process dies by a signal it does not handle (SIGTERM, SIGINT, SIGSEGV...). The process
//! then still dies by that signal.
//!
//! For every signal whose default action kills the process, a handler is installed while
//! the disposition is the default one. The program never sees it: `sigaction` and
//! `signal` are interposed, so setting `SIG_DFL` installs our handler instead, any other
//! disposition replaces ours as usual, and a query of a signal we hold reports `SIG_DFL`.
//! (Programs that call the `rt_sigaction` system call themselves, like Go's runtime,
//! bypass this; `sigset`/`sysv_signal` are not interposed.)
//!
//! The handler scans only when the thread was not inside the recorder. A signal that
//! lands inside a hook (likely: allocation-heavy programs spend much of their time there)
//! is noted and handled on the hook's way out, where the recorder's state is consistent.
//! A synchronous fault inside the recorder kills at once, with no scan.

use crate::{lifecycle, scan, sys, thread, tls};
use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Signals whose default action terminates the process (with or without a core).
/// SIGKILL and SIGSTOP cannot be caught; SIGTRAP is left to debuggers; real-time signals
/// are left to the program.
const WATCHED: [c_int; 20] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGUSR1,
    libc::SIGSEGV,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGSTKFLT,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGPWR,
    libc::SIGSYS,
];

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
/// A fatal signal that arrived while a thread was inside the recorder (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

fn watched(sig: c_int) -> bool {
    WATCHED.contains(&sig)
}

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;

/// glibc's `sigaction`. Everything in the recorder that sets a disposition calls this,
/// never the interposed symbol.
///
/// # Safety
/// As `sigaction(2)`: `act` and `old` are null or valid.
pub unsafe fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let mut f = REAL_SIGACTION.load(Ordering::Relaxed);
    if f == 0 {
        f = lifecycle::resolve(c"sigaction");
        REAL_SIGACTION.store(f, Ordering::Relaxed);
    }
    if f == 0 {
        *libc::__errno_location() = libc::ENOSYS;
        return -1;
    }
    // SAFETY: f is glibc's sigaction, resolved with dlsym(RTLD_NEXT); same signature.
    let f: SigactionFn = core::mem::transmute(f);
    f(sig, act, old)
}

fn our_action() -> libc::sigaction {
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = fatal_handler as *const () as usize;
    // SA_RESTART: a signal handled on a hook's way out must not make the program's
    // interrupted system call fail with EINTR. SA_ONSTACK: use the program's alternate
    // stack if it has one (stack overflows).
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: sa_mask is a valid sigset_t.
    unsafe { libc::sigfillset(&mut sa.sa_mask) };
    sa
}

fn is_ours(sa: &libc::sigaction) -> bool {
    sa.sa_sigaction == fatal_handler as *const () as usize
}

/// What the program would have seen: the default disposition, no flags, empty mask.
fn as_default(sa: &mut libc::sigaction) {
    // SAFETY: sigaction is plain data.
    *sa = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = libc::SIG_DFL;
}

/// Install the handler on every watched signal left at its default action. Called once
/// recording is active (the constructor, and again in a forked child is not needed: the
/// disposition is inherited).
pub fn init() {
    let ours = our_action();
    for sig in WATCHED {
        // SAFETY: query then set with valid sigaction structs.
        unsafe {
            let mut cur: libc::sigaction = core::mem::zeroed();
            if real_sigaction(sig, core::ptr::null(), &mut cur) == 0
                && cur.sa_sigaction == libc::SIG_DFL
            {
                real_sigaction(sig, &ours, core::ptr::null_mut());
            }
        }
    }
}

/// The interposed `sigaction`.
///
/// # Safety
/// As `sigaction(2)`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let ours;
    let act = if watched(sig) && !act.is_null() && (*act).sa_sigaction == libc::SIG_DFL {
        ours = our_action();
        &ours as *const libc::sigaction
    } else {
        act
    };
    let r = real_sigaction(sig, act, old);
    if r == 0 && !old.is_null() && is_ours(&*old) {
        as_default(&mut *old);
    }
    r
}

/// The interposed `signal` (glibc's BSD semantics: SA_RESTART, the signal blocked in its
/// handler).
///
/// # Safety
/// As `signal(2)`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if handler == libc::SIG_ERR || sig <= 0 || sig >= 65 {
        *libc::__errno_location() = libc::EINVAL;
        return libc::SIG_ERR;
    }
    let mut act: libc::sigaction = core::mem::zeroed();
    let mut old: libc::sigaction = core::mem::zeroed();
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    libc::sigemptyset(&mut act.sa_mask);
    libc::sigaddset(&mut act.sa_mask, sig);
    if sigaction(sig, &act, &mut old) < 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// `bsd_signal` is `signal`.
///
/// # Safety
/// As `signal(2)`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    signal(sig, handler)
}

/// A fault raised by the kernel for the instruction that was executing (returning from
/// the handler re-executes it).
fn synchronous(sig: c_int, info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGSYS
    ) && code > 0
}

/// Restore the default action and let the signal kill the process: re-raised at once
/// for a signal that was sent, on return (re-executing the instruction) for a fault.
fn die_by(sig: c_int, fault: bool) {
    // SAFETY: default disposition, then unblock and send the signal to this thread.
    unsafe {
        let mut dfl: libc::sigaction = core::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        real_sigaction(sig, &dfl, core::ptr::null_mut());
        if fault {
            return;
        }
        libc::syscall(libc::SYS_tgkill, libc::getpid(), sys::gettid(), sig);
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, core::ptr::null_mut());
    }
}

extern "C" fn fatal_handler(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: errno is this thread's; saved and restored around the handler.
    let errno = unsafe { *libc::__errno_location() };
    let fault = synchronous(sig, info);
    let t = tls::here();
    let inside = t.busy() || t.live_shard() != 0;
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    let uc = unsafe { &*(uctx as *const libc::ucontext_t) };
    if scan::another_thread_scans() && !inside {
        // Another thread is finishing (exit, or another signal): stop like the others.
        scan::park(Some(uc));
    }
    if thread::ACTIVE.load(Ordering::Acquire) && inside && !fault {
        // Inside the recorder: handle it on the way out (take_pending).
        PENDING.store(sig, Ordering::Release);
        // SAFETY: restoring this thread's errno.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    if !inside {
        let mut ctx = scan::Context {
            sp: uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
            // A fault stops the faulting instruction itself, and a signal that arrived in a
            // system call stops a libc wrapper (below the stack pointer lie dead frames);
            // any other may interrupt a leaf function whose live locals are in the red zone.
            red_zone: !fault && scan::interrupted_mid_code(uc),
            ..Default::default()
        };
        ctx.nregs = scan::context_registers(uc, &mut ctx.regs);
        lifecycle::finish_by_signal(sig, &ctx);
    }
    die_by(sig, fault);
}

/// Called where a thread leaves the recorder: a fatal signal that arrived inside it is
/// handled now (scan, end record, death by the signal).
#[inline]
pub fn take_pending() {
    if PENDING.load(Ordering::Relaxed) == 0 {
        return;
    }
    let t = tls::here();
    if t.busy() || t.live_shard() != 0 {
        return;
    }
    let sig = PENDING.swap(0, Ordering::AcqRel);
    if sig == 0 {
        return;
    }
    // Leaving a hook: the program's frames start at the hook's caller; below lie the
    // recorder's, whose stale slots may hold old pointers. The block the hook returns is
    // only in the recorder's frames: a register root.
    let here = sys::current_sp();
    let (leaving_sp, in_flight) = t.leaving();
    let mut ctx = scan::Context {
        sp: if leaving_sp > here { leaving_sp } else { here },
        ..Default::default()
    };
    if leaving_sp > here && in_flight != 0 {
        ctx.regs[0] = in_flight;
        ctx.nregs = 1;
    }
    lifecycle::finish_by_signal(sig, &ctx);
    die_by(sig, false);
}
