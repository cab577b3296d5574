//! SARIF 2.1.0 pieces every SARIF output shares (`memlens leaks --format sarif`, the
//! budgets of `memlens check`): the schema, the source root that source files are named
//! relative to (`%SRCROOT%`), a frame as a SARIF location.

use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The official SARIF 2.1.0 schema's address.
pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `uriBaseId` of source files under the source root.
pub const SRCROOT: &str = "%SRCROOT%";

/// The directory SARIF names source files relative to.
pub struct SourceRoot {
    /// As given, and resolved (symbolic links), to recognise paths under either.
    given: PathBuf,
    real: Option<PathBuf>,
    /// `file:///...` with a final `/`.
    pub uri: String,
}

impl SourceRoot {
    pub fn new(dir: &Path) -> SourceRoot {
        let given = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let real = std::fs::canonicalize(&given).ok();
        let shown = real.as_deref().unwrap_or(&given);
        let mut uri = format!("file://{}", uri_escape(&shown.to_string_lossy()));
        if !uri.ends_with('/') {
            uri.push('/');
        }
        SourceRoot { given, real, uri }
    }

    /// `path` relative to the root, if it is under it.
    pub fn relative(&self, path: &Path) -> Option<PathBuf> {
        let under = |root: &Path, p: &Path| p.strip_prefix(root).ok().map(Path::to_path_buf);
        under(&self.given, path)
            .or_else(|| self.real.as_deref().and_then(|r| under(r, path)))
            .or_else(|| {
                let p = std::fs::canonicalize(path).ok()?;
                under(&self.given, &p).or_else(|| under(self.real.as_deref()?, &p))
            })
    }

    pub fn contains(&self, file: &str) -> bool {
        self.relative(Path::new(file)).is_some()
    }

    /// A source file as a SARIF artifact location: relative to `%SRCROOT%` when it is
    /// under the root, else an absolute `file://` URI. A relative path in the debug
    /// information (a system library's, relative to where it was compiled) stays as it
    /// is, with no base: it is not the repository's.
    pub fn artifact(&self, file: &str) -> Value {
        let path = Path::new(file);
        if path.is_relative() {
            return json!({"uri": uri_escape(file)});
        }
        match self.relative(path) {
            Some(rel) => json!({"uri": uri_escape(&rel.to_string_lossy()), "uriBaseId": SRCROOT}),
            None => json!({"uri": format!("file://{}", uri_escape(file))}),
        }
    }
}

/// The default source root: the top of the git work tree around the current directory
/// (the nearest directory holding `.git`, a directory or a worktree's file), else the
/// current directory.
pub fn default_source_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&cwd)
        .to_path_buf()
}

/// A path as a URI path: every byte but the unreserved characters and `/` percent-encoded.
pub fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A frame as a SARIF location: its source file and line when known, its function.
pub fn sarif_location(f: &memlens_analysis::Frame, root: &SourceRoot) -> Value {
    let mut loc = json!({});
    if let Some(file) = &f.file {
        loc["physicalLocation"] = json!({"artifactLocation": root.artifact(file)});
        if let Some(line) = f.line.filter(|&l| l > 0) {
            loc["physicalLocation"]["region"] = json!({"startLine": line});
        }
    }
    loc["logicalLocations"] = json!([{"name": f.function, "kind": "function"}]);
    loc
}
