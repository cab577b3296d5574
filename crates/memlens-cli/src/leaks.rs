//! `memlens leaks`: memcheck-style loss records and heap errors of a trace, as text, JSON
//! (`docs/LEAKS_JSON.md`) or SARIF 2.1.0; and the leak part of `memlens run`'s summary
//! and `memlens check`'s verdict.
//!
//! Here: the options, and [`LeakView`], the leak report with what presenting it needs
//! (suppressions applied, error counts, symbolized stacks). Each output format is its own
//! file: `leaks/text.rs` (memcheck's layout, the LEAK SUMMARY), `leaks/json.rs`,
//! `leaks/sarif.rs`.

mod json;
mod sarif;
mod text;

pub use json::summary_json;
pub use text::summary_text;

use memlens_analysis::leaks::{self, LeakReport, Resolution, UsedSuppression};
use memlens_analysis::suppressions::Suppressions;
use memlens_analysis::Symbolizer;
use memlens_trace::reader::{Metadata, TraceReader};
use memlens_trace::{AllocFunc, BlockState};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options shared by `leaks`, `run` and `check`, named as memcheck names them.
#[derive(clap::Args, Clone, Debug)]
pub struct LeakOptions {
    /// Which loss records to print: any of definite,indirect,possible,reachable, or
    /// all, or none.
    #[arg(long, value_name = "KINDS", default_value = "definite,possible", value_parser = parse_kinds)]
    pub show_leak_kinds: KindSet,
    /// Which leak kinds count as errors (for --error-exitcode and `memlens check`).
    #[arg(long, value_name = "KINDS", default_value = "definite,possible", value_parser = parse_kinds)]
    pub errors_for_leak_kinds: KindSet,
    /// How many frames two stacks must share to merge their loss records: low (2),
    /// med (4), high (all), the allocation function counted among them, as in memcheck.
    #[arg(long, value_enum, default_value_t = LeakResolution::High)]
    pub leak_resolution: LeakResolution,
    /// Read suppressions from FILE: Valgrind's format (`{ name Memcheck:Leak fun:... }`)
    /// or LeakSanitizer's (`leak:PATTERN` lines). Repeat the option for several files.
    #[arg(long = "suppressions", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Also apply memlens's built-in suppressions of glibc / ld.so / libstdc++ internals
    /// (yes or no); `memlens leaks --show-default-suppressions` lists them.
    #[arg(long, value_name = "yes|no", default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub default_suppressions: bool,
    /// Print a ready-to-paste Valgrind suppression after each loss record and heap error
    /// shown (all), or not (no).
    #[arg(long, value_enum, value_name = "no|all", default_value_t = GenSuppressions::No)]
    pub gen_suppressions: GenSuppressions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenSuppressions {
    No,
    All,
}

pub fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("`{s}` is neither yes nor no")),
    }
}

impl LeakOptions {
    /// The suppressions to apply: the files given with --suppressions, in order, then the
    /// built-in set unless --default-suppressions=no. Errors name the file and line.
    pub fn load_suppressions(&self) -> Result<Suppressions, String> {
        let mut sup = Suppressions::new();
        for f in &self.suppressions {
            sup.load_file(f).map_err(|e| e.to_string())?;
        }
        if self.default_suppressions {
            sup.extend(Suppressions::default_set());
        }
        Ok(sup)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LeakResolution {
    Low,
    Med,
    High,
}

impl LeakOptions {
    /// The analysis's resolution.
    pub fn resolution(&self) -> Resolution {
        match self.leak_resolution {
            LeakResolution::Low => Resolution::Low,
            LeakResolution::Med => Resolution::Med,
            LeakResolution::High => Resolution::High,
        }
    }
}

/// A set of leak kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSet(pub [bool; 4]);

impl KindSet {
    pub fn contains(&self, k: BlockState) -> bool {
        self.0[k as usize]
    }
}

fn parse_kinds(s: &str) -> Result<KindSet, String> {
    let mut set = [false; 4];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => set = [true; 4],
            "none" => set = [false; 4],
            "definite" => set[0] = true,
            "indirect" => set[1] = true,
            "possible" => set[2] = true,
            "reachable" => set[3] = true,
            other => {
                return Err(format!(
                    "unknown leak kind `{other}` (use definite, indirect, possible, reachable, all or none)"
                ))
            }
        }
    }
    Ok(KindSet(set))
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
memlens leaks memlens.myprog.1234.trace            # definite and possible losses\n  \
memlens leaks --show-leak-kinds=all TRACE          # and what holds the reachable blocks\n  \
memlens leaks --gen-suppressions=all TRACE         # a suppression to paste after each\n  \
memlens leaks --suppressions my.supp TRACE         # the pasted ones (Valgrind's format)\n  \
memlens leaks --format sarif TRACE > leaks.sarif   # for GitHub code scanning\n  \
memlens leaks after.snap                           # a heap snapshot's (memlens snapshot)\n\n\
Exit status: 0 when the report was made (whatever it found), 125 for a trace or option it \
cannot use.")]
pub struct LeaksArgs {
    /// The trace file to read.
    #[arg(required_unless_present = "show_default_suppressions")]
    pub trace: Option<PathBuf>,
    /// Print memlens's built-in suppressions (Valgrind format, with the reason for each)
    /// and exit.
    #[arg(long)]
    pub show_default_suppressions: bool,
    /// Output format: text (memcheck's layout), json, or sarif (SARIF 2.1.0).
    #[arg(long, value_enum, default_value_t = LeakFormat::Text)]
    pub format: LeakFormat,
    /// SARIF: source files under DIR are named relative to it (`uriBaseId` `%SRCROOT%`),
    /// so code-scanning tools map them to the repository's files. Default: the top of
    /// the git work tree around the current directory, else the current directory.
    #[arg(long, value_name = "DIR")]
    pub source_root: Option<PathBuf>,
    #[command(flatten)]
    pub leak: LeakOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LeakFormat {
    Text,
    Json,
    Sarif,
}

/// A leak report with everything presentation needs.
pub struct LeakView {
    pub report: LeakReport,
    pub metadata: Metadata,
    pub sym: Symbolizer,
    pub opts: LeakOptions,
    /// Suppressions that matched, in first-use order.
    pub used_suppressions: Vec<UsedSuppression>,
    /// Why the trace ends early, if it does (set by [`LeakView::load`]).
    pub truncation: Option<memlens_trace::reader::Truncation>,
    /// For a trace `memlens attach` recorded: when and with how much heap it started
    /// (set by [`LeakView::load`]).
    pub attach_note: Option<String>,
    /// The process's id, which is its main thread's (set by [`LeakView::load`] from the
    /// header; 0: the lowest thread id the metadata lists is taken for it). A snapshot
    /// file lists no threads.
    pub main_tid: u32,
}

impl LeakView {
    pub fn load(path: &Path, opts: &LeakOptions, sup: &Suppressions) -> Result<LeakView, String> {
        let reader = TraceReader::open(path).map_err(|e| e.to_string())?;
        let report = leaks::analyse(&reader, opts.resolution()).map_err(|e| e.to_string())?;
        let metadata = reader.metadata().map_err(|e| e.to_string())?;
        let mut view = LeakView::new(report, metadata, opts, sup);
        view.truncation = reader.truncation().cloned();
        view.attach_note = crate::present::trace::attach_note(reader.header());
        view.main_tid = reader.header().pid;
        Ok(view)
    }

    /// A view of a leak report made elsewhere (by `memlens run`'s single pass).
    pub fn new(
        report: LeakReport,
        metadata: Metadata,
        opts: &LeakOptions,
        sup: &Suppressions,
    ) -> LeakView {
        let sym = Symbolizer::for_trace(&metadata);
        let mut view = LeakView {
            report,
            metadata,
            sym,
            opts: opts.clone(),
            used_suppressions: Vec::new(),
            truncation: None,
            attach_note: None,
            main_tid: 0,
        };
        view.suppress(sup);
        view
    }

    /// Mark the loss records and heap errors that a suppression matches, and recompute
    /// the summary.
    fn suppress(&mut self, sup: &Suppressions) {
        self.used_suppressions = self.report.suppress(sup, &self.metadata, &mut self.sym);
    }

    /// `--gen-suppressions=all`: the Valgrind suppression for a record or error.
    fn suppression_text(
        &mut self,
        kind: Option<BlockState>,
        func: AllocFunc,
        stack: u32,
    ) -> String {
        leaks::suppression_text(&self.metadata, &mut self.sym, kind, func, stack)
    }

    /// memcheck's error count: heap errors plus loss records of the kinds in
    /// --errors-for-leak-kinds, not suppressed.
    pub fn error_count(&self) -> u64 {
        let (heap, leaks) = self.error_counts();
        heap + leaks
    }

    /// (unsuppressed heap errors, unsuppressed loss records of the error kinds).
    fn error_counts(&self) -> (u64, u64) {
        let heap = self
            .report
            .errors
            .iter()
            .filter(|e| e.suppressed_by.is_none())
            .count() as u64;
        let leaks = self
            .report
            .records
            .iter()
            .filter(|r| {
                r.suppressed_by.is_none() && self.opts.errors_for_leak_kinds.contains(r.kind)
            })
            .count() as u64;
        (heap, leaks)
    }

    /// A stack, symbolized.
    fn frames(&mut self, stack: u32) -> Vec<memlens_analysis::Frame> {
        let raw = self
            .metadata
            .stacks
            .get(&stack)
            .cloned()
            .unwrap_or_default();
        self.sym.stack(&raw)
    }

    /// The data symbol (a global variable) containing `addr`, with its module and start
    /// (for `Symbolizer::declaration`), through the symbolizer: each module's symbols are
    /// read once, and only from the binary that was recorded.
    fn data_symbol(&mut self, addr: u64) -> Option<(String, u32, u64)> {
        let (&id, m) = self.metadata.modules.iter().find(|(_, m)| {
            m.segments.iter().any(|&(vaddr, memsz, _)| {
                let lo = m.load_bias.wrapping_add(vaddr);
                addr >= lo && addr < lo + memsz
            })
        })?;
        let vaddr = addr.wrapping_sub(m.load_bias);
        let (name, start) = self.sym.data_symbol(id, vaddr)?;
        Some((name, id, start))
    }
}

/// What `run` and `attach` print after their summary: each heap error in one line, the
/// LEAK SUMMARY and, when there are errors, the command that shows their records (`file`
/// is the trace or snapshot the view was made from); with `full`, the whole report as
/// `memlens leaks FILE` prints it.
pub fn after_summary(view: &mut LeakView, file: &Path, full: bool) -> String {
    const PREFIX: &str = "==memlens== ";
    if full {
        return view.text(PREFIX);
    }
    let mut s = String::new();
    for e in view
        .report
        .errors
        .iter()
        .filter(|e| e.suppressed_by.is_none())
    {
        s.push_str(&format!(
            "{PREFIX}heap error: {}{}\n",
            e.kind.title(),
            if e.count > 1 {
                format!(" ({} times)", e.count)
            } else {
                String::new()
            }
        ));
    }
    if view.report.scan.is_some() {
        s.push_str(&view.summary_text(PREFIX));
        if view.error_count() > 0 {
            s.push_str(&format!(
                "{PREFIX}{} error(s); `memlens leaks {}` shows the records and stacks\n",
                view.error_count(),
                file.display()
            ));
        }
    }
    s
}

pub fn main(args: LeaksArgs) -> ExitCode {
    if args.show_default_suppressions {
        return crate::print_stdout(Suppressions::default_set_text());
    }
    let Some(trace) = &args.trace else {
        return crate::fail("no trace file given");
    };
    let sup = match args.leak.load_suppressions() {
        Ok(s) => s,
        Err(e) => return crate::fail(e),
    };
    let mut view = match LeakView::load(trace, &args.leak, &sup) {
        Ok(v) => v,
        Err(e) => return crate::fail(e),
    };
    crate::warn_truncated(trace, view.truncation.as_ref());
    let out = match args.format {
        LeakFormat::Text => view.text(""),
        LeakFormat::Json => serde_json::to_string_pretty(&view.json()).unwrap_or_default() + "\n",
        LeakFormat::Sarif => {
            let root = args
                .source_root
                .clone()
                .unwrap_or_else(crate::present::sarif::default_source_root);
            serde_json::to_string_pretty(&view.sarif(&root)).unwrap_or_default() + "\n"
        }
    };
    // A module that changed or is gone since the recording (its frames are offsets), as
    // `report` warns.
    for w in view.sym.warnings() {
        crate::say!("memlens: warning: {w}");
    }
    crate::print_stdout(&out)
}
