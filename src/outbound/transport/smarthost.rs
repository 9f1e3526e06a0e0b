//! Relaying through one configured SMTP server.

use super::conversation::{Timeouts, auth, connect, converse, helo_name, start_tls, transaction};
use super::{SendError, TransportError, within_attempt};
use crate::config::{Config, TlsPolicy};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use std::net::IpAddr;
use std::time::Duration;

/// STARTTLS policy for one SMTP conversation (RFC 3207).
#[derive(Clone)]
enum StartTls {
    Off,
    /// Upgrade when the server offers STARTTLS; a failed upgrade fails the attempt.
    Opportunistic(TlsParameters),
    /// Fail unless the server offers STARTTLS and the upgrade succeeds.
    Required(TlsParameters),
}

/// Relays every message through one configured SMTP server
/// (`outbound.smarthost`), with the STARTTLS policy of
/// `outbound.smarthost_tls` (certificates verified against the Web PKI
/// roots) and AUTH when `outbound.smarthost_user` is set, each step within
/// its `outbound.*_timeout` and the whole attempt within `outbound.timeout`.
pub struct Smarthost {
    /// Host name or IP address, without brackets.
    host: String,
    port: u16,
    starttls: StartTls,
    credentials: Option<Credentials>,
    helo: ClientId,
    timeouts: Timeouts,
    /// `outbound.timeout`: the whole attempt.
    attempt_limit: Duration,
}

impl Smarthost {
    /// Reads the `outbound.smarthost*` keys.
    pub fn from_config(config: &Config) -> Result<Smarthost, TransportError> {
        let o = &config.outbound;
        let bad = |key, message: String| TransportError::Config { key, message };
        let (host, port) = o.smarthost.rsplit_once(':').ok_or_else(|| {
            bad(
                "outbound.smarthost",
                format!("{:?} is not host:port", o.smarthost),
            )
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| {
            bad(
                "outbound.smarthost",
                format!("{:?} has no valid port", o.smarthost),
            )
        })?;
        if host.is_empty() {
            return Err(bad(
                "outbound.smarthost",
                format!("{:?} has no host", o.smarthost),
            ));
        }
        let params = || {
            TlsParameters::new(host.to_owned()).map_err(|e| {
                bad(
                    "outbound.smarthost",
                    format!("no TLS settings for {host:?}: {e}"),
                )
            })
        };
        let starttls = match o.smarthost_tls {
            TlsPolicy::Off => StartTls::Off,
            TlsPolicy::Opportunistic => StartTls::Opportunistic(params()?),
            TlsPolicy::Required => StartTls::Required(params()?),
        };
        let credentials = (!o.smarthost_user.is_empty())
            .then(|| Credentials::new(o.smarthost_user.clone(), o.smarthost_password.clone()));
        Ok(Smarthost {
            host: host.to_owned(),
            port,
            starttls,
            credentials,
            helo: helo_name(config),
            timeouts: Timeouts::from_config(o),
            attempt_limit: o.timeout.0,
        })
    }

    pub(super) fn peer(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    pub(super) async fn send(&self, envelope: &Envelope, data: &[u8]) -> Result<String, SendError> {
        let peer = format!("smarthost {}", self.peer());
        let t = &self.timeouts;
        let conversation = async {
            let mut conn = connect((self.host.as_str(), self.port), &self.helo, t).await?;
            conn = match &self.starttls {
                StartTls::Opportunistic(params) if conn.can_starttls() => {
                    start_tls(conn, params.clone(), &self.helo, t).await?
                }
                StartTls::Required(params) => {
                    start_tls(conn, params.clone(), &self.helo, t).await?
                }
                StartTls::Off | StartTls::Opportunistic(_) => conn,
            };
            let result = async {
                if let Some(credentials) = &self.credentials {
                    auth(&mut conn, credentials, t).await?;
                }
                transaction(&mut conn, envelope, data, t).await
            }
            .await;
            Ok((conn, result))
        };
        within_attempt(
            self.attempt_limit,
            || peer.clone(),
            converse(&peer, t, conversation),
        )
        .await
    }
}
