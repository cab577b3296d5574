//! `memlens top`'s command line.

use memlens_common::units;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "The leak hunt every operator knows, as one command: watch every process \
over hours, find the one that grows, restart it, see whether it grows again.\n\n\
Every process you may read is sampled (from /proc/PID/statm: cheap enough to run for days) and \
ranked by the same verdict as `memlens watch` (the Theil-Sen slope of the memory's floor, with a \
95% confidence interval), not by size: the growing ones first, with their rate, the time left \
to the memory limit and a sparkline. A process is its pid and start time: a pid reused by \
another program is another process. A process that exits and comes back with the same command \
line is a restart: the growth before and after is compared (\"grows again after the restart: \
confirmed leak\" or \"flat after the restart: the growth was a warm-up\").\n\n\
Memory no process owns is followed too (/proc/meminfo: unreclaimable slab, kernel stacks, page \
tables, shmem, huge pages; the cgroup's kernel counters): a growth there while no process grows \
is a kernel or driver leak, which only a reboot frees.\n\n\
For each growing process, the report gives the next step: the command that shows what grows \
inside it (memlens run for native programs and CPython, jcmd for Java, pprof for Go, heap \
snapshots for Node).\n\n\
The watch ends at --duration or on Ctrl-C (SIGINT, SIGTERM, SIGHUP, SIGQUIT); then the report \
goes to stderr. Exit status: 0 done, whatever the verdicts; 125 invalid command line or memlens \
failed (a cgroup or unit that cannot be found, a file that cannot be written).\n\n\
Examples:\n  memlens top                               # the whole machine, every 5 s, until Ctrl-C\n  \
memlens top -i 30s -d 8h --json top.json --plot growers.svg\n  \
memlens top --unit nginx.service          # the unit's processes, and their sum\n  \
memlens top --cgroup /sys/fs/cgroup/system.slice/app.service\n  \
memlens top --match '*java*'              # only command lines matching a wildcard"
)]
pub struct TopArgs {
    /// Time between samples.
    #[arg(short, long, value_name = "DURATION", allow_hyphen_values = true, default_value = "5s", value_parser = crate::watch::parse_interval_arg)]
    pub interval: Duration,
    /// Stop after this long (default: on Ctrl-C).
    #[arg(short, long, value_name = "DURATION", allow_hyphen_values = true, value_parser = crate::watch::parse_positive_duration_arg)]
    pub duration: Option<Duration>,
    /// Only the processes of this cgroup (and the cgroups below it), followed one by one
    /// and as one sum: a directory under /sys/fs/cgroup, or a path relative to the memory
    /// hierarchy (system.slice/app.service).
    #[arg(long, value_name = "PATH", conflicts_with = "unit")]
    pub cgroup: Option<PathBuf>,
    /// Only the processes of this systemd unit (its cgroup), one by one and as one sum.
    /// `.service` is added to a name without a suffix.
    #[arg(long, value_name = "NAME")]
    pub unit: Option<String>,
    /// Only the processes whose command line matches this shell wildcard (`*` and `?`),
    /// e.g. '*java*'; a process without one (kernel-side) is `[name]`.
    #[arg(long = "match", value_name = "GLOB")]
    pub pattern: Option<String>,
    /// Processes listed in the live view and the report.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Write every sample of every process to FILE as CSV, as taken ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the final report to FILE as JSON ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the memory of the top growers over time in FILE: SVG, or PNG if FILE ends in .png.
    #[arg(long, value_name = "FILE.svg|FILE.png")]
    pub plot: Option<PathBuf>,
    /// The limit to project the time to (default: each process's cgroup limit, or the
    /// machine's memory).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub limit: Option<u64>,
    /// Time at the start of each process's watch left out of its trend (default: 10% of
    /// the time it was watched, at most 5m).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = units::parse_duration)]
    pub warmup: Option<Duration>,
    /// No live view and no report on stderr (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
}
