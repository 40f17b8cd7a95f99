//! A search that goes on while its PostgreSQL server restarts: the coordinator
//! and the workers wait the outage out, reconnect and finish, and no trial is
//! lost or trained twice. It restarts the server of `scripts/postgres.sh` (the
//! one `NAS_PG_URL` names), so it lives in a test binary of its own; without that
//! server it prints a loud SKIPPED line, unless `NAS_REQUIRE_PG` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod pg;

use nas_core::store::TrialStatus;
use pg::{Run, Worker, pg_url};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

#[test]
fn a_search_survives_a_database_restart() {
    let Some(url) = pg_url("the database-restart search") else {
        return;
    };
    // Only the server the script manages can be restarted from here.
    let ours = Command::new(script()).arg("url").output().unwrap();
    let ours = String::from_utf8_lossy(&ours.stdout).trim().to_string();
    if ours != url {
        assert!(
            std::env::var_os("NAS_REQUIRE_PG").is_none(),
            "NAS_PG_URL ({url}) is not the server of scripts/postgres.sh ({ours:?}), so it cannot be restarted"
        );
        eprintln!(
            "\n*** SKIPPED: NAS_PG_URL is not scripts/postgres.sh's server; the restart test did not run. ***\n"
        );
        return;
    }
    let run = Run::new(&url, "restart");
    let workers = [
        Worker::start(&url, &run.name, "a", 5.0),
        Worker::start(&url, &run.name, "b", 5.0),
    ];
    let coord = run.coordinate(6, true);
    // Restart while trials train.
    run.wait_until(Duration::from_secs(60), "two finished trials", |ts| {
        ts.iter().filter(|t| t.status == TrialStatus::Done).count() >= 2
            && ts.iter().any(|t| t.status == TrialStatus::Running)
    });
    let out = Command::new(script()).arg("restart").output().unwrap();
    assert!(
        out.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = coord.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let trials = run.trials();
    assert_eq!(trials.len(), 7, "the seed and 6 proposals: {trials:#?}");
    for t in &trials {
        assert!(
            t.status == TrialStatus::Done || t.status == TrialStatus::Invalid,
            "{t:?}"
        );
        assert!(t.runs <= 2, "{t:?}");
    }
    let mut logs = std::fs::read_to_string(run.dir.path().join(&run.name).join("evolve.log"))
        .unwrap_or_default();
    for w in workers {
        let (ok, log) = w.finish(Duration::from_secs(60));
        assert!(ok, "a worker outlives the restart:\n{log}");
        assert!(log.contains("the run is finished"), "{log}");
        logs.push_str(&log);
    }
    // The outage was met (and waited out), not slipped between statements.
    assert!(logs.contains("retrying"), "{logs}");
}
