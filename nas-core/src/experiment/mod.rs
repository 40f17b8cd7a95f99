//! The paper's experiment as one resumable job: a corpus of width mutants of a seed
//! network, a share of it trained at the search fidelity, fine-tuning pairs from the
//! measured results, a LoRA fine-tune of the proposer, a probe of the base and the
//! tuned model on parents held out of the fine-tune (valid and duplicate rates), and
//! a comparison of base vs tuned vs random search at equal budgets — ending in one
//! HTML report.
//!
//! The configuration is a TOML file ([`Config`]); the experiment's directory holds
//! `experiment.json` ([`Record`]): the configuration and every finished stage with
//! its figures. Running it again skips the finished stages and continues the
//! others (each stage's tool resumes on its own); another configuration is refused.

pub mod probe;
pub mod report;

use crate::evolve::SearchConfig;
use crate::finetune::Settings;
use crate::pairs::Pair;
use nas_dsl::mutate::seed_rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The record of an experiment in its directory.
pub const RECORD_FILE: &str = "experiment.json";
/// The corpus file in an experiment's directory.
pub const CORPUS_FILE: &str = "corpus.jsonl";
/// The corpus trainings' run directory.
pub const TRAIN_DIR: &str = "corpus-train";
/// The fine-tuning pairs.
pub const PAIRS_FILE: &str = "pairs.jsonl";
/// The pairs whose worse network is a held-out parent (never trained on).
pub const HELD_OUT_FILE: &str = "held-out.json";
/// The fine-tune's directory.
pub const FINETUNE_DIR: &str = "finetune";
/// The probe's results.
pub const PROBE_FILE: &str = "probe.json";
/// The comparison's directory.
pub const COMPARE_DIR: &str = "compare";

/// The recorded stages, in order (the report is written anew on every run).
pub const STAGES: [&str; 6] = ["corpus", "train", "pairs", "finetune", "probe", "compare"];

/// Why an experiment cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The directory holds an experiment with another configuration.
    #[error(
        "`{0}` holds an experiment with another configuration ({1}); use a new --out, or the configuration it was started with"
    )]
    Mismatch(PathBuf, String),
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// The corpus stage: how many mutants, how many of them are trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusStage {
    /// Distinct, checked width mutants of the seed network written to the corpus.
    pub size: usize,
    /// Of them, how many are trained at the search fidelity (the first N).
    pub train: usize,
    /// Seeds the mutator.
    pub seed: u64,
}

impl Default for CorpusStage {
    fn default() -> Self {
        CorpusStage {
            size: 60,
            train: 48,
            seed: 0,
        }
    }
}

/// The pairs stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PairsStage {
    /// The prompt style of the pairs, the probe and the LLM arms.
    pub style: String,
    /// Share of the worse networks held out of fine-tuning: the probe's parents.
    pub held_out: f64,
    /// Seeds the pairing of networks without a better neighbour and the split.
    pub seed: u64,
}

impl Default for PairsStage {
    fn default() -> Self {
        PairsStage {
            style: "structured".into(),
            held_out: 0.2,
            seed: 0,
        }
    }
}

/// The probe stage: proposals of the base and the tuned model for each held-out
/// parent (first answers, no repair round).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeStage {
    /// Proposals per held-out parent and model (each with its own sampling seed).
    pub proposals: usize,
}

impl Default for ProbeStage {
    fn default() -> Self {
        ProbeStage { proposals: 4 }
    }
}

/// The comparison stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareStage {
    /// Runs per arm (search seeds `search.seed + k`, training seeds
    /// `search.train.seed + k`, the same for every arm at k).
    pub seeds: u64,
    /// The non-LLM arms beside `base` and `tuned` (`random`, `mutate`).
    pub baselines: Vec<String>,
}

impl Default for CompareStage {
    fn default() -> Self {
        CompareStage {
            seeds: 10,
            baselines: vec!["random".into()],
        }
    }
}

/// An experiment's configuration (`nas-core experiment --config FILE.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The experiment's directory (`--out` overrides it).
    pub out: PathBuf,
    /// The base model: a GGUF file or a Hugging Face model directory (default: the
    /// Gemma 3 270M GGUF `scripts/local-llm.sh` installs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    /// CPU threads of the fine-tune (0: all).
    pub finetune_threads: usize,
    /// The search: seed network, task, fidelity (`epochs`), widths, jobs, the
    /// LLM's sampling; `trials` is each comparison run's budget of proposals.
    pub search: SearchConfig,
    /// The corpus.
    pub corpus: CorpusStage,
    /// The pairs.
    pub pairs: PairsStage,
    /// The fine-tune (as `nas-core finetune`'s flags).
    pub finetune: Settings,
    /// The probe.
    pub probe: ProbeStage,
    /// The comparison.
    pub compare: CompareStage,
}

impl Default for Config {
    fn default() -> Self {
        let search = SearchConfig {
            trials: 5,
            time_budget: None,
            ..SearchConfig::default()
        };
        Config {
            out: PathBuf::from("runs/experiment"),
            base: None,
            finetune_threads: 0,
            search,
            corpus: CorpusStage::default(),
            pairs: PairsStage::default(),
            finetune: Settings::default(),
            probe: ProbeStage::default(),
            compare: CompareStage::default(),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ExperimentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExperimentError::Io(format!("cannot read `{}`", path.display()), e))?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Reads and checks a configuration from TOML text (`origin` names it in errors).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ExperimentError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            ExperimentError::Config(format!("`{origin}`: {}", e.to_string().trim_end()))
        })?;
        // A `[search]` table fills its gaps from `evolve`'s defaults, whose time
        // budget would give a slower arm fewer proposals: none unless written.
        let table: toml::Table = toml::from_str(text).unwrap_or_default();
        let budget_given = table
            .get("search")
            .and_then(|s| s.get("time_budget"))
            .is_some();
        if !budget_given {
            cfg.search.time_budget = None;
        }
        cfg.check()
            .map_err(|m| ExperimentError::Config(format!("`{origin}`: {m}")))?;
        Ok(cfg)
    }

    /// Checks the values that no stage would check before it has spent time.
    pub fn check(&self) -> Result<(), String> {
        self.search.resolve().map_err(|e| e.to_string())?;
        if self.search.time_budget.is_some() {
            return Err(
                "`search.time_budget` must be \"none\": the arms get equal budgets of `search.trials` proposals"
                    .into(),
            );
        }
        if self.search.trials == 0 {
            return Err(
                "`search.trials` (each comparison run's proposals) must be at least 1".into(),
            );
        }
        if self.search.storage.is_some() {
            return Err("`search.storage`: an experiment keeps its runs in its directory".into());
        }
        if self.corpus.train < 2 || self.corpus.train > self.corpus.size {
            return Err(format!(
                "`corpus.train` ({}) must be at least 2 and at most `corpus.size` ({})",
                self.corpus.train, self.corpus.size
            ));
        }
        <crate::propose::Style as clap::ValueEnum>::from_str(&self.pairs.style, true).map_err(
            |_| {
                format!(
                    "`pairs.style = \"{}\"`: a style is structured, chat or completion",
                    self.pairs.style
                )
            },
        )?;
        if !(self.pairs.held_out > 0.0 && self.pairs.held_out < 1.0) {
            return Err(
                "`pairs.held_out` must be in (0, 1): the probe needs held-out parents".into(),
            );
        }
        self.finetune
            .check()
            .map_err(|m| format!("`finetune`: {m}"))?;
        if self.probe.proposals == 0 {
            return Err("`probe.proposals` must be at least 1".into());
        }
        if self.compare.seeds < 2 {
            return Err(
                "`compare.seeds` must be at least 2 (a test needs two runs per arm)".into(),
            );
        }
        for b in &self.compare.baselines {
            if !matches!(b.as_str(), "random" | "mutate") {
                return Err(format!(
                    "`compare.baselines`: `{b}` is not a baseline (random, mutate)"
                ));
            }
        }
        Ok(())
    }

    /// The prompt style.
    pub fn style(&self) -> crate::propose::Style {
        <crate::propose::Style as clap::ValueEnum>::from_str(&self.pairs.style, true)
            .unwrap_or(crate::propose::Style::Structured)
    }
}

/// One finished stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage.
    pub name: String,
    /// Wall seconds of its last run (a continued stage: of the run that finished it).
    pub seconds: f64,
    /// Its figures.
    pub summary: Value,
}

/// `experiment.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The configuration it runs.
    pub config: Config,
    /// Finished stages, in order.
    #[serde(default)]
    pub stages: Vec<StageRecord>,
}

impl Record {
    /// Opens the record in `dir` (creating it for `config`), refusing one made with
    /// another configuration.
    pub fn open(dir: &Path, config: &Config) -> Result<Record, ExperimentError> {
        let path = dir.join(RECORD_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let r: Record = serde_json::from_str(&text).map_err(|e| {
                    ExperimentError::Mismatch(
                        dir.to_path_buf(),
                        format!("unreadable {RECORD_FILE}: {e}"),
                    )
                })?;
                // Where it lives and how many threads fine-tune do not change results.
                let given = Config {
                    out: r.config.out.clone(),
                    finetune_threads: r.config.finetune_threads,
                    ..config.clone()
                };
                if r.config != given {
                    let a = serde_json::to_value(&r.config).unwrap_or_default();
                    let b = serde_json::to_value(&given).unwrap_or_default();
                    let keys: BTreeSet<&String> = a
                        .as_object()
                        .into_iter()
                        .chain(b.as_object())
                        .flat_map(|o| o.keys())
                        .collect();
                    let differs: Vec<String> = keys
                        .into_iter()
                        .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
                        .map(|k| format!("`{k}`"))
                        .collect();
                    return Err(ExperimentError::Mismatch(
                        dir.to_path_buf(),
                        format!("{} differ", differs.join(", ")),
                    ));
                }
                Ok(r)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ExperimentError::Io(format!("cannot create `{}`", dir.display()), e)
                })?;
                let r = Record {
                    config: config.clone(),
                    stages: Vec::new(),
                };
                r.save(dir)?;
                Ok(r)
            }
            Err(e) => Err(ExperimentError::Io(
                format!("cannot read `{}`", path.display()),
                e,
            )),
        }
    }

    /// Writes the record (atomically).
    pub fn save(&self, dir: &Path) -> Result<(), ExperimentError> {
        let path = dir.join(RECORD_FILE);
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        crate::report::replace_file(&path, &text)
            .map_err(|e| ExperimentError::Io(format!("cannot write `{}`", path.display()), e))
    }

    /// The figures of a finished stage.
    pub fn stage(&self, name: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Marks a stage finished (replacing an earlier record of it) and saves.
    pub fn finish(
        &mut self,
        dir: &Path,
        name: &str,
        seconds: f64,
        summary: Value,
    ) -> Result<(), ExperimentError> {
        self.stages.retain(|s| s.name != name);
        self.stages.push(StageRecord {
            name: name.into(),
            seconds,
            summary,
        });
        self.save(dir)
    }
}

/// Splits pairs into those to train on and those whose worse network is a held-out
/// parent: a `share` of the distinct worse networks (at least one), drawn with
/// `seed`. Every pair of a held-out parent is held out; a held-out parent may still
/// be the better side of a training pair (it is never shown as a prompt).
pub fn split_held_out(pairs: Vec<Pair>, share: f64, seed: u64) -> (Vec<Pair>, Vec<Pair>) {
    let mut parents: Vec<String> = pairs
        .iter()
        .map(|p| p.worse.id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    parents.shuffle(&mut seed_rng(seed));
    let n = ((parents.len() as f64 * share).round() as usize)
        .max(1)
        .min(parents.len().saturating_sub(1));
    let held: BTreeSet<String> = parents.into_iter().take(n).collect();
    pairs.into_iter().partition(|p| !held.contains(&p.worse.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs::{Choice, Evaluated};

    fn net(id: &str, acc: f64) -> Evaluated {
        Evaluated {
            id: id.into(),
            source: String::new(),
            parent: None,
            accuracy: acc,
            loss: None,
            epochs: Some(2),
            params: 1,
            flops: 1,
        }
    }

    #[test]
    fn held_out_parents_never_appear_as_a_training_prompt() {
        let pairs: Vec<Pair> = (0..10)
            .map(|i| Pair {
                worse: net(&format!("w{}", i % 5), 0.5),
                better: net(&format!("b{i}"), 0.9),
                choice: Choice::Neighbour,
            })
            .collect();
        let (train, held) = split_held_out(pairs.clone(), 0.2, 7);
        let held_parents: BTreeSet<&str> = held.iter().map(|p| p.worse.id.as_str()).collect();
        assert_eq!(held_parents.len(), 1, "a fifth of five parents");
        assert_eq!(held.len(), 2, "both pairs of that parent");
        assert_eq!(train.len(), 8);
        assert!(
            train
                .iter()
                .all(|p| !held_parents.contains(p.worse.id.as_str()))
        );
        // Deterministic for a seed; at least one held out, never all.
        assert_eq!(split_held_out(pairs.clone(), 0.2, 7).1, held);
        assert_eq!(split_held_out(pairs.clone(), 0.01, 1).1.len(), 2);
        assert_eq!(split_held_out(pairs, 0.99, 1).0.len(), 2);
    }

    #[test]
    fn configurations_are_checked_before_anything_runs() {
        let ok = Config::from_toml_str(
            "out = \"x\"\n[search]\nepochs = 1\ntrials = 3\ntime_budget = \"none\"\n[corpus]\nsize = 10\ntrain = 8\n[finetune]\nsteps = 5\nbatch = 2\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            (ok.search.epochs, ok.search.trials, ok.corpus.train),
            (1, 3, 8)
        );
        assert_eq!((ok.finetune.steps, ok.finetune.lora_rank), (5, 16));
        for (text, says) in [
            ("[corpus]\nsize = 4\ntrain = 8\n", "corpus.train"),
            ("[pairs]\nstyle = \"poem\"\n", "pairs.style"),
            ("[pairs]\nheld_out = 0.0\n", "held_out"),
            ("[finetune]\nlr = -1.0\n", "learning rate"),
            ("[finetune]\nrank = 3\n", "unknown field `rank`"),
            ("[search]\ntime_budget = \"3m\"\n", "time_budget"),
            ("[compare]\nseeds = 1\n", "compare.seeds"),
            ("[compare]\nbaselines = [\"ollama\"]\n", "not a baseline"),
            ("[search]\nepochs = \"x\"\n", "t.toml"),
            ("colour = 1\n", "unknown field `colour`"),
        ] {
            let e = Config::from_toml_str(text, "t.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_shipped_configurations_read_and_check() {
        let cpu =
            Config::from_toml_str(include_str!("../../../configs/experiment-cpu.toml"), "cpu")
                .unwrap();
        assert_eq!((cpu.search.epochs, cpu.search.time_budget), (2, None));
        assert_eq!(
            (cpu.compare.seeds, cpu.style()),
            (10, crate::propose::Style::Structured)
        );
        let p = Config::from_toml_str(
            include_str!("../../../configs/experiment-paper.toml"),
            "paper",
        )
        .unwrap();
        assert_eq!((p.search.epochs, p.corpus.train), (1, 1000));
        assert_eq!(
            (
                p.search.train.dataset.as_str(),
                p.search.train.backend.as_str()
            ),
            ("cifar100", "cuda")
        );
        assert_eq!((p.finetune.lora_rank, p.finetune.lora_alpha), (32, 32.0));
    }

    #[test]
    fn another_configuration_is_refused_in_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default();
        let mut r = Record::open(dir.path(), &cfg).unwrap();
        r.finish(
            dir.path(),
            "corpus",
            1.5,
            serde_json::json!({"records": 60}),
        )
        .unwrap();
        let again = Record::open(dir.path(), &cfg).unwrap();
        assert_eq!(again.stage("corpus").unwrap().summary["records"], 60);
        let moved = Config {
            out: PathBuf::from("elsewhere"),
            finetune_threads: 1,
            ..cfg.clone()
        };
        assert!(
            Record::open(dir.path(), &moved).is_ok(),
            "a moved experiment continues"
        );
        let mut other = cfg.clone();
        other.compare.seeds = 12;
        let e = Record::open(dir.path(), &other).unwrap_err().to_string();
        assert!(e.contains("`compare` differ"), "{e}");
    }
}
