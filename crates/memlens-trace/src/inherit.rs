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
#[derive(Clone, Debug, Default)]
pub struct Inherited {
    /// The parent's trace.
    pub parent: PathBuf,
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
        let bytes = self
            .events
            .iter()
            .map(|e| match e {
                Event::Alloc { size, .. } => *size,
                _ => 0,
            })
            .sum();
        md.inherited = Some(InheritedFrom {
            parent_trace: self.parent.clone(),
            blocks: self.events.len() as u64,
            bytes,
        });
    }
}

/// The trace `child` (whose own definitions are `own`) was forked from, found beside it:
/// the latest trace started before the child whose pid is the child's
/// `forked_from`.
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
    let mut live: HashMap<u64, Block> = HashMap::new();
    for e in parent.events() {
        let Ok(e) = e else { break };
        if e.ts() > fork_ts {
            break;
        }
        match e {
            Event::Alloc {
                ts,
                func,
                addr,
                size,
                stack,
                ..
            } => {
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
                if old != 0 {
                    live.remove(&old);
                }
                if new != 0 {
                    live.insert(new, (func, size, stack, ts));
                }
            }
            _ => {}
        }
    }
    let mut ids = Renumber::new(own);
    let thread = own.threads.keys().min().copied().unwrap_or(0);
    // In the order they were allocated (then by address), so that reports list them as
    // the parent's would.
    let mut blocks: Vec<(u64, Block)> = live.into_iter().collect();
    blocks.sort_unstable_by_key(|&(addr, (_, _, _, ts))| (ts, addr));
    let mut out = Inherited {
        parent: parent.path().to_path_buf(),
        ..Default::default()
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
