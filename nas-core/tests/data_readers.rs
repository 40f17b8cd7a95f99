//! The CIFAR readers on small files written in the official binary formats to a
//! temporary directory: valid sets, nested folders, truncated files, out-of-range
//! labels, empty and missing files and directories, each error message checked.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use nas_core::data::cifar::{
    CIFAR10_FOLDER, CIFAR10_RECORD, CIFAR10_TEST, CIFAR10_TRAIN, CIFAR100_FOLDER, CIFAR100_RECORD,
    read_cifar10, read_cifar100,
};
use nas_core::data::{DatasetKind, PIXELS, load};
use std::fs;
use std::path::Path;

/// The pixels of image `seed`: a recognisable pattern per image.
fn pixels(seed: u8) -> Vec<u8> {
    (0..PIXELS)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn cifar10_file(labels: &[u8], first: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, &l) in labels.iter().enumerate() {
        out.push(l);
        out.extend(pixels(first + k as u8));
    }
    out
}

fn cifar100_file(labels: &[(u8, u8)], first: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, &(coarse, fine)) in labels.iter().enumerate() {
        out.push(coarse);
        out.push(fine);
        out.extend(pixels(first + k as u8));
    }
    out
}

/// Five training batches of two images (labels 2b, 2b+1) and a test batch of three.
fn write_cifar10(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for (b, name) in CIFAR10_TRAIN.iter().enumerate() {
        let l = 2 * b as u8;
        fs::write(dir.join(name), cifar10_file(&[l, l + 1], 10 * b as u8)).unwrap();
    }
    fs::write(dir.join(CIFAR10_TEST), cifar10_file(&[9, 0, 5], 100)).unwrap();
}

fn write_cifar100(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("train.bin"),
        cifar100_file(&[(0, 99), (19, 42), (3, 7)], 1),
    )
    .unwrap();
    fs::write(dir.join("test.bin"), cifar100_file(&[(5, 0), (6, 64)], 50)).unwrap();
}

#[test]
fn cifar10_reads_every_batch_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path());
    let split = read_cifar10(tmp.path()).unwrap();
    assert_eq!(split.name, "cifar10");
    assert_eq!(split.classes(), 10);
    assert_eq!(split.train.labels, (0..10).collect::<Vec<u16>>());
    assert_eq!(split.test.labels, vec![9, 0, 5]);
    assert_eq!(split.train.images.len(), 10 * PIXELS);
    assert_eq!(split.train.image(0), pixels(0).as_slice());
    assert_eq!(split.train.image(3), pixels(11).as_slice());
    assert_eq!(split.test.image(2), pixels(102).as_slice());
}

#[test]
fn cifar100_reads_fine_labels() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100(tmp.path());
    let split = read_cifar100(tmp.path()).unwrap();
    assert_eq!(split.classes(), 100);
    assert_eq!(split.train.labels, vec![99, 42, 7]);
    assert_eq!(split.test.labels, vec![0, 64]);
    assert_eq!(split.train.image(1), pixels(2).as_slice());
    assert_eq!(split.test.image(1), pixels(51).as_slice());
}

#[test]
fn the_extracted_folder_is_found_under_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(&tmp.path().join(CIFAR10_FOLDER));
    write_cifar100(&tmp.path().join(CIFAR100_FOLDER));
    assert_eq!(read_cifar10(tmp.path()).unwrap().train.len(), 10);
    assert_eq!(read_cifar100(tmp.path()).unwrap().test.len(), 2);
    let limited = load(DatasetKind::Cifar10, Some(tmp.path()), Some(4), Some(1)).unwrap();
    assert_eq!(limited.train.labels, vec![0, 1, 2, 3]);
    assert_eq!(limited.test.labels, vec![9]);
}

#[test]
fn a_truncated_file_names_the_file_and_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path());
    let path = tmp.path().join(CIFAR10_TEST);
    let mut bytes = cifar10_file(&[1, 2], 0);
    bytes.extend_from_slice(&[3; 100]);
    fs::write(&path, bytes).unwrap();
    let e = read_cifar10(tmp.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{}` is truncated: the record at byte offset {} has 100 of {} bytes",
            path.display(),
            2 * CIFAR10_RECORD,
            CIFAR10_RECORD
        )
    );

    let tmp = tempfile::tempdir().unwrap();
    write_cifar100(tmp.path());
    let path = tmp.path().join("train.bin");
    fs::write(&path, &cifar100_file(&[(1, 1)], 0)[..CIFAR100_RECORD - 1]).unwrap();
    let e = read_cifar100(tmp.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{}` is truncated: the record at byte offset 0 has {} of {} bytes",
            path.display(),
            CIFAR100_RECORD - 1,
            CIFAR100_RECORD
        )
    );
}

#[test]
fn labels_out_of_range_name_the_file_and_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path());
    let path = tmp.path().join(CIFAR10_TRAIN[2]);
    fs::write(&path, cifar10_file(&[3, 10], 0)).unwrap();
    let e = read_cifar10(tmp.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{}`: class label 10 at byte offset {CIFAR10_RECORD} is out of range (expected 0..10)",
            path.display()
        )
    );

    let tmp = tempfile::tempdir().unwrap();
    write_cifar100(tmp.path());
    let path = tmp.path().join("test.bin");
    fs::write(&path, cifar100_file(&[(0, 0), (1, 100)], 0)).unwrap();
    let e = read_cifar100(tmp.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{}`: fine label 100 at byte offset {} is out of range (expected 0..100)",
            path.display(),
            CIFAR100_RECORD + 1
        )
    );
    fs::write(&path, cifar100_file(&[(20, 0)], 0)).unwrap();
    let e = read_cifar100(tmp.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{}`: coarse label 20 at byte offset 0 is out of range (expected 0..20)",
            path.display()
        )
    );
}

#[test]
fn missing_directories_and_files_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nowhere");
    let e = read_cifar10(&dir).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("CIFAR-10 directory `{}` does not exist", dir.display())
    );
    let e = read_cifar100(&dir).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("CIFAR-100 directory `{}` does not exist", dir.display())
    );

    write_cifar10(tmp.path());
    let path = tmp.path().join(CIFAR10_TRAIN[4]);
    fs::remove_file(&path).unwrap();
    let e = read_cifar10(tmp.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot read `{}`: ", path.display())),
        "{msg}"
    );

    let e = load(DatasetKind::Cifar100, None, None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid dataset request: `cifar100` needs `--data-dir` pointing at the extracted binary archive"
    );
}

#[test]
fn an_empty_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar100(tmp.path());
    let path = tmp.path().join("test.bin");
    fs::write(&path, b"").unwrap();
    let e = read_cifar100(tmp.path()).unwrap_err();
    assert_eq!(e.to_string(), format!("`{}` is empty", path.display()));
}
