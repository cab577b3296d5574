//! A thread's allocation events as recorded, before encoding: fixed-size records that
//! the program's thread only copies, and that the writer thread (`writer.rs`) encodes
//! into Events chunks (`ChunkBuilder`), compresses and writes. Encoding a record (its
//! rings of recent addresses, varints and columns) costs the allocating thread several
//! times what copying 40 bytes does; on a machine with a core to spare it is done there
//! instead. The chunks are the ones the thread would have built itself: the same
//! records, in the same order, with the same times.
//!
//! Only allocations, releases and reallocations go through the log; rarer records (heap
//! errors, the API's marks and regions, RSS samples) are written into the thread's own
//! builder after the log's records are encoded there ([`RawLog::encode`]), so the
//! thread's order is kept.

use alloc::boxed::Box;
use core::mem::MaybeUninit;
use memlens_trace::{AllocFunc, ChunkBuilder};

extern crate alloc;

/// Records a log holds: 8,192 x 40 bytes = 320 KiB, which encode to about one Events
/// chunk (64 KiB raw) of an allocation-dense program.
pub const RAW_EVENTS: usize = 8192;

/// One record: its time, three fields, and a word of kind, function and stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct RawEvent {
    ts: u64,
    a: u64,
    b: u64,
    c: u64,
    /// [`Kind`] in bits 0-1, the function in bits 2-7, the stack id above.
    meta: u64,
}

/// What a record is. A realloc takes two records: the call, then its block numbers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Kind {
    /// a: address, b: size, c: the block's number.
    Alloc = 0,
    /// a: address, b: the block's number (0: not known).
    Free = 1,
    /// a: old address, b: new address, c: size; the next record's a and b: the old and
    /// the new block's numbers.
    Realloc = 2,
}

#[inline(always)]
fn meta(kind: Kind, func: AllocFunc, stack: u32) -> u64 {
    kind as u64 | (func as u64) << 2 | u64::from(stack) << 8
}

/// Records, the first `len` of them written. The rest is left uninitialized: a thread
/// that records little touches few of its log's pages.
pub struct RawLog {
    events: Box<[MaybeUninit<RawEvent>]>,
    len: usize,
}

impl RawLog {
    pub fn new(capacity: usize) -> RawLog {
        RawLog {
            events: Box::new_uninit_slice(capacity),
            len: 0,
        }
    }

    /// Record `i`, one of the written ones.
    #[inline(always)]
    fn get(&self, i: usize) -> RawEvent {
        assert!(i < self.len);
        // SAFETY: records below `len` were written by `put` since the log was last
        // cleared.
        unsafe { self.events[i].assume_init() }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The events recorded from record `next` on (a realloc's two records are one).
    pub fn records_from(&self, next: usize) -> u64 {
        let records = next.min(self.len)..self.len;
        let reallocs = records
            .clone()
            .filter(|&i| self.get(i).meta & 3 == Kind::Realloc as u64)
            .count();
        (records.len() - reallocs) as u64
    }

    /// Room for `n` more records.
    #[inline(always)]
    fn room(&self, n: usize) -> bool {
        self.len + n <= self.events.len()
    }

    #[inline(always)]
    fn put(&mut self, e: RawEvent) {
        self.events[self.len].write(e);
        self.len += 1;
    }

    /// [`ChunkBuilder::alloc_numbered`]'s record; false when the log is full.
    #[inline(always)]
    pub fn alloc(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        size: u64,
        stack: u32,
        serial: u64,
    ) -> bool {
        if !self.room(1) {
            return false;
        }
        self.put(RawEvent {
            ts,
            a: addr,
            b: size,
            c: serial,
            meta: meta(Kind::Alloc, func, stack),
        });
        true
    }

    /// [`ChunkBuilder::free_numbered`]'s record; false when the log is full.
    #[inline(always)]
    pub fn free(&mut self, ts: u64, func: AllocFunc, addr: u64, stack: u32, serial: u64) -> bool {
        if !self.room(1) {
            return false;
        }
        self.put(RawEvent {
            ts,
            a: addr,
            b: serial,
            c: 0,
            meta: meta(Kind::Free, func, stack),
        });
        true
    }

    /// The last record, a release ([`RawLog::free`]), names the block numbered
    /// `serial` (0: none).
    #[inline(always)]
    pub fn name_last_release(&mut self, serial: u64) {
        let last = self.get(self.len - 1);
        debug_assert_eq!(last.meta & 3, Kind::Free as u64);
        self.events[self.len - 1].write(RawEvent { b: serial, ..last });
    }

    /// Take the last record back.
    pub fn take_back_last(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// [`ChunkBuilder::realloc_numbered`]'s record; false when the log is full.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn realloc(
        &mut self,
        ts: u64,
        func: AllocFunc,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
        [old_serial, serial]: [u64; 2],
    ) -> bool {
        if !self.room(2) {
            return false;
        }
        self.put(RawEvent {
            ts,
            a: old,
            b: new,
            c: size,
            meta: meta(Kind::Realloc, func, stack),
        });
        self.put(RawEvent {
            ts,
            a: old_serial,
            b: serial,
            c: 0,
            meta: 0,
        });
        true
    }

    /// Encode the records from `*next` on into `b`, as many as fit; `*next` moves past
    /// them. True when every record is encoded (then the caller clears the log), false
    /// when `b` is full (write it, clear it, and call again).
    pub fn encode<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        next: &mut usize,
        b: &mut ChunkBuilder<B>,
    ) -> bool {
        while *next < self.len {
            let e = self.get(*next);
            let func =
                AllocFunc::from_u8(((e.meta >> 2) & 0x3f) as u8).unwrap_or(AllocFunc::Malloc);
            let stack = (e.meta >> 8) as u32;
            let (written, used) = match e.meta & 3 {
                k if k == Kind::Alloc as u64 => {
                    (b.alloc_numbered(e.ts, func, e.a, e.b, stack, e.c), 1)
                }
                k if k == Kind::Free as u64 => (b.free_numbered(e.ts, func, e.a, stack, e.b), 1),
                _ => {
                    let serials = self.get(*next + 1);
                    (
                        b.realloc_numbered(
                            e.ts,
                            func,
                            e.a,
                            e.b,
                            e.c,
                            stack,
                            [serials.a, serials.b],
                        ),
                        2,
                    )
                }
            };
            if written.is_err() {
                return false;
            }
            *next += used;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use memlens_trace::WriteError;

    /// A recorded call, as the recorder makes them.
    #[derive(Clone, Copy)]
    enum Call {
        Alloc(u64, AllocFunc, u64, u64, u32, u64),
        Free(u64, AllocFunc, u64, u32, u64),
        Realloc(u64, AllocFunc, u64, u64, u64, u32, [u64; 2]),
    }

    /// A program's calls: blocks allocated, freed in another order, reallocated; the
    /// numbers consecutive with gaps (a new range), some releases by address only.
    fn calls(n: usize) -> Vec<Call> {
        let mut out = Vec::new();
        let mut live: Vec<(u64, u64)> = Vec::new();
        let (mut ts, mut serial, mut x) = (1u64 << 20, 1u64, 0x2545_f491_4f6c_dd1du64);
        let funcs = [AllocFunc::Malloc, AllocFunc::New, AllocFunc::NewArray];
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ts += (x >> 60) << 10;
            let stack = (x >> 40) as u32 & 0xff;
            let func = funcs[(x % 3) as usize];
            if x % 97 == 0 {
                serial += 4096;
            }
            match (x >> 8) % 8 {
                0..=3 => {
                    let addr = 0x5555_0000_0000 + ((x >> 20) & 0xffff) * 16;
                    out.push(Call::Alloc(
                        ts,
                        func,
                        addr,
                        (x >> 32) & 0x3ff,
                        stack,
                        serial,
                    ));
                    live.push((addr, serial));
                    serial += 1;
                }
                4..=6 if !live.is_empty() => {
                    let (addr, s) = live.swap_remove((x as usize >> 3) % live.len());
                    let named = if x % 5 == 0 { 0 } else { s };
                    out.push(Call::Free(
                        ts,
                        func,
                        addr,
                        if x % 11 == 0 { stack } else { 0 },
                        named,
                    ));
                }
                _ if !live.is_empty() => {
                    let i = (x as usize >> 3) % live.len();
                    let (old, s) = live[i];
                    let new = if x % 2 == 0 { old } else { old + 0x1000 };
                    out.push(Call::Realloc(
                        ts,
                        AllocFunc::Realloc,
                        old,
                        new,
                        x & 0xfff,
                        stack,
                        [s, serial],
                    ));
                    live[i] = (new, serial);
                    serial += 1;
                }
                _ => {}
            }
        }
        out
    }

    fn write(b: &mut ChunkBuilder<Vec<u8>>, c: Call) -> Result<(), WriteError> {
        match c {
            Call::Alloc(ts, f, a, size, stack, s) => b.alloc_numbered(ts, f, a, size, stack, s),
            Call::Free(ts, f, a, stack, s) => b.free_numbered(ts, f, a, stack, s),
            Call::Realloc(ts, f, old, new, size, stack, s) => {
                b.realloc_numbered(ts, f, old, new, size, stack, s)
            }
        }
    }

    fn log(l: &mut RawLog, c: Call) -> bool {
        match c {
            Call::Alloc(ts, f, a, size, stack, s) => l.alloc(ts, f, a, size, stack, s),
            Call::Free(ts, f, a, stack, s) => l.free(ts, f, a, stack, s),
            Call::Realloc(ts, f, old, new, size, stack, s) => {
                l.realloc(ts, f, old, new, size, stack, s)
            }
        }
    }

    fn builder(bytes: usize) -> ChunkBuilder<Vec<u8>> {
        ChunkBuilder::new(alloc::vec![0u8; bytes]).with_time_shift(10)
    }

    /// A finished chunk: its payload and its times.
    fn take(b: &mut ChunkBuilder<Vec<u8>>, into: &mut Vec<(Vec<u8>, u64, u64, u32)>) {
        let mut scratch = Vec::new();
        into.push((
            b.payload(&mut scratch).to_vec(),
            b.first_ts(),
            b.last_ts(),
            b.records(),
        ));
        b.clear();
    }

    #[test]
    fn a_log_encodes_into_the_chunks_the_thread_would_have_built() {
        let calls = calls(20_000);
        let mut direct = Vec::new();
        let mut b = builder(4096);
        for &c in &calls {
            if write(&mut b, c).is_err() {
                take(&mut b, &mut direct);
                write(&mut b, c).unwrap();
            }
        }
        take(&mut b, &mut direct);
        assert!(direct.len() > 20, "{} chunks", direct.len());

        let mut l = RawLog::new(40_000);
        for &c in &calls {
            assert!(log(&mut l, c));
        }
        let (mut logged, mut next) = (Vec::new(), 0);
        let mut b = builder(4096);
        while !l.encode(&mut next, &mut b) {
            take(&mut b, &mut logged);
        }
        take(&mut b, &mut logged);
        assert_eq!(next, l.len);
        assert!(logged == direct, "the same chunks, byte for byte");
    }

    #[test]
    fn a_full_log_takes_no_record_and_a_realloc_needs_two_places() {
        let mut l = RawLog::new(3);
        assert_eq!(l.records_from(0), 0);
        assert!(l.alloc(0, AllocFunc::Malloc, 0x1000, 8, 1, 1));
        assert!(l.free(0, AllocFunc::Free, 0x1000, 0, 1));
        assert!(!l.realloc(0, AllocFunc::Realloc, 0x2000, 0x3000, 8, 1, [2, 3]));
        assert!(l.free(0, AllocFunc::Free, 0x2000, 0, 2));
        assert!(!l.alloc(0, AllocFunc::Malloc, 0x1000, 8, 1, 4));
        assert!(!l.free(0, AllocFunc::Free, 0x1000, 0, 4));
        assert_eq!(l.len, 3);
        assert_eq!(l.records_from(0), 3);
        l.clear();
        assert!(l.is_empty());
        assert!(l.realloc(0, AllocFunc::Realloc, 0x2000, 0x3000, 8, 1, [2, 3]));
        assert_eq!(l.len, 2);
        assert!(l.free(0, AllocFunc::Free, 0x3000, 0, 3));
        assert_eq!(
            (l.records_from(0), l.records_from(2), l.records_from(3)),
            (2, 1, 0)
        );
    }
}
