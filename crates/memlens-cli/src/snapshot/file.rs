//! The snapshot file: a trace file (docs/TRACE_FORMAT.md) holding the process's modules
//! (and, joined with a trace, its stacks), one Alloc event per live block (with its stack
//! when known, so `report` and `diff` see the heap by site), a Scan chunk whose trigger is
//! `Snapshot` (its blocks' kinds, as the exit scan writes them, so `leaks` reads it), the
//! holders (`ScanHolder` records) and an End record of kind `Snapshot`.

use super::{holders, Analysed};
use memlens_trace::reader::TraceReader;
use memlens_trace::{
    encode_chunk, max_encoded_chunk_len, AllocFunc, ChunkBuilder, ChunkKind, EndCounters, ExitKind,
    Header, RootKind, ScanRecord, WriteError,
};
use std::io::Write;
use std::path::Path;

const CHUNK_RAW: usize = 1 << 20;

/// A record writer: one record into the chunk being built.
type Record<'a> = dyn FnMut(&mut ChunkBuilder<Box<[u8]>>) -> Result<(), WriteError> + 'a;

struct Out<W: Write> {
    out: W,
    b: ChunkBuilder<Box<[u8]>>,
    kind: ChunkKind,
}

impl<W: Write> Out<W> {
    fn put(&mut self, f: &mut Record) -> std::io::Result<()> {
        if f(&mut self.b).is_err() {
            self.flush()?;
            f(&mut self.b).map_err(|_| std::io::Error::other("a record larger than a chunk"))?;
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.b.is_empty() {
            return Ok(());
        }
        let mut scratch = Vec::new();
        let raw = self.b.payload(&mut scratch);
        let mut enc = vec![0u8; max_encoded_chunk_len(raw.len())];
        let n = encode_chunk(
            self.kind,
            0,
            self.b.first_ts(),
            self.b.last_ts(),
            raw,
            &mut enc,
        )
        .map_err(|_| std::io::Error::other("cannot encode a chunk"))?;
        self.out.write_all(&enc[..n])?;
        self.b.clear();
        Ok(())
    }
    fn switch(&mut self, kind: ChunkKind) -> std::io::Result<()> {
        self.flush()?;
        self.kind = kind;
        Ok(())
    }
}

/// Write the snapshot file.
pub fn write(path: &Path, a: &Analysed) -> Result<(), String> {
    write_inner(path, a).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_inner(path: &Path, a: &Analysed) -> std::io::Result<()> {
    let t = &a.taken;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", super::remote::live_task(t.pid)))
        .unwrap_or_default();
    let argv: Vec<String> = cmdline
        .split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let ppid = std::fs::read_to_string(format!("/proc/{}/stat", t.pid))
        .ok()
        .and_then(|s| memlens_watch::proc::parse_stat(&s))
        .map_or(0, |s| s.ppid.max(0) as u32);
    let header = Header {
        pid: t.pid,
        ppid,
        forked_from: 0,
        start_unix_ns: t.unix_ns,
        exe: std::fs::read_link(format!("/proc/{}/exe", super::remote::live_task(t.pid)))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        argv,
        page_size: 4096,
        rss_interval_ns: 0,
        max_depth: 0,
        writer: format!("memlens snapshot {}", env!("CARGO_PKG_VERSION")),
        argv_omitted: 0,
        argv_omitted_bytes: 0,
        sample_interval: 0,
        attach: None,
    };
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(file);
    let mut h = Vec::new();
    header.encode(&mut h);
    w.write_all(&h)?;
    let mut o = Out {
        out: w,
        b: ChunkBuilder::new(vec![0u8; CHUNK_RAW].into_boxed_slice()),
        kind: ChunkKind::Meta,
    };
    // Modules and the stacks the blocks use.
    let mut ids: Vec<&u32> = a.md.modules.keys().collect();
    ids.sort();
    for id in ids {
        let m = &a.md.modules[id];
        o.put(&mut |b| {
            b.module_load(
                0,
                m.id,
                m.path.as_bytes(),
                &m.build_id,
                m.load_bias,
                &m.segments,
            )
        })?;
    }
    let mut used: Vec<u32> = a.sites.iter().flatten().map(|s| s.1).collect();
    used.sort_unstable();
    used.dedup();
    for s in used {
        if let Some(frames) = a.md.stacks.get(&s) {
            let f: Vec<(u32, u64)> = frames.iter().map(|f| (f.module, f.offset)).collect();
            o.put(&mut |b| b.stack(s, &f))?;
        }
    }
    // The live blocks as allocations.
    o.switch(ChunkKind::Events)?;
    let ts = 1;
    for (i, &(addr, meta)) in a.heap.blocks.iter().enumerate() {
        let (func, stack) = a.sites[i].unwrap_or((AllocFunc::Malloc, 0));
        let size = memlens_reach::size_of(meta);
        o.put(&mut |b| b.alloc(ts, func, addr, size, stack))?;
    }
    // The scan.
    o.switch(ChunkKind::Scan)?;
    let n = a.heap.blocks.len() as u64;
    let main = t.pid;
    let stopped = t.threads.len().saturating_sub(1) as u32;
    o.put(&mut |b| b.scan_begin(ts, ExitKind::Snapshot, 0, n, main, stopped, 0, 0))?;
    let roots = &t.roots;
    for (i, r) in roots.ranges.iter().enumerate() {
        o.put(&mut |b| {
            b.scan_root(
                i as u32,
                r.kind,
                r.tid,
                0,
                r.start,
                r.end,
                r.name.as_bytes(),
            )
        })?;
    }
    let base = roots.ranges.len() as u32;
    for (k, (tid, _)) in roots.regs.iter().enumerate() {
        o.put(&mut |b| b.scan_root(base + k as u32, RootKind::Registers, *tid, 0, 0, 0, b""))?;
    }
    for i in 0..a.heap.blocks.len() {
        let (addr, meta) = a.heap.blocks[i];
        let (state, heur, link) = a.marks.verdict(i);
        let size = memlens_reach::size_of(meta);
        let internal = a.internal[i];
        o.put(&mut |b| b.scan_block(addr, size, state, heur, internal, link))?;
    }
    let end_ts = ts + t.pause.as_nanos() as u64;
    o.put(&mut |b| b.scan_end(end_ts, n))?;
    for (i, h) in a.holders.iter().enumerate() {
        o.put(&mut |b| {
            b.scan_holder(
                i as u32,
                h.kind,
                h.tid,
                h.bytes,
                h.blocks,
                h.name.as_bytes(),
                h.module.as_bytes(),
                h.source.as_bytes(),
            )
        })?;
    }
    let shared = shared_amount(a);
    o.put(&mut |b| {
        b.scan_holder(
            u32::MAX,
            RootKind::Anonymous,
            0,
            shared.0,
            shared.1,
            b"(several roots)",
            b"",
            b"",
        )
    })?;
    o.switch(ChunkKind::End)?;
    let counters = EndCounters {
        untracked_frees: 0,
        dropped_events: 0,
        recorder_peak_bytes: 0,
        write_errors: 0,
    };
    o.put(&mut |b| b.end(end_ts, ExitKind::Snapshot, 0, &counters))?;
    o.flush()?;
    o.out.flush()
}

/// Bytes and blocks reachable through several holders.
pub fn shared_amount(a: &Analysed) -> (u64, u64) {
    let mut s = (0, 0);
    for (i, &l) in a.label.iter().enumerate() {
        if l == holders::SHARED && !a.internal[i] {
            s.0 += memlens_reach::size_of(a.heap.blocks[i].1);
            s.1 += 1;
        }
    }
    s
}

/// A holder as a snapshot file has it.
#[derive(Clone, Debug)]
pub struct SnapHolder {
    pub kind: RootKind,
    pub tid: u32,
    pub name: String,
    pub module: String,
    /// `file:line` of a global's declaration, or empty.
    pub source: String,
    pub bytes: u64,
    pub blocks: u64,
    /// "Reachable through several roots" (not one holder).
    pub shared: bool,
}

/// The holders of a snapshot file; `None` if the trace is not a snapshot.
pub fn read_holders(r: &TraceReader) -> Result<Option<Vec<SnapHolder>>, String> {
    let mut snapshot = false;
    let mut out = Vec::new();
    for rec in r.scan() {
        match rec.map_err(|e| e.to_string())? {
            ScanRecord::Begin { trigger, .. } => snapshot = trigger == ExitKind::Snapshot,
            ScanRecord::Holder {
                id,
                kind,
                tid,
                bytes,
                blocks,
                name,
                module,
                source,
            } => out.push(SnapHolder {
                kind,
                tid,
                name,
                module,
                source,
                bytes,
                blocks,
                shared: id == u32::MAX,
            }),
            _ => {}
        }
    }
    Ok(snapshot.then_some(out))
}
