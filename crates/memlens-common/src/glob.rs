//! Shell-style wildcards (`*` any run of bytes, `?` one byte, everything else literal), as
//! Valgrind's suppression patterns and `--trace-children-skip` use them. No allocation, so
//! the recorder can match inside the program it records.

/// Whether `s` matches the wildcard pattern `pat`, with one remembered `*`: O(pattern x
/// string) at worst.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Whether `s` matches one of the comma-separated wildcard patterns of `list` (empty
/// patterns match nothing).
pub fn glob_list_match(list: &[u8], s: &[u8]) -> bool {
    list.split(|&c| c == b',')
        .filter(|p| !p.is_empty())
        .any(|p| glob_match(p, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_patterns() {
        assert!(glob_list_match(b"*/true,*/basename", b"/usr/bin/basename"));
        assert!(glob_list_match(b"/bin/t?ue", b"/bin/true"));
        assert!(!glob_list_match(b"*/true,,", b"/usr/bin/truest"));
        assert!(!glob_list_match(b"", b""));
        assert!(!glob_list_match(b",", b"x"));
    }
}
