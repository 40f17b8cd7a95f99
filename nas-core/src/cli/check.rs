//! `nas-core check`: parses and checks `.nas` files, printing rustc-style
//! diagnostics or one line per net, or a JSON report with `--json`. Also owns the
//! reading and error-reporting helpers that `fmt` and `summary` share.

use anyhow::Context;
use nas_dsl::error::Note;
use nas_dsl::summary::thousands;
use nas_dsl::{CheckedNet, Diagnostic, Errors};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nas-core check` (its help text is on `Command::Check`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.nas` files to check.
    #[arg(required = true, value_name = "FILE.nas")]
    pub files: Vec<PathBuf>,

    /// Print one JSON document to stdout instead of text (exit codes unchanged).
    ///
    /// Its shape: `{"files": [{"path", "ok", "nets": [{"name", "params", "flops",
    /// "input", "output"}], "errors": [{"message", "line", "column", "end_line",
    /// "end_column", "notes": [{"message", "line", "column"}]}]}]}`. Lines and
    /// columns are 1-based (columns count characters; `end_column` is one past the
    /// last character); they are null for errors that point at no particular place.
    #[arg(long)]
    pub json: bool,
}

/// One file's text, read before anything is checked.
pub(super) struct Source {
    /// The path as the user wrote it.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
}

impl Source {
    /// The path for messages.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Reads every file first, so a missing one stops the command before any output.
pub(super) fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            Ok(Source {
                path: path.clone(),
                text,
            })
        })
        .collect()
}

/// Prints a file's diagnostics to stderr, then the one-line verdict rustc ends with.
pub(super) fn report(source: &Source, errors: &Errors) {
    eprint!(
        "{}",
        nas_dsl::diag::render(&source.name(), &source.text, errors)
    );
    let n = errors.len();
    eprintln!(
        "error: could not check `{}` due to {n} error{}",
        source.name(),
        if n == 1 { "" } else { "s" }
    );
}

/// One net of the JSON report.
#[derive(Debug, Serialize)]
struct NetJson {
    name: String,
    params: u64,
    flops: u64,
    input: Vec<u64>,
    output: Vec<u64>,
}

impl From<&CheckedNet> for NetJson {
    fn from(net: &CheckedNet) -> Self {
        NetJson {
            name: net.name().to_string(),
            params: net.params(),
            flops: net.flops(),
            input: net.input().dims(),
            output: net.output().dims(),
        }
    }
}

/// A note of the JSON report; positions are 1-based, null when it points nowhere.
#[derive(Debug, Serialize)]
struct NoteJson {
    message: String,
    line: Option<u32>,
    column: Option<u32>,
}

impl From<&Note> for NoteJson {
    fn from(note: &Note) -> Self {
        let at = note.span.filter(|s| !s.is_synthetic());
        NoteJson {
            message: note.message.clone(),
            line: at.map(|s| s.start.line),
            column: at.map(|s| s.start.column + 1),
        }
    }
}

/// An error of the JSON report; positions are 1-based, null when it points nowhere.
#[derive(Debug, Serialize)]
struct ErrorJson {
    message: String,
    line: Option<u32>,
    column: Option<u32>,
    end_line: Option<u32>,
    end_column: Option<u32>,
    notes: Vec<NoteJson>,
}

impl From<&Diagnostic> for ErrorJson {
    fn from(d: &Diagnostic) -> Self {
        let at = (!d.span.is_synthetic()).then_some(d.span);
        ErrorJson {
            message: d.kind.to_string(),
            line: at.map(|s| s.start.line),
            column: at.map(|s| s.start.column + 1),
            end_line: at.map(|s| s.end.line),
            end_column: at.map(|s| s.end.column + 1),
            notes: d.notes.iter().map(NoteJson::from).collect(),
        }
    }
}

/// One file of the JSON report.
#[derive(Debug, Serialize)]
struct FileJson {
    path: String,
    ok: bool,
    nets: Vec<NetJson>,
    errors: Vec<ErrorJson>,
}

/// The whole JSON report.
#[derive(Debug, Serialize)]
struct ReportJson {
    files: Vec<FileJson>,
}

/// The text line printed for a net that checks.
fn ok_line(net: &CheckedNet) -> String {
    format!(
        "ok  {}  params {}  flops {}  output {}",
        net.name(),
        thousands(net.params()),
        thousands(net.flops()),
        net.output()
    )
}

/// Runs `check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(&args.files)?;
    let mut failed = false;
    let mut files = Vec::new();
    for source in &sources {
        let result = nas_dsl::check_str(&source.text);
        failed |= result.is_err();
        if args.json {
            let (nets, errors) = match &result {
                Ok(nets) => (nets.iter().map(NetJson::from).collect(), Vec::new()),
                Err(errors) => (Vec::new(), errors.iter().map(ErrorJson::from).collect()),
            };
            files.push(FileJson {
                path: source.name(),
                ok: result.is_ok(),
                nets,
                errors,
            });
            continue;
        }
        match &result {
            Ok(nets) => {
                for net in nets {
                    println!("{}", ok_line(net));
                }
            }
            Err(errors) => report(source, errors),
        }
    }
    if args.json {
        let json = serde_json::to_string_pretty(&ReportJson { files })
            .context("cannot serialise the report")?;
        println!("{json}");
    }
    Ok(exit(failed))
}

/// Exit 1 when any file had errors, else 0.
pub(super) fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
