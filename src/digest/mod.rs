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

pub mod domain;
pub mod token;

use crate::challenge::token::{Keyring, TokenError};
use crate::clock::Timestamp;
use crate::delivery::LocalCopy;
use crate::html::escape;
use crate::quarantine::{Quarantine, QuarantineError};
use crate::store::StoreError;
use crate::store::digest::{DigestItem, DigestState, DomainDigest, QueuedDigest};
use crate::store::held::{HeldState, HeldSummary, OutboundState};
use crate::web::settings::local_time;
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
    /// Domain digests written into a local subscriber's Maildir.
    pub domain_delivered: usize,
    /// Domain digests handed to the outbound queue (another address): not
    /// sent yet, the queue sends them.
    pub domain_queued: usize,
    /// Domain digests that could not be written or queued.
    pub domain_failed: usize,
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
    /// The mailbox the link acts on (review, deliver, review all); for a
    /// domain digest's review all, the subscription's id.
    pub mailbox_id: i64,
    /// The mailbox's address; for a domain digest, the subscriber's.
    pub mailbox: String,
    /// A domain digest's review all: the subscription.
    pub domain: Option<DomainDigest>,
    /// Review, deliver: the message, if it is still in the quarantine.
    pub held: Option<DigestItem>,
    /// Review all: the digest's messages still in the quarantine.
    pub items: Vec<DigestItem>,
    /// The reader's time zone: the mailbox's, or a local subscriber's
    /// (UTC for another address).
    pub time_zone: String,
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
    /// Taken out of the quarantine, but its mailbox could not take it yet:
    /// the sweeper tries again.
    Pending,
    /// Held for a high spam score: not deliverable by link.
    HighScore,
}

/// What a "review all" POST did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveredAll {
    pub delivered: usize,
    /// Taken out of the quarantine, their mailbox could not take them yet.
    pub pending: usize,
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
        for sub in store.domain_digests().await? {
            match self.send_domain_if_due(&sub).await {
                Ok(Some(DomainSent::Delivered)) => report.domain_delivered += 1,
                Ok(Some(DomainSent::Queued)) => report.domain_queued += 1,
                Ok(None) => {}
                Err(e) => {
                    report.domain_failed += 1;
                    tracing::error!(domain = %sub.domain, to = %sub.address, error = %e,
                        "domain digest failed");
                }
            }
        }
        Ok(report)
    }

    /// Sends a domain digest if it is due: a local mailbox gets it in its
    /// Maildir, another address through the outbound queue (from
    /// `postmaster@<domain>`, `<>`, DKIM-signed with the domain's keys like
    /// a challenge).
    async fn send_domain_if_due(
        &self,
        sub: &DomainDigest,
    ) -> Result<Option<DomainSent>, DigestError> {
        let Some(period) = sub.frequency.period_secs() else {
            return Ok(None);
        };
        let now = self.now();
        let store = self.quarantine.store();
        let (count, upto) = store
            .domain_held_after(sub.domain_id, sub.last_held)
            .await?;
        let period_due = sub
            .last_at
            .is_none_or(|t| now.0 >= t.saturating_add(period.saturating_mul(1_000_000)));
        if count == 0 || !period_due {
            return Ok(None);
        }
        let upto = upto.max(sub.last_held);
        let items = store
            .domain_digest_items(sub.domain_id, sub.last_held, upto, TOP_ITEMS)
            .await?;
        let local = match store
            .mailbox_settings_by_address(&sub.address.to_lowercase())
            .await
        {
            Ok(s) => Some(s),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let tz = local.as_ref().map_or("UTC", |s| s.time_zone.as_str());
        let longest = items.iter().map(|i| i.keep_days).max().unwrap_or(0);
        let all = token::issue(
            &self.keyring(),
            &DigestClaims {
                action: DigestAction::DomainReviewAll,
                mailbox_id: sub.id,
                mailbox: &token::domain_binding(sub.id, &sub.domain, &sub.address),
                first: sub.last_held,
                last: upto,
                expires: expiry(now, longest),
            },
        );
        let to = clean(&sub.address);
        let data = self.compose(
            &Letter {
                to: &to,
                from_domain: &sub.domain,
                title: "Domain quarantine digest",
                heading: format!("Quarantine digest of {} for {to}", sub.domain),
                subject: match count {
                    1 => format!("Quarantine digest of {}: 1 new message held", sub.domain),
                    n => format!("Quarantine digest of {}: {n} new messages held", sub.domain),
                },
                warning: None,
                count,
                items: &items,
                recipient_column: true,
                review_all: Some(self.link(&all)),
                tz,
                id: format!("domain-digest.{}.{}", now.0, sub.id),
            },
            now,
        );
        let Some(local) = local else {
            let from = format!("postmaster@{}", sub.domain);
            let signed = self
                .quarantine
                .challenges()
                .dkim_signers(&from, &from)
                .await?
                .sign(&data)
                .unwrap_or_else(|e| {
                    tracing::warn!(domain = %sub.domain, error = %e,
                        "domain digest not DKIM-signed");
                    data.clone()
                });
            let queued = QueuedDigest {
                kind: DOMAIN_DIGEST_KIND,
                rcpt: &sub.address,
                data: &signed,
            };
            if !store
                .claim_domain_digest(sub, now, upto, Some(queued))
                .await?
            {
                return Ok(None);
            }
            tracing::info!(domain = %sub.domain, to = %sub.address, held = count,
                "domain digest queued for sending");
            return Ok(Some(DomainSent::Queued));
        };
        if !store.claim_domain_digest(sub, now, upto, None).await? {
            return Ok(None);
        }
        let copy = LocalCopy {
            sender: String::new(),
            mailbox: local.address.clone(),
            unique: format!("D{}S{}", now.0, sub.id),
            arrival_secs: now.secs(),
            data: Arc::new(data),
        };
        if let Err(e) = self.quarantine.delivery().deliver_once(copy).await {
            store.unclaim_domain_digest(sub, now).await?;
            return Err(DigestError::Deliver(e));
        }
        tracing::info!(domain = %sub.domain, to = %sub.address, held = count,
            "domain digest delivered");
        Ok(Some(DomainSent::Delivered))
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
        let review_all = (new_count > 0).then(|| {
            self.link(&token::issue(
                &self.keyring(),
                &DigestClaims {
                    action: DigestAction::ReviewAll,
                    mailbox_id: s.mailbox_id,
                    mailbox: &s.address,
                    first: s.last_held,
                    last: upto,
                    expires: expiry(now, s.keep_days),
                },
            ))
        });
        let address = clean(&s.address);
        let data = self.compose(
            &Letter {
                to: &address,
                from_domain: s.address.rsplit_once('@').map_or("localhost", |(_, d)| d),
                title: "Quarantine digest",
                heading: format!("Quarantine digest for {address}"),
                subject: match new_count {
                    0 => "Quarantine digest: your quarantine is full".to_owned(),
                    1 => "Quarantine digest: 1 new message held".to_owned(),
                    n => format!("Quarantine digest: {n} new messages held"),
                },
                warning: quota.warning(fill.as_ref()),
                count: new_count,
                items: &items,
                recipient_column: false,
                review_all,
                tz: &s.time_zone,
                id: format!("digest.{}.{}", now.0, s.mailbox_id),
            },
            now,
        );
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

    fn item_token(&self, item: &DigestItem, action: DigestAction) -> String {
        let h = &item.held;
        token::issue(
            &self.keyring(),
            &DigestClaims {
                action,
                mailbox_id: h.mailbox_id,
                mailbox: &h.mailbox,
                first: h.id,
                last: h.id,
                expires: expiry(h.arrived_at, item.keep_days),
            },
        )
    }

    /// A digest mail: headers, a text part and an HTML part, each item
    /// with its review link and (but for high-score mail) its deliver
    /// link, each bound to the item's own mailbox.
    fn compose(&self, m: &Letter, now: Timestamp) -> Vec<u8> {
        let mut text = String::new();
        let mut html = String::new();
        let _ = writeln!(text, "{}\n", m.heading);
        let _ = writeln!(
            html,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
             <body style=\"font-family:sans-serif\">\n<h1 style=\"font-size:1.2em\">{}</h1>",
            escape(m.title),
            escape(&m.heading)
        );
        if let Some(warning) = &m.warning {
            let _ = writeln!(text, "{warning}\n");
            let _ = writeln!(
                html,
                "<p style=\"border:2px solid #b00;padding:.5em\"><strong>{}</strong></p>",
                escape(warning)
            );
        }
        let summary = match m.count {
            0 => "No new mail was held since the last digest.".to_owned(),
            1 => "1 new message was held since the last digest.".to_owned(),
            n => format!("{n} new messages were held since the last digest."),
        };
        let _ = writeln!(text, "{summary}\n");
        let _ = writeln!(html, "<p>{}</p>", escape(&summary));
        let _ = writeln!(
            text,
            "Times are in {} (the time zone of the settings page).\n",
            m.tz
        );
        if !m.items.is_empty() {
            let _ = writeln!(html, "<ol>");
        }
        for (n, item) in m.items.iter().enumerate() {
            self.write_item(&mut text, &mut html, n + 1, item, m);
        }
        if !m.items.is_empty() {
            let _ = writeln!(html, "</ol>");
        }
        let more = m.count - m.items.len() as i64;
        if more > 0 {
            let _ = writeln!(text, "... and {more} more.\n");
            let _ = writeln!(html, "<p>&hellip; and {more} more.</p>");
        }
        if let Some(url) = &m.review_all {
            let _ = writeln!(text, "Review all in this digest: {url}\n");
            let _ = writeln!(
                html,
                "<p><a href=\"{}\">Review all in this digest</a></p>",
                escape(url)
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
        mime(m, &text, &html, now)
    }

    fn write_item(
        &self,
        text: &mut String,
        html: &mut String,
        n: usize,
        item: &DigestItem,
        m: &Letter,
    ) {
        let h = &item.held;
        let from = from_line(h);
        let subject = subject_of(h);
        let why = why_held(h);
        let challenge = challenge_words(item, m.tz);
        let received = local_time(h.arrived_at, m.tz);
        let review = self.link(&self.item_token(item, DigestAction::Review));
        let deliver = (!high_score(h, item.high_score_at))
            .then(|| self.link(&self.item_token(item, DigestAction::Deliver)));
        let _ = writeln!(text, "{n}. {received}");
        if m.recipient_column {
            let _ = writeln!(text, "   For: {}", clean(&h.mailbox));
        }
        let _ = writeln!(
            text,
            "   From: {from}\n   Subject: {subject}\n   Why held: {why}\n   Challenge: {challenge}\n   Review: {review}"
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
        let for_line = if m.recipient_column {
            format!("For: {}<br>\n", escape(&clean(&h.mailbox)))
        } else {
            String::new()
        };
        let _ = writeln!(
            html,
            "<li style=\"margin-bottom:1em\"><strong>{}</strong><br>\n{for_line}From: {}<br>\n\
             Received: {}<br>\nWhy held: {}<br>\nChallenge: {}<br>\n<a href=\"{}\">Review</a>",
            escape(&subject),
            from_html(h),
            escape(&received),
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

    /// Verifies a digest link and gathers what it is about. Every refused
    /// token (tampered, expired, unknown key, another mailbox, a mailbox
    /// or subscription that is gone) is `None`: one answer for all.
    pub async fn open(&self, token: &str) -> Result<Option<Opened>, DigestError> {
        let keyring = self.keyring();
        let Ok(parts) = token::decode(token) else {
            return Ok(None);
        };
        let store = self.quarantine.store();
        let (bound, domain, time_zone) = if parts.action == DigestAction::DomainReviewAll {
            let Some(sub) = store.domain_digest(parts.mailbox_id).await? else {
                return Ok(None);
            };
            let tz = self.reader_zone(&sub.address).await?;
            (sub.address.clone(), Some(sub), tz)
        } else {
            let Some(state) = store.digest_state(parts.mailbox_id).await? else {
                return Ok(None);
            };
            (state.address, None, state.time_zone)
        };
        let binding = match &domain {
            Some(d) => token::domain_binding(d.id, &d.domain, &d.address),
            None => bound.clone(),
        };
        if let Err(e) = token::verify(&keyring, &parts, &binding, self.now()) {
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
            DigestAction::DomainReviewAll => {
                let domain_id = domain.as_ref().map_or(0, |d| d.domain_id);
                let items = store
                    .domain_digest_items(domain_id, parts.first, parts.last, REVIEW_ALL_MAX)
                    .await?;
                (None, items)
            }
        };
        Ok(Some(Opened {
            action: parts.action,
            mailbox_id: parts.mailbox_id,
            mailbox: bound,
            domain,
            held,
            items,
            time_zone,
            confirmation,
            parts,
            token: token.to_owned(),
        }))
    }

    /// The time zone of a digest's reader: a local mailbox's own, UTC for
    /// any other address.
    async fn reader_zone(&self, address: &str) -> Result<String, DigestError> {
        match self
            .quarantine
            .store()
            .mailbox_settings_by_address(&address.to_lowercase())
            .await
        {
            Ok(s) => Ok(s.time_zone),
            Err(StoreError::NotFound(_)) => Ok("UTC".to_owned()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a POST carried the confirmation page's hidden field.
    pub fn confirmed(&self, link: &Opened, given: &str) -> bool {
        token::confirmed(&self.keyring(), &link.parts, &link.token, given)
    }

    /// A deliver link (token, confirmation) for a message the review page
    /// may offer, bound to the message's own mailbox (`None` for
    /// high-score mail).
    pub fn deliver_link(&self, item: &DigestItem) -> Option<(String, String)> {
        if high_score(&item.held, item.high_score_at) {
            return None;
        }
        let t = self.item_token(item, DigestAction::Deliver);
        let parts = token::decode(&t).ok()?;
        let confirm = token::confirmation(&self.keyring(), &parts, &t)?;
        Some((t, confirm))
    }

    /// When a listed message expires from the quarantine.
    pub fn expires(&self, item: &DigestItem) -> Timestamp {
        expiry(item.held.arrived_at, item.keep_days)
    }

    /// Whether an item is held for a high spam score (no one-click deliver).
    pub fn is_high_score(&self, item: &DigestItem) -> bool {
        high_score(&item.held, item.high_score_at)
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
        if high_score(&item.held, item.high_score_at) {
            return Ok(Delivered::HighScore);
        }
        if item.held.state != HeldState::Held {
            return Ok(Delivered::Already);
        }
        self.release(item.held.id).await
    }

    /// Releases one held message; says whether it reached its mailbox, is
    /// still on its way (taken, but the Maildir could not take it yet), or
    /// was gone.
    async fn release(&self, id: i64) -> Result<Delivered, DigestError> {
        if self.quarantine.release_one(id).await? {
            return Ok(Delivered::Now);
        }
        let pending = self
            .quarantine
            .store()
            .held(id)
            .await?
            .is_some_and(|h| h.state == HeldState::Releasing);
        Ok(if pending {
            Delivered::Pending
        } else {
            Delivered::Already
        })
    }

    /// Delivers every message of a "review all" link (a mailbox's, or a
    /// domain digest's: every mailbox of the domain) that is still held,
    /// except high-score mail.
    pub async fn deliver_all(&self, link: &Opened) -> Result<DeliveredAll, DigestError> {
        let mut done = DeliveredAll::default();
        for item in &link.items {
            let covered = match link.action {
                DigestAction::ReviewAll => item.held.mailbox_id == link.mailbox_id,
                DigestAction::DomainReviewAll => link
                    .domain
                    .as_ref()
                    .is_some_and(|d| item.held.mailbox.ends_with(&format!("@{}", d.domain))),
                _ => false,
            };
            if !covered || item.held.state != HeldState::Held {
                continue;
            }
            if high_score(&item.held, item.high_score_at) {
                done.kept += 1;
                continue;
            }
            match self.release(item.held.id).await? {
                Delivered::Now => done.delivered += 1,
                Delivered::Pending => done.pending += 1,
                _ => {}
            }
        }
        Ok(done)
    }
}

/// The `outbound_messages.kind` of a domain digest.
pub const DOMAIN_DIGEST_KIND: &str = "domain-digest";

/// Where a domain digest went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DomainSent {
    Delivered,
    Queued,
}

/// What a digest mail says, for [`Digests::compose`].
struct Letter<'a> {
    /// The recipient's address (cleaned).
    to: &'a str,
    /// Its `From:` is `postmaster@` this.
    from_domain: &'a str,
    /// The HTML part's `<title>`.
    title: &'a str,
    heading: String,
    subject: String,
    /// Said first (a full quarantine).
    warning: Option<String>,
    /// How many new messages in all (`items` are the newest of them).
    count: i64,
    items: &'a [DigestItem],
    /// A domain digest: each item says which mailbox it is for.
    recipient_column: bool,
    review_all: Option<String>,
    /// The reader's time zone, for every time in the mail.
    tz: &'a str,
    /// The Message-ID's local part.
    id: String,
}

/// The digest as a `multipart/alternative` message from
/// `postmaster@<the recipient's domain>`.
fn mime(m: &Letter, text: &str, html: &str, now: Timestamp) -> Vec<u8> {
    let domain = m.from_domain;
    let mut nonce = [0u8; 12];
    rand::fill(&mut nonce[..]);
    let boundary: String = nonce.iter().fold("=_digest_".to_owned(), |mut b, x| {
        let _ = write!(b, "{x:02x}");
        b
    });
    let mut out = String::new();
    let _ = write!(
        out,
        "From: \"boxtrap quarantine\" <postmaster@{domain}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{domain}>\r\n\
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
        to = m.to,
        subject = clean(&m.subject),
        date = now.rfc5322(),
        id = m.id,
        text = crlf(text),
        html = crlf(html),
    );
    out.into_bytes()
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

/// The challenge's state, in words, as the quarantine page says it: a
/// challenge whose mail is still in the outbound queue is "queued", not
/// "sent". `tz`: the reader's time zone.
pub fn challenge_words(item: &DigestItem, tz: &str) -> String {
    match item.challenge_state.as_deref() {
        None => "none sent".to_owned(),
        Some("open") => match (item.mail_state, item.mail_done_at) {
            (Some(OutboundState::Queued), _) => "queued to be sent, not sent yet".to_owned(),
            (Some(OutboundState::Failed), _) => "could not be delivered to the sender".to_owned(),
            (Some(OutboundState::Sent), Some(at)) => {
                format!("sent {}, no answer yet", local_time(Timestamp(at), tz))
            }
            _ => "sent, no answer yet".to_owned(),
        },
        Some("verified") => "answered: the sender confirmed".to_owned(),
        Some("expired") => "expired without an answer".to_owned(),
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
