//! `memlens leaks --format sarif` as GitHub code scanning reads it: source files relative
//! to a source root (`uriBaseId` `%SRCROOT%`), the whole stack of each result, and every
//! file valid against the official SARIF 2.1.0 schema, vendored in
//! `tests/sarif/sarif-schema-2.1.0.json` (OASIS sarif-spec, `sarif-2.1/schema/`), checked
//! with Python's `jsonschema` (Debian package python3-jsonschema).

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Errors of `doc` against the official schema, one line each; `None` when the validator
/// is not installed (skipped locally, a failure under CI).
fn schema_errors(doc: &Value, name: &str) -> Option<Vec<String>> {
    let python = system_python()?;
    const CHECK: &str = "import json, sys\n\
try:\n    import jsonschema\nexcept ImportError:\n    sys.exit(3)\n\
schema = json.load(open(sys.argv[1]))\n\
doc = json.load(open(sys.argv[2]))\n\
v = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)\n\
for e in sorted(v.iter_errors(doc), key=str):\n    print(list(e.absolute_path), e.message)\n";
    let file = scratch(name).join("out.sarif");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let o = Command::new(&python)
        .args(["-c", CHECK])
        .arg(repo_root().join("tests/sarif/sarif-schema-2.1.0.json"))
        .arg(&file)
        .output()
        .unwrap();
    if o.status.code() == Some(3) {
        skip_or_fail("python3's jsonschema is not installed (apt-get install python3-jsonschema)");
        return None;
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

fn sarif(trace: &Path, extra: &[&str], cwd: &Path) -> Value {
    let o = Command::new(memlens())
        .args(["leaks", "--format", "sarif"])
        .args(extra)
        .arg(trace)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn names(stack: &Value) -> Vec<&str> {
    stack["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["location"]["logicalLocations"][0]["name"]
                .as_str()
                .unwrap()
        })
        .collect()
}

#[test]
fn sarif_names_sources_under_the_root_and_carries_the_whole_stack() {
    let exe = build_c("profile.c", "profile");
    let r = run(&exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    let trace = r.only_trace();
    let root = repo_root();
    let v = sarif(&trace, &["--source-root", root.to_str().unwrap()], &root);
    let run = &v["runs"][0];
    assert_eq!(
        run["originalUriBaseIds"],
        json!({"%SRCROOT%": {"uri": format!("file://{}/", root.display())}})
    );
    let results = run["results"].as_array().unwrap();
    let leak: Vec<&Value> = results
        .iter()
        .filter(|r| r["ruleId"] == "definitely_lost")
        .collect();
    assert_eq!(leak.len(), 1, "{results:#?}");
    let leak = leak[0];
    let here = json!({"uri": "tests/programs/profile.c", "uriBaseId": "%SRCROOT%"});
    let loc = &leak["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"], here);
    assert_eq!(
        loc["region"]["startLine"].as_u64(),
        Some(line_of("profile.c", "char *p = malloc(200);"))
    );
    // The whole allocation stack, the allocator first.
    let stack = &leak["stacks"][0];
    let names = names(stack);
    assert_eq!(names[..4], ["malloc", "leak_blocks", "run", "main"]);
    assert_eq!(names[4..], BELOW_MAIN);
    let frames = stack["frames"].as_array().unwrap();
    let run_frame = &frames[2]["location"]["physicalLocation"];
    assert_eq!(run_frame["artifactLocation"], here);
    assert_eq!(
        run_frame["region"]["startLine"].as_u64(),
        Some(line_of("profile.c", "    leak_blocks();"))
    );
    assert_eq!(frames[2]["module"], "profile");
    // No file of the C library is named as the repository's.
    for f in &frames[4..] {
        let a = &f["location"]["physicalLocation"]["artifactLocation"];
        assert!(a["uriBaseId"].is_null(), "{f}");
    }
    if let Some(errors) = schema_errors(&v, "sarif-profile") {
        assert_eq!(errors, Vec::<String>::new());
        // The check is real: a wrong type is caught.
        let mut bad = v.clone();
        bad["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
            ["uriBaseId"] = json!(5);
        assert_eq!(
            schema_errors(&bad, "sarif-bad").unwrap().len(),
            1,
            "a wrong uriBaseId must fail the schema"
        );
    }

    // Without --source-root: the top of the git work tree around the current directory.
    let proj = scratch("sarif-proj");
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    std::fs::create_dir_all(proj.join("src/deep")).unwrap();
    let v = sarif(&trace, &[], &proj.join("src/deep"));
    let proj = proj.canonicalize().unwrap();
    assert_eq!(
        v["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"],
        format!("file://{}/", proj.display())
    );
    // profile.c is outside that root: an absolute file URI, no base.
    let leak = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "definitely_lost")
        .unwrap();
    assert_eq!(
        leak["locations"][0]["physicalLocation"]["artifactLocation"],
        json!({"uri": format!("file://{}", source("profile.c").display())})
    );
}

#[test]
fn sarif_of_heap_errors_is_valid_with_the_bad_call_stack() {
    let exe = build("g++", "heap_errors.cpp", "heap_errors", CXX_FLAGS);
    let r = run_with(&["-q"], &exe, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    let root = repo_root();
    let v = sarif(
        &r.only_trace(),
        &["--source-root", root.to_str().unwrap()],
        &root,
    );
    let results = v["runs"][0]["results"].as_array().unwrap();
    let double = results
        .iter()
        .find(|r| r["ruleId"] == "double_free")
        .unwrap();
    let stack = names(&double["stacks"][0]);
    assert_eq!(&stack[..3], ["free", "double_free()", "main"], "{stack:?}");
    assert_eq!(
        double["locations"][0]["physicalLocation"]["artifactLocation"],
        json!({"uri": "tests/programs/heap_errors.cpp", "uriBaseId": "%SRCROOT%"})
    );
    if let Some(errors) = schema_errors(&v, "sarif-errors") {
        assert_eq!(errors, Vec::<String>::new());
    }
}
