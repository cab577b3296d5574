//! The memory-over-time chart, as a self-contained SVG file (in the spirit of
//! `mprof plot`): RSS, PSS and USS against time, the min–max band where samples were
//! merged, the warm-up shaded, the fitted trend of the floor, the peak, and the budget
//! and limit lines when they fall inside the chart. This module says what to draw;
//! `memlens_common::chart` draws it, as it draws `memlens plot`'s.

use crate::history::{Metric, Point};
use crate::trend::{Trend, Verdict};
use memlens_common::chart::{Chart, Fit, Legend, Marker, Series, TimeAxis};
use memlens_common::units::{human_bytes, human_rate};

/// What to draw besides the series.
#[derive(Clone, Debug, Default)]
pub struct PlotInfo {
    pub title: String,
    pub trend: Option<Trend>,
    /// The metric the trend was computed on.
    pub trend_metric: Option<Metric>,
    /// Horizontal lines: (bytes, label).
    pub lines: Vec<(u64, String)>,
}

const COLORS: [(Metric, &str, &str); 3] = [
    (Metric::Rss, "#1f77b4", ""),
    (Metric::Pss, "#ff7f0e", "6 3"),
    (Metric::Uss, "#2ca02c", "2 3"),
];

/// Render the chart. `points` come from [`crate::history::History::points`].
pub fn svg(points: &[Point], info: &PlotInfo) -> String {
    chart(points, info).svg()
}

/// The chart, described for `memlens_common::chart`'s renderer: RSS, PSS and USS (a band
/// where RSS samples were merged), the warm-up, the trend, the lines, the peak.
fn chart(points: &[Point], info: &PlotInfo) -> Chart {
    let trend_metric = info.trend_metric.unwrap_or(Metric::Rss);
    let subtitle = info.trend.as_ref().map(|tr| {
        let metric = trend_metric.name();
        match tr.verdict {
            Verdict::Growing => format!(
                "{metric}: growing at {} (95% CI {} .. {})",
                human_rate(tr.slope),
                human_rate(tr.slope_low),
                human_rate(tr.slope_high)
            ),
            v => format!("{metric}: {} ({})", v.name(), tr.reason),
        }
    });
    let t_max = points
        .last()
        .map_or(1.0, |p| p.t1)
        .max(points.first().map_or(0.0, |p| p.t0) + 1e-3);
    let shown: Vec<Metric> = COLORS
        .iter()
        .map(|c| c.0)
        .filter(|&m| points.iter().any(|p| p.m[m.index()].known()))
        .collect();
    let y_max = points
        .iter()
        .flat_map(|p| shown.iter().map(move |&m| p.max(m)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let series = COLORS
        .iter()
        .filter(|c| shown.contains(&c.0))
        .map(|&(m, color, dash)| {
            let known: Vec<&Point> = points.iter().filter(|p| p.m[m.index()].known()).collect();
            let band = if m == Metric::Rss && known.iter().any(|p| p.n > 1) {
                known.iter().map(|p| (p.t(), p.min(m), p.max(m))).collect()
            } else {
                Vec::new()
            };
            Series {
                id: m.name().to_string(),
                label: m.name().to_string(),
                color,
                dash,
                width: 1.5,
                points: known.iter().map(|p| (p.t(), p.mean(m))).collect(),
                band,
            }
        })
        .collect();
    // The trend: the floor's slope, drawn through the middle of the samples it was
    // fitted on (the floor itself lies under them).
    let fit = info.trend.as_ref().filter(|t| t.points > 0).map(|tr| {
        let m = trend_metric;
        let mut offsets: Vec<f64> = points
            .iter()
            .filter(|p| p.t() >= tr.warmup && p.m[m.index()].known())
            .map(|p| p.mean(m) - tr.slope * p.t())
            .collect();
        offsets.sort_by(f64::total_cmp);
        Fit {
            from: tr.fit_start,
            to: tr.fit_end,
            intercept: offsets
                .get(offsets.len() / 2)
                .copied()
                .unwrap_or(tr.intercept),
            slope: tr.slope,
            label: format!("trend ({})", m.name()),
        }
    });
    let marker = points
        .iter()
        .filter(|p| p.m[0].known())
        .max_by(|a, b| a.max(Metric::Rss).total_cmp(&b.max(Metric::Rss)))
        .map(|p| Marker {
            t: p.t(),
            v: p.max(Metric::Rss),
            label: format!("peak {}", human_bytes(p.max(Metric::Rss) as u64)),
            color: COLORS[0].1,
        });
    Chart {
        width: 960.0,
        plot_height: 424.0,
        left: 80.0,
        title: info.title.clone(),
        subtitle,
        time: TimeAxis::UpTo(t_max),
        time_label: "time".into(),
        y_max,
        shade: info
            .trend
            .as_ref()
            .filter(|tr| tr.warmup > 0.0)
            .map(|tr| (tr.warmup, "warm-up".to_string())),
        series,
        fit,
        levels: info.lines.clone(),
        marker,
        legend: Legend::TopRight,
    }
}

const GROWER_COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// `memlens top`'s chart: the RSS of several processes over time (the top growers), one
/// line each `(label, points)`, labelled below the chart (command lines are long).
pub fn growers_svg(
    title: &str,
    subtitle: Option<String>,
    lines: &[(String, Vec<Point>)],
) -> String {
    let m = Metric::Rss;
    let t_max = lines
        .iter()
        .filter_map(|(_, p)| p.last().map(|q| q.t1))
        .fold(1e-3, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.max(m)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let series = lines
        .iter()
        .enumerate()
        .map(|(i, (label, pts))| Series {
            id: format!("p{i}"),
            label: label.clone(),
            color: GROWER_COLORS[i % GROWER_COLORS.len()],
            dash: "",
            width: 1.5,
            points: pts
                .iter()
                .filter(|p| p.m[m.index()].known())
                .map(|p| (p.t(), p.mean(m)))
                .collect(),
            band: Vec::new(),
        })
        .collect();
    Chart {
        width: 960.0,
        plot_height: 424.0,
        left: 80.0,
        title: title.to_string(),
        subtitle,
        time: TimeAxis::UpTo(t_max),
        time_label: "time".into(),
        y_max,
        shade: None,
        series,
        fit: None,
        levels: Vec::new(),
        marker: None,
        legend: Legend::Below,
    }
    .svg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::proc::MemSample;
    use crate::trend::{analyze, TrendConfig};

    #[test]
    fn draws_a_chart() {
        let mut h = History::new(64);
        for i in 0..300 {
            let rss = (10 << 20) + i * 100_000;
            let s = MemSample {
                rss,
                pss: Some(rss - 1000),
                uss: Some(rss / 2),
                ..Default::default()
            };
            h.push(i as f64 * 0.5, &s, 1);
        }
        let pts = h.points();
        let t: Vec<f64> = pts.iter().map(|p| p.t()).collect();
        let v: Vec<f64> = pts.iter().map(|p| p.min(Metric::Rss)).collect();
        let tr = analyze(&t, &v, &TrendConfig::default());
        let out = svg(
            &pts,
            &PlotInfo {
                title: "pid 1 <a & b>".into(),
                trend: Some(tr),
                trend_metric: Some(Metric::Rss),
                lines: vec![(60 << 20, "--max-rss 60 MiB".into())],
            },
        );
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert!(out.contains("pid 1 &lt;a &amp; b&gt;"));
        assert!(out.contains("rss: growing at +"));
        assert_eq!(out.matches("<polyline").count(), 3);
        assert!(out.contains("<polygon"), "merged points draw a band");
        assert!(out.contains("--max-rss 60 MiB"));
        assert!(out.contains("warm-up"));
        assert!(out.contains("time (s)"));
        assert!(out.contains("peak 38.51 MiB"));

        let two = growers_svg(
            "memlens top",
            Some("2 growing".into()),
            &[("pid 1 ./a".into(), pts.clone()), ("pid 2 ./b".into(), pts)],
        );
        assert_eq!(two.matches("<polyline").count(), 2);
        assert!(two.contains("pid 2 ./b") && two.contains("2 growing"));
    }
}
