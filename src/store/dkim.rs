//! DKIM signing keys (RFC 6376), per local domain: what `boxtrap dkim
//! generate` stores and what signs the challenges and notices sent from
//! the domain (see `crate::challenge::sign`).
//!
//! A domain has at most one key per algorithm (Ed25519, RFC 8463, and
//! RSA): a new key of an algorithm the domain has replaces the old one
//! only when asked to (`replace`), in the same transaction. The private
//! key is kept as PKCS#8 DER in the database, as the token keys are kept
//! in `settings`: protected by the database's own access (a SQLite file
//! 0600 in a 0700 directory) and never printed.

use super::column::text_enum;
use super::{Store, StoreError};
use crate::address::Domain;
use crate::clock::Timestamp;

text_enum! {
    /// A DKIM key's algorithm, as stored and as the `k=` tag of its DNS
    /// record (RFC 6376 §3.6.1) names it.
    pub enum DkimAlgorithm("DKIM algorithm") {
        /// Ed25519, signing as `a=ed25519-sha256` (RFC 8463).
        Ed25519 = "ed25519",
        /// RSA (2048 bits when boxtrap makes it), signing as `a=rsa-sha256`
        /// (RFC 6376 §3.3.1).
        Rsa = "rsa",
    }
}

impl DkimAlgorithm {
    /// The name people read: `Ed25519`, `RSA`.
    pub fn label(self) -> &'static str {
        match self {
            DkimAlgorithm::Ed25519 => "Ed25519",
            DkimAlgorithm::Rsa => "RSA",
        }
    }
}

/// A stored DKIM key. Its `Debug` leaves the private key out.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredDkimKey {
    /// The signing domain (`d=`), lower case.
    pub domain: String,
    /// The selector (`s=`), lower case: the public key is published at
    /// `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The key's algorithm, the `k=` of its record.
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 DER (RFC 5208) private key.
    pub private_key: Vec<u8>,
    /// When `boxtrap dkim generate` made it.
    #[sqlx(try_from = "i64")]
    pub created_at: Timestamp,
}

impl std::fmt::Debug for StoredDkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field(
                "private_key",
                &format_args!("<{} bytes>", self.private_key.len()),
            )
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A key to store with [`Store::add_dkim_keys`].
#[derive(Clone)]
pub struct NewDkimKey {
    /// Lower case, checked by the caller (`crate::challenge::sign::check_selector`).
    pub selector: String,
    /// The key's algorithm; one key per algorithm and domain.
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
}

const KEY_COLUMNS: &str = "d.name AS domain, k.selector, k.algorithm, k.private_key, k.created_at \
     FROM dkim_keys k JOIN domains d ON d.id = k.domain_id";

impl Store {
    /// The DKIM keys of `domain` (lower case, as stored), Ed25519 first,
    /// then RSA. Empty for a domain without keys or that is not local.
    pub async fn dkim_keys(&self, domain: &str) -> Result<Vec<StoredDkimKey>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} WHERE d.name = $1 ORDER BY k.algorithm, k.created_at, k.selector"
        )))
        .bind(domain)
        .fetch_all(self.pool())
        .await?)
    }

    /// Stores `keys` for `domain`, all or none, in one transaction.
    ///
    /// Refused with [`StoreError::NotFound`] when the domain is not local;
    /// with [`StoreError::Conflict`] naming the selector when the domain
    /// has a key with that selector already (a resolver may still hold the
    /// old record: a new key needs a new selector), or when it has a key of
    /// the same algorithm and `replace` is false. With `replace`, that key
    /// is deleted; the keys deleted are returned.
    pub async fn add_dkim_keys(
        &self,
        domain: &Domain,
        keys: &[NewDkimKey],
        replace: bool,
        now: Timestamp,
    ) -> Result<Vec<StoredDkimKey>, StoreError> {
        let mut tx = self.begin_write().await?;
        let domain_id: i64 = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
            .bind(domain.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "{domain} is not a local domain (see `boxtrap domain list`)"
                ))
            })?;
        let existing: Vec<StoredDkimKey> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} WHERE k.domain_id = $1 ORDER BY k.algorithm, k.created_at"
        )))
        .bind(domain_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut replaced = Vec::new();
        for new in keys {
            for old in existing.iter().filter(|k| k.algorithm == new.algorithm) {
                if !replace {
                    return Err(StoreError::Conflict(format!(
                        "{domain} already has an {} DKIM key (selector {}, made {} UTC)",
                        old.algorithm.label(),
                        old.selector,
                        old.created_at.log_format()
                    )));
                }
                replaced.push(old.clone());
            }
            if let Some(old) = existing.iter().find(|k| k.selector == new.selector) {
                return Err(StoreError::Conflict(format!(
                    "{domain} already has a DKIM key with selector {} ({}, made {} UTC): a new \
                     key needs a new selector, since resolvers may still hold the old record",
                    old.selector,
                    old.algorithm.label(),
                    old.created_at.log_format()
                )));
            }
        }
        for old in &replaced {
            sqlx::query("DELETE FROM dkim_keys WHERE domain_id = $1 AND selector = $2")
                .bind(domain_id)
                .bind(&old.selector)
                .execute(&mut *tx)
                .await?;
        }
        for new in keys {
            sqlx::query(
                "INSERT INTO dkim_keys (domain_id, selector, algorithm, private_key, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(domain_id)
            .bind(&new.selector)
            .bind(new.algorithm.as_str())
            .bind(&new.private_key)
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::Conflict(format!(
                        "{domain} already has a DKIM key with selector {}",
                        new.selector
                    ))
                } else {
                    e.into()
                }
            })?;
        }
        tx.commit().await?;
        Ok(replaced)
    }

    /// The local domains with a challenge-response mailbox and no DKIM
    /// key, by name: their challenges and notices go out unsigned.
    pub async fn challenge_domains_without_dkim(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(UNSIGNED_DOMAINS)
            .fetch_all(self.pool())
            .await?)
    }
}

const UNSIGNED_DOMAINS: &str = "SELECT d.name FROM domains d
     WHERE EXISTS (SELECT 1 FROM mailboxes m
                   WHERE m.domain_id = d.id AND m.challenge_enabled <> 0)
       AND NOT EXISTS (SELECT 1 FROM dkim_keys k WHERE k.domain_id = d.id)
     ORDER BY d.name";

/// [`Store::challenge_domains_without_dkim`] for `check-config`, over one
/// connection to the database at `url`, tried once: no pool that retries
/// an unreachable server, no migration, and a SQLite file that is not
/// there is not created (an error).
pub async fn challenge_domains_without_dkim_at(url: &str) -> Result<Vec<String>, StoreError> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let domains = sqlx::query_scalar(UNSIGNED_DOMAINS)
        .fetch_all(&mut conn)
        .await;
    let _ = conn.close().await;
    Ok(domains?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::EmailAddress;
    use crate::both_backends;

    fn key(selector: &str, algorithm: DkimAlgorithm, byte: u8) -> NewDkimKey {
        NewDkimKey {
            selector: selector.into(),
            algorithm,
            private_key: vec![byte, 0, 255, byte],
        }
    }

    fn summary(keys: &[StoredDkimKey]) -> Vec<(String, DkimAlgorithm, Vec<u8>)> {
        keys.iter()
            .map(|k| (k.selector.clone(), k.algorithm, k.private_key.clone()))
            .collect()
    }

    both_backends!(
        keys_are_stored_per_domain_and_replaced_only_when_asked,
        |store: Store| async move {
            let t = Timestamp::from_secs;
            let domain = Domain::parse("example.test").unwrap();
            let e = store
                .add_dkim_keys(&domain, &[key("a", DkimAlgorithm::Rsa, 1)], false, t(1))
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::NotFound(_)), "{e}");
            assert!(e.to_string().contains("example.test"), "{e}");

            store.add_domain(&domain, t(1)).await.unwrap();
            store
                .add_domain(&Domain::parse("other.test").unwrap(), t(1))
                .await
                .unwrap();
            let both = [
                key("s1-rsa", DkimAlgorithm::Rsa, 1),
                key("s1-ed", DkimAlgorithm::Ed25519, 2),
            ];
            let replaced = store.add_dkim_keys(&domain, &both, false, t(10)).await;
            assert!(replaced.unwrap().is_empty());
            let keys = store.dkim_keys("example.test").await.unwrap();
            assert_eq!(
                summary(&keys),
                [
                    ("s1-ed".into(), DkimAlgorithm::Ed25519, vec![2, 0, 255, 2]),
                    ("s1-rsa".into(), DkimAlgorithm::Rsa, vec![1, 0, 255, 1]),
                ]
            );
            assert!(keys.iter().all(|k| k.domain == "example.test"));
            assert!(keys.iter().all(|k| k.created_at == t(10)));
            assert!(store.dkim_keys("other.test").await.unwrap().is_empty());

            // Another key of an algorithm the domain has: refused unless
            // replacing; a selector in use: refused even then. Nothing of
            // a refused call is stored.
            let e = store
                .add_dkim_keys(
                    &domain,
                    &[key("s2-ed", DkimAlgorithm::Ed25519, 3)],
                    false,
                    t(20),
                )
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            assert!(
                e.to_string().contains("Ed25519 DKIM key (selector s1-ed"),
                "{e}"
            );
            let e = store
                .add_dkim_keys(
                    &domain,
                    &[
                        key("s2-ed", DkimAlgorithm::Ed25519, 3),
                        key("s1-rsa", DkimAlgorithm::Rsa, 4),
                    ],
                    true,
                    t(20),
                )
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            assert!(e.to_string().contains("selector s1-rsa"), "{e}");
            assert_eq!(store.dkim_keys("example.test").await.unwrap(), keys);

            let replaced = store
                .add_dkim_keys(
                    &domain,
                    &[key("s2-ed", DkimAlgorithm::Ed25519, 3)],
                    true,
                    t(30),
                )
                .await
                .unwrap();
            assert_eq!(summary(&replaced), summary(&keys[..1]));
            let now = store.dkim_keys("example.test").await.unwrap();
            assert_eq!(
                summary(&now),
                [
                    ("s2-ed".into(), DkimAlgorithm::Ed25519, vec![3, 0, 255, 3]),
                    ("s1-rsa".into(), DkimAlgorithm::Rsa, vec![1, 0, 255, 1]),
                ]
            );

            // The keys go with their domain.
            store
                .add_dkim_keys(
                    &Domain::parse("other.test").unwrap(),
                    &[key("x", DkimAlgorithm::Rsa, 9)],
                    false,
                    t(40),
                )
                .await
                .unwrap();
            store
                .remove_domain(&Domain::parse("other.test").unwrap())
                .await
                .unwrap();
            assert!(store.dkim_keys("other.test").await.unwrap().is_empty());
        }
    );

    both_backends!(
        domains_with_challenges_and_no_key_are_named,
        |store: Store| async move {
            let t = Timestamp::from_secs;
            for d in ["a.test", "b.test", "c.test"] {
                store
                    .add_domain(&Domain::parse(d).unwrap(), t(1))
                    .await
                    .unwrap();
            }
            for m in ["x@a.test", "y@b.test", "z@c.test"] {
                store
                    .add_mailbox(&EmailAddress::parse(m).unwrap(), "", t(1))
                    .await
                    .unwrap();
            }
            assert!(
                store
                    .challenge_domains_without_dkim()
                    .await
                    .unwrap()
                    .is_empty(),
                "no mailbox challenges yet"
            );
            for m in ["x@a.test", "y@b.test"] {
                let mut s = store.mailbox_settings_by_address(m).await.unwrap();
                s.challenge_enabled = true;
                store.update_mailbox_settings(&s).await.unwrap();
            }
            assert_eq!(
                store.challenge_domains_without_dkim().await.unwrap(),
                ["a.test", "b.test"]
            );
            store
                .add_dkim_keys(
                    &Domain::parse("b.test").unwrap(),
                    &[key("k", DkimAlgorithm::Ed25519, 1)],
                    false,
                    t(2),
                )
                .await
                .unwrap();
            assert_eq!(
                store.challenge_domains_without_dkim().await.unwrap(),
                ["a.test"]
            );
        }
    );
}
