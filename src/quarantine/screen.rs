//! Screening after DATA, before the reply: for each recipient with
//! challenge-response on, a reply to a challenge releases; otherwise
//! [`policy::decide`] says deliver, hold (and maybe challenge), discard or
//! reject. Holding a message, opening its challenge and queueing the
//! challenge mail commit together, in one unit of work on the database
//! writer that awaits nothing else.

use super::release::ReleasedBy;
use super::{DAY, Quarantine, QuarantineError};
use crate::address::EmailAddress;
use crate::challenge::issue::{ChallengeDraft, Verified, VerifyError};
use crate::challenge::templates::TemplateName;
use crate::clock::Timestamp;
use crate::delivery::router::Route;
use crate::envelope::Envelope;
use crate::policy::facts::{MessageFacts, reply_tokens};
use crate::policy::rules::{ListKind, SenderRule};
use crate::policy::{self, Decision, PolicyInput, Reason, SenderAuth, SpamBands, Verdict};
use crate::store::StoreError;
use crate::store::activity::{NewEvent, add_event};
use crate::store::held::{self, ActivityAction, NewHeld, NewOutbound, SendCaps};
use crate::store::lists::RuleSource;
use crate::store::settings::MailboxSettings;
use sqlx::AnyConnection;
use std::sync::Arc;

/// What became of one recipient of a message: the [`Verdict`] carried
/// out, with the words of the verdict and why, for the main log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deliver normally (challenge-response off, or allowed).
    Deliver,
    /// Stored in the quarantine.
    Hold(String),
    /// Dropped on purpose: the ignore list, a consumed challenge reply, or a
    /// block-list hit when other recipients took the message.
    Discard(String),
    /// Refuse in the session: every recipient's block list matched.
    Reject(String),
}

/// What the checks at the end of DATA found about a message (SPF, DKIM,
/// DMARC, the spam score), for the policy and for each held copy.
#[derive(Debug, Clone)]
pub struct Checks {
    /// Whether the `From:` address is authenticated.
    pub auth: SenderAuth,
    /// The RFC 8601 `Authentication-Results:` value written on the message.
    pub auth_results: String,
    /// SpamAssassin points (GTUBE and DNS blocklist scores added); `None`
    /// when the message was not scored.
    pub spam_score: Option<f64>,
    /// The score's parts, or why there is none, in words.
    pub spam_report: String,
}

impl Checks {
    /// Whether the `From:` address is authenticated (DKIM or SPF passed
    /// for a domain aligned with it): what whitelist by association needs.
    pub fn sender_authenticated(&self) -> bool {
        matches!(self.auth, SenderAuth::Authenticated(_))
    }
}

/// One message being screened: what every recipient's decision reads.
struct Screening<'a> {
    env: &'a Envelope,
    checks: &'a Checks,
    /// The message as received, with our `Received:` header; shared, not
    /// copied, by every held copy.
    data: &'a Arc<Vec<u8>>,
    facts: MessageFacts,
    /// The envelope sender as a lookup key; empty for `<>`.
    env_sender: String,
    now: Timestamp,
    /// How many attachments the message has, counted once when the first
    /// copy is held (the owner's list marks them; `has:attachment` finds them).
    attachments: std::sync::OnceLock<i64>,
}

impl Screening<'_> {
    fn attachments(&self) -> i64 {
        *self.attachments.get_or_init(|| {
            mail_parser::MessageParser::default()
                .parse(self.data.as_slice())
                .map_or(0, |m| m.attachments().count() as i64)
        })
    }
}

impl Quarantine {
    /// Screens a message for every recipient with challenge-response on.
    /// Returns one outcome per recipient of `env`. Nothing is written when
    /// every recipient rejects.
    pub async fn screen(
        &self,
        env: &Envelope,
        data: &Arc<Vec<u8>>,
        checks: &Checks,
    ) -> Result<Vec<Outcome>, QuarantineError> {
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
        let m = Screening {
            env,
            checks,
            data,
            facts: MessageFacts::parse(data),
            env_sender: env
                .sender
                .as_ref()
                .map(|s| s.lookup_key())
                .unwrap_or_default(),
            now: self.clock.now(),
            attachments: std::sync::OnceLock::new(),
        };
        let (facts, env_sender, now) = (&m.facts, m.env_sender.as_str(), m.now);

        // Decide for everyone first: a block-list rejection must leave no trace.
        let mut plans = Vec::with_capacity(settings.len());
        for s in &settings {
            plans.push(self.plan(&m, s).await?);
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
                            ActivityAction::Blocked,
                            facts.from.as_deref().unwrap_or(env_sender),
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
        // One message causes at most one challenge per sender, whatever its
        // fan-out: the first mailbox's challenge covers the other copies.
        let mut challenged: Option<SharedChallenge> = None;
        for (i, (s, plan)) in settings.iter().zip(plans).enumerate() {
            let outcome = match plan {
                Plan::Reply(v) => Outcome::Discard(self.consume_reply(&m, s, v).await?),
                Plan::Decided(d) => self.apply(&m, i, s, d, &mut challenged).await?,
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn plan(&self, m: &Screening<'_>, s: &MailboxSettings) -> Result<Plan, QuarantineError> {
        let (facts, env_sender, now) = (&m.facts, m.env_sender.as_str(), m.now);
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
                auth: &m.checks.auth,
                challenge_unauthenticated: false,
                spam_score: m.checks.spam_score,
                bands: SpamBands::default(),
            })));
        }
        // Only a token that verifies, issued by this mailbox to the sender
        // of this message, makes it a reply that releases. Any other token
        // (made up, tampered with, expired, already answered, another
        // mailbox's or another sender's) is evidence of nothing: the
        // message is screened like any other.
        if policy::is_human_reply_from(facts, env_sender) {
            for reply in reply_tokens(facts) {
                if let Ok(v) = self.challenges.verify(&reply.token).await
                    && v.mailbox_id == s.id
                    && (Some(v.sender.as_str()) == facts.from.as_deref() || v.sender == env_sender)
                {
                    return Ok(Plan::Reply(v));
                }
            }
        }
        let lists = self.lists(s).await?;
        let own: Vec<String> = std::iter::once(s.address.clone())
            .chain(s.extra_addresses.iter().map(|a| a.to_lowercase()))
            .collect();
        let input = PolicyInput {
            facts,
            env_sender,
            challenge_enabled: true,
            ignore: &lists.ignore,
            block: &lists.block,
            allow: &lists.allow,
            own_addresses: &own,
            open_challenge: false,
            rate_limited: None,
            auth: &m.checks.auth,
            challenge_unauthenticated: self.challenge_unauthenticated(&s.address),
            spam_score: m.checks.spam_score,
            bands: SpamBands {
                bypass_below: s.spam_bypass_below.map(|t| t as f64 / 10.0),
                no_challenge_at: s.spam_no_challenge_at.map(|t| t as f64 / 10.0),
            },
        };
        // An open challenge comes last in the policy's order: it is read only
        // when a challenge would otherwise go out. The caps are counted when
        // the challenge is recorded, in the same transaction (HoldJob).
        let d = policy::decide(&input);
        if !d.challenge {
            return Ok(Plan::Decided(d));
        }
        let Some(from) = facts.from.as_deref() else {
            return Ok(Plan::Decided(d));
        };
        let mut conn = self.store.pool().acquire().await?;
        let open = held::open_challenge(&mut conn, s.id, from, now).await?;
        drop(conn);
        let input = PolicyInput {
            open_challenge: open,
            ..input
        };
        let d = policy::decide(&input);
        // The mailbox's own addresses include every address that reaches
        // it: a `+subaddress`, an alias. A challenge there would go to the
        // owner. Asked last: only a challenge about to go out pays for it.
        if d.challenge && self.reaches(from, s.id).await? {
            let own = [own.as_slice(), &[from.to_owned()]].concat();
            return Ok(Plan::Decided(policy::decide(&PolicyInput {
                own_addresses: &own,
                ..input
            })));
        }
        Ok(Plan::Decided(d))
    }

    /// Whether a notice (`returnverify`, `blacklist`) may go to the
    /// message's sender, by the rule that decides a challenge: the `From:`
    /// address is authenticated, or the admin's relaxed mode applies to
    /// this mailbox and no check failed. A DNS failure proves nothing.
    fn may_mail_sender(&self, m: &Screening<'_>, s: &MailboxSettings) -> bool {
        match &m.checks.auth {
            SenderAuth::Authenticated(_) => true,
            SenderAuth::Unauthenticated { failed: None, .. } => {
                self.challenge_unauthenticated(&s.address)
            }
            SenderAuth::Unauthenticated { .. } | SenderAuth::Temporary(_) => false,
        }
    }

    /// Whether mail to `address` is delivered to mailbox `mailbox_id`.
    async fn reaches(&self, address: &str, mailbox_id: i64) -> Result<bool, StoreError> {
        let Ok(address) = EmailAddress::parse_relaxed(address, true) else {
            return Ok(false);
        };
        Ok(match self.router.route(&address).await? {
            Route::Local(targets) => targets.iter().any(|t| t.mailbox.id == mailbox_id),
            Route::UnknownUser | Route::NotLocal => false,
        })
    }

    async fn apply(
        &self,
        m: &Screening<'_>,
        rcpt_index: usize,
        s: &MailboxSettings,
        d: Decision,
        challenged: &mut Option<SharedChallenge>,
    ) -> Result<Outcome, QuarantineError> {
        let (facts, env_sender, now) = (&m.facts, m.env_sender.as_str(), m.now);
        let sender = facts.from.clone().unwrap_or_else(|| env_sender.to_owned());
        match d.verdict {
            Verdict::Deliver => {
                if let Reason::Allowed(_) = d.reason
                    && s.whitelist_by_association
                {
                    self.allow_associates(m, s).await?;
                }
                Ok(Outcome::Deliver)
            }
            Verdict::Discard => {
                self.store
                    .log_activity(
                        s.id,
                        now,
                        ActivityAction::Ignored,
                        &sender,
                        &d.reason.detail(),
                    )
                    .await?;
                Ok(Outcome::Discard(d.reason.detail()))
            }
            Verdict::Reject => {
                // Other recipients took the message: drop this copy quietly.
                self.store
                    .log_activity(
                        s.id,
                        now,
                        ActivityAction::Blocked,
                        &sender,
                        &d.reason.detail(),
                    )
                    .await?;
                if s.notify_blocked
                    && !sender.is_empty()
                    && d.reason != Reason::NullSender
                    && self.may_mail_sender(m, s)
                {
                    let mailed = &m.env.recipients[rcpt_index].original;
                    self.challenges
                        .queue_notice(
                            s,
                            mailed,
                            TemplateName::Blacklist,
                            &sender,
                            facts,
                            None,
                            &self.caps,
                            now,
                        )
                        .await?;
                }
                Ok(Outcome::Discard(d.reason.detail()))
            }
            Verdict::Hold => {
                let detail = self.hold(m, rcpt_index, s, &sender, d, challenged).await?;
                self.answer_late_reply(m, s, &m.env.recipients[rcpt_index].original)
                    .await?;
                Ok(Outcome::Hold(detail))
            }
        }
    }

    async fn hold(
        &self,
        m: &Screening<'_>,
        rcpt_index: usize,
        s: &MailboxSettings,
        sender: &str,
        d: Decision,
        challenged: &mut Option<SharedChallenge>,
    ) -> Result<String, QuarantineError> {
        let (env, facts, now) = (m.env, &m.facts, m.now);
        let r = &env.recipients[rcpt_index];
        // Another recipient's challenge for this message already went to
        // this sender: it covers this copy too.
        let shared = challenged
            .as_ref()
            .filter(|c| d.challenge && c.sender == sender);
        let (reason, shared_challenge) = match shared {
            Some(c) => (Reason::ChallengeShared(c.sent_as.clone()), Some(c.id)),
            None => (d.reason, None),
        };
        // Everything that needs I/O is gathered first: the transaction below
        // awaits nothing but its own statements.
        let challenge = if d.challenge && shared.is_none() {
            Some(
                self.challenges
                    .draft(s, &r.original, sender, facts, now)
                    .await?,
            )
        } else {
            None
        };
        let job = Arc::new(HoldJob {
            mailbox_id: s.id,
            queue_id: env.queue_id.clone(),
            rcpt_index: rcpt_index as i64,
            env_sender: m.env_sender.clone(),
            original_rcpt: r.original.clone(),
            sender: sender.to_owned(),
            sender_name: facts.from_name.clone().unwrap_or_default(),
            subject: facts.subject.clone(),
            message_id: facts.message_id.clone().unwrap_or_default(),
            date_header: facts.date.clone().unwrap_or_default(),
            arrived_at: env.arrived,
            reason,
            challenge,
            shared_challenge,
            caps: self.caps,
            data: m.data.clone(),
            auth_results: m.checks.auth_results.clone(),
            spam_score: m.checks.spam_score.map(|s| (s * 10.0).round() as i64),
            spam_report: m.checks.spam_report.clone(),
            attachments: m.attachments(),
            now,
        });
        let (reason, opened) = self
            .store
            .write(move |conn| {
                let job = job.clone();
                Box::pin(async move { job.run(conn).await })
            })
            .await?;
        if let Some(id) = opened {
            *challenged = Some(SharedChallenge {
                id,
                sender: sender.to_owned(),
                sent_as: r.original.clone(),
            });
        }
        if let Reason::ChallengeFailed(why) = &reason {
            tracing::warn!(queue_id = %env.queue_id, mailbox = %s.address, sender, error = %why, "challenge not sent");
        }
        Ok(reason.detail())
    }

    /// Whitelist by association: mail from an allowed sender vouches for
    /// the other people it was sent to (`To:`, `Cc:`), who are put on the
    /// allow list, each with an activity line naming the message.
    ///
    /// Only when the allowed sender is the `From:` address itself (a `from`
    /// rule of the allow list matches it, not just the envelope) and the
    /// message proves it came from there: the `From:` address is
    /// authenticated (DKIM or SPF passed for a domain aligned with it,
    /// [`Checks::sender_authenticated`]). At most
    /// `challenge.max_associates_per_message` are added per message, never
    /// past `challenge.max_rules_per_list`; the rest are left off, and the
    /// activity log says how many. An address that reaches this mailbox (an
    /// alias, a subaddress) or is allowed already is skipped.
    async fn allow_associates(
        &self,
        m: &Screening<'_>,
        s: &MailboxSettings,
    ) -> Result<(), QuarantineError> {
        use crate::store::lists::RuleAdded;
        let (facts, now) = (&m.facts, m.now);
        let Some(from) = facts.from.as_deref() else {
            return Ok(());
        };
        let lists = self.lists(s).await?;
        if lists.allow.first_from_match(from).is_none() || !m.checks.sender_authenticated() {
            tracing::debug!(
                queue_id = %m.env.queue_id, mailbox = %s.address, from,
                "whitelist by association: the From: address is not the allowed sender, \
                 or it is not authenticated; nobody added"
            );
            return Ok(());
        }
        let message = match &facts.message_id {
            Some(id) => format!("message {id} (queue id {})", m.env.queue_id),
            None => format!("the message with queue id {}", m.env.queue_id),
        };
        let cap = usize::try_from(self.config.max_associates_per_message).unwrap_or(usize::MAX);
        let limit = usize::try_from(self.config.max_rules_per_list).unwrap_or(usize::MAX);
        let own = |a: &str| a == s.address || s.extra_addresses.iter().any(|x| x == a);
        let source = RuleSource::Association(message.clone());
        let mut seen = std::collections::HashSet::new();
        let mut added = 0;
        let mut left_off = 0;
        let mut full = None;
        let to = facts.to.iter().map(|a| ("To", a));
        for (header, a) in to.chain(facts.cc.iter().map(|a| ("Cc", a))) {
            if own(a) || a == from || !seen.insert(a.as_str()) {
                continue;
            }
            if added >= cap || full.is_some() {
                left_off += 1;
                continue;
            }
            if lists.allow.first_from_match(a).is_some() || self.reaches(a, s.id).await? {
                continue;
            }
            let rule = SenderRule::exact_sender(a);
            match self
                .store
                .add_rule_within(s.id, ListKind::Allow, &rule, limit, &source, now)
                .await?
            {
                RuleAdded::Added => {
                    added += 1;
                    let why = format!(
                        "whitelisted by association: in the {header} of {message}, from {from}"
                    );
                    self.store
                        .log_activity(s.id, now, ActivityAction::Allowed, a, &why)
                        .await?;
                }
                RuleAdded::AlreadyThere => {}
                RuleAdded::ListFull { rules, limit } => {
                    left_off += 1;
                    full = Some((rules, limit));
                }
            }
        }
        if left_off > 0 {
            let why = match full {
                Some((rules, limit)) => format!(
                    "the allow list is full ({rules} rules, challenge.max_rules_per_list is {limit})"
                ),
                None => format!("at most {cap} per message (challenge.max_associates_per_message)"),
            };
            let detail = format!(
                "whitelist by association: {added} added, {left_off} more To/Cc address(es) of {message} left off: {why}"
            );
            tracing::warn!(queue_id = %m.env.queue_id, mailbox = %s.address, from, "{detail}");
            self.store
                .log_activity(s.id, now, ActivityAction::Allowed, from, &detail)
                .await?;
        }
        Ok(())
    }

    /// A reply to one of this mailbox's open challenges, from the sender it
    /// was sent to: the sender is allowed and their held mail released. The
    /// reply itself is not delivered.
    async fn consume_reply(
        &self,
        m: &Screening<'_>,
        s: &MailboxSettings,
        v: Verified,
    ) -> Result<String, QuarantineError> {
        self.store
            .log_activity(
                s.id,
                m.now,
                ActivityAction::Verified,
                &v.sender,
                "the sender replied to the challenge",
            )
            .await?;
        let n = self
            .release_sender(s.id, &v.sender, ReleasedBy::Reply)
            .await?;
        Ok(format!(
            "reply to a challenge: {n} held message(s) released"
        ))
    }

    /// A held message that answers, in its subject or `In-Reply-To`, a
    /// challenge this mailbox sent to its sender that has expired or been
    /// purged since: the sender is told (`returnverify`, at most once a day
    /// per sender) to send their mail again. A token this mailbox did not
    /// issue to this sender gets nothing: a sender who proved nothing is
    /// sent nothing.
    async fn answer_late_reply(
        &self,
        m: &Screening<'_>,
        s: &MailboxSettings,
        mailed: &str,
    ) -> Result<(), QuarantineError> {
        let (facts, env_sender, now) = (&m.facts, m.env_sender.as_str(), m.now);
        let Some(from) = facts.from.as_deref() else {
            return Ok(());
        };
        // A sender who proved nothing is sent nothing.
        if env_sender.is_empty()
            || !policy::is_human_reply_from(facts, env_sender)
            || !self.may_mail_sender(m, s)
        {
            return Ok(());
        }
        let Some(reply) = reply_tokens(facts)
            .into_iter()
            .filter(|r| r.direct)
            .find(|r| self.challenges.issued_to(&r.token, &s.address, from))
        else {
            return Ok(());
        };
        if let Err(e @ (VerifyError::Expired | VerifyError::Unknown)) =
            self.challenges.verify(&reply.token).await
        {
            let why = format!("{e}; the reply is held as new mail");
            self.store
                .log_activity(s.id, now, ActivityAction::ReplyRefused, from, &why)
                .await?;
            let since = now.plus_secs(-DAY);
            if !self
                .store
                .outbound_sent_since("returnverify", from, since)
                .await?
            {
                self.challenges
                    .queue_notice(
                        s,
                        mailed,
                        TemplateName::ReturnVerify,
                        from,
                        facts,
                        None,
                        &self.caps,
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

/// The challenge one recipient's copy of a message opened, which covers
/// the other recipients' copies from the same sender.
struct SharedChallenge {
    id: i64,
    sender: String,
    /// The address the challenge speaks as (the one that was mailed).
    sent_as: String,
}

enum Plan {
    Decided(Decision),
    /// A reply to one of this mailbox's open challenges.
    Reply(Verified),
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
    /// Another copy's challenge to the same sender, which this copy joins.
    shared_challenge: Option<i64>,
    caps: SendCaps,
    data: Arc<Vec<u8>>,
    auth_results: String,
    /// Tenths of a point.
    spam_score: Option<i64>,
    spam_report: String,
    attachments: i64,
    now: Timestamp,
}

impl HoldJob {
    /// Holds the message; opens the challenge and queues its mail when one
    /// is due, within the caps, and can be built. Returns the reason stored
    /// and the challenge opened, if one was.
    async fn run(&self, conn: &mut AnyConnection) -> Result<(Reason, Option<i64>), StoreError> {
        let (mailbox_id, sender, now) = (self.mailbox_id, self.sender.as_str(), self.now);
        let mut reason = self.reason.clone();
        let mut challenge_id = self.shared_challenge;
        let mut opened = None;
        if let Some(c) = &self.challenge {
            // Counted here, in the transaction that records the challenge,
            // so concurrent messages cannot all pass the same count.
            if let Some(cap) =
                held::send_cap_reached(conn, &self.caps, Some(mailbox_id), sender, now).await?
            {
                reason = Reason::RateLimited(cap);
            } else {
                match held::insert_challenge(
                    conn,
                    mailbox_id,
                    sender,
                    &self.original_rcpt,
                    now,
                    c.expires,
                )
                .await?
                {
                    Some(id) => match c.build(id, sender) {
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
                            opened = Some(id);
                        }
                        // Containment: the copy is held all the same.
                        Err(e) => {
                            held::remove_challenge(conn, id).await?;
                            reason = Reason::ChallengeFailed(e.to_string());
                        }
                    },
                    // Another message from this sender opened one a moment ago.
                    None => reason = Reason::ChallengeOpen,
                }
            }
        }
        let held_id = held::hold(
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
                auth_results: &self.auth_results,
                spam_score: self.spam_score,
                spam_report: &self.spam_report,
                attachments: Some(self.attachments),
            },
            now,
        )
        .await?;
        if opened.is_some() {
            let line = NewEvent {
                held_id: Some(held_id),
                ..NewEvent::new(
                    mailbox_id,
                    now,
                    ActivityAction::Challenged,
                    sender,
                    "challenge mail queued",
                )
            };
            add_event(conn, &line).await?;
        }
        Ok((reason, opened))
    }
}
