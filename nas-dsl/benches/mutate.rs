//! Mutator throughput: valid (re-checked), deduplicated mutants per second from
//! one seed net, on one core, for TinyResNet and an AlexNet-style net; and what
//! each step of one mutant costs.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nas_dsl::mutate::{Arch, Generator, Mutator, WidthClasses, content_hash};
use std::hint::black_box;

const ALEXNET: &str = "
net AlexNet(input = [3, 32, 32], classes = 10) {
    conv(3 -> 64, k = 3, stride = 2, pad = 1); relu; maxpool(k = 2);
    conv(64 -> 192, k = 3, pad = 1); relu; maxpool(k = 2);
    conv(192 -> 384, k = 3, pad = 1); relu;
    conv(384 -> 256, k = 3, pad = 1); relu;
    conv(256 -> 256, k = 3, pad = 1); relu; maxpool(k = 2);
    flatten; dropout(p = 0.5);
    linear(1024 -> 4096); relu; dropout(p = 0.5);
    linear(4096 -> 4096); relu;
    linear(4096 -> 10);
}
";

const TINY_RESNET: &str = include_str!("../tests/data/tiny_resnet.nas");

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mutants");
    group.throughput(Throughput::Elements(1));
    for (name, src) in [("tiny_resnet", TINY_RESNET), ("alexnet", ALEXNET)] {
        let Ok(nets) = nas_dsl::check_str(src) else {
            eprintln!("{name} does not check");
            return;
        };
        for structural in [false, true] {
            let mutator = Mutator {
                structural,
                ..Mutator::default()
            };
            let Ok(mut generator) = Generator::new(nets.clone(), mutator, 1) else {
                return;
            };
            let label = if structural { "structural" } else { "widths" };
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| black_box(generator.next_mutant().is_ok()));
            });
            eprintln!(
                "{name}/{label}: {} distinct mutants in {} attempts",
                generator.produced(),
                generator.attempts()
            );
        }
    }
    group.finish();

    // What one mutant costs, step by step, on TinyResNet.
    let Ok(mut nets) = nas_dsl::check_str(TINY_RESNET) else {
        return;
    };
    let net = nets.remove(0);
    let arch = Arch::new(net.clone());
    let widths = arch.classes().widths();
    let mut steps = c.benchmark_group("steps");
    steps.bench_function("apply", |b| {
        b.iter(|| arch.classes().apply(net.net(), black_box(&widths)).is_ok())
    });
    steps.bench_function("check", |b| {
        b.iter(|| nas_dsl::check(black_box(net.net())).is_ok())
    });
    steps.bench_function("print", |b| b.iter(|| nas_dsl::print(black_box(net.net()))));
    let text = nas_dsl::print(net.net());
    steps.bench_function("hash", |b| b.iter(|| content_hash(black_box(&text))));
    steps.bench_function("classes", |b| {
        b.iter(|| WidthClasses::new(black_box(&net)).classes().len())
    });
    steps.bench_function("clone", |b| b.iter(|| black_box(net.net()).clone()));
    steps.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
