//! The budgets as text: each component's figures and, under it, each limit with its
//! figure, then the no-allocation violations with their stacks, the baseline comparison
//! and the verdict. `check` prints it on stderr after `==memlens== `, `report` on stdout.

use super::{figure, place, BudgetView};
use memlens_analysis::budgets::{Figures, Matchers, Metric, Violation, ViolationKind, METRICS};
use memlens_analysis::leaks::alloc_symbol;
use memlens_common::units::{count, human_bytes, human_time, plural};
use memlens_trace::AssertKind;
use std::fmt::Write as _;

/// `threads worker-*, decode; functions parse_*`, or `the whole process`.
pub fn matchers_text(m: &Matchers) -> String {
    let parts: Vec<String> = [
        ("threads", &m.threads),
        ("modules", &m.modules),
        ("functions", &m.functions),
        ("regions", &m.regions),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k} {}", v.join(", ")))
    .collect();
    if parts.is_empty() {
        "the whole process".into()
    } else {
        parts.join("; ")
    }
}

/// One line of a component's main figures.
fn figures_line(f: &Figures) -> String {
    let mut s = format!(
        "peak {}, {} ({}), live at exit {}",
        human_bytes(f.peak_bytes),
        plural(f.allocations, "allocation", "allocations"),
        human_bytes(f.bytes_allocated),
        human_bytes(f.exit.bytes)
    );
    match &f.leaks {
        Some(l) => {
            let _ = write!(
                s,
                ", leaked {}",
                human_bytes(l.kinds[0].bytes + l.kinds[1].bytes)
            );
        }
        None => s.push_str(", leaks unknown (no exit scan)"),
    }
    s
}

fn what(v: &Violation) -> String {
    let calls = match v.what {
        ViolationKind::Alloc => plural(v.count, "allocation", "allocations"),
        ViolationKind::Realloc => plural(v.count, "realloc", "reallocs"),
        ViolationKind::Free => plural(v.count, "free", "frees"),
    };
    format!(
        "{calls} ({}) on {} by {}",
        human_bytes(v.bytes),
        v.threads.join(", "),
        alloc_symbol(v.func).0
    )
}

impl BudgetView {
    /// The whole table, each line after `prefix`. With `quiet`, nothing unless the run
    /// failed.
    pub fn text(&mut self, prefix: &str, quiet: bool) -> String {
        if quiet && !self.failed() {
            return String::new();
        }
        let mut o = String::new();
        let origin = self.origin().to_string();
        let _ = writeln!(
            o,
            "budgets{} for {}",
            if origin.is_empty() {
                String::new()
            } else {
                format!(" of {origin}")
            },
            self.trace.display()
        );
        for (i, c) in self.budgets.components.iter().enumerate() {
            let f = &self.m.components[i].1;
            let _ = writeln!(
                o,
                "  {} ({}): {}",
                c.name,
                matchers_text(&c.matchers),
                figures_line(f)
            );
            for l in self.limits.iter().filter(|l| l.component == i) {
                let m: &Metric = l.limit.metric;
                let value = l.value.map_or_else(
                    || "unknown (no exit scan)".to_string(),
                    |v| figure(m.unit, v),
                );
                let verdict = if l.exceeded() {
                    format!("EXCEEDED  {}", place(&origin, l.limit.line))
                } else {
                    "ok".into()
                };
                let _ = writeln!(
                    o,
                    "    {:<38} {:>14}  limit {:>12}  {verdict}",
                    m.title,
                    value,
                    figure(m.unit, l.limit.max)
                );
            }
        }
        self.no_alloc_text(&mut o);
        self.assertions_text(&mut o);
        self.baseline_text(&mut o);
        let mut problems = Vec::new();
        if self.exceeded() > 0 {
            problems.push(format!(
                "{} exceeded",
                plural(self.exceeded() as u64, "limit", "limits")
            ));
        }
        if !self.m.violations.is_empty() {
            problems.push(format!(
                "{} on no-allocation threads",
                plural(self.violation_calls(), "call", "calls")
            ));
        }
        if self.regressions() > 0 {
            problems.push(format!(
                "{} against the baseline",
                plural(self.regressions() as u64, "regression", "regressions")
            ));
        }
        if self.failed_assertions() > 0 {
            problems.push(format!(
                "{} failed",
                plural(self.failed_assertions() as u64, "assertion", "assertions")
            ));
        }
        if problems.is_empty() {
            let mut checked = vec![plural(self.limits.len() as u64, "limit", "limits")];
            if !self.m.assertions.is_empty() {
                checked.push(plural(
                    self.m.assertions.len() as u64,
                    "assertion",
                    "assertions",
                ));
            }
            let _ = writeln!(o, "budgets: ok ({} checked)", checked.join(", "));
        } else {
            let _ = writeln!(o, "budgets: FAILED: {}", problems.join(", "));
        }
        o.lines()
            .map(|l| format!("{prefix}{l}\n"))
            .collect::<String>()
    }

    /// The no-allocation threads: ok, or each violating stack with its counts.
    fn no_alloc_text(&mut self, o: &mut String) {
        if !self.budgets.no_alloc.is_empty() || !self.m.no_alloc_threads.is_empty() {
            let mut pats: Vec<&str> = self
                .budgets
                .no_alloc
                .iter()
                .map(|n| n.pattern.as_str())
                .collect();
            if !self.m.metadata.realtime_threads.is_empty() {
                pats.push("threads marked real-time");
            }
            if self.m.violations.is_empty() {
                let _ = writeln!(
                    o,
                    "no-allocation threads ({}): no allocation or free on them, ok",
                    pats.join(", ")
                );
            } else {
                let _ = writeln!(
                    o,
                    "no-allocation threads ({}): {} from {} on {}: VIOLATED",
                    pats.join(", "),
                    plural(self.violation_calls(), "call", "calls"),
                    plural(self.m.violations.len() as u64, "stack", "stacks"),
                    self.m.no_alloc_threads.join(", ")
                );
            }
            let violations = self.m.violations.clone();
            for v in &violations {
                let _ = writeln!(o, "  {}, first at {}", what(v), human_time(v.first_ns));
                let mut stack = String::new();
                match v.freed_block {
                    Some(site) => {
                        let _ = writeln!(
                        stack,
                        "    (the free's stack was not recorded; the block was allocated by {} at:)",
                        alloc_symbol(site.func).0
                    );
                        self.stack_text(&mut stack, site.stack);
                    }
                    None => self.stack_text(&mut stack, v.stack),
                }
                o.push_str(&stack);
            }
        }
    }

    /// The comparison with the baseline: every figure that changed.
    fn baseline_text(&self, o: &mut String) {
        if let Some(checks) = &self.baseline {
            let base = self
                .args
                .baseline
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let regressed: Vec<_> = checks.iter().filter(|c| c.regressed()).collect();
            let _ = writeln!(
                o,
                "baseline {base}: {} compared (exact; the allocation rate within +{}%): {}",
                plural(checks.len() as u64, "figure", "figures"),
                (self.args.max_regression * 100.0 * 100.0).round() / 100.0,
                if regressed.is_empty() {
                    "no regression".to_string()
                } else {
                    format!("{} REGRESSED", count(regressed.len() as u64))
                }
            );
            for c in checks.iter().filter(|c| c.before != c.after) {
                let m = METRICS
                    .iter()
                    .find(|m| m.key == c.metric)
                    .unwrap_or(&METRICS[0]);
                let diff = c.after as i128 - c.before as i128;
                let change = match m.unit {
                    memlens_analysis::budgets::Unit::Count => format!("{diff:+}"),
                    _ => {
                        let sign = if diff < 0 { "-" } else { "+" };
                        format!("{sign}{}", figure(m.unit, diff.unsigned_abs() as u64))
                    }
                };
                let _ = writeln!(
                    o,
                    "  {} {}: {} -> {} ({change}){}",
                    c.component,
                    m.title,
                    figure(m.unit, c.before),
                    figure(m.unit, c.after),
                    if c.regressed() { "  REGRESSED" } else { "" }
                );
            }
        }
    }

    /// The program's assertions: one line each, and under a failed one its call's
    /// stack and the sites of the blocks it counted.
    fn assertions_text(&mut self, o: &mut String) {
        if self.m.assertions.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "assertions of the program: {} made, {} failed (judged on the trace; the program was not stopped)",
            count(self.m.assertions.len() as u64),
            count(self.failed_assertions() as u64)
        );
        for a in self.m.assertions.clone() {
            let who = if a.thread_name.is_empty() {
                "its thread".to_string()
            } else {
                a.thread_name.clone()
            };
            let what = match a.kind {
                AssertKind::NoLeaksSince => {
                    let allowed = if a.limit > 0 {
                        format!(" (at most {} allowed)", human_bytes(a.limit))
                    } else {
                        String::new()
                    };
                    format!(
                        "no leaks since {}{allowed}: {} ({}) allocated since then by {who} still live at {}",
                        human_time(a.mark),
                        human_bytes(a.value),
                        plural(a.blocks, "block", "blocks"),
                        human_time(a.ts)
                    )
                }
                AssertKind::MaxLive => format!(
                    "live heap at most {}: {} live at {}",
                    human_bytes(a.limit),
                    human_bytes(a.value),
                    human_time(a.ts)
                ),
                AssertKind::PeakSince => format!(
                    "peak since {} at most {}: {} allocated by {who} were live at once by {}",
                    human_time(a.mark),
                    human_bytes(a.limit),
                    human_bytes(a.value),
                    human_time(a.ts)
                ),
            };
            let verdict = if a.passed { "ok" } else { "FAILED" };
            let _ = writeln!(o, "  {}: {what}  {verdict}", a.label);
            if a.passed {
                continue;
            }
            let mut s = String::new();
            let _ = writeln!(s, "    asserted at:");
            self.stack_text(&mut s, a.stack);
            for site in &a.sites {
                let _ = writeln!(
                    s,
                    "    {} ({}) allocated by {} at:",
                    human_bytes(site.bytes),
                    plural(site.blocks, "block", "blocks"),
                    alloc_symbol(site.site.func).0
                );
                self.stack_text(&mut s, site.site.stack);
            }
            o.push_str(&s);
        }
    }

    /// A stack as `    at FRAME` lines.
    fn stack_text(&mut self, out: &mut String, stack: u32) {
        let raw = self
            .m
            .metadata
            .stacks
            .get(&stack)
            .cloned()
            .unwrap_or_default();
        let frames = self.sym.stack(&raw);
        crate::present::frames::text_stack(out, &frames);
    }
}
