//! Encoding, compression and writing off the allocating threads.
//!
//! A thread whose log of allocation events is full (`rawlog.rs`) hands it to a FIFO of
//! at most [`QUEUE_CHUNKS`] entries and takes an empty spare in exchange: the hot path
//! neither encodes nor compresses. So does a thread whose chunk buffer is full (or the
//! definitions buffer, when it fills), with the raw buffer. The memlens-rss thread (the
//! *writer*, see `thread::sampler_main`) is woken and encodes the logs, compresses and
//! writes in queue order. When [`LOG_QUEUE_LIMIT`] entries or more wait, the writer is
//! behind (the program's threads keep the cores busy), and a thread encodes its log
//! itself ([`queue_log`] refuses it) and queues the built chunk: the work is shared out
//! instead of piling up.
//!
//! Order in the file is what readers rely on: every thread's chunks in its own order, and
//! definitions before the events that use them (a thread submits the definitions buffer
//! before its events). Whoever writes holds [`WRITING`] and pops from the front, so
//! chunks are written in the order they were queued. When the queue is full or there is
//! no writer thread (`--rss-interval 0`, a forked child before its own starts, after the
//! writer retired at exit), the submitting thread drains the queue itself and then writes
//! its own chunk, under the same lock: nothing overtakes. Exit, exec and fatal signals
//! flush every buffer and then [`drain`] synchronously; the End record comes last. A
//! process killed by SIGKILL loses what was queued (at most [`QUEUE_CHUNKS`] entries: up
//! to [`LOG_QUEUE_LIMIT`] logs of 8,192 events, the rest raw chunks of 64 KiB) and what
//! its threads held; its file ends at its last complete chunk, which readers accept.
//!
//! Lock order: META, then [`WRITING`], then [`QUEUE`], then `output::FILE` (and the
//! private allocator's, for a new spare buffer under `QUEUE`). The writer thread holds
//! `WRITING` for one entry at a time; a program thread that finds the queue full waits
//! for that entry, then drains the rest itself.

use crate::output::{self, CHUNK_RAW};
use crate::rawlog::{RawLog, RAW_EVENTS};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use memlens_trace::{ChunkBuilder, ChunkKind};

extern crate alloc;

/// Raw chunks that may wait for the writer: 16 x 64 KiB, and as many spare buffers.
pub const QUEUE_CHUNKS: usize = 16;

pub type Buffer = ChunkBuilder<Box<[u8]>>;

/// What waits for the writer. (A built chunk is large, a log small: both kinds sit in
/// the queue's own slots, with no allocation per submission.)
#[allow(clippy::large_enum_variant)]
enum Queued {
    /// A chunk built by its thread.
    Chunk(ChunkKind, u32, Buffer),
    /// A thread's log of allocation events, encoded into Events chunks by whoever
    /// writes it (`rawlog.rs`).
    Log(u32, RawLog),
}

pub struct Queue {
    chunks: VecDeque<Queued>,
    spares: Vec<Box<[u8]>>,
    spare_logs: Vec<RawLog>,
}

pub static QUEUE: spin::Mutex<Queue> = spin::Mutex::new(Queue {
    chunks: VecDeque::new(),
    spares: Vec::new(),
    spare_logs: Vec::new(),
});

/// What compressing and writing needs; held by whoever does it.
pub struct Writing {
    /// The compressed chunk being written.
    out: Vec<u8>,
    /// The payload of an Events chunk, its columns put together (`ChunkBuilder::payload`).
    raw: Vec<u8>,
    /// The writer thread's zstd context, made on its first chunk.
    zstd: ZstdState,
    /// Chunks being filled from threads' logs, at most [`MAX_OPEN`]: a log's records
    /// rarely fill a chunk, and the next log of the same thread goes on where it
    /// stopped, so chunks are full and compress as well as those a thread builds. A
    /// thread's open chunk is written before any chunk the thread built itself
    /// ([`write_one`]), and every open chunk by [`write_now`], [`drain`] and
    /// [`write_open_chunks`].
    open: Vec<(u32, Buffer)>,
    /// Empty chunk buffers for `open`.
    spare_builders: Vec<Buffer>,
}

/// Threads whose chunks may be open at once; the one opened first is written when
/// another thread needs one.
const MAX_OPEN: usize = 16;

/// Whether the zstd context was made; if making it failed, lz4 is used from then on
/// (instead of trying, and mapping memory, again for every chunk).
enum ZstdState {
    Untried,
    Ready(Zstd),
    Failed,
}

impl ZstdState {
    /// The context to compress with: `None` (lz4) unless `use_zstd` (the writer
    /// thread) and it could be made, on first use.
    fn get(&mut self, use_zstd: bool) -> Option<&mut Zstd> {
        if !use_zstd {
            return None;
        }
        if matches!(self, ZstdState::Untried) {
            *self = Zstd::new().map_or(ZstdState::Failed, ZstdState::Ready);
        }
        match self {
            ZstdState::Ready(z) => Some(z),
            _ => None,
        }
    }
}

pub static WRITING: spin::Mutex<Writing> = spin::Mutex::new(Writing {
    out: Vec::new(),
    raw: Vec::new(),
    zstd: ZstdState::Untried,
    open: Vec::new(),
    spare_builders: Vec::new(),
});

/// zstd level for the writer thread. Level 1 already stores an allocation-dense
/// program's events in ~13% fewer bytes than lz4; level 5 (lazy matching) in 8-18% fewer
/// than level 1 (`bench/run`'s suite: 1.60 -> 1.47 bytes per event) at no cost the
/// suite's times show: the writer compresses off the program's threads
/// (docs/PERFORMANCE.md, session 13).
const ZSTD_LEVEL: i32 = 5;

/// A zstd compression context in memory of the recorder's own (`ZSTD_initStaticCCtx`):
/// zstd never allocates through it, so never through the program's malloc.
pub struct Zstd {
    cctx: *mut zstd_sys::ZSTD_CCtx,
}

// SAFETY: the context is used only under the WRITING lock, by one thread at a time.
unsafe impl Send for Zstd {}

impl Zstd {
    /// A context sized for chunks of up to `CHUNK_RAW` bytes; `None` if its memory
    /// cannot be mapped (then lz4 is used).
    fn new() -> Option<Zstd> {
        // SAFETY: plain zstd calls; the workspace is a fresh private mapping of the size
        // zstd asked for, kept for the life of the process (page-aligned, as zstd needs
        // 8-byte alignment).
        unsafe {
            let params = zstd_sys::ZSTD_getCParams(ZSTD_LEVEL, CHUNK_RAW as u64, 0);
            let size = zstd_sys::ZSTD_estimateCCtxSize_usingCParams(params);
            let space = crate::own_memory::map(size)?;
            let cctx = zstd_sys::ZSTD_initStaticCCtx(space as *mut core::ffi::c_void, size);
            if cctx.is_null() {
                crate::own_memory::unmap(space, size);
                return None;
            }
            Some(Zstd { cctx })
        }
    }

    /// Room `compress` may need after the chunk header for `raw_len` bytes.
    pub fn max_chunk_len(raw_len: usize) -> usize {
        // SAFETY: a pure function of its argument.
        memlens_trace::CHUNK_HEADER_LEN + unsafe { zstd_sys::ZSTD_compressBound(raw_len) }
    }

    /// Compress `raw` into `out` as one zstd frame; its length, or `None` (then the
    /// caller uses lz4).
    pub fn compress(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize> {
        // SAFETY: cctx is our static context; the slices are valid for their lengths.
        let n = unsafe {
            zstd_sys::ZSTD_compressCCtx(
                self.cctx,
                out.as_mut_ptr() as *mut core::ffi::c_void,
                out.len(),
                raw.as_ptr() as *const core::ffi::c_void,
                raw.len(),
                ZSTD_LEVEL,
            )
        };
        // SAFETY: a pure function of its argument.
        (unsafe { zstd_sys::ZSTD_isError(n) } == 0).then_some(n)
    }
}

/// Whether a writer thread runs in this process and takes queued chunks.
pub static WRITER_RUNS: AtomicBool = AtomicBool::new(false);

/// Bumped on every submission; the writer sleeps on it (futex).
pub static WAKE: AtomicU32 = AtomicU32::new(0);

/// Hand a full buffer over: queued for the writer (the caller gets an empty buffer in
/// its place), or, without a writer or with the queue full, written now after
/// everything queued. False if this process does not own the trace (a `vfork` child on
/// its parent's memory): the buffer is left as it is, for the owner.
pub fn submit(kind: ChunkKind, thread: u32, b: &mut Buffer) -> bool {
    if b.is_empty() {
        return true;
    }
    if !output::owns_trace() {
        return false;
    }
    if WRITER_RUNS.load(Ordering::Acquire) {
        let mut q = QUEUE.lock();
        if q.chunks.len() < QUEUE_CHUNKS {
            let spare = q
                .spares
                .pop()
                .unwrap_or_else(|| alloc::vec![0u8; CHUNK_RAW].into_boxed_slice());
            // The empty buffer in its place writes time in the same unit.
            let empty = ChunkBuilder::new(spare).with_time_shift(b.time_shift());
            let full = core::mem::replace(b, empty);
            q.chunks.push_back(Queued::Chunk(kind, thread, full));
            drop(q);
            wake_writer();
            return true;
        }
    }
    write_now(kind, thread, b);
    b.clear();
    true
}

/// Entries waiting for the writer at which it is behind (the machine's cores are busy
/// with the program's threads): a thread's log is then refused, and the thread encodes
/// it itself ([`queue_log`]).
const LOG_QUEUE_LIMIT: usize = 4;

/// Queue thread `thread`'s log for the writer to encode (the caller gets an empty log
/// in its place). False, leaving the log as it is, when the writer is behind, none runs
/// or this process does not own the trace: the caller encodes the log into its own
/// chunks, which [`submit`] then takes.
pub fn queue_log(thread: u32, log: &mut RawLog) -> bool {
    if !WRITER_RUNS.load(Ordering::Acquire) || !output::owns_trace() {
        return false;
    }
    let mut q = QUEUE.lock();
    if q.chunks.len() >= LOG_QUEUE_LIMIT {
        return false;
    }
    let empty = q
        .spare_logs
        .pop()
        .unwrap_or_else(|| RawLog::new(RAW_EVENTS));
    let full = core::mem::replace(log, empty);
    q.chunks.push_back(Queued::Log(thread, full));
    drop(q);
    wake_writer();
    true
}

/// Set by the writer before it looks at the queue for the last time and sleeps on
/// [`WAKE`]: only then does a submission need the futex call (a system call per
/// submission otherwise).
pub static WRITER_SLEEPING: AtomicBool = AtomicBool::new(false);

fn wake_writer() {
    // SeqCst on both sides (`thread::sampler_main`): either this load sees the writer's
    // flag, or the writer's later load of WAKE sees this increment (and its look at the
    // queue this entry), so the wait it is about to begin returns at once.
    WAKE.fetch_add(1, Ordering::SeqCst);
    if WRITER_SLEEPING.load(Ordering::SeqCst) {
        crate::sys::futex_wake(&WAKE);
    }
}

/// Encode `log` into thread `thread`'s open chunk, writing each that fills (the caller
/// holds WRITING, and wrote everything queued before).
fn write_log(w: &mut Writing, thread: u32, log: &RawLog, use_zstd: bool) {
    let mut b = match w.open.iter().position(|(t, _)| *t == thread) {
        Some(i) => w.open.remove(i).1,
        None => w.spare_builders.pop().unwrap_or_else(|| {
            Buffer::new(alloc::vec![0u8; CHUNK_RAW].into_boxed_slice())
                .with_time_shift(crate::order::TIME_SHIFT)
        }),
    };
    let mut next = 0;
    while !log.encode(&mut next, &mut b) {
        write_built(w, thread, &mut b, use_zstd);
    }
    if b.is_empty() {
        w.spare_builders.push(b);
        return;
    }
    if w.open.len() >= MAX_OPEN {
        let (t, mut oldest) = w.open.remove(0);
        write_built(w, t, &mut oldest, use_zstd);
        w.spare_builders.push(oldest);
    }
    w.open.push((thread, b));
}

/// Write `b`, an Events chunk of thread `thread`, and clear it.
fn write_built(w: &mut Writing, thread: u32, b: &mut Buffer, use_zstd: bool) {
    let zstd = w.zstd.get(use_zstd);
    output::encode_and_write(ChunkKind::Events, thread, b, &mut w.out, &mut w.raw, zstd);
    b.clear();
}

/// Write the open chunk of thread `thread` (`None`: of every thread).
fn close_open(w: &mut Writing, thread: Option<u32>, use_zstd: bool) {
    let mut i = 0;
    while i < w.open.len() {
        if thread.is_some_and(|t| t != w.open[i].0) {
            i += 1;
            continue;
        }
        let (t, mut b) = w.open.remove(i);
        write_built(w, t, &mut b, use_zstd);
        w.spare_builders.push(b);
    }
}

/// The writer thread, after the program's threads handed it their buffers (a periodic
/// flush, `memlens snapshot`'s request): write everything queued and every open chunk.
pub fn write_open_chunks() {
    let mut w = WRITING.lock();
    drain_locked(&mut w, true);
    close_open(&mut w, None, true);
}

/// Write everything queued, then `b`, now, on the calling thread (with lz4: this may be
/// one of the program's threads).
pub fn write_now<B: AsRef<[u8]> + AsMut<[u8]>>(kind: ChunkKind, thread: u32, b: &ChunkBuilder<B>) {
    let mut w = WRITING.lock();
    drain_locked(&mut w, false);
    close_open(&mut w, None, false);
    let w = &mut *w;
    output::encode_and_write(kind, thread, b, &mut w.out, &mut w.raw, None);
}

/// Write everything queued, and every open chunk, on the calling thread (exit, exec),
/// with lz4.
pub fn drain() {
    let mut w = WRITING.lock();
    drain_locked(&mut w, false);
    close_open(&mut w, None, false);
}

/// The writer thread's drain: with zstd, which costs more than lz4 but is done off the
/// program's threads. The lock is taken for one chunk at a time, so a thread that must
/// write itself (queue full) waits for one chunk at most, then drains the rest.
pub fn drain_as_writer() {
    loop {
        let mut w = WRITING.lock();
        if !write_one(&mut w, true) {
            return;
        }
    }
}

fn drain_locked(w: &mut Writing, use_zstd: bool) {
    while write_one(w, use_zstd) {}
}

/// Write the first queued chunk, if there is one (the caller holds WRITING: whoever
/// holds it pops, so chunks go out in queue order).
fn write_one(w: &mut Writing, use_zstd: bool) -> bool {
    let Some(queued) = QUEUE.lock().chunks.pop_front() else {
        return false;
    };
    match queued {
        Queued::Chunk(kind, thread, mut b) => {
            if kind == ChunkKind::Events {
                // The thread's records from its logs came before this chunk's.
                close_open(w, Some(thread), use_zstd);
            }
            let zstd = w.zstd.get(use_zstd);
            output::encode_and_write(kind, thread, &b, &mut w.out, &mut w.raw, zstd);
            b.clear();
            QUEUE.lock().spares.push(b.into_buf());
        }
        Queued::Log(thread, mut log) => {
            write_log(w, thread, &log, use_zstd);
            log.clear();
            QUEUE.lock().spare_logs.push(log);
        }
    }
    true
}

/// Whether chunks wait to be written.
pub fn pending() -> bool {
    !QUEUE.lock().chunks.is_empty()
}

/// In a forked child: the queued chunks are the parent's (its own writer writes them);
/// keep their buffers as spares. No writer runs here until the child's own starts.
pub fn after_fork_child() {
    WRITER_RUNS.store(false, Ordering::Release);
    let mut w = WRITING.lock();
    while let Some((_, mut b)) = w.open.pop() {
        b.clear();
        w.spare_builders.push(b);
    }
    drop(w);
    let mut q = QUEUE.lock();
    while let Some(queued) = q.chunks.pop_front() {
        match queued {
            Queued::Chunk(_, _, mut b) => {
                b.clear();
                q.spares.push(b.into_buf());
            }
            Queued::Log(_, mut log) => {
                log.clear();
                q.spare_logs.push(log);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_trace::AllocFunc;

    /// The tests share the queue.
    static QUEUE_TESTS: spin::Mutex<()> = spin::Mutex::new(());

    #[test]
    fn a_log_is_queued_only_while_the_writer_keeps_up() {
        let _q = QUEUE_TESTS.lock();
        output::own_trace_in_tests();
        let mut log = RawLog::new(16);
        assert!(log.alloc(1 << 10, AllocFunc::Malloc, 0x1000, 16, 1, 1));
        // No writer: the thread encodes its log itself.
        assert!(!queue_log(3, &mut log));
        assert!(!log.is_empty());
        WRITER_RUNS.store(true, Ordering::Release);
        for i in 0..LOG_QUEUE_LIMIT {
            assert!(queue_log(3, &mut log), "entry {i}");
            assert!(log.is_empty(), "an empty log in its place");
            assert!(log.alloc(1 << 10, AllocFunc::Malloc, 0x1000, 16, 1, 1));
        }
        // The writer is behind.
        assert!(!queue_log(3, &mut log));
        assert!(!log.is_empty());
        let queued: Vec<_> = QUEUE.lock().chunks.drain(..).collect();
        assert_eq!(queued.len(), LOG_QUEUE_LIMIT);
        assert!(queued
            .iter()
            .all(|q| matches!(q, Queued::Log(3, l) if l.records_from(0) == 1)));
        WRITER_RUNS.store(false, Ordering::Release);
    }

    fn log_of(n: u64) -> RawLog {
        let mut log = RawLog::new(16);
        for i in 0..n {
            assert!(log.alloc(
                (i + 1) << 10,
                AllocFunc::Malloc,
                0x1000 + 16 * i,
                16,
                1,
                1 + i
            ));
        }
        log
    }

    /// The open chunks: thread, records.
    fn open(w: &Writing) -> Vec<(u32, u32)> {
        w.open.iter().map(|(t, b)| (*t, b.records())).collect()
    }

    #[test]
    fn logs_fill_their_threads_open_chunks_which_are_written_before_the_threads_own() {
        let _q = QUEUE_TESTS.lock();
        // No trace file is open: writing a chunk writes nothing.
        let mut w = Writing {
            out: Vec::new(),
            raw: Vec::new(),
            zstd: ZstdState::Failed,
            open: Vec::new(),
            spare_builders: Vec::new(),
        };
        QUEUE.lock().chunks.push_back(Queued::Log(3, log_of(1)));
        QUEUE.lock().chunks.push_back(Queued::Log(5, log_of(2)));
        QUEUE.lock().chunks.push_back(Queued::Log(3, log_of(4)));
        while write_one(&mut w, false) {}
        // Thread 3's second log went on in its open chunk.
        assert_eq!(open(&w), [(5, 2), (3, 5)]);
        // A chunk thread 3 built itself comes after its open chunk, which is written
        // first; a definitions chunk leaves the open chunks alone.
        let mut b = Buffer::new(alloc::vec![0u8; 4096].into_boxed_slice());
        b.alloc(9 << 10, AllocFunc::Malloc, 0x9000, 16, 1).unwrap();
        QUEUE
            .lock()
            .chunks
            .push_back(Queued::Chunk(ChunkKind::Events, 3, b));
        let mut m = Buffer::new(alloc::vec![0u8; 4096].into_boxed_slice());
        m.thread(0, 3, 77, b"worker").unwrap();
        QUEUE
            .lock()
            .chunks
            .push_back(Queued::Chunk(ChunkKind::Meta, 0, m));
        while write_one(&mut w, false) {}
        assert_eq!(open(&w), [(5, 2)]);
        // At most MAX_OPEN threads' chunks are open: the first opened is written.
        for t in 10..10 + MAX_OPEN as u32 {
            QUEUE.lock().chunks.push_back(Queued::Log(t, log_of(1)));
        }
        while write_one(&mut w, false) {}
        assert_eq!(w.open.len(), MAX_OPEN);
        assert!(open(&w).iter().all(|&(t, _)| t != 5));
        close_open(&mut w, None, false);
        assert!(w.open.is_empty());
        assert_eq!(w.spare_builders.len(), MAX_OPEN + 1);
        QUEUE.lock().spares.clear();
        QUEUE.lock().spare_logs.clear();
    }

    #[test]
    fn a_buffer_handed_to_the_writer_is_replaced_by_one_writing_time_in_the_same_unit() {
        let _q = QUEUE_TESTS.lock();
        output::own_trace_in_tests();
        WRITER_RUNS.store(true, Ordering::Release);
        let mut b = Buffer::new(alloc::vec![0u8; CHUNK_RAW].into_boxed_slice()).with_time_shift(10);
        b.alloc(5 << 10, AllocFunc::Malloc, 0x1000, 16, 1).unwrap();
        assert!(submit(ChunkKind::Events, 7, &mut b));
        assert!(b.is_empty());
        assert_eq!(b.time_shift(), 10);
        let Some(Queued::Chunk(kind, thread, queued)) = QUEUE.lock().chunks.pop_front() else {
            panic!("a chunk queued");
        };
        assert_eq!(
            (kind, thread, queued.records(), queued.time_shift()),
            (ChunkKind::Events, 7, 1, 10)
        );
        WRITER_RUNS.store(false, Ordering::Release);
    }
}
