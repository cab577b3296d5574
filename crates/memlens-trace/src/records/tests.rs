//! One round trip per record kind: encoded by its `ChunkBuilder` method, decoded by
//! its decoder, equal.

use super::*;
use crate::varint::Cursor;

/// Encode with `write` into a fresh builder, then decode every record with `read`.
fn roundtrip<T>(
    write: impl FnOnce(&mut ChunkBuilder<&mut [u8]>) -> Result<(), WriteError>,
    mut read: impl FnMut(&mut Cursor, u64) -> Option<T>,
) -> Vec<T> {
    let mut buf = [0u8; 1024];
    let mut b = ChunkBuilder::new(&mut buf[..]);
    write(&mut b).unwrap();
    let first_ts = b.first_ts();
    let mut scratch = Vec::new();
    let mut c = Cursor::new(b.payload(&mut scratch));
    let mut out = Vec::new();
    while !c.is_empty() {
        out.push(read(&mut c, first_ts).expect("decodes"));
    }
    out
}

/// Encode events with `write`, decode them as the reader does (thread 7).
fn events(
    write: impl FnOnce(&mut ChunkBuilder<&mut [u8]>) -> Result<(), WriteError>,
) -> Vec<Event> {
    let mut buf = [0u8; 1024];
    let mut b = ChunkBuilder::new(&mut buf[..]);
    write(&mut b).unwrap();
    decode_chunk(&b, 7)
}

fn decode_chunk<B: AsRef<[u8]> + AsMut<[u8]>>(b: &ChunkBuilder<B>, thread: u32) -> Vec<Event> {
    let mut scratch = Vec::new();
    let raw = b.payload(&mut scratch);
    assert_eq!(raw.len(), b.len());
    let mut out = Vec::new();
    // As the reader decodes: every record, then every column read to its end.
    let mut numbers = Vec::new();
    decode_events(
        raw,
        FORMAT_VERSION,
        thread,
        b.first_ts(),
        &mut out,
        &mut numbers,
    )
    .expect("decodes, every column read to its end");
    assert_eq!(numbers.len(), out.len());
    out
}

/// [`decode_chunk`] with each event's numbers (format 7).
fn decode_numbered<B: AsRef<[u8]> + AsMut<[u8]>>(b: &ChunkBuilder<B>) -> Vec<(Event, Numbers)> {
    let mut scratch = Vec::new();
    let (mut out, mut numbers) = (Vec::new(), Vec::new());
    decode_events(
        b.payload(&mut scratch),
        FORMAT_VERSION,
        0,
        b.first_ts(),
        &mut out,
        &mut numbers,
    )
    .expect("decodes");
    out.into_iter().zip(numbers).collect()
}

fn metas(
    write: impl FnOnce(&mut ChunkBuilder<&mut [u8]>) -> Result<(), WriteError>,
) -> Vec<MetaRecord> {
    roundtrip(write, |c, _| decode_meta(c))
}

fn scans(
    write: impl FnOnce(&mut ChunkBuilder<&mut [u8]>) -> Result<(), WriteError>,
) -> Vec<ScanRecord> {
    let mut d = ScanDecoder::new(FORMAT_VERSION);
    roundtrip(write, |c, _| d.decode_scan(c))
}

#[test]
fn alloc_free_realloc_rss_heap_error() {
    let got = events(|b| {
        b.alloc(100, AllocFunc::NewArray, 0x5555_0000_1010, 24, 3)?;
        b.free(150, AllocFunc::DeleteArray, 0x5555_0000_1010, 0)?;
        b.free(160, AllocFunc::Free, 0x5555_0000_2000, 9)?;
        b.realloc(170, AllocFunc::Realloc, 0x2000, 0x3008, 64, 4)?;
        b.rss(180, 1 << 30)?;
        b.heap_error(
            190,
            AllocFunc::Free,
            HeapErrorKind::Mismatch,
            0x3008,
            AllocFunc::New,
            5,
        )
    });
    assert_eq!(
        got,
        vec![
            Event::Alloc {
                ts: 100,
                thread: 7,
                func: AllocFunc::NewArray,
                addr: 0x5555_0000_1010,
                size: 24,
                stack: 3
            },
            Event::Free {
                ts: 150,
                thread: 7,
                func: AllocFunc::DeleteArray,
                addr: 0x5555_0000_1010,
                stack: 0
            },
            Event::Free {
                ts: 160,
                thread: 7,
                func: AllocFunc::Free,
                addr: 0x5555_0000_2000,
                stack: 9
            },
            Event::Realloc {
                ts: 170,
                thread: 7,
                func: AllocFunc::Realloc,
                old: 0x2000,
                new: 0x3008,
                size: 64,
                stack: 4
            },
            Event::Rss {
                ts: 180,
                bytes: 1 << 30
            },
            Event::HeapError {
                ts: 190,
                thread: 7,
                func: AllocFunc::Free,
                kind: HeapErrorKind::Mismatch,
                addr: 0x3008,
                alloc_func: AllocFunc::New,
                stack: 5
            },
        ]
    );
}

#[test]
fn definitions_and_end() {
    let counters = EndCounters {
        untracked_frees: 1,
        dropped_events: 2,
        recorder_peak_bytes: 3,
        write_errors: 4,
    };
    let got = metas(|b| {
        b.module_load(
            5,
            2,
            b"/lib/x.so",
            &[0xbe, 0xef],
            0x7f00_0000,
            &[(0, 0x1000, 5), (0x2000, 0x80, 6)],
        )?;
        b.module_unload(9, 2)?;
        b.stack(11, &[(2, 0x123), (0, 0x7fff_1234)])?;
        b.thread(12, 3, 4242, b"worker")?;
        b.notice(13, NoticeKind::OwnAllocator, b"/bin/p", b"malloc,free")?;
        b.end(14, ExitKind::Signal, -11, &counters)
    });
    assert_eq!(
        got,
        vec![
            MetaRecord::ModuleLoad(Module {
                id: 2,
                path: "/lib/x.so".into(),
                build_id: vec![0xbe, 0xef],
                load_bias: 0x7f00_0000,
                segments: vec![(0, 0x1000, 5), (0x2000, 0x80, 6)],
                loaded_ns: 5,
                unloaded_ns: None,
            }),
            MetaRecord::ModuleUnload { ts: 9, id: 2 },
            MetaRecord::Stack {
                id: 11,
                frames: vec![
                    RawFrame {
                        module: 2,
                        offset: 0x123
                    },
                    RawFrame {
                        module: 0,
                        offset: 0x7fff_1234
                    }
                ],
            },
            MetaRecord::Thread(ThreadInfo {
                index: 3,
                tid: 4242,
                name: "worker".into(),
                started_ns: 12
            }),
            MetaRecord::Notice(Notice {
                ts: 13,
                kind: NoticeKind::OwnAllocator,
                module: "/bin/p".into(),
                symbols: "malloc,free".into(),
            }),
            MetaRecord::End(EndRecord {
                ts: 14,
                kind: ExitKind::Signal,
                code: -11,
                counters
            }),
        ]
    );
}

#[test]
fn scan_records() {
    let got = scans(|b| {
        b.scan_begin(20, ExitKind::Exit, 3, 2, 77, 4, 1, 1)?;
        b.scan_root(
            1,
            RootKind::ThreadStack,
            77,
            0,
            0x7ffd_0000,
            0x7ffe_0000,
            b"[stack]",
        )?;
        b.scan_block(
            0x1000,
            16,
            BlockState::StillReachable,
            None,
            false,
            BlockLink::Root {
                root: 1,
                addr: 0x7ffd_0010,
            },
        )?;
        b.scan_block(
            0x2000,
            32,
            BlockState::IndirectlyLost,
            Some(Heuristic::StdString),
            true,
            BlockLink::Block(0),
        )?;
        b.scan_end(25, 2)?;
        b.scan_holder(
            0,
            RootKind::ModuleData,
            0,
            4096,
            3,
            b"g_sessions",
            b"/usr/bin/server",
            b"server.c:12",
        )
    });
    assert_eq!(
        got,
        vec![
            ScanRecord::Begin {
                ts: 20,
                trigger: ExitKind::Exit,
                code: 3,
                blocks: 2,
                tid: 77,
                stopped: 4,
                unstoppable: 1,
                flags: 1
            },
            ScanRecord::Root {
                id: 1,
                kind: RootKind::ThreadStack,
                tid: 77,
                module: 0,
                start: 0x7ffd_0000,
                end: 0x7ffe_0000,
                name: "[stack]".into(),
            },
            ScanRecord::Block(ScanBlock {
                addr: 0x1000,
                size: 16,
                state: BlockState::StillReachable,
                heuristic: None,
                internal: false,
                link: BlockLink::Root {
                    root: 1,
                    addr: 0x7ffd_0010
                },
            }),
            ScanRecord::Block(ScanBlock {
                addr: 0x2000,
                size: 32,
                state: BlockState::IndirectlyLost,
                heuristic: Some(Heuristic::StdString),
                internal: true,
                link: BlockLink::Block(0),
            }),
            ScanRecord::End { ts: 25, blocks: 2 },
            ScanRecord::Holder {
                id: 0,
                kind: RootKind::ModuleData,
                tid: 0,
                bytes: 4096,
                blocks: 3,
                name: "g_sessions".into(),
                module: "/usr/bin/server".into(),
                source: "server.c:12".into(),
            },
        ]
    );
}

#[test]
fn region_thread_mark_assert() {
    let got = events(|b| {
        b.region(100, true, 3)?;
        b.thread_mark(110, true)?;
        b.assert(120, AssertKind::NoLeaksSince, 99, 0, 4, 12)?;
        b.assert(130, AssertKind::MaxLive, 0, 24 << 20, 5, 13)?;
        b.thread_mark(140, false)?;
        b.region(150, false, 3)
    });
    assert_eq!(
        got,
        vec![
            Event::Region {
                ts: 100,
                thread: 7,
                enter: true,
                id: 3
            },
            Event::ThreadMark {
                ts: 110,
                thread: 7,
                realtime: true
            },
            Event::Assert {
                ts: 120,
                thread: 7,
                kind: AssertKind::NoLeaksSince,
                mark: 99,
                limit: 0,
                label: 4,
                stack: 12
            },
            Event::Assert {
                ts: 130,
                thread: 7,
                kind: AssertKind::MaxLive,
                mark: 0,
                limit: 24 << 20,
                label: 5,
                stack: 13
            },
            Event::ThreadMark {
                ts: 140,
                thread: 7,
                realtime: false
            },
            Event::Region {
                ts: 150,
                thread: 7,
                enter: false,
                id: 3
            },
        ]
    );
}

#[test]
fn region_names_assert_labels_realtime_threads() {
    let got = metas(|b| {
        b.region_name(3, b"parse")?;
        b.assert_label(4, b"tests::leaks")?;
        b.realtime_thread(2)
    });
    assert_eq!(
        got,
        vec![
            MetaRecord::RegionName {
                id: 3,
                name: "parse".into()
            },
            MetaRecord::AssertLabel {
                id: 4,
                label: "tests::leaks".into()
            },
            MetaRecord::RealtimeThread { index: 2 },
        ]
    );
}

#[test]
fn python_code_objects() {
    let got = metas(|b| {
        b.py_code(
            7,
            12,
            b"Cache.get",
            b"/srv/app/cache.py",
            &[0x80, 0x00, 0xd8],
        )?;
        b.stack(
            3,
            &[(1, 0x1234), (PYTHON_MODULE, (7u64 << 32) | 40), (1, 0x99)],
        )
    });
    assert_eq!(
        got[0],
        MetaRecord::PyCode(PyCode {
            id: 7,
            first_line: 12,
            qualname: "Cache.get".into(),
            filename: "/srv/app/cache.py".into(),
            linetable: vec![0x80, 0x00, 0xd8],
        })
    );
    let MetaRecord::Stack { frames, .. } = &got[1] else {
        panic!("{:?}", got[1])
    };
    assert_eq!(frames[0].python(), None);
    assert_eq!(frames[1].python(), Some((7, 40)));
}

#[test]
fn a_recent_address_is_coded_by_its_distance() {
    let (a, b, c) = (0x7f00_0000_1000u64, 0x7f00_0000_2040, 0x7f00_0000_3008);
    let mut buf = [0u8; 1024];
    let mut ch = ChunkBuilder::new(&mut buf[..]);
    ch.alloc(1, AllocFunc::Malloc, a, 16, 1).unwrap();
    ch.alloc(2, AllocFunc::Malloc, b, 16, 1).unwrap();
    let before = ch.len();
    ch.free(3, AllocFunc::Free, a, 0).unwrap(); // distance 1 among the allocations
                                                // One byte of address (the distance), with the tag and time.
    assert_eq!(ch.len() - before, 3);
    ch.free(4, AllocFunc::Free, b, 0).unwrap();
    let before = ch.len();
    ch.alloc(5, AllocFunc::Malloc, a, 16, 1).unwrap(); // distance 1
                                                       // One byte of address (the distance), with the tag, time, size and stack.
    assert_eq!(ch.len() - before, 5);
    ch.alloc(6, AllocFunc::Malloc, b, 16, 1).unwrap(); // distance 0
                                                       // In place: the old block is released, then taken back at distance 0.
    ch.realloc(7, AllocFunc::Realloc, b, b, 32, 2).unwrap();
    ch.realloc(8, AllocFunc::Realloc, 0, c, 8, 2).unwrap(); // an allocation
    ch.realloc(9, AllocFunc::Realloc, c, 0, 0, 2).unwrap(); // realloc(p, 0) freed p
    ch.heap_error(
        10,
        AllocFunc::Free,
        HeapErrorKind::NotABlock,
        c,
        AllocFunc::Free,
        3,
    )
    .unwrap();
    ch.alloc(11, AllocFunc::Malloc, c, 8, 1).unwrap(); // c was released by the realloc
    let got = decode_chunk(&ch, 0);
    let addrs: Vec<(u64, u64)> = got
        .iter()
        .map(|e| match *e {
            Event::Alloc { addr, .. } => (0, addr),
            Event::Free { addr, .. } | Event::HeapError { addr, .. } => (addr, 0),
            Event::Realloc { old, new, .. } => (old, new),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        addrs,
        vec![
            (0, a),
            (0, b),
            (a, 0),
            (b, 0),
            (0, a),
            (0, b),
            (b, b),
            (0, c),
            (c, 0),
            (c, 0),
            (0, c)
        ]
    );
}

#[test]
fn events_round_trip_until_the_chunk_is_full() {
    // A pseudo-random mix of every event kind, addresses reused as glibc reuses them,
    // written until a column is full: all decode back, in order.
    let mut buf = vec![0u8; 16384];
    let mut ch = ChunkBuilder::new(&mut buf[..]);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<u64> = Vec::new();
    let mut written = Vec::new();
    let mut ts = 0;
    loop {
        ts += rnd() % 5000;
        let r = rnd();
        let addr = 0x5500_0000_0000 + (r >> 20) % 4096 * 16 + if r % 7 == 0 { r % 16 } else { 0 };
        let e = match r % 9 {
            0..=2 => Event::Alloc {
                ts,
                thread: 3,
                func: AllocFunc::Malloc,
                addr,
                size: r % 300,
                stack: (r % 50) as u32,
            },
            3..=5 if !live.is_empty() => {
                let a = live.swap_remove((r as usize / 9) % live.len());
                Event::Free {
                    ts,
                    thread: 3,
                    func: AllocFunc::Delete,
                    addr: a,
                    stack: if r % 2 == 0 { 0 } else { 9 },
                }
            }
            6 if !live.is_empty() => {
                let old = live[(r as usize / 9) % live.len()];
                Event::Realloc {
                    ts,
                    thread: 3,
                    func: AllocFunc::Realloc,
                    old: if r % 4 == 0 { 0 } else { old },
                    new: if r % 5 == 0 { 0 } else { addr },
                    size: r % 1000,
                    stack: 2,
                }
            }
            7 => Event::Rss {
                ts,
                bytes: r % (1 << 40),
            },
            _ => Event::HeapError {
                ts,
                thread: 3,
                func: AllocFunc::Free,
                kind: HeapErrorKind::NotABlock,
                addr,
                alloc_func: AllocFunc::Free,
                stack: 4,
            },
        };
        let res = ch.event(&e);
        if res.is_err() {
            break;
        }
        match e {
            Event::Alloc { addr, .. } => live.push(addr),
            Event::Realloc { new, .. } if new != 0 => live.push(new),
            _ => {}
        }
        written.push(e);
    }
    assert!(written.len() > 800, "{} records", written.len());
    assert_eq!(decode_chunk(&ch, 3), written);
    // A Meta record cannot join an Events chunk.
    assert!(ch.thread(1, 2, 3, b"x").is_err());
}

/// Snapshot files written before holders carried their source (tag 44) still read, with
/// an empty source.
#[test]
fn holder_without_source_still_reads() {
    let mut raw = vec![tag::SCAN_HOLDER];
    for v in [3u64, RootKind::ModuleData as u64, 0, 4096, 3] {
        crate::varint::put_u64(&mut raw, v);
    }
    for s in [&b"g_cache"[..], b"/usr/bin/server"] {
        crate::varint::put_u64(&mut raw, s.len() as u64);
        raw.extend_from_slice(s);
    }
    let mut c = crate::varint::Cursor::new(&raw);
    let got = ScanDecoder::new(FORMAT_VERSION).decode_scan(&mut c);
    assert_eq!(
        got,
        Some(ScanRecord::Holder {
            id: 3,
            kind: RootKind::ModuleData,
            tid: 0,
            bytes: 4096,
            blocks: 3,
            name: "g_cache".into(),
            module: "/usr/bin/server".into(),
            source: String::new(),
        })
    );
    assert!(c.is_empty());
}

/// Format 6: a chunk whose time unit is 2^10 ns rounds each timestamp down to a multiple
/// of it (a clock that went back is held, as always), and its chunk bounds are the
/// rounded times; an exact chunk (shift 0) keeps nanoseconds.
#[test]
fn time_in_units_of_the_chunks_shift() {
    let ts = [5_000u64, 5_100, 6_200, 6_100, 1_000_000_123];
    for (shift, want) in [
        (10u8, vec![4096u64, 4096, 6144, 6144, 1_000_000_123 & !1023]),
        (0, vec![5_000, 5_100, 6_200, 6_200, 1_000_000_123]),
    ] {
        let mut buf = [0u8; 1024];
        let mut b = ChunkBuilder::new(&mut buf[..]).with_time_shift(shift);
        for (i, &t) in ts.iter().enumerate() {
            b.alloc(t, AllocFunc::Malloc, 0x1000 + 16 * i as u64, 8, 1)
                .unwrap();
        }
        let got: Vec<u64> = decode_chunk(&b, 7).iter().map(|e| e.ts()).collect();
        assert_eq!(got, want, "shift {shift}");
        assert_eq!((b.first_ts(), b.last_ts()), (want[0], want[4]));
    }
    // A unit larger than the format allows is damage.
    let mut buf = [0u8; 1024];
    let mut b = ChunkBuilder::new(&mut buf[..]);
    b.alloc(1, AllocFunc::Malloc, 0x1000, 8, 1).unwrap();
    let mut scratch = Vec::new();
    let mut raw = b.payload(&mut scratch).to_vec();
    raw[0] = crate::MAX_TIME_SHIFT + 1;
    assert!(decode_events(&raw, FORMAT_VERSION, 7, 1, &mut Vec::new(), &mut Vec::new()).is_none());
}

#[test]
fn a_release_names_its_block_by_number() {
    let mut buf = [0u8; 4096];
    let mut ch = ChunkBuilder::new(&mut buf[..]);
    // 40 blocks numbered 100..140 (one Serial record, before the first), then freed in
    // an order unrelated to their addresses; one freed by address (never numbered).
    for i in 0..40u64 {
        ch.alloc_numbered(i, AllocFunc::Malloc, 0x10_0000 + i * 0x1230, 24, 1, 100 + i)
            .unwrap();
    }
    let order: Vec<u64> = (0..40u64).map(|i| (i * 17) % 40).collect();
    let before = ch.len();
    for (k, &i) in order.iter().enumerate() {
        let serial = if i == 5 { 0 } else { 100 + i };
        ch.free_numbered(
            50 + k as u64,
            AllocFunc::Free,
            0x10_0000 + i * 0x1230,
            0,
            serial,
        )
        .unwrap();
    }
    // Tag, time and one byte of number for each (the address would take two or three).
    assert!(ch.len() - before <= 40 * 3 + 3, "{}", ch.len() - before);
    // A realloc of a numbered block to a new one (numbered), and a Serial record for a
    // number out of sequence.
    ch.alloc_numbered(100, AllocFunc::Malloc, 0x20_0000, 8, 1, 7)
        .unwrap();
    ch.realloc_numbered(101, AllocFunc::Realloc, 0x20_0000, 0x30_0000, 64, 2, [7, 8])
        .unwrap();
    ch.alloc(102, AllocFunc::Malloc, 0x40_0000, 8, 1).unwrap(); // not numbered
    ch.alloc_numbered(103, AllocFunc::Malloc, 0x50_0000, 8, 1, 9)
        .unwrap();
    ch.free_numbered(104, AllocFunc::Free, 0x50_0000, 0, 9)
        .unwrap(); // in the ring
    let got = decode_numbered(&ch);
    for (i, (e, n)) in got[..40].iter().enumerate() {
        assert!(matches!(e, Event::Alloc { addr, .. } if *addr == 0x10_0000 + i as u64 * 0x1230));
        assert_eq!(n.allocated, 100 + i as u64);
    }
    for (k, &i) in order.iter().enumerate() {
        let (e, n) = got[40 + k];
        if i == 5 {
            assert!(
                matches!(
                    e,
                    Event::Free {
                        addr: 0x10_5af0,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert_eq!(n.released, 0);
        } else if i >= 24 {
            // Among the last 16 allocations: by its distance there, address and number.
            assert!(matches!(e, Event::Free { addr, .. } if addr == 0x10_0000 + i * 0x1230));
            assert_eq!(n.released, 100 + i);
        } else {
            // By number: the address is the event stream's to find.
            assert!(matches!(e, Event::Free { addr: 0, .. }), "{e:?}");
            assert_eq!(n.released, 100 + i);
        }
    }
    let tail: Vec<_> = got[80..].iter().map(|&(e, n)| (e.ts(), n)).collect();
    let num = |allocated, released| Numbers {
        allocated,
        released,
        reused: 0,
    };
    assert_eq!(
        tail,
        vec![
            (100, num(7, 0)),
            (101, num(8, 7)),
            (102, num(0, 0)),
            (103, num(9, 0)),
            (104, num(0, 9)),
        ]
    );
    assert!(matches!(
        got[81].0,
        Event::Realloc {
            old: 0x20_0000,
            new: 0x30_0000,
            ..
        }
    ));
    assert!(matches!(
        got[84].0,
        Event::Free {
            addr: 0x50_0000,
            ..
        }
    ));
}

/// `room_for_events` promises only what fits: writing that many of the longest
/// allocation records (a full-size address far from the last, a large size and stack) always
/// succeeds, until it says none is left; and then the next write is refused. A chunk
/// of Meta records has room for none.
#[test]
fn room_for_events_is_a_promise() {
    let mut buf = [0u8; 4096];
    let mut b = ChunkBuilder::new(&mut buf[..]);
    let mut written = 0u64;
    loop {
        let room = b.room_for_events();
        if room == 0 {
            break;
        }
        for _ in 0..room {
            let addr = 0x7f00_0000_0000 ^ (written.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16);
            b.alloc(
                written * 1_000_003,
                AllocFunc::Malloc,
                addr & !15,
                u64::MAX >> 1,
                u32::MAX,
            )
            .unwrap();
            written += 1;
        }
    }
    assert!(written > 10, "{written}");
    let addr = 0x7f00_0000_0000 ^ 0xdead_bee0;
    assert!(b
        .alloc(
            written * 1_000_003,
            AllocFunc::Malloc,
            addr,
            u64::MAX >> 1,
            u32::MAX
        )
        .is_err());
    assert_eq!(decode_chunk(&b, 7).len() as u64, written);
    let mut buf = [0u8; 1024];
    let mut m = ChunkBuilder::new(&mut buf[..]);
    m.thread(0, 1, 42, b"main").unwrap();
    assert_eq!(m.room_for_events(), 0);
}
