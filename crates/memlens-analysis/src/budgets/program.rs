//! What the program told the recorder (`memlens.h`, the `memlens-api` crate, the pytest
//! plugin), as the budgets' pass follows it: each thread's region stack (regions are
//! components: `regions = ["parse*"]`), and the assertions, evaluated at their place in
//! the replay.
//!
//! An assertion is judged on the replay's live heap at the time of its record:
//! no-leaks-since(mark, limit) fails when blocks that the asserting thread allocated at or
//! after `mark` are still live and hold more than `limit` bytes (0: any block fails; only
//! that thread's blocks, so that tests running in parallel threads do not see each
//! other's); max-live(limit) fails when the process's live heap exceeds `limit`;
//! peak-since(mark, limit) fails when the live bytes of the blocks the thread allocated
//! since the mark exceeded `limit` at any time up to the assertion. A failure keeps the
//! sites of the blocks concerned (for a peak, those live at its highest), the most bytes
//! first.

use crate::replay::{Replay, SiteKey};
use memlens_common::glob::glob_match;
use memlens_trace::reader::{Event, Metadata};
use memlens_trace::AssertKind;
use std::collections::HashMap;

/// Sites kept per failed assertion.
pub const ASSERT_SITES: usize = 5;

/// Each thread's open regions, and the components they allow.
pub(super) struct Regions {
    /// Region id -> the components whose `regions` patterns match its name.
    by_id: HashMap<u32, u64>,
    /// Components without `regions` patterns: every block may belong to them.
    any: u64,
    /// Thread index -> its open regions, innermost last.
    stacks: HashMap<u32, Vec<u32>>,
    /// Thread index -> the components its open regions allow (`any` when none is open).
    masks: HashMap<u32, u64>,
}

impl Regions {
    /// `patterns[i]`: component `i`'s region patterns (empty: any).
    pub(super) fn new(patterns: &[&[String]], md: &Metadata) -> Regions {
        let mut any = 0u64;
        for (i, p) in patterns.iter().enumerate() {
            if p.is_empty() {
                any |= 1 << i;
            }
        }
        let by_id = md
            .region_names
            .iter()
            .map(|(&id, name)| {
                let mut m = 0u64;
                for (i, p) in patterns.iter().enumerate() {
                    if p.iter().any(|p| glob_match(p.as_bytes(), name.as_bytes())) {
                        m |= 1 << i;
                    }
                }
                (id, m)
            })
            .collect();
        Regions {
            by_id,
            any,
            stacks: HashMap::new(),
            masks: HashMap::new(),
        }
    }

    /// The components a block allocated now by `thread` may belong to.
    pub(super) fn mask(&self, thread: u32) -> u64 {
        self.masks.get(&thread).copied().unwrap_or(self.any)
    }

    /// `thread` entered (`enter`) or left region `id`. Leaving a region that is not the
    /// innermost closes the ones inside it too; leaving one that is not open is ignored.
    pub(super) fn apply(&mut self, thread: u32, enter: bool, id: u32) {
        let stack = self.stacks.entry(thread).or_default();
        if enter {
            stack.push(id);
        } else if let Some(pos) = stack.iter().rposition(|&r| r == id) {
            stack.truncate(pos);
        } else {
            return;
        }
        let mut m = self.any;
        for r in stack.iter() {
            m |= self.by_id.get(r).copied().unwrap_or(0);
        }
        self.masks.insert(thread, m);
    }
}

/// Blocks of one site among those an assertion is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertSite {
    pub site: SiteKey,
    pub blocks: u64,
    pub bytes: u64,
}

/// One assertion of the program, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    pub label: String,
    pub kind: AssertKind,
    /// When it was made (ns since the trace started), by which thread (index and name).
    pub ts: u64,
    pub thread: u32,
    pub thread_name: String,
    /// The stack of the call.
    pub stack: u32,
    /// No-leaks-since: the mark. Max-live: 0.
    pub mark: u64,
    /// Max-live: the limit (bytes). No-leaks-since: 0.
    pub limit: u64,
    /// No-leaks-since: the bytes still live of those allocated since the mark; peak-since:
    /// their highest live bytes; max-live: the live heap's bytes.
    pub value: u64,
    /// The blocks `value` counts (peak-since: those live at the peak).
    pub blocks: u64,
    pub passed: bool,
    /// When it failed: the sites of the blocks counted, the most bytes first (at most
    /// [`ASSERT_SITES`]); for a peak, their share of it.
    pub sites: Vec<AssertSite>,
}

/// The peaks that peak-since assertions ask for: for each (thread, mark) of one, the
/// live bytes of the blocks that thread allocated since the mark, followed from the mark
/// to the assertion, and which sites they were at the highest. The marks are known before
/// the pass ([`Peaks::prepare`] reads the assertions first, only in traces that have
/// some).
#[derive(Default)]
pub(super) struct Peaks {
    /// (mark, thread) not yet reached, the latest first (popped from the end).
    pending: Vec<(u64, u32)>,
    /// (thread, mark) -> what is followed.
    active: HashMap<(u32, u64), Followed>,
    /// (thread, mark) -> its assertions not judged yet: it is followed until the last.
    uses: HashMap<(u32, u64), u32>,
    /// (thread, mark) -> the Python functions that assert about it (see
    /// [`python_caller`]): the blocks they allocate themselves to make the assertion (the
    /// pytest plugin's ctypes temporaries) are not the measured code's, and do not count
    /// towards the peak.
    asserting: HashMap<(u32, u64), Vec<(u32, u64)>>,
    /// Stack id -> its [`python_caller`], computed once (only with `asserting`).
    callers: HashMap<u32, Option<(u32, u64)>>,
}

/// One followed peak: the live bytes now and at the highest, and the sites' share; the
/// blocks of the Python functions in `skip` are left out.
///
/// The sites' figures at the peak need no copy at each new peak: a new peak bumps
/// `epoch`, and a site about to change first saves its figures if its epoch is older
/// (the report's peak composition works the same way).
#[derive(Default)]
struct Followed {
    skip: Vec<(u32, u64)>,
    live: u64,
    peak: u64,
    epoch: u64,
    sites: HashMap<SiteKey, SiteShare>,
}

#[derive(Default, Clone, Copy)]
struct SiteShare {
    /// Bytes and blocks live now.
    bytes: u64,
    blocks: u64,
    /// The peak's epoch when `at_peak` was saved.
    epoch: u64,
    /// (bytes, blocks) at the peak of `epoch`.
    at_peak: (u64, u64),
}

impl Followed {
    /// Whether a block allocated where `caller` was counts.
    fn counts(&self, caller: Option<(u32, u64)>) -> bool {
        caller.is_none_or(|c| !self.skip.contains(&c))
    }

    /// A block of `site` (`bytes`, standing for `blocks`) entered (`added`) or left.
    fn change(&mut self, site: SiteKey, bytes: u64, blocks: u64, added: bool) {
        let s = self.sites.entry(site).or_default();
        if s.epoch < self.epoch {
            s.at_peak = (s.bytes, s.blocks);
            s.epoch = self.epoch;
        }
        if added {
            s.bytes = s.bytes.saturating_add(bytes);
            s.blocks += blocks;
            self.live = self.live.saturating_add(bytes);
            if self.live > self.peak {
                self.peak = self.live;
                self.epoch += 1;
            }
        } else {
            s.bytes = s.bytes.saturating_sub(bytes);
            s.blocks = s.blocks.saturating_sub(blocks);
            self.live = self.live.saturating_sub(bytes);
        }
    }

    /// Each site's share of the peak, the sites that had none left out.
    fn at_peak(&self) -> impl Iterator<Item = AssertSite> + '_ {
        self.sites
            .iter()
            .map(|(&site, s)| {
                let (bytes, blocks) = if s.epoch < self.epoch {
                    // Unchanged since the last peak.
                    (s.bytes, s.blocks)
                } else {
                    s.at_peak
                };
                AssertSite {
                    site,
                    blocks,
                    bytes,
                }
            })
            .filter(|s| s.bytes > 0 || s.blocks > 0)
    }
}

impl Peaks {
    pub(super) fn prepare(
        reader: &memlens_trace::reader::TraceReader,
        md: &Metadata,
    ) -> Result<Peaks, crate::Error> {
        let mut p = Peaks::default();
        if md.assert_labels.is_empty() {
            return Ok(p);
        }
        for ev in reader.events() {
            if let Event::Assert {
                kind: AssertKind::PeakSince,
                thread,
                mark,
                stack,
                ..
            } = ev?
            {
                p.pending.push((mark, thread));
                *p.uses.entry((thread, mark)).or_default() += 1;
                if let Some(c) = python_caller(md, stack) {
                    p.asserting.entry((thread, mark)).or_default().push(c);
                }
            }
        }
        p.pending.sort_unstable_by(|a, b| b.cmp(a));
        p.pending.dedup();
        Ok(p)
    }

    /// Follow `ev` (before `replay` applies it).
    pub(super) fn before(&mut self, ev: &Event, replay: &Replay, md: &Metadata) {
        let ts = ev.ts();
        while let Some(&(m, t)) = self.pending.last() {
            if m > ts {
                break;
            }
            self.pending.pop();
            let skip = self.asserting.get(&(t, m)).cloned().unwrap_or_default();
            self.active.insert(
                (t, m),
                Followed {
                    skip,
                    ..Followed::default()
                },
            );
        }
        if self.active.is_empty() {
            return;
        }
        let (asserting, callers) = (!self.asserting.is_empty(), &mut self.callers);
        let mut caller = |stack: u32| {
            if !asserting {
                return None;
            }
            *callers
                .entry(stack)
                .or_insert_with(|| python_caller(md, stack))
        };
        let (released, added) = match *ev {
            Event::Alloc {
                thread,
                addr,
                size,
                stack,
                func,
                ..
            } if addr != 0 => (None, Some((thread, addr, size, SiteKey { stack, func }))),
            Event::Free { addr, .. } if addr != 0 => (Some(addr), None),
            Event::Realloc {
                thread,
                old,
                new,
                size,
                stack,
                func,
                ..
            } => (
                (old != 0 && (new != 0 || size == 0)).then_some(old),
                (new != 0).then_some((thread, new, size, SiteKey { stack, func })),
            ),
            _ => (None, None),
        };
        // The block released, and a live block at the address an allocation returns (a
        // release the recorder missed, which the replay drops as well).
        let reused = added
            .map(|(_, addr, ..)| addr)
            .filter(|&a| released != Some(a));
        for b in [released, reused]
            .into_iter()
            .flatten()
            .filter_map(|a| replay.get(a))
        {
            let c = caller(b.site.stack);
            for (&(t, m), f) in self.active.iter_mut() {
                if t == b.thread && b.ts >= m && f.counts(c) {
                    f.change(b.site, b.size, b.count, false);
                }
            }
        }
        if let Some((thread, addr, size, site)) = added {
            let (bytes, blocks) = replay.weigh(addr, ts, size);
            let c = caller(site.stack);
            for (&(t, _), f) in self.active.iter_mut() {
                if t == thread && f.counts(c) {
                    f.change(site, bytes, blocks, true);
                }
            }
        }
    }

    /// The peak for an assertion of `thread` about `mark`: its bytes, and each site's
    /// share of it. After the last assertion about it, it is no longer followed (nor
    /// waited for, when no event came between the mark and the assertion).
    fn take(&mut self, thread: u32, mark: u64) -> (u64, Vec<AssertSite>) {
        let key = (thread, mark);
        let peak = self
            .active
            .get(&key)
            .map_or((0, Vec::new()), |f| (f.peak, f.at_peak().collect()));
        let left = self.uses.get_mut(&key).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left.unwrap_or(0) == 0 {
            self.uses.remove(&key);
            self.asserting.remove(&key);
            self.active.remove(&key);
            self.pending.retain(|&(m, t)| (t, m) != key);
        }
        peak
    }
}

/// The Python function a stack was in and its Python callers, by code object only (a
/// Python program's stacks that show the same frames share one id, whatever instruction
/// of a line they were at, and native frames between them vary): the innermost Python
/// frame's code and a hash of the sequence of codes. `None` for a stack without Python
/// frames. Two blocks with the same were allocated by that function itself (or by native
/// code it called), not by a Python function it called.
fn python_caller(md: &Metadata, stack: u32) -> Option<(u32, u64)> {
    let mut codes = md.stacks.get(&stack)?.iter().filter_map(|f| f.python());
    let (first, _) = codes.next()?;
    let chain = codes.fold(u64::from(first), |h, (code, _)| {
        (h ^ u64::from(code))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
    });
    Some((first, chain))
}

/// Judge an assertion on the live heap of `replay` (the events before it applied).
#[allow(clippy::too_many_arguments)]
pub(super) fn judge(
    peaks: &mut Peaks,
    replay: &Replay,
    md: &Metadata,
    ts: u64,
    thread: u32,
    kind: AssertKind,
    mark: u64,
    limit: u64,
    label: u32,
    stack: u32,
) -> Assertion {
    // From Python, the function that makes the assertion allocates to make the call (its
    // arguments, ctypes' temporaries, the mark it kept): not the measured code's blocks.
    let asserting = python_caller(md, stack);
    let counted = |b: &crate::replay::Block| match kind {
        AssertKind::NoLeaksSince | AssertKind::PeakSince => {
            b.thread == thread
                && b.ts >= mark
                && asserting.is_none_or(|a| python_caller(md, b.site.stack) != Some(a))
        }
        AssertKind::MaxLive => true,
    };
    let since = || {
        let (mut bytes, mut n) = (0u64, 0u64);
        for (_, b) in replay.blocks().filter(|(_, b)| counted(b)) {
            bytes = bytes.saturating_add(b.size);
            n += b.count;
        }
        (bytes, n)
    };
    // A peak's sites are those of its moment; the others', the blocks live now.
    let mut at_peak = None;
    let (value, blocks, passed) = match kind {
        AssertKind::NoLeaksSince => {
            let (bytes, n) = since();
            (bytes, n, n == 0 || (limit > 0 && bytes <= limit))
        }
        AssertKind::PeakSince => {
            let (peak, sites) = peaks.take(thread, mark);
            let blocks = sites.iter().map(|s| s.blocks).sum();
            at_peak = Some(sites);
            (peak, blocks, peak <= limit)
        }
        AssertKind::MaxLive => {
            let live = replay.live_bytes();
            (live, replay.live_blocks(), live <= limit)
        }
    };
    let mut sites = Vec::new();
    if !passed {
        sites = match at_peak {
            Some(sites) => sites,
            None => {
                let mut by_site: HashMap<SiteKey, (u64, u64)> = HashMap::new();
                for (_, b) in replay.blocks().filter(|(_, b)| counted(b)) {
                    let e = by_site.entry(b.site).or_default();
                    e.0 += b.count;
                    e.1 = e.1.saturating_add(b.size);
                }
                by_site
                    .into_iter()
                    .map(|(site, (blocks, bytes))| AssertSite {
                        site,
                        blocks,
                        bytes,
                    })
                    .collect()
            }
        };
        sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.site.cmp(&b.site)));
        sites.truncate(ASSERT_SITES);
    }
    Assertion {
        label: md
            .assert_labels
            .get(&label)
            .cloned()
            .unwrap_or_else(|| format!("assertion #{label}")),
        kind,
        ts,
        thread,
        thread_name: md
            .threads
            .get(&thread)
            .map_or_else(String::new, |t| t.name.clone()),
        stack,
        mark: if kind == AssertKind::MaxLive { 0 } else { mark },
        limit,
        value,
        blocks,
        passed,
        sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_trace::AllocFunc;

    /// Two peak-since assertions about one mark: the second sees the same peak, made of
    /// the blocks live at it (freed since), not 0; after it the mark is no longer
    /// followed. An allocation at a live block's address drops that block from the peak's
    /// sites, as from the replay.
    #[test]
    fn a_mark_asserted_twice_keeps_its_peak_and_its_sites() {
        let mut p = Peaks::default();
        p.pending.push((10, 1));
        p.uses.insert((1, 10), 2);
        let mut replay = Replay::new();
        let alloc = |ts, addr, size, stack| Event::Alloc {
            ts,
            thread: 1,
            func: AllocFunc::Malloc,
            addr,
            size,
            stack,
        };
        let free = |ts, addr| Event::Free {
            ts,
            thread: 1,
            func: AllocFunc::Free,
            addr,
            stack: 0,
        };
        let before_mark = alloc(5, 0x100, 7000, 9);
        for ev in [
            before_mark,
            alloc(11, 0x200, 1000, 1),
            alloc(12, 0x300, 3000, 2),
            // Reused address: the 3000-byte block is dropped, this one takes its place.
            alloc(13, 0x300, 500, 3),
            free(14, 0x200),
            free(15, 0x100),
        ] {
            p.before(&ev, &replay, &Metadata::default());
            replay.apply(&ev, &mut ());
        }
        let shares = |v: Vec<AssertSite>| {
            let mut v: Vec<(u32, u64, u64)> = v
                .iter()
                .map(|s| (s.site.stack, s.bytes, s.blocks))
                .collect();
            v.sort();
            v
        };
        let (peak, sites) = p.take(1, 10);
        assert_eq!(
            (peak, shares(sites)),
            (4000, vec![(1, 1000, 1), (2, 3000, 1)])
        );
        let ev = alloc(16, 0x400, 200, 4);
        p.before(&ev, &replay, &Metadata::default());
        replay.apply(&ev, &mut ());
        let (peak, sites) = p.take(1, 10);
        assert_eq!(
            (peak, shares(sites)),
            (4000, vec![(1, 1000, 1), (2, 3000, 1)])
        );
        assert!(p.active.is_empty() && p.uses.is_empty() && p.pending.is_empty());
    }

    #[test]
    fn a_region_allows_its_components_until_it_is_left() {
        let mut md = Metadata::default();
        md.region_names.insert(1, "parse".into());
        md.region_names.insert(2, "parse.inner".into());
        md.region_names.insert(3, "render".into());
        let parse = vec!["parse*".to_string()];
        let inner = vec!["*.inner".to_string()];
        // process (any region), parse*, *.inner
        let mut r = Regions::new(&[&[], &parse, &inner], &md);
        assert_eq!(r.mask(7), 0b001);
        r.apply(7, true, 1);
        assert_eq!(r.mask(7), 0b011);
        r.apply(7, true, 2);
        assert_eq!(r.mask(7), 0b111);
        assert_eq!(r.mask(8), 0b001, "another thread is not in the region");
        r.apply(7, true, 3);
        assert_eq!(r.mask(7), 0b111, "an open outer region still counts");
        // Leaving `parse` closes the regions inside it too.
        r.apply(7, false, 1);
        assert_eq!(r.mask(7), 0b001);
        // Leaving a region that is not open changes nothing.
        r.apply(7, false, 3);
        assert_eq!(r.mask(7), 0b001);
    }
}
