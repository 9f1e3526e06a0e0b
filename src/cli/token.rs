//! `boxtrap token`: owners' personal API tokens for `/api/v1/`
//! (`Authorization: Bearer bt_...`). A token is printed once, when it is
//! made; the database keeps only its SHA-256.

use super::Admin;
use crate::clock::Timestamp;
use crate::web::api::new_api_token;
use anyhow::bail;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make an API token for a mailbox and print it (only this once).
    Create {
        /// The mailbox the token acts for.
        mailbox: String,
        /// A name to tell it by ("phone", "backup script").
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List a mailbox's tokens by id, name, creation and last use (never the tokens).
    List { mailbox: String },
    /// Revoke one of a mailbox's tokens at once.
    Revoke {
        mailbox: String,
        /// The token's id, as `token list` shows it.
        id: i64,
    },
}

/// A token's name: 1 to 100 printable characters.
pub fn check_token_name(name: &str) -> anyhow::Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        bail!("token name: must be 1 to 100 characters without control characters, not {name:?}");
    }
    Ok(name)
}

pub async fn run(admin: &Admin, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create { mailbox, name } => {
            let name = check_token_name(&name)?;
            let m = admin.mailbox(&mailbox).await?;
            let (token, hash) = new_api_token();
            let id = admin
                .store
                .create_api_token(m.id, name, &hash, admin.now())
                .await?;
            say!("{token}");
            eprintln!(
                "API token {id} ({name}) for {}: keep it now, it is not shown again; \
                 send it as `Authorization: Bearer <token>`",
                m.address
            );
        }
        TokenCmd::List { mailbox } => {
            let m = admin.mailbox(&mailbox).await?;
            for t in admin.store.api_tokens(m.id).await? {
                let used = t.last_used.map_or("never used".to_owned(), |u| {
                    format!("last used {}", Timestamp(u).log_format())
                });
                say!(
                    "{}  {}  created {}  {used}",
                    t.id,
                    t.name,
                    t.created_at.log_format()
                );
            }
        }
        TokenCmd::Revoke { mailbox, id } => {
            let m = admin.mailbox(&mailbox).await?;
            if !admin.store.revoke_api_token(m.id, id).await? {
                bail!(
                    "{} has no API token {id} (see `boxtrap token list {}`)",
                    m.address,
                    m.address
                );
            }
            say!("API token {id} of {} revoked", m.address);
        }
    }
    Ok(())
}
