//! The proposer's prompt as a pure function, snapshotted with insta: both styles
//! for a residual seed with trained history and a budget, the fallback to
//! untrained mutants as examples, and both repair prompts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure is a test failure"
)]

use nas_core::propose::prompt::{self, Prompt, PromptInput};
use nas_core::propose::{Budget, Context, Outcome, Rejection, Style, Telemetry};
use nas_dsl::mutate::{Arch, Generator, Mutator, ValueSet};
use std::sync::Arc;

fn seed_text(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(path).unwrap()
}

/// TinyResNet with two trained mutants in the history and a budget.
fn trained_context() -> Context {
    let seed = nas_dsl::check_str(&seed_text("../nas-dsl/tests/data/tiny_resnet.nas"))
        .unwrap()
        .remove(0);
    let widths: ValueSet = "step:8..=256".parse().unwrap();
    let mut ctx = Context::new(
        seed.clone(),
        Budget {
            max_params: Some(250_000),
            max_flops: Some(40_000_000),
            max_memory: None,
            batch: 0,
        },
        widths,
    );
    let mutator = Mutator {
        widths,
        structural: false,
    };
    let mut generator = Generator::new(vec![seed], mutator, 3).unwrap();
    for (accuracy, loss) in [(0.412, 2.31), (0.447, 2.08)] {
        let m = generator.next_mutant().unwrap();
        ctx.record(
            m.arch,
            Some(Telemetry {
                rungs: Vec::new(),
                accuracy: Some(accuracy),
                loss: Some(loss),
                epochs: Some(5),
            }),
        );
    }
    ctx
}

#[test]
fn chat_prompt_with_history_and_budget() {
    let ctx = trained_context();
    let input = PromptInput::from_context(&ctx, ctx.best());
    insta::assert_snapshot!(prompt::render(Style::Chat, &input).to_text());
}

#[test]
fn completion_prompt_with_history_and_budget() {
    let ctx = trained_context();
    let input = PromptInput::from_context(&ctx, ctx.best());
    let Prompt::Completion { text } = prompt::render(Style::Completion, &input) else {
        panic!("completion expected")
    };
    assert!(text.ends_with("```nas\n"));
    insta::assert_snapshot!(text);
}

#[test]
fn the_parent_is_the_best_trained_network() {
    let ctx = trained_context();
    let best: &Arc<Arch> = ctx.best();
    assert_eq!(ctx.telemetry_of(best).and_then(|t| t.accuracy), Some(0.447));
    let input = PromptInput::from_context(&ctx, best);
    // The other trained network and the seed-derived filler, never the parent.
    assert_eq!(input.examples.len(), prompt::EXAMPLES);
    assert!(
        input
            .examples
            .iter()
            .all(|e| e.source != input.parent.source)
    );
    assert_eq!(
        input.examples[0]
            .telemetry
            .as_ref()
            .and_then(|t| t.accuracy),
        Some(0.412)
    );
}

#[test]
fn without_history_untrained_mutants_are_the_examples() {
    let seed = nas_dsl::check_str(&seed_text("../models/nas/small_cnn.nas"))
        .unwrap()
        .remove(0);
    let ctx = Context::new(seed, Budget::default(), ValueSet::default());
    let input = PromptInput::from_context(&ctx, ctx.seed());
    assert_eq!(input.examples.len(), prompt::EXAMPLES);
    assert!(input.examples.iter().all(|e| e.telemetry.is_none()));
    insta::assert_snapshot!(prompt::render(Style::Completion, &input).to_text());
}

#[test]
fn repair_prompts_carry_the_answer_and_the_diagnostics() {
    let ctx = trained_context();
    let input = PromptInput::from_context(&ctx, ctx.best());
    let rejection = Rejection {
        outcome: Outcome::ShapeError,
        source: Some("net X(input = [3, 32, 32], classes = 100) {\n    conv(3 -> 8, k = 3);\n    linear(8 -> 100);\n}".to_string()),
        diagnostics: "error: `linear1` needs a flat input but receives [8, 30, 30]; insert `gap` or `flatten` first\n".to_string(),
    };
    let raw = "Here you go:\n```nas\nnet X(input = [3, 32, 32], classes = 100) {\n    conv(3 -> 8, k = 3);\n    linear(8 -> 100);\n}\n```";
    let chat = prompt::repair(&prompt::render(Style::Chat, &input), raw, &rejection);
    let Prompt::Chat { messages } = &chat else {
        panic!("chat expected")
    };
    assert_eq!(messages.len(), 4);
    insta::assert_snapshot!("repair_chat_tail", {
        let tail = &messages[2..];
        tail.iter()
            .map(|m| format!("=== {} ===\n{}", m.role.as_str(), m.content))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let completion = prompt::repair(&prompt::render(Style::Completion, &input), raw, &rejection);
    insta::assert_snapshot!("repair_completion", completion.to_text());
}
