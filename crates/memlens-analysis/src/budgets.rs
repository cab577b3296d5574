//! Memory budgets that live with the code: a budget file (`memlens.toml`) names
//! **components** of a program and the limits each must keep; one pass over a trace
//! measures every component ([`measure`]), [`check`] compares the figures with the limits,
//! [`compare`] with a baseline of an earlier run, and the **no-allocation threads** of the
//! file are checked in the same pass.
//!
//! ```toml
//! no_alloc = ["audio*"]          # threads that must never allocate or free
//!
//! [process]                      # the whole process
//! peak = "64 MiB"
//! leaked = 0
//!
//! [component.decoder]
//! threads = ["decode-*"]         # the allocating thread's name
//! functions = ["parse_*"]        # a frame of the allocation stack (as `fun:` lines)
//! modules = ["libdecode.so*"]    # a frame's module (as `obj:` lines)
//! peak = "8 MiB"
//! allocations = 5000
//! ```
//!
//! A component takes every allocation whose thread and stack match it: within one key any
//! pattern may match, and every key given must match. Components may overlap: a block
//! counts in each component that matches it. A block belongs to the components of its
//! allocation (the thread that allocated it and the allocation's stack) until it is
//! freed, by whichever thread. Patterns use `*` and `?`; `functions` and `modules` are
//! matched against each frame exactly as suppressions' `fun:` and `obj:` lines are
//! ([`FramePattern`]), the allocating function (`malloc`, `_Znwm`...) being the first
//! frame. The thread name is the one the thread had when it first allocated (the recorder
//! writes it then).
//!
//! Limits are [`METRICS`] keys. The leak limits need the exit scan; a limit whose figure
//! is unknown counts as exceeded, so a gate never passes by not measuring.
//!
//! A no-allocation thread (a name pattern of `no_alloc`) must make no allocation, realloc
//! or free at all while it is recorded: each one is a [`Violation`], grouped by stack with
//! a count. A free whose stack was not recorded (`run` without `--free-stacks`) is grouped
//! by the freed block's allocation stack.
//!
//! The program itself can take part (`program.rs`): a **region** it enters
//! (`memlens_region_enter`) selects the allocations its thread makes inside it
//! (`regions = ["parse*"]`, any open region of the thread may match); a thread that marks
//! itself real-time (`memlens_thread_realtime`) is a no-allocation thread while it is
//! marked, and only then (even if its name matches a `no_alloc` pattern, the marks
//! decide); its **assertions** are judged where they were made, and listed in
//! [`Measurement::assertions`].

mod program;
pub use program::{AssertSite, Assertion, ASSERT_SITES};

use crate::leaks::{supp_kind, suppression_frames, Amount, SuppFrame};
use crate::replay::{Block, HeapObserver, Release, Replay, SiteKey};
use crate::site::{run_end_ns, Progress};
use crate::suppressions::{FramePattern, ParseError, Suppressions};
use crate::{Error, Symbolizer};
use memlens_common::glob::glob_match;
use memlens_trace::reader::{Event, Metadata, ScanRecord, TraceReader};
use memlens_trace::{AllocFunc, BlockState};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use toml::Spanned;

/// What a figure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Count,
    /// Bytes per second of the run.
    BytesPerSec,
}

/// One figure of a component: its key in budget files, baselines and JSON, how it is
/// compared with a baseline, and how it is read from [`Figures`].
pub struct Metric {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    /// The same program with the same input gives the same figure: compared with a
    /// baseline exactly. Otherwise (a rate over time) within the tolerance.
    pub exact: bool,
    get: fn(&Figures) -> Option<u64>,
}

impl Metric {
    /// The figure of this metric, `None` when the trace cannot tell it (no exit scan).
    pub fn value(&self, f: &Figures) -> Option<u64> {
        (self.get)(f)
    }

    /// The metric with this key.
    pub fn by_key(key: &str) -> Option<&'static Metric> {
        METRICS.iter().find(|m| m.key == key)
    }
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key)
    }
}

fn leak(f: &Figures, kinds: &[usize]) -> Option<u64> {
    f.leaks
        .as_ref()
        .map(|l| kinds.iter().map(|&k| l.kinds[k].bytes).sum())
}

/// Every figure a budget can limit, in the order reports show them.
pub const METRICS: &[Metric] = &[
    Metric {
        key: "peak",
        title: "peak live bytes",
        unit: Unit::Bytes,
        exact: true,
        get: |f| Some(f.peak_bytes),
    },
    Metric {
        key: "live_at_exit",
        title: "live at exit",
        unit: Unit::Bytes,
        exact: true,
        get: |f| Some(f.exit.bytes),
    },
    Metric {
        key: "leaked",
        title: "leaked (definitely + indirectly lost)",
        unit: Unit::Bytes,
        exact: true,
        get: |f| leak(f, &[0, 1]),
    },
    Metric {
        key: "definitely_lost",
        title: "definitely lost",
        unit: Unit::Bytes,
        exact: true,
        get: |f| leak(f, &[0]),
    },
    Metric {
        key: "indirectly_lost",
        title: "indirectly lost",
        unit: Unit::Bytes,
        exact: true,
        get: |f| leak(f, &[1]),
    },
    Metric {
        key: "possibly_lost",
        title: "possibly lost",
        unit: Unit::Bytes,
        exact: true,
        get: |f| leak(f, &[2]),
    },
    Metric {
        key: "still_reachable",
        title: "still reachable",
        unit: Unit::Bytes,
        exact: true,
        get: |f| leak(f, &[3]),
    },
    Metric {
        key: "allocations",
        title: "allocations",
        unit: Unit::Count,
        exact: true,
        get: |f| Some(f.allocations),
    },
    Metric {
        key: "allocated",
        title: "bytes allocated",
        unit: Unit::Bytes,
        exact: true,
        get: |f| Some(f.bytes_allocated),
    },
    Metric {
        key: "alloc_rate",
        title: "allocation rate",
        unit: Unit::BytesPerSec,
        exact: false,
        get: |f| Some(f.alloc_rate),
    },
];

/// The name of the whole process among the components (reserved).
pub const PROCESS: &str = "process";

/// The `pattern` of a violation on a thread that is a no-allocation thread by its own
/// real-time mark (`memlens_thread_realtime`), not by a `no_alloc` pattern.
pub const REALTIME_MARK: &str = "memlens_thread_realtime";

/// Most components a file may name (with the process, 64: one bit each).
pub const MAX_COMPONENTS: usize = 63;

/// What selects a component's allocations. Empty lists select everything.
#[derive(Clone, Debug, Default)]
pub struct Matchers {
    /// Thread name patterns (`*`, `?`).
    pub threads: Vec<String>,
    /// Module patterns, matched as `obj:` lines against any frame.
    pub modules: Vec<String>,
    /// Function patterns, matched as `fun:` lines against any frame.
    pub functions: Vec<String>,
    /// Region name patterns: the allocating thread was inside a matching region.
    pub regions: Vec<String>,
}

impl Matchers {
    fn by_stack(&self) -> bool {
        !self.modules.is_empty() || !self.functions.is_empty()
    }
}

/// A limit of a budget file, and where it was written.
#[derive(Clone, Debug)]
pub struct Limit {
    pub metric: &'static Metric,
    pub max: u64,
    /// 1-based line of the limit in the budget file (0: given on the command line).
    pub line: usize,
}

/// One component of a budget file (or the whole process).
#[derive(Clone, Debug)]
pub struct Component {
    pub name: String,
    /// 1-based line of its table (0: not written in the file).
    pub line: usize,
    pub matchers: Matchers,
    pub limits: Vec<Limit>,
}

/// A no-allocation thread pattern.
#[derive(Clone, Debug)]
pub struct NoAlloc {
    pub pattern: String,
    /// 1-based line in the budget file (0: `--no-alloc` on the command line).
    pub line: usize,
}

/// A budget file, read.
#[derive(Clone, Debug)]
pub struct Budgets {
    /// The file's name as given (for messages and annotations).
    pub origin: String,
    /// The process first, then the file's components in the file's order.
    pub components: Vec<Component>,
    pub no_alloc: Vec<NoAlloc>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::empty("")
    }
}

impl Budgets {
    /// No components, no limits: the process only.
    pub fn empty(origin: &str) -> Budgets {
        Budgets {
            origin: origin.to_string(),
            components: vec![Component {
                name: PROCESS.to_string(),
                line: 0,
                matchers: Matchers::default(),
                limits: Vec::new(),
            }],
            no_alloc: Vec::new(),
        }
    }

    /// Read a budget file. `Err` names the file and line.
    pub fn load(path: &std::path::Path) -> Result<Budgets, ParseError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ParseError {
            origin: origin.clone(),
            line: 0,
            message: format!("cannot read the budget file: {e}"),
        })?;
        Budgets::parse(&text, &origin)
    }

    /// Parse a budget file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Budgets, ParseError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| ParseError {
            origin: origin.to_string(),
            line: span.map_or(0, |s| line_of(text, s.start)),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().trim_end_matches('.').to_string();
            err(e.span(), msg)
        })?;
        let mut b = Budgets::empty(origin);
        if let Some(p) = &raw.no_alloc {
            for pat in &p.get_ref().0 {
                b.no_alloc.push(NoAlloc {
                    pattern: pat.clone(),
                    line: line_of(text, p.span().start),
                });
            }
        }
        if let Some(p) = &raw.process {
            let s = p.get_ref();
            if let Some((key, span)) = s.matcher_spans().into_iter().next() {
                return Err(err(
                    Some(span),
                    format!(
                        "[process] is the whole process: `{key}` selects allocations, which only a [component.NAME] table can do"
                    ),
                ));
            }
            if let Some(n) = &s.no_alloc {
                return Err(err(
                    Some(n.span()),
                    "`no_alloc` goes at the top of the file, before any [table], not in [process]"
                        .into(),
                ));
            }
            b.components[0].line = line_of(text, p.span().start);
            b.components[0].limits = s.limits(text, &err)?;
        }
        let mut comps: Vec<(&String, &Spanned<RawSection>)> = raw.component.iter().collect();
        comps.sort_by_key(|(_, s)| s.span().start);
        if comps.len() > MAX_COMPONENTS {
            return Err(err(
                Some(comps[MAX_COMPONENTS].1.span()),
                format!(
                    "{} components: a budget file can name at most {MAX_COMPONENTS}",
                    comps.len()
                ),
            ));
        }
        for (name, s) in comps {
            let r = s.get_ref();
            let line = line_of(text, s.span().start);
            if name == PROCESS {
                return Err(err(
                    Some(s.span()),
                    "a component cannot be called `process`: that name is the whole process ([process])".into(),
                ));
            }
            if let Some(p) = &r.no_alloc {
                return Err(err(
                    Some(p.span()),
                    format!("`no_alloc` goes at the top of the file, before any [table], not in [component.{name}]"),
                ));
            }
            let list = |p: &Option<Spanned<Patterns>>| {
                p.as_ref()
                    .map(|p| p.get_ref().0.clone())
                    .unwrap_or_default()
            };
            let matchers = Matchers {
                threads: list(&r.threads),
                modules: list(&r.modules),
                functions: list(&r.functions),
                regions: list(&r.regions),
            };
            if matchers.threads.is_empty()
                && matchers.modules.is_empty()
                && matchers.functions.is_empty()
                && matchers.regions.is_empty()
            {
                return Err(err(
                    Some(s.span()),
                    format!(
                        "[component.{name}] selects nothing: give it `threads`, `modules`, `functions` or `regions` patterns (use [process] for the whole process)"
                    ),
                ));
            }
            b.components.push(Component {
                name: name.clone(),
                line,
                matchers,
                limits: r.limits(text, &err)?,
            });
        }
        Ok(b)
    }

    /// Add a no-allocation thread pattern (`--no-alloc`).
    pub fn add_no_alloc(&mut self, pattern: &str) {
        self.no_alloc.push(NoAlloc {
            pattern: pattern.to_string(),
            line: 0,
        });
    }

    /// Whether any component or pattern needs more than the process's figures.
    pub fn is_process_only(&self) -> bool {
        self.components.len() == 1 && self.no_alloc.is_empty()
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    no_alloc: Option<Spanned<Patterns>>,
    process: Option<Spanned<RawSection>>,
    #[serde(default)]
    component: BTreeMap<String, Spanned<RawSection>>,
}

/// A table of limits (and, for a component, its matchers). The limit fields are the keys
/// of [`METRICS`]: `limits` lists them in the same order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    threads: Option<Spanned<Patterns>>,
    modules: Option<Spanned<Patterns>>,
    functions: Option<Spanned<Patterns>>,
    regions: Option<Spanned<Patterns>>,
    /// Only to say where `no_alloc` belongs.
    no_alloc: Option<Spanned<Patterns>>,
    peak: Option<Spanned<RawValue>>,
    live_at_exit: Option<Spanned<RawValue>>,
    leaked: Option<Spanned<RawValue>>,
    definitely_lost: Option<Spanned<RawValue>>,
    indirectly_lost: Option<Spanned<RawValue>>,
    possibly_lost: Option<Spanned<RawValue>>,
    still_reachable: Option<Spanned<RawValue>>,
    allocations: Option<Spanned<RawValue>>,
    allocated: Option<Spanned<RawValue>>,
    alloc_rate: Option<Spanned<RawValue>>,
}

impl RawSection {
    fn matcher_spans(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        [
            ("threads", &self.threads),
            ("modules", &self.modules),
            ("functions", &self.functions),
            ("regions", &self.regions),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.span())))
        .collect()
    }

    fn limits(
        &self,
        text: &str,
        err: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ParseError,
    ) -> Result<Vec<Limit>, ParseError> {
        let fields = [
            &self.peak,
            &self.live_at_exit,
            &self.leaked,
            &self.definitely_lost,
            &self.indirectly_lost,
            &self.possibly_lost,
            &self.still_reachable,
            &self.allocations,
            &self.allocated,
            &self.alloc_rate,
        ];
        debug_assert_eq!(fields.len(), METRICS.len());
        let mut out = Vec::new();
        for (metric, field) in METRICS.iter().zip(fields) {
            let Some(v) = field else { continue };
            let max = v
                .get_ref()
                .value(metric.unit)
                .map_err(|m| err(Some(v.span()), format!("`{}`: {m}", metric.key)))?;
            out.push(Limit {
                metric,
                max,
                line: line_of(text, v.span().start),
            });
        }
        Ok(out)
    }
}

/// A pattern or a list of them.
struct Patterns(Vec<String>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Patterns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a pattern (\"audio*\") or a list of patterns ([\"audio*\", \"mixer\"])",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Patterns, E> {
                if v.is_empty() {
                    return Err(E::custom("an empty pattern matches nothing"));
                }
                Ok(Patterns(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Patterns, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    if s.is_empty() {
                        return Err(de::Error::custom("an empty pattern matches nothing"));
                    }
                    out.push(s);
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A limit as written: a number, or a string with a unit.
enum RawValue {
    Int(i64),
    Float(f64),
    Str(String),
}

impl RawValue {
    fn value(&self, unit: Unit) -> Result<u64, String> {
        use memlens_common::units::{parse_rate, parse_size};
        match (self, unit) {
            (RawValue::Int(n), _) if *n < 0 => Err(format!("{n} is negative")),
            (RawValue::Int(n), _) => Ok(*n as u64),
            (RawValue::Float(_), Unit::Count) => {
                Err("a number of allocations is a whole number".into())
            }
            (RawValue::Float(x), _) if !(0.0..1.8e19).contains(x) => {
                Err(format!("{x} is out of range"))
            }
            (RawValue::Float(x), _) => Ok(x.round() as u64),
            (RawValue::Str(s), Unit::Bytes) => parse_size(s),
            (RawValue::Str(s), Unit::BytesPerSec) => parse_rate(s).map(|r| r.round() as u64),
            (RawValue::Str(s), Unit::Count) => s
                .replace('_', "")
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("'{s}' is not a number of allocations")),
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string with a unit (\"64 MiB\", \"10 MiB/s\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

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
struct Acc {
    f: Figures,
    live: u64,
    live_blocks: u64,
}

/// The pass's observer: which components each block belongs to (interned bit masks, the
/// index kept as the block's tag), and each component's running figures.
struct Observer<'a> {
    budgets: &'a Budgets,
    md: &'a Metadata,
    sym: Option<Symbolizer>,
    /// Thread index -> mask of the components its name allows.
    thread_masks: HashMap<u32, u64>,
    /// Components with no thread patterns.
    any_thread: u64,
    /// (stack, func) -> mask of the components its frames allow.
    stack_masks: HashMap<SiteKey, u64>,
    masks: Vec<u64>,
    mask_index: HashMap<u64, u32>,
    acc: Vec<Acc>,
    regions: program::Regions,
}

impl Observer<'_> {
    fn stack_mask(&mut self, site: SiteKey) -> u64 {
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

    fn mask_of(&mut self, block: &Block) -> u64 {
        let t = self
            .thread_masks
            .get(&block.thread)
            .copied()
            .unwrap_or(self.any_thread);
        t & self.regions.mask(block.thread) & self.stack_mask(block.site)
    }

    fn intern(&mut self, mask: u64) -> u32 {
        if let Some(&i) = self.mask_index.get(&mask) {
            return i;
        }
        let i = self.masks.len() as u32;
        self.masks.push(mask);
        self.mask_index.insert(mask, i);
        i
    }
}

fn bits(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| mask & (1 << i) != 0)
}

impl HeapObserver for Observer<'_> {
    fn added(&mut self, _addr: u64, block: &Block) -> u32 {
        let mask = self.mask_of(block);
        for i in bits(mask) {
            let a = &mut self.acc[i];
            a.f.allocations += 1;
            a.f.bytes_allocated = a.f.bytes_allocated.saturating_add(block.size);
            a.live = a.live.saturating_add(block.size);
            a.live_blocks += 1;
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
            a.live_blocks = a.live_blocks.saturating_sub(1);
            if why != Release::Reused {
                a.f.frees += 1;
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
    let by_stack = budgets.components.iter().any(|c| c.matchers.by_stack());
    let mut obs = Observer {
        budgets,
        md: &md,
        sym: by_stack.then(|| Symbolizer::new(&md.modules)),
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
    let mut replay = Replay::new();
    let mut peaks = program::Peaks::prepare(reader, &md)?;
    type VKey = (ViolationKind, AllocFunc, u32, Option<SiteKey>);
    let mut violations: HashMap<VKey, Violation> = HashMap::new();
    let chunks_total = reader.event_chunk_count() as u64;
    let mut events = reader.events();
    let mut reported = 0;
    while let Some(ev) = events.next() {
        let ev = ev?;
        if events.chunks_done() != reported {
            reported = events.chunks_done();
            progress(Progress {
                pass: 1,
                chunks_done: reported as u64,
                chunks_total,
            });
        }
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
        peaks.before(&ev, &replay);
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
        let mut suppressed: HashMap<(SiteKey, BlockState), bool> = HashMap::new();
        let mut sym = suppressions.map(|_| Symbolizer::new(&md.modules));
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
                        let frames = suppression_frames(&md, sym, site.func, site.stack);
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

/// Note `ev` if it happens on a no-allocation thread (before it is applied to `replay`).
fn note_violation(
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

/// One limit of a budget file against its figure.
#[derive(Clone, Debug)]
pub struct LimitCheck {
    /// Index into [`Budgets::components`] and [`Measurement::components`].
    pub component: usize,
    pub limit: Limit,
    /// `None`: the trace cannot tell (a leak limit without an exit scan).
    pub value: Option<u64>,
}

impl LimitCheck {
    /// Over the limit, or unknown.
    pub fn exceeded(&self) -> bool {
        self.value.is_none_or(|v| v > self.limit.max)
    }
}

/// Every limit of every component, with its figure, in the file's order.
pub fn check(b: &Budgets, m: &Measurement) -> Vec<LimitCheck> {
    let mut out = Vec::new();
    for (i, c) in b.components.iter().enumerate() {
        let Some((_, f)) = m.components.get(i) else {
            continue;
        };
        for l in &c.limits {
            out.push(LimitCheck {
                component: i,
                limit: l.clone(),
                value: l.metric.value(f),
            });
        }
    }
    out
}

/// Figures of an earlier run: component -> metric key -> value.
pub type Baseline = BTreeMap<String, BTreeMap<String, u64>>;

/// One figure against the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineCheck {
    pub component: String,
    pub metric: &'static str,
    pub before: u64,
    pub after: u64,
    /// The highest figure that passes: `before` for exact metrics, `before` plus the
    /// tolerance for the others.
    pub allowed: u64,
}

impl BaselineCheck {
    pub fn regressed(&self) -> bool {
        self.after > self.allowed
    }
}

/// Every figure known both in the baseline and now, for the components of the
/// measurement (a component or figure the baseline does not have is not compared).
/// `tolerance` is a fraction (0.1 = 10%) applied to the metrics that are not exact.
pub fn compare(base: &Baseline, m: &Measurement, tolerance: f64) -> Vec<BaselineCheck> {
    let mut out = Vec::new();
    for (name, f) in &m.components {
        let Some(before) = base.get(name) else {
            continue;
        };
        for metric in METRICS {
            let (Some(&b), Some(a)) = (before.get(metric.key), metric.value(f)) else {
                continue;
            };
            let allowed = if metric.exact {
                b
            } else {
                (b as f64 * (1.0 + tolerance.max(0.0))).floor() as u64
            };
            out.push(BaselineCheck {
                component: name.clone(),
                metric: metric.key,
                before: b,
                after: a,
                allowed,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Budgets, String> {
        Budgets::parse(s, "memlens.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_with_every_kind_of_key() {
        let b = parse(
            "no_alloc = [\"audio*\", \"rt-?\"]\n\
             [process]\npeak = \"64 MiB\"\nleaked = 0\n\n\
             [component.zeta]\nthreads = \"worker-*\"\nallocations = 1_000\n\
             [component.alpha]\nfunctions = [\"parse_*\"]\nmodules = \"libfoo.so*\"\n\
             alloc_rate = \"10 MiB/s\"\nlive_at_exit = 4096\n",
        )
        .unwrap();
        assert_eq!(
            b.no_alloc
                .iter()
                .map(|n| n.pattern.as_str())
                .collect::<Vec<_>>(),
            ["audio*", "rt-?"]
        );
        let names: Vec<&str> = b.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["process", "zeta", "alpha"],
            "file order, not sorted"
        );
        let lim = |c: usize| {
            b.components[c]
                .limits
                .iter()
                .map(|l| (l.metric.key, l.max, l.line))
                .collect::<Vec<_>>()
        };
        assert_eq!(lim(0), [("peak", 64 << 20, 3), ("leaked", 0, 4)]);
        assert_eq!(lim(1), [("allocations", 1000, 8)]);
        assert_eq!(
            lim(2),
            [("live_at_exit", 4096, 13), ("alloc_rate", 10 << 20, 12)]
        );
        assert_eq!(b.components[2].line, 9);
        assert_eq!(b.components[2].matchers.functions, ["parse_*"]);
        assert_eq!(b.components[2].matchers.modules, ["libfoo.so*"]);
    }

    #[test]
    fn mistakes_name_the_file_and_line() {
        let e = |s| parse(s).unwrap_err();
        assert_eq!(
            e("[process]\npeak = \"12 XB\"\n"),
            "memlens.toml:2: `peak`: '12 XB' is not a size (examples: 4096, 500MiB, 2GiB, 1.5G, 300kB)"
        );
        let unknown = e("[component.a]\nthreads = \"x\"\npeek = 3\n");
        assert!(
            unknown.starts_with("memlens.toml:3: unknown field `peek`, expected one of"),
            "{unknown}"
        );
        assert_eq!(
            e("[component.a]\npeak = 3\n"),
            "memlens.toml:1: [component.a] selects nothing: give it `threads`, `modules`, `functions` or `regions` patterns (use [process] for the whole process)"
        );
        assert_eq!(
            e("[process]\nthreads = \"a\"\n"),
            "memlens.toml:2: [process] is the whole process: `threads` selects allocations, which only a [component.NAME] table can do"
        );
        assert_eq!(
            e("[process]\nno_alloc = [\"a\"]\n"),
            "memlens.toml:2: `no_alloc` goes at the top of the file, before any [table], not in [process]"
        );
        assert_eq!(
            e("[component.process]\nthreads = \"a\"\n"),
            "memlens.toml:1: a component cannot be called `process`: that name is the whole process ([process])"
        );
        assert_eq!(
            e("[process]\nallocations = 1.5\n"),
            "memlens.toml:2: `allocations`: a number of allocations is a whole number"
        );
        assert_eq!(
            e("[process]\nleaked = -1\n"),
            "memlens.toml:2: `leaked`: -1 is negative"
        );
        let syntax = e("[process\npeak = 1\n");
        assert!(syntax.starts_with("memlens.toml:1: "), "{syntax}");
        assert!(!syntax.contains('\n'), "one line: {syntax}");
        assert_eq!(
            e("no_alloc = \"\"\n"),
            "memlens.toml:1: an empty pattern matches nothing"
        );
    }

    #[test]
    fn baseline_comparison_is_exact_for_exact_metrics() {
        let figures = |allocations, rate| Figures {
            allocations,
            alloc_rate: rate,
            ..Figures::default()
        };
        let m = |f| Measurement {
            components: vec![(PROCESS.to_string(), f)],
            run_ns: 1,
            has_scan: false,
            violations: vec![],
            no_alloc_threads: vec![],
            assertions: vec![],
            metadata: Metadata::default(),
        };
        let base = m(figures(10, 1000)).baseline();
        assert!(
            !base[PROCESS].contains_key("leaked"),
            "unknown figures are left out"
        );
        let regressed = |f| -> Vec<&'static str> {
            compare(&base, &m(f), 0.10)
                .into_iter()
                .filter(|c| c.regressed())
                .map(|c| c.metric)
                .collect()
        };
        assert!(regressed(figures(10, 1100)).is_empty());
        assert_eq!(regressed(figures(11, 1000)), ["allocations"]);
        assert_eq!(regressed(figures(9, 1101)), ["alloc_rate"]);
    }
}
