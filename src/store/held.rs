//! The quarantine's tables: held messages, challenges, the outbound queue
//! and the per-mailbox activity log.
//!
//! Functions that must share a transaction (holding a message, issuing its
//! challenge and queueing the challenge mail happen together or not at all)
//! take a connection; `Store` methods are for single statements and reads.

use super::{Backend, Store, StoreError};
use crate::clock::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// A message to hold.
#[derive(Debug, Clone)]
pub struct NewHeld<'a> {
    pub mailbox_id: i64,
    pub queue_id: &'a str,
    pub rcpt_index: i64,
    pub env_sender: &'a str,
    pub original_rcpt: &'a str,
    pub sender: &'a str,
    pub sender_name: &'a str,
    pub subject: &'a str,
    pub message_id: &'a str,
    pub date_header: &'a str,
    pub arrived_at: Timestamp,
    pub reason: &'a str,
    pub reason_detail: &'a str,
    pub challenge_id: Option<i64>,
    pub data: &'a [u8],
}

/// A held message as listed (without its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSummary {
    pub id: i64,
    pub mailbox_id: i64,
    pub mailbox: String,
    pub queue_id: String,
    pub rcpt_index: i64,
    pub env_sender: String,
    pub original_rcpt: String,
    pub sender: String,
    pub sender_name: String,
    pub subject: String,
    pub message_id: String,
    pub date_header: String,
    pub size: i64,
    pub arrived_at: Timestamp,
    pub reason: String,
    pub reason_detail: String,
    pub challenge_id: Option<i64>,
    pub state: String,
}

/// A challenge row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRow {
    pub id: i64,
    pub mailbox_id: i64,
    pub mailbox: String,
    pub sender: String,
    pub state: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A message for the outbound queue.
#[derive(Debug, Clone)]
pub struct NewOutbound<'a> {
    pub kind: &'a str,
    pub mailbox_id: Option<i64>,
    pub challenge_id: Option<i64>,
    /// Envelope sender; empty for `<>`.
    pub env_from: &'a str,
    pub rcpt: &'a str,
    pub data: &'a [u8],
    pub now: Timestamp,
}

/// A queued outbound message, as the worker sees it.
#[derive(Debug, Clone)]
pub struct OutboundRow {
    pub id: i64,
    pub kind: String,
    pub mailbox_id: Option<i64>,
    pub challenge_id: Option<i64>,
    pub env_from: String,
    pub rcpt: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: Timestamp,
}

/// One line of a mailbox's activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub at: Timestamp,
    pub action: String,
    pub sender: String,
    pub detail: String,
}

const DUE_OUTBOUND: &str =
    "SELECT id, kind, mailbox_id, challenge_id, env_from, rcpt, state, attempts, last_error, created_at
     FROM outbound_messages WHERE state = 'queued' AND next_attempt_at <= $1
     ORDER BY next_attempt_at, id LIMIT $2";

const HELD_COLUMNS: &str = "h.id, h.mailbox_id, m.address AS mailbox, h.queue_id, h.rcpt_index, h.env_sender, \
     h.original_rcpt, h.sender, h.sender_name, h.subject, h.message_id, h.date_header, h.size, \
     h.arrived_at, h.reason, h.reason_detail, h.challenge_id, h.state";

fn held_from_row(r: &AnyRow) -> Result<HeldSummary, sqlx::Error> {
    Ok(HeldSummary {
        id: r.try_get("id")?,
        mailbox_id: r.try_get("mailbox_id")?,
        mailbox: r.try_get("mailbox")?,
        queue_id: r.try_get("queue_id")?,
        rcpt_index: r.try_get("rcpt_index")?,
        env_sender: r.try_get("env_sender")?,
        original_rcpt: r.try_get("original_rcpt")?,
        sender: r.try_get("sender")?,
        sender_name: r.try_get("sender_name")?,
        subject: r.try_get("subject")?,
        message_id: r.try_get("message_id")?,
        date_header: r.try_get("date_header")?,
        size: r.try_get("size")?,
        arrived_at: Timestamp(r.try_get("arrived_at")?),
        reason: r.try_get("reason")?,
        reason_detail: r.try_get("reason_detail")?,
        challenge_id: r.try_get("challenge_id")?,
        state: r.try_get("state")?,
    })
}

fn challenge_from_row(r: &AnyRow) -> Result<ChallengeRow, sqlx::Error> {
    Ok(ChallengeRow {
        id: r.try_get("id")?,
        mailbox_id: r.try_get("mailbox_id")?,
        mailbox: r.try_get("mailbox")?,
        sender: r.try_get("sender")?,
        state: r.try_get("state")?,
        created_at: Timestamp(r.try_get("created_at")?),
        expires_at: Timestamp(r.try_get("expires_at")?),
    })
}

fn outbound_from_row(r: &AnyRow) -> Result<OutboundRow, sqlx::Error> {
    Ok(OutboundRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        mailbox_id: r.try_get("mailbox_id")?,
        challenge_id: r.try_get("challenge_id")?,
        env_from: r.try_get("env_from")?,
        rcpt: r.try_get("rcpt")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

/// The open, unexpired challenge for this sender and mailbox.
pub async fn open_challenge(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    now: Timestamp,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM challenges WHERE mailbox_id = $1 AND sender = $2 AND state = 'open' AND expires_at > $3",
    )
    .bind(mailbox_id)
    .bind(sender)
    .bind(now.0)
    .fetch_optional(conn)
    .await?)
}

/// What the policy needs to know about challenges to one sender, in one
/// round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeState {
    /// A challenge to this sender for this mailbox is open and unexpired.
    pub open: bool,
    /// Challenges this mailbox sent since an hour ago.
    pub per_mailbox: i64,
    /// Challenges to the sender's domain since a day ago.
    pub per_domain: i64,
    /// Challenges sent by the whole server since an hour ago.
    pub global: i64,
}

/// The open challenge and the challenge counts for the rate limits.
pub async fn challenge_state(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    now: Timestamp,
    hour_ago: Timestamp,
    day_ago: Timestamp,
) -> Result<ChallengeState, StoreError> {
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let r = sqlx::query(
        "SELECT
           (SELECT COUNT(*) FROM challenges WHERE mailbox_id = $1 AND sender = $5 AND state = 'open' AND expires_at > $6) AS open,
           (SELECT COUNT(*) FROM challenges WHERE mailbox_id = $1 AND created_at > $2) AS per_mailbox,
           (SELECT COUNT(*) FROM challenges WHERE sender_domain = $3 AND created_at > $4) AS per_domain,
           (SELECT COUNT(*) FROM challenges WHERE created_at > $2) AS global",
    )
    .bind(mailbox_id)
    .bind(hour_ago.0)
    .bind(domain)
    .bind(day_ago.0)
    .bind(sender)
    .bind(now.0)
    .fetch_one(conn)
    .await?;
    Ok(ChallengeState {
        open: r.try_get::<i64, _>("open")? > 0,
        per_mailbox: r.try_get("per_mailbox")?,
        per_domain: r.try_get("per_domain")?,
        global: r.try_get("global")?,
    })
}

/// Opens a challenge; `None` when another one is open for this sender (a
/// concurrent arrival won the race). Never fails on that race, so the
/// caller's transaction stays usable on PostgreSQL too.
pub async fn insert_challenge(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    now: Timestamp,
    expires: Timestamp,
) -> Result<Option<i64>, StoreError> {
    // An expired challenge that is still marked open must not block a new one.
    sqlx::query(
        "UPDATE challenges SET state = 'expired' WHERE mailbox_id = $1 AND sender = $2 AND state = 'open' AND expires_at <= $3",
    )
    .bind(mailbox_id)
    .bind(sender)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    Ok(sqlx::query_scalar(
        "INSERT INTO challenges (mailbox_id, sender, sender_domain, state, created_at, expires_at)
         VALUES ($1, $2, $3, 'open', $4, $5)
         ON CONFLICT (mailbox_id, sender) WHERE state = 'open' DO NOTHING RETURNING id",
    )
    .bind(mailbox_id)
    .bind(sender)
    .bind(domain)
    .bind(now.0)
    .bind(expires.0)
    .fetch_optional(conn)
    .await?)
}

/// Removes a challenge opened in this transaction whose mail could not be built.
pub async fn remove_challenge(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM challenges WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_held(conn: &mut AnyConnection, h: &NewHeld<'_>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO held_messages (mailbox_id, queue_id, rcpt_index, env_sender, original_rcpt, sender,
            sender_name, subject, message_id, date_header, size, arrived_at, reason, reason_detail,
            challenge_id, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
    )
    .bind(h.mailbox_id)
    .bind(h.queue_id)
    .bind(h.rcpt_index)
    .bind(h.env_sender)
    .bind(h.original_rcpt)
    .bind(h.sender)
    .bind(h.sender_name)
    .bind(h.subject)
    .bind(h.message_id)
    .bind(h.date_header)
    .bind(h.data.len() as i64)
    .bind(h.arrived_at.0)
    .bind(h.reason)
    .bind(h.reason_detail)
    .bind(h.challenge_id)
    .bind(h.data)
    .fetch_one(conn)
    .await?)
}

pub async fn insert_outbound(
    conn: &mut AnyConnection,
    o: &NewOutbound<'_>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbound_messages (kind, mailbox_id, challenge_id, env_from, rcpt, data, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(o.kind)
    .bind(o.mailbox_id)
    .bind(o.challenge_id)
    .bind(o.env_from)
    .bind(o.rcpt)
    .bind(o.data)
    .bind(o.now.0)
    .fetch_one(conn)
    .await?)
}

pub async fn add_activity(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    at: Timestamp,
    action: &str,
    sender: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO activity (mailbox_id, at, action, sender, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(mailbox_id)
    .bind(at.0)
    .bind(action)
    .bind(sender)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the challenge verified (if it was open) and claims every message
/// held from its sender for its mailbox for delivery. Returns the claimed
/// ids; a second caller racing this one gets none.
pub async fn claim_for_release(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    now: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    sqlx::query(
        "UPDATE challenges SET state = 'verified', verified_at = $1
         WHERE mailbox_id = $2 AND sender = $3 AND state = 'open'",
    )
    .bind(now.0)
    .bind(mailbox_id)
    .bind(sender)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar(
        "UPDATE held_messages SET state = 'releasing', claimed_at = $1
         WHERE mailbox_id = $2 AND sender = $3 AND state = 'held' RETURNING id",
    )
    .bind(now.0)
    .bind(mailbox_id)
    .bind(sender)
    .fetch_all(conn)
    .await?)
}

impl Store {
    pub async fn challenge(&self, id: i64) -> Result<Option<ChallengeRow>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.mailbox_id, m.address AS mailbox, c.sender, c.state, c.created_at, c.expires_at
             FROM challenges c JOIN mailboxes m ON m.id = c.mailbox_id WHERE c.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(challenge_from_row).transpose()?)
    }

    /// Held messages, newest first, optionally of one mailbox and/or sender.
    pub async fn list_held(
        &self,
        mailbox_id: Option<i64>,
        sender: Option<&str>,
    ) -> Result<Vec<HeldSummary>, StoreError> {
        let sql = format!(
            "SELECT {HELD_COLUMNS} FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id
             WHERE ($1 = 0 OR h.mailbox_id = $1) AND ($2 = '' OR h.sender = $2)
             ORDER BY h.arrived_at DESC, h.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id.unwrap_or(0))
            .bind(sender.unwrap_or(""))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(held_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn held(&self, id: i64) -> Result<Option<HeldSummary>, StoreError> {
        let sql = format!(
            "SELECT {HELD_COLUMNS} FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id WHERE h.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(held_from_row).transpose()?)
    }

    pub async fn held_data(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT data FROM held_messages WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Claims one held message for delivery; false if it is gone or claimed.
    pub async fn claim_held(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE held_messages SET state = 'releasing', claimed_at = $1 WHERE id = $2 AND state = 'held'",
        )
        .bind(now.0)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Messages whose release was claimed before `before` and never finished
    /// (the process died); the sweeper delivers them.
    pub async fn stale_releases(&self, before: Timestamp) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM held_messages WHERE state = 'releasing' AND claimed_at < $1 ORDER BY id",
        )
        .bind(before.0)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes a held message unless a release has claimed it. When it was
    /// the sender's last one, their open challenge is closed too: a late
    /// click must not allow a sender whose mail the owner threw away.
    pub async fn delete_held_unclaimed(
        &self,
        id: i64,
        mailbox_id: i64,
        sender: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM held_messages WHERE id = $1 AND state = 'held'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM held_messages WHERE mailbox_id = $1 AND sender = $2",
            )
            .bind(mailbox_id)
            .bind(sender)
            .fetch_one(&mut *tx)
            .await?;
            if left == 0 {
                sqlx::query("UPDATE challenges SET state = 'expired' WHERE mailbox_id = $1 AND sender = $2 AND state = 'open'")
                    .bind(mailbox_id)
                    .bind(sender)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a held message (delivered, deleted or expired).
    pub async fn remove_held(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM held_messages WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Held messages older than their mailbox's keep-days at `now`.
    pub async fn expired_held(&self, now: Timestamp) -> Result<Vec<HeldSummary>, StoreError> {
        let sql = format!(
            "SELECT {HELD_COLUMNS} FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id
             WHERE h.state = 'held' AND h.arrived_at + m.keep_days * 86400000000 <= $1 ORDER BY h.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(held_from_row).collect::<Result<_, _>>()?)
    }

    /// Marks open challenges past their expiry as expired; returns them.
    pub async fn expire_challenges(&self, now: Timestamp) -> Result<Vec<ChallengeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.mailbox_id, m.address AS mailbox, c.sender, c.state, c.created_at, c.expires_at
             FROM challenges c JOIN mailboxes m ON m.id = c.mailbox_id
             WHERE c.state = 'open' AND c.expires_at <= $1",
        )
        .bind(now.0)
        .fetch_all(self.pool())
        .await?;
        let expired: Vec<ChallengeRow> = rows
            .iter()
            .map(challenge_from_row)
            .collect::<Result<_, _>>()?;
        for c in &expired {
            sqlx::query("UPDATE challenges SET state = 'expired' WHERE id = $1 AND state = 'open'")
                .bind(c.id)
                .execute(self.writer())
                .await?;
        }
        Ok(expired)
    }

    pub async fn activity(&self, mailbox_id: i64, limit: i64) -> Result<Vec<Activity>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, action, sender, detail FROM activity WHERE mailbox_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(mailbox_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Activity {
                    at: Timestamp(r.try_get("at")?),
                    action: r.try_get("action")?,
                    sender: r.try_get("sender")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn log_activity(
        &self,
        mailbox_id: i64,
        at: Timestamp,
        action: &str,
        sender: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer().acquire().await?;
        add_activity(&mut conn, mailbox_id, at, action, sender, detail).await
    }

    /// Takes up to `limit` outbound messages due at `now`, oldest first,
    /// leasing each until `lease_until` so no other worker sends it too.
    /// On PostgreSQL rows another node is claiming are skipped (`FOR UPDATE
    /// SKIP LOCKED`), never waited for.
    pub async fn claim_due_outbound(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<OutboundRow>, StoreError> {
        let select = match self.backend() {
            Backend::Postgres => DUE_OUTBOUND.to_owned() + " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => DUE_OUTBOUND.to_owned(),
        };
        self.write(move |conn| {
            let select = select.clone();
            Box::pin(async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(select))
                    .bind(now.0)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                let mut due = Vec::with_capacity(rows.len());
                for r in &rows {
                    let m = outbound_from_row(r)?;
                    sqlx::query("UPDATE outbound_messages SET next_attempt_at = $1 WHERE id = $2")
                        .bind(lease_until.0)
                        .bind(m.id)
                        .execute(&mut *conn)
                        .await?;
                    due.push(m);
                }
                Ok(due)
            })
        })
        .await
    }

    /// Every outbound message, newest first (for `boxtrap outbound list` and tests).
    pub async fn list_outbound(&self) -> Result<Vec<OutboundRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, mailbox_id, challenge_id, env_from, rcpt, state, attempts, last_error, created_at
             FROM outbound_messages ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(outbound_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn outbound_data(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        sqlx::query_scalar("SELECT data FROM outbound_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no outbound message {id}")))
    }

    /// Records an attempt: sent, deferred until `next`, or failed for good.
    pub async fn outbound_attempted(
        &self,
        id: i64,
        state: &str,
        next: Timestamp,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbound_messages SET state = $1, attempts = attempts + 1, next_attempt_at = $2,
                last_error = $3, done_at = CASE WHEN $1 = 'queued' THEN NULL ELSE $4 END
             WHERE id = $5",
        )
        .bind(state)
        .bind(next.0)
        .bind(error)
        .bind(now.0)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Whether a message of `kind` went to `rcpt` since `since` (rate limits
    /// such as one `returnverify` per sender per day).
    pub async fn outbound_sent_since(
        &self,
        kind: &str,
        rcpt: &str,
        since: Timestamp,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbound_messages WHERE kind = $1 AND rcpt = $2 AND created_at > $3",
        )
        .bind(kind)
        .bind(rcpt)
        .bind(since.0)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// Permanent failures of the challenge mail for a challenge, if any.
    pub async fn challenge_delivery_error(
        &self,
        challenge_id: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT last_error FROM outbound_messages WHERE challenge_id = $1 AND kind = 'verify' AND state = 'failed'",
        )
        .bind(challenge_id)
        .fetch_optional(self.pool())
        .await?)
    }
}
