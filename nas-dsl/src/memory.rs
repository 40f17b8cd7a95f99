//! The training-memory model of a checked net: what one training step at batch
//! size `B` keeps in memory, from the checker's shapes alone.
//!
//! ```text
//! bytes(B) = B · 8 · (input + Σ outputs)      activations kept for the backward pass
//!                                             and their gradients (f32: 4 + 4 bytes
//!                                             per element of every statement's output)
//!          + 16 · params                      weights, gradients, momentum and one
//!                                             working copy (f32)
//!          + RUNTIME_BYTES                    the process's own base
//! ```
//!
//! Checked against the peak resident set of real trainings (Burn's flex backend,
//! 64 images, batch 8 and 32) of every net in `models` and two large ones: the
//! estimate lies within a factor of 2 of the measured peak either way (the test
//! `memory_model` in nas-core asserts it); measured per-sample slopes were 1.3 to
//! 1.8 × 4 bytes per activation element, under the model's 2 ×.

use crate::graph::CheckedNet;

/// The process's base memory the model adds (16 MiB).
pub const RUNTIME_BYTES: u64 = 16 << 20;

/// A net's training memory: a part per sample of the batch and a fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Bytes per sample of the batch.
    pub per_sample: u64,
    /// Bytes independent of the batch.
    pub fixed: u64,
}

impl Memory {
    /// The bytes a training step at batch size `batch` needs.
    pub fn at_batch(&self, batch: u64) -> u64 {
        self.fixed
            .saturating_add(self.per_sample.saturating_mul(batch))
    }
}

impl CheckedNet {
    /// The training memory the model above estimates.
    pub fn training_memory(&self) -> Memory {
        let elements = self
            .layers()
            .iter()
            .filter_map(|l| l.output_shape().numel())
            .fold(self.input().numel().unwrap_or(0), u64::saturating_add);
        Memory {
            per_sample: elements.saturating_mul(8),
            fixed: self
                .params()
                .saturating_mul(16)
                .saturating_add(RUNTIME_BYTES),
        }
    }
}

/// Bytes for people: `512 B`, `3.4 MiB`, `7.9 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_counts_activations_and_parameters() {
        let net = crate::check_str(
            "net N(input = [3, 8, 8], classes = 10) { conv(3 -> 4, k = 3, pad = 1); relu; gap; linear(4 -> 10); }",
        )
        .unwrap()
        .remove(0);
        let m = net.training_memory();
        // input 192 + conv 256 + relu 256 + gap 4 + linear 10 = 718 elements.
        assert_eq!(m.per_sample, 718 * 8);
        assert_eq!(m.fixed, net.params() * 16 + RUNTIME_BYTES);
        assert_eq!(m.at_batch(2), m.fixed + 2 * 718 * 8);
        assert_eq!(m.at_batch(u64::MAX), u64::MAX);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(7_864_320_000), "7.3 GiB");
    }
}
