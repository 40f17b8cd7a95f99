//! The record of a search run: its effective configuration, every proposal attempt
//! and every trial with its telemetry, behind the small [`Store`] interface (SQLite
//! per run directory today, a server database later). Every state change is one
//! transaction, so a process killed at any moment leaves a consistent record.

pub mod sqlite;

pub use sqlite::SqliteStore;

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

/// Where a run's record lives. Each method is one transaction: after it returns,
/// the change is durable; if the process dies during it, nothing of it is visible.
pub trait Store {
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

    /// Resets trials left `running` by a process that died to `pending`, so they
    /// are trained again; finished trials are never touched. Returns their ids.
    fn recover(&mut self) -> Result<Vec<TrialId>, StoreError>;
}
