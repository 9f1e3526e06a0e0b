//! The web listener under attack: floods of idle connections, clients that
//! send half a request or stop reading, oversize bodies. Each attack is the
//! test; each asserts the safe outcome (closed, refused with a status, SMTP
//! and other clients still served), never how long it took.

use crate::support::*;
use boxtrap::config::{ByteSize, HumanDuration};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The upper bound for anything the server should do by itself; generous,
/// as the machine may be busy.
const BOUND: Duration = Duration::from_secs(30);

fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

/// A connection to `to` from the loopback address `src` (all of 127/8 is
/// this machine), so one test can be many clients.
async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{src}:0").parse().unwrap())
        .unwrap_or_else(|e| panic!("cannot bind {src}: {e}"));
    socket
        .connect(to)
        .await
        .unwrap_or_else(|e| panic!("cannot connect from {src}: {e}"))
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server closed the connection (FIN).
    Closed,
    /// The server reset the connection.
    Reset,
    /// Still open when `wait` ran out.
    Open,
}

/// Reads until the server closes the connection or `wait` runs out, and
/// says which, with everything read.
async fn read_until_end(stream: &mut TcpStream, wait: Duration) -> (End, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return End::Closed,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return End::Reset,
            }
        }
    })
    .await
    .unwrap_or(End::Open);
    (end, String::from_utf8_lossy(&got).into_owned())
}

/// One request on a fresh connection from `src`: the whole answer.
async fn get_from(src: &str, to: SocketAddr, path: &str) -> String {
    let mut s = connect_from(src, to).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (end, text) = read_until_end(&mut s, BOUND).await;
    assert_ne!(
        end,
        End::Open,
        "no complete answer within {BOUND:?}: {text:?}"
    );
    text
}

/// The attack, as one client would make it: `n` connections that never
/// send a byte, from the addresses `127.0.<third>.1..`, `per_address` each.
async fn idle_flood(to: SocketAddr, n: usize, per_address: usize, third: u8) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(n);
    for i in 0..n {
        let host = 1 + i / per_address;
        flood.push(connect_from(&format!("127.0.{third}.{host}"), to).await);
    }
    flood
}

/// Sorts flood connections into those the server holds open (nothing said,
/// still open after a while) and those it refused with a 503 at once.
async fn held_and_refused(flood: Vec<TcpStream>) -> (Vec<TcpStream>, usize, Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for mut s in flood {
        tasks.spawn(async move {
            let (end, text) = read_until_end(&mut s, Duration::from_secs(5)).await;
            (end, text, s)
        });
    }
    let (mut held, mut refused, mut other) = (Vec::new(), 0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (end, text, s) = r.unwrap();
        match end {
            End::Open if text.is_empty() => held.push(s),
            End::Closed if text.starts_with("HTTP/1.1 503 ") => refused += 1,
            _ => other.push(format!("{end:?} {text:?}")),
        }
    }
    (held, refused, other)
}

async fn smtp_transaction_works(app: &TestApp) {
    let id = app
        .send(
            "bob@example.org",
            &["alice@example.test"],
            "Subject: still here\r\n\r\nSMTP under a web flood.\r\n",
        )
        .await;
    assert!(!id.is_empty());
    assert!(
        app.messages("alice@example.test")
            .iter()
            .any(|(_, m)| String::from_utf8_lossy(m).contains("Subject: still here"))
    );
}

#[tokio::test]
async fn a_thousand_idle_connections_from_one_address_leave_smtp_and_other_clients_served() {
    // The test process is the attacker and the server: about 1,040 sockets.
    boxtrap::web::open_files::raise().unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        // Long enough that the flood is still there when we look.
        c.web.header_timeout = secs(120);
        c.web.idle_timeout = secs(120);
    })
    .await;
    let per_ip = boxtrap::config::Config::load(None, Vec::new())
        .unwrap()
        .web
        .max_connections_per_ip;
    let flood = idle_flood(app.web, 1000, 1000, 3).await;
    let (held, refused, other) = held_and_refused(flood).await;
    assert!(other.is_empty(), "neither held nor refused: {other:?}");
    assert_eq!(held.len(), per_ip, "one address holds its cap, no more");
    assert_eq!(refused, 1000 - per_ip);
    smtp_transaction_works(&app).await;
    let answer = get_from("127.0.0.2", app.web, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    drop(held);
}

#[tokio::test]
async fn a_thousand_idle_connections_from_many_addresses_are_capped_and_smtp_still_answers() {
    boxtrap::web::open_files::raise().unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.web.header_timeout = secs(120);
        c.web.idle_timeout = secs(120);
        c.web.max_connections = 200;
        c.web.max_connections_per_ip = 20;
    })
    .await;
    // 50 addresses, 20 each: within the per-address cap, over the total.
    let flood = idle_flood(app.web, 1000, 20, 4).await;
    let (held, refused, other) = held_and_refused(flood).await;
    assert!(other.is_empty(), "neither held nor refused: {other:?}");
    assert_eq!(held.len(), 200, "the total cap holds");
    assert_eq!(refused, 800);
    smtp_transaction_works(&app).await;
    // A newcomer is told at once, not left hanging.
    let answer = get_from("127.0.0.2", app.web, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("busy"), "{answer}");
    // When the flood goes, the web serves again.
    drop(held);
    let mut last = String::new();
    for _ in 0..300 {
        last = get_from("127.0.0.2", app.web, "/healthz").await;
        if last.starts_with("HTTP/1.1 200 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.starts_with("HTTP/1.1 200 "), "{last}");
}

#[tokio::test]
async fn idle_half_sent_and_keep_alive_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.web.header_timeout = ms(300)).await;
    let mut idle = TcpStream::connect(app.web).await.unwrap();
    let mut half = TcpStream::connect(app.web).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut kept = TcpStream::connect(app.web).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (idle_end, idle_text) = read_until_end(&mut idle, BOUND).await;
    let (half_end, _) = read_until_end(&mut half, BOUND).await;
    let (kept_end, kept_text) = read_until_end(&mut kept, BOUND).await;
    assert_eq!(idle_end, End::Closed, "idle: {idle_text:?}");
    assert!(idle_text.is_empty(), "{idle_text:?}");
    assert_ne!(half_end, End::Open, "half-sent head still open");
    // The keep-alive connection got its answer, then was closed idle.
    assert!(kept_text.starts_with("HTTP/1.1 200 "), "{kept_text:?}");
    assert_eq!(kept_end, End::Closed);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.web.header_timeout = secs(120);
        c.web.request_timeout = ms(500);
        c.web.idle_timeout = secs(1);
    })
    .await;
    // Pipelined requests whose answers (tens of MB) cannot all fit in the
    // socket buffers: the server's writes stall while we do not read.
    const N: usize = 20_000;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.web).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let requests = "GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n".repeat(N);
        let _ = w.write_all(requests.as_bytes()).await;
        w
    });
    // We never read. The server's writes stall; it must not wait for us
    // forever. It closes with our unread requests in its buffer, so the
    // close arrives as a reset, seen here without reading anything.
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut reset = false;
    while tokio::time::Instant::now() < deadline {
        if r.as_ref().take_error().unwrap().is_some() {
            reset = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !reset {
        // Closed without a reset after all? Then reading ends.
        let mut buf = vec![0u8; 64 * 1024];
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => return End::Closed,
                    Ok(_) => {}
                    Err(_) => return End::Reset,
                }
            }
        })
        .await
        .unwrap_or(End::Open);
        assert_ne!(end, End::Open, "a stalled reader's connection is kept open");
    }
    writer.abort();
}

#[tokio::test]
async fn an_oversize_body_gets_413_whether_declared_or_chunked() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.web.max_body_size = ByteSize(1024)).await;
    // Declared: refused on its head, before any of it is read.
    let mut s = TcpStream::connect(app.web).await.unwrap();
    s.write_all(b"POST /verify/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let (end, text) = read_until_end(&mut s, BOUND).await;
    assert!(text.starts_with("HTTP/1.1 413 "), "{text:?}");
    assert_ne!(end, End::Open);
    // Chunked, so no size is declared: refused once it passes the limit.
    let mut s = TcpStream::connect(app.web).await.unwrap();
    let chunk = "x".repeat(2000);
    s.write_all(
        format!(
            "POST /verify/abc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (_, text) = read_until_end(&mut s, BOUND).await;
    assert!(text.starts_with("HTTP/1.1 413 "), "{text:?}");
    // Within the limit, the request reaches its page (a bad token here).
    let mut s = TcpStream::connect(app.web).await.unwrap();
    let small = "y".repeat(1000);
    s.write_all(
        format!(
            "POST /verify/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{small}",
            small.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (_, text) = read_until_end(&mut s, BOUND).await;
    assert!(text.starts_with("HTTP/1.1 400 "), "{text:?}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_the_connection_is_closed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.web.request_timeout = ms(300)).await;
    let mut s = TcpStream::connect(app.web).await.unwrap();
    s.write_all(b"POST /verify/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let (end, text) = read_until_end(&mut s, BOUND).await;
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert_ne!(end, End::Open);
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_next_connection_with_503() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.web.max_connections_per_ip = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect_from("127.0.0.5", app.web).await);
    }
    // The three are served (a request on one of them is answered) ...
    open[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(BOUND, open[0].read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    // ... the fourth is refused, with a reason, at once ...
    let fourth = get_from("127.0.0.5", app.web, "/healthz").await;
    assert!(fourth.starts_with("HTTP/1.1 503 "), "{fourth}");
    assert!(fourth.contains("from your address"), "{fourth}");
    // ... another address is not affected ...
    let other = get_from("127.0.0.6", app.web, "/healthz").await;
    assert!(other.starts_with("HTTP/1.1 200 "), "{other}");
    // ... and a closed connection frees its place.
    drop(open.pop());
    let mut last = String::new();
    for _ in 0..300 {
        last = get_from("127.0.0.5", app.web, "/healthz").await;
        if last.starts_with("HTTP/1.1 200 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.starts_with("HTTP/1.1 200 "), "{last}");
}

#[tokio::test]
async fn a_request_head_over_32k_gets_431() {
    let app = TestApp::spawn().await;
    let mut s = TcpStream::connect(app.web).await.unwrap();
    let big = "z".repeat(40 * 1024);
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (end, text) = read_until_end(&mut s, BOUND).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text:?}");
    assert_ne!(end, End::Open);
}
