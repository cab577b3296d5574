//! The memlens trace format.
//!
//! A trace is one file per process: a fixed [`Header`] followed by a sequence of
//! independent, checksummed, compressed (lz4 or zstd) *chunks*. Each chunk holds records of one
//! [`ChunkKind`]:
//!
//! * `Meta` chunks carry definitions: modules (path, build-id, load bias, segments),
//!   de-duplicated stacks (frames as module id + offset) and thread names. A reader loads
//!   all of them first, so an event may reference a stack defined in a chunk written later.
//! * `Events` chunks carry the allocation events of one thread (or the process-level RSS
//!   samples), in time order; chunks of different threads overlap in time and the reader
//!   merges them by timestamp.
//! * The `End` chunk says how the process ended; a trace without one was cut short.
//!
//! The writer side ([`ChunkBuilder`], [`encode_chunk`], [`Header::encode`]) needs no
//! allocation and no `std`, so the preload library can use it inside a hooked `malloc`.
//! The reader side lives in [`reader`] (feature `std`).
//!
//! See `docs/TRACE_FORMAT.md` for the byte-level description.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod env;
#[cfg(feature = "std")]
pub mod key_table;
mod kinds;
// The decoders beside the encoders serve the reader, which needs `std`.
#[cfg_attr(not(feature = "std"), allow(dead_code, unused_imports))]
pub mod records;
pub mod ring;
pub mod varint;

#[cfg(feature = "std")]
pub mod inherit;
#[cfg(feature = "std")]
pub mod reader;
#[cfg(feature = "std")]
pub mod writer;

use alloc::string::String;
use alloc::vec::Vec;

pub use kinds::*;
pub use records::{
    EndRecord, Event, MetaRecord, Module, Notice, PyCode, RawFrame, ScanBlock, ScanRecord,
    ThreadInfo, PYTHON_MODULE,
};
pub use ring::RING_LEN;
use ring::{Ring, SerialRing};

/// First bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"MEMLENS\0";
/// Version of the format written by this crate. Readers refuse other versions by name.
pub const FORMAT_VERSION: u32 = 7;
/// The oldest format version readers still read (version 1: a separate function byte
/// after each event's tag).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// First four bytes of every chunk header.
pub const CHUNK_MAGIC: [u8; 4] = *b"CHNK";
/// Size of a chunk header in bytes.
pub const CHUNK_HEADER_LEN: usize = 40;
/// Largest uncompressed chunk payload a reader accepts (guards against hostile input).
pub const MAX_CHUNK_RAW_LEN: usize = 16 << 20;
/// Largest header payload a reader accepts.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Thread index used for process-level event chunks (RSS samples).
pub const PROCESS_THREAD: u32 = u32::MAX;

/// What kind of records a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkKind {
    Meta = 1,
    Events = 2,
    End = 3,
    /// The reachability scan at exit (see the `SCAN_*` tags).
    Scan = 4,
}

impl ChunkKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Meta),
            2 => Some(Self::Events),
            3 => Some(Self::End),
            4 => Some(Self::Scan),
            _ => None,
        }
    }
}

/// Record tags inside chunk payloads.
pub mod tag {
    // Events chunks, format version 1 (a func byte follows the tag); read, no longer
    // written.
    pub const ALLOC: u8 = 1;
    pub const FREE: u8 = 2;
    pub const REALLOC: u8 = 3;
    // Events chunks, format version 2: the allocating function in the tag's low 5 bits.
    /// Alloc: `ALLOC_FUNC | func`.
    pub const ALLOC_FUNC: u8 = 0x80;
    /// Free whose stack was not recorded (no stack field): `FREE_FUNC | func`.
    pub const FREE_FUNC: u8 = 0xA0;
    /// Free with its stack id: `FREE_STACK_FUNC | func`.
    pub const FREE_STACK_FUNC: u8 = 0xC0;
    /// Realloc: `REALLOC_FUNC | func`.
    pub const REALLOC_FUNC: u8 = 0xE0;
    /// The kind bits of a version 2 event tag (the rest is the function).
    pub const KIND_MASK: u8 = 0xE0;
    pub const RSS: u8 = 4;
    pub const HEAP_ERROR: u8 = 5;
    // Events chunks, format version 3: what the program told the recorder through its
    // API (`memlens.h`, the `memlens-api` crate, the pytest plugin).
    pub const REGION: u8 = 6;
    pub const THREAD_MARK: u8 = 7;
    pub const ASSERT: u8 = 8;
    // Events chunks, format version 7.
    /// The next allocation's number (0: none and no number for the allocations that
    /// follow, until the next such record), in the fields column; no time.
    pub const SERIAL: u8 = 9;
    // Meta chunks.
    pub const MODULE_LOAD: u8 = 16;
    pub const MODULE_UNLOAD: u8 = 17;
    pub const STACK: u8 = 18;
    pub const THREAD: u8 = 19;
    pub const NOTICE: u8 = 20;
    // Meta chunks, format version 3.
    pub const REGION_NAME: u8 = 21;
    pub const ASSERT_LABEL: u8 = 22;
    pub const REALTIME_THREAD: u8 = 23;
    // Meta chunks, format version 4.
    pub const PY_CODE: u8 = 24;
    // End chunk.
    pub const END: u8 = 32;
    // Scan chunks (the reachability scan at exit).
    pub const SCAN_BEGIN: u8 = 40;
    pub const SCAN_ROOT: u8 = 41;
    pub const SCAN_BLOCK: u8 = 42;
    pub const SCAN_END: u8 = 43;
    /// A snapshot's holder ("what holds the memory"), after its blocks.
    pub const SCAN_HOLDER: u8 = 44;
    /// The same with the source of a global's declaration (what snapshots now write).
    pub const SCAN_HOLDER_SOURCE: u8 = 45;
}

/// The fixed part of a trace: who was traced, when, and with which settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub pid: u32,
    pub ppid: u32,
    /// Pid of the traced process this one was forked from, 0 if none.
    pub forked_from: u32,
    /// Wall-clock time of the trace start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Executable path (`/proc/self/exe`).
    pub exe: String,
    /// Command line.
    pub argv: Vec<String>,
    pub page_size: u32,
    /// Interval between RSS samples, ns (0: none).
    pub rss_interval_ns: u64,
    /// Maximum recorded stack depth.
    pub max_depth: u32,
    /// Version of memlens that wrote the trace.
    pub writer: String,
    /// Arguments left out of `argv` because the command line is longer than the recorder
    /// keeps ([`ARGV_KEPT_BYTES`]): how many. 0 when `argv` is whole. (These two fields
    /// were appended to the header payload later; a header without them reads as 0.)
    pub argv_omitted: u32,
    /// The bytes of the arguments left out, each with its NUL.
    pub argv_omitted_bytes: u64,
    /// Poisson sampling by bytes: the mean interval, bytes, between sampled bytes (`memlens
    /// run --sample`); 0 when every block was recorded. A sampled trace holds only the
    /// blocks the sampler picked, and the analysis scales each of them by its weight
    /// (appended to the header after `argv_omitted_bytes`; absent reads as 0).
    pub sample_interval: u64,
    /// Set when `memlens attach` started the recording in a process that was already
    /// running (appended after `argv_omitted_bytes`, only in such traces).
    pub attach: Option<AttachStart>,
}

/// How a recording started by `memlens attach` began: blocks allocated before it are
/// unknown to the trace (their frees count as untracked, never as heap errors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachStart {
    /// Heap bytes the process had in use when recording started (glibc's `mallinfo2`:
    /// `uordblks + hblkhd`, so chunks in the thread caches count as in use).
    pub live_heap_bytes: u64,
}

/// Header flag bit: the recording was started by `memlens attach`.
const HEADER_FLAG_ATTACHED: u64 = 1;

/// How much of the command line (arguments with their NULs) a trace keeps: whole
/// arguments up to this size; the rest are counted in `Header::argv_omitted`.
pub const ARGV_KEPT_BYTES: usize = 64 * 1024;

/// Errors of the no_std writer side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The destination buffer is too small.
    NoSpace,
}

impl Header {
    /// Encode the header (magic, version, length, payload, crc) into `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Vec::new();
        varint::put_u64(&mut p, self.pid as u64);
        varint::put_u64(&mut p, self.ppid as u64);
        varint::put_u64(&mut p, self.forked_from as u64);
        varint::put_u64(&mut p, self.start_unix_ns);
        varint::put_bytes(&mut p, self.exe.as_bytes());
        varint::put_u64(&mut p, self.argv.len() as u64);
        for a in &self.argv {
            varint::put_bytes(&mut p, a.as_bytes());
        }
        varint::put_u64(&mut p, self.page_size as u64);
        varint::put_u64(&mut p, self.rss_interval_ns);
        varint::put_u64(&mut p, self.max_depth as u64);
        varint::put_bytes(&mut p, self.writer.as_bytes());
        varint::put_u64(&mut p, self.argv_omitted as u64);
        varint::put_u64(&mut p, self.argv_omitted_bytes);
        varint::put_u64(&mut p, self.sample_interval);
        if let Some(a) = self.attach {
            varint::put_u64(&mut p, HEADER_FLAG_ATTACHED);
            varint::put_u64(&mut p, a.live_heap_bytes);
        }
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&p);
        out.extend_from_slice(&crc32(&p).to_le_bytes());
    }

    /// Decode a header payload (the bytes between the length and the crc).
    pub fn decode_payload(p: &[u8]) -> Option<Header> {
        let mut c = varint::Cursor::new(p);
        let pid = c.u32()?;
        let ppid = c.u32()?;
        let forked_from = c.u32()?;
        let start_unix_ns = c.u64()?;
        let exe = c.string()?;
        let n = c.u64()?;
        if n > 1 << 16 {
            return None;
        }
        let mut argv = Vec::new();
        for _ in 0..n {
            argv.push(c.string()?);
        }
        let page_size = c.u32()?;
        let rss_interval_ns = c.u64()?;
        let max_depth = c.u32()?;
        let writer = c.string()?;
        // Appended later: absent from the headers of older traces.
        let (argv_omitted, argv_omitted_bytes) = if c.is_empty() {
            (0, 0)
        } else {
            (c.u32()?, c.u64()?)
        };
        // Appended after those: absent from traces written before sampling existed.
        let sample_interval = if c.is_empty() { 0 } else { c.u64()? };
        // Appended later still, only by `memlens attach`: flags, then the live heap.
        let attach = if c.is_empty() {
            None
        } else {
            let flags = c.u64()?;
            let live_heap_bytes = c.u64()?;
            (flags & HEADER_FLAG_ATTACHED != 0).then_some(AttachStart { live_heap_bytes })
        };
        Some(Header {
            pid,
            ppid,
            forked_from,
            start_unix_ns,
            exe,
            argv,
            page_size,
            rss_interval_ns,
            max_depth,
            writer,
            argv_omitted,
            argv_omitted_bytes,
            sample_interval,
            attach,
        })
    }
}

/// The start time (`start_unix_ns`) of a trace, read from its first bytes (signature,
/// version, length, then the payload's pid, ppid, forked_from and start time, which
/// every format version begins with). `None` if `prefix` does not start a trace.
pub fn header_start_unix_ns(prefix: &[u8]) -> Option<u64> {
    if prefix.len() < 16 || prefix[0..8] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(prefix[8..12].try_into().ok()?);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return None;
    }
    let mut c = varint::Cursor::new(&prefix[16..]);
    c.u32()?;
    c.u32()?;
    c.u32()?;
    c.u64()
}

/// A fast hasher for trusted u64 keys (heap addresses, block numbers): std's SipHash is
/// needlessly slow for them.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl core::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing, folded so the high bits (used by hashbrown) depend on all bits.
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Tables smaller than this are taken to stay in the CPU's caches while a pass runs: their
/// entries are not prefetched (the hint would cost more than the miss it saves). 4 MiB:
/// past a core's L2 cache, but an L3 hit is cheap enough (python_small's and map_nodes'
/// traces were as fast or faster than with 1 MiB).
pub const CACHED_BYTES: usize = 4 << 20;

/// Ask the CPU to bring the cache line at `p` in without waiting for it: a hint that reads
/// nothing and changes nothing. Tables of millions of entries, touched in an order the
/// hardware cannot guess, use it some events before they need an entry.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect the program can see, whatever the
    // address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] every cache line of `*v` (a value larger than a line, whose fields an
/// access is spread over).
#[inline(always)]
pub fn prefetch_value<T>(v: &T) {
    let start = v as *const T as usize;
    let last = start + core::mem::size_of::<T>().max(1) - 1;
    let mut line = start & !63;
    while line <= last {
        prefetch(line as *const u8);
        line += 64;
    }
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

/// Builds the uncompressed payload of one chunk in a fixed buffer, without allocating.
///
/// A chunk takes its layout from its first record. Meta, Scan and End records go one
/// after the other into one stream. Events (format 5) go into four columns, each in a
/// region of its own of the buffer: the tags, the time deltas, the addresses, and every
/// other field. Like values side by side compress better (docs/TRACE_FORMAT.md); the
/// payload puts the columns one after the other behind their lengths.
///
/// Timestamps and addresses are delta-encoded against the previous record of the chunk,
/// so [`ChunkBuilder::first_ts`] / [`ChunkBuilder::last_ts`] delimit the chunk in time.
pub struct ChunkBuilder<B> {
    buf: B,
    /// One stream: bytes written. Columns: unused.
    len: usize,
    layout: Layout,
    /// Columns: each column's write position and the end of its region.
    col: [usize; COLUMNS],
    col_end: [usize; COLUMNS],
    /// Columns: event records that surely fit before the room must be checked again
    /// (one check per batch instead of four per record).
    fits: u32,
    first_ts: u64,
    last_ts: u64,
    /// One stream: the previous address (Scan blocks).
    last_addr: u64,
    /// Columns: the previous released address (Free, Realloc's old block, HeapError).
    last_released: u64,
    /// Columns: the previous allocated address (Alloc, Realloc's new block).
    last_allocated: u64,
    /// Columns: the chunk's last released addresses (Free, Realloc's old block), where
    /// allocated addresses are looked up, and its last allocated ones, where released
    /// addresses are (`ring.rs`).
    released: Ring,
    allocated: Ring,
    /// Columns: the numbers of the allocations in `allocated`, slot for slot (format 7),
    /// with [`ADDRESS_UNKNOWN`] when the reader cannot know the slot's address.
    allocated_serials: SerialRing,
    /// Columns: for each slot of `released` whose address the reader cannot know (a
    /// release by number), that number; 0 for the others (format 7).
    released_serials: SerialRing,
    /// Columns: the number the next allocation takes without a Serial record (0: none).
    next_serial: u64,
    /// Columns: the number the previous release coded by its number named.
    last_freed_serial: u64,
    records: u32,
    /// Events: time deltas are written in units of `1 << time_shift` ns (format 6), and
    /// every timestamp is rounded down to a multiple of that unit
    /// ([`ChunkBuilder::with_time_shift`]).
    time_shift: u8,
}

/// How a [`ChunkBuilder`]'s records are laid out (see there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// No record yet.
    Empty,
    Stream,
    Columns,
}

/// Columns of an Events chunk, in payload order.
pub(crate) const COLUMNS: usize = 4;
pub(crate) mod column {
    /// Record tags.
    pub const TAG: usize = 0;
    /// Time deltas.
    pub const TIME: usize = 1;
    /// Addresses.
    pub const ADDR: usize = 2;
    /// Every other field (sizes, stack ids, function and kind bytes, ...).
    pub const FIELD: usize = 3;
}

/// In a writer's ring of allocation numbers: the reader knows the slot's block by its
/// number only (format 7).
const ADDRESS_UNKNOWN: u64 = 1 << 63;

/// The largest time unit an Events chunk may use: 2^20 ns, about a millisecond.
pub const MAX_TIME_SHIFT: u8 = 20;

/// Largest encoding of one event record's part in each column (an Assert's fields are
/// the longest: a kind byte and four varints; a Realloc's addresses: a flags byte in the
/// fields and two addresses with their low bytes).
const MAX_IN_COLUMN: [usize; COLUMNS] = [
    // An allocation may be preceded by a Serial record (its number in the fields).
    2,
    varint::MAX_LEN,
    2 * (varint::MAX_LEN + 1),
    2 + 4 * varint::MAX_LEN,
];

/// Bytes before the first column: the time unit's shift (format 6) and the lengths of
/// the first three columns (three varints).
const COLUMNS_HEADER: usize = 1 + 3 * varint::MAX_LEN;

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    pub fn new(buf: B) -> Self {
        ChunkBuilder {
            buf,
            len: 0,
            layout: Layout::Empty,
            col: [0; COLUMNS],
            col_end: [0; COLUMNS],
            fits: 0,
            first_ts: 0,
            last_ts: 0,
            last_addr: 0,
            last_released: 0,
            last_allocated: 0,
            released: Ring::new(),
            allocated: Ring::new(),
            allocated_serials: SerialRing::new(),
            released_serials: SerialRing::new(),
            next_serial: 0,
            last_freed_serial: 0,
            records: 0,
            time_shift: 0,
        }
    }

    /// Events with time in units of `1 << shift` ns (at most [`MAX_TIME_SHIFT`]): each
    /// event's timestamp is rounded down to a multiple of the unit, and its delta costs
    /// that many bits less. The recorder writes microsecond-sized units (its order cells
    /// keep events on one address that different threads make in one unit apart); tools
    /// that copy events keep 0, exact nanoseconds.
    pub fn with_time_shift(mut self, shift: u8) -> Self {
        self.time_shift = shift.min(MAX_TIME_SHIFT);
        self
    }

    /// The time unit's shift ([`ChunkBuilder::with_time_shift`]).
    pub fn time_shift(&self) -> u8 {
        self.time_shift
    }

    /// Bytes the buffer holds, used or not (0: a builder with no buffer yet, whose
    /// every write fails).
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().len()
    }

    /// Bytes of the payload (see [`ChunkBuilder::payload`]).
    pub fn len(&self) -> usize {
        match self.layout {
            Layout::Columns => {
                let n = self.column_lens();
                let mut hdr = [0u8; COLUMNS_HEADER];
                columns_header(self.time_shift, &n, &mut hdr) + n.iter().sum::<usize>()
            }
            _ => self.len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
    pub fn records(&self) -> u32 {
        self.records
    }
    pub fn first_ts(&self) -> u64 {
        self.first_ts
    }
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }

    fn column_lens(&self) -> [usize; COLUMNS] {
        let start = self.column_starts();
        core::array::from_fn(|i| self.col[i] - start[i])
    }

    /// Where each column's region begins (columns only).
    fn column_starts(&self) -> [usize; COLUMNS] {
        column_starts(&self.col_end)
    }

    /// The chunk's payload, as the file stores it (before compression). One stream is
    /// returned as it is; columns are put one after the other into `scratch` behind
    /// their lengths.
    pub fn payload<'a>(&'a self, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if self.layout != Layout::Columns {
            return &self.buf.as_ref()[..self.len];
        }
        let n = self.column_lens();
        let start = self.column_starts();
        let mut hdr = [0u8; COLUMNS_HEADER];
        let h = columns_header(self.time_shift, &n, &mut hdr);
        scratch.clear();
        scratch.extend_from_slice(&hdr[..h]);
        for i in 0..COLUMNS {
            scratch.extend_from_slice(&self.buf.as_ref()[start[i]..start[i] + n[i]]);
        }
        scratch
    }

    /// The buffer back, for reuse by a new builder.
    pub fn into_buf(self) -> B {
        self.buf
    }
    pub fn clear(&mut self) {
        self.len = 0;
        self.layout = Layout::Empty;
        self.col = [0; COLUMNS];
        self.col_end = [0; COLUMNS];
        self.fits = 0;
        self.first_ts = 0;
        self.last_ts = 0;
        self.last_addr = 0;
        self.last_released = 0;
        self.last_allocated = 0;
        self.released = Ring::new();
        self.allocated = Ring::new();
        self.allocated_serials = SerialRing::new();
        self.released_serials = SerialRing::new();
        self.next_serial = 0;
        self.last_freed_serial = 0;
        self.records = 0;
    }

    /// Lay the chunk out as columns if it has no record yet; false if it holds one
    /// stream (an event record cannot join Meta or Scan records).
    #[inline(always)]
    fn columns(&mut self) -> bool {
        match self.layout {
            Layout::Columns => true,
            Layout::Stream => false,
            Layout::Empty => {
                // Regions in proportion to what an allocation-dense program writes per
                // event (measured on the bench workloads): a tag byte, 1.5-2 bytes of time, 2-2.5
                // of address, 1-2 of fields.
                let total = self.buf.as_ref().len();
                let body = total.saturating_sub(COLUMNS_HEADER);
                let share = [5usize, 9, 12, 6];
                let mut end = COLUMNS_HEADER;
                for (e, s) in self.col_end.iter_mut().zip(share) {
                    end += body * s / 32;
                    *e = end;
                }
                self.col_end[COLUMNS - 1] = total.max(COLUMNS_HEADER);
                self.col = column_starts(&self.col_end);
                self.layout = Layout::Columns;
                true
            }
        }
    }

    /// How many more event records surely fit (the longest assumed in every column): a
    /// producer that writes several records per step checks before each step, so that
    /// none of them is refused for want of room halfway. An empty chunk takes the
    /// events' layout (columns); a chunk of Meta or Scan records has room for none.
    pub fn room_for_events(&mut self) -> u32 {
        if self.fits == 0 && !self.refit() {
            return 0;
        }
        self.fits
    }

    /// Columns: whether one more event record fits in every column (counted as
    /// written: call it once per record, just before writing it).
    #[inline(always)]
    fn event_fits(&mut self) -> bool {
        if self.fits == 0 && !self.refit() {
            return false;
        }
        self.fits -= 1;
        true
    }

    /// How many event records surely fit now, the longest record assumed in every
    /// column; false if not one does (or the chunk holds one stream).
    #[cold]
    fn refit(&mut self) -> bool {
        if !self.columns() {
            return false;
        }
        let fits = (0..COLUMNS)
            .map(|i| self.col_end[i].saturating_sub(self.col[i]) / MAX_IN_COLUMN[i])
            .min()
            .unwrap_or(0);
        self.fits = u32::try_from(fits).unwrap_or(u32::MAX);
        self.fits > 0
    }

    /// One stream: the room left, taking that layout if the chunk is empty; 0 if it
    /// holds columns (a Meta or Scan record cannot join events).
    #[inline]
    fn stream_room(&mut self) -> usize {
        match self.layout {
            Layout::Columns => return 0,
            Layout::Empty => self.layout = Layout::Stream,
            Layout::Stream => {}
        }
        self.buf.as_ref().len() - self.len
    }

    #[inline]
    fn put_u8(&mut self, v: u8) {
        self.buf.as_mut()[self.len] = v;
        self.len += 1;
    }
    #[inline]
    fn put(&mut self, v: u64) {
        self.len += varint::encode_u64(v, &mut self.buf.as_mut()[self.len..]);
    }
    /// The delta of `ts` against the previous record (time never goes backwards inside
    /// a chunk: clamped if the clock did); counts the record.
    #[inline(always)]
    fn ts_delta(&mut self, ts: u64) -> u64 {
        // In the chunk's time unit (format 6): rounded down to a multiple of it.
        let ts = ts & !((1u64 << self.time_shift) - 1);
        if self.records == 0 {
            self.first_ts = ts;
            self.last_ts = ts;
        }
        let ts = ts.max(self.last_ts);
        let d = ts - self.last_ts;
        self.last_ts = ts;
        self.records += 1;
        d
    }
    #[inline]
    fn put_addr(&mut self, addr: u64) {
        self.put(varint::addr_delta(self.last_addr, addr));
        if addr & 15 != 0 {
            self.put_u8((addr & 15) as u8);
        }
        self.last_addr = addr;
    }

    // Columns.
    #[inline(always)]
    fn col_u8(&mut self, c: usize, v: u8) {
        let at = self.col[c];
        self.buf.as_mut()[at] = v;
        self.col[c] = at + 1;
    }
    #[inline(always)]
    fn col_put(&mut self, c: usize, v: u64) {
        let at = self.col[c];
        self.col[c] = at + varint::encode_u64(v, &mut self.buf.as_mut()[at..]);
    }
    #[inline(always)]
    fn col_ts(&mut self, ts: u64) {
        let d = self.ts_delta(ts) >> self.time_shift;
        self.col_put(column::TIME, d);
    }
    /// An address coded against `last` (16-byte units, low bits apart), plus `bias`.
    #[inline(always)]
    fn col_addr_code(&mut self, last: u64, addr: u64, bias: u64) {
        self.col_put(column::ADDR, varint::addr_delta(last, addr) + bias);
        if addr & 15 != 0 {
            self.col_u8(column::ADDR, (addr & 15) as u8);
        }
    }
    /// A released block (Free, Realloc's old block, HeapError) at `addr`, numbered
    /// `serial` by its allocation's record in this trace (0: not known). Coded as its
    /// distance in the ring of recent allocations when it is there (the same block: its
    /// number agrees), else [`RING_LEN`] plus a code whose low bit says what follows:
    /// 0, its number against the previous number so coded (format 7: a block freed in an
    /// order unrelated to the allocations costs what that order costs, not what its
    /// address does); 1, its address against the previous released address.
    /// `remember`: it goes into the ring of recent releases (not a HeapError's, which
    /// releases nothing), marked with its number when the reader cannot know its address.
    #[inline(always)]
    fn col_released(&mut self, addr: u64, serial: u64, remember: bool) {
        if let Some(d) = self.allocated.distance(addr) {
            let there = self.allocated_serials.get(&self.allocated, d);
            if there & !ADDRESS_UNKNOWN == serial {
                self.col_put(column::ADDR, d);
                let unknown = there & ADDRESS_UNKNOWN != 0;
                if !unknown {
                    self.last_released = addr;
                }
                if remember {
                    self.remember_release(addr, if unknown { serial } else { 0 });
                }
                return;
            }
        }
        if serial != 0 {
            let d = varint::zigzag(serial.wrapping_sub(self.last_freed_serial) as i64);
            self.col_put(column::ADDR, RING_LEN as u64 + (d << 1));
            self.last_freed_serial = serial;
            if remember {
                self.remember_release(addr, serial);
            }
            return;
        }
        self.col_put(
            column::ADDR,
            RING_LEN as u64 + (varint::addr_delta(self.last_released, addr) << 1 | 1),
        );
        if addr & 15 != 0 {
            self.col_u8(column::ADDR, (addr & 15) as u8);
        }
        self.last_released = addr;
        if remember {
            self.remember_release(addr, 0);
        }
    }
    /// Into the ring of recent releases: `addr`, and `serial` when the reader knows the
    /// block by number only (0 otherwise).
    #[inline(always)]
    fn remember_release(&mut self, addr: u64, serial: u64) {
        self.released_serials.put(&self.released, serial);
        self.released.push(addr);
    }
    /// An allocated address, numbered `serial` (0: none): its distance in the ring of
    /// recent releases when it is there (format 7: unless the reader knows that release
    /// by number only and this block has none to be known by), else [`RING_LEN`] plus
    /// its code against the previous allocated address (the previous one the reader
    /// knows). It goes into the ring of recent allocations.
    #[inline(always)]
    fn col_allocated(&mut self, addr: u64, serial: u64) {
        let mut unknown = false;
        match self.released.distance(addr) {
            Some(d) if self.released_serials.get(&self.released, d) == 0 => {
                self.col_put(column::ADDR, d)
            }
            Some(d) if serial != 0 => {
                self.col_put(column::ADDR, d);
                unknown = true;
            }
            _ => self.col_addr_code(self.last_allocated, addr, RING_LEN as u64),
        }
        if !unknown {
            self.last_allocated = addr;
        }
        self.allocated_serials.put(
            &self.allocated,
            serial | if unknown { ADDRESS_UNKNOWN } else { 0 },
        );
        self.allocated.push(addr);
    }
    /// Before an allocation's record: a Serial record when its number (0: none) is not
    /// the one the reader would give it. Counted with the allocation's record (room for
    /// both is checked once, see [`MAX_IN_COLUMN`]).
    #[inline(always)]
    fn col_serial(&mut self, serial: u64) {
        if serial != self.next_serial {
            self.col_u8(column::TAG, tag::SERIAL);
            self.col_put(column::FIELD, serial);
        }
        self.next_serial = if serial == 0 { 0 } else { serial + 1 };
    }

    fn put_raw_bytes(&mut self, b: &[u8]) {
        self.put(b.len() as u64);
        self.buf.as_mut()[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

/// Where each column's region begins, given where each ends.
fn column_starts(end: &[usize; COLUMNS]) -> [usize; COLUMNS] {
    let mut s = [COLUMNS_HEADER; COLUMNS];
    s[1..].copy_from_slice(&end[..COLUMNS - 1]);
    s
}

/// Write the time unit's shift, then the lengths of the first three columns (the fourth
/// runs to the payload's end).
fn columns_header(time_shift: u8, n: &[usize; COLUMNS], out: &mut [u8; COLUMNS_HEADER]) -> usize {
    out[0] = time_shift;
    let mut at = 1;
    for &len in &n[..COLUMNS - 1] {
        at += varint::encode_u64(len as u64, &mut out[at..]);
    }
    at
}

/// Counters the recorder reports in the End record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndCounters {
    /// Releases of pointers the recorder never saw allocated (passed through untouched).
    pub untracked_frees: u64,
    /// Events lost because the trace could not be written.
    pub dropped_events: u64,
    /// Highest memory the recorder itself used, bytes.
    pub recorder_peak_bytes: u64,
    /// Failed writes to the trace file.
    pub write_errors: u64,
}

/// Largest compressed size of a chunk whose payload is `raw_len` bytes, header included.
pub const fn max_encoded_chunk_len(raw_len: usize) -> usize {
    // lz4_flex demands room for its worst case up front: 20 + 110% of the input.
    CHUNK_HEADER_LEN + 24 + raw_len + raw_len / 8
}

/// Chunk header flag bits: how the payload is stored (neither bit: raw).
pub mod chunk_flags {
    /// An lz4 block.
    pub const LZ4: u8 = 1;
    /// A zstd frame.
    pub const ZSTD: u8 = 2;
}

/// Frame one chunk: compress `raw` into `out` behind a header, with lz4. Returns the
/// bytes written. `out` must hold [`max_encoded_chunk_len`]`(raw.len())` bytes.
pub fn encode_chunk(
    kind: ChunkKind,
    thread: u32,
    first_ts: u64,
    last_ts: u64,
    raw: &[u8],
    out: &mut [u8],
) -> Result<usize, WriteError> {
    if out.len() < max_encoded_chunk_len(raw.len()) {
        return Err(WriteError::NoSpace);
    }
    let clen = lz4_flex::block::compress_into(raw, &mut out[CHUNK_HEADER_LEN..])
        .map_err(|_| WriteError::NoSpace)?;
    let times = (first_ts, last_ts);
    Ok(frame_chunk(
        kind,
        thread,
        times,
        raw.len(),
        chunk_flags::LZ4,
        clen,
        out,
    ))
}

/// Frame one chunk whose payload the caller stored at `out[CHUNK_HEADER_LEN..]`
/// (`stored_len` bytes, coded as `flags` says, `raw_len` bytes decoded): write the
/// header with its checksum. Returns the chunk's length.
pub fn frame_chunk(
    kind: ChunkKind,
    thread: u32,
    (first_ts, last_ts): (u64, u64),
    raw_len: usize,
    flags: u8,
    stored_len: usize,
    out: &mut [u8],
) -> usize {
    let (hdr, body) = out.split_at_mut(CHUNK_HEADER_LEN);
    let crc = crc32(&body[..stored_len]);
    hdr[0..4].copy_from_slice(&CHUNK_MAGIC);
    hdr[4] = kind as u8;
    hdr[5] = flags;
    hdr[6..8].copy_from_slice(&0u16.to_le_bytes());
    hdr[8..12].copy_from_slice(&thread.to_le_bytes());
    hdr[12..16].copy_from_slice(&(raw_len as u32).to_le_bytes());
    hdr[16..20].copy_from_slice(&(stored_len as u32).to_le_bytes());
    hdr[20..28].copy_from_slice(&first_ts.to_le_bytes());
    hdr[28..36].copy_from_slice(&last_ts.to_le_bytes());
    hdr[36..40].copy_from_slice(&crc.to_le_bytes());
    CHUNK_HEADER_LEN + stored_len
}

/// A parsed chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub kind: ChunkKind,
    pub flags: u8,
    pub thread: u32,
    pub raw_len: u32,
    pub payload_len: u32,
    pub first_ts: u64,
    pub last_ts: u64,
    pub crc: u32,
}

impl ChunkHeader {
    /// Parse a chunk header; `None` if it is not one (bad magic, kind, or sizes).
    pub fn parse(b: &[u8; CHUNK_HEADER_LEN]) -> Option<ChunkHeader> {
        if b[0..4] != CHUNK_MAGIC {
            return None;
        }
        let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let h = ChunkHeader {
            kind: ChunkKind::from_u8(b[4])?,
            flags: b[5],
            thread: u32at(8),
            raw_len: u32at(12),
            payload_len: u32at(16),
            first_ts: u64at(20),
            last_ts: u64at(28),
            crc: u32at(36),
        };
        if h.flags & !(chunk_flags::LZ4 | chunk_flags::ZSTD) != 0
            || h.raw_len as usize > MAX_CHUNK_RAW_LEN
            || h.payload_len as usize > max_encoded_chunk_len(h.raw_len as usize)
            || h.first_ts > h.last_ts
        {
            return None;
        }
        Some(h)
    }
}

/// Recompute, in place, the header checksum and the checksum of every complete chunk
/// that follows it, walking the framing as the reader does and stopping where it stops.
/// For tests and fuzzing: a mutated trace with its checksums refreshed reaches the record
/// decoders instead of being refused as damaged.
pub fn refresh_checksums(data: &mut [u8]) {
    if data.len() < 16 || data[0..8] != MAGIC {
        return;
    }
    let hlen = u32::from_le_bytes([data[12], data[13], data[14], data[15]]) as usize;
    let Some(mut off) = hlen.checked_add(20).filter(|&end| end <= data.len()) else {
        return;
    };
    let crc = crc32(&data[16..16 + hlen]);
    data[16 + hlen..off].copy_from_slice(&crc.to_le_bytes());
    while off + CHUNK_HEADER_LEN <= data.len() {
        if data[off..off + 4] != CHUNK_MAGIC {
            return;
        }
        let len = u32::from_le_bytes([
            data[off + 16],
            data[off + 17],
            data[off + 18],
            data[off + 19],
        ]) as usize;
        let start = off + CHUNK_HEADER_LEN;
        if len > data.len() - start {
            return;
        }
        let crc = crc32(&data[start..start + len]);
        data[off + 36..off + 40].copy_from_slice(&crc.to_le_bytes());
        off = start + len;
    }
}

#[cfg(test)]
mod tests {
    use super::{AllocFunc, Family};

    #[test]
    fn alloc_func_values_round_trip() {
        for v in 0..=255u8 {
            match AllocFunc::from_u8(v) {
                Some(f) => assert_eq!(f as u8, v),
                None => assert!(v as usize >= AllocFunc::ALL.len()),
            }
        }
        for f in AllocFunc::ALL {
            assert_eq!(f.cxx_operator().is_some(), f.family() != Family::C, "{f:?}");
        }
    }
}
