//! `memlens watch`'s files (`crate::sample_files`): a CSV row per sample of the watched
//! tree (`--csv`), and at the end its chart (`--plot`) and the JSON report (`--json`).

use super::{other, report, Failure, Summary, WatchArgs};
use crate::sample_files::SampleFiles;
use memlens_watch::plot;
use memlens_watch::proc::TreeSample;

pub(super) struct Outputs {
    files: SampleFiles,
}

impl Outputs {
    pub(super) fn open(args: &WatchArgs) -> Result<Outputs, Failure> {
        SampleFiles::open(
            args.csv.as_deref(),
            args.json.as_deref(),
            args.plot.as_deref(),
        )
        .map(|files| Outputs { files })
        .map_err(other)
    }

    /// The files written, for the report: `csv mem.csv`, `plot mem.svg`...
    pub(super) fn names(&self) -> Vec<String> {
        self.files.names()
    }

    /// The CSV's header line.
    pub(super) fn csv_header(&mut self) {
        self.files
            .csv_header("t_s,unix_s,rss,pss,uss,swap,anon,file,processes");
    }

    /// One sample as a CSV row, at `t` seconds into the watch (`unix`: the same moment
    /// in Unix time).
    pub(super) fn csv_sample(&mut self, t: f64, unix: f64, s: &TreeSample) {
        if !self.files.wants_csv() {
            return;
        }
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let m = &s.mem;
        let row = format!(
            "{t:.3},{unix:.3},{},{},{},{},{},{},{}\n",
            m.rss,
            opt(m.pss),
            opt(m.uss),
            opt(m.swap),
            opt(m.anon),
            opt(m.file),
            s.processes
        );
        self.files.csv_write(&row);
    }

    pub(super) fn finish_csv(&mut self) {
        self.files.finish_csv();
    }

    /// The chart, as SVG or (for a `.png` name) PNG. `Err` is one sentence.
    pub(super) fn write_plot(&mut self, s: &Summary) -> Result<(), String> {
        if !self.files.wants_plot() {
            return Ok(());
        }
        self.files
            .write_plot(plot::svg(&s.history.points(), &report::plot_info(s)))
    }

    /// The JSON report. A reader that went away is no error; `Err` is one sentence.
    pub(super) fn write_json(&mut self, s: &Summary) -> Result<(), String> {
        self.files.write_json(&report::json(s))
    }
}
