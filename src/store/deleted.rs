//! Soft deletion of held mail (migration 0015): the owner's delete sets
//! state `deleted` and `deleted_at`; the owner can restore the message
//! until the sweeper purges it `[challenge] keep_deleted` later. A deleted
//! message is outside the quota (the usage triggers move it out and back),
//! its expiry and every release; the quarantine's lists show it only when
//! asked for (`in:deleted`). Also when the owner has seen a message.

use super::activity::{NewEvent, add_events};
use super::held::{ActivityAction, ChallengeState, HeldState, HeldSummary};
use super::{Store, StoreError};
use crate::clock::Timestamp;
use sqlx::AnyConnection;

/// Ids bound into one `IN (...)` list: well under SQLite's 32,766
/// variables and PostgreSQL's 65,535.
pub(super) const IDS_PER_STATEMENT: usize = 500;

/// Deleted mail deleted before `$1`; at most `$2` rows.
const PURGE_DELETED: &str = "DELETE FROM held_messages WHERE id IN (
     SELECT id FROM held_messages WHERE state = 'deleted' AND deleted_at < $1 LIMIT $2)";

/// Who changed a held message, for its activity line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActedBy<'a> {
    /// Who did it when it was not the owner: an admin's address; `""`:
    /// the owner.
    pub actor: &'a str,
    /// The client address of the web request behind it (`""`: none, as
    /// from the CLI).
    pub client_ip: &'a str,
}

/// `$first, $first+1, ...` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets `state` (and `deleted_at`) on those of `ids` of the mailbox that
/// are in state `from`; the ids changed.
async fn set_state(
    conn: &mut AnyConnection,
    mailbox_id: i64,
    ids: &[i64],
    from: HeldState,
    to: HeldState,
    deleted_at: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let mut changed = Vec::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE held_messages SET state = $1, deleted_at = $2
             WHERE mailbox_id = $3 AND state = $4 AND id IN ({}) RETURNING id",
            placeholders(5, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(deleted_at)
            .bind(mailbox_id)
            .bind(from.as_str());
        for id in chunk {
            q = q.bind(*id);
        }
        changed.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(changed)
}

/// The held rows `ids` (any state), in id order.
pub(super) async fn summaries(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<Vec<HeldSummary>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {} FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id
             WHERE h.id IN ({}) ORDER BY h.id",
            super::held::HELD_COLUMNS,
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// One activity line per message.
async fn log_each(
    conn: &mut AnyConnection,
    rows: &[HeldSummary],
    now: Timestamp,
    action: ActivityAction,
    by: ActedBy<'_>,
) -> Result<(), StoreError> {
    let events: Vec<NewEvent<'_>> = rows
        .iter()
        .map(|h| NewEvent {
            held_id: Some(h.id),
            actor: by.actor,
            client_ip: by.client_ip,
            ..NewEvent::new(h.mailbox_id, now, action, &h.sender, &h.subject)
        })
        .collect();
    add_events(conn, &events).await?;
    Ok(())
}

impl Store {
    /// Deletes the mailbox's held messages `ids` softly, all in one
    /// transaction: those in state `held` (not being released, not
    /// already deleted) get state `deleted` and `deleted_at = now`, and an
    /// activity line each. A sender left with no held mail in the mailbox
    /// has their open challenge closed: a late click must not allow a
    /// sender whose mail the owner threw away. Returns the messages
    /// deleted (ids of other mailboxes, and messages in other states, are
    /// passed over).
    pub async fn delete_held(
        &self,
        mailbox_id: i64,
        ids: &[i64],
        now: Timestamp,
        by: ActedBy<'_>,
    ) -> Result<Vec<HeldSummary>, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = set_state(
            &mut tx,
            mailbox_id,
            ids,
            HeldState::Held,
            HeldState::Deleted,
            Some(now.0),
        )
        .await?;
        let rows = summaries(&mut tx, &changed).await?;
        let mut senders: Vec<&str> = rows.iter().map(|h| h.sender.as_str()).collect();
        senders.sort_unstable();
        senders.dedup();
        for sender in senders {
            sqlx::query(
                "UPDATE challenges SET state = $3 WHERE mailbox_id = $1 AND sender = $2
                   AND state = 'open' AND NOT EXISTS (SELECT 1 FROM held_messages h
                     WHERE h.mailbox_id = $1 AND h.sender = $2 AND h.state <> 'deleted')",
            )
            .bind(mailbox_id)
            .bind(sender)
            .bind(ChallengeState::Expired.as_str())
            .execute(&mut *tx)
            .await?;
        }
        log_each(&mut tx, &rows, now, ActivityAction::Deleted, by).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Restores the mailbox's deleted messages `ids` to the quarantine
    /// (state `held`), in one transaction, with an activity line each.
    /// Their challenge stays as it is (closed, when the delete closed it).
    /// Returns the messages restored.
    pub async fn restore_held(
        &self,
        mailbox_id: i64,
        ids: &[i64],
        now: Timestamp,
        by: ActedBy<'_>,
    ) -> Result<Vec<HeldSummary>, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = set_state(
            &mut tx,
            mailbox_id,
            ids,
            HeldState::Deleted,
            HeldState::Held,
            None,
        )
        .await?;
        let rows = summaries(&mut tx, &changed).await?;
        log_each(&mut tx, &rows, now, ActivityAction::Restored, by).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The ids (with sender) of the mailbox's messages deleted at exactly
    /// `at`: what one delete action deleted, for its "Undo".
    pub async fn deleted_together(
        &self,
        mailbox_id: i64,
        at: Timestamp,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, sender FROM held_messages
             WHERE mailbox_id = $1 AND state = 'deleted' AND deleted_at = $2 ORDER BY id",
        )
        .bind(mailbox_id)
        .bind(at.0)
        .fetch_all(self.pool())
        .await?)
    }

    /// When a held message was deleted; `None` when it is not deleted (or
    /// not there).
    pub async fn deleted_at(&self, id: i64) -> Result<Option<Timestamp>, StoreError> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT deleted_at FROM held_messages WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(at.flatten().map(Timestamp))
    }

    /// Marks the mailbox's messages `ids` seen (at `now`) or not seen;
    /// returns how many changed.
    pub async fn mark_seen(
        &self,
        mailbox_id: i64,
        ids: &[i64],
        seen: bool,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut n = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE held_messages SET seen_at = $1 WHERE mailbox_id = $2
                   AND (seen_at IS NULL) = $3 AND id IN ({})",
                placeholders(4, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(seen.then_some(now.0))
                .bind(mailbox_id)
                .bind(seen);
            for id in chunk {
                q = q.bind(*id);
            }
            n += q.execute(&mut *tx).await?.rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Purges messages deleted before `before` for good, `batch` rows to
    /// a write. Returns how many went.
    pub async fn purge_deleted(&self, before: Timestamp, batch: i64) -> Result<u64, StoreError> {
        self.purge_in_batches(PURGE_DELETED, before, batch).await
    }
}
