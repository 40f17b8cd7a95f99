//! `nas-core fidelity`: the proxy-reliability check (see [`crate::fidelity`]).

use super::evolve::{Reporter, TaskArgs, with_log};
use crate::evolve::SearchConfig;
use crate::fidelity::{self, Check, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check a search fidelity before trusting a search: does it rank networks as
/// longer training does, and is its seed noise small against the differences
/// between networks?
///
/// Trains the seed network and K mutants of it (drawn with the search's width
/// grid) at the search fidelity with R training seeds, and once each at a
/// reference fidelity (by default 8× the epochs), on the same task flags as
/// `evolve`. Prints Spearman's ρ and Kendall's τ (with bootstrap 95 % intervals),
/// the seed noise, the between-network spread and a verdict; writes
/// `runs/<name>/fidelity.json` and `fidelity.html` (a scatter plot). `evolve`
/// and `report` read the noise from a check of the same task and fidelity.
/// A killed check continues with `--resume runs/<name>`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read the task settings from a search's TOML file (flags override it).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// The task, the seed and the search fidelity (as for `evolve`).
    #[command(flatten)]
    pub task: TaskArgs,

    /// Mutants of the seed to train (K); the seed is trained too.
    #[arg(long, value_name = "K", default_value_t = Settings::default().mutants)]
    pub mutants: usize,

    /// Training seeds per network at the search fidelity (R).
    #[arg(long, value_name = "R", default_value_t = Settings::default().repeats)]
    pub repeats: usize,

    /// The reference fidelity trains this many times longer (more epochs).
    #[arg(long, value_name = "F", default_value_t = Settings::default().reference_factor)]
    pub reference_factor: usize,

    /// Seeds the drawing of the mutants [default: 0].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// The check's name: its directory under `--runs-dir` (default: the time).
    #[arg(long)]
    pub name: Option<String>,

    /// Where run directories go [default: runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,

    /// Continue the check in this directory (finished trainings are kept).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "name", "runs_dir", "seed"])]
    pub resume: Option<PathBuf>,

    /// Print the figures as JSON on standard output.
    #[arg(long)]
    pub json: bool,

    /// Trainings at once, each in a worker process on its share of the cores
    /// (0: one per core; 1: in this process, one at a time).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub jobs: usize,
}

impl Args {
    fn config(&self) -> anyhow::Result<SearchConfig> {
        let mut c = match &self.config {
            Some(path) => SearchConfig::from_toml_file(path)?,
            None => SearchConfig::default(),
        };
        self.task.apply(&mut c);
        if let Some(s) = self.seed {
            c.seed = s;
        }
        if let Some(n) = &self.name {
            c.name = Some(n.clone());
        }
        if let Some(d) = &self.runs_dir {
            c.runs_dir = d.clone();
        }
        Ok(c)
    }
}

/// Runs `nas-core fidelity`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let check = match &args.resume {
        Some(dir) => {
            let given = args.task.given();
            if !given.is_empty() {
                anyhow::bail!(
                    "{} cannot change when resuming (the check keeps its settings)",
                    given.join(", ")
                );
            }
            Check::resume(dir)?
        }
        None => Check::create(
            args.config()?,
            Settings {
                mutants: args.mutants,
                repeats: args.repeats,
                reference_factor: args.reference_factor,
            },
        )?,
    };
    let mut check = check.with_jobs(args.jobs);
    let dir = check.dir().to_path_buf();
    let (done, total) = check.progress()?;
    eprintln!(
        "fidelity check in {}: {total} trainings ({done} already done)",
        dir.display()
    );
    let mut reporter = Reporter::new("");
    let analysis = with_log(&dir, || check.run(&mut reporter))??;
    drop(reporter);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        print!("{}", fidelity::summary_text(&analysis));
    }
    eprintln!(
        "written: {} and {}",
        dir.join(fidelity::RECORD_FILE).display(),
        dir.join(fidelity::PAGE_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}
