//! The web listener: the sender's verification page, the health check
//! and the mailbox owners' pages ([`owner`], signed in through [`session`]).
//!
//! `GET /verify/<token>` only shows who is asking and what is waiting; the
//! button on it `POST`s to the same URL, and only that releases. Link
//! scanners that open every URL in a mail therefore cannot verify a forged
//! sender. Every bad token gets a page that says what is wrong, with a
//! fitting status code, and changes nothing; a token for a challenge id
//! that does not exist and a tampered token for one that does get the same
//! page (404, "This link is not valid"), so the page tells nobody which ids
//! exist.
//!
//! `/digest/<token>` ([`digest`]) serves the owner's digest links the same
//! way: GET shows, only the page's POST acts, every refused token gets one
//! 404 page.
//!
//! [`listener`] serves these routes with every connection and request
//! bounded; [`open_files`] keeps the process's descriptors enough for both
//! listeners.

pub mod activity;
pub mod admin;
pub mod admin_digest;
pub mod api;
pub mod api_held;
pub mod digest;
pub mod listener;
pub mod lists;
pub mod message;
pub mod nav;
pub mod open_files;
pub mod owner;
pub mod session;
pub mod settings;
pub mod templates_page;
pub mod tokens;

use crate::challenge::issue::VerifyError;
use crate::html::escape;
use crate::quarantine::Quarantine;
use crate::quarantine::release::ReleasedBy;
use crate::store::Store;
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client of a request, as the listener gives it (`None` in tests
/// that call the router without one).
pub(crate) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The client's IP address as text (`""`: not known), for activity lines.
pub(crate) fn client_ip(peer: &Peer) -> String {
    peer.as_ref()
        .map(|Extension(ConnectInfo(a))| a.ip().to_string())
        .unwrap_or_default()
}

#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub quarantine: Arc<Quarantine>,
    /// The owners' sign-in sessions ([`owner`]).
    pub sessions: session::Sessions,
}

/// The routes, without limits: [`listener::serve`] adds them.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/verify/{token}", get(show).post(confirm))
        .route("/digest/{token}", get(digest::show).post(digest::confirm))
        .route("/healthz", get(health))
        // Browsers ask for it on every page; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(owner::routes())
        .merge(api::routes())
        .merge(api_held::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(api::json_route_errors))
        .layer(axum::middleware::from_fn(nav::scope))
        .with_state(state)
}

/// A page for a visitor who is not signed in (the sender's verification
/// page, the digest links, errors), in the owner pages' look:
/// `templates/web/public.html` around `body`, which is HTML the caller
/// built and escaped. A page without a form is a result or an error, so
/// its text is in a live region (`role="status"`).
#[derive(Template)]
#[template(path = "web/public.html")]
struct PublicPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    body: &'a str,
    live: bool,
}

/// The sender's verification page: who is asking and what is waiting
/// (subject and `Date:` of each held message, as sent).
#[derive(Template)]
#[template(path = "web/verify.html")]
struct VerifyPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    mailbox: &'a str,
    sender: &'a str,
    waiting: Vec<(String, String)>,
}

/// A complete page, [`PublicPage`] around `body`.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = PublicPage {
        title,
        who: "",
        csrf: "",
        body,
        live: !body.contains("<form"),
    }
    .render();
    rendered(status, html)
}

/// A rendered page with headers that keep it private and uncached, in
/// the owner pages' look (their stylesheet, `templates/web/style.css`).
/// `Referrer-Policy: no-referrer`: these URLs carry tokens.
fn rendered(status: StatusCode, html: Result<String, askama::Error>) -> Response {
    let html = match html {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "web template failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response();
        }
    };
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn token_error_page(e: &VerifyError) -> Response {
    let (status, text) = match e {
        VerifyError::Malformed => (
            StatusCode::BAD_REQUEST,
            "This link is not a valid confirmation link. Check that it was copied completely.",
        ),
        // One answer for both: which challenge ids exist is not the
        // visitor's business (see `Challenges::verify`).
        VerifyError::BadSignature | VerifyError::Unknown => (
            StatusCode::NOT_FOUND,
            "This link is not valid: it may have been altered or copied incompletely, or the messages it was for are no longer kept. Use the link from the message exactly as it arrived.",
        ),
        VerifyError::Expired => (
            StatusCode::GONE,
            "This link has expired and the messages it was for are no longer kept. Please send your message again.",
        ),
        VerifyError::AlreadyUsed => (
            StatusCode::GONE,
            "This link has already been used: your messages were delivered. Nothing more to do.",
        ),
        VerifyError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "This link cannot be checked right now. Please try again in a few minutes.",
        ),
    };
    let title = match e {
        VerifyError::AlreadyUsed => "Already confirmed",
        _ => "This link cannot be used",
    };
    page(status, title, &format!("<p>{}</p>", escape(text)))
}

async fn show(State(st): State<WebState>, Path(token): Path<String>) -> Response {
    let v = match st.quarantine.challenges().verify(&token).await {
        Ok(v) => v,
        Err(e) => return token_error_page(&e),
    };
    let held = match st
        .store
        .list_held(Some(v.mailbox_id), Some(&v.sender))
        .await
    {
        Ok(h) => h,
        Err(e) => return internal_error(&e),
    };
    let waiting = held
        .iter()
        .map(|h| {
            let subject = if h.subject.is_empty() {
                "(no subject)".to_owned()
            } else {
                owner::printable(&h.subject)
            };
            (subject, owner::printable(&h.date_header))
        })
        .collect();
    rendered(
        StatusCode::OK,
        VerifyPage {
            title: "Please confirm your message",
            who: "",
            csrf: "",
            mailbox: &v.addressed_to,
            sender: &v.sender,
            waiting,
        }
        .render(),
    )
}

async fn confirm(
    State(st): State<WebState>,
    Path(token): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let v = match st.quarantine.challenges().verify(&token).await {
        Ok(v) => v,
        Err(e) => return token_error_page(&e),
    };
    match st
        .quarantine
        .release_sender(v.mailbox_id, &v.sender, ReleasedBy::Link)
        .await
    {
        Ok(n) => {
            activity::note_link_use(
                &st,
                v.mailbox_id,
                None,
                &v.sender,
                "verification link",
                &format!("the sender confirmed on the verification page: {n} delivered"),
                peer.map(|Extension(ConnectInfo(a))| a.ip()),
            )
            .await;
            // n is 0 when a second click raced the first: it still worked.
            let what = match n {
                0 => "Your messages".to_owned(),
                1 => "Your message".to_owned(),
                n => format!("Your {n} messages"),
            };
            page(
                StatusCode::OK,
                "Thank you",
                &format!(
                    "<p>{what} to <strong>{mailbox}</strong> {verb} been delivered. \
                     From now on your mail reaches {mailbox} directly.</p>",
                    mailbox = escape(&v.addressed_to),
                    verb = if n == 1 { "has" } else { "have" },
                ),
            )
        }
        Err(e) => internal_error(&e),
    }
}

async fn health(State(st): State<WebState>) -> Response {
    match sqlx::query("SELECT 1").execute(st.store.pool()).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>There is nothing here.</p>",
    )
}

/// An opaque error page; the cause goes to the log.
fn internal_error(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "web request failed");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<p>Your request could not be completed. Please try again in a few minutes.</p>",
    )
}
