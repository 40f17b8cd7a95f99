//! What a run produced, for people and scripts: the leaderboard (search fidelity,
//! with the final retraining beside it), `best.nas`, and a self-contained
//! `report.html` with inline SVG plots drawn by plotters (accuracy per trial with
//! the best-so-far line, accuracy against parameters with the Pareto front,
//! proposal outcomes per proposer), each network's source and summary table; and
//! the comparison of proposers over repeated runs (`nas-core compare`).

use crate::stats::{self, MannWhitney, Summary, Welch};
use crate::store::{AttemptRecord, Stage, Store, StoreError, TrialId, TrialRecord, TrialStatus};
use nas_dsl::summary::thousands;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The name of the report file in a run directory.
pub const REPORT_FILE: &str = "report.html";
/// The name of the best network's file in a run directory.
pub const BEST_FILE: &str = "best.nas";
/// How many leaderboard entries the HTML report shows with their source.
pub const SHOWN: usize = 10;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the run's record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plot could not be drawn.
    #[error("cannot draw the `{plot}` plot: {reason}")]
    Plot {
        /// Which plot.
        plot: &'static str,
        /// What plotters said.
        reason: String,
    },
    /// Writing a file failed.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A score's noise (the seed noise of one trial's top-1) and where the figure
/// comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Noise {
    /// The noise SD in percentage points, when known.
    pub sd: Option<f64>,
    /// Where it comes from, for people.
    pub source: String,
}

impl Noise {
    /// No measurement of this task's noise.
    pub fn unknown() -> Noise {
        Noise {
            sd: None,
            source: "unknown: run `nas-core fidelity` with this search's task flags to measure it"
                .into(),
        }
    }

    /// The top-1 difference (a fraction, like accuracies) below which two trials
    /// count as tied: two scores that differ by noise alone stay within
    /// 1.96·√2·SD of each other 95 % of the time.
    pub fn tie_margin(&self) -> Option<f64> {
        self.sd
            .map(|sd| 1.96 * std::f64::consts::SQRT_2 * sd / 100.0)
    }
}

/// Marks the entries within noise of the best one as tied (none when the noise
/// is unknown).
pub fn mark_ties(board: &mut [Entry], noise: &Noise) {
    let top = board
        .iter()
        .map(|e| e.accuracy)
        .fold(f64::NEG_INFINITY, f64::max);
    for e in board.iter_mut() {
        e.tied = noise.tie_margin().is_some_and(|m| top - e.accuracy < m);
    }
}

/// One sentence on how far the ranking can be trusted.
pub fn noise_text(board: &[Entry], noise: &Noise) -> String {
    match noise.sd {
        Some(sd) => {
            let tied: Vec<String> = board
                .iter()
                .filter(|e| e.tied)
                .map(|e| e.trial.to_string())
                .collect();
            let verdict = if tied.len() > 1 {
                format!(
                    "{} trials are within noise of the best and tied with it (trials {}): the search cannot tell them apart",
                    tied.len(),
                    tied.join(", ")
                )
            } else {
                "the best trial is ahead of every other by more than the noise".into()
            };
            format!(
                "noise: a score is ±{sd:.2} points (1 SD, {}); {verdict}",
                noise.source
            )
        }
        None => format!("noise: {}; the ranking may be within noise", noise.source),
    }
}

/// Everything recorded about one run.
#[derive(Clone, Debug)]
pub struct RunData {
    /// The run's name.
    pub name: String,
    /// The effective configuration (JSON), if recorded.
    pub config: Option<serde_json::Value>,
    /// Every trial.
    pub trials: Vec<TrialRecord>,
    /// Every proposal attempt.
    pub attempts: Vec<AttemptRecord>,
    /// The noise of its scores (unknown until the caller looks it up).
    pub noise: Noise,
}

impl RunData {
    /// Reads a run's record.
    pub fn load(name: &str, store: &dyn Store) -> Result<RunData, ReportError> {
        let config = store
            .meta("config_json")?
            .and_then(|s| serde_json::from_str(&s).ok());
        Ok(RunData {
            name: name.to_string(),
            config,
            trials: store.trials()?,
            attempts: store.attempts()?,
            noise: Noise::unknown(),
        })
    }

    /// The trials of the search stage.
    pub fn search(&self) -> impl Iterator<Item = &TrialRecord> {
        self.trials
            .iter()
            .filter(|t| t.trial.stage == Stage::Search)
    }

    /// The best search-stage accuracy among the proposed trials (the seed left
    /// out), or the seed's when no proposal trained: what a search found. In a
    /// multi-fidelity search, the best at the highest fidelity reached.
    pub fn best_found(&self) -> Option<f64> {
        let done = |t: &&TrialRecord| t.status() == TrialStatus::Done && t.accuracy.is_some();
        let best = |seed: bool| {
            let found: Vec<&TrialRecord> = self
                .search()
                .filter(done)
                .filter(|t| (t.trial.step == 0) == seed)
                .collect();
            let top = found.iter().map(|t| t.trial.epochs).max()?;
            found
                .iter()
                .filter(|t| t.trial.epochs == top)
                .filter_map(|t| t.accuracy)
                .max_by(f64::total_cmp)
        };
        best(false).or_else(|| best(true))
    }

    /// Proposals made after the seed, and how many were valid (trained or queued).
    pub fn valid_rate(&self) -> (usize, usize) {
        let proposed: Vec<&TrialRecord> = self
            .search()
            .filter(|t| t.trial.step > 0 && !t.is_promotion())
            .collect();
        let valid = proposed.iter().filter(|t| t.trial.outcome == "ok").count();
        (proposed.len(), valid)
    }

    /// Proposals after the seed that repeated an architecture the run already had.
    pub fn duplicates(&self) -> usize {
        self.search()
            .filter(|t| t.trial.step > 0 && !t.is_promotion() && t.trial.outcome == "duplicate")
            .count()
    }

    /// The best accuracy found after each proposal step `1..=steps` (the seed's
    /// until a proposal beats it; `None` before anything trained).
    pub fn best_so_far(&self, steps: u64) -> Vec<Option<f64>> {
        let mut by_step: BTreeMap<u64, f64> = BTreeMap::new();
        for t in self.search().filter(|t| t.status() == TrialStatus::Done) {
            if let Some(a) = t.accuracy {
                let e = by_step.entry(t.trial.step).or_insert(a);
                *e = e.max(a);
            }
        }
        let mut best: Option<f64> = by_step.get(&0).copied();
        (1..=steps)
            .map(|s| {
                if let Some(&a) = by_step.get(&s) {
                    best = Some(best.map_or(a, |b| b.max(a)));
                }
                best
            })
            .collect()
    }
}

/// One leaderboard row: a trained architecture at the search fidelity, with its
/// final retraining when there was one.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// 1-based rank.
    pub rank: usize,
    /// The search trial.
    pub trial: TrialId,
    /// The proposal step (0: the seed).
    pub step: u64,
    /// Who proposed it.
    pub proposer: String,
    /// The net's name.
    pub name: String,
    /// Top-1 at the search fidelity.
    pub accuracy: f64,
    /// Top-5 at the search fidelity.
    pub top5: Option<f64>,
    /// Test loss at the search fidelity.
    pub test_loss: Option<f64>,
    /// Epochs at the search fidelity (a multi-fidelity search: of the highest
    /// rung the architecture reached).
    pub epochs: u32,
    /// The multi-fidelity rung of that result (0 in a flat search).
    pub rung: u32,
    /// Learnable parameters.
    pub params: Option<u64>,
    /// Multiply-accumulates per sample.
    pub flops: Option<u64>,
    /// The parent's identity.
    pub parent: Option<String>,
    /// The architecture's identity.
    pub hash: String,
    /// What the proposer did.
    pub note: Option<String>,
    /// Top-1 after the final retraining, if any.
    pub final_accuracy: Option<f64>,
    /// Epochs of the final retraining, if any.
    pub final_epochs: Option<u32>,
    /// The canonical source.
    pub source: String,
    /// Within noise of the best entry (see [`mark_ties`]).
    pub tied: bool,
}

impl Entry {
    /// Its epochs, with the rung when the board has several (`4 (rung 2)`).
    fn epochs_label(&self, rungs: bool) -> String {
        if rungs {
            format!("{} (rung {})", self.epochs, self.rung)
        } else {
            self.epochs.to_string()
        }
    }
}

/// The leaderboard: trained search trials by fidelity (the most epochs first:
/// a multi-fidelity search's top rung leads), then accuracy (then fewer
/// parameters, then earlier), one row per architecture at the highest
/// fidelity it reached, each with its final retraining.
pub fn leaderboard(trials: &[TrialRecord]) -> Vec<Entry> {
    let finals: HashMap<&str, &TrialRecord> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Final && t.status() == TrialStatus::Done)
        .map(|t| (t.trial.hash.as_str(), t))
        .collect();
    let mut done: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search && t.status() == TrialStatus::Done)
        .filter(|t| t.accuracy.is_some())
        .collect();
    done.sort_by(|a, b| {
        b.trial
            .epochs
            .cmp(&a.trial.epochs)
            .then(
                b.accuracy
                    .unwrap_or(0.0)
                    .total_cmp(&a.accuracy.unwrap_or(0.0)),
            )
            .then(a.trial.params.cmp(&b.trial.params))
            .then(a.id.cmp(&b.id))
    });
    let mut seen = std::collections::HashSet::new();
    done.retain(|t| seen.insert(t.trial.hash.clone()));
    done.into_iter()
        .enumerate()
        .map(|(i, t)| {
            let fin = finals.get(t.trial.hash.as_str());
            Entry {
                rank: i + 1,
                trial: t.id,
                step: t.trial.step,
                proposer: t.trial.proposer.clone(),
                name: t.trial.name.clone().unwrap_or_default(),
                accuracy: t.accuracy.unwrap_or(0.0),
                top5: t.top5,
                test_loss: t.test_loss,
                epochs: t.trial.epochs,
                rung: t.trial.rung,
                params: t.trial.params,
                flops: t.trial.flops,
                parent: t.trial.parent.clone(),
                hash: t.trial.hash.clone(),
                note: t.trial.note.clone(),
                final_accuracy: fin.and_then(|f| f.accuracy),
                final_epochs: fin.map(|f| f.trial.epochs),
                source: t.trial.source.clone(),
                tied: false,
            }
        })
        .collect()
}

/// The best entry: by final accuracy when the final stage ran, else the top of
/// the leaderboard.
pub fn best(board: &[Entry]) -> Option<&Entry> {
    board
        .iter()
        .filter(|e| e.final_accuracy.is_some())
        .max_by(|a, b| {
            a.final_accuracy
                .unwrap_or(0.0)
                .total_cmp(&b.final_accuracy.unwrap_or(0.0))
                .then(b.rank.cmp(&a.rank))
        })
        .or_else(|| board.first())
}

/// The leaderboard as a terminal table.
pub fn leaderboard_table(board: &[Entry], limit: usize) -> String {
    let mut out = String::new();
    let rungs = board.iter().any(|e| e.rung > 0);
    let finals = board.iter().any(|e| e.final_accuracy.is_some());
    let _ = write!(
        out,
        "{:>4}  {:>5}  {:>8}  {:>9}  {:>11}  {:>13}  {:<8}",
        "rank", "trial", "top-1", "params", "FLOPs", "epochs", "proposer"
    );
    if finals {
        let _ = write!(out, "  {:>10}", "final top-1");
    }
    out.push('\n');
    for e in board.iter().take(limit) {
        let _ = write!(
            out,
            "{:>4}{} {:>5}  {:>7.2}%  {:>9}  {:>11}  {:>13}  {:<8}",
            e.rank,
            if e.tied { "=" } else { " " },
            e.trial,
            100.0 * e.accuracy,
            e.params.map_or_else(String::new, thousands),
            e.flops.map_or_else(String::new, thousands),
            e.epochs_label(rungs),
            e.proposer,
        );
        if finals {
            match (e.final_accuracy, e.final_epochs) {
                (Some(a), Some(n)) => {
                    let _ = write!(out, "  {:>6.2}% ({n} ep)", 100.0 * a);
                }
                _ => out.push_str("  -"),
            }
        }
        out.push('\n');
    }
    if board.len() > limit {
        let _ = writeln!(out, "… and {} more", board.len() - limit);
    }
    if board.iter().any(|e| e.tied) {
        out.push_str("(=: within noise of the best, tied)\n");
    }
    out
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn plot_err<E: std::fmt::Display>(plot: &'static str) -> impl Fn(E) -> ReportError {
    move |e| ReportError::Plot {
        plot,
        reason: e.to_string(),
    }
}

/// A stable colour per proposer name.
fn proposer_color(name: &str) -> RGBColor {
    match name {
        "seed" => RGBColor(40, 40, 40),
        "mutate" => RGBColor(31, 119, 180),
        "random" => RGBColor(255, 127, 14),
        "ollama" => RGBColor(44, 160, 44),
        "openai" => RGBColor(148, 103, 189),
        "base" => RGBColor(23, 190, 207),
        "tuned" => RGBColor(214, 39, 40),
        _ => RGBColor(140, 86, 75),
    }
}

/// A stable colour per proposal outcome.
fn outcome_color(name: &str) -> RGBColor {
    match name {
        "ok" => RGBColor(44, 160, 44),
        "parse_error" => RGBColor(214, 39, 40),
        "shape_error" => RGBColor(255, 127, 14),
        "over_budget" => RGBColor(148, 103, 189),
        "duplicate" => RGBColor(127, 127, 127),
        "timeout" => RGBColor(23, 190, 207),
        "server_error" => RGBColor(140, 86, 75),
        _ => RGBColor(188, 189, 34),
    }
}

const OUTCOMES: [&str; 7] = [
    "ok",
    "parse_error",
    "shape_error",
    "over_budget",
    "duplicate",
    "timeout",
    "server_error",
];

fn axis_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.01);
    ((lo - pad).max(0.0), (hi + pad).min(1.0).max(lo + 0.02))
}

/// A chart on an SVG drawing area with two `f64` axes.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A drawing failure of an SVG chart.
type DrawError<'b> = DrawingAreaErrorKind<<SVGBackend<'b> as DrawingBackend>::ErrorType>;

/// A chart of top-1 accuracy (in percent) against a counted x axis (steps,
/// epochs), its mesh drawn.
fn accuracy_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    x_desc: &str,
    y: std::ops::Range<f64>,
    y_desc: &str,
) -> Result<Chart<'a, 'b>, DrawError<'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
        .draw()?;
    Ok(chart)
}

/// Accuracy of every trained search trial, in order, with the best-so-far line.
pub fn plot_accuracy(trials: &[TrialRecord]) -> Result<String, ReportError> {
    let points: Vec<(f64, f64, &str)> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search && t.status() == TrialStatus::Done)
        .filter_map(|t| Some((t.trial.step as f64, t.accuracy?, t.trial.proposer.as_str())))
        .collect();
    let mut best = Vec::new();
    let mut so_far = f64::NEG_INFINITY;
    for &(x, y, _) in &points {
        so_far = so_far.max(y);
        best.push((x, so_far));
    }
    let last = trials
        .iter()
        .map(|t| t.trial.step)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (lo, hi) = axis_range(points.iter().map(|p| p.1));
    let mut svg = String::new();
    {
        let err = plot_err("accuracy per trial");
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = accuracy_chart(
            &root,
            "Accuracy per trial",
            -0.5..last + 0.5,
            "proposal step (0 = seed)",
            lo..hi,
            "top-1 accuracy",
        )
        .map_err(&err)?;
        let mut names: Vec<&str> = points.iter().map(|p| p.2).collect();
        names.dedup();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let color = proposer_color(name);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == name)
                        .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(&err)?
                .label(name.to_string())
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
        let mut steps = Vec::new();
        for (i, &(x, y)) in best.iter().enumerate() {
            if i > 0 {
                steps.push((x, best[i - 1].1));
            }
            steps.push((x, y));
        }
        if let Some(&(_, y)) = best.last() {
            steps.push((last + 0.5, y));
        }
        chart
            .draw_series(LineSeries::new(steps, BLACK.stroke_width(2)))
            .map_err(&err)?
            .label("best so far")
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// A multi-fidelity search's learning curves: test accuracy against epochs,
/// one line per network (its highest segment's per-epoch telemetry, which
/// continues its lower rungs'), the promoted ones in colour with a dot at each
/// rung they finished, the others grey. `None` for a flat search.
pub fn plot_rungs(trials: &[TrialRecord]) -> Result<Option<String>, ReportError> {
    let search: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search && t.status() == TrialStatus::Done)
        .collect();
    if !search.iter().any(|t| t.trial.rung > 0) {
        return Ok(None);
    }
    // Per network: its highest done segment, and the rungs it finished.
    let mut top: BTreeMap<&str, &TrialRecord> = BTreeMap::new();
    let mut dots: Vec<(f64, f64, bool)> = Vec::new();
    for t in &search {
        let e = top.entry(t.trial.hash.as_str()).or_insert(t);
        if t.trial.epochs > e.trial.epochs {
            *e = t;
        }
    }
    let curve = |t: &TrialRecord| -> Vec<(f64, f64)> {
        t.telemetry
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| Some((e.get("epoch")?.as_f64()?, e.get("top1")?.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    for t in &search {
        let promoted = top
            .get(t.trial.hash.as_str())
            .is_some_and(|h| h.trial.rung > 0);
        if let Some(a) = t.accuracy {
            dots.push((f64::from(t.trial.epochs), a, promoted));
        }
    }
    let max_epochs = search.iter().map(|t| t.trial.epochs).max().unwrap_or(1) as f64;
    let (lo, hi) = axis_range(dots.iter().map(|d| d.1));
    let mut svg = String::new();
    {
        let err = plot_err("accuracy against epochs");
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = accuracy_chart(
            &root,
            "Accuracy against epochs (rungs)",
            0.5..max_epochs + 0.5,
            "epochs trained",
            lo..hi,
            "top-1 accuracy",
        )
        .map_err(&err)?;
        let grey = RGBColor(170, 170, 170);
        let promoted_color = RGBColor(214, 39, 40);
        for t in top.values().filter(|t| t.trial.rung == 0) {
            chart
                .draw_series(LineSeries::new(curve(t), grey.stroke_width(1)))
                .map_err(&err)?;
        }
        let mut labelled = false;
        for t in top.values().filter(|t| t.trial.rung > 0) {
            let series = chart
                .draw_series(LineSeries::new(curve(t), promoted_color.stroke_width(2)))
                .map_err(&err)?;
            if !labelled {
                labelled = true;
                series.label("promoted").legend(move |(x, y)| {
                    PathElement::new(vec![(x - 8, y), (x + 8, y)], promoted_color.stroke_width(2))
                });
            }
        }
        chart
            .draw_series(dots.iter().map(|&(x, y, p)| {
                Circle::new((x, y), 3, if p { promoted_color } else { grey }.filled())
            }))
            .map_err(&err)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(Some(svg))
}

/// Best accuracy so far against the proposal step, per proposer: the mean over
/// its runs (thick) and each run (thin).
pub fn plot_best_so_far(runs: &[(String, Vec<&RunData>)]) -> Result<String, ReportError> {
    let steps = runs
        .iter()
        .flat_map(|(_, rs)| rs.iter())
        .flat_map(|r| r.search().map(|t| t.trial.step))
        .max()
        .unwrap_or(1)
        .max(1);
    let curves: Vec<(&str, Vec<Vec<Option<f64>>>)> = runs
        .iter()
        .map(|(name, rs)| {
            (
                name.as_str(),
                rs.iter().map(|r| r.best_so_far(steps)).collect(),
            )
        })
        .collect();
    let (lo, hi) = axis_range(
        curves
            .iter()
            .flat_map(|(_, c)| c.iter().flatten())
            .flatten()
            .copied(),
    );
    let mut svg = String::new();
    {
        let err = plot_err("best so far");
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = accuracy_chart(
            &root,
            "Best accuracy so far",
            0.5..steps as f64 + 0.5,
            "proposal step",
            lo..hi,
            "best top-1 accuracy",
        )
        .map_err(&err)?;
        for (name, runs) in &curves {
            let color = proposer_color(name);
            for run in runs {
                let line = run
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((i as f64 + 1.0, (*v)?)));
                chart
                    .draw_series(LineSeries::new(line, color.mix(0.25).stroke_width(1)))
                    .map_err(&err)?;
            }
            let mean: Vec<(f64, f64)> = (0..steps as usize)
                .filter_map(|i| {
                    let at: Vec<f64> = runs.iter().filter_map(|r| r[i]).collect();
                    (!at.is_empty())
                        .then(|| (i as f64 + 1.0, at.iter().sum::<f64>() / at.len() as f64))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(mean, color.stroke_width(3)))
                .map_err(&err)?
                .label(format!("{name} (mean of {})", runs.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x - 8, y), (x + 8, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// The Pareto front of (parameters, accuracy): every point no other point beats
/// with at most as many parameters and higher accuracy, by increasing parameters.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|l| p.1 > l.1) {
            front.push(p);
        }
    }
    front
}

/// Accuracy against parameters (log scale) with the Pareto front.
pub fn plot_pareto(trials: &[TrialRecord]) -> Result<String, ReportError> {
    let points: Vec<(f64, f64, &str)> = trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search && t.status() == TrialStatus::Done)
        .filter_map(|t| {
            Some((
                t.trial.params? as f64,
                t.accuracy?,
                t.trial.proposer.as_str(),
            ))
        })
        .collect();
    let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
    let front = pareto_front(&xy);
    let (xlo, xhi) = xy.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (xlo, xhi) = if xlo.is_finite() && xlo > 0.0 {
        (xlo / 1.5, xhi * 1.5)
    } else {
        (1.0, 10.0)
    };
    let (lo, hi) = axis_range(xy.iter().map(|p| p.1));
    let mut svg = String::new();
    {
        let err = plot_err("accuracy vs parameters");
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Accuracy vs parameters (Pareto front)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d((xlo..xhi).log_scale(), lo..hi)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("parameters (log scale)")
            .y_desc("top-1 accuracy")
            .x_label_formatter(&|v| short_count(*v))
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .draw()
            .map_err(&err)?;
        let mut names: Vec<&str> = points.iter().map(|p| p.2).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let color = proposer_color(name);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == name)
                        .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(&err)?
                .label(name.to_string())
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(LineSeries::new(front.clone(), red.stroke_width(2)))
            .map_err(&err)?
            .label("Pareto front")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x - 8, y), (x + 8, y)], red.stroke_width(2))
            });
        chart
            .draw_series(
                front
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 6, red.stroke_width(2))),
            )
            .map_err(&err)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// `1234` → `1.2k`, `2500000` → `2.5M`.
fn short_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Proposal outcomes per proposer: `(proposer, [(outcome, count)])`, seed left out.
pub fn outcome_counts(trials: &[TrialRecord]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.trial.stage == Stage::Search && t.trial.step > 0 && !t.is_promotion())
    {
        *counts
            .entry(t.trial.proposer.clone())
            .or_default()
            .entry(t.trial.outcome.clone())
            .or_default() += 1;
    }
    counts
}

/// Stacked bars of proposal outcomes, one bar per proposer.
pub fn plot_outcomes(
    counts: &BTreeMap<String, BTreeMap<String, usize>>,
) -> Result<String, ReportError> {
    let names: Vec<&String> = counts.keys().collect();
    let top = counts
        .values()
        .map(|c| c.values().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = String::new();
    {
        let err = plot_err("proposal outcomes");
        let root = SVGBackend::with_string(&mut svg, (720, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let n = names.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Proposal outcomes per proposer", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..top * 1.1)
            .map_err(&err)?;
        let labels: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len().max(1))
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 0.01 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("proposals")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(&err)?;
        for outcome in OUTCOMES {
            let color = outcome_color(outcome);
            let mut bars = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let c = &counts[*name];
                let below: usize = OUTCOMES
                    .iter()
                    .take_while(|o| **o != outcome)
                    .map(|o| c.get(*o).copied().unwrap_or(0))
                    .sum();
                let here = c.get(outcome).copied().unwrap_or(0);
                if here > 0 {
                    let x = i as f64;
                    bars.push(Rectangle::new(
                        [(x - 0.3, below as f64), (x + 0.3, (below + here) as f64)],
                        color.filled(),
                    ));
                }
            }
            if bars.is_empty() {
                continue;
            }
            chart
                .draw_series(bars)
                .map_err(&err)?
                .label(outcome)
                .legend(move |(x, y)| {
                    Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:13px}
figure{margin:1em 0}details{margin:.5em 0}summary{cursor:pointer}.muted{color:#777}";

pub(crate) fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), thousands)
}

/// The per-layer summary table of a source, or why there is none.
fn summary_table(source: &str) -> String {
    match nas_dsl::check_str(source) {
        Ok(nets) => nets
            .first()
            .map(|n| nas_dsl::summary::summarize(n).table())
            .unwrap_or_default(),
        Err(e) => format!("(the source does not check: {e})"),
    }
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// The body of a run's report (also used inside the comparison report).
pub fn run_section(run: &RunData) -> Result<String, ReportError> {
    let mut board = leaderboard(&run.trials);
    mark_ties(&mut board, &run.noise);
    let mut b = String::new();
    let search: Vec<&TrialRecord> = run.search().collect();
    let by_status = |s: TrialStatus| search.iter().filter(|t| t.status() == s).count();
    let train_s: f64 = run.trials.iter().filter_map(|t| t.train_s).sum();
    let propose_s: f64 = run.trials.iter().map(|t| t.trial.propose_ms / 1e3).sum();
    let _ = writeln!(
        b,
        "<p>{} search trials: {} done, {} invalid, {} diverged, {} failed, {} pending; {:.1} s training, {:.1} s proposing.</p>",
        search.len(),
        by_status(TrialStatus::Done),
        by_status(TrialStatus::Invalid),
        by_status(TrialStatus::Diverged),
        by_status(TrialStatus::Failed),
        by_status(TrialStatus::Pending) + by_status(TrialStatus::Running),
        train_s,
        propose_s,
    );
    if let Some(best) = best(&board) {
        let _ = writeln!(
            b,
            "<p><b>Best:</b> trial {} ({}), top-1 {}{}, {} parameters, {} FLOPs.</p>",
            best.trial,
            escape(&best.proposer),
            pct(Some(best.accuracy)),
            best.final_accuracy
                .map(|a| format!(
                    " ({} after the final {} epochs)",
                    pct(Some(a)),
                    best.final_epochs.unwrap_or(0)
                ))
                .unwrap_or_default(),
            count(best.params),
            count(best.flops),
        );
    }
    let _ = writeln!(
        b,
        "<p><b>Noise.</b> {}</p>",
        escape(&noise_text(&board, &run.noise))
    );
    b.push_str("<h2>Plots</h2>\n");
    for svg in [
        Some(plot_accuracy(&run.trials)?),
        plot_rungs(&run.trials)?,
        Some(plot_pareto(&run.trials)?),
        Some(plot_outcomes(&outcome_counts(&run.trials))?),
    ]
    .into_iter()
    .flatten()
    {
        let _ = writeln!(b, "<figure>{svg}</figure>");
    }
    let rungs = board.iter().any(|e| e.rung > 0);
    b.push_str("<h2>Leaderboard</h2>\n<table>\n<tr><th>rank</th><th>trial</th><th>step</th><th class=\"l\">proposer</th><th>top-1</th><th>top-5</th><th>test loss</th><th>epochs</th><th>params</th><th>FLOPs</th><th>final top-1</th></tr>\n");
    for e in &board {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if e.tied {
                format!("{} (tied)", e.rank)
            } else {
                e.rank.to_string()
            },
            e.trial,
            e.step,
            escape(&e.proposer),
            pct(Some(e.accuracy)),
            pct(e.top5),
            e.test_loss
                .map_or_else(|| "-".into(), |l| format!("{l:.4}")),
            e.epochs_label(rungs),
            count(e.params),
            count(e.flops),
            match (e.final_accuracy, e.final_epochs) {
                (Some(a), Some(n)) => format!("{} ({n} ep)", pct(Some(a))),
                _ => "-".into(),
            },
        );
    }
    b.push_str("</table>\n<h2>Networks</h2>\n");
    for e in board.iter().take(SHOWN) {
        let _ = writeln!(
            b,
            "<details{}><summary>#{} — trial {}, {} — top-1 {}, {} params{}</summary>\n<pre>{}</pre>\n<pre>{}</pre>\n</details>",
            if e.rank == 1 { " open" } else { "" },
            e.rank,
            e.trial,
            escape(&e.proposer),
            pct(Some(e.accuracy)),
            count(e.params),
            e.note
                .as_deref()
                .map(|n| format!(" <span class=\"muted\">({})</span>", escape(n)))
                .unwrap_or_default(),
            escape(&e.source),
            escape(&summary_table(&e.source)),
        );
    }
    let rejected: Vec<&&TrialRecord> = search
        .iter()
        .filter(|t| t.status() != TrialStatus::Done && t.status() != TrialStatus::Pending)
        .collect();
    if !rejected.is_empty() {
        b.push_str("<h2>Rejected and failed trials</h2>\n<table>\n<tr><th>trial</th><th>step</th><th class=\"l\">proposer</th><th class=\"l\">status</th><th class=\"l\">outcome</th><th class=\"l\">reason</th></tr>\n");
        for t in rejected {
            let reason = t.trial.error.as_deref().unwrap_or("");
            let short: String = reason
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect();
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                t.id,
                t.trial.step,
                escape(&t.trial.proposer),
                t.status(),
                escape(&t.trial.outcome),
                escape(&short),
            );
        }
        b.push_str("</table>\n");
    }
    Ok(b)
}

/// The whole `report.html` of a run.
pub fn render(run: &RunData) -> Result<String, ReportError> {
    let mut body = format!("<h1>Search run <code>{}</code></h1>\n", escape(&run.name));
    body.push_str(&run_section(run)?);
    if let Some(config) = &run.config {
        let _ = writeln!(
            body,
            "<h2>Configuration</h2>\n<pre>{}</pre>",
            escape(&serde_json::to_string_pretty(config).unwrap_or_default())
        );
    }
    Ok(page(&format!("nas run {}", run.name), &body))
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`,
/// so a reader (or a killed process) never leaves half a file.
pub(crate) fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path))
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    replace_file(path, text).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The best network's text: a proposed network's doc comment (inherited from its
/// seed, and describing the seed's widths) is replaced by where it came from.
fn best_source(best: &Entry) -> String {
    if best.step == 0 {
        return best.source.clone();
    }
    match nas_dsl::parse_str(&best.source).map(|f| f.nets.into_iter().next()) {
        Ok(Some(mut net)) => {
            let mut docs = vec![format!(
                " Found by a search: trial {}, proposed by `{}`{}.",
                best.trial,
                best.proposer,
                best.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            )];
            if let (Some(p), Some(f)) = (best.params, best.flops) {
                docs.push(format!(
                    " {} parameters, {} multiply-accumulates per image.",
                    thousands(p),
                    thousands(f)
                ));
            }
            net.docs = docs;
            nas_dsl::print(&net)
        }
        _ => best.source.clone(),
    }
}

/// Writes `report.html` and (when a network trained) `best.nas` into `dir`;
/// returns the leaderboard.
pub fn write_run(dir: &Path, run: &RunData) -> Result<Vec<Entry>, ReportError> {
    let html = render(run)?;
    write_file(&dir.join(REPORT_FILE), &html)?;
    let mut board = leaderboard(&run.trials);
    mark_ties(&mut board, &run.noise);
    if let Some(best) = best(&board) {
        let accuracy = best.final_accuracy.unwrap_or(best.accuracy);
        let epochs = best.final_epochs.unwrap_or(best.epochs);
        let text = format!(
            "// Best network of run `{}`: trial {}, top-1 {:.2}% after {} epochs, {} parameters.\n{}",
            run.name,
            best.trial,
            100.0 * accuracy,
            epochs,
            count(best.params),
            best_source(best)
        );
        write_file(&dir.join(BEST_FILE), &text)?;
    }
    Ok(board)
}

/// One proposer's results over repeated runs.
#[derive(Clone, Debug, Serialize)]
pub struct ProposerResult {
    /// The proposer.
    pub proposer: String,
    /// Best-found accuracy of each run (see [`RunData::best_found`]), by seed.
    pub best: Vec<f64>,
    /// Their summary.
    pub summary: Option<Summary>,
    /// Proposals made, over all runs.
    pub proposals: usize,
    /// Valid proposals, over all runs.
    pub valid: usize,
    /// Proposals that repeated an architecture the run already had, over all runs.
    pub duplicates: usize,
}

impl ProposerResult {
    /// `valid / proposals` (0 for none).
    pub fn valid_rate(&self) -> f64 {
        share(self.valid, self.proposals)
    }

    /// `duplicates / proposals` (0 for none).
    pub fn duplicate_rate(&self) -> f64 {
        share(self.duplicates, self.proposals)
    }
}

/// `part / whole`, 0 for nothing.
pub(crate) fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The test of one proposer against another.
#[derive(Clone, Debug, Serialize)]
pub struct PairTest {
    /// The first proposer (the effect is positive when it is better).
    pub a: String,
    /// The second proposer.
    pub b: String,
    /// Mann–Whitney U, two-sided.
    pub mann_whitney: Option<MannWhitney>,
    /// Welch's t-test, two-sided.
    pub welch: Option<Welch>,
    /// Cliff's delta (= rank-biserial correlation) of `a` over `b`.
    pub cliffs_delta: Option<f64>,
    /// Mean best-found accuracy of `a` minus that of `b` (a fraction).
    pub mean_difference: Option<f64>,
    /// What the test shows, in one sentence (significance at 0.05 and the
    /// difference against the noise of one trial).
    pub verdict: String,
}

/// The significance level of the comparison's verdicts.
pub const ALPHA: f64 = 0.05;

fn pair_verdict(t: &PairTest, noise: &Noise) -> String {
    let p = t.mann_whitney.map(|m| m.p).or(t.welch.map(|w| w.p));
    let Some(p) = p else {
        return format!(
            "{} vs {}: too few runs to test (each side needs at least 2)",
            t.a, t.b
        );
    };
    let diff = t.mean_difference.unwrap_or(0.0) * 100.0;
    let against_noise = match noise.sd {
        Some(sd) if sd > 0.0 => format!(
            "; the means differ by {:.2} points, {:.1}× the noise of one trial (±{sd:.2})",
            diff.abs(),
            diff.abs() / sd
        ),
        _ => format!(
            "; the means differ by {:.2} points (the noise of one trial is unknown)",
            diff.abs()
        ),
    };
    if p < ALPHA {
        let (winner, loser) = if diff >= 0.0 {
            (&t.a, &t.b)
        } else {
            (&t.b, &t.a)
        };
        format!("{winner} finds better networks than {loser} (p = {p:.4} < {ALPHA}){against_noise}")
    } else {
        format!(
            "no significant difference between {} and {} (p = {p:.4} ≥ {ALPHA}): these runs do not show that either is better{against_noise}",
            t.a, t.b
        )
    }
}

/// A comparison of proposers over repeated runs from the same seed network.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Per proposer.
    pub proposers: Vec<ProposerResult>,
    /// Every pair.
    pub tests: Vec<PairTest>,
    /// The noise of one trial's score (from the runs' task).
    pub noise: Noise,
}

impl Comparison {
    /// Computes the comparison from each proposer's runs.
    pub fn new(runs: &[(String, Vec<RunData>)]) -> Comparison {
        let proposers: Vec<ProposerResult> = runs
            .iter()
            .map(|(name, runs)| {
                let best: Vec<f64> = runs.iter().filter_map(RunData::best_found).collect();
                let (proposals, valid) = runs.iter().fold((0, 0), |(p, v), r| {
                    let (rp, rv) = r.valid_rate();
                    (p + rp, v + rv)
                });
                ProposerResult {
                    proposer: name.clone(),
                    summary: stats::summary(&best),
                    best,
                    proposals,
                    valid,
                    duplicates: runs.iter().map(RunData::duplicates).sum(),
                }
            })
            .collect();
        let noise = runs
            .iter()
            .flat_map(|(_, r)| r.iter())
            .map(|r| r.noise.clone())
            .find(|n| n.sd.is_some())
            .unwrap_or_else(Noise::unknown);
        let mut tests = Vec::new();
        for (i, a) in proposers.iter().enumerate() {
            for b in &proposers[i + 1..] {
                let mut t = PairTest {
                    a: a.proposer.clone(),
                    b: b.proposer.clone(),
                    mann_whitney: stats::mann_whitney_u(&a.best, &b.best),
                    welch: stats::welch_t(&a.best, &b.best),
                    cliffs_delta: stats::cliffs_delta(&a.best, &b.best),
                    mean_difference: a.summary.zip(b.summary).map(|(x, y)| x.mean - y.mean),
                    verdict: String::new(),
                };
                t.verdict = pair_verdict(&t, &noise);
                tests.push(t);
            }
        }
        Comparison {
            proposers,
            tests,
            noise,
        }
    }

    /// The terminal tables.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10}  {:>4}  {:>8}  {:>8}  {:>7}  {:>8}  {:>8}  {:>11}  {:>10}",
            "proposer", "runs", "mean", "median", "sd", "min", "max", "valid rate", "duplicates"
        );
        for p in &self.proposers {
            match &p.summary {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "{:<10}  {:>4}  {:>7.2}%  {:>7.2}%  {:>6.2}%  {:>7.2}%  {:>7.2}%  {:>5.1}% ({}/{})  {:>5.1}% ({})",
                        p.proposer,
                        s.n,
                        100.0 * s.mean,
                        100.0 * s.median,
                        100.0 * s.sd,
                        100.0 * s.min,
                        100.0 * s.max,
                        100.0 * p.valid_rate(),
                        p.valid,
                        p.proposals,
                        100.0 * p.duplicate_rate(),
                        p.duplicates
                    );
                }
                None => {
                    let _ = writeln!(out, "{:<10}  {:>4}  (no trained run)", p.proposer, 0);
                }
            }
        }
        for t in &self.tests {
            let p = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |p| format!("{p:.4}"));
            let _ = writeln!(
                out,
                "{} vs {}: Mann–Whitney U = {} (p = {}, {}), Welch t = {} (p = {}), Cliff's delta = {}",
                t.a,
                t.b,
                t.mann_whitney
                    .map_or_else(|| "n/a".into(), |m| format!("{:.1}", m.u)),
                p(t.mann_whitney.map(|m| m.p)),
                t.mann_whitney.map_or("n/a", |m| match m.method {
                    stats::Method::Exact => "exact",
                    stats::Method::Asymptotic => "normal approx.",
                }),
                t.welch
                    .map_or_else(|| "n/a".into(), |w| format!("{:.3}", w.t)),
                p(t.welch.map(|w| w.p)),
                t.cliffs_delta.map_or_else(
                    || "n/a".into(),
                    |d| format!("{d:+.3} ({})", stats::delta_magnitude(d))
                ),
            );
            let _ = writeln!(out, "  → {}", t.verdict);
        }
        out
    }

    /// The comparison as an HTML section.
    pub fn section(&self) -> String {
        let mut b = String::from(
            "<h2>Comparison of proposers</h2>\n<p>Best accuracy found per run (the best proposed trial at the search fidelity; the seed's when no proposal trained).</p>\n<table>\n<tr><th class=\"l\">proposer</th><th>runs</th><th>mean</th><th>median</th><th>sd</th><th>min</th><th>max</th><th>valid proposals</th><th>duplicates</th></tr>\n",
        );
        for p in &self.proposers {
            let s = p.summary;
            let _ = writeln!(
                b,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}% ({}/{})</td><td>{:.1}% ({})</td></tr>",
                escape(&p.proposer),
                s.map_or(0, |s| s.n),
                pct(s.map(|s| s.mean)),
                pct(s.map(|s| s.median)),
                pct(s.map(|s| s.sd)),
                pct(s.map(|s| s.min)),
                pct(s.map(|s| s.max)),
                100.0 * p.valid_rate(),
                p.valid,
                p.proposals,
                100.0 * p.duplicate_rate(),
                p.duplicates,
            );
        }
        b.push_str("</table>\n<table>\n<tr><th class=\"l\">pair</th><th>Mann–Whitney U</th><th>p (MWU)</th><th>Welch t</th><th>p (Welch)</th><th>Cliff's delta</th></tr>\n");
        for t in &self.tests {
            let _ = writeln!(
                b,
                "<tr><td class=\"l\">{} vs {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.a),
                escape(&t.b),
                t.mann_whitney
                    .map_or_else(|| "n/a".into(), |m| format!("{:.1}", m.u)),
                t.mann_whitney
                    .map_or_else(|| "n/a".into(), |m| format!("{:.4}", m.p)),
                t.welch
                    .map_or_else(|| "n/a".into(), |w| format!("{:.3}", w.t)),
                t.welch
                    .map_or_else(|| "n/a".into(), |w| format!("{:.4}", w.p)),
                t.cliffs_delta.map_or_else(
                    || "n/a".into(),
                    |d| format!("{d:+.3} ({})", stats::delta_magnitude(d))
                ),
            );
        }
        b.push_str("</table>\n<ul>\n");
        for t in &self.tests {
            let _ = writeln!(b, "<li>{}</li>", escape(&t.verdict));
        }
        let _ = writeln!(
            b,
            "</ul>\n<p><b>Noise.</b> One trial's score: {}.</p>",
            escape(&match self.noise.sd {
                Some(sd) => format!("±{sd:.2} points, {}", self.noise.source),
                None => self.noise.source.clone(),
            })
        );
        b
    }

    /// A comparison report: the section, the best-so-far curves of each
    /// proposer's runs, and links to the runs.
    pub fn render(&self, title: &str, runs: &[(String, Vec<(PathBuf, RunData)>)]) -> String {
        let mut body = format!("<h1>{}</h1>\n", escape(title));
        body.push_str(&self.body(runs, ""));
        page(title, &body)
    }

    /// The report's body without its title: the section, the best-so-far curves
    /// and the runs, linked under `link_prefix` (`""` beside the runs).
    pub fn body(&self, runs: &[(String, Vec<(PathBuf, RunData)>)], link_prefix: &str) -> String {
        let mut body = self.section();
        let curves: Vec<(String, Vec<&RunData>)> = runs
            .iter()
            .map(|(p, list)| (p.clone(), list.iter().map(|(_, r)| r).collect()))
            .collect();
        match plot_best_so_far(&curves) {
            Ok(svg) => body.push_str(&svg),
            Err(e) => {
                let _ = writeln!(
                    body,
                    "<p>(no best-so-far plot: {})</p>",
                    escape(&e.to_string())
                );
            }
        }
        body.push_str("<h2>Runs</h2>\n<ul>\n");
        for (proposer, list) in runs {
            for (dir, run) in list {
                let rel = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let _ = writeln!(
                    body,
                    "<li>{}: <a href=\"{}{}/report.html\">{}</a> — best found {}</li>",
                    escape(proposer),
                    escape(link_prefix),
                    escape(&rel),
                    escape(&run.name),
                    pct(run.best_found()),
                );
            }
        }
        body.push_str("</ul>\n");
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewTrial;

    fn rec(
        id: TrialId,
        step: u64,
        proposer: &str,
        status: TrialStatus,
        acc: Option<f64>,
        params: u64,
    ) -> TrialRecord {
        TrialRecord {
            id,
            trial: NewTrial {
                stage: Stage::Search,
                step,
                proposer: proposer.into(),
                status,
                name: Some("N".into()),
                source: format!("net N{id}(input = [4], classes = 2) {{ linear(4 -> 2); }}"),
                hash: format!("h{id}"),
                parent: None,
                outcome: if status == TrialStatus::Invalid {
                    "duplicate"
                } else {
                    "ok"
                }
                .into(),
                note: None,
                params: Some(params),
                flops: Some(params),
                epochs: 1,
                propose_ms: 1.0,
                error: None,
                rung: 0,
                continues: None,
            },
            telemetry: serde_json::json!([]),
            accuracy: acc,
            top5: None,
            test_loss: None,
            train_s: Some(1.0),
            runs: 1,
            created_at: 0.0,
            finished_at: None,
        }
    }

    fn run() -> RunData {
        RunData {
            name: "t".into(),
            config: None,
            noise: Noise::unknown(),
            trials: vec![
                rec(1, 0, "seed", TrialStatus::Done, Some(0.5), 100),
                rec(2, 1, "mutate", TrialStatus::Done, Some(0.7), 300),
                rec(3, 2, "mutate", TrialStatus::Invalid, None, 0),
                rec(4, 3, "mutate", TrialStatus::Done, Some(0.6), 50),
                rec(5, 4, "mutate", TrialStatus::Diverged, None, 80),
            ],
            attempts: Vec::new(),
        }
    }

    #[test]
    fn leaderboard_orders_by_accuracy_and_skips_untrained() {
        let board = leaderboard(&run().trials);
        let ids: Vec<TrialId> = board.iter().map(|e| e.trial).collect();
        assert_eq!(ids, vec![2, 4, 1]);
        assert_eq!(board[0].rank, 1);
        assert_eq!(best(&board).unwrap().trial, 2);
    }

    #[test]
    fn final_accuracy_decides_the_best() {
        let mut r = run();
        let mut f = rec(6, 3, "mutate", TrialStatus::Done, Some(0.9), 50);
        f.trial.stage = Stage::Final;
        f.trial.hash = "h4".into();
        f.trial.epochs = 5;
        r.trials.push(f);
        let board = leaderboard(&r.trials);
        assert_eq!(board[1].final_accuracy, Some(0.9));
        assert_eq!(board[1].final_epochs, Some(5));
        assert_eq!(best(&board).unwrap().trial, 4);
    }

    #[test]
    fn pareto_front_keeps_undominated_points() {
        let front = pareto_front(&[(300.0, 0.7), (100.0, 0.5), (50.0, 0.6), (80.0, 0.55)]);
        assert_eq!(front, vec![(50.0, 0.6), (300.0, 0.7)]);
    }

    #[test]
    fn best_so_far_duplicates_and_their_plot() {
        let r = run();
        assert_eq!(r.duplicates(), 1);
        assert_eq!(r.best_so_far(5), vec![Some(0.7); 5]);
        let slow = RunData {
            trials: vec![
                rec(1, 0, "seed", TrialStatus::Done, Some(0.5), 100),
                rec(2, 1, "random", TrialStatus::Diverged, None, 80),
                rec(3, 2, "random", TrialStatus::Done, Some(0.6), 50),
                rec(4, 3, "random", TrialStatus::Done, Some(0.55), 50),
            ],
            ..run()
        };
        assert_eq!(
            slow.best_so_far(4),
            vec![Some(0.5), Some(0.6), Some(0.6), Some(0.6)]
        );
        let svg = plot_best_so_far(&[("mutate".into(), vec![&r]), ("random".into(), vec![&slow])])
            .unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("random (mean of 1)"),
            "{svg}"
        );
        let c = Comparison::new(&[
            ("mutate".into(), vec![r.clone()]),
            ("random".into(), vec![slow]),
        ]);
        assert_eq!(
            (c.proposers[0].duplicates, c.proposers[1].duplicates),
            (1, 0)
        );
        assert!((c.proposers[0].duplicate_rate() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn best_found_and_valid_rate() {
        let r = run();
        assert_eq!(r.best_found(), Some(0.7));
        assert_eq!(r.valid_rate(), (4, 3));
        let only_seed = RunData {
            trials: vec![
                rec(1, 0, "seed", TrialStatus::Done, Some(0.5), 100),
                rec(2, 1, "ollama", TrialStatus::Invalid, None, 0),
            ],
            ..run()
        };
        assert_eq!(only_seed.best_found(), Some(0.5));
    }

    #[test]
    fn report_is_html_with_three_svg_plots() {
        let html = render(&run()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        assert!(html.contains("Pareto front"));
        assert!(html.contains("linear(4 -&gt; 2)"));
    }

    #[test]
    fn comparison_tables_name_both_tests() {
        let a = RunData {
            trials: vec![rec(1, 1, "mutate", TrialStatus::Done, Some(0.7), 1)],
            ..run()
        };
        let b = RunData {
            trials: vec![rec(1, 1, "random", TrialStatus::Done, Some(0.5), 1)],
            ..run()
        };
        let c = Comparison::new(&[
            ("mutate".into(), vec![a.clone(), a]),
            ("random".into(), vec![b.clone(), b]),
        ]);
        assert_eq!(c.proposers[0].best, vec![0.7, 0.7]);
        assert_eq!(c.tests[0].cliffs_delta, Some(1.0));
        let t = c.table();
        assert!(t.contains("Mann–Whitney U"), "{t}");
        assert!(t.contains("Welch t = n/a"), "{t}");
        assert!(c.section().contains("<table>"));
        // Two identical runs per side: the exact test cannot reach 0.05.
        assert!(
            c.tests[0]
                .verdict
                .starts_with("no significant difference between mutate and random"),
            "{}",
            c.tests[0].verdict
        );
        assert!(
            c.tests[0]
                .verdict
                .contains("differ by 20.00 points (the noise of one trial is unknown)")
        );
    }

    #[test]
    fn a_clear_win_is_named_and_measured_against_the_noise() {
        let runs = |p: &str, accs: &[f64]| -> Vec<RunData> {
            accs.iter()
                .map(|&a| RunData {
                    trials: vec![rec(1, 1, p, TrialStatus::Done, Some(a), 1)],
                    noise: Noise {
                        sd: Some(2.0),
                        source: "measured".into(),
                    },
                    ..run()
                })
                .collect()
        };
        let c = Comparison::new(&[
            (
                "random".into(),
                runs("random", &[0.50, 0.51, 0.52, 0.53, 0.54]),
            ),
            (
                "ollama".into(),
                runs("ollama", &[0.60, 0.61, 0.62, 0.63, 0.64]),
            ),
        ]);
        let v = &c.tests[0].verdict;
        // scipy 1.17.1: mannwhitneyu([.5,.51,.52,.53,.54], [.6,.61,.62,.63,.64]) -> p = 0.007937
        assert!(
            v.starts_with("ollama finds better networks than random (p = 0.0079 < 0.05)"),
            "{v}"
        );
        assert!(
            v.contains("differ by 10.00 points, 5.0× the noise of one trial (±2.00)"),
            "{v}"
        );
        assert_eq!(c.noise.sd, Some(2.0));
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() < tol, "{a} vs {b}");
    }

    #[test]
    fn trials_within_noise_of_the_best_are_tied() {
        let mut board = leaderboard(&run().trials);
        let accs: Vec<f64> = board.iter().map(|e| e.accuracy).collect();
        assert_eq!(accs, vec![0.7, 0.6, 0.5]);
        // Unknown noise: nothing is marked, and the text says the noise is unknown.
        mark_ties(&mut board, &Noise::unknown());
        assert!(board.iter().all(|e| !e.tied));
        assert!(noise_text(&board, &Noise::unknown()).starts_with("noise: unknown"));
        // SD 4 points: margin 1.96·√2·4 = 11.09 points, so 0.7 and 0.6 tie, 0.5 does not.
        let noise = Noise {
            sd: Some(4.0),
            source: "the check".into(),
        };
        close(
            noise.tie_margin().unwrap(),
            1.96 * 2f64.sqrt() * 0.04,
            1e-12,
        );
        mark_ties(&mut board, &noise);
        let tied: Vec<bool> = board.iter().map(|e| e.tied).collect();
        assert_eq!(tied, vec![true, true, false]);
        let text = noise_text(&board, &noise);
        assert!(text.contains("±4.00 points (1 SD, the check)"), "{text}");
        assert!(
            text.contains("2 trials are within noise of the best and tied with it (trials 2, 4)"),
            "{text}"
        );
        let table = leaderboard_table(&board, 10);
        assert!(
            table.contains("(=: within noise of the best, tied)"),
            "{table}"
        );
        // A small noise separates them all.
        let small = Noise {
            sd: Some(0.5),
            source: "x".into(),
        };
        mark_ties(&mut board, &small);
        assert_eq!(
            board.iter().filter(|e| e.tied).count(),
            1,
            "only the best itself"
        );
        assert!(noise_text(&board, &small).contains("ahead of every other by more than the noise"));
        let html = run_section(&RunData { noise, ..run() }).unwrap();
        assert!(
            html.contains("1 (tied)") && html.contains("2 (tied)"),
            "{html}"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
    }
}
