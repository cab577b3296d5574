//! `memlens top`'s outputs: the text report on stderr, the JSON report (`--json`, keys
//! in docs/WATCH_JSON.md), the CSV rows (`--csv`, every process at every sample) and the
//! chart of the top growers (`--plot`).

use super::{End, Judgement, State, TopArgs};
use crate::sample_files::{csv_field, SampleFiles};
use crate::watch::short_label;
use memlens_common::signal::signal_label;
use memlens_common::units::{self, human_bytes, human_duration, human_rate};
use memlens_watch::history::{Metric, Point};
use memlens_watch::kernel::{Finding, KernelSample};
use memlens_watch::next_step;
use memlens_watch::plot;
use memlens_watch::processes::{ProcessTable, Tracked};
use memlens_watch::trend::{Trend, Verdict};
use serde_json::{json, Value};
use std::fmt::Write as _;

pub(super) struct Summary<'a> {
    pub state: &'a State<'a>,
    pub judgement: &'a Judgement,
    pub end: End,
    pub cpu: f64,
    pub peak: u64,
}

const P: &str = "==memlens==";

/// Min and peak RSS of a process over its watch.
fn extremes(points: &[Point]) -> (u64, u64) {
    let m = Metric::Rss;
    let min = points
        .iter()
        .map(|p| p.min(m))
        .fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.max(m)).fold(0.0, f64::max);
    (if min.is_finite() { min as u64 } else { 0 }, max as u64)
}

/// `growing +41.00 MiB/h`, `stable`, `new` (too few samples).
pub(super) fn verdict_word(tr: &Trend) -> &'static str {
    match tr.verdict {
        Verdict::Inconclusive if tr.points == 0 => "new",
        v => v.name(),
    }
}

fn proc_line(p: &Tracked) -> String {
    format!("pid {} ({})", p.key.pid, short_label(&p.label()))
}

/// The text report; `files` names the files written.
pub(super) fn text(s: &Summary, files: &[String]) -> String {
    let st = s.state;
    let j = s.judgement;
    let t = st.table;
    let mut o = String::new();
    let scope = match (st.group, &st.args.pattern) {
        (Some((g, _)), _) => format!(" of cgroup {}", g.display()),
        (None, Some(p)) => format!(" matching '{p}'"),
        (None, None) => String::new(),
    };
    let _ = writeln!(
        o,
        "{P} top: watched {}{scope} for {}: {} every {}, from /proc/PID/statm",
        units::plural(t.procs.len() as u64 + t.forgotten, "process", "processes"),
        human_duration(st.elapsed),
        units::plural(t.samples, "sample", "samples"),
        human_duration(st.args.interval.as_secs_f64())
    );
    let ended = match s.end {
        End::Duration => format!(
            "--duration {} reached",
            human_duration(st.args.duration.map_or(0.0, |d| d.as_secs_f64()))
        ),
        End::Interrupted(sig) => format!("stopped by {}", signal_label(sig)),
    };
    let _ = writeln!(o, "{P} ended: {ended}; {} alive now", t.live_count());
    let growing: Vec<_> = j
        .ranked
        .iter()
        .filter(|r| r.trend.verdict == Verdict::Growing)
        .collect();
    let _ = writeln!(
        o,
        "{P} {} growing; ranked by the growth of the rss floor:",
        units::plural(growing.len() as u64, "process", "processes")
    );
    let _ = writeln!(
        o,
        "{P} {:>7}  {:<12} {:>15} {:>12} {:>12}  COMMAND",
        "PID", "VERDICT", "RATE", "RSS", "TO LIMIT"
    );
    for r in j.ranked.iter().take(st.args.top) {
        let p = &t.procs[r.idx];
        let rate = if r.trend.points > 0 {
            human_rate(r.trend.slope)
        } else {
            "-".into()
        };
        let eta = r
            .eta
            .as_ref()
            .map_or("-".to_string(), |(e, _)| human_duration(*e));
        let state = match p.exited_at {
            Some(e) => format!(" [exited at {}]", units::clock(e)),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "{P} {:>7}  {:<12} {:>15} {:>12} {:>12}  {}{state}",
            p.key.pid,
            verdict_word(&r.trend),
            rate,
            human_bytes(p.last.rss),
            eta,
            short_label(&p.label()),
        );
    }
    if j.ranked.len() > st.args.top {
        let _ = writeln!(
            o,
            "{P} ... and {} more (--top N, or --json for all)",
            j.ranked.len() - st.args.top
        );
    }
    for r in &growing {
        if let Some((e, l)) = &r.eta {
            let p = &t.procs[r.idx];
            let _ = writeln!(
                o,
                "{P} {}: rss {} grows {} (95% CI {} .. {}); at this rate it reaches {} ({}) in {}",
                proc_line(p),
                human_bytes(p.last.rss),
                human_rate(r.trend.slope),
                human_rate(r.trend.slope_low),
                human_rate(r.trend.slope_high),
                human_bytes(l.bytes),
                l.source,
                human_duration(*e)
            );
        }
    }
    if let (Some((g, h)), Some(tr)) = (st.group, &j.group) {
        let last = h.points().last().map_or(0, |p| p.mean(Metric::Rss) as u64);
        let _ = writeln!(
            o,
            "{P} cgroup {} as one: rss {} now, {} {}",
            g.display(),
            human_bytes(last),
            verdict_word(tr),
            if tr.points > 0 {
                human_rate(tr.slope)
            } else {
                String::new()
            }
        );
    }
    // Restarts of processes too short-lived to judge (a shell's helpers) are in the JSON.
    for r in j
        .restarts
        .iter()
        .filter(|r| r.before_trend.points > 0 || r.after_trend.points > 0)
    {
        let (a, b) = (&t.procs[r.before], &t.procs[r.after]);
        let _ = writeln!(
            o,
            "{P} restart: pid {} -> pid {} ({}) at {}: {}",
            a.key.pid,
            b.key.pid,
            short_label(&b.label()),
            units::clock(b.first_t),
            r.text
        );
    }
    kernel_text(&mut o, &j.kernel);
    for r in growing.iter().take(st.args.top) {
        let p = &t.procs[r.idx];
        if p.alive() {
            let _ = writeln!(
                o,
                "{P} next step for pid {}: {}",
                p.key.pid,
                st.next_step(r.idx)
            );
        }
    }
    let _ = writeln!(
        o,
        "{P} sampler: {:.2} s CPU{}, peak RSS {}, {} followed at the end",
        s.cpu,
        crate::watch::share_of_a_core(s.cpu, st.elapsed),
        human_bytes(s.peak),
        units::plural(t.live_count() as u64, "process", "processes"),
    );
    if !files.is_empty() {
        let _ = writeln!(o, "{P} wrote {}", files.join(", "));
    }
    o
}

/// What the kernel holds: a sentence for each figure that grows, the rest in one line.
fn kernel_text(o: &mut String, kernel: &[Finding]) {
    for f in kernel {
        if let Some(text) = &f.text {
            let _ = writeln!(o, "{P} kernel: {text}");
        }
    }
    let flat: Vec<String> = kernel
        .iter()
        .filter(|f| f.text.is_none())
        .map(|f| format!("{} {}", f.component.label, human_bytes(f.now)))
        .collect();
    if !flat.is_empty() {
        let _ = writeln!(o, "{P} kernel: not growing: {}", flat.join(", "));
    }
}

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

fn trend_json(tr: &Trend) -> Value {
    json!({
        "verdict": verdict_word(tr),
        "reason": tr.reason,
        "bytes_per_hour": num(tr.slope * 3600.0),
        "ci95_bytes_per_hour": [num(tr.slope_low * 3600.0), num(tr.slope_high * 3600.0)],
        "span_s": tr.span,
        "points": tr.points,
    })
}

/// The JSON report.
pub(super) fn json(s: &Summary) -> Value {
    let st = s.state;
    let j = s.judgement;
    let t = st.table;
    let pid_of = |i: Option<usize>| i.map(|i| t.procs[i].key.pid);
    let processes: Vec<Value> = j
        .ranked
        .iter()
        .enumerate()
        .map(|(rank, r)| {
            let p = &t.procs[r.idx];
            let (min, peak) = extremes(&p.history.points());
            let rt = next_step::detect(p.exe.as_deref(), &p.cmdline);
            json!({
                "rank": rank + 1,
                "pid": p.key.pid,
                "start_ticks": p.key.start,
                "comm": p.comm,
                "command": p.cmdline,
                "runtime": rt.name(),
                "first_s": p.first_t,
                "last_s": p.last_t,
                "exited_s": p.exited_at,
                "samples": p.history.samples(),
                "rss": { "first": p.first.rss, "now": p.last.rss, "min": min, "peak": peak },
                "trend": trend_json(&r.trend),
                "seconds_to_limit": r.eta.as_ref().map(|e| e.0),
                "limit": r.eta.as_ref().map(|e| json!({ "bytes": e.1.bytes, "source": e.1.source })),
                "restart_of": pid_of(p.restart_of),
                "restarted_by": pid_of(p.restarted_by),
                "next_step": (r.trend.verdict == Verdict::Growing && p.alive())
                    .then(|| st.next_step(r.idx)),
            })
        })
        .collect();
    let restarts: Vec<Value> = j
        .restarts
        .iter()
        .map(|r| {
            let (a, b) = (&t.procs[r.before], &t.procs[r.after]);
            json!({
                "before_pid": a.key.pid,
                "after_pid": b.key.pid,
                "command": b.cmdline,
                "at_s": b.first_t,
                "verdict": r.verdict.name(),
                "text": r.text,
                "before": trend_json(&r.before_trend),
                "after": trend_json(&r.after_trend),
            })
        })
        .collect();
    let kernel: Vec<Value> = j
        .kernel
        .iter()
        .map(|f| {
            json!({
                "key": f.component.key,
                "label": f.component.label,
                "now": f.now,
                "trend": trend_json(&f.trend),
                "text": f.text,
            })
        })
        .collect();
    let ended = match s.end {
        End::Duration => "duration",
        End::Interrupted(_) => "interrupted",
    };
    json!({
        "watch": {
            "interval_s": st.args.interval.as_secs_f64(),
            "elapsed_s": st.elapsed,
            "samples": t.samples,
            "source": "statm",
            "ended": ended,
            "cgroup": st.group.map(|(g, _)| g.display().to_string()),
            "match": st.args.pattern,
            "processes_seen": t.procs.len() as u64 + t.forgotten,
            "processes_forgotten": t.forgotten,
            "alive": t.live_count(),
        },
        "processes": processes,
        "restarts": restarts,
        "cgroup_total": j.group.as_ref().map(trend_json),
        "kernel": kernel,
        "slab_top": j.slab_top.as_ref().map(|v| v.iter().map(|(n, b)| json!({"name": n, "bytes": b})).collect::<Vec<_>>()),
        "sampler": { "cpu_s": s.cpu, "peak_rss_bytes": s.peak },
        "exit_code": 0,
    })
}

/// `--csv`, `--json` and `--plot`, created before the watch starts.
pub(super) struct Outputs {
    files: SampleFiles,
}

impl Outputs {
    pub(super) fn open(args: &TopArgs) -> Result<Outputs, String> {
        Ok(Outputs {
            files: SampleFiles::open(
                args.csv.as_deref(),
                args.json.as_deref(),
                args.plot.as_deref(),
            )?,
        })
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.files.names()
    }

    pub(super) fn csv_header(&mut self) {
        self.files
            .csv_header("t_s,pid,start_ticks,rss,anon,file,name");
    }

    /// One row per process read in the latest sample, and one per kernel figure (pid 0,
    /// name `kernel:KEY`, the bytes in `rss`).
    pub(super) fn csv_rows(&mut self, t: f64, table: &ProcessTable, k: &KernelSample) {
        if !self.files.wants_csv() {
            return;
        }
        let mut rows = String::new();
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        for p in table
            .procs
            .iter()
            .filter(|p| p.alive() && p.last_sample == table.samples)
        {
            let _ = writeln!(
                rows,
                "{:.3},{},{},{},{},{},{}",
                p.last_t,
                p.key.pid,
                p.key.start,
                p.last.rss,
                opt(p.last.anon),
                opt(p.last.file),
                csv_field(&p.label())
            );
        }
        for (c, v) in k {
            let _ = writeln!(rows, "{t:.3},0,0,{v},,,kernel:{}", c.key);
        }
        self.files.csv_write(&rows);
    }

    pub(super) fn finish_csv(&mut self) {
        self.files.finish_csv();
    }

    /// The chart of the top growers (up to 8; the fastest-rising processes if none grows).
    pub(super) fn write_plot(&mut self, s: &Summary) -> Result<(), String> {
        if !self.files.wants_plot() {
            return Ok(());
        }
        let t = s.state.table;
        let growing = s
            .judgement
            .ranked
            .iter()
            .filter(|r| r.trend.verdict == Verdict::Growing)
            .count();
        let lines: Vec<(String, Vec<Point>)> = s
            .judgement
            .ranked
            .iter()
            .take(growing.clamp(1, 8).min(s.state.args.top.max(1)))
            .map(|r| {
                let q = &t.procs[r.idx];
                (
                    format!(
                        "pid {} {} ({} {})",
                        q.key.pid,
                        short_label(&q.label()),
                        verdict_word(&r.trend),
                        human_rate(r.trend.slope)
                    ),
                    q.history.points(),
                )
            })
            .collect();
        let svg = plot::growers_svg(
            "memlens top: the top growers (rss)",
            Some(format!(
                "{} growing of {} watched",
                growing,
                units::plural(t.procs.len() as u64 + t.forgotten, "process", "processes")
            )),
            &lines,
        );
        self.files.write_plot(svg)
    }

    pub(super) fn write_json(&mut self, s: &Summary) -> Result<(), String> {
        self.files.write_json(&json(s))
    }
}
