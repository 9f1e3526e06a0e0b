//! The SMTP receiver (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8
//! and ENHANCEDSTATUSCODES).
//!
//! - [`command`]: command lines → [`command::Command`] (pure)
//! - [`data`]: the DATA stream → message bytes, strict about line endings (pure)
//! - [`reply`]: reply values and the named codes
//! - [`session`]: one client's dialogue, its transaction and limits
//! - [`server`]: listeners, connection limits, graceful shutdown

pub mod command;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;
