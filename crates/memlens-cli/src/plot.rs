//! `memlens plot`: the timeline of a trace as an SVG chart: heap in use and RSS over
//! time, and the live bytes of the top sites. The data comes from
//! [`memlens_analysis::timeline::Timeline`]; this module only draws it.

use crate::present::{frames::site_labels, progress::Bar, window_spec};
use memlens_analysis::timeline::{Timeline, TimelineOptions};
use memlens_analysis::Symbolizer;
use memlens_common::chart::{byte_grid, esc, nice_axis, time_grid, time_unit};
use memlens_common::units::{human_bytes, human_time};
use memlens_trace::reader::TraceReader;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Each series keeps, per time bucket, the highest value it reached in it, \
so short spikes stay visible whatever the length of the trace. The sites followed are those \
with the most live bytes at their own peak in the window.\n\n\
PNG: -o FILE.png rasterizes the same chart (text in the system's fonts).\n\n\
Examples:\n  memlens plot memlens.myprog.4242.trace -o timeline.svg\n  \
memlens plot --sites 8 --from 2s memlens.myprog.4242.trace -o phase2.svg"
)]
pub struct PlotArgs {
    /// The trace file to read.
    pub trace: PathBuf,
    /// Output file: .svg or .png. Default: the trace's
    /// name with .svg added, in the current directory.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many top sites to draw besides heap and RSS.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub sites: usize,
    /// Time buckets across the chart.
    #[arg(long, default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub buckets: u32,
    /// Plot the run from TIME on (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Plot the run up to TIME (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

pub fn main(args: PlotArgs) -> ExitCode {
    match plot(&args) {
        Ok(out) => {
            crate::say!("memlens: wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => crate::fail(e),
    }
}

fn plot(args: &PlotArgs) -> Result<PathBuf, String> {
    let out = crate::present::output::output_or_default(args.output.as_ref(), &args.trace, "svg");
    let png = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => false,
        Some(e) if e.eq_ignore_ascii_case("png") => true,
        _ => {
            return Err(format!(
                "-o {}: the chart is written as .svg or .png; name the file accordingly",
                out.display()
            ))
        }
    };
    let opts = TimelineOptions {
        buckets: args.buckets as usize,
        sites: args.sites,
        follow: None,
        window: window_spec(args.from.as_deref(), args.to.as_deref())?,
    };
    let reader = TraceReader::open(&args.trace).map_err(|e| e.to_string())?;
    crate::warn_truncated(&args.trace, reader.truncation());
    let mut bar = Bar::new(
        &reader,
        &["finding the top sites", "following them over time"],
    );
    let tl = Timeline::build(&reader, &opts, &mut |p| {
        if let Some(b) = bar.as_mut() {
            b.update(p)
        }
    })
    .map_err(|e| e.to_string())?;
    drop(bar);
    let metadata = reader.metadata().map_err(|e| e.to_string())?;
    let mut sym = Symbolizer::new(&metadata.modules);
    let stacks: Vec<u32> = tl.sites.iter().map(|s| s.site.stack).collect();
    let labels: Vec<String> = site_labels(&metadata, &mut sym, &stacks)
        .into_iter()
        .zip(&tl.sites)
        .map(|(at, s)| format!("{} ({})", at, s.site.func.name()))
        .collect();
    let h = reader.header();
    let title = format!(
        "memlens timeline of {} (pid {})",
        if h.exe.is_empty() { "?" } else { &h.exe },
        h.pid
    );
    let svg = svg(&tl, &title, &labels);
    let bytes = if png {
        crate::png::from_svg(&svg)?
    } else {
        svg.into_bytes()
    };
    std::fs::write(&out, bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(out)
}

const W: f64 = 1000.0;
const PLOT_H: f64 = 420.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const LEGEND_ROW: f64 = 18.0;

/// Heap, RSS, then the sites' colors.
const COLORS: [&str; 12] = [
    "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

/// One line of the chart: id (`heap`, `rss`, `site-N`), label, color, (seconds, bytes).
type Series<'a> = (String, String, &'a str, Vec<(f64, f64)>);

/// The chart. `labels[i]` names `tl.sites[i]`.
pub fn svg(tl: &Timeline, title: &str, labels: &[String]) -> String {
    let n = tl.heap.len().max(1);
    let legend_rows = 2 + tl.sites.len();
    let h = TOP + PLOT_H + 48.0 + LEGEND_ROW * legend_rows as f64 + 12.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let peak_heap = tl.heap.iter().copied().max().unwrap_or(0);
    let peak_rss = tl.rss.iter().flatten().copied().max();
    let w = &tl.window;
    let mut sub = format!(
        "{} .. {} of a {} run; peak heap {}",
        human_time(w.from_ns),
        human_time(w.to_ns),
        human_time(w.run_ns),
        human_bytes(peak_heap)
    );
    if let Some(r) = peak_rss {
        let _ = write!(sub, ", peak RSS {}", human_bytes(r));
    }
    let _ = write!(sub, "; highest value per {} bucket", {
        human_time(w.span_ns() / n as u64)
    });
    let _ = writeln!(o, r#"<text x="{LEFT}" y="44">{}</text>"#, esc(&sub));

    // Axes: time relative to the trace's start, in the window.
    let y_max = peak_rss.unwrap_or(0).max(peak_heap) as f64;
    let (y_step, y_top) = nice_axis((y_max * 1.05).max(1024.0));
    let t0 = w.from_ns as f64 / 1e9;
    let t1 = (w.to_ns as f64 / 1e9).max(t0 + 1e-6);
    let (x_unit, x_div) = time_unit(t1);
    let span = (t1 - t0) / x_div;
    let (x_step, _) = nice_axis(span);
    let pw = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + pw * ((t - t0) / x_div) / span;
    let y = |v: f64| TOP + PLOT_H * (1.0 - v / y_top);
    byte_grid(&mut o, LEFT, W - RIGHT, y_top, y_step, y);
    // Time ticks at round values of the unit, inside the window.
    let first_tick = (t0 / x_div / x_step).ceil() * x_step;
    time_grid(
        &mut o,
        first_tick,
        t1 / x_div,
        x_step,
        TOP,
        TOP + PLOT_H,
        |s| x(s * x_div),
    );
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{PLOT_H}" fill="none" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="middle">time since the program started ({x_unit})</text>"##,
        LEFT + pw / 2.0,
        TOP + PLOT_H + 36.0
    );

    // Series: each bucket's highest value at the bucket's middle.
    let mid = |i: usize| -> f64 {
        let start = tl.times_ns[i] as f64;
        let end = tl.times_ns.get(i + 1).map_or(w.to_ns as f64, |&e| e as f64);
        (start + end) / 2.0 / 1e9
    };
    let mut series: Vec<Series> = Vec::new();
    let heap: Vec<(f64, f64)> = tl
        .heap
        .iter()
        .enumerate()
        .map(|(i, &v)| (mid(i), v as f64))
        .collect();
    let rss: Vec<(f64, f64)> = tl
        .rss
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (mid(i), v as f64)))
        .collect();
    series.push(("heap".into(), "heap in use".into(), COLORS[0], heap));
    series.push((
        "rss".into(),
        if rss.is_empty() {
            "RSS (no samples)".into()
        } else {
            "RSS".into()
        },
        COLORS[1],
        rss,
    ));
    for (i, s) in tl.sites.iter().enumerate() {
        let pts = s
            .values
            .iter()
            .enumerate()
            .map(|(k, &v)| (mid(k), v as f64))
            .collect();
        let label = labels.get(i).cloned().unwrap_or_else(|| "?".into());
        series.push((
            format!("site-{}", i + 1),
            format!("{label}: peak {}", human_bytes(s.peak_bytes)),
            COLORS[2 + i % (COLORS.len() - 2)],
            pts,
        ));
    }
    for (id, label, color, pts) in &series {
        if pts.is_empty() {
            continue;
        }
        let mut d = String::new();
        for &(t, v) in pts {
            let _ = write!(d, "{:.1},{:.1} ", x(t), y(v));
        }
        let width = if id.starts_with("site") { 1.2 } else { 2.0 };
        if let [(t, v)] = pts[..] {
            let _ = writeln!(
                o,
                r#"<circle data-series="{id}" cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}</title></circle>"#,
                x(t),
                y(v),
                esc(label)
            );
            continue;
        }
        let _ = writeln!(
            o,
            r#"<polyline data-series="{id}" points="{}" fill="none" stroke="{color}" stroke-width="{width}"><title>{}</title></polyline>"#,
            d.trim_end(),
            esc(label)
        );
    }
    // Legend under the chart, one row per series.
    let mut ly = TOP + PLOT_H + 60.0;
    for (_, label, color, _) in &series {
        let shown: String = if label.chars().count() > 140 {
            label.chars().take(137).collect::<String>() + "..."
        } else {
            label.clone()
        };
        let _ = writeln!(
            o,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 22.0,
            ly - 4.0,
            ly - 4.0,
            LEFT + 28.0,
            ly,
            esc(&shown)
        );
        ly += LEGEND_ROW;
    }
    o.push_str("</svg>\n");
    o
}
