//! `memlens html`: the report of a trace as one self-contained web page: summary,
//! timeline, flame graph with a metric switcher, sortable site tables with their stacks,
//! leak records and advice.
//!
//! The page is a template (`html/page.html`) with its stylesheet (`html/style.css`) and
//! script (`html/report.js`) inlined, and one JSON block of data that the script renders.
//! Nothing is fetched: no URL, no font, no library. The data is built by the same code as
//! the other commands' output: `report` holds `memlens report --format json`'s object,
//! `leaks` `memlens leaks --format json`'s, `timeline` the series of `memlens plot`, and
//! `flame` the folded stacks of `memlens flamegraph` for every metric of the profile
//! table; `sections` is the report's section table (name, JSON key, the element the
//! script draws it in). The analysis is one pass for the report (with the leak check)
//! and one for the timeline, which follows the sites the report found.

use crate::leaks::{parse_yes_no, GenSuppressions, KindSet, LeakOptions, LeakResolution, LeakView};
use crate::present::frames::{is_system_module, site_labels};
use crate::present::progress::Bar;
use crate::present::{ms, window_spec};
use crate::profile::folded_stack;
use crate::report::{json_report, SECTIONS};
use memlens_analysis::leaks::Resolution;
use memlens_analysis::profile::{SiteProfile, METRICS};
use memlens_analysis::replay::SiteKey;
use memlens_analysis::timeline::{Timeline, TimelineOptions};
use memlens_analysis::{Metric, Profile, Report, ReportOptions, SortOptions, Symbolizer};
use memlens_trace::reader::TraceReader;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PAGE: &str = include_str!("html/page.html");
const STYLE: &str = include_str!("html/style.css");
const SCRIPT: &str = include_str!("html/report.js");

/// `memlens html --help`: the description before the options.
pub const LONG_ABOUT: &str = "Write the report of a trace as one self-contained HTML file \
to open in a browser: the summary (totals, peak, heap vs RSS, advice), the timeline of heap, \
RSS and the top sites, a flame graph of any metric (allocations, bytes allocated, live at the \
peak, not freed, each leak kind...; click to zoom, search), sortable tables of the peak, \
not-freed, hottest, temporary and growing sites and of the leak records, each row opening \
its stack.\n\n\
The file needs no network and no other file: style, script and data are inside it.";

#[derive(clap::Args)]
#[command(
    after_help = "Times for --from/--to: 1.5s, 200ms, 250us, 1m30s, or a percentage \
of the run: 50%. The leak records (and the leak metrics of the flame graph) need the exit \
scan, which `memlens run` does unless --leak-check=no, and a window that reaches the end of \
the run.\n\n\
Examples:\n  memlens html memlens.myprog.4242.trace -o report.html\n  \
memlens html --from 50% --top 100 memlens.myprog.4242.trace -o second-half.html\n  \
memlens html --suppressions=myprog.supp memlens.myprog.4242.trace -o report.html"
)]
pub struct HtmlArgs {
    /// The trace file to read.
    pub trace: PathBuf,
    /// The HTML file to write (`-`: stdout). Default: the trace's file name with .html
    /// added, in the current directory.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows in each table: sites of each list, growing sites, advice, leak records.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = crate::present::parse_top)]
    pub top: usize,
    /// Stacks kept per flame graph metric, the largest; the others are added together
    /// into one box, so the file stays small for programs with many sites.
    #[arg(long, default_value_t = 2000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub flame_stacks: u32,
    /// Time buckets of the timeline.
    #[arg(long, default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub buckets: u32,
    /// Sites followed in the timeline besides heap and RSS: the largest at the heap's
    /// peak, then the fastest growing.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub sites: usize,
    /// Report on the run from TIME on (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Report on the run up to TIME (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Hide the leak records a suppression of FILE matches (Valgrind or LeakSanitizer
    /// format, as for `memlens leaks`). Repeatable.
    #[arg(long = "suppressions", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Also apply memlens's built-in suppressions of glibc / ld.so / libstdc++ internals.
    #[arg(long, value_name = "yes|no", default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub default_suppressions: bool,
}

pub fn main(args: HtmlArgs) -> ExitCode {
    let out = output_path(&args);
    match write_page(&args, &out) {
        Ok(()) => {
            if out != Path::new("-") {
                crate::say!("memlens: wrote {}", out.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => crate::fail(e),
    }
}

fn output_path(args: &HtmlArgs) -> PathBuf {
    crate::present::output::output_or_default(args.output.as_ref(), &args.trace, "html")
}

/// Analyse, build the page, write it. The output file is created first, so that an
/// unwritable destination is said before a long analysis, and removed if the analysis
/// fails.
fn write_page(args: &HtmlArgs, out: &Path) -> Result<(), String> {
    let opts = LeakOptions {
        show_leak_kinds: KindSet([true; 4]),
        errors_for_leak_kinds: KindSet([true, false, true, false]),
        leak_resolution: LeakResolution::High,
        suppressions: args.suppressions.clone(),
        default_suppressions: args.default_suppressions,
        gen_suppressions: GenSuppressions::No,
    };
    let sup = opts.load_suppressions()?;
    let window = window_spec(args.from.as_deref(), args.to.as_deref())?;
    let reader = TraceReader::open(&args.trace).map_err(|e| e.to_string())?;
    if out == Path::new("-") {
        let page = build(args, &reader, window, &opts, &sup)?;
        return crate::write_stdout(page.as_bytes());
    }
    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let page = build(args, &reader, window, &opts, &sup);
    let page = match page {
        Ok(p) => p,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    use std::io::Write as _;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(page.as_bytes())
        .and_then(|()| w.flush())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}

fn build(
    args: &HtmlArgs,
    reader: &TraceReader,
    window: memlens_analysis::WindowSpec,
    leak_opts: &LeakOptions,
    sup: &memlens_analysis::suppressions::Suppressions,
) -> Result<String, String> {
    let mut bar = Bar::new(reader, &["reading events", "following sites over time"]);
    let mut progress = |p| {
        if let Some(b) = bar.as_mut() {
            b.update(p)
        }
    };
    // Pass 1: the report, every site kept (the flame graph needs them all), with the leak
    // check and the heap errors.
    let mut report = Report::build_with_progress(
        reader,
        &ReportOptions {
            top: usize::MAX,
            window,
            leaks: Some(Resolution::High),
            heap_errors: true,
            sort: SortOptions::default(),
        },
        &mut progress,
    )
    .map_err(|e| e.to_string())?;
    // Pass 2: the timeline of the sites the report points at.
    let follow = timeline_sites(&report, args.sites);
    let timeline = Timeline::build(
        reader,
        &TimelineOptions {
            buckets: args.buckets as usize,
            sites: follow.len(),
            follow: Some(follow),
            window,
        },
        &mut progress,
    )
    .map_err(|e| e.to_string())?;
    drop(bar);

    // Suppressions mark the loss records and recompute the summary, which the report's
    // `leaks` key then shows too.
    let leaks = report.leaks.take().map(|l| {
        let mut view = LeakView::new(l, report.metadata.clone(), leak_opts, sup);
        view.main_tid = reader.header().pid;
        report.leaks = Some(view.report.clone());
        let records = &mut view.report.records;
        let record_count = records.iter().filter(|r| r.suppressed_by.is_none()).count();
        records.retain(|r| r.suppressed_by.is_none());
        records.sort_by(|a, b| {
            b.total_bytes()
                .cmp(&a.total_bytes())
                .then(b.blocks.cmp(&a.blocks))
        });
        records.truncate(args.top);
        let mut v = view.json();
        if let Some(o) = v.as_object_mut() {
            o.insert("record_count".into(), json!(record_count));
        }
        v
    });
    let leak_check = report.leaks.as_ref().is_some_and(|l| l.scan.is_some());
    let sites = Profile::site_values(&report, report.leaks.as_ref());

    let mut sym = Symbolizer::for_trace(&report.metadata);
    sym.prefetch(memlens_analysis::profile::site_frames(
        &report.metadata,
        &sites,
    ));
    let flame = flame_json(
        &report,
        &sites,
        leak_check,
        args.flame_stacks as usize,
        &mut sym,
    );
    let timeline = timeline_json(&report, &timeline, &mut sym);
    cut(&mut report, args.top);
    // Last, so that its warnings include every symbolization's.
    let report_json = json_report(&report, &mut sym);
    let system_modules: Vec<&str> = report
        .metadata
        .modules
        .values()
        .filter(|m| is_system_module(&m.path))
        .map(|m| m.short_name())
        .collect();
    let data = json!({
        "memlens_version": env!("CARGO_PKG_VERSION"),
        "top": args.top,
        "report": report_json,
        "leaks": leaks,
        "timeline": timeline,
        "flame": flame,
        "system_modules": system_modules,
        "sections": SECTIONS
            .iter()
            .map(|s| json!({"name": s.name, "key": s.key, "page": s.page}))
            .collect::<Vec<_>>(),
    });
    let h = &report.header;
    let title = format!(
        "memlens report: {} (pid {})",
        if h.exe.is_empty() { "?" } else { &h.exe },
        h.pid
    );
    Ok(page(&title, &data))
}

/// The sites the timeline follows: the largest at the heap's peak, then growing ones.
fn timeline_sites(r: &Report, n: usize) -> Vec<SiteKey> {
    let mut keys: Vec<SiteKey> = Vec::new();
    let key = |s: &memlens_analysis::Site| SiteKey {
        stack: s.stack,
        func: s.func,
    };
    let growing = r.growth.sites.iter().take(n / 3).map(|g| key(&g.site));
    let peak = r
        .peak
        .sites
        .iter()
        .filter(|s| s.stats.live_bytes > 0)
        .map(key);
    for k in peak.take(n.saturating_sub(growing.len())).chain(growing) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // Fill up with more peak sites if growing ones were already there.
    for s in &r.peak.sites {
        if keys.len() >= n {
            break;
        }
        if s.stats.live_bytes > 0 && !keys.contains(&key(s)) {
            keys.push(key(s));
        }
    }
    keys
}

/// Cut every list of the report to `top` entries, as `ReportOptions::top` does (the
/// lists are sorted; the counts before the cut are kept).
fn cut(r: &mut Report, top: usize) {
    r.peak.sites.truncate(top);
    r.not_freed.sites.truncate(top);
    r.by_allocations.truncate(top);
    r.by_bytes.truncate(top);
    r.temporary.sites.truncate(top);
    r.growth.sites.truncate(top);
    r.advice.truncate(top);
}

fn timeline_json(r: &Report, tl: &Timeline, sym: &mut Symbolizer) -> Value {
    let stacks: Vec<u32> = tl.sites.iter().map(|s| s.site.stack).collect();
    let labels = site_labels(&r.metadata, sym, &stacks);
    let sites: Vec<Value> = tl
        .sites
        .iter()
        .zip(labels)
        .map(|(s, at)| {
            json!({
                "at": at,
                "allocator": s.site.func.name(),
                "peak_bytes": s.peak_bytes,
                "values": s.values,
            })
        })
        .collect();
    json!({
        "from_ms": ms(tl.window.from_ns),
        "to_ms": ms(tl.window.to_ns),
        "times_ms": tl.times_ns.iter().map(|&t| ms(t)).collect::<Vec<f64>>(),
        "heap": tl.heap,
        "rss": tl.rss,
        "sites": sites,
    })
}

/// Folded stacks of every metric, for the page's flame graph: `frames` (names), `stacks`
/// (frame indices, root first, the allocating function last) shared by the metrics, and
/// per metric its `[stack, value]` pairs, the largest `max_stacks` of them; the rest are
/// added together as one stack named `[N smaller stacks]`.
fn flame_json(
    r: &Report,
    sites: &[SiteProfile],
    leak_check: bool,
    max_stacks: usize,
    sym: &mut Symbolizer,
) -> Value {
    // Folded stack of each site, interned.
    let mut folded_ids: HashMap<String, usize> = HashMap::new();
    let mut folded_list: Vec<String> = Vec::new();
    let mut site_stack: Vec<usize> = Vec::with_capacity(sites.len());
    for s in sites {
        let frames = sym.stack(r.stack(s.stack));
        let f = folded_stack(&frames, s.func, |f| f.function.clone());
        let id = *folded_ids.entry(f.clone()).or_insert_with(|| {
            folded_list.push(f);
            folded_list.len() - 1
        });
        site_stack.push(id);
    }
    let mut frame_ids: HashMap<String, usize> = HashMap::new();
    let mut frames: Vec<String> = Vec::new();
    let mut stack_ids: HashMap<usize, usize> = HashMap::new();
    let mut stacks: Vec<Vec<usize>> = Vec::new();
    let mut intern_stack = |folded: &str| -> usize {
        let mut v = Vec::new();
        for name in folded.split(';') {
            let id = *frame_ids.entry(name.to_string()).or_insert_with(|| {
                frames.push(name.to_string());
                frames.len() - 1
            });
            v.push(id);
        }
        stacks.push(v);
        stacks.len() - 1
    };
    let mut metrics = Vec::new();
    for info in METRICS.iter() {
        let known = info.source != memlens_analysis::profile::Source::LeakCheck || leak_check;
        let m: Metric = info.metric;
        let mut acc: HashMap<usize, u64> = HashMap::new();
        for (s, &id) in sites.iter().zip(&site_stack) {
            if s.values[m] > 0 {
                *acc.entry(id).or_default() += s.values[m];
            }
        }
        let mut pairs: Vec<(usize, u64)> = acc.into_iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(folded_list[a.0].cmp(&folded_list[b.0])));
        let total: u64 = pairs.iter().map(|p| p.1).sum();
        let rest: Vec<(usize, u64)> = pairs.split_off(pairs.len().min(max_stacks));
        let mut out: Vec<Value> = Vec::with_capacity(pairs.len() + 1);
        for (f, v) in pairs {
            let id = match stack_ids.get(&f) {
                Some(&id) => id,
                None => {
                    let id = intern_stack(&folded_list[f]);
                    stack_ids.insert(f, id);
                    id
                }
            };
            out.push(json!([id, v]));
        }
        if !rest.is_empty() {
            let id = intern_stack(&format!("[{} smaller stacks]", rest.len()));
            out.push(json!([id, rest.iter().map(|p| p.1).sum::<u64>()]));
        }
        metrics.push(json!({
            "name": info.name,
            "key": info.key,
            "unit": info.unit.name(),
            "title": info.title,
            "known": known,
            "total": total,
            "merged_stacks": rest.len(),
            "stacks": out,
        }));
    }
    json!({
        "frames": frames,
        "stacks": stacks,
        "metrics": metrics,
    })
}

/// The page: the template with its style, script and data inlined.
fn page(title: &str, data: &Value) -> String {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    // Inside <script>, "</script" or "<!--" would end or confuse the block: no `<` at all
    // (JSON has `<` only inside strings, where \u003c means the same).
    let json = json.replace('<', "\\u003c");
    let mut out = String::with_capacity(PAGE.len() + STYLE.len() + SCRIPT.len() + json.len());
    let mut rest = PAGE;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        match &after[..j] {
            "TITLE" => out.push_str(&html_escape(title)),
            "STYLE" => out.push_str(STYLE),
            "SCRIPT" => out.push_str(SCRIPT),
            "DATA" => out.push_str(&json),
            other => {
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_its_script_block() {
        let p = page(
            "a<b",
            &json!({"f": "</script><script>alert(1)</script><!--"}),
        );
        let start = p.find("id=\"memlens-data\"").unwrap();
        let block = &p[start..];
        let end = block.find("</script>").unwrap();
        assert!(!block[..end].contains("</"), "{}", &block[..end]);
        assert!(block[..end].contains("\\u003c/script>"));
        assert!(p.contains("<title>a&lt;b</title>"));
        assert!(!p.contains("{{"), "a placeholder was left");
    }
}
