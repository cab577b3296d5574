//! `memlens flamegraph`, `export` and `diff` on `tests/programs/profile.c`, whose sites
//! are known exactly:
//!   make_small      100 x malloc(24), all freed
//!   leak_blocks       5 x malloc(200), definitely lost
//!   keep_reachable    2 x calloc(8, 16), still reachable
//!   extra_leak        with the argument "extra": 1 x malloc(777), definitely lost
//!   make_big          3 x malloc(4096), live together at the heap's peak, then freed
//! The pprof file is read back by `go tool pprof` (Debian package golang-go) and decoded
//! here with message definitions independent of the exporter's.
//!
//! Longer than 800 lines on purpose: three commands over one program with known sites,
//! each output format checked against the same exact figures.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The stack suffix of each site, below `main;run;`, with its allocator.
const SMALL: &str = "make_small;malloc";
const LEAK: &str = "leak_blocks;malloc";
const REACH: &str = "keep_reachable;calloc";
const EXTRA: &str = "extra_leak;malloc";
const BIG: &str = "make_big;malloc";

fn program() -> PathBuf {
    build_c("profile.c", "profile")
}

/// One trace of `profile` and one of `profile extra`, recorded once for all tests.
fn traces() -> &'static (PathBuf, PathBuf) {
    static T: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let record = |args: &[&str]| {
            let r = run(&program(), args);
            assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
            assert_eq!(r.stdout(), "profile: done\n");
            r.only_trace()
        };
        (record(&[]), record(&["extra"]))
    })
}

fn memlens_cmd(args: &[&str]) -> Output {
    Command::new(memlens()).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Folded lines as stack -> value (each stack once).
fn parse_folded(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let (stack, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            m.insert(stack.to_string(), v.parse::<u64>().unwrap())
                .is_none(),
            "{stack} twice"
        );
    }
    m
}

/// The folded stacks of one metric, below `main;run;` (every stack of this program goes
/// through there: nothing else allocates), as suffix -> value.
fn collapsed(trace: &Path, metric: &str) -> BTreeMap<String, u64> {
    let out = ok(&memlens_cmd(&[
        "flamegraph",
        s(trace),
        "--metric",
        metric,
        "--collapsed",
    ]));
    // The same lines from `export --format collapsed`.
    let export = ok(&memlens_cmd(&[
        "export",
        s(trace),
        "--format",
        "collapsed",
        "--metric",
        metric,
    ]));
    assert_eq!(out, export);
    parse_folded(&out)
        .into_iter()
        .map(|(stack, v)| {
            let (root, site) = stack
                .split_once(";main;run;")
                .unwrap_or_else(|| panic!("not below main;run: {stack}"));
            assert!(root.starts_with("_start;"), "root first: {stack}");
            (site.to_string(), v)
        })
        .collect()
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

#[test]
fn collapsed_stacks_have_the_exact_values_of_every_metric() {
    let (a, b) = traces();
    let cases: [(&str, BTreeMap<String, u64>); 13] = [
        (
            "allocations",
            map(&[(SMALL, 100), (LEAK, 5), (REACH, 2), (BIG, 3)]),
        ),
        (
            "allocated",
            map(&[(SMALL, 2400), (LEAK, 1000), (REACH, 256), (BIG, 12288)]),
        ),
        ("peak", map(&[(LEAK, 1000), (REACH, 256), (BIG, 12288)])),
        ("peak-blocks", map(&[(LEAK, 5), (REACH, 2), (BIG, 3)])),
        ("exit", map(&[(LEAK, 1000), (REACH, 256)])),
        ("exit-blocks", map(&[(LEAK, 5), (REACH, 2)])),
        ("leaked", map(&[(LEAK, 1000)])),
        ("definitely-lost", map(&[(LEAK, 1000)])),
        ("still-reachable", map(&[(REACH, 256)])),
        ("indirectly-lost", map(&[])),
        ("possibly-lost", map(&[])),
        // Freed before the thread's next allocation: every small block, and the last of
        // the three big ones (freed last, so still the most recent allocation).
        ("temporary", map(&[(SMALL, 100), (BIG, 1)])),
        ("temporary-bytes", map(&[(SMALL, 2400), (BIG, 4096)])),
    ];
    for (metric, want) in &cases {
        assert_eq!(&collapsed(a, metric), want, "--metric {metric}");
    }
    assert_eq!(collapsed(b, "leaked"), map(&[(LEAK, 1000), (EXTRA, 777)]));
    // The default metric is peak.
    let default = ok(&memlens_cmd(&["flamegraph", s(a), "--format", "collapsed"]));
    let peak = ok(&memlens_cmd(&[
        "flamegraph",
        s(a),
        "-m",
        "peak",
        "--collapsed",
    ]));
    assert_eq!(default, peak);
}

#[test]
fn svg_flame_graph_names_the_functions_with_their_values() {
    let (a, _) = traces();
    let dir = scratch("flamegraph-svg");
    let svg_path = dir.join("leaks.svg");
    ok(&memlens_cmd(&[
        "flamegraph",
        s(a),
        "--metric",
        "leaked",
        "-o",
        s(&svg_path),
    ]));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
    assert!(svg.trim_end().ends_with("</svg>"));
    // Interactive and searchable.
    assert!(svg.contains("<script") && svg.contains("function search("));
    assert!(svg.contains(">memlens: bytes leaked at exit (definitely + indirectly lost)</text>"));
    for want in [
        "<title>all (1,000 bytes, 100%)</title>",
        "<title>main (1,000 bytes, 100.00%)</title>",
        "<title>leak_blocks (1,000 bytes, 100.00%)</title>",
        "<title>malloc (1,000 bytes, 100.00%)</title>",
    ] {
        assert!(svg.contains(want), "missing {want}");
    }
    assert!(!svg.contains("make_big"), "nothing of make_big leaked");
    // The root box is labelled, as every other box wide enough for its name.
    let root = &svg[svg.find("<title>all (").unwrap()..];
    let root = &root[..root.find("</g>").unwrap()];
    assert!(root.ends_with(">all</text>"), "{root}");

    // Stdout when it is not a terminal, and the allocations metric.
    let svg = ok(&memlens_cmd(&[
        "flamegraph",
        s(a),
        "--metric",
        "allocations",
    ]));
    for want in [
        "<title>all (110 allocations, 100%)</title>",
        "<title>make_small (100 allocations, 90.91%)</title>",
        "<title>make_big (3 allocations, 2.73%)</title>",
        "<title>calloc (2 allocations, 1.82%)</title>",
    ] {
        assert!(svg.contains(want), "missing {want}");
    }

    // A metric with nothing in it gives a small SVG that says so.
    let svg = ok(&memlens_cmd(&[
        "flamegraph",
        s(a),
        "--metric",
        "possibly-lost",
    ]));
    assert!(
        svg.contains("nothing to show: no site has any bytes possibly lost at exit"),
        "{svg}"
    );
}

#[test]
fn json_export_has_every_metric_of_every_site() {
    let (a, _) = traces();
    let v: Value = serde_json::from_str(&ok(&memlens_cmd(&[
        "export",
        s(a),
        "--format",
        "json",
        "-o",
        "-",
    ])))
    .unwrap();
    assert_eq!(v["leak_check"], true);
    assert_eq!(v["trace"]["path"], s(a));
    assert_eq!(v["metrics"].as_array().unwrap().len(), 18);
    let sites = v["sites"].as_array().unwrap();
    let site = |func: &str| -> Vec<&Value> {
        sites
            .iter()
            .filter(|s| s["stack"][0]["function"] == func)
            .collect()
    };
    let leak = site("leak_blocks");
    assert_eq!(leak.len(), 1);
    let l = leak[0];
    for (key, want) in [
        ("allocations", 5),
        ("bytes_allocated", 1000),
        ("peak_bytes", 1000),
        ("peak_blocks", 5),
        ("exit_bytes", 1000),
        ("exit_blocks", 5),
        ("leaked_bytes", 1000),
        ("leaked_blocks", 5),
        ("definitely_lost_bytes", 1000),
        ("definitely_lost_blocks", 5),
        ("indirectly_lost_bytes", 0),
        ("possibly_lost_bytes", 0),
        ("still_reachable_bytes", 0),
    ] {
        assert_eq!(l[key], want, "{key}");
    }
    assert_eq!(l["allocator"], "malloc");
    let f = &l["stack"][0];
    assert_eq!(f["module"], "profile");
    assert!(f["file"].as_str().unwrap().ends_with("profile.c"), "{f}");
    assert_eq!(
        f["line"].as_u64(),
        Some(line_of("profile.c", "char *p = malloc(200);"))
    );
    assert_eq!(l["stack"][1]["function"], "run");
    assert_eq!(l["stack"][2]["function"], "main");
    // keep_reachable's loop is unrolled: two call sites, 128 B each.
    let reach = site("keep_reachable");
    assert_eq!(reach.len(), 2);
    for r in &reach {
        assert_eq!(
            (
                &r["allocator"],
                &r["still_reachable_bytes"],
                &r["bytes_allocated"]
            ),
            (&Value::from("calloc"), &Value::from(128), &Value::from(128))
        );
    }
    // Sites come by bytes allocated; totals are their sums.
    assert_eq!(sites[0]["stack"][0]["function"], "make_big");
    for m in v["metrics"].as_array().unwrap() {
        let key = m["key"].as_str().unwrap();
        let sum: u64 = sites.iter().map(|s| s[key].as_u64().unwrap()).sum();
        assert_eq!(v["totals"][key], sum, "{key}");
    }
}

/// `go tool pprof -top` for one sample type: function -> (flat, cum), in bytes or counts.
fn pprof_top(dir: &Path, file: &Path, sample: &str) -> BTreeMap<String, (u64, u64)> {
    let out = go_pprof(
        dir,
        file,
        &[
            "-top",
            &format!("-sample_index={sample}"),
            "-unit=B",
            "-nodefraction=0",
            "-nodecount=10000",
        ],
    );
    let num = |t: &str| -> u64 { t.trim_end_matches('B').parse().unwrap() };
    let mut rows = BTreeMap::new();
    let mut table = false;
    for line in out.lines() {
        if line.trim_start().starts_with("flat  flat%") {
            table = true;
            continue;
        }
        if !table {
            continue;
        }
        // flat flat% sum% cum cum% name (the name may hold spaces)
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols.len() >= 6, "{line:?} in\n{out}");
        rows.insert(cols[5..].join(" "), (num(cols[0]), num(cols[3])));
    }
    assert!(table, "no table in\n{out}");
    rows
}

fn flat(rows: &BTreeMap<String, (u64, u64)>) -> BTreeMap<String, u64> {
    rows.iter()
        .filter(|(_, &(f, _))| f > 0)
        .map(|(k, &(f, _))| (k.clone(), f))
        .collect()
}

#[test]
fn pprof_export_reads_in_go_tool_pprof() {
    let (_, b) = traces();
    let dir = scratch("pprof-go");
    let file = dir.join("heap.pb.gz");
    let o = memlens_cmd(&["export", s(b), "--format", "pprof", "-o", s(&file)]);
    assert_eq!(ok(&o), "", "nothing on stdout with -o");

    let expect = |pairs: &[(&str, u64)]| map(pairs);
    let cases = [
        (
            "alloc_space",
            expect(&[
                ("make_small", 2400),
                ("leak_blocks", 1000),
                ("keep_reachable", 256),
                ("extra_leak", 777),
                ("make_big", 12288),
            ]),
        ),
        (
            "alloc_objects",
            expect(&[
                ("make_small", 100),
                ("leak_blocks", 5),
                ("keep_reachable", 2),
                ("extra_leak", 1),
                ("make_big", 3),
            ]),
        ),
        (
            "inuse_space",
            expect(&[
                ("leak_blocks", 1000),
                ("keep_reachable", 256),
                ("extra_leak", 777),
            ]),
        ),
        (
            "inuse_objects",
            expect(&[("leak_blocks", 5), ("keep_reachable", 2), ("extra_leak", 1)]),
        ),
        (
            "peak_inuse_space",
            expect(&[
                ("leak_blocks", 1000),
                ("keep_reachable", 256),
                ("extra_leak", 777),
                ("make_big", 12288),
            ]),
        ),
        (
            "leaked_space",
            expect(&[("leak_blocks", 1000), ("extra_leak", 777)]),
        ),
        (
            "leaked_objects",
            expect(&[("leak_blocks", 5), ("extra_leak", 1)]),
        ),
    ];
    for (sample, want) in &cases {
        let rows = pprof_top(&dir, &file, sample);
        assert_eq!(&flat(&rows), want, "-sample_index={sample}");
        let total: u64 = want.values().sum();
        assert_eq!(rows["main"], (0, total), "{sample}: main's cum");
    }
    // The default sample type is alloc_space, and the allocator is a label.
    let raw = go_pprof(&dir, &file, &["-raw"]);
    assert!(raw.contains(" alloc_space/bytes[dflt] "), "{raw}");
    assert!(raw.contains("allocator:[calloc]"), "{raw}");
    let tags = go_pprof(
        &dir,
        &file,
        &["-top", "-tagfocus=allocator=calloc", "-nodefraction=0"],
    );
    assert!(
        tags.contains("keep_reachable") && !tags.contains("make_big"),
        "{tags}"
    );
}

/// profile.proto's messages, written again from the .proto for this test, so the
/// exporter's own definitions are checked against an independent reading.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub ty: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// `memlens export TRACE --format pprof` into `dir`, decoded.
fn export_pprof(trace: &Path, dir: &Path) -> pb::Profile {
    use prost::Message as _;
    use std::io::Read as _;
    let file = dir.join("heap.pb.gz");
    ok(&memlens_cmd(&[
        "export",
        s(trace),
        "--format",
        "pprof",
        "-o",
        s(&file),
    ]));
    let gz = std::fs::read(&file).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    pb::Profile::decode(&raw[..]).unwrap()
}

#[test]
fn pprof_file_decodes_with_its_tables_consistent() {
    let (a, _) = traces();
    let dir = scratch("pprof-decode");
    let p = export_pprof(a, &dir);
    let st = |i: i64| p.string_table[i as usize].as_str();

    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (st(t.ty), st(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
            ("peak_inuse_objects", "count"),
            ("peak_inuse_space", "bytes"),
            ("leaked_objects", "count"),
            ("leaked_space", "bytes"),
        ]
    );
    assert_eq!(st(p.default_sample_type), "alloc_space");
    assert!(p.time_nanos > 1_600_000_000_000_000_000, "{}", p.time_nanos);
    assert!(p.duration_nanos > 0);
    assert_eq!(st(p.comment[0]), format!("memlens export of {}", s(a)));

    // The program's mapping: its path and build-id, spanning its locations.
    let exe = program();
    let build_id: String = memlens_analysis::symbolize::read_build_id(&exe)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let m = p
        .mapping
        .iter()
        .find(|m| st(m.filename) == s(&exe))
        .unwrap_or_else(|| panic!("no mapping of {}", exe.display()));
    assert_eq!(st(m.build_id), build_id);
    assert!(m.has_functions && m.memory_start < m.memory_limit);
    assert_eq!(m.file_offset, 0);
    let ids: Vec<u64> = (1..=p.mapping.len() as u64).collect();
    assert_eq!(p.mapping.iter().map(|m| m.id).collect::<Vec<_>>(), ids);

    let func = |id: u64| &p.function[id as usize - 1];
    for (i, f) in p.function.iter().enumerate() {
        assert_eq!(f.id, i as u64 + 1);
    }
    for (i, l) in p.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
        assert!(!l.line.is_empty());
        if l.mapping_id != 0 {
            let m = &p.mapping[l.mapping_id as usize - 1];
            assert!(
                (m.memory_start..m.memory_limit).contains(&l.address),
                "{l:?} outside {m:?}"
            );
        }
    }

    // leak_blocks's sample: every value, its stack, its allocator label.
    let leaf = |s: &pb::Sample| {
        let l = &p.location[s.location_id[0] as usize - 1];
        (l, func(l.line[0].function_id))
    };
    let leak: Vec<&pb::Sample> = p
        .sample
        .iter()
        .filter(|s| st(leaf(s).1.name) == "leak_blocks")
        .collect();
    assert_eq!(leak.len(), 1);
    assert_eq!(leak[0].value, [5, 1000, 5, 1000, 5, 1000, 5, 1000]);
    assert_eq!(
        leak[0]
            .label
            .iter()
            .map(|l| (st(l.key), st(l.str)))
            .collect::<Vec<_>>(),
        [("allocator", "malloc")]
    );
    let (loc, f) = leaf(leak[0]);
    assert_eq!(loc.mapping_id, m.id);
    assert!(st(f.filename).ends_with("profile.c"));
    assert_eq!(
        loc.line[0].line as u64,
        line_of("profile.c", "char *p = malloc(200);")
    );
    let names: Vec<&str> = leak[0]
        .location_id
        .iter()
        .flat_map(|&id| p.location[id as usize - 1].line.iter())
        .map(|l| st(func(l.function_id).name))
        .collect();
    // The whole stack, down to the C library's start and nothing of the recorder's.
    assert_eq!(names[..3], ["leak_blocks", "run", "main"], "{names:?}");
    assert_eq!(names[3..], BELOW_MAIN, "{names:?}");
    // Samples of the other sites.
    let values = |name: &str| -> Vec<Vec<i64>> {
        p.sample
            .iter()
            .filter(|s| st(leaf(s).1.name) == name)
            .map(|s| s.value.clone())
            .collect()
    };
    assert_eq!(values("make_small"), [[100, 2400, 0, 0, 0, 0, 0, 0]]);
    assert_eq!(values("make_big"), [[3, 12288, 0, 0, 3, 12288, 0, 0]]);
    assert_eq!(
        values("keep_reachable"),
        [
            [1, 128, 1, 128, 1, 128, 0, 0],
            [1, 128, 1, 128, 1, 128, 0, 0]
        ]
    );
    assert_eq!(p.sample.len(), 5);
}

/// A C++ program whose first allocations are made inside libstdc++ (its emergency
/// exception pool, at start-up): the profile's first mapping is still the program, the
/// file `go tool pprof` names as the profile's main file, and no stack holds a frame of
/// the recorder (its `main` trampoline).
#[test]
fn pprof_names_the_program_first_and_no_recorder_frame() {
    let exe = build("g++", "cxx.cpp", "cxx", CXX_FLAGS);
    let r = run(&exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    let dir = scratch("pprof-cxx");
    let p = export_pprof(&r.only_trace(), &dir);
    let st = |i: i64| p.string_table[i as usize].as_str();
    let files: Vec<&str> = p.mapping.iter().map(|m| st(m.filename)).collect();
    assert_eq!(files[0], s(&exe), "{files:?}");
    assert!(files.iter().any(|f| f.contains("libstdc++")), "{files:?}");
    assert!(
        !files.iter().any(|f| f.ends_with("libmemlens_preload.so")),
        "{files:?}"
    );
    if tool("go", "golang-go").is_some() {
        let top = go_pprof(&dir, &dir.join("heap.pb.gz"), &["-top"]);
        assert!(top.starts_with("File: cxx\n"), "{top}");
    }
    let functions: Vec<&str> = p.function.iter().map(|f| st(f.name)).collect();
    assert!(functions.contains(&"main"), "{functions:?}");
    assert!(
        !functions.iter().any(|f| f.contains("main_trampoline")),
        "{functions:?}"
    );
}

fn diff_json(a: &Path, b: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["diff", s(a), s(b), "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&memlens_cmd(&args))).unwrap()
}

#[test]
fn diff_of_two_runs_shows_exactly_the_extra_leak() {
    let (a, b) = traces();
    let v = diff_json(a, b, &["--metric", "leaked", "--top", "1000"]);
    assert_eq!(v["metric"], "leaked");
    assert_eq!(v["leak_check"], true);
    // The new site is the only change; the sites of both runs matched although their
    // addresses differ.
    let sites = v["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{v:#}");
    assert_eq!(
        (
            &v["changed_sites"],
            &v["new_sites"],
            &v["vanished_sites"],
            &v["unchanged_sites"]
        ),
        (
            &Value::from(0),
            &Value::from(1),
            &Value::from(0),
            &Value::from(4)
        )
    );
    let site = &sites[0];
    assert_eq!(site["status"], "new");
    assert_eq!(site["allocator"], "malloc");
    assert_eq!(site["stack"][0]["function"], "extra_leak");
    assert_eq!(site["stack"][1]["function"], "run");
    assert!(site["before"].is_null());
    for (key, want) in [
        ("leaked_bytes", 777),
        ("leaked_blocks", 1),
        ("definitely_lost_bytes", 777),
        ("exit_bytes", 777),
        ("peak_bytes", 777),
        ("allocations", 1),
        ("bytes_allocated", 777),
        ("still_reachable_bytes", 0),
    ] {
        assert_eq!(site["change"][key], want, "{key}");
        assert_eq!(site["after"][key], want, "{key}");
    }
    for (key, before, after) in [
        ("leaked_bytes", 1000, 1777),
        ("leaked_blocks", 5, 6),
        ("peak_bytes", 13544, 14321),
        ("allocations", 110, 111),
    ] {
        assert_eq!(
            v["totals"][key],
            serde_json::json!({"before": before, "after": after, "change": after - before}),
            "{key}"
        );
    }

    // The other way round: vanished, -777.
    let v = diff_json(b, a, &["--metric", "leaked"]);
    assert_eq!(v["sites"].as_array().unwrap().len(), 1);
    assert_eq!(v["sites"][0]["status"], "vanished");
    assert_eq!(v["sites"][0]["change"]["leaked_bytes"], -777);
    assert!(v["sites"][0]["after"].is_null());

    // A trace against itself: nothing changed.
    let v = diff_json(a, a, &[]);
    assert_eq!(v["sites"], serde_json::json!([]));
    assert_eq!(v["unchanged_sites"], 4);

    // Text, and the differential flame graph.
    let dir = scratch("diff-text");
    let svg = dir.join("diff.svg");
    let text = ok(&memlens_cmd(&[
        "diff",
        s(a),
        s(b),
        "--metric",
        "leaked",
        "--flamegraph",
        s(&svg),
    ]));
    assert!(
        text.contains("Sites by change in bytes leaked at exit (definitely + indirectly lost) (--metric leaked): 0 changed, 1 new, 0 vanished, 4 unchanged\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "\n  +777 B, new site, from malloc\n    allocations   0 allocations (0 B) -> 1 allocation (777 B)  (+1 allocation, +777 B)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    leaked        0 B in 0 blocks -> 777 B in 1 block  (+777 B, +1 block)\n    at extra_leak (profile.c:"),
        "{text}"
    );
    assert!(
        text.contains(
            "\n  leaked                              1000 B        1.74 KiB          +777 B\n"
        ),
        "{text}"
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains(">memlens diff: bytes leaked at exit"), "title");
    assert!(
        svg.contains("<title>extra_leak (777 bytes, 43.73%"),
        "extra_leak"
    );
    assert!(svg.contains("<title>malloc (777 bytes, 43.73%; +43.73%)</title>"));
    assert!(svg.contains("<title>leak_blocks (1,000 bytes, 56.27%; 0.00%)</title>"));
}

/// Two malloc lines in one function: two runs of one build are compared line by line
/// (the first line grew by 40 blocks, the second by 80); against another build, whose
/// lines may have moved, the two lines of `main` are one site (by function names only).
#[test]
fn diff_matches_lines_within_one_build_and_functions_across_builds() {
    let exe = build_c("diff_lines.c", "diff_lines");
    let rebuilt = build(
        "gcc",
        "diff_lines.c",
        "diff_lines_rebuilt",
        &[C_FLAGS, &["-DREBUILT"]].concat(),
    );
    let trace = |exe: &Path, n: &str| run(exe, &[n]).only_trace();
    let (a, b, c) = (trace(&exe, "10"), trace(&exe, "50"), trace(&rebuilt, "50"));
    let first = line_of("diff_lines.c", "first site");
    let second = line_of("diff_lines.c", "second site");
    let main_sites = |v: &Value| -> Vec<(u64, i64, i64)> {
        let mut m: Vec<(u64, i64, i64)> = v["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["stack"][0]["function"] == "main")
            .map(|s| {
                (
                    s["stack"][0]["line"].as_u64().unwrap(),
                    s["change"]["allocations"].as_i64().unwrap(),
                    s["change"]["bytes_allocated"].as_i64().unwrap(),
                )
            })
            .collect();
        m.sort_unstable();
        m
    };
    let v = diff_json(&a, &b, &["--top", "100"]);
    assert_eq!(
        main_sites(&v),
        [(first, 40, 4000), (second, 80, 16000)],
        "{v:#}"
    );
    // Another build (its build id differs; whether its lines moved, memlens cannot
    // know): one site of main, both lines' changes together, labelled with the line that
    // allocated most.
    let v = diff_json(&a, &c, &["--top", "100"]);
    assert_eq!(main_sites(&v), [(second, 120, 20000)], "{v:#}");
}

/// Run memlens with stdout on a new pseudo-terminal: (status, stderr).
fn stdout_on_terminal(args: &[&str]) -> (Option<i32>, String) {
    let (_master, slave) = pty();
    let o = Command::new(memlens())
        .args(args)
        .stdout(slave)
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8(o.stderr).unwrap())
}

/// Two windows of one trace: report_phases.c's phases, split at the heap's peak (the
/// marker's 1 MiB block, allocated at that instant and so in both windows).
#[test]
fn diff_of_two_windows_of_one_trace() {
    let r = run(&build_c("report_phases.c", "report_phases"), &[]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let trace = r.only_trace();
    let peak_ms = report(&trace)["totals"]["peak_heap_time_ms"]
        .as_f64()
        .unwrap();
    let at = format!("{}ns", (peak_ms * 1e6).round() as u64);
    let (before, after) = (format!("..{at}"), format!("{at}.."));
    let args = [
        "diff",
        s(&trace),
        "--before-window",
        &before,
        "--after-window",
        &after,
        "--metric",
        "allocations",
        "--top",
        "100",
    ];
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let v: Value = serde_json::from_str(&ok(&memlens_cmd(&json_args))).unwrap();
    assert_eq!(v["before_window"]["whole_run"], false);
    assert_eq!(v["before_window"]["from_ms"], 0.0);
    assert_eq!(v["after_window"]["from_ms"], v["before_window"]["to_ms"]);
    assert_eq!(v["after_window"]["to_ms"], v["after_window"]["run_ms"]);
    // The first window does not reach the end, where the leak check is.
    assert_eq!(v["leak_check"], false);
    assert!(v["totals"]["leaked_bytes"].is_null());
    assert_eq!(
        v["totals"]["allocations"],
        serde_json::json!({"before": 501, "after": 301, "change": -200})
    );
    let site = |f: &str| -> Value {
        v["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stack"][0]["function"] == f)
            .unwrap_or_else(|| panic!("no site {f} in {v:#}"))
            .clone()
    };
    let one = site("phase_one");
    assert_eq!(one["status"], "vanished");
    assert_eq!(one["before"]["allocations"], 500);
    assert_eq!(one["before"]["bytes_allocated"], 50_000);
    assert_eq!(one["change"]["allocations"], -500);
    let two = site("phase_two");
    assert_eq!(two["status"], "new");
    assert_eq!(two["after"]["allocations"], 300);
    assert_eq!(two["after"]["bytes_allocated"], 60_000);
    // Ordered by the size of the change.
    assert_eq!(v["sites"][0]["stack"][0]["function"], "phase_one");
    // The marker is allocated at the split: once in each window, live at the first one's
    // end (freed just after).
    let marker = site("marker");
    assert_eq!(marker["status"], "both");
    assert_eq!(marker["change"]["allocations"], 0);
    assert_eq!(marker["before"]["exit_bytes"], 1 << 20);
    assert_eq!(marker["change"]["exit_bytes"], -(1 << 20));

    // The text names both windows and why leaks are not compared.
    let text = ok(&memlens_cmd(&args));
    assert!(text.contains(", from 0.000 ms to "), "{text}");
    assert!(text.contains("\n  live at end "), "{text}");
    assert!(
        text.contains("Sites by change in allocations made in the window (--metric allocations)"),
        "{text}"
    );
    assert!(
        text.contains("leak metrics are not compared: before ends before the run does"),
        "{text}"
    );
    assert!(text.contains("phase_one"), "{text}");

    // One trace and no window, or a window without `..`: one sentence each.
    one_sentence(
        &memlens_cmd(&["diff", s(&trace)]),
        "give a second trace to compare with, or --before-window and --after-window",
    );
    one_sentence(
        &memlens_cmd(&["diff", s(&trace), "--before-window", "2s"]),
        "--before-window 2s: write FROM..TO",
    );
    one_sentence(
        &memlens_cmd(&["diff", s(&trace), "--after-window", "1h.."]),
        "--after-window: its start 1h 00m is at or after the end of the run",
    );
}

/// One line on stderr starting `memlens: error: `, containing `want`, status 125.
fn one_sentence(o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(o.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("memlens: error: "), "{err}");
    assert!(err.contains(want), "{want:?} not in {err}");
}

#[test]
fn bad_input_gets_one_sentence_and_no_panic() {
    let dir = scratch("profile-errors");
    let text = dir.join("not-a-trace.txt");
    std::fs::write(&text, "hello, I am not a trace\n").unwrap();
    let missing = "/nonexistent/memlens.trace";
    let (a, _) = traces();
    for path in [s(&text), missing] {
        let want = if path == missing {
            missing
        } else {
            "is not a memlens trace"
        };
        one_sentence(&memlens_cmd(&["flamegraph", path, "-o", "/dev/null"]), want);
        one_sentence(&memlens_cmd(&["export", path, "--format", "json"]), want);
        one_sentence(&memlens_cmd(&["diff", s(a), path]), want);
        one_sentence(&memlens_cmd(&["diff", path, s(a)]), want);
    }

    // An unknown metric: clap's usage error, with the valid names.
    for args in [
        vec!["flamegraph", s(a), "--metric", "fragmentation"],
        vec![
            "export",
            s(a),
            "--format",
            "collapsed",
            "--metric",
            "fragmentation",
        ],
        vec!["diff", s(a), s(a), "--metric", "fragmentation"],
    ] {
        let o = memlens_cmd(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(
            err.starts_with("error: invalid value 'fragmentation' for '--metric <METRIC>'"),
            "{err}"
        );
        assert!(
            err.contains("possible values: allocations, allocated, peak,"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }

    // Binary output to a terminal.
    let (code, err) = stdout_on_terminal(&["export", s(a), "--format", "pprof"]);
    assert_eq!(code, Some(125), "{err}");
    assert_eq!(
        err,
        "memlens: error: refusing to write a binary pprof profile to the terminal: give -o FILE (e.g. -o heap.pb.gz) or redirect stdout\n"
    );
    let (code, err) = stdout_on_terminal(&["flamegraph", s(a)]);
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("refusing to write an SVG flame graph to the terminal"),
        "{err}"
    );

    // --metric where it means nothing; an unwritable output.
    one_sentence(
        &memlens_cmd(&[
            "export",
            s(a),
            "--format",
            "pprof",
            "--metric",
            "peak",
            "-o",
            "/dev/null",
        ]),
        "--metric applies to --format collapsed only",
    );
    one_sentence(
        &memlens_cmd(&["flamegraph", s(a), "-o", "/nonexistent/dir/x.svg"]),
        "cannot write /nonexistent/dir/x.svg: ",
    );

    // Leak metrics of a trace without the exit scan.
    let r = run_with(&["--leak-check=no"], &program(), &[]);
    let t = r.only_trace();
    one_sentence(
        &memlens_cmd(&["flamegraph", s(&t), "--metric", "leaked", "-o", "/dev/null"]),
        "has no leak check (the run had --leak-check=no, or the scan could not run), so --metric leaked is unknown",
    );
    one_sentence(
        &memlens_cmd(&["diff", s(&t), s(a), "--metric", "definitely-lost"]),
        "so --metric definitely-lost is unknown",
    );
    // ...but the rest still works, with the leak keys null.
    let v: Value =
        serde_json::from_str(&ok(&memlens_cmd(&["export", s(&t), "--format", "json"]))).unwrap();
    assert_eq!(v["leak_check"], false);
    assert!(v["totals"]["leaked_bytes"].is_null());
    assert_eq!(v["totals"]["bytes_allocated"], 15944);
    let v = diff_json(&t, a, &[]);
    assert_eq!(v["leak_check"], false);
    assert!(v["totals"]["leaked_bytes"].is_null());
    assert_eq!(v["unchanged_sites"], 4);
}
