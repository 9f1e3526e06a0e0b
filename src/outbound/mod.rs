//! Outbound mail: challenges and notices leave through a durable queue in
//! the database and one of the [`transport`]s.
//!
//! Deliveries run concurrently, up to `outbound.max_concurrent` at once;
//! in "direct" mode never more than one at a time to one recipient domain:
//! a domain whose mail exchangers stall (accept and never greet, answer
//! each command just in time) holds up its own mail only, while everyone
//! else's challenges leave beside it. (Through a smarthost every message
//! goes to the same server, so recipient domains need no turns.) The worker claims a message only
//! when it starts it (see [`Store::claim_outbound`]), so nothing it
//! claimed waits in memory for its domain's turn; a claim is a lease that
//! lapses, so a message whose worker crashed is sent later, and a worker
//! that stops gives back what it had not finished.

pub mod transport;

use crate::clock::{Clock, Timestamp};
use crate::config::OutboundConfig;
use crate::mainlog::{MainLog, Rcpt, Via};
use crate::retry::RetryPolicy;
use crate::store::held::{OutboundRow, OutboundState};
use crate::store::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::{JoinError, JoinSet};
use transport::{SendError, Transport};

/// Sends queued mail with retries and exponential backoff; permanent
/// failures are recorded against the message (and so the held mail it was
/// about).
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    transport: Arc<Transport>,
    clock: Arc<dyn Clock>,
    log: MainLog,
    retry: RetryPolicy,
    /// `outbound.max_concurrent`.
    max_concurrent: usize,
    /// How long a claim lasts: longer than one attempt may take
    /// (`outbound.timeout`), so a claim never lapses while its message is
    /// still being sent.
    lease: Duration,
    /// Whether deliveries take turns per recipient domain: in "direct"
    /// mode, where the domain names the servers connected to.
    per_domain: bool,
    /// What each delivery in progress from this process holds: its
    /// recipient domain (or, without turns, its message); the size is the
    /// number of deliveries in progress.
    busy: Mutex<HashSet<String>>,
    /// Held while picking and claiming, so two callers (the worker and a
    /// `run_once`) never start one domain twice.
    claiming: tokio::sync::Mutex<()>,
    /// How long a stopping worker waits for deliveries in progress.
    stop_grace: Duration,
}

/// How much longer than one attempt a claim lasts: the goodbye after the
/// attempt and the database writes that record it.
const LEASE_MARGIN: Duration = Duration::from_secs(120);

/// Rows read per page when looking for due messages to idle domains.
const PAGE: i64 = 200;

/// How long a stopping worker lets deliveries in progress finish before it
/// drops them and gives their claims back.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A claimed message about to be sent: its domain (or turn) stays busy
/// until this is dropped, whether the delivery finished or was cancelled.
struct Started {
    row: OutboundRow,
    data: Vec<u8>,
    lease_until: Timestamp,
    _busy: Busy,
}

/// One recipient domain (or turn) marked busy; dropping it frees it.
struct Busy {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.inner.busy().remove(&self.key);
    }
}

/// The recipient domain of an outbound message, as the per-domain limit
/// counts it: lower case, without a trailing dot (`[192.0.2.1]` for an
/// address literal).
pub fn destination_domain(rcpt: &str) -> String {
    let domain = rcpt.rsplit_once('@').map_or(rcpt, |(_, d)| d);
    domain.trim_end_matches('.').to_ascii_lowercase()
}

impl Outbound {
    pub fn new(
        store: Store,
        transport: Arc<Transport>,
        clock: Arc<dyn Clock>,
        log: MainLog,
        c: &OutboundConfig,
    ) -> Outbound {
        Outbound {
            inner: Arc::new(Inner {
                store,
                per_domain: matches!(*transport, Transport::Direct(_)),
                transport,
                clock,
                log,
                retry: RetryPolicy::from(c),
                max_concurrent: c.max_concurrent.max(1),
                lease: c.timeout.0 + LEASE_MARGIN,
                busy: Mutex::new(HashSet::new()),
                claiming: tokio::sync::Mutex::new(()),
                stop_grace: STOP_GRACE,
            }),
        }
    }

    /// Shortens the stop grace, for tests.
    #[cfg(test)]
    pub(crate) fn with_stop_grace(mut self, grace: Duration) -> Outbound {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.stop_grace = grace;
        }
        self
    }

    /// Sends everything that is due, as the worker does: up to
    /// `outbound.max_concurrent` at once, in "direct" mode one at a time
    /// per recipient domain (the next message to a domain starts when the
    /// one before it is done). Returns, once every attempt it started has
    /// finished, how many messages it attempted; each is attempted at most
    /// once per call.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let mut tasks = JoinSet::new();
        let mut tried = HashSet::new();
        let mut first_error = None;
        loop {
            if first_error.is_none() {
                match self.inner.claim(&tried).await {
                    Ok(started) => {
                        for s in started {
                            tried.insert(s.row.id);
                            tasks.spawn(self.inner.clone().deliver(s));
                        }
                    }
                    Err(e) => first_error = Some(e),
                }
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            // Everything else that finished meanwhile too, then claim again.
            for done in std::iter::once(done).chain(std::iter::from_fn(|| tasks.try_join_next())) {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => resume_panic(e),
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(tried.len()),
        }
    }

    /// Runs the worker until shutdown: looks for due mail every
    /// `interval` and whenever a delivery finishes. On shutdown, deliveries
    /// in progress get a few seconds to finish; the others are dropped
    /// (their connections closed) and their claims given back, so the next
    /// start sends them at once.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let inner = &self.inner;
        let mut tasks = JoinSet::new();
        // The claim of each delivery in progress, to give back on shutdown.
        let mut claims: HashMap<tokio::task::Id, (i64, Timestamp)> = HashMap::new();
        let none_tried = HashSet::new();
        loop {
            match inner.claim(&none_tried).await {
                Ok(started) => {
                    for s in started {
                        let claim = (s.row.id, s.lease_until);
                        let task = tasks.spawn(inner.clone().deliver(s));
                        claims.insert(task.id(), claim);
                    }
                }
                Err(e) => tracing::error!(error = %e, "outbound run failed"),
            }
            tokio::select! {
                Some(done) = tasks.join_next_with_id() => {
                    finished(&mut claims, done);
                    while let Some(done) = tasks.try_join_next_with_id() {
                        finished(&mut claims, done);
                    }
                }
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
        }
        let grace = tokio::time::sleep(inner.stop_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = tasks.join_next_with_id() => match done {
                    Some(done) => finished(&mut claims, done),
                    None => break,
                },
                _ = &mut grace => break,
            }
        }
        tasks.abort_all();
        while let Some(done) = tasks.join_next_with_id().await {
            finished(&mut claims, done);
        }
        let now = inner.clock.now();
        for (id, lease_until) in claims.into_values() {
            if let Err(e) = inner.store.release_outbound(id, lease_until, now).await {
                tracing::error!(error = %e, id, "cannot give back an outbound claim");
            }
        }
    }
}

/// Bookkeeping for a delivery task that ended: its claim is settled unless
/// it was cancelled (then the claim is given back on shutdown).
fn finished(
    claims: &mut HashMap<tokio::task::Id, (i64, Timestamp)>,
    done: Result<(tokio::task::Id, Result<(), StoreError>), JoinError>,
) {
    match done {
        Ok((id, result)) => {
            claims.remove(&id);
            if let Err(e) = result {
                tracing::error!(error = %e, "outbound delivery could not be recorded");
            }
        }
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            claims.remove(&e.id());
            tracing::error!(error = %e, "outbound delivery task failed");
        }
    }
}

fn resume_panic(e: JoinError) {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
}

impl Inner {
    fn busy(&self) -> MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims what may start now: due messages, oldest first, as many as
    /// there are free places, and in "direct" mode at most one per
    /// recipient domain with nothing in progress; `skip` lists messages not
    /// to take again.
    async fn claim(self: &Arc<Self>, skip: &HashSet<i64>) -> Result<Vec<Started>, StoreError> {
        let _one_at_a_time = self.claiming.lock().await;
        let mut taken = self.busy().clone();
        let free = self.max_concurrent.saturating_sub(taken.len());
        if free == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let mut picked: Vec<(OutboundRow, String)> = Vec::new();
        let mut offset = 0;
        'pages: loop {
            let page = self.store.due_outbound(now, offset, PAGE).await?;
            let full_page = page.len() as i64 == PAGE;
            for row in page {
                let key = if self.per_domain {
                    destination_domain(&row.rcpt)
                } else {
                    format!("#{}", row.id)
                };
                if skip.contains(&row.id) || !taken.insert(key.clone()) {
                    continue;
                }
                picked.push((row, key));
                if picked.len() == free {
                    break 'pages;
                }
            }
            if !full_page {
                break;
            }
            offset += PAGE;
        }
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let lease_until = now.plus_secs(self.lease.as_secs() as i64);
        let ids: Vec<i64> = picked.iter().map(|(row, _)| row.id).collect();
        let claimed: HashSet<i64> = self
            .store
            .claim_outbound(&ids, now, lease_until)
            .await?
            .into_iter()
            .collect();
        let mut started = Vec::new();
        for (row, key) in picked {
            if !claimed.contains(&row.id) {
                // Another node's worker took it meanwhile.
                continue;
            }
            self.busy().insert(key.clone());
            let busy = Busy {
                inner: self.clone(),
                key,
            };
            started.push((row, busy));
        }
        // Read in claim order, so transports that finish at once (the
        // outbox, the recording) see the messages oldest first.
        let mut out = Vec::with_capacity(started.len());
        for (row, busy) in started {
            let data = self.store.outbound_data(row.id).await?;
            out.push(Started {
                row,
                data,
                lease_until,
                _busy: busy,
            });
        }
        Ok(out)
    }

    /// Tries one claimed message and records the outcome.
    async fn deliver(self: Arc<Self>, s: Started) -> Result<(), StoreError> {
        let m = &s.row;
        let env_from = (!m.env_from.is_empty()).then_some(m.env_from.as_str());
        let result = self.transport.send(env_from, &m.rcpt, &s.data).await;
        let now = self.clock.now();
        let tag = format!("OB{}", m.id);
        let t = self.transport.describe();
        let via = Via {
            router: &m.kind,
            transport: Some(&t),
        };
        let rcpt = Rcpt::bare(&m.rcpt);
        let failed_for_good = match result {
            Ok(info) => {
                self.log.delivered(&tag, rcpt, via, Some(&info));
                self.store
                    .outbound_attempted(m.id, OutboundState::Sent, now, "", now)
                    .await?;
                None
            }
            Err(SendError::Permanent(e)) => Some(e),
            Err(SendError::Temporary(e)) => {
                let age = Duration::from_micros((now.0 - m.created_at.0).max(0) as u64);
                if age >= self.retry.give_up_after {
                    Some(format!("retry time exceeded: {e}"))
                } else {
                    let wait = self.retry.backoff(m.attempts + 1);
                    let next = now.plus_secs(wait.as_secs() as i64);
                    self.log.deferred(&tag, rcpt, via, &e);
                    self.store
                        .outbound_attempted(m.id, OutboundState::Queued, next, &e, now)
                        .await?;
                    None
                }
            }
        };
        if let Some(e) = failed_for_good {
            self.log.failed(&tag, rcpt, via, &e);
            self.store
                .outbound_attempted(m.id, OutboundState::Failed, now, &e, now)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_smtp;
#[cfg(test)]
mod tests;
