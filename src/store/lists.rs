//! Per-mailbox sender lists: allow, block and ignore rules in BoxTrapper's
//! syntax. Rules are stored as written (field + pattern) and compiled when
//! read; an import replaces or extends a list in one transaction. The
//! writes that take a limit ([`Store::add_rule_within`],
//! [`Store::import_rules`]) never leave a list longer than it. Each rule
//! records where it came from ([`RuleSource`], migration 0011) and when.

use super::{Store, StoreError};
use crate::address::EmailAddress;
use crate::clock::Timestamp;
use crate::policy::rules::{self, ListKind, ReadRule, RuleError, RuleField, SenderRule};

/// A rule as a person types one (`boxtrap list add`, the lists page):
/// BoxTrapper syntax, read by the same [`rules::read_rule`] as a list file,
/// or a bare address without spaces for exactly that sender
/// (`bob@example.org` is `from ^bob@example\.org$`). The error says what
/// is wrong with the rule.
pub fn read_typed_rule(text: &str) -> Result<ReadRule, RuleError> {
    let t = text.trim();
    if !t.is_empty() && !t.contains(char::is_whitespace) && EmailAddress::parse(t).is_ok() {
        return Ok(ReadRule {
            rule: SenderRule::exact_sender(t),
            written: None,
        });
    }
    rules::read_rule(t)
}

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

/// Longest detail kept in a rule's source (a message id), in characters.
const MAX_SOURCE_DETAIL: usize = 200;

/// Where a list rule came from, kept in `sender_rules.source` as a short
/// code (`owner`, `admin`, `import`, `release:link`,
/// `association:<message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// The mailbox's owner, on the lists page or through the JSON API.
    Owner,
    /// An administrator, with `boxtrap list add`.
    Admin,
    /// A list file imported (the lists page, the JSON API's `PUT`, or
    /// `boxtrap list import`).
    Import,
    /// Allowed when held mail was released; how (`owner`, `link`,
    /// `reply`, `resumed`, as [`crate::quarantine::release::ReleasedBy`]
    /// names it).
    Release(String),
    /// Whitelisted by association: a To/Cc address of this message (its
    /// Message-ID and queue id, in words) from an allowed sender.
    Association(String),
    /// Added before sources were recorded.
    Unknown,
}

impl RuleSource {
    /// The stored code.
    pub fn code(&self) -> String {
        let detail = |kind: &str, d: &str| {
            let d: String = d.chars().take(MAX_SOURCE_DETAIL).collect();
            format!("{kind}:{d}")
        };
        match self {
            RuleSource::Owner => "owner".into(),
            RuleSource::Admin => "admin".into(),
            RuleSource::Import => "import".into(),
            RuleSource::Release(how) => detail("release", how),
            RuleSource::Association(message) => detail("association", message),
            RuleSource::Unknown => String::new(),
        }
    }

    /// Reads a stored code; one this version does not know is
    /// [`RuleSource::Unknown`].
    pub fn from_code(code: &str) -> RuleSource {
        match code.split_once(':') {
            Some(("release", how)) => RuleSource::Release(how.to_owned()),
            Some(("association", m)) => RuleSource::Association(m.to_owned()),
            _ => match code {
                "owner" => RuleSource::Owner,
                "admin" => RuleSource::Admin,
                "import" => RuleSource::Import,
                _ => RuleSource::Unknown,
            },
        }
    }

    /// Where the rule came from, in words for its owner, without the date
    /// ("added from quarantine", "by association from message …").
    pub fn describe(&self) -> String {
        match self {
            RuleSource::Owner => "added by you".into(),
            RuleSource::Admin => "added by an administrator".into(),
            RuleSource::Import => "imported".into(),
            RuleSource::Release(how) => match how.as_str() {
                "link" => "added when the sender confirmed a challenge (link)".into(),
                "reply" => "added when the sender answered a challenge (reply)".into(),
                _ => "added from quarantine".into(),
            },
            RuleSource::Association(m) => format!("by association from {m}"),
            RuleSource::Unknown => "added".into(),
        }
    }
}

/// One rule of a list as stored: its id (for removal), the rule, where it
/// came from and when.
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// The row id; unique across mailboxes and lists.
    pub id: i64,
    /// The rule.
    pub rule: SenderRule,
    /// Who or what added it.
    pub source: RuleSource,
    /// When it was added.
    pub created_at: Timestamp,
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

    /// The entries of one list, oldest first, with their ids, sources and
    /// dates; a stored rule that no longer reads is skipped as in
    /// [`Store::rules`].
    pub async fn list_entries(
        &self,
        mailbox_id: i64,
        kind: ListKind,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, field, pattern, source, created_at FROM sender_rules
             WHERE mailbox_id = $1 AND list = $2 ORDER BY id",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, field, pattern, source, created_at) in rows {
            match field
                .parse::<RuleField>()
                .and_then(|f| SenderRule::stored(f, &pattern))
            {
                Ok(rule) => out.push(ListEntry {
                    id,
                    rule,
                    source: RuleSource::from_code(&source),
                    created_at: Timestamp(created_at),
                }),
                Err(e) => {
                    tracing::error!(mailbox_id, %field, %pattern, error = %e, "stored rule cannot be read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// Adds a rule, recording where it came from; false if the list
    /// already had it (its source stays the first one's).
    pub async fn add_rule(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
        source: &RuleSource,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO sender_rules (mailbox_id, list, field, pattern, created_at, source) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (mailbox_id, list, field, pattern) DO NOTHING",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .bind(rule.field().as_str())
        .bind(rule.pattern())
        .bind(now.0)
        .bind(source.code())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            bump_version(&mut tx, mailbox_id).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds a rule unless the list already has it or already holds
    /// `limit` rules (or more); in those cases nothing changes. The rule
    /// records `source` as where it came from.
    pub async fn add_rule_within(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
        limit: usize,
        source: &RuleSource,
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
            "INSERT INTO sender_rules (mailbox_id, list, field, pattern, created_at, source) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(mailbox_id)
        .bind(kind.as_str())
        .bind(rule.field().as_str())
        .bind(rule.pattern())
        .bind(now.0)
        .bind(source.code())
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

    /// Removes the rule with this id from one of the mailbox's lists and
    /// returns it as a list line (`from ^bob@example\.org$`); `None`
    /// (nothing changed) when that list of that mailbox has no such rule,
    /// whoever else's it is.
    pub async fn remove_rule_id(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        id: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT field, pattern FROM sender_rules WHERE id = $1 AND mailbox_id = $2 AND list = $3",
        )
        .bind(id)
        .bind(mailbox_id)
        .bind(kind.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((field, pattern)) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("DELETE FROM sender_rules WHERE id = $1 AND mailbox_id = $2")
            .bind(id)
            .bind(mailbox_id)
            .execute(&mut *tx)
            .await?;
        bump_version(&mut tx, mailbox_id).await?;
        tx.commit().await?;
        Ok(Some(format!("{field} {pattern}")))
    }

    /// Adds all `rules` (and with `replace`, drops the rest first) in one
    /// transaction, all or nothing: when the list would then hold more
    /// than `limit` rules, nothing changes. The new rules record `source`.
    #[allow(clippy::too_many_arguments)]
    pub async fn import_rules(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rules: &[SenderRule],
        replace: bool,
        limit: usize,
        source: &RuleSource,
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
        let source = source.code();
        for rule in rules {
            let done = sqlx::query(
                "INSERT INTO sender_rules (mailbox_id, list, field, pattern, created_at, source) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (mailbox_id, list, field, pattern) DO NOTHING",
            )
            .bind(mailbox_id)
            .bind(kind.as_str())
            .bind(rule.field().as_str())
            .bind(rule.pattern())
            .bind(now.0)
            .bind(&source)
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
