//! The report's sections, one row each in [`SECTIONS`]: the name `--sections` takes, the
//! key of the JSON report, where the web page draws it, and the functions that write it as
//! text and as JSON. Each is computed by `memlens_analysis::report` (its type and function
//! in that crate's `report/sections.rs`). How to add one: ARCHITECTURE.md, "Adding a
//! report section".

use super::is_snapshot;
use super::sites::{json_site_with, json_sites, more, site_text, SiteLine};
use crate::leaks::{summary_json, summary_text};
use crate::present::frames::{site_location, text_stack};
use crate::present::ms;
use memlens_analysis::heap_rss::Breakdown;
use memlens_analysis::{Report, Symbolizer};
use memlens_common::units::{
    count, human_bytes, human_bytes_f, human_rate_per_sec, human_time, percent, plural,
};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What a section is written from.
pub(super) struct Ctx<'a> {
    pub r: &'a Report,
    pub sym: &'a mut Symbolizer,
    /// `--top`, for the titles of the hotspot lists (the lists are already cut).
    pub top: usize,
}

/// One section of the report.
pub struct Section {
    /// Its name for `--sections` (text output).
    pub name: &'static str,
    /// Its key in the JSON report (`docs/REPORT_JSON.md`), also the web page's data.
    pub key: &'static str,
    /// Where `memlens html` draws it: the id of its element in `html/page.html` or of the
    /// tab `html/report.js` makes for it.
    pub page: &'static str,
    /// Append its text (a blank line, its title, its lines).
    pub(super) text: fn(&mut Ctx, &mut String),
    /// Its JSON value.
    pub(super) json: fn(&mut Ctx) -> Value,
    /// It tells the run's history (peaks, allocations over time): a heap snapshot has
    /// none, and its text report leaves the section out.
    pub(super) history: bool,
}

const fn row(
    name: &'static str,
    key: &'static str,
    page: &'static str,
    text: fn(&mut Ctx, &mut String),
    json: fn(&mut Ctx) -> Value,
    history: bool,
) -> Section {
    Section {
        name,
        key,
        page,
        text,
        json,
        history,
    }
}

/// Every section, in the order of the text report and of the JSON report's keys.
#[rustfmt::skip]
pub const SECTIONS: [Section; 9] = [
    row("totals", "totals", "summary", totals_text, totals_json, false),
    row("not-freed", "not_freed", "sites-not-freed", not_freed_text, not_freed_json, false),
    row("peak", "peak", "sites-peak", peak_text, peak_json, true),
    row("hotspots", "hotspots", "sites-hotspots", hotspots_text, hotspots_json, true),
    row("temporary", "temporary", "sites-temporary", temporary_text, temporary_json, true),
    row("growth", "growth", "sites-growth", growth_text, growth_json, true),
    row("heap-vs-rss", "heap_vs_rss", "summary", heap_vs_rss_text, heap_vs_rss_json, true),
    row("advice", "advice", "advice", advice_text, advice_json, false),
    row("leaks", "leaks", "leaks", leaks_text, leaks_json, false),
];

/// "the whole run" or "the window" words depend on it.
fn whole(r: &Report) -> bool {
    r.window.is_whole()
}

/// When the last figures were taken: "at exit", or "at the snapshot".
fn at_end(r: &Report) -> &'static str {
    if is_snapshot(r) {
        "at the snapshot"
    } else {
        "at exit"
    }
}

fn totals_text(cx: &mut Ctx, o: &mut String) {
    let t = &cx.r.totals;
    let whole = whole(cx.r);
    let _ = writeln!(o, "\nTotals");
    if is_snapshot(cx.r) {
        let _ = writeln!(
            o,
            "  live at the snapshot  {} in {}\n  (a snapshot is the heap of the running process at one moment: \
             there is no history of allocations and frees, so no peak, temporaries or growth)",
            human_bytes(t.not_freed_bytes),
            plural(t.not_freed_blocks, "block", "blocks")
        );
        return;
    }
    let _ = writeln!(
        o,
        "  allocations        {} ({} through realloc)",
        count(t.allocations),
        count(t.reallocs)
    );
    let _ = writeln!(o, "  frees              {}", count(t.frees));
    if t.untracked_frees > 0 {
        let _ = writeln!(
            o,
            "  untracked frees    {} (of memory allocated before recording started)",
            count(t.untracked_frees)
        );
    }
    let _ = writeln!(
        o,
        "  temporary          {} ({} of allocations)",
        count(t.temporary),
        percent(t.temporary, t.allocations)
    );
    let _ = writeln!(o, "  bytes allocated    {}", human_bytes(t.bytes_allocated));
    let _ = writeln!(
        o,
        "  peak heap          {} at {}",
        human_bytes(t.peak_heap_bytes),
        human_time(t.peak_heap_ns)
    );
    if let (Some(rss), Some(at)) = (t.peak_rss_bytes, t.peak_rss_ns) {
        let _ = writeln!(
            o,
            "  peak RSS           {} at {}",
            human_bytes(rss),
            human_time(at)
        );
    }
    let _ = writeln!(o, "  runtime            {}", human_time(t.runtime_ns));
    if whole {
        let _ = writeln!(
            o,
            "  not freed at exit  {} in {}",
            human_bytes(t.not_freed_bytes),
            plural(t.not_freed_blocks, "block", "blocks")
        );
    } else {
        let _ = writeln!(
            o,
            "  not freed          {} in {} (allocated in the window, live at its end)",
            human_bytes(t.not_freed_bytes),
            plural(t.not_freed_blocks, "block", "blocks")
        );
    }
}

fn not_freed_text(cx: &mut Ctx, o: &mut String) {
    let (r, sym) = (cx.r, &mut *cx.sym);
    let whole = whole(r);
    let nf = &r.not_freed;
    let _ = writeln!(
        o,
        "\n{}: {} in {} from {}",
        if is_snapshot(r) {
            "Live at the snapshot"
        } else if whole {
            "Not freed at exit"
        } else {
            "Not freed by the end of the window"
        },
        human_bytes(nf.bytes),
        plural(nf.blocks, "block", "blocks"),
        plural(nf.site_count as u64, "site", "sites")
    );
    if nf.sites.is_empty() {
        let _ = writeln!(o, "  nothing: every recorded allocation was freed");
    }
    for s in &nf.sites {
        site_text(o, r, sym, s, SiteLine::Live);
    }
    more(o, nf.site_count, nf.sites.len());
}

fn peak_text(cx: &mut Ctx, o: &mut String) {
    let (r, sym) = (cx.r, &mut *cx.sym);
    let p = &r.peak;
    let _ = writeln!(
        o,
        "\nHeap at its peak ({}): {} in {}",
        human_time(p.time_ns),
        human_bytes(p.bytes),
        plural(p.blocks, "block", "blocks")
    );
    for s in &p.sites {
        site_text(o, r, sym, s, SiteLine::Live);
    }
    more(o, p.site_count, p.sites.len());
}

fn hotspots_text(cx: &mut Ctx, o: &mut String) {
    let (r, sym, top) = (cx.r, &mut *cx.sym, cx.top);
    let _ = writeln!(o, "\nTop {top} sites by number of allocations");
    for s in &r.by_allocations {
        site_text(o, r, sym, s, SiteLine::Allocations);
    }
    let _ = writeln!(o, "\nTop {top} sites by bytes allocated");
    for s in &r.by_bytes {
        site_text(o, r, sym, s, SiteLine::Bytes);
    }
}

fn temporary_text(cx: &mut Ctx, o: &mut String) {
    let (r, sym) = (cx.r, &mut *cx.sym);
    let t = &r.totals;
    let tm = &r.temporary;
    if r.header.sample_interval != 0 {
        let _ = writeln!(
            o,
            "\nTemporary allocations: not counted: a sampled run does not see the allocations \
             between two sampled ones, so it cannot tell a block freed before its thread \
             allocated anything else"
        );
        return;
    }
    let _ = writeln!(
        o,
        "\nTemporary allocations: {} of {} ({}), {}; freed before their thread allocated anything else",
        count(tm.count),
        plural(t.allocations, "allocation", "allocations"),
        percent(tm.count, t.allocations),
        human_bytes(tm.bytes)
    );
    if tm.sites.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for ts in &tm.sites {
        let st = &ts.site.stats;
        let _ = writeln!(
            o,
            "  {} temporary of {} ({}) from {}, {}",
            count(st.temporary),
            plural(st.allocations, "allocation", "allocations"),
            percent(st.temporary, st.allocations),
            ts.site.func.name(),
            human_bytes(ts.bytes)
        );
        text_stack(o, &sym.stack(r.stack(ts.site.stack)));
    }
    more(o, tm.site_count, tm.sites.len());
}

fn growth_text(cx: &mut Ctx, o: &mut String) {
    let (r, sym) = (cx.r, &mut *cx.sym);
    let whole = whole(r);
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
        let _ = writeln!(o, "\nGrowth: no site keeps growing ({how})");
    } else {
        let _ = writeln!(
            o,
            "\nGrowth: {} keep{} growing ({how})",
            plural(g.site_count as u64, "site", "sites"),
            if g.site_count == 1 { "s" } else { "" }
        );
    }
    for gs in &g.sites {
        let f = &gs.fit;
        let _ = writeln!(
            o,
            "  {} from {}: floor {} -> {} between {} and {} ({:.0}% of the {})",
            human_rate_per_sec(f.rate),
            gs.site.func.name(),
            human_bytes(f.start_bytes),
            human_bytes(f.max_bytes),
            human_time(f.grew_from_ns),
            human_time(f.grew_to_ns),
            100.0 * f.fraction,
            if whole { "run" } else { "window" },
        );
        let _ = writeln!(
            o,
            "    95% CI {} .. {}, confidence {:.1}%; {} in {} live at the end",
            human_rate_per_sec(f.rate_low),
            human_rate_per_sec(f.rate_high),
            100.0 * f.confidence.min(0.999),
            human_bytes(gs.site.stats.live_bytes),
            plural(gs.site.stats.live_blocks, "block", "blocks"),
        );
        text_stack(o, &sym.stack(r.stack(gs.site.stack)));
    }
    more(o, g.site_count, g.sites.len());
}

fn heap_vs_rss_text(cx: &mut Ctx, o: &mut String) {
    let whole = whole(cx.r);
    match &cx.r.heap_vs_rss {
        None => {
            let _ = writeln!(
                o,
                "\nHeap vs RSS: no RSS sample in the {} (run with --rss-interval above 0)",
                if whole { "trace" } else { "window" }
            );
        }
        Some(h) => {
            let _ = writeln!(
                o,
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
            let _ = write!(o, "  {:<22}", "");
            for (name, _) in &cols {
                let _ = write!(o, "{name:>16}");
            }
            o.push('\n');
            row(o, "time", &|b| human_time(b.time_ns));
            row(o, "RSS", &|b| human_bytes(b.rss));
            row(o, "heap in use", &|b| human_bytes(b.heap_bytes));
            row(o, "allocator overhead", &|b| human_bytes(b.overhead_bytes));
            row(o, "baseline at start", &|b| human_bytes(b.baseline_bytes));
            row(o, "other (kept, not heap)", &|b| {
                human_bytes_f(b.other_bytes as f64)
            });
            let _ = writeln!(
                o,
                "  (memlens's own memory, part of baseline and other: up to {})",
                human_bytes(h.at_peak_rss.recorder_bytes)
            );
            for f in &h.findings {
                let _ = writeln!(o, "  - {f}");
            }
        }
    }
}

fn advice_text(cx: &mut Ctx, o: &mut String) {
    let (r, sym) = (cx.r, &mut *cx.sym);
    let _ = writeln!(o, "\nAdvice");
    if r.advice.is_empty() {
        let _ = writeln!(o, "  nothing stands out");
    }
    for a in &r.advice {
        let at = site_location(&r.metadata, sym, a.site.stack);
        let _ = writeln!(o, "  - {at}: {}", a.message);
    }
}

fn leaks_text(cx: &mut Ctx, o: &mut String) {
    if let Some(l) = cx.r.leaks.as_ref().filter(|l| l.scan.is_some()) {
        let _ = writeln!(
            o,
            "\nLeaks {} (`memlens leaks` shows the loss records and what keeps blocks alive)",
            at_end(cx.r)
        );
        o.push_str(&summary_text(&l.summary, "  "));
    } else if cx.r.leaks.is_some() && cx.r.header.sample_interval != 0 {
        let _ = writeln!(
            o,
            "\nLeaks {}\n  {}.",
            at_end(cx.r),
            crate::present::trace::LEAK_KINDS_UNDER_SAMPLING
        );
    }
}

fn totals_json(cx: &mut Ctx) -> Value {
    let t = &cx.r.totals;
    json!({
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
    })
}

fn not_freed_json(cx: &mut Ctx) -> Value {
    let r = cx.r;
    json!({
        "bytes": r.not_freed.bytes,
        "blocks": r.not_freed.blocks,
        "site_count": r.not_freed.site_count,
        "sites": json_sites(r, cx.sym, &r.not_freed.sites),
    })
}

fn peak_json(cx: &mut Ctx) -> Value {
    let r = cx.r;
    json!({
        "bytes": r.peak.bytes,
        "blocks": r.peak.blocks,
        "time_ms": ms(r.peak.time_ns),
        "site_count": r.peak.site_count,
        "sites": json_sites(r, cx.sym, &r.peak.sites),
    })
}

fn hotspots_json(cx: &mut Ctx) -> Value {
    let r = cx.r;
    json!({
        "site_count": r.site_count,
        "by_allocations": json_sites(r, cx.sym, &r.by_allocations),
        "by_bytes": json_sites(r, cx.sym, &r.by_bytes),
    })
}

/// `a / b`, 0 when `b` is 0.
fn fraction(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn temporary_json(cx: &mut Ctx) -> Value {
    let r = cx.r;
    let tm = &r.temporary;
    let sites: Vec<Value> = tm
        .sites
        .iter()
        .map(|ts| {
            json_site_with(
                r,
                cx.sym,
                &ts.site,
                json!({
                    "temporary_bytes": ts.bytes,
                    "temporary_fraction": fraction(ts.site.stats.temporary, ts.site.stats.allocations),
                }),
            )
        })
        .collect();
    json!({
        "count": tm.count,
        "bytes": tm.bytes,
        "fraction": fraction(tm.count, r.totals.allocations),
        "site_count": tm.site_count,
        "sites": sites,
    })
}

fn growth_json(cx: &mut Ctx) -> Value {
    let r = cx.r;
    let g = &r.growth;
    let sites: Vec<Value> = g
        .sites
        .iter()
        .map(|gs| {
            let f = &gs.fit;
            json_site_with(
                r,
                cx.sym,
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
    json!({
        "from_ms": ms(g.from_ns),
        "to_ms": ms(g.from_ns + g.span_ns),
        "intervals": g.intervals,
        "interval_ms": ms(g.interval_ns),
        "sites_judged": g.sites_judged,
        "site_count": g.site_count,
        "sites": sites,
    })
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

fn heap_vs_rss_json(cx: &mut Ctx) -> Value {
    json!(cx.r.heap_vs_rss.as_ref().map(|h| {
        json!({
            "peak_heap_bytes": h.peak_heap_bytes,
            "at_peak_rss": json_breakdown(&h.at_peak_rss),
            "at_peak_heap": h.at_peak_heap.as_ref().map(json_breakdown),
            "at_end": json_breakdown(&h.at_end),
            "findings": h.findings,
        })
    }))
}

fn advice_json(cx: &mut Ctx) -> Value {
    let r = cx.r;
    let advice: Vec<Value> = r
        .advice
        .iter()
        .map(|a| {
            let at = site_location(&r.metadata, cx.sym, a.site.stack);
            json_site_with(
                r,
                cx.sym,
                &a.site,
                json!({"kind": a.kind.key(), "at": at, "message": a.message}),
            )
        })
        .collect();
    Value::Array(advice)
}

fn leaks_json(cx: &mut Ctx) -> Value {
    json!(cx
        .r
        .leaks
        .as_ref()
        .filter(|l| l.scan.is_some())
        .map(|l| summary_json(&l.summary)))
}
