//! Walking glibc's heap from outside the process (glibc 2.32 and later on x86_64; the
//! offsets are glibc 2.36's, checked: `docs/SNAPSHOT.md`).
//!
//! * The main arena's chunks run from the start of `[heap]` to its top chunk; every other
//!   arena lives in 64 MiB-aligned heaps that start with a `heap_info` naming the arena
//!   (the arena's own `malloc_state` follows the first one's header).
//! * A chunk is in use when the next chunk's PREV_INUSE bit is set, but chunks in a
//!   thread's tcache or in an arena's fastbins look in use too: they are collected from
//!   the tcache of every thread (found through the `tcache` TLS pointer, at the offset
//!   from the thread pointer where the threads' TLS points to a well-formed tcache
//!   structure) and from every
//!   arena's fastbins (their links are mangled: stored = (address of the link >> 12) XOR
//!   target) and left out. The tcache structure itself (a chunk glibc allocates for each
//!   thread without going through `malloc`) is no block either.
//! * mmapped chunks (large blocks) are in no list: each anonymous mapping is walked for
//!   IS_MMAPPED chunk headers whose sizes tile it.
//! * The main arena's `malloc_state` is a static of libc that no symbol table exports: it
//!   is found in libc's writable data as the structure whose `top` is the top chunk of
//!   `[heap]` and whose `system_mem` ends there.

use super::remote::{Mapping, Remote};
use memlens_reach::ranges::is_arena_heap;
use memlens_reach::BlockMemory;
use std::collections::HashSet;

const SIZE_BITS: u64 = 7;
const PREV_INUSE: u64 = 1;
const IS_MMAPPED: u64 = 2;
const MINSIZE: u64 = 0x20;
/// Offsets in `struct malloc_state`.
const AR_FASTBINS: u64 = 0x10;
const AR_TOP: u64 = 0x60;
const AR_NEXT: u64 = 0x870;
const AR_SYSTEM_MEM: u64 = 0x888;
const MALLOC_STATE_SIZE: u64 = 0x898;
const NFASTBINS: u64 = 10;
/// `sizeof(heap_info)`.
const HEAP_INFO_SIZE: u64 = 0x30;
/// The tcache structure's chunk size (64 u16 counts + 64 pointers, plus the header).
const TCACHE_CHUNK: u64 = 0x290;
const TCACHE_BINS: u64 = 64;

/// A copy of part of the target's memory (the heap), word-addressed.
pub struct Region {
    pub start: u64,
    pub words: Vec<u64>,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.start + 8 * self.words.len() as u64
    }
    fn get(&self, a: u64) -> Option<u64> {
        if a < self.start || a + 8 > self.end() || !a.is_multiple_of(8) {
            return None;
        }
        Some(self.words[((a - self.start) / 8) as usize])
    }
}

/// The copied heap memory, for the marker ([`BlockMemory`]).
pub struct Copied {
    /// By address, not overlapping.
    pub regions: Vec<Region>,
}

impl Copied {
    fn region(&self, a: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.start <= a);
        (i > 0 && a < self.regions[i - 1].end()).then(|| &self.regions[i - 1])
    }
    /// The word at `a`, if it was copied.
    pub fn get(&self, a: u64) -> Option<u64> {
        self.region(a)?.get(a)
    }
}

impl BlockMemory for Copied {
    fn words(&self, addr: u64, n: usize) -> &[u64] {
        // Every block's memory was copied (the walk found it inside a region).
        match self.region(addr) {
            Some(r) => {
                let i = ((addr - r.start) / 8) as usize;
                &r.words[i..(i + n).min(r.words.len())]
            }
            None => &[],
        }
    }
    fn word(&self, addr: u64) -> u64 {
        self.get(addr).unwrap_or(0)
    }
}

/// What the walk found.
pub struct Walk {
    /// Live blocks: (user address, usable size), by address.
    pub blocks: Vec<(u64, u64)>,
    pub memory: Copied,
    /// Heap memory (arena heaps, `[heap]`, mmapped chunks' mappings): never roots.
    pub heap_ranges: Vec<(u64, u64)>,
    pub arenas: usize,
    pub mmapped: usize,
    /// Chunks left out because they sit in a tcache or a fastbin.
    pub cached_free: usize,
    /// Something could not be checked (said in the report).
    pub warnings: Vec<String>,
}

pub(super) struct Chunk {
    pub(super) addr: u64,
    pub(super) size: u64,
    pub(super) in_use: bool,
}

fn copy(mem: &mut Remote, start: u64, end: u64) -> Result<Region, String> {
    let mut words = vec![0u64; ((end - start) / 8) as usize];
    let got = mem.read_words(start, &mut words);
    if got != words.len() {
        return Err(format!(
            "cannot read the heap at {start:#x}-{end:#x} ({} of {} bytes read)",
            got * 8,
            end - start
        ));
    }
    Ok(Region { start, words })
}

/// Walk the chunks of `r` from `first`; `top`, when known, is free and ends the walk.
pub(super) fn walk_chunks(
    r: &Region,
    first: u64,
    top: Option<u64>,
    out: &mut Vec<Chunk>,
) -> Result<(), String> {
    let mut c = first;
    while c + 16 <= r.end() {
        if Some(c) == top {
            return Ok(());
        }
        let hdr = r.get(c + 8).unwrap_or(0);
        let size = hdr & !SIZE_BITS;
        if size < MINSIZE {
            // A fencepost: the end of an old heap.
            return Ok(());
        }
        let next = c + size;
        if next > r.end() || hdr & IS_MMAPPED != 0 {
            return Err(format!(
                "the heap at {:#x} looks damaged (a chunk at {c:#x} of size {size:#x} runs past it)",
                r.start
            ));
        }
        if next + 16 > r.end() {
            // Ends the region: the top chunk (free).
            return Ok(());
        }
        let in_use = r.get(next + 8).unwrap_or(0) & PREV_INUSE != 0;
        out.push(Chunk {
            addr: c,
            size,
            in_use,
        });
        c = next;
    }
    Ok(())
}

pub fn is_libc(m: &Mapping) -> bool {
    let f = m.name.rsplit('/').next().unwrap_or("");
    f.starts_with("libc.so") || (f.starts_with("libc-") && f.ends_with(".so"))
}

/// Find the main arena: in libc's writable data, the `malloc_state` whose top chunk is
/// the last chunk of `heap` (the `[heap]` mapping).
fn main_arena(mem: &mut Remote, maps: &[Mapping], heap: &Mapping) -> Option<u64> {
    for m in maps.iter().filter(|m| m.write && m.read) {
        // libc's data, and the anonymous mapping right after it (its .bss).
        let prev_libc = maps
            .iter()
            .take_while(|p| p.end <= m.start)
            .last()
            .is_some_and(|p| is_libc(p) && p.end == m.start);
        if !(is_libc(m) || (m.name.is_empty() && prev_libc)) {
            continue;
        }
        let mut words = vec![0u64; ((m.end - m.start) / 8) as usize];
        let n = mem.read_words(m.start, &mut words);
        words.truncate(n);
        let w = |a: u64| -> Option<u64> {
            a.checked_sub(m.start)
                .map(|o| (o / 8) as usize)
                .and_then(|i| words.get(i).copied())
        };
        let mut x = m.start;
        while x + MALLOC_STATE_SIZE <= m.start + 8 * words.len() as u64 {
            if let (Some(top), Some(sys)) = (w(x + AR_TOP), w(x + AR_SYSTEM_MEM)) {
                if top >= heap.start && top + 16 <= heap.end && top.is_multiple_of(16) && sys > 0 {
                    let top_size = mem.word(top + 8).unwrap_or(0) & !SIZE_BITS;
                    let next = w(x + AR_NEXT).unwrap_or(0);
                    if top + top_size == heap.start + sys && next != 0 {
                        return Some(x);
                    }
                }
            }
            x += 8;
        }
    }
    None
}

/// Whether a thread holds an arena's lock: it is inside malloc, free or realloc, moving
/// chunks between the arena's bins, its tcache and the program (a chunk taken from a bin
/// and not yet in the tcache, or not yet returned, is in no list and in none of the
/// program's variables: it would count as a block and as lost). The arenas are the main
/// arena and those on its `next` list; a lock is an int at the start of each, 0 when free.
/// (A single-threaded process takes no lock: this cannot tell, and says no.)
pub fn arena_locked(mem: &mut Remote, maps: &[Mapping]) -> bool {
    let Some(heap) = maps.iter().find(|m| m.name == "[heap]") else {
        return false;
    };
    let Some(main) = main_arena(mem, maps, heap) else {
        return false;
    };
    let mut arena = main;
    // glibc makes at most 8 arenas a core; the list is circular.
    for _ in 0..4096 {
        if mem.word(arena).is_some_and(|w| w as u32 != 0) {
            return true;
        }
        match mem.word(arena + AR_NEXT) {
            Some(next) if next != main && next != 0 => arena = next,
            _ => break,
        }
    }
    false
}

/// Chunks (header addresses) in an arena's fastbins.
fn fastbin_chunks(mem: &mut Remote, arena: u64, out: &mut HashSet<u64>) {
    for i in 0..NFASTBINS {
        let Some(mut p) = mem.word(arena + AR_FASTBINS + 8 * i) else {
            continue;
        };
        let mut n = 0;
        while p != 0 && p.is_multiple_of(16) && n < 1 << 22 && out.insert(p) {
            n += 1;
            let Some(stored) = mem.word(p + 16) else {
                break;
            };
            p = stored ^ ((p + 16) >> 12);
        }
    }
}

/// Chunks (header addresses) in the tcache structure at `tc` (a user address).
fn tcache_chunks(mem: &mut Remote, tc: u64, out: &mut HashSet<u64>) {
    let mut entries = [0u64; TCACHE_BINS as usize];
    if mem.read_words(tc + 2 * TCACHE_BINS, &mut entries) != entries.len() {
        return;
    }
    for &head in &entries {
        let mut e = head;
        let mut n = 0;
        while e != 0 && e.is_multiple_of(16) && n < 1 << 16 && out.insert(e - 16) {
            n += 1;
            let Some(stored) = mem.word(e) else { break };
            e = stored ^ (e >> 12);
        }
    }
}

/// Whether `t` (a user address in the copied heap) looks like a tcache structure: a
/// chunk of the tcache's size (or 16 bytes more) whose 64 counts and 64 entries agree
/// (an entry exactly when its count is not zero, each entry a free chunk of its bin's
/// size), but in at most
/// `unsettled` bins, whose count and entry may disagree: a thread stopped inside glibc's
/// `tcache_put` or `tcache_get` has stored one and not yet the other.
fn is_tcache(heap: &Copied, t: u64, unsettled: usize) -> bool {
    // Its chunk may be up to MINSIZE - 16 bytes larger than asked for: `_int_malloc`
    // hands out a free chunk whole when what would be left is too small to be a chunk.
    let size = heap.get(t - 8).map(|h| h & !SIZE_BITS);
    if !t.is_multiple_of(16)
        || !size.is_some_and(|s| (TCACHE_CHUNK..TCACHE_CHUNK + MINSIZE).contains(&s))
    {
        return false;
    }
    let mut disagree = 0;
    for i in 0..TCACHE_BINS {
        let Some(counts) = heap.get(t + (2 * i) / 8 * 8) else {
            return false;
        };
        let count = (counts >> (16 * (i % 4))) & 0xffff;
        let Some(entry) = heap.get(t + 2 * TCACHE_BINS + 8 * i) else {
            return false;
        };
        if (count == 0) != (entry == 0) {
            disagree += 1;
            if disagree > unsettled {
                return false;
            }
        }
        if entry != 0
            && (!entry.is_multiple_of(16)
                || heap.get(entry - 8).map(|h| h & !SIZE_BITS) != Some(MINSIZE + 16 * i))
        {
            return false;
        }
    }
    true
}

/// Each thread's tcache structure (user address), found through glibc's `tcache` TLS
/// variable: at the same offset from every thread's thread pointer, a word in the
/// thread's static TLS that points to a tcache structure. The offset most threads agree
/// on is the variable's.
fn tcaches(mem: &mut Remote, tps: &[u64], heap: &Copied) -> Vec<u64> {
    const SPAN: u64 = 64 * 1024;
    const PAGE: u64 = 4096;
    let mut offsets: Vec<u64> = Vec::new();
    for &tp in tps {
        // Page by page down from the thread pointer, as far as memory is mapped: the
        // main thread's static TLS lies in a mapping that starts a few hundred bytes
        // below it, where a read of the whole span would fail at its first page.
        let mut words = vec![0u64; (PAGE / 8) as usize];
        let mut page = tp & !(PAGE - 1);
        while page + SPAN > tp {
            let n = mem.read_words(page, &mut words);
            for (k, &w) in words[..n].iter().enumerate() {
                let at = page + 8 * k as u64;
                if at < tp && w > 16 && heap.get(w - 8).is_some() && is_tcache(heap, w, 0) {
                    offsets.push(tp - at);
                }
            }
            if n < words.len() || page < PAGE {
                break;
            }
            page -= PAGE;
        }
    }
    offsets.sort_unstable();
    let mut best: Option<(u64, usize)> = None;
    for o in offsets.chunk_by(|a, b| a == b) {
        if best.is_none_or(|b| o.len() > b.1) {
            best = Some((o[0], o.len()));
        }
    }
    let Some((off, _)) = best else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for &tp in tps {
        // At the variable's offset, a thread's tcache may be in the middle of an update.
        if let Some(t) = mem.word(tp - off) {
            if t != 0 && is_tcache(heap, t, 1) {
                out.push(t);
            }
        }
    }
    out
}

/// Walk every arena and mmapped chunk of the stopped process. `tps` are the threads'
/// thread pointers; `not_mmapped` are ranges never to look into for mmapped chunks (the
/// threads' stacks, the recorder's memory).
pub fn walk(
    mem: &mut Remote,
    maps: &[Mapping],
    tps: &[u64],
    not_mmapped: &[(u64, u64)],
) -> Result<Walk, String> {
    let mut regions: Vec<Region> = Vec::new();
    let mut free: HashSet<u64> = HashSet::new();
    let mut warnings = Vec::new();
    let mut heap_ranges = Vec::new();
    let mut arenas = 0;
    // (region start, first chunk, top) of each heap to walk.
    let mut walks: Vec<(u64, u64, Option<u64>)> = Vec::new();

    let debug = std::env::var_os("MEMLENS_SNAPSHOT_DEBUG").is_some();
    let t0 = std::time::Instant::now();
    // The main arena.
    if let Some(h) = maps.iter().find(|m| m.name == "[heap]") {
        let r = copy(mem, h.start, h.end)?;
        heap_ranges.push((h.start, h.end));
        let arena = main_arena(mem, maps, h);
        let top = arena.and_then(|a| mem.word(a + AR_TOP));
        match arena {
            Some(a) => {
                fastbin_chunks(mem, a, &mut free);
                arenas += 1;
            }
            None => warnings.push(
                "glibc's main arena was not found: blocks in its fastbins (freed, of 16 to \
                 128 bytes) may be counted as live"
                    .to_string(),
            ),
        }
        walks.push((h.start, h.start, top));
        regions.push(r);
    }
    // The other arenas' heaps.
    for m in maps
        .iter()
        .filter(|m| m.read && m.write && m.name.is_empty())
    {
        if !is_arena_heap(mem, m.start, m.end) {
            continue;
        }
        let r = copy(mem, m.start, m.end)?;
        heap_ranges.push((m.start, m.end));
        let ar = r.get(m.start).unwrap_or(0);
        let first = if ar == m.start + HEAP_INFO_SIZE {
            arenas += 1;
            fastbin_chunks(mem, ar, &mut free);
            (ar + MALLOC_STATE_SIZE + 15) & !15
        } else {
            m.start + HEAP_INFO_SIZE
        };
        walks.push((m.start, first, mem.word(ar + AR_TOP)));
        regions.push(r);
    }
    if debug {
        eprintln!("snapshot: heaps copied at {:?}", t0.elapsed());
    }
    regions.sort_unstable_by_key(|r| r.start);
    let mut memory = Copied { regions };
    // Every thread's tcache.
    let tcs = tcaches(mem, tps, &memory);
    for &tc in &tcs {
        tcache_chunks(mem, tc, &mut free);
    }
    if tcs.is_empty() && !walks.is_empty() {
        warnings.push(
            "no thread's tcache was found: blocks freed into it may be counted as live".into(),
        );
    }
    // Chunk headers not to count as blocks: cached free chunks and the tcache structures.
    let mut skip: Vec<u64> = free.into_iter().chain(tcs.iter().map(|t| t - 16)).collect();
    skip.sort_unstable();
    skip.dedup();
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut blocks: Vec<(u64, u64)> = Vec::new();
    let mut cached_free = 0;
    for (start, first, top) in walks {
        chunks.clear();
        let Some(r) = memory.regions.iter().find(|r| r.start == start) else {
            continue;
        };
        walk_chunks(r, first, top, &mut chunks)?;
        blocks.reserve(chunks.len());
        for c in chunks.iter().filter(|c| c.in_use) {
            if !skip.is_empty() && skip.binary_search(&c.addr).is_ok() {
                cached_free += 1;
                continue;
            }
            blocks.push((c.addr + 16, c.size - 8));
        }
    }
    // (The tcache structures are no free chunks.)
    cached_free -= tcs.len().min(cached_free);
    if debug {
        eprintln!("snapshot: arenas walked at {:?}", t0.elapsed());
    }
    // mmapped chunks.
    let mut mmapped = 0;
    for m in maps.iter().filter(|m| {
        m.read && m.write && !m.shared && (m.name.is_empty() || m.name.starts_with("[anon"))
    }) {
        if heap_ranges.iter().any(|&(s, e)| s < m.end && m.start < e)
            || not_mmapped.iter().any(|&(s, e)| s < m.end && m.start < e)
        {
            continue;
        }
        let mut a = m.start;
        while a + 16 <= m.end {
            let mut hdr = [0u64; 2];
            if mem.read_words(a, &mut hdr) != 2 {
                a += 4096;
                continue;
            }
            let [prev, head] = hdr;
            let size = head & !SIZE_BITS;
            let chunk = a.wrapping_add(prev);
            let ok = head & SIZE_BITS == IS_MMAPPED
                && prev.is_multiple_of(16)
                && prev < (1 << 32)
                && size >= 4096
                && (chunk + size).is_multiple_of(4096)
                && chunk + size <= m.end
                && chunk + 16 <= m.end
                && {
                    // The real header sits at the chunk (prev is the alignment gap).
                    prev == 0 || mem.word(chunk + 8) == Some(head)
                };
            if !ok {
                a += 4096;
                continue;
            }
            let r = copy(mem, chunk, chunk + size)?;
            heap_ranges.push((a, chunk + size));
            blocks.push((chunk + 16, size - 16));
            memory.regions.push(r);
            mmapped += 1;
            a = chunk + size;
        }
    }
    blocks.sort_unstable();
    memory.regions.sort_unstable_by_key(|r| r.start);
    if debug {
        eprintln!("snapshot: mmapped chunks and sort at {:?}", t0.elapsed());
    }
    Ok(Walk {
        blocks,
        memory,
        heap_ranges,
        arenas,
        mmapped,
        cached_free,
        warnings,
    })
}

#[cfg(test)]
mod tcache_tests {
    use super::*;

    /// A heap copy at 0x1000 holding a tcache structure (its chunk at 0x1000, the
    /// structure at 0x1010) and, for bin 1 (48-byte chunks), one free chunk at 0x2000,
    /// with bin 1's count `count` and entry `entry`; the same for bin 3 when `second`.
    fn heap(count: u64, entry: bool, second: bool) -> (Copied, u64) {
        let start = 0x1000u64;
        let mut words = vec![0u64; (0x1100 / 8) as usize];
        let set = |w: &mut Vec<u64>, a: u64, v: u64| w[((a - start) / 8) as usize] = v;
        let t = start + 16;
        set(&mut words, t - 8, TCACHE_CHUNK | 1);
        // Counts are u16s: bin i's in word i / 4, at bits 16 * (i % 4).
        set(
            &mut words,
            t,
            count << 16 | if second { 1 << 48 } else { 0 },
        );
        let chunk = 0x2000u64;
        if entry {
            set(&mut words, t + 2 * TCACHE_BINS + 8, chunk + 16);
        }
        set(&mut words, chunk + 8, (MINSIZE + 16) | 1);
        let chunk3 = 0x2080u64;
        set(&mut words, chunk3 + 8, (MINSIZE + 48) | 1);
        (
            Copied {
                regions: vec![Region { start, words }],
            },
            t,
        )
    }

    /// Count and entry agree: a tcache. One bin between glibc's two stores (a thread
    /// stopped in `tcache_put` or `tcache_get`): a tcache only when one bin may be
    /// unsettled, as for a thread's own tcache at the agreed offset. Two: not one.
    #[test]
    fn a_tcache_in_the_middle_of_an_update_is_still_one() {
        let (h, t) = heap(1, true, false);
        assert!(is_tcache(&h, t, 0));
        let (h, t) = heap(0, true, false);
        assert!(!is_tcache(&h, t, 0));
        assert!(is_tcache(&h, t, 1));
        let (h, t) = heap(1, false, false);
        assert!(!is_tcache(&h, t, 0));
        assert!(is_tcache(&h, t, 1));
        let (h, t) = heap(0, true, true);
        assert!(!is_tcache(&h, t, 1));
    }

    /// A thread that starts when the arena has free chunks may get a chunk 16 bytes
    /// larger than the tcache's for its tcache (the rest would be too small to split
    /// off). Still a tcache; a chunk 32 bytes larger is not one.
    #[test]
    fn a_tcache_in_a_chunk_sixteen_bytes_larger_is_still_one() {
        let header = |size: u64| {
            let (mut h, t) = heap(1, true, false);
            let w = &mut h.regions[0].words;
            w[((t - 8 - 0x1000) / 8) as usize] = size | 1;
            (h, t)
        };
        let (h, t) = header(TCACHE_CHUNK + 16);
        assert!(is_tcache(&h, t, 0));
        let (h, t) = header(TCACHE_CHUNK + 32);
        assert!(!is_tcache(&h, t, 0));
        let (h, t) = header(TCACHE_CHUNK - 16);
        assert!(!is_tcache(&h, t, 0));
    }
}
