//! The record of a search run: its effective configuration, every proposal attempt
//! and every trial with its telemetry, behind the small [`Store`] interface (SQLite
//! per run directory, PostgreSQL for many machines). Every state change is one
//! transaction, so a process killed at any moment leaves a consistent record.
//!
//! The store is also the queue between the search's roles: the coordinator
//! records pending trials, workers [claim](Store::claim) them under a lease kept
//! alive by [heartbeats](Store::heartbeat), and every worker write carries the
//! claim's attempt number, so a worker whose lease expired changes nothing.

pub mod patient;
pub mod postgres;
pub mod sqlite;

pub use patient::Patient;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::evolve::asha::Asha;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The identity of a trial in a store.
pub type TrialId = i64;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The run directory is not a directory.
    #[error("`{}` is not a directory (a run directory is needed: it holds nas.db, best.nas and report.html)", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// There is no database where one was expected.
    #[error("no run database at `{}` (start a run with `nas-core evolve --name NAME` first)", path.display())]
    Missing {
        /// The database path.
        path: PathBuf,
    },
    /// The file is not a run database, or it is damaged.
    #[error("`{}` is corrupted or not a nas run database: {reason}", path.display())]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// What SQLite or the schema check said.
        reason: String,
    },
    /// A trial that does not exist, or a state change it cannot make.
    #[error("trial {id}: {reason}")]
    Trial {
        /// The trial.
        id: TrialId,
        /// What is wrong.
        reason: String,
    },
    /// A record in the database that does not decode.
    #[error("record in `{}` does not decode: {reason}", path.display())]
    Decode {
        /// The database path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Any other database failure (disk full, permissions, locked).
    #[error("database `{}`: {source}", path.display())]
    Sqlite {
        /// The database path.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL failure (unreachable, restarted, refused).
    #[error("PostgreSQL `{url}`: {source}")]
    Postgres {
        /// The database URL (password hidden).
        url: String,
        /// The client's error.
        #[source]
        source: ::postgres::Error,
    },
    /// A shared store already holds a run of this name.
    #[error(
        "run `{run}` already exists in {store}; continue it with `--resume` or choose another `--name`"
    )]
    RunExists {
        /// The run's name.
        run: String,
        /// The store (password hidden).
        store: String,
    },
    /// The server stayed unreachable for as long as the caller waits.
    #[error("the store {store} was unreachable for {wait_s:.0} s, giving up: {last}")]
    Unreachable {
        /// The store (password hidden).
        store: String,
        /// How long it was waited for.
        wait_s: f64,
        /// The last error.
        last: String,
    },
    /// A filesystem failure around the database.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The life of a trial: `pending` (recorded, not started), `running`, then one of
/// `done`, `diverged` (NaN/Inf or exploding loss) or `failed` (the trainer
/// refused or broke); `invalid` is a proposal that was rejected before training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Recorded, waiting to be trained.
    Pending,
    /// Being trained (a trial left here by a killed process is reset to pending).
    Running,
    /// Trained to the end.
    Done,
    /// Rejected before training (parse, shape, budget, duplicate, server).
    Invalid,
    /// Training diverged.
    Diverged,
    /// Training could not run.
    Failed,
}

impl TrialStatus {
    /// Every status.
    pub const ALL: [TrialStatus; 6] = [
        TrialStatus::Pending,
        TrialStatus::Running,
        TrialStatus::Done,
        TrialStatus::Invalid,
        TrialStatus::Diverged,
        TrialStatus::Failed,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Done => "done",
            TrialStatus::Invalid => "invalid",
            TrialStatus::Diverged => "diverged",
            TrialStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<TrialStatus> {
        TrialStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the trial will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, TrialStatus::Pending | TrialStatus::Running)
    }
}

impl fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which stage of a run a trial belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The search, at the trial fidelity.
    Search,
    /// The final retraining of the top architectures at `final_epochs`.
    Final,
}

impl Stage {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Search => "search",
            Stage::Final => "final",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "search" => Some(Stage::Search),
            "final" => Some(Stage::Final),
            _ => None,
        }
    }
}

/// A trial to record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewTrial {
    /// Search or final stage.
    pub stage: Stage,
    /// The proposal step it came from (0: the seed network).
    pub step: u64,
    /// Who proposed it (`seed`, `mutate`, `random`, `ollama`, `openai`).
    pub proposer: String,
    /// `pending` for a trial to train, `invalid` for a rejected proposal.
    pub status: TrialStatus,
    /// The net's name, when there is a net.
    pub name: Option<String>,
    /// The canonical text (or, for a rejected proposal, what was judged).
    pub source: String,
    /// The architecture's identity (empty for a rejected proposal without one).
    pub hash: String,
    /// The parent's identity, when known.
    pub parent: Option<String>,
    /// The proposal's outcome (`ok`, `parse_error`, …).
    pub outcome: String,
    /// What the proposer did (e.g. the mutation), or why it was rejected.
    pub note: Option<String>,
    /// Learnable parameters (the checker's count).
    pub params: Option<u64>,
    /// Multiply-accumulates per sample (the checker's count).
    pub flops: Option<u64>,
    /// Training epochs (the fidelity).
    pub epochs: u32,
    /// Wall time of the proposal in milliseconds.
    pub propose_ms: f64,
    /// Why it was rejected, diverged or failed.
    pub error: Option<String>,
    /// The multi-fidelity rung (0: a proposal; see [`crate::evolve::asha`]).
    #[serde(default)]
    pub rung: u32,
    /// The trial this one continues from its checkpoint (a promotion).
    #[serde(default)]
    pub continues: Option<TrialId>,
}

impl NewTrial {
    /// The pending trial that continues `from` (a finished segment at rung
    /// `from.rung`) to `epochs` at the next rung.
    pub fn promotion(from: &TrialRecord, epochs: u32) -> NewTrial {
        NewTrial {
            status: TrialStatus::Pending,
            outcome: "promoted".into(),
            note: Some(format!(
                "promoted from trial {} (rung {}, {} epochs{})",
                from.id,
                from.trial.rung,
                from.trial.epochs,
                from.accuracy
                    .map_or(String::new(), |a| format!(", top-1 {:.2} %", a * 100.0))
            )),
            epochs,
            propose_ms: 0.0,
            error: None,
            rung: from.trial.rung + 1,
            continues: Some(from.id),
            ..from.trial.clone()
        }
    }
}

/// How a trained trial ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialResult {
    /// `done`, `diverged` or `failed`.
    pub status: TrialStatus,
    /// Per-epoch telemetry (a JSON array of the trainer's epoch records).
    pub telemetry: serde_json::Value,
    /// Test top-1 accuracy of the last completed epoch.
    pub accuracy: Option<f64>,
    /// Test top-5 accuracy of the last completed epoch.
    pub top5: Option<f64>,
    /// Test loss of the last completed epoch.
    pub test_loss: Option<f64>,
    /// Wall time of training in seconds.
    pub train_s: f64,
    /// Why it diverged or failed.
    pub error: Option<String>,
    /// The training state to continue from (a segment below the top rung).
    #[serde(skip)]
    pub checkpoint: Option<Vec<u8>>,
}

/// A trial as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialRecord {
    /// Its identity (increasing in the order trials were recorded).
    pub id: TrialId,
    /// What was recorded at the start.
    #[serde(flatten)]
    pub trial: NewTrial,
    /// Per-epoch telemetry (`[]` until trained).
    pub telemetry: serde_json::Value,
    /// Test top-1 accuracy.
    pub accuracy: Option<f64>,
    /// Test top-5 accuracy.
    pub top5: Option<f64>,
    /// Test loss.
    pub test_loss: Option<f64>,
    /// Wall time of the last training run, in seconds.
    pub train_s: Option<f64>,
    /// How many times training was started (more than one after a resume).
    pub runs: u32,
    /// Unix time it was recorded.
    pub created_at: f64,
    /// Unix time it last finished, once final.
    pub finished_at: Option<f64>,
}

impl TrialRecord {
    /// The current status.
    pub fn status(&self) -> TrialStatus {
        self.trial.status
    }

    /// Whether it is a promotion (a later rung of an earlier proposal), not a
    /// proposal of its own.
    pub fn is_promotion(&self) -> bool {
        self.trial.continues.is_some()
    }
}

/// One proposal attempt as stored (from the proposer's [`crate::propose::Attempt`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptRecord {
    /// The proposal step it belongs to.
    pub step: u64,
    /// Who made it.
    pub proposer: String,
    /// 0 for the first request, 1 for the repair round.
    pub index: u32,
    /// `initial` or `repair`.
    pub round: String,
    /// `ok`, `parse_error`, `shape_error`, `over_budget`, `duplicate`, `timeout`,
    /// `server_error`.
    pub outcome: String,
    /// The model's text as received.
    pub raw: String,
    /// The network text judged, if any.
    pub source: Option<String>,
    /// Diagnostics or the reason for rejection.
    pub diagnostics: Option<String>,
    /// Wall time of the request in milliseconds.
    pub latency_ms: f64,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, when reported.
    pub completion_tokens: Option<u64>,
    /// Transport retries.
    pub retries: u32,
}

/// How many times a trial may be started before a death of its training process
/// (or an expired lease) ends it as `failed` instead of queueing it again: a
/// candidate that kills its process cannot crash-loop a search.
pub const MAX_ATTEMPTS: u32 = 3;

/// A trial a worker has claimed: train it, then report with the same attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The trial as stored (status `running`).
    pub trial: TrialRecord,
    /// The attempt number this claim holds (1 for the first training); every
    /// write of the worker carries it.
    pub attempt: u32,
}

/// A running trial whose training process is gone (lease expired, or the
/// in-process trainer died), and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    /// The trial.
    pub id: TrialId,
    /// `pending` (it will be trained again) or `failed` (it used its attempts).
    pub status: TrialStatus,
    /// The attempts it has used.
    pub attempts: u32,
}

/// The reason stored when a trial used up its attempts.
pub fn died_reason(attempts: u32) -> String {
    format!(
        "the training process died or lost its lease {attempts} time(s) (at most {MAX_ATTEMPTS} attempts); the trial is not retried"
    )
}

/// Where a run's record lives. Each method is one transaction: after it returns,
/// the change is durable; if the process dies during it, nothing of it is visible.
pub trait Store: Send {
    /// A value of the run's metadata (`config_json`, `config_toml`, …).
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets a value of the run's metadata.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Records a proposal: its attempts and the trial it produced (`pending` to
    /// train, or `invalid`), together.
    fn record_proposal(
        &mut self,
        attempts: &[AttemptRecord],
        trial: &NewTrial,
    ) -> Result<TrialId, StoreError>;

    /// Marks a pending trial as running.
    fn start_trial(&mut self, id: TrialId) -> Result<(), StoreError>;

    /// Records how a running trial ended.
    fn finish_trial(&mut self, id: TrialId, result: &TrialResult) -> Result<(), StoreError>;

    /// Every trial, in the order recorded.
    fn trials(&self) -> Result<Vec<TrialRecord>, StoreError>;

    /// Every proposal attempt, in the order recorded.
    fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError>;

    /// One trial, if it exists.
    fn trial(&self, id: TrialId) -> Result<Option<TrialRecord>, StoreError>;

    /// Resets trials left `running` by a process that died (no lease: trained in
    /// the process that opened the store; or a lease that expired) to `pending`,
    /// so they are trained again, or to `failed` once they used [`MAX_ATTEMPTS`];
    /// finished trials and trials under a live lease are never touched.
    fn recover(&mut self) -> Result<Vec<Reaped>, StoreError>;

    /// Claims the oldest pending trial for `worker`, holding it for `lease_s`
    /// seconds of database time; one statement, so two workers never claim the
    /// same trial. `None` when nothing is pending.
    fn claim(&mut self, worker: &str, lease_s: f64) -> Result<Option<Claim>, StoreError>;

    /// Renews the lease of a claim; `false` (nothing changed) when the trial is
    /// no longer this attempt's: the worker must drop it.
    fn heartbeat(&mut self, id: TrialId, attempt: u32, lease_s: f64) -> Result<bool, StoreError>;

    /// Records how a claimed trial ended; `false` (nothing written) when the
    /// trial is no longer this attempt's.
    fn complete(
        &mut self,
        id: TrialId,
        attempt: u32,
        result: &TrialResult,
    ) -> Result<bool, StoreError>;

    /// Returns running trials whose lease expired to the queue (or ends them as
    /// `failed` after [`MAX_ATTEMPTS`]).
    fn reap(&mut self) -> Result<Vec<Reaped>, StoreError>;

    /// Records that `worker` is alive with `slots` job slots, for `ttl_s` seconds.
    fn worker_seen(&mut self, worker: &str, slots: u32, ttl_s: f64) -> Result<(), StoreError>;

    /// The job slots of the workers seen within their time to live.
    fn live_slots(&self) -> Result<u32, StoreError>;

    /// The checkpoint trial `id` left (a finished segment below the top rung),
    /// while it is kept.
    fn checkpoint(&self, id: TrialId) -> Result<Option<Vec<u8>>, StoreError>;

    /// The trials holding a checkpoint, with its size in bytes.
    fn checkpoints(&self) -> Result<Vec<(TrialId, u64)>, StoreError>;

    /// One step of asynchronous successive halving, in one transaction that
    /// excludes every other caller's: records the next promotion
    /// ([`crate::evolve::asha::plan`]) as a pending trial and deletes the
    /// checkpoints no longer needed. The promotion's id, or none (start a new
    /// trial). Two callers never promote past a rung's quota. A promotion
    /// that would train more than `epochs_left` epochs is not made.
    fn promote(
        &mut self,
        asha: &Asha,
        epochs_left: Option<u64>,
    ) -> Result<Option<TrialId>, StoreError>;
}

/// The promotion a store records under its lock (shared by the stores).
pub(crate) fn promotion_step(
    asha: &Asha,
    trials: &[TrialRecord],
    held: &[TrialId],
    epochs_left: Option<u64>,
) -> (Option<NewTrial>, Vec<TrialId>) {
    let search: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search)
        .collect();
    let plan = crate::evolve::asha::plan(asha, &search, held);
    let rungs = asha.rungs();
    let row = plan.promote.and_then(|(id, from)| {
        let t = search.iter().find(|t| t.id == id)?;
        let epochs = *rungs.get(from + 1)?;
        let cost = u64::from(epochs.saturating_sub(t.trial.epochs));
        if epochs_left.is_some_and(|left| cost > left) {
            return None;
        }
        Some(NewTrial::promotion(t, epochs))
    });
    (row, plan.drop)
}

/// Where a run's store is, as a user names it (`--storage`): an SQLite file
/// (`sqlite:PATH`, or a run directory / `nas.db` path) or a PostgreSQL URL with
/// the run's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A run's SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…`) and the run's name in it (for a
    /// worker, none: the newest running run).
    Postgres {
        /// The connection URL.
        url: String,
        /// The run.
        run: Option<String>,
    },
}

impl Storage {
    /// Reads a `--storage` value: `sqlite:PATH` or a path (a run directory or its
    /// `nas.db`).
    pub fn parse(text: &str) -> Result<Storage, String> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Storage::Postgres {
                url: text.to_string(),
                run: None,
            });
        }
        if text.is_empty() {
            return Err("an empty storage; expected `sqlite:PATH` or a run directory".into());
        }
        let path = PathBuf::from(text.strip_prefix("sqlite:").unwrap_or(text));
        Ok(Storage::Sqlite(if path.is_dir() {
            path.join(sqlite::DB_FILE)
        } else {
            path
        }))
    }

    /// Connects to an existing run's store without touching its trials (a
    /// worker's or a heartbeat's connection).
    pub fn attach(&self) -> Result<Box<dyn Store>, StoreError> {
        match self {
            Storage::Sqlite(path) => Ok(Box::new(SqliteStore::attach(path)?)),
            Storage::Postgres { url, run } => {
                let run = match run {
                    Some(r) => r.clone(),
                    None => PgStore::newest_running(url)?.ok_or_else(|| StoreError::Missing {
                        path: format!(
                            "{} (no run is running; pass `--run NAME`)",
                            postgres::redact(url)
                        )
                        .into(),
                    })?,
                };
                Ok(Box::new(PgStore::attach(url, &run)?))
            }
        }
    }

    /// The value to pass to a worker's `--storage`.
    pub fn arg(&self) -> String {
        match self {
            Storage::Sqlite(path) => format!("sqlite:{}", path.display()),
            Storage::Postgres { url, .. } => url.clone(),
        }
    }

    /// Whether a failure of this store may pass (a server restarting, a network
    /// cut), so that a worker waits and tries again instead of exiting.
    pub fn is_transient(e: &StoreError) -> bool {
        match e {
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            // A server shutting down or starting (SQLSTATE 08…, 57P…), or a
            // refused or cut connection (an I/O error underneath).
            StoreError::Postgres { source, .. } => {
                let io = std::error::Error::source(source)
                    .is_some_and(|e| e.downcast_ref::<std::io::Error>().is_some());
                source.is_closed()
                    || io
                    || source.as_db_error().is_some_and(|db| {
                        let code = db.code().code();
                        code.starts_with("08") || code.starts_with("57P")
                    })
            }
            _ => false,
        }
    }

    /// The run's name in a shared database (none for SQLite: the file is the run).
    pub fn run(&self) -> Option<&str> {
        match self {
            Storage::Sqlite(_) => None,
            Storage::Postgres { run, .. } => run.as_deref(),
        }
    }

    /// Whether the store is shared between machines (workers may be anywhere).
    pub fn is_shared(&self) -> bool {
        matches!(self, Storage::Postgres { .. })
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Sqlite(_) => f.write_str(&self.arg()),
            Storage::Postgres { url, run } => {
                write!(f, "{}", postgres::redact(url))?;
                match run {
                    Some(r) => write!(f, " (run `{r}`)"),
                    None => Ok(()),
                }
            }
        }
    }
}
