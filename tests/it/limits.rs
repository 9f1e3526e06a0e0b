//! Every limit, with its reply: size, recipients, line length, errors,
//! connections, timeouts; and graceful shutdown.

use crate::support::*;
use boxtrap::config::{ByteSize, HumanDuration};
use std::time::Duration;

#[tokio::test]
async fn oversize_messages_are_refused_by_declared_and_actual_size() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.max_message_size = ByteSize(4096)
    })
    .await;
    let mut s = app.smtp().await;
    let ehlo = s.cmd("EHLO client.example.org", "250").await;
    assert!(ehlo.contains("SIZE 4096"), "{ehlo}");
    s.cmd("MAIL FROM:<bob@example.org> SIZE=5000", "552 5.3.4")
        .await;
    s.cmd("MAIL FROM:<bob@example.org> SIZE=100", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    let big = format!("Subject: big\r\n\r\n{}", "0123456789abcdef\r\n".repeat(400));
    let r = s.data(&big).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session goes on, and a message that fits is taken.
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    assert!(
        s.data("Subject: small\r\n\r\nok\r\n")
            .await
            .starts_with("250")
    );
    let msgs = app.messages("alice@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0].1).contains("Subject: small"));
}

#[tokio::test]
async fn recipients_beyond_the_limit_get_452_and_the_rest_is_delivered() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.smtp.max_recipients = 2).await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("RCPT TO:<bob@example.test>", "250").await;
    s.cmd("RCPT TO:<team@example.test>", "452 4.5.3").await;
    s.cmd("DATA", "354").await;
    assert!(s.data("Subject: two\r\n\r\nx\r\n").await.starts_with("250"));
    assert_eq!(app.messages("alice@example.test").len(), 1);
    assert_eq!(app.messages("bob@example.test").len(), 1);
}

#[tokio::test]
async fn an_overlong_command_line_is_refused_and_the_session_goes_on() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.smtp.max_line_length = 600).await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    let long = format!("MAIL FROM:<{}@example.org>", "a".repeat(700));
    s.cmd(&long, "500 5.5.2").await;
    // Longer than any read buffer: still one error, then back in step.
    let huge = format!("NOOP {}", "x".repeat(200_000));
    s.cmd(&huge, "500 5.5.2").await;
    s.cmd("NOOP", "250").await;
}

#[tokio::test]
async fn too_many_errors_end_the_session_with_421() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.smtp.max_errors = 3).await;
    let mut s = app.smtp().await;
    s.cmd("FROB", "500").await;
    s.cmd("FROB", "500").await;
    let r = s.cmd("FROB", "500").await;
    let r = if r.contains("421") {
        r
    } else {
        s.reply().await
    };
    assert!(r.contains("421 4.7.0"), "{r}");
    assert!(s.closed().await);
}

#[tokio::test]
async fn an_idle_client_times_out_with_421() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.command_timeout = HumanDuration(Duration::from_millis(300))
    })
    .await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    let r = s.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(s.closed().await);
}

#[tokio::test]
async fn a_client_stalling_in_data_times_out_and_nothing_is_delivered() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.data_timeout = HumanDuration(Duration::from_millis(300))
    })
    .await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    s.send_raw(b"Subject: half\r\n\r\nand then noth").await;
    let r = s.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(app.messages("alice@example.test").is_empty());
}

#[tokio::test]
async fn connections_beyond_the_per_ip_limit_get_421() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.smtp.max_connections_per_ip = 2).await;
    let a = app.smtp().await;
    let b = app.smtp().await;
    assert!(a.greeting.starts_with("220") && b.greeting.starts_with("220"));
    let mut c = app.smtp().await;
    assert!(c.greeting.starts_with("421 4.7.0"), "{}", c.greeting);
    assert!(c.closed().await);
    drop(a);
    // The slot frees once the first session has ended.
    let mut ok = false;
    for _ in 0..50 {
        let d = app.smtp().await;
        if d.greeting.starts_with("220") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a freed slot is usable again");
}

#[tokio::test]
async fn connections_beyond_the_total_limit_get_421() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.smtp.max_connections = 1).await;
    let _a = app.smtp().await;
    let b = app.smtp().await;
    assert!(b.greeting.starts_with("421 4.7.0"), "{}", b.greeting);
}

#[tokio::test]
async fn shutdown_lets_a_message_in_transfer_finish_and_turns_new_commands_away() {
    let mut app = TestApp::spawn().await;
    let mut idle = app.smtp().await;
    idle.cmd("EHLO idle.example.org", "250").await;
    let mut busy = app.smtp().await;
    busy.cmd("EHLO busy.example.org", "250").await;
    busy.cmd("MAIL FROM:<bob@example.org>", "250").await;
    busy.cmd("RCPT TO:<alice@example.test>", "250").await;
    busy.cmd("DATA", "354").await;
    busy.send_raw(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .await;

    app.begin_shutdown();
    let r = idle.reply().await;
    assert!(r.starts_with("421 4.3.2"), "idle session told: {r}");
    assert!(idle.closed().await);

    busy.send_raw(b"second half\r\n.\r\n").await;
    let r = busy.reply().await;
    assert!(
        r.starts_with("250 2.0.0"),
        "message in transfer accepted: {r}"
    );
    let r = busy.reply().await;
    assert!(r.starts_with("421 4.3.2"), "then turned away: {r}");
    app.stopped().await;
    assert!(
        tokio::net::TcpStream::connect(app.addr).await.is_err(),
        "no longer listening"
    );
    let msgs = app.messages("alice@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0].1).contains("first half\nsecond half\n"));
}
