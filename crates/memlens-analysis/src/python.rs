//! Python frames of recorded stacks: the line of an instruction, from CPython's location
//! table (3.11+, `Objects/locations.md` in CPython's sources), and the frame as shown.

use crate::symbolize::Frame;
use memlens_trace::PyCode;

/// The source line of the instruction at `index` (16-bit code units from the start of the
/// code's bytecode), `None` when the table says it has none or does not reach it.
pub fn line_of(code: &PyCode, index: u32) -> Option<u32> {
    let t = &code.linetable;
    let mut pos = 0usize;
    let mut line = code.first_line as i64;
    let mut addr = 0u64;
    let byte = |pos: &mut usize| -> Option<u8> {
        let b = *t.get(*pos)?;
        *pos += 1;
        Some(b)
    };
    let varint = |pos: &mut usize| -> Option<u64> {
        let mut b = byte(pos)?;
        let mut v = (b & 63) as u64;
        let mut shift = 0;
        while b & 64 != 0 {
            b = byte(pos)?;
            shift += 6;
            if shift > 60 {
                return None;
            }
            v |= ((b & 63) as u64) << shift;
        }
        Some(v)
    };
    let svarint = |pos: &mut usize| -> Option<i64> {
        let u = varint(pos)?;
        Some(if u & 1 != 0 {
            -((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    };
    while pos < t.len() {
        let first = byte(&mut pos)?;
        if first & 0x80 == 0 {
            return None;
        }
        let kind = (first >> 3) & 15;
        let length = (first & 7) as u64 + 1;
        let delta = match kind {
            15 => 0,
            14 => {
                let d = svarint(&mut pos)?;
                varint(&mut pos)?;
                varint(&mut pos)?;
                varint(&mut pos)?;
                d
            }
            13 => svarint(&mut pos)?,
            10..=12 => {
                pos += 2;
                kind as i64 - 10
            }
            _ => {
                pos += 1;
                0
            }
        };
        line += delta;
        if (index as u64) < addr + length {
            return (kind != 15 && line > 0).then_some(line as u32);
        }
        addr += length;
    }
    None
}

/// The frame of code `code` at instruction `index`: `qualname (file:line)`.
pub fn frame(code: Option<&PyCode>, id: u32, index: u32) -> Frame {
    match code {
        Some(c) => Frame {
            function: c.qualname.clone(),
            mangled: None,
            file: Some(c.filename.clone()),
            line: line_of(c, index),
            module: None,
            inlined: false,
            resolved: true,
            python: true,
        },
        None => Frame {
            function: format!("python code #{id}"),
            mangled: None,
            file: None,
            line: None,
            module: None,
            inlined: false,
            resolved: false,
            python: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(first_line: u32, linetable: &[u8]) -> PyCode {
        PyCode {
            id: 1,
            first_line,
            qualname: "f".into(),
            filename: "t.py".into(),
            linetable: linetable.to_vec(),
        }
    }

    #[test]
    fn lines_follow_the_location_table() {
        // Entries: 2 units short form (line 10), 3 units one-line form +1 (line 11),
        // 1 unit "no columns" with delta -1 (line 10), 2 units long form +5 (line 15),
        // 1 unit with no location.
        let t = [
            0x80 | 1,
            0x05, // short, 2 units
            0x80 | (11 << 3) | 2,
            0x04,
            0x08, // one-line +1, 3 units
            0x80 | (13 << 3),
            0x03, // no columns, svarint -1 (u = 3: odd, 1), 1 unit
            0x80 | (14 << 3) | 1,
            0x0a,
            0x00,
            0x01,
            0x02,             // long +5, 2 units
            0x80 | (15 << 3), // none, 1 unit
        ];
        let c = code(10, &t);
        let lines: Vec<Option<u32>> = (0..10).map(|i| line_of(&c, i)).collect();
        assert_eq!(
            lines,
            [
                Some(10),
                Some(10),
                Some(11),
                Some(11),
                Some(11),
                Some(10),
                Some(15),
                Some(15),
                None,
                None
            ]
        );
    }

    #[test]
    fn varints_span_bytes() {
        // A long-form delta of +100: u = 200 = 0b11_001000 -> 8 | 64, then 3.
        let t = [0x80 | (13 << 3), 8 | 64, 3];
        assert_eq!(line_of(&code(1, &t), 0), Some(101));
    }

    #[test]
    fn damaged_tables_give_no_line() {
        assert_eq!(line_of(&code(1, &[0x05]), 0), None, "no entry marker");
        assert_eq!(
            line_of(&code(1, &[0x80 | (13 << 3), 64]), 0),
            None,
            "cut short"
        );
        assert_eq!(line_of(&code(1, &[]), 0), None);
    }
}
