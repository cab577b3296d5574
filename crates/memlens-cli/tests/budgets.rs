//! `memlens check --budgets` and `memlens report --budgets` on `tests/programs/budgets.c`,
//! whose components have exact figures: components by thread name and by function, the
//! no-allocation thread, baselines, history, the output formats and the exit codes.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUDGETS: &str = "\
no_alloc = [\"audio*\"]

[process]
peak = \"1 MiB\"

[component.workers]
threads = \"worker-*\"
peak = \"8 KiB\"
allocations = 204
live_at_exit = 200

[component.parser]
functions = \"parse_*\"
allocations = 2
leaked = 0

[component.audio]
threads = \"audio\"
allocations = 0
";

fn program() -> PathBuf {
    build_c("budgets.c", "budgets")
}

/// `memlens check -o DIR/t.trace --errors-for-leak-kinds=none [extra] -- budgets args`
/// in `dir` (leak records do not fail the check: only the budgets do).
fn check(dir: &Path, extra: &[&str], args: &[&str]) -> Output {
    Command::new(memlens())
        .current_dir(dir)
        .arg("check")
        .arg("-o")
        .arg(dir.join("t.trace"))
        .arg("--errors-for-leak-kinds=none")
        .args(extra)
        .arg("--")
        .arg(program())
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn component<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {j}"))
}

/// figures[key] of a component, as a number.
fn fig(j: &Value, name: &str, key: &str) -> u64 {
    component(j, name)["figures"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}.{key} missing"))
}

/// (metric, exceeded) of each limit of a component, in the file's order.
fn limits(j: &Value, name: &str) -> Vec<(String, u64, bool)> {
    component(j, name)["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["metric"].as_str().unwrap().to_string(),
                l["line"].as_u64().unwrap(),
                l["exceeded"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_component_has_its_exact_figures_beside_its_limits() {
    let dir = scratch("budgets-components");
    std::fs::write(dir.join("memlens.toml"), BUDGETS).unwrap();
    let o = check(
        &dir,
        &["--budgets", "memlens.toml", "--budgets-json", "b.json"],
        &[],
    );
    let err = stderr(&o);
    // parser leaks its 64 bytes: its `leaked = 0` (line 15) fails the check.
    assert_eq!(o.status.code(), Some(1), "{err}");
    let j = json_file(&dir.join("b.json"));
    assert_eq!(j["passed"], false);
    assert_eq!(j["exceeded"], 1);

    // Two workers, one after the other: 2 x (4096 + 100 x 1000 + 100).
    assert_eq!(fig(&j, "workers", "allocations"), 204);
    assert_eq!(fig(&j, "workers", "allocated"), 208_392);
    assert_eq!(fig(&j, "workers", "peak"), 100 + 4096 + 1000);
    assert_eq!(fig(&j, "workers", "live_at_exit"), 200);
    assert_eq!(fig(&j, "workers", "still_reachable"), 200);
    assert_eq!(fig(&j, "workers", "leaked"), 0);
    assert_eq!(fig(&j, "workers", "frees"), 202);
    // parse_config: 64 bytes dropped, 32 freed.
    assert_eq!(fig(&j, "parser", "allocations"), 2);
    assert_eq!(fig(&j, "parser", "allocated"), 96);
    assert_eq!(fig(&j, "parser", "peak"), 96);
    assert_eq!(fig(&j, "parser", "live_at_exit"), 64);
    assert_eq!(fig(&j, "parser", "definitely_lost"), 64);
    assert_eq!(fig(&j, "parser", "leaked"), 64);
    // The audio thread never allocates on this path.
    assert_eq!(fig(&j, "audio", "allocations"), 0);
    assert_eq!(fig(&j, "audio", "peak"), 0);
    // The process holds every component.
    // (204 + 2 + the audio buffer, and what glibc allocates for the threads.)
    assert!(fig(&j, "process", "allocations") > 204 + 2);
    assert_eq!(fig(&j, "process", "leaked"), 64);

    assert_eq!(
        limits(&j, "workers"),
        [
            ("peak".to_string(), 8, false),
            ("live_at_exit".to_string(), 10, false),
            ("allocations".to_string(), 9, false),
        ]
    );
    assert_eq!(
        limits(&j, "parser"),
        [
            ("leaked".to_string(), 15, true),
            ("allocations".to_string(), 14, false),
        ]
    );
    assert_eq!(j["no_alloc"]["calls"], 0);

    // The text: each figure beside its limit, the exceeded one with its place.
    assert!(
        err.contains("==memlens==   workers (threads worker-*): peak 5.07 KiB, 204 allocations (203.51 KiB), live at exit 200 B, leaked 0 B\n"),
        "{err}"
    );
    let leaked_line = err
        .lines()
        .find(|l| l.contains("leaked (definitely + indirectly lost)") && l.contains("EXCEEDED"))
        .unwrap_or_else(|| panic!("no exceeded leak line:\n{err}"));
    assert!(
        leaked_line.ends_with("64 B  limit          0 B  EXCEEDED  memlens.toml:15"),
        "{leaked_line}"
    );
    assert!(
        err.contains("==memlens== budgets: FAILED: 1 limit exceeded\n"),
        "{err}"
    );

    // `report --budgets` shows the same table for the trace, and exits 0.
    let r = Command::new(memlens())
        .current_dir(&dir)
        .args([
            "report",
            "--budgets",
            "memlens.toml",
            "--format",
            "json",
            "t.trace",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let rj: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(rj["components"], j["components"]);
    let rt = Command::new(memlens())
        .current_dir(&dir)
        .args(["report", "--budgets", "memlens.toml", "t.trace"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rt.stdout);
    assert!(
        text.starts_with("budgets of memlens.toml for t.trace\n"),
        "{text}"
    );
    assert!(text.contains("\n  parser (functions parse_*): peak 96 B, 2 allocations (96 B), live at exit 64 B, leaked 64 B\n"), "{text}");
}

#[test]
fn within_every_limit_the_check_passes() {
    let dir = scratch("budgets-pass");
    let file = BUDGETS.replace("leaked = 0", "leaked = 64");
    std::fs::write(dir.join("memlens.toml"), file).unwrap();
    let o = check(&dir, &["--budgets", "memlens.toml"], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "==memlens== no-allocation threads (audio*): no allocation or free on them, ok\n"
        ),
        "{err}"
    );
    assert!(
        err.contains("==memlens== budgets: ok (7 limits checked)\n"),
        "{err}"
    );
    // Modules match as suppressions' obj: lines (a frame's module path), and every key
    // of a component must match: worker_job's frames in the executable, not libc's.
    std::fs::write(
        dir.join("more.toml"),
        "[component.jobs]\nmodules = \"*/budgets\"\nfunctions = [\"nothing\", \"worker_*\"]\n\
         [component.none]\nmodules = \"*/libc.so*\"\nfunctions = \"worker_*\"\nthreads = \"audio\"\n",
    )
    .unwrap();
    let r = Command::new(memlens())
        .current_dir(&dir)
        .args([
            "report",
            "--budgets",
            "more.toml",
            "--format",
            "json",
            "t.trace",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(fig(&j, "jobs", "allocations"), 204);
    assert_eq!(fig(&j, "jobs", "peak"), 5196);
    assert_eq!(fig(&j, "none", "allocations"), 0);
    // --quiet: nothing of the budgets when they pass.
    let q = check(&dir, &["-q", "--budgets", "memlens.toml"], &[]);
    assert_eq!(q.status.code(), Some(0));
    assert_eq!(stderr(&q), "");
}

/// --max-leaked judges the leak check's definitely + indirectly lost bytes; without a
/// leak check (`--leak-check=no`) it cannot be judged, and says so and fails, as a
/// budget file's `leaked` limit does.
#[test]
fn max_leaked_without_a_leak_check_fails_and_says_why() {
    let dir = scratch("budgets-max-leaked");
    let o = check(&dir, &["-q", "--max-leaked=1000000"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = check(&dir, &["-q", "--max-leaked=1"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("leaked (definitely + indirectly lost) exceeds --max-leaked 1 B"),
        "{}",
        stderr(&o)
    );
    let o = check(
        &dir,
        &["-q", "--leak-check=no", "--max-leaked=1000000"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "==memlens== check failed: --max-leaked cannot be judged: the trace has no leak check \
         (--leak-check=no, or the program did not exit normally)\n"
    );
}

#[test]
fn an_allocating_audio_thread_is_reported_with_its_stacks() {
    let dir = scratch("budgets-noalloc");
    // On the path without allocations, the flag alone passes.
    let quiet = check(
        &dir,
        &["--no-alloc", "audio*", "--budgets-json", "q.json"],
        &[],
    );
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert_eq!(
        json_file(&dir.join("q.json"))["no_alloc"]["violations"],
        serde_json::json!([])
    );

    let o = check(
        &dir,
        &["--no-alloc", "mixer,audio*", "--budgets-json", "v.json"],
        &["audio-alloc"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let j = json_file(&dir.join("v.json"));
    let v = j["no_alloc"]["violations"].as_array().unwrap();
    assert_eq!(v.len(), 2, "one malloc stack, one free stack: {v:?}");
    let alloc_line = line_of("budgets.c", "char *volatile table = malloc(256);");
    let free_line = line_of("budgets.c", "free(table);");
    let mut seen = Vec::new();
    for x in v {
        let top = &x["stack"][0];
        assert_eq!(top["function"], "audio_reconfigure", "{x}");
        assert_eq!(x["stack"][1]["function"], "process_block", "{x}");
        assert_eq!(x["threads"], serde_json::json!(["audio"]));
        assert_eq!(x["pattern"], "audio*");
        seen.push((
            x["kind"].as_str().unwrap().to_string(),
            x["function"].as_str().unwrap().to_string(),
            x["count"].as_u64().unwrap(),
            x["bytes"].as_u64().unwrap(),
            top["line"].as_u64().unwrap(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("allocation".into(), "malloc".into(), 5, 1280, alloc_line),
            ("free".into(), "free".into(), 5, 1280, free_line),
        ]
    );
    assert!(
        err.contains("==memlens== no-allocation threads (mixer, audio*): 10 calls from 2 stacks on audio: VIOLATED\n"),
        "{err}"
    );
    assert!(
        err.contains("==memlens==   5 allocations (1.25 KiB) on audio by malloc, first at ")
            && err.contains(&format!(
                "==memlens==     at audio_reconfigure (budgets.c:{alloc_line}) [budgets]\n"
            )),
        "{err}"
    );
    assert!(
        err.contains("==memlens== budgets: FAILED: 10 calls on no-allocation threads\n"),
        "{err}"
    );
    // A trace recorded by `run` has no free stacks: `report --budgets` shows the frees at
    // the freed block's allocation stack, and says so.
    let r = run(&program(), &["audio-alloc"]);
    let rep = Command::new(memlens())
        .args(["report", "--no-alloc", "audio", "--format", "json"])
        .arg(r.only_trace())
        .output()
        .unwrap();
    assert_eq!(rep.status.code(), Some(0), "{}", stderr(&rep));
    let j: Value = serde_json::from_slice(&rep.stdout).unwrap();
    let free = j["no_alloc"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "free")
        .unwrap();
    assert_eq!(free["count"], 5);
    assert_eq!(free["stack"], Value::Null);
    assert_eq!(free["freed_block"]["function"], "malloc");
    assert_eq!(
        free["freed_block"]["stack"][0]["function"],
        "audio_reconfigure"
    );
    assert_eq!(free["freed_block"]["stack"][0]["line"], alloc_line);
}

#[test]
fn a_baseline_passes_then_fails_after_one_more_leak() {
    let dir = scratch("budgets-baseline");
    std::fs::write(
        dir.join("memlens.toml"),
        "[component.parser]\nfunctions = \"parse_*\"\n",
    )
    .unwrap();
    let first = check(
        &dir,
        &["--budgets", "memlens.toml", "--write-baseline", "base.json"],
        &[],
    );
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let base = json_file(&dir.join("base.json"));
    assert_eq!(base["memlens_baseline"], 1);
    assert_eq!(base["components"]["parser"]["leaked"], 64);
    assert_eq!(base["components"]["parser"]["allocations"], 2);

    // The same program again: every exact figure is the same. (The allocation rate of a
    // 5 ms run is noise; its tolerance is tested in the analysis crate.)
    let again = check(
        &dir,
        &[
            "--budgets",
            "memlens.toml",
            "--baseline",
            "base.json",
            "--max-regression",
            "1000%",
            "--budgets-json",
            "a.json",
        ],
        &[],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let a = json_file(&dir.join("a.json"));
    assert_eq!(a["baseline"]["regressions"], 0);
    assert_eq!(a["baseline"]["checks"].as_array().unwrap().len(), 2 * 10);

    // One more leaked block (777 bytes from extra_leak): the process regresses, exactly.
    let worse = check(
        &dir,
        &[
            "--budgets",
            "memlens.toml",
            "--baseline",
            "base.json",
            "--max-regression",
            "1000%",
            "--budgets-json",
            "w.json",
        ],
        &["extra"],
    );
    let err = stderr(&worse);
    assert_eq!(worse.status.code(), Some(1), "{err}");
    let w = json_file(&dir.join("w.json"));
    let mut regressed: Vec<(String, String, i64)> = w["baseline"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["regressed"] == true)
        .map(|c| {
            (
                c["component"].as_str().unwrap().to_string(),
                c["metric"].as_str().unwrap().to_string(),
                c["after"].as_i64().unwrap() - c["before"].as_i64().unwrap(),
            )
        })
        .collect();
    regressed.sort();
    let p = |m: &str, d| ("process".to_string(), m.to_string(), d);
    assert_eq!(
        regressed,
        [
            p("allocated", 777),
            p("allocations", 1),
            p("definitely_lost", 777),
            p("leaked", 777),
            p("live_at_exit", 777),
        ]
    );
    assert!(err.contains("==memlens==   process leaked (definitely + indirectly lost): 64 B -> 841 B (+777 B)  REGRESSED\n"), "{err}");
    assert!(
        err.contains("==memlens== budgets: FAILED: 5 regressions against the baseline\n"),
        "{err}"
    );
}

#[test]
fn a_bad_budget_file_is_one_sentence_with_its_line_and_nothing_runs() {
    let dir = scratch("budgets-bad");
    let cases = [
        ("[process]\npeak = \"12 XB\"\n", "memlens: error: bad.toml:2: `peak`: '12 XB' is not a size (examples: 4096, 500MiB, 2GiB, 1.5G, 300kB)\n"),
        ("[component.w]\npeak = 1\n", "memlens: error: bad.toml:1: [component.w] selects nothing: give it `threads`, `modules`, `functions` or `regions` patterns (use [process] for the whole process)\n"),
        ("\n[process\n", "memlens: error: bad.toml:2: unclosed table, expected `]`\n"),
    ];
    for (text, want) in cases {
        std::fs::write(dir.join("bad.toml"), text).unwrap();
        let o = check(&dir, &["--budgets", "bad.toml"], &[]);
        assert_eq!(o.status.code(), Some(125));
        assert_eq!(stderr(&o), want);
        assert!(o.stdout.is_empty(), "the program must not run");
    }
    let o = check(&dir, &["--baseline", "bad.toml"], &[]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).starts_with("memlens: error: bad.toml:2: not a memlens baseline"),
        "{}",
        stderr(&o)
    );
    let o = check(&dir, &["--max-regression", "ten"], &[]);
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn sarif_and_github_annotations_point_at_the_budget_file_and_the_source() {
    let dir = scratch("budgets-sarif");
    std::fs::write(dir.join("memlens.toml"), BUDGETS).unwrap();
    let o = check(
        &dir,
        &[
            "--budgets",
            "memlens.toml",
            "--budgets-sarif",
            "b.sarif",
            "--github-annotations",
        ],
        &["audio-alloc"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = json_file(&dir.join("b.sarif"));
    assert_eq!(s["version"], "2.1.0");
    let results = s["runs"][0]["results"].as_array().unwrap();
    let rules: Vec<&str> = results
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "budget_exceeded",
            "budget_exceeded",
            "no_alloc_violation",
            "no_alloc_violation"
        ]
    );
    let loc = &results[0]["locations"][0]["physicalLocation"];
    // Relative to the source root: the top of the git work tree around the directory.
    let uri = loc["artifactLocation"]["uri"].as_str().unwrap();
    assert!(
        uri.ends_with("/memlens.toml") && !uri.starts_with('/'),
        "{uri}"
    );
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(loc["region"]["startLine"], 15);
    let alloc_line = line_of("budgets.c", "char *volatile table = malloc(256);");
    let v = &results[2]["locations"][0]["physicalLocation"];
    assert!(v["artifactLocation"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("budgets.c"));
    assert_eq!(v["region"]["startLine"], alloc_line);

    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with(&format!("::error file={uri},line=15,title=budget_exceeded::"))
            && lines[0].ends_with("::memlens budget: parser leaked (definitely + indirectly lost): 64 B exceeds the limit 0 B (memlens.toml:15)"),
        "{}",
        lines[0]
    );
    assert!(lines[2].contains(&format!("budgets.c,line={alloc_line},title=no_alloc_violation::memlens no-alloc: 5 calls to malloc (1.25 KiB) on thread audio")), "{}", lines[2]);
}

#[test]
fn history_gets_one_line_per_run() {
    let dir = scratch("budgets-history");
    std::fs::write(
        dir.join("memlens.toml"),
        "[component.parser]\nfunctions = \"parse_*\"\n",
    )
    .unwrap();
    for args in [&[][..], &["extra"][..]] {
        let o = check(
            &dir,
            &["--budgets", "memlens.toml", "--history", "hist"],
            args,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let text = std::fs::read_to_string(dir.join("hist/history.jsonl")).unwrap();
    let runs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["components"]["parser"]["leaked"], 64);
    assert_eq!(
        runs[1]["components"]["process"]["leaked"].as_u64().unwrap()
            - runs[0]["components"]["process"]["leaked"].as_u64().unwrap(),
        777
    );
    assert!(runs[0]["time"].as_u64().unwrap() > 0);
}

/// The points of the polyline of series `id` in an SVG chart, as (x, y) pixels.
fn polyline(svg: &str, id: &str) -> Vec<(f64, f64)> {
    let start = svg
        .find(&format!("<polyline data-series=\"{id}\" points=\""))
        .unwrap_or_else(|| panic!("no line {id} in:\n{svg}"));
    let rest = &svg[start..];
    let pts = rest.split("points=\"").nth(1).unwrap();
    pts[..pts.find('"').unwrap()]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

#[test]
fn plot_history_draws_each_components_peak_and_leaked_bytes_per_run() {
    let dir = scratch("budgets-plot-history");
    std::fs::write(
        dir.join("memlens.toml"),
        "[component.parser]\nfunctions = \"parse_*\"\n",
    )
    .unwrap();
    for args in [&[][..], &["extra"][..], &[][..]] {
        let o = check(
            &dir,
            &["--budgets", "memlens.toml", "--history", "hist"],
            args,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = Command::new(memlens())
        .current_dir(&dir)
        .args(["plot", "--history", "hist", "-o", "h.svg"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let svg = std::fs::read_to_string(dir.join("h.svg")).unwrap();
    assert!(svg.contains("3 runs from"), "{svg}");
    assert!(svg.contains(">run (in the order appended)</text>"), "{svg}");
    for id in [
        "process-peak",
        "process-leaked",
        "parser-peak",
        "parser-leaked",
    ] {
        assert_eq!(polyline(&svg, id).len(), 3, "{id}");
    }
    // The parser leaks 64 bytes in every run: a flat line. The process leaks 777 bytes
    // more in the second run only: its point is higher (a smaller y) than the others.
    let parser = polyline(&svg, "parser-leaked");
    assert!(parser.iter().all(|p| p.1 == parser[0].1), "{parser:?}");
    let process = polyline(&svg, "process-leaked");
    assert!(
        process[1].1 < process[0].1 && process[0].1 == process[2].1,
        "{process:?}"
    );
    // Runs are one apart on the x axis.
    assert!((process[1].0 - process[0].0 - (process[2].0 - process[1].0)).abs() < 0.2);

    // No history there: one sentence, status 125.
    let o = Command::new(memlens())
        .current_dir(&dir)
        .args(["plot", "--history", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("cannot read the history nowhere/history.jsonl")
            && err.contains("`memlens check --history nowhere` writes it"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// `memlens check -q` that fails on the leak check says so in one line (as `valgrind -q`
/// still prints its errors), instead of exiting 1 without a word; passing, it is silent.
#[test]
fn a_quiet_check_that_fails_on_leaks_says_so_in_one_line() {
    let exe = build_c("leak_at_exit.c", "leak_at_exit");
    let dir = scratch("quiet-check");
    let o = Command::new(memlens())
        .current_dir(&dir)
        .args(["check", "-q", "-o"])
        .arg(dir.join("t.trace"))
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "==memlens== 1 error in the leak check (heap errors, and loss records of \
             --errors-for-leak-kinds): `memlens leaks {}` lists them\n",
            dir.join("t.trace").display()
        )
    );
    let o = Command::new(memlens())
        .current_dir(&dir)
        .args(["check", "-q", "--errors-for-leak-kinds=none", "-o"])
        .arg(dir.join("u.trace"))
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}
