//! Every process of the machine (or of a cgroup) over time, for `memlens top`.
//!
//! A process is identified by its pid **and** its start time (`/proc/PID/stat` field 22):
//! a pid that is reused by another program is another process. Each process is opened once
//! as a `/proc/PID` directory ([`ProcDir`]) and read through it afterwards, so a reading
//! can never come from a successor with the same pid: once the process is gone, the reads
//! through the old directory fail.
//!
//! The cost per process and sample is one `openat` + `read` of `/proc/PID/statm` (RSS and
//! resident anonymous / shared pages: a few counters, no page-table walk, unlike
//! `smaps_rollup`). `stat`, `cmdline` and `exe` are read once, when the process is first
//! seen. Listing `/proc` (or the cgroup's `cgroup.procs`) finds new processes.
//!
//! A process that exits keeps its history until the end of the watch if it lived for at
//! least [`KEEP_EXITED_AFTER`] samples (at most [`MAX_EXITED`] of them, the oldest
//! forgotten first); a new process with the same command line as one that exited is its
//! **restart**, linked to it, so that the growth before and after can be compared.

use crate::history::{History, Metric};
use crate::proc::{MemSample, OpenError, ProcDir, ReadError, PF_KTHREAD};
use crate::trend::{Trend, TrendConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Points kept per process (between this and twice as many): the trend uses at most 120.
pub const HISTORY_CAP: usize = 256;
/// An exited process seen in fewer samples than this is forgotten (`ls`, a compiler...).
pub const KEEP_EXITED_AFTER: u64 = 3;
/// Samples skipped between two looks at a process the pattern leaves out: a fork takes
/// its program's command line only when it execs, which may be long after it was first
/// seen (and a process may exec another program at any time), so it is looked at again,
/// at a quarter of the sampling rate, for as long as it lives.
pub const RECHECK_SKIP: u32 = 3;
/// Never looked at again while it lives: a kernel thread, a zombie.
const NEVER: u32 = u32::MAX;
/// Table samples for which a short-lived exited process is kept, waiting for a restart.
pub const KEEP_SHORT_EXITED_FOR: u64 = 20;
/// Exited processes kept for the report.
pub const MAX_EXITED: usize = 256;

/// A process: its pid and start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    pub pid: i32,
    pub start: u64,
}

/// One process followed by the table.
#[derive(Debug)]
pub struct Tracked {
    pub key: ProcKey,
    pub comm: String,
    pub cmdline: Vec<String>,
    pub exe: Option<PathBuf>,
    /// Seconds since the watch started: first and last sample, and when it was found gone.
    pub first_t: f64,
    pub last_t: f64,
    pub exited_at: Option<f64>,
    pub history: History,
    pub first: MemSample,
    pub last: MemSample,
    /// Index (in [`ProcessTable::procs`]) of the process this one restarted, and of the
    /// one that restarted it.
    pub restart_of: Option<usize>,
    pub restarted_by: Option<usize>,
    /// The table sample (1, 2...) of its last reading.
    pub last_sample: u64,
    /// The table sample in which it was found gone.
    exited_sample: u64,
    dir: Option<ProcDir>,
}

impl Tracked {
    /// The command line as one string, or `[comm]` when it has none.
    pub fn label(&self) -> String {
        if self.cmdline.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.cmdline.join(" ")
        }
    }

    pub fn alive(&self) -> bool {
        self.exited_at.is_none()
    }

    /// Its trend, with its own first sample as time zero.
    pub fn trend(&self, metric: Metric, cfg: &TrendConfig) -> Trend {
        self.history
            .trend_between(metric, cfg, self.first_t, f64::INFINITY)
    }
}

/// Which processes the table follows.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only the processes of this cgroup directory and the cgroups below it.
    pub cgroup: Option<PathBuf>,
    /// Only those whose command line (or `[comm]`) matches this shell wildcard.
    pub pattern: Option<String>,
    /// Processes never followed (memlens itself).
    pub exclude: Vec<i32>,
}

/// What one sample of the table found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Processes read in this sample.
    pub alive: usize,
    pub new: usize,
    pub exited: usize,
    /// Processes that could not be followed because memlens ran out of file descriptors.
    pub no_fd: usize,
}

/// The processes of a watch.
pub struct ProcessTable {
    pub procs: Vec<Tracked>,
    /// pid -> index of the live process with that pid.
    live: HashMap<i32, usize>,
    /// Pids seen that the selection leaves out (or that have no memory: kernel threads),
    /// with the number of samples to skip before looking at them again ([`NEVER`]:
    /// not while they live).
    ignored: HashMap<i32, u32>,
    selection: Selection,
    proc_root: PathBuf,
    buf: String,
    pub samples: u64,
    /// Processes forgotten on exit (too short-lived, or beyond [`MAX_EXITED`]).
    pub forgotten: u64,
}

impl ProcessTable {
    pub fn new(selection: Selection) -> ProcessTable {
        raise_fd_limit();
        ProcessTable {
            procs: Vec::new(),
            live: HashMap::new(),
            ignored: HashMap::new(),
            selection,
            proc_root: PathBuf::from("/proc"),
            buf: String::new(),
            samples: 0,
            forgotten: 0,
        }
    }

    /// The pids to look at: every `/proc/N`, or the cgroup's `cgroup.procs`, recursively.
    fn pids(&self) -> Result<Vec<i32>, String> {
        match &self.selection.cgroup {
            Some(dir) => cgroup_pids(dir),
            None => {
                let rd = std::fs::read_dir(&self.proc_root)
                    .map_err(|e| format!("cannot list {}: {e}", self.proc_root.display()))?;
                Ok(rd
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                    .collect())
            }
        }
    }

    /// Read every selected process once; `clock()` gives the seconds since the watch
    /// started, and stamps each process's reading.
    pub fn sample(&mut self, clock: impl Fn() -> f64) -> Result<ScanStats, String> {
        let pids = self.pids()?;
        self.samples += 1;
        let mut stats = ScanStats::default();
        let mut seen: HashMap<i32, ()> = HashMap::with_capacity(pids.len());
        let mut new_ones = Vec::new();
        for pid in pids {
            if pid <= 0 || self.selection.exclude.contains(&pid) || seen.contains_key(&pid) {
                continue;
            }
            seen.insert(pid, ());
            if let Some(&i) = self.live.get(&pid) {
                let dir = self.procs[i]
                    .dir
                    .as_ref()
                    .expect("a live process has its dir");
                let r = dir.statm(&mut self.buf);
                let t = clock();
                match r {
                    Ok(m) => {
                        let p = &mut self.procs[i];
                        p.history.push(t, &m, 1);
                        p.last = m;
                        p.last_t = t;
                        p.last_sample = self.samples;
                        stats.alive += 1;
                        continue;
                    }
                    Err(ReadError::Gone) | Err(ReadError::NoMemory) => {
                        // Gone: the pid, if listed, belongs to a new process now.
                        self.exit(i, t);
                        stats.exited += 1;
                    }
                    Err(ReadError::Denied(_)) => continue,
                }
            }
            match self.ignored.get_mut(&pid) {
                Some(n) if *n == NEVER => continue,
                Some(n) if *n > 0 => {
                    *n -= 1;
                    continue;
                }
                _ => {}
            }
            match self.open(pid, &clock) {
                Found::Tracked(i) => {
                    new_ones.push(i);
                    stats.new += 1;
                    stats.alive += 1;
                }
                Found::Ignored(skip) => {
                    self.ignored.insert(pid, skip);
                }
                Found::NoFd => stats.no_fd += 1,
                Found::Nothing => {}
            }
        }
        // Processes no longer listed: exited (or moved out of the cgroup).
        let gone: Vec<usize> = self
            .live
            .iter()
            .filter(|(pid, _)| !seen.contains_key(pid))
            .map(|(_, &i)| i)
            .collect();
        let t = clock();
        for i in gone {
            self.exit(i, t);
            stats.exited += 1;
        }
        self.ignored.retain(|pid, _| seen.contains_key(pid));
        for i in new_ones {
            self.link_restart(i);
        }
        self.forget_old_exited();
        Ok(stats)
    }

    fn open(&mut self, pid: i32, clock: &impl Fn() -> f64) -> Found {
        let dir = match ProcDir::open(pid) {
            Ok(d) => d,
            Err(OpenError::NoSuchProcess) => return Found::Nothing,
            Err(OpenError::NoFd(_)) => return Found::NoFd,
            Err(OpenError::Other(_)) => return Found::Nothing,
        };
        let Ok(st) = dir.stat() else {
            return Found::Nothing;
        };
        if st.flags & PF_KTHREAD != 0 {
            return Found::Ignored(NEVER);
        }
        let cmdline = dir.cmdline();
        let label = if cmdline.is_empty() {
            format!("[{}]", st.comm)
        } else {
            cmdline.join(" ")
        };
        if let Some(p) = &self.selection.pattern {
            if !memlens_common::glob::glob_match(p.as_bytes(), label.as_bytes()) {
                return Found::Ignored(RECHECK_SKIP);
            }
        }
        let Ok(m) = dir.statm(&mut self.buf) else {
            // A zombie, or exiting: nothing to follow.
            return Found::Ignored(NEVER);
        };
        let t = clock();
        let mut history = History::new(HISTORY_CAP);
        history.push(t, &m, 1);
        self.procs.push(Tracked {
            key: ProcKey {
                pid,
                start: st.start_time,
            },
            comm: st.comm,
            cmdline,
            exe: dir.exe(),
            first_t: t,
            last_t: t,
            exited_at: None,
            history,
            first: m,
            last: m,
            restart_of: None,
            restarted_by: None,
            last_sample: self.samples,
            exited_sample: 0,
            dir: Some(dir),
        });
        let i = self.procs.len() - 1;
        self.live.insert(pid, i);
        Found::Tracked(i)
    }

    fn exit(&mut self, i: usize, t: f64) {
        let p = &mut self.procs[i];
        p.exited_at = Some(t);
        p.exited_sample = self.samples;
        p.dir = None;
        self.live.remove(&p.key.pid);
    }

    /// A new process whose command line is that of a process that exited (and was not
    /// restarted yet) is its restart: the most recent such process.
    fn link_restart(&mut self, i: usize) {
        if self.procs[i].cmdline.is_empty() {
            return;
        }
        let prev = (0..self.procs.len())
            .filter(|&j| {
                let q = &self.procs[j];
                j != i
                    && q.exited_at.is_some()
                    && q.restarted_by.is_none()
                    && q.cmdline == self.procs[i].cmdline
            })
            .max_by(|&a, &b| {
                let (x, y) = (&self.procs[a], &self.procs[b]);
                x.exited_at
                    .partial_cmp(&y.exited_at)
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        if let Some(j) = prev {
            self.procs[j].restarted_by = Some(i);
            self.procs[i].restart_of = Some(j);
        }
    }

    /// Drop short-lived exited processes, and the oldest exited ones beyond
    /// [`MAX_EXITED`], unless they are part of a restart. Indices change: rebuilt.
    fn forget_old_exited(&mut self) {
        let exited: Vec<usize> = (0..self.procs.len())
            .filter(|&i| self.procs[i].exited_at.is_some())
            .collect();
        let linked = |p: &Tracked| p.restart_of.is_some() || p.restarted_by.is_some();
        let mut drop: Vec<bool> = vec![false; self.procs.len()];
        for &i in &exited {
            let p = &self.procs[i];
            // Kept a while even if short: its restart may take a few samples to appear.
            let young = self.samples < p.exited_sample + KEEP_SHORT_EXITED_FOR;
            if p.history.samples() < KEEP_EXITED_AFTER && !linked(p) && !young {
                drop[i] = true;
            }
        }
        let mut kept_exited: Vec<usize> = exited.iter().copied().filter(|&i| !drop[i]).collect();
        if kept_exited.len() > MAX_EXITED {
            kept_exited.retain(|&i| !linked(&self.procs[i]));
            let excess = kept_exited.len().saturating_sub(MAX_EXITED);
            for &i in kept_exited.iter().take(excess) {
                drop[i] = true;
            }
        }
        if !drop.iter().any(|&d| d) {
            return;
        }
        self.forgotten += drop.iter().filter(|&&d| d).count() as u64;
        let mut new_index = vec![usize::MAX; self.procs.len()];
        let mut n = 0;
        for (i, &d) in drop.iter().enumerate() {
            if !d {
                new_index[i] = n;
                n += 1;
            }
        }
        let old = std::mem::take(&mut self.procs);
        for (i, mut p) in old.into_iter().enumerate() {
            if drop[i] {
                continue;
            }
            p.restart_of = p
                .restart_of
                .map(|j| new_index[j])
                .filter(|&j| j != usize::MAX);
            p.restarted_by = p
                .restarted_by
                .map(|j| new_index[j])
                .filter(|&j| j != usize::MAX);
            self.procs.push(p);
        }
        self.live = self
            .procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.alive())
            .map(|(i, p)| (p.key.pid, i))
            .collect();
    }

    /// The processes alive now.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The chain of restarts that process `i` belongs to, oldest first.
    pub fn chain(&self, i: usize) -> Vec<usize> {
        let mut first = i;
        while let Some(j) = self.procs[first].restart_of {
            first = j;
        }
        let mut out = vec![first];
        while let Some(j) = self.procs[*out.last().expect("non-empty")].restarted_by {
            out.push(j);
        }
        out
    }
}

enum Found {
    Tracked(usize),
    /// Left out; the samples to skip before looking at it again (`NEVER`: not again).
    Ignored(u32),
    NoFd,
    Nothing,
}

/// The pids of a cgroup and of every cgroup below it (`cgroup.procs`, v1 and v2).
pub fn cgroup_pids(dir: &Path) -> Result<Vec<i32>, String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(d) = dirs.pop() {
        match std::fs::read_to_string(d.join("cgroup.procs")) {
            Ok(s) => out.extend(
                s.split_ascii_whitespace()
                    .filter_map(|w| w.parse::<i32>().ok()),
            ),
            Err(e) if first => {
                return Err(format!(
                    "cannot read {}: {e}",
                    d.join("cgroup.procs").display()
                ))
            }
            Err(_) => {}
        }
        first = false;
        if let Ok(rd) = std::fs::read_dir(&d) {
            dirs.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    Ok(out)
}

/// One fd per followed process: lift the soft limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    fn sleeper(arg: &str) -> Child {
        Command::new("sleep").arg(arg).spawn().unwrap()
    }

    #[test]
    fn follows_exits_and_links_restarts() {
        // A duration no other process uses, so the pattern selects only ours.
        let arg = format!("3{}.5", std::process::id() % 1000);
        let mut table = ProcessTable::new(Selection {
            pattern: Some(format!("sleep {arg}")),
            ..Default::default()
        });
        let mut a = sleeper(&arg);
        // Wait until the child has exec'd sleep (its command line is sleep's).
        let want = vec!["sleep".to_string(), arg.clone()];
        let mut t = 0.0;
        while !table.procs.iter().any(|p| p.cmdline == want) {
            table.sample(|| t).unwrap();
            t += 1.0;
            assert!(t < 5000.0, "the child never showed up");
        }
        for _ in 0..4 {
            table.sample(|| t).unwrap();
            t += 1.0;
        }
        assert_eq!(table.live_count(), 1);
        let first = table.procs.iter().position(|p| p.cmdline == want).unwrap();
        assert_eq!(table.procs[first].key.pid, a.id() as i32);
        assert!(table.procs[first].last.rss > 0);
        a.kill().unwrap();
        a.wait().unwrap();
        let s = table.sample(|| t).unwrap();
        t += 1.0;
        assert_eq!(s.exited, 1);
        assert_eq!(table.procs[first].exited_at, Some(t - 1.0));
        // The same command again: a restart of the first.
        let mut b = sleeper(&arg);
        while table.procs.iter().filter(|p| p.cmdline == want).count() < 2 {
            table.sample(|| t).unwrap();
            t += 1.0;
            assert!(t < 10000.0, "the restart never showed up");
        }
        let second = table.procs.iter().rposition(|p| p.cmdline == want).unwrap();
        assert_ne!(table.procs[first].key, table.procs[second].key);
        assert_eq!(table.procs[second].restart_of, Some(first));
        assert_eq!(table.procs[first].restarted_by, Some(second));
        assert_eq!(table.chain(second), vec![first, second]);
        b.kill().unwrap();
        b.wait().unwrap();
    }

    #[test]
    fn a_cgroup_that_cannot_be_read_is_one_sentence() {
        let e = cgroup_pids(Path::new("/no/such/cgroup")).unwrap_err();
        assert!(
            e.starts_with("cannot read /no/such/cgroup/cgroup.procs: "),
            "{e}"
        );
    }
}
