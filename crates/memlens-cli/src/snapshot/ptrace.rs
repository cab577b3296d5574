//! Stopping every thread of a process with ptrace, reading their registers, and letting
//! them go.
//!
//! `PTRACE_SEIZE` + `PTRACE_INTERRUPT` per thread (no SIGSTOP is sent, no signal
//! disposition is touched, the program cannot tell), repeated over `/proc/PID/task` until
//! no new thread appears. A thread found in a signal-delivery stop keeps its signal, which
//! is given back when it is detached. Detaching resumes each thread exactly where it was:
//! a blocking system call it was in restarts (or returns EINTR where the program asked for
//! that, as after any stop).

use std::collections::BTreeMap;
use std::time::Instant;

/// One stopped thread.
#[derive(Clone, Debug)]
pub struct Thread {
    pub tid: u32,
    pub sp: u64,
    /// The thread pointer (fs base): where glibc's `struct pthread` is.
    pub tp: u64,
    /// 16 general-purpose registers (the exit scan's order, the kernel's sigcontext:
    /// r8-r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp), then the low 128 bits of
    /// xmm0-15 as two words each.
    pub regs: Vec<u64>,
    /// Stopped at an arbitrary instruction (not inside a system call): the 128-byte red
    /// zone below sp may hold a leaf function's live locals.
    pub red_zone: bool,
    /// The thread's name (`/proc/PID/task/TID/comm`).
    pub name: String,
    /// A signal it was about to receive when it stopped, given back at detach.
    pending: i32,
}

/// The stopped process; detaching (explicitly or on drop) resumes every thread.
pub struct Stopped {
    pub threads: Vec<Thread>,
    pub stopped_at: Instant,
    detached: bool,
}

/// Why a process cannot be stopped, as one sentence.
pub fn describe(pid: u32, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) if tracer(pid).is_some_and(|t| t != 0) => format!(
            "cannot stop process {pid}: it is already traced by process {} (a debugger?); \
             a process has one tracer at a time",
            tracer(pid).unwrap_or(0)
        ),
        Some(libc::EPERM) => format!(
            "cannot stop process {pid}: ptrace was refused (run as the same user or root, \
             check /proc/sys/kernel/yama/ptrace_scope, or give the container CAP_SYS_PTRACE)"
        ),
        Some(libc::ESRCH) | Some(libc::ENOENT) => {
            format!("process {pid} does not exist (or has ended)")
        }
        _ => format!("cannot stop process {pid}: {e}"),
    }
}

/// The `TracerPid` of `/proc/PID/status`.
fn tracer(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn task_ids(pid: u32) -> std::io::Result<Vec<u32>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            // The main thread after `pthread_exit`: a zombie, which cannot be stopped.
            if !super::remote::task_ended(pid, t) {
                v.push(t);
            }
        }
    }
    v.sort_unstable();
    Ok(v)
}

fn ptrace(req: libc::c_uint, tid: u32, addr: u64, data: u64) -> std::io::Result<i64> {
    // SAFETY: ptrace requests on a thread we seized; `addr`/`data` are what each request
    // expects (an options word, or a pointer to a buffer of the right size owned by the
    // caller).
    let r = unsafe {
        libc::ptrace(
            req,
            tid as libc::pid_t,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wait for `tid` to report a stop: Ok(Some(signal to give back)), Ok(None) if it ended.
fn wait_stop(tid: u32) -> std::io::Result<Option<i32>> {
    loop {
        let mut status = 0;
        // SAFETY: waiting for a thread we trace (__WALL: threads are clones).
        let r = unsafe { libc::waitpid(tid as libc::pid_t, &mut status, libc::__WALL) };
        if r == -1 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Ok(None);
        }
        if libc::WIFSTOPPED(status) {
            let event = (status >> 16) & 0xff;
            let sig = libc::WSTOPSIG(status);
            // PTRACE_EVENT_STOP: our interrupt (SIGTRAP) or a group stop; anything else
            // with no event is a signal about to be delivered: keep it for the detach.
            return Ok(Some(if event == 0 && sig != libc::SIGTRAP {
                sig
            } else {
                0
            }));
        }
    }
}

/// Stop every thread of `pid` and read its registers.
pub fn stop(pid: u32) -> Result<Stopped, String> {
    let mut seized: BTreeMap<u32, i32> = BTreeMap::new();
    let mut st = Stopped {
        threads: Vec::new(),
        stopped_at: Instant::now(),
        detached: false,
    };
    // Seize until a pass over the task list finds no new thread (a thread may start
    // another before it is stopped).
    loop {
        let tids = task_ids(pid).map_err(|e| describe(pid, &e))?;
        let new: Vec<u32> = tids
            .into_iter()
            .filter(|t| !seized.contains_key(t))
            .collect();
        if new.is_empty() {
            break;
        }
        // Seize them all, then interrupt them all, then wait for each: the threads stop
        // in parallel (a busy thread stops when it is next scheduled).
        let mut fresh = Vec::new();
        for tid in new {
            match ptrace(libc::PTRACE_SEIZE, tid, 0, 0) {
                Ok(_) => {}
                // Ended meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) && tid != pid => continue,
                // (Dropping `st` detaches the threads seized so far.)
                Err(e) => return Err(describe(pid, &e)),
            }
            st.threads.push(thread_stub(tid));
            fresh.push(tid);
        }
        for &tid in &fresh {
            let _ = ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0);
        }
        for tid in fresh {
            match wait_stop(tid) {
                Ok(Some(sig)) => {
                    seized.insert(tid, sig);
                    if let Some(t) = st.threads.iter_mut().find(|t| t.tid == tid) {
                        t.pending = sig;
                    }
                }
                Ok(None) => st.threads.retain(|t| t.tid != tid),
                Err(e) => return Err(describe(pid, &e)),
            }
        }
        if seized.is_empty() {
            return Err(format!("process {pid} does not exist (or has ended)"));
        }
    }
    let mut threads = Vec::new();
    for (&tid, &sig) in &seized {
        let mut t = thread_stub(tid);
        t.pending = sig;
        if read_regs(&mut t).is_ok() {
            t.name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            threads.push(t);
        }
    }
    if !threads.iter().any(|t| t.tid == pid) {
        return Err(format!(
            "process {pid} cannot be snapshotted: it runs on without its main thread (it \
             called pthread_exit); record it from its start with memlens run, whose leak check \
             at exit sees it"
        ));
    }
    st.threads = threads;
    Ok(st)
}

fn thread_stub(tid: u32) -> Thread {
    Thread {
        tid,
        sp: 0,
        tp: 0,
        regs: Vec::new(),
        red_zone: false,
        name: String::new(),
        pending: 0,
    }
}

fn read_regs(t: &mut Thread) -> std::io::Result<()> {
    // SAFETY: plain-data structs the kernel fills whole.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETREGS, t.tid, 0, &mut r as *mut _ as u64)?;
    // SAFETY: as above.
    let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
    let have_fp = ptrace(libc::PTRACE_GETFPREGS, t.tid, 0, &mut fp as *mut _ as u64).is_ok();
    t.sp = r.rsp;
    t.tp = r.fs_base;
    // The sigcontext order the exit scan reads: r8-r15, rdi, rsi, rbp, rbx, rdx, rax,
    // rcx, rsp.
    t.regs = vec![
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp,
    ];
    if have_fp {
        for x in fp.xmm_space.chunks(4).take(16) {
            t.regs.push(x[0] as u64 | (x[1] as u64) << 32);
            t.regs.push(x[2] as u64 | (x[3] as u64) << 32);
        }
    }
    // Inside a system call (orig_rax >= 0) the thread entered the kernel by a call-like
    // instruction of its own: below sp is dead. Otherwise it was interrupted anywhere.
    t.red_zone = (r.orig_rax as i64) < 0;
    Ok(())
}

impl Stopped {
    /// How long the process has been stopped.
    pub fn paused(&self) -> std::time::Duration {
        self.stopped_at.elapsed()
    }

    /// Resume every thread (detach), giving back signals caught at the stop.
    pub fn detach(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        for t in &self.threads {
            let _ = ptrace(libc::PTRACE_DETACH, t.tid, 0, t.pending as u64);
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.detach();
    }
}
