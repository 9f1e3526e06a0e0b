//! The owner's personal API tokens, on `/settings` and in the JSON API:
//!
//! - the settings page lists the owner's tokens (name, created, last
//!   used) with a form to make one (`POST /settings/tokens`, shown once on
//!   the page that answers, with a hint to copy it) and a button to revoke
//!   each (`POST /settings/tokens/{id}/revoke`), every POST with the
//!   session's CSRF token and our own origin;
//! - `GET /api/v1/tokens` → `{"tokens": [{"id", "name", "created",
//!   "last_used"}]}`; `POST /api/v1/tokens` `{"name"}` → 201 `{"id",
//!   "name", "created", "token"}`; `DELETE /api/v1/tokens/{id}` → 204.
//!
//! Only a signed-in session makes tokens: a token caller gets 403 from
//! `POST /api/v1/tokens`, so a leaked token cannot mint others that would
//! outlive its revocation. A token caller may list and revoke (itself
//! included). Another mailbox's token id is 404, as an id that does not
//! exist. The same checks as `boxtrap token create` (the name, 1 to 100
//! characters), and at most [`MAX_TOKENS`] per mailbox.

use super::WebState;
use super::activity::rfc3339;
use super::api::{body, caller, json, json_error, json_internal};
use super::owner::{internal, message, printable, refused, see_other, signed_in};
use super::session::SignedIn;
use crate::cli::check_token_name;
use crate::clock::Timestamp;
use crate::store::StoreError;
use crate::store::api_tokens::ApiToken;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

/// Most tokens one mailbox may have at once.
pub const MAX_TOKENS: usize = 50;

/// The token routes, merged into [`super::owner::routes`].
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/settings/tokens", post(create_form))
        .route("/settings/tokens/{id}/revoke", post(revoke_form))
        .route("/api/v1/tokens", get(api_list).post(api_create))
        .route("/api/v1/tokens/{id}", delete(api_revoke))
}

/// One token as the settings page shows it (display text).
pub(super) struct TokenLine {
    pub id: i64,
    pub name: String,
    pub created: String,
    /// `"never"` when it was never used.
    pub last_used: String,
}

/// The settings page's token section.
#[derive(Default)]
pub(super) struct TokenView {
    pub lines: Vec<TokenLine>,
    /// A token just made, shown this once; `""`: none.
    pub new_token: String,
    pub new_name: String,
    /// The name typed for a refused token, kept in the field.
    pub name: String,
    /// Why the new token was refused; `""`: it was not.
    pub error: String,
}

/// The owner's tokens as the page lists them, times in the zone `tz`.
pub(super) async fn lines(
    st: &WebState,
    mailbox_id: i64,
    tz: &str,
) -> Result<Vec<TokenLine>, StoreError> {
    Ok(st
        .store
        .api_tokens(mailbox_id)
        .await?
        .into_iter()
        .map(|t| TokenLine {
            id: t.id,
            name: printable(&t.name),
            created: super::settings::local_time(t.created_at, tz),
            last_used: t.last_used.map_or_else(
                || "never".to_owned(),
                |u| super::settings::local_time(Timestamp(u), tz),
            ),
        })
        .collect())
}

/// What making a token came to.
enum Made {
    /// The token's id and name, and the secret to show once.
    Done {
        id: i64,
        name: String,
        token: String,
        created: Timestamp,
    },
    /// Refused, with why: nothing was made.
    Refused(String),
}

/// Makes a token named `name` for the mailbox: the check and the write
/// both the page and the API use.
async fn make(st: &WebState, mailbox_id: i64, name: &str) -> Result<Made, StoreError> {
    let name = match check_token_name(name) {
        Ok(n) => n.to_owned(),
        Err(e) => return Ok(Made::Refused(e.to_string())),
    };
    if st.store.api_tokens(mailbox_id).await?.len() >= MAX_TOKENS {
        return Ok(Made::Refused(format!(
            "token name: you already have {MAX_TOKENS} tokens, the most a mailbox may have; revoke one first"
        )));
    }
    let (token, hash) = super::api::new_api_token();
    let created = st.sessions.now();
    let id = st
        .store
        .create_api_token(mailbox_id, &name, &hash, created)
        .await?;
    Ok(Made::Done {
        id,
        name,
        token,
        created,
    })
}

/// The token id in a URL, if it is a number.
fn token_id(id: &str) -> Option<i64> {
    id.parse().ok()
}

// ---- the settings page's forms ----------------------------------------------

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /settings/tokens`: the settings page again, with the new token
/// shown once (never in a URL), or the name refused and kept (400).
async fn create_form(
    State(st): State<WebState>,
    headers: HeaderMap,
    form: Result<Form<CreateForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let s = match signed_in(&st, &headers, "/settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form.map_or(
        CreateForm {
            csrf: String::new(),
            name: String::new(),
        },
        |Form(f)| f,
    );
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let (status, view) = match make(&st, s.session.mailbox_id, &f.name).await {
        Err(e) => return internal(&e),
        Ok(Made::Done {
            id, name, token, ..
        }) => {
            tracing::info!(mailbox = %s.session.address, token = id, "owner made an API token");
            (
                StatusCode::OK,
                TokenView {
                    new_token: token,
                    new_name: printable(&name),
                    ..TokenView::default()
                },
            )
        }
        Ok(Made::Refused(why)) => (
            StatusCode::BAD_REQUEST,
            TokenView {
                name: f.name.chars().take(200).collect(),
                error: why,
                ..TokenView::default()
            },
        ),
    };
    super::settings::page_with_tokens(&st, &s, status, view).await
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn no_token(s: &SignedIn) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "You have no API token by that id; nothing was changed.",
        Some(s),
    )
}

/// `POST /settings/tokens/{id}/revoke`: revokes one of the owner's
/// tokens, back to `/settings`.
async fn revoke_form(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let s = match signed_in(&st, &headers, "/settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = form.map_or(String::new(), |Form(f)| f.csrf);
    if let Some(r) = refused(&st, &headers, &s, &csrf) {
        return r;
    }
    let Some(id) = token_id(&id) else {
        return no_token(&s);
    };
    match st.store.revoke_api_token(s.session.mailbox_id, id).await {
        Ok(true) => {
            tracing::info!(mailbox = %s.session.address, token = id, "owner revoked an API token");
            see_other("/settings?done=token-revoked#tokens")
        }
        Ok(false) => no_token(&s),
        Err(e) => internal(&e),
    }
}

// ---- JSON API ----------------------------------------------------------------

/// A token as the API lists it: never the secret. Times are RFC 3339.
#[derive(Serialize)]
struct TokenJson {
    id: i64,
    name: String,
    created: String,
    /// `null`: never used.
    last_used: Option<String>,
}

impl From<&ApiToken> for TokenJson {
    fn from(t: &ApiToken) -> TokenJson {
        TokenJson {
            id: t.id,
            name: t.name.clone(),
            created: rfc3339(t.created_at),
            last_used: t.last_used.map(|u| rfc3339(Timestamp(u))),
        }
    }
}

#[derive(Serialize)]
struct TokenList {
    tokens: Vec<TokenJson>,
}

/// `GET /api/v1/tokens`: the caller's tokens, oldest first.
async fn api_list(State(st): State<WebState>, headers: HeaderMap) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match st.store.api_tokens(s.session.mailbox_id).await {
        Ok(all) => json(
            StatusCode::OK,
            &TokenList {
                tokens: all.iter().map(TokenJson::from).collect(),
            },
        ),
        Err(e) => json_internal(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    listed: TokenJson,
    /// The secret, shown only in this answer.
    token: String,
}

/// `POST /api/v1/tokens` `{"name"}` (a session only) → 201 with the token.
async fn api_create(State(st): State<WebState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.id_hash.is_empty() {
        return json_error(
            StatusCode::FORBIDDEN,
            "API tokens are made only from a signed-in session (the settings page, or \
             POST /api/v1/login and X-CSRF-Token), not with another token",
        );
    }
    let b: CreateBody = match body(&headers, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match make(&st, s.session.mailbox_id, &b.name).await {
        Err(e) => json_internal(&e),
        Ok(Made::Refused(why)) => json_error(StatusCode::BAD_REQUEST, &why),
        Ok(Made::Done {
            id,
            name,
            token,
            created,
        }) => {
            tracing::info!(mailbox = %s.session.address, token = id, "owner made an API token through the API");
            json(
                StatusCode::CREATED,
                &Created {
                    listed: TokenJson {
                        id,
                        name,
                        created: rfc3339(created),
                        last_used: None,
                    },
                    token,
                },
            )
        }
    }
}

/// `DELETE /api/v1/tokens/{id}`: revokes one of the caller's tokens.
async fn api_revoke(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let gone = || json_error(StatusCode::NOT_FOUND, "you have no API token by that id");
    let Some(id) = token_id(&id) else {
        return gone();
    };
    match st.store.revoke_api_token(s.session.mailbox_id, id).await {
        Ok(true) => {
            tracing::info!(mailbox = %s.session.address, token = id, "owner revoked an API token through the API");
            let mut r = StatusCode::NO_CONTENT.into_response();
            super::session::secure_headers(&mut r, true);
            r
        }
        Ok(false) => gone(),
        Err(e) => json_internal(&e),
    }
}
