//! `--gen-suppressions=all`: a Valgrind suppression block for a leak or a heap error,
//! ready to paste into a file; it parses and suppresses what it was made from.

use super::{Frame, LeakKind};

/// Frames written by [`gen_suppression`] (the limit valgrind's manual gives).
const MAX_GEN_FRAMES: usize = 24;

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

/// The block: name, kind line(s), frame lines.
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
