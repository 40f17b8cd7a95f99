//! `nas-core fmt`: prints, verifies (`--check`) or rewrites (`--write`) the
//! canonical form of `.nas` files. Only files that check are formatted.

use super::check::{Source, exit, read_all, report};
use anyhow::Context;
use nas_dsl::Errors;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nas-core fmt` (its help text is on `Command::Fmt`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.nas` files to format.
    #[arg(required = true, value_name = "FILE.nas")]
    pub files: Vec<PathBuf>,

    /// Print nothing but `Diff in FILE` for each file not in canonical form, and
    /// exit 1 if there is any (0 if all are canonical).
    #[arg(long, conflicts_with = "write")]
    pub check: bool,

    /// Rewrite files in place with their canonical form (files already canonical
    /// are left untouched).
    #[arg(long)]
    pub write: bool,
}

/// The canonical text of a file's nets, or every error found in it.
fn canonical(source: &Source) -> Result<String, Errors> {
    // Check first: canonical form is defined for valid nets, and checking
    // reports every error of the file at once.
    nas_dsl::check_str(&source.text)?;
    let file = nas_dsl::parse_str(&source.text)?;
    Ok(nas_dsl::print_file(&file))
}

/// Runs `fmt`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(&args.files)?;
    let mut failed = false;
    for source in &sources {
        let text = match canonical(source) {
            Ok(text) => text,
            Err(errors) => {
                report(source, &errors);
                failed = true;
                continue;
            }
        };
        if args.check {
            if text != source.text {
                println!("Diff in {}", source.name());
                failed = true;
            }
        } else if args.write {
            if text != source.text {
                std::fs::write(&source.path, &text)
                    .with_context(|| format!("cannot write `{}`", source.name()))?;
            }
        } else {
            print!("{text}");
        }
    }
    Ok(exit(failed))
}
