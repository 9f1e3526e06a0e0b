//! SMTP replies: a basic code, an enhanced status code (RFC 3463, RFC 5248)
//! and text. Every reply carries an enhanced code (ENHANCEDSTATUSCODES,
//! RFC 2034) except the three RFC 2034 §4 exempts: the 220 greeting, the
//! EHLO response and the 354 go-ahead.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code, e.g. "5.1.1"; empty for the greeting and 354.
    pub status: &'static str,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn text(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, status: &'static str, lines: Vec<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status,
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Writes the reply in wire form, each line ending in CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let line = self.lines.get(i).map(|l| l.as_ref()).unwrap_or("");
            let sep = if i + 1 < n { '-' } else { ' ' };
            let _ = write!(s, "{}{}", self.code, sep);
            if !self.status.is_empty() {
                let _ = write!(s, "{} ", self.status);
            }
            s.push_str(line);
            s.push_str("\r\n");
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// The first line without code, for logs.
    pub fn summary(&self) -> String {
        let text = self.lines.first().map(|l| l.as_ref()).unwrap_or("");
        if self.status.is_empty() {
            format!("{} {text}", self.code)
        } else {
            format!("{} {} {text}", self.code, self.status)
        }
    }
}

/// Named replies, each next to the rule that calls for it.
pub mod codes {
    use super::Reply;

    pub fn ok() -> Reply {
        Reply::text(250, "2.0.0", "OK")
    }
    /// RFC 5321 §4.1.1.2: sender accepted.
    pub fn sender_ok() -> Reply {
        Reply::text(250, "2.1.0", "Sender OK")
    }
    /// RFC 5321 §4.1.1.3: recipient accepted.
    pub fn recipient_ok() -> Reply {
        Reply::text(250, "2.1.5", "Recipient OK")
    }
    /// RFC 5321 §4.1.1.4: go ahead with the data.
    pub fn start_data() -> Reply {
        Reply::text(354, "", "End data with <CR><LF>.<CR><LF>")
    }
    /// RFC 5321 §3.5.3: VRFY may answer 252 when it will not verify.
    pub fn cannot_vrfy() -> Reply {
        Reply::text(
            252,
            "2.5.0",
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }
    /// RFC 5321 §4.1.1.10: QUIT.
    pub fn bye() -> Reply {
        Reply::text(221, "2.0.0", "Bye")
    }
    /// RFC 5321 §4.2.4: command not recognized.
    pub fn unknown_command() -> Reply {
        Reply::text(500, "5.5.2", "Command not recognized")
    }
    /// RFC 5321 §4.5.3.1.4: command line too long.
    pub fn line_too_long() -> Reply {
        Reply::text(500, "5.5.2", "Line too long")
    }
    /// RFC 5321 §4.2.4 / §3.3: recognized, but not supported here.
    pub fn not_implemented() -> Reply {
        Reply::text(502, "5.5.1", "Command not implemented")
    }
    /// RFC 5321 §4.1.4: out of sequence.
    pub fn bad_sequence(text: &'static str) -> Reply {
        Reply::text(503, "5.5.1", text)
    }
    /// RFC 5321 §4.1.1.4: DATA with no accepted recipient.
    pub fn no_valid_recipients() -> Reply {
        Reply::text(554, "5.5.1", "No valid recipients")
    }
    /// RFC 5321 §4.1.1.3 / RFC 3463 5.1.1: no such mailbox here.
    pub fn unknown_user() -> Reply {
        Reply::text(550, "5.1.1", "No such user here")
    }
    /// RFC 5321 §3.6.2: never relay for unauthenticated clients.
    pub fn relay_denied() -> Reply {
        Reply::text(550, "5.7.1", "Relaying denied")
    }
    /// RFC 5321 §4.5.3.1.8: too many recipients; the client sends the rest later.
    pub fn too_many_recipients() -> Reply {
        Reply::text(452, "4.5.3", "Too many recipients")
    }
    /// RFC 1870 §6.1: declared or actual size over the limit.
    pub fn message_too_big() -> Reply {
        Reply::text(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum message size",
        )
    }
    /// RFC 5321 §2.3.8 / §4.1.1.4: the data had a bare CR or LF (the 2023
    /// SMTP smuggling attacks rely on servers that accept them).
    pub fn bare_newline() -> Reply {
        Reply::text(
            550,
            "5.5.2",
            "Message contains bare CR or LF line ending; lines must end with CRLF (RFC 5321 2.3.8)",
        )
    }
    /// RFC 3463 5.7.1: every recipient's block list refuses this sender.
    pub fn blocked_sender() -> Reply {
        Reply::text(550, "5.7.1", "Message refused by the recipient")
    }
    /// RFC 6531 §3.7.4.1: non-ASCII address without SMTPUTF8.
    pub fn needs_smtputf8() -> Reply {
        Reply::text(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
    }
    /// RFC 5321 §4.5.3.1.9 "501 Path too long": the address is over the
    /// RFC 5321 §4.5.3.1.3 limit; `e` names the length and the limit.
    pub fn path_too_long(e: &crate::address::AddressError) -> Reply {
        Reply::text(501, "5.1.3", format!("Path too long: {e}"))
    }
    /// RFC 5321 §4.1.1.3 / §4.5.1: the bare `<Postmaster>` has nowhere to
    /// go (no `smtp.postmaster`, and `postmaster@` the host name does not
    /// route).
    pub fn postmaster_not_configured() -> Reply {
        Reply::text(550, "5.1.1", "Postmaster is not configured on this server")
    }
    /// RFC 5321 §4.1.1.11 / RFC 3463 5.5.4: unknown MAIL/RCPT parameter.
    pub fn param_not_recognized(text: &'static str) -> Reply {
        Reply::text(555, "5.5.4", text)
    }
    /// Local fault: the message could not be stored; the client retries.
    pub fn local_error() -> Reply {
        Reply::text(
            451,
            "4.3.0",
            "Local error, message not accepted; try again later",
        )
    }
    /// RFC 5321 §3.8: shutting down.
    pub fn shutting_down(host: &str) -> Reply {
        Reply::text(421, "4.3.2", format!("{host} Service shutting down"))
    }
    /// RFC 5321 §4.5.3.2: timeout.
    pub fn timeout(host: &str) -> Reply {
        Reply::text(
            421,
            "4.4.2",
            format!("{host} Timeout waiting for input, closing"),
        )
    }
    /// RFC 5321 §4.5.3.2 / RFC 3463 4.4.2: a whole command line (`what`
    /// = "command") or message ("message") did not arrive within `limit`
    /// (`smtp.command_time_limit`, `smtp.message_time_limit`), however
    /// steadily its bytes trickled in.
    pub fn time_limit(host: &str, what: &str, limit: crate::config::HumanDuration) -> Reply {
        Reply::text(
            421,
            "4.4.2",
            format!("{host} Timeout: {what} not complete within {limit}, closing"),
        )
    }
    /// RFC 1870 §6.1 / RFC 3463 4.3.1: no room for message data right now
    /// (`smtp.max_inflight_data` is in use), at MAIL with `SIZE=` or at
    /// DATA; the client tries again later.
    pub fn insufficient_storage() -> Reply {
        Reply::text(452, "4.3.1", "Insufficient system storage, try again later")
    }
    /// RFC 5321 §3.8 / RFC 3463 4.3.1: message data in transfer would go
    /// over `smtp.max_inflight_data`; the session is closed and the
    /// client tries again later.
    pub fn storage_exhausted(host: &str) -> Reply {
        Reply::text(
            421,
            "4.3.1",
            format!("{host} Insufficient system storage, closing; try again later"),
        )
    }
    pub fn too_many_errors(host: &str) -> Reply {
        Reply::text(421, "4.7.0", format!("{host} Too many errors, closing"))
    }
    pub fn too_many_connections(host: &str) -> Reply {
        Reply::text(
            421,
            "4.7.0",
            format!("{host} Too many connections, try again later"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_single_and_multi_line_replies() {
        let mut out = Vec::new();
        codes::unknown_user().write_to(&mut out);
        assert_eq!(out, b"550 5.1.1 No such user here\r\n");
        out.clear();
        Reply::multi(
            250,
            "",
            vec!["mx Hello".into(), "PIPELINING".into(), "SIZE 10".into()],
        )
        .write_to(&mut out);
        assert_eq!(out, b"250-mx Hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        out.clear();
        codes::start_data().write_to(&mut out);
        assert_eq!(out, b"354 End data with <CR><LF>.<CR><LF>\r\n");
    }
}
