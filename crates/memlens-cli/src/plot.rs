//! `memlens plot`: the timeline of a trace as an SVG chart: heap in use and RSS over
//! time, and the live bytes of the top sites. The data comes from
//! [`memlens_analysis::timeline::Timeline`]; this module says what to draw, and
//! `memlens_common::chart` draws it (as it draws `memlens watch --plot`'s chart).
//! `--history DIR` draws a history directory instead (`plot/history.rs`).

mod history;

use crate::present::{frames::site_labels, progress::Bar, window_spec};
use memlens_analysis::timeline::{Timeline, TimelineOptions};
use memlens_analysis::Symbolizer;
use memlens_common::chart::{Chart, Legend, Series, TimeAxis};
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
memlens plot --sites 8 --from 2s memlens.myprog.4242.trace -o phase2.svg\n  \
memlens plot --history memlens-history -o history.svg"
)]
pub struct PlotArgs {
    /// The trace file to read.
    #[arg(required_unless_present = "history", conflicts_with = "history")]
    pub trace: Option<PathBuf>,
    /// Instead of a trace: draw each component's peak and leaked bytes across the runs
    /// that `memlens check --history DIR` recorded in DIR/history.jsonl, one point per
    /// run (default output: history.svg).
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
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
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Plot the run up to TIME (1.5s, 200ms, 50%).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
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
    let default = PathBuf::from("history");
    let trace = args.trace.as_ref().unwrap_or(&default);
    let out = crate::present::output::output_or_default(args.output.as_ref(), trace, "svg");
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
    if let Some(dir) = &args.history {
        let svg = history::svg(dir)?;
        let bytes = if png {
            crate::png::from_svg(&svg)?
        } else {
            svg.into_bytes()
        };
        std::fs::write(&out, bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        return Ok(out);
    }
    let opts = TimelineOptions {
        buckets: args.buckets as usize,
        sites: args.sites,
        follow: None,
        window: window_spec(args.from.as_deref(), args.to.as_deref())?,
    };
    let reader = TraceReader::open(trace).map_err(|e| e.to_string())?;
    crate::warn_truncated(trace, reader.truncation());
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
    let mut sym = Symbolizer::for_trace(&metadata);
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

/// Heap, RSS, then the sites' colors.
const COLORS: [&str; 12] = [
    "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

/// The chart. `labels[i]` names `tl.sites[i]`.
pub fn svg(tl: &Timeline, title: &str, labels: &[String]) -> String {
    chart(tl, title, labels).svg()
}

/// The chart, described for `memlens_common::chart`'s renderer: heap in use, RSS and each
/// site, every bucket's highest value at the bucket's middle, in the window's time.
fn chart(tl: &Timeline, title: &str, labels: &[String]) -> Chart {
    let n = tl.heap.len().max(1);
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
    let t0 = w.from_ns as f64 / 1e9;
    let t1 = (w.to_ns as f64 / 1e9).max(t0 + 1e-6);
    let mid = |i: usize| -> f64 {
        let start = tl.times_ns[i] as f64;
        let end = tl.times_ns.get(i + 1).map_or(w.to_ns as f64, |&e| e as f64);
        (start + end) / 2.0 / 1e9
    };
    let line = |id: String, label: String, color, width, points| Series {
        id,
        label,
        color,
        dash: "",
        width,
        points,
        band: Vec::new(),
    };
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
    let rss_label = if rss.is_empty() {
        "RSS (no samples)"
    } else {
        "RSS"
    };
    let mut series = vec![
        line("heap".into(), "heap in use".into(), COLORS[0], 2.0, heap),
        line("rss".into(), rss_label.into(), COLORS[1], 2.0, rss),
    ];
    for (i, s) in tl.sites.iter().enumerate() {
        let pts = s
            .values
            .iter()
            .enumerate()
            .map(|(k, &v)| (mid(k), v as f64))
            .collect();
        let label = labels.get(i).map_or("?", String::as_str);
        series.push(line(
            format!("site-{}", i + 1),
            format!("{label}: peak {}", human_bytes(s.peak_bytes)),
            COLORS[2 + i % (COLORS.len() - 2)],
            1.2,
            pts,
        ));
    }
    Chart {
        width: 1000.0,
        plot_height: 420.0,
        left: 84.0,
        title: title.to_string(),
        subtitle: Some(sub),
        time: TimeAxis::Window(t0, t1),
        time_label: "time since the program started".into(),
        y_max: peak_rss.unwrap_or(0).max(peak_heap) as f64,
        shade: None,
        series,
        fit: None,
        levels: Vec::new(),
        marker: None,
        legend: Legend::Below,
    }
}
