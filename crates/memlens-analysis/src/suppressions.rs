//! Leak suppressions, read from Valgrind suppression files and LeakSanitizer suppression
//! lists, plus memlens's built-in set.
//!
//! ```
//! use memlens_analysis::suppressions::{Frame, LeakKind, Suppressions};
//! let mut supp = Suppressions::default_set();
//! supp.parse_valgrind(
//!     "{\n   my-cache\n   Memcheck:Leak\n   match-leak-kinds: reachable\n   fun:malloc\n   fun:cache_*\n}\n",
//!     "my.supp",
//! )?;
//! let frames = [
//!     Frame { function: Some("malloc"), ..Frame::default() },
//!     Frame { function: Some("cache_grow"), module: Some("prog"), ..Frame::default() },
//! ];
//! assert_eq!(supp.matches(LeakKind::Reachable, &frames), Some("my-cache"));
//! assert_eq!(supp.matches(LeakKind::Definite, &frames), None);
//! # Ok::<(), memlens_analysis::suppressions::ParseError>(())
//! ```
//!
//! # Valgrind format
//!
//! ```text
//! {
//!    name                                    any text, shown when the entry is used
//!    Memcheck:Leak                           tool1,tool2:kind
//!    match-leak-kinds: definite,possible     optional for Leak; or all / none
//!    fun:malloc                              frames, from the allocation function outward
//!    ...                                     any number of frames, including none
//!    obj:*libfoo.so*
//!    src:foo.c:42
//! }
//! ```
//!
//! As in valgrind (coregrind/m_errormgr.c, memcheck/mc_errors.c): blank lines and lines
//! whose first non-blank character is `#` are ignored, lines are trimmed (so CRLF files
//! work), `*` and `?` are wildcards in `fun:`, `obj:` and `src:` patterns, and the frame list
//! matches a prefix of the stack: `fun:malloc` alone suppresses every leak allocated by
//! malloc. A `src:` line is a file pattern with an optional `:line`. An entry needs at least
//! one frame line that is not `...`. Every block is kept, whatever its tool and kind
//! (`Memcheck:Cond`, `Helgrind:Race`, `Memcheck:Param` with its system-call line...), but
//! only `Memcheck:Leak` entries take part in [`Suppressions::matches`]; the other Memcheck
//! kinds can be tested with [`Suppressions::matches_error`].
//!
//! Where memlens differs from valgrind:
//! * `fun:` matches the mangled or the demangled name (valgrind: mangled only). An
//!   unknown function or object is `???`, as in valgrind, so `fun:*` matches any frame.
//! * `obj:` matches the module's path. When the frame knows only the module's file name (as
//!   memlens reports it, `libc.so.6`), a pattern with directories also matches by its last
//!   component: `obj:*/libX11.so.6*` matches `libX11.so.6.2`.
//! * `src:` matches the file as given in the frame or its file name without directories
//!   (valgrind: the file name as recorded in the debug information).
//! * Up to 500 frame lines are read and all of them must match (valgrind reads 500, as its
//!   `VG_DEEPEST_BACKTRACE`, but only compares the first `--num-callers`, 12 by default;
//!   its manual still says 24).
//! * Mistakes that valgrind would ignore silently are errors: a block whose second line is
//!   a frame (the name or the kind line is missing), an unknown Memcheck kind.
//!
//! # LeakSanitizer format
//!
//! One `type:pattern` per line, `#` comments. `leak:PATTERN` suppresses a leak when the
//! pattern matches the module, the function (demangled or mangled) or the source file of
//! *any* frame, like LeakSanitizer's `GetSuppressionForAddr`. Patterns match anywhere in the
//! string (substring), `*` matches any text, `^` at the start anchors at the start and `$`
//! at the end anchors at the end, as in compiler-rt's `TemplateMatch`, with two
//! differences: `foo$` also matches `foofoo` (TemplateMatch only tries the first
//! occurrence), and a `$` elsewhere than at the end is an ordinary character. The other
//! sanitizers' types (`called_from_lib:`, `interceptor_via_fun:`, `race:`...) are accepted
//! and kept but never suppress a leak; an unknown type is an error, as in the sanitizers.
//! An empty `leak:` line, which LeakSanitizer would take as "suppress every leak", is an
//! error here.
//!
//! # Frames
//!
//! [`Frame`]s go from the allocation function (`malloc`, `_Znwm`...) outward, inlined
//! functions as frames of their own (valgrind matches inlined calls as frames too). Give
//! `None` for what is not known, not a placeholder such as `module+0x1234`.
//!
//! Matching is linear in the length of the names for `leak:` patterns, at most
//! (pattern length x name length) for `*`/`?` patterns and (frame lines x frames) for
//! `...`: no input makes it backtrack exponentially, and no input makes a parser panic.

use memlens_common::glob::glob_match;
use std::fmt;
use std::path::Path;

/// Memcheck's leak kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeakKind {
    /// Definitely lost: no pointer to the block at all.
    Definite,
    /// Indirectly lost: only reachable from lost blocks.
    Indirect,
    /// Possibly lost: only interior pointers reach it.
    Possible,
    /// Still reachable.
    Reachable,
}

impl LeakKind {
    pub const ALL: [LeakKind; 4] = [
        LeakKind::Definite,
        LeakKind::Indirect,
        LeakKind::Possible,
        LeakKind::Reachable,
    ];

    /// The word memcheck uses for this kind in `match-leak-kinds:` and
    /// `--show-leak-kinds`: `definite`, `indirect`, `possible`, `reachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakKind::Definite => "definite",
            LeakKind::Indirect => "indirect",
            LeakKind::Possible => "possible",
            LeakKind::Reachable => "reachable",
        }
    }

    /// The kind named by one of [`LeakKind::as_str`]'s words.
    pub fn from_word(word: &str) -> Option<LeakKind> {
        LeakKind::ALL.into_iter().find(|k| k.as_str() == word)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

const ALL_KINDS: u8 = 0b1111;

/// One frame of an allocation stack, as far as it is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Function name, demangled.
    pub function: Option<&'a str>,
    /// Mangled function name (the symbol), if different or if that is all there is.
    pub mangled: Option<&'a str>,
    /// Source file, a path or a file name.
    pub file: Option<&'a str>,
    /// Source line, for `src:file:line`.
    pub line: Option<u32>,
    /// Path or file name of the module (executable or shared library).
    pub module: Option<&'a str>,
}

/// A suppression file could not be read or parsed. `Display` gives one sentence starting
/// with `origin:line:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file (or other origin) given to the parser.
    pub origin: String,
    /// 1-based line of the problem; 0 when the problem is not on a line (unreadable file).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.origin, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.origin, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// A `*`/`?` wildcard pattern over bytes, matching whole strings (valgrind's
/// `VG_(string_match)`).
#[derive(Clone, Debug)]
struct Glob {
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
enum Loc {
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
    fn parse(line: &str) -> Result<Option<Loc>, String> {
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
fn lsan_match(template: &str, s: &str) -> bool {
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

/// Memcheck's suppression kinds (memcheck/mc_errors.c, `MC_(is_recognised_suppression)`).
const MEMCHECK_KINDS: &[&str] = &[
    "Param",
    "User",
    "CoreMem",
    "Addr1",
    "Addr2",
    "Addr4",
    "Addr8",
    "Addr16",
    "Addr32",
    "Jump",
    "Free",
    "Leak",
    "Overlap",
    "Mempool",
    "Cond",
    "Value0",
    "Value1",
    "Value2",
    "Value4",
    "Value8",
    "Value16",
    "Value32",
    "FishyValue",
    "ReallocZero",
    "BadAlign",
    "BadSize",
    "SizeMismatch",
    "AlignMismatch",
];

/// The sanitizers' suppression types: LeakSanitizer's `leak`, AddressSanitizer's and
/// ThreadSanitizer's (compiler-rt's `kSuppressionTypes` arrays).
const SANITIZER_TYPES: &[&str] = &[
    "leak",
    "interceptor_name",
    "interceptor_via_fun",
    "interceptor_via_lib",
    "odr_violation",
    "race",
    "race_top",
    "mutex",
    "thread",
    "signal",
    "called_from_lib",
    "deadlock",
];

/// More frame lines than this are an error (valgrind's `VG_DEEPEST_BACKTRACE`).
const MAX_FRAME_LINES: usize = 500;

/// Frames written by [`gen_suppression`] (the limit valgrind's manual gives).
const MAX_GEN_FRAMES: usize = 24;

#[derive(Clone, Debug)]
struct ValgrindRule {
    tools: Vec<String>,
    kind: String,
    /// The line after the kind line: a Param's system call parameter, a FishyValue's
    /// function(argument), another tool's extra information. Not `match-leak-kinds:`.
    extra: Option<String>,
    leak_kinds: u8,
    frames: Vec<Loc>,
}

impl ValgrindRule {
    fn is_memcheck(&self) -> bool {
        self.tools.iter().any(|t| t == "Memcheck")
    }
}

#[derive(Clone, Debug)]
enum Rule {
    Valgrind(ValgrindRule),
    Lsan { kind: String, template: String },
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    /// `Memcheck:Leak`, `leak`...
    kind_line: String,
    origin: String,
    line: usize,
    rule: Rule,
}

impl Entry {
    fn info(&self) -> SuppressionInfo<'_> {
        SuppressionInfo {
            name: &self.name,
            kind: &self.kind_line,
            origin: &self.origin,
            line: self.line,
        }
    }
}

/// One loaded suppression, for listing (`-v`, `--show-default-suppressions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuppressionInfo<'a> {
    /// The Valgrind entry's name, or the LeakSanitizer line (`leak:libfoo.so`).
    pub name: &'a str,
    /// `Memcheck:Leak`, `Helgrind:Race`, `leak`, `called_from_lib`...
    pub kind: &'a str,
    /// Where it was read from, and its line (the Valgrind entry's name line).
    pub origin: &'a str,
    pub line: usize,
}

/// A set of suppressions, matched in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct Suppressions {
    entries: Vec<Entry>,
}

fn clip(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// The non-blank, non-comment lines of a file, trimmed, with their 1-based numbers.
struct Lines<'a> {
    inner: std::iter::Enumerate<std::str::Split<'a, char>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lines {
            inner: text.split('\n').enumerate(),
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);
    fn next(&mut self) -> Option<(usize, &'a str)> {
        for (i, raw) in self.inner.by_ref() {
            let line = raw.trim();
            if !line.is_empty() && !line.starts_with('#') {
                return Some((i + 1, line));
            }
        }
        None
    }
}

/// Largest suppression file read: far more than any real one (Valgrind's default file is
/// about 60 KiB), small enough that a wrong path (a disk image, `/dev/zero`) fails fast.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Read a regular file of at most `max` bytes: a directory, a device or a pipe, or a
/// bigger file, is an error (one sentence) rather than an endless read.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // stat before open: opening a pipe would wait for a writer.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::other(format!("it is {what}")));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "it is larger than {} MiB, which no suppression file is",
            max >> 20
        )));
    }
    Ok(bytes)
}

fn parse_leak_kinds(set: &str) -> Result<u8, String> {
    match set.trim() {
        "all" => return Ok(ALL_KINDS),
        "none" => return Ok(0),
        _ => {}
    }
    let mut bits = 0;
    for word in set.split(',') {
        match LeakKind::from_word(word.trim()) {
            Some(k) => bits |= k.bit(),
            None => {
                return Err(format!(
                    "unknown leak kind `{}` in match-leak-kinds: expected definite, indirect, \
                     possible, reachable (comma-separated), all or none",
                    clip(word.trim())
                ))
            }
        }
    }
    Ok(bits)
}

impl Suppressions {
    /// No suppressions.
    pub fn new() -> Suppressions {
        Suppressions::default()
    }

    /// memlens's built-in suppressions: memory that glibc, the dynamic loader and libstdc++
    /// keep for themselves. The text, with the reason for each entry, is
    /// [`Suppressions::default_set_text`].
    pub fn default_set() -> Suppressions {
        let mut s = Suppressions::new();
        s.parse_valgrind(DEFAULT_SUPPRESSIONS, DEFAULT_ORIGIN)
            .expect("the built-in suppressions parse");
        s
    }

    /// The built-in suppressions in Valgrind's format, with comments, as
    /// `memlens leaks --show-default-suppressions` prints them.
    pub fn default_set_text() -> &'static str {
        DEFAULT_SUPPRESSIONS
    }

    /// Appends another set's suppressions (they match after this set's).
    pub fn extend(&mut self, other: Suppressions) {
        self.entries.extend(other.entries);
    }

    /// Number of suppressions loaded (all tools and kinds).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The loaded suppressions, in matching order.
    pub fn iter(&self) -> impl Iterator<Item = SuppressionInfo<'_>> {
        self.entries.iter().map(Entry::info)
    }

    /// Adds the suppressions of a Valgrind suppression file. `origin` names it in errors.
    /// On error nothing is added.
    pub fn parse_valgrind(&mut self, text: &str, origin: &str) -> Result<(), ParseError> {
        let err = |line: usize, message: String| ParseError {
            origin: origin.to_string(),
            line,
            message,
        };
        let mut lines = Lines::new(text);
        let mut added = Vec::new();
        while let Some((n, line)) = lines.next() {
            if line != "{" {
                return Err(err(
                    n,
                    format!(
                        "expected `{{` alone on a line to start a suppression, found `{}`",
                        clip(line)
                    ),
                ));
            }
            let open = n;
            // The next line of the block, or an error for a block cut short.
            let mut next = |what: &str| -> Result<(usize, &str), ParseError> {
                match lines.next() {
                    Some((n, "{")) => Err(err(
                        n,
                        format!(
                            "unterminated suppression: `{{` before the `}}` of the block \
                             started at line {open}"
                        ),
                    )),
                    Some(l) => Ok(l),
                    None => Err(err(
                        open,
                        format!("unterminated suppression: end of file while reading {what}"),
                    )),
                }
            };
            let (name_line, name) = next("its name")?;
            if name == "}" {
                return Err(err(
                    name_line,
                    "empty suppression: no name, kind or frames".into(),
                ));
            }
            let (kn, kind_line) = next("its kind line")?;
            let name_is_kind = name.split_once(':').is_some_and(|(tools, kind)| {
                is_type_word(kind) && tools.split(',').all(is_type_word)
            });
            if name_is_kind && matches!(Loc::parse(kind_line), Ok(Some(_))) {
                return Err(err(
                    name_line,
                    format!(
                        "suppression without a name: the line after `{{` is the kind line `{}`",
                        clip(name)
                    ),
                ));
            }
            if kind_line == "}" || matches!(Loc::parse(kind_line), Ok(Some(_)) | Err(_)) {
                return Err(err(
                    kn,
                    format!(
                        "suppression `{}` has no `tool:kind` line (such as Memcheck:Leak) \
                         after its name",
                        clip(name)
                    ),
                ));
            }
            let Some((tools, kind)) = kind_line.split_once(':') else {
                return Err(err(
                    kn,
                    format!(
                        "malformed kind line `{}`: expected `tool:kind`, such as Memcheck:Leak",
                        clip(kind_line)
                    ),
                ));
            };
            let tools: Vec<String> = tools.split(',').map(str::to_string).collect();
            if kind.is_empty()
                || kind.contains(char::is_whitespace)
                || tools
                    .iter()
                    .any(|t| t.is_empty() || t.contains(char::is_whitespace))
            {
                return Err(err(
                    kn,
                    format!(
                        "malformed kind line `{}`: expected `tool:kind` without spaces, such as \
                         Memcheck:Leak",
                        clip(kind_line)
                    ),
                ));
            }
            let memcheck = tools.iter().any(|t| t == "Memcheck");
            if memcheck && !MEMCHECK_KINDS.contains(&kind) {
                return Err(err(
                    kn,
                    format!(
                        "unknown Memcheck suppression kind `{}` (Leak, Free, Cond, Addr8, \
                         Param...)",
                        clip(kind)
                    ),
                ));
            }
            let mut rule = ValgrindRule {
                tools,
                kind: kind.to_string(),
                extra: None,
                leak_kinds: ALL_KINDS,
                frames: Vec::new(),
            };
            let (mut n, mut line) = next("its frames")?;
            let is_frame = |l: &str| l == "}" || !matches!(Loc::parse(l), Ok(None));
            if !is_frame(line) {
                if memcheck && kind == "Leak" {
                    let Some(set) = line.strip_prefix("match-leak-kinds:") else {
                        return Err(err(
                            n,
                            format!(
                                "unexpected line `{}` after Memcheck:Leak: expected \
                                 `match-leak-kinds: ...` or a frame (fun:, obj:, src:, ...)",
                                clip(line)
                            ),
                        ));
                    };
                    rule.leak_kinds = parse_leak_kinds(set).map_err(|m| err(n, m))?;
                } else if memcheck && !matches!(kind, "Param" | "FishyValue") {
                    return Err(err(
                        n,
                        format!(
                            "unknown frame line `{}`: expected fun:, obj:, src: or ...",
                            clip(line)
                        ),
                    ));
                } else {
                    rule.extra = Some(line.to_string());
                }
                (n, line) = next("its frames")?;
            } else if memcheck && kind == "Param" {
                return Err(err(
                    n,
                    format!(
                        "Memcheck:Param suppression `{}` needs the system call parameter \
                         (such as write(buf)) on the line after its kind",
                        clip(name)
                    ),
                ));
            }
            while line != "}" {
                match Loc::parse(line) {
                    Ok(Some(loc)) => rule.frames.push(loc),
                    Ok(None) => {
                        return Err(err(
                            n,
                            format!(
                                "unknown frame line `{}`: expected fun:, obj:, src: or ...",
                                clip(line)
                            ),
                        ))
                    }
                    Err(m) => return Err(err(n, m)),
                }
                if rule.frames.len() > MAX_FRAME_LINES {
                    return Err(err(
                        n,
                        format!(
                            "too many frames in suppression `{}` (more than 500)",
                            clip(name)
                        ),
                    ));
                }
                (n, line) = next("its frames")?;
            }
            if rule.frames.iter().all(|l| matches!(l, Loc::Any)) {
                return Err(err(
                    n,
                    format!(
                        "suppression `{}` needs at least one frame line that is not `...`",
                        clip(name)
                    ),
                ));
            }
            added.push(Entry {
                name: name.to_string(),
                kind_line: kind_line.to_string(),
                origin: origin.to_string(),
                line: name_line,
                rule: Rule::Valgrind(rule),
            });
        }
        self.entries.extend(added);
        Ok(())
    }

    /// Adds the suppressions of a LeakSanitizer suppression list. On error nothing is added.
    pub fn parse_lsan(&mut self, text: &str, origin: &str) -> Result<(), ParseError> {
        let mut added = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let n = i + 1;
            let err = |message: String| ParseError {
                origin: origin.to_string(),
                line: n,
                message,
            };
            let line = raw.trim_start_matches([' ', '\t', '\u{feff}']);
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim_end_matches([' ', '\t', '\r']);
            if line.is_empty() {
                continue;
            }
            let Some((kind, template)) = line.split_once(':') else {
                return Err(err(format!(
                    "expected `leak:PATTERN`, found `{}`",
                    clip(line)
                )));
            };
            if !SANITIZER_TYPES.contains(&kind) {
                return Err(err(format!(
                    "unknown suppression type `{}`: LeakSanitizer suppressions are \
                     `leak:PATTERN` lines",
                    clip(kind)
                )));
            }
            if kind == "leak" && template.is_empty() {
                return Err(err(
                    "empty `leak:` pattern, which would suppress every leak; write `leak:*` \
                     if that is meant"
                        .into(),
                ));
            }
            added.push(Entry {
                name: line.to_string(),
                kind_line: kind.to_string(),
                origin: origin.to_string(),
                line: n,
                rule: Rule::Lsan {
                    kind: kind.to_string(),
                    template: template.to_string(),
                },
            });
        }
        self.entries.extend(added);
        Ok(())
    }

    /// Reads a suppression file, Valgrind's or LeakSanitizer's: a file whose first line
    /// (ignoring blank lines and `#` comments) is `{` is a Valgrind file, one whose first
    /// line is `type:...` a LeakSanitizer list.
    pub fn load_file(&mut self, path: &Path) -> Result<(), ParseError> {
        let origin = path.display().to_string();
        let fail = |message: String| ParseError {
            origin: origin.clone(),
            line: 0,
            message,
        };
        let bytes = read_bounded(path, MAX_FILE_BYTES)
            .map_err(|e| fail(format!("cannot read the suppression file: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        match Lines::new(&text).next() {
            None => Ok(()),
            Some((_, "{")) => self.parse_valgrind(&text, &origin),
            Some((_, l)) if l.split_once(':').is_some_and(|(t, _)| is_type_word(t)) => {
                self.parse_lsan(&text, &origin)
            }
            Some((n, l)) => Err(ParseError {
                origin,
                line: n,
                message: format!(
                    "`{}` starts neither a Valgrind suppression file (blocks in `{{ }}`) nor \
                     a LeakSanitizer one (`leak:PATTERN` lines)",
                    clip(l)
                ),
            }),
        }
    }

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

fn is_type_word(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn lsan_any_frame(template: &str, frames: &[Frame]) -> bool {
    frames.iter().any(|f| {
        [f.module, f.function, f.mangled, f.file]
            .into_iter()
            .flatten()
            .any(|s| lsan_match(template, s))
    })
}

/// A Valgrind suppression for a leak of `kind` allocated at `frames`, as
/// `valgrind --gen-suppressions=all` prints it, ready to paste into a file:
///
/// ```text
/// {
///    <insert_a_suppression_name_here>
///    Memcheck:Leak
///    match-leak-kinds: definite
///    fun:malloc
///    fun:_Z4makev
///    fun:main
/// }
/// ```
///
/// `name` replaces `<insert_a_suppression_name_here>` unless empty. Frames are written as
/// `fun:` with the mangled name when known (what valgrind compares), else the function
/// name, else `obj:` with the module, else `obj:*`; up to `main` and at most 24 of them.
/// The result parses and suppresses the leak it was made from.
pub fn gen_suppression(name: &str, kind: LeakKind, frames: &[Frame]) -> String {
    gen_block(
        name,
        &format!("Memcheck:Leak\n   match-leak-kinds: {}", kind.as_str()),
        frames,
    )
}

/// A Valgrind suppression for a memcheck error of another kind than a leak (`Free` for
/// invalid, double and mismatched frees), at `frames` (`frames[0]` is the releasing
/// function), in the layout of [`gen_suppression`].
pub fn gen_error_suppression(name: &str, kind: &str, frames: &[Frame]) -> String {
    gen_block(name, &format!("Memcheck:{kind}"), frames)
}

fn gen_block(name: &str, kind_lines: &str, frames: &[Frame]) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], "?");
    let name = one_line(name.trim());
    let name = match name.as_str() {
        "" => "<insert_a_suppression_name_here>".to_string(),
        "{" | "}" => format!("<{name}>"),
        n if n.starts_with('#') => format!("<{name}>"),
        _ => name,
    };
    let mut out = format!("{{\n   {name}\n   {kind_lines}\n");
    for f in frames.iter().take(MAX_GEN_FRAMES) {
        let line = match (f.mangled.or(f.function), f.module) {
            (Some(fun), _) if !fun.trim().is_empty() => format!("fun:{}", one_line(fun.trim())),
            (_, Some(m)) if !m.trim().is_empty() => format!("obj:{}", one_line(m.trim())),
            _ => "obj:*".to_string(),
        };
        out.push_str("   ");
        out.push_str(&line);
        out.push('\n');
        if f.function == Some("main") || f.mangled == Some("main") {
            break;
        }
    }
    if frames.is_empty() {
        out.push_str("   obj:*\n");
    }
    out.push_str("}\n");
    out
}

const DEFAULT_ORIGIN: &str = "<memlens default suppressions>";

/// The built-in suppressions. Every entry is something memcheck does not report either
/// (valgrind frees it at exit or suppresses it) or that LeakSanitizer treats as reachable.
const DEFAULT_SUPPRESSIONS: &str = r#"# memlens's built-in leak suppressions, in Valgrind's suppression format.
#
# Each entry hides memory that the dynamic loader (ld.so), glibc or libstdc++ keep for
# themselves, never the program's leaks. memcheck does not show any of it either: valgrind
# frees most of it at exit (__libc_freeres, __gnu_cxx::__freeres) or suppresses it (its
# default.supp), and LeakSanitizer treats ld.so's allocations as reachable. Checked with
# valgrind 3.19, glibc 2.36 and GCC 12's libstdc++ (see tests/leaks/README.md).
#
# Frame 0 is the allocation function (malloc, calloc, realloc, operator new...). obj:
# patterns have no directory because memlens knows modules by file name. Entries that name
# glibc's internal functions need glibc's debug symbols (Debian: libc6-dbg) to apply.

# Each thread's dynamic thread vector (DTV), calloc'd by ld.so when the thread is created.
# A running thread refers to it only as &dtv[1], so memcheck reports it as possibly lost
# (272 bytes with glibc 2.36); a joined thread's DTV stays in glibc's cache of thread
# stacks until __libc_freeres.
{
   glibc-thread-dtv
   Memcheck:Leak
   match-leak-kinds: all
   ...
   fun:_dl_allocate_tls
}

# Dynamic TLS blocks and DTV growth for the __thread variables of dlopen'd libraries.
# valgrind's default.supp: dtv-addr-tail, dtv-addr-init, dtv-addr-resize; LeakSanitizer's
# built-in suppressions: leak:*tls_get_addr* (glibc bug 12650).
{
   glibc-tls-get-addr
   Memcheck:Leak
   match-leak-kinds: all
   ...
   fun:*tls_get_addr*
}
{
   glibc-dtv-resize
   Memcheck:Leak
   match-leak-kinds: all
   ...
   fun:_dl_resize_dtv
}

# Everything else ld.so allocates for itself: the link map, name and search paths of each
# library loaded with dlopen, dependency lists, version tables, libgcc_s loaded behind
# pthread_exit and backtrace. memcheck shows dlopen's blocks as still reachable until the
# library is closed; LeakSanitizer ignores every block allocated from ld.so
# (use_ld_allocations).
{
   ld.so-internal
   Memcheck:Leak
   match-leak-kinds: all
   fun:*
   obj:*ld-linux*.so*
}

# libstdc++'s emergency exception-handling pool (72,704 bytes with GCC 12's libstdc++),
# malloc'd by a static constructor of libstdc++ itself, run by ld.so, and never freed
# (valgrind frees it with __gnu_cxx::__freeres). Without libstdc++'s debug symbols the
# allocating function has no name: the entry names the module and who ran it.
{
   libstdc++-emergency-eh-pool
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:malloc
   obj:*libstdc++.so*
   ...
   obj:*ld-linux*.so*
}

# stdio buffers (4096 bytes for a pipe or a file, 1024 for a terminal), malloc'd on a
# stream's first read or write. glibc never frees them at exit, only __libc_freeres does
# (valgrind runs it, so memcheck shows them only after a fatal signal).
{
   glibc-stdio-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:malloc
   fun:_IO_file_doallocate
}

# Caches that glibc fills on first use and frees only in __libc_freeres, which valgrind
# runs at exit (seen with valgrind --run-libc-freeres=no): locale data, time zone, message
# catalogs (gettext, and strerror or dlerror in a translated locale), NSS configuration,
# resolver configuration, dlerror's state.
{
   glibc-locale
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:setlocale
}
{
   glibc-locale-data
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:_nl_find_locale
}
{
   glibc-timezone
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:tzset_internal
}
{
   glibc-gettext
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:__dcigettext
}
{
   glibc-nss
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:__nss_*
}
{
   glibc-resolver
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:__resolv_conf_*
}
{
   glibc-dlerror
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:_dlerror_run
}
{
   glibc-dlerror-message
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:dlerror*
}

# The static result buffers of the non-reentrant lookups (glibc's getXXbyYY.c and
# getXXent.c: getpwnam, getgrgid, gethostbyname, getservbyname, getprotobyname...), kept
# for the next call and freed by __libc_freeres.
{
   glibc-getpw-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getpw*
}
{
   glibc-getgr-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getgr*
}
{
   glibc-getsp-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getsp*
}
{
   glibc-gethostby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:gethostby*
}
{
   glibc-getservby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getservby*
}
{
   glibc-getprotoby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getprotoby*
}
{
   glibc-getnetby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getnetby*
}
"#;

#[cfg(test)]
mod tests;
