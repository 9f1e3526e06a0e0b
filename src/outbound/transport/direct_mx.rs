//! Direct delivery to the recipient domain's mail exchangers.

use super::conversation::{Timeouts, connect, converse, helo_name, start_tls, transaction};
use super::public::non_public;
use super::{SendError, TransportError, within_attempt};
use crate::config::Config;
use crate::dns::{DnsError, HickoryResolver, Resolver};
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use rand::seq::SliceRandom;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Delivers straight to the recipient domain's mail exchangers (RFC 5321
/// §5.1), found with the server's DNS resolver (`[dns]`; /etc/hosts is
/// never read).
///
/// One attempt tries at most `outbound.mx_address_limit` addresses, in MX
/// preference order, one at a time, each step within its
/// `outbound.*_timeout` and all of them within `outbound.timeout`.
/// Addresses that are not on the public internet are refused unless
/// `outbound.allow_private_destinations` is set (see [`non_public`]).
///
/// STARTTLS is opportunistic and unauthenticated, as between MTAs: used
/// when offered, certificates not checked, and if the upgrade fails the
/// same host is tried again in plain text (RFC 7435 §3, opportunistic
/// security: encryption when possible, never worse than cleartext).
pub struct DirectMx {
    resolver: Arc<dyn Resolver>,
    /// `outbound.mx_port`: 25, except in tests.
    port: u16,
    helo: ClientId,
    timeouts: Timeouts,
    /// `outbound.timeout`: the whole attempt.
    attempt_limit: Duration,
    /// `outbound.mx_address_limit`.
    address_limit: usize,
    /// `outbound.allow_private_destinations`.
    allow_private: bool,
    /// Our own SMTP listeners: an exchanger that is one of them would
    /// loop the mail back to us.
    own: Vec<SocketAddr>,
}

/// The hosts that receive mail for a domain.
enum Exchangers {
    /// MX records, sorted by preference.
    Mx(Vec<String>),
    /// No MX records: the domain itself (RFC 5321 §5.1 implicit MX).
    Implicit(String),
    /// An address literal, `user@[192.0.2.1]` (RFC 5321 §4.1.3).
    Literal(IpAddr),
}

/// What became of the addresses of one attempt, for its verdict.
#[derive(Default)]
struct Progress {
    /// The last temporary failure (a DNS lookup or a conversation).
    last_temporary: Option<String>,
    /// Exchangers the DNS says have no address.
    unresolvable: Vec<String>,
    /// Non-public addresses not connected to: "host [ip] (kind)".
    refused: Vec<String>,
}

impl DirectMx {
    /// Reads `mx_port`, `helo_name`, the time limits, `mx_address_limit`
    /// and `allow_private_destinations`; asks `resolver`, or when `None` a
    /// resolver of its own built from `[dns]` (see [`crate::dns::build`]).
    pub fn from_config(
        config: &Config,
        resolver: Option<Arc<dyn Resolver>>,
    ) -> Result<DirectMx, TransportError> {
        let o = &config.outbound;
        let resolver = match resolver {
            Some(r) => r,
            None => {
                let r = crate::dns::build(&config.dns).map_err(|e| TransportError::Config {
                    key: e.key,
                    message: e.message,
                })?;
                Arc::new(HickoryResolver::new(r))
            }
        };
        Ok(DirectMx {
            resolver,
            port: o.mx_port,
            helo: helo_name(config),
            timeouts: Timeouts::from_config(o),
            attempt_limit: o.timeout.0,
            address_limit: o.mx_address_limit.max(1),
            allow_private: o.allow_private_destinations,
            own: config.smtp.listen.clone(),
        })
    }

    /// Whether `ip` at the MX port is one of our own listeners (a listener
    /// on 0.0.0.0 or [::] counts for the loopback addresses).
    fn is_own(&self, ip: IpAddr) -> bool {
        self.own.iter().any(|l| {
            l.port() == self.port && (l.ip() == ip || (l.ip().is_unspecified() && ip.is_loopback()))
        })
    }

    /// Why `ip` may not be connected to, if it may not. The unspecified
    /// address is never a destination (connecting to it reaches this
    /// machine), whatever `allow_private_destinations` says.
    fn refuse(&self, ip: IpAddr) -> Option<String> {
        if self.allow_private && !ip.is_unspecified() {
            return None;
        }
        non_public(ip)
    }

    pub(super) async fn send(&self, envelope: &Envelope, data: &[u8]) -> Result<String, SendError> {
        let domain = envelope
            .to()
            .first()
            .map(Address::domain)
            .unwrap_or_default();
        let progress = Mutex::new(Progress::default());
        let context = || {
            let last = lock(&progress).last_temporary.take();
            match last {
                Some(e) => format!("mail for {domain}; last failure: {e}"),
                None => format!("mail for {domain}"),
            }
        };
        within_attempt(
            self.attempt_limit,
            context,
            self.attempt_all(domain, envelope, data, &progress),
        )
        .await
    }

    /// One delivery attempt: the addresses of the exchangers of `domain`,
    /// best first, until one takes the message or refuses it for good. At
    /// most `address_limit` addresses count (non-public ones included,
    /// though not connected to), and at most `address_limit` exchanger
    /// names are looked up, each only when its turn comes.
    async fn attempt_all(
        &self,
        domain: &str,
        envelope: &Envelope,
        data: &[u8],
        progress: &Mutex<Progress>,
    ) -> Result<String, SendError> {
        let hosts: Vec<(String, Option<IpAddr>)> = match self.exchangers(domain).await? {
            Exchangers::Literal(ip) => vec![(format!("[{ip}]"), Some(ip))],
            Exchangers::Implicit(name) => vec![(name, None)],
            Exchangers::Mx(names) => names.into_iter().map(|n| (n, None)).collect(),
        };
        let mut tried = 0;
        'hosts: for (host, literal) in hosts.into_iter().take(self.address_limit) {
            let ips = match literal {
                Some(ip) => vec![ip],
                None => match self.addresses(&host).await {
                    Ok(ips) if !ips.is_empty() => ips,
                    Ok(_) => {
                        lock(progress).unresolvable.push(host);
                        continue;
                    }
                    Err(e) => {
                        lock(progress).last_temporary = Some(e);
                        continue;
                    }
                },
            };
            for ip in ips {
                if tried == self.address_limit {
                    break 'hosts;
                }
                tried += 1;
                if let Some(kind) = self.refuse(ip) {
                    lock(progress)
                        .refused
                        .push(format!("{host} [{ip}] ({kind})"));
                    continue;
                }
                // Postfix's "mail for X loops back to myself".
                if self.is_own(ip) {
                    return Err(SendError::Permanent(format!(
                        "mail for {domain} loops back to myself ({host} [{ip}])"
                    )));
                }
                match self.attempt(&host, ip, envelope, data).await {
                    Ok(done) => return Ok(done),
                    Err(SendError::Temporary(e)) => lock(progress).last_temporary = Some(e),
                    Err(permanent) => return Err(permanent),
                }
            }
        }
        let p = lock(progress);
        let refused = (!p.refused.is_empty()).then(|| {
            format!(
                "not connecting to non-public addresses: {} (outbound.allow_private_destinations \
                 is off)",
                p.refused.join(", ")
            )
        });
        Err(match (&p.last_temporary, refused) {
            (Some(e), None) => SendError::Temporary(e.clone()),
            (Some(e), Some(refused)) => SendError::Temporary(format!("{e}; {refused}")),
            (None, Some(refused)) => SendError::Permanent(format!("mail for {domain}: {refused}")),
            // Every exchanger definitively has no address: a broken domain.
            (None, None) => SendError::Permanent(format!(
                "no mail exchanger of {domain} has an address: {}",
                p.unresolvable.join(", ")
            )),
        })
    }

    /// The hosts to try for `domain`, in order (RFC 5321 §5.1).
    async fn exchangers(&self, domain: &str) -> Result<Exchangers, SendError> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            // RFC 5321 §4.1.3: the "IPv6" tag, in any letter case.
            let ip = match literal.get(..5) {
                Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => &literal[5..],
                _ => literal,
            };
            return ip
                .parse()
                .map(Exchangers::Literal)
                .map_err(|_| SendError::Permanent(format!("{domain} is not an address literal")));
        }
        let name = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut mx: Vec<(u16, String)> = match self.resolver.mx(&name).await {
            Ok(records) => records
                .into_iter()
                .map(|m| (m.preference, m.exchange))
                .collect(),
            // The domain does not exist: nothing will ever deliver there.
            Err(DnsError::NxDomain(_)) => {
                return Err(SendError::Permanent(format!(
                    "domain {domain} does not exist"
                )));
            }
            Err(DnsError::NoRecords(_)) => return Ok(Exchangers::Implicit(name)),
            // SERVFAIL, REFUSED, timeouts: the DNS may answer later.
            Err(DnsError::Temporary(e)) => {
                return Err(SendError::Temporary(format!("MX lookup for {domain}: {e}")));
            }
        };
        // RFC 7505 §3: a single MX whose exchange is "." means "no mail here".
        if let [(_, exchange)] = mx.as_slice()
            && exchange == "."
        {
            return Err(SendError::Permanent(format!(
                "{domain} accepts no mail (null MX, RFC 7505)"
            )));
        }
        mx.retain(|(_, exchange)| exchange != ".");
        if mx.is_empty() {
            return Ok(Exchangers::Implicit(name));
        }
        // RFC 5321 §5.1: lowest preference first, equal ones in random order.
        mx.shuffle(&mut rand::rng());
        mx.sort_by_key(|(preference, _)| *preference);
        Ok(Exchangers::Mx(mx.into_iter().map(|(_, n)| n).collect()))
    }

    /// The addresses of one exchanger: `Ok(empty)` when the DNS says it has
    /// none, `Err` (a temporary failure's text) when the DNS did not answer.
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        match self.resolver.ips(host).await {
            Ok(ips) => Ok(ips.into_iter().filter(|ip| !ip.is_unspecified()).collect()),
            Err(DnsError::NxDomain(_) | DnsError::NoRecords(_)) => Ok(Vec::new()),
            Err(DnsError::Temporary(e)) => Err(format!("address lookup for {host}: {e}")),
        }
    }

    /// One SMTP conversation with one address of one exchanger.
    async fn attempt(
        &self,
        host: &str,
        ip: IpAddr,
        envelope: &Envelope,
        data: &[u8],
    ) -> Result<String, SendError> {
        let addr = SocketAddr::new(ip, self.port);
        let peer = format!("{host} [{ip}]:{}", self.port);
        let t = &self.timeouts;
        let conversation = async {
            let mut conn = connect(addr, &self.helo, t).await?;
            if conn.can_starttls() {
                let upgraded = match mx_tls_parameters(host) {
                    Ok(params) => start_tls(conn, params, &self.helo, t).await,
                    Err(e) => {
                        conn.abort().await;
                        Err(e.into())
                    }
                };
                conn = match upgraded {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::info!(%peer, error = ?e, "STARTTLS failed; retrying in plain text");
                        connect(addr, &self.helo, t).await?
                    }
                };
            }
            let result = transaction(&mut conn, envelope, data, t).await;
            Ok((conn, result))
        };
        converse(&peer, t, conversation).await
    }
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// TLS towards an MX: encryption without authentication (RFC 7435), since
/// most MX certificates cannot be verified against the MX host name.
fn mx_tls_parameters(host: &str) -> Result<TlsParameters, SmtpError> {
    let server_name = host.trim_start_matches('[').trim_end_matches(']');
    TlsParameters::builder(server_name.to_owned())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build()
}
