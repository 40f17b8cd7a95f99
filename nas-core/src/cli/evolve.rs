//! `nas-core evolve`: runs (or with `--resume`, continues) a search and ends with
//! the leaderboard, `best.nas` and `report.html` in `runs/<name>/`. Also owns the
//! search options shared with `compare`, and the progress reporter (indicatif
//! bars on a terminal outside CI, one plain line per finished trial always).

use crate::evolve::{
    Evolve, EvolveError, LOG_FILE, ProposerKind, SearchConfig, SearchObserver, Seconds, parse_count,
};
use crate::report;
use crate::store::{TrialRecord, TrialStatus};
use crate::train::{EpochStats, Observer};
use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nas_dsl::summary::thousands;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

/// Copies each flag that was given onto its field of the configuration.
macro_rules! set {
    ($args:ident, $c:ident; $($field:ident => $($target:ident).+),* $(,)?) => {
        $(if let Some(v) = &$args.$field { $c.$($target).+ = v.clone(); })*
    };
}

/// Copies each flag that was given onto its optional field of the configuration.
macro_rules! set_some {
    ($args:ident, $c:ident; $($field:ident => $($target:ident).+),* $(,)?) => {
        $(if let Some(v) = &$args.$field { $c.$($target).+ = Some(v.clone()); })*
    };
}

/// Lists each flag that was given.
macro_rules! given_flags {
    ($args:ident, $given:ident; $($field:ident => $flag:literal),* $(,)?) => {
        $(if $args.$field.is_some() { $given.push($flag); })*
    };
}

fn proposer_arg(s: &str) -> Result<ProposerKind, String> {
    ProposerKind::parse(s).map_err(|e| match e {
        EvolveError::Config(m) => m,
        other => other.to_string(),
    })
}

fn duration_arg(s: &str) -> Result<Seconds, String> {
    Seconds::parse(s)
}

/// The task, the seed network, the width grid and the training fidelity: the
/// options a search and a fidelity check share.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TaskArgs {
    /// The seed network's `.nas` file [default: the embedded models/nas/small_cnn.nas].
    #[arg(long, value_name = "FILE.nas")]
    pub seed_file: Option<PathBuf>,

    /// Which net of the seed file [default: the first].
    #[arg(long)]
    pub net: Option<String>,

    /// Training epochs per trial (the search fidelity) [default: 3].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Most parameters of a candidate, e.g. `50k` (rejected before training).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_params: Option<u64>,

    /// Most FLOPs per sample of a candidate, e.g. `5M` (rejected before training).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_flops: Option<u64>,

    /// Most training memory of a candidate at the batch size, e.g. `2G` (the
    /// checker's estimate; rejected before training) [default: half the
    /// memory available, shared by the jobs].
    #[arg(long, value_name = "SIZE", value_parser = crate::evolve::parse_bytes)]
    pub max_memory: Option<u64>,

    /// Widths a class may take: `uniform:MIN..=MAX` or `step:STEP..=MAX`
    /// [default: step:8..=64].
    #[arg(long, value_name = "SET")]
    pub widths: Option<String>,

    /// Let the mutator change structure too (duplicate, remove, kernel size).
    #[arg(long)]
    pub structural: bool,

    /// The task: synthetic, cifar10 or cifar100 [default: synthetic]. The
    /// synthetic task is built in memory, no download: 32x32 RGB images of ten
    /// shape classes (disc, ring, square, square outline, triangle, plus, cross,
    /// striped disc, checkered disc, blob pair) at random positions, sizes,
    /// rotations and colours on noisy gradient backgrounds, half with a
    /// distracting line; the same images on every machine.
    #[arg(long)]
    pub dataset: Option<String>,

    /// The extracted CIFAR binary archive (needed for CIFAR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Training images per trial [default: 16000 synthetic, all of CIFAR].
    #[arg(long, value_name = "N")]
    pub train_size: Option<usize>,

    /// Test images per trial [default: 5000 synthetic, all of CIFAR].
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,

    /// Training batch size [default: 32].
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,

    /// Peak learning rate [default: 0.2].
    #[arg(long)]
    pub lr: Option<f64>,

    /// Learning-rate schedule: cosine or one-cycle [default: cosine].
    #[arg(long)]
    pub schedule: Option<String>,

    /// Seeds weights, shuffling and augmentation of every trial [default: 0].
    #[arg(long, value_name = "S")]
    pub train_seed: Option<u64>,

    /// The Burn backend: flex, cuda or tch (each but flex needs its cargo feature) [default: flex].
    #[arg(long)]
    pub backend: Option<String>,

    /// Turn on crop-and-flip augmentation (off by default: a one-epoch trial
    /// sees each image once; it helps longer trials).
    #[arg(long, conflicts_with = "no_augment")]
    pub augment: bool,

    /// Turn off crop-and-flip augmentation (overrides a `--config` file).
    #[arg(long)]
    pub no_augment: bool,
}

/// Search options: each overrides the `--config` file, which overrides the
/// defaults (the no-argument search finishes in about three minutes on 2 cores).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SearchArgs {
    /// Read the search settings from a TOML file (flags override it).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// The task, the seed and the fidelity.
    #[command(flatten)]
    pub task: TaskArgs,

    /// The run's name: its directory under `--runs-dir` (default: the time).
    #[arg(long)]
    pub name: Option<String>,

    /// Where run directories go [default: runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,

    /// Keep the run's record in a shared PostgreSQL database
    /// (`postgres://USER@HOST/DB`; the password in `PGPASSWORD`) that workers on
    /// other machines serve (`nas-core worker`); run `nas-core db init URL`
    /// once first [default: the run directory's own SQLite file].
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,

    /// Who proposes children: auto (ollama when a server answers, else mutate),
    /// ollama, openai, mutate or random [default: auto].
    #[arg(long, value_parser = proposer_arg)]
    pub proposer: Option<ProposerKind>,

    /// Proposals after the seed network [default: 20].
    #[arg(long, value_name = "N")]
    pub trials: Option<u64>,

    /// How search trials are trained: `flat` (each for `--epochs`) or `asha`
    /// (asynchronous successive halving: new trials train `--min-epochs`, the
    /// top 1/`--eta` of each rung continue from their checkpoint to `--eta`
    /// times as many epochs, up to `--max-epochs`) [default: flat].
    #[arg(long, value_parser = ["flat", "asha"])]
    pub scheduler: Option<String>,

    /// ASHA's lowest rung in epochs [default: `--epochs`].
    #[arg(long, value_name = "R")]
    pub min_epochs: Option<usize>,

    /// ASHA's highest rung in epochs [default: min-epochs × eta²].
    #[arg(long, value_name = "M")]
    pub max_epochs: Option<usize>,

    /// ASHA's reduction factor: the top 1/eta of each rung are promoted [default: 3].
    #[arg(long, value_name = "E")]
    pub eta: Option<u32>,

    /// Stop queueing search training once this many epochs (over all trials
    /// and rungs) are queued: equal compute for comparing schedulers.
    #[arg(long, value_name = "EPOCHS")]
    pub epoch_budget: Option<u64>,

    /// Stop proposing after this long, e.g. `90s`, `3m`, `1h` [default: 150s].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub time_budget: Option<Seconds>,

    /// Stop only at `--trials`, with no time budget.
    #[arg(long, conflicts_with = "time_budget")]
    pub no_time_budget: bool,

    /// Retrain the top architectures for N epochs at the end.
    #[arg(long, value_name = "N")]
    pub final_epochs: Option<usize>,

    /// How many architectures the final stage retrains [default: 3].
    #[arg(long, value_name = "K")]
    pub final_top: Option<usize>,

    /// Population size: the top-k trained architectures [default: 8].
    #[arg(long, value_name = "K")]
    pub population: Option<usize>,

    /// Tournament size for choosing a parent [default: 3].
    #[arg(long, value_name = "K")]
    pub tournament: Option<usize>,

    /// Seeds the proposer and parent selection [default: 0].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Trials trained at once on this machine, each in a worker process of its
    /// own on its share of the CPU threads; the search is asynchronous (a freed
    /// worker gets the next proposal, made from the results finished so far);
    /// 0: one per core. 1 trains in this process and reproduces a run exactly
    /// for a fixed seed [default: 0].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    pub jobs: Option<usize>,

    /// The LLM server's URL [default: http://127.0.0.1:11434 for ollama,
    /// http://127.0.0.1:8080 for openai].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// The model's name on the server [default: gemma3:270m].
    #[arg(long)]
    pub model: Option<String>,

    /// Prompt style: structured (JSON widths under a schema: the style small base
    /// models answer validly), chat or completion [default: structured].
    #[arg(long)]
    pub style: Option<String>,

    /// Sampling temperature [default: 0.7].
    #[arg(long)]
    pub temperature: Option<f32>,

    /// Longest wait for one LLM answer, e.g. `60s` [default: 120s].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub llm_timeout: Option<Seconds>,

    /// No repair round for rejected LLM answers.
    #[arg(long)]
    pub no_repair: bool,

    /// LLM answers sampled per proposal (each with its own seed) before the
    /// repair round; the first acceptable one is kept [default: 1].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub samples: Option<u32>,

    /// Ask the LLM for the next proposal only after the current trial has
    /// trained (slower; by default the next proposal is asked for while a
    /// trial trains and sees the results finished so far).
    #[arg(long)]
    pub no_propose_ahead: bool,
}

impl TaskArgs {
    /// Applies the flags given over `c`.
    pub fn apply(&self, c: &mut SearchConfig) {
        set!(self, c; epochs => epochs, widths => widths, dataset => train.dataset, batch => train.batch,
             lr => train.lr, schedule => train.schedule, train_seed => train.seed,
             backend => train.backend);
        set_some!(self, c; seed_file => seed_file, net => net, max_params => max_params,
                  max_memory => max_memory,
                  max_flops => max_flops, data_dir => train.data_dir,
                  train_size => train.train_size, test_size => train.test_size);
        if self.structural {
            c.structural = true;
        }
        if self.augment {
            c.train.augment = true;
        }
        if self.no_augment {
            c.train.augment = false;
        }
    }

    /// The flags given (a resumed run keeps its task, so none may be).
    pub fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        given_flags!(self, given; seed_file => "--seed-file", net => "--net", epochs => "--epochs",
               max_params => "--max-params", max_flops => "--max-flops", widths => "--widths",
               max_memory => "--max-memory",
               dataset => "--dataset", data_dir => "--data-dir", train_size => "--train-size",
               test_size => "--test-size", batch => "--batch", lr => "--lr",
               schedule => "--schedule", train_seed => "--train-seed", backend => "--backend");
        for (set, flag) in [
            (self.structural, "--structural"),
            (self.augment, "--augment"),
            (self.no_augment, "--no-augment"),
        ] {
            if set {
                given.push(flag);
            }
        }
        given
    }
}

impl SearchArgs {
    /// The configuration: defaults, then the `--config` file, then the flags.
    pub fn config(&self) -> Result<SearchConfig, EvolveError> {
        let mut c = match &self.config {
            Some(path) => SearchConfig::from_toml_file(path)?,
            None => SearchConfig::default(),
        };
        self.task.apply(&mut c);
        set!(self, c; runs_dir => runs_dir, proposer => proposer, trials => trials,
             final_top => final_top, population => population, tournament => tournament,
             seed => seed, jobs => jobs, model => llm.model, style => llm.style,
             temperature => llm.temperature, llm_timeout => llm.timeout,
             samples => llm.samples, scheduler => scheduler, eta => eta);
        set_some!(self, c; name => name, time_budget => time_budget, final_epochs => final_epochs,
                  url => llm.url, storage => storage, min_epochs => min_epochs,
                  max_epochs => max_epochs, epoch_budget => epoch_budget);
        if self.no_propose_ahead {
            c.llm.propose_ahead = false;
        }
        if self.no_time_budget {
            c.time_budget = None;
        }
        if self.no_repair {
            c.llm.repair = false;
        }
        Ok(c)
    }

    /// The flags given that `--resume` does not accept (a run keeps its settings;
    /// only its budget and the server's address may change).
    fn fixed_on_resume(&self) -> Vec<&'static str> {
        let mut given = self.task.given();
        given_flags!(self, given; config => "--config", name => "--name", runs_dir => "--runs-dir",
               storage => "--storage",
               proposer => "--proposer", population => "--population",
               tournament => "--tournament", seed => "--seed", model => "--model",
               style => "--style", temperature => "--temperature", samples => "--samples",
               scheduler => "--scheduler", min_epochs => "--min-epochs",
               max_epochs => "--max-epochs", eta => "--eta");
        if self.no_repair {
            given.push("--no-repair");
        }
        if self.no_propose_ahead {
            given.push("--no-propose-ahead");
        }
        given
    }

    /// Applies what `--resume` may change: the budget and the server.
    pub fn adjust(&self, c: &mut SearchConfig) -> Result<(), EvolveError> {
        let fixed = self.fixed_on_resume();
        if !fixed.is_empty() {
            return Err(EvolveError::Config(format!(
                "{} cannot change when resuming (the run keeps its settings); only --trials, --time-budget, --no-time-budget, --epoch-budget, --final-epochs, --final-top, --jobs, --url and --llm-timeout may",
                fixed.join(", ")
            )));
        }
        if let Some(v) = self.trials {
            c.trials = v;
        }
        if let Some(v) = self.time_budget {
            c.time_budget = Some(v);
        }
        if self.no_time_budget {
            c.time_budget = None;
        }
        if let Some(v) = self.final_epochs {
            c.final_epochs = Some(v);
        }
        if let Some(v) = self.epoch_budget {
            c.epoch_budget = Some(v);
        }
        if let Some(v) = self.final_top {
            c.final_top = v;
        }
        if let Some(v) = self.jobs {
            c.jobs = v;
        }
        if let Some(v) = &self.url {
            c.llm.url = Some(v.clone());
        }
        if let Some(v) = self.llm_timeout {
            c.llm.timeout = v;
        }
        Ok(())
    }
}

/// Search for a better network: propose, train, record; then report.
///
/// With no arguments: the embedded synthetic task, the seed network
/// models/nas/small_cnn.nas, the `ollama` proposer when a server answers at
/// http://127.0.0.1:11434 (else `mutate`, with a notice), up to 20 proposals, each
/// trained for three epochs on 16,000 images (batch 32, peak learning rate 0.2, no
/// augmentation) and scored on 5,000 test images, one trial per core at a time,
/// proposing for at most 150 s.
/// Everything goes to `runs/<name>/`: nas.db (every proposal and trial),
/// config.toml (the effective settings), evolve.log, best.nas and report.html.
/// A killed run continues with `--resume runs/<name>`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Search settings.
    #[command(flatten)]
    pub search: SearchArgs,

    /// Continue the run in this directory (its settings are kept; the budget may
    /// change).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,

    /// GPUs for the local workers (`cuda:0,cuda:1`, with `--backend cuda`): each
    /// worker process sees one, in turn, so `--jobs 4 --devices cuda:0,cuda:1`
    /// runs two jobs per GPU [default: --jobs is the number of devices].
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,

    /// Train nothing on this machine: only propose, and wait for workers
    /// (`nas-core worker`) to train the queued trials (with `--storage`).
    #[arg(long)]
    pub coordinate_only: bool,

    /// Print the leaderboard as JSON on standard output at the end.
    #[arg(long)]
    pub json: bool,
}

/// Whether to draw progress bars: only on a terminal and never under CI.
pub(super) fn bars_enabled(is_terminal: bool, ci: Option<&str>) -> bool {
    let ci = matches!(ci, Some(v) if !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    is_terminal && !ci
}

/// Feeds search events to indicatif bars (when enabled) and prints one line per
/// finished trial.
pub(super) struct Reporter {
    multi: Option<MultiProgress>,
    trials: Option<ProgressBar>,
    epoch: Option<ProgressBar>,
    epochs: usize,
    prefix: String,
}

impl Reporter {
    /// A reporter; `prefix` starts every line (the run, in a comparison).
    pub(super) fn new(prefix: impl Into<String>) -> Reporter {
        let enabled = bars_enabled(
            std::io::stderr().is_terminal(),
            std::env::var("CI").ok().as_deref(),
        );
        Reporter {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            trials: None,
            epoch: None,
            epochs: 0,
            prefix: prefix.into(),
        }
    }

    fn line(&self, text: &str) {
        let text = format!("{}{text}", self.prefix);
        match &self.multi {
            Some(m) => {
                if m.println(&text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => eprintln!("{text}"),
        }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

/// One line for a finished trial.
pub(super) fn trial_line(t: &TrialRecord, best: Option<f64>) -> String {
    let head = format!(
        "trial {:>3} (step {:>3}, {:<7})",
        t.id, t.trial.step, t.trial.proposer
    );
    let params = t
        .trial
        .params
        .map_or_else(String::new, |p| format!("{} params", thousands(p)));
    let best = best.map_or_else(String::new, |b| format!(", best {:.2}%", 100.0 * b));
    let stage = if t.trial.stage == crate::store::Stage::Final {
        format!(" final {} epochs", t.trial.epochs)
    } else if let Some(from) = t.trial.continues {
        format!(
            " rung {} ({} epochs, from trial {from})",
            t.trial.rung, t.trial.epochs
        )
    } else {
        String::new()
    };
    match t.status() {
        TrialStatus::Done => format!(
            "{head}{stage}: top-1 {:.2}%, {params}, {:.1} s{best}",
            100.0 * t.accuracy.unwrap_or(0.0),
            t.train_s.unwrap_or(0.0)
        ),
        TrialStatus::Invalid => format!(
            "{head}: rejected ({}): {}",
            t.trial.outcome,
            t.trial
                .error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("")
        ),
        other => format!(
            "{head}{stage}: {other} ({}), {params}",
            t.trial
                .error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("")
        ),
    }
}

impl Observer for Reporter {
    fn epoch_start(&mut self, epoch: usize, steps: usize) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(steps as u64));
            bar.set_style(Self::style(
                "  epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  (eta {eta})",
            ));
            bar.set_prefix(format!("{epoch}/{}", self.epochs));
            if let Some(old) = self.epoch.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn step(&mut self, _step: usize, loss: f64) {
        if let Some(bar) = &self.epoch {
            bar.set_message(format!("loss {loss:.4}"));
            bar.inc(1);
        }
    }

    fn evaluating(&mut self) {
        if let Some(bar) = &self.epoch {
            bar.set_message("evaluating");
        }
    }

    fn epoch_end(&mut self, _stats: &EpochStats) {
        if let Some(bar) = self.epoch.take() {
            bar.finish_and_clear();
        }
    }
}

impl SearchObserver for Reporter {
    fn notice(&mut self, message: &str) {
        self.line(&format!("note: {message}"));
    }

    fn search_started(&mut self, planned: u64, done: u64) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(planned));
            bar.set_style(Self::style(
                "{prefix}trials [{bar:30}] {pos}/{len}  {msg}  {elapsed_precise}",
            ));
            bar.set_prefix(self.prefix.clone());
            bar.set_position(done);
            self.trials = Some(bar);
        }
    }

    fn trial_started(&mut self, t: &TrialRecord) {
        self.epochs = t.trial.epochs as usize;
        if let Some(bar) = &self.trials {
            bar.set_message(format!("training trial {} ({})", t.id, t.trial.proposer));
        }
    }

    fn trial_finished(&mut self, t: &TrialRecord, best: Option<f64>) {
        if let Some(bar) = &self.trials
            && t.trial.step > 0
            && t.trial.stage == crate::store::Stage::Search
            && !t.is_promotion()
        {
            bar.set_position(t.trial.step);
        }
        self.line(&trial_line(t, best));
    }

    fn final_started(&mut self, count: usize) {
        self.line(&format!("final stage: retraining the top {count}"));
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        for bar in [self.epoch.take(), self.trials.take()]
            .into_iter()
            .flatten()
        {
            bar.finish_and_clear();
        }
    }
}

impl crate::fidelity::CheckObserver for Reporter {
    fn training_done(&mut self, done: usize, _total: usize, line: &str) {
        if let Some(bar) = &self.trials {
            bar.set_position(done as u64);
        }
        self.line(line);
    }
}

/// Runs `f` with `tracing` events going to the run's log file.
pub(super) fn with_log<T>(dir: &Path, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let path = dir.join(LOG_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log `{}`", path.display()))?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    Ok(tracing::subscriber::with_default(subscriber, f))
}

/// Runs `nas-core evolve`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut evolve = match &args.resume {
        Some(dir) => Evolve::resume(dir, |c| args.search.adjust(c))?,
        None => Evolve::create(args.search.config()?)?,
    };
    if let Some(devices) = &args.devices {
        let devices = crate::evolve::parse_devices(devices).map_err(anyhow::Error::msg)?;
        evolve = evolve.with_devices(devices)?;
    }
    if args.coordinate_only {
        anyhow::ensure!(
            evolve.storage().is_shared(),
            "`--coordinate-only` needs a shared store (`--storage postgres://…`) that workers serve"
        );
        evolve = evolve.coordinate_only();
    }
    let dir = evolve.dir().to_path_buf();
    eprintln!(
        "run `{}` in {} with the `{}` proposer{}",
        evolve.name(),
        dir.display(),
        evolve.proposer(),
        if evolve.storage().is_shared() {
            format!("; trials in {}", evolve.storage())
        } else {
            String::new()
        }
    );
    let mut reporter = Reporter::new("");
    let summary = with_log(&dir, || evolve.run(&mut reporter))??;
    drop(reporter);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary.leaderboard)?);
    } else {
        print!("{}", report::leaderboard_table(&summary.leaderboard, 10));
    }
    eprintln!(
        "{}",
        report::noise_text(&summary.leaderboard, &summary.noise)
    );
    let (made, new) = summary.proposals();
    if made > 0 {
        let rejected: Vec<String> = summary
            .outcomes
            .iter()
            .filter(|(o, _)| *o != "ok")
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        eprintln!(
            "proposals: {made}, new and valid {new} ({:.0}%){}",
            100.0 * new as f64 / made as f64,
            if rejected.is_empty() {
                String::new()
            } else {
                format!("; rejected: {}", rejected.join(", "))
            }
        );
    }
    eprintln!(
        "{} trained in {:.1} s with {} job{} ({:.1} s training, {:.1}% of the jobs' time outside training); stopped: {}",
        summary.trained,
        summary.wall_s,
        summary.jobs,
        if summary.jobs == 1 { "" } else { "s" },
        summary.train_s,
        100.0 * summary.overhead(),
        match summary.stopped {
            crate::evolve::StopReason::Trials => "all trials made",
            crate::evolve::StopReason::TimeBudget => "time budget reached",
            crate::evolve::StopReason::EpochBudget => "epoch budget queued",
        }
    );
    if let Ok(Some(asha)) = evolve.config().asha() {
        let trials = evolve.store().trials()?;
        let per_rung: Vec<String> = asha
            .rungs()
            .iter()
            .enumerate()
            .map(|(k, epochs)| {
                let n = trials
                    .iter()
                    .filter(|t| {
                        t.trial.stage == crate::store::Stage::Search
                            && t.trial.rung as usize == k
                            && t.status() != TrialStatus::Invalid
                    })
                    .count();
                format!("{n} at {epochs} epochs")
            })
            .collect();
        let held = evolve.store().checkpoints()?;
        eprintln!(
            "rungs (η = {}): {}; {} search epochs; {} checkpoint(s) kept, {} kB",
            asha.eta,
            per_rung.join(", "),
            crate::evolve::search_epochs(&trials),
            held.len(),
            held.iter().map(|(_, b)| b).sum::<u64>() / 1024
        );
    }
    if let Some(best) = report::best(&summary.leaderboard) {
        eprintln!(
            "best: trial {} at {:.2}% → {}",
            best.trial,
            100.0 * best.final_accuracy.unwrap_or(best.accuracy),
            dir.join(report::BEST_FILE).display()
        );
    }
    eprintln!("report: {}", dir.join(report::REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        search: SearchArgs,
    }

    fn parse(args: &[&str]) -> SearchArgs {
        Wrap::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .search
    }

    #[test]
    fn bars_only_on_a_terminal_outside_ci() {
        assert!(bars_enabled(true, None));
        assert!(bars_enabled(true, Some("false")));
        assert!(bars_enabled(true, Some("")));
        assert!(!bars_enabled(true, Some("true")));
        assert!(!bars_enabled(true, Some("1")));
        assert!(!bars_enabled(false, None));
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "trials = 7\nepochs = 3\n[train]\nbatch = 16\n").unwrap();
        let a = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--epochs",
            "2",
            "--max-params",
            "50k",
        ]);
        let c = a.config().unwrap();
        assert_eq!((c.trials, c.epochs, c.train.batch), (7, 2, 16));
        assert_eq!(c.max_params, Some(50_000));
    }

    /// Augmentation is off by default (a one-epoch trial sees each image once);
    /// `--augment` turns it on, `--no-augment` turns off a config file's.
    #[test]
    fn augmentation_flags() {
        assert!(!parse(&[]).config().unwrap().train.augment);
        assert!(parse(&["--augment"]).config().unwrap().train.augment);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "[train]\naugment = true\n").unwrap();
        let path = file.to_str().unwrap();
        assert!(parse(&["--config", path]).config().unwrap().train.augment);
        let off = parse(&["--config", path, "--no-augment"]);
        assert!(!off.config().unwrap().train.augment);
        assert!(Wrap::try_parse_from(["x", "--augment", "--no-augment"]).is_err());
        assert_eq!(parse(&["--augment"]).task.given(), ["--augment"]);
    }

    #[test]
    fn unknown_proposer_flag_is_a_clear_error() {
        let e = Wrap::try_parse_from(["x", "--proposer", "gpt"])
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("unknown proposer `gpt`; expected one of"),
            "{e}"
        );
    }

    #[test]
    fn resume_accepts_only_budget_changes() {
        let mut c = SearchConfig::default();
        parse(&["--trials", "30", "--time-budget", "10m"])
            .adjust(&mut c)
            .unwrap();
        assert_eq!(c.trials, 30);
        assert_eq!(c.time_budget, Some(Seconds(600.0)));
        let e = parse(&["--epochs", "3", "--structural"])
            .adjust(&mut c)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("--epochs, --structural cannot change"),
            "{e}"
        );
    }

    #[test]
    fn trial_lines_say_what_happened() {
        let rec = |status, acc, err: Option<&str>| TrialRecord {
            id: 4,
            trial: crate::store::NewTrial {
                stage: crate::store::Stage::Search,
                step: 3,
                proposer: "mutate".into(),
                status,
                name: None,
                source: String::new(),
                hash: String::new(),
                parent: None,
                outcome: if status == TrialStatus::Invalid {
                    "duplicate"
                } else {
                    "ok"
                }
                .into(),
                note: None,
                params: Some(1234),
                flops: None,
                epochs: 1,
                propose_ms: 0.0,
                error: err.map(str::to_string),
                rung: 0,
                continues: None,
            },
            telemetry: serde_json::json!([]),
            accuracy: acc,
            top5: None,
            test_loss: None,
            train_s: Some(2.0),
            runs: 1,
            created_at: 0.0,
            finished_at: None,
        };
        assert_eq!(
            trial_line(&rec(TrialStatus::Done, Some(0.5), None), Some(0.6)),
            "trial   4 (step   3, mutate ): top-1 50.00%, 1,234 params, 2.0 s, best 60.00%"
        );
        assert_eq!(
            trial_line(
                &rec(TrialStatus::Invalid, None, Some("error: same\nmore")),
                None
            ),
            "trial   4 (step   3, mutate ): rejected (duplicate): error: same"
        );
        assert!(
            trial_line(&rec(TrialStatus::Diverged, None, Some("loss NaN")), None)
                .contains("diverged (loss NaN)")
        );
    }
}
