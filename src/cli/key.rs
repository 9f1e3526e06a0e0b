//! `boxtrap key`: the keys challenge tokens are signed with, by id and
//! state (never the secrets): list, rotate, retire.

use super::Admin;
use crate::challenge::issue::{revoke_key, rotate_key};
use crate::store::settings::StoredKey;
use anyhow::bail;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// List the challenge token keys by id with their state (current,
    /// retired and until when it verifies, expired, revoked), never the secrets.
    List,
    /// Make a new key current; the old one verifies the tokens it signed until the last expires.
    Rotate,
    /// Revoke a retired key at once: no token it signed is accepted any more.
    Retire {
        /// The key's id, as `key list` shows it.
        id: u32,
    },
}

pub async fn run(admin: &Admin, cmd: KeyCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    let configured = !admin.config.challenge.secret.is_empty();
    let now = admin.now();
    match cmd {
        KeyCmd::List => {
            // Opening the admin context loaded the keys as `serve` does:
            // without a configured secret there is a current key, and
            // every other key has its retirement recorded.
            let keys = store.token_keys().await?;
            if configured {
                say!("0  current  (the [challenge] secret in the configuration)");
            }
            for k in &keys.keys {
                if configured && k.id == 0 {
                    continue;
                }
                let current = !configured && Some(k.id) == keys.current;
                say!("{}", describe(k, current, now));
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
            let (id, retired) = rotate_key(store, &admin.config.challenge, now).await?;
            say!("token key {id} is now current");
            if let Some((old, until)) = retired {
                say!(
                    "token key {old} is retired: it verifies the tokens it signed until {} \
                     UTC, when the last of them expires (`boxtrap key retire {old}` ends \
                     that now)",
                    until.log_format()
                );
            }
            say!(
                "running `boxtrap serve` processes sign with the new key from their next \
                 sweep (challenge.sweep_interval)"
            );
        }
        KeyCmd::Retire { id } => {
            if configured && id == 0 {
                bail!(
                    "token key 0 is the [challenge] secret in the configuration: to stop \
                     using it, change or remove the secret and restart `boxtrap serve`"
                );
            }
            if revoke_key(store, id, now).await? {
                say!(
                    "token key {id} is revoked: no token it signed is accepted any more, \
                     by link or by reply"
                );
            } else {
                say!("token key {id} was already revoked");
            }
        }
    }
    Ok(())
}

/// One line of `key list`: the id, the state, and its times (UTC).
fn describe(k: &StoredKey, current: bool, now: crate::clock::Timestamp) -> String {
    let id = k.id;
    if let Some(at) = k.revoked_at {
        return format!("{id}  revoked  {}", at.log_format());
    }
    match k.retired {
        _ if current => format!("{id}  current"),
        Some((at, until)) if now <= until => format!(
            "{id}  retired  {}, verifies its tokens until {}",
            at.log_format(),
            until.log_format()
        ),
        Some((at, until)) => format!(
            "{id}  expired  retired {}, verified its tokens until {}",
            at.log_format(),
            until.log_format()
        ),
        None => format!("{id}  retired"),
    }
}
