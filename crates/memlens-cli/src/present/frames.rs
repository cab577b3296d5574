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
    // Each stack's frames as text, and where its own code starts (the label's frame).
    let located: Vec<(Vec<String>, usize)> = stacks
        .iter()
        .map(|&s| {
            let (frames, at) = located_frames(md, sym, s);
            (frames.iter().map(frame_text).collect(), at)
        })
        .collect();
    labels_of(&located)
}

/// A frame's text without its module, template arguments and parameter list:
/// `std::map::operator[] (stl_map.h:511)` for a C++ library function named at length.
fn short_frame(text: &str) -> String {
    let text = text.split(" [").next().unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let (mut angle, mut paren, mut prev) = (0usize, 0usize, ' ');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // `operator<`, `operator<<`, `operator<=`: not template arguments.
            '<' if out.ends_with("operator") || out.ends_with("operator<") => out.push(c),
            '<' if paren == 0 => angle += 1,
            '>' if angle > 0 && paren == 0 => angle -= 1,
            _ if angle > 0 => {}
            // A parameter list follows the name directly; `(file:line)` after a space.
            '(' if paren > 0 || (prev != ' ' && chars.peek().is_none_or(|&n| n != 'a')) => {
                paren += 1
            }
            ')' if paren > 0 => paren -= 1,
            _ if paren > 0 => {}
            _ => out.push(c),
        }
        prev = c;
    }
    out
}

/// [`site_labels`] of stacks given as text frames (innermost first) and the index of each
/// one's label frame. Stacks with the same label are told apart by the first frame out
/// from it where they part (`via` a caller); when their callers are the same, by the
/// first frame in from it (`through` library code inlined or called there: a
/// `std::string` and a `std::map` node made on one line).
fn labels_of(located: &[(Vec<String>, usize)]) -> Vec<String> {
    let base = |(f, at): &(Vec<String>, usize)| {
        f.get(*at)
            .cloned()
            .unwrap_or_else(|| "(no stack recorded)".to_string())
    };
    let parting = |a: &[String], b: &[String]| {
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()))
    };
    located
        .iter()
        .enumerate()
        .map(|(i, own)| {
            let label = base(own);
            let same: Vec<&(Vec<String>, usize)> = located
                .iter()
                .enumerate()
                .filter(|&(j, other)| j != i && base(other) == label)
                .map(|(_, other)| other)
                .collect();
            if same.is_empty() {
                return label;
            }
            // Out: callers, from the label's frame.
            let (frames, at) = own;
            let outer = &frames[*at..];
            let out = same
                .iter()
                .map(|(f, a)| parting(outer, &f[*a..]))
                .max()
                .and_then(|k| outer.get(k));
            if let Some(f) = out {
                return format!("{label} via {f}");
            }
            // In: what the label's frame called, nearest first.
            let inner: Vec<String> = frames[..*at].iter().rev().cloned().collect();
            let inward = same
                .iter()
                .map(|(f, a)| {
                    let theirs: Vec<String> = f[..*a].iter().rev().cloned().collect();
                    parting(&inner, &theirs)
                })
                .max()
                .and_then(|k| inner.get(k));
            match inward {
                Some(f) => format!("{label} through {}", short_frame(f)),
                None => label,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sites labelled alike are told apart by their callers, else by what they called.
    #[test]
    fn alike_sites_are_told_apart_out_then_in() {
        let st = |frames: &[&str], at: usize| (frames.iter().map(|f| f.to_string()).collect(), at);
        let labels = labels_of(&[
            st(
                &["new", "string::create", "put (a.cpp:12)", "main (a.cpp:20)"],
                2,
            ),
            st(
                &["new", "map::node", "put (a.cpp:12)", "main (a.cpp:20)"],
                2,
            ),
            st(&["malloc", "load (b.c:3)", "run (b.c:9)"], 1),
            st(&["malloc", "load (b.c:3)", "init (b.c:7)"], 1),
            st(&["malloc", "once (c.c:1)", "main (c.c:2)"], 1),
        ]);
        assert_eq!(
            labels,
            [
                "put (a.cpp:12) through string::create",
                "put (a.cpp:12) through map::node",
                "load (b.c:3) via run (b.c:9)",
                "load (b.c:3) via init (b.c:7)",
                "once (c.c:1)",
            ]
        );
        assert_eq!(
            short_frame(
                "std::map<int, std::__cxx11::basic_string<char> >::operator[](int const&) \
                 (stl_map.h:511) [app] (inlined)"
            ),
            "std::map::operator[] (stl_map.h:511)"
        );
        assert_eq!(
            short_frame(
                "std::operator<<(std::ostream&, char const*) (ostream:611) [libstdc++.so.6]"
            ),
            "std::operator<< (ostream:611)"
        );
        assert_eq!(
            short_frame("(anonymous namespace)::pool::allocate(unsigned long) (eh_alloc.cc:123)"),
            "(anonymous namespace)::pool::allocate (eh_alloc.cc:123)"
        );
        // Nothing to tell them apart by: the label as it is.
        let same = labels_of(&[st(&["new", "f (x.c:1)"], 1), st(&["new", "f (x.c:1)"], 1)]);
        assert_eq!(same, ["f (x.c:1)", "f (x.c:1)"]);
    }

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
