//! Image-classification data: the in-memory dataset type, the CIFAR readers, the
//! embedded synthetic task, normalisation and seeded augmentation, and the batcher
//! that turns them into tensors off the training loop's critical path.

pub mod augment;
pub mod cifar;
pub mod synthetic;

use std::fmt;
use std::path::{Path, PathBuf};

/// Channels, height and width of every image this module handles.
pub const IMAGE: [usize; 3] = [3, 32, 32];
/// Bytes per image: `3 · 32 · 32`.
pub const PIXELS: usize = 3 * 32 * 32;

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset directory does not exist.
    #[error("{dataset} directory `{}` does not exist", .dir.display())]
    MissingDir {
        /// Which dataset.
        dataset: &'static str,
        /// The directory given.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no records.
    #[error("`{}` is empty", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A file ends inside a record.
    #[error(
        "`{}` is truncated: the record at byte offset {offset} has {found} of {record} bytes",
        .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the incomplete record starts.
        offset: u64,
        /// The bytes it has.
        found: u64,
        /// The bytes a record needs.
        record: u64,
    },
    /// A label is out of range.
    #[error(
        "`{}`: {kind} label {label} at byte offset {offset} is out of range (expected 0..{classes})",
        .path.display()
    )]
    Label {
        /// The file.
        path: PathBuf,
        /// Where the label byte is.
        offset: u64,
        /// Which label ("fine", "coarse" or "class").
        kind: &'static str,
        /// The value found.
        label: u8,
        /// The number of classes.
        classes: usize,
    },
    /// A synthetic set was asked for with impossible sizes.
    #[error("invalid dataset request: {0}")]
    Invalid(String),
}

/// A labelled set of `[3, 32, 32]` images stored as bytes, channel-major (CIFAR's
/// own layout: 1,024 red, then green, then blue values per image).
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// `len · 3,072` bytes.
    pub images: Vec<u8>,
    /// One label per image, each `< classes`.
    pub labels: Vec<u16>,
    /// The number of classes.
    pub classes: usize,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("classes", &self.classes)
            .finish()
    }
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The first `n` images (all of them if `n` is larger).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * PIXELS);
        self
    }
}

/// A training and a test split of one task, with a name for reports.
#[derive(Clone, Debug)]
pub struct Split {
    /// The task's name: `synthetic`, `cifar10`, `cifar100`.
    pub name: String,
    /// Training images.
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
}

impl Split {
    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.train.classes
    }

    /// Keeps at most `train` training and `test` test images.
    pub fn limit(self, train: Option<usize>, test: Option<usize>) -> Self {
        Split {
            name: self.name,
            train: match train {
                Some(n) => self.train.truncate(n),
                None => self.train,
            },
            test: match test {
                Some(n) => self.test.truncate(n),
                None => self.test,
            },
        }
    }
}

/// Per-channel mean and standard deviation, in pixel units scaled to `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (never zero).
    pub std: [f32; 3],
}

impl Normalize {
    /// The statistics of a set (normally the training split).
    pub fn fit(set: &Dataset) -> Self {
        let plane = PIXELS / 3;
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        for i in 0..set.len() {
            let img = set.image(i);
            for c in 0..3 {
                for &p in &img[c * plane..(c + 1) * plane] {
                    let v = f64::from(p) / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let n = (set.len() * plane).max(1) as f64;
        let mut mean = [0f32; 3];
        let mut std = [1f32; 3];
        for c in 0..3 {
            let m = sum[c] / n;
            let var = (sq[c] / n - m * m).max(0.0);
            mean[c] = m as f32;
            std[c] = if var > 1e-12 { var.sqrt() as f32 } else { 1.0 };
        }
        Normalize { mean, std }
    }

    /// Writes one image as normalised floats into `out` (`3,072` values).
    pub fn apply(&self, img: &[u8], out: &mut [f32]) {
        let plane = PIXELS / 3;
        for c in 0..3 {
            let (m, s) = (self.mean[c], 1.0 / self.std[c]);
            for (o, &p) in out[c * plane..(c + 1) * plane]
                .iter_mut()
                .zip(&img[c * plane..(c + 1) * plane])
            {
                *o = (f32::from(p) / 255.0 - m) * s;
            }
        }
    }
}

/// Which task to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// The embedded procedural task (no download).
    Synthetic,
    /// CIFAR-10, binary version.
    Cifar10,
    /// CIFAR-100, binary version.
    Cifar100,
}

impl DatasetKind {
    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Synthetic => "synthetic",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
        }
    }
}

/// Loads a task: the embedded synthetic set (generated, `train`/`test` images,
/// defaults 10,000/2,000) or CIFAR from `data_dir` (cut to `train`/`test` if given).
pub fn load(
    kind: DatasetKind,
    data_dir: Option<&Path>,
    train: Option<usize>,
    test: Option<usize>,
) -> Result<Split, DataError> {
    let need_dir = || {
        data_dir.ok_or_else(|| {
            DataError::Invalid(format!(
                "`{}` needs `--data-dir` pointing at the extracted binary archive",
                kind.name()
            ))
        })
    };
    match kind {
        DatasetKind::Synthetic => synthetic::generate(
            train.unwrap_or(synthetic::DEFAULT_TRAIN),
            test.unwrap_or(synthetic::DEFAULT_TEST),
            synthetic::DATA_SEED,
        ),
        DatasetKind::Cifar10 => Ok(cifar::read_cifar10(need_dir()?)?.limit(train, test)),
        DatasetKind::Cifar100 => Ok(cifar::read_cifar100(need_dir()?)?.limit(train, test)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pixels: &[[u8; 3]]) -> Dataset {
        let plane = PIXELS / 3;
        let mut images = Vec::new();
        for p in pixels {
            for &c in p {
                images.extend(std::iter::repeat_n(c, plane));
            }
        }
        Dataset {
            images,
            labels: vec![0; pixels.len()],
            classes: 1,
        }
    }

    #[test]
    fn normalisation_centres_and_scales_each_channel() {
        let s = set(&[[0, 255, 10], [255, 255, 10]]);
        let n = Normalize::fit(&s);
        assert!((n.mean[0] - 0.5).abs() < 1e-6);
        assert!((n.std[0] - 0.5).abs() < 1e-6);
        assert!((n.mean[1] - 1.0).abs() < 1e-6);
        assert_eq!(n.std[1], 1.0, "a constant channel keeps unit scale");
        let mut out = vec![0f32; PIXELS];
        n.apply(s.image(1), &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!(out[1024].abs() < 1e-6);
    }

    #[test]
    fn limit_keeps_prefixes() {
        let s = set(&[[1, 1, 1], [2, 2, 2], [3, 3, 3]]);
        let split = Split {
            name: "t".into(),
            train: s.clone(),
            test: s,
        }
        .limit(Some(2), Some(10));
        assert_eq!(split.train.len(), 2);
        assert_eq!(split.train.images.len(), 2 * PIXELS);
        assert_eq!(split.test.len(), 3);
    }
}
