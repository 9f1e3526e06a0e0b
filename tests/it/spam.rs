//! The spam score in the policy (the authentication issue), end to end
//! with a real spamd (Debian's, `--local`, no Bayes: [`TestSpamd`]) and
//! real corpus mail: the mailbox's bands decide between delivering,
//! challenging and holding silently; spamd down leaves mail flowing.

use crate::corpus::corpus_dir;
use crate::support::*;
use boxtrap::config::HumanDuration;
use boxtrap::spam::testing::TestSpamd;
use std::time::Duration;

const ALICE: &str = "alice@example.test";

/// The first message of a corpus folder as it goes on the wire: without
/// the mbox `From ` line, CRLF line ends; with its envelope sender.
fn corpus_message(folder: &str) -> (String, String) {
    corpus_message_where(folder, |_| true)
}

/// The first message of a corpus folder that is a person's mail: no list
/// or bulk header (which would hold it as automated mail whatever its
/// score).
fn personal_corpus_message(folder: &str) -> (String, String) {
    corpus_message_where(folder, |m| {
        let head = m
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        [
            "\r\nlist-",
            "\r\nprecedence:",
            "\r\nmailing-list:",
            "\r\nx-mailing-list",
            "\r\nauto-submitted:",
        ]
        .iter()
        .all(|h| !head.contains(h))
    })
}

fn corpus_message_where(folder: &str, want: impl Fn(&str) -> bool) -> (String, String) {
    let dir = corpus_dir().join(folder);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("cmds"))
        .collect();
    names.sort();
    for name in names {
        let raw = String::from_utf8_lossy(&std::fs::read(&name).unwrap()).into_owned();
        let raw = match raw.strip_prefix("From ") {
            Some(rest) => rest.split_once('\n').map_or("", |(_, r)| r).to_owned(),
            None => raw,
        };
        let crlf = raw.replace("\r\n", "\n").replace('\n', "\r\n");
        if want(&crlf) {
            return (crlf, name.display().to_string());
        }
    }
    panic!("no such message in {folder}")
}

#[tokio::test]
async fn the_bands_deliver_challenge_or_hold_silently_by_spamds_score() {
    let spamd = TestSpamd::shared();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.spamd.address = spamd.addr().to_string();
        c.spamd.timeout = HumanDuration(Duration::from_secs(60));
    })
    .await;
    app.challenge_on(ALICE).await;
    let (spam, _) = corpus_message("spam-1");
    let (ham, ham_file) = personal_corpus_message("easy-ham-1");

    // A spam (SpamAssassin scores it 9.4 with the shipped rules) from a
    // sender who would be challenged: held silently, the rules kept.
    let r = send_raw(&app, "spammer@spam.example", ALICE, &spam).await;
    assert!(r.starts_with("250"), "{r}");
    // A ham (0.0): challenged as usual.
    let r = send_raw(&app, "friend@ham.example", ALICE, &ham).await;
    assert!(r.starts_with("250"), "{r}");
    let held = app.held().await;
    let by = |sender: &str| {
        held.iter()
            .find(|h| h.env_sender == sender)
            .unwrap_or_else(|| panic!("nothing held from {sender}: {held:?}"))
            .clone()
    };
    let s = by("spammer@spam.example");
    assert_eq!(s.reason, "spam", "{}", s.reason_detail);
    let score = s.spam_score.expect("scored") as f64 / 10.0;
    assert!(score >= 5.0, "{score}");
    assert!(
        s.reason_detail.starts_with(&format!(
            "spam score {score:.1} is at or above this mailbox's no-challenge score 5.0"
        )),
        "{}",
        s.reason_detail
    );
    assert!(
        s.spam_report
            .starts_with(&format!("spam score {score:.1} (")),
        "{}",
        s.spam_report
    );
    let data = app.store.held_data(s.id).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.starts_with("Authentication-Results: mx.example.test;"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\r\nX-Spam-Score: {score:.1}\r\n")),
        "{text}"
    );
    assert!(text.contains("\r\nX-Spam-Status: Yes, score="), "{text}");
    let h = by("friend@ham.example");
    assert_eq!(
        h.reason, "unknown-sender",
        "{ham_file}: {}",
        h.reason_detail
    );
    let ham_score = h.spam_score.expect("scored");
    assert!(ham_score < 50, "{ham_file}: {ham_score}");
    app.outbound.run_once().await.unwrap();
    let sent: Vec<String> = app.outbox().into_iter().map(|m| m.rcpt).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");

    // A bypass score above the ham's: delivered without a challenge.
    let mut settings = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    settings.spam_bypass_below = Some(ham_score + 1);
    app.store.update_mailbox_settings(&settings).await.unwrap();
    let r = send_raw(&app, "other@ham.example", ALICE, &ham).await;
    assert!(r.starts_with("250"), "{r}");
    let delivered = app.messages(ALICE);
    assert_eq!(delivered.len(), 1);
    assert!(String::from_utf8_lossy(&delivered[0].1).contains("X-Spam-Status: No, score="));
    assert!(
        app.held()
            .await
            .iter()
            .all(|h| h.env_sender != "other@ham.example")
    );
}

#[tokio::test]
async fn a_spam_at_the_reject_score_is_refused_at_data() {
    let spamd = TestSpamd::shared();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.spamd.address = spamd.addr().to_string();
        c.spamd.timeout = HumanDuration(Duration::from_secs(60));
        c.spam.reject_score = 5.0;
    })
    .await;
    app.challenge_on(ALICE).await;
    let (spam, _) = corpus_message("spam-1");
    let r = send_raw(&app, "spammer@spam.example", "bob@example.test", &spam).await;
    assert!(
        r.starts_with("550 5.7.1 Message refused as spam (score "),
        "{r}"
    );
    assert!(app.messages("bob@example.test").is_empty());
    assert!(app.held().await.is_empty());
    assert!(
        app.rejectlog().contains("spam score"),
        "{}",
        app.rejectlog()
    );
}

#[tokio::test]
async fn with_spamd_down_mail_still_flows_and_the_reason_says_why() {
    // A spamd of our own, stopped: its port refuses connections.
    let addr = TestSpamd::start().addr();
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "spamd did not stop"
    );
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.spamd.address = addr.to_string();
    })
    .await;
    app.challenge_on(ALICE).await;
    let (spam, _) = corpus_message("spam-1");
    let r = send_raw(&app, "spammer@spam.example", ALICE, &spam).await;
    assert!(r.starts_with("250"), "spamd down never refuses mail: {r}");
    let r = send_raw(&app, "spammer@spam.example", "bob@example.test", &spam).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(app.messages("bob@example.test").len(), 1);
    let held = app.held().await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].spam_score, None);
    assert!(
        held[0].spam_report.starts_with("spam score not checked: ")
            && held[0].spam_report.contains(&addr.to_string()),
        "{}",
        held[0].spam_report
    );
    // Unscored, it is challenged as any unknown sender is.
    assert_eq!(
        held[0].reason, "unknown-sender",
        "{}",
        held[0].reason_detail
    );
}

#[tokio::test]
async fn a_dns_blocklists_score_counts_toward_the_bands() {
    // score.test lists the test client (127.0.0.1) with 127.0.0.2.
    let app = TestApp::spawn_with_dns(
        Backend::Sqlite,
        &["--address=/1.0.0.127.score.test/127.0.0.2".to_owned()],
        |c| {
            c.auth.challenge_unauthenticated = true;
            c.dnsbl = vec![boxtrap::config::DnsblZone {
                zone: "score.test".into(),
                action: boxtrap::config::DnsblAction::Score,
                score: 6.0,
                returns: Vec::new(),
            }];
        },
    )
    .await;
    app.challenge_on(ALICE).await;
    let r = send_raw(
        &app,
        "someone@listed.example",
        ALICE,
        "From: someone@listed.example\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let held = app.held().await;
    assert_eq!(held[0].reason, "spam", "{}", held[0].reason_detail);
    assert_eq!(held[0].spam_score, Some(60));
    assert!(
        held[0]
            .spam_report
            .contains("client listed on score.test (127.0.0.2): +6.0"),
        "{}",
        held[0].spam_report
    );
    app.outbound.run_once().await.unwrap();
    assert!(app.outbox().is_empty());
}
