//! The report of one trace: totals, peak heap and its composition, memory not freed at
//! exit, and the hottest allocation sites.
//!
//! [`Report::build`] reads the events twice: the first pass computes the totals, the
//! per-site statistics and *when* the heap peaked; the second pass replays the events up
//! to that moment again to learn what the heap held then. Nothing is kept per event, so
//! traces larger than memory are fine.

use crate::replay::{Block, Counters, HeapObserver, Replay, SiteKey};
use crate::Error;
use memlens_trace::reader::{EndRecord, Metadata, RawFrame, TraceReader, Truncation};
use memlens_trace::{AllocFunc, Header};
use std::collections::HashMap;
use std::path::PathBuf;

/// What to compute.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Keep at most this many sites in each list of the report.
    pub top: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { top: 10 }
    }
}

/// Progress of [`Report::build_with_progress`]: event chunks consumed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// 1: totals and sites; 2: replay up to the peak (usually stops before the end);
    /// 3: the leak check's replay ([`crate::leaks::analyse_with_progress`]).
    pub pass: u8,
    pub chunks_done: u64,
    pub chunks_total: u64,
}

/// Statistics of one allocation site (a stack and the allocating function).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Successful allocations made here over the whole run.
    pub allocations: u64,
    /// Bytes requested here over the whole run.
    pub bytes_allocated: u64,
    /// Bytes of the site's blocks that are live at the moment the list describes (the
    /// peak for [`PeakHeap::sites`], the end of the trace otherwise).
    pub live_bytes: u64,
    /// Blocks of the site live at that moment.
    pub live_blocks: u64,
}

/// One line of a site list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub stack: u32,
    pub func: AllocFunc,
    pub stats: SiteStats,
}

/// Totals over the whole trace. Reallocs count as an allocation plus a free of the old
/// block (see [`crate::replay`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub allocations: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub bytes_allocated: u64,
    pub peak_heap_bytes: u64,
    /// Time of the peak, ns since the trace started (0 if the heap never grew).
    pub peak_heap_ns: u64,
    /// Highest RSS sample (`None`: the trace has no samples).
    pub peak_rss_bytes: Option<u64>,
    /// The end record's time, or the last event's when the trace has no end record, ns.
    pub runtime_ns: u64,
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
    /// Sites live at the peak, by live bytes (descending), at most `top`.
    pub sites: Vec<Site>,
    /// Number of sites with live blocks at the peak (before the `top` cut).
    pub site_count: usize,
}

/// Memory still allocated when the trace ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotFreed {
    pub bytes: u64,
    pub blocks: u64,
    /// Sites with blocks live at the end, by live bytes (descending), at most `top`.
    pub sites: Vec<Site>,
    /// Number of such sites (before the `top` cut).
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
    pub totals: Totals,
    pub peak: PeakHeap,
    pub not_freed: NotFreed,
    /// Sites by number of allocations (descending), at most `top`.
    pub by_allocations: Vec<Site>,
    /// Sites by bytes allocated (descending), at most `top`.
    pub by_bytes: Vec<Site>,
    /// Number of distinct allocation sites.
    pub site_count: usize,
    /// Things a reader of the report should know (lost events, anomalies...).
    pub warnings: Vec<String>,
}

/// Per-site statistics maintained during the first pass.
#[derive(Default)]
struct SiteTable(HashMap<SiteKey, SiteStats>);

impl HeapObserver for SiteTable {
    fn added(&mut self, b: &Block, allocation: bool) {
        let s = self.0.entry(b.site).or_default();
        if allocation {
            s.allocations += 1;
            s.bytes_allocated = s.bytes_allocated.saturating_add(b.size);
        }
        s.live_bytes = s.live_bytes.saturating_add(b.size);
        s.live_blocks += 1;
    }
    fn removed(&mut self, b: &Block) {
        if let Some(s) = self.0.get_mut(&b.site) {
            s.live_bytes = s.live_bytes.saturating_sub(b.size);
            s.live_blocks = s.live_blocks.saturating_sub(1);
        }
    }
}

fn sorted_top(
    mut sites: Vec<Site>,
    top: usize,
    key: impl Fn(&SiteStats) -> (u64, u64),
) -> Vec<Site> {
    // Descending by key, then by stack id and function for a stable order.
    sites.sort_by(|a, b| {
        key(&b.stats)
            .cmp(&key(&a.stats))
            .then((a.stack, a.func).cmp(&(b.stack, b.func)))
    });
    sites.truncate(top);
    sites
}

impl Report {
    /// Analyse a trace.
    pub fn build(reader: &TraceReader, opts: &ReportOptions) -> Result<Report, Error> {
        Self::build_with_progress(reader, opts, &mut |_| {})
    }

    /// Analyse a trace, calling `progress` whenever an event chunk has been consumed.
    pub fn build_with_progress(
        reader: &TraceReader,
        opts: &ReportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Report, Error> {
        let metadata = reader.metadata()?;
        let chunks_total = reader.event_chunk_count() as u64;

        // Pass 1: totals, sites, when the peak happened.
        let mut replay = Replay::new();
        let mut sites = SiteTable::default();
        let (mut peak_bytes, mut peak_ns, mut peak_events) = (0u64, 0u64, 0u64);
        let mut last_ts = 0u64;
        let mut events = reader.events();
        let mut reported = 0;
        while let Some(ev) = events.next() {
            let ev = ev?;
            replay.apply(&ev, &mut sites);
            last_ts = last_ts.max(ev.ts());
            if replay.live_bytes() > peak_bytes {
                peak_bytes = replay.live_bytes();
                peak_ns = ev.ts();
                peak_events = replay.counters().events;
            }
            if events.chunks_done() != reported {
                reported = events.chunks_done();
                progress(Progress {
                    pass: 1,
                    chunks_done: reported as u64,
                    chunks_total,
                });
            }
        }
        let c: Counters = *replay.counters();
        let totals = Totals {
            allocations: c.allocations,
            frees: c.frees,
            reallocs: c.reallocs,
            bytes_allocated: c.bytes_allocated,
            peak_heap_bytes: peak_bytes,
            peak_heap_ns: peak_ns,
            peak_rss_bytes: (c.peak_rss_bytes > 0).then_some(c.peak_rss_bytes),
            runtime_ns: metadata.end.map_or(last_ts, |e| e.ts),
            not_freed_bytes: replay.live_bytes(),
            not_freed_blocks: replay.live_blocks(),
            untracked_frees: c.untracked_frees,
            failed_allocations: c.failed_allocations,
            failed_reallocs: c.failed_reallocs,
            reused_addresses: c.reused_addresses,
            events: c.events,
        };
        drop(replay);

        let all: Vec<Site> = sites
            .0
            .iter()
            .map(|(k, s)| Site {
                stack: k.stack,
                func: k.func,
                stats: *s,
            })
            .collect();
        let site_count = all.len();
        let live_at_end: Vec<Site> = all
            .iter()
            .copied()
            .filter(|s| s.stats.live_blocks > 0)
            .collect();
        let not_freed = NotFreed {
            bytes: totals.not_freed_bytes,
            blocks: totals.not_freed_blocks,
            site_count: live_at_end.len(),
            sites: sorted_top(live_at_end, opts.top, |s| (s.live_bytes, s.live_blocks)),
        };
        let by_allocations = sorted_top(all.clone(), opts.top, |s| {
            (s.allocations, s.bytes_allocated)
        });
        let by_bytes = sorted_top(all, opts.top, |s| (s.bytes_allocated, s.allocations));

        // Pass 2: the heap at the peak.
        let mut replay = Replay::new();
        if peak_events > 0 {
            let mut events = reader.events();
            let mut reported = 0;
            while replay.counters().events < peak_events {
                let Some(ev) = events.next() else { break };
                replay.apply(&ev?, &mut ());
                if events.chunks_done() != reported {
                    reported = events.chunks_done();
                    progress(Progress {
                        pass: 2,
                        chunks_done: reported as u64,
                        chunks_total,
                    });
                }
            }
        }
        let mut at_peak: HashMap<SiteKey, SiteStats> = HashMap::new();
        for (_, b) in replay.blocks() {
            let s = at_peak.entry(b.site).or_insert_with(|| {
                let whole = sites.0.get(&b.site).copied().unwrap_or_default();
                SiteStats {
                    live_bytes: 0,
                    live_blocks: 0,
                    ..whole
                }
            });
            s.live_bytes = s.live_bytes.saturating_add(b.size);
            s.live_blocks += 1;
        }
        let peak_sites: Vec<Site> = at_peak
            .into_iter()
            .map(|(k, s)| Site {
                stack: k.stack,
                func: k.func,
                stats: s,
            })
            .collect();
        let peak = PeakHeap {
            bytes: replay.live_bytes(),
            blocks: replay.live_blocks(),
            time_ns: peak_ns,
            site_count: peak_sites.len(),
            sites: sorted_top(peak_sites, opts.top, |s| (s.live_bytes, s.live_blocks)),
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
            totals,
            peak,
            not_freed,
            by_allocations,
            by_bytes,
            site_count,
            warnings,
        })
    }

    /// The frames of a stack (innermost first); empty if the trace does not define it.
    pub fn stack(&self, id: u32) -> &[RawFrame] {
        self.metadata.stacks.get(&id).map_or(&[], |v| v.as_slice())
    }
}
