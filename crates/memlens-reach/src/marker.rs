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

/// A CPython object's reference count: far below any address (an immortal object's is
/// at most 2^32; objects on the interpreter's free lists have 0).
#[inline]
fn plausible_refcount(refs: u64) -> bool {
    refs < 1 << 40
}

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
    /// CPython's `PyType_Type` (0 in other processes): the pyobject heuristic's anchor.
    py_type_type: u64,
    /// Addresses found to be Python types, sorted.
    py_types: Vec<u64>,
    /// Addresses found not to be Python types (direct-mapped; 0 = empty slot).
    py_not_types: Vec<u64>,
    /// Per block, where its Python object starts, once known: 0 unknown, 1 none, 2 + the
    /// offset / 16 (see `py_object_in`). Empty outside CPython.
    py_object: Vec<u8>,
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

    /// Whether `t` is a Python type object: its own type is `type` (`PyType_Type`) or a
    /// metaclass (a type whose flags say it subclasses `type`). An instance is not: its
    /// type is an ordinary class.
    fn is_python_type(&mut self, t: u64) -> bool {
        /// `tp_flags` in `PyTypeObject` (3.11-3.13), and `Py_TPFLAGS_TYPE_SUBCLASS`.
        const TP_FLAGS: u64 = 168;
        const TYPE_SUBCLASS: u64 = 1 << 31;
        if self.py_types.binary_search(&t).is_ok() {
            return true;
        }
        let slot = ((t >> 3) ^ (t >> 15)) as usize & (self.py_not_types.len().max(1) - 1);
        if self.py_not_types.get(slot) == Some(&t) {
            return false;
        }
        let Some(meta) = self.read_word(t + 8) else {
            if let Some(s) = self.py_not_types.get_mut(slot) {
                *s = t;
            }
            return false;
        };
        let is_type = meta == self.py_type_type
            || self.read_word(meta + TP_FLAGS).is_some_and(|f| {
                f & TYPE_SUBCLASS != 0 && self.read_word(meta + 8) == Some(self.py_type_type)
            });
        if is_type {
            if let Err(i) = self.py_types.binary_search(&t) {
                self.py_types.insert(i, t);
            }
        } else if let Some(s) = self.py_not_types.get_mut(slot) {
            *s = t;
        }
        is_type
    }

    /// One word anywhere in a readable mapping, read without faulting.
    fn read_word(&mut self, a: u64) -> Option<u64> {
        if a < 4096 || !a.is_multiple_of(8) || self.map_of(a).is_none() {
            return None;
        }
        let mut w = [0u64; 1];
        (self.mem.read(a, &mut w) == 1).then_some(w[0])
    }

    /// CPython: where the object in block `b` starts (0, 16 after a garbage collector
    /// header, or 32 after a managed __dict__'s two words too), if the block holds one:
    /// a plausible reference count, then a type.
    fn py_object_in(&mut self, b: usize) -> Option<u64> {
        if self.py_object.is_empty() {
            return None;
        }
        match self.py_object[b] {
            0 => {}
            1 => return None,
            k => return Some(16 * (k as u64 - 2)),
        }
        let size = size_of(self.heap.blocks[b].1);
        let mut found = None;
        for off in [0u64, 16, 32] {
            if size < off + 16 {
                break;
            }
            if let (Some(refs), Some(t)) = (self.word(b, off), self.word(b, off + 8)) {
                if plausible_refcount(refs) && self.is_python_type(t) {
                    found = Some(off);
                    break;
                }
            }
        }
        self.py_object[b] = found.map_or(1, |o| 2 + (o / 16) as u8);
        found
    }

    /// CPython: the word indexes of a garbage-collected object's collector links (its
    /// 16-byte header: the next and previous objects the collector tracks); empty for
    /// other blocks. Those links tie every tracked object to every other one and are not
    /// references: followed, a reference cycle that nothing else holds would look
    /// reachable.
    fn gc_links(&mut self, b: usize) -> core::ops::Range<usize> {
        match self.py_object_in(b) {
            Some(o) if o >= 16 => {
                let k = (o / 8 - 2) as usize;
                k..k + 2
            }
            _ => 0..0,
        }
    }

    /// Which heuristic accepts an interior pointer `w` into block `b`.
    fn heuristic(&mut self, w: u64, b: usize) -> Option<Heuristic> {
        let (start, meta) = self.heap.blocks[b];
        let size = size_of(meta);
        let heuristics = self.heuristics;
        let on = |h: Heuristic| heuristics & (1 << h as u32) != 0;
        if on(Heuristic::PyObject) && self.py_type_type != 0 {
            // A pointer to an object, or into its contents (the characters of a str or
            // bytes, a heap type's method tables, which C code keeps as pointers): the
            // object starts the block, follows its 16-byte garbage collector header, or
            // follows the two words of a managed __dict__ before that (3.11+).
            let off = w - start;
            if let Some(o) = self.py_object_in(b) {
                if off >= o {
                    return Some(Heuristic::PyObject);
                }
            }
            // A dict's values array (3.11, 3.12), after a prefix whose last byte says its
            // size (how CPython finds the block's start to free it); 3.12 stores the
            // pointer less one (its low bit tags values apart from a dict).
            let real = if off % 8 == 7 { off + 1 } else { off };
            if real.is_multiple_of(8) && (8..=64).contains(&real) && real < size {
                if let Some(prefix) = self.word(b, real - 8) {
                    if prefix >> 56 == real {
                        return Some(Heuristic::PyObject);
                    }
                }
            }
        }
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
        // CPython: a pointer into a tracked object's collector header is the collector's
        // list link (tagged in its low bits), not a reference (see `gc_links`).
        if self.py_type_type != 0 && w < start + 32 {
            if let Some(o) = self.py_object_in(bi).filter(|&o| o >= 16) {
                if w >= start + o - 16 && w < start + o {
                    return;
                }
            }
        }
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
        let skip = self.gc_links(b as usize);
        for (k, &w) in heap.words(blocks, b as usize).iter().enumerate() {
            if w >= heap.min && w < heap.max && !skip.contains(&k) {
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
    /// CPython: the tracked objects nothing reached (garbage in reference cycles: only the
    /// collector's lists, left out of the marking, still tie them in) and everything they
    /// hold become reachable, through the pycycle "heuristic": they are freed when the
    /// collector runs, so they are not leaks, but memory kept longer than the program may
    /// think (the report's advice says how to avoid it).
    fn cycle_garbage(&mut self) {
        if self.py_type_type == 0 || self.heuristics & (1 << Heuristic::PyObject as u32) == 0 {
            return;
        }
        let tag = REACHABLE | (Heuristic::PyCycle as u8) << HEUR_SHIFT;
        let mut stack: Vec<u32> = Vec::new();
        for i in 0..self.heap.blocks.len() {
            if self.state[i] & STATE_MASK != REACHABLE && !self.gc_links(i).is_empty() {
                self.state[i] = tag;
                stack.push(i as u32);
            }
        }
        while let Some(j) = stack.pop() {
            let (heap, blocks) = (self.heap, self.blocks);
            let skip = self.gc_links(j as usize);
            for (k, &w) in heap.words(blocks, j as usize).iter().enumerate() {
                if skip.contains(&k) {
                    continue;
                }
                let Some(b) = heap.find(w) else { continue };
                let bi = b as usize;
                if self.state[bi] & STATE_MASK != REACHABLE {
                    self.state[bi] = tag;
                    self.link[bi] = j as u64 + 1;
                    stack.push(b);
                }
            }
        }
    }

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
                let skip = self.gc_links(j as usize);
                for (k, &w) in heap.words(blocks, j as usize).iter().enumerate() {
                    if skip.contains(&k) {
                        continue;
                    }
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
/// vtables are read through `mem`, the blocks' words through `blocks`. `py_type_type` is
/// CPython's `PyType_Type` in a Python process whose objects the pyobject heuristic and
/// the collector-link rules know (0 otherwise).
#[allow(clippy::too_many_arguments)]
pub fn mark<M: BlockMemory>(
    heap: &Heap,
    blocks: &M,
    maps: &[Map],
    mem: &mut dyn Reader,
    heuristics: u32,
    ranges: &[(u64, u64)],
    reg_sets: &[&[u64]],
    py_type_type: u64,
) -> Marks {
    let n = heap.blocks.len();
    let python = py_type_type != 0 && heuristics & (1 << Heuristic::PyObject as u32) != 0;
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
        py_type_type,
        py_types: Vec::new(),
        py_not_types: if python {
            alloc::vec![0u64; 1 << 14]
        } else {
            Vec::new()
        },
        py_object: if python {
            alloc::vec![0u8; n]
        } else {
            Vec::new()
        },
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
    mk.cycle_garbage();
    mk.cliques();
    Marks {
        state: mk.state,
        link: mk.link,
    }
}
