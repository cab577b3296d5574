//! The recorder's live-table slot (`memlens-preload/src/live.rs`), which `memlens
//! snapshot` also reads, from outside the process (`memlens-cli/src/snapshot/recorder.rs`):
//! one layout, packed and unpacked here for both.
//!
//! Two u64 words. The first: the block's address / 16 (44 bits) and the size's low 20
//! bits. The second: the size's next 20 bits, the allocating function (5 bits), the
//! internal bit, and the block's number in the trace (38 bits, 0: none). A size from
//! [`BIG_SIZE`] up keeps its bits above the low 20 in the number's place (the block then
//! has no number), with all ones in the size's second part. A key of 0 marks a free slot.

/// Bytes of one slot.
pub const SLOT_BYTES: usize = 16;
/// Bits of the key (the block's address / 16) in the first word.
pub const KEY_BITS: u32 = 44;
pub const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// The largest size a slot holds.
pub const MAX_SIZE: u64 = (1 << 46) - 1;
/// Bits of a block's number.
pub const SERIAL_BITS: u32 = 38;
const SIZE_LO_BITS: u32 = 64 - KEY_BITS;
const SIZE_HI_BITS: u32 = 20;
const SIZE_HI_MASK: u64 = (1 << SIZE_HI_BITS) - 1;
/// Sizes from here up are stored with the number's bits (about 1 TiB).
pub const BIG_SIZE: u64 = SIZE_HI_MASK << SIZE_LO_BITS;
const FUNC_SHIFT: u32 = SIZE_HI_BITS;
const FUNC_MASK: u64 = 0x1f;
const INTERNAL_SHIFT: u32 = SIZE_HI_BITS + 5;
const SERIAL_SHIFT: u32 = 64 - SERIAL_BITS;

/// One live block as its slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The block's address / 16 (0: a free slot).
    pub key: u64,
    /// Requested bytes, at most [`MAX_SIZE`].
    pub size: u64,
    /// The allocating function (`memlens_trace::AllocFunc`), 5 bits.
    pub func: u8,
    /// Allocated on the recorder's behalf.
    pub internal: bool,
    /// The block's number in the trace (0: none), below 2^[`SERIAL_BITS`].
    pub serial: u64,
}

impl Slot {
    /// The slot's two words (a size above [`MAX_SIZE`] is stored as that).
    #[inline(always)]
    pub fn pack(self) -> [u64; 2] {
        let size = self.size.min(MAX_SIZE);
        let flags =
            (self.func as u64 & FUNC_MASK) << FUNC_SHIFT | (self.internal as u64) << INTERNAL_SHIFT;
        let hi = if size >= BIG_SIZE {
            SIZE_HI_MASK | flags | (size >> SIZE_LO_BITS) << SERIAL_SHIFT
        } else {
            size >> SIZE_LO_BITS | flags | (self.serial & ((1 << SERIAL_BITS) - 1)) << SERIAL_SHIFT
        };
        [self.key & KEY_MASK | size << KEY_BITS, hi]
    }

    /// The block the two words hold.
    #[inline(always)]
    pub fn unpack([lo, hi]: [u64; 2]) -> Slot {
        let low = lo >> KEY_BITS;
        let (size, serial) = if hi & SIZE_HI_MASK == SIZE_HI_MASK {
            (low | (hi >> SERIAL_SHIFT) << SIZE_LO_BITS, 0)
        } else {
            (
                low | (hi & SIZE_HI_MASK) << SIZE_LO_BITS,
                hi >> SERIAL_SHIFT,
            )
        };
        Slot {
            key: lo & KEY_MASK,
            size,
            func: (hi >> FUNC_SHIFT & FUNC_MASK) as u8,
            internal: hi >> INTERNAL_SHIFT & 1 != 0,
            serial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_big_sizes_give_up_their_number() {
        let top = (1u64 << SERIAL_BITS) - 1;
        let slot = |key, size, func, internal, serial| Slot {
            key,
            size,
            func,
            internal,
            serial,
        };
        for s in [
            slot(1, 0, 0, false, 1),
            slot(KEY_MASK, 1, 31, true, 0),
            slot(0x07f0_0000_0123, BIG_SIZE - 1, 1, true, top),
            slot(5, 123_456_789, 5, false, 1 << 33),
        ] {
            assert_eq!(Slot::unpack(s.pack()), s);
        }
        for size in [BIG_SIZE, MAX_SIZE] {
            let s = slot(9, size, 12, false, 77);
            assert_eq!(Slot::unpack(s.pack()), Slot { serial: 0, ..s });
        }
    }
}
