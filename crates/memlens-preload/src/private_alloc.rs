//! The recorder's own heap: talc over anonymous mmap regions.
//!
//! `System` cannot be the global allocator here, since its `malloc` is our own hook.
//! Keeping our memory in separate mappings also keeps it out of the program's heap
//! figures and out of the leak scan's roots.

use core::alloc::{GlobalAlloc, Layout};

extern crate alloc;
use core::sync::atomic::{AtomicU64, Ordering};
use talc::{OomHandler, Span, Talc, Talck};

/// Bytes the recorder has mapped for its own heap (never unmapped: a high-water mark).
pub static MAPPED_BYTES: AtomicU64 = AtomicU64::new(0);

const REGION: usize = 4 << 20;

pub struct MmapOnOom;

impl OomHandler for MmapOnOom {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        let want = (layout.size() + layout.align() + 4096).max(REGION);
        let size = (want + 0xfff) & !0xfff;
        let Some(p) = crate::own_memory::map(size) else {
            return Err(());
        };
        MAPPED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        // SAFETY: the span is a fresh mapping owned by nobody else, valid for `size` bytes.
        unsafe { talc.claim(Span::from_base_size(p, size)) }.map(|_| ())
    }
}

/// Zeroed allocations of at least this many bytes get their whole pages from the kernel
/// afresh ([`zero_lazily`]): a thread's large tables (the unwind rule cache, the memo)
/// then cost only the pages it touches, not their full size in every thread.
pub const LAZY_ZEROED: usize = 16 << 10;

/// Zero `len` bytes at `p`: the partial pages at either end with stores, the whole pages
/// between with `madvise(MADV_DONTNEED)`, which on private anonymous memory (every region
/// of this heap, `own_memory::map`) gives them back to the kernel: they read as zeros and
/// take memory again only once written.
///
/// # Safety
/// `p..p+len` is writable memory of this heap that nothing else uses.
unsafe fn zero_lazily(p: *mut u8, len: usize) {
    let start = p as usize;
    let end = start + len;
    let lo = (start + 4095) & !4095;
    let hi = end & !4095;
    if lo >= hi {
        // SAFETY: per the contract.
        unsafe { core::ptr::write_bytes(p, 0, len) };
        return;
    }
    // SAFETY: per the contract; [lo, hi) lies inside [start, end), whole pages.
    unsafe {
        core::ptr::write_bytes(p, 0, lo - start);
        core::ptr::write_bytes(hi as *mut u8, 0, end - hi);
        if libc::madvise(lo as *mut _, hi - lo, libc::MADV_DONTNEED) != 0 {
            core::ptr::write_bytes(lo as *mut u8, 0, hi - lo);
        }
    }
}

pub struct PrivateAlloc(Talck<spin::Mutex<()>, MmapOnOom>);

impl PrivateAlloc {
    pub const fn new() -> Self {
        PrivateAlloc(Talc::new(MmapOnOom).lock())
    }
}

/// Taken by every allocation of the recorder and by fork's prepare handler, so that no
/// thread is inside talc when the process forks.
pub static FORK_GATE: spin::Mutex<()> = spin::Mutex::new(());

// SAFETY: delegates to talc, which is a correct allocator; FORK_GATE only serialises.
// Each method's # Safety is GlobalAlloc's own (a layout of non-zero size; a pointer and
// layout that this allocator handed out).
unsafe impl GlobalAlloc for PrivateAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _g = FORK_GATE.lock();
        self.0.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _g = FORK_GATE.lock();
        self.0.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LAZY_ZEROED {
            let _g = FORK_GATE.lock();
            return self.0.alloc_zeroed(layout);
        }
        let p = {
            let _g = FORK_GATE.lock();
            self.0.alloc(layout)
        };
        if !p.is_null() {
            // SAFETY: `p` is a fresh allocation of `layout.size()` bytes, ours alone.
            unsafe { zero_lazily(p, layout.size()) };
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _g = FORK_GATE.lock();
        self.0.realloc(ptr, layout, new_size)
    }
}

/// A boxed slice of `n` zeroed `T`s from the global allocator (large ones lazily
/// zeroed: [`zero_lazily`]).
///
/// # Safety
/// All-zero bytes are a valid `T`.
pub unsafe fn zeroed_slice<T>(n: usize) -> alloc::boxed::Box<[T]> {
    let layout = Layout::array::<T>(n).expect("a table's size fits");
    if layout.size() == 0 {
        return (0..n)
            // SAFETY: a zero-sized T, all of whose (zero) bytes are valid per the contract.
            .map(|_| unsafe { core::mem::zeroed() })
            .collect();
    }
    // SAFETY: a non-zero-sized layout; the pointer, checked, has the slice's layout and
    // zeroed bytes, which are valid `T`s per the contract; the Box owns it.
    unsafe {
        let p = alloc::alloc::alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        alloc::boxed::Box::from_raw(core::ptr::slice_from_raw_parts_mut(p, n))
    }
}

/// A boxed zeroed `T` from the global allocator, never built on the stack first
/// ([`zeroed_slice`] of one).
///
/// # Safety
/// All-zero bytes are a valid `T`.
pub unsafe fn zeroed_box<T>() -> alloc::boxed::Box<T> {
    // SAFETY: per the contract; a slice of one `T` has `T`'s layout, so the Box may own
    // its allocation as a `T`.
    unsafe {
        alloc::boxed::Box::from_raw(alloc::boxed::Box::into_raw(zeroed_slice::<T>(1)) as *mut T)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeroing a range that starts and ends inside pages clears exactly the range: the
    /// partial pages by stores, the whole ones by madvise.
    #[test]
    fn zero_lazily_clears_exactly_the_range() {
        let len = 5 * 4096;
        let base = crate::own_memory::map(len).expect("mmap");
        // SAFETY: a fresh mapping of `len` bytes, ours alone.
        let all = unsafe { core::slice::from_raw_parts_mut(base, len) };
        for (start, n) in [(100, 3 * 4096 + 7), (4096, 2 * 4096), (10, 300)] {
            all.fill(0xAA);
            // SAFETY: inside the mapping, which nothing else uses.
            unsafe { zero_lazily(base.add(start), n) };
            for (i, &b) in all.iter().enumerate() {
                let inside = i >= start && i < start + n;
                assert_eq!(
                    b,
                    if inside { 0 } else { 0xAA },
                    "byte {i} of ({start}, {n})"
                );
            }
        }
        // SAFETY: the mapping from `map`, unused from here on.
        unsafe { crate::own_memory::unmap(base, len) };
    }

    #[test]
    fn zeroed_slice_is_zero() {
        // SAFETY: all-zero bytes are a valid u64.
        let s: alloc::boxed::Box<[u64]> = unsafe { zeroed_slice(10_000) };
        assert_eq!(s.len(), 10_000);
        assert!(s.iter().all(|&w| w == 0));
        // SAFETY: all-zero bytes are a valid [u64; 4096].
        let b: alloc::boxed::Box<[u64; 4096]> = unsafe { zeroed_box() };
        assert!(b.iter().all(|&w| w == 0));
    }
}
