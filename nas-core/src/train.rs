//! The trainer: our own loop over a runtime-built net (SGD with Nesterov momentum,
//! weight decay, warm-up then cosine or one-cycle schedule, label smoothing), with
//! fixed hyper-parameters per run so accuracy differences come from the
//! architecture. It evaluates top-1/top-5 on the test split after every epoch,
//! records per-epoch telemetry, and ends a run whose loss turns NaN/Inf or explodes
//! as `diverged` instead of crashing. Seeds make a CPU run reproducible.
//!
//! A run can stop after any epoch with a [`Checkpoint`] (weights, running
//! statistics, the optimiser's momentum, the epochs done) and be continued later
//! ([`train_from`]): the learning-rate schedule spans
//! [`TrainConfig::schedule_epochs`], the data order and augmentation are drawn
//! from the seed epoch by epoch, and the backend's generator is seeded at every
//! epoch, so a continued run equals one uninterrupted run bit for bit.

use crate::data::augment::{Augment, Prefetch, epoch_batches, make_batch};
use crate::data::{Dataset, IMAGE, Normalize, Split};
use crate::runtime::{RuntimeError, RuntimeNet};
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use nas_dsl::{CheckedNet, Shape};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::sync::Arc;
use std::time::Instant;

/// Why a run could not start (a run that starts always ends with a [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The net does not fit the task.
    #[error("`{net}` does not fit the {task} task: {reason}")]
    Mismatch {
        /// The net's name.
        net: String,
        /// The task's name.
        task: String,
        /// What disagrees.
        reason: String,
    },
    /// A hyper-parameter is out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The runtime module failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A checkpoint that does not decode or does not belong to this training.
    #[error("the checkpoint cannot continue this training: {0}")]
    Checkpoint(String),
}

/// The learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Linear warm-up to the peak, then cosine decay to zero.
    Cosine,
    /// One-cycle: linear warm-up from peak/25 over at least 30% of the run, then
    /// cosine decay to peak/10,000.
    OneCycle,
}

/// The hyper-parameters of a run (fixed across the runs of a search).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainConfig {
    /// Passes over the training split (where this run stops).
    pub epochs: usize,
    /// The epochs the learning-rate schedule spans (none: `epochs`). A run that
    /// stops early to be continued ([`train_from`]) sets it to the epochs of the
    /// whole training, so its schedule is the uninterrupted one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_epochs: Option<usize>,
    /// Training batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Share of all steps spent warming up linearly.
    pub warmup: f64,
    /// The schedule after warm-up.
    pub schedule: Schedule,
    /// Label smoothing of the training loss (0: none).
    pub label_smoothing: f64,
    /// Training augmentation.
    pub augment: Augment,
    /// Seeds weights, shuffling, augmentation and dropout.
    pub seed: u64,
    /// A training loss above `explode · ln(classes)` counts as divergence.
    pub explode: f64,
    /// Evaluation batch size.
    pub eval_batch: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 2,
            schedule_epochs: None,
            batch: 128,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            warmup: 0.1,
            schedule: Schedule::Cosine,
            label_smoothing: 0.1,
            augment: Augment::STANDARD,
            seed: 0,
            explode: 10.0,
            eval_batch: 500,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("`epochs` must be at least 1".into());
        }
        if let Some(s) = self.schedule_epochs
            && s < self.epochs
        {
            return bad(format!(
                "the schedule spans {s} epochs, fewer than the {} to train",
                self.epochs
            ));
        }
        if self.batch == 0 || self.eval_batch == 0 {
            return bad("batch sizes must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "the learning rate must be positive, not {}",
                self.lr
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), not {}", self.momentum));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing must be in [0, 1), not {}",
                self.label_smoothing
            ));
        }
        if !(0.0..=1.0).contains(&self.warmup) {
            return bad(format!("warm-up must be in [0, 1], not {}", self.warmup));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay must be ≥ 0, not {}",
                self.weight_decay
            ));
        }
        Ok(())
    }

    /// The epochs the learning-rate schedule spans.
    pub fn schedule_epochs(&self) -> usize {
        self.schedule_epochs.unwrap_or(self.epochs).max(self.epochs)
    }
}

/// The learning rate at `step` (0-based) of `total` steps.
pub fn learning_rate(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let total = total.max(1) as f64;
    let step = step as f64;
    let cosine = |from: f64, to: f64, t: f64| {
        to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    };
    match cfg.schedule {
        Schedule::Cosine => {
            let warm = (cfg.warmup * total).floor();
            if step < warm {
                cfg.lr * (step + 1.0) / warm
            } else {
                let t = (step - warm) / (total - warm).max(1.0);
                cosine(cfg.lr, 0.0, t.min(1.0))
            }
        }
        Schedule::OneCycle => {
            let warm = (cfg.warmup.max(0.3) * total).floor().max(1.0);
            let start = cfg.lr / 25.0;
            if step < warm {
                start + (cfg.lr - start) * step / warm
            } else {
                let t = (step - warm) / (total - warm).max(1.0);
                cosine(cfg.lr, cfg.lr / 1e4, t.min(1.0))
            }
        }
    }
}

/// A task ready for training: both splits shared (a search reuses one task across
/// many runs) and the normalisation fitted on the training split.
#[derive(Clone, Debug)]
pub struct Task {
    /// The task's name.
    pub name: String,
    /// Training images.
    pub train: Arc<Dataset>,
    /// Test images.
    pub test: Arc<Dataset>,
    /// Per-channel statistics of the training split.
    pub normalize: Normalize,
}

impl Task {
    /// Prepares a loaded split.
    pub fn new(split: Split) -> Task {
        let normalize = Normalize::fit(&split.train);
        Task {
            name: split.name,
            train: Arc::new(split.train),
            test: Arc::new(split.test),
            normalize,
        }
    }

    /// A content hash of the task's images and labels (train, then test), so a
    /// run can tell when its data changed between sessions.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for d in [&self.train, &self.test] {
            h.update((d.classes as u64).to_le_bytes());
            h.update((d.labels.len() as u64).to_le_bytes());
            h.update(&d.images);
            for l in &d.labels {
                h.update(l.to_le_bytes());
            }
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.train.classes
    }
}

/// One epoch's telemetry.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimiser steps this epoch.
    pub steps: usize,
    /// Mean training loss (with label smoothing).
    pub train_loss: f64,
    /// Mean test loss (plain cross-entropy).
    pub test_loss: f64,
    /// Test top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Test top-5 accuracy in [0, 1].
    pub top5: f64,
    /// Training images per second (forward, backward and optimiser step).
    pub images_per_sec: f64,
    /// Wall time of the epoch in seconds, evaluation included.
    pub wall_s: f64,
    /// The learning rate at the epoch's last step.
    pub lr: f64,
    /// Peak resident memory of the process so far (bytes), where the OS says.
    pub peak_rss: Option<u64>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Every epoch ran.
    Completed,
    /// The loss became NaN/Inf or exploded.
    Diverged {
        /// The 1-based epoch it happened in.
        epoch: usize,
        /// The 1-based step within that epoch (0: during evaluation).
        step: usize,
        /// What was seen.
        reason: String,
    },
}

/// Everything a run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The net's name.
    pub net: String,
    /// Learnable parameters (the checker's count).
    pub params: u64,
    /// Multiply-accumulates per image (the checker's count).
    pub flops: u64,
    /// The task's name.
    pub dataset: String,
    /// Training and test images.
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
    /// The backend's name.
    pub backend: String,
    /// The hyper-parameters.
    pub config: TrainConfig,
    /// How the run ended.
    pub outcome: Outcome,
    /// One entry per completed epoch.
    pub epochs: Vec<EpochStats>,
    /// Top-1 of the last completed epoch (0 if none).
    pub top1: f64,
    /// Top-5 of the last completed epoch (0 if none).
    pub top5: f64,
    /// Total wall time in seconds.
    pub wall_s: f64,
    /// The epochs taken from a checkpoint (0: trained from the start).
    pub resumed_at: usize,
    /// The state after the last epoch, when one was asked for and the run
    /// completed.
    #[serde(skip)]
    pub checkpoint: Option<Checkpoint>,
}

impl Report {
    /// Whether the run diverged.
    pub fn diverged(&self) -> bool {
        matches!(self.outcome, Outcome::Diverged { .. })
    }
}

/// Receives progress while a run goes (the CLI's progress bar); `()` ignores it.
pub trait Observer {
    /// An epoch of `steps` steps begins.
    fn epoch_start(&mut self, _epoch: usize, _steps: usize) {}
    /// A step finished with this training loss.
    fn step(&mut self, _step: usize, _loss: f64) {}
    /// Evaluation begins.
    fn evaluating(&mut self) {}
    /// An epoch finished.
    fn epoch_end(&mut self, _stats: &EpochStats) {}
}

impl Observer for () {}

/// Peak resident set size of this process (`VmHWM`), where `/proc` has it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Checks that the net takes `[3, 32, 32]` images and ends in the task's classes.
pub fn check_fit(net: &CheckedNet, task: &Task) -> Result<(), TrainError> {
    let mismatch = |reason: String| TrainError::Mismatch {
        net: net.name().to_string(),
        task: task.name.clone(),
        reason,
    };
    let image = Shape::Map {
        c: IMAGE[0] as u64,
        h: IMAGE[1] as u64,
        w: IMAGE[2] as u64,
    };
    if net.input() != image {
        return Err(mismatch(format!(
            "the net takes {} but the images are {image}",
            net.input()
        )));
    }
    if net.output() != Shape::Flat(task.classes() as u64) {
        return Err(mismatch(format!(
            "the net ends in {} but the task has {} classes",
            net.output(),
            task.classes()
        )));
    }
    if task.train.is_empty() || task.test.is_empty() {
        return Err(mismatch("a split is empty".into()));
    }
    Ok(())
}

fn images_tensor<B: Backend>(images: Vec<f32>, n: usize, device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(
        TensorData::new(images, [n, IMAGE[0], IMAGE[1], IMAGE[2]]),
        device,
    )
}

/// Test-split loss and accuracy of a model in inference mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
}

/// Evaluates a model on a set (no augmentation), `batch` images at a time.
pub fn evaluate<B: Backend>(
    model: &RuntimeNet<B>,
    set: &Dataset,
    normalize: &Normalize,
    batch: usize,
    device: &B::Device,
) -> Result<Evaluation, RuntimeError> {
    let mut rng = Pcg64::seed_from_u64(0);
    let (mut loss, mut top1, mut top5) = (0f64, 0usize, 0usize);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let b = make_batch(set, chunk, normalize, Augment::NONE, &mut rng);
        let n = b.len();
        let logits = model.forward(images_tensor::<B>(b.images, n, device))?;
        let classes = logits.dims()[1];
        let values: Vec<f32> = logits.into_data().into_vec().unwrap_or_default();
        for (row, &label) in values.chunks(classes).zip(&b.labels) {
            let (l, rank) = row_stats(row, label as usize);
            loss += l;
            top1 += usize::from(rank < 1);
            top5 += usize::from(rank < 5);
        }
    }
    let n = set.len().max(1) as f64;
    Ok(Evaluation {
        loss: loss / n,
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
    })
}

/// Cross-entropy of one row of logits and the rank of the true class (0: top-1).
/// A NaN logit makes the loss NaN and the rank the worst.
fn row_stats(row: &[f32], label: usize) -> (f64, usize) {
    let Some(&target) = row.get(label) else {
        return (f64::NAN, usize::MAX);
    };
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    let loss = sum.ln() - f64::from(target - max);
    if target.is_nan() {
        return (f64::NAN, usize::MAX);
    }
    let rank = row
        .iter()
        .enumerate()
        .filter(|&(i, &v)| v > target || (v == target && i < label) || v.is_nan())
        .count();
    (loss, rank)
}

/// The state of a training after an epoch, to continue it from: the epochs
/// done (with their telemetry), the hyper-parameters that must not change, the
/// module's record (weights and batch-norm running statistics, with their
/// parameter ids) and the optimiser's (momentum buffers by parameter id).
#[derive(Clone, PartialEq)]
pub struct Checkpoint(Vec<u8>);

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpoint({} bytes)", self.0.len())
    }
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"NASCKPT1";

/// What a checkpoint records besides the two module records.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CheckpointHeader {
    net: String,
    params: u64,
    seed: u64,
    batch: usize,
    schedule_epochs: usize,
    train_images: usize,
    epochs: Vec<EpochStats>,
}

impl Checkpoint {
    /// A checkpoint from stored bytes (checked when it is used).
    pub fn from_bytes(bytes: Vec<u8>) -> Checkpoint {
        Checkpoint(bytes)
    }

    /// The bytes to store.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds nothing (never true of a written checkpoint).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The epochs it holds.
    pub fn epochs(&self) -> Result<usize, TrainError> {
        Ok(self.parts()?.0.epochs.len())
    }

    /// The module and optimiser records (everything but the telemetry): two
    /// checkpoints of equal training hold equal state.
    pub fn state(&self) -> Result<(&[u8], &[u8]), TrainError> {
        let (_, model, optim) = self.parts()?;
        Ok((model, optim))
    }

    /// Every float tensor it holds (learnable parameters and batch-norm
    /// running statistics), flattened in the module's order, as `net` loads them (to compare the weights of two trainings whatever
    /// their parameter ids).
    pub fn weights<B: Backend>(
        &self,
        net: &CheckedNet,
        device: &B::Device,
    ) -> Result<Vec<f32>, TrainError> {
        struct Flatten(Vec<f32>);
        impl<B: Backend> burn::module::ModuleVisitor<B> for Flatten {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
                self.0
                    .extend(param.val().into_data().iter::<f32>().collect::<Vec<_>>());
            }
        }
        let (_, model_bytes, _) = self.parts()?;
        let model = load_module(RuntimeNet::<B>::new(net, device), model_bytes, device)?;
        let mut flat = Flatten(Vec::new());
        model.visit(&mut flat);
        Ok(flat.0)
    }

    fn encode(
        header: &CheckpointHeader,
        model: &[u8],
        optim: &[u8],
    ) -> Result<Checkpoint, TrainError> {
        let header = serde_json::to_vec(header)
            .map_err(|e| TrainError::Checkpoint(format!("writing the header: {e}")))?;
        let mut out = Vec::with_capacity(8 + 24 + header.len() + model.len() + optim.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        for part in [&header[..], model, optim] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        Ok(Checkpoint(out))
    }

    fn parts(&self) -> Result<(CheckpointHeader, &[u8], &[u8]), TrainError> {
        let bad = |m: &str| TrainError::Checkpoint(m.to_string());
        let rest = self
            .0
            .strip_prefix(CHECKPOINT_MAGIC)
            .ok_or_else(|| bad("not a nas-core checkpoint"))?;
        let mut parts = Vec::with_capacity(3);
        let mut rest = rest;
        for _ in 0..3 {
            let (len, tail) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("truncated"))?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad("truncated"))?;
            if tail.len() < len {
                return Err(bad("truncated"));
            }
            let (part, tail) = tail.split_at(len);
            parts.push(part);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let header: CheckpointHeader = serde_json::from_slice(parts[0])
            .map_err(|e| TrainError::Checkpoint(format!("header: {e}")))?;
        Ok((header, parts[1], parts[2]))
    }
}

/// The seed of the backend's generator in `epoch` (dropout masks): drawn from
/// the run's seed and the epoch alone, so a continued run draws the same.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type Records = burn::record::NamedMpkBytesRecorder<burn::record::FullPrecisionSettings>;

/// Runs a record load, turning a panic inside Burn (it panics on a malformed
/// parameter id) into an error.
fn guarded<T>(what: &str, load: impl FnOnce() -> Result<T, TrainError>) -> Result<T, TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|_| {
        Err(TrainError::Checkpoint(format!(
            "the {what} record is malformed"
        )))
    })
}

fn load_module<B: Backend>(
    model: RuntimeNet<B>,
    bytes: &[u8],
    device: &B::Device,
) -> Result<RuntimeNet<B>, TrainError> {
    guarded("module", || {
        let record = burn::record::Recorder::<B>::load(&Records::default(), bytes.to_vec(), device)
            .map_err(|e| TrainError::Checkpoint(format!("the module record: {e}")))?;
        Ok(model.load_record(record))
    })
}

/// Serialises training runs within a process (see [`train`]).
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains `net` on `task` with `cfg` on `device` (an autodiff backend) and reports.
pub fn train<B: AutodiffBackend>(
    net: &CheckedNet,
    task: &Task,
    cfg: &TrainConfig,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Report, TrainError> {
    train_from::<B>(net, task, cfg, None, false, device, observer)
}

/// Trains `net` up to `cfg.epochs`, continuing from `resume` when given (its
/// epochs are not trained again and its telemetry heads the report's), and
/// returns the state after the last epoch in [`Report::checkpoint`] when
/// `keep` is set and the run completed. A checkpoint of another network, seed,
/// batch size, schedule length or task, or one past `cfg.epochs`, is refused
/// ([`TrainError::Checkpoint`]).
#[allow(clippy::too_many_arguments)]
pub fn train_from<B: AutodiffBackend>(
    net: &CheckedNet,
    task: &Task,
    cfg: &TrainConfig,
    resume: Option<&Checkpoint>,
    keep: bool,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Report, TrainError> {
    cfg.validate()?;
    check_fit(net, task)?;
    let header = CheckpointHeader {
        net: net.name().to_string(),
        params: net.params(),
        seed: cfg.seed,
        batch: cfg.batch,
        schedule_epochs: cfg.schedule_epochs(),
        train_images: task.train.len(),
        epochs: Vec::new(),
    };
    let resume = match resume {
        None => None,
        Some(c) => {
            let (stored, model, optim) = c.parts()?;
            let same = CheckpointHeader {
                epochs: Vec::new(),
                ..stored.clone()
            };
            if same != header {
                return Err(TrainError::Checkpoint(format!(
                    "it was written by another training ({} with {} parameters, seed {}, batch {}, a {}-epoch schedule, {} images; this one: {} with {} parameters, seed {}, batch {}, a {}-epoch schedule, {} images)",
                    stored.net,
                    stored.params,
                    stored.seed,
                    stored.batch,
                    stored.schedule_epochs,
                    stored.train_images,
                    header.net,
                    header.params,
                    header.seed,
                    header.batch,
                    header.schedule_epochs,
                    header.train_images
                )));
            }
            if stored.epochs.len() > cfg.epochs {
                return Err(TrainError::Checkpoint(format!(
                    "it holds {} epochs, more than the {} to train",
                    stored.epochs.len(),
                    cfg.epochs
                )));
            }
            Some((stored.epochs, model.to_vec(), optim.to_vec()))
        }
    };
    // The backend's random generator (weights, dropout masks) is global to the
    // process: two runs at once would interleave its draws and neither would be
    // reproducible. Runs in one process therefore take turns (each uses every core).
    let _turn = BACKEND_RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let start = Instant::now();
    B::seed(device, cfg.seed);
    let mut model = RuntimeNet::<B>::new(net, device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(cfg.momentum)
                .with_dampening(0.0)
                .with_nesterov(cfg.nesterov),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(cfg.weight_decay as f32)))
        .init::<B, RuntimeNet<B>>();
    let recorder = Records::default();
    let mut epochs = Vec::new();
    if let Some((done, model_bytes, optim_bytes)) = resume {
        model = load_module(model, &model_bytes, device)?;
        optim = guarded("optimiser", || {
            let record = burn::record::Recorder::<B>::load(&recorder, optim_bytes, device)
                .map_err(|e| TrainError::Checkpoint(format!("the optimiser record: {e}")))?;
            Ok(optim.load_record(record))
        })?;
        epochs = done;
    }
    let resumed_at = epochs.len();
    let smoothing = (cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing as f32);
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing(smoothing)
        .init::<B>(device);
    let limit = cfg.explode * (task.classes().max(2) as f64).ln();
    let mut rng = Pcg64::seed_from_u64(cfg.seed ^ 0xDA7A);
    let steps_per_epoch = epoch_batches(task.train.len(), cfg.batch, &mut rng.clone()).len();
    let total = steps_per_epoch * cfg.schedule_epochs();
    // The data order and augmentation seeds of the epochs a checkpoint holds are
    // drawn again (cheap: index shuffles), so later epochs see what they would
    // have seen in one uninterrupted run.
    for _ in 0..resumed_at {
        epoch_batches(task.train.len(), cfg.batch, &mut rng);
        let _: u64 = rng.random();
    }
    let mut global = steps_per_epoch * resumed_at;
    let mut outcome = Outcome::Completed;

    'epochs: for epoch in resumed_at + 1..=cfg.epochs {
        let epoch_start = Instant::now();
        B::seed(device, epoch_seed(cfg.seed, epoch));
        let batches = epoch_batches(task.train.len(), cfg.batch, &mut rng);
        observer.epoch_start(epoch, batches.len());
        let stream = Prefetch::start(
            task.train.clone(),
            batches,
            task.normalize,
            cfg.augment,
            rng.random(),
            2,
        );
        let (mut loss_sum, mut seen, mut steps, mut lr) = (0f64, 0usize, 0usize, 0f64);
        for b in stream {
            let n = b.len();
            lr = learning_rate(cfg, global, total);
            let x = images_tensor::<B>(b.images, n, device);
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(b.labels, [n]), device);
            let logits = model.forward(x)?;
            let loss = loss_fn.forward(logits, y);
            let value: f64 = loss.clone().into_scalar().elem();
            steps += 1;
            global += 1;
            if !value.is_finite() || value > limit {
                let reason = if value.is_finite() {
                    format!("training loss {value:.3e} exceeds {limit:.1}")
                } else {
                    format!("training loss is {value}")
                };
                outcome = Outcome::Diverged {
                    epoch,
                    step: steps,
                    reason,
                };
                break 'epochs;
            }
            observer.step(steps, value);
            loss_sum += value * n as f64;
            seen += n;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let train_time = epoch_start.elapsed().as_secs_f64();
        observer.evaluating();
        let eval = evaluate(
            &model.valid(),
            &task.test,
            &task.normalize,
            cfg.eval_batch,
            device,
        )?;
        if !eval.loss.is_finite() {
            outcome = Outcome::Diverged {
                epoch,
                step: 0,
                reason: format!("test loss is {}", eval.loss),
            };
            break;
        }
        let stats = EpochStats {
            epoch,
            steps,
            train_loss: loss_sum / seen.max(1) as f64,
            test_loss: eval.loss,
            top1: eval.top1,
            top5: eval.top5,
            images_per_sec: seen as f64 / train_time.max(1e-9),
            wall_s: epoch_start.elapsed().as_secs_f64(),
            lr,
            peak_rss: peak_rss(),
        };
        observer.epoch_end(&stats);
        epochs.push(stats);
    }
    let (top1, top5) = epochs.last().map_or((0.0, 0.0), |e| (e.top1, e.top5));
    let checkpoint = if keep && outcome == Outcome::Completed {
        let encode = |what: &str, e: burn::record::RecorderError| {
            TrainError::Checkpoint(format!("writing the {what} record: {e}"))
        };
        let model_bytes = burn::record::Recorder::<B>::record(&recorder, model.into_record(), ())
            .map_err(|e| encode("module", e))?;
        let optim_bytes = burn::record::Recorder::<B>::record(&recorder, optim.to_record(), ())
            .map_err(|e| encode("optimiser", e))?;
        let header = CheckpointHeader {
            epochs: epochs.clone(),
            ..header
        };
        Some(Checkpoint::encode(&header, &model_bytes, &optim_bytes)?)
    } else {
        None
    };
    Ok(Report {
        net: net.name().to_string(),
        params: net.params(),
        flops: net.flops(),
        dataset: task.name.clone(),
        train_images: task.train.len(),
        test_images: task.test.len(),
        backend: B::name(device),
        config: cfg.clone(),
        outcome,
        epochs,
        top1,
        top5,
        wall_s: start.elapsed().as_secs_f64(),
        resumed_at,
        checkpoint,
    })
}

/// Which Burn backend runs a training run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's `flex` CPU backend (always available).
    Flex,
    /// Burn's CUDA backend (needs nas-core built with `--features cuda`).
    Cuda,
    /// Burn's LibTorch backend on the CPU (needs `--features tch` and a libtorch,
    /// e.g. the one inside a PyTorch wheel with `LIBTORCH_USE_PYTORCH=1`).
    Tch,
}

/// The error for a backend this build does not include.
pub fn backend_unavailable(kind: BackendKind) -> TrainError {
    let name = match kind {
        BackendKind::Flex => "flex",
        BackendKind::Cuda => "cuda",
        BackendKind::Tch => "tch",
    };
    TrainError::Config(format!(
        "this nas-core was built without the `{name}` backend; rebuild with `cargo build --release --features {name}`"
    ))
}

/// Work generic over the training backend, run by [`on_backend`] on the backend
/// a user chose at run time.
pub trait BackendJob {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B`'s default device.
    fn run<B: AutodiffBackend>(self, device: &B::Device) -> Self::Output;
}

/// Runs `job` on the chosen backend's default device: the one place that maps a
/// [`BackendKind`] to a Burn backend type (an error for one this build lacks).
pub fn on_backend<J: BackendJob>(backend: BackendKind, job: J) -> Result<J::Output, TrainError> {
    match backend {
        BackendKind::Flex => {
            Ok(job.run::<burn::backend::Autodiff<burn::backend::Flex>>(&Default::default()))
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            Ok(job.run::<burn::backend::Autodiff<burn::backend::Cuda>>(&Default::default()))
        }
        #[cfg(feature = "tch")]
        BackendKind::Tch => {
            Ok(job.run::<burn::backend::Autodiff<burn::backend::LibTorch>>(&Default::default()))
        }
        #[allow(
            unreachable_patterns,
            reason = "reached only by builds without a feature"
        )]
        other => Err(backend_unavailable(other)),
    }
}

/// Trains on the chosen backend's default device (see [`train`]).
pub fn train_on(
    backend: BackendKind,
    net: &CheckedNet,
    task: &Task,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<Report, TrainError> {
    train_from_on(backend, net, task, cfg, None, false, observer)
}

/// Continues or starts a training on the chosen backend's default device (see
/// [`train_from`]).
pub fn train_from_on(
    backend: BackendKind,
    net: &CheckedNet,
    task: &Task,
    cfg: &TrainConfig,
    resume: Option<&Checkpoint>,
    keep: bool,
    observer: &mut dyn Observer,
) -> Result<Report, TrainError> {
    struct Job<'a> {
        net: &'a CheckedNet,
        task: &'a Task,
        cfg: &'a TrainConfig,
        resume: Option<&'a Checkpoint>,
        keep: bool,
        observer: &'a mut dyn Observer,
    }
    impl BackendJob for Job<'_> {
        type Output = Result<Report, TrainError>;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Self::Output {
            train_from::<B>(
                self.net,
                self.task,
                self.cfg,
                self.resume,
                self.keep,
                device,
                self.observer,
            )
        }
    }
    on_backend(
        backend,
        Job {
            net,
            task,
            cfg,
            resume,
            keep,
            observer,
        },
    )?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(schedule: Schedule) -> TrainConfig {
        TrainConfig {
            lr: 1.0,
            warmup: 0.1,
            schedule,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn cosine_warms_up_linearly_then_decays_to_zero() {
        let c = cfg(Schedule::Cosine);
        assert!((learning_rate(&c, 0, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 10, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 55, 100) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&c, 99, 100) < 0.001);
        let mut prev = f64::INFINITY;
        for s in 10..100 {
            let lr = learning_rate(&c, s, 100);
            assert!(lr <= prev);
            prev = lr;
        }
    }

    #[test]
    fn one_cycle_starts_low_peaks_and_ends_near_zero() {
        let c = cfg(Schedule::OneCycle);
        assert!((learning_rate(&c, 0, 100) - 0.04).abs() < 1e-12);
        assert!((learning_rate(&c, 30, 100) - 1.0).abs() < 1e-12);
        let last = learning_rate(&c, 99, 100);
        assert!((1e-4..0.01).contains(&last), "{last}");
    }

    #[test]
    fn vm_hwm_is_parsed_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t 100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB"), None);
        assert_eq!(parse_vm_hwm("VmHWM: lots"), None);
    }

    #[test]
    fn row_stats_give_loss_and_rank() {
        let (l, r) = row_stats(&[0.0, 0.0], 1);
        assert!((l - 2f64.ln()).abs() < 1e-9);
        assert_eq!(r, 1, "ties rank the lower index first");
        assert_eq!(row_stats(&[1.0, 5.0, 3.0], 2).1, 1);
        assert_eq!(row_stats(&[1.0, 5.0, 3.0], 1).1, 0);
        assert!(row_stats(&[f32::NAN, 1.0], 1).0.is_nan());
        assert_eq!(row_stats(&[1.0], 3).1, usize::MAX);
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        for (c, msg) in [
            (
                TrainConfig {
                    epochs: 0,
                    ..TrainConfig::default()
                },
                "`epochs` must be at least 1",
            ),
            (
                TrainConfig {
                    lr: -1.0,
                    ..TrainConfig::default()
                },
                "the learning rate must be positive, not -1",
            ),
            (
                TrainConfig {
                    label_smoothing: 1.0,
                    ..TrainConfig::default()
                },
                "label smoothing must be in [0, 1), not 1",
            ),
        ] {
            let e = c.validate().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid training configuration: {msg}")
            );
        }
    }
}
