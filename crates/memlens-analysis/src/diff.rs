//! Two profiles compared site by site.
//!
//! Addresses differ between runs (ASLR, another build of the program), so sites are
//! matched by their *symbolized* stack: the function name of every frame, inlined frames
//! included, and the allocating function. Frames that cannot be symbolized keep their
//! `module+0xoffset` name (stable while the module is the same file); frames outside any
//! module have no stable name and all match each other. A frame in a module that is the
//! same build in both traces (same build id) is matched by its line too: two calls to
//! `malloc` in one function are two sites. In a module that changed (the program rebuilt
//! between the runs) lines move, so its frames match by function only, and sites of one
//! trace with the same names (those two calls) are added together first.

use crate::profile::{Metric, Profile, Source, Values};
use crate::symbolize::{Frame, Symbolizer};
use memlens_trace::AllocFunc;
use std::collections::{HashMap, HashSet};

/// A site as matched across traces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolicSite {
    pub func: AllocFunc,
    /// Function names, innermost first ([`match_name`]; `name:line` for a frame of a
    /// module that is the same build in both traces).
    pub functions: Vec<String>,
}

/// Whether a site is in both traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Only in the second (after) trace.
    New,
    /// Only in the first (before) trace.
    Vanished,
    Both,
}

impl Status {
    /// `"new"`, `"vanished"`, `"both"`.
    pub fn key(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Vanished => "vanished",
            Status::Both => "both",
        }
    }
}

/// One site of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffSite {
    pub site: SymbolicSite,
    /// The symbolized stack (innermost first) of the after trace's site, or of the
    /// before trace's for a vanished site. Of merged sites, the one that allocated most.
    pub frames: Vec<Frame>,
    pub before: Option<Values>,
    pub after: Option<Values>,
}

impl DiffSite {
    pub fn status(&self) -> Status {
        match (&self.before, &self.after) {
            (None, _) => Status::New,
            (_, None) => Status::Vanished,
            _ => Status::Both,
        }
    }
    pub fn before(&self, m: Metric) -> u64 {
        self.before.map_or(0, |v| v[m])
    }
    pub fn after(&self, m: Metric) -> u64 {
        self.after.map_or(0, |v| v[m])
    }
    /// after - before.
    pub fn change(&self, m: Metric) -> i64 {
        let d = self.after(m) as i128 - self.before(m) as i128;
        d.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

/// The comparison of two profiles.
#[derive(Clone, Debug)]
pub struct Diff {
    /// The metric the sites are sorted by.
    pub metric: Metric,
    /// Both traces have a leak check, so the leak metrics compare.
    pub leak_check: bool,
    /// Sites that changed in any comparable metric, or are new or vanished: by the
    /// absolute change of `metric` (largest first), then of bytes allocated, then by
    /// stack.
    pub sites: Vec<DiffSite>,
    /// Sites in both traces with no change.
    pub unchanged: usize,
}

impl Diff {
    /// Whether `m` can be compared (leak metrics need both leak checks).
    pub fn comparable(&self, m: Metric) -> bool {
        self.leak_check || m.info().source != Source::LeakCheck
    }
}

/// The name a frame is matched by: its function name, a Python frame's function and file
/// name (`handle_request (server.py)`: the same function of another file is another
/// frame; lines move between versions), or `[unknown]` for an address outside any module
/// (which differs from run to run).
pub fn match_name(f: &Frame) -> String {
    if f.python {
        format!("{} ({})", f.function, f.file_name().unwrap_or("?"))
    } else if f.module.is_none() && f.file.is_none() {
        "[unknown]".to_string()
    } else {
        f.function.clone()
    }
}

/// The modules (file names) that are the same build in both profiles: the same
/// non-empty build id. Their lines mean the same code in both.
fn same_builds(a: &Profile, b: &Profile) -> HashSet<String> {
    let ids = |p: &Profile| -> HashMap<String, Vec<u8>> {
        p.metadata
            .modules
            .values()
            .filter(|m| !m.build_id.is_empty())
            .map(|m| (m.short_name().to_string(), m.build_id.clone()))
            .collect()
    };
    let before = ids(a);
    ids(b)
        .into_iter()
        .filter(|(name, id)| before.get(name) == Some(id))
        .map(|(name, _)| name)
        .collect()
}

/// [`match_name`], with the line for a frame of a module in `same_build`.
fn match_name_in(f: &Frame, same_build: &HashSet<String>) -> String {
    let name = match_name(f);
    match (&f.module, f.line) {
        (Some(m), Some(line)) if !f.python && same_build.contains(m) => format!("{name}:{line}"),
        _ => name,
    }
}

/// A profile's sites grouped by symbolized stack, with the frames of the site that
/// allocated most in each group.
fn group(
    p: &Profile,
    sym: &mut Symbolizer,
    same_build: &HashSet<String>,
) -> HashMap<SymbolicSite, (Values, Vec<Frame>, u64)> {
    let mut groups: HashMap<SymbolicSite, (Values, Vec<Frame>, u64)> = HashMap::new();
    for s in &p.sites {
        let frames = sym.stack(p.stack(s.stack));
        let key = SymbolicSite {
            func: s.func,
            functions: frames
                .iter()
                .map(|f| match_name_in(f, same_build))
                .collect(),
        };
        let weight = s.values[Metric::Allocated];
        match groups.get_mut(&key) {
            Some((v, f, w)) => {
                v.add(&s.values);
                if weight > *w {
                    (*f, *w) = (frames, weight);
                }
            }
            None => {
                groups.insert(key, (s.values, frames, weight));
            }
        }
    }
    groups
}

/// Compare `before` with `after`, sorting by `metric`.
pub fn diff(
    before: &Profile,
    sym_before: &mut Symbolizer,
    after: &Profile,
    sym_after: &mut Symbolizer,
    metric: Metric,
) -> Diff {
    let leak_check = before.leak_check && after.leak_check;
    let comparable: Vec<Metric> = Metric::all()
        .filter(|m| leak_check || m.info().source != Source::LeakCheck)
        .collect();
    let same_build = same_builds(before, after);
    let mut a = group(before, sym_before, &same_build);
    let b = group(after, sym_after, &same_build);
    let mut sites = Vec::new();
    for (key, (values, frames, _)) in b {
        let old = a.remove(&key).map(|(v, _, _)| v);
        sites.push(DiffSite {
            site: key,
            frames,
            before: old,
            after: Some(values),
        });
    }
    for (key, (values, frames, _)) in a {
        sites.push(DiffSite {
            site: key,
            frames,
            before: Some(values),
            after: None,
        });
    }
    let total = sites.len();
    sites.retain(|s| s.status() != Status::Both || comparable.iter().any(|&m| s.change(m) != 0));
    let unchanged = total - sites.len();
    sites.sort_by(|x, y| {
        let k = |s: &DiffSite| {
            (
                std::cmp::Reverse(s.change(metric).unsigned_abs()),
                std::cmp::Reverse(s.change(Metric::Allocated).unsigned_abs()),
            )
        };
        k(x).cmp(&k(y)).then_with(|| x.site.cmp(&y.site))
    });
    Diff {
        metric,
        leak_check,
        sites,
        unchanged,
    }
}
