//! Releasing held mail (by link, by reply, or by the owner) and deleting
//! it. Each message is delivered exactly once: rows are claimed before
//! delivery, and the Maildir name is the one a direct delivery would have
//! had, so a retry after a crash sees its own file.

use super::{Quarantine, QuarantineError};
use crate::challenge::templates::TemplateName;
use crate::clock::Timestamp;
use crate::delivery::{LocalCopy, unique_name};
use crate::mainlog::{Rcpt, Via};
use crate::policy::facts::MessageFacts;
use crate::policy::rules::{ListKind, SenderRule};
use crate::store::activity::NewEvent;
use crate::store::column::text_enum;
use crate::store::deleted::ActedBy;
use crate::store::held::{self, ActivityAction, HeldSummary};
use crate::store::lists::{RuleAdded, RuleSource};
use std::sync::Arc;

text_enum! {
    /// What released held mail. Shown in the main log (`R=quarantine
    /// T=maildir (link)`) and in the activity log (`released`, `allowed`).
    pub enum ReleasedBy("release cause") {
        /// The sender confirmed on the verification page.
        Link = "link",
        /// The sender replied to the challenge.
        Reply = "reply",
        /// The mailbox's owner, through the admin CLI.
        Owner = "owner",
        /// The sweeper, finishing a release that died midway.
        Resumed = "resumed",
    }
}

/// Most held messages one release delivers in one batch.
pub const RELEASE_BATCH: usize = 64;
/// Most bytes of held mail one release batch reads into memory (a
/// message larger than this goes in a batch of its own).
pub const RELEASE_BATCH_BYTES: i64 = 32 << 20;

impl Quarantine {
    /// The most rules one sender list of a mailbox may hold
    /// (`challenge.max_rules_per_list`), as `boxtrap list` and whitelisting
    /// by association keep to it.
    pub fn max_rules_per_list(&self) -> usize {
        usize::try_from(self.config.max_rules_per_list).unwrap_or(usize::MAX)
    }

    /// How long deleted held mail can be restored before the sweeper
    /// purges it (`challenge.keep_deleted`).
    pub fn keep_deleted(&self) -> std::time::Duration {
        self.config.keep_deleted.0
    }

    /// Releases everything held from `sender` for the mailbox and allows
    /// the sender. Safe to call twice at once: each message is claimed by
    /// one caller. Returns how many messages this call delivered.
    pub async fn release_sender(
        &self,
        mailbox_id: i64,
        sender: &str,
        how: ReleasedBy,
    ) -> Result<usize, QuarantineError> {
        let now = self.clock.now();
        let owned_sender = sender.to_owned();
        // The sender's own answer also releases the copies other mailboxes
        // held under this mailbox's challenge (one message to an alias is
        // challenged once); an owner's release is this mailbox's alone.
        let linked = matches!(how, ReleasedBy::Link | ReleasedBy::Reply);
        let claimed = self
            .store
            .write(move |conn| {
                let sender = owned_sender.clone();
                Box::pin(async move {
                    held::claim_answered(conn, mailbox_id, &sender, now, linked).await
                })
            })
            .await?;
        let mut mailboxes: Vec<i64> = vec![mailbox_id];
        for (_, m) in &claimed {
            if !mailboxes.contains(m) {
                mailboxes.push(*m);
            }
        }
        let rule = SenderRule::exact_sender(sender);
        let source = RuleSource::Release(how.to_string());
        let limit = self.max_rules_per_list();
        for m in mailboxes {
            let detail = match self
                .store
                .add_rule_within(m, ListKind::Allow, &rule, limit, &source, now)
                .await?
            {
                RuleAdded::Added => format!("added to the allow list ({how})"),
                RuleAdded::AlreadyThere => continue,
                // The mail is released all the same; the owner is told why
                // the sender will be held again.
                RuleAdded::ListFull { rules, limit } => format!(
                    "not added to the allow list ({how}): it is full ({rules} of {limit} rules)"
                ),
            };
            self.store
                .log_activity(m, now, ActivityAction::Allowed, sender, &detail)
                .await?;
        }
        let ids: Vec<i64> = claimed.iter().map(|(id, _)| *id).collect();
        let mut delivered = 0;
        let released = self.deliver_claimed(&ids, how).await?;
        delivered += released.len();
        let first = released.into_iter().next();
        let s = self.store.mailbox_settings(mailbox_id).await?;
        if let Some(first) = first
            && s.notify_released
            && how != ReleasedBy::Owner
        {
            // The notice quotes and threads under the first message
            // released, and speaks as the address it was sent to.
            let mailed = first.original_rcpt.clone();
            let facts = MessageFacts {
                subject: first.subject,
                from_name: Some(first.sender_name).filter(|n| !n.is_empty()),
                message_id: Some(first.message_id).filter(|id| !id.is_empty()),
                date: Some(first.date_header).filter(|d| !d.is_empty()),
                ..MessageFacts::default()
            };
            self.challenges
                .queue_notice(
                    &s,
                    &mailed,
                    TemplateName::VerifyReleased,
                    sender,
                    &facts,
                    Some(delivered as i64),
                    &self.caps,
                    now,
                )
                .await?;
        }
        Ok(delivered)
    }

    /// Releases one held message (the owner's choice), without allowing its sender.
    pub async fn release_one(&self, id: i64) -> Result<bool, QuarantineError> {
        if !self.store.claim_held(id, self.clock.now()).await? {
            return Ok(false);
        }
        Ok(!self
            .deliver_claimed(&[id], ReleasedBy::Owner)
            .await?
            .is_empty())
    }

    /// Releases those of `ids` that are still held (the owner's choice),
    /// without allowing their senders: claimed in one write, delivered in
    /// batches. Returns how many were delivered.
    pub async fn release_many(&self, ids: &[i64]) -> Result<usize, QuarantineError> {
        let claimed = self.store.claim_held_many(ids, self.clock.now()).await?;
        Ok(self
            .deliver_claimed(&claimed, ReleasedBy::Owner)
            .await?
            .len())
    }

    /// Delivers held messages this caller has just claimed (so no earlier
    /// attempt can have written them) into their Maildirs, in batches of
    /// at most [`RELEASE_BATCH`] messages and [`RELEASE_BATCH_BYTES`]
    /// bytes: each batch is read in two queries, its fsyncs run side by
    /// side, and it is forgotten with its activity lines in one write.
    /// A message whose delivery fails stays claimed, and the sweeper tries
    /// again. Returns those delivered, in id order.
    pub(super) async fn deliver_claimed(
        &self,
        ids: &[i64],
        how: ReleasedBy,
    ) -> Result<Vec<HeldSummary>, QuarantineError> {
        let mut out = Vec::with_capacity(ids.len());
        let all = self.store.held_many(ids).await?;
        let mut rest = all.as_slice();
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len()
                && n < RELEASE_BATCH
                && (n == 0 || bytes + rest[n].size <= RELEASE_BATCH_BYTES)
            {
                bytes += rest[n].size;
                n += 1;
            }
            let (batch, later) = rest.split_at(n);
            rest = later;
            out.extend(self.deliver_batch(batch, how).await?);
        }
        Ok(out)
    }

    async fn deliver_batch(
        &self,
        batch: &[HeldSummary],
        how: ReleasedBy,
    ) -> Result<Vec<HeldSummary>, QuarantineError> {
        let ids: Vec<i64> = batch.iter().map(|h| h.id).collect();
        let mut data: std::collections::HashMap<i64, Vec<u8>> =
            self.store.held_data_many(&ids).await?.into_iter().collect();
        let mut held = Vec::with_capacity(batch.len());
        let mut copies = Vec::with_capacity(batch.len());
        for h in batch {
            let Some(body) = data.remove(&h.id) else {
                continue;
            };
            copies.push(LocalCopy {
                sender: h.env_sender.clone(),
                mailbox: h.mailbox.clone(),
                unique: unique_name(&h.queue_id, h.rcpt_index as usize),
                arrival_secs: h.arrived_at.secs(),
                data: Arc::new(with_release_trace(h, how, self.clock.now(), &body)),
            });
            held.push(h);
        }
        let results = self.delivery.deliver_fresh(copies).await;
        let mut done = Vec::with_capacity(held.len());
        for (h, result) in held.into_iter().zip(results) {
            match result {
                Ok(()) => done.push((h, format!("{} ({how})", h.subject))),
                Err(e) => {
                    // Stays claimed; the sweeper tries again.
                    tracing::warn!(held = h.id, error = %e, "release delivery failed");
                    let rcpt = Rcpt::new(&h.mailbox, &h.original_rcpt);
                    self.log.deferred(&h.queue_id, rcpt, Via::RELEASE, &e);
                }
            }
        }
        self.store.finish_releases(&done, self.clock.now()).await?;
        for (h, _) in &done {
            let rcpt = Rcpt::new(&h.mailbox, &h.original_rcpt);
            self.log
                .delivered(&h.queue_id, rcpt, Via::RELEASE, Some(how.as_str()));
        }
        Ok(done.into_iter().map(|(h, _)| h.clone()).collect())
    }

    /// Delivers a claimed held message into its Maildir exactly once (it
    /// may have been written before the process died: the sweeper's
    /// resumed releases), then forgets it. Returns what was delivered; `None` when the message is
    /// gone or its delivery must be tried again.
    pub(super) async fn deliver_held(
        &self,
        id: i64,
        how: ReleasedBy,
    ) -> Result<Option<HeldSummary>, QuarantineError> {
        let Some(h) = self.store.held(id).await? else {
            return Ok(None);
        };
        let Some(data) = self.store.held_data(id).await? else {
            return Ok(None);
        };
        let result = self
            .delivery
            .deliver_once(LocalCopy {
                sender: h.env_sender.clone(),
                mailbox: h.mailbox.clone(),
                unique: unique_name(&h.queue_id, h.rcpt_index as usize),
                arrival_secs: h.arrived_at.secs(),
                data: Arc::new(with_release_trace(&h, how, self.clock.now(), &data)),
            })
            .await;
        let rcpt = Rcpt::new(&h.mailbox, &h.original_rcpt);
        if let Err(e) = result {
            // Stays claimed; the sweeper tries again.
            tracing::warn!(held = id, error = %e, "release delivery failed");
            self.log.deferred(&h.queue_id, rcpt, Via::RELEASE, &e);
            return Ok(None);
        }
        let detail = format!("{} ({how})", h.subject);
        self.store
            .finish_releases(&[(&h, detail)], self.clock.now())
            .await?;
        self.log
            .delivered(&h.queue_id, rcpt, Via::RELEASE, Some(how.as_str()));
        Ok(Some(h))
    }

    /// Deletes one held message (the owner's choice, or an admin's for
    /// the owner): softly, so it can be restored until the sweeper purges
    /// it. `false` when it is not held (gone, being released, deleted).
    pub async fn delete_one(&self, id: i64) -> Result<bool, QuarantineError> {
        let Some(h) = self.store.held(id).await? else {
            return Ok(false);
        };
        let gone = self
            .delete_held(h.mailbox_id, &[id], self.clock.now(), ActedBy::default())
            .await?;
        Ok(!gone.is_empty())
    }

    /// Deletes the mailbox's held messages `ids` softly at `now` (those
    /// still held): the activity log and the main log's `**` line say so
    /// for each. Returns those deleted.
    pub(super) async fn delete_held(
        &self,
        mailbox_id: i64,
        ids: &[i64],
        now: Timestamp,
        by: ActedBy<'_>,
    ) -> Result<Vec<HeldSummary>, QuarantineError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let gone = self.store.delete_held(mailbox_id, ids, now, by).await?;
        for h in &gone {
            self.log.failed(
                &h.queue_id,
                Rcpt::new(&h.mailbox, &h.original_rcpt),
                Via::QUARANTINE,
                &"deleted by the owner",
            );
        }
        Ok(gone)
    }

    /// A held message is gone without delivery (deleted, expired): the
    /// activity log and the main log's `**` line say so.
    pub(super) async fn removed(
        &self,
        h: &HeldSummary,
        action: ActivityAction,
        why: &str,
    ) -> Result<(), QuarantineError> {
        self.store
            .log_event(&NewEvent {
                held_id: Some(h.id),
                ..NewEvent::new(
                    h.mailbox_id,
                    self.clock.now(),
                    action,
                    &h.sender,
                    &h.subject,
                )
            })
            .await?;
        self.log.failed(
            &h.queue_id,
            Rcpt::new(&h.mailbox, &h.original_rcpt),
            Via::QUARANTINE,
            &why,
        );
        Ok(())
    }
}

/// The held message's bytes as stored, under a trace header of the
/// release (`X-Boxtrap-Released: by owner; held <time> (<reason>);
/// released <time>`, RFC 5322 dates), so the owner's mail client shows
/// that and why it was held. The stored bytes are not touched.
fn with_release_trace(h: &HeldSummary, how: ReleasedBy, now: Timestamp, data: &[u8]) -> Vec<u8> {
    let trace = format!(
        "X-Boxtrap-Released: by {how}; held {} ({});\r\n\treleased {}\r\n",
        h.arrived_at.rfc5322(),
        h.reason,
        now.rfc5322()
    );
    let mut out = Vec::with_capacity(trace.len() + data.len());
    out.extend_from_slice(trace.as_bytes());
    out.extend_from_slice(data);
    out
}
