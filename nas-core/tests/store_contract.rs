//! The store contract every search role relies on, run on both stores: the
//! embedded SQLite file always, and a real PostgreSQL server when `NAS_PG_URL`
//! names one (`scripts/postgres.sh start` prints it). Without it the PostgreSQL
//! half prints a loud SKIPPED line, unless `NAS_REQUIRE_PG` is set (as `.ci/run`
//! sets it), where it fails.
//!
//! Claims are exclusive under concurrency, leases expire in the database's
//! clock, an expired attempt is fenced (its heartbeat and result change
//! nothing), a trial that keeps losing its worker ends as failed after
//! `MAX_ATTEMPTS`, recovery never touches a live lease, the schema step is
//! idempotent, and ASHA promotions made from several connections at once never
//! pass a rung's quota, continue from the checkpoint their source left, and
//! free checkpoints no longer needed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod pg;

use nas_core::evolve::asha::Asha;
use nas_core::store::{
    MAX_ATTEMPTS, NewTrial, PgStore, SqliteStore, Stage, Store, TrialResult, TrialStatus, postgres,
};
use pg::pg_url;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Two connections to one fresh run's store.
type Pair = (Box<dyn Store>, Box<dyn Store>);

fn sqlite_pair(dir: &std::path::Path) -> Pair {
    let a = SqliteStore::create(dir).unwrap();
    let b = SqliteStore::attach(a.path()).unwrap();
    (Box::new(a), Box::new(b))
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A fresh run in the database, and its name.
fn pg_run(url: &str, test: &str) -> (PgStore, String) {
    postgres::init(url).unwrap();
    let run = format!(
        "contract-{test}-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::SeqCst)
    );
    (PgStore::create(url, &run).unwrap(), run)
}

fn pg_pair(url: &str, test: &str) -> Pair {
    let (a, run) = pg_run(url, test);
    let b = PgStore::attach(url, &run).unwrap();
    (Box::new(a), Box::new(b))
}

fn trial(step: u64) -> NewTrial {
    NewTrial {
        stage: Stage::Search,
        step,
        proposer: "mutate".into(),
        status: TrialStatus::Pending,
        name: Some("n".into()),
        source: format!("net n{step} {{ }}"),
        hash: format!("h{step}"),
        parent: None,
        outcome: "ok".into(),
        note: None,
        params: Some(10),
        flops: Some(20),
        epochs: 1,
        propose_ms: 1.0,
        error: None,
        rung: 0,
        continues: None,
    }
}

fn done(acc: f64) -> TrialResult {
    TrialResult {
        status: TrialStatus::Done,
        telemetry: serde_json::json!([{"epoch": 1}]),
        accuracy: Some(acc),
        top5: Some(acc),
        test_loss: Some(1.0),
        train_s: 0.5,
        error: None,
        checkpoint: None,
    }
}

/// Every pending trial is claimed exactly once by workers claiming at once from
/// their own connections.
fn claims_are_exclusive(mut coord: Box<dyn Store>, more: &dyn Fn() -> Box<dyn Store>) {
    for step in 0..24 {
        coord.record_proposal(&[], &trial(step)).unwrap();
    }
    let workers: Vec<Box<dyn Store>> = (0..4).map(|_| more()).collect();
    let claimed: Vec<Vec<i64>> = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(w, mut store)| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(c) = store.claim(&format!("w{w}"), 60.0).unwrap() {
                        assert_eq!(c.attempt, 1);
                        assert_eq!(c.trial.status(), TrialStatus::Running);
                        mine.push(c.trial.id);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 24, "every trial claimed: {claimed:?}");
    assert_eq!(distinct.len(), 24, "no trial claimed twice: {claimed:?}");
}

/// Lease expiry, reaping, fencing of the old attempt, and the attempt bound.
fn leases_expire_and_old_attempts_are_fenced(make: &dyn Fn() -> Pair) {
    let (mut coord, mut worker) = make();
    let id = coord.record_proposal(&[], &trial(1)).unwrap();
    let first = worker.claim("a", 0.3).unwrap().unwrap();
    assert_eq!((first.trial.id, first.attempt), (id, 1));
    assert!(worker.heartbeat(id, 1, 0.3).unwrap(), "a live lease renews");
    assert!(
        coord.reap().unwrap().is_empty(),
        "a live lease is not reaped"
    );
    assert!(
        coord.recover().unwrap().is_empty(),
        "recovery keeps a live lease"
    );
    std::thread::sleep(Duration::from_millis(600));
    let reaped = coord.reap().unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(
        (reaped[0].id, reaped[0].status, reaped[0].attempts),
        (id, TrialStatus::Pending, 1)
    );
    // Another worker takes it; the first one's late writes change nothing.
    let second = coord.claim("b", 60.0).unwrap().unwrap();
    assert_eq!((second.trial.id, second.attempt), (id, 2));
    assert!(
        !worker.heartbeat(id, 1, 60.0).unwrap(),
        "the old attempt is fenced"
    );
    assert!(!worker.complete(id, 1, &done(0.9)).unwrap());
    assert!(coord.complete(id, 2, &done(0.4)).unwrap());
    let t = coord.trial(id).unwrap().unwrap();
    assert_eq!(
        (t.status(), t.accuracy, t.runs),
        (TrialStatus::Done, Some(0.4), 2)
    );
    // A final trial is never written again, by anyone.
    assert!(!coord.complete(id, 2, &done(0.1)).unwrap());
    assert_eq!(coord.trial(id).unwrap().unwrap().accuracy, Some(0.4));
    assert!(coord.claim("c", 60.0).unwrap().is_none());
}

fn a_trial_that_keeps_killing_its_worker_ends_failed(make: &dyn Fn() -> Pair) {
    let (mut coord, mut worker) = make();
    let id = coord.record_proposal(&[], &trial(1)).unwrap();
    let next = coord.record_proposal(&[], &trial(2)).unwrap();
    for attempt in 1..=MAX_ATTEMPTS {
        let c = worker.claim("doomed", 0.2).unwrap().unwrap();
        assert_eq!((c.trial.id, c.attempt), (id, attempt));
        std::thread::sleep(Duration::from_millis(400));
        let reaped = coord.reap().unwrap();
        assert_eq!(reaped.len(), 1);
        let expect = if attempt < MAX_ATTEMPTS {
            TrialStatus::Pending
        } else {
            TrialStatus::Failed
        };
        assert_eq!(reaped[0].status, expect, "after attempt {attempt}");
    }
    let t = coord.trial(id).unwrap().unwrap();
    assert_eq!(t.status(), TrialStatus::Failed);
    assert!(
        t.trial
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&MAX_ATTEMPTS.to_string())),
        "{:?}",
        t.trial.error
    );
    // The queue goes on with the next trial.
    assert_eq!(worker.claim("w", 60.0).unwrap().unwrap().trial.id, next);
}

fn live_slots_count_workers_within_their_ttl(make: &dyn Fn() -> Pair) {
    let (mut coord, mut worker) = make();
    assert_eq!(coord.live_slots().unwrap(), 0);
    worker.worker_seen("w1", 1, 0.4).unwrap();
    coord.worker_seen("w2", 2, 60.0).unwrap();
    assert_eq!(coord.live_slots().unwrap(), 3);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(coord.live_slots().unwrap(), 2, "w1's time to live passed");
}

fn meta_and_proposals_round_trip(make: &dyn Fn() -> Pair) {
    let (mut coord, worker) = make();
    coord.set_meta("state", "running").unwrap();
    coord.set_meta("state", "finished").unwrap();
    assert_eq!(worker.meta("state").unwrap().as_deref(), Some("finished"));
    assert_eq!(worker.meta("absent").unwrap(), None);
    let id = coord.record_proposal(&[], &trial(7)).unwrap();
    let t = worker.trial(id).unwrap().unwrap();
    assert_eq!(t.trial, trial(7));
    assert_eq!(worker.trials().unwrap().len(), 1);
}

/// ASHA promotion under concurrency: 12 trials finish rung 0 (1 epoch) with a
/// checkpoint each; four connections promote at once, as free workers would.
/// With η = 3 exactly ⌊12/3⌋ = 4 are promoted (the best four), each once, to 3
/// epochs, continuing its source; checkpoints outside the quota plus η ranks
/// are freed; a promotion's completion frees its source's checkpoint; and a
/// promotion that would pass the epoch budget is not made.
fn promotions_keep_the_quota(mut coord: Box<dyn Store>, more: &dyn Fn() -> Box<dyn Store>) {
    let asha = Asha::new(1, 9, 3).unwrap();
    let mut worker = more();
    let workers: Vec<Box<dyn Store>> = (0..4).map(|_| more()).collect();
    let mut ids = Vec::new();
    for step in 0..12u64 {
        let id = coord.record_proposal(&[], &trial(step)).unwrap();
        let c = worker.claim("w", 60.0).unwrap().unwrap();
        assert_eq!(c.trial.id, id);
        let result = TrialResult {
            checkpoint: Some(vec![step as u8; 100]),
            ..done(0.1 + 0.05 * step as f64)
        };
        assert!(worker.complete(id, c.attempt, &result).unwrap());
        ids.push(id);
    }
    assert_eq!(coord.checkpoints().unwrap().len(), 12);
    assert_eq!(coord.checkpoint(ids[3]).unwrap(), Some(vec![3u8; 100]));
    // Nothing passes an epoch budget smaller than a promotion (2 epochs).
    assert_eq!(coord.promote(&asha, Some(1)).unwrap(), None);
    let promoted: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut store| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(id) = store.promote(&asha, None).unwrap() {
                        mine.push(id);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(promoted.len(), 4, "the quota is ⌊12/3⌋: {promoted:?}");
    let trials = coord.trials().unwrap();
    let mut sources: Vec<i64> = promoted
        .iter()
        .map(|id| {
            let t = trials.iter().find(|t| t.id == *id).unwrap();
            assert_eq!(
                (t.trial.rung, t.trial.epochs, t.status()),
                (1, 3, TrialStatus::Pending)
            );
            assert_eq!(t.trial.outcome, "promoted");
            let from = t.trial.continues.unwrap();
            let src = trials.iter().find(|s| s.id == from).unwrap();
            assert_eq!(t.trial.hash, src.trial.hash);
            from
        })
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ids[8..].to_vec(), "the best four, each once");
    // Kept: the four promoted and the η = 3 ranks below the quota.
    let held: Vec<i64> = coord.checkpoints().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(held, ids[5..].to_vec());
    // A promotion that ends frees the checkpoint it continued from.
    let c = worker.claim("w", 60.0).unwrap().unwrap();
    let from = c.trial.trial.continues.unwrap();
    assert!(worker.complete(c.trial.id, c.attempt, &done(0.9)).unwrap());
    assert_eq!(coord.checkpoint(from).unwrap(), None);
}

#[test]
fn sqlite_store_keeps_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let fresh = || {
        tmp.path()
            .join(format!("r{}", n.fetch_add(1, Ordering::SeqCst)))
    };
    let make = || sqlite_pair(&fresh());
    meta_and_proposals_round_trip(&make);
    leases_expire_and_old_attempts_are_fenced(&make);
    a_trial_that_keeps_killing_its_worker_ends_failed(&make);
    live_slots_count_workers_within_their_ttl(&make);
    let coord = SqliteStore::create(&fresh()).unwrap();
    let path = coord.path().to_path_buf();
    promotions_keep_the_quota(Box::new(coord), &|| {
        Box::new(SqliteStore::attach(&path).unwrap())
    });
    let coord = SqliteStore::create(&fresh()).unwrap();
    let path = coord.path().to_path_buf();
    claims_are_exclusive(Box::new(coord), &|| {
        Box::new(SqliteStore::attach(&path).unwrap())
    });
}

#[test]
fn postgres_store_keeps_the_contract() {
    let Some(url) = pg_url("the PostgreSQL store contract") else {
        return;
    };
    let make = || pg_pair(&url, "c");
    meta_and_proposals_round_trip(&make);
    leases_expire_and_old_attempts_are_fenced(&make);
    a_trial_that_keeps_killing_its_worker_ends_failed(&make);
    live_slots_count_workers_within_their_ttl(&make);
    let (coord, run) = pg_run(&url, "promote");
    promotions_keep_the_quota(Box::new(coord), &|| {
        Box::new(PgStore::attach(&url, &run).unwrap())
    });
    let (coord, run) = pg_run(&url, "claims");
    claims_are_exclusive(Box::new(coord), &|| {
        Box::new(PgStore::attach(&url, &run).unwrap())
    });
}

#[test]
fn postgres_schema_init_is_idempotent_and_required() {
    let Some(url) = pg_url("the PostgreSQL schema test") else {
        return;
    };
    // Several processes may run it at once.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| postgres::init(&url).unwrap());
        }
    });
    assert!(
        postgres::init(&url).unwrap().is_empty(),
        "nothing left to apply"
    );
    // A database without the schema is refused with the step to take.
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let db = format!("nas_empty_{}", std::process::id());
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let empty = match url.rfind('/') {
        Some(i) => format!("{}/{db}", &url[..i]),
        None => panic!("{url}"),
    };
    let e = PgStore::create(&empty, "r").err().unwrap().to_string();
    assert!(e.contains("db init"), "{e}");
    assert_eq!(postgres::init(&empty).unwrap(), vec![1, 2]);
    assert!(PgStore::create(&empty, "r").is_ok());
    let e = PgStore::create(&empty, "r").err().unwrap().to_string();
    assert!(e.contains("already exists"), "{e}");
    c.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .unwrap();
}
