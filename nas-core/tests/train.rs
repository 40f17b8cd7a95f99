//! The trainer end to end on the CPU backend: a small net learns a small generated
//! set (accuracy well above chance, loss falling), runs are reproducible from their
//! seed, an absurd learning rate ends the run as `diverged`, and nets that do not
//! fit the task are refused.

use burn::backend::{Autodiff, Flex};
use nas_core::data::augment::Augment;
use nas_core::data::synthetic;
use nas_core::train::{Outcome, Task, TrainConfig, TrainError, train};
use nas_dsl::CheckedNet;

type B = Autodiff<Flex>;

const SMALL: &str = "net Small(input = [3, 32, 32], classes = 10) {
    conv(3 -> 16, k = 3, pad = 1); bn; relu; maxpool(k = 2);
    conv(16 -> 32, k = 3, pad = 1); bn; relu; maxpool(k = 2);
    conv(32 -> 32, k = 3, pad = 1); bn; relu;
    gap;
    linear(32 -> 10);
}";

fn net(src: &str) -> CheckedNet {
    nas_dsl::check_str(src).unwrap().remove(0)
}

fn task(train: usize, test: usize) -> Task {
    Task::new(synthetic::generate(train, test, synthetic::DATA_SEED).unwrap())
}

#[test]
fn a_small_net_learns_the_generated_task() {
    let task = task(1280, 400);
    let cfg = TrainConfig {
        epochs: 8,
        batch: 32,
        lr: 0.05,
        augment: Augment::NONE,
        seed: 1,
        ..TrainConfig::default()
    };
    let report = train::<B>(&net(SMALL), &task, &cfg, &Default::default(), &mut ()).unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.epochs.len(), 8);
    assert_eq!(report.epochs.iter().map(|e| e.steps).sum::<usize>(), 320);
    let first = &report.epochs[0];
    let last = &report.epochs[7];
    let chance = 1.0 / synthetic::CLASSES as f64;
    assert!(
        report.top1 > 3.0 * chance,
        "top-1 {:.3} is not above 3x chance; epochs: {:#?}",
        report.top1,
        report.epochs
    );
    assert!(report.top5 >= report.top1);
    assert!(
        last.train_loss < 0.8 * first.train_loss,
        "train loss {:.3} -> {:.3}",
        first.train_loss,
        last.train_loss
    );
    assert!(last.test_loss < first.test_loss.max((synthetic::CLASSES as f64).ln()));
    assert!(last.images_per_sec > 0.0 && last.wall_s > 0.0);
    assert_eq!(report.params, net(SMALL).params());
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
        Outcome::Diverged { epoch, step, reason } => {
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
    let wide = "net W(input = [3, 32, 32], classes = 100) { conv(3 -> 4, k = 3); gap; linear(4 -> 100); }";
    let e = train::<B>(&net(wide), &task, &TrainConfig::default(), &Default::default(), &mut ())
        .unwrap_err();
    assert!(matches!(e, TrainError::Mismatch { .. }));
    assert_eq!(
        e.to_string(),
        "`W` does not fit the synthetic task: the net ends in [100] but the task has 10 classes"
    );
    let small = "net S(input = [3, 16, 16], classes = 10) { conv(3 -> 4, k = 3); gap; linear(4 -> 10); }";
    let e = train::<B>(&net(small), &task, &TrainConfig::default(), &Default::default(), &mut ())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`S` does not fit the synthetic task: the net takes [3, 16, 16] but the images are [3, 32, 32]"
    );
}
