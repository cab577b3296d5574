//! The report's sections and windows on synthetic traces with exact times, and the
//! timeline: numbers worked out by hand, or checked against a brute-force replay.

use memlens_analysis::advice::AdviceKind;
use memlens_analysis::replay::{Replay, SiteKey};
use memlens_analysis::timeline::{Timeline, TimelineOptions};
use memlens_analysis::{Report, ReportOptions, TimePoint, WindowSpec};
use memlens_trace::reader::{Event, TraceReader};
use memlens_trace::writer::TraceWriter;
use memlens_trace::*;
use std::collections::HashMap;
use std::path::PathBuf;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// Events of one trace, written one chunk per thread and per 2000 events.
#[derive(Default)]
struct Trace {
    events: Vec<(u32, Event)>,
    end: Option<(u64, EndCounters)>,
}

impl Trace {
    fn alloc(&mut self, ts: u64, thread: u32, addr: u64, size: u64, stack: u32) {
        self.events.push((
            thread,
            Event::Alloc {
                ts,
                thread,
                func: AllocFunc::Malloc,
                addr,
                size,
                stack,
            },
        ));
    }
    fn free(&mut self, ts: u64, thread: u32, addr: u64) {
        self.events.push((
            thread,
            Event::Free {
                ts,
                thread,
                func: AllocFunc::Free,
                addr,
                stack: 0,
            },
        ));
    }
    fn realloc(&mut self, ts: u64, thread: u32, old: u64, new: u64, size: u64, stack: u32) {
        self.events.push((
            thread,
            Event::Realloc {
                ts,
                thread,
                func: AllocFunc::Realloc,
                old,
                new,
                size,
                stack,
            },
        ));
    }
    fn rss(&mut self, ts: u64, bytes: u64) {
        self.events.push((PROCESS_THREAD, Event::Rss { ts, bytes }));
    }

    fn write(&self, name: &str) -> PathBuf {
        let mut w = TraceWriter::new(
            Vec::new(),
            &Header {
                pid: 7,
                exe: "/bin/synthetic".into(),
                page_size: 4096,
                ..Default::default()
            },
        )
        .unwrap();
        let mut per_thread: HashMap<u32, Vec<Event>> = HashMap::new();
        for (t, e) in &self.events {
            per_thread.entry(*t).or_default().push(*e);
        }
        let mut threads: Vec<_> = per_thread.into_iter().collect();
        threads.sort_by_key(|t| t.0);
        let stacks: std::collections::BTreeSet<u32> = self
            .events
            .iter()
            .filter_map(|(_, e)| match *e {
                Event::Alloc { stack, .. } | Event::Realloc { stack, .. } => Some(stack),
                _ => None,
            })
            .collect();
        w.chunk(ChunkKind::Meta, 0, |b| {
            for s in &stacks {
                b.stack(*s, &[(0, 0x7000_0000 + *s as u64)])?;
            }
            Ok(())
        })
        .unwrap();
        for (t, evs) in threads {
            for part in evs.chunks(2000) {
                w.chunk(ChunkKind::Events, t, |b| {
                    for e in part {
                        // Frees without their stacks, as the recorder writes by default.
                        match *e {
                            Event::Free { ts, func, addr, .. } => b.free(ts, func, addr, 0)?,
                            _ => b.event(e)?,
                        }
                    }
                    Ok(())
                })
                .unwrap();
            }
        }
        if let Some((ts, counters)) = self.end {
            w.chunk(ChunkKind::End, 0, |b| {
                b.end(ts, ExitKind::Exit, 0, &counters)
            })
            .unwrap();
        }
        let p = std::env::temp_dir().join(format!(
            "memlens-sections-{}-{name}.trace",
            std::process::id()
        ));
        std::fs::write(&p, w.finish().unwrap()).unwrap();
        p
    }
}

fn report(p: &PathBuf, opts: ReportOptions) -> Report {
    Report::build(&TraceReader::open(p).unwrap(), &opts).unwrap()
}

fn window(from: &str, to: &str) -> WindowSpec {
    WindowSpec {
        from: Some(TimePoint::parse(from).unwrap()),
        to: Some(TimePoint::parse(to).unwrap()),
        ..Default::default()
    }
}

fn all(top: usize) -> ReportOptions {
    ReportOptions {
        top,
        ..Default::default()
    }
}

/// xorshift, deterministic.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A random trace of 3 threads and 40 sites, in time order.
fn random_trace(seed: u64, n: usize) -> Trace {
    let mut rng = Rng(seed);
    let mut t = Trace::default();
    let mut live: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut next = 0x1000u64;
    for i in 0..n {
        let ts = (i as u64 + 1) * 1000;
        let th = rng.below(3) as u32;
        let l = &mut live[th as usize];
        if ts.is_multiple_of(50_000) {
            t.rss(ts, 10 << 20);
        }
        if !l.is_empty() && rng.below(100) < 45 {
            let a = l.swap_remove(rng.below(l.len() as u64) as usize);
            t.free(ts, th, a);
        } else if !l.is_empty() && rng.below(100) < 10 {
            let i = rng.below(l.len() as u64) as usize;
            next += 0x100;
            t.realloc(
                ts,
                th,
                l[i],
                next,
                8 + rng.below(4000),
                1 + rng.below(40) as u32,
            );
            l[i] = next;
        } else {
            next += 0x100;
            t.alloc(ts, th, next, 8 + rng.below(4000), 1 + rng.below(40) as u32);
            l.push(next);
        }
    }
    t.end = Some((n as u64 * 1000 + 1000, EndCounters::default()));
    t
}

/// The heap's composition at its peak in `[from, to]`, the slow way: find the event after
/// which the heap first reached its highest value, replay up to it again, group by site.
fn brute_peak(p: &PathBuf, from: u64, to: u64) -> (u64, HashMap<SiteKey, (u64, u64)>) {
    let r = TraceReader::open(p).unwrap();
    let events: Vec<Event> = r.events().map(|e| e.unwrap()).collect();
    let mut replay = Replay::new();
    let (mut best, mut best_at) = (None, 0);
    for (i, e) in events.iter().enumerate() {
        if e.ts() > to {
            break;
        }
        if e.ts() >= from && best.is_none() {
            best = Some(replay.live_bytes());
            best_at = i;
        }
        replay.apply(e, &mut ());
        if e.ts() >= from && replay.live_bytes() > best.unwrap() {
            best = Some(replay.live_bytes());
            best_at = i + 1;
        }
    }
    let mut replay = Replay::new();
    for e in &events[..best_at] {
        replay.apply(e, &mut ());
    }
    let mut sites: HashMap<SiteKey, (u64, u64)> = HashMap::new();
    for (_, b) in replay.blocks() {
        let s = sites.entry(b.site).or_default();
        s.0 += b.size;
        s.1 += 1;
    }
    (best.unwrap_or(0), sites)
}

#[test]
fn one_pass_peak_composition_matches_a_replay_to_the_peak() {
    for seed in [1, 2, 3] {
        let p = random_trace(seed, 20_000).write(&format!("random{seed}"));
        for (from, to) in [
            (None, None),
            (Some("30%"), Some("70%")),
            (Some("5ms"), None),
        ] {
            let spec = WindowSpec {
                from: from.map(|f| TimePoint::parse(f).unwrap()),
                to: to.map(|t| TimePoint::parse(t).unwrap()),
                ..Default::default()
            };
            let r = report(
                &p,
                ReportOptions {
                    top: 1000,
                    window: spec,
                    ..Default::default()
                },
            );
            let (bytes, sites) = brute_peak(&p, r.window.from_ns, r.window.to_ns);
            assert_eq!(r.peak.bytes, bytes, "seed {seed} {from:?}..{to:?}");
            assert_eq!(r.peak.site_count, sites.len());
            for s in &r.peak.sites {
                let key = SiteKey {
                    stack: s.stack,
                    func: s.func,
                };
                assert_eq!(
                    Some(&(s.stats.live_bytes, s.stats.live_blocks)),
                    sites.get(&key),
                    "seed {seed} {from:?}..{to:?} site {key:?}"
                );
            }
        }
        std::fs::remove_file(p).ok();
    }
}

/// ```text
///  1 ms  t0 malloc A 100 (s1)
///  2 ms  t0 malloc B 200 (s2)
///  3 ms  t0 free A                       window 2.5 ms .. 6 ms starts with B (200)
///  4 ms  t0 malloc C 300 (s3)   500      <- the window's peak
///  5 ms  t0 free B              300
///  6 ms  t0 malloc D 50 (s1)    350
///  7 ms  t0 malloc E 1000 (s2)           after the window
///  end at 8 ms
/// ```
fn phases() -> Trace {
    let mut t = Trace::default();
    t.alloc(MS, 0, 0xa0, 100, 1);
    t.alloc(2 * MS, 0, 0xb0, 200, 2);
    t.free(3 * MS, 0, 0xa0);
    t.alloc(4 * MS, 0, 0xc0, 300, 3);
    t.free(5 * MS, 0, 0xb0);
    t.alloc(6 * MS, 0, 0xd0, 50, 1);
    t.alloc(7 * MS, 0, 0xe0, 1000, 2);
    t.end = Some((8 * MS, EndCounters::default()));
    t
}

#[test]
fn a_window_counts_its_allocations_and_starts_with_the_heap_before_it() {
    let p = phases().write("phases");
    let r = report(
        &p,
        ReportOptions {
            window: window("2.5ms", "6ms"),
            ..all(10)
        },
    );
    assert_eq!(
        (r.window.from_ns, r.window.to_ns, r.window.run_ns),
        (2_500_000, 6 * MS, 8 * MS)
    );
    let t = &r.totals;
    assert_eq!(
        (t.allocations, t.frees, t.bytes_allocated, t.runtime_ns),
        (2, 2, 350, 3_500_000)
    );
    assert_eq!((t.peak_heap_bytes, t.peak_heap_ns), (500, 4 * MS));
    // B was allocated before the window: it is in the peak, not in "not freed".
    let peak: Vec<(u32, u64)> = r
        .peak
        .sites
        .iter()
        .map(|s| (s.stack, s.stats.live_bytes))
        .collect();
    assert_eq!(peak, vec![(3, 300), (2, 200)]);
    assert_eq!((t.not_freed_bytes, t.not_freed_blocks), (350, 2));
    let nf: Vec<(u32, u64)> = r
        .not_freed
        .sites
        .iter()
        .map(|s| (s.stack, s.stats.live_bytes))
        .collect();
    assert_eq!(nf, vec![(3, 300), (1, 50)]);
    // Only the window's allocations: s1 made one in it (D), s2 none, E is not read.
    let hot: Vec<(u32, u64)> = r
        .by_allocations
        .iter()
        .map(|s| (s.stack, s.stats.allocations))
        .collect();
    assert_eq!(hot, vec![(3, 1), (1, 1)]);
    assert_eq!(r.site_count, 2);
    assert!(r.leaks.as_ref().is_none(), "leaks need the whole run");

    // Percentages of the 8 ms run: 25% .. 75% = 2 ms .. 6 ms, both ends included.
    let r = report(
        &p,
        ReportOptions {
            window: window("25%", "75%"),
            ..all(10)
        },
    );
    assert_eq!((r.window.from_ns, r.window.to_ns), (2 * MS, 6 * MS));
    assert_eq!(r.totals.allocations, 3);
    // The whole run, for comparison.
    let r = report(&p, all(10));
    assert!(r.window.is_whole());
    assert_eq!((r.totals.allocations, r.totals.peak_heap_bytes), (5, 1350));
    assert_eq!(r.totals.not_freed_bytes, 1350);
    // Bad windows are one sentence.
    let e = Report::build(
        &TraceReader::open(&p).unwrap(),
        &ReportOptions {
            window: window("9ms", "10ms"),
            ..all(10)
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "--from 9 ms is at or after the end of the run (8 ms)");
    std::fs::remove_file(p).ok();
}

#[test]
fn growth_flags_the_site_that_keeps_growing_and_not_waves_or_plateaus() {
    // 10 s; every 10 ms: s1 keeps 1 KiB (102,400 B/s); s2 goes up by 4 KiB for 50 steps and
    // back down (waves of 1 s); s3 keeps 2 KiB until 3 s, then nothing (a plateau); s4
    // keeps 1 KiB and is freed entirely in the last step (a cache emptied at exit: all
    // given back, so not a logical leak of the whole run, but growing in its first half).
    let mut t = Trace::default();
    let mut wave = Vec::new();
    let mut s4 = Vec::new();
    let mut addr = 0x10_0000u64;
    for i in 1..=1000u64 {
        let ts = i * 10 * MS;
        addr += 0x1000;
        t.alloc(ts, 0, addr, 1024, 1);
        addr += 0x1000;
        if (i / 50) % 2 == 0 {
            t.alloc(ts + 1, 0, addr, 4096, 2);
            wave.push(addr);
        } else if let Some(a) = wave.pop() {
            t.free(ts + 1, 0, a);
        }
        if ts <= 3 * S {
            addr += 0x1000;
            t.alloc(ts + 2, 0, addr, 2048, 3);
        }
        addr += 0x1000;
        t.alloc(ts + 3, 0, addr, 1024, 4);
        s4.push(addr);
    }
    for (i, a) in s4.iter().enumerate() {
        t.free(10 * S + 4 + i as u64, 0, *a);
    }
    t.end = Some((10 * S + 10 * MS, EndCounters::default()));
    let p = t.write("growth");
    let r = report(&p, all(10));
    let g = &r.growth;
    assert_eq!(g.from_ns, 10 * MS);
    assert_eq!(g.intervals, 64);
    let flagged: Vec<u32> = g.sites.iter().map(|s| s.site.stack).collect();
    assert_eq!(flagged, vec![1], "{g:#?}");
    let s1 = &g.sites[0].fit;
    let rel = (s1.rate - 102_400.0).abs() / 102_400.0;
    assert!(rel < 0.02, "{s1:?}");
    assert!(s1.rate_low > 0.0 && s1.rate_low <= s1.rate && s1.rate <= s1.rate_high);
    assert!(s1.confidence > 0.999);
    assert!(s1.fraction > 0.95, "{s1:?}");
    assert_eq!(g.sites[0].site.stats.live_bytes, 1_024_000);
    // Advice: one growth line per flagged site, first.
    let adv: Vec<(AdviceKind, u32)> = r.advice.iter().map(|a| (a.kind, a.site.stack)).collect();
    assert_eq!(adv, vec![(AdviceKind::Growth, 1)], "{:?}", r.advice);
    let m = &r.advice[0].message;
    assert!(m.contains(" KiB/s for 97% of the run"), "{m}");

    // In a window of the first half, the plateau site is not growing either: it stops at
    // 3 s of 5 s, before the last quarter. s4 still holds its memory at 5 s: growing.
    let r = report(
        &p,
        ReportOptions {
            window: window("0s", "5s"),
            ..all(10)
        },
    );
    let flagged: Vec<u32> = r.growth.sites.iter().map(|s| s.site.stack).collect();
    assert_eq!(flagged, vec![1, 4]);
    std::fs::remove_file(p).ok();
}

#[test]
fn temporary_allocations_and_the_advice_rules() {
    let mut t = Trace::default();
    let mut ts = 0;
    let mut tick = || {
        ts += 1000;
        ts
    };
    // s1: 1000 temporaries (advice); s2: 999 temporaries (no advice).
    for (stack, n) in [(1u32, 1000), (2, 999)] {
        for _ in 0..n {
            t.alloc(tick(), 0, 0x100, 48, stack);
            t.free(tick(), 0, 0x100);
        }
    }
    // s3: a realloc chain of 100 growing reallocs, moving every other time.
    t.realloc(tick(), 0, 0, 0x200, 16, 3);
    let mut at = 0x200;
    for k in 2..=101u64 {
        let new = if k.is_multiple_of(2) {
            at + 0x10000
        } else {
            at
        };
        t.realloc(tick(), 0, at, new, 16 * k, 3);
        at = new;
    }
    // s4: 10,000 blocks of 64 bytes, each freed 10 allocations later (a pool).
    for i in 0..10_000u64 {
        t.alloc(tick(), 1, 0x100_0000 + i * 64, 64, 4);
        if i >= 10 {
            t.free(tick(), 1, 0x100_0000 + (i - 10) * 64);
        }
    }
    t.end = Some((tick(), EndCounters::default()));
    let p = t.write("advice");
    let r = report(&p, all(10));
    assert_eq!(r.temporary.count, 1999);
    let temp: Vec<(u32, u64)> = r
        .temporary
        .sites
        .iter()
        .map(|s| (s.site.stack, s.site.stats.temporary))
        .collect();
    // The last realloc of s3 and the last block of s4 are not freed: no temporary there.
    assert_eq!(temp, vec![(1, 1000), (2, 999)]);
    assert_eq!(r.temporary.bytes, 1999 * 48);
    let adv: Vec<(AdviceKind, u32)> = r.advice.iter().map(|a| (a.kind, a.site.stack)).collect();
    assert_eq!(
        adv,
        vec![
            (AdviceKind::Temporary, 1),
            (AdviceKind::ReallocChain, 3),
            (AdviceKind::Pool, 4)
        ]
    );
    assert!(r.advice[1]
        .message
        .starts_with("100 reallocs grew blocks here (50 moved them, copying "));
    assert!(r.advice[2]
        .message
        .starts_with("10000 blocks of 64 B each, 100% freed"));
    std::fs::remove_file(p).ok();
}

#[test]
fn heap_vs_rss_splits_the_rss() {
    const MIB: u64 = 1 << 20;
    let mut t = Trace::default();
    t.rss(MS, MIB); // nothing allocated yet: the baseline is 1 MiB
    for i in 0..1000u64 {
        t.alloc(2 * MS + i, 0, 0x10_0000 + i * 0x1000, 1000, 1);
    }
    t.rss(5 * MS, 3 * MIB);
    for i in 0..1000u64 {
        t.free(6 * MS + i, 0, 0x10_0000 + i * 0x1000);
    }
    t.rss(7 * MS, 3 * MIB);
    t.end = Some((
        8 * MS,
        EndCounters {
            recorder_peak_bytes: 4096,
            ..Default::default()
        },
    ));
    let p = t.write("rss");
    let r = report(&p, all(10));
    let h = r.heap_vs_rss.as_ref().unwrap();
    let b = &h.at_peak_rss;
    // 1000-byte requests are 1008-byte chunks: 8,000 bytes of overhead.
    assert_eq!(
        (
            b.time_ns,
            b.rss,
            b.heap_bytes,
            b.overhead_bytes,
            b.baseline_bytes
        ),
        (5 * MS, 3 * MIB, 1_000_000, 8_000, MIB)
    );
    assert_eq!(b.other_bytes, (2 * MIB) as i64 - 1_008_000);
    assert_eq!(b.recorder_bytes, 4096);
    // The sample nearest the heap's peak (2.000999 ms) is the one at 1 ms.
    let near = h.at_peak_heap.unwrap();
    assert_eq!((near.time_ns, near.heap_bytes), (MS, 0));
    let e = &h.at_end;
    assert_eq!(
        (e.time_ns, e.heap_bytes, e.other_bytes),
        (7 * MS, 0, 2 * MIB as i64)
    );
    assert!(
        h.findings
            .iter()
            .any(|f| f.contains("the heap shrank to 0 B but the RSS stayed at 3.00 MiB")),
        "{:?}",
        h.findings
    );
    assert_eq!(
        (r.totals.peak_rss_bytes, r.totals.peak_rss_ns),
        (Some(3 * MIB), Some(5 * MS))
    );
    std::fs::remove_file(p).ok();
}

#[test]
fn timeline_keeps_each_buckets_highest_value() {
    // 10 ms in 10 buckets. s1: 100 bytes from 0.5 ms on; s2: a 5000-byte spike from 2.2 to
    // 2.4 ms; s3: 10 bytes at 7.5 ms. RSS samples at 1 and 5 ms.
    let mut t = Trace::default();
    t.alloc(500_000, 0, 0x10, 100, 1);
    t.rss(MS, 4096);
    t.alloc(2_200_000, 0, 0x20, 5000, 2);
    t.free(2_400_000, 0, 0x20);
    t.rss(5 * MS, 8192);
    t.alloc(7_500_000, 0, 0x30, 10, 3);
    t.end = Some((10 * MS, EndCounters::default()));
    let p = t.write("timeline");
    let r = TraceReader::open(&p).unwrap();
    let opts = TimelineOptions {
        buckets: 10,
        sites: 2,
        ..Default::default()
    };
    let mut passes = Vec::new();
    let tl = Timeline::build(&r, &opts, &mut |p| passes.push(p.pass)).unwrap();
    assert!(passes.contains(&1) && passes.contains(&2));
    assert_eq!(tl.times_ns, (0..10).map(|i| i * MS).collect::<Vec<_>>());
    assert_eq!(
        tl.heap,
        vec![100, 100, 5100, 100, 100, 100, 100, 110, 110, 110]
    );
    let mut rss = vec![None; 10];
    rss[1] = Some(4096);
    rss[5] = Some(8192);
    assert_eq!(tl.rss, rss);
    let sites: Vec<(u32, u64, Vec<u64>)> = tl
        .sites
        .iter()
        .map(|s| (s.site.stack, s.peak_bytes, s.values.clone()))
        .collect();
    assert_eq!(
        sites,
        vec![
            (2, 5000, vec![0, 0, 5000, 0, 0, 0, 0, 0, 0, 0]),
            (1, 100, vec![100; 10]),
        ]
    );
    // A window: 2 ms .. 4 ms in 4 buckets; the heap carried in is 100.
    let opts = TimelineOptions {
        buckets: 4,
        sites: 1,
        window: window("2ms", "4ms"),
        ..Default::default()
    };
    let tl = Timeline::build(&r, &opts, &mut |_| {}).unwrap();
    assert_eq!(tl.heap, vec![5100, 100, 100, 100]);
    assert_eq!(tl.sites[0].values, vec![5000, 0, 0, 0]);
    std::fs::remove_file(p).ok();
}
