//! The memlens trace format.
//!
//! A trace is one file per process: a fixed [`Header`] followed by a sequence of
//! independent, checksummed, lz4-compressed *chunks*. Each chunk holds records of one
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
pub mod varint;

#[cfg(feature = "std")]
pub mod reader;
#[cfg(feature = "std")]
pub mod writer;

use alloc::string::String;
use alloc::vec::Vec;

/// First bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"MEMLENS\0";
/// Version of the format written by this crate. Readers refuse other versions by name.
pub const FORMAT_VERSION: u32 = 2;
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

/// The function through which a block was allocated or released. The family
/// ([`AllocFunc::family`]) is what must match between allocation and release. Each of
/// C++'s operators is its own value, so that frames name the operator the program called
/// (`_ZdlPvm`, as Valgrind suppressions do); traces written before the variants existed
/// recorded every variant as the plain operator (10 to 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AllocFunc {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Reallocarray = 3,
    PosixMemalign = 4,
    AlignedAlloc = 5,
    Memalign = 6,
    Valloc = 7,
    Pvalloc = 8,
    Free = 9,
    /// `operator new(size_t)` (and, in old traces, its nothrow / aligned variants).
    New = 10,
    /// `operator new[](size_t)` (and, in old traces, its variants).
    NewArray = 11,
    /// `operator delete(void*)` (and, in old traces, its sized / aligned / nothrow variants).
    Delete = 12,
    /// `operator delete[](void*)` (and, in old traces, its variants).
    DeleteArray = 13,
    NewNothrow = 14,
    NewArrayNothrow = 15,
    NewAligned = 16,
    NewArrayAligned = 17,
    NewAlignedNothrow = 18,
    NewArrayAlignedNothrow = 19,
    DeleteSized = 20,
    DeleteArraySized = 21,
    DeleteAligned = 22,
    DeleteArrayAligned = 23,
    DeleteSizedAligned = 24,
    DeleteArraySizedAligned = 25,
    DeleteNothrow = 26,
    DeleteArrayNothrow = 27,
    DeleteAlignedNothrow = 28,
    DeleteArrayAlignedNothrow = 29,
}

/// Allocation families: a block must be released by the family that allocated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// malloc, calloc, realloc, memalign... released by free/realloc.
    C,
    /// operator new, released by operator delete.
    New,
    /// operator new[], released by operator delete[].
    NewArray,
}

impl AllocFunc {
    /// Every value, in order (`ALL[v as usize] as u8 == v`).
    pub const ALL: [AllocFunc; 30] = {
        use AllocFunc::*;
        [
            Malloc,
            Calloc,
            Realloc,
            Reallocarray,
            PosixMemalign,
            AlignedAlloc,
            Memalign,
            Valloc,
            Pvalloc,
            Free,
            New,
            NewArray,
            Delete,
            DeleteArray,
            NewNothrow,
            NewArrayNothrow,
            NewAligned,
            NewArrayAligned,
            NewAlignedNothrow,
            NewArrayAlignedNothrow,
            DeleteSized,
            DeleteArraySized,
            DeleteAligned,
            DeleteArrayAligned,
            DeleteSizedAligned,
            DeleteArraySizedAligned,
            DeleteNothrow,
            DeleteArrayNothrow,
            DeleteAlignedNothrow,
            DeleteArrayAlignedNothrow,
        ]
    };

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    pub fn family(self) -> Family {
        use AllocFunc::*;
        match self {
            New | NewNothrow | NewAligned | NewAlignedNothrow | Delete | DeleteSized
            | DeleteAligned | DeleteSizedAligned | DeleteNothrow | DeleteAlignedNothrow => {
                Family::New
            }
            NewArray
            | NewArrayNothrow
            | NewArrayAligned
            | NewArrayAlignedNothrow
            | DeleteArray
            | DeleteArraySized
            | DeleteArrayAligned
            | DeleteArraySizedAligned
            | DeleteArrayNothrow
            | DeleteArrayAlignedNothrow => Family::NewArray,
            _ => Family::C,
        }
    }

    /// The name a C or C++ programmer knows the function by (C++'s operators by their
    /// family: `operator new`, `operator delete[]`...).
    pub fn name(self) -> &'static str {
        use AllocFunc::*;
        match self {
            Malloc => "malloc",
            Calloc => "calloc",
            Realloc => "realloc",
            Reallocarray => "reallocarray",
            PosixMemalign => "posix_memalign",
            AlignedAlloc => "aligned_alloc",
            Memalign => "memalign",
            Valloc => "valloc",
            Pvalloc => "pvalloc",
            Free => "free",
            New | NewNothrow | NewAligned | NewAlignedNothrow => "operator new",
            NewArray | NewArrayNothrow | NewArrayAligned | NewArrayAlignedNothrow => {
                "operator new[]"
            }
            Delete | DeleteSized | DeleteAligned | DeleteSizedAligned | DeleteNothrow
            | DeleteAlignedNothrow => "operator delete",
            DeleteArray
            | DeleteArraySized
            | DeleteArrayAligned
            | DeleteArraySizedAligned
            | DeleteArrayNothrow
            | DeleteArrayAlignedNothrow => "operator delete[]",
        }
    }

    /// For C++'s operators, the exact one the program called: its symbol (Itanium ABI,
    /// x86_64) and its demangled name. `None` for the C functions.
    pub fn cxx_operator(self) -> Option<(&'static str, &'static str)> {
        use AllocFunc::*;
        Some(match self {
            New => ("_Znwm", "operator new(unsigned long)"),
            NewArray => ("_Znam", "operator new[](unsigned long)"),
            NewNothrow => (
                "_ZnwmRKSt9nothrow_t",
                "operator new(unsigned long, std::nothrow_t const&)",
            ),
            NewArrayNothrow => (
                "_ZnamRKSt9nothrow_t",
                "operator new[](unsigned long, std::nothrow_t const&)",
            ),
            NewAligned => (
                "_ZnwmSt11align_val_t",
                "operator new(unsigned long, std::align_val_t)",
            ),
            NewArrayAligned => (
                "_ZnamSt11align_val_t",
                "operator new[](unsigned long, std::align_val_t)",
            ),
            NewAlignedNothrow => (
                "_ZnwmSt11align_val_tRKSt9nothrow_t",
                "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
            ),
            NewArrayAlignedNothrow => (
                "_ZnamSt11align_val_tRKSt9nothrow_t",
                "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
            ),
            Delete => ("_ZdlPv", "operator delete(void*)"),
            DeleteArray => ("_ZdaPv", "operator delete[](void*)"),
            DeleteSized => ("_ZdlPvm", "operator delete(void*, unsigned long)"),
            DeleteArraySized => ("_ZdaPvm", "operator delete[](void*, unsigned long)"),
            DeleteAligned => (
                "_ZdlPvSt11align_val_t",
                "operator delete(void*, std::align_val_t)",
            ),
            DeleteArrayAligned => (
                "_ZdaPvSt11align_val_t",
                "operator delete[](void*, std::align_val_t)",
            ),
            DeleteSizedAligned => (
                "_ZdlPvmSt11align_val_t",
                "operator delete(void*, unsigned long, std::align_val_t)",
            ),
            DeleteArraySizedAligned => (
                "_ZdaPvmSt11align_val_t",
                "operator delete[](void*, unsigned long, std::align_val_t)",
            ),
            DeleteNothrow => (
                "_ZdlPvRKSt9nothrow_t",
                "operator delete(void*, std::nothrow_t const&)",
            ),
            DeleteArrayNothrow => (
                "_ZdaPvRKSt9nothrow_t",
                "operator delete[](void*, std::nothrow_t const&)",
            ),
            DeleteAlignedNothrow => (
                "_ZdlPvSt11align_val_tRKSt9nothrow_t",
                "operator delete(void*, std::align_val_t, std::nothrow_t const&)",
            ),
            DeleteArrayAlignedNothrow => (
                "_ZdaPvSt11align_val_tRKSt9nothrow_t",
                "operator delete[](void*, std::align_val_t, std::nothrow_t const&)",
            ),
            _ => return None,
        })
    }
}

/// Something the recorder found at start-up that limits what it can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NoticeKind {
    /// The executable defines allocation functions of its own (`symbols`), which take
    /// the place of the C library's for the whole process.
    OwnAllocator = 1,
}

impl NoticeKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::OwnAllocator),
            _ => None,
        }
    }
}

/// How the traced process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitKind {
    /// `exit()` or return from `main`; `code` is the status.
    Exit = 1,
    /// `_exit()` / `_Exit()` called by the program; `code` is the status.
    UnderscoreExit = 2,
    /// Killed by a fatal signal that the recorder saw; `code` is the signal number.
    Signal = 3,
    /// The image was replaced by `execve`; `code` says whether the new image is
    /// recorded (one of the `EXEC_*` constants).
    Exec = 4,
}

/// Exec end code: the environment passed to the new image still preloads the recorder.
/// (Traces older than the other codes have it for every exec.)
pub const EXEC_RECORDER_KEPT: i32 = 0;
/// Exec end code: the environment passed to the new image does not preload the recorder
/// (the program removed or replaced `LD_PRELOAD`): the new image is not recorded.
pub const EXEC_RECORDER_REMOVED: i32 = 1;
/// Exec end code: `--no-follow` took the recorder out of `LD_PRELOAD`: the new image is
/// not recorded, as asked.
pub const EXEC_NOT_FOLLOWED: i32 = 2;

impl ExitKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Exit),
            2 => Some(Self::UnderscoreExit),
            3 => Some(Self::Signal),
            4 => Some(Self::Exec),
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
    // Meta chunks.
    pub const MODULE_LOAD: u8 = 16;
    pub const MODULE_UNLOAD: u8 = 17;
    pub const STACK: u8 = 18;
    pub const THREAD: u8 = 19;
    pub const NOTICE: u8 = 20;
    // End chunk.
    pub const END: u8 = 32;
    // Scan chunks (the reachability scan at exit).
    pub const SCAN_BEGIN: u8 = 40;
    pub const SCAN_ROOT: u8 = 41;
    pub const SCAN_BLOCK: u8 = 42;
    pub const SCAN_END: u8 = 43;
}

/// A heap error the recorder caught (and did not pass on to the allocator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HeapErrorKind {
    /// free/delete/realloc of an address where no live block starts: a double free, a
    /// pointer never allocated, or one inside a block. Not passed to the allocator.
    NotABlock = 1,
    /// A block released by the wrong family (malloc/delete, new/free, new[]/delete...).
    /// It is released anyway, as memcheck does.
    Mismatch = 2,
}

impl HeapErrorKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::NotABlock),
            2 => Some(Self::Mismatch),
            _ => None,
        }
    }
}

/// What the exit scan concluded about one block. Memcheck's four kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlockState {
    DefinitelyLost = 0,
    IndirectlyLost = 1,
    PossiblyLost = 2,
    StillReachable = 3,
}

impl BlockState {
    pub fn from_u8(v: u8) -> Self {
        match v & 3 {
            0 => Self::DefinitelyLost,
            1 => Self::IndirectlyLost,
            2 => Self::PossiblyLost,
            _ => Self::StillReachable,
        }
    }
}

/// The interior-pointer heuristics of memcheck's `--leak-check-heuristics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Heuristic {
    StdString = 1,
    Length64 = 2,
    NewArray = 3,
    MultipleInheritance = 4,
}

impl Heuristic {
    pub const ALL: [Heuristic; 4] = [
        Heuristic::StdString,
        Heuristic::Length64,
        Heuristic::NewArray,
        Heuristic::MultipleInheritance,
    ];
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }
    /// The name memcheck's `--leak-check-heuristics` uses.
    pub fn name(self) -> &'static str {
        match self {
            Heuristic::StdString => "stdstring",
            Heuristic::Length64 => "length64",
            Heuristic::NewArray => "newarray",
            Heuristic::MultipleInheritance => "multipleinheritance",
        }
    }
}

/// Kinds of root regions the scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RootKind {
    /// Writable data (.data, .bss, relro...) of a loaded module.
    ModuleData = 1,
    /// An anonymous mapping (the program's own mmap, the main thread's TLS...).
    Anonymous = 2,
    /// A thread's stack, from its stack pointer up (it also holds its static TLS).
    ThreadStack = 3,
    /// A thread's registers.
    Registers = 4,
    /// Another writable mapping (a file mapped privately, shared memory).
    OtherMapping = 5,
}

impl RootKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::ModuleData,
            2 => Self::Anonymous,
            3 => Self::ThreadStack,
            4 => Self::Registers,
            5 => Self::OtherMapping,
            _ => return None,
        })
    }
}

/// Why a scanned block has the state it has. `Block(i)`: the `i`th block of the scan (in
/// address order) points to it: for a lost block, `i` is the clique leader that owns it
/// (possibly itself indirect when its clique was merged into a later one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockLink {
    None,
    Block(u32),
    /// Root region `root`, the pointer word at `addr`.
    Root {
        root: u32,
        addr: u64,
    },
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
}

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

pub fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

/// Builds the uncompressed payload of one chunk in a fixed buffer, without allocating.
///
/// Timestamps and addresses are delta-encoded against the previous record of the chunk,
/// so [`ChunkBuilder::first_ts`] / [`ChunkBuilder::last_ts`] delimit the chunk in time.
pub struct ChunkBuilder<B> {
    buf: B,
    len: usize,
    first_ts: u64,
    last_ts: u64,
    last_addr: u64,
    records: u32,
}

/// A [`ChunkBuilder`]'s position, see [`ChunkBuilder::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMark {
    len: usize,
    first_ts: u64,
    last_ts: u64,
    last_addr: u64,
    records: u32,
}

/// Largest encoding of any single event record (tag + func + 5 varints).
pub const MAX_EVENT_RECORD_LEN: usize = 2 + 5 * varint::MAX_LEN;

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    pub fn new(buf: B) -> Self {
        ChunkBuilder {
            buf,
            len: 0,
            first_ts: 0,
            last_ts: 0,
            last_addr: 0,
            records: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
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
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[..self.len]
    }
    /// Room left, in bytes.
    pub fn remaining(&self) -> usize {
        self.buf.as_ref().len() - self.len
    }
    /// Where the builder is now, to [`ChunkBuilder::rewind`] to (taking back the records
    /// appended since).
    pub fn mark(&self) -> ChunkMark {
        ChunkMark {
            len: self.len,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            last_addr: self.last_addr,
            records: self.records,
        }
    }
    /// Take back every record appended since `mark` was taken (with no clear in between).
    pub fn rewind(&mut self, mark: ChunkMark) {
        self.len = mark.len;
        self.first_ts = mark.first_ts;
        self.last_ts = mark.last_ts;
        self.last_addr = mark.last_addr;
        self.records = mark.records;
    }
    /// The buffer back, for reuse by a new builder.
    pub fn into_buf(self) -> B {
        self.buf
    }
    pub fn clear(&mut self) {
        self.len = 0;
        self.records = 0;
        self.first_ts = 0;
        self.last_ts = 0;
        self.last_addr = 0;
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
    #[inline]
    fn put_ts(&mut self, ts: u64) {
        if self.records == 0 {
            self.first_ts = ts;
            self.last_ts = ts;
        }
        // Time never goes backwards inside a chunk; clamp if the clock did.
        let ts = ts.max(self.last_ts);
        self.put(ts - self.last_ts);
        self.last_ts = ts;
        self.records += 1;
    }
    #[inline]
    fn put_addr(&mut self, addr: u64) {
        self.put(varint::addr_delta(self.last_addr, addr));
        if addr & 15 != 0 {
            self.put_u8((addr & 15) as u8);
        }
        self.last_addr = addr;
    }

    /// A block of `size` bytes at `addr` allocated through `func` with stack `stack`.
    #[inline]
    pub fn alloc(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        size: u64,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::ALLOC_FUNC | func as u8);
        self.put_ts(ts);
        self.put_addr(addr);
        self.put(size);
        self.put(stack as u64);
        Ok(())
    }

    /// The block at `addr` released through `func` (free, delete, delete[]) at `stack`.
    /// `stack` is 0 when the release stack was not recorded.
    #[inline]
    pub fn free(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        if stack == 0 {
            self.put_u8(tag::FREE_FUNC | func as u8);
            self.put_ts(ts);
            self.put_addr(addr);
        } else {
            self.put_u8(tag::FREE_STACK_FUNC | func as u8);
            self.put_ts(ts);
            self.put_addr(addr);
            self.put(stack as u64);
        }
        Ok(())
    }

    /// `realloc(old, size)` returned `new` (0 when it failed and `old` stays allocated).
    #[inline]
    pub fn realloc(
        &mut self,
        ts: u64,
        func: AllocFunc,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::REALLOC_FUNC | func as u8);
        self.put_ts(ts);
        self.put_addr(old);
        self.put_addr(new);
        self.put(size);
        self.put(stack as u64);
        Ok(())
    }

    /// A sample of the process's resident set size.
    pub fn rss(&mut self, ts: u64, rss_bytes: u64) -> Result<(), WriteError> {
        if self.remaining() < 2 * varint::MAX_LEN + 1 {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::RSS);
        self.put_ts(ts);
        self.put(rss_bytes);
        Ok(())
    }

    /// A de-duplicated stack. `frames` are `(module id, offset)`; module id 0 means the
    /// address is in no known module and `offset` is the absolute address. Frame 0 is the
    /// return address into the allocating function's caller, outermost last.
    pub fn stack(&mut self, id: u32, frames: &[(u32, u64)]) -> Result<(), WriteError> {
        let need = 1 + varint::MAX_LEN * (2 + 2 * frames.len());
        if self.remaining() < need {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::STACK);
        self.records += 1;
        self.put(id as u64);
        self.put(frames.len() as u64);
        for &(m, off) in frames {
            self.put(m as u64);
            self.put(off);
        }
        Ok(())
    }

    /// A module mapped into the process. `load_bias` is added to the ELF virtual addresses
    /// to get run-time addresses; `segments` are the PT_LOAD `(vaddr, memsz, flags)`.
    #[allow(clippy::too_many_arguments)]
    pub fn module_load(
        &mut self,
        ts: u64,
        id: u32,
        path: &[u8],
        build_id: &[u8],
        load_bias: u64,
        segments: &[(u64, u64, u32)],
    ) -> Result<(), WriteError> {
        let need = 1 + varint::MAX_LEN * (6 + 3 * segments.len()) + path.len() + build_id.len();
        if self.remaining() < need {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::MODULE_LOAD);
        self.records += 1;
        self.put(ts);
        self.put(id as u64);
        self.put_raw_bytes(path);
        self.put_raw_bytes(build_id);
        self.put(load_bias);
        self.put(segments.len() as u64);
        for &(vaddr, memsz, flags) in segments {
            self.put(vaddr);
            self.put(memsz);
            self.put(flags as u64);
        }
        Ok(())
    }

    pub fn module_unload(&mut self, ts: u64, id: u32) -> Result<(), WriteError> {
        if self.remaining() < 1 + 2 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::MODULE_UNLOAD);
        self.records += 1;
        self.put(ts);
        self.put(id as u64);
        Ok(())
    }

    /// Thread `index` (the chunk-level thread number) is kernel thread `tid`.
    pub fn thread(&mut self, ts: u64, index: u32, tid: u32, name: &[u8]) -> Result<(), WriteError> {
        if self.remaining() < 1 + 4 * varint::MAX_LEN + name.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::THREAD);
        self.records += 1;
        self.put(ts);
        self.put(index as u64);
        self.put(tid as u64);
        self.put_raw_bytes(name);
        Ok(())
    }

    /// A finding about the process (`kind`): the module concerned (its path) and the
    /// symbols, separated by commas.
    pub fn notice(
        &mut self,
        ts: u64,
        kind: NoticeKind,
        module: &[u8],
        symbols: &[u8],
    ) -> Result<(), WriteError> {
        if self.remaining() < 2 + 3 * varint::MAX_LEN + module.len() + symbols.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::NOTICE);
        self.records += 1;
        self.put(ts);
        self.put_u8(kind as u8);
        self.put_raw_bytes(module);
        self.put_raw_bytes(symbols);
        Ok(())
    }

    /// How the process ended, with the recorder's own counters.
    pub fn end(
        &mut self,
        ts: u64,
        kind: ExitKind,
        code: i32,
        counters: &EndCounters,
    ) -> Result<(), WriteError> {
        if self.remaining() < 2 + 8 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::END);
        self.records += 1;
        self.put(ts);
        self.put_u8(kind as u8);
        self.put(varint::zigzag(code as i64));
        self.put(counters.untracked_frees);
        self.put(counters.dropped_events);
        self.put(counters.recorder_peak_bytes);
        self.put(counters.write_errors);
        Ok(())
    }

    /// A heap error at `addr`, raised by a call to `func` at `stack`. `alloc_func` is the
    /// block's allocating function for a mismatch, `func` otherwise.
    pub fn heap_error(
        &mut self,
        ts: u64,
        func: AllocFunc,
        kind: HeapErrorKind,
        addr: u64,
        alloc_func: AllocFunc,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::HEAP_ERROR);
        self.put_u8(func as u8);
        self.put_ts(ts);
        self.put_u8(kind as u8);
        self.put_u8(alloc_func as u8);
        self.put_addr(addr);
        self.put(stack as u64);
        Ok(())
    }

    /// Start of the exit scan: what ended the process (`trigger`, `code` as in the End
    /// record), the number of blocks that follow, the thread that ran it, how many other
    /// threads were stopped and how many could not be (their stacks are then read whole),
    /// and flags (bit 0: glibc's and libstdc++'s freeres ran first).
    #[allow(clippy::too_many_arguments)]
    pub fn scan_begin(
        &mut self,
        ts: u64,
        trigger: ExitKind,
        code: i32,
        blocks: u64,
        tid: u32,
        stopped: u32,
        unstoppable: u32,
        flags: u64,
    ) -> Result<(), WriteError> {
        if self.remaining() < 2 + 8 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_BEGIN);
        self.records += 1;
        self.put(ts);
        self.put_u8(trigger as u8);
        self.put(varint::zigzag(code as i64));
        self.put(blocks);
        self.put(tid as u64);
        self.put(stopped as u64);
        self.put(unstoppable as u64);
        self.put(flags);
        Ok(())
    }

    /// Root region `id`: `[start, end)` of kind `kind`, of thread `tid` (stacks,
    /// registers) or module `module` (module data), with the mapping's name.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_root(
        &mut self,
        id: u32,
        kind: RootKind,
        tid: u32,
        module: u32,
        start: u64,
        end: u64,
        name: &[u8],
    ) -> Result<(), WriteError> {
        let name = &name[..name.len().min(4096)];
        if self.remaining() < 2 + 6 * varint::MAX_LEN + name.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_ROOT);
        self.records += 1;
        self.put(id as u64);
        self.put_u8(kind as u8);
        self.put(tid as u64);
        self.put(module as u64);
        self.put(start);
        self.put(end.wrapping_sub(start));
        self.put_raw_bytes(name);
        Ok(())
    }

    /// One block, in ascending address order (the address is delta-coded).
    pub fn scan_block(
        &mut self,
        addr: u64,
        size: u64,
        state: BlockState,
        heuristic: Option<Heuristic>,
        internal: bool,
        link: BlockLink,
    ) -> Result<(), WriteError> {
        if self.remaining() < 2 + 5 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_BLOCK);
        self.records += 1;
        self.put_addr(addr);
        self.put(size);
        let flags = state as u8 | heuristic.map_or(0, |h| h as u8) << 2 | (internal as u8) << 7;
        self.put_u8(flags);
        match link {
            BlockLink::None => self.put(0),
            BlockLink::Block(i) => self.put((i as u64 + 1) << 1),
            BlockLink::Root { root, addr } => {
                self.put((root as u64) << 1 | 1);
                self.put(addr);
            }
        }
        Ok(())
    }

    /// End of the scan, with the time it took.
    pub fn scan_end(&mut self, ts: u64, blocks: u64) -> Result<(), WriteError> {
        if self.remaining() < 1 + 2 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_END);
        self.records += 1;
        self.put(ts);
        self.put(blocks);
        Ok(())
    }

    fn put_raw_bytes(&mut self, b: &[u8]) {
        self.put(b.len() as u64);
        self.buf.as_mut()[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
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
