//! The admin pages over real HTTP: a non-admin gets the plain 404 on
//! every /admin URL and changes nothing; an admin sees every mailbox with
//! its totals, toggles a challenge switch, searches held mail across
//! mailboxes, and delivers or deletes for an owner, recorded in the
//! owner's activity log; CSRF and Origin are checked; hostile text is
//! escaped.

use crate::on_both_backends;
use crate::support::*;
use crate::web_activity::{ALICE, ALICE_PW, BOB, BOB_PW, Browser, Resp, rows};
use boxtrap::clock::Timestamp;
use boxtrap::store::held::{self, ActivityAction, NewHeld};
use std::sync::atomic::{AtomicU32, Ordering};

/// Puts a message in `mailbox`'s quarantine; returns its id.
pub async fn hold(app: &TestApp, mailbox: &str, sender: &str, subject: &str) -> i64 {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let queue_id = format!("1wH3kL-{n:06}-ad");
    let data = format!("From: {sender}\r\nTo: {mailbox}\r\nSubject: x\r\n\r\nBody {n}.\r\n");
    let id = app.mailbox_id(mailbox).await;
    let mut tx = app.store.begin_write().await.unwrap();
    let hid = held::hold(
        &mut tx,
        &NewHeld {
            mailbox_id: id,
            queue_id: &queue_id,
            rcpt_index: 0,
            env_sender: sender,
            original_rcpt: mailbox,
            sender,
            sender_name: "",
            subject,
            message_id: "",
            date_header: "",
            arrived_at: Timestamp::from_secs(T0 - 600 + n as i64),
            reason: "rate-limited",
            reason_detail: "challenge rate limit reached",
            challenge_id: None,
            data: data.as_bytes(),
            auth_results: "",
            spam_score: None,
            spam_report: "",
            attachments: None,
        },
        Timestamp::from_secs(T0),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hid
}

async fn challenge_enabled(app: &TestApp, mailbox: &str) -> bool {
    app.store
        .mailbox_settings_by_address(mailbox)
        .await
        .unwrap()
        .challenge_enabled
}

async fn held_count(app: &TestApp) -> usize {
    app.held().await.len()
}

fn is_plain_404(r: &Resp, reference: &Resp) {
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.body, reference.body,
        "the same page as a URL that does not exist"
    );
}

on_both_backends!(
    a_non_admin_gets_404_on_every_admin_url_and_changes_nothing,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let hid = hold(&app, BOB, "carol@example.org", "For bob").await;
        let bob_id = app.mailbox_id(BOB).await;
        let alice = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let reference = alice.get("/no-such-page").await;
        assert_eq!(reference.status, 404);
        let csrf = alice.get("/activity").await.csrf();
        for path in [
            "/admin".to_owned(),
            "/admin/".to_owned(),
            format!("/admin/mailboxes/{bob_id}"),
            "/admin/mailboxes/999999".to_owned(),
            format!("/admin/mailboxes/{bob_id}/challenge"),
            "/admin/anything/else".to_owned(),
            "/admin?sender=carol".to_owned(),
        ] {
            is_plain_404(&alice.get(&path).await, &reference);
        }
        for (path, form) in [
            (
                format!("/admin/mailboxes/{bob_id}/challenge"),
                format!("csrf={csrf}&challenge=on"),
            ),
            (
                format!("/admin/mailboxes/{bob_id}/challenge"),
                "garbage=%%".to_owned(),
            ),
            (
                format!("/admin/mailboxes/{bob_id}/held/{hid}/deliver"),
                format!("csrf={csrf}"),
            ),
            (
                format!("/admin/mailboxes/{bob_id}/held/{hid}/delete"),
                format!("csrf={csrf}"),
            ),
            ("/admin".to_owned(), format!("csrf={csrf}")),
        ] {
            is_plain_404(&alice.post(&path, &form).await, &reference);
        }
        assert!(!challenge_enabled(&app, BOB).await);
        assert_eq!(held_count(&app).await, 1);
        assert!(app.messages(BOB).is_empty());
        let bob_log = app.activity(BOB).await;
        assert_eq!(bob_log, vec![ActivityAction::Held]);

        // Signed out: sent to sign in, as on every owner page.
        let r = Browser::new(&app).get("/admin").await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/login?next=/admin"));
    }
);

on_both_backends!(
    an_admin_sees_every_mailbox_toggles_a_switch_and_acts_for_an_owner,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.store
            .set_admin(app.mailbox_id(BOB).await, true)
            .await
            .unwrap();
        let alice_id = app.mailbox_id(ALICE).await;
        let first = hold(
            &app,
            ALICE,
            "carol@example.org",
            "Quarterly <script>x</script>",
        )
        .await;
        let second = hold(&app, ALICE, "mallory@example.net", "Win \u{202e}big").await;
        let bob = Browser::signed_in(&app, BOB, BOB_PW).await;

        let page = bob.get("/admin").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let mailboxes = rows(&page.body);
        let alice_row = mailboxes.iter().find(|r| r.contains(ALICE)).unwrap();
        assert!(alice_row.contains("<td>2</td>"), "{alice_row}");
        assert!(alice_row.contains("<span>Off</span>"), "{alice_row}");
        assert!(alice_row.contains("2026-11-27 13:5"), "oldest: {alice_row}");
        let bob_row = mailboxes.iter().find(|r| r.contains(BOB)).unwrap();
        assert!(bob_row.contains("(admin)") && bob_row.contains("<td>0</td>"));
        assert!(
            page.body.contains("example.test: 2 mailboxes"),
            "{}",
            page.body
        );

        // The switch: on, recorded in alice's log as the admin's doing.
        let r = bob
            .post(
                &format!("/admin/mailboxes/{alice_id}/challenge"),
                &format!("csrf={}&challenge=on", page.csrf()),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(
            r.header("location").unwrap(),
            format!("/admin?done=challenge-on#mb{alice_id}")
        );
        assert!(challenge_enabled(&app, ALICE).await);
        let page = bob.get("/admin?done=challenge-on").await;
        assert!(page.body.contains("Challenge-response turned on."));
        let bad = bob
            .post(
                &format!("/admin/mailboxes/{alice_id}/challenge"),
                &format!("csrf={}&challenge=maybe", page.csrf()),
            )
            .await;
        assert_eq!(bad.status, 400);
        assert!(
            bad.body
                .contains("Challenge: &#34;maybe&#34; is neither on nor off")
        );
        assert!(challenge_enabled(&app, ALICE).await);
        let r = bob
            .post(
                "/admin/mailboxes/999999/challenge",
                &format!("csrf={}&challenge=off", page.csrf()),
            )
            .await;
        assert_eq!(r.status, 404);

        // Search across mailboxes, with the recipient.
        let found = bob.get("/admin?sender=CAROL").await;
        let hits: Vec<&str> = rows(&found.body)
            .into_iter()
            .filter(|r| r.contains("Received") || r.contains("carol"))
            .collect();
        assert_eq!(hits.len(), 1, "{}", found.body);
        assert!(hits[0].contains(&format!(
            "/admin/mailboxes/{alice_id}#m{first}\">{ALICE}</a>"
        )));
        assert!(
            hits[0].contains("Quarterly &#60;script&#62;x&#60;/script&#62;"),
            "{}",
            hits[0]
        );
        assert!(!found.body.contains("<script>"));
        let none = bob.get("/admin?subject=%25").await;
        assert!(
            none.body.contains("No held message matches."),
            "a literal %"
        );
        let win = bob.get("/admin?subject=win").await;
        assert!(win.body.contains("mallory@example.net"));
        assert!(
            win.body.contains("Win \u{fffd}big"),
            "bidi override replaced"
        );

        // Alice's quarantine, read-only, with the admin's buttons.
        let q = bob.get(&format!("/admin/mailboxes/{alice_id}")).await;
        assert_eq!(q.status, 200);
        assert!(q.body.contains("Quarantine of alice@example.test"));
        assert!(
            q.body
                .contains(&format!("/admin/mailboxes/{alice_id}/held/{first}/deliver"))
        );
        assert!(
            !q.body.contains(&format!("/quarantine/{first}")),
            "not alice's own links"
        );
        let r = bob
            .post(
                &format!("/admin/mailboxes/{alice_id}/held/{first}/deliver"),
                &format!("csrf={}", q.csrf()),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(
            r.header("location").unwrap(),
            format!("/admin/mailboxes/{alice_id}?done=delivered")
        );
        assert_eq!(app.messages(ALICE).len(), 1);
        assert!(
            app.messages(BOB).is_empty(),
            "delivered to alice, not the admin"
        );
        let r = bob
            .post(
                &format!("/admin/mailboxes/{alice_id}/held/{second}/delete"),
                &format!("csrf={}", q.csrf()),
            )
            .await;
        assert_eq!(r.status, 303);
        assert_eq!(held_count(&app).await, 0);
        // Again: gone, nothing done; another mailbox's message: 404.
        let r = bob
            .post(
                &format!("/admin/mailboxes/{alice_id}/held/{second}/delete"),
                &format!("csrf={}", q.csrf()),
            )
            .await;
        assert_eq!(r.status, 404);
        let bobs = hold(&app, BOB, "x@example.org", "bob's").await;
        let r = bob
            .post(
                &format!("/admin/mailboxes/{alice_id}/held/{bobs}/delete"),
                &format!("csrf={}", q.csrf()),
            )
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(held_count(&app).await, 1);

        // Alice's own activity page says what the admin did, and from where.
        let alice = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let log = alice.get("/activity?kind=admin").await;
        let lines = rows(&log.body);
        assert_eq!(lines.len(), 3, "{}", log.body);
        assert!(lines[0].contains("deleted for the owner by the admin bob@example.test"));
        assert!(lines[1].contains("delivered for the owner by the admin bob@example.test"));
        assert!(
            lines[1].contains("bob@example.test, 127.0.0.1"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("challenge-response turned on by the admin bob@example.test"));
        let msg = alice.get(&format!("/activity?held={first}")).await;
        let lines = rows(&msg.body);
        assert!(
            lines.iter().any(|l| l.contains("<td>Delivered</td>")),
            "{}",
            msg.body
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("<td>Done by an admin</td>"))
        );
        // And alice, who is no admin, still cannot see bob's admin page.
        assert_eq!(alice.get("/admin").await.status, 404);
    }
);

on_both_backends!(
    admin_posts_without_csrf_or_from_another_origin_are_refused,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.store
            .set_admin(app.mailbox_id(BOB).await, true)
            .await
            .unwrap();
        let alice_id = app.mailbox_id(ALICE).await;
        let hid = hold(&app, ALICE, "carol@example.org", "Keep").await;
        let bob = Browser::signed_in(&app, BOB, BOB_PW).await;
        let csrf = bob.get("/admin").await.csrf();
        let switch = format!("/admin/mailboxes/{alice_id}/challenge");
        let deliver = format!("/admin/mailboxes/{alice_id}/held/{hid}/deliver");
        let wrong = "0".repeat(64);
        for (path, form, headers, why) in [
            (
                &switch,
                "challenge=on".to_owned(),
                vec![],
                "no security token",
            ),
            (
                &switch,
                format!("csrf={wrong}&challenge=on"),
                vec![],
                "is not this session",
            ),
            (
                &switch,
                format!("csrf={csrf}&challenge=on"),
                vec![("Origin", "https://evil.example")],
                "",
            ),
            (&deliver, String::new(), vec![], "no security token"),
            (
                &deliver,
                format!("csrf={csrf}"),
                vec![("Origin", "https://evil.example")],
                "",
            ),
        ] {
            let r = bob.post_with(path, &form, &headers).await;
            assert_eq!(r.status, 403, "{path} {form} {headers:?}: {r:?}");
            assert!(r.body.contains(why), "{}", r.body);
        }
        assert!(!challenge_enabled(&app, ALICE).await);
        assert_eq!(held_count(&app).await, 1);
        assert!(app.messages(ALICE).is_empty());
        assert_eq!(app.activity(ALICE).await, vec![ActivityAction::Held]);
        // A GET on an action changes nothing either.
        let r = bob.get(&deliver).await;
        assert_eq!(r.status, 404);
        assert_eq!(held_count(&app).await, 1);
    }
);

on_both_backends!(
    the_admin_api_lists_mailboxes_for_admins_only,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        hold(&app, ALICE, "carol@example.org", "One").await;
        let alice = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let reference = alice.get("/api/v1/no-such-call").await;
        is_plain_404(&alice.get("/api/v1/admin/mailboxes").await, &reference);
        is_plain_404(&alice.get("/api/v1/admin/other").await, &reference);
        assert_eq!(
            Browser::new(&app)
                .get("/api/v1/admin/mailboxes")
                .await
                .status,
            401
        );

        app.store
            .set_admin(app.mailbox_id(ALICE).await, true)
            .await
            .unwrap();
        let r = alice.get("/api/v1/admin/mailboxes").await;
        assert_eq!(r.status, 200, "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let m = v["mailboxes"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["address"], ALICE);
        assert_eq!(m[0]["domain"], "example.test");
        assert_eq!(m[0]["admin"], true);
        assert_eq!(m[0]["challenge"], false);
        assert_eq!(m[0]["held"], 1);
        assert!(m[0]["bytes"].as_i64().unwrap() > 0);
        assert!(
            m[0]["oldest"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-27T13:5")
        );
        assert_eq!(m[1]["address"], BOB);
        assert_eq!(m[1]["held"], 0);
        assert!(m[1]["oldest"].is_null());
    }
);

on_both_backends!(
    the_admin_api_searches_every_mailbox_and_acts_for_an_owner,
    |backend| async move {
        use crate::http::ApiCaller;
        let app = TestApp::spawn_on(backend).await;
        crate::http::set_password(&app, ALICE, ALICE_PW).await;
        crate::http::set_password(&app, BOB, BOB_PW).await;
        app.store
            .set_admin(app.mailbox_id(BOB).await, true)
            .await
            .unwrap();
        let alice_id = app.mailbox_id(ALICE).await;
        let first = hold(&app, ALICE, "carol@example.org", "Invoice <b>1</b>").await;
        let second = hold(&app, ALICE, "carol@example.org", "Invoice 2").await;
        let bobs = hold(&app, BOB, "carol@example.org", "For the admin").await;
        let admin = ApiCaller::session(&app, BOB, BOB_PW).await;
        let owner = ApiCaller::session(&app, ALICE, ALICE_PW).await;

        let found = admin
            .call("GET", "/api/v1/admin/held?sender=CAROL&subject=invoice", "")
            .await;
        assert_eq!(found.status, 200, "{found:?}");
        let j = found.json();
        let items = j["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{j}");
        assert_eq!(items[0]["id"], second);
        assert_eq!(items[0]["mailbox"], ALICE);
        assert_eq!(items[0]["mailbox_id"], alice_id);
        assert_eq!(items[1]["subject"], "Invoice <b>1</b>");
        assert_eq!(j["more"], false);
        let all = admin.call("GET", "/api/v1/admin/held", "").await.json();
        assert_eq!(all["items"].as_array().unwrap().len(), 3);
        for (q, names) in [
            (format!("sender={}", "x".repeat(201)), "sender: at most 200"),
            ("subject=a%0Ab".to_owned(), "subject: control characters"),
            ("q=x".to_owned(), "unknown field"),
        ] {
            let r = admin
                .call("GET", &format!("/api/v1/admin/held?{q}"), "")
                .await;
            assert_eq!(r.status, 400, "{q}: {r:?}");
            assert!(r.error().contains(names), "{q}: {r:?}");
        }

        // Acting for alice: the owner's body and counts, alice's mail only.
        let act = format!("/api/v1/admin/mailboxes/{alice_id}/held/actions");
        let body = format!(r#"{{"action": "deliver", "ids": [{first}]}}"#);
        for (caller, status) in [
            (admin.with("X-CSRF-Token", None), 403),
            (admin.with("Origin", Some("http://evil.example")), 403),
        ] {
            let r = caller.call("POST", &act, &body).await;
            assert_eq!(r.status, status, "{r:?}");
        }
        // Bob's own message through alice's mailbox: 404, nothing done.
        let r = admin
            .call(
                "POST",
                &act,
                &format!(r#"{{"action": "delete", "ids": [{bobs}]}}"#),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        let r = admin
            .call("POST", "/api/v1/admin/mailboxes/999999/held/actions", &body)
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        assert!(r.error().contains("no such mailbox"), "{r:?}");
        let r = admin
            .call("POST", &act, r#"{"action": "explode", "ids": [1]}"#)
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.error().contains("action:"), "{r:?}");
        assert_eq!(held_count(&app).await, 3);

        let r = admin.call("POST", &act, &body).await;
        assert_eq!(r.status, 200, "{r:?}");
        let j = r.json();
        assert_eq!(
            (j["action"].as_str(), j["targets"].as_i64()),
            (Some("deliver"), Some(1))
        );
        assert_eq!(j["delivered"], 1);
        assert_eq!(app.messages(ALICE).len(), 1);
        assert!(
            app.messages(BOB).is_empty(),
            "delivered to alice, not the admin"
        );
        let r = admin
            .call(
                "POST",
                &act,
                r#"{"action": "delete", "query": "from:carol@example.org"}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["deleted"], 1);
        assert_eq!(held_count(&app).await, 1, "bob's own is kept");

        // Alice's log names the admin and the client address per message.
        let lines = app
            .store
            .activity_page(alice_id, &Default::default(), None, 50)
            .await
            .unwrap();
        let admin_lines: Vec<_> = lines
            .iter()
            .filter(|l| l.action == ActivityAction::AdminAction)
            .collect();
        assert_eq!(admin_lines.len(), 2, "{lines:#?}");
        assert_eq!(admin_lines[1].held_id, Some(first));
        assert_eq!(admin_lines[0].held_id, Some(second));
        for l in &admin_lines {
            assert_eq!(l.actor, BOB);
            assert_eq!(l.client_ip, "127.0.0.1");
            assert!(
                l.detail
                    .contains("for the owner by the admin bob@example.test"),
                "{l:?}"
            );
        }

        // The owner, no admin: the plain 404 on both, nothing done.
        let reference = owner.call("GET", "/api/v1/admin/nothing", "").await;
        assert_eq!(reference.status, 404);
        for (method, path) in [
            ("GET", "/api/v1/admin/held".to_owned()),
            ("POST", act.clone()),
        ] {
            let r = owner
                .call(method, &path, r#"{"action": "delete", "query": ""}"#)
                .await;
            assert_eq!(r.status, 404, "{method} {path}: {r:?}");
            assert_eq!(r.body, reference.body);
        }
        assert_eq!(held_count(&app).await, 1);
    }
);
