//! `corpus train`: trains the first N members of a corpus at a search fidelity
//! into a run store like `evolve`'s, so that `corpus pairs` has measured results
//! to pair. Resumable: continuing a run keeps every finished training, trains
//! again the one a killed process left running, and adds members when N grows.

use crate::corpus;
use crate::evolve::{self, EvolveError, SearchConfig, SearchObserver};
use crate::fidelity::CheckObserver;
use crate::store::{NewTrial, SqliteStore, Stage, Store, StoreError, TrialStatus};
use crate::train::{self, Task};
use std::path::{Path, PathBuf};

/// The proposer name the trainings are recorded under.
pub const PROPOSER: &str = "corpus";

/// A corpus training run.
pub struct CorpusRun {
    cfg: SearchConfig,
    resolved: evolve::Resolved,
    dir: PathBuf,
    store: SqliteStore,
    task: Task,
    jobs: usize,
}

/// What a run holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Members recorded.
    pub members: usize,
    /// Of them, finished (trained, diverged or failed).
    pub finished: usize,
    /// Of them, trained to the end.
    pub trained: usize,
}

impl CorpusRun {
    /// Opens the run in `dir` (created with `cfg`'s task settings when it has
    /// none; an existing run keeps its own) and records the first `n` members of
    /// `corpus` that it does not hold yet.
    pub fn open(
        dir: &Path,
        mut cfg: SearchConfig,
        corpus_file: &Path,
        n: usize,
    ) -> Result<CorpusRun, EvolveError> {
        let db = dir.join(crate::store::sqlite::DB_FILE);
        let mut store = if db.exists() {
            let store = SqliteStore::open(dir)?;
            cfg = store
                .meta("config_json")?
                .and_then(|j| serde_json::from_str(&j).ok())
                .ok_or_else(|| {
                    EvolveError::Store(StoreError::Corrupt {
                        path: store.path().to_path_buf(),
                        reason: "the run's configuration is missing or does not decode".into(),
                    })
                })?;
            if store.meta("corpus_train")?.is_none() {
                return Err(EvolveError::Config(format!(
                    "`{}` is not a corpus training run (choose another `--out`)",
                    dir.display()
                )));
            }
            store
        } else {
            cfg.resolve()?;
            SqliteStore::create(dir)?
        };
        let resolved = cfg.resolve()?;
        evolve::fill_task_sizes(&mut cfg, &resolved);
        let members =
            corpus::members(corpus_file, n).map_err(|e| EvolveError::Config(e.to_string()))?;
        let Some(first) = members.first() else {
            return Err(EvolveError::Config(format!(
                "`{}` holds no corpus record",
                corpus_file.display()
            )));
        };
        // The task is checked against the first member (every member shares the
        // seed's input and classes).
        let first = check(&first.source, 1)?;
        let (train, test) = evolve::task_sizes(&cfg, &resolved);
        let split =
            crate::data::load(resolved.dataset, cfg.train.data_dir.as_deref(), train, test)?;
        let task = Task::new(split);
        train::check_fit(&first, &task).map_err(|e| EvolveError::SeedUnfit(e.to_string()))?;
        let json = serde_json::to_string(&cfg).map_err(|e| EvolveError::Config(e.to_string()))?;
        store.set_meta("config_json", &json)?;
        store.set_meta("config_toml", &cfg.to_toml()?)?;
        store.set_meta("corpus_train", &corpus_file.display().to_string())?;
        let held: Vec<String> = store.trials()?.into_iter().map(|t| t.trial.hash).collect();
        let mut step = held.len() as u64;
        for (i, m) in members.iter().enumerate() {
            let net = check(&m.source, i + 1)?;
            let identity = crate::propose::identity(net.net());
            if held.contains(&identity) {
                continue;
            }
            step += 1;
            store.record_proposal(
                &[],
                &NewTrial {
                    stage: Stage::Search,
                    step,
                    proposer: PROPOSER.into(),
                    status: TrialStatus::Pending,
                    name: Some(net.name().to_string()),
                    source: nas_dsl::print(net.net()),
                    hash: identity,
                    parent: Some(m.parent_hash.clone()),
                    outcome: "ok".into(),
                    note: Some(format!("corpus record {} ({})", i + 1, m.hash)),
                    params: Some(net.params()),
                    flops: Some(net.flops()),
                    epochs: cfg.epochs as u32,
                    propose_ms: 0.0,
                    error: None,
                    rung: 0,
                    continues: None,
                },
            )?;
        }
        Ok(CorpusRun {
            cfg,
            resolved,
            dir: dir.to_path_buf(),
            store,
            task,
            jobs: 1,
        })
    }

    /// Trains `jobs` at once, in worker processes each on its share of the
    /// cores (0: one per core, or one on a GPU backend; 1, the default: in this
    /// process, one at a time).
    pub fn with_jobs(mut self, jobs: usize) -> CorpusRun {
        let mut cfg = self.cfg.clone();
        cfg.jobs = jobs;
        self.jobs = cfg.jobs(&self.resolved).max(1);
        self
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the run holds.
    pub fn progress(&self) -> Result<Progress, EvolveError> {
        let trials = self.store.trials()?;
        Ok(Progress {
            members: trials.len(),
            finished: trials.iter().filter(|t| t.status().is_final()).count(),
            trained: trials
                .iter()
                .filter(|t| t.status() == TrialStatus::Done)
                .count(),
        })
    }

    /// Trains every member not finished yet, in order.
    pub fn run(&mut self, obs: &mut dyn CheckObserver) -> Result<Progress, EvolveError> {
        let trials = self.store.trials()?;
        let total = trials.len();
        let done = trials.iter().filter(|t| t.status().is_final()).count();
        SearchObserver::search_started(obs, total as u64, done as u64);
        let ids: Vec<_> = trials.iter().map(|t| t.id).collect();
        let batch = evolve::Batch {
            cfg: &self.cfg,
            resolved: &self.resolved,
            task: &self.task,
            seeds: Default::default(),
            jobs: self.jobs,
        };
        evolve::train_batch(&mut self.store, &ids, &batch, done, total, obs)?;
        self.progress()
    }
}

/// The checked network of corpus record `line`.
fn check(source: &str, line: usize) -> Result<nas_dsl::CheckedNet, EvolveError> {
    nas_dsl::check_str(source)
        .ok()
        .and_then(|n| n.into_iter().next())
        .ok_or_else(|| {
            EvolveError::Config(format!(
                "corpus record {line} does not pass the checker (was the corpus edited?)"
            ))
        })
}
