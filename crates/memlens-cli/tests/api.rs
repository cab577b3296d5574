//! The recorder's API from inside the program: `include/memlens.h` in
//! `tests/programs/api.c` (regions as budget components, assertions judged by `memlens
//! check`, a thread marked real-time), and the same program without memlens.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn program() -> PathBuf {
    let include = format!("-I{}", repo_root().join("include").display());
    let mut flags = C_FLAGS.to_vec();
    flags.push(&include);
    build("gcc", "api.c", "api", &flags)
}

/// `memlens check -o DIR/t.trace --errors-for-leak-kinds=none [extra] -- api args` in `dir`.
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

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

#[test]
fn without_memlens_every_call_is_a_no_op() {
    for args in [&[][..], &["bad"]] {
        let o = Command::new(program()).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "memlens active: 0\n");
    }
}

#[test]
fn regions_are_components_and_passing_assertions_pass_check() {
    let d = scratch("api-good");
    std::fs::write(
        d.join("memlens.toml"),
        "[component.parse]\nregions = \"parse*\"\nallocations = 3\n\n\
         [component.inner]\nregions = [\"*.inner\"]\nallocated = 50\n",
    )
    .unwrap();
    let o = check(
        &d,
        &["--budgets", "memlens.toml", "--budgets-json", "b.json"],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "memlens active: 1\n");
    let doc = json_file(&d.join("b.json"));
    let parse = component(&doc, "parse");
    assert_eq!(parse["regions"], serde_json::json!(["parse*"]));
    let f = &parse["figures"];
    assert_eq!(
        (
            &f["allocations"],
            &f["allocated"],
            &f["peak"],
            &f["live_at_exit"]
        ),
        (
            &Value::from(3),
            &Value::from(350),
            &Value::from(200),
            &Value::from(200)
        )
    );
    let f = &component(&doc, "inner")["figures"];
    assert_eq!(
        (&f["allocations"], &f["allocated"]),
        (&1.into(), &50.into())
    );
    let asserts = doc["assertions"].as_array().unwrap();
    let got: Vec<(&str, &str, bool)> = asserts
        .iter()
        .map(|a| {
            (
                a["label"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
                a["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("clean", "no_leaks_since", true),
            ("peak 4000", "peak_since", true),
            ("heap under 1 MiB", "max_live", true)
        ]
    );
    // malloc(1000) and malloc(3000) were live at once.
    assert_eq!(
        (&asserts[1]["value"], &asserts[1]["limit"]),
        (&4000.into(), &4000.into())
    );
    // The kept 200 bytes are the live heap at that point.
    assert_eq!(asserts[2]["value"], 200);
    // dsp marks itself real-time but allocates only outside its marks.
    assert_eq!(doc["no_alloc"]["threads"], serde_json::json!(["dsp"]));
    assert_eq!(doc["no_alloc"]["calls"], 0);
    assert!(
        err.contains("budgets: ok (2 limits, 3 assertions checked)"),
        "{err}"
    );
}

#[test]
fn failed_assertions_and_realtime_allocations_fail_check_without_a_budget_file() {
    let d = scratch("api-bad");
    let o = check(&d, &[], &["bad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let leaky_line = line_of("api.c", "kept[1] = malloc(48)");
    for want in [
        "assertions of the program: 5 made, 3 failed (judged on the trace; the program was not stopped)".to_string(),
        "leaky: no leaks since".to_string(),
        "48 B (1 block) allocated since then by api still live".to_string(),
        format!("at leaky_helper (api.c:{leaky_line}) [api]"),
        "heap under 100 B: live heap at most 100 B: 248 B live".to_string(),
        "no-allocation threads (threads marked real-time): 2 calls from 2 stacks on dsp: VIOLATED".to_string(),
        format!("at dsp_tick (api.c:{}) [api]", line_of("api.c", "char *volatile p = malloc(32)")),
        "budgets: FAILED: 2 calls on no-allocation threads, 3 assertions failed".to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} not in:\n{err}");
    }
    // The same as JSON (an output option alone measures the assertions), with the sites
    // of the failed assertions.
    let o = check(&d, &["-q", "--budgets-json", "b.json"], &["bad"]);
    assert_eq!(o.status.code(), Some(1));
    let doc = json_file(&d.join("b.json"));
    assert_eq!(doc["passed"], false);
    let leaky = doc["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["label"] == "leaky")
        .unwrap();
    assert_eq!(
        (&leaky["passed"], &leaky["value"], &leaky["blocks"]),
        (&false.into(), &48.into(), &1.into())
    );
    let site = &leaky["sites"][0];
    assert_eq!(
        (&site["function"], &site["bytes"]),
        (&"malloc".into(), &48.into())
    );
    assert_eq!(site["stack"][0]["function"], "leaky_helper");
    assert_eq!(site["stack"][0]["line"], leaky_line);
    let peak = &doc["assertions"][1];
    assert_eq!(
        (
            &peak["label"],
            &peak["passed"],
            &peak["value"],
            &peak["limit"]
        ),
        (
            &"peak 4000".into(),
            &false.into(),
            &4000.into(),
            &3999.into()
        )
    );
    // The failed peak names the blocks that made it, freed before the assertion.
    let sites: Vec<(u64, u64, &str, u64)> = peak["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["bytes"].as_u64().unwrap(),
                s["blocks"].as_u64().unwrap(),
                s["stack"][0]["function"].as_str().unwrap(),
                s["stack"][0]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sites,
        vec![
            (3000, 1, "main", line_of("api.c", "b = malloc(3000)")),
            (1000, 1, "main", line_of("api.c", "a = malloc(1000)")),
        ]
    );
    assert_eq!(peak["blocks"], 2);
}

/// `cargo test --lib` of `tests/programs/rust_api` (which uses the memlens-api crate),
/// with each test binary run by `runner` when given (Cargo's runner setting), after
/// `--` the harness's `args`.
fn cargo_test(runner: Option<String>, args: &[&str]) -> Output {
    let manifest = repo_root().join("tests/programs/rust_api/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust_api_target");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["test", "--offline", "--lib", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .arg("--")
        .args(args)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    match runner {
        Some(r) => cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", r),
        None => cmd.env_remove("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER"),
    };
    cmd.output().unwrap()
}

#[test]
fn rust_tests_with_memlens_api_pass_without_memlens_and_are_gated_by_check() {
    let d = scratch("api-rust");
    // Without memlens: every call is a no-op, both tests pass.
    let o = cargo_test(None, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("test tests::leaks_a_buffer ... ok"), "{out}");
    assert!(out.contains("test result: ok. 2 passed"), "{out}");

    std::fs::write(
        d.join("memlens.toml"),
        "[component.parse]\nregions = \"parse\"\nallocations = 4\n",
    )
    .unwrap();
    let runner = |extra: &str| {
        format!(
            "{} check -o {}/t.%p.trace --errors-for-leak-kinds=none {extra} --",
            memlens().display(),
            d.display()
        )
    };
    // Under memlens check, the test within its limits: the region is a component (a Vec
    // of 4 Strings and the 3 one-byte Strings), both assertions hold.
    let json = d.join("b.json");
    let o = cargo_test(
        Some(runner(&format!(
            "--budgets {}/memlens.toml --budgets-json {}",
            d.display(),
            json.display()
        ))),
        &["--skip", "leaks_a_buffer"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("budgets: ok (1 limit, 2 assertions checked)"),
        "{err}"
    );
    let doc = json_file(&json);
    let f = &component(&doc, "parse")["figures"];
    assert_eq!(
        (&f["allocations"], &f["allocated"], &f["live_at_exit"]),
        (&4.into(), &99.into(), &0.into())
    );

    // Both tests: the leaking one makes check, hence cargo test, fail, naming the site.
    let o = cargo_test(Some(runner("")), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    let line = line_of("rust_api/src/lib.rs", "vec![7u8; 4096]");
    for want in [
        "leaks_a_buffer frees everything: no leaks since".to_string(),
        "4.00 KiB (1 block) allocated since then by tests::leaks_a_ still live".to_string(),
        format!("at rust_api_example::leak_buffer (lib.rs:{line})"),
        "within_its_limit frees everything: no leaks since".to_string(),
        "budgets: FAILED: 1 assertion failed".to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} not in:\n{err}");
    }
}

/// A virtual environment (with the system's site packages, for pytest) with the
/// pytest-memlens plugin installed from the repository; `None` (skipped, or failed under
/// CI) when python3's venv or pytest is missing.
fn pytest_venv(dir: &Path) -> Option<PathBuf> {
    // The interpreter Debian's python3-pytest belongs to.
    let python = system_python()?;
    let venv = dir.join("venv");
    let o = Command::new(&python)
        .args(["-m", "venv", "--system-site-packages"])
        .arg(&venv)
        .output()
        .unwrap();
    if !o.status.success() {
        skip_or_fail(&format!(
            "python3 -m venv does not work (apt-get install python3-venv): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
        return None;
    }
    let py = venv.join("bin/python");
    let has_pytest = Command::new(&py)
        .args(["-c", "import pytest"])
        .output()
        .unwrap()
        .status
        .success();
    if !has_pytest {
        skip_or_fail("pytest is not installed (apt-get install python3-pytest)");
        return None;
    }
    // The plugin's own build backend needs nothing from the network or setuptools.
    let o = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
        ])
        .arg(repo_root().join("python/pytest-memlens"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "pip install of the plugin failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(py)
}

/// `[memlens check -o DIR/t.trace --errors-for-leak-kinds=none --budgets-json DIR/b.json
/// [--python-allocator=pymalloc] --] PY -m pytest --memlens` in
/// tests/programs/pytest_limits. With pymalloc the limits are about the tests' large
/// buffers only, and exact; with every Python object seen (the default) the tests' small
/// objects count too.
fn pytest(py: &Path, dir: &Path, under_memlens: bool, pymalloc: bool) -> Output {
    let mut cmd = if under_memlens {
        let mut c = Command::new(memlens());
        c.arg("check")
            .arg("-o")
            .arg(dir.join("t.trace"))
            .arg("--errors-for-leak-kinds=none")
            .arg("--budgets-json")
            .arg(dir.join("b.json"));
        if pymalloc {
            c.arg("--python-allocator=pymalloc");
        }
        c.arg("--").arg(py);
        c
    } else {
        Command::new(py)
    };
    cmd.current_dir(repo_root().join("tests/programs/pytest_limits"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--memlens",
            ".",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap()
}

#[test]
fn pytest_plugin_limits_are_judged_by_check() {
    let d = scratch("api-pytest");
    let Some(py) = pytest_venv(&d) else { return };
    // Without memlens: the tests pass, and the plugin says nothing was checked.
    let o = pytest(&py, &d, false, true);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("3 passed"), "{out}");
    assert!(out.contains("memlens: not running under memlens"), "{out}");
    // Under memlens check: pytest passes both, check fails on the one over its limits.
    let o = pytest(&py, &d, true, true);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("3 passed"), "{out}");
    for want in [
        "assertions of the program: 5 made, 2 failed",
        "test_limits.py::test_within_limit: peak: peak since",
        "test_limits.py::test_over_limit: peak: peak since",
        "test_limits.py::test_over_limit: leaked: no leaks since",
        "budgets: FAILED: 2 assertions failed",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let doc = json_file(&d.join("b.json"));
    let got: Vec<(&str, bool, u64, u64)> = doc["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["label"].as_str().unwrap(),
                a["passed"].as_bool().unwrap(),
                a["value"].as_u64().unwrap(),
                a["limit"].as_u64().unwrap(),
            )
        })
        .collect();
    // bytearray(n) asks malloc for n + 1 bytes.
    assert_eq!(
        got,
        vec![
            (
                "test_limits.py::test_within_limit: peak",
                true,
                (8 << 20) + 1,
                24 << 20
            ),
            ("test_limits.py::test_within_limit: leaked", true, 0, 0),
            (
                "test_limits.py::test_over_limit: peak",
                false,
                (32 << 20) + 1 + (1 << 20) + 1,
                24 << 20
            ),
            (
                "test_limits.py::test_over_limit: leaked",
                false,
                (1 << 20) + 1,
                0
            ),
            (
                "test_limits.py::test_peak_at_return: peak",
                true,
                (4 << 20) - 511,
                4 << 20
            ),
        ]
    );
    // The failed peak's largest site is the 32 MiB buffer, freed before the assertion.
    let peak_site = &doc["assertions"][2]["sites"][0];
    assert_eq!(
        (&peak_site["blocks"], &peak_site["bytes"]),
        (&1.into(), &((32 << 20) + 1).into()),
        "{}",
        doc["assertions"][2]
    );
    let site = &doc["assertions"][3]["sites"][0];
    assert_eq!(
        (&site["blocks"], &site["bytes"]),
        (&1.into(), &((1 << 20) + 1).into())
    );

    // Every Python object seen (the default): a test that keeps nothing still passes
    // `leaked=0`. What the plugin allocates to make its assertions (the labels, the mark,
    // ctypes' temporaries), and what pytest allocates after the test returns, are not the
    // test's. The leaking test's largest block is its buffer.
    let o = pytest(&py, &d, true, false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let doc = json_file(&d.join("b.json"));
    let a = doc["assertions"].as_array().unwrap();
    let leaked: Vec<(&str, bool, u64)> = a
        .iter()
        .filter(|a| a["label"].as_str().unwrap().ends_with(": leaked"))
        .map(|a| {
            (
                a["label"].as_str().unwrap(),
                a["passed"].as_bool().unwrap(),
                a["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        leaked[0],
        ("test_limits.py::test_within_limit: leaked", true, 0),
        "{err}"
    );
    assert!(!leaked[1].1, "{err}");
    assert_eq!(a[3]["sites"][0]["bytes"], (1 << 20) + 1, "{}", a[3]);
    // A peak reached when the test returns: its buffer and the test's own small objects
    // (the bytearray's 56 bytes), not the 400-odd bytes the plugin allocates to assert.
    let at_return = &a[4];
    assert_eq!(
        at_return["label"], "test_limits.py::test_peak_at_return: peak",
        "{at_return}"
    );
    let over = at_return["value"].as_u64().unwrap() - ((4 << 20) - 511);
    assert!(
        at_return["passed"].as_bool().unwrap() && over <= 128,
        "{at_return}"
    );
}
