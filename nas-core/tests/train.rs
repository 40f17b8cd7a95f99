//! The trainer end to end on the CPU backend: a small net learns a small generated
//! set (accuracy above 3x chance, loss falling), runs are reproducible from their
//! seed, an absurd learning rate ends the run as `diverged`, and nets that do not
//! fit the task are refused, and a training continued from a checkpoint equals
//! one uninterrupted training bit for bit.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use burn::backend::{Autodiff, Flex};
use nas_core::data::augment::Augment;
use nas_core::data::{Dataset, PIXELS, Split, synthetic};
use nas_core::train::{Checkpoint, Outcome, Task, TrainConfig, TrainError, train, train_from};
use nas_dsl::CheckedNet;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

type B = Autodiff<Flex>;

fn net(src: &str) -> CheckedNet {
    nas_dsl::check_str(src).unwrap().remove(0)
}

fn task(train: usize, test: usize) -> Task {
    Task::new(synthetic::generate(train, test, synthetic::DATA_SEED).unwrap())
}

/// A small learnable set: four classes of stripes (horizontal, vertical, diagonal,
/// anti-diagonal) with random period, phase and colours plus pixel noise, labels
/// cycling through the classes. Goes through the real pipeline (`Task`, batching,
/// normalisation, shuffling) like any dataset.
fn stripes(n: usize, seed: u64) -> Dataset {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut images = vec![0u8; n * PIXELS];
    let mut labels = Vec::with_capacity(n);
    for (i, img) in images.chunks_exact_mut(PIXELS).enumerate() {
        let class = i % 4;
        let period: f32 = rng.random_range(4.0..9.0);
        let phase: f32 = rng.random_range(0.0..period);
        let (lo, hi): ([u8; 3], [u8; 3]) = (rng.random(), rng.random());
        for y in 0..32 {
            for x in 0..32 {
                let t = match class {
                    0 => y as f32,
                    1 => x as f32,
                    2 => (x + y) as f32 / 1.414,
                    _ => (x as f32 - y as f32) / 1.414,
                };
                let on = ((t + phase) / period).fract() < 0.5;
                for c in 0..3 {
                    let v = if on { hi[c] } else { lo[c] };
                    let noise: i16 = rng.random_range(-20..=20);
                    img[c * 1024 + y * 32 + x] = (i16::from(v) + noise).clamp(0, 255) as u8;
                }
            }
        }
        labels.push(class as u16);
    }
    Dataset {
        images,
        labels,
        classes: 4,
    }
}

const TINY: &str = "net Tiny(input = [3, 32, 32], classes = 4) {
    conv(3 -> 16, k = 3, stride = 2, pad = 1); bn; relu;
    conv(16 -> 32, k = 3, stride = 2, pad = 1); bn; relu;
    gap;
    linear(32 -> 4);
}";

#[test]
fn a_small_net_learns_a_small_generated_set() {
    let task = Task::new(Split {
        name: "stripes".into(),
        train: stripes(640, 1),
        test: stripes(200, 2),
    });
    let cfg = TrainConfig {
        epochs: 10,
        batch: 32,
        lr: 0.1,
        augment: Augment::NONE,
        seed: 1,
        ..TrainConfig::default()
    };
    let tiny = net(TINY);
    let report = train::<B>(&tiny, &task, &cfg, &Default::default(), &mut ()).unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.epochs.len(), 10);
    assert_eq!(report.epochs.iter().map(|e| e.steps).sum::<usize>(), 200);
    let (first, last) = (&report.epochs[0], &report.epochs[9]);
    let chance = 1.0 / 4.0;
    assert!(
        report.top1 > 3.0 * chance,
        "top-1 {:.3} is not above 3x chance; epochs: {:#?}",
        report.top1,
        report.epochs
    );
    assert!(
        last.train_loss < 0.7 * first.train_loss,
        "train loss {:.3} -> {:.3}",
        first.train_loss,
        last.train_loss
    );
    assert!(last.test_loss < first.test_loss);
    assert!(last.images_per_sec > 0.0 && last.wall_s > 0.0);
    assert_eq!(report.params, tiny.params());
    assert_eq!(report.dataset, "stripes");
}

#[test]
fn runs_are_reproducible_from_their_seed() {
    let task = task(96, 40);
    let cfg = TrainConfig {
        epochs: 1,
        batch: 16,
        seed: 7,
        ..TrainConfig::default()
    };
    let dropout = "net D(input = [3, 32, 32], classes = 10) {
        conv(3 -> 8, k = 3, stride = 2, pad = 1); bn; relu; gap; dropout(p = 0.3); linear(8 -> 10);
    }";
    let run = |cfg: &TrainConfig| {
        let r = train::<B>(&net(dropout), &task, cfg, &Default::default(), &mut ()).unwrap();
        (r.epochs[0].train_loss, r.epochs[0].test_loss, r.top1)
    };
    let a = run(&cfg);
    assert_eq!(a, run(&cfg));
    let other = run(&TrainConfig { seed: 8, ..cfg });
    assert_ne!(a, other);
}

#[test]
fn an_absurd_learning_rate_diverges_instead_of_crashing() {
    let task = task(64, 20);
    let cfg = TrainConfig {
        epochs: 3,
        batch: 16,
        lr: 1e12,
        warmup: 0.0,
        ..TrainConfig::default()
    };
    // No BatchNorm to tame the blow-up.
    let plain = "net P(input = [3, 32, 32], classes = 10) {
        conv(3 -> 8, k = 3, pad = 1); relu; gap; linear(8 -> 10);
    }";
    let report = train::<B>(&net(plain), &task, &cfg, &Default::default(), &mut ()).unwrap();
    assert!(report.diverged());
    match &report.outcome {
        Outcome::Diverged {
            epoch,
            step,
            reason,
        } => {
            assert_eq!(*epoch, 1);
            assert!(*step >= 2 && *step <= 4, "step {step}");
            assert!(reason.starts_with("training loss "), "{reason}");
        }
        Outcome::Completed => unreachable!(),
    }
    assert!(report.epochs.is_empty());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outcome"]["status"], "diverged");
    assert_eq!(json["outcome"]["epoch"], 1);
}

#[test]
fn nets_that_do_not_fit_the_task_are_refused() {
    let task = task(20, 10);
    let wide =
        "net W(input = [3, 32, 32], classes = 100) { conv(3 -> 4, k = 3); gap; linear(4 -> 100); }";
    let e = train::<B>(
        &net(wide),
        &task,
        &TrainConfig::default(),
        &Default::default(),
        &mut (),
    )
    .unwrap_err();
    assert!(matches!(e, TrainError::Mismatch { .. }));
    assert_eq!(
        e.to_string(),
        "`W` does not fit the synthetic task: the net ends in [100] but the task has 10 classes"
    );
    let small =
        "net S(input = [3, 16, 16], classes = 10) { conv(3 -> 4, k = 3); gap; linear(4 -> 10); }";
    let e = train::<B>(
        &net(small),
        &task,
        &TrainConfig::default(),
        &Default::default(),
        &mut (),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`S` does not fit the synthetic task: the net takes [3, 16, 16] but the images are [3, 32, 32]"
    );
}

/// Three epochs in one go, and the same three epochs as 1 + 1 + 1 continued from
/// checkpoints (the schedule spanning all three), give the same telemetry, the
/// same weights, running statistics and momentum, bit for bit (the net has
/// dropout, batch norm and augmentation, so every random stream is covered).
#[test]
fn a_continued_training_equals_an_uninterrupted_one() {
    let task = task(96, 40);
    let src = "net C(input = [3, 32, 32], classes = 10) {
        conv(3 -> 8, k = 3, stride = 2, pad = 1); bn; relu; gap; dropout(p = 0.3); linear(8 -> 10);
    }";
    let n = net(src);
    let device = Default::default();
    let cfg = |epochs| TrainConfig {
        epochs,
        schedule_epochs: Some(3),
        batch: 16,
        seed: 5,
        ..TrainConfig::default()
    };
    let whole = train_from::<B>(&n, &task, &cfg(3), None, true, &device, &mut ()).unwrap();
    assert_eq!(whole.resumed_at, 0);
    let mut ckpt: Option<Checkpoint> = None;
    for epochs in 1..=3 {
        let part = train_from::<B>(
            &n,
            &task,
            &cfg(epochs),
            ckpt.as_ref(),
            true,
            &device,
            &mut (),
        )
        .unwrap();
        assert_eq!(part.resumed_at, epochs - 1);
        assert_eq!(part.epochs.len(), epochs);
        ckpt = part.checkpoint;
    }
    let ckpt = ckpt.unwrap();
    let whole_ckpt = whole.checkpoint.clone().unwrap();
    assert_eq!(ckpt.epochs().unwrap(), 3);
    let (a, b) = (
        ckpt.weights::<B>(&n, &device).unwrap(),
        whole_ckpt.weights::<B>(&n, &device).unwrap(),
    );
    assert!(a.len() as u64 >= n.params() && a.len() == b.len());
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "the continued training's weights differ from the uninterrupted one's"
    );
    // The continued run's telemetry (epochs 1-3, the first two from the
    // checkpoints) matches, wall times aside.
    let part = train_from::<B>(&n, &task, &cfg(3), Some(&ckpt), false, &device, &mut ()).unwrap();
    assert_eq!(part.resumed_at, 3);
    let key = |r: &nas_core::train::Report| {
        r.epochs
            .iter()
            .map(|e| (e.epoch, e.steps, e.train_loss, e.test_loss, e.top1, e.lr))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&part), key(&whole));
    assert_eq!(part.top1, whole.top1);
    // Without the long schedule, the first epoch is another training: its
    // checkpoint is refused, as are garbage and a checkpoint of another net.
    let short = TrainConfig {
        schedule_epochs: None,
        ..cfg(2)
    };
    let e = train_from::<B>(&n, &task, &short, Some(&ckpt), false, &device, &mut ()).unwrap_err();
    assert!(matches!(e, TrainError::Checkpoint(_)), "{e}");
    assert!(e.to_string().contains("a 3-epoch schedule"), "{e}");
    let garbage = Checkpoint::from_bytes(b"NASCKPT1 nonsense".to_vec());
    let e =
        train_from::<B>(&n, &task, &cfg(3), Some(&garbage), false, &device, &mut ()).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let other = net(&src.replace("8 ->", "6 ->").replace("-> 8", "-> 6"));
    let e =
        train_from::<B>(&other, &task, &cfg(3), Some(&ckpt), false, &device, &mut ()).unwrap_err();
    assert!(e.to_string().contains("parameters"), "{e}");
}
