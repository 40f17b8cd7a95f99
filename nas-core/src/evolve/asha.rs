//! Asynchronous successive halving (ASHA; Li et al., "A System for Massively
//! Parallel Hyperparameter Tuning", 2018, Algorithm 2): the promotion rule on
//! its own, independent of training and of the store.
//!
//! Rung `k` trains a trial to `min_epochs · eta^k` epochs; the last rung trains
//! to `max_epochs`. Whenever a worker is free, the highest rung below the top
//! that holds a trial in its top `⌊n / eta⌋` (of its `n` results) not yet
//! promoted gives that trial to the worker, to continue to the next rung;
//! otherwise the worker starts a new trial at rung 0. No rung waits to fill.
//!
//! In a run, each rung a network reaches is one stored trial (a *segment*):
//! rung 0 is the proposal, a promotion is a new pending trial that
//! [`continues`](crate::store::NewTrial::continues) the one it was promoted
//! from, from that trial's checkpoint. [`plan`] reads the stored trials and
//! says which one to promote next and which checkpoints can go; each store
//! applies it in one transaction ([`crate::store::Store::promote`]).
//!
//! Checkpoints: a segment below the top rung that completes keeps one; it is
//! deleted when its continuation ends, or when its trial ranks more than `η`
//! places below its rung's promotion quota (`⌊n/η⌋`). Live checkpoints are
//! therefore at most `η` per rung below the top plus one per segment in flight
//! (and the promotions waiting for a worker). A trial whose checkpoint was
//! deleted and that later enters the quota (the quota grows with `n`) is
//! trained again from its first epoch: the same result (a continued training
//! equals an uninterrupted one), at more cost.

use crate::store::{TrialId, TrialRecord, TrialStatus};
use std::collections::HashSet;

/// The rungs of an ASHA schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asha {
    /// Epochs of the lowest rung (`r`).
    pub min_epochs: u32,
    /// Epochs of the highest rung (`R`).
    pub max_epochs: u32,
    /// The reduction factor (`η`): the top `1/η` of a rung is promoted.
    pub eta: u32,
}

/// What a free worker does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Continue `trial` from rung `from` to rung `from + 1`.
    Promote {
        /// The trial.
        trial: u64,
        /// The rung it finished.
        from: usize,
    },
    /// Start a new trial at rung 0.
    New,
}

/// The finished results of every rung and which trials each rung promoted.
#[derive(Clone, Debug, Default)]
pub struct Rungs {
    results: Vec<Vec<(u64, f64)>>,
    promoted: Vec<HashSet<u64>>,
}

impl Rungs {
    /// Records `trial`'s score (higher is better) at `rung`.
    pub fn record(&mut self, rung: usize, trial: u64, score: f64) {
        if self.results.len() <= rung {
            self.results.resize_with(rung + 1, Vec::new);
        }
        self.results[rung].push((trial, score));
    }

    /// Marks `trial` promoted out of `rung` (it continues at `rung + 1`).
    pub fn promote(&mut self, rung: usize, trial: u64) {
        if self.promoted.len() <= rung {
            self.promoted.resize_with(rung + 1, HashSet::new);
        }
        self.promoted[rung].insert(trial);
    }

    /// The results at `rung`, in the order they finished.
    pub fn at(&self, rung: usize) -> &[(u64, f64)] {
        self.results.get(rung).map_or(&[], Vec::as_slice)
    }

    /// The trials of `rung`, best first (ties: the one that finished first).
    pub fn ranked(&self, rung: usize) -> Vec<u64> {
        let mut ranked: Vec<(usize, &(u64, f64))> = self.at(rung).iter().enumerate().collect();
        ranked.sort_by(|(i, a), (j, b)| b.1.total_cmp(&a.1).then(i.cmp(j)));
        ranked.into_iter().map(|(_, (t, _))| *t).collect()
    }

    fn is_promoted(&self, rung: usize, trial: u64) -> bool {
        self.promoted.get(rung).is_some_and(|p| p.contains(&trial))
    }
}

impl Asha {
    /// A schedule from `min_epochs` to `max_epochs` with reduction factor `eta`.
    pub fn new(min_epochs: u32, max_epochs: u32, eta: u32) -> Result<Asha, String> {
        if min_epochs == 0 {
            return Err("`--min-epochs` must be at least 1".into());
        }
        if max_epochs < min_epochs {
            return Err(format!(
                "`--max-epochs {max_epochs}` is below `--min-epochs {min_epochs}`"
            ));
        }
        if eta < 2 {
            return Err(format!("`--eta {eta}` must be at least 2"));
        }
        Ok(Asha {
            min_epochs,
            max_epochs,
            eta,
        })
    }

    /// The epochs of each rung, lowest first: `r, r·η, r·η², …` below `R`,
    /// then `R`.
    pub fn rungs(&self) -> Vec<u32> {
        let mut rungs = Vec::new();
        let mut epochs = u64::from(self.min_epochs);
        while epochs < u64::from(self.max_epochs) {
            rungs.push(epochs as u32);
            epochs *= u64::from(self.eta);
        }
        rungs.push(self.max_epochs);
        rungs
    }

    /// The next job for a free worker, given the results so far (Algorithm 2's
    /// `get_job`): the best not-yet-promoted trial in the top `⌊n/η⌋` of the
    /// highest rung below the top that has one, else a new trial. Ties in score
    /// go to the trial that finished the rung first.
    pub fn next(&self, rungs: &Rungs) -> Job {
        let top = self.rungs().len() - 1;
        for k in (0..top).rev() {
            let ranked = rungs.ranked(k);
            let quota = ranked.len() / self.eta as usize;
            if let Some(&trial) = ranked
                .iter()
                .take(quota)
                .find(|&&t| !rungs.is_promoted(k, t))
            {
                return Job::Promote { trial, from: k };
            }
        }
        Job::New
    }
}

/// What a store does in one promotion step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The trial to continue at the next rung, and the rung it finished.
    pub promote: Option<(TrialId, usize)>,
    /// Checkpoints no longer needed.
    pub drop: Vec<TrialId>,
}

/// The rung state of a run's search trials: each finished segment's score at
/// its rung (a diverged one counts, at the bottom; a failed one does not) and
/// which segments were promoted (a trial that continues one).
pub fn rungs_of(trials: &[&TrialRecord]) -> Rungs {
    let mut rungs = Rungs::default();
    for t in trials {
        let score = match t.status() {
            TrialStatus::Done => t.accuracy.unwrap_or(f64::NEG_INFINITY),
            TrialStatus::Diverged => f64::NEG_INFINITY,
            _ => continue,
        };
        rungs.record(t.trial.rung as usize, t.id as u64, score);
    }
    for t in trials {
        if let (Some(from), true) = (t.trial.continues, t.trial.rung > 0) {
            rungs.promote(t.trial.rung as usize - 1, from as u64);
        }
    }
    rungs
}

/// The next promotion of a run (its search trials, in recorded order) and the
/// checkpoints (`held`: the trials that have one) it no longer needs.
pub fn plan(asha: &Asha, trials: &[&TrialRecord], held: &[TrialId]) -> Plan {
    let rungs = rungs_of(trials);
    let promote = match asha.next(&rungs) {
        Job::Promote { trial, from } => Some((trial as TrialId, from)),
        Job::New => None,
    };
    let top = asha.rungs().len() - 1;
    let mut drop = Vec::new();
    for &id in held {
        let Some(t) = trials.iter().find(|t| t.id == id) else {
            drop.push(id);
            continue;
        };
        let rung = t.trial.rung as usize;
        // Promoted: its continuation holds what it needs once it ends.
        let continuation = trials.iter().find(|c| c.trial.continues == Some(id));
        let keep = match continuation {
            Some(c) => !c.status().is_final(),
            None if rung >= top || promote.is_some_and(|(p, _)| p == id) => rung < top,
            None => {
                let ranked = rungs.ranked(rung);
                let quota = ranked.len() / asha.eta as usize;
                let rank = ranked.iter().position(|&r| r == id as u64);
                rank.is_some_and(|r| r < quota + asha.eta as usize)
            }
        };
        if !keep {
            drop.push(id);
        }
    }
    Plan { promote, drop }
}

#[cfg(test)]
mod tests {
    use super::{Asha, Job, Rungs, plan};
    use crate::store::{NewTrial, Stage, TrialRecord, TrialStatus};

    fn record(id: i64, rung: u32, epochs: u32, continues: Option<i64>) -> TrialRecord {
        TrialRecord {
            id,
            trial: NewTrial {
                stage: Stage::Search,
                step: id as u64,
                proposer: "mutate".into(),
                status: TrialStatus::Pending,
                name: None,
                source: String::new(),
                hash: format!("h{id}"),
                parent: None,
                outcome: "ok".into(),
                note: None,
                params: None,
                flops: None,
                epochs,
                propose_ms: 0.0,
                error: None,
                rung,
                continues,
            },
            telemetry: serde_json::json!([]),
            accuracy: None,
            top5: None,
            test_loss: None,
            train_s: None,
            runs: 1,
            created_at: 0.0,
            finished_at: None,
        }
    }

    /// A long sequential ASHA run (one worker: each job finishes before the
    /// next is asked for) with checkpoints kept and freed as the stores do:
    /// live checkpoints never exceed η per rung below the top plus the one
    /// promotion in flight, however many trials run; every promotion is of a
    /// trial in its rung's top ⌊n/η⌋ at that moment, and none twice; and
    /// pseudo-random scores reach the top rung.
    #[test]
    fn checkpoints_stay_bounded_over_a_long_run() {
        let asha = Asha::new(1, 27, 3).unwrap_or_else(|e| panic!("{e}"));
        let epochs = asha.rungs();
        let top = epochs.len() - 1;
        let mut trials: Vec<TrialRecord> = Vec::new();
        let mut held: Vec<i64> = Vec::new();
        let mut state = 12345u64;
        let mut score = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut most = 0;
        for _ in 0..400 {
            let refs: Vec<&TrialRecord> = trials.iter().collect();
            let p = plan(&asha, &refs, &held);
            held.retain(|id| !p.drop.contains(id));
            let id = trials.len() as i64 + 1;
            let mut t = match p.promote {
                Some((from, k)) => {
                    let rungs = super::rungs_of(&refs);
                    let ranked = rungs.ranked(k);
                    let quota = ranked.len() / asha.eta as usize;
                    assert!(
                        ranked[..quota].contains(&(from as u64)),
                        "{from} not in the quota"
                    );
                    assert!(!trials.iter().any(|t| t.trial.continues == Some(from)));
                    record(id, k as u32 + 1, epochs[k + 1], Some(from))
                }
                None => record(id, 0, epochs[0], None),
            };
            most = most.max(held.len());
            // It trains: done, a checkpoint below the top, its source's freed.
            t.trial.status = TrialStatus::Done;
            t.accuracy = Some(score());
            if (t.trial.rung as usize) < top {
                held.push(id);
            }
            if let Some(from) = t.trial.continues {
                held.retain(|&h| h != from);
            }
            trials.push(t);
        }
        let bound = top * asha.eta as usize + 1;
        assert!(
            most <= bound,
            "{most} checkpoints held at once, bound {bound}"
        );
        assert!(trials.iter().any(|t| t.trial.rung as usize == top));
    }

    #[test]
    fn rungs_grow_by_eta_and_end_at_the_maximum() {
        let rungs = |r, m, e| Asha::new(r, m, e).map(|a| a.rungs());
        assert_eq!(rungs(1, 9, 3), Ok(vec![1, 3, 9]));
        assert_eq!(rungs(1, 10, 3), Ok(vec![1, 3, 9, 10]));
        assert_eq!(rungs(2, 8, 2), Ok(vec![2, 4, 8]));
        assert_eq!(rungs(1, 1, 4), Ok(vec![1]));
        assert_eq!(rungs(1, 64, 4), Ok(vec![1, 4, 16, 64]));
        assert!(rungs(0, 4, 2).is_err());
        assert!(rungs(4, 2, 2).is_err());
        assert!(rungs(1, 4, 1).is_err());
    }

    /// A hand-worked run of Algorithm 2 with r = 1, R = 9, η = 3 (rungs 1, 3,
    /// 9 epochs). Each step: what finished, then what a free worker gets.
    #[test]
    fn promotion_follows_algorithm_2_on_a_worked_example() {
        let asha = Asha::new(1, 9, 3).unwrap_or_else(|e| panic!("{e}"));
        let mut rungs = Rungs::default();
        let step = |rungs: &mut Rungs, rung: usize, trial: u64, score: f64| {
            rungs.record(rung, trial, score);
            let job = asha.next(rungs);
            if let Job::Promote { trial, from } = job {
                rungs.promote(from, trial);
            }
            job
        };
        // Rung 0 with one or two results: ⌊n/3⌋ = 0, nothing to promote.
        assert_eq!(step(&mut rungs, 0, 1, 0.50), Job::New);
        assert_eq!(step(&mut rungs, 0, 2, 0.70), Job::New);
        // Three results: the best one (trial 2) goes on to 3 epochs.
        assert_eq!(
            step(&mut rungs, 0, 3, 0.60),
            Job::Promote { trial: 2, from: 0 }
        );
        // Trial 2 at rung 1 alone: no quota there; rung 0's top 1 is promoted.
        assert_eq!(step(&mut rungs, 1, 2, 0.80), Job::New);
        // A new best at rung 0 (4 results, quota 1): trial 4 is the top one.
        assert_eq!(
            step(&mut rungs, 0, 4, 0.90),
            Job::Promote { trial: 4, from: 0 }
        );
        assert_eq!(step(&mut rungs, 1, 4, 0.85), Job::New);
        // Six results, quota 2: trials 4 and 2, both promoted already.
        assert_eq!(step(&mut rungs, 0, 5, 0.10), Job::New);
        assert_eq!(step(&mut rungs, 0, 6, 0.20), Job::New);
        // Seven results, quota 2: trials 4 (0.90) and 7 (0.75); 7 goes on. Trial
        // 2, promoted when it was the best, is not taken back.
        assert_eq!(
            step(&mut rungs, 0, 7, 0.75),
            Job::Promote { trial: 7, from: 0 }
        );
        // Rung 1 holds three results (quota 1): its best, trial 7, goes on to
        // the top rung; higher rungs are looked at first.
        assert_eq!(
            step(&mut rungs, 1, 7, 0.95),
            Job::Promote { trial: 7, from: 1 }
        );
        // The top rung never promotes.
        assert_eq!(step(&mut rungs, 2, 7, 0.97), Job::New);
        assert_eq!(rungs.at(2), &[(7, 0.97)]);
    }

    #[test]
    fn equal_scores_go_to_the_trial_that_finished_first() {
        let asha = Asha::new(1, 4, 2).unwrap_or_else(|e| panic!("{e}"));
        let mut rungs = Rungs::default();
        rungs.record(0, 10, 0.5);
        rungs.record(0, 11, 0.5);
        assert_eq!(asha.next(&rungs), Job::Promote { trial: 10, from: 0 });
        rungs.promote(0, 10);
        assert_eq!(asha.next(&rungs), Job::New);
    }
}
