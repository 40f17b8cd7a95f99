//! `nas-core train`: trains one net of a `.nas` file on the synthetic task or CIFAR
//! with the fixed recipe, shows a progress bar per epoch (only on a terminal, never
//! under CI), and prints the telemetry table or, with `--json`, one JSON object.

use super::check::read_all;
use crate::data::augment::Augment;
use crate::data::{self, DatasetKind};
use crate::train::{
    BackendKind, EpochStats, Observer, Outcome, Report, Schedule, Task, TrainConfig, train_on,
};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use nas_dsl::summary::thousands;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Train a network from a `.nas` file and print per-epoch telemetry.
///
/// Runs SGD (Nesterov momentum 0.9, weight decay 5e-4, label smoothing 0.1) with a
/// warm-up then cosine schedule, standard crop-and-flip augmentation, and evaluates
/// top-1/top-5 on the test split after every epoch. The default task is the embedded
/// synthetic set (no download). Exits 0 when the run completes, 1 when it diverges
/// (NaN/Inf or exploding loss), 2 on errors.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.nas` file holding the net.
    #[arg(value_name = "FILE.nas")]
    pub file: PathBuf,

    /// Which net of the file to train (default: the only one, or the first).
    #[arg(long)]
    pub net: Option<String>,

    /// The task.
    #[arg(long, value_enum, default_value_t = DatasetKind::Synthetic)]
    pub dataset: DatasetKind,

    /// An extracted CIFAR binary archive (`cifar-10-batches-bin` or
    /// `cifar-100-binary`, or the folder containing it); required for CIFAR.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Passes over the training split.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,

    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,

    /// Refuse a net whose training memory at the batch size (the checker's
    /// estimate) is over this, e.g. `2G` [default: half the memory available].
    #[arg(long, value_name = "SIZE", value_parser = crate::evolve::parse_bytes)]
    pub max_memory: Option<u64>,

    /// The Burn backend (`cuda` needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,

    /// Seeds weights, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,

    /// The schedule after warm-up.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,

    /// Training images to use (synthetic default 10,000; CIFAR default all).
    #[arg(long, value_name = "N")]
    pub train_size: Option<usize>,

    /// Test images to use (synthetic default 2,000; CIFAR default all).
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,

    /// Turn off crop-and-flip augmentation.
    #[arg(long)]
    pub no_augment: bool,

    /// Print one JSON object (the full report) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Whether to draw progress bars: only on a terminal and never under CI.
pub(super) fn show_progress(is_terminal: bool, is_ci: bool) -> bool {
    is_terminal && !is_ci
}

/// Whether the `CI` environment variable's value means "running under CI".
pub(super) fn is_ci(value: Option<&str>) -> bool {
    matches!(value, Some(v) if !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Feeds training events to an indicatif bar, one bar per epoch.
struct Reporter {
    bar: Option<ProgressBar>,
    enabled: bool,
    epochs: usize,
}

impl Observer for Reporter {
    fn epoch_start(&mut self, epoch: usize, steps: usize) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(steps as u64);
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  {elapsed_precise} (eta {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{}", self.epochs));
        self.bar = Some(bar);
    }

    fn step(&mut self, _step: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.4}"));
            bar.inc(1);
        }
    }

    fn evaluating(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_message("evaluating");
        }
    }

    fn epoch_end(&mut self, stats: &EpochStats) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            eprintln!(
                "epoch {}/{}: train loss {:.4}, test loss {:.4}, top-1 {:.2}%, {:.0} images/s",
                stats.epoch,
                self.epochs,
                stats.train_loss,
                stats.test_loss,
                100.0 * stats.top1,
                stats.images_per_sec
            );
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The telemetry table and the closing summary line.
pub(super) fn table(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} on {} ({} train / {} test images), {} params, {} FLOPs, backend {}\n",
        report.net,
        report.dataset,
        thousands(report.train_images as u64),
        thousands(report.test_images as u64),
        thousands(report.params),
        thousands(report.flops),
        report.backend,
    ));
    out.push_str(&format!(
        "{:>5}  {:>10}  {:>9}  {:>7}  {:>7}  {:>9}  {:>8}  {:>8}  {:>9}\n",
        "epoch",
        "train loss",
        "test loss",
        "top-1",
        "top-5",
        "images/s",
        "wall s",
        "lr",
        "peak RSS"
    ));
    for e in &report.epochs {
        let rss = e
            .peak_rss
            .map_or_else(|| "n/a".to_string(), |b| format!("{} MiB", b / (1 << 20)));
        out.push_str(&format!(
            "{:>5}  {:>10.4}  {:>9.4}  {:>6.2}%  {:>6.2}%  {:>9.1}  {:>8.1}  {:>8.5}  {:>9}\n",
            e.epoch,
            e.train_loss,
            e.test_loss,
            100.0 * e.top1,
            100.0 * e.top5,
            e.images_per_sec,
            e.wall_s,
            e.lr,
            rss
        ));
    }
    match &report.outcome {
        Outcome::Completed => out.push_str(&format!(
            "completed: top-1 {:.2}%, top-5 {:.2}% after {} epochs in {:.1} s\n",
            100.0 * report.top1,
            100.0 * report.top5,
            report.epochs.len(),
            report.wall_s
        )),
        Outcome::Diverged {
            epoch,
            step,
            reason,
        } => out.push_str(&format!(
            "diverged in epoch {epoch} at step {step}: {reason} (after {:.1} s)\n",
            report.wall_s
        )),
    }
    out
}

/// Runs `nas-core train`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(std::slice::from_ref(&args.file))?;
    let Some(source) = sources.first() else {
        bail!("no file to train");
    };
    let nets = match nas_dsl::check_str(&source.text) {
        Ok(nets) => nets,
        Err(errors) => {
            eprint!(
                "{}",
                nas_dsl::diag::render(&source.name(), &source.text, &errors)
            );
            bail!("`{}` does not pass the checker", source.name());
        }
    };
    let net = match &args.net {
        Some(name) => nets.iter().find(|n| n.name() == name).with_context(|| {
            let names: Vec<&str> = nets.iter().map(|n| n.name()).collect();
            format!(
                "no net `{name}` in `{}` (it has: {})",
                source.name(),
                names.join(", ")
            )
        })?,
        None => nets.first().context("the file holds no net")?,
    };
    let budget = crate::propose::Budget {
        max_memory: args
            .max_memory
            .or_else(|| crate::evolve::default_max_memory(args.backend, 1)),
        batch: args.batch as u64,
        ..Default::default()
    };
    if let Some((need, max)) = budget.memory_over(net) {
        bail!(
            "refused before training: {}",
            budget.memory_message(net, need, max)
        );
    }
    let split = data::load(
        args.dataset,
        args.data_dir.as_deref(),
        args.train_size,
        args.test_size,
    )?;
    let task = Task::new(split);
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        schedule: args.schedule,
        seed: args.seed,
        augment: if args.no_augment {
            Augment::NONE
        } else {
            Augment::STANDARD
        },
        ..TrainConfig::default()
    };
    let enabled = show_progress(
        std::io::stderr().is_terminal(),
        is_ci(std::env::var("CI").ok().as_deref()),
    );
    let mut reporter = Reporter {
        bar: None,
        enabled,
        epochs: cfg.epochs,
    };
    let report = train_on(args.backend, net, &task, &cfg, &mut reporter)?;
    drop(reporter);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if report.diverged() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_outside_ci() {
        assert!(show_progress(true, false));
        assert!(!show_progress(true, true));
        assert!(!show_progress(false, false));
        assert!(!show_progress(false, true));
    }

    #[test]
    fn ci_variable_values() {
        assert!(is_ci(Some("true")));
        assert!(is_ci(Some("1")));
        assert!(!is_ci(None));
        assert!(!is_ci(Some("")));
        assert!(!is_ci(Some("false")));
        assert!(!is_ci(Some("0")));
    }
}
