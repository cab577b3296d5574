//! `memlens run` refuses what it cannot record with one sentence and a documented code.

mod common;

use common::*;
use std::process::Command;

fn memlens_run(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(memlens())
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn one_line(s: &str) {
    assert_eq!(s.trim_end().lines().count(), 1, "not one line: {s:?}");
    assert!(!s.contains("panicked"), "{s}");
}

#[test]
fn missing_program() {
    let (code, err) = memlens_run(&["--", "no-such-program-memlens-test"]);
    assert_eq!(code, Some(127));
    assert!(
        err.contains("cannot find program 'no-such-program-memlens-test'"),
        "{err}"
    );
    one_line(&err);
    let (code, err) = memlens_run(&["--", "./no/such/file"]);
    assert_eq!(code, Some(127));
    one_line(&err);
}

/// A script whose `#!` interpreter does not exist: the sentence names the interpreter
/// (the kernel's ENOENT would blame the script, which is there), with the shell's 127.
#[test]
fn missing_script_interpreter_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("bad-shebang");
    let f = d.join("tool.sh");
    std::fs::write(&f, "#!/nonexistent/memlens-interp -x\necho hi\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = memlens_run(&["--", f.to_str().unwrap()]);
    assert_eq!(code, Some(127));
    assert!(
        err.contains("its interpreter /nonexistent/memlens-interp (its #! line) does not exist"),
        "{err}"
    );
    one_line(&err);
}

#[test]
fn static_program_is_refused() {
    let prog = build("gcc", "exits.c", "exits-static", &["-static", "-O1"]);
    let (code, err) = memlens_run(&["--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("is statically linked") && err.contains("LD_PRELOAD"),
        "{err}"
    );
    one_line(&err);
}

#[test]
fn non_executable_and_directory() {
    let d = scratch("noexec");
    let f = d.join("data.txt");
    std::fs::write(&f, "hello").unwrap();
    let (code, err) = memlens_run(&["--", f.to_str().unwrap()]);
    assert_eq!(code, Some(126));
    assert!(err.contains("not executable"), "{err}");
    let (code, err) = memlens_run(&["--", d.to_str().unwrap()]);
    assert_eq!(code, Some(126));
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn unwritable_output_directory() {
    let prog = build_c("exits.c", "exits");
    let (code, err) = memlens_run(&[
        "-o",
        "/nonexistent-dir-memlens/%p.trace",
        "--",
        prog.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("cannot write traces to /nonexistent-dir-memlens"),
        "{err}"
    );
    one_line(&err);
    let (code, err) = memlens_run(&["-o", "/proc/memlens-%p.trace", "--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    one_line(&err);
}

/// `-o /dev/null` (or a FIFO) is refused in one sentence before the program starts: the
/// recorder would otherwise write its trace beside it, as `/dev/null.1`.
#[test]
fn output_that_is_a_device_or_a_fifo() {
    let prog = build_c("exits.c", "exits");
    let (code, err) = memlens_run(&["-o", "/dev/null", "--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("cannot write the trace to /dev/null: it is a character device, not a file"),
        "{err}"
    );
    one_line(&err);
    assert!(!std::path::Path::new("/dev/null.1").exists());
    let d = scratch("fifo-output");
    let fifo = d.join("t.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, err) = memlens_run(&["-o", fifo.to_str().unwrap(), "--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("it is a FIFO, not a file"), "{err}");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
}

#[test]
fn unknown_flag_is_an_error() {
    // 125, as every input memlens cannot use (README's exit status tables).
    let (code, err) = memlens_run(&["--no-such-flag", "--", "true"]);
    assert_eq!(code, Some(125));
    assert!(err.contains("--no-such-flag"), "{err}");
    for args in [
        &["report", "--format", "xml", "x.trace"][..],
        &["watch", "--max-rss", "lots", "--", "true"],
        &["frobnicate"],
        &[],
    ] {
        let o = Command::new(memlens()).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(125), "{args:?}");
    }
    // Help and version are not errors.
    for args in [&["--help"][..], &["run", "--help"], &["--version"]] {
        let o = Command::new(memlens()).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
    }
}

/// A negative number given to an option is refused as that option's value, never with
/// clap's tip to pass it after `--` (which for `memlens run` would make it the program);
/// and a program's own negative arguments after `--` are still its own.
#[test]
fn a_negative_number_for_an_option_is_refused_as_its_value() {
    for (args, option) in [
        (&["run", "--depth", "-3", "--", "true"][..], "'--depth <N>'"),
        (
            &["run", "--rss-interval", "-5", "--", "true"],
            "'--rss-interval <MS>'",
        ),
        (
            &["run", "--sample", "-1", "--", "true"],
            "'--sample <BYTES>'",
        ),
        (&["report", "--top", "-2", "x.trace"], "'--top <N>'"),
    ] {
        let o = Command::new(memlens()).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with(&format!("error: invalid value '{}' for {option}", args[2])),
            "{args:?}: {err}"
        );
        assert!(!err.contains("use '--"), "{err}");
    }
    let d = scratch("negative-args");
    let o = Command::new(memlens())
        .args(["run", "-q", "-o"])
        .arg(d.join("t.trace"))
        .args(["--", "/bin/echo", "-5", "-x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "-5 -x\n");
}

/// Valgrind's habits: `memlens ./prog` and `memlens --leak-check=full ./prog` are not
/// memlens's syntax, and the error says what is.
#[test]
fn a_program_without_run_gets_the_command_line_meant() {
    let o = Command::new(memlens())
        .args(["./prog", "a b", "c"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("\n  memlens run -- ./prog 'a b' c\n"), "{err}");
    let o = Command::new(memlens())
        .args(["--leak-check=full", "-q", "ls", "-l"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("\n  memlens run --leak-check=full -q -- ls -l\n"),
        "{err}"
    );
}

/// Valgrind's spellings where the meaning is the same: `--leak-check=yes` is `full`.
#[test]
fn leak_check_yes_is_full() {
    let prog = build_c("forkexec.c", "forkexec");
    let r = run_with(&["--leak-check=yes"], &prog, &[]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr());
    // memcheck's full output (records, ERROR SUMMARY), which `summary` does not print.
    let err = r.stderr();
    assert!(
        err.contains("==memlens== ERROR SUMMARY: 0 errors (0 heap errors")
            && err.contains("==memlens== Records of kind reachable not shown"),
        "{err}"
    );
}

/// `--log-file` expands Valgrind's `%p` (the program's pid), `%q{VAR}` and `%%`.
#[test]
fn log_file_expands_pid_and_environment() {
    let prog = build_c("exits.c", "exits");
    let d = scratch("logfile");
    let o = Command::new(memlens())
        .current_dir(&d)
        .env("MEMLENS_TEST_WHO", "ci")
        .args(["run", "--log-file=log.%q{MEMLENS_TEST_WHO}.%p.100%%", "--"])
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let trace = names.iter().find(|n| n.ends_with(".trace")).expect("trace");
    let pid = memlens_trace::reader::TraceReader::open(d.join(trace))
        .unwrap()
        .header()
        .pid;
    let log = format!("log.ci.{pid}.100%");
    assert!(names.contains(&log), "{names:?}");
    let text = std::fs::read_to_string(d.join(&log)).unwrap();
    assert!(text.contains("==memlens== trace: "), "{text}");

    // An unset variable or an unknown % sequence: refused before the program starts.
    for bad in ["--log-file=x.%q{MEMLENS_TEST_UNSET_VAR}", "--log-file=x.%n"] {
        let (code, err) = memlens_run(&[bad, "--", prog.to_str().unwrap()]);
        assert_eq!(code, Some(125), "{bad}: {err}");
        one_line(&err);
    }
}

/// A pipe whose reading end is closed: writing to it fails with EPIPE, as when the
/// reader (`| head -1`) has gone.
fn closed_pipe() -> std::process::Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors; the write end is owned by the OwnedFd.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        libc::close(fds[0]);
        std::process::Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

/// memlens's own messages cannot be written (stderr closed or full, a full log file): the
/// program's status still comes out, never a panic (101).
#[test]
fn unwritable_messages_never_replace_the_program_status() {
    let d = scratch("stderr-gone");
    let pattern = d.join("%n.%p.trace");
    let pattern = pattern.to_str().unwrap();
    let exit3 = ["--", "sh", "-c", "exit 3"];
    // (memlens's arguments, its stderr)
    type Stderr = fn() -> std::process::Stdio;
    let cases: Vec<(Vec<&str>, Stderr)> = vec![
        ([&["run", "-o", pattern][..], &exit3].concat(), closed_pipe),
        ([&["run", "-o", pattern][..], &exit3].concat(), dev_full),
        (
            [&["run", "-o", pattern, "--log-file=/dev/full"][..], &exit3].concat(),
            std::process::Stdio::inherit,
        ),
        (
            [&["check", "-o", pattern, "--error-exitcode=9"][..], &exit3].concat(),
            closed_pipe,
        ),
        (
            [&["watch", "--interval", "10ms"][..], &exit3].concat(),
            closed_pipe,
        ),
        (
            [&["watch", "--interval", "10ms"][..], &exit3].concat(),
            dev_full,
        ),
    ];
    for (args, stderr) in cases {
        let o = Command::new(memlens())
            .args(&args)
            .stderr(stderr())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{args:?}");
    }
    // A report into a closed pipe, with stderr closed too: a quiet end.
    let trace = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("a trace");
    for cmd in ["report", "leaks"] {
        let o = Command::new(memlens())
            .arg(cmd)
            .arg(&trace)
            .stdout(closed_pipe())
            .stderr(closed_pipe())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{cmd}");
    }
}

#[test]
fn report_of_non_trace() {
    let d = scratch("nontrace");
    let f = d.join("x.trace");
    std::fs::write(&f, vec![7u8; 1000]).unwrap();
    let o = Command::new(memlens())
        .arg("report")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a memlens trace"), "{err}");
    one_line(&err);
}

#[test]
fn setuid_program_is_refused() {
    // A setuid program owned by someone else: the loader ignores LD_PRELOAD for it.
    // As root, make one (a copy owned by nobody); otherwise any setuid-root tool will do.
    // SAFETY: geteuid has no preconditions.
    let prog = if unsafe { libc::geteuid() } == 0 {
        let d = scratch("setuid");
        let p = d.join("exits-setuid");
        std::fs::copy(build_c("exits.c", "exits"), &p).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        p
    } else {
        [
            "/usr/bin/su",
            "/bin/su",
            "/usr/bin/passwd",
            "/usr/bin/mount",
        ]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("a setuid-root program")
    };
    let (code, err) = memlens_run(&["--", prog.to_str().unwrap()]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("is setuid/setgid") && err.contains("LD_PRELOAD"),
        "{err}"
    );
    one_line(&err);
}
