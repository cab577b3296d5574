//! `--history DIR`: each run's figures appended to `DIR/history.jsonl`, one JSON object
//! per line (`docs/BUDGETS_JSON.md`), with the git commit when memlens runs in a git
//! checkout: memory tracked over time.

use super::BudgetView;
use serde_json::json;
use std::io::Write as _;
use std::path::Path;

/// The file inside a history directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// The commit checked out in the current directory, if it is in a git work tree.
fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let id = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !id.is_empty()).then_some(id)
}

/// Append the run to `dir/history.jsonl` (the directory is created if needed).
pub fn append(dir: &Path, v: &BudgetView) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the history directory {}: {e}", dir.display()))?;
    let path = dir.join(HISTORY_FILE);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = json!({
        "time": time,
        "commit": git_commit(),
        "program": v.exe,
        "trace": v.trace.to_string_lossy(),
        "passed": !v.failed(),
        "no_alloc_calls": v.violation_calls(),
        "components": v.m.baseline(),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot write the history {}: {e}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("cannot write the history {}: {e}", path.display()))
}
