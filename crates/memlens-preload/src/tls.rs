//! Access to the per-thread state kept in initial-exec TLS (see `shim.c`).
//!
//! The block is this thread's alone, but a signal handler running on the thread (a hook
//! re-entered from the program's handler, the recorder's own fatal-signal and stop
//! handlers) reads and writes it in the middle of the thread's own accesses. So nothing
//! here hands out a reference to it: every field is read and written by value, through
//! a relaxed atomic on its address, which is what a signal handler interleaving on the
//! same thread needs (no torn value, no access moved across another by the compiler).

use crate::thread::ThreadState;
use core::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU64, Ordering::Relaxed};

#[repr(C)]
pub struct Tls {
    /// > 0 while this thread runs recorder code; hooks then pass straight through.
    busy: i32,
    state: *mut ThreadState,
    /// 1 + the live-table shard this thread holds locked, 0 if none (see `live.rs`).
    live_shard: i32,
    /// Live-table operations queued by a hook re-entered (from a signal handler) while
    /// this thread held the shard they need.
    pending_n: i32,
    pending: [[u64; 2]; PENDING],
    /// Bytes left before the next sample point, when sampling (`sample.rs`).
    sample_left: i64,
    /// The sampler's PRNG state; 0 until the thread's first allocation seeds it.
    sample_rng: u64,
    /// While a hook leaves the recorder (`thread::record_then`): its caller's stack
    /// pointer and the block it returns; 0 otherwise. A fatal signal handled there
    /// scans the program's frames from `leaving_sp` up, not the recorder's own frames
    /// below it (stale copies of old pointers), with `in_flight` as a register.
    leaving_sp: u64,
    in_flight: u64,
}

/// How many live-table operations a thread can queue (see `live.rs`).
pub const PENDING: usize = 8;

/// Where the sampler's countdown lies in the block (the assembly of `unsampled.rs`).
pub const SAMPLE_LEFT_OFFSET: usize = core::mem::offset_of!(Tls, sample_left);

#[allow(improper_ctypes)] // only a pointer to ThreadState crosses, never the value
extern "C" {
    fn memlens_tls() -> *mut Tls;
}

/// This thread's TLS block, as a handle that never becomes a reference: take it once per
/// operation on a hot path (`memlens_tls` is a call into C), then read and write fields.
#[derive(Clone, Copy)]
pub struct Here(*mut Tls);

/// The calling thread's TLS block.
#[inline(always)]
pub fn here() -> Here {
    // SAFETY: memlens_tls returns the address of this thread's initial-exec TLS block,
    // valid for the thread's whole life; calling it has no precondition.
    Here(unsafe { memlens_tls() })
}

macro_rules! i32_field {
    ($get:ident, $set:ident, $field:ident) => {
        #[inline(always)]
        pub fn $get(self) -> i32 {
            // SAFETY: the field lies in this thread's TLS block, aligned for an i32;
            // only atomics touch it.
            unsafe { AtomicI32::from_ptr(core::ptr::addr_of_mut!((*self.0).$field)) }.load(Relaxed)
        }
        #[inline(always)]
        pub fn $set(self, v: i32) {
            // SAFETY: as in the getter.
            unsafe { AtomicI32::from_ptr(core::ptr::addr_of_mut!((*self.0).$field)) }
                .store(v, Relaxed)
        }
    };
}

impl Here {
    i32_field!(busy_depth, set_busy_depth, busy);
    i32_field!(live_shard, set_live_shard, live_shard);

    /// Where the block lies (a per-thread value, for seeding).
    #[inline(always)]
    pub fn addr(self) -> usize {
        self.0 as usize
    }

    /// Bytes left before this thread's next sample point (`sample.rs`).
    #[inline(always)]
    pub fn sample_left(self) -> i64 {
        // SAFETY: the field lies in this thread's TLS block, aligned for an i64; only
        // atomics touch it.
        unsafe { AtomicI64::from_ptr(core::ptr::addr_of_mut!((*self.0).sample_left)) }.load(Relaxed)
    }
    #[inline(always)]
    pub fn set_sample_left(self, v: i64) {
        // SAFETY: as in `sample_left`.
        unsafe { AtomicI64::from_ptr(core::ptr::addr_of_mut!((*self.0).sample_left)) }
            .store(v, Relaxed)
    }
    /// The sampler's PRNG state (0: not seeded yet).
    #[inline(always)]
    pub fn sample_rng(self) -> u64 {
        // SAFETY: as in `sample_left`, for a u64.
        unsafe { AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).sample_rng)) }.load(Relaxed)
    }
    #[inline(always)]
    pub fn set_sample_rng(self, v: u64) {
        // SAFETY: as in `sample_left`, for a u64.
        unsafe { AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).sample_rng)) }
            .store(v, Relaxed)
    }

    /// See `Tls::leaving_sp` and `Tls::in_flight`.
    #[inline(always)]
    pub fn leaving(self) -> (u64, u64) {
        // SAFETY: as in `sample_left`, for u64s.
        unsafe {
            (
                AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).leaving_sp)).load(Relaxed),
                AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).in_flight)).load(Relaxed),
            )
        }
    }
    #[inline(always)]
    pub fn set_leaving(self, sp: u64, block: u64) {
        // SAFETY: as in `sample_left`, for u64s.
        unsafe {
            AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).in_flight)).store(block, Relaxed);
            AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).leaving_sp)).store(sp, Relaxed);
        }
    }

    /// This thread is inside the recorder (its hooks pass straight through).
    #[inline(always)]
    pub fn busy(self) -> bool {
        self.busy_depth() != 0
    }

    /// This thread's recording state, or null.
    #[inline(always)]
    pub fn state(self) -> *mut ThreadState {
        // SAFETY: the field lies in this thread's TLS block, aligned for a pointer; only
        // atomics touch it.
        unsafe { AtomicPtr::from_ptr(core::ptr::addr_of_mut!((*self.0).state)) }.load(Relaxed)
    }

    #[inline(always)]
    pub fn set_state(self, p: *mut ThreadState) {
        // SAFETY: as in `state`.
        unsafe { AtomicPtr::from_ptr(core::ptr::addr_of_mut!((*self.0).state)) }.store(p, Relaxed)
    }

    /// The count of queued live-table operations, as an atomic (a handler may queue one
    /// while the thread drains the queue).
    #[inline(always)]
    pub fn pending_count(self) -> &'static AtomicI32 {
        // SAFETY: the field lies in this thread's TLS block, which outlives every use on
        // this thread; an atomic may be shared with a handler on the same thread.
        unsafe { AtomicI32::from_ptr(core::ptr::addr_of_mut!((*self.0).pending_n)) }
    }

    /// Queued operation `i` (< [`PENDING`]) as two words.
    #[inline(always)]
    pub fn pending_get(self, i: usize) -> [u64; 2] {
        let i = i.min(PENDING - 1);
        // SAFETY: slot i lies in this thread's TLS block; only atomics touch it.
        let w = |k: usize| unsafe {
            AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).pending[i][k])).load(Relaxed)
        };
        [w(0), w(1)]
    }

    #[inline(always)]
    pub fn pending_set(self, i: usize, v: [u64; 2]) {
        let i = i.min(PENDING - 1);
        for (k, x) in v.into_iter().enumerate() {
            // SAFETY: as in `pending_get`.
            unsafe { AtomicU64::from_ptr(core::ptr::addr_of_mut!((*self.0).pending[i][k])) }
                .store(x, Relaxed);
        }
    }
}

/// Whether the calling thread is inside the recorder.
#[inline(always)]
pub fn busy() -> bool {
    here().busy()
}

/// Marks the thread busy while it lives, so that allocations made by code the recorder
/// calls are passed through untracked.
pub struct BusyGuard(Here);

impl BusyGuard {
    /// `None` when the thread is already inside the recorder.
    #[inline(always)]
    pub fn enter() -> Option<BusyGuard> {
        let t = here();
        if t.busy() {
            return None;
        }
        t.set_busy_depth(1);
        Some(BusyGuard(t))
    }

    /// The thread's TLS block (taken once by `enter`).
    #[inline(always)]
    pub fn here(&self) -> Here {
        self.0
    }
}

impl Drop for BusyGuard {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.set_busy_depth(0);
        crate::scan::maybe_park();
    }
}

/// Nested busy sections that do not return through one scope (fork's prepare handler
/// and its two completions).
pub fn busy_inc() {
    let t = here();
    t.set_busy_depth(t.busy_depth() + 1);
}

pub fn busy_dec() {
    let t = here();
    t.set_busy_depth(t.busy_depth() - 1);
}
