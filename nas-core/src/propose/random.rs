//! The random-search baseline: a fresh, uniformly drawn width for every width
//! class of the seed network (from the widths each class may take), every other
//! number following; judged like any proposal.

use super::{Attempt, Context, Outcome, Proposal, Proposer, Rejection, Round, Verdict};
use nas_dsl::mutate::{SeedRng, seed_rng};
use rand::RngExt;
use std::time::Instant;

/// Draws random width assignments over the seed's width classes.
pub struct RandomProposer {
    rng: SeedRng,
}

impl RandomProposer {
    /// A proposer with a seeded generator.
    pub fn new(seed: u64) -> RandomProposer {
        RandomProposer {
            rng: seed_rng(seed),
        }
    }
}

impl Proposer for RandomProposer {
    fn name(&self) -> &'static str {
        "random"
    }

    async fn propose(&mut self, ctx: &Context) -> Proposal {
        let start = Instant::now();
        let seed = ctx.seed();
        let widths: Vec<u64> = seed
            .classes()
            .classes()
            .iter()
            .map(|c| {
                let grid = c.grid(&ctx.widths);
                if grid.count == 0 {
                    c.width
                } else {
                    grid.nth(self.rng.random_range(0..grid.count))
                }
            })
            .collect();
        let verdict = match seed.classes().apply(seed.net().net(), &widths) {
            Ok(net) => match nas_dsl::check(&net) {
                Ok(checked) => ctx.judge_net(checked, None),
                // The width classes guarantee consistency; a failure is a bug, and
                // is recorded as such rather than skipped.
                Err(errors) => Verdict::Rejected(Rejection {
                    outcome: Outcome::ShapeError,
                    source: Some(nas_dsl::print(&net)),
                    diagnostics: format!(
                        "error: random widths failed the checker (a bug): {errors}"
                    ),
                }),
            },
            Err(e) => Verdict::Rejected(Rejection {
                outcome: Outcome::ShapeError,
                source: None,
                diagnostics: format!("error: {e}"),
            }),
        };
        let raw = match &verdict {
            Verdict::Accepted { source, .. } => source.clone(),
            Verdict::Rejected(r) => r.source.clone().unwrap_or_default(),
        };
        let arch = match &verdict {
            Verdict::Accepted { arch, .. } => Some(arch.clone()),
            Verdict::Rejected(_) => None,
        };
        let note = format!("widths {widths:?}");
        let mut attempt = Attempt::judged(Round::Initial, raw, verdict);
        attempt.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        Proposal::single(attempt, arch, Some(seed.hash().to_string()), Some(note))
    }
}
