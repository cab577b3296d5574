//! Taking a snapshot: stop the process, walk its heap, copy the heap and the roots, let
//! it run on. Everything after that (marking, holders) works on the copies.

use super::glibc::{self, Copied, Region, Walk};
use super::ptrace::{self, Thread};
use super::recorder::{self, Recorded};
use super::remote::{self, Mapping, Remote};
use super::roots::{self, Roots};
use memlens_reach::ranges::StackLayout;
use memlens_reach::Reader;
use std::collections::HashMap;
use std::time::Duration;

/// The process as it was at the snapshot.
pub struct Taken {
    pub pid: u32,
    pub threads: Vec<Thread>,
    pub maps: Vec<Mapping>,
    pub walk: Walk,
    pub roots: Roots,
    /// The roots' memory, copied while the process was stopped.
    pub root_memory: RootMemory,
    /// How long the process was stopped.
    pub pause: Duration,
    /// The recorder's live table, when the process runs under it.
    pub recorded: Option<HashMap<u64, Recorded>>,
    /// Blocks of the recorder's own thread its table does not hold (see
    /// [`recorder::own_thread_blocks`]): the recorder's, left out like its other blocks.
    pub recorder_blocks: Vec<u64>,
    /// Wall-clock time of the stop, ns since the Unix epoch.
    pub unix_ns: u64,
}

/// Copies of root memory (holes where pages could not be read); addresses outside them
/// are read from the live process (the marker's vtable check looks into read-only file
/// mappings, which do not change).
pub struct RootMemory {
    copies: Copied,
    live: Remote,
}

impl RootMemory {
    /// Copies only (the live process: this one, never read in the tests' ranges).
    #[cfg(test)]
    pub fn for_tests(copies: Copied) -> RootMemory {
        RootMemory {
            copies,
            live: Remote::new(std::process::id()),
        }
    }
}

impl Reader for RootMemory {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> usize {
        let regions = &self.copies.regions;
        let mut i = regions.partition_point(|r| r.start <= addr);
        if i == 0 || addr >= regions[i - 1].end() {
            if i < regions.len() && regions[i].start < addr + 8 * out.len() as u64 {
                // Starts in a hole of the copies.
                return 0;
            }
            return self.live.read_words(addr, out);
        }
        i -= 1;
        let mut done = 0usize;
        let mut at = addr;
        while done < out.len()
            && i < regions.len()
            && regions[i].start <= at
            && at < regions[i].end()
        {
            let r = &regions[i];
            let k = ((at - r.start) / 8) as usize;
            let n = (r.words.len() - k).min(out.len() - done);
            out[done..done + n].copy_from_slice(&r.words[k..k + n]);
            done += n;
            at += 8 * n as u64;
            i += 1;
        }
        done
    }
}

/// Copy `[lo, hi)` as readable pieces.
fn copy_range(mem: &mut Remote, lo: u64, hi: u64, out: &mut Vec<Region>) {
    let mut buf = vec![0u64; ((hi - lo) / 8) as usize];
    let mut cur = memlens_reach::Cursor::new(lo, hi);
    let mut pieces = Vec::new();
    // The cursor reads into `buf` from its start; keep each piece.
    while let Some((at, n)) = cur.next(mem, &mut buf) {
        pieces.push(Region {
            start: at,
            words: buf[..n].to_vec(),
        });
    }
    out.extend(pieces);
}

/// The thread-stack layout of the target's glibc, for the dead-stack rule. It is read
/// from the target's ld.so (`_rtld_global_ro`'s static TLS size and alignment, at the
/// offsets this process's own `_dl_get_tls_static_info` reads them from) when the target
/// maps the same ld.so file as memlens; otherwise the rule is off (as in the exit scan
/// under a glibc that does not export it).
pub fn stack_layout(mem: &mut Remote, maps: &[Mapping]) -> StackLayout {
    own_ld_offsets()
        .and_then(|(path, inode, size_off, align_off, tcb)| {
            let m = maps
                .iter()
                .find(|m| m.name == path && m.inode == inode && m.offset == 0)?;
            let static_size = mem.word(m.start + size_off)?;
            let align = mem.word(m.start + align_off)?;
            (align.is_power_of_two() && static_size > tcb).then_some(StackLayout {
                static_size,
                align,
                tcb,
            })
        })
        .unwrap_or_default()
}

/// In this process: ld.so's path and inode, and where (from its first mapping) the static
/// TLS size and alignment live, with glibc's `struct pthread` size.
fn own_ld_offsets() -> Option<(String, u64, u64, u64, u64)> {
    // SAFETY: dlsym with NUL-terminated names; the first is `void
    // _dl_get_tls_static_info(size_t *, size_t *)`, the second a `const uint32_t`
    // (GLIBC_PRIVATE, glibc 2.34 and later). Calling the first has no side effect.
    let (info, tcb) = unsafe {
        let info = libc::dlsym(libc::RTLD_DEFAULT, c"_dl_get_tls_static_info".as_ptr());
        let tcb = libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_sizeof_pthread".as_ptr());
        if info.is_null() || tcb.is_null() {
            return None;
        }
        (info, std::ptr::read(tcb as *const u32) as u64)
    };
    // SAFETY: as above.
    let f: extern "C" fn(*mut usize, *mut usize) = unsafe { std::mem::transmute(info) };
    let (mut size, mut align) = (0usize, 0usize);
    f(&mut size, &mut align);
    // The function's rip-relative loads (`mov disp32(%rip), %reg`): the addresses it
    // reads. Which is which: the one holding `size`, the one holding `align`.
    // SAFETY: the function's first 48 bytes of code are mapped (it is tiny and followed
    // by other code in ld.so's text).
    let code = unsafe { std::slice::from_raw_parts(info as *const u8, 48) };
    let mut addrs = Vec::new();
    for i in 0..code.len().saturating_sub(7) {
        if (code[i] & 0xf8) == 0x48 && code[i + 1] == 0x8b && (code[i + 2] & 0xc7) == 0x05 {
            let disp = i32::from_le_bytes(code[i + 3..i + 7].try_into().ok()?) as i64;
            addrs.push((info as u64 + i as u64 + 7).wrapping_add(disp as u64));
        }
    }
    let own = remote::mappings(std::process::id()).ok()?;
    let read = |a: u64| -> Option<u64> {
        own.iter()
            .find(|m| m.read && a >= m.start && a + 8 <= m.end)?;
        // SAFETY: the address lies in a readable mapping of this process.
        Some(unsafe { std::ptr::read_unaligned(a as *const u64) })
    };
    let size_at = *addrs.iter().find(|&&a| read(a) == Some(size as u64))?;
    let align_at = *addrs
        .iter()
        .find(|&&a| a != size_at && read(a) == Some(align as u64))?;
    let ld = own
        .iter()
        .find(|m| m.name.starts_with('/') && info as u64 >= m.start && (info as u64) < m.end)?;
    let base = own
        .iter()
        .find(|m| m.name == ld.name && m.offset == 0)?
        .start;
    Some((
        ld.name.clone(),
        ld.inode,
        size_at - base,
        align_at - base,
        tcb,
    ))
}

/// How many times a process stopped while one of its threads holds an arena's lock is
/// let run on and stopped again before the snapshot is taken anyway (with a warning).
const SETTLE_TRIES: usize = 200;

/// Stop `pid`, walk and copy its heap and roots, resume it.
pub fn take(pid: u32) -> Result<Taken, String> {
    let mut mem = Remote::new(pid);
    let mut stopped = ptrace::stop(pid)?;
    let mut maps = remote::mappings(pid).map_err(|e| ptrace::describe(pid, &e))?;
    // A thread inside malloc or free holds chunks that are in no list of glibc's and in
    // no variable of the program: resume the process and stop it again until no thread
    // is (each try lets the thread holding the lock run on for the time a stop takes).
    let mut earlier = std::time::Duration::ZERO;
    let mut tries = 1;
    let mut settled = !glibc::arena_locked(&mut mem, &maps);
    while !settled && tries < SETTLE_TRIES {
        earlier += stopped.paused();
        stopped.detach();
        std::thread::yield_now();
        stopped = ptrace::stop(pid)?;
        maps = remote::mappings(pid).map_err(|e| ptrace::describe(pid, &e))?;
        settled = !glibc::arena_locked(&mut mem, &maps);
        tries += 1;
    }
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let syms = recorder::symbols(&maps);
    let own = recorder::recorder_memory(&mut mem, &syms);
    let recorded = recorder::live_table(&mut mem, &syms);
    let mut recorder_blocks = recorder::own_thread_blocks(&mut mem, &syms, &stopped.threads);
    // Thread stacks are never mmapped chunks.
    let mut not_mmapped = own.clone();
    for t in &stopped.threads {
        if let Some(m) = maps.iter().find(|m| t.sp >= m.start && t.sp < m.end) {
            not_mmapped.push((m.start, m.end));
        }
    }
    let tps: Vec<u64> = stopped.threads.iter().map(|t| t.tp).collect();
    let debug = std::env::var_os("MEMLENS_SNAPSHOT_DEBUG").is_some();
    let t0 = stopped.paused();
    let mut walk = glibc::walk(&mut mem, &maps, &tps, &not_mmapped)?;
    if !settled {
        walk.warnings.push(format!(
            "a thread held a malloc arena's lock (it was inside malloc or free) at each of \
             {tries} stops: a block it was handing out or caching may be counted as live, \
             and as lost"
        ));
    }
    recorder_blocks.extend(recorder::loader_blocks(
        &mut mem,
        &syms,
        &maps,
        &walk.blocks,
        &walk.memory,
    ));
    let t1 = stopped.paused();
    let layout = stack_layout(&mut mem, &maps);
    let mut excl = own;
    excl.extend(walk.heap_ranges.iter().copied());
    let roots = roots::find(&mut mem, &maps, &stopped.threads, excl, layout);
    let mut regions = Vec::new();
    for r in &roots.ranges {
        copy_range(&mut mem, r.start, r.end, &mut regions);
    }
    regions.sort_unstable_by_key(|r| r.start);
    if debug {
        eprintln!("snapshot: {tries} stop(s), settled: {settled}");
        eprintln!("snapshot: thread-stack layout {layout:?}");
        eprintln!(
            "snapshot: stopped+maps {t0:?}, walk {:?} ({} heap bytes copied), roots {:?}",
            t1 - t0,
            walk.memory
                .regions
                .iter()
                .map(|r| 8 * r.words.len())
                .sum::<usize>(),
            stopped.paused() - t1
        );
    }
    let threads = stopped.threads.clone();
    // The pauses of every try.
    let pause = earlier + stopped.paused();
    stopped.detach();
    let recorded = recorded.map(|r| r.decode());
    Ok(Taken {
        pid,
        threads,
        maps,
        walk,
        roots,
        root_memory: RootMemory {
            copies: Copied { regions },
            live: Remote::new(pid),
        },
        pause,
        recorded,
        recorder_blocks,
        unix_ns,
    })
}
