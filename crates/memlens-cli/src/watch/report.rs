//! `memlens watch`'s final report: the text on stderr (`==memlens==` lines) and the JSON
//! (`--json`, keys in docs/WATCH_JSON.md), both from one [`Summary`], and what the chart
//! shows besides the samples.

use super::{End, Summary};
use crate::supervise::Exit;
use memlens_common::signal::signal_label;
use memlens_common::units::{self, human_bytes, human_duration, human_rate};
use memlens_watch::history::{Metric, Point};
use memlens_watch::limit::Limit;
use memlens_watch::plot::PlotInfo;
use memlens_watch::trend::{self, Verdict};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Now / min / peak of a metric over the watch, and when the peak was.
fn extremes(points: &[Point], m: Metric) -> Option<(f64, f64, f64)> {
    let known: Vec<&Point> = points.iter().filter(|p| p.m[m.index()].known()).collect();
    if known.is_empty() {
        return None;
    }
    let min = known.iter().map(|p| p.min(m)).fold(f64::INFINITY, f64::min);
    // The first point at the maximum, if several reach it.
    let peak = known
        .iter()
        .reduce(|a, b| if b.max(m) > a.max(m) { b } else { a })?;
    Some((min, peak.max(m), peak.t()))
}

fn ended_text(s: &Summary) -> String {
    let pid = s.target.pid;
    let who = if s.target.child.is_some() {
        "the program".to_string()
    } else {
        format!("process {pid}")
    };
    let stopped = s
        .stopped_child
        .map(|sig| format!("; the program was stopped with {}", signal_label(sig)))
        .unwrap_or_default();
    match &s.end {
        End::Exited => match s.status {
            Some(st) => format!("{who} {}", st.describe()),
            None => format!("{who} exited"),
        },
        End::Duration => format!(
            "--duration {} reached{stopped}",
            human_duration(s.args.duration.map_or(0.0, |d| d.as_secs_f64()))
        ),
        End::Interrupted(sig) => format!("stopped by {}", signal_label(*sig)),
        End::MaxRss => format!("--max-rss exceeded{stopped}"),
        End::Unreadable(m) => format!("{m}{stopped}"),
    }
}

fn projection(s: &Summary) -> Option<(Limit, f64, Option<f64>)> {
    s.last?;
    let l = s.limit.clone()?;
    // The current level: the highest sample of the last floor window (peaks hit a limit
    // before the floor does).
    let points = s.history.points();
    let m = s.metric;
    let since = s.elapsed - s.trend.window.max(0.0);
    let current = points
        .iter()
        .filter(|p| p.t1 >= since && p.m[m.index()].known())
        .map(|p| p.max(m))
        .reduce(f64::max)
        .unwrap_or_else(|| s.last.and_then(|l| m.get(&l.mem)).unwrap_or(0) as f64);
    let eta = if s.trend.verdict == Verdict::Growing {
        trend::time_to_limit(current, l.bytes as f64, s.trend.slope)
    } else {
        None
    };
    Some((l, current, eta))
}

pub(super) fn budget_lines(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = s.args.max_rss {
        out.push(match s.rss_budget.exceeded_at {
            Some((t, v)) => format!(
                "--max-rss {}: EXCEEDED, rss {} at {}",
                human_bytes(max),
                human_bytes(v),
                human_duration(t)
            ),
            None => format!("--max-rss {}: ok", human_bytes(max)),
        });
    }
    if let Some(r) = s.args.max_growth_rate {
        out.push(if s.growth_exceeded {
            format!(
                "--max-growth-rate {}: EXCEEDED, {} is growing at {}",
                budget_rate(r),
                s.metric.name(),
                human_rate(s.trend.slope)
            )
        } else {
            format!("--max-growth-rate {}: ok", budget_rate(r))
        });
    }
    out
}

/// The text report; `files` names the files written.
pub(super) fn text(s: &Summary, files: &[String]) -> String {
    let mut o = String::new();
    let p = "==memlens==";
    let tr = &s.trend;
    let points = s.history.points();
    let children = if s.args.include_children {
        " and its children"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "{p} watched pid {} ({}){children} for {}: {} every {}, from /proc/PID/{}",
        s.target.pid,
        s.target.label,
        human_duration(s.elapsed),
        units::plural(s.history.samples(), "sample", "samples"),
        human_duration(s.args.interval.as_secs_f64()),
        s.source.name()
    );
    let _ = writeln!(o, "{p} ended: {}", ended_text(s));
    if s.first.is_none() {
        let _ = writeln!(
            o,
            "{p} no sample was taken: the program exited before the first one"
        );
    }
    if let Some(n) = &s.source_note {
        let _ = writeln!(o, "{p} note: {n}");
    }
    if s.first.is_some() {
        let _ = writeln!(o, "{p}       {:>12} {:>12} {:>12}", "now", "min", "peak");
    }
    for m in Metric::ALL {
        let (Some(now), Some((min, peak, _))) =
            (s.last.and_then(|l| m.get(&l.mem)), extremes(&points, m))
        else {
            continue;
        };
        let _ = writeln!(
            o,
            "{p} {:<5} {:>12} {:>12} {:>12}",
            m.name(),
            human_bytes(now),
            human_bytes(min as u64),
            human_bytes(peak as u64)
        );
    }
    if s.args.include_children {
        let most = points.iter().map(|q| q.processes).max().unwrap_or(1);
        let _ = writeln!(
            o,
            "{p} processes: {} now, {} at most",
            s.last.map_or(0, |l| l.processes),
            most
        );
    }
    let ci = format!(
        "95% CI {} .. {}",
        human_rate(tr.slope_low),
        human_rate(tr.slope_high)
    );
    let warm = format!("after a {} warm-up", human_duration(tr.warmup));
    let m = s.metric.name();
    let verdict = match tr.verdict {
        Verdict::Growing => format!(
            "GROWING: the {m} floor rises {} ({ci}), {warm}: {} over {}",
            rate_text(tr.slope),
            units::human_bytes_f(tr.growth()),
            human_duration(tr.span)
        ),
        Verdict::Stable => format!(
            "stable: {} ({} over {}, {ci}), {warm}",
            tr.reason,
            human_rate(tr.slope),
            human_duration(tr.span)
        ),
        Verdict::Inconclusive if tr.points == 0 => format!(
            "inconclusive: {}; watch longer (or lower --warmup / --interval)",
            tr.reason
        ),
        Verdict::Inconclusive => format!(
            "inconclusive: {} ({} over {}, {ci}; growth below {} is not counted), {warm}",
            tr.reason,
            human_rate(tr.slope),
            human_duration(tr.span),
            human_bytes(tr.threshold as u64)
        ),
    };
    let since = if s.restarts.is_empty() {
        ""
    } else {
        " (since the last restart)"
    };
    let _ = writeln!(o, "{p} verdict{since}: {verdict}");
    for (i, (r, _, text)) in s.restarts.iter().enumerate() {
        let _ = writeln!(
            o,
            "{p} restart {} at {} (pid {} stopped with {}, pid {} started): {text}",
            i + 1,
            units::clock(r.at),
            r.before,
            signal_label(r.stopped_with),
            r.after
        );
    }
    if let Some((l, current, eta)) = projection(s) {
        let line = match eta {
            Some(e) if e <= 0.0 => format!(
                "{m} is at the limit: {} ({}) reached",
                human_bytes(l.bytes),
                l.source
            ),
            Some(e) => format!(
                "at this rate {m} reaches {} ({}) in {}",
                human_bytes(l.bytes),
                l.source,
                human_duration(e)
            ),
            None => format!(
                "limit {} ({}), {m} now up to {}: no projection, {m} is not {}",
                human_bytes(l.bytes),
                l.source,
                human_bytes(current as u64),
                if s.trend.verdict == Verdict::Stable {
                    "growing"
                } else {
                    "known to grow"
                }
            ),
        };
        let _ = writeln!(o, "{p} {line}");
    }
    for b in budget_lines(s) {
        let _ = writeln!(o, "{p} {b}");
    }
    let _ = writeln!(
        o,
        "{p} sampler: {:.2} s CPU{}, peak RSS {}",
        s.self_cpu,
        share_of_a_core(s.self_cpu, s.elapsed),
        human_bytes(s.self_peak)
    );
    if !files.is_empty() {
        let _ = writeln!(o, "{p} wrote {}", files.join(", "));
    }
    o
}

/// A budget rate as given: `10.00 MiB/h`.
fn budget_rate(bytes_per_sec: f64) -> String {
    format!("{}/h", units::human_bytes_f(bytes_per_sec * 3600.0))
}

/// A rate per hour, and per second too when it is fast enough to read that way.
fn rate_text(bytes_per_sec: f64) -> String {
    let h = human_rate(bytes_per_sec);
    if bytes_per_sec.abs() >= 1024.0 * 1024.0 / 60.0 {
        format!("{h} = {}", units::human_rate_per_sec(bytes_per_sec))
    } else {
        h
    }
}

pub(super) fn plot_info(s: &Summary) -> PlotInfo {
    let mut lines = Vec::new();
    if let Some(b) = s.args.max_rss {
        lines.push((b, format!("--max-rss {}", human_bytes(b))));
    }
    if let Some(l) = &s.limit {
        lines.push((
            l.bytes,
            format!("limit {} ({})", human_bytes(l.bytes), l.source),
        ));
    }
    PlotInfo {
        title: format!("memlens watch: pid {} {}", s.target.pid, s.target.label),
        trend: Some(s.trend.clone()),
        trend_metric: Some(s.metric),
        lines,
    }
}

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// The JSON report.
pub(super) fn json(s: &Summary) -> Value {
    let points = s.history.points();
    let tr = &s.trend;
    let memory: serde_json::Map<String, Value> = Metric::ALL
        .iter()
        .map(|&m| {
            let v = match (s.last.and_then(|l| m.get(&l.mem)), extremes(&points, m)) {
                (Some(now), Some((min, peak, at))) => json!({
                    "now": now, "min": min as u64, "peak": peak as u64, "peak_at_s": at,
                    "first": s.first.and_then(|f| m.get(&f.mem)),
                }),
                _ => Value::Null,
            };
            (m.name().to_string(), v)
        })
        .collect();
    let status = s.status.map(|st| match st {
        Exit::Code(c) => json!({ "code": c }),
        Exit::Signal(sig) => json!({ "signal": sig }),
    });
    let projection = projection(s);
    let samples: Vec<Value> = points
        .iter()
        .map(|p| {
            let f = |m: Metric| {
                if p.m[m.index()].known() {
                    json!(p.mean(m).round() as u64)
                } else {
                    Value::Null
                }
            };
            json!({
                "t_s": p.t(), "n": p.n,
                "rss": f(Metric::Rss), "rss_min": p.min(Metric::Rss) as u64,
                "rss_max": p.max(Metric::Rss) as u64,
                "pss": f(Metric::Pss), "uss": f(Metric::Uss), "swap": f(Metric::Swap),
                "anon": f(Metric::Anon), "file": f(Metric::File), "processes": p.processes,
            })
        })
        .collect();
    json!({
        "target": {
            "pid": s.target.pid,
            "command": s.target.command,
            "label": s.target.label,
            "started_by_memlens": s.target.child.is_some(),
            "include_children": s.args.include_children,
        },
        "watch": {
            "interval_s": s.args.interval.as_secs_f64(),
            "elapsed_s": s.elapsed,
            "samples": s.history.samples(),
            "source": s.source.name(),
            "ended": s.end.key(),
            "exit_status": status,
            "stopped_with": s.stopped_child.map(signal_label),
        },
        "memory": memory,
        "trend": {
            "metric": s.metric.name(),
            "verdict": tr.verdict.name(),
            "reason": tr.reason,
            "bytes_per_second": num(tr.slope),
            "bytes_per_hour": num(tr.slope * 3600.0),
            "ci95_bytes_per_hour": [num(tr.slope_low * 3600.0), num(tr.slope_high * 3600.0)],
            "warmup_s": tr.warmup,
            "span_s": tr.span,
            "floor_window_s": tr.window,
            "threshold_bytes": tr.threshold,
            "samples": tr.samples,
            "points": tr.points,
        },
        "restarts": s.restarts.iter().map(|(r, v, text)| json!({
            "at_s": r.at, "before_pid": r.before, "after_pid": r.after,
            "stopped_with": signal_label(r.stopped_with), "verdict": v.name(), "text": text,
        })).collect::<Vec<_>>(),
        "limit": projection.map(|(l, current, eta)| json!({
            "bytes": l.bytes, "source": l.source, "current_bytes": current as u64,
            "seconds_to_limit": eta,
        })),
        "budgets": {
            "max_rss": s.args.max_rss.map(|b| json!({
                "bytes": b,
                "exceeded": s.rss_budget.exceeded_at.is_some(),
                "exceeded_at_s": s.rss_budget.exceeded_at.map(|x| x.0),
                "rss_bytes": s.rss_budget.exceeded_at.map(|x| x.1),
            })),
            "max_growth_rate": s.args.max_growth_rate.map(|r| json!({
                "bytes_per_hour": r * 3600.0,
                "exceeded": s.growth_exceeded,
            })),
        },
        "sampler": { "cpu_s": s.self_cpu, "peak_rss_bytes": s.self_peak },
        "exit_code": s.exit_code,
        "samples": samples,
    })
}

/// ` (N% of one core)` for `cpu` seconds over `elapsed`, or nothing when the watch was too
/// short for the share to mean anything (memlens's own start-up counts in `cpu`).
pub(crate) fn share_of_a_core(cpu: f64, elapsed: f64) -> String {
    if elapsed < 1.0 {
        return String::new();
    }
    format!(" ({:.2}% of one core)", 100.0 * cpu / elapsed)
}

#[cfg(test)]
mod share_tests {
    use super::share_of_a_core;

    /// A watch of less than a second gives no share of a core (memlens's start-up would
    /// make it hundreds of percent).
    #[test]
    fn a_short_watch_gives_no_share() {
        assert_eq!(share_of_a_core(0.05, 0.01), "");
        assert_eq!(share_of_a_core(0.5, 10.0), " (5.00% of one core)");
    }
}
