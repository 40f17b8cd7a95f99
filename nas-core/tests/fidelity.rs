//! End-to-end tests of `nas-core fidelity` through the real binary on tiny data:
//! a check on the embedded task writes its figures, JSON and page, and a search
//! of the same task then states its noise; a check on CIFAR-format files; a
//! check killed during a training resumes without repeating finished ones; bad
//! flags get clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_core::data::PIXELS;
use nas_core::data::cifar::{CIFAR10_TEST, CIFAR10_TRAIN};
use nas_core::fidelity;
use nas_core::store::{SqliteStore, Store, TrialStatus};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nas-core");

/// Task settings that keep a training to a fraction of a second.
const TINY: &[&str] = &[
    "--epochs",
    "1",
    "--train-size",
    "64",
    "--test-size",
    "32",
    "--batch",
    "32",
];

fn nas(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CI", "true")
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(runs: &Path, name: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "fidelity",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
        "--mutants",
        "3",
        "--reference-factor",
        "2",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    nas(&args)
}

/// A small `evolve` run with the `mutate` proposer on the tiny task.
fn tiny_search(runs: &Path, name: &str, trials: &str, test_size: &str) -> Output {
    nas(&[
        "evolve",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
        "--proposer",
        "mutate",
        "--trials",
        trials,
        "--no-time-budget",
        "--epochs",
        "1",
        "--train-size",
        "64",
        "--test-size",
        test_size,
        "--batch",
        "32",
    ])
}

#[test]
fn a_check_writes_its_figures_and_a_search_of_the_same_task_states_its_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let out = check(tmp.path(), "f", &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for needle in [
        "Spearman ρ",
        "Kendall τ",
        "seed noise (pooled SD)",
        "between-network SD",
        "verdict: this proxy",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}`:\n{stdout}");
    }
    // 4 networks (the seed and 3 mutants) × (2 search seeds + 1 reference).
    let dir = tmp.path().join("f");
    let trials = SqliteStore::inspect(&dir).unwrap().trials().unwrap();
    assert_eq!(trials.len(), 12);
    assert!(trials.iter().all(|t| t.status() == TrialStatus::Done));
    let reference: Vec<_> = trials.iter().filter(|t| t.trial.epochs == 2).collect();
    assert_eq!(
        reference.len(),
        4,
        "one reference training per network at 2× the epochs"
    );
    let hashes: std::collections::HashSet<_> = trials.iter().map(|t| &t.trial.hash).collect();
    assert_eq!(hashes.len(), 4, "four distinct networks");

    let a = fidelity::read(&dir).unwrap();
    assert!(a.complete);
    assert_eq!(a.members.len(), 4);
    assert_eq!(a.members[0].label, "seed");
    assert!(
        a.members
            .iter()
            .all(|m| m.search.len() == 2 && m.reference.is_some())
    );
    assert_eq!((a.search_epochs, a.reference_epochs), (1, 2));
    assert!(a.noise_sd.is_some() && a.between_sd.is_some());
    assert_eq!(a.key.train_size, Some(64));
    // The two seeds of a network are different trainings: not every pair equal.
    assert!(a.members.iter().any(|m| m.search[0] != m.search[1]));
    let page = std::fs::read_to_string(dir.join(fidelity::PAGE_FILE)).unwrap();
    assert!(page.contains("<svg"), "{page}");
    assert_eq!(page.matches("<circle").count(), 4, "one point per network");

    // The same name again: an error that says how to continue it.
    let out = check(tmp.path(), "f", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("nas-core fidelity --resume"),
        "{}",
        text(&out).1
    );

    // A search of the same task reads the noise measured by the check.
    let out = tiny_search(tmp.path(), "s", "2", "32");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("noise: a score is ±") && stderr.contains("measured by the fidelity check"),
        "{stderr}"
    );
    let report = std::fs::read_to_string(tmp.path().join("s/report.html")).unwrap();
    assert!(
        report.contains("measured by the fidelity check"),
        "{report}"
    );

    // A comparison of the same task keeps its runs one level deeper: it finds the
    // check too and measures differences against that noise.
    let out = nas(&[
        "compare",
        "--runs-dir",
        tmp.path().to_str().unwrap(),
        "--name",
        "cmp",
        "--proposers",
        "mutate,random",
        "--seeds",
        "2",
        "--trials",
        "1",
        "--no-time-budget",
        "--epochs",
        "1",
        "--train-size",
        "64",
        "--test-size",
        "32",
        "--batch",
        "32",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(c["noise"]["sd"].is_number(), "{stdout}");
    let verdict = c["tests"][0]["verdict"].as_str().unwrap();
    assert!(verdict.contains("× the noise of one trial"), "{verdict}");

    // Another task (more test images): no measurement applies.
    let out = tiny_search(tmp.path(), "other", "1", "48");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("noise: unknown"), "{stderr}");
}

/// Five training batches of 16 images and a test batch of 16, CIFAR-10 format.
fn write_cifar10(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let file = |first: u8| {
        let mut out = Vec::new();
        for k in 0..16u8 {
            out.push(k % 10);
            out.extend((0..PIXELS).map(|i| (i as u8).wrapping_mul(k + 1).wrapping_add(first)));
        }
        out
    };
    for (b, name) in CIFAR10_TRAIN.iter().enumerate() {
        std::fs::write(dir.join(name), file(b as u8)).unwrap();
    }
    std::fs::write(dir.join(CIFAR10_TEST), file(200)).unwrap();
}

#[test]
fn a_check_runs_on_cifar_format_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cifar");
    write_cifar10(&data);
    let out = nas(&[
        "fidelity",
        "--runs-dir",
        tmp.path().to_str().unwrap(),
        "--name",
        "c",
        "--mutants",
        "2",
        "--reference-factor",
        "2",
        "--dataset",
        "cifar10",
        "--data-dir",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "16",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let a: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(a["key"]["dataset"], "cifar10");
    assert_eq!(a["members"].as_array().unwrap().len(), 3);
    assert_eq!(a["complete"], true);
}

#[test]
fn a_check_killed_during_a_training_resumes_without_repeating_finished_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "fidelity",
            "--runs-dir",
            runs,
            "--name",
            "k",
            "--mutants",
            "2",
            "--reference-factor",
            "2",
            "--epochs",
            "1",
            "--train-size",
            "640",
            "--test-size",
            "64",
            "--batch",
            "32",
        ])
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = tmp.path().join("k");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no training was running in time");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the check ended before it was killed"
        );
        if dir.join("nas.db").exists()
            && let Ok(store) = SqliteStore::inspect(&dir)
            && let Ok(trials) = store.trials()
            && trials.iter().any(|t| t.status() == TrialStatus::Done)
            && trials.iter().any(|t| t.status() == TrialStatus::Running)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = SqliteStore::inspect(&dir).unwrap().trials().unwrap();
    let finished: Vec<_> = before
        .iter()
        .filter(|t| t.status().is_final())
        .cloned()
        .collect();
    assert!(!finished.is_empty());

    // The task cannot change on resume.
    let out = nas(&[
        "fidelity",
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "3",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("--epochs cannot change"),
        "{}",
        text(&out).1
    );

    let out = nas(&["fidelity", "--resume", dir.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("already done"), "{stderr}");
    let after = SqliteStore::inspect(&dir).unwrap().trials().unwrap();
    assert_eq!(after.len(), 9, "3 networks × 3 trainings, nothing added");
    for t in &finished {
        let now = after.iter().find(|a| a.id == t.id).unwrap();
        assert_eq!(now, t, "a finished training changed on resume");
    }
    assert!(after.iter().all(|t| t.status() == TrialStatus::Done));
    assert!(after.iter().all(|t| t.runs <= 2));
    let a = fidelity::read(&dir).unwrap();
    assert!(a.complete);
    assert_eq!(a.members.len(), 3);
}

#[test]
fn bad_flags_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (extra, needle) in [
        (&["--repeats", "1"][..], "at least 2 training seeds"),
        (&["--mutants", "1"][..], "at least 2 mutants"),
        (&["--reference-factor", "1"][..], "at least 2× longer"),
        (&["--dataset", "mnist"][..], "unknown dataset `mnist`"),
        (&["--widths", "step:0..=8"][..], "widths"),
        (
            &["--dataset", "cifar10", "--data-dir", "/nonexistent"][..],
            "/nonexistent",
        ),
    ] {
        let mut args = vec![
            "fidelity",
            "--runs-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "bad",
        ];
        args.extend_from_slice(TINY);
        args.extend_from_slice(extra);
        let out = nas(&args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{extra:?} should fail");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = nas(&["fidelity", "--resume", "/nonexistent/run"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("/nonexistent/run"),
        "{}",
        text(&out).1
    );

    // A search's directory is not a fidelity check.
    let out = tiny_search(tmp.path(), "search", "1", "32");
    assert!(out.status.success(), "{}", text(&out).1);
    let out = nas(&[
        "fidelity",
        "--resume",
        tmp.path().join("search").to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("is this a fidelity check"), "{stderr}");
}

/// Worker processes train the planned trainings with their planned seeds: two
/// jobs give the scores one job gives, trial by trial.
#[test]
fn two_jobs_give_the_scores_of_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scores = Vec::new();
    for jobs in ["1", "2"] {
        let name = format!("j{jobs}");
        let out = check(tmp.path(), &name, &["--jobs", jobs]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let trials = SqliteStore::inspect(&tmp.path().join(&name))
            .unwrap()
            .trials()
            .unwrap();
        assert!(trials.iter().all(|t| t.status().is_final() && t.runs == 1));
        let s: Vec<(String, Option<f64>, Option<f64>)> = trials
            .into_iter()
            .map(|t| (t.trial.note.unwrap_or_default(), t.accuracy, t.test_loss))
            .collect();
        scores.push(s);
    }
    assert_eq!(scores[0], scores[1]);
    // The repeats differ in their seed, so not every pair of repeats agrees.
    let notes: HashSet<&str> = scores[0].iter().map(|s| s.0.as_str()).collect();
    assert_eq!(notes.len(), scores[0].len(), "each training planned once");
}

/// A run records the content hash of its data: a CIFAR file changed between a
/// run and its resume (same size, other bytes) is refused with a clear error;
/// a truncated one is named with its offset by the reader.
#[test]
fn changed_or_truncated_data_is_detected_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cifar");
    write_cifar10(&data);
    let runs = tmp.path().to_str().unwrap();
    let first = nas(&[
        "evolve",
        "--runs-dir",
        runs,
        "--name",
        "d",
        "--dataset",
        "cifar10",
        "--data-dir",
        data.to_str().unwrap(),
        "--proposer",
        "mutate",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--trials",
        "1",
        "--no-time-budget",
        "--jobs",
        "1",
    ]);
    let (_, stderr) = text(&first);
    assert!(first.status.success(), "{stderr}");
    let dir = tmp.path().join("d");
    let resume = || nas(&["evolve", "--resume", dir.to_str().unwrap(), "--trials", "2"]);
    // The same data: the run continues.
    let again = resume();
    assert!(again.status.success(), "{}", text(&again).1);
    // One byte changed, same size.
    let file = data.join(CIFAR10_TRAIN[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let out = resume();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("training data changed"), "{stderr}");
    // Truncated.
    std::fs::write(&file, &bytes[..bytes.len() - 7]).unwrap();
    let out = resume();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(CIFAR10_TRAIN[0]), "{stderr}");
}
