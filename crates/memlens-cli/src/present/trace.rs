//! The `trace` object of the JSON outputs (`docs/REPORT_JSON.md`): what was traced and
//! how it ended. `report`, `export` and `diff` start their JSON with it.

use memlens_trace::reader::EndRecord;
use memlens_trace::ExitKind;
use serde_json::{json, Value};
use std::path::Path;

/// The `trace` object of `docs/REPORT_JSON.md`: what was traced and how it ended.
pub fn json_trace(
    path: &Path,
    h: &memlens_trace::Header,
    truncation: Option<&memlens_trace::reader::Truncation>,
    end: Option<&EndRecord>,
    warnings: &[&String],
) -> Value {
    json!({
        "path": path.to_string_lossy(),
        "pid": h.pid,
        "ppid": h.ppid,
        "forked_from": if h.forked_from == 0 { Value::Null } else { json!(h.forked_from) },
        "exe": h.exe,
        "argv": h.argv,
        "argv_omitted": (h.argv_omitted > 0)
            .then(|| json!({"arguments": h.argv_omitted, "bytes": h.argv_omitted_bytes})),
        "sampling": json_sampling(h.sample_interval),
        "truncated": truncation.map(|t| t.reason.clone()),
        "exit": end.map(|e| json!({"kind": exit_kind_key(e.kind), "code": e.code})),
        "warnings": warnings,
    })
}

/// The `sampling` member of the `trace` object: `null` when every block was recorded.
pub fn json_sampling(interval: u64) -> Value {
    match memlens_analysis::sampling::note(interval) {
        None => Value::Null,
        Some(note) => json!({
            "interval_bytes": interval,
            "estimated": true,
            "note": note,
            "leak_kinds": LEAK_KINDS_UNDER_SAMPLING,
        }),
    }
}

/// Why a sampled trace has no leak kinds, in one sentence every output uses.
pub const LEAK_KINDS_UNDER_SAMPLING: &str = "no leak kinds (definitely, indirectly, possibly lost): a sampled run records only the sampled blocks, and pointers to them from the others cannot be followed, so no reachability scan is made; \"not freed\" figures are estimates of the blocks left at exit";

fn exit_kind_key(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::Exit => "exit",
        ExitKind::UnderscoreExit => "_exit",
        ExitKind::Signal => "signal",
        ExitKind::Exec => "exec",
        ExitKind::Snapshot => "snapshot",
    }
}
