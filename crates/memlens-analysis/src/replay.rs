//! Replay of trace events into the live heap.
//!
//! [`Replay`] holds every live block (address -> size, allocation site) and the running
//! counters. It applies one [`Event`] at a time, so a trace of any size is analysed with
//! memory proportional to the live heap, never to the number of events.
//!
//! Semantics (see also `docs/ANALYSIS.md`):
//! * `Alloc` adds a block. If the address is already live, the old block is treated as
//!   implicitly freed (a release the recorder missed) and counted in
//!   [`Counters::reused_addresses`]. An allocation at address 0 (a failed allocation) is
//!   counted in [`Counters::failed_allocations`] and changes nothing.
//! * `Free` of a live address removes it and counts one free. Freeing address 0 is a
//!   no-op. Freeing an unknown address (allocated before recording started, or through a
//!   path the recorder does not see) is ignored and counted in
//!   [`Counters::untracked_frees`].
//! * `Realloc { old, new, size }`: `old == 0` is an allocation; `new == 0 && size == 0` is
//!   `realloc(p, 0)` and frees `old`; `new == 0 && size > 0` is a failure and `old` stays
//!   live ([`Counters::failed_reallocs`]); otherwise `old` is released and `new` is added
//!   with `size` bytes and the realloc's stack. For the totals a successful realloc counts
//!   as one allocation (of `size` bytes) *and* one free of the old block, besides being
//!   counted in [`Counters::reallocs`]. A `Free` event made by `realloc` is the release
//!   half of a realloc recorded in two events ([`Release::Moved`]).

use memlens_trace::key_table::{KeyTable, Place};
use memlens_trace::reader::Event;
use memlens_trace::AllocFunc;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Where a block was allocated: its stack id and the allocating function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteKey {
    pub stack: u32,
    pub func: AllocFunc,
}

/// Stack 0 and `malloc`: what a free slot of the live-block table holds.
impl Default for SiteKey {
    fn default() -> Self {
        SiteKey {
            stack: 0,
            func: AllocFunc::Malloc,
        }
    }
}

/// A live heap block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Block {
    /// Bytes; in a sampled trace, the bytes the block stands for (see `sampling.rs`).
    pub size: u64,
    /// How many blocks it stands for: 1, or in a sampled trace its weight.
    pub count: u64,
    pub site: SiteKey,
    /// When it was allocated (ns since the trace started).
    pub ts: u64,
    /// The recorder's index of the thread that allocated it.
    pub thread: u32,
    /// What [`HeapObserver::added`] returned for it (the report keeps its site's index
    /// here, to find the site again without a lookup when the block leaves).
    pub tag: u32,
}

/// Why a block left the live heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Released by the program: free, delete, `realloc(p, 0)`.
    Free,
    /// Replaced by the block a successful realloc returned (moved or resized in place);
    /// [`HeapObserver::added`] follows at once with the new block.
    Realloc,
    /// Dropped because an allocation returned its address while it was live (a release
    /// the recorder missed).
    Reused,
    /// Released by a realloc whose new block is not in the same event: a `Free` event of
    /// `realloc` or `reallocarray`. The recorder writes one when another thread may have
    /// reused the old address before the realloc's record was stamped (the new block
    /// follows as `realloc(NULL, n)`), and in a sampled trace when the new block was not
    /// sampled. The data lives on: not a release by the program.
    Moved,
}

/// Running event counters of a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful allocations, successful reallocs included.
    pub allocations: u64,
    /// Releases of tracked blocks (free, delete, realloc moving or freeing a block).
    pub frees: u64,
    /// `realloc`-family calls, whatever their outcome.
    pub reallocs: u64,
    /// Sum of the requested sizes of all successful allocations (reallocs included).
    pub bytes_allocated: u64,
    /// Releases of addresses that were not live (allocated before recording started).
    pub untracked_frees: u64,
    /// Reallocs that returned NULL with a non-zero size (the old block stays).
    pub failed_reallocs: u64,
    /// Allocations that returned NULL.
    pub failed_allocations: u64,
    /// Allocations at an address that was still live (the old block is dropped).
    pub reused_addresses: u64,
    /// Highest RSS sample, bytes (0: no samples).
    pub peak_rss_bytes: u64,
    /// Heap errors the recorder caught (double/invalid/mismatched releases).
    pub heap_errors: u64,
    /// Events applied.
    pub events: u64,
}

/// The part of the live-block table an event will touch, asked for some events before it
/// is applied (a hint: the replay is the same without it). A pass over a large heap waits
/// on a cache miss for every event otherwise.
impl crate::site::Prefetch for Replay {
    #[inline]
    fn prefetch(&self, ev: &Event) {
        match *ev {
            Event::Alloc { addr, .. } | Event::Free { addr, .. } => self.live.prefetch(addr),
            Event::Realloc { old, new, .. } => {
                self.live.prefetch(old);
                self.live.prefetch(new);
            }
            _ => {}
        }
    }
}

/// Notified of every block that enters or leaves the live heap, with its address.
pub trait HeapObserver {
    /// A block entered the heap; the value returned is kept as the block's `tag`.
    fn added(&mut self, _addr: u64, _block: &Block) -> u32 {
        0
    }
    fn removed(&mut self, _addr: u64, _block: &Block, _why: Release) {}
}

/// Observer that does nothing.
impl HeapObserver for () {}

/// The hasher of heap addresses (trusted u64 keys).
pub use memlens_trace::IntHasher as AddrHasher;

/// A map keyed by heap address, with [`AddrHasher`].
pub type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// The live heap and counters after the events applied so far.
#[derive(Default)]
pub struct Replay {
    live: KeyTable<Block>,
    live_bytes: u64,
    /// Blocks live (their counts: in a sampled trace, the estimate).
    live_count: u64,
    counters: Counters,
    /// The trace's sampling interval (0: every block was recorded).
    sample_interval: u64,
}

impl Replay {
    pub fn new() -> Self {
        Self::default()
    }

    /// A replay of a trace sampled at mean interval `interval` bytes (0: not sampled):
    /// every block that enters the heap is weighed (`sampling.rs`), so the sizes, counts
    /// and every figure made of them are estimates of the whole heap.
    pub fn sampled(interval: u64) -> Self {
        Replay {
            sample_interval: interval,
            ..Self::default()
        }
    }

    /// The replay for `reader`'s trace: [`Replay::sampled`] at its header's interval.
    pub fn for_trace(reader: &memlens_trace::reader::TraceReader) -> Self {
        Self::sampled(reader.header().sample_interval)
    }

    /// Whether the trace was sampled (`--sample`): its blocks stand for more than
    /// themselves.
    pub fn is_sampled(&self) -> bool {
        self.sample_interval != 0
    }

    /// The bytes and blocks a block of `size` bytes allocated at `addr` at time `ts`
    /// stands for: itself, or in a sampled trace its weight (the same in every pass).
    pub fn weigh(&self, addr: u64, ts: u64, size: u64) -> (u64, u64) {
        if self.sample_interval == 0 {
            return (size, 1);
        }
        crate::sampling::weight(size, self.sample_interval, addr ^ ts.rotate_left(32))
    }

    /// Bytes currently live.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }
    /// Blocks currently live.
    pub fn live_blocks(&self) -> u64 {
        self.live_count
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The live block starting at `addr`.
    pub fn get(&self, addr: u64) -> Option<Block> {
        self.live.get(addr).copied()
    }
    /// The live blocks, in no particular order.
    pub fn blocks(&self) -> impl Iterator<Item = (u64, &Block)> + '_ {
        self.live.iter()
    }

    fn add(&mut self, addr: u64, mut block: Block, obs: &mut impl HeapObserver) {
        (block.size, block.count) = self.weigh(addr, block.ts, block.size);
        self.counters.allocations += block.count;
        self.live_count += block.count;
        self.counters.bytes_allocated = self.counters.bytes_allocated.saturating_add(block.size);
        self.live_bytes = self.live_bytes.saturating_add(block.size);
        match self.live.place(addr) {
            Place::Occupied(slot) => {
                let old = *self.live.value_mut(slot);
                self.counters.reused_addresses += 1;
                self.live_bytes = self.live_bytes.saturating_sub(old.size);
                self.live_count = self.live_count.saturating_sub(old.count);
                obs.removed(addr, &old, Release::Reused);
                block.tag = obs.added(addr, &block);
                *self.live.value_mut(slot) = block;
            }
            Place::Vacant(slot) => {
                block.tag = obs.added(addr, &block);
                self.live.fill(slot, addr, block);
            }
        }
    }

    /// Remove a live block; `false` if the address was not live.
    fn remove(&mut self, addr: u64, why: Release, obs: &mut impl HeapObserver) -> bool {
        match self.live.remove(addr) {
            Some(old) => {
                self.counters.frees += old.count;
                self.live_bytes = self.live_bytes.saturating_sub(old.size);
                self.live_count = self.live_count.saturating_sub(old.count);
                obs.removed(addr, &old, why);
                true
            }
            None => {
                self.counters.untracked_frees += 1;
                false
            }
        }
    }

    /// Apply one event.
    pub fn apply(&mut self, ev: &Event, obs: &mut impl HeapObserver) {
        self.counters.events += 1;
        match *ev {
            Event::Alloc {
                ts,
                thread,
                func,
                addr,
                size,
                stack,
            } => {
                if addr == 0 {
                    self.counters.failed_allocations += 1;
                } else {
                    self.add(
                        addr,
                        Block {
                            size,
                            count: 1,
                            site: SiteKey { stack, func },
                            ts,
                            thread,
                            tag: 0,
                        },
                        obs,
                    );
                }
            }
            Event::Free { addr, func, .. } => {
                if addr != 0 {
                    let why = match func {
                        AllocFunc::Realloc | AllocFunc::Reallocarray => Release::Moved,
                        _ => Release::Free,
                    };
                    self.remove(addr, why, obs);
                }
            }
            Event::Realloc {
                ts,
                thread,
                func,
                old,
                new,
                size,
                stack,
            } => {
                // In a sampled trace, a realloc stands for as many as its new block.
                self.counters.reallocs += if new != 0 {
                    self.weigh(new, ts, size).1
                } else {
                    1
                };
                let block = Block {
                    size,
                    count: 1,
                    site: SiteKey { stack, func },
                    ts,
                    thread,
                    tag: 0,
                };
                if old == 0 {
                    if new == 0 {
                        self.counters.failed_allocations += 1;
                    } else {
                        self.add(new, block, obs);
                    }
                } else if new == 0 {
                    if size == 0 {
                        self.remove(old, Release::Free, obs);
                    } else {
                        self.counters.failed_reallocs += 1;
                    }
                } else {
                    self.remove(old, Release::Realloc, obs);
                    self.add(new, block, obs);
                }
            }
            Event::Rss { bytes, .. } => {
                self.counters.peak_rss_bytes = self.counters.peak_rss_bytes.max(bytes);
            }
            // The release itself, when it went ahead (a mismatch), is its own event.
            Event::HeapError { .. } => self.counters.heap_errors += 1,
            // What the program told the recorder changes no block; the budgets' pass
            // (`budgets.rs`) follows regions, real-time marks and assertions.
            Event::Region { .. } | Event::ThreadMark { .. } | Event::Assert { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(addr: u64, size: u64, stack: u32) -> Event {
        Event::Alloc {
            ts: 0,
            thread: 0,
            func: AllocFunc::Malloc,
            addr,
            size,
            stack,
        }
    }
    fn free(addr: u64) -> Event {
        Event::Free {
            ts: 0,
            thread: 0,
            func: AllocFunc::Free,
            addr,
            stack: 0,
        }
    }
    fn realloc(old: u64, new: u64, size: u64, stack: u32) -> Event {
        Event::Realloc {
            ts: 0,
            thread: 0,
            func: AllocFunc::Realloc,
            old,
            new,
            size,
            stack,
        }
    }

    #[test]
    fn realloc_cases() {
        let mut r = Replay::new();
        for e in [
            alloc(0x10, 100, 1),
            realloc(0x10, 0x20, 300, 2), // move: free 100, alloc 300
            realloc(0x20, 0, 500, 3),    // failure: 0x20 stays with 300
            realloc(0, 0x30, 7, 4),      // realloc(NULL, 7) = malloc
            realloc(0x30, 0, 0, 5),      // realloc(p, 0) = free
            realloc(0x99, 0x40, 8, 6),   // old unknown: untracked free, new block
            free(0),
        ] {
            r.apply(&e, &mut ());
        }
        let c = r.counters();
        assert_eq!(r.live_bytes(), 308);
        assert_eq!(r.live_blocks(), 2);
        assert_eq!(
            (
                c.allocations,
                c.frees,
                c.reallocs,
                c.bytes_allocated,
                c.untracked_frees,
                c.failed_reallocs
            ),
            (4, 2, 5, 415, 1, 1)
        );
        let mut live: Vec<_> = r.blocks().map(|(a, b)| (a, b.size, b.site.stack)).collect();
        live.sort();
        assert_eq!(live, vec![(0x20, 300, 2), (0x40, 8, 6)]);
    }

    #[test]
    fn alloc_over_live_address_drops_old_block() {
        let mut r = Replay::new();
        r.apply(&alloc(0x10, 100, 1), &mut ());
        r.apply(&alloc(0x10, 40, 2), &mut ());
        assert_eq!(
            (
                r.live_bytes(),
                r.live_blocks(),
                r.counters().reused_addresses
            ),
            (40, 1, 1)
        );
        r.apply(&free(0x10), &mut ());
        r.apply(&free(0x10), &mut ());
        assert_eq!(
            (
                r.live_bytes(),
                r.counters().frees,
                r.counters().untracked_frees
            ),
            (0, 1, 1)
        );
    }
}
