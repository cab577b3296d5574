//! `memlens watch`: follow the memory of a process (or process tree) over time from
//! `/proc`, show it live, and judge its trend. Nothing is injected into the process.
//!
//! Streams: the program started with `-- CMD` keeps memlens's stdin, stdout and stderr.
//! memlens writes only to stderr (the live view, the final report, errors), except what
//! is asked for with `--csv -` or `--json -`, which go to stdout. The live view is redrawn
//! in place only when stderr is a terminal that memlens does not share with a program it
//! started (`--pid`); otherwise it is a plain line every 10 seconds, written whole, so it
//! never lands in the middle of the program's own lines or erases them.

use crate::supervise::{self, resolve_program, Exit, LaunchError, Supervised, Wake};
use memlens_common::signal::signal_label;
use memlens_watch::history::{History, Metric, Point};
use memlens_watch::limit::{self, Limit};
use memlens_watch::plot::{self, PlotInfo};
use memlens_watch::proc::{self, OpenError, ProcDir, ReadError, Sampler, Source, TreeSample};
use memlens_watch::trend::{self, Trend, TrendConfig, Verdict};
use memlens_watch::units::{self, human_bytes, human_duration, human_rate};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// A budget (`--max-rss`, `--max-growth-rate`) was exceeded.
pub const EXIT_BUDGET: u8 = 3;
/// The process to watch does not exist, or its memory cannot be read.
pub const EXIT_NO_PROCESS: u8 = 1;

#[derive(clap::Args)]
#[command(
    group(clap::ArgGroup::new("target").required(true).args(["pid", "command"])),
    after_help = "Give either --pid or a program to start after `--`. The watch ends when the process \
exits, when --duration is reached, or on Ctrl-C (with --pid); then memlens prints the report on stderr.\n\n\
The verdict (growing / stable / inconclusive) comes from the Theil-Sen slope of the memory's floor after \
the warm-up, with a 95% confidence interval: waves of allocation and freeing, and one-off spikes, do not \
count as growth.\n\n\
Sizes: 4096, 500MiB, 2GiB, 1.5G (K/M/G/T = KiB/MiB/GiB/TiB; kB/MB/GB = powers of 1000). Durations: \
500ms, 1s, 2m, 1h, 1m30s. Rates: 10MiB/h, 1M/min.\n\n\
Exit status: 0 done (whatever the verdict); 3 a budget (--max-rss, --max-growth-rate) was exceeded; \
otherwise the status of the program started after `--` if it failed (128+N for signal N); \
1 no such process, or its memory cannot be read; 2 invalid command line; 125 memlens failed \
(e.g. cannot create an output file); 126/127 the program cannot be run / was not found.\n\n\
Examples:\n  memlens watch -- python3 server.py\n  memlens watch --pid 4242 --interval 1s --duration 10m\n  \
memlens watch --pid 4242 --csv mem.csv --plot mem.svg\n  memlens watch --max-rss 500MiB -- ./service"
)]
pub struct WatchArgs {
    /// Watch this running process.
    #[arg(short, long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// Time between samples.
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this long (default: when the process exits, or on Ctrl-C). A program
    /// started by memlens is then sent SIGTERM.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Sum the memory of the process and all its descendants, found again at every sample.
    #[arg(short = 'c', long)]
    pub include_children: bool,
    /// Write every sample to FILE as CSV, as it is taken ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the final report, with the samples, to FILE as JSON ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the memory over time as a chart in FILE: SVG, or PNG if FILE ends in .png.
    #[arg(long, value_name = "FILE.svg|FILE.png")]
    pub plot: Option<PathBuf>,
    /// The limit to project the time to (default: the cgroup's memory limit, or the
    /// machine's memory).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub limit: Option<u64>,
    /// Budget: stop and exit with status 3 as soon as the RSS exceeds SIZE (a program
    /// started by memlens is sent SIGTERM).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub max_rss: Option<u64>,
    /// Budget: exit with status 3 if, at the end, the verdict is growing at more than
    /// RATE (e.g. 10MiB/h; 0 fails on any growth).
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    pub max_growth_rate: Option<f64>,
    /// Time at the start left out of the trend (default: 10% of the watch, at most 5m).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub warmup: Option<Duration>,
    /// The memory figure the trend, the verdict and the projection are about.
    #[arg(long, value_enum, default_value_t = MetricArg::Rss)]
    pub metric: MetricArg,
    /// No live view and no report on stderr (errors and budget failures are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// The program to start and watch, then its arguments (put them after `--`).
    #[arg(trailing_var_arg = true, value_name = "PROGRAM [ARGS]")]
    pub command: Vec<OsString>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    Rss,
    Pss,
    Uss,
    Anon,
    Swap,
}

impl MetricArg {
    fn metric(self) -> Metric {
        match self {
            MetricArg::Rss => Metric::Rss,
            MetricArg::Pss => Metric::Pss,
            MetricArg::Uss => Metric::Uss,
            MetricArg::Anon => Metric::Anon,
            MetricArg::Swap => Metric::Swap,
        }
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err("the interval must be at least 1ms".into());
    }
    Ok(d)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s)?;
    if d.is_zero() {
        return Err("the duration must be more than 0".into());
    }
    Ok(d)
}

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

struct Outputs {
    csv: Option<Box<dyn Write>>,
    csv_name: Option<String>,
    json: Option<(Box<dyn Write>, String)>,
    plot: Option<(std::fs::File, PathBuf)>,
}

fn create(p: &PathBuf, what: &str) -> Result<Box<dyn Write>, Failure> {
    if p.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    std::fs::File::create(p)
        .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn Write>)
        .map_err(|e| {
            other(format!(
                "cannot create the {what} file {}: {e}",
                p.display()
            ))
        })
}

fn open_outputs(args: &WatchArgs) -> Result<Outputs, Failure> {
    let dash = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if dash(&args.csv) && dash(&args.json) {
        return Err(other(
            "--csv - and --json - cannot both write to stdout; give one of them a file name",
        ));
    }
    if dash(&args.plot) {
        return Err(other("--plot needs a file name"));
    }
    let csv = args.csv.as_ref().map(|p| create(p, "CSV")).transpose()?;
    let json = match &args.json {
        Some(p) => Some((create(p, "JSON")?, p.display().to_string())),
        None => None,
    };
    let plot = match &args.plot {
        Some(p) => Some((
            std::fs::File::create(p)
                .map_err(|e| other(format!("cannot create the plot file {}: {e}", p.display())))?,
            p.clone(),
        )),
        None => None,
    };
    Ok(Outputs {
        csv,
        csv_name: args.csv.as_ref().map(|p| p.display().to_string()),
        json,
        plot,
    })
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
    let prog = resolve_program(&args.command[0])?;
    let child = supervise::spawn(
        std::process::Command::new(&prog)
            .arg0(&args.command[0])
            .args(&args.command[1..]),
        &prog,
    )?;
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

/// A command line for one report line: control characters (a script's newlines) as
/// spaces, at most 80 characters.
fn short_label(s: &str) -> String {
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
    stopped_child: Option<&'static str>,
    trend: Trend,
    limit: Option<Limit>,
    rss_budget: RssBudget,
    growth_exceeded: bool,
    self_cpu: f64,
    self_peak: u64,
    exit_code: u8,
}

fn watch(args: WatchArgs) -> Result<ExitCode, Failure> {
    let metric = args.metric.metric();
    let mut outputs = open_outputs(&args)?;
    let wake = Wake::install().map_err(|e| other(format!("cannot create a pipe: {e}")))?;
    if args.pid.is_some() {
        supervise::stop_on_signals();
    }
    let mut target = start_target(&args)?;
    let pid = target.pid;
    let started = target.child.is_some();
    // From here on, a program we started must not be left behind on an error.
    let fail_with_child = |target: &mut Target, f: Failure| -> Failure {
        if let Some(c) = target.child.as_mut() {
            c.stop();
        }
        f
    };

    let dir = match ProcDir::open(pid) {
        Ok(d) => d,
        Err(OpenError::NoSuchProcess) => {
            return Err(Failure(
                format!("no process with pid {pid}"),
                EXIT_NO_PROCESS,
            ))
        }
        Err(OpenError::Other(m)) => {
            return Err(fail_with_child(&mut target, Failure(m, EXIT_NO_PROCESS)))
        }
    };
    let mut sampler = Sampler::new(dir, args.include_children);
    let limit = match args.limit {
        Some(b) => Some(Limit {
            bytes: b,
            source: "--limit".into(),
        }),
        None => limit::detect(pid),
    };
    let interval = args.interval;
    let mut history = History::new(2048);
    let mut live = Live::new(&args, started, limit.clone());
    let start = Instant::now();
    let unix_start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut csv_ok = true;
    if let Some(w) = outputs.csv.as_mut() {
        csv_ok = writeln!(w, "t_s,unix_s,rss,pss,uss,swap,anon,file,processes")
            .and_then(|()| w.flush())
            .is_ok();
    }
    let mut first: Option<TreeSample> = None;
    let mut last: Option<TreeSample> = None;
    let mut worst_source = Source::SmapsRollup;
    let mut source_note: Option<String> = None;
    let mut rss_budget = RssBudget::default();
    let mut status: Option<Exit> = None;
    let mut tick: u64 = 0;
    let end = loop {
        let before = start.elapsed();
        let r = sampler.sample();
        let after = start.elapsed();
        let t = ((before + after) / 2).as_secs_f64();
        let s = match r {
            Ok(s) => s,
            // A program we started may be quicker than the first sample.
            Err(ReadError::Gone) if first.is_none() && target.child.is_some() => break End::Exited,
            Err(e) if first.is_none() => {
                let msg = match e {
                    ReadError::Gone => format!("process {pid} has already exited"),
                    ReadError::NoMemory => format!(
                        "process {pid} is a kernel thread: it has no memory of its own to watch"
                    ),
                    ReadError::Denied(m) => m,
                };
                return Err(fail_with_child(&mut target, Failure(msg, EXIT_NO_PROCESS)));
            }
            Err(ReadError::Gone) | Err(ReadError::NoMemory) => break End::Exited,
            Err(ReadError::Denied(m)) => break End::Unreadable(m),
        };
        if first.is_none() {
            if metric.get(&s.mem).is_none() {
                let why = smaps_error(sampler.root());
                return Err(fail_with_child(
                    &mut target,
                    Failure(
                        format!(
                            "{} is not available for process {pid}: {why}; use --metric rss",
                            metric.name().to_uppercase()
                        ),
                        EXIT_NO_PROCESS,
                    ),
                ));
            }
            first = Some(s);
        }
        if s.source > worst_source {
            // Say why now: the process may be gone by the time of the report.
            source_note = Some(if s.root_source > Source::SmapsRollup {
                format!(
                    "/proc/{pid}/smaps_rollup is not readable ({}): PSS and USS are unknown, \
                     RSS comes from /proc/{pid}/{}",
                    smaps_error(sampler.root()),
                    s.root_source.name()
                )
            } else {
                format!(
                    "the smaps_rollup of a child process is not readable: PSS and USS of the \
                     tree are unknown, RSS comes from its /proc/PID/{}",
                    s.source.name()
                )
            });
            worst_source = s.source;
        }
        last = Some(s);
        history.push(t, &s.mem, s.processes);
        if let (Some(w), true) = (outputs.csv.as_mut(), csv_ok) {
            if let Err(e) = write_csv(w, t, unix_start + t, &s) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    crate::say!("memlens: warning: cannot write the CSV file: {e}; no more samples will be written to it");
                }
                csv_ok = false;
            }
        }
        let over = args.max_rss.is_some_and(|m| s.mem.rss > m);
        if over {
            rss_budget.exceeded_at = Some((t, s.mem.rss));
        }
        live.update(t, &s, &history, metric, &args, pid, &target.label);
        if over {
            break End::MaxRss;
        }
        if args.duration.is_some_and(|d| after >= d) {
            break End::Duration;
        }
        // Next sample on the fixed grid start + k * interval (missed ticks are skipped,
        // never bunched up); the last one exactly at --duration.
        tick = tick.max((after.as_secs_f64() / interval.as_secs_f64()) as u64) + 1;
        let mut next = Duration::from_secs_f64(tick as f64 * interval.as_secs_f64());
        if let Some(d) = args.duration {
            next = next.min(d);
        }
        let mut stop = None;
        loop {
            wake.wait_until(start + next);
            if let Some(sig) = supervise::take_stop() {
                stop = Some(End::Interrupted(sig));
                break;
            }
            if let Some(c) = target.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    status = Some(st);
                    stop = Some(End::Exited);
                    break;
                }
            }
            if start.elapsed() >= next {
                break;
            }
        }
        if let Some(e) = stop {
            break e;
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    live.finish();

    // A program we started: stop it if the watch ended first, or collect its status.
    let mut stopped_child = None;
    if let Some(c) = target.child.as_mut() {
        if status.is_none() {
            match c.try_wait() {
                Ok(Some(st)) => status = Some(st),
                _ if end == End::Exited => status = c.wait().ok(),
                _ => {
                    stopped_child = Some(c.stop());
                }
            }
        }
    }

    let trend = trend_of(&history, metric, args.warmup.map(|d| d.as_secs_f64()));
    let growth_exceeded = args
        .max_growth_rate
        .is_some_and(|r| trend.verdict == Verdict::Growing && trend.slope > r);
    let exit_code = if rss_budget.exceeded_at.is_some() || growth_exceeded {
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
        history: &history,
        first,
        last,
        source: worst_source,
        source_note,
        elapsed,
        end,
        status,
        stopped_child,
        trend,
        limit,
        rss_budget,
        growth_exceeded,
        self_cpu,
        self_peak,
        exit_code,
    };

    if let Some(w) = outputs.csv.as_mut() {
        let _ = w.flush();
    }
    if !args.quiet {
        crate::write_stderr(&text_report(&summary, &outputs));
    } else {
        for line in budget_lines(&summary)
            .iter()
            .filter(|l| l.contains("EXCEEDED"))
        {
            crate::say!("==memlens== {line}");
        }
    }
    if let Some((f, p)) = outputs.plot.as_mut() {
        let svg = plot::svg(&history.points(), &plot_info(&summary));
        let bytes = if crate::png::wants_png(p) {
            match crate::png::from_svg(&svg) {
                Ok(b) => b,
                Err(e) => {
                    crate::say!("memlens: error: {e}");
                    return Ok(ExitCode::from(crate::EXIT_USAGE));
                }
            }
        } else {
            svg.into_bytes()
        };
        if let Err(e) = f.write_all(&bytes) {
            crate::say!("memlens: error: cannot write the plot {}: {e}", p.display());
            return Ok(ExitCode::from(crate::EXIT_USAGE));
        }
    }
    if let Some((w, name)) = outputs.json.as_mut() {
        let mut s = serde_json::to_string_pretty(&json_report(&summary)).unwrap_or_default();
        s.push('\n');
        if let Err(e) = w.write_all(s.as_bytes()).and_then(|()| w.flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                crate::say!("memlens: error: cannot write the JSON report {name}: {e}");
                return Ok(ExitCode::from(crate::EXIT_USAGE));
            }
        }
    }
    Ok(ExitCode::from(summary.exit_code))
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
    let (t, v): (Vec<f64>, Vec<f64>) = history
        .points()
        .iter()
        .filter(|p| p.m[metric.index()].known())
        .map(|p| (p.t(), p.min(metric)))
        .unzip();
    trend::analyze(
        &t,
        &v,
        &TrendConfig {
            warmup,
            ..Default::default()
        },
    )
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn write_csv(w: &mut Box<dyn Write>, t: f64, unix: f64, s: &TreeSample) -> std::io::Result<()> {
    let m = &s.mem;
    writeln!(
        w,
        "{t:.3},{unix:.3},{},{},{},{},{},{},{}",
        m.rss,
        opt(m.pss),
        opt(m.uss),
        opt(m.swap),
        opt(m.anon),
        opt(m.file),
        s.processes
    )?;
    w.flush()
}

// ---------------------------------------------------------------------------------------
// Live view

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

struct Live {
    mode: LiveMode,
    recent: VecDeque<f64>,
    /// Last trend computed, and when: recomputed at most every second.
    trend: Option<(f64, Trend)>,
    limit: Option<Limit>,
}

const LINE_PERIOD: f64 = 10.0;
const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

impl Live {
    fn new(args: &WatchArgs, started: bool, limit: Option<Limit>) -> Live {
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
    fn update(
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
                        plural(history.samples(), "sample"),
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
    fn finish(&mut self) {
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
fn values_of(m: &memlens_watch::proc::MemSample, which: &[Metric], sep: &str) -> String {
    which
        .iter()
        .filter_map(|k| k.get(m).map(|v| format!("{} {}", k.name(), human_bytes(v))))
        .collect::<Vec<_>>()
        .join(sep)
}

fn sparkline_of(v: &VecDeque<f64>, n: usize) -> String {
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

fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; fd 2 may not be a terminal (then it fails).
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    80
}

// ---------------------------------------------------------------------------------------
// Reports

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
        .map(|sig| format!("; the program was stopped with {sig}"))
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

fn budget_lines(s: &Summary) -> Vec<String> {
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

fn text_report(s: &Summary, outputs: &Outputs) -> String {
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
        plural(s.history.samples(), "sample"),
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
    let _ = writeln!(o, "{p} verdict: {verdict}");
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
    let pct = if s.elapsed > 0.0 {
        100.0 * s.self_cpu / s.elapsed
    } else {
        0.0
    };
    let _ = writeln!(
        o,
        "{p} sampler: {:.2} s CPU ({pct:.2}% of one core), peak RSS {}",
        s.self_cpu,
        human_bytes(s.self_peak)
    );
    let mut files = Vec::new();
    if let Some(n) = &outputs.csv_name {
        files.push(format!("csv {n}"));
    }
    if let Some((_, n)) = &outputs.json {
        files.push(format!("json {n}"));
    }
    if let Some((_, n)) = &outputs.plot {
        files.push(format!("plot {}", n.display()));
    }
    if !files.is_empty() {
        let _ = writeln!(o, "{p} wrote {}", files.join(", "));
    }
    o
}

/// A budget rate as given: `10.00 MiB/h`.
fn budget_rate(bytes_per_sec: f64) -> String {
    format!("{}/h", units::human_bytes_f(bytes_per_sec * 3600.0))
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A rate per hour, and per second too when it is fast enough to read that way.
fn rate_text(bytes_per_sec: f64) -> String {
    let h = human_rate(bytes_per_sec);
    if bytes_per_sec.abs() >= 1024.0 * 1024.0 / 60.0 {
        let sign = if bytes_per_sec >= 0.0 { "+" } else { "" };
        format!("{h} = {sign}{}/s", units::human_bytes_f(bytes_per_sec))
    } else {
        h
    }
}

fn plot_info(s: &Summary) -> PlotInfo {
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

fn json_report(s: &Summary) -> Value {
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
            "stopped_with": s.stopped_child,
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
