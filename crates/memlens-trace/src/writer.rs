//! A simple std writer that produces whole trace files, for tests and tools that build
//! synthetic traces. The recorder does not use it: it frames chunks itself with
//! [`crate::encode_chunk`] from fixed per-thread buffers.

use crate::*;
use std::io::Write;

/// Raw payload size at which [`TraceWriter`] cuts a chunk.
const CHUNK_RAW: usize = 64 * 1024;

pub struct TraceWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W, header: &Header) -> std::io::Result<Self> {
        let mut h = Vec::new();
        header.encode(&mut h);
        out.write_all(&h)?;
        Ok(TraceWriter {
            out,
            buf: vec![0u8; CHUNK_RAW + 4096],
        })
    }

    /// Write one chunk of `kind` for `thread`, filled by `fill`. Chunks larger than the
    /// buffer are the caller's concern: call this once per batch of records.
    pub fn chunk(
        &mut self,
        kind: ChunkKind,
        thread: u32,
        fill: impl FnOnce(&mut ChunkBuilder<&mut [u8]>) -> Result<(), WriteError>,
    ) -> std::io::Result<()> {
        let mut b = ChunkBuilder::new(&mut self.buf[..]);
        fill(&mut b).map_err(|_| std::io::Error::other("chunk too large"))?;
        let mut scratch = Vec::new();
        let raw = b.payload(&mut scratch);
        let mut out = vec![0u8; max_encoded_chunk_len(raw.len())];
        let n = encode_chunk(kind, thread, b.first_ts(), b.last_ts(), raw, &mut out)
            .map_err(|_| std::io::Error::other("chunk too large"))?;
        self.out.write_all(&out[..n])
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
