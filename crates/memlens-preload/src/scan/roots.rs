//! Roots: merging and subtracting address ranges, glibc's arena heaps, what the scan
//! prepares at start-up, and the dead frames of glibc's cached thread stacks.

use super::*;
pub(super) struct Root {
    pub(super) kind: RootKind,
    pub(super) tid: u32,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) name: Vec<u8>,
}

/// Subtract sorted, merged `excl` ranges from [lo, hi) and call f on each remaining piece.
pub(super) fn subtract(lo: u64, hi: u64, excl: &[(u64, u64)], mut f: impl FnMut(u64, u64)) {
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

pub(super) fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
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

pub(super) const HEAP_MAX: u64 = 64 << 20;

/// Is this anonymous mapping one of glibc's non-main arena heaps? They are aligned to
/// 64 MiB and start with a heap_info {ar_ptr, prev, size, mprotect_size, ...} whose size
/// is the mapping's read-write length.
pub(super) fn is_arena_heap(mem: &mut dyn Reader, start: u64, end: u64) -> bool {
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

/// What the scan needs from ld.so, looked up at start-up (`prepare`): after the other
/// threads are stopped, one of them may hold ld.so's lock (parked inside `dlopen`), and
/// `dladdr`/`dlsym` would wait for it forever.
pub(super) struct Prepared {
    /// The recorder library's path, as the loader names it in /proc/self/maps.
    pub(super) self_path: Vec<u8>,
    /// glibc's thread-stack layout: (static TLS size, its alignment, the size of
    /// `struct pthread`); zeros if this glibc does not export them.
    pub(super) layout: (u64, u64, u64),
}

pub(super) static PREPARED: spin::Once<Prepared> = spin::Once::new();

/// Look up what the scan will need from ld.so. Called at start-up, busy, single-threaded.
pub fn prepare() {
    PREPARED.call_once(|| Prepared {
        self_path: self_module_path(),
        layout: thread_stack_layout().unwrap_or((0, 0, 0)),
    });
}

pub(super) fn self_module_path() -> Vec<u8> {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr on one of our own functions fills info; dli_fname is a C string
    // owned by the loader.
    unsafe {
        if libc::dladdr(self_module_path as *const libc::c_void, &mut info) != 0
            && !info.dli_fname.is_null()
        {
            return core::ffi::CStr::from_ptr(info.dli_fname)
                .to_bytes()
                .to_vec();
        }
    }
    Vec::new()
}

/// glibc's thread-stack layout constants: (static TLS size, its alignment, the size of
/// `struct pthread`), from the two entry points its own debuggers and sanitizers use.
/// `None` if this glibc does not export them.
pub(super) fn thread_stack_layout() -> Option<(u64, u64, u64)> {
    // SAFETY: dlsym with NUL-terminated names (may allocate: the caller is busy). The
    // first is `void _dl_get_tls_static_info(size_t *size, size_t *align)`, the second a
    // `const uint32_t` (both GLIBC_PRIVATE, exported by glibc 2.34 and later).
    unsafe {
        let info = libc::dlsym(libc::RTLD_DEFAULT, c"_dl_get_tls_static_info".as_ptr());
        let tcb = libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_sizeof_pthread".as_ptr());
        if info.is_null() || tcb.is_null() {
            return None;
        }
        let info: extern "C" fn(*mut usize, *mut usize) = core::mem::transmute(info);
        let (mut size, mut align) = (0usize, 0usize);
        info(&mut size, &mut align);
        let tcb = core::ptr::read(tcb as *const u32) as u64;
        (align.is_power_of_two() && size as u64 > tcb && tcb > 0).then_some((
            size as u64,
            align as u64,
            tcb,
        ))
    }
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
pub(super) fn dead_thread_stacks(
    mem: &mut dyn Reader,
    rw: &[(u64, u64, bool, bool, Vec<u8>)],
    guard_ends: &[u64],
    live_sps: &[u64],
    live_tps: &[u64],
    mut f: impl FnMut(u64, u64),
) {
    let (static_size, align, tcb) = PREPARED.get().map_or((0, 0, 0), |p| p.layout);
    if tcb == 0 {
        return;
    }
    for &(start, end, file, shared, ref name) in rw {
        if file || shared || !name.is_empty() || end - start < static_size + 4096 {
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
