//! Heap vs RSS: why the process's resident memory is larger than its heap.
//!
//! At three moments (the highest RSS sample of the window, the sample nearest the heap's
//! peak, and the last sample of the window) the RSS is split into:
//!
//! * **heap in use**: the bytes the program asked for and has not released;
//! * **allocator overhead** (estimate): glibc's chunk header and rounding around each
//!   live block, [`glibc_chunk_size`] minus the requested size;
//! * **baseline**: what was resident before the heap grew: the first RSS sample of the
//!   trace minus the heap chunks live then (code, libraries, the main stack);
//! * **other**: the rest, memory that is resident but in no live block. Mostly free
//!   memory the allocator keeps after `free` (freed chunks not returned to the system,
//!   holes between live blocks: fragmentation), plus memory not from malloc (`mmap`,
//!   thread stacks, file mappings), and the growth of memlens's own memory since the first
//!   sample. It can be negative: pages of a live block that were never touched (a large
//!   `calloc`) are not resident.
//!
//! memlens's own memory in the process (the recorder's private heap: stack table,
//! buffers) is in the baseline and in "other"; its peak, from the end record, is given as
//! `recorder_bytes`, an upper bound of what the program does not have without memlens.
//!
//! The findings ([`findings`]) turn large parts into sentences; their thresholds are the
//! constants below.

/// glibc's `mmap` threshold at start (it can rise up to 32 MiB as mmapped blocks are
/// freed; the estimate keeps the initial value).
pub const MMAP_THRESHOLD: u64 = 128 << 10;

/// The memory glibc's malloc uses for a request of `n` bytes on x86_64: the chunk size,
/// `max(32, (n + 8 + 15) & !15)` (an 8-byte size header, 16-byte alignment, 32-byte
/// minimum); a request of [`MMAP_THRESHOLD`] or more is its own mapping, the chunk plus
/// 8 bytes rounded up to whole pages.
pub fn glibc_chunk_size(n: u64, page_size: u64) -> u64 {
    let chunk = (n.saturating_add(8 + 15) & !15).max(32);
    if n >= MMAP_THRESHOLD {
        let page = page_size.max(1);
        chunk.saturating_add(8).div_ceil(page).saturating_mul(page)
    } else {
        chunk
    }
}

/// The heap and RSS at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssPoint {
    /// Time of the RSS sample, ns since the trace started.
    pub ts: u64,
    pub rss: u64,
    /// Live requested bytes and blocks at that time.
    pub heap_bytes: u64,
    pub heap_blocks: u64,
    /// Sum of [`glibc_chunk_size`] over the live blocks.
    pub chunk_bytes: u64,
}

/// The split of the RSS at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    pub time_ns: u64,
    pub rss: u64,
    pub heap_bytes: u64,
    pub heap_blocks: u64,
    pub overhead_bytes: u64,
    pub baseline_bytes: u64,
    /// memlens's own memory at its peak, at most this RSS (its mappings are not all
    /// resident); part of baseline and other, not subtracted. The one number every
    /// format shows.
    pub recorder_bytes: u64,
    /// `rss - heap - overhead - baseline`.
    pub other_bytes: i64,
}

impl Breakdown {
    pub fn new(p: &RssPoint, baseline: u64, recorder: u64) -> Breakdown {
        let overhead = p.chunk_bytes.saturating_sub(p.heap_bytes);
        let explained = p
            .heap_bytes
            .saturating_add(overhead)
            .saturating_add(baseline);
        Breakdown {
            time_ns: p.ts,
            rss: p.rss,
            heap_bytes: p.heap_bytes,
            heap_blocks: p.heap_blocks,
            overhead_bytes: overhead,
            baseline_bytes: baseline,
            recorder_bytes: recorder.min(p.rss),
            other_bytes: p.rss as i64 - explained as i64,
        }
    }
}

/// The heap vs RSS section. `None` in a report when the window has no RSS sample.
#[derive(Clone, Debug, PartialEq)]
pub struct HeapVsRss {
    pub at_peak_rss: Breakdown,
    /// At the RSS sample nearest the heap's peak (before or after it), with the heap of
    /// that moment.
    pub at_peak_heap: Option<Breakdown>,
    /// At the last sample of the window.
    pub at_end: Breakdown,
    /// The window's peak heap (requested bytes), for the ratios.
    pub peak_heap_bytes: u64,
    /// One sentence each: what the numbers say.
    pub findings: Vec<String>,
}

/// "other" above this fraction of the RSS is reported as memory the allocator keeps.
pub const OTHER_FRACTION: f64 = 0.5;
/// memlens's own memory above this fraction of the RSS is mentioned.
pub const RECORDER_FRACTION: f64 = 0.25;
/// Overhead above this fraction of the heap in use is reported.
pub const OVERHEAD_FRACTION: f64 = 0.25;
/// At the end of the window: the heap below this fraction of its peak while the RSS stays
/// above [`RETAINED_RSS_FRACTION`] of its own peak is reported as memory not given back.
pub const SHRUNK_HEAP_FRACTION: f64 = 0.5;
pub const RETAINED_RSS_FRACTION: f64 = 0.8;

fn pct(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        100.0 * a / b
    } else {
        0.0
    }
}

/// Sentences about a breakdown: which part explains the RSS.
pub fn findings(h: &HeapVsRss) -> Vec<String> {
    use memlens_common::units::human_bytes;
    let mut out = Vec::new();
    let p = &h.at_peak_rss;
    let other = p.other_bytes.max(0) as u64;
    if p.heap_bytes > 0 {
        out.push(format!(
            "at its peak the RSS ({}) is {:.1}x the heap in use then ({})",
            human_bytes(p.rss),
            p.rss as f64 / p.heap_bytes as f64,
            human_bytes(p.heap_bytes)
        ));
    }
    if other as f64 > OTHER_FRACTION * p.rss as f64 {
        out.push(format!(
            "{} ({:.0}% of the peak RSS) is in no live block: free memory the allocator kept \
             (fragmentation, freed chunks not returned to the system) or memory not from \
             malloc (mmap, thread stacks)",
            human_bytes(other),
            pct(other as f64, p.rss as f64)
        ));
    }
    if p.recorder_bytes as f64 > RECORDER_FRACTION * p.rss as f64 {
        out.push(format!(
            "memlens's own memory (the recorder, up to {}) counts in this RSS; the program \
             does not have it when it runs without memlens",
            human_bytes(p.recorder_bytes)
        ));
    }
    if p.heap_blocks > 0 && p.overhead_bytes as f64 > OVERHEAD_FRACTION * p.heap_bytes as f64 {
        out.push(format!(
            "the allocator's overhead is about {} ({:.0}% of the heap in use): {} blocks of {} \
             on average; fewer, larger allocations (arrays, pools) cut it",
            human_bytes(p.overhead_bytes),
            pct(p.overhead_bytes as f64, p.heap_bytes as f64),
            p.heap_blocks,
            human_bytes(p.heap_bytes / p.heap_blocks)
        ));
    }
    let e = &h.at_end;
    if e.time_ns > p.time_ns
        && (e.heap_bytes as f64) < SHRUNK_HEAP_FRACTION * h.peak_heap_bytes as f64
        && e.rss as f64 > RETAINED_RSS_FRACTION * p.rss as f64
    {
        out.push(format!(
            "after its peak the heap shrank to {} but the RSS stayed at {}: glibc keeps freed \
             memory; malloc_trim(0) after the peak, a lower M_TRIM_THRESHOLD, or fewer arenas \
             (MALLOC_ARENA_MAX=2) give it back",
            human_bytes(e.heap_bytes),
            human_bytes(e.rss)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(glibc_chunk_size(0, 4096), 32);
        assert_eq!(glibc_chunk_size(24, 4096), 32);
        assert_eq!(glibc_chunk_size(25, 4096), 48);
        assert_eq!(glibc_chunk_size(100, 4096), 112);
        assert_eq!(glibc_chunk_size(1000, 4096), 1008);
        assert_eq!(glibc_chunk_size(128 << 10, 4096), (128 << 10) + 4096);
        assert_eq!(glibc_chunk_size(1 << 20, 4096), (1 << 20) + 4096);
        assert_eq!(glibc_chunk_size(u64::MAX, 4096), u64::MAX);
    }

    #[test]
    fn breakdown_and_findings() {
        let peak = RssPoint {
            ts: 10,
            rss: 300 << 20,
            heap_bytes: 100 << 20,
            heap_blocks: 1000,
            chunk_bytes: (100 << 20) + 16_000,
        };
        let b = Breakdown::new(&peak, 2 << 20, 1 << 20);
        assert_eq!(b.overhead_bytes, 16_000);
        assert_eq!(b.other_bytes, (198 << 20) - 16_000);
        let end = Breakdown::new(
            &RssPoint {
                ts: 20,
                rss: 290 << 20,
                heap_bytes: 10 << 20,
                heap_blocks: 10,
                chunk_bytes: 10 << 20,
            },
            2 << 20,
            1 << 20,
        );
        let mut h = HeapVsRss {
            at_peak_rss: b,
            at_peak_heap: Some(b),
            at_end: end,
            peak_heap_bytes: 100 << 20,
            findings: Vec::new(),
        };
        h.findings = findings(&h);
        assert_eq!(h.findings.len(), 3, "{:?}", h.findings);
        assert!(h.findings[0].contains("3.0x the heap in use"));
        assert!(h.findings[1].contains("in no live block"));
        assert!(h.findings[2].contains("malloc_trim"));
    }
}
