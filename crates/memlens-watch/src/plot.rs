//! The memory-over-time chart, as a self-contained SVG file (in the spirit of
//! `mprof plot`): RSS, PSS and USS against time, the min–max band where samples were
//! merged, the warm-up shaded, the fitted trend of the floor, the peak, and the budget
//! and limit lines when they fall inside the chart.

use crate::history::{Metric, Point};
use crate::trend::{Trend, Verdict};
use memlens_common::chart::{byte_grid, esc, nice_axis, time_grid, time_unit};
use memlens_common::units::human_bytes;
use std::fmt::Write as _;

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

const W: f64 = 960.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 52.0;

const COLORS: [(Metric, &str, &str); 3] = [
    (Metric::Rss, "#1f77b4", ""),
    (Metric::Pss, "#ff7f0e", "6 3"),
    (Metric::Uss, "#2ca02c", "2 3"),
];

/// Render the chart. `points` come from [`crate::history::History::points`].
pub fn svg(points: &[Point], info: &PlotInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        esc(&info.title)
    );
    if let Some(tr) = &info.trend {
        let metric = info.trend_metric.map_or("rss", |m| m.name());
        let sub = match tr.verdict {
            Verdict::Growing => format!(
                "{metric}: growing at {} (95% CI {} .. {})",
                crate::units::human_rate(tr.slope),
                crate::units::human_rate(tr.slope_low),
                crate::units::human_rate(tr.slope_high)
            ),
            v => format!("{metric}: {} ({})", v.name(), tr.reason),
        };
        let _ = writeln!(o, r#"<text x="{LEFT}" y="44">{}</text>"#, esc(&sub));
    }
    let t_max = points
        .last()
        .map_or(1.0, |p| p.t1)
        .max(points.first().map_or(0.0, |p| p.t0) + 1e-3);
    let shown: Vec<Metric> = COLORS
        .iter()
        .map(|c| c.0)
        .filter(|&m| points.iter().any(|p| p.m[m.index()].known()))
        .collect();
    let mut y_max = points
        .iter()
        .flat_map(|p| shown.iter().map(move |&m| p.max(m)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    for (b, _) in &info.lines {
        // Show a budget line if it is not far above the data.
        if (*b as f64) < y_max * 1.6 || y_max == 0.0 {
            y_max = y_max.max(*b as f64);
        }
    }
    // 5% headroom: the top sample and the budget lines stay clear of the frame.
    let (y_step, y_top) = nice_axis((y_max * 1.05).max(1024.0));
    let (x_unit, x_div) = time_unit(t_max);
    let (x_step, x_top) = nice_axis(t_max / x_div);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + pw * (t / x_div) / x_top;
    let y = |v: f64| TOP + ph * (1.0 - v / y_top);

    // Warm-up.
    if let Some(tr) = &info.trend {
        if tr.warmup > 0.0 {
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#eeeeee"/><text x="{:.1}" y="{:.1}" fill="#888">warm-up</text>"##,
                x(0.0),
                x(tr.warmup) - x(0.0),
                x(0.0) + 4.0,
                TOP + 14.0
            );
        }
    }
    // Grid and axes.
    byte_grid(&mut o, LEFT, W - RIGHT, y_top, y_step, y);
    time_grid(&mut o, 0.0, x_top, x_step, TOP, TOP + ph, |s| {
        LEFT + pw * s / x_top
    });
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="middle">time ({x_unit})</text>"##,
        LEFT + pw / 2.0,
        H - 12.0
    );
    // Series: a band where points merge several samples, then the mean line.
    for &(m, color, dash) in COLORS.iter().filter(|c| shown.contains(&c.0)) {
        let known: Vec<&Point> = points.iter().filter(|p| p.m[m.index()].known()).collect();
        if m == Metric::Rss && known.iter().any(|p| p.n > 1) {
            let mut d = String::new();
            for p in &known {
                let _ = write!(d, "{:.1},{:.1} ", x(p.t()), y(p.max(m)));
            }
            for p in known.iter().rev() {
                let _ = write!(d, "{:.1},{:.1} ", x(p.t()), y(p.min(m)));
            }
            let _ = writeln!(
                o,
                r#"<polygon points="{}" fill="{color}" fill-opacity="0.15" stroke="none"/>"#,
                d.trim_end()
            );
        }
        let mut d = String::new();
        for p in &known {
            let _ = write!(d, "{:.1},{:.1} ", x(p.t()), y(p.mean(m)));
        }
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>"#,
            d.trim_end()
        );
    }
    // The trend: the floor's slope, drawn through the middle of the samples it was
    // fitted on (the floor itself lies under them).
    if let Some(tr) = info.trend.as_ref().filter(|t| t.points > 0) {
        let m = info.trend_metric.unwrap_or(Metric::Rss);
        let mut offsets: Vec<f64> = points
            .iter()
            .filter(|p| p.t() >= tr.warmup && p.m[m.index()].known())
            .map(|p| p.mean(m) - tr.slope * p.t())
            .collect();
        offsets.sort_by(f64::total_cmp);
        let c = offsets
            .get(offsets.len() / 2)
            .copied()
            .unwrap_or(tr.intercept);
        let at = |t: f64| (c + tr.slope * t).clamp(0.0, y_top);
        let _ = writeln!(
            o,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d62728" stroke-width="2" stroke-dasharray="8 4"/>"##,
            x(tr.fit_start),
            y(at(tr.fit_start)),
            x(tr.fit_end),
            y(at(tr.fit_end))
        );
    }
    // Budget and limit lines.
    for (b, label) in &info.lines {
        let b = *b as f64;
        if b <= y_top {
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#9467bd" stroke-dasharray="4 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#9467bd">{}</text>"##,
                W - RIGHT,
                y(b),
                y(b),
                W - RIGHT - 4.0,
                y(b) - 4.0,
                esc(label)
            );
        }
    }
    // Peak RSS.
    if let Some(p) = points
        .iter()
        .filter(|p| p.m[0].known())
        .max_by(|a, b| a.max(Metric::Rss).total_cmp(&b.max(Metric::Rss)))
    {
        let (px, py) = (x(p.t()), y(p.max(Metric::Rss)));
        let anchor = if px > LEFT + pw * 0.8 { "end" } else { "start" };
        let dx = if anchor == "end" { -6.0 } else { 6.0 };
        let _ = writeln!(
            o,
            r##"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="#1f77b4"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}">peak {}</text>"##,
            px + dx,
            (py - 6.0).max(TOP + 12.0),
            esc(&human_bytes(p.max(Metric::Rss) as u64))
        );
    }
    // Legend.
    let mut lx = W - RIGHT - 10.0;
    let mut legend: Vec<(String, &str, &str)> = COLORS
        .iter()
        .filter(|c| shown.contains(&c.0))
        .map(|c| (c.0.name().to_string(), c.1, c.2))
        .collect();
    if info.trend.as_ref().is_some_and(|t| t.points > 0) {
        let name = format!("trend ({})", info.trend_metric.map_or("rss", |m| m.name()));
        legend.push((name, "#d62728", "8 4"));
    }
    for (name, color, dash) in legend.iter().rev() {
        let width = 34.0 + 7.0 * name.len() as f64;
        lx -= width;
        let _ = writeln!(
            o,
            r#"<line x1="{lx:.1}" x2="{:.1}" y1="50" y2="50" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="54">{}</text>"#,
            lx + 22.0,
            lx + 26.0,
            esc(name)
        );
    }
    o.push_str("</svg>\n");
    o
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
    }
}
