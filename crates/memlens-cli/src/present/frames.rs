//! Frames and stacks for people and programs: a frame as one line of text or a JSON
//! object (FRAME of `docs/REPORT_JSON.md`, the same in every command), a stack as text
//! lines, and where a site is (its first frame in the program's own code, as a label that
//! tells sites apart).

use memlens_analysis::{Frame, Symbolizer};
use memlens_trace::reader::{Metadata, RawFrame};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Frames of a stack shown in text reports before "... N more frames".
const TEXT_MAX_FRAMES: usize = 16;

/// `main (demo.c:12) [demo]`, `libfoo.so+0x1234`, `0x7f0012345678`.
pub fn frame_text(f: &Frame) -> String {
    let mut s = f.function.clone();
    match (f.file_name(), f.line) {
        (Some(file), Some(line)) => {
            let _ = write!(s, " ({file}:{line})");
        }
        (Some(file), None) => {
            let _ = write!(s, " ({file})");
        }
        _ => {}
    }
    // Unsymbolized frames already name their module (`libfoo.so+0x1234`).
    if let Some(m) = &f.module {
        if f.file.is_some() || !f.function.starts_with(m.as_str()) {
            let _ = write!(s, " [{m}]");
        }
    }
    if f.inlined {
        s.push_str(" (inlined)");
    }
    s
}

/// A stack as indented `at FRAME` lines, the innermost first, cut after
/// [`TEXT_MAX_FRAMES`] frames.
pub fn text_stack(out: &mut String, frames: &[Frame]) {
    if frames.is_empty() {
        out.push_str("    (no stack recorded)\n");
        return;
    }
    for f in frames.iter().take(TEXT_MAX_FRAMES) {
        let _ = writeln!(out, "    at {}", frame_text(f));
    }
    if frames.len() > TEXT_MAX_FRAMES {
        let _ = writeln!(
            out,
            "    ... {} more frames",
            frames.len() - TEXT_MAX_FRAMES
        );
    }
}

/// One frame as JSON (`docs/REPORT_JSON.md`, FRAME; the same in `memlens leaks`).
pub fn frame_json(f: &Frame) -> Value {
    json!({"function": f.function, "file": f.file, "line": f.line, "module": f.module, "inlined": f.inlined})
}

/// A module of the system (`/lib`, `/usr/lib`, the vDSO), whose frames are rarely the
/// ones a user wants to read first.
pub fn is_system_module(path: &str) -> bool {
    ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"]
        .iter()
        .any(|p| path.starts_with(p))
        || path.starts_with("linux-vdso")
}

/// Where a summary or advice line points: the first frame in the program's own code, not in a
/// system library (`/lib`, `/usr/lib`: glibc's `strdup` or stdio are rarely what a user
/// wants to read first) nor a system header or standard library inlined into the program
/// (libstdc++'s templates, Rust's `alloc::raw_vec`); else the first frame in the
/// program's module; else the innermost frame.
/// Allocation wrappers (`--alloc-fn`) are not frames of the stack: it starts at their caller.
pub fn site_location(md: &Metadata, sym: &mut Symbolizer, stack: u32) -> String {
    let (frames, at) = located_frames(md, sym, stack);
    frames
        .get(at)
        .map(frame_text)
        .unwrap_or_else(|| "(no stack recorded)".to_string())
}

/// A stack's symbolized frames and the index of the frame [`site_location`] names.
fn located_frames(md: &Metadata, sym: &mut Symbolizer, stack: u32) -> (Vec<Frame>, usize) {
    let raw: &[RawFrame] = md.stacks.get(&stack).map_or(&[], |v| v.as_slice());
    let frames = sym.stack(raw);
    let system: std::collections::HashSet<&str> = md
        .modules
        .values()
        .filter(|m| is_system_module(&m.path))
        .map(|m| m.short_name())
        .collect();
    let own_module = |f: &Frame| f.module.as_deref().is_none_or(|m| !system.contains(m));
    let at = frames
        .iter()
        .position(|f| own_module(f) && !f.file.as_deref().is_some_and(is_system_header))
        .or_else(|| frames.iter().position(own_module))
        .unwrap_or(0);
    (frames, at)
}

/// A source file of the system's headers (`/usr/include`, GCC's own) or of Rust's
/// standard library (`/rustc/HASH/library/...` as rustup's toolchains name it, or the
/// `rust-src` component): code of the language's library compiled into the program
/// (`std::vector<T>::_M_realloc_insert`, `alloc::raw_vec::RawVec<T>::grow_one`), which
/// is not the program's own code either.
pub fn is_system_header(file: &str) -> bool {
    [
        "/usr/include/",
        "/usr/lib/gcc/",
        "/usr/local/include/",
        "/rustc/",
    ]
    .iter()
    .any(|p| file.starts_with(p))
        || file.contains("/lib/rustlib/src/rust/library/")
}

/// [`site_location`] of each stack of a list, each label distinguishable: a label that
/// several stacks share is followed by `via` and the first frame, from there on, where
/// this stack differs from every other stack with that label (the same wrapper called
/// from different places).
pub fn site_labels(md: &Metadata, sym: &mut Symbolizer, stacks: &[u32]) -> Vec<String> {
    let located: Vec<Vec<String>> = stacks
        .iter()
        .map(|&s| {
            let (frames, at) = located_frames(md, sym, s);
            frames.iter().skip(at).map(frame_text).collect()
        })
        .collect();
    let base = |f: &[String]| {
        f.first()
            .cloned()
            .unwrap_or_else(|| "(no stack recorded)".to_string())
    };
    located
        .iter()
        .enumerate()
        .map(|(i, own)| {
            let label = base(own);
            // Where this stack parts from each other stack with the same label.
            let parts = located
                .iter()
                .enumerate()
                .filter(|&(j, other)| j != i && base(other) == label)
                .map(|(_, other)| {
                    own.iter()
                        .zip(other)
                        .position(|(a, b)| a != b)
                        .unwrap_or(own.len().min(other.len()))
                })
                .max();
            match parts.and_then(|k| own.get(k)) {
                Some(f) => format!("{label} via {f}"),
                None => label,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines() {
        let f = |function: &str, file: Option<&str>, line, module: Option<&str>, inlined| Frame {
            function: function.into(),
            mangled: None,
            file: file.map(Into::into),
            line,
            module: module.map(Into::into),
            inlined,
            resolved: true,
            python: false,
        };
        assert_eq!(
            frame_text(&f(
                "main",
                Some("/src/demo.c"),
                Some(12),
                Some("demo"),
                false
            )),
            "main (demo.c:12) [demo]"
        );
        assert_eq!(
            frame_text(&f("libfoo.so+0x1234", None, None, Some("libfoo.so"), false)),
            "libfoo.so+0x1234"
        );
        assert_eq!(frame_text(&f("0x7f00", None, None, None, false)), "0x7f00");
        assert_eq!(
            frame_text(&f("get", Some("v.h"), Some(3), Some("demo"), true)),
            "get (v.h:3) [demo] (inlined)"
        );
    }
}
