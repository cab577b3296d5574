//! Small system helpers that never allocate through the hooked malloc.

use core::ffi::CStr;

extern crate alloc;

/// Read up to `buf.len()` bytes of a (small, /proc) file with raw open/read/close.
/// Returns the number of bytes read, `None` on any error or an empty file.
pub fn read_file(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: NUL-terminated path.
    read_fd(
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        buf,
    )
}

/// [`read_file`] of one of the process's own /proc files, as [`open_own`] opens it.
pub fn read_own(name: &CStr, buf: &mut [u8]) -> Option<usize> {
    read_fd(open_own(name, libc::O_RDONLY), buf)
}

/// Read up to `buf.len()` bytes from `fd` (negative: nothing) and close it.
fn read_fd(fd: libc::c_int, buf: &mut [u8]) -> Option<usize> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the read goes into `buf`; `fd` is ours and closed before returning.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len());
        libc::close(fd);
        n
    };
    (n > 0).then_some(n as usize)
}

/// The state letter of a `/proc/.../stat` line (`R`, `S`, `Z`...) and the fields after it,
/// read past the command name (which may hold spaces and parentheses).
pub fn stat_state(stat: &[u8]) -> Option<(u8, impl Iterator<Item = &[u8]>)> {
    let close = stat.iter().rposition(|&c| c == b')')?;
    let mut fields = stat[close + 1..]
        .split(|&c| c == b' ' || c == b'\n')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    Some((state, fields))
}

/// Open one of the process's memory-related /proc files (`maps`, `mem`, `statm`, `exe`,
/// `cmdline`) as the calling thread sees it, `/proc/thread-self/NAME`: `/proc/self` is
/// the main thread's view, empty once the main thread has ended (`pthread_exit` in
/// `main`) while other threads run on. Kernels without `thread-self` (before 3.17) get
/// `/proc/self/NAME`. `flags` are `open`'s.
pub fn open_own(name: &CStr, flags: libc::c_int) -> libc::c_int {
    let mut path = [0u8; 64];
    for prefix in [&b"/proc/thread-self/"[..], b"/proc/self/"] {
        let name = name.to_bytes();
        if prefix.len() + name.len() >= path.len() {
            return -1;
        }
        path[..prefix.len()].copy_from_slice(prefix);
        path[prefix.len()..prefix.len() + name.len()].copy_from_slice(name);
        path[prefix.len() + name.len()] = 0;
        // SAFETY: NUL-terminated path in `path`.
        let fd = unsafe {
            libc::open(
                path.as_ptr() as *const libc::c_char,
                flags | libc::O_CLOEXEC,
            )
        };
        if fd >= 0 {
            return fd;
        }
    }
    -1
}

/// Whether `stat` (the process's `/proc/self/stat`) says that its main thread has ended
/// (a zombie, as `pthread_exit` in `main` leaves it) and one other thread is left: the
/// caller's. (The state is the main thread's; the thread count still includes the
/// zombie.)
pub fn only_caller_left_after_main(stat: &[u8]) -> bool {
    // Field 3, the state, then field 20, the number of threads.
    stat_state(stat).is_some_and(|(state, mut rest)| state == b'Z' && rest.nth(16) == Some(b"2"))
}

/// Move `fd` to a high number (close-on-exec), away from 0-2 and from numbers the
/// program is likely to expect free.
pub fn move_high(fd: i32) -> i32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let want = (lim.rlim_cur.min(1024) as i32 - 24).max(3);
    // SAFETY: plain fd syscalls on an fd we own.
    unsafe {
        let hi = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, want);
        if hi >= 0 {
            libc::close(fd);
            return hi;
        }
        if fd <= 2 {
            let hi = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
            if hi >= 0 {
                libc::close(fd);
                return hi;
            }
        }
    }
    fd
}

/// The executable's path (`/proc/self/exe`), empty if it cannot be read.
pub fn exe_path() -> alloc::vec::Vec<u8> {
    let mut buf = [0u8; 4096];
    for path in [c"/proc/thread-self/exe", c"/proc/self/exe"] {
        // SAFETY: readlink writes at most buf.len() bytes into buf.
        let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
        if n > 0 {
            return buf[..n as usize].to_vec();
        }
    }
    alloc::vec::Vec::new()
}

/// The stack pointer of the calling function.
#[inline(always)]
pub fn current_sp() -> u64 {
    let sp: u64;
    // SAFETY: reads the stack pointer register only.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// The calling thread's kernel id.
#[inline]
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// A whole hexadecimal number (no prefix); `None` if empty, not hex, or too large.
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        v = v.checked_mul(16)? + (c as char).to_digit(16)? as u64;
    }
    Some(v)
}

/// One line of the process's maps: the classification's own type, so that the exit scan
/// hands lines to it as they are read.
pub use memlens_reach::ranges::MapsLine as Mapping;

/// Call `f` for each line of the process's maps ([`open_own`]) until it returns false.
/// Reads with open/read/close into a stack buffer: no allocation, no lock.
pub fn for_each_mapping(mut f: impl FnMut(&Mapping) -> bool) {
    // The fd is closed below.
    let fd = open_own(c"maps", libc::O_RDONLY);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 8192];
    let mut have = 0usize;
    'outer: loop {
        // SAFETY: reads into the free tail of buf.
        let n = unsafe { libc::read(fd, buf[have..].as_mut_ptr() as *mut _, buf.len() - have) };
        if n <= 0 {
            break;
        }
        have += n as usize;
        let mut consumed = 0;
        while let Some(nl) = buf[consumed..have].iter().position(|&c| c == b'\n') {
            let line = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            if let Some(m) = parse_maps_line(line) {
                if !f(&m) {
                    break 'outer;
                }
            }
        }
        buf.copy_within(consumed..have, 0);
        have -= consumed;
        if have == buf.len() {
            break; // a line longer than the buffer: give up rather than misparse
        }
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
}

fn parse_maps_line(line: &[u8]) -> Option<Mapping<'_>> {
    let hex = parse_hex;
    let dash = line.iter().position(|&c| c == b'-')?;
    let sp = line.iter().position(|&c| c == b' ')?;
    let start = hex(&line[..dash])?;
    let end = hex(&line[dash + 1..sp])?;
    // The name is the 6th field, after five space-separated ones.
    let mut fields = 0;
    let mut i = 0;
    while i < line.len() && fields < 5 {
        if line[i] == b' ' {
            fields += 1;
            while i < line.len() && line[i] == b' ' {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    let p = &line[sp + 1..];
    let perm = |k: usize, c: u8| p.get(k) == Some(&c);
    Some(Mapping {
        start,
        end,
        read: perm(0, b'r'),
        write: perm(1, b'w'),
        exec: perm(2, b'x'),
        shared: perm(3, b's'),
        name: &line[i.min(line.len())..],
    })
}

/// A /proc file the recorder keeps open for the life of the process (the RSS sampler's
/// `/proc/self/statm`), so that reading it never takes the lowest free fd while the
/// program's threads run: it is opened once, in a moment the program cannot observe
/// (initialisation, or the fork child handler), and moved to a high number. If the
/// program closes it (close-all loops) or the number comes to mean another file, it is
/// reopened by path, which is the one moment it takes a low number again.
pub struct ProcFile {
    /// The file's name in the process's /proc directory ([`open_own`]), or a whole path.
    name: &'static CStr,
    fd: i32,
    dev: u64,
    ino: u64,
}

impl ProcFile {
    pub const fn new(name: &'static CStr) -> Self {
        ProcFile {
            name,
            fd: -1,
            dev: 0,
            ino: 0,
        }
    }

    /// (Re)open the file now. In a forked child the inherited fd is the parent's
    /// `/proc/self`, so the child calls this from its fork handler. The old number is not
    /// closed if it is no longer ours (the program may own it now).
    pub fn open(&mut self) {
        if self.fd >= 0 && self.is_ours() {
            // SAFETY: the fd is ours (identity checked just above).
            unsafe { libc::close(self.fd) };
        }
        self.fd = -1;
        let fd = if self.name.to_bytes().first() == Some(&b'/') {
            // SAFETY: NUL-terminated path.
            unsafe { libc::open(self.name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
        } else {
            open_own(self.name, libc::O_RDONLY)
        };
        if fd < 0 {
            return;
        }
        self.fd = move_high(fd);
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fstat fills `st`.
        if unsafe { libc::fstat(self.fd, &mut st) } == 0 {
            self.dev = st.st_dev;
            self.ino = st.st_ino;
        }
    }

    /// Close the file (if the number is still ours); a later `open` or `read` opens it
    /// again.
    pub fn close(&mut self) {
        if self.fd >= 0 && self.is_ours() {
            // SAFETY: the fd is ours (identity checked just above).
            unsafe { libc::close(self.fd) };
        }
        self.fd = -1;
    }

    fn is_ours(&self) -> bool {
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fstat fills `st`; a closed fd just fails.
        self.fd >= 0
            && unsafe { libc::fstat(self.fd, &mut st) } == 0
            && st.st_dev == self.dev
            && st.st_ino == self.ino
    }

    /// Read the file from its start (pread: no offset to share or restore). Returns the
    /// number of bytes read, `None` on error or an empty file.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.is_ours() {
            self.open();
        }
        if self.fd < 0 {
            return None;
        }
        // SAFETY: the read goes into `buf`; the fd is ours.
        let n = unsafe { libc::pread(self.fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
        (n > 0).then_some(n as usize)
    }
}

/// Sleep while `word` holds `val` (or until `timeout_ns` passes, or a wake).
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, val: u32, timeout_ns: Option<u64>) {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    });
    let tp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: futex on a valid aligned u32; a spurious return is handled by callers.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            tp,
        )
    };
}

/// Wake every thread waiting on `word`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32) {
    // SAFETY: futex wake on a valid aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

#[cfg(test)]
mod stat_tests {
    use super::*;

    /// The state past a command name with spaces and parentheses; field 20 the threads.
    #[test]
    fn stat_lines_are_read_past_the_command_name() {
        let line = |state: &str, threads: u32| {
            format!(
                "4523 (a (b) c) {state} 1 4523 4523 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 {threads} 0 1\n"
            )
        };
        assert_eq!(stat_state(line("S", 3).as_bytes()).map(|s| s.0), Some(b'S'));
        assert!(only_caller_left_after_main(line("Z", 2).as_bytes()));
        assert!(!only_caller_left_after_main(line("Z", 3).as_bytes()));
        assert!(!only_caller_left_after_main(line("S", 2).as_bytes()));
        assert!(stat_state(b"garbage").is_none());
    }
}
