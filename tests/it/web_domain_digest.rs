//! Domain digests: an address subscribed to the held mail of every
//! mailbox of one domain, by the admin page (`/admin/digests`) and by
//! `boxtrap digest`. Mail held over SMTP, the pass run by hand; a local
//! subscriber reads it in its Maildir, another address gets it through
//! the outbound queue. Its links act on each item's own mailbox and no
//! other; its "review all" dies with the subscription.

use crate::http::{Browser, Resp, enc, set_password};
use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::Clock as _;
use boxtrap::digest::token::{DigestAction, DigestClaims, domain_binding, issue};
use boxtrap::digest::{DigestReport, Digests};
use boxtrap::spam::GTUBE;
use boxtrap::store::digest::{DigestFrequency, DomainDigest};
use boxtrap::store::dkim::{DkimAlgorithm, NewDkimKey};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ZED: &str = "zed@other.test";
const PW: &str = "admin correct horse";

async fn app_with_domains(backend: Backend) -> TestApp {
    let app = TestApp::spawn_with(backend, |c| {
        // GTUBE is held as spam instead of refused.
        c.spam.reject_score = 5000.0;
    })
    .await;
    app.add_mailboxes(&[ZED]).await;
    for m in [ALICE, BOB, ZED] {
        app.challenge_on(m).await;
        // Owners get no digest of their own here: only the domain's.
        let id = app.mailbox_id(m).await;
        app.store
            .set_digest(id, DigestFrequency::Never)
            .await
            .unwrap();
    }
    app
}

async fn hold(app: &TestApp, from: &str, to: &str, subject: &str, body: &str) {
    let r = send_raw(
        app,
        from,
        to,
        &format!("From: Someone <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n"),
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

fn domain_digests(app: &TestApp, mailbox: &str) -> Vec<String> {
    app.messages(mailbox)
        .iter()
        .map(|m| String::from_utf8_lossy(&m.1).into_owned())
        .filter(|t| t.contains("Subject: Quarantine digest of "))
        .collect()
}

/// The text part of a digest.
fn text_part(d: &str) -> String {
    let at = d.find("Content-Type: text/plain").expect("a text part");
    let end = d.find("Content-Type: text/html").expect("an HTML part");
    d[at..end].replace("\r\n", "\n")
}

/// The item whose subject is `subject`: its lines from the number to the
/// blank line.
fn item<'a>(text: &'a str, subject: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("Subject: {subject}"))
        .unwrap_or_else(|| panic!("no item {subject:?} in {text}"));
    let start = (0..at).rev().find(|i| lines[*i].contains(". ")).unwrap();
    lines[start..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect()
}

fn link(lines: &[&str], label: &str) -> Option<String> {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(&format!("{label}: ")))
        .map(|url| url[url.find("/digest/").unwrap()..].to_owned())
}

fn review_all(text: &str) -> String {
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("Review all in this digest: "))
        .expect("a review-all link");
    url[url.find("/digest/").unwrap()..].to_owned()
}

fn confirm_field(page: &str) -> String {
    let key = "name=\"confirm\" value=\"";
    let at = page.find(key).expect("a confirm field") + key.len();
    page[at..].chars().take_while(|c| *c != '"').collect()
}

async fn post(app: &TestApp, path: &str, form: &str) -> Resp {
    let b = Browser::new(app);
    b.post(path, form).await
}

fn held_for(held: &[boxtrap::store::held::HeldSummary], mailbox: &str) -> Vec<String> {
    let mut v: Vec<String> = held
        .iter()
        .filter(|h| h.mailbox == mailbox)
        .map(|h| h.subject.clone())
        .collect();
    v.sort();
    v
}

on_both_backends!(
    a_local_subscriber_gets_the_domains_new_mail_and_each_link_acts_on_its_own_mailbox,
    |backend| async move {
        let app = app_with_domains(backend).await;
        // Held before the subscription: never listed.
        hold(&app, "old@example.org", ALICE, "Before", "x").await;
        let s = boxtrap::digest::domain::parse(ALICE, "example.test", "daily").unwrap();
        boxtrap::digest::domain::subscribe(&app.store, &s, app.clock.now())
            .await
            .unwrap();
        // Alice reads in Berlin time.
        let alice = app.mailbox_id(ALICE).await;
        let mut settings = app.store.mailbox_settings(alice).await.unwrap();
        settings.time_zone = "Europe/Berlin".into();
        app.store.update_mailbox_settings(&settings).await.unwrap();

        hold(&app, "carol@example.org", ALICE, "For alice", "a").await;
        hold(&app, "dave@example.org", BOB, "For bob", "b").await;
        hold(
            &app,
            "eve@example.org",
            BOB,
            "<script>alert(1)</script>",
            "s",
        )
        .await;
        hold(
            &app,
            "spam@example.net",
            BOB,
            "Pills for bob",
            std::str::from_utf8(GTUBE).unwrap(),
        )
        .await;
        hold(&app, "erin@example.org", ZED, "For zed", "z").await;

        let r = run(&app).await;
        assert_eq!((r.sent, r.domain_delivered, r.domain_queued), (0, 1, 0));
        let all = domain_digests(&app, ALICE);
        assert_eq!(all.len(), 1);
        assert!(domain_digests(&app, BOB).is_empty());
        let d = &all[0];
        assert!(
            d.lines()
                .any(|l| l.trim_end() == "Auto-Submitted: auto-generated")
        );
        assert!(d.contains("Subject: Quarantine digest of example.test: 4 new messages held"));
        assert!(d.contains("From: \"boxtrap quarantine\" <postmaster@example.test>"));
        let text = text_part(d);
        assert!(text.contains("4 new messages were held since the last digest."));
        assert!(text.contains("Times are in Europe/Berlin"), "{text}");
        assert!(
            !text.contains("Before") && !text.contains("For zed"),
            "{text}"
        );
        let a = item(&text, "For alice");
        assert!(a.contains(&"   For: alice@example.test"), "{a:?}");
        assert!(a[0].ends_with(" CET"), "{a:?}");
        let b = item(&text, "For bob");
        assert!(b.contains(&"   For: bob@example.test"), "{b:?}");
        let spam = item(&text, "Pills for bob");
        assert!(spam.contains(&"   For: bob@example.test"));
        assert_eq!(
            link(&spam, "Deliver"),
            None,
            "high score: no one-click deliver"
        );
        assert!(link(&spam, "Review").is_some());
        let (_, html) = d.split_at(d.find("Content-Type: text/html").unwrap());
        assert!(html.contains("For: bob@example.test<br>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );

        // Nothing new: nothing sent.
        assert_eq!(run(&app).await.domain_delivered, 0);

        // Bob's deliver link acts on bob's mailbox, and shows his message.
        let bob_deliver = link(&b, "Deliver").unwrap();
        let page = app.http("GET", &bob_deliver).await.1;
        assert!(
            page.contains("Held for <strong>bob@example.test</strong>"),
            "{page}"
        );
        assert!(page.contains("For bob"));
        let done = post(
            &app,
            &bob_deliver,
            &format!("confirm={}", confirm_field(&page)),
        )
        .await;
        assert_eq!(done.status, 200, "{done:?}");
        assert!(
            done.body
                .contains("delivered into the mailbox bob@example.test")
        );
        assert_eq!(app.messages(BOB).len(), 1);
        assert!(String::from_utf8_lossy(&app.messages(BOB)[0].1).contains("Subject: For bob"));
        assert_eq!(app.messages(ALICE).len(), 1, "only the digest");
        let held = app.held().await;
        assert_eq!(held_for(&held, ALICE), ["Before", "For alice"]);
        assert_eq!(
            held_for(&held, BOB),
            ["<script>alert(1)</script>", "Pills for bob"]
        );

        // Bob's token cannot reach alice's message, and the other way round.
        let keyring = app.quarantine.challenges().keyring();
        let alice_held = held.iter().find(|h| h.subject == "For alice").unwrap().id;
        let bob_id = app.mailbox_id(BOB).await;
        let expires = boxtrap::clock::Timestamp::from_secs(T0 + 86400);
        let forged = issue(
            &keyring,
            &DigestClaims {
                action: DigestAction::Deliver,
                mailbox_id: bob_id,
                mailbox: BOB,
                first: alice_held,
                last: alice_held,
                expires,
            },
        );
        let (status, _) = app.http("GET", &format!("/digest/{forged}")).await;
        assert_eq!(status, 404);
        let r = post(&app, &format!("/digest/{forged}"), "confirm=x").await;
        assert_eq!(r.status, 404);
        assert_eq!(held_for(&app.held().await, ALICE), ["Before", "For alice"]);

        // Review all: the domain's remaining items, with their recipients.
        let all_link = review_all(&text);
        let (status, page) = app.http("GET", &all_link).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Held for the mailboxes of <strong>example.test</strong>"));
        assert!(page.contains("<tr><th>For</th><td>alice@example.test</td></tr>"));
        assert!(page.contains("<tr><th>For</th><td>bob@example.test</td></tr>"));
        assert!(page.contains("For alice") && page.contains("Pills for bob"));
        assert!(
            !page.contains("For zed") && !page.contains("Before"),
            "{page}"
        );
        assert!(
            page.contains("Deliver all 2 listed (not the high-score ones)"),
            "{page}"
        );
        assert!(page.contains("<a href=\"/admin\">"), "onward: {page}");

        // A review-all token of another subscription, or bound to a
        // mailbox's address, is refused.
        let subs = app.store.domain_digests().await.unwrap();
        let sub: &DomainDigest = &subs[0];
        let (first, last) = (sub.last_held - 10, sub.last_held);
        for bound in [
            ALICE.to_owned(),
            domain_binding(sub.id, "other.test", ALICE),
            domain_binding(sub.id + 1, "example.test", ALICE),
        ] {
            let t = issue(
                &keyring,
                &DigestClaims {
                    action: DigestAction::DomainReviewAll,
                    mailbox_id: sub.id,
                    mailbox: &bound,
                    first,
                    last,
                    expires,
                },
            );
            assert_eq!(
                app.http("GET", &format!("/digest/{t}")).await.0,
                404,
                "{bound}"
            );
        }

        let r = post(
            &app,
            &all_link,
            &format!("confirm={}", confirm_field(&page)),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body
                .contains("2 messages delivered into their mailboxes at example.test"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("1 with a high spam score stayed in the quarantine")
        );
        let held = app.held().await;
        assert_eq!(held_for(&held, ALICE), ["Before"]);
        assert_eq!(held_for(&held, BOB), ["Pills for bob"]);
        assert_eq!(
            held_for(&held, ZED),
            ["For zed"],
            "another domain: untouched"
        );
        assert_eq!(app.messages(ALICE).len(), 2);
        assert_eq!(app.messages(BOB).len(), 2, "\"For bob\" and \"<script>\"");
        // Each mailbox's activity log says a domain digest link was used.
        let lines = app.store.activity(alice, 20).await.unwrap();
        assert!(
            lines.iter().any(|l| l.action == boxtrap::store::held::ActivityAction::LinkUsed
                && l.detail == "domain digest link (sent to alice@example.test) to deliver all listed confirmed"),
            "{lines:?}"
        );

        // Only what is new, once the period is over.
        hold(&app, "frank@example.org", BOB, "Later", "l").await;
        assert_eq!(run(&app).await.domain_delivered, 0, "a day has not passed");
        app.clock.advance_secs(86400);
        assert_eq!(run(&app).await.domain_delivered, 1);
        let all = domain_digests(&app, ALICE);
        let second = all
            .iter()
            .find(|d| d.contains("1 new message held"))
            .unwrap();
        let text2 = text_part(second);
        assert!(
            text2.contains("Subject: Later") && !text2.contains("For alice"),
            "{text2}"
        );

        // Unsubscribed: the review-all link is dead.
        assert!(
            app.store
                .unsubscribe_domain_digest("example.test", ALICE)
                .await
                .unwrap()
        );
        assert_eq!(app.http("GET", &review_all(&text2)).await.0, 404);
    }
);

on_both_backends!(
    another_address_gets_it_through_the_outbound_queue,
    |backend| async move {
        let app = app_with_domains(backend).await;
        // other.test signs with an Ed25519 key: so does its digest.
        let key = boxtrap::challenge::sign::generate(DkimAlgorithm::Ed25519).unwrap();
        app.store
            .add_dkim_keys(
                &boxtrap::address::Domain::parse("other.test").unwrap(),
                &[NewDkimKey {
                    selector: "d1".into(),
                    algorithm: DkimAlgorithm::Ed25519,
                    private_key: key,
                }],
                false,
                app.clock.now(),
            )
            .await
            .unwrap();
        let s = boxtrap::digest::domain::parse("Boss@Elsewhere.example", "other.test", "hourly")
            .unwrap();
        boxtrap::digest::domain::subscribe(&app.store, &s, app.clock.now())
            .await
            .unwrap();
        hold(&app, "erin@example.org", ZED, "For zed", "z").await;
        hold(&app, "dave@example.org", BOB, "For bob", "b").await;
        let r = run(&app).await;
        assert_eq!((r.domain_delivered, r.domain_queued), (0, 1));
        assert!(
            app.outbox()
                .iter()
                .all(|m| m.rcpt != "boss@elsewhere.example"),
            "queued, not sent yet"
        );
        app.outbound.run_once().await.unwrap();
        let out: Vec<OutMail> = app
            .outbox()
            .into_iter()
            .filter(|m| m.rcpt == "boss@elsewhere.example")
            .collect();
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m.env_from, "");
        assert_eq!(m.header("Auto-Submitted"), Some("auto-generated"));
        let dkim = m.header("DKIM-Signature").expect("DKIM-signed");
        assert!(
            dkim.contains("d=other.test") && dkim.contains("s=d1"),
            "{dkim}"
        );
        assert!(
            m.raw
                .contains("From: \"boxtrap quarantine\" <postmaster@other.test>")
        );
        assert_eq!(
            m.header("Subject"),
            Some("Quarantine digest of other.test: 1 new message held")
        );
        assert!(m.text.contains("For: zed@other.test") && m.text.contains("Subject: For zed"));
        assert!(!m.text.contains("For bob"));
        assert!(m.text.contains("Times are in UTC"));
        // An hour later, nothing new: nothing more queued.
        app.clock.advance_secs(3600);
        assert_eq!(run(&app).await.domain_queued, 0);
    }
);

async fn admin_browser(app: &TestApp) -> Browser {
    app.store
        .set_admin(app.mailbox_id(BOB).await, true)
        .await
        .unwrap();
    set_password(app, BOB, PW).await;
    Browser::signed_in(app, BOB, PW).await.0
}

fn form(b: &Resp, address: &str, domain: &str, frequency: &str) -> String {
    format!(
        "csrf={}&address={}&domain={}&frequency={}",
        b.csrf(),
        enc(address),
        enc(domain),
        enc(frequency)
    )
}

async fn subscriptions(app: &TestApp) -> Vec<(String, String, String)> {
    app.store
        .domain_digests()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.domain, s.address, s.frequency.as_str().to_owned()))
        .collect()
}

on_both_backends!(
    the_admin_page_subscribes_changes_and_unsubscribes_and_refuses_bad_input_by_name,
    |backend| async move {
        let app = app_with_domains(backend).await;
        // A non-admin: the plain 404, GET or POST, and nothing changes.
        set_password(&app, ALICE, PW).await;
        let (alice, alice_page) = Browser::signed_in(&app, ALICE, PW).await;
        let reference = alice.get("/no/such/page").await;
        let r = alice.get("/admin/digests").await;
        assert_eq!((r.status, &r.body), (404, &reference.body));
        let r = alice
            .post(
                "/admin/digests",
                &form(&alice_page, ALICE, "example.test", "daily"),
            )
            .await;
        assert_eq!(r.status, 404);
        assert!(subscriptions(&app).await.is_empty());

        let bob = admin_browser(&app).await;
        let page = bob.get("/admin/digests").await;
        assert_eq!(page.status, 200, "{page:?}");
        assert!(page.body.contains("No address is subscribed"));
        assert!(
            page.body
                .contains("<option value=\"other.test\">other.test</option>")
        );
        assert!(
            bob.get("/admin")
                .await
                .body
                .contains("href=\"/admin/digests\"")
        );

        // Bad input: named, kept, nothing changed.
        for (address, domain, frequency, says) in [
            (
                "not an address",
                "example.test",
                "daily",
                "Address: \"not an address\" is not an email address",
            ),
            ("<script>@x", "example.test", "daily", "Address: "),
            (
                "a@example.org",
                "nowhere.test",
                "daily",
                "Domain: nowhere.test is not one of our domains",
            ),
            (
                "a@example.org",
                "example.test",
                "monthly",
                "Frequency: \"monthly\" is not hourly, daily or weekly",
            ),
            (
                "a@example.org",
                "example.test",
                "never",
                "Frequency: never is no subscription; unsubscribe instead",
            ),
        ] {
            let r = bob
                .post("/admin/digests", &form(&page, address, domain, frequency))
                .await;
            assert_eq!(r.status, 400, "{address} {domain} {frequency}: {r:?}");
            assert!(r.body.contains("role=\"alert\""), "{}", r.body);
            assert!(
                r.body.contains(&says.replace('"', "&#34;"))
                    || r.body.contains(&says.replace('"', "&quot;")),
                "{says}: {}",
                r.body
            );
            assert!(!r.body.contains("<script>@x"), "escaped");
            assert!(subscriptions(&app).await.is_empty());
        }
        // No CSRF token, or another origin: 403, nothing changed.
        let no_csrf =
            form(&page, "a@example.org", "example.test", "daily").replacen("csrf=", "csrf=x", 1);
        assert_eq!(bob.post("/admin/digests", &no_csrf).await.status, 403);
        let r = bob
            .post_with(
                "/admin/digests",
                &form(&page, "a@example.org", "example.test", "daily"),
                &[("Origin", "http://evil.example")],
            )
            .await;
        assert_eq!(r.status, 403);
        assert!(subscriptions(&app).await.is_empty());

        // Subscribe, then change the frequency.
        let r = bob
            .post(
                "/admin/digests",
                &form(&page, "a@example.org", "example.test", "daily"),
            )
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(r.header("location"), Some("/admin/digests?done=subscribed"));
        let r = bob
            .post(
                "/admin/digests",
                &form(&page, "a@example.org", "example.test", "weekly"),
            )
            .await;
        assert_eq!(r.header("location"), Some("/admin/digests?done=changed"));
        assert_eq!(
            subscriptions(&app).await,
            [(
                "example.test".to_owned(),
                "a@example.org".to_owned(),
                "weekly".to_owned()
            )]
        );
        let listed = bob.get("/admin/digests?done=changed").await;
        assert!(listed.body.contains("<td>a@example.org</td>"));
        assert!(listed.body.contains("<td>weekly</td>"));
        assert!(
            listed
                .body
                .contains("The frequency of that subscription was changed.")
        );

        // Unsubscribe: a bad id is 404 and changes nothing; then the real one.
        let id = app.store.domain_digests().await.unwrap()[0].id;
        for bad in [format!("{}", id + 1), "x".to_owned()] {
            let r = bob
                .post(
                    "/admin/digests/unsubscribe",
                    &format!("csrf={}&id={bad}", page.csrf()),
                )
                .await;
            assert_eq!(r.status, 404, "{bad}");
        }
        let r = bob
            .post("/admin/digests/unsubscribe", &format!("csrf=&id={id}"))
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(subscriptions(&app).await.len(), 1);
        let r = bob
            .post(
                "/admin/digests/unsubscribe",
                &format!("csrf={}&id={id}", page.csrf()),
            )
            .await;
        assert_eq!(
            r.header("location"),
            Some("/admin/digests?done=unsubscribed")
        );
        assert!(subscriptions(&app).await.is_empty());
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

async fn cli_on(backend: Backend) -> Cli {
    let url = match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => boxtrap::testing::fresh_postgres_database().await,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_test_config(dir.path(), &url, "");
    let cli = Cli { _dir: dir, config };
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", ALICE, "--no-password"]);
    cli
}

on_both_backends!(
    boxtrap_digest_subscribes_lists_and_unsubscribes_and_refuses_bad_input_by_name,
    |backend| async move {
        let cli = cli_on(backend).await;
        assert!(cli.ok(&["digest", "list"]).contains("no domain digests"));
        let out = cli.ok(&[
            "digest",
            "subscribe",
            "boss@elsewhere.example",
            "--domain",
            "example.test",
        ]);
        assert_eq!(
            out.trim(),
            "subscribed boss@elsewhere.example to the daily digest of example.test"
        );
        let out = cli.ok(&[
            "digest",
            "subscribe",
            ALICE,
            "--domain",
            "Example.Test",
            "--frequency",
            "hourly",
        ]);
        assert!(
            out.contains("subscribed alice@example.test to the hourly digest"),
            "{out}"
        );
        let out = cli.ok(&[
            "digest",
            "subscribe",
            "Alice@Example.TEST",
            "--domain",
            "example.test",
            "--frequency",
            "weekly",
        ]);
        assert_eq!(
            out.trim(),
            "alice@example.test gets the digest of example.test: weekly (was hourly)"
        );
        let listed = cli.ok(&["digest", "list"]);
        assert_eq!(
            listed,
            "example.test  alice@example.test  weekly  last sent: never\n\
             example.test  boss@elsewhere.example  daily  last sent: never\n"
        );
        for (args, says) in [
            (
                vec!["digest", "subscribe", "nobody", "--domain", "example.test"],
                "address: \"nobody\" is not an email address",
            ),
            (
                vec![
                    "digest",
                    "subscribe",
                    "a@b.example",
                    "--domain",
                    "nowhere.test",
                ],
                "domain: nowhere.test is not one of our domains",
            ),
            (
                vec![
                    "digest",
                    "subscribe",
                    "a@b.example",
                    "--domain",
                    "example.test",
                    "--frequency",
                    "monthly",
                ],
                "frequency: \"monthly\" is not hourly, daily or weekly",
            ),
            (
                vec![
                    "digest",
                    "subscribe",
                    ALICE,
                    "--domain",
                    "example.test",
                    "--frequency",
                    "never",
                ],
                "frequency: never is no subscription",
            ),
            (
                vec![
                    "digest",
                    "unsubscribe",
                    "a@b.example",
                    "--domain",
                    "example.test",
                ],
                "address: a@b.example is not subscribed to the digest of example.test",
            ),
            (
                vec![
                    "digest",
                    "unsubscribe",
                    "a@b.example",
                    "--domain",
                    "bad domain",
                ],
                "domain: \"bad domain\" is not a domain name",
            ),
        ] {
            let err = cli.refused(&args, &[1]);
            assert!(err.stderr.contains(says), "{args:?}: {err:#?}");
            assert_eq!(err.stdout, "");
            assert_eq!(cli.ok(&["digest", "list"]), listed, "nothing changed");
        }
        let out = cli.ok(&[
            "digest",
            "unsubscribe",
            "boss@elsewhere.example",
            "--domain",
            "example.test",
        ]);
        assert_eq!(
            out.trim(),
            "unsubscribed boss@elsewhere.example from the digest of example.test"
        );
        assert_eq!(
            cli.ok(&["digest", "list"]),
            "example.test  alice@example.test  weekly  last sent: never\n"
        );
    }
);

on_both_backends!(
    a_domain_digest_that_cannot_be_written_is_tried_again,
    |backend| async move {
        let app = app_with_domains(backend).await;
        let s = boxtrap::digest::domain::parse(ALICE, "example.test", "daily").unwrap();
        boxtrap::digest::domain::subscribe(&app.store, &s, app.clock.now())
            .await
            .unwrap();
        hold(&app, "dave@example.org", BOB, "For bob", "b").await;
        // A file where alice's Maildir should be.
        let maildir = app.maildir(ALICE);
        std::fs::create_dir_all(maildir.parent().unwrap()).unwrap();
        std::fs::write(&maildir, b"in the way").unwrap();
        let r = run(&app).await;
        assert_eq!((r.domain_delivered, r.domain_failed), (0, 1));
        assert_eq!(app.store.domain_digests().await.unwrap()[0].last_at, None);
        std::fs::remove_file(&maildir).unwrap();
        assert_eq!(run(&app).await.domain_delivered, 1, "tried again");
        let d = domain_digests(&app, ALICE);
        assert_eq!(d.len(), 1);
        assert!(text_part(&d[0]).contains("Subject: For bob"));
        assert_eq!(run(&app).await.domain_delivered, 0);
    }
);
