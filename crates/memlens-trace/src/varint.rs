//! LEB128 variable-length integers and a bounds-checked decoding cursor.

use alloc::string::String;
use alloc::vec::Vec;

/// Longest LEB128 encoding of a u64.
pub const MAX_LEN: usize = 10;

/// Encode `v` into `out`, returning the bytes written. `out` must hold [`MAX_LEN`] bytes.
///
/// Runs for every field of every event the recorder writes: the length is computed
/// first, so the loop has a known trip count and no bounds check per byte.
#[inline]
pub fn encode_u64(v: u64, out: &mut [u8]) -> usize {
    if v < 0x80 {
        out[0] = v as u8;
        return 1;
    }
    let Some(out) = out.first_chunk_mut::<MAX_LEN>() else {
        return encode_short(v, out);
    };
    // 2..=10 bytes: 7 bits each.
    let n = ((70 - v.leading_zeros() as usize) / 7).min(MAX_LEN);
    let mut rest = v;
    for b in out[..n - 1].iter_mut() {
        *b = (rest as u8) | 0x80;
        rest >>= 7;
    }
    out[n - 1] = rest as u8;
    n
}

/// [`encode_u64`] into a buffer shorter than [`MAX_LEN`] (panics if `v` does not fit).
#[cold]
fn encode_short(mut v: u64, out: &mut [u8]) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; MAX_LEN];
    let n = encode_u64(v, &mut b);
    out.extend_from_slice(&b[..n]);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads values from a byte slice; every method returns `None` past the end or on an
/// over-long encoding, never panics.
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    #[inline]
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    /// A LEB128 u64; `None` past the end or for an over-long encoding. Most fields of an
    /// event (time deltas, sizes, stack ids) take one byte: that case returns first.
    #[inline]
    pub fn u64(&mut self) -> Option<u64> {
        if let Some(&b) = self.data.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Some(b as u64);
            }
        }
        self.u64_multibyte()
    }

    fn u64_multibyte(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return None;
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    pub fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u64()? as usize;
        if n > self.remaining() {
            return None;
        }
        let b = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Some(b)
    }
    pub fn string(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// An address as format version 2 writes it after `last`, the previous address of the
/// chunk: the zigzag delta of the two addresses' 16-byte units, shifted left by one, with
/// bit 0 set when `addr` is not 16-byte aligned (then one byte with its low 4 bits
/// follows). glibc's blocks are 16-byte aligned, so the common case saves 4 bits.
#[inline]
pub fn addr_delta(last: u64, addr: u64) -> u64 {
    // Both units are below 2^60, so their difference fits an i64 exactly.
    let d = (addr >> 4) as i64 - (last >> 4) as i64;
    zigzag(d) << 1 | (addr & 15 != 0) as u64
}

/// The address that [`addr_delta`] coded as `v` after `last`, its low byte (when `v`
/// says there is one) read from `c`; `None` for a unit outside the address space.
#[inline]
pub fn addr_from_delta(last: u64, v: u64, c: &mut Cursor) -> Option<u64> {
    let unit = ((last >> 4) as i64).checked_add(unzigzag(v >> 1))?;
    if !(0..1 << 60).contains(&unit) {
        return None;
    }
    let low = if v & 1 != 0 { c.u8()? as u64 & 15 } else { 0 };
    Some((unit as u64) << 4 | low)
}

/// Reads the addresses of one chunk, in the coding of the trace's format version.
pub struct AddrReader {
    last: u64,
    version: u32,
}

impl AddrReader {
    pub fn new(version: u32) -> AddrReader {
        AddrReader { last: 0, version }
    }

    /// The next address of the chunk.
    #[inline]
    pub fn read(&mut self, c: &mut Cursor) -> Option<u64> {
        let v = c.u64()?;
        self.last = if self.version < 2 {
            self.last.wrapping_add(unzigzag(v) as u64)
        } else {
            addr_from_delta(self.last, v, c)?
        };
        Some(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = [0u8; MAX_LEN];
            let n = encode_u64(v, &mut b);
            let mut c = Cursor::new(&b[..n]);
            assert_eq!(c.u64(), Some(v));
            assert!(c.is_empty());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn every_length_encodes_as_leb128() {
        for bits in 0..64 {
            for v in [
                1u64 << bits,
                (1u64 << bits) - 1,
                (1u64 << bits) | 0x55,
                u64::MAX >> bits,
            ] {
                let mut want = Vec::new();
                let mut x = v;
                loop {
                    let byte = (x & 0x7f) as u8;
                    x >>= 7;
                    if x == 0 {
                        want.push(byte);
                        break;
                    }
                    want.push(byte | 0x80);
                }
                let mut b = [0xeeu8; MAX_LEN + 2];
                let n = encode_u64(v, &mut b);
                assert_eq!(&b[..n], &want[..], "{v:#x}");
                assert_eq!(b[n], 0xee, "{v:#x}: wrote past its length");
                // A buffer just long enough, shorter than MAX_LEN.
                let mut short = vec![0u8; want.len()];
                assert_eq!(encode_u64(v, &mut short), want.len());
                assert_eq!(short, want);
            }
        }
    }

    #[test]
    fn overlong_and_truncated_are_rejected() {
        assert_eq!(Cursor::new(&[0x80, 0x80]).u64(), None);
        assert_eq!(Cursor::new(&[0xff; 11]).u64(), None);
        assert_eq!(Cursor::new(&[0x05, 1, 2]).bytes(), None);
    }
}
