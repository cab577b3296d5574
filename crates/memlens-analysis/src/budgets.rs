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

mod file;
mod limits;
mod measure;
mod program;

use file::*;
pub use limits::*;
pub use measure::*;
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
            e("[process]\npeak = 1.5\n"),
            "memlens.toml:2: `peak`: 1.5 bytes: a number of bytes is a whole number (with a unit, as a string: \"1.5MiB\")"
        );
        let whole = parse("[process]\npeak = 4096.0\n").unwrap();
        assert_eq!(whole.components[0].limits[0].max, 4096);
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
