//! Roots: what the scan prepares at start-up (the range helpers, glibc's arena heaps and
//! the dead frames of cached thread stacks are `memlens_reach::ranges`).

use super::*;
pub(super) struct Root {
    pub(super) kind: RootKind,
    pub(super) tid: u32,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) name: Vec<u8>,
}

/// What the scan needs from ld.so, looked up at start-up (`prepare`): after the other
/// threads are stopped, one of them may hold ld.so's lock (parked inside `dlopen`), and
/// `dladdr`/`dlsym` would wait for it forever.
pub(super) struct Prepared {
    /// The recorder library's path, as the loader names it in /proc/self/maps.
    pub(super) self_path: Vec<u8>,
    /// glibc's thread-stack layout; zeros if this glibc does not export it.
    pub(super) layout: StackLayout,
}

pub(super) static PREPARED: spin::Once<Prepared> = spin::Once::new();

/// Look up what the scan will need from ld.so. Called at start-up, busy, single-threaded.
pub fn prepare() {
    PREPARED.call_once(|| Prepared {
        self_path: self_module_path(),
        layout: thread_stack_layout().unwrap_or_default(),
    });
}

pub(super) fn self_module_path() -> Vec<u8> {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr on one of our own functions fills info; dli_fname is a C string
    // owned by the loader.
    unsafe {
        if libc::dladdr(self_module_path as *const libc::c_void, &mut info) != 0
            && !info.dli_fname.is_null()
        {
            return core::ffi::CStr::from_ptr(info.dli_fname)
                .to_bytes()
                .to_vec();
        }
    }
    Vec::new()
}

/// glibc's thread-stack layout constants (static TLS size, its alignment, the size of
/// `struct pthread`), from the two entry points its own debuggers and sanitizers use.
/// `None` if this glibc does not export them.
pub(super) fn thread_stack_layout() -> Option<StackLayout> {
    // SAFETY: dlsym with NUL-terminated names (may allocate: the caller is busy). The
    // first is `void _dl_get_tls_static_info(size_t *size, size_t *align)`, the second a
    // `const uint32_t` (both GLIBC_PRIVATE, exported by glibc 2.34 and later).
    unsafe {
        let info = libc::dlsym(libc::RTLD_DEFAULT, c"_dl_get_tls_static_info".as_ptr());
        let tcb = libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_sizeof_pthread".as_ptr());
        if info.is_null() || tcb.is_null() {
            return None;
        }
        let info: extern "C" fn(*mut usize, *mut usize) = core::mem::transmute(info);
        let (mut size, mut align) = (0usize, 0usize);
        info(&mut size, &mut align);
        let tcb = core::ptr::read(tcb as *const u32) as u64;
        (align.is_power_of_two() && size as u64 > tcb && tcb > 0).then_some(StackLayout {
            static_size: size as u64,
            align: align as u64,
            tcb,
        })
    }
}
