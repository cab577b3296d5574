//! Every record kind of the trace format, each defined once: its tag (in [`tag`]), its
//! fields (the decoded type), its encoder (a [`ChunkBuilder`] method) and its decoder,
//! side by side, with a round-trip test for each. The byte layout is in
//! `docs/TRACE_FORMAT.md`; chunk framing and the builder itself are in `lib.rs`, reading
//! a file (indexing, merging threads by time) in `reader.rs`.
//!
//! Adding a record kind: a tag in [`tag`], an encoder here (check the room left first,
//! count it in `records` unless it is an event, which `put_ts` counts), a decoder beside
//! it, its arm in the chunk kind's dispatcher below (`decode_event`, `decode_meta`,
//! `decode_scan`), a round-trip test, and a row in docs/TRACE_FORMAT.md. Old readers
//! refuse an unknown tag as damage, so a new record kind in an existing chunk kind needs
//! a new format version.

use crate::*;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

// ---------------------------------------------------------------- decoded types

/// A module (executable or shared library) mapped into the traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub id: u32,
    pub path: String,
    pub build_id: Vec<u8>,
    pub load_bias: u64,
    /// PT_LOAD segments: (vaddr, memsz, flags).
    pub segments: Vec<(u64, u64, u32)>,
    pub loaded_ns: u64,
    /// When it was unloaded (dlclose), if it was.
    pub unloaded_ns: Option<u64>,
}

impl Module {
    pub fn build_id_hex(&self) -> String {
        self.build_id.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// File name without directories.
    pub fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// One frame of a recorded stack: `offset` is the ELF virtual address of the return
/// address inside module `module` (0 = unknown module; then `offset` is absolute).
/// Module [`PYTHON_MODULE`] marks a Python frame: `offset` is the code object's id
/// (Meta PyCode) shifted left by 32, or'ed with the index of the instruction that was
/// running, in 16-bit code units from the start of the code's bytecode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawFrame {
    pub module: u32,
    pub offset: u64,
}

/// The module id of Python frames in stacks (see [`RawFrame`]).
pub const PYTHON_MODULE: u32 = u32::MAX;

impl RawFrame {
    /// A Python frame: (code id, instruction index).
    pub fn python(&self) -> Option<(u32, u32)> {
        (self.module == PYTHON_MODULE).then_some(((self.offset >> 32) as u32, self.offset as u32))
    }
}

/// A Python code object the recorder met in a stack (Meta PyCode): what its frames need
/// to be shown as `qualname (file:line)`. The line of an instruction comes from
/// `linetable` (CPython 3.11+'s location table, `Objects/locations.md`), starting at
/// `first_line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyCode {
    pub id: u32,
    pub first_line: u32,
    pub qualname: String,
    pub filename: String,
    pub linetable: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub index: u32,
    pub tid: u32,
    pub name: String,
    pub started_ns: u64,
}

/// How the process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRecord {
    pub ts: u64,
    pub kind: ExitKind,
    pub code: i32,
    pub counters: EndCounters,
}

/// A finding of the recorder about the process (see [`NoticeKind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub ts: u64,
    pub kind: NoticeKind,
    /// The module concerned (the executable's path for `OwnAllocator`).
    pub module: String,
    /// The symbols concerned, separated by commas (`malloc,free`).
    pub symbols: String,
}

/// One event, in time order. `thread` is the recorder's thread index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Alloc {
        ts: u64,
        thread: u32,
        func: AllocFunc,
        addr: u64,
        size: u64,
        stack: u32,
    },
    Free {
        ts: u64,
        thread: u32,
        func: AllocFunc,
        addr: u64,
        stack: u32,
    },
    Realloc {
        ts: u64,
        thread: u32,
        func: AllocFunc,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
    },
    Rss {
        ts: u64,
        bytes: u64,
    },
    /// A heap error caught by the recorder (see [`HeapErrorKind`]).
    HeapError {
        ts: u64,
        thread: u32,
        func: AllocFunc,
        kind: HeapErrorKind,
        addr: u64,
        alloc_func: AllocFunc,
        stack: u32,
    },
    /// The thread entered (`enter`) or left a region named by Meta RegionName `id`.
    Region {
        ts: u64,
        thread: u32,
        enter: bool,
        id: u32,
    },
    /// The thread marked itself real-time (`realtime`) or no longer real-time.
    ThreadMark {
        ts: u64,
        thread: u32,
        realtime: bool,
    },
    /// An assertion made by the program, evaluated offline: `mark` (trace time, ns) for
    /// [`AssertKind::NoLeaksSince`], `limit` (bytes) for [`AssertKind::MaxLive`]; `label`
    /// names a Meta AssertLabel, `stack` the call's stack.
    Assert {
        ts: u64,
        thread: u32,
        kind: AssertKind,
        mark: u64,
        limit: u64,
        label: u32,
        stack: u32,
    },
}

/// What the exit scan says about one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanBlock {
    pub addr: u64,
    pub size: u64,
    pub state: BlockState,
    /// The heuristic that made it reachable (it was reached only through an interior
    /// pointer that heuristic accepts).
    pub heuristic: Option<Heuristic>,
    /// Allocated by libc on the recorder's behalf: never reported.
    pub internal: bool,
    pub link: BlockLink,
}

/// One record of the exit scan, in file order: `Begin`, the roots, the blocks in
/// ascending address order, `End`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanRecord {
    Begin {
        ts: u64,
        trigger: ExitKind,
        code: i32,
        blocks: u64,
        tid: u32,
        stopped: u32,
        unstoppable: u32,
        flags: u64,
    },
    Root {
        id: u32,
        kind: RootKind,
        tid: u32,
        module: u32,
        start: u64,
        end: u64,
        name: String,
    },
    Block(ScanBlock),
    End {
        ts: u64,
        blocks: u64,
    },
    /// What holds memory (written by `memlens snapshot`): the blocks reachable only
    /// through one root, a global variable (module data, `name` its symbol, `module` its
    /// file, `source` the `file:line` of its declaration when the module's DWARF says), a
    /// thread (its stack and registers) or another mapping.
    Holder {
        id: u32,
        kind: RootKind,
        tid: u32,
        bytes: u64,
        blocks: u64,
        name: String,
        module: String,
        source: String,
    },
}

impl Event {
    pub fn ts(&self) -> u64 {
        match *self {
            Event::Alloc { ts, .. }
            | Event::Free { ts, .. }
            | Event::Realloc { ts, .. }
            | Event::Rss { ts, .. }
            | Event::HeapError { ts, .. }
            | Event::Region { ts, .. }
            | Event::ThreadMark { ts, .. }
            | Event::Assert { ts, .. } => ts,
        }
    }
}

mod events;
mod meta;
mod scan;
#[cfg(test)]
mod tests;

pub(crate) use events::{decode_events, Numbers};

/// The first format version whose Events chunks hold columns (lib.rs, `ChunkBuilder`).
pub(crate) const COLUMNS_VERSION: u32 = 5;
/// The first format version whose Events chunks say their time unit (a shift byte before
/// the columns' lengths).
pub(crate) const TIME_UNIT_VERSION: u32 = 6;
/// The first format version whose allocations are numbered and whose releases may name
/// a block by its number (lib.rs, `ChunkBuilder::free_numbered`).
pub(crate) const SERIAL_VERSION: u32 = 7;
pub(crate) use meta::decode_meta;
pub use meta::MetaRecord;
pub(crate) use scan::ScanDecoder;
