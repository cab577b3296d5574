//! Meta chunks (ModuleLoad, ModuleUnload, Stack, Thread, Notice, RegionName, AssertLabel,
//! RealtimeThread) and the End chunk.

use super::*;
use crate::varint::{unzigzag, Cursor};

/// One definition record, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaRecord {
    ModuleLoad(Module),
    ModuleUnload {
        ts: u64,
        id: u32,
    },
    Stack {
        id: u32,
        frames: Vec<RawFrame>,
    },
    Thread(ThreadInfo),
    Notice(Notice),
    /// The name of region `id` (Events Region records).
    RegionName {
        id: u32,
        name: String,
    },
    /// The label of assertion label `id` (Events Assert records).
    AssertLabel {
        id: u32,
        label: String,
    },
    /// Thread `index` marked itself real-time at least once (Events ThreadMark records).
    RealtimeThread {
        index: u32,
    },
    /// A Python code object used by Python frames of later stacks.
    PyCode(PyCode),
    End(EndRecord),
}

/// The next record of a Meta or End chunk.
pub(crate) fn decode_meta(c: &mut Cursor) -> Option<MetaRecord> {
    match c.u8()? {
        tag::MODULE_LOAD => read_module_load(c),
        tag::MODULE_UNLOAD => read_module_unload(c),
        tag::STACK => read_stack(c),
        tag::THREAD => read_thread(c),
        tag::NOTICE => read_notice(c),
        tag::REGION_NAME => read_name(c).map(|(id, name)| MetaRecord::RegionName { id, name }),
        tag::ASSERT_LABEL => read_name(c).map(|(id, label)| MetaRecord::AssertLabel { id, label }),
        tag::REALTIME_THREAD => Some(MetaRecord::RealtimeThread { index: c.u32()? }),
        tag::PY_CODE => read_py_code(c),
        tag::END => read_end(c),
        _ => None,
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A module mapped into the process. `load_bias` is added to the ELF virtual addresses
    /// to get run-time addresses; `segments` are the PT_LOAD `(vaddr, memsz, flags)`.
    #[allow(clippy::too_many_arguments)]
    pub fn module_load(
        &mut self,
        ts: u64,
        id: u32,
        path: &[u8],
        build_id: &[u8],
        load_bias: u64,
        segments: &[(u64, u64, u32)],
    ) -> Result<(), WriteError> {
        let need = 1 + varint::MAX_LEN * (6 + 3 * segments.len()) + path.len() + build_id.len();
        if self.stream_room() < need {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::MODULE_LOAD);
        self.records += 1;
        self.put(ts);
        self.put(id as u64);
        self.put_raw_bytes(path);
        self.put_raw_bytes(build_id);
        self.put(load_bias);
        self.put(segments.len() as u64);
        for &(vaddr, memsz, flags) in segments {
            self.put(vaddr);
            self.put(memsz);
            self.put(flags as u64);
        }
        Ok(())
    }
}

fn read_module_load(c: &mut Cursor) -> Option<MetaRecord> {
    let ts = c.u64()?;
    let id = c.u32()?;
    let path = c.string()?;
    let build_id = c.bytes()?.to_vec();
    let load_bias = c.u64()?;
    let n = c.u64()?;
    if n > 4096 {
        return None;
    }
    let mut segments = Vec::with_capacity(n as usize);
    for _ in 0..n {
        segments.push((c.u64()?, c.u64()?, c.u32()?));
    }
    Some(MetaRecord::ModuleLoad(Module {
        id,
        path,
        build_id,
        load_bias,
        segments,
        loaded_ns: ts,
        unloaded_ns: None,
    }))
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    pub fn module_unload(&mut self, ts: u64, id: u32) -> Result<(), WriteError> {
        if self.stream_room() < 1 + 2 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::MODULE_UNLOAD);
        self.records += 1;
        self.put(ts);
        self.put(id as u64);
        Ok(())
    }
}

fn read_module_unload(c: &mut Cursor) -> Option<MetaRecord> {
    Some(MetaRecord::ModuleUnload {
        ts: c.u64()?,
        id: c.u32()?,
    })
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A de-duplicated stack. `frames` are `(module id, offset)`; module id 0 means the
    /// address is in no known module and `offset` is the absolute address. Frame 0 is the
    /// return address into the allocating function's caller, outermost last.
    pub fn stack(&mut self, id: u32, frames: &[(u32, u64)]) -> Result<(), WriteError> {
        let need = 1 + varint::MAX_LEN * (2 + 2 * frames.len());
        if self.stream_room() < need {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::STACK);
        self.records += 1;
        self.put(id as u64);
        self.put(frames.len() as u64);
        for &(m, off) in frames {
            self.put(m as u64);
            self.put(off);
        }
        Ok(())
    }
}

fn read_stack(c: &mut Cursor) -> Option<MetaRecord> {
    let id = c.u32()?;
    let n = c.u64()?;
    if n > 4096 || n as usize > c.remaining() {
        return None;
    }
    let mut frames = Vec::with_capacity(n as usize);
    for _ in 0..n {
        frames.push(RawFrame {
            module: c.u32()?,
            offset: c.u64()?,
        });
    }
    Some(MetaRecord::Stack { id, frames })
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// Thread `index` (the chunk-level thread number) is kernel thread `tid`.
    pub fn thread(&mut self, ts: u64, index: u32, tid: u32, name: &[u8]) -> Result<(), WriteError> {
        if self.stream_room() < 1 + 4 * varint::MAX_LEN + name.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::THREAD);
        self.records += 1;
        self.put(ts);
        self.put(index as u64);
        self.put(tid as u64);
        self.put_raw_bytes(name);
        Ok(())
    }
}

fn read_thread(c: &mut Cursor) -> Option<MetaRecord> {
    let ts = c.u64()?;
    Some(MetaRecord::Thread(ThreadInfo {
        index: c.u32()?,
        tid: c.u32()?,
        name: c.string()?,
        started_ns: ts,
    }))
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// A finding about the process (`kind`): the module concerned (its path) and the
    /// symbols, separated by commas.
    pub fn notice(
        &mut self,
        ts: u64,
        kind: NoticeKind,
        module: &[u8],
        symbols: &[u8],
    ) -> Result<(), WriteError> {
        if self.stream_room() < 2 + 3 * varint::MAX_LEN + module.len() + symbols.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::NOTICE);
        self.records += 1;
        self.put(ts);
        self.put_u8(kind as u8);
        self.put_raw_bytes(module);
        self.put_raw_bytes(symbols);
        Ok(())
    }
}

fn read_notice(c: &mut Cursor) -> Option<MetaRecord> {
    Some(MetaRecord::Notice(Notice {
        ts: c.u64()?,
        kind: NoticeKind::from_u8(c.u8()?)?,
        module: c.string()?,
        symbols: c.string()?,
    }))
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// The name of region `id`.
    pub fn region_name(&mut self, id: u32, name: &[u8]) -> Result<(), WriteError> {
        self.name_record(tag::REGION_NAME, id, name)
    }

    /// The label of assertion label `id`.
    pub fn assert_label(&mut self, id: u32, label: &[u8]) -> Result<(), WriteError> {
        self.name_record(tag::ASSERT_LABEL, id, label)
    }

    fn name_record(&mut self, t: u8, id: u32, name: &[u8]) -> Result<(), WriteError> {
        if self.stream_room() < 1 + 2 * varint::MAX_LEN + name.len() {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(t);
        self.records += 1;
        self.put(id as u64);
        self.put_raw_bytes(name);
        Ok(())
    }

    /// Thread `index` marked itself real-time.
    pub fn realtime_thread(&mut self, index: u32) -> Result<(), WriteError> {
        if self.stream_room() < 1 + varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::REALTIME_THREAD);
        self.records += 1;
        self.put(index as u64);
        Ok(())
    }
}

fn read_name(c: &mut Cursor) -> Option<(u32, String)> {
    Some((c.u32()?, c.string()?))
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// How the process ended, with the recorder's own counters.
    pub fn end(
        &mut self,
        ts: u64,
        kind: ExitKind,
        code: i32,
        counters: &EndCounters,
    ) -> Result<(), WriteError> {
        if self.stream_room() < 2 + 8 * varint::MAX_LEN {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::END);
        self.records += 1;
        self.put(ts);
        self.put_u8(kind as u8);
        self.put(varint::zigzag(code as i64));
        self.put(counters.untracked_frees);
        self.put(counters.dropped_events);
        self.put(counters.recorder_peak_bytes);
        self.put(counters.write_errors);
        Ok(())
    }
}

fn read_end(c: &mut Cursor) -> Option<MetaRecord> {
    Some(MetaRecord::End(EndRecord {
        ts: c.u64()?,
        kind: ExitKind::from_u8(c.u8()?)?,
        code: unzigzag(c.u64()?) as i32,
        counters: EndCounters {
            untracked_frees: c.u64()?,
            dropped_events: c.u64()?,
            recorder_peak_bytes: c.u64()?,
            write_errors: c.u64()?,
        },
    }))
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ChunkBuilder<B> {
    /// Python code object `id`, written before the first stack whose Python frames use it.
    pub fn py_code(
        &mut self,
        id: u32,
        first_line: u32,
        qualname: &[u8],
        filename: &[u8],
        linetable: &[u8],
    ) -> Result<(), WriteError> {
        let need = 1 + 5 * varint::MAX_LEN + qualname.len() + filename.len() + linetable.len();
        if self.stream_room() < need {
            return Err(WriteError::NoSpace);
        }
        self.put_u8(tag::PY_CODE);
        self.records += 1;
        self.put(id as u64);
        self.put(first_line as u64);
        self.put_raw_bytes(qualname);
        self.put_raw_bytes(filename);
        self.put_raw_bytes(linetable);
        Ok(())
    }
}

fn read_py_code(c: &mut Cursor) -> Option<MetaRecord> {
    Some(MetaRecord::PyCode(PyCode {
        id: c.u32()?,
        first_line: c.u32()?,
        qualname: c.string()?,
        filename: c.string()?,
        linetable: c.bytes()?.to_vec(),
    }))
}
