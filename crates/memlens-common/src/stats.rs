//! Robust statistics for short series of (time, value) points: the Theil–Sen slope with
//! Sen's confidence interval, the Mann–Kendall confidence that a series rises, medians,
//! trailing minima. Used by `memlens watch` (the RSS trend) and by the report's growth
//! section (per-site live bytes over time). Everything is deterministic.

/// For each point at least `window` after the first, the minimum of the points in the
/// window that ends at it.
pub fn trailing_min(t: &[f64], v: &[f64], window: f64) -> (Vec<f64>, Vec<f64>) {
    let mut ot = Vec::new();
    let mut ov = Vec::new();
    let Some(&t0) = t.first() else {
        return (ot, ov);
    };
    // Monotone deque of indices with increasing values.
    let mut dq: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for i in 0..t.len() {
        while dq.back().is_some_and(|&j| v[j] >= v[i]) {
            dq.pop_back();
        }
        dq.push_back(i);
        while dq.front().is_some_and(|&j| t[j] < t[i] - window) {
            dq.pop_front();
        }
        if t[i] - t0 >= window {
            ot.push(t[i]);
            ov.push(v[dq[0]]);
        }
    }
    (ot, ov)
}

/// At most `max` indices of `0..n`, evenly spread, first and last included.
pub fn pick_evenly(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    (0..max)
        .map(|k| ((k as f64) * (n - 1) as f64 / (max - 1) as f64).round() as usize)
        .collect()
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A Theil–Sen line with Sen's confidence interval for the slope.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    pub slope: f64,
    pub low: f64,
    pub high: f64,
    pub intercept: f64,
}

/// Theil–Sen slope (median of pairwise slopes), intercept (median of `y - slope * x`),
/// and the rank-based confidence interval: with `N` pairwise slopes sorted and
/// `C = z * sqrt(n(n-1)(2n+5)/18)`, the bounds are the slopes of rank `(N - C)/2` and
/// `(N + C)/2 + 1` (Sen 1968; Gilbert 1987, §16.5).
pub fn theil_sen(x: &[f64], y: &[f64], z: f64) -> Fit {
    let n = x.len();
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[j] - x[i];
            if dx > 0.0 {
                slopes.push((y[j] - y[i]) / dx);
            }
        }
    }
    if slopes.is_empty() {
        let c = median(&mut y.to_vec());
        return Fit {
            slope: 0.0,
            low: 0.0,
            high: 0.0,
            intercept: c,
        };
    }
    let slope = median(&mut slopes); // sorts
    let nn = slopes.len() as f64;
    let nf = n as f64;
    let c = z * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let rank_low = ((nn - c) / 2.0).floor();
    let rank_high = ((nn + c) / 2.0).ceil() + 1.0;
    let at = |rank: f64| {
        let i = (rank - 1.0).clamp(0.0, nn - 1.0) as usize;
        slopes[i]
    };
    let mut resid: Vec<f64> = x.iter().zip(y).map(|(a, b)| b - slope * a).collect();
    Fit {
        slope,
        low: at(rank_low).min(slope),
        high: at(rank_high).max(slope),
        intercept: median(&mut resid),
    }
}

/// The Mann–Kendall test for a monotonic upward trend: the confidence, between 0 and 1,
/// that the series rises. `S` is the number of pairs `i < j` with `y[j] > y[i]` minus the
/// number with `y[j] < y[i]`; with `Var(S) = n(n-1)(2n+5)/18` (no tie correction) and the
/// continuity-corrected `Z = (S - sign(S)) / sqrt(Var(S))`, the result is `Phi(Z)`, the
/// standard normal distribution function. 0.5: no evidence either way; above 0.975: the
/// rise is significant at the 5% level (two-sided), which is when Sen's 95% interval of the
/// slope is above zero.
pub fn mann_kendall_confidence(y: &[f64]) -> f64 {
    let n = y.len();
    if n < 3 {
        return 0.5;
    }
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += match y[j].partial_cmp(&y[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let nf = n as f64;
    let var = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    let z = (s - s.signum()) as f64 / var.sqrt();
    normal_cdf(z)
}

/// The standard normal distribution function, to about 1e-7 (Abramowitz and Stegun
/// 7.1.26 for erf).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn theil_sen_on_a_line_with_outliers() {
        let x: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let mut y: Vec<f64> = x.iter().map(|&a| 3.0 * a + 7.0).collect();
        y[10] = 1e9;
        y[40] = -1e9;
        let f = theil_sen(&x, &y, 1.96);
        assert!((f.slope - 3.0).abs() < 1e-9, "{f:?}");
        assert!((f.intercept - 7.0).abs() < 1e-6, "{f:?}");
        assert!(f.low <= 3.0 && f.high >= 3.0);
    }

    #[test]
    fn sen_interval_covers_the_true_slope_and_narrows() {
        let mut noise = Noise(0x9e3779b97f4a7c15);
        let x: Vec<f64> = (0..40).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|&a| 2.0 * a + 10.0 * noise.next()).collect();
        let f = theil_sen(&x, &y, 1.96);
        assert!(f.low < 2.0 && 2.0 < f.high, "{f:?}");
        let x2: Vec<f64> = (0..120).map(|i| i as f64 / 3.0).collect();
        let y2: Vec<f64> = x2.iter().map(|&a| 2.0 * a + 10.0 * noise.next()).collect();
        let f2 = theil_sen(&x2, &y2, 1.96);
        assert!(f2.high - f2.low < f.high - f.low, "{f:?} {f2:?}");
    }

    #[test]
    fn trailing_min_and_picking() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let v = [5.0, 1.0, 9.0, 9.0, 2.0];
        let (ft, fv) = trailing_min(&t, &v, 2.0);
        assert_eq!(ft, vec![2.0, 3.0, 4.0]);
        assert_eq!(fv, vec![1.0, 1.0, 2.0]);
        assert_eq!(pick_evenly(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(pick_evenly(11, 3), vec![0, 5, 10]);
    }

    #[test]
    fn mann_kendall() {
        let up: Vec<f64> = (0..20).map(|i| i as f64).collect();
        assert!(mann_kendall_confidence(&up) > 0.9999);
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert!(mann_kendall_confidence(&down) < 1e-4);
        let flat = vec![5.0; 20];
        assert!((mann_kendall_confidence(&flat) - 0.5).abs() < 1e-6);
        let wave: Vec<f64> = (0..40).map(|i| [0.0, 1.0, 2.0, 1.0][i % 4]).collect();
        let c = mann_kendall_confidence(&wave);
        assert!((0.3..0.7).contains(&c), "{c}");
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(-1.0) - 0.158_655).abs() < 1e-5);
    }
}
