//! Local delivery: the transport side of a message's life (Exim's
//! transports). A message accepted by the SMTP receiver is written into each
//! recipient's Maildir before the client hears 250; a recipient whose
//! delivery fails temporarily is queued in the database (also before the
//! 250) and retried by [`Delivery::run_queue_once`] with exponential backoff.
//!
//! Exactly once: a queued retry checks the Maildir for its own stable file
//! name before writing, so a crash between the rename and the database
//! update never produces a second copy.

pub mod maildir;
pub mod router;

use crate::address::EmailAddress;
use crate::clock::{Clock, Timestamp};
use crate::config::DeliveryConfig;
use crate::mainlog::MainLog;
use crate::quarantine::Outcome;
use crate::store::mailboxes::MailboxRef;
use crate::store::queue::{NewQueuedMessage, NewQueuedRecipient, QueuedDelivery};
use crate::store::{Store, StoreError};
use maildir::{MaildirMessage, Maildirs};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Who handed us a message, for the main log's `<=` line.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub helo: String,
    pub addr: SocketAddr,
    /// `esmtp`, `smtp`, `utf8esmtp`, … as in Exim's `P=`.
    pub protocol: &'static str,
}

/// One final recipient of a message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub mailbox: MailboxRef,
    /// Challenge-response is on for the mailbox (as of RCPT time).
    pub challenge: bool,
    /// The address as the client gave it in RCPT TO.
    pub original: String,
}

/// A message's envelope once the SMTP transaction has it complete.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub queue_id: String,
    /// `None` is the null sender `<>`.
    pub sender: Option<EmailAddress>,
    /// Final recipients, one per mailbox.
    pub recipients: Vec<Recipient>,
    pub arrived: Timestamp,
    pub client: ClientInfo,
}

impl Envelope {
    fn sender_str(&self) -> String {
        self.sender
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}

/// How retries are spaced.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(c: &DeliveryConfig) -> Self {
        RetryPolicy {
            first: c.retry_interval.0,
            max: c.retry_max_interval.0,
            give_up_after: c.retry_for.0,
        }
    }
}

impl From<&crate::config::OutboundConfig> for RetryPolicy {
    fn from(c: &crate::config::OutboundConfig) -> Self {
        RetryPolicy {
            first: c.retry_interval.0,
            max: c.retry_max_interval.0,
            give_up_after: c.retry_for.0,
        }
    }
}

impl RetryPolicy {
    /// Wait before the attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let shift = attempts.clamp(1, 30) as u32 - 1;
        self.first.saturating_mul(1u32 << shift).min(self.max)
    }
}

/// Delivers accepted messages into Maildirs and retries deferred ones.
pub struct Delivery {
    maildirs: Arc<Maildirs>,
    store: Store,
    log: MainLog,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

fn unique(queue_id: &str, rcpt_index: usize) -> String {
    format!("{queue_id}_{rcpt_index}")
}

/// The header value of `Message-ID`, for the log's `id=`.
fn message_id(data: &[u8]) -> Option<String> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..end]);
    head.split("\r\n")
        .find(|l| {
            l.get(..11)
                .is_some_and(|k| k.eq_ignore_ascii_case("message-id:"))
        })
        .map(|l| l[11..].trim().to_owned())
}

impl Delivery {
    pub fn new(
        maildirs: Arc<Maildirs>,
        store: Store,
        log: MainLog,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Delivery {
        Delivery {
            maildirs,
            store,
            log,
            clock,
            retry,
        }
    }

    /// Delivers a message just received. `Ok` means every recipient has it,
    /// in their Maildir or durably queued for a retry: the client may be
    /// told 250. `Err` means nothing is stored for the recipients that were
    /// not delivered, and the client must be told to try again.
    ///
    /// `outcomes` (one per recipient) says what the quarantine did with each
    /// recipient; only those marked `Deliver` go into their Maildir here.
    pub async fn deliver_new(
        &self,
        env: &Envelope,
        data: Vec<u8>,
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        let data = Arc::new(data);
        let results = {
            let maildirs = self.maildirs.clone();
            let data = data.clone();
            let sender = env.sender_str();
            let jobs: Vec<(usize, String, String)> = env
                .recipients
                .iter()
                .enumerate()
                .filter(|(i, _)| matches!(outcomes.get(*i), None | Some(Outcome::Deliver)))
                .map(|(i, r)| (i, r.mailbox.address.clone(), unique(&env.queue_id, i)))
                .collect();
            let arrival_secs = env.arrived.secs();
            tokio::task::spawn_blocking(move || {
                jobs.iter()
                    .map(|(i, mailbox, unique)| {
                        let r = maildirs.deliver(&MaildirMessage {
                            sender: &sender,
                            mailbox,
                            unique,
                            arrival_secs,
                            data: &data,
                        });
                        (*i, r)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
        };

        let now = self.clock.now();
        let next = now.plus_secs(self.retry.first.as_secs() as i64);
        let deferred: Vec<NewQueuedRecipient> = results
            .iter()
            .filter_map(|(i, r)| {
                r.as_ref().err().map(|e| NewQueuedRecipient {
                    rcpt_index: *i as i64,
                    mailbox_id: env.recipients[*i].mailbox.id,
                    original: env.recipients[*i].original.clone(),
                    next_attempt_at: next,
                    last_error: e.to_string(),
                })
            })
            .collect();
        if !deferred.is_empty() {
            let sender = env.sender_str();
            self.store
                .enqueue(&NewQueuedMessage {
                    queue_id: &env.queue_id,
                    sender: &sender,
                    arrived_at: env.arrived,
                    data: &data,
                    recipients: deferred,
                })
                .await?;
        }

        let c = &env.client;
        let id = message_id(&data)
            .map(|id| format!(" id={id}"))
            .unwrap_or_default();
        self.log.main(&format!(
            "{} <= {} H=({}) [{}]:{} P={} S={}{}",
            env.queue_id,
            if env.sender.is_some() {
                env.sender_str()
            } else {
                "<>".into()
            },
            c.helo,
            c.addr.ip(),
            c.addr.port(),
            c.protocol,
            data.len(),
            id
        ));
        for (i, r) in env.recipients.iter().enumerate() {
            let result = match outcomes.get(i) {
                Some(Outcome::Held(why)) => {
                    self.log.main(&format!(
                        "{} => :quarantine: {} <{}> R=quarantine ({why})",
                        env.queue_id, r.mailbox.address, r.original
                    ));
                    continue;
                }
                Some(Outcome::Dropped(why)) | Some(Outcome::Reject(why)) => {
                    self.log.main(&format!(
                        "{} => :blackhole: {} <{}> R=quarantine ({why})",
                        env.queue_id, r.mailbox.address, r.original
                    ));
                    continue;
                }
                None | Some(Outcome::Deliver) => match results.iter().find(|(j, _)| *j == i) {
                    Some((_, r)) => r,
                    None => continue,
                },
            };
            match result {
                Ok(_) => self.log.main(&format!(
                    "{} => {} <{}> R=local T=maildir",
                    env.queue_id, r.mailbox.address, r.original
                )),
                Err(e) => {
                    tracing::warn!(queue_id = %env.queue_id, mailbox = %r.mailbox.address, error = %e, "delivery deferred");
                    self.log.main(&format!(
                        "{} == {} <{}> R=local T=maildir defer: {e}",
                        env.queue_id, r.mailbox.address, r.original
                    ))
                }
            }
        }
        if results.iter().all(|(_, r)| r.is_ok()) {
            self.log.main(&format!("{} Completed", env.queue_id));
        }
        Ok(())
    }

    /// One pass of the retry worker: attempts every delivery that is due.
    /// Returns how many deliveries were attempted.
    pub async fn run_queue_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let due = self.store.due_deliveries(now, 200).await?;
        let mut data_cache: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
        let mut attempted = 0;
        for d in due {
            // A lease, so another node's worker leaves this one alone.
            if !self
                .store
                .claim_delivery(d.id, now, now.plus_secs(600))
                .await?
            {
                continue;
            }
            attempted += 1;
            let data = match data_cache.get(&d.queue_id) {
                Some(data) => data.clone(),
                None => {
                    let data = Arc::new(self.store.queued_data(&d.queue_id).await?);
                    data_cache.insert(d.queue_id.clone(), data.clone());
                    data
                }
            };
            let result = self.retry_one(&d, data).await;
            self.record_retry(&d, result).await?;
        }
        Ok(attempted)
    }

    async fn retry_one(&self, d: &QueuedDelivery, data: Arc<Vec<u8>>) -> std::io::Result<()> {
        let maildirs = self.maildirs.clone();
        let (sender, mailbox) = (d.sender.clone(), d.mailbox.clone());
        let unique = unique(&d.queue_id, d.rcpt_index as usize);
        let arrival_secs = d.arrived_at.secs();
        tokio::task::spawn_blocking(move || {
            let m = MaildirMessage {
                sender: &sender,
                mailbox: &mailbox,
                unique: &unique,
                arrival_secs,
                data: &data,
            };
            if maildirs.already_delivered(&m)? {
                return Ok(());
            }
            maildirs.deliver(&m).map(|_| ())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn record_retry(
        &self,
        d: &QueuedDelivery,
        result: std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        match result {
            Ok(()) => {
                self.log.main(&format!(
                    "{} => {} <{}> R=local T=maildir",
                    d.queue_id, d.mailbox, d.original
                ));
                if self.store.delivery_done(d.id, &d.queue_id).await? {
                    self.log.main(&format!("{} Completed", d.queue_id));
                }
            }
            Err(e) => {
                let age = Duration::from_micros((now.0 - d.arrived_at.0).max(0) as u64);
                if age >= self.retry.give_up_after {
                    let msg = format!("retry time exceeded: {e}");
                    self.log.main(&format!(
                        "{} ** {} <{}> R=local T=maildir: {msg}",
                        d.queue_id, d.mailbox, d.original
                    ));
                    self.store.delivery_failed(d.id, &msg).await?;
                } else {
                    let wait = self.retry.backoff(d.attempts + 1);
                    self.log.main(&format!(
                        "{} == {} <{}> R=local T=maildir defer: {e}",
                        d.queue_id, d.mailbox, d.original
                    ));
                    self.store
                        .delivery_deferred(
                            d.id,
                            now.plus_secs(wait.as_secs() as i64),
                            &e.to_string(),
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Runs the retry worker until `shutdown` fires.
    pub async fn run_queue(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.run_queue_once().await {
                tracing::error!(error = %e, "queue run failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = RetryPolicy {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86400),
        };
        assert_eq!(p.backoff(1), Duration::from_secs(60));
        assert_eq!(p.backoff(2), Duration::from_secs(120));
        assert_eq!(p.backoff(4), Duration::from_secs(480));
        assert_eq!(p.backoff(20), Duration::from_secs(3600));
    }

    #[test]
    fn finds_the_message_id_in_the_header_only() {
        assert_eq!(
            message_id(b"Subject: x\r\nMessage-ID: <a@b.test>\r\n\r\nMessage-ID: <no>\r\n")
                .as_deref(),
            Some("<a@b.test>")
        );
        assert_eq!(message_id(b"Subject: x\r\n\r\nMessage-ID: <no>\r\n"), None);
    }
}
