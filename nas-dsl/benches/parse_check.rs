//! Parse+check time of a generated 100-layer network and of every model's `.nas`
//! file (goal: under 1 ms for 100 layers).

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// A 100-statement net: 25 blocks of conv, bn, relu and a residual pair.
fn hundred_layers() -> String {
    let mut body = String::from("    conv(3 -> 64, k = 3, pad = 1);\n");
    let mut count = 1;
    while count < 99 {
        body.push_str("    bn;\n    relu;\n    residual { conv(64 -> 64, k = 3, pad = 1); bn; }\n");
        count += 5;
    }
    body.push_str("    gap;\n    linear(64 -> 100);\n");
    format!("net Hundred(input = [3, 32, 32], classes = 100) {{\n{body}}}\n")
}

fn bench(c: &mut Criterion) {
    let hundred = hundred_layers();
    let layers = nas_dsl::check_str(&hundred)
        .map(|n| n[0].layers().len())
        .unwrap_or(0);
    c.bench_function(&format!("parse+check {layers}-layer net"), |b| {
        b.iter(|| nas_dsl::check_str(black_box(&hundred)))
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/nas");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "nas"))
        .collect();
    files.sort();
    for path in files {
        let Ok(src) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        c.bench_function(&format!("parse+check {name}"), |b| {
            b.iter(|| nas_dsl::check_str(black_box(&src)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
