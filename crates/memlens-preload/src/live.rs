//! The live-block table: every block the program holds, by start address, with its
//! requested size and allocating function. It is what makes heap errors detectable
//! (a release of an address that is not a live block start, a release by the wrong
//! family) and what the leak scan walks at exit.
//!
//! 256 shards chosen by a hash of the address, each an open-addressing table (linear
//! probing, backward-shift deletion, no tombstones) of 16-byte slots in its own mmap
//! region, grown by half at 3/4 load: 16 bytes / load (0.5..0.75) = 21..32 bytes per
//! live block, never more than 32. Each shard has a spin lock held for one probe
//! sequence.
//!
//! A slot packs the block's address divided by 16 (44 bits: glibc's blocks are 16-byte
//! aligned and x86_64 user addresses are below 2^47), its size (46 bits), allocating
//! function (5 bits), the internal bit and the block's number in the trace (38 bits, which
//! a release's record names instead of the address; see [`SLOT_BYTES`]). An address that
//! cannot be packed (not 16-byte aligned,
//! or above 2^48) is never a block start: releasing one is reported as not a block, and
//! inserting one (no glibc allocation returns such) is not recorded.
//!
//! Every hook updates the table, including hooks that do not record an event (re-entered
//! from the recorder itself, or before start-up), so that the table matches glibc's heap.
//! A hook re-entered by a signal handler while its thread holds a shard lock never waits:
//! it try-locks, and if the shard is taken it queues the operation in the thread's TLS;
//! the interrupted operation applies the queue when it unlocks.

use crate::own_memory;
use crate::tls;
use core::sync::atomic::{
    compiler_fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use memlens_trace::AllocFunc;

pub const SHARDS: usize = 256;
const INITIAL_SLOTS: usize = 256;

// One slot's layout (two u64: address, size, function, internal bit, the block's number
// in the trace) is `memlens_reach::live_slot`'s, which `memlens snapshot` reads with.
#[cfg(test)]
use memlens_reach::live_slot::BIG_SIZE;
pub use memlens_reach::live_slot::SERIAL_BITS;
use memlens_reach::live_slot::{Slot, KEY_BITS, KEY_MASK, SLOT_BYTES};

/// The slot key of a block at `addr`, `None` if no block can start there.
#[inline(always)]
fn key_of(addr: u64) -> Option<u64> {
    (addr & 15 == 0 && addr >> (KEY_BITS + 4) == 0 && addr != 0).then_some(addr >> 4)
}

/// A shard's slots: `cap` packed 16-byte records after the table header.
#[derive(Clone, Copy)]
struct Slots {
    base: *mut u8,
    cap: usize,
}

impl Slots {
    /// # Safety
    /// `t` points to a mapped table.
    unsafe fn of(t: *mut Table) -> Slots {
        Slots {
            // SAFETY: the slots follow the header in the same mapping.
            base: unsafe { (t as *mut u8).add(core::mem::size_of::<Table>()) },
            // SAFETY: the header is mapped.
            cap: unsafe { (*t).cap },
        }
    }
    #[inline(always)]
    fn at(self, i: usize) -> *mut u8 {
        debug_assert!(i < self.cap);
        // SAFETY: i < cap, so the 16 bytes at i are inside the mapping.
        unsafe { self.base.add(i * SLOT_BYTES) }
    }
    /// The key at slot `i` (0: free).
    #[inline(always)]
    fn key(self, i: usize) -> u64 {
        // SAFETY: 8 bytes inside slot i (aligned: the header is 24 bytes, slots 16).
        unsafe { core::ptr::read_unaligned(self.at(i) as *const u64) & KEY_MASK }
    }
    #[inline(always)]
    fn meta(self, i: usize) -> Meta {
        let p = self.at(i);
        // SAFETY: the slot's 16 bytes, as above.
        let (lo, hi) = unsafe {
            (
                core::ptr::read_unaligned(p as *const u64),
                core::ptr::read_unaligned(p.add(8) as *const u64),
            )
        };
        Meta::unpack([lo, hi])
    }
    #[inline(always)]
    fn set(self, i: usize, key: u64, meta: Meta) {
        let [lo, hi] = meta.pack(key);
        let p = self.at(i);
        // SAFETY: the slot's 16 bytes; we hold the shard lock.
        unsafe {
            core::ptr::write_unaligned(p as *mut u64, lo);
            core::ptr::write_unaligned(p.add(8) as *mut u64, hi);
        }
    }
    #[inline(always)]
    fn clear(self, i: usize) {
        // SAFETY: as `set`.
        unsafe { core::ptr::write_bytes(self.at(i), 0, SLOT_BYTES) };
    }
    /// Copy slot `from` over slot `to`.
    #[inline(always)]
    fn copy(self, from: usize, to: usize) {
        // SAFETY: two distinct slots of the mapping.
        unsafe { core::ptr::copy_nonoverlapping(self.at(from), self.at(to), SLOT_BYTES) };
    }
}

/// Size (48 bits), allocating function (5 bits), and whether the allocation was made on
/// the recorder's behalf (by a libc function it called); then the block's number in the
/// trace (0: none).
#[derive(Clone, Copy)]
pub struct Meta(pub u64, pub u64);

const SIZE_MASK: u64 = (1 << 48) - 1;
/// The allocating function's bits, above the size.
const FUNC_MASK: u64 = 0x1f;
const INTERNAL: u64 = 1 << 53;

impl Meta {
    pub fn new(size: u64, func: AllocFunc, internal: bool) -> Meta {
        Meta(
            size.min(SIZE_MASK) | (func as u64) << 48 | if internal { INTERNAL } else { 0 },
            0,
        )
    }
    /// The same block numbered `serial` (below 2^[`SERIAL_BITS`]; 0: none).
    pub fn with_serial(self, serial: u64) -> Meta {
        Meta(self.0, serial)
    }
    pub fn size(self) -> u64 {
        self.0 & SIZE_MASK
    }
    pub fn func(self) -> AllocFunc {
        AllocFunc::from_u8(((self.0 >> 48) & FUNC_MASK) as u8).unwrap_or(AllocFunc::Malloc)
    }
    pub fn internal(self) -> bool {
        self.0 & INTERNAL != 0
    }
    /// The block's number in the trace, 0 if none.
    pub fn serial(self) -> u64 {
        self.1
    }
    /// The slot's two words for a block at `key`.
    #[inline(always)]
    fn pack(self, key: u64) -> [u64; 2] {
        Slot {
            key,
            size: self.size(),
            func: (self.0 >> 48 & FUNC_MASK) as u8,
            internal: self.internal(),
            serial: self.1,
        }
        .pack()
    }
    #[inline(always)]
    fn unpack(words: [u64; 2]) -> Meta {
        let s = Slot::unpack(words);
        Meta(
            s.size | (s.func as u64) << 48 | if s.internal { INTERNAL } else { 0 },
            s.serial,
        )
    }
}

/// A shard's table, at the start of its mapping: header then `cap` slots.
#[repr(C)]
struct Table {
    cap: usize,
    count: usize,
    /// `u64::MAX / cap + 1`: `x % cap` without a division (see [`home`]).
    cap_inverse: u64,
}

impl Table {
    fn bytes(cap: usize) -> usize {
        core::mem::size_of::<Table>() + cap * SLOT_BYTES
    }
}

// `memlens snapshot` reads the table from outside the process (its exported symbol, see
// `TABLE`): the layouts of `Shard` and `Table`, the slot encoding and `SHARDS` are part of
// that contract (memlens-cli's `snapshot/recorder.rs` decodes them).
#[repr(C)]
struct Shard {
    lock: AtomicBool,
    table: AtomicPtr<Table>,
    /// The table's `cap` and `cap_inverse`, copied here (under the lock) so that
    /// [`prefetch`] can find a slot without reading a table that another thread may be
    /// replacing: at worst it prefetches a useless address.
    cap: AtomicUsize,
    cap_inverse: AtomicU64,
}

#[export_name = "memlens_live_table"]
static TABLE: [Shard; SHARDS] = [const {
    Shard {
        lock: AtomicBool::new(false),
        table: AtomicPtr::new(core::ptr::null_mut()),
        cap: AtomicUsize::new(0),
        cap_inverse: AtomicU64::new(0),
    }
}; SHARDS];

/// With sampling (`sample.rs`), a count of the table's blocks per hash of their address,
/// so that a release can learn without a lock that no block starts there ([`may_hold`]):
/// blocks are placed in shards by 1 MiB region, so a shard of a busy region always holds
/// some sampled block, and its count alone would rarely answer no.
pub(crate) const FILTER: usize = 4096;
/// The filter's hash of an address: `((addr >> 4) * FILTER_MUL) >> FILTER_SHIFT`, one of
/// [`FILTER`] counts (also computed by the assembly of `unsampled.rs`).
pub(crate) const FILTER_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
pub(crate) const FILTER_SHIFT: u32 = 64 - FILTER.trailing_zeros();
pub(crate) static FILTER_COUNTS: [AtomicU32; FILTER] = [const { AtomicU32::new(0) }; FILTER];
/// Counts added for good by queued insertions (see `queue`), for the tests' invariant:
/// the counts sum to the table's blocks plus these.
static PINNED: AtomicU32 = AtomicU32::new(0);
/// Set by [`start_filter`]: every insertion and removal then updates the counts.
pub(crate) static FILTERING: AtomicBool = AtomicBool::new(false);

#[inline(always)]
fn filter_slot(addr: u64) -> &'static AtomicU32 {
    let h = (addr >> 4).wrapping_mul(FILTER_MUL) >> FILTER_SHIFT;
    &FILTER_COUNTS[h as usize]
}

impl Shard {
    /// Publish a new table (shard locked).
    fn publish(&self, t: *mut Table) {
        // SAFETY: t is a mapped table whose header is written.
        let (cap, inv) = unsafe { ((*t).cap, (*t).cap_inverse) };
        self.cap.store(cap, Ordering::Relaxed);
        self.cap_inverse.store(inv, Ordering::Relaxed);
        self.table.store(t, Ordering::Release);
    }
}

/// Ask the CPU to load the slot where the block at `addr` would start its probe, without
/// waiting: the table is touched in the program's free order, so that slot is usually a
/// cache miss, and the hooks issue this early to overlap it with their other work. Takes
/// no lock and never faults (a prefetch of an unmapped address does nothing).
#[inline(always)]
pub fn prefetch(addr: u64) {
    let shard = &TABLE[shard_of(addr)];
    let t = shard.table.load(Ordering::Relaxed);
    let (cap, inv) = (
        shard.cap.load(Ordering::Relaxed),
        shard.cap_inverse.load(Ordering::Relaxed),
    );
    if t.is_null() || cap == 0 {
        return;
    }
    let i = home_in(addr, cap as u64, inv);
    let p = (t as *const u8).wrapping_add(core::mem::size_of::<Table>() + i * SLOT_BYTES);
    // SAFETY: a prefetch is a hint: it reads nothing into the program and cannot fault,
    // whatever the address.
    unsafe { core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0) };
}

/// Blocks are placed by 1 MiB region: the region picks the shard and a pseudo-random
/// offset, and within a region consecutive blocks take consecutive slots. The intent is
/// cache locality (allocators hand out neighbouring addresses close together in time);
/// its effect against a fully mixing hash has not been measured on a quiet machine.
#[inline(always)]
fn region_hash(addr: u64) -> u64 {
    (addr >> 20).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline(always)]
fn shard_of(addr: u64) -> usize {
    (region_hash(addr) >> 56) as usize
}

/// A block's first slot: its region's pseudo-random place in the table (the hash bits
/// below the shard's, mapped onto `cap` by a multiply-shift), plus its 16-byte index
/// within the region modulo `cap` (by Lemire's multiply-based remainder, with the
/// table's `cap_inverse`: no division in the hot path), wrapped around.
#[inline(always)]
fn home(addr: u64, t: &Table) -> usize {
    home_in(addr, t.cap as u64, t.cap_inverse)
}

/// [`home`] for a table of `cap` slots with that `cap_inverse`.
#[inline(always)]
fn home_in(addr: u64, cap: u64, cap_inverse: u64) -> usize {
    let base = (((region_hash(addr) << 8) as u128 * cap as u128) >> 64) as u64;
    let local = (addr >> 4) & 0xFFFF;
    let local = ((cap_inverse.wrapping_mul(local) as u128 * cap as u128) >> 64) as u64;
    let h = base + local;
    (if h < cap { h } else { h - cap }) as usize
}

/// The slot after `i`, wrapping around.
#[inline(always)]
fn next(i: usize, cap: usize) -> usize {
    if i + 1 == cap {
        0
    } else {
        i + 1
    }
}

/// Capacity after growing at 3/4 full: half as large again, so that a table just grown
/// is half full (32 bytes per block with 16-byte slots, at most).
fn grown(cap: usize) -> usize {
    cap + cap / 2
}

/// Count every block from now on, for [`may_hold`] (sampling turns it on at start-up):
/// the blocks already in the table are counted first, with every shard locked.
pub fn start_filter() {
    lock_all();
    if !FILTERING.load(Ordering::Relaxed) {
        for_each(|addr, _| {
            filter_slot(addr).fetch_add(1, Ordering::Relaxed);
        });
        FILTERING.store(true, Ordering::Relaxed);
    }
    unlock_all();
}

/// Whether the table may hold a block at `addr`: false only when no block whose address
/// hashes like it is in the table. Takes no lock. For the caller's own block (one it
/// allocated, or that the program handed it through its own synchronization after the
/// allocation), `false` is exact: the insertion (and its count) happened before this
/// load, and the count cannot drop to 0 while the block is in the table. With sampling
/// the table holds few blocks, so most releases of unsampled blocks end here. An
/// insertion queued by a hook re-entered from a signal handler (`queue`) is counted when
/// it is queued, so its release takes the locked path and queues behind it. Always true
/// until [`start_filter`].
#[inline(always)]
pub fn may_hold(addr: u64) -> bool {
    !FILTERING.load(Ordering::Relaxed) || filter_slot(addr).load(Ordering::Relaxed) != 0
}

/// What a release found.
pub enum Removed {
    /// A live block started there; it is no longer in the table.
    Block(Meta),
    /// No live block starts at this address: a double free, or a pointer that was never
    /// allocated or points inside a block.
    NotABlock,
    /// Could not be checked (a signal handler interrupted this thread's own table
    /// operation); the removal is queued. Treat the release as valid.
    Deferred,
}

enum Op {
    Insert(u64, Meta),
    Remove(u64),
}

/// Record a new block.
#[inline]
pub fn insert(addr: u64, meta: Meta) {
    run(Op::Insert(addr, meta));
}

/// Forget the block at `addr` (called before the real release).
#[inline]
pub fn remove(addr: u64) -> Removed {
    run(Op::Remove(addr))
}

#[inline]
fn run(op: Op) -> Removed {
    let addr = match op {
        Op::Insert(a, _) | Op::Remove(a) => a,
    };
    let s = shard_of(addr);
    let shard = &TABLE[s];
    let t = tls::here();
    if t.live_shard() != 0 {
        // Re-entered from a signal handler during this thread's own table operation.
        if shard
            .lock
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return queue(t, op);
        }
        let r = apply(shard, op);
        shard.lock.store(false, Ordering::Release);
        return r;
    }
    // The mark goes up before the lock is taken and down after it is given back (the
    // compiler fences keep the order for a signal handler on this thread): a handler that
    // runs in between, and uses the table itself (a free in a program's handler that
    // calls exit, the exit's own frees), must see the mark and only try the lock. Marked
    // down while the lock was still held, a handler's free spun on it forever.
    t.set_live_shard(s as i32 + 1);
    compiler_fence(Ordering::SeqCst);
    while shard
        .lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let r = apply(shard, op);
    shard.lock.store(false, Ordering::Release);
    compiler_fence(Ordering::SeqCst);
    t.set_live_shard(0);
    if t.pending_count().load(Ordering::Relaxed) != 0 {
        drain(t);
    }
    if !t.busy() {
        crate::scan::maybe_park();
    }
    r
}

fn queue(t: tls::Here, op: Op) -> Removed {
    if let (Op::Insert(a, _), true) = (&op, FILTERING.load(Ordering::Relaxed)) {
        // The block is not in the table yet, but its address may be released (and
        // `may_hold` asked) before the queue is applied: count it now, for good (its
        // insertion and removal will count it and uncount it once more; this count only
        // ever sends releases of that hash to the locked path).
        filter_slot(*a).fetch_add(1, Ordering::Relaxed);
        PINNED.fetch_add(1, Ordering::Relaxed);
    }
    let count = t.pending_count();
    let v = count.load(Ordering::Relaxed);
    let n = queued_end(v);
    if n < tls::PENDING {
        t.pending_set(
            n,
            match op {
                // Without its number (two words a slot): its release is coded by address.
                Op::Insert(a, m) => [a, m.0],
                Op::Remove(a) => [a | 1, 0],
            },
        );
        // Publish after the slot is written: a signal arriving in between sees the old n.
        compiler_fence(Ordering::SeqCst);
        count.store(v + 1, Ordering::Relaxed);
    }
    // A full queue drops the operation: the table then keeps a stale block (a released
    // block counted as live) or misses one (whose release will be reported as invalid).
    Removed::Deferred
}

/// The thread's queue of operations is one word: the index of the next to apply (the
/// head) in its high half, the end of the queue in its low half; 0 when empty.
const QUEUE_HEAD: i32 = 1 << 16;

/// Where the next queued operation goes.
fn queued_end(v: i32) -> usize {
    (v & (QUEUE_HEAD - 1)) as usize
}

/// Apply the operations queued by signal handlers, in the order they were queued (a
/// handler's malloc and free of one block: the insertion first, or the table would keep
/// the freed block). Each is taken with a compare-exchange that moves the head, so a
/// handler that queues another one meanwhile, or drains the queue itself, never loses
/// one nor applies one twice; the word goes back to 0 when the head meets the end.
fn drain(t: tls::Here) {
    let count = t.pending_count();
    loop {
        let v = count.load(Ordering::Relaxed);
        if v == 0 {
            return;
        }
        let head = (v / QUEUE_HEAD) as usize;
        if head >= queued_end(v) {
            // Everything applied: empty the queue unless a handler has just added one.
            if count
                .compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            continue;
        }
        let [a, m] = t.pending_get(head);
        if count
            .compare_exchange(v, v + QUEUE_HEAD, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        let op = if a & 1 != 0 {
            Op::Remove(a & !1)
        } else {
            Op::Insert(a, Meta(m, 0))
        };
        run(op);
    }
}

/// The operation itself, with the shard locked.
fn apply(shard: &Shard, op: Op) -> Removed {
    let mut tp = shard.table.load(Ordering::Relaxed);
    if tp.is_null() {
        if let Op::Remove(_) = op {
            return Removed::NotABlock;
        }
        match new_table(INITIAL_SLOTS) {
            Some(t) => {
                tp = t;
                shard.publish(tp);
            }
            None => return Removed::Deferred,
        }
    }
    // SAFETY: tp is this shard's mapped table and we hold the shard lock.
    let t = unsafe { &mut *tp };
    // SAFETY: as above.
    let slots = unsafe { Slots::of(tp) };
    let cap = t.cap;
    match op {
        Op::Insert(addr, meta) => {
            let Some(key) = key_of(addr) else {
                // Not a block start glibc hands out: nothing to record.
                return Removed::Deferred;
            };
            let mut i = home(addr, t);
            loop {
                let k = slots.key(i);
                if k == key {
                    // A stale entry (a release we never saw): replace it.
                    slots.set(i, key, meta);
                    return Removed::Deferred;
                }
                if k == 0 {
                    slots.set(i, key, meta);
                    t.count += 1;
                    if FILTERING.load(Ordering::Relaxed) {
                        filter_slot(addr).fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                i = next(i, cap);
            }
            if t.count * 4 > t.cap * 3 {
                grow(shard, tp);
            }
            Removed::Deferred
        }
        Op::Remove(addr) => {
            let Some(key) = key_of(addr) else {
                return Removed::NotABlock;
            };
            let mut i = home(addr, t);
            loop {
                let k = slots.key(i);
                if k == 0 {
                    return Removed::NotABlock;
                }
                if k == key {
                    break;
                }
                i = next(i, cap);
            }
            let meta = slots.meta(i);
            // Backward-shift deletion: pull later members of the probe run into the hole.
            let mut hole = i;
            let mut j = next(i, cap);
            loop {
                let k = slots.key(j);
                if k == 0 {
                    break;
                }
                let h = home(k << 4, t);
                // Move j into the hole unless its home lies cyclically in (hole, j].
                let in_between = if hole <= j {
                    hole < h && h <= j
                } else {
                    hole < h || h <= j
                };
                if !in_between {
                    slots.copy(j, hole);
                    hole = j;
                }
                j = next(j, cap);
            }
            slots.clear(hole);
            t.count -= 1;
            if FILTERING.load(Ordering::Relaxed) {
                filter_slot(addr).fetch_sub(1, Ordering::Relaxed);
            }
            Removed::Block(meta)
        }
    }
}

fn new_table(cap: usize) -> Option<*mut Table> {
    let p = own_memory::map(Table::bytes(cap))? as *mut Table;
    // SAFETY: fresh zeroed mapping large enough for the header.
    unsafe {
        (*p).cap = cap;
        (*p).cap_inverse = u64::MAX / cap as u64 + 1;
    }
    Some(p)
}

/// Grow the shard's table (shard locked). On mmap failure the table stays as it is and
/// gets fuller, which is slower but still correct until it is completely full.
fn grow(shard: &Shard, old: *mut Table) {
    // SAFETY: old is the shard's current table; we hold the lock.
    let (old_cap, count) = unsafe { ((*old).cap, (*old).count) };
    let new_cap = grown(old_cap);
    let Some(new) = new_table(new_cap) else {
        return;
    };
    // SAFETY: both tables are mapped; the new one is private to us until published.
    let (from, to) = unsafe { (Slots::of(old), Slots::of(new)) };
    // SAFETY: the new table's header, mapped and not yet published.
    let new_header = unsafe { &*new };
    for j in 0..old_cap {
        let k = from.key(j);
        if k == 0 {
            continue;
        }
        let mut i = home(k << 4, new_header);
        while to.key(i) != 0 {
            i = next(i, new_cap);
        }
        // SAFETY: slot j of the old table and slot i of the new one, 16 bytes each, in two
        // distinct mappings.
        unsafe { core::ptr::copy_nonoverlapping(from.at(j), to.at(i), SLOT_BYTES) };
    }
    // SAFETY: the new table is ours.
    unsafe { (*new).count = count };
    shard.publish(new);
    // SAFETY: the old table was this shard's, replaced above; only lock holders and the
    // exit scan (which runs with every other thread stopped) read it.
    unsafe { own_memory::unmap(old as *mut u8, Table::bytes(old_cap)) };
}

/// Every live block, read without locks: only for the exit scan, when every other thread
/// is stopped (a thread stopped inside an operation may leave one slot out of date).
pub fn for_each(mut f: impl FnMut(u64, Meta)) {
    for shard in TABLE.iter() {
        let tp = shard.table.load(Ordering::Acquire);
        if tp.is_null() {
            continue;
        }
        // SAFETY: see above.
        let slots = unsafe { Slots::of(tp) };
        for i in 0..slots.cap {
            let k = slots.key(i);
            if k != 0 {
                f(k << 4, slots.meta(i));
            }
        }
    }
}

/// Number of live blocks (approximate while other threads run).
pub fn len() -> usize {
    TABLE
        .iter()
        .map(|s| {
            let tp = s.table.load(Ordering::Acquire);
            // SAFETY: see `get`.
            if tp.is_null() {
                0
            } else {
                unsafe { (*tp).count }
            }
        })
        .sum()
}

/// Forget every block (`memlens attach` starts a new recording: the blocks of an earlier
/// one may have been freed while nothing was recorded). Takes every shard lock.
pub fn clear_all() {
    lock_all();
    for shard in TABLE.iter() {
        let tp = shard.table.load(Ordering::Acquire);
        if tp.is_null() {
            continue;
        }
        // SAFETY: the shard is locked, its table mapped: zero every slot and the count.
        unsafe {
            let slots = Slots::of(tp);
            core::ptr::write_bytes(slots.base, 0, slots.cap * SLOT_BYTES);
            (*tp).count = 0;
        }
    }
    unlock_all();
}

/// fork: take every shard lock so the child never inherits one mid-operation.
pub fn lock_all() {
    for s in TABLE.iter() {
        while s
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
}

pub fn unlock_all() {
    for s in TABLE.iter().rev() {
        s.lock.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal handler that uses the table while its thread is inside a table operation
    /// (a program's handler that frees, or that calls exit, whose own frees come here)
    /// never waits for the shard lock the interrupted operation holds: it tries it, and
    /// queues when it is taken. A worker inserts and removes blocks of one shard in a loop
    /// while this thread signals it without pause; the handler removes an address of the
    /// same shard. (The mark of "inside an operation" used to come down before the lock
    /// was given back: a signal in between spun forever.) A hang fails on the timeout.
    #[test]
    fn a_signal_handler_using_the_table_never_waits_for_its_own_thread() {
        use std::sync::atomic::AtomicBool as Flag;
        use std::sync::mpsc::channel;
        static HANDLED: AtomicU64 = AtomicU64::new(0);
        // 1 MiB regions pick the shard: the handler's address is in the worker's region.
        const BASE: u64 = 0x3A00_0000_0000;
        extern "C" fn handler(_: libc::c_int) {
            let _ = remove(BASE + 0xF_FFF0);
            HANDLED.fetch_add(1, Ordering::Relaxed);
        }
        static DONE: Flag = Flag::new(false);
        // SAFETY: installs a handler for SIGUSR2, which nothing else in these tests uses,
        // and restores the old one below.
        let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
        let mut new: libc::sigaction = unsafe { core::mem::zeroed() };
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_RESTART;
        unsafe { libc::sigaction(libc::SIGUSR2, &new, &mut old) };
        let (tx, rx) = channel();
        let worker = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() } as u64).unwrap();
            for i in 0..3_000_000u64 {
                let a = BASE + 16 * (i % 4096);
                insert(a, Meta::new(8, AllocFunc::Malloc, false));
                let _ = remove(a);
            }
            DONE.store(true, Ordering::Release);
        });
        let id = rx.recv().unwrap();
        let start = std::time::Instant::now();
        while !DONE.load(Ordering::Acquire) {
            // SAFETY: the worker is alive until DONE (it is joined below).
            unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR2) };
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "the worker hangs (a handler waits for its own thread's shard lock)"
            );
            std::thread::yield_now();
        }
        worker.join().unwrap();
        // SAFETY: restores the handler saved above.
        unsafe { libc::sigaction(libc::SIGUSR2, &old, core::ptr::null_mut()) };
        assert!(HANDLED.load(Ordering::Relaxed) > 0);
    }
    extern crate std;
    use std::collections::HashMap;

    /// The blocks of the table inside `[lo, hi)` (tests share the process-wide table, so
    /// each uses its own address range).
    fn in_range(lo: u64, hi: u64) -> HashMap<u64, u64> {
        let mut m = HashMap::new();
        for_each(|a, meta| {
            if a >= lo && a < hi {
                m.insert(a, meta.0);
            }
        });
        m
    }

    #[test]
    fn insert_remove_and_errors_match_a_model() {
        // A pseudo-random mix over 20,000 addresses in one range, against a HashMap:
        // enough to grow shards several times and to exercise backward-shift deletion.
        let (lo, hi) = (0x1000_0000_0000u64, 0x1000_0000_0000u64 + (20_000 << 4));
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr = lo + ((x % 20_000) << 4);
            if x & (1 << 40) != 0 {
                if let std::collections::hash_map::Entry::Vacant(e) = model.entry(addr) {
                    let meta = Meta::new(step % 5000, AllocFunc::Calloc, step % 3 == 0);
                    e.insert(meta.0);
                    insert(addr, meta);
                }
            } else {
                match (remove(addr), model.remove(&addr)) {
                    (Removed::Block(m), Some(want)) => assert_eq!(m.0, want),
                    (Removed::NotABlock, None) => {}
                    _ => panic!("step {step}: table and model disagree on {addr:#x}"),
                }
            }
        }
        assert_eq!(in_range(lo, hi), model);
        for a in model.keys() {
            assert!(matches!(remove(*a), Removed::Block(_)));
        }
        assert!(in_range(lo, hi).is_empty());
    }

    /// `may_hold`'s lock-free counts follow the table: true for every block in it, and
    /// summing to the table's blocks (read with every shard locked, while other tests use
    /// the table; the counting starts with the blocks already in it).
    #[test]
    fn the_lock_free_counts_follow_the_table() {
        start_filter();
        let (lo, n) = (0x3000_0000_0000u64, 5_000u64);
        for k in 0..n {
            let a = lo + (k << 8);
            insert(a, Meta::new(k, AllocFunc::Malloc, false));
            assert!(may_hold(a));
        }
        for k in (0..n).step_by(2) {
            assert!(matches!(remove(lo + (k << 8)), Removed::Block(_)));
        }
        lock_all();
        let counted: u64 = FILTER_COUNTS
            .iter()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum();
        let mut blocks = 0u64;
        for_each(|_, _| blocks += 1);
        let pinned = u64::from(PINNED.load(Ordering::Relaxed));
        unlock_all();
        assert_eq!(counted, blocks + pinned);
        for k in (1..n).step_by(2) {
            let a = lo + (k << 8);
            assert!(may_hold(a));
            assert!(matches!(remove(a), Removed::Block(_)));
        }
        // An address no block of this test starts at, in an empty range: its count is 0
        // unless another test's block hashes alike, so only the converse is certain.
        let a = 0x3800_0000_0000u64;
        assert!(matches!(remove(a), Removed::NotABlock));
    }

    /// This thread as if inside a table operation on `a`'s shard, interrupted by a
    /// signal handler: the shard held, the thread marked. The caller lets both go.
    fn inside_an_operation_on(a: u64) -> (&'static Shard, tls::Here) {
        let shard = &TABLE[shard_of(a)];
        while shard
            .lock
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {}
        let t = tls::here();
        t.set_live_shard(shard_of(a) as i32 + 1);
        (shard, t)
    }

    /// An insertion queued by a hook re-entered during this thread's own table operation
    /// (simulated: the shard is held, the thread marked inside an operation) is counted
    /// at once, so `may_hold` sends its release to the locked path, which finds it once
    /// the queue is applied.
    #[test]
    fn a_queued_insertion_is_counted_at_once() {
        start_filter();
        let a = 0x3900_0000_0000u64;
        let (shard, t) = inside_an_operation_on(a);
        insert(a, Meta::new(8, AllocFunc::Malloc, false));
        assert_eq!(t.pending_count().load(Ordering::Relaxed), 1, "queued");
        assert!(may_hold(a));
        t.set_live_shard(0);
        shard.lock.store(false, Ordering::Release);
        drain(t);
        assert!(may_hold(a));
        assert!(matches!(remove(a), Removed::Block(_)));
    }

    /// A signal handler's malloc and free of one block, both queued while the thread
    /// holds the block's shard: applied in that order, the table does not keep the freed
    /// block (applied last first, the removal found nothing and the insertion stayed).
    #[test]
    fn queued_operations_are_applied_in_the_order_they_were_queued() {
        let a = 0x3a00_0000_0000u64;
        assert_eq!(shard_of(a + 64), shard_of(a));
        let (shard, t) = inside_an_operation_on(a);
        insert(a, Meta::new(8, AllocFunc::Malloc, false));
        assert!(matches!(remove(a), Removed::Deferred));
        insert(a + 64, Meta::new(16, AllocFunc::Malloc, false));
        assert_eq!(queued_end(t.pending_count().load(Ordering::Relaxed)), 3);
        t.set_live_shard(0);
        shard.lock.store(false, Ordering::Release);
        drain(t);
        assert_eq!(t.pending_count().load(Ordering::Relaxed), 0, "emptied");
        assert!(
            matches!(remove(a), Removed::NotABlock),
            "the freed block stayed"
        );
        assert!(matches!(remove(a + 64), Removed::Block(_)));
    }

    #[test]
    fn sizes_functions_the_internal_bit_and_numbers_round_trip() {
        let base = 0x2000_0000_0000u64;
        let top = (1u64 << SERIAL_BITS) - 1;
        // A size from BIG_SIZE up gives up its number (stored in the number's place).
        let cases = [
            (0u64, AllocFunc::Malloc, false, 1u64, 1u64),
            (1, AllocFunc::New, true, 0, 0),
            ((1 << 46) - 1, AllocFunc::NewArray, false, 5, 0),
            (BIG_SIZE, AllocFunc::Malloc, false, 9, 0),
            (BIG_SIZE - 1, AllocFunc::Calloc, true, top, top),
            (123_456_789, AllocFunc::AlignedAlloc, true, 1 << 33, 1 << 33),
            (77, AllocFunc::NewAlignedNothrow, true, 12_345, 12_345),
        ];
        for (k, &(size, func, internal, serial, _)) in cases.iter().enumerate() {
            insert(
                base + 16 * k as u64,
                Meta::new(size, func, internal).with_serial(serial),
            );
        }
        for (k, &(size, func, internal, _, serial)) in cases.iter().enumerate() {
            let Removed::Block(m) = remove(base + 16 * k as u64) else {
                panic!("block {k} missing");
            };
            assert_eq!(
                (m.size(), m.func(), m.internal(), m.serial()),
                (size, func, internal, serial),
                "block {k}"
            );
        }
    }

    /// At most 32 bytes per live block: a table grows by half when 3/4 full, so it is at
    /// least half full after (16-byte slots).
    #[test]
    fn a_table_never_takes_more_than_32_bytes_a_block() {
        let mut cap = INITIAL_SLOTS;
        for _ in 0..40 {
            let full = cap * 3 / 4 + 1;
            let next = grown(cap);
            assert!(next * SLOT_BYTES <= 32 * full, "{cap} -> {next}");
            cap = next;
        }
    }

    #[test]
    fn addresses_that_cannot_start_a_block() {
        // Not 16-byte aligned, zero, or beyond 2^48: never a block, never stored.
        for a in [0u64, 0x3000_0000_0008, 1 << 49] {
            insert(a, Meta::new(8, AllocFunc::Malloc, false));
            assert!(matches!(remove(a), Removed::NotABlock), "{a:#x}");
        }
    }
}
