//! Growth (logical leaks): sites whose live bytes keep rising through the run, memory that
//! is still reachable, so never "lost", but never given back either (caches without a
//! bound, registries, queues nobody drains).
//!
//! **Sampling, in bounded memory.** The part of the window where the program ran (from
//! its first heap event to its last RSS sample, taken at exit before the leak check, or
//! its last heap event when there is none later; so that start-up and the exit scan do
//! not dilute it; "the run" below) is cut into [`INTERVALS`] equal intervals.
//! For every site the analysis keeps the *floor* of each interval: the minimum of the
//! site's live bytes during it (updated on every release, in O(1)). Memory that is
//! allocated and released within an interval vanishes from the floor; memory that stays
//! lifts it. A site costs nothing until its floor is above zero, then 8 bytes per
//! interval: at most `INTERVALS * 8` bytes per site, whatever the length of the trace.
//!
//! **Judgement** ([`judge`]), on the floors from the site's first non-zero one to the end
//! of the window (at least [`MIN_POINTS`] of them), each at its interval's middle:
//!
//! * the rate is the Theil–Sen slope (bytes per second), with Sen's 95% interval;
//! * the confidence is Mann–Kendall's, that the floors rise (0.5: no trend);
//! * the site is **growing** when all of these hold:
//!   1. Sen's 95% lower bound of the slope is above zero (a significant rise);
//!   2. the floor rose by at least [`MIN_GROWTH_BYTES`] and by at least
//!      [`MIN_GROWTH_OF_PEAK`] of the window's peak heap (it matters);
//!   3. the floor first reaches its highest value in the last [`LATE_FRACTION`] of the
//!      run (it is still growing late: a site that filled up early and then stayed level
//!      is a bounded cache, not a leak);
//!   4. before that highest value, the floor never fell back by more than
//!      [`MAX_FALLBACK`] of its rise (it keeps what it gains: memory that comes and goes
//!      in waves longer than an interval fails here).
//!
//!   5. at the end of the window the site still holds more than its first floor: a
//!      site that gave back all it gained (a cache emptied at exit, memory all freed by
//!      the end) is not a logical leak, whatever its rise.
//!
//!   A partial drop *after* the highest floor is allowed.
//! * "grew over" is the time from the start of the first interval whose floor is above
//!   the first one, to the end of the interval where the floor first reached its highest
//!   value, as a fraction of the run (as defined above).

use memlens_common::stats::{mann_kendall_confidence, theil_sen};

/// Intervals the window is cut into.
pub const INTERVALS: usize = 64;
/// Floors needed to judge a site.
pub const MIN_POINTS: usize = 8;
/// Smallest rise of the floor that counts as growth, bytes.
pub const MIN_GROWTH_BYTES: u64 = 64 << 10;
/// Smallest rise of the floor that counts, as a fraction of the window's peak heap.
pub const MIN_GROWTH_OF_PEAK: f64 = 0.01;
/// The floor's highest value must come in this last fraction of the run.
pub const LATE_FRACTION: f64 = 0.25;
/// Largest fall of the floor, before its highest value, as a fraction of the rise.
pub const MAX_FALLBACK: f64 = 0.25;

/// The floors of one site: `values[i]` is the floor of interval `start + i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Floors {
    pub start: usize,
    pub values: Vec<u64>,
}

/// A growing site's figures (the site itself is kept by the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowthFit {
    /// Theil–Sen slope of the floors, bytes per second, and Sen's 95% interval.
    pub rate: f64,
    pub rate_low: f64,
    pub rate_high: f64,
    /// Mann–Kendall confidence that the floors rise, 0 to 1.
    pub confidence: f64,
    /// Floor at the start of the fit, and the highest floor.
    pub start_bytes: u64,
    pub max_bytes: u64,
    /// When the rise started and when the floor first reached its highest value (ns since
    /// the trace started), and that span as a fraction of the window.
    pub grew_from_ns: u64,
    pub grew_to_ns: u64,
    pub fraction: f64,
}

impl GrowthFit {
    /// How much the floor rose.
    pub fn growth_bytes(&self) -> u64 {
        self.max_bytes - self.start_bytes
    }
}

/// Judge one site's floors over the span `[from_ns, from_ns + span_ns]` cut into
/// `intervals`; `Some` if it is growing by the rules above. `live_end` is the site's live
/// bytes at the end of the window, for rule 5; `peak_heap` is the window's peak heap, for
/// rule 2.
pub fn judge(
    floors: &Floors,
    live_end: u64,
    from_ns: u64,
    span_ns: u64,
    intervals: usize,
    peak_heap: u64,
) -> Option<GrowthFit> {
    let y: Vec<f64> = floors.values.iter().map(|&v| v as f64).collect();
    let n = y.len();
    if n < MIN_POINTS || span_ns == 0 || intervals == 0 {
        return None;
    }
    let step = span_ns as f64 / intervals as f64;
    let start_of = |k: usize| from_ns + (k as f64 * step).round() as u64;
    let x: Vec<f64> = (0..n)
        .map(|i| ((floors.start + i) as f64 + 0.5) * step / 1e9)
        .collect();
    let first = floors.values[0];
    let (kmax, &max) = floors
        .values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
    let rise = max - first;
    // Rule 5.
    if live_end <= first {
        return None;
    }
    // Rule 2.
    let needed = (MIN_GROWTH_BYTES as f64).max(MIN_GROWTH_OF_PEAK * peak_heap as f64);
    if (rise as f64) < needed {
        return None;
    }
    // Rule 3.
    let kmax_end = floors.start + kmax + 1;
    if (kmax_end as f64) < (1.0 - LATE_FRACTION) * intervals as f64 {
        return None;
    }
    // Rule 4.
    let mut high = 0u64;
    let mut fallback = 0u64;
    for &v in &floors.values[..=kmax] {
        high = high.max(v);
        fallback = fallback.max(high - v);
    }
    if fallback as f64 > MAX_FALLBACK * rise as f64 {
        return None;
    }
    // Rule 1.
    let fit = theil_sen(&x, &y, 1.96);
    if fit.low <= 0.0 {
        return None;
    }
    let rise_start = floors.values.iter().position(|&v| v > first).unwrap_or(0);
    let grew_from_ns = start_of(floors.start + rise_start);
    let grew_to_ns = start_of(kmax_end);
    Some(GrowthFit {
        rate: fit.slope,
        rate_low: fit.low,
        rate_high: fit.high,
        confidence: mann_kendall_confidence(&y),
        start_bytes: first,
        max_bytes: max,
        grew_from_ns,
        grew_to_ns,
        fraction: (grew_to_ns - grew_from_ns) as f64 / span_ns as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const KIB: u64 = 1024;

    fn floors(start: usize, f: impl Fn(usize) -> u64) -> Floors {
        Floors {
            start,
            values: (start..INTERVALS).map(f).collect(),
        }
    }

    /// Judged with the site still holding its last floor at the end.
    fn growing(fl: &Floors) -> Option<GrowthFit> {
        let live_end = *fl.values.last().unwrap();
        judge(fl, live_end, 0, 64 * S, INTERVALS, 10 << 20)
    }

    #[test]
    fn a_cache_that_grows_all_run_is_growing_at_its_rate() {
        // +16 KiB per 1 s interval: 16 KiB/s, from the first interval to the last.
        let fl = floors(0, |k| k as u64 * 16 * KIB);
        let g = growing(&fl).expect("growing");
        assert!((g.rate - 16.0 * KIB as f64).abs() < 1e-6, "{g:?}");
        assert!(g.rate_low > 0.0 && g.confidence > 0.999);
        assert_eq!((g.start_bytes, g.max_bytes), (0, 63 * 16 * KIB));
        assert_eq!((g.grew_from_ns, g.grew_to_ns), (S, 64 * S));
        assert!((g.fraction - 63.0 / 64.0).abs() < 1e-9);
        // Half emptied in the last interval: still growing.
        let mut fl2 = fl.clone();
        *fl2.values.last_mut().unwrap() /= 2;
        let g2 = growing(&fl2).expect("growing");
        assert_eq!(g2.grew_to_ns, 63 * S);
        // Emptied at exit: all it gained was given back, not a logical leak.
        let full = *fl.values.last().unwrap();
        assert!(judge(&fl, full, 0, 64 * S, INTERVALS, 10 << 20).is_some());
        assert!(judge(&fl, 0, 0, 64 * S, INTERVALS, 10 << 20).is_none());
        let from_16k = floors(1, |k| k as u64 * 16 * KIB);
        assert!(judge(&from_16k, 16 * KIB, 0, 64 * S, INTERVALS, 10 << 20).is_none());
        assert!(judge(&from_16k, 16 * KIB + 1, 0, 64 * S, INTERVALS, 10 << 20).is_some());
        // Starting late, with a noisy floor.
        let fl3 = floors(32, |k| {
            (k as u64 - 31) * 40 * KIB + (k as u64 * 7919) % 9000
        });
        assert!(growing(&fl3).is_some());
    }

    #[test]
    fn waves_plateaus_and_small_or_short_rises_are_not() {
        // Waves 8 intervals long: up 100 KiB and back to 0.
        let waves = floors(0, |k| (k % 8) as u64 * 100 * KIB / 7 * u64::from(k % 8 < 7));
        assert!(growing(&waves).is_none());
        // Waves on a rising base that falls back more than a quarter of the rise.
        let base_waves = floors(0, |k| k as u64 * 4 * KIB + (k % 16) as u64 * 30 * KIB);
        assert!(growing(&base_waves).is_none());
        // Fills up in the first half, then stays level: a bounded cache.
        let plateau = floors(0, |k| k.min(30) as u64 * 50 * KIB);
        assert!(growing(&plateau).is_none());
        // Rises by 32 KiB in all: too little (< 64 KiB).
        let small = floors(0, |k| k as u64 * 512);
        assert!(growing(&small).is_none());
        // ... or less than 1% of the peak heap.
        let fl = floors(0, |k| k as u64 * 2 * KIB);
        let end = *fl.values.last().unwrap();
        assert!(judge(&fl, end, 0, 64 * S, INTERVALS, 1 << 30).is_none());
        assert!(judge(&fl, end, 0, 64 * S, INTERVALS, 1 << 20).is_some());
        // Fewer than 8 floors.
        assert!(growing(&floors(58, |k| k as u64 * 100 * KIB)).is_none());
        // Flat.
        assert!(growing(&floors(0, |_| 5 << 20)).is_none());
    }
}
