//! The kill campaign: one search SIGKILLed at 25 seeded random moments and
//! resumed after each. At the end no finished trial is missing, changed or
//! duplicated, every finished trial has its telemetry, the database passes
//! SQLite's integrity check, and the trainings repeated are at most one per
//! kill (the trial in flight).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_core::store::{SqliteStore, Stage, Store, TrialRecord, TrialStatus};
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_nas-core");
const KILLS: usize = 25;

fn finished(dir: &std::path::Path) -> BTreeMap<i64, TrialRecord> {
    match SqliteStore::inspect(dir) {
        Ok(store) => store
            .trials()
            .unwrap()
            .into_iter()
            .filter(|t| t.status().is_final())
            .map(|t| (t.id, t))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

#[test]
fn a_search_killed_25_times_loses_and_repeats_nothing_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let dir = tmp.path().join("campaign");
    let mut rng = rand_pcg::Pcg64::seed_from_u64(25);
    let start = |fresh: bool| {
        let mut cmd = Command::new(BIN);
        if fresh {
            cmd.args([
                "evolve",
                "--runs-dir",
                runs,
                "--name",
                "campaign",
                "--jobs",
                "1",
            ])
            .args([
                "--proposer",
                "mutate",
                "--epochs",
                "1",
                "--train-size",
                "400",
            ])
            .args(["--test-size", "64", "--batch", "32", "--no-time-budget"])
            .args(["--trials", "60", "--final-epochs", "1", "--final-top", "2"]);
        } else {
            cmd.args(["evolve", "--resume", dir.to_str().unwrap()]);
        }
        cmd.env("CI", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    let mut before = BTreeMap::new();
    let mut fresh = true;
    while kills < KILLS {
        let mut child = start(fresh);
        fresh = false;
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        if child.try_wait().unwrap().is_some() {
            break; // the run finished before this kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // Nothing finished changes or disappears across a kill and resume.
        let now = finished(&dir);
        for (id, t) in &before {
            assert_eq!(
                now.get(id),
                Some(t),
                "finished trial {id} changed after kill {kills}"
            );
        }
        before = now;
    }
    assert_eq!(
        kills, KILLS,
        "the run finished after {kills} kills; give it more trials"
    );
    let out = start(false).wait_with_output().unwrap();
    assert!(out.status.success());
    let store = SqliteStore::inspect(&dir).unwrap();
    let trials = store.trials().unwrap();
    for (id, t) in &before {
        let now = trials.iter().find(|x| x.id == *id).unwrap();
        assert_eq!(now, t, "finished trial {id} changed by the last resume");
    }
    let search: Vec<_> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search)
        .collect();
    let steps: Vec<u64> = search.iter().map(|t| t.trial.step).collect();
    assert_eq!(
        steps,
        (0..=60).collect::<Vec<_>>(),
        "every step exactly once"
    );
    let hashes: Vec<&str> = search
        .iter()
        .filter(|t| !t.trial.hash.is_empty())
        .map(|t| t.trial.hash.as_str())
        .collect();
    assert_eq!(
        hashes.len(),
        hashes.iter().collect::<HashSet<_>>().len(),
        "no architecture twice"
    );
    let mut repeated = 0;
    for t in &trials {
        assert!(t.status().is_final(), "{t:?}");
        if t.status() == TrialStatus::Done {
            let epochs = t.telemetry.as_array().map_or(0, Vec::len);
            assert_eq!(epochs, t.trial.epochs as usize, "complete telemetry: {t:?}");
            assert!(t.accuracy.is_some() && t.finished_at.is_some());
        }
        if t.status() == TrialStatus::Failed && t.runs >= 3 {
            assert!(
                t.trial
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("time(s)")),
                "{t:?}"
            );
        }
        repeated += t.runs.saturating_sub(1) as usize;
    }
    assert!(
        repeated <= kills,
        "{repeated} repeated trainings for {kills} kills"
    );
    let conn = rusqlite::Connection::open(dir.join("nas.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert!(dir.join("report.html").is_file());
    eprintln!(
        "kill campaign: {kills} kills, {} trials, {repeated} trainings repeated",
        trials.len()
    );
}

/// A full disk under the run directory (a 400 KiB tmpfs): the search stops
/// with a clear error, the database stays consistent and keeps what finished,
/// and once there is space again `--resume` completes the run. Needs root (to
/// mount); elsewhere it prints a loud SKIPPED line, unless `NAS_REQUIRE_ROOT`
/// is set.
#[test]
fn a_full_disk_stops_the_search_cleanly_and_resume_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let mount = |opts: &str| {
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&mnt)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !mount("size=400k") {
        assert!(
            std::env::var_os("NAS_REQUIRE_ROOT").is_none(),
            "NAS_REQUIRE_ROOT is set but a tmpfs cannot be mounted here"
        );
        eprintln!(
            "\n*** SKIPPED: cannot mount a tmpfs (not root?), so the full-disk test did not run. ***\n"
        );
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let dir = mnt.join("r");
    let out = Command::new(BIN)
        .args(["evolve", "--runs-dir"])
        .arg(&mnt)
        .args([
            "--name",
            "r",
            "--jobs",
            "1",
            "--proposer",
            "mutate",
            "--epochs",
            "1",
        ])
        .args(["--train-size", "64", "--test-size", "32", "--batch", "32"])
        .args(["--no-time-budget", "--trials", "40"])
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the disk did not fill: {stderr}");
    assert!(stderr.contains("disk is full"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let kept = finished(&dir);
    assert!(!kept.is_empty(), "trials finished before the disk filled");
    // Space again: the run continues from what it kept.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(grown.success());
    let conn = rusqlite::Connection::open(dir.join("nas.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let out = Command::new(BIN)
        .args(["evolve", "--resume"])
        .arg(&dir)
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = finished(&dir);
    for (id, t) in &kept {
        assert_eq!(now.get(id), Some(t), "trial {id} changed");
    }
    let steps: Vec<u64> = now
        .values()
        .filter(|t| t.trial.stage == Stage::Search)
        .map(|t| t.trial.step)
        .collect();
    assert_eq!(
        steps,
        (0..=40).collect::<Vec<_>>(),
        "every step exactly once"
    );
}

/// NaN mid-training (a learning rate that blows every net up): each trial is
/// recorded as diverged with where it happened, and the search still ends with
/// its report.
#[test]
fn diverging_trials_are_recorded_and_the_search_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["evolve", "--runs-dir"])
        .arg(tmp.path())
        .args([
            "--name",
            "nan",
            "--jobs",
            "1",
            "--proposer",
            "mutate",
            "--epochs",
            "1",
        ])
        .args(["--train-size", "256", "--test-size", "32", "--batch", "32"])
        .args(["--lr", "1e9", "--no-time-budget", "--trials", "3"])
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let dir = tmp.path().join("nan");
    let trials = SqliteStore::inspect(&dir).unwrap().trials().unwrap();
    assert_eq!(trials.len(), 4, "{trials:#?}");
    for t in &trials {
        assert_eq!(t.status(), TrialStatus::Diverged, "{t:?}");
        assert!(
            t.trial
                .error
                .as_deref()
                .is_some_and(|e| e.contains("diverged in epoch")),
            "{t:?}"
        );
    }
    assert!(dir.join("report.html").is_file());
}
