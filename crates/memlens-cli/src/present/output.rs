//! Where an output goes: the default file name next to the trace, or a [`Dest`]: a file,
//! or stdout (refused for binary output on a terminal).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The output file given, or the trace's file name plus `.EXT` in the current directory.
pub fn output_or_default(given: Option<&PathBuf>, trace: &Path, ext: &str) -> PathBuf {
    given.cloned().unwrap_or_else(|| {
        let name = trace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "memlens".into());
        PathBuf::from(format!("{name}.{ext}"))
    })
}

/// Where an output goes: a file, or stdout for no `-o` and `-o -`.
pub enum Dest<'a> {
    Stdout,
    File(&'a Path),
}

impl<'a> Dest<'a> {
    pub fn new(output: Option<&'a Path>) -> Self {
        match output {
            Some(p) if p != Path::new("-") => Dest::File(p),
            _ => Dest::Stdout,
        }
    }

    /// Refuse a terminal for output a terminal cannot show (`what`: "a binary pprof
    /// profile"), before any work is done.
    pub fn refuse_terminal(&self, what: &str, example: &str) -> Result<(), String> {
        match self {
            Dest::Stdout if std::io::stdout().is_terminal() => Err(format!(
                "refusing to write {what} to the terminal: give -o FILE (e.g. -o {example}) or redirect stdout"
            )),
            _ => Ok(()),
        }
    }

    /// Write the whole output. A reader that went away from stdout is not an error.
    pub fn write(&self, data: &[u8]) -> Result<(), String> {
        match self {
            Dest::Stdout => crate::write_stdout(data),
            Dest::File(p) => {
                std::fs::write(p, data).map_err(|e| format!("cannot write {}: {e}", p.display()))
            }
        }
    }
}
