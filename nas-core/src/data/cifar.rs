//! Readers for the official binary CIFAR-10 and CIFAR-100 files. Every size and
//! label is validated; a bad file is an error naming the file and the byte offset.
//!
//! - CIFAR-10 (`cifar-10-binary.tar.gz`): `data_batch_1.bin` … `data_batch_5.bin`
//!   and `test_batch.bin`, records of 3,073 bytes: label (0–9), 3,072 pixels.
//! - CIFAR-100 (`cifar-100-binary.tar.gz`): `train.bin` and `test.bin`, records of
//!   3,074 bytes: coarse label (0–19), fine label (0–99), 3,072 pixels. The fine
//!   label is the class.
//!
//! The directory given may be the extracted folder itself (`cifar-10-batches-bin`,
//! `cifar-100-binary`) or its parent.

use super::{DataError, Dataset, PIXELS, Split};
use std::path::{Path, PathBuf};

/// Bytes per CIFAR-10 record.
pub const CIFAR10_RECORD: usize = 1 + PIXELS;
/// Bytes per CIFAR-100 record.
pub const CIFAR100_RECORD: usize = 2 + PIXELS;
/// The CIFAR-10 training files, in order.
pub const CIFAR10_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The CIFAR-10 test file.
pub const CIFAR10_TEST: &str = "test_batch.bin";
/// The folder the CIFAR-10 archive extracts to.
pub const CIFAR10_FOLDER: &str = "cifar-10-batches-bin";
/// The folder the CIFAR-100 archive extracts to.
pub const CIFAR100_FOLDER: &str = "cifar-100-binary";

/// The directory holding `probe`: `dir` itself or `dir/folder`.
fn resolve(
    dataset: &'static str,
    dir: &Path,
    folder: &str,
    probe: &str,
) -> Result<PathBuf, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingDir {
            dataset,
            dir: dir.to_path_buf(),
        });
    }
    let nested = dir.join(folder);
    if !dir.join(probe).exists() && nested.join(probe).exists() {
        Ok(nested)
    } else {
        Ok(dir.to_path_buf())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks a file's size against its record length.
fn records(path: &Path, bytes: &[u8], record: usize) -> Result<usize, DataError> {
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let n = bytes.len() / record;
    let rest = bytes.len() % record;
    if rest != 0 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            offset: (n * record) as u64,
            found: rest as u64,
            record: record as u64,
        });
    }
    Ok(n)
}

fn check_label(
    path: &Path,
    offset: usize,
    kind: &'static str,
    label: u8,
    classes: usize,
) -> Result<u16, DataError> {
    if usize::from(label) < classes {
        Ok(u16::from(label))
    } else {
        Err(DataError::Label {
            path: path.to_path_buf(),
            offset: offset as u64,
            kind,
            label,
            classes,
        })
    }
}

/// Appends the records of one CIFAR-10 file to `set`.
pub fn read_cifar10_file(path: &Path, set: &mut Dataset) -> Result<(), DataError> {
    decode_cifar10(path, &read(path)?, set)
}

/// Appends the CIFAR-10 records in `bytes` (the content of the file `path`,
/// named in errors) to `set`. Nothing is appended when the bytes are bad.
pub fn decode_cifar10(path: &Path, bytes: &[u8], set: &mut Dataset) -> Result<(), DataError> {
    let n = records(path, bytes, CIFAR10_RECORD)?;
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        labels.push(check_label(path, i * CIFAR10_RECORD, "class", rec[0], 10)?);
    }
    append(set, bytes, CIFAR10_RECORD, labels);
    Ok(())
}

/// Appends the records of one CIFAR-100 file to `set` (fine labels).
pub fn read_cifar100_file(path: &Path, set: &mut Dataset) -> Result<(), DataError> {
    decode_cifar100(path, &read(path)?, set)
}

/// Appends the CIFAR-100 records in `bytes` (the content of the file `path`,
/// named in errors) to `set`, with their fine labels. Nothing is appended when
/// the bytes are bad.
pub fn decode_cifar100(path: &Path, bytes: &[u8], set: &mut Dataset) -> Result<(), DataError> {
    let n = records(path, bytes, CIFAR100_RECORD)?;
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(CIFAR100_RECORD).enumerate() {
        let offset = i * CIFAR100_RECORD;
        check_label(path, offset, "coarse", rec[0], 20)?;
        labels.push(check_label(path, offset + 1, "fine", rec[1], 100)?);
    }
    append(set, bytes, CIFAR100_RECORD, labels);
    Ok(())
}

/// Appends checked records: their labels and the last [`PIXELS`] bytes of each.
fn append(set: &mut Dataset, bytes: &[u8], record: usize, labels: Vec<u16>) {
    set.images.reserve(labels.len() * PIXELS);
    for rec in bytes.chunks_exact(record) {
        set.images.extend_from_slice(&rec[record - PIXELS..]);
    }
    set.labels.extend(labels);
}

fn empty(classes: usize) -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        classes,
    }
}

/// Reads CIFAR-10 from an extracted `cifar-10-batches-bin` directory (or its parent).
pub fn read_cifar10(dir: &Path) -> Result<Split, DataError> {
    let dir = resolve("CIFAR-10", dir, CIFAR10_FOLDER, CIFAR10_TEST)?;
    let mut train = empty(10);
    for f in CIFAR10_TRAIN {
        read_cifar10_file(&dir.join(f), &mut train)?;
    }
    let mut test = empty(10);
    read_cifar10_file(&dir.join(CIFAR10_TEST), &mut test)?;
    Ok(Split {
        name: "cifar10".into(),
        train,
        test,
    })
}

/// Reads CIFAR-100 from an extracted `cifar-100-binary` directory (or its parent).
pub fn read_cifar100(dir: &Path) -> Result<Split, DataError> {
    let dir = resolve("CIFAR-100", dir, CIFAR100_FOLDER, "test.bin")?;
    let mut train = empty(100);
    read_cifar100_file(&dir.join("train.bin"), &mut train)?;
    let mut test = empty(100);
    read_cifar100_file(&dir.join("test.bin"), &mut test)?;
    Ok(Split {
        name: "cifar100".into(),
        train,
        test,
    })
}
