//! What the receiver asks of the rest of the server, behind one small
//! trait ([`MailHandler`]): where a recipient goes and whether its
//! mailboxes can take mail now (at RCPT), and taking a complete message
//! (at the end of DATA). The session owns the dialogue;
//! [`Accept`] is the real handler: routing, then screening by the
//! quarantine, then delivery, then the main-log lines, in that order.
//! Tests of the dialogue give the session a fake handler instead and run
//! it in memory.

use super::checks::{Checked, MessageChecks};
use super::reply::Reply;
use crate::address::EmailAddress;
use crate::delivery::Delivery;
use crate::delivery::router::{Route, Router, Target};
use crate::dnsbl::{Dnsbl, DnsblVerdict};
use crate::envelope::{ClientInfo, Envelope};
use crate::mainlog::MainLog;
use crate::quarantine::{Outcome, Quarantine};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A handler call's future; handlers are used as `Arc<dyn MailHandler>`.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What became of a complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored for every recipient (delivered, queued, held or dropped on
    /// purpose): the client is told 250.
    Stored,
    /// Every recipient's block list refuses the sender: 550, and nothing
    /// is ever sent to that (perhaps forged) sender.
    Blocked,
    /// The checks at the end of DATA refuse it for everyone (a DMARC
    /// reject policy, a spam score at the reject score): the client is
    /// told `reply`, and `why` goes to the rejectlog.
    Refused { reply: Reply, why: String },
    /// Nothing could be stored: 451, and `what` failed because of `error`.
    Failed { what: &'static str, error: String },
}

/// A recipient refused for now at RCPT, although it routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the client is told.
    pub reply: Reply,
    /// Why, for the rejectlog.
    pub why: String,
}

/// RFC 3463 X.2.2 "Mailbox full", as a 4xx: the sender's server keeps the
/// message and tries again later. The text names no mailbox (the recipient
/// may be an alias).
pub fn mailbox_full() -> Reply {
    Reply::text(452, "4.2.2", "Mailbox full, try again later")
}

/// The rest of the server, as the SMTP session sees it.
pub trait MailHandler: Send + Sync {
    /// Where `to` leads; `Err` is a lookup failure (the client gets 451).
    fn route<'a>(&'a self, to: &'a EmailAddress) -> HandlerFuture<'a, Result<Route, String>>;
    /// Whether the mailboxes a recipient routes to can take a new message
    /// now. `Some` refuses this recipient only (the others of the
    /// transaction stand), with its reply and a rejectlog line; `Err` is a
    /// lookup failure (451). By default every mailbox can.
    fn admit<'a>(
        &'a self,
        targets: &'a [Target],
    ) -> HandlerFuture<'a, Result<Option<Refusal>, String>> {
        let _ = targets;
        Box::pin(async { Ok(None) })
    }
    /// What the DNS block- and allowlists (RFC 5782) say about `client`.
    /// The session asks once, at its first RCPT (a client that never
    /// gets that far costs no lookup), and keeps the answer for the rest
    /// of the session: a `reject` listing refuses every RCPT but
    /// postmaster's with `554 5.7.1`; score listings travel with each
    /// message as [`Envelope::dnsbl`]. Never fails (a DNS failure lists
    /// nobody). By default nothing is listed.
    fn check_client<'a>(&'a self, client: &'a ClientInfo) -> HandlerFuture<'a, DnsblVerdict> {
        let _ = client;
        Box::pin(async { DnsblVerdict::default() })
    }
    /// Takes a complete message (with our `Received:` header) for the
    /// recipients of `env`.
    fn accept<'a>(&'a self, env: Envelope, data: Vec<u8>) -> HandlerFuture<'a, Accepted>;
}

/// The real handler: the router, the quarantine and delivery.
pub struct Accept {
    pub router: Router,
    pub quarantine: Arc<Quarantine>,
    pub delivery: Arc<Delivery>,
    pub checks: Arc<MessageChecks>,
    pub log: MainLog,
    /// The `[[dnsbl]]` and `[[dnswl]]` zones, asked through the server's resolver.
    pub dnsbl: Arc<Dnsbl>,
}

impl MailHandler for Accept {
    fn check_client<'a>(&'a self, client: &'a ClientInfo) -> HandlerFuture<'a, DnsblVerdict> {
        Box::pin(self.dnsbl.check(client.addr.ip()))
    }

    fn route<'a>(&'a self, to: &'a EmailAddress) -> HandlerFuture<'a, Result<Route, String>> {
        Box::pin(async move { self.router.route(to).await.map_err(|e| e.to_string()) })
    }

    /// The quarantine quota: a recipient that reaches a mailbox with
    /// challenge-response on whose quarantine is at its quota gets 452
    /// 4.2.2 (all of an alias's copies wait, so none is lost). One query
    /// for all of them; none for mailboxes without challenge-response,
    /// whose mail goes to the Maildir.
    fn admit<'a>(
        &'a self,
        targets: &'a [Target],
    ) -> HandlerFuture<'a, Result<Option<Refusal>, String>> {
        Box::pin(async move {
            let ids: Vec<i64> = targets
                .iter()
                .filter(|t| t.challenge)
                .map(|t| t.mailbox.id)
                .collect();
            if ids.is_empty() {
                return Ok(None);
            }
            match self.quarantine.quarantine_full(&ids).await {
                Ok(full) => Ok(full.map(|f| Refusal {
                    reply: mailbox_full(),
                    why: f.to_string(),
                })),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn accept<'a>(&'a self, env: Envelope, data: Vec<u8>) -> HandlerFuture<'a, Accepted> {
        Box::pin(async move {
            let (data, checks) = match self.checks.check(&env, data).await {
                Checked::Pass { data, checks } => (Arc::new(data), checks),
                Checked::Refuse { reply, why } => return Accepted::Refused { reply, why },
            };
            let outcomes = match self.quarantine.screen(&env, &data, &checks).await {
                Ok(o) => o,
                Err(e) => {
                    return Accepted::Failed {
                        what: "quarantine screening failed",
                        error: e.to_string(),
                    };
                }
            };
            if !outcomes.is_empty() && outcomes.iter().all(|o| matches!(o, Outcome::Reject(_))) {
                return Accepted::Blocked;
            }
            let to_deliver: Vec<usize> = (0..env.recipients.len())
                .filter(|&i| matches!(outcomes.get(i), None | Some(Outcome::Deliver)))
                .collect();
            match self
                .delivery
                .deliver_new(&env, data.clone(), &to_deliver)
                .await
            {
                Ok(delivered) => {
                    self.log.arrival(&env, &data);
                    self.quarantine.log(&env, &outcomes);
                    self.delivery.log(&env, &delivered);
                    if delivered.all_done() {
                        self.log.completed(&env.queue_id);
                    }
                    Accepted::Stored
                }
                Err(e) => Accepted::Failed {
                    what: "message could not be stored",
                    error: e.to_string(),
                },
            }
        })
    }
}
