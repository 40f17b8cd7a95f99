//! The mutation baseline: pick a parent (best so far, or by tournament) and apply
//! one mutation from the shape-consistent mutator; the mutant is judged like any
//! proposal (budget, novelty). A mutant already produced is drawn again (up to
//! [`DRAWS`] draws).

use super::{Attempt, Context, Outcome, Proposal, Proposer, Round, Verdict};
use nas_dsl::mutate::{Mutator, SeedRng, seed_rng};
use std::time::Instant;

/// How the parent is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Selection {
    /// The most accurate architecture so far (the seed while none is trained).
    Best,
    /// The best of three drawn at random among the trained ones.
    Tournament,
}

/// How many candidates a baseline draws at most for one proposal while they
/// are networks already produced.
pub const DRAWS: u32 = 64;

/// A proposal's note, with how many duplicates were drawn again.
pub(crate) fn redrawn_note(note: String, redrawn: u32) -> String {
    match redrawn {
        0 => note,
        n => format!("{note} ({n} duplicate draws skipped)"),
    }
}

/// The tournament size.
pub const TOURNAMENT: usize = 3;

/// Proposes one mutation of a selected parent.
pub struct MutateProposer {
    mutator: Mutator,
    selection: Selection,
    rng: SeedRng,
}

impl MutateProposer {
    /// A proposer with `mutator`, `selection` and a seeded generator.
    pub fn new(mutator: Mutator, selection: Selection, seed: u64) -> MutateProposer {
        MutateProposer {
            mutator,
            selection,
            rng: seed_rng(seed),
        }
    }
}

impl Proposer for MutateProposer {
    fn name(&self) -> &'static str {
        "mutate"
    }

    async fn propose(&mut self, ctx: &Context) -> Proposal {
        let start = Instant::now();
        let parent = match self.selection {
            Selection::Best => ctx.best(),
            Selection::Tournament => ctx.tournament(TOURNAMENT, &mut self.rng),
        };
        let mutator = Mutator {
            widths: ctx.widths,
            ..self.mutator
        };
        // Draws again while the mutant is a network already produced (up to
        // DRAWS times): the baseline samples without replacement.
        let mut redrawn = 0;
        let (verdict, note) = loop {
            let (verdict, note) = match mutator.mutate(parent, &mut self.rng) {
                Ok(m) => {
                    let note = format!("{} of `{}`", m.mutation, parent.net().name());
                    (ctx.judge_net(m.net, None), note)
                }
                Err(e) => {
                    // No operator applies (or a mutator bug): recorded, not fatal here.
                    let rejection = super::Rejection {
                        outcome: super::Outcome::ShapeError,
                        source: None,
                        diagnostics: format!("error: {e}"),
                    };
                    (Verdict::Rejected(rejection), "no mutation".to_string())
                }
            };
            match &verdict {
                Verdict::Rejected(r) if r.outcome == Outcome::Duplicate && redrawn + 1 < DRAWS => {
                    redrawn += 1;
                }
                _ => break (verdict, redrawn_note(note, redrawn)),
            }
        };
        let raw = match &verdict {
            Verdict::Accepted { source, .. } => source.clone(),
            Verdict::Rejected(r) => r.source.clone().unwrap_or_default(),
        };
        let arch = match &verdict {
            Verdict::Accepted { arch, .. } => Some(arch.clone()),
            Verdict::Rejected(_) => None,
        };
        let mut attempt = Attempt::judged(Round::Initial, raw, verdict);
        attempt.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        Proposal::single(attempt, arch, Some(parent.hash().to_string()), Some(note))
    }
}
