//! The owner's challenge texts, `/templates`: the four mails boxtrap sends
//! to senders for this mailbox (`verify`, `verifyreleased`, `returnverify`,
//! `blacklist`), each the owner's own text or the built-in default.
//!
//! `/templates/{name}` edits one: the text in a form whose buttons preview
//! it rendered on a sample message (as escaped plain text: it is plain
//! text mail), save it, or send a test of it into the owner's own Maildir
//! (through the same local delivery as the digest, never the outbound
//! queue, marked `Auto-Submitted: auto-generated`). A diff against the
//! default shows what the owner changed; `/templates/{name}/reset`
//! restores the default. A text is checked with
//! [`crate::challenge::templates::validate`], the check `boxtrap template
//! set` makes, before it is saved or sent; a refusal names the line and
//! the placeholder, keeps what was typed and saves nothing. Rendering is
//! bounded in time (minijinja fuel) and size (template and result).
//!
//! The JSON API: `GET /api/v1/templates` (the four), `GET
//! /api/v1/templates/{name}` (`{"name", "text", "own", "default_text"}`)
//! and `PUT /api/v1/templates/{name}` with `{"text": "..."}` (checked as
//! above; a refusal is `400 {"error", "line"}`) or `{"text": null}` (the
//! default again), through [`save`] and [`reset`] as the page.

use super::WebState;
use super::api::{body, caller, json, json_error, json_internal};
use super::owner::{html, internal, message, refused, see_other, signed_in};
use crate::challenge::compose::{ComposeInput, compose};
use crate::challenge::templates::{
    self, MAX_TEMPLATE_BYTES, Rendered, TemplateError, TemplateName, TemplateVars,
};
use crate::clock::Timestamp;
use crate::delivery::LocalCopy;
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use similar::{ChangeTag, TextDiff};
use std::sync::Arc;

/// The owner's template routes, merged into [`super::owner::routes`].
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/templates", get(list))
        .route("/templates/{name}", get(edit).post(act))
        .route("/templates/{name}/reset", post(reset_form))
        .route("/api/v1/templates", get(api_list))
        .route("/api/v1/templates/{name}", get(api_get).put(api_put))
}

/// What each template is for, in a line.
fn purpose(name: TemplateName) -> &'static str {
    match name {
        TemplateName::Verify => {
            "The challenge: asks an unknown sender to confirm. It must contain {{ link }} or {{ token }}."
        }
        TemplateName::VerifyReleased => {
            "Tells a sender who confirmed that their mail was delivered (when that setting is on)."
        }
        TemplateName::ReturnVerify => {
            "Answers a reply to a challenge that matches no open challenge."
        }
        TemplateName::Blacklist => {
            "Tells a blocked sender that their mail was not accepted (when that setting is on)."
        }
    }
}

/// The placeholders a text may use, with what each says.
const PLACEHOLDERS: [(&str, &str); 10] = [
    ("sender", "the sender's address"),
    ("sender_name", "the sender's name, shortened"),
    (
        "subject",
        "the subject of their message, shortened, links removed",
    ),
    ("date", "the date of their message"),
    ("mailbox", "the address they wrote to (yours, or an alias)"),
    ("mailbox_name", "your display name"),
    ("token", "the confirmation code (verify)"),
    ("link", "the confirmation link (verify)"),
    (
        "held_count",
        "how many of their messages are held (or were delivered)",
    ),
    ("keep_days", "how many days held mail is kept"),
];

// ---- the logic the page and the JSON API share ----------------------------

/// A template's text for the mailbox: `(text, true)` for the owner's own,
/// `(default, false)` otherwise.
pub async fn current(
    store: &Store,
    mailbox_id: i64,
    name: TemplateName,
) -> Result<(String, bool), StoreError> {
    Ok(
        match store.template_override(mailbox_id, name.as_str()).await? {
            Some(t) => (t, true),
            None => (templates::default_text(name).to_owned(), false),
        },
    )
}

/// A text as saved: line ends made `\n`.
fn normalised(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Why a text was not saved or sent.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The text is refused (the error names the line and placeholder).
    #[error("the {0} text is refused: {1}")]
    Invalid(TemplateName, TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The test mail could not be built or written into the Maildir.
    #[error("the test mail could not be delivered: {0}")]
    Deliver(String),
}

/// What [`save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The owner's text is saved and used from the next mail on.
    Own,
    /// The text is the default's: the override is removed, so the default
    /// (and its future updates) applies.
    Default,
}

/// Checks `text` as `boxtrap template set` does and saves it as the
/// mailbox's own `name` text (or drops the override when it is the
/// default). Nothing is saved when it is refused.
pub async fn save(
    store: &Store,
    mailbox_id: i64,
    name: TemplateName,
    text: &str,
    now: Timestamp,
) -> Result<Saved, TextError> {
    let text = normalised(text);
    templates::validate(name, &text).map_err(|e| TextError::Invalid(name, e))?;
    if text == templates::default_text(name) {
        store
            .set_template_override(mailbox_id, name.as_str(), None, now)
            .await?;
        return Ok(Saved::Default);
    }
    store
        .set_template_override(mailbox_id, name.as_str(), Some(&text), now)
        .await?;
    Ok(Saved::Own)
}

/// Restores the default: drops the mailbox's own `name` text. Returns
/// whether there was one.
pub async fn reset(
    store: &Store,
    mailbox_id: i64,
    name: TemplateName,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let had = store
        .template_override(mailbox_id, name.as_str())
        .await?
        .is_some();
    store
        .set_template_override(mailbox_id, name.as_str(), None, now)
        .await?;
    Ok(had)
}

/// The sample message a preview and a test are rendered on: a sender
/// writing to this mailbox, with the mailbox's own address, name and
/// keep-days, and a confirmation link of this server's form (it confirms
/// nothing).
pub fn sample_vars(st: &WebState, s: &MailboxSettings) -> TemplateVars {
    let mut v = TemplateVars::sample();
    v.mailbox = s.address.clone();
    v.mailbox_name = s.display_name.clone();
    v.keep_days = s.keep_days;
    v.link = st.quarantine.challenges().link(&v.token);
    v
}

/// Renders `text` on the sample message after the save-time check, so a
/// preview refuses what saving would.
pub fn preview(
    name: TemplateName,
    text: &str,
    vars: &TemplateVars,
) -> Result<Rendered, TemplateError> {
    let text = normalised(text);
    templates::validate(name, &text)?;
    templates::render(name, &text, vars)
}

/// Renders `text` on the sample message and delivers it, as the sender
/// would get it, into the owner's own Maildir: from and to the mailbox,
/// subject marked as a test, `Auto-Submitted: auto-generated`.
pub async fn send_test(
    st: &WebState,
    s: &MailboxSettings,
    name: TemplateName,
    text: &str,
) -> Result<(), TextError> {
    let vars = sample_vars(st, s);
    let rendered = preview(name, text, &vars).map_err(|e| TextError::Invalid(name, e))?;
    let now = st.sessions.now();
    let test = Rendered {
        subject: format!("[Test of your {name} text] {}", rendered.subject),
        body: rendered.body,
    };
    let domain = s.address.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let composed = compose(&ComposeInput {
        rendered: &test,
        from_address: &s.address,
        from_name: &s.display_name,
        to: &s.address,
        in_reply_to: None,
        message_id: format!("<boxtrap.test.{name}.{}.{}@{domain}>", now.0, s.id),
        link: (name == TemplateName::Verify).then_some(vars.link.as_str()),
        marker: &s.address,
        date: now,
    })
    .map_err(|e| TextError::Deliver(e.to_string()))?;
    let copy = LocalCopy {
        sender: String::new(),
        mailbox: s.address.clone(),
        unique: format!("T{}M{}", now.0, s.id),
        arrival_secs: now.secs(),
        data: Arc::new(auto_generated(composed.data)),
    };
    st.quarantine
        .delivery()
        .deliver_once(copy)
        .await
        .map_err(|e| TextError::Deliver(e.to_string()))
}

/// A composed mail's `Auto-Submitted: auto-replied` (a challenge answers
/// a message) made `auto-generated` (RFC 3834 §5: a test answers nothing).
fn auto_generated(data: Vec<u8>) -> Vec<u8> {
    const REPLIED: &[u8] = b"\r\nAuto-Submitted: auto-replied\r\n";
    const GENERATED: &[u8] = b"\r\nAuto-Submitted: auto-generated\r\n";
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = (head_end + 2).min(data.len());
    match data[..head]
        .windows(REPLIED.len())
        .position(|w| w == REPLIED)
    {
        Some(at) => [&data[..at], GENERATED, &data[at + REPLIED.len()..]].concat(),
        None => data,
    }
}

/// One line of a diff as shown: `add`, `del` or `` (the same), and the
/// line with its `+ `, `- ` or `  ` mark.
pub struct DiffLine {
    pub class: &'static str,
    pub text: String,
}

/// What `text` changes in the default, by line, with two lines of context
/// around each change (`…` between distant changes); empty when nothing.
pub fn diff_lines(name: TemplateName, text: &str) -> Vec<DiffLine> {
    let default = templates::default_text(name);
    let text = normalised(text);
    let diff = TextDiff::from_lines(default, text.as_str());
    let mut out = Vec::new();
    for (i, group) in diff.grouped_ops(2).iter().enumerate() {
        if i > 0 {
            out.push(DiffLine {
                class: "",
                text: "…".into(),
            });
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let (class, mark) = match change.tag() {
                    ChangeTag::Insert => ("add", "+ "),
                    ChangeTag::Delete => ("del", "- "),
                    ChangeTag::Equal => ("", "  "),
                };
                out.push(DiffLine {
                    class,
                    text: format!("{mark}{}", change.value().trim_end_matches('\n')),
                });
            }
        }
    }
    out
}

// ---- the pages -------------------------------------------------------------

/// One template in the list.
struct Entry {
    name: &'static str,
    purpose: &'static str,
    own: bool,
}

#[derive(Template)]
#[template(path = "web/templates.html")]
struct TemplatesPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    /// The list of the four; empty on a template's own page.
    entries: Vec<Entry>,
    /// The template edited; `""` on the list.
    name: &'static str,
    purpose: &'static str,
    /// The mailbox has its own text saved.
    own: bool,
    notice: String,
    /// Why the text was refused; `""`: it was not.
    error: String,
    /// The line the refusal points at, as typed (`""`: none).
    error_line: String,
    /// The text in the editor: the saved one or what was typed.
    text: String,
    /// The rendered sample (`Subject:` line, blank line, body); `""`: none.
    preview: String,
    diff: Vec<DiffLine>,
    placeholders: &'static [(&'static str, &'static str)],
    max_bytes: usize,
}

impl<'a> TemplatesPage<'a> {
    fn new(s: &'a super::session::SignedIn, title: &'a str) -> TemplatesPage<'a> {
        TemplatesPage {
            title,
            who: &s.session.address,
            csrf: &s.session.csrf_token,
            entries: Vec::new(),
            name: "",
            purpose: "",
            own: false,
            notice: String::new(),
            error: String::new(),
            error_line: String::new(),
            text: String::new(),
            preview: String::new(),
            diff: Vec::new(),
            placeholders: &PLACEHOLDERS,
            max_bytes: MAX_TEMPLATE_BYTES,
        }
    }
}

async fn list(State(st): State<WebState>, headers: HeaderMap) -> Response {
    let s = match signed_in(&st, &headers, "/templates").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut entries = Vec::new();
    for name in TemplateName::ALL {
        let own = match st
            .store
            .template_override(s.session.mailbox_id, name.as_str())
            .await
        {
            Ok(t) => t.is_some(),
            Err(e) => return internal(&e),
        };
        entries.push(Entry {
            name: name.as_str(),
            purpose: purpose(name),
            own,
        });
    }
    let mut page = TemplatesPage::new(&s, "Challenge texts");
    page.entries = entries;
    html(StatusCode::OK, page.render(), true)
}

fn not_found(s: &super::session::SignedIn) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such challenge text. The texts are verify, verifyreleased, returnverify and blacklist.",
        Some(s),
    )
}

fn title_of(name: TemplateName) -> String {
    format!("Challenge text: {name}")
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn edit(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let back = format!("/templates/{}", super::owner::percent(&name));
    let s = match signed_in(&st, &headers, &back).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(name) = name.parse::<TemplateName>() else {
        return not_found(&s);
    };
    let (text, own) = match current(&st.store, s.session.mailbox_id, name).await {
        Ok(t) => t,
        Err(e) => return internal(&e),
    };
    let title = title_of(name);
    let mut page = TemplatesPage::new(&s, &title);
    page.name = name.as_str();
    page.purpose = purpose(name);
    page.own = own;
    page.notice = match q.done.as_deref() {
        Some("saved") => "Your text was saved: it is used from the next mail on.".into(),
        Some("default") => "The text is the same as the default, so the default applies.".into(),
        Some("reset") => "The default text applies again.".into(),
        _ => String::new(),
    };
    page.diff = diff_lines(name, &text);
    page.text = text;
    html(StatusCode::OK, page.render(), true)
}

/// The editor's form; `action` is the button pressed.
#[derive(Deserialize)]
struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    action: String,
}

async fn act(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<TextForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/templates").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let Ok(name) = name.parse::<TemplateName>() else {
        return not_found(&s);
    };
    let mailbox_id = s.session.mailbox_id;
    let settings = match st.store.mailbox_settings(mailbox_id).await {
        Ok(m) => m,
        Err(e) => return internal(&e),
    };
    let own = match st.store.template_override(mailbox_id, name.as_str()).await {
        Ok(t) => t.is_some(),
        Err(e) => return internal(&e),
    };
    let title = title_of(name);
    let mut page = TemplatesPage::new(&s, &title);
    page.name = name.as_str();
    page.purpose = purpose(name);
    page.own = own;
    page.diff = diff_lines(name, &f.text);
    let outcome = match f.action.as_str() {
        "save" => match save(&st.store, mailbox_id, name, &f.text, st.sessions.now()).await {
            Ok(saved) => {
                tracing::info!(mailbox = %s.session.address, template = %name, "owner saved a challenge text");
                let done = match saved {
                    Saved::Own => "saved",
                    Saved::Default => "default",
                };
                return see_other(&format!("/templates/{name}?done={done}"));
            }
            Err(e) => Err(e),
        },
        "test" => match send_test(&st, &settings, name, &f.text).await {
            Ok(()) => {
                tracing::info!(mailbox = %s.session.address, template = %name, "owner sent a test of a challenge text");
                page.notice = format!(
                    "A test of this text was delivered to your mailbox, {}. The text itself was not saved.",
                    settings.address
                );
                Ok(())
            }
            Err(e) => Err(e),
        },
        // Preview, and any other button: show, change nothing.
        _ => Ok(()),
    };
    let status = match outcome {
        Ok(()) => {
            match preview(name, &f.text, &sample_vars(&st, &settings)) {
                Ok(r) => page.preview = format!("Subject: {}\n\n{}", r.subject, r.body),
                Err(e) => refusal(&mut page, name, &f.text, &e),
            }
            if page.error.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            }
        }
        Err(TextError::Invalid(_, e)) => {
            refusal(&mut page, name, &f.text, &e);
            StatusCode::BAD_REQUEST
        }
        Err(TextError::Store(e)) => return internal(&e),
        Err(e @ TextError::Deliver(_)) => return internal(&e),
    };
    page.text = f.text;
    html(status, page.render(), true)
}

/// Puts the refusal of `text` on the page: the error, and the line it
/// points at as typed.
fn refusal(page: &mut TemplatesPage, name: TemplateName, text: &str, e: &TemplateError) {
    page.error = format!("The {name} text was not saved: {e}.");
    page.error_line = e
        .line()
        .and_then(|n| {
            normalised(text)
                .lines()
                .nth(n.saturating_sub(1))
                .map(|l| format!("{n} | {}", super::owner::printable(l)))
        })
        .unwrap_or_default();
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn reset_form(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/templates").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let Ok(name) = name.parse::<TemplateName>() else {
        return not_found(&s);
    };
    match reset(&st.store, s.session.mailbox_id, name, st.sessions.now()).await {
        Ok(_) => {
            tracing::info!(mailbox = %s.session.address, template = %name, "owner restored a default challenge text");
            see_other(&format!("/templates/{name}?done=reset"))
        }
        Err(e) => internal(&e),
    }
}

// ---- the JSON API ----------------------------------------------------------

/// A template as `GET`/`PUT /api/v1/templates/{name}` show it.
#[derive(Debug, Serialize)]
pub struct TemplateJson {
    pub name: &'static str,
    /// The text in use: the owner's own, or the default.
    pub text: String,
    /// Whether the mailbox has its own text.
    pub own: bool,
    /// The built-in text.
    pub default_text: &'static str,
}

async fn template_json(
    st: &WebState,
    mailbox_id: i64,
    name: TemplateName,
) -> Result<TemplateJson, StoreError> {
    let (text, own) = current(&st.store, mailbox_id, name).await?;
    Ok(TemplateJson {
        name: name.as_str(),
        text,
        own,
        default_text: templates::default_text(name),
    })
}

fn no_such_template() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no such template (templates: verify, verifyreleased, returnverify, blacklist)",
    )
}

/// `GET /api/v1/templates`: the four.
async fn api_list(State(st): State<WebState>, headers: HeaderMap) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut all = Vec::new();
    for name in TemplateName::ALL {
        match template_json(&st, s.session.mailbox_id, name).await {
            Ok(t) => all.push(t),
            Err(e) => return json_internal(&e),
        }
    }
    json(StatusCode::OK, &all)
}

/// `GET /api/v1/templates/{name}`.
async fn api_get(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(name) = name.parse::<TemplateName>() else {
        return no_such_template();
    };
    match template_json(&st, s.session.mailbox_id, name).await {
        Ok(t) => json(StatusCode::OK, &t),
        Err(e) => json_internal(&e),
    }
}

/// A refused text: the error, and the line it points at.
#[derive(Serialize)]
struct RefusedText {
    error: String,
    line: Option<usize>,
}

/// `PUT /api/v1/templates/{name}` with `{"text": "..."}` (checked, then
/// saved) or `{"text": null}` (the default again).
async fn api_put(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(name) = name.parse::<TemplateName>() else {
        return no_such_template();
    };
    let body: serde_json::Map<String, serde_json::Value> = match body(&headers, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(other) = body.keys().find(|k| *k != "text") {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown field {other:?}: the body is {{\"text\": \"...\"}}, or {{\"text\": null}} for the default"
            ),
        );
    }
    let mailbox_id = s.session.mailbox_id;
    let now = st.sessions.now();
    let done = match body.get("text") {
        Some(serde_json::Value::String(text)) => save(&st.store, mailbox_id, name, text, now)
            .await
            .map(|_| ()),
        Some(serde_json::Value::Null) => reset(&st.store, mailbox_id, name, now)
            .await
            .map(|_| ())
            .map_err(TextError::from),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "text: expected the template as a string, or null for the default",
            );
        }
    };
    match done {
        Ok(()) => {
            tracing::info!(mailbox = %s.session.address, template = %name, "owner changed a challenge text (API)");
            match template_json(&st, mailbox_id, name).await {
                Ok(t) => json(StatusCode::OK, &t),
                Err(e) => json_internal(&e),
            }
        }
        Err(TextError::Invalid(_, e)) => json(
            StatusCode::BAD_REQUEST,
            &RefusedText {
                error: format!("text: the {name} text is refused, nothing was saved: {e}"),
                line: e.line(),
            },
        ),
        Err(TextError::Store(e)) => json_internal(&e),
        Err(e @ TextError::Deliver(_)) => {
            tracing::error!(error = %e, "template API");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_mail_is_marked_auto_generated_in_its_header_only() {
        let mail = b"From: a@x\r\nAuto-Submitted: auto-replied\r\nTo: b@x\r\n\r\nAuto-Submitted: auto-replied\r\n".to_vec();
        let out = String::from_utf8(auto_generated(mail)).unwrap();
        assert_eq!(
            out,
            "From: a@x\r\nAuto-Submitted: auto-generated\r\nTo: b@x\r\n\r\nAuto-Submitted: auto-replied\r\n"
        );
    }

    #[test]
    fn the_diff_shows_only_what_changed() {
        let default = templates::default_text(TemplateName::Blacklist);
        assert!(diff_lines(TemplateName::Blacklist, default).is_empty());
        let changed = format!("{default}Thanks.\n");
        let d = diff_lines(TemplateName::Blacklist, &changed);
        assert!(d.iter().any(|l| l.class == "add" && l.text == "+ Thanks."));
        assert!(!d.iter().any(|l| l.class == "del"));
        // CRLF from a browser's textarea is no change.
        assert!(diff_lines(TemplateName::Blacklist, &default.replace('\n', "\r\n")).is_empty());
    }
}
