//! The rings of recent addresses that format 5 codes Events chunks' addresses against
//! (docs/TRACE_FORMAT.md, "Addresses in version 5"): a chunk remembers its last
//! [`RING_LEN`] released and its last [`RING_LEN`] allocated addresses, and an address
//! found in the other kind's ring is written as its distance there. glibc hands a freed
//! block to the next request of its size class, and programs free many blocks soon after
//! allocating them, so both finds are common and cost one byte.
//!
//! The writer (`ChunkBuilder`) and the reader (`records::ColumnFields`) keep the same
//! rings, entry for entry.

/// Addresses a ring holds.
pub const RING_LEN: usize = 16;

/// The last [`RING_LEN`] addresses pushed (initially all 0), newest at distance 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    addrs: [u64; RING_LEN],
    /// Each entry's [`key`], searched 16 at a time.
    keys: [u32; RING_LEN],
    /// Pushes so far (wrapping); the next push goes to slot `head % RING_LEN`.
    head: u32,
}

/// The search key of an address: its bits 4-35. A key that matches is confirmed
/// against the whole address.
#[inline(always)]
fn key(addr: u64) -> u32 {
    (addr >> 4) as u32
}

/// Bit i set: `keys[i] == k`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn matching_keys(keys: &[u32; RING_LEN], k: u32) -> u32 {
    use core::arch::x86_64::*;
    const _: () = assert!(RING_LEN == 16);
    let p = keys.as_ptr() as *const __m128i;
    // SAFETY: SSE2 is part of every x86_64 CPU; the four unaligned loads read the
    // array's 64 bytes, p..p+4 (16 u32 = 4 x 16 bytes), and nothing past it.
    unsafe {
        let k = _mm_set1_epi32(k as i32);
        let m = |i: usize| {
            _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(
                _mm_loadu_si128(p.add(i)),
                k,
            ))) as u32
        };
        m(0) | m(1) << 4 | m(2) << 8 | m(3) << 12
    }
}

/// Bit i set: `keys[i] == k`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn matching_keys(keys: &[u32; RING_LEN], k: u32) -> u32 {
    let mut hits = 0u32;
    for (i, &e) in keys.iter().enumerate() {
        hits |= ((e == k) as u32) << i;
    }
    hits
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

impl Ring {
    pub const fn new() -> Ring {
        Ring {
            addrs: [0; RING_LEN],
            keys: [0; RING_LEN],
            head: 0,
        }
    }

    #[inline(always)]
    fn slot(&self, distance: u32) -> usize {
        (self.head.wrapping_sub(1).wrapping_sub(distance) % RING_LEN as u32) as usize
    }

    #[inline(always)]
    pub fn push(&mut self, addr: u64) {
        let slot = self.head as usize % RING_LEN;
        self.addrs[slot] = addr;
        self.keys[slot] = key(addr);
        self.head = self.head.wrapping_add(1);
    }

    /// The entry `distance` places back from the newest (`distance` < [`RING_LEN`]).
    #[inline(always)]
    pub fn get(&self, distance: u64) -> u64 {
        self.addrs[self.slot(distance as u32)]
    }

    /// The distance of the newest entry equal to `addr`, if there is one.
    #[inline(always)]
    pub fn distance(&self, addr: u64) -> Option<u64> {
        const N: u32 = RING_LEN as u32;
        let hits = matching_keys(&self.keys, key(addr));
        // Rotate the slot mask so that the newest slot, (head - 1) mod N, is bit N - 1
        // and the slot d places back is bit N - 1 - d: the nearest match is the highest.
        let h = self.head % N;
        let mut rot = ((hits << (N - h)) | (hits >> h)) & ((1 << N) - 1);
        while rot != 0 {
            let d = rot.leading_zeros() - (32 - N);
            if self.addrs[self.slot(d)] == addr {
                return Some(d as u64);
            }
            rot &= !(1 << (N - 1 - d));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring filled with `pushes` addresses drawn from a few, some of which share
    /// their key (they differ above bit 35).
    fn filled(pushes: u32, seed: u64) -> (Ring, Vec<u64>) {
        let mut r = Ring::new();
        let mut all = Vec::new();
        for i in 0..pushes {
            let v = seed.wrapping_mul(31).wrapping_add(i as u64 * 7);
            let a = (v % 5) << 36 | (v % 3) << 4;
            r.push(a);
            all.push(a);
        }
        (r, all)
    }

    #[test]
    fn distance_finds_the_newest_match_and_get_reads_it_back() {
        for pushes in 0..3 * RING_LEN as u32 {
            for seed in 0..100u64 {
                let (r, all) = filled(pushes, seed);
                for addr in (0..6u64).flat_map(|hi| (0..4u64).map(move |lo| hi << 36 | lo << 4)) {
                    // Never pushed slots hold 0.
                    let newest_first = all.iter().rev().copied().chain(std::iter::repeat(0));
                    let want = newest_first.take(RING_LEN).position(|a| a == addr);
                    let got = r.distance(addr);
                    assert_eq!(got, want.map(|d| d as u64), "{pushes} {seed} {addr:#x}");
                    if let Some(d) = got {
                        assert_eq!(r.get(d), addr);
                    }
                }
            }
        }
    }

    #[test]
    fn every_key_position_is_compared() {
        let keys: [u32; RING_LEN] = core::array::from_fn(|i| i as u32 * 3 % 7);
        for k in 0..8 {
            let want = (0..RING_LEN)
                .filter(|&i| keys[i] == k)
                .fold(0, |m, i| m | 1 << i);
            assert_eq!(matching_keys(&keys, k), want, "{k}");
        }
    }

    #[test]
    fn the_push_counter_wraps() {
        let mut r = Ring::new();
        r.head = u32::MAX - 2;
        for a in 1..=6u64 {
            r.push(a << 4);
        }
        for d in 0..6u64 {
            assert_eq!(r.distance((6 - d) << 4), Some(d));
            assert_eq!(r.get(d), (6 - d) << 4);
        }
    }
}

/// The numbers (format 7) of the allocations a [`Ring`] of allocated addresses holds,
/// slot for slot: what a release found in that ring names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialRing {
    serials: [u64; RING_LEN],
}

impl Default for SerialRing {
    fn default() -> Self {
        SerialRing::new()
    }
}

impl SerialRing {
    pub const fn new() -> SerialRing {
        SerialRing {
            serials: [0; RING_LEN],
        }
    }
    /// Set the number of the entry `ring`'s next push makes (call it before the push).
    #[inline(always)]
    pub fn put(&mut self, ring: &Ring, serial: u64) {
        self.serials[ring.head as usize % RING_LEN] = serial;
    }
    /// The number of `ring`'s entry `distance` places back from the newest.
    #[inline(always)]
    pub fn get(&self, ring: &Ring, distance: u64) -> u64 {
        self.serials[ring.slot(distance as u32)]
    }
}
