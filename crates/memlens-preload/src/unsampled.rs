//! The exported `malloc`, `calloc`, `realloc`, `free` (and glibc's `__libc_*` names for
//! them, which a program may call directly) and C++'s plain, array,
//! `nothrow` and sized `operator new` and `operator delete`: assembly stubs that, when
//! sampling (`--sample`) passes over the call, hand it to glibc (with a jump; `operator
//! new` calls glibc, to go to the hook on a null), and otherwise jump to the recorded
//! hook (`hooks.rs`) with the program's frame untouched (so its `caller!` reads the
//! program as its caller, as if it were entered directly).
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

/// Assembly that jumps to `{hook}` unless the filter of sampled addresses says that no
/// sampled block can start at `rdi` (`live::may_hold`: the filter is on, and the count at
/// the address's hash is 0; the hash is `live::filter_slot`'s). Clobbers rax and rcx.
/// Its operands: `{filtering}`, `{counts}`, `{mul}`, `{shift}` and `{hook}`.
macro_rules! unsampled_address {
    () => {
        concat!(
            "cmp byte ptr [rip + {filtering}], 0\n",
            "je {hook}\n",
            "mov rax, rdi\n",
            "shr rax, 4\n",
            "movabs rcx, {mul}\n",
            "imul rax, rcx\n",
            "shr rax, {shift}\n",
            "lea rcx, [rip + {counts}]\n",
            "cmp dword ptr [rcx + 4 * rax], 0\n",
            "jne {hook}\n",
        )
    };
}

/// Assembly that takes `$size` (a register) from the thread's countdown to its next
/// sample point (`sample::take`'s fast path, wrapping): when the rest is above 0 it is
/// stored and the call is passed over (the code that follows runs); otherwise it jumps
/// to `{hook}`, the countdown untouched. `$tls` is a scratch register for the TLS
/// offset; rcx is clobbered. Its operand: `{left}`.
macro_rules! count_down {
    ($size:literal, $tls:literal) => {
        concat!(
            "mov ",
            $tls,
            ", qword ptr [rip + memlens_tls_block@GOTTPOFF]\n",
            "mov rcx, qword ptr fs:[",
            $tls,
            " + {left}]\n",
            "sub rcx, ",
            $size,
            "\n",
            "test rcx, rcx\n",
            "jle {hook}\n",
            "mov qword ptr fs:[",
            $tls,
            " + {left}], rcx\n",
        )
    };
}

/// The `malloc` stubs: glibc's malloc when sampling passes over the allocation;
/// otherwise [`crate::hooks::malloc_hook`].
macro_rules! malloc_stub {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// None beyond malloc(3)'s.
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(size: usize) -> *mut c_void {
            core::arch::naked_asm!(
                // Every block recorded: the hook.
                "cmp qword ptr [rip + {interval}], 0",
                "je {hook}",
                count_down!("rdi", "rax"),
                "jmp qword ptr [rip + {libc}]",
                interval = sym crate::sample::INTERVAL,
                hook = sym crate::hooks::malloc_hook,
                left = const crate::tls::SAMPLE_LEFT_OFFSET,
                libc = sym crate::libc_alloc::MALLOC,
            )
        }
    };
}

malloc_stub!(
    /// `malloc(3)`.
    malloc
);
malloc_stub!(
    /// glibc's `__libc_malloc`, which a program may call by name (or take with
    /// `dlvsym`): the same as `malloc`.
    __libc_malloc
);

/// The `calloc` stubs: glibc's, when sampling passes over the allocation of `n * size`
/// bytes (wrapping, as the hook counts them); otherwise [`crate::hooks::calloc_hook`].
macro_rules! calloc_stub {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// None beyond calloc(3)'s.
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(n: usize, size: usize) -> *mut c_void {
            core::arch::naked_asm!(
                "cmp qword ptr [rip + {interval}], 0",
                "je {hook}",
                "mov rax, rdi",
                "imul rax, rsi",
                count_down!("rax", "rdx"),
                "jmp qword ptr [rip + {libc}]",
                interval = sym crate::sample::INTERVAL,
                hook = sym crate::hooks::calloc_hook,
                left = const crate::tls::SAMPLE_LEFT_OFFSET,
                libc = sym crate::libc_alloc::CALLOC,
            )
        }
    };
}

calloc_stub!(
    /// `calloc(3)`.
    calloc
);
calloc_stub!(
    /// glibc's `__libc_calloc`: the same as `calloc`.
    __libc_calloc
);

/// The `realloc` stubs: glibc's, when sampling knows the old block (if any) was not
/// sampled and passes over the new one (`hooks::realloc_sampled`'s four cases: here,
/// neither); otherwise [`crate::hooks::realloc_hook`]. `realloc(p, 0)` of an unsampled
/// block counts nothing, as there; a size the countdown would clamp (2^48 and up) goes to
/// the hook.
macro_rules! realloc_stub {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the hook's.
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(old: *mut c_void, size: usize) -> *mut c_void {
            core::arch::naked_asm!(
                "cmp qword ptr [rip + {interval}], 0",
                "je {hook}",
                "test rdi, rdi",
                "je 3f",
                // The old block: may a sampled block start there?
                unsampled_address!(),
                "test rsi, rsi",
                "jne 3f",
                "jmp qword ptr [rip + {libc}]",
                "3:",
                "mov rcx, rsi",
                "shr rcx, 48",
                "jnz {hook}",
                count_down!("rsi", "rax"),
                "jmp qword ptr [rip + {libc}]",
                interval = sym crate::sample::INTERVAL,
                filtering = sym crate::live::FILTERING,
                counts = sym crate::live::FILTER_COUNTS,
                mul = const crate::live::FILTER_MUL,
                shift = const crate::live::FILTER_SHIFT,
                hook = sym crate::hooks::realloc_hook,
                left = const crate::tls::SAMPLE_LEFT_OFFSET,
                libc = sym crate::libc_alloc::REALLOC,
            )
        }
    };
}

realloc_stub!(
    /// `realloc(3)`.
    realloc
);
realloc_stub!(
    /// glibc's `__libc_realloc`: the same as `realloc`.
    __libc_realloc
);

/// The `operator new` stubs: glibc's malloc when sampling passes over the allocation and
/// glibc has the memory; otherwise `$hook`, which records a sampled block and, when
/// glibc has none, calls libstdc++'s operator (the program's new-handler, then
/// `std::bad_alloc`, or null for a `nothrow` form). Unlike the other stubs these call
/// glibc and look at its answer, so they have a frame: the size is kept on the stack for
/// the hook (the push also keeps the stack 16-byte aligned at the call), and the unwind
/// table describes it. (A `nothrow_t&` argument is not read, by the stub or the hook.)
macro_rules! new_stub {
    ($(#[$doc:meta])* $name:ident, $hook:path $(, $extra:ident : $ty:ty)*) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The operator's C++ contract.
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(size: usize $(, $extra: $ty)*) -> *mut c_void {
            core::arch::naked_asm!(
                ".cfi_startproc",
                "cmp qword ptr [rip + {interval}], 0",
                "je {hook}",
                count_down!("rdi", "rax"),
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "call qword ptr [rip + {libc}]",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "test rax, rax",
                "je {hook}",
                "ret",
                ".cfi_endproc",
                interval = sym crate::sample::INTERVAL,
                hook = sym $hook,
                left = const crate::tls::SAMPLE_LEFT_OFFSET,
                libc = sym crate::libc_alloc::MALLOC,
            )
        }
    };
}

new_stub!(
    /// `operator new(size_t)`.
    _Znwm,
    crate::hooks::new_hook
);
new_stub!(
    /// `operator new[](size_t)`.
    _Znam,
    crate::hooks::new_array_hook
);

new_stub!(
    /// `operator new(size_t, const std::nothrow_t&)` (the `nothrow_t&` is not read).
    _ZnwmRKSt9nothrow_t,
    crate::hooks::new_nothrow_hook,
    _nothrow: *const c_void
);
new_stub!(
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t,
    crate::hooks::new_array_nothrow_hook,
    _nothrow: *const c_void
);

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
                unsampled_address!(),
                "jmp qword ptr [rip + {libc}]",
                "2:",
                "ret",
                interval = sym crate::sample::INTERVAL,
                filtering = sym crate::live::FILTERING,
                counts = sym crate::live::FILTER_COUNTS,
                mul = const crate::live::FILTER_MUL,
                shift = const crate::live::FILTER_SHIFT,
                hook = sym $hook,
                libc = sym crate::libc_alloc::FREE,
            )
        }
    };
}

release_stub!(
    /// `free(3)`.
    free,
    crate::hooks::free_hook
);
release_stub!(
    /// glibc's `__libc_free`: the same as `free`.
    __libc_free,
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
release_stub!(
    /// `operator delete[](void*)`.
    _ZdaPv,
    crate::hooks::delete_array_hook
);
release_stub!(
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm,
    crate::hooks::delete_array_sized_hook,
    _size: usize
);
