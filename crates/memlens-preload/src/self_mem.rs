//! Reading this process's own memory without ever faulting.
//!
//! The leak scan reads every writable mapping of the program, and some of them cannot be
//! read by a plain load: the pages of a private file mapping past the end of its file
//! (SIGBUS), a mapping another thread unmaps during the scan (SIGSEGV), device memory.
//! A fault there would kill the program the scan is only looking at. So root memory is
//! read with `process_vm_readv` on our own pid, which copies what can be read and returns
//! `EFAULT` for what cannot, instead of a signal. Where that system call is refused (a
//! seccomp filter, an old kernel), `/proc/self/mem` gives the same guarantee with `pread`.
//! Only if both are refused does it fall back to plain loads (the old behaviour).
//!
//! [`Cursor`] walks a range through a [`Reader`] (both from `memlens-reach`, the marker
//! the exit scan shares with `memlens snapshot`).

use core::sync::atomic::{AtomicU8, Ordering};

pub use memlens_reach::Reader;

/// How this process reads itself: 0 not yet tried, 1 process_vm_readv, 2 /proc/self/mem,
/// 3 plain loads.
static METHOD: AtomicU8 = AtomicU8::new(0);

/// The process's own memory, read without faulting.
pub struct SelfMemory {
    mem_fd: i32,
}

impl SelfMemory {
    pub fn new() -> SelfMemory {
        SelfMemory { mem_fd: -1 }
    }

    fn vm_readv(addr: u64, out: &mut [u64]) -> isize {
        let local = libc::iovec {
            iov_base: out.as_mut_ptr() as *mut libc::c_void,
            iov_len: out.len() * 8,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: out.len() * 8,
        };
        // SAFETY: `local` describes `out`, which we own; the kernel checks `remote`
        // and returns EFAULT instead of faulting.
        unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) }
    }

    fn proc_mem(&mut self, addr: u64, out: &mut [u64]) -> isize {
        if self.mem_fd < 0 {
            // The fd is closed in Drop.
            self.mem_fd = crate::sys::open_own(c"mem", libc::O_RDONLY);
            if self.mem_fd < 0 {
                return -1;
            }
        }
        // SAFETY: pread writes at most out.len()*8 bytes into `out`.
        unsafe {
            libc::pread(
                self.mem_fd,
                out.as_mut_ptr() as *mut libc::c_void,
                out.len() * 8,
                addr as i64,
            )
        }
    }

    /// One attempt with the chosen method: bytes read, or -1 with errno set.
    fn attempt(&mut self, method: u8, addr: u64, out: &mut [u64]) -> isize {
        match method {
            1 => Self::vm_readv(addr, out),
            2 => self.proc_mem(addr, out),
            _ => {
                for (k, w) in out.iter_mut().enumerate() {
                    // SAFETY: the last resort, only when the kernel refuses both safe
                    // ways: the caller reads only readable mappings, as before.
                    *w = unsafe { core::ptr::read((addr + 8 * k as u64) as *const u64) };
                }
                (out.len() * 8) as isize
            }
        }
    }

    /// The method that works here: the first whose probe of a known-readable word
    /// succeeds (a refusal is EPERM/ENOSYS/EACCES, never EFAULT on our own stack).
    fn method(&mut self) -> u8 {
        let m = METHOD.load(Ordering::Relaxed);
        if m != 0 {
            return m;
        }
        let probe = [0x5eed_u64; 1];
        let addr = probe.as_ptr() as u64;
        let mut out = [0u64; 1];
        let chosen = [1u8, 2]
            .into_iter()
            .find(|&m| self.attempt(m, addr, &mut out) == 8 && out[0] == 0x5eed)
            .unwrap_or(3);
        METHOD.store(chosen, Ordering::Relaxed);
        chosen
    }
}

impl Default for SelfMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader for SelfMemory {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> usize {
        let method = self.method();
        let n = self.attempt(method, addr, out);
        if n < 0 {
            0
        } else {
            n as usize / 8
        }
    }
}

impl Drop for SelfMemory {
    fn drop(&mut self) {
        if self.mem_fd >= 0 {
            // SAFETY: closing the fd this value opened.
            unsafe { libc::close(self.mem_fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_reach::{Cursor, PAGE};
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn real_memory_reads_and_faults_are_safe() {
        let mut m = SelfMemory::new();
        let data: Vec<u64> = (0..600).collect();
        let mut out = std::vec![0u64; 600];
        assert_eq!(m.read(data.as_ptr() as u64, &mut out), 600);
        assert_eq!(out, data);
        // An address that is never mapped (the zero page): nothing read, no signal.
        assert_eq!(m.read(8, &mut out[..4]), 0);
        // A mapping that ends in a PROT_NONE page: the readable part only.
        // SAFETY: a fresh private anonymous mapping of two pages, unmapped below.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                2 * PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::mprotect(
                (p as u64 + PAGE) as *mut libc::c_void,
                PAGE as usize,
                libc::PROT_NONE,
            );
            let mut big = std::vec![0u64; 1024];
            let got = m.read(p as u64, &mut big);
            assert!(got == 512 || got == 0, "got {got}");
            let mut seen = 0usize;
            let mut buf = std::vec![0u64; 300];
            let mut cur = Cursor::new(p as u64, p as u64 + 2 * PAGE);
            while let Some((_, n)) = cur.next(&mut m, &mut buf) {
                seen += n;
            }
            assert_eq!(seen, 512);
            libc::munmap(p, 2 * PAGE as usize);
        }
    }
}
