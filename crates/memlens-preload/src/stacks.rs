//! De-duplication of stacks: a fixed-size open-addressing table in its own mmap, keyed by
//! a 64-bit hash of the frames (and of the module-set generation).
//!
//! Lookups are lock-free: a slot's hash is published with Release after its id, and a
//! slot once filled never changes. Insertions take [`INSERT`], write the stack's
//! definition into the Meta buffer, then publish the slot, so a stack id is never used
//! before its definition is buffered. A 64-bit hash is taken as the stack's identity.

use crate::modules::Snapshot;
use crate::output;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

const SLOTS: usize = 1 << 22;
const MASK: usize = SLOTS - 1;
/// Stop inserting beyond this many stacks (70% load); further new stacks get id 0.
const MAX_STACKS: u32 = (SLOTS as u32 / 10) * 7;
const MAX_PROBES: usize = 4096;

#[repr(C)]
struct Slot {
    hash: AtomicU64,
    id: AtomicU32,
    _pad: u32,
}

static TABLE: AtomicPtr<Slot> = AtomicPtr::new(core::ptr::null_mut());
pub static INSERT: spin::Mutex<()> = spin::Mutex::new(());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// Mixed into hashes; bumped in a forked child so that its new trace redefines stacks.
pub static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Map the table (lazily touched, so untouched slots cost no memory).
pub fn init() -> bool {
    // SAFETY: anonymous private mapping; result checked.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            SLOTS * core::mem::size_of::<Slot>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    TABLE.store(p as *mut Slot, Ordering::Release);
    true
}

#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
pub fn hash(frames: &[u64], generation: u64) -> u64 {
    let mut h = generation
        ^ EPOCH.load(Ordering::Relaxed)
        ^ (frames.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &f in frames {
        h = mix(h ^ f).wrapping_add(0x2545_F491_4F6C_DD1D);
    }
    mix(h) | 1
}

#[inline]
fn slot(i: usize) -> &'static Slot {
    // SAFETY: TABLE points to SLOTS zero-initialised slots for the life of the process
    // (checked non-null by callers through `id_for`), and i is masked.
    unsafe { &*TABLE.load(Ordering::Relaxed).add(i & MASK) }
}

/// Find `h` (Some(id)) or the empty slot where it would go (None, index).
#[inline]
fn probe(h: u64) -> Result<u32, Option<usize>> {
    let mut i = h as usize & MASK;
    for _ in 0..MAX_PROBES {
        let s = slot(i);
        let k = s.hash.load(Ordering::Acquire);
        if k == h {
            return Ok(s.id.load(Ordering::Relaxed));
        }
        if k == 0 {
            return Err(Some(i));
        }
        i = (i + 1) & MASK;
    }
    Err(None)
}

/// A stack that is new and has frames outside every known module: the caller should
/// rescan the modules (a library was loaded behind our back) before defining it.
pub struct UnknownFrames;

/// The id of the stack `frames`, defining it in the trace if it is new. 0 when the table
/// is full or not initialised. A new stack with a frame outside every known module is
/// defined only if `define_unknown` is set; otherwise `Err(UnknownFrames)` (checking
/// frames only for new stacks keeps the common path free of module look-ups).
#[inline]
pub fn id_for(frames: &[u64], snap: &Snapshot, define_unknown: bool) -> Result<u32, UnknownFrames> {
    if TABLE.load(Ordering::Relaxed).is_null() {
        return Ok(0);
    }
    let h = hash(frames, snap.generation);
    match probe(h) {
        Ok(id) => Ok(id),
        Err(_) => insert(h, frames, snap, define_unknown),
    }
}

#[cold]
fn insert(
    h: u64,
    frames: &[u64],
    snap: &Snapshot,
    define_unknown: bool,
) -> Result<u32, UnknownFrames> {
    let mut located = [(0u32, 0u64); crate::config::MAX_DEPTH_LIMIT];
    let n = frames.len().min(located.len());
    for (dst, &f) in located.iter_mut().zip(&frames[..n]) {
        *dst = snap.locate(f);
    }
    if !define_unknown && located[..n].iter().any(|&(m, _)| m == 0) {
        return Err(UnknownFrames);
    }
    let _g = INSERT.lock();
    let i = match probe(h) {
        Ok(id) => return Ok(id),
        Err(Some(i)) => i,
        Err(None) => return Ok(0),
    };
    if NEXT_ID.load(Ordering::Relaxed) >= MAX_STACKS {
        return Ok(0);
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    output::META.lock().with(|b| b.stack(id, &located[..n]));
    let s = slot(i);
    s.id.store(id, Ordering::Relaxed);
    s.hash.store(h, Ordering::Release);
    Ok(id)
}
