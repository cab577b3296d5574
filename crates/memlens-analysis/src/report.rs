//! The report of one trace, in **one streaming pass** over the events: totals, the peak
//! heap and its composition, memory not freed, the hottest sites, temporary allocations,
//! growth (logical leaks), heap vs RSS, advice, and (when the trace has an exit scan) the
//! leak analysis.
//!
//! The heap's composition at its peak needs no second pass: each site remembers its live
//! bytes at the latest peak lazily. A new peak bumps an epoch (O(1)); a site about to
//! change whose epoch is older first saves its live bytes as "at the peak" (they have not
//! changed since). Growth floors are kept per site in bounded memory (`growth.rs`).
//! Nothing is kept per event, so traces larger than memory are fine.
//!
//! With a window (`--from`/`--to`), every event before the window is still replayed, so
//! the heap the window starts with is right; only allocations made in the window are
//! counted, the peak is the window's, and "not freed" means allocated in the window and
//! still live at its end. Events after the window are not read.
//!
//! The pass is `report/pass.rs`; each section's type and computation is in
//! `report/sections.rs`.

mod pass;
mod sections;

pub use sections::{
    GrowingSite, Growth, NotFreed, PeakHeap, TemporaryAllocations, TemporarySite, Totals,
};

use crate::advice::Advice;
use crate::heap_rss::HeapVsRss;
use crate::leaks::{LeakReport, Resolution};
use crate::site::{run_end_ns, Progress, Site};
use crate::window::{Window, WindowSpec};
use crate::Error;
use memlens_trace::reader::{EndRecord, Metadata, Notice, RawFrame, TraceReader, Truncation};
use memlens_trace::{Header, NoticeKind};
use std::path::PathBuf;

/// What to compute.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Keep at most this many entries in each list of the report.
    pub top: usize,
    /// The part of the run to report on (default: all of it).
    pub window: WindowSpec,
    /// Also run the leak analysis in the same pass, at this resolution, when the window
    /// reaches the end of the run ([`Report::leaks`]).
    pub leaks: Option<Resolution>,
    /// With `leaks`: also classify heap errors (costs a map of freed blocks); without,
    /// the leak report has the leak kinds only.
    pub heap_errors: bool,
    pub sort: SortOptions,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            top: 10,
            window: WindowSpec::default(),
            leaks: Some(Resolution::High),
            heap_errors: false,
            sort: SortOptions::default(),
        }
    }
}

/// Orders of the lists that have more than one sensible order (the first variant of each
/// is the default). `hotspots` always has both of its lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SortOptions {
    pub peak: LiveSort,
    pub not_freed: LiveSort,
    pub temporary: TemporarySort,
    pub growth: GrowthSort,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LiveSort {
    #[default]
    Bytes,
    Blocks,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TemporarySort {
    /// Number of temporary allocations.
    #[default]
    Count,
    /// Bytes of temporary allocations.
    Bytes,
    /// Temporary allocations as a share of the site's allocations.
    Fraction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrowthSort {
    /// Bytes per second.
    #[default]
    Rate,
    /// How much the floor rose.
    Growth,
    /// Mann–Kendall confidence.
    Confidence,
}

/// The analysis of one trace. Stacks are raw; symbolize the ones you print with
/// [`crate::Symbolizer`].
#[derive(Clone, Debug)]
pub struct Report {
    pub path: PathBuf,
    pub header: Header,
    pub truncation: Option<Truncation>,
    pub end: Option<EndRecord>,
    pub metadata: Metadata,
    /// The window reported on (`is_whole()` when it is the whole run).
    pub window: Window,
    pub totals: Totals,
    pub peak: PeakHeap,
    pub not_freed: NotFreed,
    /// Sites by number of allocations (descending), at most `top`.
    pub by_allocations: Vec<Site>,
    /// Sites by bytes allocated (descending), at most `top`.
    pub by_bytes: Vec<Site>,
    /// Number of distinct allocation sites that allocated in the window.
    pub site_count: usize,
    pub temporary: TemporaryAllocations,
    pub growth: Growth,
    /// `None` when the window has no RSS sample.
    pub heap_vs_rss: Option<HeapVsRss>,
    /// At most `top` lines, ordered by rule then weight.
    pub advice: Vec<Advice>,
    /// The leak analysis, when asked for and the window reaches the end of the run. Its
    /// `scan` is `None` when the trace has no exit scan.
    pub leaks: Option<LeakReport>,
    /// Things a reader of the report should know (lost events, anomalies...).
    pub warnings: Vec<String>,
}

impl Report {
    /// Analyse a trace.
    pub fn build(reader: &TraceReader, opts: &ReportOptions) -> Result<Report, Error> {
        Self::build_with_progress(reader, opts, &mut |_| {})
    }

    /// Analyse a trace, calling `progress` whenever an event chunk has been consumed: one
    /// pass over the events (`pass.rs`), then each section from what it kept
    /// (`sections.rs`).
    pub fn build_with_progress(
        reader: &TraceReader,
        opts: &ReportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Report, Error> {
        let metadata = reader.metadata()?;
        let run_end = run_end_ns(reader, &metadata);
        let win = opts.window.resolve(run_end).map_err(Error::Window)?;
        let to_end = win.to_ns >= run_end;
        let want_leaks = opts.leaks.filter(|_| to_end);
        let mut f = pass::run(
            reader,
            &metadata,
            win,
            to_end,
            want_leaks.map(|_| opts.heap_errors),
            progress,
        )?;
        let leaks = match (f.leaks.take(), want_leaks) {
            (Some(t), Some(res)) => Some(t.finish(reader, &metadata, &f.replay, res, progress)?),
            _ => None,
        };
        let top = opts.top;
        let totals = sections::totals(&f, &metadata);
        let (by_allocations, by_bytes, site_count) = sections::hotspots(&f, top);
        let (growing, judged) = sections::growing(&f, opts);
        let mut advice = sections::advice(&f, &growing, top);
        if PythonInfo::of(&metadata).is_some() {
            sections::python_advice(&mut advice, &metadata, leaks.as_ref(), top);
        }
        Ok(Report {
            path: reader.path().to_path_buf(),
            header: reader.header().clone(),
            truncation: reader.truncation().cloned(),
            end: metadata.end,
            window: win,
            peak: sections::peak(&f, opts),
            not_freed: sections::not_freed(&f, &totals, opts),
            by_allocations,
            by_bytes,
            site_count,
            temporary: sections::temporary(&f, &totals, opts),
            growth: sections::growth(&f, growing, judged, top),
            heap_vs_rss: sections::heap_vs_rss(&f, &metadata),
            advice,
            leaks,
            warnings: sections::warnings(&metadata, &totals),
            totals,
            metadata,
        })
    }

    /// The frames of a stack (innermost first); empty if the trace does not define it.
    pub fn stack(&self, id: u32) -> &[RawFrame] {
        self.metadata.stacks.get(&id).map_or(&[], |v| v.as_slice())
    }
}

/// A recorder's finding about the process that limits what the report can show, in one
/// sentence; `None` for findings that limit nothing (Python frames read, with every
/// object allocation seen).
pub fn notice_sentence(n: &Notice) -> Option<String> {
    match n.kind {
        NoticeKind::OwnAllocator => {
            let file = n.module.rsplit('/').next().unwrap_or(&n.module);
            let names: Vec<&str> = n.symbols.split(',').collect();
            let list = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => n.symbols.clone(),
            };
            Some(format!(
                "{file} defines its own {list}: the blocks it serves itself never reach the C library's allocator, where memlens records, and cannot be seen; what it passes on to the C library (a call of glibc's `__libc_malloc` and the like, or of an allocation function it does not define) is recorded"
            ))
        }
        NoticeKind::PythonFrames => {
            let p = PythonInfo::from_notice(n)?;
            (p.allocator == "pymalloc").then(|| {
                format!(
                    "Python {} used its pymalloc allocator, so Python objects of 512 bytes or less come from pymalloc's arenas and are not seen one by one; to see every object, start it with PYTHONMALLOC=malloc (memlens run's default, --python-allocator=malloc; a process memlens attached to keeps the allocator it started with)",
                    p.version
                )
            })
        }
        NoticeKind::PythonWorkDone => None,
        NoticeKind::PythonUnsupported => Some(format!(
            "Python {} is not a version whose frames memlens reads (3.11, 3.12 and 3.13), so its stacks show the interpreter's C functions instead of Python functions and lines",
            n.symbols
        )),
    }
}

/// What the recorder found about a CPython interpreter whose frames it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonInfo {
    /// `3.11.2`.
    pub version: String,
    /// The allocator of Python's object domain: `malloc`, `pymalloc`, or empty when
    /// unknown.
    pub allocator: String,
    /// Whether stacks show Python frames (false: `--python-frames=no`, native stacks).
    pub frames: bool,
}

impl PythonInfo {
    fn from_notice(n: &Notice) -> Option<PythonInfo> {
        if n.kind != NoticeKind::PythonFrames {
            return None;
        }
        // `3.11.2,malloc`, and `,native` when no frame was read.
        let mut parts = n.symbols.split(',');
        let version = parts.next().unwrap_or_default();
        let allocator = parts.next().unwrap_or_default();
        Some(PythonInfo {
            version: version.to_string(),
            allocator: allocator.to_string(),
            frames: parts.next() != Some("native"),
        })
    }

    /// The CPython interpreter a trace recorded, if the recorder recognised one.
    pub fn of(metadata: &Metadata) -> Option<PythonInfo> {
        metadata.notices.iter().find_map(PythonInfo::from_notice)
    }
}

#[cfg(test)]
mod notice_tests {
    use super::*;

    fn own(symbols: &str) -> String {
        notice_sentence(&Notice {
            ts: 0,
            kind: NoticeKind::OwnAllocator,
            module: "/opt/app/bin/server".into(),
            symbols: symbols.into(),
        })
        .unwrap()
    }

    #[test]
    fn python_notices_warn_only_when_objects_are_hidden() {
        let n = |kind, symbols: &str| Notice {
            ts: 0,
            kind,
            module: "/usr/bin/python3.11".into(),
            symbols: symbols.into(),
        };
        assert_eq!(
            notice_sentence(&n(NoticeKind::PythonFrames, "3.11.2,malloc")),
            None
        );
        let pymalloc = notice_sentence(&n(NoticeKind::PythonFrames, "3.12.1,pymalloc")).unwrap();
        assert!(
            pymalloc.starts_with("Python 3.12.1 used its pymalloc allocator"),
            "{pymalloc}"
        );
        let old = notice_sentence(&n(NoticeKind::PythonUnsupported, "3.10.13")).unwrap();
        assert!(
            old.starts_with("Python 3.10.13 is not a version whose frames"),
            "{old}"
        );
        let md = Metadata {
            notices: vec![n(NoticeKind::PythonFrames, "3.13.0,malloc")],
            ..Default::default()
        };
        assert_eq!(
            PythonInfo::of(&md),
            Some(PythonInfo {
                version: "3.13.0".into(),
                allocator: "malloc".into(),
                frames: true,
            })
        );
        let md = Metadata {
            notices: vec![n(NoticeKind::PythonFrames, "3.11.2,pymalloc,native")],
            ..Default::default()
        };
        assert_eq!(
            PythonInfo::of(&md),
            Some(PythonInfo {
                version: "3.11.2".into(),
                allocator: "pymalloc".into(),
                frames: false,
            })
        );
    }

    #[test]
    fn own_allocator_sentence_names_the_file_and_lists_the_functions() {
        assert!(
            own("malloc").starts_with("server defines its own malloc: the blocks"),
            "{}",
            own("malloc")
        );
        assert!(own("malloc,free").starts_with("server defines its own malloc and free: the"));
        assert!(own("malloc,calloc,free")
            .starts_with("server defines its own malloc, calloc and free: the"));
    }
}
