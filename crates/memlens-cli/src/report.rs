//! `memlens report` and the summary `memlens run` prints: presentation of
//! [`memlens_analysis::Report`] as text for people or JSON for programs (keys documented
//! in `docs/REPORT_JSON.md`).
//!
//! The header (what was traced, how it ended, the window) is here; each section (totals,
//! not-freed, peak...) is a row of [`sections::SECTIONS`] with its text and its JSON, in
//! `report/sections.rs`; the site lines they share are in `report/sites.rs`; `memlens
//! run`'s summary is `report/summary.rs`.

mod sections;
mod sites;
mod summary;

pub use sections::SECTIONS;
pub use summary::print_run_summary;

use crate::present::progress::Bar;
use crate::present::trace::json_trace;
use crate::present::{ms, window_spec};
use memlens_analysis::leaks::Resolution;
use memlens_analysis::{
    GrowthSort, LiveSort, Report, ReportOptions, SortOptions, Symbolizer, TemporarySort,
};
use memlens_common::signal::killed_by;
use memlens_common::units::{human_bytes, human_time, plural};
use memlens_trace::reader::{EndRecord, TraceReader};
use memlens_trace::ExitKind;
use sections::Ctx;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Sections: totals, not-freed (memory not freed at exit), peak (the heap \
at its peak), hotspots (by allocations and by bytes), temporary (allocations freed before \
their thread allocated anything else), growth (sites whose live memory keeps rising: logical \
leaks), heap-vs-rss (why RSS is larger than the heap), advice (what usually fixes a clear \
pattern), leaks (the LEAK SUMMARY when the trace has an exit scan).\n\n\
Times for --from/--to: 1.5s, 200ms, 250us, 1m30s, or a percentage of the run: 50%. Events \
before --from are still replayed, so the heap the window starts with is right; only \
allocations made in the window are counted.\n\n\
Examples:\n  memlens report memlens.myprog.4242.trace\n  \
memlens report --top 3 --sections growth,advice memlens.myprog.4242.trace\n  \
memlens report --from 50% --sort temporary=bytes memlens.myprog.4242.trace\n  \
memlens report --from 1.5s --to 3s --format json memlens.myprog.4242.trace"
)]
pub struct ReportArgs {
    /// The trace file to read.
    pub trace: std::path::PathBuf,
    /// Output format: text for people, json for programs (all sections, docs/REPORT_JSON.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many entries to show in each list (sites, growing sites, advice).
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = crate::present::parse_top)]
    pub top: usize,
    /// Report on the run from TIME on (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Report on the run up to TIME (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Order of a list, LIST=KEY (repeatable): not-freed=bytes|blocks, peak=bytes|blocks,
    /// temporary=count|bytes|fraction, growth=rate|growth|confidence. The first key of
    /// each is the default.
    #[arg(long, value_name = "LIST=KEY")]
    pub sort: Vec<String>,
    /// Sections to print, comma-separated (text only; JSON always has every key):
    /// totals, not-freed, peak, hotspots, temporary, growth, heap-vs-rss, advice, leaks.
    #[arg(long, value_name = "LIST")]
    pub sections: Option<String>,
    /// With --budgets (and the other budget options): the budgets table of the trace
    /// instead of the report (text or JSON), as `memlens check` shows it.
    #[command(flatten)]
    pub budget: crate::budgets::BudgetArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `--sort LIST=KEY...`; `Err` is one sentence.
fn sort_options(items: &[String]) -> Result<SortOptions, String> {
    let mut o = SortOptions::default();
    for item in items {
        let (list, key) = item.split_once('=').ok_or_else(|| {
            format!(
                "--sort {item}: write LIST=KEY, for example temporary=bytes or growth=confidence"
            )
        })?;
        let bad = |keys: &str| format!("--sort {item}: {list} can be sorted by {keys}");
        let live = |k: &str| match k {
            "bytes" => Ok(LiveSort::Bytes),
            "blocks" => Ok(LiveSort::Blocks),
            _ => Err(bad("bytes or blocks")),
        };
        match list.trim() {
            "not-freed" => o.not_freed = live(key.trim())?,
            "peak" => o.peak = live(key.trim())?,
            "temporary" => {
                o.temporary = match key.trim() {
                    "count" => TemporarySort::Count,
                    "bytes" => TemporarySort::Bytes,
                    "fraction" => TemporarySort::Fraction,
                    _ => return Err(bad("count, bytes or fraction")),
                }
            }
            "growth" => {
                o.growth = match key.trim() {
                    "rate" => GrowthSort::Rate,
                    "growth" => GrowthSort::Growth,
                    "confidence" => GrowthSort::Confidence,
                    _ => return Err(bad("rate, growth or confidence")),
                }
            }
            other => {
                return Err(format!(
                    "--sort {item}: no list `{other}` to sort (use not-freed, peak, temporary or growth)"
                ))
            }
        }
    }
    Ok(o)
}

/// `--sections`; `Err` is one sentence.
fn sections(list: Option<&str>) -> Result<Vec<&'static str>, String> {
    let names = || SECTIONS.iter().map(|s| s.name);
    let Some(list) = list else {
        return Ok(names().collect());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match names().find(|s| *s == name) {
            Some(s) => out.push(s),
            None => {
                return Err(format!(
                    "--sections: unknown section `{name}` (use {})",
                    names().collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "--sections names no section (use one or more of {}, separated by commas)",
            names().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(out)
}

pub fn main(args: ReportArgs) -> ExitCode {
    if args.budget.active() {
        return crate::budgets::report_main(&args.budget, &args.trace, args.format);
    }
    let opts = match (|| -> Result<(ReportOptions, Vec<&'static str>), String> {
        let opts = ReportOptions {
            top: args.top,
            window: window_spec(args.from.as_deref(), args.to.as_deref())?,
            leaks: Some(Resolution::High),
            heap_errors: false,
            sort: sort_options(&args.sort)?,
        };
        Ok((opts, sections(args.sections.as_deref())?))
    })() {
        Ok(o) => o,
        Err(msg) => return crate::fail(msg),
    };
    let (opts, shown) = opts;
    let mut report = match analyse(&args.trace, &opts) {
        Ok(r) => r,
        Err(msg) => return crate::fail(msg),
    };
    let mut sym = Symbolizer::for_trace(&report.metadata);
    // The LEAK SUMMARY as `memlens leaks` and `run`'s summary give it: with memlens's
    // built-in suppressions of glibc, ld.so and libstdc++ internals.
    if let Some(l) = report.leaks.as_mut() {
        l.suppress(
            &memlens_analysis::suppressions::Suppressions::default_set(),
            &report.metadata,
            &mut sym,
        );
    }
    let out = match args.format {
        Format::Text => text(&report, &mut sym, args.top, &shown),
        Format::Json => {
            let mut s =
                serde_json::to_string_pretty(&json_report(&report, &mut sym)).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    crate::print_stdout(&out)
}

/// Open and analyse a trace, with a progress bar on stderr if it is a terminal.
pub fn analyse(path: &Path, opts: &ReportOptions) -> Result<Report, String> {
    let reader = TraceReader::open(path).map_err(|e| e.to_string())?;
    let mut bar = Bar::new(&reader, &["reading events"]);
    Report::build_with_progress(&reader, opts, &mut |p| {
        if let Some(b) = bar.as_mut() {
            b.update(p)
        }
    })
    .map_err(|e| e.to_string())
}

/// The report as text: the header, then the sections named in `shown`, in table order.
fn text(r: &Report, sym: &mut Symbolizer, top: usize, shown: &[&str]) -> String {
    let mut o = String::new();
    let h = &r.header;
    let _ = writeln!(o, "memlens report of {}", r.path.display());
    let _ = writeln!(
        o,
        "  program    {}",
        if h.exe.is_empty() { "?" } else { &h.exe }
    );
    if !h.argv.is_empty() || h.argv_omitted > 0 {
        let _ = writeln!(o, "  command    {}", h.argv.join(" "));
    }
    if h.argv_omitted > 0 {
        let _ = writeln!(
            o,
            "  note       the command line was cut: {} ({}) not recorded, past the first {}",
            plural(h.argv_omitted as u64, "more argument", "more arguments"),
            human_bytes(h.argv_omitted_bytes),
            human_bytes(memlens_trace::ARGV_KEPT_BYTES as u64)
        );
    }
    let mut process = format!("pid {}, parent {}", h.pid, h.ppid);
    if h.forked_from != 0 {
        let _ = write!(process, ", forked from {}", h.forked_from);
    }
    if let Some(i) = &r.metadata.inherited {
        let _ = write!(
            process,
            "; it inherited {} ({}) live at the fork, their allocations from {}",
            plural(i.blocks, "block", "blocks"),
            human_bytes(i.bytes),
            i.parent_trace.display()
        );
    }
    let _ = writeln!(o, "  process    {process}");
    if let Some(note) = memlens_analysis::sampling::note(h.sample_interval) {
        let _ = writeln!(
            o,
            "  sampling   every figure below is {note}: each sampled block of s bytes stands \
             for s / (1 - e^(-s/{})) bytes; heap errors and leak kinds are not available",
            h.sample_interval
        );
    }
    if let Some(note) = crate::present::trace::attach_note(h) {
        let _ = writeln!(o, "  attached   {note}");
    }
    if let Some(note) = crate::present::trace::python_work_done_note(&r.metadata) {
        let _ = writeln!(o, "  python     {note}");
    }
    let _ = writeln!(
        o,
        "  ended      {}{} {}",
        describe_end(r.end.as_ref()),
        if is_snapshot(r) {
            ", which paused it"
        } else {
            " after"
        },
        // The process's end, from its end record: a Python program's figures stop earlier
        // (the `python` line above says when), and `run_ns` is theirs.
        human_time(
            r.end
                .as_ref()
                .map_or(r.window.run_ns, |e| e.ts.max(r.window.run_ns))
        )
    );
    if let Some(why) = r
        .end
        .as_ref()
        .filter(|e| e.kind == ExitKind::Exec)
        .and_then(|e| exec_unrecorded(e.code))
    {
        let _ = writeln!(o, "  note       the new image was not recorded: {why}");
    }
    if let Some(w) = window_text(r) {
        let _ = writeln!(
            o,
            "  window     {w}: allocations made in it, with the heap it started with"
        );
    }
    if let Some(tr) = &r.truncation {
        let _ = writeln!(
            o,
            "  TRUNCATED  the trace was cut short: {}; the report covers what was recorded",
            tr.reason
        );
    }

    // Sections are rendered before the warnings so symbolization warnings are known.
    let mut body = String::new();
    let mut cx = Ctx { r, sym, top };
    // A snapshot is one moment: the sections of the run's history are left out (its
    // totals say so).
    let snapshot = is_snapshot(r);
    for s in SECTIONS
        .iter()
        .filter(|s| shown.contains(&s.name) && !(snapshot && s.history))
    {
        (s.text)(&mut cx, &mut body);
    }
    for w in r.warnings.iter().chain(cx.sym.warnings()) {
        let _ = writeln!(o, "  warning    {w}");
    }
    o.push_str(&body);
    o
}

/// The report as JSON (see `docs/REPORT_JSON.md`): `trace`, `window`, then each
/// section's key, in table order.
pub fn json_report(r: &Report, sym: &mut Symbolizer) -> Value {
    let mut cx = Ctx { r, sym, top: 0 };
    let mut o = Map::new();
    // A place for `trace`, filled last so that symbolization's warnings are included.
    o.insert("trace".into(), Value::Null);
    o.insert(
        "window".into(),
        json!({
            "from_ms": ms(r.window.from_ns),
            "to_ms": ms(r.window.to_ns),
            "run_ms": ms(r.window.run_ns),
            "whole_run": r.window.is_whole(),
        }),
    );
    for s in &SECTIONS {
        o.insert(s.key.into(), (s.json)(&mut cx));
    }
    let warnings: Vec<&String> = r.warnings.iter().chain(cx.sym.warnings()).collect();
    o.insert(
        "trace".into(),
        json_trace(
            &r.path,
            &r.header,
            &r.metadata,
            r.truncation.as_ref(),
            r.end.as_ref(),
            &warnings,
        ),
    );
    Value::Object(o)
}

/// `1.50 s .. 3.00 s of a 4.00 s run`, or `the whole run (4.00 s)`.
fn window_text(r: &Report) -> Option<String> {
    let w = &r.window;
    (!w.is_whole()).then(|| {
        format!(
            "{} .. {} of a {} run",
            human_time(w.from_ns),
            human_time(w.to_ns),
            human_time(w.run_ns)
        )
    })
}

/// A heap snapshot's file (`memlens snapshot`): its blocks are those live at one moment,
/// with no history.
fn is_snapshot(r: &Report) -> bool {
    r.end.as_ref().is_some_and(|e| e.kind == ExitKind::Snapshot)
}

fn describe_end(end: Option<&EndRecord>) -> String {
    let Some(e) = end else {
        return "unknown (no end record: killed, still running, or not flushed)".to_string();
    };
    match e.kind {
        ExitKind::Exit => format!("exited with status {}", e.code),
        ExitKind::UnderscoreExit => format!("called _exit({})", e.code),
        ExitKind::Signal => killed_by(e.code),
        ExitKind::Exec => "replaced itself with exec".to_string(),
        ExitKind::Snapshot => "still running (a snapshot of the live process)".to_string(),
        ExitKind::Detach => "ran on: memlens detached".to_string(),
    }
}

/// Why the image an exec started was not recorded, from the exec end record's code;
/// `None` when the recorder stayed preloaded (then the new image has its own trace,
/// unless it ignores LD_PRELOAD).
fn exec_unrecorded(code: i32) -> Option<&'static str> {
    match code {
        memlens_trace::EXEC_RECORDER_REMOVED => Some(
            "the program took the recorder out of LD_PRELOAD (removed or replaced it) before exec'ing",
        ),
        memlens_trace::EXEC_NOT_FOLLOWED => Some("--no-follow was given"),
        _ => None,
    }
}
