//! Budgets of `memlens check --budgets memlens.toml` and `memlens report --budgets`: the
//! options, [`Gate`] (what `check` was asked to hold the run to, read before the run) and
//! [`BudgetView`] (a trace measured against it: every component's figures beside its
//! limits, the no-allocation violations, the baseline comparison). The computation is
//! `memlens_analysis::budgets`; each output format is its own file: `budgets/text.rs`,
//! `budgets/json.rs` (`docs/BUDGETS_JSON.md`), `budgets/sarif.rs` (SARIF and GitHub
//! annotation lines); `budgets/history.rs` appends runs to a history directory.

mod history;
mod json;

pub use history::HISTORY_FILE;
mod sarif;
mod text;

use crate::present::progress::Bar;
use memlens_analysis::budgets::{
    check, compare, measure, Baseline, BaselineCheck, Budgets, LimitCheck, Measurement,
};
use memlens_analysis::suppressions::Suppressions;
use memlens_analysis::Symbolizer;
use memlens_trace::reader::TraceReader;
use std::path::{Path, PathBuf};

/// The budget options of `check` and `report`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BudgetArgs {
    /// Budget file (TOML, e.g. memlens.toml): components of the program by thread name,
    /// module or function, each with its limits, process-wide limits, and no-allocation
    /// threads. Each component's figures are shown beside its limits; `check` fails on an
    /// exceeded one.
    #[arg(long, value_name = "FILE")]
    pub budgets: Option<PathBuf>,
    /// Threads that must never allocate or free (real-time threads): thread name patterns
    /// with `*` and `?`, comma-separated, repeatable; added to the budget file's `no_alloc`.
    /// Every allocation, realloc or free on such a thread is a violation, shown once per
    /// stack with its count. `check` records free stacks for them.
    #[arg(long, value_name = "PATTERNS")]
    pub no_alloc: Vec<String>,
    /// Compare each component's figures with this baseline (written by --write-baseline
    /// on an earlier run): a figure above it is a regression (`check` fails).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write each component's figures to FILE as a baseline for later runs.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// How much a time-dependent figure (the allocation rate) may exceed the baseline:
    /// a percentage (`10%`, the default) or a fraction (`0.1`). Deterministic figures
    /// (allocations, bytes, peak, live at exit, leaks) must not exceed it at all.
    #[arg(long, value_name = "PCT", default_value = "10%", value_parser = parse_percent)]
    pub max_regression: f64,
    /// Also write the budget results as JSON to FILE (`-`: stdout), docs/BUDGETS_JSON.md.
    #[arg(long, value_name = "FILE")]
    pub budgets_json: Option<PathBuf>,
    /// Also write the budget results as SARIF 2.1.0 to FILE (`-`: stdout), for code
    /// scanning: exceeded limits at their line of the budget file, no-allocation
    /// violations at their source line.
    #[arg(long, value_name = "FILE")]
    pub budgets_sarif: Option<PathBuf>,
    /// Print a GitHub Actions annotation line (`::error file=...,line=...::...`) on stdout
    /// for each exceeded limit, violation and regression.
    #[arg(long)]
    pub github_annotations: bool,
    /// Append this run's figures (and the git commit, in a git checkout) to
    /// DIR/history.jsonl, one JSON line per run.
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
}

/// `10%`, `0.1`, `5 %`: a fraction.
fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a tolerance (examples: 10%, 2.5%, 0.1)"
        )),
    }
}

impl BudgetArgs {
    /// Whether any budget option was given (an output option alone measures the
    /// process and the program's assertions).
    pub fn active(&self) -> bool {
        self.budgets.is_some()
            || !self.no_alloc.is_empty()
            || self.baseline.is_some()
            || self.write_baseline.is_some()
            || self.history.is_some()
            || self.budgets_json.is_some()
            || self.budgets_sarif.is_some()
            || self.github_annotations
    }

    /// Read the budget file and the baseline (before a run: a typo should not cost one).
    /// `None` when no budget option was given. `Err` is one sentence naming the file.
    pub fn load(&self) -> Result<Option<Gate>, String> {
        if !self.active() {
            return Ok(None);
        }
        let mut budgets = match &self.budgets {
            Some(p) => Budgets::load(p).map_err(|e| e.to_string())?,
            None => Budgets::empty(""),
        };
        for list in &self.no_alloc {
            for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                budgets.add_no_alloc(p);
            }
        }
        let baseline = match &self.baseline {
            Some(p) => Some(json::read_baseline(p)?),
            None => None,
        };
        Ok(Some(Gate {
            args: self.clone(),
            budgets,
            baseline,
        }))
    }
}

/// What a run is held to: the budget file, the no-allocation threads, the baseline.
#[derive(Clone, Debug)]
pub struct Gate {
    pub args: BudgetArgs,
    pub budgets: Budgets,
    baseline: Option<Baseline>,
}

impl Gate {
    /// What `check` holds a run to without any budget option: the assertions and
    /// real-time marks the program wrote through the recorder's API.
    pub fn implicit() -> Gate {
        Gate {
            args: BudgetArgs::default(),
            budgets: Budgets::empty(""),
            baseline: None,
        }
    }

    /// Whether a trace has anything for [`Gate::implicit`] to check (assertions or
    /// real-time threads). False if it cannot be read (the summary says why).
    pub fn trace_uses_api(trace: &Path) -> bool {
        TraceReader::open(trace)
            .and_then(|r| r.metadata())
            .is_ok_and(|md| !md.assert_labels.is_empty() || !md.realtime_threads.is_empty())
    }

    /// Whether the run must record free stacks (a free on a no-allocation thread is
    /// reported at its own stack).
    pub fn wants_free_stacks(&self) -> bool {
        !self.budgets.no_alloc.is_empty()
    }

    /// Measure a trace against the budgets.
    pub fn view(&self, trace: &Path, suppressions: &Suppressions) -> Result<BudgetView, String> {
        let reader = TraceReader::open(trace).map_err(|e| e.to_string())?;
        let mut bar = Bar::new(&reader, &["measuring budgets"]);
        let m = measure(&reader, &self.budgets, Some(suppressions), &mut |p| {
            if let Some(b) = bar.as_mut() {
                b.update(p)
            }
        })
        .map_err(|e| e.to_string())?;
        drop(bar);
        let limits = check(&self.budgets, &m);
        let baseline = self
            .baseline
            .as_ref()
            .map(|b| compare(b, &m, self.args.max_regression));
        let sym = Symbolizer::for_trace(&m.metadata);
        Ok(BudgetView {
            trace: trace.to_path_buf(),
            exe: reader.header().exe.clone(),
            budgets: self.budgets.clone(),
            args: self.args.clone(),
            m,
            limits,
            baseline,
            sym,
        })
    }

    /// `memlens check`: measure the trace, print the table on stderr (only what failed
    /// when `quiet`), write the files asked for; true if the run fails its budgets (or
    /// cannot be measured).
    pub fn gate(&self, trace: &Path, suppressions: &Suppressions, quiet: bool) -> bool {
        let mut view = match self.view(trace, suppressions) {
            Ok(v) => v,
            Err(e) => {
                crate::say!(
                    "==memlens== check failed: cannot measure the budgets of {}: {e}",
                    trace.display()
                );
                return true;
            }
        };
        let text = view.text("==memlens== ", quiet);
        crate::write_stderr(&text);
        if let Err(e) = view.write_outputs() {
            crate::say!("==memlens== check failed: {e}");
            return true;
        }
        view.failed()
    }
}

/// A trace measured against a [`Gate`]: what every output format renders.
pub struct BudgetView {
    pub trace: PathBuf,
    pub exe: String,
    pub budgets: Budgets,
    pub args: BudgetArgs,
    pub m: Measurement,
    pub limits: Vec<LimitCheck>,
    /// `None` without `--baseline`.
    pub baseline: Option<Vec<BaselineCheck>>,
    pub sym: Symbolizer,
}

impl BudgetView {
    pub fn exceeded(&self) -> usize {
        self.limits.iter().filter(|l| l.exceeded()).count()
    }

    pub fn regressions(&self) -> usize {
        self.baseline
            .iter()
            .flatten()
            .filter(|c| c.regressed())
            .count()
    }

    /// Violations of no-allocation threads (calls, not stacks).
    pub fn violation_calls(&self) -> u64 {
        self.m.violations.iter().map(|v| v.count).sum()
    }

    /// The program's assertions that failed.
    pub fn failed_assertions(&self) -> usize {
        self.m.assertions.iter().filter(|a| !a.passed).count()
    }

    /// An exceeded limit, a no-allocation violation, a regression or a failed assertion.
    pub fn failed(&self) -> bool {
        self.exceeded() > 0
            || !self.m.violations.is_empty()
            || self.regressions() > 0
            || self.failed_assertions() > 0
    }

    /// The budget file's name as given ("" when there is none).
    pub fn origin(&self) -> &str {
        &self.budgets.origin
    }

    /// The files and lines asked for besides the text: JSON, SARIF, GitHub annotations,
    /// the baseline, the history. `Err` is one sentence.
    pub fn write_outputs(&mut self) -> Result<(), String> {
        use crate::present::output::Dest;
        if let Some(p) = self.args.budgets_json.clone() {
            let mut s = serde_json::to_string_pretty(&self.json()).unwrap_or_default();
            s.push('\n');
            Dest::new(Some(&p)).write(s.as_bytes())?;
        }
        if let Some(p) = self.args.budgets_sarif.clone() {
            let root = crate::present::sarif::default_source_root();
            let mut s = serde_json::to_string_pretty(&self.sarif(&root)).unwrap_or_default();
            s.push('\n');
            Dest::new(Some(&p)).write(s.as_bytes())?;
        }
        if self.args.github_annotations {
            let root = crate::present::sarif::default_source_root();
            crate::write_stdout(self.annotations(&root).as_bytes())?;
        }
        if let Some(p) = &self.args.write_baseline {
            json::write_baseline(p, self)?;
        }
        if let Some(dir) = &self.args.history {
            history::append(dir, self)?;
        }
        Ok(())
    }
}

/// `memlens report --budgets ...`: the budgets view of a trace on stdout (text or JSON),
/// and the other outputs asked for. The status is 0 whatever the figures: `check` is the
/// gate.
pub fn report_main(
    args: &BudgetArgs,
    trace: &Path,
    format: crate::report::Format,
) -> std::process::ExitCode {
    let gate = match args.load() {
        Ok(Some(g)) => g,
        Ok(None) => return crate::fail("no budget option given"),
        Err(e) => return crate::fail(e),
    };
    let sup = Suppressions::default_set();
    let mut view = match gate.view(trace, &sup) {
        Ok(v) => v,
        Err(e) => return crate::fail(e),
    };
    let out = match format {
        crate::report::Format::Text => view.text("", false),
        crate::report::Format::Json => {
            let mut s = serde_json::to_string_pretty(&view.json()).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    if let Err(e) = view.write_outputs() {
        return crate::fail(e);
    }
    crate::print_stdout(&out)
}

/// A figure as people read it: bytes, a count, or bytes per second.
pub fn figure(unit: memlens_analysis::budgets::Unit, v: u64) -> String {
    use memlens_analysis::budgets::Unit;
    use memlens_common::units::{count, human_bytes};
    match unit {
        Unit::Bytes => human_bytes(v),
        Unit::Count => count(v),
        Unit::BytesPerSec => format!("{}/s", human_bytes(v)),
    }
}

/// `origin:line`, or the command line when the limit or pattern was given there.
pub fn place(origin: &str, line: usize) -> String {
    if line == 0 || origin.is_empty() {
        "the command line".to_string()
    } else {
        format!("{origin}:{line}")
    }
}
