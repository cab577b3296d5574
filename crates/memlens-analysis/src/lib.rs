//! Analysis of memlens traces.
//!
//! * [`replay`]: applies events to a model of the live heap ([`replay::Replay`]).
//! * [`report`]: builds a [`Report`] (totals, peak heap, not freed at exit, top sites)
//!   with two streaming passes over a trace.
//! * [`profile`]: every metric of every allocation site ([`Profile`]), for flame graphs
//!   and exports; [`diff`] compares two profiles site by site, matching sites by their
//!   symbolized stacks.
//! * [`symbolize`]: turns the raw stacks of the sites you print into functions and source
//!   lines ([`Symbolizer`]), refusing to use binaries that changed since recording.
//!
//! ```no_run
//! use memlens_analysis::{Report, ReportOptions, Symbolizer};
//! let reader = memlens_trace::reader::TraceReader::open("memlens.prog.42.trace")?;
//! let report = Report::build(&reader, &ReportOptions { top: 5 })?;
//! let mut sym = Symbolizer::new(&report.metadata.modules);
//! for site in &report.not_freed.sites {
//!     let frames = sym.stack(report.stack(site.stack));
//!     println!("{} bytes at {}", site.stats.live_bytes, frames[0].function);
//! }
//! # Ok::<(), memlens_analysis::Error>(())
//! ```

pub mod diff;
pub mod leaks;
pub mod profile;
pub mod replay;
pub mod report;
pub mod suppressions;
pub mod symbolize;

pub use profile::{Metric, Profile, ProfileOptions};
pub use report::{NotFreed, PeakHeap, Progress, Report, ReportOptions, Site, SiteStats, Totals};
pub use symbolize::{Frame, Symbolizer};

use memlens_trace::reader::TraceError;
use std::fmt;

/// Why an analysis failed. `Display` gives one sentence for a person.
#[derive(Debug)]
pub enum Error {
    /// The trace cannot be read (not a trace, unreadable, damaged).
    Trace(TraceError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Trace(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Trace(e) => Some(e),
        }
    }
}

impl From<TraceError> for Error {
    fn from(e: TraceError) -> Self {
        Error::Trace(e)
    }
}
