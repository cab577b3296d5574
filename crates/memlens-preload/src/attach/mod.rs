//! The recorder in a process that did not start with it: `memlens attach`.
//!
//! `memlens attach` loads this library into a running process with the process's own
//! `dlopen` (from a ptrace'd thread, `crates/memlens-cli/src/attach/`). Loaded that way
//! it interposes nothing (its symbols are not in the global scope) and its constructor
//! does nothing ([`loaded_at_start`] tells the two cases apart). Then memlens calls
//! [`memlens_attach`] with the path of a settings file; it opens the trace (its header
//! says the recording started at attach, with the heap then live), starts the
//! `memlens-rss` thread and routes the malloc family and operator new/delete of every
//! loaded module to the hooks (`got.rs`). That thread then, at each tick: routes modules
//! loaded since, and reads the control FIFO; a byte there (or its end: memlens is gone)
//! ends the recording: the slots are restored, the trace is flushed and ended (End kind
//! `Detach`), `ok` is written to the done FIFO and the thread exits. The library stays
//! loaded and dormant, so a later attach starts a new trace.
//!
//! What attached mode does not do: no leak scan at exit (blocks allocated before the
//! attach are unknown, so what they point to would look lost), no fatal-signal handlers
//! (installing them would change the program's dispositions), no `exec`/`_exit`/`dlsym`
//! interposition (the trace of a process that execs or `_exit`s while attached reads as
//! cut short; a function pointer fetched with `dlsym` before or during the attach is not
//! routed). A free or realloc of a block it never saw goes to glibc untouched and counts
//! as an untracked free, never as a heap error.

use crate::config::{Config, Settings};
use crate::thread::{self, now_ns, ACTIVE};
use crate::{lifecycle, live, modules, output, scan, stacks, tls};
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use memlens_trace::env as var;

extern crate alloc;

mod got;

/// Set by the constructor when the library was loaded by `dlopen` after start-up (by
/// `memlens attach`): the recorder stays dormant until [`memlens_attach`].
pub static LOADED_BY_ATTACH: AtomicBool = AtomicBool::new(false);

const DORMANT: u8 = 0;
const STARTING: u8 = 1;
const RECORDING: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(DORMANT);
/// The process-wide handlers (fork, exit) and the first tables exist.
static PREPARED: AtomicBool = AtomicBool::new(false);
static CONTROL_FD: AtomicI32 = AtomicI32::new(-1);
static DONE_FD: AtomicI32 = AtomicI32::new(-1);
/// The loader's add/sub counters when modules were last routed, and the counters seen
/// at the previous tick (a change is acted on one tick later, once the load is done).
static ROUTED_COUNTS: AtomicU64 = AtomicU64::new(0);
static SEEN_COUNTS: AtomicU64 = AtomicU64::new(0);

/// `memlens_attach`'s answers.
pub const ATTACH_OK: c_int = 0;
/// The recorder was preloaded (`memlens run`) or is recording already.
pub const ATTACH_ALREADY: c_int = 1;
/// The settings file could not be read.
pub const ATTACH_SETTINGS: c_int = 2;
/// The trace file could not be created.
pub const ATTACH_TRACE: c_int = 3;
/// The control FIFOs could not be opened.
pub const ATTACH_CONTROL: c_int = 4;
/// The recorder's tables could not be mapped.
pub const ATTACH_MEMORY: c_int = 5;
/// The process's malloc is not the allocator the hooks would call (another allocator
/// replaces part of glibc's, or the program defines its own).
pub const ATTACH_OTHER_ALLOCATOR: c_int = 6;

/// Link maps [`note_loader_maps`] keeps.
pub const LOADER_MAPS_MAX: usize = 16;

/// The loader's link maps (`struct link_map`) of this library and of the libraries the
/// `dlopen` that loaded it loaded with it (its dependencies the program had not loaded
/// yet), 0 after the last: their link maps, names, search lists and version tables are
/// heap blocks that ld.so allocated for the recorder. `memlens snapshot` reads them here
/// (`crates/memlens-cli/src/snapshot/recorder.rs`) to leave those blocks out with the
/// recorder's own, instead of counting them as the program's. Filled by the dormant
/// constructor; none under `memlens run`, where ld.so maps the recorder in its own memory.
#[export_name = "memlens_loader_maps"]
pub static LOADER_MAPS: [AtomicU64; LOADER_MAPS_MAX] =
    [const { AtomicU64::new(0) }; LOADER_MAPS_MAX];

/// The public head of glibc's `struct link_map` (`<link.h>`).
#[repr(C)]
struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
    l_ld: *mut c_void,
    l_next: *const LinkMap,
    l_prev: *const LinkMap,
}

/// `dladdr1`'s request for the link map (`<dlfcn.h>`).
const RTLD_DL_LINKMAP: c_int = 2;

/// Fill [`LOADER_MAPS`]: this library's link map and those after it in the loader's list.
/// Called from the constructor, which the loader runs inside the `dlopen` that loaded us,
/// holding its lock: the maps after ours are then exactly the ones that `dlopen` added.
pub fn note_loader_maps() {
    let mut info = core::mem::MaybeUninit::<libc::Dl_info>::uninit();
    let mut lm: *mut c_void = core::ptr::null_mut();
    // SAFETY: dladdr1 writes `info` and, with RTLD_DL_LINKMAP, the link map's address into
    // `lm`; the address asked about is this library's code. (The loader's lock it takes is
    // recursive: the constructor runs under it on this thread.)
    let found = unsafe {
        libc::dladdr1(
            note_loader_maps as *const c_void,
            info.as_mut_ptr(),
            &mut lm,
            RTLD_DL_LINKMAP,
        )
    };
    if found == 0 {
        return;
    }
    let mut p = lm as *const LinkMap;
    for slot in LOADER_MAPS.iter() {
        if p.is_null() {
            break;
        }
        slot.store(p as u64, Ordering::Relaxed);
        // SAFETY: `p` is a link map in the loader's list, which the loader's lock (held
        // while constructors run) keeps as it is; l_next is its public field.
        p = unsafe { (*p).l_next };
    }
}

/// Whether this library was loaded with the program (LD_PRELOAD), not by a later
/// `dlopen`: the loader lists the modules in load order, and preloaded libraries come
/// before libc, which every program's own dependencies pull in.
pub fn loaded_at_start() -> bool {
    struct Order {
        /// An address of this library's code.
        own: u64,
        index: usize,
        own_at: Option<usize>,
        libc_at: Option<usize>,
    }
    /// # Safety
    /// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` is the Order.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _s: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: valid for the callback (the loader lists loaded modules, whose program
        // headers are mapped); data is the Order passed below.
        let (info, o) = unsafe { (&*info, &mut *(data as *mut Order)) };
        if !info.dlpi_phdr.is_null() {
            // SAFETY: the module's program headers, as above.
            let phdrs =
                unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
            let mine = phdrs.iter().any(|ph| {
                let lo = info.dlpi_addr.wrapping_add(ph.p_vaddr);
                ph.p_type == libc::PT_LOAD && lo <= o.own && o.own < lo + ph.p_memsz
            });
            if mine {
                o.own_at.get_or_insert(o.index);
            }
        }
        if !info.dlpi_name.is_null() {
            // SAFETY: the loader's NUL-terminated name.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
            let file = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
            if file.starts_with(b"libc.so") {
                o.libc_at.get_or_insert(o.index);
            }
        }
        o.index += 1;
        0
    }
    // (No dladdr here: this runs at start-up, maybe from inside a malloc hook, where
    // dl_iterate_phdr is already used and the loader's main lock is best left alone.)
    let mut o = Order {
        own: loaded_at_start as *const () as u64,
        index: 0,
        own_at: None,
        libc_at: None,
    };
    // SAFETY: `visit` only reads the phdr info and writes `o`.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut o as *mut Order as *mut c_void) };
    match (o.own_at, o.libc_at) {
        (Some(own), Some(libc)) => own < libc,
        // Not found (cannot happen with glibc): behave as before, record.
        _ => true,
    }
}

fn open_fifo(path: Option<&CStr>, flags: c_int) -> Option<i32> {
    // SAFETY: NUL-terminated path; O_NONBLOCK: never waits for the other end.
    let fd = unsafe { libc::open(path?.as_ptr(), flags | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    (fd >= 0).then(|| crate::sys::move_high(fd))
}

fn close_fd(slot: &AtomicI32) {
    let fd = slot.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: our own fd, forgotten above.
        unsafe { libc::close(fd) };
    }
}

/// Heap in use now, as glibc counts it.
fn live_heap_bytes() -> u64 {
    // SAFETY: mallinfo2 has no preconditions (it takes the arenas' locks in turn).
    let mi = unsafe { libc::mallinfo2() };
    (mi.uordblks + mi.hblkhd) as u64
}

/// Start recording in this process, which loaded the library by `dlopen`. `settings` is
/// the path of the settings file `memlens attach` wrote. Returns [`ATTACH_OK`] or the
/// reason it did not start (the `ATTACH_*` constants).
///
/// # Safety
/// `settings` is a NUL-terminated path. Called once at a time (memlens calls it from
/// one ptrace'd thread, the process's other threads running).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memlens_attach(settings: *const c_char) -> c_int {
    let Some(_busy) = tls::BusyGuard::enter() else {
        return ATTACH_ALREADY;
    };
    if !LOADED_BY_ATTACH.load(Ordering::Acquire)
        || STATE
            .compare_exchange(DORMANT, STARTING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return ATTACH_ALREADY;
    }
    // SAFETY: the caller's NUL-terminated path.
    let r = start(unsafe { CStr::from_ptr(settings) });
    STATE.store(
        if r == ATTACH_OK { RECORDING } else { DORMANT },
        Ordering::Release,
    );
    r
}

fn start(settings: &CStr) -> c_int {
    if !got::allocator_is_routable() {
        return ATTACH_OTHER_ALLOCATOR;
    }
    let Some(s) = Settings::from_file(settings) else {
        return ATTACH_SETTINGS;
    };
    let cfg = Config::from_lookup(|name| s.get(name));
    let Some(output_path) = cfg.output else {
        return ATTACH_SETTINGS;
    };
    let first = !PREPARED.load(Ordering::Acquire);
    // Each window's trace counts its time from its own attach.
    crate::clock::restart();
    if first && !stacks::init() {
        return ATTACH_MEMORY;
    }
    let Some(control) = open_fifo(s.get(var::ATTACH_CONTROL.c_name()), libc::O_RDONLY) else {
        return ATTACH_CONTROL;
    };
    let Some(done) = open_fifo(s.get(var::ATTACH_DONE.c_name()), libc::O_WRONLY) else {
        // SAFETY: our fd.
        unsafe { libc::close(control) };
        return ATTACH_CONTROL;
    };
    thread::MAX_DEPTH.store(cfg.max_depth as u32, Ordering::Relaxed);
    thread::UNWIND_CACHE.store(cfg.unwind_cache, Ordering::Relaxed);
    thread::FREE_STACKS.store(cfg.free_stacks, Ordering::Relaxed);
    // The exit scan would call lost whatever only blocks from before the attach point to.
    scan::ENABLED.store(false, Ordering::Relaxed);
    // The sampler thread is also the one that ends the recording: it must run.
    let interval = if cfg.rss_interval_ns == 0 {
        10_000_000
    } else {
        cfg.rss_interval_ns
    };
    thread::RSS_INTERVAL_NS.store(interval, Ordering::Relaxed);
    output::DISABLED.store(false, Ordering::Relaxed);
    output::DROPPED_EVENTS.store(0, Ordering::Relaxed);
    output::WRITE_ERRORS.store(0, Ordering::Relaxed);
    // Blocks of an earlier window may have been freed since, their addresses reused.
    live::clear_all();
    if !first {
        stacks::EPOCH.fetch_add(0x5851_F42D_4C95_7F2D, Ordering::Relaxed);
        // Definitions made after the last window's end (a thread first seen by a hook
        // that recorded nothing) belong to no trace.
        output::META.lock().discard();
    }
    let heap = live_heap_bytes();
    if !lifecycle::open_attached_trace(output_path.to_bytes(), heap) {
        // SAFETY: our fds.
        unsafe {
            libc::close(control);
            libc::close(done);
        }
        return ATTACH_TRACE;
    }
    CONTROL_FD.store(control, Ordering::Release);
    DONE_FD.store(done, Ordering::Release);
    let ts = now_ns();
    if first {
        modules::refresh(ts);
        // A CPython process: its stacks get their Python frames, as under `memlens run`
        // (the interpreter is found once; its allocator is whatever it started with).
        crate::python::prepare(ts, cfg.python_frames);
        lifecycle::register_process_handlers();
        PREPARED.store(true, Ordering::Release);
    } else {
        modules::reemit_all(ts);
        modules::refresh(ts);
        thread::reset_for_new_trace(ts);
        crate::api::after_fork_child();
        // The new trace defines its code objects again, and says what the first found.
        crate::python::after_fork_child();
        crate::python::reemit_notices(ts);
    }
    ACTIVE.store(true, Ordering::Release);
    thread::start_sampler();
    let counts = load_counts();
    ROUTED_COUNTS.store(counts, Ordering::Relaxed);
    SEEN_COUNTS.store(counts, Ordering::Relaxed);
    got::patch_all();
    ATTACH_OK
}

fn load_counts() -> u64 {
    /// # Safety
    /// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` is a u64.
    unsafe extern "C" fn counts(
        info: *mut libc::dl_phdr_info,
        _s: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: valid for the callback; data is the u64 passed below.
        unsafe {
            let info = &*info;
            *(data as *mut u64) = info.dlpi_adds.wrapping_mul(0x1_0000_0001) ^ info.dlpi_subs;
        }
        1
    }
    let mut c = 0u64;
    // SAFETY: `counts` writes one u64 into `c`.
    unsafe { libc::dl_iterate_phdr(Some(counts), &mut c as *mut u64 as *mut c_void) };
    c
}

/// The `memlens-rss` thread's turn, once per sample: route modules loaded since the
/// last tick but one, and end the recording when memlens asks (or is gone). True once
/// the recording has ended: the thread then exits. Caller is busy.
pub fn tick() -> bool {
    if STATE.load(Ordering::Acquire) != RECORDING {
        return false;
    }
    let counts = load_counts();
    let seen = SEEN_COUNTS.swap(counts, Ordering::Relaxed);
    if counts == seen && counts != ROUTED_COUNTS.load(Ordering::Relaxed) {
        // Changed at least one tick ago and stable since: route what is new, forget
        // what is gone. (A module still being loaded is left for a later pass.)
        got::forget_unloaded();
        got::patch_all();
        ROUTED_COUNTS.store(counts, Ordering::Relaxed);
    }
    let fd = CONTROL_FD.load(Ordering::Acquire);
    if fd < 0 {
        return false;
    }
    let mut b = [0u8; 16];
    // SAFETY: a non-blocking read into `b` from our fd.
    let n = unsafe { libc::read(fd, b.as_mut_ptr() as *mut c_void, b.len()) };
    // SAFETY: reading this thread's errno.
    let again = n < 0 && unsafe { *libc::__errno_location() } == libc::EAGAIN;
    if again {
        return false;
    }
    // A byte: memlens asks; end of file: memlens is gone. Either ends the recording.
    detach();
    true
}

/// Undo the routing, finish the trace, tell memlens, go dormant. On the `memlens-rss`
/// thread, which is busy.
fn detach() {
    got::restore_all();
    // A thread that entered a hook before its slot was restored either records before
    // the flush or, asking `ACTIVE` again under its buffer's lock, not at all
    // (`thread::still_active`): no wait is needed. The hooks stay loaded.
    if !lifecycle::finish_detached() {
        // The process is exiting and its exit handler ended the trace.
        close_fd(&CONTROL_FD);
        close_fd(&DONE_FD);
        return;
    }
    thread::close_statm();
    // This thread writes no more: another attach starts its own writer. The FIFOs are
    // taken out before the recorder is dormant: the next attach stores its own.
    crate::writer::WRITER_RUNS.store(false, Ordering::Release);
    let control = CONTROL_FD.swap(-1, Ordering::AcqRel);
    let done = DONE_FD.swap(-1, Ordering::AcqRel);
    STATE.store(DORMANT, Ordering::Release);
    // SAFETY: our own fds, taken out above: the control FIFO closed, 3 bytes written to
    // the done FIFO (non-blocking; memlens reads them), which is closed last: memlens
    // waits for its end, so by then the process has its descriptors back as they were.
    unsafe {
        if control >= 0 {
            libc::close(control);
        }
        if done >= 0 {
            libc::write(done, b"ok\n".as_ptr() as *const c_void, 3);
            libc::close(done);
        }
    }
}

/// In a forked child: the parent's recording is not the child's. Its routed slots
/// stay (the memory is a copy) and lead to hooks that record nothing.
pub fn after_fork_child() {
    if !LOADED_BY_ATTACH.load(Ordering::Relaxed) {
        return;
    }
    close_fd(&CONTROL_FD);
    close_fd(&DONE_FD);
    STATE.store(DORMANT, Ordering::Release);
    // Never again: the child has no sampler thread to end a recording.
    PREPARED.store(true, Ordering::Release);
    let _ = Vec::<u8>::new();
}

/// Whether a release of a pointer the recorder never saw is a block from before the
/// attach (passed to glibc) rather than a heap error.
#[inline(always)]
pub fn unknown_blocks_are_old() -> bool {
    LOADED_BY_ATTACH.load(Ordering::Relaxed)
}
