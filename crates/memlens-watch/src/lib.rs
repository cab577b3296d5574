//! `memlens watch`: the memory of any process over time, read from `/proc`, with a
//! verdict on its trend. Nothing is injected into the process, so it works for any
//! language and for static binaries.
//!
//! * [`proc`]: one reading of a process or process tree (`smaps_rollup`, falling back
//!   to `status` and `statm`), and memlens's own cost.
//! * [`history`]: every sample of a watch in bounded memory (merging old samples, keeping
//!   their minimum, maximum and mean).
//! * [`trend`]: Theil–Sen slope of the series' floor with Sen's confidence interval, and
//!   the verdict: growing, stable or inconclusive.
//! * [`limit`]: the cgroup limit or the machine's memory, for the time-to-limit projection.
//! * [`plot`]: what the SVG charts show (drawn by `memlens_common::chart`): one process,
//!   or `memlens top`'s growers.
//! * [`processes`]: every process of the machine or of a cgroup, identified by pid and
//!   start time, with restarts linked (`memlens top`).
//! * [`kernel`]: the memory no process owns (`/proc/meminfo`, the cgroup's kernel
//!   counters, `/proc/slabinfo`) and what its growth means.
//! * [`next_step`]: the runtime of a growing process and the command that shows what grows.
//!
//! ```
//! use memlens_watch::trend::{analyze, TrendConfig, Verdict};
//! // 4 KiB per second for ten minutes.
//! let t: Vec<f64> = (0..600).map(|i| i as f64).collect();
//! let v: Vec<f64> = t.iter().map(|x| 50e6 + 4096.0 * x).collect();
//! let trend = analyze(&t, &v, &TrendConfig::default());
//! assert_eq!(trend.verdict, Verdict::Growing);
//! assert!((trend.slope - 4096.0).abs() < 1e-6);
//! ```

pub mod history;
pub mod kernel;
pub mod limit;
pub mod next_step;
pub mod plot;
pub mod proc;
pub mod processes;
pub mod trend;
