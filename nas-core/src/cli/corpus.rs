//! `nas-core corpus`: streams distinct, checked mutants of seed networks to a
//! JSON-lines corpus with a progress bar, resuming an interrupted file.

use super::check::{read_all, report};
use crate::corpus::{Outcome, build};
use crate::propose::Style;
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
///
/// `corpus train` trains corpus members; `corpus pairs` turns evaluated
/// networks into fine-tuning pairs.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// `train`: train corpus members; `pairs`: fine-tuning pairs from a corpus
    /// and measured results.
    #[command(subcommand)]
    pub command: Option<Sub>,

    /// The seed networks (`.nas` files; every net in them is a seed).
    #[arg(long = "from", required = true, num_args = 1.., value_name = "FILE.nas")]
    pub from: Vec<PathBuf>,

    /// How many records the corpus should hold in total.
    #[arg(long, required = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: Option<u64>,

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
    #[arg(long, required = true, value_name = "corpus.jsonl")]
    pub out: Option<PathBuf>,
}

/// The subcommands of `corpus`.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Fine-tuning pairs: each evaluated network, shown exactly as the proposer
    /// shows a parent (the same prompt function, in `--style`), answered by a
    /// better one in that style; TRL's conversational `messages` format.
    ///
    /// The better network is the best better one among the worse one's mutation
    /// neighbours (parent, children, siblings, from the corpus and the runs), and
    /// only where none is better, a better one drawn at random (seeded).
    /// Accuracies are compared only at the same number of epochs.
    Pairs(PairsArgs),
    /// Train the first N corpus members at a search fidelity, so that `corpus
    /// pairs` has measured results to pair.
    ///
    /// The trainings go into a run store like `evolve`'s (`OUT/nas.db`; give
    /// `OUT` to `corpus pairs --results`). Running it again on the same `--out`
    /// continues: finished trainings are kept, one a killed process left running
    /// is trained again, and a larger N adds members. The run keeps the task
    /// settings it was created with.
    Train(Box<TrainArgs>),
}

/// Arguments of `corpus train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The corpus (`nas-core corpus --out …`).
    #[arg(long, value_name = "corpus.jsonl")]
    pub corpus: PathBuf,

    /// How many corpus members to train (the first N records).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,

    /// The run directory (created, or continued).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,

    /// The task and the fidelity (as for `evolve`; the seed flags are unused:
    /// the networks are the corpus's).
    #[command(flatten)]
    pub task: super::evolve::TaskArgs,

    /// Trainings at once, each in a worker process on its share of the cores
    /// (0: one per core; 1: in this process, one at a time).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub jobs: usize,
}

/// Runs `corpus train`.
fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = crate::evolve::SearchConfig::default();
    args.task.apply(&mut cfg);
    let resuming = args.out.join(crate::store::sqlite::DB_FILE).exists();
    if resuming {
        let given = args.task.given();
        if !given.is_empty() {
            bail!(
                "{} cannot change when continuing `{}` (the run keeps its task settings)",
                given.join(", "),
                args.out.display()
            );
        }
    }
    let n = usize::try_from(args.n).unwrap_or(usize::MAX);
    let mut run =
        crate::corpus_train::CorpusRun::open(&args.out, cfg, &args.corpus, n)?.with_jobs(args.jobs);
    let before = run.progress()?;
    eprintln!(
        "corpus training in {}: {} members ({} already finished)",
        run.dir().display(),
        before.members,
        before.finished
    );
    let mut reporter = super::evolve::Reporter::new("");
    let dir = run.dir().to_path_buf();
    let after = super::evolve::with_log(&dir, || run.run(&mut reporter))??;
    drop(reporter);
    eprintln!(
        "{} of {} members trained to the end ({} diverged or failed); pairs: nas-core corpus pairs --corpus {} --results {} --out pairs.jsonl",
        after.trained,
        after.members,
        after.finished - after.trained,
        args.corpus.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `corpus pairs`.
#[derive(Debug, clap::Args)]
pub struct PairsArgs {
    /// The corpus (`nas-core corpus --out …`).
    #[arg(long, value_name = "corpus.jsonl")]
    pub corpus: PathBuf,

    /// Measured results: run directories of `nas-core evolve` (their finished
    /// trials), or JSON-lines files of `{"source" | "hash", "accuracy", "loss"?,
    /// "epochs"?}` (`hash`: a corpus record's).
    #[arg(long, required = true, num_args = 1.., value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// The pairs file to write (replaced).
    #[arg(long, value_name = "pairs.jsonl")]
    pub out: PathBuf,

    /// The random seed for the pairs without a better neighbour.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// The prompt style the pairs are written in: each pair is the prompt the
    /// proposer sends in this style, answered in it (structured: the JSON
    /// object of widths; pairs whose better network is not a width mutant of
    /// the worse one are left out).
    #[arg(long, value_enum, default_value_t = Style::Structured)]
    pub style: Style,

    /// The widths a class may take, as in the search the tuned model will
    /// serve (`evolve --widths`).
    #[arg(long, default_value = "step:8..=64", value_name = "SPEC")]
    pub widths: ValueSet,
}

/// Runs `corpus pairs`.
fn run_pairs(args: PairsArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let corpus = crate::pairs::Corpus::read(&args.corpus)?;
    let mut results = Vec::new();
    for path in &args.results {
        results.extend(crate::pairs::read_results(path, &corpus)?);
    }
    let measured = results.len();
    let pairs = crate::pairs::make_pairs(results, args.seed);
    if pairs.is_empty() {
        bail!(
            "no pairs: {measured} measured networks, none better than another at the same epochs"
        );
    }
    let (text, written) =
        crate::pairs::to_lines(&pairs, args.style, args.widths).map_err(anyhow::Error::msg)?;
    if written == 0 {
        bail!(
            "no pairs in the {} style: none of the {} better networks is a width mutant of its worse one on the allowed widths; try `--style chat` or other `--widths`",
            args.style.as_str(),
            pairs.len()
        );
    }
    let tmp = args.out.with_extension("jsonl.part");
    let mut file = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot create `{}`", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write `{}`", args.out.display()))?;
    let neighbours = pairs
        .iter()
        .filter(|p| p.choice == crate::pairs::Choice::Neighbour)
        .count();
    eprintln!(
        "wrote {written} {} pairs to `{}` from {measured} measured networks ({} corpus records): of {} pairs, {neighbours} with a better mutation neighbour, {} with a random better network{}",
        args.style.as_str(),
        args.out.display(),
        corpus.len(),
        pairs.len(),
        pairs.len() - neighbours,
        if written < pairs.len() {
            format!(
                "; {} left out (not a width mutant on the allowed widths)",
                pairs.len() - written
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
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
    match args.command {
        Some(Sub::Pairs(p)) => return run_pairs(p),
        Some(Sub::Train(t)) => return run_train(*t),
        None => {}
    }
    let (Some(n), Some(out)) = (args.n, args.out) else {
        bail!("`corpus` needs --n and --out");
    };
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
    let total = n;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let bar = progress_bar(total);
    let outcome = build(seeds, &out, n, args.seed, mutator, |done| {
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
        out.display(),
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
