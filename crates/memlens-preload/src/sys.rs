//! Small system helpers that never allocate through the hooked malloc.

use core::ffi::CStr;

extern crate alloc;

/// Read up to `buf.len()` bytes of a (small, /proc) file with raw open/read/close.
/// Returns the number of bytes read, `None` on any error or an empty file.
pub fn read_file(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: NUL-terminated path; the read goes into `buf`; the fd is closed before
    // returning.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len());
        libc::close(fd);
        n
    };
    (n > 0).then_some(n as usize)
}

/// The executable's path (`/proc/self/exe`), empty if it cannot be read.
pub fn exe_path() -> alloc::vec::Vec<u8> {
    let mut buf = [0u8; 4096];
    // SAFETY: readlink writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buf.as_mut_ptr() as *mut _,
            buf.len(),
        )
    };
    buf[..n.max(0) as usize].to_vec()
}
