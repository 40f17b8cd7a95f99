//! `nas-core bench jobs`: a search's finished trials per minute with `--jobs N`
//! against `--jobs 1`, side by side in one run.
//!
//! `nas-core bench train`: training throughput (images/s) of a fixed reference net
//! and batch — forward, backward and optimiser step on constant random data — with
//! the time split per phase. `bench/pytorch_reference.py` runs the identical net,
//! batch, optimiser and thread count in PyTorch; `bench/compare.sh` runs both.
//!
//! `nas-core bench asha` (in `bench_asha`): flat search against ASHA at equal
//! training compute.
//!
//! `nas-core bench batch-norm`: a training step (forward and backward) of each
//! batch-normalisation layer of the default seed, at the shape the checker gives it,
//! Burn's `BatchNorm::forward` against [`crate::runtime::batch_norm::forward`], in
//! alternating rounds of one run.

use crate::runtime::RuntimeNet;
use crate::train::{BackendJob, BackendKind, on_backend};
use anyhow::Context;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, ElementConversion, Int, Tensor};
use nas_dsl::CheckedNet;
use nas_dsl::summary::thousands;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The reference net: three 3x3 convolutions (32, 64, 128 channels), two 2x2 max
/// pools, global average pooling and a 100-way head — 106,148 parameters. Keep in
/// step with `bench/pytorch_reference.py`.
pub const REFERENCE: &str = "net BenchCnn(input = [3, 32, 32], classes = 100) {
    conv(3 -> 32, k = 3, pad = 1);
    relu;
    maxpool(k = 2);
    conv(32 -> 64, k = 3, pad = 1);
    relu;
    maxpool(k = 2);
    conv(64 -> 128, k = 3, pad = 1);
    relu;
    gap;
    linear(128 -> 100);
}
";

/// Measure performance.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[command(subcommand)]
    pub what: What,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Training images/s of the reference net (see `bench/compare.sh` for PyTorch).
    Train(TrainArgs),
    /// Finished trials per minute of a search with `--jobs N` against `--jobs 1`,
    /// side by side in one run (the mutate proposer, the default task unless set).
    Jobs(Box<JobsArgs>),
    /// Forward+backward of each of the default seed's batch norms: Burn's module
    /// forward against the runtime's, alternating, in one run.
    BatchNorm(BnArgs),
    /// Flat search at the lowest rung, at the top rung and ASHA at equal
    /// training compute over several seeds; each best network retrained at the
    /// top fidelity with a fresh seed, compared with `compare`'s statistics.
    Asha(Box<super::bench_asha::AshaArgs>),
}

/// Options of `bench batch-norm`.
#[derive(Debug, clap::Args)]
pub struct BnArgs {
    /// Images per step (the default search's batch).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Alternating rounds; each times `--steps` steps of each implementation.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// Steps per round and implementation.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// CPU threads (the size of rayon's global pool; one per trial in a search).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// The input shapes `[channels, height, width]` of the default seed's batch norms,
/// as the checker gives them.
fn seed_bn_shapes() -> anyhow::Result<Vec<[usize; 3]>> {
    let seed = nas_dsl::check_str(crate::evolve::SEED_SOURCE)
        .ok()
        .and_then(|mut n| n.pop())
        .context("the embedded seed fails the checker")?;
    Ok(seed
        .layers()
        .iter()
        .filter(|l| matches!(l.op, nas_dsl::Op::Layer(nas_dsl::ast::Layer::Bn)))
        .filter_map(|l| match l.input_shape().dims()[..] {
            [c, h, w] => Some([c as usize, h as usize, w as usize]),
            _ => None,
        })
        .collect())
}

/// One row of `bench batch-norm`: a layer's input shape and the median
/// milliseconds per step of Burn's and the runtime's forward.
struct BnRow {
    shape: [usize; 3],
    burns_ms: f64,
    ours_ms: f64,
}

/// Times Burn's and the runtime's batch norm at each of the seed's shapes.
fn bench_bn<B: AutodiffBackend>(args: &BnArgs, device: &B::Device) -> anyhow::Result<Vec<BnRow>> {
    use burn::nn::BatchNormConfig;
    B::seed(device, 0);
    let mut out = Vec::new();
    for shape in seed_bn_shapes()? {
        let [c, h, w] = shape;
        let m = BatchNormConfig::new(c).init::<B>(device);
        let x = Tensor::<B, 4>::random(
            [args.batch, c, h, w],
            Distribution::Normal(0.5, 2.0),
            device,
        );
        let weight = Tensor::<B, 4>::random(x.dims(), Distribution::Default, device);
        let step = |ours: bool| -> anyhow::Result<()> {
            let x = x.clone().require_grad();
            let y = if ours {
                crate::runtime::batch_norm::forward(&m, x.clone())
            } else {
                m.forward(x.clone())
            };
            let g = (y * weight.clone()).sum().backward();
            let dx = x.grad(&g).context("no input gradient")?;
            let probe: f32 = dx.sum().into_scalar().elem();
            anyhow::ensure!(probe.is_finite(), "the gradient became {probe}");
            Ok(())
        };
        let (mut burns, mut ours) = (Vec::new(), Vec::new());
        for round in 0..=args.rounds {
            for (which, times) in [(false, &mut burns), (true, &mut ours)] {
                let t = Instant::now();
                for _ in 0..args.steps {
                    step(which)?;
                }
                // Round 0 warms both up.
                if round > 0 {
                    times.push(t.elapsed().as_secs_f64() * 1e3 / args.steps as f64);
                }
            }
        }
        let median = |xs: &[f64]| crate::stats::summary(xs).map_or(f64::NAN, |s| s.median);
        out.push(BnRow {
            shape,
            burns_ms: median(&burns),
            ours_ms: median(&ours),
        });
    }
    Ok(out)
}

fn run_bn(args: &BnArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.batch > 0 && args.steps > 0 && args.rounds > 0,
        "`--batch`, `--steps` and `--rounds` must be at least 1"
    );
    size_pool(args.threads);
    struct Job<'a>(&'a BnArgs);
    impl BackendJob for Job<'_> {
        type Output = anyhow::Result<Vec<BnRow>>;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Self::Output {
            bench_bn::<B>(self.0, device)
        }
    }
    let rows = on_backend(BackendKind::Flex, Job(args))??;
    println!(
        "batch norm, forward + backward, batch {}, {} thread(s), median of {} rounds of {} steps:",
        args.batch, args.threads, args.rounds, args.steps
    );
    let (mut total_burn, mut total_ours) = (0.0, 0.0);
    let layers = rows.len();
    for BnRow {
        shape: [c, h, w],
        burns_ms,
        ours_ms,
    } in rows
    {
        println!(
            "  [{}, {c}, {h}, {w}]: Burn's {burns_ms:.3} ms, runtime's {ours_ms:.3} ms, {:.2}x faster",
            args.batch,
            burns_ms / ours_ms
        );
        total_burn += burns_ms;
        total_ours += ours_ms;
    }
    println!(
        "  the seed's {layers} together: Burn's {total_burn:.3} ms, runtime's {total_ours:.3} ms, {:.2}x faster",
        total_burn / total_ours
    );
    Ok(ExitCode::SUCCESS)
}

/// Sizes rayon's global pool (a warning when it was already built).
fn size_pool(threads: usize) {
    if threads > 0
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
    {
        eprintln!("warning: could not size the thread pool: {e}");
    }
}

/// Options of `bench jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// Proposals per search (after the seed).
    #[arg(long, default_value_t = 8)]
    pub trials: u64,
    /// The parallel search's jobs [default: one per core].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where the two runs go (as `bench-jobs-<time>-j<N>`).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: std::path::PathBuf,
    /// The task and fidelity (as for `evolve`).
    #[command(flatten)]
    pub task: super::evolve::TaskArgs,
}

/// Runs one search of `bench jobs`: (trials finished, seconds).
fn timed_search(args: &JobsArgs, jobs: usize, name: &str) -> anyhow::Result<(usize, f64)> {
    let mut cfg = crate::evolve::SearchConfig {
        name: Some(format!("{name}-j{jobs}")),
        runs_dir: args.runs_dir.clone(),
        proposer: crate::evolve::ProposerKind::Mutate,
        trials: args.trials,
        time_budget: None,
        jobs,
        ..crate::evolve::SearchConfig::default()
    };
    args.task.apply(&mut cfg);
    // The search itself: the task's data is made before the clock starts.
    let mut search = crate::evolve::Evolve::create(cfg)?;
    let started = Instant::now();
    let summary = search.run(&mut ())?;
    Ok((summary.trained, started.elapsed().as_secs_f64()))
}

fn run_jobs(args: &JobsArgs) -> anyhow::Result<ExitCode> {
    let jobs = args.jobs.unwrap_or_else(crate::evolve::cores);
    anyhow::ensure!(
        jobs >= 1 && args.trials >= 1,
        "`--jobs` and `--trials` must be at least 1"
    );
    let name = crate::evolve::default_name("bench-jobs");
    let mut rates = Vec::new();
    for j in [1, jobs] {
        let (trained, secs) = timed_search(args, j, &name)?;
        let per_min = 60.0 * trained as f64 / secs;
        println!("--jobs {j}: {trained} trials finished in {secs:.1} s = {per_min:.2} trials/min");
        rates.push(per_min);
    }
    println!(
        "ratio --jobs {jobs} / --jobs 1: {:.2}x ({} cores)",
        rates[1] / rates[0],
        crate::evolve::cores()
    );
    Ok(ExitCode::SUCCESS)
}

/// The optimiser a benchmark step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Optim {
    /// Adam, lr 1e-3.
    Adam,
    /// SGD, momentum 0.9 (Nesterov), lr 0.01.
    Sgd,
}

/// Options of `bench train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// CPU threads (the size of rayon's global pool).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The optimiser.
    #[arg(long, value_enum, default_value_t = Optim::Adam)]
    pub optim: Optim,
    /// The Burn backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What one benchmark measured.
#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    /// The reference net's name.
    pub net: String,
    /// Its parameters.
    pub params: u64,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// CPU threads.
    pub threads: usize,
    /// The optimiser.
    pub optim: Optim,
    /// The backend's name.
    pub backend: String,
    /// Training images per second.
    pub images_per_sec: f64,
    /// Mean forward time per step (ms), loss included.
    pub forward_ms: f64,
    /// Mean backward time per step (ms).
    pub backward_ms: f64,
    /// Mean optimiser time per step (ms).
    pub optimizer_ms: f64,
}

fn bench<B: AutodiffBackend>(
    net: &CheckedNet,
    args: &TrainArgs,
    device: &B::Device,
) -> anyhow::Result<BenchResult> {
    B::seed(device, 0);
    let mut model = RuntimeNet::<B>::new(net, device);
    let classes = net.output().channels() as usize;
    let x = Tensor::<B, 4>::random(
        [args.batch, 3, 32, 32],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let y = Tensor::<B, 1, Int>::random(
        [args.batch],
        Distribution::Uniform(0.0, classes as f64),
        device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init::<B>(device);
    let (mut fwd, mut bwd, mut opt) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut run = |model: RuntimeNet<B>,
                   step: &mut dyn FnMut(RuntimeNet<B>, GradientsParams) -> RuntimeNet<B>,
                   timed: bool|
     -> anyhow::Result<RuntimeNet<B>> {
        let t0 = Instant::now();
        let loss = loss_fn.forward(model.forward(x.clone())?, y.clone());
        B::sync(device).ok();
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        B::sync(device).ok();
        let t2 = Instant::now();
        let model = step(model, grads);
        B::sync(device).ok();
        if timed {
            fwd += t1 - t0;
            bwd += t2 - t1;
            opt += t2.elapsed();
        }
        Ok(model)
    };
    let mut step: Box<dyn FnMut(RuntimeNet<B>, GradientsParams) -> RuntimeNet<B>> = match args.optim
    {
        Optim::Adam => {
            let mut o = AdamConfig::new().init::<B, RuntimeNet<B>>();
            Box::new(move |m, g| o.step(1e-3, m, g))
        }
        Optim::Sgd => {
            let mut o = SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_dampening(0.0)
                        .with_nesterov(true),
                ))
                .init::<B, RuntimeNet<B>>();
            Box::new(move |m, g| o.step(1e-2, m, g))
        }
    };
    for _ in 0..args.warmup {
        model = run(model, &mut *step, false)?;
    }
    let start = Instant::now();
    for _ in 0..args.steps {
        model = run(model, &mut *step, true)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let probe: f32 = model.forward(x.clone())?.sum().into_scalar().elem();
    anyhow::ensure!(probe.is_finite(), "the benchmark's logits became {probe}");
    let steps = args.steps.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / steps;
    Ok(BenchResult {
        net: net.name().to_string(),
        params: net.params(),
        batch: args.batch,
        steps: args.steps,
        threads: args.threads,
        optim: args.optim,
        backend: B::name(device),
        images_per_sec: (args.steps * args.batch) as f64 / elapsed.max(1e-9),
        forward_ms: ms(fwd),
        backward_ms: ms(bwd),
        optimizer_ms: ms(opt),
    })
}

/// Runs `nas-core bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let args = match args.what {
        What::Train(a) => a,
        What::Jobs(a) => return run_jobs(&a),
        What::BatchNorm(a) => return run_bn(&a),
        What::Asha(a) => return super::bench_asha::run(&a),
    };
    anyhow::ensure!(
        args.batch > 0 && args.steps > 0,
        "`--batch` and `--steps` must be at least 1"
    );
    size_pool(args.threads);
    let net = nas_dsl::check_str(REFERENCE)
        .ok()
        .and_then(|mut n| n.pop())
        .context("the reference net fails the checker")?;
    struct Job<'a> {
        net: &'a CheckedNet,
        args: &'a TrainArgs,
    }
    impl BackendJob for Job<'_> {
        type Output = anyhow::Result<BenchResult>;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Self::Output {
            bench::<B>(self.net, self.args, device)
        }
    }
    let result = on_backend(
        args.backend,
        Job {
            net: &net,
            args: &args,
        },
    )??;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{}: {} params, batch {}, {:?}, {} threads, backend {}",
            result.net,
            thousands(result.params),
            result.batch,
            result.optim,
            result.threads,
            result.backend
        );
        println!(
            "{:.1} images/s over {} steps (per step: forward {:.1} ms, backward {:.1} ms, optimiser {:.1} ms)",
            result.images_per_sec,
            result.steps,
            result.forward_ms,
            result.backward_ms,
            result.optimizer_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_net_has_the_documented_size() {
        let net = nas_dsl::check_str(REFERENCE).unwrap().remove(0);
        assert_eq!(net.params(), 106_148);
    }

    #[test]
    fn the_batch_norm_bench_times_both_implementations_at_each_of_the_seeds_batch_norms() {
        let args = BnArgs {
            batch: 4,
            rounds: 1,
            steps: 1,
            threads: 1,
        };
        let rows =
            bench_bn::<burn::backend::Autodiff<burn::backend::Flex>>(&args, &Default::default())
                .unwrap();
        // small_cnn.nas: bn after each of its three convolutions (stride 2, two pools).
        let shapes: Vec<_> = rows.iter().map(|r| r.shape).collect();
        assert_eq!(shapes, [[16, 16, 16], [32, 8, 8], [64, 4, 4]]);
        for r in rows {
            assert!(r.burns_ms.is_finite() && r.burns_ms > 0.0);
            assert!(r.ours_ms.is_finite() && r.ours_ms > 0.0);
        }
    }
}
