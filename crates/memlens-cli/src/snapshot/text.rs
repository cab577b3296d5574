//! The summary `memlens snapshot` prints.

use super::{holders, pause_text, Analysed, HolderInfo};
use crate::present::frames::site_labels;
use memlens_analysis::symbolize::Symbolizer;
use memlens_common::units::{count, human_bytes, human_time, plural};
use memlens_trace::{BlockState, RootKind};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

/// A holder as one phrase: "the global `g_cache` (server.c:12)" (its declaration, when
/// the module's DWARF says, else its module: "(server)"), "the stack of thread 4
/// `worker`", "anonymous memory 0x...-0x...".
pub fn holder_phrase(kind: RootKind, tid: u32, name: &str, module: &str, source: &str) -> String {
    let short = module.rsplit('/').next().unwrap_or(module);
    match kind {
        RootKind::ModuleData if !name.is_empty() && !source.is_empty() => {
            // The file's name, as stack frames show it (the JSON has the path).
            let file = source.rsplit('/').next().unwrap_or(source);
            format!("the global `{name}` ({file})")
        }
        RootKind::ModuleData if !name.is_empty() => format!("the global `{name}` ({short})"),
        RootKind::ModuleData => format!("the data of {short} (no symbol)"),
        RootKind::ThreadStack | RootKind::Registers if name.is_empty() => {
            format!("the stack and registers of thread {tid}")
        }
        RootKind::ThreadStack | RootKind::Registers => {
            format!("the stack and registers of thread {tid} `{name}`")
        }
        _ => name.to_string(),
    }
}

fn phrase(h: &HolderInfo) -> String {
    holder_phrase(h.kind, h.tid, &h.name, &h.module, &h.source)
}

/// `leaks`: the LEAK SUMMARY `memlens leaks` gives for the snapshot file (or why it
/// could not be read back).
pub fn summary(
    a: &Analysed,
    top: usize,
    out: &Path,
    leaks: Result<memlens_analysis::leaks::Summary, String>,
) -> String {
    let t = &a.taken;
    let mut s = String::new();
    let exe = std::fs::read_link(format!("/proc/{}/exe", super::remote::live_task(t.pid)))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let total: u64 = a
        .heap
        .blocks
        .iter()
        .map(|b| memlens_reach::size_of(b.1))
        .sum();
    let _ = writeln!(
        s,
        "Snapshot of process {} ({}): paused {} ({}), {} in {}",
        t.pid,
        exe,
        pause_text(a),
        plural(t.threads.len() as u64, "thread", "threads"),
        human_bytes(total),
        plural(a.heap.blocks.len() as u64, "live block", "live blocks"),
    );
    let _ = writeln!(
        s,
        "  glibc heap: {}, {} mmapped, {} in tcache/fastbins left out; marked in {}",
        plural(t.walk.arenas as u64, "arena", "arenas"),
        count(t.walk.mmapped as u64),
        plural(t.walk.cached_free as u64, "free chunk", "free chunks"),
        human_time(a.mark_ns),
    );
    for w in t.walk.warnings.iter().chain(&a.notes) {
        let _ = writeln!(s, "  warning: {w}");
    }
    s.push('\n');
    match leaks {
        Ok(summary) => s.push_str(&crate::leaks::summary_text(&summary, "  ").replacen(
            "LEAK SUMMARY:",
            "LEAK SUMMARY (as the exit check would say now):",
            1,
        )),
        Err(e) => {
            let _ = writeln!(s, "LEAK SUMMARY: cannot read {} back: {e}", out.display());
        }
    }

    // Holders, with their largest groups of blocks (by allocation site where the trace
    // knew it, else by size).
    let mut order: Vec<usize> = (0..a.holders.len())
        .filter(|&i| a.holders[i].blocks > 0)
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse((a.holders[i].bytes, a.holders[i].blocks)));
    s.push_str("\nWHAT HOLDS THE MEMORY (reachable only through one root):\n");
    if order.is_empty() {
        s.push_str("  nothing\n");
    }
    // (holder, stack or 0, size when no stack) -> (bytes, blocks).
    type Group = (u32, u32, u64);
    let mut groups: HashMap<Group, (u64, u64)> = HashMap::new();
    for (i, &l) in a.label.iter().enumerate() {
        if (l as usize) < a.holders.len() && !a.internal[i] {
            let size = memlens_reach::size_of(a.heap.blocks[i].1);
            let key = match a.sites[i] {
                Some((_, stack)) if stack != 0 => (l, stack, 0),
                _ => (l, 0, size),
            };
            let e = groups.entry(key).or_default();
            e.0 += size;
            e.1 += 1;
        }
    }
    let mut sym = Symbolizer::new(&a.md.modules);
    for &h in order.iter().take(top) {
        let hi = &a.holders[h];
        let _ = writeln!(
            s,
            "  {:>10} in {} through {}",
            human_bytes(hi.bytes),
            plural(hi.blocks, "block", "blocks"),
            phrase(hi)
        );
        let mut g: Vec<(&Group, &(u64, u64))> =
            groups.iter().filter(|(k, _)| k.0 == h as u32).collect();
        g.sort_by_key(|(k, v)| (std::cmp::Reverse(v.0), k.1, k.2));
        let stacks: Vec<u32> = g.iter().take(3).map(|(k, _)| k.1).collect();
        let labels = site_labels(&a.md, &mut sym, &stacks);
        for (j, (k, v)) in g.iter().take(3).enumerate() {
            let what = if k.1 != 0 {
                format!("allocated at {}", labels[j])
            } else {
                format!(
                    "{} of {} bytes, no stack{}",
                    plural(v.1, "block", "blocks"),
                    count(k.2),
                    if a.from_trace {
                        " (before recording, or not yet in the trace)"
                    } else {
                        " (give --trace for stacks)"
                    }
                )
            };
            let _ = writeln!(s, "      {:>10} {what}", human_bytes(v.0));
        }
    }
    let (sb, sn) = super::file::shared_amount(a);
    if sn > 0 {
        let _ = writeln!(
            s,
            "  {:>10} in {} reachable through several roots",
            human_bytes(sb),
            plural(sn, "block", "blocks")
        );
    }
    let _ = holders::NONE;
    let _ = writeln!(
        s,
        "\nWrote {} (memlens leaks, report, html and diff read it).",
        out.display()
    );
    s
}

fn holder_kind(kind: RootKind) -> &'static str {
    match kind {
        RootKind::ModuleData => "global",
        RootKind::ThreadStack | RootKind::Registers => "thread",
        _ => "mapping",
    }
}

/// The summary as JSON (docs/SNAPSHOT.md).
pub fn json(a: &Analysed, out: &Path) -> Value {
    let t = &a.taken;
    let mut kinds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total = 0;
    for k in [
        BlockState::DefinitelyLost,
        BlockState::IndirectlyLost,
        BlockState::PossiblyLost,
        BlockState::StillReachable,
    ] {
        kinds.insert(memlens_analysis::leaks::kind_key(k), (0, 0));
    }
    let mut recorder = (0, 0);
    for i in 0..a.heap.blocks.len() {
        let size = memlens_reach::size_of(a.heap.blocks[i].1);
        *sizes.entry(size).or_default() += 1;
        total += size;
        if a.internal[i] {
            recorder.0 += size;
            recorder.1 += 1;
            continue;
        }
        let e = kinds
            .entry(memlens_analysis::leaks::kind_key(a.marks.verdict(i).0))
            .or_default();
        e.0 += size;
        e.1 += 1;
    }
    let mut holders: Vec<&HolderInfo> = a.holders.iter().filter(|h| h.blocks > 0).collect();
    holders.sort_by_key(|h| std::cmp::Reverse((h.bytes, h.blocks)));
    let (sb, sn) = super::file::shared_amount(a);
    json!({
        "pid": t.pid,
        "file": out.display().to_string(),
        "pause_ns": t.pause.as_nanos() as u64,
        "mark_ns": a.mark_ns,
        "threads": t.threads.iter().map(|t| json!({"tid": t.tid, "name": t.name})).collect::<Vec<_>>(),
        "blocks": a.heap.blocks.len(),
        "bytes": total,
        "heap": {
            "arenas": t.walk.arenas,
            "mmapped": t.walk.mmapped,
            "cached_free": t.walk.cached_free,
        },
        "kinds": kinds.iter().map(|(k, v)| (k.to_string(), json!({"bytes": v.0, "blocks": v.1}))).collect::<serde_json::Map<_, _>>(),
        "holders": holders.iter().map(|h| json!({
            "kind": holder_kind(h.kind),
            "name": h.name,
            "module": h.module,
            "source": h.source,
            "tid": h.tid,
            "bytes": h.bytes,
            "blocks": h.blocks,
            "text": phrase(h),
        })).collect::<Vec<_>>(),
        "shared": {"bytes": sb, "blocks": sn},
        "recorder_blocks": {"bytes": recorder.0, "blocks": recorder.1},
        "recorded": t.recorded.is_some(),
        "sizes": sizes.iter().map(|(s, n)| json!({"size": s, "blocks": n})).collect::<Vec<_>>(),
        "with_trace": a.from_trace,
        "warnings": t.walk.warnings.iter().chain(&a.notes).collect::<Vec<_>>(),
    })
}
