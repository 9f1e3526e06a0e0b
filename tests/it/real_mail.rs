//! What real mail agents send a challenge-response mailbox, handled right:
//! From: addresses written in every form RFC 5322 allows (and some it only
//! tolerates), Message-IDs that are not msg-ids, tokens that prove nothing,
//! and mail "from" the mailbox's own subaddresses and aliases.
//!
//! alice@example.test has challenge-response on; what boxtrap sends is
//! recorded, so each test reads the envelope and headers it would send.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::policy::facts::challenge_message_id;
use boxtrap::policy::rules::ListKind;
use boxtrap::store::held::ActivityAction;

const ALICE: &str = "alice@example.test";

async fn alice_challenging(backend: Backend) -> TestApp {
    let app = TestApp::spawn_on(backend).await;
    app.challenge_on(ALICE).await;
    app
}

fn mail(from_header: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: {from_header}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n{extra}\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello Alice.\r\n"
    )
}

/// Sends, expects 250, runs the outbound queue once; returns what went out.
async fn deliver(app: &TestApp, env_from: &str, body: &str) -> Vec<OutMail> {
    let before = app.outbox().len();
    let r = send_raw(app, env_from, ALICE, body).await;
    assert!(r.starts_with("250 2.0.0"), "{body}\n=> {r}");
    app.outbound.run_once().await.unwrap();
    app.outbox().split_off(before)
}

on_both_backends!(
    odd_from_addresses_get_a_challenge_at_the_address_as_written,
    |backend| async move {
        let app = alice_challenging(backend).await;
        // (From: as written, envelope sender, where the challenge goes)
        let cases = [
            (
                "John Doe <\"john doe\"@example.org>",
                "jd@example.org",
                "\"john doe\"@example.org",
            ),
            ("\"bob\"@example.org", "bob@example.org", "bob@example.org"),
            (
                "\"carol x\"@example.org",
                "carol@example.org",
                "\"carol x\"@example.org",
            ),
            ("dave@[192.0.2.1]", "dave@example.org", "dave@[192.0.2.1]"),
            (
                "Erin <erin@[IPv6:2001:db8::1]>",
                "erin@example.org",
                "erin@[IPv6:2001:db8::1]",
            ),
            (
                "frank@example.org.",
                "frank@example.org",
                "frank@example.org",
            ),
            (
                "den...4ik@mailru.example",
                "den...4ik@mailru.example",
                "den...4ik@mailru.example",
            ),
            (
                "Taro <taro..yamada@docomo.example>",
                "taro..yamada@docomo.example",
                "taro..yamada@docomo.example",
            ),
            (
                "hanako.@docomo.example",
                "hanako.@docomo.example",
                "hanako.@docomo.example",
            ),
            (
                "a-very-long-local-part-that-is-longer-than-sixty-four-octets-person@example.org",
                "x@example.org",
                "a-very-long-local-part-that-is-longer-than-sixty-four-octets-person@example.org",
            ),
        ];
        for (i, (from, env_from, rcpt)) in cases.iter().enumerate() {
            let body = mail(from, &format!("case {i}"), "");
            let sent = deliver(&app, env_from, &body).await;
            let held = app.held().await;
            assert_eq!(
                sent.len(),
                1,
                "one challenge for From: {from}: {:?}",
                held[0]
            );
            let c = &sent[0];
            assert_eq!(c.rcpt, *rcpt, "envelope recipient for From: {from}");
            assert_eq!(c.env_from, "", "from the null sender");
            let to = c.header("To").unwrap_or_default();
            assert!(to.contains(rcpt), "To: {to} for From: {from}");
            let held = app.held().await;
            assert_eq!(held[0].sender, *rcpt, "held sender for From: {from}");
            assert_eq!(
                held[0].reason, "unknown-sender",
                "{}",
                held[0].reason_detail
            );
        }
    }
);

on_both_backends!(
    an_unusable_message_id_drops_in_reply_to_not_the_challenge,
    |backend| async move {
        let app = alice_challenging(backend).await;
        let ids = [
            "Message-ID: not-an-id\r\n".to_owned(),
            "Message-ID: <no-at-sign>\r\n".to_owned(),
            "Message-ID: <has space@example.org>\r\n".to_owned(),
            format!("Message-ID: <{}@example.org>\r\n", "x".repeat(950)),
            "Message-ID:\r\n".to_owned(),
        ];
        for (i, id) in ids.iter().enumerate() {
            let from = format!("sender{i}@example.org");
            let sent = deliver(&app, &from, &mail(&from, "hello", id)).await;
            assert_eq!(sent.len(), 1, "a challenge for {id:?}");
            assert_eq!(sent[0].rcpt, from);
            assert_eq!(sent[0].header("In-Reply-To"), None, "{id:?}");
            assert_eq!(sent[0].header("References"), None, "{id:?}");
            let held = app.held().await;
            assert_eq!(held[0].reason, "unknown-sender", "{id:?}");
        }
        // A good one is threaded under.
        let from = "good@example.org";
        let good = "Message-ID: <ok.1@example.org>\r\n";
        let sent = deliver(&app, from, &mail(from, "hello", good)).await;
        assert_eq!(sent[0].header("In-Reply-To"), Some("<ok.1@example.org>"));
    }
);

#[tokio::test]
async fn a_from_without_a_usable_address_is_held_with_what_is_wrong() {
    let app = alice_challenging(Backend::Sqlite).await;
    let cases = [
        ("bob", "\"bob\": address has no @domain part"),
        ("Bob <bob@bad_domain.example>", "\"bob@bad_domain.example\""),
        ("<@example.org>", "\"@example.org\""),
    ];
    for (from, problem) in cases {
        let sent = deliver(&app, "bob@example.org", &mail(from, "hi", "")).await;
        assert!(sent.is_empty(), "no challenge for From: {from}");
        let held = app.held().await;
        assert_eq!(held[0].reason, "unusable-from", "From: {from}");
        assert!(
            held[0].reason_detail.contains(problem),
            "From: {from}: {}",
            held[0].reason_detail
        );
    }
}

/// A challenge-shaped token that no key of this server signed.
const MADE_UP: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIj";

on_both_backends!(
    a_token_that_proves_nothing_leaves_the_message_to_the_lists,
    |backend| async move {
        let app = alice_challenging(backend).await;
        // An unknown sender forwarding a BoxTrapper challenge is a person
        // writing for the first time: held and challenged like any other.
        let fwd = mail(
            "Carol <carol@example.org>",
            &format!("Fwd: Please verify verify#{MADE_UP}"),
            "",
        );
        let sent = deliver(&app, "carol@example.org", &fwd).await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        let challenge = sent[0].clone().challenge().expect("a challenge");
        assert!(!challenge.link.contains(MADE_UP), "{}", challenge.link);
        // Her reply quotes both tokens in its subject; ours releases.
        let subject = challenge.header("Subject").unwrap().to_owned();
        assert!(subject.contains(MADE_UP), "{subject}");
        let reply = mail("carol@example.org", &format!("Re: {subject}"), "");
        let sent = deliver(&app, "carol@example.org", &reply).await;
        assert_eq!(sent.len(), 1, "verifyreleased: {sent:?}");
        assert_eq!(app.messages(ALICE).len(), 1, "released");
        assert!(app.held().await.is_empty());
        // Not forwarded: the subject alone marks a challenge-response
        // system's challenge, held without an answer (no loop).
        let bare = mail("frank@example.org", &format!("verify#{MADE_UP}"), "");
        assert!(deliver(&app, "frank@example.org", &bare).await.is_empty());
        let held = app.held().await;
        assert_eq!(held[0].reason, "automated", "{}", held[0].reason_detail);

        // The same from an allowed sender is delivered.
        app.add_rule(ALICE, ListKind::Allow, "from dave@example\\.org")
            .await;
        let fwd = mail("dave@example.org", &format!("Re: x verify#{MADE_UP}"), "");
        assert!(deliver(&app, "dave@example.org", &fwd).await.is_empty());
        assert_eq!(app.messages(ALICE).len(), 2, "delivered");

        // References naming a challenge id of ours, in an ongoing thread.
        let refs = format!(
            "References: <root@example.org> {}\r\n",
            challenge_message_id(MADE_UP, "mail.example.test")
        );
        let body = mail("dave@example.org", "Re: Re: lunch", &refs);
        assert!(deliver(&app, "dave@example.org", &body).await.is_empty());
        assert_eq!(app.messages(ALICE).len(), 3, "delivered too");
        let body = mail("erin@example.org", "Re: Re: lunch", &refs);
        let sent = deliver(&app, "erin@example.org", &body).await;
        assert_eq!(sent.len(), 1, "an unknown sender is challenged as usual");
        assert_eq!(sent[0].rcpt, "erin@example.org");
        assert_eq!(app.held().await.len(), 2);
        assert!(
            !app.activity(ALICE)
                .await
                .contains(&ActivityAction::ReplyRefused),
            "made-up tokens are not replies"
        );
    }
);

on_both_backends!(
    only_the_challenged_sender_releases_with_this_mailboxs_token,
    |backend| async move {
        let app = alice_challenging(backend).await;
        app.challenge_on("bob@example.test").await;
        let first = mail(
            "bob@example.org",
            "Lunch?",
            "Message-ID: <l1@example.org>\r\n",
        );
        let sent = deliver(&app, "bob@example.org", &first).await;
        let token = sent[0].clone().challenge().unwrap().token;

        // carol replies with bob's token: her mail is held, bob's stays.
        let reply = mail(
            "carol@example.org",
            &format!("Re: Lunch? verify#{token}"),
            "",
        );
        assert!(deliver(&app, "carol@example.org", &reply).await.is_empty());
        let held = app.held().await;
        assert_eq!(held.len(), 2);
        assert!(held.iter().any(|h| h.sender == "carol@example.org"));
        assert!(app.messages(ALICE).is_empty());

        // bob sends alice's token to bob@example.test (another mailbox):
        // held there as mail, alice's copy is not released.
        let reply = mail("bob@example.org", &format!("Re: Lunch? verify#{token}"), "");
        let r = send_raw(&app, "bob@example.org", "bob@example.test", &reply).await;
        assert!(r.starts_with("250"), "{r}");
        let held = app.held().await;
        assert_eq!(held.len(), 3);
        assert_eq!(held[0].mailbox, "bob@example.test");
        assert!(app.messages(ALICE).is_empty());

        // bob replies to alice: released, the reply itself not delivered.
        let sent = deliver(&app, "bob@example.org", &reply).await;
        assert_eq!(sent.len(), 1, "verifyreleased: {sent:?}");
        assert_eq!(sent[0].rcpt, "bob@example.org");
        assert!(sent[0].text.contains("delivered"), "{}", sent[0].text);
        // It quotes and threads under the message released, not the reply.
        assert_eq!(sent[0].header("Subject"), Some("Delivered: Lunch?"));
        assert_eq!(sent[0].header("In-Reply-To"), Some("<l1@example.org>"));
        let delivered = app.messages(ALICE);
        assert_eq!(delivered.len(), 1);
        assert!(String::from_utf8_lossy(&delivered[0].1).contains("Subject: Lunch?"));
        assert_eq!(app.allow_list(ALICE).await.len(), 1);
    }
);

on_both_backends!(
    a_late_reply_is_held_and_the_sender_told_once_a_day,
    |backend| async move {
        let app = alice_challenging(backend).await;
        let first = mail("bob@example.org", "Lunch?", "");
        let sent = deliver(&app, "bob@example.org", &first).await;
        let token = sent[0].clone().challenge().unwrap().token;
        // Past the keep-days: the held mail and its challenge are purged.
        app.clock.advance_secs(16 * 86400);
        app.quarantine.sweep_once().await.unwrap();
        assert!(app.held().await.is_empty());

        let reply = mail("bob@example.org", &format!("Re: Lunch? verify#{token}"), "");
        let sent = deliver(&app, "bob@example.org", &reply).await;
        assert_eq!(sent.len(), 1, "returnverify");
        assert_eq!(sent[0].rcpt, "bob@example.org");
        assert!(
            sent[0].text.contains("could not be matched"),
            "{}",
            sent[0].text
        );
        assert_eq!(app.held().await.len(), 1, "the reply is held as mail");
        assert!(
            app.activity(ALICE)
                .await
                .contains(&ActivityAction::ReplyRefused)
        );
        // Once a day.
        assert!(deliver(&app, "bob@example.org", &reply).await.is_empty());
        assert_eq!(app.held().await.len(), 2);
    }
);

on_both_backends!(
    mail_from_the_mailboxs_own_subaddresses_and_aliases_is_not_challenged,
    |backend| async move {
        let app = alice_challenging(backend).await;
        // team@example.test is an alias of alice and bob.
        for from in [
            "alice+x@example.test",
            "Alice <ALICE+news@Example.TEST>",
            "team@example.test",
            "team+x@example.test",
        ] {
            let sent = deliver(&app, "someone@example.org", &mail(from, "me?", "")).await;
            assert!(
                sent.is_empty(),
                "no challenge to the owner for From: {from}"
            );
            let held = app.held().await;
            assert_eq!(held[0].reason, "own-address", "From: {from}");
        }
        // Another local mailbox is a person like any other.
        let sent = deliver(
            &app,
            "bob@example.test",
            &mail("bob@example.test", "hi", ""),
        )
        .await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].rcpt, "bob@example.test");
    }
);
