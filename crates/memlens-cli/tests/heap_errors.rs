//! Heap errors: each is caught before it reaches glibc (the program survives and prints
//! what it prints), reported once per stack with a count, with the allocation stack.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn heap_errors_are_caught_reported_and_survived() {
    let exe = build("g++", "heap_errors.cpp", "heap_errors", CXX_FLAGS);
    let run = run_with(&["-q", "--free-stacks"], &exe, &[]);
    assert_eq!(run.stdout(), "before\nafter\n");
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let o = Command::new(memlens())
        .args(["leaks", "--format", "json"])
        .arg(run.only_trace())
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    let mut got: Vec<(String, String, u64, String)> = errors
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["function"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
                e["stack"][0]["function"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let s = |a: &str, b: &str, n: u64, c: &str| (a.to_string(), b.to_string(), n, c.to_string());
    assert_eq!(
        got,
        vec![
            s("double_free", "free", 3, "double_free()"),
            s("interior_free", "free", 1, "interior_free()"),
            s("invalid_free", "free", 1, "invalid_free()"),
            s("mismatched_free", "free", 1, "mismatches()"),
            s("mismatched_free", "operator delete", 1, "mismatches()"),
            s("mismatched_free", "operator delete", 1, "mismatches()"),
        ]
    );
    let double = errors.iter().find(|e| e["kind"] == "double_free").unwrap();
    assert_eq!(double["allocation"]["size"], 40);
    assert_eq!(double["allocation"]["allocator"], "malloc");
    assert_eq!(
        double["allocation"]["stack"][0]["function"],
        "double_free()"
    );
    assert_eq!(double["first_free_stack"][0]["function"], "double_free()");
    // 6 distinct errors; no leak: every block was released in the end (the double-freed
    // and interior-freed ones by their valid call).
    assert_eq!(v["error_count"], 6);
    assert_eq!(v["summary"]["definitely_lost"]["blocks"], 0);
}

#[test]
fn check_fails_on_heap_errors_and_run_keeps_the_status() {
    let exe = build("g++", "heap_errors.cpp", "heap_errors_check", CXX_FLAGS);
    let dir = scratch("check");
    let o = Command::new(memlens())
        .args(["check", "-q", "-o"])
        .arg(dir.join("t.%p.trace"))
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = Command::new(memlens())
        .args(["check", "-q", "--error-exitcode=42", "-o"])
        .arg(dir.join("u.%p.trace"))
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(42));
    // 0, as memcheck's option means it: the program's own status, errors or not.
    let o = Command::new(memlens())
        .args(["check", "-q", "--error-exitcode=0", "-o"])
        .arg(dir.join("v.%p.trace"))
        .arg("--")
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let run = run_with(&["-q"], &exe, &[]);
    assert_eq!(run.output.status.code(), Some(0));
}
