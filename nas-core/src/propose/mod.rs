//! Proposers: what produces the next candidate network of a search, and the record
//! of every attempt. The [`Proposer`] trait is implemented by the LLM proposers
//! ([`ollama`], [`openai`]) and by the two baselines ([`mutate`], [`random`]).
//!
//! Every candidate goes through one gate, [`Context::judge`]: it must parse, check,
//! fit the task (input shape and classes of the seed), stay within the budget and
//! be new (canonical text). Whatever is rejected is recorded as an [`Attempt`] with
//! its [`Outcome`] and diagnostics, before any training.

pub mod ahead;
pub mod extract;
pub mod llm;
pub mod mutate;
pub mod ollama;
pub mod openai;
pub mod prompt;
pub mod random;
pub mod structured;

use nas_dsl::CheckedNet;
use nas_dsl::mutate::{Arch, SeedRng, ValueSet};
use rand::RngExt;
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use llm::{LlmConfig, LlmProposer};
pub use mutate::{MutateProposer, Selection};
pub use ollama::OllamaBackend;
pub use openai::OpenAiBackend;
pub use prompt::Style;
pub use random::RandomProposer;

/// The file name diagnostics of a proposal are rendered against.
pub const PROPOSAL_FILE: &str = "proposal.nas";

/// What training reported for an evaluated architecture.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Telemetry {
    /// Test accuracy in `[0, 1]`.
    pub accuracy: Option<f64>,
    /// Final loss.
    pub loss: Option<f64>,
    /// Epochs trained.
    pub epochs: Option<u32>,
    /// A multi-fidelity search's lower rungs of the same network: `(epochs,
    /// accuracy)`, fewest epochs first (empty in a flat search).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rungs: Vec<(u32, f64)>,
}

/// An architecture the search has already produced, with its telemetry once trained.
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// The architecture.
    pub arch: Arc<Arch>,
    /// What training reported; `None` while untrained.
    pub telemetry: Option<Telemetry>,
}

/// Limits a proposal must respect before it is trained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Most learnable parameters (PyTorch's count).
    pub max_params: Option<u64>,
    /// Most multiply-accumulates per sample.
    pub max_flops: Option<u64>,
    /// Most training memory in bytes at `batch` (the checker's model,
    /// [`nas_dsl::memory`]).
    pub max_memory: Option<u64>,
    /// The batch size the memory budget is checked at (0 counts as 1).
    pub batch: u64,
}

impl Budget {
    /// The estimated training memory of `net` at the budget's batch and the
    /// limit it exceeds, when it does.
    pub fn memory_over(&self, net: &nas_dsl::CheckedNet) -> Option<(u64, u64)> {
        let max = self.max_memory?;
        let need = net.training_memory().at_batch(self.batch.max(1));
        (need > max).then_some((need, max))
    }

    /// The sentence for a net over the memory budget.
    pub fn memory_message(&self, net: &nas_dsl::CheckedNet, need: u64, max: u64) -> String {
        let m = net.training_memory();
        format!(
            "`{}` needs about {} of training memory at batch {} ({} per sample + {}), over the budget of {} (`--max-memory`); use narrower layers or fewer channels early on, where the maps are large",
            net.name(),
            nas_dsl::memory::bytes(need),
            self.batch.max(1),
            nas_dsl::memory::bytes(m.per_sample),
            nas_dsl::memory::bytes(m.fixed),
            nas_dsl::memory::bytes(max),
        )
    }
}

/// What happened to one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new, checked, in-budget network for the task.
    Ok,
    /// The text did not parse (or held no network).
    ParseError,
    /// It parsed but failed the shape checker, or does not fit the task.
    ShapeError,
    /// Over the parameter, FLOP or memory budget, or a width off the search's
    /// grid.
    OverBudget,
    /// The same architecture (canonical text) was already produced.
    Duplicate,
    /// The server did not answer in time (after retries).
    Timeout,
    /// The server was unreachable or answered with an error (after retries).
    ServerError,
}

impl Outcome {
    /// Whether a repair round can help: the model answered, but not acceptably.
    pub fn repairable(self) -> bool {
        matches!(
            self,
            Outcome::ParseError | Outcome::ShapeError | Outcome::OverBudget | Outcome::Duplicate
        )
    }

    /// Whether the server, not the model's text, failed.
    pub fn is_server_failure(self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::ServerError)
    }

    /// Every outcome, in report order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::ParseError,
        Outcome::ShapeError,
        Outcome::OverBudget,
        Outcome::Duplicate,
        Outcome::Timeout,
        Outcome::ServerError,
    ];

    /// The name used in records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ParseError => "parse_error",
            Outcome::ShapeError => "shape_error",
            Outcome::OverBudget => "over_budget",
            Outcome::Duplicate => "duplicate",
            Outcome::Timeout => "timeout",
            Outcome::ServerError => "server_error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an attempt was the first answer or the repair round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Round {
    /// The first request.
    Initial,
    /// The one repair round, sent the diagnostics of the first.
    Repair,
}

/// One request and what came of it.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    /// First answer or repair.
    pub round: Round,
    /// The classification.
    pub outcome: Outcome,
    /// The model's text as received (for baselines: the canonical text produced).
    pub raw: String,
    /// The network text extracted from `raw` and judged, if any.
    pub source: Option<String>,
    /// Rendered diagnostics or the reason for rejection; the server error for
    /// `timeout` and `server_error`.
    pub diagnostics: Option<String>,
    /// Wall time of the request, retries included, in milliseconds.
    pub latency_ms: f64,
    /// Prompt tokens, when the server reports them.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, when the server reports them.
    pub completion_tokens: Option<u64>,
    /// Retries spent on transport failures.
    pub retries: u32,
}

impl Attempt {
    /// An attempt at round `round` judged from `raw`, with timing filled in later.
    fn judged(round: Round, raw: String, verdict: Verdict) -> Attempt {
        let (outcome, source, diagnostics) = match verdict {
            Verdict::Accepted { source, .. } => (Outcome::Ok, Some(source), None),
            Verdict::Rejected(r) => (r.outcome, r.source, Some(r.diagnostics)),
        };
        Attempt {
            round,
            outcome,
            raw,
            source,
            diagnostics,
            latency_ms: 0.0,
            prompt_tokens: None,
            completion_tokens: None,
            retries: 0,
        }
    }
}

/// A proposal: its attempts (one, or two with a repair round) and the accepted
/// network, if any.
#[derive(Clone, Debug, Serialize)]
pub struct Proposal {
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// The accepted architecture (present exactly when the outcome is `ok`).
    #[serde(skip)]
    pub arch: Option<Arc<Arch>>,
    /// The content hash of the parent the proposal started from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// What the proposer did, e.g. the mutation applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Proposal {
    /// The outcome of the last attempt (`server_error` if there was none).
    pub fn outcome(&self) -> Outcome {
        self.attempts
            .last()
            .map_or(Outcome::ServerError, |a| a.outcome)
    }

    /// Whether the first attempt was already acceptable.
    pub fn valid_first(&self) -> bool {
        self.attempts
            .first()
            .is_some_and(|a| a.outcome == Outcome::Ok)
    }

    /// Whether a repair round was sent.
    pub fn repaired(&self) -> bool {
        self.attempts.iter().any(|a| a.round == Round::Repair)
    }

    /// Total wall time of the proposal, in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        self.attempts.iter().map(|a| a.latency_ms).sum()
    }

    /// A proposal with one attempt.
    fn single(
        attempt: Attempt,
        arch: Option<Arc<Arch>>,
        parent: Option<String>,
        note: Option<String>,
    ) -> Proposal {
        Proposal {
            attempts: vec![attempt],
            arch,
            parent,
            note,
        }
    }
}

/// Why a proposer cannot go on (as opposed to a rejected attempt, which is recorded).
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The server did not answer at start.
    #[error("cannot reach the {protocol} server at {url}: {reason}")]
    Unreachable {
        /// `Ollama` or `OpenAI-compatible`.
        protocol: &'static str,
        /// The URL tried.
        url: String,
        /// What went wrong, after retries.
        reason: String,
    },
    /// The server answers but does not have the model.
    #[error("model `{model}` not found at {url}{available}")]
    ModelNotFound {
        /// The model asked for.
        model: String,
        /// The server's URL.
        url: String,
        /// `; available: …` or a hint.
        available: String,
    },
    /// A URL that does not parse.
    #[error("invalid server URL `{url}`: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The mutator cannot produce a mutant of the parent.
    #[error(transparent)]
    Mutate(#[from] nas_dsl::mutate::MutateError),
    /// A width assignment overflowed.
    #[error(transparent)]
    Overflow(#[from] nas_dsl::mutate::WidthOverflow),
}

/// Produces candidate networks. Implementations record every attempt in the
/// [`Proposal`]; transport failures are retried with backoff inside the proposer
/// and surface as `timeout` or `server_error` attempts, never as a panic or a hang.
pub trait Proposer {
    /// A short name for reports (`ollama`, `openai`, `mutate`, `random`).
    fn name(&self) -> &'static str;

    /// Proposes one candidate in `ctx`.
    fn propose(&mut self, ctx: &Context) -> impl Future<Output = Proposal> + Send;
}

/// The verdict of [`Context::judge`] on one candidate text.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// A new, valid, in-budget network.
    Accepted {
        /// The canonical text.
        source: String,
        /// The architecture.
        arch: Arc<Arch>,
    },
    /// Rejected, with why.
    Rejected(Rejection),
}

/// A rejected candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Which check failed (never `ok`, `timeout` or `server_error`).
    pub outcome: Outcome,
    /// The text judged, if there was one.
    pub source: Option<String>,
    /// Rendered diagnostics, or a sentence stating the rule and the values.
    pub diagnostics: String,
}

/// What a proposer sees: the seed network (which fixes the task), what the search
/// has produced so far with its telemetry, the budget and the widths allowed.
#[derive(Clone, Debug)]
pub struct Context {
    seed: Arc<Arch>,
    history: Vec<Evaluated>,
    seen: HashSet<String>,
    /// Limits checked before training.
    pub budget: Budget,
    /// The widths a class may take.
    pub widths: ValueSet,
}

impl Context {
    /// A context starting from `seed`; the seed itself counts as produced.
    pub fn new(seed: CheckedNet, budget: Budget, widths: ValueSet) -> Context {
        let seed = Arc::new(Arch::new(seed));
        let seen = HashSet::from([identity(seed.net().net())]);
        Context {
            seed,
            history: Vec::new(),
            seen,
            budget,
            widths,
        }
    }

    /// The seed architecture.
    pub fn seed(&self) -> &Arc<Arch> {
        &self.seed
    }

    /// Everything recorded so far, oldest first.
    pub fn history(&self) -> &[Evaluated] {
        &self.history
    }

    /// Records a produced architecture (and its telemetry once trained): later
    /// proposals equal to it are duplicates.
    pub fn record(&mut self, arch: Arc<Arch>, telemetry: Option<Telemetry>) {
        self.seen.insert(identity(arch.net().net()));
        self.history.push(Evaluated { arch, telemetry });
    }

    /// Whether this architecture was already produced (the seed included).
    pub fn is_seen(&self, net: &nas_dsl::Net) -> bool {
        self.seen.contains(&identity(net))
    }

    /// The best architecture so far by accuracy; the seed while none is trained.
    pub fn best(&self) -> &Arc<Arch> {
        self.history
            .iter()
            .filter_map(|e| Some((e, e.telemetry.as_ref()?.accuracy?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(&self.seed, |(e, _)| &e.arch)
    }

    /// Tournament selection: the best of `k` trained architectures drawn at random
    /// (with replacement); the seed while none is trained.
    pub fn tournament(&self, k: usize, rng: &mut SeedRng) -> &Arc<Arch> {
        let trained: Vec<(&Evaluated, f64)> = self
            .history
            .iter()
            .filter_map(|e| Some((e, e.telemetry.as_ref()?.accuracy?)))
            .collect();
        if trained.is_empty() {
            return &self.seed;
        }
        (0..k.max(1))
            .map(|_| trained[rng.random_range(0..trained.len())])
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(&self.seed, |(e, _)| &e.arch)
    }

    /// The telemetry recorded for an architecture, if any.
    pub fn telemetry_of(&self, arch: &Arch) -> Option<&Telemetry> {
        self.history
            .iter()
            .rev()
            .find(|e| e.arch.hash() == arch.hash())
            .and_then(|e| e.telemetry.as_ref())
    }

    /// Judges one candidate text: it must parse, check, fit the task, stay within
    /// the budget and be new.
    pub fn judge(&self, text: &str) -> Verdict {
        let reject = |outcome, diagnostics: String| {
            Verdict::Rejected(Rejection {
                outcome,
                source: Some(text.to_string()),
                diagnostics,
            })
        };
        if text.trim().is_empty() {
            return reject(
                Outcome::ParseError,
                "error: the answer holds no network text".to_string(),
            );
        }
        let file = match nas_dsl::parse_str(text) {
            Ok(file) => file,
            Err(errors) => {
                return reject(
                    Outcome::ParseError,
                    nas_dsl::diag::render(PROPOSAL_FILE, text, &errors),
                );
            }
        };
        let Some(net) = file.nets.into_iter().next() else {
            return reject(
                Outcome::ParseError,
                "error: no `net` found in the answer".to_string(),
            );
        };
        match nas_dsl::check(&net) {
            Ok(checked) => self.judge_net(checked, Some(text)),
            Err(errors) => reject(
                Outcome::ShapeError,
                nas_dsl::diag::render(PROPOSAL_FILE, text, &errors),
            ),
        }
    }

    /// Judges `parent` with its width classes set to `widths` (the random and
    /// structured proposers): applied through the mutator, re-checked, then judged
    /// as any network. The classes make every assignment consistent, so a checker
    /// failure is a mutator bug, recorded as a shape error rather than skipped.
    pub fn judge_widths(&self, parent: &Arch, widths: &[u64]) -> Verdict {
        let reject = |source, diagnostics| {
            Verdict::Rejected(Rejection {
                outcome: Outcome::ShapeError,
                source,
                diagnostics,
            })
        };
        let net = match parent.classes().apply(parent.net().net(), widths) {
            Ok(net) => net,
            Err(e) => return reject(None, format!("error: {e}")),
        };
        match nas_dsl::check_owned(net) {
            Ok(checked) => self.judge_net(checked, None),
            Err(failed) => {
                let (net, errors) = *failed;
                reject(
                    Some(nas_dsl::print(&net)),
                    format!(
                        "error: widths {widths:?} gave a network that fails the checker (a mutator bug):\n{errors}"
                    ),
                )
            }
        }
    }

    /// Judges a checked network: task fit, budget, novelty. `text` is what the
    /// model wrote, kept in the record (the canonical text otherwise).
    pub fn judge_net(&self, net: CheckedNet, text: Option<&str>) -> Verdict {
        let arch = Arch::new(net);
        let source = text.map_or_else(|| arch.source().to_string(), str::to_string);
        let reject = |outcome, diagnostics: String| {
            Verdict::Rejected(Rejection {
                outcome,
                source: Some(source.clone()),
                diagnostics,
            })
        };
        let task = self.seed.net();
        let net = arch.net();
        if net.input() != task.input() || net.output() != task.output() {
            return reject(
                Outcome::ShapeError,
                format!(
                    "error: `{}` takes input {:?} and ends in {:?}, but the task needs input {:?} and {} classes (`input = {:?}, classes = {}`)",
                    net.name(),
                    net.input().dims(),
                    net.output().dims(),
                    task.input().dims(),
                    task.net().classes.value,
                    task.input().dims(),
                    task.net().classes.value,
                ),
            );
        }
        // The width grid binds every proposer; the seed's own widths stay
        // allowed (a seed off the grid keeps its unchanged classes).
        let seed_widths: HashSet<u64> = self
            .seed
            .classes()
            .classes()
            .iter()
            .map(|c| c.width)
            .collect();
        if let Some(c) =
            arch.classes().classes().iter().find(|c| {
                !c.grid(&self.widths).contains(c.width) && !seed_widths.contains(&c.width)
            })
        {
            let grid = c.grid(&self.widths);
            return reject(
                Outcome::OverBudget,
                format!(
                    "error: `{}`: width {} (class c{}, at `{}`) is not an allowed width: the search allows `{}`{} (from {} to {} in steps of {}); choose widths from that set",
                    net.name(),
                    c.width,
                    c.id,
                    c.label(),
                    self.widths,
                    if c.multiple_of > 1 {
                        format!(", multiples of {} for this class", c.multiple_of)
                    } else {
                        String::new()
                    },
                    grid.min,
                    grid.max,
                    grid.step,
                ),
            );
        }
        if let Some(max) = self.budget.max_params
            && net.params() > max
        {
            return reject(
                Outcome::OverBudget,
                format!(
                    "error: `{}` has {} parameters, over the budget of {}",
                    net.name(),
                    nas_dsl::summary::thousands(net.params()),
                    nas_dsl::summary::thousands(max),
                ),
            );
        }
        if let Some(max) = self.budget.max_flops
            && net.flops() > max
        {
            return reject(
                Outcome::OverBudget,
                format!(
                    "error: `{}` needs {} FLOPs per sample, over the budget of {}",
                    net.name(),
                    nas_dsl::summary::thousands(net.flops()),
                    nas_dsl::summary::thousands(max),
                ),
            );
        }
        if let Some((need, max)) = self.budget.memory_over(net) {
            return reject(
                Outcome::OverBudget,
                format!("error: {}", self.budget.memory_message(net, need, max)),
            );
        }
        if self.is_seen(arch.net().net()) {
            return reject(
                Outcome::Duplicate,
                format!(
                    "error: `{}` is the same architecture as one already produced (identical canonical text); change at least one width",
                    net.name()
                ),
            );
        }
        Verdict::Accepted {
            source,
            arch: Arc::new(arch),
        }
    }
}

/// The identity of an architecture: the content hash of its canonical text with
/// the name, `pub` and doc comments left out, so a renamed copy is a duplicate.
pub fn identity(net: &nas_dsl::Net) -> String {
    let mut bare = net.clone();
    bare.docs.clear();
    bare.public = false;
    bare.name = nas_dsl::ast::Ident::synthetic("Net");
    nas_dsl::mutate::content_hash(&nas_dsl::print(&bare))
}

/// The median of some latencies in milliseconds (0 for none).
pub fn median_ms(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Counts over a run of proposals: valid rate before and after repair, outcomes,
/// median latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Proposals made.
    pub proposals: usize,
    /// Proposals whose first attempt was `ok`.
    pub valid_first: usize,
    /// Proposals whose final attempt was `ok`.
    pub valid: usize,
    /// Proposals that went through a repair round.
    pub repaired: usize,
    /// Final outcomes, by name, in report order (zero counts left out).
    pub outcomes: Vec<(Outcome, usize)>,
    /// Median wall time per proposal in milliseconds.
    pub median_latency_ms: f64,
}

impl Tally {
    /// Tallies a run.
    pub fn of(proposals: &[Proposal]) -> Tally {
        let outcomes = Outcome::ALL
            .iter()
            .map(|&o| (o, proposals.iter().filter(|p| p.outcome() == o).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        Tally {
            proposals: proposals.len(),
            valid_first: proposals.iter().filter(|p| p.valid_first()).count(),
            valid: proposals
                .iter()
                .filter(|p| p.outcome() == Outcome::Ok)
                .count(),
            repaired: proposals.iter().filter(|p| p.repaired()).count(),
            outcomes,
            median_latency_ms: median_ms(proposals.iter().map(Proposal::latency_ms).collect()),
        }
    }

    /// `valid / proposals` (0 for none).
    pub fn valid_rate(&self) -> f64 {
        ratio(self.valid, self.proposals)
    }

    /// `valid_first / proposals` (0 for none).
    pub fn valid_rate_first(&self) -> f64 {
        ratio(self.valid_first, self.proposals)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// How long to wait before retry number `retry` (1-based): `base · 2^(retry-1)`,
/// capped at 8 s.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(Duration::from_secs(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median_ms(vec![]), 0.0);
        assert_eq!(median_ms(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_ms(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    fn ctx(widths: &str) -> Context {
        let seed = nas_dsl::check_str(crate::evolve::SEED_SOURCE)
            .unwrap()
            .remove(0);
        Context::new(seed, Budget::default(), widths.parse().unwrap())
    }

    fn with_widths(a: u64, b: u64, c: u64) -> String {
        crate::evolve::SEED_SOURCE
            .replace("conv(3 -> 16", &format!("conv(3 -> {a}"))
            .replace("conv(16 -> 32", &format!("conv({a} -> {b}"))
            .replace("conv(32 -> 64", &format!("conv({b} -> {c}"))
            .replace("linear(64 -> 10", &format!("linear({c} -> 10"))
    }

    #[test]
    fn a_width_off_the_grid_is_a_rejection_naming_the_allowed_set() {
        let ctx = ctx("step:8..=64");
        // The network: one huge width, written as source.
        let text = with_widths(30000, 32, 64);
        assert!(text.contains("30000"), "{text}");
        match ctx.judge(&text) {
            Verdict::Rejected(r) => {
                assert_eq!(r.outcome, Outcome::OverBudget);
                assert!(r.diagnostics.contains("30000"), "{}", r.diagnostics);
                assert!(r.diagnostics.contains("step:8..=64"), "{}", r.diagnostics);
            }
            other => panic!("accepted: {other:?}"),
        }
        // Off the step, inside the range: rejected too.
        assert!(matches!(
            ctx.judge(&with_widths(20, 32, 64)),
            Verdict::Rejected(r) if r.outcome == Outcome::OverBudget
        ));
        // On the grid: accepted; the seed's own widths stay allowed under a
        // grid that excludes them.
        assert!(matches!(
            ctx.judge(&with_widths(24, 32, 64)),
            Verdict::Accepted { .. }
        ));
        let coarse = self::ctx("step:48..=96");
        assert!(matches!(
            coarse.judge(&with_widths(48, 32, 64)),
            Verdict::Accepted { .. }
        ));
        assert!(matches!(
            coarse.judge(&with_widths(40, 32, 64)),
            Verdict::Rejected(r) if r.outcome == Outcome::OverBudget
        ));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, 3), Duration::from_millis(400));
        assert_eq!(backoff(base, 40), Duration::from_secs(8));
    }
}
