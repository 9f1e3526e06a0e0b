//! The digest of newly held mail: each mailbox's frequency, when its last
//! digest went and what it covered (migration 0010), and the held mail a
//! digest lists. What goes into a digest and when is [`crate::digest`]'s.

use super::column::text_enum;
use super::held::{HeldSummary, OutboundState};
use super::{Store, StoreError};
use crate::clock::Timestamp;

text_enum! {
    /// How often a mailbox's owner gets a digest (`mailboxes.digest`).
    pub enum DigestFrequency("digest frequency") {
        /// No digest at all.
        Never = "never",
        /// At most one an hour.
        Hourly = "hourly",
        /// At most one a day (the default).
        Daily = "daily",
        /// At most one a week.
        Weekly = "weekly",
    }
}

impl DigestFrequency {
    /// The shortest time between two digests; `None` for never.
    pub fn period_secs(self) -> Option<i64> {
        match self {
            DigestFrequency::Never => None,
            DigestFrequency::Hourly => Some(3600),
            DigestFrequency::Daily => Some(86400),
            DigestFrequency::Weekly => Some(7 * 86400),
        }
    }
}

/// Where a mailbox's digest stands.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DigestState {
    pub mailbox_id: i64,
    /// The mailbox's address (its lookup key): where the digest goes.
    pub address: String,
    pub digest: DigestFrequency,
    /// When the last digest went (microseconds); `None`: never.
    pub last_at: Option<i64>,
    /// The highest held message id the last digest covered (0: none).
    pub last_held: i64,
    /// When a digest last warned that the quarantine was full.
    pub full_at: Option<i64>,
    /// Days held mail is kept: a held message's links expire with it.
    pub keep_days: i64,
    /// The spam score (tenths) at or above which mail is held without a
    /// challenge: such mail gets no one-click deliver link.
    pub spam_no_challenge_at: Option<i64>,
    /// The owner's IANA time zone (`/settings`): the digest's times are in it.
    pub time_zone: String,
}

/// A held message as a digest lists it, with its challenge's state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DigestItem {
    #[sqlx(flatten)]
    pub held: HeldSummary,
    /// `open`, `verified`, `expired`; `None`: no challenge was sent.
    pub challenge_state: Option<String>,
    /// When the challenge was made (microseconds).
    pub challenge_at: Option<i64>,
    /// The challenge's mail in the outbound queue: queued, sent or failed
    /// (`None`: no mail, or it is gone), and when it was handed on.
    pub mail_state: Option<OutboundState>,
    pub mail_done_at: Option<i64>,
    /// The mailbox's time zone, days held mail is kept, and the spam score
    /// (tenths) at or above which its mail gets no one-click deliver: each
    /// item is judged by its own mailbox's settings.
    pub time_zone: String,
    pub keep_days: i64,
    pub high_score_at: Option<i64>,
}

const STATE_COLUMNS: &str = "id AS mailbox_id, address, digest, digest_last_at AS last_at, \
     digest_last_held AS last_held, digest_full_at AS full_at, keep_days, spam_no_challenge_at, time_zone";

/// The columns of [`HeldSummary`] (as `store::held` lists them) and the
/// challenge's state.
const ITEM_COLUMNS: &str = "h.id, h.mailbox_id, m.address AS mailbox, h.queue_id, h.rcpt_index, h.env_sender, \
     h.original_rcpt, h.sender, h.sender_name, h.subject, h.message_id, h.date_header, h.size, \
     h.arrived_at, h.reason, h.reason_detail, h.challenge_id, h.state, h.auth_results, h.spam_score, \
     h.spam_report, c.state AS challenge_state, c.created_at AS challenge_at, \
     o.state AS mail_state, o.done_at AS mail_done_at, \
     m.time_zone, m.keep_days, m.spam_no_challenge_at AS high_score_at";

/// Held mail with its mailbox, its challenge and the challenge's first mail.
const ITEM_FROM: &str = "FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id
     LEFT JOIN challenges c ON c.id = h.challenge_id
     LEFT JOIN outbound_messages o ON o.id = (
         SELECT MIN(x.id) FROM outbound_messages x
         WHERE x.challenge_id = h.challenge_id AND x.kind = 'verify')";

impl Store {
    /// The digest state of every mailbox whose owner wants digests.
    pub async fn digest_mailboxes(&self) -> Result<Vec<DigestState>, StoreError> {
        let sql =
            format!("SELECT {STATE_COLUMNS} FROM mailboxes WHERE digest <> 'never' ORDER BY id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?)
    }

    /// One mailbox's digest state.
    pub async fn digest_state(&self, mailbox_id: i64) -> Result<Option<DigestState>, StoreError> {
        let sql = format!("SELECT {STATE_COLUMNS} FROM mailboxes WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Sets a mailbox's digest frequency.
    pub async fn set_digest(
        &self,
        mailbox_id: i64,
        digest: DigestFrequency,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE mailboxes SET digest = $1 WHERE id = $2")
            .bind(digest.as_str())
            .bind(mailbox_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// How many messages are held for the mailbox with an id in
    /// `(after, upto]`, and the highest such id (0 when none).
    pub async fn held_after(&self, mailbox_id: i64, after: i64) -> Result<(i64, i64), StoreError> {
        let (count, max): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM held_messages
             WHERE mailbox_id = $1 AND id > $2 AND state = 'held'",
        )
        .bind(mailbox_id)
        .bind(after)
        .fetch_one(self.pool())
        .await?;
        Ok((count, max))
    }

    /// The mailbox's held messages with an id in `(after, upto]`, newest
    /// first, at most `limit` (still held or being released).
    pub async fn digest_items(
        &self,
        mailbox_id: i64,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<DigestItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} {ITEM_FROM}
             WHERE h.mailbox_id = $1 AND h.id > $2 AND h.id <= $3
               AND h.state IN ('held', 'releasing')
             ORDER BY h.id DESC LIMIT $4"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// Records that a digest goes now, covering held mail up to `upto`
    /// (and warning of a full quarantine when `warned_full`), if nobody
    /// else did since `seen_last_at` was read: true when this call did, so
    /// two sweepers (or nodes) never send the same digest twice.
    pub async fn claim_digest(
        &self,
        mailbox_id: i64,
        seen_last_at: Option<i64>,
        now: Timestamp,
        upto: i64,
        warned_full: bool,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mailboxes SET digest_last_at = $1,
                digest_last_held = CASE WHEN $2 > digest_last_held THEN $2 ELSE digest_last_held END,
                digest_full_at = CASE WHEN $3 = 1 THEN $1 ELSE digest_full_at END
             WHERE id = $4 AND COALESCE(digest_last_at, -1) = $5",
        )
        .bind(now.0)
        .bind(upto)
        .bind(i64::from(warned_full))
        .bind(mailbox_id)
        .bind(seen_last_at.unwrap_or(-1))
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Undoes [`Store::claim_digest`] made at `claimed_at` (the digest could
    /// not be delivered): the state goes back to `before`, so the next pass
    /// tries again; nothing if another claim came since.
    pub async fn unclaim_digest(
        &self,
        before: &DigestState,
        claimed_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mailboxes SET digest_last_at = $1, digest_last_held = $2, digest_full_at = $3
             WHERE id = $4 AND digest_last_at = $5",
        )
        .bind(before.last_at)
        .bind(before.last_held)
        .bind(before.full_at)
        .bind(before.mailbox_id)
        .bind(claimed_at.0)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// An address subscribed to the digest of a whole local domain
/// (`domain_digests`, migration 0016).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainDigest {
    pub id: i64,
    pub domain_id: i64,
    /// The domain's name.
    pub domain: String,
    /// Where the digest goes.
    pub address: String,
    pub frequency: DigestFrequency,
    /// When the last one went (microseconds); `None`: never.
    pub last_at: Option<i64>,
    /// The highest held message id the last one covered.
    pub last_held: i64,
    pub created_at: i64,
}

/// What [`Store::subscribe_domain_digest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription, from the newest held message on.
    New,
    /// The address was subscribed already; its frequency was this.
    Changed(DigestFrequency),
}

const DOMAIN_DIGEST_COLUMNS: &str = "s.id, s.domain_id, d.name AS domain, s.address, s.frequency, \
     s.last_at, s.last_held, s.created_at";

/// A queued digest mail: where it goes and its text.
#[derive(Debug, Clone, Copy)]
pub struct QueuedDigest<'a> {
    /// `outbound_messages.kind`.
    pub kind: &'a str,
    pub rcpt: &'a str,
    pub data: &'a [u8],
}

impl Store {
    /// Subscribes `address` to the digest of `domain` at `frequency`, or
    /// changes the frequency of a subscription that exists. A new one
    /// starts after the newest held message: its first digest lists only
    /// mail held from now on. `NotFound` for a domain that is not ours.
    pub async fn subscribe_domain_digest(
        &self,
        domain: &str,
        address: &str,
        frequency: DigestFrequency,
        now: Timestamp,
    ) -> Result<Subscribed, StoreError> {
        let mut tx = self.begin_write().await?;
        let domain_id: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
            .bind(domain)
            .fetch_optional(&mut *tx)
            .await?;
        let domain_id = domain_id.ok_or_else(|| {
            StoreError::NotFound(format!(
                "no such domain: {domain} (see `boxtrap domain list`)"
            ))
        })?;
        let was: Option<DigestFrequency> = sqlx::query_scalar(
            "SELECT frequency FROM domain_digests WHERE domain_id = $1 AND address = $2",
        )
        .bind(domain_id)
        .bind(address)
        .fetch_optional(&mut *tx)
        .await?;
        let done = if let Some(was) = was {
            sqlx::query(
                "UPDATE domain_digests SET frequency = $1 WHERE domain_id = $2 AND address = $3",
            )
            .bind(frequency.as_str())
            .bind(domain_id)
            .bind(address)
            .execute(&mut *tx)
            .await?;
            Subscribed::Changed(was)
        } else {
            sqlx::query(
                "INSERT INTO domain_digests (domain_id, address, frequency, last_held, created_at)
                 VALUES ($1, $2, $3, (SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM held_messages), $4)",
            )
            .bind(domain_id)
            .bind(address)
            .bind(frequency.as_str())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            Subscribed::New
        };
        tx.commit().await?;
        Ok(done)
    }

    /// Ends a subscription: true if there was one. Its links stop working.
    pub async fn unsubscribe_domain_digest(
        &self,
        domain: &str,
        address: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM domain_digests WHERE address = $1
               AND domain_id = (SELECT id FROM domains WHERE name = $2)",
        )
        .bind(address)
        .bind(domain)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every domain digest subscription, by domain and address.
    pub async fn domain_digests(&self) -> Result<Vec<DomainDigest>, StoreError> {
        let sql = format!(
            "SELECT {DOMAIN_DIGEST_COLUMNS} FROM domain_digests s JOIN domains d ON d.id = s.domain_id
             ORDER BY d.name, s.address"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?)
    }

    /// One subscription.
    pub async fn domain_digest(&self, id: i64) -> Result<Option<DomainDigest>, StoreError> {
        let sql = format!(
            "SELECT {DOMAIN_DIGEST_COLUMNS} FROM domain_digests s JOIN domains d ON d.id = s.domain_id
             WHERE s.id = $1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// How many messages are held for the domain's mailboxes with an id
    /// after `after`, and the highest such id (0 when none).
    pub async fn domain_held_after(
        &self,
        domain_id: i64,
        after: i64,
    ) -> Result<(i64, i64), StoreError> {
        let (count, max): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(MAX(h.id), 0) AS BIGINT) FROM held_messages h
             JOIN mailboxes m ON m.id = h.mailbox_id
             WHERE m.domain_id = $1 AND h.id > $2 AND h.state = 'held'",
        )
        .bind(domain_id)
        .bind(after)
        .fetch_one(self.pool())
        .await?;
        Ok((count, max))
    }

    /// The domain's held messages (every mailbox) with an id in
    /// `(after, upto]`, newest first, at most `limit`.
    pub async fn domain_digest_items(
        &self,
        domain_id: i64,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<DigestItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} {ITEM_FROM}
             WHERE m.domain_id = $1 AND h.id > $2 AND h.id <= $3
               AND h.state IN ('held', 'releasing')
             ORDER BY h.id DESC LIMIT $4"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(domain_id)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// Records that a domain digest goes now, covering held mail up to
    /// `upto`, if nobody else did since `seen` was read; with `queued`,
    /// queues that mail in the same transaction. True when this call did.
    pub async fn claim_domain_digest(
        &self,
        seen: &DomainDigest,
        now: Timestamp,
        upto: i64,
        queued: Option<QueuedDigest<'_>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE domain_digests SET last_at = $1,
                last_held = CASE WHEN $2 > last_held THEN $2 ELSE last_held END
             WHERE id = $3 AND COALESCE(last_at, -1) = $4",
        )
        .bind(now.0)
        .bind(upto)
        .bind(seen.id)
        .bind(seen.last_at.unwrap_or(-1))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(q) = queued {
            super::held::insert_outbound(
                &mut tx,
                &super::held::NewOutbound {
                    kind: q.kind,
                    mailbox_id: None,
                    challenge_id: None,
                    env_from: "",
                    rcpt: q.rcpt,
                    data: q.data,
                    now,
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Undoes [`Store::claim_domain_digest`] made at `claimed_at` (the
    /// digest could not be delivered); nothing if another claim came since.
    pub async fn unclaim_domain_digest(
        &self,
        before: &DomainDigest,
        claimed_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE domain_digests SET last_at = $1, last_held = $2 WHERE id = $3 AND last_at = $4",
        )
        .bind(before.last_at)
        .bind(before.last_held)
        .bind(before.id)
        .bind(claimed_at.0)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Domain, EmailAddress};
    use crate::both_backends;

    both_backends!(
        digest_state_defaults_to_daily_and_is_claimed_once,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let d = Domain::parse("example.test").unwrap();
            store.add_domain(&d, now).await.unwrap();
            let a = EmailAddress::parse("alice@example.test").unwrap();
            let id = store.add_mailbox(&a, "", now).await.unwrap().id;
            let s = store.digest_state(id).await.unwrap().unwrap();
            assert_eq!(s.digest, DigestFrequency::Daily);
            assert_eq!((s.last_at, s.last_held, s.full_at), (None, 0, None));
            assert_eq!(store.digest_mailboxes().await.unwrap().len(), 1);
            assert!(store.claim_digest(id, None, now, 5, true).await.unwrap());
            assert!(!store.claim_digest(id, None, now, 5, true).await.unwrap());
            let claimed = store.digest_state(id).await.unwrap().unwrap();
            let fresh = DigestState {
                last_at: None,
                last_held: 0,
                full_at: None,
                ..claimed.clone()
            };
            assert!(store.unclaim_digest(&fresh, now).await.unwrap());
            assert_eq!(store.digest_state(id).await.unwrap().unwrap(), fresh);
            assert!(!store.unclaim_digest(&fresh, now).await.unwrap());
            assert!(store.claim_digest(id, None, now, 5, true).await.unwrap());
            let s = store.digest_state(id).await.unwrap().unwrap();
            assert_eq!(
                (s.last_at, s.last_held, s.full_at),
                (Some(now.0), 5, Some(now.0))
            );
            store.set_digest(id, DigestFrequency::Never).await.unwrap();
            assert!(store.digest_mailboxes().await.unwrap().is_empty());
            assert_eq!(store.held_after(id, 0).await.unwrap(), (0, 0));
        }
    );

    both_backends!(
        a_domain_digest_is_claimed_once_and_queued_with_its_claim,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let d = Domain::parse("example.test").unwrap();
            store.add_domain(&d, now).await.unwrap();
            let unknown = store
                .subscribe_domain_digest("nowhere.test", "a@b.example", DigestFrequency::Daily, now)
                .await;
            assert!(matches!(unknown, Err(StoreError::NotFound(_))));
            assert!(store.domain_digests().await.unwrap().is_empty());
            let s = |f| store.subscribe_domain_digest("example.test", "a@b.example", f, now);
            assert_eq!(s(DigestFrequency::Daily).await.unwrap(), Subscribed::New);
            assert_eq!(
                s(DigestFrequency::Hourly).await.unwrap(),
                Subscribed::Changed(DigestFrequency::Daily)
            );
            let sub = store.domain_digests().await.unwrap().remove(0);
            assert_eq!(
                (sub.domain.as_str(), sub.frequency, sub.last_at),
                ("example.test", DigestFrequency::Hourly, None)
            );
            assert_eq!(
                store.domain_held_after(sub.domain_id, 0).await.unwrap(),
                (0, 0)
            );
            let mail = QueuedDigest {
                kind: "domain-digest",
                rcpt: "a@b.example",
                data: b"Subject: x\r\n\r\nx\r\n",
            };
            assert!(
                store
                    .claim_domain_digest(&sub, now, 7, Some(mail))
                    .await
                    .unwrap()
            );
            // The same state read before: claimed already, nothing queued.
            assert!(
                !store
                    .claim_domain_digest(&sub, now, 7, Some(mail))
                    .await
                    .unwrap()
            );
            let queued: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbound_messages WHERE kind = 'domain-digest'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(queued, 1);
            let claimed = store.domain_digest(sub.id).await.unwrap().unwrap();
            assert_eq!((claimed.last_at, claimed.last_held), (Some(now.0), 7));
            assert!(store.unclaim_domain_digest(&sub, now).await.unwrap());
            assert_eq!(store.domain_digest(sub.id).await.unwrap().unwrap(), sub);
            assert!(
                store
                    .unsubscribe_domain_digest("example.test", "a@b.example")
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .unsubscribe_domain_digest("example.test", "a@b.example")
                    .await
                    .unwrap()
            );
            assert_eq!(store.domain_digest(sub.id).await.unwrap(), None);
        }
    );
}
