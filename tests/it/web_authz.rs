//! Authorisation over every route, pages and JSON API alike:
//!
//! - `docs/openapi.yaml` passes a real OpenAPI validator
//!   (openapi-spec-validator, installed by scripts/test.sh), and the
//!   (method, path) pairs it documents are exactly the `/api/v1/` routes
//!   the router serves (read from the `.route(...)` calls in src/web/),
//!   each of which answers as a route (not the unknown-URL 404 or a 405);
//! - every page route is in [`PAGES`] below (or in [`PUBLIC`]);
//! - mailbox B's session and API token, used with mailbox A's ids on every
//!   route and with every held-mail action, get 404 and change nothing in
//!   A's (or B's) store; nothing of A's shows in any answer;
//! - every state-changing route refuses a session call without its CSRF
//!   token and one from another Origin (403), changing nothing.

use crate::http::*;
use crate::on_both_backends;
use crate::support::*;
use crate::web_admin::hold;
use boxtrap::policy::rules::ListKind;
use boxtrap::quarantine::owner::OwnerAction;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "alice correct horse";
const BOB: &str = "bob@example.test";
const BOB_PW: &str = "bob battery staple";
const CAROL: &str = "carol@example.test";
const CAROL_PW: &str = "carol admin pass";
/// In everything of A's: no answer to B may contain it.
const SECRET: &str = "alice-secret";
/// A's held mail's sender; B has none from it.
const A_SENDER: &str = "zed@example.org";
const B_SENDER: &str = "dave@example.org";
const EVIL: &str = "http://evil.example";

/// Routes anyone may call (no session), and routes with tokens of their
/// own (verification and digest links): not the owner's.
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/healthz"),
    ("GET", "/favicon.ico"),
    ("GET", "/static/boxtrap.css"),
    ("GET", "/verify/{token}"),
    ("POST", "/verify/{token}"),
    ("GET", "/digest/{token}"),
    ("POST", "/digest/{token}"),
];

/// Every signed-in page route: (method, route, URL, form). In URLs and
/// forms `{A_HELD}`, `{A_RULE}`, `{A_TOKEN}`, `{A_BOX}` and `{SENDER}`
/// stand for A's ids and held mail's sender (B's own in the CSRF checks),
/// `{ACTION}` for each held-mail action,
/// `{CSRF}` for the session's CSRF token. A route may have several lines.
const PAGES: &[(&str, &str, &str, &str)] = &[
    ("POST", "/logout", "/logout", "csrf={CSRF}"),
    ("GET", "/quarantine", "/quarantine?q=zed", ""),
    (
        "POST",
        "/quarantine/actions",
        "/quarantine/actions",
        "csrf={CSRF}&action={ACTION}&id={A_HELD}",
    ),
    (
        "POST",
        "/quarantine/actions",
        "/quarantine/actions",
        "csrf={CSRF}&action={ACTION}&sender={SENDER}",
    ),
    ("GET", "/quarantine/actions", "/quarantine/actions", ""),
    ("GET", "/quarantine/{id}", "/quarantine/{A_HELD}", ""),
    (
        "GET",
        "/quarantine/{id}/html",
        "/quarantine/{A_HELD}/html",
        "",
    ),
    (
        "GET",
        "/quarantine/{id}/raw",
        "/quarantine/{A_HELD}/raw",
        "",
    ),
    (
        "GET",
        "/quarantine/{id}/eml",
        "/quarantine/{A_HELD}/eml",
        "",
    ),
    (
        "GET",
        "/quarantine/{id}/attachment/{n}",
        "/quarantine/{A_HELD}/attachment/0",
        "",
    ),
    (
        "POST",
        "/quarantine/{id}/{action}",
        "/quarantine/{A_HELD}/deliver",
        "csrf={CSRF}",
    ),
    (
        "POST",
        "/quarantine/{id}/{action}",
        "/quarantine/{A_HELD}/allow",
        "csrf={CSRF}",
    ),
    (
        "POST",
        "/quarantine/{id}/{action}",
        "/quarantine/{A_HELD}/delete",
        "csrf={CSRF}",
    ),
    (
        "GET",
        "/quarantine/{id}/{action}",
        "/quarantine/{A_HELD}/delete",
        "",
    ),
    ("GET", "/lists", "/lists?test=zed%40example.org", ""),
    (
        "POST",
        "/lists/add",
        "/lists/add",
        "csrf={CSRF}&list=allow&mode=simple&entry=new%40example.org",
    ),
    (
        "POST",
        "/lists/import",
        "/lists/import",
        "csrf={CSRF}&list=block&how=add&text=from+x%40example%5C.org",
    ),
    ("GET", "/lists/{list}/export", "/lists/allow/export", ""),
    (
        "POST",
        "/lists/{list}/{id}/remove",
        "/lists/allow/{A_RULE}/remove",
        "csrf={CSRF}",
    ),
    (
        "POST",
        "/lists/{list}/{id}/remove",
        "/lists/block/{A_RULE}/remove",
        "csrf={CSRF}",
    ),
    ("GET", "/settings", "/settings", ""),
    (
        "POST",
        "/settings",
        "/settings",
        "csrf={CSRF}&display_name=B&keep_days=20&spam_bypass_below=off&spam_no_challenge_at=off&digest=daily&time_zone=UTC",
    ),
    (
        "POST",
        "/settings/tokens",
        "/settings/tokens",
        "csrf={CSRF}&name=mine",
    ),
    (
        "POST",
        "/settings/tokens/{id}/revoke",
        "/settings/tokens/{A_TOKEN}/revoke",
        "csrf={CSRF}",
    ),
    ("GET", "/templates", "/templates", ""),
    ("GET", "/templates/{name}", "/templates/verify", ""),
    (
        "POST",
        "/templates/{name}",
        "/templates/verify",
        "csrf={CSRF}&action=preview&text=Subject%3A+x%0A%0A%7B%7B+link+%7D%7D",
    ),
    (
        "POST",
        "/templates/{name}/reset",
        "/templates/verify/reset",
        "csrf={CSRF}",
    ),
    ("GET", "/activity", "/activity?held={A_HELD}", ""),
    ("GET", "/activity.csv", "/activity.csv?held={A_HELD}", ""),
    ("GET", "/admin", "/admin?sender=zed", ""),
    (
        "GET",
        "/admin/mailboxes/{id}",
        "/admin/mailboxes/{A_BOX}",
        "",
    ),
    (
        "POST",
        "/admin/mailboxes/{id}/challenge",
        "/admin/mailboxes/{A_BOX}/challenge",
        "csrf={CSRF}&challenge=on",
    ),
    (
        "POST",
        "/admin/mailboxes/{id}/held/{held}/{action}",
        "/admin/mailboxes/{A_BOX}/held/{A_HELD}/deliver",
        "csrf={CSRF}",
    ),
    (
        "POST",
        "/admin/mailboxes/{id}/held/{held}/{action}",
        "/admin/mailboxes/{A_BOX}/held/{A_HELD}/delete",
        "csrf={CSRF}",
    ),
    ("GET", "/admin/digests", "/admin/digests", ""),
    (
        "POST",
        "/admin/digests",
        "/admin/digests",
        "csrf={CSRF}&address=x%40example.org&domain=example.test&frequency=daily",
    ),
    (
        "POST",
        "/admin/digests/unsubscribe",
        "/admin/digests/unsubscribe",
        "csrf={CSRF}&id=1",
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python venv scripts/test.sh installs the validator into.
fn venv() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("BOXTRAP_VENV").unwrap_or_else(|_| "/var/tmp/boxtrap-venv".into()),
    );
    assert!(
        dir.join("bin/openapi-spec-validator").exists(),
        "openapi-spec-validator is not in {}: run `bash scripts/test.sh --setup-only` \
         (or set BOXTRAP_VENV)",
        dir.display()
    );
    dir
}

/// docs/openapi.yaml as JSON, read with the validator's own YAML reader.
fn spec() -> Value {
    let out = std::process::Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(root().join("docs/openapi.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (METHOD, path) of every operation the OpenAPI file documents.
fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// (METHOD, route) of every route the router serves, read from the
/// `.route("...", get(..).post(..))` calls in src/web/; catch-alls
/// (`{*rest}`) and fallbacks left out.
fn served() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in std::fs::read_dir(root().join("src/web")).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + 7..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &rest[..end];
            let quoted: Vec<&str> = call.splitn(3, '"').collect();
            let (route, router) = (quoted[1], quoted[2]);
            if route.contains("{*") {
                continue;
            }
            for m in METHODS {
                let token = format!("{m}(");
                let found = router.match_indices(&token).any(|(i, _)| {
                    i == 0
                        || !router.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && router.as_bytes()[i - 1] != b'_'
                });
                if found {
                    routes.insert((m.to_uppercase(), route.to_owned()));
                }
            }
        }
    }
    assert!(
        routes.len() > 40,
        "the route reader found too few: {routes:?}"
    );
    routes
}

/// The held-mail actions: those the file documents (ActionRequest's
/// enum) and every [`OwnerAction`], so an action added to the code is
/// tried here even before the file names it.
fn actions(spec: &Value) -> Vec<String> {
    let mut all: Vec<String> =
        spec["components"]["schemas"]["ActionRequest"]["properties"]["action"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
    for a in OwnerAction::ALL {
        if !all.iter().any(|d| d == a.as_str()) {
            all.push(a.as_str().to_owned());
        }
    }
    all
}

#[tokio::test]
async fn the_openapi_file_is_valid_and_documents_exactly_the_api_routes() {
    let out = std::process::Command::new(venv().join("bin/openapi-spec-validator"))
        .arg(root().join("docs/openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docs/openapi.yaml is not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("sessionCookie") && schemes.contains_key("bearerToken"));

    let served = served();
    let api: BTreeSet<_> = served
        .iter()
        .filter(|(_, p)| p.starts_with("/api/v1/"))
        .cloned()
        .collect();
    let documented = documented(&spec);
    assert_eq!(
        documented.difference(&api).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented in docs/openapi.yaml but not served"
    );
    assert_eq!(
        api.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented in docs/openapi.yaml"
    );

    // Every page route is covered by the authorisation test below.
    let pages: BTreeSet<(String, String)> = PAGES
        .iter()
        .map(|(m, r, _, _)| (m.to_string(), r.to_string()))
        .chain(PUBLIC.iter().map(|(m, r)| (m.to_string(), r.to_string())))
        .collect();
    let served_pages: BTreeSet<_> = served.difference(&api).cloned().collect();
    assert_eq!(
        served_pages.difference(&pages).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "page routes missing from PAGES in tests/it/web_authz.rs"
    );
    assert_eq!(
        pages.difference(&served_pages).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "PAGES names routes that are not served"
    );

    // Each documented operation is a route (no unknown-URL 404, no 405):
    // without credentials, the API's own 401 (415 for login's empty body).
    let app = TestApp::spawn_on(Backend::Sqlite).await;
    for (method, path) in &documented {
        let url = path
            .replace("{list}", "allow")
            .replace("{name}", "verify")
            .replace("{id}", "1");
        let r = request_from("127.0.0.1", app.web, method, &url, &[], "").await;
        let want = if path == "/api/v1/login" { 415 } else { 401 };
        assert_eq!(r.status, want, "{method} {url}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

/// Everything of one mailbox the routes could read or change, as text.
async fn snapshot(app: &TestApp, mailbox: &str) -> String {
    let id = app.mailbox_id(mailbox).await;
    let s = &app.store;
    let mut out = format!("{:?}\n", s.list_held(Some(id), None).await.unwrap());
    for kind in [ListKind::Allow, ListKind::Block, ListKind::Ignore] {
        out += &format!("{:?}\n", s.list_entries(id, kind).await.unwrap());
    }
    let tokens: Vec<_> = s
        .api_tokens(id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    out += &format!("{tokens:?}\n{:?}\n", s.mailbox_settings(id).await.unwrap());
    for name in ["verify", "verifyreleased", "returnverify", "blacklist"] {
        out += &format!("{:?}\n", s.template_override(id, name).await.unwrap());
    }
    let log = s
        .activity_page(id, &Default::default(), None, 100_000)
        .await
        .unwrap();
    out += &format!("{log:?}\n{} delivered\n", app.messages(mailbox).len());
    out
}

/// The ids a route's placeholders stand for.
#[derive(Debug, Clone, Copy)]
struct Ids {
    held: i64,
    rule: i64,
    token: i64,
    mailbox: i64,
    /// The sender of the held message.
    sender: &'static str,
}

/// `text` with `{A_HELD}`, ... as `ids`, `{ACTION}` and `{CSRF}`.
fn fill(text: &str, ids: Ids, action: &str, csrf: &str) -> String {
    text.replace("{A_HELD}", &ids.held.to_string())
        .replace("{A_RULE}", &ids.rule.to_string())
        .replace("{A_TOKEN}", &ids.token.to_string())
        .replace("{A_BOX}", &ids.mailbox.to_string())
        .replace("{SENDER}", &enc(ids.sender))
        .replace("{ACTION}", action)
        .replace("{CSRF}", csrf)
}

/// An OpenAPI path with the ids of `ids`.
fn api_url(path: &str, ids: Ids) -> String {
    let id = if path.starts_with("/api/v1/held/") {
        ids.held
    } else if path.starts_with("/api/v1/lists/") {
        ids.rule
    } else if path.starts_with("/api/v1/tokens/") {
        ids.token
    } else {
        ids.mailbox
    };
    path.replace("{list}", "allow")
        .replace("{name}", "verify")
        .replace("{id}", &id.to_string())
}

/// The JSON bodies to send to an operation: one per held-mail action and
/// way of naming targets (A's id, A's sender), or one plausible body.
fn api_bodies(method: &str, path: &str, ids: Ids, actions: &[String]) -> Vec<String> {
    if path.ends_with("/held/actions") {
        return actions
            .iter()
            .flat_map(|a| {
                [
                    format!(r#"{{"action": "{a}", "ids": [{}]}}"#, ids.held),
                    format!(r#"{{"action": "{a}", "senders": ["{}"]}}"#, ids.sender),
                ]
            })
            .collect();
    }
    let body = match (method, path) {
        ("POST", "/api/v1/lists/{list}") => r#"{"address": "new@example.org"}"#,
        ("PUT", "/api/v1/lists/{list}") => r#"{"rules": ["from ^b@example\\.org$"]}"#,
        ("PATCH", "/api/v1/settings") => r#"{"display_name": "B"}"#,
        ("PUT", "/api/v1/templates/{name}") => r#"{"text": null}"#,
        ("POST", "/api/v1/tokens") => r#"{"name": "mine"}"#,
        _ => "",
    };
    vec![body.to_owned()]
}

/// Whether a route names one of mailbox A's things by id.
fn names_an_id(route: &str) -> bool {
    route.contains("{id}")
}

/// Checks one answer to B: 404 where it names A's ids (or is an admin
/// route), never a server error, nothing of A's; A unchanged.
async fn check(app: &TestApp, what: &str, named: bool, admin: bool, r: &Resp, before: &str) {
    if named || admin {
        assert_eq!(r.status, 404, "{what}: {r:?}");
    } else {
        assert!(r.status < 500, "{what}: {r:?}");
    }
    assert!(!r.body.contains(SECRET), "{what} shows A's data: {r:?}");
    // Only an echo of what B sent may name A's sender.
    if !what.contains(A_SENDER) && !what.contains(&enc(A_SENDER)) {
        assert!(!r.body.contains(A_SENDER), "{what} shows A's data: {r:?}");
    }
    assert_eq!(
        snapshot(app, ALICE).await,
        before,
        "{what} changed A's store"
    );
}

on_both_backends!(
    mailbox_b_gets_404_and_changes_nothing_with_mailbox_a_ids_on_every_route,
    |backend: Backend| async move {
        let spec = spec();
        let actions = actions(&spec);
        assert!(actions.len() >= 9, "{actions:?}");
        let app = TestApp::spawn_on(backend).await;
        set_password(&app, ALICE, ALICE_PW).await;
        set_password(&app, BOB, BOB_PW).await;
        let a_box = app.mailbox_id(ALICE).await;
        let a = Ids {
            held: hold(&app, ALICE, A_SENDER, "alice-secret subject").await,
            rule: {
                app.add_rule(ALICE, ListKind::Allow, r"from ^alice-secret@example\.org$")
                    .await;
                app.store
                    .list_entries(a_box, ListKind::Allow)
                    .await
                    .unwrap()[0]
                    .id
            },
            token: {
                let (_, hash) = boxtrap::web::api::new_api_token();
                app.store
                    .create_api_token(
                        a_box,
                        "alice-secret phone",
                        &hash,
                        boxtrap::clock::Timestamp::from_secs(T0),
                    )
                    .await
                    .unwrap()
            },
            mailbox: a_box,
            sender: A_SENDER,
        };
        app.store
            .set_template_override(
                a_box,
                "verify",
                Some("Subject: alice-secret\n\n{{ link }}\n"),
                boxtrap::clock::Timestamp::from_secs(T0),
            )
            .await
            .unwrap();
        hold(&app, BOB, B_SENDER, "bob's own").await;
        let b_box = app.mailbox_id(BOB).await;
        let (b_token, hash) = boxtrap::web::api::new_api_token();
        app.store
            .create_api_token(
                b_box,
                "bob's",
                &hash,
                boxtrap::clock::Timestamp::from_secs(T0),
            )
            .await
            .unwrap();
        let before = snapshot(&app, ALICE).await;

        // The API, as B's session and as B's token.
        let b_session = ApiCaller::session(&app, BOB, BOB_PW).await;
        let b_with_token = ApiCaller::token(&app, &b_token);
        for (method, path) in documented(&spec) {
            if path == "/api/v1/login" || path == "/api/v1/logout" {
                continue;
            }
            let url = api_url(&path, a);
            for body in api_bodies(&method, &path, a, &actions) {
                for (who, caller) in [("session", &b_session), ("token", &b_with_token)] {
                    let r = caller.call(&method, &url, &body).await;
                    let what = format!("B's {who}: {method} {url} {body}");
                    let admin = path.starts_with("/api/v1/admin/");
                    check(&app, &what, names_an_id(&path), admin, &r, &before).await;
                }
            }
        }

        // The pages, as B's browser.
        let (bob, _) = Browser::signed_in(&app, BOB, BOB_PW).await;
        let csrf = bob.get("/settings").await.csrf();
        for (method, route, url, form) in PAGES {
            if *route == "/logout" {
                continue;
            }
            let each: Vec<&str> = if form.contains("{ACTION}") {
                actions.iter().map(String::as_str).collect()
            } else {
                vec![""]
            };
            for action in each {
                let named =
                    names_an_id(route) || form.contains("{A_HELD}") || form.contains("{SENDER}");
                let url = fill(url, a, action, &csrf);
                let form = fill(form, a, action, &csrf);
                let r = if *method == "GET" {
                    bob.get(&url).await
                } else {
                    bob.post(&url, &form).await
                };
                let what = format!("B's browser: {method} {url} {form}");
                let admin = route.starts_with("/admin");
                // GETs on POST-only action URLs say so (405), as for anyone.
                if *method == "GET"
                    && route.starts_with("/quarantine/")
                    && route.ends_with("{action}")
                    || *route == "/quarantine/actions" && *method == "GET"
                {
                    assert_eq!(r.status, 405, "{what}: {r:?}");
                    assert_eq!(snapshot(&app, ALICE).await, before, "{what}");
                    continue;
                }
                check(&app, &what, named, admin, &r, &before).await;
            }
        }
    }
);

on_both_backends!(
    every_state_changing_route_refuses_a_missing_csrf_token_and_a_foreign_origin,
    |backend: Backend| async move {
        let spec = spec();
        let actions = actions(&spec);
        let app = TestApp::spawn_on(backend).await;
        app.add_mailboxes(&[CAROL]).await;
        for (who, pw) in [(ALICE, ALICE_PW), (BOB, BOB_PW), (CAROL, CAROL_PW)] {
            set_password(&app, who, pw).await;
        }
        let carol_box = app.mailbox_id(CAROL).await;
        app.store.set_admin(carol_box, true).await.unwrap();
        // B's own things: the refusals must keep even those unchanged.
        let b_box = app.mailbox_id(BOB).await;
        let b = Ids {
            held: hold(&app, BOB, B_SENDER, "bob's own").await,
            rule: {
                app.add_rule(BOB, ListKind::Allow, r"from ^x@example\.org$")
                    .await;
                app.store
                    .list_entries(b_box, ListKind::Allow)
                    .await
                    .unwrap()[0]
                    .id
            },
            token: {
                let (_, hash) = boxtrap::web::api::new_api_token();
                app.store
                    .create_api_token(
                        b_box,
                        "bob's",
                        &hash,
                        boxtrap::clock::Timestamp::from_secs(T0),
                    )
                    .await
                    .unwrap()
            },
            mailbox: b_box,
            sender: B_SENDER,
        };
        let state = || async { (snapshot(&app, BOB).await, snapshot(&app, ALICE).await) };
        let before = state().await;

        // The API: B's session (an admin's for the admin routes).
        let bob = ApiCaller::session(&app, BOB, BOB_PW).await;
        let carol = ApiCaller::session(&app, CAROL, CAROL_PW).await;
        for (method, path) in documented(&spec) {
            if method == "GET" {
                continue;
            }
            let caller = if path.starts_with("/api/v1/admin/") {
                &carol
            } else {
                &bob
            };
            let url = api_url(&path, b);
            let bodies = if path == "/api/v1/login" {
                vec![format!(r#"{{"address": "{BOB}", "password": "{BOB_PW}"}}"#)]
            } else {
                api_bodies(&method, &path, b, &actions)
            };
            for body in bodies {
                let mut refusals = vec![("a foreign Origin", caller.with("Origin", Some(EVIL)))];
                if path != "/api/v1/login" {
                    refusals.push(("no X-CSRF-Token", caller.with("X-CSRF-Token", None)));
                    refusals.push((
                        "another X-CSRF-Token",
                        caller.with("X-CSRF-Token", Some(&"0".repeat(64))),
                    ));
                }
                for (how, c) in refusals {
                    let r = c.call(&method, &url, &body).await;
                    assert_eq!(r.status, 403, "{how}: {method} {url} {body}: {r:?}");
                    assert!(!r.error().is_empty());
                    assert_eq!(state().await, before, "{how}: {method} {url} {body}");
                }
            }
        }

        // The pages: B's browser (an admin's for /admin), B's own ids.
        let (bob, _) = Browser::signed_in(&app, BOB, BOB_PW).await;
        let (carol, _) = Browser::signed_in(&app, CAROL, CAROL_PW).await;
        let bob_csrf = bob.get("/settings").await.csrf();
        let carol_csrf = carol.get("/settings").await.csrf();
        for (method, route, url, form) in PAGES.iter().filter(|p| p.0 == "POST") {
            let (browser, csrf) = if route.starts_with("/admin") {
                (&carol, &carol_csrf)
            } else {
                (&bob, &bob_csrf)
            };
            let each: Vec<&str> = if form.contains("{ACTION}") {
                actions.iter().map(String::as_str).collect()
            } else {
                vec![""]
            };
            for action in each {
                let url = fill(url, b, action, csrf);
                let with_csrf = fill(form, b, action, csrf);
                let without: String = with_csrf
                    .split('&')
                    .filter(|kv| !kv.starts_with("csrf="))
                    .collect::<Vec<_>>()
                    .join("&");
                let other = with_csrf.replace(csrf.as_str(), &"0".repeat(64));
                for (how, form, origin) in [
                    ("no CSRF token", &without, None),
                    ("another CSRF token", &other, None),
                    ("a foreign Origin", &with_csrf, Some(EVIL)),
                ] {
                    let extra: Vec<(&str, &str)> =
                        origin.map(|o| vec![("Origin", o)]).unwrap_or_default();
                    let r = browser.post_with(&url, form, &extra).await;
                    assert_eq!(r.status, 403, "{how}: {method} {url} {form}: {r:?}");
                    assert_eq!(state().await, before, "{how}: {method} {url} {form}");
                }
            }
        }
    }
);
