//! Outbound mail: challenges and notices leave through a durable queue in
//! the database and one of the [`transport`]s.

pub mod transport;

use crate::clock::Clock;
use crate::config::OutboundConfig;
use crate::mainlog::MainLog;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use transport::{SendError, Transport};

/// Sends queued mail with retries and exponential backoff; permanent
/// failures are recorded against the message (and so the held mail it was
/// about).
pub struct Outbound {
    store: Store,
    transport: Transport,
    clock: Arc<dyn Clock>,
    log: MainLog,
    first_retry: Duration,
    max_retry: Duration,
    give_up_after: Duration,
}

impl Outbound {
    pub fn new(
        store: Store,
        transport: Transport,
        clock: Arc<dyn Clock>,
        log: MainLog,
        c: &OutboundConfig,
    ) -> Outbound {
        Outbound {
            store,
            transport,
            clock,
            log,
            first_retry: c.retry_interval.0,
            max_retry: c.retry_max_interval.0,
            give_up_after: c.retry_for.0,
        }
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let shift = attempts.clamp(1, 30) as u32 - 1;
        self.first_retry
            .saturating_mul(1u32 << shift)
            .min(self.max_retry)
    }

    /// Sends everything that is due; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let due = self.store.due_outbound(now, 100).await?;
        let mut attempted = 0;
        for m in due {
            if !self
                .store
                .claim_outbound(m.id, now, now.plus_secs(900))
                .await?
            {
                continue;
            }
            attempted += 1;
            let data = self.store.outbound_data(m.id).await?;
            let env_from = (!m.env_from.is_empty()).then_some(m.env_from.as_str());
            let result = self.transport.send(env_from, &m.rcpt, &data).await;
            let now = self.clock.now();
            let tag = format!("OB{}", m.id);
            match result {
                Ok(info) => {
                    self.log.main(&format!(
                        "{tag} => {} R={} T={} ({info})",
                        m.rcpt,
                        m.kind,
                        self.transport.describe()
                    ));
                    self.store
                        .outbound_attempted(m.id, "sent", now, "", now)
                        .await?;
                }
                Err(SendError::Permanent(e)) => {
                    self.log.main(&format!(
                        "{tag} ** {} R={} T={}: {e}",
                        m.rcpt,
                        m.kind,
                        self.transport.describe()
                    ));
                    self.store
                        .outbound_attempted(m.id, "failed", now, &e, now)
                        .await?;
                }
                Err(SendError::Temporary(e)) => {
                    let age = Duration::from_micros((now.0 - m.created_at.0).max(0) as u64);
                    if age >= self.give_up_after {
                        let e = format!("retry time exceeded: {e}");
                        self.log.main(&format!(
                            "{tag} ** {} R={} T={}: {e}",
                            m.rcpt,
                            m.kind,
                            self.transport.describe()
                        ));
                        self.store
                            .outbound_attempted(m.id, "failed", now, &e, now)
                            .await?;
                    } else {
                        let next = now.plus_secs(self.backoff(m.attempts + 1).as_secs() as i64);
                        self.log.main(&format!(
                            "{tag} == {} R={} T={} defer: {e}",
                            m.rcpt,
                            m.kind,
                            self.transport.describe()
                        ));
                        self.store
                            .outbound_attempted(m.id, "queued", next, &e, now)
                            .await?;
                    }
                }
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
