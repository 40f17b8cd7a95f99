//! `nas-core corpus`: streams distinct, checked mutants of seed networks to a
//! JSON-lines corpus with a progress bar, resuming an interrupted file.

use super::check::{read_all, report};
use crate::corpus::{Outcome, build};
use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nas_dsl::mutate::{Mutator, ValueSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Build a corpus of distinct mutants as JSON lines.
///
/// Each line is `{"hash", "parent_hash", "source", "mutation": {"op", …},
/// "params", "flops", "width_classes": [{"id", "width", "members", "allowed"}]}`:
/// a shape-checked mutant in canonical form, its SHA-256, its parent's hash, what
/// was done, its size and its width classes. Appending is safe to interrupt: a
/// rerun with the same output drops a trailing partial line, skips what is
/// already there and continues until the file holds N records.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The seed networks (`.nas` files; every net in them is a seed).
    #[arg(long = "from", required = true, num_args = 1.., value_name = "FILE.nas")]
    pub from: Vec<PathBuf>,

    /// How many records the corpus should hold in total.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,

    /// The random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// The widths a class may take: `uniform:MIN..=MAX` (every integer) or
    /// `step:STEP..=MAX` (the multiples of STEP up to MAX).
    #[arg(long, default_value = "uniform:4..=1024", value_name = "SPEC")]
    pub widths: ValueSet,

    /// Also use structural operators (duplicate, remove, kernel size).
    #[arg(long)]
    pub structural: bool,

    /// The corpus file (created, or appended to).
    #[arg(long, value_name = "corpus.jsonl")]
    pub out: PathBuf,
}

/// Whether to draw a progress bar: only for a person watching a terminal.
pub(crate) fn show_progress(stderr_is_terminal: bool, ci: bool) -> bool {
    stderr_is_terminal && !ci
}

fn progress_bar(n: u64) -> ProgressBar {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    if !show_progress(std::io::stderr().is_terminal(), ci) {
        return ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(n);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Runs `corpus`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(&args.from)?;
    let mut seeds = Vec::new();
    let mut failed = Vec::new();
    for source in &sources {
        match nas_dsl::check_str(&source.text) {
            Ok(nets) => seeds.extend(nets),
            Err(errors) => {
                report(source, &errors);
                failed.push(format!("`{}`", source.name()));
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} does not check; no corpus written", failed.join(", "));
    }
    let mutator = Mutator {
        widths: args.widths,
        structural: args.structural,
    };
    let n = usize::try_from(args.n).unwrap_or(usize::MAX);
    let bar = progress_bar(args.n);
    let outcome = build(seeds, &args.out, n, args.seed, mutator, |done| {
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let Outcome {
        existing,
        written,
        dropped_partial,
    } = outcome?;
    if dropped_partial {
        eprintln!("dropped a partial last line (an interrupted write)");
    }
    eprintln!(
        "wrote {written} records to `{}` ({} in total, {existing} already there)",
        args.out.display(),
        existing + written
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::show_progress;

    #[test]
    fn bars_only_for_a_terminal_outside_ci() {
        assert!(show_progress(true, false));
        assert!(!show_progress(true, true));
        assert!(!show_progress(false, false));
        assert!(!show_progress(false, true));
    }
}
