//! `memlens export`: every allocation site of a trace for other tools: pprof (gzipped
//! profile.proto), collapsed (folded stacks of one metric) or JSON (every metric of
//! every site, with stacks). Formats in `docs/EXPORT.md`.

use crate::present::frames::frame_json;
use crate::present::ms;
use crate::present::output::Dest;
use crate::present::trace::json_trace;
use crate::profile::{folded, folded_text, load, metric_parser, require_known};
use memlens_analysis::profile::METRICS;
use memlens_analysis::{Metric, Profile, ProfileOptions, Symbolizer};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// `memlens export --help`: the description before the options.
pub const LONG_ABOUT: &str =
    "Write every allocation site of a trace in a format other tools read.\n\n\
pprof: a gzipped profile.proto for `go tool pprof` (and the tools that read pprof files), with \
the sample types alloc_objects, alloc_space, inuse_objects, inuse_space (at exit), \
peak_inuse_objects, peak_inuse_space (at the heap's peak), leaked_objects and leaked_space \
(definitely + indirectly lost). The default sample type is alloc_space; choose another with \
-sample_index. The allocating function is the sample label `allocator`.\n\n\
collapsed: folded stacks of one metric (--metric), `root;caller;callee;allocator VALUE` per \
line, for flamegraph.pl, speedscope and others.\n\n\
json: every metric of every site, with symbolized stacks (docs/EXPORT.md).";

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
memlens export memlens.myprog.1234.trace --format pprof -o heap.pb.gz\n  \
go tool pprof -top -sample_index=leaked_space heap.pb.gz\n  \
memlens export memlens.myprog.1234.trace --format collapsed --metric allocations > allocs.folded\n  \
memlens export memlens.myprog.1234.trace --format json | jq '.sites[0]'")]
pub struct ExportArgs {
    /// The trace file to read.
    pub trace: PathBuf,
    /// pprof (binary, gzipped), collapsed (text) or json.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to FILE (`-`: stdout). Without it: stdout, which must not be a terminal for
    /// pprof.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// For --format collapsed: the metric of the values (default: peak). pprof and json
    /// carry every metric.
    #[arg(short, long, value_name = "METRIC", value_parser = metric_parser())]
    pub metric: Option<Metric>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Pprof,
    Collapsed,
    Json,
}

pub fn main(args: ExportArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(e),
    }
}

fn run(args: &ExportArgs) -> Result<(), String> {
    let dest = Dest::new(args.output.as_deref());
    if args.format == ExportFormat::Pprof {
        dest.refuse_terminal("a binary pprof profile", "heap.pb.gz")?;
    }
    let opts =
        match (args.format, args.metric) {
            (ExportFormat::Collapsed, m) => {
                ProfileOptions::for_metrics(&[m.unwrap_or(Metric::PeakBytes)])
            }
            (_, Some(_)) => return Err(
                "--metric applies to --format collapsed only: pprof and json carry every metric"
                    .to_string(),
            ),
            (_, None) => ProfileOptions::all(),
        };
    let profile = load(&args.trace, &opts)?;
    let mut sym = Symbolizer::for_trace(&profile.metadata);
    sym.prefetch(profile.frames());
    let data = match args.format {
        ExportFormat::Pprof => crate::pprof::gzipped(&profile, &mut sym),
        ExportFormat::Collapsed => {
            let metric = args.metric.unwrap_or(Metric::PeakBytes);
            require_known(&profile, metric)?;
            folded_text(&folded(&profile, &mut sym, metric, |f| f.function.clone())).into_bytes()
        }
        ExportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&json(&profile, &mut sym)).unwrap_or_default();
            s.push('\n');
            s.into_bytes()
        }
    };
    if args.format != ExportFormat::Json {
        for w in profile.warnings.iter().chain(sym.warnings()) {
            crate::say!("memlens: warning: {w}");
        }
    }
    dest.write(&data)
}

/// Every metric of a site as `key: value` (leak metrics `null` without a leak check).
pub fn json_values(p: &Profile, values: &memlens_analysis::profile::Values) -> Map<String, Value> {
    METRICS
        .iter()
        .map(|m| {
            let v = if p.known(m.metric) {
                json!(values[m.metric])
            } else {
                Value::Null
            };
            (m.key.to_string(), v)
        })
        .collect()
}

/// The JSON export (`docs/EXPORT.md`).
pub fn json(p: &Profile, sym: &mut Symbolizer) -> Value {
    let mut sites: Vec<_> = p.sites.iter().collect();
    sites.sort_by(|a, b| {
        let k = |s: &memlens_analysis::profile::SiteProfile| {
            (s.values[Metric::Allocated], s.values[Metric::Allocations])
        };
        k(b).cmp(&k(a))
            .then((a.stack, a.func).cmp(&(b.stack, b.func)))
    });
    let sites: Vec<Value> = sites
        .into_iter()
        .map(|s| {
            let mut o = Map::new();
            o.insert("allocator".into(), json!(s.func.name()));
            o.extend(json_values(p, &s.values));
            let stack: Vec<Value> = sym.stack(p.stack(s.stack)).iter().map(frame_json).collect();
            o.insert("stack".into(), Value::Array(stack));
            Value::Object(o)
        })
        .collect();
    let metrics: Vec<Value> = METRICS
        .iter()
        .map(|m| json!({"name": m.name, "key": m.key, "unit": m.unit.name(), "title": m.title}))
        .collect();
    let warnings: Vec<&String> = p.warnings.iter().chain(sym.warnings()).collect();
    json!({
        "trace": json_trace(&p.path, &p.header, &p.metadata, p.truncation.as_ref(), p.end.as_ref(), &warnings),
        "leak_check": p.leak_check,
        "peak_time_ms": ms(p.totals.peak_heap_ns),
        "metrics": metrics,
        "totals": json_values(p, &p.sums),
        "sites": sites,
    })
}
