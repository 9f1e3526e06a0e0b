//! The digest's link pages, `/digest/<token>` ([`crate::digest`]).
//!
//! GET shows what the link is for and what its button will do, and
//! changes nothing (mail scanners fetch and render links). POST to the same
//! URL acts, and only with the hidden field the page carries. Every refused
//! token (tampered, expired, another mailbox's, unknown) gets the same 404
//! page and changes nothing.

use super::{WebState, internal_error, page};
use crate::clock::Timestamp;
use crate::digest::token::DigestAction;
use crate::digest::{
    Delivered, Digests, Opened, challenge_words, clean, from_line, subject_of, why_held,
};
use crate::html::escape;
use crate::store::digest::DigestItem;
use crate::web::settings::local_time;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Extension, Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use std::net::SocketAddr;

/// The client, as the listener gives it (absent when the router is
/// served some other way).
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// Every use of a digest link goes into the log with the client's
/// address and user agent (link scanners show up here).
fn log_use(link: &Opened, method: &str, peer: &Peer, headers: &HeaderMap, outcome: &str) {
    let client = peer.as_ref().map_or_else(
        || "unknown".to_owned(),
        |Extension(ConnectInfo(a))| a.ip().to_string(),
    );
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info!(mailbox = %link.mailbox, action = ?link.action, method, client = %client,
        user_agent = %agent, outcome, "digest link used");
}

/// The hidden field of a confirmation form.
#[derive(Debug, serde::Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

fn invalid() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "This link cannot be used",
        "<p>This link is not valid: it may have been altered or copied incompletely, \
         or it has expired. Use the link from your digest exactly as it arrived.</p>\
         <p class=\"onward\"><a href=\"/quarantine\">Go to your quarantine (sign in if asked)</a></p>",
    )
}

async fn opened(st: &WebState, token: &str) -> Result<(Digests, Opened), Response> {
    let digests = Digests::new(st.quarantine.clone());
    match digests.open(token).await {
        Ok(Some(o)) => Ok((digests, o)),
        Ok(None) => Err(invalid()),
        Err(e) => Err(internal_error(&e)),
    }
}

/// One held message as a table. `tz`: the reader's time zone;
/// `recipient`: say which mailbox it is for (a domain digest).
fn details(item: &DigestItem, expires: Timestamp, tz: &str, recipient: bool) -> String {
    let h = &item.held;
    let for_row = if recipient {
        format!(
            "<tr><th>For</th><td>{}</td></tr>",
            escape(&clean(&h.mailbox))
        )
    } else {
        String::new()
    };
    format!(
        "<table>{for_row}<tr><th>From</th><td>{}</td></tr><tr><th>Subject</th><td>{}</td></tr>\
         <tr><th>Received</th><td>{}</td></tr><tr><th>Size</th><td>{} bytes</td></tr>\
         <tr><th>Why held</th><td>{}</td></tr><tr><th>Challenge</th><td>{}</td></tr>\
         <tr><th>Expires</th><td>{}</td></tr></table>",
        escape(&from_line(h)),
        escape(&subject_of(h)),
        escape(&local_time(h.arrived_at, tz)),
        h.size,
        escape(&why_held(h)),
        escape(&challenge_words(item, tz)),
        escape(&local_time(expires, tz)),
    )
}

/// Where to go from a link's page: the quarantine (or, before acting on a
/// message, its page there), which asks the owner to sign in first; an
/// admin's domain digest goes to the admin page.
fn onward(link: &Opened, acted: bool) -> String {
    let held = link.held.as_ref().filter(|_| !acted);
    let (href, text) = match (&link.action, held) {
        (DigestAction::DomainReviewAll, _) => (
            "/admin".to_owned(),
            "Go to the admin page (sign in if asked)",
        ),
        (_, Some(item)) if item.held.state == crate::store::held::HeldState::Held => (
            format!("/quarantine/{}", item.held.id),
            "Open this message in your quarantine (sign in if asked)",
        ),
        _ => (
            "/quarantine".to_owned(),
            "Go to your quarantine (sign in if asked)",
        ),
    };
    format!(
        "<p class=\"onward\"><a href=\"{}\">{}</a></p>",
        escape(&href),
        escape(text)
    )
}

fn form(action: &str, confirm: &str, button: &str) -> String {
    // No action: the form posts to the page's own URL.
    let action = if action.is_empty() {
        String::new()
    } else {
        format!(" action=\"{}\"", escape(action))
    };
    format!(
        "<form method=\"post\"{action}><input type=\"hidden\" name=\"confirm\" value=\"{}\">\
         <button type=\"submit\">{}</button></form>",
        escape(confirm),
        escape(button)
    )
}

const GONE: &str = "<p>This message is no longer in the quarantine: it has already been \
                    delivered, or it was deleted or expired. Nothing more to do.</p>";

const HIGH_SCORE: &str = "<p>This message was held for its high spam score, so it cannot be \
                          delivered from a link. Sign in and review it in your quarantine.</p>";

/// GET: shows what the link is for; changes nothing.
pub async fn show(
    State(st): State<WebState>,
    Path(token): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let (digests, link) = match opened(&st, &token).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    log_use(&link, "GET", &peer, &headers, "shown");
    let (title, body) = shown(&digests, &link);
    page(
        StatusCode::OK,
        title,
        &format!("{body}{}", onward(&link, false)),
    )
}

/// The title and body of a link's page.
fn shown(digests: &Digests, link: &Opened) -> (&'static str, String) {
    let mailbox = escape(&link.mailbox);
    let tz = &link.time_zone;
    match link.action {
        DigestAction::Review | DigestAction::Deliver => {
            let Some(item) = &link.held else {
                return ("No longer held", GONE.to_owned());
            };
            let mut body = format!(
                "<p>Held for <strong>{mailbox}</strong> (times in {}):</p>{}",
                escape(tz),
                details(item, digests.expires(item), tz, false)
            );
            if digests.is_high_score(item) {
                body.push_str(HIGH_SCORE);
            } else if link.action == DigestAction::Deliver {
                body.push_str(&format!(
                    "<p>Deliver this one message to {mailbox}? The sender is not added to any list.</p>{}",
                    form("", &link.confirmation, "Deliver it")
                ));
            } else if let Some((t, confirm)) = digests.deliver_link(item) {
                body.push_str(&format!(
                    "<p>To deliver this one message to {mailbox}, press the button.</p>{}",
                    form(&format!("/digest/{t}"), &confirm, "Deliver it")
                ));
            }
            let title = if link.action == DigestAction::Deliver {
                "Deliver this message?"
            } else {
                "A held message"
            };
            (title, body)
        }
        DigestAction::ReviewAll | DigestAction::DomainReviewAll => {
            if link.items.is_empty() {
                return (
                    "Nothing left to review",
                    "<p>Every message in this digest has left the quarantine: delivered, \
                     deleted or expired.</p>"
                        .to_owned(),
                );
            }
            let domain = link.domain.as_ref();
            let mut body = match domain {
                Some(d) => format!(
                    "<p>Held for the mailboxes of <strong>{}</strong> and listed in the digest \
                     sent to {mailbox} (times in {}):</p><ol>",
                    escape(&d.domain),
                    escape(tz)
                ),
                None => format!(
                    "<p>Held for <strong>{mailbox}</strong> and listed in this digest \
                     (times in {}):</p><ol>",
                    escape(tz)
                ),
            };
            let mut deliverable = 0;
            for item in &link.items {
                let high = digests.is_high_score(item);
                if !high {
                    deliverable += 1;
                }
                body.push_str(&format!(
                    "<li>{}{}</li>",
                    details(item, digests.expires(item), tz, domain.is_some()),
                    if high {
                        "<p class=\"muted\">High spam score: not delivered by this page.</p>"
                    } else {
                        ""
                    }
                ));
            }
            body.push_str("</ol>");
            if link.items.len() as i64 >= crate::digest::REVIEW_ALL_MAX {
                body.push_str(&format!(
                    "<p class=\"muted\">Only the newest {} are shown; sign in to see the rest.</p>",
                    crate::digest::REVIEW_ALL_MAX
                ));
            }
            if deliverable > 0 {
                body.push_str(&form(
                    "",
                    &link.confirmation,
                    &format!(
                        "Deliver all {deliverable} listed{}",
                        if deliverable < link.items.len() {
                            " (not the high-score ones)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            ("Review this digest", body)
        }
    }
}

/// POST: acts, if the page's hidden field came back.
pub async fn confirm(
    State(st): State<WebState>,
    Path(token): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let (digests, link) = match opened(&st, &token).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let given = form.map(|Form(f)| f.confirm).unwrap_or_default();
    let confirmed = digests.confirmed(&link, &given);
    log_use(
        &link,
        "POST",
        &peer,
        &headers,
        if confirmed {
            "confirmed"
        } else {
            "not confirmed: nothing done"
        },
    );
    if !confirmed {
        return page(
            StatusCode::BAD_REQUEST,
            "Please confirm on the page",
            &format!(
                "<p>Nothing was done. Open the link and use the button on its page.</p>{}",
                onward(&link, true)
            ),
        );
    }
    note_use(&st, &link, &peer).await;
    let (status, title, body) = match acted(&digests, &link).await {
        Ok(r) => r,
        Err(e) => return internal_error(&e),
    };
    page(status, title, &format!("{body}{}", onward(&link, true)))
}

/// Records a confirmed link in the activity log of each mailbox it acts on.
async fn note_use(st: &WebState, link: &Opened, peer: &Peer) {
    let client = peer.as_ref().map(|Extension(ConnectInfo(a))| a.ip());
    let (held_id, what) = match link.action {
        DigestAction::Review => (None, "digest link to review a message: nothing to do"),
        DigestAction::Deliver => (
            link.held.as_ref().map(|i| i.held.id),
            "digest link to deliver this message confirmed",
        ),
        DigestAction::ReviewAll => (None, "digest link to deliver all listed confirmed"),
        DigestAction::DomainReviewAll => {
            let what = format!(
                "domain digest link (sent to {}) to deliver all listed confirmed",
                link.mailbox
            );
            let mut seen = std::collections::BTreeSet::new();
            for item in &link.items {
                if seen.insert(item.held.mailbox_id) {
                    super::activity::note_link_use(
                        st,
                        item.held.mailbox_id,
                        None,
                        "",
                        "domain digest link",
                        &what,
                        client,
                    )
                    .await;
                }
            }
            return;
        }
    };
    let sender = link.held.as_ref().map_or("", |i| i.held.sender.as_str());
    super::activity::note_link_use(
        st,
        link.mailbox_id,
        held_id,
        sender,
        "digest link",
        what,
        client,
    )
    .await;
}

/// Does what a confirmed link says, and says what happened.
async fn acted(
    digests: &Digests,
    link: &Opened,
) -> Result<(StatusCode, &'static str, String), crate::digest::DigestError> {
    let mailbox = escape(&link.mailbox);
    Ok(match link.action {
        DigestAction::Review => (
            StatusCode::BAD_REQUEST,
            "Nothing to do",
            "<p>This link only shows a message; nothing was done.</p>".to_owned(),
        ),
        DigestAction::Deliver => match digests.deliver(link).await? {
            Delivered::Now => (
                StatusCode::OK,
                "Delivered",
                format!("<p>The message was delivered into the mailbox {mailbox}.</p>"),
            ),
            Delivered::Pending => (
                StatusCode::ACCEPTED,
                "Being delivered",
                format!(
                    "<p>The message left the quarantine, but the mailbox {mailbox} could not \
                     take it just now. It is tried again in a few minutes; nothing more to do.</p>"
                ),
            ),
            Delivered::Already => (StatusCode::OK, "Already delivered", GONE.to_owned()),
            Delivered::HighScore => (
                StatusCode::FORBIDDEN,
                "Not delivered",
                HIGH_SCORE.to_owned(),
            ),
        },
        DigestAction::ReviewAll | DigestAction::DomainReviewAll => {
            let done = digests.deliver_all(link).await?;
            let into = match &link.domain {
                Some(d) => format!("their mailboxes at {}", escape(&d.domain)),
                None => format!("the mailbox {mailbox}"),
            };
            let mut body = format!(
                "<p>{} delivered into {into}.</p>",
                match done.delivered {
                    1 => "1 message".to_owned(),
                    n => format!("{n} messages"),
                }
            );
            if done.pending > 0 {
                body.push_str(&format!(
                    "<p>{} left the quarantine but could not be delivered just now; \
                     they are tried again in a few minutes.</p>",
                    done.pending
                ));
            }
            if done.kept > 0 {
                body.push_str(&format!(
                    "<p>{} with a high spam score stayed in the quarantine.</p>",
                    done.kept
                ));
            }
            (StatusCode::OK, "Done", body)
        }
    })
}
