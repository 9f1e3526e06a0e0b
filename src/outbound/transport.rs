//! How one outbound message leaves the machine: the [`Transport`] the
//! outbound worker hands each queued message to.
//!
//! This module owns the last hop: the `.eml` outbox ([`FileOutbox`]), the
//! SMTP client conversation with a relay ([`Smarthost`]) or with the
//! recipient domain's mail exchangers ([`DirectMx`], including the MX
//! lookup), the STARTTLS policy, AUTH, the time limit, and the verdict on a
//! failure: [`SendError::Temporary`] (retry later) or
//! [`SendError::Permanent`] (give up). It does not queue, retry, compose or
//! sign messages; the outbound queue and the challenge composer do.
//!
//! All three send exactly the bytes they are given: the SMTP transports
//! dot-stuff and terminate the data, the outbox writes it unchanged.

use crate::config::Config;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use rand::seq::SliceRandom;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a message leaves. Enum dispatch, no async traits.
pub enum Transport {
    /// `.eml` files in `outbound.outbox_dir`; nothing leaves the machine.
    File(FileOutbox),
    /// Every message through `outbound.smarthost`.
    Smarthost(Smarthost),
    /// Straight to each recipient domain's MX.
    Direct(Box<DirectMx>),
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
    pub fn from_config(config: &Config) -> Result<Transport, TransportError> {
        match config.outbound_mode() {
            "file" => Ok(Transport::File(FileOutbox::new(config.outbox_dir()))),
            "smarthost" => Smarthost::from_config(config).map(Transport::Smarthost),
            "direct" => DirectMx::from_config(config).map(|d| Transport::Direct(Box::new(d))),
            other => Err(TransportError::Config {
                key: "outbound.mode",
                message: format!("{other:?} is not one of auto, file, smarthost, direct"),
            }),
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
        }
    }

    /// One line for start-up logs: "file /path", "smarthost host:port",
    /// "direct MX".
    pub fn describe(&self) -> String {
        match self {
            Transport::File(outbox) => format!("file {}", outbox.dir.display()),
            Transport::Smarthost(relay) => format!("smarthost {}", relay.peer()),
            Transport::Direct(_) => "direct MX".to_owned(),
        }
    }
}

fn envelope(env_from: Option<&str>, rcpt: &str) -> Result<Envelope, SendError> {
    let from = match env_from {
        None | Some("") => None,
        Some(from) => Some(from.parse::<Address>().map_err(|e| {
            SendError::Permanent(format!("sender address {from:?} is not valid: {e}"))
        })?),
    };
    let to = rcpt.parse::<Address>().map_err(|e| {
        SendError::Permanent(format!("recipient address {rcpt:?} is not valid: {e}"))
    })?;
    Envelope::new(from, vec![to]).map_err(|e| SendError::Permanent(e.to_string()))
}

/// Development mode: each message becomes `<outbox_dir>/<random>.eml`, the
/// message exactly as it would have been sent, so a newcomer can open it.
///
/// The envelope is not stored: challenges always go from `<>` to the
/// address in their `To:` header, and the caller's main-log line names the
/// recipient.
pub struct FileOutbox {
    dir: PathBuf,
}

impl FileOutbox {
    /// An outbox writing into `dir` (created on first use).
    pub fn new(dir: PathBuf) -> FileOutbox {
        FileOutbox { dir }
    }

    async fn send(&self, data: &[u8]) -> Result<String, SendError> {
        let dir = self.dir.clone();
        let data = data.to_vec();
        let written = tokio::task::spawn_blocking(move || write_eml(&dir, &data))
            .await
            .map_err(|e| SendError::Temporary(format!("outbox writer stopped: {e}")))?;
        match written {
            Ok(path) => Ok(path.display().to_string()),
            Err(e) => Err(SendError::Temporary(format!(
                "cannot write into outbox {}: {e}",
                self.dir.display()
            ))),
        }
    }
}

/// Writes under a hidden temporary name, fsyncs, then renames: the `.eml`
/// never appears half-written, and it survives a crash once we return.
fn write_eml(dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let id = format!("{:032x}", rand::random::<u128>());
    let tmp = dir.join(format!(".{id}.tmp"));
    let path = dir.join(format!("{id}.eml"));
    let result = (|| {
        let mut file = std::fs::File::create_new(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

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
/// roots) and AUTH when `outbound.smarthost_user` is set.
pub struct Smarthost {
    /// Host name or IP address, without brackets.
    host: String,
    port: u16,
    starttls: StartTls,
    credentials: Option<Credentials>,
    helo: ClientId,
    timeout: Duration,
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
        let starttls = match o.smarthost_tls.as_str() {
            "off" => StartTls::Off,
            "opportunistic" => StartTls::Opportunistic(params()?),
            "required" => StartTls::Required(params()?),
            other => {
                return Err(bad(
                    "outbound.smarthost_tls",
                    format!("{other:?} is not one of off, opportunistic, required"),
                ));
            }
        };
        let credentials = (!o.smarthost_user.is_empty())
            .then(|| Credentials::new(o.smarthost_user.clone(), o.smarthost_password.clone()));
        Ok(Smarthost {
            host: host.to_owned(),
            port,
            starttls,
            credentials,
            helo: helo_name(config),
            timeout: o.timeout.0,
        })
    }

    fn peer(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    async fn send(&self, envelope: &Envelope, data: &[u8]) -> Result<String, SendError> {
        let peer = format!("smarthost {}", self.peer());
        let conversation = async {
            let mut conn =
                connect((self.host.as_str(), self.port), &self.helo, self.timeout).await?;
            conn = match &self.starttls {
                StartTls::Opportunistic(params) if conn.can_starttls() => {
                    start_tls(conn, params.clone(), &self.helo).await?
                }
                StartTls::Required(params) => start_tls(conn, params.clone(), &self.helo).await?,
                StartTls::Off | StartTls::Opportunistic(_) => conn,
            };
            let result = async {
                if let Some(credentials) = &self.credentials {
                    conn.auth(DEFAULT_MECHANISMS, credentials).await?;
                }
                transaction(&mut conn, envelope, data).await
            }
            .await;
            Ok((conn, result))
        };
        converse(&peer, self.timeout, conversation).await
    }
}

/// Delivers straight to the recipient domain's mail exchangers (RFC 5321
/// §5.1), found with its own DNS resolver (`outbound.dns_servers`, else the
/// `nameserver` lines of /etc/resolv.conf; /etc/hosts is never read).
///
/// STARTTLS is opportunistic and unauthenticated, as between MTAs: used
/// when offered, certificates not checked, and if the upgrade fails the
/// same host is tried again in plain text (RFC 7435 §3, opportunistic
/// security: encryption when possible, never worse than cleartext).
pub struct DirectMx {
    resolver: TokioResolver,
    /// `outbound.mx_port`: 25, except in tests.
    port: u16,
    helo: ClientId,
    timeout: Duration,
    /// Our own SMTP listeners: an exchanger that is one of them would
    /// loop the mail back to us.
    own: Vec<SocketAddr>,
}

/// The hosts that receive mail for a domain.
enum Exchangers {
    /// MX records, sorted by preference.
    Mx(Vec<Name>),
    /// No MX records: the domain itself (RFC 5321 §5.1 implicit MX).
    Implicit(Name),
    /// An address literal, `user@[192.0.2.1]` (RFC 5321 §4.1.3).
    Literal(IpAddr),
}

impl DirectMx {
    /// Reads `outbound.dns_servers` (or /etc/resolv.conf), `mx_port`,
    /// `helo_name` and `timeout`.
    pub fn from_config(config: &Config) -> Result<DirectMx, TransportError> {
        let o = &config.outbound;
        let servers = if o.dns_servers.is_empty() {
            let path = Path::new("/etc/resolv.conf");
            let text = std::fs::read_to_string(path).map_err(|e| TransportError::Config {
                key: "outbound.dns_servers",
                message: format!("empty, and {} cannot be read: {e}", path.display()),
            })?;
            let servers = parse_resolv_conf(&text);
            if servers.is_empty() {
                return Err(TransportError::Config {
                    key: "outbound.dns_servers",
                    message: format!(
                        "empty, and {} has no usable nameserver line",
                        path.display()
                    ),
                });
            }
            servers
        } else {
            o.dns_servers.clone()
        };
        Ok(DirectMx {
            resolver: resolver(&servers)?,
            port: o.mx_port,
            helo: helo_name(config),
            timeout: o.timeout.0,
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

    async fn send(&self, envelope: &Envelope, data: &[u8]) -> Result<String, SendError> {
        let domain = envelope
            .to()
            .first()
            .map(Address::domain)
            .unwrap_or_default();
        let hosts: Vec<(String, Option<IpAddr>)> = match self.exchangers(domain).await? {
            Exchangers::Literal(ip) => vec![(format!("[{ip}]"), Some(ip))],
            Exchangers::Implicit(name) => vec![(name.to_ascii(), None)],
            Exchangers::Mx(names) => names.into_iter().map(|n| (n.to_ascii(), None)).collect(),
        };
        let mut last_temporary: Option<String> = None;
        let mut unresolvable = Vec::new();
        for (host, literal) in hosts {
            let host = host.trim_end_matches('.');
            let ips = match literal {
                Some(ip) => vec![ip],
                None => match self.addresses(host).await {
                    Ok(ips) if !ips.is_empty() => ips,
                    Ok(_) => {
                        unresolvable.push(host.to_owned());
                        continue;
                    }
                    Err(e) => {
                        last_temporary = Some(e);
                        continue;
                    }
                },
            };
            for ip in ips {
                // Postfix's "mail for X loops back to myself".
                if self.is_own(ip) {
                    return Err(SendError::Permanent(format!(
                        "mail for {domain} loops back to myself ({host} [{ip}])"
                    )));
                }
                match self.attempt(host, ip, envelope, data).await {
                    Ok(done) => return Ok(done),
                    Err(SendError::Temporary(e)) => last_temporary = Some(e),
                    Err(permanent) => return Err(permanent),
                }
            }
        }
        Err(match last_temporary {
            Some(e) => SendError::Temporary(e),
            // Every exchanger definitively has no address: a broken domain.
            None => SendError::Permanent(format!(
                "no mail exchanger of {domain} has an address: {}",
                unresolvable.join(", ")
            )),
        })
    }

    /// The hosts to try for `domain`, in order (RFC 5321 §5.1).
    async fn exchangers(&self, domain: &str) -> Result<Exchangers, SendError> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
            return ip
                .parse()
                .map(Exchangers::Literal)
                .map_err(|_| SendError::Permanent(format!("{domain} is not an address literal")));
        }
        let mut name = Name::from_utf8(domain)
            .map_err(|e| SendError::Permanent(format!("{domain:?} is not a domain name: {e}")))?;
        name.set_fqdn(true);
        let lookup = match self.resolver.mx_lookup(name.clone()).await {
            Ok(lookup) => lookup,
            // The domain does not exist: nothing will ever deliver there.
            Err(e) if e.is_nx_domain() => {
                return Err(SendError::Permanent(format!(
                    "domain {domain} does not exist"
                )));
            }
            Err(e) if e.is_no_records_found() => return Ok(Exchangers::Implicit(name)),
            // SERVFAIL, REFUSED, timeouts: the DNS may answer later.
            Err(e) => {
                return Err(SendError::Temporary(format!("MX lookup for {domain}: {e}")));
            }
        };
        let mut mx: Vec<(u16, Name)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                _ => None,
            })
            .collect();
        // RFC 7505 §3: a single MX whose exchange is "." means "no mail here".
        if let [(_, exchange)] = mx.as_slice()
            && exchange.is_root()
        {
            return Err(SendError::Permanent(format!(
                "{domain} accepts no mail (null MX, RFC 7505)"
            )));
        }
        mx.retain(|(_, exchange)| !exchange.is_root());
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
        let mut name = Name::from_utf8(host).map_err(|e| format!("{host:?}: {e}"))?;
        name.set_fqdn(true);
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => Ok(lookup.iter().filter(|ip| !ip.is_unspecified()).collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(format!("address lookup for {host}: {e}")),
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
        let conversation = async {
            let mut conn = connect(addr, &self.helo, self.timeout).await?;
            if conn.can_starttls() {
                let upgraded = match mx_tls_parameters(host) {
                    Ok(params) => start_tls(conn, params, &self.helo).await,
                    Err(e) => {
                        conn.abort().await;
                        Err(e)
                    }
                };
                conn = match upgraded {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "STARTTLS failed; retrying in plain text");
                        connect(addr, &self.helo, self.timeout).await?
                    }
                };
            }
            let result = transaction(&mut conn, envelope, data).await;
            Ok((conn, result))
        };
        converse(&peer, self.timeout, conversation).await
    }
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

/// A resolver that asks exactly `servers`, over UDP with TCP fallback.
fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, TransportError> {
    let name_servers = servers
        .iter()
        .map(|server| {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            NameServerConfig::new(server.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    // Exchangers come from the DNS only, never from this machine's /etc/hosts.
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(|e| TransportError::Config {
        key: "outbound.dns_servers",
        message: format!("cannot build a resolver: {e}"),
    })
}

/// The `nameserver` lines of a resolv.conf (port 53); everything else,
/// and addresses that do not parse (such as scoped IPv6), is ignored.
fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(ip)) => ip.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The EHLO name: `outbound.helo_name`, else `hostname`; an IP address is
/// sent as an address literal (RFC 5321 §4.1.4).
fn helo_name(config: &Config) -> ClientId {
    let name = if config.outbound.helo_name.is_empty() {
        &config.hostname
    } else {
        &config.outbound.helo_name
    };
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
        Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
        Err(_) => ClientId::Domain(name.clone()),
    }
}

/// Connects and exchanges greeting and EHLO. lettre's own timeout covers
/// only the TCP connect; callers bound the whole conversation.
async fn connect(
    addr: impl tokio::net::ToSocketAddrs,
    helo: &ClientId,
    timeout: Duration,
) -> Result<AsyncSmtpConnection, SmtpError> {
    AsyncSmtpConnection::connect_tokio1(addr, Some(timeout), helo, None, None).await
}

/// STARTTLS and the second EHLO (RFC 3207). A failed upgrade consumes the
/// connection: after a failed handshake lettre keeps no stream, and writing
/// to it again (even QUIT) trips an assertion, so it is only dropped. When
/// the server never offered STARTTLS the stream is intact and gets a QUIT.
async fn start_tls(
    mut conn: AsyncSmtpConnection,
    params: TlsParameters,
    helo: &ClientId,
) -> Result<AsyncSmtpConnection, SmtpError> {
    let offered = conn.can_starttls();
    match conn.starttls(params, helo).await {
        Ok(()) => Ok(conn),
        Err(e) => {
            if !offered {
                conn.abort().await;
            }
            Err(e)
        }
    }
}

/// MAIL, RCPT, DATA. lettre ends the data with CRLF.CRLF itself, so one
/// final CRLF of ours is left off, or the remote would store an extra
/// empty line.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    data: &[u8],
) -> Result<Response, SmtpError> {
    let body = data.strip_suffix(b"\r\n").unwrap_or(data);
    conn.send(envelope, body).await
}

/// How long the goodbye (QUIT) may take; its answer changes nothing.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// Runs one SMTP conversation (connect up to the reply to the data) within
/// `limit`, then ends it: QUIT after success, outside the limit, since
/// nothing after the 250 can undo an accepted message (a timeout there
/// would only cause a duplicate); QUIT-and-close after a refusal.
async fn converse(
    peer: &str,
    limit: Duration,
    conversation: impl Future<
        Output = Result<(AsyncSmtpConnection, Result<Response, SmtpError>), SmtpError>,
    >,
) -> Result<String, SendError> {
    let (mut conn, result) = match tokio::time::timeout(limit, conversation).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(classify(peer, &e)),
        Err(_) => return Err(timed_out(peer, limit)),
    };
    match result {
        Ok(reply) => {
            let _ = tokio::time::timeout(QUIT_WAIT.min(limit), conn.quit()).await;
            Ok(format!("{peer} said {}", reply_text(&reply)))
        }
        Err(e) => {
            let _ = tokio::time::timeout(QUIT_WAIT.min(limit), conn.abort()).await;
            Err(classify(peer, &e))
        }
    }
}

/// 5xx is permanent, everything else (4xx, refused connections, timeouts,
/// TLS failures, a missing STARTTLS or AUTH offer) is temporary — except
/// AUTH rejections (RFC 4954 §6: 530, 534, 535, 538), which say our
/// credentials or TLS setup are wrong, not the message: they are deferred
/// so the admin can fix the config (as Postfix's smtp_sasl_auth_soft_bounce).
fn classify(peer: &str, e: &SmtpError) -> SendError {
    let text = format!("{peer}: {e}");
    match e.status().map(u16::from) {
        Some(530 | 534 | 535 | 538) => SendError::Temporary(format!(
            "{text} (deferred: check outbound.smarthost_user, smarthost_password and smarthost_tls)"
        )),
        _ if e.is_permanent() => SendError::Permanent(text),
        _ => SendError::Temporary(text),
    }
}

fn timed_out(peer: &str, limit: Duration) -> SendError {
    SendError::Temporary(format!(
        "{peer}: no complete answer within {}s (outbound.timeout)",
        limit.as_secs_f32()
    ))
}

/// `250 2.0.0 Ok: queued as 4XyZ`, one line.
fn reply_text(reply: &Response) -> String {
    let lines: Vec<&str> = reply.message().collect();
    format!("{} {}", u16::from(reply.code()), lines.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    /// A message whose lines start with dots, to prove dot-stuffing both ways.
    const MESSAGE: &[u8] = b"From: alice@example.test\r\n\
        To: bob@example.org\r\n\
        Subject: verify#abc\r\n\
        Auto-Submitted: auto-replied\r\n\
        \r\n\
        .a line that starts with a dot\r\n\
        ..and one with two\r\n\
        .\r\n\
        last line\r\n";

    // ---- a tiny ESMTP server on loopback ----

    #[derive(Clone, Default)]
    struct Behaviour {
        /// Reply to every RCPT (e.g. "550 5.1.1 no such user"); None accepts.
        rcpt_reply: Option<&'static str>,
        /// Advertise STARTTLS, answer 220, then send garbage instead of TLS.
        broken_starttls: bool,
        /// Accept connections and never say anything.
        silent: bool,
    }

    #[derive(Debug, Clone, Default)]
    struct Received {
        ehlo: String,
        mail_from: String,
        rcpt_to: Vec<String>,
        data: Vec<u8>,
    }

    struct TestSmtp {
        addr: SocketAddr,
        received: Arc<Mutex<Vec<Received>>>,
        connections: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl TestSmtp {
        async fn start(behaviour: Behaviour) -> TestSmtp {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let received = Arc::new(Mutex::new(Vec::new()));
            let connections = Arc::new(AtomicUsize::new(0));
            let (out, count) = (received.clone(), connections.clone());
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, behaviour.clone(), out.clone()));
                }
            });
            TestSmtp {
                addr,
                received,
                connections,
                task,
            }
        }

        fn received(&self) -> Vec<Received> {
            self.received.lock().unwrap().clone()
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    impl Drop for TestSmtp {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve(
        stream: TcpStream,
        b: Behaviour,
        out: Arc<Mutex<Vec<Received>>>,
    ) -> std::io::Result<()> {
        if b.silent {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 test.example ESMTP\r\n").await?;
        let mut tx = Received::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let upper = text.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO ") {
                tx.ehlo = text[5..].to_owned();
                let tls = if b.broken_starttls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                format!("250-test.example\r\n{tls}250-8BITMIME\r\n250 SIZE 10000000")
            } else if upper == "STARTTLS" && b.broken_starttls {
                w.write_all(b"220 2.0.0 go ahead\r\nthis is not a TLS record\r\n")
                    .await?;
                return Ok(());
            } else if upper.starts_with("MAIL FROM:") {
                tx.mail_from = text[10..].to_owned();
                "250 2.1.0 ok".into()
            } else if upper.starts_with("RCPT TO:") {
                match b.rcpt_reply {
                    Some(reply) => reply.into(),
                    None => {
                        tx.rcpt_to.push(text[8..].to_owned());
                        "250 2.1.5 ok".into()
                    }
                }
            } else if upper == "DATA" {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: remove one leading dot.
                    let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
                    data.extend_from_slice(unstuffed);
                }
                tx.data = data;
                out.lock().unwrap().push(tx.clone());
                tx = Received {
                    ehlo: tx.ehlo.clone(),
                    ..Received::default()
                };
                "250 2.0.0 queued as T1".into()
            } else if upper == "RSET" || upper == "NOOP" {
                "250 2.0.0 ok".into()
            } else if upper == "QUIT" {
                w.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            } else {
                "502 5.5.2 not implemented here".into()
            };
            w.write_all(format!("{reply}\r\n").as_bytes()).await?;
        }
    }

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn config() -> Config {
        let mut config = Config {
            hostname: "boxtrap.example.test".into(),
            ..Config::default()
        };
        config.outbound.timeout = HumanDuration(Duration::from_secs(10));
        config
    }

    fn smarthost_config(addr: SocketAddr, tls: &str) -> Config {
        let mut config = config();
        config.outbound.mode = "smarthost".into();
        config.outbound.smarthost = addr.to_string();
        config.outbound.smarthost_tls = tls.into();
        config
    }

    fn temporary(r: Result<String, SendError>) -> String {
        match r {
            Err(SendError::Temporary(e)) => e,
            other => panic!("expected a temporary failure, got {other:?}"),
        }
    }

    fn permanent(r: Result<String, SendError>) -> String {
        match r {
            Err(SendError::Permanent(e)) => e,
            other => panic!("expected a permanent failure, got {other:?}"),
        }
    }

    // ---- construction ----

    #[test]
    fn every_mode_builds_outside_an_async_runtime() {
        let mut c = config();
        c.data_dir = "/nonexistent/data".into();
        let t = Transport::from_config(&c).unwrap();
        assert_eq!(t.describe(), "file /nonexistent/data/outbox");

        let t = Transport::from_config(&smarthost_config(
            "127.0.0.1:2525".parse().unwrap(),
            "required",
        ))
        .unwrap();
        assert_eq!(t.describe(), "smarthost 127.0.0.1:2525");

        let mut c = config();
        c.outbound.mode = "direct".into();
        c.outbound.dns_servers = vec!["127.0.0.1:5353".parse().unwrap()];
        let t = Transport::from_config(&c).unwrap();
        assert_eq!(t.describe(), "direct MX");
    }

    #[test]
    fn a_bad_smarthost_is_refused_naming_the_key() {
        let mut c = smarthost_config("127.0.0.1:25".parse().unwrap(), "opportunistic");
        c.outbound.smarthost = "mail.example.net:smtp".into();
        let e = Transport::from_config(&c).err().unwrap().to_string();
        assert!(e.starts_with("outbound.smarthost: "), "{e}");
        c.outbound.smarthost = "mail.example.net:587".into();
        c.outbound.smarthost_tls = "always".into();
        let e = Transport::from_config(&c).err().unwrap().to_string();
        assert!(e.starts_with("outbound.smarthost_tls: "), "{e}");
    }

    #[test]
    fn resolv_conf_nameserver_lines_are_read() {
        let text = "# generated\nsearch example.test\nnameserver 192.0.2.53\n\
                    nameserver  2001:db8::53\nnameserver fe80::1%eth0\noptions ndots:2\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }

    // ---- file outbox ----

    #[tokio::test]
    async fn the_outbox_gets_one_complete_eml_with_exactly_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.outbound.mode = "file".into();
        c.outbound.outbox_dir = dir.path().join("outbox");
        let t = Transport::from_config(&c).unwrap();
        let path = t.send(None, "bob@example.org", MESSAGE).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            files,
            vec![PathBuf::from(&path)],
            "only the .eml, no temp file"
        );
        assert!(path.ends_with(".eml"), "{path}");
        assert_eq!(std::fs::read(&path).unwrap(), MESSAGE);

        let second = t.send(None, "bob@example.org", MESSAGE).await.unwrap();
        assert_ne!(second, path);
    }

    #[tokio::test]
    async fn a_bad_recipient_is_permanent_even_for_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let t = Transport::File(FileOutbox::new(dir.path().to_owned()));
        let e = permanent(t.send(None, "not an address", MESSAGE).await);
        assert!(e.contains("not an address"), "{e}");
    }

    // ---- smarthost ----

    #[tokio::test]
    async fn the_smarthost_gets_the_null_sender_the_recipient_and_the_data_intact() {
        let server = TestSmtp::start(Behaviour::default()).await;
        let t = Transport::from_config(&smarthost_config(server.addr, "off")).unwrap();
        let said = t.send(None, "bob@example.org", MESSAGE).await.unwrap();
        assert_eq!(
            said,
            format!("smarthost {} said 250 2.0.0 queued as T1", server.addr)
        );
        let got = server.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ehlo, "boxtrap.example.test");
        assert_eq!(got[0].mail_from, "<>");
        assert_eq!(got[0].rcpt_to, vec!["<bob@example.org>"]);
        assert_eq!(
            String::from_utf8_lossy(&got[0].data),
            String::from_utf8_lossy(MESSAGE)
        );
    }

    #[tokio::test]
    async fn a_named_sender_and_the_helo_name_are_used() {
        let server = TestSmtp::start(Behaviour::default()).await;
        let mut c = smarthost_config(server.addr, "opportunistic");
        c.outbound.helo_name = "out.example.test".into();
        let t = Transport::from_config(&c).unwrap();
        t.send(
            Some("alice@example.test"),
            "bob@example.org",
            b"Subject: x\r\n\r\nno final newline",
        )
        .await
        .unwrap();
        let got = server.received();
        assert_eq!(got[0].ehlo, "out.example.test");
        assert_eq!(got[0].mail_from, "<alice@example.test>");
        assert_eq!(got[0].data, b"Subject: x\r\n\r\nno final newline\r\n");
    }

    #[tokio::test]
    async fn a_550_to_rcpt_is_permanent() {
        let server = TestSmtp::start(Behaviour {
            rcpt_reply: Some("550 5.1.1 no such user"),
            ..Behaviour::default()
        })
        .await;
        let t = Transport::from_config(&smarthost_config(server.addr, "off")).unwrap();
        let e = permanent(t.send(None, "nobody@example.org", MESSAGE).await);
        assert!(e.contains("550") && e.contains("no such user"), "{e}");
        assert!(server.received().is_empty());
    }

    #[tokio::test]
    async fn a_451_to_rcpt_is_temporary() {
        let server = TestSmtp::start(Behaviour {
            rcpt_reply: Some("451 4.3.0 try again later"),
            ..Behaviour::default()
        })
        .await;
        let t = Transport::from_config(&smarthost_config(server.addr, "off")).unwrap();
        let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(e.contains("451") && e.contains("try again later"), "{e}");
    }

    #[tokio::test]
    async fn an_auth_rejection_is_temporary() {
        // 530 here stands for "authentication required": fix the config, keep the mail.
        let server = TestSmtp::start(Behaviour {
            rcpt_reply: Some("530 5.7.0 authentication required"),
            ..Behaviour::default()
        })
        .await;
        let t = Transport::from_config(&smarthost_config(server.addr, "off")).unwrap();
        let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(e.contains("530"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_temporary() {
        let addr = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
        let t = Transport::from_config(&smarthost_config(addr, "opportunistic")).unwrap();
        let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(e.contains(&addr.to_string()), "{e}");
    }

    #[tokio::test]
    async fn required_tls_against_a_server_without_starttls_is_temporary() {
        let server = TestSmtp::start(Behaviour::default()).await;
        let t = Transport::from_config(&smarthost_config(server.addr, "required")).unwrap();
        let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(e.contains("STARTTLS"), "{e}");
        assert!(server.received().is_empty());
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_with_the_smarthost_is_temporary() {
        let server = TestSmtp::start(Behaviour {
            broken_starttls: true,
            ..Behaviour::default()
        })
        .await;
        let t = Transport::from_config(&smarthost_config(server.addr, "opportunistic")).unwrap();
        temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(
            server.received().is_empty(),
            "no plain-text fallback to a smarthost"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_temporary() {
        let server = TestSmtp::start(Behaviour {
            silent: true,
            ..Behaviour::default()
        })
        .await;
        let mut c = smarthost_config(server.addr, "off");
        c.outbound.timeout = HumanDuration(Duration::from_millis(300));
        let t = Transport::from_config(&c).unwrap();
        let started = std::time::Instant::now();
        let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(e.contains("outbound.timeout"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // ---- direct MX, against dnsmasq on loopback ----

    /// A private dnsmasq answering only from its command line, on a loopback
    /// port; killed on drop. A missing dnsmasq fails the test (scripts/test.sh
    /// installs dnsmasq-base).
    struct Dnsmasq {
        child: std::process::Child,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
    }

    /// The zone every direct-delivery test uses. `--local` makes dnsmasq
    /// answer NXDOMAIN/NODATA for these zones itself; any other name has no
    /// upstream, so dnsmasq answers REFUSED.
    const ZONE: &[&str] = &[
        "--local=/example.org/",
        "--local=/test/",
        // Two exchangers: the preferred one refuses connections.
        "--mx-host=example.org,mx2.example.org,10",
        "--mx-host=example.org,mx1.example.org,5",
        "--host-record=mx1.example.org,127.0.0.2",
        "--host-record=mx2.example.org,127.0.0.1",
        // No MX, only an address: implicit MX.
        "--host-record=implicit.test,127.0.0.1",
        // RFC 7505 null MX.
        "--mx-host=nullmx.test,.,0",
        // An MX whose host does not exist.
        "--mx-host=dangling.test,nowhere.test,10",
    ];

    impl Dnsmasq {
        fn start(records: &[&str]) -> Dnsmasq {
            let bin = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .chain(["/usr/sbin".into(), "/sbin".into()])
                .map(|dir| dir.join("dnsmasq"))
                .find(|path| path.is_file())
                .expect("dnsmasq not found: install dnsmasq-base (bash scripts/test.sh does)");
            let dir = tempfile::tempdir().unwrap();
            let log_path = dir.path().join("dnsmasq.log");
            for _ in 0..5 {
                let port = std::net::UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let log = std::fs::File::create(&log_path).unwrap();
                let mut child = std::process::Command::new(&bin)
                    .args([
                        "--keep-in-foreground",
                        "--listen-address=127.0.0.1",
                        "--bind-interfaces",
                        "--no-resolv",
                        "--no-hosts",
                        "--no-poll",
                        "--conf-file=/dev/null",
                        "--pid-file=",
                        "--log-facility=-",
                        "--log-queries",
                    ])
                    .arg(format!("--port={port}"))
                    .args(records)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                for _ in 0..100 {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    if std::net::TcpStream::connect(addr).is_ok() {
                        return Dnsmasq {
                            child,
                            addr,
                            _dir: dir,
                        };
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!(
                "dnsmasq did not start:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self._dir.path().join("dnsmasq.log")).unwrap_or_default()
        }
    }

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn direct(dns: SocketAddr, mx_port: u16) -> Transport {
        let mut c = config();
        c.outbound.mode = "direct".into();
        c.outbound.dns_servers = vec![dns];
        c.outbound.mx_port = mx_port;
        Transport::from_config(&c).unwrap()
    }

    #[tokio::test]
    async fn direct_delivery_follows_mx_preference_past_a_dead_exchanger() {
        let dns = Dnsmasq::start(ZONE);
        let server = TestSmtp::start(Behaviour::default()).await;
        let t = direct(dns.addr, server.addr.port());
        let said = t
            .send(None, "bob@example.org", MESSAGE)
            .await
            .unwrap_or_else(|e| panic!("{e}\ndnsmasq log:\n{}", dns.log()));
        assert_eq!(
            said,
            format!(
                "mx2.example.org [127.0.0.1]:{} said 250 2.0.0 queued as T1",
                server.addr.port()
            )
        );
        let got = server.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mail_from, "<>");
        assert_eq!(got[0].rcpt_to, vec!["<bob@example.org>"]);
        assert_eq!(got[0].data, MESSAGE);
        let log = dns.log();
        assert!(
            log.contains("mx1.example.org"),
            "mx1 was tried first:\n{log}"
        );
    }

    #[tokio::test]
    async fn a_domain_without_mx_gets_its_address_as_implicit_mx() {
        let dns = Dnsmasq::start(ZONE);
        let server = TestSmtp::start(Behaviour::default()).await;
        let t = direct(dns.addr, server.addr.port());
        let said = t
            .send(None, "carol@implicit.test", MESSAGE)
            .await
            .unwrap_or_else(|e| panic!("{e}\ndnsmasq log:\n{}", dns.log()));
        assert!(said.starts_with("implicit.test [127.0.0.1]"), "{said}");
        assert_eq!(server.received()[0].rcpt_to, vec!["<carol@implicit.test>"]);
    }

    #[tokio::test]
    async fn an_address_literal_needs_no_dns() {
        let server = TestSmtp::start(Behaviour::default()).await;
        // The DNS server is a dead port: any lookup would fail.
        let dead_dns = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
        let t = direct(dead_dns, server.addr.port());
        t.send(None, "dave@[127.0.0.1]", MESSAGE).await.unwrap();
        assert_eq!(server.received()[0].rcpt_to, vec!["<dave@[127.0.0.1]>"]);
    }

    #[tokio::test]
    async fn an_exchanger_that_is_this_server_is_a_loop() {
        let server = TestSmtp::start(Behaviour::default()).await;
        let dead_dns = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
        let mut c = config();
        c.outbound.mode = "direct".into();
        c.outbound.dns_servers = vec![dead_dns];
        c.outbound.mx_port = server.addr.port();
        // As if `server` were our own SMTP listener.
        c.smtp.listen = vec![server.addr];
        let t = Transport::from_config(&c).unwrap();
        let e = permanent(t.send(None, "dave@[127.0.0.1]", MESSAGE).await);
        assert!(e.contains("loops back to myself"), "{e}");
        assert!(server.received().is_empty(), "nothing was sent");
    }

    #[tokio::test]
    async fn a_5xx_from_an_exchanger_is_permanent() {
        let dns = Dnsmasq::start(ZONE);
        let server = TestSmtp::start(Behaviour {
            rcpt_reply: Some("550 5.1.1 no such user"),
            ..Behaviour::default()
        })
        .await;
        let t = direct(dns.addr, server.addr.port());
        let e = permanent(t.send(None, "nobody@example.org", MESSAGE).await);
        assert!(e.contains("mx2.example.org") && e.contains("550"), "{e}");
    }

    #[tokio::test]
    async fn when_every_exchanger_fails_temporarily_the_last_error_is_reported() {
        let dns = Dnsmasq::start(ZONE);
        let server = TestSmtp::start(Behaviour {
            rcpt_reply: Some("451 4.7.1 greylisted"),
            ..Behaviour::default()
        })
        .await;
        let t = direct(dns.addr, server.addr.port());
        let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
        assert!(
            e.contains("mx2.example.org") && e.contains("greylisted"),
            "{e}"
        );
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn a_failed_starttls_with_an_exchanger_falls_back_to_plain_text() {
        let dns = Dnsmasq::start(ZONE);
        let server = TestSmtp::start(Behaviour {
            broken_starttls: true,
            ..Behaviour::default()
        })
        .await;
        let t = direct(dns.addr, server.addr.port());
        t.send(None, "bob@example.org", MESSAGE)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            server.connections(),
            2,
            "one TLS attempt, one in plain text"
        );
        assert_eq!(server.received()[0].data, MESSAGE);
    }

    #[tokio::test]
    async fn a_domain_that_does_not_exist_is_permanent() {
        // RFC 5321 §5.1: no MX and no address for the domain is an error,
        // and an NXDOMAIN answer says the domain itself does not exist: no
        // retry will change that.
        let dns = Dnsmasq::start(ZONE);
        let t = direct(dns.addr, closed_port().await);
        let e = permanent(t.send(None, "bob@nx.test", MESSAGE).await);
        assert!(e.contains("nx.test does not exist"), "{e}\n{}", dns.log());
    }

    #[tokio::test]
    async fn a_null_mx_is_permanent() {
        let dns = Dnsmasq::start(ZONE);
        let t = direct(dns.addr, closed_port().await);
        let e = permanent(t.send(None, "bob@nullmx.test", MESSAGE).await);
        assert!(e.contains("null MX"), "{e}\n{}", dns.log());
    }

    #[tokio::test]
    async fn an_mx_host_without_address_is_permanent() {
        let dns = Dnsmasq::start(ZONE);
        let t = direct(dns.addr, closed_port().await);
        let e = permanent(t.send(None, "bob@dangling.test", MESSAGE).await);
        assert!(e.contains("nowhere.test"), "{e}\n{}", dns.log());
    }

    #[tokio::test]
    async fn a_refusing_dns_server_is_temporary() {
        // REFUSED (like SERVFAIL) says nothing about the domain: the DNS
        // may answer later, so the message waits (RFC 5321 §5.1 "temporary
        // error").
        let dns = Dnsmasq::start(ZONE);
        let t = direct(dns.addr, closed_port().await);
        let e = temporary(t.send(None, "bob@elsewhere.example", MESSAGE).await);
        assert!(
            e.contains("MX lookup for elsewhere.example"),
            "{e}\n{}",
            dns.log()
        );
    }
}
