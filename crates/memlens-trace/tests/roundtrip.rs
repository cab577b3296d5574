use memlens_trace::reader::{Event, Notice, RawFrame, TraceError, TraceReader};
use memlens_trace::writer::TraceWriter;
use memlens_trace::*;

fn header() -> Header {
    Header {
        pid: 42,
        ppid: 1,
        exe: "/bin/prog".into(),
        argv: vec!["prog".into(), "x".into()],
        page_size: 4096,
        rss_interval_ns: 10_000_000,
        max_depth: 64,
        writer: "test".into(),
        ..Default::default()
    }
}

fn sample_trace() -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    // Thread 0's chunk spans 10..40, thread 1's 20..30: the reader must interleave them.
    w.chunk(ChunkKind::Events, 0, |b| {
        b.alloc(10, AllocFunc::Malloc, 0x1000, 16, 1)?;
        b.free(40, AllocFunc::Free, 0x1000, 0)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 1, |b| {
        b.alloc(20, AllocFunc::New, 0x2000, 32, 2)?;
        b.realloc(30, AllocFunc::Realloc, 0x2000, 0x3000, 64, 2)
    })
    .unwrap();
    w.chunk(ChunkKind::Meta, 0, |b| {
        b.module_load(
            0,
            1,
            b"/bin/prog",
            &[0xab, 0xcd],
            0x5555_0000,
            &[(0, 0x2000, 5)],
        )?;
        b.stack(1, &[(1, 0x1234), (0, 0x7fff_0000)])?;
        b.stack(2, &[(1, 0x1300)])?;
        b.notice(0, NoticeKind::OwnAllocator, b"/bin/prog", b"malloc,free")?;
        b.thread(0, 0, 42, b"main")
    })
    .unwrap();
    w.chunk(ChunkKind::End, 0, |b| {
        b.end(
            50,
            ExitKind::Exit,
            3,
            &EndCounters {
                untracked_frees: 2,
                ..Default::default()
            },
        )
    })
    .unwrap();
    w.finish().unwrap()
}

/// The events of a trace in format `version` holding one Events chunk of thread
/// `thread` whose payload, built by hand, is `raw`.
fn read_one_events_chunk(version: u32, thread: u32, times: (u64, u64), raw: &[u8]) -> Vec<Event> {
    let mut file = Vec::new();
    header().encode(&mut file);
    file[8..12].copy_from_slice(&version.to_le_bytes());
    let mut out = vec![0u8; max_encoded_chunk_len(raw.len())];
    let n = encode_chunk(ChunkKind::Events, thread, times.0, times.1, raw, &mut out).unwrap();
    file.extend_from_slice(&out[..n]);
    let p = write_tmp(&format!("v{version}"), &file);
    let ev = TraceReader::open(&p)
        .unwrap()
        .events()
        .map(|e| e.unwrap())
        .collect();
    std::fs::remove_file(p).ok();
    ev
}

fn write_tmp(name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!(
        "memlens-trace-test-{}-{}",
        std::process::id(),
        name
    ));
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn events_merge_by_time_and_metadata_resolves() {
    let p = write_tmp("ok", &sample_trace());
    let r = TraceReader::open(&p).unwrap();
    assert_eq!(r.header(), &header());
    assert!(r.truncation().is_none());
    let md = r.metadata().unwrap();
    assert_eq!(
        md.stacks[&1],
        vec![
            RawFrame {
                module: 1,
                offset: 0x1234
            },
            RawFrame {
                module: 0,
                offset: 0x7fff_0000
            }
        ]
    );
    assert_eq!(md.modules[&1].build_id_hex(), "abcd");
    assert_eq!(md.threads[&0].tid, 42);
    assert_eq!(
        md.notices,
        vec![Notice {
            ts: 0,
            kind: NoticeKind::OwnAllocator,
            module: "/bin/prog".into(),
            symbols: "malloc,free".into(),
        }]
    );
    let end = md.end.unwrap();
    assert_eq!(
        (end.kind, end.code, end.counters.untracked_frees),
        (ExitKind::Exit, 3, 2)
    );
    let ev: Vec<Event> = r.events().map(|e| e.unwrap()).collect();
    let ts: Vec<u64> = ev.iter().map(|e| e.ts()).collect();
    assert_eq!(ts, vec![10, 20, 30, 40]);
    assert_eq!(
        ev[2],
        Event::Realloc {
            ts: 30,
            thread: 1,
            func: AllocFunc::Realloc,
            old: 0x2000,
            new: 0x3000,
            size: 64,
            stack: 2
        }
    );
    std::fs::remove_file(p).ok();
}

#[test]
fn truncated_trace_reads_up_to_last_complete_chunk() {
    let full = sample_trace();
    let full_reader_chunks = {
        let p = write_tmp("full", &full);
        let n = TraceReader::open(&p).unwrap().events().count();
        std::fs::remove_file(p).ok();
        n
    };
    assert_eq!(full_reader_chunks, 4);
    // Every cut point must open (or fail with a clear error), never panic.
    for cut in 0..full.len() {
        let p = write_tmp("cut", &full[..cut]);
        match TraceReader::open(&p) {
            Ok(r) => {
                assert!(
                    r.truncation().is_some(),
                    "cut at {cut} not reported as truncated"
                );
                let n = r.events().filter(|e| e.is_ok()).count();
                assert!(n <= 4);
                r.metadata().unwrap();
            }
            Err(e) => assert!(
                matches!(
                    e,
                    TraceError::NotATrace { .. } | TraceError::BadHeader { .. }
                ),
                "{e}"
            ),
        }
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn corruption_is_reported_not_panicked() {
    let full = sample_trace();
    let mut seen_corrupt = 0;
    for i in 0..full.len() {
        let mut bad = full.clone();
        bad[i] ^= 0x5a;
        let p = write_tmp("flip", &bad);
        if let Ok(r) = TraceReader::open(&p) {
            let ev_err = r.events().any(|e| e.is_err());
            let md_err = r.metadata().is_err();
            if ev_err || md_err {
                seen_corrupt += 1;
            }
        }
        std::fs::remove_file(p).ok();
    }
    assert!(seen_corrupt > 0);
}

#[test]
fn other_version_and_garbage_say_so() {
    let mut t = sample_trace();
    t[8] = FORMAT_VERSION as u8 + 1;
    let p = write_tmp("ver", &t);
    let e = TraceReader::open(&p).err().unwrap();
    let v = format!("format version {}", FORMAT_VERSION + 1);
    assert!(e.to_string().contains(&v), "{e}");
    std::fs::write(&p, b"hello world, not a trace at all").unwrap();
    let e = TraceReader::open(&p).err().unwrap();
    assert!(e.to_string().contains("is not a memlens trace"), "{e}");
    std::fs::remove_file(p).ok();
}

#[test]
fn incompressible_full_chunk_encodes() {
    // Random bytes do not compress: the chunk bound must still hold them.
    let mut x: u64 = 0x1234_5678;
    let raw: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut out = vec![0u8; max_encoded_chunk_len(raw.len())];
    let n = encode_chunk(ChunkKind::Meta, 0, 0, 0, &raw, &mut out).expect("bound too small");
    assert!(n > raw.len());
}

/// Chunks that all overlap in time are decoded together: the stream holds at most its
/// limit of decoded events and says so past it, instead of growing without bound.
#[test]
fn overlapping_chunks_are_bounded() {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    for thread in 0..64u32 {
        w.chunk(ChunkKind::Events, thread, |b| {
            for i in 0..1000u64 {
                b.alloc(10 + i, AllocFunc::Malloc, 0x1000 + 16 * i, 16, 1)?;
            }
            Ok(())
        })
        .unwrap();
    }
    let p = write_tmp("overlap", &w.finish().unwrap());
    let r = TraceReader::open(&p).unwrap();
    assert_eq!(r.events().filter(|e| e.is_ok()).count(), 64_000);
    let e = r
        .events()
        .with_decoded_limit(256 * 1024)
        .find_map(|e| e.err())
        .expect("the limit is reached");
    assert!(e.to_string().contains("overlap in time"), "{e}");
    std::fs::remove_file(p).ok();
}

/// The start time is read from a trace's first 64 bytes alone (the recorder tells a file
/// left by an earlier run from one of this run by it); anything else is not a trace.
#[test]
fn start_time_from_the_first_bytes() {
    let h = Header {
        start_unix_ns: 1_765_000_000_123_456_789,
        ..header()
    };
    let mut bytes = Vec::new();
    h.encode(&mut bytes);
    assert_eq!(
        header_start_unix_ns(&bytes[..64.min(bytes.len())]),
        Some(1_765_000_000_123_456_789)
    );
    assert_eq!(header_start_unix_ns(b"not a trace\n"), None);
    assert_eq!(header_start_unix_ns(&bytes[..12]), None);
    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(header_start_unix_ns(&future), None);
}

/// The arguments left out of a long command line travel in two varints appended to the
/// header payload; a payload without them (traces written before) reads as a whole argv.
#[test]
fn argv_omitted_roundtrips_and_older_headers_read_as_whole() {
    let h = Header {
        argv_omitted: 3,
        argv_omitted_bytes: 3003,
        ..header()
    };
    let mut bytes = Vec::new();
    h.encode(&mut bytes);
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let payload = &bytes[16..16 + len];
    assert_eq!(Header::decode_payload(payload), Some(h.clone()));
    // 3 is one varint byte, 3003 two, then the sampling interval 0, one byte: an older
    // writer stopped before them.
    let older = Header::decode_payload(&payload[..len - 4]).unwrap();
    assert_eq!((older.argv_omitted, older.argv_omitted_bytes), (0, 0));
    assert_eq!(older.argv, h.argv);
}

/// The sampling interval (`--sample`) is appended after `argv_omitted_bytes`; a payload
/// that ends before it (traces written before sampling) reads as 0, not sampled.
#[test]
fn sample_interval_roundtrips_and_older_headers_read_as_unsampled() {
    let h = Header {
        argv_omitted: 3,
        argv_omitted_bytes: 3003,
        sample_interval: 512 * 1024,
        ..header()
    };
    let mut bytes = Vec::new();
    h.encode(&mut bytes);
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let payload = &bytes[16..16 + len];
    assert_eq!(Header::decode_payload(payload), Some(h.clone()));
    // 524288 is a three-byte varint.
    let older = Header::decode_payload(&payload[..len - 3]).unwrap();
    assert_eq!(older.sample_interval, 0);
    assert_eq!((older.argv_omitted, older.argv_omitted_bytes), (3, 3003));
}

/// Every address coding case of format version 2 reads back exactly: aligned and not,
/// going up and down, the highest and lowest addresses, a heap error's wild pointer.
#[test]
fn version_2_addresses_roundtrip_exactly() {
    let addrs = [
        0x5555_0000_1000u64,
        0x5555_0000_0ff0,
        0x5555_0000_0ff7,
        0x7fff_ffff_fff0,
        0,
        1,
        u64::MAX,
        0xdead_beef,
        0x10,
    ];
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        for (i, &a) in addrs.iter().enumerate() {
            b.alloc(
                i as u64,
                AllocFunc::from_u8(i as u8).unwrap(),
                a,
                i as u64,
                7,
            )?;
            b.free(i as u64, AllocFunc::Free, a, i as u32 % 2)?;
        }
        Ok(())
    })
    .unwrap();
    let p = write_tmp("v2addr", &w.finish().unwrap());
    let r = TraceReader::open(&p).unwrap();
    let ev: Vec<Event> = r.events().map(|e| e.unwrap()).collect();
    let mut want = Vec::new();
    for (i, &a) in addrs.iter().enumerate() {
        want.push(Event::Alloc {
            ts: i as u64,
            thread: 0,
            func: AllocFunc::from_u8(i as u8).unwrap(),
            addr: a,
            size: i as u64,
            stack: 7,
        });
        want.push(Event::Free {
            ts: i as u64,
            thread: 0,
            func: AllocFunc::Free,
            addr: a,
            stack: i as u32 % 2,
        });
    }
    assert_eq!(ev, want);
    std::fs::remove_file(p).ok();
}

/// A trace in format version 1 (written by memlens before version 2: a function byte
/// after each event tag, addresses as plain zigzag deltas) still reads, event for event.
#[test]
fn version_1_traces_still_read() {
    let put = varint::put_u64;
    // Alloc malloc @0x1008 (16 B, stack 3) at ts 100, realloc to 0x2000 at 110, free by
    // free (stack 0) at 125, a heap error (not a block) at 0x1008 at 130.
    let mut raw = Vec::new();
    raw.extend_from_slice(&[tag::ALLOC, AllocFunc::Malloc as u8]);
    put(&mut raw, 0);
    put(&mut raw, varint::zigzag(0x1008));
    put(&mut raw, 16);
    put(&mut raw, 3);
    raw.extend_from_slice(&[tag::REALLOC, AllocFunc::Realloc as u8]);
    put(&mut raw, 10);
    put(&mut raw, varint::zigzag(0));
    put(&mut raw, varint::zigzag(0x2000 - 0x1008));
    put(&mut raw, 32);
    put(&mut raw, 3);
    raw.extend_from_slice(&[tag::FREE, AllocFunc::Free as u8]);
    put(&mut raw, 15);
    put(&mut raw, varint::zigzag(0));
    put(&mut raw, 0);
    raw.extend_from_slice(&[tag::HEAP_ERROR, AllocFunc::Free as u8]);
    put(&mut raw, 5);
    raw.extend_from_slice(&[HeapErrorKind::NotABlock as u8, AllocFunc::Free as u8]);
    put(&mut raw, varint::zigzag(0x1008 - 0x2000));
    put(&mut raw, 4);
    let ev = read_one_events_chunk(1, 0, (100, 130), &raw);
    assert_eq!(
        ev,
        vec![
            Event::Alloc {
                ts: 100,
                thread: 0,
                func: AllocFunc::Malloc,
                addr: 0x1008,
                size: 16,
                stack: 3
            },
            Event::Realloc {
                ts: 110,
                thread: 0,
                func: AllocFunc::Realloc,
                old: 0x1008,
                new: 0x2000,
                size: 32,
                stack: 3
            },
            Event::Free {
                ts: 125,
                thread: 0,
                func: AllocFunc::Free,
                addr: 0x2000,
                stack: 0
            },
            Event::HeapError {
                ts: 130,
                thread: 0,
                func: AllocFunc::Free,
                kind: HeapErrorKind::NotABlock,
                addr: 0x1008,
                alloc_func: AllocFunc::Free,
                stack: 4
            },
        ]
    );
}

/// A chunk stored as a zstd frame (what the recorder's writer thread writes) reads back;
/// one whose frame is damaged past its checksum is an error, not a panic.
#[test]
fn zstd_chunks_read_back() {
    let mut raw = vec![0u8; 4096];
    let mut b = ChunkBuilder::new(&mut raw[..]);
    for i in 0..100u64 {
        b.alloc(i, AllocFunc::Malloc, 0x10_0000 + 32 * i, 24, 1)
            .unwrap();
    }
    let (payload, times) = (
        b.payload(&mut Vec::new()).to_vec(),
        (b.first_ts(), b.last_ts()),
    );
    let mut file = Vec::new();
    header().encode(&mut file);
    let mut out = vec![0u8; CHUNK_HEADER_LEN + zstd_safe::compress_bound(payload.len())];
    let n = zstd_safe::compress(&mut out[CHUNK_HEADER_LEN..], &payload, 1).unwrap();
    let len = frame_chunk(
        ChunkKind::Events,
        0,
        times,
        payload.len(),
        chunk_flags::ZSTD,
        n,
        &mut out,
    );
    file.extend_from_slice(&out[..len]);
    let p = write_tmp("zstd", &file);
    let r = TraceReader::open(&p).unwrap();
    let ev: Vec<Event> = r.events().map(|e| e.unwrap()).collect();
    assert_eq!(ev.len(), 100);
    assert_eq!(
        ev[99],
        Event::Alloc {
            ts: 99,
            thread: 0,
            func: AllocFunc::Malloc,
            addr: 0x10_0000 + 32 * 99,
            size: 24,
            stack: 1
        }
    );
    // Garbage in the frame, with a checksum that matches it.
    let body = file.len() - n;
    for byte in &mut file[body + 4..body + 12] {
        *byte ^= 0x5a;
    }
    refresh_checksums(&mut file);
    std::fs::write(&p, &file).unwrap();
    let r = TraceReader::open(&p).unwrap();
    let err = r
        .events()
        .find_map(|e| e.err())
        .expect("a damaged frame is an error");
    assert!(err.to_string().contains("does not decompress"), "{err}");
    std::fs::remove_file(p).ok();
}

/// A trace `memlens attach` recorded appends its start (flags, live heap) to the header;
/// every other header ends before, and reads as not attached. The End kind Detach reads
/// back.
#[test]
fn attach_start_roundtrips_and_other_headers_are_not_attached() {
    let h = Header {
        attach: Some(AttachStart {
            live_heap_bytes: 314_159,
        }),
        ..header()
    };
    let mut bytes = Vec::new();
    h.encode(&mut bytes);
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let payload = &bytes[16..16 + len];
    assert_eq!(Header::decode_payload(payload), Some(h.clone()));
    // flags (1 byte) and 314159 (3 bytes) come last: without them, not attached.
    let plain = Header::decode_payload(&payload[..len - 4]).unwrap();
    assert_eq!(plain.attach, None);
    assert_eq!(plain, Header { attach: None, ..h });
    let mut unattached = Vec::new();
    plain.encode(&mut unattached);
    assert_eq!(unattached.len(), bytes.len() - 4);
    assert_eq!(ExitKind::from_u8(5), Some(ExitKind::Snapshot));
    assert_eq!(ExitKind::from_u8(6), Some(ExitKind::Detach));
    assert_eq!(ExitKind::from_u8(7), None);
}

/// A trace in format version 4 (one stream per Events chunk, every address coded against
/// the previous one of any kind, a Realloc without its presence byte) still reads, event
/// for event, after version 5 laid events out in columns.
#[test]
fn version_4_traces_still_read() {
    let put = varint::put_u64;
    // Alloc new @0x1010 (24 B, stack 3) at ts 100; free by delete (no stack) at 105;
    // Alloc malloc @0x1010 again at 107; realloc of it to 0x2008 (unaligned) at 110;
    // realloc(NULL, 8) = 0x3000 at 111; free of 0x2008 with stack 9 at 125.
    let mut raw = Vec::new();
    let mut last = 0u64;
    let mut addr = |raw: &mut Vec<u8>, a: u64| {
        put(raw, varint::addr_delta(last, a));
        if a & 15 != 0 {
            raw.push((a & 15) as u8);
        }
        last = a;
    };
    raw.push(tag::ALLOC_FUNC | AllocFunc::New as u8);
    put(&mut raw, 0);
    addr(&mut raw, 0x1010);
    put(&mut raw, 24);
    put(&mut raw, 3);
    raw.push(tag::FREE_FUNC | AllocFunc::Delete as u8);
    put(&mut raw, 5);
    addr(&mut raw, 0x1010);
    raw.push(tag::ALLOC_FUNC | AllocFunc::Malloc as u8);
    put(&mut raw, 2);
    addr(&mut raw, 0x1010);
    put(&mut raw, 24);
    put(&mut raw, 3);
    raw.push(tag::REALLOC_FUNC | AllocFunc::Realloc as u8);
    put(&mut raw, 3);
    addr(&mut raw, 0x1010);
    addr(&mut raw, 0x2008);
    put(&mut raw, 40);
    put(&mut raw, 4);
    raw.push(tag::REALLOC_FUNC | AllocFunc::Realloc as u8);
    put(&mut raw, 1);
    addr(&mut raw, 0);
    addr(&mut raw, 0x3000);
    put(&mut raw, 8);
    put(&mut raw, 4);
    raw.push(tag::FREE_STACK_FUNC | AllocFunc::Free as u8);
    put(&mut raw, 14);
    addr(&mut raw, 0x2008);
    put(&mut raw, 9);
    let ev = read_one_events_chunk(4, 2, (100, 125), &raw);
    let (t, realloc) = (2, AllocFunc::Realloc);
    assert_eq!(
        ev,
        vec![
            Event::Alloc {
                ts: 100,
                thread: t,
                func: AllocFunc::New,
                addr: 0x1010,
                size: 24,
                stack: 3
            },
            Event::Free {
                ts: 105,
                thread: t,
                func: AllocFunc::Delete,
                addr: 0x1010,
                stack: 0
            },
            Event::Alloc {
                ts: 107,
                thread: t,
                func: AllocFunc::Malloc,
                addr: 0x1010,
                size: 24,
                stack: 3
            },
            Event::Realloc {
                ts: 110,
                thread: t,
                func: realloc,
                old: 0x1010,
                new: 0x2008,
                size: 40,
                stack: 4
            },
            Event::Realloc {
                ts: 111,
                thread: t,
                func: realloc,
                old: 0,
                new: 0x3000,
                size: 8,
                stack: 4
            },
            Event::Free {
                ts: 125,
                thread: t,
                func: AllocFunc::Free,
                addr: 0x2008,
                stack: 9
            },
        ]
    );
}

/// A trace the format 5 recorder wrote (the fuzzer's seed `v5-sites.trace`, after its
/// one selector byte: `tests/programs/sites.c`) still reads whole after version 6 gave
/// Events chunks a time unit: the figures `memlens report` of format 5 gave for it (25
/// allocations, 19 frees, 6,099 bytes).
#[test]
fn version_5_traces_still_read() {
    let seed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/trace_reader/v5-sites.trace"),
    )
    .unwrap();
    let trace = &seed[1..];
    assert_eq!(u32::from_le_bytes(trace[8..12].try_into().unwrap()), 5);
    let p = std::env::temp_dir().join(format!("memlens-v5-{}.trace", std::process::id()));
    std::fs::write(&p, trace).unwrap();
    let r = TraceReader::open(&p).unwrap();
    let (mut allocs, mut frees, mut bytes) = (0u64, 0u64, 0u64);
    for e in r.events() {
        match e.unwrap() {
            Event::Alloc { size, .. } => {
                allocs += 1;
                bytes += size;
            }
            Event::Realloc { old, new, size, .. } => {
                if new != 0 {
                    allocs += 1;
                    bytes += size;
                }
                if old != 0 && new != 0 {
                    frees += 1;
                }
            }
            Event::Free { .. } => frees += 1,
            _ => {}
        }
    }
    std::fs::remove_file(&p).ok();
    assert_eq!((allocs, frees, bytes), (25, 19, 6099));
}

/// Format 7: a release that names its block by number reads back with the block's
/// address, whichever thread allocated it; a number no allocation took reads back as a
/// release of nothing (address 0).
#[test]
fn releases_by_number_read_back_with_their_addresses() {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    // Thread 0 allocates 100 blocks (numbers 1000..1100); thread 1 frees them in an
    // order unrelated to their addresses, all after time 200.
    let addr = |i: u64| 0x7f00_0000_0000 + ((i * 7919) % 100) * 0x4560;
    w.chunk(ChunkKind::Events, 0, |b| {
        for i in 0..100u64 {
            b.alloc_numbered(i, AllocFunc::Malloc, addr(i), 16 + i, 1, 1000 + i)?;
        }
        Ok(())
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 1, |b| {
        for k in 0..100u64 {
            let i = (k * 37) % 100;
            b.free_numbered(200 + k, AllocFunc::Free, addr(i), 0, 1000 + i)?;
        }
        // Its own realloc of a block it did not allocate, by number, and a release
        // naming a number nobody took.
        b.realloc_numbered(400, AllocFunc::Realloc, 0x5000, 0x6000, 8, 0, [1, 2])?;
        b.free_numbered(401, AllocFunc::Free, 0x9999_0000, 0, 77_777)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 2, |b| {
        b.alloc_numbered(300, AllocFunc::Malloc, 0x5000, 8, 1, 1)
    })
    .unwrap();
    let bytes = w.finish().unwrap();
    let dir = std::env::temp_dir().join(format!("memlens-numbered-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.trace");
    std::fs::write(&path, &bytes).unwrap();
    let r = TraceReader::open(&path).unwrap();
    let events: Vec<Event> = r.events().map(|e| e.unwrap()).collect();
    let frees: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match *e {
            Event::Free { ts, addr, .. } => Some((ts, addr)),
            _ => None,
        })
        .collect();
    let mut want: Vec<(u64, u64)> = (0..100u64)
        .map(|k| (200 + k, addr((k * 37) % 100)))
        .collect();
    want.push((401, 0));
    assert_eq!(frees, want);
    assert!(events.iter().any(|e| matches!(
        *e,
        Event::Realloc {
            ts: 400,
            old: 0x5000,
            new: 0x6000,
            ..
        }
    )));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Format 7: an allocation at the address a release by number freed (in the same chunk:
/// glibc hands a freed block to the next request of its size) reads back with that
/// address, and so do the releases and allocations after it, in place reallocs too.
#[test]
fn an_address_freed_by_number_and_allocated_again_reads_back() {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    let mut want = Vec::new();
    w.chunk(ChunkKind::Events, 0, |b| {
        // 40 blocks, freed out of order (by number), each freed address allocated again
        // at once (from the ring of releases), then an in-place realloc of it, a release
        // of the new block (found among the allocations) and an allocation after.
        let addr = |i: u64| 0x5500_0000_0000 + ((i * 13) % 40) * 0x1230;
        let mut serial = 1u64;
        for i in 0..40u64 {
            b.alloc_numbered(i, AllocFunc::Malloc, addr(i), 32, 1, serial + i)?;
        }
        serial += 40;
        let mut ts = 100;
        for k in 0..40u64 {
            let i = (k * 7) % 40;
            b.free_numbered(ts, AllocFunc::Free, addr(i), 0, 1 + i)?;
            b.alloc_numbered(ts + 1, AllocFunc::Malloc, addr(i), 32, 1, serial)?;
            b.realloc_numbered(
                ts + 2,
                AllocFunc::Realloc,
                addr(i),
                addr(i),
                48,
                1,
                [serial, serial + 1],
            )?;
            b.free_numbered(ts + 3, AllocFunc::Free, addr(i), 0, serial + 1)?;
            b.alloc_numbered(
                ts + 4,
                AllocFunc::Malloc,
                0x6600_0000_0000 + k * 64,
                8,
                1,
                serial + 2,
            )?;
            want.extend([
                addr(i),
                addr(i),
                addr(i),
                addr(i),
                0x6600_0000_0000 + k * 64,
            ]);
            serial += 3;
            ts += 5;
        }
        Ok(())
    })
    .unwrap();
    let bytes = w.finish().unwrap();
    let p = write_tmp("reused", &bytes);
    let r = TraceReader::open(&p).unwrap();
    let got: Vec<u64> = r
        .events()
        .map(|e| e.unwrap())
        .filter(|e| e.ts() >= 100)
        .map(|e| match e {
            Event::Alloc { addr, .. } | Event::Free { addr, .. } => addr,
            Event::Realloc { old, new, .. } => {
                assert_eq!(old, new, "in place");
                new
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, want);
    std::fs::remove_file(p).ok();
}
