//! `memlens plot --history DIR`: each component's peak and leaked bytes across the runs
//! that `memlens check --history DIR` appended to `DIR/history.jsonl`
//! (`docs/BUDGETS_JSON.md`), one point per run, drawn by `memlens_common::chart`.

use super::COLORS;
use crate::budgets::HISTORY_FILE;
use memlens_common::chart::{Chart, Legend, Series, TimeAxis};
use serde_json::Value;
use std::path::Path;

/// One run of the history: its commit and each component's figures.
struct Run {
    commit: Option<String>,
    program: String,
    /// (component, peak, leaked), in the line's order.
    components: Vec<(String, Option<u64>, Option<u64>)>,
}

/// Read `dir/history.jsonl`. `Err` is one sentence naming the file (and line).
fn read(dir: &Path) -> Result<Vec<Run>, String> {
    let path = dir.join(HISTORY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the history {} ({e}); `memlens check --history {}` writes it",
            path.display(),
            dir.display()
        )
    })?;
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| {
            format!(
                "{}:{}: not a line of a memlens history ({why})",
                path.display(),
                i + 1
            )
        };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let comps = v
            .get("components")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no \"components\" object"))?;
        runs.push(Run {
            commit: v.get("commit").and_then(Value::as_str).map(str::to_string),
            program: v
                .get("program")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            components: comps
                .iter()
                .map(|(name, m)| {
                    (
                        name.clone(),
                        m.get("peak").and_then(Value::as_u64),
                        m.get("leaked").and_then(Value::as_u64),
                    )
                })
                .collect(),
        });
    }
    if runs.is_empty() {
        return Err(format!("{} has no run yet", path.display()));
    }
    Ok(runs)
}

/// The chart of a history directory, as SVG.
pub fn svg(dir: &Path) -> Result<String, String> {
    let runs = read(dir)?;
    // Components in the order they first appear, the process first.
    let mut names: Vec<String> = Vec::new();
    for r in &runs {
        for (n, _, _) in &r.components {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    if let Some(p) = names.iter().position(|n| n == "process") {
        let p = names.remove(p);
        names.insert(0, p);
    }
    let mut series = Vec::new();
    let mut y_max = 0u64;
    for (i, name) in names.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (what, leaked) in [("peak", false), ("leaked", true)] {
            let points: Vec<(f64, f64)> = runs
                .iter()
                .enumerate()
                .filter_map(|(k, r)| {
                    let (_, peak, lost) = r.components.iter().find(|(n, _, _)| n == name)?;
                    let v = if leaked { *lost } else { *peak }?;
                    y_max = y_max.max(v);
                    Some(((k + 1) as f64, v as f64))
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            series.push(Series {
                id: format!("{name}-{what}"),
                label: format!("{name}: {what}"),
                color,
                dash: if leaked { "6 4" } else { "" },
                width: if leaked { 1.5 } else { 2.0 },
                points,
                band: Vec::new(),
            });
        }
    }
    let short = |c: &Option<String>| {
        c.as_deref()
            .map_or_else(|| "no commit".to_string(), |c| c.chars().take(10).collect())
    };
    // The executable's file name: the title must fit the chart.
    let last = runs
        .last()
        .map_or("", |r| r.program.rsplit('/').next().unwrap_or(&r.program));
    let chart = Chart {
        width: 1000.0,
        plot_height: 420.0,
        left: 84.0,
        title: format!(
            "memlens history of {} ({})",
            if last.is_empty() { "?" } else { last },
            dir.display()
        ),
        subtitle: Some(format!(
            "{} from {} to {}; peak (solid) and leaked (dashed) bytes per component",
            memlens_common::units::plural(runs.len() as u64, "run", "runs"),
            short(&runs[0].commit),
            short(&runs[runs.len() - 1].commit)
        )),
        time: TimeAxis::Runs(runs.len()),
        time_label: "run (in the order appended)".into(),
        y_max: y_max as f64,
        shade: None,
        series,
        fit: None,
        levels: Vec::new(),
        marker: None,
        legend: Legend::Below,
    };
    Ok(chart.svg())
}
