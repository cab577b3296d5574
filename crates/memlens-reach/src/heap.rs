//! The heap model: the live blocks by address and the readable mappings.

use crate::BlockMemory;
use alloc::vec::Vec;

/// The low 48 bits of a block's meta word are its size; the rest is the caller's (the
/// recorder keeps the allocating function and its own-allocation flag there).
pub const SIZE_MASK: u64 = (1 << 48) - 1;

pub(crate) struct Cluster {
    pub(crate) base: u64,
    pub(crate) limit: u64,
    pub(crate) first: u32,
    pub(crate) buckets: Vec<u32>,
}

pub(crate) const BUCKET_SHIFT: u32 = 12;
pub(crate) const CLUSTER_GAP: u64 = 64 << 20;

/// The live blocks, sorted by address, with an index from addresses to blocks.
pub struct Heap {
    /// (start, meta) by address.
    pub blocks: Vec<(u64, u64)>,
    pub(crate) clusters: Vec<Cluster>,
    pub min: u64,
    pub max: u64,
    /// Whether a block's memory can be read (it lies in a readable mapping).
    pub readable: Vec<bool>,
}

/// A block's size from its meta word.
#[inline]
pub fn size_of(meta: u64) -> u64 {
    meta & SIZE_MASK
}

/// Where a block ends (a zero-sized block counts one byte).
#[inline]
pub fn end_of(b: &(u64, u64)) -> u64 {
    b.0 + size_of(b.1).max(1)
}

impl Heap {
    pub fn new(mut blocks: Vec<(u64, u64)>) -> Heap {
        blocks.sort_unstable_by_key(|b| b.0);
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut i = 0usize;
        while i < blocks.len() {
            let first = i;
            let base = blocks[i].0 & !((1 << BUCKET_SHIFT) - 1);
            let mut limit = end_of(&blocks[i]);
            i += 1;
            while i < blocks.len() && blocks[i].0 < limit.saturating_add(CLUSTER_GAP) {
                limit = limit.max(end_of(&blocks[i]));
                i += 1;
            }
            let nb = ((limit - base) >> BUCKET_SHIFT) as usize + 2;
            let mut buckets = alloc::vec![0u32; nb];
            // buckets[k] = first block index (global) starting at or after base + k*4K.
            let mut j = first;
            for (k, slot) in buckets.iter_mut().enumerate() {
                let at = base + ((k as u64) << BUCKET_SHIFT);
                while j < i && blocks[j].0 < at {
                    j += 1;
                }
                *slot = j as u32;
            }
            clusters.push(Cluster {
                base,
                limit,
                first: first as u32,
                buckets,
            });
        }
        let min = blocks.first().map_or(u64::MAX, |b| b.0);
        let max = clusters.iter().map(|c| c.limit).max().unwrap_or(0);
        let readable = alloc::vec![true; blocks.len()];
        Heap {
            blocks,
            clusters,
            min,
            max,
            readable,
        }
    }

    /// The aligned words of block `b` (none if its memory cannot be read).
    #[inline]
    pub fn words<'m>(&self, mem: &'m impl BlockMemory, b: usize) -> &'m [u64] {
        let (start, meta) = self.blocks[b];
        if self.readable[b] {
            mem.words(start, (size_of(meta) / 8) as usize)
        } else {
            &[]
        }
    }

    /// The block containing address `w`.
    #[inline]
    pub fn find(&self, w: u64) -> Option<u32> {
        if w < self.min || w >= self.max {
            return None;
        }
        let ci = self.clusters.partition_point(|c| c.base <= w);
        if ci == 0 {
            return None;
        }
        let c = &self.clusters[ci - 1];
        if w >= c.limit {
            return None;
        }
        let k = ((w - c.base) >> BUCKET_SHIFT) as usize;
        let lo = c.buckets[k] as usize;
        let hi = c.buckets[k + 1] as usize;
        // Last block starting at or before w: among those starting in this bucket, or
        // else the last one starting before it.
        let n = self.blocks[lo..hi].partition_point(|b| b.0 <= w);
        let cand = if n > 0 {
            lo + n - 1
        } else if lo > c.first as usize {
            lo - 1
        } else {
            return None;
        };
        let b = &self.blocks[cand];
        (w >= b.0 && w < end_of(b)).then_some(cand as u32)
    }
}

/// A readable mapping, for the vtable check and for validating block addresses.
#[derive(Clone, Copy, Debug)]
pub struct Map {
    pub start: u64,
    pub end: u64,
    pub exec: bool,
    pub file: bool,
}
