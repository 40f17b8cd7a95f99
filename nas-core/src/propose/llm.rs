//! The LLM proposer, over any [`Backend`] (Ollama or OpenAI-compatible): prompt,
//! request with bounded retries and backoff, extraction, judgement, and one repair
//! round with the rendered diagnostics. Each request is an [`Attempt`] in the
//! [`Proposal`], whatever became of it.

use super::prompt::{self, Message, Prompt, PromptInput, Style};
use super::{
    Attempt, Context, Outcome, Proposal, Proposer, Rejection, Round, Verdict, extract, structured,
};
use nas_dsl::mutate::Arch;
use std::future::Future;
use std::time::{Duration, Instant};

/// Sampling and transport settings shared by the LLM backends.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmConfig {
    /// The model's name on the server.
    pub model: String,
    /// The server's base URL.
    pub url: String,
    /// Chat messages or raw few-shot completion.
    pub style: Style,
    /// Sampling temperature.
    pub temperature: f32,
    /// The sampling seed of the first proposal; proposal `i` uses `seed + i`.
    pub seed: u64,
    /// Most tokens generated per request.
    pub max_tokens: u32,
    /// Longest wait for one request.
    pub timeout: Duration,
    /// Retries after a transport failure (timeout, refused, 5xx, malformed JSON).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Whether a rejected answer gets the one repair round.
    pub repair: bool,
    /// Answers sampled per proposal before the repair round, each with its own
    /// seed, keeping the first acceptable one (at least 1).
    pub samples: u32,
}

impl LlmConfig {
    /// Defaults for `model` at `url`: structured style (the one small base
    /// models answer validly), temperature 0.7, seed 0,
    /// 512 tokens, 120 s per request, 2 retries from 500 ms, repair on, one
    /// sample.
    pub fn new(model: impl Into<String>, url: impl Into<String>) -> LlmConfig {
        LlmConfig {
            model: model.into(),
            url: url.into(),
            style: Style::Structured,
            temperature: 0.7,
            seed: 0,
            max_tokens: 512,
            timeout: Duration::from_secs(120),
            retries: 2,
            backoff: Duration::from_millis(500),
            repair: true,
            samples: 1,
        }
    }
}

/// One generation request, in the backend-neutral form.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling temperature.
    pub temperature: f32,
    /// Sampling seed.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// A JSON schema the answer must follow (the structured mode), enforced by
    /// the server's constrained decoding.
    pub format: Option<serde_json::Value>,
}

/// What a backend returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// The generated text.
    pub text: String,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, when reported.
    pub completion_tokens: Option<u64>,
}

/// A transport-level failure of one request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed (refused, reset, DNS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The model is not on the server (not retried).
    #[error("model `{model}` not found: {detail}")]
    ModelNotFound {
        /// The model asked for.
        model: String,
        /// The server's words.
        detail: String,
    },
    /// An HTTP error status (5xx and 429 are retried, other 4xx are not).
    #[error("server error{}: {body}", status.map_or(String::new(), |s| format!(" (HTTP {s})")))]
    Status {
        /// The status code, when known (`None` when the client hides it).
        status: Option<u16>,
        /// The start of the body.
        body: String,
    },
    /// A 2xx answer that is not the JSON expected.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl BackendError {
    /// Whether retrying can help.
    pub fn retryable(&self) -> bool {
        match self {
            BackendError::Timeout(_) | BackendError::Connect(_) | BackendError::Malformed(_) => {
                true
            }
            BackendError::ModelNotFound { .. } => false,
            BackendError::Status { status, .. } => {
                status.is_none_or(|s| s >= 500 || s == 429 || s == 408)
            }
        }
    }

    /// The outcome recorded for an attempt that ended in this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            BackendError::Timeout(_) => Outcome::Timeout,
            _ => Outcome::ServerError,
        }
    }
}

/// The start of a body, for error messages.
pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

/// A server speaking some LLM protocol.
pub trait Backend: Sync {
    /// `ollama` or `openai`.
    fn name(&self) -> &'static str;

    /// The server's base URL (for messages).
    fn url(&self) -> &str;

    /// Sends one request (no retries here).
    fn complete(&self, req: &Request) -> impl Future<Output = Result<Reply, BackendError>> + Send;
}

/// An LLM proposer over a backend.
pub struct LlmProposer<B> {
    backend: B,
    config: LlmConfig,
    proposals: u64,
}

/// A reply and the transport facts of getting it.
struct Sent {
    result: Result<Reply, BackendError>,
    latency_ms: f64,
    retries: u32,
}

impl<B: Backend> LlmProposer<B> {
    /// A proposer sending `config`'s requests to `backend`.
    pub fn new(backend: B, config: LlmConfig) -> LlmProposer<B> {
        LlmProposer {
            backend,
            config,
            proposals: 0,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Sends a request with a hard timeout per try and bounded retries with
    /// exponential backoff on retryable failures.
    async fn send(&self, req: &Request) -> Sent {
        let start = Instant::now();
        let mut retries = 0;
        loop {
            let result =
                match tokio::time::timeout(self.config.timeout, self.backend.complete(req)).await {
                    Ok(r) => r,
                    Err(_) => Err(BackendError::Timeout(self.config.timeout)),
                };
            match result {
                Err(e) if e.retryable() && retries < self.config.retries => {
                    retries += 1;
                    tokio::time::sleep(super::backoff(self.config.backoff, retries)).await;
                }
                result => {
                    return Sent {
                        result,
                        latency_ms: start.elapsed().as_secs_f64() * 1e3,
                        retries,
                    };
                }
            }
        }
    }

    fn request(
        &self,
        prompt: Prompt,
        seed: u64,
        temperature: f32,
        format: Option<serde_json::Value>,
    ) -> Request {
        let stop = match prompt {
            // The schema ends the answer; a stop sequence could only cut it short.
            _ if format.is_some() => Vec::new(),
            Prompt::Completion { .. } => prompt::COMPLETION_STOP
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Prompt::Chat { .. } => Vec::new(),
        };
        Request {
            prompt,
            temperature,
            seed,
            max_tokens: self.config.max_tokens,
            stop,
            format,
        }
    }

    /// Sends `prompt` and judges the answer: the attempt, plus the rejection (for
    /// the repair round) or the accepted architecture. In the structured style the
    /// answer's schema leaves out the `tried` assignments.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        ctx: &Context,
        parent: &Arch,
        tried: &[Vec<u64>],
        round: Round,
        prompt: Prompt,
        seed: u64,
        temperature: f32,
    ) -> (Attempt, Verdict) {
        let structured = self.config.style == Style::Structured;
        let format =
            structured.then(|| structured::schema(&parent.classes().describe(&ctx.widths), tried));
        let req = self.request(prompt, seed, temperature, format);
        let sent = self.send(&req).await;
        match sent.result {
            Ok(reply) => {
                let verdict = if structured {
                    structured::judge(ctx, parent, &reply.text)
                } else {
                    extract::best(ctx, &reply.text)
                };
                let mut attempt = Attempt::judged(round, reply.text, verdict.clone());
                attempt.latency_ms = sent.latency_ms;
                attempt.retries = sent.retries;
                attempt.prompt_tokens = reply.prompt_tokens;
                attempt.completion_tokens = reply.completion_tokens;
                (attempt, verdict)
            }
            Err(e) => {
                let outcome = e.outcome();
                let message = format!(
                    "{} server at {} (model `{}`): {e}{}",
                    self.backend.name(),
                    self.backend.url(),
                    self.config.model,
                    if sent.retries > 0 {
                        format!(" (after {} retries)", sent.retries)
                    } else {
                        String::new()
                    }
                );
                let attempt = Attempt {
                    round,
                    outcome,
                    raw: String::new(),
                    source: None,
                    diagnostics: Some(message.clone()),
                    latency_ms: sent.latency_ms,
                    prompt_tokens: None,
                    completion_tokens: None,
                    retries: sent.retries,
                };
                let verdict = Verdict::Rejected(Rejection {
                    outcome,
                    source: None,
                    diagnostics: message,
                });
                (attempt, verdict)
            }
        }
    }
}

impl<B: Backend + Send> Proposer for LlmProposer<B> {
    fn name(&self) -> &'static str {
        self.backend.name()
    }

    async fn propose(&mut self, ctx: &Context) -> Proposal {
        let seed = self.config.seed.wrapping_add(self.proposals);
        self.proposals += 1;
        let parent = ctx.best();
        let input = PromptInput::from_context(ctx, parent);
        let first = prompt::render(self.config.style, &input);
        let temperature = self.config.temperature;
        let mut attempts = Vec::new();
        let mut last = None;
        // Each sample has its own seed; the first acceptable answer is kept.
        for sample in 0..self.config.samples.max(1) {
            let sample_seed = seed.wrapping_add(u64::from(sample) << 32);
            let (attempt, verdict) = self
                .attempt(
                    ctx,
                    parent,
                    &input.tried,
                    Round::Initial,
                    first.clone(),
                    sample_seed,
                    temperature,
                )
                .await;
            let raw = attempt.raw.clone();
            attempts.push(attempt);
            let done = match &verdict {
                Verdict::Accepted { .. } => true,
                // A server that fails will fail the next sample too.
                Verdict::Rejected(r) => r.outcome.is_server_failure(),
            };
            last = Some((verdict, raw));
            if done {
                break;
            }
        }
        let verdict = match last {
            Some((Verdict::Rejected(rejection), raw))
                if self.config.repair && rejection.outcome.repairable() =>
            {
                let fix = match (&first, self.config.style) {
                    (Prompt::Completion { text }, Style::Structured) => Prompt::Completion {
                        text: structured::repair(text, &raw, &rejection, &input.tried),
                    },
                    _ => prompt::repair(&first, &raw, &rejection),
                };
                // A hotter repair: the same answer again would be no repair.
                let (attempt, verdict) = self
                    .attempt(
                        ctx,
                        parent,
                        &input.tried,
                        Round::Repair,
                        fix,
                        seed,
                        repair_temperature(temperature),
                    )
                    .await;
                attempts.push(attempt);
                Some(verdict)
            }
            other => other.map(|(verdict, _)| verdict),
        };
        let arch = match verdict {
            Some(Verdict::Accepted { arch, .. }) => Some(arch),
            _ => None,
        };
        Proposal {
            attempts,
            arch,
            parent: Some(parent.hash().to_string()),
            note: Some(format!("parent `{}`, seed {seed}", parent.net().name())),
        }
    }
}

/// The temperature of a repair round: the first answer's raised by 0.3 (to at
/// most 1.5, never lowered).
pub fn repair_temperature(first: f32) -> f32 {
    (first + 0.3).min(1.5).max(first)
}

/// The chat messages of a prompt (a completion prompt becomes one user message).
pub fn messages(prompt: &Prompt) -> Vec<Message> {
    match prompt {
        Prompt::Chat { messages } => messages.clone(),
        Prompt::Completion { text } => vec![Message {
            role: prompt::Role::User,
            content: text.clone(),
        }],
    }
}
