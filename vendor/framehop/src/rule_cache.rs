use alloc::boxed::Box;

use crate::unwind_rule::UnwindRule;

// memlens patch: 509 entries thrash on deep, varied stacks (cc1plus, CPython): the misses
// re-parse DWARF CFI and dominated recording time. 8191 (prime) entries, ~200 KiB a thread.
const CACHE_ENTRY_COUNT: usize = 8191;

pub struct RuleCache<R: UnwindRule> {
    entries: Box<[CacheEntry<R>]>,
    stats: CacheStats,
}

impl<R: UnwindRule> RuleCache<R> {
    pub fn new() -> Self {
        // memlens patch: built on the heap directly (a large array built on the stack
        // first could overflow a small thread stack inside an allocation hook), and from
        // zeroed memory, in which an entry of address 0 is empty: an allocator that maps
        // zeroed memory lazily (memlens's does for large blocks) then gives a thread only
        // the pages of the slots it uses, not 200 KiB.
        let layout = core::alloc::Layout::array::<CacheEntry<R>>(CACHE_ENTRY_COUNT)
            .expect("the rule cache's size fits");
        // SAFETY: all-zero bytes are a valid CacheEntry (integers, and a MaybeUninit
        // rule); the allocation has the slice's layout and is owned by the Box.
        let entries = unsafe {
            let p = alloc::alloc::alloc_zeroed(layout) as *mut CacheEntry<R>;
            if p.is_null() {
                alloc::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(core::ptr::slice_from_raw_parts_mut(p, CACHE_ENTRY_COUNT))
        };
        Self {
            entries,
            stats: CacheStats::new(),
        }
    }

    pub fn lookup(&mut self, address: u64, modules_generation: u16) -> CacheResult<R> {
        let slot = (address % (CACHE_ENTRY_COUNT as u64)) as u16;
        let entry = &self.entries[slot as usize];
        if entry.address == 0 {
            self.stats.miss_empty_slot_count += 1;
        } else if entry.modules_generation == modules_generation {
            if entry.address == address {
                self.stats.hit_count += 1;
                // SAFETY: an entry's address is non-zero only once `insert` wrote its rule.
                return CacheResult::Hit(unsafe { entry.unwind_rule.assume_init() });
            } else {
                self.stats.miss_wrong_address_count += 1;
            }
        } else {
            self.stats.miss_wrong_modules_count += 1;
        }
        CacheResult::Miss(CacheHandle {
            slot,
            address,
            modules_generation,
        })
    }

    pub fn insert(&mut self, handle: CacheHandle, unwind_rule: R) {
        let CacheHandle {
            slot,
            address,
            modules_generation,
        } = handle;
        // memlens patch: address 0 marks an empty entry; such a lookup always misses.
        if address == 0 {
            return;
        }
        self.entries[slot as usize] = CacheEntry {
            address,
            modules_generation,
            unwind_rule: core::mem::MaybeUninit::new(unwind_rule),
        };
    }

    /// Returns a snapshot of the cache usage statistics.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

pub enum CacheResult<R: UnwindRule> {
    Miss(CacheHandle),
    Hit(R),
}

pub struct CacheHandle {
    slot: u16,
    address: u64,
    modules_generation: u16,
}

const _: () = assert!(
    CACHE_ENTRY_COUNT as u64 <= u16::MAX as u64,
    "u16 should be sufficient to store the cache slot index"
);

#[derive(Clone, Copy, Debug)]
struct CacheEntry<R: UnwindRule> {
    /// 0: empty (memlens patch: was an `Option`, whose `None` is not all-zero bytes).
    address: u64,
    modules_generation: u16,
    unwind_rule: core::mem::MaybeUninit<R>,
}

/// Statistics about the effectiveness of the rule cache.
#[derive(Default, Debug, Clone, Copy)]
pub struct CacheStats {
    /// The number of successful cache hits.
    pub hit_count: u64,
    /// The number of cache misses that were due to an empty slot.
    pub miss_empty_slot_count: u64,
    /// The number of cache misses that were due to a filled slot whose module
    /// generation didn't match the unwinder's current module generation.
    /// (This means that either the unwinder's modules have changed since the
    /// rule in this slot was stored, or the same cache is used with multiple
    /// unwinders and the unwinders are stomping on each other's cache slots.)
    pub miss_wrong_modules_count: u64,
    /// The number of cache misses that were due to cache slot collisions of
    /// different addresses.
    pub miss_wrong_address_count: u64,
}

impl CacheStats {
    /// Create a new instance.
    pub fn new() -> Self {
        Default::default()
    }

    /// The number of total lookups.
    pub fn total(&self) -> u64 {
        self.hits() + self.misses()
    }

    /// The number of total hits.
    pub fn hits(&self) -> u64 {
        self.hit_count
    }

    /// The number of total misses.
    pub fn misses(&self) -> u64 {
        self.miss_empty_slot_count + self.miss_wrong_modules_count + self.miss_wrong_address_count
    }
}

#[cfg(test)]
mod tests {
    use crate::{aarch64::UnwindRuleAarch64, x86_64::UnwindRuleX86_64};

    use super::*;

    // Ensure that the size of CacheEntry<UnwindRuleX86_64> doesn't change by accident
    // (memlens patch: the entry is no longer an Option; an address of 0 marks it empty).
    #[test]
    fn test_cache_entry_size() {
        assert_eq!(core::mem::size_of::<CacheEntry<UnwindRuleX86_64>>(), 16);
        assert_eq!(core::mem::size_of::<CacheEntry<UnwindRuleAarch64>>(), 24);
    }

    // memlens patch: a zeroed cache misses everywhere, holds what was inserted, and never
    // holds address 0.
    #[test]
    fn zeroed_entries_are_empty() {
        let mut c = RuleCache::<UnwindRuleX86_64>::new();
        let rule = UnwindRuleX86_64::UseFramePointer;
        for addr in [0u64, 1, 0x40_1000, 8191 * 3] {
            match c.lookup(addr, 0) {
                CacheResult::Miss(h) => c.insert(h, rule),
                CacheResult::Hit(_) => panic!("empty cache hit at {addr:#x}"),
            }
        }
        assert!(matches!(c.lookup(0, 0), CacheResult::Miss(_)));
        assert!(matches!(c.lookup(0x40_1000, 0), CacheResult::Hit(r) if r == rule));
        assert!(matches!(c.lookup(0x40_1000, 1), CacheResult::Miss(_)));
        // 8191 * 3 shares slot 0 with address 0, which was not stored.
        assert!(matches!(c.lookup(8191 * 3, 0), CacheResult::Hit(_)));
        assert_eq!(c.stats().miss_empty_slot_count, 4);
    }
}
