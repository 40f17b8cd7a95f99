//! The probe: what a model proposes for parents it never saw in fine-tuning. Each
//! held-out parent is shown with its measured telemetry, exactly as in the pairs
//! (the same context and prompt function), and the model's first answer (no repair
//! round) is judged as the search judges it: valid, a duplicate of the parent, or
//! invalid, and whether it is the parent's measured better neighbour.

use crate::pairs::Pair;
use crate::propose::{
    Budget, Context, LlmConfig, LlmProposer, OpenAiBackend, Outcome, ProposeError, Proposer,
    Telemetry, identity,
};
use nas_dsl::mutate::ValueSet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Why the probe stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The server cannot be used.
    #[error(transparent)]
    Connect(#[from] ProposeError),
    /// A held-out parent does not pass the checker (was the file edited?).
    #[error("held-out parent {0} does not pass the checker")]
    BadParent(String),
    /// The server failed after its retries.
    #[error("the {arm} model's server failed during the probe: {why}")]
    Server {
        /// The arm.
        arm: String,
        /// What the last attempt reported.
        why: String,
    },
}

/// One model's proposals on the held-out parents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The arm (`base`, `tuned`).
    pub arm: String,
    /// Held-out parents asked.
    pub parents: usize,
    /// Proposals (parents × proposals per parent).
    pub proposals: usize,
    /// Proposals per outcome (`ok`, `duplicate`, `parse_error`, …).
    pub outcomes: BTreeMap<String, usize>,
    /// Valid, new networks.
    pub valid: usize,
    /// Answers that repeat the parent.
    pub duplicates: usize,
    /// Valid answers that are the parent's measured better network of its pair.
    pub better_neighbour: usize,
    /// Distinct valid networks proposed.
    pub distinct_valid: usize,
    /// Median seconds per proposal.
    pub median_seconds: f64,
}

impl ProbeResult {
    /// `valid / proposals`.
    pub fn valid_rate(&self) -> f64 {
        crate::report::share(self.valid, self.proposals)
    }

    /// One line for a terminal.
    pub fn summary_line(&self) -> String {
        format!(
            "{}: valid {:.1}% ({}/{}), duplicates {:.1}% ({}), better neighbour {}, median {:.2} s",
            self.arm,
            100.0 * self.valid_rate(),
            self.valid,
            self.proposals,
            100.0 * self.duplicate_rate(),
            self.duplicates,
            self.better_neighbour,
            self.median_seconds
        )
    }

    /// `duplicates / proposals`.
    pub fn duplicate_rate(&self) -> f64 {
        crate::report::share(self.duplicates, self.proposals)
    }
}

/// The distinct parents of the held-out pairs, each with its pair's better network.
pub fn parents(held_out: &[Pair]) -> Vec<&Pair> {
    let mut seen = BTreeSet::new();
    held_out
        .iter()
        .filter(|p| seen.insert(p.worse.id.clone()))
        .collect()
}

/// Asks the model behind `config` (an OpenAI-compatible server) for `per_parent`
/// proposals on every held-out parent; proposal i of a parent uses sampling seed
/// `config.seed + i` (the same seeds for every model).
pub async fn run(
    arm: &str,
    held_out: &[Pair],
    widths: ValueSet,
    mut config: LlmConfig,
    per_parent: usize,
) -> Result<ProbeResult, ProbeError> {
    config.repair = false;
    config.samples = 1;
    let backend = OpenAiBackend::connect(&config).await?;
    let first_seed = config.seed;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut valid, mut duplicates, mut better_neighbour) = (0, 0, 0);
    let mut distinct = BTreeSet::new();
    let mut latencies = Vec::new();
    let chosen = parents(held_out);
    for pair in &chosen {
        let worse = nas_dsl::check_str(&pair.worse.source)
            .ok()
            .and_then(|n| n.into_iter().next())
            .ok_or_else(|| ProbeError::BadParent(pair.worse.id.clone()))?;
        let mut ctx = Context::new(worse, Budget::default(), widths);
        let parent = ctx.seed().clone();
        ctx.record(
            parent,
            Some(Telemetry {
                rungs: Vec::new(),
                accuracy: Some(pair.worse.accuracy),
                loss: pair.worse.loss,
                epochs: pair.worse.epochs,
            }),
        );
        // A fresh proposer per parent: proposal i gets seed `first_seed + i`.
        let mut c = config.clone();
        c.seed = first_seed;
        let mut proposer = LlmProposer::new(backend.clone(), c);
        for _ in 0..per_parent {
            let p = proposer.propose(&ctx).await;
            let outcome = p.outcome();
            if outcome.is_server_failure() {
                let why = p
                    .attempts
                    .last()
                    .and_then(|a| a.diagnostics.clone())
                    .unwrap_or_else(|| outcome.to_string());
                return Err(ProbeError::Server {
                    arm: arm.into(),
                    why,
                });
            }
            latencies.push(p.latency_ms());
            *outcomes.entry(outcome.to_string()).or_default() += 1;
            match outcome {
                Outcome::Ok => {
                    valid += 1;
                    if let Some(a) = &p.arch {
                        let id = identity(a.net().net());
                        if id == pair.better.id {
                            better_neighbour += 1;
                        }
                        distinct.insert(id);
                    }
                }
                Outcome::Duplicate => duplicates += 1,
                _ => {}
            }
        }
    }
    Ok(ProbeResult {
        arm: arm.into(),
        parents: chosen.len(),
        proposals: chosen.len() * per_parent,
        outcomes,
        valid,
        duplicates,
        better_neighbour,
        distinct_valid: distinct.len(),
        median_seconds: crate::propose::median_ms(latencies) / 1e3,
    })
}
