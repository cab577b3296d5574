//! Small pure helpers shared by memlens's crates, so each exists once:
//!
//! * [`units`]: sizes, durations and rates as people type and read them (`64MiB`,
//!   `1m30s`, `10MiB/h`; `1.50 KiB`, `+2.00 KiB/s`, `1,234 blocks`, `9.0 ms`).
//! * [`stats`]: the Theil–Sen slope with Sen's confidence interval, the Mann–Kendall
//!   confidence of a rise, medians and trailing minima (`memlens watch`'s RSS trend and
//!   the report's growth section).
//! * [`chart`]: the one SVG chart renderer (`memlens plot`, `memlens watch --plot`).
//! * [`signal`]: signal names (`SIGTERM`), the same in every message that prints one.
//! * [`glob`]: `*`/`?` wildcards (suppression patterns, `--trace-children-skip`), without
//!   allocating, so the recorder uses them too.
//!
//! No dependencies.

pub mod chart;
pub mod glob;
pub mod signal;
pub mod stats;
pub mod units;
