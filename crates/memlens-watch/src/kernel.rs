//! The memory no process owns: what the kernel holds (`/proc/meminfo`: unreclaimable slab,
//! kernel stacks, page tables, vmalloc, per-CPU areas), tmpfs and shared memory (`Shmem`),
//! the huge page pool, and, inside a cgroup, the cgroup's own kernel counters
//! (`memory.stat` on cgroup v2, `memory.kmem.usage_in_bytes` on v1). `memlens top` follows
//! each as a series, judges it with the same trend as a process, and says what a growth
//! there means: a process restart cannot free it.
//!
//! Everything is read under a root directory (`/` on a machine) so that tests can feed it
//! files.

use crate::history::{History, Metric};
use crate::proc::MemSample;
use crate::trend::{Trend, TrendConfig, Verdict};
use memlens_common::units::{human_bytes, human_rate};
use std::path::Path;

/// One followed figure: its key (JSON, CSV), and its name for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    pub key: &'static str,
    pub label: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Kernel objects: a growth with no process growing is a kernel or driver leak.
    KernelObjects,
    KernelStacks,
    PageTables,
    Shmem,
    HugePages,
}

/// `/proc/meminfo` fields (kB) followed.
const MEMINFO: [(&str, Component); 7] = [
    (
        "SUnreclaim",
        Component {
            key: "slab_unreclaimable",
            label: "Slab unreclaimable",
            kind: Kind::KernelObjects,
        },
    ),
    (
        "KernelStack",
        Component {
            key: "kernel_stack",
            label: "Kernel stacks",
            kind: Kind::KernelStacks,
        },
    ),
    (
        "PageTables",
        Component {
            key: "page_tables",
            label: "Page tables",
            kind: Kind::PageTables,
        },
    ),
    (
        "Shmem",
        Component {
            key: "shmem",
            label: "Shmem (tmpfs, shared memory)",
            kind: Kind::Shmem,
        },
    ),
    (
        "Hugetlb",
        Component {
            key: "hugetlb",
            label: "Huge pages",
            kind: Kind::HugePages,
        },
    ),
    (
        "VmallocUsed",
        Component {
            key: "vmalloc",
            label: "Vmalloc",
            kind: Kind::KernelObjects,
        },
    ),
    (
        "Percpu",
        Component {
            key: "percpu",
            label: "Per-CPU",
            kind: Kind::KernelObjects,
        },
    ),
];

/// cgroup v2 `memory.stat` keys (bytes) followed.
const CGROUP_V2: [(&str, Component); 4] = [
    (
        "slab_unreclaimable",
        Component {
            key: "cgroup_slab_unreclaimable",
            label: "cgroup slab unreclaimable",
            kind: Kind::KernelObjects,
        },
    ),
    (
        "sock",
        Component {
            key: "cgroup_sock",
            label: "cgroup socket buffers",
            kind: Kind::KernelObjects,
        },
    ),
    (
        "kernel_stack",
        Component {
            key: "cgroup_kernel_stack",
            label: "cgroup kernel stacks",
            kind: Kind::KernelStacks,
        },
    ),
    (
        "shmem",
        Component {
            key: "cgroup_shmem",
            label: "cgroup shmem",
            kind: Kind::Shmem,
        },
    ),
];

/// cgroup v1: the kernel memory charged to the cgroup.
const CGROUP_V1_KMEM: Component = Component {
    key: "cgroup_kernel",
    label: "cgroup kernel memory",
    kind: Kind::KernelObjects,
};

/// One reading: (component, bytes) for each figure found.
pub type KernelSample = Vec<(Component, u64)>;

/// Parse `/proc/meminfo`: the followed fields present. `Hugetlb` (Linux 5.16+) falls back
/// to `HugePages_Total * Hugepagesize`.
pub fn parse_meminfo(s: &str) -> KernelSample {
    let mut fields: Vec<(&str, u64)> = Vec::new();
    for line in s.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let (num, kb) = match v.strip_suffix("kB") {
            Some(n) => (n.trim(), true),
            None => (v, false),
        };
        if let Ok(n) = num.parse::<u64>() {
            fields.push((k.trim(), if kb { n * 1024 } else { n }));
        }
    }
    let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| f.1);
    let mut out = Vec::new();
    for (field, c) in MEMINFO {
        let v = if field == "Hugetlb" {
            get("Hugetlb").or_else(|| Some(get("HugePages_Total")? * get("Hugepagesize")?))
        } else {
            get(field)
        };
        if let Some(v) = v {
            out.push((c, v));
        }
    }
    out
}

/// Parse a cgroup v2 `memory.stat`: the followed keys present.
pub fn parse_cgroup_stat(s: &str) -> KernelSample {
    let mut out = Vec::new();
    for (key, c) in CGROUP_V2 {
        let v = s.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        });
        if let Some(v) = v {
            out.push((c, v));
        }
    }
    out
}

/// Read the machine's figures under `root` (`root/proc/meminfo`) and, when `cgroup` is
/// the directory of a cgroup memlens is in (not the hierarchy's root), the cgroup's own.
pub fn read(root: &Path, cgroup: Option<&Path>) -> KernelSample {
    let mut out = std::fs::read_to_string(root.join("proc/meminfo"))
        .map(|s| parse_meminfo(&s))
        .unwrap_or_default();
    if let Some(dir) = cgroup {
        if let Ok(s) = std::fs::read_to_string(dir.join("memory.stat")) {
            out.extend(parse_cgroup_stat(&s));
        }
        if let Some(v) = std::fs::read_to_string(dir.join("memory.kmem.usage_in_bytes"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            out.push((CGROUP_V1_KMEM, v));
        }
    }
    out
}

/// The slab caches that hold the most memory, from `/proc/slabinfo` (root only): (name,
/// bytes = slabs * pages per slab * page size), largest first.
pub fn top_slab_caches(slabinfo: &str, page: u64, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = slabinfo
        .lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| {
            let (left, data) = l.split_once(": slabdata")?;
            let f: Vec<&str> = left.split_ascii_whitespace().collect();
            let pages_per_slab: u64 = f.get(5)?.parse().ok()?;
            let d: Vec<u64> = data
                .split_ascii_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let slabs = *d.get(1)?;
            Some((f.first()?.to_string(), slabs * pages_per_slab * page))
        })
        .filter(|c| c.1 > 0)
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Every component's series over a watch.
#[derive(Default)]
pub struct KernelHistory {
    pub series: Vec<(Component, History)>,
}

impl KernelHistory {
    pub fn push(&mut self, t: f64, sample: &KernelSample) {
        for &(c, v) in sample {
            let i = match self.series.iter().position(|s| s.0 == c) {
                Some(i) => i,
                None => {
                    self.series.push((c, History::new(1024)));
                    self.series.len() - 1
                }
            };
            let m = MemSample {
                rss: v,
                ..Default::default()
            };
            self.series[i].1.push(t, &m, 0);
        }
    }
}

/// A judged component.
#[derive(Clone, Debug)]
pub struct Finding {
    pub component: Component,
    pub now: u64,
    pub trend: Trend,
    /// What it means, when it grows; `None` otherwise.
    pub text: Option<String>,
}

/// Judge each component. `processes_growing`: whether some process was judged growing;
/// `slab_top`: the largest slab caches, if `/proc/slabinfo` could be read.
pub fn judge(
    h: &KernelHistory,
    processes_growing: bool,
    slab_top: Option<&[(String, u64)]>,
    cfg: &TrendConfig,
) -> Vec<Finding> {
    h.series
        .iter()
        .map(|(c, hist)| {
            let trend = hist.trend(Metric::Rss, cfg);
            let now = hist
                .points()
                .last()
                .map_or(0, |p| p.min(Metric::Rss) as u64);
            let text = (trend.verdict == Verdict::Growing)
                .then(|| explain(c, &trend, processes_growing, slab_top));
            Finding {
                component: *c,
                now,
                trend,
                text,
            }
        })
        .collect()
}

fn explain(
    c: &Component,
    tr: &Trend,
    processes_growing: bool,
    slab_top: Option<&[(String, u64)]>,
) -> String {
    let head = format!("{} {}", c.label, human_rate(tr.slope));
    match c.kind {
        Kind::KernelObjects if !processes_growing => {
            let mut s = format!(
                "{head} while no process grows: a kernel or driver leak; only a reboot frees it"
            );
            if c.key.contains("slab") || c.key == "cgroup_kernel" {
                s.push_str("; look at /proc/slabinfo");
                match slab_top {
                    Some(top) if !top.is_empty() => {
                        let caches: Vec<String> = top
                            .iter()
                            .map(|(n, b)| format!("{n} {}", human_bytes(*b)))
                            .collect();
                        s.push_str(&format!(": top caches {}", caches.join(", ")));
                    }
                    Some(_) => {}
                    None => s.push_str(" (readable by root only)"),
                }
            }
            s
        }
        Kind::KernelObjects => format!(
            "{head}, and processes grow too: kernel objects they hold (sockets, files, \
             inodes) grow with them; see whether it stops when the growing process is restarted"
        ),
        Kind::KernelStacks => format!(
            "{head}: threads pile up (each holds a kernel stack); count them with `ps -eLf | wc -l`"
        ),
        Kind::PageTables if processes_growing => {
            format!("{head}: the growing processes map more memory; it goes with them")
        }
        Kind::PageTables => format!(
            "{head} while no process grows: more and more processes, or mappings that are not \
             touched; compare `ps -e | wc -l` over time"
        ),
        Kind::Shmem => format!(
            "{head}: files in tmpfs (/dev/shm, /run, a tmpfs /tmp) or shared memory segments \
             (`ipcs -m`) pile up; no process owns them: deleting them frees the memory, \
             restarting a program does not"
        ),
        Kind::HugePages => format!("{head}: the huge page pool was enlarged (vm.nr_hugepages)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn meminfo(sunreclaim_kb: u64, shmem_kb: u64) -> String {
        format!(
            "MemTotal:       24683784 kB\nMemFree:         4572156 kB\nShmem:  {shmem_kb} kB\n\
             Slab:             857504 kB\nSReclaimable:     771444 kB\nSUnreclaim: {sunreclaim_kb} kB\n\
             KernelStack:        1808 kB\nPageTables:         1444 kB\nVmallocUsed:       14620 kB\n\
             Percpu:              744 kB\nHugePages_Total:       4\nHugePages_Free:        4\n\
             Hugepagesize:       2048 kB\n"
        )
    }

    fn get(s: &KernelSample, key: &str) -> Option<u64> {
        s.iter().find(|c| c.0.key == key).map(|c| c.1)
    }

    #[test]
    fn parses_meminfo_and_cgroup_stat() {
        let s = parse_meminfo(&meminfo(86060, 10220));
        assert_eq!(get(&s, "slab_unreclaimable"), Some(86060 * 1024));
        assert_eq!(get(&s, "shmem"), Some(10220 * 1024));
        assert_eq!(get(&s, "kernel_stack"), Some(1808 * 1024));
        assert_eq!(get(&s, "page_tables"), Some(1444 * 1024));
        assert_eq!(get(&s, "vmalloc"), Some(14620 * 1024));
        assert_eq!(get(&s, "percpu"), Some(744 * 1024));
        // No Hugetlb line: the pool's size from its page count.
        assert_eq!(get(&s, "hugetlb"), Some(4 * 2048 * 1024));
        assert_eq!(
            get(
                &parse_meminfo("Hugetlb: 1024 kB\nHugePages_Total: 9\n"),
                "hugetlb"
            ),
            Some(1 << 20)
        );
        let c = parse_cgroup_stat(
            "anon 100\nfile 5\nkernel_stack 16384\nsock 0\nshmem 4096\nslab_unreclaimable 999\n",
        );
        assert_eq!(get(&c, "cgroup_kernel_stack"), Some(16384));
        assert_eq!(get(&c, "cgroup_slab_unreclaimable"), Some(999));
        assert_eq!(get(&c, "cgroup_shmem"), Some(4096));
        assert_eq!(get(&c, "cgroup_sock"), Some(0));
    }

    #[test]
    fn reads_under_a_root_directory() {
        let root = std::env::temp_dir().join(format!("memlens-kernel-{}", std::process::id()));
        let cg = root.join("cg");
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(root.join("proc/meminfo"), meminfo(1000, 2000)).unwrap();
        std::fs::write(cg.join("memory.kmem.usage_in_bytes"), "123456\n").unwrap();
        let s = read(&root, Some(&cg));
        assert_eq!(get(&s, "slab_unreclaimable"), Some(1000 * 1024));
        assert_eq!(get(&s, "cgroup_kernel"), Some(123456));
        assert_eq!(read(&root, None).len(), 7);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn slab_caches_largest_first() {
        let info = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
dentry            1000   1050    192   21    1 : tunables    0    0    0 : slabdata     50     50      0\n\
kmalloc-4k         800    800   4096    8    8 : tunables    0    0    0 : slabdata    100    100      0\n\
empty                0      0     64   64    1 : tunables    0    0    0 : slabdata      0      0      0\n";
        let top = top_slab_caches(info, 4096, 5);
        assert_eq!(
            top,
            vec![
                ("kmalloc-4k".to_string(), 100 * 8 * 4096),
                ("dentry".to_string(), 50 * 4096)
            ]
        );
    }

    /// Slab unreclaimable growing 120 MiB/h for an hour, everything else flat.
    fn hour_of_slab_growth() -> KernelHistory {
        let mut h = KernelHistory::default();
        for i in 0..=360u64 {
            let t = i as f64 * 10.0;
            let slab_kb = (86 * MIB + i * 120 * MIB / 360) / 1024;
            h.push(t, &parse_meminfo(&meminfo(slab_kb, 10220)));
        }
        h
    }

    #[test]
    fn slab_growth_with_no_process_growing_is_a_kernel_leak() {
        let h = hour_of_slab_growth();
        let top = vec![("kmalloc-4k".to_string(), 120 * MIB)];
        let f = judge(&h, false, Some(&top), &TrendConfig::default());
        let slab = f
            .iter()
            .find(|f| f.component.key == "slab_unreclaimable")
            .unwrap();
        assert_eq!(slab.trend.verdict, Verdict::Growing);
        assert_eq!(
            slab.text.as_deref(),
            Some(
                "Slab unreclaimable +120.00 MiB/h while no process grows: a kernel or driver \
                 leak; only a reboot frees it; look at /proc/slabinfo: top caches kmalloc-4k \
                 120.00 MiB"
            )
        );
        // The flat ones say nothing.
        let shmem = f.iter().find(|f| f.component.key == "shmem").unwrap();
        assert_eq!(shmem.trend.verdict, Verdict::Stable);
        assert_eq!(shmem.text, None);
        assert_eq!(shmem.now, 10220 * 1024);
        // Without slabinfo, it says who may read it; with a process growing, it is
        // not called a kernel leak.
        let f = judge(&h, false, None, &TrendConfig::default());
        assert!(f[0]
            .text
            .as_deref()
            .unwrap()
            .ends_with("look at /proc/slabinfo (readable by root only)"));
        let f = judge(&h, true, None, &TrendConfig::default());
        let t = f[0].text.as_deref().unwrap();
        assert!(
            t.starts_with("Slab unreclaimable +120.00 MiB/h, and processes grow too"),
            "{t}"
        );
        assert!(!t.contains("reboot"), "{t}");
    }

    #[test]
    fn shmem_growth_is_files_nobody_owns() {
        let mut h = KernelHistory::default();
        for i in 0..=100u64 {
            h.push(i as f64, &parse_meminfo(&meminfo(86060, 10220 + i * 1024)));
        }
        let f = judge(&h, false, None, &TrendConfig::default());
        let shmem = f.iter().find(|f| f.component.key == "shmem").unwrap();
        assert_eq!(shmem.trend.verdict, Verdict::Growing);
        let t = shmem.text.as_deref().unwrap();
        assert!(
            t.starts_with("Shmem (tmpfs, shared memory) +3.52 GiB/h: files in tmpfs"),
            "{t}"
        );
    }
}
