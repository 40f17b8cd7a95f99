//! `nas-core summary`: the per-layer table of every net in `.nas` files (output
//! shape, parameters, FLOPs, totals), or the same as JSON.

use super::check::{exit, read_all, report};
use anyhow::Context;
use nas_dsl::summary::{Summary, summarize};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nas-core summary` (its help text is on `Command::Summary`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.nas` files to summarise.
    #[arg(required = true, value_name = "FILE.nas")]
    pub files: Vec<PathBuf>,

    /// Print one JSON array holding every net's summary instead of tables.
    ///
    /// Each element: `{"net", "input", "output", "layers": [{"name", "kind",
    /// "depth", "output", "params", "flops"}], "params", "flops"}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `summary`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(&args.files)?;
    let mut failed = false;
    let mut summaries: Vec<Summary> = Vec::new();
    for source in &sources {
        match nas_dsl::check_str(&source.text) {
            Ok(nets) => summaries.extend(nets.iter().map(summarize)),
            Err(errors) => {
                report(source, &errors);
                failed = true;
            }
        }
    }
    if args.json {
        let json =
            serde_json::to_string_pretty(&summaries).context("cannot serialise the summary")?;
        println!("{json}");
    } else {
        for (i, s) in summaries.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", s.table());
        }
    }
    Ok(exit(failed))
}
