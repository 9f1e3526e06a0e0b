//! Challenge-response quarantine end to end, over real SMTP: `mx` hosts
//! example.test, where alice has challenge-response on, and sends its
//! challenges through `peer` (another boxtrap, hosting example.org) as its
//! smarthost — so every challenge really travels over SMTP on loopback.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::quarantine::SweepReport;
use boxtrap::store::held::{self, ActivityAction, OutboundState};
use std::time::Duration;

fn mail(from: &str, subject: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello Alice.\r\n"
    )
}

fn text_of(m: &(String, Vec<u8>)) -> String {
    String::from_utf8_lossy(&m.1).into_owned()
}

/// A header's value, unfolded (RFC 5322 §2.2.3).
fn header(text: &str, name: &str) -> Option<String> {
    let head = text.split("\n\n").next().unwrap_or("");
    let mut unfolded: Vec<String> = Vec::new();
    for line in head.lines() {
        match (line.starts_with([' ', '\t']), unfolded.last_mut()) {
            (true, Some(last)) => last.push_str(line),
            _ => unfolded.push(line.to_owned()),
        }
    }
    unfolded.into_iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

on_both_backends!(
    an_unknown_sender_is_held_challenged_once_and_released_by_the_link,
    |backend| async move {
        let Pair { mx, peer } = pair(backend).await;
        let r = send_raw(
            &mx,
            "bob@example.org",
            "alice@example.test",
            &mail("Bob <bob@example.org>", "Lunch?", "m1@example.org"),
        )
        .await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert!(
            mx.messages("alice@example.test").is_empty(),
            "held, not delivered"
        );
        let held = mx.store.list_held(None, None).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].sender, "bob@example.org");
        assert_eq!(held[0].reason, "unknown-sender");
        assert_eq!(held[0].subject, "Lunch?");

        // The challenge goes out through the smarthost and arrives at bob.
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
        let got = challenges(&peer, "bob@example.org");
        assert_eq!(got.len(), 1);
        let c = &got[0];
        assert_eq!(
            header(c, "Return-Path").as_deref(),
            Some("<>"),
            "sent from the null sender:\n{c}"
        );
        assert_eq!(header(c, "Auto-Submitted").as_deref(), Some("auto-replied"));
        assert_eq!(header(c, "Precedence").as_deref(), Some("bulk"));
        assert_eq!(
            header(c, "X-Auto-Response-Suppress").as_deref(),
            Some("All")
        );
        assert_eq!(
            header(c, "In-Reply-To").as_deref(),
            Some("<m1@example.org>")
        );
        assert_eq!(header(c, "References").as_deref(), Some("<m1@example.org>"));
        assert!(
            header(c, "From").unwrap().contains("alice@example.test"),
            "{c}"
        );
        assert!(header(c, "To").unwrap().contains("bob@example.org"), "{c}");
        let subject = header(c, "Subject").unwrap();
        assert!(
            subject.contains("Lunch?") && subject.contains("verify#"),
            "{subject}"
        );
        let token = token_in(c);
        assert!(
            header(c, "Message-ID").unwrap().contains(&token),
            "message id encodes the token"
        );
        // The text part is quoted-printable: undo soft line breaks and `=3D`.
        let decoded = c.replace("=\n", "").replace("=3D", "=");
        assert!(
            decoded.contains(&format!("https://mail.example.test/verify/{token}")),
            "link in the mail:\n{c}"
        );
        assert!(
            !c.contains("Hello Alice."),
            "never quotes the original body"
        );

        // A second message joins the held set without a second challenge.
        send_raw(
            &mx,
            "bob@example.org",
            "alice@example.test",
            &mail("bob@example.org", "Or dinner?", "m2@example.org"),
        )
        .await;
        assert_eq!(mx.outbound.run_once().await.unwrap(), 0);
        assert_eq!(challenges(&peer, "bob@example.org").len(), 1);
        assert_eq!(mx.store.list_held(None, None).await.unwrap().len(), 2);

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
        assert!(mx.messages("alice@example.test").is_empty());
        assert_eq!(mx.store.list_held(None, None).await.unwrap().len(), 2);

        // POST releases: both messages delivered, bob allowed.
        let (status, page) = mx.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 200, "{page}");
        let delivered = mx.messages("alice@example.test");
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
        assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
        let alice = mx
            .store
            .mailbox_settings_by_address("alice@example.test")
            .await
            .unwrap();
        let allow = mx
            .store
            .rules(alice.id, boxtrap::policy::rules::ListKind::Allow)
            .await
            .unwrap();
        assert_eq!(allow.len(), 1);
        assert!(
            allow[0].to_line().contains("bob@example"),
            "{}",
            allow[0].to_line()
        );

        // verifyreleased tells bob.
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
        let to_bob = peer.messages("bob@example.org");
        assert_eq!(to_bob.len(), 2);

        // The link is spent.
        let (status, page) = mx.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 410, "{page}");
        assert!(page.contains("already been used"), "{page}");

        // From now on bob's mail goes straight in.
        let r = send_raw(
            &mx,
            "bob@example.org",
            "alice@example.test",
            &mail("bob@example.org", "Thanks", "m3@example.org"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(mx.messages("alice@example.test").len(), 3);
        assert_eq!(mx.outbound.run_once().await.unwrap(), 0);
        // Even a late reply to the answered challenge is now ordinary mail.
        let late = format!(
            "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Re: Lunch? [verify#{token}]\r\n\
             Message-ID: <m4@example.org>\r\n\r\nSee you.\r\n"
        );
        let r = send_raw(&mx, "bob@example.org", "alice@example.test", &late).await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(
            mx.messages("alice@example.test").len(),
            4,
            "the late reply is delivered"
        );
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
        let activity: Vec<ActivityAction> = mx
            .store
            .activity(alice.id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
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
        let Pair { mx, peer } = pair(backend).await;
        send_raw(
            &mx,
            "bob@example.org",
            "alice@example.test",
            &mail("bob@example.org", "Quarterly report", "q1@example.org"),
        )
        .await;
        mx.outbound.run_once().await.unwrap();
        let c = challenges(&peer, "bob@example.org").remove(0);
        let token = token_in(&c);
        let challenge_id = header(&c, "Message-ID").unwrap().to_owned();
        // bob hits "reply": the subject keeps verify#..., In-Reply-To names the challenge.
        let reply = format!(
            "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Re: {}\r\n\
         In-Reply-To: {challenge_id}\r\nReferences: {challenge_id}\r\nMessage-ID: <reply-1@example.org>\r\n\r\n\
         Yes, it was me.\r\n",
            header(&c, "Subject").unwrap()
        );
        let r = send_raw(&mx, "bob@example.org", "alice@example.test", &reply).await;
        assert!(r.starts_with("250"), "{r}");
        let delivered = mx.messages("alice@example.test");
        assert_eq!(delivered.len(), 1, "only the held message");
        assert!(text_of(&delivered[0]).contains("Subject: Quarterly report"));
        assert!(!text_of(&delivered[0]).contains("Yes, it was me."));
        assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
        assert!(
            mx.quarantine.challenges().verify(&token).await.is_err(),
            "token used"
        );
        // A reply from someone else with the same token releases nothing (nothing left anyway) and is refused.
        let alice = mx
            .store
            .mailbox_settings_by_address("alice@example.test")
            .await
            .unwrap();
        let actions: Vec<ActivityAction> = mx
            .store
            .activity(alice.id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert!(actions.contains(&ActivityAction::Verified), "{actions:?}");
    }
);

on_both_backends!(
    a_reply_whose_token_matches_nothing_gets_returnverify_once_a_day,
    |backend| async move {
        let Pair { mx, peer } = pair(backend).await;
        // A well-formed token for a challenge that does not exist.
        let keyring = boxtrap::challenge::token::Keyring::new(
            boxtrap::challenge::token::TokenKey::generate(7),
            vec![],
        );
        let bogus = boxtrap::challenge::token::issue(
            &keyring,
            &boxtrap::challenge::token::Claims {
                mailbox: "alice@example.test",
                sender: "carol@example.org",
                challenge_id: 4242,
                expires: boxtrap::clock::Timestamp::from_secs(T0 + 86400),
            },
        );
        let reply = |n: u32| {
            format!(
                "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: Re: hi [verify#{bogus}]\r\nMessage-ID: <r{n}@example.org>\r\n\r\nme\r\n"
            )
        };
        assert!(
            send_raw(&mx, "carol@example.org", "alice@example.test", &reply(1))
                .await
                .starts_with("250")
        );
        assert!(
            send_raw(&mx, "carol@example.org", "alice@example.test", &reply(2))
                .await
                .starts_with("250")
        );
        assert!(
            mx.messages("alice@example.test").is_empty(),
            "replies are not delivered"
        );
        assert!(
            mx.store.list_held(None, None).await.unwrap().is_empty(),
            "nor held"
        );
        assert_eq!(
            mx.outbound.run_once().await.unwrap(),
            1,
            "one returnverify for both"
        );
        let got = peer.messages("carol@example.org");
        assert_eq!(got.len(), 1);
        assert_eq!(
            header(&text_of(&got[0]), "Return-Path").as_deref(),
            Some("<>")
        );
        // The next day, another one is allowed.
        mx.clock.advance_secs(86401);
        send_raw(&mx, "carol@example.org", "alice@example.test", &reply(3)).await;
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    }
);

#[tokio::test]
async fn bad_tokens_get_a_clear_page_with_the_right_status_and_change_nothing() {
    let Pair { mx, peer } = pair(Backend::Sqlite).await;
    send_raw(
        &mx,
        "bob@example.org",
        "alice@example.test",
        &mail("bob@example.org", "Hi", "b1@example.org"),
    )
    .await;
    mx.outbound.run_once().await.unwrap();
    let token = token_in(&challenges(&peer, "bob@example.org")[0]);

    // Tampered: one character of the tag changed.
    let mut t: Vec<char> = token.chars().collect();
    t[40] = if t[40] == 'A' { 'B' } else { 'A' };
    let tampered: String = t.into_iter().collect();
    for method in ["GET", "POST"] {
        let (status, page) = mx.http(method, &format!("/verify/{tampered}")).await;
        assert_eq!(status, 403, "{method} tampered: {page}");
        assert!(page.contains("altered"), "{page}");
    }
    // Malformed.
    let (status, page) = mx.http("POST", "/verify/not-a-token").await;
    assert_eq!(status, 400, "{page}");
    let (status, _) = mx
        .http("GET", &format!("/verify/{}", "A".repeat(5000)))
        .await;
    assert_eq!(status, 400);
    // Unknown: a good token for a challenge that does not exist.
    let keyring = boxtrap::challenge::token::Keyring::new(
        boxtrap::challenge::token::TokenKey::generate(1),
        vec![],
    );
    let unknown = boxtrap::challenge::token::issue(
        &keyring,
        &boxtrap::challenge::token::Claims {
            mailbox: "alice@example.test",
            sender: "bob@example.org",
            challenge_id: 999_999,
            expires: boxtrap::clock::Timestamp::from_secs(T0 + 86400),
        },
    );
    let (status, page) = mx.http("POST", &format!("/verify/{unknown}")).await;
    assert_eq!(status, 404, "{page}");
    assert_eq!(
        mx.store.list_held(None, None).await.unwrap().len(),
        1,
        "nothing released"
    );
    assert!(mx.messages("alice@example.test").is_empty());

    // Expired: past the mailbox's keep-days (15).
    mx.clock.advance_secs(15 * 86400 + 1);
    let (status, page) = mx.http("POST", &format!("/verify/{token}")).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert!(mx.messages("alice@example.test").is_empty());
    let (status, _) = mx.http("GET", "/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = mx.http("GET", "/nothing/here").await;
    assert_eq!(status, 404);
}

on_both_backends!(
    block_refuses_in_session_and_ignore_drops_silently,
    |backend| async move {
        let Pair { mx, peer: _peer } = pair(backend).await;
        let alice = mx
            .store
            .mailbox_settings_by_address("alice@example.test")
            .await
            .unwrap();
        let now = boxtrap::clock::Timestamp::from_secs(T0);
        use boxtrap::policy::rules::{ListKind, SenderRule};
        mx.store
            .add_rule(
                alice.id,
                ListKind::Block,
                &SenderRule::parse(r"from .*@spam\.example").unwrap(),
                now,
            )
            .await
            .unwrap();
        mx.store
            .add_rule(
                alice.id,
                ListKind::Ignore,
                &SenderRule::parse("subject lottery").unwrap(),
                now,
            )
            .await
            .unwrap();

        let r = send_raw(
            &mx,
            "x@spam.example",
            "alice@example.test",
            &mail("x@spam.example", "Buy", "s1@spam.example"),
        )
        .await;
        assert!(r.starts_with("550 5.7.1"), "{r}");
        assert!(mx.rejectlog().contains("block lists"), "{}", mx.rejectlog());

        let r = send_raw(
            &mx,
            "carol@example.org",
            "alice@example.test",
            &mail("carol@example.org", "You won the LOTTERY", "l1@example.org"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");

        // Block with a second recipient who accepts: 250, alice's copy dropped.
        let mut s = mx.smtp().await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd("MAIL FROM:<x@spam.example>", "250").await;
        s.cmd("RCPT TO:<alice@example.test>", "250").await;
        s.cmd("RCPT TO:<bob@example.test>", "250").await;
        s.cmd("DATA", "354").await;
        assert!(
            s.data(&mail("x@spam.example", "Buy", "s2@spam.example"))
                .await
                .starts_with("250")
        );
        assert_eq!(mx.messages("bob@example.test").len(), 1);

        assert!(mx.messages("alice@example.test").is_empty());
        assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
        assert_eq!(
            mx.outbound.run_once().await.unwrap(),
            0,
            "no mail to blocked or ignored senders"
        );
        assert!(mx.store.list_outbound().await.unwrap().is_empty());
        let actions: Vec<ActivityAction> = mx
            .store
            .activity(alice.id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert!(
            actions.contains(&ActivityAction::Ignored)
                && actions.contains(&ActivityAction::Blocked),
            "{actions:?}"
        );
    }
);

#[tokio::test]
async fn automated_and_unchallengeable_mail_is_held_without_a_challenge() {
    let Pair { mx, peer: _peer } = pair(Backend::Sqlite).await;
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
        let before = mx.store.list_held(None, None).await.unwrap().len();
        let r = send_raw(&mx, env_from, "alice@example.test", body).await;
        assert!(r.starts_with("250"), "{name}: {r}");
        let held = mx.store.list_held(None, None).await.unwrap();
        assert_eq!(held.len(), before + 1, "{name} is held");
        assert_eq!(held[0].reason, *reason, "{name}: {}", held[0].reason_detail);
    }
    assert_eq!(
        mx.outbound.run_once().await.unwrap(),
        0,
        "no challenge for any of them"
    );
    assert!(mx.messages("alice@example.test").is_empty());
}

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
    let a = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.listen = vec![format!("127.0.0.1:{port_a}").parse().unwrap()];
        c.outbound.mode = "smarthost".into();
        c.outbound.smarthost = format!("127.0.0.1:{port_b}");
        c.outbound.smarthost_tls = "off".into();
    })
    .await;
    let b = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.listen = vec![format!("127.0.0.1:{port_b}").parse().unwrap()];
        c.hostname = "mx.example.org".into();
        c.outbound.mode = "smarthost".into();
        c.outbound.smarthost = format!("127.0.0.1:{port_a}");
        c.outbound.smarthost_tls = "off".into();
    })
    .await;
    b.add_mailboxes(&["bob@example.org"]).await;
    a.challenge_on("alice@example.test").await;
    b.challenge_on("bob@example.org").await;

    let to_bob = "From: alice@example.test\r\nTo: bob@example.org\r\nSubject: hi bob\r\nMessage-ID: <a1@example.test>\r\n\r\nx\r\n";
    let to_alice = "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: hi alice\r\nMessage-ID: <b1@example.org>\r\n\r\nx\r\n";
    assert!(
        send_raw(&b, "alice@example.test", "bob@example.org", to_bob)
            .await
            .starts_with("250")
    );
    assert!(
        send_raw(&a, "bob@example.org", "alice@example.test", to_alice)
            .await
            .starts_with("250")
    );
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
    let held_a = a.store.list_held(None, None).await.unwrap();
    assert!(
        held_a
            .iter()
            .any(|h| h.reason != "unknown-sender" && h.reason_detail.contains("challenge")),
        "{held_a:?}"
    );
    let held_b = b.store.list_held(None, None).await.unwrap();
    assert!(
        held_b.iter().any(|h| h.reason != "unknown-sender"),
        "{held_b:?}"
    );
}

on_both_backends!(
    a_concurrent_double_post_delivers_each_message_once,
    |backend| async move {
        let Pair { mx, peer } = pair(backend).await;
        for i in 0..3 {
            send_raw(
                &mx,
                "bob@example.org",
                "alice@example.test",
                &mail(
                    "bob@example.org",
                    &format!("n{i}"),
                    &format!("d{i}@example.org"),
                ),
            )
            .await;
        }
        mx.outbound.run_once().await.unwrap();
        let token = token_in(&challenges(&peer, "bob@example.org")[0]);
        let path = format!("/verify/{token}");
        let (x, y) = tokio::join!(http(mx.web, "POST", &path), http(mx.web, "POST", &path));
        assert!(x.0 == 200 || y.0 == 200, "{x:?} {y:?}");
        assert!(
            [200, 410].contains(&x.0) && [200, 410].contains(&y.0),
            "{x:?} {y:?}"
        );
        let delivered = mx.messages("alice@example.test");
        assert_eq!(delivered.len(), 3, "each held message exactly once");
        assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
    }
);

on_both_backends!(
    a_release_that_crashed_midway_is_finished_exactly_once,
    |backend| async move {
        let Pair { mx, peer: _peer } = pair(backend).await;
        for i in 0..3 {
            send_raw(
                &mx,
                "bob@example.org",
                "alice@example.test",
                &mail(
                    "bob@example.org",
                    &format!("c{i}"),
                    &format!("c{i}@example.org"),
                ),
            )
            .await;
        }
        let alice = mx
            .store
            .mailbox_settings_by_address("alice@example.test")
            .await
            .unwrap();
        // The release claims the messages, delivers one, and the process dies
        // before the database hears of it.
        use boxtrap::clock::Clock;
        let now = mx.clock.now();
        let mut tx = mx.store.begin_write().await.unwrap();
        let ids = held::claim_for_release(&mut tx, alice.id, "bob@example.org", now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ids.len(), 3);
        let first = mx.store.held(ids[0]).await.unwrap().unwrap();
        let data = mx.store.held_data(ids[0]).await.unwrap().unwrap();
        let maildirs = boxtrap::delivery::maildir::Maildirs::new(
            mx.dir.path().join("mail"),
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
        assert_eq!(mx.messages("alice@example.test").len(), 1);
        // Not yet stale: the sweeper leaves a release in progress alone.
        assert_eq!(
            mx.quarantine.sweep_once().await.unwrap().releases_finished,
            0
        );
        // After the lease, the sweeper (as at a restart) finishes the release.
        mx.clock.advance_secs(301);
        let finished = mx.quarantine.sweep_once().await.unwrap().releases_finished;
        assert_eq!(finished, 3);
        let delivered = mx.messages("alice@example.test");
        assert_eq!(delivered.len(), 3, "each exactly once");
        assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
        assert_eq!(
            mx.quarantine.sweep_once().await.unwrap().releases_finished,
            0
        );
    }
);

#[tokio::test]
async fn challenges_beyond_the_rate_limit_are_held_silently() {
    let Pair { mx, peer: _peer } =
        pair_with(Backend::Sqlite, |c| c.challenge.max_per_mailbox_hour = 2).await;
    for who in ["bob", "carol", "dave"] {
        let from = format!("{who}@example.org");
        send_raw(
            &mx,
            &from,
            "alice@example.test",
            &mail(&from, "hi", &format!("{who}@example.org")),
        )
        .await;
    }
    let held = mx.store.list_held(None, None).await.unwrap();
    assert_eq!(held.len(), 3);
    let dave = held
        .iter()
        .find(|h| h.sender == "dave@example.org")
        .unwrap();
    assert_eq!(dave.reason, "rate-limited", "{}", dave.reason_detail);
    assert_eq!(mx.outbound.run_once().await.unwrap(), 2);
    // An hour later the limit has room again.
    mx.clock.advance_secs(3601);
    let from = "eve@example.org";
    send_raw(
        &mx,
        from,
        "alice@example.test",
        &mail(from, "hi", "eve@example.org"),
    )
    .await;
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
}

on_both_backends!(
    held_mail_expires_after_the_mailbox_keep_days,
    |backend| async move {
        let Pair { mx, peer } = pair(backend).await;
        send_raw(
            &mx,
            "bob@example.org",
            "alice@example.test",
            &mail("bob@example.org", "old", "o1@example.org"),
        )
        .await;
        mx.outbound.run_once().await.unwrap();
        let token = token_in(&challenges(&peer, "bob@example.org")[0]);
        mx.clock.advance_secs(14 * 86400);
        assert_eq!(
            mx.quarantine.sweep_once().await.unwrap(),
            SweepReport::default(),
            "kept for 15 days"
        );
        mx.clock.advance_secs(86400 + 1);
        let swept = mx.quarantine.sweep_once().await.unwrap();
        assert_eq!((swept.expired, swept.challenges_expired), (1, 1));
        assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
        let (status, _) = mx.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 410);
        assert!(mx.messages("alice@example.test").is_empty());
        let alice = mx
            .store
            .mailbox_settings_by_address("alice@example.test")
            .await
            .unwrap();
        let actions: Vec<ActivityAction> = mx
            .store
            .activity(alice.id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert!(actions.contains(&ActivityAction::Expired), "{actions:?}");
        assert!(
            mx.mainlog()
                .contains("expired after the mailbox's keep-days")
        );
        // A new message from bob gets a new challenge.
        send_raw(
            &mx,
            "bob@example.org",
            "alice@example.test",
            &mail("bob@example.org", "again", "o2@example.org"),
        )
        .await;
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    }
);

#[tokio::test]
async fn challenge_off_delivers_exactly_as_before_and_file_mode_writes_eml() {
    // Default outbound (file mode) and challenge-response on for alice only.
    let app = TestApp::spawn().await;
    app.challenge_on("alice@example.test").await;
    let r = send_raw(
        &app,
        "bob@example.org",
        "bob@example.test",
        &mail("bob@example.org", "plain", "p1@example.org"),
    )
    .await;
    assert!(r.starts_with("250"));
    assert_eq!(app.messages("bob@example.test").len(), 1);
    send_raw(
        &app,
        "bob@example.org",
        "alice@example.test",
        &mail("bob@example.org", "held", "p2@example.org"),
    )
    .await;
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

#[tokio::test]
async fn per_domain_and_global_challenge_limits_hold_silently_too() {
    let Pair { mx, peer: _peer } = pair_with(Backend::Sqlite, |c| {
        c.challenge.max_per_domain_day = 1;
        c.challenge.max_global_hour = 2;
    })
    .await;
    mx.add_mailboxes(&["zoe@example.test"]).await;
    mx.challenge_on("zoe@example.test").await;
    // Same sender domain, another mailbox: the domain limit is server-wide.
    for (from, to, id) in [
        ("bob@example.org", "alice@example.test", "d1@example.org"),
        ("carol@example.org", "zoe@example.test", "d2@example.org"),
        (
            "ann@other.example",
            "alice@example.test",
            "d3@other.example",
        ),
        ("ben@third.example", "zoe@example.test", "d4@third.example"),
    ] {
        send_raw(&mx, from, to, &mail(from, "hi", id)).await;
    }
    let held = mx.store.list_held(None, None).await.unwrap();
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
    assert_eq!(mx.outbound.run_once().await.unwrap(), 2);
}

#[tokio::test]
async fn a_challenge_that_cannot_be_sent_is_retried_then_recorded_against_the_held_mail() {
    // A smarthost that is not there: every attempt fails for now.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mx = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.outbound.mode = "smarthost".into();
        c.outbound.smarthost = dead.to_string();
        c.outbound.smarthost_tls = "off".into();
    })
    .await;
    mx.challenge_on("alice@example.test").await;
    send_raw(
        &mx,
        "bob@example.org",
        "alice@example.test",
        &mail("bob@example.org", "hi", "f1@example.org"),
    )
    .await;
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    let out = mx.store.list_outbound().await.unwrap();
    assert_eq!(
        (out[0].state, out[0].attempts),
        (OutboundState::Queued, 1),
        "{out:?}"
    );
    assert!(!out[0].last_error.is_empty());
    // Backoff: not due again before retry_interval (5 minutes).
    mx.clock.advance_secs(299);
    assert_eq!(mx.outbound.run_once().await.unwrap(), 0);
    mx.clock.advance_secs(2);
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    // Past retry_for (2 days) it fails for good, and the held message shows why.
    mx.clock.advance_secs(2 * 86400);
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    let out = mx.store.list_outbound().await.unwrap();
    assert_eq!(out[0].state, OutboundState::Failed, "{out:?}");
    let held = mx.store.list_held(None, None).await.unwrap();
    let error = mx
        .store
        .challenge_delivery_error(held[0].challenge_id.unwrap())
        .await
        .unwrap();
    assert!(error.unwrap().contains("retry time exceeded"));
    assert!(
        mx.mainlog().contains(" ** bob@example.org R=verify"),
        "{}",
        mx.mainlog()
    );
    assert_eq!(
        mx.outbound.run_once().await.unwrap(),
        0,
        "not retried after failing"
    );
}

#[tokio::test]
async fn list_changes_take_effect_on_the_next_message() {
    let Pair { mx, peer: _peer } = pair(Backend::Sqlite).await;
    let alice = mx
        .store
        .mailbox_settings_by_address("alice@example.test")
        .await
        .unwrap();
    let now = boxtrap::clock::Timestamp::from_secs(T0);
    use boxtrap::policy::rules::{ListKind, SenderRule};
    let r = send_raw(
        &mx,
        "eve@example.org",
        "alice@example.test",
        &mail("eve@example.org", "one", "e1@example.org"),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let rule = SenderRule::parse(r"from ^eve@").unwrap();
    mx.store
        .add_rule(alice.id, ListKind::Block, &rule, now)
        .await
        .unwrap();
    let r = send_raw(
        &mx,
        "eve@example.org",
        "alice@example.test",
        &mail("eve@example.org", "two", "e2@example.org"),
    )
    .await;
    assert!(
        r.starts_with("550 5.7.1"),
        "a new block rule applies at once: {r}"
    );
    mx.store
        .remove_rule(alice.id, ListKind::Block, &rule)
        .await
        .unwrap();
    mx.store
        .add_rule(alice.id, ListKind::Allow, &rule, now)
        .await
        .unwrap();
    let r = send_raw(
        &mx,
        "eve@example.org",
        "alice@example.test",
        &mail("eve@example.org", "three", "e3@example.org"),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(mx.messages("alice@example.test").len(), 1, "allowed now");
}

#[tokio::test]
async fn mail_from_an_allowed_sender_vouches_for_its_other_recipients() {
    let Pair { mx, peer: _peer } = pair(Backend::Sqlite).await;
    let alice = mx
        .store
        .mailbox_settings_by_address("alice@example.test")
        .await
        .unwrap();
    let now = boxtrap::clock::Timestamp::from_secs(T0);
    use boxtrap::policy::rules::{ListKind, SenderRule};
    mx.store
        .add_rule(
            alice.id,
            ListKind::Allow,
            &SenderRule::exact_sender("bob@example.org"),
            now,
        )
        .await
        .unwrap();
    let group = "From: bob@example.org\r\nTo: alice@example.test, Carol <carol@example.org>\r\n\
                 Cc: dave@example.org\r\nSubject: team lunch\r\nMessage-ID: <g1@example.org>\r\n\r\nhi all\r\n";
    assert!(
        send_raw(&mx, "bob@example.org", "alice@example.test", group)
            .await
            .starts_with("250")
    );
    assert_eq!(mx.messages("alice@example.test").len(), 1);
    // Carol and dave were vouched for: their mail goes straight in.
    for who in ["carol", "dave"] {
        let from = format!("{who}@example.org");
        let r = send_raw(
            &mx,
            &from,
            "alice@example.test",
            &mail(&from, "re: team lunch", &format!("{who}@x")),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    assert_eq!(mx.messages("alice@example.test").len(), 3);
    assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
    let allow = mx.store.rules(alice.id, ListKind::Allow).await.unwrap();
    assert!(
        !allow.iter().any(|r| r.to_line().contains("alice")),
        "never the mailbox itself"
    );

    // With the setting off, nobody else is vouched for.
    let mut s = mx.store.mailbox_settings(alice.id).await.unwrap();
    s.whitelist_by_association = false;
    mx.store.update_mailbox_settings(&s).await.unwrap();
    let group = "From: bob@example.org\r\nTo: alice@example.test, erin@example.org\r\nSubject: x\r\nMessage-ID: <g2@example.org>\r\n\r\nx\r\n";
    send_raw(&mx, "bob@example.org", "alice@example.test", group).await;
    send_raw(
        &mx,
        "erin@example.org",
        "alice@example.test",
        &mail("erin@example.org", "hello", "erin@x"),
    )
    .await;
    assert_eq!(
        mx.store.list_held(None, None).await.unwrap().len(),
        1,
        "erin is held"
    );
}
