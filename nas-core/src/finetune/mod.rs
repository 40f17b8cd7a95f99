//! LoRA fine-tuning of the proposer on `corpus pairs` output, and its way back into the
//! serving stack: PEFT trains an adapter (Python, [`SCRIPT`]), llama.cpp's converter turns
//! it into a GGUF LoRA, `llama-export-lora` merges it into the base and `llama-quantize`
//! shrinks the merged model, which an Ollama `Modelfile` and a llama-server command line
//! then serve.
//!
//! A fine-tune lives in one directory; `finetune.json` records its settings, the hash of
//! its pairs and base, and every finished stage, so a rerun skips what is done and refuses
//! a directory made with other inputs.

pub mod tools;

use crate::report::ReportError;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tools::{Server, Tools};

/// The trainer, written into each fine-tune's directory and run there.
pub const SCRIPT: &str = include_str!("../../python/finetune.py");

/// The record of a fine-tune in its directory.
pub const RECORD_FILE: &str = "finetune.json";

/// Why a fine-tune could not run.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// The Python environment is missing.
    #[error(
        "the fine-tuning environment is not installed ({0}): run `scripts/finetune-env.sh install` (PyTorch, transformers and PEFT from PyPI into a cache outside the clone; minutes and about 5 GB on a first install), or pass --python"
    )]
    NoEnvironment(String),
    /// llama.cpp's tools are missing.
    #[error(
        "llama.cpp's tools are missing ({0}): run `scripts/local-llm.sh build --tools` (builds llama-server, llama-export-lora and llama-quantize and fetches the converter, into a cache outside the clone), or pass --llama-bin / --converter"
    )]
    NoTools(String),
    /// The base model does not exist.
    #[error("the base model `{0}` does not exist{1}")]
    NoBase(PathBuf, String),
    /// The pair file is unusable.
    #[error("{path}:{line}: {reason}")]
    BadPairs {
        /// The file.
        path: PathBuf,
        /// The 1-based line (0: the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds another fine-tune.
    #[error("`{0}` holds a fine-tune with other inputs ({1}); use a new --out")]
    Mismatch(PathBuf, String),
    /// A stage failed.
    #[error("{stage} failed: {reason}")]
    Stage {
        /// The stage.
        stage: &'static str,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

impl FinetuneError {
    pub(crate) fn io(what: impl Into<String>, e: std::io::Error) -> FinetuneError {
        FinetuneError::Io(what.into(), e)
    }
}

/// What a fine-tune is asked to do (recorded; a rerun must ask the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// LoRA rank.
    pub lora_rank: usize,
    /// LoRA alpha (scale alpha/rank).
    pub lora_alpha: f64,
    /// LoRA dropout.
    pub lora_dropout: f64,
    /// The projections that get adapters.
    pub targets: Vec<String>,
    /// Peak learning rate (AdamW, warm-up then cosine decay).
    pub lr: f64,
    /// Longest pair in tokens (longer ones are left out).
    pub max_seq_len: usize,
    /// Share of pairs held out to measure the loss on unseen pairs.
    pub holdout: f64,
    /// Seeds the adapter's initialisation, the held-out split and the order.
    pub seed: u64,
    /// The quantization of the merged model (`llama-quantize`'s type, e.g. Q8_0).
    pub quant: String,
    /// The chat template the serving llama-server uses (`--chat-template`).
    pub chat_template: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            steps: 200,
            batch: 4,
            lora_rank: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            targets: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec(),
            lr: 2e-4,
            max_seq_len: 1024,
            holdout: 0.1,
            seed: 0,
            quant: "Q8_0".into(),
            chat_template: "gemma".into(),
        }
    }
}

impl Settings {
    /// Checks the values (the trainer gets only settings that pass).
    pub fn check(&self) -> Result<(), String> {
        let fail = |m: &str| Err(m.to_string());
        if self.steps == 0 {
            return fail("the steps must be at least 1");
        }
        if self.batch == 0 {
            return fail("the batch must be at least 1");
        }
        if self.lora_rank == 0 {
            return fail("the LoRA rank must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail("the learning rate must be a positive number");
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return fail("the LoRA alpha must be a positive number");
        }
        if !(0.0..1.0).contains(&self.holdout) {
            return fail("the held-out share must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return fail("the LoRA dropout must be in [0, 1)");
        }
        if self.max_seq_len < 8 {
            return fail("the longest pair must be at least 8 tokens");
        }
        if self.targets.is_empty() {
            return fail("name at least one projection to adapt");
        }
        Ok(())
    }
}

/// What the pair file holds, checked before any tool starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairFile {
    /// Pairs in it.
    pub pairs: usize,
    /// Raw-text pairs (`prompt`/`completion`: the structured and completion styles).
    pub raw: usize,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// Reads and checks a pair file: every non-empty line a JSON object with either
/// `prompt` and `completion` strings or `messages` (role/content objects) ending in
/// an assistant answer; at least one pair.
pub fn check_pairs(path: &Path) -> Result<PairFile, FinetuneError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| {
        FinetuneError::io(format!("cannot read the pair file `{}`", path.display()), e)
    })?;
    let bad = |line: usize, reason: String| FinetuneError::BadPairs {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| bad(0, format!("not UTF-8 text: {e}")))?;
    let (mut pairs, mut raw) = (0, 0);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not JSON: {e}")))?;
        if v.get("prompt").is_some_and(Value::is_string)
            && v.get("completion").is_some_and(Value::is_string)
        {
            raw += 1;
        } else {
            let ok = v
                .get("messages")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.len() >= 2
                        && m.iter()
                            .all(|x| x.get("content").is_some_and(Value::is_string))
                        && m.last().and_then(|x| x.get("role")).and_then(Value::as_str)
                            == Some("assistant")
                });
            if !ok {
                return Err(bad(
                    i + 1,
                    "a pair needs `messages` (objects with `role` and `content`) ending in an assistant answer, or `prompt` and `completion` strings (as `nas-core corpus pairs` writes)".into(),
                ));
            }
        }
        pairs += 1;
    }
    if pairs == 0 {
        return Err(bad(0, "no pairs in the file".into()));
    }
    Ok(PairFile {
        pairs,
        raw,
        sha256: format!("{:x}", Sha256::digest(&bytes)),
    })
}

/// The record in a fine-tune's directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The settings.
    pub settings: Settings,
    /// The pair file.
    pub pairs: PairFile,
    /// The base model (GGUF) and its size in bytes.
    pub base: PathBuf,
    /// Its size (a cheap identity: the file is large).
    pub base_bytes: u64,
    /// Finished stages, in order, with what each reported.
    #[serde(default)]
    pub stages: Vec<(String, Value)>,
}

impl Record {
    fn path(out: &Path) -> PathBuf {
        out.join(RECORD_FILE)
    }

    fn load(out: &Path) -> Result<Option<Record>, FinetuneError> {
        let path = Record::path(out);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                FinetuneError::Mismatch(out.to_path_buf(), format!("unreadable {RECORD_FILE}: {e}"))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FinetuneError::io(
                format!("cannot read `{}`", path.display()),
                e,
            )),
        }
    }

    fn save(&self, out: &Path) -> Result<(), FinetuneError> {
        let path = Record::path(out);
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        crate::report::replace_file(&path, &text)
            .map_err(|e| FinetuneError::io(format!("cannot write `{}`", path.display()), e))
    }

    /// What a stage reported, if it finished.
    pub fn stage(&self, name: &str) -> Option<&Value> {
        self.stages.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// What the trainer reports while it runs (its JSON lines).
#[derive(Clone, Debug)]
pub enum Event {
    /// A stage begins (`train`, `convert`, `merge`, `quantize`), or was already done.
    Stage {
        /// The stage.
        name: &'static str,
        /// Whether a previous run finished it.
        done_before: bool,
    },
    /// A line of the trainer (`start`, `loaded`, `tokenized`, `eval`, `step`, `done`).
    Trainer(Value),
}

/// The files a finished fine-tune leaves in its directory.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The GGUF the adapter applies to (the base, or its conversion).
    pub base_gguf: PathBuf,
    /// The PEFT adapter (a Hugging Face directory).
    pub adapter: PathBuf,
    /// The adapter as a GGUF LoRA (`llama-server -m BASE --lora …`).
    pub adapter_gguf: PathBuf,
    /// The base with the adapter merged in, quantized.
    pub merged_gguf: PathBuf,
    /// The Ollama Modelfile for the merged model.
    pub modelfile: PathBuf,
    /// The loss per step (SVG).
    pub loss_plot: PathBuf,
    /// Every trainer line and the stages' reports (JSON).
    pub log: PathBuf,
    /// The commands that serve the result.
    pub serve: Vec<String>,
    /// The record.
    pub record: Record,
}

/// The GGUF a Hugging Face base directory is converted to, in a fine-tune's directory.
pub const CONVERTED_BASE: &str = "base-f16.gguf";

/// Whether `base` is a Hugging Face model directory (rather than a GGUF file).
pub fn is_hf_dir(base: &Path) -> bool {
    base.is_dir()
}

/// The GGUF the adapter applies to and the servers load: `base` itself, or for a
/// Hugging Face directory its conversion in the fine-tune's directory `out`.
pub fn served_base(base: &Path, out: &Path) -> PathBuf {
    if is_hf_dir(base) {
        out.join(CONVERTED_BASE)
    } else {
        base.to_path_buf()
    }
}

/// Checks that `base` is an existing GGUF file or a Hugging Face model directory
/// (`config.json` and `*.safetensors` weights), saying how to install the default
/// when it is missing; returns its size in bytes (for a directory: of its weights).
pub fn check_base(base: &Path) -> Result<u64, FinetuneError> {
    let Ok(meta) = std::fs::metadata(base) else {
        let hint = if *base == tools::default_base() {
            ": run `scripts/local-llm.sh build` to install the default (Gemma 3 270M)".into()
        } else {
            String::new()
        };
        return Err(FinetuneError::NoBase(base.to_path_buf(), hint));
    };
    if meta.is_dir() {
        let not_hf = |why: &str| {
            FinetuneError::NoBase(
                base.to_path_buf(),
                format!(" as a Hugging Face model directory ({why})"),
            )
        };
        if !base.join("config.json").is_file() {
            return Err(not_hf("no config.json"));
        }
        let entries = std::fs::read_dir(base)
            .map_err(|e| FinetuneError::io(format!("cannot read `{}`", base.display()), e))?;
        let weights: u64 = entries
            .flatten()
            .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("safetensors"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if weights == 0 {
            return Err(not_hf("no *.safetensors weights"));
        }
        return Ok(weights);
    }
    if base.extension().and_then(|e| e.to_str()) != Some("gguf") {
        return Err(FinetuneError::NoBase(
            base.to_path_buf(),
            " as a GGUF file or a Hugging Face model directory (--base takes either)".into(),
        ));
    }
    Ok(meta.len())
}

/// Runs (or continues) a fine-tune of `base` on `pairs` into `out`.
pub fn run(
    settings: &Settings,
    pairs: &Path,
    base: &Path,
    out: &Path,
    tools: &Tools,
    threads: usize,
    mut on_event: impl FnMut(&Event),
) -> Result<Outcome, FinetuneError> {
    let pair_file = check_pairs(pairs)?;
    let base_bytes = check_base(base)?;
    std::fs::create_dir_all(out)
        .map_err(|e| FinetuneError::io(format!("cannot create `{}`", out.display()), e))?;
    let out = &std::fs::canonicalize(out)
        .map_err(|e| FinetuneError::io(format!("cannot resolve `{}`", out.display()), e))?;
    let base = std::fs::canonicalize(base)
        .map_err(|e| FinetuneError::io(format!("cannot resolve `{}`", base.display()), e))?;
    let mut record = match Record::load(out)? {
        Some(r) => {
            let what = if r.settings != *settings {
                Some("its settings differ")
            } else if r.pairs.sha256 != pair_file.sha256 {
                Some("its pair file differs")
            } else if r.base != base || r.base_bytes != base_bytes {
                Some("its base model differs")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(FinetuneError::Mismatch(out.to_path_buf(), what.into()));
            }
            r
        }
        None => Record {
            settings: settings.clone(),
            pairs: pair_file,
            base: base.clone(),
            base_bytes,
            stages: Vec::new(),
        },
    };
    record.save(out)?;

    // 0. A Hugging Face base becomes a GGUF once: the tokenizer the trainer uses,
    // the base the adapter is merged into and the one the servers load.
    let served = served_base(&base, out);
    if is_hf_dir(&base) {
        stage(&mut record, out, "base", &mut on_event, || {
            let converter = tools.converter.with_file_name("convert_hf_to_gguf.py");
            run_tool(
                "base",
                Command::new(&tools.python)
                    .arg(&converter)
                    .arg(&base)
                    .args(["--outtype", "f16", "--outfile"])
                    .arg(&served),
                &out.join("convert-base.log"),
            )?;
            Ok(serde_json::json!({"bytes": size(&served)}))
        })?;
    }

    let adapter = out.join("adapter");
    let adapter_gguf = out.join("adapter.gguf");
    let merged = out.join(format!("merged-{}.gguf", settings.quant.to_lowercase()));
    let log = out.join("log.json");

    // 1. Train.
    let done = record.stage("train").is_some();
    on_event(&Event::Stage {
        name: "train",
        done_before: done,
    });
    if !done {
        let report = train(
            settings,
            pairs,
            &base,
            &served,
            out,
            tools,
            threads,
            &mut on_event,
        )?;
        record.stages.push(("train".into(), report));
        record.save(out)?;
    }
    // 2. The adapter as GGUF.
    stage(&mut record, out, "convert", &mut on_event, || {
        let cfg = out.join("base-config");
        run_tool(
            "convert",
            Command::new(&tools.python)
                .arg(&tools.converter)
                .arg("--base")
                .arg(&cfg)
                .args(["--outtype", "f16", "--outfile"])
                .arg(&adapter_gguf)
                .arg(&adapter),
            &out.join("convert.log"),
        )?;
        Ok(serde_json::json!({"bytes": size(&adapter_gguf)}))
    })?;
    // 3. Merge into the base, 4. quantize.
    let merged_f16 = out.join("merged-f16.gguf");
    stage(&mut record, out, "merge", &mut on_event, || {
        run_tool(
            "merge",
            Command::new(tools.bin("llama-export-lora"))
                .arg("-m")
                .arg(&served)
                .arg("--lora")
                .arg(&adapter_gguf)
                .arg("-o")
                .arg(&merged_f16),
            &out.join("merge.log"),
        )?;
        Ok(serde_json::json!({"bytes": size(&merged_f16)}))
    })?;
    stage(&mut record, out, "quantize", &mut on_event, || {
        run_tool(
            "quantize",
            Command::new(tools.bin("llama-quantize"))
                .arg(&merged_f16)
                .arg(&merged)
                .arg(&settings.quant),
            &out.join("quantize.log"),
        )?;
        // The f16 merge is only a step on the way; keep the disk bounded.
        let _ = std::fs::remove_file(&merged_f16);
        Ok(serde_json::json!({"bytes": size(&merged)}))
    })?;

    let modelfile = out.join("Modelfile");
    write_file(
        &modelfile,
        &modelfile_text(&merged, &settings.chat_template),
    )?;
    let serve = serve_commands(
        tools,
        &served,
        &adapter_gguf,
        &merged,
        &modelfile,
        &settings.chat_template,
    );
    write_file(&out.join("SERVE.txt"), &(serve.join("\n") + "\n"))?;
    let loss_plot = out.join("loss.svg");
    let trainer_lines = read_lines(&out.join("train.jsonl"));
    let svg = plot_loss(&trainer_lines).map_err(|e| FinetuneError::Stage {
        stage: "loss plot",
        reason: e.to_string(),
    })?;
    write_file(&loss_plot, &svg)?;
    let log_value = serde_json::json!({"record": record, "trainer": trainer_lines});
    write_file(
        &log,
        &serde_json::to_string_pretty(&log_value).unwrap_or_default(),
    )?;
    Ok(Outcome {
        base_gguf: served,
        adapter,
        adapter_gguf,
        merged_gguf: merged,
        modelfile,
        loss_plot,
        log,
        serve,
        record,
    })
}

fn stage(
    record: &mut Record,
    out: &Path,
    name: &'static str,
    on_event: &mut impl FnMut(&Event),
    body: impl FnOnce() -> Result<Value, FinetuneError>,
) -> Result<(), FinetuneError> {
    let done = record.stage(name).is_some();
    on_event(&Event::Stage {
        name,
        done_before: done,
    });
    if !done {
        let report = body()?;
        record.stages.push((name.into(), report));
        record.save(out)?;
    }
    Ok(())
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn write_file(path: &Path, text: &str) -> Result<(), FinetuneError> {
    std::fs::write(path, text)
        .map_err(|e| FinetuneError::io(format!("cannot write `{}`", path.display()), e))
}

/// The JSON lines of a file (unreadable lines and a missing file give none).
pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs a tool with its output in `log`; a failure carries the log's last lines.
fn run_tool(stage: &'static str, cmd: &mut Command, log: &Path) -> Result<(), FinetuneError> {
    let file = std::fs::File::create(log)
        .map_err(|e| FinetuneError::io(format!("cannot create `{}`", log.display()), e))?;
    let err = file
        .try_clone()
        .map_err(|e| FinetuneError::io("cannot duplicate a log handle", e))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| FinetuneError::io(format!("cannot start the {stage} tool"), e))?;
    if status.success() {
        return Ok(());
    }
    Err(FinetuneError::Stage {
        stage,
        reason: format!("{status}; {}", tail(log, 12)),
    })
}

/// The last `n` lines of a log, for an error message.
pub(crate) fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    format!(
        "last lines of {}:\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}

/// The training stage: a llama-server on the base serves the template and tokenizer,
/// the Python trainer streams its JSON lines (kept in `train.jsonl`).
#[allow(clippy::too_many_arguments)]
fn train(
    settings: &Settings,
    pairs: &Path,
    base: &Path,
    served: &Path,
    out: &Path,
    tools: &Tools,
    threads: usize,
    on_event: &mut impl FnMut(&Event),
) -> Result<Value, FinetuneError> {
    let script = out.join("finetune.py");
    write_file(&script, SCRIPT)?;
    let server = Server::start(
        tools,
        served,
        None,
        &settings.chat_template,
        &out.join("tokenizer-server.log"),
        Duration::from_secs(180),
    )?;
    let stderr_log = out.join("train.stderr.log");
    let stderr = std::fs::File::create(&stderr_log)
        .map_err(|e| FinetuneError::io(format!("cannot create `{}`", stderr_log.display()), e))?;
    let mut cmd = Command::new(&tools.python);
    cmd.arg(&script)
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .arg(if is_hf_dir(base) {
            "--base-hf"
        } else {
            "--base-gguf"
        })
        .arg(base)
        .args(["--tokenizer-url", &server.url()])
        .args(["--steps", &settings.steps.to_string()])
        .args(["--batch", &settings.batch.to_string()])
        .args(["--lora-rank", &settings.lora_rank.to_string()])
        .args(["--lora-alpha", &settings.lora_alpha.to_string()])
        .args(["--lora-dropout", &settings.lora_dropout.to_string()])
        .args(["--targets", &settings.targets.join(",")])
        .args(["--lr", &settings.lr.to_string()])
        .args(["--max-seq-len", &settings.max_seq_len.to_string()])
        .args(["--holdout", &settings.holdout.to_string()])
        .args(["--seed", &settings.seed.to_string()])
        .args(["--threads", &threads.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd
        .spawn()
        .map_err(|e| FinetuneError::io(format!("cannot start `{}`", tools.python.display()), e))?;
    let lines_path = out.join("train.jsonl");
    let mut kept = String::new();
    let mut done: Option<Value> = None;
    let mut error: Option<String> = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            kept.push_str(&line);
            kept.push('\n');
            match v.get("event").and_then(Value::as_str) {
                Some("done") => done = Some(v.clone()),
                Some("error") => {
                    error = v.get("message").and_then(Value::as_str).map(str::to_string);
                }
                _ => {}
            }
            on_event(&Event::Trainer(v));
        }
    }
    let status = child
        .wait()
        .map_err(|e| FinetuneError::io("cannot wait for the trainer", e))?;
    drop(server);
    write_file(&lines_path, &kept)?;
    match (status.success(), done, error) {
        (true, Some(done), _) => Ok(done),
        (_, _, Some(message)) => Err(FinetuneError::Stage {
            stage: "train",
            reason: message,
        }),
        _ => Err(FinetuneError::Stage {
            stage: "train",
            reason: format!(
                "the trainer ended ({status}) without finishing; {}",
                tail(&stderr_log, 15)
            ),
        }),
    }
}

/// An Ollama Modelfile for the merged model. For Gemma it spells out the turn format
/// llama-server's `--chat-template gemma` renders (a system message joins the first
/// user turn), so the model sees under Ollama what it was trained on.
pub fn modelfile_text(merged: &Path, chat_template: &str) -> String {
    let name = merged
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = format!(
        "# The fine-tuned proposer: `ollama create nas-tuned -f Modelfile` in this directory,\n\
         # then `nas-core evolve --proposer ollama --model nas-tuned`.\nFROM ./{name}\n"
    );
    if chat_template == "gemma" {
        text.push_str(
            "TEMPLATE \"\"\"{{- $system := \"\" }}\n\
{{- range .Messages }}\n\
{{- if eq .Role \"system\" }}{{ $system = .Content }}\n\
{{- else if eq .Role \"assistant\" }}<start_of_turn>model\n\
{{ .Content }}<end_of_turn>\n\
{{ else }}<start_of_turn>{{ .Role }}\n\
{{ if $system }}{{ $system }}\n\n\
{{ $system = \"\" }}{{ end }}{{ .Content }}<end_of_turn>\n\
{{ end }}\n\
{{- end }}<start_of_turn>model\n\
\"\"\"\n\
PARAMETER stop \"<end_of_turn>\"\n",
        );
    } else {
        text.push_str(&format!(
            "# (chat template `{chat_template}`: Ollama uses the template stored in the GGUF)\n"
        ));
    }
    text
}

fn serve_commands(
    tools: &Tools,
    base: &Path,
    adapter: &Path,
    merged: &Path,
    modelfile: &Path,
    chat_template: &str,
) -> Vec<String> {
    let server = tools.bin("llama-server");
    let flags =
        format!("--host 127.0.0.1 --port 8080 -c 4096 --no-jinja --chat-template {chat_template}");
    vec![
        "# base + adapter (OpenAI protocol on :8080; `--proposer openai --url http://127.0.0.1:8080`):".into(),
        format!(
            "{} -m {} --lora {} {flags}",
            server.display(),
            base.display(),
            adapter.display()
        ),
        "# the merged, quantized model:".into(),
        format!("{} -m {} {flags}", server.display(), merged.display()),
        "# or through the project's script (Ollama protocol on :11434 too):".into(),
        format!("scripts/local-llm.sh start --model {}", merged.display()),
        "# Ollama:".into(),
        format!(
            "cd {} && ollama create nas-tuned -f Modelfile",
            modelfile.parent().unwrap_or(Path::new(".")).display()
        ),
    ]
}

/// The training loss per step (and the held-out loss at the start and the end).
pub fn plot_loss(lines: &[Value]) -> Result<String, ReportError> {
    let steps: Vec<(f64, f64)> = lines
        .iter()
        .filter(|v| v["event"] == "step")
        .filter_map(|v| Some((v["step"].as_f64()?, v["loss"].as_f64()?)))
        .filter(|p| p.1.is_finite())
        .collect();
    let held: Vec<(f64, f64)> = lines
        .iter()
        .filter(|v| v["event"] == "eval")
        .filter_map(|v| Some((v["step"].as_f64()?, v["held_out_loss"].as_f64()?)))
        .collect();
    let last = steps.iter().map(|p| p.0).fold(1.0, f64::max);
    let hi = steps.iter().chain(&held).map(|p| p.1).fold(0.1, f64::max) * 1.08;
    let mut svg = String::new();
    {
        let err = crate::report::plot_err("fine-tuning loss");
        let root = SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Fine-tuning loss (answer tokens)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..last, 0.0..hi)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("cross-entropy per token")
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(LineSeries::new(steps, BLUE.stroke_width(1)))
            .map_err(&err)?
            .label("training batch")
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLUE));
        chart
            .draw_series(
                held.iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, RED.filled())),
            )
            .map_err(&err)?
            .label("held-out pairs")
            .legend(|(x, y)| Circle::new((x, y), 4, RED.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn pair_files_are_checked_line_by_line() {
        let ok = file(
            "{\"prompt\": \"p\", \"completion\": \"{}\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n",
        );
        let p = check_pairs(ok.path()).unwrap();
        assert_eq!((p.pairs, p.raw, p.sha256.len()), (2, 1, 64));

        let not_json = file("{\"prompt\": \"p\", \"completion\": \"c\"}\nnot json\n");
        let e = check_pairs(not_json.path()).unwrap_err().to_string();
        assert!(e.contains(":2: not JSON"), "{e}");

        let no_answer = file(
            "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"user\", \"content\": \"v\"}]}\n",
        );
        let e = check_pairs(no_answer.path()).unwrap_err().to_string();
        assert!(e.contains(":1: a pair needs `messages`"), "{e}");

        let empty = file("\n\n");
        let e = check_pairs(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no pairs"), "{e}");

        let e = check_pairs(Path::new("/nonexistent/pairs.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the pair file"), "{e}");
    }

    #[test]
    fn the_gemma_modelfile_renders_llama_servers_turns() {
        let text = modelfile_text(Path::new("/x/merged-q8_0.gguf"), "gemma");
        assert!(text.contains("FROM ./merged-q8_0.gguf\n"), "{text}");
        assert!(text.contains("PARAMETER stop \"<end_of_turn>\""), "{text}");
        assert!(text.contains("<start_of_turn>model\n\"\"\""), "{text}");
        let other = modelfile_text(Path::new("m.gguf"), "chatml");
        assert!(!other.contains("TEMPLATE"), "{other}");
    }

    #[test]
    fn the_loss_plot_draws_steps_and_held_out_points() {
        let lines: Vec<Value> = (1..=5)
            .map(|s| serde_json::json!({"event": "step", "step": s, "loss": 3.0 / s as f64}))
            .chain([
                serde_json::json!({"event": "eval", "step": 0, "held_out_loss": 3.2}),
                serde_json::json!({"event": "eval", "step": 5, "held_out_loss": 1.1}),
            ])
            .collect();
        let svg = plot_loss(&lines).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(
            svg.matches("<circle").count(),
            2 + 1,
            "two points and a legend mark"
        );
    }
}
