//! `boxtrap key`: the keys challenge tokens are signed with, by id (never
//! the secrets).

use super::Admin;
use crate::challenge::token::TokenKey;
use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// List the challenge token keys by id, marking the current one (never the secrets).
    List,
    /// Make a new key current; older keys keep verifying their tokens until they expire.
    Rotate,
}

pub async fn run(admin: &Admin, cmd: KeyCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    let configured = !admin.config.challenge.secret.is_empty();
    match cmd {
        KeyCmd::List => {
            // Without a configured secret there is always a current key:
            // opening the admin context made the first, as `serve` does.
            let (keys, current) = store.token_keys().await?;
            if configured {
                say!("0  current  (the [challenge] secret in the configuration)");
            }
            for (id, _) in keys {
                if configured && id == 0 {
                    continue;
                }
                let mark = if !configured && Some(id) == current {
                    "  current"
                } else {
                    ""
                };
                say!("{id}{mark}");
            }
        }
        KeyCmd::Rotate => {
            if configured {
                bail!(
                    "the [challenge] secret in the configuration is the token key, so there \
                     is nothing to rotate here; to use keys kept in the database (which \
                     `key rotate` manages), remove the secret from the configuration"
                );
            }
            let (keys, _) = store.token_keys().await?;
            let max = keys.iter().map(|(id, _)| *id).max().unwrap_or(0);
            let id = max
                .checked_add(1)
                .context("no token key id is left (the largest is in use)")?;
            let key = TokenKey::generate(id);
            store.add_token_key(id, &key.to_hex(), true).await?;
            say!(
                "token key {id} is now current; older keys still verify the tokens they \
                 signed until those expire"
            );
            say!("restart running `boxtrap serve` processes so they sign new challenges with it");
        }
    }
    Ok(())
}
