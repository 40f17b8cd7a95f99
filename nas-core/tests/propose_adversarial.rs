//! 1,000 adversarial LLM answers — random bytes, huge numbers, deeply nested
//! blocks, other languages, prompt echoes, broken JSON — through both judges a
//! proposal meets (network text: extraction, parse, check, budget, grid; the
//! structured JSON widths): every one gets an outcome, none panics, none is
//! accepted unless it is a valid new network under the budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_core::propose::{Budget, Context, Outcome, Verdict, extract, structured};
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;

const SEED: &str = include_str!("../../models/nas/small_cnn.nas");

fn answers(n: usize) -> Vec<String> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(1000);
    let pieces = [
        "net",
        "{",
        "}",
        "(",
        ")",
        "->",
        "conv",
        "linear",
        "residual",
        "concat",
        "k =",
        "=",
        ";",
        ",",
        "input = [3, 32, 32]",
        "classes = 10",
        "```nas",
        "```",
        "\"c0\":",
        "[",
        "]",
        "0",
        "-1",
        "18446744073709551616",
        "1e308",
        "NaN",
        "💥",
        "网络",
        "сеть",
        "\0",
        "\u{202e}",
        "\\",
        "\"",
        "\n",
        "gap;",
        "relu;",
        "bn;",
    ];
    (0..n)
        .map(|i| match i % 10 {
            // Random bytes, as text.
            0 => (0..rng.random_range(0..400))
                .map(|_| char::from(rng.random_range(0u8..=255)))
                .collect(),
            // Huge and negative numbers in a network.
            1 => SEED
                .replace("16", ["0", "-16", "99999999999999999999", "1e9", "4294967297"][i % 5]),
            // Deeply nested blocks.
            2 => {
                let depth = rng.random_range(50..2000);
                format!(
                    "net D(input = [3, 32, 32], classes = 10) {{ {}conv(3 -> 8, k = 3); {} gap; linear(8 -> 10); }}",
                    "residual { ".repeat(depth),
                    "} ".repeat(depth)
                )
            }
            // Other languages and scripts around a fence.
            3 => format!(
                "Voici le réseau 🚀 / 这是网络 / Вот сеть:\n```nas\n{}\n```\n{}",
                SEED.replace("conv", ["свёртка", "卷积", "conv"][i % 3]),
                "ありがとう".repeat(rng.random_range(0..50))
            ),
            // Prompt echoes.
            4 => format!(
                "You are a neural architecture search assistant. Propose a network.\n{}\nPropose a network.\n",
                SEED.repeat(rng.random_range(1..4))
            ),
            // Token soup.
            5 => (0..rng.random_range(1..300))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect::<Vec<_>>()
                .join(" "),
            // Broken and hostile JSON for the structured judge.
            6 => [
                "{".to_string(),
                "{\"c0\": 18446744073709551616}".into(),
                "{\"c0\": -8, \"c1\": 1e400}".into(),
                format!("{}{}", "[".repeat(rng.random_range(10..5000)), "]".repeat(3)),
                "{\"c0\": \"sixty-four\", \"c1\": null, \"c2\": {}}".into(),
                "{\"c0\": 8, \"c0\": 16, \"c1\": 16, \"c2\": 16}".into(),
            ][i % 6]
                .clone(),
            // A truncated network.
            7 => SEED[..rng.random_range(0..SEED.len())].to_string(),
            // Widths far off the grid but consistent, or inconsistent ones.
            8 if i % 20 == 8 => SEED
                .replace("16", "30000")
                .replace("-> 32", "-> 7")
                .replace("32 ->", "7 ->"),
            8 => SEED.replace("conv(16 -> 32", "conv(17 -> 32"),
            // Many nets, one answer.
            _ => SEED.repeat(rng.random_range(2..20)),
        })
        .collect()
}

#[test]
fn a_thousand_adversarial_answers_are_all_classified() {
    let seed = nas_dsl::check_str(SEED).unwrap().remove(0);
    let budget = Budget {
        max_params: Some(1_000_000),
        max_memory: Some(2 << 30),
        batch: 32,
        ..Budget::default()
    };
    let ctx = Context::new(seed, budget, "step:8..=64".parse().unwrap());
    let parent = ctx.best().clone();
    let all = answers(1000);
    assert_eq!(all.len(), 1000);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in all.iter().enumerate() {
        for verdict in [
            extract::best(&ctx, raw),
            structured::judge(&ctx, &parent, raw),
        ] {
            let outcome = match &verdict {
                Verdict::Accepted { arch, .. } => {
                    // Only a real, in-budget network on the grid gets through.
                    let net = arch.net();
                    assert!(net.params() <= 1_000_000, "answer {i}");
                    assert!(budget.memory_over(net).is_none(), "answer {i}");
                    Outcome::Ok
                }
                Verdict::Rejected(r) => {
                    assert!(!r.diagnostics.is_empty(), "answer {i}: {r:?}");
                    r.outcome
                }
            };
            assert!(!outcome.is_server_failure(), "answer {i}: {outcome:?}");
            *outcomes.entry(format!("{outcome:?}")).or_default() += 1;
        }
    }
    eprintln!("outcomes of 2 × 1000 judgements: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<usize>(), 2000);
    // The campaign reaches every rejection a model's text can earn.
    for o in ["ParseError", "ShapeError", "OverBudget", "Duplicate"] {
        assert!(outcomes.contains_key(o), "{o} never happened: {outcomes:?}");
    }
}
