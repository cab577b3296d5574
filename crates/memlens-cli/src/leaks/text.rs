//! `memlens leaks` as text, in memcheck's layout: heap errors, loss records with their
//! stacks and what keeps them alive, the LEAK SUMMARY and the ERROR SUMMARY. The summary
//! block is also the `leaks` section of `memlens report` and part of `memlens run`'s.

use super::{GenSuppressions, KindSet, LeakView};
use crate::present::frames::frame_text;
use memlens_analysis::leaks::{
    Amount, ChainStep, ErrorKind, HeapError, LossRecord, Summary, KINDS,
};
use memlens_common::units::count;
use memlens_trace::{AllocFunc, BlockState, RootKind};
use std::fmt::Write as _;

impl LeakView {
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
    fn root_text(&mut self, kind: RootKind, name: &str, tid: u32, addr: u64) -> String {
        let pid = match self.main_tid {
            0 => self
                .metadata
                .threads
                .values()
                .map(|t| t.tid)
                .min()
                .unwrap_or(0),
            main => main,
        };
        let short = name.rsplit('/').next().unwrap_or(name);
        match kind {
            RootKind::ModuleData => match self.data_symbol(addr) {
                Some((sym, module, start)) => match self.sym.declaration(module, start) {
                    Some(source) => {
                        let file = source.rsplit('/').next().unwrap_or(&source);
                        format!("global `{sym}` ({file})")
                    }
                    None => format!("global `{sym}` ({short})"),
                },
                None => format!("data of {short}"),
            },
            RootKind::Anonymous => match self.data_symbol(addr) {
                Some((sym, ..)) => format!("global `{sym}`"),
                None => format!("anonymous memory at {addr:#x}"),
            },
            RootKind::ThreadStack if tid == pid || pid == 0 => "the main thread's stack".into(),
            RootKind::ThreadStack => format!("the stack of thread {tid}"),
            RootKind::Registers => format!("the registers of thread {tid}"),
            RootKind::OtherMapping => format!("the mapping {short}"),
        }
    }

    pub(super) fn chain_text(&mut self, r: &LossRecord) -> Option<String> {
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
        if let Some(note) = &self.attach_note {
            let _ = writeln!(o, "{prefix}note: {note}.");
        }
        let python = crate::present::trace::python_work_done_note(&self.metadata);
        if let Some(note) = &python {
            let _ = writeln!(o, "{prefix}note: {note}.");
        }
        match &self.report.scan {
            None if self.report.sample_interval != 0 => {
                let _ = writeln!(
                    o,
                    "{prefix}No leak check: {}.",
                    crate::present::trace::LEAK_KINDS_UNDER_SAMPLING
                );
                return o;
            }
            None if self.attach_note.is_some() => {
                let _ = writeln!(
                    o,
                    "{prefix}No leak check: a recording attached to a running process has none \
                     (what blocks from before the attach point to would look lost). `memlens report` \
                     lists what was allocated while attached and not freed."
                );
                return o;
            }
            None => {
                let why = crate::present::trace::why_no_exit_scan(self.metadata.end.as_ref());
                let _ = writeln!(
                    o,
                    "{prefix}No leak check: the trace has no exit scan ({why})."
                );
                return o;
            }
            Some(info) if info.unstoppable_threads > 0 && python.is_none() => {
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
}

/// A leak kind as memcheck words it.
pub(super) fn kind_words(k: BlockState) -> &'static str {
    match k {
        BlockState::DefinitelyLost => "definitely lost",
        BlockState::IndirectlyLost => "indirectly lost",
        BlockState::PossiblyLost => "possibly lost",
        BlockState::StillReachable => "still reachable",
    }
}

/// A leak kind as `--show-leak-kinds` names it.
fn kind_option(k: BlockState) -> &'static str {
    ["definite", "indirect", "possible", "reachable"][k as usize]
}

/// `--show-leak-kinds` for a set.
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
    // memcheck's layout: one header, then a line per heuristic.
    if !s.reachable_via_heuristic.is_empty() {
        let _ = writeln!(
            o,
            "{prefix}                       of which reachable via heuristic:"
        );
    }
    for (h, a) in &s.reachable_via_heuristic {
        let _ = writeln!(
            o,
            "{prefix}                         {:<19}: {} bytes in {} blocks",
            h.name(),
            count(a.bytes),
            count(a.blocks)
        );
    }
    line(&mut o, "suppressed", s.suppressed);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_analysis::leaks::Amount;
    use memlens_trace::Heuristic;

    /// The heuristics' subtotals as memcheck prints them: one header, a line each.
    #[test]
    fn heuristic_subtotals_have_one_header() {
        let s = Summary {
            still_reachable: Amount {
                bytes: 1269,
                blocks: 4,
            },
            reachable_via_heuristic: vec![
                (
                    Heuristic::StdString,
                    Amount {
                        bytes: 56,
                        blocks: 2,
                    },
                ),
                (
                    Heuristic::Length64,
                    Amount {
                        bytes: 16,
                        blocks: 1,
                    },
                ),
            ],
            ..Summary::default()
        };
        let text = summary_text(&s, "==1== ");
        assert_eq!(
            text,
            "==1== LEAK SUMMARY:\n\
             ==1==    definitely lost: 0 bytes in 0 blocks\n\
             ==1==    indirectly lost: 0 bytes in 0 blocks\n\
             ==1==      possibly lost: 0 bytes in 0 blocks\n\
             ==1==    still reachable: 1,269 bytes in 4 blocks\n\
             ==1==                        of which reachable via heuristic:\n\
             ==1==                          stdstring          : 56 bytes in 2 blocks\n\
             ==1==                          length64           : 16 bytes in 1 blocks\n\
             ==1==         suppressed: 0 bytes in 0 blocks\n"
        );
    }
}
