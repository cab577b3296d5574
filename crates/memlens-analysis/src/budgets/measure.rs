//! Measuring a trace against the budgets: one replay that attributes every block to the
//! components it belongs to and collects their figures and the no-allocation violations.

use super::*;
use crate::site::ReportedEvents;

/// Leak figures of a component, from the exit scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeakFigures {
    /// Definitely lost, indirectly lost, possibly lost, still reachable: memcheck's order
    /// ([`crate::leaks::KINDS`]), after suppressions.
    pub kinds: [Amount; 4],
    /// Blocks hidden by suppressions (any kind).
    pub suppressed: Amount,
}

/// What one component did over the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Successful allocations (reallocs included).
    pub allocations: u64,
    /// Releases of its blocks (by any thread).
    pub frees: u64,
    pub bytes_allocated: u64,
    /// Highest live bytes, and when (ns since the trace started) they were first reached.
    pub peak_bytes: u64,
    pub peak_ns: u64,
    /// Live at the end of the run.
    pub exit: Amount,
    /// `None` without an exit scan.
    pub leaks: Option<LeakFigures>,
    /// Bytes allocated per second of the run.
    pub alloc_rate: u64,
}

/// An allocation, realloc or free on a no-allocation thread, grouped by stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub what: ViolationKind,
    /// The function called (`malloc`, `free`, `_Znwm`...).
    pub func: AllocFunc,
    /// The call's stack; 0 when it was not recorded (a free without `--free-stacks`).
    pub stack: u32,
    /// For a free whose stack was not recorded: the freed block's allocation site.
    pub freed_block: Option<SiteKey>,
    /// Calls from this stack, and the bytes they asked for (allocations) or released
    /// (frees).
    pub count: u64,
    pub bytes: u64,
    /// The threads (names) it happened on, and the no-alloc pattern they matched.
    pub threads: Vec<String>,
    pub pattern: String,
    /// First time (ns since the trace started).
    pub first_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    Alloc,
    Realloc,
    Free,
}

impl ViolationKind {
    pub fn word(self) -> &'static str {
        match self {
            ViolationKind::Alloc => "allocation",
            ViolationKind::Realloc => "realloc",
            ViolationKind::Free => "free",
        }
    }
}

/// The figures of every component of a budget file over one trace.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Component names and figures, in the budget file's order, the process first.
    pub components: Vec<(String, Figures)>,
    /// The run's length (ns), which rates are over.
    pub run_ns: u64,
    /// The trace has an exit scan (leak figures are known).
    pub has_scan: bool,
    /// No-allocation violations, the most frequent first.
    pub violations: Vec<Violation>,
    /// Threads that matched a no-alloc pattern or marked themselves real-time (names),
    /// whether or not they allocated.
    pub no_alloc_threads: Vec<String>,
    /// The program's assertions, in time order.
    pub assertions: Vec<Assertion>,
    pub metadata: Metadata,
}

impl Measurement {
    pub fn figures(&self, name: &str) -> Option<&Figures> {
        self.components
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f)
    }

    /// The figures as a baseline: component -> metric key -> value (known figures only).
    pub fn baseline(&self) -> Baseline {
        self.components
            .iter()
            .map(|(name, f)| {
                let values = METRICS
                    .iter()
                    .filter_map(|m| m.value(f).map(|v| (m.key.to_string(), v)))
                    .collect();
                (name.clone(), values)
            })
            .collect()
    }
}

/// Per component, what the pass keeps.
#[derive(Default)]
pub(super) struct Acc {
    pub(super) f: Figures,
    pub(super) live: u64,
    pub(super) live_blocks: u64,
}

/// The pass's observer: which components each block belongs to (interned bit masks, the
/// index kept as the block's tag), and each component's running figures.
pub(super) struct Observer<'a> {
    pub(super) budgets: &'a Budgets,
    pub(super) md: &'a Metadata,
    pub(super) sym: Option<Symbolizer>,
    /// Thread index -> mask of the components its name allows.
    pub(super) thread_masks: HashMap<u32, u64>,
    /// Components with no thread patterns.
    pub(super) any_thread: u64,
    /// (stack, func) -> mask of the components its frames allow.
    pub(super) stack_masks: HashMap<SiteKey, u64>,
    pub(super) masks: Vec<u64>,
    pub(super) mask_index: HashMap<u64, u32>,
    pub(super) acc: Vec<Acc>,
    pub(super) regions: program::Regions,
}

impl Observer<'_> {
    pub(super) fn stack_mask(&mut self, site: SiteKey) -> u64 {
        if let Some(&m) = self.stack_masks.get(&site) {
            return m;
        }
        let mut mask = 0u64;
        let frames: Vec<SuppFrame> = match self.sym.as_mut() {
            Some(sym) => suppression_frames(self.md, sym, site.func, site.stack),
            None => Vec::new(),
        };
        let frames: Vec<_> = frames.iter().map(SuppFrame::view).collect();
        for (i, c) in self.budgets.components.iter().enumerate() {
            let m = &c.matchers;
            let any = |pats: &[String], make: fn(&str) -> FramePattern| {
                pats.is_empty() || pats.iter().any(|p| make(p).matches_any(&frames))
            };
            if any(&m.functions, FramePattern::function) && any(&m.modules, FramePattern::module) {
                mask |= 1 << i;
            }
        }
        self.stack_masks.insert(site, mask);
        mask
    }

    pub(super) fn mask_of(&mut self, block: &Block) -> u64 {
        let t = self
            .thread_masks
            .get(&block.thread)
            .copied()
            .unwrap_or(self.any_thread);
        t & self.regions.mask(block.thread) & self.stack_mask(block.site)
    }

    pub(super) fn intern(&mut self, mask: u64) -> u32 {
        if let Some(&i) = self.mask_index.get(&mask) {
            return i;
        }
        let i = self.masks.len() as u32;
        self.masks.push(mask);
        self.mask_index.insert(mask, i);
        i
    }
}

pub(super) fn bits(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| mask & (1 << i) != 0)
}

impl HeapObserver for Observer<'_> {
    fn added(&mut self, _addr: u64, block: &Block) -> u32 {
        let mask = self.mask_of(block);
        for i in bits(mask) {
            let a = &mut self.acc[i];
            a.f.allocations += block.count;
            a.f.bytes_allocated = a.f.bytes_allocated.saturating_add(block.size);
            a.live = a.live.saturating_add(block.size);
            a.live_blocks += block.count;
            if a.live > a.f.peak_bytes {
                a.f.peak_bytes = a.live;
                a.f.peak_ns = block.ts;
            }
        }
        self.intern(mask)
    }

    fn removed(&mut self, _addr: u64, block: &Block, why: Release) {
        let mask = self.masks[block.tag as usize];
        for i in bits(mask) {
            let a = &mut self.acc[i];
            a.live = a.live.saturating_sub(block.size);
            a.live_blocks = a.live_blocks.saturating_sub(block.count);
            if why != Release::Reused {
                a.f.frees += block.count;
            }
        }
    }
}

/// Measure every component of `budgets` over a trace, and find the no-allocation
/// violations, in one pass over the events (then the exit scan). Leak figures leave out
/// blocks that `suppressions` hide, as the leak check does.
pub fn measure(
    reader: &TraceReader,
    budgets: &Budgets,
    suppressions: Option<&Suppressions>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Measurement, Error> {
    let md = reader.metadata()?;
    let n = budgets.components.len();
    let ThreadSetup {
        any_thread,
        thread_masks,
        mut no_alloc,
        no_alloc_threads,
    } = thread_setup(budgets, &md);
    let by_stack = budgets.components.iter().any(|c| c.matchers.by_stack());
    let mut obs = Observer {
        budgets,
        md: &md,
        sym: by_stack.then(|| Symbolizer::for_trace(&md)),
        thread_masks,
        any_thread,
        stack_masks: HashMap::new(),
        masks: Vec::new(),
        mask_index: HashMap::new(),
        acc: (0..n).map(|_| Acc::default()).collect(),
        regions: program::Regions::new(
            &budgets
                .components
                .iter()
                .map(|c| c.matchers.regions.as_slice())
                .collect::<Vec<_>>(),
            &md,
        ),
    };
    let mut assertions = Vec::new();
    let mut replay = Replay::for_trace(reader);
    let mut peaks = program::Peaks::prepare(reader, &md)?;
    type VKey = (ViolationKind, AllocFunc, u32, Option<SiteKey>);
    let mut violations: HashMap<VKey, Violation> = HashMap::new();
    let mut events = ReportedEvents::new(reader, &md, 1, progress);
    while let Some(ev) = events.next_for(&replay) {
        let ev = ev?;
        match ev {
            Event::Region {
                thread, enter, id, ..
            } => obs.regions.apply(thread, enter, id),
            Event::ThreadMark {
                thread, realtime, ..
            } => {
                if realtime {
                    let name = md.threads.get(&thread).map(|t| t.name.as_bytes());
                    let pattern = budgets
                        .no_alloc
                        .iter()
                        .find(|p| name.is_some_and(|n| glob_match(p.pattern.as_bytes(), n)))
                        .map_or_else(|| REALTIME_MARK.to_string(), |p| p.pattern.clone());
                    no_alloc.insert(thread, pattern);
                } else {
                    no_alloc.remove(&thread);
                }
            }
            Event::Assert {
                ts,
                thread,
                kind,
                mark,
                limit,
                label,
                stack,
            } => assertions.push(program::judge(
                &mut peaks, &replay, &md, ts, thread, kind, mark, limit, label, stack,
            )),
            _ => {}
        }
        peaks.before(&ev, &replay, &md);
        if !no_alloc.is_empty() {
            note_violation(&ev, &replay, &no_alloc, &md, &mut violations);
        }
        replay.apply(&ev, &mut obs);
    }
    let run_ns = run_end_ns(reader, &md);
    let has_scan = reader.has_scan();
    for a in obs.acc.iter_mut() {
        a.f.exit = Amount {
            bytes: a.live,
            blocks: a.live_blocks,
        };
        a.f.alloc_rate = if run_ns > 0 {
            (a.f.bytes_allocated as f64 * 1e9 / run_ns as f64).round() as u64
        } else {
            0
        };
        if has_scan {
            a.f.leaks = Some(LeakFigures::default());
        }
    }
    if has_scan {
        leak_figures(reader, &md, &replay, &mut obs, suppressions)?;
    }
    let mut violations: Vec<Violation> = violations.into_values().collect();
    for v in &mut violations {
        v.threads.sort();
        v.threads.dedup();
    }
    violations.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.first_ns.cmp(&b.first_ns))
            .then(a.stack.cmp(&b.stack))
    });
    Ok(Measurement {
        components: budgets
            .components
            .iter()
            .zip(obs.acc)
            .map(|(c, a)| (c.name.clone(), a.f))
            .collect(),
        run_ns,
        has_scan,
        violations,
        no_alloc_threads,
        assertions,
        metadata: md,
    })
}

/// Which components each thread's allocations count for (`thread_masks`; `any_thread`:
/// the components that take every thread), and the no-allocation threads.
struct ThreadSetup {
    any_thread: u64,
    thread_masks: HashMap<u32, u64>,
    /// Thread index -> the pattern it is a no-allocation thread by, while it is one.
    no_alloc: HashMap<u32, String>,
    no_alloc_threads: Vec<String>,
}

fn thread_setup(budgets: &Budgets, md: &Metadata) -> ThreadSetup {
    let mut any_thread = 0u64;
    for (i, c) in budgets.components.iter().enumerate() {
        if c.matchers.threads.is_empty() {
            any_thread |= 1 << i;
        }
    }
    let mut thread_masks = HashMap::new();
    // Thread index -> the pattern it is a no-allocation thread by, while it is one.
    let mut no_alloc: HashMap<u32, String> = HashMap::new();
    let mut no_alloc_threads = Vec::new();
    for (&idx, t) in &md.threads {
        let name = t.name.as_bytes();
        let mut mask = any_thread;
        for (i, c) in budgets.components.iter().enumerate() {
            if c.matchers
                .threads
                .iter()
                .any(|p| glob_match(p.as_bytes(), name))
            {
                mask |= 1 << i;
            }
        }
        thread_masks.insert(idx, mask);
        if let Some(p) = budgets
            .no_alloc
            .iter()
            .position(|p| glob_match(p.pattern.as_bytes(), name))
        {
            // A thread that marks itself real-time is one only while marked.
            if !md.realtime_threads.contains(&idx) {
                no_alloc.insert(idx, budgets.no_alloc[p].pattern.clone());
            }
            no_alloc_threads.push(t.name.clone());
        } else if md.realtime_threads.contains(&idx) {
            no_alloc_threads.push(t.name.clone());
        }
    }
    no_alloc_threads.sort();
    ThreadSetup {
        any_thread,
        thread_masks,
        no_alloc,
        no_alloc_threads,
    }
}

/// Add the exit scan's verdicts to each component's figures (suppressed ones apart).
fn leak_figures(
    reader: &TraceReader,
    md: &Metadata,
    replay: &Replay,
    obs: &mut Observer,
    suppressions: Option<&Suppressions>,
) -> Result<(), Error> {
    let mut suppressed: HashMap<(SiteKey, BlockState), bool> = HashMap::new();
    let mut sym = suppressions.map(|_| Symbolizer::for_trace(md));
    for rec in reader.scan() {
        let ScanRecord::Block(b) = rec? else { continue };
        if b.internal {
            continue;
        }
        let (mask, site) = match replay.get(b.addr) {
            Some(block) => (obs.masks[block.tag as usize], Some(block.site)),
            None => (1, None),
        };
        let hidden = match (suppressions, site, sym.as_mut()) {
            (Some(sup), Some(site), Some(sym)) => {
                *suppressed.entry((site, b.state)).or_insert_with(|| {
                    let frames = suppression_frames(md, sym, site.func, site.stack);
                    let frames: Vec<_> = frames.iter().map(SuppFrame::view).collect();
                    sup.matches(supp_kind(b.state), &frames).is_some()
                })
            }
            _ => false,
        };
        let kind = crate::leaks::KINDS
            .iter()
            .position(|&k| k == b.state)
            .unwrap_or(3);
        for i in bits(mask) {
            if let Some(l) = obs.acc[i].f.leaks.as_mut() {
                let amount = if hidden {
                    &mut l.suppressed
                } else {
                    &mut l.kinds[kind]
                };
                amount.bytes += b.size;
                amount.blocks += 1;
            }
        }
    }
    Ok(())
}

/// Note `ev` if it happens on a no-allocation thread (before it is applied to `replay`).
pub(super) fn note_violation(
    ev: &Event,
    replay: &Replay,
    no_alloc: &HashMap<u32, String>,
    md: &Metadata,
    out: &mut HashMap<(ViolationKind, AllocFunc, u32, Option<SiteKey>), Violation>,
) {
    let (kind, ts, thread, func, stack, bytes, freed) = match *ev {
        Event::Alloc {
            ts,
            thread,
            func,
            size,
            stack,
            ..
        } => (ViolationKind::Alloc, ts, thread, func, stack, size, None),
        Event::Realloc {
            ts,
            thread,
            func,
            old,
            new,
            size,
            stack,
        } => {
            if old != 0 && new == 0 && size == 0 {
                // realloc(p, 0): a free.
                let b = replay.get(old);
                (
                    ViolationKind::Free,
                    ts,
                    thread,
                    func,
                    stack,
                    b.map_or(0, |b| b.size),
                    None,
                )
            } else {
                (ViolationKind::Realloc, ts, thread, func, stack, size, None)
            }
        }
        // A realloc's release written apart (`Release::Moved`): in a full trace the
        // realloc(NULL, n) that follows is the call's one violation; in a sampled one it
        // is all there is of the call.
        Event::Free {
            ts,
            thread,
            func: func @ (AllocFunc::Realloc | AllocFunc::Reallocarray),
            addr,
            stack,
        } if addr != 0 => {
            if !replay.is_sampled() {
                return;
            }
            let size = replay.get(addr).map_or(0, |b| b.size);
            (ViolationKind::Realloc, ts, thread, func, stack, size, None)
        }
        Event::Free {
            ts,
            thread,
            func,
            addr,
            stack,
        } if addr != 0 => {
            let b = replay.get(addr);
            let freed = if stack == 0 { b.map(|b| b.site) } else { None };
            (
                ViolationKind::Free,
                ts,
                thread,
                func,
                stack,
                b.map_or(0, |b| b.size),
                freed,
            )
        }
        _ => return,
    };
    let Some(pattern) = no_alloc.get(&thread) else {
        return;
    };
    let name = md
        .threads
        .get(&thread)
        .map_or_else(String::new, |t| t.name.clone());
    let v = out
        .entry((kind, func, stack, freed))
        .or_insert_with(|| Violation {
            what: kind,
            func,
            stack,
            freed_block: freed,
            count: 0,
            bytes: 0,
            threads: Vec::new(),
            pattern: pattern.clone(),
            first_ns: ts,
        });
    v.count += 1;
    v.bytes = v.bytes.saturating_add(bytes);
    if !v.threads.contains(&name) {
        v.threads.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realloc on a no-allocation thread is one violation, also when the recorder wrote
    /// its release apart (a Free by realloc, then realloc(NULL, n)); in a sampled trace
    /// such a Free is the whole call, and counts as the realloc.
    #[test]
    fn a_realloc_written_in_two_events_is_one_violation() {
        let no_alloc: HashMap<u32, String> = [(1, "audio*".to_string())].into();
        let md = Metadata::default();
        let ev = [
            Event::Alloc {
                ts: 1,
                thread: 0,
                func: AllocFunc::Malloc,
                addr: 0x100,
                size: 16,
                stack: 1,
            },
            Event::Free {
                ts: 2,
                thread: 1,
                func: AllocFunc::Realloc,
                addr: 0x100,
                stack: 0,
            },
            Event::Realloc {
                ts: 3,
                thread: 1,
                func: AllocFunc::Realloc,
                old: 0,
                new: 0x200,
                size: 64,
                stack: 2,
            },
        ];
        // Sampled, the released block's bytes are what it stands for.
        let weighed = Replay::sampled(4096).weigh(0x100, 1, 16).0;
        assert!(weighed > 16);
        for (interval, realloc_bytes) in [(0, 64), (4096, weighed)] {
            let mut replay = Replay::sampled(interval);
            let mut out = HashMap::new();
            for e in &ev[..if interval == 0 { 3 } else { 2 }] {
                note_violation(e, &replay, &no_alloc, &md, &mut out);
                replay.apply(e, &mut ());
            }
            let v: Vec<(ViolationKind, u64, u64)> =
                out.values().map(|v| (v.what, v.count, v.bytes)).collect();
            assert_eq!(
                v,
                [(ViolationKind::Realloc, 1, realloc_bytes)],
                "interval {interval}"
            );
        }
    }
}
