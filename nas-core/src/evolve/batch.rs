//! Planned trainings of a run store (`fidelity`, `corpus train`): in this
//! process one at a time, or claimed by local worker processes side by side.

use super::worker::{LOCAL_LEASE_S, LocalWorkers, TRIAL_SEEDS_KEY, worker_exe};
use super::{EvolveError, Resolved, SearchConfig, train_stored};
use crate::fidelity::CheckObserver;
use crate::store::{SqliteStore, Storage, Store, TrialId, TrialRecord, TrialStatus};
use crate::train::Task;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// A finished training as one progress line: `note → top-1 …`.
pub fn result_line(rec: &TrialRecord) -> String {
    format!(
        "{} → {}",
        rec.trial.note.as_deref().unwrap_or(""),
        match rec.accuracy {
            Some(a) if rec.status() == TrialStatus::Done => format!(
                "top-1 {:.2}% ({:.1} s)",
                100.0 * a,
                rec.train_s.unwrap_or(0.0)
            ),
            _ => format!(
                "{} ({})",
                rec.status(),
                rec.trial.error.as_deref().unwrap_or("")
            ),
        }
    )
}

/// What to train and how.
pub struct Batch<'a> {
    /// The run's configuration (as saved in its `config_json`).
    pub cfg: &'a SearchConfig,
    /// Its typed choices.
    pub resolved: &'a Resolved,
    /// The task (for in-process training).
    pub task: &'a Task,
    /// Per-trial training seeds (else the configuration's).
    pub seeds: BTreeMap<TrialId, u64>,
    /// Trainings at once: 1 in this process, more in worker processes.
    pub jobs: usize,
}

/// Trains the trials `ids` not final yet, telling `obs` of each as it
/// finishes (`done/total: line`, counting from `done`).
pub fn train_batch(
    store: &mut SqliteStore,
    ids: &[TrialId],
    batch: &Batch<'_>,
    mut done: usize,
    total: usize,
    obs: &mut dyn CheckObserver,
) -> Result<(), EvolveError> {
    let left: Vec<TrialId> = {
        let trials = store.trials()?;
        ids.iter()
            .copied()
            .filter(|id| trials.iter().any(|t| t.id == *id && !t.status().is_final()))
            .collect()
    };
    if batch.jobs <= 1 {
        let budget = batch.cfg.budget();
        for id in left {
            let mut tc = batch.cfg.train_config(batch.resolved, epochs(store, id)?);
            if let Some(s) = batch.seeds.get(&id) {
                tc.seed = *s;
            }
            let (_, line) = train_stored(
                store,
                id,
                batch.resolved.backend,
                batch.task,
                &tc,
                &budget,
                &mut *obs,
            )?;
            done += 1;
            obs.training_done(done, total, &format!("{done}/{total}: {line}"));
        }
        return Ok(());
    }
    if !batch.seeds.is_empty() {
        let json =
            serde_json::to_string(&batch.seeds).map_err(|e| EvolveError::Config(e.to_string()))?;
        store.set_meta(TRIAL_SEEDS_KEY, &json)?;
    }
    let exe = worker_exe()?;
    let threads = (super::cores() / batch.jobs).max(1);
    let storage = Storage::Sqlite(store.path().to_path_buf());
    let mut workers = LocalWorkers::spawn(&exe, &storage, batch.jobs, threads, LOCAL_LEASE_S, &[])?;
    let mut open: HashSet<TrialId> = left.into_iter().collect();
    while !open.is_empty() {
        workers.check()?;
        store.reap()?;
        for t in store.trials()? {
            if t.status().is_final() && open.remove(&t.id) {
                done += 1;
                let line = result_line(&t);
                obs.training_done(done, total, &format!("{done}/{total}: {line}"));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    workers.stop();
    Ok(())
}

fn epochs(store: &SqliteStore, id: TrialId) -> Result<usize, EvolveError> {
    Ok(store.trial(id)?.map_or(1, |t| t.trial.epochs as usize))
}
