//! The sections of the report: each one's type and the function that computes it from
//! what the pass kept ([`Finished`]). [`crate::report::Report::build_with_progress`]
//! calls them in turn; a new section is a type here, its function, and its field of
//! [`crate::report::Report`] (ARCHITECTURE.md, "Adding a report section").

use super::pass::Finished;
use super::{GrowthSort, LiveSort, ReportOptions, TemporarySort};
use crate::advice::{self, Advice};
use crate::growth::{self, GrowthFit};
use crate::heap_rss::{self, Breakdown, HeapVsRss};
use crate::replay::Counters;
use crate::site::{Site, SiteStats};
use memlens_trace::reader::Metadata;

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

/// Totals over the window.
pub(super) fn totals(f: &Finished, metadata: &Metadata) -> Totals {
    let accs = &f.sites;
    let c: Counters = *f.replay.counters();
    let d = |get: fn(&Counters) -> u64| get(&c) - get(&f.at_from);
    let runtime_ns = if f.win.is_whole() {
        metadata.end.map_or(f.last_ts, |e| e.ts)
    } else {
        f.win.span_ns()
    };
    Totals {
        allocations: d(|c| c.allocations),
        frees: d(|c| c.frees),
        reallocs: d(|c| c.reallocs),
        bytes_allocated: d(|c| c.bytes_allocated),
        temporary: accs.iter().map(|s| s.temporary).sum(),
        peak_heap_bytes: f.peak_bytes,
        peak_heap_ns: f.peak_ns,
        peak_rss_bytes: f.peak_rss.map(|p| p.rss),
        peak_rss_ns: f.peak_rss.map(|p| p.ts),
        runtime_ns,
        not_freed_bytes: accs.iter().fold(0u64, |a, s| a.saturating_add(s.win_bytes)),
        not_freed_blocks: accs.iter().map(|s| s.win_blocks).sum(),
        untracked_frees: d(|c| c.untracked_frees),
        failed_allocations: d(|c| c.failed_allocations),
        failed_reallocs: d(|c| c.failed_reallocs),
        reused_addresses: d(|c| c.reused_addresses),
        events: d(|c| c.events),
    }
}

/// Memory allocated in the window and still live at its end, by site.
pub(super) fn not_freed(f: &Finished, totals: &Totals, opts: &ReportOptions) -> NotFreed {
    let live_at_end: Vec<Site> = f
        .sites
        .iter()
        .filter(|s| s.win_blocks > 0)
        .map(|s| s.site(s.win_bytes, s.win_blocks))
        .collect();
    NotFreed {
        bytes: totals.not_freed_bytes,
        blocks: totals.not_freed_blocks,
        site_count: live_at_end.len(),
        sites: sorted_top(live_at_end, opts.top, live_key(opts.sort.not_freed)),
    }
}

/// The heap at its peak, by site.
pub(super) fn peak(f: &Finished, opts: &ReportOptions) -> PeakHeap {
    let peak_sites: Vec<Site> = f
        .sites
        .iter()
        .filter(|s| s.peak_blocks > 0)
        .map(|s| s.site(s.peak_bytes, s.peak_blocks))
        .collect();
    PeakHeap {
        bytes: f.peak_bytes,
        blocks: f.peak_blocks,
        time_ns: f.peak_ns,
        site_count: peak_sites.len(),
        sites: sorted_top(peak_sites, opts.top, live_key(opts.sort.peak)),
    }
}

/// The hottest sites: (by allocations, by bytes allocated, number of sites that
/// allocated in the window).
pub(super) fn hotspots(f: &Finished, top: usize) -> (Vec<Site>, Vec<Site>, usize) {
    let allocating: Vec<Site> = f
        .sites
        .iter()
        .filter(|s| s.allocations > 0)
        .map(|s| s.site(s.win_bytes, s.win_blocks))
        .collect();
    let site_count = allocating.len();
    let by_allocations = sorted_top(allocating.clone(), top, |s| {
        (s.allocations, s.bytes_allocated)
    });
    let by_bytes = sorted_top(allocating, top, |s| (s.bytes_allocated, s.allocations));
    (by_allocations, by_bytes, site_count)
}

/// Temporary allocations, by site.
pub(super) fn temporary(
    f: &Finished,
    totals: &Totals,
    opts: &ReportOptions,
) -> TemporaryAllocations {
    let accs = &f.sites;
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
    TemporaryAllocations {
        count: totals.temporary,
        bytes: accs
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.temporary_bytes)),
        site_count: temp.len(),
        sites: temp.into_iter().take(opts.top).collect(),
    }
}

/// Every growing site, in the order of `--sort growth=...`, and the number of sites with
/// enough floors to be judged.
pub(super) fn growing(f: &Finished, opts: &ReportOptions) -> (Vec<GrowingSite>, usize) {
    let mut judged = 0;
    let mut growing: Vec<GrowingSite> = Vec::new();
    for s in &f.sites {
        let Some(floors) = &s.floors else { continue };
        if floors.values.len() >= growth::MIN_POINTS {
            judged += 1;
        }
        if let Some(fit) = growth::judge(
            floors,
            s.live_bytes,
            f.grow_from,
            f.grow_span,
            growth::INTERVALS,
            f.peak_bytes,
        ) {
            growing.push(GrowingSite {
                site: s.site(s.live_bytes, s.live_blocks),
                fit,
            });
        }
    }
    let growth_key = |g: &GrowingSite| match opts.sort.growth {
        GrowthSort::Rate => g.fit.rate,
        GrowthSort::Growth => g.fit.growth_bytes() as f64,
        GrowthSort::Confidence => g.fit.confidence,
    };
    growing.sort_by(|a, b| {
        growth_key(b)
            .total_cmp(&growth_key(a))
            .then((a.site.stack, a.site.func).cmp(&(b.site.stack, b.site.func)))
    });
    (growing, judged)
}

/// The growth section, from [`growing`]'s sites.
pub(super) fn growth(f: &Finished, growing: Vec<GrowingSite>, judged: usize, top: usize) -> Growth {
    Growth {
        from_ns: f.grow_from,
        span_ns: f.grow_span,
        intervals: growth::INTERVALS,
        interval_ns: f.grow_span / growth::INTERVALS as u64,
        sites_judged: judged,
        site_count: growing.len(),
        sites: growing.into_iter().take(top).collect(),
    }
}

/// The advice: every growing site, then the rules on each allocating site's facts; at
/// most `top` lines, ordered by rule then weight.
pub(super) fn advice(f: &Finished, growing: &[GrowingSite], top: usize) -> Vec<Advice> {
    let mut adv: Vec<Advice> = growing
        .iter()
        .map(|g| advice::growth(g.site, &g.fit))
        .collect();
    for s in f.sites.iter().filter(|s| s.allocations > 0) {
        adv.extend(advice::from_facts(
            s.site(s.win_bytes, s.win_blocks),
            &s.facts(),
        ));
    }
    advice::sort(&mut adv);
    adv.truncate(top);
    adv
}

/// A Python program's advice: growth advice that says which container grows (read from
/// the source), and the sites whose blocks were garbage in reference cycles.
pub(super) fn python_advice(
    advice: &mut Vec<Advice>,
    metadata: &Metadata,
    leaks: Option<&crate::leaks::LeakReport>,
    top: usize,
) {
    let mut files: std::collections::HashMap<String, Option<Vec<String>>> = Default::default();
    let mut read_line = |file: &str, line: u32| -> Option<String> {
        let lines = files.entry(file.to_string()).or_insert_with(|| {
            // Only a regular file (a trace can name anything).
            let p = std::path::Path::new(file);
            p.is_file()
                .then(|| std::fs::read_to_string(p).ok())
                .flatten()
                .map(|t| t.lines().map(str::to_string).collect())
        });
        lines.as_ref()?.get(line.checked_sub(1)? as usize).cloned()
    };
    let interpreter = crate::python::interpreter_modules(metadata);
    // Pools and realloc strategies are the interpreter's business, not a Python line's.
    advice.retain(|a| {
        !matches!(
            a.kind,
            advice::AdviceKind::Pool | advice::AdviceKind::ReallocChain
        ) || !crate::python::is_python_site(metadata, &interpreter, a.site.stack)
    });
    for a in advice.iter_mut() {
        match a.kind {
            advice::AdviceKind::Growth => {
                if let Some(py) =
                    crate::python::growth_advice(metadata, a.site.stack, &mut read_line)
                {
                    let rate = a.message.split(':').next().unwrap_or("").to_string();
                    a.message = format!("{rate}: {py}");
                }
            }
            advice::AdviceKind::Temporary
                if crate::python::is_python_site(metadata, &interpreter, a.site.stack) =>
            {
                let counts = a.message.split(':').next().unwrap_or("").to_string();
                a.message = format!(
                    "{counts}: objects made and dropped at once on this line; build them once \
                     outside the loop, or use a generator or str.join / b''.join instead of \
                     intermediate lists and strings"
                );
            }
            _ => {}
        }
    }
    if let Some(l) = leaks {
        for &(func, stack, amount) in l
            .python_cycles
            .iter()
            .filter(|c| c.2.bytes >= advice::REFERENCE_CYCLE_MIN_BYTES)
            .take(top)
        {
            let site = Site {
                stack,
                func,
                stats: crate::site::SiteStats {
                    live_bytes: amount.bytes,
                    live_blocks: amount.blocks,
                    ..Default::default()
                },
            };
            advice.push(advice::reference_cycle(site, amount.bytes, amount.blocks));
        }
    }
    advice::sort(advice);
    advice.truncate(top);
}

/// Heap vs RSS; `None` when the window has no RSS sample.
pub(super) fn heap_vs_rss(f: &Finished, metadata: &Metadata) -> Option<HeapVsRss> {
    let (Some(p), Some(last)) = (f.peak_rss, f.window_last_rss) else {
        return None;
    };
    let peak_ns = f.peak_ns;
    let baseline = f
        .first_rss
        .map_or(0, |r| r.rss.saturating_sub(r.chunk_bytes));
    let recorder = metadata.end.map_or(0, |e| e.counters.recorder_peak_bytes);
    // The sample nearest the heap's peak, with the heap of its own moment.
    let before = f.rss_before_peak.filter(|r| r.ts >= f.win.from_ns);
    let nearest = match (before, f.rss_after_peak) {
        (Some(b), Some(a)) if a.ts - peak_ns < peak_ns - b.ts => Some(a),
        (Some(b), _) => Some(b),
        (None, a) => a,
    };
    let at_peak_heap = nearest.map(|r| Breakdown::new(&r, baseline, recorder));
    let mut h = HeapVsRss {
        at_peak_rss: Breakdown::new(&p, baseline, recorder),
        at_peak_heap,
        at_end: Breakdown::new(&last, baseline, recorder),
        peak_heap_bytes: f.peak_bytes,
        findings: Vec::new(),
    };
    h.findings = heap_rss::findings(&h);
    Some(h)
}

/// Things a reader of the report should know: lost events, the recorder's notices,
/// reused addresses.
pub(super) fn warnings(metadata: &Metadata, totals: &Totals) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(end) = &metadata.end {
        if end.counters.dropped_events > 0 {
            warnings.push(format!(
                "the recorder lost {} events (it could not write them); the numbers below are incomplete",
                end.counters.dropped_events
            ));
        }
    }
    warnings.extend(metadata.notices.iter().filter_map(super::notice_sentence));
    if totals.reused_addresses > 0 {
        warnings.push(format!(
            "{} allocations returned an address that was still allocated (a release was not recorded); the old blocks were counted as freed",
            totals.reused_addresses
        ));
    }
    warnings
}
