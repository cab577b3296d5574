//! `memlens snapshot PID`: a heap snapshot of a live process, with memcheck's leak kinds
//! and "what holds the memory".
//!
//! 1. `take.rs`: stop every thread with ptrace (`ptrace.rs`), walk glibc's heap into
//!    blocks (`glibc.rs`), choose the roots as the exit scan does (`roots.rs`), copy the
//!    heap and the roots, resume the process. Only this part pauses the process.
//! 2. Mark with `memlens-reach` (the exit scan's own marker), label each reachable block
//!    with the one root that holds it (`holders.rs`), join blocks with a trace of the
//!    same process for their allocation stacks, write the snapshot file (`file.rs`: a
//!    trace file with a Scan chunk, that `leaks`, `report`, `html` and `diff` read) and
//!    print the summary (`text.rs`).

pub mod compare;
mod file;
mod glibc;
mod holders;
mod ptrace;
mod recorder;
mod remote;
pub use remote::live_task;
mod roots;
mod take;
mod text;

use memlens_analysis::replay::Replay;
use memlens_analysis::symbolize::{data_symbol_at, data_symbols};
use memlens_analysis::variables::{source_at, variable_sources, VariableSource};
use memlens_common::units::human_time;
use memlens_reach::{mark, Heap, Marks};
use memlens_trace::reader::{Metadata, Module, TraceReader};
use memlens_trace::{AllocFunc, RootKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// memcheck's default heuristics (all), as the exit scan's default.
const HEURISTICS: u32 = 0b11110;

pub const LONG_ABOUT: &str = "\
Stop a running process for a moment (every thread, with ptrace), find every live heap \
block by walking glibc's heap (blocks allocated before memlens looked included), mark them \
from the roots exactly as the exit leak check does, and let the process run on. The pause \
is reported.

It prints the leak kinds (definitely, indirectly, possibly lost, still reachable) and what \
holds the memory: the bytes reachable only through one global variable, one thread's stack \
or one mapping. It writes a snapshot file that `memlens leaks`, `report`, `html` and `diff` \
read; `memlens diff A.snap B.snap` shows the growth between two snapshots by site and by \
holder.

Blocks the recorder saw get their allocation stacks: a process under `memlens run` or \
`memlens attach` has its trace found among its open files (or give it with --trace). Blocks \
it did not see (allocated before recording) are grouped by size.

Examples:
  memlens snapshot 4242                     # writes memlens.PROG.4242.1.snap
  memlens snapshot 4242 -o before.snap      # later: ... -o after.snap
  memlens diff before.snap after.snap       # what grew, by site and by holder
  memlens leaks --show-leak-kinds=all after.snap

The process must be one ptrace may stop: the same user (or root), and a Yama ptrace_scope \
that allows it. glibc on x86_64 only.

Exit status: 0 when the snapshot was taken, 125 when it could not be (no such process, \
ptrace refused, not a glibc heap, an unwritable output file).";

#[derive(clap::Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// The process to snapshot.
    pub pid: u32,
    /// Write the snapshot file here (default: memlens.PROGRAM.PID.N.snap in the current
    /// directory, N the first number not yet used).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A trace of the same process (from `memlens run` or `memlens attach`): blocks it
    /// recorded get their allocation stacks. Without it, a process that runs the recorder
    /// has its own trace found among its open files (written up to now first); give it
    /// for a trace of a process that no longer has it open.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// How many holders to print.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Print only the file name written (for scripts).
    #[arg(short, long)]
    pub quiet: bool,
    /// What to print: `text` (the summary) or `json` (the same as one JSON object, with
    /// every block size's count; schema in docs/SNAPSHOT.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The text summary's LEAK SUMMARY is `memlens leaks`'s of the snapshot file: these
    /// are its options (suppressions).
    #[command(flatten)]
    pub leak: crate::leaks::LeakOptions,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub fn main(args: SnapshotArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(e),
    }
}

/// One holder ("what holds the memory").
#[derive(Clone, Debug)]
pub struct HolderInfo {
    pub kind: RootKind,
    pub tid: u32,
    /// A symbol, a thread's name, a mapping's name.
    pub name: String,
    /// The module of a global (its path).
    pub module: String,
    /// Where a global is declared (`file:line`, from the module's DWARF), or empty.
    pub source: String,
    pub bytes: u64,
    pub blocks: u64,
}

/// A snapshot, analysed.
pub struct Analysed {
    pub taken: take::Taken,
    pub heap: Heap,
    pub marks: Marks,
    /// Per block (address order): the holder id, or [`holders::SHARED`]/[`holders::NONE`].
    pub label: Vec<u32>,
    pub holders: Vec<HolderInfo>,
    /// Per block: (allocating function, stack id in `md`, 0 if unknown) when the
    /// recorder or the trace knew it.
    pub sites: Vec<Option<(AllocFunc, u32)>>,
    /// Per block: allocated by the recorder itself (left out of the kinds, as the exit
    /// scan does).
    pub internal: Vec<bool>,
    /// The trace's metadata (stacks, modules) or the modules read from the process.
    pub md: Metadata,
    pub from_trace: bool,
    pub mark_ns: u64,
    /// Said in the summary (what could not be done).
    pub notes: Vec<String>,
}

fn run(args: &SnapshotArgs) -> Result<(), String> {
    let out = match &args.output {
        Some(p) => p.clone(),
        None => default_output(args.pid, Path::new(".")),
    };
    let a = snapshot(args.pid, args.trace.as_deref())?;
    file::write(&out, &a)?;
    if args.quiet {
        println!("{}", out.display());
        return Ok(());
    }
    let text = match args.format {
        Format::Text => {
            // The figures `memlens leaks` gives for the file just written, suppressions
            // and all, so that the two never disagree.
            let summary = args.leak.load_suppressions().and_then(|sup| {
                crate::leaks::LeakView::load(&out, &args.leak, &sup).map(|v| v.report.summary)
            });
            text::summary(&a, args.top, &out, summary)
        }
        Format::Json => {
            let mut t = serde_json::to_string_pretty(&text::json(&a, &out)).unwrap_or_default();
            t.push('\n');
            t
        }
    };
    crate::write_stdout(text.as_bytes())
}

/// Take a snapshot of `pid`, joined with `trace`, and write it to `out` (what `memlens
/// attach` does at the end of its window). How long the process was paused.
pub fn write_snapshot(pid: u32, trace: &Path, out: &Path) -> Result<std::time::Duration, String> {
    let a = snapshot(pid, Some(trace))?;
    file::write(out, &a)?;
    Ok(a.taken.pause)
}

/// `memlens.PROGRAM.PID.N.snap` in `dir`, N the first number not taken.
pub fn default_output(pid: u32, dir: &Path) -> PathBuf {
    let prog = std::fs::read_link(format!("/proc/{}/exe", remote::live_task(pid)))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "process".into());
    numbered(dir, &prog, pid, 1)
}

/// `memlens.PROGRAM.PID.N.snap` in `dir` with the first free N from `from`.
pub fn numbered(dir: &Path, prog: &str, pid: u32, from: u32) -> PathBuf {
    let mut n = from;
    loop {
        let p = dir.join(format!("memlens.{prog}.{pid}.{n}.snap"));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// Take and analyse a snapshot of `pid`.
pub fn snapshot(pid: u32, trace: Option<&Path>) -> Result<Analysed, String> {
    let open = |p: &Path| {
        TraceReader::open(p).map_err(|e| format!("cannot read the trace {}: {e}", p.display()))
    };
    // Check the trace first: a wrong path is said before the process is stopped.
    if let Some(p) = trace {
        open(p)?;
    }
    // Under the recorder: its trace (unless given), written up to now first.
    let mut notes = Vec::new();
    let maps = remote::mappings(pid).map_err(|e| ptrace::describe(pid, &e))?;
    if maps.is_empty() {
        return Err(format!(
            "process {pid} has no memory map: it is a kernel thread or is exiting"
        ));
    }
    if !maps.iter().any(glibc::is_libc) {
        return Err(format!(
            "process {pid} maps no libc.so (a static program, or another C library): \
             memlens snapshot walks the heap of programs linked with glibc's libc.so only"
        ));
    }
    let syms = recorder::symbols(&maps);
    let trace: Option<PathBuf> = match trace {
        Some(p) => Some(p.to_path_buf()),
        None if !syms.is_empty() => recorder::trace_of(pid),
        None => None,
    };
    if trace.is_some() && !syms.is_empty() {
        let mut mem = remote::Remote::new(pid);
        if !recorder::flush(&mut mem, &syms, std::time::Duration::from_secs(1)) {
            notes.push(
                "the recorder did not write its buffered events in time (is its sampler \
                 off, --rss-interval 0?): blocks allocated shortly before the snapshot have \
                 no stack"
                    .to_string(),
            );
        }
    }
    let taken = take::take(pid)?;
    let started = std::time::Instant::now();
    let trace = match &trace {
        Some(p) => Some(open(p)?),
        None => None,
    };

    // Sizes and sites from the trace: a block the replay holds at the same address, no
    // larger than the chunk's usable size, is that allocation.
    let mut replay = Replay::new();
    let (md, from_trace) = match &trace {
        Some(r) => {
            for ev in r.events() {
                match ev {
                    Ok(ev) => replay.apply(&ev, &mut ()),
                    Err(_) => break,
                }
            }
            (
                r.metadata()
                    .map_err(|e| format!("cannot read the trace: {e}"))?,
                true,
            )
        }
        None => (metadata_of(&taken.maps), false),
    };
    // Each block's requested size, function and whether the recorder made it, from the
    // recorder's live table (a process under `memlens run`); its stack from the trace.
    let n = taken.walk.blocks.len();
    let mut sites = Vec::with_capacity(n);
    let mut internal = Vec::with_capacity(n);
    let mut blocks = Vec::with_capacity(n);
    for &(addr, usable) in &taken.walk.blocks {
        let rec = taken
            .recorded
            .as_ref()
            .and_then(|t| t.get(&addr))
            .filter(|r| r.size <= usable);
        let size = rec.map_or(usable, |r| r.size);
        let traced = replay
            .get(addr)
            .filter(|b| b.size <= usable && rec.is_none_or(|r| r.size == b.size));
        blocks.push((addr, traced.map_or(size, |b| b.size)));
        sites.push(match (traced, rec) {
            (Some(b), _) => Some((b.site.func, b.site.stack)),
            (None, Some(r)) => Some((r.func, 0)),
            (None, None) => None,
        });
        internal.push(rec.is_some_and(|r| r.internal) || taken.recorder_blocks.contains(&addr));
    }
    drop(replay);

    let heap = Heap::new(blocks);
    let mut taken = taken;
    let ranges: Vec<(u64, u64)> = taken
        .roots
        .ranges
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    let regs: Vec<&[u64]> = taken.roots.regs.iter().map(|(_, r)| &r[..]).collect();
    let marks = mark(
        &heap,
        &taken.walk.memory,
        &taken.roots.maps,
        &mut taken.root_memory,
        HEURISTICS,
        &ranges,
        &regs,
        0,
    );

    // What holds the memory.
    let mut namer = Namer::new(&taken.maps, &taken.threads);
    let root_list = taken.roots.ranges.clone();
    let reg_holders: Vec<u32> = taken
        .roots
        .regs
        .iter()
        .map(|(tid, _)| namer.thread(*tid))
        .collect();
    let reg_sets: Vec<(&[u64], u32)> = taken
        .roots
        .regs
        .iter()
        .zip(&reg_holders)
        .map(|((_, r), &h)| (&r[..], h))
        .collect();
    let label = holders::label(
        &heap,
        &taken.walk.memory,
        &marks,
        &mut taken.root_memory,
        &ranges,
        &mut |i, addr| namer.word(&root_list[i], addr),
        &reg_sets,
    );
    let mut holders = namer.holders;
    for (i, &l) in label.iter().enumerate() {
        if internal[i] {
            continue;
        }
        if let Some(h) = holders.get_mut(l as usize) {
            h.bytes += memlens_reach::size_of(heap.blocks[i].1);
            h.blocks += 1;
        }
    }
    let mark_ns = started.elapsed().as_nanos() as u64;
    Ok(Analysed {
        taken,
        heap,
        marks,
        label,
        holders,
        sites,
        internal,
        md,
        from_trace,
        mark_ns,
        notes,
    })
}

/// Metadata with the process's modules (for a snapshot without a trace): each file
/// mapped from offset 0, its load bias from its ELF segments.
fn metadata_of(maps: &[remote::Mapping]) -> Metadata {
    let mut md = Metadata::default();
    for (id, m) in module_mappings(maps).into_iter().enumerate() {
        md.modules.insert(id as u32 + 1, m.module(id as u32 + 1));
    }
    md
}

/// A module mapped in the process: its path, where it is, its load bias.
struct Mapped {
    path: String,
    bias: u64,
    /// From its first mapping to the end of its last (and the anonymous mapping right
    /// after it: its .bss).
    lo: u64,
    hi: u64,
    segments: Vec<(u64, u64, u32)>,
}

impl Mapped {
    fn module(&self, id: u32) -> Module {
        Module {
            id,
            path: self.path.clone(),
            build_id: memlens_analysis::symbolize::read_build_id(Path::new(&self.path))
                .unwrap_or_default(),
            load_bias: self.bias,
            segments: self.segments.clone(),
            loaded_ns: 0,
            unloaded_ns: None,
        }
    }
}

fn module_mappings(maps: &[remote::Mapping]) -> Vec<Mapped> {
    let mut out: Vec<Mapped> = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        if !m.name.starts_with('/') || m.offset != 0 || out.iter().any(|o| o.path == m.name) {
            continue;
        }
        let (first_vaddr, end_vaddr) = elf_extent(&m.name).unwrap_or((0, 0));
        let bias = m.start.wrapping_sub(first_vaddr);
        // Where its loadable segments end: its .bss may run past its file mappings into
        // an anonymous one, which is the module's; a mapping placed after that is not.
        let elf_end = bias.wrapping_add(end_vaddr);
        let mut hi = m.end;
        let mut segments = Vec::new();
        for s in &maps[i..] {
            if s.name == m.name {
                let flags = (s.exec as u32) | (s.write as u32) << 1 | (s.read as u32) << 2;
                segments.push((s.start.wrapping_sub(bias), s.end - s.start, flags));
                hi = s.end;
            } else if s.name.is_empty() && s.start == hi && hi < elf_end {
                hi = s.end.min(elf_end);
                break;
            } else {
                break;
            }
        }
        out.push(Mapped {
            path: m.name.clone(),
            bias,
            lo: m.start,
            hi,
            segments,
        });
    }
    out
}

/// The page-aligned virtual address of an ELF file's first loadable segment, and where
/// its loadable segments end (page-aligned up).
fn elf_extent(path: &str) -> Option<(u64, u64)> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let first = file.segments().map(|s| s.address()).min()? & !0xfff;
    let end = file.segments().map(|s| s.address() + s.size()).max()?;
    Some((first, (end + 0xfff) & !0xfff))
}

/// Names the holders of root words and gives each a number. Every root word that points
/// into the heap asks, so the answers are cached: per thread, per root range outside
/// modules, per (module, data symbol) from each module's data symbols sorted by address.
struct Namer {
    modules: Vec<Mapped>,
    /// Per module: its data symbols (ELF virtual address, size, demangled name), sorted.
    symbols: HashMap<usize, Vec<(u64, u64, String)>>,
    /// Per module: where its variables are declared (DWARF), sorted by address.
    sources: HashMap<usize, Vec<VariableSource>>,
    ids: HashMap<String, u32>,
    by_symbol: HashMap<(usize, usize), u32>,
    by_range: HashMap<(u64, u64), u32>,
    by_thread: HashMap<u32, u32>,
    holders: Vec<HolderInfo>,
    threads: HashMap<u32, String>,
}

impl Namer {
    fn new(maps: &[remote::Mapping], threads: &[ptrace::Thread]) -> Namer {
        Namer {
            modules: module_mappings(maps),
            symbols: HashMap::new(),
            sources: HashMap::new(),
            ids: HashMap::new(),
            by_symbol: HashMap::new(),
            by_range: HashMap::new(),
            by_thread: HashMap::new(),
            holders: Vec::new(),
            threads: threads.iter().map(|t| (t.tid, t.name.clone())).collect(),
        }
    }

    /// The data symbol of module `mi` containing `vaddr`: its index in the module's list.
    fn symbol(&mut self, mi: usize, vaddr: u64) -> Option<usize> {
        let path = self.modules[mi].path.clone();
        let syms = self
            .symbols
            .entry(mi)
            .or_insert_with(|| data_symbols(Path::new(&path)));
        data_symbol_at(syms, vaddr)
    }

    /// `file:line` of the variable of module `mi` starting at `vaddr`, from the module's
    /// DWARF; empty when it has none (no -g, stripped, compressed debug sections).
    fn source(&mut self, mi: usize, vaddr: u64) -> String {
        let path = &self.modules[mi].path;
        let sources = self
            .sources
            .entry(mi)
            .or_insert_with(|| variable_sources(Path::new(path)));
        source_at(sources, vaddr).map_or_else(String::new, |v| v.text())
    }

    fn id(&mut self, key: String, make: impl FnOnce() -> HolderInfo) -> u32 {
        if let Some(&i) = self.ids.get(&key) {
            return i;
        }
        let i = self.holders.len() as u32;
        self.holders.push(make());
        self.ids.insert(key, i);
        i
    }

    fn thread(&mut self, tid: u32) -> u32 {
        if let Some(&i) = self.by_thread.get(&tid) {
            return i;
        }
        let name = self.threads.get(&tid).cloned().unwrap_or_default();
        let i = self.id(format!("thread {tid}"), || HolderInfo {
            kind: RootKind::ThreadStack,
            tid,
            name,
            module: String::new(),
            source: String::new(),
            bytes: 0,
            blocks: 0,
        });
        self.by_thread.insert(tid, i);
        i
    }

    /// The holder of the root word at `addr` in `root`.
    fn word(&mut self, root: &roots::Root, addr: u64) -> u32 {
        if matches!(root.kind, RootKind::ThreadStack | RootKind::Registers) {
            return self.thread(root.tid);
        }
        if let Some(&i) = self.by_range.get(&(root.start, root.end)) {
            return i;
        }
        let mi = (root.kind != RootKind::OtherMapping)
            .then(|| {
                self.modules
                    .iter()
                    .position(|m| addr >= m.lo && addr < m.hi)
            })
            .flatten();
        if let Some(mi) = mi {
            let bias = self.modules[mi].bias;
            let path = self.modules[mi].path.clone();
            return match self.symbol(mi, addr.wrapping_sub(bias)) {
                Some(k) => {
                    if let Some(&i) = self.by_symbol.get(&(mi, k)) {
                        return i;
                    }
                    let (start, _, ref name) = self.symbols[&mi][k];
                    let name = name.clone();
                    let source = self.source(mi, start);
                    let i = self.id(format!("global {path} {name}"), || HolderInfo {
                        kind: RootKind::ModuleData,
                        tid: 0,
                        name,
                        module: path,
                        source,
                        bytes: 0,
                        blocks: 0,
                    });
                    self.by_symbol.insert((mi, k), i);
                    i
                }
                None => self.id(format!("data {path}"), || HolderInfo {
                    kind: RootKind::ModuleData,
                    tid: 0,
                    name: String::new(),
                    module: path,
                    source: String::new(),
                    bytes: 0,
                    blocks: 0,
                }),
            };
        }
        // Outside every module: the mapping is the holder (one answer per range).
        let (start, end) = (root.start, root.end);
        let (kind, name) = if root.kind == RootKind::OtherMapping {
            (RootKind::OtherMapping, root.name.clone())
        } else if root.name.is_empty() {
            (
                RootKind::Anonymous,
                format!("anonymous memory {start:#x}-{end:#x}"),
            )
        } else {
            (RootKind::Anonymous, root.name.clone())
        };
        let i = self.id(format!("mapping {name}"), || HolderInfo {
            kind,
            tid: 0,
            name,
            module: String::new(),
            source: String::new(),
            bytes: 0,
            blocks: 0,
        });
        self.by_range.insert((start, end), i);
        i
    }
}

/// The time a snapshot paused its process, as people read it.
pub fn pause_text(a: &Analysed) -> String {
    human_time(a.taken.pause.as_nanos() as u64)
}

#[cfg(test)]
mod tests;
