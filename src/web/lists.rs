//! The owner's sender lists: `/lists` shows the allow, block and ignore
//! lists of the signed-in mailbox with where each entry came from, adds an
//! entry (an address or `*@domain` in the simple mode, a BoxTrapper rule
//! otherwise, read as `boxtrap list add` reads it), removes one, tests an
//! address against the lists with the policy's own matching, and imports
//! and exports whole lists in the format `boxtrap list import` reads.
//!
//! URLs (every POST needs the session's CSRF token and our own `Origin`):
//! - `GET /lists`: the page; `?test=ADDRESS&subject=TEXT` runs the tester
//!   (it changes nothing).
//! - `POST /lists/add`: `list`, `mode` (`simple` or `rule`), `entry`.
//! - `POST /lists/{list}/{id}/remove`: removes one entry.
//! - `POST /lists/import`: `list`, `how` (`add` or `replace`), `text`.
//! - `GET /lists/{list}/export`: the list as a text file (attachment).
//!
//! The JSON API does the same through the same functions (a session with
//! `X-CSRF-Token`, or an API token; see [`super::api`]):
//! - `GET /api/v1/lists/{list}` → `{"list", "limit", "rules": [{"id",
//!   "rule", "field", "pattern", "source", "origin", "added"}]}`.
//! - `PUT /api/v1/lists/{list}`: the whole list, `{"rules": ["from ...",
//!   ...]}` (each read as `boxtrap list add` reads a rule) or a list file
//!   as `text/plain`; all or nothing → the list as `GET` gives it.
//! - `POST /api/v1/lists/{list}`: `{"rule": "..."}` or `{"address":
//!   "bob@example.org" | "*@example.org"}` → 201 `{"added": true,
//!   "entry"}`, or 200 `{"added": false}` when the list had it.
//! - `DELETE /api/v1/lists/{list}/{id}` → 204.
//! - `GET /api/v1/lists/test?address=...&subject=...` → `{"fired": {"list",
//!   "id", "rule", "origin"} or null, "effect"}`.
//!
//! Errors are `{"error": "..."}` naming what was wrong.
//! Bad input changes nothing: the page comes back (400) with the reason
//! and what was typed; a full list answers 409; another mailbox's entry,
//! like one that does not exist, is 404.

use super::WebState;
use super::api::{body, caller, json, json_error, json_internal};
use super::owner::{html, internal, message, printable, refused, see_other, signed_in};
use super::session::{SignedIn, secure_headers};
use crate::address::Domain;
use crate::policy::address_list::canonical;
use crate::policy::facts::MessageFacts;
use crate::policy::rules::{self, ListKind, RuleField, RuleList, RuleMatch, SenderRule};
use crate::store::StoreError;
use crate::store::lists::{Imported, ListEntry, RuleAdded, RuleSource, read_typed_rule};
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// The lists routes, merged into the owner's routes.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/lists", get(page))
        .route("/lists/add", post(add_form))
        .route("/lists/import", post(import_form))
        .route("/lists/{list}/export", get(export))
        .route("/lists/{list}/{id}/remove", post(remove_form))
        .route("/api/v1/lists/test", get(api_test))
        .route(
            "/api/v1/lists/{list}",
            get(api_get).put(api_put).post(api_add),
        )
        .route(
            "/api/v1/lists/{list}/{id}",
            axum::routing::delete(api_remove),
        )
}

// ---- the actions, shared by the page and the JSON API --------------------

/// Why a list action did nothing.
#[derive(Debug)]
pub enum ListFailure {
    /// Bad input; the text names what was wrong.
    Invalid(String),
    /// The list would hold more rules than `challenge.max_rules_per_list`.
    Full(String),
    /// This mailbox has no such list or entry.
    NotFound,
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for ListFailure {
    fn from(e: StoreError) -> Self {
        ListFailure::Store(e)
    }
}

impl ListFailure {
    /// The HTTP status for it: 400, 409, 404 or 500.
    pub fn status(&self) -> StatusCode {
        match self {
            ListFailure::Invalid(_) => StatusCode::BAD_REQUEST,
            ListFailure::Full(_) => StatusCode::CONFLICT,
            ListFailure::NotFound => StatusCode::NOT_FOUND,
            ListFailure::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What to tell the owner.
    pub fn text(&self) -> String {
        match self {
            ListFailure::Invalid(t) | ListFailure::Full(t) => t.clone(),
            ListFailure::NotFound => "That entry is not on your list.".into(),
            ListFailure::Store(_) => {
                "Your request could not be completed. Please try again in a few minutes.".into()
            }
        }
    }
}

/// A list's name in a URL or form (`allow`, `block`, `ignore`; BoxTrapper's
/// `white` and `black` too).
pub fn list_kind(name: &str) -> Result<ListKind, ListFailure> {
    name.parse::<ListKind>()
        .map_err(|_| ListFailure::Invalid("Choose the allow, block or ignore list.".into()))
}

/// How an entry is typed: an address or domain, or a BoxTrapper rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// `bob@example.org` (exactly that sender) or `*@example.org` (anyone
    /// at that domain).
    Simple,
    /// `from|to|cc|subject PATTERN`, or a bare address, as `boxtrap list
    /// add` reads it.
    Rule,
}

/// An entry typed in the simple mode: an address becomes the rule for
/// exactly that sender, `*@domain` (or `@domain`) the rule for anyone at
/// that domain (`from .*@example\.org$`; not its subdomains).
pub fn read_simple(text: &str) -> Result<SenderRule, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("Enter an address (bob@example.org) or a whole domain (*@example.org).".into());
    }
    if let Some(domain) = t.strip_prefix("*@").or_else(|| t.strip_prefix('@')) {
        let domain = Domain::parse(domain)
            .map_err(|e| format!("`{t}` is not an address or *@domain: {e}."))?;
        return SenderRule::domain(domain.as_str()).map_err(|e| e.to_string());
    }
    if t.contains(char::is_whitespace) {
        return Err(format!(
            "`{t}` is not an address or *@domain: it has spaces. For a rule, choose \"BoxTrapper rule\"."
        ));
    }
    let address = canonical(t).map_err(|e| format!("`{t}` is not an address or *@domain: {e}."))?;
    Ok(SenderRule::exact_sender(&address))
}

/// A rule as the page shows it: in the simple form when it is one (an
/// address as [`SenderRule::exact_sender`] writes it, `*@domain` as
/// [`SenderRule::domain`] does), else as a rule line (`subject ^\[x\]`).
pub fn shown_rule(rule: &SenderRule) -> String {
    simple_form(rule).unwrap_or_else(|| rule.to_line())
}

/// The address or `*@domain` that [`read_simple`] reads back to `rule`, if
/// there is one.
pub fn simple_form(rule: &SenderRule) -> Option<String> {
    if rule.field() != RuleField::From {
        return None;
    }
    let p = rule.pattern();
    let unescape = |s: &str| {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next()? } else { c });
        }
        Some(out)
    };
    if let Some(domain) = p.strip_prefix(".*@").and_then(|d| d.strip_suffix('$')) {
        let domain = unescape(domain)?;
        let form = format!("*@{domain}");
        return (read_simple(&form).ok().as_ref() == Some(rule)).then_some(form);
    }
    let address = unescape(p.strip_prefix('^')?.strip_suffix('$')?)?;
    (read_simple(&address).ok().as_ref() == Some(rule)).then_some(address)
}

/// An entry as typed, in either mode; the error names what was wrong.
pub fn read_entry(mode: EntryMode, text: &str) -> Result<SenderRule, ListFailure> {
    match mode {
        EntryMode::Simple => read_simple(text).map_err(ListFailure::Invalid),
        EntryMode::Rule => read_typed_rule(text)
            .map(|r| r.rule)
            .map_err(|e| ListFailure::Invalid(format!("Invalid rule: {e}."))),
    }
}

/// Adds `rule` to the mailbox's list as the owner's; `Ok(false)`: it was
/// there already.
pub async fn add_rule(
    st: &WebState,
    mailbox_id: i64,
    kind: ListKind,
    rule: &SenderRule,
) -> Result<bool, ListFailure> {
    let limit = st.quarantine.max_rules_per_list();
    let now = st.sessions.now();
    match st
        .store
        .add_rule_within(mailbox_id, kind, rule, limit, &RuleSource::Owner, now)
        .await?
    {
        RuleAdded::Added => {
            let detail = format!("added to the {kind} list: {rule}");
            super::activity::note_list_change(st, mailbox_id, "", &detail).await;
            Ok(true)
        }
        RuleAdded::AlreadyThere => Ok(false),
        RuleAdded::ListFull { rules, limit } => Err(ListFailure::Full(format!(
            "Your {kind} list is full: it holds {rules} rules and this server allows {limit} \
             (challenge.max_rules_per_list). Remove entries you no longer need first; nothing was added."
        ))),
    }
}

/// Removes entry `id` from the mailbox's list; its rule line.
pub async fn remove_rule(
    st: &WebState,
    mailbox_id: i64,
    kind: ListKind,
    id: i64,
) -> Result<String, ListFailure> {
    let line = st
        .store
        .remove_rule_id(mailbox_id, kind, id)
        .await?
        .ok_or(ListFailure::NotFound)?;
    let detail = format!("removed from the {kind} list: {line}");
    super::activity::note_list_change(st, mailbox_id, "", &detail).await;
    Ok(line)
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportDone {
    /// Rules new on the list.
    pub added: usize,
    /// Distinct rules read from the text.
    pub read: usize,
}

/// Reads a list file (`boxtrap list import`'s format) and adds its rules
/// to the list, or with `replace` makes the list exactly them; all or
/// nothing. The error names the first bad line and why.
pub async fn import_rules(
    st: &WebState,
    mailbox_id: i64,
    kind: ListKind,
    text: &str,
    replace: bool,
) -> Result<ImportDone, ListFailure> {
    let parsed = rules::parse_list(text).map_err(|e| {
        let line = rules::list_lines(text).nth(e.line - 1).unwrap_or("");
        ListFailure::Invalid(format!(
            "Line {}: {}. The line reads: {}. Nothing was imported.",
            e.line,
            e.error,
            printable(line.trim())
        ))
    })?;
    replace_or_add(st, mailbox_id, kind, &parsed.rules, replace).await
}

/// Imports rules already read, all or nothing.
async fn replace_or_add(
    st: &WebState,
    mailbox_id: i64,
    kind: ListKind,
    rules: &[SenderRule],
    replace: bool,
) -> Result<ImportDone, ListFailure> {
    let limit = st.quarantine.max_rules_per_list();
    let now = st.sessions.now();
    match st
        .store
        .import_rules(
            mailbox_id,
            kind,
            rules,
            replace,
            limit,
            &RuleSource::Import,
            now,
        )
        .await?
    {
        Imported::Added(added) => {
            let detail = format!(
                "{} the {kind} list: {} rules read, {added} new",
                if replace {
                    "imported as"
                } else {
                    "imported into"
                },
                rules.len()
            );
            super::activity::note_list_change(st, mailbox_id, "", &detail).await;
            Ok(ImportDone {
                added,
                read: rules.len(),
            })
        }
        Imported::OverLimit { would_have, limit } => Err(ListFailure::Full(format!(
            "Your {kind} list would hold {would_have} rules, over this server's limit of {limit} \
             (challenge.max_rules_per_list). Nothing was imported."
        ))),
    }
}

/// The entry that decides for a sender, and its list.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The list whose rule fires.
    pub kind: ListKind,
    /// The entry.
    pub entry: ListEntry,
}

/// What the lists decide for mail from `address` with `subject`: the first
/// rule that fires, in the policy's order (ignore, block, allow), matched
/// as the policy matches (a [`RuleList`], the address as the `From:` and
/// envelope sender); `None` when no rule fires.
pub async fn test_sender(
    st: &WebState,
    mailbox_id: i64,
    address: &str,
    subject: &str,
) -> Result<Option<Fired>, ListFailure> {
    let t = address.trim();
    if t.is_empty() {
        return Err(ListFailure::Invalid(
            "Enter the sender's address to test.".into(),
        ));
    }
    let from = canonical(t)
        .map_err(|e| ListFailure::Invalid(format!("`{t}` is not an email address: {e}.")))?;
    let facts = MessageFacts {
        from: Some(from.clone()),
        subject: subject.to_owned(),
        ..MessageFacts::default()
    };
    for kind in ListKind::ALL {
        let entries = st.store.list_entries(mailbox_id, kind).await?;
        let list = RuleList::new(entries.iter().map(|e| e.rule.clone()).collect());
        if let Some(rule) = list.first_match(&facts, &from)
            && let Some(entry) = entries.into_iter().find(|e| e.rule == *rule)
        {
            return Ok(Some(Fired { kind, entry }));
        }
    }
    Ok(None)
}

/// What a list's rule firing does to mail, in words.
pub fn effect(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Allow => "delivered straight to you",
        ListKind::Block => "refused (the sending server is told)",
        ListKind::Ignore => "dropped silently",
    }
}

/// Where an entry came from and when, in words ("added from quarantine
/// on 2026-11-30").
pub fn origin_text(e: &ListEntry) -> String {
    let when = &e.created_at.log_format()[..10];
    printable(&format!("{} on {when}", e.source.describe()))
}

// ---- the page ------------------------------------------------------------

/// One list as shown.
struct ListView {
    kind: &'static str,
    heading: &'static str,
    explain: &'static str,
    entries: Vec<EntryView>,
}

/// One entry as shown: display text only.
struct EntryView {
    id: i64,
    rule: String,
    origin: String,
}

/// A list in a `<select>`.
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "web/lists.html")]
struct ListsPage<'a> {
    title: &'a str,
    who: &'a str,
    csrf: &'a str,
    notice: String,
    limit: usize,
    challenge_off: bool,
    lists: Vec<ListView>,
    add_lists: Vec<Choice>,
    add_rule_mode: bool,
    add_entry: String,
    add_error: String,
    test_address: String,
    test_subject: String,
    test_result: String,
    test_error: String,
    import_lists: Vec<Choice>,
    import_replace: bool,
    import_text: String,
    import_error: String,
}

/// What the forms held and what to say: the page is rendered from it.
#[derive(Default)]
struct Shown {
    notice: String,
    add_list: String,
    add_rule_mode: bool,
    add_entry: String,
    add_error: String,
    test_address: String,
    test_subject: String,
    test_result: String,
    test_error: String,
    import_list: String,
    import_replace: bool,
    import_text: String,
    import_error: String,
}

const ORDER: [(ListKind, &str, &str); 3] = [
    (
        ListKind::Allow,
        "Allow list",
        "Mail from these senders is delivered straight to you.",
    ),
    (
        ListKind::Block,
        "Block list",
        "Mail from these senders is refused; the sending server is told.",
    ),
    (
        ListKind::Ignore,
        "Ignore list",
        "Mail from these senders is dropped silently (it is logged).",
    ),
];

fn choices(selected: &str) -> Vec<Choice> {
    let selected = selected.parse::<ListKind>().unwrap_or(ListKind::Allow);
    ORDER
        .iter()
        .map(|(k, label, _)| Choice {
            value: k.as_str(),
            label,
            selected: *k == selected,
        })
        .collect()
}

/// Renders the page with the mailbox's lists and what `shown` says.
async fn render(st: &WebState, s: &SignedIn, shown: Shown, status: StatusCode) -> Response {
    let mailbox_id = s.session.mailbox_id;
    let settings = match st.store.mailbox_settings(mailbox_id).await {
        Ok(m) => m,
        Err(e) => return internal(&e),
    };
    let mut lists = Vec::new();
    for (kind, heading, explain) in ORDER {
        let entries = match st.store.list_entries(mailbox_id, kind).await {
            Ok(e) => e,
            Err(e) => return internal(&e),
        };
        lists.push(ListView {
            kind: kind.as_str(),
            heading,
            explain,
            entries: entries
                .iter()
                .map(|e| EntryView {
                    id: e.id,
                    rule: printable(&shown_rule(&e.rule)),
                    origin: origin_text(e),
                })
                .collect(),
        });
    }
    let page = ListsPage {
        title: "Your lists",
        who: &s.session.address,
        csrf: &s.session.csrf_token,
        notice: shown.notice,
        limit: st.quarantine.max_rules_per_list(),
        challenge_off: !settings.challenge_enabled,
        lists,
        add_lists: choices(&shown.add_list),
        add_rule_mode: shown.add_rule_mode,
        add_entry: printable(&shown.add_entry),
        add_error: shown.add_error,
        test_address: printable(&shown.test_address),
        test_subject: printable(&shown.test_subject),
        test_result: shown.test_result,
        test_error: shown.test_error,
        import_lists: choices(&shown.import_list),
        import_replace: shown.import_replace,
        import_text: shown.import_text,
        import_error: shown.import_error,
    };
    html(status, page.render(), true)
}

#[derive(Deserialize)]
struct PageQuery {
    done: Option<String>,
    test: Option<String>,
    subject: Option<String>,
}

/// The result line of an action, from its code in the redirect
/// (`added.allow`, `already.block`, `removed.ignore`, `imported.allow.3.5`,
/// `replaced.block.2`); a code that is none of ours shows nothing.
fn done_text(code: &str) -> String {
    let mut parts = code.split('.');
    let (Some(what), Some(list)) = (parts.next(), parts.next()) else {
        return String::new();
    };
    let Ok(kind) = list.parse::<ListKind>() else {
        return String::new();
    };
    let numbers: Vec<usize> = parts.filter_map(|n| n.parse().ok()).collect();
    match (what, numbers.as_slice()) {
        ("added", []) => format!("Added to your {kind} list."),
        ("already", []) => format!("Your {kind} list already has that entry; nothing changed."),
        ("removed", []) => format!("Removed from your {kind} list."),
        ("imported", [added, read]) => {
            format!("Imported into your {kind} list: {added} new of {read} rules read.")
        }
        ("replaced", [read]) => format!("Your {kind} list now holds the {read} rules imported."),
        _ => String::new(),
    }
}

/// The tester's answer in words.
fn test_text(fired: Option<&Fired>, address: &str) -> String {
    let address = printable(address.trim());
    match fired {
        Some(f) => format!(
            "The {kind} list decides: its entry “{rule}” ({origin}) matches, so mail from {address} is {effect}.",
            kind = f.kind,
            rule = printable(&shown_rule(&f.entry.rule)),
            origin = origin_text(&f.entry),
            effect = effect(f.kind),
        ),
        None => format!(
            "No entry matches {address}: its mail is screened as usual (held and the sender asked to confirm, unless it is spam or automated mail)."
        ),
    }
}

async fn page(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let s = match signed_in(&st, &headers, "/lists").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut shown = Shown {
        notice: q.done.as_deref().map(done_text).unwrap_or_default(),
        ..Shown::default()
    };
    let mut status = StatusCode::OK;
    if let Some(address) = q.test {
        let subject = q.subject.unwrap_or_default();
        match test_sender(&st, s.session.mailbox_id, &address, &subject).await {
            Ok(fired) => shown.test_result = test_text(fired.as_ref(), &address),
            Err(ListFailure::Store(e)) => return internal(&e),
            Err(e) => {
                status = e.status();
                shown.test_error = e.text();
            }
        }
        shown.test_address = address;
        shown.test_subject = subject;
    }
    render(&st, &s, shown, status).await
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    list: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    entry: String,
}

async fn add_form(
    State(st): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<AddForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/lists").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let mode = if f.mode == "rule" {
        EntryMode::Rule
    } else {
        EntryMode::Simple
    };
    let result = async {
        let kind = list_kind(&f.list)?;
        let rule = read_entry(mode, &f.entry)?;
        let added = add_rule(&st, s.session.mailbox_id, kind, &rule).await?;
        Ok::<_, ListFailure>((kind, added))
    }
    .await;
    match result {
        Ok((kind, added)) => {
            tracing::info!(mailbox = %s.session.address, list = %kind, added, "owner added a list entry");
            let what = if added { "added" } else { "already" };
            see_other(&format!("/lists?done={what}.{kind}#{kind}"))
        }
        Err(ListFailure::Store(e)) => internal(&e),
        Err(e) => {
            let shown = Shown {
                add_list: f.list,
                add_rule_mode: mode == EntryMode::Rule,
                add_entry: f.entry,
                add_error: e.text(),
                ..Shown::default()
            };
            render(&st, &s, shown, e.status()).await
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn remove_form(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path((list, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match signed_in(&st, &headers, "/lists").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let result = async {
        let kind = list_kind(&list).map_err(|_| ListFailure::NotFound)?;
        let id = id.parse::<i64>().map_err(|_| ListFailure::NotFound)?;
        remove_rule(&st, s.session.mailbox_id, kind, id)
            .await
            .map(|line| (kind, line))
    }
    .await;
    match result {
        Ok((kind, line)) => {
            tracing::info!(mailbox = %s.session.address, list = %kind, rule = %line, "owner removed a list entry");
            see_other(&format!("/lists?done=removed.{kind}#{kind}"))
        }
        Err(ListFailure::Store(e)) => internal(&e),
        Err(e) => message(e.status(), "Not found", &e.text(), Some(&s)),
    }
}

#[derive(Deserialize, Default)]
struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    list: String,
    #[serde(default)]
    how: String,
    #[serde(default)]
    text: String,
}

/// The largest list file the import form takes, in bytes: below `[web]
/// max_body_size`'s default (64K), so a bigger file is refused by its
/// name; a whole request over `max_body_size` gets the listener's 413.
pub const IMPORT_FILE_LIMIT: usize = 48 * 1024;

/// The import form's fields from a `multipart/form-data` body (the form
/// with a file): a chosen file (`file`, not empty) stands for `text`. A
/// file over [`IMPORT_FILE_LIMIT`] or not UTF-8 is refused by its name.
async fn read_multipart(
    mut m: axum::extract::Multipart,
) -> Result<ImportForm, (ImportForm, String)> {
    let mut f = ImportForm::default();
    let mut bad = None;
    loop {
        let field = match m.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return Err((
                    f,
                    format!("The form could not be read: {e}. Nothing was imported."),
                ));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file = printable(field.file_name().unwrap_or_default());
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err((
                    f,
                    format!("The form could not be read: {e}. Nothing was imported."),
                ));
            }
        };
        let text = || String::from_utf8(bytes.to_vec());
        match name.as_str() {
            "csrf" => f.csrf = text().unwrap_or_default(),
            "list" => f.list = text().unwrap_or_default(),
            "how" => f.how = text().unwrap_or_default(),
            "text" => f.text = text().unwrap_or_default(),
            "file" if !bytes.is_empty() => {
                if bytes.len() > IMPORT_FILE_LIMIT {
                    bad = Some(format!(
                        "The file “{file}” is {} bytes, more than the {IMPORT_FILE_LIMIT} bytes an import takes. Nothing was imported.",
                        bytes.len()
                    ));
                } else {
                    match text() {
                        Ok(t) => f.text = t,
                        Err(_) => {
                            bad = Some(format!(
                                "The file “{file}” is not UTF-8 text (a list file has one rule per line). Nothing was imported."
                            ))
                        }
                    }
                }
            }
            _ => {}
        }
    }
    match bad {
        Some(why) => Err((f, why)),
        None => Ok(f),
    }
}

async fn import_form(State(st): State<WebState>, req: axum::extract::Request) -> Response {
    use axum::extract::FromRequest;
    let headers = req.headers().clone();
    let s = match signed_in(&st, &headers, "/lists").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (f, file_error) = if multipart {
        match axum::extract::Multipart::from_request(req, &st).await {
            Ok(m) => match read_multipart(m).await {
                Ok(f) => (f, None),
                Err((f, why)) => (f, Some(why)),
            },
            Err(r) => return r.into_response(),
        }
    } else {
        match Form::<ImportForm>::from_request(req, &st).await {
            Ok(Form(f)) => (f, None),
            Err(r) => return r.into_response(),
        }
    };
    if let Some(r) = refused(&st, &headers, &s, &f.csrf) {
        return r;
    }
    let replace = f.how == "replace";
    let result = async {
        if let Some(why) = file_error {
            return Err(ListFailure::Invalid(why));
        }
        let kind = list_kind(&f.list)?;
        if !replace && f.how != "add" {
            return Err(ListFailure::Invalid(
                "Choose whether the rules are added to the list or replace it.".into(),
            ));
        }
        let done = import_rules(&st, s.session.mailbox_id, kind, &f.text, replace).await?;
        Ok((kind, done))
    }
    .await;
    match result {
        Ok((kind, done)) => {
            tracing::info!(mailbox = %s.session.address, list = %kind, replace, added = done.added, "owner imported a list");
            let code = if replace {
                format!("replaced.{kind}.{}", done.read)
            } else {
                format!("imported.{kind}.{}.{}", done.added, done.read)
            };
            see_other(&format!("/lists?done={code}#{kind}"))
        }
        Err(ListFailure::Store(e)) => internal(&e),
        Err(e) => {
            let shown = Shown {
                import_list: f.list,
                import_replace: replace,
                import_text: f.text,
                import_error: e.text(),
                ..Shown::default()
            };
            render(&st, &s, shown, e.status()).await
        }
    }
}

/// The list as `boxtrap list import` reads it, as a download.
async fn export(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(list): Path<String>,
) -> Response {
    let back = format!(
        "/lists/{}/export",
        list_kind(&list).map_or("allow", |k| k.as_str())
    );
    let s = match signed_in(&st, &headers, &back).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(kind) = list_kind(&list) else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such list: the lists are allow, block and ignore.",
            Some(&s),
        );
    };
    let rules = match st.store.rules(s.session.mailbox_id, kind).await {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    let mut r = rules::export_list(kind, &rules).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{kind}-list.txt\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(&mut r, true);
    r
}

// ---- the JSON API ----------------------------------------------------------

/// One entry in the API's answers.
#[derive(Serialize)]
struct ApiEntry {
    id: i64,
    /// The rule as a list line (`from ^bob@example\.org$`).
    rule: String,
    field: &'static str,
    pattern: String,
    /// The stored source code (`owner`, `admin`, `import`,
    /// `release:link`, `association:<message>`; `""`: unknown).
    source: String,
    /// The source in words, without the date.
    origin: String,
    /// When it was added, RFC 3339 in UTC.
    added: String,
}

impl ApiEntry {
    fn of(e: &ListEntry) -> ApiEntry {
        ApiEntry {
            id: e.id,
            rule: e.rule.to_line(),
            field: e.rule.field().as_str(),
            pattern: e.rule.pattern().to_owned(),
            source: e.source.code(),
            origin: e.source.describe(),
            added: format!("{}Z", e.created_at.log_format().replacen(' ', "T", 1)),
        }
    }
}

#[derive(Serialize)]
struct ApiList {
    list: &'static str,
    /// The most entries the list may hold.
    limit: usize,
    rules: Vec<ApiEntry>,
}

/// A failure as the API's `{"error": ...}`.
fn api_failure(e: ListFailure) -> Response {
    match e {
        ListFailure::Store(e) => json_internal(&e),
        ListFailure::NotFound => json_error(StatusCode::NOT_FOUND, "no such entry on this list"),
        e => json_error(e.status(), &e.text()),
    }
}

/// The API's 404 for a list name that is none of the three.
fn no_such_list(list: &str) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no list {:?}: the lists are allow, block and ignore",
            printable(list)
        ),
    )
}

/// The list as the API shows it.
async fn api_list(st: &WebState, mailbox_id: i64, kind: ListKind) -> Response {
    match st.store.list_entries(mailbox_id, kind).await {
        Ok(entries) => json(
            StatusCode::OK,
            &ApiList {
                list: kind.as_str(),
                limit: st.quarantine.max_rules_per_list(),
                rules: entries.iter().map(ApiEntry::of).collect(),
            },
        ),
        Err(e) => json_internal(&e),
    }
}

async fn api_get(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(list): Path<String>,
) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match list_kind(&list) {
        Ok(kind) => api_list(&st, s.session.mailbox_id, kind).await,
        Err(_) => no_such_list(&list),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    rules: Vec<String>,
}

/// Whether the request body is `text/plain` (a list file).
fn is_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/plain"))
}

/// The rules of a list file sent as `text/plain`; the error names the
/// first bad line.
fn file_rules(bytes: &[u8]) -> Result<Vec<SenderRule>, ListFailure> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ListFailure::Invalid("the list file is not UTF-8".into()))?;
    rules::parse_list(text).map(|p| p.rules).map_err(|e| {
        let line = rules::list_lines(text).nth(e.line - 1).unwrap_or("");
        ListFailure::Invalid(format!(
            "line {} ({:?}): {}; nothing was changed",
            e.line,
            printable(line.trim()),
            e.error
        ))
    })
}

/// The rules of `{"rules": [...]}`, each read as a typed rule, repeats
/// once; the error names the first bad one by its place in the array.
fn array_rules(texts: &[String]) -> Result<Vec<SenderRule>, ListFailure> {
    let mut out: Vec<SenderRule> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let rule = read_typed_rule(text).map(|r| r.rule).map_err(|e| {
            ListFailure::Invalid(format!(
                "rules[{i}] ({:?}): {e}; nothing was changed",
                printable(text)
            ))
        })?;
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    Ok(out)
}

async fn api_put(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(list): Path<String>,
    bytes: Bytes,
) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(kind) = list_kind(&list) else {
        return no_such_list(&list);
    };
    let rules = if is_text(&headers) {
        file_rules(&bytes)
    } else {
        match body::<PutBody>(&headers, &bytes) {
            Ok(b) => array_rules(&b.rules),
            Err(r) => return r,
        }
    };
    let rules = match rules {
        Ok(r) => r,
        Err(e) => return api_failure(e),
    };
    let mailbox_id = s.session.mailbox_id;
    match replace_or_add(&st, mailbox_id, kind, &rules, true).await {
        Ok(_) => {
            tracing::info!(mailbox = %s.session.address, list = %kind, rules = rules.len(), "owner replaced a list (API)");
            api_list(&st, mailbox_id, kind).await
        }
        Err(e) => api_failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    rule: Option<String>,
    address: Option<String>,
}

#[derive(Serialize)]
struct AddDone {
    added: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<ApiEntry>,
}

async fn api_add(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path(list): Path<String>,
    bytes: Bytes,
) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(kind) = list_kind(&list) else {
        return no_such_list(&list);
    };
    let b: AddBody = match body(&headers, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rule = match (&b.rule, &b.address) {
        (Some(text), None) => read_entry(EntryMode::Rule, text),
        (None, Some(text)) => read_entry(EntryMode::Simple, text),
        _ => Err(ListFailure::Invalid(
            "give either \"rule\" (BoxTrapper syntax) or \"address\" (an address or *@domain)"
                .into(),
        )),
    };
    let mailbox_id = s.session.mailbox_id;
    let added = match rule {
        Ok(rule) => add_rule(&st, mailbox_id, kind, &rule)
            .await
            .map(|added| (added, rule)),
        Err(e) => Err(e),
    };
    match added {
        Ok((false, _)) => json(
            StatusCode::OK,
            &AddDone {
                added: false,
                entry: None,
            },
        ),
        Ok((true, rule)) => {
            tracing::info!(mailbox = %s.session.address, list = %kind, "owner added a list entry (API)");
            let entries = match st.store.list_entries(mailbox_id, kind).await {
                Ok(e) => e,
                Err(e) => return json_internal(&e),
            };
            let entry = entries.iter().find(|e| e.rule == rule).map(ApiEntry::of);
            json(StatusCode::CREATED, &AddDone { added: true, entry })
        }
        Err(e) => api_failure(e),
    }
}

async fn api_remove(
    State(st): State<WebState>,
    headers: HeaderMap,
    Path((list, id)): Path<(String, String)>,
) -> Response {
    let s = match caller(&st, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(kind) = list_kind(&list) else {
        return no_such_list(&list);
    };
    let Ok(id) = id.parse::<i64>() else {
        return api_failure(ListFailure::NotFound);
    };
    match remove_rule(&st, s.session.mailbox_id, kind, id).await {
        Ok(line) => {
            tracing::info!(mailbox = %s.session.address, list = %kind, rule = %line, "owner removed a list entry (API)");
            let mut r = StatusCode::NO_CONTENT.into_response();
            secure_headers(&mut r, true);
            r
        }
        Err(e) => api_failure(e),
    }
}

#[derive(Deserialize)]
struct TestQuery {
    #[serde(default)]
    address: String,
    #[serde(default)]
    subject: String,
}

#[derive(Serialize)]
struct ApiFired {
    list: &'static str,
    id: i64,
    rule: String,
    origin: String,
}

#[derive(Serialize)]
struct ApiTested {
    /// The entry that fires; `null`: none.
    fired: Option<ApiFired>,
    /// What happens to the mail, in words.
    effect: &'static str,
}

async fn api_test(
    State(st): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<TestQuery>,
) -> Response {
    let s = match caller(&st, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match test_sender(&st, s.session.mailbox_id, &q.address, &q.subject).await {
        Ok(fired) => json(
            StatusCode::OK,
            &ApiTested {
                effect: fired
                    .as_ref()
                    .map_or("screened as usual", |f| effect(f.kind)),
                fired: fired.map(|f| ApiFired {
                    list: f.kind.as_str(),
                    id: f.entry.id,
                    rule: f.entry.rule.to_line(),
                    origin: f.entry.source.describe(),
                }),
            },
        ),
        Err(e) => api_failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_the_simple_mode_makes_are_shown_in_the_simple_form() {
        for typed in [
            "bob@example.org",
            "*@example.org",
            "x+tag@sub.example.co.uk",
        ] {
            assert_eq!(shown_rule(&read_simple(typed).unwrap()), typed);
        }
        assert_eq!(
            shown_rule(&SenderRule::exact_sender("News@Shop.example.org")),
            "news@shop.example.org"
        );
        assert_eq!(
            shown_rule(&SenderRule::domain("@Example.org").unwrap()),
            "*@example.org"
        );
        // Anything else keeps its rule syntax.
        for line in [
            r"from bob@example\.org$",
            r"from ^bob@example\.org",
            r"from .*@example\.org",
            r"from ^bob@example.org$",
            r"from ^(bob|eve)@example\.org$",
            r"from .*@.*\.example\.org$",
            r"to ^bob@example\.org$",
            r"subject ^\[invoice\]",
        ] {
            let rule = SenderRule::parse(line).unwrap();
            assert_eq!(shown_rule(&rule), rule.to_line(), "{line}");
        }
    }

    #[test]
    fn the_simple_mode_makes_the_exact_sender_or_domain_rule() {
        assert_eq!(
            read_simple(" Bob@Example.ORG ").unwrap().to_line(),
            r"from ^bob@example\.org$"
        );
        for domain in ["*@Example.org", "@example.org"] {
            let rule = read_simple(domain).unwrap();
            assert_eq!(rule.to_line(), r"from .*@example\.org$");
            let list = RuleList::new(vec![rule]);
            assert!(list.first_from_match("anyone@example.org").is_some());
            assert!(list.first_from_match("x@sub.example.org").is_none());
            assert!(list.first_from_match("x@evil-example.org").is_none());
            assert!(list.first_from_match("x@example.org.evil").is_none());
        }
        for bad in [
            "",
            "bob",
            "*@",
            "*@bad_domain",
            "bob smith@x.example",
            "from x",
        ] {
            assert!(read_simple(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_rule_mode_reads_as_the_cli_does() {
        let rule = read_entry(EntryMode::Rule, "from *@partner.example").unwrap();
        assert_eq!(rule.to_line(), "from .*@partner.example");
        let Err(ListFailure::Invalid(why)) = read_entry(EntryMode::Rule, "from (?=x)") else {
            panic!("accepted");
        };
        assert!(why.contains("look-ahead"), "{why}");
    }

    #[test]
    fn results_read_as_sentences_and_unknown_codes_show_nothing() {
        assert_eq!(done_text("added.allow"), "Added to your allow list.");
        assert_eq!(
            done_text("imported.block.2.5"),
            "Imported into your block list: 2 new of 5 rules read."
        );
        assert_eq!(
            done_text("replaced.ignore.3"),
            "Your ignore list now holds the 3 rules imported."
        );
        for junk in [
            "",
            "added",
            "added.<b>",
            "<script>.allow",
            "imported.allow.x",
        ] {
            assert_eq!(done_text(junk), "", "{junk:?}");
        }
    }
}
