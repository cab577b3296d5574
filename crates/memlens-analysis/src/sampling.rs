//! The weight of a sampled block (`memlens run --sample`, `memlens-preload/src/sample.rs`).
//!
//! The recorder picks each byte with probability 1/T (T the trace's
//! `Header::sample_interval`), so a block of `s` bytes is in the trace with probability
//! `p = 1 - e^(-s/T)`, independently of the others. Counting each sampled block `1/p` times
//! (its bytes `s/p`) gives unbiased estimates of every sum over blocks: bytes and blocks
//! allocated, live at any moment, freed, per site (the Horvitz–Thompson estimator;
//! heapprofd and Go's pprof scale the same way). [`crate::replay::Replay`] applies the
//! weights as blocks enter the heap, so every figure built on the replay is an estimate.
//!
//! The relative standard error of a site's byte estimate, for `n` blocks of `s` bytes,
//! is `sqrt((1 - p) / (n p))` ([`relative_error`]). For blocks much smaller than T
//! (`p ≈ s/T`) it is `sqrt(T / total bytes)` whatever their size: 7% for 100 MiB at
//! T = 512 KiB, 2.2% for 1 GiB, 22% for 10 MiB.

/// The probability that a block of `size` bytes is sampled at mean interval `interval`.
pub fn probability(size: u64, interval: u64) -> f64 {
    if interval == 0 {
        return 1.0;
    }
    -(-(size.max(1) as f64) / interval as f64).exp_m1()
}

/// A sampled block's weight: how many bytes and how many blocks it stands for, as
/// integers. The bytes are rounded to the nearest; the count is rounded up or down at
/// random (`salt` picks, deterministically: the same block gets the same count in every
/// pass) with the odds that keep it unbiased. `interval` 0: the block itself.
pub fn weight(size: u64, interval: u64, salt: u64) -> (u64, u64) {
    if interval == 0 {
        return (size, 1);
    }
    let inv = 1.0 / probability(size, interval);
    let bytes = (size as f64 * inv).round() as u64;
    let whole = inv.floor();
    let frac = inv - whole;
    let u = (mix(salt) >> 11) as f64 / (1u64 << 53) as f64;
    let count = whole as u64 + u64::from(u < frac);
    (bytes, count)
}

/// The relative standard error of the bytes estimated for `blocks` blocks of `size` bytes
/// each (`sqrt((1 - p) / (blocks p))`).
pub fn relative_error(size: u64, blocks: u64, interval: u64) -> f64 {
    let p = probability(size, interval);
    ((1.0 - p) / (blocks.max(1) as f64 * p)).sqrt()
}

/// What the reports say of a sampled trace's figures: "estimated from samples (1 in ~512
/// KiB)". `None` for a trace of every block.
pub fn note(interval: u64) -> Option<String> {
    (interval != 0).then(|| format!("estimated from samples (1 in ~{})", interval_text(interval)))
}

/// The interval as people wrote it: `512 KiB`, `2 MiB`, `1000 B`, else as sizes print.
pub fn interval_text(interval: u64) -> String {
    const KIB: u64 = 1024;
    match interval {
        n if n >= KIB * KIB && n % (KIB * KIB) == 0 => format!("{} MiB", n / (KIB * KIB)),
        n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
        n if n < KIB => format!("{n} B"),
        n => memlens_common::units::human_bytes(n),
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        // Full tracking: the block itself.
        assert_eq!(weight(100, 0, 7), (100, 1));
        // A block much larger than T is almost surely sampled: it counts as itself.
        assert_eq!(weight(64 << 20, 512 << 10, 7), (64 << 20, 1));
        // A block of T bytes: p = 1 - 1/e, 1/p = 1.582; bytes T * 1.582.
        let (b, _) = weight(512 << 10, 512 << 10, 7);
        assert_eq!(b, (524_288f64 / (1.0 - (-1f64).exp())).round() as u64);
        // A 64-byte block stands for about T + 32 bytes and T/64 + 1/2 blocks.
        let (b, n) = weight(64, 512 << 10, 7);
        assert!((524_319..=524_321).contains(&b), "{b}");
        assert!(n == 8192 || n == 8193, "{n}");
    }

    #[test]
    fn counts_are_unbiased_on_average() {
        // 1/p = 1.582 for s = T: over many salts, the mean count is 1.582.
        let n = 100_000u64;
        let sum: u64 = (0..n).map(|i| weight(1 << 19, 1 << 19, i).1).sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 1.0 / (1.0 - (-1f64).exp())).abs() < 0.01, "{mean}");
    }

    #[test]
    fn note_names_the_interval() {
        assert_eq!(note(0), None);
        assert_eq!(
            note(512 << 10).as_deref(),
            Some("estimated from samples (1 in ~512 KiB)")
        );
    }
}
