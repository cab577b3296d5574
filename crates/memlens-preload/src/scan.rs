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

use crate::{live, own_memory, sys, tls};
extern crate alloc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use memlens_trace::{
    BlockLink, BlockState, ChunkBuilder, ChunkKind, ExitKind, Heuristic, RootKind,
};

/// Registers and stack pointer of the exiting thread at the point the program ended.
#[derive(Clone, Copy, Default)]
pub struct Context {
    /// The stack from here up is live (0: unknown, use the scanning frame's).
    pub sp: u64,
    pub regs: [u64; 16],
    pub nregs: usize,
    /// Include the 128-byte red zone below `sp` (a signal interrupted the thread).
    pub red_zone: bool,
}

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
/// Per parked thread: tid, sp, 16 registers (x86_64 gregs order up to RSP).
static mut PARKED_STATE: [[u64; 18]; MAX_THREADS] = [[0; 18]; MAX_THREADS];
static NEVER: AtomicU32 = AtomicU32::new(0);

fn stop_signal() -> i32 {
    libc::SIGRTMAX() - 2
}

/// Park this thread for good (the process is exiting), after publishing its registers.
pub fn park(gregs: Option<&[i64; 23]>) -> ! {
    let i = PARKED.fetch_add(1, Ordering::AcqRel);
    if i < MAX_THREADS {
        let mut s = [0u64; 18];
        s[0] = sys::gettid() as u64;
        match gregs {
            Some(g) => {
                s[1] = g[libc::REG_RSP as usize] as u64;
                for r in 0..16 {
                    s[2 + r] = g[r] as u64;
                }
            }
            None => s[1] = sys::current_sp(),
        }
        // SAFETY: slot i was claimed by the fetch_add above; only this thread writes it
        // and the scanner reads it after PARKED_DONE says it is complete.
        unsafe { (*core::ptr::addr_of_mut!(PARKED_STATE))[i] = s };
    }
    PARKED_DONE.fetch_add(1, Ordering::AcqRel);
    futex_wake(&PARKED_DONE);
    loop {
        futex_wait(&NEVER, 0, None);
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
    let t = tls::get();
    if t.busy != 0 || t.live_shard != 0 {
        // Inside the recorder, holding its locks: park on the way out instead.
        return;
    }
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    park(Some(&uc.uc_mcontext.gregs))
}

fn futex_wait(word: &AtomicU32, val: u32, timeout_ns: Option<u64>) {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    });
    let tp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: futex on a valid aligned u32; a spurious return is handled by callers.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            tp,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: futex wake on a valid aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: fills ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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

/// The stack pointer of a thread blocked in a system call, from
/// /proc/self/task/TID/syscall ("nr a1 .. a6 sp pc"); `None` if it is running.
fn blocked_sp(tid: u32) -> Option<u64> {
    let mut buf = [0u8; 256];
    let fields: Vec<&[u8]> = read_task_file(tid, b"syscall", &mut buf)?
        .split(|&c| c == b' ' || c == b'\n')
        .filter(|f| !f.is_empty())
        .collect();
    if fields.len() < 9 {
        return None;
    }
    sys::parse_hex(fields[7].strip_prefix(b"0x")?)
}

/// Whether thread `tid` blocks signal `sig` (the SigBlk mask of its /proc status).
fn blocks_signal(tid: u32, sig: i32) -> bool {
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
fn stop_threads() -> (usize, Vec<(u32, u64)>) {
    let me = sys::gettid();
    SCANNER_TID.store(me, Ordering::Relaxed);
    STOPPING.store(true, Ordering::SeqCst);
    let sampler = crate::thread::SAMPLER_TID.load(Ordering::Relaxed);
    let others: Vec<u32> = thread_ids()
        .into_iter()
        .filter(|&t| t != me && t != sampler)
        .collect();
    if others.is_empty() {
        return (0, Vec::new());
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
    let mut sent = Vec::new();
    let mut blocking = Vec::new();
    for &tid in &others {
        if blocks_signal(tid, stop_signal()) {
            blocking.push(tid);
            continue;
        }
        // SAFETY: tgkill to a thread of our own process.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, stop_signal()) } == 0 {
            sent.push(tid);
        }
    }
    // Wait up to 500 ms for them to park (only a thread that blocks the signal takes
    // that long: it is then read as it stands).
    let deadline = monotonic_ns() + 500_000_000;
    loop {
        let done = PARKED_DONE.load(Ordering::Acquire);
        if done as usize >= sent.len() {
            break;
        }
        let now = monotonic_ns();
        if now >= deadline {
            break;
        }
        futex_wait(&PARKED_DONE, done, Some((deadline - now).min(10_000_000)));
    }
    let parked = PARKED_DONE.load(Ordering::Acquire) as usize;
    // SAFETY: the first `parked` slots are complete (PARKED_DONE counts finished ones;
    // a slot claimed but not finished is excluded by taking min with done).
    let state = unsafe { &*core::ptr::addr_of!(PARKED_STATE) };
    let parked_tids: Vec<u32> = state[..parked.min(MAX_THREADS)]
        .iter()
        .map(|s| s[0] as u32)
        .collect();
    let unstoppable = sent
        .iter()
        .chain(blocking.iter())
        .filter(|t| !parked_tids.contains(t))
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
}

impl Marker<'_> {
    fn map_of(&self, a: u64) -> Option<&Map> {
        let i = self.maps.partition_point(|m| m.start <= a);
        (i > 0 && a < self.maps[i - 1].end).then(|| &self.maps[i - 1])
    }

    /// memcheck's aligned_ptr_above_page0_is_vtable_addr: in a readable file mapping,
    /// and one of its first entries points into executable file-backed code.
    fn looks_like_vtable(&self, p: u64) -> bool {
        if p < 4096 || !p.is_multiple_of(8) {
            return false;
        }
        let Some(m) = self.map_of(p) else {
            return false;
        };
        if !m.file {
            return false;
        }
        for k in 0..20u64 {
            let a = p + k * 8;
            if a + 8 > m.end {
                break;
            }
            // SAFETY: a..a+8 lies inside a readable mapping.
            let pc = unsafe { core::ptr::read(a as *const u64) };
            if let Some(t) = self.map_of(pc) {
                if t.exec && t.file {
                    return true;
                }
            }
        }
        false
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
    fn heuristic(&self, w: u64, b: usize) -> Option<Heuristic> {
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

    fn scan_range(&mut self, lo: u64, hi: u64, root: u32) {
        let mut a = (lo + 7) & !7;
        while a + 8 <= hi {
            // SAFETY: root ranges lie in readable mappings (checked by the caller).
            let w = unsafe { core::ptr::read(a as *const u64) };
            if w >= self.heap.min && w < self.heap.max {
                self.reach(
                    w,
                    ROOT_LINK | (root as u64) << 48 | (a & 0xFFFF_FFFF_FFFF),
                    None,
                );
            }
            a += 8;
        }
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
fn is_arena_heap(start: u64, end: u64) -> bool {
    if !start.is_multiple_of(HEAP_MAX) || end - start < 64 {
        return false;
    }
    // SAFETY: the mapping is readable and at least 64 bytes long.
    let w = |i: u64| unsafe { core::ptr::read((start + 8 * i) as *const u64) };
    let (ar, prev, size, mprot) = (w(0), w(1), w(2), w(3));
    ar != 0
        && ar.is_multiple_of(8)
        && prev.is_multiple_of(HEAP_MAX)
        && size <= HEAP_MAX
        && (size == end - start || mprot == end - start)
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

// ---- the scan ----

/// Run the scan and write its records. Called once, at exit, by the exiting thread,
/// not busy (freeres must be recorded), with the trace still open.
pub fn run(trigger: ExitKind, code: i32, ctx: &Context) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let (stopped, unstoppable) = stop_threads();
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
    let me_path = self_module_path();
    let mut maps: Vec<Map> = Vec::new();
    let mut rw: Vec<(u64, u64, bool, bool, Vec<u8>)> = Vec::new(); // start, end, file, shared, name
    let mut excl: Vec<(u64, u64)> = Vec::new();
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
        if !(m.read && m.write) {
            return true;
        }
        let ours = !me_path.is_empty() && m.name == &me_path[..];
        let special = m.name.starts_with(b"[v") || m.name == b"[heap]";
        let dev = m.name.starts_with(b"/dev/") && !m.name.starts_with(b"/dev/shm/");
        if ours || special || dev || (m.name.is_empty() && is_arena_heap(m.start, m.end)) {
            return true;
        }
        rw.push((m.start, m.end, file, m.shared, m.name.to_vec()));
        true
    });
    own_memory::for_each(|s, e| excl.push((s, e)));
    // Blocks outside readable memory (a stale table entry) are not read; mmapped chunks
    // of live blocks are heap, not roots.
    for (i, b) in heap.blocks.iter().enumerate() {
        let (start, end) = (b.0, end_of(b));
        let mi = maps.partition_point(|m| m.start <= b.0);
        let ok = mi > 0 && start >= maps[mi - 1].start + 16 && end <= maps[mi - 1].end;
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
    let mut stacks: Vec<(u32, u64, bool)> = alloc::vec![(sys::gettid(), my_sp, ctx.red_zone)];
    reg_roots.push((sys::gettid(), ctx.regs[..ctx.nregs].to_vec()));
    // SAFETY: the first `stopped` slots were completed by parked threads.
    let parked = unsafe { &*core::ptr::addr_of!(PARKED_STATE) };
    for s in parked[..stopped.min(MAX_THREADS)].iter() {
        stacks.push((s[0] as u32, s[1], true));
        reg_roots.push((s[0] as u32, s[2..18].to_vec()));
    }
    for &(tid, sp) in &unstoppable {
        if sp != 0 {
            stacks.push((tid, sp, true));
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
    for &(tid, sp, red) in stacks.iter().filter(|_| !whole) {
        if let Some(r) = rw.iter().find(|r| sp >= r.0 && sp < r.1) {
            let lo = if red {
                sp.saturating_sub(128).max(r.0)
            } else {
                sp
            };
            // A thread's stack mapping is scanned from its stack pointer up, the dead
            // part below left out.
            excl.push((r.0, r.1));
            subtract(lo, r.1, &not_roots, |start, end| {
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
    let mut mk = Marker {
        heap: &heap,
        maps: &maps,
        state: alloc::vec![0u8; n],
        link: alloc::vec![0u64; n],
        queue: Vec::new(),
        heuristics: HEURISTICS.load(Ordering::Relaxed),
    };
    let mut id = 0u32;
    for r in &roots {
        mk.scan_range(r.start, r.end, id.min(0x7fff));
        mk.drain();
        id += 1;
    }
    let reg_base = id;
    for (k, (_, regs)) in reg_roots.iter().enumerate() {
        for &w in regs {
            if w >= heap.min && w < heap.max {
                let rid = (reg_base + k as u32).min(0x7fff);
                mk.reach(w, ROOT_LINK | (rid as u64) << 48, None);
            }
        }
        mk.drain();
    }
    mk.cliques();

    // Write.
    let mut out = Vec::new();
    let mut b = ChunkBuilder::new(alloc::vec![0u8; crate::output::CHUNK_RAW].into_boxed_slice());
    type Builder = ChunkBuilder<alloc::boxed::Box<[u8]>>;
    let mut put = |b: &mut Builder, f: &mut dyn FnMut(&mut Builder) -> bool| {
        if !f(b) {
            crate::output::write_chunk(ChunkKind::Scan, 0, b, &mut out);
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
        let s = mk.state[i];
        let state = match s & STATE_MASK {
            REACHABLE => BlockState::StillReachable,
            POSSIBLE => BlockState::PossiblyLost,
            _ if s & LEADER != 0 => BlockState::DefinitelyLost,
            _ => BlockState::IndirectlyLost,
        };
        let l = mk.link[i];
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
        let heur = Heuristic::from_u8((s >> HEUR_SHIFT) & 7);
        let m = live::Meta(meta);
        put(&mut b, &mut |b| {
            b.scan_block(addr, m.size(), state, heur, m.internal(), link)
                .is_ok()
        });
    }
    let now = crate::clock::now_ns();
    put(&mut b, &mut |b| b.scan_end(now, n as u64).is_ok());
    crate::output::write_chunk(ChunkKind::Scan, 0, &b, &mut out);
}
