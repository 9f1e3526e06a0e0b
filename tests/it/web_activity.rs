//! The owner's activity log over real HTTP: what happened to a message
//! that arrived over SMTP and was delivered from the web, linked from its
//! page; the verification link's use with the client address; filters,
//! bad filters refused by name, keyset paging; the CSV export with
//! formula injection and hostile text; owners never see each other's
//! lines. The small HTTP client here is shared with `web_admin`.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::Timestamp;
use boxtrap::store::activity::NewEvent;
use boxtrap::store::held::ActivityAction;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ALICE: &str = "alice@example.test";
pub const BOB: &str = "bob@example.test";
pub const ALICE_PW: &str = "alice correct horse";
pub const BOB_PW: &str = "bob battery staple";

/// One HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CSRF token in the page's forms.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        self.body[at + 19..at + 19 + 64].to_owned()
    }
}

async fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut stream = TcpStream::connect(to).await.unwrap();
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
pub struct Browser {
    web: SocketAddr,
    cookie: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            web: app.web,
            cookie: None,
        }
    }

    fn cookie_header(&self) -> Option<String> {
        self.cookie.as_ref().map(|c| format!("boxtrap_session={c}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        let cookie = self.cookie_header();
        let h: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        request(self.web, "GET", path, &h, "").await
    }

    /// A POST with extra headers (an Origin of our own unless given).
    pub async fn post_with(&self, path: &str, form: &str, extra: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie_header();
        let origin = format!("http://{}", self.web);
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("origin")) {
            h.push(("Origin", origin.as_str()));
        }
        if let Some(c) = &cookie {
            h.push(("Cookie", c.as_str()));
        }
        request(self.web, "POST", path, &h, form).await
    }

    pub async fn post(&self, path: &str, form: &str) -> Resp {
        self.post_with(path, form, &[]).await
    }

    /// Signs in, expecting success.
    pub async fn signed_in(app: &TestApp, address: &str, password: &str) -> Browser {
        let h = boxtrap::password::hash(password).unwrap();
        app.store
            .set_password_hash(&addr_of(address), &h)
            .await
            .unwrap();
        let mut b = Browser::new(app);
        let r = b
            .post(
                "/login",
                &format!("address={}&password={}", enc(address), enc(password)),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let c = r.header("set-cookie").unwrap();
        let v = c.strip_prefix("boxtrap_session=").unwrap();
        b.cookie = Some(v.split(';').next().unwrap().to_owned());
        b
    }
}

/// Form- and URL-encodes a value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The table rows of a page (`<tr>` … `</tr>`), header row excluded.
pub fn rows(body: &str) -> Vec<&str> {
    body.split("<tr")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or(""))
        .filter(|r| !r.contains("<th"))
        .collect()
}

fn mail(from: &str, subject: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello Alice.\r\n"
    )
}

async fn held_id_of(app: &TestApp, subject: &str) -> i64 {
    app.held()
        .await
        .iter()
        .find(|h| h.subject == subject)
        .unwrap_or_else(|| panic!("{subject} is not held"))
        .id
}

on_both_backends!(
    a_message_from_smtp_to_delivery_is_in_the_log_and_linked_from_its_page,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on(ALICE).await;
        app.send(
            "carol@example.org",
            &[ALICE],
            &mail("Carol <carol@example.org>", "Lunch?", "c1@example.org"),
        )
        .await;
        app.send(
            "dave@example.org",
            &[ALICE],
            &mail("dave@example.org", "Other", "d1@example.org"),
        )
        .await;
        let id = held_id_of(&app, "Lunch?").await;
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;

        let page = b.get(&format!("/quarantine/{id}")).await;
        assert_eq!(page.status, 200);
        let link = format!("<a href=\"/activity?held={id}\">All events of this message</a>");
        assert!(page.body.contains(&link), "{}", page.body);
        let r = b
            .post(
                &format!("/quarantine/{id}/deliver"),
                &format!("csrf={}", page.csrf()),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(app.messages(ALICE).len(), 1);

        let log = b.get(&format!("/activity?held={id}")).await;
        assert_eq!(log.status, 200, "{}", log.body);
        let lines = rows(&log.body);
        // Newest first: delivered, challenge sent, held.
        assert_eq!(lines.len(), 3, "{}", log.body);
        assert!(lines[0].contains("<td>Delivered</td>"), "{}", lines[0]);
        assert!(lines[0].contains("Lunch? (owner)"), "{}", lines[0]);
        assert!(lines[1].contains("<td>Challenge sent</td>"), "{}", lines[1]);
        assert!(lines[2].contains("<td>Held</td>"), "{}", lines[2]);
        assert!(lines.iter().all(|l| l.contains("carol@example.org")));
        assert!(!log.body.contains("dave@example.org"), "{}", log.body);

        // The whole log has both messages; each line links its message's events.
        let all = b.get("/activity").await;
        assert!(all.body.contains("dave@example.org"));
        assert!(all.body.contains(&format!("href=\"/activity?held={id}\"")));
        assert!(
            all.body
                .contains("Times and dates are in UTC (change it in")
        );
        assert!(all.body.contains("<label for=\"kind\">Kind</label>"));

        // Bob sees none of it, not even by alice's message number.
        let bob = Browser::signed_in(&app, BOB, BOB_PW).await;
        for path in ["/activity".to_owned(), format!("/activity?held={id}")] {
            let r = bob.get(&path).await;
            assert_eq!(r.status, 200);
            assert!(rows(&r.body).is_empty(), "{}", r.body);
            assert!(!r.body.contains("carol@example.org"));
        }
        let csv = bob.get(&format!("/activity.csv?held={id}")).await;
        assert_eq!(csv.body.lines().count(), 1, "header only: {}", csv.body);
    }
);

on_both_backends!(
    a_used_verification_link_is_logged_with_the_client_address,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on(ALICE).await;
        app.send(
            "carol@example.org",
            &[ALICE],
            &mail("carol@example.org", "Hi", "c2@example.org"),
        )
        .await;
        app.outbound.run_once().await.unwrap();
        let c = app.challenges_to("carol@example.org").remove(0);
        let (status, _) = app.http("GET", &format!("/verify/{}", c.token)).await;
        assert_eq!(status, 200);
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let links = b.get("/activity?kind=links").await;
        assert!(
            rows(&links.body).is_empty(),
            "a GET is no use: {}",
            links.body
        );
        let (status, _) = app.http("POST", &format!("/verify/{}", c.token)).await;
        assert_eq!(status, 200);
        let links = b.get("/activity?kind=links").await;
        let lines = rows(&links.body);
        assert_eq!(lines.len(), 1, "{}", links.body);
        assert!(lines[0].contains("<td>Link used</td>"), "{}", lines[0]);
        assert!(lines[0].contains("carol@example.org"));
        assert!(
            lines[0].contains("verification link, 127.0.0.1"),
            "{}",
            lines[0]
        );
        let delivered = b.get("/activity?kind=delivered").await;
        assert!(delivered.body.contains("Hi (link)"), "{}", delivered.body);
    }
);

/// Writes `n` lines in alice's log, one a minute from `start`.
async fn lines_in_log(app: &TestApp, n: i64, start: i64, action: ActivityAction, sender: &str) {
    let id = app.mailbox_id(ALICE).await;
    for i in 0..n {
        let detail = format!("line {i}");
        app.store
            .log_event(&NewEvent {
                held_id: Some(1000 + i),
                ..NewEvent::new(
                    id,
                    Timestamp::from_secs(start + i * 60),
                    action,
                    sender,
                    &detail,
                )
            })
            .await
            .unwrap();
    }
}

/// 2026-11-28 00:00 UTC.
const DAY: i64 = 1_795_824_000;

on_both_backends!(
    filters_page_and_bad_filters_are_refused_by_name,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        // 60 deliveries on 2026-11-28, 3 deletions the next day.
        lines_in_log(&app, 60, DAY, ActivityAction::Released, "x@example.org").await;
        lines_in_log(
            &app,
            3,
            DAY + 86400,
            ActivityAction::Deleted,
            "y@example.org",
        )
        .await;
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;

        // Default page: 50, newest first, with an "Older" link.
        let p1 = b.get("/activity").await;
        let lines = rows(&p1.body);
        assert_eq!(lines.len(), 50);
        assert!(lines[0].contains("<td>Deleted</td>") && lines[0].contains("line 2"));
        assert!(lines[3].contains("<td>Delivered</td>") && lines[3].contains("line 59"));
        let at = p1.body.find("&amp;after=").expect("an Older link");
        let cursor: String = p1.body[at + 11..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        let p2 = b.get(&format!("/activity?limit=50&after={cursor}")).await;
        let older = rows(&p2.body);
        assert_eq!(older.len(), 13, "{}", p2.body);
        assert!(older[12].contains("line 0"));
        assert!(!p2.body.contains("&amp;after="), "the last page");
        assert!(p2.body.contains(">Newest</a>"));

        // Kind and dates.
        let deleted = b.get("/activity?kind=deleted").await;
        assert_eq!(rows(&deleted.body).len(), 3);
        let day1 = b
            .get("/activity?since=2026-11-28&until=2026-11-28&limit=100")
            .await;
        assert_eq!(rows(&day1.body).len(), 60);
        let day2 = b.get("/activity?since=2026-11-29").await;
        assert_eq!(rows(&day2.body).len(), 3);
        let one = b.get("/activity?held=1059&kind=delivered").await;
        let l = rows(&one.body);
        assert_eq!(l.len(), 1);
        assert!(l[0].contains("line 59"));
        // Filters survive paging.
        let p = b.get("/activity?kind=delivered&limit=25").await;
        assert!(
            p.body.contains("?limit=25&amp;kind=delivered&amp;after="),
            "{}",
            p.body
        );

        // Bad filters: 400, the field named, what was typed kept (escaped).
        for (query, named) in [
            (
                "kind=%3Cscript%3E",
                "Kind: &#34;&#60;script&#62;&#34; is not a kind of event",
            ),
            ("held=abc", "Message: &#34;abc&#34; is not a message number"),
            (
                "since=2026-02-30",
                "From: &#34;2026-02-30&#34; is not a date",
            ),
            ("until=tomorrow", "To: &#34;tomorrow&#34; is not a date"),
            (
                "since=2026-11-29&until=2026-11-28",
                "To: the date is before the From date.",
            ),
            (
                "limit=1000",
                "Per page: the page size must be 25, 50 or 100.",
            ),
            ("after=garbage!", "This page link is not valid."),
        ] {
            let r = b.get(&format!("/activity?{query}")).await;
            assert_eq!(r.status, 400, "{query}");
            assert!(r.body.contains(named), "{query}: {}", r.body);
            assert!(rows(&r.body).is_empty());
        }
        let r = b.get("/activity?held=%3Cb%3Ex").await;
        assert!(r.body.contains("value=\"&#60;b&#62;x\""), "{}", r.body);
        assert!(!r.body.contains("<b>x"));
        let r = b.get("/activity.csv?kind=nope").await;
        assert_eq!(r.status, 400);
        assert!(r.body.contains("Kind:"), "{}", r.body);

        // Signed out: sent to sign in, filters kept.
        let r = Browser::new(&app).get("/activity?kind=deleted").await;
        assert_eq!(r.status, 303);
        assert_eq!(
            r.header("location"),
            Some("/login?next=/activity%3Fkind%3Ddeleted")
        );
        let r = Browser::new(&app).get("/activity.csv").await;
        assert_eq!(r.status, 303);
    }
);

on_both_backends!(
    the_csv_export_defuses_formulas_and_keeps_hostile_text_as_data,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let id = app.mailbox_id(ALICE).await;
        let hostile = [
            ("=HYPERLINK(\"http://evil.example\",\"click\")", "+1+2"),
            ("-2@example.org", "@SUM(A1:A9)"),
            (
                "eve@example.org",
                "<script>alert(1)</script>, \"quoted\"\r\nsecond line\u{1b}[1m",
            ),
        ];
        for (i, (sender, detail)) in hostile.iter().enumerate() {
            app.store
                .log_event(&NewEvent::new(
                    id,
                    Timestamp::from_secs(DAY + i as i64),
                    ActivityAction::Held,
                    sender,
                    detail,
                ))
                .await
                .unwrap();
        }
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let r = b.get("/activity.csv").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"activity-alice@example.test-2026-11-27.csv\"")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let mut csv = csv::Reader::from_reader(r.body.as_bytes());
        assert_eq!(
            csv.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "time_utc",
                "action",
                "sender",
                "detail",
                "message",
                "actor",
                "client_ip"
            ]
        );
        let recs: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        // Newest first.
        assert_eq!(&recs[0][0], "2026-11-28T00:00:02Z");
        assert_eq!(&recs[0][1], "held");
        assert_eq!(&recs[0][2], "eve@example.org");
        assert_eq!(
            &recs[0][3],
            "<script>alert(1)</script>, \"quoted\"\r\nsecond line\u{1b}[1m"
        );
        assert_eq!(&recs[1][2], "'-2@example.org");
        assert_eq!(&recs[1][3], "'@SUM(A1:A9)");
        assert_eq!(
            &recs[2][2],
            "'=HYPERLINK(\"http://evil.example\",\"click\")"
        );
        assert_eq!(&recs[2][3], "'+1+2");
        for rec in &recs {
            for field in rec.iter() {
                assert!(!field.starts_with(['=', '+', '-', '@']), "{field:?}");
            }
        }
        // The same filters as the page.
        let r = b.get("/activity.csv?kind=delivered").await;
        assert_eq!(r.body.lines().count(), 1);
        let r = b
            .get("/activity.csv?since=2026-11-28&until=2026-11-28")
            .await;
        assert_eq!(
            csv::Reader::from_reader(r.body.as_bytes())
                .records()
                .count(),
            3
        );

        // The page shows the same text escaped, control characters visible.
        let page = b.get("/activity").await;
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
        );
        assert!(!page.body.contains("<script>"));
        assert!(page.body.contains('\u{241b}') && !page.body.contains('\u{1b}'));
        assert!(
            page.body.contains("href=\"/activity.csv\""),
            "{}",
            page.body
        );
    }
);

on_both_backends!(
    list_changes_on_the_web_are_in_the_log,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let csrf = b.get("/activity").await.csrf();
        let r = b
            .post(
                "/lists/add",
                &format!("csrf={csrf}&list=block&mode=simple&entry=%2A%40spam.example"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let r = b
            .post(
                "/lists/import",
                &format!("csrf={csrf}&list=allow&how=add&text=from+%5Ecarol%40example%5C.org%24"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let log = b.get("/activity?kind=lists").await;
        let lines = rows(&log.body);
        assert_eq!(lines.len(), 2, "{}", log.body);
        assert!(lines[0].contains("<td>List changed</td>"));
        assert!(
            lines[0].contains("imported into the allow list: 1 rules read, 1 new"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("added to the block list: from"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("spam"), "{}", lines[1]);
    }
);

on_both_backends!(
    the_api_gives_the_same_lines_with_filters_and_paging,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        lines_in_log(&app, 7, DAY, ActivityAction::Released, "x@example.org").await;
        lines_in_log(
            &app,
            2,
            DAY + 86400,
            ActivityAction::Deleted,
            "<b>@example.org",
        )
        .await;
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let r = b.get("/api/v1/activity?limit=5").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[0]["action"], "deleted");
        assert_eq!(items[0]["sender"], "<b>@example.org");
        assert_eq!(items[0]["at"], "2026-11-29T00:01:00Z");
        assert_eq!(items[0]["held_id"], 1001);
        assert_eq!(items[2]["detail"], "line 6");
        let next = v["next"].as_str().unwrap();
        let r = b
            .get(&format!("/api/v1/activity?limit=5&after={next}"))
            .await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 4);
        assert!(v["next"].is_null());
        let r = b.get("/api/v1/activity?kind=deleted").await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);

        for (query, named) in [
            ("limit=0", "limit: \"0\" is not a number from 1 to 500"),
            ("limit=501", "limit:"),
            ("kind=x", "Kind:"),
            ("since=2026-13-01", "From:"),
        ] {
            let r = b.get(&format!("/api/v1/activity?{query}")).await;
            assert_eq!(r.status, 400, "{query}");
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert!(
                v["error"].as_str().unwrap().starts_with(named),
                "{query}: {}",
                r.body
            );
        }
        // Bob's calls never see alice's lines; no session: 401.
        let bob = Browser::signed_in(&app, BOB, BOB_PW).await;
        let r = bob.get("/api/v1/activity").await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["items"].as_array().unwrap().is_empty(), "{}", r.body);
        let r = Browser::new(&app).get("/api/v1/activity").await;
        assert_eq!(r.status, 401);
    }
);

on_both_backends!(
    the_page_shows_times_in_the_owners_zone_and_says_which_the_csv_stays_utc,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        // 2026-11-28 00:00 UTC is 01:00 in Berlin (CET).
        lines_in_log(&app, 1, DAY, ActivityAction::Released, "x@example.org").await;
        let id = app.mailbox_id(ALICE).await;
        let mut s = app.store.mailbox_settings(id).await.unwrap();
        s.time_zone = "Europe/Berlin".into();
        app.store.update_mailbox_settings(&s).await.unwrap();
        let b = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let page = b.get("/activity").await;
        assert_eq!(page.status, 200);
        assert!(
            page.body
                .contains("Times and dates are in Europe/Berlin (change it in"),
            "{}",
            page.body
        );
        let lines = rows(&page.body);
        assert_eq!(lines.len(), 1, "{}", page.body);
        assert!(
            lines[0].contains("<td>2026-11-28 01:00:00 CET</td>"),
            "{}",
            lines[0]
        );
        let csv = b.get("/activity.csv").await;
        let mut r = csv::Reader::from_reader(csv.body.as_bytes());
        assert_eq!(&r.headers().unwrap()[0], "time_utc");
        let recs: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 1);
        assert_eq!(&recs[0][0], "2026-11-28T00:00:00Z");
        // Dates are Berlin days on the page and in the CSV, UTC days in the
        // API: 23:30 UTC on the 27th is the 28th in Berlin.
        lines_in_log(
            &app,
            1,
            DAY - 1800,
            ActivityAction::Deleted,
            "y@example.org",
        )
        .await;
        let day = "since=2026-11-28&until=2026-11-28";
        let page = b.get(&format!("/activity?{day}")).await;
        let lines = rows(&page.body);
        assert_eq!(lines.len(), 2, "{}", page.body);
        assert!(
            lines[1].contains("<td>2026-11-28 00:30:00 CET</td>"),
            "{}",
            lines[1]
        );
        assert!(page.body.contains("From (date, Europe/Berlin)"));
        let csv = b.get(&format!("/activity.csv?{day}")).await;
        assert_eq!(csv.body.lines().count(), 3, "{}", csv.body);
        assert!(csv.body.contains("2026-11-27T23:30:00Z"), "{}", csv.body);
        let api = b.get(&format!("/api/v1/activity?{day}")).await;
        let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{v}");
        assert_eq!(items[0]["at"], "2026-11-28T00:00:00Z");
        let page = b.get("/activity?since=2026-11-27&until=2026-11-27").await;
        assert!(rows(&page.body).is_empty(), "{}", page.body);
        // Bob's zone is his own: UTC.
        let bob = Browser::signed_in(&app, BOB, BOB_PW).await;
        assert!(
            bob.get("/activity")
                .await
                .body
                .contains("Times and dates are in UTC")
        );
    }
);
