//! Stack symbolization: raw frames (module id + ELF virtual address of a return address)
//! to function names, source locations and inlined frames, with blazesym.
//!
//! A module is only symbolized if the file at its recorded path still has the build-id
//! recorded in the trace: otherwise the debug information would describe another binary
//! and the names would be wrong. Such modules' frames are shown as `module+0xoffset` and a
//! warning says why. Results are cached per raw frame, and only the frames asked for are
//! ever symbolized. The data symbols of a module (the globals the leak check names as
//! roots) are read once per module, under the same build-id check.

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer as Blaze};
use memlens_trace::reader::{Module, RawFrame};
use std::collections::HashMap;
use std::path::Path;

/// One symbolized frame. A return address inside inlined code gives several frames: the
/// inlined ones first (`inlined: true`), then the function they were inlined into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Demangled function name, or `module+0x1234` / `0x7f...` when unknown.
    pub function: String,
    /// The symbol as it is in the binary, when demangling changed it (`_Z4makev` for
    /// `make()`): what Valgrind suppressions' `fun:` lines name.
    pub mangled: Option<String>,
    /// Source file (as recorded in the debug information, usually a path).
    pub file: Option<String>,
    pub line: Option<u32>,
    /// File name of the module (`libc.so.6`), `None` for addresses outside any module.
    pub module: Option<String>,
    /// The function was inlined into the next frame.
    pub inlined: bool,
    /// A symbol was found: `false` when `function` is only the address
    /// (`module+0x1234`), which suppressions see as `???`.
    pub resolved: bool,
    /// A Python frame (`function` is the code's qualified name, `file` the `.py` file).
    pub python: bool,
}

impl Frame {
    /// The file name of [`Frame::file`], without directories.
    pub fn file_name(&self) -> Option<&str> {
        self.file
            .as_deref()
            .map(|f| f.rsplit('/').next().unwrap_or(f))
    }
}

/// File name of the recorder (the preload library).
pub const RECORDER_MODULE: &str = "libmemlens_preload.so";

/// Well-known allocation wrappers, treated as the allocator (Valgrind's `--alloc-fn`):
/// stacks start at their caller, where the program decided to allocate. gnulib's and
/// libiberty's `x*alloc` (bash, coreutils, gcc...), Perl's `safesys*`, GLib's `g_*alloc`,
/// SQLite's allocation layers, OpenSSL's `CRYPTO_*alloc`.
pub const DEFAULT_ALLOC_FNS: &[&str] = &[
    "xmalloc",
    "xcalloc",
    "xrealloc",
    "xzalloc",
    "xcharalloc",
    "xnmalloc",
    "xreallocarray",
    "x2nrealloc",
    "xmemdup",
    "xstrdup",
    "sh_xmalloc",
    "sh_xrealloc",
    "Perl_safesysmalloc",
    "Perl_safesyscalloc",
    "Perl_safesysrealloc",
    "g_malloc",
    "g_malloc0",
    "g_realloc",
    "g_malloc_n",
    "g_malloc0_n",
    "g_realloc_n",
    "g_try_malloc",
    "g_try_malloc0",
    "g_try_realloc",
    "g_try_malloc_n",
    "g_try_malloc0_n",
    "g_try_realloc_n",
    "sqlite3MemMalloc",
    "sqlite3MemRealloc",
    "mallocWithAlarm",
    "sqlite3Malloc",
    "sqlite3MallocZero",
    "sqlite3_malloc",
    "sqlite3_malloc64",
    "sqlite3Realloc",
    "sqlite3_realloc",
    "sqlite3_realloc64",
    "sqlite3DbMallocRaw",
    "sqlite3DbMallocRawNN",
    "sqlite3DbMallocZero",
    "sqlite3DbRealloc",
    "dbMallocRawFinish",
    "dbReallocFinish",
    "CRYPTO_malloc",
    "CRYPTO_zalloc",
    "CRYPTO_realloc",
];

/// The wrappers given with `--alloc-fn`, added to [`DEFAULT_ALLOC_FNS`] by every
/// [`Symbolizer`] made afterwards.
static EXTRA_ALLOC_FNS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Treat these functions as allocators too (`--alloc-fn=NAME`, the demangled name or the
/// symbol). Set once, before symbolizing; a later call changes nothing.
pub fn set_alloc_fns(names: &[String]) {
    let _ = EXTRA_ALLOC_FNS.set(names.to_vec());
}

enum ModuleState {
    Unchecked,
    /// The file matches the trace: symbolize it.
    Usable,
    /// Do not symbolize (reason already in the warnings).
    Unusable,
}

struct ModuleEntry {
    module: Module,
    state: ModuleState,
}

/// Symbolizes the stacks of one trace. Create it from the trace's modules
/// ([`memlens_trace::reader::Metadata::modules`]).
pub struct Symbolizer {
    blaze: Blaze,
    modules: HashMap<u32, ModuleEntry>,
    cache: HashMap<RawFrame, Vec<Frame>>,
    /// Python code objects by id (the trace's PyCode records).
    py_codes: HashMap<u32, memlens_trace::PyCode>,
    /// The modules of the CPython interpreter whose frames were read: in a stack with
    /// Python frames, their native frames are the interpreter's machinery.
    interpreter: std::collections::HashSet<u32>,
    /// Each module's data symbols ([`data_symbols`]), read on first use.
    data_symbols: HashMap<u32, Vec<(u64, u64, String)>>,
    /// Each module's variable declarations (DWARF), read on first use.
    variable_sources: HashMap<u32, Vec<crate::variables::VariableSource>>,
    warnings: Vec<String>,
    /// Allocation wrappers ([`DEFAULT_ALLOC_FNS`] and `--alloc-fn`).
    alloc_fns: std::collections::HashSet<String>,
}

/// Read the GNU build-id of an ELF file (`Ok(empty)` if it has none).
pub fn read_build_id(path: &Path) -> Result<Vec<u8>, String> {
    match blazesym::helper::read_elf_build_id(path) {
        Ok(id) => Ok(id.map(|b| b.to_vec()).unwrap_or_default()),
        Err(e) => Err(e.to_string()),
    }
}

impl Symbolizer {
    pub fn new(modules: &HashMap<u32, Module>) -> Self {
        Symbolizer {
            blaze: new_blaze(),
            modules: modules
                .iter()
                .map(|(&id, m)| {
                    (
                        id,
                        ModuleEntry {
                            module: m.clone(),
                            state: ModuleState::Unchecked,
                        },
                    )
                })
                .collect(),
            cache: HashMap::new(),
            py_codes: HashMap::new(),
            interpreter: Default::default(),
            data_symbols: HashMap::new(),
            variable_sources: HashMap::new(),
            warnings: Vec::new(),
            alloc_fns: DEFAULT_ALLOC_FNS
                .iter()
                .map(|s| s.to_string())
                .chain(EXTRA_ALLOC_FNS.get().into_iter().flatten().cloned())
                .collect(),
        }
    }

    /// The symbolizer of a trace: its modules and its Python code objects.
    pub fn for_trace(metadata: &memlens_trace::reader::Metadata) -> Self {
        let mut s = Symbolizer::new(&metadata.modules);
        s.py_codes = metadata.py_codes.clone();
        s.interpreter = crate::python::interpreter_modules(metadata);
        s
    }

    /// The frames of a stack that are shown ([`crate::python::shown_frames`]).
    pub fn shown<'r>(&self, raw: &'r [RawFrame]) -> std::borrow::Cow<'r, [RawFrame]> {
        crate::python::shown_frames(raw, &self.interpreter)
    }

    /// Why some frames could not be symbolized (one sentence each, each said once).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Symbolize a whole stack (innermost first). Inlined functions add frames. Frames in
    /// the recorder itself (its `__libc_start_main` and `main` trampoline, at the base of
    /// every main-thread stack) are left out: they are not the program's. So are the
    /// allocation wrappers at its top (Valgrind's `--alloc-fn`: a wrapper counts only at
    /// the top or just below another one): the stack starts at their caller.
    pub fn stack(&mut self, raw: &[RawFrame]) -> Vec<Frame> {
        let raw = self.shown(raw);
        let mut out = Vec::with_capacity(raw.len());
        for &f in raw.iter() {
            if !self.is_recorder(f.module) {
                out.extend_from_slice(self.frame(f));
            }
        }
        let wrappers = out.iter().take_while(|f| self.is_alloc_fn(f)).count();
        if wrappers < out.len() {
            out.drain(..wrappers);
        }
        out
    }

    /// The frame is an allocation wrapper's (by its name or its symbol).
    fn is_alloc_fn(&self, f: &Frame) -> bool {
        f.resolved
            && (self.alloc_fns.contains(&f.function)
                || f.mangled
                    .as_ref()
                    .is_some_and(|m| self.alloc_fns.contains(m)))
    }

    /// Whether frames of this module are the recorder's own (never shown).
    pub fn is_recorder(&self, module: u32) -> bool {
        self.modules
            .get(&module)
            .is_some_and(|e| e.module.short_name() == RECORDER_MODULE)
    }

    /// The innermost symbolized frame of a stack (the function that called the allocator).
    pub fn innermost(&mut self, raw: &[RawFrame]) -> Option<Frame> {
        raw.first().and_then(|&f| self.frame(f).first().cloned())
    }

    /// Symbolize one raw frame (cached). Never empty.
    pub fn frame(&mut self, raw: RawFrame) -> &[Frame] {
        if !self.cache.contains_key(&raw) {
            let frames = self.resolve(raw);
            self.cache.insert(raw, frames);
        }
        &self.cache[&raw]
    }

    fn fallback(&self, raw: RawFrame) -> Frame {
        let (function, module) = match self.modules.get(&raw.module) {
            _ if raw.module == 0 => (format!("{:#x}", raw.offset), None),
            Some(e) => {
                let name = e.module.short_name().to_string();
                (format!("{name}+{:#x}", raw.offset), Some(name))
            }
            None => (format!("module#{}+{:#x}", raw.module, raw.offset), None),
        };
        Frame {
            function,
            mangled: None,
            file: None,
            line: None,
            module,
            inlined: false,
            resolved: false,
            python: false,
        }
    }

    fn usable(&mut self, id: u32) -> bool {
        let Some(e) = self.modules.get_mut(&id) else {
            return false;
        };
        if let ModuleState::Unchecked = e.state {
            let path = Path::new(&e.module.path);
            let problem = if !path.exists() {
                Some(format!(
                    "{} no longer exists, so its frames are shown as offsets",
                    e.module.path
                ))
            } else if !path.is_file() {
                // A trace can name anything: never open a pipe or a device.
                Some(format!(
                    "{} is not a regular file, so its frames are shown as offsets",
                    e.module.path
                ))
            } else {
                match read_build_id(path) {
                    Ok(id) if id == e.module.build_id => None,
                    Ok(_) => Some(format!(
                        "{} changed since the trace was recorded (build-id mismatch); its frames are shown as offsets",
                        e.module.path
                    )),
                    Err(err) => Some(format!(
                        "{} cannot be read as an ELF file ({err}); its frames are shown as offsets",
                        e.module.path
                    )),
                }
            };
            e.state = match problem {
                None => ModuleState::Usable,
                Some(w) => {
                    self.warnings.push(w);
                    ModuleState::Unusable
                }
            };
        }
        matches!(e.state, ModuleState::Usable)
    }

    /// The data symbol (a global variable) of `module` that contains `vaddr` (an ELF
    /// virtual address): its demangled name and where it starts (for
    /// [`Symbolizer::declaration`]). `None` when the module cannot be used (missing,
    /// changed since recording: the same build-id check as for frames) or no data symbol
    /// covers the address. A module's symbols are read once.
    pub fn data_symbol(&mut self, module: u32, vaddr: u64) -> Option<(String, u64)> {
        if !self.usable(module) {
            return None;
        }
        let path = &self.modules[&module].module.path;
        let symbols = self
            .data_symbols
            .entry(module)
            .or_insert_with(|| data_symbols(Path::new(path)));
        data_symbol_at(symbols, vaddr).map(|k| (symbols[k].2.clone(), symbols[k].0))
    }

    /// Where the variable of `module` starting at `start` (a data symbol's, from
    /// [`Symbolizer::data_symbol`], which checked the module) is declared, `file:line`
    /// from the module's DWARF, if it says. The DWARF is read once, on first use.
    pub fn declaration(&mut self, module: u32, start: u64) -> Option<String> {
        let path = Path::new(&self.modules.get(&module)?.module.path);
        let sources = self
            .variable_sources
            .entry(module)
            .or_insert_with(|| crate::variables::variable_sources(path));
        crate::variables::source_at(sources, start).map(|v| v.text())
    }

    fn resolve(&mut self, raw: RawFrame) -> Vec<Frame> {
        if let Some((id, index)) = raw.python() {
            return vec![crate::python::frame(self.py_codes.get(&id), id, index)];
        }
        let fallback = self.fallback(raw);
        if raw.module == 0 || raw.offset == 0 || !self.usable(raw.module) {
            return vec![fallback];
        }
        let path = &self.modules[&raw.module].module.path;
        resolve_with(&self.blaze, path, raw, fallback)
    }

    /// Symbolize these frames ahead of use, on every core: the commands that show every
    /// site (flame graphs, exports, diffs, the web page) call it with all their frames,
    /// then read them from the cache. Small batches are done on this thread.
    pub fn prefetch(&mut self, frames: impl IntoIterator<Item = RawFrame>) {
        let mut todo: Vec<RawFrame> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for f in frames {
            // Recorder frames are never shown (`stack` leaves them out): not looked up,
            // and their module not checked (no warning about it).
            if !self.cache.contains_key(&f)
                && !self.is_recorder(f.module)
                && f.python().is_none()
                && seen.insert(f)
            {
                todo.push(f);
            }
        }
        // Each worker parses the debug information of the modules it meets: a few suffice.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
        if todo.len() < PARALLEL_MIN || workers < 2 {
            for f in todo {
                self.frame(f);
            }
            return;
        }
        // Module checks (build-id) happen here, once; then the lookups in parallel, each
        // worker with its own blazesym symbolizer (its caches are not shared).
        let mut jobs: Vec<(RawFrame, String, Frame)> = Vec::new();
        for f in todo {
            let fallback = self.fallback(f);
            if f.module == 0 || f.offset == 0 || !self.usable(f.module) {
                self.cache.insert(f, vec![fallback]);
            } else {
                let path = self.modules[&f.module].module.path.clone();
                jobs.push((f, path, fallback));
            }
        }
        // Same module together, so each worker opens few files.
        jobs.sort_by_key(|j| (j.0.module, j.0.offset));
        let per = jobs.len().div_ceil(workers);
        let results: Vec<Vec<(RawFrame, Vec<Frame>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(per.max(1))
                .map(|part| {
                    scope.spawn(move || {
                        let blaze = new_blaze();
                        part.iter()
                            .map(|(f, path, fallback)| {
                                (*f, resolve_with(&blaze, path, *f, fallback.clone()))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (f, frames) in results.into_iter().flatten() {
            self.cache.insert(f, frames);
        }
    }
}

/// The data symbols (global variables) of an ELF file, static table and dynamic: (virtual
/// address, size, demangled name), sorted by address, without duplicates; empty if it
/// cannot be read.
pub fn data_symbols(path: &Path) -> Vec<(u64, u64, String)> {
    use object::{Object, ObjectSymbol};
    let Ok(data) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(file) = object::File::parse(&*data) else {
        return Vec::new();
    };
    let mut v: Vec<(u64, u64, String)> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Data && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), demangle(s.name().ok()?).0)))
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    v
}

/// The symbol of `symbols` (as [`data_symbols`] lists them) containing `vaddr`: its
/// index. Of the last symbols starting at or before it (sizes may overlap: aliases), the
/// nearest that contains it; a symbol of size 0 covers its first byte.
pub fn data_symbol_at(symbols: &[(u64, u64, String)], vaddr: u64) -> Option<usize> {
    let i = symbols.partition_point(|s| s.0 <= vaddr);
    (i.saturating_sub(4)..i)
        .rev()
        .find(|&k| vaddr < symbols[k].0 + symbols[k].1.max(1))
}

/// Below this many new frames, [`Symbolizer::prefetch`] stays on one thread.
const PARALLEL_MIN: usize = 512;
/// At most this many symbolizing threads (each holds its own parsed debug information).
const MAX_WORKERS: usize = 8;

fn new_blaze() -> Blaze {
    Blaze::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(false)
        .build()
}

/// Symbolize one frame of the module at `path` (known usable); `fallback` if the
/// address has no symbol.
fn resolve_with(blaze: &Blaze, path: &str, raw: RawFrame, fallback: Frame) -> Vec<Frame> {
    let src = Source::Elf(Elf::new(path));
    // A return address points after the call: look up the call instruction itself.
    let sym = match blaze.symbolize_single(&src, Input::VirtOffset(raw.offset - 1)) {
        Ok(Symbolized::Sym(sym)) => sym,
        _ => return vec![fallback],
    };
    let module = fallback.module.clone();
    let loc = |ci: Option<&CodeInfo>| match ci {
        Some(ci) => (Some(ci.to_path().to_string_lossy().into_owned()), ci.line),
        None => (None, None),
    };
    let mut frames = Vec::with_capacity(1 + sym.inlined.len());
    for f in sym.inlined.iter().rev() {
        let (file, line) = loc(f.code_info.as_ref());
        let (function, mangled) = demangle(&f.name);
        frames.push(Frame {
            function,
            mangled,
            file,
            line,
            module: module.clone(),
            inlined: true,
            resolved: true,
            python: false,
        });
    }
    let (file, line) = loc(sym.code_info.as_deref());
    let (function, mangled) = demangle(&sym.name);
    frames.push(Frame {
        function,
        mangled,
        file,
        line,
        module,
        inlined: false,
        resolved: true,
        python: false,
    });
    frames
}

/// A symbol's readable name, and the symbol itself when it differs. Rust's schemes are
/// tried first (a legacy Rust symbol is also a valid C++ one), without the hash suffix;
/// then the Itanium C++ ABI. glibc's internal aliases (`__GI__IO_file_doallocate`, what
/// its debug symbols often name) read as the public function (`_IO_file_doallocate`), as
/// memcheck shows them and as suppressions name them.
pub fn demangle(symbol: &str) -> (String, Option<String>) {
    if let Some(public) = symbol.strip_prefix("__GI_").filter(|s| !s.is_empty()) {
        return (public.to_string(), Some(symbol.to_string()));
    }
    let readable = rustc_demangle::try_demangle(symbol)
        .map(|d| format!("{d:#}"))
        .ok()
        .or_else(|| {
            // Only a mangled name: cpp_demangle also reads a bare type encoding, so a C
            // function named `i`, `v` or `g` would come out as `int`, `void`, `__float128`.
            symbol.starts_with("_Z").then_some(())?;
            cpp_demangle::Symbol::new(symbol)
                .ok()
                .and_then(|s| s.demangle().ok())
        });
    match readable {
        Some(r) if r != symbol => (r, Some(symbol.to_string())),
        _ => (symbol.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn each_cxx_operator_is_named_as_its_symbol_demangles() {
        for f in memlens_trace::AllocFunc::ALL {
            if let Some((symbol, readable)) = f.cxx_operator() {
                assert_eq!(demangle(symbol).0, readable, "{f:?}");
            }
        }
    }

    #[test]
    fn demangles_cpp_and_rust_and_keeps_the_symbol() {
        assert_eq!(
            demangle("_Z4makev"),
            ("make()".to_string(), Some("_Z4makev".to_string()))
        );
        assert_eq!(
            demangle("_ZN5alloc5alloc5alloc17h0123456789abcdefE"),
            (
                "alloc::alloc::alloc".to_string(),
                Some("_ZN5alloc5alloc5alloc17h0123456789abcdefE".to_string())
            )
        );
        assert_eq!(demangle("main"), ("main".to_string(), None));
        // C functions whose names are also C++ type codes stay themselves.
        for name in ["a", "b", "f", "g", "i", "v", "x", "St", "Ss"] {
            assert_eq!(demangle(name), (name.to_string(), None));
        }
        assert_eq!(
            demangle("__GI__IO_file_doallocate"),
            (
                "_IO_file_doallocate".to_string(),
                Some("__GI__IO_file_doallocate".to_string())
            )
        );
    }
}
