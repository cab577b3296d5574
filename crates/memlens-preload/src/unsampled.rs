//! The exported `malloc`, `calloc`, `realloc`, `free` and C++'s plain and sized
//! `operator delete`: assembly
//! stubs that, when sampling (`--sample`) passes over the call, hand it to glibc with a
//! jump, and otherwise jump to the recorded hook (`hooks.rs`) with the program's frame
//! untouched (so its `caller!` reads the program as its caller, as if it were entered
//! directly).
//!
//! With sampling, most calls are passed over: an allocation that does not reach the
//! thread's sample point, a release of an address where no sampled block can start. In
//! Rust those fast paths cost the hook's frame (saving four registers and restoring
//! them) and a call into C for the TLS block: some 30 instructions a call, about as many
//! as glibc's own malloc. Here they are 8 to 14, and make no call: the countdown is read
//! at its initial-exec TLS offset, and the filter of sampled addresses
//! (`live::may_hold`) is read in place.
//!
//! What each stub decides is exactly what the Rust fast path decided (`sample::take`'s
//! countdown, `sample::passes_over_release`), with one difference of order: the
//! countdown is taken before glibc's malloc, not after, so a malloc that fails still
//! counts its bytes (as it does for a sampled block).
//!
//! Without sampling every call goes to the hook: two instructions more than before.

use core::ffi::c_void;

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
}

/// `malloc(3)`: glibc's, when sampling passes over the allocation; otherwise
/// [`crate::hooks::malloc_hook`].
///
/// # Safety
/// None beyond malloc(3)'s.
#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    core::arch::naked_asm!(
        // Every block recorded: the hook.
        "cmp qword ptr [rip + {interval}], 0",
        "je {hook}",
        // The thread's countdown less the size (wrapping, as `sample::take`): above 0,
        // the allocation is passed over.
        "mov rax, qword ptr [rip + memlens_tls_block@GOTTPOFF]",
        "mov rcx, qword ptr fs:[rax + {left}]",
        "sub rcx, rdi",
        "test rcx, rcx",
        "jle {hook}",
        "mov qword ptr fs:[rax + {left}], rcx",
        "jmp {libc}",
        interval = sym crate::sample::INTERVAL,
        hook = sym crate::hooks::malloc_hook,
        left = const crate::tls::SAMPLE_LEFT_OFFSET,
        libc = sym __libc_malloc,
    )
}

/// `calloc(3)`: glibc's, when sampling passes over the allocation of `n * size` bytes
/// (wrapping, as the hook counts them); otherwise [`crate::hooks::calloc_hook`].
///
/// # Safety
/// None beyond calloc(3)'s.
#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    core::arch::naked_asm!(
        "cmp qword ptr [rip + {interval}], 0",
        "je {hook}",
        "mov rax, rdi",
        "imul rax, rsi",
        "mov rdx, qword ptr [rip + memlens_tls_block@GOTTPOFF]",
        "mov rcx, qword ptr fs:[rdx + {left}]",
        "sub rcx, rax",
        "test rcx, rcx",
        "jle {hook}",
        "mov qword ptr fs:[rdx + {left}], rcx",
        "jmp {libc}",
        interval = sym crate::sample::INTERVAL,
        hook = sym crate::hooks::calloc_hook,
        left = const crate::tls::SAMPLE_LEFT_OFFSET,
        libc = sym __libc_calloc,
    )
}

/// `realloc(3)`: glibc's, when sampling knows the old block (if any) was not sampled
/// and passes over the new one (`hooks::realloc_sampled`'s four cases: here, neither);
/// otherwise [`crate::hooks::realloc_hook`]. `realloc(p, 0)` of an unsampled block counts
/// nothing, as there; a size the countdown would clamp (2^48 and up) goes to the hook.
///
/// # Safety
/// As the hook's.
#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: usize) -> *mut c_void {
    core::arch::naked_asm!(
        "cmp qword ptr [rip + {interval}], 0",
        "je {hook}",
        "test rdi, rdi",
        "je 3f",
        // The old block: may a sampled block start there?
        "cmp byte ptr [rip + {filtering}], 0",
        "je {hook}",
        "mov rax, rdi",
        "shr rax, 4",
        "movabs rcx, 0x9E3779B97F4A7C15",
        "imul rax, rcx",
        "shr rax, 52",
        "lea rcx, [rip + {counts}]",
        "cmp dword ptr [rcx + 4 * rax], 0",
        "jne {hook}",
        "test rsi, rsi",
        "je {libc}",
        "3:",
        "mov rcx, rsi",
        "shr rcx, 48",
        "jnz {hook}",
        "mov rax, qword ptr [rip + memlens_tls_block@GOTTPOFF]",
        "mov rcx, qword ptr fs:[rax + {left}]",
        "sub rcx, rsi",
        "test rcx, rcx",
        "jle {hook}",
        "mov qword ptr fs:[rax + {left}], rcx",
        "jmp {libc}",
        interval = sym crate::sample::INTERVAL,
        filtering = sym crate::live::FILTERING,
        counts = sym crate::live::FILTER_COUNTS,
        hook = sym crate::hooks::realloc_hook,
        left = const crate::tls::SAMPLE_LEFT_OFFSET,
        libc = sym __libc_realloc,
    )
}

/// The release stubs: `$name(p, ...)` is glibc's free of `p` when sampling knows no
/// sampled block starts at `p` (`live::may_hold`: the filter is on and the count at
/// `p`'s hash is 0), nothing for a null `p`, and `$hook` otherwise.
macro_rules! release_stub {
    ($(#[$doc:meta])* $name:ident, $hook:path $(, $extra:ident : $ty:ty)*) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the hook's.
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $extra: $ty)*) {
            core::arch::naked_asm!(
                "test rdi, rdi",
                "je 2f",
                "cmp qword ptr [rip + {interval}], 0",
                "je {hook}",
                "cmp byte ptr [rip + {filtering}], 0",
                "je {hook}",
                // `live::filter_slot`: ((p >> 4) * golden ratio) >> 52, of 4096 counts.
                "mov rax, rdi",
                "shr rax, 4",
                "movabs rcx, 0x9E3779B97F4A7C15",
                "imul rax, rcx",
                "shr rax, 52",
                "lea rcx, [rip + {counts}]",
                "cmp dword ptr [rcx + 4 * rax], 0",
                "jne {hook}",
                "jmp {libc}",
                "2:",
                "ret",
                interval = sym crate::sample::INTERVAL,
                filtering = sym crate::live::FILTERING,
                counts = sym crate::live::FILTER_COUNTS,
                hook = sym $hook,
                libc = sym __libc_free,
            )
        }
    };
}

// The filter's hash must be the one above.
const _: () = assert!(crate::live::FILTER == 4096);

release_stub!(
    /// `free(3)`.
    free,
    crate::hooks::free_hook
);
release_stub!(
    /// `operator delete(void*)`.
    _ZdlPv,
    crate::hooks::delete_hook
);
release_stub!(
    /// `operator delete(void*, size_t)`.
    _ZdlPvm,
    crate::hooks::delete_sized_hook,
    _size: usize
);
