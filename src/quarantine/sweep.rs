//! The sweeper's pass, and the bounds on what the quarantine keeps.
//!
//! Each pass purges held mail past its mailbox's keep-days, closes open
//! challenges past their expiry, finishes releases that died midway (the
//! process was killed), then purges outbound mail, challenges and activity
//! lines past their retention (`[challenge] keep_outbound`,
//! `keep_challenges`, `keep_activity`) and deleted held mail past
//! `keep_deleted` in batches of
//! [`PURGE_BATCH`](crate::store::held::PURGE_BATCH) rows, each a write of
//! its own. Nothing still needed goes: queued outbound mail, open
//! challenges, and challenges held or queued mail refers to.
//!
//! The quarantine quota ([`Quarantine::quarantine_full`]) is checked at RCPT
//! for mailboxes with challenge-response on: at its quota of messages or
//! bytes, new mail is refused for now (452 4.2.2). Each time a quarantine
//! fills up, and each time it has room again, one line goes into the
//! mailbox's activity log. The numbers come from `quarantine_usage`, a row
//! per held message that came or went since the last fold; the sweeper
//! folds each mailbox's rows into one, and so does the check once a busy
//! mailbox has [`FOLD_USAGE_AT`] of them.

use super::release::ReleasedBy;
use super::{Quarantine, QuarantineError};
use crate::clock::Timestamp;
use crate::config::{ByteSize, HumanDuration};
use crate::store::StoreError;
use crate::store::held::{ActivityAction, PURGE_BATCH, QuarantineUse};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// The RCPT check folds a mailbox's `quarantine_usage` rows into one once
/// there are this many, so it stays a sum of a few rows between sweeps
/// however fast mail comes.
pub const FOLD_USAGE_AT: i64 = 64;

/// Mailboxes whose usage rows this process is folding: one fold at a time
/// per mailbox, the other sessions do not wait for it.
static FOLDING: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

/// What one pass of the sweeper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Held messages removed after the mailbox's keep-days.
    pub expired: usize,
    /// Challenges closed unanswered.
    pub challenges_expired: usize,
    /// Releases cut short earlier, now delivered.
    pub releases_finished: usize,
    /// Sent or failed outbound mail purged after `keep_outbound`.
    pub outbound_purged: u64,
    /// Answered or expired challenges purged after `keep_challenges`.
    pub challenges_purged: u64,
    /// Activity lines purged after `keep_activity`.
    pub activity_purged: u64,
    /// Deleted held mail purged after `keep_deleted`: it can no longer be
    /// restored.
    pub deleted_purged: u64,
}

/// A mailbox whose quarantine is at its quota: new mail for it is refused
/// at RCPT (452 4.2.2) until mail is released, deleted or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineFull {
    /// The mailbox's address.
    pub mailbox: String,
    /// Messages held.
    pub messages: i64,
    /// Bytes held.
    pub bytes: i64,
    /// The most messages it may hold (0: no limit).
    pub max_messages: i64,
    /// The most bytes it may hold (0: no limit).
    pub max_bytes: i64,
}

impl fmt::Display for QuarantineFull {
    /// The rejectlog's reason: `quarantine of alice@example.test is full:
    /// 10000 messages, 12345678 bytes (quota 10000 messages, 500M)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = |n: i64, text: String| {
            if n == 0 { "no limit".to_owned() } else { text }
        };
        write!(
            f,
            "quarantine of {} is full: {} messages, {} bytes (quota {}, {})",
            self.mailbox,
            self.messages,
            self.bytes,
            limit(self.max_messages, format!("{} messages", self.max_messages)),
            limit(
                self.max_bytes,
                ByteSize(self.max_bytes.unsigned_abs()).to_string()
            ),
        )
    }
}

impl Quarantine {
    /// One pass of the sweeper.
    pub async fn sweep_once(&self) -> Result<SweepReport, QuarantineError> {
        let now = self.clock.now();
        // Picks up `boxtrap key rotate` (or another node's new key) for signing.
        self.challenges.reload_keys().await?;
        let expired = self.store.expired_held(now).await?;
        for h in &expired {
            if self.store.remove_held(h.id).await? {
                self.removed(
                    h,
                    ActivityAction::Expired,
                    "expired after the mailbox's keep-days",
                )
                .await?;
            }
        }
        let challenges = self.store.expire_challenges(now).await?;
        for c in &challenges {
            self.store
                .log_activity(
                    c.mailbox_id,
                    now,
                    ActivityAction::ChallengeExpired,
                    &c.sender,
                    "no answer in time",
                )
                .await?;
        }
        let stale = self.store.stale_releases(now.plus_secs(-300)).await?;
        let mut finished = 0;
        for id in stale {
            if self.deliver_held(id, ReleasedBy::Resumed).await?.is_some() {
                finished += 1;
            }
        }
        let before = |keep: HumanDuration| {
            let secs = i64::try_from(keep.0.as_secs()).unwrap_or(i64::MAX);
            now.plus_secs(-secs)
        };
        let c = &self.config;
        // Outbound mail first: a challenge it referred to can go in the same pass.
        let outbound_purged = self
            .store
            .purge_outbound(before(c.keep_outbound), PURGE_BATCH)
            .await?;
        let challenges_purged = self
            .store
            .purge_challenges(before(c.keep_challenges), PURGE_BATCH)
            .await?;
        let activity_purged = self
            .store
            .purge_activity(before(c.keep_activity), PURGE_BATCH)
            .await?;
        let deleted_purged = self
            .store
            .purge_deleted(before(c.keep_deleted), PURGE_BATCH)
            .await?;
        for mailbox_id in self.store.scattered_quarantine_usage().await? {
            self.store.compact_quarantine_usage(mailbox_id).await?;
        }
        // Quarantines that filled up and lost mail since (expired here, or
        // deleted or released) have room again, even if no mail comes.
        for u in self.store.full_quarantines().await? {
            self.note_quarantine(&u, now).await?;
        }
        Ok(SweepReport {
            expired: expired.len(),
            challenges_expired: challenges.len(),
            releases_finished: finished,
            outbound_purged,
            challenges_purged,
            activity_purged,
            deleted_purged,
        })
    }

    /// Whether the quarantines of these mailboxes (with challenge-response
    /// on) can take a new message: the first one at its quota, or `None`.
    /// One query, whatever the number of mailboxes. A quarantine seen to
    /// fill up, or to have room again, gets one line in its mailbox's
    /// activity log for each crossing (the owner's digest shows it).
    pub async fn quarantine_full(
        &self,
        mailbox_ids: &[i64],
    ) -> Result<Option<QuarantineFull>, QuarantineError> {
        let now = self.clock.now();
        let mut first = None;
        for u in self.store.quarantine_use(mailbox_ids).await? {
            let full = self.note_quarantine(&u, now).await?;
            if first.is_none() {
                first = full;
            }
            if u.usage_rows >= FOLD_USAGE_AT {
                self.fold_usage(u.mailbox_id).await?;
            }
        }
        Ok(first)
    }

    /// Folds a mailbox's usage rows, unless this process is doing it already.
    async fn fold_usage(&self, mailbox_id: i64) -> Result<(), StoreError> {
        let claimed = FOLDING
            .lock()
            .map(|mut f| f.insert(mailbox_id))
            .unwrap_or(false);
        if !claimed {
            return Ok(());
        }
        let folded = self.store.compact_quarantine_usage(mailbox_id).await;
        if let Ok(mut f) = FOLDING.lock() {
            f.remove(&mailbox_id);
        }
        folded
    }

    /// The quota that applies to a mailbox: its own, else the server's, as
    /// (messages, bytes); 0 is no limit.
    fn quota(&self, u: &QuarantineUse) -> (i64, i64) {
        let c = &self.config;
        let max_messages = u
            .max_messages
            .unwrap_or_else(|| i64::try_from(c.quarantine_max_messages).unwrap_or(i64::MAX));
        let max_bytes = u
            .max_bytes
            .unwrap_or_else(|| i64::try_from(c.quarantine_max_bytes.0).unwrap_or(i64::MAX));
        (max_messages, max_bytes)
    }

    /// Whether one quarantine is full; records a crossing either way.
    async fn note_quarantine(
        &self,
        u: &QuarantineUse,
        now: Timestamp,
    ) -> Result<Option<QuarantineFull>, StoreError> {
        let (max_messages, max_bytes) = self.quota(u);
        let full = (max_messages > 0 && u.messages >= max_messages)
            || (max_bytes > 0 && u.bytes >= max_bytes);
        if full && u.full_since.is_none() {
            let detail = format!(
                "quarantine full: {} messages, {} bytes; new mail refused",
                u.messages, u.bytes
            );
            if self
                .store
                .mark_quarantine_full(u.mailbox_id, true, now, &detail)
                .await?
            {
                tracing::warn!(mailbox = %u.address, messages = u.messages, bytes = u.bytes,
                    "quarantine full: new mail refused with 452 4.2.2");
            }
        } else if !full && u.full_since.is_some() {
            let detail = format!(
                "quarantine has room again: {} messages, {} bytes",
                u.messages, u.bytes
            );
            self.store
                .mark_quarantine_full(u.mailbox_id, false, now, &detail)
                .await?;
        }
        Ok(full.then(|| QuarantineFull {
            mailbox: u.address.clone(),
            messages: u.messages,
            bytes: u.bytes,
            max_messages,
            max_bytes,
        }))
    }

    /// How full one mailbox's quarantine is against its quota, full or
    /// not (for the owner's digest); `None` for an unknown mailbox.
    pub async fn quarantine_fill(
        &self,
        mailbox_id: i64,
    ) -> Result<Option<QuarantineFull>, StoreError> {
        let uses = self.store.quarantine_use(&[mailbox_id]).await?;
        Ok(uses.first().map(|u| {
            let (max_messages, max_bytes) = self.quota(u);
            QuarantineFull {
                mailbox: u.address.clone(),
                messages: u.messages,
                bytes: u.bytes,
                max_messages,
                max_bytes,
            }
        }))
    }

    /// The store, clock and delivery the quarantine works with (the
    /// owner's digest, [`crate::digest`], uses the same).
    pub fn store(&self) -> &crate::store::Store {
        &self.store
    }

    /// See [`Quarantine::store`].
    pub fn clock(&self) -> &Arc<dyn crate::clock::Clock> {
        &self.clock
    }

    /// See [`Quarantine::store`].
    pub fn delivery(&self) -> &Arc<crate::delivery::Delivery> {
        &self.delivery
    }

    /// Runs the sweeper until shutdown.
    pub async fn run_sweeper(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = self.config.sweep_interval.0;
        loop {
            if let Err(e) = self.sweep_once().await {
                tracing::error!(error = %e, "quarantine sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }
}
