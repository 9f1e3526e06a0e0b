//! The owner's settings page, `/settings`: challenge-response on or off,
//! the display name, keep-days, the spam score bands, whitelisting by
//! association and of the people the owner writes to, the
//! `verifyreleased` and `blacklist` notices, the digest frequency and the
//! time zone, each with a one-line explanation.
//!
//! One form, one POST (with the session's CSRF token and our own origin),
//! all or nothing: every field is checked first with the same functions
//! `boxtrap mailbox set` uses ([`crate::store::settings`]'s `parse_*`), a
//! bad value is named next to its field with what was typed kept, and
//! nothing is written; otherwise everything is written in one transaction
//! ([`Store::change_mailbox_settings`]). [`change`] is that check-and-write,
//! shared with the JSON API: `GET /api/v1/settings` and `PATCH
//! /api/v1/settings` with any subset of the fields ([`SettingsJson`]'s
//! names; switches as `true`/`false`, the spam bands as numbers such as
//! `-2.5` or `null` for off), all or nothing, a refusal being `400
//! {"error", "fields": {name: what was expected}}`.

use super::WebState;
use super::api::{body, caller, json, json_internal};
use super::owner::{html, internal, refused, see_other, signed_in};
use super::session::SignedIn;
use crate::clock::Timestamp;
use crate::store::settings::{
    MailboxSettings, parse_digest, parse_display_name, parse_keep_days, parse_on_off,
    parse_spam_score, parse_time_zone, spam_score_text,
};
use crate::store::{Store, StoreError};
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// The owner's settings routes, merged into [`super::owner::routes`].
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/settings", get(page).post(save))
        .route("/api/v1/settings", get(api_get).patch(api_patch))
}

/// How a setting is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// On or off: a checkbox.
    Switch,
    /// A line of text.
    Text,
    /// One of a few words: a select.
    Choice(&'static [&'static str]),
}

/// One setting: its field name (the form's, the JSON API's and, with `-`
/// for `_`, `boxtrap mailbox set`'s option), label and explanation.
struct Setting {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    kind: Kind,
}

const DIGESTS: &[&str] = &["never", "hourly", "daily", "weekly"];

/// Every setting the owner may change, in page order.
const SETTINGS: [Setting; 11] = [
    Setting {
        name: "challenge",
        label: "Challenge-response",
        hint: "Mail from unknown senders is held and they are asked to confirm once; off: it is held without asking.",
        kind: Kind::Switch,
    },
    Setting {
        name: "display_name",
        label: "Display name",
        hint: "Your name as it appears on the mails sent to senders (leave empty for none).",
        kind: Kind::Text,
    },
    Setting {
        name: "keep_days",
        label: "Keep held mail for (days)",
        hint: "Days held mail (and its confirmation link) is kept before it is deleted: 1 to 365.",
        kind: Kind::Text,
    },
    Setting {
        name: "spam_bypass_below",
        label: "Deliver directly below spam score",
        hint: "Mail scoring below this (such as -2.5) is delivered without a challenge; off: never.",
        kind: Kind::Text,
    },
    Setting {
        name: "spam_no_challenge_at",
        label: "Hold silently from spam score",
        hint: "Mail scoring this (such as 5.0) or more is held without asking its sender; off: never.",
        kind: Kind::Text,
    },
    Setting {
        name: "whitelist_by_association",
        label: "Whitelist by association",
        hint: "Mail from an allowed sender also allows the other people in its To and Cc (same domain only).",
        kind: Kind::Switch,
    },
    Setting {
        name: "auto_whitelist_sent",
        label: "Allow the people you write to",
        hint: "Addresses you send mail to are added to your allow list.",
        kind: Kind::Switch,
    },
    Setting {
        name: "notify_released",
        label: "Tell senders when their mail is delivered",
        hint: "After a sender confirms, they get the \"verifyreleased\" mail saying it was delivered.",
        kind: Kind::Switch,
    },
    Setting {
        name: "notify_blocked",
        label: "Tell blocked senders",
        hint: "A blocked sender whose mail is discarded gets the \"blacklist\" mail saying so.",
        kind: Kind::Switch,
    },
    Setting {
        name: "digest",
        label: "Digest of held mail",
        hint: "How often you get a mail listing newly held messages, with links to review them.",
        kind: Kind::Choice(DIGESTS),
    },
    Setting {
        name: "time_zone",
        label: "Time zone",
        hint: "Times on your pages are shown in it: a name such as Europe/Berlin or America/New_York.",
        kind: Kind::Text,
    },
];

/// Settings as typed: each field given is checked and applied, each left
/// out stays as it is. The form's field names; the JSON API's too.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SettingsInput {
    pub challenge: Option<String>,
    pub display_name: Option<String>,
    pub keep_days: Option<String>,
    pub spam_bypass_below: Option<String>,
    pub spam_no_challenge_at: Option<String>,
    pub whitelist_by_association: Option<String>,
    pub auto_whitelist_sent: Option<String>,
    pub notify_released: Option<String>,
    pub notify_blocked: Option<String>,
    pub digest: Option<String>,
    pub time_zone: Option<String>,
}

impl SettingsInput {
    /// The value typed for the field `name`, if given.
    fn get(&self, name: &str) -> Option<&str> {
        let v = match name {
            "challenge" => &self.challenge,
            "display_name" => &self.display_name,
            "keep_days" => &self.keep_days,
            "spam_bypass_below" => &self.spam_bypass_below,
            "spam_no_challenge_at" => &self.spam_no_challenge_at,
            "whitelist_by_association" => &self.whitelist_by_association,
            "auto_whitelist_sent" => &self.auto_whitelist_sent,
            "notify_released" => &self.notify_released,
            "notify_blocked" => &self.notify_blocked,
            "digest" => &self.digest,
            "time_zone" => &self.time_zone,
            _ => &None,
        };
        v.as_deref()
    }

    /// Sets the field `name`; false if there is no such field.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "challenge" => &mut self.challenge,
            "display_name" => &mut self.display_name,
            "keep_days" => &mut self.keep_days,
            "spam_bypass_below" => &mut self.spam_bypass_below,
            "spam_no_challenge_at" => &mut self.spam_no_challenge_at,
            "whitelist_by_association" => &mut self.whitelist_by_association,
            "auto_whitelist_sent" => &mut self.auto_whitelist_sent,
            "notify_released" => &mut self.notify_released,
            "notify_blocked" => &mut self.notify_blocked,
            "digest" => &mut self.digest,
            "time_zone" => &mut self.time_zone,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// A value refused: the field's name and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why [`change`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// One or more values were refused (each named).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies every field given in `input` to `s`, checking each with the
/// parser `boxtrap mailbox set` uses. Every bad value is returned, named;
/// `s` is then partly changed and must not be saved.
pub fn apply(s: &mut MailboxSettings, input: &SettingsInput) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for setting in &SETTINGS {
        let Some(value) = input.get(setting.name) else {
            continue;
        };
        if let Err(message) = apply_one(s, setting.name, value) {
            errors.push(FieldError {
                field: setting.name,
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn apply_one(s: &mut MailboxSettings, name: &str, v: &str) -> Result<(), String> {
    match name {
        "challenge" => s.challenge_enabled = parse_on_off(v)?,
        "display_name" => s.display_name = parse_display_name(v)?,
        "keep_days" => s.keep_days = parse_keep_days(v)?,
        "spam_bypass_below" => s.spam_bypass_below = parse_spam_score(v)?,
        "spam_no_challenge_at" => s.spam_no_challenge_at = parse_spam_score(v)?,
        "whitelist_by_association" => s.whitelist_by_association = parse_on_off(v)?,
        "auto_whitelist_sent" => s.auto_whitelist_sent = parse_on_off(v)?,
        "notify_released" => s.notify_released = parse_on_off(v)?,
        "notify_blocked" => s.notify_blocked = parse_on_off(v)?,
        "digest" => s.digest = parse_digest(v)?,
        "time_zone" => s.time_zone = parse_time_zone(v)?,
        _ => return Err("no such setting".into()),
    }
    Ok(())
}

/// Checks every field given and, only if all are good, writes them in one
/// transaction. Returns the settings as saved. Shared by the page and the
/// JSON API.
pub async fn change(
    store: &Store,
    mailbox_id: i64,
    input: &SettingsInput,
) -> Result<MailboxSettings, ChangeError> {
    let mut s = store.mailbox_settings(mailbox_id).await?;
    apply(&mut s, input).map_err(ChangeError::Invalid)?;
    store.change_mailbox_settings(&s, &[], &[]).await?;
    Ok(s)
}

/// A setting's current value as the form shows it (and [`apply`] reads it
/// back).
fn shown(s: &MailboxSettings, name: &str) -> String {
    let on = |b: bool| if b { "on" } else { "off" }.to_owned();
    match name {
        "challenge" => on(s.challenge_enabled),
        "display_name" => s.display_name.clone(),
        "keep_days" => s.keep_days.to_string(),
        "spam_bypass_below" => spam_score_text(s.spam_bypass_below),
        "spam_no_challenge_at" => spam_score_text(s.spam_no_challenge_at),
        "whitelist_by_association" => on(s.whitelist_by_association),
        "auto_whitelist_sent" => on(s.auto_whitelist_sent),
        "notify_released" => on(s.notify_released),
        "notify_blocked" => on(s.notify_blocked),
        "digest" => s.digest.as_str().to_owned(),
        "time_zone" => s.time_zone.clone(),
        _ => String::new(),
    }
}

/// `ts` as a date and time in the IANA time zone `tz`
/// (`2026-11-30 03:26:08 CET`); a zone the database does not know is
/// shown as UTC.
pub fn local_time(ts: Timestamp, tz: &str) -> String {
    let zone = jiff::tz::db().get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    match jiff::Timestamp::from_microsecond(ts.0) {
        Ok(t) => t
            .to_zoned_datetime(zone)
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => format!("{} UTC", ts.log_format()),
    }
}

// ---- the page ------------------------------------------------------------

/// One field as the page shows it.
struct FieldView {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    /// `switch`, `text` or `choice`.
    kind: &'static str,
    /// What the form holds: the saved value, or what was typed.
    value: String,
    /// For a choice: (value, selected).
    options: Vec<(&'static str, bool)>,
    /// Why the value was refused; `""`: it was not.
    error: String,
}

#[derive(Template)]
#[template(path = "web/settings.html")]
struct SettingsPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: &'a str,
    /// The refusal's summary; `""`: none.
    error: String,
    fields: Vec<FieldView>,
    /// Every IANA time zone name, offered as the time zone's suggestions.
    zones: Vec<String>,
    /// Now, in the owner's (saved) time zone.
    now_local: String,
    /// The owner's API tokens ([`super::tokens`]).
    tokens: super::tokens::TokenView,
}

fn fields(values: impl Fn(&str) -> String, errors: &[FieldError]) -> Vec<FieldView> {
    SETTINGS
        .iter()
        .map(|s| {
            let value = values(s.name);
            let (kind, options) = match s.kind {
                Kind::Switch => ("switch", Vec::new()),
                Kind::Text => ("text", Vec::new()),
                Kind::Choice(opts) => ("choice", opts.iter().map(|o| (*o, *o == value)).collect()),
            };
            FieldView {
                name: s.name,
                label: s.label,
                hint: s.hint,
                kind,
                value,
                options,
                error: errors
                    .iter()
                    .find(|e| e.field == s.name)
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn zones() -> Vec<String> {
    let mut z: Vec<String> = jiff::tz::db()
        .available()
        .map(|n| n.to_string())
        .filter(|n| n.contains('/') || n == "UTC")
        .collect();
    z.sort();
    z
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn page(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<DoneQuery>,
) -> Response {
    let s = match signed_in(&st, &headers, "/settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let notice = match q.done.as_deref() {
        Some("saved") => "Your settings were saved.",
        Some("token-revoked") => "The API token was revoked: it no longer works.",
        _ => "",
    };
    settings_page(&st, &s, StatusCode::OK, notice, Default::default()).await
}

/// The settings page with its token section as `tokens` says (a token
/// just made, or a refused name): what [`super::tokens`]' forms answer.
pub(super) async fn page_with_tokens(
    st: &WebState,
    s: &SignedIn,
    status: StatusCode,
    tokens: super::tokens::TokenView,
) -> Response {
    settings_page(st, s, status, "", tokens).await
}

async fn settings_page(
    st: &WebState,
    s: &SignedIn,
    status: StatusCode,
    notice: &str,
    mut tokens: super::tokens::TokenView,
) -> Response {
    let settings = match st.store.mailbox_settings(s.session.mailbox_id).await {
        Ok(m) => m,
        Err(e) => return internal(&e),
    };
    tokens.lines = match super::tokens::lines(st, s.session.mailbox_id, &settings.time_zone).await {
        Ok(l) => l,
        Err(e) => return internal(&e),
    };
    let page = SettingsPage {
        title: "Settings",
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        notice,
        error: String::new(),
        fields: fields(|n| shown(&settings, n), &[]),
        zones: zones(),
        now_local: local_time(st.sessions.now(), &settings.time_zone),
        tokens,
    };
    html(status, page.render(), true)
}

/// The form: every field; a switch left unticked is not sent (off).
#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    input: SettingsInput,
}

async fn save(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<SettingsForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let mut input = f.input;
    // A form always sends every field: an unticked box is "off", and a
    // field missing altogether is the empty string (and refused if that is
    // not a value).
    for setting in &SETTINGS {
        if input.get(setting.name).is_none() {
            let absent = if setting.kind == Kind::Switch {
                "off"
            } else {
                ""
            };
            input.set(setting.name, absent.to_owned());
        }
    }
    let mailbox_id = s.session.mailbox_id;
    match change(&st.store, mailbox_id, &input).await {
        Ok(_) => {
            tracing::info!(mailbox = %s.session.address, "owner changed settings");
            see_other("/settings?done=saved")
        }
        Err(ChangeError::Invalid(errors)) => {
            let saved = match st.store.mailbox_settings(mailbox_id).await {
                Ok(m) => m,
                Err(e) => return internal(&e),
            };
            let tokens = match super::tokens::lines(&st, mailbox_id, &saved.time_zone).await {
                Ok(lines) => super::tokens::TokenView {
                    lines,
                    ..Default::default()
                },
                Err(e) => return internal(&e),
            };
            let named: Vec<&str> = errors.iter().map(|e| label_of(e.field)).collect();
            let page = SettingsPage {
                title: "Settings",
                who: &s.session.address,
                csrf: &s.session.csrf_token,
                notice: "",
                error: format!("Nothing was saved: check {}.", named.join(", ")),
                fields: fields(|n| input.get(n).unwrap_or_default().to_owned(), &errors),
                zones: zones(),
                now_local: local_time(st.sessions.now(), &saved.time_zone),
                tokens,
            };
            html(StatusCode::BAD_REQUEST, page.render(), true)
        }
        Err(ChangeError::Store(e)) => internal(&e),
    }
}

/// A field's label on the page.
fn label_of(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .map_or("a setting", |s| s.label)
}

// ---- the JSON API ----------------------------------------------------------

/// The settings as `GET`/`PATCH /api/v1/settings` show them: the spam
/// bands as decimal scores (`-2.5`; `null`: off).
#[derive(Debug, Serialize)]
pub struct SettingsJson {
    pub address: String,
    pub challenge: bool,
    pub display_name: String,
    pub keep_days: i64,
    pub spam_bypass_below: Option<f64>,
    pub spam_no_challenge_at: Option<f64>,
    pub whitelist_by_association: bool,
    pub auto_whitelist_sent: bool,
    pub notify_released: bool,
    pub notify_blocked: bool,
    pub digest: &'static str,
    pub time_zone: String,
}

impl From<&MailboxSettings> for SettingsJson {
    fn from(s: &MailboxSettings) -> SettingsJson {
        let score = |t: Option<i64>| t.map(|t| t as f64 / 10.0);
        SettingsJson {
            address: s.address.clone(),
            challenge: s.challenge_enabled,
            display_name: s.display_name.clone(),
            keep_days: s.keep_days,
            spam_bypass_below: score(s.spam_bypass_below),
            spam_no_challenge_at: score(s.spam_no_challenge_at),
            whitelist_by_association: s.whitelist_by_association,
            auto_whitelist_sent: s.auto_whitelist_sent,
            notify_released: s.notify_released,
            notify_blocked: s.notify_blocked,
            digest: s.digest.as_str(),
            time_zone: s.time_zone.clone(),
        }
    }
}

/// A refusal: `error` says it all in a line, `fields` names each bad
/// field with what was expected.
#[derive(Serialize)]
struct RefusedJson {
    error: String,
    fields: std::collections::BTreeMap<String, String>,
}

fn refused_json(errors: Vec<(String, String)>) -> Response {
    let error = format!(
        "nothing was changed: {}",
        errors
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    json(
        StatusCode::BAD_REQUEST,
        &RefusedJson {
            error,
            fields: errors.into_iter().collect(),
        },
    )
}

/// A PATCH body's fields as typed text for [`apply`]: `true`/`false` as
/// on/off, numbers as written, strings as they are, `null` as off (for
/// the spam bands only). Every unknown field and wrong type is named.
fn input_from_json(
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<SettingsInput, Vec<(String, String)>> {
    use serde_json::Value;
    let mut input = SettingsInput::default();
    let mut errors = Vec::new();
    for (name, value) in body {
        let Some(setting) = SETTINGS.iter().find(|s| s.name == name) else {
            let known: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
            errors.push((
                name.clone(),
                format!("no such setting (settings: {})", known.join(", ")),
            ));
            continue;
        };
        let spam = setting.name.starts_with("spam_");
        let text = match value {
            Value::Bool(b) if setting.kind == Kind::Switch => {
                Some(if *b { "on" } else { "off" }.into())
            }
            Value::Number(n) if setting.kind == Kind::Text => Some(n.to_string()),
            Value::String(t) if setting.kind != Kind::Switch => Some(t.clone()),
            Value::Null if spam => Some("off".into()),
            _ => None,
        };
        match text {
            Some(t) => {
                input.set(setting.name, t);
            }
            None => errors.push((
                name.clone(),
                match setting.kind {
                    Kind::Switch => "expected true or false".into(),
                    Kind::Choice(opts) => format!("expected one of {}", opts.join(", ")),
                    Kind::Text if spam => "expected a score such as -2.5, or null for off".into(),
                    Kind::Text if setting.name == "keep_days" => "expected a number of days".into(),
                    Kind::Text => "expected a string".into(),
                },
            )),
        }
    }
    if errors.is_empty() {
        Ok(input)
    } else {
        Err(errors)
    }
}

/// `GET /api/v1/settings`.
async fn api_get(State(st): State<WebState>, headers: HeaderMap) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match st.store.mailbox_settings(s.session.mailbox_id).await {
        Ok(m) => json(StatusCode::OK, &SettingsJson::from(&m)),
        Err(e) => json_internal(&e),
    }
}

/// `PATCH /api/v1/settings`: any subset of the fields, all or nothing.
async fn api_patch(State(st): State<WebState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body: serde_json::Map<String, serde_json::Value> = match body(&headers, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let input = match input_from_json(&body) {
        Ok(i) => i,
        Err(errors) => return refused_json(errors),
    };
    match change(&st.store, s.session.mailbox_id, &input).await {
        Ok(m) => {
            tracing::info!(mailbox = %s.session.address, "owner changed settings (API)");
            json(StatusCode::OK, &SettingsJson::from(&m))
        }
        Err(ChangeError::Invalid(errors)) => refused_json(
            errors
                .into_iter()
                .map(|e| (e.field.to_owned(), e.message))
                .collect(),
        ),
        Err(ChangeError::Store(e)) => json_internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_the_owners_zone() {
        // 2026-11-30 02:26:08 UTC.
        let t = Timestamp::from_secs(1_796_005_568);
        assert_eq!(local_time(t, "UTC"), "2026-11-30 02:26:08 UTC");
        assert_eq!(local_time(t, "Europe/Berlin"), "2026-11-30 03:26:08 CET");
        assert_eq!(local_time(t, "America/New_York"), "2026-11-29 21:26:08 EST");
        assert_eq!(local_time(t, "Not/AZone"), "2026-11-30 02:26:08 UTC");
    }

    #[test]
    fn time_zones_are_checked_and_spelled_as_the_database_does() {
        assert_eq!(
            parse_time_zone("europe/berlin").as_deref(),
            Ok("Europe/Berlin")
        );
        assert_eq!(parse_time_zone(" UTC ").as_deref(), Ok("UTC"));
        for bad in ["", "Mars/Olympus", "../../etc/passwd", "Europe/Berlin x"] {
            assert!(parse_time_zone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_setting_is_shown_as_it_is_read_back() {
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let mut input = SettingsInput::default();
        for n in &names {
            assert!(input.set(n, "x".into()), "{n}");
            assert_eq!(input.get(n), Some("x"));
        }
        assert!(!input.set("address", "x".into()));
    }
}
