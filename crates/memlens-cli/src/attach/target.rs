//! What `memlens attach` checks about a process before touching it, and what it reads
//! of it: its status, its memory map, the symbols of the files mapped there.

use std::fs;
use std::path::PathBuf;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug)]
pub struct Map {
    pub start: u64,
    pub end: u64,
    pub exec: bool,
    pub offset: u64,
    pub path: String,
}

impl Map {
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A process memlens may attach to.
pub struct Target {
    pub pid: i32,
    /// Its name (`comm`).
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub maps: Vec<Map>,
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

fn user_name(uid: u32) -> String {
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Whether this process has CAP_SYS_PTRACE in its effective set.
fn can_ptrace_anyone() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_field(&s, "CapEff").and_then(|v| u64::from_str_radix(v, 16).ok()))
        .is_some_and(|caps| caps & (1 << 19) != 0)
}

/// The Yama setting, if the kernel has Yama.
pub fn ptrace_scope() -> Option<u32> {
    fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Why ptrace would be refused, as one sentence, or `None` if nothing says it would.
fn permission_problem(pid: i32, uids: &[u32]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    refusal(pid, uids, euid, can_ptrace_anyone(), ptrace_scope())
}

/// [`permission_problem`] from its inputs: the target's uids, ours, whether we have
/// CAP_SYS_PTRACE, Yama's setting.
fn refusal(pid: i32, uids: &[u32], euid: u32, cap: bool, scope: Option<u32>) -> Option<String> {
    if !cap && uids.iter().any(|&u| u != euid) {
        let owner = uids.first().copied().unwrap_or(0);
        return Some(format!(
            "process {pid} belongs to {} and memlens runs as {}: run memlens attach as that user, \
             or as root",
            user_name(owner),
            user_name(euid)
        ));
    }
    match scope {
        Some(3) => Some(
            "kernel.yama.ptrace_scope is 3, which turns ptrace off until the next reboot: \
             memlens attach cannot work on this machine (use `memlens watch --pid`)"
                .to_string(),
        ),
        Some(2) if !cap => Some(format!(
            "kernel.yama.ptrace_scope is 2, which lets only processes with CAP_SYS_PTRACE trace \
             others: run memlens attach {pid} as root"
        )),
        Some(1) if !cap => Some(format!(
            "kernel.yama.ptrace_scope is 1, which lets a process be traced only by its ancestors: \
             run memlens attach {pid} as root (or with CAP_SYS_PTRACE), or allow it with \
             `sudo sysctl kernel.yama.ptrace_scope=0`"
        )),
        _ => None,
    }
}

/// A sentence for a ptrace refusal the checks did not foresee (EPERM from the kernel).
pub fn ptrace_refused(pid: i32, e: &std::io::Error) -> String {
    let uids = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .map(|s| uids_of(&s))
        .unwrap_or_default();
    if let Some(p) = permission_problem(pid, &uids) {
        return p;
    }
    format!(
        "the kernel refused to let memlens trace process {pid} ({e}): a setuid or otherwise \
         non-dumpable program, a container without CAP_SYS_PTRACE, or a security module \
         (SELinux, AppArmor) forbids it; run memlens attach as root in the process's own \
         container"
    )
}

fn uids_of(status: &str) -> Vec<u32> {
    status_field(status, "Uid")
        .map(|v| {
            v.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Read /proc/PID/maps.
pub fn read_maps(pid: i32) -> std::io::Result<Vec<Map>> {
    let text = fs::read_to_string(format!(
        "/proc/{}/maps",
        crate::snapshot::live_task(pid as u32)
    ))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(offset)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let _dev = f.next();
        let _inode = f.next();
        let path = f.collect::<Vec<_>>().join(" ");
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(lo, 16),
            u64::from_str_radix(hi, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        out.push(Map {
            start,
            end,
            exec: perms.as_bytes().get(2) == Some(&b'x'),
            offset,
            path,
        });
    }
    Ok(out)
}

/// Check everything that can be checked without ptrace; `Err` is the one sentence of a
/// refusal.
pub fn inspect(pid: i32) -> Result<Target, String> {
    let status = match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => s,
        Err(_) => return Err(format!("there is no process {pid}")),
    };
    let name = status_field(&status, "Name").unwrap_or("?").to_string();
    let state = status_field(&status, "State").unwrap_or("");
    if state.starts_with('Z') || state.starts_with('X') {
        // A zombie main thread with live threads beside it: `pthread_exit` in `main`.
        if crate::snapshot::live_task(pid as u32) != pid as u32 {
            return Err(format!(
                "process {pid} ({name}) runs on without its main thread (it called \
                 pthread_exit), which memlens attach cannot take; record it from its start \
                 with memlens run"
            ));
        }
        return Err(format!("process {pid} ({name}) has exited"));
    }
    if status_field(&status, "Tgid").and_then(|t| t.parse::<i32>().ok()) != Some(pid) {
        return Err(format!(
            "{pid} is a thread of process {}, not a process: attach to that one",
            status_field(&status, "Tgid").unwrap_or("?")
        ));
    }
    let tracer: i32 = status_field(&status, "TracerPid")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    if tracer != 0 {
        let who = fs::read_to_string(format!("/proc/{tracer}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| "?".to_string());
        return Err(format!(
            "process {pid} ({name}) is already being traced by process {tracer} ({who}): \
             a process has one tracer at a time, so detach that debugger or tracer first"
        ));
    }
    if state.starts_with('T') || state.starts_with('t') {
        return Err(format!(
            "process {pid} ({name}) is stopped (Ctrl-Z or SIGSTOP): continue it with \
             `kill -CONT {pid}`, then attach"
        ));
    }
    let uids = uids_of(&status);
    let gid = status_field(&status, "Gid")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    if let Some(p) = permission_problem(pid, &uids) {
        return Err(p);
    }
    let maps = read_maps(pid)
        .map_err(|e| format!("cannot read the memory map of process {pid} ({name}): {e}"))?;
    if maps.is_empty() {
        return Err(format!(
            "process {pid} ({name}) has no memory map: it is a kernel thread or is exiting"
        ));
    }
    let has = |prefix: &str| maps.iter().any(|m| m.file_name().starts_with(prefix));
    if has("ld-musl") || has("libc.musl") {
        return Err(format!(
            "process {pid} ({name}) runs on musl, not glibc: memlens attach needs glibc's \
             dynamic loader and allocator; use `memlens watch --pid {pid}` to follow its memory"
        ));
    }
    if has("ld-linux.so.2") {
        return Err(format!(
            "process {pid} ({name}) is a 32-bit program: memlens records x86_64 programs only"
        ));
    }
    if !has("ld-linux") && !has("ld64.so") {
        return Err(format!(
            "process {pid} ({name}) is a statically linked program: memlens attach loads its \
             recorder with the program's own dlopen, which a static program does not have; \
             use `memlens watch --pid {pid}` to follow its memory"
        ));
    }
    if !has("libc.so.6") && t_starting(pid) {
        return Err(format!(
            "process {pid} ({name}) is still starting (its libraries are not loaded yet): \
             attach once it runs"
        ));
    }
    if !has("libc.so.6") {
        return Err(format!(
            "process {pid} ({name}) is not glibc-based (no libc.so.6 is loaded): memlens \
             attach needs glibc's allocator; use `memlens watch --pid {pid}` to follow its memory"
        ));
    }
    Ok(Target {
        pid,
        name,
        uid: uids.first().copied().unwrap_or(0),
        gid,
        maps,
    })
}

/// Whether the process is still in its dynamic loader: no libc mapped yet, but a
/// program that links libc dynamically (its `exe` needs libc.so.6).
fn t_starting(pid: i32) -> bool {
    fs::read(format!(
        "/proc/{}/exe",
        crate::snapshot::live_task(pid as u32)
    ))
    .ok()
    .is_some_and(|d| d.windows(9).any(|w| w == b"libc.so.6"))
}

/// The file of a mapping as this process can open it: through the target's root
/// (another mount namespace), else by its path.
fn open_path(pid: i32, path: &str) -> PathBuf {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let via_root = PathBuf::from(format!(
        "/proc/{}/root{path}",
        crate::snapshot::live_task(pid as u32)
    ));
    if via_root.is_file() {
        via_root
    } else {
        PathBuf::from(path)
    }
}

/// The address of the dynamic symbol `name` of the ELF file mapped as `map_path` in the
/// target (load bias from the mapping of file offset 0).
pub fn symbol_address(pid: i32, maps: &[Map], map_path: &str, name: &str) -> Result<u64, String> {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let file = open_path(pid, map_path);
    let data = fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let elf = object::File::parse(&*data)
        .map_err(|e| format!("cannot read {} as ELF: {e}", file.display()))?;
    let value = elf
        .dynamic_symbols()
        .find(|s| s.name() == Ok(name) && s.is_definition())
        .map(|s| s.address())
        .ok_or_else(|| format!("{} does not define {name}", file.display()))?;
    let first_vaddr = elf
        .segments()
        .find(|s| s.file_range().0 == 0)
        .map(|s| s.address() & !0xfff)
        .unwrap_or(0);
    let start = maps
        .iter()
        .filter(|m| m.path == map_path && m.offset == 0)
        .map(|m| m.start)
        .min()
        .ok_or_else(|| format!("{map_path} is not mapped in process {pid}"))?;
    Ok(start - first_vaddr + value)
}

/// The path of the first mapped file whose name starts with `prefix`.
pub fn mapped_file<'a>(maps: &'a [Map], prefix: &str) -> Option<&'a str> {
    maps.iter()
        .find(|m| m.path.starts_with('/') && m.file_name().starts_with(prefix))
        .map(|m| m.path.as_str())
}

/// The executable ranges of the file mapped as `path`.
pub fn text_of(maps: &[Map], path: &str) -> Option<(u64, u64)> {
    maps.iter()
        .find(|m| m.path == path && m.exec)
        .map(|m| (m.start, m.end))
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn permission_refusals_say_which_and_what_to_do() {
        // Same user, no Yama or scope 0: nothing against it.
        assert_eq!(refusal(7, &[1000, 1000], 1000, false, None), None);
        assert_eq!(refusal(7, &[1000, 1000], 1000, false, Some(0)), None);
        // Scope 1 without CAP_SYS_PTRACE: not our descendant.
        let s = refusal(7, &[1000], 1000, false, Some(1)).unwrap();
        assert!(s.starts_with("kernel.yama.ptrace_scope is 1, which lets a process be traced only by its ancestors"), "{s}");
        assert!(
            s.contains("run memlens attach 7 as root")
                && s.contains("sysctl kernel.yama.ptrace_scope=0"),
            "{s}"
        );
        // Root (CAP_SYS_PTRACE) passes scopes 1 and 2, never 3.
        assert_eq!(refusal(7, &[1000], 0, true, Some(1)), None);
        assert_eq!(refusal(7, &[1000], 0, true, Some(2)), None);
        assert!(refusal(7, &[1000], 0, true, Some(2 + 1))
            .unwrap()
            .contains("until the next reboot"));
        assert!(refusal(7, &[1000], 1000, false, Some(2))
            .unwrap()
            .contains("only processes with CAP_SYS_PTRACE"));
        // Another user.
        let s = refusal(7, &[0, 0], 65534, false, None).unwrap();
        assert!(
            s.starts_with("process 7 belongs to root and memlens runs as "),
            "{s}"
        );
        assert!(
            s.ends_with("run memlens attach as that user, or as root"),
            "{s}"
        );
    }
}
