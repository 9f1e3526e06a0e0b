//! Message facts: everything the policy needs to know about one message,
//! read once from its raw bytes (headers only; the body is never parsed).
//!
//! This module owns the header-level questions the delivery-time hook asks:
//! who the message is from (the sender identity a challenge goes to), who it
//! is addressed to, whether it is automated mail that must never be
//! challenged (RFC 3834 and friends), whether the envelope sender is a role
//! address (both in [`super::automated`]), and which challenge token a reply carries. It does no I/O and
//! never fails: malformed input gives empty fields. Deciding what to do with
//! these facts is [`crate::policy`]'s job, not this module's.

use std::borrow::Cow;

use mail_parser::{Header, HeaderValue, MessageParser};

use super::address_list;
use super::automated::classify;
pub use super::automated::{Automated, CHALLENGE_HEADER, is_role_sender};

/// BoxTrapper's subject convention: `verify#<token>`.
pub(super) const VERIFY_MARKER: &str = "verify#";

/// Prefix of the local part of our challenges' Message-IDs.
const MESSAGE_ID_PREFIX: &str = "boxtrap.";

/// Shortest and longest challenge token [`reply_token`] accepts.
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 20..=200;

/// What the policy needs to know about a message, parsed once from its raw
/// bytes by [`MessageFacts::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFacts {
    /// First `From:` address, lower-cased: the sender identity a challenge
    /// is sent to and the allow list is checked against.
    pub from: Option<String>,
    /// When `From:` holds something but no usable address: the addr-spec
    /// as written and what is wrong with it, e.g.
    /// `"\"bob\"": address has no @domain part`.
    pub from_problem: Option<String>,
    /// Display name of that address, RFC 2047-decoded.
    pub from_name: Option<String>,
    /// All `To:` addresses (every `To:` field, groups flattened), lower-cased.
    pub to: Vec<String>,
    /// All `Cc:` addresses, lower-cased.
    pub cc: Vec<String>,
    /// Subject, RFC 2047-decoded and unfolded; `""` when absent.
    pub subject: String,
    /// `Message-ID:` with its angle brackets, e.g. `<abc@x>`.
    pub message_id: Option<String>,
    /// The `Date:` header as written (unfolded, trimmed): shown to the owner
    /// and quoted in challenges, so it is not reformatted.
    pub date: Option<String>,
    /// Message ids in `In-Reply-To:`, with angle brackets.
    pub in_reply_to: Vec<String>,
    /// Message ids in `References:`, with angle brackets.
    pub references: Vec<String>,
    /// Why this is automated mail that must never be challenged, if it is.
    pub automated: Option<Automated>,
}

impl MessageFacts {
    /// Reads the facts from a raw message (CRLF line endings, as received).
    /// Never fails: garbage or missing headers give empty fields.
    ///
    /// When a single-valued header appears more than once (malformed mail),
    /// the first occurrence wins.
    pub fn parse(raw: &[u8]) -> MessageFacts {
        // mail-parser drops the value of a last header that has no line
        // break after it; SMTP always supplies one, other callers may not.
        let raw: Cow<'_, [u8]> = if raw.ends_with(b"\n") {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned([raw, b"\r\n"].concat())
        };
        let raw = raw.as_ref();
        let Some(message) = MessageParser::default().parse_headers(raw) else {
            return MessageFacts::default();
        };
        let headers = message.headers();
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name().eq_ignore_ascii_case(name))
        };

        // The first From: mailbox with an address; mail-parser for its
        // display name, the raw value for the address as written.
        let from_specs: Vec<String> = named("From")
            .flat_map(|h| address_list::addr_specs(&raw_value(raw, h)))
            .collect();
        let from_spec = from_specs
            .iter()
            .find(|spec| spec.contains('@'))
            .or(from_specs.first())
            .cloned();
        let (from, from_problem) = match from_spec.as_deref().map(address_list::canonical) {
            Some(Ok(a)) => (Some(a), None),
            Some(Err(e)) => (None, from_spec.map(|spec| format!("{spec:?}: {e}"))),
            None => (None, None),
        };
        let from_name = named("From")
            .filter_map(|h| h.value().as_address())
            .flat_map(|a| a.iter())
            .find(|addr| addr.address().is_some_and(|a| !a.trim().is_empty()))
            .filter(|addr| {
                // Without angle brackets, mail-parser may read a quoted
                // local part as the display name.
                addr.address()
                    .is_some_and(|a| !a.starts_with('@') && a.contains('@'))
            })
            .and_then(|addr| addr.name())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty());

        let addresses = |name: &'static str| -> Vec<String> {
            named(name)
                .flat_map(|h| address_list::addr_specs(&raw_value(raw, h)))
                .filter_map(|spec| address_list::canonical(&spec).ok())
                .collect()
        };

        let subject = named("Subject")
            .next()
            .map(|h| match h.value() {
                HeaderValue::Text(text) => unfold(text),
                HeaderValue::TextList(list) => unfold(&list.join(" ")),
                _ => String::new(),
            })
            .unwrap_or_default();

        let ids = |name: &'static str| -> Vec<String> {
            named(name).flat_map(|h| message_ids(h.value())).collect()
        };

        let date = named("Date")
            .next()
            .map(|h| raw_value(raw, h))
            .filter(|d| !d.is_empty());

        let mut facts = MessageFacts {
            from,
            from_problem,
            from_name,
            to: addresses("To"),
            cc: addresses("Cc"),
            subject,
            message_id: ids("Message-ID").into_iter().next(),
            date,
            in_reply_to: ids("In-Reply-To"),
            references: ids("References"),
            automated: None,
        };
        facts.automated = classify(raw, headers, &facts.subject);
        facts
    }
}

/// A header's value exactly as written, from the raw bytes: unfolded
/// (RFC 5322 §2.2.3), trimmed, invalid UTF-8 replaced.
pub(super) fn raw_value(raw: &[u8], header: &Header<'_>) -> String {
    let start = header.offset_start() as usize;
    let end = header.offset_end() as usize;
    raw.get(start..end)
        .map(|bytes| unfold(&String::from_utf8_lossy(bytes)))
        .unwrap_or_default()
}

/// Removes folding line breaks and trims.
fn unfold(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect::<String>()
        .trim()
        .to_string()
}

/// Message ids of an id header, each put back in angle brackets.
fn message_ids(value: &HeaderValue<'_>) -> Vec<String> {
    let bracket = |id: &str| {
        let id = id.trim();
        (!id.is_empty()).then(|| format!("<{id}>"))
    };
    match value {
        HeaderValue::Text(id) => bracket(id).into_iter().collect(),
        HeaderValue::TextList(ids) => ids.iter().filter_map(|id| bracket(id)).collect(),
        _ => Vec::new(),
    }
}

/// A challenge token found in a message, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyToken {
    /// `[A-Za-z0-9_-]{20,200}`, not yet verified.
    pub token: String,
    /// Found in the subject or `In-Reply-To`: the message answers the
    /// challenge itself. A token only in `References` is a later message
    /// of the same thread.
    pub direct: bool,
}

/// The most tokens [`reply_tokens`] returns: each is looked up, and a
/// message may quote a forwarded challenge's token beside ours.
pub const MAX_REPLY_TOKENS: usize = 4;

/// The challenge tokens a reply carries, in the order to try them:
/// `verify#<token>` in the subject (token = `[A-Za-z0-9_-]{20,200}`), then
/// message ids of the form `<boxtrap.<token>@anything>` (see
/// [`challenge_message_id`]) in `In-Reply-To`, then in `References`. Each
/// token once, at most [`MAX_REPLY_TOKENS`]. A subject may hold several: a
/// challenge quotes the original subject, which may quote another
/// challenge's token.
pub fn reply_tokens(facts: &MessageFacts) -> Vec<ReplyToken> {
    let subject = subject_tokens(&facts.subject)
        .filter(|t| TOKEN_LEN.contains(&t.len()))
        .map(|t| (t, true));
    let in_reply_to = facts
        .in_reply_to
        .iter()
        .filter_map(|id| message_id_token(id))
        .map(|t| (t, true));
    let references = facts
        .references
        .iter()
        .filter_map(|id| message_id_token(id))
        .map(|t| (t, false));
    let mut out: Vec<ReplyToken> = Vec::new();
    for (token, direct) in subject.chain(in_reply_to).chain(references) {
        if out.len() == MAX_REPLY_TOKENS {
            break;
        }
        if !out.iter().any(|r| r.token == token) {
            out.push(ReplyToken {
                token: token.to_owned(),
                direct,
            });
        }
    }
    out
}

/// The first of [`reply_tokens`].
pub fn reply_token(facts: &MessageFacts) -> Option<ReplyToken> {
    reply_tokens(facts).into_iter().next()
}

/// The Message-ID of the challenge carrying `token`, sent from `hostname`:
/// `<boxtrap.{token}@{hostname}>`. Replies quote it in `In-Reply-To`, which
/// is how [`reply_token`] finds the token when the subject was edited.
pub fn challenge_message_id(token: &str, hostname: &str) -> String {
    format!("<{MESSAGE_ID_PREFIX}{token}@{hostname}>")
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The token of a `<boxtrap.<token>@host>` message id, if it is one.
fn message_id_token(id: &str) -> Option<&str> {
    let inner = id.trim().strip_prefix('<')?.strip_suffix('>')?;
    let prefix = inner.get(..MESSAGE_ID_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(MESSAGE_ID_PREFIX) {
        return None;
    }
    let (token, host) = inner.get(MESSAGE_ID_PREFIX.len()..)?.split_once('@')?;
    let valid =
        TOKEN_LEN.contains(&token.len()) && token.bytes().all(is_token_byte) && !host.is_empty();
    valid.then_some(token)
}

/// Every non-empty token following `verify#` (case-insensitive) at a word
/// boundary in `subject`, in order: what `(?i)\bverify#([A-Za-z0-9_-]+)`
/// would capture.
pub(super) fn subject_tokens(subject: &str) -> impl Iterator<Item = &str> {
    let bytes = subject.as_bytes();
    let marker = VERIFY_MARKER.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        loop {
            let found = bytes
                .get(from..)?
                .windows(marker.len())
                .position(|w| w.eq_ignore_ascii_case(marker))?;
            let start = from + found;
            let token_start = start + marker.len();
            from = token_start;
            let at_boundary = subject
                .get(..start)
                .and_then(|before| before.chars().next_back())
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let len = bytes.get(token_start..).map_or(0, |rest| {
                rest.iter().take_while(|b| is_token_byte(**b)).count()
            });
            if at_boundary && len > 0 {
                from = token_start + len;
                return subject.get(token_start..token_start + len);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins header and body lines with CRLF, as received over SMTP.
    fn crlf(lines: &[&str]) -> Vec<u8> {
        let mut out = lines.join("\r\n");
        out.push_str("\r\n");
        out.into_bytes()
    }

    const RECEIVED: &str = "Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby mail.example.test (boxtrap) with ESMTP id 1a2b3c\r\n\tfor <alice@example.test>; Mon, 1 Jun 2026 10:00:00 +0000";

    fn token(n: usize) -> String {
        "aB3_-".chars().cycle().take(n).collect()
    }

    #[test]
    fn plain_mail_with_encoded_words_and_folded_headers() {
        let raw = crlf(&[
            RECEIVED,
            "From: =?UTF-8?Q?Bj=C3=B6rn_=C3=85str=C3=B6m?= <Bjorn.Astrom@Example.ORG>",
            "To: Alice <alice@example.test>,",
            "  \"Bob, Jr.\" <BOB@example.test>",
            "Cc: undisclosed:;, team: carol@example.test, Dave <dave@example.test>;,",
            "\teve@example.test",
            "Subject: =?ISO-8859-1?Q?R=E9union_du_?=",
            " =?UTF-8?B?bHVuZGkg4piV?= (folded)",
            "Date: Mon, 1 Jun 2026",
            " 09:59:58 +0200",
            "Message-ID: <20260601.abc@mx.example.org>",
            "In-Reply-To: <prev@example.test>",
            "References: <root@example.test>",
            "\t<prev@example.test>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "Hello Alice.",
        ]);
        let facts = MessageFacts::parse(&raw);
        assert_eq!(
            facts,
            MessageFacts {
                from: Some("bjorn.astrom@example.org".into()),
                from_problem: None,
                from_name: Some("Björn Åström".into()),
                to: vec!["alice@example.test".into(), "bob@example.test".into()],
                cc: vec![
                    "carol@example.test".into(),
                    "dave@example.test".into(),
                    "eve@example.test".into()
                ],
                subject: "Réunion du lundi ☕ (folded)".into(),
                message_id: Some("<20260601.abc@mx.example.org>".into()),
                date: Some("Mon, 1 Jun 2026 09:59:58 +0200".into()),
                in_reply_to: vec!["<prev@example.test>".into()],
                references: vec!["<root@example.test>".into(), "<prev@example.test>".into()],
                automated: None,
            }
        );
    }

    #[test]
    fn from_addresses_are_read_as_written() {
        /// (From: value, address, display name, problem)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "John Doe <\"john doe\"@example.org>",
                Some("\"john doe\"@example.org"),
                Some("John Doe"),
                None,
            ),
            ("\"bob\"@example.org", Some("bob@example.org"), None, None),
            (
                "\"bob smith\"@example.org",
                Some("\"bob smith\"@example.org"),
                None,
                None,
            ),
            ("bob@[192.0.2.1]", Some("bob@[192.0.2.1]"), None, None),
            (
                "Bob <bob@[IPv6:2001:db8::1]>",
                Some("bob@[IPv6:2001:db8::1]"),
                Some("Bob"),
                None,
            ),
            (
                "bob@[IPv6:2001:db8::1]",
                Some("bob@[IPv6:2001:db8::1]"),
                None,
                None,
            ),
            ("bob@example.org.", Some("bob@example.org"), None, None),
            (
                "den...4ik@mailru.example",
                Some("den...4ik@mailru.example"),
                None,
                None,
            ),
            (
                "Taro <taro..yamada@docomo.example>",
                Some("taro..yamada@docomo.example"),
                Some("Taro"),
                None,
            ),
            (
                "bob@example.org (Bob)",
                Some("bob@example.org"),
                Some("Bob"),
                None,
            ),
            (
                "bob",
                None,
                None,
                Some("\"bob\": address has no @domain part"),
            ),
            ("Bob <>", None, None, None),
        ];
        for (value, address, name, problem) in cases {
            let raw = crlf(&[&format!("From: {value}"), "Subject: x", "", "body"]);
            let facts = MessageFacts::parse(&raw);
            assert_eq!(facts.from.as_deref(), *address, "From: {value}");
            assert_eq!(facts.from_name.as_deref(), *name, "From: {value}");
            assert_eq!(facts.from_problem.as_deref(), *problem, "From: {value}");
        }
    }

    #[test]
    fn first_from_header_and_address_win_and_all_to_fields_count() {
        let raw = crlf(&[
            "From: first@example.org, second@example.org",
            "From: third@example.org",
            "To: a@example.test",
            "To: b@example.test",
            "Subject: one",
            "Subject: two",
            "",
            "body",
        ]);
        let facts = MessageFacts::parse(&raw);
        assert_eq!(facts.from.as_deref(), Some("first@example.org"));
        assert_eq!(facts.from_name, None);
        assert_eq!(facts.to, ["a@example.test", "b@example.test"]);
        assert_eq!(facts.subject, "one");
    }

    #[test]
    fn odd_but_common_header_forms() {
        let raw = crlf(&[
            "From: undisclosed",
            "To: \"Smith, John\" <J.Smith@Example.ORG>, =?utf-8?q?Zo=C3=AB?= <zoe@x.org>",
            "Message-ID: no-brackets@x",
            "In-Reply-To: <a@b> (a comment) <c@d>",
            "",
        ]);
        let facts = MessageFacts::parse(&raw);
        assert_eq!(facts.from, None);
        assert_eq!(facts.from_name, None);
        assert_eq!(facts.to, ["j.smith@example.org", "zoe@x.org"]);
        assert_eq!(facts.message_id.as_deref(), Some("<no-brackets@x>"));
        assert_eq!(facts.in_reply_to, ["<a@b>", "<c@d>"]);

        let raw = crlf(&["From: \"Smith, John\" <J.Smith@Example.ORG>", ""]);
        let facts = MessageFacts::parse(&raw);
        assert_eq!(facts.from.as_deref(), Some("j.smith@example.org"));
        assert_eq!(facts.from_name.as_deref(), Some("Smith, John"));
    }

    #[test]
    fn postfix_bounce_is_a_delivery_report() {
        let raw = crlf(&[
            RECEIVED,
            "Date: Mon,  1 Jun 2026 10:00:01 +0000 (UTC)",
            "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)",
            "Subject: Undelivered Mail Returned to Sender",
            "To: alice@example.test",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "\tboundary=\"4A1B2C3D.1780308001/mx.example.org\"",
            "Message-Id: <20260601100001.4A1B2C3D@mx.example.org>",
            "",
            "This is a MIME-encapsulated message.",
            "",
            "--4A1B2C3D.1780308001/mx.example.org",
            "Content-Description: Notification",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients.",
            "",
            "--4A1B2C3D.1780308001/mx.example.org",
            "Content-Description: Delivery report",
            "Content-Type: message/delivery-status",
            "",
            "Reporting-MTA: dns; mx.example.org",
            "Final-Recipient: rfc822; nobody@example.org",
            "Action: failed",
            "Status: 5.1.1",
            "",
            "--4A1B2C3D.1780308001/mx.example.org--",
        ]);
        let facts = MessageFacts::parse(&raw);
        assert_eq!(facts.automated, Some(Automated::DeliveryReport));
        assert_eq!(facts.from.as_deref(), Some("mailer-daemon@mx.example.org"));
        assert_eq!(
            facts.message_id.as_deref(),
            Some("<20260601100001.4A1B2C3D@mx.example.org>")
        );
        assert_eq!(
            facts.date.as_deref(),
            Some("Mon,  1 Jun 2026 10:00:01 +0000 (UTC)")
        );
    }

    #[test]
    fn malformed_input_gives_empty_facts() {
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("only CRLF", b"\r\n"),
            ("garbage", b"\x00\xff\xfe garbage \x80\x81\r\n\r\n\x00"),
            ("no headers, just a body", b"\r\nhello\r\n"),
            ("a line without a colon", b"this is not a header\r\n"),
        ];
        for (name, raw) in cases {
            let facts = MessageFacts::parse(raw);
            assert_eq!(facts.from, None, "case: {name}");
            assert!(facts.to.is_empty(), "case: {name}");
            assert_eq!(facts.subject, "", "case: {name}");
            assert_eq!(facts.message_id, None, "case: {name}");
            assert_eq!(facts.automated, None, "case: {name}");
        }
    }

    #[test]
    fn headers_without_a_body_are_read() {
        for raw in [
            &b"From: bob@example.org\r\nSubject: no body\r\n"[..],
            b"From: bob@example.org\r\nSubject: no body\r\n\r\n",
            b"From: bob@example.org\r\nSubject: no body",
        ] {
            let facts = MessageFacts::parse(raw);
            assert_eq!(facts.from.as_deref(), Some("bob@example.org"));
            assert_eq!(facts.subject, "no body");
        }
    }

    #[test]
    fn non_utf8_header_bytes_do_not_break_parsing() {
        let raw = b"From: J\xf6rg <joerg@example.org>\r\nSubject: Gr\xfc\xdfe \xff\r\nDate: Mon, 1 Jun 2026 \xe9\r\nTo: alice@example.test\r\n";
        let facts = MessageFacts::parse(raw);
        assert_eq!(facts.from.as_deref(), Some("joerg@example.org"));
        assert_eq!(facts.from_name.as_deref(), Some("J\u{fffd}rg"));
        assert_eq!(facts.subject, "Gr\u{fffd}\u{fffd}e \u{fffd}");
        assert_eq!(facts.date.as_deref(), Some("Mon, 1 Jun 2026 \u{fffd}"));
        assert_eq!(facts.to, ["alice@example.test"]);
    }

    fn facts_with(subject: &str, in_reply_to: &[&str], references: &[&str]) -> MessageFacts {
        MessageFacts {
            subject: subject.into(),
            in_reply_to: in_reply_to.iter().map(|s| s.to_string()).collect(),
            references: references.iter().map(|s| s.to_string()).collect(),
            ..MessageFacts::default()
        }
    }

    #[test]
    fn reply_tokens_are_found() {
        let t20 = token(20);
        let t200 = token(200);
        let t201 = token(201);
        let other = "Other0123456789abcdefXYZ";
        let cases: Vec<(&str, MessageFacts, Option<String>)> = vec![
            (
                "subject",
                facts_with(&format!("Re: hello verify#{t20}"), &[], &[]),
                Some(t20.clone()),
            ),
            (
                "subject, upper-case marker, bracketed",
                facts_with(&format!("RE: [VERIFY#{t200}]"), &[], &[]),
                Some(t200.clone()),
            ),
            ("token too short", facts_with("verify#abc", &[], &[]), None),
            (
                "token too long",
                facts_with(&format!("verify#{t201}"), &[], &[]),
                None,
            ),
            (
                "first valid subject token",
                facts_with(&format!("verify#short verify#{t20}"), &[], &[]),
                Some(t20.clone()),
            ),
            (
                "In-Reply-To",
                facts_with(
                    "Re: your mail",
                    &[&challenge_message_id(&t20, "mail.example.test")],
                    &[],
                ),
                Some(t20.clone()),
            ),
            (
                "References, after other ids",
                facts_with(
                    "",
                    &["<unrelated@example.org>"],
                    &["<root@x>", &challenge_message_id(other, "h")],
                ),
                Some(other.to_string()),
            ),
            (
                "subject before In-Reply-To",
                facts_with(
                    &format!("verify#{t20}"),
                    &[&challenge_message_id(other, "h")],
                    &[],
                ),
                Some(t20.clone()),
            ),
            (
                "message id with a bad token",
                facts_with("", &["<boxtrap.bad!token!0123456789abc@h>"], &[]),
                None,
            ),
            (
                "message id without a host",
                facts_with("", &[&format!("<boxtrap.{t20}@>")], &[]),
                None,
            ),
            (
                "message id without brackets",
                facts_with("", &[&format!("boxtrap.{t20}@h")], &[]),
                None,
            ),
            ("nothing", facts_with("hello", &["<a@b>"], &["<c@d>"]), None),
        ];
        for (name, facts, want) in cases {
            assert_eq!(reply_token(&facts).map(|r| r.token), want, "case: {name}");
        }
    }

    #[test]
    fn every_token_is_offered_once_in_order_up_to_the_limit() {
        let (a, b, c) = (token(20), token(21), token(22));
        let f = facts_with(
            &format!("Re: Fwd: verify#{a} [verify#{b}] verify#{a}"),
            &[&challenge_message_id(&b, "h")],
            &[&challenge_message_id(&c, "h")],
        );
        let got: Vec<(String, bool)> = reply_tokens(&f)
            .into_iter()
            .map(|r| (r.token, r.direct))
            .collect();
        assert_eq!(got, [(a, true), (b, true), (c, false)]);
        let many = (20..30)
            .map(|n| format!("verify#{}", token(n)))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            reply_tokens(&facts_with(&many, &[], &[])).len(),
            MAX_REPLY_TOKENS
        );
    }

    #[test]
    fn only_subject_and_in_reply_to_tokens_are_direct_replies() {
        let t = token(30);
        let id = challenge_message_id(&t, "h");
        let direct = |f: MessageFacts| reply_token(&f).map(|r| r.direct);
        assert_eq!(
            direct(facts_with(&format!("verify#{t}"), &[], &[])),
            Some(true)
        );
        assert_eq!(direct(facts_with("Re: x", &[&id], &[])), Some(true));
        assert_eq!(direct(facts_with("Re: x", &["<a@b>"], &[&id])), Some(false));
        assert_eq!(direct(facts_with("Re: x", &[], &[])), None);
    }

    #[test]
    fn challenge_message_id_round_trips_through_a_parsed_reply() {
        let token = "v1.k3".replace('.', "_") + &token(40);
        let id = challenge_message_id(&token, "mail.example.test");
        assert_eq!(id, format!("<boxtrap.{token}@mail.example.test>"));
        let reply = crlf(&[
            RECEIVED,
            "From: Bob <bob@example.org>",
            "To: alice@example.test",
            "Subject: Re: your message (edited subject)",
            &format!("In-Reply-To: {id}"),
            &format!("References: <orig@example.org>\r\n {id}"),
            "",
            "I am a person.",
        ]);
        let facts = MessageFacts::parse(&reply);
        assert_eq!(facts.in_reply_to, [id.as_str()]);
        assert_eq!(facts.references, ["<orig@example.org>".to_string(), id]);
        assert_eq!(
            reply_token(&facts),
            Some(ReplyToken {
                token,
                direct: true
            })
        );
        assert_eq!(facts.automated, None);
    }

    #[test]
    fn a_reply_quoting_the_subject_token_is_found_but_looks_like_a_challenge() {
        // The hook must look for a reply token before treating the message
        // as automated: a reply keeps `verify#` in its subject.
        let t = token(30);
        let raw = crlf(&[
            "From: bob@example.org",
            &format!("Subject: Re: hello verify#{t}"),
            "",
            "ok",
        ]);
        let facts = MessageFacts::parse(&raw);
        assert_eq!(reply_token(&facts).map(|r| r.token), Some(t));
        assert_eq!(
            facts.automated,
            Some(Automated::ChallengeResponse("Subject verify#".into()))
        );
    }
}
