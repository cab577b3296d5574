//! The samples of a watch, in bounded memory.
//!
//! A watch may run for days. The history keeps every sample until it holds `2 * cap`
//! points, then merges neighbours pairwise, and from then on merges each 2, 4, 8...
//! new samples into one point before storing it. Each point keeps, per metric, the
//! minimum, maximum and sum of the samples it covers, so the floor (minimum) the trend is
//! computed on, the peaks, and the mean are exact at any resolution. The raw samples go
//! to the CSV file as they are taken.

use crate::proc::MemSample;
use crate::trend::{analyze, Trend, TrendConfig};

/// The memory figures memlens follows, in [`MemSample`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    Rss,
    Pss,
    Uss,
    Swap,
    Anon,
    File,
}

pub const METRICS: usize = 6;

impl Metric {
    pub const ALL: [Metric; METRICS] = [
        Metric::Rss,
        Metric::Pss,
        Metric::Uss,
        Metric::Swap,
        Metric::Anon,
        Metric::File,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Rss => "rss",
            Metric::Pss => "pss",
            Metric::Uss => "uss",
            Metric::Swap => "swap",
            Metric::Anon => "anon",
            Metric::File => "file",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn get(self, s: &MemSample) -> Option<u64> {
        match self {
            Metric::Rss => Some(s.rss),
            Metric::Pss => s.pss,
            Metric::Uss => s.uss,
            Metric::Swap => s.swap,
            Metric::Anon => s.anon,
            Metric::File => s.file,
        }
    }
}

/// Minimum, maximum and sum of one metric over the samples of a point; NaN if the metric
/// was unknown in any of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agg {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

impl Agg {
    fn of(v: Option<u64>) -> Agg {
        let x = v.map_or(f64::NAN, |v| v as f64);
        Agg {
            min: x,
            max: x,
            sum: x,
        }
    }

    fn merge(&mut self, o: &Agg) {
        if self.sum.is_nan() || o.sum.is_nan() {
            *self = Agg::of(None);
        } else {
            self.min = self.min.min(o.min);
            self.max = self.max.max(o.max);
            self.sum += o.sum;
        }
    }

    pub fn known(&self) -> bool {
        !self.sum.is_nan()
    }
}

/// One stored point: one sample, or several merged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Time of the first and last sample covered, seconds since the watch started.
    pub t0: f64,
    pub t1: f64,
    /// Samples covered.
    pub n: u32,
    pub m: [Agg; METRICS],
    /// Largest number of processes summed in one of the samples.
    pub processes: u32,
}

impl Point {
    pub fn of(t: f64, s: &MemSample, processes: u32) -> Point {
        Point {
            t0: t,
            t1: t,
            n: 1,
            m: Metric::ALL.map(|k| Agg::of(k.get(s))),
            processes,
        }
    }

    /// The point's time: the middle of the samples it covers.
    pub fn t(&self) -> f64 {
        (self.t0 + self.t1) / 2.0
    }

    pub fn mean(&self, k: Metric) -> f64 {
        self.m[k.index()].sum / self.n as f64
    }

    pub fn min(&self, k: Metric) -> f64 {
        self.m[k.index()].min
    }

    pub fn max(&self, k: Metric) -> f64 {
        self.m[k.index()].max
    }

    fn merge(&mut self, o: &Point) {
        self.t0 = self.t0.min(o.t0);
        self.t1 = self.t1.max(o.t1);
        self.n += o.n;
        for (a, b) in self.m.iter_mut().zip(o.m.iter()) {
            a.merge(b);
        }
        self.processes = self.processes.max(o.processes);
    }
}

/// Bounded history of a watch.
#[derive(Clone, Debug)]
pub struct History {
    points: Vec<Point>,
    pending: Option<Point>,
    /// Samples per stored point (a power of two).
    group: u32,
    cap: usize,
    samples: u64,
}

impl History {
    /// A history that keeps between `cap` and `2 * cap` points.
    pub fn new(cap: usize) -> History {
        History {
            // Grown as needed: `memlens top` keeps one history per process.
            points: Vec::new(),
            pending: None,
            group: 1,
            cap: cap.max(1),
            samples: 0,
        }
    }

    pub fn push(&mut self, t: f64, s: &MemSample, processes: u32) {
        self.samples += 1;
        let p = Point::of(t, s, processes);
        let full = match &mut self.pending {
            Some(q) => {
                q.merge(&p);
                q.n >= self.group
            }
            None => {
                self.pending = Some(p);
                p.n >= self.group
            }
        };
        if full {
            let q = self.pending.take().expect("pending point");
            self.points.push(q);
            if self.points.len() >= 2 * self.cap {
                self.halve();
            }
        }
    }

    fn halve(&mut self) {
        let old = std::mem::take(&mut self.points);
        for pair in old.chunks(2) {
            let mut p = pair[0];
            if let Some(q) = pair.get(1) {
                p.merge(q);
            }
            self.points.push(p);
        }
        self.group *= 2;
    }

    /// Every point, oldest first, the partial newest one included.
    pub fn points(&self) -> Vec<Point> {
        let mut v = self.points.clone();
        v.extend(self.pending);
        v
    }

    /// Samples pushed so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples merged into each stored point (1 until the history first fills).
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The trend of `metric`, on the floor (minimum) of each point, with times counted
    /// from `since` (a process first seen later in the watch has its own warm-up), for
    /// the points from `since` up to `until` (a part of the watch: before a restart).
    pub fn trend_between(
        &self,
        metric: Metric,
        cfg: &TrendConfig,
        since: f64,
        until: f64,
    ) -> Trend {
        let (t, v): (Vec<f64>, Vec<f64>) = self
            .points()
            .iter()
            .filter(|p| p.m[metric.index()].known() && p.t0 >= since && p.t1 <= until)
            .map(|p| (p.t() - since, p.min(metric)))
            .unzip();
        let mut tr = analyze(&t, &v, cfg);
        // Back to the watch's own clock (the warm-up stays a length).
        tr.fit_start += since;
        tr.fit_end += since;
        tr.intercept -= tr.slope * since;
        tr
    }

    /// The trend of `metric` over the whole history, as `memlens watch` judges it.
    pub fn trend(&self, metric: Metric, cfg: &TrendConfig) -> Trend {
        self.trend_between(metric, cfg, 0.0, f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rss: u64) -> MemSample {
        MemSample {
            rss,
            pss: Some(rss / 2),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_everything_until_full() {
        let mut h = History::new(8);
        for i in 0..10 {
            h.push(i as f64, &s(i * 10), 1);
        }
        let p = h.points();
        assert_eq!(p.len(), 10);
        assert_eq!(p[3].mean(Metric::Rss), 30.0);
        assert!(!p[3].m[Metric::Uss.index()].known());
    }

    #[test]
    fn bounded_and_exact_extremes() {
        let mut h = History::new(16);
        let n = 10_000u64;
        for i in 0..n {
            // A spike at 5000; otherwise the value is the index.
            let v = if i == 5000 { 1_000_000 } else { i };
            h.push(i as f64, &s(v), 1 + (i == 7000) as u32);
        }
        let p = h.points();
        assert!(p.len() <= 33, "{}", p.len());
        assert_eq!(p.iter().map(|q| q.n as u64).sum::<u64>(), n);
        let max = p.iter().map(|q| q.max(Metric::Rss)).fold(0.0, f64::max);
        assert_eq!(max, 1_000_000.0);
        assert_eq!(p[0].min(Metric::Rss), 0.0);
        assert_eq!(p.last().unwrap().max(Metric::Rss), (n - 1) as f64);
        assert_eq!(p.iter().map(|q| q.processes).max(), Some(2));
        // Times stay ordered and points stay contiguous.
        for w in p.windows(2) {
            assert!(w[0].t1 < w[1].t0);
        }
        let total: f64 = p.iter().map(|q| q.m[0].sum).sum();
        let exact: f64 = (0..n).map(|i| i as f64).sum::<f64>() - 5000.0 + 1_000_000.0;
        assert_eq!(total, exact);
    }
}
