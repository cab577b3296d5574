//! The report of one trace, in **one streaming pass** over the events: totals, the peak
//! heap and its composition, memory not freed, the hottest sites, temporary allocations,
//! growth (logical leaks), heap vs RSS, advice, and (when the trace has an exit scan) the
//! leak analysis.
//!
//! The heap's composition at its peak needs no second pass: each site remembers its live
//! bytes at the latest peak lazily. A new peak bumps an epoch (O(1)); a site about to
//! change whose epoch is older first saves its live bytes as "at the peak" (they have not
//! changed since). Growth floors are kept per site in bounded memory (`growth.rs`).
//! Nothing is kept per event, so traces larger than memory are fine.
//!
//! With a window (`--from`/`--to`), every event before the window is still replayed, so
//! the heap the window starts with is right; only allocations made in the window are
//! counted, the peak is the window's, and "not freed" means allocated in the window and
//! still live at its end. Events after the window are not read.

use crate::advice::{self, Advice, SiteFacts};
use crate::growth::{self, Floors, GrowthFit};
use crate::heap_rss::{self, glibc_chunk_size, Breakdown, HeapVsRss, RssPoint};
use crate::leaks::{LeakReport, LeakTracker, Resolution};
use crate::replay::{AddrHasher, Block, Counters, HeapObserver, Release, Replay, SiteKey};
use crate::temporary::Temporary;
use crate::window::{Window, WindowSpec};
use crate::Error;
use memlens_trace::reader::{
    EndRecord, Event, Metadata, Notice, RawFrame, TraceReader, Truncation,
};
use memlens_trace::{AllocFunc, Header, NoticeKind};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::PathBuf;

/// What to compute.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Keep at most this many entries in each list of the report.
    pub top: usize,
    /// The part of the run to report on (default: all of it).
    pub window: WindowSpec,
    /// Also run the leak analysis in the same pass, at this resolution, when the window
    /// reaches the end of the run ([`Report::leaks`]).
    pub leaks: Option<Resolution>,
    /// With `leaks`: also classify heap errors (costs a map of freed blocks); without,
    /// the leak report has the leak kinds only.
    pub heap_errors: bool,
    pub sort: SortOptions,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            top: 10,
            window: WindowSpec::default(),
            leaks: Some(Resolution::High),
            heap_errors: false,
            sort: SortOptions::default(),
        }
    }
}

/// Orders of the lists that have more than one sensible order (the first variant of each
/// is the default). `hotspots` always has both of its lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SortOptions {
    pub peak: LiveSort,
    pub not_freed: LiveSort,
    pub temporary: TemporarySort,
    pub growth: GrowthSort,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LiveSort {
    #[default]
    Bytes,
    Blocks,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TemporarySort {
    /// Number of temporary allocations.
    #[default]
    Count,
    /// Bytes of temporary allocations.
    Bytes,
    /// Temporary allocations as a share of the site's allocations.
    Fraction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrowthSort {
    /// Bytes per second.
    #[default]
    Rate,
    /// How much the floor rose.
    Growth,
    /// Mann–Kendall confidence.
    Confidence,
}

/// Progress of [`Report::build_with_progress`]: event chunks consumed so far.
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
    /// peak for [`PeakHeap::sites`], the end of the window otherwise, counting blocks
    /// allocated in the window).
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

/// Totals over the window (the whole run by default). Reallocs count as an allocation
/// plus a free of the old block (see [`crate::replay`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub allocations: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub bytes_allocated: u64,
    /// Temporary allocations (see [`crate::temporary`]).
    pub temporary: u64,
    pub peak_heap_bytes: u64,
    /// Time of the peak, ns since the trace started (the window's start if the heap never
    /// grew in it).
    pub peak_heap_ns: u64,
    /// Highest RSS sample (`None`: no samples in the window).
    pub peak_rss_bytes: Option<u64>,
    pub peak_rss_ns: Option<u64>,
    /// The window's length: the end record's time, or the last event's when the trace has
    /// no end record, for the whole run.
    pub runtime_ns: u64,
    /// Blocks allocated in the window and still live at its end (for the whole run: not
    /// freed at exit).
    pub not_freed_bytes: u64,
    pub not_freed_blocks: u64,
    /// Releases of addresses that were never seen allocated, as found in the events.
    pub untracked_frees: u64,
    pub failed_allocations: u64,
    pub failed_reallocs: u64,
    /// Allocations at an address that was still live (a release the recorder missed).
    pub reused_addresses: u64,
    pub events: u64,
}

/// The heap at its peak.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeakHeap {
    pub bytes: u64,
    pub blocks: u64,
    /// ns since the trace started.
    pub time_ns: u64,
    /// Sites live at the peak (blocks allocated before the window included), at most `top`.
    pub sites: Vec<Site>,
    /// Number of sites with live blocks at the peak (before the `top` cut).
    pub site_count: usize,
}

/// Memory still allocated when the window (by default, the trace) ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotFreed {
    pub bytes: u64,
    pub blocks: u64,
    /// Sites with such blocks, at most `top`.
    pub sites: Vec<Site>,
    /// Number of such sites (before the `top` cut).
    pub site_count: usize,
}

/// A site with temporary allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemporarySite {
    pub site: Site,
    /// Bytes of its temporary allocations.
    pub bytes: u64,
}

/// Temporary allocations (see [`crate::temporary`] for the definition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemporaryAllocations {
    pub count: u64,
    pub bytes: u64,
    /// Sites with temporary allocations, at most `top`.
    pub sites: Vec<TemporarySite>,
    pub site_count: usize,
}

/// A site the growth section flags.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowingSite {
    /// Its statistics; `live_*` at the end of the window (all its blocks).
    pub site: Site,
    pub fit: GrowthFit,
}

/// Growth (logical leaks), see [`crate::growth`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Growth {
    /// The span the intervals cover: the window, from its first to its last heap event.
    pub from_ns: u64,
    pub span_ns: u64,
    /// Intervals the span was cut into, and the length of one.
    pub intervals: usize,
    pub interval_ns: u64,
    /// Sites with enough floors to be judged.
    pub sites_judged: usize,
    /// Growing sites, at most `top`.
    pub sites: Vec<GrowingSite>,
    pub site_count: usize,
}

/// The analysis of one trace. Stacks are raw; symbolize the ones you print with
/// [`crate::Symbolizer`].
#[derive(Clone, Debug)]
pub struct Report {
    pub path: PathBuf,
    pub header: Header,
    pub truncation: Option<Truncation>,
    pub end: Option<EndRecord>,
    pub metadata: Metadata,
    /// The window reported on (`is_whole()` when it is the whole run).
    pub window: Window,
    pub totals: Totals,
    pub peak: PeakHeap,
    pub not_freed: NotFreed,
    /// Sites by number of allocations (descending), at most `top`.
    pub by_allocations: Vec<Site>,
    /// Sites by bytes allocated (descending), at most `top`.
    pub by_bytes: Vec<Site>,
    /// Number of distinct allocation sites that allocated in the window.
    pub site_count: usize,
    pub temporary: TemporaryAllocations,
    pub growth: Growth,
    /// `None` when the window has no RSS sample.
    pub heap_vs_rss: Option<HeapVsRss>,
    /// At most `top` lines, ordered by rule then weight.
    pub advice: Vec<Advice>,
    /// The leak analysis, when asked for and the window reaches the end of the run. Its
    /// `scan` is `None` when the trace has no exit scan.
    pub leaks: Option<LeakReport>,
    /// Things a reader of the report should know (lost events, anomalies...).
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Per-site accumulation

/// Everything the pass keeps about one site.
#[derive(Clone, Debug)]
struct SiteAcc {
    key: SiteKey,
    // Counted in the window.
    allocations: u64,
    bytes_allocated: u64,
    temporary: u64,
    temporary_bytes: u64,
    freed: u64,
    min_size: u64,
    max_size: u64,
    grow_reallocs: u64,
    realloc_moves: u64,
    realloc_copied: u64,
    // State.
    live_bytes: u64,
    live_blocks: u64,
    /// Live blocks allocated in the window.
    win_bytes: u64,
    win_blocks: u64,
    /// Live bytes and blocks at the peak of epoch `epoch` (see the module comment).
    epoch: u64,
    peak_bytes: u64,
    peak_blocks: u64,
    /// Lowest live bytes in the current growth interval.
    interval_min: u64,
    floors: Option<Box<Floors>>,
}

impl SiteAcc {
    fn new(key: SiteKey) -> SiteAcc {
        SiteAcc {
            key,
            allocations: 0,
            bytes_allocated: 0,
            temporary: 0,
            temporary_bytes: 0,
            freed: 0,
            min_size: u64::MAX,
            max_size: 0,
            grow_reallocs: 0,
            realloc_moves: 0,
            realloc_copied: 0,
            live_bytes: 0,
            live_blocks: 0,
            win_bytes: 0,
            win_blocks: 0,
            epoch: 0,
            peak_bytes: 0,
            peak_blocks: 0,
            interval_min: 0,
            floors: None,
        }
    }

    #[inline]
    fn touch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.peak_bytes = self.live_bytes;
            self.peak_blocks = self.live_blocks;
        }
    }

    fn site(&self, live_bytes: u64, live_blocks: u64) -> Site {
        Site {
            stack: self.key.stack,
            func: self.key.func,
            stats: SiteStats {
                allocations: self.allocations,
                bytes_allocated: self.bytes_allocated,
                live_bytes,
                live_blocks,
                temporary: self.temporary,
            },
        }
    }

    fn facts(&self) -> SiteFacts {
        SiteFacts {
            temporary: self.temporary,
            freed: self.freed,
            min_size: self.min_size,
            max_size: self.max_size,
            grow_reallocs: self.grow_reallocs,
            realloc_moves: self.realloc_moves,
            realloc_copied: self.realloc_copied,
        }
    }
}

/// Sites, interned: (stack, function) -> index into `sites`. The recorder numbers stacks
/// from 1 up, and a stack almost always goes with one allocating function, so a vector
/// indexed by stack id answers most lookups; the hash map takes the rest.
#[derive(Default)]
struct SiteTable {
    /// Stack id -> 1 + index of the site (stack, its first function); 0: none yet.
    by_stack: Vec<u32>,
    index: HashMap<u64, u32, BuildHasherDefault<AddrHasher>>,
    sites: Vec<SiteAcc>,
}

/// Stack ids below this use `by_stack` (4 bytes each, allocated as they are seen).
const DIRECT_STACKS: u32 = 1 << 24;

impl SiteTable {
    #[inline]
    fn index(&mut self, key: SiteKey) -> u32 {
        if key.stack < DIRECT_STACKS {
            let slot = key.stack as usize;
            if let Some(&i) = self.by_stack.get(slot) {
                if i != 0 && self.sites[i as usize - 1].key.func == key.func {
                    return i - 1;
                }
            }
        }
        self.index_slow(key)
    }

    #[cold]
    fn index_slow(&mut self, key: SiteKey) -> u32 {
        let k = (key.stack as u64) << 8 | key.func as u64;
        let sites = &mut self.sites;
        let i = *self.index.entry(k).or_insert_with(|| {
            sites.push(SiteAcc::new(key));
            (sites.len() - 1) as u32
        });
        if key.stack < DIRECT_STACKS {
            let slot = key.stack as usize;
            if slot >= self.by_stack.len() {
                self.by_stack.resize(slot + 1, 0);
            }
            if self.by_stack[slot] == 0 {
                self.by_stack[slot] = i + 1;
            }
        }
        i
    }
}

/// The observer of the replay: per-site statistics and the running estimates.
struct State {
    sites: SiteTable,
    temporary: Temporary,
    /// Events at or after this time are in the window.
    from: u64,
    in_window: bool,
    epoch: u64,
    /// Sum of glibc chunk sizes of the live blocks.
    live_chunk: u64,
    page_size: u64,
    /// The block a realloc just replaced: (address, size).
    realloc_old: Option<(u64, u64)>,
}

impl HeapObserver for State {
    #[inline]
    fn added(&mut self, addr: u64, b: &Block) -> u32 {
        self.temporary.allocated(b.thread, addr);
        self.live_chunk = self
            .live_chunk
            .saturating_add(glibc_chunk_size(b.size, self.page_size));
        let realloc_old = self.realloc_old.take();
        let (epoch, in_window) = (self.epoch, self.in_window);
        let index = self.sites.index(b.site);
        let s = &mut self.sites.sites[index as usize];
        s.touch(epoch);
        s.live_bytes = s.live_bytes.saturating_add(b.size);
        s.live_blocks += 1;
        if in_window {
            s.allocations += 1;
            s.bytes_allocated = s.bytes_allocated.saturating_add(b.size);
            s.win_bytes = s.win_bytes.saturating_add(b.size);
            s.win_blocks += 1;
            s.min_size = s.min_size.min(b.size);
            s.max_size = s.max_size.max(b.size);
            if let Some((old_addr, old_size)) = realloc_old {
                if b.size > old_size {
                    s.grow_reallocs += 1;
                }
                if old_addr != addr {
                    s.realloc_moves += 1;
                    s.realloc_copied = s.realloc_copied.saturating_add(old_size.min(b.size));
                }
            }
        }
        index
    }

    #[inline]
    fn removed(&mut self, addr: u64, b: &Block, why: Release) {
        let temporary = self.temporary.released(addr, b, why);
        self.live_chunk = self
            .live_chunk
            .saturating_sub(glibc_chunk_size(b.size, self.page_size));
        if why == Release::Realloc {
            self.realloc_old = Some((addr, b.size));
        }
        let (epoch, in_window, from) = (self.epoch, self.in_window, self.from);
        let s = &mut self.sites.sites[b.tag as usize];
        s.touch(epoch);
        s.live_bytes = s.live_bytes.saturating_sub(b.size);
        s.live_blocks = s.live_blocks.saturating_sub(1);
        s.interval_min = s.interval_min.min(s.live_bytes);
        if b.ts >= from && in_window {
            s.win_bytes = s.win_bytes.saturating_sub(b.size);
            s.win_blocks = s.win_blocks.saturating_sub(1);
            if why != Release::Reused {
                s.freed += 1;
            }
            if temporary {
                s.temporary += 1;
                s.temporary_bytes = s.temporary_bytes.saturating_add(b.size);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pass

struct Pass {
    replay: Replay,
    st: State,
    leaks: Option<LeakTracker>,
    win: Window,
    entered: bool,
    at_from: Counters,
    /// The span the growth intervals cover: the window, from its first to its last heap
    /// event.
    grow_from: u64,
    grow_span: u64,
    /// Growth intervals closed so far, and the end of the current one.
    closed: usize,
    next_boundary: u64,
    peak_bytes: u64,
    peak_blocks: u64,
    peak_ns: u64,
    first_rss: Option<RssPoint>,
    last_rss: Option<RssPoint>,
    /// The last sample before the heap's peak, and the first one after it.
    rss_before_peak: Option<RssPoint>,
    rss_after_peak: Option<RssPoint>,
    want_rss_after_peak: bool,
    peak_rss: Option<RssPoint>,
    window_last_rss: Option<RssPoint>,
    last_ts: u64,
}

impl Pass {
    fn boundary(&self, k: usize) -> u64 {
        let span = self.grow_span as u128;
        self.grow_from + (span * k as u128 / growth::INTERVALS as u128) as u64
    }

    fn enter(&mut self) {
        self.entered = true;
        self.st.in_window = true;
        self.at_from = *self.replay.counters();
        self.peak_bytes = self.replay.live_bytes();
        self.peak_blocks = self.replay.live_blocks();
        self.peak_ns = self.win.from_ns;
        self.rss_before_peak = self.last_rss;
        self.rss_after_peak = None;
        self.want_rss_after_peak = true;
        self.st.epoch += 1;
        for s in &mut self.st.sites.sites {
            s.interval_min = s.live_bytes;
        }
        self.next_boundary = self.boundary(1);
    }

    /// Close growth interval `self.closed`: record each site's floor.
    fn close_interval(&mut self) {
        let k = self.closed;
        for s in &mut self.st.sites.sites {
            let floor = s.interval_min;
            s.interval_min = s.live_bytes;
            match &mut s.floors {
                Some(f) => f.values.push(floor),
                None if floor > 0 => {
                    let mut values = Vec::with_capacity(growth::INTERVALS - k);
                    values.push(floor);
                    s.floors = Some(Box::new(Floors { start: k, values }));
                }
                None => {}
            }
        }
        self.closed += 1;
        self.next_boundary = self.boundary(self.closed + 1);
    }

    fn rss_point(&self, ts: u64, rss: u64) -> RssPoint {
        RssPoint {
            ts,
            rss,
            heap_bytes: self.replay.live_bytes(),
            heap_blocks: self.replay.live_blocks(),
            chunk_bytes: self.st.live_chunk,
        }
    }

    #[inline]
    fn feed(&mut self, ev: &Event) {
        let ts = ev.ts();
        if !self.entered && ts >= self.win.from_ns {
            self.enter();
        }
        if self.entered && self.grow_span > 0 {
            while ts >= self.next_boundary && self.closed < growth::INTERVALS {
                self.close_interval();
            }
        }
        if let Some(l) = &mut self.leaks {
            l.before(ev, &self.replay);
        }
        self.replay.apply(ev, &mut self.st);
        self.last_ts = self.last_ts.max(ts);
        if let Event::Rss { bytes, .. } = *ev {
            let p = self.rss_point(ts, bytes);
            if self.first_rss.is_none() {
                self.first_rss = Some(p);
            }
            self.last_rss = Some(p);
            if self.entered {
                self.window_last_rss = Some(p);
                if self.want_rss_after_peak {
                    self.rss_after_peak = Some(p);
                    self.want_rss_after_peak = false;
                }
                if self.peak_rss.is_none_or(|q| bytes > q.rss) {
                    self.peak_rss = Some(p);
                }
            }
        } else if self.entered && self.replay.live_bytes() > self.peak_bytes {
            self.peak_bytes = self.replay.live_bytes();
            self.peak_blocks = self.replay.live_blocks();
            self.peak_ns = ts;
            self.rss_before_peak = self.last_rss;
            self.rss_after_peak = None;
            self.want_rss_after_peak = true;
            self.st.epoch += 1;
        }
    }
}

fn sort_sites(sites: &mut [Site], key: impl Fn(&SiteStats) -> (u64, u64)) {
    // Descending by key, then by stack id and function for a stable order.
    sites.sort_by(|a, b| {
        key(&b.stats)
            .cmp(&key(&a.stats))
            .then((a.stack, a.func).cmp(&(b.stack, b.func)))
    });
}

fn sorted_top(
    mut sites: Vec<Site>,
    top: usize,
    key: impl Fn(&SiteStats) -> (u64, u64),
) -> Vec<Site> {
    sort_sites(&mut sites, key);
    sites.truncate(top);
    sites
}

fn live_key(sort: LiveSort) -> impl Fn(&SiteStats) -> (u64, u64) {
    move |s| match sort {
        LiveSort::Bytes => (s.live_bytes, s.live_blocks),
        LiveSort::Blocks => (s.live_blocks, s.live_bytes),
    }
}

impl Report {
    /// Analyse a trace.
    pub fn build(reader: &TraceReader, opts: &ReportOptions) -> Result<Report, Error> {
        Self::build_with_progress(reader, opts, &mut |_| {})
    }

    /// The end of the run: the end record's time, or the last event's.
    pub fn run_end_ns(reader: &TraceReader, metadata: &Metadata) -> u64 {
        metadata
            .end
            .map_or_else(|| reader.last_event_ts(), |e| e.ts)
    }

    /// Analyse a trace, calling `progress` whenever an event chunk has been consumed.
    pub fn build_with_progress(
        reader: &TraceReader,
        opts: &ReportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Report, Error> {
        let metadata = reader.metadata()?;
        let chunks_total = reader.event_chunk_count() as u64;
        let run_end = Self::run_end_ns(reader, &metadata);
        let win = opts.window.resolve(run_end).map_err(Error::Window)?;
        let to_end = win.to_ns >= run_end;
        let want_leaks = opts.leaks.filter(|_| to_end);
        // Growth looks at the part of the window where the program allocated or freed:
        // start-up and the exit scan would only dilute its intervals.
        let (grow_from, grow_to) = match reader.heap_event_span() {
            Some((a, b)) => (a.max(win.from_ns), b.min(win.to_ns)),
            None => (win.from_ns, win.from_ns),
        };
        let grow_span = grow_to.saturating_sub(grow_from);

        let mut pass = Pass {
            replay: Replay::new(),
            st: State {
                sites: SiteTable::default(),
                temporary: Temporary::new(),
                from: win.from_ns,
                in_window: false,
                epoch: 0,
                live_chunk: 0,
                page_size: u64::from(reader.header().page_size).max(1),
                realloc_old: None,
            },
            leaks: want_leaks.map(|_| {
                if opts.heap_errors {
                    LeakTracker::default()
                } else {
                    LeakTracker::summary_only()
                }
            }),
            win,
            entered: false,
            at_from: Counters::default(),
            grow_from,
            grow_span,
            closed: 0,
            next_boundary: u64::MAX,
            peak_bytes: 0,
            peak_blocks: 0,
            peak_ns: 0,
            first_rss: None,
            last_rss: None,
            rss_before_peak: None,
            rss_after_peak: None,
            want_rss_after_peak: false,
            peak_rss: None,
            window_last_rss: None,
            last_ts: 0,
        };
        let mut events = reader.events();
        let mut reported = 0;
        while let Some(ev) = events.next() {
            let ev = ev?;
            if !to_end && ev.ts() > win.to_ns {
                break;
            }
            pass.feed(&ev);
            if events.chunks_done() != reported {
                reported = events.chunks_done();
                progress(Progress {
                    pass: 1,
                    chunks_done: reported as u64,
                    chunks_total,
                });
            }
        }
        if !pass.entered {
            pass.enter();
        }
        if grow_span > 0 {
            while pass.closed < growth::INTERVALS {
                pass.close_interval();
            }
        }
        let leaks = match (pass.leaks.take(), want_leaks) {
            (Some(t), Some(res)) => Some(t.finish(reader, &metadata, &pass.replay, res)?),
            _ => None,
        };
        let Pass {
            replay,
            st,
            at_from,
            peak_bytes,
            peak_blocks,
            peak_ns,
            first_rss,
            rss_before_peak,
            rss_after_peak,
            peak_rss,
            window_last_rss,
            last_ts,
            ..
        } = pass;
        let epoch = st.epoch;
        let mut accs = st.sites.sites;
        for s in &mut accs {
            s.touch(epoch);
        }

        // Totals.
        let c: Counters = *replay.counters();
        let d = |f: fn(&Counters) -> u64| f(&c) - f(&at_from);
        let not_freed_bytes = accs.iter().fold(0u64, |a, s| a.saturating_add(s.win_bytes));
        let not_freed_blocks = accs.iter().map(|s| s.win_blocks).sum();
        let runtime_ns = if win.is_whole() {
            metadata.end.map_or(last_ts, |e| e.ts)
        } else {
            win.span_ns()
        };
        let totals = Totals {
            allocations: d(|c| c.allocations),
            frees: d(|c| c.frees),
            reallocs: d(|c| c.reallocs),
            bytes_allocated: d(|c| c.bytes_allocated),
            temporary: accs.iter().map(|s| s.temporary).sum(),
            peak_heap_bytes: peak_bytes,
            peak_heap_ns: peak_ns,
            peak_rss_bytes: peak_rss.map(|p| p.rss),
            peak_rss_ns: peak_rss.map(|p| p.ts),
            runtime_ns,
            not_freed_bytes,
            not_freed_blocks,
            untracked_frees: d(|c| c.untracked_frees),
            failed_allocations: d(|c| c.failed_allocations),
            failed_reallocs: d(|c| c.failed_reallocs),
            reused_addresses: d(|c| c.reused_addresses),
            events: d(|c| c.events),
        };
        let top = opts.top;

        // Not freed, peak, hotspots.
        let live_at_end: Vec<Site> = accs
            .iter()
            .filter(|s| s.win_blocks > 0)
            .map(|s| s.site(s.win_bytes, s.win_blocks))
            .collect();
        let not_freed = NotFreed {
            bytes: not_freed_bytes,
            blocks: not_freed_blocks,
            site_count: live_at_end.len(),
            sites: sorted_top(live_at_end, top, live_key(opts.sort.not_freed)),
        };
        let peak_sites: Vec<Site> = accs
            .iter()
            .filter(|s| s.peak_blocks > 0)
            .map(|s| s.site(s.peak_bytes, s.peak_blocks))
            .collect();
        let peak = PeakHeap {
            bytes: peak_bytes,
            blocks: peak_blocks,
            time_ns: peak_ns,
            site_count: peak_sites.len(),
            sites: sorted_top(peak_sites, top, live_key(opts.sort.peak)),
        };
        let allocating: Vec<Site> = accs
            .iter()
            .filter(|s| s.allocations > 0)
            .map(|s| s.site(s.win_bytes, s.win_blocks))
            .collect();
        let site_count = allocating.len();
        let by_allocations = sorted_top(allocating.clone(), top, |s| {
            (s.allocations, s.bytes_allocated)
        });
        let by_bytes = sorted_top(allocating, top, |s| (s.bytes_allocated, s.allocations));

        // Temporary allocations.
        let mut temp: Vec<TemporarySite> = accs
            .iter()
            .filter(|s| s.temporary > 0)
            .map(|s| TemporarySite {
                site: s.site(s.win_bytes, s.win_blocks),
                bytes: s.temporary_bytes,
            })
            .collect();
        let per_million = |t: &TemporarySite| {
            (t.site.stats.temporary as u128 * 1_000_000 / t.site.stats.allocations.max(1) as u128)
                as u64
        };
        temp.sort_by(|a, b| {
            let k = |t: &TemporarySite| match opts.sort.temporary {
                TemporarySort::Count => (t.site.stats.temporary, t.bytes),
                TemporarySort::Bytes => (t.bytes, t.site.stats.temporary),
                TemporarySort::Fraction => (per_million(t), t.site.stats.temporary),
            };
            k(b).cmp(&k(a))
                .then((a.site.stack, a.site.func).cmp(&(b.site.stack, b.site.func)))
        });
        let temporary = TemporaryAllocations {
            count: totals.temporary,
            bytes: accs
                .iter()
                .fold(0u64, |a, s| a.saturating_add(s.temporary_bytes)),
            site_count: temp.len(),
            sites: temp.into_iter().take(top).collect(),
        };

        // Growth.
        let mut judged = 0;
        let mut growing: Vec<(usize, GrowingSite)> = Vec::new();
        for (i, s) in accs.iter().enumerate() {
            let Some(f) = &s.floors else { continue };
            if f.values.len() >= growth::MIN_POINTS {
                judged += 1;
            }
            if let Some(fit) = growth::judge(
                f,
                s.live_bytes,
                grow_from,
                grow_span,
                growth::INTERVALS,
                peak_bytes,
            ) {
                growing.push((
                    i,
                    GrowingSite {
                        site: s.site(s.live_bytes, s.live_blocks),
                        fit,
                    },
                ));
            }
        }
        let growth_key = |g: &GrowingSite| match opts.sort.growth {
            GrowthSort::Rate => g.fit.rate,
            GrowthSort::Growth => g.fit.growth_bytes() as f64,
            GrowthSort::Confidence => g.fit.confidence,
        };
        growing.sort_by(|a, b| {
            growth_key(&b.1)
                .total_cmp(&growth_key(&a.1))
                .then((a.1.site.stack, a.1.site.func).cmp(&(b.1.site.stack, b.1.site.func)))
        });

        // Advice.
        let mut adv: Vec<Advice> = growing
            .iter()
            .map(|(_, g)| advice::growth(g.site, &g.fit))
            .collect();
        for s in accs.iter().filter(|s| s.allocations > 0) {
            adv.extend(advice::from_facts(
                s.site(s.win_bytes, s.win_blocks),
                &s.facts(),
            ));
        }
        advice::sort(&mut adv);
        adv.truncate(top);
        let growth = Growth {
            from_ns: grow_from,
            span_ns: grow_span,
            intervals: growth::INTERVALS,
            interval_ns: grow_span / growth::INTERVALS as u64,
            sites_judged: judged,
            site_count: growing.len(),
            sites: growing.into_iter().take(top).map(|(_, g)| g).collect(),
        };

        // Heap vs RSS.
        let heap_vs_rss = match (peak_rss, window_last_rss) {
            (Some(p), Some(last)) => {
                let baseline = first_rss.map_or(0, |f| f.rss.saturating_sub(f.chunk_bytes));
                let recorder = metadata.end.map_or(0, |e| e.counters.recorder_peak_bytes);
                // The sample nearest the heap's peak, with the heap of its own moment.
                let before = rss_before_peak.filter(|r| r.ts >= win.from_ns);
                let nearest = match (before, rss_after_peak) {
                    (Some(b), Some(a)) if a.ts - peak_ns < peak_ns - b.ts => Some(a),
                    (Some(b), _) => Some(b),
                    (None, a) => a,
                };
                let at_peak_heap = nearest.map(|r| Breakdown::new(&r, baseline, recorder));
                let mut h = HeapVsRss {
                    at_peak_rss: Breakdown::new(&p, baseline, recorder),
                    at_peak_heap,
                    at_end: Breakdown::new(&last, baseline, recorder),
                    peak_heap_bytes: peak_bytes,
                    findings: Vec::new(),
                };
                h.findings = heap_rss::findings(&h);
                Some(h)
            }
            _ => None,
        };

        let mut warnings = Vec::new();
        if let Some(end) = &metadata.end {
            if end.counters.dropped_events > 0 {
                warnings.push(format!(
                    "the recorder lost {} events (it could not write them); the numbers below are incomplete",
                    end.counters.dropped_events
                ));
            }
        }
        warnings.extend(metadata.notices.iter().map(notice_sentence));
        if totals.reused_addresses > 0 {
            warnings.push(format!(
                "{} allocations returned an address that was still allocated (a release was not recorded); the old blocks were counted as freed",
                totals.reused_addresses
            ));
        }

        Ok(Report {
            path: reader.path().to_path_buf(),
            header: reader.header().clone(),
            truncation: reader.truncation().cloned(),
            end: metadata.end,
            metadata,
            window: win,
            totals,
            peak,
            not_freed,
            by_allocations,
            by_bytes,
            site_count,
            temporary,
            growth,
            heap_vs_rss,
            advice: adv,
            leaks,
            warnings,
        })
    }

    /// The frames of a stack (innermost first); empty if the trace does not define it.
    pub fn stack(&self, id: u32) -> &[RawFrame] {
        self.metadata.stacks.get(&id).map_or(&[], |v| v.as_slice())
    }
}

/// A recorder's finding about the process, in one sentence.
pub fn notice_sentence(n: &Notice) -> String {
    match n.kind {
        NoticeKind::OwnAllocator => {
            let file = n.module.rsplit('/').next().unwrap_or(&n.module);
            let names: Vec<&str> = n.symbols.split(',').collect();
            let list = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => n.symbols.clone(),
            };
            format!(
                "{file} defines its own {list}, so the blocks it allocates there never reach the C library's allocator, where memlens records, and cannot be seen; only calls passed on to the C library are recorded"
            )
        }
    }
}

#[cfg(test)]
mod notice_tests {
    use super::*;

    fn own(symbols: &str) -> String {
        notice_sentence(&Notice {
            ts: 0,
            kind: NoticeKind::OwnAllocator,
            module: "/opt/app/bin/server".into(),
            symbols: symbols.into(),
        })
    }

    #[test]
    fn own_allocator_sentence_names_the_file_and_lists_the_functions() {
        assert!(
            own("malloc").starts_with("server defines its own malloc, so the blocks"),
            "{}",
            own("malloc")
        );
        assert!(own("malloc,free").starts_with("server defines its own malloc and free, so"));
        assert!(own("malloc,calloc,free")
            .starts_with("server defines its own malloc, calloc and free, so"));
    }
}
