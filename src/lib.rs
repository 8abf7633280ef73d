//! tidstorage: coherency points across ZODB databases, and the tools that
//! use them (backup, restore, cut).
//!
//! The binary (`src/main.rs`) is a thin shell over this library so tests and
//! benchmarks reach every module.

pub mod engine;
pub mod tid;
