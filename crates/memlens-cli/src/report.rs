//! `memlens report` and the summary `memlens run` prints: presentation of
//! [`memlens_analysis::Report`] as text for people or JSON for programs
//! (keys documented in `docs/REPORT_JSON.md`).

use memlens_analysis::{Frame, Report, ReportOptions, Site, Symbolizer};
use memlens_trace::reader::{EndRecord, TraceReader};
use memlens_trace::ExitKind;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The trace file to read.
    pub trace: PathBuf,
    /// Output format: text for people, json for programs.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many sites to show in each list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Frames of a stack shown in text reports before "... N more frames".
const TEXT_MAX_FRAMES: usize = 16;

pub fn main(args: ReportArgs) -> ExitCode {
    let report = match analyse(&args.trace, args.top) {
        Ok(r) => r,
        Err(msg) => return crate::fail(msg),
    };
    let mut sym = Symbolizer::new(&report.metadata.modules);
    let out = match args.format {
        Format::Text => text(&report, &mut sym, args.top),
        Format::Json => {
            let mut s =
                serde_json::to_string_pretty(&json_report(&report, &mut sym)).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    crate::print_stdout(&out)
}

/// Open and analyse a trace, with a progress bar on stderr if it is a terminal.
fn analyse(path: &Path, top: usize) -> Result<Report, String> {
    let reader = TraceReader::open(path).map_err(|e| e.to_string())?;
    let opts = ReportOptions { top };
    if !std::io::stderr().is_terminal() {
        return Report::build(&reader, &opts).map_err(|e| e.to_string());
    }
    let bar = indicatif::ProgressBar::new(reader.event_chunk_count() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>22} [{bar:40}] {percent:>3}%")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("reading events");
    let mut pass = 1;
    let result = Report::build_with_progress(&reader, &opts, &mut |p| {
        if p.pass != pass {
            pass = p.pass;
            bar.set_message("replaying to the peak");
        }
        bar.set_position(p.chunks_done);
    });
    bar.finish_and_clear();
    result.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Units

pub use memlens_common::units::human_bytes;

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.join(",")
}

/// A duration given in ns since the trace started, for people.
pub fn human_time(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

fn exit_kind_key(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::Exit => "exit",
        ExitKind::UnderscoreExit => "_exit",
        ExitKind::Signal => "signal",
        ExitKind::Exec => "exec",
    }
}

fn describe_end(end: Option<&EndRecord>) -> String {
    let Some(e) = end else {
        return "unknown (no end record: killed, still running, or not flushed)".to_string();
    };
    match e.kind {
        ExitKind::Exit => format!("exited with status {}", e.code),
        ExitKind::UnderscoreExit => format!("called _exit({})", e.code),
        ExitKind::Signal => match signal_name(e.code) {
            Some(name) => format!("killed by signal {} ({name})", e.code),
            None => format!("killed by signal {}", e.code),
        },
        ExitKind::Exec => "replaced itself with exec".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Text

/// `main (demo.c:12) [demo]`, `libfoo.so+0x1234`, `0x7f0012345678`.
pub fn frame_text(f: &Frame) -> String {
    let mut s = f.function.clone();
    match (f.file_name(), f.line) {
        (Some(file), Some(line)) => {
            let _ = write!(s, " ({file}:{line})");
        }
        (Some(file), None) => {
            let _ = write!(s, " ({file})");
        }
        _ => {}
    }
    // Unsymbolized frames already name their module (`libfoo.so+0x1234`).
    if let Some(m) = &f.module {
        if f.file.is_some() || !f.function.starts_with(m.as_str()) {
            let _ = write!(s, " [{m}]");
        }
    }
    if f.inlined {
        s.push_str(" (inlined)");
    }
    s
}

fn text_stack(out: &mut String, frames: &[Frame]) {
    if frames.is_empty() {
        out.push_str("    (no stack recorded)\n");
        return;
    }
    for f in frames.iter().take(TEXT_MAX_FRAMES) {
        let _ = writeln!(out, "    at {}", frame_text(f));
    }
    if frames.len() > TEXT_MAX_FRAMES {
        let _ = writeln!(
            out,
            "    ... {} more frames",
            frames.len() - TEXT_MAX_FRAMES
        );
    }
}

fn text(r: &Report, sym: &mut Symbolizer, top: usize) -> String {
    let mut o = String::new();
    let h = &r.header;
    let t = &r.totals;
    let _ = writeln!(o, "memlens report of {}", r.path.display());
    let _ = writeln!(
        o,
        "  program    {}",
        if h.exe.is_empty() { "?" } else { &h.exe }
    );
    if !h.argv.is_empty() {
        let _ = writeln!(o, "  command    {}", h.argv.join(" "));
    }
    let mut process = format!("pid {}, parent {}", h.pid, h.ppid);
    if h.forked_from != 0 {
        let _ = write!(process, ", forked from {}", h.forked_from);
    }
    let _ = writeln!(o, "  process    {process}");
    let _ = writeln!(
        o,
        "  ended      {} after {}",
        describe_end(r.end.as_ref()),
        human_time(t.runtime_ns)
    );
    if let Some(tr) = &r.truncation {
        let _ = writeln!(
            o,
            "  TRUNCATED  the trace was cut short: {}; the report covers what was recorded",
            tr.reason
        );
    }

    // Sections are rendered before the warnings so symbolization warnings are known.
    let mut body = String::new();
    let _ = writeln!(body, "\nTotals");
    let _ = writeln!(
        body,
        "  allocations        {} ({} through realloc)",
        count(t.allocations),
        count(t.reallocs)
    );
    let _ = writeln!(body, "  frees              {}", count(t.frees));
    if t.untracked_frees > 0 {
        let _ = writeln!(
            body,
            "  untracked frees    {} (of memory allocated before recording started)",
            count(t.untracked_frees)
        );
    }
    let _ = writeln!(
        body,
        "  bytes allocated    {}",
        human_bytes(t.bytes_allocated)
    );
    let _ = writeln!(
        body,
        "  peak heap          {} at {}",
        human_bytes(t.peak_heap_bytes),
        human_time(t.peak_heap_ns)
    );
    if let Some(rss) = t.peak_rss_bytes {
        let _ = writeln!(body, "  peak RSS           {}", human_bytes(rss));
    }
    let _ = writeln!(
        body,
        "  not freed at exit  {} in {}",
        human_bytes(t.not_freed_bytes),
        plural(t.not_freed_blocks, "block", "blocks")
    );

    let nf = &r.not_freed;
    let _ = writeln!(
        body,
        "\nNot freed at exit: {} in {} from {}",
        human_bytes(nf.bytes),
        plural(nf.blocks, "block", "blocks"),
        plural(nf.site_count as u64, "site", "sites")
    );
    if nf.sites.is_empty() {
        let _ = writeln!(body, "  nothing: every recorded allocation was freed");
    }
    for s in &nf.sites {
        site_text(&mut body, r, sym, s, SiteLine::Live);
    }
    more(&mut body, nf.site_count, nf.sites.len());

    let p = &r.peak;
    let _ = writeln!(
        body,
        "\nHeap at its peak ({}): {} in {}",
        human_time(p.time_ns),
        human_bytes(p.bytes),
        plural(p.blocks, "block", "blocks")
    );
    for s in &p.sites {
        site_text(&mut body, r, sym, s, SiteLine::Live);
    }
    more(&mut body, p.site_count, p.sites.len());

    let _ = writeln!(body, "\nTop {top} sites by number of allocations");
    for s in &r.by_allocations {
        site_text(&mut body, r, sym, s, SiteLine::Allocations);
    }
    let _ = writeln!(body, "\nTop {top} sites by bytes allocated");
    for s in &r.by_bytes {
        site_text(&mut body, r, sym, s, SiteLine::Bytes);
    }

    for w in r.warnings.iter().chain(sym.warnings()) {
        let _ = writeln!(o, "  warning    {w}");
    }
    o.push_str(&body);
    o
}

enum SiteLine {
    Live,
    Allocations,
    Bytes,
}

fn site_text(o: &mut String, r: &Report, sym: &mut Symbolizer, s: &Site, line: SiteLine) {
    let st = &s.stats;
    let alloc = s.func.name();
    let _ = match line {
        SiteLine::Live => writeln!(
            o,
            "  {} in {} from {alloc} ({}, {} in total)",
            human_bytes(st.live_bytes),
            plural(st.live_blocks, "block", "blocks"),
            plural(st.allocations, "allocation", "allocations"),
            human_bytes(st.bytes_allocated)
        ),
        SiteLine::Allocations => writeln!(
            o,
            "  {} from {alloc} ({} in total)",
            plural(st.allocations, "allocation", "allocations"),
            human_bytes(st.bytes_allocated)
        ),
        SiteLine::Bytes => writeln!(
            o,
            "  {} from {alloc} in {}",
            human_bytes(st.bytes_allocated),
            plural(st.allocations, "allocation", "allocations")
        ),
    };
    text_stack(o, &sym.stack(r.stack(s.stack)));
}

fn more(o: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(
            o,
            "  ... and {} (use --top to see more)",
            plural((total - shown) as u64, "more site", "more sites")
        );
    }
}

// ---------------------------------------------------------------------------------------
// JSON

/// One frame as JSON (`docs/REPORT_JSON.md`, FRAME; the same in `memlens leaks`).
pub fn frame_json(f: &Frame) -> Value {
    json!({"function": f.function, "file": f.file, "line": f.line, "module": f.module, "inlined": f.inlined})
}

fn json_site(r: &Report, sym: &mut Symbolizer, s: &Site) -> Value {
    let stack: Vec<Value> = sym.stack(r.stack(s.stack)).iter().map(frame_json).collect();
    json!({
        "allocations": s.stats.allocations,
        "bytes_allocated": s.stats.bytes_allocated,
        "live_bytes": s.stats.live_bytes,
        "live_blocks": s.stats.live_blocks,
        "allocator": s.func.name(),
        "stack": stack,
    })
}

fn json_sites(r: &Report, sym: &mut Symbolizer, sites: &[Site]) -> Value {
    Value::Array(sites.iter().map(|s| json_site(r, sym, s)).collect())
}

/// The report as JSON (see `docs/REPORT_JSON.md`).
pub fn json_report(r: &Report, sym: &mut Symbolizer) -> Value {
    let t = &r.totals;
    let peak = json!({
        "bytes": r.peak.bytes,
        "time_ms": ms(r.peak.time_ns),
        "sites": json_sites(r, sym, &r.peak.sites),
    });
    let not_freed = json!({
        "bytes": r.not_freed.bytes,
        "blocks": r.not_freed.blocks,
        "sites": json_sites(r, sym, &r.not_freed.sites),
    });
    let hotspots = json!({
        "by_allocations": json_sites(r, sym, &r.by_allocations),
        "by_bytes": json_sites(r, sym, &r.by_bytes),
    });
    // After symbolizing, so its warnings are included.
    let warnings: Vec<&String> = r.warnings.iter().chain(sym.warnings()).collect();
    let h = &r.header;
    json!({
        "trace": {
            "path": r.path.to_string_lossy(),
            "pid": h.pid,
            "ppid": h.ppid,
            "forked_from": if h.forked_from == 0 { Value::Null } else { json!(h.forked_from) },
            "exe": h.exe,
            "argv": h.argv,
            "truncated": r.truncation.as_ref().map(|t| t.reason.clone()),
            "exit": r.end.map(|e| json!({"kind": exit_kind_key(e.kind), "code": e.code})),
            "warnings": warnings,
        },
        "totals": {
            "allocations": t.allocations,
            "frees": t.frees,
            "reallocs": t.reallocs,
            "bytes_allocated": t.bytes_allocated,
            "peak_heap_bytes": t.peak_heap_bytes,
            "peak_heap_time_ms": ms(t.peak_heap_ns),
            "peak_rss_bytes": t.peak_rss_bytes,
            "runtime_ms": ms(t.runtime_ns),
            "not_freed_bytes": t.not_freed_bytes,
            "not_freed_blocks": t.not_freed_blocks,
            "untracked_frees": t.untracked_frees,
        },
        "peak": peak,
        "not_freed": not_freed,
        "hotspots": hotspots,
    })
}

// ---------------------------------------------------------------------------------------
// Run summary

/// Print the short summary `memlens run` shows on stderr when the program exits: one
/// block of lines prefixed `==memlens==`. `Err` is one sentence (the trace is unreadable).
pub fn print_run_summary(trace: &Path) -> Result<(), String> {
    let block = run_summary(trace)?;
    let _ = std::io::stderr().lock().write_all(block.as_bytes());
    Ok(())
}

/// Where a summary line points: the first frame in the program's own code, not in a
/// system library (`/lib`, `/usr/lib`: glibc's `strdup` or stdio are rarely what a user
/// wants to read first); the innermost frame if every frame is in a system library.
fn summary_frame(r: &Report, sym: &mut Symbolizer, stack: u32) -> String {
    let raw = r.stack(stack);
    let system = |m: u32| {
        r.metadata.modules.get(&m).is_some_and(|m| {
            ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"]
                .iter()
                .any(|p| m.path.starts_with(p))
                || m.path.starts_with("linux-vdso")
        })
    };
    let pick = raw.iter().find(|f| !system(f.module)).or(raw.first());
    match pick {
        Some(&f) => sym
            .frame(f)
            .first()
            .map(frame_text)
            .unwrap_or_else(|| "(no stack recorded)".to_string()),
        None => "(no stack recorded)".to_string(),
    }
}

/// The text of [`print_run_summary`].
fn run_summary(trace: &Path) -> Result<String, String> {
    let r = analyse(trace, 3)?;
    let mut sym = Symbolizer::new(&r.metadata.modules);
    let t = &r.totals;
    let mut lines = vec![
        format!(
            "{}, {}, {} allocated",
            plural(t.allocations, "allocation", "allocations"),
            plural(t.frees, "free", "frees"),
            human_bytes(t.bytes_allocated)
        ),
        format!(
            "peak heap: {} at {}",
            human_bytes(t.peak_heap_bytes),
            human_time(t.peak_heap_ns)
        ),
        format!(
            "not freed at exit: {} in {}",
            human_bytes(t.not_freed_bytes),
            plural(t.not_freed_blocks, "block", "blocks")
        ),
    ];
    for s in &r.not_freed.sites {
        let at = summary_frame(&r, &mut sym, s.stack);
        lines.push(format!(
            "  {} in {} at {at}",
            human_bytes(s.stats.live_bytes),
            plural(s.stats.live_blocks, "block", "blocks")
        ));
    }
    if r.not_freed.site_count > r.not_freed.sites.len() {
        lines.push(format!(
            "  ... and {} (memlens report shows them)",
            plural(
                (r.not_freed.site_count - r.not_freed.sites.len()) as u64,
                "more site",
                "more sites"
            )
        ));
    }
    if !r.by_allocations.is_empty() {
        lines.push("most allocations:".to_string());
        for s in &r.by_allocations {
            let at = summary_frame(&r, &mut sym, s.stack);
            lines.push(format!(
                "  {} ({}) at {at}",
                plural(s.stats.allocations, "allocation", "allocations"),
                human_bytes(s.stats.bytes_allocated)
            ));
        }
    }
    if let Some(tr) = &r.truncation {
        lines.push(format!("warning: the trace was cut short: {}", tr.reason));
    }
    for w in r.warnings.iter().chain(sym.warnings()) {
        lines.push(format!("warning: {w}"));
    }
    lines.push(format!("trace: {}", trace.display()));
    let mut block = String::new();
    for l in lines {
        let _ = writeln!(block, "==memlens== {l}");
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_trace::writer::TraceWriter;
    use memlens_trace::{AllocFunc, ChunkKind, EndCounters, Header};

    #[test]
    fn units() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(human_time(12_345), "0.012 ms");
        assert_eq!(human_time(9_000_000), "9.0 ms");
        assert_eq!(human_time(2_500_000_000), "2.50 s");
    }

    #[test]
    fn frame_lines() {
        let f = |function: &str, file: Option<&str>, line, module: Option<&str>, inlined| Frame {
            function: function.into(),
            file: file.map(Into::into),
            line,
            module: module.map(Into::into),
            inlined,
        };
        assert_eq!(
            frame_text(&f(
                "main",
                Some("/src/demo.c"),
                Some(12),
                Some("demo"),
                false
            )),
            "main (demo.c:12) [demo]"
        );
        assert_eq!(
            frame_text(&f("libfoo.so+0x1234", None, None, Some("libfoo.so"), false)),
            "libfoo.so+0x1234"
        );
        assert_eq!(frame_text(&f("0x7f00", None, None, None, false)), "0x7f00");
        assert_eq!(
            frame_text(&f("get", Some("v.h"), Some(3), Some("demo"), true)),
            "get (v.h:3) [demo] (inlined)"
        );
    }

    #[test]
    fn run_summary_lines() {
        let mut w = TraceWriter::new(
            Vec::new(),
            &Header {
                pid: 9,
                exe: "/bin/x".into(),
                ..Default::default()
            },
        )
        .unwrap();
        w.chunk(ChunkKind::Events, 0, |b| {
            for i in 0..5u64 {
                b.alloc(
                    i + 1,
                    AllocFunc::Malloc,
                    0x1000 * (i + 1),
                    1000 * (i + 1),
                    i as u32 + 1,
                )?;
            }
            b.free(10, AllocFunc::Free, 0x1000, 0)
        })
        .unwrap();
        w.chunk(ChunkKind::Meta, 0, |b| {
            for i in 1..=5u32 {
                b.stack(i, &[(0, 0x7000 + i as u64)])?;
            }
            Ok(())
        })
        .unwrap();
        w.chunk(ChunkKind::End, 0, |b| {
            b.end(
                20,
                memlens_trace::ExitKind::Exit,
                0,
                &EndCounters::default(),
            )
        })
        .unwrap();
        let p = std::env::temp_dir().join(format!("memlens-summary-{}.trace", std::process::id()));
        std::fs::write(&p, w.finish().unwrap()).unwrap();
        let s = run_summary(&p).unwrap();
        let want = format!(
            "==memlens== 5 allocations, 1 free, 14.65 KiB allocated\n\
             ==memlens== peak heap: 14.65 KiB at 0.000 ms\n\
             ==memlens== not freed at exit: 13.67 KiB in 4 blocks\n\
             ==memlens==   4.88 KiB in 1 block at 0x7005\n\
             ==memlens==   3.91 KiB in 1 block at 0x7004\n\
             ==memlens==   2.93 KiB in 1 block at 0x7003\n\
             ==memlens==   ... and 1 more site (memlens report shows them)\n\
             ==memlens== most allocations:\n\
             ==memlens==   1 allocation (4.88 KiB) at 0x7005\n\
             ==memlens==   1 allocation (3.91 KiB) at 0x7004\n\
             ==memlens==   1 allocation (2.93 KiB) at 0x7003\n\
             ==memlens== trace: {}\n",
            p.display()
        );
        assert_eq!(s, want);
        std::fs::remove_file(&p).ok();
        let e = run_summary(&p).unwrap_err();
        assert!(e.starts_with("cannot read ") && !e.contains('\n'), "{e}");
    }
}
