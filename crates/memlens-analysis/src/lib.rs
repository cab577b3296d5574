//! Analysis of memlens traces.
//!
//! * [`replay`]: applies events to a model of the live heap ([`replay::Replay`]).
//! * [`report`]: builds a [`Report`] in one streaming pass over a trace: totals, peak
//!   heap, not freed at exit, top sites, temporary allocations, growth, heap vs RSS,
//!   advice, and the leak analysis, for the whole run or a [`window`] of it.
//! * [`site`]: what the passes share: an allocation [`Site`] and its statistics, the
//!   [`Progress`] of a pass, the end of a run.
//! * [`temporary`]: the definition of a temporary allocation, for every view that counts
//!   them.
//! * [`growth`]: per-site floors of live bytes over time, and the growing-site rules.
//! * [`heap_rss`]: the split of the RSS into heap, allocator overhead and the rest.
//! * [`advice`]: the advice rules and their thresholds.
//! * [`timeline`]: heap, RSS and top sites over time, downsampled, for charts.
//! * [`leaks`]: memcheck's leak kinds from the exit scan, and heap errors.
//! * [`profile`]: every metric of every allocation site ([`Profile`]), for flame graphs
//!   and exports; [`diff`] compares two profiles site by site, matching sites by their
//!   symbolized stacks.
//! * [`budgets`]: budget files (`memlens.toml`): components of a program by thread,
//!   module or function, their figures in one pass, limits, baselines, and threads that
//!   must not allocate.
//! * [`symbolize`]: turns the raw stacks of the sites you print into functions and source
//!   lines ([`Symbolizer`]), refusing to use binaries that changed since recording.
//! * [`variables`]: where global and static variables are declared (file and line), from
//!   a module's DWARF.
//!
//! ```no_run
//! use memlens_analysis::{Report, ReportOptions, Symbolizer};
//! let reader = memlens_trace::reader::TraceReader::open("memlens.prog.42.trace")?;
//! let report = Report::build(&reader, &ReportOptions { top: 5, ..Default::default() })?;
//! let mut sym = Symbolizer::for_trace(&report.metadata);
//! for site in &report.not_freed.sites {
//!     let frames = sym.stack(report.stack(site.stack));
//!     println!("{} bytes at {}", site.stats.live_bytes, frames[0].function);
//! }
//! # Ok::<(), memlens_analysis::Error>(())
//! ```

pub mod advice;
pub mod budgets;
pub mod diff;
pub mod growth;
pub mod heap_rss;
pub mod leaks;
pub mod profile;
pub mod python;
pub mod replay;
pub mod report;
pub mod sampling;
pub mod site;
pub mod suppressions;
pub mod symbolize;
pub mod temporary;
pub mod timeline;
pub mod variables;
pub mod window;

pub use profile::{Metric, Profile, ProfileOptions};
pub use report::{
    GrowingSite, GrowthSort, LiveSort, NotFreed, PeakHeap, Report, ReportOptions, SortOptions,
    TemporarySort, Totals,
};
pub use site::{Progress, Site, SiteStats};
pub use symbolize::{Frame, Symbolizer};
pub use window::{TimePoint, Window, WindowSpec};

use memlens_trace::reader::TraceError;
use std::fmt;

/// Why an analysis failed. `Display` gives one sentence for a person.
#[derive(Debug)]
pub enum Error {
    /// The trace cannot be read (not a trace, unreadable, damaged).
    Trace(TraceError),
    /// The time window does not fit the run (one sentence naming the option).
    Window(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Trace(e) => e.fmt(f),
            Error::Window(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Trace(e) => Some(e),
            Error::Window(_) => None,
        }
    }
}

impl From<TraceError> for Error {
    fn from(e: TraceError) -> Self {
        Error::Trace(e)
    }
}
