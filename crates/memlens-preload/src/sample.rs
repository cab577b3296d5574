//! Poisson sampling by bytes (`memlens run --sample BYTES`).
//!
//! Every byte the program allocates is a sample point with probability 1/T (T the mean
//! interval): the gaps between points are exponential, so each thread keeps a countdown
//! of the bytes to its next point (in initial-exec TLS, `tls.rs`) drawn from an
//! exponential distribution with mean T by its own PRNG (xorshift64*, no libc `rand`, no
//! allocation). An allocation of `s` bytes that reaches the point is sampled: it is
//! recorded with its stack and entered in the live-block table; the next countdown is
//! drawn afresh from the block's end (the exponential has no memory, so the points the
//! block covered beyond the first change nothing). A block of `s` bytes is thus sampled
//! with probability `1 - e^(-s/T)`, independently of every other block, and the analysis
//! weighs it by the inverse (`memlens-analysis`, `replay.rs`).
//!
//! The others cost a subtraction: no unwind, no record, no entry in the live table. Their
//! release finds no entry and goes straight to glibc. So a sampled run cannot tell a
//! double or invalid free from the release of an unsampled block, and makes no leak scan
//! (it does not know the unsampled blocks, which hold pointers to sampled ones).

use crate::tls;
use core::sync::atomic::{AtomicU64, Ordering};

/// The mean interval, bytes; 0 when every block is recorded.
pub static INTERVAL: AtomicU64 = AtomicU64::new(0);
/// `MEMLENS_SAMPLE_SEED`, 0 if unset (then each thread seeds from the clock and its id).
pub static SEED: AtomicU64 = AtomicU64::new(0);
/// Threads seeded so far: with a fixed seed, the n-th thread to allocate gets the n-th
/// stream, so a single-threaded run picks the same blocks every time.
static SEEDED: AtomicU64 = AtomicU64::new(0);

/// Whether sampling is on.
#[inline(always)]
pub fn on() -> bool {
    INTERVAL.load(Ordering::Relaxed) != 0
}

/// splitmix64's finaliser: spreads a seed over all bits (and never maps the stream
/// number sequence onto correlated states).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The next value of a xorshift64* generator (state never 0).
#[inline(always)]
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Bytes to the next sample point: an exponential draw with mean `interval`
/// (`-ln(U) * T`, U uniform in (0, 1]), at least 1.
#[inline]
fn draw(state: &mut u64, interval: u64) -> i64 {
    // 53 random bits, +1 so that U is never 0.
    let u = ((next(state) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let gap = -u.ln() * interval as f64;
    (gap as i64).clamp(1, i64::MAX / 4)
}

#[cold]
fn seed(t: tls::Here) -> u64 {
    let n = SEEDED.fetch_add(1, Ordering::Relaxed);
    let fixed = SEED.load(Ordering::Relaxed);
    let base = if fixed != 0 {
        fixed
    } else {
        // No seed asked for: the clock, the thread and where its TLS lies.
        crate::clock::now_ns() ^ (u64::from(crate::sys::gettid()) << 32) ^ (t.addr() as u64)
    };
    let s = mix(base ^ mix(n));
    if s == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        s
    }
}

/// Sampling is on and the block `p` of `size` bytes that the real allocator returned
/// (null if it failed) is not sampled: there is nothing to record. Advances the thread's
/// countdown ([`take`]). What every allocation pays when sampling, so it is kept to a
/// load, a subtraction and two tests; the hooks call it before they read their caller's
/// frame.
#[inline(always)]
pub fn passes_over(p: *mut core::ffi::c_void, size: u64) -> bool {
    on() && (p.is_null() || !take(size))
}

/// Sampling is on and the release of `p` cannot be of a sampled block: glibc's to free,
/// nothing to record. Most releases, for no lock and no read of the caller's frame: the
/// lock-free counts of the live table (`live::may_hold`) hold no sampled block where `p`
/// would be. A null `p` is not passed over (the hook's own path returns for it).
#[inline(always)]
pub fn passes_over_release(p: *mut core::ffi::c_void) -> bool {
    on() && !p.is_null() && !crate::live::may_hold(p as u64)
}

/// An allocation of `size` bytes (of a block the real allocator returned, so less than
/// the address space) by the calling thread: is it sampled? Advances the thread's
/// countdown. Never for an allocation made inside the recorder (the thread is busy): those
/// are not the program's; they count down like the program's, and a sample point they
/// reach goes to the program's next allocation (the gaps are memoryless: that allocation
/// is sampled as if the point had fallen in it). A thread's countdown starts at 0 (its
/// TLS block is zeroed; a forked child's is reset), so its first allocation seeds its
/// generator on the slow path. Only called when [`on`].
#[inline(always)]
pub fn take(size: u64) -> bool {
    let t = tls::here();
    let left = t.sample_left().wrapping_sub(size as i64);
    if left > 0 {
        t.set_sample_left(left);
        return false;
    }
    take_slow(t, left)
}

#[cold]
#[inline(never)]
fn take_slow(t: tls::Here, left: i64) -> bool {
    if t.busy() {
        // The recorder's own allocation: not sampled; the point waits for the program's.
        t.set_sample_left(left);
        return false;
    }
    let interval = INTERVAL.load(Ordering::Relaxed);
    let mut rng = t.sample_rng();
    if rng == 0 {
        // The thread's first allocation: start its countdown, then count this block.
        rng = seed(t);
        let first = draw(&mut rng, interval) - (t.sample_left() - left);
        t.set_sample_rng(rng);
        if first > 0 {
            t.set_sample_left(first);
            return false;
        }
    }
    t.set_sample_left(draw(&mut rng, interval));
    t.set_sample_rng(rng);
    true
}

/// A forked child's thread draws a stream of its own (its parent's continues in the
/// parent).
pub fn after_fork_child() {
    let t = tls::here();
    t.set_sample_rng(0);
    t.set_sample_left(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gaps have the exponential's mean: over 200,000 draws with T = 512 KiB, the mean
    /// is within 1% of T (the standard error of the mean is T / sqrt(n) = 0.22% of T).
    #[test]
    fn draws_are_exponential_with_the_interval_as_mean() {
        let t = 512 * 1024u64;
        let mut s = mix(42);
        let n = 200_000;
        let (mut sum, mut below) = (0f64, 0u64);
        for _ in 0..n {
            let g = draw(&mut s, t);
            assert!(g >= 1);
            sum += g as f64;
            if (g as u64) < t {
                below += 1;
            }
        }
        let mean = sum / n as f64;
        assert!((mean / t as f64 - 1.0).abs() < 0.01, "mean {mean}");
        // P(gap < T) = 1 - 1/e = 0.632.
        let frac = below as f64 / n as f64;
        assert!((frac - 0.632).abs() < 0.01, "P(gap < T) = {frac}");
    }
}
