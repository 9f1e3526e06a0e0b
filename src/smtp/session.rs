//! One SMTP session (RFC 5321): reads commands, keeps the transaction's
//! state, answers, and hands a complete message to delivery.
//!
//! Replies are collected and written when the session is about to wait for
//! input, so a pipelining client (RFC 2920) gets a whole group of replies in
//! one write. Parsing is done by [`Command::parse`] and [`DataDecoder`];
//! this file owns only the order of things and the limits.
//!
//! Limits on time: each read waits at most `command_timeout` (or
//! `data_timeout` in DATA) for a byte, and besides a whole command line
//! must arrive within `command_time_limit` and a whole message within
//! `message_time_limit`, so a client that trickles bytes cannot hold a
//! session. Limits on memory: the message in transfer is charged, byte for
//! byte, to the server-wide [`DataBudget`] until it is stored; reads go
//! through one fixed buffer per session, and writes wait at most
//! `command_timeout` for a client that does not read its replies.

use super::accept::{Accepted, MailHandler};
use super::command::{Command, ForwardPath, MailParams};
use super::data::{DataDecoder, DataOutcome};
use super::reply::{Reply, codes};
use super::server::{Charge, DataBudget};
use crate::address::EmailAddress;
use crate::clock::Clock;
use crate::config::{ByteSize, SmtpConfig};
use crate::delivery::router::Route;
use crate::dnsbl::{DnsblHit, DnsblVerdict};
use crate::envelope::{ClientInfo, Envelope, Recipient};
use crate::mainlog::MainLog;
use crate::queue_id::new_queue_id;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// What every session shares.
pub struct SmtpContext {
    pub config: SmtpConfig,
    pub hostname: String,
    /// Routing and taking messages: the rest of the server (or a test's fake).
    pub handler: Arc<dyn MailHandler>,
    pub log: MainLog,
    pub clock: Arc<dyn Clock>,
}

/// The mail transaction in progress (RFC 5321 §3.3).
struct Transaction {
    from: Option<EmailAddress>,
    params: MailParams,
    /// Final recipients, one per mailbox (two RCPTs that reach the same
    /// mailbox deliver one copy).
    recipients: Vec<Recipient>,
    /// RCPT commands accepted, counted against `max_recipients`.
    accepted: usize,
    /// The first accepted RCPT address, for `Received: ... for <...>`.
    first_rcpt: Option<String>,
}

enum Mode {
    Command,
    /// Skipping the rest of an overlong command line.
    Discard,
    Data(DataDecoder),
}

enum Flow {
    Continue,
    Close,
}

struct Session<'a> {
    ctx: &'a SmtpContext,
    peer: SocketAddr,
    helo: Option<String>,
    esmtp: bool,
    tx: Option<Transaction>,
    errors: u32,
    out: Vec<u8>,
    /// This session's part of the data budget: the bytes of the message
    /// being received or stored, nothing between messages.
    charge: Charge,
    /// When the command line being read (in DATA: the message) must be
    /// complete.
    deadline: Instant,
    /// What the DNS lists say about the client: asked at the first RCPT,
    /// then kept for the session (one lookup per connection, none for a
    /// client that never gets to RCPT).
    dnsbl: Option<DnsblVerdict>,
}

/// How long a read may wait, and what it means when it ends unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// `command_timeout` / `data_timeout` without a byte.
    Idle,
    /// `command_time_limit` / `message_time_limit` reached.
    Whole,
}

/// Runs a session on `stream` until QUIT, an error, a timeout, or shutdown;
/// message data it holds is charged to `budget`.
pub async fn run_session<S>(
    ctx: &SmtpContext,
    mut stream: S,
    peer: SocketAddr,
    budget: &Arc<DataBudget>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut s = Session {
        ctx,
        peer,
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        out: Vec::with_capacity(512),
        charge: budget.charge(),
        deadline: Instant::now() + ctx.config.command_time_limit.0,
        dnsbl: None,
    };
    // RFC 5321 §4.2: the greeting; RFC 2034 gives it no enhanced code.
    s.reply(Reply::text(
        220,
        "",
        format!("{} ESMTP boxtrap", ctx.hostname),
    ));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut mode = Mode::Command;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Work through whatever is buffered.
        let flow = s.process(&mut buf, &mut mode).await;
        if !s.flush(&mut stream).await {
            return;
        }
        if let Flow::Close = flow {
            let _ = stream.shutdown().await;
            return;
        }
        // Wait for more input: for a byte at most the idle timeout, and
        // never past the deadline of the whole command or message.
        let in_data = matches!(mode, Mode::Data(_));
        let idle = if in_data {
            ctx.config.data_timeout.0
        } else {
            ctx.config.command_timeout.0
        };
        let now = Instant::now();
        let (until, wait) = if s.deadline <= now + idle {
            (s.deadline, Wait::Whole)
        } else {
            (now + idle, Wait::Idle)
        };
        // Checked before reading too: a client that always has bytes ready
        // (an endless line, data past the size limit) is still cut off.
        let read = async {
            if now >= until {
                return Err(());
            }
            tokio::time::timeout_at(until, stream.read(&mut chunk))
                .await
                .map_err(|_| ())
        };
        let n = if in_data {
            // A message in transfer is allowed to finish during shutdown.
            read.await
        } else {
            tokio::select! {
                r = read => r,
                _ = wait_shutdown(&mut shutdown) => {
                    s.reply(codes::shutting_down(&ctx.hostname));
                    s.flush(&mut stream).await;
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        };
        match n {
            Err(()) => {
                s.timed_out(in_data, wait);
                s.flush(&mut stream).await;
                let _ = stream.shutdown().await;
                return;
            }
            Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if *shutdown.borrow() && !in_data && matches!(mode, Mode::Command) {
            // Shutdown began while we were reading: new commands get 421.
            s.reply(codes::shutting_down(&ctx.hostname));
            s.flush(&mut stream).await;
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Session<'_> {
    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    /// Writes the collected replies; false when the client is gone or has
    /// not read them within `command_timeout` (a client that never reads
    /// must not hold the session once the socket's buffer is full).
    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let write = stream.write_all(&self.out);
        let done = tokio::time::timeout(self.ctx.config.command_timeout.0, write).await;
        self.out.clear();
        matches!(done, Ok(Ok(())))
    }

    /// The next command line may take `command_time_limit` from now.
    fn next_command(&mut self) {
        self.deadline = Instant::now() + self.ctx.config.command_time_limit.0;
    }

    /// The client took too long: `421 4.4.2`, a main-log line worded as
    /// Exim's (`SMTP command timeout` / `SMTP data timeout (message
    /// abandoned)`, saying which limit when it was a whole-command or
    /// whole-message one), and the session ends.
    fn timed_out(&mut self, in_data: bool, wait: Wait) {
        let c = &self.ctx.config;
        let host = &self.ctx.hostname;
        let ip = self.peer.ip();
        let from = || {
            let f = self.tx.as_ref().and_then(|t| t.from.as_ref());
            f.map(|f| f.to_string()).unwrap_or_default()
        };
        tracing::info!(peer = %self.peer, in_data, ?wait, "SMTP timeout");
        let (line, reply) = match (in_data, wait) {
            (false, Wait::Idle) => {
                self.ctx.log.timeout(ip);
                self.reply(codes::timeout(host));
                return;
            }
            (false, Wait::Whole) => (
                format!(
                    "SMTP command timeout (command not complete within smtp.command_time_limit \
                     {}) on connection from [{ip}]",
                    c.command_time_limit
                ),
                codes::time_limit(host, "command", c.command_time_limit),
            ),
            (true, Wait::Idle) => (
                format!(
                    "SMTP data timeout (message abandoned) on connection from [{ip}] F=<{}>",
                    from()
                ),
                codes::timeout(host),
            ),
            (true, Wait::Whole) => (
                format!(
                    "SMTP data timeout (message abandoned: not complete within \
                     smtp.message_time_limit {}) on connection from [{ip}] F=<{}>",
                    c.message_time_limit,
                    from()
                ),
                codes::time_limit(host, "message", c.message_time_limit),
            ),
        };
        self.ctx.log.main(&line);
        self.reply(reply);
    }

    /// Why there is no room for message data, for the reject log.
    fn no_storage(&self) -> String {
        let budget = self.charge.budget();
        format!(
            "insufficient system storage: smtp.max_inflight_data ({}) in use, {} free",
            ByteSize(budget.limit()),
            budget.available()
        )
    }

    /// Answers a client mistake and counts it; too many end the session.
    fn error(&mut self, r: Reply) -> Flow {
        self.reply(r);
        self.errors += 1;
        if self.errors >= self.ctx.config.max_errors {
            self.reply(codes::too_many_errors(&self.ctx.hostname));
            self.ctx
                .log
                .too_many_errors(&self.client_tag(), self.errors);
            return Flow::Close;
        }
        Flow::Continue
    }

    fn client_tag(&self) -> String {
        match &self.helo {
            Some(h) => format!("H=({h}) [{}]:{}", self.peer.ip(), self.peer.port()),
            None => format!("H=[{}]:{}", self.peer.ip(), self.peer.port()),
        }
    }

    async fn process(&mut self, buf: &mut Vec<u8>, mode: &mut Mode) -> Flow {
        loop {
            match mode {
                Mode::Data(decoder) => {
                    let end = decoder.feed(buf);
                    // What the decoder keeps is charged to the budget as it
                    // arrives; over the budget (or out of memory), the
                    // transfer ends here.
                    let no_memory = decoder.out_of_memory();
                    if !self.charge.set(decoder.kept() as u64) || no_memory {
                        *mode = Mode::Command;
                        let why = if no_memory {
                            NO_MEMORY.to_owned()
                        } else {
                            self.no_storage()
                        };
                        let from = self.tx.take().and_then(|t| t.from);
                        self.charge.set(0);
                        tracing::warn!(peer = %self.peer, "{why}: transfer ended");
                        self.log_reject(from.as_ref(), "during DATA", &why);
                        self.reply(codes::storage_exhausted(&self.ctx.hostname));
                        return Flow::Close;
                    }
                    let Some(used) = end else {
                        buf.clear();
                        return Flow::Continue;
                    };
                    buf.drain(..used);
                    let Mode::Data(decoder) = std::mem::replace(mode, Mode::Command) else {
                        unreachable!()
                    };
                    self.end_of_data(decoder.finish()).await;
                    self.charge.set(0);
                    self.next_command();
                }
                Mode::Discard => match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        buf.drain(..=i);
                        *mode = Mode::Command;
                        self.next_command();
                    }
                    None => {
                        buf.clear();
                        return Flow::Continue;
                    }
                },
                Mode::Command => {
                    let Some(i) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > self.ctx.config.max_line_length {
                            buf.clear();
                            *mode = Mode::Discard;
                            return self.error(codes::line_too_long());
                        }
                        return Flow::Continue;
                    };
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() + 2 > self.ctx.config.max_line_length {
                        if let Flow::Close = self.error(codes::line_too_long()) {
                            return Flow::Close;
                        }
                        self.next_command();
                        continue;
                    }
                    match self.command(line) {
                        Step::Flow(Flow::Close) => return Flow::Close,
                        Step::Flow(Flow::Continue) => self.next_command(),
                        Step::StartData => {
                            *mode = Mode::Data(DataDecoder::new(
                                self.ctx.config.max_message_size.0 as usize,
                            ));
                            self.deadline = Instant::now() + self.ctx.config.message_time_limit.0;
                        }
                        Step::Rcpt(to) => {
                            if let Flow::Close = self.rcpt(to).await {
                                return Flow::Close;
                            }
                            self.next_command();
                        }
                    }
                }
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> Step {
        let cmd = match Command::parse(line) {
            Ok(c) => c,
            Err(r) => return Step::Flow(self.error(r)),
        };
        match cmd {
            Command::Ehlo(name) => {
                self.helo = Some(name);
                self.esmtp = true;
                self.tx = None;
                let c = &self.ctx.config;
                self.reply(Reply::multi(
                    250,
                    "",
                    vec![
                        format!("{} Hello [{}]", self.ctx.hostname, self.peer.ip()).into(),
                        "PIPELINING".into(),
                        format!("SIZE {}", c.max_message_size.0).into(),
                        "8BITMIME".into(),
                        "SMTPUTF8".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "HELP".into(),
                    ],
                ));
            }
            Command::Helo(name) => {
                self.helo = Some(name);
                self.esmtp = false;
                self.tx = None;
                self.reply(Reply::text(250, "2.0.0", self.ctx.hostname.clone()));
            }
            Command::Mail { from, params } => {
                if self.helo.is_none() {
                    return Step::Flow(self.error(codes::bad_sequence("Send EHLO or HELO first")));
                }
                if self.tx.is_some() {
                    return Step::Flow(self.error(codes::bad_sequence("Nested MAIL command")));
                }
                if !self.esmtp && (params != MailParams::default()) {
                    return Step::Flow(
                        self.error(codes::param_not_recognized("MAIL parameters need EHLO")),
                    );
                }
                if params
                    .size
                    .is_some_and(|n| n > self.ctx.config.max_message_size.0)
                {
                    self.log_reject(from.as_ref(), "MAIL", "message too big (SIZE)");
                    return Step::Flow(self.error(codes::message_too_big()));
                }
                // RFC 1870 §6.1: no room for the declared size right now.
                if params
                    .size
                    .is_some_and(|n| n > self.charge.budget().available())
                {
                    let why = self.no_storage();
                    self.log_reject(from.as_ref(), "MAIL", &why);
                    self.reply(codes::insufficient_storage());
                    return Step::Flow(Flow::Continue);
                }
                self.tx = Some(Transaction {
                    from,
                    params,
                    recipients: Vec::new(),
                    accepted: 0,
                    first_rcpt: None,
                });
                self.reply(codes::sender_ok());
            }
            Command::Rcpt { to } => {
                let Some(tx) = &self.tx else {
                    return Step::Flow(self.error(codes::bad_sequence("Need MAIL before RCPT")));
                };
                if to.address().is_some_and(|a| !a.is_ascii()) && !tx.params.smtputf8 {
                    return Step::Flow(self.error(codes::needs_smtputf8()));
                }
                if tx.accepted >= self.ctx.config.max_recipients {
                    // Not an error: the client sends the rest in another transaction.
                    self.reply(codes::too_many_recipients());
                    return Step::Flow(Flow::Continue);
                }
                return Step::Rcpt(to);
            }
            Command::Data => {
                let Some(tx) = &self.tx else {
                    return Step::Flow(self.error(codes::bad_sequence("Need MAIL before DATA")));
                };
                if tx.recipients.is_empty() {
                    return Step::Flow(self.error(codes::no_valid_recipients()));
                }
                // Room for the declared size, or for a small message.
                let need = tx
                    .params
                    .size
                    .unwrap_or(ROOM_WITHOUT_SIZE)
                    .min(self.ctx.config.max_message_size.0);
                if need > self.charge.budget().available() {
                    let from = tx.from.clone();
                    let why = self.no_storage();
                    self.log_reject(from.as_ref(), "DATA", &why);
                    self.reply(codes::insufficient_storage());
                    return Step::Flow(Flow::Continue);
                }
                self.reply(codes::start_data());
                return Step::StartData;
            }
            Command::Rset => {
                self.tx = None;
                self.reply(codes::ok());
            }
            Command::Noop => self.reply(codes::ok()),
            Command::Vrfy => self.reply(codes::cannot_vrfy()),
            Command::Help => self.reply(Reply::multi(
                214,
                "2.0.0",
                vec![
                    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP".into(),
                    "See RFC 5321".into(),
                ],
            )),
            Command::Quit => {
                self.reply(codes::bye());
                return Step::Flow(Flow::Close);
            }
            Command::NotImplemented => return Step::Flow(self.error(codes::not_implemented())),
        }
        Step::Flow(Flow::Continue)
    }

    async fn rcpt(&mut self, to: ForwardPath) -> Flow {
        // A client on a `reject` DNS blocklist reaches only postmaster
        // (RFC 5321 §4.5.1): every other RCPT is refused before any lookup
        // of the recipient, so the refusal says nothing about who exists.
        // Postmaster of a domain that is not ours is refused as relaying.
        if let Some(hit) = self.dnsbl_reject().await
            && !is_postmaster(&to)
        {
            let from = self.tx.as_ref().and_then(|t| t.from.clone());
            let ip = client_ip(self.peer.ip());
            self.log_reject(
                from.as_ref(),
                &format!("RCPT <{to}>"),
                &format!("client [{ip}] is listed in {} ({})", hit.zone, hit.answer),
            );
            return self.error(Reply::text(
                554,
                "5.7.1",
                format!(
                    "Service unavailable; Client host [{ip}] blocked using {}",
                    hit.zone
                ),
            ));
        }
        let (to, route) = match to {
            ForwardPath::Address(a) => {
                let r = self.ctx.handler.route(&a).await;
                (a.to_string(), r)
            }
            ForwardPath::Postmaster => match self.route_postmaster().await {
                Ok(Some((qualified, route))) => (qualified, Ok(route)),
                Ok(None) => {
                    let from = self.tx.as_ref().and_then(|t| t.from.clone());
                    self.log_reject(
                        from.as_ref(),
                        "RCPT <postmaster>",
                        &format!("postmaster not configured ({})", self.postmaster_tried()),
                    );
                    return self.error(codes::postmaster_not_configured());
                }
                Err(e) => (ForwardPath::Postmaster.to_string(), Err(e)),
            },
        };
        let route = match route {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, rcpt = %to, "recipient lookup failed");
                self.reply(Reply::text(
                    451,
                    "4.3.0",
                    "Temporary lookup failure, try again later",
                ));
                return Flow::Continue;
            }
        };
        let from = self.tx.as_ref().and_then(|t| t.from.clone());
        match route {
            Route::NotLocal => {
                self.log_reject(
                    from.as_ref(),
                    &format!("RCPT <{to}>"),
                    "relay not permitted",
                );
                self.error(codes::relay_denied())
            }
            Route::UnknownUser => {
                self.log_reject(from.as_ref(), &format!("RCPT <{to}>"), "unknown user");
                self.error(codes::unknown_user())
            }
            Route::Local(mailboxes) => {
                // The mailboxes may be unable to take mail now (a full
                // quarantine): this recipient waits, the others stand.
                match self.ctx.handler.admit(&mailboxes).await {
                    Ok(None) => {}
                    Ok(Some(refusal)) => {
                        self.log_reject(from.as_ref(), &format!("RCPT <{to}>"), &refusal.why);
                        return self.error(refusal.reply);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, rcpt = %to, "recipient check failed");
                        self.reply(Reply::text(
                            451,
                            "4.3.0",
                            "Temporary lookup failure, try again later",
                        ));
                        return Flow::Continue;
                    }
                }
                let Some(tx) = self.tx.as_mut() else {
                    return Flow::Continue;
                };
                tx.accepted += 1;
                if tx.first_rcpt.is_none() {
                    tx.first_rcpt = Some(to.clone());
                }
                for t in mailboxes {
                    if !tx.recipients.iter().any(|r| r.mailbox.id == t.mailbox.id) {
                        tx.recipients.push(Recipient {
                            mailbox: t.mailbox,
                            challenge: t.challenge,
                            original: to.clone(),
                        });
                    }
                }
                self.reply(codes::recipient_ok());
                Flow::Continue
            }
        }
    }

    /// The client's `reject` DNS blocklist listing, if any; the lists are
    /// asked the first time (see [`MailHandler::check_client`]).
    async fn dnsbl_reject(&mut self) -> Option<DnsblHit> {
        if self.dnsbl.is_none() {
            let (_, protocol) = match &self.tx {
                Some(tx) => self.protocol(tx),
                None => ("", ""),
            };
            let client = ClientInfo {
                helo: self.helo.clone().unwrap_or_default(),
                addr: self.peer,
                protocol,
            };
            self.dnsbl = Some(self.ctx.handler.check_client(&client).await);
        }
        self.dnsbl.as_ref().and_then(|v| v.reject.clone())
    }

    /// Where the bare `RCPT TO:<Postmaster>` goes (RFC 5321 §4.1.1.3,
    /// §4.5.1), tried in this order:
    ///
    /// 1. the `smtp.postmaster` mailbox (or alias), when set;
    /// 2. `postmaster@` the host name (`hostname`), as Postfix (which
    ///    appends `$myorigin`, by default `$myhostname`) and Exim (which
    ///    qualifies it with `qualify_recipient`, by default the primary
    ///    host name) do: its postmaster alias or mailbox when the host name
    ///    is a local domain;
    /// 3. `postmaster@` the host name's parent domain (`example.com` for
    ///    `mx.example.com`), for the usual `myorigin = $mydomain` setup.
    ///
    /// Returns the address the client's `postmaster` stands for and its
    /// route: the `postmaster@` address that routed, or `postmaster@` the
    /// host name when `smtp.postmaster` took it. It is logged as the RCPT
    /// address (`=> bob@example.com <postmaster@mx.example.com>`, as Exim
    /// qualifies it) and is the address that was mailed. `None` when nothing
    /// routes, with a warning logged once per process.
    async fn route_postmaster(&self) -> Result<Option<(String, Route)>, String> {
        let qualified = self.postmaster_candidates();
        let mut candidates = qualified.clone();
        if let Ok(pm) = EmailAddress::parse(&self.ctx.config.postmaster) {
            candidates.insert(0, pm);
        }
        for a in &candidates {
            if let r @ Route::Local(_) = self.ctx.handler.route(a).await? {
                // Logged as the qualified postmaster address, as Exim does.
                let shown = if qualified.contains(a) {
                    a
                } else {
                    qualified.first().unwrap_or(a)
                };
                return Ok(Some((shown.to_string(), r)));
            }
        }
        if !POSTMASTER_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                tried = %self.postmaster_tried(),
                "RCPT TO:<Postmaster> has nowhere to go: set smtp.postmaster to a local mailbox \
                 (RFC 5321 requires postmaster to work); refusing it with 550 5.1.1"
            );
        }
        Ok(None)
    }

    /// `postmaster@` the host name, then its parent domain.
    fn postmaster_candidates(&self) -> Vec<EmailAddress> {
        let host = self.ctx.hostname.trim_end_matches('.');
        // The parent only when it is not a top-level domain.
        let parent = host
            .split_once('.')
            .map(|(_, p)| p)
            .filter(|p| p.contains('.'));
        [Some(host), parent]
            .into_iter()
            .flatten()
            .filter_map(|d| EmailAddress::parse(&format!("postmaster@{d}")).ok())
            .collect()
    }

    /// What [`route_postmaster`](Self::route_postmaster) tried, for logs.
    fn postmaster_tried(&self) -> String {
        let pm = &self.ctx.config.postmaster;
        let mut s = if pm.is_empty() {
            "smtp.postmaster is not set".to_owned()
        } else {
            format!("smtp.postmaster {pm} is not a local mailbox")
        };
        let c = self.postmaster_candidates();
        if !c.is_empty() {
            let list: Vec<String> = c.iter().map(|a| a.to_string()).collect();
            s.push_str(&format!("; {} not routed", list.join(", ")));
        }
        s
    }

    fn log_reject(&self, from: Option<&EmailAddress>, what: &str, why: &str) {
        let from = from.map(|f| f.to_string()).unwrap_or_default();
        self.ctx.log.rejected(&self.client_tag(), &from, what, why);
    }

    fn protocol(&self, tx: &Transaction) -> (&'static str, &'static str) {
        // RFC 3848 / RFC 6531 §3.7.3: the WITH protocol names.
        match (self.esmtp, tx.params.smtputf8) {
            (true, true) => ("UTF8SMTP", "utf8esmtp"),
            (true, false) => ("ESMTP", "esmtp"),
            (false, _) => ("SMTP", "smtp"),
        }
    }

    async fn end_of_data(&mut self, outcome: DataOutcome) {
        let Some(tx) = self.tx.take() else { return };
        let body = match outcome {
            DataOutcome::TooBig => {
                self.log_reject(tx.from.as_ref(), "after DATA", "message too big");
                self.reply(codes::message_too_big());
                return;
            }
            DataOutcome::BareNewline => {
                self.log_reject(
                    tx.from.as_ref(),
                    "after DATA",
                    "bare CR or LF in message data",
                );
                self.reply(codes::bare_newline());
                return;
            }
            DataOutcome::NoMemory => {
                self.log_reject(tx.from.as_ref(), "after DATA", NO_MEMORY);
                self.reply(codes::insufficient_storage());
                return;
            }
            DataOutcome::Message(body) => body,
        };
        let now = self.ctx.clock.now();
        let queue_id = new_queue_id(now);
        let (with, protocol) = self.protocol(&tx);
        let helo = self.helo.clone().unwrap_or_default();
        // RFC 5321 §4.4: the trace header, prepended.
        let for_clause = match (&tx.first_rcpt, tx.accepted) {
            (Some(r), 1) => format!("\r\n\tfor <{r}>"),
            _ => String::new(),
        };
        let received = format!(
            "Received: from {} ({})\r\n\tby {} (boxtrap) with {with} id {queue_id}{for_clause};\r\n\t{}\r\n",
            sanitize_helo(&helo),
            address_literal(self.peer.ip()),
            self.ctx.hostname,
            now.rfc5322()
        );
        // The header goes in front, in the buffer the message is in; the
        // charge for the message stays until the handler has stored it.
        let data = body.into_vec(received.as_bytes());
        let from = tx.from.clone();
        let env = Envelope {
            queue_id: queue_id.clone(),
            sender: tx.from,
            recipients: tx.recipients,
            arrived: now,
            client: ClientInfo {
                helo,
                addr: self.peer,
                protocol,
            },
            dnsbl: self
                .dnsbl
                .as_ref()
                .map(|v| v.score_hits.clone())
                .unwrap_or_default(),
        };
        match self.ctx.handler.accept(env, data).await {
            Accepted::Stored => self.reply(Reply::text(250, "2.0.0", format!("OK id={queue_id}"))),
            Accepted::Blocked => {
                // Every recipient blocks this sender: refuse in the session, so
                // no mail is ever sent to a blocked (maybe forged) sender.
                self.log_reject(
                    from.as_ref(),
                    "after DATA",
                    "sender is on the recipients' block lists",
                );
                self.reply(codes::blocked_sender());
            }
            Accepted::Refused { reply, why } => {
                self.log_reject(from.as_ref(), "after DATA", &why);
                self.reply(reply);
            }
            Accepted::Failed { what, error } => self.temporarily_rejected(&queue_id, what, &error),
        }
    }

    /// A local fault after DATA: 451, and a main-log line naming the cause
    /// (the sender's MTA will retry; the admin must be able to see why).
    fn temporarily_rejected(&mut self, queue_id: &str, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, queue_id = %queue_id, "{what}");
        self.ctx
            .log
            .temporarily_rejected(queue_id, &self.client_tag(), what, e);
        self.reply(codes::local_error());
    }
}

/// Why a message could not be kept when the system had no memory for it.
const NO_MEMORY: &str = "insufficient system storage: no memory could be reserved for the message";

/// Free budget a DATA without a declared `SIZE=` needs to go ahead: room
/// for a small message (64K, or `max_message_size` when that is smaller).
const ROOM_WITHOUT_SIZE: u64 = 64 * 1024;

enum Step {
    Flow(Flow),
    StartData,
    Rcpt(ForwardPath),
}

/// Set once the missing postmaster has been warned about (once per process,
/// so the admin sees it without a line per probe).
static POSTMASTER_WARNED: AtomicBool = AtomicBool::new(false);

/// Whether RCPT goes to postmaster: the bare `<Postmaster>` or any
/// `postmaster@` (RFC 5321 §4.5.1: the local part is case-insensitive).
fn is_postmaster(to: &ForwardPath) -> bool {
    match to {
        ForwardPath::Postmaster => true,
        ForwardPath::Address(a) => a.local_part().eq_ignore_ascii_case("postmaster"),
    }
}

/// The client's address as the DNS lists see it: IPv4-mapped IPv6 as IPv4.
fn client_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// RFC 5321 §4.1.3 address literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
fn address_literal(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

/// Keeps the HELO name from breaking the `Received:` header's structure.
fn sanitize_helo(h: &str) -> String {
    h.chars()
        .map(|c| {
            if c.is_ascii_graphic() && !"()\\;".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The dialogue in memory: a session over `tokio::io::duplex` with a
    //! fake handler and, for the timeouts, paused time. The socket-level
    //! tests (tests/it/smtp_dialogue.rs) run the same dialogue over TCP
    //! against the real handler.
    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::config::{HumanDuration, SmtpConfig};
    use crate::delivery::router::Target;
    use crate::envelope::Envelope;
    use crate::smtp::accept::HandlerFuture;
    use crate::store::mailboxes::MailboxRef;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

    /// Knows alice@example.test; example.test is local, the rest is not.
    struct Fake {
        answer: Accepted,
        taken: Mutex<Vec<(Envelope, Vec<u8>)>>,
        /// What `check_client` answers, and the clients it was asked about.
        dnsbl: Mutex<DnsblVerdict>,
        checked: Mutex<Vec<ClientInfo>>,
    }

    impl MailHandler for Fake {
        fn check_client<'a>(&'a self, client: &'a ClientInfo) -> HandlerFuture<'a, DnsblVerdict> {
            self.checked.lock().unwrap().push(client.clone());
            let verdict = self.dnsbl.lock().unwrap().clone();
            Box::pin(async move { verdict })
        }

        fn route<'a>(&'a self, to: &'a EmailAddress) -> HandlerFuture<'a, Result<Route, String>> {
            Box::pin(async move {
                match to.to_string().as_str() {
                    "alice@example.test" => Ok(Route::Local(vec![Target {
                        mailbox: MailboxRef {
                            id: 1,
                            address: "alice@example.test".into(),
                        },
                        challenge: false,
                    }])),
                    "postmaster@example.test" => Ok(Route::Local(vec![Target {
                        mailbox: MailboxRef {
                            id: 2,
                            address: "bob@example.test".into(),
                        },
                        challenge: false,
                    }])),
                    "broken@example.test" => Err("database is down".into()),
                    _ if to.domain().to_string() == "example.test" => Ok(Route::UnknownUser),
                    _ => Ok(Route::NotLocal),
                }
            })
        }

        fn accept<'a>(&'a self, env: Envelope, data: Vec<u8>) -> HandlerFuture<'a, Accepted> {
            Box::pin(async move {
                self.taken.lock().unwrap().push((env, data));
                self.answer.clone()
            })
        }
    }

    struct Client {
        read: BufReader<ReadHalf<DuplexStream>>,
        write: WriteHalf<DuplexStream>,
        handler: Arc<Fake>,
        _dir: tempfile::TempDir,
    }

    impl Client {
        async fn reply(&mut self) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                if self.read.read_line(&mut line).await.unwrap() == 0 {
                    return all;
                }
                all.push_str(&line);
                if line.as_bytes().get(3) == Some(&b' ') {
                    return all;
                }
            }
        }

        /// Sends `line` and checks the reply starts with `expect`.
        async fn cmd(&mut self, line: &str, expect: &str) -> String {
            self.write
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .unwrap();
            let r = self.reply().await;
            assert!(r.starts_with(expect), "{line:?} got {r:?}, wanted {expect}");
            r
        }
    }

    async fn session(answer: Accepted, tweak: impl FnOnce(&mut SmtpConfig)) -> Client {
        session_on("mx.example.test", answer, tweak).await
    }

    async fn session_on(
        hostname: &str,
        answer: Accepted,
        tweak: impl FnOnce(&mut SmtpConfig),
    ) -> Client {
        let mut config = SmtpConfig::default();
        tweak(&mut config);
        let budget = DataBudget::new(config.max_inflight_data.0);
        session_with(hostname, answer, &budget, config).await
    }

    /// A session whose message data is charged to `budget`, which other
    /// sessions may share.
    async fn session_with(
        hostname: &str,
        answer: Accepted,
        budget: &Arc<DataBudget>,
        config: SmtpConfig,
    ) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_795_788_353)));
        let log = MainLog::open(
            &dir.path().join("mainlog"),
            &dir.path().join("rejectlog"),
            clock.clone(),
        )
        .unwrap();
        let handler = Arc::new(Fake {
            answer,
            taken: Mutex::new(Vec::new()),
            dnsbl: Mutex::new(DnsblVerdict::default()),
            checked: Mutex::new(Vec::new()),
        });
        let ctx = Arc::new(SmtpContext {
            config,
            hostname: hostname.into(),
            handler: handler.clone(),
            log,
            clock,
        });
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, stopped) = watch::channel(false);
        let budget = budget.clone();
        tokio::spawn(async move {
            let _keep = _stop;
            let peer = "192.0.2.7:40312".parse().unwrap();
            run_session(&ctx, server, peer, &budget, stopped).await;
        });
        let (read, write) = tokio::io::split(client);
        let mut c = Client {
            read: BufReader::new(read),
            write,
            handler,
            _dir: dir,
        };
        let greeting = c.reply().await;
        assert!(
            greeting.starts_with(&format!("220 {hostname} ")),
            "{greeting}"
        );
        c
    }

    fn mainlog(c: &Client) -> String {
        std::fs::read_to_string(c._dir.path().join("mainlog")).unwrap_or_default()
    }

    fn rejectlog(c: &Client) -> String {
        std::fs::read_to_string(c._dir.path().join("rejectlog")).unwrap_or_default()
    }

    /// Sends one message to the bare `<Postmaster>`; returns the envelope's
    /// recipients as (mailbox, original) and the `Received:` line's `for`.
    async fn to_postmaster(c: &mut Client) -> (Vec<(String, String)>, String) {
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250 2.1.0").await;
        c.cmd("RCPT TO:<Postmaster>", "250 2.1.5").await;
        c.cmd("DATA", "354").await;
        c.cmd("Subject: abuse\r\n\r\nx\r\n.", "250 2.0.0").await;
        let taken = c.handler.taken.lock().unwrap();
        let (env, data) = taken.last().unwrap();
        let rcpts = env
            .recipients
            .iter()
            .map(|r| (r.mailbox.address.clone(), r.original.clone()))
            .collect();
        let text = String::from_utf8_lossy(data);
        let for_line = text.lines().find(|l| l.contains("for <")).unwrap_or("");
        (rcpts, for_line.trim().to_owned())
    }

    fn hit(zone: &str, answer: &str, score: f64) -> DnsblHit {
        DnsblHit {
            zone: zone.into(),
            answer: answer.parse().unwrap(),
            score,
        }
    }

    #[tokio::test]
    async fn the_dns_lists_are_asked_once_per_session_at_the_first_rcpt() {
        // EHLO, MAIL and QUIT alone cost no lookup.
        let mut c = session(Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RSET", "250").await;
        c.cmd("QUIT", "221").await;
        assert!(c.handler.checked.lock().unwrap().is_empty());

        let mut c = session(Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        c.cmd("RCPT TO:<nobody@example.test>", "550").await;
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        c.cmd("DATA", "354").await;
        c.cmd("Subject: one\r\n\r\nx\r\n.", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        let checked = c.handler.checked.lock().unwrap().clone();
        assert_eq!(checked.len(), 1, "{checked:?}");
        assert_eq!(checked[0].addr.to_string(), "192.0.2.7:40312");
        assert_eq!(checked[0].helo, "client.example.org");
        assert_eq!(checked[0].protocol, "esmtp");
    }

    #[tokio::test]
    async fn a_client_on_a_reject_list_reaches_only_postmaster_and_score_hits_travel_with_the_message()
     {
        let mut c = session(Accepted::Stored, |s| {
            s.postmaster = "alice@example.test".into()
        })
        .await;
        *c.handler.dnsbl.lock().unwrap() = DnsblVerdict {
            reject: Some(hit("bl.test", "127.0.0.2", 5.0)),
            score_hits: vec![
                hit("a.test", "127.0.0.4", 1.5),
                hit("b.test", "127.0.0.2", 2.0),
            ],
            ..DnsblVerdict::default()
        };
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        let r = c.cmd("RCPT TO:<alice@example.test>", "554 5.7.1").await;
        assert_eq!(
            r,
            "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using bl.test\r\n"
        );
        // Unknown users and relaying get the same answer: nothing is looked up.
        c.cmd("RCPT TO:<nobody@example.test>", "554 5.7.1").await;
        c.cmd("RCPT TO:<someone@example.net>", "554 5.7.1").await;
        // Postmaster still gets through (RFC 5321 §4.5.1), in any case: this
        // one is past the list and refused only because the fake router
        // knows no such user.
        c.cmd("RCPT TO:<PostMaster@example.test>", "550 5.1.1")
            .await;
        c.cmd("RCPT TO:<postmaster@example.test>", "250").await;
        c.cmd("RCPT TO:<Postmaster>", "250").await;
        // Postmaster of a domain that is not ours is still relaying.
        c.cmd("RCPT TO:<postmaster@example.net>", "550 5.7.1").await;
        c.cmd("DATA", "354").await;
        c.cmd("Subject: listed?\r\n\r\nx\r\n.", "250").await;
        let taken = c.handler.taken.lock().unwrap();
        let (env, _) = taken.last().unwrap();
        assert_eq!(
            env.dnsbl,
            vec![
                hit("a.test", "127.0.0.4", 1.5),
                hit("b.test", "127.0.0.2", 2.0)
            ]
        );
        assert_eq!(env.dnsbl_score(), 3.5);
        drop(taken);
        let rejects = rejectlog(&c);
        assert!(
            rejects.contains(
                "F=<bob@example.org> rejected RCPT <alice@example.test>: client [192.0.2.7] \
                 is listed in bl.test (127.0.0.2)"
            ),
            "{rejects}"
        );
        assert_eq!(c.handler.checked.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn dns_list_refusals_count_toward_the_error_limit() {
        let mut c = session(Accepted::Stored, |s| s.max_errors = 3).await;
        *c.handler.dnsbl.lock().unwrap() = DnsblVerdict {
            reject: Some(hit("bl.test", "127.0.0.2", 1.0)),
            ..DnsblVerdict::default()
        };
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<a@example.test>", "554").await;
        c.cmd("RCPT TO:<b@example.test>", "554").await;
        c.cmd("RCPT TO:<c@example.test>", "554").await;
        let r = c.reply().await;
        assert!(r.starts_with("421 4.7.0"), "{r}");
    }

    #[tokio::test]
    async fn the_bare_postmaster_goes_to_smtp_postmaster_first() {
        let mut c = session_on("mx.other.example", Accepted::Stored, |s| {
            s.postmaster = "alice@example.test".into()
        })
        .await;
        let (rcpts, for_line) = to_postmaster(&mut c).await;
        assert_eq!(
            rcpts,
            [(
                "alice@example.test".to_owned(),
                "postmaster@mx.other.example".to_owned()
            )]
        );
        assert_eq!(for_line, "for <postmaster@mx.other.example>;");
    }

    #[tokio::test]
    async fn without_smtp_postmaster_the_bare_postmaster_is_qualified_with_the_host_name() {
        // postmaster@mx.example.test is not local; its parent domain's is.
        let mut c = session(Accepted::Stored, |_| {}).await;
        let (rcpts, _) = to_postmaster(&mut c).await;
        assert_eq!(
            rcpts,
            [(
                "bob@example.test".to_owned(),
                "postmaster@example.test".to_owned()
            )]
        );
        // A smtp.postmaster that names no mailbox falls through the same way.
        let mut c = session(Accepted::Stored, |s| {
            s.postmaster = "gone@example.test".into()
        })
        .await;
        let (rcpts, _) = to_postmaster(&mut c).await;
        assert_eq!(rcpts[0].0, "bob@example.test");
    }

    #[tokio::test]
    async fn a_bare_postmaster_with_nowhere_to_go_is_refused_saying_so() {
        let mut c = session_on("mx.other.example", Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        let r = c.cmd("RCPT TO:<postmaster>", "550 5.1.1").await;
        assert_eq!(
            r,
            "550 5.1.1 Postmaster is not configured on this server\r\n"
        );
        c.cmd("DATA", "554 5.5.1").await;
        let rejects = rejectlog(&c);
        assert!(
            rejects.contains(
                "F=<bob@example.org> rejected RCPT <postmaster>: postmaster not configured \
                 (smtp.postmaster is not set; postmaster@mx.other.example, \
                 postmaster@other.example not routed)"
            ),
            "{rejects}"
        );
        // A lookup failure is temporary, as for any recipient.
        let mut c = session(Accepted::Stored, |s| {
            s.postmaster = "broken@example.test".into()
        })
        .await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<Postmaster>", "451 4.3.0").await;
    }

    #[tokio::test]
    async fn a_transaction_reaches_the_handler_with_our_trace_header() {
        let mut c = session(Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250-mx.example.test")
            .await;
        c.cmd("MAIL FROM:<bob@example.org>", "250 2.1.0").await;
        c.cmd("RCPT TO:<alice@example.test>", "250 2.1.5").await;
        c.cmd("DATA", "354").await;
        c.cmd("Subject: hi\r\n\r\nhello\r\n.", "250 2.0.0 OK id=")
            .await;
        c.cmd("QUIT", "221").await;
        let taken = c.handler.taken.lock().unwrap();
        let (env, data) = &taken[0];
        assert_eq!(env.sender.as_ref().unwrap().to_string(), "bob@example.org");
        assert_eq!(env.recipients[0].original, "alice@example.test");
        let text = String::from_utf8_lossy(data);
        assert!(
            text.starts_with("Received: from client.example.org ([192.0.2.7])"),
            "{text}"
        );
        assert!(text.contains("for <alice@example.test>;"), "{text}");
        assert!(text.ends_with("Subject: hi\r\n\r\nhello\r\n"), "{text}");
    }

    #[tokio::test]
    async fn recipients_are_refused_with_the_reason_and_a_lookup_failure_is_temporary() {
        let mut c = session(Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1").await;
        c.cmd("RCPT TO:<carol@elsewhere.example>", "550 5.7.1")
            .await;
        c.cmd("RCPT TO:<broken@example.test>", "451 4.3.0").await;
        c.cmd("DATA", "554").await;
    }

    #[tokio::test]
    async fn a_blocked_sender_gets_550_and_a_local_fault_gets_451_with_a_log_line() {
        for (answer, want) in [
            (Accepted::Blocked, "550 5.7.1"),
            (
                Accepted::Failed {
                    what: "message could not be stored",
                    error: "disk full".into(),
                },
                "451 4.3.0",
            ),
        ] {
            let failed = matches!(answer, Accepted::Failed { .. });
            let mut c = session(answer, |_| {}).await;
            c.cmd("EHLO client.example.org", "250").await;
            c.cmd("MAIL FROM:<bob@example.org>", "250").await;
            c.cmd("RCPT TO:<alice@example.test>", "250").await;
            c.cmd("DATA", "354").await;
            c.cmd("Subject: hi\r\n\r\nhello\r\n.", want).await;
            if failed {
                let log = mainlog(&c);
                assert!(
                    log.contains(
                        "temporarily rejected after DATA: message could not be stored: disk full"
                    ),
                    "{log}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_told_421_after_the_command_timeout() {
        let mut c = session(Accepted::Stored, |s| {
            s.command_timeout = HumanDuration(Duration::from_secs(300));
        })
        .await;
        let started = tokio::time::Instant::now();
        let r = c.reply().await;
        assert!(r.starts_with("421 4.4.2"), "{r}");
        assert!(started.elapsed() >= Duration::from_secs(300));
        assert!(mainlog(&c).contains("SMTP command timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_data_transfer_is_ended_by_the_data_timeout() {
        let mut c = session(Accepted::Stored, |s| {
            s.data_timeout = HumanDuration(Duration::from_secs(180));
        })
        .await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        c.cmd("DATA", "354").await;
        c.write
            .write_all(b"Subject: half a message\r\n")
            .await
            .unwrap();
        let r = c.reply().await;
        assert!(r.starts_with("421 4.4.2"), "{r}");
        assert!(c.handler.taken.lock().unwrap().is_empty());
    }

    /// Sends `bytes` one at a time, `every` apart, until the server
    /// answers; returns the answer, how long it took and how many bytes
    /// went out.
    async fn trickle(c: &mut Client, bytes: &[u8], every: Duration) -> (String, Duration, usize) {
        let started = tokio::time::Instant::now();
        for (i, b) in bytes.iter().enumerate() {
            if c.write.write_all(&[*b]).await.is_err() {
                return (c.reply().await, started.elapsed(), i);
            }
            if let Ok(r) = tokio::time::timeout(every, c.reply()).await {
                return (r, started.elapsed(), i + 1);
            }
        }
        (c.reply().await, started.elapsed(), bytes.len())
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_trickling_a_command_one_byte_a_minute_is_cut_off_by_the_command_time_limit() {
        // The defaults: 5m without a byte, and 5m for the whole line.
        let mut c = session(Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250").await;
        let endless = "MAIL FROM:<".to_owned() + &"b".repeat(500);
        let (r, took, sent) = trickle(&mut c, endless.as_bytes(), Duration::from_secs(60)).await;
        assert_eq!(
            r,
            "421 4.4.2 mx.example.test Timeout: command not complete within 5m, closing\r\n"
        );
        assert!(
            took >= Duration::from_secs(300) && took < Duration::from_secs(301),
            "{took:?}"
        );
        assert!(sent >= 5, "a byte a minute all along: {sent}");
        assert!(
            mainlog(&c).contains(
                "SMTP command timeout (command not complete within smtp.command_time_limit 5m) \
                 on connection from [192.0.2.7]"
            ),
            "{}",
            mainlog(&c)
        );
        assert_eq!(c.reply().await, "", "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_trickling_a_message_one_byte_a_minute_is_cut_off_by_the_message_time_limit() {
        let mut c = session(Accepted::Stored, |_| {}).await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        c.cmd("DATA", "354").await;
        let body = "x".repeat(200);
        let (r, took, sent) = trickle(&mut c, body.as_bytes(), Duration::from_secs(60)).await;
        assert_eq!(
            r,
            "421 4.4.2 mx.example.test Timeout: message not complete within 1h, closing\r\n"
        );
        assert_eq!(took, Duration::from_secs(3600), "{took:?}");
        assert!(sent >= 60, "a byte a minute all along: {sent}");
        assert!(c.handler.taken.lock().unwrap().is_empty());
        assert!(
            mainlog(&c).contains(
                "SMTP data timeout (message abandoned: not complete within \
                 smtp.message_time_limit 1h) on connection from [192.0.2.7] F=<bob@example.org>"
            ),
            "{}",
            mainlog(&c)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_line_is_cut_off_by_the_command_time_limit_however_fast_it_comes() {
        let mut c = session(Accepted::Stored, |s| {
            s.command_time_limit = HumanDuration(Duration::from_secs(60));
        })
        .await;
        c.cmd("EHLO client.example.org", "250").await;
        let started = tokio::time::Instant::now();
        let piece = vec![b'x'; 4096];
        let mut answers = String::new();
        // 4 KiB every second: never idle, never a line end.
        for _ in 0..120 {
            if c.write.write_all(&piece).await.is_err() {
                break;
            }
            if let Ok(r) = tokio::time::timeout(Duration::from_secs(1), c.reply()).await {
                answers.push_str(&r);
                if r.starts_with("421") || r.is_empty() {
                    break;
                }
            }
        }
        assert!(
            answers.starts_with("500 5.5.2 Line too long\r\n421 4.4.2 "),
            "{answers}"
        );
        assert!(
            answers.contains("command not complete within 1m"),
            "{answers}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(60) && took <= Duration::from_secs(62),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_limits_run_per_command_and_per_message_not_per_session() {
        let mut c = session(Accepted::Stored, |s| {
            s.command_time_limit = HumanDuration(Duration::from_secs(300));
            s.message_time_limit = HumanDuration(Duration::from_secs(1800));
        })
        .await;
        // Each command takes 4 of its 5 minutes; 20 minutes in all.
        for _ in 0..5 {
            c.write.write_all(b"NO").await.unwrap();
            tokio::time::sleep(Duration::from_secs(240)).await;
            c.cmd("OP", "250 2.0.0").await;
        }
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd("MAIL FROM:<bob@example.org>", "250").await;
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        c.cmd("DATA", "354").await;
        // 29 minutes of a message, a line every 2 minutes.
        for i in 0..14 {
            tokio::time::sleep(Duration::from_secs(120)).await;
            c.write
                .write_all(format!("line {i}\r\n").as_bytes())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        c.cmd(".", "250 2.0.0").await;
        // The next command has its own five minutes again.
        tokio::time::sleep(Duration::from_secs(290)).await;
        c.cmd("QUIT", "221").await;
    }

    /// EHLO, MAIL (with `SIZE=` when given), RCPT and DATA; returns the
    /// reply to the last command sent.
    async fn start_data(c: &mut Client, size: Option<u64>) -> String {
        c.cmd("EHLO client.example.org", "250").await;
        let size = size.map(|n| format!(" SIZE={n}")).unwrap_or_default();
        let r = c
            .cmd(&format!("MAIL FROM:<bob@example.org>{size}"), "")
            .await;
        if !r.starts_with("250") {
            return r;
        }
        c.cmd("RCPT TO:<alice@example.test>", "250").await;
        c.cmd("DATA", "").await
    }

    async fn settle(budget: &DataBudget, bytes: u64) {
        for _ in 0..10_000 {
            if budget.in_use() == bytes {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("budget in use {} never became {bytes}", budget.in_use());
    }

    #[tokio::test]
    async fn with_the_data_budget_spent_new_messages_get_452_and_a_transfer_over_it_421() {
        let budget = DataBudget::new(200_000);
        let open = |budget: &Arc<DataBudget>| {
            let budget = budget.clone();
            async move {
                session_with(
                    "mx.example.test",
                    Accepted::Stored,
                    &budget,
                    SmtpConfig::default(),
                )
                .await
            }
        };
        let line = format!("{}\r\n", "y".repeat(998));
        // A holds 150,000 bytes of an unfinished message.
        let mut a = open(&budget).await;
        assert!(start_data(&mut a, None).await.starts_with("354"));
        a.write
            .write_all(line.repeat(150).as_bytes())
            .await
            .unwrap();
        settle(&budget, 150_000).await;

        // 50,000 free: a larger SIZE= is refused at MAIL (RFC 1870 §6.1),
        // and DATA without SIZE= needs room for a first 64K chunk.
        let mut b = open(&budget).await;
        let r = start_data(&mut b, Some(60_000)).await;
        assert_eq!(
            r,
            "452 4.3.1 Insufficient system storage, try again later\r\n"
        );
        let r = b.cmd("MAIL FROM:<bob@example.org>", "250").await;
        assert!(r.starts_with("250 2.1.0"));
        b.cmd("RCPT TO:<alice@example.test>", "250").await;
        b.cmd("DATA", "452 4.3.1").await;
        b.cmd("QUIT", "221").await;

        // A transfer that would go over the budget is ended, and what it
        // held is given back.
        let mut c = open(&budget).await;
        assert!(start_data(&mut c, Some(40_000)).await.starts_with("354"));
        let _ = c.write.write_all(line.repeat(60).as_bytes()).await;
        let r = c.reply().await;
        assert_eq!(
            r,
            "421 4.3.1 mx.example.test Insufficient system storage, closing; try again later\r\n"
        );
        assert_eq!(c.reply().await, "", "closed");
        settle(&budget, 150_000).await;
        let rejects = rejectlog(&c);
        assert!(
            rejects.contains(
                "F=<bob@example.org> rejected during DATA: insufficient system storage: \
                 smtp.max_inflight_data (200000) in use"
            ),
            "{rejects}"
        );
        assert!(c.handler.taken.lock().unwrap().is_empty());

        // A's message completes and is taken; then the budget is free.
        a.write.write_all(b".\r\n").await.unwrap();
        let r = a.reply().await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert!(
            a.handler.taken.lock().unwrap()[0]
                .1
                .ends_with(line.as_bytes())
        );
        settle(&budget, 0).await;
        let mut d = open(&budget).await;
        assert!(start_data(&mut d, Some(190_000)).await.starts_with("354"));
        d.write
            .write_all(line.repeat(190).as_bytes())
            .await
            .unwrap();
        d.cmd(".", "250 2.0.0").await;
        settle(&budget, 0).await;
    }

    #[tokio::test]
    async fn an_oversize_message_holds_none_of_the_budget() {
        let budget = DataBudget::new(100_000);
        let config = SmtpConfig {
            max_message_size: ByteSize(50_000),
            ..SmtpConfig::default()
        };
        let mut c = session_with("mx.example.test", Accepted::Stored, &budget, config).await;
        assert!(start_data(&mut c, None).await.starts_with("354"));
        let line = format!("{}\r\n", "z".repeat(998));
        // Twice the budget, but over the size limit: counted, not kept.
        c.write
            .write_all(line.repeat(200).as_bytes())
            .await
            .unwrap();
        settle(&budget, 0).await;
        c.cmd(".", "552 5.3.4").await;
    }
}
