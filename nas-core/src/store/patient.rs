//! A store that outlives its server's outages: every operation that fails
//! because the server is unreachable (restarting, cut off) reconnects and is
//! tried again, with back-off, for up to a set time; then the error says how long
//! it waited. Each operation is one transaction, so a retried one either happened
//! once or not at all (a write whose commit was lost in transit may find its
//! change already made: a fenced write then reports `false`).

use super::{
    AttemptRecord, Claim, NewTrial, Reaped, Storage, Store, StoreError, TrialId, TrialRecord,
    TrialResult,
};
use crate::evolve::asha::Asha;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A store connection that reconnects through its [`Storage`].
pub struct Patient {
    storage: Storage,
    inner: Mutex<Box<dyn Store>>,
    wait_s: f64,
}

impl Patient {
    /// Wraps an open connection to `storage`; outages are waited out for up to
    /// `wait_s` seconds per operation.
    pub fn new(storage: Storage, inner: Box<dyn Store>, wait_s: f64) -> Patient {
        Patient {
            storage,
            inner: Mutex::new(inner),
            wait_s,
        }
    }

    /// Connects to an existing run's store, waiting up to `wait_s` for an
    /// unreachable server.
    pub fn attach(storage: Storage, wait_s: f64) -> Result<Patient, StoreError> {
        let started = Instant::now();
        let mut delay = 0.2f64;
        loop {
            match storage.attach() {
                Ok(inner) => return Ok(Patient::new(storage, inner, wait_s)),
                Err(e) if Storage::is_transient(&e) => {
                    if started.elapsed().as_secs_f64() > wait_s {
                        return Err(gave_up(&storage, wait_s, &e));
                    }
                    tracing::warn!("store unreachable, retrying in {delay:.1} s: {e}");
                    std::thread::sleep(Duration::from_secs_f64(delay));
                    delay = (delay * 2.0).min(5.0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How long each later operation waits out an outage.
    pub fn set_wait(&mut self, wait_s: f64) {
        self.wait_s = wait_s;
    }

    fn retry<T>(
        &self,
        mut op: impl FnMut(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut delay = 0.2f64;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match op(inner.as_mut()) {
                Ok(v) => return Ok(v),
                Err(e) if Storage::is_transient(&e) => {
                    if started.elapsed().as_secs_f64() > self.wait_s {
                        return Err(gave_up(&self.storage, self.wait_s, &e));
                    }
                    tracing::warn!("store unreachable, retrying in {delay:.1} s: {e}");
                    std::thread::sleep(Duration::from_secs_f64(delay));
                    delay = (delay * 2.0).min(5.0);
                    if let Ok(fresh) = self.storage.attach() {
                        *inner = fresh;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn gave_up(storage: &Storage, wait_s: f64, last: &StoreError) -> StoreError {
    StoreError::Unreachable {
        store: storage.to_string(),
        wait_s,
        last: last.to_string(),
    }
}

impl Store for Patient {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.retry(|s| s.meta(key))
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.retry(|s| s.set_meta(key, value))
    }
    fn record_proposal(
        &mut self,
        attempts: &[AttemptRecord],
        trial: &NewTrial,
    ) -> Result<TrialId, StoreError> {
        self.retry(|s| s.record_proposal(attempts, trial))
    }
    fn start_trial(&mut self, id: TrialId) -> Result<(), StoreError> {
        self.retry(|s| s.start_trial(id))
    }
    fn finish_trial(&mut self, id: TrialId, result: &TrialResult) -> Result<(), StoreError> {
        self.retry(|s| s.finish_trial(id, result))
    }
    fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.retry(|s| s.trials())
    }
    fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError> {
        self.retry(|s| s.attempts())
    }
    fn trial(&self, id: TrialId) -> Result<Option<TrialRecord>, StoreError> {
        self.retry(|s| s.trial(id))
    }
    fn recover(&mut self) -> Result<Vec<Reaped>, StoreError> {
        self.retry(|s| s.recover())
    }
    fn claim(&mut self, worker: &str, lease_s: f64) -> Result<Option<Claim>, StoreError> {
        self.retry(|s| s.claim(worker, lease_s))
    }
    fn heartbeat(&mut self, id: TrialId, attempt: u32, lease_s: f64) -> Result<bool, StoreError> {
        self.retry(|s| s.heartbeat(id, attempt, lease_s))
    }
    fn complete(
        &mut self,
        id: TrialId,
        attempt: u32,
        result: &TrialResult,
    ) -> Result<bool, StoreError> {
        self.retry(|s| s.complete(id, attempt, result))
    }
    fn reap(&mut self) -> Result<Vec<Reaped>, StoreError> {
        self.retry(|s| s.reap())
    }
    fn worker_seen(&mut self, worker: &str, slots: u32, ttl_s: f64) -> Result<(), StoreError> {
        self.retry(|s| s.worker_seen(worker, slots, ttl_s))
    }
    fn live_slots(&self) -> Result<u32, StoreError> {
        self.retry(|s| s.live_slots())
    }
    fn checkpoint(&self, id: TrialId) -> Result<Option<Vec<u8>>, StoreError> {
        self.retry(|s| s.checkpoint(id))
    }
    fn checkpoints(&self) -> Result<Vec<(TrialId, u64)>, StoreError> {
        self.retry(|s| s.checkpoints())
    }
    fn promote(
        &mut self,
        asha: &Asha,
        epochs_left: Option<u64>,
    ) -> Result<Option<TrialId>, StoreError> {
        self.retry(|s| s.promote(asha, epochs_left))
    }
}
