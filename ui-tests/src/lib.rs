//! Compile-fail and compile-pass cases for the `network!` macro; the cases live in
//! `tests/ui` and `tests/pass` and are driven by `tests/ui.rs` through trybuild.

nas_macros::network! {
    /// Doc.
    pub net Clash(input = [3, 8, 8], classes = 8) {
        _backend: conv(3 -> 8, k = 3, pad = 1);
        gap;
    }
    /// Doc.
    pub net Small(input = [4], classes = 4) { relu; }
    /// Doc.
    pub net SmallRecord(input = [4], classes = 4) { relu; }
}
