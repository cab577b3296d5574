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
    forget(p as u64);
    // SAFETY: per the contract, the region is ours and unused.
    unsafe { libc::munmap(p as *mut _, bytes) };
}

/// Remember a region of the recorder's own memory that was mapped elsewhere. A slot that
/// [`forget`] freed (start 0) is taken again before the table grows: a recorder that maps
/// and unmaps all along keeps as many slots as it has regions. A slot is taken by a
/// compare-and-swap of its start from 0, so two registrations never share one.
pub fn register(start: u64, len: u64) {
    let take = |i: usize| {
        STARTS[i]
            .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    };
    loop {
        let n = COUNT.load(Ordering::Acquire).min(MAX_REGIONS);
        if let Some(i) = (0..n).find(|&i| STARTS[i].load(Ordering::Relaxed) == 0 && take(i)) {
            LENS[i].store(len, Ordering::Release);
            return;
        }
        let i = COUNT.fetch_add(1, Ordering::AcqRel);
        if i >= MAX_REGIONS {
            return;
        }
        // Another registration may have taken the new slot between the two steps.
        if take(i) {
            LENS[i].store(len, Ordering::Release);
            return;
        }
    }
}

/// The region starting at `start` is no longer the recorder's: its slot is freed (its
/// length first, so that a reader never sees its start with a stale length). Only the
/// live slot of that start is: an address the kernel hands out again after an unmap must
/// not leave the earlier region's slot live, or the scan would leave out whatever is
/// mapped there later (a library's data, seen with ctypes).
fn forget(start: u64) {
    let n = COUNT.load(Ordering::Acquire).min(MAX_REGIONS);
    for i in 0..n {
        if STARTS[i].load(Ordering::Relaxed) == start && LENS[i].load(Ordering::Relaxed) != 0 {
            LENS[i].store(0, Ordering::Release);
            STARTS[i].store(0, Ordering::Release);
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn live(start: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for_each(|s, e| {
            if s == start {
                v.push((s, e));
            }
        });
        v
    }

    /// A region registered, forgotten and registered again at the same address (the
    /// kernel hands an unmapped address out again) is listed once while registered and
    /// not at all once forgotten. (Addresses no mmap can return, so that other tests
    /// mapping at the same time never share them.)
    #[test]
    fn an_address_registered_again_is_listed_only_while_registered() {
        let a = 0xdead_0000_0000_0000u64;
        register(a, 5000);
        assert_eq!(live(a), [(a, a + 5000)]);
        forget(a);
        assert!(live(a).is_empty());
        register(a, 3000);
        register(a + 8192, 100);
        assert_eq!(live(a), [(a, a + 3000)]);
        forget(a);
        assert!(live(a).is_empty());
        assert_eq!(live(a + 8192), [(a + 8192, a + 8292)]);
        forget(a + 8192);
        assert!(live(a + 8192).is_empty());
    }

    /// Mapping and unmapping all along reuses slots: the table does not fill up (when it
    /// did, later regions were not listed and the scan took the recorder's memory, which
    /// holds every block's address, for roots).
    #[test]
    fn slots_are_reused() {
        for _ in 0..3 * MAX_REGIONS {
            let p = map(4096).unwrap();
            // SAFETY: the region just mapped, unused.
            unsafe { unmap(p, 4096) };
        }
        assert!(COUNT.load(Ordering::Acquire) < MAX_REGIONS);
        let p = map(4096).unwrap();
        assert_eq!(live(p as u64).len(), 1);
        // SAFETY: as above.
        unsafe { unmap(p, 4096) };
    }
}
