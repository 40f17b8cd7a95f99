//! Every input the fuzzers kept (`fuzz/corpus/<target>/`) and every input that
//! once broke an invariant (`fuzz/regressions/<target>/`) goes through the fuzz
//! targets' invariants again in the ordinary test run, without libFuzzer: what
//! the fuzzers proved stays proved, and a fixed crash stays fixed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_and_every_once_failing_fuzz_input_keeps_the_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, check) in checks::TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(
            corpus.len() >= 5,
            "fuzz/corpus/{name} holds {} inputs; the fuzz campaign commits its corpus",
            corpus.len()
        );
        let regressions = inputs(&root.join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let bytes = std::fs::read(file).unwrap();
            let run = std::panic::catch_unwind(|| check(&bytes));
            assert!(
                run.is_ok(),
                "{name}: {} breaks an invariant",
                file.display()
            );
        }
        eprintln!(
            "{name}: {} corpus inputs, {} regression inputs",
            corpus.len(),
            regressions.len()
        );
    }
}
