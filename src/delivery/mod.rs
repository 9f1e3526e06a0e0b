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

use crate::clock::Clock;
use crate::envelope::Envelope;
use crate::mainlog::{MainLog, Rcpt, Via};
use crate::retry::RetryPolicy;
use crate::store::queue::{NewQueuedMessage, NewQueuedRecipient, QueuedDelivery};
use crate::store::{Store, StoreError};
use maildir::{MaildirMessage, Maildirs};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Delivers accepted messages into Maildirs and retries deferred ones.
pub struct Delivery {
    maildirs: Arc<Maildirs>,
    store: Store,
    log: MainLog,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

/// The stable Maildir name part of a message's copy for one recipient: a
/// retry (or a release of a held copy) finds its own earlier file by it.
pub fn unique_name(queue_id: &str, rcpt_index: usize) -> String {
    format!("{queue_id}_{rcpt_index}")
}

/// One copy of a message for one mailbox, owned, so it can be written on
/// the blocking pool.
#[derive(Debug, Clone)]
pub struct LocalCopy {
    /// Envelope sender for `Return-Path`; empty for `<>`.
    pub sender: String,
    pub mailbox: String,
    /// From [`unique_name`].
    pub unique: String,
    /// When the message arrived (seconds), the first part of the file name.
    pub arrival_secs: i64,
    pub data: Arc<Vec<u8>>,
}

/// What became of the recipients [`Delivery::deliver_new`] was given:
/// `(recipient index, Ok, or the error that queued it for a retry)`.
#[derive(Debug)]
pub struct Delivered {
    pub results: Vec<(usize, std::io::Result<()>)>,
}

impl Delivered {
    /// Whether every copy reached its Maildir now.
    pub fn all_done(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }
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

    /// Delivers a message just received to the recipients of `env` at the
    /// indices in `to`. `Ok` means each of them has it, in their Maildir or
    /// durably queued for a retry: the client may be told 250. `Err` means
    /// nothing is stored for the recipients that were not delivered, and
    /// the client must be told to try again. Logs nothing: the caller logs
    /// the arrival first, then [`Delivery::log`].
    pub async fn deliver_new(
        &self,
        env: &Envelope,
        data: Arc<Vec<u8>>,
        to: &[usize],
    ) -> Result<Delivered, StoreError> {
        let results = {
            let maildirs = self.maildirs.clone();
            let data = data.clone();
            let sender = env.sender_str();
            let jobs: Vec<(usize, String, String)> = to
                .iter()
                .map(|&i| {
                    let r = &env.recipients[i];
                    (i, r.mailbox.address.clone(), unique_name(&env.queue_id, i))
                })
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
                        (*i, r.map(|_| ()))
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
        Ok(Delivered { results })
    }

    /// The main-log lines for what [`Delivery::deliver_new`] did.
    pub fn log(&self, env: &Envelope, delivered: &Delivered) {
        for (i, result) in &delivered.results {
            let r = &env.recipients[*i];
            let rcpt = Rcpt::new(&r.mailbox.address, &r.original);
            match result {
                Ok(()) => self.log.delivered(&env.queue_id, rcpt, Via::LOCAL, None),
                Err(e) => {
                    tracing::warn!(queue_id = %env.queue_id, mailbox = %r.mailbox.address, error = %e, "delivery deferred");
                    self.log.deferred(&env.queue_id, rcpt, Via::LOCAL, e);
                }
            }
        }
    }

    /// Writes one copy into its Maildir unless an earlier attempt already
    /// did (a crash between the rename and the database's record of it).
    /// Serves the retry worker and releases from the quarantine alike.
    pub async fn deliver_once(&self, copy: LocalCopy) -> std::io::Result<()> {
        let maildirs = self.maildirs.clone();
        tokio::task::spawn_blocking(move || {
            let m = MaildirMessage {
                sender: &copy.sender,
                mailbox: &copy.mailbox,
                unique: &copy.unique,
                arrival_secs: copy.arrival_secs,
                data: &copy.data,
            };
            if maildirs.already_delivered(&m)? {
                return Ok(());
            }
            maildirs.deliver(&m).map(|_| ())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Writes copies that no earlier attempt can have written (their claim
    /// is this caller's first: a release of mail still held) into their
    /// Maildirs, with their fsyncs side by side
    /// ([`Maildirs::deliver_all`]). Returns each copy's result, in order.
    pub async fn deliver_fresh(&self, copies: Vec<LocalCopy>) -> Vec<std::io::Result<()>> {
        let maildirs = self.maildirs.clone();
        let n = copies.len();
        tokio::task::spawn_blocking(move || {
            let ms: Vec<MaildirMessage<'_>> = copies
                .iter()
                .map(|c| MaildirMessage {
                    sender: &c.sender,
                    mailbox: &c.mailbox,
                    unique: &c.unique,
                    arrival_secs: c.arrival_secs,
                    data: &c.data,
                })
                .collect();
            maildirs
                .deliver_all(&ms)
                .into_iter()
                .map(|r| r.map(|_| ()))
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            (0..n)
                .map(|_| Err(std::io::Error::other(e.to_string())))
                .collect()
        })
    }

    /// One pass of the retry worker: attempts every delivery that is due.
    /// Returns how many deliveries were attempted.
    pub async fn run_queue_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        // A lease, so another node's worker leaves these alone.
        let due = self
            .store
            .claim_due_deliveries(now, now.plus_secs(600), 200)
            .await?;
        let mut data_cache: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
        let mut attempted = 0;
        for d in due {
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
        self.deliver_once(LocalCopy {
            sender: d.sender.clone(),
            mailbox: d.mailbox.clone(),
            unique: unique_name(&d.queue_id, d.rcpt_index as usize),
            arrival_secs: d.arrived_at.secs(),
            data,
        })
        .await
    }

    async fn record_retry(
        &self,
        d: &QueuedDelivery,
        result: std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let rcpt = Rcpt::new(&d.mailbox, &d.original);
        match result {
            Ok(()) => {
                self.log.delivered(&d.queue_id, rcpt, Via::LOCAL, None);
                if self.store.delivery_done(d.id, &d.queue_id).await? {
                    self.log.completed(&d.queue_id);
                }
            }
            Err(e) => {
                let age = Duration::from_micros((now.0 - d.arrived_at.0).max(0) as u64);
                if age >= self.retry.give_up_after {
                    let msg = format!("retry time exceeded: {e}");
                    self.log.failed(&d.queue_id, rcpt, Via::LOCAL, &msg);
                    self.store.delivery_failed(d.id, &msg).await?;
                } else {
                    let wait = self.retry.backoff(d.attempts + 1);
                    self.log.deferred(&d.queue_id, rcpt, Via::LOCAL, &e);
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
