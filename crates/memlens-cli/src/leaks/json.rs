//! `memlens leaks --format json` (`docs/LEAKS_JSON.md`): every loss record and heap
//! error, suppressed or not, the summary, the scan and the suppressions used. The summary
//! object is also the `leaks` key of `memlens report --format json`.

use super::{GenSuppressions, LeakView};
use crate::present::frames::frame_json;
use memlens_analysis::leaks::{kind_key, Amount, Summary, KINDS};
use serde_json::{json, Value};

impl LeakView {
    /// A stack as FRAME objects.
    fn json_stack(&mut self, stack: u32) -> Value {
        Value::Array(self.frames(stack).iter().map(frame_json).collect())
    }

    /// The whole JSON report.
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
