//! The budgets for code scanning: SARIF 2.1.0 (`--budgets-sarif`) and GitHub Actions
//! annotation lines (`--github-annotations`). An exceeded limit is located at its line of
//! the budget file; a no-allocation violation at the first frame of its stack in the
//! program's own source; a regression at the component's table (or nowhere, for the
//! process without a budget file).

use super::{figure, place, BudgetView};
use crate::present::sarif::{sarif_location, SourceRoot, SARIF_SCHEMA, SRCROOT};
use memlens_analysis::budgets::{Violation, METRICS};
use memlens_analysis::leaks::alloc_symbol;
use memlens_analysis::Frame;
use memlens_common::units::{human_bytes, plural};
use serde_json::{json, Value};
use std::path::Path;

/// One finding, located: what both formats print.
struct Finding {
    rule: &'static str,
    message: String,
    /// (file, line) in the budget file or the source.
    at: Option<(String, usize)>,
    /// The violation's stack, for SARIF.
    stack: Vec<Frame>,
}

impl BudgetView {
    fn findings(&mut self, root: &SourceRoot) -> Vec<Finding> {
        let origin = self.origin().to_string();
        let file_at =
            |line: usize| (line > 0 && !origin.is_empty()).then(|| (origin.clone(), line));
        let mut out = Vec::new();
        for l in self.limits.iter().filter(|l| l.exceeded()) {
            let c = &self.budgets.components[l.component];
            let m = l.limit.metric;
            let value = l
                .value
                .map_or_else(|| "unknown (no exit scan)".into(), |v| figure(m.unit, v));
            out.push(Finding {
                rule: "budget_exceeded",
                message: format!(
                    "memlens budget: {} {}: {value} exceeds the limit {} ({})",
                    c.name,
                    m.title,
                    figure(m.unit, l.limit.max),
                    place(&origin, l.limit.line)
                ),
                at: file_at(l.limit.line),
                stack: Vec::new(),
            });
        }
        for v in self.m.violations.clone() {
            let stack = v.freed_block.map_or(v.stack, |s| s.stack);
            let raw = self
                .m
                .metadata
                .stacks
                .get(&stack)
                .cloned()
                .unwrap_or_default();
            let frames = self.sym.stack(&raw);
            let at = frames
                .iter()
                .find(|f| f.file.as_deref().is_some_and(|p| root.contains(p)))
                .or_else(|| frames.iter().find(|f| f.file.is_some()))
                .and_then(|f| Some((f.file.clone()?, f.line? as usize)));
            out.push(Finding {
                rule: "no_alloc_violation",
                message: violation_message(&v, frames.first()),
                at,
                stack: frames,
            });
        }
        for c in self.baseline.iter().flatten().filter(|c| c.regressed()) {
            let m = METRICS
                .iter()
                .find(|m| m.key == c.metric)
                .unwrap_or(&METRICS[0]);
            let line = self
                .budgets
                .components
                .iter()
                .find(|x| x.name == c.component)
                .map_or(0, |x| x.line);
            out.push(Finding {
                rule: "baseline_regression",
                message: format!(
                    "memlens baseline: {} {} rose from {} to {} (allowed: {})",
                    c.component,
                    m.title,
                    figure(m.unit, c.before),
                    figure(m.unit, c.after),
                    figure(m.unit, c.allowed)
                ),
                at: file_at(line),
                stack: Vec::new(),
            });
        }
        out
    }

    /// SARIF 2.1.0 of the failures.
    pub fn sarif(&mut self, root: &Path) -> Value {
        let root = SourceRoot::new(root);
        let results: Vec<Value> = self
            .findings(&root)
            .into_iter()
            .map(|f| {
                let locations = match &f.at {
                    Some((file, line)) => {
                        let abs = std::path::absolute(file).unwrap_or_else(|_| file.into());
                        json!([{"physicalLocation": {
                            "artifactLocation": root.artifact(&abs.to_string_lossy()),
                            "region": {"startLine": line},
                        }}])
                    }
                    None => json!([]),
                };
                let mut r = json!({
                    "ruleId": f.rule,
                    "level": "error",
                    "message": {"text": f.message},
                    "locations": locations,
                });
                if !f.stack.is_empty() {
                    let frames: Vec<Value> = f
                        .stack
                        .iter()
                        .map(|fr| json!({"location": sarif_location(fr, &root)}))
                        .collect();
                    r["stacks"] =
                        json!([{"message": {"text": "where it was called"}, "frames": frames}]);
                }
                r
            })
            .collect();
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
                        rule("budget_exceeded", "A component's figure exceeds its limit in the budget file"),
                        rule("no_alloc_violation", "An allocation or free on a thread that must not allocate"),
                        rule("baseline_regression", "A component's figure rose above its baseline"),
                    ],
                }},
                "originalUriBaseIds": {SRCROOT: {"uri": root.uri}},
                "results": results,
            }],
        })
    }

    /// GitHub Actions workflow commands, one `::error` line per failure; files relative
    /// to the source root (the repository).
    pub fn annotations(&mut self, root: &Path) -> String {
        let sroot = SourceRoot::new(root);
        let mut out = String::new();
        for f in self.findings(&sroot) {
            let mut props = Vec::new();
            if let Some((file, line)) = &f.at {
                let abs = std::path::absolute(file).unwrap_or_else(|_| file.into());
                let shown = sroot
                    .relative(&abs)
                    .unwrap_or_else(|| Path::new(file).to_path_buf());
                props.push(format!(
                    "file={}",
                    escape_property(&shown.to_string_lossy())
                ));
                props.push(format!("line={line}"));
            }
            props.push(format!("title={}", escape_property(f.rule)));
            out.push_str(&format!(
                "::error {}::{}\n",
                props.join(","),
                escape_data(&f.message)
            ));
        }
        out
    }
}

fn violation_message(v: &Violation, top: Option<&Frame>) -> String {
    let calls = plural(v.count, "call", "calls");
    let at = top.map_or_else(String::new, |f| {
        format!(" in {}", crate::present::frames::frame_text(f))
    });
    format!(
        "memlens no-alloc: {calls} to {} ({}) on thread {} (no_alloc {}){at}{}",
        alloc_symbol(v.func).0,
        human_bytes(v.bytes),
        v.threads.join(", "),
        v.pattern,
        if v.freed_block.is_some() {
            " (the free's stack was not recorded: where the block was allocated)"
        } else {
            ""
        }
    )
}

/// A workflow command's message: `%`, CR and LF escaped.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
