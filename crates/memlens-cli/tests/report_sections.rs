//! `memlens report`'s sections, windows and `memlens plot`, on the programs in
//! `tests/programs/` whose numbers are known exactly (see the comment at the top of each).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn memlens_cmd(args: &[&str], trace: &Path) -> Output {
    Command::new(memlens())
        .args(args)
        .arg(trace)
        .output()
        .unwrap()
}

fn report_json(args: &[&str], trace: &Path) -> Value {
    let mut all = vec!["report", "--format", "json", "--top", "1000"];
    all.extend_from_slice(args);
    let o = memlens_cmd(&all, trace);
    assert!(
        o.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn function(site: &Value) -> &str {
    site["stack"][0]["function"].as_str().unwrap_or("")
}

/// (function, key) of each site of a list.
fn list(v: &Value, key: &str) -> Vec<(String, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| (function(s).to_string(), s[key].as_u64().unwrap()))
        .collect()
}

/// One recorded run of report_patterns, shared by the tests (RSS every millisecond).
fn patterns_trace() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let exe = build_c("report_patterns.c", "report_patterns");
        let r = run_with(&["--rss-interval", "1"], &exe, &[]);
        assert!(r.output.status.success(), "{}", r.stderr());
        r.only_trace()
    })
}

#[test]
fn totals_hotspots_and_temporary_are_exact() {
    let v = report_json(&[], patterns_trace());
    let t = &v["totals"];
    assert_eq!(t["allocations"], 5000);
    // 1000 temporaries, 999 blocks moved or resized by realloc, 1000 wave blocks.
    assert_eq!(t["frees"], 2999);
    assert_eq!(t["reallocs"], 1000);
    assert_eq!(t["temporary"], 1000);
    // 48,000 + 16 * (1 + ... + 1000) + 2000 * 1024 + 1000 * 2048
    assert_eq!(
        t["bytes_allocated"],
        48_000 + 8_008_000 + 2_048_000 + 2_048_000
    );
    assert_eq!(t["peak_heap_bytes"], 2_321_024);
    assert_eq!(
        (
            t["not_freed_bytes"].as_u64(),
            t["not_freed_blocks"].as_u64()
        ),
        (Some(2_064_000), Some(2001))
    );
    assert!(t["peak_rss_bytes"].as_u64().unwrap() > 2_321_024);
    assert!(t["peak_rss_time_ms"].as_f64().unwrap() <= t["runtime_ms"].as_f64().unwrap());

    // The peak: the top of the last wave, after cache_add of iteration 1750.
    assert_eq!(
        list(&v["peak"]["sites"], "live_bytes"),
        vec![
            ("cache_add".into(), 1751 * 1024),
            ("wave_up".into(), 250 * 2048),
            ("grow_by_realloc".into(), 16_000)
        ]
    );
    assert_eq!(
        list(&v["hotspots"]["by_allocations"], "allocations"),
        vec![
            ("cache_add".into(), 2000),
            ("grow_by_realloc".into(), 1000),
            ("wave_up".into(), 1000),
            ("make_temporaries".into(), 1000)
        ]
    );
    assert_eq!(
        list(&v["hotspots"]["by_bytes"], "bytes_allocated"),
        vec![
            ("grow_by_realloc".into(), 8_008_000),
            ("cache_add".into(), 2_048_000),
            ("wave_up".into(), 2_048_000),
            ("make_temporaries".into(), 48_000)
        ]
    );
    let tm = &v["temporary"];
    assert_eq!(
        (tm["count"].as_u64(), tm["bytes"].as_u64()),
        (Some(1000), Some(48_000))
    );
    assert_eq!(
        list(&tm["sites"], "temporary"),
        vec![("make_temporaries".into(), 1000)]
    );
    assert_eq!(tm["sites"][0]["temporary_fraction"], 1.0);
    let f = &tm["sites"][0]["stack"][0];
    assert_eq!(
        f["line"],
        line_of("report_patterns.c", "char *p = malloc(48);")
    );
    assert!(f["file"].as_str().unwrap().ends_with("report_patterns.c"));
    assert_eq!(f["module"], "report_patterns");
    // Every site entry carries its stack.
    for key in ["peak", "not_freed"] {
        for s in v[key]["sites"].as_array().unwrap() {
            assert!(!s["stack"].as_array().unwrap().is_empty());
        }
    }
}

#[test]
fn growth_flags_the_cache_and_not_the_waves() {
    let v = report_json(&[], patterns_trace());
    let g = &v["growth"];
    assert_eq!(g["intervals"], 64);
    let sites = g["sites"].as_array().unwrap();
    assert_eq!(
        sites.iter().map(function).collect::<Vec<_>>(),
        vec!["cache_add"],
        "{g:#}"
    );
    let c = &sites[0];
    assert_eq!(
        (c["live_bytes"].as_u64(), c["live_blocks"].as_u64()),
        (Some(2_048_000), Some(2000))
    );
    assert!(c["rate_bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(c["rate_low_bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(c["confidence"].as_f64().unwrap() > 0.99);
    // The cache grows from the start of its loop to the end of the program's allocations.
    let frac = c["grew_over_fraction"].as_f64().unwrap();
    assert!(frac > 0.3 && frac <= 1.0, "{frac}");
    assert!(c["growth_bytes"].as_u64().unwrap() >= 64 << 10);
    // Sorting by another key keeps the same single site.
    let v2 = report_json(&["--sort", "growth=confidence"], patterns_trace());
    assert_eq!(v2["growth"]["site_count"], 1);
}

/// A table built at start-up, then 300 ms of running on without a heap event: the growth
/// window ends where the program did (its last RSS sample, at exit), not at its last
/// allocation, so the table is a site that stayed level, not one that "keeps growing"
/// (it was, at +300 MiB/s "over 66% of the run", with advice to bound it).
#[test]
fn a_table_built_at_start_up_is_not_growth() {
    let exe = build_c("grow_then_idle.c", "grow_then_idle");
    let r = run(&exe, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let v = report_json(&[], &r.only_trace());
    assert_eq!(v["totals"]["allocations"], 2000, "{}", v["totals"]);
    assert_eq!(v["growth"]["site_count"], 0, "{:#}", v["growth"]);
    assert!(
        v["advice"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] != "growth"),
        "{:#}",
        v["advice"]
    );
}

#[test]
fn advice_points_at_the_sites() {
    let v = report_json(&[], patterns_trace());
    let adv: Vec<(String, String)> = v["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                function(a).to_string(),
            )
        })
        .collect();
    assert_eq!(
        adv,
        vec![
            ("growth".to_string(), "cache_add".to_string()),
            ("temporary".into(), "make_temporaries".into()),
            ("realloc_chain".into(), "grow_by_realloc".into())
        ]
    );
    let a = &v["advice"];
    assert!(a[0]["at"]
        .as_str()
        .unwrap()
        .starts_with("cache_add (report_patterns.c:"));
    assert!(a[0]["message"].as_str().unwrap().contains("bound it"));
    assert!(a[1]["message"]
        .as_str()
        .unwrap()
        .starts_with("1000 of its 1000 allocations (100%) are temporary"));
    assert!(a[2]["message"]
        .as_str()
        .unwrap()
        .starts_with("999 reallocs grew blocks here ("));
    assert!(a[2]["message"]
        .as_str()
        .unwrap()
        .contains("reserve the final size up front"));

    // The text report: one line per advice, the site first.
    let o = memlens_cmd(&["report", "--sections", "advice"], patterns_trace());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("\nAdvice\n  - cache_add (report_patterns.c:"),
        "{text}"
    );
    assert!(
        text.contains("\n  - grow_by_realloc (report_patterns.c:"),
        "{text}"
    );
    assert!(
        !text.contains("Totals"),
        "--sections advice prints only that: {text}"
    );
}

/// "At the end" pairs the recorder's last RSS sample, taken at exit, with the heap after
/// the program's last free (it once paired the sampler's last tick with the heap of that
/// moment, which varied from run to run).
#[test]
fn heap_vs_rss_and_leaks_sections() {
    let v = report_json(&[], patterns_trace());
    let h = &v["heap_vs_rss"];
    let p = &h["at_peak_rss"];
    let rss = p["rss_bytes"].as_u64().unwrap();
    let parts = p["heap_bytes"].as_u64().unwrap()
        + p["overhead_bytes"].as_u64().unwrap()
        + p["baseline_bytes"].as_u64().unwrap();
    assert_eq!(
        rss as i64 - parts as i64,
        p["other_bytes"].as_i64().unwrap()
    );
    assert_eq!(rss, v["totals"]["peak_rss_bytes"].as_u64().unwrap());
    assert!(h["at_end"]["time_ms"].as_f64().unwrap() >= p["time_ms"].as_f64().unwrap());
    // 2001 live blocks of 1024 and 16000 bytes: 16 bytes of glibc overhead each, at exit.
    let e = &h["at_end"];
    assert_eq!(e["heap_bytes"], 2_064_000);
    assert_eq!(e["overhead_bytes"], 2000 * 16 + 16);
    assert!(!h["findings"].as_array().unwrap().is_empty());

    // The LEAK SUMMARY, the same as `memlens leaks` gives.
    let o = memlens_cmd(&["leaks", "--format", "json"], patterns_trace());
    let leaks: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["leaks"], leaks["summary"]);
    assert_eq!(v["leaks"]["still_reachable"]["bytes"], 2_064_000);
    assert_eq!(v["leaks"]["still_reachable"]["blocks"], 2001);
}

#[test]
fn from_and_to_give_each_phase_its_sites() {
    let exe = build_c("report_phases.c", "report_phases");
    let r = run(&exe, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let trace = r.only_trace();
    let whole = report_json(&[], &trace);
    assert_eq!(whole["totals"]["peak_heap_bytes"], 1 << 20);
    let peak_ns = (whole["totals"]["peak_heap_time_ms"].as_f64().unwrap() * 1e6).round() as u64;
    let at = format!("{peak_ns}ns");
    let names =
        |v: &Value| -> Vec<(String, u64)> { list(&v["hotspots"]["by_allocations"], "allocations") };

    let first = report_json(&["--to", &at], &trace);
    assert_eq!(
        names(&first),
        vec![("phase_one".into(), 500), ("marker".into(), 1)]
    );
    assert_eq!(first["totals"]["allocations"], 501);
    assert_eq!(first["window"]["whole_run"], false);
    assert!(
        first["leaks"].is_null(),
        "the leak check needs the end of the run"
    );

    let second = report_json(&["--from", &at], &trace);
    assert_eq!(
        names(&second),
        vec![("phase_two".into(), 300), ("marker".into(), 1)]
    );
    // The marker, allocated at the window's first moment, is its peak.
    assert_eq!(second["totals"]["peak_heap_bytes"], 1 << 20);
    assert_eq!(
        list(&second["peak"]["sites"], "live_bytes"),
        vec![("marker".into(), 1 << 20)]
    );
    assert!(!second["leaks"].is_null());

    // The text report says which window it shows.
    let o = memlens_cmd(&["report", "--from", &at], &trace);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("\n  window     "), "{text}");
    assert!(
        text.contains("Not freed by the end of the window"),
        "{text}"
    );
}

/// Tags balance and every attribute is quoted: enough to know a browser will read it.
fn check_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..j];
        assert!(!tag.contains('<'), "{tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap());
        }
        assert_eq!(tag.matches('"').count() % 2, 0, "{tag}");
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

#[test]
fn plot_writes_an_svg_with_the_series() {
    let dir = scratch("plot");
    let out = dir.join("timeline.svg");
    let o = Command::new(memlens())
        .args(["plot", "--sites", "3", "-o"])
        .arg(&out)
        .arg(patterns_trace())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("memlens: wrote {}\n", out.display())
    );
    let svg = std::fs::read_to_string(&out).unwrap();
    check_well_formed(&svg);
    for id in ["heap", "rss", "site-1", "site-2", "site-3"] {
        assert!(
            svg.contains(&format!("data-series=\"{id}\"")),
            "no {id} series"
        );
    }
    assert!(!svg.contains("data-series=\"site-4\""));
    // The top site by its own peak is the cache; the heap's peak is in the subtitle.
    let site1 = svg.find("data-series=\"site-1\"").unwrap();
    assert!(svg[site1..].contains("<title>cache_add (report_patterns.c:"));
    assert!(svg.contains("peak heap 2.21 MiB"));
    // A window.
    let o = Command::new(memlens())
        .args(["plot", "--from", "50%", "-o"])
        .arg(dir.join("half.svg"))
        .arg(patterns_trace())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_well_formed(&std::fs::read_to_string(dir.join("half.svg")).unwrap());
    // The same chart as PNG, at the SVG's size (1000 px wide).
    let png = dir.join("timeline.png");
    let o = Command::new(memlens())
        .args(["plot", "--sites", "3", "-o"])
        .arg(&png)
        .arg(patterns_trace())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1000);
    assert!(
        png.len() > 10_000,
        "a chart, not an empty image: {} bytes",
        png.len()
    );
}

fn assert_one_line_error(o: &Output, contains: &str) {
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("memlens: error: "), "{err}");
    assert!(err.contains(contains), "{err} should contain {contains}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_windows_sorts_and_missing_traces_are_one_sentence() {
    let t = patterns_trace();
    for (args, msg) in [
        (
            &["--from", "abc"][..],
            "--from: `abc` is not a time in the run",
        ),
        (
            &["--to", "1.5"],
            "--to: `1.5` has no unit (write 1.5s, 1.5ms or 1.5%)",
        ),
        (
            &["--from", "150%"],
            "is not a percentage of the run (0% to 100%)",
        ),
        (
            &["--from", "1h"],
            "--from 1h 00m is at or after the end of the run",
        ),
        (&["--from", "60%", "--to", "40%"], "is not before --to"),
        (
            &["--sort", "temporary=size"],
            "temporary can be sorted by count, bytes or fraction",
        ),
        (&["--sort", "leaks=bytes"], "no list `leaks` to sort"),
        (&["--sections", "totals,graphs"], "unknown section `graphs`"),
    ] {
        let mut a = vec!["report"];
        a.extend_from_slice(args);
        assert_one_line_error(&memlens_cmd(&a, t), msg);
        if !args[0].starts_with("--s") {
            a[0] = "plot";
            assert_one_line_error(&memlens_cmd(&a, t), msg);
        }
    }
    let missing = Path::new("/nonexistent/memlens.trace");
    for cmd in ["report", "plot"] {
        assert_one_line_error(
            &memlens_cmd(&[cmd], missing),
            "cannot read /nonexistent/memlens.trace",
        );
    }
    let o = Command::new(memlens())
        .args(["plot", "-o", "chart.jpg"])
        .arg(t)
        .output()
        .unwrap();
    assert_one_line_error(&o, "-o chart.jpg: the chart is written as .svg or .png");
}
