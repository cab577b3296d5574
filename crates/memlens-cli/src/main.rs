//! The `memlens` command line: presentation layer over the recorder (`run`), the
//! analysis library (`report`) and the /proc sampler (`watch`).

mod report;
mod run;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "memlens",
    version,
    about = "Memory profiler and leak detector for Linux programs",
    long_about = "memlens records every heap allocation of a program, with its stack, without \
rebuilding it, and turns the trace into reports.\n\n\
Typical session:\n  \
memlens run -- ./myprog arg1 arg2      # run it, print a summary, write memlens.myprog.<pid>.trace\n  \
memlens report memlens.myprog.<pid>.trace   # the full report (add --format json for machines)\n  \
memlens watch -- ./myprog              # its memory over time, from outside: growing or stable?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program under the recorder and write a trace per process.
    Run(run::RunArgs),
    /// Print the report of a trace: totals, peak heap, memory not freed at exit, top sites.
    Report(report::ReportArgs),
    /// Follow a process's memory over time from /proc (any language, no preload) and
    /// judge whether it grows.
    Watch(watch::WatchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Report(args) => report::main(args),
        Command::Watch(args) => watch::main(args),
    }
}

/// Print one error sentence for a person and return the generic failure code.
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("memlens: error: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// Exit status of memlens itself when it cannot do its job (bad input, missing program...).
pub const EXIT_USAGE: u8 = 125;
