//! `memlens watch`'s files: the CSV, written sample by sample (`--csv`), and at the end the
//! chart (`--plot`, SVG or PNG) and the JSON report (`--json`). All are created before the
//! watch starts, so that a name memlens cannot write stops it at once.

use super::{other, report, Failure, Summary, WatchArgs};
use memlens_watch::plot;
use memlens_watch::proc::TreeSample;
use std::io::Write;
use std::path::PathBuf;

pub(super) struct Outputs {
    /// `None` once a write failed: no more samples go to it.
    csv: Option<Box<dyn Write>>,
    csv_name: Option<String>,
    json: Option<(Box<dyn Write>, String)>,
    plot: Option<(std::fs::File, PathBuf)>,
}

/// `p` created for writing, or stdout for `-`.
fn create(p: &PathBuf, what: &str) -> Result<Box<dyn Write>, Failure> {
    if p.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    std::fs::File::create(p)
        .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn Write>)
        .map_err(|e| {
            other(format!(
                "cannot create the {what} file {}: {e}",
                p.display()
            ))
        })
}

impl Outputs {
    pub(super) fn open(args: &WatchArgs) -> Result<Outputs, Failure> {
        let dash = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
        if dash(&args.csv) && dash(&args.json) {
            return Err(other(
                "--csv - and --json - cannot both write to stdout; give one of them a file name",
            ));
        }
        if dash(&args.plot) {
            return Err(other("--plot needs a file name"));
        }
        let csv = args.csv.as_ref().map(|p| create(p, "CSV")).transpose()?;
        let json = match &args.json {
            Some(p) => Some((create(p, "JSON")?, p.display().to_string())),
            None => None,
        };
        let plot = match &args.plot {
            Some(p) => Some((
                std::fs::File::create(p).map_err(|e| {
                    other(format!("cannot create the plot file {}: {e}", p.display()))
                })?,
                p.clone(),
            )),
            None => None,
        };
        Ok(Outputs {
            csv,
            csv_name: args.csv.as_ref().map(|p| p.display().to_string()),
            json,
            plot,
        })
    }

    /// The files written, for the report: `csv mem.csv`, `plot mem.svg`...
    pub(super) fn names(&self) -> Vec<String> {
        let mut files = Vec::new();
        if let Some(n) = &self.csv_name {
            files.push(format!("csv {n}"));
        }
        if let Some((_, n)) = &self.json {
            files.push(format!("json {n}"));
        }
        if let Some((_, n)) = &self.plot {
            files.push(format!("plot {}", n.display()));
        }
        files
    }

    /// The CSV's header line. A CSV that cannot take it gets nothing more.
    pub(super) fn csv_header(&mut self) {
        if let Some(w) = self.csv.as_mut() {
            if writeln!(w, "t_s,unix_s,rss,pss,uss,swap,anon,file,processes")
                .and_then(|()| w.flush())
                .is_err()
            {
                self.csv = None;
            }
        }
    }

    /// One sample as a CSV row, at `t` seconds into the watch (`unix`: the same moment
    /// in Unix time). The first failure says so, once, unless the reader went away.
    pub(super) fn csv_sample(&mut self, t: f64, unix: f64, s: &TreeSample) {
        let Some(w) = self.csv.as_mut() else {
            return;
        };
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let m = &s.mem;
        let written = writeln!(
            w,
            "{t:.3},{unix:.3},{},{},{},{},{},{},{}",
            m.rss,
            opt(m.pss),
            opt(m.uss),
            opt(m.swap),
            opt(m.anon),
            opt(m.file),
            s.processes
        )
        .and_then(|()| w.flush());
        if let Err(e) = written {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                crate::say!("memlens: warning: cannot write the CSV file: {e}; no more samples will be written to it");
            }
            self.csv = None;
        }
    }

    pub(super) fn finish_csv(&mut self) {
        if let Some(w) = self.csv.as_mut() {
            let _ = w.flush();
        }
    }

    /// The chart, as SVG or (for a `.png` name) PNG. `Err` is one sentence.
    pub(super) fn write_plot(&mut self, s: &Summary) -> Result<(), String> {
        let Some((f, p)) = self.plot.as_mut() else {
            return Ok(());
        };
        let svg = plot::svg(&s.history.points(), &report::plot_info(s));
        let bytes = if crate::png::wants_png(p) {
            crate::png::from_svg(&svg)?
        } else {
            svg.into_bytes()
        };
        f.write_all(&bytes)
            .map_err(|e| format!("cannot write the plot {}: {e}", p.display()))
    }

    /// The JSON report. A reader that went away is no error; `Err` is one sentence.
    pub(super) fn write_json(&mut self, s: &Summary) -> Result<(), String> {
        let Some((w, name)) = self.json.as_mut() else {
            return Ok(());
        };
        let mut text = serde_json::to_string_pretty(&report::json(s)).unwrap_or_default();
        text.push('\n');
        match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(format!("cannot write the JSON report {name}: {e}"))
            }
            _ => Ok(()),
        }
    }
}
