//! Per-site profiles: every metric of every allocation site of a trace, for flame graphs,
//! exports (pprof, folded stacks, JSON) and diffs.
//!
//! A site is (stack id, allocating function), as in the report. [`Profile::build`] gets
//! every metric from one [`Report::build`] with no cut of the site lists: allocations,
//! bytes, temporaries, what is live at the end and at the heap's peak, and, when asked,
//! the leak metrics (the exit scan joined with the allocation stacks, folded into the same
//! pass). Nothing is kept per event: memory is proportional
//! to the live blocks and the distinct sites.
//!
//! **Adding a metric**: a variant of [`Metric`], its row in [`METRICS`] (name, JSON key,
//! unit, title, which pass computes it), and the line of [`Profile::build_with_progress`]
//! that fills it. Flame graphs, the JSON export and diffs take every metric from the table.

use crate::leaks::{LeakReport, Resolution};
use crate::replay::SiteKey;
use crate::report::{Report, ReportOptions, Totals};
use crate::site::Progress;
use crate::window::{Window, WindowSpec};
use crate::Error;
use memlens_trace::reader::{EndRecord, Metadata, RawFrame, TraceReader, Truncation};
use memlens_trace::{AllocFunc, BlockState, Header};
use std::collections::HashMap;
use std::ops::{Index, IndexMut};
use std::path::PathBuf;

/// One number per site. The discriminant indexes [`METRICS`] and [`Values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Allocations,
    Allocated,
    PeakBytes,
    PeakBlocks,
    ExitBytes,
    ExitBlocks,
    LeakedBytes,
    LeakedBlocks,
    DefinitelyLostBytes,
    DefinitelyLostBlocks,
    IndirectlyLostBytes,
    IndirectlyLostBlocks,
    PossiblyLostBytes,
    PossiblyLostBlocks,
    StillReachableBytes,
    StillReachableBlocks,
    Temporary,
    TemporaryBytes,
}

/// What a metric counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Allocations (calls).
    Allocations,
    /// Heap blocks.
    Blocks,
    Bytes,
}

impl Unit {
    /// `"allocations"`, `"blocks"`, `"bytes"`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Allocations => "allocations",
            Unit::Blocks => "blocks",
            Unit::Bytes => "bytes",
        }
    }
}

/// Which analysis computes a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The replay of the events (always done).
    Events,
    /// The replay up to the peak (always done, by the report's second pass).
    Peak,
    /// The exit scan ([`leaks::analyse`]): only with [`ProfileOptions::leaks`], and only
    /// known when the trace has a scan.
    LeakCheck,
}

/// The description of a metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricInfo {
    pub metric: Metric,
    /// Command-line name (`--metric leaked`).
    pub name: &'static str,
    /// Key in JSON output.
    pub key: &'static str,
    pub unit: Unit,
    /// For people: what is counted, without the unit.
    pub title: &'static str,
    pub source: Source,
}

const fn row(
    metric: Metric,
    name: &'static str,
    key: &'static str,
    unit: Unit,
    title: &'static str,
    source: Source,
) -> MetricInfo {
    MetricInfo {
        metric,
        name,
        key,
        unit,
        title,
        source,
    }
}

/// Every metric, in [`Metric`] order.
#[rustfmt::skip]
pub const METRICS: [MetricInfo; Metric::COUNT] = {
    use Metric as M;
    use Source::*;
    use Unit::*;
    [
        row(M::Allocations, "allocations", "allocations", Allocations, "allocations made over the whole run", Events),
        row(M::Allocated, "allocated", "bytes_allocated", Bytes, "bytes allocated over the whole run", Events),
        row(M::PeakBytes, "peak", "peak_bytes", Bytes, "bytes live at the heap's peak", Peak),
        row(M::PeakBlocks, "peak-blocks", "peak_blocks", Blocks, "blocks live at the heap's peak", Peak),
        row(M::ExitBytes, "exit", "exit_bytes", Bytes, "bytes live at exit (not freed)", Events),
        row(M::ExitBlocks, "exit-blocks", "exit_blocks", Blocks, "blocks live at exit (not freed)", Events),
        row(M::LeakedBytes, "leaked", "leaked_bytes", Bytes, "bytes leaked at exit (definitely + indirectly lost)", LeakCheck),
        row(M::LeakedBlocks, "leaked-blocks", "leaked_blocks", Blocks, "blocks leaked at exit (definitely + indirectly lost)", LeakCheck),
        row(M::DefinitelyLostBytes, "definitely-lost", "definitely_lost_bytes", Bytes, "bytes definitely lost at exit", LeakCheck),
        row(M::DefinitelyLostBlocks, "definitely-lost-blocks", "definitely_lost_blocks", Blocks, "blocks definitely lost at exit", LeakCheck),
        row(M::IndirectlyLostBytes, "indirectly-lost", "indirectly_lost_bytes", Bytes, "bytes indirectly lost at exit", LeakCheck),
        row(M::IndirectlyLostBlocks, "indirectly-lost-blocks", "indirectly_lost_blocks", Blocks, "blocks indirectly lost at exit", LeakCheck),
        row(M::PossiblyLostBytes, "possibly-lost", "possibly_lost_bytes", Bytes, "bytes possibly lost at exit", LeakCheck),
        row(M::PossiblyLostBlocks, "possibly-lost-blocks", "possibly_lost_blocks", Blocks, "blocks possibly lost at exit", LeakCheck),
        row(M::StillReachableBytes, "still-reachable", "still_reachable_bytes", Bytes, "bytes still reachable at exit", LeakCheck),
        row(M::StillReachableBlocks, "still-reachable-blocks", "still_reachable_blocks", Blocks, "blocks still reachable at exit", LeakCheck),
        row(M::Temporary, "temporary", "temporary", Allocations, "temporary allocations (freed before the thread's next allocation)", Events),
        row(M::TemporaryBytes, "temporary-bytes", "temporary_bytes", Bytes, "bytes of temporary allocations", Events),
    ]
};

impl Metric {
    pub const COUNT: usize = 18;

    /// Every metric, in table order.
    pub fn all() -> impl Iterator<Item = Metric> {
        METRICS.iter().map(|m| m.metric)
    }
    pub fn info(self) -> &'static MetricInfo {
        &METRICS[self as usize]
    }
    /// The metric with this command-line name.
    pub fn from_name(name: &str) -> Option<Metric> {
        METRICS.iter().find(|m| m.name == name).map(|m| m.metric)
    }
    /// The (bytes, blocks) metrics of a leak kind.
    pub fn of_kind(kind: BlockState) -> (Metric, Metric) {
        match kind {
            BlockState::DefinitelyLost => {
                (Metric::DefinitelyLostBytes, Metric::DefinitelyLostBlocks)
            }
            BlockState::IndirectlyLost => {
                (Metric::IndirectlyLostBytes, Metric::IndirectlyLostBlocks)
            }
            BlockState::PossiblyLost => (Metric::PossiblyLostBytes, Metric::PossiblyLostBlocks),
            BlockState::StillReachable => {
                (Metric::StillReachableBytes, Metric::StillReachableBlocks)
            }
        }
    }
}

/// The value of every metric, indexed by [`Metric`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Values(pub [u64; Metric::COUNT]);

impl Index<Metric> for Values {
    type Output = u64;
    fn index(&self, m: Metric) -> &u64 {
        &self.0[m as usize]
    }
}

impl IndexMut<Metric> for Values {
    fn index_mut(&mut self, m: Metric) -> &mut u64 {
        &mut self.0[m as usize]
    }
}

impl Values {
    /// Add another site's values (merging sites).
    pub fn add(&mut self, other: &Values) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_add(b);
        }
    }
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&v| v == 0)
    }
}

/// One allocation site and its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteProfile {
    pub stack: u32,
    pub func: AllocFunc,
    pub values: Values,
}

/// What to compute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfileOptions {
    /// Run the leak check's pass (the [`Source::LeakCheck`] metrics); without it they
    /// are 0 and [`Profile::leak_check`] is false.
    pub leaks: bool,
    /// Leave out of the leak metrics what memlens's built-in suppressions hide (memory of
    /// ld.so, glibc and libstdc++ that is not the program's), as `memlens leaks` does.
    pub default_suppressions: bool,
    /// The part of the run to profile (the whole run by default), as the report's
    /// `--from/--to`: allocations and temporaries made in the window, the peak within it,
    /// "exit" values at the window's end (blocks allocated in the window). The leak
    /// metrics are known only for a window that reaches the end of the run, and are the
    /// whole run's (the exit scan's), whenever the blocks were allocated.
    pub window: WindowSpec,
}

impl ProfileOptions {
    /// Everything.
    pub fn all() -> Self {
        ProfileOptions {
            leaks: true,
            default_suppressions: true,
            window: WindowSpec::default(),
        }
    }
    /// What these metrics need.
    pub fn for_metrics(metrics: &[Metric]) -> Self {
        ProfileOptions {
            leaks: metrics.iter().any(|m| m.info().source == Source::LeakCheck),
            ..Self::all()
        }
    }
}

/// Every frame of these sites' stacks (with repeats), for
/// [`crate::Symbolizer::prefetch`].
pub fn site_frames<'a>(
    metadata: &'a Metadata,
    sites: &'a [SiteProfile],
) -> impl Iterator<Item = RawFrame> + 'a {
    sites
        .iter()
        .flat_map(|s| stack_of(metadata, s.stack).iter().copied())
}

/// The frames of a stack (innermost first); empty if the trace does not define it.
fn stack_of(metadata: &Metadata, id: u32) -> &[RawFrame] {
    metadata.stacks.get(&id).map_or(&[], |v| v.as_slice())
}

/// Every site of a trace with every metric. Stacks are raw: symbolize with
/// [`crate::Symbolizer`].
#[derive(Clone, Debug)]
pub struct Profile {
    pub path: PathBuf,
    pub header: Header,
    pub truncation: Option<Truncation>,
    pub end: Option<EndRecord>,
    pub metadata: Metadata,
    /// The report's totals (peak time, runtime...).
    pub totals: Totals,
    /// The part of the run profiled.
    pub window: Window,
    /// Every site, by stack id then function.
    pub sites: Vec<SiteProfile>,
    /// The sum over the sites.
    pub sums: Values,
    /// The leak metrics are known: the leak pass ran and the trace has an exit scan.
    pub leak_check: bool,
    /// Things a reader should know (lost events, anomalies), one sentence each.
    pub warnings: Vec<String>,
}

impl Profile {
    /// Profile a trace.
    pub fn build(reader: &TraceReader, opts: &ProfileOptions) -> Result<Profile, Error> {
        Self::build_with_progress(reader, opts, &mut |_| {})
    }

    /// Profile a trace, calling `progress` as event chunks are consumed (the report's
    /// passes).
    pub fn build_with_progress(
        reader: &TraceReader,
        opts: &ProfileOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Profile, Error> {
        // One pass computes everything: the report's replay, with the leak check folded in
        // (high resolution: one record per kind and site) when the leak metrics are asked.
        let mut report = Report::build_with_progress(
            reader,
            &ReportOptions {
                top: usize::MAX,
                leaks: opts.leaks.then_some(Resolution::High),
                window: opts.window,
                ..Default::default()
            },
            progress,
        )?;
        let mut lr = report.leaks.take();
        if let Some(l) = lr.as_mut() {
            if opts.default_suppressions {
                let mut sym = crate::Symbolizer::for_trace(&report.metadata);
                l.suppress(
                    &crate::suppressions::Suppressions::default_set(),
                    &report.metadata,
                    &mut sym,
                );
            }
        }
        let leak_check = lr.as_ref().is_some_and(|l| l.scan.is_some());
        let sites = Self::site_values(&report, lr.as_ref());
        let mut sums = Values::default();
        for s in &sites {
            sums.add(&s.values);
        }
        Ok(Profile {
            path: report.path,
            header: report.header,
            truncation: report.truncation,
            end: report.end,
            metadata: report.metadata,
            totals: report.totals,
            window: report.window,
            sites,
            sums,
            leak_check,
            warnings: report.warnings,
        })
    }

    /// Every site's values, from a report whose site lists were not cut (`top:
    /// usize::MAX`) and, for the leak metrics, a leak report at high resolution (one
    /// record per site and kind) whose suppressed records are marked. The event metrics
    /// describe the report's window. Sites are sorted by stack id then function.
    ///
    /// This is the one place that fills [`Values`]: `memlens html` calls it on the report
    /// it already has, [`Profile::build`] on its own.
    pub fn site_values(report: &Report, leaks: Option<&LeakReport>) -> Vec<SiteProfile> {
        let mut sites: HashMap<SiteKey, Values> = HashMap::new();
        let key = |stack, func| SiteKey { stack, func };
        // `by_allocations` holds every site, with what was live at the end.
        for s in &report.by_allocations {
            let v = sites.entry(key(s.stack, s.func)).or_default();
            v[Metric::Allocations] = s.stats.allocations;
            v[Metric::Allocated] = s.stats.bytes_allocated;
            v[Metric::ExitBytes] = s.stats.live_bytes;
            v[Metric::ExitBlocks] = s.stats.live_blocks;
        }
        for s in &report.peak.sites {
            let v = sites.entry(key(s.stack, s.func)).or_default();
            v[Metric::PeakBytes] = s.stats.live_bytes;
            v[Metric::PeakBlocks] = s.stats.live_blocks;
        }
        for t in &report.temporary.sites {
            let v = sites.entry(key(t.site.stack, t.site.func)).or_default();
            v[Metric::Temporary] = t.site.stats.temporary;
            v[Metric::TemporaryBytes] = t.bytes;
        }
        // Blocks the replay does not know are at stack 0.
        for r in leaks
            .iter()
            .flat_map(|l| &l.records)
            .filter(|r| r.suppressed_by.is_none())
        {
            let v = sites.entry(key(r.stack, r.func)).or_default();
            let (bytes, blocks) = Metric::of_kind(r.kind);
            v[bytes] += r.bytes;
            v[blocks] += r.blocks;
            if matches!(
                r.kind,
                BlockState::DefinitelyLost | BlockState::IndirectlyLost
            ) {
                v[Metric::LeakedBytes] += r.bytes;
                v[Metric::LeakedBlocks] += r.blocks;
            }
        }
        let mut sites: Vec<SiteProfile> = sites
            .into_iter()
            .map(|(k, values)| SiteProfile {
                stack: k.stack,
                func: k.func,
                values,
            })
            .collect();
        sites.sort_by_key(|s| (s.stack, s.func));
        sites
    }

    /// Whether `m` is known for this trace (leak metrics need the leak check).
    pub fn known(&self, m: Metric) -> bool {
        m.info().source != Source::LeakCheck || self.leak_check
    }

    /// Every frame of every site's stack (with repeats), for
    /// [`crate::Symbolizer::prefetch`].
    pub fn frames(&self) -> impl Iterator<Item = RawFrame> + '_ {
        site_frames(&self.metadata, &self.sites)
    }

    /// The frames of a stack (innermost first); empty if the trace does not define it.
    pub fn stack(&self, id: u32) -> &[RawFrame] {
        stack_of(&self.metadata, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_with_unique_names() {
        for (i, m) in METRICS.iter().enumerate() {
            assert_eq!(m.metric as usize, i, "{}", m.name);
            assert_eq!(Metric::from_name(m.name), Some(m.metric));
        }
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        let mut keys: Vec<&str> = METRICS.iter().map(|m| m.key).collect();
        names.sort();
        names.dedup();
        keys.sort();
        keys.dedup();
        assert_eq!((names.len(), keys.len()), (Metric::COUNT, Metric::COUNT));
        assert_eq!(Metric::from_name("fragmentation"), None);
    }
}
