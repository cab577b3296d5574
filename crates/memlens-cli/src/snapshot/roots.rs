//! The target's roots, chosen as the exit scan chooses them (`memlens-preload`'s
//! `scan/mod.rs`): every readable and writable mapping except heap memory, the recorder's
//! own memory and library, device memory and vsyscall pages; thread stacks only from
//! their stack pointers up (less the red zone for a thread stopped mid-code); the frames
//! in glibc's cached stacks of ended threads left out; then each thread's registers.

use super::ptrace::Thread;
use super::recorder::is_recorder;
use super::remote::{Mapping, Remote};
use memlens_reach::ranges::{
    dead_thread_stacks, is_arena_heap, merge, subtract, Mappings, MapsLine, StackLayout,
};
use memlens_reach::Map;
use memlens_trace::RootKind;

/// The 128 bytes below the stack pointer that the x86_64 ABI lets a leaf function use.
const RED_ZONE: u64 = 128;

/// A root range (or, for `Registers`, a thread's register set).
#[derive(Clone, Debug)]
pub struct Root {
    pub kind: RootKind,
    pub tid: u32,
    pub start: u64,
    pub end: u64,
    pub name: String,
}

/// What the marker needs: the readable mappings, the root ranges (stacks first, in the
/// threads' order, then the other mappings by address) and the register sets.
pub struct Roots {
    pub maps: Vec<Map>,
    pub ranges: Vec<Root>,
    pub regs: Vec<(u32, Vec<u64>)>,
}

/// Choose the roots. `excl` holds what is never a root (heap memory, the recorder's).
pub fn find(
    mem: &mut Remote,
    maps: &[Mapping],
    threads: &[Thread],
    excl: Vec<(u64, u64)>,
    layout: StackLayout,
) -> Roots {
    let mut m = Mappings {
        excl,
        ..Mappings::default()
    };
    for map in maps {
        let line = MapsLine {
            start: map.start,
            end: map.end,
            read: map.read,
            write: map.write,
            exec: map.exec,
            shared: map.shared,
            name: map.name.as_bytes(),
        };
        m.add(&line, is_recorder(map), || {
            is_arena_heap(mem, map.start, map.end)
        });
    }
    let Mappings {
        maps: readable,
        rw,
        mut excl,
        guard_ends,
    } = m;
    let mut ranges = Vec::new();
    let mut regs = Vec::new();
    let not_roots = merge(excl.clone());
    // Stacks: the main thread first (it is the one that would run the exit scan).
    let mut order: Vec<&Thread> = threads.iter().collect();
    order.sort_by_key(|t| {
        (
            t.tid != threads.iter().map(|t| t.tid).min().unwrap_or(0),
            t.tid,
        )
    });
    let mut live_sps = Vec::new();
    for t in &order {
        let lo = if t.red_zone {
            t.sp.saturating_sub(RED_ZONE)
        } else {
            t.sp
        };
        live_sps.push(lo);
        regs.push((t.tid, t.regs.clone()));
        if let Some(r) = rw.iter().find(|r| lo >= r.start && lo < r.end) {
            excl.push((r.start, r.end));
            let name = String::from_utf8_lossy(&r.name).into_owned();
            subtract(lo, r.end, &not_roots, |start, end| {
                ranges.push(Root {
                    kind: RootKind::ThreadStack,
                    tid: t.tid,
                    start,
                    end,
                    name: name.clone(),
                })
            });
        }
    }
    let live_tps: Vec<u64> = threads.iter().map(|t| t.tp).collect();
    dead_thread_stacks(
        mem,
        layout,
        &rw,
        &guard_ends,
        &live_sps,
        &live_tps,
        |lo, hi| excl.push((lo, hi)),
    );
    let excl = merge(excl);
    for r in &rw {
        let kind = if r.shared {
            RootKind::OtherMapping
        } else if r.file {
            RootKind::ModuleData
        } else {
            RootKind::Anonymous
        };
        let name = String::from_utf8_lossy(&r.name).into_owned();
        subtract(r.start, r.end, &excl, |lo, hi| {
            ranges.push(Root {
                kind,
                tid: 0,
                start: lo,
                end: hi,
                name: name.clone(),
            })
        });
    }
    Roots {
        maps: readable,
        ranges,
        regs,
    }
}
