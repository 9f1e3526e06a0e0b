//! One SMTP client conversation with lettre: connect, greeting and EHLO,
//! STARTTLS, AUTH, the transaction, QUIT, each step within its own time
//! limit (RFC 5321 §4.5.3.2: per-command timeouts, not one for the whole
//! transaction); and the verdict on a failure.

use super::SendError;
use crate::config::{Config, HumanDuration, OutboundConfig};
use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// The EHLO name: `outbound.helo_name`, else `hostname`; an IP address is
/// sent as an address literal (RFC 5321 §4.1.4).
pub(super) fn helo_name(config: &Config) -> ClientId {
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

/// The time limit of each step of a conversation (`outbound.*_timeout`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// The TCP connection to one address.
    pub connect: Duration,
    /// The 220 greeting and the reply to EHLO (RFC 5321 §4.5.3.2.1).
    pub greeting: Duration,
    /// The reply to one command: STARTTLS with its handshake, AUTH, MAIL,
    /// RCPT, DATA, QUIT (RFC 5321 §4.5.3.2.2-4).
    pub command: Duration,
    /// Sending the message and the reply to its final dot (RFC 5321
    /// §4.5.3.2.5-6).
    pub data: Duration,
}

impl Timeouts {
    pub(super) fn from_config(o: &OutboundConfig) -> Timeouts {
        Timeouts {
            connect: o.connect_timeout.0,
            greeting: o.greeting_timeout.0,
            command: o.command_timeout.0,
            data: o.data_timeout.0,
        }
    }

    fn command(&self, what: &'static str) -> Step {
        Step {
            what,
            limit: self.command,
            key: "outbound.command_timeout",
        }
    }
}

/// One step of a conversation that has a time limit, for the message when
/// it runs out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    /// What did not come: "connection", "greeting", "reply to MAIL".
    what: &'static str,
    limit: Duration,
    /// The config key that sets `limit`.
    key: &'static str,
}

/// Why a conversation ended without the message being accepted.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server refused, or the connection or TLS broke (lettre's error).
    Smtp(SmtpError),
    /// The TCP connection could not be made (refused, unreachable).
    Connect(std::io::Error),
    /// A step took longer than its limit.
    TimedOut(Step),
    /// The message needs an extension the server does not offer.
    Unsupported(&'static str),
}

impl From<SmtpError> for Failure {
    fn from(e: SmtpError) -> Failure {
        Failure::Smtp(e)
    }
}

/// Runs one step within its limit.
async fn within<T>(
    step: Step,
    work: impl Future<Output = Result<T, SmtpError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(step.limit, work).await {
        Ok(done) => done.map_err(Failure::Smtp),
        Err(_) => Err(Failure::TimedOut(step)),
    }
}

/// Connects within `connect`, then reads the greeting and exchanges EHLO
/// within `greeting`: a server that accepts the connection and says
/// nothing costs one greeting limit, reported as such.
pub(super) async fn connect(
    addr: impl tokio::net::ToSocketAddrs,
    helo: &ClientId,
    t: &Timeouts,
) -> Result<AsyncSmtpConnection, Failure> {
    let tcp = match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(Failure::Connect(e)),
        Err(_) => {
            return Err(Failure::TimedOut(Step {
                what: "connection",
                limit: t.connect,
                key: "outbound.connect_timeout",
            }));
        }
    };
    let _ = tcp.set_nodelay(true);
    let greeting = Step {
        what: "greeting",
        limit: t.greeting,
        key: "outbound.greeting_timeout",
    };
    within(
        greeting,
        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), helo),
    )
    .await
}

/// STARTTLS, the handshake and the second EHLO (RFC 3207), within one
/// command limit. A failed upgrade consumes the connection: after a
/// failed handshake lettre keeps no stream, and writing to it again (even
/// QUIT) trips an assertion, so it is only dropped. When the server never
/// offered STARTTLS the stream is intact and gets a QUIT.
pub(super) async fn start_tls(
    mut conn: AsyncSmtpConnection,
    params: TlsParameters,
    helo: &ClientId,
    t: &Timeouts,
) -> Result<AsyncSmtpConnection, Failure> {
    let offered = conn.can_starttls();
    match within(t.command("reply to STARTTLS"), conn.starttls(params, helo)).await {
        Ok(()) => Ok(conn),
        Err(e) => {
            if !offered {
                conn.abort().await;
            }
            Err(e)
        }
    }
}

/// AUTH with the first mechanism both sides support (RFC 4954), within
/// one command limit.
pub(super) async fn auth(
    conn: &mut AsyncSmtpConnection,
    credentials: &Credentials,
    t: &Timeouts,
) -> Result<(), Failure> {
    within(
        t.command("reply to AUTH"),
        conn.auth(DEFAULT_MECHANISMS, credentials),
    )
    .await
    .map(drop)
}

/// MAIL, RCPT, DATA, each within the command limit, then the message
/// (dot-stuffed by lettre) and the reply to its final dot within the data
/// limit. lettre ends the data with CRLF.CRLF itself, so one final CRLF
/// of ours is left off, or the remote would store an extra empty line.
pub(super) async fn transaction(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    data: &[u8],
    t: &Timeouts,
) -> Result<Response, Failure> {
    let body = data.strip_suffix(b"\r\n").unwrap_or(data);
    let mut parameters = Vec::new();
    let non_ascii_address = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii_address {
        // RFC 6531 §3.4: never send a UTF-8 address to a server without SMTPUTF8.
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Unsupported(
                "the envelope has a UTF-8 address and the server does not offer SMTPUTF8",
            ));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !body.is_ascii() {
        // RFC 6152 §3: 8-bit data only after BODY=8BITMIME.
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Failure::Unsupported(
                "the message has 8-bit data and the server does not offer 8BITMIME",
            ));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(envelope.from().cloned(), parameters);
    within(t.command("reply to MAIL"), conn.command(mail)).await?;
    for rcpt in envelope.to() {
        let rcpt = Rcpt::new(rcpt.clone(), Vec::new());
        within(t.command("reply to RCPT"), conn.command(rcpt)).await?;
    }
    within(t.command("reply to DATA"), conn.command(Data)).await?;
    let end = Step {
        what: "reply to the end of the data",
        limit: t.data,
        key: "outbound.data_timeout",
    };
    within(end, conn.message(body)).await
}

/// Longest wait for the goodbye (QUIT); its answer changes nothing.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// Runs one SMTP conversation (connect up to the reply to the data), then
/// ends it: QUIT after success, since nothing after the 250 can undo an
/// accepted message (a timeout there would only cause a duplicate);
/// QUIT-and-close after a refusal; only a close after a step that ran out
/// of time, since a server that stopped answering would not answer QUIT.
pub(super) async fn converse(
    peer: &str,
    t: &Timeouts,
    conversation: impl Future<
        Output = Result<(AsyncSmtpConnection, Result<Response, Failure>), Failure>,
    >,
) -> Result<String, SendError> {
    let (mut conn, result) = match conversation.await {
        Ok(done) => done,
        Err(e) => return Err(verdict(peer, &e)),
    };
    let bye = QUIT_WAIT.min(t.command);
    match result {
        Ok(reply) => {
            let _ = tokio::time::timeout(bye, conn.quit()).await;
            Ok(format!("{peer} said {}", reply_text(&reply)))
        }
        Err(e) => {
            if !matches!(e, Failure::TimedOut(_)) {
                let _ = tokio::time::timeout(bye, conn.abort()).await;
            }
            Err(verdict(peer, &e))
        }
    }
}

/// The verdict on a failed conversation with `peer`.
pub(super) fn verdict(peer: &str, e: &Failure) -> SendError {
    match e {
        Failure::Smtp(e) => classify(peer, e),
        Failure::Connect(e) => SendError::Temporary(format!("{peer}: cannot connect: {e}")),
        Failure::TimedOut(step) => SendError::Temporary(format!(
            "{peer}: no {} within {} ({})",
            step.what,
            HumanDuration(step.limit),
            step.key
        )),
        Failure::Unsupported(what) => SendError::Temporary(format!("{peer}: {what}")),
    }
}

/// 5xx is permanent, everything else (4xx, broken connections, TLS
/// failures, a missing STARTTLS or AUTH offer) is temporary — except AUTH
/// rejections (RFC 4954 §6: 530, 534, 535, 538), which say our credentials
/// or TLS setup are wrong, not the message: they are deferred so the admin
/// can fix the config (as Postfix's smtp_sasl_auth_soft_bounce).
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

/// `250 2.0.0 Ok: queued as 4XyZ`, one line.
fn reply_text(reply: &Response) -> String {
    let lines: Vec<&str> = reply.message().collect();
    format!("{} {}", u16::from(reply.code()), lines.join(" "))
}
