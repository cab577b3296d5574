//! Calling functions inside another process with ptrace (x86_64 Linux).
//!
//! One thread of the target is taken over for the calls, at a point where it holds no
//! lock that `dlopen` needs: blocked in a system call that waits (read, poll, sleep...),
//! which is where server-like programs and interpreters spend their time. Every other
//! thread keeps running meanwhile, so a lock one of them holds (malloc's, the loader's,
//! stdio's) is released as it would be without us, and the call cannot hang on it.
//! Threads are tried one at a time: seized (`PTRACE_SEIZE`, no signal is sent), stopped
//! with `PTRACE_INTERRUPT`, looked at, and let go at once if not at such a point.
//!
//! The taken thread's registers (general and the whole xsave area) are saved; a page is
//! mapped in the target by a system call made with the thread's registers pointing at a
//! `syscall` instruction of libc; it holds an `int3` the calls return to, and the strings
//! passed. Each call sets the arguments, pushes the `int3`'s address as the return
//! address below the red zone (16-byte aligned at the call, as the psABI wants), and runs
//! the thread until the trap. `orig_rax` is set to -1 so that a system call the thread was
//! blocked in is not restarted in the middle of the call; restoring the saved registers
//! at the end restarts it, as after any signal handler. Signals that arrive for the
//! thread meanwhile are held and sent again once it runs on.

use std::fs;
use std::io;

/// `user_regs_struct` (x86_64).
pub type Regs = libc::user_regs_struct;

const NT_X86_XSTATE: libc::c_int = 0x202;
const NT_PRSTATUS: libc::c_int = 1;

/// x86_64 system calls during which a thread holds no user-space lock in the common
/// case (it waits for input, time or a child).
const WAITING_SYSCALLS: &[(u64, &str)] = &[
    (0, "read"),
    (7, "poll"),
    (23, "select"),
    (34, "pause"),
    (35, "nanosleep"),
    (43, "accept"),
    (45, "recvfrom"),
    (47, "recvmsg"),
    (61, "wait4"),
    (128, "rt_sigtimedwait"),
    (130, "rt_sigsuspend"),
    (230, "clock_nanosleep"),
    (232, "epoll_wait"),
    (247, "waitid"),
    (270, "pselect6"),
    (271, "ppoll"),
    (281, "epoll_pwait"),
    (288, "accept4"),
    (441, "epoll_pwait2"),
];

/// futex: a thread waiting on a condition variable, a join, the GIL. Taken only when no
/// thread waits in one of the calls above (it could be waiting for a lock while holding
/// another).
const FUTEX: u64 = 202;

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// A stopped, seized thread of the target.
pub struct Thread {
    pub tid: i32,
    saved: Regs,
    xstate: Vec<u8>,
    /// Signals the thread received while it was ours, to send again.
    pending: Vec<i32>,
    /// Where `int3` is, in the page mapped in the target (0 until mapped).
    page: u64,
    page_len: u64,
    /// A `syscall` instruction in the target.
    syscall_insn: u64,
    released: bool,
}

fn ptrace(req: libc::c_uint, tid: i32, addr: u64, data: u64) -> io::Result<libc::c_long> {
    // SAFETY: ptrace with integer arguments; pointers passed as `addr`/`data` by the
    // callers point at live buffers of the right size for the request.
    let r = unsafe {
        libc::ptrace(
            req,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// Wait for `tid` to stop; `Err` if it exited or was killed.
fn wait_stop(tid: i32) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes `status`.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r < 0 {
            let e = errno();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFSTOPPED(status) {
            return Ok(status);
        }
        return Err(io::Error::other("the thread ended"));
    }
}

fn get_regs(tid: i32) -> io::Result<Regs> {
    // SAFETY: an all-zero user_regs_struct is valid; GETREGSET fills it.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: &mut regs as *mut Regs as *mut libc::c_void,
        iov_len: std::mem::size_of::<Regs>(),
    };
    ptrace(
        libc::PTRACE_GETREGSET,
        tid,
        NT_PRSTATUS as u64,
        &mut iov as *mut libc::iovec as u64,
    )?;
    Ok(regs)
}

fn set_regs(tid: i32, regs: &Regs) -> io::Result<()> {
    let mut copy = *regs;
    let mut iov = libc::iovec {
        iov_base: &mut copy as *mut Regs as *mut libc::c_void,
        iov_len: std::mem::size_of::<Regs>(),
    };
    ptrace(
        libc::PTRACE_SETREGSET,
        tid,
        NT_PRSTATUS as u64,
        &mut iov as *mut libc::iovec as u64,
    )?;
    Ok(())
}

/// How a stopped thread stands: the system call it waits in, if any.
fn waiting_in(regs: &Regs) -> Option<u64> {
    let rax = regs.rax as i64;
    // -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK, -EINTR.
    let interrupted = matches!(rax, -512 | -513 | -514 | -516 | -4);
    (regs.orig_rax as i64 >= 0 && interrupted).then_some(regs.orig_rax)
}

/// The name of a waiting system call we take a thread in, or `None`.
pub fn safe_wait(nr: u64, allow_futex: bool) -> Option<&'static str> {
    if allow_futex && nr == FUTEX {
        return Some("futex");
    }
    WAITING_SYSCALLS
        .iter()
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| *name)
}

impl Thread {
    /// Seize and stop `tid`. `Err` if it cannot be traced (the error of PTRACE_SEIZE).
    pub fn seize(tid: i32) -> io::Result<Thread> {
        ptrace(libc::PTRACE_SEIZE, tid, 0, 0)?;
        if let Err(e) = ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) {
            let _ = ptrace(libc::PTRACE_DETACH, tid, 0, 0);
            return Err(e);
        }
        let mut pending = Vec::new();
        let status = wait_stop(tid)?;
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if event == 0 && sig != libc::SIGTRAP {
            // A signal was being delivered: it is held, then sent again.
            pending.push(sig);
        }
        let saved = get_regs(tid)?;
        Ok(Thread {
            tid,
            saved,
            xstate: Vec::new(),
            pending,
            page: 0,
            page_len: 0,
            syscall_insn: 0,
            released: false,
        })
    }

    /// The system call the thread is blocked in, if it waits in one.
    pub fn waiting_in(&self) -> Option<u64> {
        waiting_in(&self.saved)
    }

    /// Where the thread stopped.
    pub fn pc(&self) -> u64 {
        self.saved.rip
    }

    /// Stopped in user code, not in a system call (nor at its entry or exit).
    pub fn in_user_mode(&self) -> bool {
        self.saved.orig_rax as i64 == -1
    }

    /// Save the vector registers too, before any call changes them.
    pub fn save_xstate(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        ptrace(
            libc::PTRACE_GETREGSET,
            self.tid,
            NT_X86_XSTATE as u64,
            &mut iov as *mut libc::iovec as u64,
        )?;
        buf.truncate(iov.iov_len);
        self.xstate = buf;
        Ok(())
    }

    /// Let the thread go as it was (registers restored), and send again the signals it
    /// got meanwhile.
    pub fn release(mut self) -> io::Result<()> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> io::Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let mut result = set_regs(self.tid, &self.saved);
        if !self.xstate.is_empty() {
            let mut iov = libc::iovec {
                iov_base: self.xstate.as_mut_ptr() as *mut libc::c_void,
                iov_len: self.xstate.len(),
            };
            if let Err(e) = ptrace(
                libc::PTRACE_SETREGSET,
                self.tid,
                NT_X86_XSTATE as u64,
                &mut iov as *mut libc::iovec as u64,
            ) {
                result = result.and(Err(e));
            }
        }
        let detach = ptrace(libc::PTRACE_DETACH, self.tid, 0, 0).map(|_| ());
        let pid = tgid_of(self.tid);
        for &sig in &self.pending {
            // SAFETY: tgkill sends a held signal again to the thread it was meant for.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, self.tid, sig) };
        }
        result.and(detach)
    }

    fn read_mem(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: reads into our buffer; the remote range is the target's.
        let n = unsafe { libc::process_vm_readv(self.tid, &local, 1, &remote, 1, 0) };
        if n == buf.len() as isize {
            return Ok(());
        }
        // process_vm_readv needs the same access as ptrace; /proc/PID/mem as a fallback.
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(format!("/proc/{}/mem", self.tid))?;
        f.read_exact_at(buf, addr)
    }

    fn write_mem(&self, addr: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // /proc/PID/mem writes through page protections, like a debugger's.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/mem", self.tid))?;
        f.write_all_at(data, addr)
    }

    /// Run the thread until it stops; a signal that stops it is held (sent again at
    /// release), a trap is returned. `Err` if the thread died.
    fn run_until_trap(&mut self, step: bool) -> io::Result<Regs> {
        let req = if step {
            libc::PTRACE_SINGLESTEP
        } else {
            libc::PTRACE_CONT
        };
        ptrace(req, self.tid, 0, 0)?;
        loop {
            let status = wait_stop(self.tid)?;
            let sig = libc::WSTOPSIG(status);
            let event = status >> 16;
            if event == 0 && sig == libc::SIGTRAP {
                return get_regs(self.tid);
            }
            if event == 0 {
                if matches!(
                    sig,
                    libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGABRT
                ) {
                    return Err(io::Error::other(format!(
                        "the call crashed with {}",
                        memlens_common::signal::signal_label(sig)
                    )));
                }
                self.pending.push(sig);
            }
            ptrace(req, self.tid, 0, 0)?;
        }
    }

    /// Make a system call in the target. Needs [`Thread::find_syscall`] first.
    fn syscall(&mut self, nr: u64, args: &[u64]) -> io::Result<u64> {
        let mut r = self.saved;
        r.rip = self.syscall_insn;
        r.rax = nr;
        r.orig_rax = u64::MAX;
        let slots = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.r10, &mut r.r8, &mut r.r9,
        ];
        for (slot, &a) in slots.into_iter().zip(args) {
            *slot = a;
        }
        set_regs(self.tid, &r)?;
        let after = self.run_until_trap(true)?;
        if after.rip != self.syscall_insn + 2 {
            return Err(io::Error::other("the system call did not complete"));
        }
        Ok(after.rax)
    }

    /// Find a `syscall` instruction: where the thread waits (it is in one), else in
    /// `text` (an executable range of libc).
    pub fn find_syscall(&mut self, text: (u64, u64)) -> io::Result<()> {
        if self.waiting_in().is_some() {
            let mut b = [0u8; 2];
            if self.read_mem(self.saved.rip - 2, &mut b).is_ok() && b == [0x0f, 0x05] {
                self.syscall_insn = self.saved.rip - 2;
                return Ok(());
            }
        }
        let (lo, hi) = text;
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = lo;
        while at < hi {
            let n = buf.len().min((hi - at) as usize);
            self.read_mem(at, &mut buf[..n])?;
            if let Some(i) = buf[..n].windows(2).position(|w| w == [0x0f, 0x05]) {
                self.syscall_insn = at + i as u64;
                return Ok(());
            }
            at += n as u64 - 1;
        }
        Err(io::Error::other("no syscall instruction in libc"))
    }

    /// Map a page for the return trap and the strings; returns the strings' addresses.
    pub fn map_page(&mut self, strings: &[&[u8]]) -> io::Result<Vec<u64>> {
        let len: u64 = 4096 + strings.iter().map(|s| s.len() as u64 + 1).sum::<u64>();
        let len = (len + 4095) & !4095;
        let addr = self.syscall(
            libc::SYS_mmap as u64,
            &[
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if (addr as i64) < 0 && (addr as i64) > -4096 {
            return Err(io::Error::from_raw_os_error(-(addr as i64) as i32));
        }
        self.page = addr;
        self.page_len = len;
        // int3, then the strings from the second half of the first page on.
        let mut data = vec![0u8; len as usize];
        data[0] = 0xcc;
        let mut at = 4096usize;
        let mut out = Vec::new();
        for s in strings {
            data[at..at + s.len()].copy_from_slice(s);
            out.push(addr + at as u64);
            at += s.len() + 1;
        }
        self.write_mem(addr, &data)?;
        let r = self.syscall(
            libc::SYS_mprotect as u64,
            &[addr, 4096, (libc::PROT_READ | libc::PROT_EXEC) as u64],
        )?;
        if r != 0 {
            return Err(io::Error::other("cannot make the trap page executable"));
        }
        Ok(out)
    }

    /// Unmap the page (the calls are done).
    pub fn unmap_page(&mut self) -> io::Result<()> {
        if self.page != 0 {
            self.syscall(libc::SYS_munmap as u64, &[self.page, self.page_len])?;
            self.page = 0;
        }
        Ok(())
    }

    /// Call `func(args...)` in the target; returns rax.
    pub fn call(&mut self, func: u64, args: &[u64]) -> io::Result<u64> {
        let mut r = self.saved;
        // Below the red zone, 16-byte aligned at the call; then the return address.
        let sp = ((self.saved.rsp - 1024) & !15) - 8;
        self.write_mem(sp, &self.page.to_le_bytes())?;
        r.rsp = sp;
        r.rip = func;
        r.rax = 0;
        r.orig_rax = u64::MAX;
        let slots = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.rcx, &mut r.r8, &mut r.r9,
        ];
        for (slot, &a) in slots.into_iter().zip(args) {
            *slot = a;
        }
        set_regs(self.tid, &r)?;
        let after = self.run_until_trap(false)?;
        if after.rip != self.page + 1 {
            return Err(io::Error::other(format!(
                "the call stopped at an unexpected place ({:#x})",
                after.rip
            )));
        }
        Ok(after.rax)
    }

    /// Read a NUL-terminated string of the target (at most 4 KiB).
    pub fn read_string(&self, addr: u64) -> io::Result<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.len() < 4096 {
            self.read_mem(addr + out.len() as u64, &mut buf)?;
            if let Some(i) = buf.iter().position(|&c| c == 0) {
                out.extend_from_slice(&buf[..i]);
                break;
            }
            out.extend_from_slice(&buf);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}

fn tgid_of(tid: i32) -> i32 {
    fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}
