//! `nas-core evolve --scheduler asha` end to end through the real binary on
//! tiny synthetic data: promotions come from their rung's top `1/η` and each
//! continues its source's training from the checkpoint (its telemetry starts
//! with the source's epochs, identical), the report and leaderboard show the
//! rungs and `best.nas` is the best at the highest fidelity, live checkpoints
//! stay bounded; and a run killed while a promotion trains resumes it from the
//! checkpoint it continues.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_core::store::{SqliteStore, Stage, Store, TrialRecord, TrialStatus};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nas-core");

/// Rungs of 1, 2 and 4 epochs, η = 2, on a task small enough for a fraction of
/// a second per epoch.
const ASHA: &[&str] = &[
    "--proposer",
    "mutate",
    "--scheduler",
    "asha",
    "--min-epochs",
    "1",
    "--max-epochs",
    "4",
    "--eta",
    "2",
    "--train-size",
    "128",
    "--test-size",
    "64",
    "--batch",
    "32",
    "--no-time-budget",
];

fn evolve(runs: &Path, name: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "evolve",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--name",
            name,
        ])
        .args(ASHA)
        .args(extra)
        .env("CI", "true")
        .output()
        .unwrap()
}

/// The per-epoch figures of a trial's telemetry that training determines
/// (wall times and throughput aside).
fn curve(t: &TrialRecord) -> Vec<(u64, String, String, String)> {
    t.telemetry
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["epoch"].as_u64().unwrap(),
                e["train_loss"].to_string(),
                e["test_loss"].to_string(),
                e["top1"].to_string(),
            )
        })
        .collect()
}

/// Every promotion continues a finished trial of the rung below with the same
/// network, which was in that rung's top ⌊n/η⌋ (n: the rung's results then),
/// none twice; a finished promotion's telemetry begins with its source's.
fn check_promotions(trials: &[TrialRecord]) -> usize {
    let search: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search)
        .collect();
    let epochs = [1u32, 2, 4];
    let mut promotions = 0;
    for t in &search {
        assert_eq!(t.trial.epochs, epochs[t.trial.rung as usize], "{t:#?}");
        let Some(from) = t.trial.continues else {
            assert_eq!(t.trial.rung, 0);
            continue;
        };
        promotions += 1;
        let src = search.iter().find(|s| s.id == from).unwrap();
        assert_eq!(t.trial.rung, src.trial.rung + 1);
        assert_eq!(t.trial.hash, src.trial.hash);
        assert_eq!(src.status(), TrialStatus::Done);
        assert_eq!(
            search
                .iter()
                .filter(|o| o.trial.continues == Some(from))
                .count(),
            1,
            "trial {from} promoted twice"
        );
        // Results of the source's rung finished before the promotion was made.
        let rung: Vec<&&TrialRecord> = search
            .iter()
            .filter(|o| o.trial.rung == src.trial.rung && o.status() == TrialStatus::Done)
            .filter(|o| o.finished_at.unwrap() <= t.created_at)
            .collect();
        let better = rung
            .iter()
            .filter(|o| o.accuracy > src.accuracy || (o.accuracy == src.accuracy && o.id < src.id))
            .count();
        assert!(
            better < rung.len() / 2,
            "trial {from} was ranked {} of {} when promoted",
            better + 1,
            rung.len()
        );
        if t.status() == TrialStatus::Done {
            let (mine, theirs) = (curve(t), curve(src));
            assert_eq!(mine.len(), t.trial.epochs as usize);
            assert_eq!(
                mine[..theirs.len()],
                theirs[..],
                "trial {} does not continue trial {from}'s training",
                t.id
            );
        }
    }
    promotions
}

#[test]
fn an_asha_search_promotes_the_best_and_continues_their_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = evolve(tmp.path(), "a", &["--trials", "12", "--jobs", "2"]);
    let stdout =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}");
    let dir = tmp.path().join("a");
    let store = SqliteStore::open(&dir).unwrap();
    let trials = store.trials().unwrap();
    assert!(trials.iter().all(|t| t.status().is_final()));
    let promotions = check_promotions(&trials);
    assert!(promotions >= 4, "{promotions} promotions");
    assert!(
        trials
            .iter()
            .any(|t| t.trial.rung == 2 && t.status() == TrialStatus::Done),
        "nothing reached the top rung"
    );
    // Checkpoints: none at the top rung, none of a promoted trial whose
    // continuation ended, at most η per rung below the top.
    let held = store.checkpoints().unwrap();
    assert!(held.len() <= 2 * 2, "{held:?}");
    for (id, bytes) in &held {
        assert!(*bytes > 0);
        let t = trials.iter().find(|t| t.id == *id).unwrap();
        assert!(t.trial.rung < 2, "a top-rung checkpoint is kept: {id}");
        assert!(!trials.iter().any(|c| c.trial.continues == Some(*id)));
    }
    // The best at the highest fidelity is best.nas and leads the leaderboard.
    let best = trials
        .iter()
        .filter(|t| t.trial.rung == 2 && t.status() == TrialStatus::Done)
        .max_by(|a, b| {
            a.accuracy
                .partial_cmp(&b.accuracy)
                .unwrap()
                .then(b.id.cmp(&a.id))
        })
        .unwrap();
    let best_nas = std::fs::read_to_string(dir.join("best.nas")).unwrap();
    assert!(best_nas.contains(best.trial.source.trim()), "{best_nas}");
    assert!(stdout.contains("4 (rung 2)"), "{stdout}");
    assert!(stdout.contains("rung 1 (2 epochs, from trial"), "{stdout}");
    assert!(stdout.contains("rungs (η = 2): "), "{stdout}");
    assert!(
        stdout.contains(&format!("{} checkpoint(s) kept", held.len())),
        "{stdout}"
    );
    // Promotions are not proposals: 12 proposals after the seed.
    assert!(stdout.contains("proposals: 12,"), "{stdout}");
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("Accuracy against epochs (rungs)"));
    assert!(report.contains("4 (rung 2)"));
}

#[test]
fn a_run_killed_while_a_promotion_trains_resumes_it_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "evolve",
            "--runs-dir",
            runs,
            "--name",
            "k",
            "--trials",
            "8",
            "--jobs",
            "1",
        ])
        // Slower epochs, so the kill lands inside one.
        .args(ASHA.iter().map(|a| if *a == "128" { "1024" } else { a }))
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: the kill takes its worker process too.
        .process_group(0)
        .spawn()
        .unwrap();
    let dir = tmp.path().join("k");
    let deadline = Instant::now() + Duration::from_secs(300);
    let running = loop {
        assert!(
            Instant::now() < deadline,
            "no promotion was running in time"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a promotion ran"
        );
        if let Ok(store) = SqliteStore::inspect(&dir)
            && let Ok(trials) = store.trials()
            && let Some(t) = trials
                .iter()
                .find(|t| t.is_promotion() && t.status() == TrialStatus::Running)
        {
            break t.id;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
    let interrupted = SqliteStore::inspect(&dir)
        .unwrap()
        .trial(running)
        .unwrap()
        .unwrap()
        .status()
        == TrialStatus::Running;
    let out = Command::new(BIN)
        .args(["evolve", "--resume", dir.to_str().unwrap()])
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let trials = SqliteStore::open(&dir).unwrap().trials().unwrap();
    let redone = trials.iter().find(|t| t.id == running).unwrap();
    assert!(redone.status().is_final(), "{redone:#?}");
    // Trained again (unless the kill fell just after it ended), from the
    // checkpoint: its curve still continues its source's.
    if interrupted {
        assert_eq!(redone.runs, 2, "{redone:#?}");
    }
    check_promotions(&trials);
    assert!(trials.iter().all(|t| t.status().is_final()));
}
