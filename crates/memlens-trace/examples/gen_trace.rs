//! Write a large synthetic trace, for measuring the analysis (`bench/analysis`):
//!
//! ```text
//! cargo run --release --example gen_trace -- OUT EVENTS [THREADS] [STACKS] [SEED]
//! ```
//!
//! The trace looks like a busy allocating program, deterministically from SEED:
//! * STACKS distinct stacks (default 20,000) of 8 to 40 frames drawn from 6,000 functions
//!   in 4 modules (files that do not exist: frames stay unsymbolized), used with a
//!   Zipf-like popularity (a few sites make most allocations), each with its own typical
//!   size and allocator function (malloc, new or calloc), and its reallocs made at
//!   another of the stacks;
//! * per THREAD (default 4): 45% temporary allocations (malloc then free at once), 35%
//!   short-lived ones (freed about 4,000 allocations later), 8% long-lived ones (a pool
//!   of at most 100,000 blocks per thread, a random one replaced when full), 10% reallocs
//!   of short-lived blocks, and one site that grows for the whole run (a 256-byte block
//!   kept every 1,000 steps): a logical leak the report should find;
//! * freed addresses are reused last-in first-out, like glibc's tcache;
//! * each thread's events go in ~64 KiB chunks whose time ranges overlap the other
//!   threads', as the recorder writes them; an RSS sample every 10 ms; an end record.
//!
//! A thread makes an event about every 80 ns of simulated time: 100 M events on 4 threads
//! are a 2 s run.

use memlens_trace::writer::TraceWriter;
use memlens_trace::{AllocFunc, ChunkBuilder, ChunkKind, EndCounters, ExitKind, Header};
use memlens_trace::{WriteError, PROCESS_THREAD};
use std::collections::VecDeque;
use std::io::BufWriter;

/// Raw bytes after which a chunk is closed (the recorder's buffers are 64 KiB).
const CHUNK_FILL: usize = 60 * 1024;
const NS_PER_EVENT: u64 = 80;
const SHORT_LIFE: usize = 4000;
const LONG_POOL: usize = 100_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Site {
    stack: u32,
    /// A call site calls one allocator function; its reallocs are another call site.
    func: AllocFunc,
    realloc_stack: u32,
    size: u64,
}

struct Thread {
    index: u32,
    rng: Rng,
    /// Freed addresses, reused last-in first-out.
    free_addrs: Vec<u64>,
    next_addr: u64,
    short: VecDeque<(u64, u64)>,
    long: Vec<(u64, u64)>,
    steps: u64,
    live_bytes: u64,
}

impl Thread {
    fn addr(&mut self) -> u64 {
        self.free_addrs.pop().unwrap_or_else(|| {
            self.next_addr += 64;
            self.next_addr
        })
    }
}

struct Gen {
    sites: Vec<Site>,
    /// Cumulative popularity of the sites (Zipf-like).
    cdf: Vec<f64>,
    growing_stack: u32,
    events: u64,
    target: u64,
}

impl Gen {
    fn pick(&self, rng: &mut Rng) -> &Site {
        let u = rng.unit() * self.cdf[self.cdf.len() - 1];
        let i = self.cdf.partition_point(|&c| c < u);
        &self.sites[i.min(self.sites.len() - 1)]
    }

    /// Fill one chunk of thread `t` starting at `ts`; returns the time after its last event.
    fn fill(
        &mut self,
        t: &mut Thread,
        b: &mut ChunkBuilder<&mut [u8]>,
        mut ts: u64,
    ) -> Result<u64, WriteError> {
        // A step writes at most two records; each column has a region of its own, which
        // can fill before the chunk's total does.
        while b.len() < CHUNK_FILL && b.room_for_events() >= 2 && self.events < self.target {
            ts += t.rng.below(2 * NS_PER_EVENT) + 1;
            t.steps += 1;
            if t.steps.is_multiple_of(1000) {
                let a = t.addr();
                b.alloc(ts, AllocFunc::Malloc, a, 256, self.growing_stack)?;
                t.live_bytes += 256;
                self.events += 1;
                continue;
            }
            let site = self.pick(&mut t.rng);
            let (stack, func, realloc_stack, base) =
                (site.stack, site.func, site.realloc_stack, site.size);
            let size = base + t.rng.below(base / 4 + 1);
            let r = t.rng.below(100);
            if r < 45 {
                let a = t.addr();
                b.alloc(ts, func, a, size, stack)?;
                ts += t.rng.below(NS_PER_EVENT) + 1;
                b.free(ts, AllocFunc::Free, a, 0)?;
                t.free_addrs.push(a);
                self.events += 2;
            } else if r < 80 {
                let a = t.addr();
                b.alloc(ts, func, a, size, stack)?;
                t.live_bytes += size;
                t.short.push_back((a, size));
                self.events += 1;
                if t.short.len() > SHORT_LIFE {
                    let (old, sz) = t.short.pop_front().unwrap();
                    ts += 1;
                    b.free(ts, AllocFunc::Free, old, 0)?;
                    t.free_addrs.push(old);
                    t.live_bytes -= sz;
                    self.events += 1;
                }
            } else if r < 88 {
                let a = t.addr();
                b.alloc(ts, func, a, size, stack)?;
                t.live_bytes += size;
                self.events += 1;
                if t.long.len() < LONG_POOL {
                    t.long.push((a, size));
                } else {
                    let i = t.rng.below(t.long.len() as u64) as usize;
                    let (old, sz) = std::mem::replace(&mut t.long[i], (a, size));
                    ts += 1;
                    b.free(ts, AllocFunc::Free, old, 0)?;
                    t.free_addrs.push(old);
                    t.live_bytes -= sz;
                    self.events += 1;
                }
            } else if let Some(&(old, sz)) = t.short.back() {
                // Grow the newest short-lived block; half of the time it moves.
                let new_size = sz + 16 + t.rng.below(sz + 1);
                let new = if t.rng.below(2) == 0 { old } else { t.addr() };
                b.realloc(ts, AllocFunc::Realloc, old, new, new_size, realloc_stack)?;
                if new != old {
                    t.free_addrs.push(old);
                }
                *t.short.back_mut().unwrap() = (new, new_size);
                t.live_bytes = t.live_bytes - sz + new_size;
                self.events += 1;
            }
        }
        Ok(ts)
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_trace OUT EVENTS [THREADS] [STACKS] [SEED]");
        std::process::exit(2);
    }
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |s| {
            s.replace('_', "").parse().unwrap_or_else(|_| {
                eprintln!("gen_trace: `{s}` is not a number");
                std::process::exit(2)
            })
        })
    };
    let target = num(2, 0);
    let threads = num(3, 4).clamp(1, 256) as u32;
    let nstacks = num(4, 20_000).max(10) as u32;
    let mut rng = Rng(num(5, 42) | 1);

    let header = Header {
        pid: 4242,
        ppid: 1,
        exe: "/opt/synthetic/bin/server".into(),
        argv: vec!["server".into(), "--synthetic".into()],
        page_size: 4096,
        rss_interval_ns: 10_000_000,
        max_depth: 64,
        writer: "gen_trace".into(),
        ..Default::default()
    };
    let file = std::fs::File::create(&args[1])?;
    let mut w = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), &header)?;

    // Definitions: modules, threads, stacks (in as many chunks as they need).
    let modules: [&[u8]; 4] = [
        b"/opt/synthetic/bin/server",
        b"/opt/synthetic/lib/libcore.so",
        b"/opt/synthetic/lib/libnet.so",
        b"/opt/synthetic/lib/libjson.so",
    ];
    w.chunk(ChunkKind::Meta, 0, |b| {
        for (i, m) in modules.iter().enumerate() {
            let id = i as u32 + 1;
            b.module_load(
                0,
                id,
                m,
                &[id as u8; 20],
                0x5555_0000_0000 + ((i as u64) << 32),
                &[(0, 0x40_0000, 5)],
            )?;
        }
        for t in 0..threads {
            b.thread(0, t, 4242 + t, format!("worker-{t}").as_bytes())?;
        }
        Ok(())
    })?;
    let functions: Vec<(u32, u64)> = (0..6000)
        .map(|_| (1 + rng.below(4) as u32, 0x1000 + rng.below(0x3f_0000)))
        .collect();
    let mut sites = Vec::new();
    let mut next_stack = 1u32;
    while next_stack <= nstacks {
        w.chunk(ChunkKind::Meta, 0, |b| {
            while next_stack <= nstacks && b.len() < CHUNK_FILL {
                let depth = 8 + rng.below(33) as usize;
                let frames: Vec<(u32, u64)> = (0..depth)
                    .map(|_| functions[rng.below(functions.len() as u64) as usize])
                    .collect();
                b.stack(next_stack, &frames)?;
                // Typical sizes 16 B .. 4 KiB, log-uniform; a few large.
                let size = if rng.below(200) == 0 {
                    64 << 10
                } else {
                    16u64 << rng.below(9)
                };
                let func = match rng.below(10) {
                    0..=4 => AllocFunc::Malloc,
                    5..=7 => AllocFunc::New,
                    _ => AllocFunc::Calloc,
                };
                sites.push(Site {
                    stack: next_stack,
                    func,
                    realloc_stack: 0,
                    size,
                });
                next_stack += 1;
            }
            Ok(())
        })?;
    }
    // The last stack is the growing site; it is not drawn at random. Each site's reallocs
    // are one of the other stacks.
    let growing_stack = sites.pop().map_or(1, |s| s.stack);
    let n = sites.len() as u64;
    for (i, s) in sites.iter_mut().enumerate() {
        s.realloc_stack = 1 + ((i as u64 * 7919 + 13) % n) as u32;
    }
    let mut acc = 0.0;
    let cdf: Vec<f64> = (0..sites.len())
        .map(|i| {
            acc += 1.0 / ((i + 1) as f64).powf(1.1);
            acc
        })
        .collect();
    let mut gen = Gen {
        sites,
        cdf,
        growing_stack,
        events: 0,
        target,
    };
    let mut ths: Vec<Thread> = (0..threads)
        .map(|i| Thread {
            index: i,
            rng: Rng(rng.next() | 1),
            free_addrs: Vec::new(),
            next_addr: 0x1000_0000_0000 * (i as u64 + 1),
            short: VecDeque::new(),
            long: Vec::new(),
            steps: 0,
            live_bytes: 0,
        })
        .collect();

    // Rounds: every thread writes one chunk starting at the round's time; the chunks
    // overlap in time and the reader merges them.
    let mut round_start = 1_000_000u64;
    let mut next_rss = round_start;
    while gen.events < gen.target {
        let mut round_end = round_start;
        for t in ths.iter_mut() {
            let mut end = round_start;
            w.chunk(ChunkKind::Events, t.index, |b| {
                end = gen.fill(t, b, round_start)?;
                Ok(())
            })?;
            round_end = round_end.max(end);
        }
        let live: u64 = ths.iter().map(|t| t.live_bytes).sum();
        if next_rss <= round_end {
            w.chunk(ChunkKind::Events, PROCESS_THREAD, |b| {
                while next_rss <= round_end {
                    // Heap plus allocator overhead plus 12 MiB of code and stacks.
                    b.rss(next_rss, live + live / 8 + (12 << 20))?;
                    next_rss += 10_000_000;
                }
                Ok(())
            })?;
        }
        round_start = round_end + 1;
    }
    w.chunk(ChunkKind::End, 0, |b| {
        b.end(round_start, ExitKind::Exit, 0, &EndCounters::default())
    })?;
    w.finish()?;
    eprintln!(
        "gen_trace: wrote {} events ({} threads, {} stacks) to {}, {:.2} s of simulated run",
        gen.events,
        threads,
        nstacks,
        args[1],
        round_start as f64 / 1e9
    );
    Ok(())
}
