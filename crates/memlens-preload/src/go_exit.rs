//! Go programs (built with cgo, so dynamically linked and preloadable) end with the Go
//! runtime's `runtime.exit`, a raw `exit_group` system call: neither libc's `exit` nor
//! `_exit` runs, so without this the trace would have no end record, no leak check, and
//! would lose the events still buffered per thread.
//!
//! At start-up, if the main executable carries a Go build-id note, its text is searched for
//! the body of `runtime.exit` (amd64, ABI0, the same since Go 1.0):
//!
//! ```text
//! 8b 7c 24 08        mov  edi, [rsp+8]     ; the exit code, ABI0 stack argument
//! b8 e7 00 00 00     mov  eax, 231         ; SYS_exit_group
//! 0f 05              syscall
//! c3                 ret
//! ```
//!
//! Found exactly once, at a function-aligned address, those 12 bytes are replaced with
//! `movabs rax, go_exit_stub; jmp rax` (also 12 bytes). The stub saves the callee-saved
//! registers for the leak scan, moves to a stack of its own (Go's goroutine stacks are a
//! few KiB and the scan needs more), and ends the process as `_exit` would: finish (leak
//! scan, flush, end record), then `exit_group` with the same code. Anything unexpected
//! (no note, no match, two matches, mprotect refused) leaves the program untouched.

use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `runtime.exit`'s body.
const RUNTIME_EXIT: [u8; 12] = [
    0x8b, 0x7c, 0x24, 0x08, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xc3,
];

/// Go aligns function entries to 32 bytes on amd64; 16 is searched, to be safe.
const FUNC_ALIGN: usize = 16;

/// The stub's own stack: recorder memory (own_memory), so the scan does not take it
/// for a root.
const STACK_SIZE: usize = 1 << 20;

/// The top of that stack (0 until installed).
static GO_EXIT_STACK_TOP: AtomicUsize = AtomicUsize::new(0);

/// Set by the first thread that enters the stub.
static GO_EXIT_CLAIMED: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Whether the main executable is a Go program: a PT_NOTE with owner "Go" (the Go
/// build id, `.note.go.buildid`).
///
/// # Safety
/// `phdrs` points to `n` program headers of the loaded executable, mapped at `bias`.
unsafe fn is_go(phdrs: *const libc::Elf64_Phdr, n: usize, bias: usize) -> bool {
    for i in 0..n {
        // SAFETY: i < n (contract).
        let ph = unsafe { &*phdrs.add(i) };
        // SAFETY: the same headers (contract).
        if ph.p_type != libc::PT_NOTE || !unsafe { loaded(phdrs, n, ph.p_vaddr, ph.p_memsz) } {
            continue;
        }
        let mut at = bias + ph.p_vaddr as usize;
        let end = at + ph.p_memsz as usize;
        while at + 12 <= end {
            // SAFETY: inside the loaded PT_NOTE segment (at + 12 <= end).
            let (namesz, descsz) = unsafe {
                (
                    core::ptr::read_unaligned(at as *const u32) as usize,
                    core::ptr::read_unaligned((at + 4) as *const u32) as usize,
                )
            };
            let name = at + 12;
            // The Go linker writes the name "Go\0\0" (namesz 4); "Go\0" (3) is accepted too.
            if (namesz == 3 || namesz == 4) && name + namesz <= end {
                // SAFETY: name..name+namesz is inside the segment (checked).
                let n = unsafe { core::slice::from_raw_parts(name as *const u8, namesz) };
                if n[..3] == *b"Go\0" {
                    return true;
                }
            }
            at = name + namesz.next_multiple_of(4) + descsz.next_multiple_of(4);
        }
    }
    false
}

/// The address of `runtime.exit` in the executable's text, if found exactly once.
///
/// # Safety
/// As [`is_go`].
unsafe fn find_runtime_exit(phdrs: *const libc::Elf64_Phdr, n: usize, bias: usize) -> usize {
    let mut found = 0usize;
    for i in 0..n {
        // SAFETY: i < n (contract).
        let ph = unsafe { &*phdrs.add(i) };
        if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_X == 0 {
            continue;
        }
        let start = (bias + ph.p_vaddr as usize).next_multiple_of(FUNC_ALIGN);
        let end = bias + (ph.p_vaddr + ph.p_filesz) as usize;
        let mut at = start;
        while at + RUNTIME_EXIT.len() <= end {
            // SAFETY: inside the loaded, readable text segment.
            let here = unsafe { core::slice::from_raw_parts(at as *const u8, RUNTIME_EXIT.len()) };
            if here == RUNTIME_EXIT {
                if found != 0 {
                    return 0;
                }
                found = at;
            }
            at += FUNC_ALIGN;
        }
    }
    found
}

/// Look for `runtime.exit` and redirect it to [`go_exit_stub`]. Called once, at start-up,
/// before the Go runtime runs (the recorder's constructor or its first hook).
pub fn install() {
    // The executable is the first object dl_iterate_phdr reports: its headers and its
    // load bias (0 for a fixed-address executable, the base of a PIE).
    let mut exe = Exe {
        phdrs: core::ptr::null(),
        n: 0,
        bias: 0,
    };
    // SAFETY: the callback only copies three fields of the first entry into `exe`.
    unsafe { libc::dl_iterate_phdr(Some(first_object), &mut exe as *mut Exe as *mut _) };
    if exe.phdrs.is_null() || exe.n == 0 {
        return;
    }
    // SAFETY: the executable's own headers, mapped at `bias`.
    let target = unsafe {
        if !is_go(exe.phdrs, exe.n, exe.bias) {
            return;
        }
        find_runtime_exit(exe.phdrs, exe.n, exe.bias)
    };
    if target == 0 {
        return;
    }
    let stub = go_exit_stub as *const () as usize as u64;
    let mut patch = [0u8; 12];
    patch[0] = 0x48; // movabs rax, imm64
    patch[1] = 0xb8;
    patch[2..10].copy_from_slice(&stub.to_le_bytes());
    patch[10] = 0xff; // jmp rax
    patch[11] = 0xe0;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let first = target & !(page - 1);
    let len = (target + patch.len() - first).next_multiple_of(page);
    // SAFETY: the pages hold the executable's own text; they are made writable for the
    // 12-byte copy and put back read+exec. The Go runtime has not started: no thread
    // runs this code. The stub's stack is in place before the patch can be reached.
    unsafe {
        let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        if libc::mprotect(first as *mut _, len, rwx) != 0 {
            // Refused (SELinux execmod, PaX...): the program is left as it is.
            return;
        }
        let Some(stack) = crate::own_memory::map(STACK_SIZE) else {
            libc::mprotect(first as *mut _, len, libc::PROT_READ | libc::PROT_EXEC);
            return;
        };
        GO_EXIT_STACK_TOP.store(stack as usize + STACK_SIZE, Ordering::Release);
        core::ptr::copy_nonoverlapping(patch.as_ptr(), target as *mut u8, patch.len());
        libc::mprotect(first as *mut _, len, libc::PROT_READ | libc::PROT_EXEC);
    }
    crate::scan::WHOLE_STACK_MAPPINGS.store(true, Ordering::Relaxed);
}

/// The main executable's program headers and load bias.
#[repr(C)]
struct Exe {
    phdrs: *const libc::Elf64_Phdr,
    n: usize,
    bias: usize,
}

/// dl_iterate_phdr callback: keep the first object (the executable) and stop.
/// # Safety
/// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` points at the
/// caller's result.
unsafe extern "C" fn first_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes a valid info, and `data` is the `Exe` install gave.
    unsafe {
        let exe = &mut *(data as *mut Exe);
        exe.phdrs = (*info).dlpi_phdr;
        exe.n = (*info).dlpi_phnum as usize;
        exe.bias = (*info).dlpi_addr as usize;
    }
    1
}

/// Whether `[vaddr, vaddr + len)` lies inside a loaded segment.
///
/// # Safety
/// `phdrs` points to `n` program headers.
unsafe fn loaded(phdrs: *const libc::Elf64_Phdr, n: usize, vaddr: u64, len: u64) -> bool {
    (0..n).any(|i| {
        // SAFETY: i < n (contract).
        let ph = unsafe { &*phdrs.add(i) };
        ph.p_type == libc::PT_LOAD
            && vaddr >= ph.p_vaddr
            && vaddr.saturating_add(len) <= ph.p_vaddr + ph.p_memsz
    })
}

/// Entered by a jump from the patched `runtime.exit`: [rsp] is its return address, the
/// exit code at [rsp + 8]. Claims [`GO_EXIT_CLAIMED`], saves the callee-saved registers
/// (scan roots), switches to the stack at [`GO_EXIT_STACK_TOP`] and calls [`go_exit`].
#[unsafe(naked)]
extern "C" fn go_exit_stub() -> ! {
    core::arch::naked_asm!(
        // One thread at a time: the first to exit claims the stub (and its stack); any
        // other waits here on its own stack until the winner's exit_group ends the
        // process (or the leak scan's stop signal parks it).
        "mov al, 1",
        "xchg byte ptr [rip + {claimed}], al",
        "test al, al",
        "jz 3f",
        "2:",
        "pause",
        "jmp 2b",
        "3:",
        "mov edi, dword ptr [rsp + 8]",
        crate::lifecycle::save_exit_regs!(),
        "mov rsp, qword ptr [rip + {top}]",
        "and rsp, -16",
        "call {imp}",
        "ud2",
        r = sym crate::lifecycle::EXIT_REGS,
        top = sym GO_EXIT_STACK_TOP,
        claimed = sym GO_EXIT_CLAIMED,
        imp = sym go_exit,
    )
}

/// The Go program is exiting with `code`, on the stub's stack.
extern "C" fn go_exit(code: c_int) -> ! {
    crate::lifecycle::EXIT_TID.store(crate::sys::gettid(), Ordering::Release);
    crate::lifecycle::finish_go_exit(code);
    // SAFETY: exit_group never returns; it is what runtime.exit did.
    unsafe {
        libc::syscall(libc::SYS_exit_group, code as libc::c_long);
    }
    loop {
        core::hint::spin_loop();
    }
}
