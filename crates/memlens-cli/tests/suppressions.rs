//! Suppressions from the command line: `--suppressions` (Valgrind and LeakSanitizer files),
//! `--gen-suppressions=all` (blocks that, pasted into a file, suppress what they were made
//! from), the built-in set (`--default-suppressions`, `--show-default-suppressions`), and
//! their effect on `memlens check`'s verdict.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn memlens_out(args: &[&str], trace: Option<&Path>) -> Output {
    let mut c = Command::new(memlens());
    c.args(args);
    if let Some(t) = trace {
        c.arg(t);
    }
    c.output().unwrap()
}

/// `memlens leaks --format json --show-leak-kinds=all [extra] TRACE`.
fn leaks_all(trace: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--show-leak-kinds=all"];
    args.extend(extra);
    leaks_json(trace, &args)
}

const KINDS: [&str; 4] = [
    "definitely_lost",
    "indirectly_lost",
    "possibly_lost",
    "still_reachable",
];

fn total(summary: &Value) -> (u64, u64) {
    KINDS.iter().fold((0, 0), |acc, k| {
        let a = amount(&summary[k]);
        (acc.0 + a.0, acc.1 + a.1)
    })
}

#[test]
fn generated_suppressions_suppress_every_record_they_were_made_from() {
    let exe = build(
        "g++",
        "leaks/containers.cpp",
        "supp-containers",
        &["-g", "-O0"],
    );
    let run = run_with(&["-q"], &exe, &[]);
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let trace = run.only_trace();
    let raw = leaks_json(
        &trace,
        &["--default-suppressions=no", "--gen-suppressions=all"],
    );
    let records = raw["records"].as_array().unwrap();
    assert!(records.len() >= 10, "{} records", records.len());
    let supp: String = records
        .iter()
        .map(|r| r["suppression"].as_str().unwrap().to_string())
        .collect();
    // Valgrind's layout: C++ frames by their mangled names, operator new as _Znwm.
    assert!(
        supp.contains(
            "   Memcheck:Leak\n   match-leak-kinds: definite\n   fun:_Znwm\n   fun:_Z17lose_short_stringv\n"
        ),
        "{supp}"
    );
    let file = run.dir.join("generated.supp");
    std::fs::write(&file, &supp).unwrap();
    let arg = format!("--suppressions={}", file.display());
    let got = leaks_all(&trace, &["--default-suppressions=no", &arg]);
    assert_eq!(total(&got["summary"]), (0, 0), "{}", got["summary"]);
    assert_eq!(
        amount(&got["summary"]["suppressed"]),
        total(&raw["summary"])
    );
    assert!(got["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["suppressed_by"] == "<insert_a_suppression_name_here>"));
    // Every generated entry has the same name; each is its own used_suppression line, by
    // its place (memcheck's), and together they count every record.
    let used = got["used_suppressions"].as_array().unwrap();
    assert!(used.len() > 1, "{used:?}");
    let counted: u64 = used.iter().map(|u| u["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, records.len() as u64);
    let mut origins: Vec<&str> = used.iter().map(|u| u["origin"].as_str().unwrap()).collect();
    assert_eq!(origins[0], format!("{}:2", file.display()));
    origins.sort();
    origins.dedup();
    assert_eq!(origins.len(), used.len(), "one line per entry");
}

#[test]
fn leaksanitizer_list_hides_one_record() {
    let exe = build(
        "g++",
        "leaks/containers.cpp",
        "supp-lsan-containers",
        &["-g", "-O0"],
    );
    let run = run_with(&["-q"], &exe, &[]);
    let trace = run.only_trace();
    let raw = leaks_all(&trace, &[]);
    let file = run.dir.join("lsan.supp");
    std::fs::write(&file, "# LeakSanitizer\nleak:lose_short_string\n").unwrap();
    let arg = format!("--suppressions={}", file.display());
    let got = leaks_all(&trace, &[&arg]);
    let before = amount(&raw["summary"]["definitely_lost"]);
    let after = amount(&got["summary"]["definitely_lost"]);
    // lose_short_string() loses one 32-byte std::string buffer.
    assert_eq!((before.0 - after.0, before.1 - after.1), (32, 1));
    let hidden: Vec<&Value> = got["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["suppressed_by"] == "leak:lose_short_string")
        .collect();
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0]["stack"][0]["function"], "lose_short_string()");
}

/// `memlens check` of `exe` fails (exit status 1), and passes (0) with the Valgrind
/// suppressions `supp`.
fn check_passes_only_with(exe: &Path, dir: &Path, supp: &str) {
    let check = |extra: &[&str]| {
        Command::new(memlens())
            .arg("check")
            .arg("-q")
            .arg("-o")
            .arg(dir.join("%p.trace"))
            .args(extra)
            .arg("--")
            .arg(exe)
            .output()
            .unwrap()
    };
    assert_eq!(check(&[]).status.code(), Some(1));
    let file = dir.join("given.supp");
    std::fs::write(&file, supp).unwrap();
    let passing = check(&[&format!("--suppressions={}", file.display())]);
    assert_eq!(
        passing.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passing.stderr)
    );
}

#[test]
fn check_passes_once_the_leaks_are_suppressed() {
    let exe = build_c("leaks/cases.c", "supp-cases");
    let dir = scratch("supp-check");
    check_passes_only_with(
        &exe,
        &dir,
        "{\n   everything\n   Memcheck:Leak\n   match-leak-kinds: all\n   ...\n   fun:main\n}\n",
    );
}

#[test]
fn heap_errors_are_suppressed_as_memcheck_free_errors() {
    let exe = build("g++", "heap_errors.cpp", "supp-heap-errors", CXX_FLAGS);
    let run = run_with(&["-q"], &exe, &[]);
    let trace = run.only_trace();
    let raw = leaks_all(&trace, &["--gen-suppressions=all"]);
    assert_eq!(raw["error_count"], 6);
    let supp: String = raw["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["suppression"].as_str().unwrap().to_string())
        .collect();
    assert!(
        supp.contains("   Memcheck:Free\n   fun:free\n   fun:_Z11double_freev\n"),
        "{supp}"
    );
    let file = run.dir.join("errors.supp");
    std::fs::write(&file, &supp).unwrap();
    let arg = format!("--suppressions={}", file.display());
    let got = leaks_all(&trace, &[&arg]);
    assert_eq!(got["error_count"], 0);
}

#[test]
fn a_bad_suppression_file_stops_before_the_program_runs() {
    let dir = scratch("supp-bad");
    let file = dir.join("bad.supp");
    std::fs::write(
        &file,
        "{\n   x\n   Memcheck:Leak\n   match-leak-kinds: sometimes\n   fun:f\n}\n",
    )
    .unwrap();
    let marker = dir.join("ran");
    let arg = format!("--suppressions={}", file.display());
    let o = Command::new(memlens())
        .args(["run", "-q", &arg, "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:4: unknown leak kind `sometimes`",
            file.display()
        )),
        "{err}"
    );
    assert!(!marker.exists(), "the program ran");
    let missing = memlens_out(
        &[
            "leaks",
            "--suppressions=/nonexistent.supp",
            "/nonexistent.trace",
        ],
        None,
    );
    assert_eq!(missing.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.supp"));
}

#[test]
fn default_suppressions_are_listed_and_parse() {
    let o = memlens_out(&["leaks", "--show-default-suppressions"], None);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    for name in [
        "glibc-thread-dtv",
        "ld.so-internal",
        "libstdc++-emergency-eh-pool",
    ] {
        assert!(text.contains(&format!("   {name}\n")), "{name} missing");
    }
    // What it prints is a suppression file memlens itself reads.
    let file = scratch("supp-defaults").join("defaults.supp");
    std::fs::write(&file, &text).unwrap();
    let exe = build_c("leaks/clean.c", "supp-clean");
    let arg = format!("--suppressions={}", file.display());
    let run = run_with(&["-q", &arg, "--error-exitcode=9"], &exe, &[]);
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
}

/// Flame graphs and exports leave out what the built-in set hides, as `memlens leaks`
/// does: after SIGTERM (no freeres), libstdc++'s 72,704-byte emergency pool is still
/// reachable, but it is not the program's.
#[test]
fn leak_metrics_of_flame_graphs_skip_the_default_suppressions() {
    let exe = build(
        "g++",
        "leaks/exit_modes_cxx.cpp",
        "supp-exit-cxx",
        &["-g", "-O0"],
    );
    let run = run_with(&["-q"], &exe, &["sigterm"]);
    let trace = run.only_trace();
    let raw = leaks_all(&trace, &["--default-suppressions=no"]);
    assert_eq!(amount(&raw["summary"]["still_reachable"]), (72_704, 1));
    let o = memlens_out(
        &[
            "flamegraph",
            "--collapsed",
            "--metric",
            "still-reachable",
            "-o",
            "-",
        ],
        Some(&trace),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let folded = String::from_utf8(o.stdout).unwrap();
    assert!(!folded.contains("72704"), "{folded}");
}

/// A Valgrind suppression names the operator the program called: `delete p` of C++14 is
/// the sized `operator delete(void*, unsigned long)`, `fun:_ZdlPvm`, and memlens's frame 0
/// must be that symbol (not the plain `_ZdlPv`) for the same file to pass `memlens check`.
#[test]
fn valgrind_suppressions_name_the_sized_operator_delete() {
    let exe = build("g++", "heap_errors.cpp", "heap_errors", CXX_FLAGS);
    let dir = scratch("supp-sized-delete");
    // The suppressions Valgrind's memcheck needs for this program.
    check_passes_only_with(
        &exe,
        &dir,
        "{\n   frees\n   Memcheck:Free\n   fun:free\n   ...\n   fun:main\n}\n\
         {\n   sized-delete\n   Memcheck:Free\n   fun:_ZdlPvm\n   fun:_Z10mismatchesv\n}\n",
    );

    // Frame 0 of the errors at `delete`, as generated suppressions and the JSON name it.
    let run = run_with(&["-q"], &exe, &[]);
    let v = leaks_json(&run.only_trace(), &["--gen-suppressions=all"]);
    let deletes: Vec<&Value> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["function"] == "operator delete")
        .collect();
    assert_eq!(deletes.len(), 2, "{v:#}");
    for e in deletes {
        let supp = e["suppression"].as_str().unwrap();
        assert!(
            supp.contains("   Memcheck:Free\n   fun:_ZdlPvm\n   fun:_Z10mismatchesv\n"),
            "{supp}"
        );
    }
}
