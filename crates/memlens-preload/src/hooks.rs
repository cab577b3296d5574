//! The interposed allocation functions.
//!
//! Each hook calls glibc's real allocator through its `__libc_*` entry point, found
//! without the loader's `dlsym` (`libc_alloc.rs`), keeps the live-block table (`live.rs`) in step, and records
//! the event with the caller's stack. Releases are recorded *before* the real free,
//! allocations *after* the real allocation, so that the timestamps order a block's reuse
//! by another thread correctly.
//!
//! Heap errors are caught here, as memcheck catches them: a release of an address where
//! no live block starts (double free, a pointer never allocated or inside a block) is
//! recorded and *not* passed to glibc, so the program survives it; a release by the wrong
//! family (malloc/delete, new/free, new[]/delete) is recorded and then done.

/// Every function the recorder hooks, by its symbol name, and whether it is one of C++'s
/// operators (the rest are C's): what `dlsym` hands out as a hook (`dlsym.rs`) and what
/// `memlens attach` routes to one (`attach/got.rs`).
pub const HOOKED: [(&core::ffi::CStr, bool); 37] = [
    (c"malloc", false),
    (c"calloc", false),
    (c"realloc", false),
    (c"reallocarray", false),
    (c"free", false),
    (c"posix_memalign", false),
    (c"aligned_alloc", false),
    (c"memalign", false),
    (c"valloc", false),
    (c"pvalloc", false),
    (c"__libc_malloc", false),
    (c"__libc_calloc", false),
    (c"__libc_realloc", false),
    (c"__libc_free", false),
    (c"__libc_memalign", false),
    (c"__libc_valloc", false),
    (c"__libc_pvalloc", false),
    (c"_Znwm", true),
    (c"_Znam", true),
    (c"_ZnwmRKSt9nothrow_t", true),
    (c"_ZnamRKSt9nothrow_t", true),
    (c"_ZnwmSt11align_val_t", true),
    (c"_ZnamSt11align_val_t", true),
    (c"_ZnwmSt11align_val_tRKSt9nothrow_t", true),
    (c"_ZnamSt11align_val_tRKSt9nothrow_t", true),
    (c"_ZdlPv", true),
    (c"_ZdaPv", true),
    (c"_ZdlPvm", true),
    (c"_ZdaPvm", true),
    (c"_ZdlPvSt11align_val_t", true),
    (c"_ZdaPvSt11align_val_t", true),
    (c"_ZdlPvmSt11align_val_t", true),
    (c"_ZdaPvmSt11align_val_t", true),
    (c"_ZdlPvRKSt9nothrow_t", true),
    (c"_ZdaPvRKSt9nothrow_t", true),
    (c"_ZdlPvSt11align_val_tRKSt9nothrow_t", true),
    (c"_ZdaPvSt11align_val_tRKSt9nothrow_t", true),
];

use crate::caller;
use crate::libc_alloc;
use crate::live::{self, Meta, Removed};
use crate::sample;
use crate::thread::{record, record_release, record_then, reserve_release, Caller, Op};
use core::ffi::{c_int, c_void};
use memlens_trace::{AllocFunc, HeapErrorKind};

#[inline(always)]
fn set_errno(e: c_int) {
    // SAFETY: writes this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// In an allocating hook, once the real allocator returned `p` for `size` bytes: record
/// the block and enter it in the table, unless sampling passes over it (a block the
/// sampler does not pick, or one allocated on the recorder's behalf, is neither). Sampling
/// decides first, so that an unsampled block costs no read of the caller's frame; the
/// caller is then read from the hook's own frame, which the real call left as it was at
/// entry (a macro, so that `caller!` runs in the hook itself).
macro_rules! allocated {
    ($func:expr, $p:expr, $size:expr) => {{
        let (p, size): (*mut c_void, u64) = ($p, $size);
        if !sample::passes_over(p, size) {
            recorded_allocation($func, p, size, caller!());
        }
    }};
}

/// In a releasing hook: release `p` (record it, take it out of the table, pass it to
/// glibc), or, when sampling knows it cannot be a sampled block, only pass it to glibc,
/// without reading the caller's frame. A macro for the reason [`allocated!`] is.
macro_rules! released {
    ($func:expr, $p:expr) => {{
        let p: *mut c_void = $p;
        if sample::passes_over_release(p) {
            libc_alloc::free(p);
        } else {
            release($func, p, caller!());
        }
    }};
}

/// A block the program gets, sampling having had its say ([`allocated!`]). The table's
/// slot is prefetched first and filled after the event is encoded, so that its cache miss
/// overlaps the recording. (Nothing else can see the block before the hook returns it;
/// the entry is made before the thread may stop for an exit scan.)
#[inline(always)]
fn recorded_allocation(func: AllocFunc, p: *mut c_void, size: u64, c: Caller) {
    if p.is_null() {
        return;
    }
    live::prefetch(p as u64);
    let op = Op::Alloc {
        addr: p as u64,
        size,
    };
    record_and_track(func, op, p, size, c);
}

/// Record `op`, which allocated the block `p` of `size` bytes, and enter the block in
/// the table with the number its record gave it (made while the thread's buffer is
/// held, before the thread may stop for an exit scan); without a number when nothing was
/// recorded.
#[inline(always)]
fn record_and_track(func: AllocFunc, op: Op, p: *mut c_void, size: u64, c: Caller) {
    let meta = Meta::new(size, func, crate::tls::busy());
    if !record_then(func, op, c, |serial| {
        live::insert(p as u64, meta.with_serial(serial))
    }) {
        live::insert(p as u64, meta);
    }
}

/// `p` is being released by `func`: take it out of the table. Returns the block's
/// metadata when the release may go on to glibc, `None` for a heap error that must not.
#[inline(always)]
fn releasing(func: AllocFunc, p: *mut c_void, c: Caller) -> Option<Option<Meta>> {
    match live::remove(p as u64) {
        Removed::Block(m) => {
            if m.func().family() != func.family() {
                error(func, HeapErrorKind::Mismatch, p, m.func(), c);
            }
            Some(Some(m))
        }
        // Attached to a running process: a block from before the attach (glibc's to
        // judge, as without the recorder).
        Removed::NotABlock if crate::attach::unknown_blocks_are_old() => Some(None),
        Removed::NotABlock => {
            error(func, HeapErrorKind::NotABlock, p, func, c);
            None
        }
        Removed::Deferred => Some(None),
    }
}

#[cold]
fn error(func: AllocFunc, kind: HeapErrorKind, p: *mut c_void, alloc_func: AllocFunc, c: Caller) {
    record(
        func,
        Op::Error {
            kind,
            addr: p as u64,
            alloc_func,
        },
        c,
    );
}

/// `malloc(3)`, recorded; the exported `malloc` (`unsampled.rs`) comes here unless
/// sampling passes over the call.
///
/// # Safety
/// None beyond malloc(3)'s: any size is accepted.
pub unsafe extern "C" fn malloc_hook(size: usize) -> *mut c_void {
    let p = libc_alloc::malloc(size);
    allocated!(AllocFunc::Malloc, p, size as u64);
    p
}

/// `calloc(3)`, recorded; the exported `calloc` (`unsampled.rs`) comes here unless
/// sampling passes over the call.
///
/// # Safety
/// None beyond calloc(3)'s.
pub unsafe extern "C" fn calloc_hook(n: usize, size: usize) -> *mut c_void {
    let p = libc_alloc::calloc(n, size);
    allocated!(AllocFunc::Calloc, p, n.wrapping_mul(size) as u64);
    p
}

/// # Safety
/// `old` is null or a block this allocator handed out and not yet released (a pointer
/// that is not one is caught as a heap error before glibc sees it).
#[inline(always)]
unsafe fn realloc_impl(func: AllocFunc, old: *mut c_void, size: usize, c: Caller) -> *mut c_void {
    if sample::on() {
        return realloc_sampled(func, old, size, c);
    }
    if old.is_null() {
        let p = libc_alloc::malloc(size);
        if !p.is_null() {
            let op = Op::Realloc {
                old: 0,
                new: p as u64,
                size: size as u64,
                serial: 0,
            };
            record_and_track(func, op, p, size as u64, c);
        }
        return p;
    }
    // Out of the table before glibc may free it (another thread may get the address).
    let Some(was) = releasing(func, old, c) else {
        // Not a block: memcheck's answer, NULL, with the pointer left alone.
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    if size == 0 {
        // glibc frees the block and returns NULL.
        record(
            func,
            Op::Realloc {
                old: old as u64,
                new: 0,
                size: 0,
                serial: was.map_or(0, |m| m.serial()),
            },
            c,
        );
        return libc_alloc::realloc(old, 0);
    }
    if may_move(old, size) {
        reserve_release(old as u64);
    }
    let p = libc_alloc::realloc(old, size);
    if p.is_null() {
        // Failed: the old block stays allocated.
        if let Some(m) = was {
            live::insert(old as u64, m);
        }
        return p;
    }
    let op = Op::Realloc {
        old: old as u64,
        new: p as u64,
        size: size as u64,
        serial: was.map_or(0, |m| m.serial()),
    };
    record_and_track(func, op, p, size as u64, c);
    p
}

/// Whether glibc's realloc of the live block `old` to `size` bytes may move it (and so
/// release `old` inside the call). It never does when `size` fits the chunk: glibc then
/// shrinks the block in place, an mmapped one too (its usable size is the chunk's less its
/// 16-byte header; a heap chunk's, less its 8-byte size field).
#[inline(always)]
fn may_move(old: *mut c_void, size: usize) -> bool {
    // SAFETY: `old` is a live block of glibc's (checked in the table by the caller): the
    // 8 bytes before it are its chunk's size field.
    let hdr = unsafe { core::ptr::read((old as *const u64).sub(1)) };
    let chunk = hdr & !7;
    let usable = if hdr & 2 != 0 {
        chunk.saturating_sub(16)
    } else {
        chunk.saturating_sub(8)
    };
    size as u64 > usable
}

/// [`realloc_impl`] when sampling: the old block is in the table only if it was sampled,
/// and the new one is sampled (for its whole size, as an allocation) or not on its own.
/// The four cases are recorded as a realloc (both sampled), a free of the old block, an
/// allocation of the new one, or nothing.
///
/// # Safety
/// As [`realloc_impl`], except that an unknown `old` is taken for an unsampled block and
/// passed to glibc.
#[inline(never)]
unsafe fn realloc_sampled(
    func: AllocFunc,
    old: *mut c_void,
    size: usize,
    c: Caller,
) -> *mut c_void {
    let was = if old.is_null() || !live::may_hold(old as u64) {
        None
    } else {
        match live::remove(old as u64) {
            Removed::Block(m) => {
                if m.func().family() != func.family() {
                    error(func, HeapErrorKind::Mismatch, old, m.func(), c);
                }
                Some(m)
            }
            // Not sampled (or, rarely, a removal queued under a signal handler).
            Removed::NotABlock | Removed::Deferred => None,
        }
    };
    let recorded = was.is_some_and(|m| !m.internal());
    let old_serial = was.map_or(0, |m| m.serial());
    if !old.is_null() && size == 0 {
        if recorded {
            let op = Op::Realloc {
                old: old as u64,
                new: 0,
                size: 0,
                serial: old_serial,
            };
            record(func, op, c);
        }
        return libc_alloc::realloc(old, 0);
    }
    // Asked before the real call, so the size may be one no allocator can satisfy:
    // bounded for the countdown (a realloc that fails is handled below).
    let sampled = sample::take((size as u64).min(1 << 48));
    if recorded && !sampled {
        // Its release is recorded before glibc may hand the address to another thread.
        // Should the realloc fail, the old block simply stays unsampled from here on.
        let op = Op::Free {
            addr: old as u64,
            serial: old_serial,
        };
        record(func, op, c);
    }
    if recorded && sampled && may_move(old, size) {
        reserve_release(old as u64);
    }
    let p = if old.is_null() {
        libc_alloc::malloc(size)
    } else {
        libc_alloc::realloc(old, size)
    };
    if p.is_null() {
        if let (Some(m), true) = (was, sampled) {
            live::insert(old as u64, m);
        }
        return p;
    }
    if sampled {
        let op = Op::Realloc {
            old: if recorded { old as u64 } else { 0 },
            new: p as u64,
            size: size as u64,
            serial: if recorded { old_serial } else { 0 },
        };
        record_and_track(func, op, p, size as u64, c);
    }
    p
}

/// `realloc(3)`, recorded; the exported `realloc` (`unsampled.rs`) comes here unless
/// sampling passes over both blocks.
///
/// # Safety
/// realloc(3)'s contract: `old` is null or a live block of this allocator (anything
/// else is reported as a heap error and left alone, with NULL returned).
pub unsafe extern "C" fn realloc_hook(old: *mut c_void, size: usize) -> *mut c_void {
    let c = caller!();
    realloc_impl(AllocFunc::Realloc, old, size, c)
}

/// `reallocarray(3)`, recorded.
///
/// # Safety
/// As [`realloc`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(old: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let c = caller!();
    match n.checked_mul(size) {
        Some(total) => realloc_impl(AllocFunc::Reallocarray, old, total, c),
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// The release path shared by free and every operator delete.
///
/// # Safety
/// `p` is null or any pointer: one that is not a live block start is reported as a heap
/// error and not passed to glibc.
#[inline(always)]
unsafe fn release(func: AllocFunc, p: *mut c_void, c: Caller) {
    if p.is_null() {
        return;
    }
    if sample::on() {
        release_sampled(func, p, c);
        return;
    }
    // Two cache misses, usually: the table's slot and glibc's chunk header (the size word
    // before the block, which the real free reads). Asked for together, they overlap,
    // and the table's is met only after the record is made (`record_release`).
    live::prefetch(p as u64);
    // SAFETY: a prefetch cannot fault, whatever `p` is.
    unsafe {
        core::arch::x86_64::_mm_prefetch(
            (p as *const i8).wrapping_sub(8),
            core::arch::x86_64::_MM_HINT_T0,
        )
    };
    // The common case, a release of a block of the same family, is recorded with the
    // table's lookup inside; the others are recorded below, after the lookup.
    let mut found = None;
    record_release(func, p as u64, c, || {
        let r = live::remove(p as u64);
        let named = release_named(func, &r);
        found = Some((r, named.is_some()));
        named
    });
    // `recorded`: the release's record stands (not taken back).
    let (r, recorded) = found.unwrap_or_else(|| (live::remove(p as u64), false));
    let free = |serial| Op::Free {
        addr: p as u64,
        serial,
    };
    match r {
        Removed::Block(m) => {
            if m.func().family() != func.family() {
                error(func, HeapErrorKind::Mismatch, p, m.func(), c);
            }
            // A block allocated on the recorder's behalf (by libc code it called, busy)
            // was never in the trace: its release by glibc later (a thread-exit
            // destructor's list node, dlerror's message, a thread's TLS buffers) is not
            // either.
            if !m.internal() && !recorded {
                record(func, free(m.serial()), c);
            }
        }
        // Attached: a block from before the attach, recorded as a free the trace never
        // saw allocated (an untracked free).
        Removed::NotABlock if crate::attach::unknown_blocks_are_old() => {
            if !recorded {
                record(func, free(0), c)
            }
        }
        Removed::NotABlock => {
            error(func, HeapErrorKind::NotABlock, p, func, c);
            return;
        }
        Removed::Deferred => {
            if !recorded {
                record(func, free(0), c)
            }
        }
    }
    libc_alloc::free(p);
}

/// For [`release`]: the number a release's record names when it is recorded at once,
/// with the table's lookup (0: none); `None` when it is not: a heap error (recorded
/// first, then the release), a block made on the recorder's behalf (never recorded).
#[inline(always)]
fn release_named(func: AllocFunc, r: &Removed) -> Option<u64> {
    match r {
        Removed::Block(m) if m.func().family() == func.family() && !m.internal() => {
            Some(m.serial())
        }
        Removed::Block(_) => None,
        Removed::NotABlock if crate::attach::unknown_blocks_are_old() => Some(0),
        Removed::NotABlock => None,
        Removed::Deferred => Some(0),
    }
}

/// [`release`] when sampling: only sampled blocks are in the table; a release that finds
/// none is an unsampled block's (a double or invalid free cannot be told from one) and
/// goes straight to glibc.
///
/// # Safety
/// `p` is a block glibc handed out and the program has not released.
#[inline(always)]
unsafe fn release_sampled(func: AllocFunc, p: *mut c_void, c: Caller) {
    // Most releases are of unsampled blocks, in shards that hold no sampled block: no
    // lock for them.
    if !live::may_hold(p as u64) {
        libc_alloc::free(p);
        return;
    }
    match live::remove(p as u64) {
        Removed::Block(m) => {
            if m.func().family() != func.family() {
                error(func, HeapErrorKind::Mismatch, p, m.func(), c);
            }
            if !m.internal() {
                let op = Op::Free {
                    addr: p as u64,
                    serial: m.serial(),
                };
                record(func, op, c);
            }
        }
        // Perhaps sampled: a free of a block the trace never had counts as untracked.
        Removed::Deferred => record(
            func,
            Op::Free {
                addr: p as u64,
                serial: 0,
            },
            c,
        ),
        Removed::NotABlock => {}
    }
    libc_alloc::free(p);
}

/// `free(3)`, recorded; the exported `free` (`unsampled.rs`) comes here unless sampling
/// knows the block was not sampled.
///
/// # Safety
/// free(3)'s contract; a pointer that is not a live block is reported, not freed.
pub unsafe extern "C" fn free_hook(p: *mut c_void) {
    released!(AllocFunc::Free, p)
}

/// `posix_memalign(3)`, recorded.
///
/// # Safety
/// `out` is valid for a pointer-sized write when the call succeeds.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let p = libc_alloc::memalign(align, size);
    allocated!(AllocFunc::PosixMemalign, p, size as u64);
    if p.is_null() {
        return libc::ENOMEM;
    }
    *out = p;
    0
}

/// `aligned_alloc(3)`, recorded.
///
/// # Safety
/// None beyond aligned_alloc(3)'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let p = libc_alloc::memalign(align, size);
    allocated!(AllocFunc::AlignedAlloc, p, size as u64);
    p
}

/// `memalign(3)`, recorded.
///
/// # Safety
/// None beyond memalign(3)'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let p = libc_alloc::memalign(align, size);
    allocated!(AllocFunc::Memalign, p, size as u64);
    p
}

/// `valloc(3)`, recorded.
///
/// # Safety
/// None beyond valloc(3)'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    let p = libc_alloc::valloc(size);
    allocated!(AllocFunc::Valloc, p, size as u64);
    p
}

/// `pvalloc(3)`, recorded.
///
/// # Safety
/// None beyond pvalloc(3)'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let p = libc_alloc::pvalloc(size);
    allocated!(AllocFunc::Pvalloc, p, size as u64);
    p
}

/// glibc's `__libc_memalign`, which a program may call by name: [`memalign`].
///
/// # Safety
/// As [`memalign`]'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    let p = libc_alloc::memalign(align, size);
    allocated!(AllocFunc::Memalign, p, size as u64);
    p
}

/// glibc's `__libc_valloc`: [`valloc`].
///
/// # Safety
/// As [`valloc`]'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    let p = libc_alloc::valloc(size);
    allocated!(AllocFunc::Valloc, p, size as u64);
    p
}

/// glibc's `__libc_pvalloc`: [`pvalloc`].
///
/// # Safety
/// As [`pvalloc`]'s.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    let p = libc_alloc::pvalloc(size);
    allocated!(AllocFunc::Pvalloc, p, size as u64);
    p
}

// ---- C++ operator new / delete (Itanium ABI mangled names, x86_64) ----

/// The next library's `operator new`, for the out-of-memory path only: it runs the
/// program's new-handler loop, then throws `std::bad_alloc` (or, a nothrow form, returns
/// null), which we cannot do from here.
///
/// # Safety
/// `name` is the mangled name of an operator new that libstdc++ (or the next library)
/// defines, taking `(size)` when `align` is 0 and `(size, align)` otherwise, then a
/// `const std::nothrow_t&` when `nothrow`.
unsafe fn real_new_slow(
    name: &core::ffi::CStr,
    size: usize,
    align: usize,
    nothrow: bool,
) -> *mut c_void {
    /// `std::nothrow` stands for an empty struct: only its address is passed.
    static NOTHROW: u8 = 0;
    let nt = core::ptr::addr_of!(NOTHROW) as usize;
    let f = libc::dlsym(libc::RTLD_NEXT, name.as_ptr());
    if f.is_null() {
        if nothrow {
            return core::ptr::null_mut();
        }
        libc::abort();
    }
    let _busy = crate::tls::BusyGuard::enter();
    match (align, nothrow) {
        (0, false) => {
            let f: unsafe extern "C" fn(usize) -> *mut c_void = core::mem::transmute(f);
            f(size)
        }
        (0, true) | (_, false) => {
            let second = if nothrow { nt } else { align };
            let f: unsafe extern "C" fn(usize, usize) -> *mut c_void = core::mem::transmute(f);
            f(size, second)
        }
        (_, true) => {
            let f: unsafe extern "C" fn(usize, usize, usize) -> *mut c_void =
                core::mem::transmute(f);
            f(size, align, nt)
        }
    }
}

/// The block an `operator new` returns, from glibc (or, when glibc has none, from the
/// next library's operator `slow`, which runs the C++ new-handler and then throws, or
/// for a nothrow form returns null, as without the recorder).
///
/// # Safety
/// As [`real_new_slow`] for `slow`; `align` is 0 or a power of two.
#[inline(always)]
unsafe fn real_new(
    size: usize,
    align: usize,
    nothrow: bool,
    slow: &core::ffi::CStr,
) -> *mut c_void {
    let sz = size.max(1);
    let mut p = if align == 0 {
        libc_alloc::malloc(sz)
    } else {
        libc_alloc::memalign(align, sz)
    };
    if p.is_null() {
        p = real_new_slow(slow, size, align, nothrow);
    }
    p
}

macro_rules! new_hook {
    ($name:ident, $func:expr, nothrow = $nt:expr, slow = $slow:expr) => {
        /// A C++ `operator new` variant, recorded as the operator the program called; its
        /// exported fast path (`unsampled.rs`) comes here unless sampling passes over the
        /// allocation and glibc has the memory.
        ///
        /// # Safety
        /// The operator's C++ contract; none of the recorder's own.
        pub unsafe extern "C" fn $name(size: usize) -> *mut c_void {
            let p = real_new(size, 0, $nt, $slow);
            allocated!($func, p, size as u64);
            p
        }
    };
}
macro_rules! new_aligned_hook {
    ($name:ident, $func:expr, nothrow = $nt:expr, slow = $slow:expr) => {
        /// An aligned C++ `operator new` variant, recorded as the one the program called.
        ///
        /// # Safety
        /// `align` is a power of two, as the C++ standard requires.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(size: usize, align: usize) -> *mut c_void {
            let p = real_new(size, align, $nt, $slow);
            allocated!($func, p, size as u64);
            p
        }
    };
}
macro_rules! delete_hook {
    ($name:ident, $func:expr $(, $extra:ident : $ty:ty)*) => {
        /// A C++ `operator delete` variant, recorded as the one the program called.
        ///
        /// # Safety
        /// `p` is null or any pointer: one that is not a live block is reported, not freed.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $extra: $ty)*) {
            $(let _ = $extra;)*
            released!($func, p)
        }
    };
    // Not exported: its exported name is an assembly fast path (`unsampled.rs`).
    (hook $name:ident, $func:expr $(, $extra:ident : $ty:ty)*) => {
        /// A C++ `operator delete` variant, recorded as the one the program called; its
        /// exported fast path (`unsampled.rs`) comes here unless sampling knows the block
        /// was not sampled.
        ///
        /// # Safety
        /// `p` is null or any pointer: one that is not a live block is reported, not freed.
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $extra: $ty)*) {
            $(let _ = $extra;)*
            released!($func, p)
        }
    };
}

// operator new(size_t), new[](size_t), and their nothrow forms (the nothrow_t& is ignored).
// Each operator records its own AllocFunc, so frames name the one the program called.
// Not exported: their exported names are assembly fast paths (`unsampled.rs`).
new_hook!(new_hook, AllocFunc::New, nothrow = false, slow = c"_Znwm");
new_hook!(
    new_array_hook,
    AllocFunc::NewArray,
    nothrow = false,
    slow = c"_Znam"
);
new_hook!(
    new_nothrow_hook,
    AllocFunc::NewNothrow,
    nothrow = true,
    slow = c"_ZnwmRKSt9nothrow_t"
);
new_hook!(
    new_array_nothrow_hook,
    AllocFunc::NewArrayNothrow,
    nothrow = true,
    slow = c"_ZnamRKSt9nothrow_t"
);
// operator new(size_t, align_val_t) and friends.
new_aligned_hook!(
    _ZnwmSt11align_val_t,
    AllocFunc::NewAligned,
    nothrow = false,
    slow = c"_ZnwmSt11align_val_t"
);
new_aligned_hook!(
    _ZnamSt11align_val_t,
    AllocFunc::NewArrayAligned,
    nothrow = false,
    slow = c"_ZnamSt11align_val_t"
);
new_aligned_hook!(
    _ZnwmSt11align_val_tRKSt9nothrow_t,
    AllocFunc::NewAlignedNothrow,
    nothrow = true,
    slow = c"_ZnwmSt11align_val_tRKSt9nothrow_t"
);
new_aligned_hook!(
    _ZnamSt11align_val_tRKSt9nothrow_t,
    AllocFunc::NewArrayAlignedNothrow,
    nothrow = true,
    slow = c"_ZnamSt11align_val_tRKSt9nothrow_t"
);

delete_hook!(hook delete_hook, AllocFunc::Delete);
delete_hook!(hook delete_array_hook, AllocFunc::DeleteArray);
delete_hook!(hook delete_sized_hook, AllocFunc::DeleteSized, _size: usize);
delete_hook!(hook delete_array_sized_hook, AllocFunc::DeleteArraySized, _size: usize);
delete_hook!(_ZdlPvSt11align_val_t, AllocFunc::DeleteAligned, _align: usize);
delete_hook!(_ZdaPvSt11align_val_t, AllocFunc::DeleteArrayAligned, _align: usize);
delete_hook!(_ZdlPvmSt11align_val_t, AllocFunc::DeleteSizedAligned, _size: usize, _align: usize);
delete_hook!(_ZdaPvmSt11align_val_t, AllocFunc::DeleteArraySizedAligned, _size: usize, _align: usize);
delete_hook!(_ZdlPvRKSt9nothrow_t, AllocFunc::DeleteNothrow, _nt: *const c_void);
delete_hook!(_ZdaPvRKSt9nothrow_t, AllocFunc::DeleteArrayNothrow, _nt: *const c_void);
delete_hook!(_ZdlPvSt11align_val_tRKSt9nothrow_t, AllocFunc::DeleteAlignedNothrow, _align: usize, _nt: *const c_void);
delete_hook!(_ZdaPvSt11align_val_tRKSt9nothrow_t, AllocFunc::DeleteArrayAlignedNothrow, _align: usize, _nt: *const c_void);
