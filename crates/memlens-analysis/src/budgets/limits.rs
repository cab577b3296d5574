//! Judging the figures: limits, and the comparison with a baseline.

use super::*;

/// One limit of a budget file against its figure.
#[derive(Clone, Debug)]
pub struct LimitCheck {
    /// Index into [`Budgets::components`] and [`Measurement::components`].
    pub component: usize,
    pub limit: Limit,
    /// `None`: the trace cannot tell (a leak limit without an exit scan).
    pub value: Option<u64>,
}

impl LimitCheck {
    /// Over the limit, or unknown.
    pub fn exceeded(&self) -> bool {
        self.value.is_none_or(|v| v > self.limit.max)
    }
}

/// Every limit of every component, with its figure, in the file's order.
pub fn check(b: &Budgets, m: &Measurement) -> Vec<LimitCheck> {
    let mut out = Vec::new();
    for (i, c) in b.components.iter().enumerate() {
        let Some((_, f)) = m.components.get(i) else {
            continue;
        };
        for l in &c.limits {
            out.push(LimitCheck {
                component: i,
                limit: l.clone(),
                value: l.metric.value(f),
            });
        }
    }
    out
}

/// Figures of an earlier run: component -> metric key -> value.
pub type Baseline = BTreeMap<String, BTreeMap<String, u64>>;

/// One figure against the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineCheck {
    pub component: String,
    pub metric: &'static str,
    pub before: u64,
    pub after: u64,
    /// The highest figure that passes: `before` for exact metrics, `before` plus the
    /// tolerance for the others.
    pub allowed: u64,
}

impl BaselineCheck {
    pub fn regressed(&self) -> bool {
        self.after > self.allowed
    }
}

/// Every figure known both in the baseline and now, for the components of the
/// measurement (a component or figure the baseline does not have is not compared).
/// `tolerance` is a fraction (0.1 = 10%) applied to the metrics that are not exact.
pub fn compare(base: &Baseline, m: &Measurement, tolerance: f64) -> Vec<BaselineCheck> {
    let mut out = Vec::new();
    for (name, f) in &m.components {
        let Some(before) = base.get(name) else {
            continue;
        };
        for metric in METRICS {
            let (Some(&b), Some(a)) = (before.get(metric.key), metric.value(f)) else {
                continue;
            };
            let allowed = if metric.exact {
                b
            } else {
                (b as f64 * (1.0 + tolerance.max(0.0))).floor() as u64
            };
            out.push(BaselineCheck {
                component: name.clone(),
                metric: metric.key,
                before: b,
                after: a,
                allowed,
            });
        }
    }
    out
}
