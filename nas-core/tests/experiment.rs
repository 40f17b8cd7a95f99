//! `nas-core experiment` end to end on a tiny configuration, against the real stack:
//! a corpus of the default seed, its training, pairs with held-out parents, a real
//! LoRA fine-tune (PEFT, llama.cpp), the base and the tuned model served by
//! llama-server for the probe and the comparison, and the report; then a rerun that
//! finds every stage done.
//!
//! The error paths run everywhere. The live test needs `scripts/finetune-env.sh install`
//! and `scripts/local-llm.sh build --tools`; without them it prints a loud SKIPPED line,
//! unless `NAS_REQUIRE_FINETUNE` is set (as `.ci/run` sets it).

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{nas, s, stderr, tools_or_skip};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn bad_configurations_get_a_clear_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[corpus]\nsize = \n").unwrap();
    let run = nas(&["experiment", "--config", s(&broken), "--out", s(&out)]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("broken.toml"), "{}", stderr(&run));

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[finetune]\nrank = 8\n").unwrap();
    let run = nas(&["experiment", "--config", s(&unknown), "--out", s(&out)]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("unknown field `rank`"),
        "{}",
        stderr(&run)
    );

    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        "[search]\nseed_file = \"/nonexistent/seed.nas\"\n",
    )
    .unwrap();
    let base = dir.path().join("base.gguf");
    std::fs::write(&base, b"GGUF").unwrap();
    let run = nas(&[
        "experiment",
        "--config",
        s(&missing),
        "--out",
        s(&out),
        "--python",
        "/nonexistent/python",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("the fine-tuning environment is not installed"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists(), "nothing is written on bad input");
}

const TINY: &str = r#"
finetune_threads = 2
[search]
epochs = 1
trials = 2
widths = "step:8..=64"
jobs = 1
[search.train]
train_size = 384
test_size = 192
[corpus]
size = 14
train = 12
[pairs]
held_out = 0.25
[finetune]
steps = 3
batch = 2
lr = 1e-3
[probe]
proposals = 1
[compare]
seeds = 2
"#;

#[test]
fn a_tiny_experiment_runs_every_stage_and_continues() {
    let Some(_tools) = tools_or_skip("the live experiment test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let out = dir.path().join("exp");
    let run = nas(&["experiment", "--config", s(&config), "--out", s(&out)]);
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");

    let record = read_json(&out.join("experiment.json"));
    let stages: Vec<&str> = record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["corpus", "train", "pairs", "finetune", "probe", "compare"]
    );
    let stage = |name: &str| {
        record["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["summary"]
            .clone()
    };
    assert_eq!(stage("corpus")["records"], 14);
    assert_eq!(stage("train")["members"], 12);

    // Held-out parents are never a training prompt.
    let held = read_json(&out.join("held-out.json"));
    let held_parents: BTreeSet<String> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["worse"]["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!held_parents.is_empty());
    assert_eq!(
        stage("pairs")["held_out_parents"].as_u64().unwrap() as usize,
        held_parents.len()
    );
    let pairs: Vec<Value> = std::fs::read_to_string(out.join("pairs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        pairs.len() as u64,
        stage("pairs")["training_pairs"].as_u64().unwrap()
    );
    for p in &pairs {
        let worse = p["meta"]["worse"].as_str().unwrap();
        assert!(!held_parents.contains(worse), "{worse} is held out");
    }

    // The fine-tune trained and measured its loss.
    let ft = stage("finetune");
    assert!(ft["train_loss_after"].as_f64().unwrap().is_finite(), "{ft}");
    assert!(ft["seconds_per_step"].as_f64().unwrap() > 0.0, "{ft}");
    assert!(out.join("finetune/adapter.gguf").is_file());

    // The probe asked both models about every held-out parent.
    let probe = read_json(&out.join("probe.json"));
    let arms: Vec<&str> = probe
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["arm"].as_str().unwrap())
        .collect();
    assert_eq!(arms, ["base", "tuned"]);
    for r in probe.as_array().unwrap() {
        assert_eq!(r["parents"].as_u64().unwrap() as usize, held_parents.len());
        let counted: u64 = r["outcomes"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(counted, r["proposals"].as_u64().unwrap(), "{r}");
    }

    // The comparison: base, tuned and random, two runs each, every run trained.
    let cmp = read_json(&out.join("compare/compare.json"));
    assert_eq!(
        cmp["proposers"],
        serde_json::json!(["base", "tuned", "random"])
    );
    let runs = cmp["comparison"]["proposers"].as_array().unwrap();
    for p in runs {
        assert_eq!(p["best"].as_array().unwrap().len(), 2, "{p}");
    }
    for a in &cmp["arms"].as_array().unwrap()[..2] {
        assert_eq!(a["proposer"], "openai");
    }

    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    for part in [
        "Fine-tuning loss",
        "Proposals on held-out parents",
        "Best accuracy so far",
        "tuned vs random",
        "base vs tuned",
        "larger than the seed",
    ] {
        assert!(report.contains(part), "the report lacks {part}");
    }

    // A rerun finds every stage done, trains nothing and writes the report again.
    std::fs::remove_file(out.join("report.html")).unwrap();
    let again = nas(&["experiment", "--config", s(&config), "--out", s(&out)]);
    let err = stderr(&again);
    assert!(again.status.success(), "{err}");
    for name in ["corpus", "train", "pairs", "finetune", "probe", "compare"] {
        assert!(
            err.contains(&format!("== {name}: done before")),
            "{name}: {err}"
        );
    }
    assert!(!err.contains("[train] "), "{err}");
    assert!(out.join("report.html").is_file());

    // Another configuration in the same directory is refused.
    std::fs::write(&config, TINY.replace("seeds = 2", "seeds = 3")).unwrap();
    let other = nas(&["experiment", "--config", s(&config), "--out", s(&out)]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        stderr(&other).contains("another configuration (`compare` differ"),
        "{}",
        stderr(&other)
    );
}
