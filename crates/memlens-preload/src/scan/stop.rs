//! Stopping every other thread for the scan: the stop signal and its handler, parking,
//! the registers a stopped thread leaves, and what /proc says of a thread that cannot be
//! stopped (blocked in a system call, blocking the signal).

use super::*;
/// Set while the scan runs: threads leaving the recorder park themselves.
pub static STOPPING: AtomicBool = AtomicBool::new(false);
pub(super) static SCANNER_TID: AtomicU32 = AtomicU32::new(0);
pub(super) const MAX_THREADS: usize = 1024;
pub(super) static PARKED: AtomicUsize = AtomicUsize::new(0);
pub(super) static PARKED_DONE: AtomicU32 = AtomicU32::new(0);
/// Registers a thread interrupted by a signal has: 16 general-purpose (x86_64 gregs
/// order up to RSP) and the low 128 bits of xmm0-15 (a compiler keeps pointers there
/// too: memcpy'd structs, vectorised loops), two words each.
pub const MAX_REGS: usize = 16 + 32;
/// Per parked thread: tid (written last, 0 while the slot is being filled), the lowest
/// live stack address (its stack pointer, less the red zone when a signal interrupted
/// it), its thread pointer (`pthread_self`), then its registers.
pub(super) const SLOT: usize = 3 + MAX_REGS;
pub(super) static mut PARKED_STATE: [[u64; SLOT]; MAX_THREADS] = [[0; SLOT]; MAX_THREADS];

/// The registers of an interrupted context into `out` (at least [`MAX_REGS`] long):
/// general-purpose, then xmm0-15 when the kernel saved the FP state.
pub fn context_registers(uc: &libc::ucontext_t, out: &mut [u64]) -> usize {
    for (r, &v) in out.iter_mut().zip(uc.uc_mcontext.gregs[..16].iter()) {
        *r = v as u64;
    }
    let fp = uc.uc_mcontext.fpregs;
    if fp.is_null() {
        return 16;
    }
    // SAFETY: a non-null fpregs of a signal context points at the FP state the kernel
    // saved in the signal frame, which lives until the handler returns.
    let xmm = unsafe { &(*fp)._xmm };
    for (k, x) in xmm.iter().enumerate() {
        let e = x.element;
        out[16 + 2 * k] = e[0] as u64 | (e[1] as u64) << 32;
        out[17 + 2 * k] = e[2] as u64 | (e[3] as u64) << 32;
    }
    MAX_REGS
}
pub(super) static NEVER: AtomicU32 = AtomicU32::new(0);

pub(super) fn stop_signal() -> i32 {
    libc::SIGRTMAX() - 2
}

/// Whether a signal interrupted this context at an arbitrary instruction, where a leaf
/// function may keep live locals in the red zone below the stack pointer; not when it
/// stopped a system call (the instruction before `rip` is `syscall`: the thread is in a
/// libc wrapper, at a call boundary, and what lies below its stack pointer is dead, such
/// as another thread's stale frames on a reused stack).
pub fn interrupted_mid_code(uc: &libc::ucontext_t) -> bool {
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
    let mut words = [0u64; 2];
    // The 16 bytes around rip, read without faulting (one system call: fine in a signal
    // handler). After a system call the kernel leaves rip past the `syscall`, or, when it
    // will restart it after the handler (SA_RESTART), on it.
    if SelfMemory::new().read(rip.wrapping_sub(8), &mut words) != 2 {
        return true;
    }
    let mut code = [0u8; 16];
    code[..8].copy_from_slice(&words[0].to_le_bytes());
    code[8..].copy_from_slice(&words[1].to_le_bytes());
    let syscall_at = |i: usize| code[i] == 0x0f && code[i + 1] == 0x05;
    !(syscall_at(6) || syscall_at(8))
}

/// Park this thread for good (the process is exiting), after publishing its registers.
pub fn park(uc: Option<&libc::ucontext_t>) -> ! {
    // Once parked, never again: a stop signal still on its way (or sent after a thread
    // parked on its own way out of the recorder) stays pending.
    // SAFETY: blocking one signal for this thread; the sets are local.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, stop_signal());
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
    }
    let i = PARKED.fetch_add(1, Ordering::AcqRel);
    if i < MAX_THREADS {
        let mut s = [0u64; SLOT];
        match uc {
            Some(uc) => {
                let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
                s[1] = if interrupted_mid_code(uc) {
                    sp.saturating_sub(RED_ZONE)
                } else {
                    sp
                };
                context_registers(uc, &mut s[3..]);
            }
            None => s[1] = sys::current_sp(),
        }
        // SAFETY: pthread_self reads the thread pointer; no precondition.
        s[2] = unsafe { libc::pthread_self() } as u64;
        // SAFETY: slot i was claimed by the fetch_add above: only this thread writes it.
        // Its tid goes in last, with Release: the scanner takes only slots whose tid it
        // reads non-zero with Acquire, so it never sees a half-written slot.
        unsafe {
            let slot = &mut (*core::ptr::addr_of_mut!(PARKED_STATE))[i];
            slot[1..].copy_from_slice(&s[1..]);
            core::sync::atomic::AtomicU64::from_ptr(&mut slot[0])
                .store(sys::gettid() as u64, Ordering::Release);
        }
    }
    PARKED_DONE.fetch_add(1, Ordering::AcqRel);
    crate::sys::futex_wake(&PARKED_DONE);
    loop {
        crate::sys::futex_wait(&NEVER, 0, None);
    }
}

/// Called by the recorder where a thread leaves its critical sections.
#[inline]
pub fn maybe_park() {
    if another_thread_scans() {
        park(None)
    }
    crate::signals::take_pending();
}

/// A scan is under way on another thread: this one must stop.
#[inline]
pub fn another_thread_scans() -> bool {
    STOPPING.load(Ordering::Relaxed) && sys::gettid() != SCANNER_TID.load(Ordering::Relaxed)
}

extern "C" fn stop_handler(_sig: i32, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let t = tls::here();
    if t.busy() || t.live_shard() != 0 {
        // Inside the recorder, holding its locks: park on the way out instead.
        return;
    }
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    park(Some(uc))
}

/// Tids of this process's threads, from /proc/self/task (raw getdents64, no malloc).
pub(super) fn thread_ids() -> Vec<u32> {
    let mut out = Vec::new();
    // SAFETY: NUL-terminated path; fd closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return out;
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[off + 19..(off + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_u64(name) {
                out.push(tid as u32);
            }
            off += reclen;
        }
    }
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    // A thread that has ended but is still listed (the main thread after `pthread_exit`
    // stays a zombie until the process ends) runs nothing and has no stack to scan.
    out.retain(|&tid| !has_ended(tid));
    out
}

/// Whether thread `tid` has ended: a zombie (or dead) task.
pub(super) fn has_ended(tid: u32) -> bool {
    let mut buf = [0u8; 512];
    let Some(text) = read_task_file(tid, b"stat", &mut buf) else {
        return true;
    };
    let state = sys::stat_state(text).map(|(state, _)| state);
    matches!(state, Some(b'Z' | b'X'))
}

pub(super) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// `/proc/self/task/TID/NAME`, read into `buf`; the bytes read.
pub(super) fn read_task_file<'b>(tid: u32, name: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut path = Vec::from(&b"/proc/self/task/"[..]);
    path.extend_from_slice(&crate::output::itoa_buf(tid as u64));
    path.push(b'/');
    path.extend_from_slice(name);
    path.push(0);
    let n = sys::read_file(core::ffi::CStr::from_bytes_with_nul(&path).ok()?, buf)?;
    Some(&buf[..n])
}

/// The system call thread `tid` is blocked in, and its stack pointer, from
/// /proc/self/task/TID/syscall ("nr a1 .. a6 sp pc"); `None` if it is running.
pub(super) fn blocked_syscall(tid: u32) -> Option<(u64, u64)> {
    let mut buf = [0u8; 256];
    let fields: Vec<&[u8]> = read_task_file(tid, b"syscall", &mut buf)?
        .split(|&c| c == b' ' || c == b'\n')
        .filter(|f| !f.is_empty())
        .collect();
    if fields.len() < 9 {
        return None;
    }
    Some((
        parse_u64(fields[0])?,
        sys::parse_hex(fields[7].strip_prefix(b"0x")?)?,
    ))
}

/// The stack pointer of a thread blocked in a system call; `None` if it is running.
pub(super) fn blocked_sp(tid: u32) -> Option<u64> {
    blocked_syscall(tid).map(|(_, sp)| sp)
}

/// Whether thread `tid` waits for signals in `sigwaitinfo`/`sigtimedwait` (its current
/// system call is rt_sigtimedwait): the kernel unblocks the awaited signals for the
/// wait, so its SigBlk no longer shows them, and a stop signal sent to it would be
/// taken by the program as its own.
pub(super) fn waits_for_signals(tid: u32) -> bool {
    blocked_syscall(tid).is_some_and(|(nr, _)| nr == libc::SYS_rt_sigtimedwait as u64)
}

/// Whether thread `tid` must not be sent the stop signal: it blocks it (the SigBlk mask
/// of its /proc status), or waits for signals and would take it.
///
/// The mask is read before and after the system call: a thread that blocks every signal
/// and is on its way into `sigwaitinfo` shows the signal blocked until it enters the wait,
/// and, once in, shows it unblocked but waits in rt_sigtimedwait. Reading the system call
/// first would leave a gap: not yet waiting, then (a moment later) waiting with the mask
/// lifted, and the stop signal would be the program's.
pub(super) fn blocks_signal(tid: u32, sig: i32) -> bool {
    sigblk_has(tid, sig) || waits_for_signals(tid) || sigblk_has(tid, sig)
}

/// Whether thread `tid`'s SigBlk (its /proc status) holds `sig`.
fn sigblk_has(tid: u32, sig: i32) -> bool {
    let mut buf = [0u8; 4096];
    let Some(text) = read_task_file(tid, b"status", &mut buf) else {
        return false;
    };
    let Some(at) = text.windows(7).position(|w| w == b"SigBlk:") else {
        return false;
    };
    let mask = text[at + 7..]
        .split(|c| c.is_ascii_whitespace())
        .find(|f| !f.is_empty())
        .and_then(sys::parse_hex)
        .unwrap_or(0);
    mask & (1u64 << (sig - 1)) != 0
}

/// The process's threads but the calling one and the recorder's RSS sampler (which never
/// touches program memory).
pub(super) fn other_threads() -> Vec<u32> {
    let me = sys::gettid();
    let sampler = crate::thread::SAMPLER_TID.load(Ordering::Relaxed);
    thread_ids()
        .into_iter()
        .filter(|&t| t != me && t != sampler)
        .collect()
}

/// Stop every other thread (except the RSS sampler, which never touches program
/// memory). Returns (stopped, unstoppable tids with their blocked sp if known).
pub(super) fn stop_threads() -> (Vec<[u64; SLOT]>, Vec<(u32, u64)>) {
    let me = sys::gettid();
    SCANNER_TID.store(me, Ordering::Relaxed);
    STOPPING.store(true, Ordering::SeqCst);
    let others = other_threads();
    if others.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // SAFETY: installing a handler for our private real-time signal; the process is
    // exiting, the old disposition is not needed again.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = stop_handler as *const () as usize;
        // SA_ONSTACK: a thread with an alternate signal stack (every Go thread: its
        // goroutine stacks are a few KiB) takes the handler there.
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigfillset(&mut sa.sa_mask);
        crate::signals::real_sigaction(stop_signal(), &sa, core::ptr::null_mut());
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // A thread that blocks the signal is not sent it: it may be the program's signal
    // thread, waiting for every signal in sigwaitinfo or a signalfd, which would take it.
    // A thread being created blocks every signal until start_thread restores its mask: it
    // gets up to 20 ms to do so, and is signalled then.
    let mut sent = Vec::new();
    let mut blocking: Vec<u32> = Vec::new();
    let send = |tid: u32, sent: &mut Vec<u32>| {
        // SAFETY: tgkill to a thread of our own process.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, stop_signal()) } == 0 {
            sent.push(tid);
        }
    };
    for &tid in &others {
        if blocks_signal(tid, stop_signal()) {
            blocking.push(tid);
        } else {
            send(tid, &mut sent);
        }
    }
    if !blocking.is_empty() {
        let until = crate::clock::monotonic_ns() + 20_000_000;
        while !blocking.is_empty() && crate::clock::monotonic_ns() < until {
            crate::sys::futex_wait(&NEVER, 0, Some(1_000_000));
            blocking.retain(|&tid| {
                let still = blocks_signal(tid, stop_signal());
                if !still {
                    send(tid, &mut sent);
                }
                still
            });
        }
    }
    // Wait up to 500 ms for them to park (only a thread that never returns from a signal
    // handler takes that long).
    let deadline = crate::clock::monotonic_ns() + 500_000_000;
    loop {
        let done = PARKED_DONE.load(Ordering::Acquire);
        if done as usize >= sent.len() {
            break;
        }
        let now = crate::clock::monotonic_ns();
        if now >= deadline {
            break;
        }
        crate::sys::futex_wait(&PARKED_DONE, done, Some((deadline - now).min(10_000_000)));
    }
    // The slots whose tid is published are complete; a thread that parked on its own
    // (leaving the recorder) is among them even if it was never signalled.
    let claimed = PARKED.load(Ordering::Acquire).min(MAX_THREADS);
    let mut parked: Vec<[u64; SLOT]> = Vec::new();
    for i in 0..claimed {
        // SAFETY: slot i is in bounds; its tid is read atomically (Acquire) and the rest
        // only once the tid says the slot is complete and will not change again.
        unsafe {
            let slot = &mut (*core::ptr::addr_of_mut!(PARKED_STATE))[i];
            let tid = core::sync::atomic::AtomicU64::from_ptr(&mut slot[0]).load(Ordering::Acquire);
            if tid != 0 && !parked.iter().any(|p| p[0] == tid) {
                parked.push(*slot);
            }
        }
    }
    let unstoppable = others
        .iter()
        .filter(|&&t| !parked.iter().any(|p| p[0] == t as u64))
        .map(|&t| (t, blocked_sp(t).unwrap_or(0)))
        .collect();
    (parked, unstoppable)
}
