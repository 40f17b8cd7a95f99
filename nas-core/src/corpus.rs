//! The architecture corpus: distinct, checked mutants of seed networks as JSON
//! lines, `{hash, parent_hash, source, mutation, params, flops, width_classes}`.
//!
//! Appending is safe to interrupt: each record is written as one whole line with
//! one write, and a rerun scans the file first, drops a trailing partial line,
//! skips every architecture already there and continues to the requested total.
//! The mutant stream depends only on the seeds, the mutator and the seed number,
//! so an interrupted run that is resumed ends with the same file as an
//! uninterrupted one.

use nas_dsl::CheckedNet;
use nas_dsl::mutate::{ClassInfo, Generator, Mutant, MutateError, Mutation, Mutator};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One line of the corpus.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// SHA-256 of `source`, hex.
    pub hash: &'a str,
    /// The parent's hash (a seed's or an earlier mutant's).
    pub parent_hash: &'a str,
    /// Canonical text of the mutant.
    pub source: &'a str,
    /// The mutation that made it, `{"op": …, …}`.
    pub mutation: &'a Mutation,
    /// Learnable parameters (PyTorch's count).
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub flops: u64,
    /// The mutant's width classes, with the widths each may take.
    pub width_classes: Vec<ClassInfo>,
}

impl<'a> Record<'a> {
    /// The record of a mutant, its classes described under `mutator`'s widths.
    pub fn new(m: &'a Mutant, mutator: &Mutator) -> Record<'a> {
        let net = m.arch.net();
        Record {
            hash: m.arch.hash(),
            parent_hash: &m.parent_hash,
            source: m.arch.source(),
            mutation: &m.mutation,
            params: net.params(),
            flops: net.flops(),
            width_classes: m.arch.classes().describe(&mutator.widths),
        }
    }
}

/// Why building a corpus failed.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The output could not be read, created or written.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done: read, open, write, truncate.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A complete line of an existing corpus is not a record.
    #[error("`{}` line {line} is not a corpus record ({reason}); refusing to append to it", path.display())]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The mutator failed.
    #[error(transparent)]
    Mutate(#[from] MutateError),
    /// Serialising a record failed.
    #[error("cannot serialise a record: {0}")]
    Json(#[from] serde_json::Error),
}

/// What an existing corpus file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Existing {
    /// The hash of every record.
    pub hashes: HashSet<String>,
    /// How many records there are.
    pub records: usize,
    /// Bytes up to the end of the last complete line.
    pub valid_len: u64,
    /// Whether a trailing partial line (an interrupted write) follows them.
    pub partial: bool,
}

#[derive(Deserialize)]
struct HashOnly {
    hash: String,
}

/// A corpus record as read back for training.
#[derive(Clone, Debug, Deserialize)]
pub struct Member {
    /// SHA-256 of `source`.
    pub hash: String,
    /// The parent's hash.
    pub parent_hash: String,
    /// Canonical text.
    pub source: String,
}

/// The first `n` records of a corpus, in file order. A last line without its
/// newline (an interrupted write) is left out; any other bad line is an error.
pub fn members(path: &Path, n: usize) -> Result<Vec<Member>, CorpusError> {
    let file = File::open(path).map_err(io("read", path))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    while out.len() < n {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", path))?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Member = serde_json::from_slice(&line).map_err(|e| CorpusError::BadRecord {
            path: path.to_path_buf(),
            line: number,
            reason: e.to_string(),
        })?;
        out.push(record);
    }
    Ok(out)
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CorpusError {
    let path = path.to_path_buf();
    move |source| CorpusError::Io {
        action,
        path,
        source,
    }
}

/// Reads the hashes of an existing corpus (none if the file does not exist). Only
/// a last line without its newline may be incomplete; any other bad line is an
/// error, so a file that is not a corpus is never appended to.
pub fn scan(path: &Path) -> Result<Existing, CorpusError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::default()),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut existing = Existing::default();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.last() != Some(&b'\n') {
            existing.partial = true;
            break;
        }
        existing.valid_len += n as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: HashOnly =
            serde_json::from_slice(&line).map_err(|e| CorpusError::BadRecord {
                path: path.to_path_buf(),
                line: number,
                reason: e.to_string(),
            })?;
        existing.hashes.insert(record.hash);
        existing.records += 1;
    }
    Ok(existing)
}

/// What a corpus run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Records found in the file before the run.
    pub existing: usize,
    /// Records appended.
    pub written: usize,
    /// Whether a trailing partial line was dropped.
    pub dropped_partial: bool,
}

impl Outcome {
    /// Records in the file now.
    pub fn total(&self) -> usize {
        self.existing + self.written
    }
}

/// Appends distinct mutants of `seeds` to the corpus at `out` until it holds `n`
/// records; `progress` is told the record count after the scan and after each write.
pub fn build(
    seeds: Vec<CheckedNet>,
    out: &Path,
    n: usize,
    seed: u64,
    mutator: Mutator,
    mut progress: impl FnMut(usize),
) -> Result<Outcome, CorpusError> {
    let existing = scan(out)?;
    let mut outcome = Outcome {
        existing: existing.records,
        written: 0,
        dropped_partial: existing.partial,
    };
    progress(existing.records);
    if existing.partial {
        OpenOptions::new()
            .write(true)
            .open(out)
            .and_then(|f| f.set_len(existing.valid_len))
            .map_err(io("truncate", out))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(io("open", out))?;
    if existing.records >= n {
        return Ok(outcome);
    }
    let mut generator = Generator::new(seeds, mutator, seed)?;
    let mut line = Vec::new();
    while outcome.total() < n {
        let m = generator.next_mutant()?;
        if existing.hashes.contains(m.arch.hash()) {
            continue;
        }
        line.clear();
        serde_json::to_writer(&mut line, &Record::new(&m, &mutator))?;
        line.push(b'\n');
        file.write_all(&line).map_err(io("write", out))?;
        outcome.written += 1;
        progress(outcome.total());
    }
    file.flush().map_err(io("write", out))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Vec<CheckedNet> {
        nas_dsl::check_str(
            "net S(input = [3, 8, 8], classes = 4) {
                conv(3 -> 8, k = 3, pad = 1); relu; gap; linear(8 -> 4);
            }",
        )
        .unwrap()
    }

    #[test]
    fn resumed_run_equals_uninterrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole.jsonl");
        let parts = dir.path().join("parts.jsonl");
        let m = Mutator::default();
        build(seeds(), &whole, 30, 9, m, |_| {}).unwrap();
        let first = build(seeds(), &parts, 12, 9, m, |_| {}).unwrap();
        assert_eq!((first.existing, first.written), (0, 12));
        // Simulate a kill in the middle of a write.
        let mut text = std::fs::read(&parts).unwrap();
        text.extend_from_slice(b"{\"hash\": \"abc");
        std::fs::write(&parts, &text).unwrap();
        let mut seen = Vec::new();
        let second = build(seeds(), &parts, 30, 9, m, |n| seen.push(n)).unwrap();
        assert_eq!((second.existing, second.written), (12, 18));
        assert!(second.dropped_partial);
        assert_eq!(seen.first(), Some(&12));
        assert_eq!(seen.last(), Some(&30));
        assert_eq!(
            std::fs::read(&whole).unwrap(),
            std::fs::read(&parts).unwrap()
        );
        // A full corpus is left alone.
        let third = build(seeds(), &parts, 20, 9, m, |_| {}).unwrap();
        assert_eq!((third.existing, third.written), (30, 0));
    }

    #[test]
    fn a_file_that_is_not_a_corpus_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hello\n{\"hash\": \"x\"}\n").unwrap();
        let err = scan(&path).unwrap_err();
        assert!(
            matches!(err, CorpusError::BadRecord { line: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("line 1 is not a corpus record"));
    }
}
