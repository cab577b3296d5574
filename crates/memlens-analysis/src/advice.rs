//! Advice: where a pattern is clear, one line of what usually fixes it, for one site.
//!
//! The rules, in the order they are listed in a report (within a rule, the largest
//! first):
//!
//! | rule | when (per site, counting the window's allocations) | advice |
//! |---|---|---|
//! | growth | the growth section flags the site | bound it (size limit, eviction) or drop entries nobody needs |
//! | temporary | at least [`TEMPORARY_MIN`] temporary allocations and at least [`TEMPORARY_MIN_FRACTION`] of the site's allocations | reuse one buffer, or use the stack |
//! | realloc chain | at least [`REALLOC_CHAIN_MIN`] reallocs that grew a block | reserve the final size up front, or grow geometrically |
//! | pool | at least [`POOL_MIN_ALLOCATIONS`] allocations, all of one size, at least [`POOL_MIN_FREED_FRACTION`] of them freed in the window, and fewer than [`TEMPORARY_MIN_FRACTION`] temporary | a pool / free list / arena of objects of that size |
//! | reference cycle | CPython: the leak check found at least [`REFERENCE_CYCLE_MIN_BYTES`] of garbage in reference cycles allocated at the site ([`crate::leaks::LeakReport::python_cycles`]) | break the cycle (`weakref`) or clear the reference |
//!
//! In a Python program, growth advice speaks Python (`crate::python::growth_advice`):
//! the source line that keeps the memory says whether a mapping (a cache: bound it with
//! `functools.lru_cache(maxsize=...)` or an explicit limit) or a list (a bounded
//! `collections.deque(maxlen=...)`) keeps growing.

use crate::growth::GrowthFit;
use crate::site::Site;
use memlens_common::units::human_bytes;

pub const TEMPORARY_MIN: u64 = 1000;
pub const TEMPORARY_MIN_FRACTION: f64 = 0.5;
pub const REALLOC_CHAIN_MIN: u64 = 100;
pub const POOL_MIN_ALLOCATIONS: u64 = 10_000;
pub const POOL_MIN_FREED_FRACTION: f64 = 0.9;
/// A site's garbage in reference cycles is worth a line of advice from this size on.
pub const REFERENCE_CYCLE_MIN_BYTES: u64 = 64 << 10;

/// Which rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdviceKind {
    Growth,
    ReferenceCycle,
    Temporary,
    ReallocChain,
    Pool,
}

impl AdviceKind {
    /// The JSON name.
    pub fn key(self) -> &'static str {
        match self {
            AdviceKind::Growth => "growth",
            AdviceKind::Temporary => "temporary",
            AdviceKind::ReallocChain => "realloc_chain",
            AdviceKind::Pool => "pool",
            AdviceKind::ReferenceCycle => "reference_cycle",
        }
    }
}

/// One line of advice about one site.
#[derive(Clone, Debug, PartialEq)]
pub struct Advice {
    pub kind: AdviceKind,
    pub site: Site,
    /// What was seen and what to do, without the site's location (the caller prints it).
    pub message: String,
    /// The bytes at stake, for ordering (rule-dependent).
    pub weight: u64,
}

/// What the rules read about a site, besides its [`Site`] statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteFacts {
    pub temporary: u64,
    /// Blocks allocated in the window and released in it.
    pub freed: u64,
    pub min_size: u64,
    pub max_size: u64,
    /// Reallocs at this site that grew a block, how many moved it, and the bytes moved.
    pub grow_reallocs: u64,
    pub realloc_moves: u64,
    pub realloc_copied: u64,
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// Advice for a growing site.
pub fn growth(site: Site, g: &GrowthFit) -> Advice {
    let what = format!("{:.0}% of the run", 100.0 * g.fraction);
    Advice {
        kind: AdviceKind::Growth,
        site,
        message: format!(
            "live memory here grows {}/s for {what} (its floor {} -> {}) and is not given \
             back: bound it (a size limit, LRU eviction) or drop entries nobody needs any more",
            human_bytes(g.rate.max(0.0) as u64),
            human_bytes(g.start_bytes),
            human_bytes(g.max_bytes)
        ),
        weight: g.growth_bytes(),
    }
}

/// Advice from a site's counts (every rule but growth), at most one per rule.
pub fn from_facts(site: Site, f: &SiteFacts) -> Vec<Advice> {
    let mut out = Vec::new();
    let allocs = site.stats.allocations;
    let temporary_share = f.temporary as f64 >= TEMPORARY_MIN_FRACTION * allocs as f64;
    if f.temporary >= TEMPORARY_MIN && temporary_share {
        out.push(Advice {
            kind: AdviceKind::Temporary,
            site,
            message: format!(
                "{} of its {} allocations ({:.0}%) are temporary, freed before any other \
                 allocation: allocate the buffer once and reuse it, or use a stack buffer",
                f.temporary,
                allocs,
                pct(f.temporary, allocs)
            ),
            weight: f.temporary,
        });
    }
    if f.grow_reallocs >= REALLOC_CHAIN_MIN {
        out.push(Advice {
            kind: AdviceKind::ReallocChain,
            site,
            message: format!(
                "{} reallocs grew blocks here ({}): reserve the final size up front, or grow \
                 the capacity geometrically (x1.5 to x2)",
                f.grow_reallocs,
                if f.realloc_moves == 0 {
                    "all in place, this time".to_string()
                } else {
                    format!(
                        "{} moved them, copying {}",
                        f.realloc_moves,
                        human_bytes(f.realloc_copied)
                    )
                }
            ),
            weight: f.grow_reallocs,
        });
    }
    if allocs >= POOL_MIN_ALLOCATIONS
        && f.min_size == f.max_size
        && f.freed as f64 >= POOL_MIN_FREED_FRACTION * allocs as f64
        && !temporary_share
    {
        out.push(Advice {
            kind: AdviceKind::Pool,
            site,
            message: format!(
                "{} blocks of {} each, {:.0}% freed again: a pool or free list of {}-byte \
                 objects (or an arena freed at once) saves a malloc and a free per object",
                allocs,
                human_bytes(f.min_size),
                pct(f.freed, allocs),
                f.min_size
            ),
            weight: allocs,
        });
    }
    out
}

/// Advice for a site whose blocks were garbage in CPython reference cycles at the leak
/// check.
pub fn reference_cycle(site: Site, bytes: u64, blocks: u64) -> Advice {
    Advice {
        kind: AdviceKind::ReferenceCycle,
        site,
        message: format!(
            "{} in {} allocated here were garbage held by reference cycles when the program's \
             work was done: Python frees them only when its cycle collector runs (never while \
             gc is disabled); break the cycle: keep a weakref.ref (or weakref.WeakMethod for a \
             bound method stored on its own object) instead of the back-reference, or clear it \
             when done",
            human_bytes(bytes),
            if blocks == 1 {
                "1 block".to_string()
            } else {
                format!("{blocks} blocks")
            }
        ),
        weight: bytes,
    }
}

/// Order a report's advice: by rule, then weight (largest first), then site.
pub fn sort(advice: &mut [Advice]) {
    advice.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then(b.weight.cmp(&a.weight))
            .then((a.site.stack, a.site.func).cmp(&(b.site.stack, b.site.func)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::SiteStats;
    use memlens_trace::AllocFunc;

    fn site(allocations: u64) -> Site {
        Site {
            stack: 7,
            func: AllocFunc::Malloc,
            stats: SiteStats {
                allocations,
                ..Default::default()
            },
        }
    }

    #[test]
    fn thresholds() {
        let f = SiteFacts {
            temporary: 1000,
            freed: 1000,
            min_size: 48,
            max_size: 48,
            ..Default::default()
        };
        let a = from_facts(site(1000), &f);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AdviceKind::Temporary);
        assert!(a[0]
            .message
            .starts_with("1000 of its 1000 allocations (100%) are temporary"));
        // 999 temporaries, or under half of the allocations: nothing.
        assert!(from_facts(
            site(999),
            &SiteFacts {
                temporary: 999,
                ..f
            }
        )
        .is_empty());
        assert!(from_facts(
            site(2001),
            &SiteFacts {
                temporary: 1000,
                ..f
            }
        )
        .is_empty());
        // Realloc chains.
        let r = SiteFacts {
            grow_reallocs: 100,
            realloc_moves: 3,
            realloc_copied: 4096,
            ..Default::default()
        };
        let a = from_facts(site(100), &r);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AdviceKind::ReallocChain);
        assert!(
            a[0].message.contains("copying 4.00 KiB"),
            "{}",
            a[0].message
        );
        assert!(from_facts(
            site(99),
            &SiteFacts {
                grow_reallocs: 99,
                ..r
            }
        )
        .is_empty());
        // Pools: same size, churned, not temporary.
        let p = SiteFacts {
            temporary: 10,
            freed: 9000,
            min_size: 64,
            max_size: 64,
            ..Default::default()
        };
        let a = from_facts(site(10_000), &p);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, AdviceKind::Pool);
        assert!(from_facts(site(10_000), &SiteFacts { max_size: 65, ..p }).is_empty());
        assert!(from_facts(site(10_000), &SiteFacts { freed: 8999, ..p }).is_empty());
    }
}
