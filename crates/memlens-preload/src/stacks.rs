//! De-duplication of stacks: an open-addressing table in its own mmap, keyed by a 64-bit
//! hash of the frames (and of the module-set generation).
//!
//! Lookups are lock-free: a slot's hash is published with Release after its id, and a
//! slot once filled never changes. Insertions take [`INSERT`], write the stack's
//! definition into the Meta buffer, then publish the slot, so a stack id is never used
//! before its definition is buffered. A 64-bit hash is taken as the stack's identity.
//!
//! The table starts small (64 Ki slots, 1 MiB) and doubles when 70% full: the inserting
//! thread builds the bigger table under the lock and publishes it. A reader still probing
//! the old table may miss a stack; it then takes the insert path, which re-probes the
//! current table under the lock. Old tables stay mapped (a reader may be inside one) but
//! their pages are released with MADV_DONTNEED, after which they read as empty.

use crate::modules::Snapshot;
use crate::output;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

const INITIAL_SLOTS: usize = 1 << 16;
const MAX_SLOTS: usize = 1 << 24;
const MAX_PROBES: usize = 4096;

#[repr(C)]
struct Slot {
    hash: AtomicU64,
    id: AtomicU32,
    _pad: u32,
}

/// A table: `mask + 1` slots, followed in memory by nothing else.
struct Table {
    slots: *mut Slot,
    mask: usize,
    /// Filled slots (written under INSERT).
    used: AtomicU32,
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());
pub static INSERT: spin::Mutex<()> = spin::Mutex::new(());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// Mixed into hashes; bumped in a forked child so that its new trace redefines stacks.
pub static EPOCH: AtomicU64 = AtomicU64::new(0);

fn map_table(slots: usize) -> Option<*mut Table> {
    let bytes = slots * core::mem::size_of::<Slot>();
    // Zeroed memory is a valid empty table (hash 0 = free slot).
    let p = crate::own_memory::map(bytes)?;
    let t = alloc::boxed::Box::new(Table {
        slots: p as *mut Slot,
        mask: slots - 1,
        used: AtomicU32::new(0),
    });
    Some(alloc::boxed::Box::into_raw(t))
}

extern crate alloc;

/// Map the first table.
pub fn init() -> bool {
    match map_table(INITIAL_SLOTS) {
        Some(t) => {
            TABLE.store(t, Ordering::Release);
            true
        }
        None => false,
    }
}

#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

#[inline(always)]
fn round(acc: u64, v: u64) -> u64 {
    acc.wrapping_add(v.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

/// Hash of a stack: xxh64-style rounds over four independent lanes (deep stacks hash at
/// about one frame per cycle instead of one serial multiply chain per frame), then a full
/// avalanche. Never 0 (0 marks a free slot).
#[inline]
pub fn hash(frames: &[u64], generation: u64) -> u64 {
    let seed = generation ^ EPOCH.load(Ordering::Relaxed);
    let mut lanes = [
        seed.wrapping_add(P1).wrapping_add(P2),
        seed.wrapping_add(P2),
        seed,
        seed.wrapping_sub(P1),
    ];
    let mut chunks = frames.chunks_exact(4);
    for c in &mut chunks {
        lanes[0] = round(lanes[0], c[0]);
        lanes[1] = round(lanes[1], c[1]);
        lanes[2] = round(lanes[2], c[2]);
        lanes[3] = round(lanes[3], c[3]);
    }
    for (lane, &f) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane = round(*lane, f);
    }
    let mut h = (frames.len() as u64).wrapping_mul(P1);
    for (i, l) in lanes.iter().enumerate() {
        h = mix(h ^ l.rotate_left(i as u32 * 16));
    }
    h | 1
}

impl Table {
    #[inline]
    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: `slots` points to mask+1 slots that stay mapped for the life of the
        // process, and i is masked.
        unsafe { &*self.slots.add(i & self.mask) }
    }

    /// Find `h` (Ok(id)) or the empty slot where it would go (Err(Some(index))).
    #[inline]
    fn probe(&self, h: u64) -> Result<u32, Option<usize>> {
        let mut i = h as usize & self.mask;
        for _ in 0..MAX_PROBES {
            let s = self.slot(i);
            let k = s.hash.load(Ordering::Acquire);
            if k == h {
                return Ok(s.id.load(Ordering::Relaxed));
            }
            if k == 0 {
                return Err(Some(i));
            }
            i = (i + 1) & self.mask;
        }
        Err(None)
    }

    /// Publish `(h, id)` in free slot `i`. Under INSERT.
    fn fill(&self, i: usize, h: u64, id: u32) {
        let s = self.slot(i);
        s.id.store(id, Ordering::Relaxed);
        s.hash.store(h, Ordering::Release);
        self.used.fetch_add(1, Ordering::Relaxed);
    }
}

#[inline]
fn current() -> Option<&'static Table> {
    // SAFETY: published tables are never freed.
    unsafe { TABLE.load(Ordering::Acquire).as_ref() }
}

/// A stack that is new and has frames outside every known module: the caller should
/// rescan the modules (a library was loaded behind our back) before defining it.
pub struct UnknownFrames;

/// The id of the stack `frames`, defining it in the trace if it is new. 0 when the table
/// is full or not initialised. A new stack with a frame outside every known module is
/// defined only if `define_unknown` is set; otherwise `Err(UnknownFrames)` (checking
/// frames only for new stacks keeps the common path free of module look-ups).
#[inline]
pub fn id_for(frames: &[u64], snap: &Snapshot, define_unknown: bool) -> Result<u32, UnknownFrames> {
    let Some(t) = current() else { return Ok(0) };
    let h = hash(frames, snap.generation);
    match t.probe(h) {
        Ok(id) => Ok(id),
        Err(_) => insert(h, frames, snap, define_unknown),
    }
}

/// Double the table (under INSERT): rehash every entry into a new one, publish it, and
/// release the old one's pages.
fn grow(old: &'static Table) -> Option<&'static Table> {
    let slots = (old.mask + 1) * 2;
    if slots > MAX_SLOTS {
        return None;
    }
    let new_ptr = map_table(slots)?;
    // SAFETY: just created, not yet shared.
    let new = unsafe { &*new_ptr };
    for i in 0..=old.mask {
        let s = old.slot(i);
        let h = s.hash.load(Ordering::Acquire);
        if h != 0 {
            if let Err(Some(j)) = new.probe(h) {
                new.fill(j, h, s.id.load(Ordering::Relaxed));
            }
        }
    }
    TABLE.store(new_ptr, Ordering::Release);
    // SAFETY: the old mapping stays mapped; DONTNEED makes its pages read as zeros, which
    // a late reader takes for "not found" and then re-probes the new table under lock.
    unsafe {
        libc::madvise(
            old.slots as *mut libc::c_void,
            (old.mask + 1) * core::mem::size_of::<Slot>(),
            libc::MADV_DONTNEED,
        )
    };
    Some(new)
}

#[cold]
fn insert(
    h: u64,
    frames: &[u64],
    snap: &Snapshot,
    define_unknown: bool,
) -> Result<u32, UnknownFrames> {
    let mut located = [(0u32, 0u64); crate::config::MAX_DEPTH_LIMIT];
    let n = frames.len().min(located.len());
    for (dst, &f) in located.iter_mut().zip(&frames[..n]) {
        *dst = if f & crate::python::TAG != 0 {
            (memlens_trace::PYTHON_MODULE, f & !crate::python::TAG)
        } else {
            snap.locate(f)
        };
    }
    if !define_unknown && located[..n].iter().any(|&(m, _)| m == 0) {
        return Err(UnknownFrames);
    }
    let _g = INSERT.lock();
    let Some(mut t) = current() else { return Ok(0) };
    if let Ok(id) = t.probe(h) {
        return Ok(id);
    }
    if (t.used.load(Ordering::Relaxed) as usize + 1) * 10 > (t.mask + 1) * 7 {
        match grow(t) {
            Some(bigger) => t = bigger,
            None => return Ok(0),
        }
    }
    let i = match t.probe(h) {
        Ok(id) => return Ok(id),
        Err(Some(i)) => i,
        Err(None) => return Ok(0),
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    output::META.lock().with(|b| b.stack(id, &located[..n]));
    t.fill(i, h, id);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tells_stacks_apart() {
        let a = [0x1000u64, 0x2000, 0x3000];
        assert_eq!(hash(&a, 0), hash(&a, 0));
        assert_ne!(
            hash(&a, 0),
            hash(&[0x3000, 0x2000, 0x1000], 0),
            "order counts"
        );
        assert_ne!(hash(&a, 0), hash(&a, 1), "the module generation counts");
        assert_ne!(hash(&a, 0), hash(&a[..2], 0), "depth counts");
        // Deep stacks go through all four lanes: one frame changed anywhere changes it.
        let deep: Vec<u64> = (0..64).map(|i| 0x40_0000 + 16 * i).collect();
        let h = hash(&deep, 7);
        for i in 0..deep.len() {
            let mut d = deep.clone();
            d[i] ^= 0x10;
            assert_ne!(hash(&d, 7), h, "frame {i}");
        }
        // Never 0: 0 marks a free slot.
        assert!((0..10_000u64).all(|i| hash(&[i], i) != 0));
    }

    #[test]
    fn table_finds_what_it_holds_and_probes_past_collisions() {
        // SAFETY: map_table's result is a fresh table owned by this test.
        let t = unsafe { &*map_table(1024).unwrap() };
        // Three hashes with the same home slot, and one elsewhere.
        let same = [
            0x5_0001u64 << 10 | 7,
            0x6_0001 << 10 | 7,
            0x7_0001 << 10 | 7,
        ];
        for (n, &h) in same.iter().enumerate() {
            let Err(Some(i)) = t.probe(h) else {
                panic!("{h:#x} found before it was filled")
            };
            assert_eq!(i, 7 + n, "linear probing from the home slot");
            t.fill(i, h, 100 + n as u32);
        }
        assert_eq!(t.probe(0x8000 << 10 | 20), Err(Some(20)));
        for (n, &h) in same.iter().enumerate() {
            assert_eq!(t.probe(h), Ok(100 + n as u32));
        }
        assert_eq!(t.used.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn growing_keeps_every_stack_and_empties_the_old_table() {
        // SAFETY: a fresh table owned by this test; grow publishes the new one in TABLE,
        // which nothing else in the test binary reads.
        let old: &'static Table = unsafe { &*map_table(1024).unwrap() };
        let hashes: Vec<u64> = (1..=700u64).map(|i| hash(&[i * 16], 3)).collect();
        for (n, &h) in hashes.iter().enumerate() {
            let Err(Some(i)) = old.probe(h) else {
                panic!("duplicate hash")
            };
            old.fill(i, h, n as u32 + 1);
        }
        let new = grow(old).expect("room to grow");
        assert_eq!(new.mask + 1, 2048);
        assert_eq!(new.used.load(Ordering::Relaxed), 700);
        for (n, &h) in hashes.iter().enumerate() {
            assert_eq!(new.probe(h), Ok(n as u32 + 1));
        }
        // A late reader of the old table finds nothing, and re-probes under the lock.
        assert!(hashes.iter().all(|&h| old.probe(h).is_err()));
    }
}
