//! memcheck's leak marking, over any memory.
//!
//! The recorder's exit scan (inside the process, reading its own memory) and `memlens
//! snapshot` (outside it, reading another process's memory after stopping it) classify
//! blocks with this one marker, so that a snapshot and the exit scan agree on the same
//! program state:
//!
//! * [`Heap`]: the live blocks by address, with a bucketed index for "which block holds
//!   this address".
//! * [`mark`]: breadth first from each root range and register set in turn (each block's
//!   parent lies on a shortest chain from a root), memcheck's interior-pointer heuristics,
//!   then cliques in ascending address order; the answer is a [`Marks`].
//! * [`live_slot`]: the recorder's live-table slot, which a snapshot reads from outside.
//! * [`ranges`]: address-range arithmetic, glibc's arena heaps and the dead frames of
//!   glibc's cached thread stacks, which both scans leave out of the roots.
//!
//! Memory is read through two traits: [`Reader`] for root memory (which may have holes:
//! a read never faults, it stops short) and [`BlockMemory`] for the blocks' words (live
//! heap memory, read in place by the recorder, from a copy by the snapshot).
//!
//! `no_std` + `alloc`: in the recorder every allocation goes to its private heap.
#![no_std]

extern crate alloc;

mod heap;
pub mod live_slot;
mod marker;
mod memory;
pub mod ranges;
#[cfg(test)]
mod tests;

pub use heap::{end_of, size_of, Heap, Map, SIZE_MASK};
pub use marker::{mark, Marks};
pub use memory::{BlockMemory, Cursor, Direct, Reader, PAGE};
