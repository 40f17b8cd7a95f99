//! The SQLite store: one `nas.db` per run directory (bundled SQLite through
//! rusqlite), in WAL mode with full synchronisation, one transaction per state
//! change. Opening it checks that the file is a run database (migrating an older
//! schema) and resets trials a killed process left `running` to `pending`.
//! Several processes on one machine share it (WAL, a busy timeout): the local
//! workers of `evolve --jobs N` claim trials from it like PostgreSQL workers do.

use super::{
    AttemptRecord, Claim, MAX_ATTEMPTS, NewTrial, Reaped, Stage, Store, StoreError, TrialId,
    TrialRecord, TrialResult, TrialStatus, died_reason,
};
use crate::evolve::asha::Asha;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database file's name inside a run directory.
pub const DB_FILE: &str = "nas.db";

/// The schema marker stored under the `schema` metadata key.
pub const SCHEMA: &str = "nas-run/3";

/// The first schema (no leases); opened databases of it are migrated.
const SCHEMA_1: &str = "nas-run/1";

/// The second schema (no rungs, no checkpoints); migrated when opened.
const SCHEMA_2: &str = "nas-run/2";

/// From `nas-run/2` to `nas-run/3`: trials get their multi-fidelity rung and
/// the trial they continue; checkpoints are kept beside them.
const MIGRATE_2_3: &str = "
ALTER TABLE trials ADD COLUMN rung INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN continues INTEGER REFERENCES trials(id);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial      INTEGER PRIMARY KEY REFERENCES trials(id),
    bytes      BLOB NOT NULL,
    created_at REAL NOT NULL
);
UPDATE meta SET value = 'nas-run/3' WHERE key = 'schema';
";

/// From `nas-run/1` to `nas-run/2`: trials get the worker holding them and its
/// lease (database time); workers announce their job slots.
const MIGRATE_1_2: &str = "
ALTER TABLE trials ADD COLUMN worker TEXT;
ALTER TABLE trials ADD COLUMN lease_until REAL;
CREATE TABLE IF NOT EXISTS workers (
    name       TEXT PRIMARY KEY,
    slots      INTEGER NOT NULL,
    seen_until REAL NOT NULL
);
UPDATE meta SET value = 'nas-run/2' WHERE key = 'schema';
";

/// The database clock (seconds since the Unix epoch): leases are compared with it,
/// never with a worker's own clock.
const NOW: &str = "unixepoch('subsec')";

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id                INTEGER PRIMARY KEY,
    step              INTEGER NOT NULL,
    proposer          TEXT NOT NULL,
    idx               INTEGER NOT NULL,
    round             TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    raw               TEXT NOT NULL,
    source            TEXT,
    diagnostics       TEXT,
    latency_ms        REAL NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    retries           INTEGER NOT NULL,
    trial             INTEGER REFERENCES trials(id),
    created_at        REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id          INTEGER PRIMARY KEY,
    stage       TEXT NOT NULL CHECK (stage IN ('search', 'final')),
    step        INTEGER NOT NULL,
    proposer    TEXT NOT NULL,
    status      TEXT NOT NULL
                CHECK (status IN ('pending', 'running', 'done', 'invalid', 'diverged', 'failed')),
    name        TEXT,
    source      TEXT NOT NULL,
    hash        TEXT NOT NULL,
    parent      TEXT,
    outcome     TEXT NOT NULL,
    note        TEXT,
    params      INTEGER,
    flops       INTEGER,
    epochs      INTEGER NOT NULL,
    propose_ms  REAL NOT NULL,
    telemetry   TEXT NOT NULL DEFAULT '[]',
    accuracy    REAL,
    top5        REAL,
    test_loss   REAL,
    train_s     REAL,
    error       TEXT,
    runs        INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    worker      TEXT,
    lease_until REAL,
    rung        INTEGER NOT NULL DEFAULT 0,
    continues   INTEGER REFERENCES trials(id)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial      INTEGER PRIMARY KEY REFERENCES trials(id),
    bytes      BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_by_hash ON trials(hash);
CREATE INDEX IF NOT EXISTS trials_by_status ON trials(status);
CREATE TABLE IF NOT EXISTS workers (
    name       TEXT PRIMARY KEY,
    slots      INTEGER NOT NULL,
    seen_until REAL NOT NULL
);
";

/// A run's SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    recovered: Vec<Reaped>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

impl SqliteStore {
    /// Creates a run directory (if missing) and its database (if missing), or opens
    /// the existing one.
    pub fn create(dir: &Path) -> Result<SqliteStore, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        SqliteStore::open_path(&dir.join(DB_FILE), true)
    }

    /// Opens the database of an existing run directory.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        if !dir.exists() {
            return Err(StoreError::Missing {
                path: dir.join(DB_FILE),
            });
        }
        if !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        SqliteStore::open_path(&dir.join(DB_FILE), false)
    }

    /// Opens the database of an existing run directory to read it, leaving an
    /// interrupted trial as it is (a report may be made while the run goes on).
    pub fn inspect(dir: &Path) -> Result<SqliteStore, StoreError> {
        if !dir.exists() {
            return Err(StoreError::Missing {
                path: dir.join(DB_FILE),
            });
        }
        if !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        SqliteStore::open_with(&dir.join(DB_FILE), false, false)
    }

    /// Connects to an existing database file without touching its trials: a
    /// worker's connection (the coordinator recovers and migrates).
    pub fn attach(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, false, false)
    }

    /// Opens a database file; `create` allows a new one. Interrupted trials are
    /// reset to pending.
    pub fn open_path(path: &Path, create: bool) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, create, true)
    }

    fn open_with(path: &Path, create: bool, recover: bool) -> Result<SqliteStore, StoreError> {
        let exists = path.exists();
        if !exists && !create {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        if exists && !path.is_file() {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "it is not a regular file".into(),
            });
        }
        let corrupt = |e: rusqlite::Error| classify(path, e);
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(corrupt)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(corrupt)?;
        // Reading the schema is the first real access: a file that is not SQLite
        // fails here with "file is not a database".
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(corrupt)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(corrupt)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("integrity check failed: {check}"),
            });
        }
        if tables.is_empty() {
            if !create {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "the database is empty".into(),
                });
            }
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {CREATE} INSERT INTO meta(key, value) VALUES ('schema', '{SCHEMA}'); COMMIT;"
            ))
            .map_err(corrupt)?;
        } else {
            let schema: Option<String> = if tables.iter().any(|t| t == "meta") {
                conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(corrupt)?
            } else {
                None
            };
            match schema.as_deref() {
                Some(SCHEMA) => {}
                Some(SCHEMA_1) if recover => {
                    conn.execute_batch(&format!(
                        "BEGIN IMMEDIATE; {MIGRATE_1_2} {MIGRATE_2_3} COMMIT;"
                    ))
                    .map_err(corrupt)?;
                }
                Some(SCHEMA_2) if recover => {
                    conn.execute_batch(&format!("BEGIN IMMEDIATE; {MIGRATE_2_3} COMMIT;"))
                        .map_err(corrupt)?;
                }
                Some(SCHEMA_1 | SCHEMA_2) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("schema `{other}`, expected `{SCHEMA}`"),
                    });
                }
                None => {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!(
                            "an SQLite database without the `{SCHEMA}` schema marker (tables: {})",
                            tables.join(", ")
                        ),
                    });
                }
            }
        }
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            recovered: Vec::new(),
        };
        if recover {
            store.recovered = store.recover()?;
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The trials a dead process left `running`, found when this store was opened
    /// (requeued, or failed after their last attempt).
    pub fn recovered(&self) -> &[Reaped] {
        &self.recovered
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        classify(&self.path, source)
    }

    fn trial_row(&self, row: &Row<'_>) -> Result<TrialRecord, StoreError> {
        let get = |e: rusqlite::Error| self.err(e);
        let decode = |reason: String| StoreError::Decode {
            path: self.path.clone(),
            reason,
        };
        let id: TrialId = row.get("id").map_err(get)?;
        let stage: String = row.get("stage").map_err(get)?;
        let status: String = row.get("status").map_err(get)?;
        let telemetry: String = row.get("telemetry").map_err(get)?;
        let step: i64 = row.get("step").map_err(get)?;
        let epochs: i64 = row.get("epochs").map_err(get)?;
        let runs: i64 = row.get("runs").map_err(get)?;
        // Absent from a database of an older schema opened read-only.
        let rung: i64 = row.get("rung").unwrap_or(0);
        let continues: Option<TrialId> = row.get("continues").unwrap_or(None);
        Ok(TrialRecord {
            id,
            trial: NewTrial {
                stage: Stage::parse(&stage)
                    .ok_or_else(|| decode(format!("trial {id}: unknown stage `{stage}`")))?,
                step: u64::try_from(step).unwrap_or(0),
                proposer: row.get("proposer").map_err(get)?,
                status: TrialStatus::parse(&status)
                    .ok_or_else(|| decode(format!("trial {id}: unknown status `{status}`")))?,
                name: row.get("name").map_err(get)?,
                source: row.get("source").map_err(get)?,
                hash: row.get("hash").map_err(get)?,
                parent: row.get("parent").map_err(get)?,
                outcome: row.get("outcome").map_err(get)?,
                note: row.get("note").map_err(get)?,
                params: to_u64(row.get("params").map_err(get)?),
                flops: to_u64(row.get("flops").map_err(get)?),
                epochs: u32::try_from(epochs).unwrap_or(0),
                propose_ms: row.get("propose_ms").map_err(get)?,
                error: row.get("error").map_err(get)?,
                rung: u32::try_from(rung).unwrap_or(0),
                continues,
            },
            telemetry: serde_json::from_str(&telemetry)
                .map_err(|e| decode(format!("trial {id}: telemetry: {e}")))?,
            accuracy: row.get("accuracy").map_err(get)?,
            top5: row.get("top5").map_err(get)?,
            test_loss: row.get("test_loss").map_err(get)?,
            train_s: row.get("train_s").map_err(get)?,
            runs: u32::try_from(runs).unwrap_or(0),
            created_at: row.get("created_at").map_err(get)?,
            finished_at: row.get("finished_at").map_err(get)?,
        })
    }
}

/// Maps SQLite's "not a database" and "corrupt" codes to [`StoreError::Corrupt`].
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl Store for SqliteStore {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn record_proposal(
        &mut self,
        attempts: &[AttemptRecord],
        trial: &NewTrial,
    ) -> Result<TrialId, StoreError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let created = now();
        let id = insert_trial(&tx, trial, created).map_err(err)?;
        for a in attempts {
            tx.execute(
                "INSERT INTO attempts(step, proposer, idx, round, outcome, raw, source,
                                      diagnostics, latency_ms, prompt_tokens,
                                      completion_tokens, retries, trial, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    to_i64(a.step),
                    a.proposer,
                    i64::from(a.index),
                    a.round,
                    a.outcome,
                    a.raw,
                    a.source,
                    a.diagnostics,
                    a.latency_ms,
                    a.prompt_tokens.map(to_i64),
                    a.completion_tokens.map(to_i64),
                    i64::from(a.retries),
                    id,
                    created,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    fn start_trial(&mut self, id: TrialId) -> Result<(), StoreError> {
        // Trained in this process: no lease (a death is found on the next open).
        let changed = self
            .conn
            .execute(
                "UPDATE trials SET status = 'running', runs = runs + 1, started_at = ?2,
                        worker = NULL, lease_until = NULL
                 WHERE id = ?1 AND status = 'pending'",
                params![id, now()],
            )
            .map_err(|e| self.err(e))?;
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
        let changed = self.write_result(id, None, result)?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Trial {
                id,
                reason: "is not running, so it cannot finish".into(),
            })
        }
    }

    fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM trials ORDER BY id")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push(self.trial_row(row)?);
        }
        Ok(out)
    }

    fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT step, proposer, idx, round, outcome, raw, source, diagnostics,
                        latency_ms, prompt_tokens, completion_tokens, retries
                 FROM attempts ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AttemptRecord {
                    step: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    proposer: r.get(1)?,
                    index: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    round: r.get(3)?,
                    outcome: r.get(4)?,
                    raw: r.get(5)?,
                    source: r.get(6)?,
                    diagnostics: r.get(7)?,
                    latency_ms: r.get(8)?,
                    prompt_tokens: to_u64(r.get(9)?),
                    completion_tokens: to_u64(r.get(10)?),
                    retries: u32::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    fn trial(&self, id: TrialId) -> Result<Option<TrialRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM trials WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([id]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(row) => Ok(Some(self.trial_row(row)?)),
            None => Ok(None),
        }
    }

    fn recover(&mut self) -> Result<Vec<Reaped>, StoreError> {
        self.requeue("lease_until IS NULL OR lease_until < unixepoch('subsec')")
    }

    fn claim(&mut self, worker: &str, lease_s: f64) -> Result<Option<Claim>, StoreError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let id: Option<TrialId> = tx
            .query_row(
                &format!(
                    "UPDATE trials SET status = 'running', runs = runs + 1, worker = ?1,
                            lease_until = {NOW} + ?2, started_at = ?3
                     WHERE id = (SELECT id FROM trials WHERE status = 'pending' ORDER BY id LIMIT 1)
                     RETURNING id"
                ),
                params![worker, lease_s, now()],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        tx.commit().map_err(err)?;
        let Some(id) = id else { return Ok(None) };
        let trial = self.trial(id)?.ok_or_else(|| StoreError::Trial {
            id,
            reason: "vanished after it was claimed".into(),
        })?;
        Ok(Some(Claim {
            attempt: trial.runs,
            trial,
        }))
    }

    fn heartbeat(&mut self, id: TrialId, attempt: u32, lease_s: f64) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE trials SET lease_until = {NOW} + ?3
                     WHERE id = ?1 AND runs = ?2 AND status = 'running'"
                ),
                params![id, i64::from(attempt), lease_s],
            )
            .map_err(|e| self.err(e))?;
        Ok(changed == 1)
    }

    fn complete(
        &mut self,
        id: TrialId,
        attempt: u32,
        result: &TrialResult,
    ) -> Result<bool, StoreError> {
        let changed = self.write_result(id, Some(attempt), result)?;
        Ok(changed == 1)
    }

    fn reap(&mut self) -> Result<Vec<Reaped>, StoreError> {
        self.requeue("lease_until IS NOT NULL AND lease_until < unixepoch('subsec')")
    }

    fn worker_seen(&mut self, worker: &str, slots: u32, ttl_s: f64) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO workers(name, slots, seen_until) VALUES (?1, ?2, {NOW} + ?3)
                     ON CONFLICT(name) DO UPDATE SET slots = excluded.slots,
                                                     seen_until = excluded.seen_until"
                ),
                params![worker, i64::from(slots), ttl_s],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn checkpoint(&self, id: TrialId) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT bytes FROM checkpoints WHERE trial = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn checkpoints(&self) -> Result<Vec<(TrialId, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT trial, length(bytes) FROM checkpoints ORDER BY trial")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map(|(id, n)| (id, u64::try_from(n).unwrap_or(0))))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn promote(
        &mut self,
        asha: &Asha,
        epochs_left: Option<u64>,
    ) -> Result<Option<TrialId>, StoreError> {
        // The write lock first: no other connection decides in between.
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let decided = (|| {
            let trials = self.trials()?;
            let held: Vec<TrialId> = self.checkpoints()?.into_iter().map(|(id, _)| id).collect();
            let (row, drop) = super::promotion_step(asha, &trials, &held, epochs_left);
            for id in drop {
                self.conn
                    .execute("DELETE FROM checkpoints WHERE trial = ?1", [id])
                    .map_err(|e| self.err(e))?;
            }
            match row {
                Some(row) => insert_trial(&self.conn, &row, now())
                    .map(Some)
                    .map_err(|e| self.err(e)),
                None => Ok(None),
            }
        })();
        match decided {
            Ok(id) => {
                self.conn.execute_batch("COMMIT").map_err(err)?;
                Ok(id)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn live_slots(&self) -> Result<u32, StoreError> {
        let n: i64 = self
            .conn
            .query_row(
                &format!("SELECT COALESCE(SUM(slots), 0) FROM workers WHERE seen_until >= {NOW}"),
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(u32::try_from(n).unwrap_or(0))
    }
}

impl SqliteStore {
    /// Ends or requeues the running trials matching `which`, in one transaction:
    /// those that used their attempts fail with the reason, the others wait again.
    /// Writes how a running trial ended: always (the in-process trainer), or
    /// with an attempt only while that attempt is current (a worker's fenced
    /// write). The rows changed: 0 or 1.
    fn write_result(
        &mut self,
        id: TrialId,
        attempt: Option<u32>,
        result: &TrialResult,
    ) -> Result<usize, StoreError> {
        check_final(id, result)?;
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let changed = tx
            .execute(
                "UPDATE trials SET status = ?2, telemetry = ?3, accuracy = ?4, top5 = ?5,
                        test_loss = ?6, train_s = ?7, error = ?8, finished_at = ?9,
                        lease_until = NULL
                 WHERE id = ?1 AND status = 'running' AND (?10 IS NULL OR runs = ?10)",
                params![
                    id,
                    result.status.as_str(),
                    result.telemetry.to_string(),
                    result.accuracy,
                    result.top5,
                    result.test_loss,
                    result.train_s,
                    result.error,
                    now(),
                    attempt.map(i64::from),
                ],
            )
            .map_err(err)?;
        if changed == 1 {
            // The segment's own checkpoint, and the one it continued from is
            // no longer needed.
            if let Some(bytes) = &result.checkpoint {
                tx.execute(
                    "INSERT INTO checkpoints(trial, bytes, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(trial) DO UPDATE SET bytes = excluded.bytes,
                                                      created_at = excluded.created_at",
                    params![id, bytes, now()],
                )
                .map_err(err)?;
            }
            tx.execute(
                "DELETE FROM checkpoints
                 WHERE trial = (SELECT continues FROM trials WHERE id = ?1)",
                [id],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(changed)
    }

    fn requeue(&mut self, which: &str) -> Result<Vec<Reaped>, StoreError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let found: Vec<(TrialId, i64)> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT id, runs FROM trials WHERE status = 'running' AND ({which}) ORDER BY id"
                ))
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)?
        };
        let mut out = Vec::new();
        for (id, runs) in found {
            let attempts = u32::try_from(runs).unwrap_or(u32::MAX);
            let status = if attempts >= MAX_ATTEMPTS {
                tx.execute(
                    "UPDATE trials SET status = 'failed', error = ?2, finished_at = ?3,
                            lease_until = NULL
                     WHERE id = ?1",
                    params![id, died_reason(attempts), now()],
                )
                .map_err(err)?;
                TrialStatus::Failed
            } else {
                tx.execute(
                    "UPDATE trials SET status = 'pending', started_at = NULL, worker = NULL,
                            lease_until = NULL
                     WHERE id = ?1",
                    [id],
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
}

/// Inserts a trial row (inside the caller's transaction); its id.
fn insert_trial(
    tx: &Connection,
    trial: &NewTrial,
    created: f64,
) -> Result<TrialId, rusqlite::Error> {
    let finished = (trial.status.is_final()).then_some(created);
    tx.execute(
        "INSERT INTO trials(stage, step, proposer, status, name, source, hash, parent,
                            outcome, note, params, flops, epochs, propose_ms, error,
                            created_at, finished_at, rung, continues)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19)",
        params![
            trial.stage.as_str(),
            to_i64(trial.step),
            trial.proposer,
            trial.status.as_str(),
            trial.name,
            trial.source,
            trial.hash,
            trial.parent,
            trial.outcome,
            trial.note,
            trial.params.map(to_i64),
            trial.flops.map(to_i64),
            i64::from(trial.epochs),
            trial.propose_ms,
            trial.error,
            created,
            finished,
            i64::from(trial.rung),
            trial.continues,
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// A result can only end a trial as done, diverged or failed.
fn check_final(id: TrialId, result: &TrialResult) -> Result<(), StoreError> {
    if matches!(
        result.status,
        TrialStatus::Done | TrialStatus::Diverged | TrialStatus::Failed
    ) {
        Ok(())
    } else {
        Err(StoreError::Trial {
            id,
            reason: format!("cannot finish as `{}`", result.status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(status: TrialStatus) -> NewTrial {
        NewTrial {
            stage: Stage::Search,
            step: 1,
            proposer: "mutate".into(),
            status,
            name: Some("Net".into()),
            source: "net Net(input = [4], classes = 2) { linear(4 -> 2); }".into(),
            hash: "abc".into(),
            parent: None,
            outcome: "ok".into(),
            note: Some("set_class".into()),
            params: Some(10),
            flops: Some(8),
            epochs: 1,
            propose_ms: 1.5,
            error: None,
            rung: 0,
            continues: None,
        }
    }

    fn attempt() -> AttemptRecord {
        AttemptRecord {
            step: 1,
            proposer: "mutate".into(),
            index: 0,
            round: "initial".into(),
            outcome: "ok".into(),
            raw: "net ...".into(),
            source: None,
            diagnostics: None,
            latency_ms: 0.25,
            prompt_tokens: Some(3),
            completion_tokens: None,
            retries: 0,
        }
    }

    fn done() -> TrialResult {
        TrialResult {
            status: TrialStatus::Done,
            telemetry: serde_json::json!([{"epoch": 1, "top1": 0.5}]),
            accuracy: Some(0.5),
            top5: Some(1.0),
            test_loss: Some(0.7),
            train_s: 2.0,
            error: None,
            checkpoint: None,
        }
    }

    #[test]
    fn a_trial_goes_pending_running_done_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::create(dir.path()).unwrap();
        let id = s
            .record_proposal(&[attempt()], &trial(TrialStatus::Pending))
            .unwrap();
        assert_eq!(s.trials().unwrap()[0].status(), TrialStatus::Pending);
        s.start_trial(id).unwrap();
        assert_eq!(s.trials().unwrap()[0].status(), TrialStatus::Running);
        s.finish_trial(id, &done()).unwrap();
        let t = &s.trials().unwrap()[0];
        assert_eq!(t.status(), TrialStatus::Done);
        assert_eq!(t.trial, trial(TrialStatus::Done));
        assert_eq!(t.trial.error, None);
        assert_eq!(t.accuracy, Some(0.5));
        assert_eq!(t.telemetry, serde_json::json!([{"epoch": 1, "top1": 0.5}]));
        assert_eq!(t.runs, 1);
        assert!(t.finished_at.is_some());
        assert_eq!(s.attempts().unwrap(), vec![attempt()]);
        // Finished trials cannot be restarted or finished again.
        assert!(s.start_trial(id).is_err());
        assert!(s.finish_trial(id, &done()).is_err());
    }

    #[test]
    fn running_trials_are_reset_on_open_and_finished_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let mut s = SqliteStore::create(dir.path()).unwrap();
            let a = s
                .record_proposal(&[], &trial(TrialStatus::Pending))
                .unwrap();
            let b = s
                .record_proposal(&[], &trial(TrialStatus::Pending))
                .unwrap();
            s.start_trial(a).unwrap();
            s.finish_trial(a, &done()).unwrap();
            s.start_trial(b).unwrap();
            (a, b)
        };
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            s.recovered(),
            &[Reaped {
                id: b,
                status: TrialStatus::Pending,
                attempts: 1
            }]
        );
        let trials = s.trials().unwrap();
        assert_eq!(trials[0].id, a);
        assert_eq!(trials[0].status(), TrialStatus::Done);
        assert_eq!(trials[1].status(), TrialStatus::Pending);
        assert_eq!(trials[1].runs, 1);
    }

    #[test]
    fn invalid_proposals_are_final_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::create(dir.path()).unwrap();
        let mut t = trial(TrialStatus::Invalid);
        t.error = Some("over budget".into());
        let id = s.record_proposal(&[attempt()], &t).unwrap();
        let r = &s.trials().unwrap()[0];
        assert_eq!(r.trial.error.as_deref(), Some("over budget"));
        assert!(r.finished_at.is_some());
        assert!(s.start_trial(id).is_err());
    }

    /// A run directory of the previous schema (no rungs, no checkpoints) is
    /// read as it is, and migrated when opened to continue.
    #[test]
    fn a_schema_2_run_is_read_and_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(DB_FILE);
        let old_create = CREATE
            .replace(
                ",\n    rung        INTEGER NOT NULL DEFAULT 0,\n    continues   INTEGER REFERENCES trials(id)",
                "",
            )
            .replace(
                "CREATE TABLE IF NOT EXISTS checkpoints (\n    trial      INTEGER PRIMARY KEY REFERENCES trials(id),\n    bytes      BLOB NOT NULL,\n    created_at REAL NOT NULL\n);\n",
                "",
            );
        assert!(!old_create.contains("rung") && !old_create.contains("checkpoints"));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "{old_create} INSERT INTO meta(key, value) VALUES ('schema', '{SCHEMA_2}');
             INSERT INTO trials(stage, step, proposer, status, source, hash, outcome, epochs,
                                propose_ms, created_at, accuracy)
             VALUES ('search', 0, 'seed', 'done', 'net', 'h', 'ok', 3, 0, 0, 0.5);"
        ))
        .unwrap();
        drop(conn);
        let old = SqliteStore::inspect(tmp.path()).unwrap();
        let t = &old.trials().unwrap()[0];
        assert_eq!(
            (t.trial.rung, t.trial.continues, t.accuracy),
            (0, None, Some(0.5))
        );
        drop(old);
        let s = SqliteStore::open(tmp.path()).unwrap();
        assert_eq!(s.meta("schema").unwrap().as_deref(), Some(SCHEMA));
        assert_eq!(s.trials().unwrap()[0].trial.rung, 0);
        assert!(s.checkpoints().unwrap().is_empty());
    }

    #[test]
    fn metadata_is_upserted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::create(dir.path()).unwrap();
        assert_eq!(s.meta("config_json").unwrap(), None);
        s.set_meta("config_json", "{}").unwrap();
        s.set_meta("config_json", "{\"a\":1}").unwrap();
        assert_eq!(s.meta("config_json").unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(s.meta("schema").unwrap().as_deref(), Some(SCHEMA));
    }

    #[test]
    fn a_file_as_run_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run");
        std::fs::write(&file, "x").unwrap();
        let e = SqliteStore::create(&file).unwrap_err();
        assert!(matches!(e, StoreError::NotADirectory { .. }), "{e}");
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let e = SqliteStore::open(&file).unwrap_err();
        assert!(matches!(e, StoreError::NotADirectory { .. }), "{e}");
    }

    #[test]
    fn garbage_and_foreign_databases_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x42u8; 8192]).unwrap();
        let e = SqliteStore::open(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("not a database"), "{e}");

        let other = tempfile::tempdir().unwrap();
        let conn = Connection::open(other.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE t(x);").unwrap();
        drop(conn);
        let e = SqliteStore::open(other.path()).unwrap_err();
        assert!(e.to_string().contains("schema marker"), "{e}");
    }

    #[test]
    fn a_missing_run_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteStore::open(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(e, StoreError::Missing { .. }), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = SqliteStore::open(empty.path()).unwrap_err();
        assert!(matches!(e, StoreError::Missing { .. }), "{e}");
    }
}
