//! `memlens watch`'s command line: what to watch, how often, for how long, which files to
//! write, the budgets.

use memlens_common::units;
use memlens_watch::history::Metric;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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
1 no such process, or its memory cannot be read; 125 invalid command line, or memlens failed \
(e.g. cannot create an output file); 126/127 the program cannot be run / was not found.\n\n\
Examples:\n  memlens watch -- python3 server.py\n  memlens watch --pid 4242 --interval 1s --duration 10m\n  \
memlens watch --pid 4242 --csv mem.csv --plot mem.svg\n  memlens watch --max-rss 500MiB -- ./service\n  \
memlens watch --restart-every 1h --duration 3h -- ./service   # does it grow again after a restart?"
)]
pub struct WatchArgs {
    /// Watch this running process.
    #[arg(short, long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// Time between samples.
    #[arg(short, long, value_name = "DURATION", allow_hyphen_values = true, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this long (default: when the process exits, or on Ctrl-C). A program
    /// started by memlens is then sent SIGTERM.
    #[arg(short, long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_positive_duration)]
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
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = units::parse_duration)]
    pub warmup: Option<Duration>,
    /// The memory figure the trend, the verdict and the projection are about.
    #[arg(long, value_enum, default_value_t = MetricArg::Rss)]
    pub metric: MetricArg,
    /// Restart the program after `--` every DURATION (SIGTERM, wait, start it again) and
    /// compare its growth before and after each restart: growing again confirms a leak,
    /// flat after says the growth was a warm-up.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_positive_duration, conflicts_with = "pid", requires = "command")]
    pub restart_every: Option<Duration>,
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
    pub(super) fn metric(self) -> Metric {
        match self {
            MetricArg::Rss => Metric::Rss,
            MetricArg::Pss => Metric::Pss,
            MetricArg::Uss => Metric::Uss,
            MetricArg::Anon => Metric::Anon,
            MetricArg::Swap => Metric::Swap,
        }
    }
}

pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err("the interval must be at least 1ms".into());
    }
    Ok(d)
}

pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s)?;
    if d.is_zero() {
        return Err("the duration must be more than 0".into());
    }
    Ok(d)
}
