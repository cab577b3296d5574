//! What a forked child's trace inherited from its parent's: the blocks live in the
//! parent when it forked, with their stacks.
//!
//! A child's recorder starts a new trace at `fork` with the parent's live-block table but
//! none of its allocation records: without this, the child's leak check found the
//! inherited blocks (memcheck reports them in the child, with their stacks) but the
//! reports had no allocation for them (no stack, "not freed" short of the leak summary).
//! The parent's trace is found beside the child's (a trace whose header's pid is the
//! child's `forked_from`, started before it); its events are replayed up to the fork (the
//! child's clock continues the parent's, and the child's trace defines its modules again
//! at the fork's instant), and each block live then becomes an allocation at the start of
//! the child's trace, its stack defined under an id the child's trace does not use.
//! The parent's own inheritance comes with its events, so grandchildren work alike.

use crate::reader::{InheritedFrom, Metadata, TraceReader};
use crate::records::{Event, Module, PyCode, RawFrame, PYTHON_MODULE};
use crate::AllocFunc;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A child's inheritance, with ids that do not collide with the child trace's own.
#[derive(Clone, Debug)]
pub struct Inherited {
    /// The parent's trace, and how many blocks and bytes.
    pub from: InheritedFrom,
    /// One allocation per inherited block, at the fork's instant.
    pub events: Vec<Event>,
    pub stacks: Vec<(u32, Vec<RawFrame>)>,
    pub modules: Vec<Module>,
    pub py_codes: Vec<PyCode>,
}

impl Inherited {
    /// Add the inherited definitions to the child's.
    pub fn define(&self, md: &mut Metadata) {
        for (id, frames) in &self.stacks {
            md.stacks.insert(*id, frames.clone());
        }
        for m in &self.modules {
            md.modules.insert(m.id, m.clone());
        }
        for c in &self.py_codes {
            md.py_codes.insert(c.id, c.clone());
        }
        md.inherited = Some(self.from.clone());
    }
}

/// The trace `child` was forked from, found beside it: the latest trace started before
/// the child whose pid is the child's `forked_from`.
fn parent_trace(child: &TraceReader) -> Option<TraceReader> {
    let h = child.header();
    let dir = child.path().parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    // (start, path) of the best so far. Headers only: a directory may hold many traces.
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        if path == child.path() || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(p) = TraceReader::read_header(&path) else {
            continue;
        };
        if p.pid == h.forked_from
            && p.start_unix_ns < h.start_unix_ns
            && best.as_ref().is_none_or(|b| b.0 < p.start_unix_ns)
        {
            best = Some((p.start_unix_ns, path));
        }
    }
    TraceReader::open(best?.1).ok()
}

/// A live block of the parent: (func, size, stack, time of its allocation).
type Block = (AllocFunc, u64, u32, u64);

/// The blocks live after `events` up to `fork_ts`, by address, as the analysis's replay
/// counts them: a failed allocation (address 0) is no block, and a failed realloc (no new
/// block, a size other than 0) leaves the old one live.
fn live_at(events: impl Iterator<Item = Event>, fork_ts: u64) -> HashMap<u64, Block> {
    let mut live: HashMap<u64, Block> = HashMap::new();
    for e in events.take_while(|e| e.ts() <= fork_ts) {
        match e {
            Event::Alloc {
                ts,
                func,
                addr,
                size,
                stack,
                ..
            } if addr != 0 => {
                live.insert(addr, (func, size, stack, ts));
            }
            Event::Free { addr, .. } => {
                live.remove(&addr);
            }
            Event::Realloc {
                ts,
                func,
                old,
                new,
                size,
                stack,
                ..
            } => {
                if old != 0 && (new != 0 || size == 0) {
                    live.remove(&old);
                }
                if new != 0 {
                    live.insert(new, (func, size, stack, ts));
                }
            }
            _ => {}
        }
    }
    live
}

/// The inheritance of `child`, whose own definitions are `own`; `None` for a trace that
/// was not forked, or whose parent's trace is not beside it.
pub fn inherited(child: &TraceReader, own: &Metadata) -> Option<Inherited> {
    if child.header().forked_from == 0 {
        return None;
    }
    // The fork's instant: the child's trace defines every module again then.
    let fork_ts = own.modules.values().map(|m| m.loaded_ns).min()?;
    let parent = parent_trace(child)?;
    let pmd = parent.metadata().ok()?;
    let live = live_at(parent.events().map_while(Result::ok), fork_ts);
    let mut ids = Renumber::new(own);
    let thread = own.threads.keys().min().copied().unwrap_or(0);
    // In the order they were allocated (then by address), so that reports list them as
    // the parent's would.
    let mut blocks: Vec<(u64, Block)> = live.into_iter().collect();
    blocks.sort_unstable_by_key(|&(addr, (_, _, _, ts))| (ts, addr));
    let mut out = Inherited {
        from: InheritedFrom {
            parent_trace: parent.path().to_path_buf(),
            blocks: blocks.len() as u64,
            bytes: blocks.iter().map(|(_, (_, size, _, _))| size).sum(),
        },
        events: Vec::new(),
        stacks: Vec::new(),
        modules: Vec::new(),
        py_codes: Vec::new(),
    };
    for (addr, (func, size, stack, _)) in blocks {
        let stack = ids.stack(stack, &pmd, &mut out);
        out.events.push(Event::Alloc {
            ts: fork_ts,
            thread,
            func,
            addr,
            size,
            stack,
        });
    }
    Some(out)
}

/// New ids for the parent's stacks, modules and code objects, after the child's own.
struct Renumber<'a> {
    own: &'a Metadata,
    next_stack: u32,
    next_module: u32,
    next_code: u32,
    stacks: HashMap<u32, u32>,
    modules: BTreeMap<u32, u32>,
    codes: HashMap<u32, u32>,
}

impl<'a> Renumber<'a> {
    fn new(own: &'a Metadata) -> Self {
        let after = |ids: &mut dyn Iterator<Item = u32>| ids.max().map_or(1, |m| m + 1);
        Renumber {
            own,
            next_stack: after(&mut own.stacks.keys().copied()),
            next_module: after(&mut own.modules.keys().copied().filter(|&m| m != PYTHON_MODULE)),
            next_code: after(&mut own.py_codes.keys().copied()),
            stacks: HashMap::new(),
            modules: BTreeMap::new(),
            codes: HashMap::new(),
        }
    }

    /// The child's id of the parent's stack `id` (0, the empty stack, stays 0), defined
    /// in `out` with its frames' modules and code objects.
    fn stack(&mut self, id: u32, pmd: &Metadata, out: &mut Inherited) -> u32 {
        if id == 0 {
            return 0;
        }
        if let Some(&n) = self.stacks.get(&id) {
            return n;
        }
        let frames: Vec<RawFrame> = pmd
            .stacks
            .get(&id)
            .map(|f| f.iter().map(|&f| self.frame(f, pmd, out)).collect())
            .unwrap_or_default();
        let n = self.next_stack;
        self.next_stack += 1;
        self.stacks.insert(id, n);
        out.stacks.push((n, frames));
        n
    }

    fn frame(&mut self, f: RawFrame, pmd: &Metadata, out: &mut Inherited) -> RawFrame {
        if let Some((code, instr)) = f.python() {
            let n = match self.codes.get(&code) {
                Some(&n) => n,
                None => {
                    let n = self.next_code;
                    self.next_code += 1;
                    self.codes.insert(code, n);
                    if let Some(c) = pmd.py_codes.get(&code) {
                        out.py_codes.push(PyCode { id: n, ..c.clone() });
                    }
                    n
                }
            };
            return RawFrame {
                module: PYTHON_MODULE,
                offset: (n as u64) << 32 | instr as u64,
            };
        }
        if f.module == 0 {
            return f;
        }
        let module = match self.modules.get(&f.module) {
            Some(&m) => m,
            None => {
                let theirs = pmd.modules.get(&f.module);
                // The same module under the same id in both (the child inherits the
                // parent's module table): shared. Otherwise the parent's, renumbered.
                let m = match (theirs, self.own.modules.get(&f.module)) {
                    (Some(t), Some(o)) if t.path == o.path && t.build_id == o.build_id => f.module,
                    (Some(t), _) => {
                        let n = self.next_module;
                        self.next_module += 1;
                        out.modules.push(Module { id: n, ..t.clone() });
                        n
                    }
                    (None, _) => f.module,
                };
                self.modules.insert(f.module, m);
                m
            }
        };
        RawFrame {
            module,
            offset: f.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(ts: u64, addr: u64, size: u64) -> Event {
        Event::Alloc {
            ts,
            thread: 0,
            func: AllocFunc::Malloc,
            addr,
            size,
            stack: 1,
        }
    }

    fn realloc(ts: u64, old: u64, new: u64, size: u64) -> Event {
        Event::Realloc {
            ts,
            thread: 0,
            func: AllocFunc::Realloc,
            old,
            new,
            size,
            stack: 2,
        }
    }

    /// What is live at the fork: not a failed malloc (address 0), the old block of a
    /// failed realloc, not the old block of a moved one nor of a realloc to 0, nothing
    /// freed, nothing after the fork.
    #[test]
    fn the_blocks_live_at_the_fork_are_the_replays() {
        let free = |ts, addr| Event::Free {
            ts,
            thread: 0,
            func: AllocFunc::Free,
            addr,
            stack: 0,
        };
        let events = [
            alloc(1, 0, 1 << 40),
            alloc(2, 0x100, 10),
            realloc(3, 0x100, 0, 1 << 40),
            alloc(4, 0x200, 20),
            realloc(5, 0x200, 0x300, 30),
            alloc(6, 0x400, 40),
            realloc(7, 0x400, 0, 0),
            alloc(8, 0x500, 50),
            free(9, 0x500),
            alloc(11, 0x600, 60),
        ];
        let live = live_at(events.into_iter(), 10);
        let mut got: Vec<(u64, u64)> = live.iter().map(|(&a, b)| (a, b.1)).collect();
        got.sort_unstable();
        assert_eq!(got, [(0x100, 10), (0x300, 30)]);
    }
}
