//! How one outbound message leaves the machine: the [`Transport`] the
//! outbound worker hands each queued message to.
//!
//! This module owns the last hop: the `.eml` outbox ([`FileOutbox`]), the
//! SMTP client conversation with a relay ([`Smarthost`]) or with the
//! recipient domain's mail exchangers ([`DirectMx`], including the MX
//! lookup, the limit on addresses tried and the refusal of non-public
//! ones), the STARTTLS policy, AUTH, the time limits, and the verdict on a
//! failure: [`SendError::Temporary`] (retry later) or
//! [`SendError::Permanent`] (give up). It does not queue, retry, compose or
//! sign messages; the outbound queue and the challenge composer do.
//!
//! All three send exactly the bytes they are given: the SMTP transports
//! dot-stuff and terminate the data, the outbox writes it unchanged.

mod conversation;
mod direct_mx;
mod outbox;
mod public;
mod recording;
mod smarthost;

pub use direct_mx::DirectMx;
pub use outbox::FileOutbox;
pub use public::non_public;
pub use recording::{Recording, Sent};
pub use smarthost::Smarthost;

use crate::address::{AddressError, EmailAddress};
use crate::config::{Config, HumanDuration, OutboundMode};
use crate::dns::Resolver;
use lettre::address::{Address, Envelope};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How a message leaves. Enum dispatch, no async traits.
pub enum Transport {
    /// `.eml` files in `outbound.outbox_dir`; nothing leaves the machine.
    File(FileOutbox),
    /// Every message through `outbound.smarthost`.
    Smarthost(Smarthost),
    /// Straight to each recipient domain's MX.
    Direct(Box<DirectMx>),
    /// Kept in memory for tests to read (lettre's stub transport).
    Recording(Recording),
}

/// Why a message was not sent. The outbound queue retries a temporary
/// failure and records a permanent one against the message.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Try again later: 4xx, no connection, timeout, DNS trouble, TLS trouble.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Never going to work: 5xx, no such domain, null MX, a bad address.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Why a transport could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// `key` is the config key to fix, e.g. `outbound.smarthost`.
    #[error("{key}: {message}")]
    Config { key: &'static str, message: String },
}

impl Transport {
    /// Builds the transport named by config.outbound_mode(). Errors (bad
    /// smarthost, unreadable resolv.conf...) name the config key.
    ///
    /// Needs no async runtime: nothing connects or spawns until [`Transport::send`].
    /// `resolver` is for direct MX delivery (the server's one resolver);
    /// `None` builds one from `[dns]`.
    pub fn from_config(
        config: &Config,
        resolver: Option<Arc<dyn Resolver>>,
    ) -> Result<Transport, TransportError> {
        match config.outbound_mode() {
            // `outbound_mode` has resolved "auto" already.
            OutboundMode::File | OutboundMode::Auto => {
                Ok(Transport::File(FileOutbox::new(config.outbox_dir())))
            }
            OutboundMode::Smarthost => Smarthost::from_config(config).map(Transport::Smarthost),
            OutboundMode::Direct => {
                DirectMx::from_config(config, resolver).map(|d| Transport::Direct(Box::new(d)))
            }
        }
    }

    /// Sends one message. `env_from` None means the null reverse-path <>
    /// (challenges are always sent from <>, RFC 3834 §4 / RFC 5321 §4.5.5);
    /// `Some("")` means the same. `data` is the complete RFC 5322 message
    /// with CRLF line endings. Returns a short description of what happened
    /// (e.g. the remote's 250 reply text, or the file path) for the main log.
    ///
    /// An unparsable sender or recipient address is a permanent failure in
    /// every mode, so the file outbox refuses what SMTP would refuse.
    pub async fn send(
        &self,
        env_from: Option<&str>,
        rcpt: &str,
        data: &[u8],
    ) -> Result<String, SendError> {
        let envelope = envelope(env_from, rcpt)?;
        match self {
            Transport::File(outbox) => outbox.send(data).await,
            Transport::Smarthost(relay) => relay.send(&envelope, data).await,
            Transport::Direct(direct) => direct.send(&envelope, data).await,
            Transport::Recording(r) => r.send(&envelope, data),
        }
    }

    /// One line for start-up logs: "file /path", "smarthost host:port",
    /// "direct MX".
    pub fn describe(&self) -> String {
        match self {
            Transport::File(outbox) => format!("file {}", outbox.dir.display()),
            Transport::Smarthost(relay) => format!("smarthost {}", relay.peer()),
            Transport::Direct(_) => "direct MX".to_owned(),
            Transport::Recording(_) => "recording".to_owned(),
        }
    }
}

/// Runs one delivery attempt within `outbound.timeout`; `context` says
/// what was being tried when it ran out.
async fn within_attempt(
    limit: Duration,
    context: impl FnOnce() -> String,
    attempt: impl Future<Output = Result<String, SendError>>,
) -> Result<String, SendError> {
    match tokio::time::timeout(limit, attempt).await {
        Ok(done) => done,
        Err(_) => Err(SendError::Temporary(format!(
            "{}: the delivery attempt took longer than {} (outbound.timeout)",
            context(),
            HumanDuration(limit)
        ))),
    }
}

fn lettre_address(address: &str) -> Result<Address, AddressError> {
    EmailAddress::parse_relaxed(address, true).map(|a| a.to_lettre())
}

fn envelope(env_from: Option<&str>, rcpt: &str) -> Result<Envelope, SendError> {
    let from = match env_from {
        None | Some("") => None,
        Some(from) => Some(lettre_address(from).map_err(|e| {
            SendError::Permanent(format!("sender address {from:?} is not valid: {e}"))
        })?),
    };
    let to = lettre_address(rcpt).map_err(|e| {
        SendError::Permanent(format!("recipient address {rcpt:?} is not valid: {e}"))
    })?;
    Envelope::new(from, vec![to]).map_err(|e| SendError::Permanent(e.to_string()))
}

#[cfg(test)]
mod tests;
