//! Arbitrary text as a Valgrind suppression file and as a LeakSanitizer list, then the
//! suppressions that parsed matched against a few stacks. Nothing may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memlens_analysis::suppressions::Frame;
use memlens_analysis::suppressions::{LeakKind, Suppressions};

fn frame<'a>(
    function: Option<&'a str>,
    mangled: Option<&'a str>,
    file: Option<&'a str>,
    module: Option<&'a str>,
) -> Frame<'a> {
    Frame {
        function,
        mangled,
        file,
        line: Some(12),
        module,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let stacks = [
        vec![
            frame(
                Some("malloc"),
                None,
                None,
                Some("/usr/lib/libmemlens_preload.so"),
            ),
            frame(Some("make_node"), None, Some("/src/tree.c"), Some("prog")),
            frame(Some("main"), None, Some("prog.c"), Some("/home/me/prog")),
        ],
        vec![
            frame(
                Some("operator new(unsigned long)"),
                Some("_Znwm"),
                None,
                Some("libstdc++.so.6"),
            ),
            frame(
                Some("lose_short_string()"),
                Some("_Z17lose_short_stringv"),
                Some("a.cpp"),
                Some("a"),
            ),
        ],
        vec![frame(None, None, None, None)],
        Vec::new(),
    ];
    for valgrind in [true, false] {
        let mut s = Suppressions::new();
        let parsed = if valgrind {
            s.parse_valgrind(&text, "fuzz.supp")
        } else {
            s.parse_lsan(&text, "fuzz.supp")
        };
        if parsed.is_err() {
            continue;
        }
        for frames in &stacks {
            for kind in [LeakKind::Definite, LeakKind::Reachable] {
                let _ = s.matches(kind, frames);
            }
            let _ = s.matches_error("Free", None, frames);
            let _ = s.matches_error("Param", Some("write(buf)"), frames);
        }
        let _ = s.iter().count();
    }
});
