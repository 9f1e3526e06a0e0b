//! The SMTP receiver (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8
//! and ENHANCEDSTATUSCODES).
//!
//! - [`command`]: command lines → [`command::Command`] (pure)
//! - [`data`]: the DATA stream → message bytes, strict about line endings (pure)
//! - [`reply`]: reply values and the named codes
//! - [`session`]: one client's dialogue, its transaction and limits
//! - [`accept`]: what the session asks of the rest of the server (routing a
//!   recipient, taking a message), behind one trait
//! - [`checks`]: SPF, DKIM, DMARC, ARC and the spam score at the end of
//!   DATA, before the quarantine screens the message
//! - [`server`]: listeners, connection limits, graceful shutdown

pub mod accept;
pub mod checks;
pub mod command;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;
