//! The budgets as JSON (`--budgets-json`, `report --budgets --format json`; keys in
//! `docs/BUDGETS_JSON.md`), and baseline files (`--write-baseline`, `--baseline`).

use super::BudgetView;
use crate::present::frames::frame_json;
use crate::present::ms;
use memlens_analysis::budgets::{Baseline, Figures, METRICS};
use memlens_analysis::leaks::alloc_symbol;
use memlens_trace::AssertKind;
use serde_json::{json, Map, Value};
use std::path::Path;

/// The version of the baseline file layout.
const BASELINE_VERSION: u64 = 1;

/// Every figure of a component, by metric key (`null`: unknown), and the extra counts.
pub fn figures_json(f: &Figures) -> Value {
    let mut o = Map::new();
    for m in METRICS {
        o.insert(m.key.into(), json!(m.value(f)));
    }
    o.insert("peak_ms".into(), json!(ms(f.peak_ns)));
    o.insert("live_at_exit_blocks".into(), json!(f.exit.blocks));
    o.insert("frees".into(), json!(f.frees));
    o.insert(
        "suppressed".into(),
        json!(f.leaks.as_ref().map(|l| l.suppressed.bytes)),
    );
    Value::Object(o)
}

impl BudgetView {
    fn stack_json(&mut self, stack: u32) -> Value {
        let raw = self
            .m
            .metadata
            .stacks
            .get(&stack)
            .cloned()
            .unwrap_or_default();
        Value::Array(self.sym.stack(&raw).iter().map(frame_json).collect())
    }

    pub fn json(&mut self) -> Value {
        let origin = self.origin().to_string();
        let mut components = Vec::new();
        for (i, c) in self.budgets.components.iter().enumerate() {
            let limits: Vec<Value> = self
                .limits
                .iter()
                .filter(|l| l.component == i)
                .map(|l| {
                    json!({
                        "metric": l.limit.metric.key,
                        "limit": l.limit.max,
                        "value": l.value,
                        "exceeded": l.exceeded(),
                        "line": (l.limit.line > 0).then_some(l.limit.line),
                    })
                })
                .collect();
            components.push(json!({
                "name": c.name,
                "line": (c.line > 0).then_some(c.line),
                "threads": c.matchers.threads,
                "modules": c.matchers.modules,
                "functions": c.matchers.functions,
                "regions": c.matchers.regions,
                "figures": figures_json(&self.m.components[i].1),
                "limits": limits,
            }));
        }
        let mut violations = Vec::new();
        for v in self.m.violations.clone() {
            let freed = v.freed_block.map(
                |s| json!({"function": alloc_symbol(s.func).0, "stack": self.stack_json(s.stack)}),
            );
            violations.push(json!({
                "kind": v.what.word(),
                "function": alloc_symbol(v.func).0,
                "count": v.count,
                "bytes": v.bytes,
                "threads": v.threads,
                "pattern": v.pattern,
                "first_ms": ms(v.first_ns),
                "stack": if v.stack == 0 { Value::Null } else { self.stack_json(v.stack) },
                "freed_block": freed,
            }));
        }
        let mut assertions = Vec::new();
        for a in self.m.assertions.clone() {
            let sites: Vec<Value> = a
                .sites
                .iter()
                .map(|s| {
                    json!({
                        "function": alloc_symbol(s.site.func).0,
                        "blocks": s.blocks,
                        "bytes": s.bytes,
                        "stack": self.stack_json(s.site.stack),
                    })
                })
                .collect();
            assertions.push(json!({
                "label": a.label,
                "kind": assert_kind_key(a.kind),
                "passed": a.passed,
                "value": a.value,
                "blocks": a.blocks,
                "limit": a.limit,
                "mark_ms": (a.kind != AssertKind::MaxLive).then(|| ms(a.mark)),
                "at_ms": ms(a.ts),
                "thread": a.thread_name,
                "stack": self.stack_json(a.stack),
                "sites": sites,
            }));
        }
        let baseline = self.baseline.as_ref().map(|checks| {
            json!({
                "file": self.args.baseline.as_ref().map(|p| p.to_string_lossy()),
                "max_regression": self.args.max_regression,
                "regressions": self.regressions(),
                "checks": checks.iter().map(|c| json!({
                    "component": c.component,
                    "metric": c.metric,
                    "before": c.before,
                    "after": c.after,
                    "allowed": c.allowed,
                    "regressed": c.regressed(),
                })).collect::<Vec<_>>(),
            })
        });
        json!({
            "budget_file": (!origin.is_empty()).then_some(origin),
            "trace": self.trace.to_string_lossy(),
            "program": self.exe,
            "run_ms": ms(self.m.run_ns),
            "exit_scan": self.m.has_scan,
            "passed": !self.failed(),
            "exceeded": self.exceeded(),
            "components": components,
            "no_alloc": {
                "patterns": self.budgets.no_alloc.iter().map(|n| n.pattern.clone()).collect::<Vec<_>>(),
                "threads": self.m.no_alloc_threads,
                "calls": self.violation_calls(),
                "violations": violations,
            },
            "baseline": baseline,
            "assertions": assertions,
        })
    }
}

/// An assertion's kind as the JSON names it.
pub fn assert_kind_key(k: AssertKind) -> &'static str {
    match k {
        AssertKind::NoLeaksSince => "no_leaks_since",
        AssertKind::MaxLive => "max_live",
        AssertKind::PeakSince => "peak_since",
    }
}

/// Write the figures of every component as a baseline.
pub fn write_baseline(path: &Path, v: &BudgetView) -> Result<(), String> {
    let doc = json!({
        "memlens_baseline": BASELINE_VERSION,
        "program": v.exe,
        "trace": v.trace.to_string_lossy(),
        "components": v.m.baseline(),
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    std::fs::write(path, s)
        .map_err(|e| format!("cannot write the baseline {}: {e}", path.display()))
}

/// Read a baseline written by [`write_baseline`]. `Err` is one sentence naming the file.
pub fn read_baseline(path: &Path) -> Result<Baseline, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the baseline {shown}: {e}"))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{shown}:{}: not a memlens baseline: it is not JSON (column {}); write one with --write-baseline",
            e.line(),
            e.column()
        )
    })?;
    match doc.get("memlens_baseline").and_then(Value::as_u64) {
        Some(BASELINE_VERSION) => {}
        Some(n) => {
            return Err(format!(
                "{shown}: a baseline of version {n}, which this memlens cannot read (it reads version {BASELINE_VERSION})"
            ))
        }
        None => {
            return Err(format!(
                "{shown}: not a memlens baseline (no `memlens_baseline` key); write one with --write-baseline"
            ))
        }
    }
    let bad = |what: String| format!("{shown}: not a memlens baseline: {what}");
    let mut out = Baseline::new();
    let comps = doc
        .get("components")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("`components` is not an object".into()))?;
    for (name, figures) in comps {
        let figures = figures
            .as_object()
            .ok_or_else(|| bad(format!("component `{name}` is not an object")))?;
        let mut m = std::collections::BTreeMap::new();
        for (k, v) in figures {
            let v = v
                .as_u64()
                .ok_or_else(|| bad(format!("`{name}.{k}` is not a whole number")))?;
            m.insert(k.clone(), v);
        }
        out.insert(name.clone(), m);
    }
    Ok(out)
}
