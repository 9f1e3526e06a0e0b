//! One SMTP client conversation with lettre: connect, STARTTLS, the
//! transaction, QUIT, within a time limit; and the verdict on a failure.

use super::SendError;
use crate::config::Config;
use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

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

/// Connects and exchanges greeting and EHLO. lettre's own timeout covers
/// only the TCP connect; callers bound the whole conversation.
pub(super) async fn connect(
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
pub(super) async fn start_tls(
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
pub(super) async fn transaction(
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
pub(super) async fn converse(
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
