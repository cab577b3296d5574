//! What every pass over a trace shares, apart from the replay itself: an allocation
//! [`Site`] and its [`SiteStats`] (the lines of the report's lists, the subjects of advice),
//! the [`Progress`] a pass reports, and where a run ends ([`run_end_ns`]). The passes
//! (`report`, `leaks`, `timeline`, `profile`) and the rules fed by them (`advice`) import
//! these from here, not from each other.

use memlens_trace::reader::{Event, EventStream, Metadata, TraceError, TraceReader};
use memlens_trace::AllocFunc;

/// Stack ids below this may index a table directly (4 bytes per id): the recorder numbers
/// stacks from 1 up, so a pass keyed by stack id answers from a vector, and keeps a map
/// only for ids beyond (a trace from elsewhere).
pub const DENSE_STACK_IDS: u32 = 1 << 24;

/// Progress of a pass over the events: event chunks consumed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The pass (the report makes one; the timeline two).
    pub pass: u8,
    pub chunks_done: u64,
    pub chunks_total: u64,
}

/// A trace's events in time order, telling `progress` each time an event chunk has been
/// consumed: the loop every pass over the events runs.
pub struct ReportedEvents<'r, 'p> {
    events: EventStream<'r>,
    progress: &'p mut dyn FnMut(Progress),
    pass: u8,
    chunks_total: u64,
    reported: usize,
    /// Events after this time are not the run's (see [`work_done_ns`]).
    until: u64,
    /// A Python program's stacks that show the same frames, mapped to one id (see
    /// [`crate::python::canonical_stacks`]): every pass sees them as one site.
    canonical: Option<crate::python::CanonicalStacks>,
}

impl<'r, 'p> ReportedEvents<'r, 'p> {
    /// The events of the run (up to [`work_done_ns`] for a Python program).
    pub fn new(
        reader: &'r TraceReader,
        metadata: &Metadata,
        pass: u8,
        progress: &'p mut dyn FnMut(Progress),
    ) -> Self {
        ReportedEvents {
            events: reader.events(),
            progress,
            pass,
            chunks_total: reader.event_chunk_count() as u64,
            reported: 0,
            until: work_done_ns(metadata).unwrap_or(u64::MAX),
            canonical: crate::python::canonical_stacks(metadata).filter(|m| !m.is_empty()),
        }
    }
}

/// When a Python program's work was done (its interpreter began finalizing), if the
/// trace says so. The run is analysed up to there: what the interpreter does while
/// tearing itself down (freeing module globals, its own start-up blocks) is not the
/// program's, and the leak check ran at that moment.
pub fn work_done_ns(metadata: &Metadata) -> Option<u64> {
    metadata
        .notices
        .iter()
        .find(|n| n.kind == memlens_trace::NoticeKind::PythonWorkDone)
        .map(|n| n.ts)
}

impl Iterator for ReportedEvents<'_, '_> {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let ev = self.events.next()?;
        if ev.as_ref().is_ok_and(|e| e.ts() > self.until) {
            return None;
        }
        let ev = match (&self.canonical, ev) {
            (Some(map), Ok(mut e)) => {
                if let Event::Alloc { stack, .. }
                | Event::Free { stack, .. }
                | Event::Realloc { stack, .. }
                | Event::HeapError { stack, .. }
                | Event::Assert { stack, .. } = &mut e
                {
                    *stack = map.get(*stack);
                }
                Ok(e)
            }
            (_, ev) => ev,
        };
        if ev.is_ok() && self.events.chunks_done() != self.reported {
            self.reported = self.events.chunks_done();
            (self.progress)(Progress {
                pass: self.pass,
                chunks_done: self.reported as u64,
                chunks_total: self.chunks_total,
            });
        }
        Some(ev)
    }
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
    let end = metadata
        .end
        .map_or_else(|| reader.last_event_ts(), |e| e.ts);
    work_done_ns(metadata).map_or(end, |t| t.min(end))
}
