//! The mutator's contract: width classes, every operator's mutants re-check and
//! round-trip through the printer, widths stay in the chosen set, fixed widths
//! never move, `flatten → linear` scales by `H·W`, seeded output is reproducible
//! and distinct; over the data files, the model files and random small nets.

// clippy.toml allows unwrap inside `#[test]` functions only; the helpers here
// unwrap too, since a test input that fails to load is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use nas_dsl::graph::Op;
use nas_dsl::mutate::{
    Arch, Generator, MutateError, Mutated, Mutation, Mutator, Operator, Port, ValueSet,
    WidthClasses, seed_rng,
};
use nas_dsl::{CheckedNet, Shape, ast::Layer};
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// AlexNet for 32x32 inputs: conv widths 64-192-384-256-256, a flatten of
/// `[256, 2, 2]`, then linear 4096-4096-classes.
const ALEXNET: &str = "
net AlexNet(input = [3, 32, 32], classes = 10) {
    conv(3 -> 64, k = 3, stride = 2, pad = 1);
    relu;
    maxpool(k = 2);
    conv(64 -> 192, k = 3, pad = 1);
    relu;
    maxpool(k = 2);
    conv(192 -> 384, k = 3, pad = 1);
    relu;
    conv(384 -> 256, k = 3, pad = 1);
    relu;
    last: conv(256 -> 256, k = 3, pad = 1);
    relu;
    maxpool(k = 2);
    flatten;
    dropout(p = 0.5);
    fc1: linear(1024 -> 4096);
    relu;
    dropout(p = 0.5);
    fc2: linear(4096 -> 4096);
    relu;
    head: linear(4096 -> 10);
}
";

fn checked(src: &str) -> CheckedNet {
    nas_dsl::check_str(src).unwrap().remove(0)
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn tiny_resnet() -> CheckedNet {
    checked(&std::fs::read_to_string(data_dir().join("tiny_resnet.nas")).unwrap())
}

/// Every valid net in `tests/data` and `models/nas` (when that folder exists).
fn corpus_nets() -> Vec<(String, CheckedNet)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut nets = Vec::new();
    for dir in [root.join("tests/data"), root.join("../models/nas")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.extension().is_none_or(|e| e != "nas") || name.starts_with("err_") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let all =
                nas_dsl::check_str(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for net in all {
                nets.push((format!("{name}:{}", net.name()), net));
            }
        }
    }
    nets.push(("alexnet".into(), checked(ALEXNET)));
    nets
}

fn conv_widths(net: &CheckedNet, layer: &str) -> (u64, u64, u64) {
    match &net.layer(layer).unwrap().op {
        Op::Layer(Layer::Conv(c)) => (c.in_ch.value, c.out_ch.value, c.groups.value),
        Op::Layer(Layer::Linear(l)) => (l.in_f.value, l.out_f.value, 1),
        other => panic!("`{layer}` is {other:?}"),
    }
}

/// The value of one class member in a net.
fn member_value(net: &CheckedNet, layer: &str, port: Port) -> u64 {
    let (i, o, g) = conv_widths(net, layer);
    match port {
        Port::In => i,
        Port::Out => o,
        Port::Groups => g,
    }
}

/// Every invariant a mutant must satisfy, whatever the operator.
fn assert_valid_mutant(parent: &Arch, m: &Mutated, set: &ValueSet) {
    let net = &m.net;
    // It checks (again, from its printed text) and round-trips through the printer.
    let text = nas_dsl::print(net.net());
    let reparsed = nas_dsl::parse_str(&text).unwrap().nets.remove(0);
    assert_eq!(
        &reparsed,
        net.net(),
        "parse(print(m)) != m after {}",
        m.mutation
    );
    nas_dsl::check(&reparsed).unwrap();
    // Fixed widths never move.
    let (p, q) = (parent.net().net(), net.net());
    assert_eq!(p.input.value, q.input.value);
    assert_eq!(p.classes.value, q.classes.value);
    assert_eq!(parent.net().output(), net.output());
    assert_flatten_linear(net);
    // The classes a mutant carries (a width change reuses its parent's, with the
    // new widths) are the ones derived from scratch.
    assert_eq!(
        m.clone().into_arch().classes(),
        &WidthClasses::new(net),
        "classes after {}",
        m.mutation
    );
    match m.mutation {
        Mutation::SetClass { .. } | Mutation::Scale { .. } => {
            assert_width_mutant(parent, net, set, &m.mutation);
        }
        _ => {}
    }
}

/// After every `flatten`, the next linear (past dropout, bn, activations) reads
/// exactly `C·H·W` features.
fn assert_flatten_linear(net: &CheckedNet) {
    let rows = net.layers();
    for (i, row) in rows.iter().enumerate() {
        if !matches!(row.op, Op::Layer(Layer::Flatten)) {
            continue;
        }
        let Shape::Map { c, h, w } = row.input_shape() else {
            panic!("flatten of a flat value");
        };
        let next = rows[i + 1..].iter().find(|r| {
            !matches!(
                r.op,
                Op::Layer(Layer::Dropout(_) | Layer::Bn | Layer::Act(_))
            )
        });
        if let Some(Op::Layer(Layer::Linear(l))) = next.map(|r| &r.op) {
            assert_eq!(
                l.in_f.value,
                c * h * w,
                "`{}` after flatten",
                next.unwrap().name
            );
        }
    }
}

/// A width mutant keeps the parent's layers; every class member either keeps its
/// width or takes one from the set (on its grid); derived widths (concat sums,
/// `C·H·W`) follow; a `flatten → linear` pair changes by the factor `H·W`.
fn assert_width_mutant(parent: &Arch, net: &CheckedNet, set: &ValueSet, mutation: &Mutation) {
    let (a, b) = (parent.net().layers(), net.layers());
    assert_eq!(a.len(), b.len());
    let mut changed = 0;
    for class in parent.classes().classes() {
        let grid = class.grid(set);
        let mut new_width = None;
        for m in class.members.iter().filter(|m| m.exact) {
            let v = member_value(net, &m.layer, m.port) / m.factor;
            assert_eq!(
                member_value(net, &m.layer, m.port),
                v * m.factor,
                "`{}` is a multiple of its class",
                m.layer
            );
            assert!(
                *new_width.get_or_insert(v) == v,
                "members of class {} disagree after {mutation}",
                class.id
            );
        }
        let v = new_width.unwrap_or(class.width);
        if v != class.width {
            changed += 1;
            assert!(
                grid.contains(v),
                "class {} got {v}, not in {set} (grid {grid:?})",
                class.id
            );
            assert_eq!(v % class.multiple_of, 0);
        }
    }
    assert!(changed > 0, "{mutation} changed nothing");
    if let Mutation::SetClass { .. } = mutation {
        assert_eq!(changed, 1);
    }
    // flatten → linear: the linear's input changes with the flatten's channels.
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        if !matches!(ra.op, Op::Layer(Layer::Flatten)) {
            continue;
        }
        let (Shape::Map { c: ca, h, w }, Shape::Map { c: cb, .. }) =
            (ra.input_shape(), rb.input_shape())
        else {
            panic!("flatten of a flat value");
        };
        let linear = a[i + 1..]
            .iter()
            .position(|r| matches!(r.op, Op::Layer(Layer::Linear(_))))
            .map(|j| i + 1 + j);
        if let Some(j) = linear {
            let ia = conv_widths(parent.net(), &a[j].name).0;
            let ib = conv_widths(net, &b[j].name).0;
            assert_eq!((ia, ib), (ca * h * w, cb * h * w));
        }
    }
}

#[test]
fn tiny_resnet_classes() {
    let classes = WidthClasses::new(&tiny_resnet());
    let widths: Vec<u64> = classes.classes().iter().map(|c| c.width).collect();
    assert_eq!(widths, vec![32, 32, 64, 64, 32, 48]);
    let members = |id: usize| -> Vec<String> {
        classes.classes()[id]
            .members
            .iter()
            .map(|m| format!("{}.{:?}", m.layer, m.port))
            .collect()
    };
    // The stem feeds an identity residual: its body's last conv is tied to it,
    // and so are the inputs of everything reading that value.
    assert_eq!(
        members(0),
        [
            "stem.Out",
            "conv4.In",
            "conv7.Out",
            "conv11.In",
            "conv16.In"
        ]
    );
    assert_eq!(members(1), ["conv4.Out", "conv7.In"]);
    // The projection shortcut ties the body's output to the shortcut's.
    assert_eq!(
        members(3),
        ["conv14.Out", "conv16.Out", "conv20.In", "conv21.In"]
    );
    // The head reads the concat's sum: it depends on both branch classes.
    let head = |id: usize| {
        classes.classes()[id]
            .members
            .iter()
            .any(|m| m.layer == "head" && m.port == Port::In && !m.exact)
    };
    assert!(head(4) && head(5));
    // `classes` fixes the head's output: no class holds it.
    assert!(classes.classes().iter().all(|c| {
        c.members
            .iter()
            .all(|m| !(m.layer == "head" && m.port == Port::Out))
    }));
    let json = serde_json::to_value(classes.describe(&ValueSet::default())).unwrap();
    assert_eq!(
        json[0]["members"][0],
        serde_json::json!({"layer": "stem", "port": "out"})
    );
    assert_eq!(json[0]["allowed"]["count"], 1021);
}

#[test]
fn alexnet_last_conv_updates_the_classifier_by_h_w() {
    let net = checked(ALEXNET);
    let arch = Arch::new(net.clone());
    let classes = arch.classes();
    assert_eq!(classes.widths(), vec![64, 192, 384, 256, 256, 4096, 4096]);
    let last = classes
        .classes()
        .iter()
        .find(|c| c.label() == "last")
        .unwrap();
    let fc1 = last.members.iter().find(|m| m.layer == "fc1").unwrap();
    assert_eq!((fc1.port, fc1.factor, fc1.exact), (Port::In, 4, true));
    // Directly through the classes.
    let mut widths = classes.widths();
    widths[last.id] = 100;
    let mutant = nas_dsl::check(&classes.apply(net.net(), &widths).unwrap()).unwrap();
    assert_eq!(conv_widths(&mutant, "last"), (256, 100, 1));
    assert_eq!(conv_widths(&mutant, "fc1"), (400, 4096, 1));
    // And through the operator, for every draw that picks the last conv.
    let mut rng = seed_rng(3);
    let set = ValueSet::default();
    let mut hits = 0;
    for _ in 0..200 {
        let m = nas_dsl::mutate::set_class(&arch, &set, &mut rng)
            .unwrap()
            .unwrap();
        assert_valid_mutant(&arch, &m, &set);
        if let Mutation::SetClass { class, to, .. } = m.mutation
            && class == last.id
        {
            hits += 1;
            assert_eq!(conv_widths(&m.net, "fc1").0, to * 2 * 2);
        }
    }
    assert!(hits > 0, "200 draws never picked the last conv");
}

#[test]
fn depthwise_groups_follow_their_class() {
    let net = checked(
        "net Dw(input = [3, 16, 16], classes = 10) {
            conv(3 -> 32, k = 3, pad = 1);
            dw: conv(32 -> 32, k = 3, pad = 1, groups = 32);
            conv(32 -> 64, k = 1);
            gap;
            linear(64 -> 10);
        }",
    );
    let classes = WidthClasses::new(&net);
    assert_eq!(classes.widths(), vec![32, 64]);
    let ports: Vec<Port> = classes.classes()[0]
        .members
        .iter()
        .filter(|m| m.layer == "dw")
        .map(|m| m.port)
        .collect();
    assert_eq!(ports, [Port::In, Port::Out, Port::Groups]);
    let mutant = nas_dsl::check(&classes.apply(net.net(), &[48, 64]).unwrap()).unwrap();
    assert_eq!(conv_widths(&mutant, "dw"), (48, 48, 48));
}

#[test]
fn grouped_convs_keep_divisibility_or_freeze() {
    let net = checked(
        "net G(input = [3, 8, 8], classes = 10) {
            conv(3 -> 32, k = 1);
            g: conv(32 -> 64, k = 1, groups = 8);
            concat {
                branch { conv(64 -> 30, k = 1); }
                branch { conv(64 -> 34, k = 1); }
            }
            h: conv(64 -> 16, k = 1, groups = 4);
            gap;
            linear(16 -> 10);
        }",
    );
    let arch = Arch::new(net);
    let classes = arch.classes().classes();
    // 30 and 34 are not multiples of 4: they are frozen, the rest stay free.
    let free: Vec<(u64, u64)> = classes.iter().map(|c| (c.width, c.multiple_of)).collect();
    assert_eq!(free, vec![(32, 8), (64, 8), (16, 4)]);
    let set: ValueSet = "uniform:4..=256".parse().unwrap();
    let mut rng = seed_rng(11);
    for _ in 0..300 {
        let m = Mutator {
            widths: set,
            structural: false,
        }
        .mutate(&arch, &mut rng)
        .unwrap();
        assert_valid_mutant(&arch, &m, &set);
        let (i, o, g) = conv_widths(&m.net, "g");
        assert_eq!((i % 8, o % 8, g), (0, 0, 8));
    }
}

#[test]
fn residual_over_a_concat_ties_its_input_to_the_sum() {
    let net = checked(
        "net R(input = [3, 8, 8], classes = 10) {
            stem: conv(3 -> 16, k = 1);
            residual {
                concat {
                    branch { conv(16 -> 8, k = 1); }
                    branch { conv(16 -> 8, k = 3, pad = 1); }
                }
            }
            gap;
            linear(16 -> 10);
        }",
    );
    let classes = WidthClasses::new(&net);
    // The stem is the sum of the two branches, so only they are free.
    assert_eq!(classes.widths(), vec![8, 8]);
    let mutant = nas_dsl::check(&classes.apply(net.net(), &[5, 12]).unwrap()).unwrap();
    assert_eq!(conv_widths(&mutant, "stem"), (3, 17, 1));
    assert_eq!(conv_widths(&mutant, "linear6"), (17, 10, 1));
}

#[test]
fn a_net_without_free_widths_is_a_clear_error() {
    let net = checked(
        "net Fixed(input = [3, 8, 8], classes = 10) {
            residual { conv(3 -> 3, k = 3, pad = 1); }
            conv(3 -> 10, k = 1);
            gap;
        }",
    );
    let arch = Arch::new(net);
    assert!(arch.classes().classes().is_empty());
    let err = Mutator::default()
        .mutate(&arch, &mut seed_rng(1))
        .unwrap_err();
    assert!(matches!(err, MutateError::NoMutation { .. }));
    assert!(
        err.to_string().contains("`Fixed` cannot be mutated"),
        "{err}"
    );
    // The generator says the same, and passes over an immutable seed among others.
    let err = Generator::new(vec![arch.net().clone()], Mutator::default(), 1)
        .unwrap()
        .next_mutant()
        .unwrap_err();
    assert!(matches!(err, MutateError::NoMutation { .. }), "{err}");
    let mut g = Generator::new(
        vec![arch.net().clone(), tiny_resnet()],
        Mutator::default(),
        1,
    )
    .unwrap();
    for _ in 0..20 {
        assert_eq!(g.next_mutant().unwrap().arch.net().name(), "TinyResNet");
    }
    // The structural operators still apply.
    let m = Mutator {
        structural: true,
        ..Mutator::default()
    }
    .mutate(&arch, &mut seed_rng(1))
    .unwrap();
    assert_valid_mutant(&arch, &m, &ValueSet::default());
}

#[test]
fn generator_is_seeded_distinct_and_reports_exhaustion() {
    let run = |seed: u64, structural: bool| -> Vec<String> {
        let mutator = Mutator {
            structural,
            ..Mutator::default()
        };
        let mut g = Generator::new(vec![tiny_resnet(), checked(ALEXNET)], mutator, seed).unwrap();
        (0..300)
            .map(|_| g.next_mutant().unwrap().arch.hash().to_string())
            .collect()
    };
    for structural in [false, true] {
        let a = run(5, structural);
        assert_eq!(a, run(5, structural), "same seed, same output");
        assert_ne!(a, run(6, structural));
        let distinct: HashSet<&String> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
        let seeds = [tiny_resnet(), checked(ALEXNET)].map(|n| Arch::new(n).hash().to_string());
        assert!(a.iter().all(|h| !seeds.contains(h)));
    }
    // One class with three allowed widths, one of them current: two mutants, then dry.
    let tiny = checked("net T(input = [4], classes = 2) { linear(4 -> 5); relu; linear(5 -> 2); }");
    let mutator = Mutator {
        widths: "uniform:4..=6".parse().unwrap(),
        structural: false,
    };
    let mut g = Generator::new(vec![tiny], mutator, 0).unwrap();
    assert!(g.next_mutant().is_ok() && g.next_mutant().is_ok());
    let err = g.next_mutant().unwrap_err();
    assert!(
        matches!(err, MutateError::Exhausted { produced: 2, .. }),
        "{err}"
    );
    assert!(matches!(
        Generator::new(vec![], Mutator::default(), 0),
        Err(MutateError::NoSeeds)
    ));
}

#[test]
fn hashes_are_sha256_of_the_canonical_text() {
    let arch = Arch::new(tiny_resnet());
    assert_eq!(arch.source(), nas_dsl::print(tiny_resnet().net()));
    assert_eq!(arch.hash().len(), 64);
    assert_eq!(
        nas_dsl::mutate::content_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn snapshot(net: CheckedNet, mutator: Mutator, seed: u64, n: usize) -> String {
    let mut g = Generator::new(vec![net], mutator, seed).unwrap();
    let mut out = String::new();
    for i in 0..n {
        let m = g.next_mutant().unwrap();
        out.push_str(&format!(
            "// {i}: {} (parent {})\n{}\n",
            m.mutation,
            &m.parent_hash[..12],
            m.arch.source()
        ));
    }
    out
}

#[test]
fn snapshot_tiny_resnet_structural_seed_7() {
    let mutator = Mutator {
        structural: true,
        ..Mutator::default()
    };
    insta::assert_snapshot!(snapshot(tiny_resnet(), mutator, 7, 4));
}

#[test]
fn snapshot_alexnet_step_grid_seed_42() {
    let mutator = Mutator {
        widths: "step:8..=512".parse().unwrap(),
        structural: false,
    };
    insta::assert_snapshot!(snapshot(checked(ALEXNET), mutator, 42, 4));
}

/// Applies every operator (and the weighted mutator) to `net` with one seed and
/// checks every mutant.
fn exercise(net: &CheckedNet, set: ValueSet, seed: u64) -> Result<(), TestCaseError> {
    let arch = Arch::new(net.clone());
    let mut rng = seed_rng(seed);
    let ops = [
        Operator::SetClass,
        Operator::Scale,
        Operator::Duplicate,
        Operator::Remove,
        Operator::Kernel,
    ];
    for op in ops {
        match op.apply(&arch, &set, &mut rng) {
            Ok(Some(m)) => {
                prop_assert_eq!(m.mutation.op(), op);
                assert_valid_mutant(&arch, &m, &set);
                // A second generation from the mutant works too.
                let child = Arch::new(m.net.clone());
                if let Ok(Some(m2)) = op.apply(&child, &set, &mut rng) {
                    assert_valid_mutant(&child, &m2, &set);
                }
            }
            Ok(None) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{op:?}: {e}"))),
        }
    }
    for structural in [false, true] {
        let mutator = Mutator {
            widths: set,
            structural,
        };
        match mutator.mutate(&arch, &mut rng) {
            Ok(m) => assert_valid_mutant(&arch, &m, &set),
            Err(MutateError::NoMutation { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        }
    }
    Ok(())
}

fn value_sets() -> impl Strategy<Value = ValueSet> {
    prop_oneof![
        Just("uniform:4..=1024"),
        Just("step:8..=512"),
        Just("uniform:1..=64"),
        Just("step:3..=96"),
    ]
    .prop_map(|s| s.parse().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_mutant_of_every_file_checks(seed in any::<u64>(), set in value_sets()) {
        for (_, net) in corpus_nets() {
            exercise(&net, set, seed)?;
        }
    }

    #[test]
    fn every_mutant_of_random_nets_checks(
        spec in random_net(),
        seed in any::<u64>(),
        set in value_sets(),
    ) {
        let net = nas_dsl::check_str(&spec).map_err(|e| {
            TestCaseError::fail(format!("generator bug: {e}\n{spec}"))
        })?;
        exercise(&net[0], set, seed)?;
    }
}

/// One piece of a random net.
#[derive(Clone, Debug)]
enum Piece {
    Conv { w: u64, k3: bool, stride2: bool },
    Residual { inner: u64 },
    Projection { w: u64, stride2: bool },
    Concat { widths: Vec<u64> },
    Depthwise,
    Grouped { g: u64, mult: u64 },
    Pool,
    Gelu,
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        (1..24u64, any::<bool>(), any::<bool>()).prop_map(|(w, k3, stride2)| Piece::Conv {
            w,
            k3,
            stride2
        }),
        (1..24u64).prop_map(|inner| Piece::Residual { inner }),
        (1..24u64, any::<bool>()).prop_map(|(w, stride2)| Piece::Projection { w, stride2 }),
        prop::collection::vec(1..16u64, 1..4).prop_map(|widths| Piece::Concat { widths }),
        Just(Piece::Depthwise),
        (2..5u64, 1..5u64).prop_map(|(g, mult)| Piece::Grouped { g, mult }),
        Just(Piece::Pool),
        Just(Piece::Gelu),
    ]
}

/// Random small valid nets, as `.nas` text.
fn random_net() -> impl Strategy<Value = String> {
    (
        1..4u64,
        prop_oneof![Just(8u64), Just(16)],
        prop::collection::vec(piece(), 1..7),
        any::<bool>(),
        prop::option::of(1..32u64),
        2..12u64,
    )
        .prop_map(|(c0, size, pieces, flatten, hidden, classes)| {
            let mut s = format!("net Random(input = [{c0}, {size}, {size}], classes = {classes}) {{\n");
            let (mut c, mut h) = (c0, size);
            for p in pieces {
                match p {
                    Piece::Conv { w, k3, stride2 } => {
                        let stride = if stride2 && h >= 4 { 2 } else { 1 };
                        let (k, pad) = if k3 { (3, 1) } else { (1, 0) };
                        s += &format!("conv({c} -> {w}, k = {k}, stride = {stride}, pad = {pad}); bn; relu;\n");
                        c = w;
                        h = (h + 2 * pad - k) / stride + 1;
                    }
                    Piece::Residual { inner } => {
                        s += &format!(
                            "residual {{ conv({c} -> {inner}, k = 3, pad = 1); relu; conv({inner} -> {c}, k = 3, pad = 1); bn; }}\nrelu;\n"
                        );
                    }
                    Piece::Projection { w, stride2 } => {
                        let stride = if stride2 && h >= 4 { 2 } else { 1 };
                        s += &format!(
                            "residual {{ conv({c} -> {w}, k = 3, stride = {stride}, pad = 1); bn; }} shortcut {{ conv({c} -> {w}, k = 1, stride = {stride}); }}\n"
                        );
                        c = w;
                        h = (h - 1) / stride + 1;
                    }
                    Piece::Concat { widths } => {
                        s += "concat {\n";
                        for (i, w) in widths.iter().enumerate() {
                            let (k, pad) = if i % 2 == 0 { (1, 0) } else { (3, 1) };
                            s += &format!("branch {{ conv({c} -> {w}, k = {k}, pad = {pad}); }}\n");
                        }
                        s += "}\n";
                        c = widths.iter().sum();
                    }
                    Piece::Depthwise => {
                        s += &format!("conv({c} -> {c}, k = 3, pad = 1, groups = {c});\n");
                    }
                    Piece::Grouped { g, mult } => {
                        if c % g == 0 {
                            let o = g * mult;
                            s += &format!("conv({c} -> {o}, k = 1, groups = {g});\n");
                            c = o;
                        }
                    }
                    Piece::Pool => {
                        if h >= 4 {
                            s += "maxpool(k = 2);\n";
                            h /= 2;
                        }
                    }
                    Piece::Gelu => s += "gelu; dropout(p = 0.1);\n",
                }
            }
            let mut f = if flatten {
                s += "flatten;\n";
                c * h * h
            } else {
                s += "gap;\n";
                c
            };
            if let Some(hidden) = hidden {
                s += &format!("linear({f} -> {hidden}); relu;\n");
                f = hidden;
            }
            s += &format!("linear({f} -> {classes});\n}}\n");
            s
        })
}
