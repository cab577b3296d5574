//! Loaded modules and the unwinder over them.
//!
//! The set of modules lives in an immutable [`Snapshot`] published through an atomic
//! pointer: the hot path (unwinding, frame -> module translation) takes no lock. When
//! modules come or go (dlopen/dlclose), a new snapshot is built and published; old ones
//! are retired but never freed, because a thread may still be unwinding with one (they
//! are small: the unwind data they share is reference-counted).
//!
//! Unwind data (`.eh_frame_hdr`, `.eh_frame`) is *copied* into the recorder's memory when a
//! module is first seen, so unwinding keeps working while, and after, a library is
//! unmapped by `dlclose`.

use crate::config::MAX_DEPTH_LIMIT;
use crate::output;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, MustNotAllocateDuringUnwind, Unwinder};

extern crate alloc;

pub type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;
type Unw = UnwinderX86_64<Vec<u8>, MustNotAllocateDuringUnwind>;

/// A module as the trace describes it.
#[derive(Clone)]
struct ModuleInfo {
    id: u32,
    /// The file's absolute path, as written to the trace.
    name: Vec<u8>,
    /// The name the loader gives (`dlpi_name`: empty for the executable, the path as the
    /// program passed it to `dlopen`), to recognise the module at the next rescan.
    loader_name: Vec<u8>,
    build_id: Vec<u8>,
    segments: Vec<(u64, u64, u32)>,
    bias: u64,
    start: u64,
    end: u64,
}

pub struct Snapshot {
    unwinder: Unw,
    /// Sorted by start address.
    modules: Vec<ModuleInfo>,
    /// Mixed into stack hashes: stacks recorded under another module set are different.
    pub generation: u64,
}

static CURRENT: AtomicPtr<Snapshot> = AtomicPtr::new(core::ptr::null_mut());
/// Serialises snapshot rebuilds (and is held across fork).
pub static REBUILD: spin::Mutex<()> = spin::Mutex::new(());
static NEXT_MODULE_ID: AtomicU32 = AtomicU32::new(1);
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The current snapshot, or `None` before initialisation.
#[inline]
pub fn current() -> Option<&'static Snapshot> {
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: published snapshots are never freed (see module docs).
    unsafe { p.as_ref() }
}

impl Snapshot {
    /// `(module id, offset)` for a code address; module 0 with the absolute address when
    /// the address is in no known module.
    pub fn locate(&self, addr: u64) -> (u32, u64) {
        let i = self.modules.partition_point(|m| m.start <= addr);
        if i > 0 {
            let m = &self.modules[i - 1];
            if addr < m.end {
                return (m.id, addr.wrapping_sub(m.bias));
            }
        }
        (0, addr)
    }

    /// Unwind from a return address into `out`: `out.frames[0]` is `ret`, then the
    /// callers, at most `depth` frames. `sp`/`bp` are the caller's registers right after
    /// the hooked call returns; stack reads are limited to `[sp, stack_hi)`.
    ///
    /// `prev` is this thread's previous unwind. When a frame's registers (ip, sp, bp)
    /// equal those of a frame of `prev`, and every stack word `prev` read from that frame
    /// outward still holds the same value, the rest of the walk would repeat `prev`'s
    /// exactly (an unwind is a pure function of registers, module snapshot and the words
    /// it reads), so `prev`'s remaining frames are copied instead of unwound.
    #[allow(clippy::too_many_arguments)]
    pub fn unwind(
        &self,
        ret: u64,
        sp: u64,
        bp: u64,
        stack_hi: u64,
        depth: usize,
        cache: &mut Cache,
        prev: &UnwindRecord,
        out: &mut UnwindRecord,
    ) {
        'walk: {
            out.start(self.generation, stack_hi, depth);
            if out.depth == 0 {
                break 'walk;
            }
            out.frames[0] = ret;
            out.sp[0] = sp;
            out.bp[0] = bp;
            out.uses_bp[0] = false;
            out.keeps_bp[0] = false;
            out.restore_read[0] = 0;
            out.n = 1;
            if sp == 0 || sp >= stack_hi {
                break 'walk;
            }
            let lo = sp;
            let readable =
                |addr: u64| addr >= lo && addr.checked_add(8).is_some_and(|e| e <= stack_hi);
            let reuse = prev.valid
                && prev.generation == self.generation
                && prev.hi == stack_hi
                && !prev.overflow;
            let mut li = 0usize;
            let mut regs = UnwindRegsX86_64::new(ret, sp, bp);
            let Some(mut addr) = FrameAddress::from_return_address(ret) else {
                break 'walk;
            };
            loop {
                let k = out.n - 1;
                out.seg[k] = out.nreads as u16;
                if reuse {
                    while li < prev.n && prev.sp[li] < regs.sp() {
                        li += 1;
                    }
                    // Same frame, same stack pointer; the same bp too, unless the rest of
                    // the earlier walk never depended on it (see `bp_dep`).
                    if li < prev.n
                        && prev.sp[li] == regs.sp()
                        && (prev.bp[li] == regs.bp() || !prev.bp_dep[li])
                        && prev.frames[li] == out.frames[k]
                        && out.adopt_tail(prev, li, bp, &readable)
                    {
                        break 'walk;
                    }
                }
                if out.n >= out.depth {
                    out.end_by_limit = true;
                    break 'walk;
                }
                let reads_before = out.nreads;
                let mut read = |a: u64| -> Result<u64, ()> {
                    if readable(a) {
                        // SAFETY: [lo, stack_hi) lies inside this thread's own stack mapping,
                        // above the current stack pointer, so it is mapped and readable.
                        let v = unsafe { core::ptr::read_unaligned(a as *const u64) };
                        out.push_read(a, v, bp);
                        Ok(v)
                    } else {
                        Err(())
                    }
                };
                let bp_before = regs.bp();
                regs.take_bp_used();
                let step = self
                    .unwinder
                    .unwind_frame(addr, &mut regs, cache, &mut read);
                out.uses_bp[k] = regs.take_bp_used() || step.is_err();
                let (restore, keeps) = bp_restore(
                    &out.reads[reads_before..out.nreads],
                    regs.sp().wrapping_sub(8),
                    bp_before,
                    regs.bp(),
                    out.uses_bp[k],
                );
                out.restore_read[k] = restore.map_or(0, |r| (reads_before + r) as u16 + 1);
                out.keeps_bp[k] = keeps;
                match step {
                    Ok(Some(ra)) => {
                        let n = out.n;
                        out.frames[n] = ra;
                        out.sp[n] = regs.sp();
                        out.bp[n] = regs.bp();
                        out.uses_bp[n] = false;
                        out.keeps_bp[n] = false;
                        out.restore_read[n] = 0;
                        out.n = n + 1;
                        match FrameAddress::from_return_address(ra) {
                            Some(a) => addr = a,
                            None => break 'walk,
                        }
                    }
                    Ok(None) => break 'walk,
                    Err(_) => {
                        // May be a frame-pointer check on the start bp: see UnwindRecord.
                        out.ended_by_error = true;
                        out.bp_sensitive = true;
                        break 'walk;
                    }
                }
            }
        }
        out.find_bp_dependence();
    }
}

/// How one step treated bp, from the reads it made (`reads`), where it read the return
/// address (`ra_at`: the new stack pointer - 8), bp before and after, and whether the
/// step computed from bp (`used_bp`): the index in `reads` of the word it restored bp
/// from, if any, and whether it passed bp on unchanged.
///
/// A step that restores bp is not passing it on even when the saved value equals the
/// current one (a function that saved its caller's rbp, holding data, and has not changed
/// it yet at the call): what follows then depends on that word, and only if a later step
/// uses bp (see `find_bp_dependence`), not on the bp the step started with. Calling such a
/// restore "keeping bp" made the word a dependency of every walk through the function,
/// and the data in it changed from call to call.
///
/// The restore is the last such read (a step evaluated generically reads its CFA before
/// its registers). An unchanged bp in a step that used bp (a frame-pointer rule, or CFI
/// evaluated generically, whose CFA may itself come from a read) is taken as passed on:
/// a read there that happens to hold bp's value may be the CFA's.
fn bp_restore(
    reads: &[(u64, u64)],
    ra_at: u64,
    bp_before: u64,
    bp_after: u64,
    used_bp: bool,
) -> (Option<usize>, bool) {
    if bp_after == bp_before && used_bp {
        return (None, true);
    }
    let restore = reads
        .iter()
        .rposition(|&(addr, v)| v == bp_after && addr != ra_at);
    (restore, restore.is_none() && bp_after == bp_before)
}

/// Maximum stack reads kept per unwind (about two per frame).
pub const RECORD_READS: usize = 2 * MAX_DEPTH_LIMIT;

/// One unwind: its frames, the registers at each frame, and every stack word it read, by
/// frame (`seg[k]` = index of the first read made while stepping from frame k outward).
///
/// The start `bp` is the one input not in `reads`: it is a register, and in code built
/// without frame pointers it changes from call to call. It can only influence the result
/// by being dereferenced (a read at bp or bp+8: the frame-pointer rules), or through a
/// frame-pointer sanity check that ends the walk with an error. `bp_sensitive` records
/// either, and then the result is only reused for the same `bp`.
pub struct UnwindRecord {
    pub valid: bool,
    pub generation: u64,
    pub hi: u64,
    pub depth: usize,
    pub n: usize,
    pub frames: [u64; MAX_DEPTH_LIMIT],
    pub sp: [u64; MAX_DEPTH_LIMIT],
    pub bp: [u64; MAX_DEPTH_LIMIT],
    pub seg: [u16; MAX_DEPTH_LIMIT],
    /// Whether the step from frame k computed anything from frame k's bp (a frame-pointer
    /// rule, or DWARF CFI framehop evaluates generically; an error counts too).
    pub uses_bp: [bool; MAX_DEPTH_LIMIT],
    /// Whether the step from frame k passed bp on unchanged: it did not restore bp from
    /// the stack (a restore of the same value is a restore: see `restore_read`).
    pub keeps_bp: [bool; MAX_DEPTH_LIMIT],
    /// Whether the walk from frame k outward depends on frame k's bp: some later step
    /// uses it before a step restores bp from the stack (a word in `reads`). A later walk
    /// that reaches frame k with another bp may adopt the tail when this is false.
    pub bp_dep: [bool; MAX_DEPTH_LIMIT],
    /// The read (index + 1; 0: none) whose value the step from frame k restored bp to.
    pub restore_read: [u16; MAX_DEPTH_LIMIT],
    pub reads: [(u64, u64); RECORD_READS],
    /// Whether the walk's result depends on `reads[i]`: every read does but a bp restore
    /// whose value no later step uses (`bp_dep` of the frame it restored bp for is false),
    /// such as the saved rbp of a function that keeps data in rbp. Only relevant reads
    /// are checked when an unwind is reused.
    pub relevant: [bool; RECORD_READS],
    pub nreads: usize,
    pub overflow: bool,
    pub bp_sensitive: bool,
    pub end_by_limit: bool,
    pub ended_by_error: bool,
}

impl UnwindRecord {
    /// A new, empty record on the heap, without building it on the stack first (it is
    /// ~15 KiB; hooks may run on small thread stacks).
    pub fn boxed() -> alloc::boxed::Box<UnwindRecord> {
        // SAFETY: all-zero bytes are a valid UnwindRecord (integers 0, bools false,
        // `valid` false).
        unsafe { crate::private_alloc::zeroed_box() }
    }

    fn start(&mut self, generation: u64, hi: u64, depth: usize) {
        self.valid = true;
        self.generation = generation;
        self.hi = hi;
        self.depth = depth.min(MAX_DEPTH_LIMIT);
        self.n = 0;
        self.nreads = 0;
        self.overflow = false;
        self.bp_sensitive = false;
        self.end_by_limit = false;
        self.ended_by_error = false;
    }

    #[inline]
    fn push_read(&mut self, addr: u64, v: u64, start_bp: u64) {
        if addr == start_bp || addr == start_bp.wrapping_add(8) {
            self.bp_sensitive = true;
        }
        if self.nreads < RECORD_READS {
            self.reads[self.nreads] = (addr, v);
            self.nreads += 1;
        } else {
            self.overflow = true;
        }
    }

    /// Fill `bp_dep` from `uses_bp` and `keeps_bp`, from the outermost frame inward.
    fn find_bp_dependence(&mut self) {
        let mut outer = self.ended_by_error;
        for k in (0..self.n).rev() {
            let dep = self.uses_bp[k] || (self.keeps_bp[k] && outer);
            self.bp_dep[k] = dep;
            outer = dep;
        }
        self.relevant[..self.nreads].fill(true);
        for k in 0..self.n.saturating_sub(1) {
            let r = self.restore_read[k] as usize;
            if r != 0 && r <= self.nreads && !self.bp_dep[k + 1] {
                self.relevant[r - 1] = false;
            }
        }
        self.bp_sensitive |= self.n > 0 && self.bp_dep[0];
    }

    /// The reads the result depends on, as (address, value).
    pub fn relevant_reads(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.reads[..self.nreads]
            .iter()
            .zip(&self.relevant[..self.nreads])
            .filter(|(_, &r)| r)
            .map(|(&rv, _)| rv)
    }

    /// Frames of this unwind.
    pub fn frames(&self) -> &[u64] {
        &self.frames[..self.n]
    }

    /// Forget this unwind (a forked child).
    pub fn invalidate(&mut self) {
        self.valid = false;
    }

    /// Try to finish this unwind, now at frame `n - 1`, with `prev`'s frames after its
    /// frame `li` (same registers). Succeeds if every word `prev` read from `li` on is
    /// unchanged and readable here, and `prev` does not end short of what we need.
    fn adopt_tail(
        &mut self,
        prev: &UnwindRecord,
        li: usize,
        start_bp: u64,
        readable: &impl Fn(u64) -> bool,
    ) -> bool {
        let k = self.n - 1;
        let tail = prev.n - li - 1;
        let room = self.depth - self.n;
        // prev stopped at its depth limit: beyond its end the frames are unknown.
        if prev.end_by_limit && tail < room {
            return false;
        }
        let from = prev.seg[li] as usize;
        let tail_reads = &prev.reads[from..prev.nreads];
        if self.nreads + tail_reads.len() > RECORD_READS {
            return false;
        }
        let tail_relevant = &prev.relevant[from..prev.nreads];
        for (&(a, v), _) in tail_reads.iter().zip(tail_relevant).filter(|(_, &r)| r) {
            // SAFETY: dereferenced only after checking it lies in this thread's stack,
            // at or above the current stack pointer.
            if !readable(a) || unsafe { core::ptr::read_unaligned(a as *const u64) } != v {
                return false;
            }
        }
        // Restore reads, moved with the tail's reads.
        let base = self.nreads;
        let moved = move |r: u16| {
            if r == 0 {
                0
            } else {
                (base + r as usize - from) as u16
            }
        };
        let take = tail.min(room);
        self.uses_bp[k] = prev.uses_bp[li];
        self.keeps_bp[k] = prev.keeps_bp[li];
        self.restore_read[k] = moved(prev.restore_read[li]);
        // bp as this walk has it: passed on from frame k while the earlier walk kept it,
        // then as the earlier walk restored it from the (unchanged) stack.
        let mut bp = self.bp[k];
        let mut kept = prev.keeps_bp[li];
        for t in 0..take {
            let (d, s) = (self.n + t, li + 1 + t);
            self.frames[d] = prev.frames[s];
            self.sp[d] = prev.sp[s];
            if !kept {
                bp = prev.bp[s];
            }
            self.bp[d] = bp;
            kept = kept && prev.keeps_bp[s];
            self.uses_bp[d] = prev.uses_bp[s];
            self.keeps_bp[d] = prev.keeps_bp[s];
            self.restore_read[d] = moved(prev.restore_read[s]);
            self.seg[d] = (self.nreads + prev.seg[s] as usize - from) as u16;
        }
        self.seg[k] = self.nreads as u16;
        for &(a, v) in tail_reads {
            self.push_read(a, v, start_bp);
        }
        self.n += take;
        if take < tail {
            self.end_by_limit = true;
        } else {
            self.end_by_limit = prev.end_by_limit;
            self.ended_by_error = prev.ended_by_error;
            self.bp_sensitive |= prev.ended_by_error;
        }
        true
    }
}

/// One module found by `dl_iterate_phdr`.
struct Found {
    name: Vec<u8>,
    bias: u64,
    start: u64,
    end: u64,
    text: Option<core::ops::Range<u64>>,
    eh_frame_hdr: Option<(u64, u64)>,
    build_id: Vec<u8>,
    segments: Vec<(u64, u64, u32)>,
}

/// # Safety
/// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` is the `Vec` the
/// caller passed.
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for the duration of the callback, and
    // `data` is the Vec we passed in.
    let info = &*info;
    let out = &mut *(data as *mut Vec<Found>);
    let bias = info.dlpi_addr;
    let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    let mut f = Found {
        name: if info.dlpi_name.is_null() {
            Vec::new()
        } else {
            CStr::from_ptr(info.dlpi_name).to_bytes().to_vec()
        },
        bias,
        start: u64::MAX,
        end: 0,
        text: None,
        eh_frame_hdr: None,
        build_id: Vec::new(),
        segments: Vec::new(),
    };
    for ph in phdrs {
        match ph.p_type {
            libc::PT_LOAD => {
                f.start = f.start.min(ph.p_vaddr);
                f.end = f.end.max(ph.p_vaddr + ph.p_memsz);
                f.segments.push((ph.p_vaddr, ph.p_memsz, ph.p_flags));
                if ph.p_flags & libc::PF_X != 0 && f.text.is_none() {
                    f.text = Some(ph.p_vaddr..ph.p_vaddr + ph.p_memsz);
                }
            }
            libc::PT_GNU_EH_FRAME => f.eh_frame_hdr = Some((ph.p_vaddr, ph.p_memsz)),
            libc::PT_NOTE if f.build_id.is_empty() => {
                f.build_id = find_build_id((bias + ph.p_vaddr) as *const u8, ph.p_memsz as usize);
            }
            _ => {}
        }
    }
    if f.start < f.end {
        out.push(f);
    }
    0
}

/// Parse ELF notes in memory for NT_GNU_BUILD_ID.
/// # Safety
/// `p..p+len` is a mapped PT_NOTE segment of a loaded module.
unsafe fn find_build_id(p: *const u8, len: usize) -> Vec<u8> {
    let mut off = 0usize;
    while off + 12 <= len {
        let rd = |o: usize| core::ptr::read_unaligned(p.add(o) as *const u32) as usize;
        let (namesz, descsz, ty) = (rd(off), rd(off + 4), rd(off + 8));
        let name_off = off + 12;
        let desc_off = name_off + ((namesz + 3) & !3);
        let next = desc_off + ((descsz + 3) & !3);
        if next > len {
            break;
        }
        if ty == 3 && namesz == 4 && core::slice::from_raw_parts(p.add(name_off), 4) == b"GNU\0" {
            return core::slice::from_raw_parts(p.add(desc_off), descsz).to_vec();
        }
        off = next;
    }
    Vec::new()
}

/// Decode the `eh_frame_ptr` of an `.eh_frame_hdr` (only the encodings compilers emit).
/// # Safety
/// `hdr_avma` is the address of a loaded module's `.eh_frame_hdr`.
unsafe fn eh_frame_address(hdr_avma: u64) -> Option<u64> {
    let p = hdr_avma as *const u8;
    if *p != 1 {
        return None;
    }
    let enc = *p.add(1);
    let field = hdr_avma + 4;
    let base = match enc & 0x70 {
        0x00 => 0,
        0x10 => field,
        _ => return None,
    };
    let v = match enc & 0x0f {
        0x0b => core::ptr::read_unaligned(field as *const i32) as i64 as u64,
        0x03 => core::ptr::read_unaligned(field as *const u32) as u64,
        0x0c | 0x04 => core::ptr::read_unaligned(field as *const u64),
        _ => return None,
    };
    Some(base.wrapping_add(v))
}

/// Build framehop's module from the in-memory unwind sections, copying them.
/// # Safety
/// `f`'s addresses are the mapped segments of a module loaded now (its unwind sections
/// are copied here, so the module may be unloaded later).
unsafe fn framehop_module(f: &Found, name: String) -> Option<framehop::Module<Vec<u8>>> {
    let (hdr_vaddr, hdr_len) = f.eh_frame_hdr?;
    let hdr_avma = f.bias + hdr_vaddr;
    let eh_avma = eh_frame_address(hdr_avma)?;
    let eh_vaddr = eh_avma.wrapping_sub(f.bias);
    // .eh_frame runs to the end of the PT_LOAD segment that contains it at the most.
    let seg_end = f
        .segments
        .iter()
        .filter(|s| eh_vaddr >= s.0 && eh_vaddr < s.0 + s.1)
        .map(|s| s.0 + s.1)
        .next()?;
    let eh_len = seg_end - eh_vaddr;
    let hdr = core::slice::from_raw_parts(hdr_avma as *const u8, hdr_len as usize).to_vec();
    let eh = core::slice::from_raw_parts(eh_avma as *const u8, eh_len as usize).to_vec();
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: f.text.clone(),
        eh_frame_svma: Some(eh_vaddr..seg_end),
        eh_frame: Some(eh),
        eh_frame_hdr_svma: Some(hdr_vaddr..hdr_vaddr + hdr_len),
        eh_frame_hdr: Some(hdr),
        ..Default::default()
    };
    Some(framehop::Module::new(
        name,
        f.bias + f.start..f.bias + f.end,
        f.bias,
        info,
    ))
}

/// The absolute path of a module's file. The loader keeps a `dlopen`ed library's name as
/// the program gave it (`./plugin.so`), relative to a working directory that may have
/// changed since and that `memlens leaks` does not share; the kernel names the file mapped
/// at the module's first segment by its absolute path. The loader's name is kept when no
/// file mapping is there (the vDSO).
fn absolute_path(f: &Found) -> Vec<u8> {
    if f.name.first() == Some(&b'/') {
        return f.name.clone();
    }
    let at = f.bias + f.start;
    let mut path = None;
    crate::sys::for_each_mapping(|m| {
        if m.start <= at && at < m.end {
            if m.name.first() == Some(&b'/') {
                path = Some(m.name.to_vec());
            }
            return false;
        }
        true
    });
    path.unwrap_or_else(|| f.name.clone())
}

/// Rescan the loaded modules; publish a new snapshot and record loads/unloads if the set
/// changed. Must be called with the thread marked busy. Returns whether anything changed.
pub fn refresh(ts: u64) -> bool {
    let _g = REBUILD.lock();
    LAST_COUNTS.store(load_counts(), Ordering::Relaxed);
    let mut found: Vec<Found> = Vec::new();
    // SAFETY: `collect` only reads the phdr info and pushes into `found`.
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut found as *mut _ as *mut c_void) };
    let old = current();
    let same = |m: &ModuleInfo, f: &Found| {
        m.bias == f.bias
            && m.start == f.bias + f.start
            && (f.name.is_empty() || m.loader_name == f.name)
    };
    if let Some(old) = old {
        if old.modules.len() == found.len()
            && found.iter().all(|f| old.modules.iter().any(|m| same(m, f)))
        {
            return false;
        }
    }
    let mut unwinder = match old {
        Some(o) => o.unwinder.clone(),
        None => Unw::new(),
    };
    let mut modules: Vec<ModuleInfo> = Vec::new();
    // Unloaded modules.
    if let Some(old) = old {
        for m in &old.modules {
            if !found.iter().any(|f| same(m, f)) {
                unwinder.remove_module(m.start);
                output::module_unload(ts, m.id);
            }
        }
    }
    for f in &found {
        if let Some(m) = old.and_then(|o| o.modules.iter().find(|m| same(m, f))) {
            modules.push(m.clone());
            continue;
        }
        let id = NEXT_MODULE_ID.fetch_add(1, Ordering::Relaxed);
        let name = if f.name.is_empty() {
            crate::sys::exe_path()
        } else {
            absolute_path(f)
        };
        // SAFETY: the module is mapped while we hold no reference past this call.
        if let Some(m) = unsafe { framehop_module(f, String::from_utf8_lossy(&name).into_owned()) }
        {
            unwinder.add_module(m);
        }
        output::module_load(ts, id, &name, &f.build_id, f.bias, &f.segments);
        modules.push(ModuleInfo {
            id,
            name,
            loader_name: f.name.clone(),
            build_id: f.build_id.clone(),
            segments: f.segments.clone(),
            bias: f.bias,
            start: f.bias + f.start,
            end: f.bias + f.end,
        });
    }
    modules.sort_by_key(|m| m.start);
    let snap = alloc::boxed::Box::new(Snapshot {
        unwinder,
        modules,
        generation: GENERATION
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    });
    CURRENT.store(alloc::boxed::Box::into_raw(snap), Ordering::Release);
    true
}

/// `dlpi_adds`/`dlpi_subs` as of the last rescan.
static LAST_COUNTS: AtomicU64 = AtomicU64::new(0);

/// # Safety
/// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` points at the
/// caller's counters.
unsafe extern "C" fn counts(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: valid for the callback; data is the u64 we passed.
    let info = &*info;
    *(data as *mut u64) = info.dlpi_adds.wrapping_mul(0x1_0000_0001) ^ info.dlpi_subs;
    1 // stop after the first module: the counters are global
}

fn load_counts() -> u64 {
    let mut c = 0u64;
    // SAFETY: `counts` writes one u64 into `c`.
    unsafe { libc::dl_iterate_phdr(Some(counts), &mut c as *mut u64 as *mut c_void) };
    c
}

/// Rescan because a frame fell outside every known module, if the loader's counters say
/// that modules were loaded or unloaded since the last scan (a library dlopen'ed by the
/// program or by glibc itself). Code outside any module (JIT) costs one counter check.
pub fn refresh_if_changed(ts: u64) -> bool {
    if load_counts() == LAST_COUNTS.load(Ordering::Relaxed) {
        return false;
    }
    refresh(ts)
}

/// # Safety
/// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` points at the
/// caller's search state.
unsafe extern "C" fn find_file(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: valid for the callback; data is the (prefix, found) pair we passed, and a
    // non-null dlpi_name is the loader's NUL-terminated name.
    let (prefix, found) = &mut *(data as *mut (&[u8], bool));
    let info = &*info;
    if !info.dlpi_name.is_null() {
        let path = CStr::from_ptr(info.dlpi_name).to_bytes();
        let file = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
        *found = file.starts_with(prefix);
    }
    *found as c_int // stop at the first match
}

/// Whether a module whose file name starts with `prefix` (`libstdc++.so`) is loaded.
pub fn is_loaded(prefix: &[u8]) -> bool {
    let mut query = (prefix, false);
    // SAFETY: `find_file` only reads the phdr info and writes `query`.
    unsafe { libc::dl_iterate_phdr(Some(find_file), &mut query as *mut _ as *mut c_void) };
    query.1
}

/// Re-emit every current module, and the start-up findings, into a fresh trace (after
/// fork).
pub fn reemit_all(ts: u64) {
    if let Some(s) = current() {
        for m in &s.modules {
            output::module_load(ts, m.id, &m.name, &m.build_id, m.bias, &m.segments);
        }
    }
    crate::dlsym::reemit_notices(ts);
    crate::python::reemit_notices(ts);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walk of four frames: frame 0's step restores bp from read 0 (a function keeping
    /// data in rbp), frame 1's step passes bp on, frame 2's uses it (a frame-pointer rule).
    /// Then read 0's value matters (frame 1 keeps the bp it restored, frame 2 uses it);
    /// if frame 2 does not use bp, read 0 is irrelevant and so is the start bp.
    #[test]
    fn a_restored_bp_that_no_step_uses_is_not_a_dependency() {
        let mut r = UnwindRecord::boxed();
        r.start(1, 0x8000, 8);
        r.n = 4;
        r.nreads = 4;
        r.reads[..4].copy_from_slice(&[
            (0x7000, 0xdead),
            (0x7008, 0x40_1000),
            (0x7018, 0x40_2000),
            (0x7028, 0x40_3000),
        ]);
        r.restore_read[..4].copy_from_slice(&[1, 0, 0, 0]);
        r.keeps_bp[..4].copy_from_slice(&[false, true, false, false]);
        r.uses_bp[..4].copy_from_slice(&[false, false, true, false]);
        r.find_bp_dependence();
        assert_eq!(&r.bp_dep[..4], &[false, true, true, false]);
        assert_eq!(r.relevant_reads().count(), 4);
        assert!(!r.bp_sensitive);

        r.uses_bp[2] = false;
        r.bp_sensitive = false;
        r.find_bp_dependence();
        assert_eq!(&r.bp_dep[..4], &[false, false, false, false]);
        assert_eq!(
            r.relevant_reads().collect::<Vec<_>>(),
            vec![
                (0x7008, 0x40_1000),
                (0x7018, 0x40_2000),
                (0x7028, 0x40_3000)
            ]
        );

        // The first step uses the start bp: the result is only reused for the same bp.
        r.uses_bp[0] = true;
        r.find_bp_dependence();
        assert!(r.bp_sensitive);
    }

    #[test]
    fn a_step_that_restores_bp_to_the_same_value_restores_it() {
        let ra_at = 0x7108;
        // Restored from 0x7100 to the value bp already had: a restore, not a pass.
        let reads = [(0x7100, 0x5555_0000), (ra_at, 0x40_1000)];
        let restore = |reads: &[(u64, u64)], before, after, used| {
            bp_restore(reads, ra_at, before, after, used)
        };
        assert_eq!(
            restore(&reads, 0x5555_0000, 0x5555_0000, false),
            (Some(0), false)
        );
        // Restored to another value.
        assert_eq!(
            restore(&reads, 0x1234, 0x5555_0000, false),
            (Some(0), false)
        );
        // Only the return address read: bp passed on.
        assert_eq!(restore(&reads[1..], 0x1234, 0x1234, false), (None, true));
        // A return address that equals bp is not where bp came from.
        assert_eq!(
            restore(&[(ra_at, 0x40_1000)], 0x40_1000, 0x40_1000, false),
            (None, true)
        );
        // bp changed, but not from a read (computed): neither passed on nor attributed.
        assert_eq!(restore(&reads[1..], 0x1234, 0x9999, false), (None, false));
        // A generic step: the CFA read first, then bp's; the restore is the later one.
        let generic = [
            (0x7100, 0x7fff_0000),
            (0x7110, 0x7fff_0000),
            (ra_at, 0x40_1000),
        ];
        assert_eq!(
            restore(&generic, 0x1234, 0x7fff_0000, true),
            (Some(1), false)
        );
        // A step that used bp and left it unchanged passed it on, whatever its reads hold.
        assert_eq!(
            restore(&generic, 0x7fff_0000, 0x7fff_0000, true),
            (None, true)
        );
    }
}
