//! Shared harness for tests that build the programs in `tests/programs/`, run them under
//! `memlens run`, and read the reports back as JSON.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn memlens() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_memlens"));
    let preload = exe.with_file_name("libmemlens_preload.so");
    assert!(
        preload.is_file(),
        "{} is missing: build the workspace first (`cargo build --release --workspace`, or `make test`)",
        preload.display()
    );
    exe
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn source(name: &str) -> PathBuf {
    repo_root().join("tests/programs").join(name)
}

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn build_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("programs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compile a test program with `compiler` (gcc, g++, rustc) and extra flags; cached by
/// output name for the life of the target directory.
pub fn build(compiler: &str, src: &str, out: &str, flags: &[&str]) -> PathBuf {
    // One build at a time in this test binary: two tests that need the same program
    // would otherwise both build it (a fresh clone has none), and the second's rename
    // would replace the file the first one's process is running from, whose stacks
    // then name `prog (deleted)+0x...` instead of its functions.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let exe = build_dir().join(out);
    let srcp = source(src);
    let fresh = exe.metadata().and_then(|m| m.modified()).ok()
        >= srcp.metadata().and_then(|m| m.modified()).ok();
    if exe.exists() && fresh {
        return exe;
    }
    // Unique per build, not only per process: two tests of one binary may build the same
    // program at once, and one's rename must not take the other's file away.
    static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = exe.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut cmd = Command::new(compiler);
    if compiler == "rustc" {
        cmd.arg(&srcp).arg("-o").arg(&tmp).args(flags);
    } else {
        cmd.args(flags).arg(&srcp).arg("-o").arg(&tmp);
    }
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &exe).unwrap();
    exe
}

/// Flags for the C test programs: optimised (no frame pointers, so stacks need DWARF
/// unwinding), but without the optimisations that would remove or merge the very
/// allocations and frames the tests count (builtin malloc elimination, tail calls).
pub const C_FLAGS: &[&str] = &[
    "-g",
    "-O1",
    "-fno-builtin",
    "-fno-optimize-sibling-calls",
    "-pthread",
];
pub const CXX_FLAGS: &[&str] = &[
    "-g",
    "-O1",
    "-fno-builtin",
    "-fno-optimize-sibling-calls",
    "-fno-allocation-dce",
];

/// The base of every main-thread stack below `main`, outermost last, with this glibc.
pub const BELOW_MAIN: [&str; 3] = ["__libc_start_call_main", "__libc_start_main_impl", "_start"];

pub fn build_c(src: &str, out: &str) -> PathBuf {
    build("gcc", src, out, C_FLAGS)
}

/// The result of one `memlens run`.
pub struct Run {
    pub output: Output,
    pub dir: PathBuf,
}

impl Run {
    /// Trace files written, sorted by name.
    pub fn traces(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".trace"))
            .collect();
        v.sort();
        v
    }
    pub fn only_trace(&self) -> PathBuf {
        let t = self.traces();
        assert_eq!(
            t.len(),
            1,
            "expected one trace, got {t:?}\nstderr:\n{}",
            self.stderr()
        );
        t[0].clone()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// `memlens run -o DIR/%n.%p.trace [extra] -- prog args`
pub fn run_with(extra: &[&str], prog: &Path, args: &[&str]) -> Run {
    let dir = scratch(prog.file_name().unwrap().to_str().unwrap());
    let pattern = dir.join("%n.%p.trace");
    let output = Command::new(memlens())
        .arg("run")
        .arg("-o")
        .arg(&pattern)
        .args(extra)
        .arg("--")
        .arg(prog)
        .args(args)
        .output()
        .unwrap();
    Run { output, dir }
}

pub fn run(prog: &Path, args: &[&str]) -> Run {
    run_with(&[], prog, args)
}

/// `memlens report --format json --top <all>`
pub fn report(trace: &Path) -> Value {
    let o = Command::new(memlens())
        .args(["report", "--format", "json", "--top", "100000"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Every site's (allocator, symbolized stack) -> allocations, from [`report`]'s JSON.
pub fn site_counts(rep: &Value) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for s in rep["hotspots"]["by_allocations"].as_array().unwrap() {
        let stack: Vec<String> = frames(s)
            .iter()
            .map(|f| format!("{}@{}:{}", f["function"], f["file"], f["line"]))
            .collect();
        *m.entry(format!("{} <- {}", s["allocator"], stack.join(" <- ")))
            .or_insert(0) += s["allocations"].as_u64().unwrap();
    }
    m
}

pub fn frames(site: &Value) -> Vec<&Value> {
    site["stack"].as_array().unwrap().iter().collect()
}

/// Sites whose innermost frame is the function `func`: exactly that name, or that name
/// followed by a C++ parameter list (`make_objects()`).
pub fn sites_at<'a>(report: &'a Value, func: &str) -> Vec<&'a Value> {
    report["hotspots"]["by_allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            frames(s).first().is_some_and(|f| {
                let name = f["function"].as_str().unwrap_or("");
                name == func
                    || name
                        .strip_prefix(func)
                        .is_some_and(|rest| rest.starts_with('('))
            })
        })
        .collect()
}

/// Sites with any frame whose function contains `func`.
pub fn sites_through<'a>(report: &'a Value, func: &str) -> Vec<&'a Value> {
    report["hotspots"]["by_allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            frames(s)
                .iter()
                .any(|f| f["function"].as_str().unwrap_or("").contains(func))
        })
        .collect()
}

pub fn sum(sites: &[&Value], key: &str) -> u64 {
    sites.iter().map(|s| s[key].as_u64().unwrap()).sum()
}

/// 1-based line of the first line of `src` containing `marker`.
pub fn line_of(src: &str, marker: &str) -> u64 {
    let text = std::fs::read_to_string(source(src)).unwrap();
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not in {src}")) as u64
        + 1
}

/// `memlens leaks --format json [extra] TRACE`, which must succeed.
pub fn leaks_json(trace: &Path, extra: &[&str]) -> Value {
    let o = Command::new(memlens())
        .args(["leaks", "--format", "json"])
        .args(extra)
        .arg(trace)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "memlens leaks failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (bytes, blocks) of a `{"bytes": N, "blocks": N}` object of the leaks JSON.
pub fn amount(v: &Value) -> (u64, u64) {
    (v["bytes"].as_u64().unwrap(), v["blocks"].as_u64().unwrap())
}

/// An external program a test needs (go, python3, sqlite3...), found on PATH. Missing, the
/// test is skipped with a message naming the package, except under CI
/// (`MEMLENS_TEST_REQUIRE_ALL=1`, set by `.ci/run`, which installs them all), where a
/// missing tool fails the test instead of letting it pass without running.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        skip_or_fail(&format!(
            "{name} is not installed (apt-get install {package})"
        ));
    }
    found
}

/// The Debian python3 that apt's Python packages (python3-pytest, python3-jsonschema)
/// belong to, when there is one; else the python3 on PATH. A python3 found earlier on
/// PATH (pyenv's, conda's) does not see the system's packages.
#[allow(dead_code)]
pub fn system_python() -> Option<PathBuf> {
    let debian = Path::new("/usr/bin/python3");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    tool("python3", "python3")
}

/// Skip (locally) or fail (under CI) a test whose prerequisite is missing.
pub fn skip_or_fail(why: &str) {
    if std::env::var_os("MEMLENS_TEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{why}; MEMLENS_TEST_REQUIRE_ALL=1 requires it");
    }
    eprintln!("skipped: {why}");
}

/// Run `cmd` to the end, stdin empty, stdout and stderr captured, in its own process
/// group; if it has not finished after `guard`, kill the group and panic. A hang
/// detector, not a timing assertion. Returns the output and the child's pid.
pub fn run_guarded(mut cmd: Command, guard: std::time::Duration, what: &str) -> (Output, u32) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > guard {
            // SAFETY: kill(2) on the process group this function created.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{what}: still running after {guard:?} (hang?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, pid)
}

/// A new pseudo-terminal: (master, slave), both close-on-exec.
pub fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors; both are owned by the Files below.
    unsafe {
        assert_eq!(
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null()
            ),
            0
        );
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

/// `go tool pprof ARGS FILE` with a private HOME and build cache in `dir`; its stdout.
/// Fails the test if pprof cannot read the file.
pub fn go_pprof(dir: &Path, file: &Path, args: &[&str]) -> String {
    let o = Command::new("go")
        .arg("tool")
        .arg("pprof")
        .args(args)
        .arg(file)
        .env("HOME", dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .output()
        .expect("this test needs go (Debian package golang-go)");
    assert!(
        o.status.success(),
        "go tool pprof {args:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Whether a Python line's site, of `allocations` blocks and `bytes_allocated` bytes,
/// holds the `n` blocks of `bytes` bytes in all that the test's line makes. A site is a
/// Python line (with the allocating function), as in tracemalloc, so it also counts what
/// the interpreter allocated on that line for them: a list's growth, a coroutine's frame.
/// Those vary by CPython version; they are bounded here by a quarter of the blocks (and 16)
/// and an eighth of the bytes (and 64 KiB).
pub fn python_line_holds(allocations: u64, bytes_allocated: u64, n: u64, bytes: u64) -> bool {
    (n..=n + n / 4 + 16).contains(&allocations)
        && (bytes..=bytes + bytes / 8 + 65_536).contains(&bytes_allocated)
}
