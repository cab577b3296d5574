//! The C library's allocator, as the hooks call it: glibc's `__libc_malloc`,
//! `__libc_free` & co., through pointers found at the first call.
//!
//! The recorder exports the `__libc_*` names too (a program may call them directly, or
//! take them with `dlvsym`: its blocks must reach the recorder like malloc's, or its
//! `free` of one would be a heap error and the block would never go back to glibc). So
//! the recorder cannot call glibc by these names: in a preloaded library, its own
//! references to a name it exports bind to its own definition. Each pointer starts at a
//! function that looks every entry point up in the loaded modules' symbol tables,
//! leaving the recorder out (`symbols::definer`: no allocation, no loader lock beyond
//! `dl_iterate_phdr`'s, which is recursive), stores them, and goes on to the real one.
//! The first malloc of a process is made by the loader once every module is relocated,
//! so the tables are there to read.

use crate::symbols::definer;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

type Malloc = unsafe extern "C" fn(usize) -> *mut c_void;
type Calloc = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type Realloc = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type Free = unsafe extern "C" fn(*mut c_void);
type Memalign = unsafe extern "C" fn(usize, usize) -> *mut c_void;

/// The entry points, each a function of the type its name says; the assembly stubs
/// (`unsampled.rs`) jump through them (an `AtomicPtr` is laid out as a pointer).
pub static MALLOC: AtomicPtr<()> = AtomicPtr::new(first_malloc as *mut ());
pub static CALLOC: AtomicPtr<()> = AtomicPtr::new(first_calloc as *mut ());
pub static REALLOC: AtomicPtr<()> = AtomicPtr::new(first_realloc as *mut ());
pub static FREE: AtomicPtr<()> = AtomicPtr::new(first_free as *mut ());
pub static MEMALIGN: AtomicPtr<()> = AtomicPtr::new(first_memalign as *mut ());
pub static VALLOC: AtomicPtr<()> = AtomicPtr::new(first_valloc as *mut ());
pub static PVALLOC: AtomicPtr<()> = AtomicPtr::new(first_pvalloc as *mut ());

/// Each slot with the name of the glibc function it stands for.
fn slots() -> [(&'static AtomicPtr<()>, &'static [u8]); 7] {
    [
        (&MALLOC, b"__libc_malloc"),
        (&CALLOC, b"__libc_calloc"),
        (&REALLOC, b"__libc_realloc"),
        (&FREE, b"__libc_free"),
        (&MEMALIGN, b"__libc_memalign"),
        (&VALLOC, b"__libc_valloc"),
        (&PVALLOC, b"__libc_pvalloc"),
    ]
}

/// Find every entry point and store it. Threads that race here store the same values.
#[cold]
fn resolve() {
    for (slot, name) in slots() {
        match definer(name) {
            Some((addr, _)) => slot.store(addr as *mut (), Ordering::Release),
            None => missing(name),
        }
    }
}

/// No module but the recorder defines `name`: not a glibc process. Nothing can be
/// allocated, so say so and stop (the recorder is only ever loaded into glibc processes:
/// `memlens run` and `attach` check).
#[cold]
fn missing(name: &[u8]) -> ! {
    let msg = b"memlens: the C library defines no ";
    // SAFETY: write(2) of valid buffers to stderr; abort never returns.
    unsafe {
        libc::write(2, msg.as_ptr() as *const c_void, msg.len());
        libc::write(2, name.as_ptr() as *const c_void, name.len());
        libc::write(2, b"\n".as_ptr() as *const c_void, 1);
        libc::abort()
    }
}

/// The function in `slot`, once resolved.
#[inline(always)]
fn load(slot: &AtomicPtr<()>) -> *mut () {
    slot.load(Ordering::Acquire)
}

// SAFETY (every function below): each slot holds either its `first_*` function or the
// glibc function of the same name, both of the slot's type; the arguments are the
// caller's, under the contract of the C function of that name.

#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut c_void {
    core::mem::transmute::<*mut (), Malloc>(load(&MALLOC))(size)
}
#[inline(always)]
pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
    core::mem::transmute::<*mut (), Calloc>(load(&CALLOC))(n, size)
}
#[inline(always)]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    core::mem::transmute::<*mut (), Realloc>(load(&REALLOC))(p, size)
}
#[inline(always)]
pub unsafe fn free(p: *mut c_void) {
    core::mem::transmute::<*mut (), Free>(load(&FREE))(p)
}
#[inline(always)]
pub unsafe fn memalign(align: usize, size: usize) -> *mut c_void {
    core::mem::transmute::<*mut (), Memalign>(load(&MEMALIGN))(align, size)
}
#[inline(always)]
pub unsafe fn valloc(size: usize) -> *mut c_void {
    core::mem::transmute::<*mut (), Malloc>(load(&VALLOC))(size)
}
#[inline(always)]
pub unsafe fn pvalloc(size: usize) -> *mut c_void {
    core::mem::transmute::<*mut (), Malloc>(load(&PVALLOC))(size)
}

/// glibc's `__libc_malloc` (for comparisons: which module serves the hooks' blocks).
pub fn malloc_address() -> usize {
    if load(&MALLOC) == first_malloc as *mut () {
        resolve();
    }
    load(&MALLOC) as usize
}

/// glibc's `__libc_free`, `__libc_calloc`, `__libc_realloc` and `__libc_memalign`, as
/// [`malloc_address`] gives malloc's.
pub fn addresses() -> [(&'static [u8], usize); 5] {
    malloc_address();
    [
        (b"malloc", load(&MALLOC) as usize),
        (b"free", load(&FREE) as usize),
        (b"calloc", load(&CALLOC) as usize),
        (b"realloc", load(&REALLOC) as usize),
        (b"memalign", load(&MEMALIGN) as usize),
    ]
}

unsafe extern "C" fn first_malloc(size: usize) -> *mut c_void {
    resolve();
    malloc(size)
}
unsafe extern "C" fn first_calloc(n: usize, size: usize) -> *mut c_void {
    resolve();
    calloc(n, size)
}
unsafe extern "C" fn first_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    resolve();
    realloc(p, size)
}
unsafe extern "C" fn first_free(p: *mut c_void) {
    resolve();
    free(p)
}
unsafe extern "C" fn first_memalign(align: usize, size: usize) -> *mut c_void {
    resolve();
    memalign(align, size)
}
unsafe extern "C" fn first_valloc(size: usize) -> *mut c_void {
    resolve();
    valloc(size)
}
unsafe extern "C" fn first_pvalloc(size: usize) -> *mut c_void {
    resolve();
    pvalloc(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pointers found are glibc's own functions: what they allocate, glibc's
    /// `malloc_usable_size` measures and glibc's `free` takes back.
    #[test]
    fn the_entry_points_found_are_glibcs() {
        // SAFETY: the C functions' contracts, with sizes they accept.
        unsafe {
            let p = malloc(100);
            assert!(!p.is_null());
            assert!(libc::malloc_usable_size(p) >= 100);
            let p = realloc(p, 5000);
            assert!(libc::malloc_usable_size(p) >= 5000);
            free(p);
            let q = memalign(256, 10);
            assert_eq!(q as usize % 256, 0);
            libc::free(q);
            let z = calloc(4, 8) as *const u64;
            assert_eq!(core::slice::from_raw_parts(z, 4), [0; 4]);
            libc::free(z as *mut c_void);
            let v = valloc(1);
            assert_eq!(v as usize % 4096, 0);
            free(v);
        }
        assert_ne!(load(&MALLOC), first_malloc as *mut ());
        // SAFETY: dlsym with a NUL-terminated name (the test binary exports no hooks).
        let glibc = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_malloc".as_ptr()) };
        assert_eq!(malloc_address(), glibc as usize);
    }
}
