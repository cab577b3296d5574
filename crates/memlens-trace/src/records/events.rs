//! Events chunks: Alloc, Free, Realloc, Rss, HeapError, Region, ThreadMark, Assert.

use super::*;
use crate::varint::{AddrReader, Cursor};

/// The running state of one Events chunk's decoding: the previous record's time and
/// address (both are delta-coded), the chunk's thread, the trace's format version.
pub(crate) struct EventDecoder {
    ts: u64,
    addrs: AddrReader,
    thread: u32,
}

impl EventDecoder {
    pub(crate) fn new(version: u32, thread: u32, first_ts: u64) -> EventDecoder {
        EventDecoder {
            ts: first_ts,
            addrs: AddrReader::new(version),
            thread,
        }
    }

    fn ts(&mut self, c: &mut Cursor) -> Option<u64> {
        self.ts = self.ts.checked_add(c.u64()?)?;
        Some(self.ts)
    }

    /// The next event of the chunk.
    pub(crate) fn decode_event(&mut self, c: &mut Cursor) -> Option<Event> {
        let t = c.u8()?;
        // Version 1 writes the function in a byte of its own, version 2 in the tag.
        let (kind, func) = match t {
            tag::ALLOC | tag::REALLOC => (t, AllocFunc::from_u8(c.u8()?)?),
            tag::FREE => (tag::FREE_STACK_FUNC, AllocFunc::from_u8(c.u8()?)?),
            0x80.. => (t & tag::KIND_MASK, AllocFunc::from_u8(t & !tag::KIND_MASK)?),
            _ => (t, AllocFunc::Malloc),
        };
        match kind {
            tag::ALLOC | tag::ALLOC_FUNC => self.read_alloc(c, func),
            tag::FREE_FUNC => self.read_free(c, func, false),
            tag::FREE_STACK_FUNC => self.read_free(c, func, true),
            tag::REALLOC | tag::REALLOC_FUNC => self.read_realloc(c, func),
            tag::RSS => self.read_rss(c),
            tag::HEAP_ERROR => self.read_heap_error(c),
            tag::REGION => self.read_region(c),
            tag::THREAD_MARK => self.read_thread_mark(c),
            tag::ASSERT => self.read_assert(c),
            _ => None,
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A block of `size` bytes at `addr` allocated through `func` with stack `stack`.
    #[inline]
    pub fn alloc(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        size: u64,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::ALLOC_FUNC | func as u8);
        self.put_ts(ts);
        self.put_addr(addr);
        self.put(size);
        self.put(stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_alloc(&mut self, c: &mut Cursor, func: AllocFunc) -> Option<Event> {
        let ts = self.ts(c)?;
        let addr = self.addrs.read(c)?;
        Some(Event::Alloc {
            ts,
            thread: self.thread,
            func,
            addr,
            size: c.u64()?,
            stack: c.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// The block at `addr` released through `func` (free, delete, delete[]) at `stack`.
    /// `stack` is 0 when the release stack was not recorded.
    #[inline]
    pub fn free(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        if stack == 0 {
            self.put_u8(tag::FREE_FUNC | func as u8);
            self.put_ts(ts);
            self.put_addr(addr);
        } else {
            self.put_u8(tag::FREE_STACK_FUNC | func as u8);
            self.put_ts(ts);
            self.put_addr(addr);
            self.put(stack as u64);
        }
        Ok(())
    }
}

impl EventDecoder {
    fn read_free(&mut self, c: &mut Cursor, func: AllocFunc, has_stack: bool) -> Option<Event> {
        let ts = self.ts(c)?;
        let addr = self.addrs.read(c)?;
        let stack = if has_stack { c.u32()? } else { 0 };
        Some(Event::Free {
            ts,
            thread: self.thread,
            func,
            addr,
            stack,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// `realloc(old, size)` returned `new` (0 when it failed and `old` stays allocated).
    #[inline]
    pub fn realloc(
        &mut self,
        ts: u64,
        func: AllocFunc,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::REALLOC_FUNC | func as u8);
        self.put_ts(ts);
        self.put_addr(old);
        self.put_addr(new);
        self.put(size);
        self.put(stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_realloc(&mut self, c: &mut Cursor, func: AllocFunc) -> Option<Event> {
        let ts = self.ts(c)?;
        let old = self.addrs.read(c)?;
        let new = self.addrs.read(c)?;
        Some(Event::Realloc {
            ts,
            thread: self.thread,
            func,
            old,
            new,
            size: c.u64()?,
            stack: c.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A sample of the process's resident set size.
    pub fn rss(&mut self, ts: u64, rss_bytes: u64) -> Result<(), WriteError> {
        if self.remaining() < 2 * varint::MAX_LEN + 1 {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::RSS);
        self.put_ts(ts);
        self.put(rss_bytes);
        Ok(())
    }
}

impl EventDecoder {
    fn read_rss(&mut self, c: &mut Cursor) -> Option<Event> {
        let ts = self.ts(c)?;
        Some(Event::Rss {
            ts,
            bytes: c.u64()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A heap error at `addr`, raised by a call to `func` at `stack`. `alloc_func` is the
    /// block's allocating function for a mismatch, `func` otherwise.
    pub fn heap_error(
        &mut self,
        ts: u64,
        func: AllocFunc,
        kind: HeapErrorKind,
        addr: u64,
        alloc_func: AllocFunc,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < MAX_EVENT_RECORD_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::HEAP_ERROR);
        self.put_u8(func as u8);
        self.put_ts(ts);
        self.put_u8(kind as u8);
        self.put_u8(alloc_func as u8);
        self.put_addr(addr);
        self.put(stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_heap_error(&mut self, c: &mut Cursor) -> Option<Event> {
        let func = AllocFunc::from_u8(c.u8()?)?;
        let ts = self.ts(c)?;
        let kind = HeapErrorKind::from_u8(c.u8()?)?;
        let alloc_func = AllocFunc::from_u8(c.u8()?)?;
        let addr = self.addrs.read(c)?;
        Some(Event::HeapError {
            ts,
            thread: self.thread,
            func,
            kind,
            addr,
            alloc_func,
            stack: c.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// The thread entered (`enter`) or left region `id` (a Meta RegionName).
    pub fn region(&mut self, ts: u64, enter: bool, id: u32) -> Result<(), WriteError> {
        if self.remaining() < 2 + 2 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::REGION);
        self.put_ts(ts);
        self.put_u8(if enter { 1 } else { 2 });
        self.put(id as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_region(&mut self, c: &mut Cursor) -> Option<Event> {
        let ts = self.ts(c)?;
        let enter = match c.u8()? {
            1 => true,
            2 => false,
            _ => return None,
        };
        Some(Event::Region {
            ts,
            thread: self.thread,
            enter,
            id: c.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// The thread marked itself real-time (`realtime`), or no longer.
    pub fn thread_mark(&mut self, ts: u64, realtime: bool) -> Result<(), WriteError> {
        if self.remaining() < 2 + varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::THREAD_MARK);
        self.put_ts(ts);
        self.put_u8(if realtime { 1 } else { 2 });
        Ok(())
    }
}

impl EventDecoder {
    fn read_thread_mark(&mut self, c: &mut Cursor) -> Option<Event> {
        let ts = self.ts(c)?;
        let realtime = match c.u8()? {
            1 => true,
            2 => false,
            _ => return None,
        };
        Some(Event::ThreadMark {
            ts,
            thread: self.thread,
            realtime,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// An assertion of the program (see [`AssertKind`]), labelled by Meta AssertLabel
    /// `label`, made at `stack`.
    pub fn assert(
        &mut self,
        ts: u64,
        kind: AssertKind,
        mark: u64,
        limit: u64,
        label: u32,
        stack: u32,
    ) -> Result<(), WriteError> {
        if self.remaining() < 2 + 5 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::ASSERT);
        self.put_ts(ts);
        self.put_u8(kind as u8);
        self.put(mark);
        self.put(limit);
        self.put(label as u64);
        self.put(stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_assert(&mut self, c: &mut Cursor) -> Option<Event> {
        let ts = self.ts(c)?;
        Some(Event::Assert {
            ts,
            thread: self.thread,
            kind: AssertKind::from_u8(c.u8()?)?,
            mark: c.u64()?,
            limit: c.u64()?,
            label: c.u32()?,
            stack: c.u32()?,
        })
    }
}
