//! trybuild driver for `network!`: every `tests/ui/*.rs` must fail to compile with
//! exactly the diagnostics in its `.stderr`, every `tests/pass/*.rs` must build and run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
