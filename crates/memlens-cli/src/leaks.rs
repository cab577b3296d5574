//! `memlens leaks`: memcheck-style loss records and heap errors of a trace, as text, JSON
//! (`docs/LEAKS_JSON.md`) or SARIF 2.1.0; and the leak part of `memlens run`'s summary
//! and `memlens check`'s verdict.

use crate::report::{count, frame_json, frame_text};
use memlens_analysis::leaks::{
    self, alloc_symbol, kind_key, Amount, ChainStep, ErrorKind, HeapError, LeakReport, LossRecord,
    Resolution, Summary, UsedSuppression, KINDS,
};
use memlens_analysis::suppressions::Suppressions;
use memlens_analysis::Symbolizer;
use memlens_trace::reader::{Metadata, TraceReader};
use memlens_trace::{AllocFunc, BlockState, RootKind};
use serde_json::{json, Value};
use std::fmt::Write as _;
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
    /// med (4), high (all).
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
}

impl LeakView {
    pub fn load(path: &Path, opts: &LeakOptions, sup: &Suppressions) -> Result<LeakView, String> {
        let reader = TraceReader::open(path).map_err(|e| e.to_string())?;
        let report = leaks::analyse(&reader, opts.resolution()).map_err(|e| e.to_string())?;
        let metadata = reader.metadata().map_err(|e| e.to_string())?;
        let mut view = LeakView::new(report, metadata, opts, sup);
        view.truncation = reader.truncation().cloned();
        Ok(view)
    }

    /// A view of a leak report made elsewhere (by `memlens run`'s single pass).
    pub fn new(
        report: LeakReport,
        metadata: Metadata,
        opts: &LeakOptions,
        sup: &Suppressions,
    ) -> LeakView {
        let sym = Symbolizer::new(&metadata.modules);
        let mut view = LeakView {
            report,
            metadata,
            sym,
            opts: opts.clone(),
            used_suppressions: Vec::new(),
            truncation: None,
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

    fn frames(&mut self, stack: u32) -> Vec<memlens_analysis::Frame> {
        let raw = self
            .metadata
            .stacks
            .get(&stack)
            .cloned()
            .unwrap_or_default();
        self.sym.stack(&raw)
    }

    fn stack_lines(&mut self, o: &mut String, func: AllocFunc, stack: u32, prefix: &str) {
        let _ = writeln!(o, "{prefix}   at {}", func.name());
        let frames = self.frames(stack);
        for f in frames.iter().take(24) {
            let _ = writeln!(o, "{prefix}   by {}", frame_text(f));
        }
        if frames.len() > 24 {
            let _ = writeln!(o, "{prefix}   ... {} more frames", frames.len() - 24);
        }
    }

    /// Name a root word: a global's symbol, a thread's stack...
    fn root_text(&self, kind: RootKind, name: &str, tid: u32, addr: u64) -> String {
        let pid = self
            .metadata
            .threads
            .values()
            .map(|t| t.tid)
            .min()
            .unwrap_or(0);
        let short = name.rsplit('/').next().unwrap_or(name);
        match kind {
            RootKind::ModuleData => match data_symbol(&self.metadata, addr) {
                Some(sym) => format!("global `{sym}` ({short})"),
                None => format!("data of {short}"),
            },
            RootKind::Anonymous => match data_symbol(&self.metadata, addr) {
                Some(sym) => format!("global `{sym}`"),
                None => format!("anonymous memory at {addr:#x}"),
            },
            RootKind::ThreadStack if tid == pid || pid == 0 => "the main thread's stack".into(),
            RootKind::ThreadStack => format!("the stack of thread {tid}"),
            RootKind::Registers => format!("the registers of thread {tid}"),
            RootKind::OtherMapping => format!("the mapping {short}"),
        }
    }

    fn chain_text(&mut self, r: &LossRecord) -> Option<String> {
        if r.chain.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        for step in &r.chain {
            match step {
                ChainStep::Root {
                    kind,
                    name,
                    tid,
                    addr,
                } => parts.push(self.root_text(*kind, name, *tid, *addr)),
                ChainStep::Block { stack, func, .. } => {
                    let at = self
                        .frames(*stack)
                        .first()
                        .map(frame_text)
                        .unwrap_or_else(|| "?".into());
                    parts.push(format!("block from {} at {at}", func.name()));
                }
            }
        }
        parts.push(format!(
            "{} block{}",
            r.blocks,
            if r.blocks == 1 { "" } else { "s" }
        ));
        Some(parts.join(" -> "))
    }

    /// The LEAK SUMMARY block, memcheck's five lines.
    pub fn summary_text(&self, prefix: &str) -> String {
        summary_text(&self.report.summary, prefix)
    }

    /// The whole text report.
    pub fn text(&mut self, prefix: &str) -> String {
        let mut o = String::new();
        let records = self.report.records.clone();
        let total = records.iter().filter(|r| r.suppressed_by.is_none()).count();
        let errors = self.report.errors.clone();
        for e in errors.iter().filter(|e| e.suppressed_by.is_none()) {
            self.error_text(&mut o, e, prefix);
        }
        match &self.report.scan {
            None => {
                let _ = writeln!(
                    o,
                    "{prefix}No leak check: the trace has no exit scan (the process was killed, \
                     replaced by exec, or its trace could not be written)."
                );
                return o;
            }
            Some(info) if info.unstoppable_threads > 0 => {
                let _ = writeln!(
                    o,
                    "{prefix}note: {} thread(s) could not be stopped for the scan; their stacks were read as they were.",
                    info.unstoppable_threads
                );
            }
            _ => {}
        }
        let mut n = 0;
        for r in records.iter().filter(|r| r.suppressed_by.is_none()) {
            n += 1;
            if !self.opts.show_leak_kinds.contains(r.kind) {
                continue;
            }
            let size = if r.indirect.bytes > 0 {
                format!(
                    "{} ({} direct, {} indirect) bytes",
                    count(r.total_bytes()),
                    count(r.bytes),
                    count(r.indirect.bytes)
                )
            } else {
                format!("{} bytes", count(r.bytes))
            };
            let _ = writeln!(
                o,
                "{prefix}{size} in {} blocks are {} in loss record {n} of {total}",
                count(r.blocks),
                kind_words(r.kind)
            );
            self.stack_lines(&mut o, r.func, r.stack, prefix);
            if let Some(c) = self.chain_text(r) {
                let label = if r.kind == BlockState::StillReachable {
                    "kept alive by"
                } else {
                    "pointed into by"
                };
                let _ = writeln!(o, "{prefix}   {label}: {c}");
            }
            if self.opts.gen_suppressions == GenSuppressions::All {
                let s = self.suppression_text(Some(r.kind), r.func, r.stack);
                o.push_str(&s);
            }
            let _ = writeln!(o, "{prefix}");
        }
        o.push_str(&self.summary_text(prefix));
        let hidden: Vec<&str> = KINDS
            .iter()
            .filter(|k| {
                !self.opts.show_leak_kinds.contains(**k) && self.report.summary.get(**k).blocks > 0
            })
            .map(|k| kind_option(*k))
            .collect();
        if !hidden.is_empty() {
            let _ = writeln!(
                o,
                "{prefix}Records of kind {} not shown: add --show-leak-kinds={},{}",
                hidden.join(", "),
                shown_kinds(&self.opts.show_leak_kinds),
                hidden.join(",")
            );
        }
        let (heap, leaks) = self.error_counts();
        let s = |n: u64| if n == 1 { "" } else { "s" };
        let _ = writeln!(
            o,
            "{prefix}ERROR SUMMARY: {} error{} ({heap} heap error{}, {leaks} loss record{} of the kinds in --errors-for-leak-kinds)",
            heap + leaks,
            s(heap + leaks),
            s(heap),
            s(leaks),
        );
        for u in &self.used_suppressions {
            let _ = writeln!(
                o,
                "{prefix}used_suppression: {:>6} {} {} (suppressed: {} bytes in {} blocks)",
                u.count,
                u.name,
                u.origin,
                count(u.amount.bytes),
                count(u.amount.blocks)
            );
        }
        o
    }

    fn error_text(&mut self, o: &mut String, e: &HeapError, prefix: &str) {
        let times = if e.count > 1 {
            format!(" ({} times)", e.count)
        } else {
            String::new()
        };
        let _ = writeln!(o, "{prefix}{}{times}", e.kind.title());
        self.stack_lines(o, e.func, e.stack, prefix);
        match e.kind {
            ErrorKind::InvalidFree => {
                let _ = writeln!(
                    o,
                    "{prefix} Address {:#x} was never allocated by malloc/new",
                    e.addr
                );
            }
            ErrorKind::MismatchedFree | ErrorKind::DoubleFree | ErrorKind::InteriorFree => {
                if let Some((f, s, size)) = e.alloc {
                    let what = match e.kind {
                        ErrorKind::InteriorFree => "inside",
                        _ => "0 bytes inside",
                    };
                    let _ = writeln!(
                        o,
                        "{prefix} Address {:#x} is {what} a block of size {} alloc'd",
                        e.addr,
                        count(size)
                    );
                    self.stack_lines(o, f, s, prefix);
                }
                if let Some(fs) = e.first_free_stack {
                    let _ = writeln!(o, "{prefix} Block was first freed");
                    if fs == 0 {
                        let _ =
                            writeln!(o, "{prefix}   (stack not recorded: run with --free-stacks)");
                    } else {
                        self.stack_lines(o, AllocFunc::Free, fs, prefix);
                    }
                }
            }
        }
        if self.opts.gen_suppressions == GenSuppressions::All {
            let s = self.suppression_text(None, e.func, e.stack);
            o.push_str(&s);
        }
        let _ = writeln!(o, "{prefix}");
    }

    fn json_stack(&mut self, stack: u32) -> Value {
        Value::Array(self.frames(stack).iter().map(frame_json).collect())
    }

    pub fn json(&mut self) -> Value {
        let summary = summary_json(&self.report.summary);
        let records = self.report.records.clone();
        let mut recs = Vec::new();
        let gen = self.opts.gen_suppressions == GenSuppressions::All;
        for r in &records {
            let chain = self.chain_text(r);
            let suppression = gen.then(|| self.suppression_text(Some(r.kind), r.func, r.stack));
            recs.push(json!({
                "kind": kind_key(r.kind),
                "bytes": r.bytes,
                "blocks": r.blocks,
                "indirect_bytes": r.indirect.bytes,
                "indirect_blocks": r.indirect.blocks,
                "allocator": r.func.name(),
                "stack": self.json_stack(r.stack),
                "kept_alive_by": chain,
                "suppressed_by": r.suppressed_by,
                "suppression": suppression,
            }));
        }
        let errors = self.report.errors.clone();
        let mut errs = Vec::new();
        for e in &errors {
            let alloc = e.alloc;
            let alloc_json = match alloc {
                Some((f, s, size)) => {
                    json!({"allocator": f.name(), "size": size, "stack": self.json_stack(s)})
                }
                None => Value::Null,
            };
            let first_free = match e.first_free_stack {
                Some(0) | None => Value::Null,
                Some(s) => self.json_stack(s),
            };
            let suppression = gen.then(|| self.suppression_text(None, e.func, e.stack));
            errs.push(json!({
                "kind": e.kind.key(),
                "function": e.func.name(),
                "address": e.addr,
                "count": e.count,
                "stack": self.json_stack(e.stack),
                "allocation": alloc_json,
                "first_free_stack": first_free,
                "suppressed_by": e.suppressed_by,
                "suppression": suppression,
            }));
        }
        let scan = self.report.scan.as_ref().map(|i| {
            json!({
                "stopped_threads": i.stopped_threads,
                "unstoppable_threads": i.unstoppable_threads,
                "freeres": i.freeres,
                "duration_ns": i.duration_ns,
                "recorder_blocks": {"bytes": i.internal.bytes, "blocks": i.internal.blocks},
            })
        });
        json!({
            "summary": summary,
            "records": recs,
            "errors": errs,
            "scan": scan,
            "used_suppressions": self.used_suppressions.iter().map(|u| json!({
                "name": u.name,
                "origin": u.origin,
                "count": u.count,
                "bytes": u.amount.bytes,
                "blocks": u.amount.blocks,
            })).collect::<Vec<_>>(),
            "error_count": self.error_count(),
            "truncated": self.truncation.as_ref().map(|t| t.reason.clone()),
        })
    }

    /// SARIF 2.1.0: one result per unsuppressed loss record of a shown kind and per heap
    /// error, located at the first frame with a source file outside system libraries,
    /// with its whole stack (the allocating or releasing function first). Source files
    /// under `root` are named relative to it, with `uriBaseId` `%SRCROOT%`.
    pub fn sarif(&mut self, root: &Path) -> Value {
        let root = SourceRoot::new(root);
        let mut results = Vec::new();
        let records = self.report.records.clone();
        let show = self.opts.show_leak_kinds;
        for r in records
            .iter()
            .filter(|r| r.suppressed_by.is_none() && show.contains(r.kind))
        {
            let level = if self.opts.errors_for_leak_kinds.contains(r.kind) {
                "error"
            } else {
                "note"
            };
            let msg = format!(
                "{} bytes in {} blocks are {} ({} via {})",
                count(r.total_bytes()),
                count(r.blocks),
                kind_words(r.kind),
                if r.indirect.bytes > 0 {
                    format!("{} indirect", count(r.indirect.bytes))
                } else {
                    "allocated".into()
                },
                r.func.name()
            );
            results.push(self.sarif_result(
                kind_key(r.kind),
                level,
                msg,
                (r.func, r.stack),
                "where the blocks were allocated",
                &root,
            ));
        }
        let errors = self.report.errors.clone();
        for e in errors.iter().filter(|e| e.suppressed_by.is_none()) {
            let msg = format!(
                "{} ({} time(s), address {:#x})",
                e.kind.title(),
                e.count,
                e.addr
            );
            results.push(self.sarif_result(
                e.kind.key(),
                "error",
                msg,
                (e.func, e.stack),
                "where the block was released",
                &root,
            ));
        }
        let rule = |id: &str, text: &str| json!({"id": id, "shortDescription": {"text": text}});
        json!({
            "version": "2.1.0",
            "$schema": SARIF_SCHEMA,
            "runs": [{
                "tool": {"driver": {
                    "name": "memlens",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/memlens/memlens",
                    "rules": [
                        rule("definitely_lost", "Memory definitely lost: no pointer to the block remains"),
                        rule("indirectly_lost", "Memory indirectly lost: reachable only from lost blocks"),
                        rule("possibly_lost", "Memory possibly lost: only interior pointers to the block remain"),
                        rule("still_reachable", "Memory still reachable at exit"),
                        rule("double_free", "A block released twice"),
                        rule("interior_free", "A release of a pointer inside a block"),
                        rule("invalid_free", "A release of memory that was never allocated"),
                        rule("mismatched_free", "A block released by the wrong allocator family"),
                    ],
                }},
                "originalUriBaseIds": {
                    SRCROOT: {"uri": root.uri},
                },
                "results": results,
            }],
        })
    }

    /// One SARIF result: its primary location (the first frame in the program's own
    /// source) and the whole stack of `call` (the allocator function, then its callers).
    fn sarif_result(
        &mut self,
        rule: &str,
        level: &str,
        message: String,
        call: (AllocFunc, u32),
        stack_message: &str,
        root: &SourceRoot,
    ) -> Value {
        let frames = self.frames(call.1);
        let system = |f: &memlens_analysis::Frame| {
            f.file.as_deref().is_none_or(|p| {
                p.starts_with("/usr/include")
                    || p.starts_with("./")
                        && f.module.as_deref().is_some_and(|m| m.starts_with("lib"))
            })
        };
        let primary = frames
            .iter()
            .find(|f| f.file.as_deref().is_some_and(|p| root.contains(p)))
            .or_else(|| frames.iter().find(|f| !system(f)))
            .or(frames.first());
        let locations = match primary {
            Some(f) => json!([sarif_location(f, root)]),
            None => json!([]),
        };
        let allocator = json!({"location": {"logicalLocations": [{
            "name": alloc_symbol(call.0).0,
            "kind": "function",
        }]}});
        let stack: Vec<Value> = std::iter::once(allocator)
            .chain(frames.iter().map(|f| {
                let mut frame = json!({"location": sarif_location(f, root)});
                if let Some(m) = &f.module {
                    frame["module"] = json!(m);
                }
                frame
            }))
            .collect();
        json!({
            "ruleId": rule,
            "level": level,
            "message": {"text": message},
            "locations": locations,
            "stacks": [{"message": {"text": stack_message}, "frames": stack}],
        })
    }
}

/// The official SARIF 2.1.0 schema's address.
const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `uriBaseId` of source files under the source root.
const SRCROOT: &str = "%SRCROOT%";

/// The directory SARIF names source files relative to.
struct SourceRoot {
    /// As given, and resolved (symbolic links), to recognise paths under either.
    given: PathBuf,
    real: Option<PathBuf>,
    /// `file:///...` with a final `/`.
    uri: String,
}

impl SourceRoot {
    fn new(dir: &Path) -> SourceRoot {
        let given = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let real = std::fs::canonicalize(&given).ok();
        let shown = real.as_deref().unwrap_or(&given);
        let mut uri = format!("file://{}", uri_escape(&shown.to_string_lossy()));
        if !uri.ends_with('/') {
            uri.push('/');
        }
        SourceRoot { given, real, uri }
    }

    /// `path` relative to the root, if it is under it.
    fn relative(&self, path: &Path) -> Option<PathBuf> {
        let under = |root: &Path, p: &Path| p.strip_prefix(root).ok().map(Path::to_path_buf);
        under(&self.given, path)
            .or_else(|| self.real.as_deref().and_then(|r| under(r, path)))
            .or_else(|| {
                let p = std::fs::canonicalize(path).ok()?;
                under(&self.given, &p).or_else(|| under(self.real.as_deref()?, &p))
            })
    }

    fn contains(&self, file: &str) -> bool {
        self.relative(Path::new(file)).is_some()
    }

    /// A source file as a SARIF artifact location: relative to `%SRCROOT%` when it is
    /// under the root, else an absolute `file://` URI. A relative path in the debug
    /// information (a system library's, relative to where it was compiled) stays as it
    /// is, with no base: it is not the repository's.
    fn artifact(&self, file: &str) -> Value {
        let path = Path::new(file);
        if path.is_relative() {
            return json!({"uri": uri_escape(file)});
        }
        match self.relative(path) {
            Some(rel) => json!({"uri": uri_escape(&rel.to_string_lossy()), "uriBaseId": SRCROOT}),
            None => json!({"uri": format!("file://{}", uri_escape(file))}),
        }
    }
}

/// The default source root: the top of the git work tree around the current directory
/// (the nearest directory holding `.git`, a directory or a worktree's file), else the
/// current directory.
pub fn default_source_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&cwd)
        .to_path_buf()
}

/// A path as a URI path: every byte but the unreserved characters and `/` percent-encoded.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A frame as a SARIF location: its source file and line when known, its function.
fn sarif_location(f: &memlens_analysis::Frame, root: &SourceRoot) -> Value {
    let mut loc = json!({});
    if let Some(file) = &f.file {
        loc["physicalLocation"] = json!({"artifactLocation": root.artifact(file)});
        if let Some(line) = f.line.filter(|&l| l > 0) {
            loc["physicalLocation"]["region"] = json!({"startLine": line});
        }
    }
    loc["logicalLocations"] = json!([{"name": f.function, "kind": "function"}]);
    loc
}

fn kind_words(k: BlockState) -> &'static str {
    match k {
        BlockState::DefinitelyLost => "definitely lost",
        BlockState::IndirectlyLost => "indirectly lost",
        BlockState::PossiblyLost => "possibly lost",
        BlockState::StillReachable => "still reachable",
    }
}

fn kind_option(k: BlockState) -> &'static str {
    ["definite", "indirect", "possible", "reachable"][k as usize]
}

fn shown_kinds(s: &KindSet) -> String {
    KINDS
        .iter()
        .filter(|k| s.contains(**k))
        .map(|k| kind_option(*k))
        .collect::<Vec<_>>()
        .join(",")
}

/// memcheck's LEAK SUMMARY block (five lines, and the heuristics' lines).
pub fn summary_text(s: &Summary, prefix: &str) -> String {
    let mut o = String::new();
    let line = |o: &mut String, label: &str, a: Amount| {
        let _ = writeln!(
            o,
            "{prefix}   {label:>15}: {} bytes in {} blocks",
            count(a.bytes),
            count(a.blocks)
        );
    };
    let _ = writeln!(o, "{prefix}LEAK SUMMARY:");
    line(&mut o, "definitely lost", s.definitely_lost);
    line(&mut o, "indirectly lost", s.indirectly_lost);
    line(&mut o, "possibly lost", s.possibly_lost);
    line(&mut o, "still reachable", s.still_reachable);
    for (h, a) in &s.reachable_via_heuristic {
        let _ = writeln!(
            o,
            "{prefix}                       of which reachable via heuristic:\n{prefix}   {:>29}: {} bytes in {} blocks",
            h.name(),
            count(a.bytes),
            count(a.blocks)
        );
    }
    line(&mut o, "suppressed", s.suppressed);
    o
}

/// memcheck's LEAK SUMMARY as JSON (`docs/LEAKS_JSON.md`, `summary`; also the `leaks` key
/// of `memlens report --format json`).
pub fn summary_json(s: &Summary) -> Value {
    let amount = |a: Amount| json!({"bytes": a.bytes, "blocks": a.blocks});
    let mut summary = serde_json::Map::new();
    for k in KINDS {
        summary.insert(kind_key(k).into(), amount(s.get(k)));
    }
    summary.insert("suppressed".into(), amount(s.suppressed));
    let mut heur = serde_json::Map::new();
    for (h, a) in &s.reachable_via_heuristic {
        heur.insert(h.name().into(), amount(*a));
    }
    summary.insert("reachable_via_heuristic".into(), Value::Object(heur));
    Value::Object(summary)
}

/// The data symbol (a global variable) containing `addr`, from the module's ELF symbols.
fn data_symbol(md: &Metadata, addr: u64) -> Option<String> {
    use object::{Object, ObjectSymbol};
    let m = md.modules.values().find(|m| {
        m.segments.iter().any(|&(vaddr, memsz, _)| {
            let lo = m.load_bias.wrapping_add(vaddr);
            addr >= lo && addr < lo + memsz
        })
    })?;
    // The path comes from the trace: only a regular file (never a pipe or a device).
    if !std::fs::metadata(&m.path).ok()?.is_file() {
        return None;
    }
    let data = std::fs::read(&m.path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let vaddr = addr.wrapping_sub(m.load_bias);
    file.symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Data)
        .find(|s| vaddr >= s.address() && vaddr < s.address() + s.size().max(1))
        .and_then(|s| {
            s.name()
                .ok()
                .map(|n| memlens_analysis::symbolize::demangle(n).0)
        })
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
            let root = args.source_root.clone().unwrap_or_else(default_source_root);
            serde_json::to_string_pretty(&view.sarif(&root)).unwrap_or_default() + "\n"
        }
    };
    crate::print_stdout(&out)
}
