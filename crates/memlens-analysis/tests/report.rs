//! Reports of synthetic traces, with numbers worked out by hand.

use memlens_analysis::{Report, ReportOptions, Site, SiteStats};
use memlens_trace::reader::TraceReader;
use memlens_trace::writer::TraceWriter;
use memlens_trace::*;
use std::path::PathBuf;

const MS: u64 = 1_000_000;
const MIB: u64 = 1 << 20;

fn header() -> Header {
    Header {
        pid: 4242,
        ppid: 1,
        exe: "/usr/bin/demo".into(),
        argv: vec!["demo".into(), "--fast".into()],
        page_size: 4096,
        rss_interval_ns: 10 * MS,
        max_depth: 64,
        writer: "test".into(),
        ..Default::default()
    }
}

/// Two threads whose event chunks overlap in time, reallocs of every kind, a free of an
/// address allocated before recording, RSS samples.
///
/// Heap, in time order (ms: event -> live bytes):
///  1 t0 malloc  0x1000 100 (s1)     100
///  2 t1 new     0x5000  50 (s4)     150
///  3 t1 free    0x9999 (unknown)    150
///  4 t0 malloc  0x2000 1000 (s2)   1150
///  5 t1 malloc  0x6000 500 (s2)    1650
///  6 t0 free    0x1000             1550
///  7 t1 realloc(0x6000, 0)         1050
///  8 t1 realloc(0x5000, 64) fails  1050
///  9 t0 realloc 0x2000->0x3000 2000 (s3)   2050  <- peak
/// 10 t0 free    0x3000               50
/// 11 t0 malloc  0x7000 300 (s1)     350
/// end at 12 ms, exit(3)
fn write_trace(name: &str, with_end: bool) -> (PathBuf, Vec<u8>) {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        b.alloc(MS, AllocFunc::Malloc, 0x1000, 100, 1)?;
        b.alloc(4 * MS, AllocFunc::Malloc, 0x2000, 1000, 2)?;
        b.free(6 * MS, AllocFunc::Free, 0x1000, 0)?;
        b.realloc(9 * MS, AllocFunc::Realloc, 0x2000, 0x3000, 2000, 3)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 1, |b| {
        b.alloc(2 * MS, AllocFunc::New, 0x5000, 50, 4)?;
        b.free(3 * MS, AllocFunc::Free, 0x9999, 0)?;
        b.alloc(5 * MS, AllocFunc::Malloc, 0x6000, 500, 2)?;
        b.realloc(7 * MS, AllocFunc::Realloc, 0x6000, 0, 0, 5)?;
        b.realloc(8 * MS, AllocFunc::Realloc, 0x5000, 0, 64, 6)
    })
    .unwrap();
    w.chunk(ChunkKind::Events, PROCESS_THREAD, |b| {
        b.rss(MS, MIB)?;
        b.rss(5 * MS, 3 * MIB)?;
        b.rss(10 * MS, 2 * MIB)
    })
    .unwrap();
    w.chunk(ChunkKind::Meta, 0, |b| {
        b.module_load(
            0,
            1,
            b"/usr/bin/demo",
            &[0xab, 0xcd],
            0x5555_0000,
            &[(0, 0x2000, 5)],
        )?;
        for s in 1..=6u32 {
            b.stack(s, &[(1, 0x1000 + s as u64 * 0x10), (1, 0x1800)])?;
        }
        b.thread(0, 0, 4242, b"demo")?;
        b.thread(0, 1, 4243, b"worker")
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        b.free(10 * MS, AllocFunc::Free, 0x3000, 0)?;
        b.alloc(11 * MS, AllocFunc::Malloc, 0x7000, 300, 1)
    })
    .unwrap();
    if with_end {
        w.chunk(ChunkKind::End, 0, |b| {
            b.end(12 * MS, ExitKind::Exit, 3, &EndCounters::default())
        })
        .unwrap();
    }
    let data = w.finish().unwrap();
    let p = std::env::temp_dir().join(format!(
        "memlens-analysis-{}-{name}.trace",
        std::process::id()
    ));
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

fn site(
    stack: u32,
    func: AllocFunc,
    allocations: u64,
    bytes_allocated: u64,
    live_bytes: u64,
    live_blocks: u64,
) -> Site {
    Site {
        stack,
        func,
        stats: SiteStats {
            allocations,
            bytes_allocated,
            live_bytes,
            live_blocks,
            temporary: 0,
        },
    }
}

fn temp(mut s: Site, temporary: u64) -> Site {
    s.stats.temporary = temporary;
    s
}

#[test]
fn totals_peak_and_sites_of_overlapping_threads() {
    let (p, _) = write_trace("full", true);
    let r = Report::build(&TraceReader::open(&p).unwrap(), &ReportOptions::default()).unwrap();
    let t = &r.totals;
    assert_eq!(
        (t.allocations, t.frees, t.reallocs, t.bytes_allocated),
        (6, 4, 3, 3950)
    );
    assert_eq!((t.peak_heap_bytes, t.peak_heap_ns), (2050, 9 * MS));
    assert_eq!(t.peak_rss_bytes, Some(3 * MIB));
    assert_eq!(t.runtime_ns, 12 * MS);
    assert_eq!((t.not_freed_bytes, t.not_freed_blocks), (350, 2));
    assert_eq!(
        (
            t.untracked_frees,
            t.failed_reallocs,
            t.reused_addresses,
            t.events
        ),
        (1, 1, 0, 14)
    );
    assert!(r.truncation.is_none());
    assert_eq!(r.end.unwrap().code, 3);

    // Temporary: 0x6000 (released by realloc(p, 0) right after its allocation on thread
    // 1) and 0x3000 (freed right after the realloc that made it, on thread 0).
    assert_eq!(t.temporary, 2);
    assert_eq!(
        (r.temporary.count, r.temporary.bytes, r.temporary.site_count),
        (2, 2500, 2)
    );
    assert_eq!(r.temporary.sites[0].site.stack, 3);
    assert_eq!(r.temporary.sites[1].site.stack, 2);

    // The heap at 9 ms: the new'd 50 bytes of thread 1 and the realloc'd 2000 bytes.
    assert_eq!(
        (
            r.peak.bytes,
            r.peak.blocks,
            r.peak.time_ns,
            r.peak.site_count
        ),
        (2050, 2, 9 * MS, 2)
    );
    assert_eq!(
        r.peak.sites,
        vec![
            temp(site(3, AllocFunc::Realloc, 1, 2000, 2000, 1), 1),
            site(4, AllocFunc::New, 1, 50, 50, 1)
        ]
    );

    assert_eq!(
        (
            r.not_freed.bytes,
            r.not_freed.blocks,
            r.not_freed.site_count
        ),
        (350, 2, 2)
    );
    assert_eq!(
        r.not_freed.sites,
        vec![
            site(1, AllocFunc::Malloc, 2, 400, 300, 1),
            site(4, AllocFunc::New, 1, 50, 50, 1)
        ]
    );

    assert_eq!(r.site_count, 4);
    let s2 = temp(site(2, AllocFunc::Malloc, 2, 1500, 0, 0), 1);
    let s1 = site(1, AllocFunc::Malloc, 2, 400, 300, 1);
    let s3 = temp(site(3, AllocFunc::Realloc, 1, 2000, 0, 0), 1);
    let s4 = site(4, AllocFunc::New, 1, 50, 50, 1);
    assert_eq!(r.by_allocations, vec![s2, s1, s3, s4]);
    assert_eq!(r.by_bytes, vec![s3, s2, s1, s4]);
    assert_eq!(r.stack(1).len(), 2);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    std::fs::remove_file(p).ok();
}

#[test]
fn top_limits_every_list_but_not_the_counts() {
    let (p, _) = write_trace("top", true);
    let r = Report::build(
        &TraceReader::open(&p).unwrap(),
        &ReportOptions {
            top: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.by_allocations.len(), 1);
    assert_eq!(r.by_bytes[0].stack, 3);
    assert_eq!((r.not_freed.sites.len(), r.not_freed.site_count), (1, 2));
    assert_eq!(
        (r.peak.sites.len(), r.peak.site_count, r.peak.bytes),
        (1, 2, 2050)
    );
    std::fs::remove_file(p).ok();
}

#[test]
fn trace_without_end_uses_last_event_time() {
    let (p, _) = write_trace("noend", false);
    let r = Report::build(&TraceReader::open(&p).unwrap(), &ReportOptions::default()).unwrap();
    assert!(r
        .truncation
        .as_ref()
        .unwrap()
        .reason
        .contains("no end record"));
    assert!(r.end.is_none());
    assert_eq!(r.totals.runtime_ns, 11 * MS);
    assert_eq!(r.totals.not_freed_bytes, 350);
    std::fs::remove_file(p).ok();
}

#[test]
fn truncated_last_chunk_keeps_what_was_complete() {
    // Cut inside the last events chunk (written before the end chunk): the events at
    // 10 and 11 ms are lost, so the 2000-byte block is never freed.
    let (p, full) = write_trace("cut", false);
    std::fs::write(&p, &full[..full.len() - 5]).unwrap();
    let r = Report::build(&TraceReader::open(&p).unwrap(), &ReportOptions::default()).unwrap();
    assert!(r.truncation.as_ref().unwrap().reason.contains("incomplete"));
    let t = &r.totals;
    assert_eq!((t.allocations, t.frees, t.bytes_allocated), (5, 3, 3650));
    // The last surviving event is the RSS sample at 10 ms.
    assert_eq!(
        (t.peak_heap_bytes, t.peak_heap_ns, t.runtime_ns),
        (2050, 9 * MS, 10 * MS)
    );
    assert_eq!((t.not_freed_bytes, t.not_freed_blocks), (2050, 2));
    assert_eq!(
        r.not_freed.sites,
        vec![
            site(3, AllocFunc::Realloc, 1, 2000, 2000, 1),
            site(4, AllocFunc::New, 1, 50, 50, 1)
        ]
    );
    std::fs::remove_file(p).ok();
}

#[test]
fn corrupt_chunk_is_one_sentence_error() {
    let (p, mut data) = write_trace("corrupt", true);
    // The first chunk starts right after the header; damage its payload.
    let hdr_len = {
        let mut h = Vec::new();
        header().encode(&mut h);
        h.len()
    };
    data[hdr_len + CHUNK_HEADER_LEN + 2] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let err =
        Report::build(&TraceReader::open(&p).unwrap(), &ReportOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("is damaged at byte") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    std::fs::remove_file(p).ok();
}

#[test]
fn progress_reports_every_chunk_of_pass_one() {
    let (p, _) = write_trace("progress", true);
    let reader = TraceReader::open(&p).unwrap();
    let mut seen = Vec::new();
    Report::build_with_progress(&reader, &ReportOptions::default(), &mut |pr| seen.push(pr))
        .unwrap();
    let pass1: Vec<u64> = seen
        .iter()
        .filter(|p| p.pass == 1)
        .map(|p| p.chunks_done)
        .collect();
    assert_eq!(pass1, vec![1, 2, 3, 4]);
    assert!(seen.iter().all(|p| p.chunks_total == 4));
    std::fs::remove_file(p).ok();
}

/// A pass's events, decoded on a thread of their own for a trace of several chunks, are
/// the trace's event stream item for item (its error included, for every cut of the
/// file), with the progress the stream shows event by event. Batches of 8,192 events
/// are crossed with a trace of 20,000.
#[test]
fn a_pass_sees_exactly_the_event_stream() {
    use memlens_analysis::site::ReportedEvents;
    let (p, small) = write_trace("stream", true);
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    for c in 0..5u64 {
        w.chunk(ChunkKind::Events, c as u32, |b| {
            for i in 0..4000u64 {
                let addr = 0x10_0000 * (c + 1) + 16 * i;
                b.alloc(MS + 10 * i + c, AllocFunc::Malloc, addr, 16 + i, 1)?;
            }
            Ok(())
        })
        .unwrap();
    }
    let big = w.finish().unwrap();
    for full in [small, big] {
        for cut in [full.len(), full.len() - 7, full.len() / 2, full.len() / 3] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let Ok(reader) = TraceReader::open(&p) else {
                continue;
            };
            let md = reader.metadata().unwrap_or_default();
            let expected: Vec<String> = reader.events().map(|e| format!("{e:?}")).collect();
            let (mut progress, mut counted) = (Vec::new(), Vec::new());
            let got: Vec<String> =
                ReportedEvents::new(&reader, &md, 1, &mut |p| progress.push(p.chunks_done))
                    .map(|e| format!("{e:?}"))
                    .collect();
            assert_eq!(got, expected, "cut at {cut} of {}", full.len());
            let mut stream = reader.events();
            let mut last = 0;
            while let Some(e) = stream.next() {
                if e.is_ok() && stream.chunks_done() != last {
                    last = stream.chunks_done();
                    counted.push(last as u64);
                }
            }
            assert_eq!(progress, counted, "cut at {cut}");
        }
    }
    std::fs::remove_file(p).ok();
}

#[test]
fn damaged_traces_never_panic() {
    let (p, full) = write_trace("fuzz", true);
    let mut errors = 0;
    for i in 0..full.len() {
        for data in [full[..i].to_vec(), {
            let mut d = full.clone();
            d[i] ^= 0x5a;
            d
        }] {
            std::fs::write(&p, &data).unwrap();
            if let Ok(reader) = TraceReader::open(&p) {
                match Report::build(&reader, &ReportOptions::default()) {
                    Ok(r) => assert_eq!(r.peak.bytes, r.totals.peak_heap_bytes),
                    Err(e) => {
                        assert!(!e.to_string().contains('\n'));
                        errors += 1;
                    }
                }
            }
        }
    }
    assert!(errors > 0);
    std::fs::remove_file(p).ok();
}

#[test]
fn huge_sizes_saturate_instead_of_overflowing() {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    w.chunk(ChunkKind::Events, 0, |b| {
        b.alloc(1, AllocFunc::Malloc, 0x10, u64::MAX, 1)?;
        b.alloc(2, AllocFunc::Malloc, 0x20, u64::MAX, 1)?;
        b.free(3, AllocFunc::Free, 0x10, 0)?;
        b.free(4, AllocFunc::Free, 0x20, 0)
    })
    .unwrap();
    let p = std::env::temp_dir().join(format!(
        "memlens-analysis-{}-huge.trace",
        std::process::id()
    ));
    std::fs::write(&p, w.finish().unwrap()).unwrap();
    let r = Report::build(&TraceReader::open(&p).unwrap(), &ReportOptions::default()).unwrap();
    assert_eq!(
        (
            r.totals.bytes_allocated,
            r.totals.peak_heap_bytes,
            r.totals.not_freed_bytes
        ),
        (u64::MAX, u64::MAX, 0)
    );
    std::fs::remove_file(p).ok();
}
