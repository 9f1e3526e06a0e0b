//! The delivery queue: messages whose delivery into a Maildir failed
//! temporarily (disk full, permissions) wait here, committed before the
//! client got its 250, and the retry worker delivers them later.

use super::column::text_enum;
use super::held::OutboundRow;
use super::{Backend, Store, StoreError};
use crate::clock::Timestamp;

text_enum! {
    /// Where a queued recipient is (`queued_recipients.state`).
    pub enum QueueState("queue state") {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// Out of retries; listed until the admin deletes it.
        Failed = "failed",
    }
}

/// A message to queue, with the recipients still to be delivered.
#[derive(Debug, Clone)]
pub struct NewQueuedMessage<'a> {
    pub queue_id: &'a str,
    /// Empty for the null sender.
    pub sender: &'a str,
    pub arrived_at: Timestamp,
    pub data: &'a [u8],
    pub recipients: Vec<NewQueuedRecipient>,
}

#[derive(Debug, Clone)]
pub struct NewQueuedRecipient {
    pub rcpt_index: i64,
    pub mailbox_id: i64,
    pub original: String,
    pub next_attempt_at: Timestamp,
    pub last_error: String,
}

const DUE_DELIVERIES: &str =
    "SELECT r.id, r.queue_id, q.sender, q.arrived_at, r.rcpt_index, m.address AS mailbox,
            r.original, r.attempts
     FROM queued_recipients r
     JOIN queued_messages q ON q.queue_id = r.queue_id
     JOIN mailboxes m ON m.id = r.mailbox_id
     WHERE r.state = 'pending' AND r.next_attempt_at <= $1
     ORDER BY r.next_attempt_at, r.id LIMIT $2";

/// One recipient's pending delivery, as the retry worker sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedDelivery {
    pub id: i64,
    pub queue_id: String,
    pub sender: String,
    #[sqlx(try_from = "i64")]
    pub arrived_at: Timestamp,
    pub rcpt_index: i64,
    pub mailbox: String,
    pub original: String,
    pub attempts: i64,
}

/// A row of `boxtrap queue list`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueEntry {
    pub queue_id: String,
    pub sender: String,
    #[sqlx(try_from = "i64")]
    pub arrived_at: Timestamp,
    pub size: i64,
    pub mailbox: String,
    pub state: QueueState,
    pub attempts: i64,
    #[sqlx(try_from = "i64")]
    pub next_attempt_at: Timestamp,
    pub last_error: String,
}

impl Store {
    /// Queues a message and its pending recipients in one transaction.
    pub async fn enqueue(&self, msg: &NewQueuedMessage<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO queued_messages (queue_id, sender, arrived_at, data) VALUES ($1, $2, $3, $4)")
            .bind(msg.queue_id)
            .bind(msg.sender)
            .bind(msg.arrived_at.0)
            .bind(msg.data)
            .execute(&mut *tx)
            .await?;
        for r in &msg.recipients {
            sqlx::query(
                "INSERT INTO queued_recipients
                 (queue_id, rcpt_index, mailbox_id, original, attempts, next_attempt_at, last_error)
                 VALUES ($1, $2, $3, $4, 1, $5, $6)",
            )
            .bind(msg.queue_id)
            .bind(r.rcpt_index)
            .bind(r.mailbox_id)
            .bind(&r.original)
            .bind(r.next_attempt_at.0)
            .bind(&r.last_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes up to `limit` deliveries due at `now`, oldest first, leasing
    /// each until `lease_until` so no other worker (another node's, or
    /// `boxtrap queue run`) takes it meanwhile. On PostgreSQL rows another
    /// worker is claiming are skipped (`FOR UPDATE SKIP LOCKED`), never
    /// waited for; on SQLite the claim runs on the one writer.
    pub async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<QueuedDelivery>, StoreError> {
        let select = match self.backend() {
            Backend::Postgres => DUE_DELIVERIES.to_owned() + " FOR UPDATE OF r SKIP LOCKED",
            Backend::Sqlite => DUE_DELIVERIES.to_owned(),
        };
        self.write(move |conn| {
            let select = select.clone();
            Box::pin(async move {
                let due: Vec<QueuedDelivery> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(now.0)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                for d in &due {
                    sqlx::query("UPDATE queued_recipients SET next_attempt_at = $1 WHERE id = $2")
                        .bind(lease_until.0)
                        .bind(d.id)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(due)
            })
        })
        .await
    }

    pub async fn queued_data(&self, queue_id: &str) -> Result<Vec<u8>, StoreError> {
        sqlx::query_scalar("SELECT data FROM queued_messages WHERE queue_id = $1")
            .bind(queue_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no queued message {queue_id}")))
    }

    /// The delivery is done: forget the recipient, and the message with its
    /// last recipient. Returns true when the whole message is complete.
    pub async fn delivery_done(&self, id: i64, queue_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM queued_recipients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM queued_recipients WHERE queue_id = $1")
                .bind(queue_id)
                .fetch_one(&mut *tx)
                .await?;
        if left == 0 {
            sqlx::query("DELETE FROM queued_messages WHERE queue_id = $1")
                .bind(queue_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(left == 0)
    }

    pub async fn delivery_deferred(
        &self,
        id: i64,
        next: Timestamp,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE queued_recipients SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2
             WHERE id = $3",
        )
        .bind(next.0)
        .bind(error)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Gives up on a delivery; it stays listed as failed until deleted.
    pub async fn delivery_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE queued_recipients SET attempts = attempts + 1, state = $3, last_error = $1
             WHERE id = $2",
        )
        .bind(error)
        .bind(id)
        .bind(QueueState::Failed.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Every queued recipient, oldest message first.
    pub async fn list_queue(&self) -> Result<Vec<QueueEntry>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT q.queue_id, q.sender, q.arrived_at, LENGTH(q.data) AS size, m.address AS mailbox,
                    r.state, r.attempts, r.next_attempt_at, r.last_error
             FROM queued_recipients r
             JOIN queued_messages q ON q.queue_id = r.queue_id
             JOIN mailboxes m ON m.id = r.mailbox_id
             ORDER BY q.arrived_at, q.queue_id, r.rcpt_index",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes a queued message and all its recipients.
    pub async fn delete_queued(&self, queue_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM queued_recipients WHERE queue_id = $1")
            .bind(queue_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM queued_messages WHERE queue_id = $1")
            .bind(queue_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no queued message {queue_id}"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes every pending delivery due now (`boxtrap queue run`, Exim's `-qff`).
    pub async fn make_all_due(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(
            sqlx::query(
                "UPDATE queued_recipients SET next_attempt_at = $1 WHERE state = 'pending'",
            )
            .bind(now.0)
            .execute(self.writer())
            .await?
            .rows_affected(),
        )
    }
}

const DUE_OUTBOUND_PAGE: &str =
    "SELECT id, kind, mailbox_id, challenge_id, env_from, rcpt, state, attempts, last_error, created_at
     FROM outbound_messages WHERE state = 'queued' AND next_attempt_at <= $1
     ORDER BY next_attempt_at, id LIMIT $2 OFFSET $3";

/// Claims on the outbound queue (`outbound_messages`, written by
/// [`super::held`]) for a worker that sends to several destinations at
/// once but one message at a time per destination domain: it reads what
/// is due, picks, and claims only what it starts now, so nothing it
/// claimed waits in memory for its turn.
impl Store {
    /// Outbound messages due at `now`, oldest first: up to `limit` of them
    /// after the first `offset`. Nothing is claimed.
    pub async fn due_outbound(
        &self,
        now: Timestamp,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<OutboundRow>, StoreError> {
        Ok(sqlx::query_as(DUE_OUTBOUND_PAGE)
            .bind(now.0)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?)
    }

    /// Claims those of the outbound messages `ids` that are still queued
    /// and due at `now`, leasing each until `lease_until`: not due again
    /// before then, so a claim that a crash leaves behind lapses and the
    /// message is sent later. Returns the ids claimed. The update checks
    /// each row again, so of two workers (on one node or several sharing
    /// PostgreSQL) only one claims a message.
    pub async fn claim_outbound(
        &self,
        ids: &[i64],
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "UPDATE outbound_messages SET next_attempt_at = $1
             WHERE state = 'queued' AND next_attempt_at <= $2 AND id IN ({})
             RETURNING id",
            list.join(", ")
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(lease_until.0)
            .bind(now.0);
        for id in ids {
            query = query.bind(*id);
        }
        Ok(query.fetch_all(self.writer()).await?)
    }

    /// Gives back a claim made with [`Store::claim_outbound`] before the
    /// message was tried (a worker stopping): due again at `at`, attempts
    /// and last error unchanged. Only a claim still held, leased until
    /// `lease_until`, is given back; returns whether it was.
    pub async fn release_outbound(
        &self,
        id: i64,
        lease_until: Timestamp,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbound_messages SET next_attempt_at = $1
             WHERE id = $2 AND state = 'queued' AND next_attempt_at = $3",
        )
        .bind(at.0)
        .bind(id)
        .bind(lease_until.0)
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
    use crate::store::held::{NewOutbound, insert_outbound};

    async fn queue_outbound(store: &Store, rcpt: &'static str, now: Timestamp) -> i64 {
        store
            .write(move |c| {
                Box::pin(async move {
                    let o = NewOutbound {
                        kind: "verify",
                        mailbox_id: None,
                        challenge_id: None,
                        env_from: "",
                        rcpt,
                        data: b"Subject: x\r\n\r\nx\r\n",
                        now,
                    };
                    insert_outbound(c, &o).await
                })
            })
            .await
            .unwrap()
    }

    both_backends!(
        outbound_claims_are_taken_once_lapse_and_are_given_back,
        |store: Store| async move {
            let t0 = Timestamp::from_secs(1000);
            let a = queue_outbound(&store, "a@one.example", t0).await;
            let b = queue_outbound(&store, "b@two.example", t0.plus_secs(1)).await;
            let c = queue_outbound(&store, "c@three.example", t0.plus_secs(60)).await;
            let now = t0.plus_secs(10);
            let ids = |rows: Vec<OutboundRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
            // Due, oldest first, in pages; c is not due yet.
            assert_eq!(ids(store.due_outbound(now, 0, 10).await.unwrap()), [a, b]);
            assert_eq!(ids(store.due_outbound(now, 1, 10).await.unwrap()), [b]);
            assert_eq!(ids(store.due_outbound(now, 0, 1).await.unwrap()), [a]);

            let lease = now.plus_secs(600);
            // c is not due: not claimed.
            assert_eq!(
                store.claim_outbound(&[a, c], now, lease).await.unwrap(),
                [a]
            );
            // Claimed once only: a second worker gets nothing.
            assert!(
                store
                    .claim_outbound(&[a], now, lease)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(ids(store.due_outbound(now, 0, 10).await.unwrap()), [b]);

            // Only the holder of the claim can give it back.
            assert!(
                !store
                    .release_outbound(a, lease.plus_secs(1), now)
                    .await
                    .unwrap()
            );
            assert!(store.release_outbound(a, lease, now).await.unwrap());
            assert_eq!(ids(store.due_outbound(now, 0, 10).await.unwrap()), [b, a]);

            // A claim a crash left behind lapses at the end of its lease.
            assert_eq!(store.claim_outbound(&[a], now, lease).await.unwrap(), [a]);
            assert!(
                !ids(store
                    .due_outbound(lease.plus_secs(-1), 0, 10)
                    .await
                    .unwrap())
                .contains(&a)
            );
            assert_eq!(
                ids(store.due_outbound(lease, 0, 10).await.unwrap()),
                [b, c, a]
            );
            let listed = store.list_outbound().await.unwrap();
            assert!(listed.iter().all(|r| r.attempts == 0), "no attempt counted");
        }
    );

    both_backends!(
        queued_deliveries_are_claimed_deferred_and_completed,
        |store: Store| async move {
            let t0 = Timestamp::from_secs(1000);
            store
                .add_domain(&Domain::parse("example.test").unwrap(), t0)
                .await
                .unwrap();
            let alice = store
                .add_mailbox(&EmailAddress::parse("alice@example.test").unwrap(), "", t0)
                .await
                .unwrap();
            let bob = store
                .add_mailbox(&EmailAddress::parse("bob@example.test").unwrap(), "", t0)
                .await
                .unwrap();
            let rcpt = |idx, m: &crate::store::mailboxes::MailboxRef| NewQueuedRecipient {
                rcpt_index: idx,
                mailbox_id: m.id,
                original: m.address.clone(),
                next_attempt_at: t0.plus_secs(60),
                last_error: "disk full".into(),
            };
            let data = b"Subject: x\r\n\r\nbody \xff\x00 bytes\r\n".to_vec();
            store
                .enqueue(&NewQueuedMessage {
                    queue_id: "1wH3kL-0004dR-2k",
                    sender: "bob@example.org",
                    arrived_at: t0,
                    data: &data,
                    recipients: vec![rcpt(0, &alice), rcpt(1, &bob)],
                })
                .await
                .unwrap();
            let lease = |t: Timestamp| t.plus_secs(600);
            assert!(
                store
                    .claim_due_deliveries(t0, lease(t0), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let now = t0.plus_secs(61);
            let due = store
                .claim_due_deliveries(now, lease(now), 10)
                .await
                .unwrap();
            assert_eq!(due.len(), 2);
            assert_eq!(due[0].mailbox, "alice@example.test");
            assert_eq!(store.queued_data("1wH3kL-0004dR-2k").await.unwrap(), data);
            // Leased: a second worker finds nothing due.
            assert!(
                store
                    .claim_due_deliveries(now, lease(now), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                !store
                    .delivery_done(due[0].id, &due[0].queue_id)
                    .await
                    .unwrap()
            );
            store
                .delivery_deferred(due[1].id, now.plus_secs(120), "still full")
                .await
                .unwrap();
            let listed = store.list_queue().await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].state, QueueState::Pending);
            assert_eq!(listed[0].attempts, 2);
            assert_eq!(listed[0].last_error, "still full");
            assert_eq!(listed[0].size, data.len() as i64);
            assert!(
                store
                    .delivery_done(due[1].id, &due[1].queue_id)
                    .await
                    .unwrap()
            );
            assert!(store.list_queue().await.unwrap().is_empty());
            assert!(store.queued_data("1wH3kL-0004dR-2k").await.is_err());
        }
    );
}
