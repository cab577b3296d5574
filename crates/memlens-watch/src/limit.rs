//! The memory a process can reach: its cgroup's limit, or the machine's memory.
//!
//! cgroup v2: `memory.max` of the process's cgroup and of every ancestor up to the mount
//! point (the smallest wins). cgroup v1: `memory.limit_in_bytes` of the memory
//! controller's hierarchy, the same way. When the cgroup path named in
//! `/proc/PID/cgroup` does not exist under the mount (a cgroup namespace shows it
//! differently), the mount point itself is the process's cgroup. `MemTotal` from
//! `/proc/meminfo` caps it all.

use std::path::{Path, PathBuf};

/// A limit and where it came from (`"cgroup memory.max"`, `"MemTotal"`, `"--limit"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub source: String,
}

/// The limit that applies to `pid`, if any can be read.
pub fn detect(pid: i32) -> Option<Limit> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_mem_total(&m));
    let cg = cgroup_dirs(&cgroup, &mountinfo)
        .into_iter()
        .filter_map(|(dir, root, file)| {
            smallest_limit(&dir, &root, file).map(|b| Limit {
                bytes: b,
                source: format!("cgroup {file}"),
            })
        })
        .min_by_key(|l| l.bytes);
    let total = mem_total.map(|b| Limit {
        bytes: b,
        source: "MemTotal".into(),
    });
    match (cg, total) {
        (Some(c), Some(t)) => Some(if c.bytes < t.bytes { c } else { t }),
        (c, t) => c.or(t),
    }
}

pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// (the process's cgroup directory, the hierarchy's mount point, the limit file name)
/// for each memory hierarchy the process is in.
pub fn cgroup_dirs(cgroup: &str, mountinfo: &str) -> Vec<(PathBuf, PathBuf, &'static str)> {
    let mut out = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (fstype, file, want) = if controllers.is_empty() {
            ("cgroup2", "memory.max", None)
        } else if controllers.split(',').any(|c| c == "memory") {
            ("cgroup", "memory.limit_in_bytes", Some("memory"))
        } else {
            continue;
        };
        for (root, mount) in mounts(mountinfo, fstype, want) {
            let rel = path.strip_prefix(root.as_str()).unwrap_or(path);
            let rel = rel.trim_start_matches('/');
            let dir = if rel.is_empty() {
                mount.clone()
            } else {
                mount.join(rel)
            };
            let dir = if dir.is_dir() { dir } else { mount.clone() };
            out.push((dir, mount, file));
        }
    }
    out
}

/// (root within the hierarchy, mount point) of the mounts of `fstype`, with the super
/// option `want` for v1.
fn mounts(mountinfo: &str, fstype: &str, want: Option<&str>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.is_empty() || r[0] != fstype {
            continue;
        }
        if let Some(w) = want {
            if !r.get(2).is_some_and(|o| o.split(',').any(|x| x == w)) {
                continue;
            }
        }
        out.push((l[3].to_string(), PathBuf::from(unescape(l[4]))));
    }
    out
}

/// mountinfo escapes spaces and friends as `\040`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The smallest limit in `file` from `dir` up to `root`; "max" and v1's "unlimited"
/// (a number near 2^63) are no limit.
fn smallest_limit(dir: &Path, root: &Path, file: &str) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut d = Some(dir);
    while let Some(cur) = d {
        if let Some(v) = std::fs::read_to_string(cur.join(file))
            .ok()
            .and_then(|s| parse_limit(&s))
        {
            best = Some(best.map_or(v, |b| b.min(v)));
        }
        if cur == root {
            break;
        }
        d = cur.parent().filter(|p| p.starts_with(root));
    }
    best
}

pub fn parse_limit(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    (v < 1 << 62).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("536870912\n"), Some(512 << 20));
        assert_eq!(
            parse_mem_total("MemTotal:       24684092 kB\nMemFree: 1 kB\n"),
            Some(24684092 * 1024)
        );
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn finds_the_hierarchies() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let cgroup = "8:pids:/\n4:memory:/no/such/group\n1:cpu:/\n0::/\n";
        let d = cgroup_dirs(cgroup, mountinfo);
        assert_eq!(
            d,
            vec![
                (
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    "memory.limit_in_bytes"
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/unified"),
                    PathBuf::from("/sys/fs/cgroup/unified"),
                    "memory.max"
                ),
            ]
        );
    }

    #[test]
    fn walks_up_to_the_smallest() {
        let base = std::env::temp_dir().join(format!("memlens-cg-{}", std::process::id()));
        let leaf = base.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(base.join("memory.max"), "max\n").unwrap();
        std::fs::write(base.join("a/memory.max"), "1000\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "5000\n").unwrap();
        assert_eq!(smallest_limit(&leaf, &base, "memory.max"), Some(1000));
        let mountinfo = format!("1 1 0:1 / {} rw - cgroup2 cgroup2 rw\n", base.display());
        let d = cgroup_dirs("0::/a/b\n", &mountinfo);
        assert_eq!(d, vec![(leaf.clone(), base.clone(), "memory.max")]);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn this_machine_has_a_limit() {
        let l = detect(std::process::id() as i32).unwrap();
        assert!(l.bytes > 0, "{l:?}");
    }
}
