//! trybuild driver for `network!`: every `tests/ui/*.rs` must fail to compile with
//! exactly the diagnostics in its `.stderr`, every `tests/pass/*.rs` must build and run.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
