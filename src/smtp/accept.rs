//! What the receiver asks of the rest of the server, behind one small
//! trait ([`MailHandler`]): where a recipient goes (at RCPT), and taking a
//! complete message (at the end of DATA). The session owns the dialogue;
//! [`Accept`] is the real handler: routing, then screening by the
//! quarantine, then delivery, then the main-log lines, in that order.
//! Tests of the dialogue give the session a fake handler instead and run
//! it in memory.

use crate::address::EmailAddress;
use crate::delivery::Delivery;
use crate::delivery::router::{Route, Router};
use crate::envelope::Envelope;
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
    /// Nothing could be stored: 451, and `what` failed because of `error`.
    Failed { what: &'static str, error: String },
}

/// The rest of the server, as the SMTP session sees it.
pub trait MailHandler: Send + Sync {
    /// Where `to` leads; `Err` is a lookup failure (the client gets 451).
    fn route<'a>(&'a self, to: &'a EmailAddress) -> HandlerFuture<'a, Result<Route, String>>;
    /// Takes a complete message (with our `Received:` header) for the
    /// recipients of `env`.
    fn accept<'a>(&'a self, env: Envelope, data: Vec<u8>) -> HandlerFuture<'a, Accepted>;
}

/// The real handler: the router, the quarantine and delivery.
pub struct Accept {
    pub router: Router,
    pub quarantine: Arc<Quarantine>,
    pub delivery: Arc<Delivery>,
    pub log: MainLog,
}

impl MailHandler for Accept {
    fn route<'a>(&'a self, to: &'a EmailAddress) -> HandlerFuture<'a, Result<Route, String>> {
        Box::pin(async move { self.router.route(to).await.map_err(|e| e.to_string()) })
    }

    fn accept<'a>(&'a self, env: Envelope, data: Vec<u8>) -> HandlerFuture<'a, Accepted> {
        Box::pin(async move {
            let data = Arc::new(data);
            let outcomes = match self.quarantine.screen(&env, &data).await {
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
