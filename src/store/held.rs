//! The quarantine's tables: held messages, challenges, the outbound queue
//! and the per-mailbox activity log.
//!
//! Functions that must share a transaction (holding a message, issuing its
//! challenge and queueing the challenge mail happen together or not at all)
//! take a connection; `Store` methods are for single statements and reads.
//!
//! States and actions are enums here and TEXT in the database
//! ([`HeldState`], [`ChallengeState`], [`OutboundState`],
//! [`ActivityAction`]); rows are read with `#[derive(sqlx::FromRow)]`, so a
//! value no variant stores fails the read with an error naming it.

use super::column::text_enum;
use super::{Backend, Store, StoreError};
use crate::clock::Timestamp;
use sqlx::AnyConnection;

text_enum! {
    /// Where a held message is (`held_messages.state`).
    pub enum HeldState("held state") {
        /// Waiting for a release, a deletion or its expiry.
        Held = "held",
        /// Claimed by a release that is delivering it; the sweeper finishes
        /// a release that stays here too long (the process died).
        Releasing = "releasing",
        /// Deleted by the owner: out of the quarantine (its quota, expiry
        /// and releases) until restored, purged `[challenge] keep_deleted`
        /// after its deletion.
        Deleted = "deleted",
    }
}

text_enum! {
    /// Where a challenge is (`challenges.state`).
    pub enum ChallengeState("challenge state") {
        /// Sent and waiting for the sender; at most one per mailbox and sender.
        Open = "open",
        /// Answered by link or reply: the sender is allowed.
        Verified = "verified",
        /// Unanswered in time, or its last held message went away.
        Expired = "expired",
    }
}

text_enum! {
    /// Where an outbound message is (`outbound_messages.state`).
    pub enum OutboundState("outbound state") {
        /// Waiting for its next attempt.
        Queued = "queued",
        /// Handed to the transport.
        Sent = "sent",
        /// Refused for good, or out of retries; purged by the sweeper after
        /// `[challenge] keep_outbound`.
        Failed = "failed",
    }
}

text_enum! {
    /// What a line of a mailbox's activity log records (`activity.action`).
    pub enum ActivityAction("activity action") {
        /// A message was held.
        Held = "held",
        /// A challenge mail was queued for the sender.
        Challenged = "challenged",
        /// The sender answered the challenge by reply.
        Verified = "verified",
        /// The sender was added to the allow list.
        Allowed = "allowed",
        /// A message was refused or dropped by the block list.
        Blocked = "blocked",
        /// A message was dropped by the ignore list.
        Ignored = "ignored",
        /// A held message was delivered.
        Released = "released",
        /// The owner deleted a held message (it can be restored until purged).
        Deleted = "deleted",
        /// The owner restored a deleted message to the quarantine.
        Restored = "restored",
        /// A held message was purged after the mailbox's keep-days.
        Expired = "expired",
        /// A challenge was closed unanswered.
        ChallengeExpired = "challenge-expired",
        /// A reply to a challenge released nothing.
        ReplyRefused = "reply-refused",
        /// A notice mail to a sender could not be built.
        NoticeFailed = "notice-failed",
        /// The mailbox's quarantine reached its quota: new mail for it is
        /// refused at RCPT (452 4.2.2) until there is room again.
        QuarantineFull = "quarantine-full",
        /// The mailbox's quarantine has room again after it was full.
        QuarantineRoom = "quarantine-room",
        /// A link was used: a sender's verification link or an owner's
        /// digest link (the line has the client address).
        LinkUsed = "link-used",
        /// The owner changed a list (other than by releasing mail).
        ListChanged = "list-changed",
        /// An admin acted for the owner (the line names the admin).
        AdminAction = "admin-action",
    }
}

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
    /// The RFC 8601 `Authentication-Results:` value this server wrote
    /// (`""` when the message was not checked).
    pub auth_results: &'a str,
    /// The spam score in tenths of a point; `None`: not scored.
    pub spam_score: Option<i64>,
    /// The score's parts or why there is none, in words.
    pub spam_report: &'a str,
    /// How many attachments it has; `None`: not counted.
    pub attachments: Option<i64>,
}

/// A held message as listed (without its body).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    #[sqlx(try_from = "i64")]
    pub arrived_at: Timestamp,
    pub reason: String,
    pub reason_detail: String,
    pub challenge_id: Option<i64>,
    pub state: HeldState,
    /// The `Authentication-Results:` value written at arrival (`""`: none).
    pub auth_results: String,
    /// The spam score in tenths of a point; `None`: not scored.
    pub spam_score: Option<i64>,
    /// The score's parts, or why it was not scored.
    pub spam_report: String,
}

/// A challenge row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChallengeRow {
    pub id: i64,
    pub mailbox_id: i64,
    pub mailbox: String,
    /// The address the challenge speaks as (the one the sender mailed);
    /// `""` for challenges made before it was kept.
    pub addressed_to: String,
    pub sender: String,
    pub state: ChallengeState,
    #[sqlx(try_from = "i64")]
    pub created_at: Timestamp,
    #[sqlx(try_from = "i64")]
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
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboundRow {
    pub id: i64,
    pub kind: String,
    pub mailbox_id: Option<i64>,
    pub challenge_id: Option<i64>,
    pub env_from: String,
    pub rcpt: String,
    pub state: OutboundState,
    pub attempts: i64,
    pub last_error: String,
    #[sqlx(try_from = "i64")]
    pub created_at: Timestamp,
}

/// One line of a mailbox's activity log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Activity {
    #[sqlx(try_from = "i64")]
    pub at: Timestamp,
    pub action: ActivityAction,
    pub sender: String,
    pub detail: String,
}

const DUE_OUTBOUND: &str =
    "SELECT id, kind, mailbox_id, challenge_id, env_from, rcpt, state, attempts, last_error, created_at
     FROM outbound_messages WHERE state = 'queued' AND next_attempt_at <= $1
     ORDER BY next_attempt_at, id LIMIT $2";

pub(super) const HELD_COLUMNS: &str = "h.id, h.mailbox_id, m.address AS mailbox, h.queue_id, h.rcpt_index, h.env_sender, \
     h.original_rcpt, h.sender, h.sender_name, h.subject, h.message_id, h.date_header, h.size, \
     h.arrived_at, h.reason, h.reason_detail, h.challenge_id, h.state, h.auth_results, h.spam_score, \
     h.spam_report";

const CHALLENGE_COLUMNS: &str = "c.id, c.mailbox_id, m.address AS mailbox, c.addressed_to, c.sender, c.state, c.created_at, c.expires_at";

/// Whether a challenge to `sender` for the mailbox is open and unexpired.
pub async fn open_challenge(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM challenges WHERE mailbox_id = $1 AND sender = $2 AND state = 'open' AND expires_at > $3",
    )
    .bind(mailbox_id)
    .bind(sender)
    .bind(now.0)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// The caps on mail to senders (`[challenge]` in the config): how many
/// challenges and notices may go out, counted from the outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCaps {
    /// To one recipient address, in the last 24 hours.
    pub per_address_day: u32,
    /// To one recipient domain, in the last 24 hours.
    pub per_domain_day: u32,
    /// From one mailbox, in the last hour.
    pub per_mailbox_hour: u32,
    /// From the whole server (every node sharing the database), in the
    /// last hour.
    pub global_hour: u32,
}

/// Which cap one more mail to `rcpt` on behalf of `mailbox_id` would
/// exceed, if any: `"per address per day"`, `"per sender domain per day"`,
/// `"per mailbox per hour"` or `"server-wide per hour"`.
///
/// Atomic with the caller's insert when both run in one write transaction:
/// on SQLite every write goes through the one writer; on PostgreSQL this
/// first takes a transaction-scoped advisory lock that every such check
/// takes, so concurrent sessions and nodes count one after another.
pub async fn send_cap_reached(
    conn: &mut AnyConnection,
    caps: &SendCaps,
    mailbox_id: Option<i64>,
    rcpt: &str,
    now: Timestamp,
) -> Result<Option<&'static str>, StoreError> {
    lock_challenges(conn).await?;
    let hour_ago = now.plus_secs(-3600).0;
    let day_ago = now.plus_secs(-86400).0;
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT COUNT(*) FROM outbound_messages WHERE rcpt = $1 AND created_at > $2),
           (SELECT COUNT(*) FROM outbound_messages WHERE rcpt_domain = $3 AND created_at > $2),
           (SELECT COUNT(*) FROM outbound_messages WHERE mailbox_id = $4 AND created_at > $5),
           (SELECT COUNT(*) FROM outbound_messages WHERE created_at > $5)",
    )
    .bind(rcpt)
    .bind(day_ago)
    .bind(domain_of(rcpt))
    .bind(mailbox_id.unwrap_or(-1))
    .bind(hour_ago)
    .fetch_one(conn)
    .await?;
    let (per_address, per_domain, per_mailbox, global) = counts;
    Ok(if per_address >= i64::from(caps.per_address_day) {
        Some("per address per day")
    } else if per_domain >= i64::from(caps.per_domain_day) {
        Some("per sender domain per day")
    } else if mailbox_id.is_some() && per_mailbox >= i64::from(caps.per_mailbox_hour) {
        Some("per mailbox per hour")
    } else if global >= i64::from(caps.global_hour) {
        Some("server-wide per hour")
    } else {
        None
    })
}

/// On PostgreSQL, takes the transaction-scoped advisory lock that every
/// transaction takes before it counts the caps or changes a challenge's
/// state, so they never wait on each other in opposite orders (a deadlock).
pub async fn lock_challenges(conn: &mut AnyConnection) -> Result<(), StoreError> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEND_CAPS_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The PostgreSQL advisory lock key that serialises [`send_cap_reached`]
/// checks ("boxtrap caps" in ASCII).
const SEND_CAPS_LOCK: i64 = 0x626f_7874_6361_7073;

/// The domain of an address as the caps count it: after the last `@`,
/// lower case.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default()
}

/// Opens a challenge; `None` when another one is open for this sender (a
/// concurrent arrival won the race). Never fails on that race, so the
/// caller's transaction stays usable on PostgreSQL too.
pub async fn insert_challenge(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    addressed_to: &str,
    now: Timestamp,
    expires: Timestamp,
) -> Result<Option<i64>, StoreError> {
    // An expired challenge that is still marked open must not block a new one.
    sqlx::query(
        "UPDATE challenges SET state = $4 WHERE mailbox_id = $1 AND sender = $2 AND state = 'open' AND expires_at <= $3",
    )
    .bind(mailbox_id)
    .bind(sender)
    .bind(now.0)
    .bind(ChallengeState::Expired.as_str())
    .execute(&mut *conn)
    .await?;
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    Ok(sqlx::query_scalar(
        "INSERT INTO challenges (mailbox_id, sender, sender_domain, state, created_at, expires_at, addressed_to)
         VALUES ($1, $2, $3, $6, $4, $5, $7)
         ON CONFLICT (mailbox_id, sender) WHERE state = 'open' DO NOTHING RETURNING id",
    )
    .bind(mailbox_id)
    .bind(sender)
    .bind(domain)
    .bind(now.0)
    .bind(expires.0)
    .bind(ChallengeState::Open.as_str())
    .bind(addressed_to)
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

const INSERT_HELD: &str = "INSERT INTO held_messages (mailbox_id, queue_id, rcpt_index, env_sender, original_rcpt, sender,
            sender_name, subject, message_id, date_header, size, arrived_at, reason, reason_detail,
            challenge_id, data, auth_results, spam_score, spam_report, sender_domain, attachments)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
            COALESCE($15, (SELECT id FROM challenges
                           WHERE mailbox_id = $1 AND sender = $6 AND state = 'open' AND expires_at > $12)),
            $16, $17, $18, $19, $20, $21) RETURNING id";

/// Holds a message. Without a `challenge_id` it joins the sender's open,
/// unexpired challenge at `arrived_at`, if there is one (looked up in the
/// same statement).
pub async fn insert_held(conn: &mut AnyConnection, h: &NewHeld<'_>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(INSERT_HELD)
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
        .bind(h.auth_results)
        .bind(h.spam_score)
        .bind(h.spam_report)
        .bind(sender_domain(h.sender))
        .bind(h.attachments)
        .fetch_one(conn)
        .await?)
}

/// The domain of a stored sender address (after its last `@`, lower
/// case); `""` for none. Kept in `held_messages.sender_domain` for the
/// owner's `from:@domain` search.
pub fn sender_domain(sender: &str) -> String {
    sender
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Holds a message and writes its `held` line in the activity log, with
/// `reason_detail` as the detail and the message's id (one statement on
/// PostgreSQL). Joins the sender's open challenge as [`insert_held`] does.
/// Returns the held message's id.
pub async fn hold(
    conn: &mut AnyConnection,
    h: &NewHeld<'_>,
    at: Timestamp,
) -> Result<i64, StoreError> {
    if conn.backend_name() != "PostgreSQL" {
        let id = insert_held(conn, h).await?;
        let line = super::activity::NewEvent {
            held_id: Some(id),
            ..super::activity::NewEvent::new(
                h.mailbox_id,
                at,
                ActivityAction::Held,
                h.sender,
                h.reason_detail,
            )
        };
        super::activity::add_event(conn, &line).await?;
        return Ok(id);
    }
    Ok(
        sqlx::query_scalar(sqlx::AssertSqlSafe(HOLD_WITH_ACTIVITY.as_str()))
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
            .bind(h.auth_results)
            .bind(h.spam_score)
            .bind(h.spam_report)
            .bind(sender_domain(h.sender))
            .bind(h.attachments)
            .bind(at.0)
            .bind(ActivityAction::Held.as_str())
            .fetch_one(conn)
            .await?,
    )
}

/// PostgreSQL: the held row and its activity line in one statement.
static HOLD_WITH_ACTIVITY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH h AS ({INSERT_HELD})
         INSERT INTO activity (mailbox_id, at, action, sender, detail, held_id)
         SELECT $1, $22, $23, $6, $14, h.id FROM h RETURNING held_id"
    )
});

pub async fn insert_outbound(
    conn: &mut AnyConnection,
    o: &NewOutbound<'_>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbound_messages (kind, mailbox_id, challenge_id, env_from, rcpt, rcpt_domain, data, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(o.kind)
    .bind(o.mailbox_id)
    .bind(o.challenge_id)
    .bind(o.env_from)
    .bind(o.rcpt)
    .bind(domain_of(o.rcpt))
    .bind(o.data)
    .bind(o.now.0)
    .fetch_one(conn)
    .await?)
}

pub async fn add_activity(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    at: Timestamp,
    action: ActivityAction,
    sender: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO activity (mailbox_id, at, action, sender, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(mailbox_id)
    .bind(at.0)
    .bind(action.as_str())
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
    Ok(claim_answered(conn, mailbox_id, sender, now, false)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Marks the sender's open challenges of the mailbox verified and claims
/// the sender's held mail there for release; with `linked`, also the
/// copies other mailboxes held under those challenges (one message to
/// several mailboxes is challenged once, by the first). Returns
/// `(held id, mailbox id)` pairs.
pub async fn claim_answered(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    sender: &str,
    now: Timestamp,
    linked: bool,
) -> Result<Vec<(i64, i64)>, StoreError> {
    lock_challenges(conn).await?;
    sqlx::query(
        "UPDATE challenges SET state = $4, verified_at = $1
         WHERE mailbox_id = $2 AND sender = $3 AND state = 'open'",
    )
    .bind(now.0)
    .bind(mailbox_id)
    .bind(sender)
    .bind(ChallengeState::Verified.as_str())
    .execute(&mut *conn)
    .await?;
    let mut claimed: Vec<(i64, i64)> = sqlx::query_as(
        "UPDATE held_messages SET state = $4, claimed_at = $1
         WHERE mailbox_id = $2 AND sender = $3 AND state = 'held' RETURNING id, mailbox_id",
    )
    .bind(now.0)
    .bind(mailbox_id)
    .bind(sender)
    .bind(HeldState::Releasing.as_str())
    .fetch_all(&mut *conn)
    .await?;
    if linked {
        let others: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE held_messages SET state = $4, claimed_at = $1
             WHERE state = 'held' AND mailbox_id <> $2 AND challenge_id IN
               (SELECT id FROM challenges WHERE mailbox_id = $2 AND sender = $3
                  AND state = 'verified' AND verified_at = $1)
             RETURNING id, mailbox_id",
        )
        .bind(now.0)
        .bind(mailbox_id)
        .bind(sender)
        .bind(HeldState::Releasing.as_str())
        .fetch_all(&mut *conn)
        .await?;
        claimed.extend(others);
    }
    Ok(claimed)
}

impl Store {
    pub async fn challenge(&self, id: i64) -> Result<Option<ChallengeRow>, StoreError> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges c JOIN mailboxes m ON m.id = c.mailbox_id
             WHERE c.id = $1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
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
               AND h.state <> 'deleted'
             ORDER BY h.arrived_at DESC, h.id DESC"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id.unwrap_or(0))
            .bind(sender.unwrap_or(""))
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn held(&self, id: i64) -> Result<Option<HeldSummary>, StoreError> {
        let sql = format!(
            "SELECT {HELD_COLUMNS} FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id WHERE h.id = $1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
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
            "UPDATE held_messages SET state = $3, claimed_at = $1 WHERE id = $2 AND state = 'held'",
        )
        .bind(now.0)
        .bind(id)
        .bind(HeldState::Releasing.as_str())
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

    /// Forgets a held message (delivered or expired).
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
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_all(self.pool())
            .await?)
    }

    /// Marks open challenges past their expiry as expired; returns them.
    pub async fn expire_challenges(&self, now: Timestamp) -> Result<Vec<ChallengeRow>, StoreError> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges c JOIN mailboxes m ON m.id = c.mailbox_id
             WHERE c.state = 'open' AND c.expires_at <= $1"
        );
        let expired: Vec<ChallengeRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_all(self.pool())
            .await?;
        for c in &expired {
            sqlx::query("UPDATE challenges SET state = $2 WHERE id = $1 AND state = 'open'")
                .bind(c.id)
                .bind(ChallengeState::Expired.as_str())
                .execute(self.writer())
                .await?;
        }
        Ok(expired)
    }

    pub async fn activity(&self, mailbox_id: i64, limit: i64) -> Result<Vec<Activity>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT at, action, sender, detail FROM activity WHERE mailbox_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(mailbox_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn log_activity(
        &self,
        mailbox_id: i64,
        at: Timestamp,
        action: ActivityAction,
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
                let due: Vec<OutboundRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(now.0)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                for m in &due {
                    sqlx::query("UPDATE outbound_messages SET next_attempt_at = $1 WHERE id = $2")
                        .bind(lease_until.0)
                        .bind(m.id)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(due)
            })
        })
        .await
    }

    /// Every outbound message, newest first (for `boxtrap outbound list` and tests).
    pub async fn list_outbound(&self) -> Result<Vec<OutboundRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, kind, mailbox_id, challenge_id, env_from, rcpt, state, attempts, last_error, created_at
             FROM outbound_messages ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn outbound_data(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        sqlx::query_scalar("SELECT data FROM outbound_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no outbound message {id}")))
    }

    /// Records an attempt: sent, deferred until `next`, or failed for good.
    /// `state` is the text of an [`OutboundState`] (`OutboundState::as_str`).
    pub async fn outbound_attempted(
        &self,
        id: i64,
        state: OutboundState,
        next: Timestamp,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbound_messages SET state = $1, attempts = attempts + 1, next_attempt_at = $2,
                last_error = $3, done_at = CASE WHEN $1 = 'queued' THEN NULL ELSE $4 END
             WHERE id = $5",
        )
        .bind(state.as_str())
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

/// Rows one statement of a retention purge deletes at most. Each batch is a
/// write of its own, so other writers get the (SQLite) writer in between
/// instead of waiting for the whole purge.
pub const PURGE_BATCH: i64 = 1000;

/// How full one mailbox's quarantine is, and its own quota.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QuarantineUse {
    pub mailbox_id: i64,
    /// The mailbox's address (its lookup key).
    pub address: String,
    /// Messages held for it, waiting or being released.
    pub messages: i64,
    /// Their size in bytes, as stored (with boxtrap's `Received:` header).
    pub bytes: i64,
    /// The mailbox's own message quota: `None` for the server's default,
    /// 0 for no limit.
    pub max_messages: Option<i64>,
    /// The mailbox's own byte quota: `None` for the server's default, 0
    /// for no limit.
    pub max_bytes: Option<i64>,
    /// Since when (microseconds since the epoch) new mail has been refused
    /// because the quarantine is full; `None` while it has room.
    pub full_since: Option<i64>,
    /// The `quarantine_usage` rows `messages` and `bytes` are the sums of:
    /// one per held message that came or went since they were last folded
    /// into one ([`Store::compact_quarantine_usage`]).
    pub usage_rows: i64,
}

/// [`QuarantineUse`] rows, `{where}` filling in which mailboxes. The
/// numbers are sums of the few `quarantine_usage` rows the triggers on
/// `held_messages` keep (migration 0006), not counts of held messages.
const QUARANTINE_USE: &str = "SELECT m.id AS mailbox_id, m.address,
        CAST(COALESCE(SUM(u.messages), 0) AS BIGINT) AS messages,
        CAST(COALESCE(SUM(u.bytes), 0) AS BIGINT) AS bytes,
        m.quarantine_max_messages AS max_messages, m.quarantine_max_bytes AS max_bytes,
        m.quarantine_full_since AS full_since, COUNT(u.id) AS usage_rows
     FROM mailboxes m LEFT JOIN quarantine_usage u ON u.mailbox_id = m.id
     WHERE {where}
     GROUP BY m.id, m.address, m.quarantine_max_messages, m.quarantine_max_bytes,
        m.quarantine_full_since
     ORDER BY m.id";

/// Outbound mail queued before `$1` that is sent or failed, except a failed
/// challenge mail whose held mail is still there (its error is shown with
/// it); at most `$2` rows.
const PURGE_OUTBOUND: &str = "DELETE FROM outbound_messages WHERE id IN (
     SELECT o.id FROM outbound_messages o
     WHERE o.created_at < $1 AND o.state <> 'queued'
       AND (o.state <> 'failed' OR o.challenge_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM held_messages h WHERE h.challenge_id = o.challenge_id))
     LIMIT $2)";

/// Challenges issued before `$1` that are answered or expired and that no
/// held message and no queued outbound mail refers to; at most `$2` rows.
const PURGE_CHALLENGES: &str = "DELETE FROM challenges WHERE id IN (
     SELECT c.id FROM challenges c
     WHERE c.created_at < $1 AND c.state <> 'open'
       AND NOT EXISTS (SELECT 1 FROM held_messages h WHERE h.challenge_id = c.id)
       AND NOT EXISTS (SELECT 1 FROM outbound_messages o
                       WHERE o.challenge_id = c.id AND o.state = 'queued')
     LIMIT $2)";

/// Activity lines from before `$1`; at most `$2` rows.
const PURGE_ACTIVITY: &str =
    "DELETE FROM activity WHERE id IN (SELECT id FROM activity WHERE at < $1 LIMIT $2)";

/// The quarantine quota and the retention purges.
impl Store {
    /// How full the quarantines of these mailboxes are, in one query (it
    /// runs for every RCPT to a mailbox with challenge-response on), in id
    /// order; an unknown id is left out.
    pub async fn quarantine_use(
        &self,
        mailbox_ids: &[i64],
    ) -> Result<Vec<QuarantineUse>, StoreError> {
        if mailbox_ids.is_empty() {
            return Ok(Vec::new());
        }
        let params: Vec<String> = (1..=mailbox_ids.len()).map(|i| format!("${i}")).collect();
        let sql = QUARANTINE_USE.replace("{where}", &format!("m.id IN ({})", params.join(", ")));
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in mailbox_ids {
            query = query.bind(*id);
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// The quarantines marked full (for the sweeper, which notes when they
    /// have room again).
    pub async fn full_quarantines(&self) -> Result<Vec<QuarantineUse>, StoreError> {
        let sql = QUARANTINE_USE.replace("{where}", "m.quarantine_full_since IS NOT NULL");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?)
    }

    /// Folds a mailbox's `quarantine_usage` rows into one, keeping their
    /// sums; nothing when there is one or none. Exact beside concurrent
    /// deliveries and other folds: it adds up only the rows its own DELETE
    /// removed, and rows are never updated, so no delivery waits for it.
    pub async fn compact_quarantine_usage(&self, mailbox_id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let gone: Vec<(i64, i64)> = sqlx::query_as(
            "DELETE FROM quarantine_usage WHERE mailbox_id = $1 RETURNING messages, bytes",
        )
        .bind(mailbox_id)
        .fetch_all(&mut *tx)
        .await?;
        if gone.len() < 2 {
            // Rolled back: nothing to fold.
            return Ok(());
        }
        let (messages, bytes) = gone
            .iter()
            .fold((0i64, 0i64), |(m, b), (dm, db)| (m + dm, b + db));
        if (messages, bytes) != (0, 0) {
            sqlx::query(
                "INSERT INTO quarantine_usage (mailbox_id, messages, bytes) VALUES ($1, $2, $3)",
            )
            .bind(mailbox_id)
            .bind(messages)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The mailboxes whose quarantine numbers are spread over more than one
    /// `quarantine_usage` row (for the sweeper to fold).
    pub async fn scattered_quarantine_usage(&self) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT mailbox_id FROM quarantine_usage GROUP BY mailbox_id HAVING COUNT(*) > 1
             ORDER BY mailbox_id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Marks a mailbox's quarantine full at `at` (`full`), or as having room
    /// again, and writes `detail` in its activity log (`quarantine-full`,
    /// `quarantine-room`), both in one transaction; nothing when it is
    /// already so. So each crossing is recorded once, also when several
    /// sessions or nodes see it together. Returns whether this call did.
    pub async fn mark_quarantine_full(
        &self,
        mailbox_id: i64,
        full: bool,
        at: Timestamp,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = if full {
            sqlx::query(
                "UPDATE mailboxes SET quarantine_full_since = $2
                 WHERE id = $1 AND quarantine_full_since IS NULL",
            )
            .bind(mailbox_id)
            .bind(at.0)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE mailboxes SET quarantine_full_since = NULL
                 WHERE id = $1 AND quarantine_full_since IS NOT NULL",
            )
            .bind(mailbox_id)
            .execute(&mut *tx)
            .await?
        }
        .rows_affected()
            == 1;
        if changed {
            let action = if full {
                ActivityAction::QuarantineFull
            } else {
                ActivityAction::QuarantineRoom
            };
            add_activity(&mut tx, mailbox_id, at, action, "", detail).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Deletes sent and failed outbound mail queued before `before`, `batch`
    /// rows per write; mail still queued, and a failed challenge mail whose
    /// held mail is still there, stay. Returns how many rows went.
    pub async fn purge_outbound(&self, before: Timestamp, batch: i64) -> Result<u64, StoreError> {
        self.purge_in_batches(PURGE_OUTBOUND, before, batch).await
    }

    /// Deletes answered and expired challenges issued before `before` that
    /// no held message and no queued outbound mail refers to, `batch` rows
    /// per write. Open challenges stay. Returns how many rows went.
    pub async fn purge_challenges(&self, before: Timestamp, batch: i64) -> Result<u64, StoreError> {
        self.purge_in_batches(PURGE_CHALLENGES, before, batch).await
    }

    /// Deletes activity lines from before `before`, `batch` rows per write.
    /// Returns how many rows went.
    pub async fn purge_activity(&self, before: Timestamp, batch: i64) -> Result<u64, StoreError> {
        self.purge_in_batches(PURGE_ACTIVITY, before, batch).await
    }

    /// Runs a `DELETE ... LIMIT $2` statement until it deletes fewer than
    /// `batch` rows, each run a write (and a commit) of its own.
    pub(super) async fn purge_in_batches(
        &self,
        sql: &'static str,
        before: Timestamp,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let done = sqlx::query(sql)
                .bind(before.0)
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
            total += done;
            if done < batch.unsigned_abs() {
                return Ok(total);
            }
            // Let the writers that queued behind this batch go first.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Domain, EmailAddress};
    use crate::both_backends;
    use crate::store::column::UnknownValue;
    use crate::store::mailboxes::MailboxRef;

    /// A held row put in place with SQL, so these tests do not depend on
    /// how the quarantine fills in the rest.
    async fn held_row(
        store: &Store,
        mailbox_id: i64,
        n: i64,
        challenge_id: Option<i64>,
        size: usize,
    ) {
        sqlx::query(
            "INSERT INTO held_messages (mailbox_id, queue_id, rcpt_index, env_sender, original_rcpt,
                sender, sender_name, subject, message_id, date_header, size, arrived_at, reason,
                reason_detail, challenge_id, data)
             VALUES ($1, $2, 0, '', '', $3, '', '', '', '', $4, 0, 'unknown-sender', '', $5, $6)",
        )
        .bind(mailbox_id)
        .bind(format!("1wGrow-{n:06}-00"))
        .bind(format!("s{n}@example.org"))
        .bind(size as i64)
        .bind(challenge_id)
        .bind(vec![b'x'; size])
        .execute(store.writer())
        .await
        .unwrap();
    }

    /// A challenge row in `state`, issued at `at`.
    async fn challenge_row(
        store: &Store,
        mailbox_id: i64,
        sender: &str,
        state: &str,
        at: Timestamp,
    ) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO challenges (mailbox_id, sender, sender_domain, state, created_at, expires_at)
             VALUES ($1, $2, 'example.org', $3, $4, $5) RETURNING id",
        )
        .bind(mailbox_id)
        .bind(sender)
        .bind(state)
        .bind(at.0)
        .bind(at.plus_secs(86400).0)
        .fetch_one(store.writer())
        .await
        .unwrap()
    }

    /// An outbound row in `state`, queued at `at`.
    async fn outbound_row(
        store: &Store,
        challenge_id: Option<i64>,
        state: &str,
        at: Timestamp,
    ) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO outbound_messages (kind, mailbox_id, challenge_id, env_from, rcpt, data,
                state, next_attempt_at, created_at)
             VALUES ('verify', NULL, $1, '', 'bob@example.org', $2, $3, $4, $4) RETURNING id",
        )
        .bind(challenge_id)
        .bind(b"Subject: verify\r\n\r\nx\r\n".to_vec())
        .bind(state)
        .bind(at.0)
        .fetch_one(store.writer())
        .await
        .unwrap()
    }

    async fn ids(store: &Store, table: &str) -> Vec<i64> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {table} ORDER BY id"
        )))
        .fetch_all(store.pool())
        .await
        .unwrap()
    }

    async fn mailbox(store: &Store, address: &str, now: Timestamp) -> MailboxRef {
        let a = EmailAddress::parse(address).unwrap();
        if store.domain_id(a.domain()).await.unwrap().is_none() {
            store.add_domain(a.domain(), now).await.unwrap();
        }
        store.add_mailbox(&a, "", now).await.unwrap()
    }

    both_backends!(
        quarantine_use_counts_held_rows_and_a_crossing_is_recorded_once,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let alice = mailbox(&store, "alice@example.test", now).await;
            let bob = mailbox(&store, "bob@example.test", now).await;
            for n in 0..3 {
                held_row(&store, alice.id, n, None, 1000 + n as usize).await;
            }
            let used = store
                .quarantine_use(&[bob.id, alice.id, 999_999])
                .await
                .unwrap();
            let summary: Vec<_> = used
                .iter()
                .map(|u| {
                    (
                        u.address.as_str(),
                        u.messages,
                        u.bytes,
                        u.max_messages,
                        u.max_bytes,
                        u.full_since,
                    )
                })
                .collect();
            assert_eq!(
                summary,
                [
                    ("alice@example.test", 3, 3003, None, None, None),
                    ("bob@example.test", 0, 0, None, None, None),
                ]
            );
            assert!(store.quarantine_use(&[]).await.unwrap().is_empty());

            // The mailbox's own quota reads back.
            let mut s = store.mailbox_settings(alice.id).await.unwrap();
            (s.quarantine_max_messages, s.quarantine_max_bytes) = (Some(3), Some(0));
            store.update_mailbox_settings(&s).await.unwrap();
            assert_eq!(store.mailbox_settings(alice.id).await.unwrap(), s);
            let u = &store.quarantine_use(&[alice.id]).await.unwrap()[0];
            assert_eq!((u.max_messages, u.max_bytes), (Some(3), Some(0)));

            // Full: recorded once, however often it is seen.
            let at = now.plus_secs(60);
            let full = "quarantine full: 3 messages, 3003 bytes; new mail refused";
            assert!(
                store
                    .mark_quarantine_full(alice.id, true, at, full)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .mark_quarantine_full(alice.id, true, at.plus_secs(1), full)
                    .await
                    .unwrap()
            );
            let u = &store.quarantine_use(&[alice.id]).await.unwrap()[0];
            assert_eq!(u.full_since, Some(at.0));
            let flagged: Vec<i64> = store
                .full_quarantines()
                .await
                .unwrap()
                .iter()
                .map(|u| u.mailbox_id)
                .collect();
            assert_eq!(flagged, [alice.id]);
            // Room again: recorded once too.
            let room = "quarantine has room again: 2 messages, 2001 bytes";
            assert!(
                store
                    .mark_quarantine_full(alice.id, false, at.plus_secs(2), room)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .mark_quarantine_full(alice.id, false, at.plus_secs(3), room)
                    .await
                    .unwrap()
            );
            assert!(store.full_quarantines().await.unwrap().is_empty());
            let log: Vec<(ActivityAction, String)> = store
                .activity(alice.id, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|a| (a.action, a.detail))
                .collect();
            assert_eq!(
                log,
                [
                    (ActivityAction::QuarantineRoom, room.to_owned()),
                    (ActivityAction::QuarantineFull, full.to_owned()),
                ]
            );
            assert!(store.activity(bob.id, 10).await.unwrap().is_empty());
        }
    );

    /// What the held rows of a mailbox add up to, counted the slow way.
    async fn counted(store: &Store, mailbox_id: i64) -> (i64, i64) {
        sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM held_messages
             WHERE mailbox_id = $1 AND state <> 'deleted'",
        )
        .bind(mailbox_id)
        .fetch_one(store.pool())
        .await
        .unwrap()
    }

    async fn usage(store: &Store, mailbox_id: i64) -> (i64, i64, i64) {
        let u = &store.quarantine_use(&[mailbox_id]).await.unwrap()[0];
        (u.messages, u.bytes, u.usage_rows)
    }

    both_backends!(
        quarantine_numbers_follow_held_mail_through_deletes_folds_and_removal,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let alice = mailbox(&store, "alice@example.test", now).await;
            let bob = mailbox(&store, "bob@example.test", now).await;
            for n in 0..5 {
                held_row(&store, alice.id, n, None, 100 + n as usize).await;
            }
            held_row(&store, bob.id, 99, None, 7).await;
            assert_eq!(usage(&store, alice.id).await, (5, 510, 5));
            // A message goes as the sweeper, a release or the owner removes it.
            let ids = store.list_held(Some(alice.id), None).await.unwrap();
            assert!(store.remove_held(ids[0].id).await.unwrap());
            let by = crate::store::deleted::ActedBy::default();
            let deleted = store
                .delete_held(alice.id, &[ids[1].id], now, by)
                .await
                .unwrap();
            assert_eq!(deleted.len(), 1);
            let left = counted(&store, alice.id).await;
            assert_eq!(left.0, 3);
            assert_eq!(usage(&store, alice.id).await, (left.0, left.1, 7));
            // Restored, it counts again; deleted again and purged, it
            // leaves once.
            let back = store.restore_held(alice.id, &[ids[1].id], now, by).await;
            assert_eq!(back.unwrap().len(), 1);
            assert_eq!(usage(&store, alice.id).await, (4, left.1 + ids[1].size, 8));
            store
                .delete_held(alice.id, &[ids[1].id], now, by)
                .await
                .unwrap();
            assert_eq!(store.purge_deleted(now.plus_secs(1), 100).await.unwrap(), 1);
            assert_eq!(usage(&store, alice.id).await, (left.0, left.1, 9));
            assert_eq!(
                store.scattered_quarantine_usage().await.unwrap(),
                [alice.id]
            );
            // Folded into one row, the same numbers.
            store.compact_quarantine_usage(alice.id).await.unwrap();
            assert_eq!(usage(&store, alice.id).await, (left.0, left.1, 1));
            store.compact_quarantine_usage(alice.id).await.unwrap();
            assert_eq!(usage(&store, alice.id).await, (left.0, left.1, 1));
            assert!(store.scattered_quarantine_usage().await.unwrap().is_empty());

            // Deliveries and folds at the same time: nothing lost, nothing
            // counted twice.
            let mut tasks = Vec::new();
            for t in 0..8i64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..10 {
                        held_row(&store, alice.id, 1000 + t * 100 + i, None, 10 + i as usize).await;
                        if i % 3 == 0 {
                            store.compact_quarantine_usage(alice.id).await.unwrap();
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let counted_now = counted(&store, alice.id).await;
            assert_eq!(counted_now.0, 83);
            let (messages, bytes, _) = usage(&store, alice.id).await;
            assert_eq!((messages, bytes), counted_now);

            // Everything gone: folded to nothing.
            sqlx::query("DELETE FROM held_messages WHERE mailbox_id = $1")
                .bind(alice.id)
                .execute(store.writer())
                .await
                .unwrap();
            store.compact_quarantine_usage(alice.id).await.unwrap();
            assert_eq!(usage(&store, alice.id).await, (0, 0, 0));

            // Removing a mailbox with held mail takes its numbers with it.
            held_row(&store, alice.id, 2000, None, 5).await;
            store
                .remove_mailbox(&EmailAddress::parse("alice@example.test").unwrap())
                .await
                .unwrap();
            let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantine_usage")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(rows, 1, "bob's row only");
            assert_eq!(usage(&store, bob.id).await, (1, 7, 1));
        }
    );

    both_backends!(
        retention_purges_old_rows_in_batches_and_keeps_what_is_still_needed,
        |store: Store| async move {
            let t0 = Timestamp::from_secs(1_000_000);
            let alice = mailbox(&store, "alice@example.test", t0).await;
            // Challenges, all issued at t0.
            let open = challenge_row(&store, alice.id, "open@example.org", "open", t0).await;
            let verified = challenge_row(&store, alice.id, "v@example.org", "verified", t0).await;
            let expired = challenge_row(&store, alice.id, "e@example.org", "expired", t0).await;
            let held_ref = challenge_row(&store, alice.id, "h@example.org", "expired", t0).await;
            let queued_ref = challenge_row(&store, alice.id, "q@example.org", "expired", t0).await;
            let young = challenge_row(
                &store,
                alice.id,
                "y@example.org",
                "verified",
                t0.plus_secs(10),
            )
            .await;
            held_row(&store, alice.id, 1, Some(held_ref), 10).await;
            // Outbound mail, queued at t0 unless said otherwise.
            let _sent = outbound_row(&store, Some(verified), "sent", t0).await;
            let _failed = outbound_row(&store, None, "failed", t0).await;
            let failed_for_held = outbound_row(&store, Some(held_ref), "failed", t0).await;
            let _failed_unheld = outbound_row(&store, Some(expired), "failed", t0).await;
            let queued = outbound_row(&store, Some(queued_ref), "queued", t0).await;
            let sent_young = outbound_row(&store, None, "sent", t0.plus_secs(10)).await;
            // Activity: five old lines, one young.
            for i in 0..5 {
                store
                    .log_activity(
                        alice.id,
                        t0.plus_secs(i),
                        ActivityAction::Held,
                        "a@example.org",
                        "old",
                    )
                    .await
                    .unwrap();
            }
            store
                .log_activity(
                    alice.id,
                    t0.plus_secs(10),
                    ActivityAction::Held,
                    "a@example.org",
                    "young",
                )
                .await
                .unwrap();

            let cutoff = t0.plus_secs(5);
            // Batches of 2: several writes each, until one deletes less.
            assert_eq!(store.purge_outbound(cutoff, 2).await.unwrap(), 3);
            assert_eq!(
                ids(&store, "outbound_messages").await,
                [failed_for_held, queued, sent_young]
            );
            assert_eq!(store.purge_challenges(cutoff, 2).await.unwrap(), 2);
            assert_eq!(
                ids(&store, "challenges").await,
                [open, held_ref, queued_ref, young]
            );
            assert_eq!(store.purge_activity(cutoff, 2).await.unwrap(), 5);
            let left: Vec<String> = store
                .activity(alice.id, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.detail)
                .collect();
            assert_eq!(left, ["young"]);
            // A second pass finds nothing more.
            assert_eq!(store.purge_outbound(cutoff, 2).await.unwrap(), 0);
            assert_eq!(store.purge_challenges(cutoff, 2).await.unwrap(), 0);
            assert_eq!(store.purge_activity(cutoff, 2).await.unwrap(), 0);

            // Once the queued mail is sent and the held mail gone, the rest goes.
            sqlx::query("UPDATE outbound_messages SET state = 'sent' WHERE id = $1")
                .bind(queued)
                .execute(store.writer())
                .await
                .unwrap();
            sqlx::query("DELETE FROM held_messages")
                .execute(store.writer())
                .await
                .unwrap();
            assert_eq!(store.purge_outbound(cutoff, 1000).await.unwrap(), 2);
            assert_eq!(store.purge_challenges(cutoff, 1000).await.unwrap(), 2);
            assert_eq!(ids(&store, "challenges").await, [open, young]);
            assert_eq!(ids(&store, "outbound_messages").await, [sent_young]);
        }
    );

    #[test]
    fn states_read_back_what_they_store_and_name_an_unknown_value() {
        fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str)
        where
            T: Copy + PartialEq + std::fmt::Debug + TryFrom<String, Error = UnknownValue>,
        {
            for &v in all {
                assert_eq!(T::try_from(as_str(v).to_owned()), Ok(v));
            }
        }
        round_trips(HeldState::ALL, HeldState::as_str);
        round_trips(ChallengeState::ALL, ChallengeState::as_str);
        round_trips(OutboundState::ALL, OutboundState::as_str);
        round_trips(ActivityAction::ALL, ActivityAction::as_str);
        assert_eq!(HeldState::Releasing.to_string(), "releasing");
        assert_eq!(format!("[{:>7}]", HeldState::Held), "[   held]");
        assert_eq!(
            ActivityAction::ChallengeExpired.as_str(),
            "challenge-expired"
        );
        let e = "Held".parse::<HeldState>().unwrap_err();
        assert_eq!(e.to_string(), "unknown held state \"Held\"");
        let e = ChallengeState::try_from("closed".to_owned()).unwrap_err();
        assert_eq!(e.to_string(), "unknown challenge state \"closed\"");
    }

    /// example.test with alice, who has mail held from bob (two messages,
    /// with an open challenge) and from carol (one).
    async fn alice_with_held_mail(store: &Store, now: Timestamp) -> MailboxRef {
        store
            .add_domain(&Domain::parse("example.test").unwrap(), now)
            .await
            .unwrap();
        let alice = store
            .add_mailbox(&EmailAddress::parse("alice@example.test").unwrap(), "", now)
            .await
            .unwrap();
        let mut tx = store.begin_write().await.unwrap();
        let challenge = insert_challenge(
            &mut tx,
            alice.id,
            "bob@example.org",
            "alice@example.test",
            now,
            now.plus_secs(86400),
        )
        .await
        .unwrap();
        assert!(challenge.is_some());
        for (i, sender) in ["bob@example.org", "bob@example.org", "carol@example.org"]
            .into_iter()
            .enumerate()
        {
            insert_held(
                &mut tx,
                &NewHeld {
                    mailbox_id: alice.id,
                    queue_id: &format!("1wH3kL-00000{i}-2k"),
                    rcpt_index: 0,
                    env_sender: sender,
                    original_rcpt: "alice@example.test",
                    sender,
                    sender_name: "",
                    subject: "hello",
                    message_id: "",
                    date_header: "",
                    arrived_at: now,
                    reason: "unknown-sender",
                    reason_detail: "unknown sender",
                    challenge_id: if sender.starts_with("bob") {
                        challenge
                    } else {
                        None
                    },
                    data: b"Subject: hello\r\n\r\nhi\r\n",
                    auth_results: "",
                    spam_score: None,
                    spam_report: "",
                    attachments: None,
                },
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        alice
    }

    both_backends!(
        a_second_claim_of_a_senders_held_mail_gets_none,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let alice = alice_with_held_mail(&store, now).await;
            let claim = |sender: &'static str| {
                let store = store.clone();
                async move {
                    store
                        .write(move |conn| {
                            Box::pin(claim_for_release(conn, alice.id, sender, now.plus_secs(5)))
                        })
                        .await
                        .unwrap()
                }
            };
            let first = claim("bob@example.org").await;
            assert_eq!(first.len(), 2);
            assert!(claim("bob@example.org").await.is_empty());

            let held = store.list_held(Some(alice.id), None).await.unwrap();
            let state_of = |sender: &str| -> Vec<HeldState> {
                held.iter()
                    .filter(|h| h.sender == sender)
                    .map(|h| h.state)
                    .collect()
            };
            assert_eq!(state_of("bob@example.org"), [HeldState::Releasing; 2]);
            assert_eq!(state_of("carol@example.org"), [HeldState::Held]);
            let challenge_id = held
                .iter()
                .find_map(|h| h.challenge_id)
                .expect("bob's mail has a challenge");
            let c = store.challenge(challenge_id).await.unwrap().unwrap();
            assert_eq!(c.state, ChallengeState::Verified);
            assert_eq!(c.mailbox, "alice@example.test");
            // Claimed messages are neither deleted nor claimed one by one.
            for id in &first {
                assert!(!store.claim_held(*id, now).await.unwrap());
                let by = crate::store::deleted::ActedBy::default();
                let deleted = store.delete_held(alice.id, &[*id], now, by).await;
                assert!(deleted.unwrap().is_empty());
            }
            assert_eq!(claim("carol@example.org").await.len(), 1);
        }
    );

    both_backends!(
        an_outbound_message_is_leased_to_one_claim_until_the_lease_ends,
        |store: Store| async move {
            let t0 = Timestamp::from_secs(1000);
            let mut conn = store.writer().acquire().await.unwrap();
            let id = insert_outbound(
                &mut conn,
                &NewOutbound {
                    kind: "verify",
                    mailbox_id: None,
                    challenge_id: None,
                    env_from: "",
                    rcpt: "bob@example.org",
                    data: b"Subject: verify\r\n\r\nx\r\n",
                    now: t0,
                },
            )
            .await
            .unwrap();
            drop(conn);
            let lease = t0.plus_secs(900);
            let due = store.claim_due_outbound(t0, lease, 10).await.unwrap();
            assert_eq!(due.len(), 1);
            let m = &due[0];
            assert_eq!(
                (m.id, m.kind.as_str(), m.rcpt.as_str()),
                (id, "verify", "bob@example.org")
            );
            assert_eq!(
                (m.state, m.attempts, m.created_at),
                (OutboundState::Queued, 0, t0)
            );
            // Leased: another worker at the same time, or just before the
            // lease ends, finds nothing.
            assert!(
                store
                    .claim_due_outbound(t0, lease, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                store
                    .claim_due_outbound(lease.plus_secs(-1), lease.plus_secs(899), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // The worker died without recording an attempt: due again.
            let again = store
                .claim_due_outbound(lease, lease.plus_secs(900), 10)
                .await
                .unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].id, id);
            // Sent: never due again.
            store
                .outbound_attempted(id, OutboundState::Sent, lease, "", lease)
                .await
                .unwrap();
            let later = lease.plus_secs(86400);
            assert!(
                store
                    .claim_due_outbound(later, later, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                store.list_outbound().await.unwrap()[0].state,
                OutboundState::Sent
            );
        }
    );

    both_backends!(
        a_state_no_variant_stores_fails_the_read_naming_it,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let alice = alice_with_held_mail(&store, now).await;
            sqlx::query(
                "UPDATE held_messages SET state = 'frozen' WHERE sender = 'carol@example.org'",
            )
            .execute(store.writer())
            .await
            .unwrap();
            let e = store.list_held(Some(alice.id), None).await.unwrap_err();
            assert!(
                e.to_string().contains("unknown held state \"frozen\""),
                "{e}"
            );
        }
    );
}
