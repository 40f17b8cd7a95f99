//! The proxy-reliability check (`nas-core fidelity`): does the search fidelity
//! rank networks the way longer training does, and is a score signal or noise?
//!
//! It draws K distinct mutants of the seed network with the search's own width
//! grid (the seed itself is member 0), trains every member at the search fidelity
//! with R training seeds and once at a reference fidelity (by default 8× the
//! training steps: 8× the epochs on the same images), all on the task settings of
//! [`SearchConfig`]. From the results:
//!
//! - **seed noise**: the pooled within-network standard deviation of the search
//!   score over the training seeds;
//! - **between-network spread**: the standard deviation of the per-network mean
//!   search scores (it still holds noise/√R of noise);
//! - **rank agreement**: Spearman's ρ and Kendall's τ-b between the mean search
//!   score and the reference score, each with a percentile-bootstrap 95 %
//!   interval over networks;
//! - **headroom**: how far the best member is above the seed, in noise SDs.
//!
//! Every training is a trial in a run store like `evolve`'s, so a killed check
//! continues with `--resume` and finished trainings are kept. The check writes
//! `fidelity.json` (read by `evolve` and `report` to state a search's noise) and
//! `fidelity.html` (a scatter plot with seed error bars).

use crate::evolve::{self, EvolveError, Resolved, SearchConfig, SearchObserver};
use crate::report::{Noise, escape};
use crate::stats::{self, Interval};
use crate::store::{NewTrial, SqliteStore, Stage, Store, StoreError, TrialId, TrialStatus};
use crate::train::Task;
use nas_dsl::CheckedNet;
use nas_dsl::mutate::{Generator, Mutator};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The check's record in its run directory (JSON).
pub const RECORD_FILE: &str = "fidelity.json";
/// The check's page in its run directory.
pub const PAGE_FILE: &str = "fidelity.html";
/// The proposer name its trials are recorded under.
const PROPOSER: &str = "fidelity";
/// Bootstrap resamples for the intervals.
const RESAMPLES: usize = 2_000;
/// ρ at or above this (and noise within [`MAX_NOISE_RATIO`] of the spread) is reliable.
pub const MIN_RHO: f64 = 0.8;
/// Seed noise at most this share of the between-network spread is reliable.
pub const MAX_NOISE_RATIO: f64 = 1.0 / 3.0;

/// How large the check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Mutants of the seed (K); the seed is trained too.
    pub mutants: usize,
    /// Training seeds per network at the search fidelity (R).
    pub repeats: usize,
    /// The reference fidelity's training steps, as a multiple of the search's.
    pub reference_factor: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mutants: 12,
            repeats: 2,
            reference_factor: 8,
        }
    }
}

impl Settings {
    fn validate(&self) -> Result<(), EvolveError> {
        if self.mutants < 2 {
            return Err(EvolveError::Config(
                "a fidelity check needs at least 2 mutants (`--mutants`)".into(),
            ));
        }
        if self.repeats < 2 {
            return Err(EvolveError::Config(
                "the seed noise needs at least 2 training seeds per network (`--repeats`)".into(),
            ));
        }
        if self.reference_factor < 2 {
            return Err(EvolveError::Config(
                "the reference fidelity must train at least 2× longer (`--reference-factor`)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Which fidelity a training is at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The search fidelity (one of R seeds).
    Search,
    /// The reference fidelity.
    Reference,
}

/// One planned training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// Its trial in the store.
    pub trial: TrialId,
    /// The network (0: the seed).
    pub member: usize,
    /// Search or reference fidelity.
    pub role: Role,
    /// Its training seed.
    pub seed: u64,
}

/// What a score depends on besides the network: the task and the fidelity. A
/// search's noise comes from a check with the same key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskKey {
    /// The seed network's content hash.
    pub seed_hash: String,
    /// `synthetic`, `cifar10`, `cifar100`.
    pub dataset: String,
    /// The CIFAR directory.
    pub data_dir: Option<PathBuf>,
    /// Training images.
    pub train_size: Option<usize>,
    /// Test images.
    pub test_size: Option<usize>,
    /// Epochs per trial.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule.
    pub schedule: String,
    /// Augmentation.
    pub augment: bool,
    /// The width grid.
    pub widths: String,
}

impl TaskKey {
    /// The key of a search configuration (with the sizes it resolves to).
    pub fn of(cfg: &SearchConfig, r: &Resolved, seed: &CheckedNet) -> TaskKey {
        let (train, test) = evolve::task_sizes(cfg, r);
        TaskKey {
            seed_hash: crate::propose::identity(seed.net()),
            dataset: cfg.train.dataset.to_ascii_lowercase(),
            data_dir: cfg.train.data_dir.clone(),
            train_size: train,
            test_size: test,
            epochs: cfg.epochs,
            batch: cfg.train.batch,
            lr: cfg.train.lr,
            schedule: cfg.train.schedule.to_ascii_lowercase(),
            augment: cfg.train.augment,
            widths: cfg.widths.clone(),
        }
    }
}

/// One network's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberResult {
    /// 0 for the seed, then the mutants.
    pub member: usize,
    /// `seed` or `mutant N`.
    pub label: String,
    /// The first 16 hex digits of its content hash.
    pub hash: String,
    /// Its widths, one per width class.
    pub widths: Vec<u64>,
    /// Learnable parameters.
    pub params: u64,
    /// Search-fidelity top-1 per finished seed, in points (0–100).
    pub search: Vec<f64>,
    /// Their mean.
    pub search_mean: Option<f64>,
    /// Reference-fidelity top-1 in points.
    pub reference: Option<f64>,
    /// Trainings that diverged or failed, with why.
    pub failures: Vec<String>,
}

/// The check's figures (all accuracies in percentage points).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// What the scores depend on.
    pub key: TaskKey,
    /// The check's size.
    pub settings: Settings,
    /// Epochs at the search fidelity.
    pub search_epochs: usize,
    /// Epochs at the reference fidelity.
    pub reference_epochs: usize,
    /// Every network.
    pub members: Vec<MemberResult>,
    /// Networks with a mean search score and a reference score.
    pub ranked: usize,
    /// Spearman's ρ between the mean search score and the reference score.
    pub spearman: Option<f64>,
    /// Its bootstrap 95 % interval.
    pub spearman_ci: Option<Interval>,
    /// Kendall's τ-b between them.
    pub kendall: Option<f64>,
    /// Its bootstrap 95 % interval.
    pub kendall_ci: Option<Interval>,
    /// Seed noise: pooled within-network SD of the search score.
    pub noise_sd: Option<f64>,
    /// SD of the per-network mean search scores.
    pub between_sd: Option<f64>,
    /// `noise_sd / between_sd`.
    pub noise_ratio: Option<f64>,
    /// The seed's mean search score.
    pub seed_score: Option<f64>,
    /// The best member's mean search score minus the seed's.
    pub headroom: Option<f64>,
    /// The headroom in noise SDs.
    pub headroom_sds: Option<f64>,
    /// Whether every planned training has finished.
    pub complete: bool,
    /// Whether the proxy ranks networks reliably (ρ ≥ 0.8 and noise ≤ ⅓ spread).
    pub reliable: bool,
    /// One sentence for people.
    pub verdict: String,
}

/// Computes the figures from per-member results.
pub fn analyse(
    key: TaskKey,
    settings: Settings,
    search_epochs: usize,
    members: Vec<MemberResult>,
    complete: bool,
) -> Analysis {
    let groups: Vec<Vec<f64>> = members.iter().map(|m| m.search.clone()).collect();
    let noise_sd = stats::pooled_sd(&groups);
    let means: Vec<f64> = members.iter().filter_map(|m| m.search_mean).collect();
    let between_sd = stats::summary(&means).filter(|s| s.n > 1).map(|s| s.sd);
    let noise_ratio = match (noise_sd, between_sd) {
        (Some(n), Some(b)) if b > 0.0 => Some(n / b),
        _ => None,
    };
    let (xs, ys): (Vec<f64>, Vec<f64>) = members
        .iter()
        .filter_map(|m| Some((m.search_mean?, m.reference?)))
        .unzip();
    let spearman = stats::spearman(&xs, &ys);
    let kendall = stats::kendall_tau_b(&xs, &ys);
    let spearman_ci = stats::bootstrap_pairs(&xs, &ys, stats::spearman, RESAMPLES, 0.95, 1);
    let kendall_ci = stats::bootstrap_pairs(&xs, &ys, stats::kendall_tau_b, RESAMPLES, 0.95, 2);
    let seed_score = members
        .iter()
        .find(|m| m.member == 0)
        .and_then(|m| m.search_mean);
    let best = means
        .iter()
        .copied()
        .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))));
    let headroom = match (best, seed_score) {
        (Some(b), Some(s)) => Some(b - s),
        _ => None,
    };
    let headroom_sds = match (headroom, noise_sd) {
        (Some(h), Some(n)) if n > 0.0 => Some(h / n),
        _ => None,
    };
    let reliable = matches!((spearman, noise_ratio), (Some(r), Some(q)) if r >= MIN_RHO && q <= MAX_NOISE_RATIO);
    let verdict = verdict(reliable, spearman, noise_sd, between_sd, complete);
    Analysis {
        key,
        settings,
        search_epochs,
        reference_epochs: search_epochs * settings.reference_factor,
        ranked: xs.len(),
        members,
        spearman,
        spearman_ci,
        kendall,
        kendall_ci,
        noise_sd,
        between_sd,
        noise_ratio,
        seed_score,
        headroom,
        headroom_sds,
        complete,
        reliable,
        verdict,
    }
}

fn verdict(
    reliable: bool,
    rho: Option<f64>,
    noise: Option<f64>,
    between: Option<f64>,
    complete: bool,
) -> String {
    let partial = if complete {
        ""
    } else {
        " (partial: not every training has finished)"
    };
    let (Some(rho), Some(noise), Some(between)) = (rho, noise, between) else {
        return format!("not enough finished trainings to judge this proxy{partial}");
    };
    if reliable {
        format!(
            "this proxy ranks networks reliably: its noise is {noise:.2} points and networks differ by {between:.2} (Spearman ρ {rho:.2} against the reference){partial}"
        )
    } else {
        let why = if rho < MIN_RHO && noise > between * MAX_NOISE_RATIO {
            "its ranks disagree with the reference and its noise is too large"
        } else if rho < MIN_RHO {
            "its ranks disagree with the reference"
        } else {
            "its noise is too large"
        };
        format!(
            "this proxy does not rank networks reliably ({why}): its noise is {noise:.2} points and networks differ by {between:.2} (Spearman ρ {rho:.2}; reliable needs ρ ≥ {MIN_RHO} and noise ≤ ⅓ of the spread){partial}"
        )
    }
}

/// A fidelity check over one run directory.
pub struct Check {
    cfg: SearchConfig,
    resolved: Resolved,
    settings: Settings,
    dir: PathBuf,
    store: SqliteStore,
    task: Task,
    seed: CheckedNet,
    plan: Vec<Planned>,
    jobs: usize,
}

/// One line of progress per finished training.
pub trait CheckObserver: SearchObserver {
    /// A training finished (`done` of `total` so far).
    fn training_done(&mut self, _done: usize, _total: usize, _line: &str) {}
}

impl CheckObserver for () {}

impl Check {
    /// Plans a new check in `runs_dir/name` (the name defaults to the time).
    pub fn create(mut cfg: SearchConfig, settings: Settings) -> Result<Check, EvolveError> {
        settings.validate()?;
        let name = cfg
            .name
            .clone()
            .unwrap_or_else(|| evolve::default_name("fidelity"));
        cfg.name = Some(name.clone());
        let resolved = cfg.resolve()?;
        evolve::fill_task_sizes(&mut cfg, &resolved);
        let dir = cfg.runs_dir.join(&name);
        if dir.join(crate::store::sqlite::DB_FILE).exists() {
            return Err(EvolveError::Config(format!(
                "`{}` already exists; continue it with `nas-core fidelity --resume {}` or choose another `--name`",
                dir.display(),
                dir.display()
            )));
        }
        let seed = evolve::seed_network(&cfg)?;
        evolve::check_seed_budget(&seed, &cfg.budget())?;
        let task = evolve::load_task(&cfg, &resolved, &seed)?;
        let members = draw_members(&seed, &cfg, &resolved, settings.mutants)?;
        let mut store = SqliteStore::create(&dir)?;
        store.set_meta(
            "config_json",
            &serde_json::to_string(&cfg).map_err(|e| EvolveError::Config(e.to_string()))?,
        )?;
        store.set_meta("config_toml", &cfg.to_toml()?)?;
        store.set_meta(
            "fidelity_settings",
            &serde_json::to_string(&settings).map_err(|e| EvolveError::Config(e.to_string()))?,
        )?;
        let config_path = dir.join(evolve::CONFIG_FILE);
        std::fs::write(&config_path, cfg.to_toml()?).map_err(|source| EvolveError::Io {
            path: config_path,
            source,
        })?;
        let mut plan = Vec::new();
        let seed_hash = crate::propose::identity(seed.net());
        // Search-fidelity trainings first (seed by seed), then the reference: a
        // check stopped half-way already has the noise figures.
        let mut order: Vec<(usize, Role, u64)> = Vec::new();
        for r in 0..settings.repeats as u64 {
            for m in 0..members.len() {
                order.push((m, Role::Search, cfg.train.seed.wrapping_add(r)));
            }
        }
        for m in 0..members.len() {
            order.push((m, Role::Reference, cfg.train.seed));
        }
        for (member, role, train_seed) in order {
            let net = &members[member];
            let epochs = match role {
                Role::Search => cfg.epochs,
                Role::Reference => cfg.epochs * settings.reference_factor,
            };
            let source = nas_dsl::print(net.net());
            let trial = store.record_proposal(
                &[],
                &NewTrial {
                    stage: Stage::Search,
                    step: member as u64,
                    proposer: PROPOSER.into(),
                    status: TrialStatus::Pending,
                    name: Some(net.name().to_string()),
                    hash: crate::propose::identity(net.net()),
                    source,
                    parent: (member > 0).then(|| seed_hash.clone()),
                    outcome: "ok".into(),
                    note: Some(format!(
                        "{} {}, {} seed {train_seed}",
                        if member == 0 { "seed" } else { "mutant" },
                        member,
                        match role {
                            Role::Search => "search fidelity",
                            Role::Reference => "reference fidelity",
                        }
                    )),
                    params: Some(net.params()),
                    flops: Some(net.flops()),
                    epochs: epochs as u32,
                    propose_ms: 0.0,
                    error: None,
                    rung: 0,
                    continues: None,
                },
            )?;
            plan.push(Planned {
                trial,
                member,
                role,
                seed: train_seed,
            });
        }
        store.set_meta(
            "fidelity_plan",
            &serde_json::to_string(&plan).map_err(|e| EvolveError::Config(e.to_string()))?,
        )?;
        Ok(Check {
            cfg,
            resolved,
            settings,
            dir,
            store,
            task,
            seed,
            plan,
            jobs: 1,
        })
    }

    /// Opens a check to continue it (finished trainings are kept; one that was
    /// running when the process died is trained again).
    pub fn resume(dir: &Path) -> Result<Check, EvolveError> {
        let store = SqliteStore::open(dir)?;
        let corrupt = |what: &str| {
            EvolveError::Store(StoreError::Corrupt {
                path: store.path().to_path_buf(),
                reason: format!("the fidelity check's {what} is missing or does not decode"),
            })
        };
        let cfg: SearchConfig = store
            .meta("config_json")?
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or_else(|| corrupt("configuration"))?;
        let settings: Settings = store
            .meta("fidelity_settings")?
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or_else(|| corrupt("settings (is this a fidelity check's directory?)"))?;
        let plan: Vec<Planned> = store
            .meta("fidelity_plan")?
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or_else(|| corrupt("plan"))?;
        let resolved = cfg.resolve()?;
        let seed = evolve::seed_network(&cfg)?;
        let task = evolve::load_task(&cfg, &resolved, &seed)?;
        Ok(Check {
            cfg,
            resolved,
            settings,
            dir: dir.to_path_buf(),
            store,
            task,
            seed,
            plan,
            jobs: 1,
        })
    }

    /// Trains `jobs` at once, in worker processes each on its share of the
    /// cores (0: one per core, or one on a GPU backend; 1, the default: in this
    /// process, one at a time).
    pub fn with_jobs(mut self, jobs: usize) -> Check {
        let mut cfg = self.cfg.clone();
        cfg.jobs = jobs;
        self.jobs = cfg.jobs(&self.resolved).max(1);
        self
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Trainings planned and already finished.
    pub fn progress(&self) -> Result<(usize, usize), EvolveError> {
        let trials = self.store.trials()?;
        let done = self
            .plan
            .iter()
            .filter(|p| {
                trials
                    .iter()
                    .any(|t| t.id == p.trial && t.status().is_final())
            })
            .count();
        Ok((done, self.plan.len()))
    }

    /// Trains what is left, then writes `fidelity.json` and `fidelity.html`.
    pub fn run(&mut self, obs: &mut dyn CheckObserver) -> Result<Analysis, EvolveError> {
        let total = self.plan.len();
        let done = self.progress()?.0;
        obs.search_started(total as u64, done as u64);
        let ids: Vec<_> = self.plan.iter().map(|p| p.trial).collect();
        let batch = evolve::Batch {
            cfg: &self.cfg,
            resolved: &self.resolved,
            task: &self.task,
            seeds: self.plan.iter().map(|p| (p.trial, p.seed)).collect(),
            jobs: self.jobs,
        };
        evolve::train_batch(&mut self.store, &ids, &batch, done, total, obs)?;
        let analysis = self.analysis()?;
        write(&self.dir, &analysis)?;
        Ok(analysis)
    }

    /// The figures from what has finished so far.
    pub fn analysis(&self) -> Result<Analysis, EvolveError> {
        let trials = self.store.trials()?;
        let members_n = self.plan.iter().map(|p| p.member + 1).max().unwrap_or(0);
        let mut members = Vec::new();
        let mut complete = true;
        for m in 0..members_n {
            let mut result = None::<MemberResult>;
            for p in self.plan.iter().filter(|p| p.member == m) {
                let Some(t) = trials.iter().find(|t| t.id == p.trial) else {
                    complete = false;
                    continue;
                };
                let r = result.get_or_insert_with(|| {
                    let widths = nas_dsl::check_str(&t.trial.source)
                        .ok()
                        .and_then(|n| n.into_iter().next())
                        .map(|n| nas_dsl::mutate::WidthClasses::new(&n).widths())
                        .unwrap_or_default();
                    MemberResult {
                        member: m,
                        label: if m == 0 {
                            "seed".into()
                        } else {
                            format!("mutant {m}")
                        },
                        hash: t.trial.hash.chars().take(16).collect(),
                        widths,
                        params: t.trial.params.unwrap_or(0),
                        search: Vec::new(),
                        search_mean: None,
                        reference: None,
                        failures: Vec::new(),
                    }
                });
                match (t.status(), t.accuracy) {
                    (TrialStatus::Done, Some(a)) => match p.role {
                        Role::Search => r.search.push(100.0 * a),
                        Role::Reference => r.reference = Some(100.0 * a),
                    },
                    (s, _) if s.is_final() => r.failures.push(format!(
                        "{:?} seed {}: {s} ({})",
                        p.role,
                        p.seed,
                        t.trial.error.as_deref().unwrap_or("")
                    )),
                    _ => complete = false,
                }
            }
            if let Some(mut r) = result {
                r.search_mean = stats::summary(&r.search).map(|s| s.mean);
                members.push(r);
            }
        }
        Ok(analyse(
            TaskKey::of(&self.cfg, &self.resolved, &self.seed),
            self.settings,
            self.cfg.epochs,
            members,
            complete,
        ))
    }
}

/// The seed and K distinct mutants of it, drawn with the search's width grid.
fn draw_members(
    seed: &CheckedNet,
    cfg: &SearchConfig,
    resolved: &Resolved,
    k: usize,
) -> Result<Vec<CheckedNet>, EvolveError> {
    let mutator = Mutator {
        widths: resolved.widths,
        structural: cfg.structural,
    };
    let mut generator = Generator::new(vec![seed.clone()], mutator, cfg.seed)
        .map_err(|e| EvolveError::Config(format!("cannot draw mutants of the seed: {e}")))?;
    let mut members = vec![seed.clone()];
    let budget = cfg.budget();
    let mut tries = 0usize;
    while members.len() <= k {
        tries += 1;
        if tries > 100 * (k + 1) {
            return Err(EvolveError::Config(format!(
                "could not draw {k} mutants of the seed within the budget and width grid (got {})",
                members.len() - 1
            )));
        }
        let m = generator
            .next_mutant()
            .map_err(|e| EvolveError::Config(format!("cannot draw mutants of the seed: {e}")))?;
        let net = m.arch.net().clone();
        if evolve::check_seed_budget(&net, &budget).is_err() {
            continue;
        }
        members.push(net);
    }
    Ok(members)
}

/// Writes `fidelity.json` and `fidelity.html` into `dir`.
pub fn write(dir: &Path, analysis: &Analysis) -> Result<(), EvolveError> {
    let io = |path: PathBuf| move |source| EvolveError::Io { path, source };
    let json = serde_json::to_string_pretty(analysis)
        .map_err(|e| EvolveError::Config(format!("cannot encode the analysis: {e}")))?;
    let path = dir.join(RECORD_FILE);
    std::fs::write(&path, json).map_err(io(path.clone()))?;
    let path = dir.join(PAGE_FILE);
    std::fs::write(&path, page(analysis)).map_err(io(path.clone()))?;
    Ok(())
}

/// Reads a check's `fidelity.json`.
pub fn read(dir: &Path) -> Option<Analysis> {
    let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The noise of a search with this configuration: from the newest fidelity
/// check of the same task and fidelity among the run directories in `runs_dir`,
/// else unknown.
pub fn noise_for(cfg: &SearchConfig, runs_dir: &Path) -> Noise {
    let unknown = Noise::unknown();
    let Ok(seed) = evolve::seed_network(cfg) else {
        return unknown;
    };
    let Ok(r) = cfg.resolve() else {
        return unknown;
    };
    let key = TaskKey::of(cfg, &r, &seed);
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return unknown;
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf, Analysis)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let dir = e.path();
            let a = read(&dir)?;
            let modified = std::fs::metadata(dir.join(RECORD_FILE))
                .and_then(|m| m.modified())
                .ok()?;
            (a.key == key && a.noise_sd.is_some()).then_some((modified, dir, a))
        })
        .collect();
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    match found.into_iter().next() {
        Some((_, dir, a)) => Noise {
            sd: a.noise_sd,
            source: format!(
                "measured by the fidelity check `{}` ({} networks × {} seeds{})",
                dir.display(),
                a.members.len(),
                a.settings.repeats,
                if a.complete { "" } else { ", partial" }
            ),
        },
        None => unknown,
    }
}

/// The noise of the search in `run_dir`: from a check beside it (in its runs
/// directory) or one level up (a comparison keeps its runs one level deeper).
pub fn noise_near(cfg: &SearchConfig, run_dir: &Path) -> Noise {
    run_dir
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| noise_for(cfg, dir))
        .find(|n| n.sd.is_some())
        .unwrap_or_else(Noise::unknown)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn fmt_ci(v: Option<Interval>) -> String {
    v.map_or_else(String::new, |i| format!(" [{:.2}, {:.2}]", i.lo, i.hi))
}

/// The figures as text, for the terminal.
pub fn summary_text(a: &Analysis) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "fidelity check: {} networks (the seed and {} mutants), search fidelity {} epoch(s) × {} seeds, reference {} epochs\n",
        a.members.len(),
        a.members.len().saturating_sub(1),
        a.search_epochs,
        a.settings.repeats,
        a.reference_epochs
    ));
    out.push_str(&format!(
        "{:<10} {:>16} {:>10} {:>22} {:>10}\n",
        "network", "hash", "params", "search top-1 (seeds)", "reference"
    ));
    for m in &a.members {
        let seeds: Vec<String> = m.search.iter().map(|v| format!("{v:.1}")).collect();
        out.push_str(&format!(
            "{:<10} {:>16} {:>10} {:>22} {:>10}\n",
            m.label,
            m.hash,
            nas_dsl::summary::thousands(m.params),
            format!("{} ({})", fmt_opt(m.search_mean, 2), seeds.join(", ")),
            fmt_opt(m.reference, 2)
        ));
        for f in &m.failures {
            out.push_str(&format!("           failed: {f}\n"));
        }
    }
    out.push_str(&format!(
        "Spearman ρ {}{}  Kendall τ {}{}  (95% bootstrap intervals, {} networks)\n",
        fmt_opt(a.spearman, 3),
        fmt_ci(a.spearman_ci),
        fmt_opt(a.kendall, 3),
        fmt_ci(a.kendall_ci),
        a.ranked
    ));
    out.push_str(&format!(
        "seed noise (pooled SD) {} points, between-network SD {} points, ratio {}\n",
        fmt_opt(a.noise_sd, 2),
        fmt_opt(a.between_sd, 2),
        fmt_opt(a.noise_ratio, 2)
    ));
    if let (Some(h), Some(s)) = (a.headroom, a.headroom_sds) {
        out.push_str(&format!(
            "the best network scores {h:.2} points ({s:.1} noise SDs) above the seed\n"
        ));
    }
    out.push_str(&format!("verdict: {}\n", a.verdict));
    out
}

/// The HTML page: the figures and a scatter plot of search score (mean, with
/// the seeds' range as error bars) against reference score.
pub fn page(a: &Analysis) -> String {
    let rows: String = a
        .members
        .iter()
        .map(|m| {
            let seeds: Vec<String> = m.search.iter().map(|v| format!("{v:.2}")).collect();
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&m.label),
                escape(&m.hash),
                m.widths,
                nas_dsl::summary::thousands(m.params),
                fmt_opt(m.search_mean, 2),
                seeds.join(", "),
                fmt_opt(m.reference, 2)
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>fidelity check</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}}
.verdict{{font-size:1.15em;padding:.6em;background:{bg}}}</style></head><body>
<h1>Fidelity check</h1>
<p class="verdict">{verdict}</p>
<p>Search fidelity: {se} epoch(s) × {r} training seeds; reference: {re} epochs, one seed.
Task: {task}.</p>
<table>
<tr><th>Spearman ρ</th><td>{rho}{rho_ci}</td></tr>
<tr><th>Kendall τ-b</th><td>{tau}{tau_ci}</td></tr>
<tr><th>seed noise (pooled SD)</th><td>{noise} points</td></tr>
<tr><th>between-network SD</th><td>{between} points</td></tr>
<tr><th>noise / spread</th><td>{ratio}</td></tr>
<tr><th>best above the seed</th><td>{head} points ({head_sd} noise SDs)</td></tr>
</table>
<p>Intervals: percentile bootstrap over networks, 95 %.</p>
{plot}
<h2>Networks</h2>
<table><tr><th>network</th><th>hash</th><th>widths</th><th>params</th><th>search mean</th><th>search seeds</th><th>reference</th></tr>
{rows}</table>
</body></html>
"#,
        bg = if a.reliable { "#e6f4ea" } else { "#fdecea" },
        verdict = escape(&a.verdict),
        se = a.search_epochs,
        r = a.settings.repeats,
        re = a.reference_epochs,
        task = escape(&format!(
            "{} ({} train, {} test images, batch {}, lr {}, {}, widths {})",
            a.key.dataset,
            a.key.train_size.map_or("all".into(), |n| n.to_string()),
            a.key.test_size.map_or("all".into(), |n| n.to_string()),
            a.key.batch,
            a.key.lr,
            a.key.schedule,
            a.key.widths
        )),
        rho = fmt_opt(a.spearman, 3),
        rho_ci = fmt_ci(a.spearman_ci),
        tau = fmt_opt(a.kendall, 3),
        tau_ci = fmt_ci(a.kendall_ci),
        noise = fmt_opt(a.noise_sd, 2),
        between = fmt_opt(a.between_sd, 2),
        ratio = fmt_opt(a.noise_ratio, 2),
        head = fmt_opt(a.headroom, 2),
        head_sd = fmt_opt(a.headroom_sds, 1),
        plot = scatter(a),
    )
}

/// An inline SVG scatter plot: x the reference score, y the mean search score,
/// vertical bars from the lowest to the highest seed.
fn scatter(a: &Analysis) -> String {
    let points: Vec<(&MemberResult, f64, f64, f64, f64)> = a
        .members
        .iter()
        .filter_map(|m| {
            let x = m.reference?;
            let y = m.search_mean?;
            let lo = m.search.iter().copied().fold(y, f64::min);
            let hi = m.search.iter().copied().fold(y, f64::max);
            Some((m, x, y, lo, hi))
        })
        .collect();
    if points.is_empty() {
        return "<p>(no network has both scores yet: no plot)</p>".into();
    }
    let (w, h, pad) = (640.0, 440.0, 56.0);
    let span = |vals: &mut dyn Iterator<Item = f64>| {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in vals {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let margin = ((hi - lo) * 0.08).max(0.5);
        (lo - margin, hi + margin)
    };
    let (x0, x1) = span(&mut points.iter().map(|p| p.1));
    let (y0, y1) = span(&mut points.iter().flat_map(|p| [p.3, p.4]));
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 1.5 * pad);
    let sy = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 1.5 * pad);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-size="12">
<rect x="{pad}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>
<text x="{cx}" y="{xb}" text-anchor="middle">reference top-1 (%), {re} epochs</text>
<text transform="translate(14,{cy}) rotate(-90)" text-anchor="middle">search top-1 (%), {se} epoch(s), mean and range of seeds</text>
"##,
        top = pad / 2.0,
        pw = w - 1.5 * pad,
        ph = h - 1.5 * pad,
        cx = pad + (w - 1.5 * pad) / 2.0,
        xb = h - 12.0,
        cy = (h - pad / 2.0) / 2.0 + pad / 4.0,
        re = a.reference_epochs,
        se = a.search_epochs,
    );
    for i in 0..=4 {
        let xv = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let yv = y0 + (y1 - y0) * f64::from(i) / 4.0;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{xv:.1}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{yv:.1}</text>\n",
            sx(xv),
            h - pad + 16.0,
            pad - 4.0,
            sy(yv) + 4.0
        ));
    }
    for (m, x, y, lo, hi) in &points {
        let colour = if m.member == 0 { "#c0392b" } else { "#1f5fa8" };
        svg.push_str(&format!(
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\n<circle cx=\"{0:.1}\" cy=\"{3:.1}\" r=\"4\" fill=\"{colour}\"><title>{4}: search {5:.2}, reference {6:.2}</title></circle>\n",
            sx(*x),
            sy(*lo),
            sy(*hi),
            sy(*y),
            escape(&m.label),
            y,
            x
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure should panic
mod tests {
    use super::*;

    fn key() -> TaskKey {
        TaskKey {
            seed_hash: "h".into(),
            dataset: "synthetic".into(),
            data_dir: None,
            train_size: Some(64),
            test_size: Some(32),
            epochs: 1,
            batch: 32,
            lr: 0.05,
            schedule: "cosine".into(),
            augment: true,
            widths: "step:8..=64".into(),
        }
    }

    fn member(member: usize, search: &[f64], reference: Option<f64>) -> MemberResult {
        MemberResult {
            member,
            label: if member == 0 {
                "seed".into()
            } else {
                format!("mutant {member}")
            },
            hash: format!("{member:016}"),
            widths: vec![8, 16],
            params: 1000,
            search: search.to_vec(),
            search_mean: stats::summary(search).map(|s| s.mean),
            reference,
            failures: Vec::new(),
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn figures_of_a_hand_worked_example() {
        // Means 21, 30.5, 11, 24.5; within-network sums of squares 2, .5, 2, .5
        // over 4 degrees of freedom: pooled SD √1.25. SD of the means: √66.75.
        // The reference orders the networks exactly as the means do.
        let members = vec![
            member(0, &[20.0, 22.0], Some(30.0)),
            member(1, &[30.0, 31.0], Some(40.0)),
            member(2, &[10.0, 12.0], Some(20.0)),
            member(3, &[25.0, 24.0], Some(35.0)),
        ];
        let a = analyse(key(), Settings::default(), 1, members, true);
        close(a.noise_sd.unwrap(), 1.25f64.sqrt());
        close(a.between_sd.unwrap(), 66.75f64.sqrt());
        close(a.noise_ratio.unwrap(), (1.25f64 / 66.75).sqrt());
        close(a.spearman.unwrap(), 1.0);
        close(a.kendall.unwrap(), 1.0);
        close(a.seed_score.unwrap(), 21.0);
        close(a.headroom.unwrap(), 9.5);
        close(a.headroom_sds.unwrap(), 9.5 / 1.25f64.sqrt());
        assert_eq!(a.ranked, 4);
        assert_eq!(a.reference_epochs, 8);
        assert!(a.reliable);
        assert!(
            a.verdict
                .starts_with("this proxy ranks networks reliably: its noise is 1.12 points and networks differ by 8.17"),
            "{}",
            a.verdict
        );
    }

    #[test]
    fn a_proxy_that_reverses_the_ranks_or_drowns_in_noise_is_not_reliable() {
        let reversed = vec![
            member(0, &[20.0, 22.0], Some(35.0)),
            member(1, &[30.0, 31.0], Some(20.0)),
            member(2, &[10.0, 12.0], Some(40.0)),
            member(3, &[25.0, 24.0], Some(30.0)),
        ];
        let a = analyse(key(), Settings::default(), 1, reversed, true);
        assert!(!a.reliable);
        assert!(a.spearman.unwrap() < 0.0);
        assert!(
            a.verdict.contains("its ranks disagree with the reference"),
            "{}",
            a.verdict
        );

        let noisy = vec![
            member(0, &[10.0, 30.0], Some(20.0)),
            member(1, &[12.0, 31.0], Some(21.0)),
            member(2, &[14.0, 32.0], Some(22.0)),
        ];
        let a = analyse(key(), Settings::default(), 1, noisy, true);
        assert!(!a.reliable);
        assert!(
            a.verdict.contains("its noise is too large"),
            "{}",
            a.verdict
        );
    }

    #[test]
    fn a_partial_check_says_so_and_too_little_data_is_not_judged() {
        let members = vec![
            member(0, &[20.0, 22.0], Some(30.0)),
            member(1, &[30.0], None),
        ];
        let a = analyse(key(), Settings::default(), 1, members, false);
        assert!(a.spearman.is_none());
        assert!(!a.reliable);
        assert!(
            a.verdict.starts_with("not enough finished trainings"),
            "{}",
            a.verdict
        );
        assert!(a.verdict.contains("partial"), "{}", a.verdict);
        let text = summary_text(&a);
        assert!(text.contains("mutant 1"), "{text}");
        let page = page(&a);
        assert!(
            page.contains("<svg") && page.matches("<circle").count() == 1,
            "{page}"
        );
    }

    #[test]
    fn settings_are_validated() {
        for (s, needle) in [
            (
                Settings {
                    mutants: 1,
                    ..Settings::default()
                },
                "at least 2 mutants",
            ),
            (
                Settings {
                    repeats: 1,
                    ..Settings::default()
                },
                "at least 2 training seeds",
            ),
            (
                Settings {
                    reference_factor: 1,
                    ..Settings::default()
                },
                "at least 2× longer",
            ),
        ] {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        assert!(Settings::default().validate().is_ok());
    }
}
