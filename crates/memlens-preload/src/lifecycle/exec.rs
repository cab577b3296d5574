//! The exec family, interposed: the trace of the image being replaced is flushed and ended
//! first, saying whether the new image will be recorded (`--trace-children`,
//! `--trace-children-skip`, a program that took the recorder out of `LD_PRELOAD`).

use super::*;
use core::sync::atomic::AtomicPtr;

/// `MEMLENS_CONFIG=...` as this process was started with it (`memlens run`'s settings),
/// NUL-terminated in the recorder's heap; null when it had none.
static SETTINGS_ENTRY: AtomicPtr<c_char> = AtomicPtr::new(core::ptr::null_mut());

/// Keep this process's `MEMLENS_CONFIG` entry for the images it execs ([`passed_env`]).
/// Called once at start-up.
pub(super) fn remember_settings() {
    let name = memlens_trace::env::CONFIG.c_name();
    // SAFETY: getenv with a NUL-terminated name, at start-up.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    if v.is_null() {
        return;
    }
    // SAFETY: a non-null getenv result is NUL-terminated.
    let value = unsafe { CStr::from_ptr(v) }.to_bytes_with_nul();
    let mut entry = Vec::with_capacity(name.to_bytes().len() + 1 + value.len());
    entry.extend_from_slice(name.to_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value);
    let entry = alloc::boxed::Box::leak(entry.into_boxed_slice());
    SETTINGS_ENTRY.store(entry.as_mut_ptr() as *mut c_char, Ordering::Release);
}

/// The environment an exec passes on: `envp` itself, or, when it keeps the recorder
/// preloaded but has no `MEMLENS_CONFIG` (a program that builds its children's
/// environment from a list of its own), a copy with this process's entry added, held by
/// `keep`. Without it the new image would record with the defaults: into its working
/// directory, in a trace `memlens run` does not know of, which its summary and `memlens
/// check` then miss.
///
/// # Safety
/// `envp` is null or exec's NULL-terminated array of NUL-terminated strings.
unsafe fn passed_env(
    envp: *const *const c_char,
    keep: &mut Vec<*const c_char>,
) -> *const *const c_char {
    let entry = SETTINGS_ENTRY.load(Ordering::Acquire);
    if entry.is_null() || envp.is_null() || exec_code(envp) != memlens_trace::EXEC_RECORDER_KEPT {
        return envp;
    }
    let name = memlens_trace::env::CONFIG.c_name().to_bytes();
    let mut n = 0;
    loop {
        // SAFETY: within the NULL-terminated array.
        let e = unsafe { *envp.add(n) };
        if e.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated string of the array.
        let e = unsafe { CStr::from_ptr(e) }.to_bytes();
        if e.starts_with(name) && e.get(name.len()) == Some(&b'=') {
            return envp;
        }
        n += 1;
    }
    keep.reserve(n + 2);
    for i in 0..n {
        // SAFETY: as above.
        keep.push(unsafe { *envp.add(i) });
    }
    keep.push(entry as *const c_char);
    keep.push(core::ptr::null());
    keep.as_ptr()
}

/// The image is about to be replaced, with the environment `envp`: flush everything and
/// mark the trace ended by exec, saying whether the new image will be recorded. If exec
/// fails, recording goes on and a later End record supersedes this one. A `vfork` child
/// execs the child's image, not its parent's: it leaves the parent's trace alone.
/// Returns the environment to pass on ([`passed_env`], held by `keep`).
///
/// # Safety
/// As [`passed_env`].
unsafe fn before_exec(
    envp: *const *const c_char,
    keep: &mut Vec<*const c_char>,
) -> *const *const c_char {
    // SAFETY: the caller's contract.
    let envp = unsafe { passed_env(envp, keep) };
    if !ACTIVE.load(Ordering::Acquire) || FINISHED.load(Ordering::Acquire) || !output::owns_trace()
    {
        return envp;
    }
    let Some(_b) = tls::BusyGuard::enter() else {
        return envp;
    };
    thread::flush_all();
    output::end(now_ns(), ExitKind::Exec, exec_code(envp));
    envp
}

type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;

fn enosys() -> c_int {
    // SAFETY: sets this thread's errno.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// `execve(2)`: flush and end this image's trace first.
///
/// # Safety
/// execve's contract: NUL-terminated `path`, NULL-terminated `argv` and `envp`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let mut keep = Vec::new();
    let envp = before_exec(envp, &mut keep);
    match real::<ExecveFn>(&REAL_EXECVE) {
        Some(f) => f(path, argv, envp),
        None => enosys(),
    }
}

/// `execvpe(3)`, as [`execve`].
///
/// # Safety
/// As [`execve`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let mut keep = Vec::new();
    let envp = before_exec(envp, &mut keep);
    match real::<ExecveFn>(&REAL_EXECVPE) {
        Some(f) => f(file, argv, envp),
        None => enosys(),
    }
}

/// `execv(3)`, as [`execve`].
///
/// # Safety
/// As [`execve`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    let mut keep = Vec::new();
    let envp = before_exec(environ, &mut keep);
    if !keep.is_empty() {
        return match real::<ExecveFn>(&REAL_EXECVE) {
            Some(f) => f(path, argv, envp),
            None => enosys(),
        };
    }
    match real::<ExecvFn>(&REAL_EXECV) {
        Some(f) => f(path, argv),
        None => enosys(),
    }
}

/// `execvp(3)`, as [`execve`].
///
/// # Safety
/// As [`execve`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    let mut keep = Vec::new();
    let envp = before_exec(environ, &mut keep);
    if !keep.is_empty() {
        return match real::<ExecveFn>(&REAL_EXECVPE) {
            Some(f) => f(file, argv, envp),
            None => enosys(),
        };
    }
    match real::<ExecvFn>(&REAL_EXECVP) {
        Some(f) => f(file, argv),
        None => enosys(),
    }
}

/// `fexecve(3)`, as [`execve`].
///
/// # Safety
/// As [`execve`], with an open `fd` instead of a path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let mut keep = Vec::new();
    let envp = before_exec(envp, &mut keep);
    match real::<FexecveFn>(&REAL_FEXECVE) {
        Some(f) => f(fd, argv, envp),
        None => enosys(),
    }
}

/// Collect the NULL-terminated variadic argument list of `execl`-style functions.
///
/// x86_64 System V passes variadic pointer arguments exactly like named ones: the first
/// ones in the six integer registers, the rest on the caller's stack just above the
/// return address. The hooks below name the register arguments and read the rest from
/// their own frame (`rbp + 16` upward; frame pointers are forced for this crate). Reading
/// stops at the NULL terminator the API requires, so only the caller's argument area is
/// read. The argv vector is built in the recorder's private heap.
/// # Safety
/// `regs` hold the variadic `execl*` arguments passed in registers and `stack_args`
/// points at the caller's stack arguments, as the x86_64 ABI lays them out; the list ends
/// with a NULL pointer.
unsafe fn gather(
    regs: &[*const c_char],
    stack_args: *const *const c_char,
    want_envp: bool,
) -> (Vec<*const c_char>, *const *const c_char) {
    let mut argv = Vec::new();
    let mut i = 0usize;
    let mut next = || {
        let v = if i < regs.len() {
            regs[i]
        } else {
            *stack_args.add(i - regs.len())
        };
        i += 1;
        v
    };
    loop {
        let a = next();
        argv.push(a);
        if a.is_null() {
            break;
        }
    }
    let envp = if want_envp {
        next() as *const *const c_char
    } else {
        core::ptr::null()
    };
    (argv, envp)
}

macro_rules! frame_args {
    () => {{
        let rbp: u64;
        // SAFETY: reads the frame pointer register only.
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags));
        (rbp + 16) as *const *const c_char
    }};
}

extern "C" {
    static environ: *const *const c_char;
}

/// `execl`, `execlp`, `execle`: the first five list arguments arrive in registers, the
/// rest are read from the caller's frame (see `gather`); then the vector variant runs.
macro_rules! execl_family {
    ($name:ident, $vector:ident, envp = $want_envp:expr) => {
        /// A variadic `execl*` function, as [`execve`].
        ///
        /// # Safety
        /// The C contract: NUL-terminated strings and a NULL-terminated argument list.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            a0: *const c_char,
            a1: *const c_char,
            a2: *const c_char,
            a3: *const c_char,
            a4: *const c_char,
        ) -> c_int {
            let stack = frame_args!();
            let (argv, envp) = gather(&[a0, a1, a2, a3, a4], stack, $want_envp);
            $vector(path, argv.as_ptr(), if $want_envp { envp } else { environ })
        }
    };
}

execl_family!(execl, execve, envp = false);
execl_family!(execlp, execvpe, envp = false);
execl_family!(execle, execve, envp = true);
