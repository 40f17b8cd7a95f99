//! `nas-core mutate`: writes N distinct, checked mutants of the nets in a `.nas`
//! file as canonical `.nas` files (or prints them), from a seed.

use super::check::{read_all, report};
use anyhow::{Context, bail};
use nas_dsl::mutate::{Generator, Mutator, ValueSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write N distinct mutants of the nets in a `.nas` file.
///
/// Every mutant is shape-checked and in canonical form; none equals a seed or
/// another mutant. Mutants are a random walk from the file's nets: each step sets
/// one width class to a new width or scales every class (and, with
/// `--structural`, duplicates or removes a shape-preserving statement or changes
/// a conv's kernel size). The same seed gives the same mutants.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.nas` file to mutate; every net in it is a seed.
    #[arg(value_name = "FILE.nas")]
    pub file: PathBuf,

    /// How many distinct mutants to write.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,

    /// The random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// The widths a class may take: `uniform:MIN..=MAX` (every integer) or
    /// `step:STEP..=MAX` (the multiples of STEP up to MAX).
    #[arg(long, default_value = "uniform:4..=1024", value_name = "SPEC")]
    pub widths: ValueSet,

    /// Also use structural operators: duplicate or remove a shape-preserving
    /// statement, change a conv's kernel size (padding keeps the spatial size).
    #[arg(long)]
    pub structural: bool,

    /// Write each mutant to `DIR/<hash>.nas` (the first 16 hex digits of its
    /// content hash). Without it the mutants are printed to stdout, each after a
    /// `// i: mutation (hash …, parent …)` line and separated by blank lines.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// A closed stdout (`mutate … | head`) ends the run quietly; other write
/// errors are reported.
fn quiet_on_broken_pipe(e: std::io::Error) -> anyhow::Result<ExitCode> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(e).context("cannot write to stdout")
    }
}

/// Runs `mutate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(std::slice::from_ref(&args.file))?;
    let source = &sources[0];
    let nets = match nas_dsl::check_str(&source.text) {
        Ok(nets) => nets,
        Err(errors) => {
            report(source, &errors);
            bail!("`{}` does not check; nothing to mutate", source.name());
        }
    };
    let mutator = Mutator {
        widths: args.widths,
        structural: args.structural,
    };
    let mut generator = Generator::new(nets, mutator, args.seed)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..args.n {
        let m = generator.next_mutant()?;
        let hash = m.arch.hash();
        match &args.out {
            Some(dir) => {
                let path = dir.join(format!("{}.nas", &hash[..16]));
                std::fs::write(&path, m.arch.source())
                    .with_context(|| format!("cannot write `{}`", path.display()))?;
            }
            None => {
                let separator = if i > 0 { "\n" } else { "" };
                let written = write!(
                    stdout,
                    "{separator}// {i}: {} (hash {}, parent {})\n{}",
                    m.mutation,
                    &hash[..16],
                    &m.parent_hash[..16],
                    m.arch.source()
                );
                if let Err(e) = written {
                    return quiet_on_broken_pipe(e);
                }
            }
        }
    }
    if let Err(e) = stdout.flush() {
        return quiet_on_broken_pipe(e);
    }
    if let Some(dir) = &args.out {
        eprintln!("wrote {} mutants to `{}`", args.n, dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
