//! The quarantine's search, by-sender view and actions on many messages,
//! on the page (`/quarantine?q=…`, `POST /quarantine/actions`) and in the
//! JSON API (`/api/v1/held…`), over real HTTP on both backends: every
//! operator finds what it says and nothing else, a bad search is refused
//! naming the term, actions act on a selection, on senders or on
//! everything a search matches, and another mailbox's ids change nothing.

use crate::http::*;
use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::Timestamp;
use boxtrap::policy::rules::ListKind;
use boxtrap::store::held::{self, NewHeld};
use std::sync::atomic::{AtomicU32, Ordering};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ALICE_PW: &str = "alice correct horse";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A message to put in a quarantine.
pub struct Held<'a> {
    pub sender: &'a str,
    pub name: &'a str,
    pub subject: &'a str,
    pub reason: &'a str,
    /// Seconds before T0 it arrived.
    pub age: i64,
    /// Bytes of body.
    pub body: usize,
    pub attachments: Option<i64>,
}

impl Default for Held<'_> {
    fn default() -> Self {
        Held {
            sender: "carol@example.org",
            name: "Carol",
            subject: "hello",
            reason: "rate-limited",
            age: 600,
            body: 10,
            attachments: Some(0),
        }
    }
}

/// Puts a message in `mailbox`'s quarantine as screening would have;
/// returns its id.
pub async fn hold_as(app: &TestApp, mailbox: &str, h: Held<'_>) -> i64 {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let queue_id = format!("1wS3aR-{n:06}-3k");
    let data = format!(
        "From: {} <{}>\r\nTo: {mailbox}\r\nSubject: {}\r\nMessage-ID: <s{n}@example.org>\r\n\r\n{}\r\n",
        h.name,
        h.sender,
        h.subject,
        "x".repeat(h.body)
    );
    let id = app.mailbox_id(mailbox).await;
    let mut tx = app.store.begin_write().await.unwrap();
    let hid = held::insert_held(
        &mut tx,
        &NewHeld {
            mailbox_id: id,
            queue_id: &queue_id,
            rcpt_index: 0,
            env_sender: h.sender,
            original_rcpt: mailbox,
            sender: h.sender,
            sender_name: h.name,
            subject: h.subject,
            message_id: &format!("<s{n}@example.org>"),
            date_header: "",
            arrived_at: Timestamp::from_secs(T0 - h.age).plus_secs(0),
            reason: h.reason,
            reason_detail: "held for a test",
            challenge_id: None,
            data: data.as_bytes(),
            auth_results: "",
            spam_score: None,
            spam_report: "",
            attachments: h.attachments,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hid
}

async fn held_ids(app: &TestApp, mailbox: &str) -> Vec<i64> {
    let id = app.mailbox_id(mailbox).await;
    let mut ids: Vec<i64> = app
        .store
        .list_held(Some(id), None)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    ids.sort();
    ids
}

/// The ids of the messages a quarantine page lists, in order.
pub fn listed(page: &str) -> Vec<i64> {
    page.match_indices("<li id=\"m")
        .map(|(at, _)| {
            let rest = &page[at + 9..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// A mixed quarantine for alice (and one message for bob): returns
/// alice's ids as [dave1, dave2, erin, frank-attachment, big, spam].
async fn seed(app: &TestApp) -> Vec<i64> {
    let mut ids = Vec::new();
    for (i, subject) in ["Invoice 1", "Invoice 2"].into_iter().enumerate() {
        ids.push(
            hold_as(
                app,
                ALICE,
                Held {
                    sender: "dave@shop.example",
                    name: "Dave",
                    subject,
                    age: 3000 - i as i64,
                    ..Held::default()
                },
            )
            .await,
        );
    }
    ids.push(
        hold_as(
            app,
            ALICE,
            Held {
                sender: "erin@shop.example",
                name: "Erin <script>",
                subject: "50% off_today",
                age: 2000,
                ..Held::default()
            },
        )
        .await,
    );
    ids.push(
        hold_as(
            app,
            ALICE,
            Held {
                sender: "frank@other.example",
                name: "Frank",
                subject: "the report",
                age: 1000,
                attachments: Some(2),
                ..Held::default()
            },
        )
        .await,
    );
    ids.push(
        hold_as(
            app,
            ALICE,
            Held {
                sender: "grace@big.example",
                name: "Grace",
                subject: "photos",
                age: 500,
                body: 200_000,
                ..Held::default()
            },
        )
        .await,
    );
    ids.push(
        hold_as(
            app,
            ALICE,
            Held {
                sender: "spammer@junk.example",
                name: "",
                subject: "win",
                reason: "spam",
                age: 100,
                ..Held::default()
            },
        )
        .await,
    );
    hold_as(
        app,
        BOB,
        Held {
            sender: "dave@shop.example",
            subject: "Invoice for bob",
            ..Held::default()
        },
    )
    .await;
    ids
}

async fn signed_in_alice(app: &TestApp) -> Browser {
    set_password(app, ALICE, ALICE_PW).await;
    let (b, _) = Browser::signed_in(app, ALICE, ALICE_PW).await;
    b
}

on_both_backends!(
    every_search_operator_finds_what_it_says,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ids = seed(&app).await;
        let b = signed_in_alice(&app).await;
        let [dave1, dave2, erin, frank, big, spam] = ids[..] else {
            unreachable!()
        };
        // Newest first.
        let cases: Vec<(&str, Vec<i64>)> = vec![
            ("", vec![spam, big, frank, erin, dave2, dave1]),
            ("from:dave@shop.example", vec![dave2, dave1]),
            ("from:DAVE@Shop.Example", vec![dave2, dave1]),
            ("from:@shop.example", vec![erin, dave2, dave1]),
            (
                "from:shop.example -from:erin@shop.example",
                vec![dave2, dave1],
            ),
            ("from:fran", vec![frank]),
            ("subject:invoice", vec![dave2, dave1]),
            ("subject:\"invoice 2\"", vec![dave2]),
            ("-subject:invoice", vec![spam, big, frank, erin]),
            // LIKE's wildcards in a search are plain characters.
            ("subject:50%", vec![erin]),
            ("subject:t_d", vec![]),
            ("reason:spam", vec![spam]),
            ("-reason:spam", vec![big, frank, erin, dave2, dave1]),
            ("challenge:none", vec![spam, big, frank, erin, dave2, dave1]),
            ("challenge:sent", vec![]),
            ("has:attachment", vec![frank]),
            ("larger:100K", vec![big]),
            ("smaller:1K reason:spam", vec![spam]),
            ("report", vec![frank]),
            ("carol", vec![]),
            (
                "after:2026-11-27",
                vec![spam, big, frank, erin, dave2, dave1],
            ),
            ("before:2026-11-27", vec![]),
            // Bob's message from dave is never in alice's results.
            ("bob", vec![]),
        ];
        for (q, want) in cases {
            let page = b.get(&format!("/quarantine?q={}", enc(q))).await;
            assert_eq!(page.status, 200, "{q}: {page:?}");
            assert_eq!(listed(&page.body), want, "{q}");
        }
        // The search comes back in its box, escaped.
        let page = b.get(&format!("/quarantine?q={}", enc("\"<b>x\""))).await;
        assert!(
            page.body
                .contains("name=\"q\" value=\"&#34;&#60;b&#62;x&#34;\""),
            "{}",
            page.body
        );
        assert!(!page.body.contains("<b>x"), "{}", page.body);
        // Paging keeps the search.
        let page = b
            .get(&format!(
                "/quarantine?q={}&limit=25",
                enc("from:@shop.example")
            ))
            .await;
        assert!(
            page.body
                .contains("name=\"q\" value=\"from:@shop.example\""),
            "{}",
            page.body
        );
    }
);

on_both_backends!(
    a_search_that_cannot_be_read_is_refused_naming_the_term,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        seed(&app).await;
        let b = signed_in_alice(&app).await;
        for (q, names) in [
            ("form:dave", "unknown search operator"),
            ("reason:whatever", "reason:whatever is not a reason"),
            ("before:2026-02-30", "before:2026-02-30 is not a date"),
            ("larger:lots", "larger:lots is not a size"),
            ("subject:\"open", "a quote is not closed"),
        ] {
            let page = b.get(&format!("/quarantine?q={}", enc(q))).await;
            assert_eq!(page.status, 400, "{q}: {page:?}");
            assert!(
                page.body.contains(&names.replace('"', "&#34;")) || page.body.contains(names),
                "{q}: {}",
                page.body
            );
            assert!(page.body.contains("role=\"alert\""), "{}", page.body);
            // What was typed stays in the box; no list is shown.
            assert!(listed(&page.body).is_empty(), "{q}");
        }
    }
);

on_both_backends!(
    actions_on_a_selection_act_on_exactly_those_and_say_what_they_did,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ids = seed(&app).await;
        let b = signed_in_alice(&app).await;
        let [dave1, dave2, erin, frank, big, spam] = ids[..] else {
            unreachable!()
        };
        let page = b.get("/quarantine").await;
        let csrf = page.csrf();

        // Deliver two chosen messages.
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=deliver&id={dave1}&id={erin}&q=&limit=25"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let to = r.header("location").unwrap().to_owned();
        assert!(to.starts_with("/quarantine?done=act.2.0.0.0.0"), "{to}");
        let after = b.get(&to).await;
        assert!(after.body.contains("2 delivered."), "{}", after.body);
        assert_eq!(app.messages(ALICE).len(), 2);
        assert_eq!(held_ids(&app, ALICE).await, vec![dave2, frank, big, spam]);

        // Nothing happens when the selection names bob's message, an id
        // that does not exist, or nothing; or without the token.
        let bobs = held_ids(&app, BOB).await[0];
        for (form, status) in [
            (
                format!("csrf={csrf}&action=delete&id={dave2}&id={bobs}"),
                404,
            ),
            (
                format!("csrf={csrf}&action=delete&id={dave2}&id=999999"),
                404,
            ),
            (format!("csrf={csrf}&action=delete&id=x"), 400),
            (format!("csrf={csrf}&action=delete"), 400),
            (format!("csrf={csrf}&action=explode&id={dave2}"), 400),
            (format!("action=delete&id={dave2}"), 403),
        ] {
            let r = b.post("/quarantine/actions", &form).await;
            assert_eq!(r.status, status, "{form}: {r:?}");
            assert!(
                r.body.contains("Nothing was changed") || status == 403,
                "{}",
                r.body
            );
        }
        let cross = b
            .post_with(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=delete&id={dave2}"),
                &[("Origin", "http://evil.example")],
            )
            .await;
        assert_eq!(cross.status, 403, "{cross:?}");
        assert_eq!(held_ids(&app, ALICE).await, vec![dave2, frank, big, spam]);
        assert_eq!(held_ids(&app, BOB).await, vec![bobs]);

        // Block the spammer: listed, and their mail deleted.
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=block&id={spam}"),
            )
            .await;
        assert!(
            r.header("location").unwrap().contains("done=act.0.1.1.0.0"),
            "{r:?}"
        );
        let blocked = app
            .store
            .rules(app.mailbox_id(ALICE).await, ListKind::Block)
            .await
            .unwrap();
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].to_line(), "from ^spammer@junk\\.example$");
        assert_eq!(held_ids(&app, ALICE).await, vec![dave2, frank, big]);

        // Allow a domain: the rule, and everything held from it delivered.
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=allow_domain&id={dave2}"),
            )
            .await;
        assert!(
            r.header("location").unwrap().contains("done=act.1.0.1.0.0"),
            "{r:?}"
        );
        let allowed: Vec<String> = app
            .store
            .rules(app.mailbox_id(ALICE).await, ListKind::Allow)
            .await
            .unwrap()
            .iter()
            .map(|r| r.to_line())
            .collect();
        assert!(
            allowed.contains(&"from .*@shop\\.example$".to_owned()),
            "{allowed:?}"
        );
        assert_eq!(held_ids(&app, ALICE).await, vec![frank, big]);
        // Bob's message from the same domain is bob's business.
        assert_eq!(held_ids(&app, BOB).await, vec![bobs]);
    }
);

on_both_backends!(
    everything_matching_a_search_is_acted_on_across_pages,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        for n in 0..30 {
            hold_as(
                &app,
                ALICE,
                Held {
                    sender: &format!("list{}@news.example", n % 3),
                    subject: "newsletter",
                    age: 1000 + n,
                    ..Held::default()
                },
            )
            .await;
        }
        let keep = hold_as(&app, ALICE, Held::default()).await;
        let b = signed_in_alice(&app).await;
        let page = b
            .get(&format!("/quarantine?q={}", enc("from:@news.example")))
            .await;
        assert_eq!(listed(&page.body).len(), 25, "one page of 25");
        assert!(
            page.body.contains("everything matching this search"),
            "{}",
            page.body
        );
        let csrf = page.csrf();
        let r = b
            .post(
                "/quarantine/actions",
                &format!(
                    "csrf={csrf}&action=delete&scope=matching&q={}",
                    enc("from:@news.example")
                ),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert!(
            r.header("location")
                .unwrap()
                .contains("done=act.0.30.0.0.0"),
            "{r:?}"
        );
        assert!(
            r.header("location")
                .unwrap()
                .contains("q=from%3A%40news.example"),
            "{r:?}"
        );
        assert_eq!(held_ids(&app, ALICE).await, vec![keep]);
        // A search that cannot be read acts on nothing.
        let r = b
            .post(
                "/quarantine/actions",
                &format!(
                    "csrf={csrf}&action=delete&scope=matching&q={}",
                    enc("form:x")
                ),
            )
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(held_ids(&app, ALICE).await, vec![keep]);
    }
);

on_both_backends!(
    the_by_sender_view_takes_one_decision_per_sender,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ids = seed(&app).await;
        let b = signed_in_alice(&app).await;
        let page = b.get("/quarantine?view=sender").await;
        assert_eq!(page.status, 200, "{page:?}");
        // dave's two messages are one line; erin's name is escaped.
        assert!(page.body.contains("2 messages"), "{}", page.body);
        assert!(
            page.body.contains("Erin &lt;script&gt;")
                || page.body.contains("Erin &#60;script&#62;"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("<script>"), "{}", page.body);
        let csrf = page.csrf();
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=allow&sender=dave%40shop.example&view=sender"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let to = r.header("location").unwrap().to_owned();
        assert!(
            to.starts_with("/quarantine?view=sender&done=act.2.0.1.0.0"),
            "{to}"
        );
        assert!(
            b.get(&to)
                .await
                .body
                .contains("2 delivered, 1 rule added to your lists.")
        );
        assert_eq!(held_ids(&app, ALICE).await, ids[2..].to_vec());
        assert_eq!(app.messages(ALICE).len(), 2);
        // A sender with nothing held here (bob's, or nobody's): 404.
        let r = b
            .post(
                "/quarantine/actions",
                &format!("csrf={csrf}&action=delete_all&sender=nobody%40x.example"),
            )
            .await;
        assert_eq!(r.status, 404, "{r:?}");
        // The search narrows the senders.
        let page = b
            .get(&format!("/quarantine?view=sender&q={}", enc("reason:spam")))
            .await;
        assert!(page.body.contains("spammer@junk.example"), "{}", page.body);
        assert!(!page.body.contains("frank@other.example"), "{}", page.body);
    }
);

/// `(status, JSON)` of an API call with a bearer token.
async fn api(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        h.push(JSON);
    }
    let r = request_from("127.0.0.1", app.web, method, path, &h, body).await;
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

async fn token_for(app: &TestApp, mailbox: &str) -> String {
    let (token, hash) = boxtrap::web::api::new_api_token();
    app.store
        .create_api_token(
            app.mailbox_id(mailbox).await,
            "test",
            &hash,
            Timestamp::from_secs(T0),
        )
        .await
        .unwrap();
    token
}

on_both_backends!(
    the_json_api_lists_searches_pages_shows_and_acts,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ids = seed(&app).await;
        let [dave1, dave2, erin, frank, big, spam] = ids[..] else {
            unreachable!()
        };
        let token = token_for(&app, ALICE).await;

        let (s, v) = api(&app, &token, "GET", "/api/v1/held?limit=4", "").await;
        assert_eq!(s, 200, "{v}");
        let got: Vec<i64> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, vec![spam, big, frank, erin]);
        assert_eq!(v["items"][0]["reason"], "spam");
        assert_eq!(v["items"][0]["challenge"]["state"], "none");
        assert_eq!(v["items"][2]["attachments"], 2);
        let next = v["next"].as_str().unwrap().to_owned();
        let (_, v) = api(
            &app,
            &token,
            "GET",
            &format!("/api/v1/held?limit=4&after={next}"),
            "",
        )
        .await;
        let got: Vec<i64> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, vec![dave2, dave1]);
        assert!(v["next"].is_null(), "{v}");

        let (_, v) = api(
            &app,
            &token,
            "GET",
            &format!(
                "/api/v1/held?q={}",
                enc("from:@shop.example subject:invoice")
            ),
            "",
        )
        .await;
        assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");

        for (path, names) in [
            ("/api/v1/held?q=form:x", "unknown search operator"),
            ("/api/v1/held?limit=1000", "limit"),
            ("/api/v1/held?after=zzz", "after"),
            ("/api/v1/held?colour=red", "unknown field"),
        ] {
            let (s, v) = api(&app, &token, "GET", path, "").await;
            assert_eq!(s, 400, "{path}: {v}");
            assert!(v["error"].as_str().unwrap().contains(names), "{path}: {v}");
        }

        let (s, v) = api(&app, &token, "GET", &format!("/api/v1/held/{frank}"), "").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["from"], "frank@other.example");
        assert!(v.get("authentication_results").is_some(), "{v}");
        let raw = request_from(
            "127.0.0.1",
            app.web,
            "GET",
            &format!("/api/v1/held/{frank}/raw"),
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.header("content-type"), Some("message/rfc822"));
        assert!(
            raw.body.starts_with("From: Frank <frank@other.example>"),
            "{}",
            raw.body
        );

        // Bob's message is not alice's, by any route.
        let bobs = held_ids(&app, BOB).await[0];
        for path in [
            format!("/api/v1/held/{bobs}"),
            format!("/api/v1/held/{bobs}/raw"),
            "/api/v1/held/x".into(),
        ] {
            let (s, _) = api(&app, &token, "GET", &path, "").await;
            assert_eq!(s, 404, "{path}");
        }
        let (s, v) = api(
            &app,
            &token,
            "POST",
            "/api/v1/held/actions",
            &format!("{{\"action\":\"delete\",\"ids\":[{spam},{bobs}]}}"),
        )
        .await;
        assert_eq!(s, 404, "{v}");
        assert_eq!(held_ids(&app, BOB).await, vec![bobs]);
        assert_eq!(held_ids(&app, ALICE).await.len(), 6);

        for (body, names) in [
            ("{\"action\":\"explode\",\"ids\":[1]}", "not one of"),
            ("{\"action\":\"delete\"}", "Choose at least one"),
            (
                &*format!("{{\"action\":\"delete\",\"ids\":[{spam}],\"query\":\"x\"}}"),
                "not several",
            ),
            ("{\"action\":\"delete\",\"idz\":[1]}", "unknown field `idz`"),
        ] {
            let (s, v) = api(&app, &token, "POST", "/api/v1/held/actions", body).await;
            assert_eq!(s, 400, "{body}: {v}");
            assert!(v["error"].as_str().unwrap().contains(names), "{body}: {v}");
        }
        assert_eq!(held_ids(&app, ALICE).await.len(), 6);

        let (s, v) = api(
            &app,
            &token,
            "POST",
            "/api/v1/held/actions",
            "{\"action\":\"deliver_all\",\"query\":\"from:@shop.example\"}",
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["delivered"], 3, "{v}");
        assert_eq!(v["targets"], 3, "{v}");
        let (s, v) = api(
            &app,
            &token,
            "POST",
            "/api/v1/held/actions",
            "{\"action\":\"ignore\",\"senders\":[\"spammer@junk.example\"]}",
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["deleted"], 1, "{v}");
        assert_eq!(
            v["rules_added"][0], "ignore from ^spammer@junk\\.example$",
            "{v}"
        );
        assert_eq!(held_ids(&app, ALICE).await, vec![frank, big]);
    }
);

on_both_backends!(
    a_sessions_api_actions_need_its_csrf_header,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let ids = seed(&app).await;
        let b = signed_in_alice(&app).await;
        let cookie = format!("boxtrap_session={}", b.cookie.clone().unwrap());
        let body = format!("{{\"action\":\"delete\",\"ids\":[{}]}}", ids[0]);
        let r = request_from(
            "127.0.0.1",
            app.web,
            "POST",
            "/api/v1/held/actions",
            &[("Cookie", &cookie), JSON],
            &body,
        )
        .await;
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.body.contains("X-CSRF-Token"), "{}", r.body);
        assert_eq!(held_ids(&app, ALICE).await.len(), 6);
        // Reading needs no token.
        let r = request_from(
            "127.0.0.1",
            app.web,
            "GET",
            "/api/v1/held",
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        // With the page's token (the session's), it acts.
        let csrf = b.get("/quarantine").await.csrf();
        let r = request_from(
            "127.0.0.1",
            app.web,
            "POST",
            "/api/v1/held/actions",
            &[("Cookie", &cookie), JSON, ("X-CSRF-Token", &csrf)],
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(held_ids(&app, ALICE).await.len(), 5);
    }
);
