//! What `flamegraph`, `export` and `diff` share: loading a [`Profile`], the `--metric`
//! option, folded stacks and values for people.

use crate::present::progress::with_progress;
use memlens_analysis::profile::{Unit, METRICS};
use memlens_analysis::{Frame, Metric, Profile, ProfileOptions, Symbolizer};
use memlens_common::units::{human_bytes, plural};
use memlens_trace::reader::TraceReader;
use memlens_trace::AllocFunc;
use std::collections::BTreeMap;
use std::path::Path;

/// `--metric NAME`, with the names and titles of the metric table as possible values.
pub fn metric_parser() -> impl clap::builder::TypedValueParser<Value = Metric> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        METRICS
            .iter()
            .map(|m| PossibleValue::new(m.name).help(m.title)),
    )
    .map(|name| Metric::from_name(&name).unwrap_or(Metric::PeakBytes))
}

/// Open a trace and profile it, with a progress bar on a terminal. `Err` is one sentence.
pub fn load(path: &Path, opts: &ProfileOptions) -> Result<Profile, String> {
    let reader = TraceReader::open(path).map_err(|e| e.to_string())?;
    crate::warn_truncated(path, reader.truncation());
    with_progress(&reader, |progress| {
        Profile::build_with_progress(&reader, opts, progress)
    })
    .map_err(|e| e.to_string())
}

/// `Err` when `metric` is unknown for this trace (a leak metric without an exit scan).
pub fn require_known(p: &Profile, metric: Metric) -> Result<(), String> {
    if p.known(metric) {
        return Ok(());
    }
    if p.window.to_ns < p.window.run_ns {
        return Err(format!(
            "the window of {} ends before the run does, and the leak check is at the end, so --metric {} is unknown there",
            p.path.display(),
            metric.info().name
        ));
    }
    Err(format!(
        "{} has no leak check ({}), so --metric {} is unknown",
        p.path.display(),
        crate::present::trace::why_no_exit_scan(p.end.as_ref()),
        metric.info().name
    ))
}

/// A value for people: `1.50 KiB`, `1,234 allocations`, `1 block`.
pub fn value_text(unit: Unit, v: u64) -> String {
    match unit {
        Unit::Bytes => human_bytes(v),
        Unit::Allocations => plural(v, "allocation", "allocations"),
        Unit::Blocks => plural(v, "block", "blocks"),
    }
}

/// A frame's name in a folded stack: no `;` (the separator) and no line breaks.
pub fn folded_name(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// A folded stack, root first: `_start;main;make;malloc`. The allocating function is the
/// leaf, so sites that differ only by allocator stay apart. `name` picks each frame's
/// text (the function name, or the name diffs match on).
pub fn folded_stack(frames: &[Frame], func: AllocFunc, name: impl Fn(&Frame) -> String) -> String {
    let mut parts: Vec<String> = frames.iter().rev().map(|f| folded_name(&name(f))).collect();
    if parts.is_empty() {
        parts.push("[no stack recorded]".to_string());
    }
    parts.push(func.name().to_string());
    parts.join(";")
}

/// The folded stacks of a profile for one metric: stack -> value, sites with the same
/// symbolized stack added together, zero values left out, sorted.
pub fn folded(
    p: &Profile,
    sym: &mut Symbolizer,
    metric: Metric,
    name: impl Fn(&Frame) -> String + Copy,
) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for s in p.sites.iter().filter(|s| s.values[metric] > 0) {
        let frames = sym.stack(p.stack(s.stack));
        *out.entry(folded_stack(&frames, s.func, name)).or_default() += s.values[metric];
    }
    out
}

/// `stack value` lines, as flamegraph.pl and inferno read them.
pub fn folded_text(stacks: &BTreeMap<String, u64>) -> String {
    let mut s = String::new();
    for (stack, v) in stacks {
        s.push_str(stack);
        s.push(' ');
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}
