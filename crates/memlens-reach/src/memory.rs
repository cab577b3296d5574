//! How the marker reads memory: root memory through a [`Reader`] (never faulting, with
//! [`Cursor`] to walk a range over its holes), block words through a [`BlockMemory`].

/// Size of the pages a [`Cursor`] skips after a short read.
pub const PAGE: u64 = 4096;

/// Reads memory into a word buffer, returning how many words it read from the start of
/// the range (a short count: the word after them could not be read).
pub trait Reader {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> usize;
}

/// The words of the heap's blocks. Only called for blocks the [`crate::Heap`] marks
/// readable (and, for [`BlockMemory::word`], the chunk-header word just before one).
pub trait BlockMemory {
    /// The `n` aligned words from `addr` (8-byte aligned), all inside one readable block.
    fn words(&self, addr: u64, n: usize) -> &[u64];
    /// The word at `addr` (8-byte aligned): a readable block's chunk header.
    fn word(&self, addr: u64) -> u64;
}

/// The current process's memory, read in place (the recorder's exit scan: the blocks are
/// live heap memory of this process and every other thread is stopped).
pub struct Direct(());

impl Direct {
    /// # Safety
    /// Every block the heap it is used with marks readable is live, mapped and stays so
    /// (with the 16 bytes of chunk header before it) while the marker runs, and its
    /// address is 8-byte aligned.
    pub unsafe fn new() -> Direct {
        Direct(())
    }
}

impl BlockMemory for Direct {
    #[inline]
    fn words(&self, addr: u64, n: usize) -> &[u64] {
        // SAFETY: per `Direct::new`'s contract, [addr, addr + 8n) is inside a live,
        // mapped, aligned block that nothing unmaps while the marker runs.
        unsafe { core::slice::from_raw_parts(addr as *const u64, n) }
    }
    #[inline]
    fn word(&self, addr: u64) -> u64 {
        // SAFETY: the chunk header before a live block is mapped (`Direct::new`).
        unsafe { core::ptr::read(addr as *const u64) }
    }
}

/// Walks the aligned words of `[lo, hi)` piece by piece, skipping unreadable pages: after
/// a short read, reading resumes at the next page.
pub struct Cursor {
    at: u64,
    hi: u64,
}

impl Cursor {
    pub fn new(lo: u64, hi: u64) -> Cursor {
        Cursor {
            at: (lo + 7) & !7,
            hi,
        }
    }

    /// Read the next piece into `buf`: the address of its first word and how many words
    /// were read (at least one); `None` when the range is done.
    pub fn next(&mut self, reader: &mut dyn Reader, buf: &mut [u64]) -> Option<(u64, usize)> {
        while self.at + 8 <= self.hi {
            let at = self.at;
            let want = (((self.hi - at) / 8) as usize).min(buf.len());
            let got = reader.read(at, &mut buf[..want]);
            if got == want {
                self.at += 8 * want as u64;
            } else {
                // The word after the ones read is unreadable: skip the rest of its page.
                let bad = at + 8 * got as u64;
                self.at = (bad & !(PAGE - 1)) + PAGE;
            }
            if got > 0 {
                return Some((at, got));
            }
        }
        None
    }
}
