//! Two snapshots' holders compared, for `memlens diff A.snap B.snap`: the growth of what
//! holds the memory (the allocation sites' growth is the ordinary diff).

use super::file::{read_holders, SnapHolder};
use super::text::holder_phrase;
use memlens_common::units::{count, human_bytes};
use memlens_trace::reader::TraceReader;
use memlens_trace::RootKind;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// One holder before and after.
pub struct Change {
    pub text: String,
    pub name: String,
    pub module: String,
    /// `file:line` of a global's declaration, or empty.
    pub source: String,
    pub before: (u64, u64),
    pub after: (u64, u64),
}

impl Change {
    fn bytes_change(&self) -> i64 {
        self.after.0 as i64 - self.before.0 as i64
    }
}

/// The holders of two snapshot files, matched; `None` unless both are snapshots.
pub fn holders(a: &Path, b: &Path) -> Result<Option<Vec<Change>>, String> {
    let read = |p: &Path| -> Result<Option<Vec<SnapHolder>>, String> {
        let r = TraceReader::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        read_holders(&r)
    };
    let (Some(ha), Some(hb)) = (read(a)?, read(b)?) else {
        return Ok(None);
    };
    let key = |h: &SnapHolder| -> String {
        if h.shared {
            return "shared".into();
        }
        match h.kind {
            // A thread is matched by its id (the same process) and name.
            RootKind::ThreadStack | RootKind::Registers => format!("thread {} {}", h.tid, h.name),
            // Anonymous memory moves between runs; its name is its range.
            RootKind::Anonymous if h.name.starts_with("anonymous memory") => {
                "anonymous memory".into()
            }
            _ => format!("{:?} {} {}", h.kind, h.module, h.name),
        }
    };
    let mut m: HashMap<String, Change> = HashMap::new();
    for (h, after) in ha
        .iter()
        .map(|h| (h, false))
        .chain(hb.iter().map(|h| (h, true)))
    {
        let text = if h.shared {
            "several roots".to_string()
        } else if h.kind == RootKind::Anonymous && h.name.starts_with("anonymous memory") {
            "anonymous memory".to_string()
        } else {
            holder_phrase(h.kind, h.tid, &h.name, &h.module, &h.source)
        };
        let c = m.entry(key(h)).or_insert_with(|| Change {
            text,
            name: h.name.clone(),
            module: h.module.clone(),
            source: h.source.clone(),
            before: (0, 0),
            after: (0, 0),
        });
        let v = if after { &mut c.after } else { &mut c.before };
        v.0 += h.bytes;
        v.1 += h.blocks;
    }
    let mut v: Vec<Change> = m.into_values().filter(|c| c.before != c.after).collect();
    v.sort_by_key(|c| {
        (
            std::cmp::Reverse(c.bytes_change().unsigned_abs()),
            c.text.clone(),
        )
    });
    Ok(Some(v))
}

fn signed(d: i64, f: impl Fn(u64) -> String) -> String {
    match d {
        d if d > 0 => format!("+{}", f(d as u64)),
        d if d < 0 => format!("-{}", f(d.unsigned_abs())),
        _ => f(0),
    }
}

/// The holders' section of the diff's text.
pub fn text(changes: &[Change], top: usize) -> String {
    let mut s =
        String::from("WHAT HOLDS THE MEMORY (reachable only through one root), before -> after:\n");
    if changes.is_empty() {
        s.push_str("  no holder changed\n");
    }
    for c in changes.iter().take(top) {
        let db = c.bytes_change();
        let dn = c.after.1 as i64 - c.before.1 as i64;
        let _ = writeln!(
            s,
            "  {:>12} {:>14} through {}: {} in {} -> {} in {} blocks",
            signed(db, human_bytes),
            format!("{} blocks", signed(dn, count)),
            c.text,
            human_bytes(c.before.0),
            count(c.before.1),
            human_bytes(c.after.0),
            count(c.after.1),
        );
    }
    s.push('\n');
    s
}

/// The holders' part of the diff's JSON.
pub fn json(changes: &[Change], top: usize) -> Value {
    changes
        .iter()
        .take(top)
        .map(|c| {
            json!({
                "holder": c.text,
                "name": c.name,
                "module": c.module,
                "source": c.source,
                "before": {"bytes": c.before.0, "blocks": c.before.1},
                "after": {"bytes": c.after.0, "blocks": c.after.1},
                "change": {"bytes": c.bytes_change(), "blocks": c.after.1 as i64 - c.before.1 as i64},
            })
        })
        .collect()
}
