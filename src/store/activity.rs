//! The activity page's and the admin pages' queries (migration 0013):
//! activity lines that name their held message, who acted and from which
//! client address; pages of a mailbox's log with filters; which owners are
//! admins; every mailbox's quarantine totals; held mail searched across
//! mailboxes.
//!
//! Every activity query takes a mailbox id and is scoped by it. The
//! cross-mailbox queries ([`Store::mailbox_totals`],
//! [`Store::search_held_everywhere`]) are for admins only; the web layer
//! checks [`Store::is_admin`] before it calls them.

use super::column::IntFlag;
use super::held::ActivityAction;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use sqlx::AnyConnection;

/// A line to write in a mailbox's activity log, with the facts the web
/// adds to [`super::held::add_activity`]'s.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub mailbox_id: i64,
    /// The held message the line is about, if it is about one.
    pub held_id: Option<i64>,
    pub at: Timestamp,
    pub action: ActivityAction,
    /// The sender concerned (`""`: none).
    pub sender: &'a str,
    /// What happened, in words.
    pub detail: &'a str,
    /// Who did it when it was not the owner or the mail itself: an admin's
    /// address, `link`; `""` otherwise.
    pub actor: &'a str,
    /// The client address of the web request behind it (`""`: none).
    pub client_ip: &'a str,
}

impl<'a> NewEvent<'a> {
    /// A line with no message, actor or client address.
    pub fn new(
        mailbox_id: i64,
        at: Timestamp,
        action: ActivityAction,
        sender: &'a str,
        detail: &'a str,
    ) -> NewEvent<'a> {
        NewEvent {
            mailbox_id,
            held_id: None,
            at,
            action,
            sender,
            detail,
            actor: "",
            client_ip: "",
        }
    }
}

/// Writes one activity line on `conn` (inside the caller's transaction).
pub async fn add_event(conn: &mut AnyConnection, e: &NewEvent<'_>) -> Result<(), StoreError> {
    add_events(conn, std::slice::from_ref(e)).await
}

/// Writes many activity lines with one statement per 100 lines (a round
/// trip each on PostgreSQL), on the caller's connection.
pub async fn add_events(
    conn: &mut AnyConnection,
    events: &[NewEvent<'_>],
) -> Result<(), StoreError> {
    for chunk in events.chunks(100) {
        let rows = (0..chunk.len())
            .map(|i| {
                let b = i * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO activity (mailbox_id, at, action, sender, detail, held_id, actor, client_ip)
             VALUES {rows}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(e.mailbox_id)
                .bind(e.at.0)
                .bind(e.action.as_str())
                .bind(e.sender)
                .bind(e.detail)
                .bind(e.held_id)
                .bind(e.actor)
                .bind(e.client_ip);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// One line of the activity log as the activity page shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActivityLine {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub at: Timestamp,
    pub action: ActivityAction,
    pub sender: String,
    pub detail: String,
    pub held_id: Option<i64>,
    pub actor: String,
    pub client_ip: String,
}

/// Where a page of activity starts: after this (at, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityCursor {
    pub at: Timestamp,
    pub id: i64,
}

/// Which lines a page of the activity log shows; the default shows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// Only these actions (empty: every action).
    pub actions: Vec<ActivityAction>,
    /// Only `held` lines of messages that got no challenge of their own
    /// (no `challenged` line names them): the challenge was not sent, and
    /// the held line says why.
    pub not_challenged: bool,
    /// Only lines about this held message.
    pub held_id: Option<i64>,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Only lines before this time.
    pub until: Option<Timestamp>,
}

/// A mailbox with its challenge switch and quarantine totals (the admin
/// page).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailboxTotals {
    pub id: i64,
    /// Lower-case `local@domain`.
    pub address: String,
    pub domain: String,
    #[sqlx(try_from = "IntFlag")]
    pub challenge_enabled: bool,
    #[sqlx(try_from = "IntFlag")]
    pub admin: bool,
    /// Messages in its quarantine.
    pub held: i64,
    /// Their size in bytes.
    pub bytes: i64,
    /// When the oldest of them arrived (microseconds); `None`: none held.
    pub oldest: Option<i64>,
}

/// A held message found by an admin's search, with its mailbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FoundHeld {
    pub id: i64,
    pub mailbox_id: i64,
    /// The recipient mailbox's address.
    pub mailbox: String,
    #[sqlx(try_from = "i64")]
    pub arrived_at: Timestamp,
    pub sender: String,
    pub sender_name: String,
    pub subject: String,
    pub size: i64,
    pub reason_detail: String,
}

/// Most lines an export or a search returns.
pub const MAX_EXPORT: i64 = 50_000;

/// `s` as a `LIKE` pattern matching it anywhere (lower-cased; `\` escapes).
fn contains_pattern(s: &str) -> String {
    let mut p = String::from("%");
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// Writes one activity line in its own transaction.
    pub async fn log_event(&self, e: &NewEvent<'_>) -> Result<(), StoreError> {
        let mut conn = self.writer().acquire().await?;
        add_event(&mut conn, e).await
    }

    /// One page of the mailbox's activity log, newest first, starting after
    /// `after`: at most `limit` lines that pass `filter`.
    pub async fn activity_page(
        &self,
        mailbox_id: i64,
        filter: &ActivityFilter,
        after: Option<ActivityCursor>,
        limit: i64,
    ) -> Result<Vec<ActivityLine>, StoreError> {
        let (at, id) = after.map_or((i64::MAX, i64::MAX), |c| (c.at.0, c.id));
        let mut sql = String::from(
            "SELECT a.id, a.at, a.action, a.sender, a.detail, a.held_id, a.actor, a.client_ip
             FROM activity a
             WHERE a.mailbox_id = $1 AND (a.at < $2 OR (a.at = $2 AND a.id < $3))
               AND a.at >= $4 AND a.at < $5",
        );
        let mut actions = filter.actions.clone();
        if filter.not_challenged {
            actions = vec![ActivityAction::Held];
            sql.push_str(
                " AND a.held_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM activity c
                   WHERE c.mailbox_id = a.mailbox_id AND c.held_id = a.held_id AND c.action = 'challenged')",
            );
        }
        if !actions.is_empty() {
            // The values are our own constants, never the request's text.
            let list: Vec<String> = actions
                .iter()
                .map(|a| format!("'{}'", a.as_str()))
                .collect();
            sql.push_str(&format!(" AND a.action IN ({})", list.join(", ")));
        }
        if filter.held_id.is_some() {
            sql.push_str(" AND a.held_id = $7");
        }
        sql.push_str(" ORDER BY a.at DESC, a.id DESC LIMIT $6");
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(mailbox_id)
            .bind(at)
            .bind(id)
            .bind(filter.since.map_or(i64::MIN, |t| t.0))
            .bind(filter.until.map_or(i64::MAX, |t| t.0))
            .bind(limit);
        if let Some(h) = filter.held_id {
            q = q.bind(h);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Whether the mailbox's owner is an admin.
    pub async fn is_admin(&self, mailbox_id: i64) -> Result<bool, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT admin FROM mailboxes WHERE id = $1")
            .bind(mailbox_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(v == Some(1))
    }

    /// Makes the mailbox's owner an admin, or not.
    pub async fn set_admin(&self, mailbox_id: i64, admin: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE mailboxes SET admin = $2 WHERE id = $1")
            .bind(mailbox_id)
            .bind(i64::from(admin))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The admins' addresses, sorted.
    pub async fn admins(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT address FROM mailboxes WHERE admin = 1 ORDER BY address")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Every mailbox (or the one with `only` as id) with its challenge
    /// switch and quarantine totals, by domain and address. The totals
    /// come from `quarantine_usage` (the quota's running sums) and the
    /// oldest from the `(mailbox_id, arrived_at)` index, so the page costs
    /// no scan of the held mail.
    pub async fn mailbox_totals(
        &self,
        only: Option<i64>,
    ) -> Result<Vec<MailboxTotals>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.address, d.name AS domain, m.challenge_enabled, m.admin,
                    CAST(COALESCE((SELECT SUM(u.messages) FROM quarantine_usage u
                                   WHERE u.mailbox_id = m.id), 0) AS BIGINT) AS held,
                    CAST(COALESCE((SELECT SUM(u.bytes) FROM quarantine_usage u
                                   WHERE u.mailbox_id = m.id), 0) AS BIGINT) AS bytes,
                    (SELECT MIN(h.arrived_at) FROM held_messages h
                     WHERE h.mailbox_id = m.id AND h.state <> 'deleted') AS oldest
             FROM mailboxes m
             JOIN domains d ON d.id = m.domain_id
             WHERE $1 = 0 OR m.id = $1
             ORDER BY d.name, m.address",
        )
        .bind(only.unwrap_or(0))
        .fetch_all(self.pool())
        .await?)
    }

    /// Turns a mailbox's challenge-response on or off and writes `detail`
    /// in its activity log as done by `actor`, in one transaction. `false`:
    /// there is no such mailbox.
    pub async fn set_challenge_by(
        &self,
        mailbox_id: i64,
        on: bool,
        event: &NewEvent<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE mailboxes SET challenge_enabled = $2 WHERE id = $1")
            .bind(mailbox_id)
            .bind(i64::from(on))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        add_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Held mail in every mailbox whose sender (address or name) contains
    /// `sender` and whose subject contains `subject` (case-insensitive;
    /// `""` matches all), newest first; at most `limit`.
    pub async fn search_held_everywhere(
        &self,
        sender: &str,
        subject: &str,
        limit: i64,
    ) -> Result<Vec<FoundHeld>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT h.id, h.mailbox_id, m.address AS mailbox, h.arrived_at, h.sender, h.sender_name,
                    h.subject, h.size, h.reason_detail
             FROM held_messages h JOIN mailboxes m ON m.id = h.mailbox_id
             WHERE (LOWER(h.sender) LIKE $1 ESCAPE '\\' OR LOWER(h.sender_name) LIKE $1 ESCAPE '\\'
                    OR LOWER(h.env_sender) LIKE $1 ESCAPE '\\')
               AND LOWER(h.subject) LIKE $2 ESCAPE '\\' AND h.state <> 'deleted'
             ORDER BY h.arrived_at DESC, h.id DESC
             LIMIT $3",
        )
        .bind(contains_pattern(sender))
        .bind(contains_pattern(subject))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_the_text_literally() {
        assert_eq!(contains_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
