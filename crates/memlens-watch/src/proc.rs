//! Reading a process's memory from `/proc`, without touching the process.
//!
//! The preferred source is `/proc/PID/smaps_rollup` (Linux 4.14+): RSS, PSS, USS
//! (`Private_Clean + Private_Dirty`), swap and anonymous memory in one read. Reading it
//! requires the right to ptrace the process (`PTRACE_MODE_READ`); when that is refused,
//! `/proc/PID/status` (readable by everyone) still gives RSS, anonymous, file-backed and
//! swap, and `/proc/PID/statm` RSS and shared pages. PSS and USS are then unknown.
//!
//! The watched process is opened once as a directory file descriptor ([`ProcDir`]) and
//! every later read goes through it, so a recycled pid can never be mistaken for the
//! process being watched: once the process is gone (reaped), reads fail with `ESRCH`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What a process uses, in bytes. Fields a fallback source cannot give are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemSample {
    /// Resident set size: pages in RAM, shared ones included.
    pub rss: u64,
    /// Proportional set size: shared pages divided among their users.
    pub pss: Option<u64>,
    /// Unique set size: pages only this process maps (`Private_Clean + Private_Dirty`).
    pub uss: Option<u64>,
    /// Swapped out.
    pub swap: Option<u64>,
    /// Resident anonymous memory (heap, stacks, private copies).
    pub anon: Option<u64>,
    /// Resident file-backed and shared memory (code, mapped files, tmpfs, shm): RSS minus
    /// anonymous.
    pub file: Option<u64>,
}

impl MemSample {
    /// Sum two processes' samples; a field is known only if it is known for both.
    pub fn add(&self, o: &MemSample) -> MemSample {
        let f = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        MemSample {
            rss: self.rss + o.rss,
            pss: f(self.pss, o.pss),
            uss: f(self.uss, o.uss),
            swap: f(self.swap, o.swap),
            anon: f(self.anon, o.anon),
            file: f(self.file, o.file),
        }
    }
}

/// Where a sample came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    SmapsRollup,
    Status,
    Statm,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::SmapsRollup => "smaps_rollup",
            Source::Status => "status",
            Source::Statm => "statm",
        }
    }
}

/// Why a process could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The process has exited (it may still be a zombie).
    Gone,
    /// A kernel thread: no user memory to watch.
    NoMemory,
    /// Nothing readable: the sentence says why.
    Denied(String),
}

/// Why a pid could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    NoSuchProcess,
    /// memlens has as many files open as it may (`EMFILE`).
    NoFd(String),
    Other(String),
}

/// An open `/proc/PID` directory.
#[derive(Debug)]
pub struct ProcDir {
    pub pid: i32,
    dir: OwnedFd,
}

impl ProcDir {
    pub fn open(pid: i32) -> Result<ProcDir, OpenError> {
        if pid <= 0 {
            return Err(OpenError::NoSuchProcess);
        }
        let path = CString::new(format!("/proc/{pid}")).expect("no NUL in a number");
        // SAFETY: a valid C string; the returned fd is owned below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ESRCH) => OpenError::NoSuchProcess,
                Some(libc::EMFILE) => OpenError::NoFd(format!("cannot open /proc/{pid}: {e}")),
                _ => OpenError::Other(format!("cannot open /proc/{pid}: {e}")),
            });
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(ProcDir { pid, dir })
    }

    /// Read a file of this process into `buf` (cleared first).
    pub fn read(&self, name: &str, buf: &mut String) -> io::Result<()> {
        buf.clear();
        let c = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: valid directory fd and C string; the fd is owned by the File below.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened.
        let mut f = unsafe { File::from_raw_fd(fd) };
        f.read_to_string(buf)?;
        Ok(())
    }

    /// `/proc/PID/stat`: state, parent, start time and command name.
    pub fn stat(&self) -> io::Result<Stat> {
        let mut s = String::new();
        self.read("stat", &mut s)?;
        parse_stat(&s).ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
    }

    /// The process's memory, from the best source it lets us read.
    pub fn sample(&self, buf: &mut String) -> Result<(MemSample, Source), ReadError> {
        let denied_smaps = match self.read("smaps_rollup", buf) {
            Ok(()) => {
                if let Some(s) = parse_smaps_rollup(buf) {
                    return Ok((s, Source::SmapsRollup));
                }
                // Empty: a kernel thread, or a zombie between exit and reaping.
                return Err(self.why_empty());
            }
            Err(e) => match e.raw_os_error() {
                // No memory map: exiting, a zombie, or a kernel thread.
                Some(libc::ESRCH) => return Err(self.why_empty()),
                // ENOENT: a kernel older than 4.14; EACCES/EPERM: not ours to ptrace.
                Some(libc::ENOENT) => None,
                _ => Some(e),
            },
        };
        match self.read("status", buf) {
            Ok(()) => {
                if let Some(s) = parse_status(buf) {
                    return Ok((s, Source::Status));
                }
                return Err(self.why_empty());
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(ReadError::Gone),
            Err(_) => {}
        }
        match self.read("statm", buf) {
            Ok(()) => match parse_statm(buf, page_size()) {
                Some(s) => Ok((s, Source::Statm)),
                None => Err(self.why_empty()),
            },
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(ReadError::Gone),
            Err(e) => {
                let cause = denied_smaps.unwrap_or(e);
                Err(ReadError::Denied(
                    if cause.kind() == io::ErrorKind::PermissionDenied {
                        format!(
                            "cannot read the memory of process {}: permission denied \
                             (run memlens as the process's user, or as root)",
                            self.pid
                        )
                    } else {
                        format!("cannot read the memory of process {}: {cause}", self.pid)
                    },
                ))
            }
        }
    }

    /// The cheapest reading: `/proc/PID/statm` (RSS, and resident anonymous vs shared
    /// pages), readable for every process. What `memlens top` reads of each process.
    pub fn statm(&self, buf: &mut String) -> Result<MemSample, ReadError> {
        match self.read("statm", buf) {
            Ok(()) => parse_statm(buf, page_size()).ok_or(ReadError::Gone),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT)) => {
                Err(ReadError::Gone)
            }
            Err(e) => Err(ReadError::Denied(format!(
                "cannot read /proc/{}/statm: {e}",
                self.pid
            ))),
        }
    }

    /// The command line (arguments split at NULs; empty for a kernel thread or a zombie).
    pub fn cmdline(&self) -> Vec<String> {
        // cmdline may hold bytes that are not UTF-8: read it as bytes.
        let c = CString::new("cmdline").expect("no NUL");
        // SAFETY: valid directory fd and C string; the fd is owned by the File below.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Vec::new();
        }
        // SAFETY: fd was just opened.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        bytes
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// The executable's path (`/proc/PID/exe`), when readable (another user's process
    /// refuses it).
    pub fn exe(&self) -> Option<std::path::PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        let mut buf = vec![0u8; 4096];
        // SAFETY: valid directory fd, C string literal and buffer of the given length.
        let n = unsafe {
            libc::readlinkat(
                self.dir.as_raw_fd(),
                c"exe".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(std::ffi::OsString::from_vec(buf).into())
    }

    fn why_empty(&self) -> ReadError {
        match self.stat() {
            Ok(st) if st.flags & PF_KTHREAD != 0 => ReadError::NoMemory,
            _ => ReadError::Gone,
        }
    }

    /// Direct children, from `/proc/PID/task/*/children` (every thread's own list).
    /// `None` if this kernel has no such files (CONFIG_PROC_CHILDREN off).
    ///
    /// Each file is read in one `read` where it fits: the kernel resumes a later read
    /// at the same index in the list, so a list that changed between two reads (a
    /// sibling reaped, or another thread's children moved to this one as it exited) skips
    /// an entry. Read whole, the list is walked once.
    pub fn children(&self) -> Option<Vec<i32>> {
        let mut out = Vec::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid)).ok()?;
        let mut buf = Vec::with_capacity(16 << 10);
        let mut any = false;
        for t in tasks.flatten() {
            let p = t.path().join("children");
            buf.clear();
            match File::open(&p).and_then(|mut f| read_in_one(&mut f, &mut buf)) {
                Ok(()) => {
                    any = true;
                    out.extend(
                        buf.split(|c| c.is_ascii_whitespace())
                            .filter_map(|w| std::str::from_utf8(w).ok()?.parse::<i32>().ok()),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !t.path().exists() => {
                    // The thread exited while we listed: not a missing feature.
                    any = true;
                }
                Err(_) => {}
            }
        }
        any.then_some(out)
    }
}

/// `PF_KTHREAD` of `/proc/PID/stat`'s flags: a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` memlens uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    /// Kernel flags (`PF_*`).
    pub flags: u64,
    /// Clock ticks since boot at which the process started.
    pub start_time: u64,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
}

pub fn parse_stat(s: &str) -> Option<Stat> {
    // "pid (comm) S ppid ..." where comm may contain spaces and parentheses.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let f: Vec<&str> = s.get(close + 1..)?.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        flags: field(9)?,
        start_time: field(22)?,
        cpu_ticks: field(14)? + field(15)?,
    })
}

fn kb_field(line: &str, key: &str) -> Option<u64> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    let v = rest.trim().strip_suffix("kB").unwrap_or(rest).trim();
    v.parse::<u64>().ok().map(|k| k * 1024)
}

/// Parse `/proc/PID/smaps_rollup`; `None` if it holds no mappings (kernel thread, zombie).
pub fn parse_smaps_rollup(s: &str) -> Option<MemSample> {
    let (mut rss, mut pss, mut pc, mut pd, mut swap, mut anon) = (None, None, 0, 0, 0, 0);
    for line in s.lines() {
        if let Some(v) = kb_field(line, "Rss") {
            rss = Some(v);
        } else if let Some(v) = kb_field(line, "Pss") {
            pss = Some(v);
        } else if let Some(v) = kb_field(line, "Private_Clean") {
            pc = v;
        } else if let Some(v) = kb_field(line, "Private_Dirty") {
            pd = v;
        } else if let Some(v) = kb_field(line, "Swap") {
            swap = v;
        } else if let Some(v) = kb_field(line, "Anonymous") {
            anon = v;
        }
    }
    let rss = rss?;
    Some(MemSample {
        rss,
        pss,
        uss: Some(pc + pd),
        swap: Some(swap),
        anon: Some(anon.min(rss)),
        file: Some(rss - anon.min(rss)),
    })
}

/// Parse `/proc/PID/status`; `None` without `VmRSS` (kernel thread, zombie).
pub fn parse_status(s: &str) -> Option<MemSample> {
    let (mut rss, mut anon, mut file, mut shmem, mut swap) = (None, None, None, None, None);
    for line in s.lines() {
        if let Some(v) = kb_field(line, "VmRSS") {
            rss = Some(v);
        } else if let Some(v) = kb_field(line, "RssAnon") {
            anon = Some(v);
        } else if let Some(v) = kb_field(line, "RssFile") {
            file = Some(v);
        } else if let Some(v) = kb_field(line, "RssShmem") {
            shmem = Some(v);
        } else if let Some(v) = kb_field(line, "VmSwap") {
            swap = Some(v);
        }
    }
    Some(MemSample {
        rss: rss?,
        pss: None,
        uss: None,
        swap,
        anon,
        file: file.map(|f| f + shmem.unwrap_or(0)),
    })
}

/// Parse `/proc/PID/statm` (pages); `None` if all zero (zombie, kernel thread).
pub fn parse_statm(s: &str, page: u64) -> Option<MemSample> {
    let f: Vec<u64> = s
        .split_ascii_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (size, resident, shared) = (*f.first()?, *f.get(1)?, *f.get(2)?);
    if size == 0 && resident == 0 {
        return None;
    }
    let shared = shared.min(resident);
    Some(MemSample {
        rss: resident * page,
        pss: None,
        uss: None,
        swap: None,
        anon: Some((resident - shared) * page),
        file: Some(shared * page),
    })
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Read all of `f` into `buf`, with one `read` when it fits in `buf`'s capacity.
fn read_in_one(f: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(4096));
        }
        let at = buf.len();
        buf.resize(buf.capacity(), 0);
        match f.read(&mut buf[at..]) {
            Ok(0) => {
                buf.truncate(at);
                return Ok(());
            }
            Ok(n) => buf.truncate(at + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(at),
            Err(e) => {
                buf.truncate(at);
                return Err(e);
            }
        }
    }
}

/// Every descendant of `root` (children, grandchildren...), by scanning `/proc/*/stat`.
/// Used when the kernel has no `children` files.
pub fn descendants_by_scan(root: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    let mut buf = String::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            buf.clear();
            if File::open(format!("/proc/{pid}/stat"))
                .and_then(|mut f| f.read_to_string(&mut buf))
                .is_ok()
            {
                if let Some(st) = parse_stat(&buf) {
                    parent_of.push((pid, st.ppid));
                }
            }
        }
    }
    tree_below(root, &parent_of)
}

/// The descendants of `root` in a (pid, ppid) list, breadth first.
pub fn tree_below(root: i32, parent_of: &[(i32, i32)]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in parent_of {
            if pp == p && c != root && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// One reading of the watched process tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeSample {
    pub mem: MemSample,
    /// Processes summed (1 without `--include-children`).
    pub processes: u32,
    /// The poorest source among them.
    pub source: Source,
    /// The watched process's own source.
    pub root_source: Source,
}

/// Samples a process, or a process and all its descendants.
pub struct Sampler {
    root: ProcDir,
    include_children: bool,
    has_children_files: bool,
    buf: String,
}

impl Sampler {
    pub fn new(root: ProcDir, include_children: bool) -> Sampler {
        let has_children_files = root.children().is_some();
        Sampler {
            root,
            include_children,
            has_children_files,
            buf: String::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.root.pid
    }

    pub fn root(&self) -> &ProcDir {
        &self.root
    }

    /// Read the tree once. Errors are the root's: a child that vanishes or cannot be
    /// read is left out of this sample.
    pub fn sample(&mut self) -> Result<TreeSample, ReadError> {
        let (mut mem, root_source) = self.root.sample(&mut self.buf)?;
        let mut source = root_source;
        let mut processes = 1;
        if self.include_children {
            for pid in self.descendants() {
                let Ok(dir) = ProcDir::open(pid) else {
                    continue;
                };
                if let Ok((m, s)) = dir.sample(&mut self.buf) {
                    mem = mem.add(&m);
                    source = source.max(s);
                    processes += 1;
                }
            }
        }
        Ok(TreeSample {
            mem,
            processes,
            source,
            root_source,
        })
    }

    fn descendants(&self) -> Vec<i32> {
        if !self.has_children_files {
            return descendants_by_scan(self.root.pid);
        }
        let mut out = Vec::new();
        let mut frontier = self.root.children().unwrap_or_default();
        while let Some(p) = frontier.pop() {
            if out.contains(&p) || p == self.root.pid {
                continue;
            }
            out.push(p);
            if let Ok(d) = ProcDir::open(p) {
                frontier.extend(d.children().unwrap_or_default());
            }
        }
        out
    }
}

/// memlens's own cost so far: CPU seconds (user + system) and peak RSS in bytes, from
/// `getrusage` (microsecond CPU times, unlike the clock ticks of `/proc/self/stat`).
pub fn self_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime) + secs(ru.ru_stime),
        // ru_maxrss is in KiB on Linux.
        ru.ru_maxrss.max(0) as u64 * 1024,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str =
        "55c065901000-7ffe7f6dc000 ---p 00000000 00:00 0                          [rollup]
Rss:                1732 kB
Pss:                 616 kB
Pss_Dirty:           116 kB
Pss_Anon:            116 kB
Pss_File:            500 kB
Pss_Shmem:             0 kB
Shared_Clean:       1520 kB
Shared_Dirty:          0 kB
Private_Clean:        96 kB
Private_Dirty:       116 kB
Referenced:         1732 kB
Anonymous:           116 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  8 kB
SwapPss:               8 kB
Locked:                0 kB
";

    #[test]
    fn smaps_rollup() {
        let s = parse_smaps_rollup(ROLLUP).unwrap();
        assert_eq!(s.rss, 1732 * 1024);
        assert_eq!(s.pss, Some(616 * 1024));
        assert_eq!(s.uss, Some(212 * 1024));
        assert_eq!(s.swap, Some(8 * 1024));
        assert_eq!(s.anon, Some(116 * 1024));
        assert_eq!(s.file, Some((1732 - 116) * 1024));
        assert_eq!(parse_smaps_rollup(""), None);
    }

    #[test]
    fn status_and_statm() {
        let st = "Name:\tcat\nState:\tR (running)\nVmRSS:\t    1640 kB\nRssAnon:\t     112 kB\n\
                  RssFile:\t    1500 kB\nRssShmem:\t      28 kB\nVmSwap:\t       4 kB\n";
        let s = parse_status(st).unwrap();
        assert_eq!(s.rss, 1640 * 1024);
        assert_eq!(s.anon, Some(112 * 1024));
        assert_eq!(s.file, Some(1528 * 1024));
        assert_eq!(s.swap, Some(4096));
        assert_eq!(s.pss, None);
        assert_eq!(
            parse_status("Name:\tkthreadd\nState:\tS (sleeping)\n"),
            None
        );

        let s = parse_statm("765 405 376 5 0 123 0\n", 4096).unwrap();
        assert_eq!(s.rss, 405 * 4096);
        assert_eq!(s.file, Some(376 * 4096));
        assert_eq!(s.anon, Some(29 * 4096));
        assert_eq!(parse_statm("0 0 0 0 0 0 0\n", 4096), None);
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 12 3 0 0 20 0 1 0 5555 1000 10 \
                 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "a (b) c");
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 7);
        assert_eq!(st.cpu_ticks, 15);
        assert_eq!(st.start_time, 5555);
        assert_eq!(st.flags, 4194560);
    }

    #[test]
    fn sum_keeps_only_known_fields() {
        let a = MemSample {
            rss: 10,
            pss: Some(5),
            uss: Some(3),
            swap: Some(0),
            anon: Some(4),
            file: Some(6),
        };
        let b = MemSample {
            rss: 7,
            pss: None,
            uss: None,
            swap: Some(1),
            anon: Some(2),
            file: Some(5),
        };
        let s = a.add(&b);
        assert_eq!((s.rss, s.pss, s.swap, s.anon), (17, None, Some(1), Some(6)));
    }

    #[test]
    fn tree() {
        let pp = [(2, 1), (3, 2), (4, 2), (5, 9), (6, 4)];
        let mut t = tree_below(1, &pp);
        t.sort();
        assert_eq!(t, vec![2, 3, 4, 6]);
        assert!(tree_below(9, &pp) == vec![5]);
    }

    #[test]
    fn reads_itself() {
        let d = ProcDir::open(std::process::id() as i32).unwrap();
        let mut buf = String::new();
        let (s, src) = d.sample(&mut buf).unwrap();
        assert!(s.rss > 0);
        assert!(src == Source::SmapsRollup || src == Source::Status);
        assert!(d.children().is_some() || !std::path::Path::new("/proc/self/task").exists());
        assert_eq!(ProcDir::open(0).unwrap_err(), OpenError::NoSuchProcess);
        let (cpu, peak) = self_usage();
        assert!(cpu >= 0.0 && peak > 0);
    }

    #[test]
    fn kernel_thread_has_no_memory() {
        // kthreadd is pid 2 on Linux, unless a pid namespace hides it.
        if let Ok(d) = ProcDir::open(2) {
            if d.stat().is_ok_and(|s| s.flags & PF_KTHREAD != 0) {
                assert_eq!(d.sample(&mut String::new()), Err(ReadError::NoMemory));
            }
        }
    }

    #[test]
    fn children_of_a_child() {
        let mut c = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = ProcDir::open(std::process::id() as i32).unwrap();
        let pid = c.id() as i32;
        if let Some(kids) = me.children() {
            assert!(kids.contains(&pid), "{kids:?}");
        }
        assert!(descendants_by_scan(std::process::id() as i32).contains(&pid));
        let d = ProcDir::open(pid).unwrap();
        assert!(d.sample(&mut String::new()).is_ok());
        c.kill().unwrap();
        c.wait().unwrap();
        // Reaped: the /proc directory opened before says so, even if the pid is reused.
        assert_eq!(d.sample(&mut String::new()), Err(ReadError::Gone));
    }
}
