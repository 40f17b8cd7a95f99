//! `nas-core compare`: runs each proposer from the same seed network with the same
//! budget, trainer and hyper-parameters for every seed, then reports best-of-run
//! accuracy per proposer (mean, median, spread), the Mann–Whitney U and Welch
//! p-values, Cliff's delta and the valid-proposal rates. Each run is an ordinary
//! run directory under the comparison's; rerunning the command continues it.

use super::evolve::{Reporter, SearchArgs, with_log};
use crate::evolve::{Evolve, EvolveError, ProposerKind, SearchConfig, TrainCache, default_name};
use crate::report::{self, Comparison, RunData};
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The comparison's record in its directory.
pub const COMPARE_FILE: &str = "compare.json";

fn proposer_arg(s: &str) -> Result<ProposerKind, String> {
    match ProposerKind::parse(s) {
        Ok(ProposerKind::Auto) => {
            Err("`auto` is not a proposer to compare; name `ollama` or `mutate` explicitly".into())
        }
        Ok(p) => Ok(p),
        Err(EvolveError::Config(m)) => Err(m),
        Err(e) => Err(e.to_string()),
    }
}

/// Compare proposers over repeated runs from the same seed network.
///
/// For every seed k in 0..N and every proposer, runs a search with search seed
/// `--seed + k` and training seed `--train-seed + k` (the same for all proposers
/// at that k), the same budget (`--trials`; no time budget unless given) and the
/// same trainer. Prints per-proposer best-of-run accuracy, the two-sided
/// Mann–Whitney U and Welch t-test p-values, Cliff's delta and valid-proposal
/// rates, and writes `report.html` and `compare.json` in `runs/<name>/`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Comma-separated proposers, e.g. `mutate,random` or `ollama,random`.
    #[arg(long, value_delimiter = ',', value_parser = proposer_arg, default_value = "mutate,random")]
    pub proposers: Vec<ProposerKind>,

    /// Runs per proposer (seeds 0..N).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub seeds: u64,

    /// Search settings shared by every run.
    #[command(flatten)]
    pub search: SearchArgs,

    /// Print the comparison as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// One run of a comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRef {
    proposer: String,
    seed: u64,
    dir: String,
}

/// What `compare.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    proposers: Vec<String>,
    seeds: u64,
    runs: Vec<RunRef>,
    #[serde(default, skip_deserializing)]
    comparison: Option<Comparison>,
}

/// Whether `dir` is a comparison's directory.
pub fn is_comparison(dir: &Path) -> bool {
    dir.join(COMPARE_FILE).is_file()
}

/// A proposer's name and its runs (directory, loaded data).
type Group = (String, Vec<(PathBuf, RunData)>);

/// Loads every run of a comparison, grouped by proposer in the recorded order.
fn load(dir: &Path, record: &Record) -> anyhow::Result<Vec<Group>> {
    let mut groups: Vec<Group> = record
        .proposers
        .iter()
        .map(|p| (p.clone(), Vec::new()))
        .collect();
    for r in &record.runs {
        let run_dir = dir.join(&r.dir);
        if !run_dir.join(crate::store::sqlite::DB_FILE).exists() {
            continue;
        }
        let run = crate::evolve::load_run(&run_dir)?;
        if let Some(g) = groups.iter_mut().find(|g| g.0 == r.proposer) {
            g.1.push((run_dir, run));
        }
    }
    Ok(groups)
}

/// Computes the comparison and writes its report and record.
fn write(dir: &Path, mut record: Record) -> anyhow::Result<Comparison> {
    let groups = load(dir, &record)?;
    let plain: Vec<(String, Vec<RunData>)> = groups
        .iter()
        .map(|(p, runs)| (p.clone(), runs.iter().map(|(_, r)| r.clone()).collect()))
        .collect();
    let comparison = Comparison::new(&plain);
    let title = format!(
        "Comparison {}: {} ({} seeds)",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        record.proposers.join(" vs "),
        record.seeds
    );
    let html = comparison.render(&title, &groups);
    let path = dir.join(report::REPORT_FILE);
    std::fs::write(&path, html).with_context(|| format!("cannot write `{}`", path.display()))?;
    record.comparison = Some(comparison.clone());
    let path = dir.join(COMPARE_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(comparison)
}

/// Rewrites a comparison's report from its runs.
pub fn rewrite_report(dir: &Path) -> anyhow::Result<Comparison> {
    let path = dir.join(COMPARE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let record: Record = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a comparison record", path.display()))?;
    write(dir, record)
}

/// Runs `nas-core compare`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.search.proposer.is_some() {
        bail!("`compare` takes `--proposers A,B`, not `--proposer`");
    }
    if args.seeds == 0 {
        bail!("`--seeds` must be at least 1");
    }
    let mut proposers: Vec<ProposerKind> = Vec::new();
    for p in &args.proposers {
        if !proposers.contains(p) {
            proposers.push(*p);
        }
    }
    if proposers.len() < 2 {
        bail!("`--proposers` needs at least two different proposers, e.g. `mutate,random`");
    }
    let mut base: SearchConfig = args.search.config()?;
    // Equal budgets: a time budget would give a slower proposer fewer trials.
    if args.search.time_budget.is_none() && args.search.config.is_none() {
        base.time_budget = None;
    }
    base.resolve()?;
    let name = base.name.clone().unwrap_or_else(|| default_name("compare"));
    let dir = base.runs_dir.join(&name);
    if dir.exists() && !dir.is_dir() {
        bail!("`{}` is not a directory", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut runs = Vec::new();
    for k in 0..args.seeds {
        for p in &proposers {
            runs.push(RunRef {
                proposer: p.as_str().into(),
                seed: k,
                dir: format!("{}-s{k}", p.as_str()),
            });
        }
    }
    let record = Record {
        proposers: proposers.iter().map(|p| p.as_str().to_string()).collect(),
        seeds: args.seeds,
        runs: runs.clone(),
        comparison: None,
    };
    std::fs::write(
        dir.join(COMPARE_FILE),
        serde_json::to_string_pretty(&record)?,
    )
    .with_context(|| format!("cannot write into `{}`", dir.display()))?;
    eprintln!(
        "comparison `{name}` in {}: {} × {} runs of {} proposals",
        dir.display(),
        proposers.len(),
        args.seeds,
        base.trials
    );
    let cache = TrainCache::default();
    for r in &runs {
        let mut cfg = base.clone();
        cfg.runs_dir = dir.clone();
        cfg.name = Some(r.dir.clone());
        cfg.proposer = ProposerKind::parse(&r.proposer)?;
        cfg.seed = base.seed.wrapping_add(r.seed);
        cfg.train.seed = base.train.seed.wrapping_add(r.seed);
        let run_dir = dir.join(&r.dir);
        let evolve = if run_dir.join(crate::store::sqlite::DB_FILE).exists() {
            let (trials, final_epochs) = (cfg.trials, cfg.final_epochs);
            Evolve::resume(&run_dir, |c| {
                c.trials = trials;
                c.final_epochs = final_epochs;
                Ok(())
            })?
        } else {
            Evolve::create(cfg)?
        };
        let mut evolve = evolve.with_cache(cache.clone());
        let mut reporter = Reporter::new(format!("[{} s{}] ", r.proposer, r.seed));
        let summary = with_log(&run_dir, || evolve.run(&mut reporter))??;
        drop(reporter);
        let run = RunData::load(&summary.name, evolve.store())?;
        eprintln!(
            "[{} s{}] best found {}",
            r.proposer,
            r.seed,
            run.best_found()
                .map_or_else(|| "none".to_string(), |a| format!("{:.2}%", 100.0 * a))
        );
    }
    let comparison = write(&dir, record)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.table());
    }
    eprintln!("report: {}", dir.join(report::REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}
