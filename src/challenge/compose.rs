//! Turns a rendered template into the bytes of an outgoing mail: a
//! challenge, or a notice such as `verifyreleased`.
//!
//! This module owns the headers that make our mail an auto-reply that
//! threads under the original and is recognised as a challenge (RFC 3834,
//! RFC 5322 §3.6.4, our `X-Boxtrap-Challenge` marker), the RFC 2047 encoding
//! of non-ASCII subjects and names, and the MIME structure: a
//! multipart/alternative with the rendered text and a simple HTML part with
//! the verification link as a button. It does not own the texts
//! ([`super::templates`]), the envelope (sent from `<>` by the outbound
//! queue) or DKIM signing.
//!
//! Built with lettre's message builder, which encodes every header value
//! (a CR or LF in a value can never start a new header) and writes CRLF
//! line endings throughout.

use std::fmt::Write as _;

use crate::address::EmailAddress;
use crate::html::escape;
use lettre::Address;
use lettre::address::Envelope;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Date, Header, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox, Message, MultiPart, SinglePart};

use super::templates::{Rendered, one_line};
use crate::clock::Timestamp;

/// Longest Message-ID we write or thread to; RFC 5322 §2.1.1 caps a line at
/// 998 characters and these headers are never folded.
const MAX_MESSAGE_ID: usize = 900;

/// Our marker header: its value is the mailbox that challenged. Lets a
/// receiving boxtrap (or the owner's filters) recognise a challenge.
pub const MARKER_HEADER: &str = "X-Boxtrap-Challenge";

/// A finished mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// RFC 5322 message, CRLF line endings.
    pub data: Vec<u8>,
    /// As written in the `Message-ID:` header, with `<>`.
    pub message_id: String,
}

/// Everything a challenge or notice mail is made of.
#[derive(Debug, Clone)]
pub struct ComposeInput<'a> {
    /// Subject and plain-text body; the HTML part is derived from it.
    pub rendered: &'a Rendered,
    /// The address that was mailed (the mailbox, or the alias or extra
    /// address used), so the sender sees a reply from whom they wrote to.
    pub from_address: &'a str,
    /// The mailbox's display name ("" = none).
    pub from_name: &'a str,
    /// The sender being challenged.
    pub to: &'a str,
    /// The original's Message-ID, with `<>`; threads our mail under it.
    pub in_reply_to: Option<&'a str>,
    /// With `<>`; for challenges see [`crate::policy::facts::challenge_message_id`], which lets a
    /// reply be matched by `In-Reply-To` when its subject was changed.
    pub message_id: String,
    /// The verification link, shown as a button in the HTML part.
    pub link: Option<&'a str>,
    /// Value of the [`MARKER_HEADER`] (the mailbox address).
    pub marker: &'a str,
    /// Written as the `Date:` header.
    pub date: Timestamp,
}

/// Why a mail could not be built. Nothing is sent in that case.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ComposeError {
    #[error("bad {field} address {address:?}: {reason}")]
    BadAddress {
        field: &'static str,
        address: String,
        reason: String,
    },
    #[error("bad {field} message id {value:?}: expected <id@host> without spaces")]
    BadMessageId { field: &'static str, value: String },
    #[error("date {0:?} cannot be written as an RFC 5322 date")]
    BadDate(Timestamp),
    #[error("cannot build message: {0}")]
    Build(String),
}

/// Builds the mail.
pub fn compose(input: &ComposeInput) -> Result<Composed, ComposeError> {
    let from = Mailbox::new(
        Some(one_line(input.from_name)).filter(|n| !n.is_empty()),
        parse_address("From", input.from_address)?,
    );
    let to_address = parse_address("To", input.to)?;
    // The envelope is the outbound queue's; giving lettre one keeps it from
    // deriving its own from the To: header, which it re-parses with its
    // stricter parser.
    let envelope = Envelope::new(None, vec![to_address.clone()])
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    let to = Mailbox::new(None, to_address);
    let message_id = check_message_id("Message-ID", &input.message_id)?;
    // RFC 5322 §3.3 date, from our own formatter.
    let date = Date::parse(&input.date.rfc5322()).map_err(|_| ComposeError::BadDate(input.date))?;

    let mut builder = Message::builder()
        .envelope(envelope)
        .header(date)
        .from(from)
        .to(to)
        // RFC 2047 encoded words for non-ASCII, folded by lettre.
        .subject(one_line(&input.rendered.subject))
        .message_id(Some(message_id.to_string()));
    if let Some(original) = input.in_reply_to {
        let original = check_message_id("In-Reply-To", original)?;
        // RFC 5322 §3.6.4: a reply's In-Reply-To and References name its parent;
        // the original's own References are not ours to carry on.
        builder = builder
            .in_reply_to(original.to_string())
            .references(original.to_string());
    }
    builder = builder
        // RFC 3834 §5: an automatic response to a message.
        .raw_header(raw_header("Auto-Submitted", "auto-replied"))
        // Tells older auto-responders and list software not to answer.
        .raw_header(raw_header("Precedence", "bulk"))
        // Exchange / Outlook: suppress out-of-office and delivery reports.
        .raw_header(raw_header("X-Auto-Response-Suppress", "All"))
        .raw_header(raw_header(MARKER_HEADER, &one_line(input.marker)));

    let link = input.link.filter(|l| is_web_link(l));
    // Plain ASCII stays readable as it is (the link unbroken, for anyone
    // reading the raw .eml in the outbox); anything else is quoted-printable.
    // lettre wants 7bit lines under 76 characters (a link is longer), so the
    // body is handed over pre-encoded, after checking what RFC 5322 §2.1.1
    // asks of 7bit: ASCII without NUL or bare CR, lines under 998.
    let body = &input.rendered.body;
    let seven_bit =
        body.is_ascii() && !body.contains(['\r', '\0']) && body.lines().all(|l| l.len() <= 900);
    let text = if seven_bit {
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .header(ContentTransferEncoding::SevenBit)
            .body(Body::dangerous_pre_encoded(
                body.replace('\n', "\r\n").into_bytes(),
                ContentTransferEncoding::SevenBit,
            ))
    } else {
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(body.clone())
    };
    let html = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(html_body(input.rendered, link));
    // RFC 2046 §5.1.4: alternatives in increasing order of preference.
    let message = builder
        .multipart(MultiPart::alternative().singlepart(text).singlepart(html))
        .map_err(|e| ComposeError::Build(e.to_string()))?;

    Ok(Composed {
        data: message.formatted(),
        message_id: message_id.to_string(),
    })
}

fn parse_address(field: &'static str, address: &str) -> Result<Address, ComposeError> {
    let parsed = EmailAddress::parse_relaxed(address, true);
    parsed
        .map(|a| a.to_lettre())
        .map_err(|e| ComposeError::BadAddress {
            field,
            address: address.to_string(),
            reason: e.to_string(),
        })
}

/// RFC 5322 §3.6.4 msg-id, checked loosely: `<...@...>`, printable ASCII,
/// no spaces, short enough for one line.
fn check_message_id<'v>(field: &'static str, value: &'v str) -> Result<&'v str, ComposeError> {
    let ok = value.len() <= MAX_MESSAGE_ID
        && value.starts_with('<')
        && value.ends_with('>')
        && value.contains('@')
        && value[1..value.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    if ok {
        Ok(value)
    } else {
        Err(ComposeError::BadMessageId {
            field,
            value: value.to_string(),
        })
    }
}

fn raw_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// Only web links become buttons; anything else stays text.
fn is_web_link(link: &str) -> bool {
    let lower = link.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !link.contains(|c: char| c.is_whitespace() || c.is_control())
}

const BUTTON_STYLE: &str = "display:inline-block;padding:10px 20px;background:#1d4ed8;\
color:#ffffff;text-decoration:none;border-radius:4px;font-weight:bold";

/// The text body as HTML: paragraphs at blank lines, `<br>` at line breaks,
/// everything escaped. A line that is just the link becomes a button; the
/// link elsewhere in a line becomes a plain anchor; a link the text does
/// not show gets a button at the end.
fn html_body(rendered: &Rendered, link: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        out,
        "<title>{}</title>",
        escape(&one_line(&rendered.subject))
    );
    out.push_str("</head>\n<body style=\"font-family:sans-serif;line-height:1.5\">\n");
    let mut shown = false;
    let body = rendered.body.replace("\r\n", "\n");
    for paragraph in body.split("\n\n").map(|p| p.trim_matches('\n')) {
        if paragraph.trim().is_empty() {
            continue;
        }
        if let Some(link) = link.filter(|l| paragraph.trim() == *l) {
            out.push_str(&button(link));
            shown = true;
            continue;
        }
        out.push_str("<p>");
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                out.push_str("<br>\n");
            }
            match link.filter(|l| line.contains(*l)) {
                Some(link) => {
                    let anchor = format!("<a href=\"{href}\">{href}</a>", href = escape(link));
                    let parts: Vec<String> = line.split(link).map(escape).collect();
                    out.push_str(&parts.join(&anchor));
                    shown = true;
                }
                None => out.push_str(&escape(line)),
            }
        }
        out.push_str("</p>\n");
    }
    if let Some(link) = link.filter(|_| !shown) {
        out.push_str(&button(link));
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn button(link: &str) -> String {
    format!(
        "<p><a href=\"{}\" style=\"{BUTTON_STYLE}\">Open the confirmation page</a></p>\n",
        escape(link)
    )
}

#[cfg(test)]
mod tests {
    use mail_parser::{Addr, MessageParser, MimeHeaders};

    use super::*;
    use crate::challenge::templates::{self, TemplateName, TemplateVars};

    const TOKEN: &str = "AQAAAAEAAAAAAAAAKgAAAABrHVTBXRyaDns_QqjGHg-bLXToow";
    const LINK: &str =
        "https://mail.example.test/verify/AQAAAAEAAAAAAAAAKgAAAABrHVTBXRyaDns_QqjGHg-bLXToow";
    const DATE: Timestamp = Timestamp(1_795_788_353_000_000);

    fn rendered(vars: &TemplateVars) -> Rendered {
        templates::render(
            TemplateName::Verify,
            templates::default_text(TemplateName::Verify),
            vars,
        )
        .unwrap()
    }

    fn vars() -> TemplateVars {
        TemplateVars {
            token: TOKEN.to_string(),
            link: LINK.to_string(),
            ..TemplateVars::sample()
        }
    }

    fn input(rendered: &Rendered) -> ComposeInput<'_> {
        ComposeInput {
            rendered,
            from_address: "alice@example.test",
            from_name: "Alice Example",
            to: "bob@example.net",
            in_reply_to: Some("<original.123@example.net>"),
            message_id: crate::policy::facts::challenge_message_id(TOKEN, "mx.example.test"),
            link: Some(LINK),
            marker: "alice@example.test",
            date: DATE,
        }
    }

    fn headers_of(data: &[u8]) -> &str {
        let text = std::str::from_utf8(data).unwrap();
        &text[..text.find("\r\n\r\n").unwrap() + 2]
    }

    #[test]
    fn a_challenge_has_every_header_an_auto_reply_needs() {
        let r = rendered(&vars());
        let mail = compose(&input(&r)).unwrap();
        assert_eq!(
            mail.message_id,
            format!("<boxtrap.{TOKEN}@mx.example.test>")
        );
        let m = MessageParser::default().parse(&mail.data).unwrap();
        let raw = |name: &'static str| m.header_raw(name).map(str::trim);

        assert_eq!(raw("Date"), Some("Fri, 27 Nov 2026 14:05:53 +0000"));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Alice Example"));
        assert_eq!(from.address(), Some("alice@example.test"));
        assert_eq!(
            m.to().unwrap().first().unwrap().address(),
            Some("bob@example.net")
        );
        assert_eq!(
            m.subject(),
            Some(format!("Re: Lunch on Friday? [verify#{TOKEN}]").as_str())
        );
        assert_eq!(
            m.message_id(),
            Some(format!("boxtrap.{TOKEN}@mx.example.test").as_str())
        );
        assert_eq!(raw("In-Reply-To"), Some("<original.123@example.net>"));
        assert_eq!(raw("References"), Some("<original.123@example.net>"));
        assert_eq!(raw("Auto-Submitted"), Some("auto-replied"));
        assert_eq!(raw("Precedence"), Some("bulk"));
        assert_eq!(raw("X-Auto-Response-Suppress"), Some("All"));
        assert_eq!(raw("X-Boxtrap-Challenge"), Some("alice@example.test"));
        assert_eq!(raw("MIME-Version"), Some("1.0"));
        let ct = m.content_type().unwrap();
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative"))
        );
    }

    #[test]
    fn every_line_ends_in_crlf() {
        let r = rendered(&vars());
        let data = compose(&input(&r)).unwrap().data;
        for (i, b) in data.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(data.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
            }
            if *b == b'\r' {
                assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        assert!(data.split(|&b| b == b'\n').all(|l| l.len() <= 998));
    }

    #[test]
    fn an_ascii_text_part_is_sent_as_is_with_the_link_on_one_line() {
        let mut r = rendered(&vars());
        r.body = format!(
            "Please confirm: {}\n",
            "https://mail.example.test/verify/".to_owned() + &"A".repeat(50)
        );
        let mail = compose(&input(&r)).unwrap();
        let text = String::from_utf8_lossy(&mail.data);
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
        assert!(
            text.contains(&format!(
                "https://mail.example.test/verify/{}",
                "A".repeat(50)
            )),
            "{text}"
        );
        let m = MessageParser::default().parse(&mail.data).unwrap();
        assert_eq!(
            m.text_part(0)
                .unwrap()
                .text_contents()
                .unwrap()
                .replace("\r\n", "\n"),
            r.body
        );
    }

    #[test]
    fn the_text_part_is_exactly_the_rendered_body_in_quoted_printable() {
        let mut r = rendered(&vars());
        r.body.push_str("\nGrüße\n");
        let mail = compose(&input(&r)).unwrap();
        let m = MessageParser::default().parse(&mail.data).unwrap();
        assert_eq!(m.text_body_count(), 1);
        assert_eq!(m.html_body_count(), 1);
        let part = m.text_part(0).unwrap();
        assert_eq!(part.content_transfer_encoding(), Some("quoted-printable"));
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        assert_eq!(part.text_contents().unwrap().replace("\r\n", "\n"), r.body);
    }

    #[test]
    fn the_html_part_shows_the_link_as_a_button() {
        let r = rendered(&vars());
        let mail = compose(&input(&r)).unwrap();
        let m = MessageParser::default().parse(&mail.data).unwrap();
        let part = m.html_part(0).unwrap();
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("html")));
        let html = part.text_contents().unwrap();
        assert!(
            html.contains(&format!("<a href=\"{LINK}\" style=\"")),
            "{html}"
        );
        assert!(html.contains("Open the confirmation page</a>"));
        assert!(html.contains("Lunch on Friday?"));
        assert!(html.contains("bob@example.net"));
        assert!(html.contains("<br>"));
        // The text is escaped, not interpreted.
        let tricky = Rendered {
            subject: "s".to_string(),
            body: "Bob <b>bold</b> & co\n".to_string(),
        };
        let mail = compose(&input(&tricky)).unwrap();
        let m = MessageParser::default().parse(&mail.data).unwrap();
        let html = m.html_part(0).unwrap().text_contents().unwrap().to_string();
        assert!(
            html.contains("Bob &lt;b&gt;bold&lt;/b&gt; &amp; co"),
            "{html}"
        );
    }

    #[test]
    fn a_link_inside_a_line_is_an_anchor_and_a_missing_one_gets_a_button() {
        let inline = Rendered {
            subject: "s".to_string(),
            body: format!("Open {LINK} now, <please> & thanks\n"),
        };
        let html = html_body(&inline, Some(LINK));
        assert!(html.contains(&format!(
            "<p>Open <a href=\"{LINK}\">{LINK}</a> now, &lt;please&gt; &amp; thanks</p>"
        )));
        assert!(!html.contains("Open the confirmation page"));

        let absent = Rendered {
            subject: "s".to_string(),
            body: format!("Reply to verify#{TOKEN}\n"),
        };
        let html = html_body(&absent, Some(LINK));
        assert!(html.contains(&format!("<a href=\"{LINK}\" style=")));

        let notice = html_body(&absent, None);
        assert!(!notice.contains("<a "));
        assert!(html_body(&absent, Some("javascript:alert(1)")).contains("<a "));
        let mut i = input(&absent);
        i.link = Some("javascript:alert(1)");
        let m = compose(&i).unwrap();
        let parsed = MessageParser::default().parse(&m.data).unwrap();
        assert!(!parsed.body_html(0).unwrap().contains("<a "));
    }

    #[test]
    fn non_ascii_subject_and_name_are_encoded_and_round_trip() {
        let v = TemplateVars {
            subject: "Grüße aus Köln — 日本語の件名".to_string(),
            ..vars()
        };
        let r = rendered(&v);
        let mut i = input(&r);
        i.from_name = "Zoë Ångström";
        let mail = compose(&i).unwrap();
        let headers = headers_of(&mail.data);
        assert!(headers.is_ascii(), "{headers}");
        assert!(headers.contains("=?utf-8?"));
        let m = MessageParser::default().parse(&mail.data).unwrap();
        assert_eq!(
            m.subject(),
            Some(format!("Re: Grüße aus Köln — 日本語の件名 [verify#{TOKEN}]").as_str())
        );
        assert_eq!(
            m.from().unwrap().first().unwrap().name(),
            Some("Zoë Ångström")
        );
        assert!(m.body_text(0).unwrap().contains("Grüße aus Köln"));
    }

    #[test]
    fn header_injection_through_name_subject_or_marker_is_impossible() {
        let r = Rendered {
            subject: "hi\r\nBcc: evil@x.test".to_string(),
            body: "text\n".to_string(),
        };
        let mut i = input(&r);
        i.from_name = "Alice\r\nBcc: evil@x.test\r\n\r\nbody";
        i.marker = "alice@example.test\nX-Injected: 1";
        let mail = compose(&i).unwrap();
        let headers = headers_of(&mail.data);
        for line in headers.lines() {
            assert!(!line.starts_with("Bcc"), "{headers}");
            assert!(!line.starts_with("X-Injected"), "{headers}");
        }
        let m = MessageParser::default().parse(&mail.data).unwrap();
        assert!(m.header("Bcc").is_none());
        assert_eq!(m.subject(), Some("hi Bcc: evil@x.test"));
        assert_eq!(
            m.from().unwrap().first().map(Addr::address),
            Some(Some("alice@example.test"))
        );
        assert_eq!(m.text_body_count(), 1);
        assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n"), "text\n");
    }

    #[test]
    fn bad_addresses_and_message_ids_are_refused() {
        let r = rendered(&vars());
        let mut i = input(&r);
        i.to = "bob@example.net\r\nBcc: evil@x.test";
        assert!(matches!(
            compose(&i),
            Err(ComposeError::BadAddress { field: "To", .. })
        ));
        let mut i = input(&r);
        i.from_address = "not an address";
        assert!(matches!(
            compose(&i),
            Err(ComposeError::BadAddress { field: "From", .. })
        ));
        for bad in ["original@x", "<a b@x>", "<a@x>\r\nBcc: e@x", "<>", "<a@x>>"] {
            let mut i = input(&r);
            i.in_reply_to = Some(bad);
            assert!(
                matches!(
                    compose(&i),
                    Err(ComposeError::BadMessageId {
                        field: "In-Reply-To",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let mut i = input(&r);
        i.message_id = "<x y@z>".to_string();
        assert!(matches!(
            compose(&i),
            Err(ComposeError::BadMessageId {
                field: "Message-ID",
                ..
            })
        ));
    }

    #[test]
    fn a_notice_without_original_or_link_has_no_threading_headers() {
        let r = templates::render(
            TemplateName::VerifyReleased,
            templates::default_text(TemplateName::VerifyReleased),
            &vars(),
        )
        .unwrap();
        let mut i = input(&r);
        i.in_reply_to = None;
        i.link = None;
        i.from_name = "";
        i.message_id = "<notice.1@mx.example.test>".to_string();
        let mail = compose(&i).unwrap();
        let m = MessageParser::default().parse(&mail.data).unwrap();
        assert!(m.header("In-Reply-To").is_none());
        assert!(m.header("References").is_none());
        assert_eq!(m.from().unwrap().first().unwrap().name(), None);
        assert_eq!(
            m.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert!(!m.body_html(0).unwrap().contains("<a "));
    }
}
