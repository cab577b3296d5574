//! A map from non-zero `u64` keys (heap addresses, block numbers) to small `Copy` values,
//! for the tables of millions of entries that a pass over a trace touches at every event:
//! the replay's live blocks by address, the reader's live blocks by number.
//!
//! Open addressing with linear probing in Robin Hood order (an entry further from its
//! home slot takes the place of one nearer to its own, so that a run of slots is sorted by
//! home and a lookup stops as soon as it passes where its key would be), backward-shift
//! deletion (no tombstones), a power-of-two capacity grown twofold at 7/8 load. A slot
//! holds the key and the value side by side, so that a lookup reads one run of slots (a
//! `HashMap`'s control bytes and its bucket are two places). What it adds over a
//! `HashMap` is [`KeyTable::prefetch`]: the events are decoded ahead of their use, so a
//! pass asks for a key's home slot some events before it needs it. On a large heap every
//! lookup is otherwise a cache miss, and the passes spent most of their time waiting for
//! them (docs/PERFORMANCE.md, "Analysis throughput").
//!
//! Plain linear probing needed a load of 1/2 to be as fast as the `HashMap` on a small
//! table (at 3/4 its insertions probed long runs), and so twice its memory. In Robin Hood
//! order an absent key's probe stops early: at 7/8 the table takes the `HashMap`'s memory
//! and is within a few percent of its speed on a small table (python_small's trace).
//!
//! Key 0 marks a free slot: it is never stored (no block starts at address 0, no block is
//! numbered 0).

#[derive(Clone, Copy, Default)]
struct Slot<V> {
    /// 0: the slot is free.
    key: u64,
    value: V,
}

/// Capacity of the first table (a power of two).
const FIRST_CAPACITY: usize = 1024;

/// Values keyed by non-zero `u64`s.
pub struct KeyTable<V> {
    /// `capacity` slots (a power of two), or none before the first insertion.
    slots: Vec<Slot<V>>,
    len: usize,
    /// `64 - log2(capacity)`: the home slot is the top bits of the hashed key.
    shift: u32,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable {
            slots: Vec::new(),
            len: 0,
            shift: 64,
        }
    }
}

/// Where a key is, or would go.
pub enum Place {
    /// The key is there; its slot.
    Occupied(usize),
    /// It is not: the slot it would take, free or held by an entry nearer its home
    /// (which [`KeyTable::fill`] moves on).
    Vacant(usize),
}

impl<V: Copy + Default> KeyTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The first slot a key probes (Fibonacci hashing: the top bits of the product depend
    /// on every bit of the key, so neither aligned addresses nor consecutive numbers
    /// crowd together).
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Ask the CPU to load `key`'s home slot without waiting for it (a hint: it reads
    /// nothing and changes nothing). Nothing is asked of a table small enough to stay in
    /// the cache ([`crate::CACHED_BYTES`]): there the hint costs more than it saves.
    #[inline(always)]
    pub fn prefetch(&self, key: u64) {
        if std::mem::size_of_val(self.slots.as_slice()) >= crate::CACHED_BYTES {
            crate::prefetch(self.slots.as_ptr().wrapping_add(self.home(key)));
        }
    }

    /// How far slot `i` is from `key`'s home slot.
    #[inline(always)]
    fn distance(&self, i: usize, key: u64) -> usize {
        i.wrapping_sub(self.home(key)) & self.mask()
    }

    /// Where `key` (non-zero) is, or would be inserted; `None` before the first insertion.
    /// A key is not in the table once the probe meets a free slot or an entry nearer to
    /// its home than the probe is to the key's (Robin Hood order).
    #[inline]
    fn find(&self, key: u64) -> Option<Place> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(key);
        let mut d = 0;
        loop {
            let k = self.slots[i].key;
            if k == key {
                return Some(Place::Occupied(i));
            }
            if k == 0 || self.distance(i, k) < d {
                return Some(Place::Vacant(i));
            }
            i = (i + 1) & mask;
            d += 1;
        }
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        if key == 0 {
            return None;
        }
        match self.find(key)? {
            Place::Occupied(i) => Some(&self.slots[i].value),
            Place::Vacant(_) => None,
        }
    }

    /// Where `key` (non-zero) is, or where it would be inserted: room for one more is
    /// made first, so that a [`Place::Vacant`] can be given to [`KeyTable::fill`].
    #[inline]
    pub fn place(&mut self, key: u64) -> Place {
        assert!(key != 0, "key 0 marks a free slot");
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        self.find(key).expect("the table has slots after growing")
    }

    /// The value in an occupied slot.
    #[inline]
    pub fn value_mut(&mut self, slot: usize) -> &mut V {
        &mut self.slots[slot].value
    }

    /// Store `key` and its value at the vacant place that [`KeyTable::place`] returned for
    /// it (nothing was inserted or removed in between): the entries from there to the
    /// next free slot move one slot on, as Robin Hood order has them.
    #[inline]
    pub fn fill(&mut self, slot: usize, key: u64, value: V) {
        self.settle(slot, Slot { key, value });
        self.len += 1;
    }

    /// Put `carried` in slot `i` or after it, each entry it passes that is nearer its home
    /// than `carried` is to its own changing places with it.
    #[inline]
    fn settle(&mut self, mut i: usize, mut carried: Slot<V>) {
        let mask = self.mask();
        let mut d = self.distance(i, carried.key);
        loop {
            let k = self.slots[i].key;
            if k == 0 {
                self.slots[i] = carried;
                return;
            }
            let resident = self.distance(i, k);
            if resident < d {
                std::mem::swap(&mut self.slots[i], &mut carried);
                d = resident;
            }
            i = (i + 1) & mask;
            d += 1;
        }
    }

    /// Insert or replace the value of `key` (non-zero); the value it replaced.
    #[inline]
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        match self.place(key) {
            Place::Occupied(i) => Some(std::mem::replace(self.value_mut(i), value)),
            Place::Vacant(i) => {
                self.fill(i, key, value);
                None
            }
        }
    }

    /// Take out `key`'s value.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<V> {
        if key == 0 {
            return None;
        }
        let Place::Occupied(mut hole) = self.find(key)? else {
            return None;
        };
        let removed = self.slots[hole].value;
        // Backward shift: the following entries of the run that are not in their home slot
        // move one slot back (in Robin Hood order they all may), leaving a hole at its end.
        let mask = self.mask();
        loop {
            let j = (hole + 1) & mask;
            let k = self.slots[j].key;
            if k == 0 || self.distance(j, k) == 0 {
                break;
            }
            self.slots[hole] = self.slots[j];
            hole = j;
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
        Some(removed)
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != 0)
            .map(|s| (s.key, &s.value))
    }

    #[cold]
    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(FIRST_CAPACITY);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        self.shift = 64 - capacity.trailing_zeros();
        for s in old.into_iter().filter(|s| s.key != 0) {
            self.settle(self.home(s.key), s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn insert_get_replace_remove() {
        let mut t = KeyTable::<u64>::default();
        assert!(t.get(0x10).is_none());
        assert!(t.remove(0x10).is_none());
        assert!(t.insert(0x10, 1).is_none());
        assert_eq!(t.insert(0x10, 2), Some(1));
        assert_eq!((t.len(), t.get(0x10)), (1, Some(&2)));
        assert!(t.get(0).is_none() && t.remove(0).is_none());
        assert_eq!(t.remove(0x10), Some(2));
        assert!(t.is_empty() && t.get(0x10).is_none() && t.remove(0x10).is_none());
    }

    /// The next of a xorshift sequence.
    fn next_random(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Insert `key` (or remove it, when not `insert`) in both, and check they agree.
    fn insert_or_remove(
        t: &mut KeyTable<u64>,
        m: &mut HashMap<u64, u64>,
        key: u64,
        insert: bool,
        value: u64,
    ) {
        if insert {
            assert_eq!(t.insert(key, value), m.insert(key, value));
        } else {
            assert_eq!(t.remove(key), m.remove(&key));
        }
    }

    /// Random insertions and removals of keys that share runs of slots (few keys, so the
    /// table stays near its growth point), checked against a `HashMap` as it goes.
    #[test]
    fn agrees_with_a_hash_map() {
        for spacing in [16u64, 1, 4096] {
            let mut t = KeyTable::<u64>::default();
            let mut m: HashMap<u64, u64> = HashMap::new();
            let mut x: u64 = 0x2545_F491_4F6C_DD1D;
            for step in 0..200_000u64 {
                let r = next_random(&mut x);
                let key = 0x5555_0000_0000 + (r % 3000) * spacing;
                insert_or_remove(&mut t, &mut m, key, r >> 60 < 9, step);
                if step % 997 == 0 {
                    assert_robin_hood_order(&t);
                    assert_eq!(t.len(), m.len());
                    for (k, v) in &m {
                        assert_eq!(t.get(*k), Some(v));
                    }
                    let mut seen: Vec<(u64, u64)> = t.iter().map(|(k, v)| (k, *v)).collect();
                    let mut want: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
                    seen.sort();
                    want.sort();
                    assert_eq!(seen, want);
                }
            }
        }
    }

    /// Along every run, each entry is at most one slot further from its home than the
    /// entry before it (Robin Hood order), and the first entry after a free slot is home.
    fn assert_robin_hood_order(t: &KeyTable<u64>) {
        let n = t.slots.len();
        for i in 0..n {
            let k = t.slots[i].key;
            if k == 0 {
                continue;
            }
            let before = t.slots[(i + n - 1) % n].key;
            let limit = if before == 0 {
                0
            } else {
                t.distance((i + n - 1) % n, before) + 1
            };
            assert!(t.distance(i, k) <= limit, "slot {i}");
        }
    }

    /// Keys whose home slots are the last and first of the table: runs that wrap around
    /// its end, filled and emptied in random order.
    #[test]
    fn runs_that_wrap_around_the_end() {
        let mut t = KeyTable::<u64>::default();
        t.insert(u64::MAX, 0);
        t.remove(u64::MAX);
        let cap = t.slots.len();
        let near_end: Vec<u64> = (1..200_000u64)
            .filter(|&k| {
                let h = t.home(k);
                h >= cap - 4 || h < 4
            })
            .take(40)
            .collect();
        assert_eq!(near_end.len(), 40);
        let mut m: HashMap<u64, u64> = HashMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for step in 0..100_000u64 {
            let r = next_random(&mut x);
            insert_or_remove(
                &mut t,
                &mut m,
                near_end[(r % 40) as usize],
                r >> 62 < 2,
                step,
            );
            assert_eq!(t.slots.len(), cap, "no growth: the runs stay at the end");
            assert_robin_hood_order(&t);
            for (k, v) in &m {
                assert_eq!(t.get(*k), Some(v));
            }
        }
    }

    #[test]
    fn grows_and_keeps_every_entry() {
        let mut t = KeyTable::<u64>::default();
        for i in 1..=100_000u64 {
            t.insert(i * 16, i);
        }
        assert_eq!(t.len(), 100_000);
        assert!(t.slots.len() * 7 >= t.len() * 8);
        for i in 1..=100_000u64 {
            assert_eq!(t.get(i * 16), Some(&i));
        }
        for i in (1..=100_000u64).step_by(2) {
            assert_eq!(t.remove(i * 16), Some(i));
        }
        assert_eq!(t.len(), 50_000);
        for i in 1..=100_000u64 {
            assert_eq!(t.get(i * 16).is_some(), i % 2 == 0, "entry {i}");
        }
    }
}
