//! Soft deletion and "seen" on the owner's quarantine, over real HTTP on
//! both backends: a delete can be undone at once or restored from the
//! deleted view until the sweeper purges it, deleted mail leaves the
//! list, the quota and every release, another mailbox cannot touch it, and
//! opening a message marks it seen. The JSON API does the same.

use crate::http::*;
use crate::on_both_backends;
use crate::support::*;
use crate::web_search::{Held, hold_as, listed};
use boxtrap::clock::Timestamp;
use boxtrap::store::activity::ActivityFilter;
use boxtrap::store::held::{ActivityAction, HeldState};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ALICE_PW: &str = "alice correct horse";
const BOB_PW: &str = "bob battery staple";

/// Three messages for alice (dave twice, erin) and one for bob.
async fn seed(app: &TestApp) -> ([i64; 3], i64) {
    let dave1 = hold_as(
        app,
        ALICE,
        Held {
            sender: "dave@shop.example",
            subject: "Invoice 1",
            age: 3000,
            ..Held::default()
        },
    )
    .await;
    let dave2 = hold_as(
        app,
        ALICE,
        Held {
            sender: "dave@shop.example",
            subject: "Invoice 2",
            age: 2000,
            ..Held::default()
        },
    )
    .await;
    let erin = hold_as(
        app,
        ALICE,
        Held {
            sender: "erin@other.example",
            subject: "Lunch",
            age: 1000,
            ..Held::default()
        },
    )
    .await;
    let bobs = hold_as(app, BOB, Held::default()).await;
    ([dave1, dave2, erin], bobs)
}

async fn state_of(app: &TestApp, id: i64) -> Option<HeldState> {
    app.store.held(id).await.unwrap().map(|h| h.state)
}

/// Alice's quota numbers: (messages, bytes).
async fn quota(app: &TestApp) -> (i64, i64) {
    let id = app.mailbox_id(ALICE).await;
    let u = &app.store.quarantine_use(&[id]).await.unwrap()[0];
    (u.messages, u.bytes)
}

/// The `undo=` value of a redirect after an action.
fn undo_of(location: &str) -> String {
    let at = location.find("undo=").expect("an undo in the redirect");
    location[at + 5..].split('&').next().unwrap().to_owned()
}

on_both_backends!(
    a_delete_is_undone_restored_or_purged_and_never_delivered,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ([dave1, dave2, erin], bobs) = seed(&app).await;
        set_password(&app, ALICE, ALICE_PW).await;
        set_password(&app, BOB, BOB_PW).await;
        let (b, _) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let full = quota(&app).await;
        assert_eq!(full.0, 3);

        // Delete two: they leave the list and the quota, and the page
        // offers their Undo.
        let page = b.get("/quarantine").await;
        let csrf = page.csrf();
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=delete&id={dave1}&id={erin}"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let to = r.header("location").unwrap().to_owned();
        assert!(
            to.starts_with("/quarantine?done=act.0.2.0.0.0.0.0&undo="),
            "{to}"
        );
        let undo = undo_of(&to);
        let page = b.get(&to).await;
        assert!(page.body.contains("2 deleted."), "{}", page.body);
        assert!(
            page.body
                .contains(&format!("name=\"deleted_at\" value=\"{undo}\"")),
            "{}",
            page.body
        );
        assert_eq!(listed(&page.body), vec![dave2]);
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Deleted));
        assert_eq!(quota(&app).await.0, 1);
        let ids: Vec<i64> = app.held().await.iter().map(|h| h.id).collect();
        assert!(!ids.contains(&dave1) && !ids.contains(&erin), "{ids:?}");

        // The deleted view lists them, with Restore and when they go.
        let deleted = b.get("/quarantine?q=in%3Adeleted").await;
        assert_eq!(listed(&deleted.body), vec![erin, dave1]);
        assert!(deleted.body.contains("/restore\""), "{}", deleted.body);
        assert!(deleted.body.contains("Gone for good"), "{}", deleted.body);
        assert!(!deleted.body.contains("/deliver\""), "{}", deleted.body);

        // The activity log has a line each, with the client's address.
        let lines = app
            .store
            .activity_page(
                app.mailbox_id(ALICE).await,
                &ActivityFilter {
                    actions: vec![ActivityAction::Deleted],
                    ..ActivityFilter::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(lines.len(), 2);
        assert!(
            lines.iter().all(|l| l.client_ip == "127.0.0.1"),
            "{lines:?}"
        );

        // Bob can neither undo nor restore alice's deletes.
        let (bob, bob_page) = Browser::signed_in(&app, BOB, BOB_PW).await;
        let bob_csrf = bob_page.csrf();
        let r = bob
            .post(
                "/quarantine/actions",
                &format!("csrf={bob_csrf}&action=undelete&deleted_at={undo}"),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        let r = bob
            .post(
                "/quarantine/actions",
                &format!("csrf={bob_csrf}&action=undelete&id={dave1}"),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        let r = bob
            .post(
                &format!("/quarantine/{dave1}/restore"),
                &format!("csrf={bob_csrf}"),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Deleted));
        assert_eq!(state_of(&app, bobs).await, Some(HeldState::Held));

        // Bad input changes nothing.
        for (form, names) in [
            (
                "action=undelete&deleted_at=soon",
                "is not the time of a delete",
            ),
            ("action=undelete", "Choose at least one"),
        ] {
            let r = b
                .post("/quarantine/actions", &format!("csrf={csrf}&{form}"))
                .await;
            assert_eq!(r.status, 400, "{form}: {r:?}");
            assert!(r.body.contains(names), "{form}: {}", r.body);
        }
        let r = b
            .post(
                "/quarantine/actions",
                &format!("action=undelete&deleted_at={undo}"),
            )
            .await;
        assert_eq!(r.status, 403, "no CSRF token: {r:?}");
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Deleted));

        // Undo: both come back, in the list and the quota.
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=undelete&deleted_at={undo}"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let page = b.get(r.header("location").unwrap()).await;
        assert!(
            page.body.contains("2 restored to the quarantine."),
            "{}",
            page.body
        );
        assert_eq!(listed(&page.body), vec![erin, dave2, dave1]);
        assert_eq!(quota(&app).await, full);
        // Twice: nothing left to restore.
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=undelete&deleted_at={undo}"),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        assert!(r.body.contains("Nothing deleted then"), "{}", r.body);

        // One message's own buttons: delete, see it on its page, restore.
        let r = b
            .post(
                &format!("/quarantine/{dave1}/delete"),
                &format!("csrf={csrf}"),
            )
            .await;
        assert_eq!(r.status, 303);
        assert!(r.header("location").unwrap().contains("&undo="), "{r:?}");
        let shown = b.get(&format!("/quarantine/{dave1}")).await;
        assert_eq!(shown.status, 200);
        assert!(
            shown.body.contains("You deleted this message."),
            "{}",
            shown.body
        );
        assert!(
            shown
                .body
                .contains(&format!("action=\"/quarantine/{dave1}/restore\"")),
            "{}",
            shown.body
        );
        // Its neighbours are deleted ones too: it is the only one.
        assert!(shown.body.contains("This is the newest."), "{}", shown.body);
        assert!(shown.body.contains("This is the oldest."), "{}", shown.body);
        // A deleted message is not delivered by any button.
        let r = b
            .post(
                &format!("/quarantine/{dave1}/deliver"),
                &format!("csrf={csrf}"),
            )
            .await;
        assert_eq!(r.header("location"), Some("/quarantine?done=gone"));
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=deliver_all&id={dave2}"),
            )
            .await;
        assert_eq!(r.status, 303);
        assert_eq!(app.messages(ALICE).len(), 1, "only dave2 was delivered");
        // Delivered as stored, under a trace of the release.
        let got = String::from_utf8_lossy(&app.messages(ALICE)[0].1).into_owned();
        assert!(
            got.starts_with(&format!(
                "Return-Path: <dave@shop.example>\nDelivered-To: {ALICE}\n\
                 X-Boxtrap-Released: by owner; held "
            )),
            "{got}"
        );
        assert!(
            got.contains("(rate-limited);\n\treleased ")
                && got.contains("\nFrom: Carol <dave@shop.example>\n"),
            "{got}"
        );
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Deleted));
        let r = b
            .post(
                &format!("/quarantine/{dave1}/restore"),
                &format!("csrf={csrf}&q=in%3Adeleted"),
            )
            .await;
        assert_eq!(
            r.header("location"),
            Some("/quarantine?q=in%3Adeleted&done=act.0.0.0.0.0.1.0")
        );
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Held));

        // Deleted again and left: the sweeper purges it after keep_deleted
        // (7 days), not before.
        b.post(
            &format!("/quarantine/{dave1}/delete"),
            &format!("csrf={csrf}"),
        )
        .await;
        app.clock.advance_secs(7 * 86400 - 60);
        assert_eq!(app.quarantine.sweep_once().await.unwrap().deleted_purged, 0);
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Deleted));
        app.clock.advance_secs(120);
        assert_eq!(app.quarantine.sweep_once().await.unwrap().deleted_purged, 1);
        assert_eq!(state_of(&app, dave1).await, None);
        // (Signed in again: a week has passed.)
        let (b, page) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let r = b
            .post(
                &format!("/quarantine/{dave1}/restore"),
                &format!("csrf={}", page.csrf()),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(quota(&app).await.0, 1, "erin is still held");
    }
);

on_both_backends!(
    opening_a_message_marks_it_seen_and_seen_can_be_set_and_searched,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ([dave1, dave2, erin], _) = seed(&app).await;
        set_password(&app, ALICE, ALICE_PW).await;
        let (b, _) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let page = b.get("/quarantine").await;
        assert_eq!(
            page.body
                .matches("<span class=\"badge\">New</span>")
                .count(),
            3
        );
        let csrf = page.csrf();

        assert_eq!(b.get(&format!("/quarantine/{dave1}")).await.status, 200);
        let unseen = b.get("/quarantine?q=is%3Aunseen").await;
        assert_eq!(listed(&unseen.body), vec![erin, dave2]);
        let seen = b.get("/quarantine?q=is%3Aseen").await;
        assert_eq!(listed(&seen.body), vec![dave1]);

        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=mark_seen&id={erin}&id={dave1}"),
            )
            .await;
        // dave1 was seen already: one marked.
        assert!(
            r.header("location")
                .unwrap()
                .ends_with("done=act.0.0.0.0.0.0.1"),
            "{r:?}"
        );
        let page = b.get(r.header("location").unwrap()).await;
        assert!(page.body.contains("1 marked."), "{}", page.body);
        assert_eq!(
            page.body
                .matches("<span class=\"badge\">New</span>")
                .count(),
            1
        );
        b.post(
            "/quarantine/actions",
            &format!("csrf={csrf}&action=mark_unseen&scope=matching&q=from%3Adave%40shop.example"),
        )
        .await;
        let unseen = b.get("/quarantine?q=is%3Aunseen").await;
        assert_eq!(listed(&unseen.body), vec![dave2, dave1]);
        // Seen or not, nothing was delivered or deleted.
        assert_eq!(app.held().await.len(), 4);
        assert!(app.messages(ALICE).is_empty());
    }
);

on_both_backends!(
    the_api_deletes_undoes_lists_deleted_and_marks_seen,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ([dave1, dave2, erin], bobs) = seed(&app).await;
        let (token, hash) = boxtrap::web::api::new_api_token();
        app.store
            .create_api_token(
                app.mailbox_id(ALICE).await,
                "t",
                &hash,
                Timestamp::from_secs(T0),
            )
            .await
            .unwrap();
        let auth = format!("Bearer {token}");
        let call = |method: &'static str, path: String, body: String| {
            let auth = auth.clone();
            let web = app.web;
            async move {
                let mut h = vec![("Authorization", auth.as_str())];
                if !body.is_empty() {
                    h.push(("Content-Type", "application/json"));
                }
                let r = request_from("127.0.0.1", web, method, &path, &h, &body).await;
                let v: serde_json::Value =
                    serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
                (r.status, v)
            }
        };
        let (s, v) = call(
            "POST",
            "/api/v1/held/actions".into(),
            format!("{{\"action\":\"delete_all\",\"ids\":[{dave1}]}}"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["deleted"], 2);
        let at = v["deleted_at"].as_i64().expect("deleted_at");
        let (_, list) = call("GET", "/api/v1/held".into(), String::new()).await;
        let ids: Vec<i64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![erin]);
        assert_eq!(list["items"][0]["seen"], false);
        assert!(list["items"][0]["deleted"].is_null());
        let (_, gone) = call("GET", "/api/v1/held?q=in:deleted".into(), String::new()).await;
        let items = gone["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            items
                .iter()
                .all(|i| i["state"] == "deleted" && i["purged"].is_string())
        );

        // Another mailbox's deletes, and a bad selector, change nothing.
        let (s, v) = call(
            "POST",
            "/api/v1/held/actions".into(),
            format!("{{\"action\":\"undelete\",\"ids\":[{bobs}]}}"),
        )
        .await;
        assert_eq!(s, 404, "{v}");
        let (s, v) = call(
            "POST",
            "/api/v1/held/actions".into(),
            format!("{{\"action\":\"undelete\",\"ids\":[{dave1}],\"deleted_at\":{at}}}"),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("not several"), "{v}");
        assert_eq!(state_of(&app, dave2).await, Some(HeldState::Deleted));

        let (s, v) = call(
            "POST",
            "/api/v1/held/actions".into(),
            format!("{{\"action\":\"undelete\",\"deleted_at\":{at}}}"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["restored"], 2);
        assert_eq!(state_of(&app, dave1).await, Some(HeldState::Held));

        let (s, v) = call(
            "POST",
            "/api/v1/held/actions".into(),
            r#"{"action":"mark_seen","query":"from:dave@shop.example"}"#.to_owned(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["marked"], 2);
        let (_, one) = call("GET", format!("/api/v1/held/{dave2}"), String::new()).await;
        assert_eq!(one["seen"], true, "{one}");
    }
);
