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
///
/// A trace of more than one event chunk is read, decompressed, decoded and merged into
/// time order by a thread of its own ([`Decoder`]), which hands the events over in
/// batches: the pass then has a core to itself for its replay (on `memlens run`'s
/// summary of an allocation-dense program, about a third of the time was decoding).
pub struct ReportedEvents<'r, 'p> {
    events: Source<'r>,
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
        let threaded = reader.event_chunk_count() > 1
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let events = match threaded.then(|| Decoder::start(reader)).flatten() {
            Some(d) => Source::Thread(d),
            None => Source::Here(reader.events()),
        };
        ReportedEvents {
            events,
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

/// How many events ahead of the one it returns [`ReportedEvents::next_for`] asks the
/// pass to prefetch: enough to cover a cache miss at the rate a pass applies events, few
/// enough that the lines are still cached when their events come.
const LOOK_AHEAD: usize = 16;

/// What a pass's tables will touch for an event, asked for ahead of it (see
/// [`ReportedEvents::next_for`]): hints, the pass is the same without them.
pub trait Prefetch {
    /// Ask the CPU for what applying `ev` will touch, [`LOOK_AHEAD`] events early.
    fn prefetch(&self, ev: &Event);
    /// The same, [`LOOK_AHEAD`] / 2 events early, when the lines asked for by
    /// [`Prefetch::prefetch`] have had time to arrive (what the first lines point to).
    fn prefetch_then(&self, _ev: &Event) {}
}

impl ReportedEvents<'_, '_> {
    /// The next event, as [`Iterator::next`], after asking `pass` to prefetch what the
    /// events [`LOOK_AHEAD`] and [`LOOK_AHEAD`] / 2 places after it will touch, if they are
    /// decoded already. A pass that replays the events calls this instead of `next`.
    #[inline]
    pub fn next_for(&mut self, pass: &impl Prefetch) -> Option<Result<Event, TraceError>> {
        if let Source::Thread(d) = &self.events {
            if let Some(e) = d.batch.events.get(d.at + LOOK_AHEAD) {
                pass.prefetch(e);
            }
            if let Some(e) = d.batch.events.get(d.at + LOOK_AHEAD / 2) {
                pass.prefetch_then(e);
            }
        }
        self.next()
    }
}

impl Iterator for ReportedEvents<'_, '_> {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (ev, chunks_done) = match &mut self.events {
            Source::Here(events) => {
                let ev = events.next()?;
                (ev, events.chunks_done())
            }
            Source::Thread(d) => d.next()?,
        };
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
        if ev.is_ok() && chunks_done != self.reported {
            self.reported = chunks_done;
            (self.progress)(Progress {
                pass: self.pass,
                chunks_done: self.reported as u64,
                chunks_total: self.chunks_total,
            });
        }
        Some(ev)
    }
}

/// Where a pass's events come from.
enum Source<'r> {
    /// Decoded on the pass's own thread, one by one.
    Here(EventStream<'r>),
    /// Decoded by a thread of its own.
    Thread(Decoder),
}

/// Events a [`Decoder`] thread hands over at once.
const BATCH: usize = 8192;
/// Batches on their way at most (decoded ahead of the pass).
const BATCHES_AHEAD: usize = 4;

/// A batch of events in time order, as the stream gave them.
struct Batch {
    events: Vec<Event>,
    /// (index in `events`, chunks consumed after it) where that count changed: the
    /// progress the stream would have shown event by event.
    progress: Vec<(usize, usize)>,
    /// The stream's error after the events, if it failed: the stream's last item.
    error: Option<TraceError>,
}

/// A thread that reads a trace's events ([`TraceReader::events`], on a reader of its
/// own) and sends them in batches over a bounded channel; emptied batches come back to
/// be filled again. Dropping it stops the thread (its next send fails) and joins it.
struct Decoder {
    batches: std::sync::mpsc::Receiver<Batch>,
    empties: std::sync::mpsc::SyncSender<Batch>,
    batch: Batch,
    /// The next event of `batch`, and the next of its progress changes.
    at: usize,
    next_progress: usize,
    chunks_done: usize,
    done: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Decoder {
    /// Start the thread; `None` if the trace cannot be reopened or no thread started (the
    /// pass then decodes the events itself).
    fn start(reader: &TraceReader) -> Option<Decoder> {
        let own = reader.try_clone().ok()?;
        let (send, batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_AHEAD);
        let (empties, refill) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_AHEAD + 2);
        let thread = std::thread::Builder::new()
            .name("memlens-decode".into())
            .spawn(move || {
                let mut stream = own.events();
                let mut reported = 0;
                loop {
                    let mut b = refill.try_recv().unwrap_or_else(|_| Batch {
                        events: Vec::with_capacity(BATCH),
                        progress: Vec::new(),
                        error: None,
                    });
                    b.events.clear();
                    b.progress.clear();
                    let mut end = false;
                    while b.events.len() < BATCH {
                        match stream.next() {
                            Some(Ok(e)) => {
                                b.events.push(e);
                                if stream.chunks_done() != reported {
                                    reported = stream.chunks_done();
                                    b.progress.push((b.events.len() - 1, reported));
                                }
                            }
                            Some(Err(e)) => {
                                b.error = Some(e);
                                end = true;
                                break;
                            }
                            None => {
                                end = true;
                                break;
                            }
                        }
                    }
                    if send.send(b).is_err() || end {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Decoder {
            batches,
            empties,
            batch: Batch {
                events: Vec::new(),
                progress: Vec::new(),
                error: None,
            },
            at: 0,
            next_progress: 0,
            chunks_done: 0,
            done: false,
            thread: Some(thread),
        })
    }

    /// The next event, and the chunks consumed once it was read.
    fn next(&mut self) -> Option<(Result<Event, TraceError>, usize)> {
        loop {
            if let Some(&e) = self.batch.events.get(self.at) {
                if let Some(&(i, done)) = self.batch.progress.get(self.next_progress) {
                    if i == self.at {
                        self.chunks_done = done;
                        self.next_progress += 1;
                    }
                }
                self.at += 1;
                return Some((Ok(e), self.chunks_done));
            }
            if let Some(err) = self.batch.error.take() {
                self.done = true;
                return Some((Err(err), self.chunks_done));
            }
            if self.done {
                return None;
            }
            match self.batches.recv() {
                Ok(b) => {
                    let spent = std::mem::replace(&mut self.batch, b);
                    // Back to the thread to be filled again (dropped if it has enough).
                    let _ = self.empties.try_send(spent);
                    self.at = 0;
                    self.next_progress = 0;
                }
                Err(_) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // Close the channel first: a thread blocked sending wakes up and ends.
        let (_, closed) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.batches, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
