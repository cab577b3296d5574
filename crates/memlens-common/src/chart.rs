//! Pieces shared by memlens's hand-written SVG charts (`memlens watch --plot`, `memlens
//! plot`): round axis steps, a time unit for an axis, numbers and text for SVG.

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
}
