//! Analysis of memlens traces.
