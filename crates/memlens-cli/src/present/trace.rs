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
    md: &memlens_trace::reader::Metadata,
    truncation: Option<&memlens_trace::reader::Truncation>,
    end: Option<&EndRecord>,
    warnings: &[&String],
) -> Value {
    json!({
        "path": path.to_string_lossy(),
        "pid": h.pid,
        "ppid": h.ppid,
        "forked_from": if h.forked_from == 0 { Value::Null } else { json!(h.forked_from) },
        "inherited": md.inherited.as_ref().map(|i| json!({
            "parent_trace": i.parent_trace.to_string_lossy(),
            "blocks": i.blocks,
            "bytes": i.bytes,
        })),
        "exe": h.exe,
        "argv": h.argv,
        "argv_omitted": (h.argv_omitted > 0)
            .then(|| json!({"arguments": h.argv_omitted, "bytes": h.argv_omitted_bytes})),
        "sampling": json_sampling(h.sample_interval),
        "truncated": truncation.map(|t| t.reason.clone()),
        "exit": end.map(|e| json!({"kind": exit_kind_key(e.kind), "code": e.code})),
        "attached": h.attach.map(|a| json!({
            "start_unix_ns": h.start_unix_ns,
            "live_heap_bytes": a.live_heap_bytes,
        })),
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

/// Why a trace has no exit scan, as far as its end record tells (`memlens leaks`, and the
/// leak metrics of `flamegraph` and `export`).
pub fn why_no_exit_scan(end: Option<&EndRecord>) -> &'static str {
    match end.map(|e| e.kind) {
        Some(ExitKind::Exec) => "the process was replaced by exec",
        Some(ExitKind::Exit | ExitKind::UnderscoreExit) => {
            "the run had --leak-check=no, or the scan could not run"
        }
        Some(ExitKind::Signal) => "the process died by a signal before a scan could run",
        _ => "the process was killed, or its trace could not be written",
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
        ExitKind::Detach => "detach",
    }
}

/// For a CPython program whose work-done moment the recorder saw: when the leak check
/// ran and why there, as one sentence (`None` otherwise).
pub fn python_work_done_note(md: &memlens_trace::reader::Metadata) -> Option<String> {
    let t = memlens_analysis::site::work_done_ns(md)?;
    Some(format!(
        "the leak check ran when the Python program's work was done, at {} (its interpreter \
         began finalizing: threads joined, atexit callbacks run, module globals not yet \
         cleared; other threads kept running); the figures stop there, and what the \
         interpreter frees while tearing itself down is left out",
        memlens_common::units::human_time(t)
    ))
}

/// For a trace `memlens attach` recorded: when the recording started and how much heap
/// was live then, as one sentence (`None` for a trace recorded from the start).
pub fn attach_note(h: &memlens_trace::Header) -> Option<String> {
    let a = h.attach?;
    Some(format!(
        "recording started when memlens attached to the running process, at {}, with {} of heap \
         already live: blocks allocated before are not in the trace (their frees count as untracked)",
        utc_time(h.start_unix_ns),
        memlens_common::units::human_bytes(a.live_heap_bytes)
    ))
}

/// `2026-12-06 14:03:11 UTC` from ns since the Unix epoch.
pub fn utc_time(unix_ns: u64) -> String {
    let t = memlens_common::units::utc_from_unix_secs(unix_ns / 1_000_000_000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_time_formats_dates() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(
            super::utc_time(1_709_210_096_000_000_123),
            "2024-02-29 12:34:56 UTC"
        );
    }
}
