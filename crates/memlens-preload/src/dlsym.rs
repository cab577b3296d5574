//! `dlsym` and `dlvsym`, interposed so that allocator pointers looked up at run time are
//! the hooks.
//!
//! A program that takes `malloc` from a library's handle (`dlsym(dlopen("libc.so.6"),
//! "malloc")`, as Python's ctypes does for `CDLL("libc.so.6").malloc`, or plugin loaders
//! and JITs do) gets glibc's own function: its blocks would bypass the recorder, and a
//! `free()` of one would look like a free of memory never allocated. So when a lookup in a
//! handle answers with a function a hook replaces (one of glibc's, in the module of the
//! `__libc_malloc` the hooks call; libstdc++'s operator new/delete in the main namespace),
//! the recorder's hook is returned instead. Any other answer (a library's own malloc, a
//! copy of glibc or libstdc++ in another `dlmopen` namespace, which has its own heap) is
//! passed on unchanged.
//!
//! glibc's `dlsym` uses its caller's address: `RTLD_NEXT` means "the next definition after
//! the calling module", and `RTLD_DEFAULT` searches the calling module's scope (its
//! namespace, and its own local scope when it was dlopen'ed with `RTLD_LOCAL`). A wrapper
//! calling the real `dlsym` would make the recorder the caller, and a malloc wrapper
//! loaded after the recorder would get its own malloc back from `RTLD_NEXT` and recurse.
//! So `dlsym` is a naked stub that *jumps* to glibc's for these two pseudo-handles, with
//! the caller's return address still on the stack, and never changes their answer (in the
//! main namespace `RTLD_DEFAULT` finds the hooks anyway: the recorder is preloaded). Only
//! lookups in a real handle, where glibc uses the caller's address for nothing but
//! `LD_AUDIT`'s `la_symbind` callbacks, go through [`dlsym_in_handle`].

use alloc::vec::Vec;
use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};
use memlens_trace::NoticeKind;

extern crate alloc;

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// glibc's `dlsym`, resolved on first use (a library constructor may call `dlsym` before
/// the recorder is initialised).
static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

/// The address of glibc's `dlsym`, asked of glibc's `dlvsym` with `RTLD_NEXT` from here
/// (the definition after the recorder). The version `GLIBC_2.2.5` exists on every x86_64
/// glibc (in libdl before 2.34, kept in libc as a compatibility version since).
extern "C" fn real_dlsym() -> usize {
    let f = REAL_DLSYM.load(Ordering::Relaxed);
    if f != 0 {
        return f;
    }
    let dlvsym = real_dlvsym();
    if dlvsym == no_dlvsym as *const () as usize {
        return no_dlsym as *const () as usize;
    }
    // SAFETY: real_dlvsym returns glibc's dlvsym; RTLD_NEXT and NUL-terminated strings.
    let f = unsafe {
        let dlvsym: DlvsymFn = core::mem::transmute(dlvsym);
        dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), c"GLIBC_2.2.5".as_ptr())
    } as usize;
    if f == 0 {
        return no_dlsym as *const () as usize;
    }
    REAL_DLSYM.store(f, Ordering::Relaxed);
    f
}

type DlvsymFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> *mut c_void;

/// glibc's `dlvsym`, resolved on first use: read from the modules' symbol tables, leaving
/// the recorder out (the recorder's own references to `dlvsym` bind to its stub).
static REAL_DLVSYM: AtomicUsize = AtomicUsize::new(0);

extern "C" fn real_dlvsym() -> usize {
    let f = REAL_DLVSYM.load(Ordering::Relaxed);
    if f != 0 {
        return f;
    }
    let f = crate::symbols::definer(b"dlvsym")
        .map_or(no_dlvsym as *const () as usize, |(a, _)| a as usize);
    REAL_DLVSYM.store(f, Ordering::Relaxed);
    f
}

/// Stands in for a `dlvsym` that could not be found (never on a working glibc).
///
/// # Safety
/// None: it reads no argument.
unsafe extern "C" fn no_dlvsym(
    _handle: *mut c_void,
    _name: *const c_char,
    _version: *const c_char,
) -> *mut c_void {
    core::ptr::null_mut()
}

/// Stands in for a `dlsym` that could not be found (never on a working glibc): no symbol.
///
/// # Safety
/// None: it reads neither argument.
unsafe extern "C" fn no_dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    core::ptr::null_mut()
}

/// `dlsym(handle, name)`. `RTLD_DEFAULT` (0) and `RTLD_NEXT` (-1) jump to glibc's `dlsym`
/// with the arguments and the caller's return address untouched; a real handle goes to
/// [`dlsym_in_handle`] (also a jump, so its return goes straight to the caller).
///
/// # Safety
/// dlsym(3)'s contract: `handle` is RTLD_DEFAULT, RTLD_NEXT or from dlopen; `name` is a
/// NUL-terminated string.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "test rdi, rdi",
        "je 2f",
        "cmp rdi, -1",
        "je 2f",
        "jmp {in_handle}",
        "2:",
        // Entered with rsp = 8 mod 16; two pushes and 8 bytes make the call aligned.
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {real}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "jmp rax",
        in_handle = sym dlsym_in_handle,
        real = sym real_dlsym,
    )
}

/// A lookup in a real handle: glibc's answer, or the recorder's hook when the answer is
/// the very function the hook replaces: glibc's own (the copy the hooks call through
/// `__libc_malloc` & co.), or libstdc++'s operator new/delete in the main namespace. A
/// malloc defined by another library (a wrapper, another allocator) is left alone.
///
/// # Safety
/// As [`dlsym`], with a handle from dlopen.
unsafe extern "C" fn dlsym_in_handle(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // SAFETY: real_dlsym returns glibc's dlsym (or no_dlsym), both of type DlsymFn.
    let real: DlsymFn = core::mem::transmute(real_dlsym());
    let found = real(handle, name);
    if found.is_null() {
        return found;
    }
    // SAFETY: dlsym found `name`, so it is a NUL-terminated symbol name.
    let Some(cxx) = hooked(CStr::from_ptr(name).to_bytes()) else {
        return found;
    };
    let replaced = if cxx {
        is_main_libstdcxx(found, handle)
    } else {
        module_base(found).is_some() && module_base(found) == module_base(glibc_malloc())
    };
    hook_or(replaced, name, found)
}

/// The recorder's hook for `name` when the answer `found` is the function it replaces,
/// else `found` (also when the recorder cannot name its own definition).
///
/// # Safety
/// `name` is a NUL-terminated string.
unsafe fn hook_or(replaced: bool, name: *const c_char, found: *mut c_void) -> *mut c_void {
    let hook = if replaced {
        own_definition(name)
    } else {
        core::ptr::null_mut()
    };
    if hook.is_null() {
        found
    } else {
        hook
    }
}

/// `dlvsym(handle, name, version)`. A versioned lookup passes over the recorder's
/// unversioned hooks (glibc's `dlvsym` takes no default version), so
/// `dlvsym(RTLD_NEXT, "malloc", "GLIBC_2.2.5")` answers glibc's malloc whatever the
/// handle, and its blocks would bypass the recorder. For a name the recorder hooks the
/// lookup is made from [`dlvsym_hooked`], which hands out the hook as [`dlsym_in_handle`]
/// does; any other name jumps to glibc's `dlvsym` with the caller's return address
/// untouched (`RTLD_NEXT` is relative to the caller).
///
/// # Safety
/// dlvsym(3)'s contract.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlvsym(
    handle: *mut c_void,
    name: *const c_char,
    version: *const c_char,
) -> *mut c_void {
    core::arch::naked_asm!(
        // Entered with rsp = 8 mod 16; three pushes make each call aligned.
        "push rdi",
        "push rsi",
        "push rdx",
        "mov rdi, rsi",
        "call {is_hooked}",
        "test al, al",
        "jne 2f",
        "call {real}",
        "pop rdx",
        "pop rsi",
        "pop rdi",
        "jmp rax",
        "2:",
        "pop rdx",
        "pop rsi",
        "pop rdi",
        "jmp {hooked}",
        is_hooked = sym is_hooked_name,
        real = sym real_dlvsym,
        hooked = sym dlvsym_hooked,
    )
}

/// Whether `name` is one the recorder hooks.
///
/// # Safety
/// `name` is null or a NUL-terminated string.
unsafe extern "C" fn is_hooked_name(name: *const c_char) -> bool {
    !name.is_null() && hooked(CStr::from_ptr(name).to_bytes()).is_some()
}

/// `dlvsym` of a name the recorder hooks: glibc's answer, looked up from the recorder
/// (for `RTLD_NEXT`: the definitions after it, which for the malloc family's versioned
/// names are the same as after the caller: only the C library and libstdc++ define them
/// with a version), or the hook when the answer is the function the hook replaces.
///
/// # Safety
/// As [`dlvsym`], with a hooked `name`.
unsafe extern "C" fn dlvsym_hooked(
    handle: *mut c_void,
    name: *const c_char,
    version: *const c_char,
) -> *mut c_void {
    // SAFETY: real_dlvsym returns glibc's dlvsym (or no_dlvsym), both of type DlvsymFn.
    let real: DlvsymFn = core::mem::transmute(real_dlvsym());
    let found = real(handle, name, version);
    if found.is_null() {
        return found;
    }
    let pseudo = handle.is_null() || handle == libc::RTLD_NEXT;
    let cxx = hooked(CStr::from_ptr(name).to_bytes()) == Some(true);
    let replaced = if !cxx {
        module_base(found).is_some() && module_base(found) == module_base(glibc_malloc())
    } else if pseudo {
        is_libstdcxx(found)
    } else {
        is_main_libstdcxx(found, handle)
    };
    hook_or(replaced, name, found)
}

/// glibc's malloc, as the hooks call it.
fn glibc_malloc() -> *const c_void {
    crate::libc_alloc::malloc_address() as *const c_void
}

/// The load address of the module that contains `addr`.
fn module_base(addr: *const c_void) -> Option<usize> {
    // SAFETY: Dl_info is plain pointers, for which all-zero bytes are valid; dladdr only
    // reads the loader's tables and fills `info`, and never sets dlerror's state.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        (libc::dladdr(addr, &mut info) != 0).then_some(info.dli_fbase as usize)
    }
}

/// Whether `addr` lies in libstdc++, found through a handle of the main namespace (a
/// `dlmopen`ed namespace has its own libstdc++ and C library, with their own heap).
///
/// # Safety
/// `handle` is a handle from dlopen; `addr` may be any address.
unsafe fn is_main_libstdcxx(addr: *const c_void, handle: *mut c_void) -> bool {
    let mut lmid: libc::Lmid_t = -1;
    // SAFETY: `handle` is valid: dlsym just found a symbol through it.
    is_libstdcxx(addr)
        && libc::dlinfo(
            handle,
            libc::RTLD_DI_LMID,
            &mut lmid as *mut _ as *mut c_void,
        ) == 0
        && lmid == libc::LM_ID_BASE
}

/// Whether `addr` lies in a libstdc++.
fn is_libstdcxx(addr: *const c_void) -> bool {
    // SAFETY: as in module_base; dli_fname, when set, is the loader's NUL-terminated name.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        let path = CStr::from_ptr(info.dli_fname).to_bytes();
        let file = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
        file.starts_with(b"libstdc++.so")
    }
}

/// Whether the code at `f` is a PLT stub (an indirect jump through the GOT, optionally
/// after `endbr64` and with a `bnd` prefix): an executable that takes the address of
/// `malloc` without defining it gets such a "canonical PLT entry", which dlsym returns
/// as the symbol's address, but which only jumps to the real one.
///
/// # Safety
/// `f` points at code: at least 11 readable bytes.
unsafe fn is_plt_stub(f: *const c_void) -> bool {
    let b = core::slice::from_raw_parts(f as *const u8, 11);
    let b = b.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(b);
    let b = b.strip_prefix(&[0xf2]).unwrap_or(b);
    b.starts_with(&[0xff, 0x25])
}

/// What [`note_own_allocator`] found: the module that defines allocation functions in
/// place of the C library's, and their names (`malloc,free`).
static OWN_ALLOCATOR: spin::Mutex<Option<(Vec<u8>, Vec<u8>)>> = spin::Mutex::new(None);

/// At start-up: whether `malloc`, `calloc`, `realloc` or `free` resolve, for the whole
/// process, to something other than the recorder's hooks. That happens when the
/// executable defines them (its own allocator, or a static one linked in): it comes
/// before the preloaded recorder in the lookup order, and the blocks it serves never pass
/// through the hooks. Such a finding goes into the trace as a Notice record, so the
/// reports can say so.
pub fn note_own_allocator(ts: u64) {
    let mut module = Vec::new();
    let mut symbols: Vec<u8> = Vec::new();
    for name in [c"malloc", c"calloc", c"realloc", c"free"] {
        // Always found (glibc defines them all), so this leaves no dlerror message.
        // SAFETY: dlsym with a NUL-terminated name.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: a NUL-terminated name; f is a function of a loaded module, whose
        // first bytes are readable code.
        if f.is_null() || f == unsafe { own_definition(name.as_ptr()) } || unsafe { is_plt_stub(f) }
        {
            continue;
        }
        if module.is_empty() {
            module = module_path(f);
        }
        if !symbols.is_empty() {
            symbols.push(b',');
        }
        symbols.extend_from_slice(name.to_bytes());
    }
    if symbols.is_empty() {
        return;
    }
    crate::output::notice(ts, NoticeKind::OwnAllocator, &module, &symbols);
    *OWN_ALLOCATOR.lock() = Some((module, symbols));
}

/// Write the start-up finding again, into a forked child's fresh trace.
pub fn reemit_notices(ts: u64) {
    if let Some((module, symbols)) = OWN_ALLOCATOR.lock().as_ref() {
        crate::output::notice(ts, NoticeKind::OwnAllocator, module, symbols);
    }
}

/// The path of the module that contains `addr` (the executable's comes without a path
/// from the loader).
fn module_path(addr: *const c_void) -> Vec<u8> {
    // SAFETY: as in module_base; dli_fname, when set, is the loader's NUL-terminated name.
    let name = unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            &[][..]
        } else {
            CStr::from_ptr(info.dli_fname).to_bytes()
        }
    };
    if name.first() == Some(&b'/') {
        name.to_vec()
    } else {
        crate::sys::exe_path()
    }
}

/// Whether the recorder hooks the function `name`, and if so whether it is a C++ operator
/// (`Some(true)`) or a C function (`Some(false)`).
fn hooked(name: &[u8]) -> Option<bool> {
    crate::hooks::HOOKED
        .iter()
        .find(|(n, _)| n.to_bytes() == name)
        .map(|&(_, cxx)| cxx)
}

/// The recorder's own definition of `name` (its hook). Not `hooks::malloc as usize`: the
/// recorder's exported functions are interposable, so inside it too their address is the
/// process-wide definition, the executable's own malloc when it has one. A lookup in the
/// recorder's handle finds the recorder's first.
///
/// # Safety
/// `name` is a NUL-terminated string.
unsafe fn own_definition(name: *const c_char) -> *mut c_void {
    static OWN_HANDLE: AtomicUsize = AtomicUsize::new(0);
    let mut handle = OWN_HANDLE.load(Ordering::Relaxed);
    if handle == 0 {
        // The recorder's file, from the address of this local (not exported) function,
        // then its handle: dlopen of a loaded library with RTLD_NOLOAD, which also sets up
        // the search list that a preloaded library's link map lacks.
        let mut info: libc::Dl_info = core::mem::zeroed();
        // SAFETY: dladdr fills `info`; dli_fname is the loader's NUL-terminated path, and
        // dlopen with RTLD_NOLOAD only returns the already loaded recorder.
        if libc::dladdr(own_definition as *const c_void, &mut info) == 0 || info.dli_fname.is_null()
        {
            return core::ptr::null_mut();
        }
        handle = libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD) as usize;
        if handle == 0 {
            return core::ptr::null_mut();
        }
        OWN_HANDLE.store(handle, Ordering::Relaxed);
    }
    // SAFETY: real_dlsym returns glibc's dlsym (or no_dlsym), both of type DlsymFn; the
    // handle is the recorder's link map, and the recorder defines every hooked name.
    let real: DlsymFn = core::mem::transmute(real_dlsym());
    real(handle as *mut c_void, name)
}
