//! Every limit, with its reply: size, recipients, line length, errors,
//! connections, timeouts, the budget for message data in memory; and
//! graceful shutdown.

use crate::support::*;
use boxtrap::config::{ByteSize, HumanDuration};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// EHLO, MAIL (with `SIZE=` when given), RCPT; then DATA unless MAIL was
/// refused. Returns the last reply.
async fn up_to_data(s: &mut Smtp, size: Option<u64>) -> String {
    s.cmd("EHLO client.example.org", "250").await;
    let size = size.map(|n| format!(" SIZE={n}")).unwrap_or_default();
    let r = s
        .cmd(&format!("MAIL FROM:<bob@example.org>{size}"), "")
        .await;
    if !r.starts_with("250") {
        return r;
    }
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("DATA", "").await
}

/// `n` lines of 1,000 bytes (with CRLF).
fn lines(n: usize) -> Vec<u8> {
    format!("{}\r\n", "m".repeat(998)).repeat(n).into_bytes()
}

#[tokio::test]
async fn with_the_data_budget_spent_new_messages_get_452_and_a_transfer_over_it_421() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.smtp.max_message_size = ByteSize(512 * 1024);
        c.smtp.max_inflight_data = ByteSize(1024 * 1024);
    })
    .await;
    // Two sessions hold 500,000 bytes each of unfinished DATA.
    let mut a = app.smtp().await;
    let mut b = app.smtp().await;
    for s in [&mut a, &mut b] {
        assert!(up_to_data(s, None).await.starts_with("354"));
        s.send_raw(&lines(500)).await;
    }
    // Once the server has read them, 48,576 bytes are free: a larger
    // SIZE= is refused at MAIL FROM (RFC 1870 §6.1).
    let mut c = app.smtp().await;
    c.cmd("EHLO client.example.org", "250").await;
    let mut refused = String::new();
    for _ in 0..500 {
        let r = c.cmd("MAIL FROM:<bob@example.org> SIZE=100000", "").await;
        if r.starts_with("452") {
            refused = r;
            break;
        }
        c.cmd("RSET", "250").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        refused,
        "452 4.3.1 Insufficient system storage, try again later\r\n"
    );
    // Without SIZE=, DATA needs room for a small message (64K).
    c.cmd("MAIL FROM:<bob@example.org>", "250").await;
    c.cmd("RCPT TO:<alice@example.test>", "250").await;
    c.cmd("DATA", "452 4.3.1").await;
    c.cmd("QUIT", "221").await;

    // A transfer that would go over the budget is cut off with 421.
    let mut d = app.smtp().await;
    assert!(up_to_data(&mut d, Some(40_000)).await.starts_with("354"));
    d.send_raw(&lines(60)).await;
    let r = d.reply().await;
    // The reply, unless the close overtook it (a reset).
    assert!(r.is_empty() || r.starts_with("421 4.3.1"), "{r}");
    assert!(d.closed().await);
    let rejects = app.rejectlog();
    assert!(
        rejects.contains(
            "F=<bob@example.org> rejected MAIL: insufficient system storage: \
             smtp.max_inflight_data (1M) in use"
        ),
        "{rejects}"
    );
    assert!(
        rejects.contains("F=<bob@example.org> rejected DATA: insufficient system storage"),
        "{rejects}"
    );
    assert!(
        rejects.contains("F=<bob@example.org> rejected during DATA: insufficient system storage"),
        "{rejects}"
    );

    // The messages in transfer finish and are delivered; the budget is
    // then free for a message as large as the size limit.
    for s in [&mut a, &mut b] {
        s.send_raw(b".\r\n").await;
        let r = s.reply().await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    let mut e = app.smtp().await;
    assert!(up_to_data(&mut e, Some(500_000)).await.starts_with("354"));
    e.send_raw(&lines(500)).await;
    e.cmd(".", "250 2.0.0").await;
    let msgs = app.messages("alice@example.test");
    assert_eq!(msgs.len(), 3);
    // 500 lines of 998 bytes and LF, and the headers.
    assert!(msgs.iter().all(|(_, m)| m.len() > 499_000));
}

/// VmRSS and VmHWM (peak) of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MIB: u64 = 1024 * 1024;

/// The attack from the issue, on the real binary: 40 sessions each send
/// 24 MB of DATA and never finish it. Before the budget, the server's RSS
/// went from 12.5 MB to 956 MB and stayed there. Now its peak stays within
/// the budget (plus a small amount per connection), the sessions over it
/// are refused, and the memory is given back once they close. The
/// reference is the same process's RSS before the attack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_sessions_holding_24_mb_of_unfinished_data_stay_within_the_data_budget() {
    const SESSIONS: usize = 40;
    const MB_EACH: usize = 24;
    let budget = 64 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("boxtrap.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhostname = \"mx.example.test\"\n\
             [smtp]\nlisten = [\"127.0.0.1:0\"]\nmax_inflight_data = \"64M\"\n\
             [database]\nmax_connections = 4\n[web]\nlisten = \"127.0.0.1:0\"\n\
             [dns]\nservers = [\"{}\"]\n",
            dir.path().display().to_string(),
            TestDns::shared().addr
        ),
    )
    .unwrap();
    for args in [
        &["domain", "add", "example.test"][..],
        &["mailbox", "add", "alice@example.test", "--no-password"],
    ] {
        let out = run_boxtrap(&config, args, None);
        assert!(out.success, "{args:?}: {out:#?}");
    }
    let mut server = ServerProcess::start(&config);
    let pid = server.pid();
    // Warm up with one ordinary message, then take the reference.
    let mut s = Smtp::connect(server.addr).await;
    assert!(up_to_data(&mut s, None).await.starts_with("354"));
    assert!(
        s.data("Subject: hi\r\n\r\nhello\r\n")
            .await
            .starts_with("250")
    );
    drop(s);
    let (reference, _) = memory_of(pid);

    let megabyte = Arc::new(lines(1024));
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let addr = server.addr;
        let megabyte = megabyte.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            // Pipelined (RFC 2920): the four replies end with 354 (or 452).
            s.write_all(
                b"EHLO client.example.org\r\nMAIL FROM:<bob@example.org>\r\n\
                  RCPT TO:<alice@example.test>\r\nDATA\r\n",
            )
            .await
            .unwrap();
            let mut replies = Vec::new();
            while !replies.ends_with(b"\r\n")
                || !(replies.windows(4).any(|w| w == b"354 " || w == b"452 "))
            {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&replies));
                replies.extend_from_slice(&buf[..n]);
            }
            if replies.windows(4).any(|w| w == b"354 ") {
                for _ in 0..MB_EACH {
                    if s.write_all(&megabyte).await.is_err() {
                        break;
                    }
                }
            }
            (s, ())
        }));
    }
    let mut sessions = Vec::new();
    for t in tasks {
        let (s, _) = t.await.unwrap();
        sessions.push(s);
    }
    // Two sessions' 24 MB fit in the budget; every other one is cut off
    // (the server may still be reading what is in the sockets: wait for
    // it), and then the peak stops moving.
    let rejectlog = dir.path().join("log/rejectlog");
    let refused = || {
        std::fs::read_to_string(&rejectlog)
            .unwrap_or_default()
            .matches("insufficient system storage")
            .count()
    };
    for _ in 0..600 {
        if refused() >= SESSIONS - 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut peak = 0;
    let mut still = 0;
    while still < 10 {
        let (_, hwm) = memory_of(pid);
        still = if hwm == peak { still + 1 } else { 0 };
        peak = hwm;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = peak.saturating_sub(reference);
    let sent = (SESSIONS * MB_EACH) as u64 * 1_024_000;
    eprintln!(
        "RSS {} MiB before, peak {} MiB with {SESSIONS} x {MB_EACH} MB unfinished DATA \
         (budget {} MiB; {} sessions cut off): grew {} MiB, {:.2}x the budget, {:.3}x the \
         data the clients tried to send",
        reference / MIB,
        peak / MIB,
        budget / MIB,
        refused(),
        grown / MIB,
        grown as f64 / budget as f64,
        grown as f64 / sent as f64
    );
    // Two 24 MB messages fit in the budget; a third, or a second while a
    // cut-off session's bytes are still being given back, does not.
    let cut = refused();
    assert!(
        (SESSIONS - 2..SESSIONS).contains(&cut),
        "{cut} cut off: {}",
        std::fs::read_to_string(&rejectlog).unwrap()
    );
    // The budget, plus at most 1 MiB per connection (read buffer, a small
    // message's buffer, the task) and the runtime's own growth.
    assert!(
        grown <= budget + SESSIONS as u64 * MIB,
        "peak grew {} MiB for a budget of {} MiB",
        grown / MIB,
        budget / MIB
    );

    // Closing the sessions gives the memory back (the server notices each
    // close in turn: wait until it has).
    drop(sessions);
    let given_back = reference + 24 * MIB;
    let mut now = u64::MAX;
    for _ in 0..200 {
        now = memory_of(pid).0;
        if now <= given_back {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "RSS {} MiB after the sessions closed ({:.2}x the reference)",
        now / MIB,
        now as f64 / reference as f64
    );
    assert!(
        now <= given_back,
        "RSS stayed at {} MiB after the sessions closed (reference {} MiB)",
        now / MIB,
        reference / MIB
    );
    // And the server still takes mail.
    let mut s = Smtp::connect(server.addr).await;
    assert!(up_to_data(&mut s, None).await.starts_with("354"));
    assert!(
        s.data("Subject: after\r\n\r\nok\r\n")
            .await
            .starts_with("250")
    );
    server.terminate();
}
