//! Address ranges, and what both scans leave out of the roots: glibc's arena heaps and
//! the dead frames of glibc's cached thread stacks.

use crate::Reader;
use alloc::vec::Vec;

/// Subtract sorted, merged `excl` ranges from [lo, hi) and call f on each remaining piece.
pub fn subtract(lo: u64, hi: u64, excl: &[(u64, u64)], mut f: impl FnMut(u64, u64)) {
    let mut cur = lo;
    let first = excl.partition_point(|e| e.1 <= lo);
    for e in &excl[first..] {
        if e.0 >= hi {
            break;
        }
        if e.0 > cur {
            f(cur, e.0);
        }
        cur = cur.max(e.1);
        if cur >= hi {
            return;
        }
    }
    if cur < hi {
        f(cur, hi);
    }
}

/// Sort and merge overlapping or touching ranges.
pub fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The size and alignment of glibc's non-main arena heaps (2 × DEFAULT_MMAP_THRESHOLD_MAX
/// on 64-bit).
pub const HEAP_MAX: u64 = 64 << 20;

/// Is this anonymous mapping one of glibc's non-main arena heaps? They are aligned to
/// 64 MiB and start with a heap_info {ar_ptr, prev, size, mprotect_size, ...} whose size
/// is the mapping's read-write length.
pub fn is_arena_heap(mem: &mut dyn Reader, start: u64, end: u64) -> bool {
    if !start.is_multiple_of(HEAP_MAX) || end - start < 64 {
        return false;
    }
    let mut w = [0u64; 4];
    if mem.read(start, &mut w) < 4 {
        return false;
    }
    let [ar, prev, size, mprot] = w;
    ar != 0
        && ar.is_multiple_of(8)
        && prev.is_multiple_of(HEAP_MAX)
        && size <= HEAP_MAX
        && (size == end - start || mprot == end - start)
}

/// A candidate root mapping: readable and writable, not heap, not the scanner's own.
pub struct RwMapping {
    pub start: u64,
    pub end: u64,
    /// Backed by a file (a module's data).
    pub file: bool,
    pub shared: bool,
    pub name: Vec<u8>,
}

/// glibc's thread-stack layout: the static TLS size, its alignment, and the size of
/// `struct pthread` (what `_dl_get_tls_static_info` and `_thread_db_sizeof_pthread`
/// say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackLayout {
    pub static_size: u64,
    pub align: u64,
    pub tcb: u64,
}

/// The stacks of threads that have ended, which glibc keeps in its cache for the next
/// thread (and of exited threads not yet joined). Such a stack is a private anonymous
/// mapping just above a PROT_NONE guard page (`guard_ends` holds where guards end), whose
/// top holds a `struct pthread` (at the thread pointer `tp`, where glibc puts it, and
/// whose first and third words point to itself) with the static TLS below it; no live
/// thread's stack pointer lies in it, and its `tp` is no live thread's (`live_tps`: a
/// thread running on another stack, a fiber or a signal stack, still owns its own).
/// `f` gets the part below the static TLS, where the dead thread's frames were; the TLS
/// and the descriptor stay roots (an unjoined thread's return value lives there).
pub fn dead_thread_stacks(
    mem: &mut dyn Reader,
    layout: StackLayout,
    rw: &[RwMapping],
    guard_ends: &[u64],
    live_sps: &[u64],
    live_tps: &[u64],
    mut f: impl FnMut(u64, u64),
) {
    let StackLayout {
        static_size,
        align,
        tcb,
    } = layout;
    if tcb == 0 || !align.is_power_of_two() {
        return;
    }
    for m in rw {
        let (start, end) = (m.start, m.end);
        if m.file || m.shared || !m.name.is_empty() || end - start < static_size + 4096 {
            continue;
        }
        if !guard_ends.contains(&start) || live_sps.iter().any(|&sp| sp >= start && sp < end) {
            continue;
        }
        let tp = (end - tcb) & !(align - 1);
        if live_tps.contains(&tp) {
            continue;
        }
        let mut hdr = [0u64; 3];
        if mem.read(tp, &mut hdr) == 3 && hdr[0] == tp && hdr[2] == tp {
            let stack_top = (tp + tcb).saturating_sub(static_size.next_multiple_of(align));
            if stack_top > start {
                f(start, stack_top);
            }
        }
    }
}
