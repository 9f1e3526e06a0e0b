//! Automated mail: how boxtrap tells a robot from a person.
//!
//! A challenge sent to a robot reaches nobody, and one sent to another
//! auto-responder starts a loop, so every message is classified before a
//! challenge is considered: RFC 3834 `Auto-Submitted`, mailing-list headers
//! (RFC 2369, RFC 2919), `Precedence`, delivery reports (RFC 6522), other
//! challenge-response systems, and envelope senders that are role
//! addresses. No I/O; a header that cannot be parsed counts as absent.

use std::fmt;

use mail_parser::Header;

use super::facts::{VERIFY_MARKER, raw_value, subject_tokens};

/// The marker header every boxtrap challenge mail carries; its value is the
/// mailbox address that issued the challenge. Another boxtrap (or this one)
/// receiving such a mail treats it as [`Automated::ChallengeResponse`], which
/// is what stops two challenge-response systems from challenging each other.
pub const CHALLENGE_HEADER: &str = "X-Boxtrap-Challenge";

/// Headers by which challenge-response systems mark their challenges: ours
/// first, then BoxTrapper, Spam Arrest, TMDA, Bluebottle and generic ones.
const CHALLENGE_HEADERS: &[&str] = &[
    CHALLENGE_HEADER,
    "X-Boxtrapper",
    "X-Challenge",
    "X-Spam-Arrest",
    "X-ChallengeResponse",
    "X-TMDA",
    "X-Bluebottle-Request",
];

/// Headers that only mailing-list software adds (RFC 2369, RFC 2919, and the
/// older ezmlm/Yahoo `Mailing-List`).
const LIST_HEADERS: &[&str] = &[
    "List-Id",
    "List-Unsubscribe",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Owner",
    "List-Archive",
    "Mailing-List",
];

/// `Precedence:` values that mark bulk or automatic mail (a de-facto
/// convention, mentioned in RFC 3834 §3.1.8 as "not to be relied on", but
/// widely set by list servers and vacation programs).
const BULK_PRECEDENCES: &[&str] = &["bulk", "list", "junk", "auto_reply"];

/// Why a message is automated mail that must never get a challenge: answering
/// it would reach no person, or start a loop between two automatons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Automated {
    /// RFC 3834 §5: `Auto-Submitted:` present with a value other than `no`
    /// (the keyword is kept, lower-cased, e.g. `auto-replied`).
    AutoSubmitted(String),
    /// A mailing-list header is present (its name is kept, e.g. `List-Id`).
    ListHeader(String),
    /// `Precedence:` is `bulk`, `list`, `junk` or `auto_reply` (value kept).
    Precedence(String),
    /// `X-Auto-Response-Suppress:` is present (Microsoft's marker), whatever
    /// its value.
    AutoResponseSuppress,
    /// The message is `multipart/report` (RFC 6522): a bounce, DSN or MDN.
    DeliveryReport,
    /// A challenge from boxtrap or another challenge-response system (the
    /// header name that gave it away is kept, or `Subject verify#`).
    ChallengeResponse(String),
}

impl fmt::Display for Automated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Automated::AutoSubmitted(value) if value.is_empty() => {
                write!(f, "Auto-Submitted (RFC 3834)")
            }
            Automated::AutoSubmitted(value) => write!(f, "Auto-Submitted: {value} (RFC 3834)"),
            Automated::ListHeader(name) => write!(f, "mailing list ({name})"),
            Automated::Precedence(value) => write!(f, "bulk mail (Precedence: {value})"),
            Automated::AutoResponseSuppress => {
                write!(f, "auto-responses suppressed (X-Auto-Response-Suppress)")
            }
            Automated::DeliveryReport => write!(f, "delivery report (multipart/report)"),
            Automated::ChallengeResponse(what) => write!(f, "challenge-response mail ({what})"),
        }
    }
}

/// Classifies automated mail. When several signs are present the most
/// specific wins: a challenge first (so two challenge-response systems
/// recognise each other), then reports, then RFC 3834, then list and bulk
/// markers.
pub(super) fn classify(raw: &[u8], headers: &[Header<'_>], subject: &str) -> Option<Automated> {
    let find = |name: &str| headers.iter().find(|h| h.name().eq_ignore_ascii_case(name));

    if let Some(name) = CHALLENGE_HEADERS.iter().find(|name| find(name).is_some()) {
        return Some(Automated::ChallengeResponse((*name).to_string()));
    }
    if subject_tokens(subject).next().is_some() {
        return Some(Automated::ChallengeResponse(format!(
            "Subject {VERIFY_MARKER}"
        )));
    }
    // RFC 6522: bounces (delivery-status), MDNs (disposition-notification)
    // and every other report type.
    if let Some(h) = find("Content-Type") {
        let is_report = match h.value().as_content_type() {
            Some(ct) => {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            }
            None => raw_value(raw, h)
                .to_ascii_lowercase()
                .starts_with("multipart/report"),
        };
        if is_report {
            return Some(Automated::DeliveryReport);
        }
    }
    // RFC 3834 §5.1: any value other than "no" means automatic.
    if let Some(h) = find("Auto-Submitted") {
        let keyword = first_word(&raw_value(raw, h));
        if keyword != "no" {
            return Some(Automated::AutoSubmitted(keyword));
        }
    }
    if let Some(h) = LIST_HEADERS.iter().find_map(|name| find(name)) {
        return Some(Automated::ListHeader(canonical_list_header(h.name())));
    }
    if let Some(h) = find("Precedence") {
        let value = first_word(&raw_value(raw, h));
        if BULK_PRECEDENCES.contains(&value.as_str()) {
            return Some(Automated::Precedence(value));
        }
    }
    if find("X-Auto-Response-Suppress").is_some() {
        return Some(Automated::AutoResponseSuppress);
    }
    None
}

/// The list header's name as this module spells it (mail-parser spells
/// `List-Id` as `List-ID`; unknown headers keep the sender's spelling).
fn canonical_list_header(name: &str) -> String {
    LIST_HEADERS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |known| (*known).to_string())
}

/// The first word of a structured value, lower-cased: comments in
/// parentheses, parameters after `;` and surrounding whitespace dropped.
fn first_word(value: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            ';' => break,
            c if c.is_whitespace() => {
                if !out.is_empty() {
                    break;
                }
            }
            c => out.push(c),
        }
    }
    out.to_lowercase()
}

/// Envelope senders that must never get a challenge: null (`""` or `<>`),
/// `MAILER-DAEMON`, `postmaster`, `owner-*`, `*-request`, `*-bounces`,
/// `*-bounce` (local part, case-insensitive). A `+detail` is ignored, so
/// VERP return paths such as `list-bounces+alice=example.com@lists.example`
/// count too.
pub fn is_role_sender(address: &str) -> bool {
    let address = address.trim();
    let address = address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address)
        .trim();
    if address.is_empty() {
        return true;
    }
    let local = address
        .rsplit_once('@')
        .map_or(address, |(local, _)| local)
        .trim_matches('"')
        .to_ascii_lowercase();
    let base = local
        .split_once('+')
        .map_or(local.as_str(), |(base, _)| base);
    [local.as_str(), base].into_iter().any(|l| {
        l == "mailer-daemon"
            || l == "postmaster"
            || l.starts_with("owner-")
            || l.ends_with("-request")
            || l.ends_with("-bounces")
            || l.ends_with("-bounce")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::facts::MessageFacts;

    /// Joins header and body lines with CRLF, as received over SMTP.
    fn crlf(lines: &[&str]) -> Vec<u8> {
        let mut out = lines.join("\r\n");
        out.push_str("\r\n");
        out.into_bytes()
    }

    const RECEIVED: &str = "Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby mail.example.test (boxtrap) with ESMTP id 1a2b3c\r\n\tfor <alice@example.test>; Mon, 1 Jun 2026 10:00:00 +0000";

    #[test]
    fn automated_mail_is_recognised() {
        let cases: &[(&str, &[&str], Option<Automated>)] = &[
            (
                "out of office",
                &[
                    "From: Bob <bob@example.org>",
                    "Subject: Out of office: lunch",
                    "Auto-Submitted: auto-replied",
                ],
                Some(Automated::AutoSubmitted("auto-replied".into())),
            ),
            (
                "auto-generated with comment and parameter",
                &["Auto-Submitted: Auto-Generated (cron); owner-email=\"x@y\""],
                Some(Automated::AutoSubmitted("auto-generated".into())),
            ),
            (
                "Auto-Submitted: no is a person",
                &["From: bob@example.org", "Auto-Submitted: no", "Subject: hi"],
                None,
            ),
            (
                "Auto-Submitted: No (case-insensitive)",
                &["Auto-Submitted:   No  "],
                None,
            ),
            (
                "empty Auto-Submitted is not 'no'",
                &["Auto-Submitted:"],
                Some(Automated::AutoSubmitted(String::new())),
            ),
            (
                "List-Id",
                &[
                    "From: someone@example.org",
                    "List-Id: Rust users <users.rust-lang.org>",
                    "List-Unsubscribe: <mailto:leave@rust-lang.org>",
                ],
                Some(Automated::ListHeader("List-Id".into())),
            ),
            (
                "List-Unsubscribe alone",
                &["list-unsubscribe: <https://news.example.org/u/1>"],
                Some(Automated::ListHeader("List-Unsubscribe".into())),
            ),
            (
                "List-Post",
                &["List-Post: <mailto:dev@lists.example.org>"],
                Some(Automated::ListHeader("List-Post".into())),
            ),
            (
                "Mailing-List (ezmlm)",
                &["Mailing-List: contact dev-help@example.org; run by ezmlm"],
                Some(Automated::ListHeader("Mailing-List".into())),
            ),
            (
                "Precedence: bulk",
                &["From: news@shop.example", "Precedence: bulk"],
                Some(Automated::Precedence("bulk".into())),
            ),
            (
                "Precedence: JUNK",
                &["Precedence: JUNK"],
                Some(Automated::Precedence("junk".into())),
            ),
            (
                "Precedence: auto_reply",
                &["Precedence: auto_reply"],
                Some(Automated::Precedence("auto_reply".into())),
            ),
            (
                "Precedence: first-class is a person",
                &["Precedence: first-class"],
                None,
            ),
            (
                "X-Auto-Response-Suppress",
                &["X-Auto-Response-Suppress: OOF, AutoReply"],
                Some(Automated::AutoResponseSuppress),
            ),
            (
                "MDN",
                &[
                    "Content-Type: Multipart/Report; report-type=disposition-notification; boundary=x",
                ],
                Some(Automated::DeliveryReport),
            ),
            (
                "multipart/mixed is not a report",
                &["Content-Type: multipart/mixed; boundary=x"],
                None,
            ),
            (
                "BoxTrapper challenge",
                &[
                    "From: carol@example.org",
                    "Subject: Please verify: hello verify#Zx81aabbccddeeff0011",
                ],
                Some(Automated::ChallengeResponse("Subject verify#".into())),
            ),
            (
                "verify# needs a word boundary",
                &["Subject: reverify#abc"],
                None,
            ),
            ("verify# needs a token", &["Subject: verify# later"], None),
            (
                "another boxtrap's challenge, with every other sign too",
                &[
                    "From: Alice <alice@example.test>",
                    "Subject: Re: hello [verify#abcdefghijklmnopqrstuvwxyz]",
                    "Auto-Submitted: auto-replied",
                    "Precedence: bulk",
                    "X-Auto-Response-Suppress: All",
                    "X-Boxtrap-Challenge: alice@example.test",
                ],
                Some(Automated::ChallengeResponse("X-Boxtrap-Challenge".into())),
            ),
            (
                "TMDA",
                &["X-TMDA: confirm"],
                Some(Automated::ChallengeResponse("X-TMDA".into())),
            ),
            (
                "Spam Arrest",
                &["x-spam-arrest: challenge"],
                Some(Automated::ChallengeResponse("X-Spam-Arrest".into())),
            ),
            (
                "Bluebottle",
                &["X-Bluebottle-Request: sender-verification"],
                Some(Automated::ChallengeResponse("X-Bluebottle-Request".into())),
            ),
            (
                "ordinary mail",
                &[
                    "From: bob@example.org",
                    "Subject: lunch?",
                    "Precedence: normal",
                ],
                None,
            ),
        ];
        for (name, headers, want) in cases {
            let mut lines = vec![RECEIVED];
            lines.extend_from_slice(headers);
            lines.extend_from_slice(&["", "body"]);
            let facts = MessageFacts::parse(&crlf(&lines));
            assert_eq!(&facts.automated, want, "case: {name}");
        }
    }

    #[test]
    fn automated_reasons_read_well() {
        let cases = [
            (
                Automated::AutoSubmitted("auto-replied".into()),
                "Auto-Submitted: auto-replied (RFC 3834)",
            ),
            (
                Automated::AutoSubmitted(String::new()),
                "Auto-Submitted (RFC 3834)",
            ),
            (
                Automated::ListHeader("List-Id".into()),
                "mailing list (List-Id)",
            ),
            (
                Automated::Precedence("bulk".into()),
                "bulk mail (Precedence: bulk)",
            ),
            (
                Automated::AutoResponseSuppress,
                "auto-responses suppressed (X-Auto-Response-Suppress)",
            ),
            (
                Automated::DeliveryReport,
                "delivery report (multipart/report)",
            ),
            (
                Automated::ChallengeResponse("X-Boxtrap-Challenge".into()),
                "challenge-response mail (X-Boxtrap-Challenge)",
            ),
        ];
        for (reason, want) in cases {
            assert_eq!(reason.to_string(), want);
        }
    }

    #[test]
    fn role_senders_are_recognised() {
        let cases = [
            ("", true),
            ("<>", true),
            ("  ", true),
            ("MAILER-DAEMON@mx.example.org", true),
            ("mailer-daemon", true),
            ("Postmaster@example.org", true),
            ("owner-rust-users@lists.example.org", true),
            ("rust-users-request@lists.example.org", true),
            ("rust-users-bounces@lists.example.org", true),
            (
                "rust-users-bounces+alice=example.test@lists.example.org",
                true,
            ),
            ("news-bounce@shop.example", true),
            ("<Owner-List@Example.org>", true),
            ("alice@example.org", false),
            ("postmaster-fan@example.org", false),
            ("bounces@example.org", false),
            ("request@example.org", false),
            ("owner@example.org", false),
            ("alice+owner-x@example.org", false),
        ];
        for (address, want) in cases {
            assert_eq!(is_role_sender(address), want, "address: {address:?}");
        }
    }
}
