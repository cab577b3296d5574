//! The reachability scan at exit: memcheck's leak check, run inside the process.
//!
//! 1. Stop every other thread of the program (a real-time signal whose handler saves the
//!    registers and parks the thread; a thread inside the recorder parks when it leaves
//!    it). A thread that cannot be stopped is scanned from the stack pointer the kernel
//!    reports for its blocked system call.
//! 2. If the process is exiting normally and no other thread runs, call libstdc++'s and
//!    glibc's `freeres`, as memcheck does, so their internal buffers are not reported.
//! 3. Roots: every readable and writable mapping except the heap (glibc's `[heap]`, its
//!    arena heaps, the mmapped chunks of live blocks) and the recorder's own memory;
//!    thread stacks only from their stack pointers up; the registers of stopped threads
//!    and the callee-saved registers at the program's `exit` call.
//! 4. Mark (breadth first, so each block's recorded parent is on a shortest chain from a
//!    root): a start pointer, or an interior pointer accepted by a heuristic, from a root
//!    or a reachable block makes a block reachable; any other pointer to it makes it
//!    possibly lost. Then cliques in address order: each unreached block not yet claimed
//!    leads a clique (definitely lost) and claims every unreached block it reaches
//!    (indirectly lost); a former leader reached this way is demoted.
//! 5. Write one Scan record per block (address order) with its state and link (parent or
//!    clique leader) into the trace. The analysis joins them with the allocation stacks.
//!
//! The scan never calls the hooked allocator: its memory is the recorder's private heap.

use crate::self_mem::{Reader, SelfMemory};
use crate::{live, own_memory, sys, tls};
extern crate alloc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use memlens_reach::ranges::{
    dead_thread_stacks, is_arena_heap, merge, subtract, Mappings, StackLayout,
};
use memlens_reach::{end_of, mark, size_of, Direct, Heap, Map, Marks};
use memlens_trace::{ChunkBuilder, ChunkKind, ExitKind, RootKind};

/// Registers and stack pointer of the exiting thread at the point the program ended.
#[derive(Clone, Copy)]
pub struct Context {
    /// The stack from here up is live (0: unknown, use the scanning frame's).
    pub sp: u64,
    /// General-purpose registers, then the vector registers' words (see [`MAX_REGS`]).
    pub regs: [u64; MAX_REGS],
    pub nregs: usize,
    /// Include the 128-byte red zone below `sp`: a signal interrupted the thread at an
    /// arbitrary instruction, where a leaf function may keep live locals there (memcheck
    /// scans it too). Not after a call (exit, abort) or a fault.
    pub red_zone: bool,
}

impl Default for Context {
    fn default() -> Context {
        Context {
            sp: 0,
            regs: [0; MAX_REGS],
            nregs: 0,
            red_zone: false,
        }
    }
}

/// The 128 bytes below the stack pointer that the x86_64 ABI lets a leaf function use.
const RED_ZONE: u64 = 128;

/// Enabled heuristics, a bit per [`Heuristic`] value (memcheck's default: all).
pub static HEURISTICS: AtomicU32 = AtomicU32::new(0b111110);
/// Whether to run the scan at all (`MEMLENS_LEAK_CHECK=no` turns it off).
pub static ENABLED: AtomicBool = AtomicBool::new(true);
/// A recording `memlens run` started (not `attach`): the runtimes' buffers are given
/// back at a normal exit even without a scan ([`run`]).
pub static FREERES_AT_EXIT: AtomicBool = AtomicBool::new(false);
/// Scan every mapping a thread's stack pointer is in whole (a Go program: go_exit.rs).
pub static WHOLE_STACK_MAPPINGS: AtomicBool = AtomicBool::new(false);

mod roots;
mod stop;

pub use roots::prepare;
use roots::*;
pub use stop::*;

// ---- freeres ----

/// Run libstdc++'s and glibc's freeres (memcheck's `--run-cxx-freeres`/`--run-libc-freeres`).
fn freeres() {
    // Only lookups that succeed: a failed one leaves an error message that glibc frees at
    // the next dl* call through the program's free, and a free that itself calls dlsym
    // (a wrapper forwarding with RTLD_NEXT) would then recurse without end.
    let cxx = crate::modules::is_loaded(b"libstdc++.so");
    for (name, wanted) in [
        (c"_ZN9__gnu_cxx9__freeresEv", cxx),
        (c"__libc_freeres", true),
    ] {
        if !wanted {
            continue;
        }
        let f = {
            let _busy = tls::BusyGuard::enter();
            // SAFETY: dlsym with a NUL-terminated name; may allocate (we are busy).
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
        };
        if !f.is_null() {
            // SAFETY: both are `void f(void)` functions exported for exactly this use.
            let f: extern "C" fn() = unsafe { core::mem::transmute(f) };
            f();
        }
    }
}
// ---- the scan ----

/// Run the scan and write its records. Called once, at exit, by the exiting thread,
/// not busy (freeres must be recorded), with the trace still open.
pub fn run(trigger: ExitKind, code: i32, ctx: &Context) {
    if !ENABLED.load(Ordering::Relaxed) {
        // No leak check (a sampled run, --leak-check=no): the C and C++ runtimes' buffers
        // are still given back at a normal exit of a process left with one thread, as
        // before a scan (and as memcheck does whether it checks leaks or not), so that
        // "not freed at exit" counts the same blocks either way.
        if FREERES_AT_EXIT.load(Ordering::Relaxed)
            && matches!(trigger, ExitKind::Exit | ExitKind::UnderscoreExit)
            && alone()
        {
            freeres();
        }
        return;
    }
    let (parked, unstoppable) = stop_threads();
    let stopped = parked.len();
    let single = stopped == 0 && unstoppable.is_empty();
    let mut flags = 0u64;
    if single && matches!(trigger, ExitKind::Exit | ExitKind::UnderscoreExit) {
        freeres();
        flags |= 1;
    }
    scan_and_write(trigger, code, ctx, &parked, &unstoppable, flags);
}

/// Whether this thread is the process's only one but the recorder's own.
fn alone() -> bool {
    let _busy = tls::BusyGuard::enter();
    other_threads().is_empty()
}

/// The leak check of a process that goes on afterwards (a Python program whose work is
/// done): the other threads are not stopped, but scanned as threads that could not be
/// stopped are (a blocked one from its stack pointer, a running one whole). Scan flag
/// 2 says so.
pub fn run_live(trigger: ExitKind, code: i32, ctx: &Context) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let unstoppable: Vec<(u32, u64)> = {
        let _busy = tls::BusyGuard::enter();
        other_threads()
            .into_iter()
            .map(|t| (t, blocked_sp(t).unwrap_or(0)))
            .collect()
    };
    scan_and_write(trigger, code, ctx, &[], &unstoppable, 2);
}

fn scan_and_write(
    trigger: ExitKind,
    code: i32,
    ctx: &Context,
    parked: &[[u64; SLOT]],
    unstoppable: &[(u32, u64)],
    flags: u64,
) {
    let stopped = parked.len();
    let _busy = tls::BusyGuard::enter();
    let started = crate::clock::now_ns();

    // The blocks.
    let mut blocks: Vec<(u64, u64)> = Vec::with_capacity(live::len() + 1024);
    live::for_each(|a, m| blocks.push((a, m.0)));
    let mut heap = Heap::new(blocks);

    let mut mem = SelfMemory::new();
    let mut m = read_mappings(&mut mem);
    leave_out_unreadable_and_mmapped(&mut heap, &m.maps, &mut m.excl);
    if flags & 2 != 0 {
        crate::python::dead_frame_stacks(&mut m.excl);
    }
    let (roots, reg_roots) = find_roots(ctx, parked, unstoppable, &mut m, &mut mem);

    // Mark.
    let ranges: Vec<(u64, u64)> = roots.iter().map(|r| (r.start, r.end)).collect();
    let reg_sets: Vec<&[u64]> = reg_roots.iter().map(|(_, r)| &r[..]).collect();
    let reg_base = ranges.len() as u32;
    // SAFETY: every block marked readable lies in a readable anonymous mapping of this
    // process (`leave_out_unreadable_and_mmapped`), is live (the live table), 16-byte
    // aligned (glibc's blocks), and every other thread is stopped (the work-done check of
    // a Python program, `run_live`, leaves them running: a block one of them frees
    // meanwhile stays mapped in its arena, it is only read, and mmapped blocks are left
    // out of the heap above).
    let direct = unsafe { Direct::new() };
    let marks = mark(
        &heap,
        &direct,
        &m.maps,
        &mut mem,
        HEURISTICS.load(Ordering::Relaxed),
        &ranges,
        &reg_sets,
        crate::python::type_type(),
    );

    let scan = ScanSummary {
        started,
        trigger,
        code,
        stopped: stopped as u32,
        unstoppable: unstoppable.len() as u32,
        flags,
    };
    // Every event recorded so far (the blocks' allocations, their stacks' definitions)
    // goes to the file before the scan's records: a process killed right after them
    // leaves a trace whose leaks have their allocations and stacks.
    crate::thread::flush_all();
    write_records(&scan, &heap, &marks, &roots, &reg_roots, reg_base);
}

/// Read /proc/self/maps into [`Mappings`].
fn read_mappings(mem: &mut SelfMemory) -> Mappings {
    // Prepared at start-up (never here: a stopped thread may hold ld.so's lock).
    let me_path = PREPARED.get().map_or(&[][..], |p| &p.self_path[..]);
    let mut m = Mappings::default();
    sys::for_each_mapping(|line| {
        let ours = !me_path.is_empty() && line.name == me_path;
        m.add(line, ours, || is_arena_heap(mem, line.start, line.end));
        true
    });
    own_memory::for_each(|s, e| m.excl.push((s, e)));
    m
}

/// Blocks outside readable anonymous memory are not read; the chunks of mmapped blocks
/// are heap, never roots.
fn leave_out_unreadable_and_mmapped(heap: &mut Heap, maps: &[Map], excl: &mut Vec<(u64, u64)>) {
    // Blocks outside readable anonymous memory (a stale table entry; glibc never puts a
    // block in a file mapping, whose pages past the file's end would fault) are not read;
    // mmapped chunks of live blocks are heap, not roots.
    for (i, b) in heap.blocks.iter().enumerate() {
        let (start, end) = (b.0, end_of(b));
        let mi = maps.partition_point(|m| m.start <= b.0);
        let ok = mi > 0
            && !maps[mi - 1].file
            && start >= maps[mi - 1].start + 16
            && end <= maps[mi - 1].end;
        heap.readable[i] = ok;
        if ok && size_of(b.1) >= 64 * 1024 {
            // SAFETY: the chunk header (16 bytes before the block) is in the same mapping.
            let (prev, hdr) = unsafe {
                (
                    core::ptr::read((start - 16) as *const u64),
                    core::ptr::read((start - 8) as *const u64),
                )
            };
            if hdr & 2 != 0 {
                let chunk = start - 16;
                excl.push((chunk.wrapping_sub(prev), chunk + (hdr & !7)));
            }
        }
    }
}

/// The stack pointer the process started with (`__libc_stack_end`, set by ld.so before
/// any code of the program ran): above it, argv, the environment and the auxiliary
/// vector; below it, the main thread's frames.
fn main_start_sp() -> u64 {
    extern "C" {
        static __libc_stack_end: *const core::ffi::c_void;
    }
    // SAFETY: ld.so's exported variable, written once at start-up.
    unsafe { __libc_stack_end as u64 }
}

/// The roots: thread stacks from their stack pointers up, registers, and every other
/// root mapping less what is never a root.
#[allow(clippy::type_complexity)]
fn find_roots(
    ctx: &Context,
    parked: &[[u64; SLOT]],
    unstoppable: &[(u32, u64)],
    m: &mut Mappings,
    mem: &mut SelfMemory,
) -> (Vec<Root>, Vec<(u32, Vec<u64>)>) {
    let (rw, excl, guard_ends) = (&m.rw, &mut m.excl, &m.guard_ends);
    // Thread stacks: live from their stack pointers up.
    let mut roots: Vec<Root> = Vec::new();
    let mut reg_roots: Vec<(u32, Vec<u64>)> = Vec::new();
    let my_sp = if ctx.sp != 0 {
        ctx.sp
    } else {
        sys::current_sp()
    };
    // Every stack from its stack pointer; for a thread a signal interrupted at an
    // arbitrary instruction, from the red zone below it (a leaf function's live locals),
    // but never for a call (exit, abort, a thread parking on its way out of the
    // recorder) or a fault: below the stack pointer lie only dead frames there (the
    // recorder's own hook frames among them) and the signal frame, and stale pointers in
    // them must not keep a block reachable.
    let my_lo = if ctx.red_zone {
        my_sp.saturating_sub(RED_ZONE)
    } else {
        my_sp
    };
    let mut stacks: Vec<(u32, u64)> = alloc::vec![(sys::gettid(), my_lo)];
    reg_roots.push((sys::gettid(), ctx.regs[..ctx.nregs].to_vec()));
    // SAFETY: pthread_self reads the thread pointer; no precondition.
    let mut live_tps: Vec<u64> = alloc::vec![unsafe { libc::pthread_self() } as u64];
    for s in parked {
        stacks.push((s[0] as u32, s[1]));
        live_tps.push(s[2]);
        reg_roots.push((s[0] as u32, s[3..].to_vec()));
    }
    for &(tid, sp) in unstoppable {
        if sp != 0 {
            stacks.push((tid, sp));
        }
    }
    // The recorder's memory and mmapped blocks are never roots, even inside a stack's
    // range: the kernel merges adjacent anonymous mappings, so the mapping a stack
    // pointer is in can reach into the recorder's tables (seen in a Go program, whose
    // goroutine stacks lie in large anonymous arenas).
    let not_roots = merge(excl.clone());
    // In a Go program a goroutine's stack lies inside a Go heap arena whose other objects
    // (below it too) are roots: every mapping is scanned whole below, stacks included,
    // and once (a root per thread as well would rescan an arena per thread).
    let whole = WHOLE_STACK_MAPPINGS.load(Ordering::Relaxed);
    for &(tid, sp) in stacks.iter().filter(|_| !whole) {
        if let Some(r) = rw.iter().find(|r| sp >= r.start && sp < r.end) {
            // A thread's stack mapping is scanned from its stack pointer up, the dead
            // part below left out.
            excl.push((r.start, r.end));
            subtract(sp, r.end, &not_roots, |start, end| {
                roots.push(Root {
                    kind: RootKind::ThreadStack,
                    tid,
                    start,
                    end,
                    name: r.name.clone(),
                })
            });
        }
    }
    // The main thread's stack once the main thread has ended (`pthread_exit`, the process
    // living on in its other threads; its task a zombie): its frames are dead, as memcheck
    // has them, and a pointer left in one keeps nothing reachable. What lies above the
    // stack pointer the process started with (argv, the environment and the auxiliary
    // vector) stays a root. A main thread that runs (unstopped, or on another stack for
    // now) keeps its whole stack a root.
    if !whole {
        if let Some(r) = rw.iter().find(|r| r.name == b"[stack]") {
            let start_sp = main_start_sp();
            if start_sp > r.start
                && start_sp < r.end
                && !stacks.iter().any(|&(_, sp)| sp >= r.start && sp < r.end)
                // SAFETY: getpid has no preconditions.
                && stop::has_ended(unsafe { libc::getpid() } as u32)
            {
                excl.push((r.start, start_sp));
            }
        }
    }
    // The stacks glibc keeps for reuse after their threads ended hold only dead frames.
    // (A thread that could not be stopped might own one of them, on another stack: then
    // none is left out, rather than a live thread's.)
    if !whole && unstoppable.is_empty() {
        let live_sps: Vec<u64> = stacks.iter().map(|s| s.1).collect();
        let layout = PREPARED.get().map_or(StackLayout::default(), |p| p.layout);
        dead_thread_stacks(
            mem,
            layout,
            rw,
            guard_ends,
            &live_sps,
            &live_tps,
            |lo, hi| excl.push((lo, hi)),
        );
    }
    let excl = merge(core::mem::take(excl));
    for r in rw {
        let kind = if r.shared {
            RootKind::OtherMapping
        } else if r.file {
            RootKind::ModuleData
        } else {
            RootKind::Anonymous
        };
        subtract(r.start, r.end, &excl, |lo, hi| {
            roots.push(Root {
                kind,
                tid: 0,
                start: lo,
                end: hi,
                name: r.name.clone(),
            })
        });
    }
    (roots, reg_roots)
}

/// What the ScanBegin record says.
struct ScanSummary {
    started: u64,
    trigger: ExitKind,
    code: i32,
    stopped: u32,
    unstoppable: u32,
    flags: u64,
}

/// Write the Scan chunk(s): begin, roots, one record per block, end.
fn write_records(
    scan: &ScanSummary,
    heap: &Heap,
    marks: &Marks,
    roots: &[Root],
    reg_roots: &[(u32, Vec<u64>)],
    reg_base: u32,
) {
    let n = heap.blocks.len();
    // Write.
    let mut b = ChunkBuilder::new(alloc::vec![0u8; crate::output::CHUNK_RAW].into_boxed_slice());
    type Builder = ChunkBuilder<alloc::boxed::Box<[u8]>>;
    let put = |b: &mut Builder, f: &mut dyn FnMut(&mut Builder) -> bool| {
        if !f(b) {
            crate::output::write_chunk(ChunkKind::Scan, 0, b);
            b.clear();
            f(b);
        }
    };
    let tid = sys::gettid();
    put(&mut b, &mut |b| {
        b.scan_begin(
            scan.started,
            scan.trigger,
            scan.code,
            n as u64,
            tid,
            scan.stopped,
            scan.unstoppable,
            scan.flags,
        )
        .is_ok()
    });
    for (i, r) in roots.iter().enumerate() {
        put(&mut b, &mut |b| {
            b.scan_root(i as u32, r.kind, r.tid, 0, r.start, r.end, &r.name)
                .is_ok()
        });
    }
    for (k, (t, _)) in reg_roots.iter().enumerate() {
        put(&mut b, &mut |b| {
            b.scan_root(reg_base + k as u32, RootKind::Registers, *t, 0, 0, 0, b"")
                .is_ok()
        });
    }
    for i in 0..n {
        let (addr, meta) = heap.blocks[i];
        let (state, heur, link) = marks.verdict(i);
        let m = live::Meta(meta, 0);
        put(&mut b, &mut |b| {
            b.scan_block(addr, m.size(), state, heur, m.internal(), link)
                .is_ok()
        });
    }
    let now = crate::clock::now_ns();
    put(&mut b, &mut |b| b.scan_end(now, n as u64).is_ok());
    crate::output::write_chunk(ChunkKind::Scan, 0, &b);
}
