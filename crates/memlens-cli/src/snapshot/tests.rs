//! The snapshot's pure parts on synthetic memory: the chunk walk, the holders' labels,
//! root memory read across copies, /proc/PID/maps lines.

use super::glibc::{walk_chunks, Chunk, Copied, Region};
use super::holders::{label, NONE, SHARED};
use super::remote::parse_maps;
use memlens_reach::{mark, Heap, Reader};

/// A heap region at `start` made of chunks (size with flag bits), then a top chunk.
fn region(start: u64, chunks: &[u64], top: u64) -> Region {
    let mut words = Vec::new();
    for &c in chunks.iter().chain([top].iter()) {
        let n = ((c & !7) / 8) as usize;
        let mut w = vec![0u64; n];
        w[1] = c;
        words.extend(w);
    }
    words.extend([0, 0]);
    Region { start, words }
}

#[test]
fn chunks_in_use_by_the_next_chunks_prev_inuse_bit_up_to_the_top() {
    // 0x20 (in use: the next has PREV_INUSE), 0x30 (free: the next lacks it), 0x40 (in
    // use), then the top chunk.
    let r = region(0x1000, &[0x21, 0x31, 0x40, 0x41], 0x1001);
    let top = 0x1000 + 0x20 + 0x30 + 0x40 + 0x40;
    let mut out: Vec<Chunk> = Vec::new();
    walk_chunks(&r, 0x1000, Some(top), &mut out).unwrap();
    let got: Vec<(u64, u64, bool)> = out.iter().map(|c| (c.addr, c.size, c.in_use)).collect();
    assert_eq!(
        got,
        [
            (0x1000, 0x20, true),
            (0x1020, 0x30, false),
            (0x1050, 0x40, true),
            (0x1090, 0x40, true),
        ]
    );
    // A size running past the region is damage, said as such.
    let bad = Region {
        start: 0x1000,
        words: vec![0, 0x10_0001, 0, 0, 0, 0, 0, 0],
    };
    let e = walk_chunks(&bad, 0x1000, None, &mut Vec::new()).unwrap_err();
    assert!(e.contains("looks damaged"), "{e}");
}

#[test]
fn holders_label_blocks_reachable_through_one_root_and_several() {
    // Blocks a -> b, c; root 0 holds a, root 1 holds c: b is root 0's, c is shared,
    // d is unreachable.
    let base = 0x10_0000u64;
    let mut words = vec![0u64; 64];
    let (a, b, c, d) = (base + 16, base + 80, base + 144, base + 208);
    let w = |x: u64| ((x - base) / 8) as usize;
    words[w(a)] = b;
    words[w(a) + 1] = c;
    let mem = Copied {
        regions: vec![Region { start: base, words }],
    };
    let heap = Heap::new(vec![(a, 48), (b, 48), (c, 48), (d, 48)]);
    let roots = Copied {
        regions: vec![Region {
            start: 0x9000,
            words: vec![a, c],
        }],
    };
    let mut rm = super::take::RootMemory::for_tests(roots);
    let ranges = [(0x9000, 0x9008), (0x9008, 0x9010)];
    let marks = mark(&heap, &mem, &[], &mut rm, 0, &ranges, &[], 0);
    let labels = label(
        &heap,
        &mem,
        &marks,
        &mut rm,
        &ranges,
        &mut |i, _| i as u32,
        &[],
    );
    assert_eq!(labels, [0, 0, SHARED, NONE]);
}

#[test]
fn root_memory_reads_across_adjacent_copies_and_stops_at_holes() {
    let copies = Copied {
        regions: vec![
            Region {
                start: 0x1000,
                words: vec![1, 2],
            },
            Region {
                start: 0x1010,
                words: vec![3],
            },
            Region {
                start: 0x2000,
                words: vec![9],
            },
        ],
    };
    let mut rm = super::take::RootMemory::for_tests(copies);
    let mut out = [0u64; 4];
    assert_eq!(rm.read(0x1000, &mut out), 3);
    assert_eq!(out[..3], [1, 2, 3]);
    assert_eq!(rm.read(0x1008, &mut out[..2]), 2);
    assert_eq!(out[..2], [2, 3]);
    // Between copies: a hole before the next copy.
    assert_eq!(rm.read(0x1ff8, &mut out[..2]), 0);
}

#[test]
fn maps_lines_with_and_without_names() {
    let m = parse_maps(
        "55d0a000-55d0b000 r-xp 00001000 fd:01 1234   /usr/bin/prog\n\
         7ffd1000-7ffd2000 rw-p 00000000 00:00 0      [stack]\n\
         7f000000-7f001000 rw-s 00000000 00:05 77     /dev/shm/x (deleted)\n\
         7f100000-7f200000 rw-p 00000000 00:00 0 \n",
    );
    assert_eq!(m.len(), 4);
    assert!(m[0].exec && !m[0].write && m[0].name == "/usr/bin/prog" && m[0].offset == 0x1000);
    assert_eq!(m[0].inode, 1234);
    assert_eq!(m[1].name, "[stack]");
    assert!(m[2].shared && m[2].name == "/dev/shm/x (deleted)");
    assert!(m[3].name.is_empty() && m[3].read && m[3].write);
}
