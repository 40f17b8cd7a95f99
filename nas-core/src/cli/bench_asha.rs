//! `nas-core bench asha`: flat search at the lowest rung, flat search at the
//! top rung and ASHA, each run with the same epoch budget (equal training
//! compute: every arm trains the same number of epochs × images) on the same
//! task, for several search seeds. Each run's best network (`best.nas`: the
//! best at the highest fidelity it reached) is then trained once more at the
//! top fidelity with a seed no search used, so no arm is scored by a number it
//! selected on; the arms are compared with `compare`'s statistics (Mann-Whitney
//! U, Welch's t, Cliff's δ). Finished (arm, seed) pairs are kept in
//! `results.jsonl` and skipped when the benchmark is run again.

use crate::evolve::{Evolve, ProposerKind, SearchConfig, load_task, search_epochs};
use crate::report;
use crate::stats;
use crate::train;
use anyhow::Context;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Options of `bench asha`.
#[derive(Debug, clap::Args)]
pub struct AshaArgs {
    /// Search seeds per arm (each arm runs once per seed).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// The lowest rung (and the flat-low arm's fidelity), in epochs.
    #[arg(long, default_value_t = 1)]
    pub min_epochs: usize,
    /// The top rung (and the flat-top arm's fidelity), in epochs.
    #[arg(long, default_value_t = 4)]
    pub max_epochs: usize,
    /// ASHA's reduction factor.
    #[arg(long, default_value_t = 2)]
    pub eta: u32,
    /// Training epochs each search may queue (the equal compute).
    #[arg(long, default_value_t = 24)]
    pub epoch_budget: u64,
    /// Trials trained at once in each search [default: one per core].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where the runs and `results.jsonl` go.
    #[arg(long, value_name = "DIR", default_value = "runs/bench-asha")]
    pub out: PathBuf,
    /// The task (as for `evolve`; the training seed of the searches is
    /// `--train-seed`, the final evaluation's is 1,000,000 + the search seed).
    #[command(flatten)]
    pub task: super::evolve::TaskArgs,
}

/// One finished (arm, seed).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Outcome {
    arm: String,
    seed: u64,
    /// Search epochs the run queued.
    epochs: u64,
    /// Trials trained (all rungs).
    trained: usize,
    wall_s: f64,
    /// The chosen network's search score and the fidelity it was measured at.
    search_top1: f64,
    search_epochs: u32,
    /// The chosen network at the top fidelity, fresh seed (0 if it diverged).
    top1: f64,
    /// Whether that training diverged.
    #[serde(default)]
    diverged: bool,
    params: u64,
}

const ARMS: [&str; 3] = ["flat-low", "flat-top", "asha"];

fn arm_config(args: &AshaArgs, arm: &str, seed: u64) -> SearchConfig {
    let mut cfg = SearchConfig {
        name: Some(format!("{arm}-s{seed}")),
        runs_dir: args.out.clone(),
        proposer: ProposerKind::Mutate,
        trials: 100_000,
        time_budget: None,
        epoch_budget: Some(args.epoch_budget),
        seed,
        jobs: args.jobs.unwrap_or(0),
        ..SearchConfig::default()
    };
    args.task.apply(&mut cfg);
    match arm {
        "flat-low" => cfg.epochs = args.min_epochs,
        "flat-top" => cfg.epochs = args.max_epochs,
        _ => {
            cfg.scheduler = "asha".into();
            cfg.min_epochs = Some(args.min_epochs);
            cfg.max_epochs = Some(args.max_epochs);
            cfg.eta = args.eta;
        }
    }
    cfg
}

fn run_arm(args: &AshaArgs, arm: &str, seed: u64) -> anyhow::Result<Outcome> {
    let cfg = arm_config(args, arm, seed);
    let dir = args.out.join(cfg.name.clone().unwrap_or_default());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let started = Instant::now();
    let mut search = Evolve::create(cfg.clone())?;
    let summary = search.run(&mut ())?;
    let wall_s = started.elapsed().as_secs_f64();
    let epochs = search_epochs(&search.store().trials()?);
    let best = report::best(&summary.leaderboard).context("the search trained nothing")?;
    let net = nas_dsl::check_str(&best.source)
        .ok()
        .and_then(|mut n| n.pop())
        .context("the best network does not check")?;
    let r = cfg.resolve()?;
    let task = load_task(&cfg, &r, &net)?;
    let mut tcfg = cfg.train_config(&r, args.max_epochs);
    tcfg.seed = 1_000_000 + seed;
    let report = train::train_on(r.backend, &net, &task, &tcfg, &mut ())?;
    Ok(Outcome {
        arm: arm.to_string(),
        seed,
        epochs,
        trained: summary.trained,
        wall_s,
        search_top1: best.accuracy,
        search_epochs: best.epochs,
        top1: if report.diverged() { 0.0 } else { report.top1 },
        diverged: report.diverged(),
        params: net.params(),
    })
}

/// Runs `bench asha`.
pub fn run(args: &AshaArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seeds >= 2, "`--seeds` must be at least 2");
    crate::evolve::asha::Asha::new(args.min_epochs as u32, args.max_epochs as u32, args.eta)
        .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join("results.jsonl");
    let mut done: Vec<Outcome> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for seed in 0..args.seeds {
        for arm in ARMS {
            if done.iter().any(|o| o.arm == arm && o.seed == seed) {
                continue;
            }
            let o = run_arm(args, arm, seed).with_context(|| format!("{arm}, seed {seed}"))?;
            println!(
                "{arm:<9} seed {seed}: {} epochs, {} trained, {:.0} s; best {:.2}% at {} epochs → {:.2}% at {} epochs (fresh seed{}), {} params",
                o.epochs,
                o.trained,
                o.wall_s,
                100.0 * o.search_top1,
                o.search_epochs,
                100.0 * o.top1,
                args.max_epochs,
                if o.diverged {
                    "; it diverged, scored 0"
                } else {
                    ""
                },
                o.params
            );
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)?;
            writeln!(f, "{}", serde_json::to_string(&o)?)?;
            done.push(o);
        }
    }
    print!("{}", summary(args, &done));
    Ok(ExitCode::SUCCESS)
}

fn summary(args: &AshaArgs, done: &[Outcome]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let scores = |arm: &str| -> Vec<f64> {
        done.iter()
            .filter(|o| o.arm == arm && o.seed < args.seeds)
            .map(|o| 100.0 * o.top1)
            .collect()
    };
    let _ = writeln!(
        out,
        "\nbest network at {} epochs (fresh seed), {} seeds, {} epochs of search each:",
        args.max_epochs, args.seeds, args.epoch_budget
    );
    let _ = writeln!(
        out,
        "{:<9}  {:>6}  {:>6}  {:>5}  {:>9}  {:>8}",
        "arm", "mean", "median", "sd", "epochs", "trained"
    );
    for arm in ARMS {
        let xs = scores(arm);
        let mine: Vec<&Outcome> = done.iter().filter(|o| o.arm == arm).collect();
        if let Some(s) = stats::summary(&xs) {
            let _ = writeln!(
                out,
                "{arm:<9}  {:>5.2}%  {:>5.2}%  {:>5.2}  {:>9.1}  {:>8.1}",
                s.mean,
                s.median,
                s.sd,
                mine.iter().map(|o| o.epochs as f64).sum::<f64>() / mine.len().max(1) as f64,
                mine.iter().map(|o| o.trained as f64).sum::<f64>() / mine.len().max(1) as f64,
            );
        }
    }
    let asha = scores("asha");
    for other in ["flat-low", "flat-top"] {
        let xs = scores(other);
        match (
            stats::mann_whitney_u(&asha, &xs),
            stats::welch_t(&asha, &xs),
            stats::cliffs_delta(&asha, &xs),
        ) {
            (Some(m), Some(w), Some(d)) => {
                let _ = writeln!(
                    out,
                    "asha vs {other}: mean difference {:+.2} points, Mann-Whitney U = {:.1}, p = {:.3}; Welch p = {:.3}; Cliff's δ = {:+.2} ({})",
                    stats::summary(&asha).map_or(0.0, |s| s.mean)
                        - stats::summary(&xs).map_or(0.0, |s| s.mean),
                    m.u,
                    m.p,
                    w.p,
                    d,
                    stats::delta_magnitude(d)
                );
            }
            _ => {
                let _ = writeln!(out, "asha vs {other}: too few results to compare");
            }
        }
    }
    out
}
