//! `memlens top`: every process of the machine (or of a cgroup, a systemd unit) over time,
//! ranked by growth, with restarts compared and the kernel's share judged. This module is
//! the loop and the judgement; the parts:
//!
//! * [`args`]: the command line.
//! * [`view`]: what is shown while it runs (in place on a terminal, else a line every 10 s).
//! * [`report`]: the final report (text, JSON), the CSV rows and the growers' chart.
//!
//! The process table, the kernel figures, the trend, the restart comparison and the
//! runtime hints are `memlens-watch`'s; the signals and the self-pipe are
//! [`crate::supervise`]'s, as for `watch --pid`.

mod args;
mod report;
mod view;

pub use args::TopArgs;

use crate::supervise::{self, Wake};
use memlens_watch::history::{History, Metric};
use memlens_watch::kernel::{self, Finding, KernelHistory};
use memlens_watch::limit::{self, Limit};
use memlens_watch::next_step;
use memlens_watch::proc::{self, MemSample};
use memlens_watch::processes::{ProcessTable, Selection};
use memlens_watch::trend::{self, RestartVerdict, Trend, TrendConfig, Verdict};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub fn main(args: TopArgs) -> ExitCode {
    match top(&args) {
        Ok(code) => code,
        Err(msg) => crate::fail(msg),
    }
}

/// Why the watch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Duration,
    Interrupted(i32),
}

/// One process as the report shows it.
pub(crate) struct Judged {
    /// Index in the table.
    pub idx: usize,
    pub trend: Trend,
    /// Seconds to the limit at this rate, and the limit.
    pub eta: Option<(f64, Limit)>,
}

/// A restart and what it says.
pub(crate) struct Restart {
    pub before: usize,
    pub after: usize,
    pub verdict: RestartVerdict,
    pub text: String,
    pub before_trend: Trend,
    pub after_trend: Trend,
}

/// Everything a finished (or running) watch reports.
pub(crate) struct State<'a> {
    pub args: &'a TopArgs,
    pub table: &'a ProcessTable,
    /// The cgroup followed (`--cgroup`, `--unit`), and the sum of its processes.
    pub group: Option<(&'a Path, &'a History)>,
    pub kernel: &'a KernelHistory,
    pub elapsed: f64,
}

/// The judgement of a [`State`].
pub(crate) struct Judgement {
    /// Every process, growing first (by rate), then inconclusive, then stable.
    pub ranked: Vec<Judged>,
    pub restarts: Vec<Restart>,
    pub group: Option<Trend>,
    pub kernel: Vec<Finding>,
    pub slab_top: Option<Vec<(String, u64)>>,
}

impl State<'_> {
    fn cfg(&self) -> TrendConfig {
        TrendConfig {
            warmup: self.args.warmup.map(|d| d.as_secs_f64()),
            ..Default::default()
        }
    }

    pub(crate) fn judge(&self, with_eta: bool) -> Judgement {
        let cfg = self.cfg();
        let mut ranked: Vec<Judged> = self
            .table
            .procs
            .iter()
            .enumerate()
            .map(|(idx, p)| {
                let trend = p.trend(Metric::Rss, &cfg);
                let eta = (with_eta && p.alive() && trend.verdict == Verdict::Growing)
                    .then(|| self.limit_for(p.key.pid))
                    .flatten()
                    .and_then(|l| {
                        trend::time_to_limit(p.last.rss as f64, l.bytes as f64, trend.slope)
                            .map(|e| (e, l))
                    });
                Judged { idx, trend, eta }
            })
            .collect();
        // Growing, inconclusive, stable, then those too new to judge; by rate within each.
        let class = |t: &Trend| match t.verdict {
            Verdict::Growing => 0,
            Verdict::Inconclusive if t.points > 0 => 1,
            Verdict::Stable => 2,
            Verdict::Inconclusive => 3,
        };
        ranked.sort_by(|a, b| {
            class(&a.trend)
                .cmp(&class(&b.trend))
                .then(b.trend.slope.total_cmp(&a.trend.slope))
                .then(a.idx.cmp(&b.idx))
        });
        let restarts = self
            .table
            .procs
            .iter()
            .enumerate()
            .filter_map(|(after, p)| {
                let before = p.restart_of?;
                let bt = self.table.procs[before].trend(Metric::Rss, &cfg);
                let at = p.trend(Metric::Rss, &cfg);
                let (verdict, text) = trend::compare_restart(&bt, &at);
                Some(Restart {
                    before,
                    after,
                    verdict,
                    text,
                    before_trend: bt,
                    after_trend: at,
                })
            })
            .collect();
        let growing = ranked.iter().any(|j| j.trend.verdict == Verdict::Growing);
        let slab_top = std::fs::read_to_string("/proc/slabinfo")
            .ok()
            .map(|s| kernel::top_slab_caches(&s, proc::page_size(), 5));
        let kernel = kernel::judge(self.kernel, growing, slab_top.as_deref(), &cfg);
        Judgement {
            ranked,
            restarts,
            group: self.group.map(|(_, h)| h.trend(Metric::Rss, &cfg)),
            kernel,
            slab_top,
        }
    }

    fn limit_for(&self, pid: i32) -> Option<Limit> {
        match self.args.limit {
            Some(b) => Some(Limit {
                bytes: b,
                source: "--limit".into(),
            }),
            None => limit::detect(pid),
        }
    }

    /// The next step for a growing process, one line.
    pub(crate) fn next_step(&self, idx: usize) -> String {
        let p = &self.table.procs[idx];
        let rt = next_step::detect(p.exe.as_deref(), &p.cmdline);
        let glibc = next_step::maps_glibc(p.key.pid);
        next_step::next_step(rt, p.key.pid, &p.cmdline, glibc)
    }
}

/// Where cgroup hierarchies are mounted: v2 (unified) or v1's memory, unified and systemd.
const CGROUP_ROOTS: [&str; 4] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/systemd",
];

/// The cgroup directory meant by `--cgroup PATH` or `--unit NAME`.
fn group_dir(args: &TopArgs) -> Result<Option<PathBuf>, String> {
    let roots: Vec<PathBuf> = CGROUP_ROOTS.iter().map(PathBuf::from).collect();
    let systemd = Path::new("/run/systemd/system").is_dir();
    group_dir_in(
        args.cgroup.as_deref(),
        args.unit.as_deref(),
        &roots,
        systemd,
    )
}

/// [`group_dir`] with the hierarchies' roots and whether systemd runs given (tests).
fn group_dir_in(
    cgroup: Option<&Path>,
    unit: Option<&str>,
    roots: &[PathBuf],
    systemd: bool,
) -> Result<Option<PathBuf>, String> {
    if let Some(p) = cgroup {
        if p.is_absolute() {
            return if p.join("cgroup.procs").is_file() {
                Ok(Some(p.to_path_buf()))
            } else {
                Err(format!(
                    "{} is not a cgroup (it has no cgroup.procs)",
                    p.display()
                ))
            };
        }
        let rel = p.strip_prefix("/").unwrap_or(p);
        return roots
            .iter()
            .map(|r| r.join(rel))
            .find(|d| d.join("cgroup.procs").is_file())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "no cgroup {} under /sys/fs/cgroup (nor its memory, unified or systemd hierarchies)",
                    p.display()
                )
            });
    }
    if let Some(u) = unit {
        let unit = if u.contains('.') {
            u.to_string()
        } else {
            format!("{u}.service")
        };
        let found = roots.iter().find_map(|r| {
            ["system.slice", "user.slice"]
                .iter()
                .map(|s| r.join(s).join(&unit))
                .find(|d| d.join("cgroup.procs").is_file())
        });
        return match found {
            Some(d) => Ok(Some(d)),
            None if !systemd => Err(format!(
                "no cgroup for unit {unit}: systemd is not running here; give the cgroup with --cgroup PATH"
            )),
            None => Err(format!(
                "no cgroup for unit {unit} (looked for system.slice/{unit} under /sys/fs/cgroup): is the unit running?"
            )),
        };
    }
    Ok(None)
}

/// The memory cgroup memlens itself is in, when it is not a hierarchy's root: its kernel
/// counters are followed too.
fn own_cgroup() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    limit::cgroup_dirs(&cgroup, &mountinfo)
        .into_iter()
        .find(|(dir, root, _)| dir != root)
        .map(|(dir, _, _)| dir)
}

fn top(args: &TopArgs) -> Result<ExitCode, String> {
    let group = group_dir(args)?;
    let mut out = report::Outputs::open(args)?;
    let wake = Wake::install().map_err(|e| format!("cannot create a pipe: {e}"))?;
    supervise::stop_on_signals();
    let mut table = ProcessTable::new(Selection {
        cgroup: group.clone(),
        pattern: args.pattern.clone(),
        exclude: vec![std::process::id() as i32],
    });
    let kernel_cgroup = own_cgroup();
    let mut kernel_h = KernelHistory::default();
    let mut group_h = History::new(2048);
    let mut live = view::Live::new(args);
    out.csv_header();
    let start = Instant::now();
    let mut tick: u64 = 0;
    let end = loop {
        let before = start.elapsed();
        table.sample(|| start.elapsed().as_secs_f64())?;
        let after = start.elapsed();
        let t = ((before + after) / 2).as_secs_f64();
        let k = kernel::read(Path::new("/"), kernel_cgroup.as_deref());
        kernel_h.push(t, &k);
        let alive: Vec<&MemSample> = table
            .procs
            .iter()
            .filter(|p| p.alive() && p.last_sample == table.samples)
            .map(|p| &p.last)
            .collect();
        if group.is_some() {
            let sum = alive.iter().fold(MemSample::default(), |a, m| a.add(m));
            group_h.push(t, &sum, alive.len() as u32);
        }
        out.csv_rows(t, &table, &k);
        {
            let state = State {
                args,
                table: &table,
                group: group.as_deref().map(|g| (g, &group_h)),
                kernel: &kernel_h,
                elapsed: t,
            };
            live.update(t, &state);
        }
        if args.duration.is_some_and(|d| after >= d) {
            break End::Duration;
        }
        let interval = args.interval.as_secs_f64();
        tick = tick.max((after.as_secs_f64() / interval) as u64) + 1;
        let mut next = Duration::from_secs_f64(tick as f64 * interval);
        if let Some(d) = args.duration {
            next = next.min(d);
        }
        let mut stop = None;
        loop {
            wake.wait_until(start + next);
            if let Some(sig) = supervise::take_stop() {
                stop = Some(sig);
                break;
            }
            if start.elapsed() >= next {
                break;
            }
        }
        if let Some(sig) = stop {
            break End::Interrupted(sig);
        }
    };
    live.finish();
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu, peak) = proc::self_usage();
    let state = State {
        args,
        table: &table,
        group: group.as_deref().map(|g| (g, &group_h)),
        kernel: &kernel_h,
        elapsed,
    };
    let j = state.judge(true);
    let summary = report::Summary {
        state: &state,
        judgement: &j,
        end,
        cpu,
        peak,
    };
    out.finish_csv();
    if !args.quiet {
        crate::write_stderr(&report::text(&summary, &out.names()));
    }
    out.write_plot(&summary)?;
    out.write_json(&summary)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--unit NAME` finds the unit's cgroup under system.slice or user.slice of any
    /// hierarchy (here a fake one), adds `.service` to a bare name, and says why when it
    /// cannot.
    #[test]
    fn a_unit_is_found_by_its_cgroup() {
        let root = std::env::temp_dir().join(format!("memlens-units-{}", std::process::id()));
        let v1 = root.join("memory");
        for d in [
            root.join("system.slice/nginx.service"),
            v1.join("user.slice/app.service"),
        ] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "1\n").unwrap();
        }
        let roots = [root.clone(), v1.clone()];
        let find = |u: &str, systemd| group_dir_in(None, Some(u), &roots, systemd);
        assert_eq!(
            find("nginx.service", true),
            Ok(Some(root.join("system.slice/nginx.service")))
        );
        assert_eq!(
            find("nginx", true),
            Ok(Some(root.join("system.slice/nginx.service")))
        );
        assert_eq!(
            find("app", false),
            Ok(Some(v1.join("user.slice/app.service")))
        );
        assert_eq!(
            find("db", true),
            Err("no cgroup for unit db.service (looked for system.slice/db.service under /sys/fs/cgroup): is the unit running?".to_string())
        );
        assert_eq!(
            find("db", false),
            Err("no cgroup for unit db.service: systemd is not running here; give the cgroup with --cgroup PATH".to_string())
        );
        // --cgroup relative to a hierarchy's root.
        assert_eq!(
            group_dir_in(
                Some(Path::new("system.slice/nginx.service")),
                None,
                &roots,
                true
            ),
            Ok(Some(root.join("system.slice/nginx.service")))
        );
        std::fs::remove_dir_all(&root).ok();
    }
}
