//! CPython programs (tests/programs/python/): Python frames in every stack, the leak
//! check when the program's work is done, pymalloc, advice. Run with Debian's python3
//! (required under CI) and with every pyenv build of 3.11, 3.12 and 3.13 this machine has
//! under ~/.pyenv/versions; 3.10 must be refused in one sentence with native stacks.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CPython to test with: its executable and its `pythonX.Y-config`.
struct Python {
    exe: PathBuf,
    config: Option<PathBuf>,
    minor: u32,
}

/// Debian's python3 (skipped or failed as a missing tool), then pyenv's 3.11-3.13.
fn pythons() -> Vec<Python> {
    let mut out = Vec::new();
    // Debian's, not a pyenv shim earlier on PATH.
    if let Some(p) = system_python() {
        out.push(python_at(&p));
    }
    out.extend(pyenv(&["3.11", "3.12", "3.13"]));
    out.retain(|p| (11..=13).contains(&p.minor));
    out
}

/// pyenv builds of these minor versions under ~/.pyenv/versions.
fn pyenv(minors: &[&str]) -> Vec<Python> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let dir = Path::new(&home).join(".pyenv/versions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    found.sort();
    let mut out = Vec::new();
    for m in minors {
        if let Some(v) = found.iter().find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{m}."))
        }) {
            let exe = v.join(format!("bin/python{m}"));
            if exe.is_file() {
                out.push(python_at(&exe));
            }
        }
    }
    out
}

fn python_at(exe: &Path) -> Python {
    let o = Command::new(exe)
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .output()
        .unwrap();
    let minor: u32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let resolved = exe.canonicalize().unwrap();
    let config = resolved
        .parent()
        .map(|d| d.join(format!("python3.{minor}-config")))
        .filter(|c| c.is_file());
    Python {
        exe: exe.to_path_buf(),
        config,
        minor,
    }
}

fn script(name: &str) -> String {
    source(&format!("python/{name}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn names(frames: &[&Value]) -> Vec<(String, Option<u64>)> {
    frames
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64(),
            )
        })
        .collect()
}

/// The top of a stack as (function, file name, line).
fn top(frames: &[&Value], n: usize) -> Vec<(String, String, u64)> {
    frames
        .iter()
        .take(n)
        .map(|f| {
            let file = f["file"].as_str().unwrap_or("");
            (
                f["function"].as_str().unwrap_or("").to_string(),
                file.rsplit('/').next().unwrap().to_string(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// An ever-growing module-level cache: the growth section names the Python line, with the
/// Python frames above it and no interpreter frame in between; the advice speaks Python.
#[test]
fn a_growing_cache_is_found_at_its_python_line_on_every_version() {
    let src = "python/cache_growth.py";
    let encode = line_of(src, "MARK: encode");
    let add = line_of(src, "MARK: cache-add");
    for py in pythons() {
        let r = run(&py.exe, &[&script("cache_growth.py"), "30"]);
        assert!(r.output.status.success(), "{}", r.stderr());
        let err = r.stderr();
        assert!(
            err.contains(&format!(
                "==memlens== Python 3.{}.",
                py.minor
            )) && err.contains("stacks show Python functions and lines; every Python object was allocated with malloc"),
            "{}: {err}",
            py.exe.display()
        );
        let rep = report(&r.only_trace());
        let growing = rep["growth"]["sites"].as_array().unwrap();
        let site = growing
            .iter()
            .find(|g| frames(g).first().is_some_and(|f| f["function"] == "encode"))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no growing site at encode: {growing:?}",
                    py.exe.display()
                )
            });
        let f = frames(site);
        assert_eq!(
            top(&f, 4),
            vec![
                ("encode".into(), "cache_growth.py".into(), encode),
                ("handle_request".into(), "cache_growth.py".into(), add),
                (
                    "main".into(),
                    "cache_growth.py".into(),
                    line_of(src, "MARK: call")
                ),
                (
                    "<module>".into(),
                    "cache_growth.py".into(),
                    line_of(src, "MARK: main")
                ),
            ],
            "{}",
            py.exe.display()
        );
        // Nothing of the interpreter's own C code, nor below <module>.
        assert_eq!(f.len(), 4, "{}: {:?}", py.exe.display(), names(&f));
        let advice = rep["advice"].as_array().unwrap();
        assert!(
            advice.iter().any(|a| a["message"]
                .as_str()
                .unwrap()
                .contains(&format!("the mapping `_cache` filled at handle_request (cache_growth.py:{add}) keeps every entry: bound it, with functools.lru_cache(maxsize=...)"))),
            "{}: {advice:?}",
            py.exe.display()
        );
    }
}

/// The interpreter's own start-up and shutdown leave nothing to report: the leak check
/// runs when the program's work is done, and CPython's objects are recognised.
#[test]
fn an_empty_python_program_passes_the_check_on_every_version() {
    for py in pythons() {
        let dir = scratch("python-pass");
        let o = Command::new(memlens())
            .current_dir(&dir)
            .args(["check", "--"])
            .arg(&py.exe)
            .args(["-c", "pass"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{}: {err}", py.exe.display());
        assert!(
            err.contains("==memlens==    definitely lost: 0 bytes in 0 blocks")
                && err.contains("==memlens==      possibly lost: 0 bytes in 0 blocks"),
            "{}: {err}",
            py.exe.display()
        );
    }
}

/// A C extension built against the interpreter leaks one copy per record: definitely
/// lost, with the extension's C frames below the Python line that called it.
#[test]
fn a_c_extension_leak_shows_c_frames_under_the_python_line() {
    let src = "python/fastparse.c";
    for py in pythons() {
        let Some(config) = &py.config else {
            skip_or_fail(&format!(
                "no python3.{}-config next to {} (apt-get install python3-dev)",
                py.minor,
                py.exe.display()
            ));
            continue;
        };
        let q = |arg: &str| {
            let o = Command::new(config).arg(arg).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let ext_dir = scratch(&format!("fastparse-3{}", py.minor));
        let so = ext_dir.join(format!("fastparse{}", q("--extension-suffix")));
        let mut cc = Command::new("gcc");
        cc.args(["-shared", "-fPIC", "-g", "-O0"])
            .args(q("--includes").split_whitespace())
            .arg(source(src))
            .arg("-o")
            .arg(&so);
        let o = cc.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = run(
            &py.exe,
            &[&script("native_leak.py"), ext_dir.to_str().unwrap()],
        );
        assert!(r.output.status.success(), "{}", r.stderr());
        assert_eq!(r.stdout(), "34000\n");
        let leaks = leaks_json(&r.only_trace(), &["--show-leak-kinds=all"]);
        let at_site: Vec<&Value> = leaks["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rec| rec["stack"][0]["function"] == "normalize_field")
            .collect();
        // Every copy is still allocated when the work is done: 1,000 of 35 bytes.
        let blocks: u64 = at_site.iter().map(|r| r["blocks"].as_u64().unwrap()).sum();
        let bytes: u64 = at_site.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
        assert_eq!((blocks, bytes), (1000, 35_000), "{}", py.exe.display());
        // Nearly all of them definitely lost (a stale copy of the last pointers on the
        // stack may keep a few, as it would under memcheck).
        let lost: u64 = at_site
            .iter()
            .filter(|r| r["kind"] == "definitely_lost")
            .map(|r| r["blocks"].as_u64().unwrap())
            .sum();
        assert!(lost >= 950, "{}: {lost} definitely lost", py.exe.display());
        let rec = at_site
            .iter()
            .find(|r| r["kind"] == "definitely_lost")
            .unwrap();
        let f: Vec<&Value> = rec["stack"].as_array().unwrap().iter().collect();
        assert_eq!(
            top(&f, 3),
            vec![
                (
                    "normalize_field".into(),
                    "fastparse.c".into(),
                    line_of(src, "MARK: normalize-malloc")
                ),
                (
                    "parse_record".into(),
                    "fastparse.c".into(),
                    line_of(src, "MARK: parse-calls")
                ),
                (
                    "<genexpr>".into(),
                    "native_leak.py".into(),
                    line_of("python/native_leak.py", "MARK: genexpr")
                ),
            ],
            "{}",
            py.exe.display()
        );
    }
}

/// Threads, a generator and an async function allocate with their own Python frames
/// (a bytes object of n bytes is one block of n + 33; each line's site holds them, with
/// what the interpreter allocated on the line: `python_line_holds`), and a subprocess in
/// the middle runs.
/// A block kept in the static data of a library that Python loaded with ctypes is still
/// reachable through it, named by its global. The library's data page was
/// left out of the roots in most runs: the recorder's table of its own mappings kept the
/// slot of a region it had unmapped when the kernel gave the same address to an earlier
/// region too (so the scan left out whatever was mapped there later). Three runs: the
/// layout differs from run to run.
#[test]
fn a_global_in_a_ctypes_library_keeps_its_block_reachable() {
    let lib = build(
        "gcc",
        "python/ctypes_keep.c",
        "libctypes_keep.so",
        &["-shared", "-fPIC", "-g", "-O0", "-fno-builtin"],
    );
    for py in pythons() {
        for _ in 0..3 {
            let r = run(&py.exe, &[&script("ctypes_keep.py"), lib.to_str().unwrap()]);
            assert!(r.output.status.success(), "{}", r.stderr());
            assert_eq!(r.stdout(), "ok\n");
            let leaks = leaks_json(&r.only_trace(), &["--show-leak-kinds=all"]);
            let records = leaks["records"].as_array().unwrap();
            let kept: Vec<&Value> = records
                .iter()
                .filter(|rec| rec["bytes"].as_u64() == Some(777))
                .collect();
            assert_eq!(kept.len(), 1, "3.{}: {}", py.minor, leaks["records"]);
            assert_eq!(
                kept[0]["kind"], "still_reachable",
                "3.{}: {}",
                py.minor, kept[0]
            );
            assert_eq!(
                kept[0]["kept_alive_by"], "global `keep` (ctypes_keep.c:7) -> 1 block",
                "3.{}",
                py.minor
            );
        }
    }
}

#[test]
fn threads_generators_and_async_functions_have_their_frames() {
    let src = "python/threads_gen_async.py";
    for py in pythons() {
        let r = run(&py.exe, &[&script("threads_gen_async.py")]);
        assert!(r.output.status.success(), "{}", r.stderr());
        assert_eq!(r.stdout(), "480\n", "{}", py.exe.display());
        let rep = report(&r.only_trace());
        let at = |func: &str, marker: &str| -> Vec<(u64, u64)> {
            let line = line_of(src, marker);
            sites_at(&rep, func)
                .iter()
                .filter(|s| frames(s)[0]["line"].as_u64() == Some(line))
                .map(|s| {
                    (
                        s["allocations"].as_u64().unwrap(),
                        s["bytes_allocated"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        // 4 threads x 100 bytes objects of 3000 + i % 7 bytes.
        let thread_bytes = 4 * (100 * 3033 + (0..100).map(|i| i % 7).sum::<u64>());
        let holds = |sites: &[(u64, u64)], n: u64, bytes: u64| {
            sites
                .iter()
                .any(|&(a, b)| python_line_holds(a, b, n, bytes))
        };
        assert!(
            holds(&at("worker", "MARK: thread-alloc"), 400, thread_bytes),
            "{}: {:?}",
            py.exe.display(),
            at("worker", "MARK: thread-alloc")
        );
        let worker = sites_at(&rep, "worker");
        assert!(worker
            .iter()
            .all(|s| frames(s).iter().any(|f| f["function"] == "Thread.run")));
        // The generator's buffers: 50 x 5,001 bytes, called from <module>.
        let gen = at("chunks", "MARK: generator-alloc");
        assert!(holds(&gen, 50, 250_050), "{}: {gen:?}", py.exe.display());
        // The async function's: 30 x 7,001 bytes.
        let fetch = at("fetch", "MARK: async-alloc");
        assert!(
            holds(&fetch, 30, 210_030),
            "{}: {fetch:?}",
            py.exe.display()
        );
        // A Python line is one site per allocating function: no two sites show the same
        // Python frames (whichever instructions of their lines allocated).
        let mut seen = std::collections::HashSet::new();
        for s in rep["hotspots"]["by_allocations"].as_array().unwrap() {
            let f = frames(s);
            if !f.is_empty() && f.iter().all(|x| x["module"].is_null()) {
                let shown: Vec<String> = f
                    .iter()
                    .map(|x| format!("{} {}:{}", x["function"], x["file"], x["line"]))
                    .collect();
                let key = format!("{} {shown:?}", s["allocator"]);
                assert!(
                    seen.insert(key.clone()),
                    "{}: two sites {key}",
                    py.exe.display()
                );
            }
        }
    }
}

/// Objects under pymalloc's 512 bytes: with memlens's default (PYTHONMALLOC=malloc) the
/// growing history of small dicts is found with its list advice; with
/// --python-allocator=pymalloc the summary says what is hidden and how to see it.
#[test]
fn small_objects_are_seen_unless_pymalloc_is_kept() {
    let src = "python/objects_pymalloc.py";
    let record = line_of(src, "MARK: record");
    let Some(py) = pythons().into_iter().next() else {
        return;
    };
    let r = run(&py.exe, &[&script("objects_pymalloc.py"), "30"]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let rep = report(&r.only_trace());
    let growing = rep["growth"]["sites"].as_array().unwrap();
    assert!(
        growing.iter().any(|g| top(&frames(g), 1)
            == vec![(
                "record".to_string(),
                "objects_pymalloc.py".to_string(),
                record
            )]),
        "{growing:?}"
    );
    assert!(rep["advice"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["message"]
            .as_str()
            .unwrap()
            .contains("the list `history` appended to at record (objects_pymalloc.py:")
            && a["message"]
                .as_str()
                .unwrap()
                .contains("collections.deque(maxlen=...)")));

    let r = run_with(
        &["--python-allocator=pymalloc"],
        &py.exe,
        &[&script("objects_pymalloc.py"), "5"],
    );
    assert!(r.output.status.success(), "{}", r.stderr());
    let err = r.stderr();
    assert!(
        err.contains("used its pymalloc allocator")
            && err.contains(
                "start it with PYTHONMALLOC=malloc (memlens run's default, --python-allocator=malloc;"
            ),
        "{err}"
    );
}

/// Reference cycles holding large buffers (the collector off): the leak check says the
/// buffers are garbage in reference cycles, and the advice names weakref.
#[test]
fn buffers_held_by_reference_cycles_are_named() {
    let src = "python/cycles.py";
    let buffer = line_of(src, "MARK: buffer");
    for py in pythons() {
        let r = run(&py.exe, &[&script("cycles.py")]);
        assert!(r.output.status.success(), "{}", r.stderr());
        let err = r.stderr();
        // memcheck's layout of a heuristic's subtotal: the name in 19 columns.
        assert!(
            err.contains(&format!("{:<19}: ", "pycycle")),
            "{}: {err}",
            py.exe.display()
        );
        let rep = report(&r.only_trace());
        let advice = rep["advice"].as_array().unwrap();
        let cycle = advice
            .iter()
            .find(|a| a["kind"] == "reference_cycle")
            .unwrap_or_else(|| panic!("{}: {advice:?}", py.exe.display()));
        let f = frames(cycle);
        assert_eq!(
            top(&f, 1),
            vec![("Session.__init__".into(), "cycles.py".into(), buffer)],
            "{}",
            py.exe.display()
        );
        // Whole buffers of 256 KiB (+1 for bytearray's NUL), at least one of the twelve.
        let bytes = cycle["live_bytes"].as_u64().unwrap();
        assert!(bytes >= 262_145 && bytes.is_multiple_of(262_145), "{bytes}");
        assert!(cycle["message"].as_str().unwrap().contains("weakref"));
    }
}

/// --python-frames=no: the same run with native stacks only (no Python frame anywhere);
/// the leak check is still taken when the program's work is done, in Python terms.
#[test]
fn python_frames_can_be_turned_off() {
    let Some(py) = pythons().into_iter().next() else {
        return;
    };
    let r = run_with(&["--python-frames=no"], &py.exe, &[&script("cycles.py")]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(!r.stderr().contains("stacks show Python functions"));
    assert!(
        r.stderr().contains(": stacks are native (--python-frames=no); every Python object was allocated with malloc"),
        "{}",
        r.stderr()
    );
    let err = r.stderr();
    // memcheck's layout of a heuristic's subtotal: the name in 19 columns.
    assert!(
        err.contains(&format!("{:<19}: ", "pycycle")),
        "{}: {err}",
        py.exe.display()
    );
    assert!(
        err.contains("the leak check ran when the Python program's work was done"),
        "{err}"
    );
    let rep = report(&r.only_trace());
    let any_py = rep["hotspots"]["by_allocations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| frames(s))
        .any(|f| f["file"].as_str().is_some_and(|p| p.ends_with(".py")));
    assert!(!any_py);
}

/// Older interpreters are refused in one sentence; their stacks stay native.
#[test]
fn python_3_10_is_refused_in_one_sentence() {
    let Some(py) = pyenv(&["3.10"]).into_iter().next() else {
        eprintln!("skipped: no pyenv 3.10 on this machine");
        return;
    };
    let r = run(&py.exe, &["-c", "x = [bytes(1000) for _ in range(10)]"]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(
        r.stderr().contains("==memlens== warning: Python older than 3.11 is not a version whose frames memlens reads (3.11, 3.12 and 3.13), so its stacks show the interpreter's C functions instead of Python functions and lines"),
        "{}",
        r.stderr()
    );
}

/// A forked Python child with --trace-children=yes writes its own trace, with its Python
/// frames (the code objects are defined again there).
#[test]
fn a_forked_python_child_has_its_frames() {
    let Some(py) = pythons().into_iter().next() else {
        return;
    };
    let code = "import os\n\
def child_work():\n    return [bytearray(4321) for _ in range(7)]\n\
pid = os.fork()\n\
if pid == 0:\n    keep = child_work()\n    os._exit(0)\n\
os.waitpid(pid, 0)\n";
    let r = run_with(&["--trace-children=yes"], &py.exe, &["-c", code]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let traces = r.traces();
    assert_eq!(traces.len(), 2, "{traces:?}");
    let child = traces
        .iter()
        .map(|t| report(t))
        .find(|rep| !rep["trace"]["forked_from"].is_null())
        .unwrap();
    // 3.11 runs the comprehension in its own frame (<listcomp>), 3.12+ inline.
    let sites: Vec<&Value> = sites_through(&child, "child_work")
        .into_iter()
        .filter(|s| {
            python_line_holds(
                s["allocations"].as_u64().unwrap(),
                s["bytes_allocated"].as_u64().unwrap(),
                7,
                7 * 4322,
            )
        })
        .collect();
    assert_eq!(sites.len(), 1, "{:?}", sites_through(&child, "child_work"));
    let f = frames(sites[0]);
    assert!(
        f.iter()
            .any(|x| x["function"] == "child_work" && x["file"] == "<string>"),
        "{:?}",
        names(&f)
    );
}

/// Every view shows the Python frames: the report (and when the check ran), the flame
/// graph (Python frames by function and file, in their own blue colours), pprof (the .py
/// file and line), SARIF (the C extension's location, with the .py frame in its stack)
/// and the web page.
#[test]
fn every_view_shows_the_python_frames() {
    let Some(py) = pythons().into_iter().next() else {
        return;
    };
    let src = "python/cache_growth.py";
    let r = run(&py.exe, &[&script("cache_growth.py"), "5"]);
    assert!(r.output.status.success(), "{}", r.stderr());
    assert!(
        r.stderr().contains(
            "==memlens== the leak check ran when the Python program's work was done, at "
        ),
        "{}",
        r.stderr()
    );
    let trace = r.only_trace();
    let m = |args: &[&str]| {
        let o = Command::new(memlens()).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let text = String::from_utf8(m(&["report", trace.to_str().unwrap()])).unwrap();
    assert!(
        text.contains(&format!(
            "    at encode (cache_growth.py:{})",
            line_of(src, "MARK: encode")
        )) && text
            .contains("  python     the leak check ran when the Python program's work was done"),
        "{text}"
    );
    // The header's end is the process's, as the runtime is, not where the figures stop.
    let after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{text}"))
            .trim()
    };
    assert_eq!(
        after("  ended      exited with status 0 after "),
        after("  runtime "),
        "{text}"
    );
    // Flame graph: the frame is `encode (cache_growth.py)`, filled blue (r < g < b = 230).
    let svg = String::from_utf8(m(&["flamegraph", trace.to_str().unwrap(), "-o", "-"])).unwrap();
    let at = svg
        .find("<title>encode (cache_growth.py) (")
        .unwrap_or_else(|| panic!("no Python frame in the flame graph"));
    let rect = &svg[at..at + svg[at..].find("/>").unwrap()];
    let fill = rect
        .split("fill=\"rgb(")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let rgb: Vec<u32> = fill.split(',').map(|c| c.parse().unwrap()).collect();
    assert!(
        rgb[2] == 230 && rgb[0] < rgb[1] && rgb[1] < rgb[2],
        "{fill}"
    );
    // pprof: Python locations carry the .py file and line.
    let dir = scratch("python-views");
    let pb = dir.join("p.pb.gz");
    m(&[
        "export",
        "--format",
        "pprof",
        "-o",
        pb.to_str().unwrap(),
        trace.to_str().unwrap(),
    ]);
    if tool("go", "golang-go").is_some() {
        let top = go_pprof(&dir, &pb, &["-sample_index=alloc_space", "-top", "-lines"]);
        assert!(
            top.contains(&format!(
                "encode {}:{}",
                script("cache_growth.py"),
                line_of(src, "MARK: encode")
            )),
            "{top}"
        );
    }
    // The web page names the Python line.
    let page = dir.join("r.html");
    m(&[
        "html",
        "-o",
        page.to_str().unwrap(),
        trace.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("cache_growth.py"),
        "no Python frame in the page"
    );

    // SARIF of a C extension's leak: the result's stack goes on into the Python line.
    let Some(config) = &py.config else { return };
    let q = |arg: &str| {
        let o = Command::new(config).arg(arg).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let so = dir.join(format!("fastparse{}", q("--extension-suffix")));
    let o = Command::new("gcc")
        .args(["-shared", "-fPIC", "-g", "-O0"])
        .args(q("--includes").split_whitespace())
        .arg(source("python/fastparse.c"))
        .arg("-o")
        .arg(&so)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = run(&py.exe, &[&script("native_leak.py"), dir.to_str().unwrap()]);
    let sarif: Value = serde_json::from_slice(&m(&[
        "leaks",
        "--format",
        "sarif",
        r.only_trace().to_str().unwrap(),
    ]))
    .unwrap();
    let frames = sarif["runs"][0]["results"][0]["stacks"][0]["frames"]
        .as_array()
        .unwrap();
    let genexpr = line_of("python/native_leak.py", "MARK: genexpr");
    assert!(
        frames.iter().any(|f| {
            let pl = &f["location"]["physicalLocation"];
            pl["artifactLocation"]["uri"]
                .as_str()
                .is_some_and(|u| u.ends_with("/native_leak.py"))
                && pl["region"]["startLine"] == genexpr
                && f["location"]["logicalLocations"][0]["name"] == "<genexpr>"
        }),
        "{frames:?}"
    );
}

/// Through a pyenv shim (env -> bash -> ... -> python), one trace: the interpreter's.
#[test]
fn a_pyenv_shim_leaves_the_interpreters_trace_only() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let shim = Path::new(&home).join(".pyenv/shims/python3");
    if !shim.is_file() {
        eprintln!("skipped: no pyenv shim on this machine");
        return;
    }
    let r = run(&shim, &[&script("cache_growth.py"), "3"]);
    assert!(r.output.status.success(), "{}", r.stderr());
    let trace = r.only_trace();
    let rep = report(&trace);
    assert!(
        rep["trace"]["exe"].as_str().unwrap().contains("/python3"),
        "{}",
        rep["trace"]["exe"]
    );
    let err = r.stderr();
    assert!(err.contains("==memlens== Python 3."), "{err}");
    assert!(
        err.contains("==memlens== not kept: the traces of the wrappers it ran first (env -> bash"),
        "{err}"
    );
}

/// The unwind memo (and its Python signatures) changes no stack: every site, with its
/// Python and native frames and its allocation count, is the same when every stack is
/// unwound afresh (`MEMLENS_UNWIND_CACHE=0`). The script reaches one allocating call
/// through other Python lines, C-stack depths and a generator.
#[test]
fn the_unwind_memo_changes_no_python_stack() {
    for py in pythons() {
        let sites = |cache: &str| {
            let d = scratch(&format!("memo-{}-{cache}", py.minor));
            let out = Command::new(memlens())
                .args(["run", "--quiet", "-o"])
                .arg(d.join("%n.%p.trace"))
                .arg("--")
                .arg(&py.exe)
                .arg(script("memo_paths.py"))
                .env("MEMLENS_UNWIND_CACHE", cache)
                .env("PYTHONHASHSEED", "0")
                .env("PYTHONMALLOC", "malloc")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "done 198\n");
            let traces: Vec<PathBuf> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(traces.len(), 1, "{traces:?}");
            site_counts(&report(&traces[0]))
        };
        let (memo, fresh) = (sites("1"), sites("0"));
        assert_eq!(memo, fresh, "{}", py.exe.display());
        // The paths are there: the list made in leaf under via_a and via_b, and under
        // nine depths of nesting.
        let leaf_paths: Vec<&String> = memo
            .keys()
            .filter(|k| k.contains("\"leaf\"@") && k.contains("memo_paths.py"))
            .collect();
        assert!(
            leaf_paths.iter().any(|k| k.contains("\"via_a\"@"))
                && leaf_paths.iter().any(|k| k.contains("\"via_b\"@")),
            "{}: {leaf_paths:#?}",
            py.exe.display()
        );
        let depths = leaf_paths
            .iter()
            .map(|k| k.matches("\"nested\"@").count())
            .collect::<std::collections::BTreeSet<_>>();
        assert!(depths.is_superset(&(1..=9).collect()), "{depths:?}");
    }
}
