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
         Authentication-Results: mx.example.test;\n\
         \tspf=none smtp.mailfrom=bob@example.org;\n\
         \tdkim=none;\n\
         \tdmarc=none header.from=example.org policy.dmarc=none;\n\
         \tarc=none\n\
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

/// Sends one message from `from` to one `RCPT TO:` argument written as is
/// (brackets and all) and returns the reply to DATA.
async fn send_to_path(app: &TestApp, from: &str, rcpt_arg: &str, subject: &str) -> String {
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd(&format!("MAIL FROM:{from}"), "250 2.1.0").await;
    s.cmd(&format!("RCPT TO:{rcpt_arg}"), "250 2.1.5 Recipient OK")
        .await;
    s.cmd("DATA", "354").await;
    let reply = s.data(&format!("Subject: {subject}\r\n\r\nx\r\n")).await;
    assert!(reply.starts_with("250 2.0.0 OK id="), "{rcpt_arg}: {reply}");
    s.cmd("QUIT", "221").await;
    reply
}

// RFC 5321 §4.1.1.3 and §4.5.1: `RCPT TO:<Postmaster>` without a domain,
// in any letter case and in the forms clients really send.
on_both_backends!(
    the_bare_postmaster_reaches_smtp_postmaster_in_every_form,
    |backend| async move { bare_postmaster_in_every_form(backend).await }
);

async fn bare_postmaster_in_every_form(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.smtp.postmaster = "bob@example.test".into()).await;
    let forms = [
        "<Postmaster>",
        "<postmaster>",
        "<POSTMASTER>",
        "<PostMaster>",
        "Postmaster",
        "<Postmaster> ",
        " <postmaster>",
        "<\"postmaster\">",
        "<@relay.example.org:Postmaster>",
    ];
    for (i, form) in forms.iter().enumerate() {
        let reply = send_to_path(&app, "<x@example.org>", form, &format!("pm {i}")).await;
        let qid = queue_id_of(&reply);
        let log = app.mainlog();
        assert!(
            log.contains(&format!(
                "{qid} => bob@example.test <postmaster@mx.example.test> R=local T=maildir"
            )),
            "{form:?}: {log}"
        );
    }
    let bob = app.messages("bob@example.test");
    assert_eq!(bob.len(), forms.len());
    for (_, m) in &bob {
        let text = String::from_utf8_lossy(m);
        assert!(
            text.starts_with("Return-Path: <x@example.org>\nDelivered-To: bob@example.test\n"),
            "{text}"
        );
        assert!(
            text.contains("\tfor <postmaster@mx.example.test>;\n"),
            "{text}"
        );
    }
    assert!(app.messages("alice@example.test").is_empty());

    // With a domain it is that domain's postmaster: the default mailbox here.
    send_to_path(&app, "<x@example.org>", "<PostMaster@Example.TEST>", "pm d").await;
    assert_eq!(app.messages("bob@example.test").len(), forms.len() + 1);
    // Not one of ours: relaying, refused as before.
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<x@example.org>", "250").await;
    s.cmd(
        "RCPT TO:<postmaster@unknown.domain>",
        "550 5.7.1 Relaying denied",
    )
    .await;
    // Only Postmaster may omit the domain.
    s.cmd(
        "RCPT TO:<abuse>",
        "553 5.1.3 Bad address syntax: address has no @domain part (only <Postmaster> may omit it)",
    )
    .await;
    s.cmd("RCPT TO:<postmasters>", "553 5.1.3").await;
    s.cmd("RCPT TO:<Postmaster> NOTIFY=NEVER", "555 5.5.4")
        .await;
    s.cmd("QUIT", "221").await;
    let rejects = app.rejectlog();
    assert!(
        rejects.contains("rejected RCPT <postmaster@unknown.domain>: relay not permitted"),
        "{rejects}"
    );
}

#[tokio::test]
async fn without_smtp_postmaster_the_bare_postmaster_is_postmaster_at_the_host_name() {
    let app = TestApp::spawn().await;
    // The host name's parent domain (example.test) has a postmaster alias.
    app.store
        .add_alias(
            &addr_of("postmaster@example.test"),
            &[addr_of("alice@example.test")],
            boxtrap::clock::Timestamp::from_secs(T0),
        )
        .await
        .unwrap();
    let qid = queue_id_of(&send_to_path(&app, "<x@example.org>", "<Postmaster>", "one").await);
    assert_eq!(app.messages("alice@example.test").len(), 1);
    assert!(
        app.mainlog().contains(&format!(
            "{qid} => alice@example.test <postmaster@example.test> R=local T=maildir"
        )),
        "{}",
        app.mainlog()
    );
    // The host name itself, when it is a local domain, comes first.
    app.add_mailboxes(&["carol@mx.example.test"]).await;
    app.store
        .add_alias(
            &addr_of("postmaster@mx.example.test"),
            &[addr_of("carol@mx.example.test")],
            boxtrap::clock::Timestamp::from_secs(T0),
        )
        .await
        .unwrap();
    let qid = queue_id_of(&send_to_path(&app, "<x@example.org>", "<POSTMASTER>", "two").await);
    assert_eq!(app.messages("carol@mx.example.test").len(), 1);
    assert_eq!(app.messages("alice@example.test").len(), 1);
    assert!(
        app.mainlog().contains(&format!(
            "{qid} => carol@mx.example.test <postmaster@mx.example.test> R=local T=maildir"
        )),
        "{}",
        app.mainlog()
    );
}

#[tokio::test]
async fn a_bare_postmaster_with_nowhere_to_go_gets_550_naming_the_problem() {
    // No smtp.postmaster, and neither mx.example.test nor example.test has
    // a postmaster.
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<x@example.org>", "250").await;
    s.cmd(
        "RCPT TO:<Postmaster>",
        "550 5.1.1 Postmaster is not configured on this server\r\n",
    )
    .await;
    s.cmd(
        "RCPT TO:<postmaster@example.test>",
        "550 5.1.1 No such user",
    )
    .await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    assert!(s.data("Subject: x\r\n\r\nx\r\n").await.starts_with("250"));
    let rejects = app.rejectlog();
    assert!(
        rejects.contains(
            "F=<x@example.org> rejected RCPT <postmaster>: postmaster not configured \
             (smtp.postmaster is not set; postmaster@mx.example.test, postmaster@example.test \
             not routed)"
        ),
        "{rejects}"
    );
    assert!(app.mainlog().contains("rejected RCPT <postmaster>"));
}

const VERP: &str = "linux-secnews-return-67-legit-lists-secfocus=lists.example-corpus.test\
                    @securityfocus.example";

/// RFC 5321 §4.5.3.1 asks servers not to impose the 64-octet limit where
/// they can avoid it; Postfix and Exim accept such senders, and so do the
/// obs-local-part addresses mobile carriers issued (`taro..yamada@`).
#[tokio::test]
async fn long_verp_senders_and_mobile_addresses_are_accepted_and_delivered() {
    let app = TestApp::spawn().await;
    let senders = [
        VERP,
        "taro..yamada@docomo.example",
        "hanako.@docomo.example",
        ".ivan@mail.example.ru",
        "\"john doe\"@example.org",
        "bob@[192.0.2.1]",
        "bob@[IPv6:2001:db8::1]",
    ];
    for from in senders {
        let mut s = app.smtp().await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0 Sender OK")
            .await;
        s.cmd("RCPT TO:<alice@example.test>", "250 2.1.5").await;
        s.cmd("DATA", "354").await;
        let reply = s
            .data(&format!(
                "From: {from}\r\nTo: alice@example.test\r\nSubject: from {from}\r\n\r\nx\r\n"
            ))
            .await;
        assert!(reply.starts_with("250 2.0.0 OK id="), "{from}: {reply}");
        let qid = queue_id_of(&reply);
        s.cmd("QUIT", "221").await;
        let log = app.mainlog();
        assert!(
            log.contains(&format!("{qid} <= {from} H=(client.example.org)")),
            "{log}"
        );
        assert!(
            log.contains(&format!("{qid} => alice@example.test <alice@example.test>")),
            "{log}"
        );
    }
    let msgs = app.messages("alice@example.test");
    assert_eq!(msgs.len(), senders.len());
    for from in senders {
        assert!(
            msgs.iter().any(|(_, m)| m.starts_with(
                format!("Return-Path: <{from}>\nDelivered-To: alice@example.test\n").as_bytes()
            )),
            "{from}"
        );
    }
    // As recipients they are simply unknown users (and a 70-octet one too).
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd(&format!("MAIL FROM:<{VERP}>"), "250").await;
    s.cmd("RCPT TO:<taro..yamada@example.test>", "550 5.1.1")
        .await;
    s.cmd(
        &format!("RCPT TO:<{}@example.test>", "a".repeat(70)),
        "550 5.1.1",
    )
    .await;
    s.cmd("RCPT TO:<\"Alice\"@example.test>", "250 2.1.5").await;
    s.cmd("QUIT", "221").await;
    assert!(
        app.rejectlog().contains(&format!(
            "F=<{VERP}> rejected RCPT <taro..yamada@example.test>: unknown user"
        )),
        "{}",
        app.rejectlog()
    );
}

/// What cannot be routed or written is still refused, with the reason.
#[tokio::test]
async fn envelope_addresses_that_cannot_be_routed_are_refused_naming_the_problem() {
    let app = TestApp::spawn().await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    for (cmd, want) in [
        (
            "MAIL FROM:<bob>".to_owned(),
            "553 5.1.3 Bad address syntax: address has no @domain part\r\n",
        ),
        (
            "MAIL FROM:<Postmaster>".to_owned(),
            "553 5.1.3 Bad address syntax: address has no @domain part\r\n",
        ),
        (
            "MAIL FROM:<@example.org>".to_owned(),
            "553 5.1.3 Bad address syntax: local part is empty\r\n",
        ),
        (
            "MAIL FROM:<..@example.org>".to_owned(),
            "553 5.1.3 Bad address syntax: local part is empty\r\n",
        ),
        (
            "MAIL FROM:<bob smith@example.org>".to_owned(),
            "553 5.1.3 Bad address syntax: local part contains ' ', which is not allowed there",
        ),
        (
            "MAIL FROM:<bob;x@example.org>".to_owned(),
            "553 5.1.3 Bad address syntax: local part contains ';', which is not allowed there",
        ),
        (
            "MAIL FROM:<bob@exa_mple.org>".to_owned(),
            "553 5.1.3 Bad address syntax: domain \"exa_mple.org\" is not valid\r\n",
        ),
        (
            "MAIL FROM:<bob@>".to_owned(),
            "553 5.1.3 Bad address syntax: domain \"\" is not valid\r\n",
        ),
        (
            "MAIL FROM:<taro..yamada@döcomo.example>".to_owned(),
            "553 5.6.7",
        ),
        (
            format!("MAIL FROM:<{}@example.org>", "a".repeat(243)),
            "501 5.1.3 Path too long: address is 255 octets long, over the limit of 254",
        ),
    ] {
        s.cmd(&cmd, want).await;
    }
    // 254 octets is still fine.
    s.cmd(
        &format!("MAIL FROM:<{}@example.org>", "a".repeat(242)),
        "250 2.1.0",
    )
    .await;
    s.cmd("QUIT", "221").await;
}

/// Real clients: swaks and Python's smtplib send the bare postmaster and
/// the long and odd senders exactly as they are written above.
#[tokio::test]
async fn swaks_and_smtplib_reach_the_bare_postmaster_and_send_from_odd_addresses() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.postmaster = "bob@example.test".into()
    })
    .await;
    let out = tokio::process::Command::new("swaks")
        .args(["--server", &app.addr.to_string()])
        .args(["--from", VERP, "--to", "Postmaster"])
        .args(["--header", "Subject: via swaks"])
        .output()
        .await
        .expect("swaks (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("RCPT TO:<Postmaster>"), "{text}");
    assert!(text.contains("250 2.1.5 Recipient OK"), "{text}");
    let script = r#"
import smtplib, sys
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="py.example.org") as s:
    for frm in ["taro..yamada@docomo.example", "hanako.@docomo.example"]:
        refused = s.sendmail(frm, ["postmaster", "alice@example.test"],
                             "From: " + frm + "\r\nSubject: py\r\n\r\nx\r\n")
        assert refused == {}, refused
    try:
        s.sendmail("bob", ["alice@example.test"], "Subject: no domain\r\n\r\nx\r\n")
        raise SystemExit("a sender without a domain was accepted")
    except smtplib.SMTPSenderRefused as e:
        print("refused", e.smtp_code, e.smtp_error.decode())
print("ok")
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, "127.0.0.1", &app.addr.port().to_string()])
        .output()
        .await
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("refused 553 5.1.3 Bad address syntax: address has no @domain part"),
        "{text}"
    );
    let bob = app.messages("bob@example.test");
    assert_eq!(bob.len(), 3, "swaks's and smtplib's two");
    assert!(
        bob.iter()
            .any(|(_, m)| m.starts_with(format!("Return-Path: <{VERP}>\n").as_bytes()))
    );
    let alice = app.messages("alice@example.test");
    assert_eq!(alice.len(), 2);
    assert!(
        alice
            .iter()
            .any(|(_, m)| m.starts_with(b"Return-Path: <hanako.@docomo.example>\n"))
    );
}

// The envelope sender goes on into the quarantine (`env_sender`), the held
// copy and the plain copy unchanged, quoted local part included.
on_both_backends!(
    odd_envelope_senders_are_held_and_delivered_as_written,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on("alice@example.test").await;
        let senders = [
            VERP,
            "taro..yamada@docomo.example",
            "\"john doe\"@example.org",
        ];
        for from in senders {
            let mut s = app.smtp().await;
            s.cmd("EHLO client.example.org", "250").await;
            s.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0").await;
            s.cmd("RCPT TO:<alice@example.test>", "250 2.1.5").await;
            s.cmd("RCPT TO:<bob@example.test>", "250 2.1.5").await;
            s.cmd("DATA", "354").await;
            let reply = s
                .data(&format!(
                    "From: {from}\r\nTo: alice@example.test\r\nSubject: odd\r\n\r\nx\r\n"
                ))
                .await;
            assert!(reply.starts_with("250 2.0.0 OK id="), "{from}: {reply}");
            s.cmd("QUIT", "221").await;
        }
        let held = app.held().await;
        assert_eq!(held.len(), senders.len(), "{held:?}");
        for from in senders {
            assert!(
                held.iter().any(|h| h.env_sender == from),
                "{from}: {held:?}"
            );
        }
        let bob = app.messages("bob@example.test");
        assert_eq!(bob.len(), senders.len());
        for from in senders {
            assert!(
                bob.iter().any(|(_, m)| m.starts_with(
                    format!("Return-Path: <{from}>\nDelivered-To: bob@example.test\n").as_bytes()
                )),
                "{from}"
            );
        }
        // The bare postmaster into a mailbox with challenge-response on is
        // held like any mail, under the address it stands for.
        app.store
            .add_alias(
                &addr_of("postmaster@example.test"),
                &[addr_of("alice@example.test")],
                boxtrap::clock::Timestamp::from_secs(T0),
            )
            .await
            .unwrap();
        send_to_path(&app, "<x@example.org>", "<Postmaster>", "to the postmaster").await;
        let held = app.held().await;
        let pm = held
            .iter()
            .find(|h| h.subject == "to the postmaster")
            .unwrap();
        assert_eq!(pm.original_rcpt, "postmaster@example.test");
        let log = app.mainlog();
        assert!(!log.contains("temporarily rejected"), "{log}");
    }
);
