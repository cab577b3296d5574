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
//!
//! # Where things are
//!
//! This file has the types; `suppressions/parse.rs` reads both formats,
//! `suppressions/matching.rs` matches frames against them, `suppressions/generate.rs`
//! writes `--gen-suppressions` blocks, `suppressions/defaults.rs` holds the built-in set.

mod defaults;
mod generate;
mod matching;
mod parse;

pub use generate::{gen_error_suppression, gen_suppression};
#[cfg(test)]
use matching::lsan_match;
pub use matching::FramePattern;
use matching::Loc;
#[cfg(test)]
use memlens_common::glob::glob_match;

use std::fmt;

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

impl Suppressions {
    /// No suppressions.
    pub fn new() -> Suppressions {
        Suppressions::default()
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
}

#[cfg(test)]
mod tests;
