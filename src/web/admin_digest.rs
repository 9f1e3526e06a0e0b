//! The admins' domain digests, `/admin/digests`: every address subscribed
//! to the digest of a whole domain, a form to subscribe one (or change its
//! frequency) and a button to unsubscribe each; the same checks and
//! changes as `boxtrap digest` ([`crate::digest::domain`]).
//!
//! As on every `/admin` page: a signed-out visitor is sent to sign in, an
//! owner who is not an admin gets the plain 404, every POST needs the
//! session's CSRF token and a same-origin request. A refused form says
//! which field is wrong, keeps what was typed (400) and changes nothing.

use super::WebState;
use super::admin::admin_session;
use super::owner::{html, internal, printable, refused, see_other};
use super::session::SignedIn;
use crate::clock::Timestamp;
use crate::digest::domain::{self, SubscribeError};
use crate::store::digest::{DomainDigest, Subscribed};
use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

/// The page's routes, merged into the owner's (before `/admin/{*rest}`
/// would answer 404).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin/digests", get(page).post(subscribe))
        .route("/admin/digests/unsubscribe", post(unsubscribe))
}

#[derive(Template)]
#[template(path = "web/digest_admin.html")]
struct DigestsPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: &'static str,
    error: String,
    /// Which field the error is about (`address`, `domain`, `frequency`).
    bad: &'static str,
    subs: Vec<Line>,
    domains: Vec<String>,
    form: &'a SubscribeForm,
}

/// One subscription as shown.
struct Line {
    id: i64,
    domain: String,
    address: String,
    frequency: &'static str,
    last: String,
}

fn line(s: &DomainDigest, tz: &str) -> Line {
    Line {
        id: s.id,
        domain: printable(&s.domain),
        address: printable(&s.address),
        frequency: s.frequency.as_str(),
        last: s.last_at.map_or_else(
            || "never".to_owned(),
            |t| super::settings::local_time(Timestamp(t), tz),
        ),
    }
}

/// The subscribe form, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    frequency: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct UnsubscribeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    done: String,
}

fn done_text(code: &str) -> &'static str {
    match code {
        "subscribed" => "Subscribed. The first digest lists only mail held from now on.",
        "changed" => "The frequency of that subscription was changed.",
        "unsubscribed" => "Unsubscribed. The links in its digests no longer work.",
        _ => "",
    }
}

/// Renders the page: the subscriptions in the admin's time zone, the form
/// as typed.
async fn render(
    st: &WebState,
    s: &SignedIn,
    status: StatusCode,
    notice: &'static str,
    error: (&'static str, String),
    form: &SubscribeForm,
) -> Response {
    let subs = match domain::list(&st.store).await {
        Ok(v) => v,
        Err(e) => return internal(&e),
    };
    let domains = match st.store.list_domains().await {
        Ok(v) => v.into_iter().map(|d| d.name).collect(),
        Err(e) => return internal(&e),
    };
    let tz = match st.store.mailbox_settings(s.session.mailbox_id).await {
        Ok(m) => m.time_zone,
        Err(e) => return internal(&e),
    };
    let page = DigestsPage {
        title: "Domain digests",
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        notice,
        bad: error.0,
        error: error.1,
        subs: subs.iter().map(|x| line(x, &tz)).collect(),
        domains,
        form,
    };
    html(status, page.render(), true)
}

async fn page(State(st): State<WebState>, headers: HeaderMap, Query(q): Query<Done>) -> Response {
    let s = match admin_session(&st, &headers, "/admin/digests").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let form = SubscribeForm {
        frequency: "daily".into(),
        ..SubscribeForm::default()
    };
    render(
        &st,
        &s,
        StatusCode::OK,
        done_text(&q.done),
        ("", String::new()),
        &form,
    )
    .await
}

async fn subscribe(
    State(st): State<WebState>,
    headers: HeaderMap,
    form: Result<Form<SubscribeForm>, FormRejection>,
) -> Response {
    let s = match admin_session(&st, &headers, "/admin/digests").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(r) = refused(&st, &headers, &s, &form.csrf) {
        return r;
    }
    let bad = |field: &'static str, why: String| (field, format!("{}: {why}", label(field)));
    let checked = domain::parse(&form.address, &form.domain, &form.frequency);
    let sub = match checked {
        Ok(sub) => sub,
        Err(r) => {
            let e = bad(r.field, printable(&r.why));
            return render(&st, &s, StatusCode::BAD_REQUEST, "", e, &form).await;
        }
    };
    match domain::subscribe(&st.store, &sub, st.sessions.now()).await {
        Ok(done) => {
            tracing::info!(admin = %s.session.address, address = %sub.address,
                domain = %sub.domain, frequency = %sub.frequency, "domain digest subscribed");
            see_other(match done {
                Subscribed::New => "/admin/digests?done=subscribed",
                Subscribed::Changed(_) => "/admin/digests?done=changed",
            })
        }
        Err(SubscribeError::Refused(r)) => {
            let e = bad(r.field, printable(&r.why));
            render(&st, &s, StatusCode::BAD_REQUEST, "", e, &form).await
        }
        Err(SubscribeError::Store(e)) => internal(&e),
    }
}

/// The form's label of a field, as the error names it.
fn label(field: &str) -> &'static str {
    match field {
        "address" => "Address",
        "domain" => "Domain",
        _ => "Frequency",
    }
}

async fn unsubscribe(
    State(st): State<WebState>,
    headers: HeaderMap,
    form: Result<Form<UnsubscribeForm>, FormRejection>,
) -> Response {
    let s = match admin_session(&st, &headers, "/admin/digests").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Some(r) = refused(&st, &headers, &s, &form.csrf) {
        return r;
    }
    let found = match form.id.trim().parse::<i64>() {
        Ok(id) => match st.store.domain_digest(id).await {
            Ok(found) => found,
            Err(e) => return internal(&e),
        },
        Err(_) => None,
    };
    let Some(sub) = found else {
        return super::owner::message(
            StatusCode::NOT_FOUND,
            "No such subscription",
            "That subscription does not exist (any more); nothing was changed.",
            Some(&s),
        );
    };
    match st
        .store
        .unsubscribe_domain_digest(&sub.domain, &sub.address)
        .await
    {
        Ok(_) => {
            tracing::info!(admin = %s.session.address, address = %sub.address,
                domain = %sub.domain, "domain digest unsubscribed");
            see_other("/admin/digests?done=unsubscribed")
        }
        Err(e) => internal(&e),
    }
}
