//! The short summary `memlens run` prints on stderr when the program exits, from the
//! report it made of the trace (`==memlens==` lines).

use super::{describe_end, exec_unrecorded};
use crate::present::frames::site_labels;
use memlens_analysis::{Report, Symbolizer};
use memlens_common::units::{human_bytes, human_rate_per_sec, human_time, plural};
use memlens_trace::ExitKind;
use std::fmt::Write as _;
use std::path::Path;

/// The short summary `memlens run` shows on stderr when the program exits: one block of
/// lines prefixed `==memlens==`.
pub fn run_summary(r: &Report, trace: &Path) -> String {
    let mut sym = Symbolizer::for_trace(&r.metadata);
    let t = &r.totals;
    let attached = r.header.attach.is_some();
    let mut lines = crate::present::trace::attach_note(&r.header)
        .into_iter()
        .collect::<Vec<_>>();
    if let Some(note) = memlens_analysis::sampling::note(r.header.sample_interval) {
        lines.push(format!("figures {note}"));
    }
    lines.extend([
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
            "{}: {} in {}",
            if attached {
                "allocated while attached and still live at its end"
            } else {
                "not freed at exit"
            },
            human_bytes(t.not_freed_bytes),
            plural(t.not_freed_blocks, "block", "blocks")
        ),
    ]);
    if r.header.sample_interval != 0 {
        lines.push(crate::present::trace::LEAK_KINDS_UNDER_SAMPLING.to_string());
    }
    if t.untracked_frees > 0 {
        lines.push(format!(
            "{} of blocks allocated before recording started",
            plural(t.untracked_frees, "free", "frees")
        ));
    }
    let labels = |sym: &mut Symbolizer, stacks: Vec<u32>| site_labels(&r.metadata, sym, &stacks);
    let at = labels(
        &mut sym,
        r.not_freed.sites.iter().map(|s| s.stack).collect(),
    );
    for (s, at) in r.not_freed.sites.iter().zip(at) {
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
        let at = labels(&mut sym, r.by_allocations.iter().map(|s| s.stack).collect());
        for (s, at) in r.by_allocations.iter().zip(at) {
            lines.push(format!(
                "  {} ({}) at {at}",
                plural(s.stats.allocations, "allocation", "allocations"),
                human_bytes(s.stats.bytes_allocated)
            ));
        }
    }
    if !r.growth.sites.is_empty() {
        lines.push("keeps growing (memlens report explains):".to_string());
        let at = labels(
            &mut sym,
            r.growth.sites.iter().map(|g| g.site.stack).collect(),
        );
        for (g, at) in r.growth.sites.iter().zip(at) {
            lines.push(format!(
                "  {} to {} at {at}",
                human_rate_per_sec(g.fit.rate),
                human_bytes(g.fit.max_bytes)
            ));
        }
    }
    if let Some(e) = r
        .metadata
        .end
        .as_ref()
        .filter(|e| e.kind == ExitKind::Signal)
    {
        // A sampled run makes no leak check (LEAK_KINDS_UNDER_SAMPLING says why).
        lines.push(format!(
            "the program was {}; {}",
            describe_end(Some(e)),
            if r.header.sample_interval != 0 {
                "the figures are those of that moment"
            } else {
                "the leak check ran at that point"
            }
        ));
    }
    if let Some(tr) = &r.truncation {
        lines.push(format!("warning: the trace was cut short: {}", tr.reason));
    }
    // The last image of the program's process ended by exec: the one after it left no trace.
    if let Some(e) = r.end.as_ref().filter(|e| e.kind == ExitKind::Exec) {
        let why = exec_unrecorded(e.code).unwrap_or(
            "it did not load the recorder (static and setuid programs ignore LD_PRELOAD)",
        );
        lines.push(format!(
            "warning: the program replaced itself with exec and the new image was not recorded: {why}; \
             this summary describes only the image before the exec"
        ));
    }
    if let Some(note) = crate::present::trace::python_work_done_note(&r.metadata) {
        lines.push(note);
    }
    if let Some(p) = memlens_analysis::report::PythonInfo::of(&r.metadata) {
        let stacks = if p.frames {
            "stacks show Python functions and lines"
        } else {
            "stacks are native (--python-frames=no)"
        };
        if p.allocator == "malloc" {
            lines.push(format!(
                "Python {}: {stacks}; every Python object was allocated with malloc (PYTHONMALLOC=malloc)",
                p.version
            ));
        } else if !p.frames {
            lines.push(format!("Python {}: {stacks}", p.version));
        }
    }
    for w in r.warnings.iter().chain(sym.warnings()) {
        lines.push(format!("warning: {w}"));
    }
    lines.push(format!("trace: {}", trace.display()));
    let mut block = String::new();
    for l in lines {
        let _ = writeln!(block, "==memlens== {l}");
    }
    block
}

/// Print [`run_summary`] on stderr.
pub fn print_run_summary(r: &Report, trace: &Path) {
    crate::write_stderr(&run_summary(r, trace));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analyse;
    use memlens_analysis::ReportOptions;
    use memlens_trace::writer::TraceWriter;
    use memlens_trace::{AllocFunc, ChunkKind, EndCounters, Header};

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
        let opts = ReportOptions {
            top: 3,
            ..ReportOptions::default()
        };
        let s = run_summary(&analyse(&p, &opts).unwrap(), &p);
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
        let e = analyse(&p, &opts).unwrap_err();
        assert!(e.starts_with("cannot read ") && !e.contains('\n'), "{e}");
    }
}
