//! Hostile senders: boxtrap sends mail to addresses strangers choose, so
//! every mail to a sender who has proved nothing (a challenge, a notice) is
//! counted against the `[challenge]` caps in the transaction that queues
//! it, one message causes at most one challenge per sender whatever its
//! fan-out, and what goes out quotes nothing of the attacker's but a short,
//! link-free subject. Each attack from the issue is a test here.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::address::EmailAddress;
use boxtrap::clock::Timestamp;
use boxtrap::config::Config;
use boxtrap::policy::facts::challenge_message_id;
use boxtrap::policy::rules::ListKind;

const ALICE: &str = "alice@example.test";
const NO_LIMIT: u32 = 1_000_000;

fn no_caps(c: &mut Config) {
    c.challenge.max_per_mailbox_hour = NO_LIMIT;
    c.challenge.max_per_domain_day = NO_LIMIT;
    c.challenge.max_per_address_day = NO_LIMIT;
    c.challenge.max_global_hour = NO_LIMIT;
}

fn mail(from: &str, to: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello.\r\n"
    )
}

/// `count` challenge-response mailboxes `m0..@example.test` and the alias
/// `all@example.test` that reaches every one of them.
async fn alias_of_mailboxes(app: &TestApp, count: usize) -> Vec<String> {
    let members: Vec<String> = (0..count).map(|i| format!("m{i}@example.test")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    app.add_mailboxes(&refs).await;
    for m in &members {
        app.challenge_on(m).await;
    }
    let targets: Vec<EmailAddress> = members.iter().map(|m| addr_of(m)).collect();
    app.store
        .add_alias(
            &addr_of("all@example.test"),
            &targets,
            Timestamp::from_secs(T0),
        )
        .await
        .unwrap();
    members
}

on_both_backends!(
    one_message_to_an_alias_of_100_mailboxes_sends_one_challenge,
    |backend| async move {
        let app = TestApp::spawn_with(backend, no_caps).await;
        let members = alias_of_mailboxes(&app, 100).await;
        let body = mail("victim@target.example", "all@example.test", "hi", "");
        let r = send_raw(&app, "victim@target.example", "all@example.test", &body).await;
        assert!(r.starts_with("250"), "{r}");
        app.outbound.run_once().await.unwrap();
        let sent = app.outbox();
        assert_eq!(sent.len(), 1, "one challenge, not one per mailbox");
        let challenge = sent[0].clone().challenge().unwrap();
        assert_eq!(challenge.mail.rcpt, "victim@target.example");
        // It speaks as the address that was mailed.
        assert_eq!(challenge.header("From"), Some("all@example.test"));
        assert_eq!(
            challenge.header("X-Boxtrap-Challenge"),
            Some("all@example.test")
        );
        let held = app.held().await;
        assert_eq!(held.len(), 100, "every copy is held");
        let shared = held
            .iter()
            .filter(|h| h.reason == "challenge-shared")
            .count();
        assert_eq!(shared, 99, "{:?}", held[0]);

        // The sender's answer releases every copy, and allows them in
        // every mailbox the message reached.
        let (status, page) = app
            .http("POST", &format!("/verify/{}", challenge.token))
            .await;
        assert_eq!(status, 200, "{page}");
        assert!(app.held().await.is_empty());
        for m in &members {
            assert_eq!(app.messages(m).len(), 1, "{m} has its copy");
            assert_eq!(app.allow_list(m).await.len(), 1, "{m} allows the sender");
        }
    }
);

on_both_backends!(
    concurrent_messages_stay_within_the_server_wide_cap,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| {
            no_caps(c);
            c.challenge.max_global_hour = 5;
        })
        .await;
        alias_of_mailboxes(&app, 3).await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let addr = app.addr;
            tasks.push(tokio::spawn(async move {
                let from = format!("sender{i}@domain{i}.example");
                let body = mail(&from, "all@example.test", "hi", "");
                let mut s = Smtp::connect(addr).await;
                s.cmd("EHLO client.example.org", "250").await;
                s.cmd(&format!("MAIL FROM:<{from}>"), "250").await;
                s.cmd("RCPT TO:<all@example.test>", "250").await;
                s.cmd("DATA", "354").await;
                let r = s.data(&body).await;
                s.cmd("QUIT", "221").await;
                r
            }));
        }
        for t in tasks {
            let r = t.await.unwrap();
            assert!(r.starts_with("250"), "{r}");
        }
        app.outbound.run_once().await.unwrap();
        assert_eq!(app.outbox().len(), 5, "the cap, not 10 or 30");
        let held = app.held().await;
        assert_eq!(held.len(), 30, "every copy is held");
        assert!(
            held.iter()
                .any(|h| h.reason_detail.contains("server-wide per hour")),
            "{:?}",
            held.iter().map(|h| &h.reason).collect::<Vec<_>>()
        );
    }
);

#[tokio::test]
async fn the_domain_and_address_caps_count_every_mailbox() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        no_caps(c);
        c.challenge.max_per_domain_day = 3;
    })
    .await;
    app.challenge_on(ALICE).await;
    for i in 0..8 {
        let from = format!("s{i}@victim.example");
        send_raw(&app, &from, ALICE, &mail(&from, ALICE, "hi", "")).await;
    }
    app.outbound.run_once().await.unwrap();
    assert_eq!(app.outbox().len(), 3, "three to victim.example, then none");

    // Per address: one victim mailed through several mailboxes.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        no_caps(c);
        c.challenge.max_per_address_day = 2;
    })
    .await;
    let members = alias_of_mailboxes(&app, 5).await;
    for m in &members {
        let body = mail("victim@target.example", m, "hi", "");
        send_raw(&app, "victim@target.example", m, &body).await;
    }
    app.outbound.run_once().await.unwrap();
    assert_eq!(app.outbox().len(), 2);
    // A day later the victim may be mailed again.
    app.clock.advance_secs(86_401);
    let body = mail("victim@target.example", ALICE, "hi", "");
    app.challenge_on(ALICE).await;
    send_raw(&app, "victim@target.example", ALICE, &body).await;
    app.outbound.run_once().await.unwrap();
    assert_eq!(app.outbox().len(), 3);
}

on_both_backends!(
    forged_replies_get_no_mail_and_notices_count_against_the_caps,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| {
            no_caps(c);
            c.challenge.max_per_domain_day = 3;
        })
        .await;
        app.challenge_on(ALICE).await;
        // 60 forged replies: a made-up token in the subject or the thread.
        let made_up = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIj";
        for i in 0..60 {
            let from = format!("v{i}@victim.example");
            let body = if i % 2 == 0 {
                mail(&from, ALICE, &format!("Re: hi verify#{made_up}"), "")
            } else {
                let refs = format!(
                    "References: {}\r\n",
                    challenge_message_id(made_up, "mx.example.test")
                );
                mail(&from, ALICE, "Re: hi", &refs)
            };
            send_raw(&app, &from, ALICE, &body).await;
        }
        app.outbound.run_once().await.unwrap();
        let sent = app.outbox();
        assert!(
            sent.iter().all(|m| m.clone().challenge().is_some()),
            "no returnverify for a token that proves nothing"
        );
        assert_eq!(sent.len(), 3, "challenges within the domain cap");

        // Blacklist notices count too.
        let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
        s.notify_blocked = true;
        app.store.update_mailbox_settings(&s).await.unwrap();
        app.add_rule(ALICE, ListKind::Block, "from .*@blocked\\.example")
            .await;
        for i in 0..8 {
            let from = format!("b{i}@blocked.example");
            let mut smtp = app.smtp().await;
            smtp.cmd("EHLO client.example.org", "250").await;
            smtp.cmd(&format!("MAIL FROM:<{from}>"), "250").await;
            smtp.cmd(&format!("RCPT TO:<{ALICE}>"), "250").await;
            smtp.cmd("RCPT TO:<bob@example.test>", "250").await;
            smtp.cmd("DATA", "354").await;
            let r = smtp.data(&mail(&from, ALICE, "hi", "")).await;
            assert!(r.starts_with("250"), "{r}");
        }
        app.outbound.run_once().await.unwrap();
        let notices = app
            .outbox()
            .into_iter()
            .filter(|m| m.rcpt.ends_with("@blocked.example"))
            .count();
        assert_eq!(notices, 3, "blacklist notices stop at the domain cap");
    }
);

#[tokio::test]
async fn mail_to_a_sender_quotes_only_a_short_link_free_subject() {
    let app = TestApp::spawn_with(Backend::Sqlite, no_caps).await;
    app.challenge_on(ALICE).await;
    let subject = format!(
        "Cheap pills at https://evil.example/buy and www.evil.example {}",
        "x".repeat(300)
    );
    let from = "\"Visit http://evil.example/now\" <victim@target.example>";
    let body = format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000 (see evil.example/offer)\r\n\r\nHello.\r\n"
    );
    send_raw(&app, "victim@target.example", ALICE, &body).await;
    app.outbound.run_once().await.unwrap();
    let sent = app.outbox();
    assert_eq!(sent.len(), 1);
    let raw = &sent[0].raw;
    assert!(!raw.contains("evil.example"), "{raw}");
    assert!(!raw.contains(&"x".repeat(100)), "shortened: {raw}");
    assert!(
        sent[0].text.contains("Cheap pills at [link]"),
        "{}",
        sent[0].text
    );
}

#[tokio::test]
async fn a_challenge_through_an_alias_does_not_name_the_mailbox_behind_it() {
    let app = TestApp::spawn_with(Backend::Sqlite, no_caps).await;
    app.challenge_on(ALICE).await;
    let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    s.display_name = "Alice Secret".into();
    app.store.update_mailbox_settings(&s).await.unwrap();
    app.store
        .add_alias(
            &addr_of("sales@example.test"),
            &[addr_of(ALICE)],
            Timestamp::from_secs(T0),
        )
        .await
        .unwrap();
    let body = mail("carol@example.org", "sales@example.test", "quote?", "");
    send_raw(&app, "carol@example.org", "sales@example.test", &body).await;
    app.outbound.run_once().await.unwrap();
    let sent = app.outbox();
    let c = sent[0].clone().challenge().unwrap();
    for text in [&c.mail.raw, &c.mail.text] {
        assert!(!text.contains("alice"), "{text}");
        assert!(!text.contains("Alice Secret"), "{text}");
    }
    assert!(
        c.mail.text.contains("sales@example.test"),
        "{}",
        c.mail.text
    );
    // Nor does the verification page.
    let (status, page) = app.http("GET", &format!("/verify/{}", c.token)).await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("alice"), "{page}");
    assert!(page.contains("sales@example.test"), "{page}");

    // Mail to alice herself is signed with her name.
    let body = mail("dave@example.org", ALICE, "hi", "");
    send_raw(&app, "dave@example.org", ALICE, &body).await;
    app.outbound.run_once().await.unwrap();
    let to_dave = app.challenges_to("dave@example.org").remove(0);
    assert!(
        to_dave.header("From").unwrap().contains("Alice Secret"),
        "{:?}",
        to_dave.header("From")
    );
}
