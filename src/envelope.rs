//! A message's envelope once the SMTP transaction has it complete: who sent
//! it (RFC 5321 §3.3 reverse-path), the mailboxes it goes to, and the
//! client that handed it over. Data shared by the receiver, the quarantine
//! and delivery; it imports none of them.

use crate::address::EmailAddress;
use crate::clock::Timestamp;
use crate::store::mailboxes::MailboxRef;
use std::net::SocketAddr;

/// Who handed us a message, for the main log's `<=` line.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub helo: String,
    pub addr: SocketAddr,
    /// `esmtp`, `smtp`, `utf8esmtp`, … as in Exim's `P=`.
    pub protocol: &'static str,
}

/// One final recipient of a message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub mailbox: MailboxRef,
    /// Challenge-response is on for the mailbox (as of RCPT time).
    pub challenge: bool,
    /// The address as the client gave it in RCPT TO.
    pub original: String,
}

/// A message's envelope once the SMTP transaction has it complete.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub queue_id: String,
    /// `None` is the null sender `<>`.
    pub sender: Option<EmailAddress>,
    /// Final recipients, one per mailbox.
    pub recipients: Vec<Recipient>,
    pub arrived: Timestamp,
    pub client: ClientInfo,
}

impl Envelope {
    /// The envelope sender as written, `""` for `<>`.
    pub fn sender_str(&self) -> String {
        self.sender
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}
