//! "What holds the memory": for each reachable block, the one root it is reachable
//! through, if only one.
//!
//! In the graph of reachable blocks with a virtual super-root above every holder (a
//! global variable, a thread's stack and registers, another mapping), a block whose
//! immediate dominator is not the super-root is dominated by exactly one holder: every
//! chain from a root to it starts at that holder. Each block gets a label: the holder
//! every chain to it starts from, or "shared" when chains start from several. Labels only
//! move down (unset -> a holder -> shared), so a worklist that re-scans a block when its
//! label changes ends after at most two visits per block: linear in the heap's pointers.

use memlens_reach::{BlockMemory, Cursor, Heap, Marks, Reader};

/// Reachable through several holders.
pub const SHARED: u32 = u32::MAX - 1;
/// Not reachable (or not yet labelled).
pub const NONE: u32 = u32::MAX;

struct Labels<'a, M: BlockMemory> {
    heap: &'a Heap,
    mem: &'a M,
    marks: &'a Marks,
    label: Vec<u32>,
    queue: Vec<u32>,
}

impl<M: BlockMemory> Labels<'_, M> {
    #[inline]
    fn offer(&mut self, w: u64, h: u32, from: Option<u32>) {
        if w < self.heap.min || w >= self.heap.max {
            return;
        }
        let Some(b) = self.heap.find(w) else { return };
        if Some(b) == from || !self.marks.reachable(b as usize) {
            return;
        }
        // As the marker: a pointer to the next chunk's header (glibc's bins, tcache, top)
        // lands on the last word of a block whose size fills its chunk: not the program's.
        let (start, meta) = self.heap.blocks[b as usize];
        if w != start && memlens_reach::size_of(meta) >= 8 && self.heap.readable[b as usize] {
            let hdr = self.mem.word(start - 8);
            if w == start - 16 + (hdr & !7) {
                return;
            }
        }
        let cur = self.label[b as usize];
        let new = if cur == NONE || cur == h { h } else { SHARED };
        if new != cur {
            self.label[b as usize] = new;
            self.queue.push(b);
        }
    }
}

/// Label every block. `ranges` are the root ranges with their holder ids per word
/// (`holder_at(range index, address)`), `regs` the register sets with theirs.
pub fn label<M: BlockMemory>(
    heap: &Heap,
    mem: &M,
    marks: &Marks,
    reader: &mut dyn Reader,
    ranges: &[(u64, u64)],
    holder_at: &mut dyn FnMut(usize, u64) -> u32,
    regs: &[(&[u64], u32)],
) -> Vec<u32> {
    let mut l = Labels {
        heap,
        mem,
        marks,
        label: vec![NONE; heap.blocks.len()],
        queue: Vec::new(),
    };
    let mut buf = vec![0u64; 8192];
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let mut cur = Cursor::new(lo, hi);
        while let Some((at, n)) = cur.next(reader, &mut buf) {
            for (k, &w) in buf[..n].iter().enumerate() {
                if w >= heap.min && w < heap.max && heap.find(w).is_some() {
                    let h = holder_at(i, at + 8 * k as u64);
                    l.offer(w, h, None);
                }
            }
        }
    }
    for &(set, h) in regs {
        for &w in set {
            l.offer(w, h, None);
        }
    }
    while let Some(b) = l.queue.pop() {
        let h = l.label[b as usize];
        for &w in heap.words(mem, b as usize) {
            l.offer(w, h, Some(b));
        }
    }
    l.label
}
