//! `nas-core experiment --config FILE.toml`: the paper's experiment end to end —
//! corpus, corpus training, pairs, fine-tune, probe, comparison, report — each
//! stage recorded in the experiment's directory so that a rerun continues.

use super::compare::{Arm, load_comparison, run_arms};
use super::evolve::{Reporter, with_log};
use super::finetune::{ToolArgs, View};
use crate::corpus_train::CorpusRun;
use crate::evolve::{ProposerKind, llm_config, seed_network};
use crate::experiment::probe::{self, ProbeResult};
use crate::experiment::report::{self as xreport, Parts};
use crate::experiment::{self, Config, Record};
use crate::finetune::tools::{Server, Tools};
use crate::finetune::{self, read_lines};
use crate::pairs::{self, Pair};
use anyhow::{Context as _, bail};
use nas_dsl::mutate::Mutator;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Run the paper's experiment from a configuration: corpus → corpus training →
/// pairs → LoRA fine-tune → probe → base vs tuned vs random → one HTML report.
///
/// Stages (each recorded in `OUT/experiment.json` with its time and figures; a
/// rerun skips the finished ones and continues the others):
/// `corpus` (width mutants of the seed, `corpus.jsonl`), `train` (the first
/// `corpus.train` of them at the search fidelity, `corpus-train/`), `pairs`
/// (`pairs.jsonl`; a share of the worse networks is held out, `held-out.json`),
/// `finetune` (`finetune/`: adapter, merged GGUF, Modelfile, loss curve), `probe`
/// (base vs tuned proposals on the held-out parents: valid and duplicate rates,
/// `probe.json`), `compare` (base vs tuned vs the baselines, `compare/`, equal
/// budgets from the same seed network), `report` (`report.html`).
///
/// The base model and the tuned one (base + the adapter) are served by
/// llama-server on free local ports while the probe and the comparison run. Needs
/// `scripts/local-llm.sh build --tools` and `scripts/finetune-env.sh install`.
/// Shipped configurations: `configs/experiment-cpu.toml` (under an hour on 2
/// cores) and `configs/experiment-paper.toml` (AlexNet, CIFAR-100; a GPU machine).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment's configuration (TOML; unknown keys are errors).
    #[arg(long, value_name = "FILE.toml")]
    pub config: PathBuf,

    /// The experiment's directory [default: the configuration's `out`].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Where the tools are.
    #[command(flatten)]
    pub tools: ToolArgs,
}

/// Times a stage and records it, unless a previous run finished it.
fn stage(
    record: &mut Record,
    dir: &Path,
    name: &str,
    body: impl FnOnce() -> anyhow::Result<Value>,
) -> anyhow::Result<()> {
    if let Some(s) = record.stage(name) {
        eprintln!("== {name}: done before ({:.0} s)", s.seconds);
        return Ok(());
    }
    eprintln!("== {name}");
    let t0 = Instant::now();
    let summary = body().with_context(|| format!("stage `{name}` failed"))?;
    let seconds = t0.elapsed().as_secs_f64();
    eprintln!("== {name}: {:.0} s  {summary}", seconds);
    record.finish(dir, name, seconds, summary)?;
    Ok(())
}

/// The running servers of the base and the tuned model.
struct Servers {
    base: Server,
    tuned: Server,
}

impl Servers {
    fn start(tools: &Tools, cfg: &Config, base: &Path, dir: &Path) -> anyhow::Result<Servers> {
        let ft_dir = dir.join(experiment::FINETUNE_DIR);
        let adapter = ft_dir.join("adapter.gguf");
        let base = &finetune::served_base(base, &ft_dir);
        let limit = Duration::from_secs(300);
        let template = &cfg.finetune.chat_template;
        let base_server = Server::start_named(
            tools,
            base,
            None,
            template,
            Some("base"),
            &dir.join("server-base.log"),
            limit,
        )?;
        let tuned = Server::start_named(
            tools,
            base,
            Some(&adapter),
            template,
            Some("tuned"),
            &dir.join("server-tuned.log"),
            limit,
        )?;
        Ok(Servers {
            base: base_server,
            tuned,
        })
    }
}

/// Runs `experiment`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::from_file(&args.config)?;
    if let Some(out) = &args.out {
        cfg.out = out.clone();
    }
    // Everything that can be missing is looked for before any stage spends time.
    let base = cfg
        .base
        .clone()
        .unwrap_or_else(finetune::tools::default_base);
    finetune::check_base(&base)?;
    let tools = args.tools.locate()?;
    let seed_net = seed_network(&cfg.search)?;
    let dir = cfg.out.clone();
    let mut record = Record::open(&dir, &cfg)?;
    // A moved experiment (or one with other fine-tuning threads) records where it is now.
    record.config = cfg.clone();
    eprintln!(
        "experiment in {} ({} of {} stages done before; the report is written at the end)",
        dir.display(),
        record.stages.len(),
        experiment::STAGES.len()
    );
    let resolved = cfg.search.resolve()?;
    let corpus_file = dir.join(experiment::CORPUS_FILE);
    let train_dir = dir.join(experiment::TRAIN_DIR);
    let pairs_file = dir.join(experiment::PAIRS_FILE);
    let held_file = dir.join(experiment::HELD_OUT_FILE);
    let ft_dir = dir.join(experiment::FINETUNE_DIR);
    let probe_file = dir.join(experiment::PROBE_FILE);
    let compare_dir = dir.join(experiment::COMPARE_DIR);

    stage(&mut record, &dir, "corpus", || {
        let mutator = Mutator {
            widths: resolved.widths,
            structural: cfg.search.structural,
        };
        let out = crate::corpus::build(
            vec![seed_net.clone()],
            &corpus_file,
            cfg.corpus.size,
            cfg.corpus.seed,
            mutator,
            |_| {},
        )?;
        Ok(json!({"records": out.total(), "written": out.written}))
    })?;

    stage(&mut record, &dir, "train", || {
        let mut run = CorpusRun::open(
            &train_dir,
            cfg.search.clone(),
            &corpus_file,
            cfg.corpus.train,
        )?
        .with_jobs(cfg.search.jobs);
        let mut reporter = Reporter::new("[train] ");
        let p = with_log(&train_dir, || run.run(&mut reporter))??;
        drop(reporter);
        Ok(json!({"members": p.members, "trained": p.trained, "failed": p.finished - p.trained}))
    })?;

    stage(&mut record, &dir, "pairs", || {
        let corpus = pairs::Corpus::read(&corpus_file)?;
        let results = pairs::read_results(&train_dir, &corpus)?;
        let measured = results.len();
        let all = pairs::make_pairs(results, cfg.pairs.seed);
        if all.len() < 2 {
            bail!(
                "{measured} measured networks gave {} pairs: too few to hold any out",
                all.len()
            );
        }
        let neighbours = all
            .iter()
            .filter(|p| p.choice == pairs::Choice::Neighbour)
            .count();
        let total = all.len();
        let (train, held) = experiment::split_held_out(all, cfg.pairs.held_out, cfg.pairs.seed);
        let (text, written) =
            pairs::to_lines(&train, cfg.style(), resolved.widths).map_err(anyhow::Error::msg)?;
        if written == 0 {
            bail!(
                "none of the {} training pairs can be written in the {} style",
                train.len(),
                cfg.pairs.style
            );
        }
        write_atomic(&pairs_file, &text)?;
        write_atomic(&held_file, &serde_json::to_string_pretty(&held)?)?;
        Ok(json!({
            "measured": measured,
            "pairs": total,
            "with_better_neighbour": neighbours,
            "training_pairs": written,
            "held_out_parents": probe::parents(&held).len(),
            "held_out_pairs": held.len(),
        }))
    })?;

    stage(&mut record, &dir, "finetune", || {
        let mut view = View::new();
        let outcome = finetune::run(
            &cfg.finetune,
            &pairs_file,
            &base,
            &ft_dir,
            &tools,
            cfg.finetune_threads,
            |e| view.event(e),
        )?;
        let lines = read_lines(&ft_dir.join("train.jsonl"));
        let mut v = outcome.record.stage("train").cloned().unwrap_or_default();
        let last_step = lines.iter().rev().find(|l| l["event"] == "step");
        let tokenized = lines.iter().find(|l| l["event"] == "tokenized");
        if let (Some(s), Some(obj)) = (last_step, v.as_object_mut()) {
            let per =
                s["seconds"].as_f64().unwrap_or(f64::NAN) / s["step"].as_f64().unwrap_or(f64::NAN);
            obj.insert(
                "seconds_per_step".into(),
                json!((per * 100.0).round() / 100.0),
            );
        }
        if let (Some(t), Some(obj)) = (tokenized, v.as_object_mut()) {
            obj.insert("pairs".into(), t["train"].clone());
            obj.insert("held_out".into(), t["held_out"].clone());
            obj.insert("median_tokens".into(), t["median_tokens"].clone());
        }
        if let Some(obj) = v.as_object_mut() {
            obj.remove("adapter");
            obj.remove("base_config");
        }
        Ok(v)
    })?;

    let need_servers = record.stage("probe").is_none() || record.stage("compare").is_none();
    let servers = if need_servers {
        eprintln!("== serving the base and the tuned model (llama-server)");
        Some(Servers::start(&tools, &cfg, &base, &dir)?)
    } else {
        None
    };
    let held: Vec<Pair> = read_json(&held_file)?;

    stage(&mut record, &dir, "probe", || {
        let s = servers.as_ref().context("no servers")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let mut results = Vec::new();
        for (arm, server) in [("base", &s.base), ("tuned", &s.tuned)] {
            let mut c = llm_config(&cfg.search, &resolved, &server.url(), cfg.search.seed);
            c.model = arm.into();
            c.style = cfg.style();
            let r = rt.block_on(probe::run(
                arm,
                &held,
                resolved.widths,
                c,
                cfg.probe.proposals,
            ))?;
            eprintln!("  {}", r.summary_line());
            results.push(r);
        }
        write_atomic(&probe_file, &serde_json::to_string_pretty(&results)?)?;
        Ok(json!(results
            .iter()
            .map(|r| json!({"arm": r.arm, "valid_rate": r.valid_rate(), "duplicate_rate": r.duplicate_rate(), "better_neighbour": r.better_neighbour}))
            .collect::<Vec<_>>()))
    })?;

    stage(&mut record, &dir, "compare", || {
        let s = servers.as_ref().context("no servers")?;
        let mut arms = Vec::new();
        for (name, server) in [("base", &s.base), ("tuned", &s.tuned)] {
            arms.push(Arm {
                name: name.into(),
                proposer: ProposerKind::Openai.as_str().into(),
                model: Some(name.into()),
                url: Some(server.url()),
                style: Some(cfg.pairs.style.clone()),
            });
        }
        for b in &cfg.compare.baselines {
            arms.push(Arm::plain(ProposerKind::parse(b)?));
        }
        let c = run_arms(&cfg.search, &arms, cfg.compare.seeds, &compare_dir)?;
        Ok(json!({
            "arms": c.proposers.iter().map(|p| json!({
                "arm": p.proposer,
                "mean_best": p.summary.map(|s| s.mean),
                "valid_rate": p.valid_rate(),
                "duplicate_rate": p.duplicate_rate(),
            })).collect::<Vec<_>>(),
            "tests": c.tests.iter().map(|t| json!({
                "pair": format!("{} vs {}", t.a, t.b),
                "p_mann_whitney": t.mann_whitney.map(|m| m.p),
                "p_welch": t.welch.map(|w| w.p),
                "cliffs_delta": t.cliffs_delta,
            })).collect::<Vec<_>>(),
        }))
    })?;
    drop(servers);

    // The report, from what the stages left on disk (written anew on every run).
    let probe_results: Vec<ProbeResult> = read_json(&probe_file)?;
    let (comparison, groups) = load_comparison(&compare_dir)?;
    let body = comparison.body(&groups, &format!("{}/", experiment::COMPARE_DIR));
    let by_arm: Vec<(String, Vec<&crate::report::RunData>)> = groups
        .iter()
        .map(|(a, runs)| (a.clone(), runs.iter().map(|(_, r)| r).collect()))
        .collect();
    let sizes = xreport::proposal_sizes(&by_arm);
    let html = xreport::render(&Parts {
        record: &record,
        loss_svg: std::fs::read_to_string(ft_dir.join("loss.svg")).ok(),
        probe: &probe_results,
        comparison: (&comparison, body),
        sizes: sizes.clone(),
    });
    let report = dir.join(xreport::REPORT_FILE);
    write_atomic(&report, &html)?;
    println!();
    print!("{}", comparison.table());
    for z in &sizes {
        println!(
            "{}: {} trained proposals, mean {:.0} parameters, {} larger than the seed",
            z.arm, z.trained, z.mean_params, z.larger_than_seed
        );
    }
    for r in &probe_results {
        println!("held-out parents, {}", r.summary_line());
    }
    eprintln!("report: {}", report.display());
    Ok(ExitCode::SUCCESS)
}

/// A file an earlier stage wrote (a rerun that finds it gone says so).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read `{}`, which a finished stage wrote (start the experiment in a new directory)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("`{}` does not decode", path.display()))
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::report::replace_file(path, text)
        .with_context(|| format!("cannot write `{}`", path.display()))
}
