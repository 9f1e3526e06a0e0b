//! Challenge only real senders (the authentication issue), end to end over
//! SMTP against a real DNS server on loopback (dnsmasq, [`TestDns`])
//! publishing SPF, DKIM and DMARC records, with messages signed by an
//! independent signer (Python's dkimpy, `tests/peers/dkim_sign.py`).
//!
//! The test client connects from 127.0.0.1 after `EHLO client.example.org`.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::policy::rules::ListKind;
use std::path::Path;

const ALICE: &str = "alice@example.test";
/// Debian's Python, where python3-dkim and python3-nacl are installed.
const PYTHON: &str = "/usr/bin/python3";

/// A DKIM key made by the independent signer: its private key file and
/// the TXT record to publish at `selector._domainkey.domain`.
struct Signer {
    alg: &'static str,
    key: std::path::PathBuf,
    record: String,
    selector: &'static str,
    domain: &'static str,
    _dir: tempfile::TempDir,
}

fn dkim_sign_py() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim_sign.py")
}

impl Signer {
    fn new(alg: &'static str, selector: &'static str, domain: &'static str) -> Signer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        let out = std::process::Command::new(PYTHON)
            .arg(dkim_sign_py())
            .args(["keygen", alg])
            .arg(&key)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e} (scripts/test.sh installs it)"));
        assert!(out.status.success(), "{out:?}");
        Signer {
            alg,
            key,
            record: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            selector,
            domain,
            _dir: dir,
        }
    }

    /// The dnsmasq option publishing the public key.
    fn published(&self) -> String {
        txt(
            &format!("{}._domainkey.{}", self.selector, self.domain),
            &self.record,
        )
    }

    /// `message` with a DKIM-Signature by this key on top.
    fn sign(&self, message: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new(PYTHON)
            .arg(dkim_sign_py())
            .args(["sign", self.alg])
            .arg(&self.key)
            .args([self.selector, self.domain])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(message.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

fn message(from: &str, subject: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 14:05:53 +0000\r\n\
         Message-ID: <{id}>\r\n\r\nHello Alice,\r\nthis is {from}.\r\n"
    )
}

/// The zone of the mixed-traffic tests, and the two signers it publishes.
fn zone() -> (Vec<String>, Signer, Signer) {
    let rsa = Signer::new("rsa", "s1", "dkim.example");
    let ed = Signer::new("ed25519", "ed", "ed.example");
    let records = vec![
        // SPF only.
        spf("spf.example"),
        // DKIM only (RSA and Ed25519), no SPF record.
        rsa.published(),
        ed.published(),
        // Forged: SPF names another host, and `-all`.
        txt("forged.example", "v=spf1 ip4:192.0.2.1 -all"),
        // Soft fail is no pass.
        txt("soft.example", "v=spf1 ip4:192.0.2.1 ~all"),
        // DMARC reject and quarantine, and mail that fails them.
        txt("reject.example", "v=spf1 ip4:192.0.2.1 -all"),
        txt("_dmarc.reject.example", "v=DMARC1; p=reject"),
        txt("quarantine.example", "v=spf1 ip4:192.0.2.1 -all"),
        txt("_dmarc.quarantine.example", "v=DMARC1; p=quarantine"),
        // An SPF pass for the envelope in another domain than From:.
        spf("bulk-sender.example"),
    ];
    (records, rsa, ed)
}

on_both_backends!(
    mixed_traffic_challenges_only_authenticated_senders,
    |backend| async move {
        let (records, rsa, ed) = zone();
        let app = TestApp::spawn_with_dns(backend, &records, |_| {}).await;
        app.challenge_on(ALICE).await;

        // (envelope sender, From:, signer, what is expected)
        let senders: Vec<(&str, &str, Option<&Signer>, &str)> = vec![
            ("ann@spf.example", "ann@spf.example", None, "unknown-sender"),
            (
                "dkim@other.example",
                "dan@dkim.example",
                Some(&rsa),
                "unknown-sender",
            ),
            (
                "ed@ed.example",
                "ed@ed.example",
                Some(&ed),
                "unknown-sender",
            ),
            (
                "eve@forged.example",
                "eve@forged.example",
                None,
                "not-authenticated",
            ),
            (
                "sam@soft.example",
                "sam@soft.example",
                None,
                "not-authenticated",
            ),
            (
                "nat@nothing.example",
                "nat@nothing.example",
                None,
                "not-authenticated",
            ),
            // SPF passes for the envelope, but From: is elsewhere.
            (
                "marketing@bulk-sender.example",
                "ceo@bank.example",
                None,
                "not-authenticated",
            ),
            // A DKIM signature by another domain than From:.
            (
                "x@other.example",
                "mallory@paypal.example",
                Some(&rsa),
                "not-authenticated",
            ),
            (
                "quinn@quarantine.example",
                "quinn@quarantine.example",
                None,
                "not-authenticated",
            ),
        ];
        // Two messages from each: still one challenge per authenticated sender.
        for round in 0..2 {
            for (i, (env, from, signer, _)) in senders.iter().enumerate() {
                let m = message(from, "hello", &format!("m{round}.{i}@test"));
                let m = signer.map_or(m.clone(), |s| s.sign(&m));
                let r = send_raw(&app, env, ALICE, &m).await;
                assert!(r.starts_with("250"), "{from}: {r}");
            }
        }
        let held = app.held().await;
        assert_eq!(held.len(), senders.len() * 2);
        for (_, from, _, want) in &senders {
            let reasons: Vec<&str> = held
                .iter()
                .filter(|h| h.sender == *from)
                .map(|h| h.reason.as_str())
                .collect();
            // The second message of an authenticated sender joins the
            // challenge the first one opened.
            let mut reasons = reasons;
            reasons.sort();
            let expected = match *want {
                "unknown-sender" => ["challenge-open", "unknown-sender"],
                other => [other, other],
            };
            assert_eq!(reasons, expected, "{from}");
            let h = held.iter().find(|h| h.sender == *from).unwrap();
            assert!(
                h.auth_results.starts_with("mx.example.test;"),
                "{from}: {}",
                h.auth_results
            );
            if *want == "not-authenticated" {
                assert!(
                    h.reason_detail
                        .starts_with("sender not authenticated (SPF "),
                    "{from}: {}",
                    h.reason_detail
                );
            }
        }
        // The quarantine policy's failure is named.
        let q = held
            .iter()
            .find(|h| h.sender == "quinn@quarantine.example")
            .unwrap();
        assert!(
            q.reason_detail.contains("DMARC fail"),
            "{}",
            q.reason_detail
        );

        // The answers came from the DNS server on loopback.
        let asked = app.dns.as_ref().unwrap().log();
        for q in [
            "query[TXT] spf.example",
            "query[TXT] s1._domainkey.dkim.example",
            "query[TXT] _dmarc.quarantine.example",
        ] {
            assert!(asked.contains(q), "{q}: {asked}");
        }

        app.outbound.run_once().await.unwrap();
        let sent: Vec<String> = app.outbox().into_iter().map(|m| m.rcpt).collect();
        let mut sent_sorted = sent.clone();
        sent_sorted.sort();
        assert_eq!(
            sent_sorted,
            ["ann@spf.example", "dan@dkim.example", "ed@ed.example"],
            "exactly one challenge to each authenticated sender, none to the others"
        );
        assert!(app.messages(ALICE).is_empty());

        // DMARC p=reject: refused at the end of DATA, nothing stored, and
        // nothing sent to the forged address.
        let m = message("rita@reject.example", "pay now", "r1@test");
        let r = send_raw(&app, "rita@reject.example", ALICE, &m).await;
        assert!(r.starts_with("550 5.7.1 "), "{r}");
        assert!(r.contains("DMARC"), "{r}");
        assert_eq!(app.held().await.len(), senders.len() * 2);
        assert!(
            app.rejectlog()
                .contains("DMARC policy of reject.example is reject")
        );

        // GTUBE scores 1000, past the reject score: refused, even from an
        // authenticated sender.
        let gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
        let m = format!(
            "{}{gtube}\r\n",
            message("ann@spf.example", "spam", "g1@test")
        );
        let r = send_raw(&app, "ann@spf.example", ALICE, &m).await;
        assert!(r.starts_with("550 5.7.1 "), "{r}");
        assert_eq!(app.held().await.len(), senders.len() * 2);
    }
);

#[tokio::test]
async fn a_changed_body_fails_dkim_and_gets_no_challenge() {
    let (records, rsa, _ed) = zone();
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &records, |_| {}).await;
    app.challenge_on(ALICE).await;
    let signed = rsa.sign(&message("dan@dkim.example", "hello", "b1@test"));
    let changed = signed.replace("this is dan", "this is not dan");
    assert_ne!(signed, changed);
    let r = send_raw(&app, "dan@dkim.example", ALICE, &changed).await;
    assert!(r.starts_with("250"), "{r}");
    let held = app.held().await;
    assert_eq!(held[0].reason, "not-authenticated");
    assert!(
        held[0].auth_results.contains("dkim=fail"),
        "{}",
        held[0].auth_results
    );
    // The relaxed mode still does not challenge a failure.
    app.outbound.run_once().await.unwrap();
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn the_relaxed_mode_challenges_senders_whose_domain_publishes_nothing_but_not_failures() {
    let (records, _rsa, _ed) = zone();
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &records, |c| {
        c.auth.challenge_unauthenticated_domains = vec!["example.test".into()];
    })
    .await;
    app.challenge_on(ALICE).await;
    for (env, id) in [
        ("nat@nothing.example", "n1@test"),
        ("eve@forged.example", "f1@test"),
        ("sam@soft.example", "s1@test"),
    ] {
        let r = send_raw(&app, env, ALICE, &message(env, "hi", id)).await;
        assert!(r.starts_with("250"), "{r}");
    }
    app.outbound.run_once().await.unwrap();
    let mut sent: Vec<String> = app.outbox().into_iter().map(|m| m.rcpt).collect();
    sent.sort();
    // SPF softfail is no failure (RFC 7208 §2.6.5: "probably not
    // authorized", not "not authorized").
    assert_eq!(sent, ["nat@nothing.example", "sam@soft.example"]);
    let eve = app
        .held()
        .await
        .into_iter()
        .find(|h| h.sender == "eve@forged.example")
        .unwrap();
    assert_eq!(eve.reason, "not-authenticated");
}

#[tokio::test]
async fn a_dns_failure_holds_without_a_challenge_and_never_refuses() {
    // A loopback port where no DNS server listens.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.dns.servers = vec![dead];
        c.dns.timeout = boxtrap::config::HumanDuration(std::time::Duration::from_millis(300));
        c.dns.attempts = 1;
    })
    .await;
    app.challenge_on(ALICE).await;
    let r = send_raw(
        &app,
        "ann@spf.example",
        ALICE,
        &message("ann@spf.example", "hi", "d1@test"),
    )
    .await;
    assert!(
        r.starts_with("250"),
        "a DNS failure never refuses mail: {r}"
    );
    let held = app.held().await;
    assert_eq!(
        held[0].reason, "auth-temporary",
        "{}",
        held[0].reason_detail
    );
    assert!(
        held[0].auth_results.contains("temperror"),
        "{}",
        held[0].auth_results
    );
    app.outbound.run_once().await.unwrap();
    assert!(app.outbox().is_empty());
    // Mail for a mailbox without challenge-response is delivered as usual.
    let r = send_raw(
        &app,
        "ann@spf.example",
        "bob@example.test",
        &message("ann@spf.example", "hi", "d2@test"),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(app.messages("bob@example.test").len(), 1);
}

#[tokio::test]
async fn every_message_gets_our_results_and_forged_ones_claiming_our_id_are_removed() {
    let (records, _rsa, _ed) = zone();
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &records, |_| {}).await;
    let forged = format!(
        "Authentication-Results: MX.Example.Test;\r\n\tspf=pass smtp.mailfrom=ceo@bank.example;\r\n\
         \tdkim=pass header.d=bank.example\r\n\
         Authentication-Results: relay.other.example; spf=pass smtp.mailfrom=x@y.example\r\n\
         X-Spam-Status: No, score=-5.0 required=5.0\r\nX-Spam-Flag: NO\r\n{}",
        message("eve@forged.example", "invoice", "a1@test")
    );
    let r = send_raw(&app, "eve@forged.example", "bob@example.test", &forged).await;
    assert!(r.starts_with("250"), "{r}");
    let (_, data) = app.messages("bob@example.test").remove(0);
    let text = String::from_utf8(data).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with("authentication-results: mx.example.test")
        })
        .collect();
    assert_eq!(ours.len(), 1, "{text}");
    assert!(
        !text.contains("ceo@bank.example"),
        "the forged results are gone: {text}"
    );
    assert!(text.contains("spf=fail"), "{text}");
    assert!(
        text.contains("Authentication-Results: relay.other.example;"),
        "another host's results stay: {text}"
    );
    assert!(
        !text.contains("X-Spam-Status: No"),
        "a forged verdict is gone: {text}"
    );
    assert!(!text.contains("X-Spam-Flag"), "{text}");
}

#[tokio::test]
async fn notices_go_only_to_authenticated_senders() {
    let (records, _rsa, _ed) = zone();
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &records, |_| {}).await;
    app.challenge_on(ALICE).await;
    let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    s.notify_blocked = true;
    app.store.update_mailbox_settings(&s).await.unwrap();
    for who in ["ann@spf.example", "eve@forged.example"] {
        app.add_rule(
            ALICE,
            ListKind::Block,
            &format!("from ^{}$", who.replace('.', r"\.")),
        )
        .await;
    }
    // To alice (blocks) and bob (delivers): the blocked copy is dropped
    // and its sender told, if the sender is authenticated.
    for (who, id) in [
        ("ann@spf.example", "b1@test"),
        ("eve@forged.example", "b2@test"),
    ] {
        let mut c = app.smtp().await;
        c.cmd("EHLO client.example.org", "250").await;
        c.cmd(&format!("MAIL FROM:<{who}>"), "250").await;
        c.cmd(&format!("RCPT TO:<{ALICE}>"), "250").await;
        c.cmd("RCPT TO:<bob@example.test>", "250").await;
        c.cmd("DATA", "354").await;
        let r = c.data(&message(who, "hi", id)).await;
        assert!(r.starts_with("250"), "{r}");
    }
    app.outbound.run_once().await.unwrap();
    let sent: Vec<String> = app.outbox().into_iter().map(|m| m.rcpt).collect();
    assert_eq!(sent, ["ann@spf.example"], "no notice to the forged sender");
}

#[tokio::test]
async fn quarantine_show_says_why_no_challenge_was_sent() {
    let (records, _rsa, _ed) = zone();
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &records, |_| {}).await;
    app.challenge_on(ALICE).await;
    let m = message("eve@forged.example", "invoice", "q1@test");
    let r = send_raw(&app, "eve@forged.example", ALICE, &m).await;
    assert!(r.starts_with("250"), "{r}");
    let id = app.held().await[0].id.to_string();
    let config = write_test_config(app.dir.path(), "", "");
    let out = run_boxtrap(&config, &["quarantine", "show", &id], None);
    assert!(out.success, "{out:#?}");
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line: {}", out.stdout))
            .to_owned()
    };
    assert_eq!(line("reason: "), "reason: not-authenticated");
    assert!(
        line("reason-detail: ")
            .starts_with("reason-detail: sender not authenticated (SPF fail (forged.example)"),
        "{}",
        out.stdout
    );
    let auth = line("authentication: ");
    assert!(
        auth.starts_with(
            "authentication: mx.example.test; spf=fail smtp.mailfrom=eve@forged.example;"
        ),
        "{auth}"
    );
    assert!(auth.contains("dmarc=none"), "{auth}");
    // Not scored: no spamd here, and no GTUBE.
    assert_eq!(
        line("spam-score: "),
        "spam-score: none (spam score not checked: no spamd configured ([spamd] address is empty))"
    );
}
