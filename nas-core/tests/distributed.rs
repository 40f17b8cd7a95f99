//! Searches served by worker processes through a real PostgreSQL server
//! (`NAS_PG_URL`; `scripts/postgres.sh start` prints one): several workers on one
//! run, a worker killed mid-trial, a worker paused past its lease, a trial that
//! kills every worker that takes it. Without `NAS_PG_URL` each test prints a
//! loud SKIPPED line, unless `NAS_REQUIRE_PG` is set (as `.ci/run` sets it).
//!
//! The tests run one at a time (a lock): they time leases, and two searches
//! with their workers at once on 2 cores would starve the heartbeats.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod pg;

use nas_core::store::TrialStatus;
use pg::{Run, Worker, pg_url, serial};
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn three_workers_serve_one_run_and_every_trial_ends_once() {
    let Some(url) = pg_url("the three-worker search") else {
        return;
    };
    let _one = serial();
    let run = Run::new(&url, "three");
    let workers: Vec<Worker> = ["a", "b", "c"]
        .iter()
        .map(|n| Worker::start(&url, &run.name, n, 10.0))
        .collect();
    let coord = run.coordinate(24, false);
    let out = coord.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let trials = run.trials();
    assert_eq!(trials.len(), 25, "the seed and 24 proposals");
    let steps: HashSet<i64> = trials.iter().map(|t| t.step).collect();
    assert_eq!(steps.len(), 25, "each step recorded once");
    let trained: Vec<_> = trials
        .iter()
        .filter(|t| t.status != TrialStatus::Invalid)
        .collect();
    for t in &trained {
        assert_eq!(t.status, TrialStatus::Done, "{t:?}");
        assert_eq!(t.runs, 1, "trained once: {t:?}");
    }
    for t in &trained {
        let epochs = t.telemetry.as_array().map_or(0, Vec::len);
        assert_eq!(epochs, 1, "one epoch of telemetry: {t:?}");
        assert!(t.accuracy.is_some(), "{t:?}");
    }
    // The leaderboard is what the store holds.
    let report = std::process::Command::new(pg::BIN)
        .arg("report")
        .arg(run.dir.path().join(&run.name))
        .arg("--json")
        .output()
        .unwrap();
    assert!(report.status.success());
    let board: Vec<serde_json::Value> = serde_json::from_slice(&report.stdout).unwrap();
    assert!(!board.is_empty());
    for e in &board {
        let t = trained
            .iter()
            .find(|t| Some(t.id) == e["trial"].as_i64())
            .unwrap();
        assert_eq!(e["accuracy"].as_f64(), t.accuracy, "{e}");
    }
    let top = trained
        .iter()
        .filter_map(|t| t.accuracy)
        .fold(0.0, f64::max);
    assert_eq!(board[0]["accuracy"].as_f64(), Some(top));
    let by: HashSet<&str> = trained.iter().filter_map(|t| t.worker_name()).collect();
    assert_eq!(by.len(), 3, "each worker trained some: {by:?}");
    for w in workers {
        let (ok, log) = w.finish(Duration::from_secs(30));
        assert!(ok, "a worker exits 0 once the run is finished:\n{log}");
        assert!(log.contains("the run is finished"), "{log}");
    }
}

/// ASHA through PostgreSQL: two workers claim new trials and promotions alike;
/// every promotion continues its source from the checkpoint kept in the
/// database (its telemetry starts with the source's epochs), no trial is
/// promoted twice, and the checkpoints left at the end stay within the bound.
#[test]
fn asha_promotions_are_served_by_workers_through_the_database() {
    let Some(url) = pg_url("the ASHA search on PostgreSQL") else {
        return;
    };
    let _one = serial();
    let run = Run::new(&url, "asha");
    let workers: Vec<Worker> = ["a", "b"]
        .iter()
        .map(|n| Worker::start(&url, &run.name, n, 10.0))
        .collect();
    let coord = run.coordinate_with(
        10,
        false,
        &[
            "--scheduler",
            "asha",
            "--min-epochs",
            "1",
            "--max-epochs",
            "4",
            "--eta",
            "2",
        ],
    );
    let out = coord.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let store = nas_core::store::PgStore::attach(&url, &run.name).unwrap();
    use nas_core::store::Store as _;
    let trials = store.trials().unwrap();
    let mut promotions = 0;
    for t in trials.iter().filter(|t| t.is_promotion()) {
        promotions += 1;
        let from = t.trial.continues.unwrap();
        let src = trials.iter().find(|s| s.id == from).unwrap();
        assert_eq!(
            (t.trial.rung, t.trial.hash.as_str()),
            (src.trial.rung + 1, src.trial.hash.as_str())
        );
        assert_eq!(
            trials
                .iter()
                .filter(|o| o.trial.continues == Some(from))
                .count(),
            1
        );
        assert_eq!(t.status(), TrialStatus::Done, "{t:?}");
        let epochs = |r: &nas_core::store::TrialRecord| -> Vec<String> {
            r.telemetry
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("{} {} {}", e["epoch"], e["train_loss"], e["top1"]))
                .collect()
        };
        let (mine, theirs) = (epochs(t), epochs(src));
        assert_eq!(mine.len(), t.trial.epochs as usize);
        assert_eq!(
            mine[..theirs.len()],
            theirs[..],
            "trial {} continues {from}",
            t.id
        );
    }
    assert!(promotions >= 3, "{promotions} promotions");
    assert!(trials.iter().any(|t| t.trial.rung == 2));
    let held = store.checkpoints().unwrap();
    assert!(held.len() <= 2 * 2, "{held:?}");
    for w in workers {
        let (ok, log) = w.finish(Duration::from_secs(30));
        assert!(ok, "{log}");
    }
}

#[test]
fn a_killed_workers_trial_is_trained_again_by_another() {
    let Some(url) = pg_url("the killed-worker search") else {
        return;
    };
    let _one = serial();
    let run = Run::new(&url, "killed");
    let mut victim = Worker::start(&url, &run.name, "victim", 2.0);
    let coord = run.coordinate(3, true);
    let id = run.wait_running_by("victim", Duration::from_secs(60));
    victim.kill();
    let other = Worker::start(&url, &run.name, "other", 2.0);
    let out = coord.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let trials = run.trials();
    let t = trials.iter().find(|t| t.id == id).unwrap();
    assert_eq!(t.status, TrialStatus::Done, "{t:?}");
    assert_eq!(t.runs, 2, "the killed attempt and one more: {t:?}");
    assert_eq!(t.worker_name(), Some("other"), "{t:?}");
    for t in trials.iter().filter(|t| t.id != id) {
        assert!(t.status.is_final(), "{t:?}");
        assert!(t.runs <= 1, "{t:?}");
    }
    let (ok, log) = other.finish(Duration::from_secs(30));
    assert!(ok, "{log}");
}

#[test]
fn a_paused_worker_past_its_lease_cannot_write_its_result() {
    let Some(url) = pg_url("the paused-worker search") else {
        return;
    };
    let _one = serial();
    let run = Run::new(&url, "paused");
    let sleeper = Worker::start(&url, &run.name, "sleeper", 2.0);
    let coord = run.coordinate(2, true);
    let id = run.wait_running_by("sleeper", Duration::from_secs(60));
    sleeper.signal("STOP");
    let other = Worker::start(&url, &run.name, "other", 2.0);
    // The lease passes to the other worker while the sleeper is stopped.
    run.wait_until(
        Duration::from_secs(60),
        "the trial to pass to `other`",
        |ts| {
            ts.iter()
                .any(|t| t.id == id && t.runs == 2 && t.worker_name() == Some("other"))
        },
    );
    sleeper.signal("CONT");
    let out = coord.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, log) = sleeper.finish(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert!(
        log.contains("1 dropped after losing the lease"),
        "the sleeper's late result was refused:\n{log}"
    );
    let t = run.trials().into_iter().find(|t| t.id == id).unwrap();
    assert_eq!(
        (t.status, t.runs, t.worker_name()),
        (TrialStatus::Done, 2, Some("other"))
    );
    let (ok, log) = other.finish(Duration::from_secs(30));
    assert!(ok, "{log}");
}

#[test]
fn a_trial_that_kills_every_worker_ends_failed_and_the_search_goes_on() {
    let Some(url) = pg_url("the crash-loop search") else {
        return;
    };
    let _one = serial();
    let run = Run::new(&url, "doomed");
    let mut worker = Worker::start(&url, &run.name, "w0", 1.5);
    let coord = run.coordinate(2, true);
    // The first trial (the seed) kills whoever trains it: three times.
    let doomed = run.wait_running_by("w0", Duration::from_secs(60));
    for k in 1..=3 {
        run.wait_until(Duration::from_secs(60), "the doomed trial to run", |ts| {
            ts.iter()
                .any(|t| t.id == doomed && t.status == TrialStatus::Running && t.runs == k)
        });
        worker.kill();
        worker = Worker::start(&url, &run.name, &format!("w{k}"), 1.5);
    }
    let out = coord.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let trials = run.trials();
    let t = trials.iter().find(|t| t.id == doomed).unwrap();
    assert_eq!((t.status, t.runs), (TrialStatus::Failed, 3), "{t:?}");
    assert!(
        t.error
            .as_deref()
            .is_some_and(|e| e.contains("died or lost its lease 3 time")),
        "{t:?}"
    );
    let others: Vec<_> = trials.iter().filter(|t| t.id != doomed).collect();
    assert_eq!(others.len(), 2);
    assert!(
        others.iter().all(|t| t.status == TrialStatus::Done),
        "{others:?}"
    );
    let (ok, log) = worker.finish(Duration::from_secs(30));
    assert!(ok, "{log}");
}

#[test]
fn a_killed_coordinator_resumes_while_its_workers_keep_training() {
    let Some(url) = pg_url("the killed-coordinator search") else {
        return;
    };
    let _one = serial();
    let run = Run::new(&url, "coordinator");
    let workers = [
        Worker::start(&url, &run.name, "a", 5.0),
        Worker::start(&url, &run.name, "b", 5.0),
    ];
    let mut coord = run.coordinate(5, true);
    run.wait_until(
        Duration::from_secs(60),
        "a finished and a running trial",
        |ts| {
            ts.iter().any(|t| t.status == TrialStatus::Done)
                && ts.iter().any(|t| t.status == TrialStatus::Running)
        },
    );
    coord.kill().unwrap(); // SIGKILL
    coord.wait().unwrap();
    let before = run.trials();
    // The workers go on with what was queued.
    run.wait_until(
        Duration::from_secs(60),
        "the queued trials to be trained",
        |ts| ts.iter().all(|t| t.status.is_final()),
    );
    let out = std::process::Command::new(pg::BIN)
        .arg("evolve")
        .arg("--resume")
        .arg(run.dir.path().join(&run.name))
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let after = run.trials();
    assert_eq!(after.len(), 6, "the seed and 5 proposals: {after:#?}");
    for t in &after {
        assert!(t.status.is_final(), "{t:?}");
        assert!(t.runs <= 1, "nothing trained twice: {t:?}");
    }
    for t in before.iter().filter(|t| t.status.is_final()) {
        let now = after.iter().find(|a| a.id == t.id).unwrap();
        assert_eq!((now.status, now.runs), (t.status, t.runs));
    }
    for w in workers {
        let (ok, log) = w.finish(Duration::from_secs(30));
        assert!(ok, "{log}");
    }
}

/// The Slurm recipe, run outside Slurm: array task 0 (the coordinator) and
/// task 1 (a worker) as Slurm would start them.
#[test]
fn the_slurm_recipe_runs_a_search() {
    let Some(url) = pg_url("the Slurm recipe") else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/slurm/nas-search.sbatch");
    let task = |id: &str| {
        std::process::Command::new("bash")
            .arg(&script)
            .current_dir(tmp.path())
            .env("NAS_DB", &url)
            .env("NAS_CORE", pg::BIN)
            .env("SLURM_ARRAY_JOB_ID", format!("{}", std::process::id()))
            .env("SLURM_ARRAY_TASK_ID", id)
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("NAS_TRIALS", "3")
            .env("NAS_EPOCHS", "1")
            .env(
                "NAS_EVOLVE_ARGS",
                "--proposer mutate --train-size 64 --test-size 32 --batch 32",
            )
            .env("CI", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let worker = task("1");
    let coord = task("0");
    let out = coord.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = worker.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("the run is finished"), "{log}");
    let run = format!("search-{}", std::process::id());
    let dir = tmp.path().join("runs").join(&run);
    assert!(dir.join("report.html").is_file());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM trials WHERE run = $1 AND status = 'done' AND worker IS NOT NULL",
            &[&run],
        )
        .unwrap()
        .get(0);
    assert!(n >= 3, "{n} trials trained by the worker");
}

/// A worker whose database stays unreachable waits `--db-wait` seconds, then
/// exits with an error that says so (no server needed: nothing listens on
/// port 1).
#[test]
fn a_worker_gives_up_on_an_unreachable_database_with_a_clear_error() {
    let started = std::time::Instant::now();
    let out = std::process::Command::new(pg::BIN)
        .args(["worker", "--storage", "postgres://nas@127.0.0.1:1/nas"])
        .args(["--run", "r", "--db-wait", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unreachable for 2 s"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
