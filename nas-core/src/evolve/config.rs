//! What a search is: its settings (saved with the run as `config.toml`), their
//! defaults (the no-argument search), the checks and the named choices resolved.

use super::asha::Asha;
use super::{DEFAULT_MODEL, EvolveError};
use crate::data::DatasetKind;
use crate::propose::{Budget, LlmConfig, Style};
use crate::store::Storage;
use crate::train::{BackendKind, Schedule, TrainConfig};
use clap::ValueEnum;
use nas_dsl::mutate::ValueSet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Which proposer a search uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProposerKind {
    /// `ollama` when a server with the model answers at the URL, else `mutate`.
    Auto,
    /// A model served by Ollama.
    Ollama,
    /// A model behind an OpenAI-compatible endpoint.
    Openai,
    /// One mutation of a tournament-selected parent.
    Mutate,
    /// Random widths over the seed's width classes.
    Random,
}

impl ProposerKind {
    /// The name on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposerKind::Auto => "auto",
            ProposerKind::Ollama => "ollama",
            ProposerKind::Openai => "openai",
            ProposerKind::Mutate => "mutate",
            ProposerKind::Random => "random",
        }
    }

    /// Parses a name, with a clear error listing the choices.
    pub fn parse(name: &str) -> Result<ProposerKind, EvolveError> {
        parse_choice("proposer", name.trim())
    }
}

/// Parses a named choice (case-insensitive), or an error naming the value and
/// listing the choices, which come from the type itself.
fn parse_choice<T: ValueEnum>(what: &str, value: &str) -> Result<T, EvolveError> {
    T::from_str(value, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        EvolveError::Config(format!(
            "unknown {what} `{value}`; expected one of: {}",
            names.join(", ")
        ))
    })
}

impl fmt::Display for ProposerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A duration written `90`, `90s`, `3m`, `1h30m` (seconds when no unit).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    /// Parses `90`, `90s`, `2.5m`, `1h30m`.
    pub fn parse(text: &str) -> Result<Seconds, String> {
        let t = text.trim();
        let bad = || format!("`{text}` is not a duration; write e.g. `90s`, `3m` or `1h30m`");
        if t.is_empty() {
            return Err(bad());
        }
        let mut total = 0.0;
        let mut number = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                _ => return Err(bad()),
            };
            let v: f64 = number.parse().map_err(|_| bad())?;
            total += v * unit;
            number.clear();
        }
        if !number.is_empty() {
            total += number.parse::<f64>().map_err(|_| bad())?;
        }
        if !total.is_finite() || total <= 0.0 {
            return Err(format!("the duration `{text}` must be positive"));
        }
        Ok(Seconds(total))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.fract() == 0.0 && s >= 60.0 && s % 60.0 == 0.0 {
            if s % 3600.0 == 0.0 {
                write!(f, "{}h", s / 3600.0)
            } else {
                write!(f, "{}m", s / 60.0)
            }
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n > 0.0 && n.is_finite() => Ok(Seconds(n)),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "the duration {n} must be positive"
            ))),
            Raw::Text(t) => Seconds::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// `Option<Seconds>` written as a duration or `"none"`, so a search without a
/// time budget keeps none when its saved configuration is read back.
mod opt_seconds {
    use super::Seconds;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Seconds>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Seconds>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if matches!(t.trim(), "none" | "off") => Ok(None),
            Raw::Text(t) => Seconds::parse(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Raw::Number(n) if n > 0.0 && n.is_finite() => Ok(Some(Seconds(n))),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "the duration {n} must be positive (write \"none\" for no limit)"
            ))),
        }
    }
}

/// Parses a count written `5000`, `100k`, `1.5M` or `2G` (powers of 1,000).
pub fn parse_count(text: &str) -> Result<u64, String> {
    let t = text.trim().replace(['_', ','], "");
    let (digits, factor) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t.as_str(), 1.0),
    };
    match digits.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * factor < 1.8e19 => {
            Ok((v * factor).round() as u64)
        }
        _ => Err(format!(
            "`{text}` is not a count; write e.g. `50000`, `100k` or `1.5M`"
        )),
    }
}

/// How candidates are trained (identical for every trial of a search, so accuracy
/// differences come from the architecture).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    /// `synthetic`, `cifar10` or `cifar100`.
    pub dataset: String,
    /// The extracted CIFAR directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Training images to use (synthetic: 16,000 unless set; CIFAR: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_size: Option<usize>,
    /// Test images to use (synthetic: 5,000 unless set; CIFAR: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_size: Option<usize>,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// `cosine` or `one-cycle`.
    pub schedule: String,
    /// Seeds weights, shuffling and augmentation (the same for every trial).
    pub seed: u64,
    /// `flex` or `cuda`.
    pub backend: String,
    /// Crop-and-flip augmentation (off by default: a one-epoch trial sees each
    /// image once, and augmentation only slows its learning).
    pub augment: bool,
}

impl Default for TrainSettings {
    /// The default search fidelity (with [`SearchConfig::default`]'s three epochs):
    /// batch 32, peak learning rate 0.2, cosine decay, no augmentation; on the
    /// synthetic task 16,000 training and 5,000 test images. Chosen with
    /// `nas-core fidelity` (the README has the figures).
    fn default() -> Self {
        TrainSettings {
            dataset: "synthetic".into(),
            data_dir: None,
            train_size: None,
            test_size: None,
            batch: 32,
            lr: 0.2,
            schedule: "cosine".into(),
            seed: 0,
            backend: "flex".into(),
            augment: false,
        }
    }
}

/// How the LLM proposers reach their model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    /// The server URL (default: Ollama's or llama-server's local address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The model's name on the server.
    pub model: String,
    /// `structured`, `chat` or `completion`.
    pub style: String,
    /// Sampling temperature.
    pub temperature: f32,
    /// Most tokens per answer.
    pub max_tokens: u32,
    /// Longest wait for one answer.
    pub timeout: Seconds,
    /// Retries after transport failures.
    pub retries: u32,
    /// Whether a rejected answer gets one repair round.
    pub repair: bool,
    /// Answers sampled per proposal before the repair round (the first
    /// acceptable one is kept).
    pub samples: u32,
    /// Whether the next proposal is asked for while a trial trains (it sees the
    /// results finished so far); otherwise only after the trial ends.
    pub propose_ahead: bool,
}

impl Default for LlmSettings {
    fn default() -> Self {
        let d = LlmConfig::new(DEFAULT_MODEL, "");
        LlmSettings {
            url: None,
            model: DEFAULT_MODEL.into(),
            style: d.style.as_str().into(),
            temperature: d.temperature,
            max_tokens: d.max_tokens,
            timeout: Seconds(d.timeout.as_secs_f64()),
            retries: d.retries,
            repair: d.repair,
            samples: d.samples,
            propose_ahead: true,
        }
    }
}

/// Everything that defines a search; saved with the run (`config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// The run's name (its directory under `runs_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where run directories go.
    pub runs_dir: PathBuf,
    /// Who proposes the children.
    pub proposer: ProposerKind,
    /// The seed network's file (default: the embedded `models/nas/small_cnn.nas`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_file: Option<PathBuf>,
    /// Which net of the seed file (default: the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    /// Proposals after the seed network.
    pub trials: u64,
    /// Stop proposing once the search has run this long (`"none"`: no limit).
    #[serde(with = "opt_seconds")]
    pub time_budget: Option<Seconds>,
    /// Training epochs per trial (the search fidelity of `scheduler = "flat"`).
    pub epochs: usize,
    /// How search trials are trained: `flat` (every trial for `epochs`) or
    /// `asha` (asynchronous successive halving: new trials train for
    /// `min_epochs`, the top `1/eta` of each rung continue from their
    /// checkpoint to `eta` times as many epochs, up to `max_epochs`).
    pub scheduler: String,
    /// ASHA's lowest rung in epochs (default: `epochs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_epochs: Option<usize>,
    /// ASHA's highest rung in epochs (default: `min_epochs · eta²`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    /// ASHA's reduction factor: the top `1/eta` of a rung are promoted.
    pub eta: u32,
    /// Stop queueing search training once this many epochs (summed over
    /// trials and rungs) are queued: equal compute for comparisons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch_budget: Option<u64>,
    /// Retrain the top architectures for this many epochs at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_epochs: Option<usize>,
    /// How many architectures the final stage retrains.
    pub final_top: usize,
    /// The population: the top-k trained architectures by accuracy.
    pub population: usize,
    /// Tournament size for choosing a parent from the population.
    pub tournament: usize,
    /// Most learnable parameters of a candidate (checked before training).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_params: Option<u64>,
    /// Most multiply-accumulates per sample (checked before training).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_flops: Option<u64>,
    /// Most training memory of a candidate in bytes at the batch size (the
    /// checker's estimate; default: half the memory available, shared by the
    /// jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    /// The widths a class may take (`uniform:4..=1024`, `step:8..=512`).
    pub widths: String,
    /// Whether the mutator also changes structure (duplicate, remove, kernel).
    pub structural: bool,
    /// Seeds the proposer and the parent selection.
    pub seed: u64,
    /// Trials trained at once, each in a worker process on its share of the CPU
    /// threads (0, the default: one per core, or one for a GPU backend; 1: in
    /// the coordinator's process, reproducible for a fixed seed).
    pub jobs: usize,
    /// A shared PostgreSQL store (`postgres://…`) instead of the run
    /// directory's SQLite file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Training settings.
    pub train: TrainSettings,
    /// LLM settings.
    pub llm: LlmSettings,
}

impl Default for SearchConfig {
    /// The no-argument search: sized to finish in about three minutes on 2 cores.
    fn default() -> Self {
        SearchConfig {
            name: None,
            runs_dir: PathBuf::from("runs"),
            proposer: ProposerKind::Auto,
            seed_file: None,
            net: None,
            trials: 20,
            time_budget: Some(Seconds(150.0)),
            epochs: 3,
            scheduler: "flat".into(),
            min_epochs: None,
            max_epochs: None,
            eta: 3,
            epoch_budget: None,
            final_epochs: None,
            final_top: 3,
            population: 8,
            tournament: 3,
            max_params: None,
            max_flops: None,
            max_memory: None,
            widths: "step:8..=64".into(),
            structural: false,
            seed: 0,
            jobs: 0,
            storage: None,
            train: TrainSettings::default(),
            llm: LlmSettings::default(),
        }
    }
}

impl SearchConfig {
    /// Reads a TOML configuration file (unknown keys are errors).
    pub fn from_toml_file(path: &Path) -> Result<SearchConfig, EvolveError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvolveError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SearchConfig::from_toml_str(&text, &path.display().to_string())
    }

    /// Reads a configuration from TOML text; `origin` (a file name) starts the
    /// error message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<SearchConfig, EvolveError> {
        toml::from_str(text)
            .map_err(|e| EvolveError::Config(format!("`{origin}`: {}", e.to_string().trim_end())))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String, EvolveError> {
        toml::to_string_pretty(self).map_err(|e| EvolveError::Config(e.to_string()))
    }

    /// Checks the values and converts the named choices.
    pub fn resolve(&self) -> Result<Resolved, EvolveError> {
        let bad = |m: String| Err(EvolveError::Config(m));
        let dataset: DatasetKind = parse_choice("dataset", &self.train.dataset)?;
        let schedule: Schedule = parse_choice("schedule", &self.train.schedule)?;
        let backend: BackendKind = parse_choice("backend", &self.train.backend)?;
        let style: Style = parse_choice("prompt style", &self.llm.style)?;
        let widths: ValueSet = self
            .widths
            .parse()
            .map_err(|e| EvolveError::Config(format!("`widths = \"{}\"`: {e}", self.widths)))?;
        if self.epochs == 0 {
            return bad("`epochs` must be at least 1".into());
        }
        self.asha()?;
        if self.epoch_budget == Some(0) {
            return bad("`epoch_budget` must be at least 1".into());
        }
        if self.final_epochs == Some(0) {
            return bad("`final_epochs` must be at least 1".into());
        }
        if self.population == 0 || self.tournament == 0 {
            return bad("`population` and `tournament` must be at least 1".into());
        }
        if !(1..=16).contains(&self.llm.samples) {
            return bad(format!(
                "`llm.samples` must be between 1 and 16, not {}",
                self.llm.samples
            ));
        }
        if self.train.batch == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if !(self.train.lr.is_finite() && self.train.lr > 0.0) {
            return bad(format!(
                "the learning rate must be positive, not {}",
                self.train.lr
            ));
        }
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        if let Some(url) = &self.storage
            && !matches!(Storage::parse(url), Ok(Storage::Postgres { .. }))
        {
            return bad(format!(
                "`storage = \"{}\"`: expected a PostgreSQL URL (`postgres://USER@HOST/DB`); without it a run keeps its record in its directory",
                crate::store::postgres::redact(url)
            ));
        }
        Ok(Resolved {
            dataset,
            schedule,
            backend,
            style,
            widths,
        })
    }

    /// The training configuration at `epochs`.
    pub fn train_config(&self, r: &Resolved, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch: self.train.batch,
            lr: self.train.lr,
            schedule: r.schedule,
            seed: self.train.seed,
            augment: if self.train.augment {
                crate::data::augment::Augment::STANDARD
            } else {
                crate::data::augment::Augment::NONE
            },
            ..TrainConfig::default()
        }
    }

    /// The multi-fidelity schedule of `scheduler = "asha"` (none: `flat`).
    pub fn asha(&self) -> Result<Option<Asha>, EvolveError> {
        match self.scheduler.trim() {
            "flat" => {
                if self.min_epochs.is_some() || self.max_epochs.is_some() {
                    return Err(EvolveError::Config(
                        "`min_epochs` and `max_epochs` need `scheduler = \"asha\"` (`--scheduler asha`); a flat search trains every trial for `epochs`".into(),
                    ));
                }
                Ok(None)
            }
            "asha" => {
                let min = self.min_epochs.unwrap_or(self.epochs);
                let eta = self.eta;
                let max = self.max_epochs.unwrap_or_else(|| {
                    min.saturating_mul(eta as usize)
                        .saturating_mul(eta as usize)
                });
                let fit = |v: usize, what: &str| {
                    u32::try_from(v)
                        .map_err(|_| EvolveError::Config(format!("`{what} {v}` is too large")))
                };
                Asha::new(fit(min, "--min-epochs")?, fit(max, "--max-epochs")?, eta)
                    .map(Some)
                    .map_err(EvolveError::Config)
            }
            other => Err(EvolveError::Config(format!(
                "unknown scheduler `{other}`; expected one of: flat, asha"
            ))),
        }
    }

    /// The epochs a new search trial trains for (ASHA: the lowest rung).
    pub fn first_epochs(&self) -> usize {
        match self.asha() {
            Ok(Some(a)) => a.min_epochs as usize,
            _ => self.epochs,
        }
    }

    /// The training of a stored trial: its epochs, and in an ASHA search the
    /// schedule over the top rung (so a segment continues exactly).
    pub fn trial_train_config(&self, r: &Resolved, trial: &crate::store::NewTrial) -> TrainConfig {
        let mut cfg = self.train_config(r, trial.epochs as usize);
        if trial.stage == crate::store::Stage::Search
            && let Ok(Some(a)) = self.asha()
        {
            cfg.schedule_epochs = Some((a.max_epochs as usize).max(cfg.epochs));
        }
        cfg
    }

    /// Trials trained at once: `jobs`, or for 0 one per core (flex, tch) or
    /// one (a GPU backend).
    pub fn jobs(&self, r: &Resolved) -> usize {
        match self.jobs {
            0 if r.backend == BackendKind::Cuda => 1,
            0 => cores(),
            n => n,
        }
    }

    /// The budget checked before training.
    pub fn budget(&self) -> Budget {
        Budget {
            max_params: self.max_params,
            max_flops: self.max_flops,
            max_memory: self.max_memory.or_else(|| {
                let backend =
                    parse_choice("backend", &self.train.backend).unwrap_or(BackendKind::Flex);
                default_max_memory(backend, self.jobs)
            }),
            batch: self.train.batch as u64,
        }
    }
}

/// A run name must be one plain path component.
fn check_name(name: &str) -> Result<(), EvolveError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(EvolveError::Config(format!(
            "the run name `{name}` must be letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// The typed choices of a [`SearchConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resolved {
    /// The task.
    pub dataset: DatasetKind,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// The Burn backend.
    pub backend: BackendKind,
    /// The prompt style.
    pub style: Style,
    /// The widths a class may take.
    pub widths: ValueSet,
}

/// A default run name from the current UTC time: `evolve-20250101-120000`.
pub fn default_name(prefix: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{prefix}-{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Training images of the synthetic task in a search, unless set.
pub const SYNTHETIC_TRAIN: usize = 16_000;
/// Test images of the synthetic task in a search, unless set.
pub const SYNTHETIC_TEST: usize = 5_000;

/// The training and test sizes a configuration uses (the synthetic task's
/// defaults filled in).
pub fn task_sizes(cfg: &SearchConfig, r: &Resolved) -> (Option<usize>, Option<usize>) {
    if r.dataset == DatasetKind::Synthetic {
        (
            Some(cfg.train.train_size.unwrap_or(SYNTHETIC_TRAIN)),
            Some(cfg.train.test_size.unwrap_or(SYNTHETIC_TEST)),
        )
    } else {
        (cfg.train.train_size, cfg.train.test_size)
    }
}

/// Writes the sizes the task resolves to into the configuration, so the saved
/// configuration states them.
pub fn fill_task_sizes(cfg: &mut SearchConfig, r: &Resolved) {
    let (train, test) = task_sizes(cfg, r);
    cfg.train.train_size = train;
    cfg.train.test_size = test;
}

/// The default memory budget of one trial: half the memory training can use,
/// shared by `jobs` trainings at once (0: the backend's default count, as
/// [`SearchConfig::jobs`] counts it).
///
/// - On the CPU (`flex`, `tch`): half of the RAM available now (`MemAvailable`).
/// - On CUDA: half of the device memory of the smallest GPU this process sees
///   (`nvidia-smi`, limited to `CUDA_VISIBLE_DEVICES` when set), read once per
///   process. Every job counts against it as if all shared one GPU, so the
///   coordinator and each worker (which sees only its own GPU) agree.
///
/// None where that memory cannot be read: then no trial is refused for memory
/// unless `--max-memory` is given.
pub fn default_max_memory(backend: BackendKind, jobs: usize) -> Option<u64> {
    let (memory, default_jobs) = match backend {
        BackendKind::Cuda => (gpu_memory()?, 1),
        BackendKind::Flex | BackendKind::Tch => (available_ram()?, cores()),
    };
    let jobs = if jobs == 0 { default_jobs } else { jobs } as u64;
    Some(memory / 2 / jobs.max(1))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available_ram() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// The total memory of the smallest visible GPU, in bytes (read once).
fn gpu_memory() -> Option<u64> {
    static MEMORY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(|| {
        let mut cmd = std::process::Command::new("nvidia-smi");
        cmd.args(["--query-gpu=memory.total", "--format=csv,noheader,nounits"]);
        if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES")
            && !visible.trim().is_empty()
        {
            cmd.args(["-i", visible.trim()]);
        }
        let out = cmd.output().ok().filter(|o| o.status.success());
        let memory = out.and_then(|o| smallest_gpu_memory(&String::from_utf8_lossy(&o.stdout)));
        if memory.is_none() {
            tracing::warn!(
                "could not read the GPU's memory with `nvidia-smi`: no default memory budget; set `--max-memory`"
            );
        }
        memory
    })
}

/// The smallest of the per-GPU totals `nvidia-smi --query-gpu=memory.total
/// --format=csv,noheader,nounits` prints (MiB, one line per GPU), in bytes.
pub fn smallest_gpu_memory(nvidia_smi: &str) -> Option<u64> {
    nvidia_smi
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse::<u64>().ok().map(|mib| mib << 20))
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .min()
}

/// Reads a size in bytes: `512M`, `4G`, `1.5GiB`, `2000000` (K, M, G, T are
/// powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim().replace('_', "");
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (digits, factor) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1024f64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1024f64.powi(2)),
        Some('g' | 'G') => (&t[..t.len() - 1], 1024f64.powi(3)),
        Some('t' | 'T') => (&t[..t.len() - 1], 1024f64.powi(4)),
        _ => (t, 1.0),
    };
    match digits.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * factor < 1.8e19 => Ok((v * factor).round() as u64),
        _ => Err(format!(
            "`{text}` is not a size; write e.g. `512M`, `4G` or `1.5GiB`"
        )),
    }
}

/// The CPU cores this process may use (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::{BackendKind, default_max_memory, smallest_gpu_memory};

    #[test]
    fn the_gpu_budget_is_the_smallest_gpu_and_unreadable_output_is_none() {
        // `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits` on two GPUs.
        assert_eq!(smallest_gpu_memory("81559\n40960\n"), Some(40960 << 20));
        assert_eq!(smallest_gpu_memory(" 24576 \n"), Some(24576 << 20));
        assert_eq!(smallest_gpu_memory(""), None);
        assert_eq!(smallest_gpu_memory("[N/A]\n"), None);
        assert_eq!(smallest_gpu_memory("81559\nNo devices were found\n"), None);
    }

    #[test]
    fn the_cpu_budget_is_half_the_available_ram_shared_by_the_jobs() {
        let one = default_max_memory(BackendKind::Flex, 1).unwrap_or(0);
        let two = default_max_memory(BackendKind::Flex, 2).unwrap_or(0);
        assert!(one > 0, "MemAvailable is readable on Linux");
        // The available memory moves a little between the two reads.
        let ratio = one as f64 / two as f64;
        assert!((1.8..2.2).contains(&ratio), "{one} vs {two}");
    }
}
