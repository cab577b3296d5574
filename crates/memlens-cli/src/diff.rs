//! `memlens diff`: two traces compared site by site (sites matched by their symbolized
//! stacks), as text, JSON, and optionally a differential flame graph.

use crate::export::json_values;
use crate::flamegraph::{svg, Style};
use crate::present::frames::{frame_json, text_stack};
use crate::present::output::Dest;
use crate::present::trace::json_trace;
use crate::present::{ms, window_spec};
use crate::profile::{folded, load, metric_parser, value_text};
use crate::report::Format;
use memlens_analysis::diff::{diff, match_name, Diff, DiffSite, Status};
use memlens_analysis::profile::{Unit, Values, METRICS};
use memlens_analysis::window::WindowSpec;
use memlens_analysis::{Metric, Profile, ProfileOptions, Symbolizer};
use memlens_common::units::{count, human_bytes, human_time};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `memlens diff --help`: the description before the options.
pub const LONG_ABOUT: &str =
    "Compare two traces site by site: what grew, what shrank, what is new, what \
vanished. Typically two runs of one program (before and after a change, or with two inputs).\n\n\
Sites are matched by their symbolized stack (the function names of every frame and the \
allocating function; and the lines, in modules that are the same build in both traces), \
since addresses differ between runs. For each site that changed: \
allocations and bytes allocated, bytes and blocks live at the heap's peak, live at exit, and \
leaked (definitely + indirectly lost), before -> after, with the change. Sites are sorted by \
the absolute change of --metric. Changes are AFTER minus BEFORE.\n\n\
Two parts of one run: give one trace and --before-window/--after-window (FROM..TO, either \
end optional). Allocations are then those made in each window, the peak is the window's, \
and \"live at end\" is what was allocated in the window and still live at its end (a \
window from the start of the run gives the whole heap at that moment). Leak metrics need a \
window that reaches the end of the run, and are then the whole run's (the exit scan finds \
every leaked block, whenever it was allocated).";

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
memlens diff before.trace after.trace\n  \
memlens diff before.trace after.trace --metric leaked --top 5\n  \
memlens diff before.trace after.trace --format json > diff.json\n  \
memlens diff before.trace after.trace --metric allocated --flamegraph diff.svg\n  \
memlens diff app.trace --before-window ..10s --after-window ..60s\n  \
memlens diff app.trace --before-window ..50% --after-window 50%.. --metric allocations\n\n\
The differential flame graph is drawn with AFTER's values; red boxes grew, blue ones shrank \
(sites that vanished have no width in AFTER, so they are in the text and JSON only).")]
pub struct DiffArgs {
    /// The first trace (before).
    pub before: PathBuf,
    /// The second trace (after). Leave it out to compare two windows of BEFORE.
    pub after: Option<PathBuf>,
    /// Compare only this part of BEFORE's run: FROM..TO, either end optional, in times
    /// since the start (1.5s, 200ms, 1m30s) or percentages of the run (25%).
    #[arg(long, value_name = "FROM..TO")]
    pub before_window: Option<String>,
    /// The part of AFTER's run (of BEFORE's, with one trace) to compare, as --before-window.
    #[arg(long, value_name = "FROM..TO")]
    pub after_window: Option<String>,
    /// Output format: text for people, json for programs.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many changed sites to show.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = crate::present::parse_top)]
    pub top: usize,
    /// The metric sites are sorted by (and the flame graph shows).
    #[arg(short, long, value_name = "METRIC", value_parser = metric_parser(), default_value = "peak")]
    pub metric: Metric,
    /// Also write a differential flame graph of --metric to FILE (an SVG).
    #[arg(long, value_name = "FILE")]
    pub flamegraph: Option<PathBuf>,
}

pub fn main(args: DiffArgs) -> ExitCode {
    match run(&args) {
        Ok(out) => crate::print_stdout(&out),
        Err(e) => crate::fail(e),
    }
}

/// `FROM..TO` (either end may be empty) as a window; `Err` is one sentence naming `flag`.
fn window_arg(flag: &str, v: Option<&str>) -> Result<WindowSpec, String> {
    let Some(v) = v else {
        return Ok(WindowSpec::default());
    };
    let (from, to) = v.split_once("..").ok_or_else(|| {
        format!("{flag} {v}: write FROM..TO, for example 0s..2s, 2s.. or 50%..100%")
    })?;
    let end = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let spec = window_spec(end(from).as_deref(), end(to).as_deref())
        .map_err(|e| format!("{flag} {v}: {e}"))?;
    // Errors about the window's place in the run name its ends, after `{flag}: `.
    Ok(WindowSpec {
        names: ["its start", "its end"],
        ..spec
    })
}

fn run(args: &DiffArgs) -> Result<String, String> {
    let wa = window_arg("--before-window", args.before_window.as_deref())?;
    let wb = window_arg("--after-window", args.after_window.as_deref())?;
    let after = match &args.after {
        Some(p) => p,
        None if args.before_window.is_some() || args.after_window.is_some() => &args.before,
        None => {
            return Err(
                "give a second trace to compare with, or --before-window and \
                        --after-window to compare two parts of one run"
                    .to_string(),
            )
        }
    };
    let opts = |window| ProfileOptions {
        window,
        ..ProfileOptions::all()
    };
    let a = load(&args.before, &opts(wa)).map_err(|e| window_error(e, "--before-window", &wa))?;
    let b = load(after, &opts(wb)).map_err(|e| window_error(e, "--after-window", &wb))?;
    for p in [&a, &b] {
        crate::profile::require_known(p, args.metric)?;
    }
    let mut sa = Symbolizer::for_trace(&a.metadata);
    let mut sb = Symbolizer::for_trace(&b.metadata);
    sa.prefetch(a.frames());
    sb.prefetch(b.frames());
    let d = diff(&a, &mut sa, &b, &mut sb, args.metric);
    if let Some(path) = &args.flamegraph {
        let before = folded(&a, &mut sa, args.metric, match_name);
        let after = folded(&b, &mut sb, args.metric, match_name);
        let style = Style {
            title: format!("memlens diff: {}", args.metric.info().title),
            subtitle: format!(
                "widths: {} ({}); red grew, blue shrank since {} ({})",
                b.path.display(),
                value_text(args.metric.info().unit, b.sums[args.metric]),
                a.path.display(),
                value_text(args.metric.info().unit, a.sums[args.metric]),
            ),
            inverted: false,
            width: 1200,
            python: Default::default(),
        };
        let image = svg(&after, Some(&before), args.metric, &style)?;
        Dest::File(path).write(&image)?;
    }
    let mut warnings: Vec<String> = Vec::new();
    for (p, s) in [(&a, &sa), (&b, &sb)] {
        for w in p.warnings.iter().chain(s.warnings()) {
            warnings.push(format!("{}: {w}", p.path.display()));
        }
    }
    // Two snapshots: what holds the memory, before and after.
    let holders = crate::snapshot::compare::holders(&args.before, after)?;
    Ok(match args.format {
        Format::Text => {
            let mut t = String::new();
            if let Some(h) = &holders {
                t.push_str(&crate::snapshot::compare::text(h, args.top));
            }
            t.push_str(&text(&a, &b, &d, args.top, &warnings));
            t
        }
        Format::Json => {
            let mut v = json(&a, &b, &d, args.top, &sa, &sb);
            if let (Some(h), Some(o)) = (&holders, v.as_object_mut()) {
                o.insert(
                    "holders".to_string(),
                    crate::snapshot::compare::json(h, args.top),
                );
            }
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
    })
}

/// The lines of a site in text: a label, then the (main, companion) metrics.
const ROWS: [(&str, Metric, Metric); 4] = [
    ("allocations", Metric::Allocations, Metric::Allocated),
    ("peak live", Metric::PeakBytes, Metric::PeakBlocks),
    ("live at exit", Metric::ExitBytes, Metric::ExitBlocks),
    ("leaked", Metric::LeakedBytes, Metric::LeakedBlocks),
];

fn pair_text(v: &Values, m1: Metric, m2: Metric) -> String {
    let (u1, u2) = (m1.info().unit, m2.info().unit);
    match (u1, u2) {
        (Unit::Allocations, _) => format!("{} ({})", value_text(u1, v[m1]), value_text(u2, v[m2])),
        _ => format!("{} in {}", value_text(u1, v[m1]), value_text(u2, v[m2])),
    }
}

/// A change for people: `+1.50 KiB`, `-3 blocks`, `0 B`.
pub fn change_text(unit: Unit, d: i64) -> String {
    let sign = match d {
        d if d > 0 => "+",
        d if d < 0 => "-",
        _ => "",
    };
    format!("{sign}{}", value_text(unit, d.unsigned_abs()))
}

/// A value in a table column: bytes for people, counts bare (the label gives the unit).
fn number_text(m: Metric, v: u64) -> String {
    match m.info().unit {
        Unit::Bytes => human_bytes(v),
        _ => count(v),
    }
}

fn number_change(m: Metric, d: i64) -> String {
    let sign = match d {
        d if d > 0 => "+",
        d if d < 0 => "-",
        _ => "",
    };
    format!("{sign}{}", number_text(m, d.unsigned_abs()))
}

/// An error of the analysis about a window names the option the window came from.
fn window_error(e: String, flag: &str, w: &WindowSpec) -> String {
    if w.is_whole() {
        e
    } else {
        format!("{flag}: {e}")
    }
}

fn describe(p: &Profile) -> String {
    let cmd = if p.header.argv.is_empty() {
        p.header.exe.clone()
    } else {
        p.header.argv.join(" ")
    };
    let window = if p.window.is_whole() {
        String::new()
    } else {
        format!(
            ", from {} to {} of {}",
            human_time(p.window.from_ns),
            human_time(p.window.to_ns),
            human_time(p.window.run_ns)
        )
    };
    format!("{} (pid {}: {cmd}{window})", p.path.display(), p.header.pid)
}

/// A label or metric title for a diff of windows: "exit" is the window's end there, and
/// counts are of the window.
fn in_windows(text: &str, windowed: bool) -> String {
    if !windowed {
        return text.to_string();
    }
    text.replace(" over the whole run", " in the window")
        .replace(" at exit (not freed)", " at the window's end")
        .replace(" at exit", " at the window's end")
}

/// A row label: "live at exit" is "live at end" in a diff of windows.
fn end_label(label: &str, windowed: bool) -> String {
    if windowed {
        label.replace("at exit", "at end")
    } else {
        label.to_string()
    }
}

/// The `window` object of a side in JSON.
fn window_json(p: &Profile) -> Value {
    json!({
        "from_ms": ms(p.window.from_ns),
        "to_ms": ms(p.window.to_ns),
        "run_ms": ms(p.window.run_ns),
        "whole_run": p.window.is_whole(),
    })
}

fn text(a: &Profile, b: &Profile, d: &Diff, top: usize, warnings: &[String]) -> String {
    let mut o = String::new();
    let windowed = !a.window.is_whole() || !b.window.is_whole();
    let metric = d.metric.info();
    let _ = writeln!(o, "memlens diff");
    let _ = writeln!(o, "  before  {}", describe(a));
    let _ = writeln!(o, "  after   {}", describe(b));
    for w in warnings {
        let _ = writeln!(o, "  warning {w}");
    }
    if !d.leak_check {
        let side = if a.leak_check { b } else { a };
        let why = if side.window.to_ns < side.window.run_ns {
            "ends before the run does (the leak check is at the end)"
        } else {
            "has no leak check"
        };
        let _ = writeln!(
            o,
            "  note    leak metrics are not compared: {} {why}",
            if a.leak_check { "after" } else { "before" }
        );
    }
    let _ = writeln!(
        o,
        "\n{:<28}{:>16}{:>16}{:>16}",
        "Totals", "before", "after", "change"
    );
    for (label, m) in [
        ("allocations", Metric::Allocations),
        ("bytes allocated", Metric::Allocated),
        ("peak heap", Metric::PeakBytes),
        ("live at exit", Metric::ExitBytes),
        ("blocks live at exit", Metric::ExitBlocks),
        ("leaked", Metric::LeakedBytes),
        ("blocks leaked", Metric::LeakedBlocks),
        ("temporary allocations", Metric::Temporary),
    ] {
        if !d.comparable(m) {
            continue;
        }
        let label = end_label(label, windowed);
        let (x, y) = (a.sums[m], b.sums[m]);
        let change = (y as i128 - x as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let _ = writeln!(
            o,
            "  {label:<26}{:>16}{:>16}{:>16}",
            number_text(m, x),
            number_text(m, y),
            number_change(m, change),
        );
    }

    let count = |s: Status| d.sites.iter().filter(|x| x.status() == s).count();
    let _ = writeln!(
        o,
        "\nSites by change in {} (--metric {}): {} changed, {} new, {} vanished, {} unchanged",
        in_windows(metric.title, windowed),
        metric.name,
        count(Status::Both),
        count(Status::New),
        count(Status::Vanished),
        d.unchanged
    );
    if d.sites.is_empty() {
        let _ = writeln!(o, "  no site changed");
    }
    for s in d.sites.iter().take(top) {
        site_text(&mut o, d, s, windowed);
    }
    if d.sites.len() > top {
        let _ = writeln!(
            o,
            "  ... and {} more changed sites (use --top to see more)",
            d.sites.len() - top
        );
    }
    o
}

fn site_text(o: &mut String, d: &Diff, s: &DiffSite, windowed: bool) {
    let info = d.metric.info();
    let status = match s.status() {
        Status::New => ", new site",
        Status::Vanished => ", vanished site",
        Status::Both => "",
    };
    let _ = writeln!(
        o,
        "\n  {}{status}, from {}",
        change_text(info.unit, s.change(d.metric)),
        s.site.func.name()
    );
    let zero = Values::default();
    for (label, m1, m2) in ROWS {
        if !d.comparable(m1) || (s.change(m1) == 0 && s.change(m2) == 0) {
            continue;
        }
        let label = end_label(label, windowed);
        let _ = writeln!(
            o,
            "    {label:<13} {} -> {}  ({}, {})",
            pair_text(s.before.as_ref().unwrap_or(&zero), m1, m2),
            pair_text(s.after.as_ref().unwrap_or(&zero), m1, m2),
            change_text(m1.info().unit, s.change(m1)),
            change_text(m2.info().unit, s.change(m2)),
        );
    }
    text_stack(o, &s.frames);
}

fn json(a: &Profile, b: &Profile, d: &Diff, top: usize, sa: &Symbolizer, sb: &Symbolizer) -> Value {
    let comparable = |m: Metric| d.comparable(m);
    let side = |p: &Profile, v: Option<&Values>| match v {
        None => Value::Null,
        Some(v) => {
            let mut o = json_values(p, v);
            for m in METRICS.iter().filter(|m| !comparable(m.metric)) {
                o.insert(m.key.to_string(), Value::Null);
            }
            Value::Object(o)
        }
    };
    let change = |s: &DiffSite| -> Value {
        let o: Map<String, Value> = METRICS
            .iter()
            .map(|m| {
                let v = if comparable(m.metric) {
                    json!(s.change(m.metric))
                } else {
                    Value::Null
                };
                (m.key.to_string(), v)
            })
            .collect();
        Value::Object(o)
    };
    let sites: Vec<Value> = d
        .sites
        .iter()
        .take(top)
        .map(|s| {
            json!({
                "status": s.status().key(),
                "allocator": s.site.func.name(),
                "before": side(a, s.before.as_ref()),
                "after": side(b, s.after.as_ref()),
                "change": change(s),
                "stack": s.frames.iter().map(frame_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let totals: Map<String, Value> = METRICS
        .iter()
        .map(|m| {
            let v = if comparable(m.metric) {
                let (x, y) = (a.sums[m.metric], b.sums[m.metric]);
                json!({"before": x, "after": y, "change": y as i128 - x as i128})
            } else {
                Value::Null
            };
            (m.key.to_string(), v)
        })
        .collect();
    let count = |s: Status| d.sites.iter().filter(|x| x.status() == s).count();
    let warnings = |p: &Profile, s: &Symbolizer| -> Vec<String> {
        p.warnings.iter().chain(s.warnings()).cloned().collect()
    };
    let (wa, wb) = (warnings(a, sa), warnings(b, sb));
    json!({
        "before": json_trace(&a.path, &a.header, &a.metadata, a.truncation.as_ref(), a.end.as_ref(), &wa.iter().collect::<Vec<_>>()),
        "after": json_trace(&b.path, &b.header, &b.metadata, b.truncation.as_ref(), b.end.as_ref(), &wb.iter().collect::<Vec<_>>()),
        "before_window": window_json(a),
        "after_window": window_json(b),
        "metric": d.metric.info().name,
        "leak_check": d.leak_check,
        "totals": totals,
        "changed_sites": count(Status::Both),
        "new_sites": count(Status::New),
        "vanished_sites": count(Status::Vanished),
        "unchanged_sites": d.unchanged,
        "sites": sites,
    })
}
