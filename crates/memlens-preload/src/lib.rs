//! The memlens recorder: a library put in `LD_PRELOAD` by `memlens run`.
//!
//! It interposes the malloc family and C++ operator new/delete, unwinds the caller's stack
//! from DWARF CFI, de-duplicates stacks, and streams compressed events to a trace file per
//! process. It runs inside somebody else's program, so it follows these rules:
//!
//! * It never allocates through the hooked malloc: its own memory comes from a private
//!   mmap-backed allocator ([`private_alloc`]), and any allocation a library makes on its
//!   behalf happens with the thread's `busy` flag set, which makes the hooks pass through.
//! * A hook re-entered on the same thread (from our own code, a signal handler, or a
//!   library we call) goes straight to the real allocator, untracked.
//! * Locks are spin locks held for short, bounded sections; fork takes them all in its
//!   prepare handler so the child never inherits a held lock.
//! * It never writes to the program's stdout/stderr except one warning if the trace
//!   cannot be written; its trace file descriptor is close-on-exec and never 0-2.
//! * Nothing panics across the FFI boundary: the crate is built with `panic = "abort"`
//!   semantics for `extern "C"` functions, and code paths avoid panicking operations.
//!
//! This crate targets x86_64 Linux with glibc (it reaches the real allocator through
//! glibc's `__libc_*` entry points).

// Unit tests build this crate as an ordinary test binary: the hooks are not exported there
// (`#[cfg_attr(not(test), no_mangle)]`) and the constructor is left out, so the test binary
// never records itself, and what only the exported entry points reach is unused.
#![cfg_attr(test, allow(dead_code, non_snake_case))]

mod api;
mod attach;
mod clock;
mod config;
mod dlsym;
mod go_exit;
mod hooks;
mod libc_alloc;
mod lifecycle;
mod live;
mod modules;
mod order;
mod output;
mod own_memory;
mod private_alloc;
mod python;
mod rawlog;
mod sample;
mod scan;
mod self_mem;
mod signals;
mod stacks;
mod symbols;
mod sys;
mod thread;
mod tls;
mod unsampled;
mod writer;

#[global_allocator]
static ALLOCATOR: private_alloc::PrivateAlloc = private_alloc::PrivateAlloc::new();
