//! Streaming trace reader.
//!
//! [`TraceReader::open`] reads the header and indexes the chunk headers (seeking over the
//! payloads), so opening costs little even for huge traces. [`TraceReader::metadata`] loads
//! the definitions (modules, stacks, threads) and the end record. [`TraceReader::events`]
//! streams all events in time order, merging the per-thread chunks; it keeps only the chunks
//! that overlap the current time decoded, so memory stays bounded by (threads x chunk size).

/// The decoded records, defined with their encoders in `records.rs`.
pub use crate::records::{
    EndRecord, Event, MetaRecord, Module, Notice, RawFrame, ScanBlock, ScanRecord, ThreadInfo,
};
use crate::varint::Cursor;
use crate::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Why a file cannot be read as a trace. `Display` gives one sentence for a person.
#[derive(Debug)]
pub enum TraceError {
    Io {
        path: PathBuf,
        err: std::io::Error,
    },
    NotATrace {
        path: PathBuf,
    },
    Version {
        path: PathBuf,
        found: u32,
    },
    BadHeader {
        path: PathBuf,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { path, err } => write!(f, "cannot read {}: {}", path.display(), err),
            TraceError::NotATrace { path } => write!(f, "{} is not a memlens trace (it does not start with the memlens signature)", path.display()),
            TraceError::Version { path, found } => write!(
                f,
                "{} is a memlens trace in trace format version {}; this memlens reads version {} and every older one down to version {} (read it with the memlens that recorded it)",
                path.display(),
                found,
                FORMAT_VERSION,
                OLDEST_FORMAT_VERSION
            ),
            TraceError::BadHeader { path } => write!(f, "{} has a damaged trace header", path.display()),
            TraceError::Corrupt { path, offset, what } => {
                write!(f, "{} is damaged at byte {}: {}", path.display(), offset, what)
            }
        }
    }
}

impl std::error::Error for TraceError {}

/// Where and why a trace ends early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Bytes of the file that hold complete chunks.
    pub valid_bytes: u64,
    pub file_bytes: u64,
    /// Why: a partial chunk at the end, garbage after the last chunk, or no end record.
    pub reason: String,
}

#[derive(Clone, Debug)]
struct ChunkInfo {
    offset: u64,
    header: ChunkHeader,
}

/// All definitions of a trace.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub modules: HashMap<u32, Module>,
    /// Stack id -> frames (innermost first). Id 0 is the empty stack.
    pub stacks: HashMap<u32, Vec<RawFrame>>,
    pub threads: HashMap<u32, ThreadInfo>,
    pub end: Option<EndRecord>,
    /// The recorder's findings, in the order written.
    pub notices: Vec<Notice>,
    /// Region id -> name (the program's `memlens_region_enter`).
    pub region_names: HashMap<u32, String>,
    /// Assertion label id -> label (the program's `memlens_assert`).
    pub assert_labels: HashMap<u32, String>,
    /// Thread indexes that marked themselves real-time at least once.
    pub realtime_threads: std::collections::HashSet<u32>,
    /// Python code id -> code object (the Python frames of stacks).
    pub py_codes: HashMap<u32, crate::PyCode>,
    /// A forked child's trace: the parent's trace its inherited blocks come from, and
    /// how many blocks and bytes it inherited (`inherit.rs`).
    pub inherited: Option<InheritedFrom>,
}

/// Where a forked child's inherited blocks come from ([`Metadata::inherited`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InheritedFrom {
    pub parent_trace: PathBuf,
    pub blocks: u64,
    pub bytes: u64,
}

pub struct TraceReader {
    path: PathBuf,
    file: File,
    header: Header,
    chunks: Vec<ChunkInfo>,
    truncation: Option<Truncation>,
    file_bytes: u64,
    /// The format version the trace was written in (how its addresses are coded).
    version: u32,
    /// A forked child's inheritance from its parent's trace (`inherit.rs`), found once.
    inherited: std::sync::OnceLock<Option<crate::inherit::Inherited>>,
}

/// A trace file whose signature, version and header were checked, its chunks not yet
/// indexed.
struct Checked {
    path: PathBuf,
    file: File,
    file_bytes: u64,
    version: u32,
    header: Header,
    /// Where the chunks start.
    chunks_at: u64,
}

impl TraceReader {
    /// Open a trace: check the signature, version and header, and index the chunks.
    pub fn open(path: impl AsRef<Path>) -> Result<TraceReader, TraceError> {
        let c = Self::check(path.as_ref())?;
        let mut reader = TraceReader {
            path: c.path,
            file: c.file,
            header: c.header,
            chunks: Vec::new(),
            truncation: None,
            file_bytes: c.file_bytes,
            version: c.version,
            inherited: std::sync::OnceLock::new(),
        };
        reader.index(c.chunks_at)?;
        Ok(reader)
    }

    /// A trace's header alone (checked as [`TraceReader::open`] checks it), without
    /// indexing its chunks.
    pub fn read_header(path: impl AsRef<Path>) -> Result<Header, TraceError> {
        Ok(Self::check(path.as_ref())?.header)
    }

    /// Open `path` and check its signature, version and header.
    fn check(path: &Path) -> Result<Checked, TraceError> {
        let path = path.to_path_buf();
        let io = |err| TraceError::Io {
            path: path.clone(),
            err,
        };
        // stat before open: opening a pipe would wait for a writer. The reader seeks, so
        // a trace must be a regular file.
        let meta = std::fs::metadata(&path).map_err(io)?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "it is a directory"
            } else {
                "it is not a regular file (a trace is read by offset, so pipes and devices cannot be read)"
            };
            return Err(TraceError::Io {
                path,
                err: std::io::Error::other(what),
            });
        }
        let file = File::open(&path).map_err(io)?;
        let file_bytes = file.metadata().map_err(io)?.len();
        let mut fixed = [0u8; 16];
        if file_bytes < 16 {
            return Err(TraceError::NotATrace { path });
        }
        file.read_exact_at(&mut fixed, 0).map_err(io)?;
        if fixed[0..8] != MAGIC {
            return Err(TraceError::NotATrace { path });
        }
        let version = u32::from_le_bytes(fixed[8..12].try_into().unwrap());
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(TraceError::Version {
                path,
                found: version,
            });
        }
        let hlen = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as u64;
        if hlen as usize > MAX_HEADER_LEN || 16 + hlen + 4 > file_bytes {
            return Err(TraceError::BadHeader { path });
        }
        let mut hp = vec![0u8; hlen as usize + 4];
        file.read_exact_at(&mut hp, 16).map_err(io)?;
        let crc = u32::from_le_bytes(hp[hlen as usize..].try_into().unwrap());
        let payload = &hp[..hlen as usize];
        if crc32(payload) != crc {
            return Err(TraceError::BadHeader { path });
        }
        let header = Header::decode_payload(payload)
            .ok_or_else(|| TraceError::BadHeader { path: path.clone() })?;
        Ok(Checked {
            path,
            file,
            file_bytes,
            version,
            header,
            chunks_at: 16 + hlen + 4,
        })
    }

    fn index(&mut self, mut off: u64) -> Result<(), TraceError> {
        let mut saw_end = false;
        let mut hb = [0u8; CHUNK_HEADER_LEN];
        while off < self.file_bytes {
            if off + CHUNK_HEADER_LEN as u64 > self.file_bytes {
                self.truncate(off, "the last chunk is incomplete (the process was killed or the disk filled up while writing)");
                break;
            }
            self.file
                .read_exact_at(&mut hb, off)
                .map_err(|err| TraceError::Io {
                    path: self.path.clone(),
                    err,
                })?;
            let Some(h) = ChunkHeader::parse(&hb) else {
                self.truncate(off, "the data after the last complete chunk is not a chunk");
                break;
            };
            let end = off + CHUNK_HEADER_LEN as u64 + h.payload_len as u64;
            if end > self.file_bytes {
                self.truncate(off, "the last chunk is incomplete (the process was killed or the disk filled up while writing)");
                break;
            }
            saw_end |= h.kind == ChunkKind::End;
            self.chunks.push(ChunkInfo {
                offset: off,
                header: h,
            });
            off = end;
        }
        if !saw_end && self.truncation.is_none() {
            self.truncate(
                self.file_bytes,
                "it has no end record (the process was killed, is still running, or its last data was never flushed)",
            );
        }
        Ok(())
    }

    fn truncate(&mut self, valid: u64, reason: &str) {
        self.truncation = Some(Truncation {
            valid_bytes: valid,
            file_bytes: self.file_bytes,
            reason: reason.to_string(),
        });
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// `Some` when the trace was cut short; the rest of the data is still usable.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }
    /// Number of event chunks (for progress reporting).
    pub fn event_chunk_count(&self) -> usize {
        self.chunks
            .iter()
            .filter(|c| c.header.kind == ChunkKind::Events)
            .count()
    }
    /// The time of the last event, from the chunk index (0 if there is none).
    pub fn last_event_ts(&self) -> u64 {
        self.chunks
            .iter()
            .filter(|c| c.header.kind == ChunkKind::Events)
            .map(|c| c.header.last_ts)
            .max()
            .unwrap_or(0)
    }
    /// From the first to the last heap event (allocations, releases, heap errors: the
    /// chunks of the program's threads, not the RSS samples), from the chunk index; `None`
    /// if there is none.
    pub fn heap_event_span(&self) -> Option<(u64, u64)> {
        let heap = self
            .chunks
            .iter()
            .filter(|c| c.header.kind == ChunkKind::Events && c.header.thread != PROCESS_THREAD);
        let first = heap.clone().map(|c| c.header.first_ts).min()?;
        let last = heap.map(|c| c.header.last_ts).max()?;
        Some((first, last))
    }
    /// Total uncompressed bytes of event chunks (for progress reporting).
    pub fn event_bytes(&self) -> u64 {
        self.chunks
            .iter()
            .filter(|c| c.header.kind == ChunkKind::Events)
            .map(|c| c.header.raw_len as u64)
            .sum()
    }

    fn corrupt(&self, offset: u64, what: &'static str) -> TraceError {
        TraceError::Corrupt {
            path: self.path.clone(),
            offset,
            what,
        }
    }

    /// Read, check and decompress one chunk's payload.
    fn load(&self, c: &ChunkInfo) -> Result<Vec<u8>, TraceError> {
        let mut comp = vec![0u8; c.header.payload_len as usize];
        self.file
            .read_exact_at(&mut comp, c.offset + CHUNK_HEADER_LEN as u64)
            .map_err(|err| TraceError::Io {
                path: self.path.clone(),
                err,
            })?;
        if crc32(&comp) != c.header.crc {
            return Err(self.corrupt(c.offset, "a chunk's checksum does not match its contents"));
        }
        let mut raw = vec![0u8; c.header.raw_len as usize];
        let decoded = match c.header.flags & (chunk_flags::LZ4 | chunk_flags::ZSTD) {
            0 => {
                if comp.len() != raw.len() {
                    return Err(self.corrupt(c.offset, "a chunk's length is inconsistent"));
                }
                return Ok(comp);
            }
            chunk_flags::LZ4 => lz4_flex::block::decompress_into(&comp, &mut raw).ok(),
            chunk_flags::ZSTD => zstd_safe::decompress(&mut raw[..], &comp).ok(),
            _ => None,
        };
        match decoded {
            Some(n) if n == raw.len() => Ok(raw),
            _ => Err(self.corrupt(c.offset, "a chunk does not decompress")),
        }
    }

    /// Whether the trace holds an exit scan.
    pub fn has_scan(&self) -> bool {
        self.chunks.iter().any(|c| c.header.kind == ChunkKind::Scan)
    }

    /// The exit scan's records, streamed chunk by chunk (`None` items never appear; a
    /// damaged chunk ends the stream with an error).
    pub fn scan(&self) -> ScanStream<'_> {
        ScanStream {
            reader: self,
            chunks: self
                .chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.header.kind == ChunkKind::Scan)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
                .into_iter(),
            decoded: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// Another reader of the same trace, for another thread: the file reopened (reads are
    /// positioned, so the two never disturb each other), the index and what a forked
    /// child inherited copied rather than found again.
    pub fn try_clone(&self) -> Result<TraceReader, TraceError> {
        let file = self.file.try_clone().map_err(|err| TraceError::Io {
            path: self.path.clone(),
            err,
        })?;
        // Found here first (the events need it), so that neither reader finds it again.
        let _ = self.inherited();
        let inherited = std::sync::OnceLock::new();
        if let Some(i) = self.inherited.get() {
            let _ = inherited.set(i.clone());
        }
        Ok(TraceReader {
            path: self.path.clone(),
            file,
            header: self.header.clone(),
            chunks: self.chunks.clone(),
            truncation: self.truncation.clone(),
            file_bytes: self.file_bytes,
            version: self.version,
            inherited,
        })
    }

    /// Load every definition (modules, stacks, threads) and the end record; for a forked
    /// child's trace, with the stacks (and their modules and code objects) of the blocks
    /// it inherited ([`TraceReader::inherited`]).
    pub fn metadata(&self) -> Result<Metadata, TraceError> {
        let mut md = self.own_metadata()?;
        if let Some(inh) = self.inherited_with(&md) {
            inh.define(&mut md);
        }
        Ok(md)
    }

    /// What this trace inherited from the trace of the process it was forked from, found
    /// beside it: `None` when it was not forked, or that trace is not there.
    pub fn inherited(&self) -> Option<&crate::inherit::Inherited> {
        if self.header.forked_from == 0 {
            return None;
        }
        match self.inherited.get() {
            Some(i) => i.as_ref(),
            None => {
                let md = self.own_metadata().ok()?;
                self.inherited_with(&md)
            }
        }
    }

    fn inherited_with(&self, own: &Metadata) -> Option<&crate::inherit::Inherited> {
        if self.header.forked_from == 0 {
            return None;
        }
        self.inherited
            .get_or_init(|| crate::inherit::inherited(self, own))
            .as_ref()
    }

    /// The trace's own definitions and end record, without what a forked child
    /// inherited (finding that replays the parent's trace up to the fork: use this when
    /// only the trace's own records are wanted, such as how it ended).
    pub fn own_metadata(&self) -> Result<Metadata, TraceError> {
        let mut md = Metadata::default();
        md.stacks.insert(0, Vec::new());
        for c in self
            .chunks
            .iter()
            .filter(|c| matches!(c.header.kind, ChunkKind::Meta | ChunkKind::End))
        {
            let raw = self.load(c)?;
            decode_meta(&raw, &mut md)
                .ok_or_else(|| self.corrupt(c.offset, "a definition record is malformed"))?;
        }
        Ok(md)
    }

    /// All events in time order (ties: file order); a forked child's first are the
    /// allocations of the blocks it inherited ([`TraceReader::inherited`]).
    pub fn events(&self) -> EventStream<'_> {
        let inherited = self.inherited().map_or(&[][..], |i| &i.events[..]);
        let mut pending: Vec<usize> = (0..self.chunks.len())
            .filter(|&i| self.chunks[i].header.kind == ChunkKind::Events)
            .collect();
        pending.sort_by_key(|&i| (self.chunks[i].header.first_ts, i));
        pending.reverse(); // pop from the back = earliest first
        EventStream {
            reader: self,
            pending,
            active: BinaryHeap::new(),
            decoded: Vec::new(),
            decoded_bytes: 0,
            decoded_limit: decoded_limit(self.file_bytes),
            failed: false,
            chunks_done: 0,
            numbered: NumberedBlocks::default(),
            inherited,
        }
    }
}

/// The least memory the event stream may hold in decoded events at once (the chunks
/// that overlap the current time), whatever the trace's size.
pub const MAX_DECODED_BYTES: usize = 2 << 30;

/// Decoded events held at once, at most: 2 GiB, or 64 times the file for a larger one.
/// Events decode to some 10-50 times their compressed size, so a real trace never needs
/// more than its whole file decoded; a crafted one whose chunks all overlap could ask
/// for far more (zstd frames decode to up to 16 MiB each), and is refused instead.
fn decoded_limit(file_bytes: u64) -> usize {
    MAX_DECODED_BYTES.max(usize::try_from(file_bytes.saturating_mul(64)).unwrap_or(usize::MAX))
}

fn decode_meta(raw: &[u8], md: &mut Metadata) -> Option<()> {
    let mut c = Cursor::new(raw);
    while !c.is_empty() {
        match records::decode_meta(&mut c)? {
            MetaRecord::ModuleLoad(m) => {
                md.modules.insert(m.id, m);
            }
            MetaRecord::ModuleUnload { ts, id } => {
                if let Some(m) = md.modules.get_mut(&id) {
                    m.unloaded_ns = Some(ts);
                }
            }
            MetaRecord::Stack { id, frames } => {
                md.stacks.insert(id, frames);
            }
            MetaRecord::Thread(t) => {
                md.threads.insert(t.index, t);
            }
            MetaRecord::Notice(n) => md.notices.push(n),
            MetaRecord::RegionName { id, name } => {
                md.region_names.insert(id, name);
            }
            MetaRecord::AssertLabel { id, label } => {
                md.assert_labels.insert(id, label);
            }
            MetaRecord::RealtimeThread { index } => {
                md.realtime_threads.insert(index);
            }
            MetaRecord::PyCode(code) => {
                md.py_codes.insert(code.id, code);
            }
            MetaRecord::End(e) => md.end = Some(e),
        }
    }
    Some(())
}

/// Decode all records of one Scan chunk.
fn decode_scan(raw: &[u8], version: u32, out: &mut Vec<ScanRecord>) -> Option<()> {
    let mut c = Cursor::new(raw);
    let mut d = records::ScanDecoder::new(version);
    while !c.is_empty() {
        out.push(d.decode_scan(&mut c)?);
    }
    Some(())
}

/// Iterator over the exit scan's records; see [`TraceReader::scan`].
pub struct ScanStream<'r> {
    reader: &'r TraceReader,
    chunks: std::vec::IntoIter<usize>,
    decoded: std::vec::IntoIter<ScanRecord>,
    failed: bool,
}

impl Iterator for ScanStream<'_> {
    type Item = Result<ScanRecord, TraceError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(r) = self.decoded.next() {
                return Some(Ok(r));
            }
            let i = self.chunks.next()?;
            let c = &self.reader.chunks[i];
            let mut out = Vec::new();
            let res = self.reader.load(c).and_then(|raw| {
                decode_scan(&raw, self.reader.version, &mut out)
                    .ok_or_else(|| self.reader.corrupt(c.offset, "a scan record is malformed"))
            });
            if let Err(e) = res {
                self.failed = true;
                return Some(Err(e));
            }
            self.decoded = out.into_iter();
        }
    }
}

/// Format 7's block numbers, read in time order: the live blocks' numbers and addresses,
/// and each thread's last releases of numbered blocks (an allocation of the address a
/// release by number freed names that release).
struct NumberedBlocks {
    /// The live blocks' (number, address), by number modulo its length: most blocks are
    /// released soon after they are allocated, and never reach `live`. A block whose slot
    /// a later number takes moves there.
    recent: Box<[(u64, u64)]>,
    live: crate::key_table::KeyTable<u64>,
    /// Per thread index: its last [`crate::RING_LEN`] releases by number (number,
    /// address), and where the next goes.
    released: Vec<([(u64, u64); crate::RING_LEN], usize)>,
}

/// Slots of [`NumberedBlocks::recent`] (numbers come in ranges of 4096 per thread; 2 MiB).
const RECENT_NUMBERS: usize = 1 << 17;

impl Default for NumberedBlocks {
    fn default() -> Self {
        NumberedBlocks {
            recent: vec![(0, 0); RECENT_NUMBERS].into_boxed_slice(),
            live: Default::default(),
            released: Vec::new(),
        }
    }
}

/// The slot of [`NumberedBlocks::recent`] that block `number` takes.
#[inline(always)]
fn recent_slot(number: u64) -> usize {
    number as usize % RECENT_NUMBERS
}

/// How many events of a chunk ahead the stream prefetches a release's number slot.
const NUMBERS_AHEAD: usize = 16;

/// Thread indices above this keep no releases (a damaged trace).
const MAX_NUMBERED_THREADS: usize = 1 << 16;

impl NumberedBlocks {
    /// Remember live block `number` at `addr`.
    #[inline]
    fn insert(&mut self, number: u64, addr: u64) {
        let slot = &mut self.recent[recent_slot(number)];
        let (old, old_addr) = core::mem::replace(slot, (number, addr));
        if old != 0 && old != number {
            self.live.insert(old, old_addr);
        }
    }

    /// Ask the CPU for the slots of [`NumberedBlocks::recent`] that an event's release
    /// and allocation will use (a hint). The numbers of a chunk's events are decoded with
    /// them, so the stream asks [`NUMBERS_AHEAD`] events early: blocks are released in
    /// another order than they were numbered, and the 2 MiB of slots do not stay in the
    /// cache.
    #[inline]
    fn prefetch(&self, n: &records::Numbers) {
        for number in [n.released, n.allocated] {
            if number != 0 {
                crate::prefetch(&self.recent[recent_slot(number)]);
            }
        }
    }

    /// The second step of [`NumberedBlocks::prefetch`], [`NUMBERS_AHEAD`] / 2 events
    /// early, when the `recent` slots have arrived: the slot of [`NumberedBlocks::live`]
    /// that a release will take its address from (its number is not in `recent`), or
    /// that an allocation will move the number it displaces from `recent` to. With many
    /// threads' blocks live, most numbers go that way.
    #[inline]
    fn prefetch_then(&self, n: &records::Numbers) {
        if n.released != 0 && self.recent[recent_slot(n.released)].0 != n.released {
            self.live.prefetch(n.released);
        }
        if n.allocated != 0 {
            let displaced = self.recent[recent_slot(n.allocated)].0;
            if displaced != 0 && displaced != n.allocated {
                self.live.prefetch(displaced);
            }
        }
    }

    /// Forget live block `number`: its address, if it was live.
    #[inline]
    fn remove(&mut self, number: u64) -> Option<u64> {
        let slot = &mut self.recent[recent_slot(number)];
        if slot.0 == number {
            return Some(core::mem::take(slot).1);
        }
        self.live.remove(number)
    }

    /// A release that named its block by number gets the block's address, an allocation
    /// at a released block's address gets it, and an allocation's number is remembered
    /// (until its block's release).
    #[inline]
    fn resolve(&mut self, e: &mut Event, n: records::Numbers) {
        let thread = match *e {
            Event::Alloc { thread, .. }
            | Event::Free { thread, .. }
            | Event::Realloc { thread, .. } => thread as usize,
            _ => return,
        };
        if n.released != 0 {
            // A number no allocation took (a damaged trace): a release of nothing.
            let addr = self.remove(n.released).unwrap_or(0);
            if let Event::Free { addr: a, .. } | Event::Realloc { old: a, .. } = e {
                if *a == 0 {
                    *a = addr;
                }
            }
            if thread < MAX_NUMBERED_THREADS {
                if self.released.len() <= thread {
                    self.released
                        .resize(thread + 1, ([(0, 0); crate::RING_LEN], 0));
                }
                let (ring, next) = &mut self.released[thread];
                ring[*next] = (n.released, addr);
                *next = (*next + 1) % crate::RING_LEN;
            }
        }
        if n.reused != 0 {
            let addr = self
                .released
                .get(thread)
                .and_then(|(ring, _)| ring.iter().find(|(s, _)| *s == n.reused))
                .map_or(0, |&(_, a)| a);
            if let Event::Alloc { addr: a, .. } | Event::Realloc { new: a, .. } = e {
                *a = addr;
            }
        }
        if n.allocated != 0 {
            match *e {
                Event::Alloc { addr, .. } | Event::Realloc { new: addr, .. } if addr != 0 => {
                    self.insert(n.allocated, addr);
                }
                _ => {}
            }
        }
    }
}

/// Iterator over the events of a trace in time order; see [`TraceReader::events`].
pub struct EventStream<'r> {
    reader: &'r TraceReader,
    /// Chunk indices not yet opened, latest first.
    pending: Vec<usize>,
    /// (next event ts, chunk index) of opened chunks.
    active: BinaryHeap<Reverse<(u64, usize, usize)>>,
    /// Decoded events of opened chunks: slot -> (events, position, their numbers
    /// (format 7; empty before)).
    decoded: Vec<(Vec<Event>, usize, Vec<records::Numbers>)>,
    /// Bytes the slots' event vectors hold (their capacities), and the most allowed.
    decoded_bytes: usize,
    decoded_limit: usize,
    failed: bool,
    chunks_done: usize,
    /// Format 7: the live blocks' numbers, for the releases that name a block by number.
    numbered: NumberedBlocks,
    /// The inherited blocks' allocations not yet given.
    inherited: &'r [Event],
}

impl EventStream<'_> {
    /// Event chunks fully consumed so far (for progress bars).
    pub fn chunks_done(&self) -> usize {
        self.chunks_done
    }

    /// Hold at most `bytes` of decoded events at once instead of [`MAX_DECODED_BYTES`]
    /// (tests, tools with a tighter budget).
    pub fn with_decoded_limit(mut self, bytes: usize) -> Self {
        self.decoded_limit = bytes;
        self
    }

    fn open_next(&mut self) -> Result<(), TraceError> {
        let i = self.pending.pop().expect("caller checked");
        let c = &self.reader.chunks[i];
        let raw = self.reader.load(c)?;
        // Reuse a finished slot's allocation when there is one.
        let slot = self
            .decoded
            .iter()
            .position(|(ev, pos, _)| *pos >= ev.len() && ev.capacity() > 0);
        let slot = match slot {
            Some(s) => s,
            None => {
                self.decoded.push((Vec::new(), 0, Vec::new()));
                self.decoded.len() - 1
            }
        };
        let (ev, pos, numbers) = &mut self.decoded[slot];
        ev.clear();
        numbers.clear();
        *pos = 0;
        let before = ev.capacity() * core::mem::size_of::<Event>()
            + numbers.capacity() * core::mem::size_of::<records::Numbers>();
        records::decode_events(
            &raw,
            self.reader.version,
            c.header.thread,
            c.header.first_ts,
            ev,
            numbers,
        )
        .ok_or_else(|| {
            self.reader
                .corrupt(c.offset, "an event record is malformed")
        })?;
        self.decoded_bytes += ev.capacity() * core::mem::size_of::<Event>()
            + numbers.capacity() * core::mem::size_of::<records::Numbers>()
            - before;
        if self.decoded_bytes > self.decoded_limit {
            return Err(self.reader.corrupt(
                c.offset,
                "its event chunks overlap in time so much that reading them in order needs more memory than any recording does (a recorder writes at most 64 KiB per thread and chunk)",
            ));
        }
        if let Some(first) = ev.first() {
            self.active.push(Reverse((first.ts(), i, slot)));
        } else {
            self.chunks_done += 1;
        }
        Ok(())
    }
}

impl Iterator for EventStream<'_> {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some((&e, rest)) = self.inherited.split_first() {
            self.inherited = rest;
            return Some(Ok(e));
        }
        loop {
            // Open every chunk that starts no later than the earliest pending event.
            let open = match (self.pending.last(), self.active.peek()) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(&i), Some(Reverse((ts, _, _)))) => {
                    self.reader.chunks[i].header.first_ts <= *ts
                }
            };
            if !open {
                break;
            }
            if let Err(e) = self.open_next() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        // The earliest chunk's next event. Its following event replaces it in place (one
        // sift down, usually no move at all) instead of a pop and a push.
        let mut top = self.active.peek_mut()?;
        let Reverse((_, chunk, slot)) = *top;
        let (ev, pos, numbers) = &mut self.decoded[slot];
        let mut e = ev[*pos];
        if let Some(&n) = numbers.get(*pos) {
            self.numbered.resolve(&mut e, n);
            if let Some(ahead) = numbers.get(*pos + NUMBERS_AHEAD) {
                self.numbered.prefetch(ahead);
            }
            if let Some(ahead) = numbers.get(*pos + NUMBERS_AHEAD / 2) {
                self.numbered.prefetch_then(ahead);
            }
        }
        *pos += 1;
        if *pos < ev.len() {
            *top = Reverse((ev[*pos].ts(), chunk, slot));
        } else {
            std::collections::binary_heap::PeekMut::pop(top);
            self.chunks_done += 1;
        }
        Some(Ok(e))
    }
}

#[cfg(test)]
mod numbered_tests {
    use super::*;

    /// Numbers that share a slot of the recent table (and more live blocks than it has
    /// slots) are all found, each once.
    #[test]
    fn every_live_number_is_found_once() {
        let mut n = NumberedBlocks::default();
        let count = 3 * RECENT_NUMBERS as u64 + 7;
        for k in 1..=count {
            n.insert(k, k * 16);
        }
        // Every other one released (slot-mates of later numbers among them), then the rest.
        for k in (1..=count).step_by(2) {
            assert_eq!(n.remove(k), Some(k * 16), "{k}");
            assert_eq!(n.remove(k), None, "{k} twice");
        }
        for k in (2..=count).step_by(2) {
            assert_eq!(n.remove(k), Some(k * 16), "{k}");
        }
        assert!(n.live.is_empty());
        assert!(n.recent.iter().all(|&(k, _)| k == 0));
    }
}
