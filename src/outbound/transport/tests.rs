//! The transports against a fake ESMTP server on loopback, and direct MX
//! delivery against the map-based resolver and a real DNS server (dnsmasq)
//! on loopback.

use super::*;
use crate::config::HumanDuration;
use crate::config::{OutboundMode, TlsPolicy};
use crate::dns::StaticResolver;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message whose lines start with dots, to prove dot-stuffing both ways.
const MESSAGE: &[u8] = b"From: alice@example.test\r\n\
    To: bob@example.org\r\n\
    Subject: verify#abc\r\n\
    Auto-Submitted: auto-replied\r\n\
    \r\n\
    .a line that starts with a dot\r\n\
    ..and one with two\r\n\
    .\r\n\
    last line\r\n";

// ---- a tiny ESMTP server on loopback ----

#[derive(Clone, Default)]
struct Behaviour {
    /// Reply to every RCPT (e.g. "550 5.1.1 no such user"); None accepts.
    rcpt_reply: Option<&'static str>,
    /// Advertise STARTTLS, answer 220, then send garbage instead of TLS.
    broken_starttls: bool,
    /// Accept connections and never say anything.
    silent: bool,
}

#[derive(Debug, Clone, Default)]
struct Received {
    ehlo: String,
    mail_from: String,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
}

struct TestSmtp {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestSmtp {
    async fn start(behaviour: Behaviour) -> TestSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (out, count) = (received.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour.clone(), out.clone()));
            }
        });
        TestSmtp {
            addr,
            received,
            connections,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    b: Behaviour,
    out: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    if b.silent {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 test.example ESMTP\r\n").await?;
    let mut tx = Received::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let upper = text.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO ") {
            tx.ehlo = text[5..].to_owned();
            let tls = if b.broken_starttls {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            format!("250-test.example\r\n{tls}250-8BITMIME\r\n250 SIZE 10000000")
        } else if upper == "STARTTLS" && b.broken_starttls {
            w.write_all(b"220 2.0.0 go ahead\r\nthis is not a TLS record\r\n")
                .await?;
            return Ok(());
        } else if upper.starts_with("MAIL FROM:") {
            tx.mail_from = text[10..].to_owned();
            "250 2.1.0 ok".into()
        } else if upper.starts_with("RCPT TO:") {
            match b.rcpt_reply {
                Some(reply) => reply.into(),
                None => {
                    tx.rcpt_to.push(text[8..].to_owned());
                    "250 2.1.5 ok".into()
                }
            }
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                // RFC 5321 §4.5.2: remove one leading dot.
                let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
                data.extend_from_slice(unstuffed);
            }
            tx.data = data;
            out.lock().unwrap().push(tx.clone());
            tx = Received {
                ehlo: tx.ehlo.clone(),
                ..Received::default()
            };
            "250 2.0.0 queued as T1".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok".into()
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 not implemented here".into()
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// A loopback port with nothing listening on it.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn config() -> Config {
    let mut config = Config {
        hostname: "boxtrap.example.test".into(),
        ..Config::default()
    };
    config.outbound.timeout = HumanDuration(Duration::from_secs(10));
    config
}

fn smarthost_config(addr: SocketAddr, tls: TlsPolicy) -> Config {
    let mut config = config();
    config.outbound.mode = OutboundMode::Smarthost;
    config.outbound.smarthost = addr.to_string();
    config.outbound.smarthost_tls = tls;
    config
}

fn temporary(r: Result<String, SendError>) -> String {
    match r {
        Err(SendError::Temporary(e)) => e,
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

fn permanent(r: Result<String, SendError>) -> String {
    match r {
        Err(SendError::Permanent(e)) => e,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

// ---- construction ----

#[test]
fn every_mode_builds_outside_an_async_runtime() {
    let mut c = config();
    c.data_dir = "/nonexistent/data".into();
    let t = Transport::from_config(&c, None).unwrap();
    assert_eq!(t.describe(), "file /nonexistent/data/outbox");

    let t = Transport::from_config(
        &smarthost_config("127.0.0.1:2525".parse().unwrap(), TlsPolicy::Required),
        None,
    )
    .unwrap();
    assert_eq!(t.describe(), "smarthost 127.0.0.1:2525");

    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.dns_servers = vec!["127.0.0.1:5353".parse().unwrap()];
    let t = Transport::from_config(&c, None).unwrap();
    assert_eq!(t.describe(), "direct MX");
}

#[test]
fn a_bad_smarthost_is_refused_naming_the_key() {
    let mut c = smarthost_config("127.0.0.1:25".parse().unwrap(), TlsPolicy::Opportunistic);
    c.outbound.smarthost = "mail.example.net:smtp".into();
    let e = Transport::from_config(&c, None).err().unwrap().to_string();
    assert!(e.starts_with("outbound.smarthost: "), "{e}");
}

// ---- file outbox ----

#[tokio::test]
async fn the_outbox_gets_one_complete_eml_with_exactly_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.outbound.mode = OutboundMode::File;
    c.outbound.outbox_dir = dir.path().join("outbox");
    let t = Transport::from_config(&c, None).unwrap();
    let path = t.send(None, "bob@example.org", MESSAGE).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files,
        vec![PathBuf::from(&path)],
        "only the .eml, no temp file"
    );
    assert!(path.ends_with(".eml"), "{path}");
    assert_eq!(std::fs::read(&path).unwrap(), MESSAGE);

    let second = t.send(None, "bob@example.org", MESSAGE).await.unwrap();
    assert_ne!(second, path);
}

#[tokio::test]
async fn a_bad_recipient_is_permanent_even_for_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let t = Transport::File(FileOutbox::new(dir.path().to_owned()));
    let e = permanent(t.send(None, "not an address", MESSAGE).await);
    assert!(e.contains("not an address"), "{e}");
}

// ---- smarthost ----

#[tokio::test]
async fn the_smarthost_gets_the_null_sender_the_recipient_and_the_data_intact() {
    let server = TestSmtp::start(Behaviour::default()).await;
    let t = Transport::from_config(&smarthost_config(server.addr, TlsPolicy::Off), None).unwrap();
    let said = t.send(None, "bob@example.org", MESSAGE).await.unwrap();
    assert_eq!(
        said,
        format!("smarthost {} said 250 2.0.0 queued as T1", server.addr)
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ehlo, "boxtrap.example.test");
    assert_eq!(got[0].mail_from, "<>");
    assert_eq!(got[0].rcpt_to, vec!["<bob@example.org>"]);
    assert_eq!(
        String::from_utf8_lossy(&got[0].data),
        String::from_utf8_lossy(MESSAGE)
    );
}

#[tokio::test]
async fn a_named_sender_and_the_helo_name_are_used() {
    let server = TestSmtp::start(Behaviour::default()).await;
    let mut c = smarthost_config(server.addr, TlsPolicy::Opportunistic);
    c.outbound.helo_name = "out.example.test".into();
    let t = Transport::from_config(&c, None).unwrap();
    t.send(
        Some("alice@example.test"),
        "bob@example.org",
        b"Subject: x\r\n\r\nno final newline",
    )
    .await
    .unwrap();
    let got = server.received();
    assert_eq!(got[0].ehlo, "out.example.test");
    assert_eq!(got[0].mail_from, "<alice@example.test>");
    assert_eq!(got[0].data, b"Subject: x\r\n\r\nno final newline\r\n");
}

#[tokio::test]
async fn a_550_to_rcpt_is_permanent() {
    let server = TestSmtp::start(Behaviour {
        rcpt_reply: Some("550 5.1.1 no such user"),
        ..Behaviour::default()
    })
    .await;
    let t = Transport::from_config(&smarthost_config(server.addr, TlsPolicy::Off), None).unwrap();
    let e = permanent(t.send(None, "nobody@example.org", MESSAGE).await);
    assert!(e.contains("550") && e.contains("no such user"), "{e}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_451_to_rcpt_is_temporary() {
    let server = TestSmtp::start(Behaviour {
        rcpt_reply: Some("451 4.3.0 try again later"),
        ..Behaviour::default()
    })
    .await;
    let t = Transport::from_config(&smarthost_config(server.addr, TlsPolicy::Off), None).unwrap();
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(e.contains("451") && e.contains("try again later"), "{e}");
}

#[tokio::test]
async fn an_auth_rejection_is_temporary() {
    // 530 here stands for "authentication required": fix the config, keep the mail.
    let server = TestSmtp::start(Behaviour {
        rcpt_reply: Some("530 5.7.0 authentication required"),
        ..Behaviour::default()
    })
    .await;
    let t = Transport::from_config(&smarthost_config(server.addr, TlsPolicy::Off), None).unwrap();
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(e.contains("530"), "{e}");
}

#[tokio::test]
async fn a_refused_connection_is_temporary() {
    let addr = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let t =
        Transport::from_config(&smarthost_config(addr, TlsPolicy::Opportunistic), None).unwrap();
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(e.contains(&addr.to_string()), "{e}");
}

#[tokio::test]
async fn required_tls_against_a_server_without_starttls_is_temporary() {
    let server = TestSmtp::start(Behaviour::default()).await;
    let t =
        Transport::from_config(&smarthost_config(server.addr, TlsPolicy::Required), None).unwrap();
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(e.contains("STARTTLS"), "{e}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_failed_tls_handshake_with_the_smarthost_is_temporary() {
    let server = TestSmtp::start(Behaviour {
        broken_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let t = Transport::from_config(
        &smarthost_config(server.addr, TlsPolicy::Opportunistic),
        None,
    )
    .unwrap();
    temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(
        server.received().is_empty(),
        "no plain-text fallback to a smarthost"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_as_temporary() {
    let server = TestSmtp::start(Behaviour {
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let mut c = smarthost_config(server.addr, TlsPolicy::Off);
    c.outbound.timeout = HumanDuration(Duration::from_millis(300));
    let t = Transport::from_config(&c, None).unwrap();
    let started = std::time::Instant::now();
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(e.contains("outbound.timeout"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- direct MX, against dnsmasq on loopback ----

/// A private dnsmasq answering only from its command line, on a loopback
/// port; killed on drop. A missing dnsmasq fails the test (scripts/test.sh
/// installs dnsmasq-base).
struct Dnsmasq {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The zone every direct-delivery test uses. `--local` makes dnsmasq
/// answer NXDOMAIN/NODATA for these zones itself; any other name has no
/// upstream, so dnsmasq answers REFUSED.
const ZONE: &[&str] = &[
    "--local=/example.org/",
    "--local=/test/",
    // Two exchangers: the preferred one refuses connections.
    "--mx-host=example.org,mx2.example.org,10",
    "--mx-host=example.org,mx1.example.org,5",
    "--host-record=mx1.example.org,127.0.0.2",
    "--host-record=mx2.example.org,127.0.0.1",
    // No MX, only an address: implicit MX.
    "--host-record=implicit.test,127.0.0.1",
    // RFC 7505 null MX.
    "--mx-host=nullmx.test,.,0",
    // An MX whose host does not exist.
    "--mx-host=dangling.test,nowhere.test,10",
];

impl Dnsmasq {
    fn start(records: &[&str]) -> Dnsmasq {
        let bin = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join("dnsmasq"))
            .find(|path| path.is_file())
            .expect("dnsmasq not found: install dnsmasq-base (bash scripts/test.sh does)");
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("dnsmasq.log");
        for _ in 0..5 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = std::process::Command::new(&bin)
                .args([
                    "--keep-in-foreground",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--log-facility=-",
                    "--log-queries",
                ])
                .arg(format!("--port={port}"))
                .args(records)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            for _ in 0..100 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Dnsmasq {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "dnsmasq did not start:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("dnsmasq.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn direct(dns: SocketAddr, mx_port: u16) -> Transport {
    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.dns_servers = vec![dns];
    c.outbound.mx_port = mx_port;
    Transport::from_config(&c, None).unwrap()
}

#[tokio::test]
async fn direct_delivery_follows_mx_preference_past_a_dead_exchanger() {
    let dns = Dnsmasq::start(ZONE);
    let server = TestSmtp::start(Behaviour::default()).await;
    let t = direct(dns.addr, server.addr.port());
    let said = t
        .send(None, "bob@example.org", MESSAGE)
        .await
        .unwrap_or_else(|e| panic!("{e}\ndnsmasq log:\n{}", dns.log()));
    assert_eq!(
        said,
        format!(
            "mx2.example.org [127.0.0.1]:{} said 250 2.0.0 queued as T1",
            server.addr.port()
        )
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "<>");
    assert_eq!(got[0].rcpt_to, vec!["<bob@example.org>"]);
    assert_eq!(got[0].data, MESSAGE);
    let log = dns.log();
    assert!(
        log.contains("mx1.example.org"),
        "mx1 was tried first:\n{log}"
    );
}

#[tokio::test]
async fn a_domain_without_mx_gets_its_address_as_implicit_mx() {
    let dns = Dnsmasq::start(ZONE);
    let server = TestSmtp::start(Behaviour::default()).await;
    let t = direct(dns.addr, server.addr.port());
    let said = t
        .send(None, "carol@implicit.test", MESSAGE)
        .await
        .unwrap_or_else(|e| panic!("{e}\ndnsmasq log:\n{}", dns.log()));
    assert!(said.starts_with("implicit.test [127.0.0.1]"), "{said}");
    assert_eq!(server.received()[0].rcpt_to, vec!["<carol@implicit.test>"]);
}

#[tokio::test]
async fn an_address_literal_needs_no_dns() {
    let server = TestSmtp::start(Behaviour::default()).await;
    // The DNS server is a dead port: any lookup would fail.
    let dead_dns = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let t = direct(dead_dns, server.addr.port());
    t.send(None, "dave@[127.0.0.1]", MESSAGE).await.unwrap();
    assert_eq!(server.received()[0].rcpt_to, vec!["<dave@[127.0.0.1]>"]);
}

#[tokio::test]
async fn an_exchanger_that_is_this_server_is_a_loop() {
    let server = TestSmtp::start(Behaviour::default()).await;
    let dead_dns = SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.dns_servers = vec![dead_dns];
    c.outbound.mx_port = server.addr.port();
    // As if `server` were our own SMTP listener.
    c.smtp.listen = vec![server.addr];
    let t = Transport::from_config(&c, None).unwrap();
    let e = permanent(t.send(None, "dave@[127.0.0.1]", MESSAGE).await);
    assert!(e.contains("loops back to myself"), "{e}");
    assert!(server.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_5xx_from_an_exchanger_is_permanent() {
    let dns = Dnsmasq::start(ZONE);
    let server = TestSmtp::start(Behaviour {
        rcpt_reply: Some("550 5.1.1 no such user"),
        ..Behaviour::default()
    })
    .await;
    let t = direct(dns.addr, server.addr.port());
    let e = permanent(t.send(None, "nobody@example.org", MESSAGE).await);
    assert!(e.contains("mx2.example.org") && e.contains("550"), "{e}");
}

#[tokio::test]
async fn when_every_exchanger_fails_temporarily_the_last_error_is_reported() {
    let dns = Dnsmasq::start(ZONE);
    let server = TestSmtp::start(Behaviour {
        rcpt_reply: Some("451 4.7.1 greylisted"),
        ..Behaviour::default()
    })
    .await;
    let t = direct(dns.addr, server.addr.port());
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(
        e.contains("mx2.example.org") && e.contains("greylisted"),
        "{e}"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_failed_starttls_with_an_exchanger_falls_back_to_plain_text() {
    let dns = Dnsmasq::start(ZONE);
    let server = TestSmtp::start(Behaviour {
        broken_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let t = direct(dns.addr, server.addr.port());
    t.send(None, "bob@example.org", MESSAGE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        server.connections(),
        2,
        "one TLS attempt, one in plain text"
    );
    assert_eq!(server.received()[0].data, MESSAGE);
}

#[tokio::test]
async fn a_domain_that_does_not_exist_is_permanent() {
    // RFC 5321 §5.1: no MX and no address for the domain is an error,
    // and an NXDOMAIN answer says the domain itself does not exist: no
    // retry will change that.
    let dns = Dnsmasq::start(ZONE);
    let t = direct(dns.addr, closed_port().await);
    let e = permanent(t.send(None, "bob@nx.test", MESSAGE).await);
    assert!(e.contains("nx.test does not exist"), "{e}\n{}", dns.log());
}

#[tokio::test]
async fn a_null_mx_is_permanent() {
    let dns = Dnsmasq::start(ZONE);
    let t = direct(dns.addr, closed_port().await);
    let e = permanent(t.send(None, "bob@nullmx.test", MESSAGE).await);
    assert!(e.contains("null MX"), "{e}\n{}", dns.log());
}

#[tokio::test]
async fn an_mx_host_without_address_is_permanent() {
    let dns = Dnsmasq::start(ZONE);
    let t = direct(dns.addr, closed_port().await);
    let e = permanent(t.send(None, "bob@dangling.test", MESSAGE).await);
    assert!(e.contains("nowhere.test"), "{e}\n{}", dns.log());
}

#[tokio::test]
async fn a_refusing_dns_server_is_temporary() {
    // REFUSED (like SERVFAIL) says nothing about the domain: the DNS
    // may answer later, so the message waits (RFC 5321 §5.1 "temporary
    // error").
    let dns = Dnsmasq::start(ZONE);
    let t = direct(dns.addr, closed_port().await);
    let e = temporary(t.send(None, "bob@elsewhere.example", MESSAGE).await);
    assert!(
        e.contains("MX lookup for elsewhere.example"),
        "{e}\n{}",
        dns.log()
    );
}

// ---- direct MX rules, against the map-based resolver ----

/// The zone above, as maps: the same rules without a DNS server.
fn static_zone() -> StaticResolver {
    let localhost = "127.0.0.1".parse().unwrap();
    StaticResolver::new()
        .with_mx("example.org", 10, "mx2.example.org")
        .with_mx("example.org", 5, "mx1.example.org")
        .with_ip("mx1.example.org", "127.0.0.2".parse().unwrap())
        .with_ip("mx2.example.org", localhost)
        .with_ip("implicit.test", localhost)
        .with_mx("nullmx.test", 0, ".")
        .with_mx("dangling.test", 10, "nowhere.test")
        .with_mx("flaky.test", 10, "mx.flaky.test")
        .failing("mx.flaky.test")
        .failing("servfail.test")
}

#[tokio::test]
async fn direct_mx_rules_as_a_table() {
    enum Want {
        /// Delivered; the transport's answer starts with this.
        Sent(&'static str),
        Permanent(&'static str),
        Temporary(&'static str),
    }
    let server = TestSmtp::start(Behaviour::default()).await;
    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.mx_port = server.addr.port();
    let t = Transport::from_config(&c, Some(Arc::new(static_zone()))).unwrap();
    let cases = [
        // RFC 5321 §5.1: lowest preference first; a dead one is passed over.
        ("bob@example.org", Want::Sent("mx2.example.org [127.0.0.1]")),
        // No MX but an address: the domain is its own exchanger.
        (
            "carol@implicit.test",
            Want::Sent("implicit.test [127.0.0.1]"),
        ),
        ("dave@[127.0.0.1]", Want::Sent("[127.0.0.1] [127.0.0.1]")),
        ("bob@nx.test", Want::Permanent("nx.test does not exist")),
        // RFC 7505: a null MX says the domain takes no mail.
        ("bob@nullmx.test", Want::Permanent("null MX")),
        ("bob@dangling.test", Want::Permanent("nowhere.test")),
        (
            "bob@servfail.test",
            Want::Temporary("MX lookup for servfail.test"),
        ),
        (
            "bob@flaky.test",
            Want::Temporary("address lookup for mx.flaky.test"),
        ),
    ];
    for (rcpt, want) in cases {
        let got = t.send(None, rcpt, MESSAGE).await;
        match (want, got) {
            (Want::Sent(prefix), Ok(said)) => assert!(said.starts_with(prefix), "{rcpt}: {said}"),
            (Want::Permanent(text), Err(SendError::Permanent(e))) => {
                assert!(e.contains(text), "{rcpt}: {e}")
            }
            (Want::Temporary(text), Err(SendError::Temporary(e))) => {
                assert!(e.contains(text), "{rcpt}: {e}")
            }
            (_, got) => panic!("{rcpt}: unexpected {got:?}"),
        }
    }
    assert_eq!(server.received().len(), 3);
}
