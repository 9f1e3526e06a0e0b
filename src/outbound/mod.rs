//! Outbound mail: challenges and notices leave through a durable queue in
//! the database and one of the [`transport`]s.

pub mod transport;

use crate::clock::Clock;
use crate::config::OutboundConfig;
use crate::mainlog::{MainLog, Rcpt, Via};
use crate::retry::RetryPolicy;
use crate::store::held::OutboundState;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use transport::{SendError, Transport};

/// Sends queued mail with retries and exponential backoff; permanent
/// failures are recorded against the message (and so the held mail it was
/// about).
pub struct Outbound {
    store: Store,
    transport: Arc<Transport>,
    clock: Arc<dyn Clock>,
    log: MainLog,
    retry: RetryPolicy,
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
            store,
            transport,
            clock,
            log,
            retry: RetryPolicy::from(c),
        }
    }

    /// Sends everything that is due; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        // A lease, so another node's worker leaves these alone.
        let due = self
            .store
            .claim_due_outbound(now, now.plus_secs(900), 100)
            .await?;
        let mut attempted = 0;
        for m in due {
            attempted += 1;
            let data = self.store.outbound_data(m.id).await?;
            let env_from = (!m.env_from.is_empty()).then_some(m.env_from.as_str());
            let result = self.transport.send(env_from, &m.rcpt, &data).await;
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
        }
        Ok(attempted)
    }

    /// Runs the worker until shutdown.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::error!(error = %e, "outbound run failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }
}
