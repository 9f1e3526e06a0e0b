//! The owner's digest of newly held mail.
//!
//! [`Digests::run_once`] (every `[challenge] sweep_interval` from `serve`,
//! by hand in tests) sends each mailbox whose digest is due one mail listing only the
//! mail held since its last digest: the count, the newest [`TOP_ITEMS`]
//! (received, From, subject, why held, the challenge's state) and "and N
//! more". It goes to the owner's own Maildir through the normal local
//! delivery (never the outbound queue), from `<>`, with `Auto-Submitted:
//! auto-generated`, as text and HTML (every field from the held mail is
//! attacker-written: the HTML part escapes it, both parts drop control
//! characters and cut long values). Nothing new, no mail; except that a
//! full quarantine (or one at [`NEAR_FULL_PERCENT`] of its quota) is said
//! first, and a full one gets a digest even with nothing new, at most once
//! a day.
//!
//! Each item carries signed links ([`token`]: review, deliver), and the
//! digest one "review all" link. A link opens a confirmation page
//! (`/digest/<token>`, served by [`crate::web`]); GET shows and changes
//! nothing, only the page's button (a POST carrying the page's hidden
//! field) acts. Mail held for a high spam score gets no deliver link.
//!
//! What the links do is here ([`Digests::open`], [`Digests::deliver`],
//! [`Digests::deliver_all`]); the pages are the web module's.

pub mod token;

use crate::challenge::token::{Keyring, TokenError};
use crate::clock::Timestamp;
use crate::delivery::LocalCopy;
use crate::html::escape;
use crate::quarantine::{Quarantine, QuarantineError};
use crate::store::StoreError;
use crate::store::digest::{DigestItem, DigestState};
use crate::store::held::{HeldState, HeldSummary};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use token::{DigestAction, DigestClaims, DigestTokenParts};

/// Items a digest lists in full; the rest are counted ("and N more").
pub const TOP_ITEMS: i64 = 20;

/// At this share of its quota (messages or bytes), the digest warns that
/// the quarantine is nearly full.
pub const NEAR_FULL_PERCENT: i64 = 90;

/// The most items a "review all" page shows and delivers.
pub const REVIEW_ALL_MAX: i64 = 500;

/// A full quarantine gets a digest at most this often (seconds).
const FULL_WARNING_EVERY: i64 = 86400;

/// Longest value (in characters) a digest shows of a subject or name.
const FIELD_MAX: usize = 120;

/// Why a digest pass or a link failed.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    /// The digest could not be written into the owner's Maildir.
    #[error("digest delivery failed: {0}")]
    Deliver(std::io::Error),
}

/// What one digest pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestReport {
    /// Digests delivered.
    pub sent: usize,
    /// Digests that could not be written into the owner's Maildir.
    pub failed: usize,
}

/// The digest: its pass, and what its links do.
#[derive(Clone)]
pub struct Digests {
    quarantine: Arc<Quarantine>,
}

/// A digest link whose token verified.
#[derive(Debug, Clone)]
pub struct Opened {
    pub action: DigestAction,
    pub mailbox_id: i64,
    /// The mailbox's address.
    pub mailbox: String,
    /// Review, deliver: the message, if it is still in the quarantine.
    pub held: Option<DigestItem>,
    /// Review all: the digest's messages still in the quarantine.
    pub items: Vec<DigestItem>,
    /// The spam score (tenths) at or above which mail gets no deliver link.
    pub high_score_at: Option<i64>,
    /// Days the mailbox keeps held mail (when each message expires).
    pub keep_days: i64,
    /// The value the confirmation form must carry back.
    pub confirmation: String,
    parts: DigestTokenParts,
    token: String,
}

/// What a deliver link's POST did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Delivered now.
    Now,
    /// Gone from the quarantine already (delivered before, deleted, expired).
    Already,
    /// Held for a high spam score: not deliverable by link.
    HighScore,
}

/// What a "review all" POST did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveredAll {
    pub delivered: usize,
    /// Left held for their high spam score.
    pub kept: usize,
}

impl Digests {
    pub fn new(quarantine: Arc<Quarantine>) -> Digests {
        Digests { quarantine }
    }

    fn keyring(&self) -> Keyring {
        self.quarantine.challenges().keyring()
    }

    fn now(&self) -> Timestamp {
        self.quarantine.clock().now()
    }

    /// The server's public web address, as challenge links use it.
    fn base_url(&self) -> String {
        let verify = self.quarantine.challenges().link("");
        verify
            .strip_suffix("/verify/")
            .map(str::to_owned)
            .unwrap_or(verify)
    }

    /// A digest link's full URL.
    pub fn link(&self, token: &str) -> String {
        format!("{}/digest/{token}", self.base_url())
    }

    /// One pass: every due mailbox gets its digest.
    pub async fn run_once(&self) -> Result<DigestReport, DigestError> {
        let mut report = DigestReport::default();
        let store = self.quarantine.store();
        for s in store.digest_mailboxes().await? {
            match self.send_if_due(&s).await {
                Ok(true) => report.sent += 1,
                Ok(false) => {}
                Err(e) => {
                    report.failed += 1;
                    tracing::error!(mailbox = %s.address, error = %e, "digest failed");
                }
            }
        }
        Ok(report)
    }

    /// Runs [`Digests::run_once`] every `interval` (`serve` gives it the
    /// sweeper's, `[challenge] sweep_interval`), the first time one
    /// interval after start, until shutdown.
    pub async fn run(self, interval: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
            if let Err(e) = self.run_once().await {
                tracing::error!(error = %e, "digest pass failed");
            }
        }
    }

    async fn send_if_due(&self, s: &DigestState) -> Result<bool, DigestError> {
        let Some(period) = s.digest.period_secs() else {
            return Ok(false);
        };
        let now = self.now();
        let store = self.quarantine.store();
        let (new_count, upto) = store.held_after(s.mailbox_id, s.last_held).await?;
        let fill = self.quarantine.quarantine_fill(s.mailbox_id).await?;
        let quota = fill.as_ref().map(Fill::of).unwrap_or(Fill::Room);
        let period_due = s
            .last_at
            .is_none_or(|t| now.0 >= t.saturating_add(period.saturating_mul(1_000_000)));
        let full_due = quota == Fill::Full
            && s.full_at.is_none_or(|t| {
                now.0 >= t.saturating_add(FULL_WARNING_EVERY.saturating_mul(1_000_000))
            });
        let due = full_due || (period_due && new_count > 0);
        if !due {
            return Ok(false);
        }
        let upto = upto.max(s.last_held);
        if !store
            .claim_digest(s.mailbox_id, s.last_at, now, upto, quota == Fill::Full)
            .await?
        {
            return Ok(false);
        }
        let items = if new_count > 0 {
            store
                .digest_items(s.mailbox_id, s.last_held, upto, TOP_ITEMS)
                .await?
        } else {
            Vec::new()
        };
        let data = self.compose(s, &items, new_count, upto, quota, fill.as_ref(), now);
        let copy = LocalCopy {
            sender: String::new(),
            mailbox: s.address.clone(),
            unique: format!("D{}M{}", now.0, s.mailbox_id),
            arrival_secs: now.secs(),
            data: Arc::new(data),
        };
        if let Err(e) = self.quarantine.delivery().deliver_once(copy).await {
            // Undone, so the next pass tries again.
            store.unclaim_digest(s, now).await?;
            tracing::error!(mailbox = %s.address, error = %e,
                "digest could not be written into the mailbox; the next pass tries again");
            return Err(DigestError::Deliver(e));
        }
        tracing::info!(mailbox = %s.address, held = new_count, "digest delivered");
        Ok(true)
    }

    fn item_token(&self, s: &DigestState, item: &HeldSummary, action: DigestAction) -> String {
        token::issue(
            &self.keyring(),
            &DigestClaims {
                action,
                mailbox_id: s.mailbox_id,
                mailbox: &s.address,
                first: item.id,
                last: item.id,
                expires: expiry(item.arrived_at, s.keep_days),
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn compose(
        &self,
        s: &DigestState,
        items: &[DigestItem],
        count: i64,
        upto: i64,
        quota: Fill,
        fill: Option<&crate::quarantine::sweep::QuarantineFull>,
        now: Timestamp,
    ) -> Vec<u8> {
        let mut text = String::new();
        let mut html = String::new();
        let address = clean(&s.address);
        let _ = writeln!(text, "Quarantine digest for {address}\n");
        let _ = writeln!(
            html,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Quarantine digest</title></head>\n\
             <body style=\"font-family:sans-serif\">\n<h1 style=\"font-size:1.2em\">Quarantine digest for {}</h1>",
            escape(&address)
        );
        if let Some(warning) = quota.warning(fill) {
            let _ = writeln!(text, "{warning}\n");
            let _ = writeln!(
                html,
                "<p style=\"border:2px solid #b00;padding:.5em\"><strong>{}</strong></p>",
                escape(&warning)
            );
        }
        let summary = match count {
            0 => "No new mail was held since the last digest.".to_owned(),
            1 => "1 new message was held since the last digest.".to_owned(),
            n => format!("{n} new messages were held since the last digest."),
        };
        let _ = writeln!(text, "{summary}\n");
        let _ = writeln!(html, "<p>{}</p>", escape(&summary));
        if !items.is_empty() {
            let _ = writeln!(html, "<ol>");
        }
        for (n, item) in items.iter().enumerate() {
            let h = &item.held;
            let from = from_line(h);
            let subject = subject_of(h);
            let why = why_held(h);
            let challenge = challenge_words(item);
            let review = self.link(&self.item_token(s, h, DigestAction::Review));
            let deliver = (!high_score(h, s.spam_no_challenge_at))
                .then(|| self.link(&self.item_token(s, h, DigestAction::Deliver)));
            let _ = writeln!(
                text,
                "{}. {} UTC\n   From: {from}\n   Subject: {subject}\n   Why held: {why}\n   Challenge: {challenge}\n   Review: {review}",
                n + 1,
                h.arrived_at.log_format()
            );
            match &deliver {
                Some(url) => {
                    let _ = writeln!(text, "   Deliver: {url}\n");
                }
                None => {
                    let _ = writeln!(
                        text,
                        "   (High spam score: no one-click deliver; review it first.)\n"
                    );
                }
            }
            let _ = writeln!(
                html,
                "<li style=\"margin-bottom:1em\"><strong>{}</strong><br>\nFrom: {}<br>\n\
                 Received: {} UTC<br>\nWhy held: {}<br>\nChallenge: {}<br>\n<a href=\"{}\">Review</a>",
                escape(&subject),
                from_html(h),
                escape(&h.arrived_at.log_format()),
                escape(&why),
                escape(&challenge),
                escape(&review),
            );
            match &deliver {
                Some(url) => {
                    let _ = writeln!(
                        html,
                        " &middot; <a href=\"{}\">Deliver</a></li>",
                        escape(url)
                    );
                }
                None => {
                    let _ = writeln!(
                        html,
                        " &middot; <em>high spam score: no one-click deliver</em></li>"
                    );
                }
            }
        }
        if !items.is_empty() {
            let _ = writeln!(html, "</ol>");
        }
        let more = count - items.len() as i64;
        if more > 0 {
            let _ = writeln!(text, "... and {more} more.\n");
            let _ = writeln!(html, "<p>&hellip; and {more} more.</p>");
        }
        if count > 0 {
            let all = token::issue(
                &self.keyring(),
                &DigestClaims {
                    action: DigestAction::ReviewAll,
                    mailbox_id: s.mailbox_id,
                    mailbox: &s.address,
                    first: s.last_held,
                    last: upto,
                    expires: expiry(now, s.keep_days),
                },
            );
            let url = self.link(&all);
            let _ = writeln!(text, "Review all in this digest: {url}\n");
            let _ = writeln!(
                html,
                "<p><a href=\"{}\">Review all in this digest</a></p>",
                escape(&url)
            );
        }
        let note = "Each link opens a page that says what it will do; nothing happens \
                    until you press the button on that page. The links work until the \
                    message expires from the quarantine.";
        let _ = writeln!(text, "{note}");
        let _ = writeln!(
            html,
            "<p style=\"color:#555;font-size:.9em\">{}</p>\n</body></html>",
            escape(note)
        );

        let domain = s.address.rsplit_once('@').map_or("localhost", |(_, d)| d);
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce[..]);
        let boundary: String = nonce.iter().fold("=_digest_".to_owned(), |mut b, x| {
            let _ = write!(b, "{x:02x}");
            b
        });
        let subject = match count {
            0 => "Quarantine digest: your quarantine is full".to_owned(),
            1 => "Quarantine digest: 1 new message held".to_owned(),
            n => format!("Quarantine digest: {n} new messages held"),
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "From: \"boxtrap quarantine\" <postmaster@{domain}>\r\n\
             To: <{address}>\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: <digest.{micros}.{id}@{domain}>\r\n\
             Auto-Submitted: auto-generated\r\n\
             X-Auto-Response-Suppress: All\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\
             \r\n\
             This is a message in MIME format: a text part and an HTML part.\r\n\
             \r\n--{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{text}\
             \r\n--{boundary}\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{html}\
             \r\n--{boundary}--\r\n",
            date = now.rfc5322(),
            micros = now.0,
            id = s.mailbox_id,
            text = crlf(&text),
            html = crlf(&html),
        );
        out.into_bytes()
    }

    /// Verifies a digest link and gathers what it is about. Every refused
    /// token (tampered, expired, unknown key, another mailbox, a mailbox
    /// that is gone) is `None`: one answer for all.
    pub async fn open(&self, token: &str) -> Result<Option<Opened>, DigestError> {
        let keyring = self.keyring();
        let Ok(parts) = token::decode(token) else {
            return Ok(None);
        };
        let store = self.quarantine.store();
        let Some(state) = store.digest_state(parts.mailbox_id).await? else {
            return Ok(None);
        };
        if let Err(e) = token::verify(&keyring, &parts, &state.address, self.now()) {
            debug_refusal(&e);
            return Ok(None);
        }
        let Some(confirmation) = token::confirmation(&keyring, &parts, token) else {
            return Ok(None);
        };
        let (held, items) = match parts.action {
            DigestAction::Review | DigestAction::Deliver => {
                if parts.first != parts.last {
                    return Ok(None);
                }
                let found = store
                    .digest_items(parts.mailbox_id, parts.first - 1, parts.first, 1)
                    .await?
                    .into_iter()
                    .next()
                    .filter(|i| i.held.mailbox_id == parts.mailbox_id);
                // Another mailbox's message: as unknown as a forged token.
                if found.is_none()
                    && store
                        .held(parts.first)
                        .await?
                        .is_some_and(|h| h.mailbox_id != parts.mailbox_id)
                {
                    return Ok(None);
                }
                (found, Vec::new())
            }
            DigestAction::ReviewAll => {
                let items = store
                    .digest_items(parts.mailbox_id, parts.first, parts.last, REVIEW_ALL_MAX)
                    .await?;
                (None, items)
            }
        };
        Ok(Some(Opened {
            action: parts.action,
            mailbox_id: parts.mailbox_id,
            mailbox: state.address,
            held,
            items,
            high_score_at: state.spam_no_challenge_at,
            keep_days: state.keep_days,
            confirmation,
            parts,
            token: token.to_owned(),
        }))
    }

    /// Whether a POST carried the confirmation page's hidden field.
    pub fn confirmed(&self, link: &Opened, given: &str) -> bool {
        token::confirmed(&self.keyring(), &link.parts, &link.token, given)
    }

    /// A deliver link for a message the review page may offer (`None`
    /// for high-score mail).
    pub fn deliver_link(&self, link: &Opened, item: &DigestItem) -> Option<(String, String)> {
        if high_score(&item.held, link.high_score_at) {
            return None;
        }
        let keyring = self.keyring();
        let t = token::issue(
            &keyring,
            &DigestClaims {
                action: DigestAction::Deliver,
                mailbox_id: link.mailbox_id,
                mailbox: &link.mailbox,
                first: item.held.id,
                last: item.held.id,
                expires: link.parts.expires,
            },
        );
        let parts = token::decode(&t).ok()?;
        let confirm = token::confirmation(&keyring, &parts, &t)?;
        Some((t, confirm))
    }

    /// When a listed message expires from the quarantine.
    pub fn expires(&self, link: &Opened, item: &DigestItem) -> Timestamp {
        expiry(item.held.arrived_at, link.keep_days)
    }

    /// Whether an item is held for a high spam score (no one-click deliver).
    pub fn is_high_score(&self, link: &Opened, item: &DigestItem) -> bool {
        high_score(&item.held, link.high_score_at)
    }

    /// Delivers the one message of a deliver link to its mailbox (the
    /// quarantine's release, never screened again). A second call finds
    /// it gone and says so.
    pub async fn deliver(&self, link: &Opened) -> Result<Delivered, DigestError> {
        let Some(item) = &link.held else {
            return Ok(Delivered::Already);
        };
        if link.action != DigestAction::Deliver {
            return Ok(Delivered::Already);
        }
        if high_score(&item.held, link.high_score_at) {
            return Ok(Delivered::HighScore);
        }
        if item.held.state != HeldState::Held {
            return Ok(Delivered::Already);
        }
        if self.quarantine.release_one(item.held.id).await? {
            Ok(Delivered::Now)
        } else {
            Ok(Delivered::Already)
        }
    }

    /// Delivers every message of a "review all" link that is still held,
    /// except high-score mail.
    pub async fn deliver_all(&self, link: &Opened) -> Result<DeliveredAll, DigestError> {
        let mut done = DeliveredAll::default();
        if link.action != DigestAction::ReviewAll {
            return Ok(done);
        }
        for item in &link.items {
            if item.held.mailbox_id != link.mailbox_id || item.held.state != HeldState::Held {
                continue;
            }
            if high_score(&item.held, link.high_score_at) {
                done.kept += 1;
                continue;
            }
            if self.quarantine.release_one(item.held.id).await? {
                done.delivered += 1;
            }
        }
        Ok(done)
    }
}

fn debug_refusal(e: &TokenError) {
    tracing::debug!(error = %e, "digest link refused");
}

/// How full a quarantine is, as the digest says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Room,
    Near,
    Full,
}

impl Fill {
    fn of(f: &crate::quarantine::sweep::QuarantineFull) -> Fill {
        let over = |n: i64, max: i64, pct: i64| {
            max > 0 && i128::from(n) * 100 >= i128::from(max) * i128::from(pct)
        };
        if over(f.messages, f.max_messages, 100) || over(f.bytes, f.max_bytes, 100) {
            Fill::Full
        } else if over(f.messages, f.max_messages, NEAR_FULL_PERCENT)
            || over(f.bytes, f.max_bytes, NEAR_FULL_PERCENT)
        {
            Fill::Near
        } else {
            Fill::Room
        }
    }

    fn warning(self, f: Option<&crate::quarantine::sweep::QuarantineFull>) -> Option<String> {
        let numbers = f.map_or(String::new(), |f| {
            format!(
                " It holds {} messages ({} bytes){}.",
                f.messages,
                f.bytes,
                if f.max_messages > 0 {
                    format!(" of at most {}", f.max_messages)
                } else {
                    String::new()
                }
            )
        });
        match self {
            Fill::Room => None,
            Fill::Near => Some(format!(
                "Your quarantine is nearly full: when it is full, new mail is refused \
                 with 452 until you release or delete some.{numbers}"
            )),
            Fill::Full => Some(format!(
                "Your quarantine is full: new mail is refused with 452 until you \
                 release or delete some.{numbers}"
            )),
        }
    }
}

/// When a held message (and so its links) expires.
fn expiry(arrived: Timestamp, keep_days: i64) -> Timestamp {
    arrived.plus_secs(keep_days.max(0).saturating_mul(86400))
}

/// Held for a spam score at or above the mailbox's no-challenge score.
fn high_score(h: &HeldSummary, at: Option<i64>) -> bool {
    h.reason == "spam"
        && match (h.spam_score, at) {
            (Some(score), Some(at)) => score >= at,
            // Held as spam with no band to compare: treat as high.
            _ => true,
        }
}

/// Control characters out, long values cut (attacker-written fields).
pub fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if is_hidden(c) { ' ' } else { c })
        .take(FIELD_MAX)
        .collect();
    if s.chars().count() > FIELD_MAX {
        out.push('…');
    }
    out
}

/// The From line for HTML, escaped, the name and the address on lines of
/// their own (each stays far below the 998-byte line limit).
fn from_html(h: &HeldSummary) -> String {
    let address = escape(&clean(if h.sender.is_empty() {
        "(no address)"
    } else {
        &h.sender
    }));
    if h.sender_name.is_empty() {
        address
    } else {
        format!("{}\n&lt;{address}&gt;", escape(&clean(&h.sender_name)))
    }
}

/// Control characters, and the invisible ones that reorder or hide text
/// (bidi overrides and isolates, zero-width characters).
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `Name <address>`, or the address alone.
pub fn from_line(h: &HeldSummary) -> String {
    let address = if h.sender.is_empty() {
        "(no address)"
    } else {
        &h.sender
    };
    if h.sender_name.is_empty() {
        clean(address)
    } else {
        format!("{} <{}>", clean(&h.sender_name), clean(address))
    }
}

/// The subject, or `(no subject)`.
pub fn subject_of(h: &HeldSummary) -> String {
    if h.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        clean(&h.subject)
    }
}

/// Why it was held, in words (the sentence the policy wrote).
pub fn why_held(h: &HeldSummary) -> String {
    if h.reason_detail.is_empty() {
        clean(&h.reason)
    } else {
        clean(&h.reason_detail)
    }
}

/// The challenge's state, in words.
pub fn challenge_words(item: &DigestItem) -> String {
    let at = item
        .challenge_at
        .map(|t| format!(" on {} UTC", Timestamp(t).log_format()))
        .unwrap_or_default();
    match item.challenge_state.as_deref() {
        None => "none sent".to_owned(),
        Some("open") => format!("sent{at}, no answer yet"),
        Some("verified") => "answered: the sender confirmed".to_owned(),
        Some("expired") => format!("sent{at}, never answered"),
        Some(other) => clean(other),
    }
}

fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::sweep::QuarantineFull;

    fn fill(messages: i64, bytes: i64, max_messages: i64, max_bytes: i64) -> Fill {
        Fill::of(&QuarantineFull {
            mailbox: "alice@example.test".into(),
            messages,
            bytes,
            max_messages,
            max_bytes,
        })
    }

    #[test]
    fn a_quarantine_is_full_at_its_quota_and_nearly_full_at_ninety_percent() {
        assert_eq!(fill(10, 0, 10, 0), Fill::Full);
        assert_eq!(fill(9, 0, 10, 0), Fill::Near);
        assert_eq!(fill(8, 0, 10, 0), Fill::Room);
        assert_eq!(fill(1, 1000, 10, 1000), Fill::Full);
        assert_eq!(fill(1, 900, 10, 1000), Fill::Near);
        assert_eq!(fill(1_000_000, i64::MAX, 0, 0), Fill::Room, "0: no limit");
        assert_eq!(Fill::Room.warning(None), None);
        let full = Fill::Full.warning(None).unwrap();
        assert!(full.starts_with("Your quarantine is full: new mail is refused with 452"));
        assert!(Fill::Near.warning(None).unwrap().contains("nearly full"));
    }

    fn held(reason: &str, score: Option<i64>) -> HeldSummary {
        HeldSummary {
            id: 1,
            mailbox_id: 1,
            mailbox: "alice@example.test".into(),
            queue_id: "q".into(),
            rcpt_index: 0,
            env_sender: String::new(),
            original_rcpt: String::new(),
            sender: "bob@example.org".into(),
            sender_name: String::new(),
            subject: String::new(),
            message_id: String::new(),
            date_header: String::new(),
            size: 0,
            arrived_at: Timestamp(0),
            reason: reason.into(),
            reason_detail: String::new(),
            challenge_id: None,
            state: HeldState::Held,
            auth_results: String::new(),
            spam_score: score,
            spam_report: String::new(),
        }
    }

    #[test]
    fn only_spam_at_the_no_challenge_score_loses_its_deliver_link() {
        assert!(high_score(&held("spam", Some(50)), Some(50)));
        assert!(high_score(&held("spam", Some(900)), Some(50)));
        assert!(!high_score(&held("spam", Some(49)), Some(50)));
        assert!(
            high_score(&held("spam", None), Some(50)),
            "no score to compare"
        );
        assert!(!high_score(&held("unknown-sender", Some(900)), Some(50)));
    }

    #[test]
    fn attacker_written_fields_lose_control_characters_and_length() {
        assert_eq!(clean("a\r\nBcc: x\tb"), "a  Bcc: x b");
        assert_eq!(clean("invoice\u{202E}fdp.exe"), "invoice fdp.exe");
        let long = "x".repeat(500);
        let cut = clean(&long);
        assert_eq!(cut.chars().count(), FIELD_MAX + 1);
        assert!(cut.ends_with('…'));
        let mut h = held("unknown-sender", None);
        assert_eq!(subject_of(&h), "(no subject)");
        assert_eq!(from_line(&h), "bob@example.org");
        h.sender_name = "Bob\r\nX-Evil: 1".into();
        assert_eq!(from_line(&h), "Bob  X-Evil: 1 <bob@example.org>");
    }
}
