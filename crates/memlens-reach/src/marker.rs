//! memcheck's marking (breadth first from the roots, then cliques in address order) into
//! one verdict per block.

use crate::heap::{size_of, Heap, Map};
use crate::{BlockMemory, Cursor, Reader};
use alloc::vec::Vec;
use memlens_trace::{BlockLink, BlockState, Heuristic};

pub(crate) const UNREACHED: u8 = 0;
pub(crate) const POSSIBLE: u8 = 1;
pub(crate) const REACHABLE: u8 = 2;
pub(crate) const STATE_MASK: u8 = 3;
pub(crate) const CLAIMED: u8 = 1 << 5;
pub(crate) const LEADER: u8 = 1 << 6;
pub(crate) const HEUR_SHIFT: u8 = 2;

pub(crate) const ROOT_LINK: u64 = 1 << 63;

struct Marker<'a, M: BlockMemory> {
    heap: &'a Heap,
    blocks: &'a M,
    maps: &'a [Map],
    state: Vec<u8>,
    link: Vec<u64>,
    queue: Vec<u32>,
    heuristics: u32,
    /// Root memory and the file mappings a vtable check looks into are read through this
    /// (never faulting); heap blocks through `blocks`.
    mem: &'a mut dyn Reader,
    buf: Vec<u64>,
}

impl<M: BlockMemory> Marker<'_, M> {
    fn map_of(&self, a: u64) -> Option<&Map> {
        let i = self.maps.partition_point(|m| m.start <= a);
        (i > 0 && a < self.maps[i - 1].end).then(|| &self.maps[i - 1])
    }

    /// memcheck's aligned_ptr_above_page0_is_vtable_addr: in a readable file mapping,
    /// and one of its first entries points into executable file-backed code.
    fn looks_like_vtable(&mut self, p: u64) -> bool {
        if p < 4096 || !p.is_multiple_of(8) {
            return false;
        }
        let Some(m) = self.map_of(p) else {
            return false;
        };
        if !m.file {
            return false;
        }
        // A file mapping may end in pages past the end of its file: read safely.
        let n = (((m.end - p) / 8) as usize).min(20);
        let mut entries = [0u64; 20];
        let got = self.mem.read(p, &mut entries[..n]);
        entries[..got]
            .iter()
            .any(|&pc| self.map_of(pc).is_some_and(|t| t.exec && t.file))
    }

    fn word(&self, b: usize, off: u64) -> Option<u64> {
        let (start, meta) = self.heap.blocks[b];
        if !self.heap.readable[b] || off + 8 > size_of(meta) || !off.is_multiple_of(8) {
            return None;
        }
        Some(self.blocks.words(start + off, 1)[0])
    }

    /// Which heuristic accepts an interior pointer `w` into block `b`.
    fn heuristic(&mut self, w: u64, b: usize) -> Option<Heuristic> {
        let (start, meta) = self.heap.blocks[b];
        let size = size_of(meta);
        let on = |h: Heuristic| self.heuristics & (1 << h as u32) != 0;
        if on(Heuristic::StdString) && w == start + 24 {
            if let (Some(len), Some(cap)) = (self.word(b, 0), self.word(b, 8)) {
                if size == cap.wrapping_add(25) && len <= cap {
                    return Some(Heuristic::StdString);
                }
            }
        }
        if w == start + 8 {
            if on(Heuristic::Length64) {
                if let Some(n) = self.word(b, 0) {
                    if n > 0 && size >= 8 && size - 8 == n {
                        return Some(Heuristic::Length64);
                    }
                }
            }
            if on(Heuristic::NewArray) {
                if let Some(n) = self.word(b, 0) {
                    if n > 0 && size >= 8 && (size - 8).is_multiple_of(n) {
                        return Some(Heuristic::NewArray);
                    }
                }
            }
        }
        if on(Heuristic::MultipleInheritance) && w.is_multiple_of(8) && w + 8 <= start + size {
            if let (Some(first), Some(inner)) = (self.word(b, 0), self.word(b, w - start)) {
                if self.looks_like_vtable(inner) && self.looks_like_vtable(first) {
                    return Some(Heuristic::MultipleInheritance);
                }
            }
        }
        None
    }

    /// A pointer `w` read from a root (`src_block == None`) or from block `src_block`.
    #[inline]
    fn reach(&mut self, w: u64, src: u64, src_block: Option<u32>) {
        let Some(b) = self.heap.find(w) else {
            return;
        };
        if Some(b) == src_block {
            return;
        }
        let bi = b as usize;
        let (start, meta) = self.heap.blocks[bi];
        let definite_src = match src_block {
            None => true,
            Some(s) => self.state[s as usize] & STATE_MASK == REACHABLE,
        };
        let mut heur = None;
        if w != start {
            // A pointer to the next chunk's header (glibc's bins, tcache, top) lands on
            // the last word of a block whose size fills its chunk: not the program's.
            if size_of(meta) >= 8 && self.heap.readable[bi] {
                let hdr = self.blocks.word(start - 8);
                if w == start - 16 + (hdr & !7) {
                    return;
                }
            }
            if definite_src {
                heur = self.heuristic(w, bi);
            }
        }
        let new = if definite_src && (w == start || heur.is_some()) {
            REACHABLE
        } else {
            POSSIBLE
        };
        let cur = self.state[bi] & STATE_MASK;
        if new > cur {
            let h = heur.map_or(0, |h| h as u8);
            self.state[bi] = new | h << HEUR_SHIFT;
            self.link[bi] = src;
            self.queue.push(b);
        } else if new == REACHABLE && cur == REACHABLE && heur.is_none() {
            // Reached by a plain start pointer after a heuristic: plainly reachable.
            self.state[bi] &= !(7 << HEUR_SHIFT);
        }
    }

    /// Mark from the words of root memory `[lo, hi)`; what cannot be read is skipped.
    fn scan_range(&mut self, lo: u64, hi: u64, root: u32) {
        let mut buf = core::mem::take(&mut self.buf);
        let (min, max) = (self.heap.min, self.heap.max);
        let mut cur = Cursor::new(lo, hi);
        while let Some((at, n)) = cur.next(&mut *self.mem, &mut buf) {
            for (k, &w) in buf[..n].iter().enumerate() {
                if w >= min && w < max {
                    let a = at + 8 * k as u64;
                    self.reach(
                        w,
                        ROOT_LINK | (root as u64) << 48 | (a & 0xFFFF_FFFF_FFFF),
                        None,
                    );
                }
            }
        }
        self.buf = buf;
    }

    fn scan_block(&mut self, b: u32) {
        let (heap, blocks) = (self.heap, self.blocks);
        for &w in heap.words(blocks, b as usize) {
            if w >= heap.min && w < heap.max {
                self.reach(w, b as u64 + 1, Some(b));
            }
        }
    }

    fn drain(&mut self) {
        let mut head = 0;
        while head < self.queue.len() {
            let b = self.queue[head];
            head += 1;
            self.scan_block(b);
        }
        self.queue.clear();
    }

    /// memcheck's cliques, in ascending address order.
    fn cliques(&mut self) {
        let n = self.heap.blocks.len();
        let mut stack: Vec<u32> = Vec::new();
        for leader in 0..n {
            if self.state[leader] & (STATE_MASK | CLAIMED) != UNREACHED {
                continue;
            }
            self.state[leader] |= CLAIMED | LEADER;
            stack.push(leader as u32);
            while let Some(j) = stack.pop() {
                let (heap, blocks) = (self.heap, self.blocks);
                for &w in heap.words(blocks, j as usize) {
                    let Some(b) = heap.find(w) else {
                        continue;
                    };
                    let bi = b as usize;
                    if bi == leader || self.state[bi] & STATE_MASK != UNREACHED {
                        continue;
                    }
                    if self.state[bi] & CLAIMED == 0 {
                        self.state[bi] |= CLAIMED;
                        self.link[bi] = leader as u64 + 1;
                        stack.push(b);
                    } else if self.state[bi] & LEADER != 0 {
                        // An earlier clique's leader: it and its clique join this one.
                        self.state[bi] &= !LEADER;
                        self.link[bi] = leader as u64 + 1;
                    }
                }
            }
        }
    }
}

/// The marker's answer: a state byte and a link per block, in address order.
pub struct Marks {
    state: Vec<u8>,
    link: Vec<u64>,
}

impl Marks {
    /// Block `i`'s kind, the heuristic that saved it, and its parent or clique leader.
    pub fn verdict(&self, i: usize) -> (BlockState, Option<Heuristic>, BlockLink) {
        let s = self.state[i];
        let state = match s & STATE_MASK {
            REACHABLE => BlockState::StillReachable,
            POSSIBLE => BlockState::PossiblyLost,
            _ if s & LEADER != 0 => BlockState::DefinitelyLost,
            _ => BlockState::IndirectlyLost,
        };
        let l = self.link[i];
        let link = if l == 0 {
            BlockLink::None
        } else if l & ROOT_LINK != 0 {
            BlockLink::Root {
                root: ((l >> 48) & 0x7fff) as u32,
                addr: l & 0xFFFF_FFFF_FFFF,
            }
        } else {
            BlockLink::Block((l - 1) as u32)
        };
        (state, Heuristic::from_u8((s >> HEUR_SHIFT) & 7), link)
    }

    /// Whether block `i` is reachable (from a start pointer or a heuristic's).
    pub fn reachable(&self, i: usize) -> bool {
        self.state[i] & STATE_MASK == REACHABLE
    }
}

/// memcheck's marking: from each root range in turn (root ids 0, 1, ...), then from each
/// register set (ids after the ranges), breadth first; then cliques. Root memory and
/// vtables are read through `mem`, the blocks' words through `blocks`.
pub fn mark<M: BlockMemory>(
    heap: &Heap,
    blocks: &M,
    maps: &[Map],
    mem: &mut dyn Reader,
    heuristics: u32,
    ranges: &[(u64, u64)],
    reg_sets: &[&[u64]],
) -> Marks {
    let n = heap.blocks.len();
    let mut mk = Marker {
        heap,
        blocks,
        maps,
        state: alloc::vec![0u8; n],
        link: alloc::vec![0u64; n],
        queue: Vec::new(),
        heuristics,
        mem,
        buf: alloc::vec![0u64; 8192],
    };
    for (id, &(lo, hi)) in ranges.iter().enumerate() {
        mk.scan_range(lo, hi, (id as u32).min(0x7fff));
        mk.drain();
    }
    let reg_base = ranges.len() as u32;
    for (k, regs) in reg_sets.iter().enumerate() {
        for &w in regs.iter() {
            if w >= heap.min && w < heap.max {
                let rid = (reg_base + k as u32).min(0x7fff);
                mk.reach(w, ROOT_LINK | (rid as u64) << 48, None);
            }
        }
        mk.drain();
    }
    mk.cliques();
    Marks {
        state: mk.state,
        link: mk.link,
    }
}
