//! Local domains: mail for these is ours to deliver; mail for any other
//! domain is relaying, which boxtrap refuses to unauthenticated clients.

use super::{Store, StoreError};
use crate::address::Domain;
use crate::clock::Timestamp;

/// A domain with how much hangs off it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainInfo {
    pub name: String,
    pub mailboxes: i64,
    pub aliases: i64,
}

impl Store {
    pub async fn add_domain(&self, domain: &Domain, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO domains (name, created_at) VALUES ($1, $2)")
            .bind(domain.as_str())
            .bind(now.0)
            .execute(self.writer())
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::Conflict(format!("domain {domain} already exists"))
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    pub async fn list_domains(&self) -> Result<Vec<DomainInfo>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.name,
                    (SELECT COUNT(*) FROM mailboxes m WHERE m.domain_id = d.id) AS mailboxes,
                    (SELECT COUNT(DISTINCT a.address) FROM aliases a WHERE a.domain_id = d.id) AS aliases
             FROM domains d ORDER BY d.name",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Removes a domain that no mailbox or alias uses any more.
    pub async fn remove_domain(&self, domain: &Domain) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
            .bind(domain.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let id = id.ok_or_else(|| StoreError::NotFound(format!("no such domain: {domain}")))?;
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM mailboxes WHERE domain_id = $1)
                  + (SELECT COUNT(DISTINCT address) FROM aliases WHERE domain_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if used > 0 {
            return Err(StoreError::InUse(format!(
                "domain {domain} still has {used} mailbox(es)/alias(es); remove them first"
            )));
        }
        sqlx::query("DELETE FROM domains WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn domain_id(&self, domain: &Domain) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
            .bind(domain.as_str())
            .fetch_optional(self.pool())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::both_backends;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    both_backends!(
        domains_are_added_listed_and_removed,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            store.add_domain(&d("example.test"), now).await.unwrap();
            store.add_domain(&d("b.test"), now).await.unwrap();
            let e = store.add_domain(&d("Example.TEST"), now).await.unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            let names: Vec<_> = store
                .list_domains()
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.name)
                .collect();
            assert_eq!(names, ["b.test", "example.test"]);
            store.remove_domain(&d("b.test")).await.unwrap();
            let e = store.remove_domain(&d("b.test")).await.unwrap_err();
            assert!(matches!(e, StoreError::NotFound(_)), "{e}");
            assert!(store.domain_id(&d("example.test")).await.unwrap().is_some());
            assert!(store.domain_id(&d("b.test")).await.unwrap().is_none());
        }
    );
}
