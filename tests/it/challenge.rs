//! Challenge-response quarantine: mail from a sender alice does not know is
//! held, the sender is challenged once, and the link or a reply releases it.
//!
//! Most tests run one boxtrap and read the challenges its recording
//! transport kept (`app.challenges_to`). The end-to-end tier sends them for
//! real: the first test over a second boxtrap acting as smarthost, and the
//! last three through the transport the config names; each says why.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::config::{Config, OutboundMode, TlsPolicy};
use boxtrap::policy::rules::ListKind;
use boxtrap::quarantine::SweepReport;
use boxtrap::store::held::{self, ActivityAction, OutboundState};
use std::time::Duration;

const ALICE: &str = "alice@example.test";

fn mail(from: &str, subject: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello Alice.\r\n"
    )
}

/// `from` (envelope and `From:` alike) writes to alice; the reply to DATA.
async fn write_to_alice(app: &TestApp, from: &str, subject: &str, id: &str) -> String {
    send_raw(app, from, ALICE, &mail(from, subject, id)).await
}

/// One boxtrap hosting example.test, alice with challenge-response on; what
/// it sends is recorded.
async fn alice_challenging(backend: Backend) -> TestApp {
    alice_challenging_with(backend, |_| {}).await
}

async fn alice_challenging_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let app = TestApp::spawn_with(backend, tweak).await;
    app.challenge_on(ALICE).await;
    app
}

fn text_of(m: &(String, Vec<u8>)) -> String {
    String::from_utf8_lossy(&m.1).into_owned()
}

/// A well-formed token for a challenge that does not exist.
fn token_without_a_challenge(sender: &str, challenge_id: i64) -> String {
    use boxtrap::challenge::token::{Claims, Keyring, TokenKey, issue};
    let keyring = Keyring::new(TokenKey::generate(7), vec![]);
    let claims = Claims {
        mailbox: ALICE,
        sender,
        challenge_id,
        expires: boxtrap::clock::Timestamp::from_secs(T0 + 86400),
    };
    issue(&keyring, &claims)
}

// End to end: the challenge and the notice after it cross SMTP to a second
// boxtrap and land in bob's Maildir, so this checks what a recording
// cannot: that they survive the wire (the null sender arrives as
// `Return-Path: <>`, the headers as a receiver reads them).
on_both_backends!(
    an_unknown_sender_is_held_challenged_once_and_released_by_the_link,
    |backend| async move {
        let Pair { mx, peer } = pair(backend).await;
        let bob = "Bob <bob@example.org>";
        let r = send_raw(
            &mx,
            "bob@example.org",
            ALICE,
            &mail(bob, "Lunch?", "m1@example.org"),
        )
        .await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert!(mx.messages(ALICE).is_empty(), "held, not delivered");
        let held = mx.held().await;
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].sender, "bob@example.org");
        assert_eq!(held[0].reason, "unknown-sender");
        assert_eq!(held[0].subject, "Lunch?");

        // The challenge goes out through the smarthost and arrives at bob.
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
        let got = peer.challenges_in("bob@example.org");
        assert_eq!(got.len(), 1);
        let c = &got[0];
        let raw = &c.mail.raw;
        assert_eq!(
            c.header("Return-Path"),
            Some("<>"),
            "sent from the null sender:\n{raw}"
        );
        assert_eq!(c.header("Auto-Submitted"), Some("auto-replied"));
        assert_eq!(c.header("Precedence"), Some("bulk"));
        assert_eq!(c.header("X-Auto-Response-Suppress"), Some("All"));
        assert_eq!(c.header("In-Reply-To"), Some("<m1@example.org>"));
        assert_eq!(c.header("References"), Some("<m1@example.org>"));
        assert!(c.header("From").unwrap().contains(ALICE), "{raw}");
        assert!(c.header("To").unwrap().contains("bob@example.org"), "{raw}");
        let subject = c.header("Subject").unwrap();
        let token = &c.token;
        assert!(
            subject.contains("Lunch?") && subject.contains(&format!("verify#{token}")),
            "{subject}"
        );
        assert!(
            c.header("Message-ID").unwrap().contains(token),
            "message id encodes the token"
        );
        assert_eq!(
            c.link,
            format!("https://mail.example.test/verify/{token}"),
            "link in the mail:\n{raw}"
        );
        assert!(
            !raw.contains("Hello Alice.") && !c.mail.text.contains("Hello Alice."),
            "never quotes the original body"
        );

        // A second message joins the held set without a second challenge.
        write_to_alice(&mx, "bob@example.org", "Or dinner?", "m2@example.org").await;
        assert_eq!(mx.outbound.run_once().await.unwrap(), 0);
        assert_eq!(peer.challenges_in("bob@example.org").len(), 1);
        assert_eq!(mx.held().await.len(), 2);

        // GET shows what waits and changes nothing.
        let (status, page) = mx.http("GET", &format!("/verify/{token}")).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("Lunch?") && page.contains("Or dinner?"),
            "{page}"
        );
        assert!(page.contains("<form method=\"post\">"), "{page}");
        let (status, _) = mx.http("GET", &format!("/verify/{token}")).await;
        assert_eq!(status, 200);
        assert!(mx.messages(ALICE).is_empty());
        assert_eq!(mx.held().await.len(), 2);

        // POST releases: both messages delivered, bob allowed.
        let (status, page) = mx.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 200, "{page}");
        let delivered = mx.messages(ALICE);
        assert_eq!(delivered.len(), 2);
        assert!(
            delivered
                .iter()
                .any(|m| text_of(m).contains("Subject: Lunch?"))
        );
        assert!(
            delivered.iter().all(|m| text_of(m)
                .starts_with("Return-Path: <bob@example.org>\nDelivered-To: alice@example.test\n"))
        );
        assert!(mx.held().await.is_empty());
        let allow = mx.allow_list(ALICE).await;
        assert_eq!(allow.len(), 1);
        assert!(allow[0].contains("bob@example"), "{allow:?}");

        // verifyreleased tells bob.
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
        assert_eq!(peer.messages("bob@example.org").len(), 2);

        // The link is spent.
        let (status, page) = mx.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 410, "{page}");
        assert!(page.contains("already been used"), "{page}");

        // From now on bob's mail goes straight in.
        let r = write_to_alice(&mx, "bob@example.org", "Thanks", "m3@example.org").await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(mx.messages(ALICE).len(), 3);
        assert_eq!(mx.outbound.run_once().await.unwrap(), 0);
        // Even a late reply to the answered challenge is now ordinary mail.
        let late = format!(
            "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Re: Lunch? [verify#{token}]\r\n\
             Message-ID: <m4@example.org>\r\n\r\nSee you.\r\n"
        );
        let r = send_raw(&mx, "bob@example.org", ALICE, &late).await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(mx.messages(ALICE).len(), 4, "the late reply is delivered");
        assert_eq!(
            mx.outbound.run_once().await.unwrap(),
            0,
            "and answered with nothing"
        );

        let log = mx.mainlog();
        assert!(
            log.contains("=> :quarantine: alice@example.test <alice@example.test> R=quarantine"),
            "{log}"
        );
        assert!(log.contains("R=quarantine T=maildir (link)"), "{log}");
        let activity = mx.activity(ALICE).await;
        for action in [
            ActivityAction::Held,
            ActivityAction::Challenged,
            ActivityAction::Allowed,
            ActivityAction::Released,
        ] {
            assert!(activity.contains(&action), "{action} in {activity:?}");
        }
    }
);

on_both_backends!(
    a_reply_to_the_challenge_releases_and_is_not_delivered,
    |backend| async move {
        let app = alice_challenging(backend).await;
        write_to_alice(
            &app,
            "bob@example.org",
            "Quarterly report",
            "q1@example.org",
        )
        .await;
        app.outbound.run_once().await.unwrap();
        let c = app.challenges_to("bob@example.org").remove(0);
        let challenge_id = c.header("Message-ID").unwrap();
        // bob hits "reply": the subject keeps verify#..., In-Reply-To names the challenge.
        let reply = format!(
            "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Re: {}\r\n\
             In-Reply-To: {challenge_id}\r\nReferences: {challenge_id}\r\nMessage-ID: <reply-1@example.org>\r\n\r\n\
             Yes, it was me.\r\n",
            c.header("Subject").unwrap()
        );
        let r = send_raw(&app, "bob@example.org", ALICE, &reply).await;
        assert!(r.starts_with("250"), "{r}");
        let delivered = app.messages(ALICE);
        assert_eq!(delivered.len(), 1, "only the held message");
        assert!(text_of(&delivered[0]).contains("Subject: Quarterly report"));
        assert!(!text_of(&delivered[0]).contains("Yes, it was me."));
        assert!(app.held().await.is_empty());
        assert!(
            app.quarantine.challenges().verify(&c.token).await.is_err(),
            "token used"
        );
        let actions = app.activity(ALICE).await;
        assert!(actions.contains(&ActivityAction::Verified), "{actions:?}");
    }
);

// A token no key of ours signed for this sender proves nothing: the
// message is screened like any other, and nobody is mailed (a late reply
// to a real challenge gets `returnverify`: real_mail.rs).
on_both_backends!(
    a_reply_whose_token_matches_nothing_is_held_and_nobody_is_mailed,
    |backend| async move {
        let app = alice_challenging(backend).await;
        let bogus = token_without_a_challenge("carol@example.org", 4242);
        let reply = |n: u32| {
            format!(
                "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: Re: hi [verify#{bogus}]\r\nMessage-ID: <r{n}@example.org>\r\n\r\nme\r\n"
            )
        };
        for n in [1, 2] {
            let r = send_raw(&app, "carol@example.org", ALICE, &reply(n)).await;
            assert!(r.starts_with("250"), "{r}");
        }
        assert!(app.messages(ALICE).is_empty(), "not delivered");
        assert_eq!(app.held().await.len(), 2, "held, as mail");
        assert_eq!(
            app.outbound.run_once().await.unwrap(),
            0,
            "no mail to carol"
        );
        assert!(app.allow_list(ALICE).await.is_empty());
    }
);

#[tokio::test]
async fn bad_tokens_get_a_clear_page_with_the_right_status_and_change_nothing() {
    let app = alice_challenging(Backend::Sqlite).await;
    write_to_alice(&app, "bob@example.org", "Hi", "b1@example.org").await;
    app.outbound.run_once().await.unwrap();
    let token = app.challenges_to("bob@example.org").remove(0).token;

    // Tampered: one character of the tag changed.
    let mut t: Vec<char> = token.chars().collect();
    t[40] = if t[40] == 'A' { 'B' } else { 'A' };
    let tampered: String = t.into_iter().collect();
    for method in ["GET", "POST"] {
        let (status, page) = app.http(method, &format!("/verify/{tampered}")).await;
        // The same answer as for an id that does not exist (hardening.rs).
        assert_eq!(status, 404, "{method} tampered: {page}");
        assert!(page.contains("altered"), "{page}");
    }
    // Malformed.
    let (status, page) = app.http("POST", "/verify/not-a-token").await;
    assert_eq!(status, 400, "{page}");
    let (status, _) = app
        .http("GET", &format!("/verify/{}", "A".repeat(5000)))
        .await;
    assert_eq!(status, 400);
    // Unknown: a good token for a challenge that does not exist.
    let unknown = token_without_a_challenge("bob@example.org", 999_999);
    let (status, page) = app.http("POST", &format!("/verify/{unknown}")).await;
    assert_eq!(status, 404, "{page}");
    assert_eq!(app.held().await.len(), 1, "nothing released");
    assert!(app.messages(ALICE).is_empty());

    // Expired: past the mailbox's keep-days (15).
    app.clock.advance_secs(15 * 86400 + 1);
    let (status, page) = app.http("POST", &format!("/verify/{token}")).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert!(app.messages(ALICE).is_empty());
    let (status, _) = app.http("GET", "/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = app.http("GET", "/nothing/here").await;
    assert_eq!(status, 404);
}

on_both_backends!(
    block_refuses_in_session_and_ignore_drops_silently,
    |backend| async move {
        let app = alice_challenging(backend).await;
        app.add_rule(ALICE, ListKind::Block, r"from .*@spam\.example")
            .await;
        app.add_rule(ALICE, ListKind::Ignore, "subject lottery")
            .await;

        let r = write_to_alice(&app, "x@spam.example", "Buy", "s1@spam.example").await;
        assert!(r.starts_with("550 5.7.1"), "{r}");
        assert!(
            app.rejectlog().contains("block lists"),
            "{}",
            app.rejectlog()
        );

        let r = write_to_alice(
            &app,
            "carol@example.org",
            "You won the LOTTERY",
            "l1@example.org",
        )
        .await;
        assert!(r.starts_with("250"), "{r}");

        // Block with a second recipient who accepts: 250, alice's copy dropped.
        let mut s = app.smtp().await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd("MAIL FROM:<x@spam.example>", "250").await;
        s.cmd("RCPT TO:<alice@example.test>", "250").await;
        s.cmd("RCPT TO:<bob@example.test>", "250").await;
        s.cmd("DATA", "354").await;
        let r = s
            .data(&mail("x@spam.example", "Buy", "s2@spam.example"))
            .await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.messages("bob@example.test").len(), 1);

        assert!(app.messages(ALICE).is_empty());
        assert!(app.held().await.is_empty());
        assert_eq!(
            app.outbound.run_once().await.unwrap(),
            0,
            "no mail to blocked or ignored senders"
        );
        assert!(app.store.list_outbound().await.unwrap().is_empty());
        assert!(app.outbox().is_empty());
        let actions = app.activity(ALICE).await;
        assert!(
            actions.contains(&ActivityAction::Ignored)
                && actions.contains(&ActivityAction::Blocked),
            "{actions:?}"
        );
    }
);

#[tokio::test]
async fn automated_and_unchallengeable_mail_is_held_without_a_challenge() {
    let app = alice_challenging(Backend::Sqlite).await;
    let plain = |extra: &str, from: &str| {
        format!(
            "From: {from}\r\nTo: alice@example.test\r\nSubject: s\r\n{extra}Message-ID: <{}@x.example>\r\n\r\nbody\r\n",
            extra.len()
        )
    };
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("null sender", "", plain("", "bob@example.org"), "null-sender"),
        ("mailer-daemon", "MAILER-DAEMON@example.org", plain("", "bob@example.org"), "role-sender"),
        ("postmaster", "postmaster@example.org", plain("", "postmaster@example.org"), "role-sender"),
        ("list -request", "news-request@example.org", plain("", "news@example.org"), "role-sender"),
        ("list -bounces", "news-bounces@example.org", plain("", "news@example.org"), "role-sender"),
        ("owner-", "owner-news@example.org", plain("", "news@example.org"), "role-sender"),
        ("auto-replied", "bob@example.org", plain("Auto-Submitted: auto-replied\r\n", "bob@example.org"), "automated"),
        ("list-id", "dave@example.org", plain("List-Id: <news.example.org>\r\n", "dave@example.org"), "automated"),
        ("precedence bulk", "dave@example.org", plain("Precedence: bulk\r\n", "dave@example.org"), "automated"),
        ("suppress", "dave@example.org", plain("X-Auto-Response-Suppress: OOF\r\n", "dave@example.org"), "automated"),
        ("other C/R", "dave@example.org", plain("X-Boxtrapper: challenge\r\n", "dave@example.org"), "automated"),
        ("our own challenge", "", plain("X-Boxtrap-Challenge: bob@example.org\r\n", "bob@example.org"), "null-sender"),
        (
            "bounce",
            "carol@example.org",
            "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: Undelivered\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
                .to_owned(),
            "automated",
        ),
        ("no From", "carol@example.org", "To: alice@example.test\r\nSubject: who?\r\n\r\nx\r\n".to_owned(), "no-sender"),
        ("forged own address", "alice@example.test", plain("", "Alice <ALICE@example.test>"), "own-address"),
    ];
    for (name, env_from, body, reason) in &cases {
        let before = app.held().await.len();
        let r = send_raw(&app, env_from, ALICE, body).await;
        assert!(r.starts_with("250"), "{name}: {r}");
        let held = app.held().await;
        assert_eq!(held.len(), before + 1, "{name} is held");
        assert_eq!(held[0].reason, *reason, "{name}: {}", held[0].reason_detail);
    }
    assert_eq!(
        app.outbound.run_once().await.unwrap(),
        0,
        "no challenge for any of them"
    );
    assert!(app.outbox().is_empty());
    assert!(app.messages(ALICE).is_empty());
}

on_both_backends!(
    a_concurrent_double_post_delivers_each_message_once,
    |backend| async move {
        let app = alice_challenging(backend).await;
        for i in 0..3 {
            write_to_alice(
                &app,
                "bob@example.org",
                &format!("n{i}"),
                &format!("d{i}@example.org"),
            )
            .await;
        }
        app.outbound.run_once().await.unwrap();
        let token = app.challenges_to("bob@example.org").remove(0).token;
        let path = format!("/verify/{token}");
        let (x, y) = tokio::join!(http(app.web, "POST", &path), http(app.web, "POST", &path));
        assert!(x.0 == 200 || y.0 == 200, "{x:?} {y:?}");
        assert!(
            [200, 410].contains(&x.0) && [200, 410].contains(&y.0),
            "{x:?} {y:?}"
        );
        let delivered = app.messages(ALICE);
        assert_eq!(delivered.len(), 3, "each held message exactly once");
        assert!(app.held().await.is_empty());
    }
);

on_both_backends!(
    a_release_that_crashed_midway_is_finished_exactly_once,
    |backend| async move {
        let app = alice_challenging(backend).await;
        for i in 0..3 {
            write_to_alice(
                &app,
                "bob@example.org",
                &format!("c{i}"),
                &format!("c{i}@example.org"),
            )
            .await;
        }
        let alice = app.mailbox_id(ALICE).await;
        // The release claims the messages, delivers one, and the process dies
        // before the database hears of it.
        use boxtrap::clock::Clock;
        let now = app.clock.now();
        let mut tx = app.store.begin_write().await.unwrap();
        let ids = held::claim_for_release(&mut tx, alice, "bob@example.org", now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ids.len(), 3);
        let first = app.store.held(ids[0]).await.unwrap().unwrap();
        let data = app.store.held_data(ids[0]).await.unwrap().unwrap();
        let maildirs = boxtrap::delivery::maildir::Maildirs::new(
            app.dir.path().join("mail"),
            "mx.example.test",
        );
        maildirs
            .deliver(&boxtrap::delivery::maildir::MaildirMessage {
                sender: &first.env_sender,
                mailbox: &first.mailbox,
                unique: &format!("{}_{}", first.queue_id, first.rcpt_index),
                arrival_secs: first.arrived_at.secs(),
                data: &data,
            })
            .unwrap();
        assert_eq!(app.messages(ALICE).len(), 1);
        // Not yet stale: the sweeper leaves a release in progress alone.
        assert_eq!(
            app.quarantine.sweep_once().await.unwrap().releases_finished,
            0
        );
        // After the lease, the sweeper (as at a restart) finishes the release.
        app.clock.advance_secs(301);
        let finished = app.quarantine.sweep_once().await.unwrap().releases_finished;
        assert_eq!(finished, 3);
        let delivered = app.messages(ALICE);
        assert_eq!(delivered.len(), 3, "each exactly once");
        assert!(app.held().await.is_empty());
        assert_eq!(
            app.quarantine.sweep_once().await.unwrap().releases_finished,
            0
        );
    }
);

#[tokio::test]
async fn challenges_beyond_the_rate_limit_are_held_silently() {
    let app =
        alice_challenging_with(Backend::Sqlite, |c| c.challenge.max_per_mailbox_hour = 2).await;
    for who in ["bob", "carol", "dave"] {
        let from = format!("{who}@example.org");
        write_to_alice(&app, &from, "hi", &from).await;
    }
    let held = app.held().await;
    assert_eq!(held.len(), 3);
    let dave = held
        .iter()
        .find(|h| h.sender == "dave@example.org")
        .unwrap();
    assert_eq!(dave.reason, "rate-limited", "{}", dave.reason_detail);
    assert_eq!(app.outbound.run_once().await.unwrap(), 2);
    assert!(app.challenges_to("dave@example.org").is_empty());
    // An hour later the limit has room again.
    app.clock.advance_secs(3601);
    write_to_alice(&app, "eve@example.org", "hi", "eve@example.org").await;
    assert_eq!(app.outbound.run_once().await.unwrap(), 1);
}

#[tokio::test]
async fn per_domain_and_global_challenge_limits_hold_silently_too() {
    let app = alice_challenging_with(Backend::Sqlite, |c| {
        c.challenge.max_per_domain_day = 1;
        c.challenge.max_global_hour = 2;
    })
    .await;
    app.add_mailboxes(&["zoe@example.test"]).await;
    app.challenge_on("zoe@example.test").await;
    // Same sender domain, another mailbox: the domain limit is server-wide.
    for (from, to, id) in [
        ("bob@example.org", ALICE, "d1@example.org"),
        ("carol@example.org", "zoe@example.test", "d2@example.org"),
        ("ann@other.example", ALICE, "d3@other.example"),
        ("ben@third.example", "zoe@example.test", "d4@third.example"),
    ] {
        send_raw(&app, from, to, &mail(from, "hi", id)).await;
    }
    let held = app.held().await;
    let reason = |who: &str| {
        let h = held.iter().find(|h| h.sender == who).unwrap();
        (h.reason.clone(), h.reason_detail.clone())
    };
    assert_eq!(reason("bob@example.org").0, "unknown-sender");
    assert_eq!(reason("carol@example.org").0, "rate-limited");
    assert!(
        reason("carol@example.org")
            .1
            .contains("per sender domain per day")
    );
    assert_eq!(reason("ann@other.example").0, "unknown-sender");
    assert_eq!(reason("ben@third.example").0, "rate-limited");
    assert!(
        reason("ben@third.example")
            .1
            .contains("server-wide per hour")
    );
    assert_eq!(app.outbound.run_once().await.unwrap(), 2);
}

on_both_backends!(
    held_mail_expires_after_the_mailbox_keep_days,
    |backend| async move {
        let app = alice_challenging(backend).await;
        write_to_alice(&app, "bob@example.org", "old", "o1@example.org").await;
        app.outbound.run_once().await.unwrap();
        let token = app.challenges_to("bob@example.org").remove(0).token;
        app.clock.advance_secs(14 * 86400);
        assert_eq!(
            app.quarantine.sweep_once().await.unwrap(),
            SweepReport::default(),
            "kept for 15 days"
        );
        app.clock.advance_secs(86400 + 1);
        let swept = app.quarantine.sweep_once().await.unwrap();
        assert_eq!((swept.expired, swept.challenges_expired), (1, 1));
        assert!(app.held().await.is_empty());
        let (status, _) = app.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 410);
        assert!(app.messages(ALICE).is_empty());
        let actions = app.activity(ALICE).await;
        assert!(actions.contains(&ActivityAction::Expired), "{actions:?}");
        assert!(
            app.mainlog()
                .contains("expired after the mailbox's keep-days")
        );
        // A new message from bob gets a new challenge.
        write_to_alice(&app, "bob@example.org", "again", "o2@example.org").await;
        assert_eq!(app.outbound.run_once().await.unwrap(), 1);
    }
);

#[tokio::test]
async fn list_changes_take_effect_on_the_next_message() {
    let app = alice_challenging(Backend::Sqlite).await;
    let eve = r"from ^eve@";
    let r = write_to_alice(&app, "eve@example.org", "one", "e1@example.org").await;
    assert!(r.starts_with("250"), "{r}");
    app.add_rule(ALICE, ListKind::Block, eve).await;
    let r = write_to_alice(&app, "eve@example.org", "two", "e2@example.org").await;
    assert!(
        r.starts_with("550 5.7.1"),
        "a new block rule applies at once: {r}"
    );
    app.remove_rule(ALICE, ListKind::Block, eve).await;
    app.add_rule(ALICE, ListKind::Allow, eve).await;
    let r = write_to_alice(&app, "eve@example.org", "three", "e3@example.org").await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(app.messages(ALICE).len(), 1, "allowed now");
}

#[tokio::test]
async fn mail_from_an_allowed_sender_vouches_for_its_other_recipients() {
    // example.org's SPF passes the test client: bob is authenticated.
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &[spf("example.org")], |_| {}).await;
    app.challenge_on(ALICE).await;
    app.add_rule(ALICE, ListKind::Allow, r"from ^bob@example\.org$")
        .await;
    // Off by default (tests/it/association.rs): turned on here.
    let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    s.whitelist_by_association = true;
    app.store.update_mailbox_settings(&s).await.unwrap();
    let group = "From: bob@example.org\r\nTo: alice@example.test, Carol <carol@example.org>\r\n\
                 Cc: dave@example.org\r\nSubject: team lunch\r\nMessage-ID: <g1@example.org>\r\n\r\nhi all\r\n";
    let r = send_raw(&app, "bob@example.org", ALICE, group).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(app.messages(ALICE).len(), 1);
    // Carol and dave were vouched for: their mail goes straight in.
    for who in ["carol", "dave"] {
        let from = format!("{who}@example.org");
        let r = write_to_alice(&app, &from, "re: team lunch", &format!("{who}@x")).await;
        assert!(r.starts_with("250"), "{r}");
    }
    assert_eq!(app.messages(ALICE).len(), 3);
    assert!(app.held().await.is_empty());
    let allow = app.allow_list(ALICE).await;
    assert!(
        !allow.iter().any(|line| line.contains("alice")),
        "never the mailbox itself: {allow:?}"
    );

    // With the setting off, nobody else is vouched for.
    let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    s.whitelist_by_association = false;
    app.store.update_mailbox_settings(&s).await.unwrap();
    let group = "From: bob@example.org\r\nTo: alice@example.test, erin@example.org\r\nSubject: x\r\nMessage-ID: <g2@example.org>\r\n\r\nx\r\n";
    send_raw(&app, "bob@example.org", ALICE, group).await;
    write_to_alice(&app, "erin@example.org", "hello", "erin@x").await;
    assert_eq!(app.held().await.len(), 1, "erin is held");
}

// The end-to-end tier, continued: transports a recording cannot stand in for.

// Both sides must really challenge each other over SMTP: each server is
// the other's smarthost, so a loop, if there were one, would show.
#[tokio::test]
async fn two_boxtraps_whose_owners_write_to_each_other_exchange_one_challenge_each() {
    // Reserve two ports so each server can name the other as its smarthost.
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port_a, port_b) = (port(), port());
    let a = TestApp::spawn_with_config_transport(Backend::Sqlite, |c| {
        c.smtp.listen = vec![format!("127.0.0.1:{port_a}").parse().unwrap()];
        c.outbound.mode = OutboundMode::Smarthost;
        c.outbound.smarthost = format!("127.0.0.1:{port_b}");
        c.outbound.smarthost_tls = TlsPolicy::Off;
    })
    .await;
    let b = TestApp::spawn_with_config_transport(Backend::Sqlite, |c| {
        c.smtp.listen = vec![format!("127.0.0.1:{port_b}").parse().unwrap()];
        c.hostname = "mx.example.org".into();
        c.outbound.mode = OutboundMode::Smarthost;
        c.outbound.smarthost = format!("127.0.0.1:{port_a}");
        c.outbound.smarthost_tls = TlsPolicy::Off;
    })
    .await;
    b.add_mailboxes(&["bob@example.org"]).await;
    a.challenge_on(ALICE).await;
    b.challenge_on("bob@example.org").await;

    let to_bob = "From: alice@example.test\r\nTo: bob@example.org\r\nSubject: hi bob\r\nMessage-ID: <a1@example.test>\r\n\r\nx\r\n";
    let to_alice = "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: hi alice\r\nMessage-ID: <b1@example.org>\r\n\r\nx\r\n";
    let r = send_raw(&b, ALICE, "bob@example.org", to_bob).await;
    assert!(r.starts_with("250"), "{r}");
    let r = send_raw(&a, "bob@example.org", ALICE, to_alice).await;
    assert!(r.starts_with("250"), "{r}");
    // Let both outbound queues run until nothing moves.
    for _ in 0..5 {
        a.outbound.run_once().await.unwrap();
        b.outbound.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_by_a = a.store.list_outbound().await.unwrap();
    let sent_by_b = b.store.list_outbound().await.unwrap();
    assert_eq!(sent_by_a.len(), 1, "{sent_by_a:?}");
    assert_eq!(sent_by_b.len(), 1, "{sent_by_b:?}");
    assert!(
        sent_by_a
            .iter()
            .chain(&sent_by_b)
            .all(|m| m.kind == "verify" && m.state == OutboundState::Sent)
    );
    // Each side holds the other's challenge silently, as automated mail.
    let held_a = a.held().await;
    assert!(
        held_a
            .iter()
            .any(|h| h.reason != "unknown-sender" && h.reason_detail.contains("challenge")),
        "{held_a:?}"
    );
    let held_b = b.held().await;
    assert!(
        held_b.iter().any(|h| h.reason != "unknown-sender"),
        "{held_b:?}"
    );
}

// A recording never fails, so this challenge goes to a smarthost that is
// not there: every attempt fails for now, until retry_for runs out.
#[tokio::test]
async fn a_challenge_that_cannot_be_sent_is_retried_then_recorded_against_the_held_mail() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::spawn_with_config_transport(Backend::Sqlite, |c| {
        c.outbound.mode = OutboundMode::Smarthost;
        c.outbound.smarthost = dead.to_string();
        c.outbound.smarthost_tls = TlsPolicy::Off;
    })
    .await;
    app.challenge_on(ALICE).await;
    write_to_alice(&app, "bob@example.org", "hi", "f1@example.org").await;
    assert_eq!(app.outbound.run_once().await.unwrap(), 1);
    let out = app.store.list_outbound().await.unwrap();
    assert_eq!(
        (out[0].state, out[0].attempts),
        (OutboundState::Queued, 1),
        "{out:?}"
    );
    assert!(!out[0].last_error.is_empty());
    // Backoff: not due again before retry_interval (5 minutes).
    app.clock.advance_secs(299);
    assert_eq!(app.outbound.run_once().await.unwrap(), 0);
    app.clock.advance_secs(2);
    assert_eq!(app.outbound.run_once().await.unwrap(), 1);
    // Past retry_for (2 days) it fails for good, and the held message shows why.
    app.clock.advance_secs(2 * 86400);
    assert_eq!(app.outbound.run_once().await.unwrap(), 1);
    let out = app.store.list_outbound().await.unwrap();
    assert_eq!(out[0].state, OutboundState::Failed, "{out:?}");
    let held = app.held().await;
    let error = app
        .store
        .challenge_delivery_error(held[0].challenge_id.unwrap())
        .await
        .unwrap();
    assert!(error.unwrap().contains("retry time exceeded"));
    assert!(
        app.mainlog().contains(" ** bob@example.org R=verify"),
        "{}",
        app.mainlog()
    );
    assert_eq!(
        app.outbound.run_once().await.unwrap(),
        0,
        "not retried after failing"
    );
}

// The default transport, as the config builds it with no smarthost: the
// file outbox under the data directory, which is what this checks.
#[tokio::test]
async fn challenge_off_delivers_exactly_as_before_and_file_mode_writes_eml() {
    let app = TestApp::spawn_with_config_transport(Backend::Sqlite, |_| {}).await;
    app.challenge_on(ALICE).await;
    let r = send_raw(
        &app,
        "bob@example.org",
        "bob@example.test",
        &mail("bob@example.org", "plain", "p1@example.org"),
    )
    .await;
    assert!(r.starts_with("250"));
    assert_eq!(app.messages("bob@example.test").len(), 1);
    write_to_alice(&app, "bob@example.org", "held", "p2@example.org").await;
    assert_eq!(app.outbound.run_once().await.unwrap(), 1);
    let outbox: Vec<_> = std::fs::read_dir(app.dir.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(outbox.len(), 1, "the challenge is in ./data/outbox");
    let eml = std::fs::read_to_string(&outbox[0]).unwrap();
    assert!(eml.contains("verify#"), "{eml}");
    assert!(eml.contains("/verify/"), "{eml}");
}

on_both_backends!(
    a_link_release_into_a_full_allow_list_delivers_and_says_the_sender_was_not_listed,
    |backend| async move {
        let app = alice_challenging_with(backend, |c| c.challenge.max_rules_per_list = 2).await;
        app.add_rule(ALICE, ListKind::Allow, "from ^a@example\\.net$")
            .await;
        app.add_rule(ALICE, ListKind::Allow, "from ^b@example\\.net$")
            .await;
        let r = write_to_alice(&app, "bob@example.org", "Lunch?", "full1@example.org").await;
        assert!(r.starts_with("250"), "{r}");
        app.outbound.run_once().await.unwrap();
        let c = app.challenges_to("bob@example.org");
        assert_eq!(c.len(), 1);
        let (status, page) = app.http("POST", &format!("/verify/{}", c[0].token)).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(app.messages(ALICE).len(), 1, "the held mail is delivered");
        assert_eq!(
            app.allow_list(ALICE).await.len(),
            2,
            "the list stays at its limit"
        );
        let lines = app
            .store
            .activity(app.mailbox_id(ALICE).await, 20)
            .await
            .unwrap();
        assert!(
            lines.iter().any(|l| l.action == ActivityAction::Allowed
                && l.detail == "not added to the allow list (link): it is full (2 of 2 rules)"),
            "{lines:#?}"
        );
    }
);
