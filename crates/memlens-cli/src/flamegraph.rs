//! `memlens flamegraph`: one metric of every allocation site as an interactive flame
//! graph (inferno's SVG: click to zoom, Ctrl-F to search) or as folded stacks.

use crate::present::output::Dest;
use crate::profile::{folded, folded_text, load, metric_parser, require_known, value_text};
use memlens_analysis::{Metric, Profile, ProfileOptions, Symbolizer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// `memlens flamegraph --help`: the description before the options.
pub const LONG_ABOUT: &str =
    "Draw one metric of every allocation site as a flame graph: each box is a \
function, as wide as the metric's value in the stacks that go through it; a function's \
callees sit on top of it, and the allocating function (malloc, operator new...) is the top of \
each stack. The SVG is interactive in a browser: hover for values, click to zoom, Ctrl-F (or \
the Search button) to highlight functions by name or regular expression.\n\n\
Frames are symbolized function names, inlined functions included; a frame that cannot be \
symbolized shows as module+0xoffset or 0xaddress. Sites whose stacks have the same function \
names are added together.";

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
memlens flamegraph memlens.myprog.1234.trace -o peak.svg              # the heap at its peak\n  \
memlens flamegraph memlens.myprog.1234.trace --metric leaked -o leaks.svg\n  \
memlens flamegraph memlens.myprog.1234.trace --metric allocations --collapsed > allocs.folded\n\n\
The leak metrics need the exit scan, which `memlens run` does unless --leak-check=no.")]
pub struct FlamegraphArgs {
    /// The trace file to read.
    pub trace: PathBuf,
    /// What box widths show.
    #[arg(short, long, value_name = "METRIC", value_parser = metric_parser(), default_value = "peak")]
    pub metric: Metric,
    /// Write to FILE (`-`: stdout). Without it: stdout, which must not be a terminal for
    /// an SVG.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// svg: the interactive flame graph; collapsed: folded stacks, one
    /// `root;caller;callee;allocator VALUE` line per stack, for flamegraph.pl, speedscope
    /// and other tools.
    #[arg(long, value_enum, default_value_t = GraphFormat::Svg)]
    pub format: GraphFormat,
    /// Same as --format collapsed.
    #[arg(long, conflicts_with = "format")]
    pub collapsed: bool,
    /// Draw an icicle graph: roots at the top, allocators at the bottom.
    #[arg(long)]
    pub inverted: bool,
    /// Title of the graph (default: "memlens: " and what the metric counts).
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Initial width of the SVG in pixels (browsers then fit it to the window), 100 or more.
    #[arg(long, value_name = "PIXELS", default_value_t = 1200,
          value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(100..=100_000), |w| w as usize))]
    pub width: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Svg,
    Collapsed,
}

pub fn main(args: FlamegraphArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(e),
    }
}

fn run(args: &FlamegraphArgs) -> Result<(), String> {
    let collapsed = args.collapsed || args.format == GraphFormat::Collapsed;
    let dest = Dest::new(args.output.as_deref());
    if !collapsed {
        dest.refuse_terminal("an SVG flame graph", "graph.svg")?;
    }
    let profile = load(&args.trace, &ProfileOptions::for_metrics(&[args.metric]))?;
    require_known(&profile, args.metric)?;
    let mut sym = Symbolizer::for_trace(&profile.metadata);
    sym.prefetch(profile.frames());
    // Python frames by function and file (`handle_request (server.py)`), native ones by
    // function; Python's are drawn in their own colour.
    let name = |f: &memlens_analysis::Frame| {
        if f.python {
            memlens_analysis::diff::match_name(f)
        } else {
            f.function.clone()
        }
    };
    let stacks = folded(&profile, &mut sym, args.metric, name);
    let python: std::collections::BTreeSet<String> = profile
        .sites
        .iter()
        .flat_map(|s| sym.stack(profile.stack(s.stack)))
        .filter(|f| f.python)
        .map(|f| crate::profile::folded_name(&name(&f)))
        .collect();
    for w in profile.warnings.iter().chain(sym.warnings()) {
        crate::say!("memlens: warning: {w}");
    }
    if collapsed {
        return dest.write(folded_text(&stacks).as_bytes());
    }
    let style = Style {
        title: args
            .title
            .clone()
            .unwrap_or_else(|| format!("memlens: {}", args.metric.info().title)),
        subtitle: subtitle(&profile, args.metric),
        inverted: args.inverted,
        width: args.width,
        python,
    };
    let svg = svg(&stacks, None, args.metric, &style)?;
    dest.write(&svg)
}

/// `myprog (pid 1234), trace memlens.myprog.1234.trace: 12.00 KiB in total`
fn subtitle(p: &Profile, metric: Metric) -> String {
    format!(
        "{} (pid {}), trace {}: {} in total",
        p.header.argv.first().unwrap_or(&p.header.exe),
        p.header.pid,
        p.path.display(),
        value_text(metric.info().unit, p.sums[metric])
    )
}

/// How a graph looks.
pub struct Style {
    pub title: String,
    pub subtitle: String,
    pub inverted: bool,
    pub width: usize,
    /// Frame labels that are Python code: drawn blue, apart from native code's warm
    /// colours.
    pub python: std::collections::BTreeSet<String>,
}

/// Draw folded stacks as an SVG flame graph; with `before`, a differential one (widths
/// from `stacks`, colours from the change since `before`: red grew, blue shrank).
pub fn svg(
    stacks: &BTreeMap<String, u64>,
    before: Option<&BTreeMap<String, u64>>,
    metric: Metric,
    style: &Style,
) -> Result<Vec<u8>, String> {
    let info = metric.info();
    if stacks.is_empty() {
        // inferno draws an error for no input; say what "nothing" means instead.
        return Ok(empty_svg(
            style,
            &format!("nothing to show: no site has any {}", info.title),
        ));
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = style.title.clone();
    opts.subtitle = Some(style.subtitle.clone());
    opts.count_name = info.unit.name().to_string();
    opts.image_width = Some(style.width);
    opts.hash = true;
    opts.deterministic = true;
    opts.colors =
        inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    if style.inverted {
        opts.direction = inferno::flamegraph::Direction::Inverted;
    }
    let text = match before {
        None => folded_text(stacks),
        Some(before) => {
            let mut out = Vec::new();
            inferno::differential::from_readers(
                inferno::differential::Options::default(),
                folded_text(before).as_bytes(),
                folded_text(stacks).as_bytes(),
                &mut out,
            )
            .map_err(|e| format!("cannot fold the two profiles together: {e}"))?;
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    // Python frames in shades of blue (by name, so a function keeps its shade).
    let mut palette = inferno::flamegraph::color::PaletteMap::default();
    for (i, label) in style.python.iter().enumerate() {
        let shade = (i * 37 % 60) as u8;
        palette.insert(
            label,
            inferno::flamegraph::color::Color {
                r: 70 + shade,
                g: 130 + shade,
                b: 230,
            },
        );
    }
    if !style.python.is_empty() {
        opts.palette_map = Some(&mut palette);
    }
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut svg)
        .map_err(|e| format!("cannot draw the flame graph: {e}"))?;
    Ok(label_root(svg))
}

/// inferno leaves the text of its root box (the whole, "all") empty: write "all" in it.
fn label_root(svg: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&svg);
    let Some(root) = text.find("<title>all (") else {
        return svg;
    };
    match text[root..].find("></text>") {
        Some(end) => {
            let at = root + end + 1;
            format!("{}all{}", &text[..at], &text[at..]).into_bytes()
        }
        None => svg,
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small SVG with the title and one line of explanation.
fn empty_svg(style: &Style, message: &str) -> Vec<u8> {
    let x = style.width / 2;
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
<svg version=\"1.1\" width=\"{w}\" height=\"100\" viewBox=\"0 0 {w} 100\" xmlns=\"http://www.w3.org/2000/svg\">\n\
<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#eef2ee\"/>\n\
<text x=\"{x}\" y=\"30\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"17\">{t}</text>\n\
<text x=\"{x}\" y=\"55\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"12\">{s}</text>\n\
<text x=\"{x}\" y=\"80\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"12\">{m}</text>\n\
</svg>\n",
        w = style.width,
        t = xml_escape(&style.title),
        s = xml_escape(&style.subtitle),
        m = xml_escape(message),
    )
    .into_bytes()
}
