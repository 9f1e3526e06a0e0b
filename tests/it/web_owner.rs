//! The mailbox owner's web pages over real HTTP on the TestApp's web
//! listener: sign-in and its throttle, the session cookie, CSRF and
//! same-origin checks, two mailboxes that never see each other's mail,
//! escaping, and held mail delivered from the quarantine page.

use crate::http::*;
use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::Timestamp;
use boxtrap::store::held::{self, NewHeld};
use std::sync::atomic::{AtomicU32, Ordering};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ALICE_PW: &str = "alice correct horse";

/// A refused POST: its form, extra headers, and what the refusal names.
type RefusalCase = (String, Vec<(&'static str, &'static str)>, &'static str);

async fn app_with_alice(backend: Backend) -> TestApp {
    let app = TestApp::spawn_on(backend).await;
    set_password(&app, ALICE, ALICE_PW).await;
    app
}

/// Puts a message in `mailbox`'s quarantine as the SMTP hook would have;
/// returns its id.
async fn hold(app: &TestApp, mailbox: &str, sender: &str, name: &str, subject: &str) -> i64 {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let queue_id = format!("1wH3kL-{n:06}-3k");
    let data = format!(
        "From: {sender}\r\nTo: {mailbox}\r\nSubject: held {n}\r\nMessage-ID: <w{n}@example.org>\r\n\r\nBody {n}.\r\n"
    );
    let id = app.mailbox_id(mailbox).await;
    let mut tx = app.store.begin_write().await.unwrap();
    let hid = held::insert_held(
        &mut tx,
        &NewHeld {
            mailbox_id: id,
            queue_id: &queue_id,
            rcpt_index: 0,
            env_sender: sender,
            original_rcpt: mailbox,
            sender,
            sender_name: name,
            subject,
            message_id: &format!("<w{n}@example.org>"),
            date_header: "",
            arrived_at: Timestamp::from_secs(T0 - 600 + n as i64),
            reason: "rate-limited",
            reason_detail: "challenge rate limit reached (per sender); held without a challenge",
            challenge_id: None,
            data: data.as_bytes(),
            auth_results: "",
            spam_score: None,
            spam_report: "",
            attachments: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hid
}

async fn held_ids(app: &TestApp, mailbox: &str) -> Vec<i64> {
    let id = app.mailbox_id(mailbox).await;
    app.store
        .list_held(Some(id), None)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect()
}

fn assert_security_headers(r: &Resp) {
    let csp = r.header("content-security-policy").unwrap_or("");
    for part in [
        "default-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part}");
    }
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
}

on_both_backends!(
    sign_in_gives_a_fresh_session_and_sign_out_ends_it,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let mut b = Browser::new(&app);
        let page = b.get("/login").await;
        assert_eq!(page.status, 200);
        assert_security_headers(&page);
        assert!(
            page.body.contains("<label for=\"password\">"),
            "{}",
            page.body
        );

        // Not signed in: the quarantine sends to the sign-in page.
        let r = b.get("/quarantine?limit=50").await;
        assert_eq!(r.status, 303);
        assert_eq!(
            r.header("location"),
            Some("/login?next=/quarantine%3Flimit%3D50")
        );

        let wrong = b.login(ALICE, "not the password").await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.body.contains("Wrong mailbox address or password."));
        assert!(wrong.header("set-cookie").is_none());

        // A session id the visitor already had (set by an attacker, say)
        // is never the one sign-in gives.
        let planted = "ab".repeat(32);
        b.cookie = Some(planted.clone());
        let ok = b.login(ALICE, ALICE_PW).await;
        assert_eq!(ok.status, 303, "{ok:?}");
        assert_eq!(ok.header("location"), Some("/quarantine"));
        let cookie = ok.header("set-cookie").unwrap();
        for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain http: {cookie}");
        let first = b.cookie.clone().unwrap();
        assert_ne!(first, planted);
        assert_eq!(first.len(), 64);
        // The database keeps only a hash of it.
        let stored: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM web_sessions")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0], first);

        let page = b.get("/quarantine").await;
        assert_eq!(page.status, 200, "{page:?}");
        assert_security_headers(&page);
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert!(
            page.body
                .contains("Signed in as <strong>alice@example.test</strong>")
        );
        // The sign-in page sends a signed-in owner straight on.
        let r = b.get("/login?next=/quarantine%3Flimit%3D50").await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/quarantine?limit=50"));

        // Signing in again gives another id.
        let again = b.login(ALICE, ALICE_PW).await;
        assert_eq!(again.status, 303);
        let second = b.cookie.clone().unwrap();
        assert_ne!(second, first);

        let csrf = b.get("/quarantine").await.csrf();
        let out = b.post("/logout", &format!("csrf={csrf}")).await;
        assert_eq!(out.status, 303, "{out:?}");
        assert_eq!(out.header("location"), Some("/login?done=out"));
        assert_eq!(out.session_cookie().as_deref(), Some(""));
        let after = b.get("/quarantine").await;
        assert_eq!(after.status, 303, "the old cookie no longer works");
        assert!(
            b.get("/login?done=out")
                .await
                .body
                .contains("You are signed out.")
        );
    }
);

on_both_backends!(
    a_mailbox_without_a_password_and_an_unknown_one_answer_as_a_wrong_password,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let mut b = Browser::new(&app);
        let wrong = b.login(ALICE, "not the password").await;
        for (who, pw) in [
            (BOB, ""),
            (BOB, "anything at all"),
            ("nobody@example.test", "x"),
        ] {
            let r = b.login(who, pw).await;
            assert_eq!(r.status, wrong.status, "{who}");
            assert!(r.header("set-cookie").is_none());
            assert_eq!(
                r.body.replace(who, ALICE),
                wrong.body,
                "{who} tells more than a wrong password"
            );
        }
    }
);

on_both_backends!(
    sessions_end_when_idle_and_at_their_lifetime,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let (b, _) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        // 29 minutes idle: still signed in (defaults: 30m idle, 12h).
        app.clock.advance_secs(29 * 60);
        assert_eq!(b.get("/quarantine").await.status, 200);
        for _ in 0..24 {
            app.clock.advance_secs(29 * 60);
            if b.get("/quarantine").await.status != 200 {
                break;
            }
        }
        // 25 x 29 minutes > 12 hours: the lifetime ended it, however active.
        assert_eq!(b.get("/quarantine").await.status, 303);
        let (b, _) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        app.clock.advance_secs(31 * 60);
        assert_eq!(b.get("/quarantine").await.status, 303, "idle too long");
        // Expired sessions are purged at the next sign-in.
        let _ = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
);

on_both_backends!(
    sign_in_is_throttled_per_account_and_per_client_address,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let mut b = Browser::new(&app);
        b.src = "127.0.0.2";
        for _ in 0..5 {
            assert_eq!(b.login(ALICE, "guess").await.status, 401);
        }
        let r = b.login(ALICE, ALICE_PW).await;
        assert_eq!(r.status, 429, "even the right password waits");
        assert!(r.header("set-cookie").is_none());
        let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert!(r.body.contains("Too many failed sign-ins"));
        // The account is throttled from another address too.
        let mut c = Browser::new(&app);
        c.src = "127.0.0.3";
        assert_eq!(c.login(ALICE, ALICE_PW).await.status, 429);

        // One address trying many accounts is throttled for all of them.
        let mut d = Browser::new(&app);
        d.src = "127.0.0.4";
        for i in 0..5 {
            assert_eq!(
                d.login(&format!("u{i}@example.test"), "x").await.status,
                401
            );
        }
        set_password(&app, BOB, "bob correct horse").await;
        assert_eq!(d.login(BOB, "bob correct horse").await.status, 429);
        let mut e = Browser::new(&app);
        e.src = "127.0.0.5";
        assert_eq!(e.login(BOB, "bob correct horse").await.status, 303);

        // After the window, the right password works again.
        app.clock.advance_secs(wait);
        assert_eq!(c.login(ALICE, ALICE_PW).await.status, 303);
    }
);

on_both_backends!(
    guesses_sent_side_by_side_cannot_get_past_the_throttle,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let web = app.web;
        let origin = format!("http://{web}");
        let mut tasks = Vec::new();
        for i in 0..12 {
            let origin = origin.clone();
            tasks.push(tokio::spawn(async move {
                let form = format!("address={}&password=guess{i}", enc(ALICE));
                request_from(
                    "127.0.0.6",
                    web,
                    "POST",
                    "/login",
                    &[("Origin", origin.as_str())],
                    &form,
                )
                .await
                .status
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let checked = statuses.iter().filter(|s| **s == 401).count();
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert!(checked <= 5, "{statuses:?}");
        assert_eq!(checked + refused, 12, "{statuses:?}");
    }
);

on_both_backends!(
    after_sign_in_only_our_own_paths_are_followed,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let b = Browser::new(&app);
        for (next, to) in [
            ("//evil.example/x", "/quarantine"),
            ("/\\evil.example", "/quarantine"),
            ("https://evil.example/", "/quarantine"),
            ("javascript:alert(1)", "/quarantine"),
            ("/quarantine?limit=50", "/quarantine?limit=50"),
        ] {
            let r = b
                .post(
                    "/login",
                    &format!(
                        "address={}&password={}&next={}",
                        enc(ALICE),
                        enc(ALICE_PW),
                        enc(next)
                    ),
                )
                .await;
            assert_eq!(r.status, 303);
            assert_eq!(r.header("location"), Some(to), "next={next}");
        }
        // The sign-in page never puts a foreign target in its form.
        let page = b.get("/login?next=//evil.example").await;
        assert!(!page.body.contains("evil.example"), "{}", page.body);
    }
);

on_both_backends!(
    state_changes_need_the_csrf_token_and_our_origin,
    |backend| async move {
        let app = app_with_alice(backend).await;
        let id = hold(&app, ALICE, "carol@example.org", "Carol", "Hello").await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = page.csrf();
        let path = format!("/quarantine/{id}/deliver");
        let cases: Vec<RefusalCase> = vec![
            (String::new(), vec![], "no security token"),
            (
                format!("csrf={}", "0".repeat(64)),
                vec![],
                "not this session",
            ),
            (
                format!("csrf={csrf}"),
                vec![("Origin", "https://evil.example")],
                "Origin",
            ),
            (format!("csrf={csrf}"), vec![("Origin", "null")], "Origin"),
            (
                format!("csrf={csrf}"),
                vec![("Referer", "https://evil.example/quarantine")],
                "Referer",
            ),
        ];
        for (form, headers, why) in &cases {
            let r = b.post_with(&path, form, headers).await;
            assert_eq!(r.status, 403, "{form} {headers:?}: {r:?}");
            assert!(r.body.contains(why), "{why}: {}", r.body);
            assert!(r.body.contains("nothing was changed"));
        }
        // No Origin and no Referer at all.
        let cookie = format!("boxtrap_session={}", b.cookie.as_ref().unwrap());
        let r = request_from(
            "127.0.0.1",
            app.web,
            "POST",
            &path,
            &[("Cookie", cookie.as_str())],
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(r.status, 403);
        assert!(r.body.contains("no Origin"), "{}", r.body);
        // A GET changes nothing either.
        let r = b.get(&path).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("POST"));
        assert_security_headers(&r);
        // Logout and sign-in are checked too.
        assert_eq!(b.post("/logout", "csrf=x").await.status, 403);
        let r = b
            .post_with(
                "/login",
                &format!("address={}&password={}", enc(ALICE), enc(ALICE_PW)),
                &[("Origin", "https://evil.example")],
            )
            .await;
        assert_eq!(r.status, 403);
        assert!(r.header("set-cookie").is_none());
        assert_eq!(held_ids(&app, ALICE).await, vec![id], "nothing changed");
        assert!(app.messages(ALICE).is_empty());
        // With our Referer instead of an Origin it works.
        let referer = format!("http://{}/quarantine", app.web);
        let r = b
            .post_with(&path, &format!("csrf={csrf}"), &[("Referer", &referer)])
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert!(held_ids(&app, ALICE).await.is_empty());
        assert_eq!(app.messages(ALICE).len(), 1);
    }
);

on_both_backends!(
    alice_never_sees_or_acts_on_bobs_held_mail,
    |backend| async move {
        let app = app_with_alice(backend).await;
        set_password(&app, BOB, "bob correct horse").await;
        let mine = hold(&app, ALICE, "carol@example.org", "Carol", "For Alice").await;
        let bobs = hold(&app, BOB, "dave@example.org", "Dave", "Bob's secret").await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        assert!(page.body.contains("For Alice"));
        assert!(!page.body.contains("secret"), "{}", page.body);
        assert!(!page.body.contains("dave@"), "{}", page.body);
        let csrf = page.csrf();
        for action in ["deliver", "allow", "delete"] {
            let r = b
                .post(
                    &format!("/quarantine/{bobs}/{action}"),
                    &format!("csrf={csrf}"),
                )
                .await;
            assert_eq!(r.status, 404, "{action}: {r:?}");
            assert!(!r.body.contains("secret"));
        }
        for path in [
            format!("/quarantine/{}/deliver", bobs + 1000),
            format!("/quarantine/x{bobs}/deliver"),
            format!("/quarantine/{mine}/release"),
        ] {
            let r = b.post(&path, &format!("csrf={csrf}")).await;
            assert_eq!(r.status, 404, "{path}");
        }
        assert_eq!(held_ids(&app, BOB).await, vec![bobs]);
        assert!(app.messages(BOB).is_empty());
        assert!(app.allow_list(BOB).await.is_empty());
        assert!(app.allow_list(ALICE).await.is_empty());
        assert_eq!(held_ids(&app, ALICE).await, vec![mine]);
        // Bob's own session sees his, not Alice's.
        let (_, page) = Browser::signed_in(&app, BOB, "bob correct horse").await;
        assert!(
            page.body.contains("Bob&#39;s secret") || page.body.contains("Bob&#x27;s secret"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("For Alice"));
    }
);

on_both_backends!(fields_from_mail_are_shown_escaped, |backend| async move {
    let app = app_with_alice(backend).await;
    hold(
        &app,
        ALICE,
        "x\"><script>alert(2)</script>@example.org",
        "\"><img src=x onerror=alert(1)>\u{1b}[31m",
        "<script>alert(1)</script>\u{7}\u{202e}gpj.exe",
    )
    .await;
    let (_, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
    let body = &page.body;
    assert!(!body.contains("<script>"), "{body}");
    assert!(!body.contains("<img"), "{body}");
    // askama escapes < > " as numeric references.
    let esc = |t: &str| {
        t.replace('&', "&#38;")
            .replace('<', "&#60;")
            .replace('>', "&#62;")
            .replace('"', "&#34;")
    };
    assert!(body.contains(&esc("<script>alert(1)</script>")), "{body}");
    assert!(
        body.contains(&esc("\"><img src=x onerror=alert(1)>")),
        "{body}"
    );
    assert!(
        body.contains(&esc("x\"><script>alert(2)</script>@example.org")),
        "{body}"
    );
    // Control characters are shown as symbols, bidi overrides replaced.
    assert!(
        body.contains('\u{2407}') && body.contains('\u{241b}'),
        "{body}"
    );
    assert!(!body.contains('\u{1b}') && !body.contains('\u{202e}'));
});

on_both_backends!(
    mail_held_over_smtp_is_listed_and_delivered_from_the_page,
    |backend| async move {
        let app = app_with_alice(backend).await;
        app.challenge_on(ALICE).await;
        let mail = |subject: &str, n: u32| {
            format!(
                "From: Carol Example <carol@example.org>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\
                 Message-ID: <c{n}@example.org>\r\nDate: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHi.\r\n"
            )
        };
        app.send("bounces+x@lists.example.org", &[ALICE], &mail("Lunch?", 1))
            .await;
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let body = &page.body;
        assert!(body.contains("Lunch?"), "{body}");
        assert!(
            body.contains("Carol Example &lt;carol@example.org&gt;"),
            "{body}"
        );
        assert!(
            body.contains("bounces+x@lists.example.org"),
            "the envelope sender differs: {body}"
        );
        assert!(body.contains("Today, "), "{body}");
        assert!(body.contains("Expires"), "{body}");
        let id = held_ids(&app, ALICE).await[0];
        let r = b
            .post(
                &format!("/quarantine/{id}/deliver"),
                &format!("csrf={}", page.csrf()),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let to = r.header("location").unwrap().to_owned();
        assert_eq!(to, "/quarantine?done=delivered.1");
        let page = b.get(&to).await;
        assert!(
            page.body
                .contains("<div role=\"status\" class=\"status\">1 delivered.</div>"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("Lunch?"));
        let delivered = app.messages(ALICE);
        assert_eq!(delivered.len(), 1);
        assert!(String::from_utf8_lossy(&delivered[0].1).contains("Subject: Lunch?"));
        assert!(
            app.allow_list(ALICE).await.is_empty(),
            "deliver does not allow"
        );

        // Two more from Carol: allow her and deliver both.
        app.send("carol@example.org", &[ALICE], &mail("Again", 2))
            .await;
        app.send("carol@example.org", &[ALICE], &mail("And again", 3))
            .await;
        let page = b.get("/quarantine").await;
        assert!(page.body.contains("Again") && page.body.contains("And again"));
        let id = held_ids(&app, ALICE).await[0];
        let r = b
            .post(
                &format!("/quarantine/{id}/allow"),
                &format!("csrf={}", page.csrf()),
            )
            .await;
        let page = b.get(r.header("location").unwrap()).await;
        assert!(
            page.body.contains("2 delivered, sender allowed."),
            "{}",
            page.body
        );
        assert_eq!(app.messages(ALICE).len(), 3);
        assert_eq!(
            app.allow_list(ALICE).await,
            vec!["from ^carol@example\\.org$"]
        );

        // Delete.
        let gone = hold(&app, ALICE, "eve@example.org", "Eve", "Spam").await;
        let page = b.get("/quarantine").await;
        let r = b
            .post(
                &format!("/quarantine/{gone}/delete"),
                &format!("csrf={}", page.csrf()),
            )
            .await;
        let page = b.get(r.header("location").unwrap()).await;
        assert!(page.body.contains("1 deleted."), "{}", page.body);
        assert!(held_ids(&app, ALICE).await.is_empty());
        assert_eq!(app.messages(ALICE).len(), 3);
        // A second click finds nothing to do.
        let r = b
            .post(
                &format!("/quarantine/{gone}/delete"),
                &format!("csrf={}", page.csrf()),
            )
            .await;
        assert_eq!(r.header("location"), Some("/quarantine?done=gone"));
        let page = b.get("/quarantine?done=gone").await;
        assert!(
            page.body
                .contains("Nothing done: the message was already delivered or deleted."),
            "{}",
            page.body
        );
    }
);

#[tokio::test]
async fn the_list_pages_by_keyset_newest_first() {
    let app = app_with_alice(Backend::Sqlite).await;
    for i in 0..30 {
        hold(
            &app,
            ALICE,
            "carol@example.org",
            "Carol",
            &format!("Message {i:02}"),
        )
        .await;
    }
    let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
    assert_eq!(page.body.matches("<li id=\"m").count(), 25);
    assert!(page.body.contains("Message 29"));
    assert!(!page.body.contains("Message 04"));
    let at = page.body.find("after=").expect("an Older link");
    let cursor: String = page.body[at + 6..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let older = b.get(&format!("/quarantine?limit=25&after={cursor}")).await;
    assert_eq!(older.status, 200);
    assert_eq!(older.body.matches("<li id=\"m").count(), 5);
    assert!(older.body.contains("Message 04") && older.body.contains("Message 00"));
    assert!(!older.body.contains("Message 05"));
    let all = b.get("/quarantine?limit=50").await;
    assert_eq!(all.body.matches("<li id=\"m").count(), 30);
    assert_eq!(b.get("/quarantine?limit=1000").await.status, 400);
    assert_eq!(b.get("/quarantine?after=bogus!").await.status, 400);
}

#[tokio::test]
async fn behind_https_the_cookie_is_secure_and_the_public_origin_counts() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.web.base_url = "https://mail.example.test".into();
    })
    .await;
    set_password(&app, ALICE, ALICE_PW).await;
    let b = Browser::new(&app);
    let form = format!("address={}&password={}", enc(ALICE), enc(ALICE_PW));
    let r = b
        .post_with("/login", &form, &[("Origin", "https://mail.example.test")])
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let r = b
        .post_with("/login", &form, &[("Origin", "https://other.example.test")])
        .await;
    assert_eq!(r.status, 403);
}

// ---- the message page ------------------------------------------------------

/// A hostile message: an HTML part with a script, an `onerror` image and
/// a remote image, and an attachment whose name has a quote, `<`, control
/// and direction characters and non-ASCII.
const ATTACHMENT: &str = "MZ not really <script>alert(1)</script>\r\n";

fn hostile_message(to: &str) -> String {
    format!(
        "From: \"Mallory <x>\" <mallory@example.org>\r\nTo: {to}\r\nSubject: =?UTF-8?Q?Invoice_<b>=E2=80=AE?=\r\n\
Message-ID: <hostile@example.org>\r\nDate: Mon, 30 Nov 2026 01:00:00 +0000\r\nX-Evil: <img src=x onerror=alert(3)>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain <b>text</b> \u{1b}[31m here\r\n\
--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Hi</p><script>alert(1)</script><img src=x onerror=\"alert(2)\">\
<img src=\"http://tracker.example/pixel.gif\"><img src=\"https://images.example/logo.png\">\
<a href=\"https://evil.example/login\" onclick=\"steal()\">your bank</a>\r\n\
--alt--\r\n\
--outer\r\nContent-Type: application/x-msdownload\r\n\
Content-Disposition: attachment; filename*=UTF-8''ev%22il%3Cb%3E%01%E2%80%AEgpj%C3%A9.exe\r\n\r\n\
{ATTACHMENT}\r\n--outer--\r\n"
    )
}

/// Holds `data` for `mailbox` with a stored authentication result and
/// spam score; returns the id.
async fn hold_data(app: &TestApp, mailbox: &str, data: &str, at: i64) -> i64 {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let id = app.mailbox_id(mailbox).await;
    let mut tx = app.store.begin_write().await.unwrap();
    let hid = held::insert_held(
        &mut tx,
        &NewHeld {
            mailbox_id: id,
            queue_id: &format!("1wM5sG-{n:06}-9z"),
            rcpt_index: 0,
            env_sender: "bounce@example.org",
            original_rcpt: mailbox,
            sender: "mallory@example.org",
            sender_name: "Mallory <x>",
            subject: "Invoice <b>",
            message_id: "<hostile@example.org>",
            date_header: "",
            arrived_at: Timestamp::from_secs(at),
            reason: "not-authenticated",
            reason_detail: "DMARC <fail> for example.org",
            challenge_id: None,
            data: data.as_bytes(),
            auth_results: "mx.example.test; dmarc=fail header.from=example.org",
            spam_score: Some(43),
            spam_report: "BAYES_50 <0.8>",
            attachments: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hid
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

on_both_backends!(
    the_message_page_shows_hostile_mail_safely,
    |backend| async move {
        let app = app_with_alice(backend).await;
        set_password(&app, BOB, "bob's password").await;
        let older = hold(&app, ALICE, "old@example.org", "", "older one").await;
        let data = hostile_message(ALICE);
        let id = hold_data(&app, ALICE, &data, T0).await;
        let (b, list) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        assert!(
            list.body
                .contains(&format!("<a href=\"/quarantine/{id}\">")),
            "{}",
            list.body
        );

        let page = b.get(&format!("/quarantine/{id}")).await;
        assert_eq!(page.status, 200, "{page:?}");
        let body = &page.body;
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("frame-src 'self'") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
        // Nothing from the mail reaches the page unescaped.
        for raw in [
            "<script",
            "<img",
            "<b>",
            "<a href=\"https://evil",
            "\u{202e}",
            "\u{1b}",
            "\u{1}",
        ] {
            assert!(!body.contains(raw), "{raw:?} in {body}");
        }
        assert!(
            body.contains("&#60;img src=x onerror=alert(3)&#62;"),
            "{body}"
        );
        assert!(
            body.contains("Plain &#60;b&#62;text&#60;/b&#62; \u{241b}[31m here"),
            "{body}"
        );
        assert!(body.contains("<details><summary>All headers</summary>"));
        assert!(
            body.contains("Envelope sender</dt><dd>bounce@example.org"),
            "{body}"
        );
        // Why held, in words.
        assert!(
            body.contains("DMARC &#60;fail&#62; for example.org"),
            "{body}"
        );
        assert!(body.contains("dmarc=fail header.from=example.org"));
        assert!(
            body.contains("4.3") && body.contains("BAYES_50 &#60;0.8&#62;"),
            "{body}"
        );
        assert!(
            body.contains("Not sent: the sender is not authenticated"),
            "{body}"
        );
        for action in ["deliver", "allow", "delete"] {
            assert!(body.contains(&format!("action=\"/quarantine/{id}/{action}\"")));
        }
        assert!(
            body.contains(&format!("href=\"/quarantine/{older}\" rel=\"next\"")),
            "{body}"
        );
        // The HTML part: a sandboxed frame, images blocked by default.
        assert!(
            body.contains(&format!("<iframe sandbox=\"\" title=\"HTML part of the message\" referrerpolicy=\"no-referrer\" src=\"/quarantine/{id}/html\"")),
            "{body}"
        );
        assert!(body.contains("Remote images are blocked."));
        assert!(body.contains(&format!("href=\"/quarantine/{id}?images=1\">Load images")));
        let with = b.get(&format!("/quarantine/{id}?images=1")).await;
        assert!(
            with.body
                .contains(&format!("src=\"/quarantine/{id}/html?images=1\""))
        );
        assert!(with.body.contains("Remote images (https only) are loaded"));

        // The attachment: listed escaped, with size and hash.
        assert!(
            body.contains("ev&#34;il&#60;b&#62;\u{2401}\u{fffd}gpj\u{e9}.exe"),
            "{body}"
        );
        assert!(body.contains("application/x-msdownload"));
        // Typed by its bytes too: "MZ" is a Windows program, as declared.
        assert!(
            body.contains("<td>application/vnd.microsoft.portable-executable</td>"),
            "{body}"
        );
        assert!(
            body.contains(&format!("<td>{}</td>", ATTACHMENT.len())),
            "{body}"
        );
        assert!(body.contains(&sha256_hex(ATTACHMENT.as_bytes())));

        let h = b.get(&format!("/quarantine/{id}/html")).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-type"), Some("text/html; charset=utf-8"));
        let csp = h.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("img-src data:;"),
            "{csp}"
        );
        assert!(
            csp.contains("frame-ancestors 'self'") && !csp.contains("https:"),
            "{csp}"
        );
        assert!(!csp.contains("script-src"), "{csp}");
        assert_eq!(h.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(h.header("x-frame-options"), Some("SAMEORIGIN"));
        for bad in ["<script", "alert", "onerror", "onclick", "steal"] {
            assert!(!h.body.contains(bad), "{bad:?} in {}", h.body);
        }
        assert!(h.body.contains("<p>Hi</p>"));
        assert!(
            h.body.contains("href=\"https://evil.example/login\""),
            "{}",
            h.body
        );
        assert!(h.body.contains("rel=\"noopener noreferrer\""));
        assert!(
            h.body.contains("attr(href)"),
            "link targets shown: {}",
            h.body
        );
        let h = b.get(&format!("/quarantine/{id}/html?images=1")).await;
        let csp = h.header("content-security-policy").unwrap();
        assert!(
            csp.contains("img-src data: https:;") && !csp.contains("http:"),
            "{csp}"
        );

        let a = b.get(&format!("/quarantine/{id}/attachment/0")).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("content-disposition"),
            Some("attachment; filename*=UTF-8''ev%22il%3Cb%3E__gpj%C3%A9.exe")
        );
        assert_eq!(a.header("content-type"), Some("application/octet-stream"));
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert!(
            a.header("content-security-policy")
                .unwrap()
                .starts_with("default-src 'none'")
        );
        assert_eq!(a.body, ATTACHMENT);
        assert_eq!(
            b.get(&format!("/quarantine/{id}/attachment/1"))
                .await
                .status,
            404
        );

        let r = b.get(&format!("/quarantine/{id}/raw")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.body, data);
        let e = b.get(&format!("/quarantine/{id}/eml")).await;
        assert_eq!(e.status, 200);
        assert_eq!(e.header("content-type"), Some("message/rfc822"));
        assert_eq!(
            e.header("content-disposition"),
            Some(format!("attachment; filename=\"message-{id}.eml\"").as_str())
        );
        assert_eq!(e.body, data);

        let routes = [
            format!("/quarantine/{id}"),
            format!("/quarantine/{id}?images=1"),
            format!("/quarantine/{id}/html"),
            format!("/quarantine/{id}/html?images=1"),
            format!("/quarantine/{id}/attachment/0"),
            format!("/quarantine/{id}/raw"),
            format!("/quarantine/{id}/eml"),
        ];
        // Another mailbox: 404 everywhere, the same page as an unknown id.
        let (bob, _) = Browser::signed_in(&app, BOB, "bob's password").await;
        let unknown = bob.get("/quarantine/999999999").await;
        assert_eq!(unknown.status, 404);
        for path in &routes {
            let r = bob.get(path).await;
            assert_eq!(r.status, 404, "{path}");
            assert_eq!(r.body, unknown.body, "{path}");
            assert!(
                !r.body.contains("Invoice") && !r.body.contains("mallory"),
                "{path}"
            );
        }
        // Signed out: to sign-in.
        let anon = Browser::new(&app);
        for path in &routes {
            let r = anon.get(path).await;
            assert_eq!(r.status, 303, "{path}");
            assert!(
                r.header("location")
                    .unwrap()
                    .starts_with("/login?next=/quarantine"),
                "{path}"
            );
        }
    }
);
