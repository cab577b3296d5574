//! Scan chunks: the exit scan's ScanBegin, ScanRoot, ScanBlock, ScanEnd.

use super::*;
use crate::varint::{unzigzag, AddrReader, Cursor};

/// The running state of one Scan chunk's decoding (block addresses are delta-coded).
pub(crate) struct ScanDecoder {
    addrs: AddrReader,
}

impl ScanDecoder {
    pub(crate) fn new(version: u32) -> ScanDecoder {
        ScanDecoder {
            addrs: AddrReader::new(version),
        }
    }

    /// The next record of the chunk.
    pub(crate) fn decode_scan(&mut self, c: &mut Cursor) -> Option<ScanRecord> {
        match c.u8()? {
            tag::SCAN_BEGIN => read_scan_begin(c),
            tag::SCAN_ROOT => read_scan_root(c),
            tag::SCAN_BLOCK => self.read_scan_block(c),
            tag::SCAN_END => read_scan_end(c),
            tag::SCAN_HOLDER => read_scan_holder(c, false),
            tag::SCAN_HOLDER_SOURCE => read_scan_holder(c, true),
            _ => None,
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// Start of the exit scan: what ended the process (`trigger`, `code` as in the End
    /// record), the number of blocks that follow, the thread that ran it, how many other
    /// threads were stopped and how many could not be (their stacks are then read whole),
    /// and flags (bit 0: glibc's and libstdc++'s freeres ran first).
    #[allow(clippy::too_many_arguments)]
    pub fn scan_begin(
        &mut self,
        ts: u64,
        trigger: ExitKind,
        code: i32,
        blocks: u64,
        tid: u32,
        stopped: u32,
        unstoppable: u32,
        flags: u64,
    ) -> Result<(), WriteError> {
        if self.stream_room() < 2 + 8 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_BEGIN);
        self.records += 1;
        self.put(ts);
        self.put_u8(trigger as u8);
        self.put(varint::zigzag(code as i64));
        self.put(blocks);
        self.put(tid as u64);
        self.put(stopped as u64);
        self.put(unstoppable as u64);
        self.put(flags);
        Ok(())
    }
}

fn read_scan_begin(c: &mut Cursor) -> Option<ScanRecord> {
    Some(ScanRecord::Begin {
        ts: c.u64()?,
        trigger: ExitKind::from_u8(c.u8()?)?,
        code: unzigzag(c.u64()?) as i32,
        blocks: c.u64()?,
        tid: c.u32()?,
        stopped: c.u32()?,
        unstoppable: c.u32()?,
        flags: c.u64()?,
    })
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// Root region `id`: `[start, end)` of kind `kind`, of thread `tid` (stacks,
    /// registers) or module `module` (module data), with the mapping's name.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_root(
        &mut self,
        id: u32,
        kind: RootKind,
        tid: u32,
        module: u32,
        start: u64,
        end: u64,
        name: &[u8],
    ) -> Result<(), WriteError> {
        let name = &name[..name.len().min(4096)];
        if self.stream_room() < 2 + 6 * varint::MAX_LEN + name.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_ROOT);
        self.records += 1;
        self.put(id as u64);
        self.put_u8(kind as u8);
        self.put(tid as u64);
        self.put(module as u64);
        self.put(start);
        self.put(end.wrapping_sub(start));
        self.put_raw_bytes(name);
        Ok(())
    }
}

fn read_scan_root(c: &mut Cursor) -> Option<ScanRecord> {
    let id = c.u32()?;
    let kind = RootKind::from_u8(c.u8()?)?;
    let tid = c.u32()?;
    let module = c.u32()?;
    let start = c.u64()?;
    let end = start.checked_add(c.u64()?)?;
    Some(ScanRecord::Root {
        id,
        kind,
        tid,
        module,
        start,
        end,
        name: c.string()?,
    })
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// One block, in ascending address order (the address is delta-coded).
    pub fn scan_block(
        &mut self,
        addr: u64,
        size: u64,
        state: BlockState,
        heuristic: Option<Heuristic>,
        internal: bool,
        link: BlockLink,
    ) -> Result<(), WriteError> {
        if self.stream_room() < 2 + 5 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_BLOCK);
        self.records += 1;
        self.put_addr(addr);
        self.put(size);
        let flags = state as u8 | heuristic.map_or(0, |h| h as u8) << 2 | (internal as u8) << 7;
        self.put_u8(flags);
        match link {
            BlockLink::None => self.put(0),
            BlockLink::Block(i) => self.put((i as u64 + 1) << 1),
            BlockLink::Root { root, addr } => {
                self.put((root as u64) << 1 | 1);
                self.put(addr);
            }
        }
        Ok(())
    }
}

impl ScanDecoder {
    fn read_scan_block(&mut self, c: &mut Cursor) -> Option<ScanRecord> {
        let addr = self.addrs.read(c)?;
        let size = c.u64()?;
        let flags = c.u8()?;
        let l = c.u64()?;
        let link = if l == 0 {
            BlockLink::None
        } else if l & 1 == 0 {
            BlockLink::Block(u32::try_from((l >> 1) - 1).ok()?)
        } else {
            BlockLink::Root {
                root: u32::try_from(l >> 1).ok()?,
                addr: c.u64()?,
            }
        };
        Some(ScanRecord::Block(ScanBlock {
            addr,
            size,
            state: BlockState::from_u8(flags),
            heuristic: Heuristic::from_u8((flags >> 2) & 7),
            internal: flags & 0x80 != 0,
            link,
        }))
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// End of the scan, with the time it took.
    pub fn scan_end(&mut self, ts: u64, blocks: u64) -> Result<(), WriteError> {
        if self.stream_room() < 1 + 2 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_END);
        self.records += 1;
        self.put(ts);
        self.put(blocks);
        Ok(())
    }
}

fn read_scan_end(c: &mut Cursor) -> Option<ScanRecord> {
    Some(ScanRecord::End {
        ts: c.u64()?,
        blocks: c.u64()?,
    })
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A holder: `bytes` in `blocks` reachable only through the root `name` (a data
    /// symbol of `module`, a thread, a mapping) of kind `kind` (thread `tid`); `source`
    /// is where a global is declared (`file:line`, empty when unknown). Written with tag
    /// [`tag::SCAN_HOLDER_SOURCE`].
    #[allow(clippy::too_many_arguments)]
    pub fn scan_holder(
        &mut self,
        id: u32,
        kind: RootKind,
        tid: u32,
        bytes: u64,
        blocks: u64,
        name: &[u8],
        module: &[u8],
        source: &[u8],
    ) -> Result<(), WriteError> {
        let name = &name[..name.len().min(4096)];
        let module = &module[..module.len().min(4096)];
        let source = &source[..source.len().min(4096)];
        if self.stream_room() < 2 + 8 * varint::MAX_LEN + name.len() + module.len() + source.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::SCAN_HOLDER_SOURCE);
        self.records += 1;
        self.put(id as u64);
        self.put_u8(kind as u8);
        self.put(tid as u64);
        self.put(bytes);
        self.put(blocks);
        self.put_raw_bytes(name);
        self.put_raw_bytes(module);
        self.put_raw_bytes(source);
        Ok(())
    }
}

/// A ScanHolder record; `with_source`: tag 45, whose last field is the source.
fn read_scan_holder(c: &mut Cursor, with_source: bool) -> Option<ScanRecord> {
    Some(ScanRecord::Holder {
        id: c.u32()?,
        kind: RootKind::from_u8(c.u8()?)?,
        tid: c.u32()?,
        bytes: c.u64()?,
        blocks: c.u64()?,
        name: c.string()?,
        module: c.string()?,
        source: if with_source {
            c.string()?
        } else {
            String::new()
        },
    })
}
