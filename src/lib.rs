//! boxtrap: a self-hosted mail server whose mailboxes can turn on
//! challenge-response quarantine.
//!
//! # Layout: the life of a message
//!
//! 1. [`smtp`] — the receiver. [`smtp::server`] accepts a connection within
//!    the connection limits; [`smtp::session`] runs the RFC 5321 dialogue,
//!    parsing lines with [`smtp::command`] and the message with
//!    [`smtp::data`] (strict `CRLF.CRLF`, bare CR/LF refused), and asks a
//!    [`smtp::accept::MailHandler`] for the rest.
//! 2. [`delivery::router`] — RCPT: is the address ours (a local domain),
//!    and which mailboxes does it reach (mailbox, alias, `+tag`)? Unknown
//!    users and relaying are refused in the session.
//! 3. [`quarantine`] — after DATA, before the reply
//!    ([`quarantine::screen`]), for each mailbox with challenge-response on:
//!    a reply to a challenge releases; otherwise [`policy::decide`] reads
//!    the message's [`policy::facts`] and the mailbox's sender lists
//!    ([`policy::rules`]) and says deliver, hold (challenging only unknown,
//!    human, non-automated senders), discard or reject (block lists refuse
//!    in the session: no backscatter). [`quarantine::release`] and
//!    [`quarantine::sweep`] handle held mail afterwards.
//! 4. [`challenge`] — [`challenge::issue`] signs an HMAC
//!    [`challenge::token`] into a mail built from the owner's
//!    [`challenge::templates`] ([`challenge::notice`],
//!    [`challenge::compose`]), sent from `<>` through the durable
//!    [`outbound`] queue; it verifies tokens that come back.
//! 5. [`web`] — `GET /verify/<token>` shows what waits, only `POST`
//!    releases: the sender is allowed and every held message delivered once.
//!    The owner hears of held mail from the [`digest`], whose signed links
//!    (`/digest/<token>`) likewise only show on `GET` and act on `POST`.
//!    Owners sign in ([`web::session`]) and review their own held mail at
//!    `/quarantine` ([`web::owner`]): deliver, allow and deliver, delete.
//! 6. [`delivery`] — the message is written into each mailbox's Maildir
//!    ([`delivery::maildir`], fsync'd), or, if that fails for now, committed
//!    to the database queue ([`store::queue`]) and retried later. Nothing
//!    acknowledged is ever lost.
//! 7. [`mainlog`] — one Exim-style line per arrival (`<=`), delivery
//!    (`=>`), deferral (`==`) and failure (`**`), each from a typed event;
//!    refusals go to the reject log.
//!
//! [`spam`] scores a message at the end of DATA (the built-in GTUBE
//! test, SpamAssassin's spamd) for the policy and the server's reject
//! score.
//!
//! Around them: [`auth`] (SPF, DKIM, DMARC and ARC results for the
//! policy), [`envelope`] (the envelope shared along the path),
//! [`config`] (TOML + `BOXTRAP_*`), [`store`] (SQLite or PostgreSQL through
//! sqlx, writes grouped and never failing for being concurrent), [`dns`]
//! (the server's one resolver and its seam), [`dnsbl`] (DNS block- and
//! allowlists, asked at the first RCPT), [`retry`] (backoff), [`app`] (wiring and shutdown),
//! [`cli`] (the admin commands), [`clock`] (the only reader of the wall
//! clock), [`filemode`] (private files and directories), [`address`],
//! [`password`], [`queue_id`] and [`html`].

pub mod address;
pub mod app;
pub mod auth;
pub mod challenge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod dns;
pub mod dnsbl;
pub mod envelope;
pub mod filemode;
pub mod html;
pub mod mainlog;
pub mod outbound;
pub mod password;
pub mod policy;
pub mod quarantine;
pub mod queue_id;
pub mod retry;
pub mod smtp;
pub mod spam;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod web;
