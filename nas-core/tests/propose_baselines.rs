//! The two baselines behind the `Proposer` trait: one mutation of a selected parent
//! and a fresh random width assignment over the seed's width classes; and the
//! `propose` command line over them (text and JSON output, valid rate).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure is a test failure"
)]

use nas_core::propose::{
    Budget, Context, MutateProposer, Outcome, Proposer, RandomProposer, Selection, Tally, Telemetry,
};
use nas_dsl::mutate::Mutator;
use std::collections::HashSet;

fn seed_path(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn ctx(rel: &str, budget: Budget, widths: &str) -> Context {
    let text = std::fs::read_to_string(seed_path(rel)).unwrap();
    let seed = nas_dsl::check_str(&text).unwrap().remove(0);
    Context::new(seed, budget, widths.parse().unwrap())
}

#[tokio::test]
async fn random_assignments_keep_the_task_and_vary_every_class() {
    let mut c = ctx(
        "models/nas/small_cnn.nas",
        Budget::default(),
        "step:8..=256",
    );
    let mut p = RandomProposer::new(11);
    let mut seen = HashSet::new();
    for _ in 0..12 {
        let proposal = p.propose(&c).await;
        assert_eq!(proposal.attempts.len(), 1);
        assert_eq!(proposal.outcome(), Outcome::Ok, "{proposal:?}");
        let arch = proposal.arch.unwrap();
        assert_eq!(arch.net().input(), c.seed().net().input());
        assert_eq!(arch.net().output(), c.seed().net().output());
        // Every class lands on the step grid.
        assert!(arch.classes().widths().iter().all(|w| w % 8 == 0));
        assert!(seen.insert(arch.source().to_string()));
        c.record(arch, None);
    }
}

#[tokio::test]
async fn random_proposals_over_budget_are_rejected_and_recorded() {
    let c = ctx(
        "models/nas/small_cnn.nas",
        Budget {
            max_params: Some(30_000),
            max_flops: None,
            max_memory: None,
            batch: 0,
        },
        "uniform:4..=1024",
    );
    let mut p = RandomProposer::new(5);
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        let proposal = p.propose(&c).await;
        if let Some(arch) = &proposal.arch {
            assert!(arch.net().params() <= 30_000);
        } else {
            let d = proposal.attempts[0].diagnostics.as_deref().unwrap();
            assert!(d.contains("over the budget of 30,000"), "{d}");
        }
        outcomes.push(proposal.outcome());
    }
    // Widths up to 1024 overshoot a 30k budget most of the time.
    assert!(outcomes.contains(&Outcome::OverBudget), "{outcomes:?}");
}

#[tokio::test]
async fn mutation_starts_from_the_best_trained_parent() {
    let mut c = ctx(
        "nas-dsl/tests/data/tiny_resnet.nas",
        Budget::default(),
        "step:8..=256",
    );
    let mutator = Mutator {
        widths: c.widths,
        structural: false,
    };
    let mut p = MutateProposer::new(mutator, Selection::Best, 1);
    let first = p.propose(&c).await;
    assert_eq!(first.outcome(), Outcome::Ok);
    assert!(first.note.as_deref().unwrap().contains("of `TinyResNet`"));
    let child = first.arch.unwrap();
    c.record(
        child.clone(),
        Some(Telemetry {
            rungs: Vec::new(),
            accuracy: Some(0.5),
            ..Telemetry::default()
        }),
    );
    assert_eq!(c.best().hash(), child.hash());
    assert_eq!(first.parent.as_deref(), Some(c.seed().hash()));
    // The next mutant starts from the child, now the best.
    let second = p.propose(&c).await;
    assert_eq!(second.outcome(), Outcome::Ok);
    assert_eq!(second.parent.as_deref(), Some(child.hash()));
}

#[tokio::test]
async fn tournament_selection_and_duplicates() {
    let mut c = ctx("models/nas/small_cnn.nas", Budget::default(), "step:8..=32");
    let mutator = Mutator {
        widths: c.widths,
        structural: false,
    };
    let mut p = MutateProposer::new(mutator, Selection::Tournament, 2);
    let mut proposals = Vec::new();
    // A tiny space (widths 8..=32 step 8), where repeats are likely.
    for _ in 0..40 {
        let proposal = p.propose(&c).await;
        if let Some(arch) = &proposal.arch {
            c.record(
                arch.clone(),
                Some(Telemetry {
                    rungs: Vec::new(),
                    accuracy: Some(arch.net().params() as f64 / 1e6),
                    ..Telemetry::default()
                }),
            );
        }
        proposals.push(proposal);
    }
    let tally = Tally::of(&proposals);
    assert_eq!(tally.proposals, 40);
    assert!(tally.valid > 0);
    // A duplicate mutant is drawn again: one is recorded only when the draws
    // ran out, and some accepted mutants needed redraws.
    for p in &proposals {
        let note = p.note.as_deref().unwrap_or("");
        if p.outcome() == Outcome::Duplicate {
            assert!(note.contains("63 duplicate draws skipped"), "{note}");
        }
    }
    assert!(
        proposals.iter().any(|p| p.arch.is_some()
            && p.note
                .as_deref()
                .unwrap_or("")
                .contains("duplicate draws skipped")),
        "no accepted mutant needed a redraw"
    );
    assert_eq!(
        tally.valid, tally.valid_first,
        "no repair rounds in baselines"
    );
}

fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas-core"))
        .arg("propose")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn cli_prints_proposals_and_the_valid_rate() {
    let seed = seed_path("models/nas/small_cnn.nas");
    let (ok, stdout, stderr) = run_cli(&[&seed, "--proposer", "random", "--n", "3", "--seed", "4"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("#1 ok (ok)"), "{stdout}");
    assert!(stdout.contains("#3 "), "{stdout}");
    assert!(
        stdout.contains("random: valid 3/3 (100%), before repair 3/3 (100%)"),
        "{stdout}"
    );
}

#[test]
fn cli_json_has_one_object_per_proposal_and_a_summary() {
    let seed = seed_path("nas-dsl/tests/data/tiny_resnet.nas");
    let (ok, stdout, stderr) = run_cli(&[
        &seed,
        "--proposer",
        "mutate",
        "--n",
        "4",
        "--json",
        "--max-params",
        "100000",
        "--widths",
        "step:8..=512",
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for (i, p) in lines[..4].iter().enumerate() {
        assert_eq!(p["index"], i + 1);
        let outcome = p["outcome"].as_str().unwrap();
        assert!(["ok", "over_budget", "duplicate"].contains(&outcome), "{p}");
        assert_eq!(p["attempts"][0]["outcome"], outcome);
        assert!(p["attempts"][0]["latency_ms"].as_f64().unwrap() >= 0.0);
        if outcome == "ok" {
            assert!(p["params"].as_u64().unwrap() <= 100_000);
        }
    }
    let summary = &lines[4]["summary"];
    assert_eq!(summary["proposer"], "mutate");
    assert_eq!(summary["proposals"], 4);
    let valid = summary["valid"].as_u64().unwrap();
    assert_eq!(summary["valid_rate"].as_f64().unwrap(), valid as f64 / 4.0);
}

#[test]
fn cli_rejects_a_seed_that_does_not_check() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.nas");
    std::fs::write(&bad, "net X(input = [4], classes = 2) { linear(5 -> 2); }").unwrap();
    let (ok, _, stderr) = run_cli(&[bad.to_str().unwrap(), "--proposer", "random"]);
    assert!(!ok);
    assert!(stderr.contains("does not check"), "{stderr}");
}

#[tokio::test]
async fn random_search_samples_without_replacement() {
    // Widths 8 or 16 for three classes: 8 networks, none of them the seed.
    let mut c = ctx("models/nas/small_cnn.nas", Budget::default(), "step:8..=16");
    let mut p = RandomProposer::new(4);
    let mut seen = HashSet::new();
    for _ in 0..8 {
        let proposal = p.propose(&c).await;
        let arch = proposal
            .arch
            .clone()
            .expect("a new network while any is left");
        assert!(seen.insert(arch.classes().widths()));
        c.record(arch, None);
    }
    // The space is exhausted: the ninth is a duplicate, after every draw.
    let ninth = p.propose(&c).await;
    assert_eq!(ninth.outcome(), Outcome::Duplicate);
    assert!(
        ninth
            .note
            .as_deref()
            .unwrap_or("")
            .contains("63 duplicate draws skipped"),
        "{:?}",
        ninth.note
    );
}
