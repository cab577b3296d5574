//! What `memlens watch` shows while it runs, on stderr: in place on a terminal memlens
//! owns (`--pid`: values, a sparkline, the trend; ANSI cursor moves), otherwise one whole
//! line every 10 seconds, so that a program sharing the terminal is never overwritten.

use super::{trend_of, WatchArgs};
use memlens_common::units::{self, human_bytes, human_duration, human_rate};
use memlens_watch::history::{History, Metric};
use memlens_watch::limit::Limit;
use memlens_watch::proc::{MemSample, TreeSample};
use memlens_watch::trend::{self, Trend, Verdict};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IsTerminal;

enum LiveMode {
    Off,
    /// Redrawn in place on stderr (a terminal memlens does not share with a program).
    Terminal {
        drawn: usize,
    },
    /// A whole line every 10 seconds.
    Lines {
        next: f64,
        sparkline: bool,
    },
}

pub(super) struct Live {
    mode: LiveMode,
    recent: VecDeque<f64>,
    /// Last trend computed, and when: recomputed at most every second.
    trend: Option<(f64, Trend)>,
    limit: Option<Limit>,
}

const LINE_PERIOD: f64 = 10.0;
const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

impl Live {
    pub(super) fn new(args: &WatchArgs, started: bool, limit: Option<Limit>) -> Live {
        let tty = std::io::stderr().is_terminal();
        let mode = if args.quiet {
            LiveMode::Off
        } else if tty && !started {
            LiveMode::Terminal { drawn: 0 }
        } else {
            LiveMode::Lines {
                next: 0.0,
                sparkline: tty,
            }
        };
        Live {
            mode,
            recent: VecDeque::new(),
            trend: None,
            limit,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        t: f64,
        s: &TreeSample,
        history: &History,
        metric: Metric,
        args: &WatchArgs,
        pid: i32,
        label: &str,
    ) {
        let v = metric.get(&s.mem).unwrap_or(0) as f64;
        if self.recent.len() >= 240 {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
        let due = match &self.mode {
            LiveMode::Off => false,
            LiveMode::Terminal { .. } => true,
            LiveMode::Lines { next, .. } => t >= *next,
        };
        if !due {
            return;
        }
        if self.trend.as_ref().is_none_or(|(at, _)| t - at >= 1.0) {
            let tr = trend_of(history, metric, args.warmup.map(|d| d.as_secs_f64()));
            self.trend = Some((t, tr));
        }
        let tr = &self.trend.as_ref().expect("computed above").1;
        let verdict = live_verdict(tr, metric);
        let eta = self.eta(tr, metric);
        let values = values_of(&s.mem, &Metric::ALL, " ");
        let procs = if args.include_children {
            format!(" ({} processes)", s.processes)
        } else {
            String::new()
        };
        match &mut self.mode {
            LiveMode::Off => {}
            LiveMode::Lines { next, sparkline } => {
                let spark = if *sparkline {
                    format!(" {}", sparkline_of(&self.recent, 30))
                } else {
                    String::new()
                };
                let line = format!(
                    "==memlens== {} {values}{procs}{spark} | {verdict}\n",
                    units::clock(t)
                );
                // One write, so the line is never split by the program's output.
                crate::write_stderr(&line);
                while *next <= t {
                    *next += LINE_PERIOD;
                }
            }
            LiveMode::Terminal { drawn } => {
                let width = term_width().saturating_sub(1).max(20);
                let (lo, hi) = self
                    .recent
                    .iter()
                    .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
                let spark_n = width.saturating_sub(40).clamp(10, 120);
                let lines = [
                    format!(
                        "memlens watch: pid {pid} {label} | {} | {} every {}",
                        units::clock(t),
                        units::plural(history.samples(), "sample", "samples"),
                        human_duration(args.interval.as_secs_f64())
                    ),
                    format!(
                        "  {}{procs}",
                        values_of(&s.mem, &[Metric::Rss, Metric::Pss, Metric::Uss], "   ")
                    ),
                    format!(
                        "  {}",
                        values_of(&s.mem, &[Metric::Swap, Metric::Anon, Metric::File], "   ")
                    ),
                    format!(
                        "  {} {} {} .. {}",
                        metric.name(),
                        sparkline_of(&self.recent, spark_n),
                        human_bytes(lo as u64),
                        human_bytes(hi as u64)
                    ),
                    format!("  {verdict}{eta}"),
                ];
                let mut out = String::new();
                if *drawn > 0 {
                    let _ = write!(out, "\x1b[{}A", *drawn);
                }
                for l in &lines {
                    let l: String = l.chars().take(width).collect();
                    let _ = writeln!(out, "\r\x1b[2K{l}");
                }
                *drawn = lines.len();
                crate::write_stderr(&out);
            }
        }
    }

    /// ` | limit 23.54 GiB (MemTotal) in 2h 40m` while growing.
    fn eta(&self, tr: &Trend, metric: Metric) -> String {
        let (Some(l), Some(&now)) = (&self.limit, self.recent.back()) else {
            return String::new();
        };
        if tr.verdict != Verdict::Growing {
            return String::new();
        }
        match trend::time_to_limit(now, l.bytes as f64, tr.slope) {
            Some(e) => format!(
                " | {} reaches {} ({}) in {}",
                metric.name(),
                human_bytes(l.bytes),
                l.source,
                human_duration(e)
            ),
            None => String::new(),
        }
    }

    /// Take the live view off the terminal before the report.
    pub(super) fn finish(&mut self) {
        if let LiveMode::Terminal { drawn } = self.mode {
            if drawn > 0 {
                crate::write_stderr(&format!("\x1b[{drawn}A\r\x1b[J"));
            }
        }
    }
}

fn live_verdict(tr: &Trend, metric: Metric) -> String {
    match tr.verdict {
        Verdict::Growing => format!("{} {}: growing", metric.name(), human_rate(tr.slope)),
        Verdict::Stable => format!("{} {}: stable", metric.name(), human_rate(tr.slope)),
        Verdict::Inconclusive if tr.points == 0 => "warming up".to_string(),
        Verdict::Inconclusive => {
            format!("{} {}: inconclusive", metric.name(), human_rate(tr.slope))
        }
    }
}

/// `rss 1.25 MiB pss ...` for the metrics given that are known.
fn values_of(m: &MemSample, which: &[Metric], sep: &str) -> String {
    which
        .iter()
        .filter_map(|k| k.get(m).map(|v| format!("{} {}", k.name(), human_bytes(v))))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The last `n` values as a sparkline, scaled between their minimum and maximum (also
/// `memlens top`'s).
pub(crate) fn sparkline_of(v: &VecDeque<f64>, n: usize) -> String {
    let tail: Vec<f64> = v.iter().skip(v.len().saturating_sub(n)).copied().collect();
    let lo = tail.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = tail.iter().copied().fold(0.0f64, f64::max);
    tail.iter()
        .map(|&x| {
            if hi <= lo {
                SPARK[0]
            } else {
                SPARK[(((x - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

pub(crate) fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; fd 2 may not be a terminal (then it fails).
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    80
}
