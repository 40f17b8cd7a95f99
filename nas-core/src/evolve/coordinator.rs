//! The coordinator's search loop: a population (the top-k trained architectures by accuracy),
//! parents chosen by tournament, one child per step from the proposer, trained at
//! the trial fidelity and recorded in the run's [`Store`]; stopping at a number of
//! proposals or a time budget; then an optional retraining of the top
//! architectures at a higher fidelity, the leaderboard, `best.nas` and the report.
//!
//! Every state change goes to the store first, so `evolve --resume` continues a
//! killed run: the trial that was in flight is trained again, finished ones never.

use super::asha::Asha;
use super::trial::{check_seed_budget, failed_result, load_task, seed_network, train_to_result};
use super::worker::{DATA_KEY, LOCAL_LEASE_S, LocalWorkers, STATE_KEY, worker_exe};
use super::{
    AnyProposer, CONFIG_FILE, EvolveError, Resolved, SEED_FILE, SearchConfig, connect,
    default_name, fill_task_sizes,
};
use crate::propose::ahead::Ahead;
use crate::propose::{self, Context, Proposer, Telemetry};
use crate::report::{self, Entry, RunData};
use crate::store::{
    AttemptRecord, NewTrial, Patient, PgStore, Reaped, SqliteStore, Stage, Storage, Store,
    StoreError, TrialId, TrialRecord, TrialResult, TrialStatus,
};
use crate::train::{self, BackendKind, Task, TrainConfig, TrainError};
use nas_dsl::CheckedNet;
use nas_dsl::mutate::{Arch, SeedRng, seed_rng};
use rand::RngExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Receives the events of a search (the CLI's bars and per-trial lines); the
/// training events come through [`train::Observer`].
pub trait SearchObserver: train::Observer {
    /// A one-line message for the user (e.g. the proposer fallback).
    fn notice(&mut self, _message: &str) {}
    /// The search stage begins with `done` of `planned` proposals already made.
    fn search_started(&mut self, _planned: u64, _done: u64) {}
    /// A trial starts training.
    fn trial_started(&mut self, _trial: &TrialRecord) {}
    /// A trial ended (trained, diverged, failed, or rejected before training);
    /// `best` is the best accuracy so far.
    fn trial_finished(&mut self, _trial: &TrialRecord, _best: Option<f64>) {}
    /// The final stage begins with `count` retrainings.
    fn final_started(&mut self, _count: usize) {}
}

impl SearchObserver for () {}

/// Results shared between runs (a comparison trains the same seed network with the
/// same settings in every run): key → result.
pub type TrainCache = Arc<Mutex<HashMap<String, TrialResult>>>;

/// Why the search stage stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All proposals were made.
    Trials,
    /// The time budget ran out.
    TimeBudget,
    /// The epoch budget was queued.
    EpochBudget,
}

/// The search epochs a run's trials trained or will train: each trial's
/// epochs beyond those of the trial it continues (rejected proposals: none).
pub fn search_epochs(trials: &[TrialRecord]) -> u64 {
    let epochs: std::collections::HashMap<TrialId, u32> =
        trials.iter().map(|t| (t.id, t.trial.epochs)).collect();
    trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search && t.status() != TrialStatus::Invalid)
        .map(|t| {
            let from = t
                .trial
                .continues
                .and_then(|c| epochs.get(&c).copied())
                .unwrap_or(0);
            u64::from(t.trial.epochs.saturating_sub(from))
        })
        .sum()
}

/// What a search session did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The run's directory.
    pub dir: PathBuf,
    /// The run's name.
    pub name: String,
    /// The proposer used.
    pub proposer: String,
    /// Why the search stage stopped.
    pub stopped: StopReason,
    /// Wall time of this session, in seconds.
    pub wall_s: f64,
    /// Seconds of this session spent in training.
    pub train_s: f64,
    /// Trials trained in this session.
    pub trained: usize,
    /// Trials trained at once.
    pub jobs: usize,
    /// The leaderboard (entries within noise of the best marked tied).
    pub leaderboard: Vec<Entry>,
    /// The noise of a score.
    pub noise: report::Noise,
    /// How the run's proposals (all sessions, the seed left out) ended: outcome
    /// name → count.
    pub outcomes: BTreeMap<String, usize>,
}

impl Summary {
    /// Proposals made, and how many of them were new, valid networks.
    pub fn proposals(&self) -> (usize, usize) {
        let made = self.outcomes.values().sum();
        (made, self.outcomes.get("ok").copied().unwrap_or(0))
    }

    /// The share of the job slots' wall time spent outside training.
    pub fn overhead(&self) -> f64 {
        let slots = self.wall_s * self.jobs.max(1) as f64;
        if slots <= 0.0 {
            0.0
        } else {
            ((slots - self.train_s) / slots).max(0.0)
        }
    }
}

/// An architecture the search produced, with its training result once known.
#[derive(Clone, Debug)]
struct Produced {
    id: TrialId,
    arch: Arc<Arch>,
    hash: String,
    /// At the highest rung trained (a flat search: its only one).
    accuracy: Option<f64>,
    loss: Option<f64>,
    epochs: u32,
    /// Lower rungs of a promoted network: `(epochs, accuracy)`.
    rungs: Vec<(u32, f64)>,
}

impl Produced {
    /// Takes in a finished trial of this network: its own result, or a
    /// promotion's (a higher rung becomes the score, the lower one history).
    fn take_in(&mut self, rec: &TrialRecord) {
        let accuracy = (rec.status() == TrialStatus::Done)
            .then_some(rec.accuracy)
            .flatten();
        if !rec.is_promotion() {
            self.accuracy = accuracy;
            self.loss = rec.test_loss;
            return;
        }
        let Some(a) = accuracy else { return };
        if rec.trial.epochs > self.epochs {
            if let Some(lower) = self.accuracy {
                self.rungs.push((self.epochs, lower));
            }
            self.accuracy = Some(a);
            self.loss = rec.test_loss;
            self.epochs = rec.trial.epochs;
        }
    }
}

/// A trial ready to train: its network and settings, and its cache key.
struct Job {
    id: TrialId,
    net: CheckedNet,
    cfg: TrainConfig,
    key: String,
}

/// The lease of a claim in a shared store (workers on other machines: network
/// hiccups must not cost trainings).
const SHARED_LEASE_S: f64 = 30.0;
/// How long the coordinator waits out an unreachable shared store.
const DB_WAIT_S: f64 = 120.0;

/// The job slots of a search: its local workers, or in a shared store the
/// workers seen alive (looked up once a second).
struct Slots {
    local: usize,
    shared: bool,
    live: usize,
    looked: Option<Instant>,
    /// When the queue was first seen with no worker alive (for the notice).
    unserved_since: Option<Instant>,
    told: bool,
    /// The most slots seen (the summary's job count).
    peak: usize,
}

impl Slots {
    fn new(local: usize, shared: bool) -> Slots {
        Slots {
            local,
            shared,
            live: 0,
            looked: None,
            unserved_since: None,
            told: false,
            peak: 0,
        }
    }

    /// Trials to keep queued: at least one.
    fn get(&mut self, store: &dyn Store) -> Result<usize, StoreError> {
        if self.shared && self.looked.is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0) {
            self.live = store.live_slots()? as usize;
            self.looked = Some(Instant::now());
        }
        let n = self.local.max(self.live).max(1);
        self.peak = self.peak.max(n);
        Ok(n)
    }

    /// A notice, once, when trials have waited 15 s with no worker alive.
    fn unserved(&mut self, storage: &Storage) -> Option<String> {
        if !self.shared || self.local > 0 || self.live > 0 {
            self.unserved_since = None;
            return None;
        }
        let since = *self.unserved_since.get_or_insert_with(Instant::now);
        if self.told || since.elapsed().as_secs_f64() < 15.0 {
            return None;
        }
        self.told = true;
        Some(format!(
            "no worker has served this run for 15 s; start some: nas-core worker --storage URL --run {} (the store: {storage})",
            storage.run().unwrap_or("NAME")
        ))
    }
}

/// A search over one run directory.
pub struct Evolve {
    cfg: SearchConfig,
    resolved: Resolved,
    dir: PathBuf,
    name: String,
    store: Box<dyn Store>,
    /// Where the store is, for the workers.
    storage: Storage,
    /// Train nothing here: workers elsewhere serve the shared store.
    coordinate_only: bool,
    /// The GPUs local workers use, one each in turn.
    devices: Vec<u32>,
    task: Task,
    seed: Arc<Arch>,
    seed_hash: String,
    /// The proposer; away in its thread while a proposal is in flight.
    proposer: Option<AnyProposer>,
    proposer_name: &'static str,
    /// Trials trained at once.
    jobs: usize,
    rt: Arc<tokio::runtime::Runtime>,
    rng: SeedRng,
    produced: Vec<Produced>,
    cache: Option<TrainCache>,
    notices: Vec<String>,
    prior_elapsed: f64,
    started: Instant,
    train_s: f64,
    trained: usize,
    /// ASHA: `trained` when the store last had nothing to promote (nothing
    /// becomes promotable until another result arrives).
    nothing_to_promote: Option<usize>,
}

/// What a new or resumed search is made of.
struct Parts {
    cfg: SearchConfig,
    resolved: Resolved,
    dir: PathBuf,
    name: String,
    store: Box<dyn Store>,
    storage: Storage,
    recovered: Vec<Reaped>,
    seed: CheckedNet,
    task: Task,
    rt: tokio::runtime::Runtime,
    proposer: (AnyProposer, Option<String>),
}

/// The random streams of a session: later sessions of a run continue with
/// fresh, reproducible ones.
fn session_seed(seed: u64, steps: u64) -> u64 {
    seed.wrapping_add(steps.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn runtime() -> Result<tokio::runtime::Runtime, EvolveError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| EvolveError::Io {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })
}

impl Evolve {
    /// Starts a new run in `runs_dir/name` (the name defaults to the time).
    /// Everything that can be refused (settings, seed, budget, data, proposer) is
    /// checked before the run directory is made.
    pub fn create(mut cfg: SearchConfig) -> Result<Evolve, EvolveError> {
        let name = match &cfg.name {
            Some(n) => n.clone(),
            None => default_name("evolve"),
        };
        cfg.name = Some(name.clone());
        let resolved = cfg.resolve()?;
        // The saved configuration states the sizes used.
        fill_task_sizes(&mut cfg, &resolved);
        let dir = cfg.runs_dir.join(&name);
        if dir.join(crate::store::sqlite::DB_FILE).exists()
            || (cfg.storage.is_some() && dir.join(CONFIG_FILE).exists())
        {
            return Err(EvolveError::Exists(dir));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory { path: dir }.into());
        }
        let seed = seed_network(&cfg)?;
        check_seed_budget(&seed, &cfg.budget())?;
        let task = load_task(&cfg, &resolved, &seed)?;
        let rt = runtime()?;
        let proposer = connect(&cfg, &resolved, &rt, session_seed(cfg.seed, 0))?;
        let (store, storage): (Box<dyn Store>, Storage) = match &cfg.storage {
            None => {
                let store = SqliteStore::create(&dir)?;
                let storage = Storage::Sqlite(store.path().to_path_buf());
                (Box::new(store), storage)
            }
            Some(url) => {
                std::fs::create_dir_all(&dir).map_err(|source| EvolveError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let store = PgStore::create(url, &name)?;
                let storage = Storage::Postgres {
                    url: url.clone(),
                    run: Some(name.clone()),
                };
                let store = Patient::new(storage.clone(), Box::new(store), DB_WAIT_S);
                (Box::new(store), storage)
            }
        };
        Evolve::start(Parts {
            cfg,
            resolved,
            dir,
            name,
            store,
            storage,
            recovered: Vec::new(),
            seed,
            task,
            rt,
            proposer,
        })
    }

    /// Opens an existing run; `adjust` may change its budget (trials, time,
    /// final stage) before it continues.
    pub fn resume(
        dir: &Path,
        adjust: impl FnOnce(&mut SearchConfig) -> Result<(), EvolveError>,
    ) -> Result<Evolve, EvolveError> {
        let (store, storage, recovered) = open_record(dir, true)?;
        let corrupt = |reason: String| {
            EvolveError::Store(StoreError::Corrupt {
                path: PathBuf::from(storage.to_string()),
                reason,
            })
        };
        let json = store
            .meta("config_json")?
            .ok_or_else(|| corrupt("the run's configuration is missing".into()))?;
        let mut cfg: SearchConfig = serde_json::from_str(&json)
            .map_err(|e| corrupt(format!("the run's configuration does not decode: {e}")))?;
        adjust(&mut cfg)?;
        let name = cfg
            .name
            .clone()
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "run".into());
        let resolved = cfg.resolve()?;
        let seed = seed_network(&cfg)?;
        check_seed_budget(&seed, &cfg.budget())?;
        let task = load_task(&cfg, &resolved, &seed)?;
        let steps = store
            .trials()?
            .iter()
            .map(|t| t.trial.step)
            .max()
            .unwrap_or(0);
        let rt = runtime()?;
        let proposer = connect(&cfg, &resolved, &rt, session_seed(cfg.seed, steps))?;
        Evolve::start(Parts {
            cfg,
            resolved,
            dir: dir.to_path_buf(),
            name,
            store,
            storage,
            recovered,
            seed,
            task,
            rt,
            proposer,
        })
    }

    fn start(parts: Parts) -> Result<Evolve, EvolveError> {
        let Parts {
            cfg,
            resolved,
            dir,
            name,
            mut store,
            storage,
            recovered,
            seed,
            task,
            rt,
            proposer: (proposer, notice),
        } = parts;
        // The data the run trains on: recorded once, the same on every resume.
        let fingerprint = task.fingerprint();
        match store.meta(DATA_KEY)? {
            Some(recorded) if recorded != fingerprint => {
                return Err(EvolveError::Config(format!(
                    "the training data changed since this run started (its content hash was {recorded}, it is now {fingerprint}): a resumed run must train on the same images; restore the data or start a new run"
                )));
            }
            Some(_) => {}
            None => store.set_meta(DATA_KEY, &fingerprint)?,
        }
        // The effective configuration, saved before anything runs.
        let toml = cfg.to_toml()?;
        let json = serde_json::to_string(&cfg).map_err(|e| EvolveError::Config(e.to_string()))?;
        store.set_meta("config_json", &json)?;
        store.set_meta("config_toml", &toml)?;
        let config_path = dir.join(CONFIG_FILE);
        std::fs::write(&config_path, &toml).map_err(|source| EvolveError::Io {
            path: config_path,
            source,
        })?;
        let prior_elapsed = store
            .meta("elapsed_s")?
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        let trials = store.trials()?;
        let steps = trials.iter().map(|t| t.trial.step).max().unwrap_or(0);
        let seed_arch = Arc::new(Arch::new(seed));
        let seed_hash = propose::identity(seed_arch.net().net());
        let mut produced: Vec<Produced> = Vec::new();
        for t in trials
            .iter()
            .filter(|t| t.trial.stage == Stage::Search && t.status() != TrialStatus::Invalid)
        {
            if t.is_promotion() {
                if let Some(p) = produced.iter_mut().find(|p| p.hash == t.trial.hash) {
                    p.take_in(t);
                }
                continue;
            }
            match nas_dsl::check_str(&t.trial.source) {
                Ok(nets) => {
                    if let Some(net) = nets.into_iter().next() {
                        produced.push(Produced {
                            id: t.id,
                            arch: Arc::new(Arch::new(net)),
                            hash: t.trial.hash.clone(),
                            accuracy: (t.status() == TrialStatus::Done)
                                .then_some(t.accuracy)
                                .flatten(),
                            loss: t.test_loss,
                            epochs: t.trial.epochs,
                            rungs: Vec::new(),
                        });
                    }
                }
                Err(e) => tracing::warn!(trial = t.id, "stored source does not check: {e}"),
            }
        }
        let mut notices = Vec::new();
        notices.extend(notice);
        let again: Vec<TrialId> = recovered
            .iter()
            .filter(|r| r.status == TrialStatus::Pending)
            .map(|r| r.id)
            .collect();
        if !again.is_empty() {
            notices.push(format!(
                "resuming: trial(s) {again:?} were interrupted and will be trained again"
            ));
        }
        for r in recovered.iter().filter(|r| r.status == TrialStatus::Failed) {
            notices.push(format!(
                "resuming: trial {} ends as failed: {}",
                r.id,
                crate::store::died_reason(r.attempts)
            ));
        }
        Ok(Evolve {
            rng: seed_rng(session_seed(cfg.seed, steps) ^ 0x0070_415E_1EC7),
            jobs: cfg.jobs(&resolved),
            cfg,
            resolved,
            dir,
            name,
            store,
            storage,
            coordinate_only: false,
            devices: Vec::new(),
            task,
            seed: seed_arch,
            seed_hash,
            proposer_name: proposer.name(),
            proposer: Some(proposer),
            rt: Arc::new(rt),
            produced,
            cache: None,
            notices,
            prior_elapsed,
            started: Instant::now(),
            train_s: 0.0,
            trained: 0,
            nothing_to_promote: None,
        })
    }

    /// Shares training results with other runs of identical settings.
    pub fn with_cache(mut self, cache: TrainCache) -> Evolve {
        self.cache = Some(cache);
        self
    }

    /// The run's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The effective configuration.
    pub fn config(&self) -> &SearchConfig {
        &self.cfg
    }

    /// The proposer in use.
    pub fn proposer(&self) -> &'static str {
        self.proposer_name
    }

    /// The run's store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Where the run's record is.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Spreads the local workers over these GPUs (`--backend cuda`); with
    /// `jobs` 0, one job per device.
    pub fn with_devices(mut self, devices: Vec<u32>) -> Result<Evolve, EvolveError> {
        if self.resolved.backend != BackendKind::Cuda {
            return Err(EvolveError::Config(
                "`--devices` names GPUs: it needs `--backend cuda`".into(),
            ));
        }
        if self.cfg.jobs == 0 {
            self.jobs = devices.len().max(1);
        }
        self.devices = devices;
        Ok(self)
    }

    /// Trains nothing on this machine: workers elsewhere serve the shared store.
    pub fn coordinate_only(mut self) -> Evolve {
        self.coordinate_only = true;
        self
    }

    fn elapsed(&self) -> f64 {
        self.prior_elapsed + self.started.elapsed().as_secs_f64()
    }

    fn save_elapsed(&mut self) -> Result<(), EvolveError> {
        let e = self.elapsed();
        self.store.set_meta("elapsed_s", &format!("{e:.3}"))?;
        Ok(())
    }

    fn best_accuracy(&self) -> Option<f64> {
        self.produced
            .iter()
            .filter_map(|p| p.accuracy)
            .max_by(f64::total_cmp)
    }

    /// Runs the search to its end, then the final stage and the report.
    pub fn run(&mut self, obs: &mut dyn SearchObserver) -> Result<Summary, EvolveError> {
        for n in std::mem::take(&mut self.notices) {
            tracing::info!("{n}");
            obs.notice(&n);
        }
        tracing::info!(
            run = %self.name,
            proposer = self.proposer_name,
            trials = self.cfg.trials,
            epochs = self.cfg.epochs,
            "search starts"
        );
        let mut trials = self.store.trials()?;
        if !trials.iter().any(|t| t.trial.stage == Stage::Search) {
            let seed = self.seed.clone();
            let record = NewTrial {
                stage: Stage::Search,
                step: 0,
                proposer: "seed".into(),
                status: TrialStatus::Pending,
                name: Some(seed.net().name().to_string()),
                source: seed.source().to_string(),
                hash: self.seed_hash.clone(),
                parent: None,
                outcome: "ok".into(),
                note: Some(format!(
                    "seed network from {}",
                    self.cfg
                        .seed_file
                        .as_ref()
                        .map_or(SEED_FILE.to_string(), |p| p.display().to_string())
                )),
                params: Some(seed.net().params()),
                flops: Some(seed.net().flops()),
                epochs: self.cfg.first_epochs() as u32,
                propose_ms: 0.0,
                error: None,
                rung: 0,
                continues: None,
            };
            let id = self.store.record_proposal(&[], &record)?;
            self.produced.push(Produced {
                id,
                arch: seed,
                hash: self.seed_hash.clone(),
                accuracy: None,
                loss: None,
                epochs: self.cfg.first_epochs() as u32,
                rungs: Vec::new(),
            });
            trials = self.store.trials()?;
        }
        let steps = trials.iter().map(|t| t.trial.step).max().unwrap_or(0);
        obs.search_started(self.cfg.trials, steps.min(self.cfg.trials));
        // Trials a killed process left unfinished are trained first.
        let mut queue: VecDeque<TrialId> = trials
            .iter()
            .filter(|t| t.trial.stage == Stage::Search && t.status() == TrialStatus::Pending)
            .map(|t| t.id)
            .collect();
        // Trials workers still hold under a live lease (the coordinator was
        // killed while they trained) are waited for (or reaped).
        let mut queued: Vec<TrialId> = trials
            .iter()
            .filter(|t| t.trial.stage == Stage::Search && t.status() == TrialStatus::Running)
            .map(|t| t.id)
            .collect();
        // An LLM is asked for the next proposal while a trial trains; the
        // instant baselines propose when the previous trial has ended.
        let ahead_ok =
            self.cfg.llm.propose_ahead && self.proposer.as_ref().is_some_and(AnyProposer::is_llm);
        let jobs = self.jobs;
        let shared = self.storage.is_shared();
        // More than one job, or a shared store: worker processes claim the
        // queued trials from the store (two trainings in one process do not
        // overlap in `flex`), here and on any machine that reaches the store.
        // ASHA: promotions continue from checkpoints, which workers load and
        // write through the store; so an ASHA search always trains in workers.
        let asha = self.cfg.asha()?;
        let mut workers = if jobs > 1
            || shared
            || asha.is_some()
            || !queued.is_empty()
            || !self.devices.is_empty()
        {
            let local = if self.coordinate_only { 0 } else { jobs };
            let threads = (super::cores() / jobs).max(1);
            let exe = worker_exe()?;
            let lease = if shared {
                SHARED_LEASE_S
            } else {
                LOCAL_LEASE_S
            };
            Some(LocalWorkers::spawn(
                &exe,
                &self.storage,
                local,
                threads,
                lease,
                &self.devices,
            )?)
        } else {
            None
        };
        let mut slots = Slots::new(if self.coordinate_only { 0 } else { jobs }, shared);
        self.store.set_meta(STATE_KEY, "running")?;
        let mut step = steps;
        let mut ahead: Option<(u64, Option<String>, Ahead<AnyProposer>)> = None;
        let mut stop = None;
        loop {
            let jobs = slots.get(self.store.as_ref())?;
            // ASHA: a free job slot first continues the best unpromoted trial
            // of the highest rung with one (the store decides, in one
            // transaction), else a new trial is proposed.
            if let Some(asha) = &asha
                && queue.len() + queued.len() < jobs
                && let Some(id) = self.promote(asha)?
            {
                queue.push_back(id);
            }
            // A proposal is asked for while a job slot is free (and, for an LLM,
            // one ahead of them), with the results finished so far.
            let pending = queue.len() + queued.len();
            if ahead.is_none()
                && stop.is_none()
                && (pending < jobs || (ahead_ok && pending <= jobs))
            {
                if step >= self.cfg.trials {
                    stop = Some(StopReason::Trials);
                } else if let Some(budget) = self.cfg.time_budget
                    && self.elapsed() >= budget.0
                {
                    stop = Some(StopReason::TimeBudget);
                } else if self
                    .epochs_left()?
                    .is_some_and(|left| left < self.cfg.first_epochs() as u64)
                {
                    stop = Some(StopReason::EpochBudget);
                } else {
                    step += 1;
                    ahead = Some(self.launch(step)?);
                }
            }
            // On an error, the proposal and trainings in flight are left to end on
            // their own: nothing of them was recorded (the store's running trials
            // are trained again on resume).
            match workers.as_mut() {
                None => {
                    if let Some(id) = queue.pop_front() {
                        self.train_trial(id, obs)?;
                        continue;
                    }
                }
                Some(w) => {
                    while let Some(id) = queue.pop_front() {
                        if self.admit(id, obs)? {
                            queued.push(id);
                        }
                    }
                    if !queued.is_empty() {
                        w.check()?;
                        self.collect(&mut queued, obs)?;
                        if let Some(n) = slots.unserved(&self.storage) {
                            tracing::warn!("{n}");
                            obs.notice(&n);
                        }
                    }
                }
            }
            if queued.is_empty() {
                match ahead.take() {
                    Some((step, parent, flight)) => {
                        if let Some(id) = self.land(step, parent, flight, obs)? {
                            queue.push_back(id);
                        }
                    }
                    // Done once nothing is queued, in flight, to be proposed
                    // or (ASHA) to be promoted.
                    None if queue.is_empty() && stop.is_some() => match &asha {
                        Some(asha) => match self.promote(asha)? {
                            Some(id) => queue.push_back(id),
                            None => break,
                        },
                        None => break,
                    },
                    None => {}
                }
                continue;
            }
            // Workers train: take the proposal when it is there, else wait a little.
            if ahead.as_ref().is_some_and(|(_, _, f)| f.is_finished()) {
                if let Some((step, parent, flight)) = ahead.take()
                    && let Some(id) = self.land(step, parent, flight, obs)?
                {
                    queue.push_back(id);
                }
            } else {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let stopped = stop.unwrap_or(StopReason::Trials);
        tracing::info!(?stopped, "search stage ends");
        self.final_stage(workers.as_mut(), obs)?;
        self.store.set_meta(STATE_KEY, "finished")?;
        if let Some(mut w) = workers {
            w.stop();
        }
        self.save_elapsed()?;
        let mut run = RunData::load(&self.name, self.store.as_ref())?;
        run.noise = crate::fidelity::noise_near(&self.cfg, &self.dir);
        let leaderboard = report::write_run(&self.dir, &run)?;
        let mut outcomes = BTreeMap::new();
        for per in report::outcome_counts(&run.trials).into_values() {
            for (outcome, n) in per {
                *outcomes.entry(outcome).or_default() += n;
            }
        }
        Ok(Summary {
            outcomes,
            noise: run.noise,
            dir: self.dir.clone(),
            name: self.name.clone(),
            proposer: self.proposer_name.to_string(),
            stopped,
            wall_s: self.started.elapsed().as_secs_f64(),
            train_s: self.train_s,
            trained: self.trained,
            jobs: if shared { slots.peak } else { self.jobs },
            leaderboard,
        })
    }

    /// Search epochs not yet queued under `epoch_budget` (none: no budget):
    /// the budget less every trial's epochs beyond those it continued from.
    fn epochs_left(&self) -> Result<Option<u64>, EvolveError> {
        let Some(budget) = self.cfg.epoch_budget else {
            return Ok(None);
        };
        let trials = self.store.trials()?;
        Ok(Some(budget.saturating_sub(search_epochs(&trials))))
    }

    /// One ASHA step through the store (within the epoch budget); the
    /// promotion queued, if any.
    fn promote(&mut self, asha: &Asha) -> Result<Option<TrialId>, EvolveError> {
        if self.nothing_to_promote == Some(self.trained) {
            return Ok(None);
        }
        let left = self.epochs_left()?;
        let Some(id) = self.store.promote(asha, left)? else {
            self.nothing_to_promote = Some(self.trained);
            return Ok(None);
        };
        let rec = self.trial(id)?;
        tracing::info!(
            trial = id,
            from = rec.trial.continues,
            rung = rec.trial.rung,
            epochs = rec.trial.epochs,
            "promoted"
        );
        Ok(Some(id))
    }

    /// The population: the top-k trained architectures by accuracy.
    fn population(&self) -> Vec<&Produced> {
        let mut trained: Vec<&Produced> = self
            .produced
            .iter()
            .filter(|p| p.accuracy.is_some())
            .collect();
        trained.sort_by(|a, b| {
            b.accuracy
                .unwrap_or(0.0)
                .total_cmp(&a.accuracy.unwrap_or(0.0))
                .then(a.id.cmp(&b.id))
        });
        trained.truncate(self.cfg.population);
        trained
    }

    fn telemetry(p: &Produced) -> Option<Telemetry> {
        p.accuracy.map(|a| Telemetry {
            accuracy: Some(a),
            loss: p.loss,
            epochs: Some(p.epochs),
            rungs: p.rungs.clone(),
        })
    }

    /// The proposer's context and the parent it will use. Every produced
    /// architecture is recorded (so duplicates are refused); which ones carry
    /// telemetry steers the proposer: for `mutate` only the tournament winner (it
    /// mutates the best it sees), for the LLMs the whole population (the parent
    /// is its best, the rest are the prompt's examples), for `random` none.
    fn context(&mut self) -> (Context, Option<String>) {
        let mut ctx = Context::new(
            self.seed.net().clone(),
            self.cfg.budget(),
            self.resolved.widths,
        );
        let population: Vec<Produced> = self.population().into_iter().cloned().collect();
        match self.proposer.as_ref() {
            Some(AnyProposer::Random(_)) => {
                for p in &self.produced {
                    ctx.record(p.arch.clone(), None);
                }
                (ctx, Some(self.seed_hash.clone()))
            }
            Some(AnyProposer::Mutate(_)) => {
                let parent = if population.is_empty() {
                    None
                } else {
                    let k = self.cfg.tournament;
                    (0..k)
                        .map(|_| &population[self.rng.random_range(0..population.len())])
                        .max_by(|a, b| {
                            a.accuracy
                                .unwrap_or(0.0)
                                .total_cmp(&b.accuracy.unwrap_or(0.0))
                                .then(b.id.cmp(&a.id))
                        })
                        .cloned()
                };
                for p in &self.produced {
                    let chosen = parent.as_ref().is_some_and(|w| w.id == p.id);
                    ctx.record(
                        p.arch.clone(),
                        if chosen { Self::telemetry(p) } else { None },
                    );
                }
                let hash = parent.map_or_else(|| self.seed_hash.clone(), |p| p.hash);
                (ctx, Some(hash))
            }
            // The LLMs (the proposer is here whenever a context is made).
            Some(AnyProposer::Ollama(_) | AnyProposer::OpenAi(_)) | None => {
                for p in &self.produced {
                    if !population.iter().any(|q| q.id == p.id) {
                        ctx.record(p.arch.clone(), None);
                    }
                }
                for p in &population {
                    ctx.record(p.arch.clone(), Self::telemetry(p));
                }
                let parent = propose::identity(ctx.best().net().net());
                (ctx, Some(parent))
            }
        }
    }

    /// Asks for the proposal of `step` in the background, with what the search
    /// knows now (results finished so far; trials not yet trained count as
    /// produced, without telemetry).
    fn launch(
        &mut self,
        step: u64,
    ) -> Result<(u64, Option<String>, Ahead<AnyProposer>), EvolveError> {
        let (ctx, parent) = self.context();
        let proposer = self.proposer.take().ok_or_else(|| {
            EvolveError::Config("internal: a proposal was asked for while one is in flight".into())
        })?;
        let flight =
            Ahead::spawn(proposer, ctx, self.rt.clone()).map_err(|source| EvolveError::Io {
                path: PathBuf::from("<proposal thread>"),
                source,
            })?;
        Ok((step, parent, flight))
    }

    /// Waits for the proposal of `step` and records it; the id of its trial,
    /// waiting to be trained, when it was accepted.
    fn land(
        &mut self,
        step: u64,
        parent: Option<String>,
        flight: Ahead<AnyProposer>,
        obs: &mut dyn SearchObserver,
    ) -> Result<Option<TrialId>, EvolveError> {
        let Some((proposer, proposal, propose_ms)) = flight.join() else {
            return Err(EvolveError::Config(format!(
                "the `{}` proposer crashed while proposing step {step} (a bug; the run resumes with `--resume`)",
                self.proposer_name
            )));
        };
        self.proposer = Some(proposer);
        let name = self.proposer_name.to_string();
        let attempts: Vec<AttemptRecord> = proposal
            .attempts
            .iter()
            .enumerate()
            .map(|(i, a)| AttemptRecord {
                step,
                proposer: name.clone(),
                index: i as u32,
                round: match a.round {
                    propose::Round::Initial => "initial".into(),
                    propose::Round::Repair => "repair".into(),
                },
                outcome: a.outcome.as_str().into(),
                raw: a.raw.clone(),
                source: a.source.clone(),
                diagnostics: a.diagnostics.clone(),
                latency_ms: a.latency_ms,
                prompt_tokens: a.prompt_tokens,
                completion_tokens: a.completion_tokens,
                retries: a.retries,
            })
            .collect();
        let outcome = proposal.outcome();
        let record = match &proposal.arch {
            Some(arch) => {
                let net = arch.net();
                NewTrial {
                    stage: Stage::Search,
                    step,
                    proposer: name.clone(),
                    status: TrialStatus::Pending,
                    name: Some(net.name().to_string()),
                    source: arch.source().to_string(),
                    hash: propose::identity(net.net()),
                    parent,
                    outcome: outcome.as_str().into(),
                    note: proposal.note.clone(),
                    params: Some(net.params()),
                    flops: Some(net.flops()),
                    epochs: self.cfg.first_epochs() as u32,
                    propose_ms,
                    error: None,
                    rung: 0,
                    continues: None,
                }
            }
            None => {
                let last = proposal.attempts.last();
                NewTrial {
                    stage: Stage::Search,
                    step,
                    proposer: name.clone(),
                    status: TrialStatus::Invalid,
                    name: None,
                    source: last
                        .and_then(|a| a.source.clone())
                        .or_else(|| last.map(|a| a.raw.clone()))
                        .unwrap_or_default(),
                    hash: String::new(),
                    parent,
                    outcome: outcome.as_str().into(),
                    note: proposal.note.clone(),
                    params: None,
                    flops: None,
                    epochs: self.cfg.first_epochs() as u32,
                    propose_ms,
                    error: Some(
                        last.and_then(|a| a.diagnostics.clone())
                            .unwrap_or_else(|| format!("rejected: {outcome}")),
                    ),
                    rung: 0,
                    continues: None,
                }
            }
        };
        let id = self.store.record_proposal(&attempts, &record)?;
        tracing::info!(
            step,
            trial = id,
            proposer = %name,
            %outcome,
            latency_ms = propose_ms,
            "proposal"
        );
        match proposal.arch {
            Some(arch) => {
                self.produced.push(Produced {
                    id,
                    hash: record.hash.clone(),
                    arch,
                    accuracy: None,
                    loss: None,
                    epochs: self.cfg.first_epochs() as u32,
                    rungs: Vec::new(),
                });
                Ok(Some(id))
            }
            None => {
                self.save_elapsed()?;
                let rec = self.trial(id)?;
                obs.trial_finished(&rec, self.best_accuracy());
                Ok(None)
            }
        }
    }

    /// What identifies a training's result across runs sharing a cache: the
    /// network, its epochs and schedule length, the seed and the task.
    fn cache_key(&self, rec: &TrialRecord) -> String {
        let cfg = self.cfg.trial_train_config(&self.resolved, &rec.trial);
        format!(
            "{}/{}/{}/{}/{}",
            rec.trial.hash,
            cfg.epochs,
            cfg.schedule_epochs(),
            cfg.seed,
            self.task.name
        )
    }

    fn trial(&self, id: TrialId) -> Result<TrialRecord, EvolveError> {
        self.store.trial(id)?.ok_or_else(|| {
            EvolveError::Store(StoreError::Trial {
                id,
                reason: "vanished from the database".into(),
            })
        })
    }

    /// Trains a pending trial and records how it ended.
    fn train_trial(
        &mut self,
        id: TrialId,
        obs: &mut dyn SearchObserver,
    ) -> Result<(), EvolveError> {
        if let Some(job) = self.begin(id, obs)? {
            let (result, fatal) =
                train_to_result(self.resolved.backend, &job.net, &self.task, &job.cfg, obs);
            self.finish(job.id, job.key, result, fatal, obs)?;
        }
        Ok(())
    }

    /// Starts a pending trial: records a stored network that no longer checks or
    /// is over budget as failed, and a result another run already has (the
    /// cache) as its own; otherwise marks it running and returns what to train.
    fn begin(
        &mut self,
        id: TrialId,
        obs: &mut dyn SearchObserver,
    ) -> Result<Option<Job>, EvolveError> {
        let rec = self.trial(id)?;
        let failed = |error: String| failed_result(error, 0.0);
        let net = match nas_dsl::check_str(&rec.trial.source)
            .ok()
            .and_then(|n| n.into_iter().next())
        {
            Some(net) => net,
            None => {
                self.store.start_trial(id)?;
                let result = failed("the stored source does not pass the checker".into());
                self.store.finish_trial(id, &result)?;
                return Ok(None);
            }
        };
        // Nothing over budget is trained, whatever put it in the store.
        if let Err(e) = check_seed_budget(&net, &self.cfg.budget()) {
            self.store.start_trial(id)?;
            self.store
                .finish_trial(id, &failed(format!("over budget: {e}")))?;
            return Ok(None);
        }
        self.store.start_trial(id)?;
        let rec = self.trial(id)?;
        obs.trial_started(&rec);
        tracing::info!(
            trial = id,
            step = rec.trial.step,
            params = net.params(),
            "training"
        );
        let cfg = self.cfg.trial_train_config(&self.resolved, &rec.trial);
        let key = self.cache_key(&rec);
        let job = Job { id, net, cfg, key };
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|m| m.get(&job.key).cloned()));
        match cached {
            Some(result) => {
                self.record_result(id, &result, obs)?;
                Ok(None)
            }
            None => Ok(Some(job)),
        }
    }

    /// Hands a pending trial to the workers: a stored network that no longer
    /// checks, is over budget or already has a result (the cache) is settled here
    /// as [`Evolve::begin`] does; otherwise it stays pending for a worker to
    /// claim. Whether it was handed over.
    fn admit(&mut self, id: TrialId, obs: &mut dyn SearchObserver) -> Result<bool, EvolveError> {
        let rec = self.trial(id)?;
        if rec.status() != TrialStatus::Pending {
            // A worker claimed it already (it is claimable once recorded).
            obs.trial_started(&rec);
            return Ok(true);
        }
        let settle_here = match nas_dsl::check_str(&rec.trial.source)
            .ok()
            .and_then(|n| n.into_iter().next())
        {
            // `begin` records why it is not trained.
            None => true,
            Some(net) if check_seed_budget(&net, &self.cfg.budget()).is_err() => true,
            Some(_) => {
                let key = self.cache_key(&rec);
                self.cache
                    .as_ref()
                    .is_some_and(|c| c.lock().is_ok_and(|m| m.contains_key(&key)))
            }
        };
        if settle_here {
            match self.begin(id, obs) {
                Ok(_) => return Ok(false),
                // A worker claimed it in the meantime: it checks the same
                // things and records the outcome.
                Err(EvolveError::Store(StoreError::Trial { .. }))
                    if self.trial(id)?.status() != TrialStatus::Pending =>
                {
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        obs.trial_started(&rec);
        tracing::info!(trial = id, step = rec.trial.step, "queued for the workers");
        Ok(true)
    }

    /// Takes in the queued trials the workers have finished, and returns the
    /// leases of dead workers to the queue.
    fn collect(
        &mut self,
        queued: &mut Vec<TrialId>,
        obs: &mut dyn SearchObserver,
    ) -> Result<(), EvolveError> {
        for r in self.store.reap()? {
            tracing::warn!(
                trial = r.id,
                attempts = r.attempts,
                status = %r.status,
                "a worker lost its lease"
            );
        }
        let mut i = 0;
        while i < queued.len() {
            let id = queued[i];
            let rec = self.trial(id)?;
            if !rec.status().is_final() {
                i += 1;
                continue;
            }
            queued.swap_remove(i);
            self.train_s += rec.train_s.unwrap_or(0.0);
            self.trained += 1;
            if let Some(c) = &self.cache
                && let Ok(mut m) = c.lock()
            {
                let key = self.cache_key(&rec);
                m.insert(
                    key,
                    TrialResult {
                        status: rec.status(),
                        telemetry: rec.telemetry.clone(),
                        accuracy: rec.accuracy,
                        top5: rec.top5,
                        test_loss: rec.test_loss,
                        train_s: rec.train_s.unwrap_or(0.0),
                        error: rec.trial.error.clone(),
                        checkpoint: None,
                    },
                );
            }
            self.observe(&rec, obs)?;
        }
        Ok(())
    }

    /// Records a trained job's result (and shares it through the cache).
    fn finish(
        &mut self,
        id: TrialId,
        key: String,
        result: TrialResult,
        fatal: Option<String>,
        obs: &mut dyn SearchObserver,
    ) -> Result<(), EvolveError> {
        self.train_s += result.train_s;
        self.trained += 1;
        if let Some(m) = fatal {
            // A configuration every trial would refuse: stop the run.
            self.store.finish_trial(id, &result)?;
            return Err(EvolveError::Train(TrainError::Config(m)));
        }
        if let Some(c) = &self.cache
            && let Ok(mut m) = c.lock()
        {
            m.insert(key, result.clone());
        }
        self.record_result(id, &result, obs)
    }

    /// Stores how trial `id` ended and tells the observer.
    fn record_result(
        &mut self,
        id: TrialId,
        result: &TrialResult,
        obs: &mut dyn SearchObserver,
    ) -> Result<(), EvolveError> {
        self.store.finish_trial(id, result)?;
        let rec = self.trial(id)?;
        self.observe(&rec, obs)
    }

    /// Takes in how a trial ended (its stored record) and tells the observer.
    fn observe(
        &mut self,
        rec: &TrialRecord,
        obs: &mut dyn SearchObserver,
    ) -> Result<(), EvolveError> {
        let id = rec.id;
        if rec.trial.stage == Stage::Search
            && let Some(p) = self
                .produced
                .iter_mut()
                .find(|p| p.id == id || (rec.is_promotion() && p.hash == rec.trial.hash))
        {
            p.take_in(rec);
        }
        self.save_elapsed()?;
        tracing::info!(
            trial = id,
            status = %rec.status(),
            accuracy = rec.accuracy,
            train_s = rec.train_s,
            "trial ends"
        );
        let best = (rec.trial.stage == Stage::Search)
            .then(|| self.best_accuracy())
            .flatten();
        obs.trial_finished(rec, best);
        Ok(())
    }

    /// Retrains the top `final_top` architectures for `final_epochs` (once each).
    fn final_stage(
        &mut self,
        workers: Option<&mut LocalWorkers>,
        obs: &mut dyn SearchObserver,
    ) -> Result<(), EvolveError> {
        let Some(epochs) = self.cfg.final_epochs else {
            return Ok(());
        };
        let trials = self.store.trials()?;
        let board = report::leaderboard(&trials);
        let mut queued = Vec::new();
        for e in board.iter().take(self.cfg.final_top) {
            let existing = trials.iter().find(|t| {
                t.trial.stage == Stage::Final
                    && t.trial.hash == e.hash
                    && t.trial.epochs == epochs as u32
            });
            match existing {
                Some(t) if t.status() == TrialStatus::Pending => queued.push(t.id),
                Some(_) => {}
                None => {
                    let Some(src) = trials.iter().find(|t| t.id == e.trial) else {
                        continue;
                    };
                    let mut record = src.trial.clone();
                    record.stage = Stage::Final;
                    record.status = TrialStatus::Pending;
                    record.epochs = epochs as u32;
                    record.propose_ms = 0.0;
                    record.error = None;
                    record.note = Some(format!("final retraining of trial {}", e.trial));
                    queued.push(self.store.record_proposal(&[], &record)?);
                }
            }
        }
        if queued.is_empty() {
            return Ok(());
        }
        obs.final_started(queued.len());
        let Some(w) = workers else {
            for id in queued {
                self.train_trial(id, obs)?;
            }
            return Ok(());
        };
        let mut handed = Vec::new();
        for id in queued {
            if self.admit(id, obs)? {
                handed.push(id);
            }
        }
        while !handed.is_empty() {
            w.check()?;
            self.collect(&mut handed, obs)?;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Loads a run's record for the report (without touching an interrupted trial,
/// so a report can be made while the run goes on).
pub fn load_run(dir: &Path) -> Result<RunData, EvolveError> {
    let (store, _, _) = open_record(dir, false)?;
    let cfg = store
        .meta("config_json")?
        .and_then(|j| serde_json::from_str::<SearchConfig>(&j).ok());
    let name = cfg
        .as_ref()
        .and_then(|c| c.name.clone())
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());
    let mut run = RunData::load(&name, store.as_ref())?;
    if let Some(cfg) = &cfg {
        run.noise = crate::fidelity::noise_near(cfg, dir);
    }
    Ok(run)
}

/// An opened run record: the store, where it is, and what recovery did.
type Record = (Box<dyn Store>, Storage, Vec<Reaped>);

/// Opens a run's record: the directory's SQLite file, or the shared store its
/// saved configuration names. With `recover`, trials left running by a dead
/// process (no live lease) are returned to the queue, and listed.
fn open_record(dir: &Path, recover: bool) -> Result<Record, EvolveError> {
    let config = dir.join(CONFIG_FILE);
    let shared = if dir.join(crate::store::sqlite::DB_FILE).exists() || !config.is_file() {
        None
    } else {
        let cfg = SearchConfig::from_toml_file(&config)?;
        cfg.storage.map(|url| Storage::Postgres {
            url,
            run: Some(
                cfg.name
                    .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default(),
            ),
        })
    };
    match shared {
        Some(storage) => {
            let mut store = Patient::attach(storage.clone(), DB_WAIT_S)?;
            let recovered = if recover {
                store.recover()?
            } else {
                Vec::new()
            };
            Ok((Box::new(store), storage, recovered))
        }
        None if recover => {
            let store = SqliteStore::open(dir)?;
            let recovered = store.recovered().to_vec();
            let storage = Storage::Sqlite(store.path().to_path_buf());
            Ok((Box::new(store), storage, recovered))
        }
        None => {
            let store = SqliteStore::inspect(dir)?;
            let storage = Storage::Sqlite(store.path().to_path_buf());
            Ok((Box::new(store), storage, Vec::new()))
        }
    }
}
