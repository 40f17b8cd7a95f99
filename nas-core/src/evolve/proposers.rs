//! Starting the proposer a search asks for (`auto` probes for Ollama and falls
//! back to `mutate`), behind one type.

use super::{EvolveError, ProposerKind, Resolved, SearchConfig};
use crate::propose::{
    self, Context, LlmConfig, LlmProposer, MutateProposer, OllamaBackend, OpenAiBackend, Proposal,
    Proposer, RandomProposer, Selection,
};
use nas_dsl::mutate::Mutator;
use std::time::Duration;

/// Any of the proposers, behind one type (the trait's `async fn` is not object
/// safe).
pub enum AnyProposer {
    /// The mutation baseline.
    Mutate(MutateProposer),
    /// The random-search baseline.
    Random(RandomProposer),
    /// A model served by Ollama.
    Ollama(LlmProposer<OllamaBackend>),
    /// A model behind an OpenAI-compatible endpoint.
    OpenAi(LlmProposer<OpenAiBackend>),
}

impl AnyProposer {
    /// Whether it asks a language model (slow: worth asking ahead).
    pub fn is_llm(&self) -> bool {
        matches!(self, AnyProposer::Ollama(_) | AnyProposer::OpenAi(_))
    }
}

impl Proposer for AnyProposer {
    fn name(&self) -> &'static str {
        match self {
            AnyProposer::Mutate(p) => p.name(),
            AnyProposer::Random(p) => p.name(),
            AnyProposer::Ollama(p) => p.name(),
            AnyProposer::OpenAi(p) => p.name(),
        }
    }

    async fn propose(&mut self, ctx: &Context) -> Proposal {
        match self {
            AnyProposer::Mutate(p) => p.propose(ctx).await,
            AnyProposer::Random(p) => p.propose(ctx).await,
            AnyProposer::Ollama(p) => p.propose(ctx).await,
            AnyProposer::OpenAi(p) => p.propose(ctx).await,
        }
    }
}

/// The LLM settings as the proposer's configuration.
pub(crate) fn llm_config(cfg: &SearchConfig, r: &Resolved, url: &str, seed: u64) -> LlmConfig {
    let mut c = LlmConfig::new(cfg.llm.model.clone(), url);
    c.style = r.style;
    c.temperature = cfg.llm.temperature;
    c.seed = seed;
    c.max_tokens = cfg.llm.max_tokens;
    c.timeout = Duration::from_secs_f64(cfg.llm.timeout.0);
    c.retries = cfg.llm.retries;
    c.repair = cfg.llm.repair;
    c.samples = cfg.llm.samples;
    c
}

/// Starts the configured proposer, seeded with `seed`. For `auto`, a quick check
/// for an Ollama server with the model decides; otherwise `mutate` is used and
/// the returned notice says why.
pub fn connect(
    cfg: &SearchConfig,
    r: &Resolved,
    rt: &tokio::runtime::Runtime,
    seed: u64,
) -> Result<(AnyProposer, Option<String>), EvolveError> {
    let mutate = || {
        AnyProposer::Mutate(MutateProposer::new(
            Mutator {
                widths: r.widths,
                structural: cfg.structural,
            },
            Selection::Best,
            seed,
        ))
    };
    let ollama_url = || {
        cfg.llm
            .url
            .clone()
            .unwrap_or_else(|| propose::ollama::DEFAULT_URL.to_string())
    };
    match cfg.proposer {
        ProposerKind::Mutate => Ok((mutate(), None)),
        ProposerKind::Random => Ok((AnyProposer::Random(RandomProposer::new(seed)), None)),
        ProposerKind::Ollama => {
            let c = llm_config(cfg, r, &ollama_url(), seed);
            let backend = rt.block_on(OllamaBackend::connect(&c))?;
            Ok((AnyProposer::Ollama(LlmProposer::new(backend, c)), None))
        }
        ProposerKind::Openai => {
            let url = cfg
                .llm
                .url
                .clone()
                .unwrap_or_else(|| propose::openai::DEFAULT_URL.to_string());
            let c = llm_config(cfg, r, &url, seed);
            let backend = rt.block_on(OpenAiBackend::connect(&c))?;
            Ok((AnyProposer::OpenAi(LlmProposer::new(backend, c)), None))
        }
        ProposerKind::Auto => {
            let url = ollama_url();
            let c = llm_config(cfg, r, &url, seed);
            // A short probe: a machine without Ollama must not wait.
            let mut probe = c.clone();
            probe.timeout = Duration::from_secs(2);
            probe.retries = 0;
            match rt.block_on(OllamaBackend::connect(&probe)) {
                Ok(_) => {
                    let backend = rt.block_on(OllamaBackend::connect(&c))?;
                    Ok((AnyProposer::Ollama(LlmProposer::new(backend, c)), None))
                }
                Err(e) => Ok((
                    mutate(),
                    Some(format!(
                        "no Ollama model `{}` at {url} ({}); using the `mutate` proposer",
                        cfg.llm.model,
                        first_line(&e.to_string())
                    )),
                )),
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
