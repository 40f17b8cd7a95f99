//! The checker's training-memory model against real trainings: for every net
//! in `models` (with a 10-class head, for the synthetic task) and two large
//! ones, `nas-core train` at batch 32 reports its peak resident set, and the
//! estimate of `nas_dsl::memory` lies within a factor of 2 of it either way.
//! A net over `--max-memory` is refused before training, with the estimate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nas-core");

/// Measured peak RSS of one epoch on 64 images at batch `batch`.
fn measured(file: &Path, batch: u64) -> u64 {
    let out = Command::new(BIN)
        .arg("train")
        .arg(file)
        .args(["--epochs", "1", "--train-size", "64", "--test-size", "32"])
        .args(["--batch", &batch.to_string(), "--json"])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rss = report["epochs"]
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["peak_rss"].as_u64())
        .or_else(|| report["peak_rss"].as_u64());
    rss.unwrap_or_else(|| panic!("no peak_rss in {report}"))
}

#[test]
fn the_estimate_is_within_a_factor_of_two_of_real_trainings() {
    let tmp = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nas");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("classes = 100", "classes = 10")
            .replace("-> 100)", "-> 10)");
        let file = tmp.path().join(path.file_name().unwrap());
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    for (name, text) in [
        (
            "big.nas",
            "net Big(input = [3, 32, 32], classes = 10) { conv(3 -> 2000, k = 3, pad = 1); bn; relu; gap; linear(2000 -> 10); }",
        ),
        (
            "wide.nas",
            "net Wide(input = [3, 32, 32], classes = 10) { conv(3 -> 256, k = 3, pad = 1); bn; relu; conv(256 -> 256, k = 3, pad = 1); bn; relu; maxpool(k = 2); conv(256 -> 512, k = 3, pad = 1); bn; relu; gap; linear(512 -> 10); }",
        ),
    ] {
        let file = tmp.path().join(name);
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    assert!(files.len() >= 7, "{files:?}");
    let mut table = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let net = nas_dsl::check_str(&text).unwrap().remove(0);
        let estimate = net.training_memory().at_batch(32);
        let peak = measured(file, 32);
        let ratio = estimate as f64 / peak as f64;
        table.push(format!(
            "{}: estimate {} / measured {} = {ratio:.2}",
            net.name(),
            nas_dsl::memory::bytes(estimate),
            nas_dsl::memory::bytes(peak)
        ));
        assert!((0.5..=2.0).contains(&ratio), "{}", table.join("\n"));
    }
    eprintln!("{}", table.join("\n"));
}

#[test]
fn a_net_over_the_memory_budget_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    // The network of the issue: 1.2 M parameters, a 7.9 GB buffer at batch 64.
    let file = tmp.path().join("huge.nas");
    std::fs::write(
        &file,
        "net Big(input = [3, 32, 32], classes = 10) { conv(3 -> 30000, k = 3, pad = 1); bn; relu; gap; linear(30000 -> 10); }",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("train")
        .arg(&file)
        .args(["--epochs", "1", "--train-size", "64", "--test-size", "32"])
        .args(["--batch", "64", "--max-memory", "4G"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refused before training") && stderr.contains("over the budget of 4.0 GiB"),
        "{stderr}"
    );
    // `summary` states the estimate.
    let out = Command::new(BIN)
        .arg("summary")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("training memory: 703.4 MiB per sample"),
        "{stdout}"
    );
}
