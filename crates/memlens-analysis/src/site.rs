//! What every pass over a trace shares, apart from the replay itself: an allocation
//! [`Site`] and its [`SiteStats`] (the lines of the report's lists, the subjects of advice),
//! the [`Progress`] a pass reports, and where a run ends ([`run_end_ns`]). The passes
//! (`report`, `leaks`, `timeline`, `profile`) and the rules fed by them (`advice`) import
//! these from here, not from each other.

use memlens_trace::reader::{Metadata, TraceReader};
use memlens_trace::AllocFunc;

/// Progress of a pass over the events: event chunks consumed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The pass (the report makes one; the timeline two).
    pub pass: u8,
    pub chunks_done: u64,
    pub chunks_total: u64,
}

/// Statistics of one allocation site (a stack and the allocating function).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Successful allocations made here (in the window).
    pub allocations: u64,
    /// Bytes requested here (in the window).
    pub bytes_allocated: u64,
    /// Bytes of the site's blocks that are live at the moment the list describes (the
    /// peak for [`crate::PeakHeap::sites`], the end of the window otherwise, counting
    /// blocks allocated in the window).
    pub live_bytes: u64,
    /// Blocks of the site live at that moment.
    pub live_blocks: u64,
    /// Temporary allocations made here (see [`crate::temporary`]).
    pub temporary: u64,
}

/// One line of a site list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub stack: u32,
    pub func: AllocFunc,
    pub stats: SiteStats,
}

/// The end of the run: the end record's time, or the last event's.
pub fn run_end_ns(reader: &TraceReader, metadata: &Metadata) -> u64 {
    metadata
        .end
        .map_or_else(|| reader.last_event_ts(), |e| e.ts)
}
