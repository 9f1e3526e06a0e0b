//! Policy: what happens to a message for a mailbox with challenge-response
//! on. Inputs are facts about the message ([`facts`]), the checks made at
//! the end of DATA (whether the sender is authenticated, [`SenderAuth`];
//! the spam score), the mailbox's sender lists ([`rules`]) and its
//! settings; the output is a verdict with a reason.

pub mod address_list;
pub mod automated;
pub mod facts;
pub mod rules;

use automated::role_sender;
use facts::{MessageFacts, is_role_sender};
use rules::{RuleMatch, SenderRule};

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
    /// Unknown sender, challenged for this same message by another
    /// recipient (the address it was sent as): one message causes one
    /// challenge per sender, whatever its fan-out.
    ChallengeShared(String),
    /// No From: address to challenge.
    NoSender,
    /// `From:` holds something that is no usable address (as written, and
    /// what is wrong with it).
    UnusableFrom(String),
    /// Null envelope sender `<>`: bounces and notifications are never challenged.
    NullSender,
    /// Envelope sender or `From:` is a robot's address (MAILER-DAEMON,
    /// postmaster, no-reply, list owner, request, bounce and VERP return
    /// addresses; see [`automated::role_sender`]). The address is kept.
    RoleSender(String),
    /// From: one of the mailbox's own addresses (forged, or the owner
    /// writing to themself): a challenge would go to the owner.
    OwnAddress(String),
    /// Automated mail ([`automated::Automated`], shown as its marker):
    /// RFC 3834, an auto-reply header, a list, a report, or another C/R
    /// system.
    Automated(String),
    /// A challenge would exceed this rate limit; held silently.
    RateLimited(&'static str),
    /// The spam score is below the mailbox's bypass score: delivered
    /// without a challenge (BoxTrapper's "minimum spam score to bypass").
    /// The text gives the score and the band.
    SpamBypass(String),
    /// The spam score is at or above the mailbox's no-challenge score:
    /// held without a challenge. The text gives the score and the band.
    Spam(String),
    /// No SPF or DKIM pass for a domain aligned with the `From:` domain
    /// (RFC 7489 §3.1): the address may be forged, so no challenge goes to
    /// it. The text is the authentication results in plain words.
    NotAuthenticated(String),
    /// The authentication results could not be had (a DNS failure, RFC
    /// 7208 §2.6.6 temperror): held without a challenge, never refused.
    AuthTemporary(String),
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
            Reason::ChallengeShared(_) => "challenge-shared",
            Reason::NoSender => "no-sender",
            Reason::UnusableFrom(_) => "unusable-from",
            Reason::NullSender => "null-sender",
            Reason::RoleSender(_) => "role-sender",
            Reason::OwnAddress(_) => "own-address",
            Reason::Automated(_) => "automated",
            Reason::RateLimited(_) => "rate-limited",
            Reason::SpamBypass(_) => "spam-bypass",
            Reason::Spam(_) => "spam",
            Reason::NotAuthenticated(_) => "not-authenticated",
            Reason::AuthTemporary(_) => "auth-temporary",
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
            Reason::ChallengeShared(by) => format!(
                "unknown sender; the challenge sent for this message as {by} covers this copy"
            ),
            Reason::NoSender => {
                "no From: address to send a challenge to; held without a challenge".into()
            }
            Reason::UnusableFrom(why) => {
                format!("the From: address {why}; held without a challenge")
            }
            Reason::NullSender => {
                "null envelope sender (a bounce or notice); held without a challenge".into()
            }
            Reason::RoleSender(a) => match role_sender(a) {
                Some(role) => format!("sent by {a}, {role}; held without a challenge"),
                None => format!("sent by {a}, an automated address; held without a challenge"),
            },
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
            Reason::SpamBypass(score) => {
                format!("{score}; delivered without a challenge")
            }
            Reason::Spam(score) => format!("{score}; held without a challenge"),
            Reason::NotAuthenticated(results) => {
                format!("sender not authenticated ({results}); held without a challenge")
            }
            Reason::AuthTemporary(why) => format!(
                "sender authentication could not be checked ({why}); held without a challenge"
            ),
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
    /// The sender lists: a [`rules::RuleList`] compiled once, or a plain
    /// slice of rules.
    pub ignore: &'a dyn RuleMatch,
    pub block: &'a dyn RuleMatch,
    pub allow: &'a dyn RuleMatch,
    /// The mailbox's address and its extra addresses, lower case.
    pub own_addresses: &'a [String],
    /// A challenge to this sender for this mailbox is open.
    pub open_challenge: bool,
    /// The rate limit a new challenge would exceed, if any.
    pub rate_limited: Option<&'static str>,
    /// Whether the `From:` address is authenticated.
    pub auth: &'a SenderAuth,
    /// Challenge senders who are not authenticated unless something
    /// failed (the admin's relaxed mode for domains that publish nothing).
    pub challenge_unauthenticated: bool,
    /// The message's spam score (SpamAssassin points, GTUBE and DNS
    /// blocklist scores added up); `None` when it was not scored.
    pub spam_score: Option<f64>,
    /// The mailbox's spam bands.
    pub bands: SpamBands,
}

/// Whether the `From:` address proved itself, from SPF, DKIM and DMARC
/// (RFC 7208, RFC 6376, RFC 7489) at the end of DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAuth {
    /// DKIM or SPF passed for a domain aligned with the `From:` domain
    /// (in words: "DKIM example.org").
    Authenticated(String),
    /// Nothing aligned passed. `failed` names a failure (SPF fail, a
    /// failing DKIM signature, DMARC fail) when there was one; `results`
    /// are all the results in plain words.
    Unauthenticated {
        failed: Option<String>,
        results: String,
    },
    /// A DNS failure kept the checks from a verdict (why).
    Temporary(String),
}

/// A mailbox's spam bands, in SpamAssassin points. Below `bypass_below`
/// mail is delivered without a challenge; at or above `no_challenge_at`
/// it is held without one; `None` turns a band off. (Mail at or above the
/// server's `spam.reject_score` is refused before the policy is asked.)
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpamBands {
    pub bypass_below: Option<f64>,
    pub no_challenge_at: Option<f64>,
}

impl SpamBands {
    /// The default bands: bypass below −2.5 (BoxTrapper's default minimum
    /// spam score), no challenge at 5.0 (SpamAssassin's `required_score`).
    pub const DEFAULT: SpamBands = SpamBands {
        bypass_below: Some(-2.5),
        no_challenge_at: Some(5.0),
    };
}

fn first_match(rules: &dyn RuleMatch, facts: &MessageFacts, env_sender: &str) -> Option<String> {
    rules
        .first_match(facts, env_sender)
        .map(SenderRule::to_line)
}

/// The policy, in its documented order: ignore, then block, then allow;
/// then the spam bands (deliver below the bypass score, hold silently at
/// the no-challenge score); everything else is held, and challenged only
/// when it is safe to: a person's mail (not a bounce, robot, list or
/// auto-reply), not from the mailbox's own address, from an authenticated
/// `From:` address, with no challenge open and within the rate limits.
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
    if let Some(score) = input.spam_score {
        if let Some(bypass) = input.bands.bypass_below
            && score < bypass
        {
            return d(
                Verdict::Deliver,
                Reason::SpamBypass(format!(
                    "spam score {score:.1} is below this mailbox's bypass score {bypass:.1}"
                )),
                false,
            );
        }
        if let Some(at) = input.bands.no_challenge_at
            && score >= at
        {
            return d(
                Verdict::Hold,
                Reason::Spam(format!(
                    "spam score {score:.1} is at or above this mailbox's no-challenge score {at:.1}"
                )),
                false,
            );
        }
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
    match input.auth {
        SenderAuth::Authenticated(_) => {}
        SenderAuth::Temporary(why) => return hold(Reason::AuthTemporary(why.clone())),
        SenderAuth::Unauthenticated { failed, results } => {
            if failed.is_some() || !input.challenge_unauthenticated {
                return hold(Reason::NotAuthenticated(results.clone()));
            }
        }
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
/// carries tokens too, and must never be answered, released by or put on
/// the allow list). Any sign of automation counts ([`automated`]: RFC 3834,
/// de-facto auto-reply headers such as `X-Autoreply`, `Precedence`,
/// `X-Auto-Response-Suppress` asking for no auto-replies, list headers,
/// reports, other challenge-response systems) except the `verify#`
/// subject, which a person's reply keeps. A robot's `From:` (no-reply,
/// list and bounce addresses) counts too. The envelope sender is not in
/// `facts`: see [`is_human_reply_from`].
pub fn is_human_reply(facts: &MessageFacts) -> bool {
    let automated = facts
        .automated
        .as_ref()
        .is_some_and(|a| !a.is_verify_subject());
    !automated && !facts.from.as_deref().is_some_and(is_role_sender)
}

/// [`is_human_reply`], and the envelope sender is a person's: not the null
/// sender `<>` (RFC 3834 §3.3 asks auto-responders to send from it, and a
/// person's reply never does) nor a robot's address. `env_sender` is
/// empty for `<>`, as in [`PolicyInput::env_sender`].
pub fn is_human_reply_from(facts: &MessageFacts, env_sender: &str) -> bool {
    is_human_reply(facts) && !is_role_sender(env_sender)
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

    fn authenticated() -> SenderAuth {
        SenderAuth::Authenticated("DKIM example.org".into())
    }

    /// Authentication and the spam bands, in their place in the order:
    /// lists first, then the bands, then the robot checks, then
    /// authentication, then the open challenge.
    #[test]
    fn authentication_and_spam_bands_decide_who_is_challenged() {
        let unauth = |failed: Option<&str>| SenderAuth::Unauthenticated {
            failed: failed.map(str::to_owned),
            results: "SPF none, DKIM none, DMARC none".into(),
        };
        let temp = SenderAuth::Temporary("DNS timeout for example.org".into());
        let allow = rules(&["from friend@example.org"]);
        // (what, env sender, auth, relaxed, score, bands, open, want)
        type Case<'a> = (
            &'a str,
            &'a str,
            SenderAuth,
            bool,
            Option<f64>,
            SpamBands,
            bool,
            (Verdict, &'a str, bool),
        );
        let bob = "bob@example.org";
        let def = SpamBands::DEFAULT;
        let off = SpamBands::default();
        let cases: Vec<Case> = vec![
            (
                "authenticated is challenged",
                bob,
                authenticated(),
                false,
                None,
                def,
                false,
                (Verdict::Hold, "unknown-sender", true),
            ),
            (
                "not authenticated: held silently",
                bob,
                unauth(None),
                false,
                None,
                def,
                false,
                (Verdict::Hold, "not-authenticated", false),
            ),
            (
                "relaxed mode challenges when nothing failed",
                bob,
                unauth(None),
                true,
                None,
                def,
                false,
                (Verdict::Hold, "unknown-sender", true),
            ),
            (
                "relaxed mode: SPF fail is still silent",
                bob,
                unauth(Some("SPF fail")),
                true,
                None,
                def,
                false,
                (Verdict::Hold, "not-authenticated", false),
            ),
            (
                "DNS failure: held silently, never refused",
                bob,
                temp.clone(),
                true,
                None,
                def,
                false,
                (Verdict::Hold, "auth-temporary", false),
            ),
            (
                "allow list needs no authentication",
                "friend@example.org",
                unauth(Some("SPF fail")),
                false,
                None,
                def,
                false,
                (Verdict::Deliver, "allowed", false),
            ),
            (
                "score below bypass delivers",
                bob,
                unauth(None),
                false,
                Some(-3.0),
                def,
                false,
                (Verdict::Deliver, "spam-bypass", false),
            ),
            (
                "score at bypass does not bypass",
                bob,
                authenticated(),
                false,
                Some(-2.5),
                def,
                false,
                (Verdict::Hold, "unknown-sender", true),
            ),
            (
                "score at no-challenge holds silently",
                bob,
                authenticated(),
                false,
                Some(5.0),
                def,
                false,
                (Verdict::Hold, "spam", false),
            ),
            (
                "GTUBE holds silently",
                bob,
                authenticated(),
                false,
                Some(1000.0),
                def,
                false,
                (Verdict::Hold, "spam", false),
            ),
            (
                "bands off: score ignored",
                bob,
                authenticated(),
                false,
                Some(1000.0),
                off,
                false,
                (Verdict::Hold, "unknown-sender", true),
            ),
            (
                "not scored: bands not used",
                bob,
                authenticated(),
                false,
                None,
                def,
                false,
                (Verdict::Hold, "unknown-sender", true),
            ),
            (
                "robot checks come before authentication",
                "",
                unauth(None),
                false,
                None,
                def,
                false,
                (Verdict::Hold, "null-sender", false),
            ),
            (
                "authentication comes before the open challenge",
                bob,
                unauth(None),
                false,
                None,
                def,
                true,
                (Verdict::Hold, "not-authenticated", false),
            ),
            (
                "an open challenge for an authenticated sender",
                bob,
                authenticated(),
                false,
                None,
                def,
                true,
                (Verdict::Hold, "challenge-open", false),
            ),
        ];
        for (what, env, auth, relaxed, score, bands, open, want) in cases {
            let f = facts(Some(if env.is_empty() { bob } else { env }), "");
            let d = decide(&PolicyInput {
                facts: &f,
                env_sender: env,
                challenge_enabled: true,
                ignore: &[],
                block: &[],
                allow: &allow,
                own_addresses: &[],
                open_challenge: open,
                rate_limited: None,
                auth: &auth,
                challenge_unauthenticated: relaxed,
                spam_score: score,
                bands,
            });
            assert_eq!(
                (d.verdict, d.reason.code(), d.challenge),
                want,
                "{what}: {d:?}"
            );
        }
    }

    #[test]
    fn the_new_reasons_say_why_in_plain_words() {
        let f = facts(Some("bob@example.org"), "");
        let auth = SenderAuth::Unauthenticated {
            failed: Some("SPF fail".into()),
            results: "SPF fail (example.org), DKIM none, DMARC fail (p=none)".into(),
        };
        let d = decide(&PolicyInput {
            facts: &f,
            env_sender: "bob@example.org",
            challenge_enabled: true,
            ignore: &[],
            block: &[],
            allow: &[],
            own_addresses: &[],
            open_challenge: false,
            rate_limited: None,
            auth: &auth,
            challenge_unauthenticated: false,
            spam_score: Some(7.25),
            bands: SpamBands {
                bypass_below: Some(-2.5),
                no_challenge_at: Some(10.0),
            },
        });
        assert_eq!(
            d.reason.detail(),
            "sender not authenticated (SPF fail (example.org), DKIM none, DMARC fail (p=none)); \
             held without a challenge"
        );
        let d = decide(&PolicyInput {
            auth: &authenticated(),
            spam_score: Some(12.0),
            ..PolicyInput {
                facts: &f,
                env_sender: "bob@example.org",
                challenge_enabled: true,
                ignore: &[],
                block: &[],
                allow: &[],
                own_addresses: &[],
                open_challenge: false,
                rate_limited: None,
                auth: &auth,
                challenge_unauthenticated: false,
                spam_score: None,
                bands: SpamBands::DEFAULT,
            }
        });
        assert_eq!(
            d.reason.detail(),
            "spam score 12.0 is at or above this mailbox's no-challenge score 5.0; \
             held without a challenge"
        );
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
        cases.push(Case {
            name: "X-Autoreply on first contact is held silently",
            headers: "X-Autoreply: yes\r\n",
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "automated", false),
            )
        });
        cases.push(Case {
            name: "XARS asking for no read receipts is a person",
            headers: "X-Auto-Response-Suppress: RN, NRN\r\n",
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "unknown-sender", true),
            )
        });
        cases.push(Case {
            name: "XARS asking for no out-of-office replies",
            headers: "X-Auto-Response-Suppress: OOF\r\n",
            ..c(
                "",
                "bob@example.org",
                "bob@example.org",
                (Verdict::Hold, "automated", false),
            )
        });
        cases.push(c(
            "a no-reply From: is held silently",
            "bounces+1-a@em.shop.example",
            "no-reply@shop.example",
            (Verdict::Hold, "role-sender", false),
        ));
        cases.push(c(
            "an ezmlm return path is held silently",
            "linux-secnews-return-67-legit-lists-secfocus=lists.example-corpus.test@securityfocus.example",
            "news@securityfocus.example",
            (Verdict::Hold, "role-sender", false),
        ));
        cases.push(c(
            "noreen is a person",
            "noreen@example.org",
            "noreen@example.org",
            (Verdict::Hold, "unknown-sender", true),
        ));
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
                auth: &authenticated(),
                challenge_unauthenticated: false,
                spam_score: None,
                bands: SpamBands::DEFAULT,
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
        let reply = |from: &str, extra: &str| {
            MessageFacts::parse(
                format!(
                    "From: {from}\r\nTo: alice@example.test\r\n{extra}\
                     Subject: Re: hi [verify#AAAAAAAAAAAAAAAAAAAAAAAA]\r\n\r\nyes, me\r\n"
                )
                .as_bytes(),
            )
        };
        let bob = "bob@example.org";
        // (case, From:, more headers, envelope sender, a person's reply?)
        let cases = [
            ("a person's reply", bob, "", bob, true),
            (
                "Outlook without read receipts",
                bob,
                "X-Auto-Response-Suppress: RN, NRN\r\n",
                bob,
                true,
            ),
            (
                "XARS None",
                bob,
                "X-Auto-Response-Suppress: None\r\n",
                bob,
                true,
            ),
            (
                "Auto-Submitted: no",
                bob,
                "Auto-Submitted: no\r\n",
                bob,
                true,
            ),
            (
                "Precedence: first-class",
                bob,
                "Precedence: first-class\r\n",
                bob,
                true,
            ),
            (
                "X-Loop of a forward",
                bob,
                "X-Loop: bob@example.org\r\n",
                bob,
                true,
            ),
            (
                "X-Mailer of a client",
                bob,
                "X-Mailer: Thunderbird\r\n",
                bob,
                true,
            ),
            (
                "forwarded with SRS",
                bob,
                "",
                "SRS0=HHH=TT=example.org=bob@forwarder.example",
                true,
            ),
            ("X-Autoreply", bob, "X-Autoreply: yes\r\n", bob, false),
            (
                "X-Autorespond",
                bob,
                "X-Autorespond: vacation\r\n",
                bob,
                false,
            ),
            (
                "X-Autogenerated",
                bob,
                "X-Autogenerated: Reply\r\n",
                bob,
                false,
            ),
            (
                "RFC 3834",
                bob,
                "Auto-Submitted: auto-replied\r\n",
                bob,
                false,
            ),
            ("Precedence: bulk", bob, "Precedence: bulk\r\n", bob, false),
            (
                "X-Precedence",
                bob,
                "X-Precedence: auto_reply\r\n",
                bob,
                false,
            ),
            (
                "XARS All",
                bob,
                "X-Auto-Response-Suppress: All\r\n",
                bob,
                false,
            ),
            (
                "XARS OOF",
                bob,
                "X-Auto-Response-Suppress: OOF\r\n",
                bob,
                false,
            ),
            (
                "XARS AutoReply",
                bob,
                "X-Auto-Response-Suppress: DR, AutoReply\r\n",
                bob,
                false,
            ),
            (
                "a list",
                bob,
                "List-Id: <dev.lists.example.org>\r\n",
                bob,
                false,
            ),
            (
                "a report",
                bob,
                "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                bob,
                false,
            ),
            (
                "our own challenge",
                bob,
                "X-Boxtrap-Challenge: x@example.org\r\n",
                bob,
                false,
            ),
            ("TMDA", bob, "X-TMDA: confirm\r\n", bob, false),
            ("From: no-reply", "no-reply@shop.example", "", bob, false),
            (
                "From: a list bounce address",
                "dev-bounces@lists.example.org",
                "",
                bob,
                false,
            ),
            ("null envelope sender (RFC 3834 §3.3)", bob, "", "", false),
            (
                "MAILER-DAEMON",
                bob,
                "",
                "MAILER-DAEMON@mx.example.org",
                false,
            ),
            (
                "a VERP bounce envelope",
                bob,
                "",
                "bounces+1-a-alice=example.test@em.shop.example",
                false,
            ),
        ];
        for (name, from, extra, env_sender, human) in cases {
            let facts = reply(from, extra);
            assert_eq!(
                is_human_reply_from(&facts, env_sender),
                human,
                "{name}: {:?}",
                facts.automated
            );
            if !is_role_sender(env_sender) {
                assert_eq!(is_human_reply(&facts), human, "{name}");
            }
        }
    }

    #[test]
    fn held_reasons_name_the_marker() {
        let decided = |env: &str, from: &str, extra: &str| {
            let f = facts(Some(from), extra);
            decide(&PolicyInput {
                facts: &f,
                env_sender: env,
                challenge_enabled: true,
                ignore: &[],
                block: &[],
                allow: &[],
                own_addresses: &[],
                open_challenge: false,
                rate_limited: None,
                auth: &authenticated(),
                challenge_unauthenticated: false,
                spam_score: None,
                bands: SpamBands::DEFAULT,
            })
            .reason
            .detail()
        };
        let bob = "bob@example.org";
        let cases = [
            (
                decided(bob, bob, "X-Autoreply: yes\r\n"),
                "automated mail (X-Autoreply: yes); held without a challenge",
            ),
            (
                decided(bob, bob, "X-Auto-Response-Suppress: OOF, AutoReply\r\n"),
                "automated mail (auto-replies suppressed (X-Auto-Response-Suppress: OOF, \
                 AutoReply)); held without a challenge",
            ),
            (
                decided(bob, "no-reply@shop.example", ""),
                "sent by no-reply@shop.example, a no-reply address; held without a challenge",
            ),
            (
                decided("dev-owner@lists.example.org", bob, ""),
                "sent by dev-owner@lists.example.org, a list owner's address (owner-, -owner); \
                 held without a challenge",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
