//! Policy: what happens to a message for a mailbox with challenge-response
//! on. Inputs are facts about the message ([`facts`]), the mailbox's sender
//! lists ([`rules`]) and its settings; the output is a verdict with a reason.

pub mod facts;
pub mod rules;

use facts::{Automated, MessageFacts, is_role_sender};
use rules::SenderRule;

/// What happens to the message for this mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Into the Maildir.
    Deliver,
    /// Into the quarantine (with or without a challenge; see [`Decision::challenge`]).
    Hold,
    /// Dropped without a word (ignore list); logged.
    Discard,
    /// Refused in the SMTP session when every recipient agrees (block list).
    Reject,
}

/// Why; stored with a held message and shown to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The mailbox has challenge-response off.
    ChallengeOff,
    Allowed(String),
    Blocked(String),
    Ignored(String),
    /// Unknown sender; a challenge is sent.
    Challenged,
    /// Unknown sender with a challenge already open: joins the held set.
    ChallengeOpen,
    /// No From: address to challenge.
    NoSender,
    /// Null envelope sender `<>`: bounces and notifications are never challenged.
    NullSender,
    /// MAILER-DAEMON, postmaster, owner-*, *-request, *-bounces.
    RoleSender(String),
    /// RFC 3834 automated mail, a list, a report, or another C/R system.
    Automated(String),
    /// A challenge would exceed this rate limit; held silently.
    RateLimited(&'static str),
}

impl Reason {
    /// A short fixed code, stored in the database.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::ChallengeOff => "challenge-off",
            Reason::Allowed(_) => "allowed",
            Reason::Blocked(_) => "blocked",
            Reason::Ignored(_) => "ignored",
            Reason::Challenged => "unknown-sender",
            Reason::ChallengeOpen => "challenge-open",
            Reason::NoSender => "no-sender",
            Reason::NullSender => "null-sender",
            Reason::RoleSender(_) => "role-sender",
            Reason::Automated(_) => "automated",
            Reason::RateLimited(_) => "rate-limited",
        }
    }

    /// The sentence shown to the owner ("why was this held?").
    pub fn detail(&self) -> String {
        match self {
            Reason::ChallengeOff => "challenge-response is off for this mailbox".into(),
            Reason::Allowed(rule) => format!("sender is on the allow list ({rule})"),
            Reason::Blocked(rule) => format!("sender is on the block list ({rule})"),
            Reason::Ignored(rule) => format!("sender is on the ignore list ({rule})"),
            Reason::Challenged => "unknown sender; a challenge was sent".into(),
            Reason::ChallengeOpen => {
                "unknown sender; a challenge is already waiting for an answer".into()
            }
            Reason::NoSender => {
                "no From: address to send a challenge to; held without a challenge".into()
            }
            Reason::NullSender => {
                "null envelope sender (a bounce or notice); held without a challenge".into()
            }
            Reason::RoleSender(a) => {
                format!("sent by {a}, an automated address; held without a challenge")
            }
            Reason::Automated(why) => format!("automated mail ({why}); held without a challenge"),
            Reason::RateLimited(which) => {
                format!("challenge rate limit reached ({which}); held without a challenge")
            }
        }
    }
}

/// A verdict with its reason, and whether a new challenge is to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    pub challenge: bool,
}

/// Everything [`decide`] looks at. The caller gathers it; `decide` does no I/O.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub facts: &'a MessageFacts,
    /// Envelope sender; empty for `<>`.
    pub env_sender: &'a str,
    pub challenge_enabled: bool,
    pub ignore: &'a [SenderRule],
    pub block: &'a [SenderRule],
    pub allow: &'a [SenderRule],
    /// A challenge to this sender for this mailbox is open.
    pub open_challenge: bool,
    /// The rate limit a new challenge would exceed, if any.
    pub rate_limited: Option<&'static str>,
}

fn first_match(rules: &[SenderRule], facts: &MessageFacts, env_sender: &str) -> Option<String> {
    rules
        .iter()
        .find(|r| r.matches(facts, env_sender))
        .map(|r| r.to_line())
}

/// The policy, in its documented order: ignore, then block, then allow;
/// everything else is held, and challenged only when it is safe to.
pub fn decide(input: &PolicyInput<'_>) -> Decision {
    let d = |verdict, reason, challenge| Decision {
        verdict,
        reason,
        challenge,
    };
    let facts = input.facts;
    if !input.challenge_enabled {
        return d(Verdict::Deliver, Reason::ChallengeOff, false);
    }
    if let Some(rule) = first_match(input.ignore, facts, input.env_sender) {
        return d(Verdict::Discard, Reason::Ignored(rule), false);
    }
    if let Some(rule) = first_match(input.block, facts, input.env_sender) {
        return d(Verdict::Reject, Reason::Blocked(rule), false);
    }
    if let Some(rule) = first_match(input.allow, facts, input.env_sender) {
        return d(Verdict::Deliver, Reason::Allowed(rule), false);
    }
    let hold = |reason| d(Verdict::Hold, reason, false);
    if input.env_sender.is_empty() {
        return hold(Reason::NullSender);
    }
    let Some(from) = facts.from.as_deref() else {
        return hold(Reason::NoSender);
    };
    for a in [input.env_sender, from] {
        if is_role_sender(a) {
            return hold(Reason::RoleSender(a.to_owned()));
        }
    }
    if let Some(a) = &facts.automated {
        return hold(Reason::Automated(a.to_string()));
    }
    if input.open_challenge {
        return hold(Reason::ChallengeOpen);
    }
    if let Some(which) = input.rate_limited {
        return hold(Reason::RateLimited(which));
    }
    d(Verdict::Hold, Reason::Challenged, true)
}

/// Whether `facts` is a reply that may release: it carries a token and is
/// not itself automated mail (another system's challenge or auto-reply
/// carries tokens too, and must never be answered).
pub fn is_human_reply(facts: &MessageFacts) -> bool {
    match &facts.automated {
        None => true,
        // The subject rule alone flags our own `verify#` subjects, which a
        // person's reply keeps.
        Some(Automated::ChallengeResponse(why)) => why.to_ascii_lowercase().contains("subject"),
        Some(_) => false,
    }
}
