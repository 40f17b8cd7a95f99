//! Command-line interface: one file per subcommand, clap derive, doc comments as
//! help text. Errors are reported with their cause chain and a non-zero exit.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod bench_asha;
mod check;
mod compare;
mod corpus;
mod db;
mod evolve;
mod experiment;
mod fidelity;
mod finetune;
mod fmt;
mod mutate;
mod propose;
mod report;
mod summary;
mod train;
mod worker;

/// LLM-guided neural architecture search over channel configurations.
#[derive(Debug, Parser)]
#[command(name = "nas-core", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check `.nas` files and print rustc-style diagnostics; exit 1 on errors.
    ///
    /// Prints one line per net that checks (`ok  Name  params …  flops …  output
    /// […]`) and exits 0; on errors prints every diagnostic to stderr and exits 1.
    /// A file that cannot be read exits 2.
    Check(check::Args),
    /// Print (or with --check, verify) the canonical form of `.nas` files.
    ///
    /// The canonical form has arguments in a fixed order, defaults omitted,
    /// four-space indentation and one statement per line; `//` comments are not
    /// part of it and are dropped (`///` docs on a net are kept). A file with
    /// errors gets its diagnostics on stderr and exit 1, and is never written.
    Fmt(fmt::Args),
    /// Print a per-layer table: shapes, parameters and FLOPs.
    ///
    /// FLOPs are multiply-accumulates per sample. Blocks (`residual`, `concat`)
    /// get a row of their own with their contents indented under it. A file with
    /// errors gets its diagnostics on stderr and exit 1.
    Summary(summary::Args),
    /// Train a network on the synthetic task or CIFAR and print its telemetry.
    Train(train::Args),
    /// Measure training throughput of a fixed reference net.
    Bench(bench::Args),
    /// Write N distinct, checked mutants of the nets in a `.nas` file.
    Mutate(mutate::Args),
    /// Stream distinct, checked mutants of seed nets to a JSON-lines corpus.
    Corpus(corpus::Args),
    /// Print K proposals (LLM, mutation or random) with outcomes and the valid rate.
    Propose(propose::Args),
    /// Search: propose, train and record children of a seed network; then report.
    Evolve(evolve::Args),
    /// Check a search fidelity: rank agreement with longer training, seed noise.
    Fidelity(fidelity::Args),
    /// Fine-tune the proposer's model on `corpus pairs` output (LoRA), make it servable.
    Finetune(finetune::Args),
    /// The paper's experiment from a TOML configuration: corpus, corpus training,
    /// pairs, LoRA fine-tune, base vs tuned probe and comparison, one report.
    Experiment(experiment::Args),
    /// Write a run's report.html and best.nas and print its leaderboard.
    Report(report::Args),
    /// Compare proposers over repeated runs with the same budget (statistics).
    Compare(compare::Args),
    /// Claim and train the queued trials of a run (the worker role).
    Worker(worker::Args),
    /// Create or migrate a shared PostgreSQL store's schema (`db init URL`).
    Db(db::Args),
}

/// A reader that stops early (`nas-core mutate … | head`) closes our stdout, and
/// `println!` then fails with a broken pipe. That is the reader's choice, not an
/// error: leave quietly, as a Unix tool does, instead of reporting a panic.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Fmt(a) => fmt::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Train(a) => train::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Mutate(a) => mutate::run(a),
        Command::Corpus(a) => corpus::run(a),
        Command::Propose(a) => propose::run(a),
        Command::Evolve(a) => evolve::run(a),
        Command::Fidelity(a) => fidelity::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Report(a) => report::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Worker(a) => worker::run(a),
        Command::Db(a) => db::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
