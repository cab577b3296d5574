//! The environment contract between `memlens run` and the recorder: the settings the
//! CLI gives the program it launches and the recorder reads at start-up, each named
//! once here. What each means: `crates/memlens-preload/src/config.rs`, which reads them.
//!
//! `memlens run` passes them all in one variable, [`CONFIG`], as settings text
//! ([`settings_text`]: one `NAME=value` line each), so that the program's environment
//! grows by two variables (with `LD_PRELOAD`; three with `PYTHONMALLOC`), not sixteen:
//! programs that copy their environment (perl, make) would otherwise show blocks memcheck
//! does not. A setting can also be its own variable (`MEMLENS_SAMPLE_SEED=7`, or the
//! recorder preloaded by hand); [`CONFIG`]'s lines come first. `memlens attach` writes the
//! same text to a file.
//!
//! An [`EnvVar`] is a NUL-terminated name (the recorder's `getenv` needs one without
//! allocating) that `std::process::Command::env` also takes as it is.

use core::ffi::CStr;

/// The name of one environment variable of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvVar(&'static CStr);

impl EnvVar {
    /// The name with its NUL, for `getenv`.
    pub const fn c_name(self) -> &'static CStr {
        self.0
    }

    /// The name as text.
    pub fn name(self) -> &'static str {
        // Every name below is ASCII.
        self.0.to_str().unwrap_or("")
    }
}

#[cfg(feature = "std")]
impl AsRef<std::ffi::OsStr> for EnvVar {
    fn as_ref(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::new(self.name())
    }
}

/// Every other setting, as settings text ([`settings_text`]).
pub const CONFIG: EnvVar = EnvVar(c"MEMLENS_CONFIG");
/// Trace file name pattern (`%p`, `%n`...).
pub const OUTPUT: EnvVar = EnvVar(c"MEMLENS_OUTPUT");
/// When `memlens run` started (Unix ns): a trace file older than that is replaced.
pub const RUN_START: EnvVar = EnvVar(c"MEMLENS_RUN_START");
/// Where each recorded process adds the name of its trace file, ended by
/// [`MANIFEST_END`].
pub const MANIFEST: EnvVar = EnvVar(c"MEMLENS_MANIFEST");
/// What ends each path in the manifest: a NUL, the one byte no path holds.
pub const MANIFEST_END: u8 = 0;

/// The trace paths a manifest lists, in the order they were added.
#[cfg(feature = "std")]
pub fn manifest_paths(data: &[u8]) -> std::vec::Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    data.split(|&c| c == MANIFEST_END)
        .filter(|p| !p.is_empty())
        .map(|p| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect()
}
/// `--trace-children`: 1 records forked children and what they exec.
pub const TRACE_CHILDREN: EnvVar = EnvVar(c"MEMLENS_TRACE_CHILDREN");
/// `--trace-children-skip`: comma-separated globs of programs not to record.
pub const TRACE_CHILDREN_SKIP: EnvVar = EnvVar(c"MEMLENS_TRACE_CHILDREN_SKIP");
/// The pid of `memlens run`: the process whose parent it is, is the launched program.
pub const LAUNCHER_PID: EnvVar = EnvVar(c"MEMLENS_LAUNCHER_PID");
/// The program `memlens run` was asked to run (never skipped).
pub const PROGRAM: EnvVar = EnvVar(c"MEMLENS_PROGRAM");
/// `--depth`: most frames kept per stack.
pub const DEPTH: EnvVar = EnvVar(c"MEMLENS_DEPTH");
/// `--rss-interval`: ms between RSS samples (0: none).
pub const RSS_INTERVAL_MS: EnvVar = EnvVar(c"MEMLENS_RSS_INTERVAL_MS");
/// `--leak-check=no` turns the exit scan off.
pub const LEAK_CHECK: EnvVar = EnvVar(c"MEMLENS_LEAK_CHECK");
/// `--free-stacks`: record the stack of every release.
pub const FREE_STACKS: EnvVar = EnvVar(c"MEMLENS_FREE_STACKS");
/// `--leak-check-heuristics`: a bit per heuristic.
pub const HEURISTICS: EnvVar = EnvVar(c"MEMLENS_HEURISTICS");
/// `--no-follow`: programs started by exec are not recorded.
pub const NO_FOLLOW: EnvVar = EnvVar(c"MEMLENS_NO_FOLLOW");
/// 0 turns the unwind caches off (a test compares both modes).
pub const UNWIND_CACHE: EnvVar = EnvVar(c"MEMLENS_UNWIND_CACHE");
/// `--python-frames=no`: CPython's stacks stay native (0).
pub const PYTHON_FRAMES: EnvVar = EnvVar(c"MEMLENS_PYTHON_FRAMES");
/// `--sample BYTES`: Poisson sampling by bytes with this mean interval (0 or unset: every
/// block is recorded).
pub const SAMPLE_BYTES: EnvVar = EnvVar(c"MEMLENS_SAMPLE_BYTES");
/// The sampler's seed (a decimal u64), for runs that must pick the same blocks every
/// time (tests); unset: a new seed per process.
pub const SAMPLE_SEED: EnvVar = EnvVar(c"MEMLENS_SAMPLE_SEED");
/// ms between flushes of every thread's buffered events to the trace (0 or unset: a
/// buffer is written when full), so that a reader following the trace (`--pprof-every`)
/// sees recent events.
pub const FLUSH_INTERVAL_MS: EnvVar = EnvVar(c"MEMLENS_FLUSH_INTERVAL_MS");

/// `memlens attach` passes its settings in a file, not the environment: one
/// `NAME=value` line per setting, with the names above (`OUTPUT` is the trace's exact
/// path there) and these two. The path of that file is the argument of the recorder's
/// `memlens_attach` entry point.
///
/// The FIFO `memlens attach` writes to end the recording (any byte; end of file, when
/// memlens is gone, ends it too).
pub const ATTACH_CONTROL: EnvVar = EnvVar(c"MEMLENS_ATTACH_CONTROL");
/// The FIFO the recorder writes `ok` to once the trace is complete and the hooks are
/// undone.
pub const ATTACH_DONE: EnvVar = EnvVar(c"MEMLENS_ATTACH_DONE");

/// The recorder's entry point that `memlens attach` calls in the target process.
pub const ATTACH_ENTRY: &str = "memlens_attach";

/// Settings as text: a `NAME=value` line each, a newline or backslash in a value
/// written as `\\n` or `\\\\` (a path may hold either). Bytes, as paths are.
#[cfg(feature = "std")]
pub fn settings_text<V: AsRef<[u8]>>(settings: &[(EnvVar, V)]) -> std::vec::Vec<u8> {
    let mut text = std::vec::Vec::new();
    for (name, value) in settings {
        text.extend_from_slice(name.name().as_bytes());
        text.push(b'=');
        for &c in value.as_ref() {
            match c {
                b'\\' => text.extend_from_slice(b"\\\\"),
                b'\n' => text.extend_from_slice(b"\\n"),
                c => text.push(c),
            }
        }
        text.push(b'\n');
    }
    text
}

/// [`settings_text`] read back in place: each line becomes a NUL-terminated
/// `NAME=value` entry, its escapes undone, for [`setting`]. Returns the length used (a
/// last line without its newline is ended too, when there is room; a NUL in the text
/// ends it).
pub fn decode_settings(buf: &mut [u8]) -> usize {
    let (mut r, mut w) = (0, 0);
    while r < buf.len() && buf[r] != 0 {
        let c = buf[r];
        r += 1;
        buf[w] = match c {
            b'\n' => 0,
            b'\\' if r < buf.len() && buf[r] == b'n' => {
                r += 1;
                b'\n'
            }
            b'\\' if r < buf.len() && buf[r] == b'\\' => {
                r += 1;
                b'\\'
            }
            c => c,
        };
        w += 1;
    }
    if w > 0 && buf[w - 1] != 0 && w < buf.len() {
        buf[w] = 0;
        w += 1;
    }
    w
}

/// The value of `name` among entries [`decode_settings`] made.
pub fn setting<'a>(entries: &'a [u8], name: &CStr) -> Option<&'a CStr> {
    let name = name.to_bytes();
    let mut rest = entries;
    while !rest.is_empty() {
        let end = rest.iter().position(|&c| c == 0)?;
        let line = &rest[..end];
        if line.len() > name.len() && line.starts_with(name) && line[name.len()] == b'=' {
            return CStr::from_bytes_with_nul(&rest[name.len() + 1..=end]).ok();
        }
        rest = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with newlines and backslashes come back as they were; a name is found only
    /// whole; an unknown one is not.
    #[test]
    fn settings_text_reads_back() {
        let text = settings_text(&[
            (OUTPUT, "/tmp/a\nb\\n.%p.trace"),
            (DEPTH, "64"),
            (TRACE_CHILDREN_SKIP, ""),
            (PROGRAM, "/bin/x\\"),
        ]);
        assert_eq!(text.iter().filter(|&&c| c == b'\n').count(), 4);
        let mut buf = text;
        let n = decode_settings(&mut buf);
        let entries = &buf[..n];
        assert_eq!(
            setting(entries, OUTPUT.c_name()).unwrap().to_bytes(),
            b"/tmp/a\nb\\n.%p.trace"
        );
        assert_eq!(setting(entries, DEPTH.c_name()).unwrap().to_bytes(), b"64");
        assert_eq!(
            setting(entries, TRACE_CHILDREN_SKIP.c_name()).map(|v| v.to_bytes()),
            Some(&b""[..])
        );
        assert_eq!(
            setting(entries, PROGRAM.c_name()).unwrap().to_bytes(),
            b"/bin/x\\"
        );
        assert_eq!(setting(entries, RUN_START.c_name()), None);
        assert_eq!(setting(entries, c"MEMLENS_DEPT"), None);
    }

    /// Hand-written text: a last line without its newline, and a NUL ending the text.
    #[test]
    fn settings_text_without_a_last_newline_or_with_a_nul() {
        let mut buf = b"MEMLENS_DEPTH=8\nMEMLENS_OUTPUT=t\0\0".to_vec();
        let n = decode_settings(&mut buf);
        assert_eq!(
            setting(&buf[..n], OUTPUT.c_name()).unwrap().to_bytes(),
            b"t"
        );
        let mut buf = b"MEMLENS_DEPTH=8\0MEMLENS_OUTPUT=t\n".to_vec();
        let n = decode_settings(&mut buf);
        assert_eq!(setting(&buf[..n], DEPTH.c_name()).unwrap().to_bytes(), b"8");
        assert_eq!(setting(&buf[..n], OUTPUT.c_name()), None);
    }

    #[test]
    fn names_are_the_documented_variables() {
        for v in [
            CONFIG,
            OUTPUT,
            RUN_START,
            MANIFEST,
            TRACE_CHILDREN,
            TRACE_CHILDREN_SKIP,
            LAUNCHER_PID,
            PROGRAM,
            DEPTH,
            RSS_INTERVAL_MS,
            LEAK_CHECK,
            FREE_STACKS,
            HEURISTICS,
            NO_FOLLOW,
            UNWIND_CACHE,
            SAMPLE_BYTES,
            SAMPLE_SEED,
            FLUSH_INTERVAL_MS,
            ATTACH_CONTROL,
            ATTACH_DONE,
        ] {
            assert!(v.name().starts_with("MEMLENS_"), "{v:?}");
            assert_eq!(v.c_name().to_bytes(), v.name().as_bytes());
        }
        assert_eq!(OUTPUT.name(), "MEMLENS_OUTPUT");
    }
}
