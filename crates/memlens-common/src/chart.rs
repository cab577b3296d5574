//! memlens's one SVG chart renderer, for `memlens plot` (a trace's timeline) and `memlens
//! watch --plot` (memory sampled from /proc): bytes against time, as lines (a min–max band
//! under a line where samples were merged), with optional shading (warm-up), a fitted
//! straight line (trend), horizontal levels (budgets, limits), one marked point (peak)
//! and a legend. Each command describes its chart as a [`Chart`]; [`Chart::svg`] draws
//! it. The pieces (round axis steps, a time unit for an axis, SVG text) are public for
//! tests and the callers' labels.

/// The smallest "round" step giving at most 8 intervals up to `max`, and the axis top:
/// 1, 2 or 5 times a power of ten, or for bytes whole binary units (64 MiB, not 50.0 MiB;
/// 256 KiB rather than 200 KiB).
pub fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let mut candidates = Vec::new();
    if max >= 1024.0 {
        for unit in [1u64, 1 << 10, 1 << 20, 1 << 30, 1 << 40] {
            // Steps of 64 units or more are powers of two, so that labels stay round
            // when they reach the next unit (768 KiB, 1.00 MiB, 1.25 MiB; not 1000 KiB).
            for m in [
                1.0, 2.0, 4.0, 5.0, 10.0, 20.0, 25.0, 50.0, 64.0, 128.0, 256.0, 512.0,
            ] {
                candidates.push(m * unit as f64);
            }
        }
    } else {
        let mut mag = 10f64.powf((max / 8.0).log10().floor());
        for _ in 0..3 {
            candidates.extend([1.0, 2.0, 5.0].map(|m| m * mag));
            mag *= 10.0;
        }
    }
    candidates.sort_by(f64::total_cmp);
    // A value a hair above a round number (3.0005 s) does not get a whole extra step.
    let steps = |s: f64| (max / s - 0.01).ceil().max(1.0);
    let step = candidates
        .into_iter()
        .find(|&s| steps(s) <= 8.0)
        .unwrap_or(max);
    (step, steps(step) * step)
}

/// The unit of a time axis whose largest value is `t_max` seconds, and its length in
/// seconds.
pub fn time_unit(t_max: f64) -> (&'static str, f64) {
    if t_max < 1.0 {
        ("ms", 1e-3)
    } else if t_max < 180.0 {
        ("s", 1.0)
    } else if t_max < 3.0 * 3600.0 {
        ("min", 60.0)
    } else if t_max < 3.0 * 86400.0 {
        ("h", 3600.0)
    } else {
        ("days", 86400.0)
    }
}

/// A number without trailing zeros: `2.5`, `20`.
pub fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Text escaped for SVG (XML) content and attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The horizontal grid of a bytes axis: a line from `left` to `right` and a label at every
/// `step` from 0 up to `top`; `y` maps a value to its SVG y coordinate.
pub fn byte_grid(
    o: &mut String,
    left: f64,
    right: f64,
    top: f64,
    step: f64,
    y: impl Fn(f64) -> f64,
) {
    use std::fmt::Write as _;
    let mut v = 0.0;
    while v <= top + step * 1e-9 {
        let _ = writeln!(
            o,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            right,
            y(v),
            y(v),
            left - 6.0,
            y(v) + 4.0,
            esc(&crate::units::human_bytes(v as u64))
        );
        v += step;
    }
}

/// The vertical grid of a time axis: a line from `top` to `bottom` and a label below it
/// at every `step` from `first` up to `last` (in the axis unit); `x` maps a value to its
/// SVG x coordinate.
pub fn time_grid(
    o: &mut String,
    first: f64,
    last: f64,
    step: f64,
    top: f64,
    bottom: f64,
    x: impl Fn(f64) -> f64,
) {
    use std::fmt::Write as _;
    let mut s = first;
    while s <= last + step * 1e-9 {
        let px = x(s);
        let _ = writeln!(
            o,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            trim_num(s)
        );
        s += step;
    }
}

/// A chart of bytes against time, before drawing. Times are in seconds, values in bytes.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Width of the SVG and height of the plotting area, in pixels.
    pub width: f64,
    pub plot_height: f64,
    /// Room left of the plotting area for the byte labels.
    pub left: f64,
    pub title: String,
    pub subtitle: Option<String>,
    pub time: TimeAxis,
    /// The time axis's title, its unit added: `time` gives `time (s)`.
    pub time_label: String,
    /// The highest value the byte axis must show (before 5% headroom).
    pub y_max: f64,
    /// A shaded span from the start of the time axis to this time, and its label.
    pub shade: Option<(f64, String)>,
    pub series: Vec<Series>,
    pub fit: Option<Fit>,
    /// Horizontal lines: (bytes, label). One not far above the data widens the axis.
    pub levels: Vec<(u64, String)>,
    pub marker: Option<Marker>,
    pub legend: Legend,
}

/// The time axis.
#[derive(Clone, Copy, Debug)]
pub enum TimeAxis {
    /// From 0 to a round value at or above this time.
    UpTo(f64),
    /// Exactly this window (from, to).
    Window(f64, f64),
    /// Not time: runs numbered 1 to n, a point's "seconds" being its run's number
    /// (`memlens plot --history`). Ticks at whole numbers, no unit.
    Runs(usize),
}

/// One line of the chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// `data-series` attribute: what a test or a script finds the line by.
    pub id: String,
    /// Legend text, and the line's tooltip.
    pub label: String,
    pub color: &'static str,
    /// `stroke-dasharray`, or empty for a solid line.
    pub dash: &'static str,
    pub width: f64,
    /// (seconds, bytes).
    pub points: Vec<(f64, f64)>,
    /// (seconds, low, high) drawn as a translucent band under the line; may be empty.
    pub band: Vec<(f64, f64, f64)>,
}

/// A straight line `intercept + slope * t` from `from` to `to`, kept inside the axis.
#[derive(Clone, Debug)]
pub struct Fit {
    pub from: f64,
    pub to: f64,
    pub intercept: f64,
    pub slope: f64,
    pub label: String,
}

/// One marked point, labelled.
#[derive(Clone, Debug)]
pub struct Marker {
    pub t: f64,
    pub v: f64,
    pub label: String,
    pub color: &'static str,
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legend {
    /// One row above the plotting area, right-aligned (a few short names).
    TopRight,
    /// One row per entry under the chart (long labels, such as stacks).
    Below,
}

const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const LEGEND_ROW: f64 = 18.0;
const FIT_COLOR: &str = "#d62728";
const FIT_DASH: &str = "8 4";
const LEVEL_COLOR: &str = "#9467bd";

/// The pixel mappings of a chart being drawn.
struct Frame {
    left: f64,
    pw: f64,
    ph: f64,
    /// Start of the time axis in seconds, its unit in seconds, its span in units.
    t0: f64,
    div: f64,
    span: f64,
    y_top: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        self.left + self.pw * ((t - self.t0) / self.div) / self.span
    }
    fn y(&self, v: f64) -> f64 {
        TOP + self.ph * (1.0 - v / self.y_top)
    }
}

impl Chart {
    /// The chart as a self-contained SVG document.
    pub fn svg(&self) -> String {
        use std::fmt::Write as _;
        let (w, ph, left) = (self.width, self.plot_height, self.left);
        let legend_rows = match self.legend {
            Legend::TopRight => 0,
            Legend::Below => self.series.len() + usize::from(self.fit.is_some()),
        };
        let h = match self.legend {
            Legend::TopRight => TOP + ph + 52.0,
            Legend::Below => TOP + ph + 48.0 + LEGEND_ROW * legend_rows as f64 + 12.0,
        };
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text x="{left}" y="24" font-size="16" font-weight="bold">{}</text>"#,
            esc(&self.title)
        );
        if let Some(sub) = &self.subtitle {
            let _ = writeln!(o, r#"<text x="{left}" y="44">{}</text>"#, esc(sub));
        }
        let mut y_max = self.y_max;
        for (b, _) in &self.levels {
            // Show a level if it is not far above the data.
            if (*b as f64) < y_max * 1.6 || y_max == 0.0 {
                y_max = y_max.max(*b as f64);
            }
        }
        // 5% headroom: the top value and the levels stay clear of the frame.
        let (y_step, y_top) = nice_axis((y_max * 1.05).max(1024.0));
        let pw = w - left - RIGHT;
        let (t0, t1, round_end) = match self.time {
            TimeAxis::UpTo(t) => (0.0, t, true),
            TimeAxis::Window(a, b) => (a, b, false),
            TimeAxis::Runs(n) => (1.0, (n as f64).max(2.0), false),
        };
        let runs = matches!(self.time, TimeAxis::Runs(_));
        let (unit, div) = if runs { ("", 1.0) } else { time_unit(t1) };
        let (step, top) = nice_axis((t1 - t0) / div);
        let step = if runs { step.round().max(1.0) } else { step };
        let span = if round_end { top } else { (t1 - t0) / div };
        let f = Frame {
            left,
            pw,
            ph,
            t0,
            div,
            span,
            y_top,
        };
        if let Some((to, label)) = &self.shade {
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#eeeeee"/><text x="{:.1}" y="{:.1}" fill="#888">{}</text>"##,
                f.x(t0),
                f.x(*to) - f.x(t0),
                f.x(t0) + 4.0,
                TOP + 14.0,
                esc(label)
            );
        }
        byte_grid(&mut o, left, w - RIGHT, y_top, y_step, |v| f.y(v));
        // Time ticks at round values of the unit.
        let first = t0 / div;
        let last = if round_end { top } else { t1 / div };
        time_grid(
            &mut o,
            (first / step).ceil() * step,
            last,
            step,
            TOP,
            TOP + ph,
            |s| left + pw * (s - first) / span,
        );
        let label_y = match self.legend {
            Legend::TopRight => h - 12.0,
            Legend::Below => TOP + ph + 36.0,
        };
        let _ = writeln!(
            o,
            r##"<rect x="{left}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/><text x="{:.1}" y="{label_y:.1}" text-anchor="middle">{}</text>"##,
            left + pw / 2.0,
            esc(&if unit.is_empty() {
                self.time_label.clone()
            } else {
                format!("{} ({unit})", self.time_label)
            })
        );
        for s in &self.series {
            s.draw(&mut o, &f);
        }
        if let Some(fit) = &self.fit {
            let at = |t: f64| (fit.intercept + fit.slope * t).clamp(0.0, y_top);
            let _ = writeln!(
                o,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{FIT_COLOR}" stroke-width="2" stroke-dasharray="{FIT_DASH}"/>"##,
                f.x(fit.from),
                f.y(at(fit.from)),
                f.x(fit.to),
                f.y(at(fit.to))
            );
        }
        for (b, label) in &self.levels {
            let b = *b as f64;
            if b <= y_top {
                let _ = writeln!(
                    o,
                    r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{LEVEL_COLOR}" stroke-dasharray="4 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{LEVEL_COLOR}">{}</text>"##,
                    w - RIGHT,
                    f.y(b),
                    f.y(b),
                    w - RIGHT - 4.0,
                    f.y(b) - 4.0,
                    esc(label)
                );
            }
        }
        if let Some(m) = &self.marker {
            let (px, py) = (f.x(m.t), f.y(m.v));
            let anchor = if px > left + pw * 0.8 { "end" } else { "start" };
            let dx = if anchor == "end" { -6.0 } else { 6.0 };
            let _ = writeln!(
                o,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"##,
                m.color,
                px + dx,
                (py - 6.0).max(TOP + 12.0),
                esc(&m.label)
            );
        }
        self.draw_legend(&mut o, TOP + ph + 60.0);
        o.push_str("</svg>\n");
        o
    }

    /// The legend: the series, then the fitted line.
    fn draw_legend(&self, o: &mut String, below_y: f64) {
        use std::fmt::Write as _;
        let mut entries: Vec<(&str, &str, &str)> = self
            .series
            .iter()
            .map(|s| (s.label.as_str(), s.color, s.dash))
            .collect();
        if let Some(fit) = &self.fit {
            entries.push((&fit.label, FIT_COLOR, FIT_DASH));
        }
        match self.legend {
            Legend::TopRight => {
                let mut lx = self.width - RIGHT - 10.0;
                for (name, color, dash) in entries.iter().rev() {
                    lx -= 34.0 + 7.0 * name.len() as f64;
                    let _ = writeln!(
                        o,
                        r#"<line x1="{lx:.1}" x2="{:.1}" y1="50" y2="50" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="54">{}</text>"#,
                        lx + 22.0,
                        lx + 26.0,
                        esc(name)
                    );
                }
            }
            Legend::Below => {
                let left = self.left;
                let mut ly = below_y;
                for (label, color, _) in &entries {
                    let shown: String = if label.chars().count() > 140 {
                        label.chars().take(137).collect::<String>() + "..."
                    } else {
                        label.to_string()
                    };
                    let _ = writeln!(
                        o,
                        r#"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                        left + 22.0,
                        ly - 4.0,
                        ly - 4.0,
                        left + 28.0,
                        ly,
                        esc(&shown)
                    );
                    ly += LEGEND_ROW;
                }
            }
        }
    }
}

impl Series {
    /// The band, then the line (a dot for a single point); nothing when empty.
    fn draw(&self, o: &mut String, f: &Frame) {
        use std::fmt::Write as _;
        let (id, color) = (&self.id, self.color);
        if !self.band.is_empty() {
            let mut d = String::new();
            for &(t, _, hi) in &self.band {
                let _ = write!(d, "{:.1},{:.1} ", f.x(t), f.y(hi));
            }
            for &(t, lo, _) in self.band.iter().rev() {
                let _ = write!(d, "{:.1},{:.1} ", f.x(t), f.y(lo));
            }
            let _ = writeln!(
                o,
                r#"<polygon points="{}" fill="{color}" fill-opacity="0.15" stroke="none"/>"#,
                d.trim_end()
            );
        }
        if let [(t, v)] = self.points[..] {
            let _ = writeln!(
                o,
                r#"<circle data-series="{id}" cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}</title></circle>"#,
                f.x(t),
                f.y(v),
                esc(&self.label)
            );
            return;
        }
        if self.points.is_empty() {
            return;
        }
        let mut d = String::new();
        for &(t, v) in &self.points {
            let _ = write!(d, "{:.1},{:.1} ", f.x(t), f.y(v));
        }
        let dash = if self.dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{}""#, self.dash)
        };
        let _ = writeln!(
            o,
            r#"<polyline data-series="{id}" points="{}" fill="none" stroke="{color}" stroke-width="{}"{dash}><title>{}</title></polyline>"#,
            d.trim_end(),
            self.width,
            esc(&self.label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes() {
        assert_eq!(nice_axis(10.0), (2.0, 10.0));
        assert_eq!(nice_axis(3.001), (0.5, 3.0));
        assert_eq!(nice_axis(3.1), (0.5, 3.5));
        assert_eq!(nice_axis(95.0), (20.0, 100.0));
        const MIB: f64 = 1048576.0;
        assert_eq!(nice_axis(300.0 * MIB), (50.0 * MIB, 300.0 * MIB));
        assert_eq!(nice_axis(62.0 * MIB), (10.0 * MIB, 70.0 * MIB));
        assert_eq!(nice_axis(1500.0), (256.0, 1536.0));
        assert_eq!(nice_axis(2.55 * MIB), (512.0 * 1024.0, 3.0 * MIB));
        assert_eq!(time_unit(100.0).0, "s");
        assert_eq!(time_unit(0.03), ("ms", 1e-3));
        assert_eq!(time_unit(3600.0).0, "min");
        assert_eq!(trim_num(2.5), "2.5");
        assert_eq!(trim_num(20.0), "20");
    }

    #[test]
    fn renders_lines_dots_levels_and_legends() {
        let series = |id: &str, points: Vec<(f64, f64)>| Series {
            id: id.into(),
            label: format!("{id} <x>"),
            color: "#123456",
            dash: "",
            width: 2.0,
            points,
            band: vec![(0.0, 1.0, 3.0), (2.0, 1.0, 3.0)],
        };
        let mut c = Chart {
            width: 600.0,
            plot_height: 300.0,
            left: 80.0,
            title: "t & u".into(),
            subtitle: None,
            time: TimeAxis::UpTo(2.0),
            time_label: "time".into(),
            y_max: 4096.0,
            shade: Some((0.5, "warm-up".into())),
            series: vec![
                series("a", vec![(0.0, 10.0), (2.0, 4000.0)]),
                series("b", vec![(1.0, 5.0)]),
            ],
            fit: None,
            levels: vec![(5000, "budget".into())],
            marker: None,
            legend: Legend::Below,
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(
            svg.contains(r#"height="460""#),
            "two legend rows under the chart"
        );
        assert!(svg.contains(">t &amp; u</text>") && svg.contains("a &lt;x&gt;"));
        assert!(svg.contains(r#"<polyline data-series="a""#));
        assert!(
            svg.contains(r#"<circle data-series="b""#),
            "one point is a dot"
        );
        assert_eq!(svg.matches("<polygon").count(), 2);
        assert!(svg.contains(">budget</text>") && svg.contains(">warm-up</text>"));
        assert!(svg.contains("time (s)"));
        c.legend = Legend::TopRight;
        assert!(c.svg().contains(r#"height="416""#));
    }
}
