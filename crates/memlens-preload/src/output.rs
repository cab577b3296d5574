//! The trace file of this process, and the shared buffer of definitions (modules, stacks,
//! threads) that goes into it as Meta chunks.
//!
//! Lock order (outer first): thread::REGISTRY, thread state, modules::REBUILD,
//! stacks::INSERT, META, writer::WRITING, writer::QUEUE, FILE, private_alloc::FORK_GATE,
//! then the live table's shard locks. Fork's prepare handler takes them in that order.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use memlens_trace::{
    chunk_flags, encode_chunk, frame_chunk, max_encoded_chunk_len, ChunkBuilder, ChunkKind,
    EndCounters, ExitKind, Header, CHUNK_HEADER_LEN,
};

extern crate alloc;

/// Trace files are readable by their owner only, like core dumps: they hold the
/// program's argv (passwords passed as arguments) and heap addresses.
const TRACE_MODE: libc::c_uint = 0o600;

/// Raw size of one chunk's payload: events of a thread, or definitions.
pub const CHUNK_RAW: usize = 64 * 1024;

pub struct TraceFile {
    fd: i32,
    dev: u64,
    ino: u64,
    path: Vec<u8>,
    failed: bool,
}

pub static FILE: spin::Mutex<TraceFile> = spin::Mutex::new(TraceFile {
    fd: -1,
    dev: 0,
    ino: 0,
    path: Vec::new(),
    failed: false,
});

pub struct Meta {
    builder: Option<ChunkBuilder<Box<[u8]>>>,
}

pub static META: spin::Mutex<Meta> = spin::Mutex::new(Meta { builder: None });

pub static DROPPED_EVENTS: AtomicU64 = AtomicU64::new(0);
pub static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Set when the trace cannot be written any more: hooks stop recording.
pub static DISABLED: AtomicBool = AtomicBool::new(false);
/// The process the trace file belongs to: the one that created it. Another process can
/// run this library's code on the same memory without having created a trace: a `vfork`
/// child (it shares the parent's memory until it execs or exits, and fork handlers do
/// not run for it), or a child cloned by a raw system call. Such a process must leave
/// the trace, and every shared state around it, alone: it may have closed the fd
/// (`close_range`, Python's `close_fds`), and reopening the file by path from there, or
/// writing end records, would write into the middle of the parent's trace.
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

/// True if the calling process created the trace (see [`OWNER_PID`]).
pub fn owns_trace() -> bool {
    // SAFETY: getpid has no preconditions (glibc asks the kernel: right in a vfork child).
    OWNER_PID.load(Ordering::Relaxed) == unsafe { libc::getpid() } as u32
}

/// Unit tests: this process owns the trace (none is open: nothing is written to a file
/// while chunks only queue).
#[cfg(test)]
pub(crate) fn own_trace_in_tests() {
    // SAFETY: getpid has no preconditions.
    OWNER_PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Substitute `%p` (pid) and `%n` (program name) in the path pattern.
fn expand(pattern: &[u8], pid: u32, name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while i < pattern.len() {
        if pattern[i] == b'%' && i + 1 < pattern.len() {
            match pattern[i + 1] {
                b'p' => {
                    out.extend_from_slice(&itoa_buf(pid as u64));
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.extend_from_slice(name);
                    i += 2;
                    continue;
                }
                b'%' => {
                    out.push(b'%');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(pattern[i]);
        i += 1;
    }
    out
}

pub fn itoa_buf(mut v: u64) -> Vec<u8> {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    tmp[..n].reverse();
    tmp[..n].to_vec()
}

fn cstr(v: &[u8]) -> Vec<u8> {
    let mut c = v.to_vec();
    c.push(0);
    c
}

/// When this run (`memlens run`) started, ns since the Unix epoch; 0 if unknown (the
/// recorder preloaded by hand). A trace whose header starts earlier is left from an
/// earlier run, and its name is reused.
pub static RUN_START_NS: AtomicU64 = AtomicU64::new(0);

/// Open `path` for a new trace: created if free; if it holds a file left from before
/// this run, that file, emptied. `Err(errno)` otherwise: `EEXIST` when the name belongs
/// to another process of this run (or to something that is not a regular file). On success the file
/// is locked (`flock`) until `create` has written its header, so a process of the same
/// run that meets the name meanwhile waits, then reads that header.
fn open_trace_path(path: &[u8]) -> Result<i32, i32> {
    let c = cstr(path);
    // SAFETY: c is NUL-terminated.
    let fd = unsafe {
        libc::open(
            c.as_ptr() as *const _,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            TRACE_MODE,
        )
    };
    if fd >= 0 {
        // SAFETY: our new fd. Between the open and the lock the file is empty, which
        // another process takes as "this run's" (see below).
        unsafe { libc::flock(fd, libc::LOCK_EX) };
        return Ok(fd);
    }
    let err = errno();
    let run_start = RUN_START_NS.load(Ordering::Relaxed);
    if err != libc::EEXIST || run_start == 0 {
        return Err(err);
    }
    // The name is taken. Never follow a symbolic link there (someone else's file in a
    // shared directory), and replace only a regular file: not even open anything else
    // (a device or a FIFO).
    // SAFETY: c is NUL-terminated; lstat fills `st`.
    let regular = unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        libc::lstat(c.as_ptr() as *const _, &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
    };
    if !regular {
        return Err(libc::EEXIST);
    }
    // SAFETY: c is NUL-terminated.
    let fd = unsafe {
        libc::open(
            c.as_ptr() as *const _,
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(libc::EEXIST);
    }
    let mut head = [0u8; 64];
    // SAFETY: fstat fills `st`; pread writes at most head.len() bytes into head; fd is
    // ours. flock waits while another process of this run writes the header.
    let (st, n) = unsafe {
        libc::flock(fd, libc::LOCK_EX);
        let mut st: libc::stat = core::mem::zeroed();
        let ok = libc::fstat(fd, &mut st) == 0;
        let n = libc::pread(fd, head.as_mut_ptr() as *mut _, head.len(), 0);
        (ok.then_some(st), n.max(0) as usize)
    };
    let earlier = st.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size > 0)
        && memlens_trace::header_start_unix_ns(&head[..n]).is_none_or(|t| t < run_start);
    // SAFETY: plain fd calls on our fd; an emptied file gets the mode of a new trace.
    let replaced = earlier
        && unsafe {
            libc::ftruncate(fd, 0) == 0 && libc::fchmod(fd, TRACE_MODE as libc::mode_t) == 0
        };
    if replaced {
        return Ok(fd);
    }
    // SAFETY: our fd; closing it drops the lock.
    unsafe { libc::close(fd) };
    Err(libc::EEXIST)
}

impl TraceFile {
    /// Create the trace file for this process: `pattern` expanded. A file of that name
    /// left from before this run is replaced; if the name belongs to another process of
    /// this run (an exec chain keeps its pid, several processes may share a name without
    /// `%p`), `.1`, `.2`... is appended.
    pub fn create(&mut self, pattern: &[u8], pid: u32, name: &[u8], header: &Header) -> bool {
        let base = expand(pattern, pid, name);
        for attempt in 0..1000u32 {
            let mut p = base.clone();
            if attempt > 0 {
                p.push(b'.');
                p.extend_from_slice(&itoa_buf(attempt as u64));
            }
            let fd = match open_trace_path(&p) {
                Ok(fd) => fd,
                Err(libc::EEXIST) => continue,
                Err(e) => {
                    self.warn_once(&p, e);
                    return false;
                }
            };
            self.fd = crate::sys::move_high(fd);
            self.path = p;
            self.failed = false;
            self.remember_identity();
            OWNER_PID.store(pid, Ordering::Relaxed);
            let mut h = Vec::new();
            header.encode(&mut h);
            self.write(&h);
            // SAFETY: our fd (the lock moved with it); the header is written.
            unsafe { libc::flock(self.fd, libc::LOCK_UN) };
            return !self.failed;
        }
        false
    }

    fn remember_identity(&mut self) {
        // SAFETY: fstat fills `st`.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        if unsafe { libc::fstat(self.fd, &mut st) } == 0 {
            self.dev = st.st_dev;
            self.ino = st.st_ino;
        }
    }

    /// Make sure `fd` is still our file: the program may have closed it (close-all
    /// loops) and even reused the number. Reopen by path if so.
    fn ensure_fd(&mut self) -> bool {
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fstat fills `st`; a closed fd just fails.
        let ok = self.fd >= 0
            && unsafe { libc::fstat(self.fd, &mut st) } == 0
            && st.st_dev == self.dev
            && st.st_ino == self.ino;
        if ok {
            return true;
        }
        let c = cstr(&self.path);
        // SAFETY: c is NUL-terminated. We never close the old number: it may be the
        // program's file now.
        let fd = unsafe {
            libc::open(
                c.as_ptr() as *const _,
                libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return false;
        }
        self.fd = crate::sys::move_high(fd);
        self.remember_identity();
        true
    }

    /// Append bytes; on failure, warn once and stop recording (the program runs on).
    pub fn write(&mut self, mut data: &[u8]) {
        if self.failed || self.fd < 0 {
            return;
        }
        if !self.ensure_fd() {
            self.fail(libc::EBADF);
            return;
        }
        while !data.is_empty() {
            // SAFETY: data is a valid slice; fd is ours.
            let n = unsafe { libc::write(self.fd, data.as_ptr() as *const _, data.len()) };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                self.fail(errno());
                return;
            }
            if n == 0 {
                self.fail(libc::ENOSPC);
                return;
            }
            data = &data[n as usize..];
        }
    }

    fn fail(&mut self, err: i32) {
        self.failed = true;
        WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
        DISABLED.store(true, Ordering::Relaxed);
        let p = self.path.clone();
        self.warn_once(&p, err);
    }

    fn warn_once(&self, path: &[u8], err: i32) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if WARNED.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(b"memlens: cannot write the trace ");
        msg.extend_from_slice(path);
        msg.extend_from_slice(b": ");
        // SAFETY: strerror returns a static NUL-terminated string for any errno.
        let s = unsafe { core::ffi::CStr::from_ptr(libc::strerror(err)) };
        msg.extend_from_slice(s.to_bytes());
        msg.extend_from_slice(
            b"; recording stops here, the program runs on and the trace keeps what was written\n",
        );
        // SAFETY: writing a buffer to fd 2; failure is ignored on purpose.
        unsafe { libc::write(2, msg.as_ptr() as *const _, msg.len()) };
    }

    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// Close the trace (`memlens attach` detached): another attach opens a new one.
    pub fn close(&mut self) {
        if self.fd >= 0 {
            // SAFETY: our own trace fd, forgotten below.
            unsafe { libc::close(self.fd) };
        }
        self.forget();
    }

    /// Forget the parent's file in a forked child (the fd stays open: it is the parent's).
    pub fn forget(&mut self) {
        self.fd = -1;
        self.failed = false;
        self.path.clear();
    }
}

/// Compress and write one chunk now, after every chunk queued for the writer. False if
/// the chunk was left alone because this process does not own the trace (a `vfork` child
/// running on its parent's memory): the caller keeps the buffer for the owner. True
/// otherwise (written, or counted as dropped).
pub fn write_chunk<B: AsRef<[u8]> + AsMut<[u8]>>(
    kind: ChunkKind,
    thread: u32,
    b: &ChunkBuilder<B>,
) -> bool {
    if b.is_empty() {
        return true;
    }
    if !owns_trace() {
        return false;
    }
    crate::writer::write_now(kind, thread, b);
    true
}

/// Compress `b` into `out` (zstd with `zstd` when there is one, lz4 otherwise) and
/// append it to the file (the caller holds `writer::WRITING`, so chunks go out in order).
/// A chunk that cannot be encoded counts its records as dropped.
pub fn encode_and_write<B: AsRef<[u8]> + AsMut<[u8]>>(
    kind: ChunkKind,
    thread: u32,
    b: &ChunkBuilder<B>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    zstd: Option<&mut crate::writer::Zstd>,
) {
    if b.is_empty() {
        return;
    }
    let raw = b.payload(scratch);
    let need = max_encoded_chunk_len(raw.len()).max(crate::writer::Zstd::max_chunk_len(raw.len()));
    if out.len() < need {
        out.resize(need, 0);
    }
    let times = (b.first_ts(), b.last_ts());
    let zstd_len = zstd.and_then(|z| z.compress(raw, &mut out[CHUNK_HEADER_LEN..]));
    let framed = match zstd_len {
        Some(n) => Ok(frame_chunk(
            kind,
            thread,
            times,
            raw.len(),
            chunk_flags::ZSTD,
            n,
            out,
        )),
        None => encode_chunk(kind, thread, times.0, times.1, raw, out),
    };
    match framed {
        Ok(n) => FILE.lock().write(&out[..n]),
        Err(_) => {
            DROPPED_EVENTS.fetch_add(b.records() as u64, Ordering::Relaxed);
        }
    }
}

impl Meta {
    fn builder(&mut self) -> &mut ChunkBuilder<Box<[u8]>> {
        self.builder.get_or_insert_with(|| {
            ChunkBuilder::new(alloc::vec![0u8; CHUNK_RAW].into_boxed_slice())
        })
    }

    /// Run `f` on the definitions buffer, flushing it first if the record does not fit.
    pub fn with<E>(&mut self, mut f: impl FnMut(&mut ChunkBuilder<Box<[u8]>>) -> Result<(), E>) {
        if f(self.builder()).is_ok() {
            return;
        }
        self.flush();
        if f(self.builder()).is_err() {
            DROPPED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn flush(&mut self) {
        let Some(b) = self.builder.as_mut() else {
            return;
        };
        crate::writer::submit(ChunkKind::Meta, 0, b);
    }

    /// Drop buffered definitions (a forked child must not write the parent's).
    pub fn discard(&mut self) {
        if let Some(b) = self.builder.as_mut() {
            b.clear();
        }
    }
}

pub fn module_load(
    ts: u64,
    id: u32,
    path: &[u8],
    build_id: &[u8],
    bias: u64,
    segments: &[(u64, u64, u32)],
) {
    META.lock()
        .with(|b| b.module_load(ts, id, path, build_id, bias, segments));
}

pub fn module_unload(ts: u64, id: u32) {
    META.lock().with(|b| b.module_unload(ts, id));
}

pub fn notice(ts: u64, kind: memlens_trace::NoticeKind, module: &[u8], symbols: &[u8]) {
    META.lock().with(|b| b.notice(ts, kind, module, symbols));
}

pub fn thread_record(ts: u64, index: u32, tid: u32, name: &[u8]) {
    META.lock().with(|b| b.thread(ts, index, tid, name));
}

/// Write the End chunk (after all events have been flushed).
pub fn end(ts: u64, kind: ExitKind, code: i32) {
    let counters = EndCounters {
        untracked_frees: 0,
        dropped_events: DROPPED_EVENTS.load(Ordering::Relaxed),
        recorder_peak_bytes: crate::private_alloc::MAPPED_BYTES.load(Ordering::Relaxed),
        write_errors: WRITE_ERRORS.load(Ordering::Relaxed),
    };
    META.lock().flush();
    let mut buf = [0u8; 256];
    let mut b = ChunkBuilder::new(&mut buf[..]);
    if b.end(ts, kind, code, &counters).is_ok() {
        write_chunk(ChunkKind::End, 0, &b);
    }
}
