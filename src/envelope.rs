//! A message's envelope once the SMTP transaction has it complete: who sent
//! it (RFC 5321 §3.3 reverse-path), the mailboxes it goes to, and the
//! client that handed it over. Data shared by the receiver, the quarantine
//! and delivery; it imports none of them.

use crate::address::EmailAddress;
use crate::clock::Timestamp;
use crate::dnsbl::DnsblHit;
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
    /// The `action = "score"` DNS blocklists that list the client (asked
    /// once per session, at its first RCPT), for the spam score: their
    /// sum is [`Envelope::dnsbl_score`]. Empty when none does or none is
    /// configured. A `reject` listing never gets here, except on mail to
    /// postmaster, and is not included.
    pub dnsbl: Vec<DnsblHit>,
}

impl Envelope {
    /// What the DNS blocklists add to the spam score: the sum of
    /// [`Envelope::dnsbl`]'s scores.
    pub fn dnsbl_score(&self) -> f64 {
        self.dnsbl.iter().map(|h| h.score).sum()
    }

    /// The envelope sender as written, `""` for `<>`.
    pub fn sender_str(&self) -> String {
        self.sender
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}
