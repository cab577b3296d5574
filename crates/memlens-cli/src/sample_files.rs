//! The files `memlens top` and `memlens watch` write: the CSV, a row or rows per sample
//! (`--csv`, `-` for stdout), and at the end the JSON report (`--json`, `-` for stdout)
//! and the chart (`--plot`, SVG, or PNG for a `.png` name). All are created before the
//! watch starts, so that a name memlens cannot write stops it at once; each command
//! decides what goes into them.

use std::io::Write;
use std::path::{Path, PathBuf};

pub struct SampleFiles {
    /// `None` once a write failed: no more samples go to it.
    csv: Option<Box<dyn Write>>,
    csv_name: Option<String>,
    json: Option<(Box<dyn Write>, String)>,
    plot: Option<(std::fs::File, PathBuf)>,
}

/// `p` created for writing, or stdout for `-`.
fn create(p: &Path, what: &str) -> Result<Box<dyn Write>, String> {
    if p.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    std::fs::File::create(p)
        .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn Write>)
        .map_err(|e| format!("cannot create the {what} file {}: {e}", p.display()))
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl SampleFiles {
    /// Create the files asked for. `Err` is one sentence.
    pub fn open(
        csv: Option<&Path>,
        json: Option<&Path>,
        plot: Option<&Path>,
    ) -> Result<SampleFiles, String> {
        let dash = |p: Option<&Path>| p.is_some_and(|p| p.as_os_str() == "-");
        if dash(csv) && dash(json) {
            return Err(
                "--csv - and --json - cannot both write to stdout; give one of them a file name"
                    .into(),
            );
        }
        if dash(plot) {
            return Err("--plot needs a file name".into());
        }
        let plot = match plot {
            Some(p) => Some((
                std::fs::File::create(p)
                    .map_err(|e| format!("cannot create the plot file {}: {e}", p.display()))?,
                p.to_path_buf(),
            )),
            None => None,
        };
        Ok(SampleFiles {
            csv: csv.map(|p| create(p, "CSV")).transpose()?,
            csv_name: csv.map(|p| p.display().to_string()),
            json: match json {
                Some(p) => Some((create(p, "JSON")?, p.display().to_string())),
                None => None,
            },
            plot,
        })
    }

    /// The files written, for the report: `csv mem.csv`, `plot mem.svg`...
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = &self.csv_name {
            v.push(format!("csv {n}"));
        }
        if let Some((_, n)) = &self.json {
            v.push(format!("json {n}"));
        }
        if let Some((_, p)) = &self.plot {
            v.push(format!("plot {}", p.display()));
        }
        v
    }

    pub fn wants_csv(&self) -> bool {
        self.csv.is_some()
    }

    pub fn wants_plot(&self) -> bool {
        self.plot.is_some()
    }

    /// Append `rows` (whole lines) to the CSV and flush it, so that a reader sees each
    /// sample as it comes. The first failure says so, once, unless the reader went away;
    /// nothing more is written to it then.
    pub fn csv_write(&mut self, rows: &str) {
        let Some(w) = self.csv.as_mut() else {
            return;
        };
        if let Err(e) = w.write_all(rows.as_bytes()).and_then(|()| w.flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                crate::say!("memlens: warning: cannot write the CSV file: {e}; no more samples will be written to it");
            }
            self.csv = None;
        }
    }

    /// The CSV's header line. A CSV that cannot take it gets nothing more (and no
    /// warning: the watch has not started).
    pub fn csv_header(&mut self, line: &str) {
        if let Some(w) = self.csv.as_mut() {
            if w.write_all(line.as_bytes())
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush())
                .is_err()
            {
                self.csv = None;
            }
        }
    }

    pub fn finish_csv(&mut self) {
        if let Some(w) = self.csv.as_mut() {
            let _ = w.flush();
        }
    }

    /// Write the chart `svg`, as it is or as PNG for a `.png` name. `Err` is one
    /// sentence.
    pub fn write_plot(&mut self, svg: String) -> Result<(), String> {
        let Some((f, p)) = self.plot.as_mut() else {
            return Ok(());
        };
        let bytes = if crate::png::wants_png(p) {
            crate::png::from_svg(&svg)?
        } else {
            svg.into_bytes()
        };
        f.write_all(&bytes)
            .map_err(|e| format!("cannot write the plot {}: {e}", p.display()))
    }

    /// The JSON report. A reader that went away is no error; `Err` is one sentence.
    pub fn write_json(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let Some((w, name)) = self.json.as_mut() else {
            return Ok(());
        };
        let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
        text.push('\n');
        match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(format!("cannot write the JSON report {name}: {e}"))
            }
            _ => Ok(()),
        }
    }
}
