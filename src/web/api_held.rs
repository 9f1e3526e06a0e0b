//! The JSON API for held mail, through the same code as `/quarantine`:
//!
//! - `GET /api/v1/held?q=…&limit=…&after=…` → `{"items": [...], "next"}`
//!   (the search language of [`HeldQuery`]; `limit` 1 to 100, default 25;
//!   `next` is the `after` of the following page, or `null`);
//! - `GET /api/v1/held/{id}` → one item with its authentication results,
//!   spam score and report; `GET /api/v1/held/{id}/raw` → the message as
//!   received (`message/rfc822`);
//! - `POST /api/v1/held/actions` `{"action", "ids": [...]}`, or
//!   `"senders"`, or `"query"` for everything a search matches (at most
//!   [`super::owner::BULK_LIMIT`]) → the counts of what was done.
//!
//! Another mailbox's id is 404 everywhere, and a bulk request naming one
//! changes nothing.

use super::WebState;
use super::api::{body, caller, json, json_error, json_internal};
use super::owner::{Selection, Targets, challenge_text, decode_cursor, encode_cursor, targets};
use crate::quarantine::owner::{ActionReport, OwnerAction};
use crate::store::search::HeldQuery;
use crate::store::web::{HeldCursor, HeldRow};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/held", get(list))
        .route("/api/v1/held/actions", post(act))
        .route("/api/v1/held/{id}", get(one))
        .route("/api/v1/held/{id}/raw", get(raw))
}

/// A held message as the API gives it. Times are RFC 3339 in UTC.
#[derive(Serialize)]
struct Item {
    id: i64,
    received: String,
    from: String,
    from_name: String,
    /// The envelope sender (`""` for `<>`).
    envelope_sender: String,
    subject: String,
    /// Bytes.
    size: i64,
    /// The reason code (`reason:` in a search) and its words.
    reason: String,
    reason_detail: String,
    /// `null`: not counted (held before attachments were counted).
    attachments: Option<i64>,
    challenge: Challenge,
    expires: String,
    /// `held`, `releasing` while a release delivers it, or `deleted`
    /// (listed with `q=in:deleted`; restorable until `purged`).
    state: String,
    /// Whether the owner has opened it or marked it seen.
    seen: bool,
    /// When it was deleted and when it will be purged; `null` unless
    /// deleted.
    deleted: Option<String>,
    purged: Option<String>,
}

#[derive(Serialize)]
struct Challenge {
    /// `none`, `queued`, `sent`, `bounced`, `answered` or `expired`
    /// (the `challenge:` search terms).
    state: &'static str,
    sent_at: Option<String>,
    /// The words the quarantine page shows.
    text: String,
}

/// Seconds deleted mail is kept before the sweeper purges it.
fn keep_deleted(st: &WebState) -> i64 {
    i64::try_from(st.quarantine.keep_deleted().as_secs()).unwrap_or(i64::MAX)
}

fn rfc3339(micros: i64) -> String {
    let t = crate::clock::Timestamp(micros).log_format();
    format!("{}T{}Z", &t[..10], &t[11..])
}

/// `keep_deleted`: seconds deleted mail is kept.
fn item(r: &HeldRow, keep_days: i64, keep_deleted: i64) -> Item {
    use crate::store::held::{ChallengeState, OutboundState};
    let state = match (r.challenge_id, r.challenge_state, r.mail_state) {
        (None, _, _) => "none",
        (_, Some(ChallengeState::Verified), _) => "answered",
        (_, Some(ChallengeState::Expired), _) | (_, None, _) => "expired",
        (_, _, Some(OutboundState::Sent)) => "sent",
        (_, _, Some(OutboundState::Failed)) => "bounced",
        _ => "queued",
    };
    let sent_at = match (r.mail_state, r.mail_done_at) {
        (Some(OutboundState::Sent), Some(at)) => Some(rfc3339(at)),
        _ => None,
    };
    Item {
        id: r.id,
        received: rfc3339(r.arrived_at.0),
        from: r.sender.clone(),
        from_name: r.sender_name.clone(),
        envelope_sender: r.env_sender.clone(),
        subject: r.subject.clone(),
        size: r.size,
        reason: r.reason.clone(),
        reason_detail: r.reason_detail.clone(),
        attachments: r.attachments,
        challenge: Challenge {
            state,
            sent_at,
            text: challenge_text(r, "UTC"),
        },
        expires: rfc3339(r.arrived_at.plus_secs(keep_days * 86400).0),
        state: r.state.as_str().to_owned(),
        seen: r.seen_at.is_some(),
        deleted: r.deleted_at.map(rfc3339),
        purged: r
            .deleted_at
            .map(|t| rfc3339(crate::clock::Timestamp(t).plus_secs(keep_deleted).0)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    q: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

#[derive(Serialize)]
struct Page {
    items: Vec<Item>,
    next: Option<String>,
}

async fn list(
    State(st): State<WebState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let limit = match p.limit.as_deref().map(str::parse::<i64>) {
        None => 25,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "limit: must be a number from 1 to 100",
            );
        }
    };
    let after = match p.after.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match decode_cursor(a) {
            Some(c) => Some(c),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "after: not a cursor this API gave (use the `next` of a page)",
                );
            }
        },
    };
    let query = match HeldQuery::parse(p.q.as_deref().unwrap_or(""), st.sessions.now()) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("q: {e}")),
    };
    let mailbox_id = s.session.mailbox_id;
    let keep_days = match st.store.mailbox_settings(mailbox_id).await {
        Ok(m) => m.keep_days,
        Err(e) => return json_internal(&e),
    };
    let mut rows = match st
        .store
        .held_page(mailbox_id, &query, after, limit + 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return json_internal(&e),
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match (more, rows.last()) {
        (true, Some(r)) => Some(encode_cursor(HeldCursor {
            arrived_at: r.arrived_at,
            id: r.id,
        })),
        _ => None,
    };
    json(
        StatusCode::OK,
        &Page {
            items: rows
                .iter()
                .map(|r| item(r, keep_days, keep_deleted(&st)))
                .collect(),
            next,
        },
    )
}

#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    item: Item,
    message_id: String,
    /// The `Authentication-Results:` value this server wrote.
    authentication_results: String,
    /// Points; `null`: not scored.
    spam_score: Option<f64>,
    spam_report: String,
}

fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such message in your quarantine")
}

async fn one(State(st): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found();
    };
    let mailbox_id = s.session.mailbox_id;
    let row = match st.store.held_row(mailbox_id, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return json_internal(&e),
    };
    let held = match st.store.held(id).await {
        Ok(Some(h)) if h.mailbox_id == mailbox_id => h,
        Ok(_) => return not_found(),
        Err(e) => return json_internal(&e),
    };
    let keep_days = match st.store.mailbox_settings(mailbox_id).await {
        Ok(m) => m.keep_days,
        Err(e) => return json_internal(&e),
    };
    json(
        StatusCode::OK,
        &Detail {
            item: item(&row, keep_days, keep_deleted(&st)),
            message_id: held.message_id,
            authentication_results: held.auth_results,
            spam_score: held.spam_score.map(|t| t as f64 / 10.0),
            spam_report: held.spam_report,
        },
    )
}

async fn raw(State(st): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found();
    };
    match st.store.held_of_mailbox(s.session.mailbox_id, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(e) => return json_internal(&e),
    }
    let data = match st.store.held_data(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(),
        Err(e) => return json_internal(&e),
    };
    let mut r = (StatusCode::OK, data).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    super::session::secure_headers(&mut r, true);
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// An [`OwnerAction`] by name.
    action: String,
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    senders: Vec<String>,
    /// Everything this search matches (instead of ids and senders).
    query: Option<String>,
    /// What one delete deleted: the `deleted_at` its answer gave (instead
    /// of ids, senders and query), to undo it with `undelete`.
    deleted_at: Option<i64>,
}

async fn act(State(st): State<WebState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match act_for(&st, s.session.mailbox_id, &headers, &bytes).await {
        Ok(done) => {
            tracing::info!(
                mailbox = %s.session.address, action = done.action, targets = done.targets,
                "owner acted on held mail through the API"
            );
            json(StatusCode::OK, &done)
        }
        Err(r) => r,
    }
}

/// The counts of an action the API carried out, and the held ids it
/// named or matched (not in the answer; the admin's activity lines).
#[derive(Serialize)]
pub(super) struct ActionDone {
    pub action: &'static str,
    /// How many messages the request named or matched.
    pub targets: usize,
    #[serde(flatten)]
    pub report: ActionReport,
    #[serde(skip)]
    pub ids: Vec<(i64, String)>,
}

/// Reads an [`ActionBody`] and carries it out on `mailbox_id`'s held
/// mail through [`crate::quarantine::Quarantine::owner_act`]: for the
/// owner (`POST /api/v1/held/actions`) and for an admin acting for the
/// owner (`POST /api/v1/admin/mailboxes/{id}/held/actions`). `Err`: the
/// JSON refusal, nothing changed (or, for a failure midway, what was done
/// stays done).
pub(super) async fn act_for(
    st: &WebState,
    mailbox_id: i64,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<ActionDone, Response> {
    let b: ActionBody = body(headers, bytes)?;
    let Ok(action) = b.action.parse::<OwnerAction>() else {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "action: {:?} is not one of {}",
                b.action,
                OwnerAction::ALL
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let given = [
        !(b.ids.is_empty() && b.senders.is_empty()),
        b.query.is_some(),
        b.deleted_at.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "give one of `ids`/`senders`, `query` or `deleted_at`, not several",
        ));
    }
    let deleted_at = b.deleted_at.map(|t| t.to_string());
    let ids: Vec<String> = b.ids.iter().map(i64::to_string).collect();
    let sel = Selection {
        ids: &ids,
        senders: &b.senders,
        matching: b.query.as_deref(),
        deleted_at: deleted_at.as_deref(),
    };
    let found = match targets(st, mailbox_id, sel).await {
        Ok(Targets::Found(t)) => t,
        Ok(Targets::NotFound(why)) => {
            return Err(json_error(
                StatusCode::NOT_FOUND,
                &format!("{why} Nothing was changed."),
            ));
        }
        Ok(Targets::Bad(why)) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                &format!("{why} Nothing was changed."),
            ));
        }
        Err(e) => return Err(json_internal(&e)),
    };
    match st.quarantine.owner_act(mailbox_id, action, &found).await {
        Ok(report) => Ok(ActionDone {
            action: action.as_str(),
            targets: found.len(),
            report,
            ids: found,
        }),
        Err(e) => {
            tracing::error!(error = %e, "API action failed");
            Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the action could not be completed; what was done so far stays done",
            ))
        }
    }
}
