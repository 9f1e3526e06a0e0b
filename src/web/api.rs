//! The JSON API under `/api/v1/`: what the owner's pages do, through the
//! same authorisation code.
//!
//! A caller is either a signed-in browser session (the `boxtrap_session`
//! cookie from `/login` or `POST /api/v1/login`) or a personal API token
//! (`Authorization: Bearer bt_...`, made by `boxtrap token create` or on
//! `/settings/tokens`). Either way the mailbox comes only from the session
//! or the token. A state-changing call with a session cookie needs the
//! header `X-CSRF-Token` with the session's token (a custom header, which
//! another site's page cannot send) and, when the client sends one, our
//! own `Origin`; a token caller needs neither (browsers never send it on
//! their own). Errors are `{"error": "..."}` naming what was wrong, with
//! a fitting status code.

use super::WebState;
use super::owner::{SignIn, sign_in};
use super::session::{SignedIn, hash_id, new_token, same_secret};
use crate::store::StoreError;
use crate::store::web::WebSession;
use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Prefix of personal API tokens: `bt_` and 64 hex digits.
pub const TOKEN_PREFIX: &str = "bt_";

/// The API routes that are not any one page's ([`super::router`] merges
/// each page's own `/api/v1/...` routes from its module).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
}

/// A JSON response with the owner pages' security headers.
pub(super) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "JSON response failed");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    super::session::secure_headers(&mut r, true);
    r
}

/// Longest non-JSON error body [`json_route_errors`] reads to word its
/// JSON refusal.
const ERROR_TEXT_LIMIT: usize = 4096;

/// Middleware for the whole router: under `/api/v1/`, an error that is not
/// JSON already (the router's own 404 for an unknown URL and 405 for a
/// wrong method, the HTML 404 the admin routes give non-admins, an
/// extractor's plain-text refusal) becomes `{"error": ...}` with the same
/// status and headers (`Allow` on a 405). Other paths pass untouched.
pub async fn json_route_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !(path == "/api/v1" || path.starts_with("/api/v1/")) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let r = next.run(req).await;
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let message = match status {
        // The same words for every URL: which admin URLs exist is not a
        // non-admin's business.
        StatusCode::NOT_FOUND => "no such API URL (docs/openapi.yaml lists them)".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("{method} is not allowed on {path}; it takes {allow}")
        }
        _ => {
            let text = to_bytes(body, ERROR_TEXT_LIMIT).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            match text.trim() {
                "" => status.canonical_reason().unwrap_or("error").to_owned(),
                t => t.to_owned(),
            }
        }
    };
    let mut out = json_error(status, &message);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    if let Some(wait) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, wait.clone());
    }
    out
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": message}` with `status`.
pub(super) fn json_error(status: StatusCode, message: &str) -> Response {
    let mut r = json(status, &ErrorBody { error: message });
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"boxtrap\""),
        );
    }
    r
}

/// A store failure, logged; the caller is told only that it failed.
pub(super) fn json_internal(e: &StoreError) -> Response {
    tracing::error!(error = %e, "API request failed");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the request could not be completed; try again in a few minutes",
    )
}

/// Reads a JSON request body into `T`; a body that is not JSON, or not
/// `T`'s shape, gets 400 with serde's words for what was wrong (the field,
/// the line and column).
// The refusal is the response every handler returns at once; boxing it
// would only add a step there.
#[allow(clippy::result_large_err)]
pub(super) fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, Response> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json_type {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid: {e}"),
        )
    })
}

/// The bearer token of the request, if it has an `Authorization` header.
/// `Err`: the header is there but is not `Bearer bt_...`.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    let (scheme, token) = v.trim().split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("the Authorization header must be `Bearer <token>`");
    }
    let token = token.trim();
    let hex = token.strip_prefix(TOKEN_PREFIX).unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the API token is not one of boxtrap's (bt_ and 64 hex digits)");
    }
    Ok(Some(token))
}

/// A new personal API token: the secret to show once, and the hash to
/// store.
pub fn new_api_token() -> (String, String) {
    let token = format!("{TOKEN_PREFIX}{}", new_token());
    let hash = hash_id(&token);
    (token, hash)
}

/// Who is calling, or the JSON refusal to give: a token caller, or a
/// session whose state-changing calls (`changes`) carry `X-CSRF-Token`
/// and, if they say one, our `Origin`.
pub(super) async fn caller(
    st: &WebState,
    headers: &HeaderMap,
    changes: bool,
) -> Result<SignedIn, Response> {
    match bearer(headers) {
        Err(why) => return Err(json_error(StatusCode::UNAUTHORIZED, why)),
        Ok(Some(token)) => {
            let owner = match st.store.api_token_owner(&hash_id(token)).await {
                Ok(Some(o)) => o,
                Ok(None) => {
                    return Err(json_error(
                        StatusCode::UNAUTHORIZED,
                        "the API token is not valid (revoked, or mistyped)",
                    ));
                }
                Err(e) => return Err(json_internal(&e)),
            };
            let now = st.sessions.now();
            if owner.last_used.is_none_or(|t| now.0 - t >= 60_000_000)
                && let Err(e) = st.store.touch_api_token(owner.token_id, now).await
            {
                return Err(json_internal(&e));
            }
            return Ok(SignedIn {
                session: WebSession {
                    mailbox_id: owner.mailbox_id,
                    address: owner.address,
                    created_at: now,
                    last_seen: now,
                    // Token callers have no forms; nothing can match this.
                    csrf_token: new_token(),
                },
                id_hash: String::new(),
            });
        }
        Ok(None) => {}
    }
    let s = match st.sessions.current(&st.store, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(json_error(
                StatusCode::UNAUTHORIZED,
                "sign in first (POST /api/v1/login) or send `Authorization: Bearer <API token>`",
            ));
        }
        Err(e) => return Err(json_internal(&e)),
    };
    if changes {
        if headers.contains_key(header::ORIGIN)
            && let Err(why) = st.sessions.same_origin(headers)
        {
            return Err(json_error(StatusCode::FORBIDDEN, why));
        }
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sent.is_empty() {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                "a session's state-changing call needs the X-CSRF-Token header (from POST /api/v1/login)",
            ));
        }
        if !same_secret(sent, &s.session.csrf_token) {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                "the X-CSRF-Token header is not this session's",
            ));
        }
    }
    Ok(s)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    address: String,
    password: String,
}

#[derive(Serialize)]
struct LoginDone {
    csrf_token: String,
}

/// `POST /api/v1/login` `{"address", "password"}` → the session cookie
/// and `{"csrf_token"}`; throttled as `/login` is (429 with `Retry-After`).
async fn login(
    State(st): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if headers.contains_key(header::ORIGIN)
        && let Err(why) = st.sessions.same_origin(&headers)
    {
        return json_error(StatusCode::FORBIDDEN, why);
    }
    let b: LoginBody = match body(&headers, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let typed: String = b.address.trim().chars().take(320).collect();
    match sign_in(&st, peer, &typed, b.password).await {
        Err(e) => json_internal(&e),
        Ok(SignIn::Done { cookie, csrf }) => {
            let mut r = json(StatusCode::OK, &LoginDone { csrf_token: csrf });
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Ok(SignIn::Throttled { wait_secs }) => {
            let mut r = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many failed sign-ins for this address or from your network; \
                     try again in {wait_secs} seconds"
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs.max(1)));
            r
        }
        Ok(SignIn::Wrong) => json_error(
            StatusCode::UNAUTHORIZED,
            "wrong mailbox address or password",
        ),
    }
}

#[derive(Serialize)]
struct Me<'a> {
    address: &'a str,
    /// `"session"` or `"token"`.
    auth: &'a str,
}

/// `GET /api/v1/me` → `{"address", "auth"}`: whom the caller acts for.
async fn me(State(st): State<WebState>, headers: HeaderMap) -> Response {
    match caller(&st, &headers, false).await {
        Ok(s) => json(
            StatusCode::OK,
            &Me {
                address: &s.session.address,
                auth: if s.id_hash.is_empty() {
                    "token"
                } else {
                    "session"
                },
            },
        ),
        Err(r) => r,
    }
}

/// `POST /api/v1/logout`: ends the session (with `X-CSRF-Token`).
async fn logout(State(st): State<WebState>, headers: HeaderMap) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.id_hash.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "an API token has no session to end; revoke the token instead",
        );
    }
    if let Err(e) = st.store.delete_web_session(&s.id_hash).await {
        return json_internal(&e);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, st.sessions.clear_cookie());
    super::session::secure_headers(&mut r, true);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_tokens_of_ours_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Ok(None));
        let (token, hash) = new_api_token();
        assert_eq!(hash, hash_id(&token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        assert_eq!(bearer(&h), Ok(Some(token.as_str())));
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer bt_xyz",
            "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(bearer(&h).is_err(), "{bad}");
        }
    }
}
