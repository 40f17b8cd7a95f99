//! `nas-core propose`: K proposals from one proposer for a seed network, each with
//! its outcome, and the valid rate — a quick way to see what a model does.

use super::check::{read_all, report};
use crate::propose::{
    self, Budget, Context, LlmConfig, LlmProposer, MutateProposer, OllamaBackend, OpenAiBackend,
    Proposal, Proposer, RandomProposer, Selection, Style, Tally,
};
use anyhow::{Context as _, bail};
use nas_dsl::mutate::{Mutator, ValueSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Which proposer to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A model served by Ollama (`/api/chat`, `/api/generate`).
    Ollama,
    /// A model behind an OpenAI-compatible API (`/v1/chat/completions`).
    Openai,
    /// One mutation of the best (or a tournament-selected) parent.
    Mutate,
    /// A fresh random width for every width class of the seed.
    Random,
}

/// Print K proposals for a seed network, with their outcomes and the valid rate.
///
/// Every proposal is parsed, shape-checked, checked against the budget and
/// against the architectures already proposed before it is counted valid. LLM
/// proposals that fail get one repair round with the rendered diagnostics.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.nas` file; its first net (or `--net`) is the seed and fixes the task.
    #[arg(value_name = "FILE.nas")]
    pub file: PathBuf,

    /// The net of the file to start from.
    #[arg(long)]
    pub net: Option<String>,

    /// The proposer.
    #[arg(long, value_enum)]
    pub proposer: Kind,

    /// The model name on the server.
    #[arg(long, default_value = "gemma3:270m")]
    pub model: String,

    /// The server's URL [default: http://127.0.0.1:11434 for ollama,
    /// http://127.0.0.1:8080 for openai].
    #[arg(long, alias = "ollama-url")]
    pub url: Option<String>,

    /// How many proposals.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,

    /// Prompt style: `structured` (only widths, as JSON constrained by a
    /// schema; the style small base models answer validly), `completion` (raw
    /// few-shot network text, for base models) or `chat`.
    #[arg(long, value_enum, default_value_t = Style::Structured)]
    pub style: Style,

    /// The random seed (the sampling seed of the first LLM proposal).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,

    /// Most tokens generated per request.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,

    /// Seconds to wait for one request.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,

    /// Retries after a timeout, refused connection, 5xx or malformed answer.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,

    /// Skip the repair round.
    #[arg(long)]
    pub no_repair: bool,

    /// Answers sampled per proposal (each with its own seed) before the repair
    /// round; the first acceptable one is kept.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub samples: u32,

    /// Most parameters a proposal may have.
    #[arg(long)]
    pub max_params: Option<u64>,

    /// Most FLOPs (multiply-accumulates per sample) a proposal may need.
    #[arg(long)]
    pub max_flops: Option<u64>,

    /// The widths a class may take: `uniform:MIN..=MAX` or `step:STEP..=MAX`.
    #[arg(long, default_value = "uniform:4..=1024", value_name = "SPEC")]
    pub widths: ValueSet,

    /// Parent selection for `--proposer mutate`.
    #[arg(long, value_enum, default_value_t = Selection::Best)]
    pub selection: Selection,

    /// Print one JSON object per proposal, then a summary object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `propose`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let sources = read_all(std::slice::from_ref(&args.file))?;
    let source = &sources[0];
    let nets = match nas_dsl::check_str(&source.text) {
        Ok(nets) => nets,
        Err(errors) => {
            report(source, &errors);
            bail!("`{}` does not check; no seed network", source.name());
        }
    };
    let seed = match &args.net {
        Some(name) => nets
            .into_iter()
            .find(|n| n.name() == name)
            .with_context(|| format!("no net `{name}` in `{}`", source.name()))?,
        None => nets
            .into_iter()
            .next()
            .with_context(|| format!("no net in `{}`", source.name()))?,
    };
    let mut ctx = Context::new(
        seed,
        Budget {
            max_params: args.max_params,
            max_flops: args.max_flops,
            ..Budget::default()
        },
        args.widths,
    );
    let timeout = match Duration::try_from_secs_f64(args.timeout) {
        Ok(t) if !t.is_zero() => t,
        _ => bail!("--timeout must be a positive number of seconds"),
    };
    let url = args.url.clone().unwrap_or_else(|| match args.proposer {
        Kind::Openai => propose::openai::DEFAULT_URL.to_string(),
        _ => propose::ollama::DEFAULT_URL.to_string(),
    });
    let config = LlmConfig {
        style: args.style,
        temperature: args.temperature,
        seed: args.seed,
        max_tokens: args.max_tokens,
        timeout,
        retries: args.retries,
        repair: !args.no_repair,
        samples: args.samples,
        ..LlmConfig::new(args.model.clone(), url)
    };
    let mutator = Mutator {
        widths: args.widths,
        structural: false,
    };
    match args.proposer {
        Kind::Ollama => {
            let backend = OllamaBackend::connect(&config).await?;
            drive(LlmProposer::new(backend, config), &mut ctx, &args).await
        }
        Kind::Openai => {
            let backend = OpenAiBackend::connect(&config).await?;
            drive(LlmProposer::new(backend, config), &mut ctx, &args).await
        }
        Kind::Mutate => {
            drive(
                MutateProposer::new(mutator, args.selection, args.seed),
                &mut ctx,
                &args,
            )
            .await
        }
        Kind::Random => drive(RandomProposer::new(args.seed), &mut ctx, &args).await,
    }
}

/// Runs `args.n` proposals, printing each; valid ones join the context so later
/// repeats count as duplicates. A server failure that outlived its retries ends
/// the run with that error.
async fn drive<P: Proposer>(
    mut proposer: P,
    ctx: &mut Context,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    let mut proposals: Vec<Proposal> = Vec::new();
    for i in 0..args.n {
        let proposal = proposer.propose(ctx).await;
        print_proposal(i + 1, &proposal, args.json)?;
        if let Some(arch) = &proposal.arch {
            ctx.record(arch.clone(), None);
        }
        let failed = proposal.outcome().is_server_failure();
        let reason = proposal
            .attempts
            .last()
            .and_then(|a| a.diagnostics.clone())
            .unwrap_or_default();
        proposals.push(proposal);
        if failed {
            print_tally(proposer.name(), &Tally::of(&proposals), args.json)?;
            bail!("{reason}");
        }
    }
    print_tally(proposer.name(), &Tally::of(&proposals), args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_proposal(index: u64, p: &Proposal, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(p)?;
        value["index"] = serde_json::json!(index);
        value["outcome"] = serde_json::json!(p.outcome());
        if let Some(arch) = &p.arch {
            value["canonical"] = serde_json::json!(arch.source());
            value["params"] = serde_json::json!(arch.net().params());
            value["flops"] = serde_json::json!(arch.net().flops());
        }
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    let rounds: Vec<String> = p.attempts.iter().map(|a| a.outcome.to_string()).collect();
    println!(
        "#{index} {} ({}) {:.2} s{}",
        p.outcome(),
        rounds.join(" -> "),
        p.latency_ms() / 1e3,
        p.note
            .as_ref()
            .map_or(String::new(), |n| format!("  [{n}]"))
    );
    match &p.arch {
        Some(arch) => {
            println!(
                "  {} params, {} FLOPs",
                nas_dsl::summary::thousands(arch.net().params()),
                nas_dsl::summary::thousands(arch.net().flops())
            );
            for line in arch.source().lines() {
                println!("  | {line}");
            }
        }
        None => {
            if let Some(d) = p.attempts.last().and_then(|a| a.diagnostics.as_deref()) {
                for line in d.lines().take(12) {
                    println!("  {line}");
                }
            }
        }
    }
    Ok(())
}

fn print_tally(name: &str, t: &Tally, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(t)?;
        value["proposer"] = serde_json::json!(name);
        value["outcomes"] = t
            .outcomes
            .iter()
            .map(|(o, n)| (o.to_string(), serde_json::json!(n)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        value["valid_rate"] = serde_json::json!(t.valid_rate());
        value["valid_rate_first"] = serde_json::json!(t.valid_rate_first());
        println!("{}", serde_json::json!({ "summary": value }));
        return Ok(());
    }
    let outcomes: Vec<String> = t.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
    println!(
        "{name}: valid {}/{} ({:.0}%), before repair {}/{} ({:.0}%); repaired {}; median {:.2} s per proposal; outcomes: {}",
        t.valid,
        t.proposals,
        t.valid_rate() * 100.0,
        t.valid_first,
        t.proposals,
        t.valid_rate_first() * 100.0,
        t.repaired,
        t.median_latency_ms / 1e3,
        outcomes.join(", ")
    );
    Ok(())
}
