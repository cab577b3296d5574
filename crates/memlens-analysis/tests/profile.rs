//! Profiles and diffs of synthetic traces, with numbers worked out by hand.

use memlens_analysis::diff::{diff, Status};
use memlens_analysis::profile::{Metric, Profile, ProfileOptions, Values};
use memlens_analysis::Symbolizer;
use memlens_trace::reader::TraceReader;
use memlens_trace::writer::TraceWriter;
use memlens_trace::*;
use std::path::PathBuf;

const MS: u64 = 1_000_000;

/// A trace whose frames are in `/nonexistent/libdemo.so` (never symbolized: they print as
/// `libdemo.so+0x...`, the same in every run), loaded at `bias`. Stack ids are shifted
/// by `shift`, as another run would number them. With `extra`, one more site leaks 64 B.
///
///  1 ms  malloc 0x1000 100 (A: f1 <- main)            100
///  2 ms  malloc 0x2000 200 (B: f2 <- main)            300
///  3 ms  malloc 0x3000 300 (B)                        600 <- peak
///  4 ms  free 0x2000                                  400
///  5 ms  calloc 0x4000 50 (C: f3 <- f1 <- main)       450
///  6 ms  free 0x1000                                  350
/// [7 ms  malloc 0x5000 64 (D: f4 <- main)             414]
/// exit; scan: 0x3000 definitely lost, 0x4000 still reachable (from a global),
/// [0x5000 definitely lost,] 0x9000 (8 B, never seen allocated) possibly lost.
fn write_trace(name: &str, bias: u64, shift: u32, extra: bool) -> PathBuf {
    let header = Header {
        pid: 7,
        exe: "/usr/bin/demo".into(),
        ..Default::default()
    };
    let (a, b, c, d) = (1 + shift, 2 + shift, 3 + shift, 4 + shift);
    let mut w = TraceWriter::new(Vec::new(), &header).unwrap();
    w.chunk(ChunkKind::Meta, 0, |m| {
        m.module_load(0, 1, b"/nonexistent/libdemo.so", &[1, 2, 3], bias, &[])?;
        m.stack(a, &[(1, 0x1100), (1, 0x1900)])?;
        m.stack(b, &[(1, 0x1200), (1, 0x1900)])?;
        m.stack(c, &[(1, 0x1300), (1, 0x1110), (1, 0x1900)])?;
        m.stack(d, &[(1, 0x1400), (1, 0x1900)])
    })
    .unwrap();
    w.chunk(ChunkKind::Events, 0, |e| {
        e.alloc(MS, AllocFunc::Malloc, 0x1000, 100, a)?;
        e.alloc(2 * MS, AllocFunc::Malloc, 0x2000, 200, b)?;
        e.alloc(3 * MS, AllocFunc::Malloc, 0x3000, 300, b)?;
        e.free(4 * MS, AllocFunc::Free, 0x2000, 0)?;
        e.alloc(5 * MS, AllocFunc::Calloc, 0x4000, 50, c)?;
        e.free(6 * MS, AllocFunc::Free, 0x1000, 0)?;
        if extra {
            e.alloc(7 * MS, AllocFunc::Malloc, 0x5000, 64, d)?;
        }
        Ok(())
    })
    .unwrap();
    w.chunk(ChunkKind::Scan, 0, |s| {
        s.scan_begin(8 * MS, ExitKind::Exit, 0, 3 + extra as u64, 7, 0, 0, 0)?;
        s.scan_root(1, RootKind::ModuleData, 0, 1, 0x600000, 0x601000, b"demo")?;
        s.scan_block(
            0x3000,
            300,
            BlockState::DefinitelyLost,
            None,
            false,
            BlockLink::None,
        )?;
        s.scan_block(
            0x4000,
            50,
            BlockState::StillReachable,
            None,
            false,
            BlockLink::Root {
                root: 1,
                addr: 0x600010,
            },
        )?;
        if extra {
            s.scan_block(
                0x5000,
                64,
                BlockState::DefinitelyLost,
                None,
                false,
                BlockLink::None,
            )?;
        }
        s.scan_block(
            0x9000,
            8,
            BlockState::PossiblyLost,
            None,
            false,
            BlockLink::None,
        )?;
        s.scan_end(9 * MS, 3 + extra as u64)
    })
    .unwrap();
    w.chunk(ChunkKind::End, 0, |e| {
        e.end(10 * MS, ExitKind::Exit, 0, &EndCounters::default())
    })
    .unwrap();
    let p = std::env::temp_dir().join(format!("memlens-profile-{}-{name}", std::process::id()));
    std::fs::write(&p, w.finish().unwrap()).unwrap();
    p
}

fn values(pairs: &[(Metric, u64)]) -> Values {
    let mut v = Values::default();
    for &(m, x) in pairs {
        v[m] = x;
    }
    v
}

#[test]
fn every_metric_of_every_site() {
    use Metric::*;
    let p = write_trace("all.trace", 0x5555_0000_0000, 0, false);
    let r = TraceReader::open(&p).unwrap();
    let prof = Profile::build(&r, &ProfileOptions::all()).unwrap();
    assert!(prof.leak_check);
    let got: Vec<(u32, AllocFunc, Values)> = prof
        .sites
        .iter()
        .map(|s| (s.stack, s.func, s.values))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                0,
                AllocFunc::Malloc,
                values(&[(PossiblyLostBytes, 8), (PossiblyLostBlocks, 1)])
            ),
            (
                1,
                AllocFunc::Malloc,
                values(&[
                    (Allocations, 1),
                    (Allocated, 100),
                    (PeakBytes, 100),
                    (PeakBlocks, 1)
                ])
            ),
            (
                2,
                AllocFunc::Malloc,
                values(&[
                    (Allocations, 2),
                    (Allocated, 500),
                    (PeakBytes, 500),
                    (PeakBlocks, 2),
                    (ExitBytes, 300),
                    (ExitBlocks, 1),
                    (LeakedBytes, 300),
                    (LeakedBlocks, 1),
                    (DefinitelyLostBytes, 300),
                    (DefinitelyLostBlocks, 1),
                ])
            ),
            (
                3,
                AllocFunc::Calloc,
                values(&[
                    (Allocations, 1),
                    (Allocated, 50),
                    (ExitBytes, 50),
                    (ExitBlocks, 1),
                    (StillReachableBytes, 50),
                    (StillReachableBlocks, 1),
                ])
            ),
        ]
    );
    assert_eq!(
        (
            prof.sums[PeakBytes],
            prof.sums[Allocated],
            prof.sums[LeakedBytes]
        ),
        (600, 650, 300)
    );
    assert_eq!(prof.totals.peak_heap_ns, 3 * MS);

    // Without the leak pass the leak metrics are unknown and zero.
    let prof = Profile::build(&r, &ProfileOptions::for_metrics(&[PeakBytes])).unwrap();
    assert!(!prof.leak_check && !prof.known(LeakedBytes) && prof.known(PeakBytes));
    assert_eq!(prof.sites.len(), 3);
    assert_eq!((prof.sums[LeakedBytes], prof.sums[PeakBytes]), (0, 600));
    std::fs::remove_file(p).ok();
}

#[test]
fn diff_matches_sites_by_symbolized_stack_across_runs() {
    use Metric::*;
    let a = write_trace("a.trace", 0x5555_0000_0000, 0, false);
    // Another run: other load address, other stack ids, one more leak.
    let b = write_trace("b.trace", 0x6666_0000_0000, 10, true);
    let (ra, rb) = (
        TraceReader::open(&a).unwrap(),
        TraceReader::open(&b).unwrap(),
    );
    let pa = Profile::build(&ra, &ProfileOptions::all()).unwrap();
    let pb = Profile::build(&rb, &ProfileOptions::all()).unwrap();
    let mut sa = Symbolizer::new(&pa.metadata.modules);
    let mut sb = Symbolizer::new(&pb.metadata.modules);
    let d = diff(&pa, &mut sa, &pb, &mut sb, LeakedBytes);
    assert!(d.leak_check);
    // The only changed site: the new one.
    assert_eq!(d.sites.len(), 1, "{:#?}", d.sites);
    assert_eq!(d.unchanged, 4);
    let s = &d.sites[0];
    assert_eq!(s.status(), Status::New);
    assert_eq!(
        s.site.functions,
        vec!["libdemo.so+0x1400".to_string(), "libdemo.so+0x1900".into()]
    );
    assert_eq!(
        (
            s.change(LeakedBytes),
            s.change(LeakedBlocks),
            s.change(ExitBytes),
            s.change(Allocations),
            s.change(PeakBytes)
        ),
        (64, 1, 64, 1, 0)
    );
    // The other way round, it vanished, and shrank by as much.
    let d = diff(&pb, &mut sb, &pa, &mut sa, LeakedBytes);
    assert_eq!(d.sites.len(), 1);
    assert_eq!(d.sites[0].status(), Status::Vanished);
    assert_eq!(d.sites[0].change(LeakedBytes), -64);
    for p in [a, b] {
        std::fs::remove_file(p).ok();
    }
}
