//! Releasing many held messages at once: claim them in one write, read
//! them (and their bodies) in few queries, and forget them with their
//! activity lines in one write. [`crate::quarantine`] delivers them in
//! between.

use super::activity::{NewEvent, add_events};
use super::deleted::{IDS_PER_STATEMENT, placeholders, summaries};
use super::held::{ActivityAction, HeldState, HeldSummary};
use super::{Store, StoreError};
use crate::clock::Timestamp;

impl Store {
    /// Claims those of `ids` that are still held (state `held`) for
    /// delivery, in one write; returns the ids claimed, in id order.
    pub async fn claim_held_many(
        &self,
        ids: &[i64],
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE held_messages SET state = $1, claimed_at = $2
                 WHERE state = 'held' AND id IN ({}) RETURNING id",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(HeldState::Releasing.as_str())
                .bind(now.0);
            for id in chunk {
                q = q.bind(*id);
            }
            claimed.extend(q.fetch_all(&mut *tx).await?);
        }
        tx.commit().await?;
        claimed.sort_unstable();
        Ok(claimed)
    }

    /// The held messages `ids` (any state, without their bodies), in id
    /// order.
    pub async fn held_many(&self, ids: &[i64]) -> Result<Vec<HeldSummary>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        summaries(&mut conn, ids).await
    }

    /// The bodies of the held messages `ids`, as `(id, data)` in id order.
    pub async fn held_data_many(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id, data FROM held_messages WHERE id IN ({}) ORDER BY id",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(out)
    }

    /// Forgets delivered held messages and writes their `released` lines
    /// (`detail` each), in one write.
    pub async fn finish_releases(
        &self,
        done: &[(&HeldSummary, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let ids: Vec<i64> = done.iter().map(|(h, _)| h.id).collect();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM held_messages WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        let events: Vec<NewEvent<'_>> = done
            .iter()
            .map(|(h, detail)| NewEvent {
                held_id: Some(h.id),
                ..NewEvent::new(
                    h.mailbox_id,
                    now,
                    ActivityAction::Released,
                    &h.sender,
                    detail,
                )
            })
            .collect();
        add_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(())
    }
}
