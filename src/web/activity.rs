//! The owner's activity log: `/activity` (newest first, keyset-paginated,
//! with filters), `/activity.csv` (the same filters, every matching line,
//! as a download) and `GET /api/v1/activity` (the same as JSON, for a
//! session or an API token).
//!
//! Filters, all optional, in the query string of both:
//! `kind` (one of [`KINDS`]), `held` (a held message's number: its lines
//! only; the message page links here), `since` and `until` (dates
//! `YYYY-MM-DD`, both included). A bad filter gets a 400 page naming it,
//! with the form as typed. The mailbox is the session's; nothing here
//! reads another mailbox's lines.
//!
//! The page shows times in the owner's time zone (`/settings`) and says
//! which; on the page and in the CSV, `since` and `until` are days in that
//! zone too (UTC dates in the JSON API). The CSV has the columns
//! `time_utc, action, sender, detail, message, actor, client_ip`, its times
//! in UTC as ISO 8601 (`2026-11-27T14:05:53Z`, whatever the zone); a field that starts with `=`, `+`, `-`, `@`, a tab or
//! a carriage return gets a leading `'`, so a spreadsheet shows it as text
//! instead of running it as a formula (CSV injection).

use super::WebState;
use super::owner::{html, internal, message, printable, signed_in};
use super::session::secure_headers;
use super::settings::local_time;
use crate::clock::Timestamp;
use crate::store::StoreError;
use crate::store::activity::{ActivityCursor, ActivityFilter, ActivityLine, MAX_EXPORT, NewEvent};
use crate::store::held::ActivityAction;
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The activity page's routes, merged into the owner's.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/activity", get(activity_page))
        .route("/activity.csv", get(export))
        .route("/api/v1/activity", get(api_activity))
}

/// Page sizes the activity page offers.
pub const PAGE_SIZES: [i64; 3] = [25, 50, 100];
/// The activity page's size when none is asked for.
pub const DEFAULT_PAGE: i64 = 50;

/// The `kind` filter's values: (value, label, the actions it shows).
/// `not-challenged` is special: held lines without a challenge of their own.
pub const KINDS: &[(&str, &str, &[ActivityAction])] = &[
    ("held", "Held", &[ActivityAction::Held]),
    (
        "not-challenged",
        "Held without a challenge (and why)",
        &[ActivityAction::Held],
    ),
    (
        "challenged",
        "Challenge sent",
        &[ActivityAction::Challenged],
    ),
    (
        "verified",
        "Sender verified",
        &[ActivityAction::Verified, ActivityAction::LinkUsed],
    ),
    ("delivered", "Delivered", &[ActivityAction::Released]),
    (
        "deleted",
        "Deleted or restored",
        &[ActivityAction::Deleted, ActivityAction::Restored],
    ),
    (
        "expired",
        "Expired",
        &[ActivityAction::Expired, ActivityAction::ChallengeExpired],
    ),
    (
        "lists",
        "Lists changed",
        &[ActivityAction::Allowed, ActivityAction::ListChanged],
    ),
    (
        "refused",
        "Blocked or ignored",
        &[ActivityAction::Blocked, ActivityAction::Ignored],
    ),
    ("links", "Links used", &[ActivityAction::LinkUsed]),
    ("admin", "Done by an admin", &[ActivityAction::AdminAction]),
    (
        "notices",
        "Quarantine full, notices",
        &[
            ActivityAction::QuarantineFull,
            ActivityAction::QuarantineRoom,
            ActivityAction::NoticeFailed,
            ActivityAction::ReplyRefused,
        ],
    ),
];

/// An action in words.
pub fn action_text(a: ActivityAction) -> &'static str {
    match a {
        ActivityAction::Held => "Held",
        ActivityAction::Challenged => "Challenge sent",
        ActivityAction::Verified => "Sender verified by reply",
        ActivityAction::Allowed => "Sender allowed",
        ActivityAction::Blocked => "Blocked",
        ActivityAction::Ignored => "Ignored",
        ActivityAction::Released => "Delivered",
        ActivityAction::Deleted => "Deleted",
        ActivityAction::Restored => "Restored from deleted",
        ActivityAction::Expired => "Expired",
        ActivityAction::ChallengeExpired => "Challenge expired",
        ActivityAction::ReplyRefused => "Reply released nothing",
        ActivityAction::NoticeFailed => "Notice not sent",
        ActivityAction::QuarantineFull => "Quarantine full",
        ActivityAction::QuarantineRoom => "Quarantine has room again",
        ActivityAction::LinkUsed => "Link used",
        ActivityAction::ListChanged => "List changed",
        ActivityAction::AdminAction => "Done by an admin",
    }
}

/// The filters and paging as given in the query string (kept as typed, to
/// show them again).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActivityQuery {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub held: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub limit: String,
}

/// A checked query: what to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub filter: ActivityFilter,
    pub after: Option<ActivityCursor>,
}

/// The cursor of a page that starts after `c` (opaque to the client).
pub fn encode_cursor(c: ActivityCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", c.at.0, c.id))
}

pub fn decode_cursor(s: &str) -> Option<ActivityCursor> {
    let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
    let (at, id) = std::str::from_utf8(&raw).ok()?.split_once('.')?;
    Some(ActivityCursor {
        at: Timestamp(at.parse().ok()?),
        id: id.parse().ok()?,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The start (00:00 UTC) of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = &s[r];
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return None;
    }
    Some(Timestamp::from_secs(days_from_civil(y, m, d) * 86400))
}

/// The start of the day `day` (midnight UTC, as [`parse_date`] gives it)
/// in the IANA time zone `tz` (the first moment of that day there, on a
/// day that starts with a clock change too); UTC for a zone the database
/// does not know.
pub fn day_start_in(day: Timestamp, tz: &str) -> Timestamp {
    let zone = jiff::tz::db().get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_microsecond(day.0)
        .ok()
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
        .and_then(|d| d.to_zoned_datetime(zone).ok())
        .map_or(day, |z| Timestamp(z.timestamp().as_microsecond()))
}

/// Checks the filters and the cursor, with `since` and `until` as UTC
/// dates (the JSON API); `Err` names what is wrong.
pub fn parse(q: &ActivityQuery) -> Result<Parsed, String> {
    parse_in(q, "UTC")
}

/// [`parse`], with `since` and `until` as dates in the time zone `tz`
/// (the page and the CSV: the owner's).
pub fn parse_in(q: &ActivityQuery, tz: &str) -> Result<Parsed, String> {
    let mut filter = ActivityFilter::default();
    let kind = q.kind.trim();
    if !kind.is_empty() {
        let Some((_, _, actions)) = KINDS.iter().find(|(v, _, _)| *v == kind) else {
            let names: Vec<&str> = KINDS.iter().map(|(v, _, _)| *v).collect();
            return Err(format!(
                "Kind: {:?} is not a kind of event; use one of {}.",
                printable(kind),
                names.join(", ")
            ));
        };
        filter.actions = actions.to_vec();
        filter.not_challenged = kind == "not-challenged";
    }
    let held = q.held.trim();
    if !held.is_empty() {
        match held.parse::<i64>() {
            Ok(n) if n > 0 => filter.held_id = Some(n),
            _ => {
                return Err(format!(
                    "Message: {:?} is not a message number (a whole number such as 42).",
                    printable(held)
                ));
            }
        }
    }
    // `days`: 1 for the end of that day (the start of the next).
    let date = |field: &str, s: &str, days: i64| -> Result<Option<Timestamp>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        parse_date(s)
            .map(|d| Some(day_start_in(d.plus_secs(days * 86400), tz)))
            .ok_or_else(|| {
                format!(
                    "{field}: {:?} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-30.",
                    printable(s)
                )
            })
    };
    filter.since = date("From", &q.since, 0)?;
    // Until the end of that day.
    filter.until = date("To", &q.until, 1)?;
    if let (Some(a), Some(b)) = (filter.since, filter.until)
        && b <= a
    {
        return Err("To: the date is before the From date.".into());
    }
    let after = match q.after.trim() {
        "" => None,
        s => Some(decode_cursor(s).ok_or_else(|| {
            "This page link is not valid. Start again from the newest events.".to_owned()
        })?),
    };
    Ok(Parsed { filter, after })
}

/// One page of lines and the cursor of the next (older) page, if any.
pub async fn page_of(
    st: &WebState,
    mailbox_id: i64,
    p: &Parsed,
    limit: i64,
) -> Result<(Vec<ActivityLine>, Option<String>), StoreError> {
    let mut lines = st
        .store
        .activity_page(mailbox_id, &p.filter, p.after, limit + 1)
        .await?;
    let more = lines.len() as i64 > limit;
    lines.truncate(limit as usize);
    let next = match (more, lines.last()) {
        (true, Some(l)) => Some(encode_cursor(ActivityCursor { at: l.at, id: l.id })),
        _ => None,
    };
    Ok((lines, next))
}

/// Records that a link was used (a sender's verification link, an
/// owner's digest link) in the mailbox's activity log, with the client's
/// address. The action it led to is already done and logged on its own,
/// so a failure here goes to the log and does not change the answer.
pub async fn note_link_use(
    st: &WebState,
    mailbox_id: i64,
    held_id: Option<i64>,
    sender: &str,
    link: &str,
    detail: &str,
    client: Option<std::net::IpAddr>,
) {
    let ip = client.map(|a| a.to_string()).unwrap_or_default();
    let line = NewEvent {
        held_id,
        actor: link,
        client_ip: &ip,
        ..NewEvent::new(
            mailbox_id,
            st.sessions.now(),
            ActivityAction::LinkUsed,
            sender,
            detail,
        )
    };
    if let Err(e) = st.store.log_event(&line).await {
        tracing::error!(error = %e, mailbox_id, "cannot record a link's use in the activity log");
    }
}

/// Records a change the owner made to a list on the web (`detail` says
/// which) in the mailbox's activity log. The change is made and stays
/// made, so a failure here goes to the log and does not change the answer.
pub async fn note_list_change(st: &WebState, mailbox_id: i64, sender: &str, detail: &str) {
    let line = NewEvent::new(
        mailbox_id,
        st.sessions.now(),
        ActivityAction::ListChanged,
        sender,
        detail,
    );
    if let Err(e) = st.store.log_event(&line).await {
        tracing::error!(error = %e, mailbox_id, "cannot record a list change in the activity log");
    }
}

// ---- the page ------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/activity.html")]
struct ActivityPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    error: String,
    summary: String,
    kinds: Vec<(&'static str, &'static str)>,
    q: &'a ActivityQuery,
    limit: i64,
    lines: Vec<Line>,
    /// The owner's time zone: the page's times are in it.
    tz: String,
    /// The filters as a query string (`kind=…&held=…`), without paging.
    filters: String,
    first_page: bool,
    next: String,
}

/// One line as shown: every field is display text.
struct Line {
    at: String,
    what: &'static str,
    sender: String,
    detail: String,
    /// `0`: about no message.
    held_id: i64,
    by: String,
    client_ip: String,
}

/// `tz`: the owner's time zone (`/settings`).
fn line(l: &ActivityLine, tz: &str) -> Line {
    Line {
        at: local_time(l.at, tz),
        what: action_text(l.action),
        sender: printable(&l.sender),
        detail: printable(&l.detail),
        held_id: l.held_id.unwrap_or(0),
        by: printable(&l.actor),
        client_ip: printable(&l.client_ip),
    }
}

fn page_size(s: &str) -> Option<i64> {
    match s.trim() {
        "" => Some(DEFAULT_PAGE),
        s => s.parse().ok().filter(|n| PAGE_SIZES.contains(n)),
    }
}

/// The valid filters as a query string, for links that keep them.
fn filter_query(q: &ActivityQuery) -> String {
    [
        ("kind", &q.kind),
        ("held", &q.held),
        ("since", &q.since),
        ("until", &q.until),
    ]
    .iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| format!("{k}={}", v.trim()))
    .collect::<Vec<_>>()
    .join("&")
}

fn back_path(q: &ActivityQuery) -> String {
    let f = filter_query(q);
    if f.is_empty() || parse(q).is_err() {
        "/activity".into()
    } else {
        format!("/activity?{f}")
    }
}

async fn activity_page(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let s = match signed_in(&st, &headers, &back_path(&q)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut page = ActivityPage {
        title: "Activity",
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        error: String::new(),
        summary: String::new(),
        kinds: KINDS.iter().map(|(v, l, _)| (*v, *l)).collect(),
        q: &q,
        limit: DEFAULT_PAGE,
        lines: Vec::new(),
        tz: "UTC".to_owned(),
        filters: String::new(),
        first_page: true,
        next: String::new(),
    };
    page.tz = match st.store.mailbox_settings(s.session.mailbox_id).await {
        Ok(m) => m.time_zone,
        Err(e) => return internal(&e),
    };
    let checked = page_size(&q.limit)
        .ok_or_else(|| "Per page: the page size must be 25, 50 or 100.".to_owned())
        .and_then(|limit| parse_in(&q, &page.tz).map(|p| (limit, p)));
    let (limit, parsed) = match checked {
        Ok(v) => v,
        Err(e) => {
            page.error = e;
            return html(StatusCode::BAD_REQUEST, page.render(), true);
        }
    };
    let (lines, next) = match page_of(&st, s.session.mailbox_id, &parsed, limit).await {
        Ok(v) => v,
        Err(e) => return internal(&e),
    };
    let filtered = parsed.filter != ActivityFilter::default();
    page.summary = match (lines.len(), parsed.after.is_some()) {
        (0, _) => String::new(),
        (n, false) => format!(
            "The {n} newest event{}{}.",
            if n == 1 { "" } else { "s" },
            if filtered { " that match" } else { "" }
        ),
        (n, true) => format!("{n} older event{}.", if n == 1 { "" } else { "s" }),
    };
    page.limit = limit;
    page.lines = lines.iter().map(|l| line(l, &page.tz)).collect();
    page.filters = filter_query(&q);
    page.first_page = parsed.after.is_none();
    page.next = next.unwrap_or_default();
    html(StatusCode::OK, page.render(), true)
}

// ---- JSON API ------------------------------------------------------------

/// A time as RFC 3339 in UTC: `2026-11-27T14:05:53Z`.
pub fn rfc3339(t: Timestamp) -> String {
    format!("{}Z", t.log_format().replacen(' ', "T", 1))
}

/// One line of `GET /api/v1/activity`.
#[derive(Debug, Serialize)]
pub struct ActivityItem {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// `held`, `challenged`, `released`, ... (`activity.action`).
    pub action: &'static str,
    pub sender: String,
    pub detail: String,
    /// The held message the line is about, if any.
    pub held_id: Option<i64>,
    /// Who did it when not the owner or the mail: an admin's address, a link.
    pub actor: String,
    pub client_ip: String,
}

#[derive(Debug, Serialize)]
struct ActivityList {
    items: Vec<ActivityItem>,
    /// The `after` of the next (older) page; `null` on the last.
    next: Option<String>,
}

/// Lines an API page holds at most.
pub const API_MAX_LIMIT: i64 = 500;

/// `GET /api/v1/activity?kind=&held=&since=&until=&after=&limit=`: the
/// page's filters and paging (`limit` 1 to 500, default 50), as JSON.
async fn api_activity(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let s = match super::api::caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let limit = match q.limit.trim() {
        "" => Ok(DEFAULT_PAGE),
        l => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=API_MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                format!(
                    "limit: {:?} is not a number from 1 to {API_MAX_LIMIT}",
                    printable(l)
                )
            }),
    };
    let checked = limit.and_then(|limit| parse(&q).map(|p| (limit, p)));
    let (limit, parsed) = match checked {
        Ok(v) => v,
        Err(e) => return super::api::json_error(StatusCode::BAD_REQUEST, &e),
    };
    let (lines, next) = match page_of(&st, s.session.mailbox_id, &parsed, limit).await {
        Ok(v) => v,
        Err(e) => return super::api::json_internal(&e),
    };
    let items = lines
        .into_iter()
        .map(|l| ActivityItem {
            id: l.id,
            at: rfc3339(l.at),
            action: l.action.as_str(),
            sender: l.sender,
            detail: l.detail,
            held_id: l.held_id,
            actor: l.actor,
            client_ip: l.client_ip,
        })
        .collect();
    super::api::json(StatusCode::OK, &ActivityList { items, next })
}

// ---- CSV -----------------------------------------------------------------

/// A field a spreadsheet could take for a formula gets a leading `'`.
pub fn defuse(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

/// The CSV text of `lines`, with its header row.
pub fn to_csv(lines: &[ActivityLine]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "time_utc",
        "action",
        "sender",
        "detail",
        "message",
        "actor",
        "client_ip",
    ])?;
    for l in lines {
        w.write_record([
            rfc3339(l.at),
            l.action.as_str().to_owned(),
            defuse(&l.sender),
            defuse(&l.detail),
            l.held_id.map_or(String::new(), |h| h.to_string()),
            defuse(&l.actor),
            defuse(&l.client_ip),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// A file name made of the address's safe characters.
fn file_name(address: &str, now: Timestamp) -> String {
    let safe: String = address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("activity-{safe}-{}.csv", &now.log_format()[..10])
}

async fn export(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let s = match signed_in(&st, &headers, &back_path(&q)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let tz = match st.store.mailbox_settings(s.session.mailbox_id).await {
        Ok(m) => m.time_zone,
        Err(e) => return internal(&e),
    };
    let parsed = match parse_in(
        &ActivityQuery {
            after: String::new(),
            ..q.clone()
        },
        &tz,
    ) {
        Ok(p) => p,
        Err(e) => return message(StatusCode::BAD_REQUEST, "Bad request", &e, Some(&s)),
    };
    let lines = match st
        .store
        .activity_page(s.session.mailbox_id, &parsed.filter, None, MAX_EXPORT)
        .await
    {
        Ok(l) => l,
        Err(e) => return internal(&e),
    };
    let body = match to_csv(&lines) {
        Ok(b) => b,
        Err(e) => return internal(&e),
    };
    let name = file_name(&s.session.address, st.sessions.now());
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(&mut r, true);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_and_bad_ones_refused() {
        assert_eq!(parse_date("1970-01-01"), Some(Timestamp(0)));
        assert_eq!(
            parse_date("2026-11-30").map(|t| t.log_format()),
            Some("2026-11-30 00:00:00".into())
        );
        assert_eq!(
            parse_date("2024-02-29").map(|t| t.log_format()),
            Some("2024-02-29 00:00:00".into())
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-29",
            "2026-1-01",
            "26-11-30",
            "2026/11/30",
            "+026-11-30",
            "2026-11-3x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn formulas_are_defused_and_other_text_kept() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for f in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(defuse(f).starts_with('\''), "{f:?}");
        }
        assert_eq!(defuse("alice@example.test"), "alice@example.test");
        assert_eq!(defuse(""), "");
    }

    #[test]
    fn queries_are_checked_by_field() {
        let q = |kind: &str, held: &str, since: &str, until: &str| ActivityQuery {
            kind: kind.into(),
            held: held.into(),
            since: since.into(),
            until: until.into(),
            ..ActivityQuery::default()
        };
        let p = parse(&q("delivered", "42", "2026-11-01", "2026-11-30")).unwrap();
        assert_eq!(p.filter.actions, vec![ActivityAction::Released]);
        assert_eq!(p.filter.held_id, Some(42));
        assert_eq!(p.filter.until.unwrap().log_format(), "2026-12-01 00:00:00");
        assert!(parse(&q("x", "", "", "")).unwrap_err().starts_with("Kind:"));
        assert!(
            parse(&q("", "-1", "", ""))
                .unwrap_err()
                .starts_with("Message:")
        );
        assert!(
            parse(&q("", "", "yesterday", ""))
                .unwrap_err()
                .starts_with("From:")
        );
        assert!(
            parse(&q("", "", "2026-11-02", "2026-11-01"))
                .unwrap_err()
                .starts_with("To:")
        );
        assert!(
            parse(&q("not-challenged", "", "", ""))
                .unwrap()
                .filter
                .not_challenged
        );
    }

    #[test]
    fn days_start_at_midnight_in_the_owners_zone() {
        let day = parse_date("2026-11-28").unwrap();
        assert_eq!(day_start_in(day, "UTC"), day);
        // Berlin is an hour ahead in winter: its day starts at 23:00 UTC.
        assert_eq!(
            day_start_in(day, "Europe/Berlin").log_format(),
            "2026-11-27 23:00:00"
        );
        // A 23-hour day (clocks forward on 2026-03-29): the next starts 23 h later.
        let spring = parse_date("2026-03-29").unwrap();
        let a = day_start_in(spring, "Europe/Berlin");
        let b = day_start_in(spring.plus_secs(86400), "Europe/Berlin");
        assert_eq!(b.secs() - a.secs(), 23 * 3600);
        assert_eq!(day_start_in(day, "Not/AZone"), day);
        let q = ActivityQuery {
            since: "2026-11-28".into(),
            until: "2026-11-28".into(),
            ..ActivityQuery::default()
        };
        let p = parse_in(&q, "America/New_York").unwrap();
        assert_eq!(p.filter.since.unwrap().log_format(), "2026-11-28 05:00:00");
        assert_eq!(p.filter.until.unwrap().log_format(), "2026-11-29 05:00:00");
    }

    #[test]
    fn cursors_round_trip() {
        let c = ActivityCursor {
            at: Timestamp(1_795_788_353_000_123),
            id: 7,
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(decode_cursor("!!"), None);
    }
}
