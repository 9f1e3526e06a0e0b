//! Owners' personal API tokens (migration 0014): a name, the SHA-256 of
//! the token (the token itself is shown once, when it is made), and when
//! it was made and last used. A token acts for its mailbox only.

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub mailbox_id: i64,
    pub name: String,
    #[sqlx(try_from = "i64")]
    pub created_at: Timestamp,
    /// Microseconds since the epoch; `None`: never used.
    pub last_used: Option<i64>,
}

/// Whom a presented token acts for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenOwner {
    pub token_id: i64,
    pub mailbox_id: i64,
    /// The mailbox's address (its lookup key).
    pub address: String,
    pub last_used: Option<i64>,
}

impl Store {
    /// Stores a new token for the mailbox by the hash of its secret;
    /// returns its id.
    pub async fn create_api_token(
        &self,
        mailbox_id: i64,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO api_tokens (mailbox_id, name, token_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(mailbox_id)
        .bind(name)
        .bind(token_hash)
        .bind(now.0)
        .fetch_one(self.writer())
        .await?)
    }

    /// The mailbox's tokens, oldest first.
    pub async fn api_tokens(&self, mailbox_id: i64) -> Result<Vec<ApiToken>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, mailbox_id, name, created_at, last_used FROM api_tokens
             WHERE mailbox_id = $1 ORDER BY id",
        )
        .bind(mailbox_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Whom the token with this hash acts for, if it exists.
    pub async fn api_token_owner(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenOwner>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT t.id AS token_id, t.mailbox_id, m.address, t.last_used
             FROM api_tokens t JOIN mailboxes m ON m.id = t.mailbox_id
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn touch_api_token(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used = $2 WHERE id = $1")
            .bind(id)
            .bind(now.0)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Revokes one of the mailbox's tokens; `false`: it has none by that id.
    pub async fn revoke_api_token(&self, mailbox_id: i64, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND mailbox_id = $2")
            .bind(id)
            .bind(mailbox_id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
