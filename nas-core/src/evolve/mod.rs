//! The search loop: a population (the top-k trained architectures by accuracy),
//! parents chosen by tournament, one child per step from the proposer, trained at
//! the trial fidelity (or, with `scheduler = "asha"`, promoted through
//! multi-fidelity rungs) and recorded in the run's [`Store`](crate::store::Store); stopping at a number of
//! proposals, a time budget or an epoch budget; then an optional retraining of the top
//! architectures at a higher fidelity, the leaderboard, `best.nas` and the report.
//!
//! Every state change goes to the store first, so `evolve --resume` continues a
//! killed run: the trial that was in flight is trained again, finished ones never.
//!
//! One home per concern: `config` (what a search is: settings, defaults,
//! checks), `proposers` (starting the chosen proposer), `coordinator` (the
//! loop: propose, queue, account; its records and loading a run back),
//! `worker` (claiming, training and reporting queued trials), `trial` (the
//! seed, the budget check, training one network into a result) and `batch`
//! (planned trainings for `fidelity` and `corpus train`). The coordinator and
//! the workers share nothing but the store. `asha` holds the promotion rule of
//! asynchronous successive halving and the plan a store applies in its
//! promotion transaction ([`crate::store::Store::promote`]).

pub mod asha;
mod batch;
mod config;
mod coordinator;
mod proposers;
mod trial;
mod worker;

pub use batch::{Batch, result_line, train_batch};
pub use config::*;
pub use coordinator::*;
pub use proposers::*;
pub use trial::*;
pub use worker::*;

use crate::data;
use crate::propose::ProposeError;
use crate::report::ReportError;
use crate::store::StoreError;
use crate::train::TrainError;
use std::path::PathBuf;

/// The default seed network (`models/nas/small_cnn.nas`), embedded so a search
/// starts from any directory.
pub const SEED_SOURCE: &str = include_str!("../../../models/nas/small_cnn.nas");
/// Where the embedded seed comes from, for messages.
pub const SEED_FILE: &str = "models/nas/small_cnn.nas";
/// The effective configuration's file name in a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The log file's name in a run directory.
pub const LOG_FILE: &str = "evolve.log";
/// The default Ollama model.
pub const DEFAULT_MODEL: &str = "gemma3:270m";

/// Why a search could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    /// The configuration is invalid.
    #[error("invalid search configuration: {0}")]
    Config(String),
    /// The seed network does not parse or check.
    #[error("the seed network `{file}` does not pass the checker:\n{rendered}")]
    Seed {
        /// Its file.
        file: String,
        /// The rendered diagnostics.
        rendered: String,
    },
    /// The seed network does not fit the task or the budget.
    #[error("{0}")]
    SeedUnfit(String),
    /// A run of that name already exists.
    #[error("run `{}` already exists; continue it with `nas-core evolve --resume {}` or choose another `--name`", .0.display(), .0.display())]
    Exists(PathBuf),
    /// The run's record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The proposer could not start.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// Training refused the configuration.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Files around the run (config, runtime).
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // each test varies one field of the default
mod tests {
    use super::*;
    use crate::propose::Budget;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(Seconds::parse("90").unwrap(), Seconds(90.0));
        assert_eq!(Seconds::parse("90s").unwrap(), Seconds(90.0));
        assert_eq!(Seconds::parse("3m").unwrap(), Seconds(180.0));
        assert_eq!(Seconds::parse("1h30m").unwrap(), Seconds(5400.0));
        assert_eq!(Seconds::parse("2.5m").unwrap(), Seconds(150.0));
        assert!(Seconds::parse("soon").is_err());
        assert!(Seconds::parse("0").is_err());
        assert!(Seconds::parse("").is_err());
        assert_eq!(Seconds(180.0).to_string(), "3m");
        assert_eq!(Seconds(7200.0).to_string(), "2h");
        assert_eq!(Seconds(90.0).to_string(), "90s");
    }

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("5000"), Ok(5000));
        assert_eq!(parse_count("100k"), Ok(100_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("50_000"), Ok(50_000));
        assert!(parse_count("lots").is_err());
        assert!(parse_count("-3").is_err());
    }

    #[test]
    fn config_round_trips_through_toml_and_rejects_unknown_keys() {
        let mut cfg = SearchConfig::default();
        cfg.name = Some("x".into());
        let text = cfg.to_toml().unwrap();
        assert_eq!(toml::from_str::<SearchConfig>(&text).unwrap(), cfg);
        cfg.time_budget = None;
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<SearchConfig>(&json).unwrap(), cfg);
        cfg.max_params = Some(10_000);
        cfg.final_epochs = Some(3);
        let text = cfg.to_toml().unwrap();
        let back: SearchConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        let e = toml::from_str::<SearchConfig>("trails = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field `trails`"), "{e}");
        let partial: SearchConfig =
            toml::from_str("trials = 3\ntime_budget = \"2m\"\n[train]\nbatch = 32\n").unwrap();
        assert_eq!(partial.trials, 3);
        assert_eq!(partial.time_budget, Some(Seconds(120.0)));
        assert_eq!(partial.train.batch, 32);
        assert_eq!(partial.train.dataset, "synthetic");
    }

    #[test]
    fn resolve_names_the_bad_choice() {
        let mut cfg = SearchConfig::default();
        cfg.train.dataset = "imagenet".into();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(
            e.contains("unknown dataset `imagenet`; expected one of: synthetic, cifar10, cifar100"),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.llm.style = "poem".into();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(
            e.contains(
                "unknown prompt style `poem`; expected one of: chat, completion, structured"
            ),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.train.schedule = "step".into();
        let e = cfg.resolve().unwrap_err().to_string();
        assert!(
            e.contains("unknown schedule `step`; expected one of: cosine, one-cycle"),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.widths = "wide".into();
        assert!(
            cfg.resolve()
                .unwrap_err()
                .to_string()
                .contains("`widths = \"wide\"`")
        );
        let mut cfg = SearchConfig::default();
        cfg.name = Some("../x".into());
        assert!(cfg.resolve().is_err());
        assert!(SearchConfig::default().resolve().is_ok());
    }

    #[test]
    fn the_asha_scheduler_is_configured_and_checked() {
        let cfg: SearchConfig =
            toml::from_str("scheduler = \"asha\"\nmin_epochs = 1\nmax_epochs = 9\neta = 3\n")
                .unwrap();
        let asha = cfg.asha().unwrap().unwrap();
        assert_eq!(asha.rungs(), vec![1, 3, 9]);
        assert_eq!(cfg.first_epochs(), 1);
        let text = cfg.to_toml().unwrap();
        assert_eq!(toml::from_str::<SearchConfig>(&text).unwrap(), cfg);
        // The default top rung is min · η².
        let mut cfg = SearchConfig::default();
        cfg.scheduler = "asha".into();
        cfg.min_epochs = Some(2);
        cfg.eta = 2;
        assert_eq!(cfg.asha().unwrap().unwrap().rungs(), vec![2, 4, 8]);
        // A search segment's schedule spans the top rung; a final one its own.
        let r = cfg.resolve().unwrap();
        let mut t = crate::store::NewTrial {
            stage: crate::store::Stage::Search,
            step: 1,
            proposer: "mutate".into(),
            status: crate::store::TrialStatus::Pending,
            name: None,
            source: String::new(),
            hash: String::new(),
            parent: None,
            outcome: "ok".into(),
            note: None,
            params: None,
            flops: None,
            epochs: 4,
            propose_ms: 0.0,
            error: None,
            rung: 1,
            continues: Some(1),
        };
        let tc = cfg.trial_train_config(&r, &t);
        assert_eq!((tc.epochs, tc.schedule_epochs), (4, Some(8)));
        t.stage = crate::store::Stage::Final;
        assert_eq!(cfg.trial_train_config(&r, &t).schedule_epochs, None);
        assert!(SearchConfig::default().asha().unwrap().is_none());
        for (text, want) in [
            (
                "scheduler = \"hyperband\"",
                "unknown scheduler `hyperband`; expected one of: flat, asha",
            ),
            ("max_epochs = 9", "need `scheduler = \"asha\"`"),
            (
                "scheduler = \"asha\"\neta = 1",
                "`--eta 1` must be at least 2",
            ),
            (
                "scheduler = \"asha\"\nmin_epochs = 4\nmax_epochs = 2",
                "`--max-epochs 2` is below `--min-epochs 4`",
            ),
            ("epoch_budget = 0", "`epoch_budget` must be at least 1"),
        ] {
            let cfg: SearchConfig = toml::from_str(text).unwrap();
            let e = cfg.resolve().unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_proposers_are_named() {
        let e = ProposerKind::parse("gpt").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid search configuration: unknown proposer `gpt`; expected one of: auto, ollama, openai, mutate, random"
        );
        assert_eq!(
            ProposerKind::parse(" Random ").unwrap(),
            ProposerKind::Random
        );
    }

    #[test]
    fn the_embedded_seed_checks_and_budgets_are_enforced() {
        let cfg = SearchConfig::default();
        let net = seed_network(&cfg).unwrap();
        assert_eq!(net.name(), "SmallCnn");
        let budget = Budget {
            max_params: Some(1000),
            ..Budget::default()
        };
        let e = check_seed_budget(&net, &budget).unwrap_err().to_string();
        assert!(
            e.contains("has 24,458 parameters, more than `--max-params 1,000`"),
            "{e}"
        );
        let mut cfg = SearchConfig::default();
        cfg.net = Some("Nope".into());
        let e = seed_network(&cfg).unwrap_err().to_string();
        assert!(e.contains("no net `Nope`"), "{e}");
    }

    #[test]
    fn default_names_look_like_timestamps() {
        let n = default_name("evolve");
        assert_eq!(n.len(), "evolve-20250101-120000".len(), "{n}");
        assert!(n.starts_with("evolve-20"));
    }
}
