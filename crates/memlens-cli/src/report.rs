//! `memlens report`: owned by the analysis/report work (placeholder).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The trace file to read.
    pub trace: std::path::PathBuf,
}

pub fn main(_args: ReportArgs) -> ExitCode {
    crate::fail("report is not implemented yet")
}

/// Print the short summary `memlens run` shows on stderr when the program exits.
pub fn print_run_summary(_trace: &std::path::Path) {}
