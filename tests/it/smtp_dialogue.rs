//! The RFC 5321 dialogue as a client sees it.

use crate::on_both_backends;
use crate::support::*;

const BODY: &str = "From: Bob <bob@example.org>\r\n\
To: alice@example.test\r\n\
Subject: Lunch\r\n\
Message-ID: <lunch-1@example.org>\r\n\
\r\n\
Shall we meet at noon?\r\n\
.A line starting with a dot\r\n\
..and one with two\r\n";

on_both_backends!(
    a_full_dialogue_delivers_the_message_byte_for_byte,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let mut s = app.smtp().await;
        assert_eq!(s.greeting, "220 mx.example.test ESMTP boxtrap\r\n");
        let ehlo = s
            .cmd("EHLO client.example.org", "250-mx.example.test")
            .await;
        for ext in [
            "PIPELINING",
            "SIZE 26214400",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ] {
            assert!(
                ehlo.contains(&format!("250-{ext}\r\n"))
                    || ehlo.contains(&format!("250 {ext}\r\n")),
                "{ext} in {ehlo}"
            );
        }
        s.cmd(
            "MAIL FROM:<bob@example.org> SIZE=300 BODY=8BITMIME",
            "250 2.1.0",
        )
        .await;
        s.cmd("RCPT TO:<alice@example.test>", "250 2.1.5").await;
        s.cmd("DATA", "354 ").await;
        let reply = s.data(BODY).await;
        assert!(reply.starts_with("250 2.0.0 OK id="), "{reply}");
        let qid = queue_id_of(&reply);
        s.cmd("QUIT", "221 2.0.0").await;

        let msgs = app.messages("alice@example.test");
        assert_eq!(msgs.len(), 1);
        let (name, content) = &msgs[0];
        let expected = format!(
            "Return-Path: <bob@example.org>\n\
         Delivered-To: alice@example.test\n\
         Received: from client.example.org ([127.0.0.1])\n\
         \tby mx.example.test (boxtrap) with ESMTP id {qid}\n\
         \tfor <alice@example.test>;\n\
         \tFri, 27 Nov 2026 14:05:53 +0000\n\
         From: Bob <bob@example.org>\n\
         To: alice@example.test\n\
         Subject: Lunch\n\
         Message-ID: <lunch-1@example.org>\n\
         \n\
         Shall we meet at noon?\n\
         .A line starting with a dot\n\
         ..and one with two\n"
        );
        assert_eq!(String::from_utf8_lossy(content), expected);
        assert_eq!(
            name,
            &format!("{T0}.{qid}_0.mx.example.test,S={}", expected.len())
        );

        let log = app.mainlog();
        assert!(
            log.contains(&format!(
                "{qid} <= bob@example.org H=(client.example.org) [127.0.0.1]:"
            )),
            "{log}"
        );
        assert!(log.contains("P=esmtp S="), "{log}");
        assert!(log.contains("id=<lunch-1@example.org>"), "{log}");
        assert!(
            log.contains(&format!(
                "{qid} => alice@example.test <alice@example.test> R=local T=maildir"
            )),
            "{log}"
        );
        assert!(log.contains(&format!("{qid} Completed")), "{log}");
    }
);

#[tokio::test]
async fn pipelined_commands_get_their_replies_in_order() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.send_raw(
        b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.test>\r\n\
          RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    )
    .await;
    assert!(s.reply().await.starts_with("250 2.1.0"));
    assert!(s.reply().await.starts_with("250 2.1.5"));
    assert!(s.reply().await.starts_with("550 5.1.1"));
    assert!(s.reply().await.starts_with("250 2.1.5"));
    assert!(s.reply().await.starts_with("354"));
    // The data, the end mark and the next transaction in one write.
    s.send_raw(
        b"Subject: p\r\n\r\nhi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    )
    .await;
    assert!(s.reply().await.starts_with("250 2.0.0 OK id="));
    assert!(s.reply().await.starts_with("250 2.1.0"));
    assert!(s.reply().await.starts_with("250 2.1.5"));
    assert!(s.reply().await.starts_with("354"));
    s.send_raw(b"Subject: bounce\r\n\r\nx\r\n.\r\nQUIT\r\n")
        .await;
    assert!(s.reply().await.starts_with("250 2.0.0"));
    assert!(s.reply().await.starts_with("221"));
    assert_eq!(app.messages("alice@example.test").len(), 1);
    let bob = app.messages("bob@example.test");
    assert_eq!(bob.len(), 2);
    assert!(
        bob.iter().any(|(_, c)| c.starts_with(b"Return-Path: <>\n")),
        "null sender kept"
    );
}

#[tokio::test]
async fn unknown_users_and_other_domains_are_refused_at_rcpt() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1").await;
    s.cmd("RCPT TO:<alice@elsewhere.test>", "550 5.7.1").await;
    s.cmd("RCPT TO:<alice@example.test.evil.test>", "550 5.7.1")
        .await;
    s.cmd("RCPT TO:<alice@[127.0.0.1]>", "550 5.7.1").await;
    s.cmd("DATA", "554 5.5.1").await;
    s.cmd("QUIT", "221").await;
    let rejects = app.rejectlog();
    assert!(
        rejects.contains("F=<bob@example.org> rejected RCPT <nobody@example.test>: unknown user"),
        "{rejects}"
    );
    assert!(
        rejects.contains("rejected RCPT <alice@elsewhere.test>: relay not permitted"),
        "{rejects}"
    );
}

#[tokio::test]
async fn subaddresses_case_and_aliases_reach_the_right_mailboxes_once() {
    let app = TestApp::spawn().await;
    let qid = app
        .send(
            "carol@example.org",
            &[
                "Alice+Lists@EXAMPLE.test",
                "team@example.test",
                "ALICE@example.test",
            ],
            "Subject: t\r\n\r\nx\r\n",
        )
        .await;
    let alice = app.messages("alice@example.test");
    let bob = app.messages("bob@example.test");
    assert_eq!(alice.len(), 1, "alice gets one copy");
    assert_eq!(bob.len(), 1, "bob gets the alias copy");
    assert!(
        alice[0]
            .1
            .starts_with(b"Return-Path: <carol@example.org>\nDelivered-To: alice@example.test\n")
    );
    assert!(
        bob[0]
            .1
            .starts_with(b"Return-Path: <carol@example.org>\nDelivered-To: bob@example.test\n")
    );
    let log = app.mainlog();
    assert!(
        log.contains(&format!(
            "{qid} => alice@example.test <Alice+Lists@example.test>"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("{qid} => bob@example.test <team@example.test>")),
        "{log}"
    );
    // Three RCPTs: no single "for" clause.
    assert!(!String::from_utf8_lossy(&alice[0].1).contains("\tfor <"));
}

#[tokio::test]
async fn commands_out_of_sequence_get_503() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("MAIL FROM:<bob@example.org>", "503 5.5.1").await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "503 5.5.1").await;
    s.cmd("DATA", "503 5.5.1").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "503 5.5.1").await;
    s.cmd("RSET", "250 2.0.0").await;
    s.cmd("RCPT TO:<alice@example.test>", "503 5.5.1").await;
    s.cmd("QUIT", "221").await;
}

#[tokio::test]
async fn malformed_commands_get_clear_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("FROB", "500 5.5.2").await;
    s.cmd("EHLO", "501 5.5.4").await;
    s.cmd("HELO client.example.org", "250 2.0.0 mx.example.test")
        .await;
    // ESMTP parameters need EHLO.
    s.cmd("MAIL FROM:<bob@example.org> SIZE=10", "555 5.5.4")
        .await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org> RET=HDRS", "555 5.5.4")
        .await;
    s.cmd("MAIL FROM:<bob@@example.org>", "553 5.1.3").await;
    s.cmd("MAIL FROM:<jö@example.org>", "553 5.6.7").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER", "555 5.5.4")
        .await;
    s.cmd("RCPT TO:<älice@example.test>", "553 5.6.7").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("VRFY alice", "252 2.5.0").await;
    s.cmd("EXPN team", "502 5.5.1").await;
    s.cmd("HELP", "214").await;
    s.cmd("NOOP", "250 2.0.0").await;
    s.cmd("DATA", "354").await;
    assert!(
        s.data("Subject: still fine\r\n\r\nx\r\n")
            .await
            .starts_with("250 2.0.0")
    );
    assert_eq!(app.messages("alice@example.test").len(), 1);
}

#[tokio::test]
async fn smtputf8_addresses_are_accepted_when_declared() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<jörg@bücher.example> SMTPUTF8", "250")
        .await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    assert!(
        s.data("Subject: Grüße\r\n\r\nÜ\r\n")
            .await
            .starts_with("250")
    );
    let msgs = app.messages("alice@example.test");
    let text = String::from_utf8(msgs[0].1.clone()).unwrap();
    assert!(
        text.starts_with("Return-Path: <jörg@bücher.example>\n"),
        "{text}"
    );
    assert!(text.contains("with UTF8SMTP id"), "{text}");
    assert!(text.contains("Subject: Grüße\n\nÜ\n"), "{text}");
}

#[tokio::test]
async fn a_smuggling_attempt_with_bare_lf_is_refused_whole() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    // A fake end of data with bare LFs, then a smuggled second transaction.
    s.send_raw(
        b"Subject: innocent\r\n\r\nhello\r\n\n.\nMAIL FROM:<ceo@example.test>\r\n\
          RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\npay now\r\n.\r\n",
    )
    .await;
    let r = s.reply().await;
    assert!(r.starts_with("550 5.5.2"), "{r}");
    // The smuggled commands were data, not commands: nothing more is pending.
    s.cmd("NOOP", "250").await;
    // Bare CR is refused too.
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    s.send_raw(b"Subject: cr\r\n\r\nold\rmac\r\n.\r\n").await;
    assert!(s.reply().await.starts_with("550 5.5.2"));
    s.cmd("QUIT", "221").await;
    assert!(app.messages("alice@example.test").is_empty());
    assert!(app.messages("bob@example.test").is_empty());
    assert!(app.rejectlog().contains("bare CR or LF"));
}

#[tokio::test]
async fn listens_on_ipv4_and_ipv6_side_by_side() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]
    })
    .await;
    let v6 = std::net::SocketAddr::new("::1".parse().unwrap(), {
        // The second listener's port: find it from the app's bound addresses.
        let mut s = None;
        for a in app.addrs.clone() {
            if a.is_ipv6() {
                s = Some(a.port());
            }
        }
        s.expect("an IPv6 listener")
    });
    let mut s = Smtp::connect(v6).await;
    s.cmd("EHLO v6.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    assert!(s.data("Subject: v6\r\n\r\nx\r\n").await.starts_with("250"));
    let text = String::from_utf8_lossy(&app.messages("alice@example.test")[0].1).into_owned();
    assert!(
        text.contains("Received: from v6.example.org ([IPv6:::1])"),
        "{text}"
    );
}

#[tokio::test]
async fn postmaster_of_every_local_domain_reaches_the_configured_mailbox() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.postmaster = "bob@example.test".into()
    })
    .await;
    app.add_mailboxes(&["carol@other.test"]).await;
    app.send(
        "x@example.org",
        &["PostMaster@other.test", "postmaster@example.test"],
        "Subject: abuse report\r\n\r\nx\r\n",
    )
    .await;
    assert_eq!(
        app.messages("bob@example.test").len(),
        1,
        "one copy for both"
    );
    // An explicit postmaster alias wins over the default.
    app.store
        .add_alias(
            &addr_of("postmaster@other.test"),
            &[addr_of("carol@other.test")],
            boxtrap::clock::Timestamp::from_secs(T0),
        )
        .await
        .unwrap();
    app.send(
        "x@example.org",
        &["postmaster@other.test"],
        "Subject: two\r\n\r\nx\r\n",
    )
    .await;
    assert_eq!(app.messages("carol@other.test").len(), 1);
    // Other unknown users are still unknown.
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<x@example.org>", "250").await;
    s.cmd("RCPT TO:<abuse@example.test>", "550 5.1.1").await;
}
