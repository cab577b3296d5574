//! Access to the per-thread state kept in initial-exec TLS (see `shim.c`).

use crate::thread::ThreadState;

#[repr(C)]
pub struct Tls {
    /// > 0 while this thread runs recorder code; hooks then pass straight through.
    pub busy: i32,
    /// Set once the thread's state was flushed at thread exit.
    pub exiting: i32,
    pub state: *mut ThreadState,
    /// 1 + the live-table shard this thread holds locked, 0 if none (see `live.rs`).
    pub live_shard: i32,
    /// Live-table operations queued by a hook re-entered (from a signal handler) while
    /// this thread held the shard they need.
    pub pending_n: i32,
    pub pending: [[u64; 2]; 8],
}

#[allow(improper_ctypes)] // only a pointer to ThreadState crosses, never the value
extern "C" {
    fn memlens_tls() -> *mut Tls;
}

/// This thread's TLS block.
#[inline(always)]
pub fn get() -> &'static mut Tls {
    // SAFETY: memlens_tls returns the address of this thread's initial-exec TLS block,
    // valid for the thread's whole life; only this thread touches it (signal handlers
    // running on this thread see `busy` and leave the state alone).
    unsafe { &mut *memlens_tls() }
}

/// Marks the thread busy for its lifetime, so that allocations made by code we call
/// are passed through untracked.
pub struct BusyGuard(&'static mut Tls);

impl BusyGuard {
    /// `None` when the thread is already inside the recorder.
    #[inline(always)]
    pub fn enter() -> Option<BusyGuard> {
        let t = get();
        if t.busy != 0 {
            return None;
        }
        t.busy = 1;
        Some(BusyGuard(t))
    }
    pub fn tls(&mut self) -> &mut Tls {
        self.0
    }
}

impl Drop for BusyGuard {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.busy = 0;
        crate::scan::maybe_park();
    }
}
