//! `memlens watch`: follow the memory of a process (or process tree) over time from
//! `/proc`, show it live, and judge its trend. Nothing is injected into the process. This
//! module is the watch itself: start or find the process, sample it on a fixed grid of
//! times until it ends (or `--duration`, `--max-rss`, a signal), then settle how it ended
//! and hand a [`Summary`] to the outputs. The parts:
//!
//! * [`args`]: the command line.
//! * [`live_view`]: what is shown while the watch runs.
//! * [`report`]: the final report, as text and as JSON.
//! * [`output`]: the files (`--csv`, `--json`, `--plot`).
//!
//! The sampling, the history, the trend and the chart are `memlens-watch`'s; starting the
//! program and its signals are [`crate::supervise`]'s.
//!
//! Streams: the program started with `-- CMD` keeps memlens's stdin, stdout and stderr.
//! memlens writes only to stderr (the live view, the final report, errors), except what
//! is asked for with `--csv -` or `--json -`, which go to stdout. The live view is redrawn
//! in place only when stderr is a terminal that memlens does not share with a program it
//! started (`--pid`); otherwise it is a plain line every 10 seconds, written whole, so it
//! never lands in the middle of the program's own lines or erases them.

mod args;
pub(crate) mod live_view;
mod output;
mod report;
pub(crate) use report::share_of_a_core;

pub use args::WatchArgs;
pub(crate) use args::{
    parse_interval as parse_interval_arg, parse_positive_duration as parse_positive_duration_arg,
};

use crate::supervise::{self, resolve_program, Exit, LaunchError, Supervised, Wake};
use live_view::Live;
use memlens_watch::history::{History, Metric};
use memlens_watch::limit::{self, Limit};
use memlens_watch::proc::{self, OpenError, ProcDir, ReadError, Sampler, Source, TreeSample};
use memlens_watch::trend::{self, RestartVerdict, Trend, TrendConfig, Verdict};
use output::Outputs;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// A budget (`--max-rss`, `--max-growth-rate`) was exceeded.
pub const EXIT_BUDGET: u8 = 3;
/// The process to watch does not exist, or its memory cannot be read.
pub const EXIT_NO_PROCESS: u8 = 1;

/// Why `memlens watch` could not watch, and its exit status.
struct Failure(String, u8);

impl Failure {
    fn exit(&self) -> ExitCode {
        crate::say!("memlens: error: {}", self.0);
        ExitCode::from(self.1)
    }
}

impl From<LaunchError> for Failure {
    fn from(e: LaunchError) -> Failure {
        let (msg, code) = e.parts();
        Failure(msg, code)
    }
}

fn other(msg: impl Into<String>) -> Failure {
    Failure(msg.into(), crate::EXIT_USAGE)
}

pub fn main(args: WatchArgs) -> ExitCode {
    match watch(args) {
        Ok(code) => code,
        Err(f) => f.exit(),
    }
}

// ---------------------------------------------------------------------------------------
// The watch

/// Why the watch ended.
#[derive(Clone, Debug, PartialEq)]
enum End {
    Exited,
    Duration,
    Interrupted(i32),
    MaxRss,
    Unreadable(String),
}

impl End {
    fn key(&self) -> &'static str {
        match self {
            End::Exited => "exited",
            End::Duration => "duration",
            End::Interrupted(_) => "interrupted",
            End::MaxRss => "max_rss",
            End::Unreadable(_) => "unreadable",
        }
    }
}

/// What is watched.
struct Target {
    pid: i32,
    /// Shown in reports: the command line.
    label: String,
    child: Option<Supervised>,
    command: Option<Vec<String>>,
}

/// A restart done by `--restart-every`: when (seconds into the watch), the pid before and
/// after, and the signal that stopped the old one.
#[derive(Clone, Copy, Debug)]
struct Restart {
    at: f64,
    before: i32,
    after: i32,
    stopped_with: i32,
}

fn start_target(args: &WatchArgs) -> Result<Target, Failure> {
    if let Some(pid) = args.pid {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut label: String = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if label.is_empty() {
            label = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| format!("[{}]", s.trim()))
                .unwrap_or_default();
        }
        return Ok(Target {
            pid,
            label: short_label(&label),
            child: None,
            command: None,
        });
    }
    let child = spawn_program(args)?;
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Ok(Target {
        pid: child.pid() as i32,
        label: short_label(&command.join(" ")),
        child: Some(child),
        command: Some(command),
    })
}

/// Start the program after `--` (again, for `--restart-every`).
fn spawn_program(args: &WatchArgs) -> Result<Supervised, LaunchError> {
    let prog = resolve_program(&args.command[0])?;
    supervise::spawn(
        std::process::Command::new(&prog)
            .arg0(&args.command[0])
            .args(&args.command[1..]),
        &prog,
    )
}

/// A command line for one report line: control characters (a script's newlines) as
/// spaces, at most 80 characters.
pub(crate) fn short_label(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > 80 {
        clean.chars().take(77).collect::<String>() + "..."
    } else {
        clean
    }
}

/// The budget that failed, for the report.
#[derive(Clone, Copy, Debug, Default)]
struct RssBudget {
    exceeded_at: Option<(f64, u64)>,
}

/// Everything a finished watch reports.
struct Summary<'a> {
    args: &'a WatchArgs,
    target: &'a Target,
    metric: Metric,
    history: &'a History,
    /// None only if a program started by memlens exited before the first sample.
    first: Option<TreeSample>,
    last: Option<TreeSample>,
    source: Source,
    source_note: Option<String>,
    elapsed: f64,
    end: End,
    status: Option<Exit>,
    /// The signal that stopped a program memlens started, when the watch ended first.
    stopped_child: Option<i32>,
    trend: Trend,
    /// `--restart-every`: each restart, and what the growth before and after it says.
    restarts: Vec<(Restart, RestartVerdict, String)>,
    limit: Option<Limit>,
    rss_budget: RssBudget,
    growth_exceeded: bool,
    self_cpu: f64,
    self_peak: u64,
    exit_code: u8,
}

fn watch(args: WatchArgs) -> Result<ExitCode, Failure> {
    let metric = args.metric.metric();
    let mut outputs = Outputs::open(&args)?;
    let wake = Wake::install().map_err(|e| other(format!("cannot create a pipe: {e}")))?;
    if args.pid.is_some() {
        supervise::stop_on_signals();
    }
    let mut target = start_target(&args)?;
    let pid = target.pid;
    let sampler = match ProcDir::open(pid) {
        Ok(d) => Sampler::new(d, args.include_children),
        Err(OpenError::NoSuchProcess) => {
            return Err(Failure(
                format!("no process with pid {pid}"),
                EXIT_NO_PROCESS,
            ))
        }
        Err(OpenError::Other(m) | OpenError::NoFd(m)) => {
            return Err(target.abandon(Failure(m, EXIT_NO_PROCESS)))
        }
    };
    let limit = match args.limit {
        Some(b) => Some(Limit {
            bytes: b,
            source: "--limit".into(),
        }),
        None => limit::detect(pid),
    };
    let mut live = Live::new(&args, target.child.is_some(), limit.clone());
    outputs.csv_header();
    let mut run = Running {
        args: &args,
        metric,
        sampler,
        history: History::new(2048),
        start: Instant::now(),
        unix_start: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    };
    let (sampled, end) = match run.sample_until_end(&mut target, &mut live, &mut outputs, &wake) {
        Ok(s) => s,
        Err(f) => return Err(target.abandon(f)),
    };
    let elapsed = run.start.elapsed().as_secs_f64();
    live.finish();
    let (status, stopped_child) = target.settle(sampled.status, &end);
    let warmup = args.warmup.map(|d| d.as_secs_f64());
    // With restarts, the verdict is about the program since the last one; each restart
    // compares the run before it with the run after it.
    let cfg = TrendConfig {
        warmup,
        ..Default::default()
    };
    let bounds: Vec<f64> = std::iter::once(0.0)
        .chain(sampled.restarts.iter().map(|r| r.at))
        .chain(std::iter::once(f64::INFINITY))
        .collect();
    let part = |i: usize| {
        run.history
            .trend_between(metric, &cfg, bounds[i], bounds[i + 1])
    };
    let restarts = sampled
        .restarts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (v, text) = trend::compare_restart(&part(i), &part(i + 1));
            (*r, v, text)
        })
        .collect();
    let trend = if sampled.restarts.is_empty() {
        trend_of(&run.history, metric, warmup)
    } else {
        part(sampled.restarts.len())
    };
    let growth_exceeded = args
        .max_growth_rate
        .is_some_and(|r| trend.verdict == Verdict::Growing && trend.slope > r);
    let exit_code = if sampled.rss_budget.exceeded_at.is_some() || growth_exceeded {
        EXIT_BUDGET
    } else if let (Some(st), None) = (status, stopped_child) {
        st.status()
    } else if let End::Unreadable(_) = end {
        EXIT_NO_PROCESS
    } else {
        0
    };
    let (self_cpu, self_peak) = proc::self_usage();
    let summary = Summary {
        args: &args,
        target: &target,
        metric,
        history: &run.history,
        first: sampled.first,
        last: sampled.last,
        source: sampled.source,
        source_note: sampled.source_note,
        elapsed,
        end,
        status,
        stopped_child,
        trend,
        restarts,
        limit,
        rss_budget: sampled.rss_budget,
        growth_exceeded,
        self_cpu,
        self_peak,
        exit_code,
    };
    outputs.finish_csv();
    if !args.quiet {
        crate::write_stderr(&report::text(&summary, &outputs.names()));
    } else {
        for line in report::budget_lines(&summary)
            .iter()
            .filter(|l| l.contains("EXCEEDED"))
        {
            crate::say!("==memlens== {line}");
        }
    }
    if let Err(e) = outputs
        .write_plot(&summary)
        .and_then(|()| outputs.write_json(&summary))
    {
        crate::say!("memlens: error: {e}");
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    Ok(ExitCode::from(summary.exit_code))
}

/// A watch while it samples.
struct Running<'a> {
    args: &'a WatchArgs,
    metric: Metric,
    sampler: Sampler,
    history: History,
    /// The monotonic start, and the same moment in Unix time (for the CSV).
    start: Instant,
    unix_start: f64,
}

/// What the sampling gathered besides the history.
struct Sampled {
    first: Option<TreeSample>,
    last: Option<TreeSample>,
    /// The worst source any sample came from, and why it was needed.
    source: Source,
    source_note: Option<String>,
    rss_budget: RssBudget,
    /// How a program memlens started ended, if the watch saw it end.
    status: Option<Exit>,
    restarts: Vec<Restart>,
}

impl Running<'_> {
    /// Sample on the fixed grid start + k * interval until the watch ends. `Err` when the
    /// process cannot be watched at all (checked on the first sample).
    fn sample_until_end(
        &mut self,
        target: &mut Target,
        live: &mut Live,
        outputs: &mut Outputs,
        wake: &Wake,
    ) -> Result<(Sampled, End), Failure> {
        let args = self.args;
        let mut pid = target.pid;
        let mut next_restart = args.restart_every;
        let mut sampled = Sampled {
            first: None,
            last: None,
            source: Source::SmapsRollup,
            source_note: None,
            rss_budget: RssBudget::default(),
            status: None,
            restarts: Vec::new(),
        };
        let mut tick: u64 = 0;
        let end = loop {
            let before = self.start.elapsed();
            let r = self.sampler.sample();
            let after = self.start.elapsed();
            let t = ((before + after) / 2).as_secs_f64();
            let s = match r {
                Ok(s) => s,
                // A program we started may be quicker than the first sample.
                Err(ReadError::Gone) if sampled.first.is_none() && target.child.is_some() => {
                    break End::Exited
                }
                Err(e) if sampled.first.is_none() => {
                    let msg = match e {
                        ReadError::Gone => format!("process {pid} has already exited"),
                        ReadError::NoMemory => format!(
                            "process {pid} is a kernel thread: it has no memory of its own to watch"
                        ),
                        ReadError::Denied(m) => m,
                    };
                    return Err(Failure(msg, EXIT_NO_PROCESS));
                }
                Err(ReadError::Gone) | Err(ReadError::NoMemory) => break End::Exited,
                Err(ReadError::Denied(m)) => break End::Unreadable(m),
            };
            self.check_sample(&s, pid, &mut sampled)?;
            self.history.push(t, &s.mem, s.processes);
            outputs.csv_sample(t, self.unix_start + t, &s);
            let over = args.max_rss.is_some_and(|m| s.mem.rss > m);
            if over {
                sampled.rss_budget.exceeded_at = Some((t, s.mem.rss));
            }
            live.update(t, &s, &self.history, self.metric, args, pid, &target.label);
            if over {
                break End::MaxRss;
            }
            if args.duration.is_some_and(|d| after >= d) {
                break End::Duration;
            }
            if let Some(due) = next_restart.filter(|&due| after >= due) {
                let r = self.restart(target, t)?;
                pid = r.after;
                sampled.restarts.push(r);
                next_restart = Some(due + args.restart_every.expect("set"));
            }
            // Next sample on the grid (missed ticks are skipped, never bunched up); the
            // last one exactly at --duration.
            let interval = args.interval.as_secs_f64();
            tick = tick.max((after.as_secs_f64() / interval) as u64) + 1;
            let mut next = Duration::from_secs_f64(tick as f64 * interval);
            if let Some(d) = args.duration {
                next = next.min(d);
            }
            if let Some(end) = self.wait_until(next, target, wake, &mut sampled.status) {
                break end;
            }
        };
        Ok((sampled, end))
    }

    /// `--restart-every`: stop the program (SIGTERM, then SIGKILL after 5 s), start it
    /// again, and follow the new process in the same history.
    fn restart(&mut self, target: &mut Target, t: f64) -> Result<Restart, Failure> {
        let before = target.pid;
        let stopped_with = match target.child.as_mut() {
            Some(c) => c.stop(),
            None => return Err(other("--restart-every needs a program started by memlens")),
        };
        let child = spawn_program(self.args)?;
        let after = child.pid() as i32;
        target.child = Some(child);
        target.pid = after;
        let dir = ProcDir::open(after).map_err(|e| match e {
            OpenError::NoSuchProcess => Failure(
                format!("the restarted program (pid {after}) exited at once"),
                EXIT_NO_PROCESS,
            ),
            OpenError::Other(m) | OpenError::NoFd(m) => Failure(m, EXIT_NO_PROCESS),
        })?;
        self.sampler = Sampler::new(dir, self.args.include_children);
        Ok(Restart {
            at: t,
            before,
            after,
            stopped_with,
        })
    }

    /// Keep the first and last sample, and note (now: the process may be gone by the time
    /// of the report) why a sample came from a worse source than smaps_rollup. `Err` if
    /// the first sample lacks the metric the verdict is about.
    fn check_sample(&self, s: &TreeSample, pid: i32, sampled: &mut Sampled) -> Result<(), Failure> {
        if sampled.first.is_none() {
            if self.metric.get(&s.mem).is_none() {
                let why = smaps_error(self.sampler.root());
                return Err(Failure(
                    format!(
                        "{} is not available for process {pid}: {why}; use --metric rss",
                        self.metric.name().to_uppercase()
                    ),
                    EXIT_NO_PROCESS,
                ));
            }
            sampled.first = Some(*s);
        }
        if s.source > sampled.source {
            sampled.source_note = Some(if s.root_source > Source::SmapsRollup {
                format!(
                    "/proc/{pid}/smaps_rollup is not readable ({}): PSS and USS are unknown, \
                     RSS comes from /proc/{pid}/{}",
                    smaps_error(self.sampler.root()),
                    s.root_source.name()
                )
            } else {
                format!(
                    "the smaps_rollup of a child process is not readable: PSS and USS of the \
                     tree are unknown, RSS comes from its /proc/PID/{}",
                    s.source.name()
                )
            });
            sampled.source = s.source;
        }
        sampled.last = Some(*s);
        Ok(())
    }

    /// Wait until `next` (from the start). Ends the watch early on a stop signal
    /// (`--pid`) or the end of a program memlens started (its status into `status`).
    fn wait_until(
        &self,
        next: Duration,
        target: &mut Target,
        wake: &Wake,
        status: &mut Option<Exit>,
    ) -> Option<End> {
        loop {
            wake.wait_until(self.start + next);
            if let Some(sig) = supervise::take_stop() {
                return Some(End::Interrupted(sig));
            }
            if let Some(c) = target.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    *status = Some(st);
                    return Some(End::Exited);
                }
            }
            if self.start.elapsed() >= next {
                return None;
            }
        }
    }
}

impl Target {
    /// A program memlens started must not be left behind when the watch fails.
    fn abandon(&mut self, f: Failure) -> Failure {
        if let Some(c) = self.child.as_mut() {
            c.stop();
        }
        f
    }

    /// A program memlens started, once the watch is over: its status if it ended (waited
    /// for if the watch ended because it did), or stopped if the watch ended first, with
    /// the signal that stopped it.
    fn settle(&mut self, status: Option<Exit>, end: &End) -> (Option<Exit>, Option<i32>) {
        let Some(c) = self.child.as_mut().filter(|_| status.is_none()) else {
            return (status, None);
        };
        match c.try_wait() {
            Ok(Some(st)) => (Some(st), None),
            _ if *end == End::Exited => (c.wait().ok(), None),
            _ => (None, Some(c.stop())),
        }
    }
}

/// Why smaps_rollup cannot be read, in a few words.
fn smaps_error(dir: &ProcDir) -> String {
    match dir.read("smaps_rollup", &mut String::new()) {
        Ok(()) => "it was not readable for a moment".into(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            "this kernel has no smaps_rollup (Linux 4.14+)".into()
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            "permission denied: it belongs to another user; run memlens as that user or as root"
                .into()
        }
        Err(e) => e.to_string(),
    }
}

fn trend_of(history: &History, metric: Metric, warmup: Option<f64>) -> Trend {
    history.trend(
        metric,
        &TrendConfig {
            warmup,
            ..Default::default()
        },
    )
}
