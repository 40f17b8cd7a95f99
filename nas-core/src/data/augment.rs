//! Seeded training augmentation (random crop with zero padding, horizontal flip) and
//! the batcher that turns images into normalised tensors on a background thread, so
//! the data pipeline stays off the training loop's critical path.

use super::{Dataset, Normalize, PIXELS};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The training augmentation of one run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Augment {
    /// Zero padding added on every side before a random 32x32 crop (0: no crop).
    pub pad: usize,
    /// Whether to flip images horizontally with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// The standard CIFAR recipe: 4-pixel padding, random crop, random flip.
    pub const STANDARD: Augment = Augment { pad: 4, flip: true };
    /// No augmentation (evaluation).
    pub const NONE: Augment = Augment {
        pad: 0,
        flip: false,
    };

    /// Writes an augmented copy of `img` (`[3, 32, 32]` bytes) into `out`. Pixels
    /// shifted in from the padding are 0, as with torchvision's `RandomCrop(32, 4)`.
    pub fn apply(&self, img: &[u8], out: &mut [u8], rng: &mut Pcg64) {
        let (h, w) = (32usize, 32usize);
        let pad = self.pad.min(32) as i32;
        let (dy, dx) = if self.pad > 0 {
            (rng.random_range(-pad..=pad), rng.random_range(-pad..=pad))
        } else {
            (0, 0)
        };
        let flip = self.flip && rng.random_bool(0.5);
        for c in 0..3 {
            let plane = &img[c * h * w..(c + 1) * h * w];
            let dst = &mut out[c * h * w..(c + 1) * h * w];
            for y in 0..h {
                let sy = y as i32 + dy;
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = xx as i32 + dx;
                    dst[y * w + x] = if (0..h as i32).contains(&sy) && (0..w as i32).contains(&sx) {
                        plane[sy as usize * w + sx as usize]
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// One batch: normalised images `[n, 3, 32, 32]` flattened, and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `n · 3,072` floats.
    pub images: Vec<f32>,
    /// `n` labels.
    pub labels: Vec<i64>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Builds the batch of the given images, augmenting with `rng` when `augment` does anything.
pub fn make_batch(
    set: &Dataset,
    indices: &[usize],
    norm: &Normalize,
    augment: Augment,
    rng: &mut Pcg64,
) -> Batch {
    let mut images = vec![0f32; indices.len() * PIXELS];
    let mut labels = Vec::with_capacity(indices.len());
    let mut scratch = vec![0u8; PIXELS];
    for (k, &i) in indices.iter().enumerate() {
        let out = &mut images[k * PIXELS..(k + 1) * PIXELS];
        if augment == Augment::NONE {
            norm.apply(set.image(i), out);
        } else {
            augment.apply(set.image(i), &mut scratch, rng);
            norm.apply(&scratch, out);
        }
        labels.push(i64::from(set.labels[i]));
    }
    Batch { images, labels }
}

/// The order of one training epoch: a seeded shuffle of `0..n`, cut into full
/// batches of `batch` (the last partial batch is dropped when there is at least one
/// full batch, so BatchNorm never sees a batch of one).
pub fn epoch_batches(n: usize, batch: usize, rng: &mut Pcg64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    let batch = batch.max(1);
    let mut out: Vec<Vec<usize>> = order.chunks(batch).map(<[usize]>::to_vec).collect();
    if out.len() > 1 && out.last().is_some_and(|b| b.len() < batch) {
        out.pop();
    }
    out
}

/// Produces the batches of one epoch on a background thread, at most `depth` ahead.
pub struct Prefetch {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts producing the given batches; augmentation randomness comes from
    /// `seed`, so the stream is the same on every run.
    pub fn start(
        set: Arc<Dataset>,
        batches: Vec<Vec<usize>>,
        norm: Normalize,
        augment: Augment,
        seed: u64,
        depth: usize,
    ) -> Prefetch {
        let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(depth.max(1));
        let handle = std::thread::spawn(move || {
            let mut rng = Pcg64::seed_from_u64(seed);
            for idx in batches {
                let b = make_batch(&set, &idx, &norm, augment, &mut rng);
                if tx.send(b).is_err() {
                    return;
                }
            }
        });
        Prefetch {
            rx,
            handle: Some(handle),
        }
    }
}

impl Iterator for Prefetch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Unblock the producer (its send fails once the receiver is gone), then wait.
        let (_tx, rx) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<u8> {
        (0..PIXELS).map(|i| (i % 32) as u8 + 1).collect()
    }

    #[test]
    fn no_augmentation_is_the_identity() {
        let img = ramp();
        let mut out = vec![0u8; PIXELS];
        let mut rng = Pcg64::seed_from_u64(0);
        Augment::NONE.apply(&img, &mut out, &mut rng);
        assert_eq!(out, img);
    }

    #[test]
    fn flip_only_mirrors_rows() {
        let img = ramp();
        let mut out = vec![0u8; PIXELS];
        let aug = Augment { pad: 0, flip: true };
        let mut rng = Pcg64::seed_from_u64(0);
        let mut flipped = 0;
        for _ in 0..20 {
            aug.apply(&img, &mut out, &mut rng);
            if out[0] == 32 {
                flipped += 1;
                assert_eq!(out[31], 1);
            } else {
                assert_eq!(out, img);
            }
        }
        assert!((3..=17).contains(&flipped), "flipped {flipped} of 20");
    }

    #[test]
    fn crops_shift_with_zero_fill_and_are_seeded() {
        let img = vec![9u8; PIXELS];
        let aug = Augment {
            pad: 4,
            flip: false,
        };
        let mut a = vec![0u8; PIXELS];
        let mut b = vec![0u8; PIXELS];
        let mut zeros_seen = false;
        let (mut r1, mut r2) = (Pcg64::seed_from_u64(7), Pcg64::seed_from_u64(7));
        for _ in 0..10 {
            aug.apply(&img, &mut a, &mut r1);
            aug.apply(&img, &mut b, &mut r2);
            assert_eq!(a, b);
            let zeros = a.iter().filter(|&&p| p == 0).count();
            // at most 4 rows and 4 columns of each 32x32 plane come from padding
            assert!(zeros <= 3 * (32 * 32 - 28 * 28));
            zeros_seen |= zeros > 0;
            assert!(a.iter().all(|&p| p == 0 || p == 9));
        }
        assert!(zeros_seen);
    }

    #[test]
    fn epochs_cover_every_index_once_in_full_batches() {
        let mut rng = Pcg64::seed_from_u64(3);
        let b = epoch_batches(10, 4, &mut rng);
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|x| x.len() == 4));
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 8);
        assert_eq!(epoch_batches(3, 8, &mut rng).concat().len(), 3);
    }

    #[test]
    fn prefetch_yields_the_same_batches_as_direct_calls() {
        let set = Dataset {
            images: (0..3 * PIXELS).map(|i| (i % 251) as u8).collect(),
            labels: vec![0, 1, 2],
            classes: 3,
        };
        let norm = Normalize::fit(&set);
        let batches = vec![vec![2, 0], vec![1]];
        let direct: Vec<Batch> = {
            let mut rng = Pcg64::seed_from_u64(5);
            batches
                .iter()
                .map(|b| make_batch(&set, b, &norm, Augment::STANDARD, &mut rng))
                .collect()
        };
        let pre: Vec<Batch> =
            Prefetch::start(Arc::new(set), batches, norm, Augment::STANDARD, 5, 1).collect();
        assert_eq!(pre, direct);
        assert_eq!(pre[0].labels, vec![2, 0]);
    }
}
