//! Another process's memory and mappings, read from outside.

use memlens_reach::Reader;

/// Reads another process's memory with `process_vm_readv` (falling back to
/// `/proc/PID/mem` where that is refused). Unreadable pages give short reads.
pub struct Remote {
    pid: u32,
    mem: Option<std::fs::File>,
    use_mem: bool,
}

/// The thread of `pid` to read its memory and memory-related /proc files through
/// (`maps`, `mem`, `exe`, `cmdline`, `root`): `pid` itself, or, when its main thread has
/// ended (a zombie after `pthread_exit` in `main`, whose files read empty), one of its
/// live threads. `/proc/TID/...` of any thread is the process's.
pub fn live_task(pid: u32) -> u32 {
    if !task_ended(pid, pid) {
        return pid;
    }
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&tid| !task_ended(pid, tid))
        .unwrap_or(pid)
}

/// Whether thread `tid` of `pid` has ended (a zombie, or gone): it runs nothing, cannot
/// be stopped, and has no stack to read.
pub fn task_ended(pid: u32, tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s[s.rfind(')')? + 1..]
                .split_whitespace()
                .next()?
                .to_string();
            Some(state == "Z" || state == "X")
        })
        .unwrap_or(true)
}

impl Remote {
    pub fn new(pid: u32) -> Remote {
        Remote {
            pid: live_task(pid),
            mem: None,
            use_mem: false,
        }
    }

    /// Read `out.len()` bytes at `addr`; how many were read.
    pub fn read_bytes(&mut self, addr: u64, out: &mut [u8]) -> usize {
        if out.is_empty() {
            return 0;
        }
        if !self.use_mem {
            let local = libc::iovec {
                iov_base: out.as_mut_ptr() as *mut libc::c_void,
                iov_len: out.len(),
            };
            let remote = libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: out.len(),
            };
            // SAFETY: `local` describes `out`, which we own; the kernel checks `remote`.
            let n = unsafe {
                libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0)
            };
            if n >= 0 {
                return n as usize;
            }
            let e = std::io::Error::last_os_error().raw_os_error();
            if matches!(e, Some(libc::ENOSYS) | Some(libc::EPERM)) {
                self.use_mem = true;
            } else {
                return 0;
            }
        }
        use std::os::unix::fs::FileExt;
        if self.mem.is_none() {
            self.mem = std::fs::File::open(format!("/proc/{}/mem", self.pid)).ok();
        }
        let Some(f) = &self.mem else { return 0 };
        let mut got = 0;
        while got < out.len() {
            match f.read_at(&mut out[got..], addr + got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    }

    /// Read whole words at `addr` into `out`, as many as can be read.
    pub fn read_words(&mut self, addr: u64, out: &mut [u64]) -> usize {
        // SAFETY: a u64 slice viewed as its bytes (any byte pattern is a valid u64).
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 8) };
        self.read_bytes(addr, bytes) / 8
    }

    /// Write one word at `addr` (`process_vm_writev`); whether it was written.
    pub fn write_word(&mut self, addr: u64, value: u64) -> bool {
        let local = libc::iovec {
            iov_base: &value as *const u64 as *mut libc::c_void,
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: `local` describes `value`; the kernel checks `remote`.
        let n =
            unsafe { libc::process_vm_writev(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        n == 8
    }

    /// One word, if readable.
    pub fn word(&mut self, addr: u64) -> Option<u64> {
        let mut w = [0u64; 1];
        (self.read_words(addr, &mut w) == 1).then_some(w[0])
    }
}

impl Reader for Remote {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> usize {
        self.read_words(addr, out)
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub inode: u64,
    pub name: String,
}

/// The mappings of `pid`, by address.
pub fn mappings(pid: u32) -> std::io::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{}/maps", live_task(pid)))?;
    Ok(parse_maps(&text))
}

pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off), Some(_dev), Some(inode)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let name = it.next().unwrap_or("").trim_start().to_string();
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let p = perms.as_bytes();
        if p.len() < 4 {
            continue;
        }
        out.push(Mapping {
            start,
            end,
            read: p[0] == b'r',
            write: p[1] == b'w',
            exec: p[2] == b'x',
            shared: p[3] == b's',
            offset: u64::from_str_radix(off, 16).unwrap_or(0),
            inode: inode.parse().unwrap_or(0),
            name,
        });
    }
    out
}
