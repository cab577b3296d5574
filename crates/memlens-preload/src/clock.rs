//! Event timestamps: nanoseconds since the trace started.
//!
//! `clock_gettime` costs ~20 ns here, `rdtsc` ~9 ns. When the kernel's clock source is
//! the TSC (so it is invariant and synchronised across CPUs), the RSS sampler thread
//! calibrates TSC ticks against CLOCK_MONOTONIC (first after 20 ms, then on every
//! sample, always measuring over the whole time since it started) and publishes an
//! anchor and a multiplier through a seqlock. The hot path turns `rdtsc` into ns with
//! them. Before the first calibration, while one is being published, far from the
//! anchor, or without a TSC clock source, it reads CLOCK_MONOTONIC as before. Only the
//! sampler writes.

use core::sync::atomic::{fence, AtomicU64, Ordering};

/// Monotonic clock at trace start, ns.
pub static START_NS: AtomicU64 = AtomicU64::new(0);

/// Seqlock: 0 = not calibrated, odd = being updated.
static SEQ: AtomicU64 = AtomicU64::new(0);
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
static BASE_NS: AtomicU64 = AtomicU64::new(0);
/// ns per tick, 32.32 fixed point.
static MULT: AtomicU64 = AtomicU64::new(0);
/// Beyond this many ticks from the anchor (~1 s), extrapolation is not trusted.
const MAX_DELTA: u64 = 1 << 31;

#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CLOCK_MONOTONIC, ns.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills t (vDSO, no syscall, no allocation).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// ns since the trace started.
#[inline]
pub fn now_ns() -> u64 {
    let s = SEQ.load(Ordering::Acquire);
    if s != 0 && s & 1 == 0 {
        let (t0, n0, m) = (
            BASE_TSC.load(Ordering::Relaxed),
            BASE_NS.load(Ordering::Relaxed),
            MULT.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        if SEQ.load(Ordering::Relaxed) == s {
            let d = rdtsc().wrapping_sub(t0);
            if d < MAX_DELTA {
                return n0 + ((d as u128 * m as u128) >> 32) as u64;
            }
        }
    }
    monotonic_ns().saturating_sub(START_NS.load(Ordering::Relaxed))
}

/// Set the trace's start (constructor).
pub fn start() {
    START_NS.store(monotonic_ns(), Ordering::Relaxed);
}

/// Start a new trace's time (`memlens attach` again): the calibration's anchor counts
/// from the old start, so it is dropped (the seqlock back to "not calibrated") until the
/// new sampler calibrates again. No sampler runs while this is called.
pub fn restart() {
    SEQ.store(0, Ordering::Release);
    START_NS.store(monotonic_ns(), Ordering::Relaxed);
}

/// Whether the kernel keeps time with the TSC (then it is invariant and synchronised).
pub fn tsc_is_clocksource() -> bool {
    let mut buf = [0u8; 32];
    crate::sys::read_file(
        c"/sys/devices/system/clocksource/clocksource0/current_clocksource",
        &mut buf,
    )
    .is_some_and(|n| buf[..n].trim_ascii() == b"tsc")
}

/// A (ticks, monotonic ns) pair read back to back.
pub fn sample() -> (u64, u64) {
    let a = rdtsc();
    let n = monotonic_ns();
    let b = rdtsc();
    (a / 2 + b / 2, n)
}

/// Publish a calibration from the sampler's first pair and a current one.
pub fn calibrate(first: (u64, u64), now: (u64, u64)) {
    let (dt, dn) = (now.0.wrapping_sub(first.0), now.1.saturating_sub(first.1));
    if dn < 20_000_000 || dt == 0 || dt > 1 << 62 {
        return;
    }
    let mult = ((dn as u128) << 32) / dt as u128;
    if mult == 0 || mult > u64::MAX as u128 {
        return;
    }
    let s = SEQ.load(Ordering::Relaxed);
    SEQ.store(s.wrapping_add(1) | 1, Ordering::Relaxed);
    fence(Ordering::Release);
    BASE_TSC.store(now.0, Ordering::Relaxed);
    BASE_NS.store(
        now.1.saturating_sub(START_NS.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    MULT.store(mult as u64, Ordering::Relaxed);
    SEQ.store((s | 1).wrapping_add(1), Ordering::Release);
}
