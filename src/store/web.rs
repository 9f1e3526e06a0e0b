//! The owners' web UI's tables: sign-in sessions, failed sign-ins (the
//! throttle), and the quarantine page's query.
//!
//! Every held-mail query here takes the session's mailbox id and is scoped
//! by it: asking for another mailbox's message finds nothing.

use super::held::{ChallengeState, HeldState, OutboundState};
use super::search::{Bind, HeldQuery};
use super::{Store, StoreError};
use crate::clock::Timestamp;

/// A signed-in session, found by the hash of its id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebSession {
    pub mailbox_id: i64,
    /// The mailbox's address (its lookup key).
    pub address: String,
    #[sqlx(try_from = "i64")]
    pub created_at: Timestamp,
    #[sqlx(try_from = "i64")]
    pub last_seen: Timestamp,
    pub csrf_token: String,
}

/// A mailbox as sign-in sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LoginMailbox {
    pub id: i64,
    /// The argon2 PHC string; `""`: no password, no sign-in.
    pub password_hash: String,
}

/// Where a page of held mail starts: after this (arrived_at, id), newest
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldCursor {
    pub arrived_at: Timestamp,
    pub id: i64,
}

/// One line of the quarantine page: the held message and its challenge.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HeldRow {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub arrived_at: Timestamp,
    pub env_sender: String,
    pub sender: String,
    pub sender_name: String,
    pub subject: String,
    pub size: i64,
    pub reason: String,
    pub reason_detail: String,
    pub state: HeldState,
    pub challenge_id: Option<i64>,
    /// How many attachments; `None`: held before they were counted.
    pub attachments: Option<i64>,
    /// When the owner saw it (microseconds); `None`: not seen.
    pub seen_at: Option<i64>,
    /// When the owner deleted it (state `deleted`), microseconds.
    pub deleted_at: Option<i64>,
    pub challenge_state: Option<ChallengeState>,
    /// The challenge mail: its state, when it was handed on, and the last
    /// error (a bounce or a refusal).
    pub mail_state: Option<OutboundState>,
    pub mail_done_at: Option<i64>,
    pub mail_error: Option<String>,
}

/// The columns of a [`HeldRow`], read from [`HELD_ROW_FROM`].
const HELD_ROW_COLUMNS: &str =
    "h.id, h.arrived_at, h.env_sender, h.sender, h.sender_name, h.subject, h.size,
    h.reason, h.reason_detail, h.state, h.challenge_id, h.attachments, h.seen_at, h.deleted_at,
    c.state AS challenge_state,
    o.state AS mail_state, o.done_at AS mail_done_at, o.last_error AS mail_error";

/// Held mail with its challenge and the challenge's first mail (what
/// `challenge:` searches read).
const HELD_ROW_FROM: &str = "FROM held_messages h
    LEFT JOIN challenges c ON c.id = h.challenge_id
    LEFT JOIN outbound_messages o ON o.id = (
        SELECT MIN(x.id) FROM outbound_messages x
        WHERE x.challenge_id = h.challenge_id AND x.kind = 'verify')";

/// The FROM clause for a query: with the challenge joins only when a
/// `challenge:` term reads them.
fn from_for(query: &HeldQuery) -> &'static str {
    if query.reads_challenges() {
        HELD_ROW_FROM
    } else {
        "FROM held_messages h"
    }
}

/// Binds a search's values, in order, after those already bound.
fn bind_all<'q, O>(
    mut q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Bind::Int(n) => q.bind(n),
            Bind::Text(t) => q.bind(t),
        };
    }
    q
}

/// One sender's held mail, for the by-sender view.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SenderGroup {
    /// The From: address (`""`: none).
    pub sender: String,
    pub sender_name: String,
    pub messages: i64,
    pub bytes: i64,
    /// When the newest of them arrived, microseconds since the epoch.
    pub newest: i64,
    /// One of their subjects (the greatest, as a sample).
    pub a_subject: String,
}

impl Store {
    /// The mailbox a sign-in names (by lookup key), with its password hash.
    pub async fn login_mailbox(&self, address: &str) -> Result<Option<LoginMailbox>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, password_hash FROM mailboxes WHERE address = $1")
                .bind(address)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn create_web_session(
        &self,
        id_hash: &str,
        mailbox_id: i64,
        csrf_token: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, mailbox_id, created_at, last_seen, csrf_token)
             VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(id_hash)
        .bind(mailbox_id)
        .bind(now.0)
        .bind(csrf_token)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The session with this id hash, if it was seen after `idle_since`
    /// and created after `created_since` (older ones are over).
    pub async fn web_session(
        &self,
        id_hash: &str,
        idle_since: Timestamp,
        created_since: Timestamp,
    ) -> Result<Option<WebSession>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.mailbox_id, m.address, s.created_at, s.last_seen, s.csrf_token
             FROM web_sessions s JOIN mailboxes m ON m.id = s.mailbox_id
             WHERE s.id_hash = $1 AND s.last_seen > $2 AND s.created_at > $3",
        )
        .bind(id_hash)
        .bind(idle_since.0)
        .bind(created_since.0)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn touch_web_session(&self, id_hash: &str, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_sessions SET last_seen = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now.0)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn delete_web_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes sessions idle since `idle_before` or created before
    /// `created_before`; returns how many.
    pub async fn purge_web_sessions(
        &self,
        idle_before: Timestamp,
        created_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM web_sessions WHERE last_seen <= $1 OR created_at <= $2")
                .bind(idle_before.0)
                .bind(created_before.0)
                .execute(self.writer())
                .await?;
        Ok(done.rows_affected())
    }

    /// Records one failed sign-in under each key; returns the rows' ids.
    pub async fn note_login_failure(
        &self,
        keys: &[&str],
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        let mut ids = Vec::new();
        for key in keys {
            ids.push(
                sqlx::query_scalar(
                    "INSERT INTO web_login_failures (key, at) VALUES ($1, $2) RETURNING id",
                )
                .bind(*key)
                .bind(now.0)
                .fetch_one(self.writer())
                .await?,
            );
        }
        Ok(ids)
    }

    /// Takes back the rows [`Store::note_login_failure`] made (the attempt
    /// did not fail after all).
    pub async fn forget_login_attempt(&self, ids: &[i64]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("DELETE FROM web_login_failures WHERE id = $1")
                .bind(*id)
                .execute(self.writer())
                .await?;
        }
        Ok(())
    }

    /// Failed sign-ins under `key` since `since`: how many, and the oldest.
    pub async fn login_failures(
        &self,
        key: &str,
        since: Timestamp,
    ) -> Result<(i64, Option<Timestamp>), StoreError> {
        let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(at) FROM web_login_failures WHERE key = $1 AND at > $2",
        )
        .bind(key)
        .bind(since.0)
        .fetch_one(self.pool())
        .await?;
        Ok((n, oldest.map(Timestamp)))
    }

    /// Forgets failures older than `before`, and every failure under `key`
    /// (a successful sign-in clears its account's count).
    pub async fn purge_login_failures(
        &self,
        before: Timestamp,
        key: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_login_failures WHERE at <= $1 OR key = $2")
            .bind(before.0)
            .bind(key.unwrap_or(""))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// One page of the mailbox's held mail matching `query`, newest first,
    /// starting after `after`; at most `limit` rows.
    pub async fn held_page(
        &self,
        mailbox_id: i64,
        query: &HeldQuery,
        after: Option<HeldCursor>,
        limit: i64,
    ) -> Result<Vec<HeldRow>, StoreError> {
        // A row-value comparison, which both backends walk the
        // (mailbox_id, arrived_at, id) index with (PostgreSQL does not
        // for the equivalent `a < x OR (a = x AND id < y)`).
        let (at, id) = after.map_or((i64::MAX, i64::MAX), |c| (c.arrived_at.0, c.id));
        let (cond, binds) = query.sql(5);
        let sql = format!(
            "SELECT {HELD_ROW_COLUMNS} {HELD_ROW_FROM}
             WHERE h.mailbox_id = $1 AND (h.arrived_at, h.id) < ($2, $3)
               AND {cond}
             ORDER BY h.arrived_at DESC, h.id DESC
             LIMIT $4"
        );
        let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(at)
            .bind(id)
            .bind(limit);
        Ok(bind_all(q, binds).fetch_all(self.pool()).await?)
    }

    /// The id of the held message matching `query` that comes just before
    /// `than` in [`Store::held_page`]'s order (the next newer one), if any.
    pub async fn held_newer(
        &self,
        mailbox_id: i64,
        query: &HeldQuery,
        than: HeldCursor,
    ) -> Result<Option<i64>, StoreError> {
        let (cond, binds) = query.sql(4);
        let sql = format!(
            "SELECT h.id {HELD_ROW_FROM}
             WHERE h.mailbox_id = $1 AND (h.arrived_at, h.id) > ($2, $3)
               AND {cond}
             ORDER BY h.arrived_at ASC, h.id ASC
             LIMIT 1"
        );
        let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(than.arrived_at.0)
            .bind(than.id);
        let row: Option<(i64,)> = bind_all(q, binds).fetch_optional(self.pool()).await?;
        Ok(row.map(|(id,)| id))
    }

    /// The ids (with sender) of the mailbox's held mail matching `query`,
    /// newest first, at most `limit`: what a bulk action on "everything
    /// matching this search" acts on.
    pub async fn held_matching(
        &self,
        mailbox_id: i64,
        query: &HeldQuery,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let (cond, binds) = query.sql(3);
        let from = from_for(query);
        let sql = format!(
            "SELECT h.id, h.sender {from}
             WHERE h.mailbox_id = $1 AND {cond}
             ORDER BY h.arrived_at DESC, h.id DESC
             LIMIT $2"
        );
        let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(limit);
        Ok(bind_all(q, binds).fetch_all(self.pool()).await?)
    }

    /// The mailbox's held mail matching `query` grouped by sender: each
    /// sender's count, total size and newest arrival, most recent first;
    /// at most `limit` senders.
    pub async fn held_senders(
        &self,
        mailbox_id: i64,
        query: &HeldQuery,
        limit: i64,
    ) -> Result<Vec<SenderGroup>, StoreError> {
        let (cond, binds) = query.sql(3);
        let from = from_for(query);
        let sql = format!(
            "SELECT h.sender, MAX(h.sender_name) AS sender_name, COUNT(*) AS messages,
                    CAST(SUM(h.size) AS BIGINT) AS bytes, MAX(h.arrived_at) AS newest,
                    MAX(h.subject) AS a_subject
             {from}
             WHERE h.mailbox_id = $1 AND {cond}
             GROUP BY h.sender
             ORDER BY MAX(h.arrived_at) DESC
             LIMIT $2"
        );
        let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(limit);
        Ok(bind_all(q, binds).fetch_all(self.pool()).await?)
    }

    /// One held message of the mailbox as the list shows it; `None` when
    /// there is none, or it is another mailbox's.
    pub async fn held_row(&self, mailbox_id: i64, id: i64) -> Result<Option<HeldRow>, StoreError> {
        let sql = format!(
            "SELECT {HELD_ROW_COLUMNS} {HELD_ROW_FROM} WHERE h.mailbox_id = $1 AND h.id = $2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The ids of the mailbox's held mail (state `held`) from one sender
    /// or one sender domain, oldest first.
    pub async fn held_ids_from(
        &self,
        mailbox_id: i64,
        sender: Option<&str>,
        domain: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        let (column, value) = match (sender, domain) {
            (Some(s), _) => ("sender", s),
            (None, Some(d)) => ("sender_domain", d),
            (None, None) => return Ok(Vec::new()),
        };
        let sql = format!(
            "SELECT id FROM held_messages WHERE mailbox_id = $1 AND {column} = $2 AND state = 'held'
             ORDER BY arrived_at, id"
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(value)
            .fetch_all(self.pool())
            .await?)
    }

    /// Those of `ids` that are held messages of this mailbox (in any
    /// state), with their senders, in id order: one query per 500 ids.
    pub async fn held_of_mailbox_many(
        &self,
        mailbox_id: i64,
        ids: &[i64],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = (0..chunk.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id, sender FROM held_messages WHERE mailbox_id = $1 AND id IN ({marks})
                 ORDER BY id"
            );
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(mailbox_id);
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(out)
    }

    /// A held message of this mailbox by id and its sender; `None` when
    /// there is none, or it is another mailbox's.
    pub async fn held_of_mailbox(
        &self,
        mailbox_id: i64,
        id: i64,
    ) -> Result<Option<(i64, String, HeldState)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, sender, state FROM held_messages WHERE id = $1 AND mailbox_id = $2",
        )
        .bind(id)
        .bind(mailbox_id)
        .fetch_optional(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Domain, EmailAddress};
    use crate::both_backends;
    use crate::store::held::NewHeld;

    async fn seed(store: &Store) -> (i64, i64) {
        let now = Timestamp::from_secs(1000);
        store
            .add_domain(&Domain::parse("example.test").unwrap(), now)
            .await
            .unwrap();
        let a = store
            .add_mailbox(
                &EmailAddress::parse("alice@example.test").unwrap(),
                "h",
                now,
            )
            .await
            .unwrap();
        let b = store
            .add_mailbox(&EmailAddress::parse("bob@example.test").unwrap(), "", now)
            .await
            .unwrap();
        (a.id, b.id)
    }

    async fn hold(store: &Store, mailbox_id: i64, n: i64, at: i64) -> i64 {
        let qid = format!("q{mailbox_id}x{n}");
        let h = NewHeld {
            mailbox_id,
            queue_id: &qid,
            rcpt_index: 0,
            env_sender: "s@example.net",
            original_rcpt: "x@example.test",
            sender: "s@example.net",
            sender_name: "S",
            subject: "hi",
            message_id: "",
            date_header: "",
            arrived_at: Timestamp::from_secs(at),
            reason: "no-sender",
            reason_detail: "why",
            challenge_id: None,
            data: b"x",
            auth_results: "",
            spam_score: None,
            spam_report: "",
            attachments: None,
        };
        let mut tx = store.begin_write().await.unwrap();
        let id = crate::store::held::insert_held(&mut tx, &h).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    both_backends!(sessions_expire_and_are_purged, |store: Store| async move {
        let (a, _) = seed(&store).await;
        let t = |s| Timestamp::from_secs(s);
        store
            .create_web_session("h1", a, "csrf", t(2000))
            .await
            .unwrap();
        let s = store.web_session("h1", t(0), t(0)).await.unwrap().unwrap();
        assert_eq!(
            (s.mailbox_id, s.address.as_str()),
            (a, "alice@example.test")
        );
        assert_eq!(s.csrf_token, "csrf");
        // Idle since 2000: over when the idle limit starts at 2000.
        assert!(
            store
                .web_session("h1", t(2000), t(0))
                .await
                .unwrap()
                .is_none()
        );
        store.touch_web_session("h1", t(3000)).await.unwrap();
        assert!(
            store
                .web_session("h1", t(2500), t(0))
                .await
                .unwrap()
                .is_some()
        );
        // Absolute expiry counts from creation, however active.
        assert!(
            store
                .web_session("h1", t(2500), t(2000))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .web_session("other", t(0), t(0))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.purge_web_sessions(t(2999), t(0)).await.unwrap(), 0);
        assert_eq!(store.purge_web_sessions(t(3000), t(0)).await.unwrap(), 1);
        store
            .create_web_session("h2", a, "c", t(2000))
            .await
            .unwrap();
        assert!(store.delete_web_session("h2").await.unwrap());
        assert!(!store.delete_web_session("h2").await.unwrap());
    });

    both_backends!(login_failures_count_per_key, |store: Store| async move {
        let t = |s| Timestamp::from_secs(s);
        store
            .note_login_failure(&["account:a", "ip:1"], t(10))
            .await
            .unwrap();
        let ids = store
            .note_login_failure(&["account:a", "ip:2"], t(20))
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            store.login_failures("account:a", t(0)).await.unwrap(),
            (2, Some(t(10)))
        );
        assert_eq!(
            store.login_failures("account:a", t(10)).await.unwrap(),
            (1, Some(t(20)))
        );
        assert_eq!(store.login_failures("ip:1", t(0)).await.unwrap().0, 1);
        assert_eq!(store.login_failures("ip:9", t(0)).await.unwrap(), (0, None));
        // Taking back the account row of the second attempt.
        store.forget_login_attempt(&ids[..1]).await.unwrap();
        assert_eq!(store.login_failures("account:a", t(0)).await.unwrap().0, 1);
        assert_eq!(store.login_failures("ip:2", t(0)).await.unwrap().0, 1);
        store
            .purge_login_failures(t(10), Some("ip:2"))
            .await
            .unwrap();
        assert_eq!(store.login_failures("account:a", t(0)).await.unwrap().0, 0);
        assert_eq!(store.login_failures("ip:2", t(0)).await.unwrap().0, 0);
    });

    both_backends!(
        held_pages_are_keyset_and_scoped,
        |store: Store| async move {
            let (a, b) = seed(&store).await;
            let mut ids = Vec::new();
            for n in 0..5 {
                // Two share a time: the id breaks the tie.
                ids.push(hold(&store, a, n, 5000 + n.min(3) * 10).await);
            }
            let bobs = hold(&store, b, 9, 6000).await;
            let first = store
                .held_page(a, &HeldQuery::default(), None, 2)
                .await
                .unwrap();
            let got: Vec<i64> = first.iter().map(|r| r.id).collect();
            assert_eq!(got, vec![ids[4], ids[3]]);
            let last = first.last().unwrap();
            let cursor = HeldCursor {
                arrived_at: last.arrived_at,
                id: last.id,
            };
            let rest: Vec<i64> = store
                .held_page(a, &HeldQuery::default(), Some(cursor), 10)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(rest, vec![ids[2], ids[1], ids[0]]);
            assert!(first.iter().all(|r| r.challenge_state.is_none()));
            let only_bob: Vec<i64> = store
                .held_page(b, &HeldQuery::default(), None, 10)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(only_bob, vec![bobs]);
            assert!(store.held_of_mailbox(a, bobs).await.unwrap().is_none());
            let (id, sender, _) = store.held_of_mailbox(b, bobs).await.unwrap().unwrap();
            assert_eq!((id, sender.as_str()), (bobs, "s@example.net"));
            let _ = store
                .login_mailbox("alice@example.test")
                .await
                .unwrap()
                .unwrap();
            assert!(
                store
                    .login_mailbox("nobody@example.test")
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    );
}
