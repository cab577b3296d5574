//! `memlens report` and the summary `memlens run` prints: presentation of
//! [`memlens_analysis::Report`] as text for people or JSON for programs
//! (keys documented in `docs/REPORT_JSON.md`).

use crate::leaks::{summary_json, summary_text};
use memlens_analysis::advice::Advice;
use memlens_analysis::heap_rss::Breakdown;
use memlens_analysis::leaks::Resolution;
use memlens_analysis::{
    Frame, GrowthSort, LiveSort, Progress, Report, ReportOptions, Site, SortOptions, Symbolizer,
    TemporarySort, TimePoint, WindowSpec,
};
use memlens_common::signal::signal_name;
use memlens_common::units::human_bytes_f;
use memlens_trace::reader::{EndRecord, Metadata, RawFrame, TraceReader};
use memlens_trace::ExitKind;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
    pub trace: PathBuf,
    /// Output format: text for people, json for programs (all sections, docs/REPORT_JSON.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many entries to show in each list (sites, growing sites, advice).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Report on the run from TIME on (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Report on the run up to TIME (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME")]
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Frames of a stack shown in text reports before "... N more frames".
const TEXT_MAX_FRAMES: usize = 16;

const SECTIONS: [&str; 9] = [
    "totals",
    "not-freed",
    "peak",
    "hotspots",
    "temporary",
    "growth",
    "heap-vs-rss",
    "advice",
    "leaks",
];

/// `--from` / `--to` as a window; `Err` is one sentence.
pub fn window_spec(from: Option<&str>, to: Option<&str>) -> Result<WindowSpec, String> {
    let parse = |flag: &str, v: Option<&str>| {
        v.map(|s| TimePoint::parse(s).map_err(|e| format!("{flag}: {e}")))
            .transpose()
    };
    Ok(WindowSpec {
        from: parse("--from", from)?,
        to: parse("--to", to)?,
        ..Default::default()
    })
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
    let Some(list) = list else {
        return Ok(SECTIONS.to_vec());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match SECTIONS.iter().find(|s| **s == name) {
            Some(s) => out.push(*s),
            None => {
                return Err(format!(
                    "--sections: unknown section `{name}` (use {})",
                    SECTIONS.join(", ")
                ))
            }
        }
    }
    Ok(out)
}

pub fn main(args: ReportArgs) -> ExitCode {
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
    let report = match analyse(&args.trace, &opts) {
        Ok(r) => r,
        Err(msg) => return crate::fail(msg),
    };
    let mut sym = Symbolizer::new(&report.metadata.modules);
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

/// The output file given, or the trace's file name plus `.EXT` in the current directory.
pub fn output_or_default(given: Option<&PathBuf>, trace: &Path, ext: &str) -> PathBuf {
    given.cloned().unwrap_or_else(|| {
        let name = trace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "memlens".into());
        PathBuf::from(format!("{name}.{ext}"))
    })
}

/// A progress bar on stderr when it is a terminal, fed by [`Progress`] reports; `messages`
/// names each pass. `None` when stderr is not a terminal.
pub struct Bar {
    bar: indicatif::ProgressBar,
    pass: u8,
    messages: &'static [&'static str],
}

impl Bar {
    pub fn new(reader: &TraceReader, messages: &'static [&'static str]) -> Option<Bar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(reader.event_chunk_count() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:>26} [{bar:40}] {percent:>3}%")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(messages.first().copied().unwrap_or(""));
        Some(Bar {
            bar,
            pass: 1,
            messages,
        })
    }

    pub fn update(&mut self, p: Progress) {
        if p.pass != self.pass {
            self.pass = p.pass;
            let i = (p.pass as usize).saturating_sub(1);
            self.bar
                .set_message(self.messages.get(i).copied().unwrap_or(""));
            self.bar.reset();
        }
        self.bar.set_position(p.chunks_done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Run an analysis of `reader` that reports [`Progress`] (pass 1: the events; pass 3: the
/// leak check's replay), with a progress bar on stderr if it is a terminal.
pub fn with_progress<T>(
    reader: &TraceReader,
    analysis: impl FnOnce(&mut dyn FnMut(Progress)) -> T,
) -> T {
    let mut bar = Bar::new(
        reader,
        &["reading events", "reading events", "checking leaks"],
    );
    analysis(&mut |p| {
        if let Some(b) = bar.as_mut() {
            b.update(p)
        }
    })
}

/// The `trace` object of `docs/REPORT_JSON.md`: what was traced and how it ended.
pub fn json_trace(
    path: &Path,
    h: &memlens_trace::Header,
    truncation: Option<&memlens_trace::reader::Truncation>,
    end: Option<&EndRecord>,
    warnings: &[&String],
) -> Value {
    json!({
        "path": path.to_string_lossy(),
        "pid": h.pid,
        "ppid": h.ppid,
        "forked_from": if h.forked_from == 0 { Value::Null } else { json!(h.forked_from) },
        "exe": h.exe,
        "argv": h.argv,
        "argv_omitted": (h.argv_omitted > 0)
            .then(|| json!({"arguments": h.argv_omitted, "bytes": h.argv_omitted_bytes})),
        "truncated": truncation.map(|t| t.reason.clone()),
        "exit": end.map(|e| json!({"kind": exit_kind_key(e.kind), "code": e.code})),
        "warnings": warnings,
    })
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

// ---------------------------------------------------------------------------------------
// Units

pub use memlens_common::units::human_bytes;

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.join(",")
}

/// A duration given in ns since the trace started, for people.
pub fn human_time(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn exit_kind_key(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::Exit => "exit",
        ExitKind::UnderscoreExit => "_exit",
        ExitKind::Signal => "signal",
        ExitKind::Exec => "exec",
    }
}

fn describe_end(end: Option<&EndRecord>) -> String {
    let Some(e) = end else {
        return "unknown (no end record: killed, still running, or not flushed)".to_string();
    };
    match e.kind {
        ExitKind::Exit => format!("exited with status {}", e.code),
        ExitKind::UnderscoreExit => format!("called _exit({})", e.code),
        ExitKind::Signal => match signal_name(e.code) {
            Some(name) => format!("killed by signal {} ({name})", e.code),
            None => format!("killed by signal {}", e.code),
        },
        ExitKind::Exec => "replaced itself with exec".to_string(),
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

// ---------------------------------------------------------------------------------------
// Text

/// `main (demo.c:12) [demo]`, `libfoo.so+0x1234`, `0x7f0012345678`.
pub fn frame_text(f: &Frame) -> String {
    let mut s = f.function.clone();
    match (f.file_name(), f.line) {
        (Some(file), Some(line)) => {
            let _ = write!(s, " ({file}:{line})");
        }
        (Some(file), None) => {
            let _ = write!(s, " ({file})");
        }
        _ => {}
    }
    // Unsymbolized frames already name their module (`libfoo.so+0x1234`).
    if let Some(m) = &f.module {
        if f.file.is_some() || !f.function.starts_with(m.as_str()) {
            let _ = write!(s, " [{m}]");
        }
    }
    if f.inlined {
        s.push_str(" (inlined)");
    }
    s
}

pub fn text_stack(out: &mut String, frames: &[Frame]) {
    if frames.is_empty() {
        out.push_str("    (no stack recorded)\n");
        return;
    }
    for f in frames.iter().take(TEXT_MAX_FRAMES) {
        let _ = writeln!(out, "    at {}", frame_text(f));
    }
    if frames.len() > TEXT_MAX_FRAMES {
        let _ = writeln!(
            out,
            "    ... {} more frames",
            frames.len() - TEXT_MAX_FRAMES
        );
    }
}

fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        "0%".to_string()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

/// A rate in bytes per second: `+1.95 MiB/s`.
pub fn human_rate_s(bytes_per_sec: f64) -> String {
    let s = human_bytes_f(bytes_per_sec);
    if bytes_per_sec >= 0.0 {
        format!("+{s}/s")
    } else {
        format!("{s}/s")
    }
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

fn text(r: &Report, sym: &mut Symbolizer, top: usize, shown: &[&str]) -> String {
    let mut o = String::new();
    let h = &r.header;
    let t = &r.totals;
    let whole = r.window.is_whole();
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
    let _ = writeln!(o, "  process    {process}");
    let _ = writeln!(
        o,
        "  ended      {} after {}",
        describe_end(r.end.as_ref()),
        human_time(r.window.run_ns)
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
    let on = |name: &str| shown.contains(&name);
    if on("totals") {
        let _ = writeln!(body, "\nTotals");
        let _ = writeln!(
            body,
            "  allocations        {} ({} through realloc)",
            count(t.allocations),
            count(t.reallocs)
        );
        let _ = writeln!(body, "  frees              {}", count(t.frees));
        if t.untracked_frees > 0 {
            let _ = writeln!(
                body,
                "  untracked frees    {} (of memory allocated before recording started)",
                count(t.untracked_frees)
            );
        }
        let _ = writeln!(
            body,
            "  temporary          {} ({} of allocations)",
            count(t.temporary),
            pct(t.temporary, t.allocations)
        );
        let _ = writeln!(
            body,
            "  bytes allocated    {}",
            human_bytes(t.bytes_allocated)
        );
        let _ = writeln!(
            body,
            "  peak heap          {} at {}",
            human_bytes(t.peak_heap_bytes),
            human_time(t.peak_heap_ns)
        );
        if let (Some(rss), Some(at)) = (t.peak_rss_bytes, t.peak_rss_ns) {
            let _ = writeln!(
                body,
                "  peak RSS           {} at {}",
                human_bytes(rss),
                human_time(at)
            );
        }
        let _ = writeln!(body, "  runtime            {}", human_time(t.runtime_ns));
        if whole {
            let _ = writeln!(
                body,
                "  not freed at exit  {} in {}",
                human_bytes(t.not_freed_bytes),
                plural(t.not_freed_blocks, "block", "blocks")
            );
        } else {
            let _ = writeln!(
                body,
                "  not freed          {} in {} (allocated in the window, live at its end)",
                human_bytes(t.not_freed_bytes),
                plural(t.not_freed_blocks, "block", "blocks")
            );
        }
    }

    if on("not-freed") {
        let nf = &r.not_freed;
        let _ = writeln!(
            body,
            "\n{}: {} in {} from {}",
            if whole {
                "Not freed at exit"
            } else {
                "Not freed by the end of the window"
            },
            human_bytes(nf.bytes),
            plural(nf.blocks, "block", "blocks"),
            plural(nf.site_count as u64, "site", "sites")
        );
        if nf.sites.is_empty() {
            let _ = writeln!(body, "  nothing: every recorded allocation was freed");
        }
        for s in &nf.sites {
            site_text(&mut body, r, sym, s, SiteLine::Live);
        }
        more(&mut body, nf.site_count, nf.sites.len());
    }

    if on("peak") {
        let p = &r.peak;
        let _ = writeln!(
            body,
            "\nHeap at its peak ({}): {} in {}",
            human_time(p.time_ns),
            human_bytes(p.bytes),
            plural(p.blocks, "block", "blocks")
        );
        for s in &p.sites {
            site_text(&mut body, r, sym, s, SiteLine::Live);
        }
        more(&mut body, p.site_count, p.sites.len());
    }

    if on("hotspots") {
        let _ = writeln!(body, "\nTop {top} sites by number of allocations");
        for s in &r.by_allocations {
            site_text(&mut body, r, sym, s, SiteLine::Allocations);
        }
        let _ = writeln!(body, "\nTop {top} sites by bytes allocated");
        for s in &r.by_bytes {
            site_text(&mut body, r, sym, s, SiteLine::Bytes);
        }
    }

    if on("temporary") {
        let tm = &r.temporary;
        let _ = writeln!(
            body,
            "\nTemporary allocations: {} of {} ({}), {}; freed before their thread allocated anything else",
            count(tm.count),
            plural(t.allocations, "allocation", "allocations"),
            pct(tm.count, t.allocations),
            human_bytes(tm.bytes)
        );
        if tm.sites.is_empty() {
            let _ = writeln!(body, "  none");
        }
        for ts in &tm.sites {
            let st = &ts.site.stats;
            let _ = writeln!(
                body,
                "  {} temporary of {} ({}) from {}, {}",
                count(st.temporary),
                plural(st.allocations, "allocation", "allocations"),
                pct(st.temporary, st.allocations),
                ts.site.func.name(),
                human_bytes(ts.bytes)
            );
            text_stack(&mut body, &sym.stack(r.stack(ts.site.stack)));
        }
        more(&mut body, tm.site_count, tm.sites.len());
    }

    if on("growth") {
        let g = &r.growth;
        let how = format!(
            "floors of live bytes in {} intervals of {} from {} to {}; {} judged",
            g.intervals,
            human_time(g.interval_ns),
            human_time(g.from_ns),
            human_time(g.from_ns + g.span_ns),
            plural(g.sites_judged as u64, "site", "sites")
        );
        if g.site_count == 0 {
            let _ = writeln!(body, "\nGrowth: no site keeps growing ({how})");
        } else {
            let _ = writeln!(
                body,
                "\nGrowth: {} keep{} growing ({how})",
                plural(g.site_count as u64, "site", "sites"),
                if g.site_count == 1 { "s" } else { "" }
            );
        }
        for gs in &g.sites {
            let f = &gs.fit;
            let _ = writeln!(
                body,
                "  {} from {}: floor {} -> {} between {} and {} ({:.0}% of the {})",
                human_rate_s(f.rate),
                gs.site.func.name(),
                human_bytes(f.start_bytes),
                human_bytes(f.max_bytes),
                human_time(f.grew_from_ns),
                human_time(f.grew_to_ns),
                100.0 * f.fraction,
                if whole { "run" } else { "window" },
            );
            let _ = writeln!(
                body,
                "    95% CI {} .. {}, confidence {:.1}%; {} in {} live at the end",
                human_rate_s(f.rate_low),
                human_rate_s(f.rate_high),
                100.0 * f.confidence.min(0.999),
                human_bytes(gs.site.stats.live_bytes),
                plural(gs.site.stats.live_blocks, "block", "blocks"),
            );
            text_stack(&mut body, &sym.stack(r.stack(gs.site.stack)));
        }
        more(&mut body, g.site_count, g.sites.len());
    }

    if on("heap-vs-rss") {
        match &r.heap_vs_rss {
            None => {
                let _ = writeln!(
                    body,
                    "\nHeap vs RSS: no RSS sample in the {} (run with --rss-interval above 0)",
                    if whole { "trace" } else { "window" }
                );
            }
            Some(h) => {
                let _ = writeln!(
                    body,
                    "\nHeap vs RSS (allocator overhead and baseline are estimates, see docs/ANALYSIS.md)"
                );
                let mut cols: Vec<(&str, &Breakdown)> = vec![("at peak RSS", &h.at_peak_rss)];
                if let Some(b) = &h.at_peak_heap {
                    cols.push(("near heap peak", b));
                }
                cols.push(("at the end", &h.at_end));
                let row = |o: &mut String, label: &str, f: &dyn Fn(&Breakdown) -> String| {
                    let _ = write!(o, "  {label:<22}");
                    for (_, b) in &cols {
                        let _ = write!(o, "{:>16}", f(b));
                    }
                    o.push('\n');
                };
                let _ = write!(body, "  {:<22}", "");
                for (name, _) in &cols {
                    let _ = write!(body, "{name:>16}");
                }
                body.push('\n');
                row(&mut body, "time", &|b| human_time(b.time_ns));
                row(&mut body, "RSS", &|b| human_bytes(b.rss));
                row(&mut body, "heap in use", &|b| human_bytes(b.heap_bytes));
                row(&mut body, "allocator overhead", &|b| {
                    human_bytes(b.overhead_bytes)
                });
                row(&mut body, "baseline at start", &|b| {
                    human_bytes(b.baseline_bytes)
                });
                row(&mut body, "other (kept, not heap)", &|b| {
                    human_bytes_f(b.other_bytes as f64)
                });
                let _ = writeln!(
                    body,
                    "  (memlens's own memory, part of baseline and other: up to {})",
                    human_bytes(h.at_peak_rss.recorder_bytes)
                );
                for f in &h.findings {
                    let _ = writeln!(body, "  - {f}");
                }
            }
        }
    }

    if on("advice") {
        let _ = writeln!(body, "\nAdvice");
        if r.advice.is_empty() {
            let _ = writeln!(body, "  nothing stands out");
        }
        for a in &r.advice {
            let at = site_location(&r.metadata, sym, a.site.stack);
            let _ = writeln!(body, "  - {at}: {}", a.message);
        }
    }

    if on("leaks") {
        if let Some(l) = r.leaks.as_ref().filter(|l| l.scan.is_some()) {
            let _ = writeln!(
                body,
                "\nLeaks at exit (`memlens leaks` shows the loss records and what keeps blocks alive)"
            );
            body.push_str(&summary_text(&l.summary, "  "));
        }
    }

    for w in r.warnings.iter().chain(sym.warnings()) {
        let _ = writeln!(o, "  warning    {w}");
    }
    o.push_str(&body);
    o
}

enum SiteLine {
    Live,
    Allocations,
    Bytes,
}

fn site_text(o: &mut String, r: &Report, sym: &mut Symbolizer, s: &Site, line: SiteLine) {
    let st = &s.stats;
    let alloc = s.func.name();
    let _ = match line {
        SiteLine::Live => writeln!(
            o,
            "  {} in {} from {alloc} ({}, {} in total)",
            human_bytes(st.live_bytes),
            plural(st.live_blocks, "block", "blocks"),
            plural(st.allocations, "allocation", "allocations"),
            human_bytes(st.bytes_allocated)
        ),
        SiteLine::Allocations => writeln!(
            o,
            "  {} from {alloc} ({} in total)",
            plural(st.allocations, "allocation", "allocations"),
            human_bytes(st.bytes_allocated)
        ),
        SiteLine::Bytes => writeln!(
            o,
            "  {} from {alloc} in {}",
            human_bytes(st.bytes_allocated),
            plural(st.allocations, "allocation", "allocations")
        ),
    };
    text_stack(o, &sym.stack(r.stack(s.stack)));
}

fn more(o: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(
            o,
            "  ... and {} (use --top to see more)",
            plural((total - shown) as u64, "more site", "more sites")
        );
    }
}

/// A module of the system (`/lib`, `/usr/lib`, the vDSO), whose frames are rarely the
/// ones a user wants to read first.
pub fn is_system_module(path: &str) -> bool {
    ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"]
        .iter()
        .any(|p| path.starts_with(p))
        || path.starts_with("linux-vdso")
}

/// Where a summary or advice line points: the first frame in the program's own code, not in a
/// system library (`/lib`, `/usr/lib`: glibc's `strdup` or stdio are rarely what a user
/// wants to read first); the innermost frame if every frame is in a system library.
/// Allocation wrappers (`--alloc-fn`) are not frames of the stack: it starts at their caller.
pub fn site_location(md: &Metadata, sym: &mut Symbolizer, stack: u32) -> String {
    let (frames, at) = located_frames(md, sym, stack);
    frames
        .get(at)
        .map(frame_text)
        .unwrap_or_else(|| "(no stack recorded)".to_string())
}

/// A stack's symbolized frames and the index of the frame [`site_location`] names.
fn located_frames(md: &Metadata, sym: &mut Symbolizer, stack: u32) -> (Vec<Frame>, usize) {
    let raw: &[RawFrame] = md.stacks.get(&stack).map_or(&[], |v| v.as_slice());
    let frames = sym.stack(raw);
    let system: std::collections::HashSet<&str> = md
        .modules
        .values()
        .filter(|m| is_system_module(&m.path))
        .map(|m| m.short_name())
        .collect();
    let at = frames
        .iter()
        .position(|f| f.module.as_deref().is_none_or(|m| !system.contains(m)))
        .unwrap_or(0);
    (frames, at)
}

/// [`site_location`] of each stack of a list, each label distinguishable: a label that
/// several stacks share is followed by `via` and the first frame, from there on, where
/// this stack differs from every other stack with that label (the same wrapper called
/// from different places).
pub fn site_labels(md: &Metadata, sym: &mut Symbolizer, stacks: &[u32]) -> Vec<String> {
    let located: Vec<Vec<String>> = stacks
        .iter()
        .map(|&s| {
            let (frames, at) = located_frames(md, sym, s);
            frames.iter().skip(at).map(frame_text).collect()
        })
        .collect();
    let base = |f: &[String]| {
        f.first()
            .cloned()
            .unwrap_or_else(|| "(no stack recorded)".to_string())
    };
    located
        .iter()
        .enumerate()
        .map(|(i, own)| {
            let label = base(own);
            // Where this stack parts from each other stack with the same label.
            let parts = located
                .iter()
                .enumerate()
                .filter(|&(j, other)| j != i && base(other) == label)
                .map(|(_, other)| {
                    own.iter()
                        .zip(other)
                        .position(|(a, b)| a != b)
                        .unwrap_or(own.len().min(other.len()))
                })
                .max();
            match parts.and_then(|k| own.get(k)) {
                Some(f) => format!("{label} via {f}"),
                None => label,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// JSON

/// One frame as JSON (`docs/REPORT_JSON.md`, FRAME; the same in `memlens leaks`).
pub fn frame_json(f: &Frame) -> Value {
    json!({"function": f.function, "file": f.file, "line": f.line, "module": f.module, "inlined": f.inlined})
}

/// A SITE object, with `extra` keys after the common ones.
fn json_site_with(r: &Report, sym: &mut Symbolizer, s: &Site, extra: Value) -> Value {
    let stack: Vec<Value> = sym.stack(r.stack(s.stack)).iter().map(frame_json).collect();
    let mut v = json!({
        "allocations": s.stats.allocations,
        "bytes_allocated": s.stats.bytes_allocated,
        "live_bytes": s.stats.live_bytes,
        "live_blocks": s.stats.live_blocks,
        "temporary": s.stats.temporary,
        "allocator": s.func.name(),
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
        o.insert("stack".into(), Value::Array(stack));
    }
    v
}

fn json_site(r: &Report, sym: &mut Symbolizer, s: &Site) -> Value {
    json_site_with(r, sym, s, json!({}))
}

fn json_sites(r: &Report, sym: &mut Symbolizer, sites: &[Site]) -> Value {
    Value::Array(sites.iter().map(|s| json_site(r, sym, s)).collect())
}

fn fraction(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn json_breakdown(b: &Breakdown) -> Value {
    json!({
        "time_ms": ms(b.time_ns),
        "rss_bytes": b.rss,
        "heap_bytes": b.heap_bytes,
        "heap_blocks": b.heap_blocks,
        "overhead_bytes": b.overhead_bytes,
        "baseline_bytes": b.baseline_bytes,
        "recorder_bytes": b.recorder_bytes,
        "other_bytes": b.other_bytes,
    })
}

fn json_advice(r: &Report, sym: &mut Symbolizer, a: &Advice) -> Value {
    let at = site_location(&r.metadata, sym, a.site.stack);
    json_site_with(
        r,
        sym,
        &a.site,
        json!({"kind": a.kind.key(), "at": at, "message": a.message}),
    )
}

/// The report as JSON (see `docs/REPORT_JSON.md`).
pub fn json_report(r: &Report, sym: &mut Symbolizer) -> Value {
    let t = &r.totals;
    let peak = json!({
        "bytes": r.peak.bytes,
        "blocks": r.peak.blocks,
        "time_ms": ms(r.peak.time_ns),
        "site_count": r.peak.site_count,
        "sites": json_sites(r, sym, &r.peak.sites),
    });
    let not_freed = json!({
        "bytes": r.not_freed.bytes,
        "blocks": r.not_freed.blocks,
        "site_count": r.not_freed.site_count,
        "sites": json_sites(r, sym, &r.not_freed.sites),
    });
    let hotspots = json!({
        "site_count": r.site_count,
        "by_allocations": json_sites(r, sym, &r.by_allocations),
        "by_bytes": json_sites(r, sym, &r.by_bytes),
    });
    let tm = &r.temporary;
    let temp_sites: Vec<Value> = tm
        .sites
        .iter()
        .map(|ts| {
            json_site_with(
                r,
                sym,
                &ts.site,
                json!({
                    "temporary_bytes": ts.bytes,
                    "temporary_fraction": fraction(ts.site.stats.temporary, ts.site.stats.allocations),
                }),
            )
        })
        .collect();
    let temporary = json!({
        "count": tm.count,
        "bytes": tm.bytes,
        "fraction": fraction(tm.count, t.allocations),
        "site_count": tm.site_count,
        "sites": temp_sites,
    });
    let g = &r.growth;
    let growth_sites: Vec<Value> = g
        .sites
        .iter()
        .map(|gs| {
            let f = &gs.fit;
            json_site_with(
                r,
                sym,
                &gs.site,
                json!({
                    "rate_bytes_per_sec": f.rate,
                    "rate_low_bytes_per_sec": f.rate_low,
                    "rate_high_bytes_per_sec": f.rate_high,
                    "confidence": f.confidence,
                    "start_bytes": f.start_bytes,
                    "max_bytes": f.max_bytes,
                    "growth_bytes": f.growth_bytes(),
                    "grew_from_ms": ms(f.grew_from_ns),
                    "grew_to_ms": ms(f.grew_to_ns),
                    "grew_over_fraction": f.fraction,
                }),
            )
        })
        .collect();
    let growth = json!({
        "from_ms": ms(g.from_ns),
        "to_ms": ms(g.from_ns + g.span_ns),
        "intervals": g.intervals,
        "interval_ms": ms(g.interval_ns),
        "sites_judged": g.sites_judged,
        "site_count": g.site_count,
        "sites": growth_sites,
    });
    let heap_vs_rss = r.heap_vs_rss.as_ref().map(|h| {
        json!({
            "peak_heap_bytes": h.peak_heap_bytes,
            "at_peak_rss": json_breakdown(&h.at_peak_rss),
            "at_peak_heap": h.at_peak_heap.as_ref().map(json_breakdown),
            "at_end": json_breakdown(&h.at_end),
            "findings": h.findings,
        })
    });
    let advice: Vec<Value> = r.advice.iter().map(|a| json_advice(r, sym, a)).collect();
    let leaks = r
        .leaks
        .as_ref()
        .filter(|l| l.scan.is_some())
        .map(|l| summary_json(&l.summary));
    // After symbolizing, so its warnings are included.
    let warnings: Vec<&String> = r.warnings.iter().chain(sym.warnings()).collect();
    let h = &r.header;
    json!({
        "trace": json_trace(&r.path, h, r.truncation.as_ref(), r.end.as_ref(), &warnings),
        "window": {
            "from_ms": ms(r.window.from_ns),
            "to_ms": ms(r.window.to_ns),
            "run_ms": ms(r.window.run_ns),
            "whole_run": r.window.is_whole(),
        },
        "totals": {
            "allocations": t.allocations,
            "frees": t.frees,
            "reallocs": t.reallocs,
            "bytes_allocated": t.bytes_allocated,
            "temporary": t.temporary,
            "peak_heap_bytes": t.peak_heap_bytes,
            "peak_heap_time_ms": ms(t.peak_heap_ns),
            "peak_rss_bytes": t.peak_rss_bytes,
            "peak_rss_time_ms": t.peak_rss_ns.map(ms),
            "runtime_ms": ms(t.runtime_ns),
            "not_freed_bytes": t.not_freed_bytes,
            "not_freed_blocks": t.not_freed_blocks,
            "untracked_frees": t.untracked_frees,
        },
        "peak": peak,
        "not_freed": not_freed,
        "hotspots": hotspots,
        "temporary": temporary,
        "growth": growth,
        "heap_vs_rss": heap_vs_rss,
        "advice": advice,
        "leaks": leaks,
    })
}

// ---------------------------------------------------------------------------------------
// Run summary

/// The short summary `memlens run` shows on stderr when the program exits: one block of
/// lines prefixed `==memlens==`.
pub fn run_summary(r: &Report, trace: &Path) -> String {
    let mut sym = Symbolizer::new(&r.metadata.modules);
    let t = &r.totals;
    let mut lines = vec![
        format!(
            "{}, {}, {} allocated",
            plural(t.allocations, "allocation", "allocations"),
            plural(t.frees, "free", "frees"),
            human_bytes(t.bytes_allocated)
        ),
        format!(
            "peak heap: {} at {}",
            human_bytes(t.peak_heap_bytes),
            human_time(t.peak_heap_ns)
        ),
        format!(
            "not freed at exit: {} in {}",
            human_bytes(t.not_freed_bytes),
            plural(t.not_freed_blocks, "block", "blocks")
        ),
    ];
    let labels = |sym: &mut Symbolizer, stacks: Vec<u32>| site_labels(&r.metadata, sym, &stacks);
    let at = labels(
        &mut sym,
        r.not_freed.sites.iter().map(|s| s.stack).collect(),
    );
    for (s, at) in r.not_freed.sites.iter().zip(at) {
        lines.push(format!(
            "  {} in {} at {at}",
            human_bytes(s.stats.live_bytes),
            plural(s.stats.live_blocks, "block", "blocks")
        ));
    }
    if r.not_freed.site_count > r.not_freed.sites.len() {
        lines.push(format!(
            "  ... and {} (memlens report shows them)",
            plural(
                (r.not_freed.site_count - r.not_freed.sites.len()) as u64,
                "more site",
                "more sites"
            )
        ));
    }
    if !r.by_allocations.is_empty() {
        lines.push("most allocations:".to_string());
        let at = labels(&mut sym, r.by_allocations.iter().map(|s| s.stack).collect());
        for (s, at) in r.by_allocations.iter().zip(at) {
            lines.push(format!(
                "  {} ({}) at {at}",
                plural(s.stats.allocations, "allocation", "allocations"),
                human_bytes(s.stats.bytes_allocated)
            ));
        }
    }
    if !r.growth.sites.is_empty() {
        lines.push("keeps growing (memlens report explains):".to_string());
        let at = labels(
            &mut sym,
            r.growth.sites.iter().map(|g| g.site.stack).collect(),
        );
        for (g, at) in r.growth.sites.iter().zip(at) {
            lines.push(format!(
                "  {} to {} at {at}",
                human_rate_s(g.fit.rate),
                human_bytes(g.fit.max_bytes)
            ));
        }
    }
    if let Some(e) = r
        .metadata
        .end
        .as_ref()
        .filter(|e| e.kind == ExitKind::Signal)
    {
        lines.push(format!(
            "the program was {}; the leak check ran at that point",
            describe_end(Some(e))
        ));
    }
    if let Some(tr) = &r.truncation {
        lines.push(format!("warning: the trace was cut short: {}", tr.reason));
    }
    // The last image of the program's process ended by exec: the one after it left no trace.
    if let Some(e) = r.end.as_ref().filter(|e| e.kind == ExitKind::Exec) {
        let why = exec_unrecorded(e.code).unwrap_or(
            "it did not load the recorder (static and setuid programs ignore LD_PRELOAD)",
        );
        lines.push(format!(
            "warning: the program replaced itself with exec and the new image was not recorded: {why}; \
             this summary describes only the image before the exec"
        ));
    }
    for w in r.warnings.iter().chain(sym.warnings()) {
        lines.push(format!("warning: {w}"));
    }
    lines.push(format!("trace: {}", trace.display()));
    let mut block = String::new();
    for l in lines {
        let _ = writeln!(block, "==memlens== {l}");
    }
    block
}

/// Print [`run_summary`] on stderr.
pub fn print_run_summary(r: &Report, trace: &Path) {
    crate::write_stderr(&run_summary(r, trace));
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_trace::writer::TraceWriter;
    use memlens_trace::{AllocFunc, ChunkKind, EndCounters, Header};

    #[test]
    fn units() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(human_time(12_345), "0.012 ms");
        assert_eq!(human_time(9_000_000), "9.0 ms");
        assert_eq!(human_time(2_500_000_000), "2.50 s");
    }

    #[test]
    fn frame_lines() {
        let f = |function: &str, file: Option<&str>, line, module: Option<&str>, inlined| Frame {
            function: function.into(),
            mangled: None,
            file: file.map(Into::into),
            line,
            module: module.map(Into::into),
            inlined,
            resolved: true,
        };
        assert_eq!(
            frame_text(&f(
                "main",
                Some("/src/demo.c"),
                Some(12),
                Some("demo"),
                false
            )),
            "main (demo.c:12) [demo]"
        );
        assert_eq!(
            frame_text(&f("libfoo.so+0x1234", None, None, Some("libfoo.so"), false)),
            "libfoo.so+0x1234"
        );
        assert_eq!(frame_text(&f("0x7f00", None, None, None, false)), "0x7f00");
        assert_eq!(
            frame_text(&f("get", Some("v.h"), Some(3), Some("demo"), true)),
            "get (v.h:3) [demo] (inlined)"
        );
    }

    #[test]
    fn run_summary_lines() {
        let mut w = TraceWriter::new(
            Vec::new(),
            &Header {
                pid: 9,
                exe: "/bin/x".into(),
                ..Default::default()
            },
        )
        .unwrap();
        w.chunk(ChunkKind::Events, 0, |b| {
            for i in 0..5u64 {
                b.alloc(
                    i + 1,
                    AllocFunc::Malloc,
                    0x1000 * (i + 1),
                    1000 * (i + 1),
                    i as u32 + 1,
                )?;
            }
            b.free(10, AllocFunc::Free, 0x1000, 0)
        })
        .unwrap();
        w.chunk(ChunkKind::Meta, 0, |b| {
            for i in 1..=5u32 {
                b.stack(i, &[(0, 0x7000 + i as u64)])?;
            }
            Ok(())
        })
        .unwrap();
        w.chunk(ChunkKind::End, 0, |b| {
            b.end(
                20,
                memlens_trace::ExitKind::Exit,
                0,
                &EndCounters::default(),
            )
        })
        .unwrap();
        let p = std::env::temp_dir().join(format!("memlens-summary-{}.trace", std::process::id()));
        std::fs::write(&p, w.finish().unwrap()).unwrap();
        let opts = ReportOptions {
            top: 3,
            ..ReportOptions::default()
        };
        let s = run_summary(&analyse(&p, &opts).unwrap(), &p);
        let want = format!(
            "==memlens== 5 allocations, 1 free, 14.65 KiB allocated\n\
             ==memlens== peak heap: 14.65 KiB at 0.000 ms\n\
             ==memlens== not freed at exit: 13.67 KiB in 4 blocks\n\
             ==memlens==   4.88 KiB in 1 block at 0x7005\n\
             ==memlens==   3.91 KiB in 1 block at 0x7004\n\
             ==memlens==   2.93 KiB in 1 block at 0x7003\n\
             ==memlens==   ... and 1 more site (memlens report shows them)\n\
             ==memlens== most allocations:\n\
             ==memlens==   1 allocation (4.88 KiB) at 0x7005\n\
             ==memlens==   1 allocation (3.91 KiB) at 0x7004\n\
             ==memlens==   1 allocation (2.93 KiB) at 0x7003\n\
             ==memlens== trace: {}\n",
            p.display()
        );
        assert_eq!(s, want);
        std::fs::remove_file(&p).ok();
        let e = analyse(&p, &opts).unwrap_err();
        assert!(e.starts_with("cannot read ") && !e.contains('\n'), "{e}");
    }
}
