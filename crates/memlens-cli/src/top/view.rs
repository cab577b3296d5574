//! What `memlens top` shows while it runs, on stderr: on a terminal, a table redrawn in
//! place (the growing processes first, with rate, time to the limit and a sparkline);
//! otherwise one plain line every 10 seconds naming the top growers.

use super::report::verdict_word;
use super::{State, TopArgs};
use crate::watch::live_view::{sparkline_of, term_width};
use crate::watch::short_label;
use memlens_common::units::{self, human_bytes, human_duration, human_rate};
use memlens_watch::history::Metric;
use memlens_watch::trend::Verdict;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IsTerminal;

enum Mode {
    Off,
    Terminal { drawn: usize, next: f64 },
    Lines { next: f64 },
}

pub(super) struct Live {
    mode: Mode,
}

/// Plain lines are this far apart; the terminal view is redrawn at most this often
/// (judging every process is the costly part).
const LINE_PERIOD: f64 = 10.0;
const REDRAW_PERIOD: f64 = 1.0;

impl Live {
    pub(super) fn new(args: &TopArgs) -> Live {
        let mode = if args.quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal {
                drawn: 0,
                next: 0.0,
            }
        } else {
            Mode::Lines { next: 0.0 }
        };
        Live { mode }
    }

    pub(super) fn update(&mut self, t: f64, st: &State) {
        let due = match &self.mode {
            Mode::Off => false,
            Mode::Terminal { next, .. } | Mode::Lines { next } => t >= *next,
        };
        if !due {
            return;
        }
        let j = st.judge(matches!(self.mode, Mode::Terminal { .. }));
        let table = st.table;
        let growing = j
            .ranked
            .iter()
            .filter(|r| r.trend.verdict == Verdict::Growing)
            .count();
        match &mut self.mode {
            Mode::Off => {}
            Mode::Lines { next } => {
                let names: Vec<String> = j
                    .ranked
                    .iter()
                    .filter(|r| r.trend.verdict == Verdict::Growing)
                    .take(3)
                    .map(|r| {
                        let p = &table.procs[r.idx];
                        format!(
                            "pid {} {} {}",
                            p.key.pid,
                            short_label(&p.comm),
                            human_rate(r.trend.slope)
                        )
                    })
                    .collect();
                let tail = if names.is_empty() {
                    String::new()
                } else {
                    format!(": {}", names.join(", "))
                };
                crate::write_stderr(&format!(
                    "==memlens== {} {} followed, {growing} growing{tail}\n",
                    units::clock(t),
                    units::plural(table.live_count() as u64, "process", "processes"),
                ));
                while *next <= t {
                    *next += LINE_PERIOD;
                }
            }
            Mode::Terminal { drawn, next } => {
                let width = term_width().saturating_sub(1).max(40);
                let mut lines = vec![
                    format!(
                        "memlens top | {} | {} followed, {growing} growing | every {} | q: Ctrl-C",
                        units::clock(t),
                        units::plural(table.live_count() as u64, "process", "processes"),
                        human_duration(st.args.interval.as_secs_f64())
                    ),
                    format!(
                        "{:>7}  {:<12} {:>15} {:>11} {:>10}  {:<20} COMMAND",
                        "PID", "VERDICT", "RATE", "RSS", "TO LIMIT", "RSS OVER TIME"
                    ),
                ];
                for r in j
                    .ranked
                    .iter()
                    .filter(|r| table.procs[r.idx].alive())
                    .take(st.args.top)
                {
                    let p = &table.procs[r.idx];
                    let recent: VecDeque<f64> = p
                        .history
                        .points()
                        .iter()
                        .map(|q| q.mean(Metric::Rss))
                        .collect();
                    lines.push(format!(
                        "{:>7}  {:<12} {:>15} {:>11} {:>10}  {:<20} {}",
                        p.key.pid,
                        verdict_word(&r.trend),
                        if r.trend.points > 0 {
                            human_rate(r.trend.slope)
                        } else {
                            "-".into()
                        },
                        human_bytes(p.last.rss),
                        r.eta
                            .as_ref()
                            .map_or("-".into(), |(e, _)| human_duration(*e)),
                        sparkline_of(&recent, 20),
                        short_label(&p.label())
                    ));
                }
                if let Some(k) = j.kernel.iter().find(|f| f.text.is_some()) {
                    lines.push(format!("kernel: {}", k.text.as_deref().unwrap_or_default()));
                }
                let mut out = String::new();
                if *drawn > 0 {
                    let _ = write!(out, "\x1b[{}A\x1b[J", *drawn);
                }
                for l in &lines {
                    let l: String = l.chars().take(width).collect();
                    let _ = writeln!(out, "\r\x1b[2K{l}");
                }
                *drawn = lines.len();
                crate::write_stderr(&out);
                *next = t + REDRAW_PERIOD;
            }
        }
    }

    /// Take the view off the terminal before the report.
    pub(super) fn finish(&mut self) {
        if let Mode::Terminal { drawn, .. } = self.mode {
            if drawn > 0 {
                crate::write_stderr(&format!("\x1b[{drawn}A\r\x1b[J"));
            }
        }
    }
}
