//! Event times, in units of [`UNIT_NS`], that still order every pair of events on one
//! address made by different threads.
//!
//! The trace's time unit is about a microsecond (trace format 6): a nanosecond delta
//! costs a byte or two per event, a microsecond one almost nothing. The analysis merges
//! the threads' events by time, and two events on one block by two threads must come in
//! the order they happened: a free by one thread, then the allocation that reuses the
//! address by another; an allocation, then its release by the consumer thread it was
//! handed to. Within one unit their times would tie. So each event also goes through a
//! cell of a small table, picked by its address: the cell keeps the latest time stamped
//! on it and which thread stamped it. An event whose cell says another thread stamped
//! the same time (or a later one) takes the cell's time plus one unit.
//!
//! Why that orders a dependent pair: the first event publishes its time in the cell
//! before its block can reach the other thread (a release is stamped before the real
//! free, an allocation before the hook returns it), so the second event, stamped after
//! it got the block, finds a cell time no earlier than the first's, with another thread
//! than its own, or both threads ([`MIXED`]); it takes a later time. A cell only ever
//! moves forward (compare-and-swap), so an unrelated event on the same cell can raise
//! its time but never hide an earlier one. Bumps happen only when two threads stamp one
//! cell within one unit, so times stay within a few units of the clock.
//!
//! Each thread's own times never go backwards (the caller passes its previous time), and
//! its events keep their order in its stream without any cell.

use core::sync::atomic::{AtomicU64, Ordering};

/// The trace's time unit for events, as a shift of nanoseconds: 2^10 ns = 1.024 us.
pub const TIME_SHIFT: u8 = 10;
/// The time unit, ns.
pub const UNIT_NS: u64 = 1 << TIME_SHIFT;

const CELLS: usize = 4096;
/// Low bits of a cell: the tag of the thread that stamped it.
const TAG_BITS: u32 = 20;
/// The tag of a cell two threads stamped with the same time.
pub const MIXED: u64 = (1 << TAG_BITS) - 1;

static TABLE: [AtomicU64; CELLS] = [const { AtomicU64::new(0) }; CELLS];

/// A thread's tag, from its recorder index: never 0 (an empty cell) or [`MIXED`]. Two
/// threads whose indices are 2^20 - 2 apart share a tag; the worst that does is leave
/// two of their events on one address in one unit unordered by the cell.
#[inline(always)]
pub fn tag_of(index: u32) -> u64 {
    u64::from(index) % (MIXED - 1) + 1
}

#[inline(always)]
fn cell(addr: u64) -> &'static AtomicU64 {
    let h = (addr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52;
    &TABLE[h as usize % CELLS]
}

#[inline(always)]
fn unpack(c: u64) -> (u64, u64) {
    ((c >> TAG_BITS) << TIME_SHIFT, c & MIXED)
}

/// A cell value: time `t` (a multiple of the unit, as every stamp is) and `tag`.
#[inline(always)]
fn pack(t: u64, tag: u64) -> u64 {
    debug_assert!(t.is_multiple_of(UNIT_NS) && tag <= MIXED);
    t << (TAG_BITS - u32::from(TIME_SHIFT)) | tag
}

/// The earliest time at or after `t` that orders after the cell value `c` for the
/// thread tagged `tag`.
#[inline(always)]
pub fn after(c: u64, t: u64, tag: u64) -> u64 {
    if c == 0 {
        return t;
    }
    let (ct, ctag) = unpack(c);
    if ctag == tag {
        // This thread's own time: its stream orders it.
        t.max(ct)
    } else if ct >= t {
        ct + UNIT_NS
    } else {
        t
    }
}

/// The cell value after the thread tagged `tag` stamped time `t` on a cell holding `c`;
/// `None` when it stays as it is.
#[inline(always)]
pub fn published(c: u64, t: u64, tag: u64) -> Option<u64> {
    if c == 0 {
        return Some(pack(t, tag));
    }
    let (ct, ctag) = unpack(c);
    if ct < t {
        Some(pack(t, tag))
    } else if ct == t && ctag != tag && ctag != MIXED {
        Some(pack(t, MIXED))
    } else {
        None
    }
}

/// Forget every cell: a new trace's clock starts again (`memlens attach`, a later
/// window). Called while no thread records.
pub fn clear() {
    for c in &TABLE {
        c.store(0, Ordering::Relaxed);
    }
}

/// Put `t` by `tag` into `cell`, which held `seen` when `t` was chosen (forward only).
/// For a cell whose value did not choose the event's time.
#[inline(always)]
fn publish(cell: &AtomicU64, mut seen: u64, t: u64, tag: u64) {
    while let Some(new) = published(seen, t, tag) {
        match cell.compare_exchange_weak(seen, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(now) => seen = now,
        }
    }
}

/// The earliest time at or after `t` that orders after `cell` for the thread tagged
/// `tag`, put into the cell. The time is chosen from the value the compare-and-swap
/// replaces, so that a value another thread put in meanwhile is ordered after too: a
/// moving realloc's record ([`stamp_moved`]) relies on it, its release being published
/// after glibc may already have handed the block to another thread.
#[inline(always)]
fn claim(cell: &AtomicU64, t: u64, tag: u64) -> u64 {
    let mut seen = cell.load(Ordering::Acquire);
    loop {
        let chosen = after(seen, t, tag);
        let Some(new) = published(seen, chosen, tag) else {
            return chosen;
        };
        match cell.compare_exchange_weak(seen, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return chosen,
            Err(now) => seen = now,
        }
    }
}

/// The time of an event of the thread tagged `tag` ([`tag_of`]) whose previous event had
/// time `last` (0 for its first), made now (`now_ns`) on the block at `addr` (0: none)
/// and, for a realloc, `other`. A multiple of [`UNIT_NS`], at least `last`, and later
/// than any other thread's event on those addresses that happened before this one (see
/// the module's doc).
#[inline(always)]
pub fn stamp(now_ns: u64, last: u64, tag: u64, addr: u64, other: u64) -> u64 {
    let t = (now_ns & !(UNIT_NS - 1)).max(last);
    if addr == 0 {
        return t;
    }
    let c = cell(addr);
    let t = claim(c, t, tag);
    if other != 0 {
        return stamp_second(t, tag, c, other);
    }
    t
}

/// [`stamp`]'s realloc: the second block's cell may move the time on; the first cell
/// then gets the final time too.
#[cold]
fn stamp_second(t: u64, tag: u64, c: &AtomicU64, other: u64) -> u64 {
    let t2 = claim(cell(other), t, tag);
    if t2 != t {
        publish(c, c.load(Ordering::Acquire), t2, tag);
    }
    t2
}

/// The time of a moving realloc's record, its old block's release having been reserved
/// at `reserved` (a [`stamp`] of `old` made before the real realloc). glibc releases the
/// old block inside the call, so another thread may get its address and stamp that
/// allocation before this record is stamped. The reservation is what tells: while
/// `old`'s cell still holds it, no event on that cell was stamped since, and the record
/// takes its time as a realloc on both blocks (`Ok`): a thread that read the reservation
/// and chose its time from it fails its compare-and-swap and chooses again ([`claim`]).
/// Otherwise (`Err`) the release must keep the reserved time, earlier than any reuse,
/// and only the new block is stamped: `Err((release time, allocation time))`. (An
/// unrelated event on the same cell answers `Err` too; splitting the record is then
/// merely unneeded.)
///
/// The new block's cell is claimed first, and the time it gives is the one the old
/// cell gets: a thread that reused the old address and read the reservation is either
/// seen here (the old cell no longer holds it) or orders after this time.
#[inline]
pub fn stamp_moved(
    now_ns: u64,
    last: u64,
    tag: u64,
    old: u64,
    new: u64,
    reserved: u64,
) -> Result<u64, (u64, u64)> {
    let t = (now_ns & !(UNIT_NS - 1)).max(last);
    let (c_old, c_new) = (cell(old), cell(new));
    if core::ptr::eq(c_old, c_new) {
        // One cell for both blocks: while it holds the reservation, nothing was stamped on
        // either since (an earlier event on the new block ordered the reservation after
        // it), and claiming it first would only overwrite the reservation.
        if c_old
            .compare_exchange(
                pack(reserved, tag),
                pack(t, tag),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            return Ok(t);
        }
        return Err((reserved.max(last), claim(c_new, t, tag)));
    }
    let t = claim(c_new, t, tag);
    let held = c_old.compare_exchange(
        pack(reserved, tag),
        pack(t, tag),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    match held {
        Ok(_) => Ok(t),
        Err(_) => Err((reserved.max(last), t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: u64 = UNIT_NS;

    /// The tests that stamp share the process's one table of cells: each takes it alone,
    /// cleared, so that another's times (a frozen clock's, far ahead) move none of its own.
    fn cells() -> std::sync::MutexGuard<'static, ()> {
        static CELLS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = CELLS.lock().unwrap_or_else(|e| e.into_inner());
        clear();
        guard
    }

    #[test]
    fn cells_keep_time_and_tag() {
        for (t, tag) in [(0, 1), (5 * U, 7), ((1 << 40) * U, MIXED)] {
            assert_eq!(unpack(pack(t, tag)), (t, tag));
        }
        assert_ne!(tag_of(0), 0);
        assert_ne!(tag_of(u32::MAX), MIXED);
        assert_ne!(tag_of(3), tag_of(4));
    }

    /// Another thread's time in the cell, the same or later: one unit after it. The
    /// thread's own: no bump. An earlier one: nothing to do.
    #[test]
    fn after_orders_behind_other_threads_only() {
        let other = pack(10 * U, 2);
        assert_eq!(after(other, 10 * U, 1), 11 * U);
        assert_eq!(after(other, 8 * U, 1), 11 * U);
        assert_eq!(after(other, 12 * U, 1), 12 * U);
        assert_eq!(after(pack(10 * U, 1), 10 * U, 1), 10 * U);
        assert_eq!(after(pack(10 * U, MIXED), 10 * U, 1), 11 * U);
        assert_eq!(after(0, 3 * U, 1), 3 * U);
    }

    /// A cell moves forward only; two threads at one time make it MIXED, so that a third
    /// thread, or either of them, orders after both.
    #[test]
    fn publishing_moves_forward_and_marks_ties() {
        let c = published(0, 10 * U, 1).unwrap();
        assert_eq!(published(c, 9 * U, 2), None);
        assert_eq!(published(c, 10 * U, 1), None);
        let mixed = published(c, 10 * U, 2).unwrap();
        assert_eq!(unpack(mixed), (10 * U, MIXED));
        assert_eq!(after(mixed, 10 * U, 1), 11 * U);
        assert_eq!(after(mixed, 10 * U, 2), 11 * U);
        assert_eq!(published(mixed, 10 * U, 3), None);
        assert_eq!(unpack(published(mixed, 11 * U, 3).unwrap()), (11 * U, 3));
    }

    /// The cases the analysis needs: a free by one thread and the reuse of its address by
    /// another in the same unit, an allocation handed to another thread and freed there,
    /// and a realloc between two others, each strictly later; a thread's own times only
    /// round down and never go back.
    #[test]
    fn dependent_events_of_two_threads_never_tie() {
        let _cells = cells();
        let (a, b) = (tag_of(100), tag_of(101));
        let p = 0x7000_1234_5670;
        let t_free = stamp(50 * U + 3, 0, a, p, 0);
        assert_eq!(t_free, 50 * U);
        let t_reuse = stamp(50 * U + 900, 0, b, p, 0);
        assert!(t_reuse > t_free, "{t_reuse} {t_free}");
        let q = 0x7000_9999_0000;
        let t_alloc = stamp(60 * U, t_free, a, q, 0);
        let t_release = stamp(60 * U + 1, t_reuse, b, q, 0);
        assert!(t_release > t_alloc);
        let r = 0x7000_5555_0010;
        let t_realloc = stamp(61 * U, t_alloc, a, q, r);
        assert!(t_realloc > t_release);
        // The thread's own next event in the unit: no bump, and never before its last.
        assert_eq!(stamp(61 * U + 5, t_realloc, a, r, 0), t_realloc);
        assert_eq!(stamp(40 * U, t_realloc, a, 0, 0), t_realloc);
    }

    /// A moving realloc: its release reserved before the real call. Untouched, the
    /// reservation lets the record be one realloc; once another thread stamped the old
    /// address (its reuse), the release keeps the reserved time, before the reuse, and
    /// the new block's allocation comes after its own previous release.
    #[test]
    fn a_moving_realloc_releases_before_the_reuse_of_its_old_address() {
        let _cells = cells();
        let (a, b, c) = (tag_of(300), tag_of(301), tag_of(302));
        let (old, new) = (0x6000_0000_1000, 0x6000_0000_8000);
        let t0 = stamp(70 * U + 1, 0, a, old, 0);
        assert_eq!(stamp_moved(70 * U + 9, t0, a, old, new, t0), Ok(t0));

        let old = 0x6000_0001_1000;
        let t0 = stamp(80 * U, 0, a, old, 0);
        // Another thread frees `new` meanwhile, and another gets `old` from glibc.
        let t_free_new = stamp(80 * U + 2, 0, c, new, 0);
        let t_reuse = stamp(80 * U + 3, 0, b, old, 0);
        assert!(t_reuse > t0);
        let (t_release, t_alloc) = stamp_moved(80 * U + 4, t0, a, old, new, t0).unwrap_err();
        assert_eq!(t_release, t0);
        assert!(t_release < t_reuse && t_alloc > t_free_new && t_alloc >= t_release);
        // The old address's next event by `a` (say a later free of the reused block
        // handed back) still orders after the reuse.
        assert!(stamp(80 * U + 5, t_alloc, a, old, 0) > t_reuse);
    }

    /// A moving realloc whose two blocks share a cell: untouched since the reservation, the
    /// record is still one realloc; touched by another thread, it splits, ordered.
    #[test]
    fn a_moving_realloc_within_one_cell_stays_one_record() {
        let _cells = cells();
        let a = tag_of(500);
        let old = 0x6100_0000_1000u64;
        let new = (1..)
            .map(|i| old + 16 * i)
            .find(|&n| core::ptr::eq(cell(n), cell(old)))
            .unwrap();
        let t0 = stamp(90 * U + 1, 0, a, old, 0);
        assert_eq!(stamp_moved(90 * U + 700, t0, a, old, new, t0), Ok(t0));
        let t1 = stamp(95 * U, t0, a, old, 0);
        let t_other = stamp(95 * U + 3, 0, tag_of(501), new, 0);
        let (release, alloc) = stamp_moved(95 * U + 5, t1, a, old, new, t1).unwrap_err();
        assert_eq!(release, t1);
        assert!(alloc > t_other && t_other > release);
    }

    /// The race of a moving realloc with the thread that gets its old address from
    /// glibc inside the call and moves a block of its own there, both in one unit of
    /// time: thread A reserves the release of `x`, "glibc" hands `x` to thread B, and
    /// both stamp their realloc records at once. B's record must come after A's release
    /// of `x`, whichever compare-and-swap wins. (Before the new block's cell was claimed
    /// with a loop, B could keep a time it chose from A's reservation, equal to A's
    /// record: 2 runs of 100 of `realloc_race` showed an untracked free.)
    #[test]
    fn a_block_moved_onto_an_address_a_racing_realloc_released_comes_after_it() {
        let _cells = cells();
        use std::sync::atomic::AtomicU64 as Shared;
        use std::sync::Arc;
        const ROUNDS: u64 = 200_000;
        // A spin that lets the other thread run on a loaded machine now and then (both
        // spin, so that their stamps race).
        fn wait(spins: &mut u32) {
            *spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        let now = 5_000 * U + 3;
        // Round i's address x, published by A once "released" (0: not yet), and B's
        // allocation time at it.
        let handed = Arc::new(Shared::new(0));
        let b_done = Arc::new(Shared::new(0));
        let b_times: Arc<Vec<Shared>> = Arc::new((0..ROUNDS).map(|_| Shared::new(0)).collect());
        let b = {
            let (handed, b_done, b_times) = (handed.clone(), b_done.clone(), b_times.clone());
            std::thread::spawn(move || {
                let tag = tag_of(401);
                let mut last = 0;
                for i in 0..ROUNDS {
                    let mut spins = 0;
                    let x = loop {
                        let x = handed.load(Ordering::Acquire);
                        if x != 0 {
                            break x;
                        }
                        wait(&mut spins);
                    };
                    handed.store(0, Ordering::Relaxed);
                    let own = 0x4000_0000_0000 + 64 * i;
                    let reserved = stamp(now, last, tag, own, 0);
                    let t = match stamp_moved(now, reserved, tag, own, x, reserved) {
                        Ok(t) | Err((_, t)) => t,
                    };
                    last = t;
                    b_times[i as usize].store(t, Ordering::Relaxed);
                    b_done.store(i + 1, Ordering::Release);
                }
            })
        };
        let tag = tag_of(400);
        let mut last = 0;
        let mut a_releases = Vec::with_capacity(ROUNDS as usize);
        for i in 0..ROUNDS {
            let x = 0x3000_0000_0000 + 32 * (i % 1024);
            let reserved = stamp(now, last, tag, x, 0);
            handed.store(x, Ordering::Release);
            let new = 0x2000_0000_0000 + 32 * i;
            let release = match stamp_moved(now, reserved, tag, x, new, reserved) {
                Ok(t) => {
                    last = t;
                    t
                }
                Err((release, t)) => {
                    last = t;
                    release
                }
            };
            a_releases.push(release);
            let mut spins = 0;
            while b_done.load(Ordering::Acquire) != i + 1 {
                wait(&mut spins);
            }
        }
        b.join().unwrap();
        for (i, release) in a_releases.iter().enumerate() {
            let reuse = b_times[i].load(Ordering::Relaxed);
            assert!(
                reuse > *release,
                "round {i}: reuse {reuse} release {release}"
            );
        }
    }

    /// Two real threads with a clock that never moves (every event in one unit): a
    /// producer allocates blocks and hands them over, the consumer frees them and hands
    /// the addresses back, the producer allocates them again. Every event comes after the
    /// one it depends on, and each thread's times never go back.
    #[test]
    fn a_frozen_clock_still_orders_handoffs_between_threads() {
        let _cells = cells();
        use std::sync::mpsc::channel;
        let (to_consumer, consumer_in) = channel::<(u64, u64)>();
        let (to_producer, producer_in) = channel::<(u64, u64)>();
        let now = 1_000 * U + 17;
        let consumer = std::thread::spawn(move || {
            let tag = tag_of(201);
            let mut last = 0;
            for (addr, t_alloc) in consumer_in {
                let t = stamp(now, last, tag, addr, 0);
                assert!(t > t_alloc && t >= last, "free {t} after alloc {t_alloc}");
                last = t;
                to_producer.send((addr, t)).unwrap();
            }
        });
        let tag = tag_of(200);
        let mut last = 0;
        for i in 0..2000u64 {
            // Eight addresses in turn, so that each comes back freed.
            let addr = 0x5000_0000 + 16 * (i % 8);
            if i >= 8 {
                let (back, t_free) = producer_in.recv().unwrap();
                assert_eq!(back, addr);
                let t = stamp(now, last, tag, addr, 0);
                assert!(t > t_free && t >= last, "reuse {t} after free {t_free}");
                last = t;
                to_consumer.send((addr, t)).unwrap();
            } else {
                last = stamp(now, last, tag, addr, 0);
                to_consumer.send((addr, last)).unwrap();
            }
        }
        drop(to_consumer);
        consumer.join().unwrap();
    }
}
