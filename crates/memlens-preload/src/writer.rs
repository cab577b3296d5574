//! Compression and writing off the allocating threads.
//!
//! A thread whose event buffer is full (or the definitions buffer, when it fills) hands
//! the raw buffer to a FIFO of at most [`QUEUE_CHUNKS`] chunks and takes an empty spare
//! in exchange: the hot path never compresses. The memlens-rss thread (the *writer*, see
//! `thread::sampler_main`) is woken and compresses and writes the queued chunks in order.
//!
//! Order in the file is what readers rely on: every thread's chunks in its own order, and
//! definitions before the events that use them (a thread submits the definitions buffer
//! before its events). Whoever writes holds [`WRITING`] and pops from the front, so
//! chunks are written in the order they were queued. When the queue is full or there is
//! no writer thread (`--rss-interval 0`, a forked child before its own starts, after the
//! writer retired at exit), the submitting thread drains the queue itself and then writes
//! its own chunk, under the same lock: nothing overtakes. Exit, exec and fatal signals
//! flush every buffer and then [`drain`] synchronously; the End record comes last. A
//! process killed by SIGKILL loses what was queued (at most `QUEUE_CHUNKS` x 64 KiB of
//! raw events); its file ends at its last complete chunk, which readers accept.
//!
//! Lock order: META, then [`WRITING`], then [`QUEUE`], then `output::FILE` (and the
//! private allocator's, for a new spare buffer under `QUEUE`). The writer thread holds
//! `WRITING` for one chunk at a time; a program thread that finds the queue full waits
//! for that chunk, then drains the rest itself.

use crate::output::{self, CHUNK_RAW};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use memlens_trace::{ChunkBuilder, ChunkKind};

extern crate alloc;

/// Raw chunks that may wait for the writer: 16 x 64 KiB, and as many spare buffers.
pub const QUEUE_CHUNKS: usize = 16;

pub type Buffer = ChunkBuilder<Box<[u8]>>;

pub struct Queue {
    chunks: VecDeque<(ChunkKind, u32, Buffer)>,
    spares: Vec<Box<[u8]>>,
}

pub static QUEUE: spin::Mutex<Queue> = spin::Mutex::new(Queue {
    chunks: VecDeque::new(),
    spares: Vec::new(),
});

/// What compressing and writing needs; held by whoever does it.
pub struct Writing {
    /// The compressed chunk being written.
    out: Vec<u8>,
    /// The payload of an Events chunk, its columns put together (`ChunkBuilder::payload`).
    raw: Vec<u8>,
    /// The writer thread's zstd context, made on its first chunk.
    zstd: ZstdState,
}

/// Whether the zstd context was made; if making it failed, lz4 is used from then on
/// (instead of trying, and mapping memory, again for every chunk).
enum ZstdState {
    Untried,
    Ready(Zstd),
    Failed,
}

pub static WRITING: spin::Mutex<Writing> = spin::Mutex::new(Writing {
    out: Vec::new(),
    raw: Vec::new(),
    zstd: ZstdState::Untried,
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
            q.chunks.push_back((kind, thread, full));
            drop(q);
            WAKE.fetch_add(1, Ordering::Release);
            crate::sys::futex_wake(&WAKE);
            return true;
        }
    }
    write_now(kind, thread, b);
    b.clear();
    true
}

/// Write everything queued, then `b`, now, on the calling thread (with lz4: this may be
/// one of the program's threads).
pub fn write_now<B: AsRef<[u8]> + AsMut<[u8]>>(kind: ChunkKind, thread: u32, b: &ChunkBuilder<B>) {
    let mut w = WRITING.lock();
    drain_locked(&mut w, false);
    let w = &mut *w;
    output::encode_and_write(kind, thread, b, &mut w.out, &mut w.raw, None);
}

/// Write everything queued, on the calling thread (exit, exec), with lz4.
pub fn drain() {
    drain_locked(&mut WRITING.lock(), false);
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
    let Some((kind, thread, b)) = QUEUE.lock().chunks.pop_front() else {
        return false;
    };
    if use_zstd && matches!(w.zstd, ZstdState::Untried) {
        w.zstd = Zstd::new().map_or(ZstdState::Failed, ZstdState::Ready);
    }
    let zstd = match &mut w.zstd {
        ZstdState::Ready(z) if use_zstd => Some(z),
        _ => None,
    };
    output::encode_and_write(kind, thread, &b, &mut w.out, &mut w.raw, zstd);
    let mut buf = b;
    buf.clear();
    QUEUE.lock().spares.push(buf.into_buf());
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
    let mut q = QUEUE.lock();
    while let Some((_, _, mut b)) = q.chunks.pop_front() {
        b.clear();
        q.spares.push(b.into_buf());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_trace::AllocFunc;

    #[test]
    fn a_buffer_handed_to_the_writer_is_replaced_by_one_writing_time_in_the_same_unit() {
        output::own_trace_in_tests();
        WRITER_RUNS.store(true, Ordering::Release);
        let mut b = Buffer::new(alloc::vec![0u8; CHUNK_RAW].into_boxed_slice()).with_time_shift(10);
        b.alloc(5 << 10, AllocFunc::Malloc, 0x1000, 16, 1).unwrap();
        assert!(submit(ChunkKind::Events, 7, &mut b));
        assert!(b.is_empty());
        assert_eq!(b.time_shift(), 10);
        let (kind, thread, queued) = QUEUE.lock().chunks.pop_front().unwrap();
        assert_eq!(
            (kind, thread, queued.records(), queued.time_shift()),
            (ChunkKind::Events, 7, 1, 10)
        );
        WRITER_RUNS.store(false, Ordering::Release);
    }
}
