//! The marker and the range helpers, on fake heaps and a memory reader that tests own.

use crate::ranges::{merge, subtract};
use crate::*;
extern crate std;
use memlens_trace::{BlockLink, BlockState};
use std::vec::Vec;

/// Reads real memory, except the 4 KiB pages listed as holes (as a page past the end
/// of a file would be).
struct Holes(Vec<u64>);

impl Reader for Holes {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> usize {
        for (k, w) in out.iter_mut().enumerate() {
            let a = addr + 8 * k as u64;
            if self.0.contains(&(a & !4095)) {
                return k;
            }
            // SAFETY: the tests only read their own arrays.
            *w = unsafe { core::ptr::read(a as *const u64) };
        }
        out.len()
    }
}

/// A fake heap: `arena` holds the blocks (each with a zero chunk-header word before
/// it), `roots` the root memory, both ordinary test memory.
struct World {
    arena: Vec<u64>,
    blocks: Vec<(u64, u64)>,
}

impl World {
    fn new() -> World {
        World {
            arena: std::vec![0u64; 4096],
            blocks: Vec::new(),
        }
    }
    /// A block of `size` bytes at word `at` of the arena (16-byte aligned address).
    fn block(&mut self, at: usize, size: u64) -> u64 {
        let a = &self.arena[at] as *const u64 as u64;
        assert!(
            a.is_multiple_of(16),
            "arena word {at} is not 16-byte aligned"
        );
        self.blocks.push((a, size));
        a
    }
    fn put(&mut self, block: u64, word: usize, value: u64) {
        let base = self.arena.as_ptr() as u64;
        self.arena[((block - base) / 8) as usize + word] = value;
    }
    fn verdicts(
        &self,
        roots: &[u64],
        regs: &[u64],
        holes: Vec<u64>,
    ) -> Vec<(BlockState, BlockLink)> {
        let heap = Heap::new(self.blocks.clone());
        let lo = roots.as_ptr() as u64;
        let hi = lo + 8 * roots.len() as u64;
        let mut mem = Holes(holes);
        // SAFETY: the blocks are in `self.arena`, live and 16-byte aligned.
        let direct = unsafe { Direct::new() };
        let marks = mark(&heap, &direct, &[], &mut mem, 0, &[(lo, hi)], &[regs], 0);
        // Back in the order the blocks were made.
        self.blocks
            .iter()
            .map(|b| {
                let i = heap.blocks.iter().position(|h| h.0 == b.0).unwrap();
                let (s, _, l) = marks.verdict(i);
                (s, l)
            })
            .collect()
    }
}

use BlockState::*;

/// An arena whose word 2 is 16-byte aligned: blocks at 2 + 8k.
fn world() -> World {
    let w = World::new();
    let base = w.arena.as_ptr() as u64;
    assert!(base.is_multiple_of(8));
    w
}

fn slot(w: &World, k: usize) -> usize {
    let base = w.arena.as_ptr() as u64;
    let first = if base.is_multiple_of(16) { 2 } else { 1 };
    first + 8 * k
}

#[test]
fn memchecks_kinds_from_roots_registers_and_cliques() {
    let mut w = world();
    let at = |k| slot(&w, k);
    let (a, b, c, d, e, f, g, h, r) = (
        at(0),
        at(1),
        at(2),
        at(3),
        at(4),
        at(5),
        at(6),
        at(7),
        at(8),
    );
    let a = w.block(a, 32); // root -> a (start): reachable
    let b = w.block(b, 32); // a -> b: reachable
    let c = w.block(c, 32); // root -> c + 8 (interior): possibly lost
    let d = w.block(d, 32); // c -> d: possibly lost (its parent is only possible)
    let e = w.block(e, 32); // nothing -> e -> f: e definitely, f indirectly lost
    let f = w.block(f, 32);
    let g = w.block(g, 32); // g <-> h, unreferenced: g (lower) leads, h indirect
    let h = w.block(h, 32);
    let r = w.block(r, 32); // only in a register: reachable
    w.put(a, 0, b);
    w.put(c, 0, d);
    w.put(e, 1, f);
    w.put(g, 0, h);
    w.put(h, 0, g);
    let roots = [0u64, a, 7, c + 8];
    let v = w.verdicts(&roots, &[0, r], Vec::new());
    let kinds: Vec<BlockState> = v.iter().map(|x| x.0).collect();
    assert_eq!(
        kinds,
        [
            StillReachable,
            StillReachable,
            PossiblyLost,
            PossiblyLost,
            DefinitelyLost,
            IndirectlyLost,
            DefinitelyLost,
            IndirectlyLost,
            StillReachable
        ]
    );
    let roots_at = roots.as_ptr() as u64;
    assert_eq!(
        v[0].1,
        BlockLink::Root {
            root: 0,
            addr: roots_at + 8
        }
    );
    assert_eq!(v[1].1, BlockLink::Block(0));
    assert_eq!(v[8].1, BlockLink::Root { root: 1, addr: 0 });
    // Indirect blocks name their clique's leader (in address order, g is block 6).
    assert_eq!(v[5].1, BlockLink::Block(4));
    assert_eq!(v[7].1, BlockLink::Block(6));
}

#[test]
fn unreadable_root_pages_are_skipped_not_read() {
    // Two pages of roots; the only pointer to the block is in the second one, which
    // the reader refuses (a page past the end of a file): the block is lost, and
    // nothing faulted. The first page's pointer still counts.
    let mut w = world();
    let (k0, k1) = (slot(&w, 0), slot(&w, 1));
    let kept = w.block(k0, 16);
    let lost = w.block(k1, 16);
    let mut pages = std::vec![0u64; 3 * 512];
    let base = pages.as_ptr() as u64;
    let first = ((base + 4095) & !4095) as usize - base as usize;
    let p0 = first / 8;
    pages[p0] = kept;
    pages[p0 + 512] = lost;
    let hole = base + first as u64 + 4096;
    let v = w.verdicts(&pages[p0..p0 + 1024], &[], std::vec![hole]);
    assert_eq!(v[0].0, StillReachable);
    assert_eq!(v[1].0, DefinitelyLost);
    let v = w.verdicts(&pages[p0..p0 + 1024], &[], Vec::new());
    assert_eq!(v[1].0, StillReachable);
}

#[test]
fn heap_find_maps_interior_addresses_to_their_block() {
    // Blocks far apart (two clusters) and adjacent ones.
    let blocks: Vec<(u64, u64)> = [
        (0x10_0000u64, 32u64),
        (0x10_0020, 16),
        (0x10_2000, 4096),
        (0x9000_0000, 8),
    ]
    .to_vec();
    let heap = Heap::new(blocks);
    assert_eq!(heap.find(0x10_0000), Some(0));
    assert_eq!(heap.find(0x10_001f), Some(0));
    assert_eq!(heap.find(0x10_0020), Some(1));
    assert_eq!(heap.find(0x10_0030), None);
    assert_eq!(heap.find(0x10_2fff), Some(2));
    assert_eq!(heap.find(0x10_3000), None);
    assert_eq!(heap.find(0x9000_0007), Some(3));
    assert_eq!(heap.find(0x9000_0008), None);
    assert_eq!(heap.find(0x0f_ffff), None);
}

#[test]
fn subtract_and_merge_ranges() {
    let excl = merge(std::vec![(30, 40), (10, 20), (15, 25)]);
    assert_eq!(excl, [(10, 25), (30, 40)]);
    let mut got = Vec::new();
    subtract(0, 50, &excl, |a, b| got.push((a, b)));
    assert_eq!(got, [(0, 10), (25, 30), (40, 50)]);
    got.clear();
    subtract(12, 24, &excl, |a, b| got.push((a, b)));
    assert!(got.is_empty());
}

// ---- Cursor ----

/// A fake memory: readable words are those whose page is not in `holes`.
struct Fake {
    holes: Vec<u64>,
    reads: usize,
}

impl Reader for Fake {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> usize {
        self.reads += 1;
        for (k, w) in out.iter_mut().enumerate() {
            let a = addr + 8 * k as u64;
            if self.holes.contains(&(a & !(PAGE - 1))) {
                return k;
            }
            *w = a;
        }
        out.len()
    }
}

fn collect(holes: &[u64], lo: u64, hi: u64, piece: usize) -> Vec<u64> {
    let mut r = Fake {
        holes: holes.to_vec(),
        reads: 0,
    };
    let mut buf = std::vec![0u64; piece];
    let mut seen = Vec::new();
    let mut cur = Cursor::new(lo, hi);
    while let Some((at, n)) = cur.next(&mut r, &mut buf) {
        for (k, &w) in buf[..n].iter().enumerate() {
            assert_eq!(w, at + 8 * k as u64, "word delivered at its own address");
            seen.push(w);
        }
    }
    seen
}

#[test]
fn every_readable_word_once_and_holes_skipped() {
    // Three pages, the middle one unreadable, read in pieces that straddle pages.
    let seen = collect(&[0x11000], 0x10000, 0x13000, 100);
    let expect: Vec<u64> = (0x10000..0x11000)
        .chain(0x12000..0x13000)
        .step_by(8)
        .collect();
    assert_eq!(seen, expect);
}

#[test]
fn unaligned_ends_and_short_ranges() {
    assert_eq!(collect(&[], 0x1003, 0x1020, 16), [0x1008, 0x1010, 0x1018]);
    assert!(collect(&[], 0x1001, 0x1008, 16).is_empty());
    assert!(collect(&[0x1000], 0x1000, 0x2000, 16).is_empty());
}

/// The one classification of a process's mappings: readable ones kept for the marker,
/// guard ends noted, and of the read-write ones only the program's memory offered as
/// roots (anonymous names blanked); the arena-heap test asked of anonymous memory only.
#[test]
fn mappings_are_classified_once_for_both_scans() {
    use crate::ranges::{Mappings, MapsLine};
    let line = |start: u64, perms: &str, name: &'static str| MapsLine {
        start,
        end: start + 0x1000,
        read: perms.contains('r'),
        write: perms.contains('w'),
        exec: perms.contains('x'),
        shared: perms.contains('s'),
        name: name.as_bytes(),
    };
    let lines = [
        line(0x1000, "r-x", "/usr/bin/prog"),
        line(0x2000, "rw", "/usr/bin/prog"),
        line(0x3000, "rw", "[heap]"),
        line(0x4000, "", ""),
        line(0x5000, "rw", ""),
        line(0x6000, "rw", "[anon:glibc: malloc arena]"),
        line(0x7000, "rw", "[anon:cache]"),
        line(0x8000, "rw", "/dev/nvidia0"),
        line(0x9000, "rws", "/dev/shm/x"),
        line(0xa000, "rw", "/dev/zero (deleted)"),
        line(0xb000, "rw", "/usr/lib/libmemlens_preload.so"),
        line(0xc000, "rw", "[stack]"),
        line(0xd000, "r", "[vvar]"),
        line(0xe000, "rw", ""),
    ];
    let mut m = Mappings::default();
    let mut asked = Vec::new();
    for l in &lines {
        let recorder = l.name.ends_with(b"libmemlens_preload.so");
        m.add(l, recorder, || {
            asked.push(l.start);
            // The arenas: the first anonymous mapping and the named one.
            l.start == 0x5000 || l.start == 0x6000
        });
    }
    assert_eq!(asked, [0x5000, 0x6000, 0x7000, 0xe000]);
    assert_eq!(m.guard_ends, [0x5000]);
    let readable: Vec<u64> = m.maps.iter().map(|x| x.start).collect();
    assert_eq!(
        readable,
        [
            0x1000, 0x2000, 0x3000, 0x5000, 0x6000, 0x7000, 0x8000, 0x9000, 0xa000, 0xb000, 0xc000,
            0xd000, 0xe000
        ]
    );
    let roots: Vec<(u64, bool, bool, &[u8])> =
        m.rw.iter()
            .map(|r| (r.start, r.file, r.shared, &r.name[..]))
            .collect();
    assert_eq!(
        roots,
        [
            (0x2000, true, false, &b"/usr/bin/prog"[..]),
            (0x7000, false, false, &b""[..]),
            (0x9000, true, true, &b"/dev/shm/x"[..]),
            (0xa000, true, false, &b"/dev/zero (deleted)"[..]),
            (0xc000, false, false, &b"[stack]"[..]),
            (0xe000, false, false, &b""[..]),
        ]
    );
    assert!(m.excl.is_empty());
}
