//! A proposal asked for in the background: the proposer moves to a thread of its
//! own, which drives its requests on the search's runtime while the search trains
//! the previous trial, and comes back with the proposal when it is joined.

use super::{Context, Proposal, Proposer};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A proposal in flight.
pub struct Ahead<P> {
    handle: JoinHandle<(P, Proposal, f64)>,
}

/// What a proposal thread gives back: the proposer, the proposal, and its wall
/// time in milliseconds.
pub type Landed<P> = (P, Proposal, f64);

impl<P: Proposer + Send + 'static> Ahead<P> {
    /// Starts `proposer` on `ctx` in a new thread; `ctx` is what the search knew
    /// when it asked.
    pub fn spawn(
        mut proposer: P,
        ctx: Context,
        rt: Arc<tokio::runtime::Runtime>,
    ) -> std::io::Result<Ahead<P>> {
        let handle = std::thread::Builder::new()
            .name("propose".into())
            .spawn(move || {
                let started = Instant::now();
                let proposal = rt.block_on(proposer.propose(&ctx));
                let ms = started.elapsed().as_secs_f64() * 1e3;
                (proposer, proposal, ms)
            })?;
        Ok(Ahead { handle })
    }

    /// Whether the proposal is ready (joining will not wait).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the proposal. `None` if the proposer panicked (a bug: the
    /// proposer is gone with it).
    pub fn join(self) -> Option<Landed<P>> {
        self.handle.join().ok()
    }
}
