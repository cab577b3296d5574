//! Is the memory growing? A robust trend with a confidence bound, and a verdict.
//!
//! The trend is computed on the **floor** of the series, not on the raw samples: after
//! the warm-up, each point is replaced by the minimum over the window of `1/8` of the
//! watched time that ends at it. Memory that is allocated and freed again in waves
//! (caches flushed, garbage collected, requests served), or a one-off spike, lifts the
//! samples but not the floor; a leak lifts the floor. A line keeps its slope under this
//! transformation, so the rate of a steady leak is measured exactly. Cycles longer than
//! the window show through; they need a longer watch to be judged.
//!
//! On the floor, the slope is the Theil–Sen estimate (the median of the slopes between
//! all pairs of points), which ignores up to ~29% of outlying points, with the
//! distribution-free 95% confidence interval of Sen (1968) from the ranks of the pairwise
//! slopes. Everything is deterministic.
//!
//! Verdict, with `T` the watched time after the warm-up and `threshold` the growth that
//! matters, `max(1 MiB, 2% of the floor's median)`:
//! * **growing**: the lower bound is above zero and the growth over `T` reaches the
//!   threshold;
//! * **inconclusive** if the lower bound is above zero but the growth is below the
//!   threshold (rising slightly: watch longer);
//! * **stable**: otherwise, if even the upper bound grows less than the threshold over
//!   `T` (shrinking memory is stable);
//! * **inconclusive**: anything else (too few samples, or too noisy).

use memlens_common::stats::median;
pub use memlens_common::stats::{pick_evenly, theil_sen, trailing_min, Fit};

/// Tuning of [`analyze`]; the defaults are documented above.
#[derive(Clone, Debug)]
pub struct TrendConfig {
    /// Seconds ignored at the start; `None`: 10% of the watched time, at most 5 minutes.
    pub warmup: Option<f64>,
    /// Floor window as a fraction of the watched time after the warm-up.
    pub floor_fraction: f64,
    /// Points of the floor used for the slope (evenly picked).
    pub max_points: usize,
    /// Normal quantile of the confidence interval (1.96: 95%, two-sided).
    pub z: f64,
    pub min_growth_bytes: f64,
    pub min_growth_fraction: f64,
    /// Samples needed after the warm-up.
    pub min_samples: usize,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            warmup: None,
            floor_fraction: 1.0 / 8.0,
            max_points: 120,
            z: 1.96,
            min_growth_bytes: 1024.0 * 1024.0,
            min_growth_fraction: 0.02,
            min_samples: 10,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Growing,
    Stable,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Growing => "growing",
            Verdict::Stable => "stable",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The result of [`analyze`]. Rates are bytes per second; times seconds since the watch
/// started.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    pub verdict: Verdict,
    /// Why, in a few words (for the report).
    pub reason: String,
    /// Theil–Sen slope of the floor and its confidence interval. 0 when not computed.
    pub slope: f64,
    pub slope_low: f64,
    pub slope_high: f64,
    /// The fitted floor is `intercept + slope * t`.
    pub intercept: f64,
    /// Warm-up actually used.
    pub warmup: f64,
    /// Watched time after the warm-up.
    pub span: f64,
    /// Floor window.
    pub window: f64,
    /// Time range of the floor points the line was fitted on.
    pub fit_start: f64,
    pub fit_end: f64,
    /// Samples (history points) after the warm-up, and floor points fitted.
    pub samples: usize,
    pub points: usize,
    /// Median of the floor, and the growth over `span` that counts as material.
    pub level: f64,
    pub threshold: f64,
}

impl Trend {
    /// Growth over the watched time after the warm-up, in bytes.
    pub fn growth(&self) -> f64 {
        self.slope * self.span
    }
}

/// Warm-up used when none is given: 10% of the watched time, at most 5 minutes.
pub fn default_warmup(elapsed: f64) -> f64 {
    (0.1 * elapsed).min(300.0)
}

/// Judge the series `(t[i], v[i])`: times in seconds since the watch started (increasing),
/// values in bytes (for merged history points, the minimum of the samples merged).
pub fn analyze(t: &[f64], v: &[f64], cfg: &TrendConfig) -> Trend {
    let elapsed = t.last().copied().unwrap_or(0.0);
    let warmup = cfg
        .warmup
        .unwrap_or_else(|| default_warmup(elapsed))
        .min(elapsed);
    let first = t.partition_point(|&x| x < warmup);
    let (t, v) = (&t[first..], &v[first..]);
    let span = match (t.first(), t.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let mut out = Trend {
        verdict: Verdict::Inconclusive,
        reason: String::new(),
        slope: 0.0,
        slope_low: 0.0,
        slope_high: 0.0,
        intercept: 0.0,
        warmup,
        span,
        window: 0.0,
        fit_start: 0.0,
        fit_end: 0.0,
        samples: t.len(),
        points: 0,
        level: 0.0,
        threshold: cfg.min_growth_bytes,
    };
    if t.len() < cfg.min_samples || span <= 0.0 {
        out.reason = format!(
            "too few samples after the warm-up ({} of {} needed)",
            t.len(),
            cfg.min_samples
        );
        return out;
    }
    let window = span * cfg.floor_fraction;
    out.window = window;
    let (ft, fv) = trailing_min(t, v, window);
    let idx = pick_evenly(ft.len(), cfg.max_points);
    let x: Vec<f64> = idx.iter().map(|&i| ft[i]).collect();
    let y: Vec<f64> = idx.iter().map(|&i| fv[i]).collect();
    out.points = x.len();
    if x.len() < 3 || x[x.len() - 1] <= x[0] {
        out.reason = "too few samples after the warm-up".into();
        return out;
    }
    out.fit_start = x[0];
    out.fit_end = x[x.len() - 1];
    let fit = theil_sen(&x, &y, cfg.z);
    out.slope = fit.slope;
    out.slope_low = fit.low;
    out.slope_high = fit.high;
    out.intercept = fit.intercept;
    out.level = median(&mut y.clone());
    out.threshold = cfg
        .min_growth_bytes
        .max(cfg.min_growth_fraction * out.level);
    let growth = |s: f64| s * span;
    if fit.low > 0.0 && growth(fit.slope) >= out.threshold {
        out.verdict = Verdict::Growing;
        out.reason = "the floor rises steadily".into();
    } else if fit.low > 0.0 {
        out.reason = "rising, but by less than the threshold so far".into();
    } else if growth(fit.high) < out.threshold {
        out.verdict = Verdict::Stable;
        out.reason = if fit.high < 0.0 {
            "the floor is falling".into()
        } else {
            "the floor stays level".into()
        };
    } else {
        out.reason = "too noisy to tell growth from no growth so far".into();
    }
    out
}

/// Seconds until a value now at `current` reaches `limit` at `slope` bytes per second;
/// `Some(0)` if already there, `None` if it never will at this rate.
pub fn time_to_limit(current: f64, limit: f64, slope: f64) -> Option<f64> {
    if current >= limit {
        return Some(0.0);
    }
    (slope > 0.0).then(|| (limit - current) / slope)
}

/// What a restart says about the growth: the trend before it and after it compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartVerdict {
    /// It grows again after the restart: a leak, confirmed.
    Confirmed,
    /// It grew before and is flat after: the growth was a warm-up (caches filling).
    WarmUp,
    /// It did not grow before the restart: nothing to confirm.
    NotGrowing,
    /// Too little known after the restart (or too noisy): watch longer.
    Inconclusive,
}

impl RestartVerdict {
    pub fn name(self) -> &'static str {
        match self {
            RestartVerdict::Confirmed => "confirmed_leak",
            RestartVerdict::WarmUp => "warm_up",
            RestartVerdict::NotGrowing => "not_growing",
            RestartVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// Compare the trend before a restart with the trend after it, and say it in one
/// sentence (rates per hour).
pub fn compare_restart(before: &Trend, after: &Trend) -> (RestartVerdict, String) {
    use memlens_common::units::human_rate;
    let b = human_rate(before.slope);
    let a = human_rate(after.slope);
    match (before.verdict, after.verdict) {
        (_, Verdict::Growing) if before.verdict == Verdict::Growing => (
            RestartVerdict::Confirmed,
            format!("grows again after the restart at {a} (before: {b}): confirmed leak"),
        ),
        (_, Verdict::Growing) => (
            RestartVerdict::Confirmed,
            format!(
                "grows after the restart at {a} (before: {b}, {}): a leak",
                before.verdict.name()
            ),
        ),
        (Verdict::Growing, Verdict::Stable) => (
            RestartVerdict::WarmUp,
            format!(
                "flat after the restart ({a}; before: {b}): the growth was a warm-up, not a leak"
            ),
        ),
        (Verdict::Growing, Verdict::Inconclusive) => (
            RestartVerdict::Inconclusive,
            format!(
                "after the restart: {a}, {} (before: {b}); watch longer to confirm",
                after.reason
            ),
        ),
        _ => (
            RestartVerdict::NotGrowing,
            format!(
                "{} before the restart ({b}), {} after ({a}): nothing to confirm",
                before.verdict.name(),
                after.verdict.name()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// A deterministic noise source (xorshift), values in [-1, 1).
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn series(n: usize, dt: f64, mut f: impl FnMut(f64) -> f64) -> (Vec<f64>, Vec<f64>) {
        let t: Vec<f64> = (0..n).map(|i| i as f64 * dt).collect();
        let v = t.iter().map(|&x| f(x)).collect();
        (t, v)
    }

    fn judge(t: &[f64], v: &[f64]) -> Trend {
        analyze(t, v, &TrendConfig::default())
    }

    #[test]
    fn steady_leak_is_growing_at_its_rate() {
        // 20 MiB/s in 2 MiB steps every 100 ms, sampled every 50 ms, plus page noise.
        let mut noise = Noise(7);
        let (t, v) = series(80, 0.05, |x| {
            30.0 * MIB + 2.0 * MIB * (x / 0.1).floor() + 40960.0 * noise.next().abs()
        });
        let tr = judge(&t, &v);
        assert_eq!(tr.verdict, Verdict::Growing, "{tr:?}");
        let rel = (tr.slope - 20.0 * MIB).abs() / (20.0 * MIB);
        assert!(rel < 0.05, "{tr:?}");
        assert!(tr.slope_low > 0.0 && tr.slope_high >= tr.slope);
    }

    #[test]
    fn slow_leak_under_garbage_collection_sawtooth() {
        // A GC heap: sawtooth of 50 MiB every 30 s whose floor rises 10 MiB/h, for 2 h.
        let (t, v) = series(7200, 1.0, |x| {
            200.0 * MIB + 10.0 * MIB * x / 3600.0 + 50.0 * MIB * ((x % 30.0) / 30.0)
        });
        let tr = judge(&t, &v);
        assert_eq!(tr.verdict, Verdict::Growing, "{tr:?}");
        let per_hour = tr.slope * 3600.0 / MIB;
        assert!((per_hour - 10.0).abs() < 1.0, "{per_hour}");
    }

    #[test]
    fn waves_are_stable() {
        // Allocate 30 MiB over 150 ms, hold 100 ms, free, rest 200 ms; sampled every 50 ms
        // for 4 s, with page noise; try several phases.
        for phase in [0.0, 0.1, 0.23, 0.37] {
            let mut noise = Noise(11);
            let (t, v) = series(80, 0.05, |x| {
                let p = (x + phase) % 0.45;
                let wave = if p < 0.15 {
                    30.0 * MIB * p / 0.15
                } else if p < 0.25 {
                    30.0 * MIB
                } else {
                    0.0
                };
                2.0 * MIB + wave + 8192.0 * noise.next().abs()
            });
            let tr = judge(&t, &v);
            assert_eq!(tr.verdict, Verdict::Stable, "phase {phase}: {tr:?}");
        }
    }

    #[test]
    fn one_spike_is_not_growth() {
        for at in [1.0, 2.0, 3.3] {
            let (t, v) = series(80, 0.05, |x| {
                if x >= at && x < at + 0.3 {
                    250.0 * MIB
                } else {
                    5.0 * MIB
                }
            });
            let tr = judge(&t, &v);
            assert_ne!(tr.verdict, Verdict::Growing, "spike at {at}: {tr:?}");
        }
        // A spike of one sample, anywhere, leaves a flat series stable.
        let (t, mut v) = series(100, 1.0, |_| 50.0 * MIB);
        v[97] = 900.0 * MIB;
        assert_eq!(judge(&t, &v).verdict, Verdict::Stable);
    }

    #[test]
    fn flat_noisy_series_is_stable_and_falling_is_stable() {
        let mut noise = Noise(3);
        let (t, v) = series(600, 1.0, |_| 100.0 * MIB + 0.2 * MIB * noise.next());
        assert_eq!(judge(&t, &v).verdict, Verdict::Stable);
        let (t, v) = series(600, 1.0, |x| 100.0 * MIB - 0.05 * MIB * x);
        let tr = judge(&t, &v);
        assert_eq!(tr.verdict, Verdict::Stable);
        assert!(tr.slope < 0.0);
    }

    #[test]
    fn small_rise_and_short_watch_are_inconclusive() {
        // Rises 0.5 MiB in 10 minutes: real but below the 1 MiB threshold.
        let (t, v) = series(600, 1.0, |x| 20.0 * MIB + 0.5 * MIB * x / 600.0);
        let tr = judge(&t, &v);
        assert_eq!(tr.verdict, Verdict::Inconclusive, "{tr:?}");
        assert!(tr.reason.contains("less than the threshold"), "{tr:?}");
        let (t, v) = series(5, 1.0, |x| x * MIB);
        let tr = judge(&t, &v);
        assert_eq!(tr.verdict, Verdict::Inconclusive);
        assert!(tr.reason.contains("too few samples"));
        assert_eq!(judge(&[], &[]).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn warm_up_is_ignored() {
        // Starts by loading 500 MiB over 30 s, then flat for 80 s.
        let (t, v) = series(110, 1.0, |x| 500.0 * MIB * (x / 30.0).min(1.0));
        let tr = judge(&t, &v);
        assert!((tr.warmup - 10.9).abs() < 1e-9, "{tr:?}");
        let with = |w: f64| {
            let cfg = TrendConfig {
                warmup: Some(w),
                ..Default::default()
            };
            analyze(&t, &v, &cfg)
        };
        assert_eq!(with(30.0).verdict, Verdict::Stable);
        assert_eq!(with(30.0).warmup, 30.0);
        assert_ne!(with(0.0).verdict, Verdict::Stable);
    }

    #[test]
    fn uneven_sampling_uses_real_times() {
        // Samples late by up to 40% of the interval: the rate is still exact.
        let mut noise = Noise(5);
        let mut t = Vec::new();
        let mut x = 0.0;
        for _ in 0..200 {
            t.push(x);
            x += 1.0 + 0.4 * noise.next().abs();
        }
        let v: Vec<f64> = t.iter().map(|&a| 10.0 * MIB + 4096.0 * a).collect();
        let tr = judge(&t, &v);
        assert!((tr.slope - 4096.0).abs() < 0.01 * 4096.0, "{tr:?}");
    }

    #[test]
    fn restart_comparisons() {
        let grow = |mib_h: f64| {
            let (t, v) = series(200, 1.0, |x| 10.0 * MIB + mib_h * MIB * x / 3600.0);
            judge(&t, &v)
        };
        let flat = grow(0.0);
        let (v, s) = compare_restart(&grow(43.0 * 1024.0), &grow(41.0 * 1024.0));
        assert_eq!(v, RestartVerdict::Confirmed);
        assert_eq!(
            s,
            "grows again after the restart at +41.00 GiB/h (before: +43.00 GiB/h): confirmed leak"
        );
        let (v, s) = compare_restart(&grow(43.0 * 1024.0), &flat);
        assert_eq!(v, RestartVerdict::WarmUp);
        assert!(
            s.starts_with(
                "flat after the restart (+0 B/h; before: +43.00 GiB/h): the growth was a warm-up"
            ),
            "{s}"
        );
        assert_eq!(compare_restart(&flat, &flat).0, RestartVerdict::NotGrowing);
        let (t, v) = series(3, 1.0, |_| MIB);
        assert_eq!(
            compare_restart(&grow(43.0 * 1024.0), &judge(&t, &v)).0,
            RestartVerdict::Inconclusive
        );
    }

    #[test]
    fn limits() {
        assert_eq!(time_to_limit(10.0, 100.0, 3.0), Some(30.0));
        assert_eq!(time_to_limit(100.0, 100.0, 0.0), Some(0.0));
        assert_eq!(time_to_limit(10.0, 100.0, 0.0), None);
        assert_eq!(time_to_limit(10.0, 100.0, -1.0), None);
    }
}
