//! Temporary allocations: the definition, in one place, for every analysis that counts
//! them (the report's `temporary` section, and any later view such as a flame graph of
//! temporary allocations).
//!
//! **Definition** (heaptrack's, made per thread): a block is *temporary* when the program
//! releases it (free, delete, `realloc(p, 0)`) while it is still the most recent allocation
//! of the thread that allocated it, that is, that thread made no other allocation between
//! the block's allocation and its release. Which thread releases it does not matter.
//!
//! * A realloc that moves or resizes a block is not a release: the data lives on. It is an
//!   allocation (of the new block) for the rule, so `p = malloc(8); p = realloc(p, 16);
//!   free(p)` has one temporary block, the realloc's. So is a realloc's release recorded
//!   as an event of its own ([`Release::Moved`]).
//! * A block dropped because its address was handed out again while it was live (a
//!   release the recorder missed) is not temporary.
//! * Allocations that failed (NULL) are not allocations.
//!
//! The typical temporary is a buffer built and thrown away inside one function call:
//! `char *s = malloc(n); format(s); puts(s); free(s);` in a loop. Reusing one buffer, or a
//! stack array, removes the malloc/free pair.
//!
//! Feed it from a [`crate::replay::HeapObserver`]: [`Temporary::allocated`] from `added`,
//! [`Temporary::released`] from `removed` with [`Release::Free`].

use crate::replay::{Block, Release};

/// Thread indices above this are not followed (their releases are never temporary). The
/// recorder numbers threads from 0, so this is only a guard against damaged traces.
const MAX_THREADS: usize = 1 << 20;

/// Tracks, per thread, the address of its most recent allocation.
#[derive(Default, Clone, Debug)]
pub struct Temporary {
    /// Thread index -> address of its latest allocation (0: none yet).
    last: Vec<u64>,
}

impl Temporary {
    pub fn new() -> Self {
        Self::default()
    }

    /// `thread` allocated a block at `addr` (any allocation, reallocs included).
    #[inline]
    pub fn allocated(&mut self, thread: u32, addr: u64) {
        let t = thread as usize;
        if t >= MAX_THREADS {
            return;
        }
        if t >= self.last.len() {
            self.last.resize(t + 1, 0);
        }
        self.last[t] = addr;
    }

    /// The block at `addr` left the heap: is it temporary? Call it for every removal, before
    /// the block's address can be allocated again.
    #[inline]
    pub fn released(&mut self, addr: u64, block: &Block, why: Release) -> bool {
        if why != Release::Free {
            return false;
        }
        match self.last.get_mut(block.thread as usize) {
            Some(last) if *last == addr => {
                // A second release of the same address is not the same block: forget it.
                *last = 0;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{HeapObserver, Replay};
    use memlens_trace::reader::Event;
    use memlens_trace::AllocFunc;

    #[derive(Default)]
    struct Count(Temporary, Vec<u64>);
    impl HeapObserver for Count {
        fn added(&mut self, addr: u64, b: &Block) -> u32 {
            self.0.allocated(b.thread, addr);
            0
        }
        fn removed(&mut self, addr: u64, b: &Block, why: Release) {
            if self.0.released(addr, b, why) {
                self.1.push(addr);
            }
        }
    }

    fn alloc(thread: u32, addr: u64) -> Event {
        Event::Alloc {
            ts: 0,
            thread,
            func: AllocFunc::Malloc,
            addr,
            size: 8,
            stack: 1,
        }
    }
    fn free(thread: u32, addr: u64) -> Event {
        Event::Free {
            ts: 0,
            thread,
            func: AllocFunc::Free,
            addr,
            stack: 0,
        }
    }
    fn realloc(thread: u32, old: u64, new: u64, size: u64) -> Event {
        Event::Realloc {
            ts: 0,
            thread,
            func: AllocFunc::Realloc,
            old,
            new,
            size,
            stack: 2,
        }
    }

    fn temporaries(events: &[Event]) -> Vec<u64> {
        let mut r = Replay::new();
        let mut c = Count::default();
        for e in events {
            r.apply(e, &mut c);
        }
        c.1
    }

    #[test]
    fn the_definition() {
        // malloc/free pairs: temporary.
        assert_eq!(
            temporaries(&[alloc(0, 0x10), free(0, 0x10), alloc(0, 0x10), free(0, 0x10)]),
            vec![0x10, 0x10]
        );
        // Another allocation in between on the same thread: not temporary.
        assert_eq!(
            temporaries(&[alloc(0, 0x10), alloc(0, 0x20), free(0, 0x10)]),
            Vec::<u64>::new()
        );
        // ... but the newest one, freed first, is.
        assert_eq!(
            temporaries(&[alloc(0, 0x10), alloc(0, 0x20), free(0, 0x20), free(0, 0x10)]),
            vec![0x20]
        );
        // Allocations of other threads do not count; the releasing thread does not matter.
        assert_eq!(
            temporaries(&[alloc(0, 0x10), alloc(1, 0x20), free(1, 0x10), free(0, 0x20)]),
            vec![0x10, 0x20]
        );
        // A realloc is an allocation, its move is not a release; realloc(p, 0) is one.
        assert_eq!(
            temporaries(&[
                alloc(0, 0x10),
                realloc(0, 0x10, 0x30, 16),
                free(0, 0x30),
                alloc(0, 0x40),
                realloc(0, 0x40, 0, 0),
            ]),
            vec![0x30, 0x40]
        );
        // The same realloc recorded in two events (its release on its own, the new block
        // as realloc(NULL, n)): the same answer.
        let moved = Event::Free {
            ts: 0,
            thread: 0,
            func: AllocFunc::Realloc,
            addr: 0x10,
            stack: 0,
        };
        assert_eq!(
            temporaries(&[
                alloc(0, 0x10),
                moved,
                realloc(0, 0, 0x30, 16),
                free(0, 0x30)
            ]),
            vec![0x30]
        );
        // A block dropped by address reuse is not temporary; a double free counts once.
        assert_eq!(
            temporaries(&[
                alloc(0, 0x10),
                alloc(0, 0x10),
                alloc(0, 0x50),
                free(0, 0x10)
            ]),
            Vec::<u64>::new()
        );
        assert_eq!(
            temporaries(&[alloc(0, 0x10), free(0, 0x10), free(0, 0x10)]),
            vec![0x10]
        );
    }
}
