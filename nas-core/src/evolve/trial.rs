//! One trial: the seed network of a configuration, the budget check, the
//! task, and training a checked network into a stored result. Shared by the
//! coordinator (in-process training), the workers and planned batches.

use super::{
    EvolveError, Resolved, SEED_FILE, SEED_SOURCE, SearchConfig, SearchObserver, task_sizes,
};
use crate::data;
use crate::propose::Budget;
use crate::store::{
    SqliteStore, Store, StoreError, TrialId, TrialRecord, TrialResult, TrialStatus,
};
use crate::train::{self, BackendKind, Task, TrainConfig, TrainError};
use nas_dsl::CheckedNet;
use std::time::Instant;

/// The seed network of a configuration: the file's (or the embedded) text, the
/// chosen net, checked.
pub fn seed_network(cfg: &SearchConfig) -> Result<CheckedNet, EvolveError> {
    let (file, text) = match &cfg.seed_file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|source| EvolveError::Io {
                path: path.clone(),
                source,
            })?,
        ),
        None => (SEED_FILE.to_string(), SEED_SOURCE.to_string()),
    };
    let nets = nas_dsl::check_str(&text).map_err(|errors| EvolveError::Seed {
        rendered: nas_dsl::diag::render(&file, &text, &errors),
        file: file.clone(),
    })?;
    let names: Vec<String> = nets.iter().map(|n| n.name().to_string()).collect();
    let net = match &cfg.net {
        Some(name) => nets.into_iter().find(|n| n.name() == name).ok_or_else(|| {
            EvolveError::SeedUnfit(format!(
                "no net `{name}` in `{file}` (it has: {})",
                names.join(", ")
            ))
        })?,
        None => nets
            .into_iter()
            .next()
            .ok_or_else(|| EvolveError::SeedUnfit(format!("`{file}` holds no net")))?,
    };
    Ok(net)
}

/// Checks that the seed network is within the budget, with a sentence that says
/// by how much it is not.
pub fn check_seed_budget(net: &CheckedNet, budget: &Budget) -> Result<(), EvolveError> {
    use nas_dsl::summary::thousands;
    if let Some((need, max)) = budget.memory_over(net) {
        return Err(EvolveError::SeedUnfit(
            budget.memory_message(net, need, max),
        ));
    }
    if let Some(max) = budget.max_params
        && net.params() > max
    {
        return Err(EvolveError::SeedUnfit(format!(
            "the seed network `{}` has {} parameters, more than `--max-params {}`; raise the budget or start from a smaller seed",
            net.name(),
            thousands(net.params()),
            thousands(max)
        )));
    }
    if let Some(max) = budget.max_flops
        && net.flops() > max
    {
        return Err(EvolveError::SeedUnfit(format!(
            "the seed network `{}` needs {} FLOPs per sample, more than `--max-flops {}`; raise the budget or start from a smaller seed",
            net.name(),
            thousands(net.flops()),
            thousands(max)
        )));
    }
    Ok(())
}

/// The failed result of a network that must not train at all — over the
/// budget (parameters, FLOPs, training memory) or unfit for the task — with
/// why; `None` when it may train. Checked by every role before it trains a
/// stored trial.
pub(crate) fn refusal(net: &CheckedNet, budget: &Budget, task: &Task) -> Option<TrialResult> {
    check_seed_budget(net, budget)
        .map_err(|e| e.to_string())
        .and_then(|()| train::check_fit(net, task).map_err(|e| e.to_string()))
        .err()
        .map(|e| failed_result(format!("refused before training: {e}"), 0.0))
}

/// The result of a trial that failed after `secs` seconds, with why.
pub(crate) fn failed_result(error: String, secs: f64) -> TrialResult {
    TrialResult {
        status: TrialStatus::Failed,
        telemetry: serde_json::json!([]),
        accuracy: None,
        top5: None,
        test_loss: None,
        train_s: secs,
        error: Some(error),
        checkpoint: None,
    }
}

/// Trains `net` and turns the outcome into a trial's result. The second value
/// is set when training refused the configuration itself (every trial would):
/// a search stops then.
pub fn train_to_result(
    backend: BackendKind,
    net: &CheckedNet,
    task: &Task,
    cfg: &TrainConfig,
    obs: &mut dyn train::Observer,
) -> (TrialResult, Option<String>) {
    train_segment_to_result(backend, net, task, cfg, None, false, obs)
}

/// Trains `net` (continuing from `resume` when given, see
/// [`train::train_from`]) into a trial result that carries the checkpoint
/// after the last epoch when `keep` is set. A checkpoint that cannot continue
/// this training is noted and the segment is trained from its first epoch
/// instead (the same result, as a continued training equals an uninterrupted
/// one).
pub fn train_segment_to_result(
    backend: BackendKind,
    net: &CheckedNet,
    task: &Task,
    cfg: &TrainConfig,
    resume: Option<&train::Checkpoint>,
    keep: bool,
    obs: &mut dyn train::Observer,
) -> (TrialResult, Option<String>) {
    let started = Instant::now();
    let mut outcome = train::train_from_on(backend, net, task, cfg, resume, keep, obs);
    if let Err(TrainError::Checkpoint(why)) = &outcome {
        tracing::warn!("{why}; training from the first epoch instead");
        outcome = train::train_from_on(backend, net, task, cfg, None, keep, obs);
    }
    let secs = started.elapsed().as_secs_f64();
    let failed = |error: String| failed_result(error, secs);
    match outcome {
        Ok(report) => {
            let last = report.epochs.last();
            let (status, error) = match &report.outcome {
                train::Outcome::Completed => (TrialStatus::Done, None),
                train::Outcome::Diverged {
                    epoch,
                    step,
                    reason,
                } => (
                    TrialStatus::Diverged,
                    Some(format!(
                        "diverged in epoch {epoch} at step {step}: {reason}"
                    )),
                ),
            };
            let result = TrialResult {
                status,
                telemetry: serde_json::to_value(&report.epochs)
                    .unwrap_or_else(|_| serde_json::json!([])),
                accuracy: (status == TrialStatus::Done).then_some(report.top1),
                top5: (status == TrialStatus::Done).then_some(report.top5),
                test_loss: last.map(|e| e.test_loss),
                train_s: secs,
                error,
                checkpoint: report.checkpoint.map(train::Checkpoint::into_bytes),
            };
            (result, None)
        }
        Err(TrainError::Config(m)) => (failed(m.clone()), Some(m)),
        Err(e) => (failed(e.to_string()), None),
    }
}

/// Trains the stored trial `id` (its network from its stored source) and
/// records how it ended: start, the observer's events, train, finish. Returns
/// the finished record and a progress line for it (`note → top-1 …`); an error
/// when training refused the configuration itself (every trial would). For
/// batches of planned trainings (`fidelity`, `corpus train`). A network over
/// `budget` ends failed without training.
pub fn train_stored(
    store: &mut SqliteStore,
    id: TrialId,
    backend: BackendKind,
    task: &Task,
    cfg: &TrainConfig,
    budget: &Budget,
    obs: &mut dyn SearchObserver,
) -> Result<(TrialRecord, String), EvolveError> {
    let find = |store: &SqliteStore| -> Result<TrialRecord, EvolveError> {
        store
            .trials()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| {
                EvolveError::Store(StoreError::Trial {
                    id,
                    reason: "planned but not in the store".into(),
                })
            })
    };
    let rec = find(store)?;
    let net = nas_dsl::check_str(&rec.trial.source)
        .ok()
        .and_then(|n| n.into_iter().next())
        .ok_or_else(|| {
            EvolveError::Store(StoreError::Trial {
                id,
                reason: "the stored source does not pass the checker".into(),
            })
        })?;
    store.start_trial(id)?;
    obs.trial_started(&find(store)?);
    let (result, fatal) = match refusal(&net, budget, task) {
        Some(refused) => (refused, None),
        None => train_to_result(backend, &net, task, cfg, &mut *obs),
    };
    store.finish_trial(id, &result)?;
    if let Some(m) = fatal {
        return Err(EvolveError::Train(TrainError::Config(m)));
    }
    let rec = find(store)?;
    let line = super::batch::result_line(&rec);
    Ok((rec, line))
}

/// Loads the task and checks that the seed network fits it.
pub fn load_task(cfg: &SearchConfig, r: &Resolved, seed: &CheckedNet) -> Result<Task, EvolveError> {
    let (train, test) = task_sizes(cfg, r);
    let split = data::load(r.dataset, cfg.train.data_dir.as_deref(), train, test)?;
    let task = Task::new(split);
    train::check_fit(seed, &task).map_err(|e| EvolveError::SeedUnfit(e.to_string()))?;
    Ok(task)
}
