//! The report's streaming pass: the replay of the events with an observer that keeps
//! per-site statistics ([`SiteAcc`]), the peak (by epochs, see the module comment of
//! [`crate::report`]), the growth floors and the RSS samples around the peak. [`run`]
//! feeds it every event of the window and hands what it kept, [`Finished`], to the
//! sections (`sections.rs`), which compute the report from it.

use crate::advice::SiteFacts;
use crate::growth::{self, Floors};
use crate::heap_rss::{glibc_chunk_size, RssPoint};
use crate::leaks::LeakTracker;
use crate::replay::{AddrHasher, Block, Counters, HeapObserver, Release, Replay, SiteKey};
use crate::site::DENSE_STACK_IDS;
use crate::site::{Prefetch, ReportedEvents};
use crate::site::{Progress, Site, SiteStats};
use crate::temporary::Temporary;
use crate::window::Window;
use crate::Error;
use memlens_trace::reader::{Event, TraceReader};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Everything the pass keeps about one site.
#[derive(Clone, Debug)]
pub(super) struct SiteAcc {
    pub(super) key: SiteKey,
    // Counted in the window.
    pub(super) allocations: u64,
    pub(super) bytes_allocated: u64,
    pub(super) temporary: u64,
    pub(super) temporary_bytes: u64,
    pub(super) freed: u64,
    pub(super) min_size: u64,
    pub(super) max_size: u64,
    pub(super) grow_reallocs: u64,
    pub(super) realloc_moves: u64,
    pub(super) realloc_copied: u64,
    // State.
    pub(super) live_bytes: u64,
    pub(super) live_blocks: u64,
    /// Live blocks allocated in the window.
    pub(super) win_bytes: u64,
    pub(super) win_blocks: u64,
    /// Live bytes and blocks at the peak of epoch `epoch` (see the module comment).
    pub(super) epoch: u64,
    pub(super) peak_bytes: u64,
    pub(super) peak_blocks: u64,
    /// Lowest live bytes in the current growth interval.
    pub(super) interval_min: u64,
    pub(super) floors: Option<Box<Floors>>,
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
    pub(super) fn touch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.peak_bytes = self.live_bytes;
            self.peak_blocks = self.live_blocks;
        }
    }

    pub(super) fn site(&self, live_bytes: u64, live_blocks: u64) -> Site {
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

    pub(super) fn facts(&self) -> SiteFacts {
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
    /// Stack id (below [`DENSE_STACK_IDS`]) -> 1 + index of the site (stack, its first
    /// function); 0: none yet.
    by_stack: Vec<u32>,
    index: HashMap<u64, u32, BuildHasherDefault<AddrHasher>>,
    sites: Vec<SiteAcc>,
}

impl SiteTable {
    #[inline]
    fn index(&mut self, key: SiteKey) -> u32 {
        if key.stack < DENSE_STACK_IDS {
            let slot = key.stack as usize;
            if let Some(&i) = self.by_stack.get(slot) {
                if i != 0 && self.sites[i as usize - 1].key.func == key.func {
                    return i - 1;
                }
            }
        }
        self.index_slow(key)
    }

    /// Whether the sites take more room than the cache holds, so that prefetching them
    /// pays.
    #[inline]
    fn spills_cache(&self) -> bool {
        std::mem::size_of_val(self.sites.as_slice()) >= memlens_trace::CACHED_BYTES
    }

    /// Ask the CPU for the site of `stack`'s blocks, if it has one and the sites do not
    /// stay in the cache anyway (a hint).
    #[inline]
    fn prefetch(&self, stack: u32) {
        if let Some(&i) = self.by_stack.get(stack as usize) {
            if let Some(i) = (i as usize).checked_sub(1) {
                self.prefetch_site(i);
            }
        }
    }

    /// Ask the CPU for site `i`, unless the sites stay in the cache anyway (a hint).
    #[inline]
    fn prefetch_site(&self, i: usize) {
        if let Some(site) = self.sites.get(i).filter(|_| self.spills_cache()) {
            memlens_trace::prefetch_value(site);
        }
    }

    #[cold]
    fn index_slow(&mut self, key: SiteKey) -> u32 {
        let k = (key.stack as u64) << 8 | key.func as u64;
        let sites = &mut self.sites;
        let i = *self.index.entry(k).or_insert_with(|| {
            sites.push(SiteAcc::new(key));
            (sites.len() - 1) as u32
        });
        if key.stack < DENSE_STACK_IDS {
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
    /// The trace is sampled (`--sample`).
    sampled: bool,
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
        s.live_blocks += b.count;
        if in_window {
            s.allocations += b.count;
            s.bytes_allocated = s.bytes_allocated.saturating_add(b.size);
            s.win_bytes = s.win_bytes.saturating_add(b.size);
            s.win_blocks += b.count;
            // A sampled block's own size (its bytes over its count, near enough).
            let own = b.size / b.count.max(1);
            s.min_size = s.min_size.min(own);
            s.max_size = s.max_size.max(own);
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
        // A sampled trace misses the allocations between two sampled ones, so it cannot
        // tell a temporary block: none is counted.
        let temporary = !self.sampled && self.temporary.released(addr, b, why);
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
        s.live_blocks = s.live_blocks.saturating_sub(b.count);
        s.interval_min = s.interval_min.min(s.live_bytes);
        if b.ts >= from && in_window {
            s.win_bytes = s.win_bytes.saturating_sub(b.size);
            s.win_blocks = s.win_blocks.saturating_sub(b.count);
            if why != Release::Reused {
                s.freed += b.count;
            }
            if temporary {
                s.temporary += b.count;
                s.temporary_bytes = s.temporary_bytes.saturating_add(b.size);
            }
        }
    }
}

/// The sites of allocations and the live blocks of releases come from tables of
/// thousands to millions of entries, prefetched ahead of their events.
impl Prefetch for Pass {
    #[inline]
    fn prefetch(&self, ev: &Event) {
        self.replay.prefetch(ev);
        if let Event::Alloc { stack, .. } | Event::Realloc { stack, .. } = *ev {
            self.st.sites.prefetch(stack);
        }
    }

    /// A released block's site: its slot in the replay's table has arrived by now.
    #[inline]
    fn prefetch_then(&self, ev: &Event) {
        if !self.st.sites.spills_cache() {
            return;
        }
        if let Event::Free { addr, .. } | Event::Realloc { old: addr, .. } = *ev {
            if let Some(b) = self.replay.get(addr) {
                self.st.sites.prefetch_site(b.tag as usize);
            }
        }
    }
}

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

/// What the pass kept once every event of the window was fed.
pub(super) struct Finished {
    pub(super) replay: Replay,
    /// The leak tracker, when the leak analysis was asked for.
    pub(super) leaks: Option<LeakTracker>,
    /// Every site, its peak values those of the last peak.
    pub(super) sites: Vec<SiteAcc>,
    /// The replay's counters when the window started.
    pub(super) at_from: Counters,
    pub(super) win: Window,
    pub(super) grow_from: u64,
    pub(super) grow_span: u64,
    pub(super) peak_bytes: u64,
    pub(super) peak_blocks: u64,
    pub(super) peak_ns: u64,
    pub(super) first_rss: Option<RssPoint>,
    pub(super) rss_before_peak: Option<RssPoint>,
    pub(super) rss_after_peak: Option<RssPoint>,
    pub(super) peak_rss: Option<RssPoint>,
    pub(super) window_last_rss: Option<RssPoint>,
    pub(super) last_ts: u64,
}

/// Replay the events of `reader` up to the end of `win` (all of them when `to_end`),
/// calling `progress` whenever an event chunk has been consumed. `leaks`: also feed a leak
/// tracker (`heap_errors`: one that classifies heap errors too).
pub(super) fn run(
    reader: &TraceReader,
    metadata: &memlens_trace::reader::Metadata,
    win: Window,
    to_end: bool,
    leaks: Option<bool>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Finished, Error> {
    // Growth looks at the window from the program's first heap event (start-up would only
    // dilute its intervals) to the end of its run as its RSS samples mark it: the last is
    // taken at exit, before the leak check (which would dilute them too), or is the last
    // before the process was killed. A site that filled up early and then stayed level
    // while the program ran on without allocating is not growing; ending at the last heap
    // event, it looked as if it grew to the end. (Without RSS samples: the last heap
    // event.)
    let (grow_from, grow_to) = match reader.heap_event_span() {
        Some((a, b)) => (
            a.max(win.from_ns),
            b.max(reader.last_event_ts()).min(win.to_ns),
        ),
        None => (win.from_ns, win.from_ns),
    };
    let grow_span = grow_to.saturating_sub(grow_from);

    let mut pass = Pass {
        replay: Replay::for_trace(reader),
        st: State {
            sites: SiteTable::default(),
            temporary: Temporary::new(),
            from: win.from_ns,
            in_window: false,
            epoch: 0,
            live_chunk: 0,
            page_size: u64::from(reader.header().page_size).max(1),
            realloc_old: None,
            sampled: reader.header().sample_interval != 0,
        },
        leaks: leaks.map(|heap_errors| {
            if heap_errors {
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
    let mut events = ReportedEvents::new(reader, metadata, 1, progress);
    while let Some(ev) = events.next_for(&pass) {
        let ev = ev?;
        if !to_end && ev.ts() > win.to_ns {
            break;
        }
        pass.feed(&ev);
    }
    if !pass.entered {
        pass.enter();
    }
    if grow_span > 0 {
        while pass.closed < growth::INTERVALS {
            pass.close_interval();
        }
    }
    let epoch = pass.st.epoch;
    let mut sites = pass.st.sites.sites;
    for s in &mut sites {
        s.touch(epoch);
    }
    Ok(Finished {
        replay: pass.replay,
        leaks: pass.leaks,
        sites,
        at_from: pass.at_from,
        win,
        grow_from,
        grow_span,
        peak_bytes: pass.peak_bytes,
        peak_blocks: pass.peak_blocks,
        peak_ns: pass.peak_ns,
        first_rss: pass.first_rss,
        rss_before_peak: pass.rss_before_peak,
        rss_after_peak: pass.rss_after_peak,
        peak_rss: pass.peak_rss,
        window_last_rss: pass.window_last_rss,
        last_ts: pass.last_ts,
    })
}
