//! The owner's digest of newly held mail: mail held over SMTP, the digest
//! pass driven by hand (`Digests::run_once`), the digest read from alice's
//! Maildir, its links used over HTTP (GET shows, only POST with the page's
//! hidden field acts).

use crate::on_both_backends;
use crate::support::*;
use boxtrap::digest::token::{DigestAction, DigestClaims, issue};
use boxtrap::digest::{DigestReport, Digests};
use boxtrap::spam::GTUBE;
use boxtrap::store::digest::DigestFrequency;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.test";

async fn alice_challenging(backend: Backend, max_messages: u64) -> TestApp {
    let app = TestApp::spawn_with(backend, |c| {
        // GTUBE (1000 points) is held as spam instead of refused.
        c.spam.reject_score = 5000.0;
        c.challenge.quarantine_max_messages = max_messages;
    })
    .await;
    app.challenge_on(ALICE).await;
    app
}

async fn hold(app: &TestApp, from: &str, name: &str, subject: &str, body: &str) {
    let r = send_raw(
        app,
        from,
        ALICE,
        &format!("From: {name} <{from}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n{body}\r\n"),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
}

async fn run(app: &TestApp) -> DigestReport {
    Digests::new(app.quarantine.clone())
        .run_once()
        .await
        .unwrap()
}

fn texts(app: &TestApp) -> Vec<String> {
    app.messages(ALICE)
        .iter()
        .map(|m| String::from_utf8_lossy(&m.1).into_owned())
        .collect()
}

/// The digests among alice's mail.
fn digests(app: &TestApp) -> Vec<String> {
    texts(app)
        .into_iter()
        .filter(|t| t.contains("Subject: Quarantine digest"))
        .collect()
}

/// The text part and the HTML part of a digest.
fn parts(digest: &str) -> (String, String) {
    let text_at = digest
        .find("Content-Type: text/plain")
        .expect("a text part");
    let html_at = digest
        .find("Content-Type: text/html")
        .expect("an HTML part");
    (
        digest[text_at..html_at].to_owned(),
        digest[html_at..].to_owned(),
    )
}

/// The path of the link on the text part's line `   {label}: URL` of the
/// item whose subject line is `subject` (`None`: that item has no such link).
fn item_link(digest: &str, subject: &str, label: &str) -> Option<String> {
    let (text, _) = parts(digest);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("Subject: {subject}"))
        .unwrap_or_else(|| panic!("no item {subject:?} in {text}"));
    lines[at..]
        .iter()
        .take(6)
        .find_map(|l| l.trim().strip_prefix(&format!("{label}: ")))
        .map(path_of)
}

fn path_of(url: &str) -> String {
    let at = url.find("/digest/").expect("a digest link");
    url[at..].trim().to_owned()
}

fn review_all(digest: &str) -> String {
    let (text, _) = parts(digest);
    text.lines()
        .find_map(|l| l.strip_prefix("Review all in this digest: "))
        .map(path_of)
        .expect("a review-all link")
}

/// The hidden field a confirmation page carries.
fn confirm_field(page: &str) -> String {
    let at = page
        .find("name=\"confirm\" value=\"")
        .expect("a confirm field")
        + "name=\"confirm\" value=\"".len();
    page[at..].chars().take_while(|c| *c != '"').collect()
}

/// A form POST: (status, body).
async fn post(addr: SocketAddr, path: &str, form: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("no HTTP response within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

on_both_backends!(
    a_digest_lists_new_held_mail_and_its_links_act_only_on_post,
    |backend| async move {
        let app = alice_challenging(backend, 0).await;
        hold(&app, "bob@example.org", "Bob", "Lunch?", "Hello Alice.").await;
        hold(
            &app,
            "eve@example.org",
            "\"Eve <img src=x onerror=alert(2)>\"",
            "<script>alert(1)</script>",
            "Hi.",
        )
        .await;
        hold(
            &app,
            "spammer@example.net",
            "Spammer",
            "Cheap pills",
            std::str::from_utf8(GTUBE).unwrap(),
        )
        .await;
        assert_eq!(app.held().await.len(), 3);
        assert!(app.messages(ALICE).is_empty());

        assert_eq!(run(&app).await.sent, 1);
        let all = digests(&app);
        assert_eq!(all.len(), 1, "one digest");
        assert_eq!(app.messages(ALICE).len(), 1, "only the digest");
        let d = &all[0];
        assert!(
            d.lines()
                .any(|l| l.trim_end() == "Auto-Submitted: auto-generated"),
            "{d}"
        );
        assert!(d.contains("Subject: Quarantine digest: 3 new messages held"));
        assert!(d.contains("Content-Type: multipart/alternative"));
        let (text, html) = parts(d);
        assert!(text.contains("3 new messages were held since the last digest."));
        assert!(text.contains("Subject: Lunch?"));
        assert!(text.contains("From: Bob <bob@example.org>"));
        // The challenges are still in the outbound queue: "queued", as the
        // quarantine page says, not "sent"; times in alice's zone (UTC).
        assert!(
            text.contains("Challenge: queued to be sent, not sent yet"),
            "{text}"
        );
        assert!(!text.contains("Challenge: sent"), "{text}");
        assert!(text.contains("Times are in UTC"), "{text}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!text.contains("quarantine is full"));
        // High-score mail: review only.
        assert!(item_link(d, "Cheap pills", "Review").is_some());
        assert_eq!(item_link(d, "Cheap pills", "Deliver"), None);
        assert!(text.contains("High spam score: no one-click deliver"));

        // Nothing new: nothing sent.
        assert_eq!(run(&app).await.sent, 0);
        assert_eq!(app.messages(ALICE).len(), 1);

        // GET shows and changes nothing.
        let deliver = item_link(d, "Lunch?", "Deliver").expect("a deliver link");
        let (status, page) = app.http("GET", &deliver).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("Lunch?") && page.contains("Deliver it"),
            "{page}"
        );
        // Kept 15 days: the message (and its link) expires then.
        let expires = boxtrap::clock::Timestamp::from_secs(T0 + 15 * 86400).log_format();
        assert!(
            page.contains(&format!("<th>Expires</th><td>{expires} UTC")),
            "{page}"
        );
        // Once the queue sent it, the page says when.
        app.outbound.run_once().await.unwrap();
        let (_, page) = app.http("GET", &deliver).await;
        let at = boxtrap::clock::Timestamp::from_secs(T0).log_format();
        assert!(
            page.contains(&format!(
                "<th>Challenge</th><td>sent {at} UTC, no answer yet"
            )),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"/quarantine/"),
            "an onward link: {page}"
        );
        let (status, _) = app.http("HEAD", &deliver).await;
        assert_eq!(status, 200);
        assert_eq!(app.held().await.len(), 3);
        assert_eq!(app.messages(ALICE).len(), 1);
        // A POST without the page's hidden field does nothing either.
        let (status, _) = post(app.web, &deliver, "").await;
        assert_eq!(status, 400);
        let (status, _) = post(app.web, &deliver, "confirm=AAAAAAAAAAAAAAAAAAAAAA").await;
        assert_eq!(status, 400);
        assert_eq!(app.held().await.len(), 3);
        // The page's button delivers exactly that message.
        let confirm = confirm_field(&page);
        let (status, done) = post(app.web, &deliver, &format!("confirm={confirm}")).await;
        assert_eq!(status, 200, "{done}");
        assert!(
            done.contains("The message was delivered into the mailbox alice@example.test."),
            "{done}"
        );
        assert!(
            done.contains("<a href=\"/quarantine\">Go to your quarantine (sign in if asked)</a>"),
            "{done}"
        );
        let held = app.held().await;
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|h| h.subject != "Lunch?"));
        let mail = texts(&app);
        assert_eq!(mail.len(), 2);
        assert_eq!(
            mail.iter()
                .filter(|t| t.lines().any(|l| l.trim_end() == "Subject: Lunch?")
                    && t.contains("Hello Alice."))
                .count(),
            1
        );
        // A second POST is harmless.
        let (status, again) = post(app.web, &deliver, &format!("confirm={confirm}")).await;
        assert_eq!(status, 200);
        assert!(again.contains("already been delivered"), "{again}");
        assert_eq!(app.messages(ALICE).len(), 2);

        // Tampered, another mailbox's, unknown: one 404, nothing changes.
        let token = deliver.trim_start_matches("/digest/").to_owned();
        let eve = item_link(d, "<script>alert(1)</script>", "Deliver").unwrap();
        let eve_token = eve.trim_start_matches("/digest/");
        let mut chars: Vec<char> = eve_token.chars().collect();
        chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        let eve_id = app
            .held()
            .await
            .into_iter()
            .find(|h| h.sender == "eve@example.org")
            .unwrap()
            .id;
        let keyring = app.quarantine.challenges().keyring();
        let bob_id = app.mailbox_id("bob@example.test").await;
        let alice_id = app.mailbox_id(ALICE).await;
        let expires = boxtrap::clock::Timestamp::from_secs(T0 + 86400);
        let claims = |mailbox_id, mailbox| DigestClaims {
            action: DigestAction::Deliver,
            mailbox_id,
            mailbox,
            first: eve_id,
            last: eve_id,
            expires,
        };
        // Bob's genuine token naming alice's message, and alice's id with
        // bob's address.
        let bobs = issue(&keyring, &claims(bob_id, "bob@example.test"));
        let mixed = issue(&keyring, &claims(alice_id, "bob@example.test"));
        let unknown = issue(&keyring, &claims(alice_id + 1000, "nobody@example.test"));
        let (bad_status, bad_page) = app.http("GET", &format!("/digest/{tampered}")).await;
        assert_eq!(bad_status, 404);
        for bad in [
            tampered.as_str(),
            bobs.as_str(),
            mixed.as_str(),
            unknown.as_str(),
            &token[..token.len() - 1],
            "x",
        ] {
            let path = format!("/digest/{bad}");
            let (status, page) = app.http("GET", &path).await;
            assert_eq!((status, &page), (404, &bad_page), "{bad}");
            let (status, page) = post(app.web, &path, "confirm=x").await;
            assert_eq!((status, &page), (404, &bad_page), "{bad}");
        }
        // A digest token is no challenge token, nor the other way round.
        let (status, _) = app.http("GET", &format!("/verify/{token}")).await;
        assert!((400..500).contains(&status), "{status}");
        let (status, _) = post(app.web, &format!("/verify/{token}"), "").await;
        assert!((400..500).contains(&status), "{status}");
        // An expired token too.
        let expired = issue(
            &keyring,
            &DigestClaims {
                expires: boxtrap::clock::Timestamp::from_secs(T0 - 1),
                ..claims(alice_id, ALICE)
            },
        );
        let (status, page) = app.http("GET", &format!("/digest/{expired}")).await;
        assert_eq!((status, &page), (404, &bad_page));
        assert_eq!(app.held().await.len(), 2);
        assert_eq!(app.messages(ALICE).len(), 2);

        // The high-score item's review page offers no delivery.
        let review = item_link(d, "Cheap pills", "Review").unwrap();
        let (status, page) = app.http("GET", &review).await;
        assert_eq!(status, 200);
        assert!(!page.contains("<form"), "{page}");
        assert!(page.contains("high spam score"), "{page}");
        // Eve's review page: escaped, with a deliver button.
        let review = item_link(d, "<script>alert(1)</script>", "Review").unwrap();
        let (_, page) = app.http("GET", &review).await;
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "{page}"
        );
        assert!(page.contains("Deliver it"));

        // Review all: lists what is left; its button delivers all but the spam.
        let all = review_all(d);
        let (status, page) = app.http("GET", &all).await;
        assert_eq!(status, 200);
        assert!(page.contains("Cheap pills") && page.contains("&lt;script&gt;"));
        assert!(!page.contains("Lunch?"), "delivered already");
        assert!(page.contains("Deliver all 1 listed"), "{page}");
        assert_eq!(app.held().await.len(), 2);
        let (status, done) =
            post(app.web, &all, &format!("confirm={}", confirm_field(&page))).await;
        assert_eq!(status, 200, "{done}");
        assert!(done.contains("1 message delivered"), "{done}");
        let held = app.held().await;
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].subject, "Cheap pills");
        assert_eq!(app.messages(ALICE).len(), 3);
        // The deliver link of a message delivered by "review all".
        let (status, page) = post(app.web, &eve, "confirm=x").await;
        assert_eq!(status, 400, "{page}");
    }
);

on_both_backends!(frequency_never_and_weekly, |backend| async move {
    let app = alice_challenging(backend, 0).await;
    let alice = app.mailbox_id(ALICE).await;
    app.store
        .set_digest(alice, DigestFrequency::Never)
        .await
        .unwrap();
    hold(&app, "bob@example.org", "Bob", "First", "one").await;
    assert_eq!(run(&app).await.sent, 0);
    assert!(app.messages(ALICE).is_empty());

    app.store
        .set_digest(alice, DigestFrequency::Weekly)
        .await
        .unwrap();
    assert_eq!(run(&app).await.sent, 1);
    hold(&app, "carol@example.org", "Carol", "Second", "two").await;
    app.clock.advance_secs(86400);
    assert_eq!(run(&app).await.sent, 0, "a day is not a week");
    app.clock.advance_secs(6 * 86400 - 1);
    assert_eq!(run(&app).await.sent, 0, "nor is a second less");
    app.clock.advance_secs(1);
    assert_eq!(run(&app).await.sent, 1);
    let all = digests(&app);
    assert_eq!(all.len(), 2);
    let second = all
        .iter()
        .find(|d| d.contains("Subject: Second"))
        .expect("the second digest");
    assert!(second.contains("1 new message was held"), "{second}");
    assert!(!second.contains("Subject: First"), "only what is new");
    assert_eq!(run(&app).await.sent, 0);
});

on_both_backends!(
    a_full_quarantine_is_said_first_and_sends_a_digest_once_a_day,
    |backend| async move {
        let app = alice_challenging(backend, 2).await;
        hold(&app, "bob@example.org", "Bob", "One", "1").await;
        hold(&app, "carol@example.org", "Carol", "Two", "2").await;
        assert_eq!(run(&app).await.sent, 1);
        let d = &digests(&app)[0];
        let (text, html) = parts(d);
        let warning = "Your quarantine is full: new mail is refused with 452 until you release or delete some.";
        let at = text.find(warning).expect("the warning");
        assert!(at < text.find("2 new messages").unwrap(), "said first");
        assert!(html.contains(warning));
        // The same day: nothing more.
        app.clock.advance_secs(3600);
        assert_eq!(run(&app).await.sent, 0);
        // A day later, still full, nothing new: a digest says so.
        app.clock.advance_secs(86400);
        assert_eq!(run(&app).await.sent, 1);
        let all = digests(&app);
        let second = all
            .iter()
            .find(|d| d.contains("No new mail was held"))
            .expect("a warning-only digest");
        assert!(second.contains("Subject: Quarantine digest: your quarantine is full"));
        assert!(second.contains(warning));
        assert_eq!(run(&app).await.sent, 0);
    }
);

on_both_backends!(
    a_digest_lists_the_newest_twenty_and_counts_the_rest,
    |backend| async move {
        let app = alice_challenging(backend, 0).await;
        for i in 0..23 {
            hold(
                &app,
                &format!("sender{i}@example.org"),
                "Someone",
                &format!("Message {i}"),
                "x",
            )
            .await;
        }
        assert_eq!(run(&app).await.sent, 1);
        let d = &digests(&app)[0];
        let (text, html) = parts(d);
        assert!(text.contains("23 new messages were held"), "{text}");
        assert!(text.contains("... and 3 more."), "{text}");
        assert!(html.contains("and 3 more."));
        assert_eq!(text.matches("   Review: ").count(), 20);
        assert!(text.contains("Subject: Message 22") && text.contains("Subject: Message 3"));
        assert!(
            !text.contains("Subject: Message 2\n"),
            "the oldest are counted, not listed"
        );
        // Review all shows all 23 and delivers them.
        let all = review_all(d);
        let (_, page) = app.http("GET", &all).await;
        assert!(page.contains("Message 0") && page.contains("Deliver all 23 listed"));
        let (status, done) =
            post(app.web, &all, &format!("confirm={}", confirm_field(&page))).await;
        assert_eq!(status, 200);
        assert!(done.contains("23 messages delivered"), "{done}");
        assert!(app.held().await.is_empty());
        assert_eq!(app.messages(ALICE).len(), 24);
    }
);

struct Cli {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl AdminCommands for Cli {
    fn config_path(&self) -> &std::path::Path {
        &self.config
    }
}

#[test]
fn mailbox_set_digest_changes_the_frequency_and_show_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_test_config(dir.path(), "", "");
    let cli = Cli { _dir: dir, config };
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", ALICE, "--no-password"]);
    let shown = cli.ok(&["mailbox", "show", ALICE]);
    assert!(
        shown.contains("digest: daily (last sent: never)"),
        "{shown}"
    );
    let out = cli.ok(&["mailbox", "set", ALICE, "--digest", "weekly"]);
    assert!(out.contains("digest: weekly (was daily)"), "{out}");
    let shown = cli.ok(&["mailbox", "show", ALICE]);
    assert!(shown.contains("digest: weekly"), "{shown}");
    let err = cli.refused(&["mailbox", "set", ALICE, "--digest", "monthly"], &[1, 2]);
    assert!(
        err.stderr.contains("never, hourly, daily or weekly"),
        "{err:#?}"
    );
    cli.ok(&["mailbox", "set", ALICE, "--digest", "never"]);
    assert!(
        cli.ok(&["mailbox", "show", ALICE])
            .contains("digest: never")
    );
}

on_both_backends!(
    a_digest_that_cannot_be_delivered_is_tried_again,
    |backend| async move {
        let app = alice_challenging(backend, 0).await;
        hold(&app, "bob@example.org", "Bob", "Lunch?", "Hello.").await;
        // A file where alice's Maildir should be: nothing can be written.
        let maildir = app.maildir(ALICE);
        std::fs::create_dir_all(maildir.parent().unwrap()).unwrap();
        std::fs::write(&maildir, b"in the way").unwrap();
        let r = run(&app).await;
        assert_eq!((r.sent, r.failed), (0, 1));
        std::fs::remove_file(&maildir).unwrap();
        assert_eq!(run(&app).await.sent, 1, "tried again");
        assert_eq!(digests(&app).len(), 1);
        assert!(digests(&app)[0].contains("Subject: Lunch?"));
        assert_eq!(run(&app).await.sent, 0);
    }
);
