//! Compile-fail and compile-pass cases for the `network!` macro; the cases live in
//! `tests/ui` and `tests/pass` and are driven by `tests/ui.rs` through trybuild.
