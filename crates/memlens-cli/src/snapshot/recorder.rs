//! What the recorder (`libmemlens_preload.so`, when the process runs under `memlens run`)
//! knows, read from outside through the symbols it exports for this: its own memory
//! (never a root) and its live-block table (each block's requested size, allocating
//! function, and whether the recorder itself allocated it), so that a snapshot of a
//! recorded process sees the blocks exactly as its exit scan would.
//!
//! The layouts are the recorder's (`memlens-preload/src/own_memory.rs`, `live.rs`): a
//! count and two arrays of 4096 starts and lengths; 256 shards of {lock, table pointer,
//! cap, cap_inverse} (32 bytes, `repr(C)`), each table a {cap, count, cap_inverse} header
//! then `cap` slots of `memlens_reach::live_slot`'s layout (the one the recorder packs
//! them with).

use super::remote::{Mapping, Remote};
use memlens_reach::BlockMemory;
use memlens_trace::AllocFunc;
use std::collections::HashMap;

/// Whether a mapping is the recorder library's.
pub fn is_recorder(m: &Mapping) -> bool {
    m.name.ends_with("/libmemlens_preload.so")
}

/// The regions the recorder registered as its own memory, read from its exported table
/// (`memlens_own_memory_*`, see `memlens-preload/src/own_memory.rs`). Empty when the
/// recorder is not loaded.
pub fn recorder_memory(mem: &mut Remote, syms: &HashMap<String, u64>) -> Vec<(u64, u64)> {
    let (Some(&count), Some(&starts), Some(&lens)) = (
        syms.get("memlens_own_memory_count"),
        syms.get("memlens_own_memory_starts"),
        syms.get("memlens_own_memory_lens"),
    ) else {
        return Vec::new();
    };
    const MAX_REGIONS: usize = 4096;
    let n = (mem.word(count).unwrap_or(0) as usize).min(MAX_REGIONS);
    let mut s = vec![0u64; n];
    let mut l = vec![0u64; n];
    mem.read_words(starts, &mut s);
    mem.read_words(lens, &mut l);
    s.into_iter()
        .zip(l)
        .filter(|&(_, l)| l != 0)
        .map(|(s, l)| (s, s + l))
        .collect()
}

/// The recorder's exported `memlens_*` symbols, at their run-time addresses (none when
/// the recorder is not loaded).
pub fn symbols(maps: &[Mapping]) -> HashMap<String, u64> {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let mut out = HashMap::new();
    let Some(lib) = maps.iter().find(|m| is_recorder(m) && m.offset == 0) else {
        return out;
    };
    let Ok(data) = std::fs::read(&lib.name) else {
        return out;
    };
    let Ok(file) = object::File::parse(&*data) else {
        return out;
    };
    let first_vaddr = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
    let bias = lib.start.wrapping_sub(first_vaddr);
    for s in file.dynamic_symbols() {
        if let Ok(name) = s.name() {
            if name.starts_with("memlens_") {
                out.insert(name.to_string(), bias.wrapping_add(s.address()));
            }
        }
    }
    out
}

/// The heap blocks of the recorder's own thread (`memlens-rss`) that its live table
/// cannot know: glibc's dynamic thread vector (DTV), which `pthread_create` callocs for a
/// new thread in the creating thread, before the new one runs. Under `memlens attach` the
/// recorder starts that thread from a call the allocation functions were not yet routed
/// for, so the block would otherwise count as the program's (and as definitely lost: the
/// thread's control block, which points to it, lies in the recorder's own memory). On
/// x86_64 the thread pointer's word at +8 is `tcbhead_t.dtv`, which points one 16-byte
/// `dtv_t` past the start of the block.
pub fn own_thread_blocks(
    mem: &mut Remote,
    syms: &HashMap<String, u64>,
    threads: &[super::ptrace::Thread],
) -> Vec<u64> {
    let Some(tid) = syms
        .get("memlens_sampler_tid")
        .and_then(|&a| mem.word(a))
        .map(|w| w as u32)
        .filter(|&t| t != 0)
    else {
        return Vec::new();
    };
    threads
        .iter()
        .filter(|t| t.tid == tid && t.tp != 0)
        .filter_map(|t| mem.word(t.tp + 8))
        .filter(|&dtv| dtv >= 16)
        .map(|dtv| dtv - 16)
        .collect()
}

/// Link maps `memlens_loader_maps` holds (`memlens-preload/src/attach/mod.rs`).
const LOADER_MAPS_MAX: u64 = 16;
/// Offsets in glibc's `struct link_map` (`<link.h>`, its public head).
const LINK_MAP_NEXT: u64 = 24;
const LINK_MAP_PREV: u64 = 32;
/// Link maps followed at most in either direction (a loop guard).
const LINK_MAPS_MAX: usize = 1 << 16;

/// The heap blocks ld.so allocated for the recorder when `memlens attach` loaded it with
/// `dlopen` (under `memlens run` ld.so uses its own memory, and there are none): for the
/// link maps the recorder noted (its own and those of the libraries loaded with it,
/// `memlens_loader_maps`), the block holding each link map, the blocks it points to
/// (its name, origin, search list, version table...) and the blocks those point to,
/// never a block holding another library's link map; and the loader's table of
/// `dlopen`ed objects (`_dl_find_object`'s segments) that lists them. The loader's own
/// data points into such a segment, whose second word is the block's start (`to_free`).
/// They are the recorder's footprint, left out like the recorder's other blocks.
pub fn loader_blocks(
    mem: &mut Remote,
    syms: &HashMap<String, u64>,
    maps: &[Mapping],
    blocks: &[(u64, u64)],
    heap: &super::glibc::Copied,
) -> Vec<u64> {
    let Some(&at) = syms.get("memlens_loader_maps") else {
        return Vec::new();
    };
    let ours: Vec<u64> = (0..LOADER_MAPS_MAX)
        .map_while(|i| mem.word(at + 8 * i).filter(|&w| w != 0))
        .collect();
    let Some(&first) = ours.first() else {
        return Vec::new();
    };
    // Every link map in the loader's list, to never take another library's.
    let mut all = std::collections::HashSet::new();
    for link in [LINK_MAP_NEXT, LINK_MAP_PREV] {
        let mut p = first;
        while p != 0 && all.len() < LINK_MAPS_MAX && (p == first || all.insert(p)) {
            p = mem.word(p + link).unwrap_or(0);
        }
    }
    let block_of = |a: u64| -> Option<(u64, u64)> {
        let i = blocks.partition_point(|&(s, _)| s <= a);
        (i > 0 && a < blocks[i - 1].0 + blocks[i - 1].1).then(|| blocks[i - 1])
    };
    let foreign: std::collections::HashSet<u64> = all
        .iter()
        .filter(|lm| !ours.contains(lm))
        .filter_map(|&lm| block_of(lm).map(|b| b.0))
        .collect();
    let mut found: Vec<u64> = Vec::new();
    let mut level: Vec<(u64, u64)> = ours.iter().filter_map(|&lm| block_of(lm)).collect();
    level.retain(|b| !foreign.contains(&b.0));
    for depth in 0..3 {
        let mut next = Vec::new();
        for &(start, size) in &level {
            if found.contains(&start) {
                continue;
            }
            found.push(start);
            if depth == 2 {
                continue;
            }
            for &w in heap.words(start, (size / 8) as usize) {
                let Some(b) = block_of(w) else {
                    continue;
                };
                if b.0 != start && !foreign.contains(&b.0) && !found.contains(&b.0) {
                    next.push(b);
                }
            }
        }
        level = next;
    }
    // `_dl_find_object`'s segments, pointed into from ld.so's writable data.
    for m in maps
        .iter()
        .filter(|m| m.write && m.name.contains("/ld-linux"))
    {
        let mut words = vec![0u64; ((m.end - m.start) / 8) as usize];
        let n = mem.read_words(m.start, &mut words);
        for &w in &words[..n] {
            let Some((start, size)) = block_of(w) else {
                continue;
            };
            let lists_ours = || {
                heap.words(start, (size / 8) as usize)
                    .iter()
                    .any(|v| ours.contains(v))
            };
            if w > start
                && heap.get(w + 8) == Some(start)
                && !found.contains(&start)
                && lists_ours()
            {
                found.push(start);
            }
        }
    }
    found
}

/// A block as the recorder's live table has it.
#[derive(Clone, Copy, Debug)]
pub struct Recorded {
    pub size: u64,
    pub func: AllocFunc,
    /// Allocated on the recorder's behalf (by a libc function it called).
    pub internal: bool,
}

const SHARDS: usize = 256;
const SHARD_BYTES: u64 = 32;
const TABLE_HEADER: u64 = 24;
use memlens_reach::live_slot::{Slot, SLOT_BYTES};

/// The recorder's live table as copied from the process (its shards' slots), decoded by
/// [`RawTable::decode`] once the process runs again.
pub struct RawTable {
    shards: Vec<Vec<u8>>,
}

/// Copy the recorder's live table; `None` when the recorder is not loaded (or its table
/// cannot be read).
pub fn live_table(mem: &mut Remote, syms: &HashMap<String, u64>) -> Option<RawTable> {
    let &table = syms.get("memlens_live_table")?;
    let mut shards = vec![0u64; SHARDS * (SHARD_BYTES / 8) as usize];
    if mem.read_words(table, &mut shards) != shards.len() {
        return None;
    }
    let mut out = Vec::with_capacity(SHARDS);
    for s in 0..SHARDS {
        let t = shards[s * 4 + 1];
        if t == 0 {
            continue;
        }
        let cap = mem.word(t)? as usize;
        if cap > 1 << 34 {
            return None;
        }
        let mut slots = vec![0u8; cap * SLOT_BYTES];
        if mem.read_bytes(t + TABLE_HEADER, &mut slots) != slots.len() {
            return None;
        }
        out.push(slots);
    }
    Some(RawTable { shards: out })
}

impl RawTable {
    /// The blocks, by address.
    pub fn decode(&self) -> HashMap<u64, Recorded> {
        let n: usize = self.shards.iter().map(|s| s.len() / SLOT_BYTES).sum();
        let mut out = HashMap::with_capacity(n / 2);
        for slot in self.shards.iter().flat_map(|s| s.chunks_exact(SLOT_BYTES)) {
            let word = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().unwrap_or_default());
            let s = Slot::unpack([word(0), word(8)]);
            if s.key == 0 {
                continue;
            }
            out.insert(
                s.key << 4,
                Recorded {
                    size: s.size,
                    func: AllocFunc::from_u8(s.func).unwrap_or(AllocFunc::Malloc),
                    internal: s.internal,
                },
            );
        }
        out
    }
}

/// Ask the recorder to write every thread's buffered events into its trace, and wait
/// (up to `patience`) for it to say it has. Whether it did.
pub fn flush(mem: &mut Remote, syms: &HashMap<String, u64>, patience: std::time::Duration) -> bool {
    let (Some(&req), Some(&done)) = (
        syms.get("memlens_flush_request"),
        syms.get("memlens_flush_done"),
    ) else {
        return false;
    };
    let Some(cur) = mem.word(req) else {
        return false;
    };
    let want = cur.wrapping_add(1);
    if !mem.write_word(req, want) {
        return false;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < patience {
        if mem.word(done) == Some(want) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    false
}

/// The trace file the recorder in `pid` writes: the `*.trace` file among its open files
/// whose header names this process.
pub fn trace_of(pid: u32) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.extension().is_some_and(|x| x == "trace") && target.is_file() {
            if let Ok(r) = memlens_trace::reader::TraceReader::open(&target) {
                if r.header().pid == pid {
                    return Some(target);
                }
            }
        }
    }
    None
}
