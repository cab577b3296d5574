//! `memlens leaks --format sarif`: SARIF 2.1.0 for code-scanning tools, one result per
//! unsuppressed loss record of a shown kind and per heap error, located in the program's
//! own source, relative to the source root.

use super::text::kind_words;
use super::LeakView;
use memlens_analysis::leaks::{alloc_symbol, kind_key};
use memlens_common::units::count;
use memlens_trace::AllocFunc;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

impl LeakView {
    /// SARIF 2.1.0: one result per unsuppressed loss record of a shown kind and per heap
    /// error, located at the first frame with a source file outside system libraries,
    /// with its whole stack (the allocating or releasing function first). Source files
    /// under `root` are named relative to it, with `uriBaseId` `%SRCROOT%`.
    pub fn sarif(&mut self, root: &Path) -> Value {
        let root = SourceRoot::new(root);
        let mut results = Vec::new();
        let records = self.report.records.clone();
        let show = self.opts.show_leak_kinds;
        for r in records
            .iter()
            .filter(|r| r.suppressed_by.is_none() && show.contains(r.kind))
        {
            let level = if self.opts.errors_for_leak_kinds.contains(r.kind) {
                "error"
            } else {
                "note"
            };
            let msg = format!(
                "{} bytes in {} blocks are {} ({} via {})",
                count(r.total_bytes()),
                count(r.blocks),
                kind_words(r.kind),
                if r.indirect.bytes > 0 {
                    format!("{} indirect", count(r.indirect.bytes))
                } else {
                    "allocated".into()
                },
                r.func.name()
            );
            results.push(self.sarif_result(
                kind_key(r.kind),
                level,
                msg,
                (r.func, r.stack),
                "where the blocks were allocated",
                &root,
            ));
        }
        let errors = self.report.errors.clone();
        for e in errors.iter().filter(|e| e.suppressed_by.is_none()) {
            let msg = format!(
                "{} ({} time(s), address {:#x})",
                e.kind.title(),
                e.count,
                e.addr
            );
            results.push(self.sarif_result(
                e.kind.key(),
                "error",
                msg,
                (e.func, e.stack),
                "where the block was released",
                &root,
            ));
        }
        let rule = |id: &str, text: &str| json!({"id": id, "shortDescription": {"text": text}});
        json!({
            "version": "2.1.0",
            "$schema": SARIF_SCHEMA,
            "runs": [{
                "tool": {"driver": {
                    "name": "memlens",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/memlens/memlens",
                    "rules": [
                        rule("definitely_lost", "Memory definitely lost: no pointer to the block remains"),
                        rule("indirectly_lost", "Memory indirectly lost: reachable only from lost blocks"),
                        rule("possibly_lost", "Memory possibly lost: only interior pointers to the block remain"),
                        rule("still_reachable", "Memory still reachable at exit"),
                        rule("double_free", "A block released twice"),
                        rule("interior_free", "A release of a pointer inside a block"),
                        rule("invalid_free", "A release of memory that was never allocated"),
                        rule("mismatched_free", "A block released by the wrong allocator family"),
                    ],
                }},
                "originalUriBaseIds": {
                    SRCROOT: {"uri": root.uri},
                },
                "results": results,
            }],
        })
    }

    /// One SARIF result: its primary location (the first frame in the program's own
    /// source) and the whole stack of `call` (the allocator function, then its callers).
    fn sarif_result(
        &mut self,
        rule: &str,
        level: &str,
        message: String,
        call: (AllocFunc, u32),
        stack_message: &str,
        root: &SourceRoot,
    ) -> Value {
        let frames = self.frames(call.1);
        let system = |f: &memlens_analysis::Frame| {
            f.file.as_deref().is_none_or(|p| {
                p.starts_with("/usr/include")
                    || p.starts_with("./")
                        && f.module.as_deref().is_some_and(|m| m.starts_with("lib"))
            })
        };
        let primary = frames
            .iter()
            .find(|f| f.file.as_deref().is_some_and(|p| root.contains(p)))
            .or_else(|| frames.iter().find(|f| !system(f)))
            .or(frames.first());
        let locations = match primary {
            Some(f) => json!([sarif_location(f, root)]),
            None => json!([]),
        };
        let allocator = json!({"location": {"logicalLocations": [{
            "name": alloc_symbol(call.0).0,
            "kind": "function",
        }]}});
        let stack: Vec<Value> = std::iter::once(allocator)
            .chain(frames.iter().map(|f| {
                let mut frame = json!({"location": sarif_location(f, root)});
                if let Some(m) = &f.module {
                    frame["module"] = json!(m);
                }
                frame
            }))
            .collect();
        json!({
            "ruleId": rule,
            "level": level,
            "message": {"text": message},
            "locations": locations,
            "stacks": [{"message": {"text": stack_message}, "frames": stack}],
        })
    }
}

/// The official SARIF 2.1.0 schema's address.
const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `uriBaseId` of source files under the source root.
const SRCROOT: &str = "%SRCROOT%";

/// The directory SARIF names source files relative to.
struct SourceRoot {
    /// As given, and resolved (symbolic links), to recognise paths under either.
    given: PathBuf,
    real: Option<PathBuf>,
    /// `file:///...` with a final `/`.
    uri: String,
}

impl SourceRoot {
    fn new(dir: &Path) -> SourceRoot {
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
    fn relative(&self, path: &Path) -> Option<PathBuf> {
        let under = |root: &Path, p: &Path| p.strip_prefix(root).ok().map(Path::to_path_buf);
        under(&self.given, path)
            .or_else(|| self.real.as_deref().and_then(|r| under(r, path)))
            .or_else(|| {
                let p = std::fs::canonicalize(path).ok()?;
                under(&self.given, &p).or_else(|| under(self.real.as_deref()?, &p))
            })
    }

    fn contains(&self, file: &str) -> bool {
        self.relative(Path::new(file)).is_some()
    }

    /// A source file as a SARIF artifact location: relative to `%SRCROOT%` when it is
    /// under the root, else an absolute `file://` URI. A relative path in the debug
    /// information (a system library's, relative to where it was compiled) stays as it
    /// is, with no base: it is not the repository's.
    fn artifact(&self, file: &str) -> Value {
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
fn uri_escape(path: &str) -> String {
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
fn sarif_location(f: &memlens_analysis::Frame, root: &SourceRoot) -> Value {
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
