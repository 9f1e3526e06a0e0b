//! The admins' pages (`boxtrap mailbox set X --admin on`):
//!
//! - `/admin`: the domains and every mailbox with its challenge switch
//!   (a POST toggles it) and quarantine totals (messages, bytes, oldest),
//!   and a search of held mail across mailboxes by sender and subject
//!   with a recipient column;
//! - `/admin/mailboxes/{id}`: one mailbox's quarantine, read-only, with
//!   "deliver" and "delete" for each message: the admin acts for the
//!   owner, and the owner's activity log says which admin did it and from
//!   which address;
//! - `GET /api/v1/admin/mailboxes`: the mailboxes and totals as JSON;
//! - `GET /api/v1/admin/held?sender=…&subject=…`: the search across
//!   mailboxes, with each message's mailbox;
//! - `POST /api/v1/admin/mailboxes/{id}/held/actions`: the owner's
//!   `POST /api/v1/held/actions` on that mailbox, for its owner, each
//!   message acted on recorded in its activity with the admin and the
//!   client address.
//!
//! A signed-out visitor is sent to sign in, as on the owner's pages. A
//! signed-in owner who is not an admin gets the site's plain 404 page for
//! every `/admin` URL, GET or POST, before any other check: the pages do
//! not reveal that they exist. Every POST needs the session's CSRF token
//! and a same-origin request.

use super::WebState;
use super::activity::action_text;
use super::owner::{
    challenge_text, expires_text, html, internal, message, printable, signed_in, size_text,
};
use super::session::{SignedIn, same_secret, secure_headers};
use crate::clock::Timestamp;
use crate::store::activity::{FoundHeld, MailboxTotals, NewEvent};
use crate::store::held::{ActivityAction, HeldState};
use crate::store::search::HeldQuery;
use crate::store::web::{HeldCursor, HeldRow};
use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Held messages a search shows at most.
pub const SEARCH_LIMIT: i64 = 100;
/// Held messages per page of a mailbox's quarantine.
pub const PAGE: i64 = 50;

/// The admin routes, merged into the owner's.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin", get(overview).fallback(unknown))
        .route("/admin/mailboxes/{id}", get(mailbox_page).fallback(unknown))
        .route(
            "/admin/mailboxes/{id}/challenge",
            post(toggle_challenge).fallback(unknown),
        )
        .route(
            "/admin/mailboxes/{id}/held/{held}/{action}",
            post(act).fallback(unknown),
        )
        .route("/admin/{*rest}", any(unknown))
        .route(
            "/api/v1/admin/mailboxes",
            get(api_mailboxes).fallback(api_unknown),
        )
        .route("/api/v1/admin/held", get(api_held).fallback(api_unknown))
        .route(
            "/api/v1/admin/mailboxes/{id}/held/actions",
            post(api_act).fallback(api_unknown),
        )
        .route("/api/v1/admin/{*rest}", any(api_unknown))
}

/// The client, as the listener gives it.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn client_ip(peer: &Peer) -> String {
    peer.as_ref()
        .map(|Extension(ConnectInfo(a))| a.ip().to_string())
        .unwrap_or_default()
}

/// The session of an admin, or the answer to give instead: sign in, or
/// the plain 404 of a page that does not exist.
pub(super) async fn admin_session(
    st: &WebState,
    headers: &HeaderMap,
    back: &str,
) -> Result<SignedIn, Response> {
    let s = signed_in(st, headers, back).await?;
    match st.store.is_admin(s.session.mailbox_id).await {
        Ok(true) => Ok(s),
        Ok(false) => Err(super::not_found().await),
        Err(e) => Err(internal(&e)),
    }
}

/// Checks a POST: same origin, then the CSRF token. `Some`: the refusal.
fn refused(st: &WebState, headers: &HeaderMap, s: &SignedIn, token: &str) -> Option<Response> {
    let why = if let Err(why) = st.sessions.same_origin(headers) {
        why.to_owned()
    } else if token.is_empty() {
        "the form carried no security token (CSRF token)".to_owned()
    } else if !same_secret(token, &s.session.csrf_token) {
        "the form's security token (CSRF token) is not this session's".to_owned()
    } else {
        return None;
    };
    Some(message(
        StatusCode::FORBIDDEN,
        "Request refused",
        &format!("This request was refused and nothing was changed: {why}."),
        Some(s),
    ))
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r, true);
    r
}

async fn unknown(State(st): State<WebState>, headers: HeaderMap) -> Response {
    match admin_session(&st, &headers, "/admin").await {
        Ok(_) => super::not_found().await,
        Err(r) => r,
    }
}

/// The result line of an action, from its code in the redirect.
fn done_text(code: &str) -> &'static str {
    match code {
        "challenge-on" => "Challenge-response turned on.",
        "challenge-off" => "Challenge-response turned off.",
        "delivered" => "1 delivered for the owner.",
        "deleted" => "1 deleted for the owner.",
        "busy" => "Nothing done: the message is already being delivered.",
        "gone" => "Nothing done: the message was already delivered or deleted.",
        _ => "",
    }
}

// ---- the overview ----------------------------------------------------------

#[derive(Template)]
#[template(path = "web/admin.html")]
struct OverviewPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: &'static str,
    error: String,
    domains: Vec<(String, i64)>,
    mailboxes: Vec<MailboxLine>,
    sender: &'a str,
    subject: &'a str,
    searched: bool,
    found: Vec<FoundLine>,
    more: bool,
}

struct MailboxLine {
    id: i64,
    address: String,
    challenge: bool,
    admin: bool,
    held: i64,
    bytes: String,
    oldest: String,
}

fn mailbox_line(m: &MailboxTotals) -> MailboxLine {
    MailboxLine {
        id: m.id,
        address: m.address.clone(),
        challenge: m.challenge_enabled,
        admin: m.admin,
        held: m.held,
        bytes: size_text(m.bytes),
        oldest: m
            .oldest
            .map_or_else(String::new, |t| Timestamp(t).log_format()),
    }
}

struct FoundLine {
    id: i64,
    mailbox_id: i64,
    mailbox: String,
    received: String,
    from: String,
    subject: String,
    size: String,
    reason: String,
}

fn found_line(f: &FoundHeld) -> FoundLine {
    let from = match (f.sender_name.is_empty(), f.sender.is_empty()) {
        (_, true) => "no address".to_owned(),
        (true, false) => f.sender.clone(),
        (false, false) => format!("{} <{}>", f.sender_name, f.sender),
    };
    FoundLine {
        id: f.id,
        mailbox_id: f.mailbox_id,
        mailbox: f.mailbox.clone(),
        received: f.arrived_at.log_format(),
        from: printable(&from),
        subject: if f.subject.is_empty() {
            "(no subject)".into()
        } else {
            printable(&f.subject)
        },
        size: size_text(f.size),
        reason: printable(&f.reason_detail),
    }
}

#[derive(Debug, Default, Deserialize)]
struct OverviewQuery {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    done: String,
}

/// Longest search text accepted, in characters.
const MAX_SEARCH: usize = 200;

async fn overview(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let s = match admin_session(&st, &headers, "/admin").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (mailboxes, domains) = match (
        st.store.mailbox_totals(None).await,
        st.store.list_domains().await,
    ) {
        (Ok(m), Ok(d)) => (m, d),
        (Err(e), _) | (_, Err(e)) => return internal(&e),
    };
    let (sender, subject) = (q.sender.trim(), q.subject.trim());
    let searched = !sender.is_empty() || !subject.is_empty();
    let mut error = String::new();
    let mut found = Vec::new();
    if sender.chars().count() > MAX_SEARCH || subject.chars().count() > MAX_SEARCH {
        error = format!("Search: at most {MAX_SEARCH} characters for the sender and the subject.");
    } else if sender.chars().chain(subject.chars()).any(char::is_control) {
        error = "Search: control characters (line breaks, tabs...) cannot be searched for.".into();
    } else if searched {
        found = match st
            .store
            .search_held_everywhere(sender, subject, SEARCH_LIMIT + 1)
            .await
        {
            Ok(f) => f,
            Err(e) => return internal(&e),
        };
    }
    let more = found.len() as i64 > SEARCH_LIMIT;
    found.truncate(SEARCH_LIMIT as usize);
    let page = OverviewPage {
        title: "Admin",
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        notice: done_text(&q.done),
        domains: domains.into_iter().map(|d| (d.name, d.mailboxes)).collect(),
        mailboxes: mailboxes.iter().map(mailbox_line).collect(),
        sender: &q.sender,
        subject: &q.subject,
        searched: searched && error.is_empty(),
        found: found.iter().map(found_line).collect(),
        more,
        error,
    };
    let status = if page.error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    html(status, page.render(), true)
}

// ---- the challenge switch ------------------------------------------------------

#[derive(Debug, Deserialize)]
struct SwitchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    challenge: String,
}

/// The mailbox an `{id}` in the URL names, if it exists.
async fn mailbox_of(st: &WebState, id: &str) -> Result<Option<MailboxTotals>, Response> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    match st.store.mailbox_totals(Some(id)).await {
        Ok(m) => Ok(m.into_iter().next().filter(|m| m.id == id)),
        Err(e) => Err(internal(&e)),
    }
}

fn no_mailbox(s: &SignedIn) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such mailbox.",
        Some(s),
    )
}

async fn toggle_challenge(
    State(st): State<WebState>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
    form: Result<Form<SwitchForm>, FormRejection>,
) -> Response {
    let s = match admin_session(&st, &headers, "/admin").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form.map_or(
        SwitchForm {
            csrf: String::new(),
            challenge: String::new(),
        },
        |Form(f)| f,
    );
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let on = match f.challenge.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &format!(
                    "Challenge: {:?} is neither on nor off; nothing was changed.",
                    printable(other)
                ),
                Some(&s),
            );
        }
    };
    let m = match mailbox_of(&st, &id).await {
        Ok(Some(m)) => m,
        Ok(None) => return no_mailbox(&s),
        Err(r) => return r,
    };
    let detail = format!(
        "challenge-response turned {} by the admin {}",
        if on { "on" } else { "off" },
        s.session.address
    );
    let ip = client_ip(&peer);
    let line = NewEvent {
        actor: &s.session.address,
        client_ip: &ip,
        ..NewEvent::new(
            m.id,
            st.sessions.now(),
            ActivityAction::AdminAction,
            "",
            &detail,
        )
    };
    match st.store.set_challenge_by(m.id, on, &line).await {
        Ok(true) => {}
        Ok(false) => return no_mailbox(&s),
        Err(e) => return internal(&e),
    }
    tracing::info!(admin = %s.session.address, mailbox = %m.address, on, "admin set challenge-response");
    see_other(&format!(
        "/admin?done=challenge-{}#mb{}",
        if on { "on" } else { "off" },
        m.id
    ))
}

// ---- one mailbox's quarantine ---------------------------------------------

#[derive(Template)]
#[template(path = "web/admin_mailbox.html")]
struct MailboxPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: &'static str,
    mailbox: MailboxLine,
    items: Vec<Item>,
    first_page: bool,
    next: String,
    recent: Vec<(String, &'static str, String)>,
}

/// One held message as the admin sees it: every field is display text.
struct Item {
    id: i64,
    received: String,
    from: String,
    subject: String,
    size: String,
    reason: String,
    challenge: String,
    expires: String,
    releasing: bool,
}

fn item(r: &HeldRow, keep_days: i64, now: Timestamp) -> Item {
    let from = match (r.sender_name.is_empty(), r.sender.is_empty()) {
        (_, true) => "no address".to_owned(),
        (true, false) => r.sender.clone(),
        (false, false) => format!("{} <{}>", r.sender_name, r.sender),
    };
    Item {
        id: r.id,
        received: r.arrived_at.log_format(),
        from: printable(&from),
        subject: if r.subject.is_empty() {
            "(no subject)".into()
        } else {
            printable(&r.subject)
        },
        size: size_text(r.size),
        reason: printable(&r.reason_detail),
        challenge: challenge_text(r, "UTC"),
        expires: expires_text(r.arrived_at.plus_secs(keep_days * 86400), now, "UTC"),
        releasing: r.state == HeldState::Releasing,
    }
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    done: String,
}

async fn mailbox_page(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let s = match admin_session(&st, &headers, "/admin").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let m = match mailbox_of(&st, &id).await {
        Ok(Some(m)) => m,
        Ok(None) => return no_mailbox(&s),
        Err(r) => return r,
    };
    let after = match q.after.as_str() {
        "" => None,
        a => match super::owner::decode_cursor(a) {
            Some(c) => Some(c),
            None => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "This page link is not valid. Start again from the newest mail.",
                    Some(&s),
                );
            }
        },
    };
    let rows = st
        .store
        .held_page(m.id, &HeldQuery::default(), after, PAGE + 1)
        .await;
    let settings = st.store.mailbox_settings(m.id).await;
    let recent = st
        .store
        .activity_page(m.id, &Default::default(), None, 10)
        .await;
    let (mut rows, settings, recent) = match (rows, settings, recent) {
        (Ok(r), Ok(s), Ok(a)) => (r, s, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(&e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let next = match (more, rows.last()) {
        (true, Some(r)) => super::owner::encode_cursor(HeldCursor {
            arrived_at: r.arrived_at,
            id: r.id,
        }),
        _ => String::new(),
    };
    let now = st.sessions.now();
    let title = format!("Quarantine of {}", m.address);
    let page = MailboxPage {
        title: &title,
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        notice: done_text(&q.done),
        mailbox: mailbox_line(&m),
        items: rows
            .iter()
            .map(|r| item(r, settings.keep_days, now))
            .collect(),
        first_page: after.is_none(),
        next,
        recent: recent
            .iter()
            .map(|l| {
                (
                    l.at.log_format(),
                    action_text(l.action),
                    printable(&format!("{} {}", l.sender, l.detail)),
                )
            })
            .collect(),
    };
    html(StatusCode::OK, page.render(), true)
}

// ---- acting for the owner ----------------------------------------------------

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn act(
    State(st): State<WebState>,
    headers: HeaderMap,
    peer: Peer,
    Path((id, held, action)): Path<(String, String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let s = match admin_session(&st, &headers, "/admin").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form.map_or(
        CsrfForm {
            csrf: String::new(),
        },
        |Form(f)| f,
    );
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let m = match mailbox_of(&st, &id).await {
        Ok(Some(m)) => m,
        Ok(None) => return no_mailbox(&s),
        Err(r) => return r,
    };
    let not_held = || {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "That message is not in this mailbox's quarantine.",
            Some(&s),
        )
    };
    let deliver = match action.as_str() {
        "deliver" => true,
        "delete" => false,
        _ => return not_held(),
    };
    let Ok(held) = held.parse::<i64>() else {
        return not_held();
    };
    let (held, sender, state) = match st.store.held_of_mailbox(m.id, held).await {
        // Deleted mail is out of the quarantine (the owner can restore it).
        Ok(Some((_, _, HeldState::Deleted))) | Ok(None) => return not_held(),
        Ok(Some(h)) => h,
        Err(e) => return internal(&e),
    };
    let done = if state != HeldState::Held {
        "busy"
    } else {
        let result = if deliver {
            st.quarantine.release_one(held).await
        } else {
            st.quarantine.delete_one(held).await
        };
        match result {
            Ok(true) => {
                if deliver {
                    "delivered"
                } else {
                    "deleted"
                }
            }
            Ok(false) => "gone",
            Err(e) => return internal(&e),
        }
    };
    if matches!(done, "delivered" | "deleted") {
        let detail = format!("{done} for the owner by the admin {}", s.session.address);
        let ip = client_ip(&peer);
        let line = NewEvent {
            held_id: Some(held),
            actor: &s.session.address,
            client_ip: &ip,
            ..NewEvent::new(
                m.id,
                st.sessions.now(),
                ActivityAction::AdminAction,
                &sender,
                &detail,
            )
        };
        if let Err(e) = st.store.log_event(&line).await {
            return internal(&e);
        }
    }
    tracing::info!(admin = %s.session.address, mailbox = %m.address, held, result = done, "admin acted for an owner");
    see_other(&format!("/admin/mailboxes/{}?done={done}", m.id))
}

// ---- JSON API ------------------------------------------------------------------

/// One mailbox of `GET /api/v1/admin/mailboxes`.
#[derive(Debug, Serialize)]
struct ApiMailbox {
    id: i64,
    address: String,
    domain: String,
    /// Challenge-response on.
    challenge: bool,
    admin: bool,
    /// Messages held, their bytes, and when the oldest arrived (RFC 3339).
    held: i64,
    bytes: i64,
    oldest: Option<String>,
}

#[derive(Debug, Serialize)]
struct ApiMailboxes {
    mailboxes: Vec<ApiMailbox>,
}

/// An admin API caller, or the answer to give instead: the API's refusal
/// for a caller who is not signed in, the router's plain 404 for one who
/// is no admin (before any other check, as on the pages).
async fn api_admin(st: &WebState, headers: &HeaderMap) -> Result<SignedIn, Response> {
    let s = super::api::caller(st, headers, false).await?;
    match st.store.is_admin(s.session.mailbox_id).await {
        Ok(true) => Ok(s),
        Ok(false) => Err(super::not_found().await),
        Err(e) => Err(super::api::json_internal(&e)),
    }
}

/// An admin's state-changing API call: [`api_admin`], then the session's
/// `X-CSRF-Token` and `Origin` as for every such call.
async fn api_admin_changes(st: &WebState, headers: &HeaderMap) -> Result<SignedIn, Response> {
    api_admin(st, headers).await?;
    super::api::caller(st, headers, true).await
}

async fn api_unknown(State(st): State<WebState>, headers: HeaderMap) -> Response {
    match api_admin(&st, &headers).await {
        Ok(_) => super::not_found().await,
        Err(r) => r,
    }
}

/// `GET /api/v1/admin/mailboxes`: every mailbox with its challenge switch
/// and quarantine totals.
async fn api_mailboxes(State(st): State<WebState>, headers: HeaderMap) -> Response {
    if let Err(r) = api_admin(&st, &headers).await {
        return r;
    }
    let all = match st.store.mailbox_totals(None).await {
        Ok(m) => m,
        Err(e) => return super::api::json_internal(&e),
    };
    let mailboxes = all
        .into_iter()
        .map(|m| ApiMailbox {
            id: m.id,
            address: m.address,
            domain: m.domain,
            challenge: m.challenge_enabled,
            admin: m.admin,
            held: m.held,
            bytes: m.bytes,
            oldest: m.oldest.map(|t| super::activity::rfc3339(Timestamp(t))),
        })
        .collect();
    super::api::json(StatusCode::OK, &ApiMailboxes { mailboxes })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSearch {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    subject: String,
}

/// One message of `GET /api/v1/admin/held`.
#[derive(Debug, Serialize)]
struct ApiFound {
    id: i64,
    mailbox_id: i64,
    /// The recipient mailbox's address.
    mailbox: String,
    received: String,
    from: String,
    from_name: String,
    subject: String,
    size: i64,
    reason_detail: String,
}

#[derive(Debug, Serialize)]
struct ApiFoundPage {
    items: Vec<ApiFound>,
    /// More matched than [`SEARCH_LIMIT`]: narrow the search.
    more: bool,
}

/// `GET /api/v1/admin/held?sender=…&subject=…`: held mail of every
/// mailbox whose sender (address, name or envelope) and subject contain
/// the words given (both empty: the newest), newest first, at most
/// [`SEARCH_LIMIT`].
async fn api_held(
    State(st): State<WebState>,
    headers: HeaderMap,
    q: Result<Query<ApiSearch>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use super::api::{json, json_error, json_internal};
    if let Err(r) = api_admin(&st, &headers).await {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let (sender, subject) = (q.sender.trim(), q.subject.trim());
    for (name, v) in [("sender", sender), ("subject", subject)] {
        if v.chars().count() > MAX_SEARCH {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("{name}: at most {MAX_SEARCH} characters"),
            );
        }
        if v.chars().any(char::is_control) {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("{name}: control characters cannot be searched for"),
            );
        }
    }
    let mut found = match st
        .store
        .search_held_everywhere(sender, subject, SEARCH_LIMIT + 1)
        .await
    {
        Ok(f) => f,
        Err(e) => return json_internal(&e),
    };
    let more = found.len() as i64 > SEARCH_LIMIT;
    found.truncate(SEARCH_LIMIT as usize);
    let items = found
        .into_iter()
        .map(|f| ApiFound {
            id: f.id,
            mailbox_id: f.mailbox_id,
            mailbox: f.mailbox,
            received: super::activity::rfc3339(f.arrived_at),
            from: f.sender,
            from_name: f.sender_name,
            subject: f.subject,
            size: f.size,
            reason_detail: f.reason_detail,
        })
        .collect();
    json(StatusCode::OK, &ApiFoundPage { items, more })
}

/// `POST /api/v1/admin/mailboxes/{id}/held/actions`: the body and the
/// answer of `POST /api/v1/held/actions`, on mailbox `{id}`'s held mail
/// for its owner; each message named or matched gets a line in that
/// mailbox's activity naming the admin and the client address.
async fn api_act(
    State(st): State<WebState>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    use super::api::{json, json_error, json_internal};
    let s = match api_admin_changes(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let m = match id.parse::<i64>() {
        Ok(id) => match st.store.mailbox_totals(Some(id)).await {
            Ok(m) => m.into_iter().find(|m| m.id == id),
            Err(e) => return json_internal(&e),
        },
        Err(_) => None,
    };
    let Some(m) = m else {
        return json_error(StatusCode::NOT_FOUND, "there is no such mailbox");
    };
    let done = match super::api_held::act_for(&st, m.id, &headers, &bytes).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let detail = format!(
        "{} for the owner by the admin {} through the API",
        done.action, s.session.address
    );
    let ip = client_ip(&peer);
    let now = st.sessions.now();
    for (held, sender) in &done.ids {
        let line = NewEvent {
            held_id: Some(*held),
            actor: &s.session.address,
            client_ip: &ip,
            ..NewEvent::new(m.id, now, ActivityAction::AdminAction, sender, &detail)
        };
        if let Err(e) = st.store.log_event(&line).await {
            return json_internal(&e);
        }
    }
    tracing::info!(
        admin = %s.session.address, mailbox = %m.address, action = done.action,
        targets = done.targets, "admin acted for an owner through the API"
    );
    json(StatusCode::OK, &done)
}
