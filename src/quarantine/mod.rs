//! The quarantine: the delivery-time hook for mailboxes with
//! challenge-response on, and everything that happens to held mail after.
//!
//! - [`Quarantine::screen`] runs after DATA and before the reply: a reply
//!   to a challenge releases; otherwise [`crate::policy::decide`] says deliver,
//!   hold (and maybe challenge), discard or reject. Holding a message,
//!   opening its challenge and queueing the challenge mail commit together.
//! - [`Quarantine::release_sender`] (link, reply, owner) allows the sender
//!   and delivers every message held from them, each exactly once: rows are
//!   claimed before delivery and the Maildir name is the one a direct
//!   delivery would have had, so a retry after a crash sees its own file.
//! - [`Quarantine::sweep_once`] purges held mail past the mailbox's
//!   keep-days, expires challenges and finishes releases that died midway.
//!
//! Split by what it does: [`screen`] (after DATA), [`release`] (link,
//! reply, owner) and [`sweep`] (the background pass). What a challenge is
//! (token keys, the mails, verifying a token) is [`crate::challenge::issue`]'s.

pub mod owner;
pub mod release;
pub mod screen;
pub mod sweep;

use crate::auth::AuthConfig;
use crate::challenge::issue::{Challenges, KeyError};
use crate::clock::Clock;
use crate::config::{ChallengeConfig, Config};
use crate::delivery::Delivery;
use crate::delivery::router::Router;
use crate::envelope::Envelope;
use crate::mainlog::{MainLog, Rcpt};
use crate::policy::rules::{ListKind, RuleList};
use crate::store::held::SendCaps;
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use screen::{Checks, Outcome};
pub use sweep::SweepReport;

/// Why a quarantine operation failed. Composing a challenge or a notice
/// never fails one: that is contained and shown as the held message's reason.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl From<sqlx::Error> for QuarantineError {
    fn from(e: sqlx::Error) -> Self {
        QuarantineError::Store(e.into())
    }
}

pub struct Quarantine {
    store: Store,
    clock: Arc<dyn Clock>,
    log: MainLog,
    delivery: Arc<Delivery>,
    config: ChallengeConfig,
    /// The `[challenge]` caps on mail to senders.
    caps: SendCaps,
    challenges: Arc<Challenges>,
    /// Which mailboxes an address reaches, as the SMTP receiver routes it
    /// (mail "from" an address that reaches the mailbox is from its owner).
    router: Router,
    /// Compiled sender lists per mailbox, kept until the mailbox's
    /// `rules_version` changes (lists can hold hundreds of regexes).
    lists: Mutex<HashMap<i64, (i64, Arc<Lists>)>>,
    /// `[auth]`: whose mailboxes challenge senders who are not
    /// authenticated unless a check failed.
    auth: AuthConfig,
}

/// One mailbox's sender lists, each compiled once into one `RegexSet` per
/// field ([`RuleList`]), so a message is matched in one pass per value.
struct Lists {
    ignore: RuleList,
    block: RuleList,
    allow: RuleList,
}

const DAY: i64 = 86400;

impl Quarantine {
    pub async fn new(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        log: MainLog,
        delivery: Arc<Delivery>,
    ) -> Result<Quarantine, QuarantineError> {
        let challenges = Arc::new(Challenges::new(config, store.clone(), clock.clone()).await?);
        Ok(Quarantine {
            store: store.clone(),
            clock,
            log,
            delivery,
            config: config.challenge.clone(),
            caps: SendCaps {
                per_address_day: config.challenge.max_per_address_day,
                per_domain_day: config.challenge.max_per_domain_day,
                per_mailbox_hour: config.challenge.max_per_mailbox_hour,
                global_hour: config.challenge.max_global_hour,
            },
            challenges,
            router: Router::new(
                store.clone(),
                &config.smtp.recipient_delimiter,
                &config.smtp.postmaster,
            ),
            lists: Mutex::new(HashMap::new()),
            auth: config.auth.clone(),
        })
    }

    /// Whether the admin's relaxed mode ("challenge unless SPF, DKIM or
    /// DMARC fails") applies to the mailbox at `address`.
    fn challenge_unauthenticated(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.auth.challenges_unauthenticated(domain)
    }

    /// Issues and verifies challenges (the verification pages use it too).
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    async fn lists(&self, s: &MailboxSettings) -> Result<Arc<Lists>, StoreError> {
        if let Ok(cache) = self.lists.lock()
            && let Some((version, lists)) = cache.get(&s.id)
            && *version == s.rules_version
        {
            return Ok(lists.clone());
        }
        let lists = Arc::new(Lists {
            ignore: RuleList::new(self.store.rules(s.id, ListKind::Ignore).await?),
            block: RuleList::new(self.store.rules(s.id, ListKind::Block).await?),
            allow: RuleList::new(self.store.rules(s.id, ListKind::Allow).await?),
        });
        if let Ok(mut cache) = self.lists.lock() {
            cache.insert(s.id, (s.rules_version, lists.clone()));
        }
        Ok(lists)
    }

    /// The main-log lines for what [`Quarantine::screen`] decided: a held
    /// copy is a `:quarantine:` pseudo-delivery, a dropped one `:blackhole:`.
    pub fn log(&self, env: &Envelope, outcomes: &[Outcome]) {
        for (r, outcome) in env.recipients.iter().zip(outcomes) {
            let rcpt = Rcpt::new(&r.mailbox.address, &r.original);
            match outcome {
                Outcome::Deliver => {}
                Outcome::Hold(why) => self.log.held(&env.queue_id, rcpt, why),
                Outcome::Discard(why) | Outcome::Reject(why) => {
                    self.log.discarded(&env.queue_id, rcpt, why)
                }
            }
        }
    }
}
