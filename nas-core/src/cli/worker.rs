//! `nas-core worker`: claims the queued trials of a run from its store and
//! trains them (the worker role; `evolve` is the coordinator). Any number of
//! workers, on any machines that reach the store, may serve one run.

use crate::evolve::{LocalWorkers, WorkerOptions, run_worker};
use crate::store::Storage;
use std::path::PathBuf;
use std::process::ExitCode;

/// Claim and train the queued trials of a run until it is finished.
///
/// Each claim holds a lease (`--lease`, in database time) that a heartbeat renews
/// every third of it; a worker killed, paused or cut off past its lease loses the
/// trial to another worker, and its late writes change nothing. A worker waits
/// (`--db-wait`) while the store is unreachable, then exits with an error; it
/// exits with 0 when the run is finished.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's store: `postgres://USER@HOST/DB`, or `sqlite:PATH` (or a run
    /// directory) on this machine.
    #[arg(long, value_name = "URL")]
    pub storage: String,

    /// The run to serve in a PostgreSQL store [default: the newest running run].
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// Worker processes to start here, each training one trial at a time on its
    /// share of the cores (or its GPU) [default: 1, or one per device].
    #[arg(long)]
    pub jobs: Option<usize>,

    /// GPUs for the worker processes (`cuda:0,cuda:1`; runs with `--backend
    /// cuda`): each process sees one, in turn, so several jobs may share a GPU
    /// [default: --jobs is the number of devices].
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,

    /// Compute threads of each worker process [default: the cores / --jobs].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seconds a claim is held without a heartbeat.
    #[arg(long, default_value_t = 30.0)]
    pub lease: f64,

    /// Seconds between looks at an empty queue.
    #[arg(long, default_value_t = 1.0)]
    pub poll: f64,

    /// Seconds to keep trying while the store is unreachable.
    #[arg(long, default_value_t = 120.0)]
    pub db_wait: f64,

    /// Exit after this many idle seconds (default: wait until the run is finished).
    #[arg(long)]
    pub idle_exit: Option<f64>,

    /// Where CIFAR data lives on this machine (overrides the run's `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A name for this worker in the store (default: the host name).
    #[arg(long)]
    pub name: Option<String>,

    /// Exit when the process that started this one is gone (local workers).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,

    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `nas-core worker`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let devices = match &args.devices {
        Some(d) => crate::evolve::parse_devices(d).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let jobs = args.jobs.unwrap_or(devices.len().max(1));
    anyhow::ensure!(jobs >= 1, "`--jobs` must be at least 1");
    anyhow::ensure!(
        args.lease.is_finite() && args.lease > 0.0 && args.poll.is_finite() && args.poll > 0.0,
        "`--lease` and `--poll` must be positive"
    );
    let mut storage = Storage::parse(&args.storage).map_err(anyhow::Error::msg)?;
    if let Some(name) = &args.run {
        match &mut storage {
            Storage::Postgres { run, .. } => *run = Some(name.clone()),
            Storage::Sqlite(_) => anyhow::bail!(
                "`--run` names a run in a PostgreSQL store; an SQLite store is one run"
            ),
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| (crate::evolve::cores() / jobs).max(1));
    if jobs > 1 || !devices.is_empty() {
        // One process per job: trainings in one process do not overlap.
        let exe = crate::evolve::worker_exe()?;
        let pool = LocalWorkers::spawn(&exe, &storage, jobs, threads, args.lease, &devices)?;
        eprintln!("{jobs} worker processes on {storage}");
        let failed = pool.wait();
        anyhow::ensure!(
            failed.is_empty(),
            "worker process(es) ended badly: {}",
            failed.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Before any parallel work: this process's share of the cores.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
    let level = if args.quiet {
        tracing::Level::ERROR
    } else {
        tracing::Level::INFO
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .finish();
    let opts = WorkerOptions {
        name: args.name,
        lease_s: args.lease,
        poll_s: args.poll,
        db_wait_s: args.db_wait,
        idle_exit_s: args.idle_exit,
        exit_with_parent: args.exit_with_parent,
        data_dir: args.data_dir,
        ..WorkerOptions::new(storage)
    };
    let summary = tracing::subscriber::with_default(subscriber, || run_worker(&opts))?;
    if !args.quiet {
        eprintln!(
            "worker: {} trial(s) trained, {} dropped after losing the lease; {}",
            summary.trained, summary.fenced, summary.stopped
        );
    }
    Ok(ExitCode::SUCCESS)
}
