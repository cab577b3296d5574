//! `memlens leaks --format sarif`: SARIF 2.1.0 for code-scanning tools, one result per
//! unsuppressed loss record of a shown kind and per heap error, located in the program's
//! own source, relative to the source root.

use super::text::kind_words;
use super::LeakView;
use crate::present::sarif::{sarif_location, SourceRoot, SARIF_SCHEMA, SRCROOT};
use memlens_analysis::leaks::{alloc_symbol, kind_key};
use memlens_common::units::count;
use memlens_trace::AllocFunc;
use serde_json::{json, Value};
use std::path::Path;

impl LeakView {
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
