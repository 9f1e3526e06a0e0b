//! Per-mailbox sender lists: allow, block and ignore rules in BoxTrapper's
//! syntax. Rules are stored as written (field + pattern) and compiled when
//! read; an import replaces or extends a list in one transaction. The
//! writes that take a limit ([`Store::add_rule_within`],
//! [`Store::import_rules`]) never leave a list longer than it.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::policy::rules::{ListKind, RuleField, SenderRule};

/// Marks the mailbox's lists as changed (see `MailboxSettings::rules_version`).
/// Done first in a transaction that checks a list's length: on PostgreSQL
/// the row lock it takes makes concurrent writers to the mailbox's lists
/// wait, so two of them cannot both see room for one more rule.
async fn bump_version(conn: &mut sqlx::AnyConnection, mailbox_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE mailboxes SET rules_version = rules_version + 1 WHERE id = $1")
        .bind(mailbox_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many rules one list of a mailbox has, on `conn`.
async fn count_rules(
    conn: &mut sqlx::AnyConnection,
    mailbox_id: i64,
    kind: ListKind,
) -> Result<usize, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sender_rules WHERE mailbox_id = $1 AND list = $2")
            .bind(mailbox_id)
            .bind(kind.as_str())
            .fetch_one(conn)
            .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// What [`Store::add_rule_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAdded {
    /// The rule is on the list now.
    Added,
    /// The list already had it; nothing changed.
    AlreadyThere,
    /// The list already holds `rules` rules, at least its `limit`: nothing
    /// changed.
    ListFull {
        /// How many rules the list holds.
        rules: usize,
        /// The most it may hold.
        limit: usize,
    },
}

/// What [`Store::import_rules`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The rules are on the list; this many of them are new.
    Added(usize),
    /// The list would have held `would_have` rules, over its `limit`:
    /// nothing changed.
    OverLimit {
        /// How long the list would have been.
        would_have: usize,
        /// The most it may hold.
        limit: usize,
    },
}

impl Store {
    /// The rules of one list, oldest first, each compiled only when it is
    /// matched on its own ([`SenderRule::stored`]). A stored rule that no
    /// longer reads (it never should) is skipped with an error in the log.
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
            let rule = field
                .parse::<RuleField>()
                .and_then(|f| SenderRule::stored(f, &pattern));
            match rule {
                Ok(rule) => out.push(rule),
                Err(e) => {
                    tracing::error!(mailbox_id, %field, %pattern, error = %e, "stored rule cannot be read; skipped")
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

    /// Adds a rule unless the list already has it or already holds
    /// `limit` rules (or more); in those cases nothing changes.
    pub async fn add_rule_within(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
        limit: usize,
        now: Timestamp,
    ) -> Result<RuleAdded, StoreError> {
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, mailbox_id).await?;
        let present: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM sender_rules WHERE mailbox_id = $1 AND list = $2 AND field = $3 AND pattern = $4",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .bind(rule.field().as_str())
        .bind(rule.pattern())
        .fetch_optional(&mut *tx)
        .await?;
        if present.is_some() {
            tx.rollback().await?;
            return Ok(RuleAdded::AlreadyThere);
        }
        let rules = count_rules(&mut tx, mailbox_id, kind).await?;
        if rules >= limit {
            tx.rollback().await?;
            return Ok(RuleAdded::ListFull { rules, limit });
        }
        sqlx::query(
            "INSERT INTO sender_rules (mailbox_id, list, field, pattern, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .bind(rule.field().as_str())
        .bind(rule.pattern())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RuleAdded::Added)
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
    /// transaction, all or nothing: when the list would then hold more
    /// than `limit` rules, nothing changes.
    pub async fn import_rules(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rules: &[SenderRule],
        replace: bool,
        limit: usize,
        now: Timestamp,
    ) -> Result<Imported, StoreError> {
        if replace {
            let distinct: std::collections::HashSet<(&str, &str)> = rules
                .iter()
                .map(|r| (r.field().as_str(), r.pattern()))
                .collect();
            if distinct.len() > limit {
                return Ok(Imported::OverLimit {
                    would_have: distinct.len(),
                    limit,
                });
            }
        }
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, mailbox_id).await?;
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
        let would_have = count_rules(&mut tx, mailbox_id, kind).await?;
        // A list already over the limit (it was lowered) may still be
        // imported into when nothing is added to it.
        if would_have > limit && (replace || added > 0) {
            tx.rollback().await?;
            return Ok(Imported::OverLimit { would_have, limit });
        }
        tx.commit().await?;
        Ok(Imported::Added(added))
    }
}
