//! One held message for its owner: `/quarantine/{id}` and its parts.
//!
//! The page shows the headers (every value escaped, control and
//! direction-changing characters made visible), the text part in a
//! `<pre>`, the HTML part in an `<iframe sandbox>` whose document
//! (`/quarantine/{id}/html`) is sanitised with ammonia and served with a
//! CSP of its own (no scripts, remote images only on request, https
//! only), the attachments (downloadable only as `application/octet-stream`
//! attachments), the raw source and why the message was held, with the
//! list's actions. The mailbox comes only from the session: another
//! mailbox's id is 404 on every route.

use super::WebState;
use super::owner::{
    challenge_text, expires_text, html, internal, message, printable, signed_in, size_text,
};
use super::session::{SignedIn, secure_headers};
use super::settings::local_time;
use crate::clock::Timestamp;
use crate::store::held::{HeldState, HeldSummary};
use crate::store::search::HeldQuery;
use crate::store::web::{HeldCursor, HeldRow};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mail_parser::{HeaderValue as MailValue, Message, MessageParser, MimeHeaders};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The CSP of the message page: ours, plus the frame for the HTML part.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The CSP of the sanitised HTML part: no scripts, no fetches, inline
/// styles, images only inline (`data:`); framed only by our own page.
const HTML_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox";
/// The same with remote images over https, on the owner's request.
const HTML_CSP_IMAGES: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox";
/// Shows each link's real target after it, in the framed HTML part.
const LINK_STYLE: &str = "a[href]::after{content:\" <\" attr(href) \">\";color:#444;\
     font-size:.9em;overflow-wrap:anywhere}";

/// The message routes, merged into the owner's.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/quarantine/{id}", get(view))
        .route("/quarantine/{id}/html", get(html_part))
        .route("/quarantine/{id}/raw", get(raw))
        .route("/quarantine/{id}/eml", get(eml))
        .route("/quarantine/{id}/attachment/{n}", get(attachment))
}

#[derive(Deserialize)]
struct ImagesQuery {
    images: Option<String>,
}

impl ImagesQuery {
    fn on(&self) -> bool {
        self.images.as_deref() == Some("1")
    }
}

/// A held message of the session's mailbox, with its stored bytes.
struct Loaded {
    s: SignedIn,
    held: HeldSummary,
    data: Vec<u8>,
}

fn not_found(s: &SignedIn) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "That message is not in your quarantine.",
        Some(s),
    )
}

/// Signs in (or redirects to sign-in, back to `back`), then loads the
/// message if it is this mailbox's; 404 otherwise.
async fn load(
    st: &WebState,
    headers: &HeaderMap,
    id: &str,
    back: &str,
) -> Result<Loaded, Response> {
    let s = signed_in(st, headers, back).await?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(not_found(&s));
    };
    match st.store.held_of_mailbox(s.session.mailbox_id, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(not_found(&s)),
        Err(e) => return Err(internal(&e)),
    }
    let held = match st.store.held(id).await {
        Ok(Some(h)) if h.mailbox_id == s.session.mailbox_id => h,
        Ok(_) => return Err(not_found(&s)),
        Err(e) => return Err(internal(&e)),
    };
    let data = match st.store.held_data(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(not_found(&s)),
        Err(e) => return Err(internal(&e)),
    };
    Ok(Loaded { s, held, data })
}

/// The path a signed-out request comes back to: ids are digits only.
fn back(id: &str, rest: &str) -> String {
    let id: String = id.chars().filter(char::is_ascii_digit).take(20).collect();
    format!("/quarantine/{id}{rest}")
}

fn parse(data: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(data)
}

// ---- the page --------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/held_message.html")]
struct Page<'a> {
    title: String,
    who: &'a str,
    csrf: &'a str,
    id: i64,
    parsed: bool,
    short: Vec<(&'static str, String)>,
    all: Vec<(String, String)>,
    text: String,
    has_text: bool,
    has_html: bool,
    images: bool,
    attachments: Vec<Attachment>,
    received: String,
    size: String,
    reason: String,
    auth_results: String,
    spam: String,
    spam_report: String,
    challenge: String,
    expires: String,
    releasing: bool,
    /// When the owner deleted it and when it goes for good (`""`: not
    /// deleted).
    deleted: String,
    purged: String,
    can_allow: bool,
    from_addr: String,
    /// The next older held message (`0`: none).
    older: i64,
    /// The next newer held message (`0`: none).
    newer: i64,
}

struct Attachment {
    n: usize,
    name: String,
    ctype: String,
    /// What its bytes are, by their signature.
    detected: String,
    /// The bytes are something else than the declared type says (an
    /// "invoice.pdf" that is a program).
    mismatch: bool,
    size: usize,
    sha256: String,
}

/// What an attachment's bytes are, by their leading signature (the
/// `infer` crate's table of file magic), and whether that contradicts
/// the declared `Content-Type`: a program declared as anything but a
/// program, or another kind of thing (an image declared as a document).
/// `application/octet-stream` and no declaration contradict nothing.
fn detected_type(body: &[u8], declared: &str) -> (String, bool) {
    let Some(t) = infer::get(body) else {
        let text = !body.contains(&0) && std::str::from_utf8(body).is_ok();
        let what = if text {
            "text (no file signature)"
        } else {
            "unknown (no known file signature)"
        };
        return (what.to_owned(), false);
    };
    let declared = declared.to_ascii_lowercase();
    let generic = declared == "(not declared)" || declared == "application/octet-stream";
    let top = |m: &str| m.split('/').next().unwrap_or("").to_owned();
    let program = |m: &str| {
        [
            "msdownload",
            "executable",
            "dosexec",
            "msdos-program",
            "x-elf",
            "mach",
            "java-archive",
        ]
        .iter()
        .any(|p| m.contains(p))
    };
    let mismatch = !generic
        && declared != t.mime_type()
        && if t.matcher_type() == infer::MatcherType::App {
            !program(&declared)
        } else {
            top(&declared) != top(t.mime_type())
        };
    (t.mime_type().to_owned(), mismatch)
}

async fn view(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ImagesQuery>,
) -> Response {
    let rest = if q.on() { "?images=1" } else { "" };
    let l = match load(&st, &headers, &id, &back(&id, rest)).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mailbox_id = l.s.session.mailbox_id;
    let deleted = l.held.state == HeldState::Deleted;
    // Deleted mail is its own list (`in:deleted`).
    let list = if deleted {
        HeldQuery::deleted()
    } else {
        HeldQuery::default()
    };
    // This message and the next older one, from the list's keyset query
    // (the newer one below likewise).
    let rows: Vec<HeldRow> = match st
        .store
        .held_page(
            mailbox_id,
            &list,
            Some(HeldCursor {
                arrived_at: l.held.arrived_at,
                id: l.held.id.saturating_add(1),
            }),
            2,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    let Some(row) = rows.iter().find(|r| r.id == l.held.id) else {
        return not_found(&l.s);
    };
    let older = rows.iter().find(|r| r.id != l.held.id).map_or(0, |r| r.id);
    let newer = match st
        .store
        .held_newer(
            mailbox_id,
            &list,
            HeldCursor {
                arrived_at: l.held.arrived_at,
                id: l.held.id,
            },
        )
        .await
    {
        Ok(n) => n.unwrap_or(0),
        Err(e) => return internal(&e),
    };
    let (keep_days, tz) = match st.store.mailbox_settings(mailbox_id).await {
        Ok(m) => (m.keep_days, m.time_zone),
        Err(e) => return internal(&e),
    };
    let now = st.sessions.now();
    let h = &l.held;
    if row.seen_at.is_none()
        && let Err(e) = st.store.mark_seen(mailbox_id, &[h.id], true, now).await
    {
        return internal(&e);
    }
    let keep_deleted = i64::try_from(st.quarantine.keep_deleted().as_secs()).unwrap_or(i64::MAX);
    let msg = parse(&l.data);
    let mut short = Vec::new();
    let mut all = Vec::new();
    let mut text = String::new();
    let mut has_text = false;
    let mut has_html = false;
    let mut attachments = Vec::new();
    if let Some(m) = &msg {
        for (label, name) in [
            ("From", "From"),
            ("To", "To"),
            ("Cc", "Cc"),
            ("Date", "Date"),
            ("Subject", "Subject"),
            ("Message-ID", "Message-ID"),
            ("Return-Path", "Return-Path"),
        ] {
            if let Some(hd) = m
                .headers()
                .iter()
                .find(|x| x.name.as_str().eq_ignore_ascii_case(name))
            {
                short.push((label, printable(&header_text(hd, &l.data))));
            }
        }
        for hd in m.headers() {
            all.push((
                printable(hd.name.as_str()),
                printable(&raw_value(hd, &l.data)),
            ));
        }
        if let Some(p) = m.text_part(0)
            && p.is_text()
            && !p.is_text_html()
            && let Some(t) = m.body_text(0)
        {
            has_text = true;
            text = visible(&t);
        }
        has_html = m.html_part(0).is_some_and(|p| p.is_text_html());
        for (n, p) in m.attachments().enumerate() {
            let body = p.contents();
            let ctype = p.content_type().map_or_else(
                || "(not declared)".to_owned(),
                |c| match c.subtype() {
                    Some(s) => printable(&format!("{}/{}", c.ctype(), s)),
                    None => printable(c.ctype()),
                },
            );
            let (detected, mismatch) = detected_type(body, &ctype);
            attachments.push(Attachment {
                n,
                name: p
                    .attachment_name()
                    .map_or_else(|| "(no name)".to_owned(), printable),
                ctype,
                detected,
                mismatch,
                size: body.len(),
                sha256: hex(&Sha256::digest(body)),
            });
        }
    }
    let env = if h.env_sender.is_empty() {
        "<> (a bounce or notice)".to_owned()
    } else {
        printable(&h.env_sender)
    };
    short.push(("Envelope sender", env));
    let spam = match h.spam_score {
        Some(s) => format!("{:.1}", s as f64 / 10.0),
        None => "not scored".to_owned(),
    };
    let title = subject_text(h);
    let page = Page {
        title,
        who: &l.s.session.address,
        csrf: &l.s.session.csrf_token,
        id: h.id,
        parsed: msg.is_some(),
        short,
        all,
        text,
        has_text,
        has_html,
        images: q.on(),
        attachments,
        received: local_time(h.arrived_at, &tz),
        size: size_text(h.size),
        reason: printable(&h.reason_detail),
        auth_results: printable(&h.auth_results),
        spam,
        spam_report: printable(&h.spam_report),
        challenge: challenge_text(row, &tz),
        expires: expires_text(h.arrived_at.plus_secs(keep_days * 86400), now, &tz),
        releasing: h.state == HeldState::Releasing,
        deleted: row
            .deleted_at
            .map_or(String::new(), |t| local_time(Timestamp(t), &tz)),
        purged: row.deleted_at.map_or(String::new(), |t| {
            expires_text(Timestamp(t).plus_secs(keep_deleted), now, &tz)
        }),
        can_allow: !h.sender.is_empty(),
        from_addr: printable(&h.sender),
        older,
        newer,
    };
    let mut r = html(StatusCode::OK, page.render(), true);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    r
}

/// The message's subject as the page shows it.
fn subject_text(h: &HeldSummary) -> String {
    if h.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        printable(&h.subject)
    }
}

/// A header's value as written (unfolded), for "all headers".
fn raw_value(h: &mail_parser::Header<'_>, data: &[u8]) -> String {
    let v = data
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default();
    String::from_utf8_lossy(v)
        .replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_owned()
}

/// A header's value decoded (encoded words, addresses, dates).
fn header_text(h: &mail_parser::Header<'_>, data: &[u8]) -> String {
    match &h.value {
        MailValue::Text(t) => t.to_string(),
        MailValue::TextList(l) => l.join(", "),
        MailValue::DateTime(d) => d.to_rfc822(),
        MailValue::Address(a) => a
            .iter()
            .map(|x| match (x.name(), x.address()) {
                (Some(n), Some(a)) => format!("{n} <{a}>"),
                (None, Some(a)) => a.to_owned(),
                (Some(n), None) => n.to_owned(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => raw_value(h, data),
    }
}

/// Body text with control and direction characters made visible, line
/// breaks and tabs kept.
fn visible(s: &str) -> String {
    s.lines()
        .map(|l| {
            l.split('\t')
                .map(|p| {
                    p.chars()
                        .map(|c| printable(c.encode_utf8(&mut [0; 4])))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- the HTML part ---------------------------------------------------------

/// The HTML part made safe: ammonia's allow-list (no scripts, event
/// handlers, styles, forms or frames; relative URLs dropped; links get
/// `rel="noopener noreferrer"`; the mail's own `<title>` dropped with its
/// text, which is no body text), in a document that shows each link's
/// target. `title` (plain text, escaped here) names the document for
/// screen readers; `lang` is its language tag ([`part_lang`]).
pub fn sanitise(html: &str, title: &str, lang: &str) -> String {
    let clean = ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .url_relative(ammonia::UrlRelative::Deny)
        .add_clean_content_tags(["title"])
        .clean(html)
        .to_string();
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title>\
         <style>{LINK_STYLE}</style></head>\
         <body>{clean}</body></html>\n",
        lang = crate::html::escape(lang),
        title = crate::html::escape(title),
    )
}

/// The language of a mail's HTML part, for its document's `lang`: the
/// first tag of its `Content-Language` (the part's, else the message's,
/// RFC 3282) when it is a well-formed BCP 47 tag, else `und`
/// ("undetermined", BCP 47): a sender's language is not the owner's.
pub fn part_lang(m: &Message<'_>) -> String {
    let declared = m
        .html_part(0)
        .and_then(|p| p.content_language().as_text_list())
        .or_else(|| m.content_language().as_text_list())
        .and_then(|l| l.first().map(|t| t.trim().to_owned()));
    match declared {
        Some(t) if is_language_tag(&t) => t,
        _ => "und".to_owned(),
    }
}

/// A BCP 47 tag's shape: subtags of 1 to 8 letters or digits joined by
/// `-`, the first of 2 to 8 letters.
fn is_language_tag(t: &str) -> bool {
    let mut parts = t.split('-');
    let first = parts.next().unwrap_or_default();
    (2..=8).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && t.len() <= 35
}

async fn html_part(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ImagesQuery>,
) -> Response {
    let l = match load(&st, &headers, &id, &back(&id, "")).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let title = format!("HTML part of {}", subject_text(&l.held));
    let body = parse(&l.data)
        .filter(|m| m.html_part(0).is_some_and(|p| p.is_text_html()))
        .and_then(|m| m.body_html(0).map(|h| sanitise(&h, &title, &part_lang(&m))))
        .unwrap_or_else(|| sanitise("<p>This message has no HTML part.</p>", &title, "en"));
    let mut r = (StatusCode::OK, body).into_response();
    secure_headers(&mut r, true);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if q.on() { HTML_CSP_IMAGES } else { HTML_CSP }),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

// ---- downloads -------------------------------------------------------------

/// A download: the bytes, the type, always as an attachment.
fn download(body: Vec<u8>, ctype: &'static str, disposition: &str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    secure_headers(&mut r, true);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    r
}

/// `Content-Disposition` for a file name from mail: RFC 6266 with the
/// RFC 5987 encoding, never the raw name. Control, direction-changing and
/// path characters become `_`.
pub fn attachment_disposition(name: &str) -> String {
    let mut enc = String::new();
    for c in name.chars().take(200) {
        let c = match c {
            '/' | '\\' => '_',
            c if printable(c.encode_utf8(&mut [0; 4])) != c.to_string() => '_',
            c => c,
        };
        let mut buf = [0; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                enc.push(b as char);
            } else {
                enc.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if enc.is_empty() || enc.trim_matches('.').is_empty() {
        enc = "attachment".to_owned();
    }
    format!("attachment; filename*=UTF-8''{enc}")
}

async fn attachment(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, String)>,
) -> Response {
    let l = match load(&st, &headers, &id, &back(&id, "")).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Ok(n) = n.parse::<usize>() else {
        return not_found(&l.s);
    };
    let Some(m) = parse(&l.data) else {
        return not_found(&l.s);
    };
    let Some(p) = m.attachments().nth(n) else {
        return not_found(&l.s);
    };
    let name = p
        .attachment_name()
        .map_or_else(|| format!("attachment-{n}"), str::to_owned);
    download(
        p.contents().to_vec(),
        "application/octet-stream",
        &attachment_disposition(&name),
    )
}

async fn raw(State(st): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let l = match load(&st, &headers, &id, &back(&id, "/raw")).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let body = String::from_utf8_lossy(&l.data).into_owned().into_bytes();
    let mut r = download(body, "text/plain; charset=utf-8", "inline");
    r.headers_mut().remove(header::CONTENT_DISPOSITION);
    r
}

async fn eml(State(st): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let l = match load(&st, &headers, &id, &back(&id, "/eml")).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let name = format!("attachment; filename=\"message-{}.eml\"", l.held.id);
    download(l.data, "message/rfc822", &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_typed_by_their_bytes_and_a_disguise_is_marked() {
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
        const EXE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff";
        let pe = "application/vnd.microsoft.portable-executable";
        for (body, declared, want) in [
            (PDF, "application/pdf", ("application/pdf", false)),
            (PNG, "image/png", ("image/png", false)),
            (PNG, "image/jpeg", ("image/png", false)),
            (PNG, "application/octet-stream", ("image/png", false)),
            (PNG, "(not declared)", ("image/png", false)),
            (PNG, "application/pdf", ("image/png", true)),
            (EXE, "application/pdf", (pe, true)),
            (EXE, "image/jpeg", (pe, true)),
            (EXE, "application/x-msdownload", (pe, false)),
            (EXE, "Application/X-MSDOS-Program", (pe, false)),
            (
                b"plain words\r\n",
                "text/plain",
                ("text (no file signature)", false),
            ),
            (
                b"\0\x01\x02",
                "application/pdf",
                ("unknown (no known file signature)", false),
            ),
        ] {
            let (what, mismatch) = detected_type(body, declared);
            assert_eq!((what.as_str(), mismatch), want, "{declared}");
        }
    }

    #[test]
    fn file_names_are_encoded_never_raw() {
        assert_eq!(
            attachment_disposition("a \"b\"<c>\r\n\u{202e}é.txt"),
            "attachment; filename*=UTF-8''a%20%22b%22%3Cc%3E___%C3%A9.txt"
        );
        assert_eq!(
            attachment_disposition("../../etc/passwd"),
            "attachment; filename*=UTF-8''.._.._etc_passwd"
        );
        assert_eq!(
            attachment_disposition(""),
            "attachment; filename*=UTF-8''attachment"
        );
    }

    #[test]
    fn sanitised_html_has_no_script_or_handlers() {
        let out = sanitise(
            "<script>alert(1)</script><img src=x onerror=alert(2)>\
             <a href=\"https://evil.example/\" onclick=\"x()\">hi</a><form><input></form>",
            "HTML part of <b>",
            "en",
        );
        assert!(
            out.contains("<title>HTML part of &lt;b&gt;</title>"),
            "{out}"
        );
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("alert"), "{out}");
        assert!(
            !out.contains("onerror") && !out.contains("onclick"),
            "{out}"
        );
        assert!(!out.contains("<form"), "{out}");
        assert!(out.contains("rel=\"noopener noreferrer\""), "{out}");
    }

    #[test]
    fn the_mails_title_is_no_body_text_and_the_language_is_declared_or_und() {
        let out = sanitise(
            "<html><head><title>Shop news</title></head><body><p>Sale</p></body></html>",
            "HTML part of Spring sale",
            "de-CH",
        );
        assert!(!out.contains("Shop news"), "{out}");
        assert!(
            out.contains("<p>Sale</p>") && out.contains("lang=\"de-CH\""),
            "{out}"
        );
        let lang = |headers: &str| {
            let raw = format!("{headers}Content-Type: text/html\r\n\r\n<p>x</p>\r\n");
            part_lang(&MessageParser::default().parse(raw.as_bytes()).unwrap())
        };
        assert_eq!(lang("Content-Language: fr, en\r\n"), "fr");
        assert_eq!(lang(""), "und");
        assert_eq!(lang("Content-Language: \"><script>\r\n"), "und");
        assert_eq!(lang("Content-Language: x\r\n"), "und");
    }

    #[test]
    fn svg_math_styles_and_remote_css_are_dropped() {
        let out = sanitise(
            "<svg><animate onbegin=alert(1) attributeName=href to=javascript:alert(2)></svg>\
             <math><annotation-xml encoding=text/html><img src=x onerror=alert(3)></annotation-xml></math>\
             <style>@import url(http://t.example/a.css)</style>\
             <p style=\"background:url(http://t.example/b)\">x</p><a href=\"javascript:alert(4)\">j</a>",
            "t",
            "und",
        );
        for bad in [
            "<svg",
            "<math",
            "alert",
            "url(http",
            "@import",
            "javascript:",
        ] {
            assert!(!out.contains(bad), "{bad:?} in {out}");
        }
    }
}
