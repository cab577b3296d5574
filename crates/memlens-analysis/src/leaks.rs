//! Leak kinds and heap errors: the recorder's exit scan joined with the replayed heap.
//!
//! The scan (see the recorder's `scan.rs`) gives every block still allocated at exit a
//! state (memcheck's four kinds) and a link: its parent on a shortest chain from a root
//! for reachable and possibly-lost blocks, its clique leader for lost ones. The replay of
//! the events gives each block's allocation stack. Loss records group blocks by (kind,
//! allocating function, stack compared at the leak resolution), as memcheck does, and a
//! definitely-lost record carries the bytes of the indirectly lost blocks its blocks own.
//!
//! Heap errors come from the recorder's HeapError events, classified here with the event
//! history: a release of an address that was freed and not reallocated is a double free;
//! of an address inside a live block, an interior free; otherwise a free of memory never
//! allocated. Each distinct (kind, stack) is one error with a count.

use crate::replay::{AddrMap, Replay};
use crate::site::Progress;
use crate::site::ReportedEvents;
use crate::suppressions::{
    gen_error_suppression, gen_suppression, LeakKind, SuppressionInfo, Suppressions,
};
use crate::Symbolizer;
use memlens_trace::reader::{Event, Metadata, ScanBlock, ScanRecord, TraceReader};
use memlens_trace::{AllocFunc, BlockLink, BlockState, ExitKind, Heuristic, RootKind};
use std::collections::HashMap;

/// memcheck's `--leak-resolution`: how many frames two stacks must share to be merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Low,
    Med,
    High,
}

impl Resolution {
    /// How many of the program's frames are compared. memcheck compares 2 (low) or 4
    /// (med) frames of a stack that starts at the allocation function itself, which here
    /// is the record's `func` (part of the key), not a frame: one fewer.
    fn frames(self) -> usize {
        match self {
            Resolution::Low => 1,
            Resolution::Med => 3,
            Resolution::High => usize::MAX,
        }
    }
}

/// The four kinds, in memcheck's order.
pub const KINDS: [BlockState; 4] = [
    BlockState::DefinitelyLost,
    BlockState::IndirectlyLost,
    BlockState::PossiblyLost,
    BlockState::StillReachable,
];

/// The JSON / option name of a kind.
pub fn kind_key(k: BlockState) -> &'static str {
    match k {
        BlockState::DefinitelyLost => "definitely_lost",
        BlockState::IndirectlyLost => "indirectly_lost",
        BlockState::PossiblyLost => "possibly_lost",
        BlockState::StillReachable => "still_reachable",
    }
}

/// Bytes and blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    pub bytes: u64,
    pub blocks: u64,
}

impl Amount {
    fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.blocks += 1;
    }
}

/// Per-kind totals, as in memcheck's LEAK SUMMARY.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub definitely_lost: Amount,
    pub indirectly_lost: Amount,
    pub possibly_lost: Amount,
    pub still_reachable: Amount,
    /// Blocks in records matched by a suppression (not in the four lines above).
    pub suppressed: Amount,
    /// Still-reachable blocks reached only through an interior pointer accepted by a
    /// heuristic (memcheck's "of which reachable via heuristic").
    pub reachable_via_heuristic: Vec<(Heuristic, Amount)>,
}

impl Summary {
    /// The summary of `records`: their bytes and blocks by kind, those a suppression
    /// matched apart (no heuristic lines: the records do not say).
    pub fn of(records: &[LossRecord]) -> Summary {
        let mut s = Summary::default();
        for r in records {
            let a = if r.suppressed_by.is_some() {
                &mut s.suppressed
            } else {
                s.get_mut(r.kind)
            };
            a.bytes += r.bytes;
            a.blocks += r.blocks;
        }
        s
    }

    pub fn get(&self, k: BlockState) -> Amount {
        match k {
            BlockState::DefinitelyLost => self.definitely_lost,
            BlockState::IndirectlyLost => self.indirectly_lost,
            BlockState::PossiblyLost => self.possibly_lost,
            BlockState::StillReachable => self.still_reachable,
        }
    }
    fn get_mut(&mut self, k: BlockState) -> &mut Amount {
        match k {
            BlockState::DefinitelyLost => &mut self.definitely_lost,
            BlockState::IndirectlyLost => &mut self.indirectly_lost,
            BlockState::PossiblyLost => &mut self.possibly_lost,
            BlockState::StillReachable => &mut self.still_reachable,
        }
    }
}

/// One step of a chain that keeps blocks alive, from the root down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainStep {
    /// A root: the word at `addr` in a region of kind `kind` (a module's data, a thread's
    /// stack or registers...), `name` its mapping, `tid` its thread.
    Root {
        kind: RootKind,
        name: String,
        tid: u32,
        addr: u64,
    },
    /// A heap block allocated at `stack` by `func`.
    Block {
        stack: u32,
        func: AllocFunc,
        size: u64,
    },
}

/// One loss record.
#[derive(Clone, Debug)]
pub struct LossRecord {
    pub kind: BlockState,
    pub func: AllocFunc,
    /// Stack id of the first block (the record's stack; with a resolution below high,
    /// the others share its first frames).
    pub stack: u32,
    pub bytes: u64,
    pub blocks: u64,
    /// For definitely lost records: the indirectly lost blocks they own.
    pub indirect: Amount,
    /// For still reachable / possibly lost records: the chain from a root to the first
    /// block (the block itself last).
    pub chain: Vec<ChainStep>,
    /// Name of the suppression that matched, if any (set by the caller).
    pub suppressed_by: Option<String>,
}

impl LossRecord {
    /// memcheck's sort key: total size (direct + indirect), then blocks.
    pub fn total_bytes(&self) -> u64 {
        self.bytes + self.indirect.bytes
    }
}

/// Classes of heap error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    DoubleFree,
    /// Release of a pointer inside a block, not at its start.
    InteriorFree,
    /// Release of memory that was never allocated.
    InvalidFree,
    /// Released by the wrong family.
    MismatchedFree,
}

impl ErrorKind {
    pub fn key(self) -> &'static str {
        match self {
            ErrorKind::DoubleFree => "double_free",
            ErrorKind::InteriorFree => "interior_free",
            ErrorKind::InvalidFree => "invalid_free",
            ErrorKind::MismatchedFree => "mismatched_free",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::DoubleFree => "Invalid free() / delete / delete[] / realloc(): double free",
            ErrorKind::InteriorFree => {
                "Invalid free() / delete / delete[] / realloc(): pointer inside a block"
            }
            ErrorKind::InvalidFree => {
                "Invalid free() / delete / delete[] / realloc(): never allocated"
            }
            ErrorKind::MismatchedFree => "Mismatched free() / delete / delete []",
        }
    }
}

/// One distinct heap error (same kind and offending stack), with how often it happened.
#[derive(Clone, Debug)]
pub struct HeapError {
    pub kind: ErrorKind,
    /// The releasing function (free, operator delete, realloc...).
    pub func: AllocFunc,
    pub addr: u64,
    pub count: u64,
    /// Where the bad release happened.
    pub stack: u32,
    /// The block's allocation (function and stack), when known.
    pub alloc: Option<(AllocFunc, u32, u64)>,
    /// Where the block was first freed (double free), 0 when not recorded.
    pub first_free_stack: Option<u32>,
    pub suppressed_by: Option<String>,
}

/// What the scan itself reported.
#[derive(Clone, Debug)]
pub struct ScanInfo {
    pub trigger: ExitKind,
    pub code: i32,
    pub stopped_threads: u32,
    pub unstoppable_threads: u32,
    pub freeres: bool,
    pub duration_ns: u64,
    /// Blocks allocated by the recorder's own calls into libc (never reported).
    pub internal: Amount,
    /// Scanned blocks the event replay did not know (reported with no stack).
    pub unknown_blocks: u64,
}

/// Leak kinds and heap errors of one trace.
#[derive(Clone, Debug)]
pub struct LeakReport {
    /// `None` when the trace has no scan (the process was killed, exec'ed, or recording
    /// failed): only heap errors are known then.
    pub scan: Option<ScanInfo>,
    pub summary: Summary,
    /// Sorted like memcheck's: ascending total size.
    pub records: Vec<LossRecord>,
    pub errors: Vec<HeapError>,
    /// CPython: per allocation site, the blocks that were garbage in reference cycles
    /// (reachable only through the cycle collector, heuristic pycycle), largest first.
    pub python_cycles: Vec<(AllocFunc, u32, Amount)>,
    /// The trace's sampling interval (0: every block recorded). A sampled trace has no
    /// scan (the recorder knows only the sampled blocks).
    pub sample_interval: u64,
}

/// The exit scan's records: what the scan was, its roots by id, its blocks.
type Scan = (ScanInfo, HashMap<u32, Root>, Vec<ScanBlock>);

/// Read the exit scan's records ([`Scan`]).
fn read_scan(r: &TraceReader) -> Result<Scan, crate::Error> {
    let mut info = ScanInfo {
        trigger: ExitKind::Exit,
        code: 0,
        stopped_threads: 0,
        unstoppable_threads: 0,
        freeres: false,
        duration_ns: 0,
        internal: Amount::default(),
        unknown_blocks: 0,
    };
    let mut started = 0;
    let mut roots: HashMap<u32, Root> = HashMap::new();
    let mut blocks: Vec<ScanBlock> = Vec::new();
    for rec in r.scan() {
        match rec? {
            ScanRecord::Begin {
                ts,
                trigger,
                code,
                stopped,
                unstoppable,
                flags,
                ..
            } => {
                started = ts;
                info.trigger = trigger;
                info.code = code;
                info.stopped_threads = stopped;
                info.unstoppable_threads = unstoppable;
                info.freeres = flags & 1 != 0;
            }
            ScanRecord::Root {
                id,
                kind,
                tid,
                name,
                ..
            } => {
                roots.insert(id, Root { kind, tid, name });
            }
            ScanRecord::Block(b) => blocks.push(b),
            ScanRecord::End { ts, .. } => info.duration_ns = ts.saturating_sub(started),
            // A snapshot's holders: `memlens snapshot` and `diff` read them.
            ScanRecord::Holder { .. } => {}
        }
    }
    Ok((info, roots, blocks))
}

struct Root {
    kind: RootKind,
    tid: u32,
    name: String,
}

/// Replay the events (for allocation stacks and heap errors) and read the scan.
pub fn analyse(r: &TraceReader, resolution: Resolution) -> Result<LeakReport, crate::Error> {
    analyse_with_progress(r, resolution, &mut |_| {})
}

/// [`analyse`], calling `progress` (pass 3) whenever an event chunk has been consumed.
pub fn analyse_with_progress(
    r: &TraceReader,
    resolution: Resolution,
    progress: &mut dyn FnMut(Progress),
) -> Result<LeakReport, crate::Error> {
    let md = r.metadata()?;
    let mut replay = Replay::for_trace(r);
    let mut tracker = LeakTracker::default();
    let mut events = ReportedEvents::new(r, &md, 3, progress);
    while let Some(ev) = events.next_for(&replay) {
        let ev = ev?;
        tracker.before(&ev, &replay);
        replay.apply(&ev, &mut ());
    }
    tracker.finish(r, &md, &replay, resolution, progress)
}

/// The event side of the leak analysis, for a caller that replays the events itself (the
/// report does, to fold this into its own pass): call [`LeakTracker::before`] with every
/// event before applying it to the replay, then [`LeakTracker::finish`] with the replay of
/// the whole trace.
///
/// A release of an address where no block starts (the recorder's `NotABlock`) is told
/// apart (a double free, a free inside a block, of memory never allocated) from the
/// history of its address: the last release of it, and whether an allocation came
/// since. Keeping that history for every address in the pass would cost two more hash
/// table accesses an event, for an error most traces never have; so the pass only notes
/// where such releases are, and [`LeakTracker::finish`] replays the events again up to
/// the last of them, keeping the history of their addresses alone.
///
/// [`LeakTracker::summary_only`] leaves heap errors out: its report has none.
#[derive(Default)]
pub struct LeakTracker {
    summary_only: bool,
    /// Events seen so far: the next one's position in the pass.
    seen: u64,
    /// The `NotABlock` releases, in the order of the events.
    unresolved: Vec<Unresolved>,
    errors: HashMap<(ErrorKind, u32, AllocFunc), HeapError>,
}

/// A release of an address where no block started, to be told apart in
/// [`LeakTracker::finish`].
#[derive(Clone, Copy)]
struct Unresolved {
    /// The event's position in the pass.
    at: u64,
    addr: u64,
    func: AllocFunc,
    stack: u32,
}

/// The progress pass number of [`LeakTracker::finish`]'s replay, when it makes one.
pub const HEAP_ERRORS_PASS: u8 = 4;

/// Address -> (alloc func, alloc stack, size, free stack) of blocks freed and not
/// allocated again since.
type Freed = AddrMap<(AllocFunc, u32, u64, u32)>;

/// Keep `freed` up to date with `ev`, before it is applied to `replay`, for the
/// addresses `wanted` says.
#[inline]
fn note_freed(freed: &mut Freed, ev: &Event, replay: &Replay, wanted: impl Fn(u64) -> bool) {
    match *ev {
        Event::Free { addr, stack, .. } if wanted(addr) => {
            if let Some(b) = replay.get(addr) {
                freed.insert(addr, (b.site.func, b.site.stack, b.size, stack));
            }
        }
        Event::Realloc { old, new, size, .. }
            if old != 0 && (new != 0 || size == 0) && wanted(old) =>
        {
            if let Some(b) = replay.get(old) {
                freed.insert(old, (b.site.func, b.site.stack, b.size, 0));
            }
        }
        Event::Alloc { addr, .. } if wanted(addr) => {
            freed.remove(&addr);
        }
        _ => {}
    }
}

/// The live blocks of [`LeakTracker::resolve`]'s replay by address, so that the block an
/// address falls inside is found at once (a heap of millions of blocks and many bad
/// frees would otherwise cost a walk of the heap each): start -> (allocation function,
/// stack, size).
#[derive(Default)]
struct ByAddress(std::collections::BTreeMap<u64, (AllocFunc, u32, u64)>);

impl crate::replay::HeapObserver for ByAddress {
    fn added(&mut self, addr: u64, b: &crate::replay::Block) -> u32 {
        self.0.insert(addr, (b.site.func, b.site.stack, b.size));
        0
    }
    fn removed(&mut self, addr: u64, _b: &crate::replay::Block, _why: crate::replay::Release) {
        self.0.remove(&addr);
    }
}

impl ByAddress {
    /// The live block `addr` lies inside of (not at its start).
    fn inside(&self, addr: u64) -> Option<(AllocFunc, u32, u64)> {
        let (&start, &(func, stack, size)) = self.0.range(..addr).next_back()?;
        (addr < start.saturating_add(size.max(1))).then_some((func, stack, size))
    }
}

/// What a release of `addr`, where no block started, was: a double free (the address
/// was freed and not allocated since), a free inside a live block, or of memory never
/// allocated; with the block's allocation (function, stack, size) and for a double free
/// the first release's stack.
fn not_a_block(
    addr: u64,
    freed: &Freed,
    live: &ByAddress,
) -> (ErrorKind, Option<(AllocFunc, u32, u64)>, Option<u32>) {
    if let Some(&(f, s, size, fs)) = freed.get(&addr) {
        (ErrorKind::DoubleFree, Some((f, s, size)), Some(fs))
    } else if let Some(block) = live.inside(addr) {
        (ErrorKind::InteriorFree, Some(block), None)
    } else {
        (ErrorKind::InvalidFree, None, None)
    }
}

impl LeakTracker {
    /// A tracker that leaves heap errors out (cheaper: nothing per event).
    pub fn summary_only() -> Self {
        LeakTracker {
            summary_only: true,
            ..Self::default()
        }
    }

    /// Note what heap errors will need from `ev`, before it is applied to `replay`.
    #[inline]
    pub fn before(&mut self, ev: &Event, replay: &Replay) {
        if self.summary_only {
            return;
        }
        let at = self.seen;
        self.seen += 1;
        if let Event::HeapError {
            func,
            kind,
            addr,
            alloc_func,
            stack,
            ..
        } = *ev
        {
            match kind {
                memlens_trace::HeapErrorKind::Mismatch => {
                    let alloc = replay.get(addr).map(|b| (alloc_func, b.site.stack, b.size));
                    self.count(ErrorKind::MismatchedFree, func, addr, stack, alloc, None);
                }
                memlens_trace::HeapErrorKind::NotABlock => self.unresolved.push(Unresolved {
                    at,
                    addr,
                    func,
                    stack,
                }),
            }
        }
    }

    /// Count one heap error; its first occurrence describes it.
    fn count(
        &mut self,
        kind: ErrorKind,
        func: AllocFunc,
        addr: u64,
        stack: u32,
        alloc: Option<(AllocFunc, u32, u64)>,
        first_free_stack: Option<u32>,
    ) {
        self.errors
            .entry((kind, stack, func))
            .or_insert(HeapError {
                kind,
                func,
                addr,
                count: 0,
                stack,
                alloc,
                first_free_stack,
                suppressed_by: None,
            })
            .count += 1;
    }

    /// Tell the `NotABlock` releases apart: replay the events again (the same ones, in
    /// the same order, as the pass that fed [`LeakTracker::before`]) up to the last of
    /// them, keeping the release history of their addresses only.
    fn resolve(
        &mut self,
        r: &TraceReader,
        md: &Metadata,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), crate::Error> {
        let unresolved = std::mem::take(&mut self.unresolved);
        let Some(last) = unresolved.last().map(|u| u.at) else {
            return Ok(());
        };
        let wanted: std::collections::HashSet<u64> = unresolved.iter().map(|u| u.addr).collect();
        let mut freed = Freed::default();
        let mut live = ByAddress::default();
        let mut replay = Replay::for_trace(r);
        let mut next = unresolved.iter().peekable();
        for (at, ev) in ReportedEvents::new(r, md, HEAP_ERRORS_PASS, progress).enumerate() {
            let ev = ev?;
            while let Some(u) = next.next_if(|u| u.at == at as u64) {
                let (kind, alloc, first_free) = not_a_block(u.addr, &freed, &live);
                self.count(kind, u.func, u.addr, u.stack, alloc, first_free);
            }
            if at as u64 >= last {
                break;
            }
            note_freed(&mut freed, &ev, &replay, |a| wanted.contains(&a));
            replay.apply(&ev, &mut live);
        }
        Ok(())
    }

    /// The leak report: the scan joined with the replay of the whole trace.
    pub fn finish(
        mut self,
        r: &TraceReader,
        md: &Metadata,
        replay: &Replay,
        resolution: Resolution,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<LeakReport, crate::Error> {
        self.resolve(r, md, progress)?;
        let errors = self.errors;
        let mut errors: Vec<HeapError> = errors.into_values().collect();
        errors.sort_by_key(|e| (e.kind, e.stack, e.addr));

        if !r.has_scan() {
            return Ok(LeakReport {
                scan: None,
                summary: Summary::default(),
                records: Vec::new(),
                errors,
                python_cycles: Vec::new(),
                sample_interval: r.header().sample_interval,
            });
        }

        let (mut info, roots, blocks) = read_scan(r)?;

        // Each block's site, from the replay.
        let site = |b: &ScanBlock| -> (AllocFunc, u32) {
            replay
                .get(b.addr)
                .map_or((AllocFunc::Malloc, 0), |x| (x.site.func, x.site.stack))
        };
        // The definitely-lost leader owning each indirect block.
        let leader_of = |mut i: usize| -> Option<usize> {
            for _ in 0..blocks.len().min(1 << 20) + 1 {
                match blocks[i].state {
                    BlockState::DefinitelyLost => return Some(i),
                    BlockState::IndirectlyLost => match blocks[i].link {
                        BlockLink::Block(j) if (j as usize) < blocks.len() && j as usize != i => {
                            i = j as usize
                        }
                        _ => return None,
                    },
                    _ => return None,
                }
            }
            None
        };

        // Group into records.
        let depth = resolution.frames();
        let key_frames = |stack: u32| -> Vec<(u32, u64)> {
            md.stacks
                .get(&stack)
                .map(|f| f.iter().take(depth).map(|f| (f.module, f.offset)).collect())
                .unwrap_or_default()
        };
        // A snapshot's blocks without a stack (allocated before recording, or in a
        // process never recorded) are grouped by size as well.
        let by_size = info.trigger == ExitKind::Snapshot;
        type Key = (BlockState, AllocFunc, Vec<(u32, u64)>, u64);
        let mut index: foldhash::HashMap<Key, usize> = Default::default();
        // Blocks of one stack share their record: the frames are gathered and hashed once
        // per (state, function, stack), not once per block (a Python program ends with
        // hundreds of thousands of reachable blocks from a few thousand stacks).
        let mut by_stack: foldhash::HashMap<(BlockState, AllocFunc, u32, u64), usize> =
            Default::default();
        let mut records: Vec<LossRecord> = Vec::new();
        let mut record_of_block: Vec<usize> = vec![usize::MAX; blocks.len()];
        let mut summary = Summary::default();
        let mut heur: HashMap<Heuristic, Amount> = HashMap::new();
        let mut cycles: HashMap<(AllocFunc, u32), Amount> = HashMap::new();
        for (i, b) in blocks.iter().enumerate() {
            if b.internal {
                info.internal.add(b.size);
                continue;
            }
            if replay.get(b.addr).is_none() {
                info.unknown_blocks += 1;
            }
            let (func, stack) = site(b);
            let size_key = if by_size && stack == 0 { b.size } else { 0 };
            let ri = *by_stack
                .entry((b.state, func, stack, size_key))
                .or_insert_with(|| {
                    let key = (b.state, func, key_frames(stack), size_key);
                    *index.entry(key).or_insert_with(|| {
                        records.push(LossRecord {
                            kind: b.state,
                            func,
                            stack,
                            bytes: 0,
                            blocks: 0,
                            indirect: Amount::default(),
                            chain: Vec::new(),
                            suppressed_by: None,
                        });
                        records.len() - 1
                    })
                });
            records[ri].bytes += b.size;
            records[ri].blocks += 1;
            record_of_block[i] = ri;
            summary.get_mut(b.state).add(b.size);
            if let (BlockState::StillReachable, Some(h)) = (b.state, b.heuristic) {
                heur.entry(h).or_default().add(b.size);
                if h == Heuristic::PyCycle {
                    cycles.entry((func, stack)).or_default().add(b.size);
                }
            }
        }
        for (i, b) in blocks.iter().enumerate() {
            if b.internal || b.state != BlockState::IndirectlyLost {
                continue;
            }
            if let Some(l) = leader_of(i) {
                let ri = record_of_block[l];
                if ri != usize::MAX {
                    records[ri].indirect.add(b.size);
                }
            }
        }
        // Chains for reachable and possibly lost records: from their first block up.
        let mut done = vec![false; records.len()];
        for (i, b) in blocks.iter().enumerate() {
            let ri = record_of_block[i];
            if ri == usize::MAX
                || done[ri]
                || !matches!(
                    b.state,
                    BlockState::StillReachable | BlockState::PossiblyLost
                )
            {
                continue;
            }
            done[ri] = true;
            let mut chain = Vec::new();
            let mut cur = i;
            for _ in 0..64 {
                match blocks[cur].link {
                    BlockLink::Block(j) if (j as usize) < blocks.len() && j as usize != cur => {
                        cur = j as usize;
                        let (func, stack) = site(&blocks[cur]);
                        chain.push(ChainStep::Block {
                            stack,
                            func,
                            size: blocks[cur].size,
                        });
                    }
                    BlockLink::Root { root, addr } => {
                        if let Some(r) = roots.get(&root) {
                            chain.push(ChainStep::Root {
                                kind: r.kind,
                                name: r.name.clone(),
                                tid: r.tid,
                                addr,
                            });
                        }
                        break;
                    }
                    _ => break,
                }
            }
            chain.reverse();
            records[ri].chain = chain;
        }
        records.sort_by_key(|r| (r.total_bytes(), r.blocks, r.kind));
        let mut python_cycles: Vec<(AllocFunc, u32, Amount)> =
            cycles.into_iter().map(|((f, s), a)| (f, s, a)).collect();
        python_cycles.sort_by(|a, b| b.2.bytes.cmp(&a.2.bytes).then(a.1.cmp(&b.1)));
        let mut h: Vec<(Heuristic, Amount)> = heur.into_iter().collect();
        h.sort_by_key(|(h, _)| *h);
        summary.reachable_via_heuristic = h;
        Ok(LeakReport {
            scan: Some(info),
            summary,
            records,
            errors,
            python_cycles,
            sample_interval: r.header().sample_interval,
        })
    }
}

impl LeakReport {
    pub fn suppress(
        &mut self,
        sup: &Suppressions,
        md: &Metadata,
        sym: &mut Symbolizer,
    ) -> Vec<UsedSuppression> {
        if sup.is_empty() {
            return Vec::new();
        }
        let mut used: Vec<UsedSuppression> = Vec::new();
        // One line per entry (by its place: entries may share a name).
        let mut note = |e: SuppressionInfo<'_>, a: Amount| {
            let origin = format!("{}:{}", e.origin, e.line);
            match used
                .iter_mut()
                .find(|u| u.name == e.name && u.origin == origin)
            {
                Some(u) => {
                    u.count += 1;
                    u.amount.bytes += a.bytes;
                    u.amount.blocks += a.blocks;
                }
                None => used.push(UsedSuppression {
                    name: e.name.to_string(),
                    origin,
                    count: 1,
                    amount: a,
                }),
            }
        };
        for i in 0..self.records.len() {
            let (kind, func, stack) = {
                let r = &self.records[i];
                (r.kind, r.func, r.stack)
            };
            let frames = suppression_frames(md, sym, func, stack);
            let frames = frames.iter().map(SuppFrame::view).collect::<Vec<_>>();
            if let Some(e) = sup.matching(supp_kind(kind), &frames) {
                let r = &mut self.records[i];
                note(
                    e,
                    Amount {
                        bytes: r.bytes,
                        blocks: r.blocks,
                    },
                );
                r.suppressed_by = Some(e.name.to_string());
            }
        }
        for i in 0..self.errors.len() {
            let (func, stack) = (self.errors[i].func, self.errors[i].stack);
            let frames = suppression_frames(md, sym, func, stack);
            let frames = frames.iter().map(SuppFrame::view).collect::<Vec<_>>();
            // memcheck files invalid, double and mismatched frees under one kind, `Free`.
            if let Some(e) = sup.matching_error("Free", None, &frames) {
                note(e, Amount::default());
                self.errors[i].suppressed_by = Some(e.name.to_string());
            }
        }
        self.resummarize();
        used
    }

    /// Recompute the summary after the caller marked records as suppressed.
    pub fn resummarize(&mut self) {
        self.summary = Summary {
            reachable_via_heuristic: std::mem::take(&mut self.summary.reachable_via_heuristic),
            ..Summary::of(&self.records)
        };
    }
}

// ---- suppressions ----

/// A suppression that matched, and what it hid.
#[derive(Clone, Debug)]
pub struct UsedSuppression {
    pub name: String,
    /// `file:line` of the suppression (or the built-in set's name).
    pub origin: String,
    /// Loss records and heap errors it matched.
    pub count: u64,
    /// Bytes and blocks of the loss records it matched.
    pub amount: Amount,
}

/// A stack as suppressions see it: the allocation (or release) function first, as
/// memcheck's replacement shows it, then the symbolized frames with module paths.
pub fn suppression_frames(
    md: &Metadata,
    sym: &mut Symbolizer,
    func: AllocFunc,
    stack: u32,
) -> Vec<SuppFrame> {
    let (function, mangled) = alloc_symbol(func);
    let mut out = vec![SuppFrame {
        function: Some(function.to_string()),
        mangled: mangled.map(str::to_string),
        file: None,
        line: None,
        module: None,
    }];
    let raw = md.stacks.get(&stack).cloned().unwrap_or_default();
    // The frames a person sees (in a Python stack, without the interpreter's own).
    for r in sym.shown(&raw).into_owned() {
        let path = md.modules.get(&r.module).map(|m| m.path.clone());
        for f in sym.frame(r) {
            // An unresolved frame has no function (`???` to suppressions).
            out.push(SuppFrame {
                function: f.resolved.then(|| f.function.clone()),
                mangled: f.mangled.clone(),
                file: f.file.clone(),
                line: f.line,
                module: path.clone().or_else(|| f.module.clone()),
            });
        }
    }
    out
}

/// The Valgrind suppression (`--gen-suppressions=all`) for a loss record of `kind`, or
/// for a heap error (`None`: memcheck's `Free` kind) at `stack`.
pub fn suppression_text(
    md: &Metadata,
    sym: &mut Symbolizer,
    kind: Option<BlockState>,
    func: AllocFunc,
    stack: u32,
) -> String {
    let frames = suppression_frames(md, sym, func, stack);
    let frames = frames.iter().map(SuppFrame::view).collect::<Vec<_>>();
    match kind {
        Some(k) => gen_suppression("", supp_kind(k), &frames),
        None => gen_error_suppression("", "Free", &frames),
    }
}

/// An owned [`crate::suppressions::Frame`].
pub struct SuppFrame {
    pub function: Option<String>,
    pub mangled: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub module: Option<String>,
}

impl SuppFrame {
    pub fn view(&self) -> crate::suppressions::Frame<'_> {
        crate::suppressions::Frame {
            function: self.function.as_deref(),
            mangled: self.mangled.as_deref(),
            file: self.file.as_deref(),
            line: self.line,
            module: self.module.as_deref(),
        }
    }
}

pub fn supp_kind(k: BlockState) -> LeakKind {
    match k {
        BlockState::DefinitelyLost => LeakKind::Definite,
        BlockState::IndirectlyLost => LeakKind::Indirect,
        BlockState::PossiblyLost => LeakKind::Possible,
        BlockState::StillReachable => LeakKind::Reachable,
    }
}

/// The allocator function as a frame: its readable name and, for C++'s operators, the
/// symbol of the operator the program called (`_Znwm`, `_ZdlPvm`...), which suppressions
/// name.
pub fn alloc_symbol(f: AllocFunc) -> (&'static str, Option<&'static str>) {
    match f.cxx_operator() {
        Some((symbol, readable)) => (readable, Some(symbol)),
        None => (f.name(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::HeapObserver;

    fn block(size: u64, stack: u32) -> crate::replay::Block {
        crate::replay::Block {
            size,
            count: 1,
            site: crate::replay::SiteKey {
                stack,
                func: AllocFunc::Malloc,
            },
            ts: 0,
            thread: 0,
            tag: 0,
        }
    }

    /// A bad release is named from the history of its address: freed and not allocated
    /// since, a double free; strictly inside a live block (found by address, the block
    /// just before it), an interior free of that block; anything else, never allocated.
    #[test]
    fn a_release_of_a_non_block_is_named() {
        let mut live = ByAddress::default();
        live.added(0x1000, &block(64, 1));
        live.added(0x2000, &block(0, 2));
        live.added(0x3000, &block(16, 3));
        live.removed(0x3000, &block(16, 3), crate::replay::Release::Free);
        let mut freed = Freed::default();
        freed.insert(0x3000, (AllocFunc::Malloc, 3, 16, 9));
        let kind = |a| not_a_block(a, &freed, &live);
        assert_eq!(
            kind(0x3000),
            (
                ErrorKind::DoubleFree,
                Some((AllocFunc::Malloc, 3, 16)),
                Some(9)
            )
        );
        assert_eq!(
            kind(0x1008),
            (
                ErrorKind::InteriorFree,
                Some((AllocFunc::Malloc, 1, 64)),
                None
            )
        );
        assert_eq!(
            kind(0x103f),
            (
                ErrorKind::InteriorFree,
                Some((AllocFunc::Malloc, 1, 64)),
                None
            )
        );
        assert_eq!(kind(0x1040), (ErrorKind::InvalidFree, None, None));
        // A block of 0 bytes has no inside; the freed one no longer counts as live.
        assert_eq!(kind(0x2001), (ErrorKind::InvalidFree, None, None));
        assert_eq!(kind(0x3008), (ErrorKind::InvalidFree, None, None));
        assert_eq!(kind(0x10), (ErrorKind::InvalidFree, None, None));
    }
}
