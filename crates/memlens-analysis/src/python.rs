//! Python frames of recorded stacks: the line of an instruction, from CPython's location
//! table (3.11+, `Objects/locations.md` in CPython's sources), and the frame as shown.

use crate::site::DENSE_STACK_IDS;
use crate::symbolize::Frame;
use memlens_trace::reader::{Metadata, RawFrame};
use memlens_trace::PyCode;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The modules of the CPython interpreter whose frames were read (its library
/// `libpython3.X.so` and the executable that runs it); empty for other programs.
pub fn interpreter_modules(metadata: &Metadata) -> HashSet<u32> {
    let interpreter: Vec<&str> = metadata
        .notices
        .iter()
        .filter(|n| n.kind == memlens_trace::NoticeKind::PythonFrames)
        .map(|n| n.module.as_str())
        .collect();
    if interpreter.is_empty() {
        return HashSet::new();
    }
    let exe = metadata.modules.values().map(|m| m.id).min();
    metadata
        .modules
        .values()
        .filter(|m| interpreter.contains(&m.path.as_str()) || Some(m.id) == exe)
        .map(|m| m.id)
        .collect()
}

/// The frames of a stack that are shown. In a stack with Python frames, the
/// interpreter's own native frames (its evaluation loop, object allocator, start-up) are
/// left out, and so is everything below the outermost Python frame: what remains is the
/// Python code and the native code it called (C extensions, libraries). Other stacks are
/// shown whole.
pub fn shown_frames<'r>(raw: &'r [RawFrame], interpreter: &HashSet<u32>) -> Cow<'r, [RawFrame]> {
    let Some(outermost) = raw.iter().rposition(|f| f.python().is_some()) else {
        return Cow::Borrowed(raw);
    };
    Cow::Owned(
        raw[..=outermost]
            .iter()
            .copied()
            .filter(|f| !interpreter.contains(&f.module))
            .collect(),
    )
}

/// For a Python program, each stack id mapped to the first stack id with the same shown
/// frames, Python frames compared by line (stacks that differ only in the interpreter's
/// C path, as `bytes * n` and a str made on one line do, or in the instruction of a line
/// that allocated, as `"x" * n + str(i)`'s three do, or in code objects shown alike (same
/// file, function and line) are one site for a Python developer, as for tracemalloc);
/// `None` for other programs.
pub fn canonical_stacks(metadata: &Metadata) -> Option<CanonicalStacks> {
    let interpreter = interpreter_modules(metadata);
    if interpreter.is_empty() {
        return None;
    }
    let mut ids: Vec<u32> = metadata.stacks.keys().copied().collect();
    ids.sort_unstable();
    let mut first: HashMap<Vec<RawFrame>, u32> = HashMap::new();
    // (file, function) -> a number: code objects shown alike are one (the lines `exec`
    // runs from `.pth` files are each a code object of their own, all `<module>` of
    // `<string>`).
    let mut shown_codes: HashMap<(&str, &str), u32> = HashMap::new();
    let mut out = CanonicalStacks::default();
    for id in ids {
        let mut shown = shown_frames(&metadata.stacks[&id], &interpreter).into_owned();
        for f in &mut shown {
            // A Python frame's instruction, as its line (the instruction when the line
            // is unknown: then it stays a site of its own).
            let Some((code, index)) = f.python() else {
                continue;
            };
            let Some(c) = metadata.py_codes.get(&code) else {
                continue;
            };
            if let Some(line) = line_of(c, index) {
                let n = shown_codes.len() as u32;
                let shown_code = *shown_codes
                    .entry((c.filename.as_str(), c.qualname.as_str()))
                    .or_insert(n);
                *f = RawFrame {
                    module: LINE_KEY,
                    offset: (shown_code as u64) << 32 | line as u64,
                };
            }
        }
        let canon = *first.entry(shown).or_insert(id);
        if canon != id {
            out.insert(id, canon);
        }
    }
    Some(out)
}

/// The module of a compared frame that stands for a Python line (file and function,
/// line), apart from
/// the Python frames (code, instruction) whose line is unknown and from every module's
/// (numbered from 0 up).
const LINE_KEY: u32 = memlens_trace::PYTHON_MODULE - 1;

/// Stack id -> the stack id it is shown as ([`canonical_stacks`]), asked for every event
/// of a pass: a table indexed by id (the recorder numbers stacks from 1 up), with a map
/// for ids beyond it (a trace from elsewhere).
#[derive(Default)]
pub struct CanonicalStacks {
    /// `dense[id]`: the id shown for `id`, 0 when it is itself (ids below
    /// [`DENSE_STACK_IDS`]; grown only by an alias).
    dense: Vec<u32>,
    sparse: crate::replay::AddrMap<u32>,
}

impl CanonicalStacks {
    fn insert(&mut self, id: u32, canon: u32) {
        if id < DENSE_STACK_IDS {
            let i = id as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, 0);
            }
            self.dense[i] = canon;
        } else {
            self.sparse.insert(id as u64, canon);
        }
    }

    /// The id `id` is shown as.
    #[inline]
    pub fn get(&self, id: u32) -> u32 {
        match self.dense.get(id as usize) {
            Some(&c) if c != 0 => c,
            Some(_) => id,
            None if id < DENSE_STACK_IDS => id,
            None => self.sparse.get(&(id as u64)).copied().unwrap_or(id),
        }
    }

    /// Whether no stack is shown as another.
    pub fn is_empty(&self) -> bool {
        self.dense.is_empty() && self.sparse.is_empty()
    }
}

/// Whether a stack's first shown frame is Python code (the site is a Python line, not
/// native code a Python program called).
pub fn is_python_site(metadata: &Metadata, interpreter: &HashSet<u32>, stack: u32) -> bool {
    metadata.stacks.get(&stack).is_some_and(|raw| {
        shown_frames(raw, interpreter)
            .first()
            .is_some_and(|f| f.python().is_some())
    })
}

/// The source line of the instruction at `index` (16-bit code units from the start of the
/// code's bytecode), `None` when the table says it has none or does not reach it.
pub fn line_of(code: &PyCode, index: u32) -> Option<u32> {
    let t = &code.linetable;
    let mut pos = 0usize;
    let mut line = code.first_line as i64;
    let mut addr = 0u64;
    let byte = |pos: &mut usize| -> Option<u8> {
        let b = *t.get(*pos)?;
        *pos += 1;
        Some(b)
    };
    let varint = |pos: &mut usize| -> Option<u64> {
        let mut b = byte(pos)?;
        let mut v = (b & 63) as u64;
        let mut shift = 0;
        while b & 64 != 0 {
            b = byte(pos)?;
            shift += 6;
            if shift > 60 {
                return None;
            }
            v |= ((b & 63) as u64) << shift;
        }
        Some(v)
    };
    let svarint = |pos: &mut usize| -> Option<i64> {
        let u = varint(pos)?;
        Some(if u & 1 != 0 {
            -((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    };
    while pos < t.len() {
        let first = byte(&mut pos)?;
        if first & 0x80 == 0 {
            return None;
        }
        let kind = (first >> 3) & 15;
        let length = (first & 7) as u64 + 1;
        let delta = match kind {
            15 => 0,
            14 => {
                let d = svarint(&mut pos)?;
                varint(&mut pos)?;
                varint(&mut pos)?;
                varint(&mut pos)?;
                d
            }
            13 => svarint(&mut pos)?,
            10..=12 => {
                pos += 2;
                kind as i64 - 10
            }
            _ => {
                pos += 1;
                0
            }
        };
        line += delta;
        if (index as u64) < addr + length {
            return (kind != 15 && line > 0).then_some(line as u32);
        }
        addr += length;
    }
    None
}

/// What keeps growing, read from the source line of a Python frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// `name[key] = ...`, `.setdefault(`, `.update(`: a mapping used as a cache.
    Mapping,
    /// `.append(`, `.extend(`, `.insert(`, `+= [`: a list of records.
    List,
    /// `.add(`: a set.
    Set,
}

/// The container a source line adds to, and its name when the line names it.
pub fn container_of(line: &str) -> Option<(Container, String)> {
    let code = line.split('#').next().unwrap_or("").trim();
    let name_before = |at: usize| -> String {
        code[..at]
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .next()
            .unwrap_or("")
            .to_string()
    };
    for (pat, kind) in [
        (".append(", Container::List),
        (".extend(", Container::List),
        (".insert(", Container::List),
        (".setdefault(", Container::Mapping),
        (".update(", Container::Mapping),
        (".add(", Container::Set),
    ] {
        if let Some(at) = code.find(pat) {
            return Some((kind, name_before(at)));
        }
    }
    // `name[...] = value`, not `==`.
    if let Some(eq) = code.find(" = ").or_else(|| code.find("]=")) {
        let target = code[..eq + 1].trim_end();
        if target.ends_with(']') {
            if let Some(open) = target.find('[') {
                return Some((Container::Mapping, name_before(open)));
            }
        }
    }
    if code.contains("+= [") {
        let at = code.find("+=").unwrap_or(0);
        return Some((Container::List, code[..at].trim().to_string()));
    }
    None
}

/// Python advice for a growing site: from its innermost Python frame outwards (at most
/// five), the first source line that adds to a container says what grows. `None` when
/// the stack has no Python frame or no line can be read (the file moved, `<frozen ...>`).
pub fn growth_advice(
    metadata: &memlens_trace::reader::Metadata,
    stack: u32,
    read_line: &mut dyn FnMut(&str, u32) -> Option<String>,
) -> Option<String> {
    let raw = metadata.stacks.get(&stack)?;
    for (id, index) in raw.iter().filter_map(|f| f.python()).take(5) {
        let code = metadata.py_codes.get(&id)?;
        let line = line_of(code, index)?;
        let Some(text) = read_line(&code.filename, line) else {
            continue;
        };
        let file = code.filename.rsplit('/').next().unwrap_or(&code.filename);
        let Some((kind, name)) = container_of(&text) else {
            continue;
        };
        let what = if name.is_empty() {
            String::new()
        } else {
            format!("`{name}` ")
        };
        return Some(match kind {
            Container::Mapping => format!(
                "the mapping {what}filled at {} ({file}:{line}) keeps every entry: bound it, with \
                 functools.lru_cache(maxsize=...) on the function that computes the values or an \
                 explicit size limit that evicts old entries",
                code.qualname
            ),
            Container::List => format!(
                "the list {what}appended to at {} ({file}:{line}) keeps every record: use a bounded \
                 collections.deque(maxlen=...), or drop records once they are handled",
                code.qualname
            ),
            Container::Set => format!(
                "the set {what}added to at {} ({file}:{line}) keeps every element: bound it or \
                 clear it when its elements are no longer needed",
                code.qualname
            ),
        });
    }
    None
}

/// The frame of code `code` at instruction `index`: `qualname (file:line)`.
pub fn frame(code: Option<&PyCode>, id: u32, index: u32) -> Frame {
    match code {
        Some(c) => Frame {
            function: c.qualname.clone(),
            mangled: None,
            file: Some(c.filename.clone()),
            line: line_of(c, index),
            module: None,
            inlined: false,
            resolved: true,
            python: true,
        },
        None => Frame {
            function: format!("python code #{id}"),
            mangled: None,
            file: None,
            line: None,
            module: None,
            inlined: false,
            resolved: false,
            python: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_stacks_answer_for_every_id() {
        let mut c = CanonicalStacks::default();
        assert!(c.is_empty());
        c.insert(7, 3);
        c.insert(DENSE_STACK_IDS + 5, 2);
        assert!(!c.is_empty());
        assert_eq!(c.get(7), 3);
        assert_eq!(c.get(3), 3);
        assert_eq!(c.get(6), 6);
        assert_eq!(c.get(1000), 1000);
        assert_eq!(c.get(DENSE_STACK_IDS + 5), 2);
        assert_eq!(c.get(DENSE_STACK_IDS + 6), DENSE_STACK_IDS + 6);
        assert_eq!(c.get(u32::MAX), u32::MAX);
    }

    fn code(first_line: u32, linetable: &[u8]) -> PyCode {
        PyCode {
            id: 1,
            first_line,
            qualname: "f".into(),
            filename: "t.py".into(),
            linetable: linetable.to_vec(),
        }
    }

    #[test]
    fn lines_follow_the_location_table() {
        // Entries: 2 units short form (line 10), 3 units one-line form +1 (line 11),
        // 1 unit "no columns" with delta -1 (line 10), 2 units long form +5 (line 15),
        // 1 unit with no location.
        let t = [
            0x80 | 1,
            0x05, // short, 2 units
            0x80 | (11 << 3) | 2,
            0x04,
            0x08, // one-line +1, 3 units
            0x80 | (13 << 3),
            0x03, // no columns, svarint -1 (u = 3: odd, 1), 1 unit
            0x80 | (14 << 3) | 1,
            0x0a,
            0x00,
            0x01,
            0x02,             // long +5, 2 units
            0x80 | (15 << 3), // none, 1 unit
        ];
        let c = code(10, &t);
        let lines: Vec<Option<u32>> = (0..10).map(|i| line_of(&c, i)).collect();
        assert_eq!(
            lines,
            [
                Some(10),
                Some(10),
                Some(11),
                Some(11),
                Some(11),
                Some(10),
                Some(15),
                Some(15),
                None,
                None
            ]
        );
    }

    /// Stacks that differ only in the instruction of one Python line, in the
    /// interpreter's own frames, or in code objects of one file and function, are one
    /// site; another line or function, another native caller, or an instruction whose
    /// line is unknown is a site of its own.
    #[test]
    fn a_python_line_is_one_site() {
        use memlens_trace::{Module, Notice, NoticeKind, PYTHON_MODULE};
        // The location table of `lines_follow_the_location_table`: instructions 0, 1 and
        // 5 are line 10, 2 to 4 line 11, 8 and 9 unknown.
        let t = [
            0x80 | 1,
            0x05,
            0x80 | (11 << 3) | 2,
            0x04,
            0x08,
            0x80 | (13 << 3),
            0x03,
            0x80 | (14 << 3) | 1,
            0x0a,
            0x00,
            0x01,
            0x02,
            0x80 | (15 << 3),
        ];
        let py_in = |code: u64, index: u64| RawFrame {
            module: PYTHON_MODULE,
            offset: code << 32 | index,
        };
        let py = |index: u64| py_in(7, index);
        let native = |module: u32, offset: u64| RawFrame { module, offset };
        let module = |id: u32, path: &str| Module {
            id,
            path: path.into(),
            build_id: Vec::new(),
            load_bias: 0,
            segments: Vec::new(),
            loaded_ns: 0,
            unloaded_ns: None,
        };
        let mut md = Metadata {
            notices: vec![Notice {
                ts: 0,
                kind: NoticeKind::PythonFrames,
                module: "/usr/bin/python3".into(),
                symbols: String::new(),
            }],
            ..Default::default()
        };
        md.modules.insert(1, module(1, "/usr/bin/python3"));
        md.modules.insert(2, module(2, "/usr/lib/libext.so"));
        md.py_codes.insert(7, code(10, &t));
        // Another code object shown alike (as `exec` makes), and one of another function.
        md.py_codes.insert(8, code(10, &t));
        let mut other = code(10, &t);
        other.qualname = "g".into();
        md.py_codes.insert(9, other);
        let stacks = [
            (1, vec![native(2, 0x100), py(0)]),
            (2, vec![native(2, 0x100), py(5)]),
            (3, vec![native(2, 0x100), py(2)]),
            (4, vec![native(2, 0x200), py(1)]),
            (5, vec![native(1, 0x300), native(2, 0x100), py(1)]),
            (6, vec![native(2, 0x100), py(8)]),
            (7, vec![native(2, 0x100), py(9)]),
            (8, vec![native(2, 0x100), py_in(8, 1)]),
            (9, vec![native(2, 0x100), py_in(9, 1)]),
        ];
        for (id, frames) in stacks {
            md.stacks.insert(id, frames);
        }
        let c = canonical_stacks(&md).unwrap();
        let shown: Vec<u32> = (1..=9).map(|id| c.get(id)).collect();
        assert_eq!(shown, [1, 1, 3, 4, 1, 6, 7, 1, 9]);
    }

    #[test]
    fn source_lines_say_which_container_grows() {
        assert_eq!(
            container_of("        _cache[request_id] = encode(request_id)  # MARK"),
            Some((Container::Mapping, "_cache".into()))
        );
        assert_eq!(
            container_of("    self.history.append({\"id\": i})"),
            Some((Container::List, "self.history".into()))
        );
        assert_eq!(
            container_of("seen.add(key)"),
            Some((Container::Set, "seen".into()))
        );
        assert_eq!(
            container_of("out += [x]"),
            Some((Container::List, "out".into()))
        );
        assert_eq!(container_of("if a[0] == b:"), None);
        assert_eq!(container_of("return data * 64"), None);
    }

    #[test]
    fn varints_span_bytes() {
        // A long-form delta of +100: u = 200 = 0b11_001000 -> 8 | 64, then 3.
        let t = [0x80 | (13 << 3), 8 | 64, 3];
        assert_eq!(line_of(&code(1, &t), 0), Some(101));
    }

    #[test]
    fn damaged_tables_give_no_line() {
        assert_eq!(line_of(&code(1, &[0x05]), 0), None, "no entry marker");
        assert_eq!(
            line_of(&code(1, &[0x80 | (13 << 3), 64]), 0),
            None,
            "cut short"
        );
        assert_eq!(line_of(&code(1, &[]), 0), None);
    }
}
