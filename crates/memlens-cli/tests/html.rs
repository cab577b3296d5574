//! `memlens html`: the page is self-contained (no URL, no external script or style, no
//! request), and headless Chromium renders it without an error, showing the sites of
//! `tests/programs/html_report.c` in the tables, leak records and flame graph that the
//! page's script draws. Needs Chromium (`apt-get install chromium`; `.ci/run` installs it).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One recorded run of html_report and its page, shared by the tests.
fn page() -> &'static (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let exe = build_c("html_report.c", "html_report");
        let r = run_with(&["--rss-interval", "2", "-q"], &exe, &[]);
        assert!(r.output.status.success(), "{}", r.stderr());
        let trace = r.only_trace();
        let html = r.dir.join("report.html");
        let o = Command::new(memlens())
            .arg("html")
            .arg(&trace)
            .arg("-o")
            .arg(&html)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "memlens html failed: {stderr}");
        assert!(stderr.contains("wrote"), "{stderr}");
        (trace, html)
    })
}

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "Chromium is not installed, and this test opens the HTML report in it: \
             install it (Debian/Ubuntu: `sudo apt-get install -y chromium`; .ci/run does)"
        )
    })
}

/// What headless Chromium made of a page: the DOM after its scripts ran, and its log.
struct Rendered {
    dom: String,
    stderr: String,
}

fn render(html: &Path) -> Rendered {
    let profile = scratch("chromium-profile");
    let url = format!("file://{}", html.canonicalize().unwrap().display());
    let o = Command::new("timeout")
        .args(["-k", "10", "180"])
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .output()
        .expect("cannot run timeout/chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let r = Rendered {
        dom: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        o.status.success() && r.dom.contains("</html>"),
        "chromium failed ({}) on {url}:\n{}",
        o.status,
        r.stderr
    );
    r
}

/// Everything wrong with a rendered page: no "rendered" marker set by the page's script,
/// errors that its error handler wrote into the page, console messages in Chromium's log
/// (the page logs nothing, so any is an error: an uncaught exception is logged as
/// `INFO:CONSOLE:N] "Uncaught TypeError: ...", source: file:///... (N)`).
fn problems(r: &Rendered) -> Vec<String> {
    let mut p = Vec::new();
    if !r.dom.contains(r#"data-rendered="ok""#) {
        p.push("the page's script did not finish drawing (no data-rendered=\"ok\")".into());
    }
    if r.dom.contains("data-errors=") || r.dom.contains(r#"class="js-error""#) {
        let start = r.dom.find(r#"id="js-errors""#).unwrap_or(0);
        let shown: String = r.dom[start..].chars().take(600).collect();
        p.push(format!("the page recorded errors: {shown}"));
    }
    for line in r.stderr.lines() {
        if line.contains("CONSOLE") || line.contains("Uncaught") {
            p.push(format!("console: {line}"));
        }
    }
    p
}

/// The part of the DOM from the element with `id` to the next `<section`: what the
/// script drew there (the JSON data block is after the last section).
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let end = rest[1..].find("<section").map_or(rest.len(), |i| i + 1);
    let end = end.min(rest.find("id=\"memlens-data\"").unwrap_or(rest.len()));
    &rest[..end]
}

#[test]
fn page_is_self_contained() {
    let (_, html) = page();
    let text = std::fs::read_to_string(html).unwrap();
    let lower = text.to_lowercase();
    // The only URLs allowed are XML namespace names, which are never fetched.
    for scheme in ["http://", "https://"] {
        for (i, _) in lower.match_indices(scheme) {
            let url: String = lower[i..].chars().take(40).collect();
            assert!(
                url.starts_with("http://www.w3.org/"),
                "the page refers to {url}..."
            );
        }
    }
    for bad in [
        "<script src",
        "<link ",
        "<iframe",
        "<img ",
        "@import",
        "url(",
        "fetch(",
        "xmlhttprequest",
        "websocket",
        "eventsource",
        "sendbeacon",
        "//cdn",
    ] {
        assert!(!lower.contains(bad), "the page contains `{bad}`");
    }
    // The data block is parseable JSON and holds the report's schema.
    let start = text.find(r#"id="memlens-data">"#).unwrap() + r#"id="memlens-data">"#.len();
    let end = start + text[start..].find("</script>").unwrap();
    let data: serde_json::Value = serde_json::from_str(&text[start..end]).unwrap();
    for key in [
        "totals",
        "peak",
        "hotspots",
        "temporary",
        "growth",
        "heap_vs_rss",
        "advice",
        "leaks",
    ] {
        assert!(data["report"].get(key).is_some(), "no report.{key}");
    }
    assert!(data["leaks"]["records"].as_array().unwrap().len() >= 2);
    assert!(data["flame"]["metrics"].as_array().unwrap().len() >= 10);
    assert!(!data["timeline"]["heap"].as_array().unwrap().is_empty());
}

#[test]
fn chromium_renders_the_sites_without_errors() {
    let (_, html) = page();
    let r = render(html);
    let p = problems(&r);
    assert!(p.is_empty(), "{}", p.join("\n"));
    let dom = &r.dom;

    let summary = section(dom, "summary");
    assert!(summary.contains("Peak heap"), "{summary}");
    assert!(summary.contains("definitely lost"), "{summary}");

    // The timeline's legend names the sites it follows.
    let timeline = section(dom, "timeline");
    assert!(timeline.contains("<svg"), "no chart");
    for f in ["burst_buffer_fill", "registry_grow_insert"] {
        assert!(timeline.contains(f), "{f} not in the timeline");
    }

    // The flame graph (the heap at its peak) has a box per function.
    let flame = section(dom, "flame");
    for f in [
        "burst_buffer_fill",
        "registry_grow_insert",
        "leak_session_token",
        "handle_request",
    ] {
        assert!(
            flame.contains(&format!(">{f}</div>")),
            "no flame graph box for {f}"
        );
    }
    assert!(flame.contains("<option"), "no metric switcher");
    assert!(flame.contains("allocations made over the whole run"));

    // Site tables: every list is drawn (other tabs hidden, but in the DOM).
    let sites = section(dom, "sites");
    for (pane, f) in [
        ("sites-peak", "burst_buffer_fill (html_report.c:"),
        ("sites-hotspots", "hot_parse_scratch (html_report.c:"),
        ("sites-temporary", "hot_parse_scratch (html_report.c:"),
        ("sites-growth", "registry_grow_insert (html_report.c:"),
        ("sites-not-freed", "leak_session_token (html_report.c:"),
    ] {
        let start = sites
            .find(&format!(r#"id="{pane}""#))
            .unwrap_or_else(|| panic!("no #{pane}"));
        let end = sites[start + 1..]
            .find(r#"class="pane""#)
            .map_or(sites.len(), |i| start + 1 + i);
        let table = &sites[start..end];
        assert!(
            table.contains(r#"<td class="loc">"#),
            "no site cell in #{pane}"
        );
        assert!(table.contains(f), "{f} not in #{pane}:\n{table}");
    }

    // Leak records: the definitely lost one, at its site.
    let leaks = section(dom, "leaks");
    let row = leaks
        .find("definitely lost</span>")
        .expect("no definitely lost record");
    let row_end = row + leaks[row..].find("</tr>").unwrap();
    assert!(
        leaks[row..row_end].contains("leak_session_token (html_report.c:"),
        "{}",
        &leaks[row..row_end]
    );

    let advice = section(dom, "advice");
    assert!(advice.contains("registry_grow_insert"), "{advice}");
}

/// The checks above would see a page whose script throws: break the page's data and the
/// script, and the same checks must complain.
#[test]
fn a_broken_page_is_caught() {
    let (_, html) = page();
    let text = std::fs::read_to_string(html).unwrap();
    let dir = scratch("html-broken");

    // Data that is not JSON: JSON.parse throws before anything is drawn.
    let start = text.find(r#"id="memlens-data">"#).unwrap() + r#"id="memlens-data">"#.len();
    let broken = format!("{}{{not json{}", &text[..start], &text[start..]);
    let path = dir.join("broken-data.html");
    std::fs::write(&path, broken).unwrap();
    let p = problems(&render(&path));
    assert!(
        p.iter().any(|l| l.contains("did not finish")),
        "missing marker not seen: {p:?}"
    );
    assert!(
        p.iter().any(|l| l.contains("Uncaught SyntaxError")),
        "console error not seen: {p:?}"
    );
    assert!(
        p.iter().any(|l| l.contains("recorded errors")),
        "the page's own error box not seen: {p:?}"
    );

    // A script that throws halfway, after the summary: a TypeError.
    let broken = text.replacen("drawFlame();\n", "drawFlame();\n  null.boom;\n", 1);
    assert_ne!(broken, text, "the page script changed: update this test");
    let path = dir.join("broken-script.html");
    std::fs::write(&path, broken).unwrap();
    let p = problems(&render(&path));
    assert!(
        p.iter().any(|l| l.contains("Uncaught TypeError")),
        "console error not seen: {p:?}"
    );
    assert!(p.iter().any(|l| l.contains("did not finish")), "{p:?}");
}

#[test]
fn errors_are_one_sentence() {
    let (trace, _) = page();
    let dir = scratch("html-errors");
    let run = |args: &[&str]| {
        let o = Command::new(memlens())
            .current_dir(&dir)
            .arg("html")
            .args(args)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(125), "{args:?}: {e}");
        assert!(
            e.starts_with("memlens: error: ") && e.trim_end().lines().count() == 1,
            "{args:?}: {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        e
    };
    let e = run(&["missing.trace", "-o", "r.html"]);
    assert!(e.contains("missing.trace"), "{e}");
    std::fs::write(dir.join("not.trace"), "hello").unwrap();
    let e = run(&["not.trace", "-o", "r.html"]);
    assert!(e.contains("not a memlens trace"), "{e}");
    assert!(
        !dir.join("r.html").exists(),
        "a page was left for a bad input"
    );
    let t = trace.to_str().unwrap();
    let e = run(&[t, "-o", "no/such/dir/r.html"]);
    assert!(e.contains("cannot write no/such/dir/r.html"), "{e}");
    run(&[t, "--from", "soon"]);
    run(&[t, "--suppressions", "missing.supp"]);

    // Without -o: the trace's name with .html, in the current directory.
    let o = Command::new(memlens())
        .current_dir(&dir)
        .arg("html")
        .arg(trace)
        .output()
        .unwrap();
    assert!(o.status.success());
    let name = format!("{}.html", trace.file_name().unwrap().to_string_lossy());
    assert!(dir.join(name).is_file());
}

/// A sampled trace's page says, above everything, that its figures are estimates and
/// why it has no leak kinds, and draws without errors.
#[test]
fn sampled_trace_page_says_figures_are_estimates() {
    let exe = build_c("sample_sites.c", "sample_sites");
    let r = run_with(&["--sample", "512K", "-q"], &exe, &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let html = r.dir.join("sampled.html");
    let o = Command::new(memlens())
        .arg("html")
        .arg(r.only_trace())
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = render(&html);
    assert_eq!(problems(&page), Vec::<String>::new());
    assert!(
        page.dom.contains(
            "Every figure on this page is estimated from samples (1 in ~512 KiB). \
             Temporary allocations are not counted, and there are no leak kinds"
        ),
        "no sampling banner in the page"
    );
}
