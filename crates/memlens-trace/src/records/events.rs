//! Events chunks: Alloc, Free, Realloc, Rss, HeapError, Region, ThreadMark, Assert.
//!
//! Format 5 writes each record's fields into four columns (lib.rs, `ChunkBuilder`);
//! formats 1-4, which are still read, wrote them one after the other. The decoders read
//! both through [`EventFields`].

use super::*;
use crate::column::{ADDR, FIELD, TAG};
use crate::ring::{Ring, SerialRing};
use crate::varint::{AddrReader, Cursor};

/// Where an Events chunk's fields come from, in the order a record's decoder asks.
pub(crate) trait EventFields {
    /// Whether every record was read.
    fn done(&self) -> bool;
    fn tag(&mut self) -> Option<u8>;
    fn ts_delta(&mut self) -> Option<u64>;
    /// A released address (Free, Realloc's old block, HeapError); `remember`: it is a
    /// release an allocation may take back (format 5's ring).
    fn released(&mut self, remember: bool) -> Option<u64>;
    /// An allocated address (Alloc, Realloc's new block).
    fn allocated(&mut self) -> Option<u64>;
    /// A Realloc's addresses present: bit 0 the old, bit 1 the new (format 5 leaves a
    /// null one out; formats 1-4 code both).
    fn realloc_present(&mut self) -> Option<u8>;
    fn u8(&mut self) -> Option<u8>;
    fn u64(&mut self) -> Option<u64>;
    fn u32(&mut self) -> Option<u32>;
    /// A Serial record's field (format 7): the next allocation's number. `None` where
    /// the format has no such record.
    fn serial_record(&mut self) -> Option<()> {
        None
    }
    /// The numbers of the record just read (format 7), taken (0 where none).
    fn take_numbers(&mut self) -> Numbers {
        Numbers::default()
    }
}

/// A decoded event's block numbers (format 7): the number its allocation took, and the
/// number of the block its release named; 0 for none. A release named by its number
/// alone is decoded with address 0, which the event stream fills in from the number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Numbers {
    pub(crate) allocated: u64,
    pub(crate) released: u64,
    /// An allocation at the address of a block released by number in the same chunk,
    /// found in the ring of releases: that block's number (the event stream finds the
    /// address).
    pub(crate) reused: u64,
}

/// Formats 1-4: one stream, one address predictor.
pub(crate) struct StreamFields<'a> {
    c: Cursor<'a>,
    addrs: AddrReader,
}

impl<'a> StreamFields<'a> {
    pub(crate) fn new(raw: &'a [u8], version: u32) -> Self {
        StreamFields {
            c: Cursor::new(raw),
            addrs: AddrReader::new(version),
        }
    }
}

impl EventFields for StreamFields<'_> {
    fn done(&self) -> bool {
        self.c.is_empty()
    }
    fn tag(&mut self) -> Option<u8> {
        self.c.u8()
    }
    fn ts_delta(&mut self) -> Option<u64> {
        self.c.u64()
    }
    fn released(&mut self, _remember: bool) -> Option<u64> {
        self.addrs.read(&mut self.c)
    }
    fn allocated(&mut self) -> Option<u64> {
        self.addrs.read(&mut self.c)
    }
    fn realloc_present(&mut self) -> Option<u8> {
        Some(3)
    }
    fn u8(&mut self) -> Option<u8> {
        self.c.u8()
    }
    fn u64(&mut self) -> Option<u64> {
        self.c.u64()
    }
    fn u32(&mut self) -> Option<u32> {
        self.c.u32()
    }
}

/// Format 5: four columns; released and allocated addresses each coded against their
/// previous one, or by their distance in the other kind's ring of recent addresses.
/// Format 7: a release may name its block by number instead (lib.rs, `col_released`).
pub(crate) struct ColumnFields<'a> {
    cols: [Cursor<'a>; COLUMNS],
    /// Format 6: time deltas are in units of `1 << time_shift` ns.
    time_shift: u8,
    /// Format 7: allocations are numbered, releases may name a number.
    numbered: bool,
    last_released: u64,
    last_allocated: u64,
    released: Ring,
    allocated: Ring,
    allocated_serials: SerialRing,
    /// The numbers of the releases in `released` known by number only (address 0).
    released_serials: SerialRing,
    next_serial: u64,
    last_freed_serial: u64,
    numbers: Numbers,
}

impl<'a> ColumnFields<'a> {
    /// The columns of `raw` (format 6: the time unit's shift first; then their lengths);
    /// `None` if they do not fit it.
    pub(crate) fn new(raw: &'a [u8], version: u32) -> Option<Self> {
        let mut c = Cursor::new(raw);
        let time_shift = if version >= super::TIME_UNIT_VERSION {
            c.u8().filter(|&s| s <= crate::MAX_TIME_SHIFT)?
        } else {
            0
        };
        let mut lens = [0usize; COLUMNS - 1];
        for l in lens.iter_mut() {
            *l = usize::try_from(c.u64()?).ok()?;
        }
        let mut rest = &raw[c.pos()..];
        let mut cols: [Cursor<'a>; COLUMNS] = core::array::from_fn(|_| Cursor::new(&[]));
        for (i, &l) in lens.iter().enumerate() {
            if l > rest.len() {
                return None;
            }
            let (col, tail) = rest.split_at(l);
            cols[i] = Cursor::new(col);
            rest = tail;
        }
        cols[COLUMNS - 1] = Cursor::new(rest);
        Some(ColumnFields {
            cols,
            time_shift,
            numbered: version >= super::SERIAL_VERSION,
            last_released: 0,
            last_allocated: 0,
            released: Ring::new(),
            allocated: Ring::new(),
            allocated_serials: SerialRing::new(),
            released_serials: SerialRing::new(),
            next_serial: 0,
            last_freed_serial: 0,
            numbers: Numbers::default(),
        })
    }

    /// Whether every column was read to its end (after the last tag).
    pub(crate) fn all_read(&self) -> bool {
        self.cols.iter().all(|c| c.is_empty())
    }

    /// Format 5-6's code of a released address past the ring.
    fn released_by_address(&mut self, code: u64) -> Option<u64> {
        varint::addr_from_delta(self.last_released, code, &mut self.cols[ADDR])
    }
}

impl EventFields for ColumnFields<'_> {
    fn done(&self) -> bool {
        self.cols[TAG].is_empty()
    }
    fn tag(&mut self) -> Option<u8> {
        self.cols[TAG].u8()
    }
    fn ts_delta(&mut self) -> Option<u64> {
        let d = self.cols[crate::column::TIME].u64()?;
        // A delta whose unit would carry it past 64 bits is damage.
        (d.leading_zeros() >= u32::from(self.time_shift)).then(|| d << self.time_shift)
    }
    fn released(&mut self, remember: bool) -> Option<u64> {
        let v = self.cols[ADDR].u64()?;
        if !self.numbered {
            let addr = match v.checked_sub(RING_LEN as u64) {
                None => self.allocated.get(v),
                Some(code) => self.released_by_address(code)?,
            };
            self.last_released = addr;
            if remember {
                self.released.push(addr);
            }
            return Some(addr);
        }
        // Format 7: the address, and the number when the block has one (address 0 when
        // only the number is known here).
        let (addr, serial) = match v.checked_sub(RING_LEN as u64) {
            None => (
                self.allocated.get(v),
                self.allocated_serials.get(&self.allocated, v),
            ),
            Some(code) if code & 1 == 0 => {
                let d = varint::unzigzag(code >> 1);
                let serial = self.last_freed_serial.checked_add_signed(d)?;
                if serial == 0 {
                    return None;
                }
                self.last_freed_serial = serial;
                (0, serial)
            }
            Some(code) => (self.released_by_address(code >> 1)?, 0),
        };
        self.numbers.released = serial;
        if addr != 0 {
            self.last_released = addr;
        }
        if remember {
            self.released_serials
                .put(&self.released, if addr == 0 { serial } else { 0 });
            self.released.push(addr);
        }
        Some(addr)
    }
    fn allocated(&mut self) -> Option<u64> {
        let v = self.cols[ADDR].u64()?;
        let mut unknown = false;
        let addr = match v.checked_sub(RING_LEN as u64) {
            None => {
                let reused = if self.numbered {
                    self.released_serials.get(&self.released, v)
                } else {
                    0
                };
                if reused != 0 {
                    // A block released by number: its address is the event stream's.
                    self.numbers.reused = reused;
                    unknown = true;
                    0
                } else {
                    self.released.get(v)
                }
            }
            Some(code) => varint::addr_from_delta(self.last_allocated, code, &mut self.cols[ADDR])?,
        };
        if !unknown {
            self.last_allocated = addr;
        }
        if self.numbered {
            let serial = self.next_serial;
            if serial != 0 {
                self.next_serial = serial.checked_add(1)?;
            } else if unknown {
                // The writer names a release's block by address to a block without one.
                return None;
            }
            self.numbers.allocated = serial;
            self.allocated_serials.put(&self.allocated, serial);
        }
        self.allocated.push(addr);
        Some(addr)
    }
    fn realloc_present(&mut self) -> Option<u8> {
        let p = self.cols[FIELD].u8()?;
        (p <= 3).then_some(p)
    }
    fn u8(&mut self) -> Option<u8> {
        self.cols[FIELD].u8()
    }
    fn u64(&mut self) -> Option<u64> {
        self.cols[FIELD].u64()
    }
    fn u32(&mut self) -> Option<u32> {
        self.cols[FIELD].u32()
    }
    fn serial_record(&mut self) -> Option<()> {
        if !self.numbered {
            return None;
        }
        self.next_serial = self.cols[FIELD].u64()?;
        Some(())
    }
    fn take_numbers(&mut self) -> Numbers {
        core::mem::take(&mut self.numbers)
    }
}

/// Decode all events of one Events chunk (`raw`, its decompressed payload) of a trace in
/// format `version`, written by thread `thread`, starting at `first_ts`; from format 7,
/// each event's [`Numbers`] into `numbers`, index for index.
pub(crate) fn decode_events(
    raw: &[u8],
    version: u32,
    thread: u32,
    first_ts: u64,
    out: &mut Vec<Event>,
    numbers: &mut Vec<Numbers>,
) -> Option<()> {
    let mut d = EventDecoder::new(thread, first_ts);
    if version >= COLUMNS_VERSION {
        let mut f = ColumnFields::new(raw, version)?;
        let numbered = version >= super::SERIAL_VERSION;
        while !f.done() {
            out.push(d.decode_event(&mut f)?);
            if numbered {
                numbers.push(f.take_numbers());
            }
        }
        // Every column ends with the last record.
        f.all_read().then_some(())
    } else {
        let mut f = StreamFields::new(raw, version);
        while !f.done() {
            out.push(d.decode_event(&mut f)?);
        }
        Some(())
    }
}

/// The running state of one Events chunk's decoding: the previous record's time (delta
/// coded) and the chunk's thread.
pub(crate) struct EventDecoder {
    ts: u64,
    thread: u32,
}

impl EventDecoder {
    pub(crate) fn new(thread: u32, first_ts: u64) -> EventDecoder {
        EventDecoder {
            ts: first_ts,
            thread,
        }
    }

    fn ts(&mut self, f: &mut impl EventFields) -> Option<u64> {
        self.ts = self.ts.checked_add(f.ts_delta()?)?;
        Some(self.ts)
    }

    /// The next event of the chunk.
    pub(crate) fn decode_event(&mut self, f: &mut impl EventFields) -> Option<Event> {
        let mut t = f.tag()?;
        // Format 7: the next allocation's number, before its record.
        if t == tag::SERIAL {
            f.serial_record()?;
            t = f.tag()?;
            if !matches!(t & tag::KIND_MASK, tag::ALLOC_FUNC | tag::REALLOC_FUNC) {
                return None;
            }
        }
        // Version 1 writes the function in a byte of its own, later versions in the tag.
        let (kind, func) = match t {
            tag::ALLOC | tag::REALLOC => (t, AllocFunc::from_u8(f.u8()?)?),
            tag::FREE => (tag::FREE_STACK_FUNC, AllocFunc::from_u8(f.u8()?)?),
            0x80.. => (t & tag::KIND_MASK, AllocFunc::from_u8(t & !tag::KIND_MASK)?),
            _ => (t, AllocFunc::Malloc),
        };
        match kind {
            tag::ALLOC | tag::ALLOC_FUNC => self.read_alloc(f, func),
            tag::FREE_FUNC => self.read_free(f, func, false),
            tag::FREE_STACK_FUNC => self.read_free(f, func, true),
            tag::REALLOC | tag::REALLOC_FUNC => self.read_realloc(f, func),
            tag::RSS => self.read_rss(f),
            tag::HEAP_ERROR => self.read_heap_error(f),
            tag::REGION => self.read_region(f),
            tag::THREAD_MARK => self.read_thread_mark(f),
            tag::ASSERT => self.read_assert(f),
            _ => None,
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// Any event, as decoded (its `thread` is the chunk's): the inverse of the decoder,
    /// for tools and tests that write events they read or made.
    pub fn event(&mut self, e: &Event) -> Result<(), WriteError> {
        match *e {
            Event::Alloc {
                ts,
                func,
                addr,
                size,
                stack,
                ..
            } => self.alloc(ts, func, addr, size, stack),
            Event::Free {
                ts,
                func,
                addr,
                stack,
                ..
            } => self.free(ts, func, addr, stack),
            Event::Realloc {
                ts,
                func,
                old,
                new,
                size,
                stack,
                ..
            } => self.realloc(ts, func, old, new, size, stack),
            Event::Rss { ts, bytes } => self.rss(ts, bytes),
            Event::HeapError {
                ts,
                func,
                kind,
                addr,
                alloc_func,
                stack,
                ..
            } => self.heap_error(ts, func, kind, addr, alloc_func, stack),
            Event::Region { ts, enter, id, .. } => self.region(ts, enter, id),
            Event::ThreadMark { ts, realtime, .. } => self.thread_mark(ts, realtime),
            Event::Assert {
                ts,
                kind,
                mark,
                limit,
                label,
                stack,
                ..
            } => self.assert(ts, kind, mark, limit, label, stack),
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
        self.alloc_numbered(ts, func, addr, size, stack, 0)
    }

    /// [`ChunkBuilder::alloc`] of a block numbered `serial` (0: no number): a later
    /// release of the block may name it by this number ([`ChunkBuilder::free_numbered`]).
    /// Numbers are the writer's to choose, unique among the trace's live blocks; a
    /// thread's next number is usually its previous one plus one, which costs nothing.
    #[inline]
    pub fn alloc_numbered(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        size: u64,
        stack: u32,
        serial: u64,
    ) -> Result<(), WriteError> {
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        self.col_serial(serial);
        self.col_u8(TAG, tag::ALLOC_FUNC | func as u8);
        self.col_ts(ts);
        self.col_allocated(addr, serial);
        self.col_put(FIELD, size);
        self.col_put(FIELD, stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_alloc(&mut self, f: &mut impl EventFields, func: AllocFunc) -> Option<Event> {
        let ts = self.ts(f)?;
        let addr = f.allocated()?;
        Some(Event::Alloc {
            ts,
            thread: self.thread,
            func,
            addr,
            size: f.u64()?,
            stack: f.u32()?,
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
        self.free_numbered(ts, func, addr, stack, 0)
    }

    /// [`ChunkBuilder::free`] of the block whose allocation's record numbered it `serial`
    /// in this trace (0: not numbered, or not known to be).
    #[inline]
    pub fn free_numbered(
        &mut self,
        ts: u64,
        func: AllocFunc,
        addr: u64,
        stack: u32,
        serial: u64,
    ) -> Result<(), WriteError> {
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        if stack == 0 {
            self.col_u8(TAG, tag::FREE_FUNC | func as u8);
            self.col_ts(ts);
            self.col_released(addr, serial, true);
        } else {
            self.col_u8(TAG, tag::FREE_STACK_FUNC | func as u8);
            self.col_ts(ts);
            self.col_released(addr, serial, true);
            self.col_put(FIELD, stack as u64);
        }
        Ok(())
    }
}

impl EventDecoder {
    fn read_free(
        &mut self,
        f: &mut impl EventFields,
        func: AllocFunc,
        has_stack: bool,
    ) -> Option<Event> {
        let ts = self.ts(f)?;
        let addr = f.released(true)?;
        let stack = if has_stack { f.u32()? } else { 0 };
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
        self.realloc_numbered(ts, func, old, new, size, stack, [0, 0])
    }

    /// [`ChunkBuilder::realloc`] with block numbers: `serials[0]` the old block's (as
    /// [`ChunkBuilder::free_numbered`]'s), `serials[1]` the new one's (as
    /// [`ChunkBuilder::alloc_numbered`]'s); 0 for none.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn realloc_numbered(
        &mut self,
        ts: u64,
        func: AllocFunc,
        old: u64,
        new: u64,
        size: u64,
        stack: u32,
        serials: [u64; 2],
    ) -> Result<(), WriteError> {
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        if new != 0 {
            self.col_serial(serials[1]);
        }
        self.col_u8(TAG, tag::REALLOC_FUNC | func as u8);
        self.col_ts(ts);
        self.col_u8(FIELD, (old != 0) as u8 | ((new != 0) as u8) << 1);
        if old != 0 {
            self.col_released(old, serials[0], true);
        }
        if new != 0 {
            self.col_allocated(new, serials[1]);
        }
        self.col_put(FIELD, size);
        self.col_put(FIELD, stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_realloc(&mut self, f: &mut impl EventFields, func: AllocFunc) -> Option<Event> {
        let ts = self.ts(f)?;
        let present = f.realloc_present()?;
        let old = if present & 1 != 0 {
            f.released(true)?
        } else {
            0
        };
        let new = if present & 2 != 0 { f.allocated()? } else { 0 };
        Some(Event::Realloc {
            ts,
            thread: self.thread,
            func,
            old,
            new,
            size: f.u64()?,
            stack: f.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A sample of the process's resident set size.
    pub fn rss(&mut self, ts: u64, rss_bytes: u64) -> Result<(), WriteError> {
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        self.col_u8(TAG, tag::RSS);
        self.col_ts(ts);
        self.col_put(FIELD, rss_bytes);
        Ok(())
    }
}

impl EventDecoder {
    fn read_rss(&mut self, f: &mut impl EventFields) -> Option<Event> {
        let ts = self.ts(f)?;
        Some(Event::Rss {
            ts,
            bytes: f.u64()?,
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
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        self.col_u8(TAG, tag::HEAP_ERROR);
        self.col_u8(FIELD, func as u8);
        self.col_ts(ts);
        self.col_u8(FIELD, kind as u8);
        self.col_u8(FIELD, alloc_func as u8);
        self.col_released(addr, 0, false);
        self.col_put(FIELD, stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_heap_error(&mut self, f: &mut impl EventFields) -> Option<Event> {
        let func = AllocFunc::from_u8(f.u8()?)?;
        let ts = self.ts(f)?;
        let kind = HeapErrorKind::from_u8(f.u8()?)?;
        let alloc_func = AllocFunc::from_u8(f.u8()?)?;
        let addr = f.released(false)?;
        Some(Event::HeapError {
            ts,
            thread: self.thread,
            func,
            kind,
            addr,
            alloc_func,
            stack: f.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// The thread entered (`enter`) or left region `id` (a Meta RegionName).
    pub fn region(&mut self, ts: u64, enter: bool, id: u32) -> Result<(), WriteError> {
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        self.col_u8(TAG, tag::REGION);
        self.col_ts(ts);
        self.col_u8(FIELD, if enter { 1 } else { 2 });
        self.col_put(FIELD, id as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_region(&mut self, f: &mut impl EventFields) -> Option<Event> {
        let ts = self.ts(f)?;
        let enter = match f.u8()? {
            1 => true,
            2 => false,
            _ => return None,
        };
        Some(Event::Region {
            ts,
            thread: self.thread,
            enter,
            id: f.u32()?,
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// The thread marked itself real-time (`realtime`), or no longer.
    pub fn thread_mark(&mut self, ts: u64, realtime: bool) -> Result<(), WriteError> {
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        self.col_u8(TAG, tag::THREAD_MARK);
        self.col_ts(ts);
        self.col_u8(FIELD, if realtime { 1 } else { 2 });
        Ok(())
    }
}

impl EventDecoder {
    fn read_thread_mark(&mut self, f: &mut impl EventFields) -> Option<Event> {
        let ts = self.ts(f)?;
        let realtime = match f.u8()? {
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
        if !self.event_fits() {
            return Err(WriteError::NoSpace);
        }
        self.col_u8(TAG, tag::ASSERT);
        self.col_ts(ts);
        self.col_u8(FIELD, kind as u8);
        self.col_put(FIELD, mark);
        self.col_put(FIELD, limit);
        self.col_put(FIELD, label as u64);
        self.col_put(FIELD, stack as u64);
        Ok(())
    }
}

impl EventDecoder {
    fn read_assert(&mut self, f: &mut impl EventFields) -> Option<Event> {
        let ts = self.ts(f)?;
        Some(Event::Assert {
            ts,
            thread: self.thread,
            kind: AssertKind::from_u8(f.u8()?)?,
            mark: f.u64()?,
            limit: f.u64()?,
            label: f.u32()?,
            stack: f.u32()?,
        })
    }
}
