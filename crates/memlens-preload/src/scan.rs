//! The reachability scan at exit: memcheck's leak check, run inside the process.
//!
//! 1. Stop every other thread of the program (a real-time signal whose handler saves the
//!    registers and parks the thread; a thread inside the recorder parks when it leaves
//!    it). A thread that cannot be stopped is scanned from the stack pointer the kernel
//!    reports for its blocked system call.
//! 2. If the process is exiting normally and no other thread runs, call libstdc++'s and
//!    glibc's `freeres`, as memcheck does, so their internal buffers are not reported.
//! 3. Roots: every readable and writable mapping except the heap (glibc's `[heap]`, its
//!    arena heaps, the mmapped chunks of live blocks) and the recorder's own memory;
//!    thread stacks only from their stack pointers up; the registers of stopped threads
//!    and the callee-saved registers at the program's `exit` call.
//! 4. Mark (breadth first, so each block's recorded parent is on a shortest chain from a
//!    root): a start pointer, or an interior pointer accepted by a heuristic, from a root
//!    or a reachable block makes a block reachable; any other pointer to it makes it
//!    possibly lost. Then cliques in address order: each unreached block not yet claimed
//!    leads a clique (definitely lost) and claims every unreached block it reaches
//!    (indirectly lost); a former leader reached this way is demoted.
//! 5. Write one Scan record per block (address order) with its state and link (parent or
//!    clique leader) into the trace. The analysis joins them with the allocation stacks.
//!
//! The scan never calls the hooked allocator: its memory is the recorder's private heap.

use crate::self_mem::{self, Reader, SelfMemory};
use crate::{live, own_memory, sys, tls};
extern crate alloc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use memlens_trace::{
    BlockLink, BlockState, ChunkBuilder, ChunkKind, ExitKind, Heuristic, RootKind,
};

/// Registers and stack pointer of the exiting thread at the point the program ended.
#[derive(Clone, Copy)]
pub struct Context {
    /// The stack from here up is live (0: unknown, use the scanning frame's).
    pub sp: u64,
    /// General-purpose registers, then the vector registers' words (see [`MAX_REGS`]).
    pub regs: [u64; MAX_REGS],
    pub nregs: usize,
    /// Include the 128-byte red zone below `sp`: a signal interrupted the thread at an
    /// arbitrary instruction, where a leaf function may keep live locals there (memcheck
    /// scans it too). Not after a call (exit, abort) or a fault.
    pub red_zone: bool,
}

impl Default for Context {
    fn default() -> Context {
        Context {
            sp: 0,
            regs: [0; MAX_REGS],
            nregs: 0,
            red_zone: false,
        }
    }
}

/// The 128 bytes below the stack pointer that the x86_64 ABI lets a leaf function use.
const RED_ZONE: u64 = 128;

/// Enabled heuristics, a bit per [`Heuristic`] value (memcheck's default: all).
pub static HEURISTICS: AtomicU32 = AtomicU32::new(0b11110);
/// Whether to run the scan at all (`MEMLENS_LEAK_CHECK=no` turns it off).
pub static ENABLED: AtomicBool = AtomicBool::new(true);
/// Scan every mapping a thread's stack pointer is in whole (a Go program: go_exit.rs).
pub static WHOLE_STACK_MAPPINGS: AtomicBool = AtomicBool::new(false);

// ---- stopping the other threads ----

/// Set while the scan runs: threads leaving the recorder park themselves.
pub static STOPPING: AtomicBool = AtomicBool::new(false);
static SCANNER_TID: AtomicU32 = AtomicU32::new(0);
const MAX_THREADS: usize = 1024;
static PARKED: AtomicUsize = AtomicUsize::new(0);
static PARKED_DONE: AtomicU32 = AtomicU32::new(0);
/// Registers a thread interrupted by a signal has: 16 general-purpose (x86_64 gregs
/// order up to RSP) and the low 128 bits of xmm0-15 (a compiler keeps pointers there
/// too: memcpy'd structs, vectorised loops), two words each.
pub const MAX_REGS: usize = 16 + 32;
/// Per parked thread: tid (written last, 0 while the slot is being filled), the lowest
/// live stack address (its stack pointer, less the red zone when a signal interrupted
/// it), its thread pointer (`pthread_self`), then its registers.
const SLOT: usize = 3 + MAX_REGS;
static mut PARKED_STATE: [[u64; SLOT]; MAX_THREADS] = [[0; SLOT]; MAX_THREADS];

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
static NEVER: AtomicU32 = AtomicU32::new(0);

fn stop_signal() -> i32 {
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
fn thread_ids() -> Vec<u32> {
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
    out
}

fn parse_u64(s: &[u8]) -> Option<u64> {
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
fn read_task_file<'b>(tid: u32, name: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
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
fn blocked_syscall(tid: u32) -> Option<(u64, u64)> {
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
fn blocked_sp(tid: u32) -> Option<u64> {
    blocked_syscall(tid).map(|(_, sp)| sp)
}

/// Whether thread `tid` waits for signals in `sigwaitinfo`/`sigtimedwait` (its current
/// system call is rt_sigtimedwait): the kernel unblocks the awaited signals for the
/// wait, so its SigBlk no longer shows them, and a stop signal sent to it would be
/// taken by the program as its own.
fn waits_for_signals(tid: u32) -> bool {
    blocked_syscall(tid).is_some_and(|(nr, _)| nr == libc::SYS_rt_sigtimedwait as u64)
}

/// Whether thread `tid` must not be sent the stop signal: it blocks it (the SigBlk mask
/// of its /proc status), or waits for signals and would take it.
fn blocks_signal(tid: u32, sig: i32) -> bool {
    if waits_for_signals(tid) {
        return true;
    }
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

/// Stop every other thread (except the RSS sampler, which never touches program
/// memory). Returns (stopped, unstoppable tids with their blocked sp if known).
fn stop_threads() -> (Vec<[u64; SLOT]>, Vec<(u32, u64)>) {
    let me = sys::gettid();
    SCANNER_TID.store(me, Ordering::Relaxed);
    STOPPING.store(true, Ordering::SeqCst);
    let sampler = crate::thread::SAMPLER_TID.load(Ordering::Relaxed);
    let others: Vec<u32> = thread_ids()
        .into_iter()
        .filter(|&t| t != me && t != sampler)
        .collect();
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

// ---- freeres ----

/// Run libstdc++'s and glibc's freeres (memcheck's `--run-cxx-freeres`/`--run-libc-freeres`).
fn freeres() {
    // Only lookups that succeed: a failed one leaves an error message that glibc frees at
    // the next dl* call through the program's free, and a free that itself calls dlsym
    // (a wrapper forwarding with RTLD_NEXT) would then recurse without end.
    let cxx = crate::modules::is_loaded(b"libstdc++.so");
    for (name, wanted) in [
        (c"_ZN9__gnu_cxx9__freeresEv", cxx),
        (c"__libc_freeres", true),
    ] {
        if !wanted {
            continue;
        }
        let f = {
            let _busy = tls::BusyGuard::enter();
            // SAFETY: dlsym with a NUL-terminated name; may allocate (we are busy).
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
        };
        if !f.is_null() {
            // SAFETY: both are `void f(void)` functions exported for exactly this use.
            let f: extern "C" fn() = unsafe { core::mem::transmute(f) };
            f();
        }
    }
}

// ---- the heap model ----

const UNREACHED: u8 = 0;
const POSSIBLE: u8 = 1;
const REACHABLE: u8 = 2;
const STATE_MASK: u8 = 3;
const CLAIMED: u8 = 1 << 5;
const LEADER: u8 = 1 << 6;
const HEUR_SHIFT: u8 = 2;

const ROOT_LINK: u64 = 1 << 63;

struct Cluster {
    base: u64,
    limit: u64,
    first: u32,
    buckets: Vec<u32>,
}

const BUCKET_SHIFT: u32 = 12;
const CLUSTER_GAP: u64 = 64 << 20;

struct Heap {
    /// (start, meta) by address.
    blocks: Vec<(u64, u64)>,
    clusters: Vec<Cluster>,
    min: u64,
    max: u64,
    /// Whether a block's memory can be read (it lies in a readable mapping).
    readable: Vec<bool>,
}

#[inline]
fn size_of(meta: u64) -> u64 {
    live::Meta(meta).size()
}

#[inline]
fn end_of(b: &(u64, u64)) -> u64 {
    b.0 + size_of(b.1).max(1)
}

impl Heap {
    fn new(mut blocks: Vec<(u64, u64)>) -> Heap {
        blocks.sort_unstable_by_key(|b| b.0);
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut i = 0usize;
        while i < blocks.len() {
            let first = i;
            let base = blocks[i].0 & !((1 << BUCKET_SHIFT) - 1);
            let mut limit = end_of(&blocks[i]);
            i += 1;
            while i < blocks.len() && blocks[i].0 < limit.saturating_add(CLUSTER_GAP) {
                limit = limit.max(end_of(&blocks[i]));
                i += 1;
            }
            let nb = ((limit - base) >> BUCKET_SHIFT) as usize + 2;
            let mut buckets = alloc::vec![0u32; nb];
            // buckets[k] = first block index (global) starting at or after base + k*4K.
            let mut j = first;
            for (k, slot) in buckets.iter_mut().enumerate() {
                let at = base + ((k as u64) << BUCKET_SHIFT);
                while j < i && blocks[j].0 < at {
                    j += 1;
                }
                *slot = j as u32;
            }
            clusters.push(Cluster {
                base,
                limit,
                first: first as u32,
                buckets,
            });
        }
        let min = blocks.first().map_or(u64::MAX, |b| b.0);
        let max = clusters.iter().map(|c| c.limit).max().unwrap_or(0);
        let readable = alloc::vec![true; blocks.len()];
        Heap {
            blocks,
            clusters,
            min,
            max,
            readable,
        }
    }

    /// The aligned words of block `b` (none if its memory cannot be read).
    fn words(&self, b: usize) -> impl Iterator<Item = u64> + '_ {
        let (start, meta) = self.blocks[b];
        let n = if self.readable[b] {
            size_of(meta) / 8
        } else {
            0
        };
        // SAFETY: each word lies within the live, readable block.
        (0..n).map(move |k| unsafe { core::ptr::read((start + 8 * k) as *const u64) })
    }

    /// The block containing address `w`.
    #[inline]
    fn find(&self, w: u64) -> Option<u32> {
        if w < self.min || w >= self.max {
            return None;
        }
        let ci = self.clusters.partition_point(|c| c.base <= w);
        if ci == 0 {
            return None;
        }
        let c = &self.clusters[ci - 1];
        if w >= c.limit {
            return None;
        }
        let k = ((w - c.base) >> BUCKET_SHIFT) as usize;
        let lo = c.buckets[k] as usize;
        let hi = c.buckets[k + 1] as usize;
        // Last block starting at or before w: among those starting in this bucket, or
        // else the last one starting before it.
        let n = self.blocks[lo..hi].partition_point(|b| b.0 <= w);
        let cand = if n > 0 {
            lo + n - 1
        } else if lo > c.first as usize {
            lo - 1
        } else {
            return None;
        };
        let b = &self.blocks[cand];
        (w >= b.0 && w < end_of(b)).then_some(cand as u32)
    }
}

/// A readable mapping, for the vtable check and for validating block addresses.
#[derive(Clone, Copy)]
struct Map {
    start: u64,
    end: u64,
    exec: bool,
    file: bool,
}

struct Marker<'a> {
    heap: &'a Heap,
    maps: &'a [Map],
    state: Vec<u8>,
    link: Vec<u64>,
    queue: Vec<u32>,
    heuristics: u32,
    /// Root memory and the file mappings a vtable check looks into are read through this
    /// (never faulting); heap blocks, in anonymous memory, are read directly.
    mem: &'a mut dyn Reader,
    buf: Vec<u64>,
}

impl Marker<'_> {
    fn map_of(&self, a: u64) -> Option<&Map> {
        let i = self.maps.partition_point(|m| m.start <= a);
        (i > 0 && a < self.maps[i - 1].end).then(|| &self.maps[i - 1])
    }

    /// memcheck's aligned_ptr_above_page0_is_vtable_addr: in a readable file mapping,
    /// and one of its first entries points into executable file-backed code.
    fn looks_like_vtable(&mut self, p: u64) -> bool {
        if p < 4096 || !p.is_multiple_of(8) {
            return false;
        }
        let Some(m) = self.map_of(p) else {
            return false;
        };
        if !m.file {
            return false;
        }
        // A file mapping may end in pages past the end of its file: read safely.
        let n = (((m.end - p) / 8) as usize).min(20);
        let mut entries = [0u64; 20];
        let got = self.mem.read(p, &mut entries[..n]);
        entries[..got]
            .iter()
            .any(|&pc| self.map_of(pc).is_some_and(|t| t.exec && t.file))
    }

    fn word(&self, b: usize, off: u64) -> Option<u64> {
        let (start, meta) = self.heap.blocks[b];
        if !self.heap.readable[b] || off + 8 > size_of(meta) {
            return None;
        }
        // SAFETY: the block is live and lies in a readable mapping; off+8 <= size.
        Some(unsafe { core::ptr::read_unaligned((start + off) as *const u64) })
    }

    /// Which heuristic accepts an interior pointer `w` into block `b`.
    fn heuristic(&mut self, w: u64, b: usize) -> Option<Heuristic> {
        let (start, meta) = self.heap.blocks[b];
        let size = size_of(meta);
        let on = |h: Heuristic| self.heuristics & (1 << h as u32) != 0;
        if on(Heuristic::StdString) && w == start + 24 {
            if let (Some(len), Some(cap)) = (self.word(b, 0), self.word(b, 8)) {
                if size == cap.wrapping_add(25) && len <= cap {
                    return Some(Heuristic::StdString);
                }
            }
        }
        if w == start + 8 {
            if on(Heuristic::Length64) {
                if let Some(n) = self.word(b, 0) {
                    if n > 0 && size >= 8 && size - 8 == n {
                        return Some(Heuristic::Length64);
                    }
                }
            }
            if on(Heuristic::NewArray) {
                if let Some(n) = self.word(b, 0) {
                    if n > 0 && size >= 8 && (size - 8).is_multiple_of(n) {
                        return Some(Heuristic::NewArray);
                    }
                }
            }
        }
        if on(Heuristic::MultipleInheritance) && w.is_multiple_of(8) && w + 8 <= start + size {
            if let (Some(first), Some(inner)) = (self.word(b, 0), self.word(b, w - start)) {
                if self.looks_like_vtable(inner) && self.looks_like_vtable(first) {
                    return Some(Heuristic::MultipleInheritance);
                }
            }
        }
        None
    }

    /// A pointer `w` read from a root (`src_block == None`) or from block `src_block`.
    #[inline]
    fn reach(&mut self, w: u64, src: u64, src_block: Option<u32>) {
        let Some(b) = self.heap.find(w) else {
            return;
        };
        if Some(b) == src_block {
            return;
        }
        let bi = b as usize;
        let (start, meta) = self.heap.blocks[bi];
        let definite_src = match src_block {
            None => true,
            Some(s) => self.state[s as usize] & STATE_MASK == REACHABLE,
        };
        let mut heur = None;
        if w != start {
            // A pointer to the next chunk's header (glibc's bins, tcache, top) lands on
            // the last word of a block whose size fills its chunk: not the program's.
            if size_of(meta) >= 8 && self.heap.readable[bi] {
                // SAFETY: the chunk header word before a live block is mapped.
                let hdr = unsafe { core::ptr::read((start - 8) as *const u64) };
                if w == start - 16 + (hdr & !7) {
                    return;
                }
            }
            if definite_src {
                heur = self.heuristic(w, bi);
            }
        }
        let new = if definite_src && (w == start || heur.is_some()) {
            REACHABLE
        } else {
            POSSIBLE
        };
        let cur = self.state[bi] & STATE_MASK;
        if new > cur {
            let h = heur.map_or(0, |h| h as u8);
            self.state[bi] = new | h << HEUR_SHIFT;
            self.link[bi] = src;
            self.queue.push(b);
        } else if new == REACHABLE && cur == REACHABLE && heur.is_none() {
            // Reached by a plain start pointer after a heuristic: plainly reachable.
            self.state[bi] &= !(7 << HEUR_SHIFT);
        }
    }

    /// Mark from the words of root memory `[lo, hi)`; what cannot be read is skipped.
    fn scan_range(&mut self, lo: u64, hi: u64, root: u32) {
        let mut buf = core::mem::take(&mut self.buf);
        let (min, max) = (self.heap.min, self.heap.max);
        let mut cur = self_mem::Cursor::new(lo, hi);
        while let Some((at, n)) = cur.next(&mut *self.mem, &mut buf) {
            for (k, &w) in buf[..n].iter().enumerate() {
                if w >= min && w < max {
                    let a = at + 8 * k as u64;
                    self.reach(
                        w,
                        ROOT_LINK | (root as u64) << 48 | (a & 0xFFFF_FFFF_FFFF),
                        None,
                    );
                }
            }
        }
        self.buf = buf;
    }

    fn scan_block(&mut self, b: u32) {
        let heap = self.heap;
        for w in heap.words(b as usize) {
            if w >= heap.min && w < heap.max {
                self.reach(w, b as u64 + 1, Some(b));
            }
        }
    }

    fn drain(&mut self) {
        let mut head = 0;
        while head < self.queue.len() {
            let b = self.queue[head];
            head += 1;
            self.scan_block(b);
        }
        self.queue.clear();
    }

    /// memcheck's cliques, in ascending address order.
    fn cliques(&mut self) {
        let n = self.heap.blocks.len();
        let mut stack: Vec<u32> = Vec::new();
        for leader in 0..n {
            if self.state[leader] & (STATE_MASK | CLAIMED) != UNREACHED {
                continue;
            }
            self.state[leader] |= CLAIMED | LEADER;
            stack.push(leader as u32);
            while let Some(j) = stack.pop() {
                let heap = self.heap;
                for w in heap.words(j as usize) {
                    let Some(b) = heap.find(w) else {
                        continue;
                    };
                    let bi = b as usize;
                    if bi == leader || self.state[bi] & STATE_MASK != UNREACHED {
                        continue;
                    }
                    if self.state[bi] & CLAIMED == 0 {
                        self.state[bi] |= CLAIMED;
                        self.link[bi] = leader as u64 + 1;
                        stack.push(b);
                    } else if self.state[bi] & LEADER != 0 {
                        // An earlier clique's leader: it and its clique join this one.
                        self.state[bi] &= !LEADER;
                        self.link[bi] = leader as u64 + 1;
                    }
                }
            }
        }
    }
}

/// The marker's answer: a state byte and a link per block, in address order.
struct Marks {
    state: Vec<u8>,
    link: Vec<u64>,
}

impl Marks {
    /// Block `i`'s kind, the heuristic that saved it, and its parent or clique leader.
    fn verdict(&self, i: usize) -> (BlockState, Option<Heuristic>, BlockLink) {
        let s = self.state[i];
        let state = match s & STATE_MASK {
            REACHABLE => BlockState::StillReachable,
            POSSIBLE => BlockState::PossiblyLost,
            _ if s & LEADER != 0 => BlockState::DefinitelyLost,
            _ => BlockState::IndirectlyLost,
        };
        let l = self.link[i];
        let link = if l == 0 {
            BlockLink::None
        } else if l & ROOT_LINK != 0 {
            BlockLink::Root {
                root: ((l >> 48) & 0x7fff) as u32,
                addr: l & 0xFFFF_FFFF_FFFF,
            }
        } else {
            BlockLink::Block((l - 1) as u32)
        };
        (state, Heuristic::from_u8((s >> HEUR_SHIFT) & 7), link)
    }
}

/// memcheck's marking: from each root range in turn (root ids 0, 1, ...), then from each
/// register set (ids after the ranges), breadth first; then cliques. Root memory is read
/// through `mem`; blocks directly (they are live heap memory).
fn mark(
    heap: &Heap,
    maps: &[Map],
    mem: &mut dyn Reader,
    heuristics: u32,
    ranges: &[(u64, u64)],
    reg_sets: &[&[u64]],
) -> Marks {
    let n = heap.blocks.len();
    let mut mk = Marker {
        heap,
        maps,
        state: alloc::vec![0u8; n],
        link: alloc::vec![0u64; n],
        queue: Vec::new(),
        heuristics,
        mem,
        buf: alloc::vec![0u64; 8192],
    };
    for (id, &(lo, hi)) in ranges.iter().enumerate() {
        mk.scan_range(lo, hi, (id as u32).min(0x7fff));
        mk.drain();
    }
    let reg_base = ranges.len() as u32;
    for (k, regs) in reg_sets.iter().enumerate() {
        for &w in regs.iter() {
            if w >= heap.min && w < heap.max {
                let rid = (reg_base + k as u32).min(0x7fff);
                mk.reach(w, ROOT_LINK | (rid as u64) << 48, None);
            }
        }
        mk.drain();
    }
    mk.cliques();
    Marks {
        state: mk.state,
        link: mk.link,
    }
}

// ---- roots ----

struct Root {
    kind: RootKind,
    tid: u32,
    start: u64,
    end: u64,
    name: Vec<u8>,
}

/// Subtract sorted, merged `excl` ranges from [lo, hi) and call f on each remaining piece.
fn subtract(lo: u64, hi: u64, excl: &[(u64, u64)], mut f: impl FnMut(u64, u64)) {
    let mut cur = lo;
    let first = excl.partition_point(|e| e.1 <= lo);
    for e in &excl[first..] {
        if e.0 >= hi {
            break;
        }
        if e.0 > cur {
            f(cur, e.0);
        }
        cur = cur.max(e.1);
        if cur >= hi {
            return;
        }
    }
    if cur < hi {
        f(cur, hi);
    }
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

const HEAP_MAX: u64 = 64 << 20;

/// Is this anonymous mapping one of glibc's non-main arena heaps? They are aligned to
/// 64 MiB and start with a heap_info {ar_ptr, prev, size, mprotect_size, ...} whose size
/// is the mapping's read-write length.
fn is_arena_heap(mem: &mut dyn Reader, start: u64, end: u64) -> bool {
    if !start.is_multiple_of(HEAP_MAX) || end - start < 64 {
        return false;
    }
    let mut w = [0u64; 4];
    if mem.read(start, &mut w) < 4 {
        return false;
    }
    let [ar, prev, size, mprot] = w;
    ar != 0
        && ar.is_multiple_of(8)
        && prev.is_multiple_of(HEAP_MAX)
        && size <= HEAP_MAX
        && (size == end - start || mprot == end - start)
}

/// What the scan needs from ld.so, looked up at start-up (`prepare`): after the other
/// threads are stopped, one of them may hold ld.so's lock (parked inside `dlopen`), and
/// `dladdr`/`dlsym` would wait for it forever.
struct Prepared {
    /// The recorder library's path, as the loader names it in /proc/self/maps.
    self_path: Vec<u8>,
    /// glibc's thread-stack layout: (static TLS size, its alignment, the size of
    /// `struct pthread`); zeros if this glibc does not export them.
    layout: (u64, u64, u64),
}

static PREPARED: spin::Once<Prepared> = spin::Once::new();

/// Look up what the scan will need from ld.so. Called at start-up, busy, single-threaded.
pub fn prepare() {
    PREPARED.call_once(|| Prepared {
        self_path: self_module_path(),
        layout: thread_stack_layout().unwrap_or((0, 0, 0)),
    });
}

fn self_module_path() -> Vec<u8> {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr on one of our own functions fills info; dli_fname is a C string
    // owned by the loader.
    unsafe {
        if libc::dladdr(self_module_path as *const libc::c_void, &mut info) != 0
            && !info.dli_fname.is_null()
        {
            return core::ffi::CStr::from_ptr(info.dli_fname)
                .to_bytes()
                .to_vec();
        }
    }
    Vec::new()
}

/// glibc's thread-stack layout constants: (static TLS size, its alignment, the size of
/// `struct pthread`), from the two entry points its own debuggers and sanitizers use.
/// `None` if this glibc does not export them.
fn thread_stack_layout() -> Option<(u64, u64, u64)> {
    // SAFETY: dlsym with NUL-terminated names (may allocate: the caller is busy). The
    // first is `void _dl_get_tls_static_info(size_t *size, size_t *align)`, the second a
    // `const uint32_t` (both GLIBC_PRIVATE, exported by glibc 2.34 and later).
    unsafe {
        let info = libc::dlsym(libc::RTLD_DEFAULT, c"_dl_get_tls_static_info".as_ptr());
        let tcb = libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_sizeof_pthread".as_ptr());
        if info.is_null() || tcb.is_null() {
            return None;
        }
        let info: extern "C" fn(*mut usize, *mut usize) = core::mem::transmute(info);
        let (mut size, mut align) = (0usize, 0usize);
        info(&mut size, &mut align);
        let tcb = core::ptr::read(tcb as *const u32) as u64;
        (align.is_power_of_two() && size as u64 > tcb && tcb > 0).then_some((
            size as u64,
            align as u64,
            tcb,
        ))
    }
}

/// The stacks of threads that have ended, which glibc keeps in its cache for the next
/// thread (and of exited threads not yet joined). Such a stack is a private anonymous
/// mapping just above a PROT_NONE guard page (`guard_ends` holds where guards end), whose
/// top holds a `struct pthread` (at the thread pointer `tp`, where glibc puts it, and
/// whose first and third words point to itself) with the static TLS below it; no live
/// thread's stack pointer lies in it, and its `tp` is no live thread's (`live_tps`: a
/// thread running on another stack, a fiber or a signal stack, still owns its own).
/// `f` gets the part below the static TLS, where the dead thread's frames were; the TLS
/// and the descriptor stay roots (an unjoined thread's return value lives there).
fn dead_thread_stacks(
    mem: &mut dyn Reader,
    rw: &[(u64, u64, bool, bool, Vec<u8>)],
    guard_ends: &[u64],
    live_sps: &[u64],
    live_tps: &[u64],
    mut f: impl FnMut(u64, u64),
) {
    let (static_size, align, tcb) = PREPARED.get().map_or((0, 0, 0), |p| p.layout);
    if tcb == 0 {
        return;
    }
    for &(start, end, file, shared, ref name) in rw {
        if file || shared || !name.is_empty() || end - start < static_size + 4096 {
            continue;
        }
        if !guard_ends.contains(&start) || live_sps.iter().any(|&sp| sp >= start && sp < end) {
            continue;
        }
        let tp = (end - tcb) & !(align - 1);
        if live_tps.contains(&tp) {
            continue;
        }
        let mut hdr = [0u64; 3];
        if mem.read(tp, &mut hdr) == 3 && hdr[0] == tp && hdr[2] == tp {
            let stack_top = (tp + tcb).saturating_sub(static_size.next_multiple_of(align));
            if stack_top > start {
                f(start, stack_top);
            }
        }
    }
}

// ---- the scan ----

/// Run the scan and write its records. Called once, at exit, by the exiting thread,
/// not busy (freeres must be recorded), with the trace still open.
pub fn run(trigger: ExitKind, code: i32, ctx: &Context) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let (parked, unstoppable) = stop_threads();
    let stopped = parked.len();
    let single = stopped == 0 && unstoppable.is_empty();
    let mut flags = 0u64;
    if single && matches!(trigger, ExitKind::Exit | ExitKind::UnderscoreExit) {
        freeres();
        flags |= 1;
    }
    let _busy = tls::BusyGuard::enter();
    let started = crate::clock::now_ns();

    // The blocks.
    let mut blocks: Vec<(u64, u64)> = Vec::with_capacity(live::len() + 1024);
    live::for_each(|a, m| blocks.push((a, m.0)));
    let mut heap = Heap::new(blocks);

    // The mappings.
    let mut mem = SelfMemory::new();
    // Prepared at start-up (never here: a stopped thread may hold ld.so's lock).
    let me_path = PREPARED.get().map_or(&[][..], |p| &p.self_path[..]);
    let mut maps: Vec<Map> = Vec::new();
    let mut rw: Vec<(u64, u64, bool, bool, Vec<u8>)> = Vec::new(); // start, end, file, shared, name
    let mut excl: Vec<(u64, u64)> = Vec::new();
    // Where PROT_NONE mappings (thread-stack guards among them) end.
    let mut guard_ends: Vec<u64> = Vec::new();
    sys::for_each_mapping(|m| {
        let file = m.name.first() == Some(&b'/');
        if m.read {
            maps.push(Map {
                start: m.start,
                end: m.end,
                exec: m.exec,
                file,
            });
        }
        if !(m.read || m.write || m.exec) {
            guard_ends.push(m.end);
        }
        if !(m.read && m.write) {
            return true;
        }
        let ours = !me_path.is_empty() && m.name == me_path;
        let special = m.name.starts_with(b"[v") || m.name == b"[heap]";
        // Device memory is not the program's data (and may not even be readable), but a
        // private mapping of /dev/zero is plain anonymous memory and shared memory is
        // memory.
        let dev = m.name.starts_with(b"/dev/")
            && !m.name.starts_with(b"/dev/shm/")
            && !m.name.starts_with(b"/dev/zero");
        if ours || special || dev || (m.name.is_empty() && is_arena_heap(&mut mem, m.start, m.end))
        {
            return true;
        }
        rw.push((m.start, m.end, file, m.shared, m.name.to_vec()));
        true
    });
    own_memory::for_each(|s, e| excl.push((s, e)));
    // Blocks outside readable anonymous memory (a stale table entry; glibc never puts a
    // block in a file mapping, whose pages past the file's end would fault) are not read;
    // mmapped chunks of live blocks are heap, not roots.
    for (i, b) in heap.blocks.iter().enumerate() {
        let (start, end) = (b.0, end_of(b));
        let mi = maps.partition_point(|m| m.start <= b.0);
        let ok = mi > 0
            && !maps[mi - 1].file
            && start >= maps[mi - 1].start + 16
            && end <= maps[mi - 1].end;
        heap.readable[i] = ok;
        if ok && size_of(b.1) >= 64 * 1024 {
            // SAFETY: the chunk header (16 bytes before the block) is in the same mapping.
            let (prev, hdr) = unsafe {
                (
                    core::ptr::read((start - 16) as *const u64),
                    core::ptr::read((start - 8) as *const u64),
                )
            };
            if hdr & 2 != 0 {
                let chunk = start - 16;
                excl.push((chunk.wrapping_sub(prev), chunk + (hdr & !7)));
            }
        }
    }

    // Thread stacks: live from their stack pointers up.
    let mut roots: Vec<Root> = Vec::new();
    let mut reg_roots: Vec<(u32, Vec<u64>)> = Vec::new();
    let my_sp = if ctx.sp != 0 {
        ctx.sp
    } else {
        sys::current_sp()
    };
    // Every stack from its stack pointer; for a thread a signal interrupted at an
    // arbitrary instruction, from the red zone below it (a leaf function's live locals),
    // but never for a call (exit, abort, a thread parking on its way out of the
    // recorder) or a fault: below the stack pointer lie only dead frames there (the
    // recorder's own hook frames among them) and the signal frame, and stale pointers in
    // them must not keep a block reachable.
    let my_lo = if ctx.red_zone {
        my_sp.saturating_sub(RED_ZONE)
    } else {
        my_sp
    };
    let mut stacks: Vec<(u32, u64)> = alloc::vec![(sys::gettid(), my_lo)];
    reg_roots.push((sys::gettid(), ctx.regs[..ctx.nregs].to_vec()));
    // SAFETY: pthread_self reads the thread pointer; no precondition.
    let mut live_tps: Vec<u64> = alloc::vec![unsafe { libc::pthread_self() } as u64];
    for s in &parked {
        stacks.push((s[0] as u32, s[1]));
        live_tps.push(s[2]);
        reg_roots.push((s[0] as u32, s[3..].to_vec()));
    }
    for &(tid, sp) in &unstoppable {
        if sp != 0 {
            stacks.push((tid, sp));
        }
    }
    // The recorder's memory and mmapped blocks are never roots, even inside a stack's
    // range: the kernel merges adjacent anonymous mappings, so the mapping a stack
    // pointer is in can reach into the recorder's tables (seen in a Go program, whose
    // goroutine stacks lie in large anonymous arenas).
    let not_roots = merge(excl.clone());
    // In a Go program a goroutine's stack lies inside a Go heap arena whose other objects
    // (below it too) are roots: every mapping is scanned whole below, stacks included,
    // and once (a root per thread as well would rescan an arena per thread).
    let whole = WHOLE_STACK_MAPPINGS.load(Ordering::Relaxed);
    for &(tid, sp) in stacks.iter().filter(|_| !whole) {
        if let Some(r) = rw.iter().find(|r| sp >= r.0 && sp < r.1) {
            // A thread's stack mapping is scanned from its stack pointer up, the dead
            // part below left out.
            excl.push((r.0, r.1));
            subtract(sp, r.1, &not_roots, |start, end| {
                roots.push(Root {
                    kind: RootKind::ThreadStack,
                    tid,
                    start,
                    end,
                    name: r.4.clone(),
                })
            });
        }
    }
    // The stacks glibc keeps for reuse after their threads ended hold only dead frames.
    // (A thread that could not be stopped might own one of them, on another stack: then
    // none is left out, rather than a live thread's.)
    if !whole && unstoppable.is_empty() {
        let live_sps: Vec<u64> = stacks.iter().map(|s| s.1).collect();
        dead_thread_stacks(
            &mut mem,
            &rw,
            &guard_ends,
            &live_sps,
            &live_tps,
            |lo, hi| excl.push((lo, hi)),
        );
    }
    let excl = merge(excl);
    for (s, e, file, shared, name) in &rw {
        let kind = if *shared {
            RootKind::OtherMapping
        } else if *file {
            RootKind::ModuleData
        } else {
            RootKind::Anonymous
        };
        subtract(*s, *e, &excl, |lo, hi| {
            roots.push(Root {
                kind,
                tid: 0,
                start: lo,
                end: hi,
                name: name.clone(),
            })
        });
    }
    // Mark.
    let n = heap.blocks.len();
    let ranges: Vec<(u64, u64)> = roots.iter().map(|r| (r.start, r.end)).collect();
    let reg_sets: Vec<&[u64]> = reg_roots.iter().map(|(_, r)| &r[..]).collect();
    let reg_base = ranges.len() as u32;
    let marks = mark(
        &heap,
        &maps,
        &mut mem,
        HEURISTICS.load(Ordering::Relaxed),
        &ranges,
        &reg_sets,
    );

    // Write.
    let mut b = ChunkBuilder::new(alloc::vec![0u8; crate::output::CHUNK_RAW].into_boxed_slice());
    type Builder = ChunkBuilder<alloc::boxed::Box<[u8]>>;
    let put = |b: &mut Builder, f: &mut dyn FnMut(&mut Builder) -> bool| {
        if !f(b) {
            crate::output::write_chunk(ChunkKind::Scan, 0, b);
            b.clear();
            f(b);
        }
    };
    let tid = sys::gettid();
    put(&mut b, &mut |b| {
        b.scan_begin(
            started,
            trigger,
            code,
            n as u64,
            tid,
            stopped as u32,
            unstoppable.len() as u32,
            flags,
        )
        .is_ok()
    });
    for (i, r) in roots.iter().enumerate() {
        put(&mut b, &mut |b| {
            b.scan_root(i as u32, r.kind, r.tid, 0, r.start, r.end, &r.name)
                .is_ok()
        });
    }
    for (k, (t, _)) in reg_roots.iter().enumerate() {
        put(&mut b, &mut |b| {
            b.scan_root(reg_base + k as u32, RootKind::Registers, *t, 0, 0, 0, b"")
                .is_ok()
        });
    }
    for i in 0..n {
        let (addr, meta) = heap.blocks[i];
        let (state, heur, link) = marks.verdict(i);
        let m = live::Meta(meta);
        put(&mut b, &mut |b| {
            b.scan_block(addr, m.size(), state, heur, m.internal(), link)
                .is_ok()
        });
    }
    let now = crate::clock::now_ns();
    put(&mut b, &mut |b| b.scan_end(now, n as u64).is_ok());
    crate::output::write_chunk(ChunkKind::Scan, 0, &b);
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Reads real memory, except the 4 KiB pages listed as holes (as a page past the end
    /// of a file would be).
    struct Holes(Vec<u64>);

    impl Reader for Holes {
        fn read(&mut self, addr: u64, out: &mut [u64]) -> usize {
            for (k, w) in out.iter_mut().enumerate() {
                let a = addr + 8 * k as u64;
                if self.0.contains(&(a & !4095)) {
                    return k;
                }
                // SAFETY: the tests only read their own arrays.
                *w = unsafe { core::ptr::read(a as *const u64) };
            }
            out.len()
        }
    }

    /// A fake heap: `arena` holds the blocks (each with a zero chunk-header word before
    /// it), `roots` the root memory, both ordinary test memory.
    struct World {
        arena: Vec<u64>,
        blocks: Vec<(u64, u64)>,
    }

    impl World {
        fn new() -> World {
            World {
                arena: std::vec![0u64; 4096],
                blocks: Vec::new(),
            }
        }
        /// A block of `size` bytes at word `at` of the arena (16-byte aligned address).
        fn block(&mut self, at: usize, size: u64) -> u64 {
            let a = &self.arena[at] as *const u64 as u64;
            assert!(
                a.is_multiple_of(16),
                "arena word {at} is not 16-byte aligned"
            );
            self.blocks
                .push((a, live::Meta::new(size, AllocFunc::Malloc, false).0));
            a
        }
        fn put(&mut self, block: u64, word: usize, value: u64) {
            let base = self.arena.as_ptr() as u64;
            self.arena[((block - base) / 8) as usize + word] = value;
        }
        fn verdicts(
            &self,
            roots: &[u64],
            regs: &[u64],
            holes: Vec<u64>,
        ) -> Vec<(BlockState, BlockLink)> {
            let heap = Heap::new(self.blocks.clone());
            let lo = roots.as_ptr() as u64;
            let hi = lo + 8 * roots.len() as u64;
            let mut mem = Holes(holes);
            let marks = mark(&heap, &[], &mut mem, 0, &[(lo, hi)], &[regs]);
            // Back in the order the blocks were made.
            self.blocks
                .iter()
                .map(|b| {
                    let i = heap.blocks.iter().position(|h| h.0 == b.0).unwrap();
                    let (s, _, l) = marks.verdict(i);
                    (s, l)
                })
                .collect()
        }
    }

    use memlens_trace::AllocFunc;
    use BlockState::*;

    /// An arena whose word 2 is 16-byte aligned: blocks at 2 + 8k.
    fn world() -> World {
        let w = World::new();
        let base = w.arena.as_ptr() as u64;
        assert!(base.is_multiple_of(8));
        w
    }

    fn slot(w: &World, k: usize) -> usize {
        let base = w.arena.as_ptr() as u64;
        let first = if base.is_multiple_of(16) { 2 } else { 1 };
        first + 8 * k
    }

    #[test]
    fn memchecks_kinds_from_roots_registers_and_cliques() {
        let mut w = world();
        let at = |k| slot(&w, k);
        let (a, b, c, d, e, f, g, h, r) = (
            at(0),
            at(1),
            at(2),
            at(3),
            at(4),
            at(5),
            at(6),
            at(7),
            at(8),
        );
        let a = w.block(a, 32); // root -> a (start): reachable
        let b = w.block(b, 32); // a -> b: reachable
        let c = w.block(c, 32); // root -> c + 8 (interior): possibly lost
        let d = w.block(d, 32); // c -> d: possibly lost (its parent is only possible)
        let e = w.block(e, 32); // nothing -> e -> f: e definitely, f indirectly lost
        let f = w.block(f, 32);
        let g = w.block(g, 32); // g <-> h, unreferenced: g (lower) leads, h indirect
        let h = w.block(h, 32);
        let r = w.block(r, 32); // only in a register: reachable
        w.put(a, 0, b);
        w.put(c, 0, d);
        w.put(e, 1, f);
        w.put(g, 0, h);
        w.put(h, 0, g);
        let roots = [0u64, a, 7, c + 8];
        let v = w.verdicts(&roots, &[0, r], Vec::new());
        let kinds: Vec<BlockState> = v.iter().map(|x| x.0).collect();
        assert_eq!(
            kinds,
            [
                StillReachable,
                StillReachable,
                PossiblyLost,
                PossiblyLost,
                DefinitelyLost,
                IndirectlyLost,
                DefinitelyLost,
                IndirectlyLost,
                StillReachable
            ]
        );
        let roots_at = roots.as_ptr() as u64;
        assert_eq!(
            v[0].1,
            BlockLink::Root {
                root: 0,
                addr: roots_at + 8
            }
        );
        assert_eq!(v[1].1, BlockLink::Block(0));
        assert_eq!(v[8].1, BlockLink::Root { root: 1, addr: 0 });
        // Indirect blocks name their clique's leader (in address order, g is block 6).
        assert_eq!(v[5].1, BlockLink::Block(4));
        assert_eq!(v[7].1, BlockLink::Block(6));
    }

    #[test]
    fn unreadable_root_pages_are_skipped_not_read() {
        // Two pages of roots; the only pointer to the block is in the second one, which
        // the reader refuses (a page past the end of a file): the block is lost, and
        // nothing faulted. The first page's pointer still counts.
        let mut w = world();
        let (k0, k1) = (slot(&w, 0), slot(&w, 1));
        let kept = w.block(k0, 16);
        let lost = w.block(k1, 16);
        let mut pages = std::vec![0u64; 3 * 512];
        let base = pages.as_ptr() as u64;
        let first = ((base + 4095) & !4095) as usize - base as usize;
        let p0 = first / 8;
        pages[p0] = kept;
        pages[p0 + 512] = lost;
        let hole = base + first as u64 + 4096;
        let v = w.verdicts(&pages[p0..p0 + 1024], &[], std::vec![hole]);
        assert_eq!(v[0].0, StillReachable);
        assert_eq!(v[1].0, DefinitelyLost);
        let v = w.verdicts(&pages[p0..p0 + 1024], &[], Vec::new());
        assert_eq!(v[1].0, StillReachable);
    }

    #[test]
    fn heap_find_maps_interior_addresses_to_their_block() {
        // Blocks far apart (two clusters) and adjacent ones.
        let blocks: Vec<(u64, u64)> = [
            (0x10_0000u64, 32u64),
            (0x10_0020, 16),
            (0x10_2000, 4096),
            (0x9000_0000, 8),
        ]
        .iter()
        .map(|&(a, s)| (a, live::Meta::new(s, AllocFunc::Malloc, false).0))
        .collect();
        let heap = Heap::new(blocks);
        assert_eq!(heap.find(0x10_0000), Some(0));
        assert_eq!(heap.find(0x10_001f), Some(0));
        assert_eq!(heap.find(0x10_0020), Some(1));
        assert_eq!(heap.find(0x10_0030), None);
        assert_eq!(heap.find(0x10_2fff), Some(2));
        assert_eq!(heap.find(0x10_3000), None);
        assert_eq!(heap.find(0x9000_0007), Some(3));
        assert_eq!(heap.find(0x9000_0008), None);
        assert_eq!(heap.find(0x0f_ffff), None);
    }

    #[test]
    fn subtract_and_merge_ranges() {
        let excl = merge(std::vec![(30, 40), (10, 20), (15, 25)]);
        assert_eq!(excl, [(10, 25), (30, 40)]);
        let mut got = Vec::new();
        subtract(0, 50, &excl, |a, b| got.push((a, b)));
        assert_eq!(got, [(0, 10), (25, 30), (40, 50)]);
        got.clear();
        subtract(12, 24, &excl, |a, b| got.push((a, b)));
        assert!(got.is_empty());
    }
}
