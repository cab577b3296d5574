//! `memlens run --pprof-every DURATION DIR`: a gzipped pprof profile of every recorded
//! process, written into DIR every period while the program runs and once more when it
//! has ended, for continuous-profiling backends (Pyroscope, Parca...) that ingest pprof
//! files. Shipping them is left to the backend's own agent or a `curl` line (README).
//!
//! A thread of `memlens run` wakes every period, reads the list of traces (the run's
//! manifest) and, for each, reads the trace as far as it is written (a trace being
//! written reads as one cut short: every complete chunk counts) and writes
//! `DIR/memlens-PID-TIMESTAMP.pb.gz` through the export's pprof writer: in-use space and
//! objects at that moment, space and objects allocated since the process started (as Go's
//! heap profiles count them), estimates under `--sample`. The recorder flushes its
//! threads' buffers at least twice a period (`MEMLENS_FLUSH_INTERVAL_MS`), so a profile
//! lags the program by less than that. Each profile re-reads its trace from the start:
//! cheap for a sampled trace (under a megabyte a minute), costly for a full one.

use memlens_analysis::{Profile, ProfileOptions, Symbolizer};
use memlens_trace::reader::TraceReader;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// The thread writing the profiles.
pub struct Writer {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Start writing a profile of each trace listed in `manifest` into `dir` every
    /// `period`.
    pub fn start(period: Duration, dir: PathBuf, manifest: PathBuf) -> Writer {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut warned = false;
            loop {
                let last = !matches!(
                    stopped.recv_timeout(period),
                    Err(mpsc::RecvTimeoutError::Timeout)
                );
                for trace in traces(&manifest) {
                    if let Err(e) = write_profile(&trace, &dir) {
                        // One warning per run: the next period may well succeed (a trace
                        // still empty, a full disk freed meanwhile).
                        if !warned || last {
                            crate::say!("memlens: warning: --pprof-every: {e}");
                            warned = true;
                        }
                    }
                }
                if last {
                    break;
                }
            }
        });
        Writer { stop, thread }
    }

    /// Write the last profiles (the program has ended) and wait for the thread.
    pub fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The traces listed in the manifest so far.
fn traces(manifest: &Path) -> Vec<PathBuf> {
    memlens_trace::env::manifest_paths(&std::fs::read(manifest).unwrap_or_default())
}

/// Profile `trace` as written so far into `dir/memlens-PID-TIMESTAMP.pb.gz`.
fn write_profile(trace: &Path, dir: &Path) -> Result<PathBuf, String> {
    let reader = TraceReader::open(trace).map_err(|e| format!("{}: {e}", trace.display()))?;
    let opts = ProfileOptions {
        leaks: false,
        ..ProfileOptions::all()
    };
    let profile =
        Profile::build(&reader, &opts).map_err(|e| format!("{}: {e}", trace.display()))?;
    let mut sym = Symbolizer::new(&profile.metadata.modules);
    sym.prefetch(profile.frames());
    let data = crate::pprof::gzipped(&profile, &mut sym);
    let name = format!(
        "memlens-{}-{}.pb.gz",
        reader.header().pid,
        utc_stamp(SystemTime::now())
    );
    let path = dir.join(name);
    // Written under a temporary name and renamed: an agent watching the directory never
    // picks up half a file.
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, &data)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// `20261206T140250.123Z`: UTC, to the millisecond, sortable.
fn utc_stamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let u = memlens_common::units::utc_from_unix_secs(d.as_secs());
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        u.year,
        u.month,
        u.day,
        u.hour,
        u.minute,
        u.second,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_565_770_123);
        assert_eq!(utc_stamp(t), "20261206T140250.123Z");
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000.000Z");
    }
}
