//! Per-thread recording state and the hot path of every hook.
//!
//! Each thread gets a [`ThreadState`] (allocated from the private heap, pointed to from
//! initial-exec TLS) holding its event buffer, unwinder cache and scratch frames. A
//! thread's state has a spin lock, uncontended except when another thread flushes all
//! buffers (process exit, exec) or when a thread records through the shared *late*
//! state (after its own state was torn down at thread exit, e.g. from TLS destructors).

use crate::modules::{self, Cache};
use crate::output::{self, CHUNK_RAW, DISABLED};
use crate::{config::MAX_DEPTH_LIMIT, stacks, tls};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use memlens_trace::{AllocFunc, ChunkBuilder, ChunkKind};

extern crate alloc;

/// Set once the recorder is initialised; hooks pass through before that.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);
pub static MAX_DEPTH: AtomicU32 = AtomicU32::new(64);
pub static RSS_INTERVAL_NS: AtomicU64 = AtomicU64::new(10_000_000);
static NEXT_RSS_TS: AtomicU64 = AtomicU64::new(0);
static NEXT_THREAD_INDEX: AtomicU32 = AtomicU32::new(0);
/// Monotonic clock at trace start, ns.
pub static START_NS: AtomicU64 = AtomicU64::new(0);
/// Thread index of the shared state used by threads past their own state's teardown.
pub const LATE_THREAD: u32 = u32::MAX - 1;

pub struct ThreadState {
    lock: AtomicBool,
    index: u32,
    events: ChunkBuilder<Box<[u8]>>,
    out: Vec<u8>,
    cache: Cache,
    frames: [u64; MAX_DEPTH_LIMIT],
    stack_hi: u64,
}

/// Every live thread state, for flushing at exit/exec and for fork.
pub static REGISTRY: spin::Mutex<Vec<usize>> = spin::Mutex::new(Vec::new());
static LATE: spin::Mutex<Option<Box<ThreadState>>> = spin::Mutex::new(None);
static mut KEY: libc::pthread_key_t = 0;

#[inline]
pub fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills t (vDSO, no syscall, no allocation).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
        .saturating_sub(START_NS.load(Ordering::Relaxed))
}

fn stack_top() -> u64 {
    // SAFETY: pthread_getattr_np initialises attr (it may call malloc: we are busy, so
    // that passes through); attr is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return 0;
        }
        let mut addr: *mut libc::c_void = core::ptr::null_mut();
        let mut size: usize = 0;
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            return 0;
        }
        addr as u64 + size as u64
    }
}

impl ThreadState {
    fn new(index: u32) -> Box<ThreadState> {
        Box::new(ThreadState {
            lock: AtomicBool::new(false),
            index,
            events: ChunkBuilder::new(alloc::vec![0u8; CHUNK_RAW].into_boxed_slice()),
            out: Vec::new(),
            cache: Cache::new_in(),
            frames: [0; MAX_DEPTH_LIMIT],
            stack_hi: if index == LATE_THREAD { 0 } else { stack_top() },
        })
    }

    #[inline]
    fn lock(&self) {
        while self.lock.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }
    #[inline]
    fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }

    /// Compress and write the buffered events. Caller holds the state's lock.
    fn flush_locked(&mut self) {
        // Definitions first, so that a trace cut short right after this chunk still
        // defines the stacks it uses.
        output::META.lock().flush();
        output::write_chunk(ChunkKind::Events, self.index, &self.events, &mut self.out);
        self.events.clear();
    }

    pub fn flush(&mut self) {
        self.lock();
        self.flush_locked();
        self.unlock();
    }
}

/// Thread-exit destructor: flush and free the state; later events of this thread go
/// through the shared late state.
unsafe extern "C" fn thread_exit(p: *mut libc::c_void) {
    let Some(_g) = tls::BusyGuard::enter() else {
        return;
    };
    let t = tls::get();
    if t.state as *mut libc::c_void != p || p.is_null() {
        return;
    }
    t.exiting = 1;
    t.state = core::ptr::null_mut();
    REGISTRY.lock().retain(|&s| s != p as usize);
    // SAFETY: p was produced by Box::into_raw in `state_for` and is no longer reachable
    // from TLS or the registry.
    let mut st = Box::from_raw(p as *mut ThreadState);
    st.flush();
}

pub fn init_key() {
    // SAFETY: KEY is written once here, before any hook is active.
    unsafe { libc::pthread_key_create(core::ptr::addr_of_mut!(KEY), Some(thread_exit)) };
}

/// This thread's state, created on first use. `None` for threads past teardown.
#[inline]
fn state_for(t: &mut tls::Tls, ts: u64) -> Option<&'static mut ThreadState> {
    if !t.state.is_null() {
        // SAFETY: t.state is this thread's live state (cleared before it is freed).
        return Some(unsafe { &mut *t.state });
    }
    if t.exiting != 0 {
        return None;
    }
    create_state(t, ts)
}

#[cold]
fn create_state(t: &mut tls::Tls, ts: u64) -> Option<&'static mut ThreadState> {
    let index = NEXT_THREAD_INDEX.fetch_add(1, Ordering::Relaxed);
    let p = Box::into_raw(ThreadState::new(index));
    t.state = p;
    REGISTRY.lock().push(p as usize);
    // SAFETY: KEY was created in init; setspecific may allocate (we are busy).
    unsafe { libc::pthread_setspecific(KEY, p as *const libc::c_void) };
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let len = name.iter().position(|&c| c == 0).unwrap_or(16);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    output::thread_record(ts, index, tid, &name[..len]);
    // SAFETY: p is live and owned by this thread.
    Some(unsafe { &mut *p })
}

/// Where the hooked function was called from: its return address and the caller's stack
/// and frame pointers just after the call returns.
#[derive(Clone, Copy)]
pub struct Caller {
    pub ret: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Read the caller of the current function from its frame pointer. Every function of this
/// crate keeps frame pointers (`.cargo/config.toml`), and hooks are `extern "C"` entry
/// points, so `rbp` is the hook's own frame.
#[macro_export]
macro_rules! caller {
    () => {{
        let rbp: u64;
        // SAFETY: reads the frame pointer register only.
        unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
        // SAFETY: with frame pointers, [rbp] is the saved caller rbp and [rbp+8] the return
        // address, both in this function's own frame.
        unsafe {
            $crate::thread::Caller {
                ret: core::ptr::read((rbp + 8) as *const u64),
                sp: rbp + 16,
                bp: core::ptr::read(rbp as *const u64),
            }
        }
    }};
}

/// What happened, for [`record`].
#[derive(Clone, Copy)]
pub enum Op {
    Alloc { addr: u64, size: u64 },
    Free { addr: u64 },
    Realloc { old: u64, new: u64, size: u64 },
}

/// Record one event. Called after the real allocation (so its timestamp follows it) and
/// before the real release (so a reuse of the address by another thread comes later).
#[inline]
pub fn record(func: AllocFunc, op: Op, caller: Caller) {
    if !ACTIVE.load(Ordering::Relaxed) || DISABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut g) = tls::BusyGuard::enter() else {
        return;
    };
    let t = g.tls();
    let ts0 = now_ns();
    match state_for(t, ts0) {
        Some(st) => {
            st.lock();
            record_into(st, func, op, caller, ts0);
            st.unlock();
        }
        None => {
            let mut late = LATE.lock();
            let st = late.get_or_insert_with(|| ThreadState::new(LATE_THREAD));
            record_into(st, func, op, caller, now_ns());
        }
    }
    maybe_sample_rss(ts0);
}

#[inline]
fn record_into(st: &mut ThreadState, func: AllocFunc, op: Op, caller: Caller, ts: u64) {
    let stack = match op {
        Op::Free { .. } => 0,
        _ => capture(st, caller, ts),
    };
    let write = |b: &mut ChunkBuilder<Box<[u8]>>| match op {
        Op::Alloc { addr, size } => b.alloc(ts, func, addr, size, stack),
        Op::Free { addr } => b.free(ts, func, addr, stack),
        Op::Realloc { old, new, size } => b.realloc(ts, func, old, new, size, stack),
    };
    if write(&mut st.events).is_err() {
        st.flush_locked();
        if write(&mut st.events).is_err() {
            output::DROPPED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[inline]
fn capture(st: &mut ThreadState, caller: Caller, ts: u64) -> u32 {
    let Some(mut snap) = modules::current() else {
        return 0;
    };
    let depth = (MAX_DEPTH.load(Ordering::Relaxed) as usize).min(MAX_DEPTH_LIMIT);
    let mut n = snap.unwind(
        caller.ret,
        caller.sp,
        caller.bp,
        st.stack_hi,
        &mut st.cache,
        &mut st.frames[..depth],
    );
    // A frame outside every known module: a library was loaded behind our back.
    if !snap.contains(st.frames[n - 1]) && modules::refresh_if_changed(ts) {
        if let Some(s) = modules::current() {
            snap = s;
            n = snap.unwind(
                caller.ret,
                caller.sp,
                caller.bp,
                st.stack_hi,
                &mut st.cache,
                &mut st.frames[..depth],
            );
        }
    }
    stacks::id_for(&st.frames[..n], snap)
}

/// Sample RSS if the interval has passed; one thread wins each interval.
fn maybe_sample_rss(ts: u64) {
    let interval = RSS_INTERVAL_NS.load(Ordering::Relaxed);
    let next = NEXT_RSS_TS.load(Ordering::Relaxed);
    if interval == 0 || ts < next {
        return;
    }
    if NEXT_RSS_TS
        .compare_exchange(next, ts + interval, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let Some(rss) = read_rss() else { return };
    let t = tls::get();
    if let Some(st) = (!t.state.is_null()).then(|| unsafe { &mut *t.state }) {
        st.lock();
        if st.events.rss(ts, rss).is_err() {
            st.flush_locked();
            let _ = st.events.rss(ts, rss);
        }
        st.unlock();
    }
}

/// Resident set size from /proc/self/statm (second field, in pages).
pub fn read_rss() -> Option<u64> {
    let mut buf = [0u8; 128];
    // SAFETY: plain open/read/close on a NUL-terminated path into a local buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    let mut fields = buf[..n as usize].split(|&c| c == b' ');
    fields.next()?;
    let pages: u64 = core::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64)
}

/// Flush every thread's buffer (process exit, exec). Caller is busy.
pub fn flush_all() {
    let reg = REGISTRY.lock();
    for &p in reg.iter() {
        // SAFETY: registry entries are live states (removed before being freed, under
        // this lock).
        unsafe { (*(p as *mut ThreadState)).flush() };
    }
    drop(reg);
    if let Some(st) = LATE.lock().as_mut() {
        st.flush_locked();
    }
    output::META.lock().flush();
}

pub fn lock_late_for_fork() {
    core::mem::forget(LATE.lock());
}

/// # Safety
/// Only after `lock_late_for_fork` on this thread.
pub unsafe fn unlock_late_after_fork() {
    LATE.force_unlock();
}

/// In a forked child: keep only the calling thread's state, with an empty buffer (its
/// contents were the parent's events). States of threads that do not exist in the child
/// are abandoned (their memory is small and their locks may be held).
pub fn after_fork_child(ts: u64) {
    let t = tls::get();
    let mine = t.state as usize;
    let mut reg = REGISTRY.lock();
    reg.clear();
    if mine != 0 {
        reg.push(mine);
        // SAFETY: our own live state; no other thread exists.
        let st = unsafe { &mut *t.state };
        st.events.clear();
        st.unlock();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        output::thread_record(ts, st.index, tid, b"");
    }
    drop(reg);
    *LATE.lock() = None;
}
