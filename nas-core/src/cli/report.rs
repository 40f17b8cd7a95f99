//! `nas-core report`: (re)writes `report.html` and `best.nas` of a run directory
//! and prints its leaderboard (`--json` for scripts); on a comparison directory,
//! rewrites the comparison report.

use super::compare;
use crate::evolve::load_run;
use crate::report;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write a run's report.html and best.nas, and print its leaderboard.
///
/// Works while the run goes on (it only reads the database). On a directory made
/// by `nas-core compare`, rewrites the comparison report instead.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory, e.g. `runs/evolve-20250101-120000`.
    #[arg(value_name = "RUN_DIR")]
    pub dir: PathBuf,

    /// Print the leaderboard (or the comparison) as JSON on standard output.
    #[arg(long)]
    pub json: bool,

    /// Rows of the leaderboard to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Runs `nas-core report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if compare::is_comparison(&args.dir) {
        let comparison = compare::rewrite_report(&args.dir)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&comparison)?);
        } else {
            print!("{}", comparison.table());
            eprintln!("report: {}", args.dir.join(report::REPORT_FILE).display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let run = load_run(&args.dir)?;
    let board = report::write_run(&args.dir, &run)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&board)?);
    } else {
        print!("{}", report::leaderboard_table(&board, args.top));
        eprintln!("{}", report::noise_text(&board, &run.noise));
        eprintln!("report: {}", args.dir.join(report::REPORT_FILE).display());
    }
    Ok(ExitCode::SUCCESS)
}
