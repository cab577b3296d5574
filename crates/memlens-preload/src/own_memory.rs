//! Every mapping the recorder makes for itself, so that the leak scan never treats the
//! recorder's memory (which holds the address of every block) as a root.
//!
//! A fixed array of `(start, len)` pairs, appended with an atomic counter and read
//! without locks: registration happens before the memory is used, and the scan runs
//! when every other thread is stopped.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub const MAX_REGIONS: usize = 4096;

// Exported under these names so that `memlens snapshot`, reading this process from
// outside, leaves the recorder's memory out of the roots too (it reads the dynamic symbol
// table of the mapped library). The layout is part of that contract: a usize count, then
// MAX_REGIONS starts and MAX_REGIONS lengths.
#[export_name = "memlens_own_memory_count"]
pub static COUNT: AtomicUsize = AtomicUsize::new(0);
#[export_name = "memlens_own_memory_starts"]
pub static STARTS: [AtomicU64; MAX_REGIONS] = [const { AtomicU64::new(0) }; MAX_REGIONS];
#[export_name = "memlens_own_memory_lens"]
pub static LENS: [AtomicU64; MAX_REGIONS] = [const { AtomicU64::new(0) }; MAX_REGIONS];

/// Map `bytes` of private anonymous read-write memory for the recorder (zeroed), and
/// remember it. `None` if mmap fails.
pub fn map(bytes: usize) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    register(p as u64, bytes as u64);
    Some(p as *mut u8)
}

/// Unmap a region obtained from [`map`].
///
/// # Safety
/// `p` and `bytes` are exactly a region returned by `map`, and nothing uses it any more.
pub unsafe fn unmap(p: *mut u8, bytes: usize) {
    let n = COUNT.load(Ordering::Acquire).min(MAX_REGIONS);
    for i in 0..n {
        if STARTS[i].load(Ordering::Relaxed) == p as u64 {
            LENS[i].store(0, Ordering::Release);
            break;
        }
    }
    // SAFETY: per the contract, the region is ours and unused.
    unsafe { libc::munmap(p as *mut _, bytes) };
}

/// Remember a region of the recorder's own memory that was mapped elsewhere.
pub fn register(start: u64, len: u64) {
    let i = COUNT.fetch_add(1, Ordering::AcqRel);
    if i < MAX_REGIONS {
        STARTS[i].store(start, Ordering::Relaxed);
        LENS[i].store(len, Ordering::Release);
    }
}

/// Call `f(start, end)` for each live region.
pub fn for_each(mut f: impl FnMut(u64, u64)) {
    let n = COUNT.load(Ordering::Acquire).min(MAX_REGIONS);
    for i in 0..n {
        let len = LENS[i].load(Ordering::Acquire);
        if len != 0 {
            let s = STARTS[i].load(Ordering::Relaxed);
            f(s, s + len);
        }
    }
}
