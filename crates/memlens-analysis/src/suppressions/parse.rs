//! Reading suppressions: Valgrind suppression files and LeakSanitizer suppression lists,
//! with one-sentence errors that name the file and line. Nothing is added on error.

use super::{Entry, LeakKind, Loc, ParseError, Rule, Suppressions, ValgrindRule, ALL_KINDS};
use std::path::Path;

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

/// A line of the input, cut for an error message.
pub(super) fn clip(s: &str) -> String {
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

/// A word that can be a tool, a Memcheck kind or a sanitizer type.
fn is_type_word(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Suppressions {
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
            let (tools, kind) = tools_and_kind(&err, (name_line, name), (kn, kind_line))?;
            let memcheck = tools.iter().any(|t| t == "Memcheck");
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
}

/// The tools and the kind of a Valgrind entry's kind line (`Memcheck:Leak`), checked:
/// `name` is the line before it, `err` makes an error at a line.
fn tools_and_kind<'t>(
    err: &dyn Fn(usize, String) -> ParseError,
    (name_line, name): (usize, &str),
    (kn, kind_line): (usize, &'t str),
) -> Result<(Vec<String>, &'t str), ParseError> {
    let name_is_kind = name
        .split_once(':')
        .is_some_and(|(tools, kind)| is_type_word(kind) && tools.split(',').all(is_type_word));
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
    if tools.iter().any(|t| t == "Memcheck") && !MEMCHECK_KINDS.contains(&kind) {
        return Err(err(
            kn,
            format!(
                "unknown Memcheck suppression kind `{}` (Leak, Free, Cond, Addr8, \
                 Param...)",
                clip(kind)
            ),
        ));
    }
    Ok((tools, kind))
}
