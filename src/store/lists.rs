//! Per-mailbox sender lists: allow, block and ignore rules in BoxTrapper's
//! syntax. Rules are stored as written (field + pattern) and compiled when
//! read; an import replaces or extends a list in one transaction.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::policy::rules::{ListKind, SenderRule};

/// Marks the mailbox's lists as changed (see `MailboxSettings::rules_version`).
async fn bump_version(conn: &mut sqlx::AnyConnection, mailbox_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE mailboxes SET rules_version = rules_version + 1 WHERE id = $1")
        .bind(mailbox_id)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// The rules of one list, oldest first. A stored rule that no longer
    /// compiles (it never should) is skipped with an error in the log.
    pub async fn rules(
        &self,
        mailbox_id: i64,
        kind: ListKind,
    ) -> Result<Vec<SenderRule>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT field, pattern FROM sender_rules WHERE mailbox_id = $1 AND list = $2 ORDER BY id",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (field, pattern) in rows {
            match SenderRule::parse(&format!("{field} {pattern}")) {
                Ok(rule) => out.push(rule),
                Err(e) => {
                    tracing::error!(mailbox_id, %field, %pattern, error = %e, "stored rule does not compile")
                }
            }
        }
        Ok(out)
    }

    /// Adds a rule; false if the list already had it.
    pub async fn add_rule(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO sender_rules (mailbox_id, list, field, pattern, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (mailbox_id, list, field, pattern) DO NOTHING",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .bind(rule.field().as_str())
        .bind(rule.pattern())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            bump_version(&mut tx, mailbox_id).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a rule; NotFound if the list does not have it.
    pub async fn remove_rule(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM sender_rules WHERE mailbox_id = $1 AND list = $2 AND field = $3 AND pattern = $4",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .bind(rule.field().as_str())
        .bind(rule.pattern())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "the {kind} list has no rule `{}`",
                rule.to_line()
            )));
        }
        bump_version(&mut tx, mailbox_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds all `rules` (and with `replace`, drops the rest first) in one
    /// transaction. Returns how many were new.
    pub async fn import_rules(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rules: &[SenderRule],
        replace: bool,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        if replace {
            sqlx::query("DELETE FROM sender_rules WHERE mailbox_id = $1 AND list = $2")
                .bind(mailbox_id)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let mut added = 0;
        for rule in rules {
            let done = sqlx::query(
                "INSERT INTO sender_rules (mailbox_id, list, field, pattern, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (mailbox_id, list, field, pattern) DO NOTHING",
            )
            .bind(mailbox_id)
            .bind(kind.as_str())
            .bind(rule.field().as_str())
            .bind(rule.pattern())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            added += done.rows_affected() as usize;
        }
        bump_version(&mut tx, mailbox_id).await?;
        tx.commit().await?;
        Ok(added)
    }
}
