//! The recorder's API for the program it records: a few C functions that a test suite
//! calls to name regions, mark real-time threads and make assertions, which `memlens
//! check` evaluates offline. Callers find them at run time (`include/memlens.h` through
//! weak symbols, the `memlens-api` crate and the pytest plugin through `dlsym`), so a
//! program without the recorder runs unchanged. Every function does nothing (and answers
//! 0) when the process is not recording.
//!
//! What is written: Events Region, ThreadMark and Assert records through the calling
//! thread's buffer (ordered with its allocations), Meta RegionName, AssertLabel and
//! RealtimeThread through the definitions buffer (`docs/TRACE_FORMAT.md`). Like the
//! hooks, each function enters the thread's busy section (an allocation it causes passes
//! straight to glibc) and a call re-entered on the same thread (from a signal handler)
//! does nothing. Names are interned in a fixed lock-free table: no lock, no allocation
//! on the program's behalf.

use crate::output::{self, DISABLED};
use crate::thread::{self, now_ns, ACTIVE};
use crate::tls::BusyGuard;
use core::ffi::c_char;
use core::sync::atomic::{AtomicU64, Ordering};
use memlens_trace::AssertKind;

/// Distinct names of each kind a process can define; later ones get id 0 ("unnamed").
const NAME_SLOTS: usize = 4096;
/// Longest name kept, in bytes (longer ones are cut).
const MAX_NAME: usize = 1024;

/// Names (regions or assertion labels) -> ids, lock-free: a slot holds the 64-bit hash
/// of its name (never 0), its id is the slot's index + 1. The thread that claims a slot
/// writes the name's definition; another thread may use the id before that definition
/// is written, which is fine since readers load every definition before the events. Two
/// names whose 64-bit hashes collide would share an id.
struct Names {
    slots: [AtomicU64; NAME_SLOTS],
}

impl Names {
    const fn new() -> Names {
        Names {
            slots: [const { AtomicU64::new(0) }; NAME_SLOTS],
        }
    }

    /// The id of `name`, calling `define(id)` when it is new; 0 when the table is full.
    fn id(&self, name: &[u8], define: impl FnOnce(u32)) -> u32 {
        let h = fnv1a(name) | 1;
        let mut i = (h as usize) % NAME_SLOTS;
        for _ in 0..NAME_SLOTS {
            let cur = self.slots[i].load(Ordering::Acquire);
            if cur == h {
                return i as u32 + 1;
            }
            if cur == 0 {
                match self.slots[i].compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        define(i as u32 + 1);
                        return i as u32 + 1;
                    }
                    Err(v) if v == h => return i as u32 + 1,
                    Err(_) => {}
                }
            }
            i = (i + 1) % NAME_SLOTS;
        }
        0
    }

    /// Forget every name (a forked child's new trace defines them again). Only one
    /// thread exists then.
    fn clear(&self) {
        for s in &self.slots {
            s.store(0, Ordering::Relaxed);
        }
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= c as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

static REGIONS: Names = Names::new();
static LABELS: Names = Names::new();

/// In a forked child that records its own trace: names are defined again there.
pub fn after_fork_child() {
    REGIONS.clear();
    LABELS.clear();
}

/// Whether this process records now (initialising the recorder if no hook did yet).
fn recording() -> bool {
    (ACTIVE.load(Ordering::Relaxed) || crate::lifecycle::init_early())
        && !DISABLED.load(Ordering::Relaxed)
}

/// The bytes of a (pointer, length) pair from C, cut to [`MAX_NAME`]; empty for null.
///
/// # Safety
/// `ptr` is null or valid for reading `len` bytes.
unsafe fn name_bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract: ptr is valid for len bytes (we read fewer or as
    // many).
    unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), len.min(MAX_NAME)) }
}

/// `int memlens_active(void)`: 1 when the process is being recorded, 0 otherwise.
///
/// # Safety
/// None: it takes no argument.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_active() -> i32 {
    recording() as i32
}

/// `uint64_t memlens_region_enter(const char *name, size_t len)`: the calling thread
/// enters the region `name` (regions nest); allocations it makes until the matching
/// [`memlens_region_exit`] belong to the region. Returns the token to give
/// `memlens_region_exit`, 0 when nothing was recorded.
///
/// # Safety
/// `name` is null or valid for reading `len` bytes (it need not end with a NUL).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_region_enter(name: *const c_char, len: usize) -> u64 {
    if !recording() {
        return 0;
    }
    let Some(busy) = BusyGuard::enter() else {
        return 0;
    };
    // SAFETY: the caller's contract.
    let name = unsafe { name_bytes(name, len) };
    let ts = now_ns();
    let id = REGIONS.id(name, |id| {
        output::META.lock().with(|b| b.region_name(id, name));
    });
    thread::record_api(&busy, ts, None, false, |b, _, ts| b.region(ts, true, id));
    // The token is the region's id, offset so that id 0 (a full table) is still a
    // token the exit records.
    id as u64 + 1
}

/// `void memlens_region_exit(uint64_t token)`: the calling thread leaves the region that
/// `memlens_region_enter` returned `token` for. A token of 0 is ignored.
///
/// # Safety
/// None: any token is accepted (an unknown one is recorded and ignored by the analysis).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_region_exit(token: u64) {
    if token == 0 || !recording() {
        return;
    }
    let Some(busy) = BusyGuard::enter() else {
        return;
    };
    let ts = now_ns();
    let id = (token - 1).min(u32::MAX as u64) as u32;
    thread::record_api(&busy, ts, None, false, |b, _, ts| b.region(ts, false, id));
}

/// `uint64_t memlens_mark(void)`: the trace's current time (ns since it started), for
/// `memlens_assert`'s no-leaks-since assertion; 0 when not recording. In the calling
/// thread's order: its allocations before the call are earlier, its later ones at or
/// after (`thread::mark_time`).
///
/// # Safety
/// None: it takes no argument.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_mark() -> u64 {
    if !recording() {
        return 0;
    }
    let Some(busy) = BusyGuard::enter() else {
        return 0;
    };
    thread::mark_time(&busy)
}

/// `void memlens_thread_realtime(int on)`: the calling thread is real-time from now on
/// (`on` != 0) or no longer: while it is, every allocation or free it makes is a
/// no-allocation violation for `memlens check`.
///
/// # Safety
/// None: any value is accepted.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_thread_realtime(on: i32) {
    if !recording() {
        return;
    }
    let Some(busy) = BusyGuard::enter() else {
        return;
    };
    let ts = now_ns();
    thread::record_api(&busy, ts, None, true, |b, _, ts| b.thread_mark(ts, on != 0));
}

/// `void memlens_assert(const char *label, size_t len, int kind, uint64_t mark,
/// uint64_t limit)`: an assertion for `memlens check` to evaluate on the trace, named
/// `label`, with the call's stack. `kind` 1: the blocks the calling thread allocated since
/// `mark` (from `memlens_mark`) and still live hold at most `limit` bytes (0: none is
/// live); 2: the process's live heap is at most `limit` bytes; 3: the blocks the thread
/// allocated since `mark` were never more than `limit` bytes live at once. Another kind
/// is ignored. It does not stop the program: `check` fails
/// afterwards.
///
/// # Safety
/// `label` is null or valid for reading `len` bytes (it need not end with a NUL).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_assert(
    label: *const c_char,
    len: usize,
    kind: i32,
    mark: u64,
    limit: u64,
) {
    let caller = crate::caller!();
    let Some(kind) = u8::try_from(kind).ok().and_then(AssertKind::from_u8) else {
        return;
    };
    if !recording() {
        return;
    }
    let Some(busy) = BusyGuard::enter() else {
        return;
    };
    // SAFETY: the caller's contract.
    let label = unsafe { name_bytes(label, len) };
    let ts = now_ns();
    let id = LABELS.id(label, |id| {
        output::META.lock().with(|b| b.assert_label(id, label));
    });
    thread::record_api(&busy, ts, Some(caller), false, |b, stack, ts| {
        b.assert(ts, kind, mark, limit, id, stack)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_one_id_each_and_define_once() {
        let t = Names::new();
        let mut defined = Vec::new();
        let a = t.id(b"parse", |id| defined.push(id));
        let b = t.id(b"render", |id| defined.push(id));
        assert_ne!(a, b);
        assert_eq!(t.id(b"parse", |_| panic!("defined twice")), a);
        assert_eq!(defined, vec![a, b]);
        t.clear();
        let mut again = 0;
        assert_eq!(t.id(b"parse", |id| again = id), a);
        assert_eq!(again, a);
    }
}
