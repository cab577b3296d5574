//! CPython's frames in recorded stacks, read from the interpreter's own structures by the
//! thread that allocates (no module imported into the program, no debug package, no
//! rebuild).
//!
//! At start-up, a process that is a CPython 3.11, 3.12 or 3.13 (its executable or a
//! loaded `libpython3.*`; these export the symbols used here even when stripped) gets an
//! [`Interp`]: the version's structure layout, the address range of
//! `_PyEval_EvalFrameDefault`, `PyGILState_GetThisThreadState` (this thread's state,
//! with or without the GIL) and `PyCode_Type`. Other versions get a notice and native
//! stacks.
//!
//! At each recorded stack, [`walk`] follows this thread's chain of interpreter frames
//! (`_PyInterpreterFrame`, innermost first): the code object and the instruction being
//! run, and where each C-level call of the evaluation loop began (3.11: the `is_entry`
//! frame; 3.12+: a shim frame owned by the C stack). Only this thread changes its own
//! chain, and it is inside the allocator now, so the chain is stable while it is read.
//! [`merge`] then puts each native `_PyEval_EvalFrameDefault` frame's Python frames in
//! its place, as py-spy and memray do.
//!
//! A Python frame is written into the stack as a tagged word ([`TAG`], the code's id,
//! the instruction index); the code object is defined once in the trace (Meta PyCode:
//! qualified name, file, first line and location table, so lines are resolved offline).
//! Code ids are kept per code object address, checked against the object's name, file,
//! location table and first line, so an address reused by another code object gets a
//! new id.
//!
//! Layouts: offsets from each version's internal headers (`offsetof` with
//! `Py_BUILD_CORE`), checked on Debian's 3.11.2 and pyenv's 3.11.7, 3.12.1 and 3.13.0;
//! 3.13's `_Py_DebugOffsets` (the interpreter's own description of its layout for
//! debuggers) is compared with the table before it is used.

use crate::thread::MergeBuf;
use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use memlens_trace::NoticeKind;

extern crate alloc;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Bit 63 marks a Python frame in a stack's frames (user-space code addresses never have
/// it): bits 32..63 the code id, 0..32 the instruction index.
pub const TAG: u64 = 1 << 63;

/// Most Python frames read per stack.
pub const MAX_PY_FRAMES: usize = 192;

/// Where CPython keeps what is read, for one minor version.
struct Layout {
    minor: u32,
    /// 3.11/3.12: the thread state's `cframe` pointer, whose `current_frame` is at
    /// `current_frame`; 3.13: `None`, `current_frame` is in the thread state itself.
    tstate_cframe: Option<usize>,
    current_frame: usize,
    frame_code: usize,
    frame_previous: usize,
    frame_instr: usize,
    frame_owner: usize,
    /// 3.11: the frame began a C-level call of the evaluation loop.
    frame_is_entry: Option<usize>,
    /// 3.12+: frames owned by the C stack are the evaluation loop's entry shims.
    owner_cstack: Option<u8>,
    code_first_line: usize,
    code_filename: usize,
    code_qualname: usize,
    code_linetable: usize,
    code_first_traceable: usize,
    code_adaptive: usize,
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's characters start.
    ascii_size: usize,
    /// `sizeof(PyCompactUnicodeObject)` and the offset of its `utf8` pointer.
    compact_size: usize,
    compact_utf8: usize,
    /// The thread state's `interp`, `datastack_chunk` (then `datastack_top`,
    /// `datastack_limit`), and the interpreter's list of thread states (`threads.head`;
    /// each state's `next` is at 8).
    tstate_interp: usize,
    tstate_datastack: usize,
    interp_threads: usize,
}

const OWNED_BY_GENERATOR: u8 = 1;

static LAYOUTS: [Layout; 3] = [
    Layout {
        minor: 11,
        tstate_cframe: Some(56),
        current_frame: 8,
        frame_code: 32,
        frame_previous: 48,
        frame_instr: 56,
        frame_owner: 69,
        frame_is_entry: Some(68),
        owner_cstack: None,
        code_first_line: 72,
        code_filename: 112,
        code_qualname: 128,
        code_linetable: 136,
        code_first_traceable: 168,
        code_adaptive: 184,
        ascii_size: 48,
        compact_size: 72,
        compact_utf8: 56,
        tstate_interp: 16,
        tstate_datastack: 296,
        interp_threads: 16,
    },
    Layout {
        minor: 12,
        tstate_cframe: Some(56),
        current_frame: 0,
        frame_code: 0,
        frame_previous: 8,
        frame_instr: 56,
        frame_owner: 70,
        frame_is_entry: None,
        owner_cstack: Some(3),
        code_first_line: 68,
        code_filename: 112,
        code_qualname: 128,
        code_linetable: 136,
        code_first_traceable: 176,
        code_adaptive: 192,
        ascii_size: 40,
        compact_size: 56,
        compact_utf8: 48,
        tstate_interp: 16,
        tstate_datastack: 232,
        interp_threads: 72,
    },
    Layout {
        minor: 13,
        tstate_cframe: None,
        current_frame: 72,
        frame_code: 0,
        frame_previous: 8,
        frame_instr: 56,
        frame_owner: 70,
        frame_is_entry: None,
        owner_cstack: Some(3),
        code_first_line: 68,
        code_filename: 112,
        code_qualname: 128,
        code_linetable: 136,
        code_first_traceable: 184,
        code_adaptive: 200,
        ascii_size: 40,
        compact_size: 56,
        compact_utf8: 48,
        tstate_interp: 16,
        tstate_datastack: 232,
        interp_threads: 7344,
    },
];

/// The interpreter of this process, found at start-up.
pub struct Interp {
    layout: &'static Layout,
    this_thread_state: unsafe extern "C" fn() -> *const u8,
    is_finalizing: unsafe extern "C" fn() -> c_int,
    eval_start: u64,
    eval_end: u64,
    code_type: u64,
    type_type: u64,
    /// `3.11.2`, and the allocator (`,malloc`), for the notice.
    notice: Vec<u8>,
    module: Vec<u8>,
}

static INTERP: AtomicPtr<Interp> = AtomicPtr::new(core::ptr::null_mut());
/// Set once the interpreter started finalizing: frames are read no more (other threads'
/// states are freed from then on).
static FINALIZING: AtomicBool = AtomicBool::new(false);
/// `MEMLENS_PYTHON_FRAMES=0`: native stacks only (no frame is read).
pub static ENABLED: AtomicBool = AtomicBool::new(true);

#[inline]
fn interp() -> Option<&'static Interp> {
    // SAFETY: published once at start-up, never freed.
    unsafe { INTERP.load(Ordering::Acquire).as_ref() }
}

/// `PyType_Type`'s address, for the leak check's pyobject heuristic (0: not a CPython
/// whose frames are read).
pub fn type_type() -> u64 {
    interp().map_or(0, |i| i.type_type)
}

/// Whether Python frames are being read (for the fast path's check).
#[inline]
pub fn active() -> bool {
    !INTERP.load(Ordering::Relaxed).is_null() && !FINALIZING.load(Ordering::Relaxed)
}

/// Whether stacks read Python frames (`--python-frames`, on by default).
#[inline]
pub fn frames_read() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

// ---- start-up ----

/// A symbol of the process (only asked for once the process is known to be Python, so
/// the lookups succeed and leave no dlerror message behind).
fn symbol(name: &CStr) -> u64 {
    // SAFETY: dlsym with a NUL-terminated name; called at start-up, busy.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as u64 }
}

#[repr(C)]
struct ElfSym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

extern "C" {
    fn dladdr1(
        addr: *const c_void,
        info: *mut libc::Dl_info,
        extra: *mut *mut c_void,
        flags: c_int,
    ) -> c_int;
}
const RTLD_DL_SYMENT: c_int = 1;

/// The size of the function at `addr` (from its ELF symbol) and the path of its module.
fn function_size_and_module(addr: u64) -> Option<(u64, Vec<u8>)> {
    // SAFETY: dladdr1 fills `info` and points `sym` at the loader's copy of the symbol,
    // which lives as long as the module; addr is a function of a loaded module.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        let mut sym: *mut c_void = core::ptr::null_mut();
        if dladdr1(addr as *const c_void, &mut info, &mut sym, RTLD_DL_SYMENT) == 0 || sym.is_null()
        {
            return None;
        }
        let sym = &*(sym as *const ElfSym);
        let name = if info.dli_fname.is_null() {
            &[][..]
        } else {
            CStr::from_ptr(info.dli_fname).to_bytes()
        };
        let module = if name.first() == Some(&b'/') {
            name.to_vec()
        } else {
            crate::sys::exe_path()
        };
        Some((sym.size, module))
    }
}

/// Whether the executable is named `python*` or a `libpython3` is loaded.
fn looks_like_python() -> bool {
    let exe = crate::sys::exe_path();
    let base = exe.rsplit(|&c| c == b'/').next().unwrap_or(&[]);
    base.starts_with(b"python") || crate::modules::is_loaded(b"libpython")
}

/// The allocator CPython's object domain will use, from `PYTHONMALLOC` (read by the
/// interpreter at pre-initialisation, before any Python frame exists) unless the
/// command line tells it to ignore the environment (`-E`, `-I`).
fn allocator_asked() -> &'static [u8] {
    let mut buf = [0u8; 4096];
    let n = crate::sys::read_own(c"cmdline", &mut buf).unwrap_or(0);
    let mut ignores_env = false;
    for arg in buf[..n].split(|&c| c == 0).skip(1) {
        if arg.first() != Some(&b'-') || arg == b"-" || arg.starts_with(b"--") {
            break;
        }
        // `-X opt`, `-W arg`, `-c cmd`, `-m mod` take the next word: stop at the first
        // letter that takes one (what follows is its argument).
        for &c in &arg[1..] {
            match c {
                b'E' | b'I' => ignores_env = true,
                b'X' | b'W' | b'c' | b'm' | b'Q' => break,
                _ => {}
            }
        }
        if arg.len() == 2 && matches!(arg[1], b'c' | b'm') {
            break;
        }
    }
    if ignores_env {
        return b"pymalloc";
    }
    // SAFETY: getenv with a NUL-terminated name, at start-up.
    let v = unsafe { libc::getenv(c"PYTHONMALLOC".as_ptr()) };
    if v.is_null() {
        return b"pymalloc";
    }
    // SAFETY: non-null getenv results are NUL-terminated.
    match unsafe { CStr::from_ptr(v) }.to_bytes() {
        b"malloc" | b"malloc_debug" => b"malloc",
        _ => b"pymalloc",
    }
}

/// Find the interpreter, if this process is a CPython. Called once at start-up, busy,
/// after the modules are known; writes a notice either way. With `frames` false
/// (`--python-frames=no`) stacks stay native, but the interpreter is still known: the
/// leak check runs when the program's work is done and recognises Python objects.
pub fn prepare(ts: u64, frames: bool) {
    ENABLED.store(frames, Ordering::Relaxed);
    if !looks_like_python() {
        return;
    }
    let version_at = symbol(c"Py_Version");
    let get_state = symbol(c"PyGILState_GetThisThreadState");
    let (version, minor) = if version_at != 0 {
        // SAFETY: Py_Version is a `const unsigned long` (3.11+).
        let hex = unsafe { *(version_at as *const u64) } as u32;
        let v = [(hex >> 24) & 0xff, (hex >> 16) & 0xff, (hex >> 8) & 0xff];
        let mut s = Vec::new();
        for (i, part) in v.iter().enumerate() {
            if i > 0 {
                s.push(b'.');
            }
            s.extend_from_slice(&crate::output::itoa_buf(*part as u64));
        }
        (s, v[1])
    } else if get_state != 0 {
        // Older than 3.11 (Py_Version came with 3.11): its frames are Python objects
        // in another layout, not read.
        (b"older than 3.11".to_vec(), 0)
    } else {
        return;
    };
    let module = if version_at != 0 {
        function_size_and_module(version_at)
            .map(|(_, m)| m)
            .unwrap_or_default()
    } else {
        crate::sys::exe_path()
    };
    let layout = LAYOUTS
        .iter()
        .find(|l| l.minor == minor && version[0] == b'3');
    let eval = symbol(c"_PyEval_EvalFrameDefault");
    let finalizing = match minor {
        13 => symbol(c"Py_IsFinalizing"),
        _ => symbol(c"_Py_IsFinalizing"),
    };
    let code_type = symbol(c"PyCode_Type");
    let usable = layout.filter(|l| {
        get_state != 0
            && eval != 0
            && finalizing != 0
            && code_type != 0
            && (l.minor != 13 || debug_offsets_agree(l))
    });
    let (Some(layout), Some((eval_size, _))) = (usable, function_size_and_module(eval)) else {
        crate::output::notice(ts, NoticeKind::PythonUnsupported, &module, &version);
        *UNSUPPORTED.lock() = Some((module, version));
        return;
    };
    let mut notice = version;
    notice.push(b',');
    notice.extend_from_slice(allocator_asked());
    if !frames {
        notice.extend_from_slice(b",native");
    }
    crate::output::notice(ts, NoticeKind::PythonFrames, &module, &notice);
    let i = Box::new(Interp {
        layout,
        // SAFETY: both are exported C functions with these signatures in 3.11-3.13.
        this_thread_state: unsafe {
            core::mem::transmute::<u64, unsafe extern "C" fn() -> *const u8>(get_state)
        },
        // SAFETY: as above.
        is_finalizing: unsafe {
            core::mem::transmute::<u64, unsafe extern "C" fn() -> c_int>(finalizing)
        },
        eval_start: eval,
        eval_end: eval + eval_size.max(1),
        code_type,
        type_type: symbol(c"PyType_Type"),
        notice,
        module,
    });
    INTERP.store(Box::into_raw(i), Ordering::Release);
}

static UNSUPPORTED: spin::Mutex<Option<(Vec<u8>, Vec<u8>)>> = spin::Mutex::new(None);

/// Write the start-up finding again, into a forked child's fresh trace.
pub fn reemit_notices(ts: u64) {
    if let Some(i) = interp() {
        crate::output::notice(ts, NoticeKind::PythonFrames, &i.module, &i.notice);
    }
    if let Some((module, version)) = UNSUPPORTED.lock().as_ref() {
        crate::output::notice(ts, NoticeKind::PythonUnsupported, module, version);
    }
}

/// 3.13+: `_PyRuntime` starts with `_Py_DebugOffsets`, the interpreter's description of
/// its own layout. The table is used only if it says the same.
fn debug_offsets_agree(l: &Layout) -> bool {
    let rt = symbol(c"_PyRuntime");
    if rt == 0 {
        return false;
    }
    // SAFETY: _PyRuntime is a static of the interpreter, larger than the words read.
    let word = |i: usize| unsafe { *((rt as *const u64).add(i)) };
    // The cookie "xdebugpy", the version, free_threaded, then the sizes and offsets of
    // the runtime (3 words), the interpreter (13), the thread state (9: size, prev, next,
    // interp, current_frame...), the interpreter frame (6: size, previous, executable,
    // instr_ptr, localsplus, owner) and the code object (10: size, filename, name,
    // qualname, linetable, firstlineno, argcount, localsplusnames, localspluskinds,
    // co_code_adaptive). A free-threaded build has other layouts: not read.
    if &word(0).to_le_bytes() != b"xdebugpy" || word(2) != 0 {
        return false;
    }
    let thread = 3 + 3 + 13;
    let frame = thread + 9;
    let code = frame + 6;
    word(thread + 4) == l.current_frame as u64
        && word(frame + 1) == l.frame_previous as u64
        && word(frame + 2) == l.frame_code as u64
        && word(frame + 3) == l.frame_instr as u64
        && word(frame + 5) == l.frame_owner as u64
        && word(code + 1) == l.code_filename as u64
        && word(code + 3) == l.code_qualname as u64
        && word(code + 4) == l.code_linetable as u64
        && word(code + 5) == l.code_first_line as u64
        && word(code + 9) == l.code_adaptive as u64
}

// ---- reading frames ----

/// The frame is not shown (an entry shim, an incomplete frame, not code).
const SKIP: u8 = 1;
/// The frame is the outermost of one C-level call of the evaluation loop.
const BOUNDARY: u8 = 2;
/// The frame belongs to a generator or coroutine (shown even before its first
/// traceable instruction).
const GENERATOR: u8 = 4;

/// This thread's Python frames, innermost first: (code object, instruction pointer,
/// flags), as read from the frames alone. The code objects are not touched here (they
/// are read by [`merge`], only for a stack the memo does not know): a walk runs on every
/// allocation.
pub struct Walk {
    pub n: usize,
    /// [`Walk::signature`] of the frames, computed by [`walk`] as it reads them.
    sig: u64,
    frames: [(u64, u64, u8); MAX_PY_FRAMES],
}

impl Walk {
    pub fn new() -> Box<Walk> {
        Box::new(Walk {
            n: 0,
            sig: 0,
            frames: [(0, 0, 0); MAX_PY_FRAMES],
        })
    }

    /// A hash of what the frames show (0 when there are none), for the unwind memo.
    #[inline]
    pub fn signature(&self) -> u64 {
        self.sig
    }

    #[inline]
    fn mix(h: u64, code: u64, instr: u64, flags: u8) -> u64 {
        (h ^ code ^ instr.rotate_left(40) ^ flags as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
            | 1
    }
}

#[inline]
unsafe fn rd(addr: u64) -> u64 {
    core::ptr::read(addr as *const u64)
}

/// Read this thread's Python frames: their number and signature into `w`, and with
/// `FRAMES` the frames themselves (for [`merge`]; a walk for the memo's lookup needs only
/// the signature). False (and `w.n == 0`) when the thread runs no Python code, or frames
/// are not read. Two walks in the same hook call read the same frames.
#[inline]
pub fn walk<const FRAMES: bool>(w: &mut Walk) -> bool {
    w.n = 0;
    w.sig = 0;
    let Some(py) = interp() else { return false };
    if FINALIZING.load(Ordering::Relaxed) || !ENABLED.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: exported C functions of the interpreter, callable at any time from any
    // thread: the first reads a thread-specific value, the second an atomic field.
    let (tstate, finalizing) = unsafe { ((py.this_thread_state)(), (py.is_finalizing)()) };
    if finalizing != 0 {
        // From here the main thread frees the other threads' states and module globals:
        // no more reading.
        finalizing_seen();
        return false;
    }
    if tstate.is_null() {
        return false;
    }
    let l = py.layout;
    // SAFETY: this thread's own interpreter state and frames: alive while the thread runs,
    // and changed only by this thread, which is inside the allocator now. Every pointer
    // is checked for null before use; code objects are not read here (`shown_frame`).
    unsafe {
        let tstate = tstate as u64;
        let mut frame = match l.tstate_cframe {
            Some(off) => {
                let cframe = rd(tstate + off as u64);
                if cframe == 0 {
                    return false;
                }
                rd(cframe + l.current_frame as u64)
            }
            None => rd(tstate + l.current_frame as u64),
        };
        // The layout's fields in locals, and the count and hash in registers: the loop
        // runs for every frame of every allocation.
        let (owner_at, code_at, instr_at, previous_at) = (
            l.frame_owner as u64,
            l.frame_code as u64,
            l.frame_instr as u64,
            l.frame_previous as u64,
        );
        // 0x100: no owner byte has this value (3.11 has no C-stack owner).
        let cstack = l.owner_cstack.map_or(0x100, u16::from);
        let entry_at = l.frame_is_entry.map(|off| off as u64);
        let (mut n, mut sig) = (0usize, 0u64);
        while frame != 0 && n < MAX_PY_FRAMES {
            let owner = *((frame + owner_at) as *const u8);
            let (code, instr, flags) = if u16::from(owner) == cstack {
                (0, 0, SKIP | BOUNDARY)
            } else {
                let mut flags = if owner == OWNED_BY_GENERATOR {
                    GENERATOR
                } else {
                    0
                };
                if let Some(off) = entry_at {
                    if *((frame + off) as *const u8) != 0 {
                        flags |= BOUNDARY;
                    }
                }
                (rd(frame + code_at), rd(frame + instr_at), flags)
            };
            if FRAMES {
                w.frames[n] = (code, instr, flags);
            }
            sig = Walk::mix(sig, code, instr, flags);
            n += 1;
            frame = rd(frame + previous_at);
        }
        w.n = n;
        w.sig = sig;
    }
    w.n > 0
}

/// A walked frame as shown: its code object and instruction index, or `None` when it is
/// not shown (not a code object, an entry shim, a frame before its first traceable
/// instruction).
///
/// # Safety
/// `code` and `instr` come from a [`walk`] of this thread's frames in this same hook
/// call (the frames, and the code objects they hold references to, are unchanged).
unsafe fn shown_frame(py: &Interp, code: u64, instr: u64, flags: u8) -> Option<(u64, u32)> {
    if flags & SKIP != 0 || code == 0 || rd(code + 8) != py.code_type {
        return None;
    }
    let l = py.layout;
    let start = code + l.code_adaptive as u64;
    let first = *((code + l.code_first_traceable as u64) as *const i32) as u64;
    if flags & GENERATOR == 0 && instr < start + 2 * first {
        return None;
    }
    let idx = (instr.saturating_sub(start) / 2).min(u32::MAX as u64) as u32;
    Some((code, idx))
}

/// The leak check of a Python program's work is due (set once, taken once).
static WORK_DONE: AtomicBool = AtomicBool::new(false);

fn finalizing_seen() {
    if !FINALIZING.swap(true, Ordering::Relaxed) {
        WORK_DONE.store(true, Ordering::Release);
    }
}

/// Called for events that read no frames (frees): notice the start of finalization there
/// too, so that the check runs before the interpreter frees anything of the program's.
#[inline]
pub fn poll_finalizing() {
    if let Some(py) = interp() {
        if !FINALIZING.load(Ordering::Relaxed) {
            // SAFETY: an exported C function reading an atomic field, callable anytime.
            if unsafe { (py.is_finalizing)() } != 0 {
                finalizing_seen();
            }
        }
    }
}

/// The dead parts of every Python thread's frame stack (the chunks CPython allocates
/// interpreter frames in): above each chunk's top, frames that returned left their
/// locals, and stale pointers there must not keep a block reachable. For the leak
/// check of a program whose work is done (the interpreter's thread states are intact).
pub fn dead_frame_stacks(out: &mut Vec<(u64, u64)>) {
    let Some(py) = interp() else { return };
    let l = py.layout;
    // SAFETY: called by the thread that saw finalization begin, inside the interpreter's
    // finalization (it holds the GIL): the thread states and their chunks are alive and
    // nobody changes the list now. Pointers are checked for null; the walk is bounded.
    unsafe {
        let me = (py.this_thread_state)() as u64;
        if me == 0 {
            return;
        }
        let interp = rd(me + l.tstate_interp as u64);
        if interp == 0 {
            return;
        }
        let mut t = rd(interp + l.interp_threads as u64);
        for _ in 0..4096 {
            if t == 0 {
                break;
            }
            let d = t + l.tstate_datastack as u64;
            let (mut chunk, top, limit) = (rd(d), rd(d + 8), rd(d + 16));
            if chunk != 0 && top >= chunk && top <= limit {
                out.push((top, limit));
                // Older chunks: live up to the top saved in them (an index of words).
                chunk = rd(chunk);
                for _ in 0..64 {
                    if chunk == 0 {
                        break;
                    }
                    let (size, saved) = (rd(chunk + 8), rd(chunk + 16));
                    let live_end = chunk + 24 + 8 * saved;
                    if live_end < chunk + size {
                        out.push((live_end, chunk + size));
                    }
                    chunk = rd(chunk);
                }
            }
            t = rd(t + 8);
        }
    }
}

/// Whether the interpreter just began finalizing and the caller is to run the Python
/// work-done leak check (true once).
#[inline]
pub fn take_work_done() -> bool {
    WORK_DONE.load(Ordering::Relaxed) && WORK_DONE.swap(false, Ordering::Acquire)
}

// ---- code ids ----

/// What identifies a code object: its address and the fields that tell a reuse of the
/// address apart (name, file, location table and first line).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CodeKey {
    code: u64,
    qualname: u64,
    filename: u64,
    linetable: u64,
    first_line: u32,
}

const CACHE_SLOTS: usize = 256;

/// A thread's cache of code ids (direct-mapped by address).
pub struct CodeCache {
    slots: [(CodeKey, u32, u32); CACHE_SLOTS],
}

impl CodeCache {
    pub fn new() -> Box<CodeCache> {
        Box::new(CodeCache {
            slots: [(
                CodeKey {
                    code: 0,
                    qualname: 0,
                    filename: 0,
                    linetable: 0,
                    first_line: 0,
                },
                0,
                0,
            ); CACHE_SLOTS],
        })
    }
}

/// Every code object defined in this trace, by key.
static CODES: spin::Mutex<Option<alloc::collections::BTreeMap<CodeKey, u32>>> =
    spin::Mutex::new(None);
static NEXT_CODE: AtomicU32 = AtomicU32::new(1);
/// Bumped in a forked child: its trace defines codes again, so every cache is stale.
static CODE_EPOCH: AtomicU32 = AtomicU32::new(1);

/// Take the lock around code definitions and keep it (fork's prepare handler: taken
/// before the Meta lock, as `code_id` nests them).
pub fn lock_codes_for_fork() {
    core::mem::forget(CODES.lock());
}

/// # Safety
/// `CODES` must have been locked by this thread and the guard forgotten.
pub unsafe fn codes_force_unlock() {
    CODES.force_unlock();
}

/// In a forked child that writes its own trace: define every code again.
pub fn after_fork_child() {
    *CODES.lock() = None;
    CODE_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The id of code object `code`, defining it in the trace if it is new. 0 if it cannot
/// be read.
///
/// # Safety
/// `code` is a live code object (checked by [`walk`]) of this thread's frames.
unsafe fn code_id(py: &Interp, cache: &mut CodeCache, code: u64) -> u32 {
    let l = py.layout;
    let key = CodeKey {
        code,
        qualname: rd(code + l.code_qualname as u64),
        filename: rd(code + l.code_filename as u64),
        linetable: rd(code + l.code_linetable as u64),
        first_line: *((code + l.code_first_line as u64) as *const i32) as u32,
    };
    let epoch = CODE_EPOCH.load(Ordering::Relaxed);
    let slot = &mut cache.slots[((code >> 4) as usize ^ (code >> 12) as usize) % CACHE_SLOTS];
    if slot.0 == key && slot.2 == epoch && slot.1 != 0 {
        return slot.1;
    }
    let mut codes = CODES.lock();
    let map = codes.get_or_insert_with(alloc::collections::BTreeMap::new);
    let id = match map.get(&key) {
        Some(&id) => id,
        None => {
            let id = NEXT_CODE.fetch_add(1, Ordering::Relaxed);
            let mut qualname = Vec::new();
            let mut filename = Vec::new();
            read_str(l, key.qualname, &mut qualname);
            read_str(l, key.filename, &mut filename);
            let linetable = read_bytes(key.linetable);
            crate::output::META
                .lock()
                .with(|b| b.py_code(id, key.first_line, &qualname, &filename, linetable));
            map.insert(key, id);
            id
        }
    };
    drop(codes);
    *slot = (key, id, epoch);
    id
}

const MAX_TEXT: usize = 1024;
const MAX_LINETABLE: usize = 16 << 10;

/// A Python `str` (`o`) as UTF-8, at most [`MAX_TEXT`] bytes; `?` if it is not a compact
/// string.
///
/// # Safety
/// `o` is null or a live `str` object.
unsafe fn read_str(l: &Layout, o: u64, out: &mut Vec<u8>) {
    if o == 0 {
        out.push(b'?');
        return;
    }
    let length = rd(o + 16) as usize;
    let state = *((o + 32) as *const u32);
    let kind = (state >> 2) & 7;
    let compact = (state >> 5) & 1 != 0;
    let ascii = (state >> 6) & 1 != 0;
    if !compact {
        out.push(b'?');
        return;
    }
    if ascii {
        let n = length.min(MAX_TEXT);
        out.extend_from_slice(core::slice::from_raw_parts(
            (o + l.ascii_size as u64) as *const u8,
            n,
        ));
        return;
    }
    let utf8 = rd(o + l.compact_utf8 as u64);
    if utf8 != 0 {
        let n = (rd(o + l.compact_utf8 as u64 - 8) as usize).min(MAX_TEXT);
        out.extend_from_slice(core::slice::from_raw_parts(utf8 as *const u8, n));
        return;
    }
    let data = o + l.compact_size as u64;
    for i in 0..length.min(MAX_TEXT / 4) {
        let c = match kind {
            1 => *((data + i as u64) as *const u8) as u32,
            2 => *((data + 2 * i as u64) as *const u16) as u32,
            4 => *((data + 4 * i as u64) as *const u32),
            _ => b'?' as u32,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(
            char::from_u32(c)
                .unwrap_or('?')
                .encode_utf8(&mut buf)
                .as_bytes(),
        );
    }
}

/// A `bytes` object's contents, at most [`MAX_LINETABLE`] bytes (a longer location
/// table leaves the last lines of a huge function unknown).
///
/// # Safety
/// `o` is null or a live `bytes` object.
unsafe fn read_bytes<'a>(o: u64) -> &'a [u8] {
    if o == 0 {
        return &[];
    }
    let n = (rd(o + 16) as usize).min(MAX_LINETABLE);
    core::slice::from_raw_parts((o + 32) as *const u8, n)
}

// ---- merging ----

/// Whether a native return address lies in the evaluation loop.
#[inline]
fn in_eval(py: &Interp, ret: u64) -> bool {
    let pc = ret.wrapping_sub(1);
    pc >= py.eval_start && pc < py.eval_end
}

/// The stack to record: `native` (innermost first) with each evaluation-loop frame
/// replaced by the Python frames it was running (`w`), into `out`. Python frames left
/// over (native unwinding stopped early) go last. Returns the frames.
pub fn merge<'a>(
    native: &[u64],
    w: &Walk,
    cache: &mut CodeCache,
    out: &'a mut MergeBuf,
) -> &'a [u64] {
    let Some(py) = interp() else {
        out.n = 0;
        return &out.frames[..0];
    };
    out.n = splice(
        native,
        &w.frames[..w.n],
        |ret| in_eval(py, ret),
        |code, instr, flags| {
            // SAFETY: from `walk`, in this same hook call: the frames have not changed
            // since, and `shown_frame` checks that `code` is a code object.
            let (code, idx) = unsafe { shown_frame(py, code, instr, flags) }?;
            // SAFETY: a live code object of this thread's frames (as above).
            let id = unsafe { code_id(py, cache, code) };
            (id != 0).then_some(TAG | (id as u64) << 32 | idx as u64)
        },
        &mut out.frames,
    );
    &out.frames[..out.n]
}

/// [`merge`]'s splice: each native frame for which `in_eval` holds is replaced by the
/// Python frames of one C-level call of the evaluation loop (up to a BOUNDARY frame),
/// each as `shown` makes it (`None`: left out); Python frames left over go last. Returns
/// the number of frames written into `out`.
#[inline]
fn splice(
    native: &[u64],
    python: &[(u64, u64, u8)],
    in_eval: impl Fn(u64) -> bool,
    mut shown: impl FnMut(u64, u64, u8) -> Option<u64>,
    out: &mut [u64],
) -> usize {
    let cap = out.len();
    let (mut n, mut i, mut p) = (0usize, 0usize, 0usize);
    while n < cap && (i < native.len() || p < python.len()) {
        let ret = native.get(i).copied();
        i += 1;
        match ret {
            Some(ret) if p >= python.len() || !in_eval(ret) => {
                out[n] = ret;
                n += 1;
            }
            _ => {
                while p < python.len() && n < cap {
                    let (code, instr, flags) = python[p];
                    p += 1;
                    if let Some(f) = shown(code, instr, flags) {
                        out[n] = f;
                        n += 1;
                    }
                    if flags & BOUNDARY != 0 {
                        break;
                    }
                }
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_one_per_version() {
        let minors: Vec<u32> = LAYOUTS.iter().map(|l| l.minor).collect();
        assert_eq!(minors, [11, 12, 13]);
        for l in &LAYOUTS {
            // The 3.11 frame marks entries with a flag, the later ones with a shim frame.
            assert_eq!(
                l.frame_is_entry.is_some(),
                l.owner_cstack.is_none(),
                "{}",
                l.minor
            );
            assert_eq!(l.tstate_cframe.is_some(), l.minor < 13, "{}", l.minor);
        }
    }

    #[test]
    fn python_frames_carry_the_tag_and_never_look_like_code_addresses() {
        let f = TAG | (5u64 << 32) | 17;
        assert_eq!(f >> 63, 1);
        assert_eq!(((f & !TAG) >> 32) as u32, 5);
        assert_eq!(f as u32, 17);
        // x86_64 user space ends at 2^47.
        assert_eq!((0x7fff_ffff_ffffu64) & TAG, 0);
    }

    #[test]
    fn python_frames_take_the_place_of_the_evaluation_loop_that_ran_them() {
        const EVAL: u64 = 0x5000;
        let in_eval = |ret: u64| ret == EVAL;
        // Innermost first: two frames of the inner C-level call (an entry shim skipped),
        // then one of the outer call, then one left over.
        let python = [
            (0xa0, 1, 0),
            (0xb0, 2, SKIP),
            (0xc0, 3, BOUNDARY),
            (0xd0, 4, BOUNDARY),
            (0xe0, 5, 0),
        ];
        let shown = |code: u64, instr: u64, flags: u8| {
            (flags & SKIP == 0).then_some(TAG | code << 32 | instr)
        };
        let py = |code: u64, instr: u64| TAG | code << 32 | instr;
        let mut out = [0u64; 16];
        let n = splice(
            &[0x100, EVAL, 0x200, EVAL, 0x300],
            &python,
            in_eval,
            shown,
            &mut out,
        );
        assert_eq!(
            &out[..n],
            &[
                0x100,
                py(0xa0, 1),
                py(0xc0, 3),
                0x200,
                py(0xd0, 4),
                0x300,
                py(0xe0, 5)
            ]
        );
        // No Python frames: the native stack as it is, evaluation loop included.
        let n = splice(&[0x100, EVAL, 0x200], &[], in_eval, shown, &mut out);
        assert_eq!(&out[..n], &[0x100, EVAL, 0x200]);
        // The output is full: cut, never overrun.
        let mut small = [0u64; 3];
        let n = splice(&[0x100, EVAL, 0x200], &python, in_eval, shown, &mut small);
        assert_eq!(n, 3);
        assert_eq!(small, [0x100, py(0xa0, 1), py(0xc0, 3)]);
    }

    #[test]
    fn the_signature_tells_walks_apart() {
        let sign = |frames: &[(u64, u64, u8)]| {
            frames.iter().fold(0, |h, &(c, i, f)| Walk::mix(h, c, i, f))
        };
        assert_eq!(sign(&[]), 0, "no frames");
        let a = [(0x1000, 0x1040, 0), (0x2000, 0x2090, BOUNDARY)];
        let sa = sign(&a);
        assert_ne!(sa, 0);
        assert_eq!(sign(&a), sa);
        assert_ne!(
            sign(&[(0x1000, 0x1042, 0), a[1]]),
            sa,
            "another instruction"
        );
        assert_ne!(sign(&[(0x1000, 0x1040, SKIP), a[1]]), sa, "other flags");
        assert_ne!(sign(&a[..1]), sa, "fewer frames");
        assert_ne!(sign(&[a[1], a[0]]), sa, "another order");
    }
}
