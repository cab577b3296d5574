//! The recorder's own heap: talc over anonymous mmap regions.
//!
//! `System` cannot be the global allocator here, since its `malloc` is our own hook.
//! Keeping our memory in separate mappings also keeps it out of the program's heap
//! figures and out of the leak scan's roots.

use core::alloc::{GlobalAlloc, Layout};
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
        let _g = FORK_GATE.lock();
        self.0.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _g = FORK_GATE.lock();
        self.0.realloc(ptr, layout, new_size)
    }
}
