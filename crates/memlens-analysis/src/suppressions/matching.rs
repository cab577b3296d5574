//! Matching a stack against suppressions: Valgrind frame lines (`fun:`, `obj:`, `src:`,
//! `...`) with `*`/`?` wildcards, and LeakSanitizer's substring templates.

use super::parse::clip;
use super::{Entry, Frame, LeakKind, Rule, SuppressionInfo, Suppressions};
use memlens_common::glob::glob_match;

/// A `*`/`?` wildcard pattern over bytes, matching whole strings (valgrind's
/// `VG_(string_match)`).
#[derive(Clone, Debug)]
pub(super) struct Glob {
    text: Box<str>,
    literal: bool,
}

impl Glob {
    fn new(text: &str) -> Glob {
        Glob {
            text: text.into(),
            literal: !text.contains(['*', '?']),
        }
    }

    fn matches(&self, s: &str) -> bool {
        if self.literal {
            *self.text == *s
        } else {
            glob_match(self.text.as_bytes(), s.as_bytes())
        }
    }
}

/// One frame line of a Valgrind suppression.
#[derive(Clone, Debug)]
pub(super) enum Loc {
    /// `fun:PATTERN`
    Fun(Glob),
    /// `obj:PATTERN`; the second pattern is the last path component, for modules known by
    /// file name only.
    Obj(Glob, Option<Glob>),
    /// `src:PATTERN[:LINE]`
    Src(Glob, Option<u32>),
    /// `...`
    Any,
}

impl Loc {
    /// `Ok(None)`: not a frame line.
    pub(super) fn parse(line: &str) -> Result<Option<Loc>, String> {
        if line == "..." {
            return Ok(Some(Loc::Any));
        }
        if let Some(p) = line.strip_prefix("fun:") {
            return Ok(Some(Loc::Fun(Glob::new(p))));
        }
        if let Some(p) = line.strip_prefix("obj:") {
            let last = p
                .rsplit_once('/')
                .map(|(_, last)| Glob::new(last))
                .filter(|g| !g.text.is_empty());
            return Ok(Some(Loc::Obj(Glob::new(p), last)));
        }
        if let Some(p) = line.strip_prefix("src:") {
            return match p.split_once(':') {
                None => Ok(Some(Loc::Src(Glob::new(p), None))),
                Some((file, n)) => match n.trim().parse::<u32>() {
                    Ok(n) => Ok(Some(Loc::Src(Glob::new(file), Some(n)))),
                    Err(_) => Err(format!(
                        "`{}`: the line number after the file of a src: line must be a number",
                        clip(line)
                    )),
                },
            };
        }
        Ok(None)
    }

    fn matches(&self, f: &Frame) -> bool {
        match self {
            Loc::Any => true,
            Loc::Fun(g) => match (f.function, f.mangled) {
                (None, None) => g.matches("???"),
                (a, b) => a.is_some_and(|s| g.matches(s)) || b.is_some_and(|s| g.matches(s)),
            },
            Loc::Obj(g, last) => match f.module {
                None => g.matches("???"),
                Some(m) => {
                    g.matches(m)
                        || (!m.contains('/') && last.as_ref().is_some_and(|l| l.matches(m)))
                }
            },
            Loc::Src(g, line) => match f.file {
                None => false,
                Some(file) => {
                    let base = file.rsplit('/').next().unwrap_or(file);
                    (g.matches(file) || g.matches(base)) && line.is_none_or(|n| f.line == Some(n))
                }
            },
        }
    }
}

/// Does `pats` match a prefix of `frames`? `...` matches any number of frames. Leftmost
/// matching with one remembered `...`, as [`glob_match`].
fn frames_match(pats: &[Loc], frames: &[Frame]) -> bool {
    let (mut p, mut f) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p == pats.len() {
            return true;
        }
        if let Loc::Any = pats[p] {
            star = Some((p, f));
            p += 1;
            continue;
        }
        if f < frames.len() && pats[p].matches(&frames[f]) {
            p += 1;
            f += 1;
            continue;
        }
        match star {
            Some((sp, sf)) if sf < frames.len() => {
                p = sp + 1;
                f = sf + 1;
                star = Some((sp, sf + 1));
            }
            _ => return false,
        }
    }
}

/// `^`, `*`, `$` patterns matched anywhere in a string (LeakSanitizer's `TemplateMatch`,
/// see the module documentation for the two differences). Linear: every piece between
/// `*`s is searched once, leftmost.
pub(super) fn lsan_match(template: &str, s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let (start, t) = match template.strip_prefix('^') {
        Some(t) => (true, t),
        None => (false, template),
    };
    let (end, t) = match t.strip_suffix('$') {
        Some(t) => (true, t),
        None => (false, t),
    };
    let parts: Vec<&str> = t.split('*').collect();
    if let [only] = parts[..] {
        return match (start, end) {
            (true, true) => s == only,
            (true, false) => s.starts_with(only),
            (false, true) => s.ends_with(only),
            (false, false) => s.contains(only),
        };
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let mut pos = if start {
        if !s.starts_with(first) {
            return false;
        }
        first.len()
    } else {
        match s.find(first) {
            Some(i) => i + first.len(),
            None => return false,
        }
    };
    let (last, middle) = rest.split_last().expect("two parts or more");
    for part in middle {
        match s[pos..].find(part) {
            Some(i) => pos += i + part.len(),
            None => return false,
        }
    }
    if end {
        s.len() >= pos + last.len() && s.ends_with(last)
    } else {
        s[pos..].contains(last)
    }
}

fn lsan_any_frame(template: &str, frames: &[Frame]) -> bool {
    frames.iter().any(|f| {
        [f.module, f.function, f.mangled, f.file]
            .into_iter()
            .flatten()
            .any(|s| lsan_match(template, s))
    })
}

impl Suppressions {
    /// The first suppression that applies to a leak of this kind allocated at `frames`
    /// (`frames[0]` is the allocation function itself, such as `malloc` or `_Znwm`, then its
    /// callers outward), by name: a `Memcheck:Leak` entry whose `match-leak-kinds` include
    /// `kind`, or a `leak:` line (any kind).
    pub fn matches(&self, kind: LeakKind, frames: &[Frame]) -> Option<&str> {
        self.matching(kind, frames).map(|i| i.name)
    }

    /// As [`Suppressions::matches`], the whole entry: two entries may share a name
    /// (`<insert_a_suppression_name_here>`), not a place.
    pub fn matching(&self, kind: LeakKind, frames: &[Frame]) -> Option<SuppressionInfo<'_>> {
        self.entries
            .iter()
            .find(|e| match &e.rule {
                Rule::Valgrind(r) => {
                    r.kind == "Leak"
                        && r.is_memcheck()
                        && r.leak_kinds & kind.bit() != 0
                        && frames_match(&r.frames, frames)
                }
                Rule::Lsan { kind, template } => kind == "leak" && lsan_any_frame(template, frames),
            })
            .map(Entry::info)
    }

    /// The first Memcheck suppression of another kind than `Leak` that applies to an error
    /// at `frames` (`frames[0]` is where the error happened: for a bad free, the `free` or
    /// `operator delete` frame), by name. `kind` is memcheck's suppression kind: `Free` for
    /// invalid, double and mismatched frees, `Addr8`, `Cond` (`Value0` is the same), ...
    /// `extra` is the error's detail that a `Param` (system call parameter, `write(buf)`) or
    /// `FishyValue` (`malloc(size)`) suppression names; entries that name one match only an
    /// equal `extra`.
    pub fn matches_error(&self, kind: &str, extra: Option<&str>, frames: &[Frame]) -> Option<&str> {
        self.matching_error(kind, extra, frames).map(|i| i.name)
    }

    /// As [`Suppressions::matches_error`], the whole entry.
    pub fn matching_error(
        &self,
        kind: &str,
        extra: Option<&str>,
        frames: &[Frame],
    ) -> Option<SuppressionInfo<'_>> {
        let canon = |k: &str| if k == "Value0" { "Cond" } else { k }.to_string();
        let kind = canon(kind);
        if kind == "Leak" {
            return None;
        }
        self.entries
            .iter()
            .find(|e| match &e.rule {
                Rule::Valgrind(r) => {
                    r.is_memcheck()
                        && canon(&r.kind) == kind
                        && (r.extra.is_none() || r.extra.as_deref() == extra)
                        && frames_match(&r.frames, frames)
                }
                Rule::Lsan { .. } => false,
            })
            .map(Entry::info)
    }
}

/// One frame line of a suppression, for matching outside suppressions (the components of
/// a budget file): a `fun:` or `obj:` pattern, matched against a frame exactly as an
/// entry's frame line is (mangled or demangled names, `???` for unknown ones, a module's
/// path or its file name).
#[derive(Clone, Debug)]
pub struct FramePattern(Loc);

impl FramePattern {
    /// `fun:PATTERN`: a function name (demangled or mangled), with `*` and `?`.
    pub fn function(pattern: &str) -> FramePattern {
        FramePattern(Loc::Fun(Glob::new(pattern)))
    }

    /// `obj:PATTERN`: a module's path, or its file name, with `*` and `?`.
    pub fn module(pattern: &str) -> FramePattern {
        match Loc::parse(&format!("obj:{pattern}")) {
            Ok(Some(loc)) => FramePattern(loc),
            // An `obj:` line always parses.
            _ => FramePattern(Loc::Obj(Glob::new(pattern), None)),
        }
    }

    /// Whether the pattern matches this frame.
    pub fn matches(&self, f: &Frame) -> bool {
        self.0.matches(f)
    }

    /// Whether it matches any frame of a stack (`...` before and after the line).
    pub fn matches_any(&self, frames: &[Frame]) -> bool {
        frames.iter().any(|f| self.matches(f))
    }
}
