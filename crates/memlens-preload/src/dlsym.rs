//! `dlsym`, interposed so that allocator pointers looked up at run time are the hooks.
//!
//! A program that takes `malloc` from a library's handle (`dlsym(dlopen("libc.so.6"),
//! "malloc")`, as Python's ctypes does for `CDLL("libc.so.6").malloc`, or plugin loaders
//! and JITs do) gets glibc's own function: its blocks would bypass the recorder, and a
//! `free()` of one would look like a free of memory never allocated. So when a lookup in a
//! handle answers with exactly the definition the recorder itself forwards to (glibc's
//! malloc family, libstdc++'s operator new/delete), the recorder's hook is returned
//! instead. Any other answer (a library's own malloc, a copy of glibc in another `dlmopen`
//! namespace, which has its own heap) is passed on unchanged.
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

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// glibc's `dlsym`, resolved on first use (a library constructor may call `dlsym` before
/// the recorder is initialised).
static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

/// The address of glibc's `dlsym`. `dlvsym` is not interposed, so `RTLD_NEXT` from here
/// finds the definition after the recorder. The version `GLIBC_2.2.5` exists on every
/// x86_64 glibc (in libdl before 2.34, kept in libc as a compatibility version since).
extern "C" fn real_dlsym() -> usize {
    let f = REAL_DLSYM.load(Ordering::Relaxed);
    if f != 0 {
        return f;
    }
    // SAFETY: dlvsym with RTLD_NEXT and NUL-terminated strings.
    let f = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), c"GLIBC_2.2.5".as_ptr()) }
        as usize;
    if f == 0 {
        return no_dlsym as *const () as usize;
    }
    REAL_DLSYM.store(f, Ordering::Relaxed);
    f
}

/// Stands in for a `dlsym` that could not be found (never on a working glibc): no symbol.
unsafe extern "C" fn no_dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    core::ptr::null_mut()
}

/// `dlsym(handle, name)`. `RTLD_DEFAULT` (0) and `RTLD_NEXT` (-1) jump to glibc's `dlsym`
/// with the arguments and the caller's return address untouched; a real handle goes to
/// [`dlsym_in_handle`] (also a jump, so its return goes straight to the caller).
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
unsafe extern "C" fn dlsym_in_handle(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // SAFETY: real_dlsym returns glibc's dlsym (or no_dlsym), both of type DlsymFn.
    let real: DlsymFn = core::mem::transmute(real_dlsym());
    let found = real(handle, name);
    if found.is_null() {
        return found;
    }
    // SAFETY: dlsym found `name`, so it is a NUL-terminated symbol name.
    let Some((hook, cxx)) = hook_for(CStr::from_ptr(name).to_bytes()) else {
        return found;
    };
    let replaced = if cxx {
        is_main_libstdcxx(found, handle)
    } else {
        module_base(found).is_some() && module_base(found) == module_base(glibc_malloc())
    };
    if replaced {
        hook as *mut c_void
    } else {
        found
    }
}

/// glibc's malloc, as the hooks call it.
fn glibc_malloc() -> *const c_void {
    extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
    }
    __libc_malloc as *const c_void
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
unsafe fn is_main_libstdcxx(addr: *const c_void, handle: *mut c_void) -> bool {
    // SAFETY: as in module_base; dli_fname, when set, is the loader's NUL-terminated name.
    let mut info: libc::Dl_info = core::mem::zeroed();
    if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
        return false;
    }
    let path = CStr::from_ptr(info.dli_fname).to_bytes();
    let file = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    let mut lmid: libc::Lmid_t = -1;
    // SAFETY: `handle` is valid: dlsym just found a symbol through it.
    file.starts_with(b"libstdc++.so")
        && libc::dlinfo(
            handle,
            libc::RTLD_DI_LMID,
            &mut lmid as *mut _ as *mut c_void,
        ) == 0
        && lmid == libc::LM_ID_BASE
}

/// The recorder's hook for an allocator symbol name, and whether it is a C++ operator.
fn hook_for(name: &[u8]) -> Option<(*const (), bool)> {
    use crate::hooks as h;
    let hook = match name {
        b"malloc" => h::malloc as *const (),
        b"calloc" => h::calloc as *const (),
        b"realloc" => h::realloc as *const (),
        b"reallocarray" => h::reallocarray as *const (),
        b"free" => h::free as *const (),
        b"posix_memalign" => h::posix_memalign as *const (),
        b"aligned_alloc" => h::aligned_alloc as *const (),
        b"memalign" => h::memalign as *const (),
        b"valloc" => h::valloc as *const (),
        b"pvalloc" => h::pvalloc as *const (),
        b"_Znwm" => h::_Znwm as *const (),
        b"_Znam" => h::_Znam as *const (),
        b"_ZnwmRKSt9nothrow_t" => h::_ZnwmRKSt9nothrow_t as *const (),
        b"_ZnamRKSt9nothrow_t" => h::_ZnamRKSt9nothrow_t as *const (),
        b"_ZnwmSt11align_val_t" => h::_ZnwmSt11align_val_t as *const (),
        b"_ZnamSt11align_val_t" => h::_ZnamSt11align_val_t as *const (),
        b"_ZnwmSt11align_val_tRKSt9nothrow_t" => h::_ZnwmSt11align_val_tRKSt9nothrow_t as *const (),
        b"_ZnamSt11align_val_tRKSt9nothrow_t" => h::_ZnamSt11align_val_tRKSt9nothrow_t as *const (),
        b"_ZdlPv" => h::_ZdlPv as *const (),
        b"_ZdaPv" => h::_ZdaPv as *const (),
        b"_ZdlPvm" => h::_ZdlPvm as *const (),
        b"_ZdaPvm" => h::_ZdaPvm as *const (),
        b"_ZdlPvSt11align_val_t" => h::_ZdlPvSt11align_val_t as *const (),
        b"_ZdaPvSt11align_val_t" => h::_ZdaPvSt11align_val_t as *const (),
        b"_ZdlPvmSt11align_val_t" => h::_ZdlPvmSt11align_val_t as *const (),
        b"_ZdaPvmSt11align_val_t" => h::_ZdaPvmSt11align_val_t as *const (),
        b"_ZdlPvRKSt9nothrow_t" => h::_ZdlPvRKSt9nothrow_t as *const (),
        b"_ZdaPvRKSt9nothrow_t" => h::_ZdaPvRKSt9nothrow_t as *const (),
        b"_ZdlPvSt11align_val_tRKSt9nothrow_t" => {
            h::_ZdlPvSt11align_val_tRKSt9nothrow_t as *const ()
        }
        b"_ZdaPvSt11align_val_tRKSt9nothrow_t" => {
            h::_ZdaPvSt11align_val_tRKSt9nothrow_t as *const ()
        }
        _ => return None,
    };
    Some((hook, name.starts_with(b"_Z")))
}
