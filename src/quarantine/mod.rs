//! The quarantine: the delivery-time hook for mailboxes with
//! challenge-response on, and everything that happens to held mail after.
//!
//! - [`Quarantine::screen`] runs after DATA and before the reply: a reply
//!   to a challenge releases; otherwise [`policy::decide`] says deliver,
//!   hold (and maybe challenge), discard or reject. Holding a message,
//!   opening its challenge and queueing the challenge mail commit together.
//! - [`Quarantine::release_sender`] (link, reply, owner) allows the sender
//!   and delivers every message held from them, each exactly once: rows are
//!   claimed before delivery and the Maildir name is the one a direct
//!   delivery would have had, so a retry after a crash sees its own file.
//! - [`Quarantine::sweep_once`] purges held mail past the mailbox's
//!   keep-days, expires challenges and finishes releases that died midway.

use crate::challenge::notice::{self, Notice};
use crate::challenge::templates::{self, TemplateName, TemplateVars};
use crate::challenge::token::{self, Claims, Keyring, TokenError, TokenKey};
use crate::clock::{Clock, Timestamp};
use crate::config::{ChallengeConfig, Config};
use crate::delivery::{Delivery, LocalCopy, unique_name};
use crate::envelope::Envelope;
use crate::mainlog::{MainLog, Rcpt, Via};
use crate::policy::facts::{MessageFacts, reply_token};
use crate::policy::rules::{ListKind, SenderRule};
use crate::policy::{self, Decision, PolicyInput, Reason, Verdict};
use crate::store::held::{self, NewHeld, NewOutbound};
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use sqlx::AnyConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What became of one recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deliver normally (challenge-response off, or allowed).
    Deliver,
    /// Stored in the quarantine; the reason, for the main log.
    Held(String),
    /// Dropped (ignore list, a consumed challenge reply, or a block-list hit
    /// when other recipients accepted the message); why, for the main log.
    Dropped(String),
    /// Refuse: the block list matched.
    Reject(String),
}

/// Why a token did not release anything; shown on the verification page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("this link is not valid")]
    Malformed,
    #[error("this link has been tampered with")]
    BadSignature,
    #[error("this link has expired")]
    Expired,
    #[error("this link does not belong to any waiting message")]
    Unknown,
    #[error("this link has already been used")]
    AlreadyUsed,
}

/// A verified token: which challenge it answers.
#[derive(Debug, Clone)]
pub struct Verified {
    pub challenge_id: i64,
    pub mailbox_id: i64,
    pub mailbox: String,
    pub sender: String,
}

pub struct Quarantine {
    store: Store,
    clock: Arc<dyn Clock>,
    log: MainLog,
    delivery: Arc<Delivery>,
    config: ChallengeConfig,
    base_url: String,
    hostname: String,
    /// Loaded at start; reloaded when a token names a key we do not know
    /// (another node or `boxtrap key rotate` made it).
    keyring: RwLock<Keyring>,
    /// Compiled sender lists per mailbox, kept until the mailbox's
    /// `rules_version` changes (lists can hold hundreds of regexes).
    lists: Mutex<HashMap<i64, (i64, Arc<Lists>)>>,
}

/// One mailbox's compiled sender lists.
struct Lists {
    ignore: Vec<SenderRule>,
    block: Vec<SenderRule>,
    allow: Vec<SenderRule>,
}

const HOUR: i64 = 3600;
const DAY: i64 = 86400;

/// Loads the token keys, creating the first one (or taking the configured
/// secret) when there is none.
pub async fn load_keyring(store: &Store, config: &ChallengeConfig) -> Result<Keyring, StoreError> {
    let bad = |e: TokenError| StoreError::Conflict(format!("stored token key is unusable: {e}"));
    if !config.secret.is_empty() {
        let key = TokenKey::from_hex(0, &config.secret).map_err(bad)?;
        let (stored, _) = store.token_keys().await?;
        let others = stored
            .iter()
            .filter(|(id, _)| *id != 0)
            .filter_map(|(id, hex)| TokenKey::from_hex(*id, hex).ok())
            .collect();
        return Ok(Keyring::new(key, others));
    }
    let (mut stored, mut current) = store.token_keys().await?;
    if current.is_none() {
        let key = TokenKey::generate(1);
        match store.add_token_key(1, &key.to_hex(), true).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        (stored, current) = store.token_keys().await?;
    }
    let current_id = current.unwrap_or(1);
    let mut keys: Vec<TokenKey> = Vec::new();
    for (id, hex) in &stored {
        keys.push(TokenKey::from_hex(*id, hex).map_err(bad)?);
    }
    let pos = keys
        .iter()
        .position(|k| k.id == current_id)
        .ok_or_else(|| {
            StoreError::NotFound(format!("current token key {current_id} is missing"))
        })?;
    let cur = keys.remove(pos);
    Ok(Keyring::new(cur, keys))
}

impl Quarantine {
    pub async fn new(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        log: MainLog,
        delivery: Arc<Delivery>,
    ) -> Result<Quarantine, StoreError> {
        let keyring = load_keyring(&store, &config.challenge).await?;
        Ok(Quarantine {
            store,
            clock,
            log,
            delivery,
            config: config.challenge.clone(),
            base_url: config.base_url(),
            hostname: config.hostname.clone(),
            keyring: RwLock::new(keyring),
            lists: Mutex::new(HashMap::new()),
        })
    }

    fn keyring(&self) -> Keyring {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn reload_keys(&self) -> Result<(), StoreError> {
        let k = load_keyring(&self.store, &self.config).await?;
        if let Ok(mut w) = self.keyring.write() {
            *w = k;
        }
        Ok(())
    }

    async fn lists(&self, s: &MailboxSettings) -> Result<Arc<Lists>, StoreError> {
        if let Ok(cache) = self.lists.lock()
            && let Some((version, lists)) = cache.get(&s.id)
            && *version == s.rules_version
        {
            return Ok(lists.clone());
        }
        let lists = Arc::new(Lists {
            ignore: self.store.rules(s.id, ListKind::Ignore).await?,
            block: self.store.rules(s.id, ListKind::Block).await?,
            allow: self.store.rules(s.id, ListKind::Allow).await?,
        });
        if let Ok(mut cache) = self.lists.lock() {
            cache.insert(s.id, (s.rules_version, lists.clone()));
        }
        Ok(lists)
    }

    /// The verification link for a token.
    pub fn link(&self, token: &str) -> String {
        notice::link(&self.base_url, token)
    }

    /// The main-log lines for what [`Quarantine::screen`] decided: a held
    /// copy is a `:quarantine:` pseudo-delivery, a dropped one `:blackhole:`.
    pub fn log(&self, env: &Envelope, outcomes: &[Outcome]) {
        for (r, outcome) in env.recipients.iter().zip(outcomes) {
            let rcpt = Rcpt::new(&r.mailbox.address, &r.original);
            match outcome {
                Outcome::Deliver => {}
                Outcome::Held(why) => self.log.held(&env.queue_id, rcpt, why),
                Outcome::Dropped(why) | Outcome::Reject(why) => {
                    self.log.discarded(&env.queue_id, rcpt, why)
                }
            }
        }
    }

    /// Screens a message for every recipient with challenge-response on.
    /// Returns one outcome per recipient of `env`. Nothing is written when
    /// every recipient rejects.
    pub async fn screen(&self, env: &Envelope, data: &[u8]) -> Result<Vec<Outcome>, StoreError> {
        // The common case costs nothing: no mailbox here screens its mail.
        if env.recipients.iter().all(|r| !r.challenge) {
            return Ok(vec![Outcome::Deliver; env.recipients.len()]);
        }
        let mut settings = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            settings.push(self.store.mailbox_settings(r.mailbox.id).await?);
        }
        if settings.iter().all(|s| !s.challenge_enabled) {
            return Ok(vec![Outcome::Deliver; env.recipients.len()]);
        }
        let facts = MessageFacts::parse(data);
        let env_sender = env
            .sender
            .as_ref()
            .map(|s| s.lookup_key())
            .unwrap_or_default();
        let now = self.clock.now();

        // Decide for everyone first: a block-list rejection must leave no trace.
        let mut plans = Vec::with_capacity(settings.len());
        for s in &settings {
            plans.push(self.plan(s, &facts, &env_sender, now).await?);
        }
        let all_reject = plans
            .iter()
            .all(|p| matches!(p, Plan::Decided(d) if d.verdict == Verdict::Reject));
        if all_reject {
            for s in &settings {
                if let Some(Plan::Decided(d)) = plans.first() {
                    self.store
                        .log_activity(
                            s.id,
                            now,
                            "blocked",
                            facts.from.as_deref().unwrap_or(&env_sender),
                            &d.reason.detail(),
                        )
                        .await?;
                }
            }
            let reason = match plans.first() {
                Some(Plan::Decided(d)) => d.reason.detail(),
                _ => String::new(),
            };
            return Ok(vec![Outcome::Reject(reason); settings.len()]);
        }

        let mut outcomes = Vec::with_capacity(settings.len());
        for (i, (s, plan)) in settings.iter().zip(plans).enumerate() {
            let outcome = match plan {
                Plan::Reply(token) => Outcome::Dropped(
                    self.consume_reply(s, &facts, &env_sender, &token, now)
                        .await?,
                ),
                Plan::Decided(d) => {
                    self.apply(env, i, s, &facts, &env_sender, data, d, now)
                        .await?
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn plan(
        &self,
        s: &MailboxSettings,
        facts: &MessageFacts,
        env_sender: &str,
        now: Timestamp,
    ) -> Result<Plan, StoreError> {
        if !s.challenge_enabled {
            return Ok(Plan::Decided(policy::decide(&PolicyInput {
                facts,
                env_sender,
                challenge_enabled: false,
                ignore: &[],
                block: &[],
                allow: &[],
                own_addresses: &[],
                open_challenge: false,
                rate_limited: None,
            })));
        }
        // A reply to a challenge that was already answered is ordinary mail:
        // the lists decide (the verified sender is on the allow list now).
        if let Some(token) = reply_token(facts)
            && policy::is_human_reply(facts)
            && self.verify_token(&token).await.err() != Some(VerifyError::AlreadyUsed)
        {
            return Ok(Plan::Reply(token));
        }
        let lists = self.lists(s).await?;
        let own: Vec<String> = std::iter::once(s.address.clone())
            .chain(s.extra_addresses.iter().map(|a| a.to_lowercase()))
            .collect();
        let (ignore, block, allow) = (&lists.ignore, &lists.block, &lists.allow);
        let (mut open, mut rate_limited) = (false, None);
        if let Some(from) = facts.from.as_deref() {
            let mut conn = self.store.pool().acquire().await?;
            let c = held::challenge_state(
                &mut conn,
                s.id,
                from,
                now,
                now.plus_secs(-HOUR),
                now.plus_secs(-DAY),
            )
            .await?;
            open = c.open;
            let (per_mailbox, per_domain, global) = (c.per_mailbox, c.per_domain, c.global);
            rate_limited = if per_mailbox >= i64::from(self.config.max_per_mailbox_hour) {
                Some("per mailbox per hour")
            } else if per_domain >= i64::from(self.config.max_per_domain_day) {
                Some("per sender domain per day")
            } else if global >= i64::from(self.config.max_global_hour) {
                Some("server-wide per hour")
            } else {
                None
            };
        }
        Ok(Plan::Decided(policy::decide(&PolicyInput {
            facts,
            env_sender,
            challenge_enabled: true,
            ignore,
            block,
            allow,
            own_addresses: &own,
            open_challenge: open,
            rate_limited,
        })))
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        env: &Envelope,
        rcpt_index: usize,
        s: &MailboxSettings,
        facts: &MessageFacts,
        env_sender: &str,
        data: &[u8],
        d: Decision,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
        let sender = facts.from.clone().unwrap_or_else(|| env_sender.to_owned());
        match d.verdict {
            Verdict::Deliver => {
                if let Reason::Allowed(_) = d.reason
                    && s.whitelist_by_association
                {
                    self.allow_associates(s, facts, now).await?;
                }
                Ok(Outcome::Deliver)
            }
            Verdict::Discard => {
                self.store
                    .log_activity(s.id, now, "ignored", &sender, &d.reason.detail())
                    .await?;
                Ok(Outcome::Dropped(d.reason.detail()))
            }
            Verdict::Reject => {
                // Other recipients took the message: drop this copy quietly.
                self.store
                    .log_activity(s.id, now, "blocked", &sender, &d.reason.detail())
                    .await?;
                if s.notify_blocked && !sender.is_empty() && d.reason != Reason::NullSender {
                    self.queue_notice(s, TemplateName::Blacklist, &sender, facts, None, now)
                        .await?;
                }
                Ok(Outcome::Dropped(d.reason.detail()))
            }
            Verdict::Hold => {
                let detail = self
                    .hold(env, rcpt_index, s, facts, env_sender, &sender, data, d, now)
                    .await?;
                Ok(Outcome::Held(detail))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        env: &Envelope,
        rcpt_index: usize,
        s: &MailboxSettings,
        facts: &MessageFacts,
        env_sender: &str,
        sender: &str,
        data: &[u8],
        d: Decision,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        let r = &env.recipients[rcpt_index];
        // Everything that needs I/O is gathered first: the transaction below
        // awaits nothing but its own statements.
        let challenge = if d.challenge {
            let notice = self
                .notice(s, &r.original, TemplateName::Verify, sender, facts, 1, now)
                .await?;
            Some(ChallengeDraft {
                notice,
                keyring: self.keyring(),
                mailbox: s.address.clone(),
                expires: now.plus_secs(s.keep_days * DAY),
            })
        } else {
            None
        };
        let job = Arc::new(HoldJob {
            mailbox_id: s.id,
            queue_id: env.queue_id.clone(),
            rcpt_index: rcpt_index as i64,
            env_sender: env_sender.to_owned(),
            original_rcpt: r.original.clone(),
            sender: sender.to_owned(),
            sender_name: facts.from_name.clone().unwrap_or_default(),
            subject: facts.subject.clone(),
            message_id: facts.message_id.clone().unwrap_or_default(),
            date_header: facts.date.clone().unwrap_or_default(),
            arrived_at: env.arrived,
            reason: d.reason,
            challenge,
            data: data.to_vec(),
            now,
        });
        let reason = self
            .store
            .write(move |conn| {
                let job = job.clone();
                Box::pin(async move { job.run(conn).await })
            })
            .await?;
        if let Reason::ChallengeFailed(why) = &reason {
            tracing::warn!(queue_id = %env.queue_id, mailbox = %s.address, sender, error = %why, "challenge not sent");
        }
        Ok(reason.detail())
    }

    /// Gathers a notice mail from `from` (the address that was mailed, or
    /// the mailbox) to `to`: the template text, its variables, the headers.
    #[allow(clippy::too_many_arguments)]
    async fn notice(
        &self,
        s: &MailboxSettings,
        from: &str,
        name: TemplateName,
        to: &str,
        facts: &MessageFacts,
        held_count: i64,
        now: Timestamp,
    ) -> Result<Notice, StoreError> {
        let template = match self.store.template_override(s.id, name.as_str()).await? {
            Some(t) => t,
            None => templates::default_text(name).to_owned(),
        };
        Ok(Notice {
            name,
            template,
            vars: TemplateVars {
                sender: to.to_owned(),
                sender_name: facts.from_name.clone().unwrap_or_default(),
                subject: facts.subject.clone(),
                date: facts.date.clone().unwrap_or_default(),
                mailbox: s.address.clone(),
                mailbox_name: s.display_name.clone(),
                token: String::new(),
                link: String::new(),
                held_count,
                keep_days: s.keep_days,
            },
            from_address: from.to_owned(),
            from_name: s.display_name.clone(),
            to: to.to_owned(),
            in_reply_to: facts.message_id.clone(),
            marker: s.address.clone(),
            hostname: self.hostname.clone(),
            base_url: self.base_url.clone(),
            date: now,
        })
    }

    /// Queues a notice (no token) from the mailbox to `to`. A notice that
    /// cannot be built is logged and skipped: it never fails the message
    /// that caused it.
    async fn queue_notice(
        &self,
        s: &MailboxSettings,
        name: TemplateName,
        to: &str,
        facts: &MessageFacts,
        held_count: Option<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let notice = self
            .notice(s, &s.address, name, to, facts, held_count.unwrap_or(0), now)
            .await?;
        let mail = match notice.build(None) {
            Ok(b) => b.data,
            Err(e) => {
                tracing::warn!(mailbox = %s.address, to, error = %e, "notice not sent");
                self.store
                    .log_activity(s.id, now, "notice-failed", to, &e.to_string())
                    .await?;
                return Ok(());
            }
        };
        let mut conn = self.store.writer().acquire().await?;
        held::insert_outbound(
            &mut conn,
            &NewOutbound {
                kind: name.as_str(),
                mailbox_id: Some(s.id),
                challenge_id: None,
                env_from: "",
                rcpt: to,
                data: &mail,
                now,
            },
        )
        .await?;
        Ok(())
    }

    /// Mail from an allowed sender vouches for the other people it was sent to.
    async fn allow_associates(
        &self,
        s: &MailboxSettings,
        facts: &MessageFacts,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let own = |a: &str| a == s.address || s.extra_addresses.iter().any(|x| x == a);
        for a in facts.to.iter().chain(&facts.cc) {
            if own(a) || facts.from.as_deref() == Some(a.as_str()) {
                continue;
            }
            let rule = SenderRule::exact_sender(a);
            if self
                .store
                .add_rule(s.id, ListKind::Allow, &rule, now)
                .await?
            {
                self.store
                    .log_activity(s.id, now, "allowed", a, "whitelisted by association")
                    .await?;
            }
        }
        Ok(())
    }

    /// Checks a token: well-formed, signed by one of our keys for the
    /// challenge it names, not expired, not used.
    pub async fn verify_token(&self, token: &str) -> Result<Verified, VerifyError> {
        let now = self.clock.now();
        let parts = token::decode(token).map_err(|_| VerifyError::Malformed)?;
        let c = match self.store.challenge(parts.challenge_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(VerifyError::Unknown),
            Err(e) => {
                tracing::error!(error = %e, "challenge lookup failed");
                return Err(VerifyError::Unknown);
            }
        };
        let mut result = token::verify(&self.keyring(), &parts, &c.mailbox, &c.sender, now);
        if let Err(TokenError::UnknownKey(_)) = result
            && self.reload_keys().await.is_ok()
        {
            result = token::verify(&self.keyring(), &parts, &c.mailbox, &c.sender, now);
        }
        match result {
            Ok(()) => {}
            Err(TokenError::Expired) => return Err(VerifyError::Expired),
            Err(TokenError::BadSignature) | Err(TokenError::UnknownKey(_)) => {
                return Err(VerifyError::BadSignature);
            }
            Err(_) => return Err(VerifyError::Malformed),
        }
        match c.state.as_str() {
            "open" => {}
            "expired" => return Err(VerifyError::Expired),
            _ => return Err(VerifyError::AlreadyUsed),
        }
        Ok(Verified {
            challenge_id: c.id,
            mailbox_id: c.mailbox_id,
            mailbox: c.mailbox,
            sender: c.sender,
        })
    }

    /// A reply to a challenge: releases when its token is good and it comes
    /// from the challenged address; otherwise `returnverify` (once a day).
    async fn consume_reply(
        &self,
        s: &MailboxSettings,
        facts: &MessageFacts,
        env_sender: &str,
        token: &str,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        let from = facts.from.as_deref().unwrap_or(env_sender).to_owned();
        match self.verify_token(token).await {
            // Another of our mailboxes' challenge (the reply went to an alias
            // that reaches both): that mailbox handles it.
            Ok(v) if v.mailbox_id != s.id => Ok("reply to another mailbox's challenge".to_owned()),
            Ok(v) if v.sender == from || v.sender == env_sender => {
                self.store
                    .log_activity(
                        s.id,
                        now,
                        "verified",
                        &v.sender,
                        "the sender replied to the challenge",
                    )
                    .await?;
                let n = self.release_sender(s.id, &v.sender, "reply").await?;
                Ok(format!(
                    "reply to a challenge: {n} held message(s) released"
                ))
            }
            other => {
                let why = match other {
                    Ok(_) => "the reply came from another address or mailbox".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.store
                    .log_activity(s.id, now, "reply-refused", &from, &why)
                    .await?;
                let since = now.plus_secs(-DAY);
                if !from.is_empty()
                    && !env_sender.is_empty()
                    && !self
                        .store
                        .outbound_sent_since("returnverify", &from, since)
                        .await?
                {
                    self.queue_notice(s, TemplateName::ReturnVerify, &from, facts, None, now)
                        .await?;
                }
                Ok(format!("reply to a challenge refused: {why}"))
            }
        }
    }

    /// Releases everything held from `sender` for the mailbox and allows
    /// the sender. Safe to call twice at once: each message is claimed by
    /// one caller. Returns how many messages this call delivered.
    pub async fn release_sender(
        &self,
        mailbox_id: i64,
        sender: &str,
        how: &str,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let owned_sender = sender.to_owned();
        let ids = self
            .store
            .write(move |conn| {
                let sender = owned_sender.clone();
                Box::pin(
                    async move { held::claim_for_release(conn, mailbox_id, &sender, now).await },
                )
            })
            .await?;
        let rule = SenderRule::exact_sender(sender);
        if self
            .store
            .add_rule(mailbox_id, ListKind::Allow, &rule, now)
            .await?
        {
            self.store
                .log_activity(
                    mailbox_id,
                    now,
                    "allowed",
                    sender,
                    &format!("added to the allow list ({how})"),
                )
                .await?;
        }
        let mut delivered = 0;
        for id in &ids {
            if self.deliver_held(*id, how).await? {
                delivered += 1;
            }
        }
        let s = self.store.mailbox_settings(mailbox_id).await?;
        if delivered > 0 && s.notify_released && how != "owner" {
            let facts = MessageFacts::default();
            self.queue_notice(
                &s,
                TemplateName::VerifyReleased,
                sender,
                &facts,
                Some(delivered as i64),
                now,
            )
            .await?;
        }
        Ok(delivered)
    }

    /// Releases one held message (the owner's choice), without allowing its sender.
    pub async fn release_one(&self, id: i64) -> Result<bool, StoreError> {
        if !self.store.claim_held(id, self.clock.now()).await? {
            return Ok(false);
        }
        self.deliver_held(id, "owner").await
    }

    /// Delivers a claimed held message into its Maildir exactly once, then forgets it.
    async fn deliver_held(&self, id: i64, how: &str) -> Result<bool, StoreError> {
        let Some(h) = self.store.held(id).await? else {
            return Ok(false);
        };
        let Some(data) = self.store.held_data(id).await? else {
            return Ok(false);
        };
        let result = self
            .delivery
            .deliver_once(LocalCopy {
                sender: h.env_sender.clone(),
                mailbox: h.mailbox.clone(),
                unique: unique_name(&h.queue_id, h.rcpt_index as usize),
                arrival_secs: h.arrived_at.secs(),
                data: Arc::new(data),
            })
            .await;
        let rcpt = Rcpt::new(&h.mailbox, &h.original_rcpt);
        if let Err(e) = result {
            // Stays claimed; the sweeper tries again.
            tracing::warn!(held = id, error = %e, "release delivery failed");
            self.log.deferred(&h.queue_id, rcpt, Via::RELEASE, &e);
            return Ok(false);
        }
        self.store.remove_held(id).await?;
        let now = self.clock.now();
        self.store
            .log_activity(
                h.mailbox_id,
                now,
                "released",
                &h.sender,
                &format!("{} ({how})", h.subject),
            )
            .await?;
        self.log
            .delivered(&h.queue_id, rcpt, Via::RELEASE, Some(how));
        Ok(true)
    }

    /// Deletes one held message (owner's choice).
    pub async fn delete_one(&self, id: i64) -> Result<bool, StoreError> {
        let Some(h) = self.store.held(id).await? else {
            return Ok(false);
        };
        if !self
            .store
            .delete_held_unclaimed(id, h.mailbox_id, &h.sender)
            .await?
        {
            return Ok(false);
        }
        let now = self.clock.now();
        self.store
            .log_activity(h.mailbox_id, now, "deleted", &h.sender, &h.subject)
            .await?;
        self.log.failed(
            &h.queue_id,
            Rcpt::new(&h.mailbox, &h.original_rcpt),
            Via::QUARANTINE,
            &"deleted by the owner",
        );
        Ok(true)
    }

    /// One pass of the sweeper. Returns (expired messages, expired challenges, finished releases).
    pub async fn sweep_once(&self) -> Result<(usize, usize, usize), StoreError> {
        let now = self.clock.now();
        // Picks up `boxtrap key rotate` (or another node's new key) for signing.
        self.reload_keys().await?;
        let expired = self.store.expired_held(now).await?;
        for h in &expired {
            if self.store.remove_held(h.id).await? {
                self.store
                    .log_activity(h.mailbox_id, now, "expired", &h.sender, &h.subject)
                    .await?;
                self.log.failed(
                    &h.queue_id,
                    Rcpt::new(&h.mailbox, &h.original_rcpt),
                    Via::QUARANTINE,
                    &"expired after the mailbox's keep-days",
                );
            }
        }
        let challenges = self.store.expire_challenges(now).await?;
        for c in &challenges {
            self.store
                .log_activity(
                    c.mailbox_id,
                    now,
                    "challenge-expired",
                    &c.sender,
                    "no answer in time",
                )
                .await?;
        }
        let stale = self.store.stale_releases(now.plus_secs(-300)).await?;
        let mut finished = 0;
        for id in stale {
            if self.deliver_held(id, "resumed").await? {
                finished += 1;
            }
        }
        Ok((expired.len(), challenges.len(), finished))
    }

    /// Runs the sweeper until shutdown.
    pub async fn run_sweeper(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = self.config.sweep_interval.0;
        loop {
            if let Err(e) = self.sweep_once().await {
                tracing::error!(error = %e, "quarantine sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }
}

enum Plan {
    Decided(Decision),
    Reply(String),
}

/// A challenge to open with a held message: its mail is built inside the
/// transaction, once the challenge row has an id for the token to sign.
struct ChallengeDraft {
    notice: Notice,
    keyring: Keyring,
    mailbox: String,
    expires: Timestamp,
}

/// One recipient's copy to hold, with everything the transaction needs
/// owned, so it can run on the database writer (and again, on PostgreSQL,
/// after a serialization failure).
struct HoldJob {
    mailbox_id: i64,
    queue_id: String,
    rcpt_index: i64,
    env_sender: String,
    original_rcpt: String,
    sender: String,
    sender_name: String,
    subject: String,
    message_id: String,
    date_header: String,
    arrived_at: Timestamp,
    reason: Reason,
    challenge: Option<ChallengeDraft>,
    data: Vec<u8>,
    now: Timestamp,
}

impl HoldJob {
    /// Holds the message; opens the challenge and queues its mail when one
    /// is due and can be built. Returns the reason stored.
    async fn run(&self, conn: &mut AnyConnection) -> Result<Reason, StoreError> {
        let (mailbox_id, sender, now) = (self.mailbox_id, self.sender.as_str(), self.now);
        let mut reason = self.reason.clone();
        let mut challenge_id = None;
        let mut challenged = false;
        if let Some(c) = &self.challenge {
            match held::insert_challenge(conn, mailbox_id, sender, now, c.expires).await? {
                Some(id) => {
                    let token = token::issue(
                        &c.keyring,
                        &Claims {
                            mailbox: &c.mailbox,
                            sender,
                            challenge_id: id,
                            expires: c.expires,
                        },
                    );
                    match c.notice.build(Some(&token)) {
                        Ok(mail) => {
                            held::insert_outbound(
                                conn,
                                &NewOutbound {
                                    kind: "verify",
                                    mailbox_id: Some(mailbox_id),
                                    challenge_id: Some(id),
                                    env_from: "",
                                    rcpt: sender,
                                    data: &mail.data,
                                    now,
                                },
                            )
                            .await?;
                            challenge_id = Some(id);
                            challenged = true;
                        }
                        // Containment: the copy is held all the same.
                        Err(e) => {
                            held::remove_challenge(conn, id).await?;
                            reason = Reason::ChallengeFailed(e.to_string());
                        }
                    }
                }
                // Another message from this sender opened one a moment ago.
                None => reason = Reason::ChallengeOpen,
            }
        }
        if challenge_id.is_none() {
            challenge_id = held::open_challenge(conn, mailbox_id, sender, now).await?;
        }
        held::insert_held(
            conn,
            &NewHeld {
                mailbox_id,
                queue_id: &self.queue_id,
                rcpt_index: self.rcpt_index,
                env_sender: &self.env_sender,
                original_rcpt: &self.original_rcpt,
                sender,
                sender_name: &self.sender_name,
                subject: &self.subject,
                message_id: &self.message_id,
                date_header: &self.date_header,
                arrived_at: self.arrived_at,
                reason: reason.code(),
                reason_detail: &reason.detail(),
                challenge_id,
                data: &self.data,
            },
        )
        .await?;
        held::add_activity(conn, mailbox_id, now, "held", sender, &reason.detail()).await?;
        if challenged {
            held::add_activity(
                conn,
                mailbox_id,
                now,
                "challenged",
                sender,
                "challenge mail queued",
            )
            .await?;
        }
        Ok(reason)
    }
}
