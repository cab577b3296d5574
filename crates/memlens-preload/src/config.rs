//! Settings passed by `memlens run` through the environment: all in `MEMLENS_CONFIG`, a
//! `NAME=value` line each (`memlens_trace::env::settings_text`); a setting it does not
//! hold is read from its own variable (`MEMLENS_SAMPLE_SEED`, or a library preloaded by
//! hand). `memlens attach` writes the same lines to a file.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `MEMLENS_OUTPUT` | trace path pattern; `%p` pid, `%n` program name | `memlens.%n.%p.trace` |
//! | `MEMLENS_MANIFEST` | file to which each trace path is appended, ended by a NUL | none |
//! | `MEMLENS_RUN_START` | when `memlens run` started, ns since the Unix epoch: a trace file of the same name started before it is replaced (not suffixed) | none: names taken are suffixed |
//! | `MEMLENS_DEPTH` | maximum stack depth | 64 |
//! | `MEMLENS_RSS_INTERVAL_MS` | RSS sampling interval (0: off) | 10 |
//! | `MEMLENS_NO_FOLLOW` | `1`: do not trace programs started by `exec` | follow |
//! | `MEMLENS_TRACE_CHILDREN` | `0`: record only the process `memlens run` launched (the one whose parent is `MEMLENS_LAUNCHER_PID`) and the images it execs into; forked children and what they exec run with the recorder passive | `1` (every process) |
//! | `MEMLENS_LAUNCHER_PID` | pid of `memlens run`, the parent of the launched process | none |
//! | `MEMLENS_PROGRAM` | the path `memlens run` exec'd: that image is never skipped | none |
//! | `MEMLENS_TRACE_CHILDREN_SKIP` | comma-separated `*`/`?` patterns of exec'd program paths (`AT_EXECFN`) not to record, nor anything they start | none |
//! | `MEMLENS_FREE_STACKS` | `1`: record the stack of every free/delete (heap error reports then show where a block was first freed) | off |
//! | `MEMLENS_HEURISTICS` | bit mask of enabled interior-pointer heuristics (bit 1 stdstring, 2 length64, 3 newarray, 4 multipleinheritance, 5 pyobject) | 62 (all) |
//! | `MEMLENS_LEAK_CHECK` | `no`: no reachability scan at exit | yes |
//! | `MEMLENS_PYTHON_FRAMES` | `0`: CPython's stacks stay native (no Python frames) | on |
//! | `MEMLENS_SAMPLE_BYTES` | Poisson sampling by bytes with this mean interval (`sample.rs`); also turns the leak scan off | 0: every block |
//! | `MEMLENS_SAMPLE_SEED` | the sampler's seed (decimal): the same blocks are picked in every run of a single-threaded program | a new seed per process |
//! | `MEMLENS_FLUSH_INTERVAL_MS` | the `memlens-rss` thread hands every thread's buffered events to the writer this often, so that a reader following the trace (`--pprof-every`) is at most that far behind, and a process killed by SIGKILL loses at most that much (`memlens run` sets 1000) | 0: a buffer is written when full |
//! | `MEMLENS_UNWIND_CACHE` | `0`: unwind every stack in full (no memo, no prefix reuse); for checking that the caches change nothing | on |

use core::ffi::CStr;
use memlens_trace::env as var;

extern crate alloc;

pub const MAX_DEPTH_LIMIT: usize = 256;

pub struct Config {
    pub output: Option<&'static CStr>,
    pub manifest: Option<&'static CStr>,
    pub run_start_ns: u64,
    pub max_depth: usize,
    pub rss_interval_ns: u64,
    pub no_follow: bool,
    pub trace_children: bool,
    pub launcher_pid: u32,
    pub program: Option<&'static CStr>,
    pub trace_children_skip: Option<&'static CStr>,
    pub unwind_cache: bool,
    pub python_frames: bool,
    pub free_stacks: bool,
    pub leak_check: bool,
    pub heuristics: u32,
    pub sample_bytes: u64,
    pub sample_seed: u64,
    pub flush_interval_ns: u64,
}

fn env(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: getenv returns a pointer into the environment block or NULL; the strings
    // live as long as nobody calls setenv/unsetenv on them, and we read them only at
    // start-up (and copy what we keep).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null getenv results are NUL-terminated.
        Some(unsafe { CStr::from_ptr(p) })
    }
}

fn parse_u64(v: Option<&CStr>) -> Option<u64> {
    core::str::from_utf8(v?.to_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Settings text (`memlens_trace::env::settings_text`), decoded into entries kept for
/// the life of the process (the values are handed out as `&'static CStr`).
pub struct Settings(&'static [u8]);

impl Settings {
    /// From a copy of `text` (in the recorder's own heap).
    pub fn from_text(text: &[u8]) -> Settings {
        let mut buf = alloc::vec![0u8; text.len() + 1];
        buf[..text.len()].copy_from_slice(text);
        let n = var::decode_settings(&mut buf);
        buf.truncate(n);
        Settings(alloc::boxed::Box::leak(buf.into_boxed_slice()))
    }

    /// From the file at `path` (`memlens attach`'s), at most 64 KiB.
    pub fn from_file(path: &CStr) -> Option<Settings> {
        let mut buf = alloc::vec![0u8; 64 * 1024];
        let n = crate::sys::read_file(path, &mut buf)?;
        Some(Self::from_text(&buf[..n]))
    }

    pub fn get(&self, name: &CStr) -> Option<&'static CStr> {
        var::setting(self.0, name)
    }
}

impl Config {
    /// From `MEMLENS_CONFIG`'s settings (`memlens run`'s), and for a setting it does not
    /// have, its own variable.
    pub fn from_env() -> Config {
        let settings = env(var::CONFIG.c_name()).map(|t| Settings::from_text(t.to_bytes()));
        Self::from_lookup(|name| {
            settings
                .as_ref()
                .and_then(|s| s.get(name))
                .or_else(|| env(name))
        })
    }

    /// The settings as `get` answers for each variable: the environment, or the
    /// settings file `memlens attach` writes (`attach/mod.rs`).
    pub fn from_lookup(env: impl Fn(&CStr) -> Option<&'static CStr>) -> Config {
        let env_u64 = |name: &CStr| parse_u64(env(name));
        Config {
            output: env(var::OUTPUT.c_name()).filter(|s| !s.is_empty()),
            manifest: env(var::MANIFEST.c_name()).filter(|s| !s.is_empty()),
            run_start_ns: env_u64(var::RUN_START.c_name()).unwrap_or(0),
            max_depth: env_u64(var::DEPTH.c_name())
                .unwrap_or(64)
                .clamp(1, MAX_DEPTH_LIMIT as u64) as usize,
            rss_interval_ns: env_u64(var::RSS_INTERVAL_MS.c_name()).unwrap_or(10) * 1_000_000,
            no_follow: env(var::NO_FOLLOW.c_name())
                .map(|v| v.to_bytes() == b"1")
                .unwrap_or(false),
            trace_children: env(var::TRACE_CHILDREN.c_name())
                .map(|v| v.to_bytes() != b"0")
                .unwrap_or(true),
            launcher_pid: env_u64(var::LAUNCHER_PID.c_name()).map_or(0, |p| p as u32),
            program: env(var::PROGRAM.c_name()).filter(|s| !s.is_empty()),
            trace_children_skip: env(var::TRACE_CHILDREN_SKIP.c_name()).filter(|s| !s.is_empty()),
            unwind_cache: env(var::UNWIND_CACHE.c_name())
                .map(|v| v.to_bytes() != b"0")
                .unwrap_or(true),
            python_frames: env(var::PYTHON_FRAMES.c_name())
                .map(|v| v.to_bytes() != b"0")
                .unwrap_or(true),
            heuristics: env_u64(var::HEURISTICS.c_name()).map_or(0b111110, |v| v as u32 & 0b111110),
            leak_check: env(var::LEAK_CHECK.c_name())
                .map(|v| v.to_bytes() != b"no")
                .unwrap_or(true),
            free_stacks: env(var::FREE_STACKS.c_name())
                .map(|v| v.to_bytes() == b"1")
                .unwrap_or(false),
            sample_bytes: env_u64(var::SAMPLE_BYTES.c_name()).unwrap_or(0),
            sample_seed: env_u64(var::SAMPLE_SEED.c_name()).unwrap_or(0),
            flush_interval_ns: env_u64(var::FLUSH_INTERVAL_MS.c_name())
                .unwrap_or(0)
                .saturating_mul(1_000_000),
        }
    }
}
