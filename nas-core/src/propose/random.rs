//! The random-search baseline: a fresh, uniformly drawn width for every width
//! class of the seed network (from the widths each class may take), every other
//! number following; judged like any proposal. An assignment already produced
//! is drawn again (sampling without replacement, up to [`DRAWS`] draws).

use super::mutate::{DRAWS, redrawn_note};
use super::{Attempt, Context, Outcome, Proposal, Proposer, Round, Verdict};
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
        // Draws again while the assignment is a network already produced (up
        // to DRAWS times): random search samples without replacement.
        let mut redrawn = 0;
        let (verdict, widths) = loop {
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
            let verdict = ctx.judge_widths(seed, &widths);
            match &verdict {
                Verdict::Rejected(r) if r.outcome == Outcome::Duplicate && redrawn + 1 < DRAWS => {
                    redrawn += 1;
                }
                _ => break (verdict, widths),
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
        let note = redrawn_note(format!("widths {widths:?}"), redrawn);
        let mut attempt = Attempt::judged(Round::Initial, raw, verdict);
        attempt.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        Proposal::single(attempt, arch, Some(seed.hash().to_string()), Some(note))
    }
}
