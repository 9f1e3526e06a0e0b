//! Mailboxes (one Maildir and one owner each) and aliases (extra addresses
//! that deliver into one or more mailboxes).
//!
//! Addresses are stored in their lookup form: local part and domain in
//! lower case, so matching is case-insensitive.

use super::column::IntFlag;
use super::{Store, StoreError};
use crate::address::EmailAddress;
use crate::clock::Timestamp;

/// A mailbox that mail can be delivered to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailboxRef {
    pub id: i64,
    /// Lower-case `local@domain`.
    pub address: String,
}

/// An alias and the mailboxes it delivers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasInfo {
    pub address: String,
    pub targets: Vec<String>,
}

/// A mailbox an address reaches, with its challenge-response switch.
#[derive(sqlx::FromRow)]
struct Reached {
    #[sqlx(flatten)]
    mailbox: MailboxRef,
    #[sqlx(try_from = "IntFlag")]
    challenge_enabled: bool,
}

impl Store {
    async fn domain_id_or_err(&self, addr: &EmailAddress) -> Result<i64, StoreError> {
        self.domain_id(addr.domain()).await?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "domain {} is not a local domain; add it first with `boxtrap domain add {}`",
                addr.domain(),
                addr.domain()
            ))
        })
    }

    async fn alias_exists(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM aliases WHERE address = $1")
            .bind(key)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    pub async fn add_mailbox(
        &self,
        addr: &EmailAddress,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<MailboxRef, StoreError> {
        let domain_id = self.domain_id_or_err(addr).await?;
        let key = addr.lookup_key();
        if self.alias_exists(&key).await? {
            return Err(StoreError::Conflict(format!("{key} is already an alias")));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO mailboxes (domain_id, address, password_hash, created_at,
                spam_bypass_below, spam_no_challenge_at)
             VALUES ($1, $2, $3, $4, -25, 50) RETURNING id",
        )
        .bind(domain_id)
        .bind(&key)
        .bind(password_hash)
        .bind(now.0)
        .fetch_one(self.writer())
        .await
        .map_err(|e| {
            if StoreError::is_unique_violation(&e) {
                StoreError::Conflict(format!("mailbox {key} already exists"))
            } else {
                e.into()
            }
        })?;
        Ok(MailboxRef { id, address: key })
    }

    /// Mailboxes, optionally of one domain, ordered by address.
    pub async fn list_mailboxes(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<MailboxRef>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.address FROM mailboxes m JOIN domains d ON d.id = m.domain_id
             WHERE $1 = '' OR d.name = $1 ORDER BY m.address",
        )
        .bind(domain.unwrap_or(""))
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn find_mailbox(
        &self,
        addr: &EmailAddress,
    ) -> Result<Option<MailboxRef>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM mailboxes WHERE address = $1")
            .bind(addr.lookup_key())
            .fetch_optional(self.pool())
            .await?;
        Ok(id.map(|id| MailboxRef {
            id,
            address: addr.lookup_key(),
        }))
    }

    fn no_mailbox(addr: &EmailAddress) -> StoreError {
        StoreError::NotFound(format!("no such mailbox: {}", addr.lookup_key()))
    }

    /// Removes a mailbox and the aliases that pointed only to it. Its Maildir
    /// stays on disk for the admin to archive or delete.
    pub async fn remove_mailbox(&self, addr: &EmailAddress) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM mailboxes WHERE address = $1")
            .bind(addr.lookup_key())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Self::no_mailbox(addr))?;
        let queued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM queued_recipients WHERE mailbox_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if queued > 0 {
            return Err(StoreError::InUse(format!(
                "mailbox {} has {queued} deferred deliveries in the queue; \
                 deliver or delete them first (boxtrap queue list)",
                addr.lookup_key()
            )));
        }
        sqlx::query("DELETE FROM queued_recipients WHERE mailbox_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM queued_messages WHERE NOT EXISTS
             (SELECT 1 FROM queued_recipients r WHERE r.queue_id = queued_messages.queue_id)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM aliases WHERE mailbox_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mailboxes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_password_hash(
        &self,
        addr: &EmailAddress,
        hash: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE mailboxes SET password_hash = $1 WHERE address = $2")
            .bind(hash)
            .bind(addr.lookup_key())
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(Self::no_mailbox(addr));
        }
        Ok(())
    }

    pub async fn password_hash(&self, addr: &EmailAddress) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM mailboxes WHERE address = $1")
                .bind(addr.lookup_key())
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Makes `alias` deliver to each of `targets` (local mailboxes).
    pub async fn add_alias(
        &self,
        alias: &EmailAddress,
        targets: &[EmailAddress],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let domain_id = self.domain_id_or_err(alias).await?;
        let key = alias.lookup_key();
        if self.find_mailbox(alias).await?.is_some() {
            return Err(StoreError::Conflict(format!("{key} is already a mailbox")));
        }
        let mut tx = self.begin_write().await?;
        for target in targets {
            let id: i64 = sqlx::query_scalar("SELECT id FROM mailboxes WHERE address = $1")
                .bind(target.lookup_key())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "alias target {} is not a local mailbox",
                        target.lookup_key()
                    ))
                })?;
            sqlx::query(
                "INSERT INTO aliases (domain_id, address, mailbox_id, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(domain_id)
            .bind(&key)
            .bind(id)
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::Conflict(format!("{key} already delivers to {}", target.lookup_key()))
                } else {
                    e.into()
                }
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<AliasInfo>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.address, m.address AS target FROM aliases a
             JOIN mailboxes m ON m.id = a.mailbox_id JOIN domains d ON d.id = a.domain_id
             WHERE $1 = '' OR d.name = $1 ORDER BY a.address, m.address",
        )
        .bind(domain.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<AliasInfo> = Vec::new();
        for (address, target) in rows {
            match out.last_mut() {
                Some(last) if last.address == address => last.targets.push(target),
                _ => out.push(AliasInfo {
                    address,
                    targets: vec![target],
                }),
            }
        }
        Ok(out)
    }

    /// Removes an alias, or only its delivery to `target` when given.
    pub async fn remove_alias(
        &self,
        alias: &EmailAddress,
        target: Option<&EmailAddress>,
    ) -> Result<(), StoreError> {
        let done = match target {
            None => {
                sqlx::query("DELETE FROM aliases WHERE address = $1")
                    .bind(alias.lookup_key())
                    .execute(self.writer())
                    .await?
            }
            Some(t) => {
                sqlx::query(
                    "DELETE FROM aliases WHERE address = $1
                     AND mailbox_id = (SELECT id FROM mailboxes WHERE address = $2)",
                )
                .bind(alias.lookup_key())
                .bind(t.lookup_key())
                .execute(self.writer())
                .await?
            }
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(match target {
                None => format!("no such alias: {}", alias.lookup_key()),
                Some(t) => format!(
                    "alias {} does not deliver to {}",
                    alias.lookup_key(),
                    t.lookup_key()
                ),
            }));
        }
        Ok(())
    }

    /// Like [`Store::resolve_address`], with each mailbox's challenge-response
    /// switch: the one query the SMTP receiver makes per recipient.
    pub async fn resolve_for_delivery(
        &self,
        key: &str,
    ) -> Result<Vec<(MailboxRef, bool)>, StoreError> {
        let rows: Vec<Reached> = sqlx::query_as(
            "SELECT id, address, challenge_enabled FROM mailboxes WHERE address = $1
             UNION
             SELECT m.id, m.address, m.challenge_enabled FROM aliases a JOIN mailboxes m ON m.id = a.mailbox_id
             WHERE a.address = $1
             ORDER BY address",
        )
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.mailbox, r.challenge_enabled))
            .collect())
    }

    /// The mailboxes that mail for the lookup key `key` reaches: the mailbox
    /// of that address, or the targets of the alias of that address.
    pub async fn resolve_address(&self, key: &str) -> Result<Vec<MailboxRef>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, address FROM mailboxes WHERE address = $1
             UNION
             SELECT m.id, m.address FROM aliases a JOIN mailboxes m ON m.id = a.mailbox_id
             WHERE a.address = $1
             ORDER BY address",
        )
        .bind(key)
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Domain;
    use crate::both_backends;

    fn a(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    both_backends!(
        mailboxes_and_aliases_resolve_case_insensitively,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            let e = store
                .add_mailbox(&a("alice@example.test"), "", now)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("not a local domain"), "{e}");
            store
                .add_domain(&Domain::parse("example.test").unwrap(), now)
                .await
                .unwrap();
            let alice = store
                .add_mailbox(&a("Alice@Example.test"), "h1", now)
                .await
                .unwrap();
            assert_eq!(alice.address, "alice@example.test");
            let bob = store
                .add_mailbox(&a("bob@example.test"), "", now)
                .await
                .unwrap();
            let e = store
                .add_mailbox(&a("ALICE@example.test"), "", now)
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");

            store
                .add_alias(
                    &a("team@example.test"),
                    &[a("alice@example.test"), a("bob@example.test")],
                    now,
                )
                .await
                .unwrap();
            let e = store
                .add_alias(&a("alice@example.test"), &[a("bob@example.test")], now)
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            let e = store
                .add_alias(&a("x@example.test"), &[a("nobody@example.test")], now)
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::NotFound(_)), "{e}");
            let e = store
                .add_mailbox(&a("team@example.test"), "", now)
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");

            assert_eq!(
                store.resolve_address("alice@example.test").await.unwrap(),
                vec![alice.clone()]
            );
            assert_eq!(
                store.resolve_address("team@example.test").await.unwrap(),
                vec![alice.clone(), bob.clone()]
            );
            assert!(
                store
                    .resolve_address("nobody@example.test")
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                store.list_aliases(None).await.unwrap(),
                vec![AliasInfo {
                    address: "team@example.test".into(),
                    targets: vec!["alice@example.test".into(), "bob@example.test".into()]
                }]
            );

            store
                .set_password_hash(&a("bob@example.test"), "h2")
                .await
                .unwrap();
            assert_eq!(
                store
                    .password_hash(&a("bob@example.test"))
                    .await
                    .unwrap()
                    .as_deref(),
                Some("h2")
            );
            assert!(
                store
                    .set_password_hash(&a("zed@example.test"), "h")
                    .await
                    .is_err()
            );

            let e = store
                .remove_domain(&Domain::parse("example.test").unwrap())
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::InUse(_)), "{e}");
            store
                .remove_alias(&a("team@example.test"), Some(&a("bob@example.test")))
                .await
                .unwrap();
            assert_eq!(
                store.resolve_address("team@example.test").await.unwrap(),
                vec![alice.clone()]
            );
            store
                .remove_mailbox(&a("alice@example.test"))
                .await
                .unwrap();
            assert!(
                store
                    .resolve_address("team@example.test")
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                store
                    .remove_alias(&a("team@example.test"), None)
                    .await
                    .is_err()
            );
            let listed: Vec<_> = store.list_mailboxes(Some("example.test")).await.unwrap();
            assert_eq!(listed, vec![bob]);
        }
    );
}
