//! The owner's settings page (`/settings`) and challenge texts
//! (`/templates`) over real HTTP on the TestApp's web listener, on SQLite
//! and PostgreSQL: every setting changed and shown, every bad value refused
//! by name with nothing changed, CSRF and Origin checks, hostile text
//! escaped; templates refused naming the problem, previewed, diffed,
//! restored, sent to the owner as a test, and used by the next challenge.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::store::digest::DigestFrequency;
use boxtrap::store::settings::MailboxSettings;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ALICE_PW: &str = "alice correct horse";
const BOB_PW: &str = "bob battery staple";

// ---- an HTTP client (as in web_owner.rs) ----------------------------------

/// One HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The session id a `Set-Cookie` gives (`""`: a clearing one).
    fn session_cookie(&self) -> Option<String> {
        let c = self.header("set-cookie")?;
        let v = c.strip_prefix("boxtrap_session=")?;
        Some(v.split(';').next().unwrap_or("").to_owned())
    }

    /// The CSRF token in the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        self.body[at + 19..at + 19 + 64].to_owned()
    }
}

/// One request over a fresh connection from the loopback address `src`.
async fn request_from(
    src: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("no HTTP response within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A browser: keeps the session cookie and sends our own Origin on POSTs.
struct Browser {
    web: SocketAddr,
    src: &'static str,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            web: app.web,
            src: "127.0.0.1",
            cookie: None,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.web)
    }

    async fn get(&self, path: &str) -> Resp {
        let cookie = self.cookie.as_ref().map(|c| format!("boxtrap_session={c}"));
        let mut h = Vec::new();
        if let Some(c) = &cookie {
            h.push(("Cookie", c.as_str()));
        }
        request_from(self.src, self.web, "GET", path, &h, "").await
    }

    /// A POST with extra headers (an Origin of our own unless given).
    async fn post_with(&self, path: &str, form: &str, extra: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie.as_ref().map(|c| format!("boxtrap_session={c}"));
        let origin = self.origin();
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("origin") || k.eq_ignore_ascii_case("referer"))
        {
            h.push(("Origin", origin.as_str()));
        }
        if let Some(c) = &cookie {
            h.push(("Cookie", c.as_str()));
        }
        request_from(self.src, self.web, "POST", path, &h, form).await
    }

    async fn post(&self, path: &str, form: &str) -> Resp {
        self.post_with(path, form, &[]).await
    }

    async fn login(&mut self, address: &str, password: &str) -> Resp {
        let r = self
            .post(
                "/login",
                &format!("address={}&password={}", enc(address), enc(password)),
            )
            .await;
        if let Some(c) = r.session_cookie() {
            self.cookie = Some(c);
        }
        r
    }

    /// Signs in (expecting success) and returns the quarantine page.
    async fn signed_in(app: &TestApp, address: &str, password: &str) -> (Browser, Resp) {
        let mut b = Browser::new(app);
        let r = b.login(address, password).await;
        assert_eq!(r.status, 303, "{r:?}");
        let page = b.get("/quarantine").await;
        assert_eq!(page.status, 200, "{page:?}");
        (b, page)
    }
}

/// Form-encodes a value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn set_password(app: &TestApp, mailbox: &str, pw: &str) {
    let h = boxtrap::password::hash(pw).unwrap();
    app.store
        .set_password_hash(&addr_of(mailbox), &h)
        .await
        .unwrap();
}

/// A POST that must be refused: path, form, extra headers.
type RefusedPost = (&'static str, String, Vec<(&'static str, &'static str)>);

/// A TestApp where alice and bob can sign in.
async fn app_with_owners(backend: Backend) -> TestApp {
    let app = TestApp::spawn_on(backend).await;
    set_password(&app, ALICE, ALICE_PW).await;
    set_password(&app, BOB, BOB_PW).await;
    app
}

async fn settings_of(app: &TestApp, mailbox: &str) -> MailboxSettings {
    app.store
        .mailbox_settings_by_address(mailbox)
        .await
        .unwrap()
}

/// A settings form with every field, `changes` replacing or (with `None`)
/// leaving out fields of a valid base.
fn settings_form(csrf: &str, changes: &[(&str, Option<&str>)]) -> String {
    let mut fields: Vec<(&str, Option<&str>)> = vec![
        ("challenge", Some("on")),
        ("display_name", Some("Alice Example")),
        ("keep_days", Some("15")),
        ("spam_bypass_below", Some("-2.5")),
        ("spam_no_challenge_at", Some("5.0")),
        ("whitelist_by_association", None),
        ("auto_whitelist_sent", None),
        ("notify_released", Some("on")),
        ("notify_blocked", None),
        ("digest", Some("daily")),
        ("time_zone", Some("UTC")),
    ];
    for (k, v) in changes {
        match fields.iter_mut().find(|(n, _)| n == k) {
            Some(f) => f.1 = *v,
            None => fields.push((k, *v)),
        }
    }
    let mut form = format!("csrf={csrf}");
    for (k, v) in fields {
        if let Some(v) = v {
            form.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    form
}

/// The value of the text input `name` on a page.
fn input_value(body: &str, name: &str) -> String {
    let at = body
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no input {name} in {body}"));
    let rest = &body[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Whether the checkbox `name` is ticked on a page.
fn ticked(body: &str, name: &str) -> bool {
    let at = body
        .find(&format!("name=\"{name}\" value=\"on\""))
        .unwrap_or_else(|| panic!("no checkbox {name} in {body}"));
    let tag = &body[at..at + body[at..].find('>').unwrap()];
    tag.contains(" checked")
}

on_both_backends!(each_setting_is_changed_and_shown, |backend| async move {
    let app = app_with_owners(backend).await;
    let (b, _) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
    let page = b.get("/settings").await;
    assert_eq!(page.status, 200, "{page:?}");
    // The defaults, and an explanation for each setting.
    assert!(!ticked(&page.body, "challenge"));
    assert_eq!(input_value(&page.body, "keep_days"), "15");
    assert_eq!(input_value(&page.body, "spam_bypass_below"), "-2.5");
    assert_eq!(input_value(&page.body, "spam_no_challenge_at"), "5.0");
    assert_eq!(input_value(&page.body, "time_zone"), "UTC");
    assert!(page.body.contains("<option value=\"daily\" selected>"));
    assert_eq!(page.body.matches("class=\"muted hint\"").count(), 11);
    assert!(page.body.contains("Europe/Berlin"), "time zones offered");

    let csrf = page.csrf();
    let form = settings_form(
        &csrf,
        &[
            ("display_name", Some("  Alice Q. Example ")),
            ("keep_days", Some("30")),
            ("spam_bypass_below", Some("-1.5")),
            ("spam_no_challenge_at", Some("7")),
            ("whitelist_by_association", Some("on")),
            ("auto_whitelist_sent", Some("on")),
            ("notify_released", None),
            ("notify_blocked", Some("on")),
            ("digest", Some("weekly")),
            ("time_zone", Some("europe/berlin")),
        ],
    );
    let r = b.post("/settings", &form).await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/settings?done=saved"));
    let s = settings_of(&app, ALICE).await;
    assert!(s.challenge_enabled);
    assert_eq!(s.display_name, "Alice Q. Example");
    assert_eq!(s.keep_days, 30);
    assert_eq!(s.spam_bypass_below, Some(-15));
    assert_eq!(s.spam_no_challenge_at, Some(70));
    assert!(s.whitelist_by_association && s.auto_whitelist_sent && s.notify_blocked);
    assert!(!s.notify_released);
    assert_eq!(s.digest, DigestFrequency::Weekly);
    assert_eq!(s.time_zone, "Europe/Berlin");
    let digest = app.store.digest_state(s.id).await.unwrap().unwrap();
    assert_eq!(
        digest.digest,
        DigestFrequency::Weekly,
        "the digest reads it"
    );

    let page = b.get("/settings?done=saved").await;
    assert!(page.body.contains("Your settings were saved."));
    assert!(ticked(&page.body, "challenge"));
    assert_eq!(input_value(&page.body, "display_name"), "Alice Q. Example");
    assert_eq!(input_value(&page.body, "keep_days"), "30");
    assert_eq!(input_value(&page.body, "spam_bypass_below"), "-1.5");
    assert_eq!(input_value(&page.body, "spam_no_challenge_at"), "7.0");
    assert!(ticked(&page.body, "whitelist_by_association"));
    assert!(ticked(&page.body, "auto_whitelist_sent"));
    assert!(!ticked(&page.body, "notify_released"));
    assert!(ticked(&page.body, "notify_blocked"));
    assert!(page.body.contains("<option value=\"weekly\" selected>"));
    assert_eq!(input_value(&page.body, "time_zone"), "Europe/Berlin");
    // The clock is at T0, 2026-11-27 14:05:53 UTC: shown in Berlin time.
    assert!(
        page.body.contains("2026-11-27 15:05:53 CET"),
        "{}",
        page.body
    );

    // Every switch off, the bands off.
    let form = settings_form(
        &csrf,
        &[
            ("challenge", None),
            ("notify_released", None),
            ("spam_bypass_below", Some("off")),
            ("spam_no_challenge_at", Some("OFF")),
            ("digest", Some("never")),
        ],
    );
    assert_eq!(b.post("/settings", &form).await.status, 303);
    let s = settings_of(&app, ALICE).await;
    assert!(!s.challenge_enabled && !s.notify_released && !s.notify_blocked);
    assert_eq!((s.spam_bypass_below, s.spam_no_challenge_at), (None, None));
    assert_eq!(s.digest, DigestFrequency::Never);
    let page = b.get("/settings").await;
    assert_eq!(input_value(&page.body, "spam_bypass_below"), "off");
    // Bob's settings are his own.
    let bob = settings_of(&app, BOB).await;
    assert_eq!((bob.keep_days, bob.time_zone.as_str()), (15, "UTC"));
});

on_both_backends!(
    every_bad_value_is_refused_by_name_and_nothing_changes,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let before = settings_of(&app, ALICE).await;
        let long = "n".repeat(101);
        for (field, bad, label) in [
            ("keep_days", "0", "Keep held mail for (days)"),
            ("keep_days", "366", "Keep held mail for (days)"),
            ("keep_days", "ten", "Keep held mail for (days)"),
            ("keep_days", "", "Keep held mail for (days)"),
            (
                "spam_bypass_below",
                "5.25",
                "Deliver directly below spam score",
            ),
            (
                "spam_bypass_below",
                "-2,5",
                "Deliver directly below spam score",
            ),
            (
                "spam_no_challenge_at",
                "1e3",
                "Hold silently from spam score",
            ),
            (
                "spam_no_challenge_at",
                "100.1",
                "Hold silently from spam score",
            ),
            ("display_name", "Alice\u{7}Bell", "Display name"),
            ("display_name", long.as_str(), "Display name"),
            ("challenge", "maybe", "Challenge-response"),
            ("notify_blocked", "2", "Tell blocked senders"),
            ("digest", "monthly", "Digest of held mail"),
            ("time_zone", "Mars/Olympus", "Time zone"),
            ("time_zone", "<script>alert(1)</script>", "Time zone"),
        ] {
            // Everything else changed too: none of it may be saved.
            let form = settings_form(
                &csrf,
                &[
                    ("keep_days", Some("40")),
                    ("display_name", Some("Changed")),
                    ("digest", Some("hourly")),
                    (field, Some(bad)),
                ],
            );
            let r = b.post("/settings", &form).await;
            assert_eq!(r.status, 400, "{field}={bad:?}: {r:?}");
            assert!(r.body.contains("Nothing was saved"), "{}", r.body);
            assert!(
                r.body
                    .contains(&format!("class=\"field-error\" id=\"e-{field}\">{label}: ")),
                "{field}={bad:?}: {}",
                r.body
            );
            assert_eq!(
                r.body.matches("class=\"field-error\"").count(),
                1,
                "{field}"
            );
            assert!(!r.body.contains("<script>alert"), "escaped");
            // What was typed is kept, the other fields too.
            if field != "challenge" && field != "notify_blocked" && field != "digest" {
                let shown = input_value(&r.body, field);
                let typed = bad
                    .replace('&', "&#38;")
                    .replace('<', "&#60;")
                    .replace('>', "&#62;");
                assert!(shown == typed || shown == bad, "{field}: {shown:?}");
            }
            if field != "display_name" {
                assert_eq!(input_value(&r.body, "display_name"), "Changed");
            }
            assert_eq!(settings_of(&app, ALICE).await, before, "{field}={bad:?}");
        }
        // Two bad values: both named.
        let form = settings_form(
            &csrf,
            &[("keep_days", Some("0")), ("time_zone", Some("Nowhere"))],
        );
        let r = b.post("/settings", &form).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body.matches("class=\"field-error\"").count(), 2);
        assert_eq!(settings_of(&app, ALICE).await, before);
    }
);

on_both_backends!(
    posts_without_the_csrf_token_or_from_another_origin_are_refused,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let before = settings_of(&app, ALICE).await;
        let good = settings_form(&csrf, &[("keep_days", Some("40"))]);
        let text = enc("Subject: Mine\n\nMine {{ link }}\n");
        let cases: Vec<RefusedPost> = vec![
            (
                "/settings",
                settings_form("", &[("keep_days", Some("40"))]),
                vec![],
            ),
            (
                "/settings",
                settings_form(&"0".repeat(64), &[("keep_days", Some("40"))]),
                vec![],
            ),
            (
                "/settings",
                good.clone(),
                vec![("Origin", "http://evil.example")],
            ),
            (
                "/templates/verify",
                format!("csrf=&action=save&text={text}"),
                vec![],
            ),
            (
                "/templates/verify",
                format!("csrf={csrf}&action=save&text={text}"),
                vec![("Origin", "http://evil.example")],
            ),
            (
                "/templates/verify",
                format!("csrf={csrf}&action=test&text={text}"),
                vec![("Origin", "null")],
            ),
        ];
        for (path, form, extra) in cases {
            let r = b.post_with(path, &form, &extra).await;
            assert_eq!(r.status, 403, "{path} {form} {extra:?}: {r:?}");
            assert!(r.body.contains("nothing was changed"), "{}", r.body);
        }
        assert_eq!(settings_of(&app, ALICE).await, before);
        let id = before.id;
        assert_eq!(
            app.store.template_override(id, "verify").await.unwrap(),
            None
        );
        assert!(app.messages(ALICE).is_empty(), "no test was sent");
        // A saved text, then a refused reset keeps it.
        let r = b
            .post(
                "/templates/verify",
                &format!("csrf={csrf}&action=save&text={text}"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let r = b
            .post_with(
                "/templates/verify/reset",
                &format!("csrf={csrf}"),
                &[("Origin", "http://evil.example")],
            )
            .await;
        assert_eq!(r.status, 403);
        let r = b.post("/templates/verify/reset", "csrf=").await;
        assert_eq!(r.status, 403);
        assert!(
            app.store
                .template_override(id, "verify")
                .await
                .unwrap()
                .is_some()
        );
        // Signed out: to the sign-in page, nothing changed.
        let anon = Browser::new(&app);
        let r = anon.post("/settings", &good).await;
        assert_eq!(r.status, 303);
        assert!(r.header("location").unwrap().starts_with("/login?next="));
        assert_eq!(anon.get("/templates").await.status, 303);
        assert_eq!(settings_of(&app, ALICE).await, before);
    }
);

on_both_backends!(
    a_hostile_display_name_is_escaped_on_every_page,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let hostile = "<script>alert(1)</script>\"><img src=x>";
        let r = b
            .post(
                "/settings",
                &settings_form(&csrf, &[("display_name", Some(hostile))]),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(settings_of(&app, ALICE).await.display_name, hostile);
        let page = b.get("/settings").await;
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img src=x>"));
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{}",
            page.body
        );
        // The preview fills it in as mailbox_name: escaped there too.
        let text = enc("Subject: Hi\n\nFrom {{ mailbox_name }}: {{ link }}\n");
        let r = b
            .post(
                "/templates/verify",
                &format!("csrf={csrf}&action=preview&text={text}"),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body
                .contains("From &#60;script&#62;alert(1)&#60;/script&#62;"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("<script>alert"));
    }
);

// ---- /templates -------------------------------------------------------------

/// Posts the verify editor's form with `text` and the button `action`.
async fn post_text(b: &Browser, csrf: &str, name: &str, action: &str, text: &str) -> Resp {
    b.post(
        &format!("/templates/{name}"),
        &format!("csrf={csrf}&action={action}&text={}", enc(text)),
    )
    .await
}

on_both_backends!(
    a_bad_template_is_refused_naming_the_problem_and_kept,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let id = app.mailbox_id(ALICE).await;
        for (action, text, named) in [
            (
                "save",
                "Subject: Hi\n\nHello {{ link }}\nBye {{ nope }}\n",
                "line 4: unknown variable &#34;nope&#34;",
            ),
            (
                "save",
                "Subject: Hi\n\nNo link here.\n",
                "must show {{ link }} or {{ token }}",
            ),
            (
                "save",
                "Hello\n\n{{ link }}\n",
                "must start with a &#34;Subject: ...&#34; line",
            ),
            (
                "save",
                "Subject: Hi\n\n{{ link }}\n{% for x in [1] %}x{% endfor %}\n",
                "line 4: {% for %} is not allowed",
            ),
            (
                "save",
                "Subject: Hi\n\n{{ link }}\n{{ sender * 3 }}\n",
                "line 4: the * operator is not allowed",
            ),
            (
                "save",
                "Subject: Hi\n\n{{ link }}\n{% if sender %}\n",
                "syntax error",
            ),
            (
                "preview",
                "Subject: Hi\n\nHello {{ link }} {{ nope }}\n",
                "unknown variable &#34;nope&#34;",
            ),
            (
                "test",
                "Subject: Hi\n\nHello {{ nope }}\n",
                "unknown variable &#34;nope&#34;",
            ),
        ] {
            let r = post_text(&b, &csrf, "verify", action, text).await;
            assert_eq!(r.status, 400, "{action} {text:?}: {r:?}");
            assert!(r.body.contains(named), "{named}: {}", r.body);
            assert!(r.body.contains("The verify text was not saved"));
            // What was typed stays in the editor (escaped).
            let kept = text
                .replace('&', "&#38;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;")
                .replace('<', "&#60;")
                .replace('>', "&#62;");
            assert!(
                r.body.contains(&format!(">{kept}</textarea>")),
                "{}",
                r.body
            );
            assert_eq!(
                app.store.template_override(id, "verify").await.unwrap(),
                None
            );
        }
        // The line it points at is quoted.
        let r = post_text(
            &b,
            &csrf,
            "verify",
            "save",
            "Subject: Hi\n\n{{ link }}\nBye {{ nope }}\n",
        )
        .await;
        assert!(
            r.body.contains("<pre>4 | Bye {{ nope }}</pre>"),
            "{}",
            r.body
        );
        // Too large.
        let big = format!("Subject: Hi\n\n{{{{ link }}}}\n{}\n", "x".repeat(17 * 1024));
        let r = post_text(&b, &csrf, "verify", "save", &big).await;
        assert_eq!(r.status, 400);
        assert!(
            r.body.contains("the limit is 16384"),
            "{}",
            &r.body[..2000.min(r.body.len())]
        );
        // Too large once rendered.
        let grows = format!("Subject: Hi\n\n{}", "{{ link }}{{ link }}\n".repeat(700));
        let r = post_text(&b, &csrf, "verify", "save", &grows).await;
        assert_eq!(r.status, 400);
        assert!(
            r.body.contains("the rendered text is"),
            "rendered-size limit"
        );
        assert!(app.messages(ALICE).is_empty());
        // An unknown template: 404.
        assert_eq!(b.get("/templates/nosuch").await.status, 404);
        let r = post_text(&b, &csrf, "nosuch", "save", "Subject: x\n\nx\n").await;
        assert_eq!(r.status, 404);
    }
);

on_both_backends!(
    the_preview_renders_the_sample_with_hostile_input_escaped,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let text = "Subject: About {{ subject }}\n\n<script>alert(1)</script> Dear {{ sender }},\nconfirm: {{ link }}\nKept {{ keep_days }} days for {{ mailbox }}.\n";
        let r = post_text(&b, &csrf, "verify", "preview", text).await;
        assert_eq!(r.status, 200, "{r:?}");
        let preview_at = r.body.find("<pre class=\"preview\"").expect("a preview");
        let preview = &r.body[preview_at..];
        let preview = &preview[..preview.find("</pre>").unwrap()];
        assert!(
            preview.contains("Subject: About Lunch on Friday?"),
            "{preview}"
        );
        assert!(
            preview.contains("&#60;script&#62;alert(1)&#60;/script&#62; Dear bob@example.net,"),
            "{preview}"
        );
        assert!(preview.contains("/verify/"), "{preview}");
        assert!(
            preview.contains("Kept 15 days for alice@example.test."),
            "{preview}"
        );
        assert!(!r.body.contains("<script>"), "nothing unescaped");
        // The diff against the default shows the typed text.
        assert!(
            r.body
                .contains("<span class=\"add\">+ confirm: {{ link }}</span>"),
            "{}",
            r.body
        );
        // A preview saves nothing.
        let id = app.mailbox_id(ALICE).await;
        assert_eq!(
            app.store.template_override(id, "verify").await.unwrap(),
            None
        );
        // The default text previews too.
        let r = post_text(
            &b,
            &csrf,
            "blacklist",
            "preview",
            boxtrap::challenge::templates::default_text(
                boxtrap::challenge::templates::TemplateName::Blacklist,
            ),
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("None: this is the default text."));
    }
);

on_both_backends!(
    a_saved_text_shows_its_diff_and_the_default_can_be_restored,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let id = app.mailbox_id(ALICE).await;
        let list = b.get("/templates").await;
        assert_eq!(list.status, 200);
        for name in ["verify", "verifyreleased", "returnverify", "blacklist"] {
            assert!(
                list.body.contains(&format!("href=\"/templates/{name}\"")),
                "{name}"
            );
        }
        assert_eq!(list.body.matches("The default text.").count(), 4);
        let page = b.get("/templates/verifyreleased").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("None: this is the default text."));
        assert!(!page.body.contains("Restore the default text"));
        let default = boxtrap::challenge::templates::default_text(
            boxtrap::challenge::templates::TemplateName::VerifyReleased,
        );
        // The browser sends CRLF line ends.
        let mine = format!("{default}Alice's own line.\n").replace('\n', "\r\n");
        let r = post_text(&b, &csrf, "verifyreleased", "save", &mine).await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(
            r.header("location"),
            Some("/templates/verifyreleased?done=saved")
        );
        let saved = app
            .store
            .template_override(id, "verifyreleased")
            .await
            .unwrap();
        assert_eq!(
            saved.as_deref(),
            Some(format!("{default}Alice's own line.\n").as_str())
        );
        let page = b.get("/templates/verifyreleased?done=saved").await;
        assert!(page.body.contains("Your text was saved"));
        assert!(page.body.contains("You use your own text."));
        assert!(
            page.body
                .contains("<span class=\"add\">+ Alice&#39;s own line.</span>"),
            "{}",
            page.body
        );
        assert!(page.body.contains("Alice&#39;s own line.\n</textarea>"));
        assert_eq!(
            b.get("/templates")
                .await
                .body
                .matches("Your own text.")
                .count(),
            1
        );
        // Bob still has the default.
        let (bob, _) = Browser::signed_in(&app, BOB, BOB_PW).await;
        let theirs = bob.get("/templates/verifyreleased").await;
        assert!(theirs.body.contains("You use the default text."));
        assert!(!theirs.body.contains("Alice&#39;s own line."));
        // Restore the default.
        let r = b
            .post("/templates/verifyreleased/reset", &format!("csrf={csrf}"))
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(
            r.header("location"),
            Some("/templates/verifyreleased?done=reset")
        );
        assert_eq!(
            app.store
                .template_override(id, "verifyreleased")
                .await
                .unwrap(),
            None
        );
        let page = b.get("/templates/verifyreleased?done=reset").await;
        assert!(page.body.contains("The default text applies again."));
        assert!(page.body.contains("None: this is the default text."));
        // Saving the default text itself keeps no override.
        let r = post_text(&b, &csrf, "verifyreleased", "save", default).await;
        assert_eq!(
            r.header("location"),
            Some("/templates/verifyreleased?done=default")
        );
        assert_eq!(
            app.store
                .template_override(id, "verifyreleased")
                .await
                .unwrap(),
            None
        );
    }
);

on_both_backends!(
    a_test_lands_in_the_owners_maildir_and_saves_nothing,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let text = "Subject: Please confirm: {{ subject }}\n\nHello {{ sender }}, Alice's test text.\n{{ link }}\n";
        let r = post_text(&b, &csrf, "verify", "test", text).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body
                .contains("A test of this text was delivered to your mailbox, alice@example.test."),
            "{}",
            r.body
        );
        assert!(r.body.contains("<pre class=\"preview\""), "shown as well");
        let mail = app.messages(ALICE);
        assert_eq!(mail.len(), 1, "one test mail");
        // Stored with LF line ends, as Maildir readers expect.
        let m = String::from_utf8_lossy(&mail[0].1).replace("\r\n", "\n");
        let head = &m[..m.find("\n\n").unwrap()];
        assert!(
            head.contains("\nAuto-Submitted: auto-generated\n"),
            "{head}"
        );
        assert!(!head.contains("auto-replied"), "{head}");
        assert!(
            head.contains("Subject: [Test of your verify text] Please confirm: Lunch on Friday?"),
            "{head}"
        );
        assert!(head.contains("To: alice@example.test"), "{head}");
        assert!(m.contains("Alice's test text."), "{m}");
        assert!(app.messages(BOB).is_empty());
        let id = app.mailbox_id(ALICE).await;
        assert_eq!(
            app.store.template_override(id, "verify").await.unwrap(),
            None
        );
        assert!(
            app.outbound.run_once().await.unwrap() == 0,
            "nothing queued outbound"
        );
    }
);

on_both_backends!(
    a_challenge_sent_after_saving_uses_the_owners_text,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        // Challenge-response on, from the settings page.
        let r = b.post("/settings", &settings_form(&csrf, &[])).await;
        assert_eq!(r.status, 303);
        let text = "Subject: Alice asks: {{ subject }} [verify#{{ token }}]\n\nHi {{ sender }}, Alice wrote this herself.\nConfirm: {{ link }}\n";
        assert_eq!(
            post_text(&b, &csrf, "verify", "save", text).await.status,
            303
        );
        let mail = "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: Tea\r\nMessage-ID: <tea1@example.org>\r\n\r\nTea at four?\r\n";
        app.send("carol@example.org", &[ALICE], mail).await;
        app.outbound.run_once().await.unwrap();
        let c = app.challenges_to("carol@example.org");
        assert_eq!(c.len(), 1, "one challenge");
        let m = &c[0].mail;
        assert!(m.text.contains("Alice wrote this herself."), "{}", m.text);
        assert_eq!(
            m.header("Subject")
                .map(|s| s.starts_with("Alice asks: Tea")),
            Some(true),
            "{:?}",
            m.header("Subject")
        );
        assert!(c[0].link.contains("/verify/"));
    }
);

// ---- the JSON API -------------------------------------------------------------

impl Browser {
    /// A JSON API call with the session cookie and `extra` headers.
    async fn api(&self, method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie.as_ref().map(|c| format!("boxtrap_session={c}"));
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if !body.is_empty() {
            h.push(("Content-Type", "application/json"));
        }
        if let Some(c) = &cookie {
            h.push(("Cookie", c.as_str()));
        }
        request_from(self.src, self.web, method, path, &h, body).await
    }
}

fn json_of(r: &Resp) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

on_both_backends!(
    the_settings_api_reads_and_patches_all_or_nothing,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let token = [("X-CSRF-Token", csrf.as_str())];
        let r = b.api("GET", "/api/v1/settings", "", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        let v = json_of(&r);
        assert_eq!(v["address"], ALICE);
        assert_eq!(v["challenge"], false);
        assert_eq!(v["keep_days"], 15);
        assert_eq!(v["spam_bypass_below"], -2.5);
        assert_eq!(v["spam_no_challenge_at"], 5.0);
        assert_eq!(v["digest"], "daily");
        assert_eq!(v["time_zone"], "UTC");

        let patch = r#"{"challenge": true, "keep_days": 30, "spam_bypass_below": -1.5,
            "spam_no_challenge_at": null, "digest": "hourly", "time_zone": "asia/tokyo",
            "notify_blocked": true}"#;
        let r = b.api("PATCH", "/api/v1/settings", patch, &token).await;
        assert_eq!(r.status, 200, "{r:?}");
        let v = json_of(&r);
        assert_eq!(v["keep_days"], 30);
        assert_eq!(v["spam_bypass_below"], -1.5);
        assert_eq!(v["spam_no_challenge_at"], serde_json::Value::Null);
        assert_eq!(v["time_zone"], "Asia/Tokyo");
        let s = settings_of(&app, ALICE).await;
        assert!(s.challenge_enabled && s.notify_blocked);
        assert_eq!(
            (s.keep_days, s.spam_bypass_below, s.spam_no_challenge_at),
            (30, Some(-15), None)
        );
        assert_eq!(s.digest, DigestFrequency::Hourly);
        assert!(s.notify_released, "fields left out stay as they were");
        let before = s;

        // Bad values: each named, nothing changed (not even the good ones).
        for (body, named) in [
            (r#"{"keep_days": 0, "display_name": "New"}"#, "keep_days"),
            (r#"{"keep_days": 2.5}"#, "keep_days"),
            (r#"{"spam_bypass_below": 2.25}"#, "spam_bypass_below"),
            (
                r#"{"spam_no_challenge_at": "high"}"#,
                "spam_no_challenge_at",
            ),
            (r#"{"challenge": "yes"}"#, "challenge"),
            (r#"{"digest": "monthly"}"#, "digest"),
            (
                r#"{"time_zone": "Mars/Olympus", "keep_days": 20}"#,
                "time_zone",
            ),
            (r#"{"display_name": null}"#, "display_name"),
            (r#"{"nosuch": 1, "keep_days": 20}"#, "nosuch"),
        ] {
            let r = b.api("PATCH", "/api/v1/settings", body, &token).await;
            assert_eq!(r.status, 400, "{body}: {r:?}");
            let v = json_of(&r);
            assert!(v["error"].as_str().unwrap().contains(named), "{body}: {v}");
            assert!(v["fields"][named].is_string(), "{body}: {v}");
            assert_eq!(settings_of(&app, ALICE).await, before, "{body}");
        }
        let r = b
            .api("PATCH", "/api/v1/settings", "{not json", &token)
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        assert!(json_of(&r)["error"].is_string());

        // CSRF, Origin, no session: refused, nothing changed.
        let good = r#"{"keep_days": 20}"#;
        let r = b.api("PATCH", "/api/v1/settings", good, &[]).await;
        assert_eq!(r.status, 403, "{r:?}");
        let r = b
            .api(
                "PATCH",
                "/api/v1/settings",
                good,
                &[("X-CSRF-Token", &"0".repeat(64))],
            )
            .await;
        assert_eq!(r.status, 403, "{r:?}");
        let r = b
            .api(
                "PATCH",
                "/api/v1/settings",
                good,
                &[
                    ("X-CSRF-Token", csrf.as_str()),
                    ("Origin", "http://evil.example"),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "{r:?}");
        let anon = Browser::new(&app);
        assert_eq!(
            anon.api("GET", "/api/v1/settings", "", &[]).await.status,
            401
        );
        assert_eq!(
            anon.api("PATCH", "/api/v1/settings", good, &token)
                .await
                .status,
            401
        );
        assert_eq!(settings_of(&app, ALICE).await, before);
        // Bob sees his own.
        let (bob, _) = Browser::signed_in(&app, BOB, BOB_PW).await;
        let v = json_of(&bob.api("GET", "/api/v1/settings", "", &[]).await);
        assert_eq!(
            (v["address"].as_str(), v["keep_days"].as_i64()),
            (Some(BOB), Some(15))
        );
    }
);

on_both_backends!(
    the_templates_api_reads_checks_saves_and_restores,
    |backend| async move {
        let app = app_with_owners(backend).await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let token = [("X-CSRF-Token", csrf.as_str())];
        let id = app.mailbox_id(ALICE).await;
        let default = boxtrap::challenge::templates::default_text(
            boxtrap::challenge::templates::TemplateName::Verify,
        );
        let all = json_of(&b.api("GET", "/api/v1/templates", "", &[]).await);
        assert_eq!(all.as_array().map(Vec::len), Some(4), "{all}");
        let v = json_of(&b.api("GET", "/api/v1/templates/verify", "", &[]).await);
        assert_eq!(
            (v["name"].as_str(), v["own"].as_bool()),
            (Some("verify"), Some(false))
        );
        assert_eq!(v["text"].as_str(), Some(default));
        assert_eq!(v["default_text"].as_str(), Some(default));

        let bad =
            serde_json::json!({"text": "Subject: Hi\n\n{{ link }}\nBye {{ nope }}\n"}).to_string();
        let r = b.api("PUT", "/api/v1/templates/verify", &bad, &token).await;
        assert_eq!(r.status, 400, "{r:?}");
        let v = json_of(&r);
        assert_eq!(v["line"], 4, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("unknown variable \"nope\""),
            "{v}"
        );
        assert_eq!(
            app.store.template_override(id, "verify").await.unwrap(),
            None
        );
        for body in [r#"{"text": 5}"#, r#"{"txt": "x"}"#, "{}"] {
            let r = b.api("PUT", "/api/v1/templates/verify", body, &token).await;
            assert_eq!(r.status, 400, "{body}: {r:?}");
        }

        let mine = "Subject: Confirm [verify#{{ token }}]\n\nAlice's own: {{ link }}\n";
        let good = serde_json::json!({ "text": mine }).to_string();
        // Refused without the CSRF header or from elsewhere.
        assert_eq!(
            b.api("PUT", "/api/v1/templates/verify", &good, &[])
                .await
                .status,
            403
        );
        let r = b
            .api(
                "PUT",
                "/api/v1/templates/verify",
                &good,
                &[
                    ("X-CSRF-Token", csrf.as_str()),
                    ("Origin", "http://evil.example"),
                ],
            )
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(
            app.store.template_override(id, "verify").await.unwrap(),
            None
        );

        let r = b
            .api("PUT", "/api/v1/templates/verify", &good, &token)
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let v = json_of(&r);
        assert_eq!(
            (v["own"].as_bool(), v["text"].as_str()),
            (Some(true), Some(mine))
        );
        assert_eq!(
            app.store
                .template_override(id, "verify")
                .await
                .unwrap()
                .as_deref(),
            Some(mine)
        );
        let r = b
            .api(
                "PUT",
                "/api/v1/templates/verify",
                r#"{"text": null}"#,
                &token,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(json_of(&r)["own"], false);
        assert_eq!(
            app.store.template_override(id, "verify").await.unwrap(),
            None
        );
        let r = b.api("GET", "/api/v1/templates/nosuch", "", &[]).await;
        assert_eq!(r.status, 404);
        assert!(json_of(&r)["error"].is_string());
    }
);
