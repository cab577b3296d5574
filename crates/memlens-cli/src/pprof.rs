//! A [`Profile`] as a gzipped pprof profile (`profile.proto` of
//! github.com/google/pprof, package perftools.profiles), for `go tool pprof` and the
//! tools that read it. The messages are written by hand with prost's derive: no protoc,
//! no build script. Layout choices are documented in `docs/EXPORT.md`.

use memlens_analysis::{Metric, Profile, Symbolizer};
use memlens_trace::reader::RawFrame;
use std::collections::HashMap;
use std::io::Write as _;

/// The messages of profile.proto that memlens writes (field numbers as in the .proto).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// String table index of the type (`alloc_space`).
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        /// String table index of the unit (`bytes`).
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One per sample type.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Innermost inlined function first, the function they were inlined into last.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
        #[prost(int64, tag = "3")]
        pub column: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// The sample types, in order: (type, unit, metric).
pub const SAMPLE_TYPES: [(&str, &str, Metric); 8] = [
    ("alloc_objects", "count", Metric::Allocations),
    ("alloc_space", "bytes", Metric::Allocated),
    ("inuse_objects", "count", Metric::ExitBlocks),
    ("inuse_space", "bytes", Metric::ExitBytes),
    ("peak_inuse_objects", "count", Metric::PeakBlocks),
    ("peak_inuse_space", "bytes", Metric::PeakBytes),
    ("leaked_objects", "count", Metric::LeakedBlocks),
    ("leaked_space", "bytes", Metric::LeakedBytes),
];

/// The sample type `go tool pprof` shows without `-sample_index`.
pub const DEFAULT_SAMPLE_TYPE: &str = "alloc_space";

/// Builds the tables of a profile.proto message.
struct Builder<'a> {
    p: &'a Profile,
    out: proto::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    locations: HashMap<RawFrame, u64>,
    /// Module id -> index in `out.mapping`.
    mappings: HashMap<u32, usize>,
    /// The location of samples with no stack.
    no_stack: Option<u64>,
}

impl Builder<'_> {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        if let Some(&id) = self.functions.get(&(name.to_string(), file.to_string())) {
            return id;
        }
        let id = self.out.function.len() as u64 + 1;
        let (n, f) = (self.string(name), self.string(file));
        self.out.function.push(proto::Function {
            id,
            name: n,
            system_name: n,
            filename: f,
            start_line: 0,
        });
        self.functions
            .insert((name.to_string(), file.to_string()), id);
        id
    }

    /// The mapping of a module, created on first use; 0 for frames outside any module.
    fn mapping(&mut self, module: u32, address: u64) -> u64 {
        let Some(m) = self.p.metadata.modules.get(&module) else {
            return 0;
        };
        let i = match self.mappings.get(&module) {
            Some(&i) => i,
            None => {
                let lo = m.segments.iter().map(|s| s.0).min().unwrap_or(0);
                let hi = m.segments.iter().map(|s| s.0 + s.1).max().unwrap_or(0);
                let (filename, build_id) = (self.string(&m.path), self.string(&m.build_id_hex()));
                self.out.mapping.push(proto::Mapping {
                    id: self.out.mapping.len() as u64 + 1,
                    memory_start: m.load_bias.wrapping_add(lo),
                    memory_limit: m.load_bias.wrapping_add(hi),
                    // The first PT_LOAD segment starts at file offset 0 in the ELF files
                    // linkers write.
                    file_offset: 0,
                    filename,
                    build_id,
                    has_functions: true,
                    has_filenames: true,
                    has_line_numbers: true,
                    has_inline_frames: true,
                });
                self.mappings.insert(module, self.out.mapping.len() - 1);
                self.out.mapping.len() - 1
            }
        };
        // Keep every address inside its mapping, even for modules without segments.
        let map = &mut self.out.mapping[i];
        map.memory_limit = map.memory_limit.max(address + 1);
        if map.memory_start > address {
            map.memory_start = address;
        }
        map.id
    }

    fn location(&mut self, raw: RawFrame, sym: &mut Symbolizer) -> u64 {
        if let Some(&id) = self.locations.get(&raw) {
            return id;
        }
        // A Python frame has no machine address: no mapping, address 0, and its line
        // is the .py file's.
        let (address, mapping_id) = if raw.python().is_some() {
            (0, 0)
        } else {
            let address = match self.p.metadata.modules.get(&raw.module) {
                Some(m) if raw.module != 0 => m.load_bias.wrapping_add(raw.offset),
                _ => raw.offset,
            };
            (address, self.mapping(raw.module, address))
        };
        let frames = sym.frame(raw).to_vec();
        let mut line = Vec::with_capacity(frames.len());
        for f in &frames {
            let function_id = self.function(&f.function, f.file.as_deref().unwrap_or(""));
            line.push(proto::Line {
                function_id,
                line: f.line.map_or(0, i64::from),
                column: 0,
            });
        }
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(proto::Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        self.locations.insert(raw, id);
        id
    }

    fn no_stack_location(&mut self) -> u64 {
        if let Some(id) = self.no_stack {
            return id;
        }
        let function_id = self.function("[no stack recorded]", "");
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(proto::Location {
            id,
            line: vec![proto::Line {
                function_id,
                line: 0,
                column: 0,
            }],
            ..Default::default()
        });
        self.no_stack = Some(id);
        id
    }
}

/// The profile.proto message of a profile (not compressed).
pub fn message(p: &Profile, sym: &mut Symbolizer) -> proto::Profile {
    let mut b = Builder {
        p,
        out: proto::Profile::default(),
        strings: HashMap::new(),
        functions: HashMap::new(),
        locations: HashMap::new(),
        mappings: HashMap::new(),
        no_stack: None,
    };
    b.string("");
    for (ty, unit, _) in SAMPLE_TYPES {
        let (t, u) = (b.string(ty), b.string(unit));
        b.out
            .sample_type
            .push(proto::ValueType { r#type: t, unit: u });
    }
    b.out.default_sample_type = b.string(DEFAULT_SAMPLE_TYPE);
    let (space, bytes) = (b.string("space"), b.string("bytes"));
    b.out.period_type = Some(proto::ValueType {
        r#type: space,
        unit: bytes,
    });
    b.out.period = 1;
    b.out.time_nanos = p.header.start_unix_ns as i64;
    b.out.duration_nanos = p.totals.runtime_ns as i64;
    let mut comments = vec![
        format!("memlens export of {}", p.path.display()),
        format!(
            "pid {}: {}",
            p.header.pid,
            if p.header.argv.is_empty() {
                p.header.exe.clone()
            } else {
                p.header.argv.join(" ")
            }
        ),
    ];
    if !p.leak_check {
        comments
            .push("no leak check in this trace: leaked_objects and leaked_space are 0".to_string());
    }
    // `go tool pprof` takes the first mapping for the profile's main file: the program's.
    if let Some((&id, m)) = p
        .metadata
        .modules
        .iter()
        .filter(|(_, m)| m.path == p.header.exe)
        .min_by_key(|(&id, _)| id)
    {
        let lo = m.segments.iter().map(|s| s.0).min().unwrap_or(0);
        b.mapping(id, m.load_bias.wrapping_add(lo));
    }
    let allocator = b.string("allocator");
    for s in &p.sites {
        let values: Vec<i64> = SAMPLE_TYPES
            .iter()
            .map(|&(_, _, m)| s.values[m].min(i64::MAX as u64) as i64)
            .collect();
        if values.iter().all(|&v| v == 0) {
            continue;
        }
        // The recorder's own frames (its `main` trampoline) are not the program's.
        let raw: Vec<RawFrame> = sym
            .shown(p.stack(s.stack))
            .iter()
            .copied()
            .filter(|f| !sym.is_recorder(f.module))
            .collect();
        let location_id: Vec<u64> = if raw.is_empty() {
            vec![b.no_stack_location()]
        } else {
            raw.iter().map(|&f| b.location(f, sym)).collect()
        };
        let func = b.string(s.func.name());
        b.out.sample.push(proto::Sample {
            location_id,
            value: values,
            label: vec![proto::Label {
                key: allocator,
                str: func,
                ..Default::default()
            }],
        });
    }
    comments.extend(p.warnings.iter().chain(sym.warnings()).cloned());
    b.out.comment = comments.iter().map(|c| b.string(c)).collect();
    b.out
}

/// The gzipped profile, as pprof files are stored.
pub fn gzipped(p: &Profile, sym: &mut Symbolizer) -> Vec<u8> {
    use prost::Message as _;
    let raw = message(p, sym).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}
