//! The mailbox owner's pages: sign-in (`/login`, `/logout`) and the
//! quarantine list (`/quarantine`) with its per-message actions.
//!
//! The mailbox is taken only from the session, never from the request,
//! and every query is scoped by it: another mailbox's message id is "not
//! found" (404) and nothing changes. Every state-changing request is a
//! POST that carries the session's CSRF token and comes from this site
//! (`Origin`, or `Referer` without one); sign-in itself, before there is a
//! session, is checked for its origin. Pages are askama templates
//! (`templates/web/`), escaped at compile time; fields from mail also have
//! their control and direction-changing characters made visible.
//!
//! Sign-in is throttled in the database (so nodes sharing it share the
//! count): [`MAX_FAILURES`] failed attempts within [`WINDOW_SECS`] for one
//! account, or from one client address (IPv4, or IPv6 /64), answer 429 with
//! `Retry-After` until the oldest of them leaves the window.

use super::listener::client_key;
use super::session::{SignedIn, same_secret, secure_headers};
use super::settings::local_time;
use super::{Peer, WebState, client_ip};
use crate::address::EmailAddress;
use crate::clock::Timestamp;
use crate::quarantine::owner::{ActionReport, OwnerAction};
use crate::quarantine::release::ReleasedBy;
use crate::store::StoreError;
use crate::store::deleted::ActedBy;
use crate::store::held::{ChallengeState, HeldState, OutboundState};
use crate::store::search::{CHALLENGE_STATES, HeldQuery, REASONS};
use crate::store::web::{HeldCursor, HeldRow, SenderGroup};
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// Failed sign-ins per account or client address within [`WINDOW_SECS`]
/// before sign-in answers 429.
pub const MAX_FAILURES: i64 = 5;
/// The throttle's window: 15 minutes.
pub const WINDOW_SECS: i64 = 15 * 60;
/// Page sizes the quarantine list offers; the first is the default.
pub const PAGE_SIZES: [i64; 3] = [25, 50, 100];

/// The owner's routes, merged into [`super::router`].
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/quarantine", get(quarantine))
        .route("/quarantine/actions", post(bulk).get(act_by_get))
        .route("/quarantine/{id}/{action}", post(act).get(act_by_get))
        .route("/static/boxtrap.css", get(stylesheet))
        .merge(super::message::routes())
        .merge(super::settings::routes())
        .merge(super::templates_page::routes())
        .merge(super::lists::routes())
        .merge(super::activity::routes())
        .merge(super::admin::routes())
        .merge(super::tokens::routes())
        .merge(super::admin_digest::routes())
}

// ---- pages -------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: &'a str,
    error: &'a str,
    address: &'a str,
    next: &'a str,
}

#[derive(Template)]
#[template(path = "web/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    text: &'a str,
    link: &'a str,
    link_text: &'a str,
}

#[derive(Template)]
#[template(path = "web/quarantine.html")]
struct QuarantinePage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: String,
    summary: String,
    keep_days: i64,
    groups: Vec<Day>,
    first_page: bool,
    limit: i64,
    /// The cursor this page starts after (`""`: the newest).
    after: &'a str,
    /// The cursor of the next (older) page, `""` when there is none.
    next: String,
    /// The search as typed.
    q: &'a str,
    /// Why the search could not be read (`""`: it could).
    search_error: String,
    by_sender: bool,
    senders: Vec<SenderItem>,
    newest_url: String,
    next_url: String,
    messages_url: String,
    senders_url: String,
    reasons: &'static [&'static str],
    states: &'static [&'static str],
    /// The owner's time zone, which the times are in.
    tz: String,
    /// The `deleted_at` an "Undo" restores (`""`: no Undo to offer).
    undo: String,
    /// The list shows deleted mail (`in:deleted`): its actions restore.
    deleted_view: bool,
    /// The list of deleted mail.
    deleted_url: String,
    /// How long deleted mail can be restored, in words ("7 days").
    keep_deleted: String,
}

/// One sender's held mail, as the by-sender view shows it.
struct SenderItem {
    /// The address as stored (`""`: none), for the forms.
    addr_raw: String,
    addr: String,
    name: String,
    messages: i64,
    size: String,
    newest: String,
    subject: String,
    /// The list searched for this sender's mail (`""`: none).
    search: String,
}

struct Day {
    day: String,
    items: Vec<Item>,
}

/// One held message as shown: every field is display text.
struct Item {
    id: i64,
    received: String,
    subject: String,
    from_name: String,
    from_addr: String,
    /// The From: address as stored; `""`: none, so no "allow".
    from_addr_raw: String,
    /// Shown only when it differs from the From: address.
    env_sender: String,
    size: String,
    reason: String,
    challenge: String,
    expires: String,
    releasing: bool,
    /// How many attachments (0 also when not counted).
    attachments: i64,
    /// Not opened or marked seen by the owner yet.
    unseen: bool,
    /// When the owner deleted it, and when it will be purged (`""`: not
    /// deleted).
    deleted: String,
    purged: String,
}

/// A rendered page with the security headers.
pub(super) fn html(
    status: StatusCode,
    body: Result<String, askama::Error>,
    signed_in: bool,
) -> Response {
    let mut r = match body {
        Ok(b) => (status, b).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
        }
    };
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(&mut r, signed_in);
    r
}

pub(super) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    who: Option<&SignedIn>,
) -> Response {
    let (link, link_text) = match who {
        Some(_) => ("/quarantine", "Back to your quarantine"),
        None => ("/login", "Sign in"),
    };
    let page = MessagePage {
        title,
        who: who.map_or("", |s| &s.session.address),
        csrf: who.map_or("", |s| &s.session.csrf_token),
        text,
        link,
        link_text,
    };
    html(status, page.render(), who.is_some())
}

pub(super) fn forbidden(why: &str, who: Option<&SignedIn>) -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Request refused",
        &format!(
            "This request was refused and nothing was changed: {why}. Go back, reload the page and try again."
        ),
        who,
    )
}

pub(super) fn internal(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "owner web request failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Your request could not be completed. Please try again in a few minutes.",
        None,
    )
}

pub(super) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r, true);
    r
}

async fn stylesheet() -> Response {
    let mut r = include_str!("../../templates/web/style.css").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    secure_headers(&mut r, false);
    r
}

async fn home() -> Response {
    see_other("/quarantine")
}

// ---- sign-in -----------------------------------------------------------

/// A redirect target after sign-in: only a path on this site. `None` for
/// anything else (`//host`, `/\host`, a scheme, control characters).
pub fn safe_next(next: &str) -> Option<&str> {
    let b = next.as_bytes();
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && next.len() <= 2000
        && next.bytes().all(|c| c.is_ascii_graphic());
    ok.then_some(next)
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
    done: Option<String>,
}

async fn login_page(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = q
        .next
        .as_deref()
        .and_then(safe_next)
        .unwrap_or("/quarantine");
    // Already signed in: straight on.
    match st.sessions.current(&st.store, &headers).await {
        Ok(Some(_)) => return see_other(next),
        Ok(None) => {}
        Err(e) => return internal(&e),
    }
    let notice = match q.done.as_deref() {
        Some("out") => "You are signed out.",
        _ => "",
    };
    let page = LoginPage {
        title: "Sign in",
        who: "",
        csrf: "",
        notice,
        error: "",
        address: "",
        next,
    };
    html(StatusCode::OK, page.render(), false)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// A hash no password matches in practice, verified when the mailbox has
/// none (or does not exist), so those answers take as long as a wrong
/// password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut b = [0u8; 24];
        rand::fill(&mut b[..]);
        crate::password::hash(&URL_SAFE_NO_PAD.encode(b)).unwrap_or_default()
    })
}

/// What a sign-in attempt came to ([`sign_in`]).
pub(super) enum SignIn {
    /// Signed in: the cookie to set and the session's CSRF token.
    Done { cookie: HeaderValue, csrf: String },
    /// Too many failures for the account or the client address: try again
    /// in this many seconds. Not counted as a failure of its own.
    Throttled { wait_secs: i64 },
    /// Wrong address or password (one answer for both).
    Wrong,
}

/// Checks an address and password, throttled per account and per client
/// address (IPv4, or IPv6 /64); on success starts a session. Shared by
/// `/login` and `POST /api/v1/login`.
pub(super) async fn sign_in(
    st: &WebState,
    peer: SocketAddr,
    typed: &str,
    password: String,
) -> Result<SignIn, StoreError> {
    let account = EmailAddress::parse(typed)
        .map(|a| a.lookup_key())
        .unwrap_or_else(|_| typed.to_lowercase());
    let account_key = format!("account:{account}");
    let ip_key = format!("ip:{}", client_key(peer.ip()));
    let now = st.sessions.now();
    let since = now.plus_secs(-WINDOW_SECS);
    // The attempt counts as a failure before the password is checked, so
    // guesses sent side by side cannot get past the count; a success takes
    // its rows back.
    let attempt = st
        .store
        .note_login_failure(&[&account_key, &ip_key], now)
        .await?;
    let mut wait = 0;
    for key in [&account_key, &ip_key] {
        if let (n, Some(oldest)) = st.store.login_failures(key, since).await?
            && n > MAX_FAILURES
        {
            wait = wait.max(oldest.secs() + WINDOW_SECS - now.secs());
        }
    }
    if wait > 0 {
        st.store.forget_login_attempt(&attempt).await?;
        return Ok(SignIn::Throttled { wait_secs: wait });
    }
    let mailbox = st.store.login_mailbox(&account).await?;
    let (id, phc) = match &mailbox {
        Some(m) if !m.password_hash.is_empty() => (Some(m.id), m.password_hash.clone()),
        _ => (None, decoy_hash().to_owned()),
    };
    let matched = tokio::task::spawn_blocking(move || crate::password::verify(&password, &phc))
        .await
        .unwrap_or(false);
    match (id, matched) {
        (Some(id), true) => {
            st.store.forget_login_attempt(&attempt).await?;
            st.store
                .purge_login_failures(since, Some(&account_key))
                .await?;
            let (cookie, csrf) = st.sessions.start(&st.store, id).await?;
            tracing::info!(mailbox = %account, client = %peer.ip(), "owner signed in");
            Ok(SignIn::Done { cookie, csrf })
        }
        _ => {
            // The attempt stays counted. Failures older than the window
            // are forgotten here, so the table stays as small as the
            // window under a flood.
            st.store.purge_login_failures(since, None).await?;
            tracing::info!(mailbox = ?account, client = %peer.ip(), "owner sign-in failed");
            Ok(SignIn::Wrong)
        }
    }
}

async fn login(
    State(st): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(why) = st.sessions.same_origin(&headers) {
        return forbidden(why, None);
    }
    let next = safe_next(&f.next).unwrap_or("/quarantine");
    let typed: String = f.address.trim().chars().take(320).collect();
    let refusal = |status, error: &str| {
        let page = LoginPage {
            title: "Sign in",
            who: "",
            csrf: "",
            notice: "",
            error,
            address: &typed,
            next,
        };
        html(status, page.render(), false)
    };
    match sign_in(&st, peer, &typed, f.password).await {
        Err(e) => internal(&e),
        Ok(SignIn::Done { cookie, .. }) => {
            let mut r = see_other(next);
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Ok(SignIn::Throttled { wait_secs }) => {
            let minutes = (wait_secs + 59) / 60;
            let mut r = refusal(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed sign-ins for this address or from your network. \
                     Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs.max(1)));
            r
        }
        Ok(SignIn::Wrong) => refusal(
            StatusCode::UNAUTHORIZED,
            "Wrong mailbox address or password.",
        ),
    }
}

/// The session, or the response to give instead (a redirect to sign-in).
pub(super) async fn signed_in(
    st: &WebState,
    headers: &HeaderMap,
    back: &str,
) -> Result<SignedIn, Response> {
    match st.sessions.current(&st.store, headers).await {
        Ok(Some(s)) => {
            // The "Admin" link in the site navigation (super::nav).
            match st.store.is_admin(s.session.mailbox_id).await {
                Ok(admin) => super::nav::set_admin(admin),
                Err(e) => return Err(internal(&e)),
            }
            Ok(s)
        }
        Ok(None) => Err(see_other(&format!("/login?next={}", percent(back)))),
        Err(e) => Err(internal(&e)),
    }
}

/// Checks a state-changing request: same origin, then the CSRF token.
/// `Some`: the refusal to give.
pub(super) fn refused(
    st: &WebState,
    headers: &HeaderMap,
    s: &SignedIn,
    token: &str,
) -> Option<Response> {
    if let Err(why) = st.sessions.same_origin(headers) {
        return Some(forbidden(why, Some(s)));
    }
    if token.is_empty() {
        return Some(forbidden(
            "the form carried no security token (CSRF token)",
            Some(s),
        ));
    }
    if !same_secret(token, &s.session.csrf_token) {
        return Some(forbidden(
            "the form's security token (CSRF token) is not this session's; the page may be from an earlier sign-in",
            Some(s),
        ));
    }
    None
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/quarantine").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    if let Err(e) = st.store.delete_web_session(&s.id_hash).await {
        return internal(&e);
    }
    let mut r = see_other("/login?done=out");
    r.headers_mut()
        .insert(header::SET_COOKIE, st.sessions.clear_cookie());
    r
}

// ---- the quarantine list -------------------------------------------------

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
    done: Option<String>,
    /// The search ([`HeldQuery`]'s language).
    q: Option<String>,
    /// `sender`: one line per sender instead of per message.
    view: Option<String>,
    /// The `deleted_at` of what the action just done deleted: its Undo.
    undo: Option<String>,
}

/// Where the list is: what to show and from where; rebuilt into links
/// and the redirect after an action.
#[derive(Debug, Clone, Default)]
pub(super) struct ListState {
    pub q: String,
    pub by_sender: bool,
    pub limit: i64,
    /// A cursor, `""` for the newest.
    pub after: String,
}

impl ListState {
    /// `/quarantine?...` for this state, with `done` if not empty.
    pub(super) fn url(&self, done: &str) -> String {
        let mut u = form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            u.append_pair("q", &self.q);
        }
        if self.by_sender {
            u.append_pair("view", "sender");
        }
        if self.limit != PAGE_SIZES[0] {
            u.append_pair("limit", &self.limit.to_string());
        }
        if !self.after.is_empty() {
            u.append_pair("after", &self.after);
        }
        if !done.is_empty() {
            u.append_pair("done", done);
        }
        let query = u.finish();
        if query.is_empty() {
            "/quarantine".to_owned()
        } else {
            format!("/quarantine?{query}")
        }
    }
}

fn parse_limit(s: Option<&str>) -> Option<i64> {
    match s {
        None | Some("") => Some(PAGE_SIZES[0]),
        Some(s) => s.parse().ok().filter(|n| PAGE_SIZES.contains(n)),
    }
}

/// The opaque cursor of a page that starts after `c`.
pub fn encode_cursor(c: HeldCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", c.arrived_at.0, c.id))
}

pub fn decode_cursor(s: &str) -> Option<HeldCursor> {
    let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
    let raw = std::str::from_utf8(&raw).ok()?;
    let (at, id) = raw.split_once('.')?;
    Some(HeldCursor {
        arrived_at: Timestamp(at.parse().ok()?),
        id: id.parse().ok()?,
    })
}

/// The result line of an action, from its code in the redirect
/// (`delivered.1`, `allowed.3`, `deleted.1`, `gone`); a code that is none
/// of ours shows nothing.
pub(super) fn done_text(code: &str) -> String {
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    match code.split_once('.') {
        Some(("delivered", n)) => n
            .parse::<u32>()
            .map_or(String::new(), |n| format!("{n} delivered.")),
        Some(("allowed", n)) => n
            .parse::<u32>()
            .map_or(String::new(), |n| format!("{n} delivered, sender allowed.")),
        Some(("deleted", n)) => n
            .parse::<u32>()
            .map_or(String::new(), |n| format!("{n} deleted.")),
        Some(("busy", n)) => n.parse::<u32>().map_or(String::new(), |n| {
            format!(
                "{n} message{} already being delivered; nothing else done.",
                plural(n)
            )
        }),
        _ if code == "gone" => "Nothing done: the message was already delivered or deleted.".into(),
        Some(("act", counts)) => act_text(counts).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The code of an [`ActionReport`] in the redirect: `act.` and its
/// counts (delivered, deleted, rules added, skipped, not listed,
/// restored, marked seen or not).
pub(super) fn act_code(r: &ActionReport) -> String {
    format!(
        "act.{}.{}.{}.{}.{}.{}.{}",
        r.delivered,
        r.deleted,
        r.rules_added.len(),
        r.skipped,
        r.not_listed.len(),
        r.restored,
        r.marked
    )
}

/// The sentence for an `act.` code's counts.
fn act_text(counts: &str) -> Option<String> {
    let n: Vec<u32> = counts
        .split('.')
        .map(|c| c.parse().ok())
        .collect::<Option<_>>()?;
    let [
        delivered,
        deleted,
        rules,
        skipped,
        unlisted,
        restored,
        marked,
    ] = n[..]
    else {
        return None;
    };
    let s = |n: u32| if n == 1 { "" } else { "s" };
    let mut parts = Vec::new();
    if delivered > 0 {
        parts.push(format!("{delivered} delivered"));
    }
    if deleted > 0 {
        parts.push(format!("{deleted} deleted"));
    }
    if restored > 0 {
        parts.push(format!("{restored} restored to the quarantine"));
    }
    if marked > 0 {
        parts.push(format!("{marked} marked"));
    }
    if rules > 0 {
        parts.push(format!("{rules} rule{} added to your lists", s(rules)));
    }
    if skipped > 0 {
        parts.push(format!(
            "{skipped} message{} skipped (already delivered, deleted or restored)",
            s(skipped)
        ));
    }
    if unlisted > 0 {
        parts.push(format!(
            "{unlisted} sender{} not listed (no From: address, or the list is full)",
            s(unlisted)
        ));
    }
    if parts.is_empty() {
        return Some("Nothing was done: nothing matched.".into());
    }
    let text = parts.join(", ");
    let mut c = text.chars();
    Some(format!(
        "{}.",
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    ))
}

async fn quarantine(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let mut state = ListState {
        q: q.q.clone().unwrap_or_default(),
        by_sender: q.view.as_deref() == Some("sender"),
        limit: PAGE_SIZES[0],
        after: String::new(),
    };
    // Back here after sign-in, with the page size and cursor as given.
    state.limit = parse_limit(q.limit.as_deref()).unwrap_or(PAGE_SIZES[0]);
    state.after = q.after.clone().unwrap_or_default();
    let s = match signed_in(&st, &headers, &state.url("")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let bad = |text: &str| message(StatusCode::BAD_REQUEST, "Bad request", text, Some(&s));
    let Some(limit) = parse_limit(q.limit.as_deref()) else {
        return bad("The page size must be 25, 50 or 100.");
    };
    state.limit = limit;
    let after_text = q.after.as_deref().unwrap_or("");
    let after = if after_text.is_empty() {
        None
    } else {
        match decode_cursor(after_text) {
            Some(c) => Some(c),
            None => return bad("This page link is not valid. Start again from the newest mail."),
        }
    };
    state.after = after_text.to_owned();
    let now = st.sessions.now();
    let mailbox_id = s.session.mailbox_id;
    let (keep_days, tz) = match st.store.mailbox_settings(mailbox_id).await {
        Ok(m) => (m.keep_days, m.time_zone),
        Err(e) => return internal(&e),
    };
    let (query, search_error) = match HeldQuery::parse(&state.q, now) {
        Ok(query) => (query, String::new()),
        Err(e) => (HeldQuery::default(), e.to_string()),
    };
    let keep_deleted = i64::try_from(st.quarantine.keep_deleted().as_secs()).unwrap_or(i64::MAX);
    let mut page = QuarantinePage {
        title: "Your quarantine",
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        notice: q.done.as_deref().map(done_text).unwrap_or_default(),
        summary: String::new(),
        keep_days,
        groups: Vec::new(),
        senders: Vec::new(),
        first_page: after.is_none(),
        limit,
        after: if after.is_some() { after_text } else { "" },
        next: String::new(),
        q: &state.q,
        search_error,
        by_sender: state.by_sender,
        newest_url: ListState {
            after: String::new(),
            ..state.clone()
        }
        .url(""),
        next_url: String::new(),
        messages_url: ListState {
            by_sender: false,
            after: String::new(),
            ..state.clone()
        }
        .url(""),
        senders_url: ListState {
            by_sender: true,
            after: String::new(),
            ..state.clone()
        }
        .url(""),
        reasons: REASONS,
        states: CHALLENGE_STATES,
        tz: tz.clone(),
        undo: q
            .undo
            .as_deref()
            .filter(|u| u.parse::<i64>().is_ok())
            .unwrap_or("")
            .to_owned(),
        deleted_view: query.reads_deleted(),
        deleted_url: ListState {
            q: "in:deleted".into(),
            limit,
            ..ListState::default()
        }
        .url(""),
        keep_deleted: duration_words(keep_deleted),
    };
    if !page.search_error.is_empty() {
        let mut r = html(StatusCode::BAD_REQUEST, page.render(), true);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    if state.by_sender {
        let groups = match st
            .store
            .held_senders(mailbox_id, &query, SENDER_LIMIT)
            .await
        {
            Ok(g) => g,
            Err(e) => return internal(&e),
        };
        page.summary = match groups.len() as i64 {
            0 => String::new(),
            n if n == SENDER_LIMIT => format!("The {n} senders with the newest held mail."),
            1 => "1 sender.".into(),
            n => format!("{n} senders."),
        };
        page.senders = groups.iter().map(|g| sender_item(g, &tz)).collect();
        return html(StatusCode::OK, page.render(), true);
    }
    let mut rows = match st
        .store
        .held_page(mailbox_id, &query, after, limit + 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if let (true, Some(r)) = (more, rows.last()) {
        page.next = encode_cursor(HeldCursor {
            arrived_at: r.arrived_at,
            id: r.id,
        });
        page.next_url = ListState {
            after: page.next.clone(),
            ..state.clone()
        }
        .url("");
    }
    let shown = rows.len();
    for r in rows {
        let day = day_of(r.arrived_at, now, &tz);
        let item = item(&r, keep_days, keep_deleted, now, &tz);
        match page.groups.last_mut() {
            Some(g) if g.day == day => g.items.push(item),
            _ => page.groups.push(Day {
                day,
                items: vec![item],
            }),
        }
    }
    let matching = if query.is_empty() {
        ""
    } else if page.deleted_view {
        " (deleted)"
    } else {
        " matching your search"
    };
    page.summary = match (shown, after.is_some()) {
        (0, _) => String::new(),
        (1, false) => format!("The newest held message{matching}."),
        (n, false) => format!(
            "The {n} newest held messages{matching}{}.",
            if more { "" } else { " (all of them)" }
        ),
        (n, true) => format!(
            "{n} older held message{}{matching}.",
            if n == 1 { "" } else { "s" }
        ),
    };
    html(StatusCode::OK, page.render(), true)
}

/// A retention in words: "7 days", "36 hours", "1 hour".
fn duration_words(secs: i64) -> String {
    let (n, unit) = if secs >= 86400 && secs % 86400 == 0 {
        (secs / 86400, "day")
    } else {
        (secs / 3600, "hour")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The most senders the by-sender view shows.
pub const SENDER_LIMIT: i64 = 200;

fn sender_item(g: &SenderGroup, tz: &str) -> SenderItem {
    SenderItem {
        addr_raw: g.sender.clone(),
        addr: if g.sender.is_empty() {
            "no address".to_owned()
        } else {
            printable(&g.sender)
        },
        name: printable(&g.sender_name),
        messages: g.messages,
        size: size_text(g.bytes),
        newest: local_time(Timestamp(g.newest), tz),
        subject: printable(&g.a_subject),
        search: if g.sender.is_empty() {
            String::new()
        } else {
            ListState {
                q: format!("from:{}", g.sender),
                limit: PAGE_SIZES[0],
                ..ListState::default()
            }
            .url("")
        },
    }
}

/// The day `t` falls on in the owner's time zone `tz`, as a heading.
fn day_of(t: Timestamp, now: Timestamp, tz: &str) -> String {
    let day = |t: Timestamp| local_time(t, tz)[..10].to_owned();
    let d = day(t);
    if d == day(now) {
        format!("Today, {d}")
    } else if d == day(now.plus_secs(-86400)) {
        format!("Yesterday, {d}")
    } else {
        d
    }
}

/// `keep_deleted`: seconds deleted mail is kept (`challenge.keep_deleted`).
fn item(r: &HeldRow, keep_days: i64, keep_deleted: i64, now: Timestamp, tz: &str) -> Item {
    let from_addr = if r.sender.is_empty() {
        "no address".to_owned()
    } else {
        printable(&r.sender)
    };
    let env = if r.env_sender.is_empty() {
        "<> (a bounce or notice)".to_owned()
    } else {
        r.env_sender.clone()
    };
    let env_sender = if r.env_sender.eq_ignore_ascii_case(&r.sender) {
        String::new()
    } else {
        printable(&env)
    };
    let subject = if r.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        printable(&r.subject)
    };
    Item {
        id: r.id,
        received: local_time(r.arrived_at, tz),
        subject,
        from_name: printable(&r.sender_name),
        from_addr,
        from_addr_raw: r.sender.clone(),
        env_sender,
        size: size_text(r.size),
        reason: printable(&r.reason_detail),
        challenge: challenge_text(r, tz),
        expires: expires_text(r.arrived_at.plus_secs(keep_days * 86400), now, tz),
        releasing: r.state == HeldState::Releasing,
        attachments: r.attachments.unwrap_or(0),
        unseen: r.seen_at.is_none(),
        deleted: r
            .deleted_at
            .map_or(String::new(), |t| local_time(Timestamp(t), tz)),
        purged: r.deleted_at.map_or(String::new(), |t| {
            expires_text(Timestamp(t).plus_secs(keep_deleted), now, tz)
        }),
    }
}

/// What became of the challenge for a held message, in words.
/// `tz`: the owner's time zone, for the time it was sent.
pub(super) fn challenge_text(r: &HeldRow, tz: &str) -> String {
    let Some(_) = r.challenge_id else {
        let why = match r.reason.as_str() {
            "challenge-off" => "challenge-response is off for this mailbox",
            "no-sender" | "unusable-from" => "no usable From: address",
            "null-sender" => "a bounce or notice",
            "role-sender" => "sent by an automated address",
            "own-address" => "it claims to be from your own address",
            "automated" => "automated mail",
            "rate-limited" => "the challenge rate limit was reached",
            "spam" => "the spam score is too high",
            "not-authenticated" => "the sender is not authenticated",
            "auth-temporary" => "the sender's authentication could not be checked",
            "challenge-failed" => "the challenge could not be built",
            _ => "see why held",
        };
        return format!("Not sent: {why}");
    };
    match r.challenge_state {
        Some(ChallengeState::Verified) => "Answered: the sender confirmed".into(),
        Some(ChallengeState::Expired) => "Expired without an answer".into(),
        None => "Gone".into(),
        Some(ChallengeState::Open) => match (r.mail_state, r.mail_done_at) {
            (Some(OutboundState::Sent), Some(at)) => {
                format!(
                    "Sent {}, waiting for an answer",
                    local_time(Timestamp(at), tz)
                )
            }
            (Some(OutboundState::Failed), _) => format!(
                "Could not be delivered to the sender: {}",
                printable(r.mail_error.as_deref().unwrap_or("no reason given"))
            ),
            (Some(OutboundState::Queued), _) => "Queued to be sent".into(),
            _ => "Sent, waiting for an answer".into(),
        },
    }
}

pub(super) fn size_text(n: i64) -> String {
    match n {
        n if n < 1024 => format!("{n} bytes"),
        n if n < 1024 * 1024 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{:.1} MB", n as f64 / (1024.0 * 1024.0)),
    }
}

pub(super) fn expires_text(at: Timestamp, now: Timestamp, tz: &str) -> String {
    let left = at.secs() - now.secs();
    let when = local_time(at, tz);
    match left {
        l if l <= 0 => format!("{when} (due now)"),
        l if l < 3600 => format!("{when} (in {} minutes)", (l + 59) / 60),
        l if l < 2 * 86400 => format!("{when} (in {} hours)", l / 3600),
        l => format!("{when} (in {} days)", l / 86400),
    }
}

/// Text from mail made safe to look at: control characters shown as
/// their Unicode pictures, and characters that reorder or hide text
/// (bidi overrides, zero-width) as U+FFFD. HTML escaping is askama's.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(1000)
        .map(|c| match c {
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
            '\u{7f}' => '\u{2421}',
            '\u{80}'..='\u{9f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

// ---- actions -------------------------------------------------------------

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    after: String,
    /// The search the list showed, to go back to it.
    #[serde(default)]
    q: String,
}

/// A GET on an action's URL (a link scanner, a prefetch) changes nothing.
async fn act_by_get() -> Response {
    let mut r = message(
        StatusCode::METHOD_NOT_ALLOWED,
        "Nothing done",
        "Actions on held mail are taken with the buttons on your quarantine page.",
        None,
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Deliver,
    Allow,
    Delete,
    Restore,
}

/// `POST /quarantine/{id}/{deliver|allow|delete|restore}`: the buttons of
/// one message.
async fn act(
    State(st): State<WebState>,
    headers: HeaderMap,
    peer: Peer,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/quarantine").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "That message is not in your quarantine.",
            Some(&s),
        )
    };
    let action = match action.as_str() {
        "deliver" => Action::Deliver,
        "allow" => Action::Allow,
        "delete" => Action::Delete,
        "restore" => Action::Restore,
        _ => return not_found(),
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found();
    };
    let mailbox_id = s.session.mailbox_id;
    let (id, sender, state) = match st.store.held_of_mailbox(mailbox_id, id).await {
        Ok(Some(h)) => h,
        Ok(None) => return not_found(),
        Err(e) => return internal(&e),
    };
    let ip = client_ip(&peer);
    let by = ActedBy {
        actor: "",
        client_ip: &ip,
    };
    let mut undo = None;
    let done = match action {
        Action::Allow if sender.is_empty() => {
            return message(
                StatusCode::CONFLICT,
                "Nothing to allow",
                "This message has no From: address, so there is no sender to allow. Deliver it on its own instead.",
                Some(&s),
            );
        }
        Action::Allow => match st
            .quarantine
            .release_sender(mailbox_id, &sender, ReleasedBy::Owner)
            .await
        {
            Ok(n) => format!("allowed.{n}"),
            Err(e) => return internal(&e),
        },
        _ if state == HeldState::Releasing => "busy.1".to_owned(),
        // Only a restore acts on deleted mail.
        Action::Deliver | Action::Delete if state == HeldState::Deleted => "gone".to_owned(),
        Action::Deliver => match st.quarantine.release_one(id).await {
            Ok(true) => "delivered.1".to_owned(),
            Ok(false) => "gone".to_owned(),
            Err(e) => return internal(&e),
        },
        Action::Delete | Action::Restore => {
            let what = if action == Action::Delete {
                OwnerAction::Delete
            } else {
                OwnerAction::Undelete
            };
            match st
                .quarantine
                .owner_act_by(mailbox_id, what, &[(id, sender)], by)
                .await
            {
                Ok(r) => {
                    undo = r.deleted_at;
                    act_code(&r)
                }
                Err(e) => return internal(&e),
            }
        }
    };
    tracing::info!(mailbox = %s.session.address, held = id, action = ?action, result = %done, "owner acted on held mail");
    let state = ListState {
        q: f.q,
        by_sender: false,
        limit: parse_limit(Some(&f.limit)).unwrap_or(PAGE_SIZES[0]),
        after: if decode_cursor(&f.after).is_some() {
            f.after
        } else {
            String::new()
        },
    };
    see_other(&with_undo(state.url(&done), undo))
}

/// `url` (which has a query) with the Undo of a delete.
fn with_undo(mut url: String, deleted_at: Option<i64>) -> String {
    if let Some(t) = deleted_at {
        url.push_str(&format!("&undo={t}"));
    }
    url
}

/// The most messages one action on "everything matching this search"
/// acts on; the rest wait for the next press.
pub const BULK_LIMIT: i64 = 10_000;

/// A bulk action's form: repeated `id` and `sender` fields, so read with
/// `form_urlencoded` rather than serde.
#[derive(Debug, Default)]
struct BulkForm {
    csrf: String,
    action: String,
    ids: Vec<String>,
    senders: Vec<String>,
    /// `matching`: everything the search `q` matches.
    scope: String,
    /// What one delete deleted (its time): the Undo of that delete.
    deleted_at: String,
    q: String,
    view: String,
    limit: String,
    after: String,
}

impl BulkForm {
    fn read(body: &[u8]) -> BulkForm {
        let mut f = BulkForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.into_owned();
            match &*k {
                "csrf" => f.csrf = v,
                "action" => f.action = v,
                "id" => f.ids.push(v),
                "sender" => f.senders.push(v),
                "scope" => f.scope = v,
                "deleted_at" => f.deleted_at = v,
                "q" => f.q = v,
                "view" => f.view = v,
                "limit" => f.limit = v,
                "after" => f.after = v,
                _ => {}
            }
        }
        f
    }
}

/// What a bulk request acts on, checked against the owner's mailbox:
/// `Err` is the message to give (nothing was done).
pub(super) enum Targets {
    Found(Vec<(i64, String)>),
    /// An id or sender that is not in this quarantine: 404.
    NotFound(String),
    /// The request itself is wrong: 400.
    Bad(String),
}

/// What a bulk request names: ids and senders, everything a search
/// matches, or what one delete deleted.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Selection<'a> {
    pub ids: &'a [String],
    pub senders: &'a [String],
    /// Everything this search matches, instead of ids and senders.
    pub matching: Option<&'a str>,
    /// The `deleted_at` of one delete (microseconds): its Undo, instead of
    /// ids and senders.
    pub deleted_at: Option<&'a str>,
}

/// Resolves a [`Selection`] to held messages of `mailbox_id`; any id or
/// sender that is not this mailbox's refuses the whole request.
pub(super) async fn targets(
    st: &WebState,
    mailbox_id: i64,
    sel: Selection<'_>,
) -> Result<Targets, StoreError> {
    if let Some(q) = sel.matching {
        let query = match HeldQuery::parse(q, st.sessions.now()) {
            Ok(query) => query,
            Err(e) => return Ok(Targets::Bad(format!("The search cannot be read: {e}."))),
        };
        return Ok(Targets::Found(
            st.store
                .held_matching(mailbox_id, &query, BULK_LIMIT)
                .await?,
        ));
    }
    if let Some(at) = sel.deleted_at {
        let Ok(at) = at.trim().parse::<i64>() else {
            return Ok(Targets::Bad(format!(
                "{:?} is not the time of a delete.",
                printable(at)
            )));
        };
        let found = st.store.deleted_together(mailbox_id, Timestamp(at)).await?;
        if found.is_empty() {
            return Ok(Targets::NotFound(
                "Nothing deleted then is still there to restore (restored already, or purged)."
                    .into(),
            ));
        }
        return Ok(Targets::Found(found));
    }
    if sel.ids.len() + sel.senders.len() > BULK_LIMIT as usize {
        return Ok(Targets::Bad(format!(
            "At most {BULK_LIMIT} messages or senders can be chosen at once."
        )));
    }
    let mut wanted = Vec::with_capacity(sel.ids.len());
    for id in sel.ids {
        let Ok(n) = id.trim().parse::<i64>() else {
            return Ok(Targets::Bad(format!(
                "{:?} is not a message id.",
                printable(id)
            )));
        };
        wanted.push(n);
    }
    let mut found = st.store.held_of_mailbox_many(mailbox_id, &wanted).await?;
    if let Some(n) = wanted
        .iter()
        .find(|n| found.binary_search_by_key(*n, |(id, _)| *id).is_err())
    {
        return Ok(Targets::NotFound(format!(
            "Message {n} is not in your quarantine."
        )));
    }
    for sender in sel.senders {
        match st
            .store
            .held_ids_from(mailbox_id, Some(sender), None)
            .await?
            .first()
        {
            Some(id) => found.push((*id, sender.clone())),
            None => {
                return Ok(Targets::NotFound(format!(
                    "Nothing from {} is in your quarantine.",
                    printable(sender)
                )));
            }
        }
    }
    if found.is_empty() {
        return Ok(Targets::Bad(
            "Choose at least one message or sender, or \"everything matching this search\".".into(),
        ));
    }
    Ok(Targets::Found(found))
}

/// `POST /quarantine/actions`: one action on the chosen messages, the
/// chosen senders' mail, or everything the search matches.
async fn bulk(
    State(st): State<WebState>,
    headers: HeaderMap,
    peer: Peer,
    body: axum::body::Bytes,
) -> Response {
    let f = BulkForm::read(&body);
    let state = ListState {
        q: f.q.clone(),
        by_sender: f.view == "sender",
        limit: parse_limit(Some(&f.limit)).unwrap_or(PAGE_SIZES[0]),
        after: if decode_cursor(&f.after).is_some() {
            f.after.clone()
        } else {
            String::new()
        },
    };
    let s = match signed_in(&st, &headers, &state.url("")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let Ok(action) = f.action.parse::<OwnerAction>() else {
        return message(
            StatusCode::BAD_REQUEST,
            "Nothing done",
            &format!(
                "{:?} is not an action on held mail. Nothing was changed.",
                printable(&f.action)
            ),
            Some(&s),
        );
    };
    let mailbox_id = s.session.mailbox_id;
    let sel = Selection {
        ids: &f.ids,
        senders: &f.senders,
        matching: (f.scope == "matching").then_some(f.q.as_str()),
        deleted_at: (!f.deleted_at.is_empty()).then_some(f.deleted_at.as_str()),
    };
    let found = match targets(&st, mailbox_id, sel).await {
        Ok(Targets::Found(t)) => t,
        Ok(Targets::NotFound(why)) => {
            return message(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("{why} Nothing was changed."),
                Some(&s),
            );
        }
        Ok(Targets::Bad(why)) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Nothing done",
                &format!("{why} Nothing was changed."),
                Some(&s),
            );
        }
        Err(e) => return internal(&e),
    };
    let ip = client_ip(&peer);
    let by = ActedBy {
        actor: "",
        client_ip: &ip,
    };
    let report = match st
        .quarantine
        .owner_act_by(mailbox_id, action, &found, by)
        .await
    {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    tracing::info!(
        mailbox = %s.session.address, action = %action, targets = found.len(),
        delivered = report.delivered, deleted = report.deleted, "owner acted on held mail"
    );
    // The page the action came from; after a deletion its cursor may
    // point past what is left, which only shows less.
    see_other(&with_undo(state.url(&act_code(&report)), report.deleted_at))
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(super) fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_paths_are_redirect_targets() {
        for ok in ["/", "/quarantine", "/quarantine?limit=50&after=x"] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "javascript:alert(1)",
            "/a b",
            "/\r\nSet-Cookie: x=1",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = HeldCursor {
            arrived_at: Timestamp(1_795_788_353_000_123),
            id: 42,
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        for bad in ["", "x", "!!", &URL_SAFE_NO_PAD.encode("1.x")] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn results_read_as_sentences_and_unknown_codes_show_nothing() {
        assert_eq!(done_text("delivered.1"), "1 delivered.");
        assert_eq!(done_text("allowed.3"), "3 delivered, sender allowed.");
        assert_eq!(done_text("deleted.1"), "1 deleted.");
        assert_eq!(done_text("<script>"), "");
        assert_eq!(done_text("delivered.<b>"), "");
    }

    #[test]
    fn control_and_bidi_characters_are_made_visible() {
        assert_eq!(
            printable("a\u{1b}[1mb\r\n"),
            "a\u{241b}[1mb\u{240d}\u{240a}"
        );
        assert_eq!(printable("x\u{202e}gpj.exe"), "x\u{fffd}gpj.exe");
        assert_eq!(printable("<script>"), "<script>");
    }

    #[test]
    fn page_sizes_are_25_50_or_100() {
        assert_eq!(parse_limit(None), Some(25));
        assert_eq!(parse_limit(Some("100")), Some(100));
        assert_eq!(parse_limit(Some("1000")), None);
        assert_eq!(parse_limit(Some("x")), None);
    }
}
