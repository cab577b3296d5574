//! The CLI's presentation toolbox, shared by every command that prints or writes
//! something: the progress bar ([`progress`]), frames and stacks as text and JSON
//! ([`frames`]), where an output goes ([`output`]), the `trace` object every JSON output
//! starts with ([`trace`]), the SARIF pieces ([`sarif`]), and the `--from/--to` window. Sizes, times, counts and rates
//! are formatted by `memlens_common::units`, nothing here.
//!
//! A command's own views (the report's sections, the leak records) are in its module and
//! use these; nothing here imports a command.

pub mod frames;
pub mod output;
pub mod progress;
pub mod sarif;
pub mod trace;

use memlens_analysis::{TimePoint, WindowSpec};

/// `--top N`: how many entries a list shows, at least 1 (0 would show lists that are
/// empty yet say how many more there are).
pub fn parse_top(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("it must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// `--from` / `--to` as a window; `Err` is one sentence.
pub fn window_spec(from: Option<&str>, to: Option<&str>) -> Result<WindowSpec, String> {
    let parse = |flag: &str, v: Option<&str>| {
        v.map(|s| TimePoint::parse(s).map_err(|e| format!("{flag}: {e}")))
            .transpose()
    };
    Ok(WindowSpec {
        from: parse("--from", from)?,
        to: parse("--to", to)?,
        ..Default::default()
    })
}

/// Nanoseconds as the milliseconds of the JSON outputs.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
