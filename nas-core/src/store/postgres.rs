//! The PostgreSQL store: many runs in one database (every row carries its run's
//! name), shared by a coordinator and any number of workers on any machines.
//! The schema is made by numbered migrations (`migrations/postgres/*.sql`),
//! applied by one explicit, idempotent step ([`init`], `nas-core db init URL`)
//! under an advisory lock, so several processes may run it at once. Each
//! process holds one connection per store value (a worker: two, with its
//! heartbeat).
//!
//! The queue: a claim is one statement (`UPDATE … WHERE id = (SELECT … FOR
//! UPDATE SKIP LOCKED LIMIT 1) RETURNING …`); a lease is `lease_until` in the
//! database's clock; every worker write carries `(id, attempt)` and changes zero
//! rows once the attempt is no longer current; one reaper at a time (a
//! transaction-scoped advisory lock) returns expired leases.

use super::{
    AttemptRecord, Claim, MAX_ATTEMPTS, NewTrial, Reaped, Stage, Store, StoreError, TrialId,
    TrialRecord, TrialResult, TrialStatus, died_reason,
};
use crate::evolve::asha::Asha;
use postgres::{Client, NoTls, Row};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The numbered migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "rungs",
        include_str!("../../migrations/postgres/0002_rungs.sql"),
    ),
];

/// The advisory lock key of schema migrations ("nas-migr").
const MIGRATION_LOCK: i64 = 0x6e61_732d_6d69_6772;

/// The database clock in seconds since the Unix epoch.
const NOW: &str = "extract(epoch FROM clock_timestamp())::float8";

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn pg_err(url: &str, source: postgres::Error) -> StoreError {
    StoreError::Postgres {
        url: redact(url),
        source,
    }
}

/// Connects with a bounded connect timeout (10 s unless the URL sets one), the
/// password from `PGPASSWORD` when the URL has none.
fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url.parse().map_err(|e| pg_err(url, e))?;
    // The password may stay out of the URL (and out of saved configurations).
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.keepalives(true);
    config.application_name("nas-core");
    config.connect(NoTls).map_err(|e| pg_err(url, e))
}

/// Creates or migrates the schema: every migration not yet applied, each in the
/// transaction that records it, under an advisory lock (safe when several
/// processes start at once; a second run changes nothing). Returns the versions
/// applied now.
pub fn init(url: &str) -> Result<Vec<i32>, StoreError> {
    let mut client = connect(url)?;
    let err = |e| pg_err(url, e);
    let mut applied = Vec::new();
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS nas_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .map_err(err)?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM nas_migrations", &[])
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO nas_migrations(version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .map_err(err)?;
        applied.push(*version);
    }
    tx.commit().map_err(err)?;
    Ok(applied)
}

/// One run's record in a PostgreSQL database.
pub struct PgStore {
    /// `Client` needs `&mut` even to read; the store's reads take `&self`.
    client: Mutex<Client>,
    url: String,
    run: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &redact(&self.url))
            .field("run", &self.run)
            .finish()
    }
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Inserts a trial row of `run` inside the caller's transaction; its id.
fn insert_trial(
    tx: &mut postgres::Transaction<'_>,
    run: &str,
    trial: &NewTrial,
) -> Result<TrialId, postgres::Error> {
    let finished = trial.status.is_final();
    let row = tx.query_one(
        &format!(
            "INSERT INTO trials(run, stage, step, proposer, status, name, source, hash,
                                parent, outcome, note, params, flops, epochs, propose_ms,
                                error, created_at, finished_at, rung, continues)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                     $16, {NOW}, CASE WHEN $17 THEN {NOW} END, $18, $19)
             RETURNING id"
        ),
        &[
            &run,
            &trial.stage.as_str(),
            &to_i64(trial.step),
            &trial.proposer,
            &trial.status.as_str(),
            &trial.name,
            &trial.source,
            &trial.hash,
            &trial.parent,
            &trial.outcome,
            &trial.note,
            &trial.params.map(to_i64),
            &trial.flops.map(to_i64),
            &i64::from(trial.epochs),
            &trial.propose_ms,
            &trial.error,
            &finished,
            &i64::from(trial.rung),
            &trial.continues,
        ],
    )?;
    Ok(row.get(0))
}

impl PgStore {
    /// Connects to the database, checking that `db init` made its schema.
    fn open_client(url: &str) -> Result<Client, StoreError> {
        let mut client = connect(url)?;
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        let have: Option<i32> = client
            .query_one(
                "SELECT max(version) FROM nas_migrations WHERE to_regclass('nas_migrations') IS NOT NULL",
                &[],
            )
            .ok()
            .and_then(|r| r.get(0));
        match have {
            Some(v) if v >= latest => Ok(client),
            _ => Err(StoreError::Corrupt {
                path: redact(url).into(),
                reason: format!(
                    "the database has no nas schema version {latest} yet; run `nas-core db init {}` first",
                    redact(url)
                ),
            }),
        }
    }

    /// Starts the record of a new run `run` (an error if one of that name exists).
    pub fn create(url: &str, run: &str) -> Result<PgStore, StoreError> {
        let mut client = PgStore::open_client(url)?;
        let inserted = client
            .execute(
                "INSERT INTO runs(name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&run],
            )
            .map_err(|e| pg_err(url, e))?;
        if inserted == 0 {
            return Err(StoreError::RunExists {
                run: run.to_string(),
                store: redact(url),
            });
        }
        Ok(PgStore {
            client: Mutex::new(client),
            url: url.to_string(),
            run: run.to_string(),
        })
    }

    /// Connects to an existing run's record.
    pub fn attach(url: &str, run: &str) -> Result<PgStore, StoreError> {
        let mut client = PgStore::open_client(url)?;
        let found = client
            .query_opt("SELECT 1 FROM runs WHERE name = $1", &[&run])
            .map_err(|e| pg_err(url, e))?;
        if found.is_none() {
            return Err(StoreError::Missing {
                path: format!("{} (run `{run}`)", redact(url)).into(),
            });
        }
        Ok(PgStore {
            client: Mutex::new(client),
            url: url.to_string(),
            run: run.to_string(),
        })
    }

    /// The newest run whose state is `running` (for a worker given no run).
    pub fn newest_running(url: &str) -> Result<Option<String>, StoreError> {
        let mut client = PgStore::open_client(url)?;
        let row = client
            .query_opt(
                "SELECT r.name FROM runs r JOIN meta m ON m.run = r.name
                 WHERE m.key = 'state' AND m.value = 'running'
                 ORDER BY r.created_at DESC LIMIT 1",
                &[],
            )
            .map_err(|e| pg_err(url, e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The run's name.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The connection (a poisoned lock only means another thread panicked
    /// mid-call; the connection itself is still usable or reports its error).
    fn db(&self) -> MutexGuard<'_, Client> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn trial_row(&self, row: &Row) -> Result<TrialRecord, StoreError> {
        let decode = |reason: String| StoreError::Decode {
            path: redact(&self.url).into(),
            reason,
        };
        let id: i64 = row.get("id");
        let stage: String = row.get("stage");
        let status: String = row.get("status");
        let telemetry: String = row.get("telemetry");
        Ok(TrialRecord {
            id,
            trial: NewTrial {
                stage: Stage::parse(&stage)
                    .ok_or_else(|| decode(format!("trial {id}: unknown stage `{stage}`")))?,
                step: u64::try_from(row.get::<_, i64>("step")).unwrap_or(0),
                proposer: row.get("proposer"),
                status: TrialStatus::parse(&status)
                    .ok_or_else(|| decode(format!("trial {id}: unknown status `{status}`")))?,
                name: row.get("name"),
                source: row.get("source"),
                hash: row.get("hash"),
                parent: row.get("parent"),
                outcome: row.get("outcome"),
                note: row.get("note"),
                params: to_u64(row.get("params")),
                flops: to_u64(row.get("flops")),
                epochs: u32::try_from(row.get::<_, i64>("epochs")).unwrap_or(0),
                propose_ms: row.get("propose_ms"),
                error: row.get("error"),
                rung: u32::try_from(row.get::<_, i64>("rung")).unwrap_or(0),
                continues: row.get("continues"),
            },
            telemetry: serde_json::from_str(&telemetry)
                .map_err(|e| decode(format!("trial {id}: telemetry: {e}")))?,
            accuracy: row.get("accuracy"),
            top5: row.get("top5"),
            test_loss: row.get("test_loss"),
            train_s: row.get("train_s"),
            runs: u32::try_from(row.get::<_, i64>("runs")).unwrap_or(0),
            created_at: row.get("created_at"),
            finished_at: row.get("finished_at"),
        })
    }

    /// Ends or requeues this run's running trials matching `which`, in one
    /// transaction; with `reaper`, only while holding the run's reaper lock.
    fn requeue(&mut self, which: &str, reaper: bool) -> Result<Vec<Reaped>, StoreError> {
        let url = self.url.clone();
        let err = |e| pg_err(&url, e);
        let run = self.run.clone();
        let mut client = self.db();
        let mut tx = client.transaction().map_err(err)?;
        if reaper {
            let got: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtext('nas-reaper:' || $1))",
                    &[&run],
                )
                .map_err(err)?
                .get(0);
            if !got {
                return Ok(Vec::new());
            }
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT id, runs FROM trials WHERE run = $1 AND status = 'running' AND ({which})
                     ORDER BY id FOR UPDATE"
                ),
                &[&run],
            )
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let id: i64 = row.get(0);
            let attempts = u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX);
            let status = if attempts >= MAX_ATTEMPTS {
                tx.execute(
                    &format!(
                        "UPDATE trials SET status = 'failed', error = $2, finished_at = {NOW},
                                lease_until = NULL
                         WHERE id = $1"
                    ),
                    &[&id, &died_reason(attempts)],
                )
                .map_err(err)?;
                TrialStatus::Failed
            } else {
                tx.execute(
                    "UPDATE trials SET status = 'pending', started_at = NULL, worker = NULL,
                            lease_until = NULL
                     WHERE id = $1",
                    &[&id],
                )
                .map_err(err)?;
                TrialStatus::Pending
            };
            out.push(Reaped {
                id,
                status,
                attempts,
            });
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn write_result(
        &mut self,
        id: TrialId,
        attempt: Option<u32>,
        result: &TrialResult,
    ) -> Result<u64, StoreError> {
        if !matches!(
            result.status,
            TrialStatus::Done | TrialStatus::Diverged | TrialStatus::Failed
        ) {
            return Err(StoreError::Trial {
                id,
                reason: format!("cannot finish as `{}`", result.status),
            });
        }
        let telemetry = result.telemetry.to_string();
        let attempt = attempt.map(i64::from);
        let url = self.url.clone();
        let err = |e| pg_err(&url, e);
        let run = self.run.clone();
        let mut client = self.db();
        let mut tx = client.transaction().map_err(err)?;
        let changed = tx
            .execute(
                &format!(
                    "UPDATE trials SET status = $3, telemetry = $4, accuracy = $5, top5 = $6,
                            test_loss = $7, train_s = $8, error = $9, finished_at = {NOW},
                            lease_until = NULL
                     WHERE id = $1 AND run = $2 AND status = 'running'
                       AND ($10::BIGINT IS NULL OR runs = $10)"
                ),
                &[
                    &id,
                    &run,
                    &result.status.as_str(),
                    &telemetry,
                    &result.accuracy,
                    &result.top5,
                    &result.test_loss,
                    &result.train_s,
                    &result.error,
                    &attempt,
                ],
            )
            .map_err(err)?;
        if changed == 1 {
            // The segment's own checkpoint; the one it continued from is no
            // longer needed.
            if let Some(bytes) = &result.checkpoint {
                tx.execute(
                    &format!(
                        "INSERT INTO checkpoints(trial, run, bytes, created_at)
                         VALUES ($1, $2, $3, {NOW})
                         ON CONFLICT (trial) DO UPDATE SET bytes = excluded.bytes,
                                                           created_at = excluded.created_at"
                    ),
                    &[&id, &run, bytes],
                )
                .map_err(err)?;
            }
            tx.execute(
                "DELETE FROM checkpoints
                 WHERE trial = (SELECT continues FROM trials WHERE id = $1 AND run = $2)",
                &[&id, &run],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(changed)
    }
}

impl Store for PgStore {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .db()
            .query_opt(
                "SELECT value FROM meta WHERE run = $1 AND key = $2",
                &[&self.run, &key],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db()
            .execute(
                "INSERT INTO meta(run, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
                &[&self.run, &key, &value],
            )
            .map(drop)
            .map_err(|e| pg_err(&self.url, e))
    }

    fn record_proposal(
        &mut self,
        attempts: &[AttemptRecord],
        trial: &NewTrial,
    ) -> Result<TrialId, StoreError> {
        let url = self.url.clone();
        let err = |e| pg_err(&url, e);
        let run = self.run.clone();
        let mut client = self.db();
        let mut tx = client.transaction().map_err(err)?;
        let id = insert_trial(&mut tx, &run, trial).map_err(err)?;
        for a in attempts {
            tx.execute(
                &format!(
                    "INSERT INTO attempts(run, step, proposer, idx, round, outcome, raw, source,
                                          diagnostics, latency_ms, prompt_tokens,
                                          completion_tokens, retries, trial, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, {NOW})"
                ),
                &[
                    &run,
                    &to_i64(a.step),
                    &a.proposer,
                    &i64::from(a.index),
                    &a.round,
                    &a.outcome,
                    &a.raw,
                    &a.source,
                    &a.diagnostics,
                    &a.latency_ms,
                    &a.prompt_tokens.map(to_i64),
                    &a.completion_tokens.map(to_i64),
                    &i64::from(a.retries),
                    &id,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    fn start_trial(&mut self, id: TrialId) -> Result<(), StoreError> {
        let changed = self
            .db()
            .execute(
                &format!(
                    "UPDATE trials SET status = 'running', runs = runs + 1, started_at = {NOW},
                            worker = NULL, lease_until = NULL
                     WHERE id = $1 AND run = $2 AND status = 'pending'"
                ),
                &[&id, &self.run],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Trial {
                id,
                reason: "is not pending, so it cannot start".into(),
            })
        }
    }

    fn finish_trial(&mut self, id: TrialId, result: &TrialResult) -> Result<(), StoreError> {
        if self.write_result(id, None, result)? == 1 {
            Ok(())
        } else {
            Err(StoreError::Trial {
                id,
                reason: "is not running, so it cannot finish".into(),
            })
        }
    }

    fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT * FROM trials WHERE run = $1 ORDER BY id",
                &[&self.run],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        rows.iter().map(|r| self.trial_row(r)).collect()
    }

    fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT step, proposer, idx, round, outcome, raw, source, diagnostics,
                        latency_ms, prompt_tokens, completion_tokens, retries
                 FROM attempts WHERE run = $1 ORDER BY id",
                &[&self.run],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        Ok(rows
            .iter()
            .map(|r| AttemptRecord {
                step: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                proposer: r.get(1),
                index: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                round: r.get(3),
                outcome: r.get(4),
                raw: r.get(5),
                source: r.get(6),
                diagnostics: r.get(7),
                latency_ms: r.get(8),
                prompt_tokens: to_u64(r.get(9)),
                completion_tokens: to_u64(r.get(10)),
                retries: u32::try_from(r.get::<_, i64>(11)).unwrap_or(0),
            })
            .collect())
    }

    fn trial(&self, id: TrialId) -> Result<Option<TrialRecord>, StoreError> {
        let row = self
            .db()
            .query_opt(
                "SELECT * FROM trials WHERE run = $1 AND id = $2",
                &[&self.run, &id],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        row.map(|r| self.trial_row(&r)).transpose()
    }

    fn recover(&mut self) -> Result<Vec<Reaped>, StoreError> {
        self.requeue(
            &format!("lease_until IS NULL OR lease_until < {NOW}"),
            false,
        )
    }

    fn claim(&mut self, worker: &str, lease_s: f64) -> Result<Option<Claim>, StoreError> {
        let row = self
            .db()
            .query_opt(
                &format!(
                    "UPDATE trials SET status = 'running', runs = runs + 1, worker = $2,
                            lease_until = {NOW} + $3::float8, started_at = {NOW}
                     WHERE id = (SELECT id FROM trials WHERE run = $1 AND status = 'pending'
                                 ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
                     RETURNING *"
                ),
                &[&self.run, &worker, &lease_s],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let trial = self.trial_row(&row)?;
                Ok(Some(Claim {
                    attempt: trial.runs,
                    trial,
                }))
            }
        }
    }

    fn heartbeat(&mut self, id: TrialId, attempt: u32, lease_s: f64) -> Result<bool, StoreError> {
        let changed = self
            .db()
            .execute(
                &format!(
                    "UPDATE trials SET lease_until = {NOW} + $3::float8
                     WHERE id = $1 AND runs = $2 AND status = 'running'"
                ),
                &[&id, &i64::from(attempt), &lease_s],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        Ok(changed == 1)
    }

    fn complete(
        &mut self,
        id: TrialId,
        attempt: u32,
        result: &TrialResult,
    ) -> Result<bool, StoreError> {
        Ok(self.write_result(id, Some(attempt), result)? == 1)
    }

    fn reap(&mut self) -> Result<Vec<Reaped>, StoreError> {
        self.requeue(
            &format!("lease_until IS NOT NULL AND lease_until < {NOW}"),
            true,
        )
    }

    fn worker_seen(&mut self, worker: &str, slots: u32, ttl_s: f64) -> Result<(), StoreError> {
        self.db()
            .execute(
                &format!(
                    "INSERT INTO workers(run, name, slots, seen_until) VALUES ($1, $2, $3, {NOW} + $4::float8)
                     ON CONFLICT (run, name) DO UPDATE SET slots = excluded.slots,
                                                           seen_until = excluded.seen_until"
                ),
                &[&self.run, &worker, &i64::from(slots), &ttl_s],
            )
            .map(drop)
            .map_err(|e| pg_err(&self.url, e))
    }

    fn checkpoint(&self, id: TrialId) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .db()
            .query_opt(
                "SELECT bytes FROM checkpoints WHERE trial = $1 AND run = $2",
                &[&id, &self.run],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn checkpoints(&self) -> Result<Vec<(TrialId, u64)>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT trial, octet_length(bytes)::BIGINT FROM checkpoints
                 WHERE run = $1 ORDER BY trial",
                &[&self.run],
            )
            .map_err(|e| pg_err(&self.url, e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
            .collect())
    }

    fn promote(
        &mut self,
        asha: &Asha,
        epochs_left: Option<u64>,
    ) -> Result<Option<TrialId>, StoreError> {
        let url = self.url.clone();
        let err = |e| pg_err(&url, e);
        let run = self.run.clone();
        let mut client = self.db();
        let mut tx = client.transaction().map_err(err)?;
        // One promoter per run at a time: the decision reads every rung and
        // writes the promotion under this lock, so no quota is passed twice.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('nas-promote:' || $1))",
            &[&run],
        )
        .map_err(err)?;
        let rows = tx
            .query("SELECT * FROM trials WHERE run = $1 ORDER BY id", &[&run])
            .map_err(err)?;
        let trials = rows
            .iter()
            .map(|r| self.trial_row(r))
            .collect::<Result<Vec<_>, _>>()?;
        let held: Vec<TrialId> = tx
            .query(
                "SELECT trial FROM checkpoints WHERE run = $1 ORDER BY trial",
                &[&run],
            )
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (row, drop) = super::promotion_step(asha, &trials, &held, epochs_left);
        for id in drop {
            tx.execute(
                "DELETE FROM checkpoints WHERE trial = $1 AND run = $2",
                &[&id, &run],
            )
            .map_err(err)?;
        }
        let id = match row {
            None => None,
            Some(t) => Some(insert_trial(&mut tx, &run, &t).map_err(err)?),
        };
        tx.commit().map_err(err)?;
        Ok(id)
    }

    fn live_slots(&self) -> Result<u32, StoreError> {
        let n: i64 = self
            .db()
            .query_one(
                &format!(
                    "SELECT COALESCE(SUM(slots), 0)::BIGINT FROM workers
                     WHERE run = $1 AND seen_until >= {NOW}"
                ),
                &[&self.run],
            )
            .map_err(|e| pg_err(&self.url, e))?
            .get(0);
        Ok(u32::try_from(n).unwrap_or(0))
    }
}
