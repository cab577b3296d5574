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

/// One line of a process's `/proc/PID/maps`, as both scans read it.
pub struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    /// The path or pseudo-name (`[heap]`, `[stack]`, `[anon:...]`), empty for anonymous
    /// memory.
    pub name: &'a [u8],
}

/// A process's mappings as the leak check sees them: the one classification of
/// `/proc/PID/maps` for the exit scan (inside the process) and `memlens snapshot`
/// (outside it), fed line by line with [`Mappings::add`].
#[derive(Default)]
pub struct Mappings {
    /// Readable mappings, by address.
    pub maps: Vec<crate::Map>,
    /// Candidate root mappings: readable and writable, not heap, not the recorder's, not
    /// device memory.
    pub rw: Vec<RwMapping>,
    /// Ranges that are never roots (the caller adds the recorder's memory, mmapped
    /// blocks, dead stacks).
    pub excl: Vec<(u64, u64)>,
    /// Where PROT_NONE mappings (thread-stack guards among them) end.
    pub guard_ends: Vec<u64>,
}

impl Mappings {
    /// Take the next line (in address order). `recorder`: the mapping is the recorder's
    /// own, never a root. `arena_heap` is asked only of anonymous read-write memory:
    /// whether it is one of glibc's arena heaps ([`is_arena_heap`]), heap and not root.
    pub fn add(&mut self, m: &MapsLine, recorder: bool, arena_heap: impl FnOnce() -> bool) {
        let file = m.name.first() == Some(&b'/');
        if m.read {
            self.maps.push(crate::Map {
                start: m.start,
                end: m.end,
                exec: m.exec,
                file,
            });
        }
        if !(m.read || m.write || m.exec) {
            self.guard_ends.push(m.end);
        }
        if !(m.read && m.write) || recorder {
            return;
        }
        let special = m.name.starts_with(b"[v") || m.name == b"[heap]";
        // Device memory is not the program's data (and may not even be readable), but a
        // private mapping of /dev/zero is plain anonymous memory and shared memory is
        // memory.
        let dev = m.name.starts_with(b"/dev/")
            && !m.name.starts_with(b"/dev/shm/")
            && !m.name.starts_with(b"/dev/zero");
        // Named anonymous memory (`[anon:...]`, as glibc names its arenas with the
        // `glibc.mem.decorate_maps` tunable) is anonymous memory.
        let anon = m.name.is_empty() || m.name.starts_with(b"[anon");
        if special || dev || (anon && arena_heap()) {
            return;
        }
        let name = if anon { &[][..] } else { m.name };
        self.rw.push(RwMapping {
            start: m.start,
            end: m.end,
            file,
            shared: m.shared,
            name: name.to_vec(),
        });
    }
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
