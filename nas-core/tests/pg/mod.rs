//! Helpers of the PostgreSQL search tests: the server's URL (or a loud skip),
//! a run with its coordinator, worker processes, and the trials as stored.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use nas_core::store::TrialStatus;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nas-core");

/// The server's URL; `None` (after a loud SKIPPED line) when there is none,
/// which fails under `NAS_REQUIRE_PG`.
pub fn pg_url(what: &str) -> Option<String> {
    match std::env::var("NAS_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("NAS_REQUIRE_PG").is_none(),
                "NAS_REQUIRE_PG is set (as .ci/run sets it) but NAS_PG_URL is not: {what} must run"
            );
            eprintln!(
                "\n*** SKIPPED: NAS_PG_URL is not set, so {what} did not run.        ***\n\
                 *** Start a server with `scripts/postgres.sh start` and set NAS_PG_URL ***\n\
                 *** to the URL it prints.                                              ***\n"
            );
            None
        }
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A trial as the database holds it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub step: i64,
    pub status: TrialStatus,
    pub runs: i64,
    pub worker: Option<String>,
    pub error: Option<String>,
    pub accuracy: Option<f64>,
    /// The per-epoch telemetry, decoded.
    pub telemetry: serde_json::Value,
}

impl Row {
    /// The worker's name without its process id.
    pub fn worker_name(&self) -> Option<&str> {
        self.worker
            .as_deref()
            .map(|w| w.rsplit_once(':').map_or(w, |(name, _)| name))
    }
}

/// A run of a unique name in the database, with its own runs directory.
pub struct Run {
    pub url: String,
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Run {
    pub fn new(url: &str, test: &str) -> Run {
        let out = Command::new(BIN)
            .args(["db", "init", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Run {
            url: url.to_string(),
            name: format!("{test}-{}-{nanos}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Starts the coordinator (`--coordinate-only`) for `trials` proposals, each
    /// trained on 64 images, or with `slow` on 1,500 (about 2 s: long enough to
    /// kill a worker during it).
    pub fn coordinate(&self, trials: u64, slow: bool) -> Child {
        self.coordinate_with(trials, slow, &[])
    }

    /// [`Run::coordinate`] with more `evolve` flags.
    pub fn coordinate_with(&self, trials: u64, slow: bool, extra: &[&str]) -> Child {
        let train = if slow { "1500" } else { "64" };
        Command::new(BIN)
            .args(["evolve", "--storage", &self.url, "--name", &self.name])
            .arg("--runs-dir")
            .arg(self.dir.path())
            .args([
                "--coordinate-only",
                "--proposer",
                "mutate",
                "--epochs",
                "1",
                "--train-size",
                train,
                "--test-size",
                "32",
                "--batch",
                "32",
                "--no-time-budget",
            ])
            .args(["--trials", &trials.to_string()])
            .args(extra)
            .env("CI", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The run's trials, in order.
    pub fn trials(&self) -> Vec<Row> {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        c.query(
            "SELECT id, step, status, runs, worker, error, accuracy, telemetry FROM trials
             WHERE run = $1 ORDER BY id",
            &[&self.name],
        )
        .unwrap()
        .iter()
        .map(|r| Row {
            id: r.get(0),
            step: r.get(1),
            status: TrialStatus::parse(r.get(2)).unwrap(),
            runs: r.get(3),
            worker: r.get(4),
            error: r.get(5),
            accuracy: r.get(6),
            telemetry: serde_json::from_str(r.get(7)).unwrap(),
        })
        .collect()
    }

    /// Waits until `ok` holds for the trials.
    pub fn wait_until(&self, limit: Duration, what: &str, ok: impl Fn(&[Row]) -> bool) {
        let started = Instant::now();
        loop {
            let trials = self.trials();
            if ok(&trials) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "waited {limit:?} for {what}: {trials:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until worker `name` trains a trial; its id.
    pub fn wait_running_by(&self, name: &str, limit: Duration) -> i64 {
        let started = Instant::now();
        loop {
            if let Some(t) = self
                .trials()
                .into_iter()
                .find(|t| t.status == TrialStatus::Running && t.worker_name() == Some(name))
            {
                return t.id;
            }
            assert!(started.elapsed() < limit, "`{name}` never trained a trial");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A `nas-core worker` process.
pub struct Worker {
    child: Child,
}

impl Worker {
    /// Starts worker `name` on the run with a lease of `lease` seconds.
    pub fn start(url: &str, run: &str, name: &str, lease: f64) -> Worker {
        let child = Command::new(BIN)
            .args(["worker", "--storage", url, "--run", run, "--name", name])
            .args([
                "--lease",
                &lease.to_string(),
                "--poll",
                "0.1",
                "--db-wait",
                "60",
            ])
            .args(["--threads", "1"])
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Worker { child }
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the worker to exit: whether it exited 0, and what it wrote.
    pub fn finish(mut self, limit: Duration) -> (bool, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        (status.success(), log)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
