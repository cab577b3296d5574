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
        "truncated": truncation.map(|t| t.reason.clone()),
        "exit": end.map(|e| json!({"kind": exit_kind_key(e.kind), "code": e.code})),
        "warnings": warnings,
    })
}

fn exit_kind_key(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::Exit => "exit",
        ExitKind::UnderscoreExit => "_exit",
        ExitKind::Signal => "signal",
        ExitKind::Exec => "exec",
        ExitKind::Snapshot => "snapshot",
    }
}
