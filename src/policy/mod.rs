//! Policy: what happens to a message for a mailbox with challenge-response
//! on. Inputs are facts about the message ([`facts`]), the mailbox's sender
//! lists ([`rules`]) and its settings; the output is a verdict with a reason.

pub mod address_list;
pub mod automated;
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
    /// `From:` holds something that is no usable address (as written, and
    /// what is wrong with it).
    UnusableFrom(String),
    /// Null envelope sender `<>`: bounces and notifications are never challenged.
    NullSender,
    /// MAILER-DAEMON, postmaster, owner-*, *-request, *-bounces.
    RoleSender(String),
    /// From: one of the mailbox's own addresses (forged, or the owner
    /// writing to themself): a challenge would go to the owner.
    OwnAddress(String),
    /// RFC 3834 automated mail, a list, a report, or another C/R system.
    Automated(String),
    /// A challenge would exceed this rate limit; held silently.
    RateLimited(&'static str),
    /// A challenge was due but its mail could not be built (why); held
    /// without one.
    ChallengeFailed(String),
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
            Reason::UnusableFrom(_) => "unusable-from",
            Reason::NullSender => "null-sender",
            Reason::RoleSender(_) => "role-sender",
            Reason::OwnAddress(_) => "own-address",
            Reason::Automated(_) => "automated",
            Reason::RateLimited(_) => "rate-limited",
            Reason::ChallengeFailed(_) => "challenge-failed",
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
            Reason::UnusableFrom(why) => {
                format!("the From: address {why}; held without a challenge")
            }
            Reason::NullSender => {
                "null envelope sender (a bounce or notice); held without a challenge".into()
            }
            Reason::RoleSender(a) => {
                format!("sent by {a}, an automated address; held without a challenge")
            }
            Reason::OwnAddress(a) => format!(
                "claims to be from {a}, this mailbox's own address; held without a challenge"
            ),
            Reason::Automated(why) => format!("automated mail ({why}); held without a challenge"),
            Reason::RateLimited(which) => {
                format!("challenge rate limit reached ({which}); held without a challenge")
            }
            Reason::ChallengeFailed(why) => {
                format!("the challenge could not be built ({why}); held without a challenge")
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
    /// The mailbox's address and its extra addresses, lower case.
    pub own_addresses: &'a [String],
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
        return hold(match &facts.from_problem {
            Some(why) => Reason::UnusableFrom(why.clone()),
            None => Reason::NoSender,
        });
    };
    for a in [input.env_sender, from] {
        if is_role_sender(a) {
            return hold(Reason::RoleSender(a.to_owned()));
        }
    }
    if input.own_addresses.iter().any(|a| a == from) {
        return hold(Reason::OwnAddress(from.to_owned()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(from: Option<&str>, extra_headers: &str) -> MessageFacts {
        let from = from.map(|f| format!("From: {f}\r\n")).unwrap_or_default();
        MessageFacts::parse(
            format!(
                // The first Subject: counts, so `extra_headers` can replace it.
                "{from}To: alice@example.test\r\n{extra_headers}Subject: Hello\r\n\r\nbody\r\n"
            )
            .as_bytes(),
        )
    }

    fn rules(lines: &[&str]) -> Vec<SenderRule> {
        lines
            .iter()
            .map(|l| SenderRule::parse(l).unwrap())
            .collect()
    }

    #[test]
    fn decide_follows_the_documented_order() {
        let own = vec![
            "alice@example.test".to_owned(),
            "al@example.test".to_owned(),
        ];
        let ignore = rules(&["subject lottery", "from ^both@"]);
        let block = rules(&[r"from .*@spam\.example", "from ^both@"]);
        let allow = rules(&[r"from ^friend@example\.org$", r"from .*@spam\.example"]);
        struct Case {
            name: &'static str,
            enabled: bool,
            env: &'static str,
            from: Option<&'static str>,
            headers: &'static str,
            open: bool,
            limited: Option<&'static str>,
            want: (Verdict, &'static str, bool),
        }
        let c = |name, env, from, want| Case {
            name,
            enabled: true,
            env,
            from: Some(from),
            headers: "",
            open: false,
            limited: None,
            want,
        };
        let mut cases = vec![
            c(
                "unknown sender is challenged",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "unknown-sender", true),
            ),
            c(
                "allow list delivers",
                "friend@example.org",
                "friend@example.org",
                (Verdict::Deliver, "allowed", false),
            ),
            c(
                "block beats allow",
                "x@spam.example",
                "x@spam.example",
                (Verdict::Reject, "blocked", false),
            ),
            c(
                "ignore beats block",
                "both@example.org",
                "both@example.org",
                (Verdict::Discard, "ignored", false),
            ),
            c(
                "null sender is held silently",
                "",
                "bob@example.org",
                (Verdict::Hold, "null-sender", false),
            ),
            c(
                "mailer-daemon is held silently",
                "MAILER-DAEMON@example.org",
                "bob@example.org",
                (Verdict::Hold, "role-sender", false),
            ),
            c(
                "a From: role address is held silently",
                "bob@example.org",
                "postmaster@example.org",
                (Verdict::Hold, "role-sender", false),
            ),
            c(
                "own address is held silently",
                "al@example.test",
                "al@example.test",
                (Verdict::Hold, "own-address", false),
            ),
        ];
        cases.push(Case {
            name: "challenge-response off delivers",
            enabled: false,
            ..c(
                "",
                "x@spam.example",
                "x@spam.example",
                (Verdict::Deliver, "challenge-off", false),
            )
        });
        cases.push(Case {
            name: "no From: is held silently",
            from: None,
            ..c(
                "",
                "bob@example.org",
                "",
                (Verdict::Hold, "no-sender", false),
            )
        });
        cases.push(Case {
            name: "automated mail is held silently",
            headers: "Auto-Submitted: auto-replied\r\n",
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "automated", false),
            )
        });
        cases.push(Case {
            name: "allow beats automated",
            headers: "Precedence: bulk\r\n",
            ..c(
                "",
                "friend@example.org",
                "friend@example.org",
                (Verdict::Deliver, "allowed", false),
            )
        });
        cases.push(Case {
            name: "an open challenge is joined",
            open: true,
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "challenge-open", false),
            )
        });
        cases.push(Case {
            name: "a rate limit holds silently",
            limited: Some("per mailbox per hour"),
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "rate-limited", false),
            )
        });
        cases.push(Case {
            name: "ignore by subject",
            headers: "Subject: You won the LOTTERY\r\n",
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Discard, "ignored", false),
            )
        });
        for case in cases {
            let f = facts(case.from, case.headers);
            let d = decide(&PolicyInput {
                facts: &f,
                env_sender: case.env,
                challenge_enabled: case.enabled,
                ignore: &ignore,
                block: &block,
                allow: &allow,
                own_addresses: &own,
                open_challenge: case.open,
                rate_limited: case.limited,
            });
            assert_eq!(
                (d.verdict, d.reason.code(), d.challenge),
                case.want,
                "{}: {:?}",
                case.name,
                d.reason
            );
            assert!(!d.reason.detail().is_empty());
        }
    }

    #[test]
    fn human_replies_are_told_from_automated_ones() {
        assert!(is_human_reply(&facts(Some("bob@example.org"), "")));
        let reply = MessageFacts::parse(b"From: bob@example.org\r\nSubject: Re: hi [verify#AAAAAAAAAAAAAAAAAAAAAAAA]\r\n\r\nx\r\n");
        assert!(is_human_reply(&reply), "{:?}", reply.automated);
        assert!(!is_human_reply(&facts(
            Some("bob@example.org"),
            "Auto-Submitted: auto-replied\r\n"
        )));
        assert!(!is_human_reply(&facts(
            Some("bob@example.org"),
            "X-Boxtrap-Challenge: x@example.org\r\n"
        )));
    }
}
