//! Per-thread recording state and the hot path of every hook.
//!
//! Each thread gets a [`ThreadState`] (allocated from the private heap, pointed to from
//! initial-exec TLS) holding its event buffer and, once it first unwinds, its unwinding
//! state ([`Unwinding`]: framehop cache, unwind records, memo). A
//! thread's state has a spin lock, uncontended except when another thread flushes all
//! buffers (process exit, exec) or the reaper flushes the state of a thread that ended
//! ([`reap_ended_threads`]).

use crate::modules::{self, Cache};
use crate::output::{self, CHUNK_RAW, DISABLED};
use crate::rawlog::{RawLog, RAW_EVENTS};
use crate::{config::MAX_DEPTH_LIMIT, stacks, tls};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use memlens_trace::{AllocFunc, ChunkBuilder, ChunkKind, HeapErrorKind};

extern crate alloc;

/// Set once the recorder is initialised; hooks pass through before that.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);
pub static MAX_DEPTH: AtomicU32 = AtomicU32::new(64);
/// Memoized and prefix-reused unwinds (`MEMLENS_UNWIND_CACHE=0` turns them off).
pub static UNWIND_CACHE: AtomicBool = AtomicBool::new(true);
/// Record the stack of every release (`MEMLENS_FREE_STACKS=1`), not only of heap errors.
pub static FREE_STACKS: AtomicBool = AtomicBool::new(false);
pub static RSS_INTERVAL_NS: AtomicU64 = AtomicU64::new(10_000_000);
/// `MEMLENS_FLUSH_INTERVAL_MS`: the sampler flushes every thread's buffer this often (0:
/// never; buffers are written when full).
pub static FLUSH_INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
static NEXT_THREAD_INDEX: AtomicU32 = AtomicU32::new(0);

pub struct ThreadState {
    lock: AtomicBool,
    index: u32,
    /// Allocations, releases and reallocations, as recorded: encoded by the writer
    /// (`rawlog.rs`).
    log: RawLog,
    /// Every other record, encoded here after the log's records before it (see
    /// [`ThreadState::push`]). Its buffer is allocated on first use
    /// ([`ThreadState::events_ready`]): most threads never make such a record.
    events: ChunkBuilder<Box<[u8]>>,
    /// Created on the first unwind: the RSS sampler's state never needs it, and it is
    /// the bulk of a state's memory (~280 KiB).
    unwinding: Option<Box<Unwinding>>,
    stack_lo: u64,
    stack_hi: u64,
    /// The kernel id of the thread this state records (0: none, the sampler's state),
    /// for [`reap_ended_threads`].
    tid: u32,
    /// A RealtimeThread definition was written for this thread (`api.rs`).
    realtime_announced: bool,
    /// The time of this thread's last event (`order.rs`): the next is never earlier.
    last_stamp: u64,
    /// This thread's tag in the order cells (`order::tag_of` of its index).
    order_tag: u64,
    /// The block whose release a realloc about to be made reserved, and the time
    /// ([`reserve_release`]); (0, 0) when none.
    reserved: (u64, u64),
    /// The block numbers this thread gives its allocations: the next, and the end of its
    /// range ([`ThreadState::take_serial`]).
    serial_next: u64,
    serial_end: u64,
}

/// Every live thread state, for flushing at exit/exec and for fork.
pub static REGISTRY: spin::Mutex<Vec<usize>> = spin::Mutex::new(Vec::new());

pub use crate::clock::now_ns;

/// Bounds `[lo, hi)` of the stack the current thread runs on: the mapping that holds the
/// stack pointer, read from /proc/self/maps with raw syscalls. (pthread_getattr_np cannot
/// be used here: it holds the thread's lock while it allocates, so a hook calling it from
/// inside such an allocation deadlocks.) For the main thread's growable stack, `lo` is
/// the lowest address the stack may grow to. `(0, 0)` if unknown: then only the first
/// frame of each stack is recorded.
fn stack_bounds() -> (u64, u64) {
    let sp = crate::sys::current_sp();
    let mut found = (0u64, 0u64, false);
    crate::sys::for_each_mapping(|m| {
        let (start, end, name) = (m.start, m.end, m.name);
        if start <= sp && sp < end {
            found = (start, end, name == b"[stack]");
            false
        } else {
            true
        }
    });
    let (start, end, is_main) = found;
    if end == 0 {
        return (0, 0);
    }
    if is_main {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills lim.
        unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) };
        let max = if lim.rlim_cur == libc::RLIM_INFINITY {
            1 << 30
        } else {
            lim.rlim_cur.max(8 << 20)
        };
        (end.saturating_sub(max).min(start), end)
    } else {
        (start, end)
    }
}

/// Block numbers not yet handed out, in ranges of [`SERIAL_RANGE`] (from 1: 0 is none).
/// An allocation's record numbers its block, and the block's release names the number
/// instead of the address: it costs what the order of the releases costs, not what the
/// address does (docs/TRACE_FORMAT.md, format 7).
static SERIALS: AtomicU64 = AtomicU64::new(1);
/// The first number of the current trace: a block numbered before (in a forked child, its
/// parent's; before an earlier attach) is released by address.
static TRACE_FIRST_SERIAL: AtomicU64 = AtomicU64::new(1);
/// Numbers a thread takes at once.
const SERIAL_RANGE: u64 = 4096;

/// A new trace (a forked child's, another attach): the numbers from here on are its own.
/// Each registered state then forgets its range ([`ThreadState::forget_serials`]).
fn serials_start_trace() {
    TRACE_FIRST_SERIAL.store(SERIALS.load(Ordering::Relaxed), Ordering::Relaxed);
}

impl ThreadState {
    fn new(index: u32) -> Box<ThreadState> {
        let (stack_lo, stack_hi) = stack_bounds();
        Box::new(ThreadState {
            lock: AtomicBool::new(false),
            index,
            log: RawLog::new(RAW_EVENTS),
            events: ChunkBuilder::new(Box::default()).with_time_shift(crate::order::TIME_SHIFT),
            unwinding: None,
            stack_lo,
            stack_hi,
            tid: 0,
            realtime_announced: false,
            last_stamp: 0,
            order_tag: crate::order::tag_of(index),
            reserved: (0, 0),
            serial_next: 0,
            serial_end: 0,
        })
    }

    /// A new trace began: take a new range of numbers before the next allocation.
    fn forget_serials(&mut self) {
        self.serial_next = 0;
        self.serial_end = 0;
    }

    /// The number of the block this thread's next allocation record makes (0 once the
    /// numbers run out, after 2^38 allocations).
    #[inline(always)]
    fn take_serial(&mut self) -> u64 {
        if self.serial_next == self.serial_end {
            let base = SERIALS.fetch_add(SERIAL_RANGE, Ordering::Relaxed);
            if base + SERIAL_RANGE > 1 << crate::live::SERIAL_BITS {
                return 0;
            }
            self.serial_next = base;
            self.serial_end = base + SERIAL_RANGE;
        }
        let s = self.serial_next;
        self.serial_next += 1;
        s
    }

    /// The time of this thread's event made now (`now_ns`) on the blocks at `addrs` (0:
    /// none), in the trace's unit: ordered after every other thread's event on those
    /// blocks that happened before it, and after this thread's previous one
    /// (`order.rs`).
    #[inline(always)]
    fn stamp(&mut self, now_ns: u64, [addr, other]: [u64; 2]) -> u64 {
        let t = crate::order::stamp(now_ns, self.last_stamp, self.order_tag, addr, other);
        self.last_stamp = t;
        t
    }

    /// [`ThreadState::stamp`] for a moving realloc whose release was reserved at
    /// `reserved` (`order::stamp_moved`).
    #[cold]
    fn stamp_moved(
        &mut self,
        now_ns: u64,
        old: u64,
        new: u64,
        reserved: u64,
    ) -> Result<u64, (u64, u64)> {
        let r =
            crate::order::stamp_moved(now_ns, self.last_stamp, self.order_tag, old, new, reserved);
        self.last_stamp = match r {
            Ok(t) | Err((_, t)) => t,
        };
        r
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

    /// Hand the buffered events to the writer (see `writer.rs`): the records built
    /// here, then the log's, which came after them, for the writer to encode; or, when
    /// it is behind, encoded here. Caller holds the state's lock.
    fn flush_locked(&mut self) {
        if !self.events.is_empty() {
            self.submit_events();
        }
        if self.log.is_empty() {
            return;
        }
        // Definitions first, as for a chunk built here.
        output::META.lock().flush();
        if !crate::writer::queue_log(self.index, &mut self.log) {
            self.settle();
            self.submit_events();
        }
    }

    /// Hand the records built here to the writer. Caller holds the state's lock.
    fn submit_events(&mut self) -> bool {
        // Definitions first, so that a trace cut short right after this chunk still
        // defines the stacks it uses.
        output::META.lock().flush();
        crate::writer::submit(ChunkKind::Events, self.index, &mut self.events)
    }

    /// Whether nothing is buffered.
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.log.is_empty()
    }

    /// Encode the log's records here, before a record that does not go through the log
    /// ([`ThreadState::push`]). Caller holds the state's lock.
    #[cold]
    fn settle(&mut self) {
        self.events_ready();
        let mut next = 0;
        while !self.log.encode(&mut next, &mut self.events) {
            if !self.submit_events() || !self.events.is_empty() {
                // Not this process's trace (a vfork child): the rest is lost.
                let lost = self.log.records_from(next);
                output::DROPPED_EVENTS.fetch_add(lost, Ordering::Relaxed);
                break;
            }
        }
        self.log.clear();
    }

    /// Give the records built here their buffer, on first use: an empty builder holds
    /// none (a thread's 64 KiB for records that most threads never make).
    #[inline]
    fn events_ready(&mut self) {
        if self.events.capacity() == 0 {
            self.events = ChunkBuilder::new(alloc::vec![0u8; CHUNK_RAW].into_boxed_slice())
                .with_time_shift(crate::order::TIME_SHIFT);
        }
    }

    /// Append one allocation, release or reallocation to the log with `write`; when the
    /// log is full, hand it to the writer and try once more; count the record as
    /// dropped if it still does not fit. True when it was appended (it is then the log's
    /// last). Caller holds the lock.
    #[inline(always)]
    fn log(&mut self, write: impl Fn(&mut RawLog) -> bool) -> bool {
        if write(&mut self.log) {
            return true;
        }
        self.flush_locked();
        if !write(&mut self.log) {
            output::DROPPED_EVENTS.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn flush(&mut self) {
        self.lock();
        self.flush_locked();
        self.unlock();
    }

    /// Append one record that does not go through the log with `write`, after the
    /// log's; when the buffer is full, flush it and try once more; count the record as
    /// dropped if it still does not fit. Caller holds the lock.
    #[inline]
    fn push(
        &mut self,
        write: impl Fn(&mut ChunkBuilder<Box<[u8]>>) -> Result<(), memlens_trace::WriteError>,
    ) {
        if !self.log.is_empty() {
            self.settle();
        }
        self.events_ready();
        if write(&mut self.events).is_ok() {
            return;
        }
        self.flush_locked();
        if write(&mut self.events).is_err() {
            output::DROPPED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A thread's unwinding state.
pub struct Unwinding {
    cache: Cache,
    /// This unwind and the previous one, alternating (`cur` is the next to fill).
    records: [Box<modules::UnwindRecord>; 2],
    cur: usize,
    memo: MemoTable,
    /// Python frames (a CPython process only): this stack's walk, the thread's code ids
    /// and the merged stack.
    python: Option<Box<PythonFrames>>,
}

/// A stack with Python frames merged in (see `python::merge`).
pub struct MergeBuf {
    pub n: usize,
    pub frames: [u64; MAX_DEPTH_LIMIT],
}

struct PythonFrames {
    walk: Box<crate::python::Walk>,
    codes: Box<crate::python::CodeCache>,
    merged: Box<MergeBuf>,
}

impl Unwinding {
    fn new() -> Box<Unwinding> {
        Box::new(Unwinding {
            cache: Cache::new_in(),
            records: [
                modules::UnwindRecord::boxed(),
                modules::UnwindRecord::boxed(),
            ],
            cur: 0,
            memo: MemoTable::new(),
            python: None,
        })
    }

    /// Forget memoized unwinds (a forked child numbers its stacks anew).
    fn forget(&mut self) {
        self.memo.forget();
        for u in self.records.iter_mut() {
            u.invalidate();
        }
    }
}

/// Threads end without telling the recorder: it takes no pthread key and registers no
/// destructor (a key is the program's to run out of, and registering a thread-exit
/// destructor takes ld.so's lock inside malloc). Instead, a registered state whose thread
/// no longer exists (`tgkill(pid, tid, 0)` answers ESRCH once the thread has gone through
/// its exit, after the last hook it could run) is flushed and freed here. A tid the
/// kernel already gave to a new thread keeps its old state alive, harmlessly, until exit.
/// Called by the RSS sampler every 100 ms and by a new thread when many states exist.
pub fn reap_ended_threads() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let me = crate::sys::gettid();
    let sampler = SAMPLER_TID.load(Ordering::Relaxed);
    // The registry stays locked until the ended states are flushed: a process that
    // exits meanwhile flushes the registry's states (`flush_all`) after these, instead
    // of missing states taken out of it and not yet written (their events were lost).
    let mut reg = REGISTRY.lock();
    let mut ended: Vec<usize> = Vec::new();
    reg.retain(|&p| {
        // SAFETY: registry entries are live states (removed, under this lock, before
        // they are freed).
        let tid = unsafe { (*(p as *const ThreadState)).tid };
        if tid == 0 || tid == me || tid == sampler {
            return true;
        }
        // SAFETY: signal 0 to a thread of our own process only checks it exists.
        let gone = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) } != 0
            // SAFETY: reading this thread's errno right after the call.
            && unsafe { *libc::__errno_location() } == libc::ESRCH;
        if gone {
            ended.push(p);
        }
        !gone
    });
    for p in ended {
        // SAFETY: p came from Box::into_raw in `create_state` and was just taken out of
        // the registry; its thread is gone, so nothing else can reach it.
        let mut st = unsafe { Box::from_raw(p as *mut ThreadState) };
        st.flush();
    }
    drop(reg);
}

/// The sampler reaps ended threads every this many samples (100 ms by default).
const REAP_EVERY_SAMPLES: u64 = 10;

/// New threads reap ended ones only when many states exist, and then once in 32.
const REAP_AFTER_STATES: usize = 128;

/// This thread's state, created on first use: live until the thread is gone (only the
/// reaper frees it, then). Other threads touch it only under its lock.
#[inline]
fn state_for(t: tls::Here, ts: u64) -> *mut ThreadState {
    let p = t.state();
    if !p.is_null() {
        return p;
    }
    create_state(t, ts)
}

#[cold]
fn create_state(t: tls::Here, ts: u64) -> *mut ThreadState {
    let index = NEXT_THREAD_INDEX.fetch_add(1, Ordering::Relaxed);
    let p = Box::into_raw(ThreadState::new(index));
    t.set_state(p);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    // SAFETY: p is live and owned by this thread; not yet shared.
    unsafe { (*p).tid = tid };
    let states = {
        let mut reg = REGISTRY.lock();
        reg.push(p as usize);
        reg.len()
    };
    if states > REAP_AFTER_STATES && index.is_multiple_of(32) {
        reap_ended_threads();
    }
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let len = name.iter().position(|&c| c == 0).unwrap_or(16);
    output::thread_record(ts, index, tid, &name[..len]);
    p
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

impl Op {
    /// The blocks the event changes, the first non-zero unless there is none (a heap
    /// error changes none; `realloc(NULL, n)` only its new block, `realloc(p, 0)` only p).
    #[inline(always)]
    fn addresses(&self) -> [u64; 2] {
        match *self {
            Op::Alloc { addr, .. } | Op::Free { addr, .. } => [addr, 0],
            Op::Realloc { old: 0, new, .. } => [new, 0],
            Op::Realloc { old, new, .. } => [old, new],
            Op::Error { .. } => [0, 0],
        }
    }
}

/// What happened, for [`record`].
#[derive(Clone, Copy)]
pub enum Op {
    Alloc {
        addr: u64,
        size: u64,
    },
    /// `serial`: the block's number, from the table (0: none).
    Free {
        addr: u64,
        serial: u64,
    },
    /// `serial`: the old block's number, from the table (0: none).
    Realloc {
        old: u64,
        new: u64,
        size: u64,
        serial: u64,
    },
    /// A heap error at `addr`; `alloc_func` is the block's allocating function for a
    /// mismatch.
    Error {
        kind: HeapErrorKind,
        addr: u64,
        alloc_func: AllocFunc,
    },
}

/// Whether the recording still runs, asked again with `st`'s lock held; unlocks it when
/// not. An attached recording ends (`lifecycle::finish_detached`) by turning `ACTIVE`
/// off and then flushing every thread's buffer under its lock: a thread that passed the
/// first test just before is either still holding its lock then (its record is
/// flushed), or takes it after and sees `ACTIVE` off here (the lock orders the two), so
/// nothing is written into a trace that has ended, however long the thread was
/// descheduled in between.
#[inline(always)]
fn still_active(st: &ThreadState) -> bool {
    if ACTIVE.load(Ordering::Relaxed) {
        return true;
    }
    st.unlock();
    false
}

/// Record one event. Called after the real allocation (so its timestamp follows it) and
/// before the real release (so a reuse of the address by another thread comes later).
#[inline]
pub fn record(func: AllocFunc, op: Op, caller: Caller) {
    record_then(func, op, caller, |_| {});
}

/// [`record`], then run `then` before leaving the recorder, with the thread's buffer
/// still held: a stop for the exit scan or a fatal signal that arrived meanwhile is
/// handled after it. `then` is given the number the record gave the new block (0:
/// none), which its table entry keeps. False, without running `then`, when nothing was
/// recorded (not started, disabled, or re-entered).
#[inline]
pub fn record_then(func: AllocFunc, op: Op, caller: Caller, then: impl FnOnce(u64)) -> bool {
    let Some((busy, st, now)) = begin_record() else {
        return false;
    };
    let serial = match op {
        Op::Alloc { .. } | Op::Realloc { new: 1.., .. } => st.take_serial(),
        _ => 0,
    };
    match op {
        Op::Realloc {
            old,
            new,
            size,
            serial: old_serial,
        } if st.reserved.0 != 0 => {
            record_reserved_realloc(st, func, old, new, size, [old_serial, serial], caller, now)
        }
        _ => {
            let ts = st.stamp(now, op.addresses());
            record_into(st, func, op, serial, caller, ts)
        }
    }
    then(serial);
    let in_flight = match op {
        Op::Alloc { addr, .. } => addr,
        Op::Realloc { new, .. } => new,
        _ => 0,
    };
    end_record(busy, st, caller, in_flight);
    true
}

/// The start of a recording: the recorder runs and this thread is not inside it
/// already; the thread's state, locked, and the time now. `None` when nothing is to be
/// recorded (not started, disabled, re-entered, or the recording ended meanwhile).
#[inline(always)]
fn begin_record() -> Option<(tls::BusyGuard, &'static mut ThreadState, u64)> {
    if !ACTIVE.load(Ordering::Relaxed) && !crate::lifecycle::init_early() {
        return None;
    }
    if DISABLED.load(Ordering::Relaxed) {
        return None;
    }
    let busy = tls::BusyGuard::enter()?;
    let now = now_ns();
    // SAFETY: this thread's live state (see state_for), which lives until the thread is
    // gone; used here only while the thread is busy, so by one code path of this thread
    // at a time; other threads take its lock.
    let st = unsafe { &mut *state_for(busy.here(), now) };
    st.lock();
    if !still_active(st) {
        return None;
    }
    Some((busy, st, now))
}

/// The end of a recording begun by [`begin_record`]: the state unlocked, then the busy
/// section left. A fatal signal that arrived meanwhile is handled as the guard drops: it
/// scans from the caller's frames, with `in_flight` (the block being returned, 0: none)
/// as a register.
#[inline(always)]
fn end_record(busy: tls::BusyGuard, st: &mut ThreadState, caller: Caller, in_flight: u64) {
    st.unlock();
    let here = busy.here();
    here.set_leaving(caller.sp, in_flight);
    drop(busy);
    here.set_leaving(0, 0);
    if crate::python::take_work_done() {
        crate::lifecycle::python_work_done();
    }
}

/// A release of the block at `addr` through `func`, recorded before `remove` runs: the
/// live table's lookup (`live::remove`), usually a cache miss, then overlaps the
/// record's own work instead of coming before it. `remove` runs with the thread's buffer
/// held and answers with the number the release names (`Some`, 0: none), or `None`
/// when the release is not to be recorded (a heap error, which the caller records with
/// its release after; a block made on the recorder's behalf), and the record is taken
/// back. When nothing is recorded (not started, disabled, re-entered) `remove` does not
/// run, and the caller takes the block out of the table itself.
#[inline]
pub fn record_release(
    func: AllocFunc,
    addr: u64,
    caller: Caller,
    remove: impl FnOnce() -> Option<u64>,
) {
    let Some((busy, st, now)) = begin_record() else {
        return;
    };
    let ts = st.stamp(now, [addr, 0]);
    let stack = release_stack(st, caller, ts);
    let logged = st.log(|l| l.free(ts, func, addr, stack, 0));
    let named = remove();
    if logged {
        match named {
            Some(serial) => st.log.name_last_release(in_this_trace(serial)),
            None => st.log.take_back_last(),
        }
    }
    end_record(busy, st, caller, 0);
}

/// The stack a release's record names: 0 unless release stacks are recorded.
#[inline(always)]
fn release_stack(st: &mut ThreadState, caller: Caller, ts: u64) -> u32 {
    if FREE_STACKS.load(Ordering::Relaxed) {
        return capture(st, caller, ts);
    }
    if crate::python::active() {
        crate::python::poll_finalizing();
    }
    0
}

/// A record of the program's API (`api.rs`) into this thread's buffer, so that it is
/// ordered with the thread's allocations. `caller`: capture the call's stack and hand
/// its id to `write` (0 otherwise). `realtime`: the record is a real-time mark, and the
/// thread's RealtimeThread definition is written first if it was not yet. The caller is
/// inside the busy section `busy`.
pub fn record_api(
    busy: &tls::BusyGuard,
    now: u64,
    caller: Option<Caller>,
    realtime: bool,
    write: impl Fn(&mut ChunkBuilder<Box<[u8]>>, u32, u64) -> Result<(), memlens_trace::WriteError>,
) {
    // SAFETY: this thread's live state (see state_for), used only while the thread is
    // busy (`busy`), so by one code path of this thread at a time; other threads take
    // its lock.
    let st = unsafe { &mut *state_for(busy.here(), now) };
    st.lock();
    if !still_active(st) {
        return;
    }
    // In the thread's order with its allocations (a region's bounds, a mark).
    let ts = st.stamp(now, [0, 0]);
    let stack = caller.map_or(0, |c| capture(st, c, ts));
    if realtime && !st.realtime_announced {
        // The state's lock before the definitions' lock, as `flush_locked` takes them.
        let index = st.index;
        output::META.lock().with(|b| b.realtime_thread(index));
        st.realtime_announced = true;
    }
    st.push(|b| write(b, stack, ts));
    st.unlock();
}

/// `memlens_mark`: a time that this thread's later events are at or after and its
/// earlier ones before, so that "the blocks this thread allocated since the mark" are
/// told apart even within one unit of the trace's time (the thread's clock moves on by
/// one unit).
pub fn mark_time(busy: &tls::BusyGuard) -> u64 {
    let now = now_ns();
    // SAFETY: as in `record_api`.
    let st = unsafe { &mut *state_for(busy.here(), now) };
    st.lock();
    let t = st.stamp(now, [0, 0]) + crate::order::UNIT_NS;
    st.last_stamp = t;
    st.unlock();
    t
}

/// Before a realloc that may move `addr`'s block: its release's time, stamped now on the
/// address, because glibc releases the block inside the call, where another thread may
/// get the address before the realloc's record is made (`order::stamp_moved`). The
/// thread's next realloc record uses it. Nothing when nothing is recorded (not started,
/// disabled, or re-entered).
pub fn reserve_release(addr: u64) {
    if !ACTIVE.load(Ordering::Relaxed) || DISABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(busy) = tls::BusyGuard::enter() else {
        return;
    };
    let now = now_ns();
    // SAFETY: as in `record_then`: this thread's state, while the thread is busy.
    let st = unsafe { &mut *state_for(busy.here(), now) };
    st.lock();
    if !still_active(st) {
        return;
    }
    st.reserved = (addr, st.stamp(now, [addr, 0]));
    st.unlock();
}

/// A realloc's record, its thread having reserved a release ([`reserve_release`]): when
/// the reservation is for this realloc's old block and the block moved, the record is
/// stamped by `order::stamp_moved`, and split in two if another thread may have reused
/// the old address already. The reservation is used up either way.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn record_reserved_realloc(
    st: &mut ThreadState,
    func: AllocFunc,
    old: u64,
    new: u64,
    size: u64,
    [old_serial, serial]: [u64; 2],
    caller: Caller,
    now: u64,
) {
    let (reserved_for, reserved) = core::mem::take(&mut st.reserved);
    let op = Op::Realloc {
        old,
        new,
        size,
        serial: old_serial,
    };
    if old == 0 || new == 0 || old == new || reserved_for != old {
        let ts = st.stamp(now, op.addresses());
        return record_into(st, func, op, serial, caller, ts);
    }
    match st.stamp_moved(now, old, new, reserved) {
        Ok(ts) => record_into(st, func, op, serial, caller, ts),
        Err((t_release, ts)) => {
            // Another thread may have reused the old address already: the release first,
            // at the reserved time, then the realloc as an allocation.
            let release = Op::Free {
                addr: old,
                serial: old_serial,
            };
            record_into(st, func, release, 0, caller, t_release);
            let alloc = Op::Realloc {
                old: 0,
                new,
                size,
                serial: 0,
            };
            record_into(st, func, alloc, serial, caller, ts)
        }
    }
}

/// The number a release names: the block's, if the current trace gave it.
#[inline(always)]
fn in_this_trace(serial: u64) -> u64 {
    if serial >= TRACE_FIRST_SERIAL.load(Ordering::Relaxed) {
        serial
    } else {
        0
    }
}

/// Encode `op` into the thread's buffer; `serial` numbers the block it allocates (0:
/// none).
#[inline]
fn record_into(
    st: &mut ThreadState,
    func: AllocFunc,
    op: Op,
    serial: u64,
    caller: Caller,
    ts: u64,
) {
    let stack = match op {
        Op::Free { .. } => release_stack(st, caller, ts),
        _ => capture(st, caller, ts),
    };
    match op {
        Op::Alloc { addr, size } => {
            st.log(|l| l.alloc(ts, func, addr, size, stack, serial));
        }
        Op::Free { addr, serial } => {
            let serial = in_this_trace(serial);
            st.log(|l| l.free(ts, func, addr, stack, serial));
        }
        Op::Realloc {
            old,
            new,
            size,
            serial: old_serial,
        } => {
            let serials = [in_this_trace(old_serial), serial];
            st.log(|l| l.realloc(ts, func, old, new, size, stack, serials));
        }
        Op::Error {
            kind,
            addr,
            alloc_func,
        } => st.push(|b| b.heap_error(ts, func, kind, addr, alloc_func, stack)),
    }
}

/// Memoized unwinds, per thread: start registers -> the stack words the unwind read and
/// the stack id it produced. A hit re-reads those words; if all are unchanged, the unwind
/// would produce the same frames (see `modules::UnwindRecord`), so the id is reused without
/// unwinding, hashing or probing. All the words lie at or above the same stack pointer
/// in this thread's own stack, so re-reading them is safe.
const MEMO_ENTRIES: usize = 128;
const MEMO_READS: usize = 48;

/// Merged stacks remembered per memo entry: one C path runs under many Python lines.
const MEMO_PYTHON: usize = 4;
const _: () = assert!(MEMO_READS <= u8::MAX as usize && MAX_DEPTH_LIMIT <= u16::MAX as usize);

/// One cache line of keys and stack ids, then the signatures and the reads: a lookup
/// touches the first line, and the second only for a probable hit.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Memo {
    ret: u64,
    sp: u64,
    bp: u64,
    hi: u64,
    generation: u64,
    depth: u16,
    nreads: u8,
    /// The unwind depended on the start bp (see `modules::UnwindRecord`): reuse only for it.
    bp_sensitive: bool,
    /// Round-robin cursor into `ids`.
    next: u8,
    /// The stacks this native path produced (0: unused slot), by the Python frames'
    /// signature in `sigs` (`python::Walk::signature`, 0 for none). The native frames
    /// are a pure function of the inputs above; the merged stack, of them and the
    /// signature.
    ids: [u32; MEMO_PYTHON],
    sigs: [u64; MEMO_PYTHON],
    reads: [(u64, u64); MEMO_READS],
}

impl Memo {
    /// An unused entry: all zero, as a new table's entries are (`MemoTable::new`).
    #[cfg(test)]
    const EMPTY: Memo = Memo {
        ret: 0,
        sp: 0,
        bp: 0,
        hi: 0,
        generation: 0,
        depth: 0,
        nreads: 0,
        bp_sensitive: false,
        next: 0,
        ids: [0; MEMO_PYTHON],
        sigs: [0; MEMO_PYTHON],
        reads: [(0, 0); MEMO_READS],
    };

    /// Whether an unwind from `c` would produce this entry's native frames.
    #[inline]
    fn matches(&self, c: Caller, hi: u64, generation: u64, depth: usize) -> bool {
        self.ids[0] != 0
            && self.ret == c.ret
            && self.sp == c.sp
            && (!self.bp_sensitive || self.bp == c.bp)
            && self.hi == hi
            && self.generation == generation
            && self.depth as usize == depth
            && self.reads[..self.nreads as usize].iter().all(|&(addr, v)| {
                // SAFETY: addr was read by an unwind that started at this same stack
                // pointer on this thread's stack, within [sp, hi): it is mapped.
                unsafe { core::ptr::read_unaligned(addr as *const u64) == v }
            })
    }

    /// The stack of this native path under the Python frames `python`, if known.
    #[inline]
    fn stack_for(&self, python: u64) -> Option<u32> {
        (0..MEMO_PYTHON)
            .find(|&i| self.ids[i] != 0 && self.sigs[i] == python)
            .map(|i| self.ids[i])
    }

    /// Remember `id` for `python` beside the others of this native path.
    fn add_stack(&mut self, python: u64, id: u32) {
        let i = self.next as usize % MEMO_PYTHON;
        self.ids[i] = id;
        self.sigs[i] = python;
        self.next = ((i + 1) % MEMO_PYTHON) as u8;
    }
}

/// The memo entries of a thread, set-associative: an entry's set is chosen by its return
/// address and stack pointer, and a set's ways are told apart by a tag of the same
/// (one cache line per set), so that the dozens of call sites a program allocates from
/// in its hot loop do not evict each other as in a direct-mapped table (which made the
/// hit rate depend on where ASLR put the stack).
struct MemoTable {
    entries: Box<[Memo]>,
    /// Per set: each way's tag (0: empty) and when it was last used.
    tags: Box<[[u64; MEMO_WAYS]]>,
    used: Box<[[u32; MEMO_WAYS]]>,
    tick: u32,
}

const MEMO_WAYS: usize = 8;
const MEMO_SETS: usize = MEMO_ENTRIES / MEMO_WAYS;

impl MemoTable {
    fn new() -> MemoTable {
        MemoTable {
            // Zeroed lazily: a thread's memo costs the pages of the entries it uses
            // (`private_alloc::zeroed_slice`). An all-zero entry is unused (ids[0] == 0).
            // SAFETY: all-zero bytes are a valid Memo: its fields are integers and a
            // bool, valid as 0 and false.
            entries: unsafe { crate::private_alloc::zeroed_slice(MEMO_ENTRIES) },
            tags: (0..MEMO_SETS).map(|_| [0; MEMO_WAYS]).collect(),
            used: (0..MEMO_SETS).map(|_| [0; MEMO_WAYS]).collect(),
            tick: 0,
        }
    }

    /// The set and the tag of a start (return address, stack pointer).
    #[inline]
    fn key(ret: u64, sp: u64) -> (usize, u64) {
        let h = (ret ^ sp.rotate_left(21)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 58) as usize % MEMO_SETS, h | 1)
    }

    /// The entry whose native frames an unwind from `c` would produce, if any.
    #[inline]
    fn find(&mut self, c: Caller, hi: u64, generation: u64, depth: usize) -> Option<usize> {
        let (set, tag) = Self::key(c.ret, c.sp);
        let way = (0..MEMO_WAYS).find(|&w| {
            self.tags[set][w] == tag
                && self.entries[set * MEMO_WAYS + w].matches(c, hi, generation, depth)
        })?;
        self.tick = self.tick.wrapping_add(1);
        self.used[set][way] = self.tick;
        Some(set * MEMO_WAYS + way)
    }

    /// The entry to fill for a start that `find` did not match: the least recently used
    /// of its set. A start may hold several entries: the same call reached with other
    /// words on the stack (another caller further out) is another entry, not a
    /// replacement, so that code called from a few places alternately keeps hitting.
    fn replace(&mut self, ret: u64, sp: u64) -> &mut Memo {
        let (set, tag) = Self::key(ret, sp);
        let now = self.tick;
        let way = (0..MEMO_WAYS)
            .max_by_key(|&w| {
                if self.tags[set][w] == 0 {
                    u32::MAX
                } else {
                    now.wrapping_sub(self.used[set][w])
                }
            })
            .unwrap_or(0);
        self.tick = self.tick.wrapping_add(1);
        self.tags[set][way] = tag;
        self.used[set][way] = self.tick;
        &mut self.entries[set * MEMO_WAYS + way]
    }

    fn forget(&mut self) {
        for t in self.tags.iter_mut() {
            *t = [0; MEMO_WAYS];
        }
        for m in self.entries.iter_mut() {
            m.ids = [0; MEMO_PYTHON];
        }
    }
}

#[inline]
fn capture(st: &mut ThreadState, caller: Caller, ts: u64) -> u32 {
    let Some(mut snap) = modules::current() else {
        return 0;
    };
    let depth = (MAX_DEPTH.load(Ordering::Relaxed) as usize).min(MAX_DEPTH_LIMIT);
    // Only walk the stack the thread was created on: on another one (sigaltstack, a
    // coroutine's) its bounds are unknown, and only the first frame is kept.
    let hi = if caller.sp >= st.stack_lo && caller.sp < st.stack_hi {
        st.stack_hi
    } else {
        0
    };
    let u = st.unwinding.get_or_insert_with(Unwinding::new);
    // A CPython thread: its Python frames first (they live outside the C stack, so the
    // memo must know them too).
    let python = if !crate::python::active() {
        0
    } else if !crate::python::frames_read() {
        // --python-frames=no: native stacks, but the end of the program's work is noticed.
        crate::python::poll_finalizing();
        0
    } else {
        let p = u.python.get_or_insert_with(|| {
            Box::new(PythonFrames {
                walk: crate::python::Walk::new(),
                codes: crate::python::CodeCache::new(),
                merged: Box::new(MergeBuf {
                    n: 0,
                    frames: [0; MAX_DEPTH_LIMIT],
                }),
            })
        });
        crate::python::walk::<false>(&mut p.walk);
        p.walk.signature()
    };
    let cached = UNWIND_CACHE.load(Ordering::Relaxed);
    // The native part of the entry holds: the same C path (the Python frames may differ).
    let native_hit = if cached {
        u.memo.find(caller, hi, snap.generation, depth)
    } else {
        None
    };
    if let Some(e) = native_hit {
        if let Some(id) = u.memo.entries[e].stack_for(python) {
            return id;
        }
    }
    let (first, second) = u.records.split_at_mut(1);
    let (out, prev) = if u.cur == 0 {
        (&mut first[0], &mut second[0])
    } else {
        (&mut second[0], &mut first[0])
    };
    u.cur ^= 1;
    if !cached {
        prev.invalidate();
    }
    let prev = &*prev;
    // A new stack through code outside every known module means a library was loaded
    // behind our back (dlopen is not interposed): rescan if the loader's counters moved,
    // unwind once more with the new modules, and define the stack either way.
    let mut retried = false;
    let id = loop {
        snap.unwind(
            caller.ret,
            caller.sp,
            caller.bp,
            hi,
            depth,
            &mut u.cache,
            prev,
            out,
        );
        let frames = match (python, u.python.as_mut()) {
            (0, _) | (_, None) => out.frames(),
            (_, Some(p)) => {
                // The frames themselves, only now that a stack must be made.
                if !retried {
                    crate::python::walk::<true>(&mut p.walk);
                }
                crate::python::merge(out.frames(), &p.walk, &mut p.codes, &mut p.merged)
            }
        };
        match stacks::id_for(frames, snap, retried) {
            Ok(id) => break id,
            Err(stacks::UnknownFrames) => {
                if modules::refresh_if_changed(ts) {
                    if let Some(s) = modules::current() {
                        snap = s;
                    }
                }
                retried = true;
            }
        }
    };
    // Only the reads the result depends on are kept (see UnwindRecord::relevant): a
    // saved rbp that no later step uses changes from call to call in code that keeps
    // data in rbp, and checking it would make every such call a miss.
    let relevant = out.relevant_reads().count();
    if let (Some(e), true) = (native_hit, id != 0) {
        // Same native frames (the unwind's inputs were unchanged): another Python signature.
        u.memo.entries[e].add_stack(python, id);
    } else if cached && id != 0 && !out.overflow && relevant <= MEMO_READS {
        let m = u.memo.replace(caller.ret, caller.sp);
        m.ret = caller.ret;
        m.sp = caller.sp;
        m.bp = caller.bp;
        m.hi = hi;
        m.generation = snap.generation;
        m.depth = depth as u16;
        m.nreads = relevant as u8;
        m.bp_sensitive = out.bp_sensitive;
        m.ids = [0; MEMO_PYTHON];
        m.ids[0] = id;
        m.sigs[0] = python;
        m.next = 1;
        for (dst, rv) in m.reads.iter_mut().zip(out.relevant_reads()) {
            *dst = rv;
        }
    }
    id
}

/// The RSS sampler: a thread that wakes every interval and appends an Rss record to its
/// own buffer (thread index PROCESS_THREAD). It blocks every signal, so the program's
/// process-directed signals are never delivered to it, and it is busy for its whole
/// life, so nothing it does is recorded. `--rss-interval 0` means no thread at all.
/// The memlens-rss thread's kernel id (the exit scan leaves it running). Exported for
/// `memlens snapshot`, which leaves this thread's own blocks (glibc's DTV, made by
/// pthread_create before the thread could be marked busy) out of the program's.
#[export_name = "memlens_sampler_tid"]
pub static SAMPLER_TID: AtomicU32 = AtomicU32::new(0);

/// `memlens snapshot`, before it stops the process, asks for every thread's buffered
/// events to be written (so that the trace it joins holds the stacks of blocks allocated
/// a moment ago): it writes a new value into `memlens_flush_request` from outside, the
/// sampler flushes every buffer at its next tick and copies the value into
/// `memlens_flush_done`. Nothing else changes; without a sampler (`--rss-interval 0`)
/// nobody answers and the snapshot goes on without.
#[export_name = "memlens_flush_request"]
pub static FLUSH_REQUEST: AtomicU64 = AtomicU64::new(0);
#[export_name = "memlens_flush_done"]
pub static FLUSH_DONE: AtomicU64 = AtomicU64::new(0);

extern "C" fn sampler_main(state: *mut libc::c_void) -> *mut libc::c_void {
    tls::here().set_busy_depth(1);
    SAMPLER_TID.store(crate::sys::gettid(), Ordering::Release);
    // SAFETY: naming our own thread.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"memlens-rss".as_ptr()) };
    // Made and registered by start_sampler, which passes it here.
    let st_ptr = state as *mut ThreadState;
    let interval = RSS_INTERVAL_NS.load(Ordering::Relaxed);
    let my_generation = SAMPLER_GENERATION.load(Ordering::Acquire);
    let tsc = TSC_CLOCKSOURCE.load(Ordering::Relaxed);
    let first = crate::clock::sample();
    let mut rounds = 0u64;
    let mut next_sample = crate::clock::monotonic_ns();
    let flush_interval = FLUSH_INTERVAL_NS.load(Ordering::Relaxed);
    let mut next_flush = next_sample.saturating_add(flush_interval);
    crate::writer::WRITER_RUNS.store(true, Ordering::Release);
    loop {
        if !ACTIVE.load(Ordering::Acquire)
            || SAMPLER_GENERATION.load(Ordering::Acquire) != my_generation
        {
            break;
        }
        // The writer's job: compress and write what the program's threads queued.
        crate::writer::drain_as_writer();
        let asked = FLUSH_REQUEST.load(Ordering::Acquire);
        if asked != FLUSH_DONE.load(Ordering::Relaxed)
            && !crate::scan::STOPPING.load(Ordering::Relaxed)
        {
            flush_all();
            FLUSH_DONE.store(asked, Ordering::Release);
        }
        let now = crate::clock::monotonic_ns();
        if now >= next_sample {
            if tsc {
                crate::clock::calibrate(first, crate::clock::sample());
            }
            // SAFETY: our own state, registered above; other threads only touch it under
            // its lock (flush_all, final_rss_sample).
            unsafe { push_rss_sample(st_ptr, Some(my_generation)) };
            // `memlens attach`: route new modules; end the recording when asked. Once
            // ended, the thread is done (detach retired the writer: another attach may
            // already have started the next one).
            if crate::attach::tick() {
                return core::ptr::null_mut();
            }
            // `main` called pthread_exit and every thread the program started has ended:
            // glibc would have exited the process (with status 0) as its last thread
            // ended, had this thread not been there. So this one ends, not busy, as the
            // last: glibc then calls exit(0) on it and the exit handlers (the leak check
            // among them) run as they would have.
            if main_thread_gone() {
                crate::writer::WRITER_RUNS.store(false, Ordering::Release);
                tls::here().set_busy_depth(0);
                return core::ptr::null_mut();
            }
            rounds += 1;
            if rounds.is_multiple_of(REAP_EVERY_SAMPLES)
                && !crate::scan::STOPPING.load(Ordering::Relaxed)
            {
                reap_ended_threads();
            }
            if flush_interval != 0
                && now >= next_flush
                && !crate::scan::STOPPING.load(Ordering::Relaxed)
            {
                // A reader following the trace (`--pprof-every`) sees the events of
                // threads whose buffers are far from full.
                flush_registered();
                crate::writer::write_open_chunks();
                next_flush = now.saturating_add(flush_interval);
            }
            next_sample = next_sample.saturating_add(interval).max(now);
            continue;
        }
        // Sleep until the next sample or the next queued chunk. A chunk queued after
        // `seen` was read changes WAKE, so the wait returns at once; one queued after
        // the flag is up also wakes it (`writer::wake_writer`).
        crate::writer::WRITER_SLEEPING.store(true, Ordering::SeqCst);
        let seen = crate::writer::WAKE.load(Ordering::SeqCst);
        if !crate::writer::pending() {
            crate::sys::futex_wait(&crate::writer::WAKE, seen, Some(next_sample - now));
        }
        crate::writer::WRITER_SLEEPING.store(false, Ordering::Relaxed);
    }
    crate::writer::WRITER_RUNS.store(false, Ordering::Release);
    if EXIT_RETIRED.load(Ordering::Acquire) {
        // Retired by the process's exit: stay, doing nothing, until exit_group takes the
        // thread. Ending it would free its glibc blocks (DTV) through the hooks while the
        // leak scan runs, and the scan's figures would depend on when this thread woke.
        static NEVER: AtomicU32 = AtomicU32::new(0);
        loop {
            crate::sys::futex_wait(&NEVER, 0, None);
        }
    }
    core::ptr::null_mut()
}

/// The current sampler's state (0 until start_sampler has run in this process).
static SAMPLER_STATE: AtomicUsize = AtomicUsize::new(0);

/// Append an Rss record, read now, to the sampler's state.
///
/// # Safety
/// `st` is this process's registered sampler state (its memory lives to the end of the
/// process); its lock serialises the sampler thread and the caller.
unsafe fn push_rss_sample(st: *mut ThreadState, generation: Option<u32>) {
    if let Some(rss) = read_rss() {
        let now = now_ns();
        // SAFETY: see the function's contract.
        let st = unsafe { &mut *st };
        st.lock();
        // A retired sampler adds nothing after the last sample at exit (taken under
        // this lock once the generation moved on).
        if generation.is_none_or(|g| SAMPLER_GENERATION.load(Ordering::Acquire) == g) {
            st.push(|b| b.rss(now, rss));
        }
        st.unlock();
    }
}

/// The process is exiting: the sampler, once retired, waits for the end instead of
/// ending its thread ([`final_rss_sample_at_exit`]).
static EXIT_RETIRED: AtomicBool = AtomicBool::new(false);

/// [`final_rss_sample`] at the process's exit (before the leak scan): the retired sampler
/// keeps its thread, idle, to the end. Caller is busy.
pub fn final_rss_sample_at_exit() {
    EXIT_RETIRED.store(true, Ordering::Release);
    final_rss_sample();
}

/// One last RSS sample at exit, before the leak scan: the report's "heap vs RSS at the
/// end" pairs it with the heap after the program's last free, instead of with whatever
/// the heap was at the sampler's last tick (up to an interval earlier). Caller is busy.
pub fn final_rss_sample() {
    let st = SAMPLER_STATE.load(Ordering::Acquire);
    if st != 0 {
        // Retire the sampler first: its later samples would measure the leak scan's own
        // memory, not the program's.
        SAMPLER_GENERATION.fetch_add(1, Ordering::AcqRel);
        // SAFETY: SAMPLER_STATE holds this process's sampler state (made by start_sampler,
        // in a forked child too).
        unsafe { push_rss_sample(st as *mut ThreadState, None) };
    }
}

/// Bumped to retire a sampler (a forked child starts its own).
static SAMPLER_GENERATION: AtomicU32 = AtomicU32::new(0);

/// Start the sampler thread, detached, with every signal blocked from birth. Caller is
/// busy (pthread_create allocates).
pub fn start_sampler() {
    if RSS_INTERVAL_NS.load(Ordering::Relaxed) == 0 {
        return;
    }
    SAMPLER_GENERATION.fetch_add(1, Ordering::AcqRel);
    // The sampler's state, made here rather than by the thread, so that a process that
    // exits before the thread runs still has it for the last sample at exit. (A forked
    // child's inherited pointer is the parent's sampler state, abandoned there.)
    let st_ptr = Box::into_raw(ThreadState::new(memlens_trace::PROCESS_THREAD));
    REGISTRY.lock().push(st_ptr as usize);
    SAMPLER_STATE.store(st_ptr as usize, Ordering::Release);
    // Open statm here, synchronously: in the fork child this runs before fork returns.
    // A forked child's lock may have been held by the parent's sampler (a thread that
    // does not exist here): start afresh.
    // SAFETY: no other thread of this process touches STATM yet (the old sampler is
    // gone in a child, or not started).
    unsafe { STATM.force_unlock() };
    STATM.lock().open();
    // SAFETY: as STATM's, just above.
    unsafe { PROC_STAT.force_unlock() };
    PROC_STAT.lock().open();
    // Also read here, on the starting thread: a file the sampler opened itself would take
    // the lowest free descriptor for a moment while the program runs, and the program's
    // own open() could get the next one (seen with RLIMIT_NOFILE=16).
    TSC_CLOCKSOURCE.store(crate::clock::tsc_is_clocksource(), Ordering::Relaxed);
    // SAFETY: standard pthread calls on local attr/sigset values; the old signal mask is
    // restored before returning.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        // Its stack (and the thread descriptor glibc puts at its top) is recorder memory:
        // the exit scan leaves it out like the recorder's other mappings, and only it.
        const SAMPLER_STACK: usize = 256 * 1024;
        match crate::own_memory::map(SAMPLER_STACK) {
            Some(stack) => {
                libc::pthread_attr_setstack(&mut attr, stack as *mut libc::c_void, SAMPLER_STACK);
            }
            None => {
                libc::pthread_attr_setstacksize(&mut attr, SAMPLER_STACK);
            }
        }
        let mut tid: libc::pthread_t = 0;
        SAMPLER_TID.store(0, Ordering::Relaxed);
        let created =
            libc::pthread_create(&mut tid, &attr, sampler_main, st_ptr as *mut libc::c_void) == 0;
        // Wait (briefly) for its kernel id: the exit scan must know which thread it is
        // even in a program that exits at once.
        let mut spins = 0;
        while created && SAMPLER_TID.load(Ordering::Acquire) == 0 && spins < 100_000 {
            libc::sched_yield();
            spins += 1;
        }
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
    }
}

/// Whether the kernel keeps time with the TSC, read by `start_sampler` for its thread.
static TSC_CLOCKSOURCE: AtomicBool = AtomicBool::new(false);

/// The sampler's `/proc/self/statm`, opened once per process by `start_sampler`.
static STATM: spin::Mutex<crate::sys::ProcFile> =
    spin::Mutex::new(crate::sys::ProcFile::new(c"statm"));

/// The process's `/proc/self/stat`, opened with [`STATM`] (on the starting thread, for
/// the same reason) and read by the sampler at each tick.
static PROC_STAT: spin::Mutex<crate::sys::ProcFile> =
    spin::Mutex::new(crate::sys::ProcFile::new(c"/proc/self/stat"));

/// `main` called pthread_exit and every thread the program started has ended
/// (`sys::only_caller_left_after_main`); read through a descriptor kept open, so that no
/// file is opened while the program runs (it would take the lowest free number for a
/// moment).
fn main_thread_gone() -> bool {
    let mut buf = [0u8; 1024];
    let Some(n) = PROC_STAT.lock().read(&mut buf) else {
        return false;
    };
    crate::sys::only_caller_left_after_main(&buf[..n])
}

/// Close the sampler's `/proc/self/statm` (`memlens attach` detached: the process gets
/// its descriptors back as they were; the next attach opens it again).
pub fn close_statm() {
    STATM.lock().close();
    PROC_STAT.lock().close();
}

/// Resident set size from the process's statm (second field, in pages).
pub fn read_rss() -> Option<u64> {
    let mut buf = [0u8; 128];
    let pages_of = |buf: &[u8]| -> Option<u64> {
        let mut fields = buf.split(|&c| c == b' ');
        fields.next()?;
        core::str::from_utf8(fields.next()?).ok()?.parse().ok()
    };
    let mut statm = STATM.lock();
    let n = statm.read(&mut buf)?;
    let mut pages = pages_of(&buf[..n])?;
    if pages == 0 {
        // The file was opened by a thread that has ended since (the main thread, by
        // `pthread_exit` in `main`): its view of the memory is empty. Open it again as
        // this thread sees it.
        statm.open();
        let n = statm.read(&mut buf)?;
        pages = pages_of(&buf[..n])?;
    }
    // SAFETY: sysconf has no preconditions.
    Some(pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64)
}

/// Hand every registered state's non-empty buffer to the writer, without draining the
/// queue (the `memlens-rss` thread, which is the writer, does that next). Caller is busy.
fn flush_registered() {
    let reg = REGISTRY.lock();
    for &p in reg.iter() {
        // SAFETY: registry entries are live states (removed before being freed, under
        // this lock); each is touched under its own lock.
        let st = unsafe { &mut *(p as *mut ThreadState) };
        st.lock();
        if !st.is_empty() {
            st.flush_locked();
        }
        st.unlock();
    }
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
    output::META.lock().flush();
    crate::writer::drain();
}

/// In a forked child: keep only the calling thread's state, with an empty buffer (its
/// contents were the parent's events). States of threads that do not exist in the child
/// are abandoned (their memory is small and their locks may be held).
pub fn after_fork_child(ts: u64) {
    // A child forked by an exit handler is not exiting yet.
    EXIT_RETIRED.store(false, Ordering::Release);
    let mine = tls::here().state() as usize;
    serials_start_trace();
    let mut reg = REGISTRY.lock();
    reg.clear();
    if mine != 0 {
        reg.push(mine);
        // SAFETY: our own live state; no other thread exists.
        let st = unsafe { &mut *(mine as *mut ThreadState) };
        st.events.clear();
        st.log.clear();
        st.forget_serials();
        if let Some(u) = st.unwinding.as_mut() {
            u.forget();
        }
        st.unlock();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        // The child's thread has a new id: the reaper must not take it for the parent's.
        st.tid = tid;
        st.realtime_announced = false;
        output::thread_record(ts, st.index, tid, b"");
    }
    drop(reg);
}

/// A new trace in the same process (`memlens attach` again, after a detach): every
/// registered state keeps its index but forgets its events and memoized unwinds (stack
/// ids are numbered anew in the new trace), and each thread is defined again there.
/// Called before the hooks are routed, so no thread records meanwhile (a thread holding
/// a stale pointer to a hook records nothing: `ACTIVE` is false). Caller is busy.
pub fn reset_for_new_trace(ts: u64) {
    crate::order::clear();
    serials_start_trace();
    let reg = REGISTRY.lock();
    for &p in reg.iter() {
        // SAFETY: registry entries are live states; other threads touch them only
        // under their lock, taken here.
        let st = unsafe { &mut *(p as *mut ThreadState) };
        st.lock();
        st.events.clear();
        st.log.clear();
        if let Some(u) = st.unwinding.as_mut() {
            u.forget();
        }
        st.realtime_announced = false;
        // The new trace's clock starts again.
        st.last_stamp = 0;
        st.reserved = (0, 0);
        st.forget_serials();
        let (index, tid) = (st.index, st.tid);
        st.unlock();
        if index == memlens_trace::PROCESS_THREAD || tid == 0 {
            continue;
        }
        let mut path = alloc::vec::Vec::with_capacity(48);
        path.extend_from_slice(b"/proc/self/task/");
        path.extend_from_slice(&output::itoa_buf(tid as u64));
        path.extend_from_slice(b"/comm\0");
        let mut name = [0u8; 16];
        let n = core::ffi::CStr::from_bytes_with_nul(&path)
            .ok()
            .and_then(|c| crate::sys::read_file(c, &mut name))
            .unwrap_or(0);
        let name = name[..n].strip_suffix(b"\n").unwrap_or(&name[..n]);
        output::thread_record(ts, index, tid, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new memo table's entries (zeroed memory) are Memo::EMPTY's.
    #[test]
    fn new_memo_entries_are_empty() {
        let t = MemoTable::new();
        assert_eq!(t.entries.len(), MEMO_ENTRIES);
        for m in t.entries.iter() {
            let e = Memo::EMPTY;
            assert_eq!(
                (m.ret, m.sp, m.bp, m.hi, m.generation, m.depth, m.nreads),
                (e.ret, e.sp, e.bp, e.hi, e.generation, e.depth, e.nreads)
            );
            assert_eq!(
                (m.bp_sensitive, m.next, m.ids, m.sigs),
                (false, 0, [0; MEMO_PYTHON], [0; MEMO_PYTHON])
            );
            assert!(m.reads.iter().all(|&r| r == (0, 0)));
        }
        assert!(t.tags.iter().all(|s| s.iter().all(|&w| w == 0)));
    }

    fn entry(word: &u64) -> Memo {
        let mut m = Memo::EMPTY;
        m.ret = 0x40_1000;
        m.sp = 0x7ff0_0000;
        m.hi = 0x7ff1_0000;
        m.generation = 3;
        m.depth = 64;
        m.nreads = 1;
        m.reads[0] = (word as *const u64 as u64, *word);
        m.ids[0] = 7;
        m.sigs[0] = 0x11;
        m.next = 1;
        m
    }

    #[test]
    fn a_memo_entry_keeps_one_stack_per_python_signature() {
        let word = 42u64;
        let mut m = entry(&word);
        let c = Caller {
            ret: 0x40_1000,
            sp: 0x7ff0_0000,
            bp: 0,
        };
        assert!(m.matches(c, 0x7ff1_0000, 3, 64));
        assert!(
            !m.matches(c, 0x7ff1_0000, 4, 64),
            "another module generation"
        );
        assert!(!m.matches(
            Caller {
                ret: 0x40_1004,
                ..c
            },
            0x7ff1_0000,
            3,
            64
        ));
        assert_eq!(m.stack_for(0x11), Some(7));
        assert_eq!(
            m.stack_for(0x23),
            None,
            "other Python frames: not known yet"
        );
        for (i, sig) in [0x23u64, 0x35, 0x47].into_iter().enumerate() {
            m.add_stack(sig, 8 + i as u32);
        }
        assert_eq!(m.stack_for(0x11), Some(7));
        assert_eq!(m.stack_for(0x47), Some(10));
        // A fifth signature replaces the oldest.
        m.add_stack(0x59, 11);
        assert_eq!(m.stack_for(0x11), None);
        assert_eq!(m.stack_for(0x23), Some(8));
        assert_eq!(m.stack_for(0x59), Some(11));
    }

    #[test]
    fn the_memo_table_keeps_the_most_recently_used_starts_of_a_set() {
        let word = 42u64;
        let sp = 0x7ff0_0000;
        // Five starts that fall into the same set.
        let set0 = MemoTable::key(0x40_0000, sp).0;
        let rets: Vec<u64> = (0..)
            .map(|i| 0x40_0000 + 16 * i)
            .filter(|&r| MemoTable::key(r, sp).0 == set0)
            .take(MEMO_WAYS + 1)
            .collect();
        let mut t = MemoTable::new();
        let fill = |t: &mut MemoTable, ret: u64, id: u32| {
            let m = t.replace(ret, sp);
            *m = entry(&word);
            m.ret = ret;
            m.ids[0] = id;
        };
        let caller = |ret| Caller { ret, sp, bp: 0 };
        for (i, &r) in rets[..MEMO_WAYS].iter().enumerate() {
            fill(&mut t, r, 1 + i as u32);
        }
        for (i, &r) in rets[..MEMO_WAYS].iter().enumerate() {
            let e = t.find(caller(r), 0x7ff1_0000, 3, 64).expect("kept");
            assert_eq!(t.entries[e].ids[0], 1 + i as u32);
        }
        // Use the first again: the second is now the least recently used, and goes.
        t.find(caller(rets[0]), 0x7ff1_0000, 3, 64).unwrap();
        fill(&mut t, rets[MEMO_WAYS], 99);
        assert!(t.find(caller(rets[1]), 0x7ff1_0000, 3, 64).is_none());
        for &r in rets.iter().filter(|&&r| r != rets[1]) {
            assert!(t.find(caller(r), 0x7ff1_0000, 3, 64).is_some(), "{r:#x}");
        }
        // The same start reached with another word on the stack: a second entry, and
        // each is found while its word is there.
        let mut caller_word = 1u64;
        for (v, id) in [(1u64, 61u32), (2, 62)] {
            let m = t.replace(rets[2], sp);
            *m = entry(&word);
            m.ret = rets[2];
            m.reads[0] = (&caller_word as *const u64 as u64, v);
            m.ids[0] = id;
        }
        for (v, id) in [(1u64, 61u32), (2, 62), (1, 61)] {
            // SAFETY: the test's own variable, which both entries' reads point at.
            unsafe { core::ptr::write_volatile(&mut caller_word, v) };
            let e = t.find(caller(rets[2]), 0x7ff1_0000, 3, 64).unwrap();
            assert_eq!(t.entries[e].ids[0], id);
        }
        t.forget();
        assert!(t.find(caller(rets[0]), 0x7ff1_0000, 3, 64).is_none());
    }

    #[test]
    fn a_memo_entry_is_stale_once_a_word_it_read_changed() {
        let mut word = 42u64;
        let m = entry(&word);
        let c = Caller {
            ret: 0x40_1000,
            sp: 0x7ff0_0000,
            bp: 0,
        };
        assert!(m.matches(c, 0x7ff1_0000, 3, 64));
        // SAFETY: the test's own variable, which the entry's read points at.
        unsafe { core::ptr::write_volatile(&mut word, 43) };
        let m = Memo { ..m };
        assert!(!m.matches(c, 0x7ff1_0000, 3, 64));
        assert_eq!(core::mem::size_of::<Memo>() % 64, 0);
    }
}
