//! The fuzz targets' invariants, one function per parser of untrusted input.
//! Each takes the fuzzer's bytes and panics when an invariant fails.

pub mod checks;
