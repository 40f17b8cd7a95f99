//! Empty: this crate only needs `[build-dependencies]` for feature unification.

fn main() {}
