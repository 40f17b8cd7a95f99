//! Properties over generated networks: every generated net checks, and the
//! canonical printer round-trips (`parse(print(n)) == n`, spans ignored). Also:
//! no input, however malformed, makes the parser or checker panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_dsl::{check_str, parse_str, print};
use proptest::prelude::*;

/// One step of a generated network, interpreted against the running shape.
#[derive(Clone, Debug)]
enum Step {
    Conv { width: u64, k: u64, stride: u64 },
    Depthwise,
    Bn,
    Act(usize),
    Pool { max: bool },
    Residual { width: u64, down: bool },
    Concat { a: u64, b: u64 },
    Dropout(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u64..48, prop::sample::select(vec![1u64, 3, 5]), 1u64..3)
            .prop_map(|(width, k, stride)| Step::Conv { width, k, stride }),
        Just(Step::Depthwise),
        Just(Step::Bn),
        (0usize..5).prop_map(Step::Act),
        any::<bool>().prop_map(|max| Step::Pool { max }),
        (1u64..48, any::<bool>()).prop_map(|(width, down)| Step::Residual { width, down }),
        (1u64..32, 1u64..32).prop_map(|(a, b)| Step::Concat { a, b }),
        (0u8..10).prop_map(Step::Dropout),
    ]
}

/// Builds valid `.nas` text from the steps, tracking channels and spatial size.
fn build(input: (u64, u64), steps: &[Step], classes: u64, flatten: bool) -> String {
    let (mut c, mut hw) = input;
    let mut body = String::new();
    let acts = ["relu", "gelu", "silu", "sigmoid", "tanh"];
    for s in steps {
        match *s {
            Step::Conv { width, k, stride } => {
                let stride = if hw >= 4 { stride } else { 1 };
                body += &format!(
                    "conv({c} -> {width}, k = {k}, stride = {stride}, pad = {});\n",
                    k / 2
                );
                c = width;
                hw = (hw - 1) / stride + 1;
            }
            Step::Depthwise => {
                body += &format!("conv({c} -> {c}, k = 3, pad = 1, groups = {c}, bias = false);\n")
            }
            Step::Bn => body += "bn;\n",
            Step::Act(i) => body += &format!("{};\n", acts[i]),
            Step::Pool { max } if hw >= 2 => {
                body += if max {
                    "maxpool(k = 2);\n"
                } else {
                    "avgpool(k = 2, stride = 2);\n"
                };
                hw /= 2;
            }
            Step::Pool { .. } => {}
            Step::Residual { width, down } => {
                if down && hw >= 2 {
                    body += &format!(
                        "blk: residual {{ conv({c} -> {width}, k = 3, stride = 2, pad = 1); bn; }} shortcut {{ conv({c} -> {width}, k = 1, stride = 2); }}\n"
                    );
                    hw = (hw - 1) / 2 + 1;
                    c = width;
                } else {
                    body += &format!("residual {{ conv({c} -> {c}, k = 3, pad = 1); relu; }}\n");
                }
                // Only one `blk` name per net: rename later occurrences.
                if body.matches("blk:").count() > 1 {
                    body = body.replacen("blk:", "", 1);
                }
            }
            Step::Concat { a, b } => {
                body += &format!(
                    "concat {{ branch {{ conv({c} -> {a}, k = 1); }} branch {{ conv({c} -> {b}, k = 3, pad = 1); }} }}\n"
                );
                c = a + b;
            }
            Step::Dropout(p) => body += &format!("dropout(p = {});\n", f64::from(p) / 10.0),
        }
    }
    if flatten {
        body += &format!("flatten;\nlinear({} -> {classes});\n", c * hw * hw);
    } else {
        body += &format!("gap;\nhead: linear({c} -> {classes});\n");
    }
    format!(
        "/// generated\nnet Gen(input = [{}, {}, {}], classes = {classes}) {{\n{body}}}\n",
        input.0, input.1, input.1
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_nets_check_and_round_trip(
        c in 1u64..8,
        hw in 1u64..33,
        steps in prop::collection::vec(step(), 0..12),
        classes in 1u64..200,
        flatten in any::<bool>(),
    ) {
        let src = build((c, hw), &steps, classes, flatten);
        let nets = match check_str(&src) {
            Ok(n) => n,
            Err(e) => return Err(TestCaseError::fail(format!("{src}\n{e}"))),
        };
        let net = nets[0].net();
        let printed = print(net);
        let again = parse_str(&printed).unwrap();
        prop_assert_eq!(&again.nets[0], net);
        prop_assert_eq!(print(&again.nets[0]), printed);
        prop_assert!(nets[0].params() > 0);
    }

    #[test]
    fn arbitrary_token_soup_never_panics(
        words in prop::collection::vec(prop::sample::select(vec![
            "net", "pub", "N", "(", ")", "{", "}", "[", "]", "input", "classes", "=", ",", ";",
            "conv", "linear", "bn", "relu", "gap", "flatten", "residual", "shortcut", "concat",
            "branch", "->", "k", "0", "1", "3", "64", "18446744073709551615", "0.5", "true",
            "dropout", "p", "maxpool", "groups", ":", "x", "///", "\n", "-", "99999999999999999999999",
        ]), 0..60),
    ) {
        let src = words.join(" ");
        let _ = check_str(&src);
    }
}
