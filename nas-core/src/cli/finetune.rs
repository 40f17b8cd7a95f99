//! `nas-core finetune`: LoRA fine-tuning of the proposer on `corpus pairs` output, with
//! progress (step, loss, ETA), then the adapter as GGUF, a merged and quantized model and
//! an Ollama Modelfile.

use crate::finetune::tools::{self, Tools};
use crate::finetune::{self, Event, Settings};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Fine-tune the proposer's model on pairs (LoRA), and make it servable.
///
/// Trains a LoRA adapter with PEFT (loss on the answer only; the prompt is exactly
/// what the proposer sends, tokenized by llama-server itself so training and serving
/// see the same ids), on the GPU when PyTorch sees one, else on the CPU. Writes to
/// `--out`: `adapter/` (PEFT), `adapter.gguf` (llama.cpp LoRA), `merged-q8_0.gguf`
/// (base + adapter, quantized), `Modelfile` (Ollama), `SERVE.txt` (the commands that
/// serve it), `loss.svg`, `log.json` and `finetune.json` (settings, stages). A rerun
/// with the same inputs continues after the last finished stage.
///
/// Needs `scripts/finetune-env.sh install` (Python environment) and
/// `scripts/local-llm.sh build --tools` (llama.cpp's tools and the default base model).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pairs (`nas-core corpus pairs` output: JSON lines with `messages`, and
    /// `prompt`/`completion` for the raw-text styles).
    #[arg(long, value_name = "pairs.jsonl")]
    pub pairs: PathBuf,

    /// The fine-tune's directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The base model: a GGUF file, or a Hugging Face model directory
    /// (`config.json`, `*.safetensors` and its tokenizer files, as downloaded; e.g. a
    /// 7B coder model on a GPU), which llama.cpp's `convert_hf_to_gguf.py` turns into `base-f16.gguf`
    /// once (the tokenizer, the merge base and the served base) while training
    /// loads its own weights [default: the Gemma 3 270M GGUF that
    /// scripts/local-llm.sh installs].
    #[arg(long, value_name = "FILE.gguf|DIR")]
    pub base: Option<PathBuf>,

    /// Optimiser steps.
    #[arg(long, default_value_t = Settings::default().steps)]
    pub steps: usize,

    /// Pairs per step.
    #[arg(long, default_value_t = Settings::default().batch)]
    pub batch: usize,

    /// LoRA rank.
    #[arg(long, default_value_t = Settings::default().lora_rank)]
    pub lora_rank: usize,

    /// LoRA alpha (the update is scaled by alpha/rank) [default: twice the rank].
    #[arg(long)]
    pub lora_alpha: Option<f64>,

    /// LoRA dropout.
    #[arg(long, default_value_t = Settings::default().lora_dropout)]
    pub lora_dropout: f64,

    /// The projections that get adapters (comma-separated module names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    pub targets: Vec<String>,

    /// Peak learning rate (AdamW; linear warm-up over a tenth of the steps, then
    /// cosine decay).
    #[arg(long, default_value_t = Settings::default().lr)]
    pub lr: f64,

    /// Longest pair in tokens; longer pairs are left out (and counted).
    #[arg(long, default_value_t = Settings::default().max_seq_len)]
    pub max_seq_len: usize,

    /// Share of the pairs held out to measure the loss on pairs not trained on.
    #[arg(long, default_value_t = Settings::default().holdout)]
    pub holdout: f64,

    /// Seeds the adapter's initialisation, the held-out split and the order.
    #[arg(long, default_value_t = Settings::default().seed)]
    pub seed: u64,

    /// The merged model's quantization (a `llama-quantize` type).
    #[arg(long, default_value_t = Settings::default().quant)]
    pub quant: String,

    /// The chat template of the serving llama-server (`--chat-template`).
    #[arg(long, default_value_t = Settings::default().chat_template)]
    pub chat_template: String,

    /// PyTorch threads (0: PyTorch's default, one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// Where the tools are.
    #[command(flatten)]
    pub tools: ToolArgs,

    /// Print the outcome as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn settings(&self) -> anyhow::Result<Settings> {
        let settings = Settings {
            steps: self.steps,
            batch: self.batch,
            lora_rank: self.lora_rank,
            lora_alpha: self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64),
            lora_dropout: self.lora_dropout,
            targets: self.targets.clone(),
            lr: self.lr,
            max_seq_len: self.max_seq_len,
            holdout: self.holdout,
            seed: self.seed,
            quant: self.quant.clone(),
            chat_template: self.chat_template.clone(),
        };
        settings.check().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }
}

/// Where the fine-tuning tools are, when not where the install scripts put them.
#[derive(Debug, clap::Args)]
pub struct ToolArgs {
    /// The fine-tuning environment's python [default: scripts/finetune-env.sh's].
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,

    /// The folder with llama-server, llama-export-lora and llama-quantize [default:
    /// scripts/local-llm.sh's build].
    #[arg(long, value_name = "DIR")]
    pub llama_bin: Option<PathBuf>,

    /// llama.cpp's convert_lora_to_gguf.py (convert_hf_to_gguf.py beside it) [default:
    /// scripts/local-llm.sh's sources].
    #[arg(long, value_name = "FILE.py")]
    pub converter: Option<PathBuf>,
}

impl ToolArgs {
    /// Finds the tools, or says how to install what is missing.
    pub fn locate(&self) -> Result<Tools, finetune::FinetuneError> {
        Tools::locate(
            self.python.clone(),
            self.llama_bin.clone(),
            self.converter.clone(),
        )
    }
}

/// What the terminal shows while the trainer runs.
pub(super) struct View {
    bar: ProgressBar,
    live: bool,
    last_note: usize,
}

impl View {
    pub(super) fn new() -> View {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let live = super::corpus::show_progress(std::io::stderr().is_terminal(), ci);
        let bar = if live {
            ProgressBar::new(0)
        } else {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        View {
            bar,
            live,
            last_note: 0,
        }
    }

    fn say(&self, line: String) {
        if self.live {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    pub(super) fn event(&mut self, e: &Event) {
        match e {
            Event::Stage { name, done_before } => {
                if *done_before {
                    self.say(format!("{name}: already done"));
                } else {
                    self.say(format!("{name} …"));
                }
            }
            Event::Trainer(v) => self.trainer(v),
        }
    }

    fn trainer(&mut self, v: &Value) {
        let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        match v.get("event").and_then(Value::as_str).unwrap_or("") {
            "start" => self.say(format!(
                "  {} pairs, device {}, {} threads",
                v["pairs"],
                v["device"].as_str().unwrap_or("?"),
                v["threads"]
            )),
            "loaded" => self.say(format!(
                "  base model loaded in {:.0} s ({} parameters)",
                f("seconds"),
                v["parameters"]
            )),
            "tokenized" => self.say(format!(
                "  {} pairs to train on, {} held out, {} longer than --max-seq-len left out; median {} tokens, longest {}",
                v["train"], v["held_out"], v["dropped_too_long"], v["median_tokens"], v["max_tokens"]
            )),
            "eval" => self.say(format!(
                "  step {}: loss {:.4} on training pairs, {} on held-out pairs",
                v["step"],
                f("train_loss"),
                v.get("held_out_loss")
                    .and_then(Value::as_f64)
                    .map_or("none".into(), |x| format!("{x:.4}"))
            )),
            "step" => {
                let (step, steps) = (f("step") as usize, f("steps") as u64);
                if self.bar.length() != Some(steps) {
                    self.bar.set_length(steps);
                    self.bar.reset_eta();
                    self.bar.set_prefix("train");
                }
                self.bar.set_position(step as u64);
                self.bar.set_message(format!("loss {:.4}", f("loss")));
                // Off a terminal: a line per tenth of the run, with the ETA.
                let tenth = (steps as usize / 10).max(1);
                if !self.live && (step == 1 || step >= self.last_note + tenth || step == steps as usize) {
                    self.last_note = step;
                    let per = f("seconds") / step as f64;
                    let eta = per * (steps as f64 - step as f64);
                    eprintln!(
                        "  step {step}/{steps}  loss {:.4}  {per:.2} s/step  eta {eta:.0} s",
                        f("loss")
                    );
                }
            }
            "done" => {
                self.bar.finish_and_clear();
                self.say(format!(
                    "  trained in {:.0} s, peak memory {} MiB",
                    f("seconds"),
                    v["peak_rss_mb"]
                ));
            }
            "error" => self.say(format!(
                "  trainer: {}",
                v["message"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
}

/// Runs `finetune`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    // Check the input before looking for (or starting) any tool.
    finetune::check_pairs(&args.pairs)?;
    let base = args.base.clone().unwrap_or_else(tools::default_base);
    finetune::check_base(&base)?;
    let tools = args.tools.locate()?;
    let mut view = View::new();
    let outcome = finetune::run(
        &settings,
        &args.pairs,
        &base,
        &args.out,
        &tools,
        args.threads,
        |e| view.event(e),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        let train = outcome.record.stage("train").cloned().unwrap_or_default();
        let loss = |k: &str| {
            train
                .get(k)
                .and_then(Value::as_f64)
                .map_or("none".into(), |x| format!("{x:.4}"))
        };
        println!(
            "loss on training pairs {} -> {}, on held-out pairs {} -> {}",
            loss("train_loss_before"),
            loss("train_loss_after"),
            loss("held_out_loss_before"),
            loss("held_out_loss_after")
        );
        println!("adapter        {}", outcome.adapter.display());
        println!("adapter (GGUF) {}", outcome.adapter_gguf.display());
        println!("merged model   {}", outcome.merged_gguf.display());
        println!("Modelfile      {}", outcome.modelfile.display());
        println!("loss plot      {}", outcome.loss_plot.display());
        println!("log            {}", outcome.log.display());
        println!();
        for line in &outcome.serve {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
