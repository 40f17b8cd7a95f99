//! The search loop: a population (the top-k trained architectures by accuracy),
//! parents chosen by tournament, one child per step from the proposer, trained at
//! the trial fidelity and recorded in the run's [`Store`]; stopping at a number of
//! proposals or a time budget; then an optional retraining of the top
//! architectures at a higher fidelity, the leaderboard, `best.nas` and the report.
//!
//! Every state change goes to the store first, so `evolve --resume` continues a
//! killed run: the trial that was in flight is trained again, finished ones never.

use crate::data::{self, DatasetKind};
use crate::propose::ahead::Ahead;
use crate::propose::{
    self, Budget, Context, LlmConfig, LlmProposer, MutateProposer, OllamaBackend, OpenAiBackend,
    Proposal, ProposeError, Proposer, RandomProposer, Selection, Style, Telemetry,
};
use crate::report::{self, Entry, ReportError, RunData};
use crate::store::{
    AttemptRecord, NewTrial, SqliteStore, Stage, Store, StoreError, TrialId, TrialRecord,
    TrialResult, TrialStatus,
};
use crate::train::{self, BackendKind, Schedule, Task, TrainConfig, TrainError};
use clap::ValueEnum;
use nas_dsl::CheckedNet;
use nas_dsl::mutate::{Arch, Mutator, SeedRng, ValueSet, seed_rng};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default seed network (`models/nas/small_cnn.nas`), embedded so a search
/// starts from any directory.
pub const SEED_SOURCE: &str = include_str!("../../models/nas/small_cnn.nas");
/// Where the embedded seed comes from, for messages.
pub const SEED_FILE: &str = "models/nas/small_cnn.nas";
/// The effective configuration's file name in a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The log file's name in a run directory.
pub const LOG_FILE: &str = "evolve.log";
/// The default Ollama model.
pub const DEFAULT_MODEL: &str = "gemma3:270m";

/// Why a search could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    /// The configuration is invalid.
    #[error("invalid search configuration: {0}")]
    Config(String),
    /// The seed network does not parse or check.
    #[error("the seed network `{file}` does not pass the checker:\n{rendered}")]
    Seed {
        /// Its file.
        file: String,
        /// The rendered diagnostics.
        rendered: String,
    },
    /// The seed network does not fit the task or the budget.
    #[error("{0}")]
    SeedUnfit(String),
    /// A run of that name already exists.
    #[error("run `{}` already exists; continue it with `nas-core evolve --resume {}` or choose another `--name`", .0.display(), .0.display())]
    Exists(PathBuf),
    /// The run's record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The proposer could not start.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// Training refused the configuration.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Files around the run (config, runtime).
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

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
    /// Training images to use (synthetic: 8,000 unless set; CIFAR: all).
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
    /// The default search fidelity (with [`SearchConfig::default`]'s one epoch):
    /// batch 32, peak learning rate 0.1, cosine decay, no augmentation; on the
    /// synthetic task 8,000 training and 5,000 test images. Chosen with
    /// `nas-core fidelity` (the README has the figures).
    fn default() -> Self {
        TrainSettings {
            dataset: "synthetic".into(),
            data_dir: None,
            train_size: None,
            test_size: None,
            batch: 32,
            lr: 0.1,
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
    /// Training epochs per trial (the search fidelity).
    pub epochs: usize,
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
    /// The widths a class may take (`uniform:4..=1024`, `step:8..=512`).
    pub widths: String,
    /// Whether the mutator also changes structure (duplicate, remove, kernel).
    pub structural: bool,
    /// Seeds the proposer and the parent selection.
    pub seed: u64,
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
            epochs: 1,
            final_epochs: None,
            final_top: 3,
            population: 8,
            tournament: 3,
            max_params: None,
            max_flops: None,
            widths: "step:8..=64".into(),
            structural: false,
            seed: 0,
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
        toml::from_str(&text).map_err(|e| {
            EvolveError::Config(format!(
                "`{}`: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })
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

    /// The budget checked before training.
    pub fn budget(&self) -> Budget {
        Budget {
            max_params: self.max_params,
            max_flops: self.max_flops,
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

/// Any of the proposers, behind one type (the trait's `async fn` is not object
/// safe).
pub enum AnyProposer {
    /// The mutation baseline.
    Mutate(MutateProposer),
    /// The random-search baseline.
    Random(RandomProposer),
    /// A model served by Ollama.
    Ollama(LlmProposer<OllamaBackend>),
    /// A model behind an OpenAI-compatible endpoint.
    OpenAi(LlmProposer<OpenAiBackend>),
}

impl AnyProposer {
    /// Whether it asks a language model (slow: worth asking ahead).
    pub fn is_llm(&self) -> bool {
        matches!(self, AnyProposer::Ollama(_) | AnyProposer::OpenAi(_))
    }
}

impl Proposer for AnyProposer {
    fn name(&self) -> &'static str {
        match self {
            AnyProposer::Mutate(p) => p.name(),
            AnyProposer::Random(p) => p.name(),
            AnyProposer::Ollama(p) => p.name(),
            AnyProposer::OpenAi(p) => p.name(),
        }
    }

    async fn propose(&mut self, ctx: &Context) -> Proposal {
        match self {
            AnyProposer::Mutate(p) => p.propose(ctx).await,
            AnyProposer::Random(p) => p.propose(ctx).await,
            AnyProposer::Ollama(p) => p.propose(ctx).await,
            AnyProposer::OpenAi(p) => p.propose(ctx).await,
        }
    }
}

/// The LLM settings as the proposer's configuration.
fn llm_config(cfg: &SearchConfig, r: &Resolved, url: &str, seed: u64) -> LlmConfig {
    let mut c = LlmConfig::new(cfg.llm.model.clone(), url);
    c.style = r.style;
    c.temperature = cfg.llm.temperature;
    c.seed = seed;
    c.max_tokens = cfg.llm.max_tokens;
    c.timeout = Duration::from_secs_f64(cfg.llm.timeout.0);
    c.retries = cfg.llm.retries;
    c.repair = cfg.llm.repair;
    c.samples = cfg.llm.samples;
    c
}

/// Starts the configured proposer, seeded with `seed`. For `auto`, a quick check
/// for an Ollama server with the model decides; otherwise `mutate` is used and
/// the returned notice says why.
pub fn connect(
    cfg: &SearchConfig,
    r: &Resolved,
    rt: &tokio::runtime::Runtime,
    seed: u64,
) -> Result<(AnyProposer, Option<String>), EvolveError> {
    let mutate = || {
        AnyProposer::Mutate(MutateProposer::new(
            Mutator {
                widths: r.widths,
                structural: cfg.structural,
            },
            Selection::Best,
            seed,
        ))
    };
    let ollama_url = || {
        cfg.llm
            .url
            .clone()
            .unwrap_or_else(|| propose::ollama::DEFAULT_URL.to_string())
    };
    match cfg.proposer {
        ProposerKind::Mutate => Ok((mutate(), None)),
        ProposerKind::Random => Ok((AnyProposer::Random(RandomProposer::new(seed)), None)),
        ProposerKind::Ollama => {
            let c = llm_config(cfg, r, &ollama_url(), seed);
            let backend = rt.block_on(OllamaBackend::connect(&c))?;
            Ok((AnyProposer::Ollama(LlmProposer::new(backend, c)), None))
        }
        ProposerKind::Openai => {
            let url = cfg
                .llm
                .url
                .clone()
                .unwrap_or_else(|| propose::openai::DEFAULT_URL.to_string());
            let c = llm_config(cfg, r, &url, seed);
            let backend = rt.block_on(OpenAiBackend::connect(&c))?;
            Ok((AnyProposer::OpenAi(LlmProposer::new(backend, c)), None))
        }
        ProposerKind::Auto => {
            let url = ollama_url();
            let c = llm_config(cfg, r, &url, seed);
            // A short probe: a machine without Ollama must not wait.
            let mut probe = c.clone();
            probe.timeout = Duration::from_secs(2);
            probe.retries = 0;
            match rt.block_on(OllamaBackend::connect(&probe)) {
                Ok(_) => {
                    let backend = rt.block_on(OllamaBackend::connect(&c))?;
                    Ok((AnyProposer::Ollama(LlmProposer::new(backend, c)), None))
                }
                Err(e) => Ok((
                    mutate(),
                    Some(format!(
                        "no Ollama model `{}` at {url} ({}); using the `mutate` proposer",
                        cfg.llm.model,
                        first_line(&e.to_string())
                    )),
                )),
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

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

    /// The share of wall time spent outside training.
    pub fn overhead(&self) -> f64 {
        if self.wall_s <= 0.0 {
            0.0
        } else {
            ((self.wall_s - self.train_s) / self.wall_s).max(0.0)
        }
    }
}

/// An architecture the search produced, with its training result once known.
#[derive(Clone, Debug)]
struct Produced {
    id: TrialId,
    arch: Arc<Arch>,
    hash: String,
    accuracy: Option<f64>,
    loss: Option<f64>,
    epochs: u32,
}

/// A search over one run directory.
pub struct Evolve {
    cfg: SearchConfig,
    resolved: Resolved,
    dir: PathBuf,
    name: String,
    store: SqliteStore,
    task: Task,
    seed: Arc<Arch>,
    seed_hash: String,
    /// The proposer; away in its thread while a proposal is in flight.
    proposer: Option<AnyProposer>,
    proposer_name: &'static str,
    rt: Arc<tokio::runtime::Runtime>,
    rng: SeedRng,
    produced: Vec<Produced>,
    cache: Option<TrainCache>,
    notices: Vec<String>,
    prior_elapsed: f64,
    started: Instant,
    train_s: f64,
    trained: usize,
}

/// Training images of the synthetic task in a search, unless set.
pub const SYNTHETIC_TRAIN: usize = 8_000;
/// Test images of the synthetic task in a search, unless set.
pub const SYNTHETIC_TEST: usize = 5_000;

/// What a new or resumed search is made of.
struct Parts {
    cfg: SearchConfig,
    resolved: Resolved,
    dir: PathBuf,
    name: String,
    store: SqliteStore,
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
    let started = Instant::now();
    let outcome = train::train_on(backend, net, task, cfg, obs);
    let secs = started.elapsed().as_secs_f64();
    let failed = |error: String| TrialResult {
        status: TrialStatus::Failed,
        telemetry: serde_json::json!([]),
        accuracy: None,
        top5: None,
        test_loss: None,
        train_s: secs,
        error: Some(error),
    };
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
            };
            (result, None)
        }
        Err(TrainError::Config(m)) => (failed(m.clone()), Some(m)),
        Err(e) => (failed(e.to_string()), None),
    }
}

/// Loads the task and checks that the seed network fits it.
pub fn load_task(cfg: &SearchConfig, r: &Resolved, seed: &CheckedNet) -> Result<Task, EvolveError> {
    let (train, test) = task_sizes(cfg, r);
    let split = data::load(r.dataset, cfg.train.data_dir.as_deref(), train, test)?;
    let task = Task::new(split);
    train::check_fit(seed, &task).map_err(|e| EvolveError::SeedUnfit(e.to_string()))?;
    Ok(task)
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
        if dir.join(crate::store::sqlite::DB_FILE).exists() {
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
        let store = SqliteStore::create(&dir)?;
        Evolve::start(Parts {
            cfg,
            resolved,
            dir,
            name,
            store,
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
        let store = SqliteStore::open(dir)?;
        let json = store.meta("config_json")?.ok_or_else(|| {
            EvolveError::Store(StoreError::Corrupt {
                path: store.path().to_path_buf(),
                reason: "the run's configuration is missing".into(),
            })
        })?;
        let mut cfg: SearchConfig = serde_json::from_str(&json).map_err(|e| {
            EvolveError::Store(StoreError::Corrupt {
                path: store.path().to_path_buf(),
                reason: format!("the run's configuration does not decode: {e}"),
            })
        })?;
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
            seed,
            task,
            rt,
            proposer: (proposer, notice),
        } = parts;
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
        let mut produced = Vec::new();
        for t in trials
            .iter()
            .filter(|t| t.trial.stage == Stage::Search && t.status() != TrialStatus::Invalid)
        {
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
                        });
                    }
                }
                Err(e) => tracing::warn!(trial = t.id, "stored source does not check: {e}"),
            }
        }
        let mut notices = Vec::new();
        notices.extend(notice);
        if !store.recovered().is_empty() {
            notices.push(format!(
                "resuming: trial(s) {:?} were interrupted and will be trained again",
                store.recovered()
            ));
        }
        Ok(Evolve {
            rng: seed_rng(session_seed(cfg.seed, steps) ^ 0x0070_415E_1EC7),
            cfg,
            resolved,
            dir,
            name,
            store,
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
    pub fn store(&self) -> &SqliteStore {
        &self.store
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
                epochs: self.cfg.epochs as u32,
                propose_ms: 0.0,
                error: None,
            };
            let id = self.store.record_proposal(&[], &record)?;
            self.produced.push(Produced {
                id,
                arch: seed,
                hash: self.seed_hash.clone(),
                accuracy: None,
                loss: None,
                epochs: self.cfg.epochs as u32,
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
        // An LLM is asked for the next proposal while a trial trains; the
        // instant baselines propose when the previous trial has ended.
        let ahead_ok =
            self.cfg.llm.propose_ahead && self.proposer.as_ref().is_some_and(AnyProposer::is_llm);
        let mut step = steps;
        let mut ahead: Option<(u64, Option<String>, Ahead<AnyProposer>)> = None;
        let mut stop = None;
        loop {
            if ahead.is_none() && stop.is_none() && (queue.is_empty() || ahead_ok) {
                if step >= self.cfg.trials {
                    stop = Some(StopReason::Trials);
                } else if let Some(budget) = self.cfg.time_budget
                    && self.elapsed() >= budget.0
                {
                    stop = Some(StopReason::TimeBudget);
                } else {
                    step += 1;
                    ahead = Some(self.launch(step)?);
                }
            }
            if let Some(id) = queue.pop_front() {
                // On an error the proposal in flight is left to finish on its
                // own; nothing of it was recorded.
                self.train_trial(id, obs)?;
                continue;
            }
            match ahead.take() {
                Some((step, parent, flight)) => {
                    if let Some(id) = self.land(step, parent, flight, obs)? {
                        queue.push_back(id);
                    }
                }
                None => break,
            }
        }
        let stopped = stop.unwrap_or(StopReason::Trials);
        tracing::info!(?stopped, "search stage ends");
        self.final_stage(obs)?;
        self.save_elapsed()?;
        let mut run = RunData::load(&self.name, &self.store)?;
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
            leaderboard,
        })
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
                    epochs: self.cfg.epochs as u32,
                    propose_ms,
                    error: None,
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
                    epochs: self.cfg.epochs as u32,
                    propose_ms,
                    error: Some(
                        last.and_then(|a| a.diagnostics.clone())
                            .unwrap_or_else(|| format!("rejected: {outcome}")),
                    ),
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
                    epochs: self.cfg.epochs as u32,
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

    fn trial(&self, id: TrialId) -> Result<TrialRecord, EvolveError> {
        self.store
            .trials()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| {
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
        let rec = self.trial(id)?;
        let net = match nas_dsl::check_str(&rec.trial.source)
            .ok()
            .and_then(|n| n.into_iter().next())
        {
            Some(net) => net,
            None => {
                self.store.start_trial(id)?;
                let result = TrialResult {
                    status: TrialStatus::Failed,
                    telemetry: serde_json::json!([]),
                    accuracy: None,
                    top5: None,
                    test_loss: None,
                    train_s: 0.0,
                    error: Some("the stored source does not pass the checker".into()),
                };
                self.store.finish_trial(id, &result)?;
                return Ok(());
            }
        };
        // Nothing over budget is trained, whatever put it in the store.
        if let Err(e) = check_seed_budget(&net, &self.cfg.budget()) {
            self.store.start_trial(id)?;
            let result = TrialResult {
                status: TrialStatus::Failed,
                telemetry: serde_json::json!([]),
                accuracy: None,
                top5: None,
                test_loss: None,
                train_s: 0.0,
                error: Some(format!("over budget: {e}")),
            };
            self.store.finish_trial(id, &result)?;
            return Ok(());
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
        let cfg = self
            .cfg
            .train_config(&self.resolved, rec.trial.epochs as usize);
        let key = format!(
            "{}/{}/{}/{}",
            rec.trial.hash, cfg.epochs, cfg.seed, self.task.name
        );
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|m| m.get(&key).cloned()));
        let result = match cached {
            Some(r) => r,
            None => {
                let (result, fatal) =
                    train_to_result(self.resolved.backend, &net, &self.task, &cfg, obs);
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
                result
            }
        };
        self.store.finish_trial(id, &result)?;
        if let Some(p) = self.produced.iter_mut().find(|p| p.id == id) {
            p.accuracy = result.accuracy;
            p.loss = result.test_loss;
        }
        self.save_elapsed()?;
        let rec = self.trial(id)?;
        tracing::info!(
            trial = id,
            status = %rec.status(),
            accuracy = rec.accuracy,
            train_s = result.train_s,
            "trial ends"
        );
        let best = (rec.trial.stage == Stage::Search)
            .then(|| self.best_accuracy())
            .flatten();
        obs.trial_finished(&rec, best);
        Ok(())
    }

    /// Retrains the top `final_top` architectures for `final_epochs` (once each).
    fn final_stage(&mut self, obs: &mut dyn SearchObserver) -> Result<(), EvolveError> {
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
        for id in queued {
            self.train_trial(id, obs)?;
        }
        Ok(())
    }
}

/// Loads a run's record for the report (without touching an interrupted trial,
/// so a report can be made while the run goes on).
pub fn load_run(dir: &Path) -> Result<RunData, EvolveError> {
    let store = SqliteStore::inspect(dir)?;
    let cfg = store
        .meta("config_json")?
        .and_then(|j| serde_json::from_str::<SearchConfig>(&j).ok());
    let name = cfg
        .as_ref()
        .and_then(|c| c.name.clone())
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());
    let mut run = RunData::load(&name, &store)?;
    if let Some(cfg) = &cfg {
        run.noise = crate::fidelity::noise_near(cfg, dir);
    }
    Ok(run)
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // each test varies one field of the default
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(Seconds::parse("90").unwrap(), Seconds(90.0));
        assert_eq!(Seconds::parse("90s").unwrap(), Seconds(90.0));
        assert_eq!(Seconds::parse("3m").unwrap(), Seconds(180.0));
        assert_eq!(Seconds::parse("1h30m").unwrap(), Seconds(5400.0));
        assert_eq!(Seconds::parse("2.5m").unwrap(), Seconds(150.0));
        assert!(Seconds::parse("soon").is_err());
        assert!(Seconds::parse("0").is_err());
        assert!(Seconds::parse("").is_err());
        assert_eq!(Seconds(180.0).to_string(), "3m");
        assert_eq!(Seconds(7200.0).to_string(), "2h");
        assert_eq!(Seconds(90.0).to_string(), "90s");
    }

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("5000"), Ok(5000));
        assert_eq!(parse_count("100k"), Ok(100_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("50_000"), Ok(50_000));
        assert!(parse_count("lots").is_err());
        assert!(parse_count("-3").is_err());
    }

    #[test]
    fn config_round_trips_through_toml_and_rejects_unknown_keys() {
        let mut cfg = SearchConfig::default();
        cfg.name = Some("x".into());
        let text = cfg.to_toml().unwrap();
        assert_eq!(toml::from_str::<SearchConfig>(&text).unwrap(), cfg);
        cfg.time_budget = None;
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<SearchConfig>(&json).unwrap(), cfg);
        cfg.max_params = Some(10_000);
        cfg.final_epochs = Some(3);
        let text = cfg.to_toml().unwrap();
        let back: SearchConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        let e = toml::from_str::<SearchConfig>("trails = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field `trails`"), "{e}");
        let partial: SearchConfig =
            toml::from_str("trials = 3\ntime_budget = \"2m\"\n[train]\nbatch = 32\n").unwrap();
        assert_eq!(partial.trials, 3);
        assert_eq!(partial.time_budget, Some(Seconds(120.0)));
        assert_eq!(partial.train.batch, 32);
        assert_eq!(partial.train.dataset, "synthetic");
    }

    #[test]
    fn resolve_names_the_bad_choice() {
        let mut cfg = SearchConfig::default();
        cfg.train.dataset = "imagenet".into();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(
            e.contains("unknown dataset `imagenet`; expected one of: synthetic, cifar10, cifar100"),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.llm.style = "poem".into();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(
            e.contains(
                "unknown prompt style `poem`; expected one of: chat, completion, structured"
            ),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.train.schedule = "step".into();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(
            e.contains("unknown schedule `step`; expected one of: cosine, one-cycle"),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.widths = "wide".into();
        assert!(
            cfg.resolve()
                .unwrap_err()
                .to_string()
                .contains("`widths = \"wide\"`")
        );
        let mut cfg = SearchConfig::default();
        cfg.name = Some("../x".into());
        assert!(cfg.resolve().is_err());
        assert!(SearchConfig::default().resolve().is_ok());
    }

    #[test]
    fn unknown_proposers_are_named() {
        let e = ProposerKind::parse("gpt").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid search configuration: unknown proposer `gpt`; expected one of: auto, ollama, openai, mutate, random"
        );
        assert_eq!(
            ProposerKind::parse(" Random ").unwrap(),
            ProposerKind::Random
        );
    }

    #[test]
    fn the_embedded_seed_checks_and_budgets_are_enforced() {
        let cfg = SearchConfig::default();
        let net = seed_network(&cfg).unwrap();
        assert_eq!(net.name(), "SmallCnn");
        let budget = Budget {
            max_params: Some(1000),
            max_flops: None,
        };
        let e = check_seed_budget(&net, &budget).unwrap_err().to_string();
        assert!(
            e.contains("has 24,458 parameters, more than `--max-params 1,000`"),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.net = Some("Nope".into());
        let e = seed_network(&cfg).unwrap_err().to_string();
        assert!(e.contains("no net `Nope`"), "{e}");
    }

    #[test]
    fn default_names_look_like_timestamps() {
        let n = default_name("evolve");
        assert_eq!(n.len(), "evolve-20250101-120000".len(), "{n}");
        assert!(n.starts_with("evolve-20"));
    }
}
