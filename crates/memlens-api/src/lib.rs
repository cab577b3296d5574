//! Talk to the memlens recorder from Rust code, usually tests, without rebuilding it for
//! memlens: under `memlens run` or `memlens check` these calls name **regions** (each a
//! component of the budgets: `regions = ["parse*"]` in `memlens.toml`), make
//! **assertions** that `memlens check` judges on the trace, and mark **real-time
//! threads** (no allocation or free allowed while marked). Without the recorder every
//! call is a no-op that costs one atomic load.
//!
//! ```no_run
//! fn parse(s: &str) -> Vec<String> {
//!     s.split(',').map(str::to_string).collect()
//! }
//!
//! let mark = memlens_api::mark();
//! {
//!     let _region = memlens_api::region("parse");
//!     assert_eq!(parse("a,b").len(), 2);
//! } // the region ends here
//! memlens_api::assert_no_leaks_since(mark, "parse frees what it allocates");
//! memlens_api::assert_max_live(24 << 20, "heap under 24 MiB");
//! ```
//!
//! Run the tests under memlens with Cargo's runner setting, so that each test binary runs
//! under `memlens check` (whose status fails `cargo test`):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="memlens check --" cargo test
//! ```
//!
//! **An assertion does not stop the program.** It is written to the trace with its
//! stack; `memlens check` judges it after the run and fails (status 1, or
//! `--error-exitcode`) naming the label, the figure, the limit and the sites of the
//! blocks concerned. Answering inside the process would need the recorder to keep, for
//! every live block, when it was allocated, which its live-block table does not. So a
//! test whose assertion fails still passes under `cargo test`'s own judgement; the gate
//! is `memlens check`.
//!
//! [`assert_no_leaks_since`] counts the blocks that the calling thread allocated since
//! the mark and that are still live: tests running in parallel threads do not see each
//! other's blocks. Blocks freed later (after the assertion) still count: it asks "is it
//! freed by now". [`assert_max_live`] looks at the whole process's live heap.
//!
//! The recorder's functions (`memlens_active`, `memlens_region_enter`...) are looked up
//! once with `dlsym(RTLD_DEFAULT, ...)`; the C header `include/memlens.h` of the
//! repository declares the same functions for C and C++.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

type ActiveFn = unsafe extern "C" fn() -> c_int;
type RegionEnterFn = unsafe extern "C" fn(*const c_char, usize) -> u64;
type RegionExitFn = unsafe extern "C" fn(u64);
type MarkFn = unsafe extern "C" fn() -> u64;
type RealtimeFn = unsafe extern "C" fn(c_int);
type AssertFn = unsafe extern "C" fn(*const c_char, usize, c_int, u64, u64);

/// The recorder's entry points, all present or none.
struct Recorder {
    active: ActiveFn,
    region_enter: RegionEnterFn,
    region_exit: RegionExitFn,
    mark: MarkFn,
    realtime: RealtimeFn,
    assert: AssertFn,
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's `RTLD_DEFAULT`: the global scope, where a preloaded library's symbols are.
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

/// The recorder, looked up once (`None` without it).
fn recorder() -> Option<&'static Recorder> {
    static R: OnceLock<Option<Recorder>> = OnceLock::new();
    R.get_or_init(|| {
        let find = |name: &std::ffi::CStr| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other
            // precondition; it answers null when no loaded object defines the name.
            let p = unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        // SAFETY (each transmute): the recorder defines these symbols as functions with
        // exactly these C signatures (crates/memlens-preload/src/api.rs, memlens.h).
        unsafe {
            Some(Recorder {
                active: std::mem::transmute::<*mut c_void, ActiveFn>(find(c"memlens_active")?),
                region_enter: std::mem::transmute::<*mut c_void, RegionEnterFn>(find(
                    c"memlens_region_enter",
                )?),
                region_exit: std::mem::transmute::<*mut c_void, RegionExitFn>(find(
                    c"memlens_region_exit",
                )?),
                mark: std::mem::transmute::<*mut c_void, MarkFn>(find(c"memlens_mark")?),
                realtime: std::mem::transmute::<*mut c_void, RealtimeFn>(find(
                    c"memlens_thread_realtime",
                )?),
                assert: std::mem::transmute::<*mut c_void, AssertFn>(find(c"memlens_assert")?),
            })
        }
    })
    .as_ref()
}

/// Whether the program runs under memlens and is being recorded.
pub fn active() -> bool {
    // SAFETY: the recorder's function takes no argument.
    recorder().is_some_and(|r| unsafe { (r.active)() } != 0)
}

/// A region of the calling thread, open until the guard is dropped: the allocations the
/// thread makes meanwhile belong to it (a budget file selects them with `regions =
/// ["name*"]`). Regions nest.
#[must_use = "the region ends when the guard is dropped"]
pub struct RegionGuard {
    token: u64,
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        if let Some(r) = recorder() {
            // SAFETY: any token is accepted; 0 is ignored.
            unsafe { (r.region_exit)(self.token) }
        }
    }
}

/// Enter region `name` on the calling thread until the returned guard is dropped.
pub fn region(name: &str) -> RegionGuard {
    let token = match recorder() {
        // SAFETY: name's pointer is valid for its length.
        Some(r) => unsafe { (r.region_enter)(name.as_ptr().cast(), name.len()) },
        None => 0,
    };
    RegionGuard { token }
}

/// A point in the run, for [`assert_no_leaks_since`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(u64);

/// Now (the trace's clock; 0 without memlens).
pub fn mark() -> Mark {
    // SAFETY: the recorder's function takes no argument.
    Mark(recorder().map_or(0, |r| unsafe { (r.mark)() }))
}

/// Assert that every block the calling thread allocated since `mark` has been freed by
/// now. Judged by `memlens check` after the run (see the crate's documentation); `label`
/// names it in the report.
#[inline(never)]
pub fn assert_no_leaks_since(mark: Mark, label: &str) {
    if let Some(r) = recorder() {
        // SAFETY: label's pointer is valid for its length.
        unsafe { (r.assert)(label.as_ptr().cast(), label.len(), 1, mark.0, 0) }
    }
}

/// Assert that the process's live heap is at most `bytes` now. Judged by `memlens check`
/// after the run; `label` names it in the report.
#[inline(never)]
pub fn assert_max_live(bytes: u64, label: &str) {
    if let Some(r) = recorder() {
        // SAFETY: label's pointer is valid for its length.
        unsafe { (r.assert)(label.as_ptr().cast(), label.len(), 2, 0, bytes) }
    }
}

/// Assert that the blocks the calling thread allocated since `mark` were never more than
/// `bytes` live at once, from the mark to now (the peak of a test). Judged by `memlens
/// check` after the run; `label` names it in the report.
#[inline(never)]
pub fn assert_peak_since(mark: Mark, bytes: u64, label: &str) {
    if let Some(r) = recorder() {
        // SAFETY: label's pointer is valid for its length.
        unsafe { (r.assert)(label.as_ptr().cast(), label.len(), 3, mark.0, bytes) }
    }
}

/// Mark the calling thread real-time (`true`) or no longer: while it is, each
/// allocation, realloc or free it makes fails `memlens check` as a no-allocation
/// violation, shown with its stack.
pub fn thread_realtime(on: bool) {
    if let Some(r) = recorder() {
        // SAFETY: any value is accepted.
        unsafe { (r.realtime)(on as c_int) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run without memlens (as `cargo test` runs it): nothing is found, nothing happens.
    #[test]
    fn without_the_recorder_every_call_is_a_no_op() {
        assert!(!active());
        let m = mark();
        assert_eq!(m, Mark(0));
        {
            let g = region("parse");
            assert_eq!(g.token, 0);
        }
        thread_realtime(true);
        thread_realtime(false);
        assert_no_leaks_since(m, "nothing");
        assert_max_live(0, "nothing");
        assert_peak_since(m, 0, "nothing");
    }
}
