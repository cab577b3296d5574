//! Unit tests of the suppression files: parsing (Valgrind's and LeakSanitizer's
//! formats, with their errors), matching, and generation. Longer than 800 lines on
//! purpose: each format's grammar and each wildcard rule has its own exact case.

use super::*;

fn fun(name: &'static str) -> Frame<'static> {
    Frame {
        function: Some(name),
        ..Frame::default()
    }
}

fn fun_in(name: &'static str, module: &'static str) -> Frame<'static> {
    Frame {
        function: Some(name),
        module: Some(module),
        ..Frame::default()
    }
}

fn obj(module: &'static str) -> Frame<'static> {
    Frame {
        module: Some(module),
        ..Frame::default()
    }
}

fn src(name: &'static str, file: &'static str, line: u32) -> Frame<'static> {
    Frame {
        function: Some(name),
        file: Some(file),
        line: Some(line),
        ..Frame::default()
    }
}

fn valgrind(text: &str) -> Suppressions {
    let mut s = Suppressions::new();
    s.parse_valgrind(text, "test.supp")
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

fn lsan(text: &str) -> Suppressions {
    let mut s = Suppressions::new();
    s.parse_lsan(text, "lsan.supp")
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

fn valgrind_err(text: &str) -> ParseError {
    let mut s = Suppressions::new();
    let e = s
        .parse_valgrind(text, "bad.supp")
        .expect_err("should not parse");
    assert!(s.is_empty(), "nothing is added on error");
    e
}

fn leak(name: &str, kinds: &str, frames: &[&str]) -> String {
    let mut s = format!("{{\n   {name}\n   Memcheck:Leak\n");
    if !kinds.is_empty() {
        s += &format!("   match-leak-kinds: {kinds}\n");
    }
    for f in frames {
        s += &format!("   {f}\n");
    }
    s + "}\n"
}

// The examples of the Valgrind manual, section 2.5 "Suppressing errors".

const MANUAL_EXAMPLES: &str = "\
{
  __gconv_transform_ascii_internal/__mbrtowc/mbtowc
  Memcheck:Value4
  fun:__gconv_transform_ascii_internal
  fun:__mbr*toc
  fun:mbtowc
}
{
  libX11.so.6.2/libX11.so.6.2/libXaw.so.7.0
  Memcheck:Value4
  obj:/usr/X11R6/lib/libX11.so.6.2
  obj:/usr/X11R6/lib/libX11.so.6.2
  obj:/usr/X11R6/lib/libXaw.so.7.0
}
{
  libX11.so.6.2/libX11.so.6.2/libXaw.so.7.0
  Memcheck:Value4
  src:valid.c:321
}
{
   a-contrived-example
   Memcheck:Leak
   fun:malloc
   ...
   fun:ddd
   ...
   fun:ccc
   ...
   fun:main
}
";

#[test]
fn manual_examples_parse_and_match() {
    let s = valgrind(MANUAL_EXAMPLES);
    assert_eq!(s.len(), 4);
    let kinds: Vec<_> = s.iter().map(|i| (i.kind, i.line)).collect();
    assert_eq!(
        kinds,
        [
            ("Memcheck:Value4", 2),
            ("Memcheck:Value4", 9),
            ("Memcheck:Value4", 16),
            ("Memcheck:Leak", 21)
        ]
    );

    // "suppress a use-of-uninitialised-value error, when the data size is 4, when it occurs
    // in the function __gconv_transform_ascii_internal, when that is called from any
    // function of name matching __mbr*toc, when that is called from mbtowc"
    let gconv = [
        fun("__gconv_transform_ascii_internal"),
        fun("__mbrXtoc"),
        fun("mbtowc"),
        fun("main"),
    ];
    assert_eq!(
        s.matches_error("Value4", None, &gconv),
        Some("__gconv_transform_ascii_internal/__mbrtowc/mbtowc")
    );
    assert_eq!(s.matches_error("Value8", None, &gconv), None);
    assert_eq!(
        s.matches(LeakKind::Definite, &gconv),
        None,
        "not a leak suppression"
    );
    let other = [
        fun("__gconv_transform_ascii_internal"),
        fun("__mbrtoc"),
        fun("wctomb"),
    ];
    assert_eq!(s.matches_error("Value4", None, &other), None);
    // The pattern is __mbr*toc: __mbrtowc ends differently.
    let other = [
        fun("__gconv_transform_ascii_internal"),
        fun("__mbrtowc"),
        fun("mbtowc"),
    ];
    assert_eq!(s.matches_error("Value4", None, &other), None);

    let x11 = [
        obj("/usr/X11R6/lib/libX11.so.6.2"),
        obj("/usr/X11R6/lib/libX11.so.6.2"),
        obj("/usr/X11R6/lib/libXaw.so.7.0"),
    ];
    assert_eq!(
        s.matches_error("Value4", None, &x11),
        Some("libX11.so.6.2/libX11.so.6.2/libXaw.so.7.0")
    );
    // memlens knows modules by file name: the last path component of the pattern matches.
    let x11_names = [
        obj("libX11.so.6.2"),
        obj("libX11.so.6.2"),
        obj("libXaw.so.7.0"),
    ];
    assert!(s.matches_error("Value4", None, &x11_names).is_some());
    let x11_elsewhere = [
        obj("/opt/lib/libX11.so.6.2"),
        obj("/opt/lib/libX11.so.6.2"),
        obj("/opt/lib/libXaw.so.7.0"),
    ];
    assert_eq!(s.matches_error("Value4", None, &x11_elsewhere), None);

    assert!(s
        .matches_error("Value4", None, &[src("check", "valid.c", 321)])
        .is_some());
    assert!(s
        .matches_error("Value4", None, &[src("check", "/home/me/valid.c", 321)])
        .is_some());
    assert_eq!(
        s.matches_error("Value4", None, &[src("check", "valid.c", 322)]),
        None
    );

    // "the allocation was done by main calling (though any number of intermediaries,
    // including zero) ccc, calling onwards via ddd and eventually to malloc"
    let direct = [fun("malloc"), fun("ddd"), fun("ccc"), fun("main")];
    let deep = [
        fun("malloc"),
        fun("x"),
        fun("ddd"),
        fun("y"),
        fun("z"),
        fun("ccc"),
        fun("w"),
        fun("main"),
        fun("__libc_start_call_main"),
    ];
    for frames in [&direct[..], &deep[..]] {
        for kind in LeakKind::ALL {
            assert_eq!(s.matches(kind, frames), Some("a-contrived-example"));
        }
    }
    let swapped = [fun("malloc"), fun("ccc"), fun("ddd"), fun("main")];
    assert_eq!(s.matches(LeakKind::Definite, &swapped), None);
    let not_malloc = [fun("calloc"), fun("ddd"), fun("ccc"), fun("main")];
    assert_eq!(s.matches(LeakKind::Definite, &not_malloc), None);
    let no_main = [fun("malloc"), fun("ddd"), fun("ccc"), fun("start_thread")];
    assert_eq!(s.matches(LeakKind::Definite, &no_main), None);
}

// What `valgrind --gen-suppressions=all` printed for tests/programs/leaks/containers.cpp
// and exit_modes_cxx.cpp (valgrind 3.19): inlined frames by their short names (with
// spaces), C++ frames mangled, unknown frames as obj:.
const GENERATED: &str = "\
{
   <insert_a_suppression_name_here>
   Memcheck:Leak
   match-leak-kinds: indirect
   fun:_Znwm
   fun:allocate
   fun:allocate
   fun:__allocate_guarded<std::allocator<std::_Sp_counted_ptr_inplace<Peer, std::allocator<void>, (__gnu_cxx::_Lock_policy)2> > >
   fun:__shared_count<Peer, std::allocator<void> >
   fun:__shared_ptr<std::allocator<void> >
   fun:shared_ptr<std::allocator<void> >
   fun:make_shared<Peer>
   fun:_Z17lose_shared_cyclev
   fun:_Z15make_containersv
   fun:main
}
{
   <insert_a_suppression_name_here>
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:malloc
   obj:/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30
   fun:call_init
   fun:call_init
   fun:_dl_init
   obj:/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
   obj:*
   obj:*
   obj:*
}
";

#[test]
fn generated_suppressions_parse_and_match() {
    let s = valgrind(GENERATED);
    assert_eq!(s.len(), 2);
    let shared = [
        Frame {
            function: Some("operator new(unsigned long)"),
            mangled: Some("_Znwm"),
            ..Frame::default()
        },
        fun("allocate"),
        fun("allocate"),
        fun("__allocate_guarded<std::allocator<std::_Sp_counted_ptr_inplace<Peer, std::allocator<void>, (__gnu_cxx::_Lock_policy)2> > >"),
        fun("__shared_count<Peer, std::allocator<void> >"),
        fun("__shared_ptr<std::allocator<void> >"),
        fun("shared_ptr<std::allocator<void> >"),
        fun("make_shared<Peer>"),
        Frame {
            function: Some("lose_shared_cycle()"),
            mangled: Some("_Z17lose_shared_cyclev"),
            ..Frame::default()
        },
        Frame {
            function: Some("make_containers()"),
            mangled: Some("_Z15make_containersv"),
            ..Frame::default()
        },
        fun("main"),
    ];
    assert_eq!(
        s.matches(LeakKind::Indirect, &shared),
        Some("<insert_a_suppression_name_here>")
    );
    assert_eq!(
        s.matches(LeakKind::Definite, &shared),
        None,
        "match-leak-kinds: indirect"
    );

    let pool = [
        fun_in(
            "malloc",
            "/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so",
        ),
        obj("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"),
        fun("call_init"),
        fun("call_init"),
        fun("_dl_init"),
        obj("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        Frame::default(),
        Frame::default(),
        Frame::default(),
    ];
    assert!(s.matches(LeakKind::Reachable, &pool).is_some());
    // obj:* matches a frame nobody knows anything about, but not a missing frame.
    assert_eq!(s.matches(LeakKind::Reachable, &pool[..8]), None);
}

#[test]
fn fun_matches_mangled_or_demangled_and_unknown_is_question_marks() {
    let s = valgrind(&leak("m", "", &["fun:_Znwm", "fun:_Z4makev"]));
    let mangled = [
        Frame {
            function: Some("operator new(unsigned long)"),
            mangled: Some("_Znwm"),
            ..Frame::default()
        },
        Frame {
            function: Some("make()"),
            mangled: Some("_Z4makev"),
            ..Frame::default()
        },
    ];
    assert_eq!(s.matches(LeakKind::Definite, &mangled), Some("m"));
    let s = valgrind(&leak(
        "d",
        "",
        &["fun:operator new(unsigned long)", "fun:make()"],
    ));
    assert_eq!(s.matches(LeakKind::Definite, &mangled), Some("d"));
    let demangled_only = [fun("operator new(unsigned long)"), fun("make()")];
    assert_eq!(s.matches(LeakKind::Definite, &demangled_only), Some("d"));

    let s = valgrind(&leak("q", "", &["fun:malloc", "fun:???"]));
    assert!(s
        .matches(LeakKind::Definite, &[fun("malloc"), Frame::default()])
        .is_some());
    assert!(s
        .matches(LeakKind::Definite, &[fun("malloc"), obj("libfoo.so")])
        .is_some());
    // ? is a wildcard: ??? is any three-character name.
    assert!(s
        .matches(LeakKind::Definite, &[fun("malloc"), fun("abc")])
        .is_some());
    assert!(s
        .matches(LeakKind::Definite, &[fun("malloc"), fun("abcd")])
        .is_none());
}

#[test]
fn wildcards_in_patterns() {
    let s = valgrind(&leak(
        "w",
        "",
        &["fun:*alloc", "fun:my_?_fn*", "obj:*/libfoo.so*"],
    ));
    let ok = [fun("calloc"), fun_in("my_x_fn_2", "/usr/lib/libfoo.so.1")];
    let ok3 = [
        fun("realloc"),
        fun("my_y_fn"),
        fun_in("caller", "/usr/lib/libfoo.so.1"),
    ];
    assert_eq!(
        s.matches(LeakKind::Definite, &ok),
        None,
        "three frame lines need three frames"
    );
    assert_eq!(s.matches(LeakKind::Definite, &ok3), Some("w"));
    let bad_q = [fun("realloc"), fun("my_yy_fn"), obj("/usr/lib/libfoo.so.1")];
    assert_eq!(s.matches(LeakKind::Definite, &bad_q), None);
    let bad_obj = [fun("realloc"), fun("my_y_fn"), obj("/usr/lib/libbar.so.1")];
    assert_eq!(s.matches(LeakKind::Definite, &bad_obj), None);
    let basename = [fun("realloc"), fun("my_y_fn"), obj("libfoo.so.1")];
    assert_eq!(s.matches(LeakKind::Definite, &basename), Some("w"));

    assert!(glob_match(b"", b""));
    assert!(glob_match(b"*", b""));
    assert!(!glob_match(b"?", b""));
    assert!(glob_match(b"a*b*c", b"aXbYbZc"));
    assert!(!glob_match(b"a*b*c", b"aXbYbZ"));
    assert!(glob_match(b"*a*", b"bab"));
    assert!(glob_match(b"**", b"x"));
    assert!(!glob_match(b"abc", b"abcd"));
}

#[test]
fn frame_wildcards() {
    let s = valgrind(&leak(
        "dots",
        "",
        &["...", "fun:target", "...", "fun:outer"],
    ));
    assert!(s
        .matches(LeakKind::Definite, &[fun("target"), fun("outer")])
        .is_some());
    assert!(s
        .matches(
            LeakKind::Definite,
            &[
                fun("malloc"),
                fun("a"),
                fun("target"),
                fun("b"),
                fun("c"),
                fun("outer"),
                fun("main")
            ]
        )
        .is_some());
    assert!(s
        .matches(
            LeakKind::Definite,
            &[fun("malloc"), fun("outer"), fun("target")]
        )
        .is_none());
    assert!(s.matches(LeakKind::Definite, &[]).is_none());
    // A later occurrence of the first frame line can be the one that works.
    let s = valgrind(&leak("retry", "", &["...", "fun:a", "fun:b"]));
    assert!(s
        .matches(
            LeakKind::Definite,
            &[fun("a"), fun("x"), fun("a"), fun("b")]
        )
        .is_some());
    // Prefix: frames after the last line do not matter; a trailing ... changes nothing.
    let s = valgrind(&leak("prefix", "", &["fun:malloc", "..."]));
    assert!(s.matches(LeakKind::Definite, &[fun("malloc")]).is_some());
    assert!(s
        .matches(LeakKind::Definite, &[fun("malloc"), fun("anything")])
        .is_some());
    assert!(s.matches(LeakKind::Definite, &[fun("calloc")]).is_none());
    // Frame lines beyond the stack do not match.
    let s = valgrind(&leak("long", "", &["fun:malloc", "fun:f"]));
    assert!(s.matches(LeakKind::Definite, &[fun("malloc")]).is_none());
}

#[test]
fn src_lines() {
    let s = valgrind(&leak("s", "", &["fun:malloc", "src:leaky.c:12"]));
    assert!(s
        .matches(
            LeakKind::Definite,
            &[fun("malloc"), src("f", "/src/leaky.c", 12)]
        )
        .is_some());
    assert!(s
        .matches(
            LeakKind::Definite,
            &[fun("malloc"), src("f", "/src/leaky.c", 13)]
        )
        .is_none());
    assert!(s
        .matches(LeakKind::Definite, &[fun("malloc"), fun("f")])
        .is_none());
    let s = valgrind(&leak("any-line", "", &["fun:malloc", "src:*/leaky.c"]));
    assert!(s
        .matches(
            LeakKind::Definite,
            &[fun("malloc"), src("f", "/src/leaky.c", 99)]
        )
        .is_some());
    assert!(s
        .matches(
            LeakKind::Definite,
            &[fun("malloc"), src("f", "leaky.c", 99)]
        )
        .is_none());
}

#[test]
fn match_leak_kinds() {
    let frames = [fun("malloc"), fun("f")];
    let kinds_matched = |kinds: &str| -> Vec<LeakKind> {
        let s = valgrind(&leak("k", kinds, &["fun:malloc"]));
        LeakKind::ALL
            .into_iter()
            .filter(|&k| s.matches(k, &frames).is_some())
            .collect()
    };
    use LeakKind::*;
    assert_eq!(kinds_matched(""), [Definite, Indirect, Possible, Reachable]);
    assert_eq!(
        kinds_matched("all"),
        [Definite, Indirect, Possible, Reachable]
    );
    assert_eq!(kinds_matched("none"), []);
    assert_eq!(kinds_matched("definite"), [Definite]);
    assert_eq!(kinds_matched("possible,reachable"), [Possible, Reachable]);
    assert_eq!(kinds_matched("indirect, definite"), [Definite, Indirect]);
    let e = valgrind_err(&leak("k", "definite,lost", &["fun:malloc"]));
    assert_eq!(e.line, 4);
    assert!(e.message.contains("unknown leak kind `lost`"), "{e}");
}

#[test]
fn other_tools_and_kinds_are_kept_but_do_not_match_leaks() {
    let text = "\
{
   helgrind-race
   Helgrind:Race
   fun:malloc
}
{
   drd-and-helgrind
   drd,Helgrind:ConflictingAccess
   fun:malloc
}
{
   param
   Memcheck:Param
   write(buf)
   fun:malloc
}
{
   fishy
   Memcheck:FishyValue
   malloc(size)
   fun:malloc
}
{
   bad-free
   Memcheck:Free
   fun:free
   fun:release
}
{
   cond
   Memcheck:Value0
   fun:malloc
}
{
   core
   CoreError:FdBadClose
   fun:close
}
{
   several-tools
   Helgrind,Memcheck:Leak
   fun:malloc
}
";
    let s = valgrind(text);
    assert_eq!(s.len(), 8);
    let m = [fun("malloc"), fun("main")];
    for k in LeakKind::ALL {
        assert_eq!(s.matches(k, &m), Some("several-tools"));
    }
    assert_eq!(
        s.matches_error("Param", Some("write(buf)"), &m),
        Some("param")
    );
    assert_eq!(s.matches_error("Param", Some("read(buf)"), &m), None);
    assert_eq!(s.matches_error("Param", None, &m), None);
    assert_eq!(
        s.matches_error("FishyValue", Some("malloc(size)"), &m),
        Some("fishy")
    );
    assert_eq!(s.matches_error("Cond", None, &m), Some("cond"));
    assert_eq!(s.matches_error("Value0", None, &m), Some("cond"));
    assert_eq!(
        s.matches_error("Race", None, &m),
        None,
        "Helgrind's, not Memcheck's"
    );
    assert_eq!(
        s.matches_error("Leak", None, &m),
        None,
        "leaks go through matches()"
    );
    let free = [fun("free"), fun("release"), fun("main")];
    assert_eq!(s.matches_error("Free", None, &free), Some("bad-free"));
    assert_eq!(
        s.matches_error("Free", None, &[fun("free"), fun("main")]),
        None
    );
}

#[test]
fn comments_blank_lines_crlf_and_indentation() {
    let text = "\u{feff}# a comment\r\n\r\n   {\r\n  # inside too\r\n\tname with spaces  \r\n Memcheck:Leak\r\n match-leak-kinds: definite\r\n\r\n   fun:malloc\r\n   }\r\n#end";
    let s = valgrind(text);
    assert_eq!(s.len(), 1);
    let info = s.iter().next().unwrap();
    assert_eq!(info.name, "name with spaces");
    assert_eq!(info.line, 5);
    assert_eq!(info.origin, "test.supp");
    assert!(s.matches(LeakKind::Definite, &[fun("malloc")]).is_some());
    assert!(valgrind("").is_empty());
    assert!(valgrind("# only comments\n\n").is_empty());
}

#[test]
fn parse_errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "{\n  name\n  Memcheck:Leak\n  fun:malloc\n",
            1,
            "unterminated suppression",
        ),
        (
            "{\n  a\n  Memcheck:Leak\n  fun:malloc\n{\n  b\n",
            5,
            "unterminated suppression",
        ),
        (
            "{\n  name\n  fun:malloc\n  fun:f\n}\n",
            3,
            "no `tool:kind` line",
        ),
        ("{\n  name\n}\n", 3, "no `tool:kind` line"),
        ("{\n  Memcheck:Leak\n  fun:malloc\n}\n", 2, "without a name"),
        ("{\n}\n", 2, "empty suppression"),
        (
            "{\n  name\n  Memcheck\n  fun:f\n}\n",
            3,
            "malformed kind line",
        ),
        (
            "{\n  name\n  Memcheck:Leak\n  fun:malloc\n  foo:bar\n}\n",
            5,
            "unknown frame line",
        ),
        (
            "{\n  name\n  Memcheck:Leak\n  something\n  fun:f\n}\n",
            4,
            "unexpected line",
        ),
        (
            "{\n  name\n  Memcheck:Free\n  something\n  fun:f\n}\n",
            4,
            "unknown frame line",
        ),
        (
            "{\n  name\n  Memcheck:Lek\n  fun:f\n}\n",
            3,
            "unknown Memcheck suppression kind",
        ),
        (
            "{\n  name\n  Memcheck:Param\n  fun:f\n}\n",
            4,
            "system call parameter",
        ),
        (
            "{\n  name\n  Memcheck:Leak\n  ...\n  ...\n}\n",
            6,
            "not `...`",
        ),
        ("{\n  name\n  Memcheck:Leak\n}\n", 4, "not `...`"),
        (
            "{\n  name\n  Memcheck:Leak\n  src:a.c:x\n}\n",
            4,
            "must be a number",
        ),
        ("\n\nfun:malloc\n", 3, "expected `{`"),
        ("{ name\n  Memcheck:Leak\n  fun:f\n}\n", 1, "expected `{`"),
        (
            "{\n  a\n  Memcheck:Leak\n  fun:f\n}\n}\n",
            6,
            "expected `{`",
        ),
    ];
    for &(text, line, words) in cases {
        let e = valgrind_err(text);
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(words), "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("bad.supp:{line}: ")),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
    // Nothing of a file with an error is kept, even the good blocks before it.
    let mut s = Suppressions::new();
    let text = leak("good", "", &["fun:malloc"]) + "{\n  bad\n";
    assert!(s.parse_valgrind(&text, "x").is_err());
    assert!(s.is_empty());
    // 500 frame lines are fine, 501 are not.
    let many: Vec<String> = (0..500).map(|i| format!("fun:f{i}")).collect();
    let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    valgrind(&leak("many", "", &many));
    let mut too_many = many.clone();
    too_many.push("fun:last");
    assert!(valgrind_err(&leak("many", "", &too_many))
        .message
        .contains("too many frames"));
}

#[test]
fn lsan_lists() {
    let text = "\
# LeakSanitizer suppressions
leak:libfoo.so
  leak:^bar_init$
leak:*third_party/*.cc\r
called_from_lib:libbaz.so
interceptor_via_fun:qux
leak:_ZN3ns5Thing4makeEv
leak:Cache::*grow
";
    let s = lsan(text);
    assert_eq!(s.len(), 7);
    let names: Vec<_> = s.iter().map(|i| (i.name, i.kind, i.line)).collect();
    assert_eq!(names[0], ("leak:libfoo.so", "leak", 2));
    assert_eq!(names[1], ("leak:^bar_init$", "leak", 3));
    assert_eq!(names[2], ("leak:*third_party/*.cc", "leak", 4));
    assert_eq!(
        names[3],
        ("called_from_lib:libbaz.so", "called_from_lib", 5)
    );

    let by_module = [
        fun("malloc"),
        fun_in("f", "/usr/lib/libfoo.so.2"),
        fun("main"),
    ];
    assert_eq!(
        s.matches(LeakKind::Definite, &by_module),
        Some("leak:libfoo.so")
    );
    for k in LeakKind::ALL {
        assert!(
            s.matches(k, &by_module).is_some(),
            "leak: lines apply to every kind"
        );
    }
    let exact = [fun("malloc"), fun("bar_init"), fun("main")];
    assert_eq!(
        s.matches(LeakKind::Definite, &exact),
        Some("leak:^bar_init$")
    );
    let not_exact = [fun("malloc"), fun("bar_init_late"), fun("xbar_init")];
    assert_eq!(s.matches(LeakKind::Definite, &not_exact), None);
    let by_file = [
        fun("malloc"),
        src("f", "/src/third_party/zlib/inflate.cc", 3),
    ];
    assert_eq!(
        s.matches(LeakKind::Definite, &by_file),
        Some("leak:*third_party/*.cc")
    );
    let mangled = [
        fun("malloc"),
        Frame {
            function: Some("ns::Thing::make()"),
            mangled: Some("_ZN3ns5Thing4makeEv"),
            ..Frame::default()
        },
    ];
    assert_eq!(
        s.matches(LeakKind::Definite, &mangled),
        Some("leak:_ZN3ns5Thing4makeEv")
    );
    let demangled = [fun("malloc"), fun("Cache::try_grow(int)")];
    assert_eq!(
        s.matches(LeakKind::Definite, &demangled),
        Some("leak:Cache::*grow")
    );
    // Other sanitizers' types never suppress leaks.
    let other = [fun("malloc"), fun_in("qux", "libbaz.so")];
    assert_eq!(s.matches(LeakKind::Definite, &other), None);
    assert_eq!(s.matches_error("Free", None, &other), None);
}

#[test]
fn lsan_template_match() {
    let t = |p: &str, s: &str| lsan_match(p, s);
    assert!(t("foo", "foo"));
    assert!(t("foo", "xfooy"), "substring");
    assert!(!t("foo", ""), "never the empty string");
    assert!(!t("*", ""));
    assert!(t("*", "x"));
    assert!(t("^foo", "foobar"));
    assert!(!t("^foo", "xfoo"));
    assert!(t("foo$", "xfoo"));
    assert!(!t("foo$", "foox"));
    assert!(t("foo$", "foofoo"), "not only the first occurrence");
    assert!(t("^foo$", "foo"));
    assert!(!t("^foo$", "foofoo"));
    assert!(t("a*b", "xaYbz"));
    assert!(!t("a*b", "bxa"));
    assert!(t("^a*b$", "aXXb"));
    assert!(!t("^a*b$", "aXXbc"));
    assert!(t("a*b*c$", "a1b2c3c"));
    assert!(t("^*foo", "xfoo"));
    assert!(t("foo*$", "foox"));
    assert!(t("a$b", "xa$by"), "$ inside the pattern is a character");
    assert!(t("ns::*::get", "ns::Thing::get()"));
    assert!(t("^", "anything"));
}

#[test]
fn lsan_errors() {
    let err = |text: &str| {
        let mut s = Suppressions::new();
        let e = s.parse_lsan(text, "l.supp").expect_err("should not parse");
        assert!(s.is_empty());
        e
    };
    let e = err("leak:a\nleek:b\n");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("unknown suppression type `leek`"), "{e}");
    let e = err("leak:a\n\njust text\n");
    assert_eq!(e.line, 3);
    assert!(e.message.contains("expected `leak:PATTERN`"), "{e}");
    let e = err("# c\nleak:\n");
    assert_eq!((e.line, e.to_string().starts_with("l.supp:2: ")), (2, true));
    assert!(e.message.contains("empty"), "{e}");
    assert!(lsan("").is_empty());
    assert!(lsan("\n# x\n   \n").is_empty());
}

#[test]
fn load_file_sniffs_the_format() {
    let dir = std::env::temp_dir().join(format!("memlens-supp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut s = Suppressions::new();
    s.load_file(&write(
        "v.supp",
        &format!("# valgrind\n\n{}", leak("v", "", &["fun:malloc"])),
    ))
    .unwrap();
    s.load_file(&write("l.supp", "# lsan\nleak:libfoo\n"))
        .unwrap();
    s.load_file(&write("empty.supp", "# nothing\n")).unwrap();
    assert_eq!(s.len(), 2);
    let v = s.iter().next().unwrap();
    assert_eq!((v.name, v.kind, v.line), ("v", "Memcheck:Leak", 4));
    assert!(v.origin.ends_with("v.supp"));

    let e = s
        .load_file(&write("junk.supp", "\nhello world\n"))
        .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("neither a Valgrind"), "{e}");
    let e = s
        .load_file(&write("bad.supp", "{\n  x\n  Memcheck:Leak\n"))
        .unwrap_err();
    assert!(e.origin.ends_with("bad.supp") && e.line == 1, "{e}");
    let e = s.load_file(&dir.join("missing.supp")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.to_string().contains("missing.supp: cannot read"), "{e}");
    assert_eq!(s.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gen_suppression_format() {
    let frames = [
        Frame {
            function: Some("operator new(unsigned long)"),
            mangled: Some("_Znwm"),
            module: Some("libmemlens_preload.so"),
            ..Frame::default()
        },
        Frame {
            function: Some("make()"),
            mangled: Some("_Z4makev"),
            file: Some("/src/a.cpp"),
            line: Some(3),
            module: Some("prog"),
        },
        obj("libplugin.so"),
        Frame::default(),
        fun("main"),
        fun("__libc_start_call_main"),
    ];
    assert_eq!(
        gen_suppression("", LeakKind::Definite, &frames),
        "{\n   <insert_a_suppression_name_here>\n   Memcheck:Leak\n   match-leak-kinds: definite\n   \
         fun:_Znwm\n   fun:_Z4makev\n   obj:libplugin.so\n   obj:*\n   fun:main\n}\n"
    );
    let named = gen_suppression("my leak", LeakKind::Possible, &frames[..2]);
    assert!(named.starts_with("{\n   my leak\n   Memcheck:Leak\n   match-leak-kinds: possible\n"));
}

#[test]
fn gen_suppression_round_trips() {
    let long: Vec<String> = (0..40).map(|i| format!("level{i}")).collect();
    let long_frames: Vec<Frame> = std::iter::once(fun("malloc"))
        .chain(long.iter().map(|n| Frame {
            function: Some(n.as_str()),
            ..Frame::default()
        }))
        .collect();
    let stacks: Vec<Vec<Frame>> = vec![
        vec![fun("malloc"), fun("f"), fun("main")],
        vec![
            Frame {
                function: Some("operator new[](unsigned long)"),
                mangled: Some("_Znam"),
                ..Frame::default()
            },
            fun("std::vector<int, std::allocator<int> >::_M_realloc_insert(int*, int const&)"),
            fun("operator*"),
            fun("what?"),
            obj("/usr/lib/libfoo.so.1"),
            Frame::default(),
            fun_in("start_thread", "libc.so.6"),
        ],
        vec![Frame::default()],
        vec![],
        long_frames,
        vec![fun("malloc"), fun("with\nnewline"), fun("main")],
    ];
    for (i, frames) in stacks.iter().enumerate() {
        for kind in LeakKind::ALL {
            let name = format!("case {i}");
            let text = gen_suppression(&name, kind, frames);
            let mut s = Suppressions::new();
            s.parse_valgrind(&text, "gen")
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            if frames.is_empty() {
                // No stack, nothing to match: the block still parses.
                continue;
            }
            assert_eq!(s.matches(kind, frames), Some(name.as_str()), "{text}");
            for other in LeakKind::ALL.into_iter().filter(|&k| k != kind) {
                assert_eq!(s.matches(other, frames), None, "{text}");
            }
        }
    }
    // Odd names still give a parsable block.
    for name in ["{", "}", "#comment", "two\nlines", "  "] {
        let text = gen_suppression(name, LeakKind::Definite, &stacks[0]);
        valgrind(&text);
    }
}

#[test]
fn default_set_parses_and_is_printable() {
    let s = Suppressions::default_set();
    assert!(s.len() >= 10);
    let text = Suppressions::default_set_text();
    for info in s.iter() {
        assert_eq!(info.kind, "Memcheck:Leak");
        assert_eq!(info.origin, "<memlens default suppressions>");
        assert!(text.contains(info.name));
    }
    // Each entry is explained by a comment.
    assert!(text.lines().filter(|l| l.starts_with('#')).count() >= s.len());
}

#[test]
fn default_set_on_glibc_and_libstdcxx_stacks() {
    let s = Suppressions::default_set();
    let ld = "ld-linux-x86-64.so.2";
    let libc = "libc.so.6";
    // A thread's DTV, as memcheck showed it for tests/programs/leaks/threads.c running.
    let dtv = [
        fun("calloc"),
        fun_in("calloc", ld),
        fun_in("allocate_dtv", ld),
        fun_in("_dl_allocate_tls", ld),
        fun_in("allocate_stack", libc),
        fun_in("pthread_create", libc),
        fun_in("main", "threads"),
    ];
    assert_eq!(
        s.matches(LeakKind::Possible, &dtv),
        Some("glibc-thread-dtv")
    );
    assert_eq!(
        s.matches(LeakKind::Definite, &dtv),
        Some("glibc-thread-dtv")
    );
    // The same without glibc's symbols: ld.so by module.
    let dtv_nosym = [
        fun("calloc"),
        obj(ld),
        obj(ld),
        obj(libc),
        fun_in("main", "threads"),
    ];
    assert_eq!(
        s.matches(LeakKind::Possible, &dtv_nosym),
        Some("ld.so-internal")
    );
    // dlopen's link map.
    let link_map = [
        fun("calloc"),
        fun_in("_dl_new_object", "/lib64/ld-linux-x86-64.so.2"),
        fun_in("_dl_map_object_from_fd", "/lib64/ld-linux-x86-64.so.2"),
        fun_in("dlopen", libc),
        fun_in("main", "prog"),
    ];
    assert_eq!(
        s.matches(LeakKind::Reachable, &link_map),
        Some("ld.so-internal")
    );
    // libstdc++'s emergency pool, with and without libstdc++'s symbols.
    let pool = [
        fun("malloc"),
        fun_in("(anonymous namespace)::pool::pool()", "libstdc++.so.6"),
        fun_in("_GLOBAL__sub_I_eh_alloc.cc", "libstdc++.so.6"),
        fun_in("call_init", ld),
        fun_in("_dl_init", ld),
    ];
    assert_eq!(
        s.matches(LeakKind::Reachable, &pool),
        Some("libstdc++-emergency-eh-pool")
    );
    let pool_nosym = [fun("malloc"), obj("libstdc++.so.6"), obj(ld), obj(ld)];
    assert_eq!(
        s.matches(LeakKind::Reachable, &pool_nosym),
        Some("libstdc++-emergency-eh-pool")
    );
    assert_eq!(s.matches(LeakKind::Definite, &pool_nosym), None);
    // A user's global constructor that allocates with operator new through libstdc++ is
    // not the pool.
    let user_ctor = [
        fun("operator new(unsigned long)"),
        fun_in(
            "std::__cxx11::basic_string<char>::_M_construct(unsigned long, char)",
            "libstdc++.so.6",
        ),
        fun_in("__static_initialization_and_destruction_0()", "prog"),
        fun_in("call_init", ld),
    ];
    assert_eq!(s.matches(LeakKind::Reachable, &user_ctor), None);
    // stdout's buffer.
    let stdio = [
        fun("malloc"),
        fun_in("_IO_file_doallocate", libc),
        fun_in("_IO_doallocbuf", libc),
        fun_in("printf", libc),
        fun_in("main", "prog"),
    ];
    assert_eq!(
        s.matches(LeakKind::Reachable, &stdio),
        Some("glibc-stdio-buffer")
    );
    assert_eq!(s.matches(LeakKind::Definite, &stdio), None);
    // getpwuid's static buffer and setlocale's data.
    let pw = [
        fun("malloc"),
        fun_in("getpwuid", libc),
        fun_in("main", "prog"),
    ];
    assert_eq!(
        s.matches(LeakKind::Reachable, &pw),
        Some("glibc-getpw-buffer")
    );
    let locale = [
        fun("malloc"),
        fun_in("_nl_make_l10nflist", libc),
        fun_in("_nl_find_locale", libc),
        fun_in("setlocale", libc),
        fun_in("main", "prog"),
    ];
    assert!(s.matches(LeakKind::Reachable, &locale).is_some());
    // The program's own blocks, even when a libc function allocated them.
    for frames in [
        &[
            fun("malloc"),
            fun_in("leak_me", "prog"),
            fun_in("main", "prog"),
        ][..],
        &[
            fun("malloc"),
            fun_in("strdup", libc),
            fun_in("keep_name", "prog"),
        ][..],
        &[
            fun("malloc"),
            fun_in("__fopen_internal", libc),
            fun_in("fopen", libc),
        ][..],
        &[
            fun("calloc"),
            fun_in("thread_main", "prog"),
            fun_in("start_thread", libc),
        ][..],
    ] {
        for k in LeakKind::ALL {
            assert_eq!(s.matches(k, frames), None, "{frames:?}");
        }
    }
}

/// A small JSON reader, enough for tests/leaks/expected.json.
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> &Value {
            match self {
                Value::Obj(m) => m
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .unwrap_or(&Value::Null),
                _ => &Value::Null,
            }
        }
        pub fn str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn arr(&self) -> &[Value] {
            match self {
                Value::Arr(a) => a,
                _ => &[],
            }
        }
        pub fn obj(&self) -> &[(String, Value)] {
            match self {
                Value::Obj(m) => m,
                _ => &[],
            }
        }
    }

    pub fn parse(text: &str) -> Value {
        let b = text.as_bytes();
        let mut i = 0;
        let v = value(b, &mut i);
        ws(b, &mut i);
        assert_eq!(i, b.len(), "trailing text");
        v
    }

    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }

    fn value(b: &[u8], i: &mut usize) -> Value {
        ws(b, i);
        match b[*i] {
            b'{' => {
                *i += 1;
                let mut m = Vec::new();
                loop {
                    ws(b, i);
                    if b[*i] == b'}' {
                        *i += 1;
                        return Value::Obj(m);
                    }
                    let Value::Str(k) = value(b, i) else {
                        panic!("key")
                    };
                    ws(b, i);
                    assert_eq!(b[*i], b':');
                    *i += 1;
                    m.push((k, value(b, i)));
                    ws(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
            }
            b'[' => {
                *i += 1;
                let mut a = Vec::new();
                loop {
                    ws(b, i);
                    if b[*i] == b']' {
                        *i += 1;
                        return Value::Arr(a);
                    }
                    a.push(value(b, i));
                    ws(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
            }
            b'"' => {
                *i += 1;
                let mut s = String::new();
                loop {
                    let c = b[*i];
                    *i += 1;
                    match c {
                        b'"' => return Value::Str(s),
                        b'\\' => {
                            let e = b[*i];
                            *i += 1;
                            match e {
                                b'n' => s.push('\n'),
                                b't' => s.push('\t'),
                                b'r' => s.push('\r'),
                                b'u' => {
                                    let hex = std::str::from_utf8(&b[*i..*i + 4]).unwrap();
                                    *i += 4;
                                    s.push(
                                        char::from_u32(u32::from_str_radix(hex, 16).unwrap())
                                            .unwrap_or('?'),
                                    );
                                }
                                other => s.push(other as char),
                            }
                        }
                        _ => {
                            // Copy a whole UTF-8 sequence.
                            let start = *i - 1;
                            while *i < b.len() && (b[*i] & 0xC0) == 0x80 {
                                *i += 1;
                            }
                            s.push_str(std::str::from_utf8(&b[start..*i]).unwrap());
                        }
                    }
                }
            }
            b't' => {
                *i += 4;
                Value::Bool(true)
            }
            b'f' => {
                *i += 5;
                Value::Bool(false)
            }
            b'n' => {
                *i += 4;
                Value::Null
            }
            _ => {
                let start = *i;
                while *i < b.len()
                    && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    *i += 1;
                }
                Value::Num(std::str::from_utf8(&b[start..*i]).unwrap().parse().unwrap())
            }
        }
    }
}

/// memcheck's loss records for the leak corpus (tests/leaks/expected.json): the default set
/// suppresses exactly the blocks that belong to ld.so, glibc and libstdc++, never one of the
/// programs' own.
#[test]
fn default_set_on_the_leak_corpus() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/leaks/expected.json"
    );
    let text = std::fs::read_to_string(path).expect("tests/leaks/expected.json");
    let corpus = json::parse(&text);
    let s = Suppressions::default_set();
    let mut suppressed = Vec::new();
    let mut records = 0;
    for (case, entry) in corpus.obj() {
        for rec in entry.get("records").arr() {
            records += 1;
            let kind = match rec.get("kind").str().unwrap() {
                "definitely_lost" => LeakKind::Definite,
                "indirectly_lost" => LeakKind::Indirect,
                "possibly_lost" => LeakKind::Possible,
                "still_reachable" => LeakKind::Reachable,
                k => panic!("kind {k}"),
            };
            let frames: Vec<Frame> = rec
                .get("stack")
                .arr()
                .iter()
                .map(|f| Frame {
                    function: f.get("function").str(),
                    mangled: None,
                    file: f.get("file").str(),
                    line: match f.get("line") {
                        json::Value::Num(n) => Some(*n as u32),
                        _ => None,
                    },
                    module: f.get("object").str(),
                })
                .collect();
            if let Some(name) = s.matches(kind, &frames) {
                suppressed.push((
                    case.as_str(),
                    rec.get("function").str().unwrap_or("?"),
                    name,
                ));
            }
        }
    }
    assert!(records > 100, "{records} records");
    suppressed.sort();
    assert_eq!(
        suppressed,
        [
            ("dead_threads", "allocate_dtv", "glibc-thread-dtv"),
            ("dlopen_keep", "_dl_check_map_versions", "ld.so-internal"),
            ("dlopen_keep", "_dl_new_object", "ld.so-internal"),
            ("dlopen_keep", "_dl_new_object", "ld.so-internal"),
            ("dlopen_keep", "strdup", "ld.so-internal"),
            (
                "dlopen_relative",
                "_dl_check_map_versions",
                "ld.so-internal"
            ),
            ("dlopen_relative", "_dl_new_object", "ld.so-internal"),
            ("dlopen_relative", "_dl_new_object", "ld.so-internal"),
            ("dlopen_relative", "strdup", "ld.so-internal"),
            ("exit_cxx_sigterm", "???", "libstdc++-emergency-eh-pool"),
            ("exit_sigterm", "_IO_file_doallocate", "glibc-stdio-buffer"),
            ("mappings", "allocate_dtv", "glibc-thread-dtv"),
            ("registers_xmm", "allocate_dtv", "glibc-thread-dtv"),
            ("thread_fiber", "allocate_dtv", "glibc-thread-dtv"),
            ("thread_redzone", "allocate_dtv", "glibc-thread-dtv"),
            ("thread_unjoined", "allocate_dtv", "glibc-thread-dtv"),
            ("threads_running", "allocate_dtv", "glibc-thread-dtv"),
        ]
    );
}

/// A xorshift generator: the tests below are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    for _ in 0..1 + rng.below(4) {
        let n = lines.len();
        match rng.below(8) {
            0 if n > 0 => {
                lines.remove(rng.below(n));
            }
            1 if n > 0 => {
                let l = lines[rng.below(n)].clone();
                lines.insert(rng.below(n + 1), l);
            }
            2 if n > 0 => {
                let i = rng.below(n);
                let l = &mut lines[i];
                let cut = rng.below(l.len() + 1);
                let cut = (0..=cut)
                    .rev()
                    .find(|&c| l.is_char_boundary(c))
                    .unwrap_or(0);
                l.truncate(cut);
            }
            3 => {
                const PIECES: &[&str] = &[
                    "{",
                    "}",
                    "...",
                    "fun:*",
                    "obj:",
                    "src:a.c:",
                    "match-leak-kinds: all",
                    "leak:",
                    "Memcheck:Leak",
                    "#",
                    "\r",
                    "?*?*",
                    "^$",
                ];
                let piece = PIECES[rng.below(PIECES.len())];
                lines.insert(rng.below(n + 1), piece.to_string());
            }
            4 if n > 0 => {
                let i = rng.below(n);
                let c = char::from_u32(rng.below(0x250) as u32).unwrap_or('x');
                let l = &mut lines[i];
                let at = rng.below(l.len() + 1);
                let at = (0..=at).rev().find(|&c| l.is_char_boundary(c)).unwrap_or(0);
                l.insert(at, c);
            }
            5 if n > 1 => {
                let (a, b) = (rng.below(n), rng.below(n));
                lines.swap(a, b);
            }
            6 if n > 0 => {
                lines.truncate(rng.below(n));
            }
            _ => {
                let i = rng.below(n + 1);
                lines.insert(i, "*".repeat(rng.below(50)));
            }
        }
    }
    lines.join("\n")
}

fn random_frames(rng: &mut Rng) -> Vec<Frame<'static>> {
    const NAMES: &[&str] = &[
        "malloc",
        "calloc",
        "f",
        "main",
        "???",
        "*",
        "a*b",
        "libfoo.so",
        "/lib/x.so",
        "x.c",
        "",
        "ééé",
        "_Znwm",
    ];
    (0..rng.below(30))
        .map(|_| {
            let pick = |rng: &mut Rng| (rng.below(3) > 0).then(|| NAMES[rng.below(NAMES.len())]);
            Frame {
                function: pick(rng),
                mangled: pick(rng),
                file: pick(rng),
                line: (rng.below(2) == 0).then(|| rng.below(50) as u32),
                module: pick(rng),
            }
        })
        .collect()
}

/// Random bytes and mutated real files never make a parser panic, and whatever parses can
/// be matched against random stacks.
#[test]
fn parsers_never_panic() {
    let mut seeds: Vec<String> = vec![
        MANUAL_EXAMPLES.into(),
        GENERATED.into(),
        Suppressions::default_set_text().into(),
        "leak:libfoo.so\nleak:^bar$\ncalled_from_lib:x\n".into(),
    ];
    // valgrind's own default suppressions, when valgrind is installed.
    for p in [
        "/usr/libexec/valgrind/default.supp",
        "/usr/lib/valgrind/default.supp",
    ] {
        if let Ok(text) = std::fs::read_to_string(p) {
            let mut s = Suppressions::new();
            s.parse_valgrind(&text, p).unwrap_or_else(|e| panic!("{e}"));
            assert!(s.len() > 10, "{p}");
            seeds.push(text);
        }
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for round in 0..3000 {
        let text = if round % 4 == 0 {
            let bytes: Vec<u8> = (0..rng.below(400))
                .map(|_| {
                    let r = rng.next();
                    // Mostly the characters the formats care about.
                    const ALPHABET: &[u8] =
                        b"{}\n\r\t #:*?.^$fun:obj:src:leak:Memcheck:Leak,0123456789";
                    ALPHABET[r as usize % ALPHABET.len()].wrapping_add(if r.is_multiple_of(17) {
                        (r >> 8) as u8
                    } else {
                        0
                    })
                })
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        for lsan_format in [false, true] {
            let mut s = Suppressions::new();
            let r = if lsan_format {
                s.parse_lsan(&text, "fuzz")
            } else {
                s.parse_valgrind(&text, "fuzz")
            };
            match r {
                Ok(()) => {
                    parsed += 1;
                    for _ in 0..5 {
                        let frames = random_frames(&mut rng);
                        for k in LeakKind::ALL {
                            let _ = s.matches(k, &frames);
                        }
                        let _ = s.matches_error("Free", None, &frames);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with("fuzz:"), "{msg}");
                    assert!(!msg.contains('\n'), "{msg}");
                }
            }
        }
    }
    assert!(parsed > 100, "only {parsed} inputs parsed");
}

/// Patterns built to make a backtracking matcher explode finish at once.
#[test]
fn matching_has_no_exponential_cases() {
    let a = "a".repeat(5000);
    let pat = format!("{}b", "*a".repeat(200));
    assert!(!glob_match(pat.as_bytes(), a.as_bytes()));
    assert!(!lsan_match(&format!("{}b", "a*".repeat(200)), &a));
    let s = valgrind(&leak(
        "dots",
        "",
        &[
            "...", "fun:a", "...", "fun:a", "...", "fun:a", "...", "fun:a", "...", "fun:b",
        ],
    ));
    let frames: Vec<Frame> = (0..2000).map(|_| fun("a")).collect();
    assert_eq!(s.matches(LeakKind::Definite, &frames), None);
    let s = valgrind(&leak("stars", "", &["fun:*a*a*a*a*a*a*a*a*a*a*b"]));
    let long = [Frame {
        function: Some(a.as_str()),
        ..Frame::default()
    }];
    assert_eq!(s.matches(LeakKind::Definite, &long), None);
}
