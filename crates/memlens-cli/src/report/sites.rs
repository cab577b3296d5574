//! What the report's sections share: a site as a text line with its stack, a site as a
//! SITE object (`docs/REPORT_JSON.md`), and the "... and N more" line of a cut list.

use crate::present::frames::{frame_json, text_stack};
use memlens_analysis::{Report, Site, Symbolizer};
use memlens_common::units::{human_bytes, plural};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Which numbers a site's text line leads with.
pub(super) enum SiteLine {
    Live,
    Allocations,
    Bytes,
}

/// A site as a text line and its stack.
pub(super) fn site_text(
    o: &mut String,
    r: &Report,
    sym: &mut Symbolizer,
    s: &Site,
    line: SiteLine,
) {
    let st = &s.stats;
    let alloc = s.func.name();
    let _ = match line {
        SiteLine::Live => writeln!(
            o,
            "  {} in {} from {alloc} ({}, {} in total)",
            human_bytes(st.live_bytes),
            plural(st.live_blocks, "block", "blocks"),
            plural(st.allocations, "allocation", "allocations"),
            human_bytes(st.bytes_allocated)
        ),
        SiteLine::Allocations => writeln!(
            o,
            "  {} from {alloc} ({} in total)",
            plural(st.allocations, "allocation", "allocations"),
            human_bytes(st.bytes_allocated)
        ),
        SiteLine::Bytes => writeln!(
            o,
            "  {} from {alloc} in {}",
            human_bytes(st.bytes_allocated),
            plural(st.allocations, "allocation", "allocations")
        ),
    };
    text_stack(o, &sym.stack(r.stack(s.stack)));
}

/// "... and N more sites" when a list was cut to `--top`.
pub(super) fn more(o: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(
            o,
            "  ... and {} (use --top to see more)",
            plural((total - shown) as u64, "more site", "more sites")
        );
    }
}

/// A SITE object, with `extra` keys after the common ones.
pub(super) fn json_site_with(r: &Report, sym: &mut Symbolizer, s: &Site, extra: Value) -> Value {
    let stack: Vec<Value> = sym.stack(r.stack(s.stack)).iter().map(frame_json).collect();
    let mut v = json!({
        "allocations": s.stats.allocations,
        "bytes_allocated": s.stats.bytes_allocated,
        "live_bytes": s.stats.live_bytes,
        "live_blocks": s.stats.live_blocks,
        "temporary": s.stats.temporary,
        "allocator": s.func.name(),
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
        o.insert("stack".into(), Value::Array(stack));
    }
    v
}

/// A SITE object.
fn json_site(r: &Report, sym: &mut Symbolizer, s: &Site) -> Value {
    json_site_with(r, sym, s, json!({}))
}

/// SITE objects.
pub(super) fn json_sites(r: &Report, sym: &mut Symbolizer, sites: &[Site]) -> Value {
    Value::Array(sites.iter().map(|s| json_site(r, sym, s)).collect())
}
