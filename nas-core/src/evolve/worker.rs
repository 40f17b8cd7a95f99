//! The worker role: claim a pending trial from the run's store, train it while a
//! heartbeat keeps its lease alive, report the result under the claim's attempt
//! number, and again, until the run is finished. A worker talks to the
//! coordinator only through the store; a worker whose lease expired (killed,
//! paused, cut off) is fenced: its late writes change nothing.
//!
//! One process trains one trial at a time on its share of the cores: two
//! trainings in one process do not run side by side in Burn's `flex` backend (its
//! autodiff graph is shared process-wide), two processes do. So `--jobs N`
//! starts N worker processes ([`LocalWorkers`]).

use super::{EvolveError, SearchConfig, task_sizes, train_segment_to_result};
use crate::data;
use crate::store::{Claim, Patient, Storage, Store, StoreError};
use crate::train::Task;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The run metadata key holding the run's state (`running`, `finished`).
pub const STATE_KEY: &str = "state";

/// The run metadata key of the content hash of the run's data
/// ([`crate::train::Task::fingerprint`]).
pub const DATA_KEY: &str = "data_fingerprint";

/// The run metadata key of per-trial training seeds (a JSON object from trial
/// id to seed), for planned trainings that vary the seed (`fidelity`).
pub const TRIAL_SEEDS_KEY: &str = "trial_seeds";

/// How a worker behaves.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The run's store.
    pub storage: Storage,
    /// A name prefix for this worker (default: host and process id).
    pub name: Option<String>,
    /// The lease a claim holds, renewed every third of it.
    pub lease_s: f64,
    /// How long to wait between looks at an empty queue.
    pub poll_s: f64,
    /// How long to keep trying while the store is unreachable before giving up.
    pub db_wait_s: f64,
    /// Exit when idle this long (none: wait until the run is finished).
    pub idle_exit_s: Option<f64>,
    /// Exit when the process that started this worker is gone (local workers).
    pub exit_with_parent: bool,
    /// Where CIFAR data lives on this machine (overrides the run's `data_dir`).
    pub data_dir: Option<PathBuf>,
}

impl WorkerOptions {
    /// Defaults for `storage`: a 30 s lease, polling every 0.2 s, waiting up to
    /// 120 s for an unreachable store.
    pub fn new(storage: Storage) -> WorkerOptions {
        WorkerOptions {
            storage,
            name: None,
            lease_s: 30.0,
            poll_s: 0.2,
            db_wait_s: 120.0,
            idle_exit_s: None,
            exit_with_parent: false,
            data_dir: None,
        }
    }
}

/// What a worker did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerSummary {
    /// Trials trained and recorded.
    pub trained: usize,
    /// Trials whose result was refused because the lease had passed to another.
    pub fenced: usize,
    /// Why it stopped.
    pub stopped: String,
}

/// The run's configuration, as the coordinator saved it (none yet: the
/// coordinator is starting).
fn run_config(store: &dyn Store) -> Result<Option<SearchConfig>, EvolveError> {
    let Some(json) = store.meta("config_json")? else {
        return Ok(None);
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| EvolveError::Config(format!("the run's configuration does not decode: {e}")))
}

/// The worker's name: the given prefix or the host, and the process id.
fn worker_name(opts: &WorkerOptions) -> String {
    let host = opts.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into())
    });
    format!("{host}:{}", std::process::id())
}

/// Keeps a claim's lease alive from its own connection until told to stop;
/// sets `lost` when the store says the trial is no longer this attempt's.
fn heartbeat(
    opts: &WorkerOptions,
    worker: String,
    claim: (i64, u32),
    lost: Arc<AtomicBool>,
) -> Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>), EvolveError> {
    let (tx, rx) = mpsc::channel::<()>();
    let opts = opts.clone();
    let every = Duration::from_secs_f64((opts.lease_s / 3.0).max(0.05));
    let handle = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let mut store = opts.storage.attach().ok();
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                if store.is_none() {
                    store = opts.storage.attach().ok();
                }
                let Some(s) = store.as_mut() else { continue };
                match s.heartbeat(claim.0, claim.1, opts.lease_s) {
                    Ok(true) => {
                        let _ = s.worker_seen(&worker, 1, opts.lease_s);
                    }
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("heartbeat failed (retrying): {e}");
                        store = None;
                    }
                }
            }
        })
        .map_err(|source| EvolveError::Io {
            path: PathBuf::from("<heartbeat thread>"),
            source,
        })?;
    Ok((tx, handle))
}

/// Loads the task of the run (CIFAR from this machine's `data_dir` when given).
fn load_run_task(cfg: &SearchConfig, opts: &WorkerOptions) -> Result<Task, EvolveError> {
    let mut cfg = cfg.clone();
    if opts.data_dir.is_some() {
        cfg.train.data_dir = opts.data_dir.clone();
    }
    let r = cfg.resolve()?;
    let (train, test) = task_sizes(&cfg, &r);
    let split = data::load(r.dataset, cfg.train.data_dir.as_deref(), train, test)?;
    Ok(Task::new(split))
}

/// Connects to the run and reads its configuration, waiting up to `db_wait_s`
/// for an unreachable server or for a run the coordinator has not made yet.
fn open_run(opts: &WorkerOptions) -> Result<(Patient, SearchConfig), EvolveError> {
    let started = Instant::now();
    loop {
        let waited = started.elapsed().as_secs_f64();
        let left = (opts.db_wait_s - waited).max(0.0);
        let why = match Patient::attach(opts.storage.clone(), left) {
            Ok(mut store) => match run_config(&store)? {
                Some(cfg) => {
                    store.set_wait(opts.db_wait_s);
                    return Ok((store, cfg));
                }
                None => EvolveError::Config(format!(
                    "the run in {} has no configuration yet (start it with `nas-core evolve`)",
                    opts.storage
                )),
            },
            Err(e @ StoreError::Missing { .. }) => e.into(),
            Err(e) => return Err(e.into()),
        };
        if waited > opts.db_wait_s {
            return Err(why);
        }
        tracing::info!("waiting for the run: {why}");
        std::thread::sleep(Duration::from_secs_f64(opts.poll_s.max(0.5)));
    }
}

/// The training seed the run planned for trial `id`, if it planned one.
fn trial_seed(store: &Patient, id: i64) -> Result<Option<u64>, EvolveError> {
    let Some(json) = store.meta(TRIAL_SEEDS_KEY)? else {
        return Ok(None);
    };
    let seeds: std::collections::BTreeMap<i64, u64> = serde_json::from_str(&json).map_err(|e| {
        EvolveError::Config(format!(
            "the run's `{TRIAL_SEEDS_KEY}` does not decode: {e}"
        ))
    })?;
    Ok(seeds.get(&id).copied())
}

/// Trains one claimed trial and reports it; `Ok(false)` when fenced.
fn train_claim(
    store: &mut Patient,
    opts: &WorkerOptions,
    worker: &str,
    cfg: &SearchConfig,
    task: &Task,
    claim: &Claim,
) -> Result<bool, EvolveError> {
    let r = cfg.resolve()?;
    let id = claim.trial.id;
    let net = nas_dsl::check_str(&claim.trial.trial.source)
        .ok()
        .and_then(|n| n.into_iter().next());
    let result = match net {
        None => {
            super::trial::failed_result("the stored source does not pass the checker".into(), 0.0)
        }
        Some(net) => match super::trial::refusal(&net, &cfg.budget(), task) {
            Some(refused) => refused,
            None => {
                let lost = Arc::new(AtomicBool::new(false));
                let (stop, beat) =
                    heartbeat(opts, worker.to_string(), (id, claim.attempt), lost.clone())?;
                let mut tcfg = cfg.trial_train_config(&r, &claim.trial.trial);
                if let Some(seed) = trial_seed(store, id)? {
                    tcfg.seed = seed;
                }
                // A promotion continues from the checkpoint of the segment it
                // was promoted from (trained from the first epoch if that one
                // was deleted); every segment below the top rung keeps one.
                let resume = match claim.trial.trial.continues {
                    Some(from) => {
                        let found = store.checkpoint(from)?;
                        if found.is_none() {
                            tracing::info!(
                                trial = id,
                                from,
                                "no checkpoint of the promoted trial is kept; training from the first epoch"
                            );
                        }
                        found.map(crate::train::Checkpoint::from_bytes)
                    }
                    None => None,
                };
                let keep = cfg.asha()?.is_some_and(|a| {
                    claim.trial.trial.stage == crate::store::Stage::Search
                        && (claim.trial.trial.epochs) < a.max_epochs
                });
                let (result, _fatal) = train_segment_to_result(
                    r.backend,
                    &net,
                    task,
                    &tcfg,
                    resume.as_ref(),
                    keep,
                    &mut (),
                );
                drop(stop);
                let _ = beat.join();
                if lost.load(Ordering::SeqCst) {
                    tracing::warn!(
                        trial = id,
                        attempt = claim.attempt,
                        "the lease passed to another worker while training; the result is dropped"
                    );
                }
                result
            }
        },
    };
    let accepted = store.complete(id, claim.attempt, &result)?;
    if !accepted {
        tracing::warn!(
            trial = id,
            attempt = claim.attempt,
            "the trial is no longer this worker's (its lease expired): nothing was written"
        );
    }
    Ok(accepted)
}

/// The worker loop: claim, train, report, until the run is finished (or idle
/// past `idle_exit_s`, or the parent is gone).
pub fn run_worker(opts: &WorkerOptions) -> Result<WorkerSummary, EvolveError> {
    let worker = worker_name(opts);
    let parent = std::os::unix::process::parent_id();
    let (mut store, cfg) = open_run(opts)?;
    let task = load_run_task(&cfg, opts)?;
    if let Some(recorded) = store.meta(DATA_KEY)?
        && recorded != task.fingerprint()
    {
        return Err(EvolveError::Config(format!(
            "this machine's data differs from the run's (content hash {} here, {recorded} in the run): every worker must train on the same images; check `--data-dir`",
            task.fingerprint()
        )));
    }
    tracing::info!(%worker, storage = %opts.storage, "worker starts");
    let mut summary = WorkerSummary::default();
    let mut idle_since = Instant::now();
    loop {
        if opts.exit_with_parent && std::os::unix::process::parent_id() != parent {
            summary.stopped = "the process that started it is gone".into();
            return Ok(summary);
        }
        store.worker_seen(&worker, 1, opts.lease_s)?;
        match store.claim(&worker, opts.lease_s)? {
            Some(claim) => {
                tracing::info!(trial = claim.trial.id, attempt = claim.attempt, "claimed");
                if train_claim(&mut store, opts, &worker, &cfg, &task, &claim)? {
                    summary.trained += 1;
                } else {
                    summary.fenced += 1;
                }
                idle_since = Instant::now();
            }
            None => {
                let state = store.meta(STATE_KEY)?;
                if state.as_deref() == Some("finished") {
                    summary.stopped = "the run is finished".into();
                    return Ok(summary);
                }
                if let Some(idle) = opts.idle_exit_s
                    && idle_since.elapsed().as_secs_f64() > idle
                {
                    summary.stopped = format!("idle for {idle:.0} s");
                    return Ok(summary);
                }
                std::thread::sleep(Duration::from_secs_f64(opts.poll_s));
            }
        }
    }
}

/// The lease of a local worker's claim: a worker killed with its coordinator
/// frees its trial for the next session after at most this long.
pub const LOCAL_LEASE_S: f64 = 10.0;

/// The `nas-core` binary local workers run: `NAS_WORKER_EXE` (for a program
/// that embeds the library), else this process's own executable.
pub fn worker_exe() -> Result<PathBuf, EvolveError> {
    if let Some(exe) = std::env::var_os("NAS_WORKER_EXE") {
        return Ok(PathBuf::from(exe));
    }
    std::env::current_exe().map_err(|source| EvolveError::Io {
        path: PathBuf::from("<current executable>"),
        source,
    })
}

/// GPUs for local workers (`--devices cuda:0,cuda:1`): worker `i` sees only
/// device `i mod n` (`CUDA_VISIBLE_DEVICES`), so several jobs may share a GPU.
pub fn parse_devices(text: &str) -> Result<Vec<u32>, String> {
    text.split(',')
        .map(str::trim)
        .map(|d| {
            d.strip_prefix("cuda:")
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| {
                    format!(
                        "`{d}` is not a device; expected `cuda:N`, e.g. `--devices cuda:0,cuda:1`"
                    )
                })
        })
        .collect()
}

/// Worker processes started on this machine, each on its share of the cores;
/// stopped (killed) when dropped.
pub struct LocalWorkers {
    children: Vec<Child>,
}

impl LocalWorkers {
    /// Starts `n` worker processes of `exe` (the `nas-core` binary) on `storage`,
    /// each with `threads` compute threads (and with `devices`, its GPU); they
    /// exit with this process.
    pub fn spawn(
        exe: &std::path::Path,
        storage: &Storage,
        n: usize,
        threads: usize,
        lease_s: f64,
        devices: &[u32],
    ) -> Result<LocalWorkers, EvolveError> {
        let mut children = Vec::new();
        for i in 0..n {
            let mut cmd = Command::new(exe);
            if !devices.is_empty() {
                cmd.env(
                    "CUDA_VISIBLE_DEVICES",
                    devices[i % devices.len()].to_string(),
                );
            }
            cmd.arg("worker").arg("--storage").arg(storage.arg());
            if let Some(run) = storage.run() {
                cmd.arg("--run").arg(run);
            }
            let child = cmd
                .arg("--threads")
                .arg(threads.to_string())
                .arg("--lease")
                .arg(format!("{lease_s}"))
                .arg("--poll")
                .arg("0.05")
                .arg("--exit-with-parent")
                .arg("--quiet")
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| EvolveError::Io {
                    path: exe.to_path_buf(),
                    source,
                })?;
            tracing::info!(worker = i, pid = child.id(), "local worker started");
            children.push(child);
        }
        Ok(LocalWorkers { children })
    }

    /// The workers still running; an error naming how the others ended when
    /// none is left.
    pub fn check(&mut self) -> Result<usize, EvolveError> {
        let mut alive = 0;
        let mut ended = Vec::new();
        for c in &mut self.children {
            match c.try_wait() {
                Ok(None) => alive += 1,
                Ok(Some(status)) => ended.push(status.to_string()),
                Err(e) => ended.push(e.to_string()),
            }
        }
        if alive == 0 && !self.children.is_empty() {
            return Err(EvolveError::Config(format!(
                "every local worker process ended ({}); their messages are above",
                ended.join(", ")
            )));
        }
        Ok(alive)
    }

    /// Waits for every worker to exit; how each that failed ended.
    pub fn wait(mut self) -> Vec<String> {
        let mut failed = Vec::new();
        for c in &mut self.children {
            match c.wait() {
                Ok(s) if s.success() => {}
                Ok(s) => failed.push(s.to_string()),
                Err(e) => failed.push(e.to_string()),
            }
        }
        self.children.clear();
        failed
    }

    /// Stops the workers.
    pub fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_devices;

    #[test]
    fn devices_are_cuda_indices() {
        assert_eq!(parse_devices("cuda:0"), Ok(vec![0]));
        assert_eq!(parse_devices("cuda:0, cuda:1,cuda:0"), Ok(vec![0, 1, 0]));
        for bad in ["", "gpu0", "cuda:", "cuda:-1", "cuda:0,,cuda:1"] {
            let e = parse_devices(bad).unwrap_err();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
    }
}
