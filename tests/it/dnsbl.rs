//! DNS blocklists and allowlists (RFC 5782) over SMTP, against a real DNS
//! server on loopback (dnsmasq, [`TestDns`]) serving the list zones:
//! `bl.test` lists 127.0.0.1, `wl.test` allowlists it, `score.test`
//! lists it with another code; 127.0.0.2 is on none of them; `bl.test`
//! lists ::1 too. Clients connect from 127.0.0.1, 127.0.0.2 or ::1.

use crate::support::*;
use boxtrap::config::{Config, DnsblAction, DnsblZone, DnswlZone, HumanDuration};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The list zones, in dnsmasq's syntax (`--address` answers A for the name
/// and below; every other name is NXDOMAIN).
fn zones() -> Vec<String> {
    [
        "--address=/1.0.0.127.bl.test/127.0.0.2",
        "--address=/1.0.0.127.wl.test/127.0.10.1",
        "--address=/1.0.0.127.score.test/127.0.0.4",
    ]
    .map(String::from)
    .into_iter()
    // ::1, as RFC 5782 §2.4 writes it: 32 nibbles, least significant first.
    .chain([format!("--address=/1.{}bl.test/127.0.0.2", "0.".repeat(31))])
    .collect()
}

fn blocklist(zone: &str, action: DnsblAction) -> DnsblZone {
    DnsblZone {
        zone: zone.into(),
        action,
        score: 2.5,
        returns: vec!["127.0.0.2".parse().unwrap(), "127.0.0.4".parse().unwrap()],
    }
}

/// `bl.test` refusing, `score.test` scoring; postmaster reaches bob.
fn lists(c: &mut Config) {
    c.dnsbl = vec![
        blocklist("bl.test", DnsblAction::Reject),
        blocklist("score.test", DnsblAction::Score),
    ];
    c.smtp.postmaster = "bob@example.test".into();
    // Each lookup reaches dnsmasq, so its log counts them.
    c.dns.cache_size = 0;
}

/// An SMTP client connecting from `local` (any 127.0.0.0/8 address).
struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(local: &str, server: SocketAddr) -> Client {
        let local: std::net::IpAddr = local.parse().unwrap();
        let socket = if local.is_ipv6() {
            TcpSocket::new_v6().unwrap()
        } else {
            TcpSocket::new_v4().unwrap()
        };
        socket.bind(SocketAddr::new(local, 0)).unwrap();
        let stream = socket.connect(server).await.unwrap();
        let (read, write) = stream.into_split();
        let mut c = Client {
            read: BufReader::new(read),
            write,
        };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.read.read_line(&mut line))
                .await
                .expect("no reply within 30 s")
                .unwrap_or(0);
            all.push_str(&line);
            if n == 0 || line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let r = self.reply().await;
        assert!(
            r.starts_with(expect),
            "{line:?}: expected {expect:?}, got {r:?}"
        );
        r
    }

    /// MAIL, one RCPT per `(address, expected reply)`, and, if any was
    /// accepted, DATA with a short message that must be accepted.
    async fn transaction(&mut self, rcpts: &[(&str, &str)]) {
        self.cmd("MAIL FROM:<carol@example.org>", "250").await;
        for (to, expect) in rcpts {
            self.cmd(&format!("RCPT TO:<{to}>"), expect).await;
        }
        if rcpts.iter().any(|(_, e)| e.starts_with("250")) {
            self.cmd("DATA", "354").await;
            self.cmd("Subject: hello\r\n\r\nhi\r\n.", "250 2.0.0").await;
        }
    }
}

fn queries(dns: &TestDns, name: &str) -> usize {
    dns.log()
        .lines()
        .filter(|l| l.contains(&format!("query[A] {name} ")))
        .count()
}

#[tokio::test]
async fn a_listed_client_is_refused_at_rcpt_naming_the_zone_and_still_reaches_postmaster() {
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &zones(), lists).await;
    let dns = app.dns.as_ref().unwrap();
    let mut c = Client::connect("127.0.0.1", app.addr).await;
    c.cmd("EHLO client.example.org", "250").await;
    let r = c.cmd("MAIL FROM:<carol@example.org>", "250").await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("RCPT TO:<alice@example.test>", "554 5.7.1").await;
    assert_eq!(
        r,
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using bl.test\r\n",
        "dnsmasq log:\n{}",
        dns.log()
    );
    c.cmd("RCPT TO:<team@example.test>", "554 5.7.1").await;
    // RFC 5321 §4.5.1: postmaster still takes mail from anyone.
    c.cmd("RCPT TO:<postmaster@example.test>", "250").await;
    c.cmd("RCPT TO:<Postmaster>", "250").await;
    c.cmd("DATA", "354").await;
    c.cmd("Subject: why am I listed?\r\n\r\nhi\r\n.", "250 2.0.0")
        .await;
    // A second transaction in the same session asks nobody again.
    c.transaction(&[("bob@example.test", "554 5.7.1")]).await;
    c.cmd("QUIT", "221").await;

    let rejects = app.rejectlog();
    assert!(
        rejects.contains("[127.0.0.1]:")
            && rejects.contains(
                "F=<carol@example.org> rejected RCPT <alice@example.test>: client [127.0.0.1] \
             is listed in bl.test (127.0.0.2)"
            ),
        "{rejects}"
    );
    // One lookup per zone for the whole session.
    assert_eq!(queries(dns, "1.0.0.127.bl.test"), 1, "{}", dns.log());
    assert_eq!(queries(dns, "1.0.0.127.score.test"), 1, "{}", dns.log());
}

#[tokio::test]
async fn a_client_that_only_says_ehlo_and_quit_costs_no_lookup() {
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &zones(), lists).await;
    let dns = app.dns.as_ref().unwrap();
    let mut c = Client::connect("127.0.0.1", app.addr).await;
    c.cmd("EHLO client.example.org", "250").await;
    c.cmd("MAIL FROM:<carol@example.org>", "250").await;
    c.cmd("RSET", "250").await;
    c.cmd("QUIT", "221").await;
    assert_eq!(queries(dns, "1.0.0.127.bl.test"), 0, "{}", dns.log());
    // The next session asks again (nothing is cached here: cache_size = 0).
    let mut c = Client::connect("127.0.0.1", app.addr).await;
    c.cmd("EHLO client.example.org", "250").await;
    c.transaction(&[("alice@example.test", "554")]).await;
    assert_eq!(queries(dns, "1.0.0.127.bl.test"), 1, "{}", dns.log());
}

#[tokio::test]
async fn a_client_on_no_list_is_accepted() {
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &zones(), lists).await;
    let dns = app.dns.as_ref().unwrap();
    let mut c = Client::connect("127.0.0.2", app.addr).await;
    c.cmd("EHLO client.example.org", "250").await;
    c.transaction(&[("alice@example.test", "250 2.1.5")]).await;
    // It was asked about, by its own address.
    assert_eq!(queries(dns, "2.0.0.127.bl.test"), 1, "{}", dns.log());
    assert!(app.rejectlog().is_empty(), "{}", app.rejectlog());
}

#[tokio::test]
async fn an_allowlisted_client_skips_the_blocklists() {
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &zones(), |c| {
        lists(c);
        c.dnswl = vec![DnswlZone {
            zone: "wl.test".into(),
            returns: Vec::new(),
        }];
    })
    .await;
    let mut c = Client::connect("127.0.0.1", app.addr).await;
    c.cmd("EHLO client.example.org", "250").await;
    c.transaction(&[("alice@example.test", "250 2.1.5")]).await;
    let dns = app.dns.as_ref().unwrap();
    assert_eq!(queries(dns, "1.0.0.127.wl.test"), 1, "{}", dns.log());
}

#[test]
fn with_the_dns_server_down_mail_is_accepted_and_the_log_says_why() {
    run_capturing_log("dnsbl-down", 2, "info,sqlx=warn", |log| async move {
        // Nothing listens on this port: every lookup fails.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            lists(c);
            c.dns.servers = vec![dead];
            c.dns.timeout = HumanDuration(Duration::from_millis(500));
            c.dns.attempts = 1;
        })
        .await;
        let mut c = Client::connect("127.0.0.1", app.addr).await;
        c.cmd("EHLO client.example.org", "250").await;
        let start = std::time::Instant::now();
        c.transaction(&[("alice@example.test", "250 2.1.5")]).await;
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
        assert!(!app.rejectlog().contains("listed"), "{}", app.rejectlog());
        let text = log.text();
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("DNS list lookup failed; not listed"))
            .collect();
        assert!(
            failed.iter().any(|l| l.contains("bl.test: "))
                && failed.iter().any(|l| l.contains("score.test: "))
                && failed.iter().all(|l| l.contains("client=127.0.0.1")),
            "{text}"
        );
    })
}

#[tokio::test]
async fn an_ipv6_client_is_looked_up_by_its_nibbles() {
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &zones(), |c| {
        lists(c);
        c.smtp.listen = vec!["[::1]:0".parse().unwrap()];
    })
    .await;
    let mut c = Client::connect("::1", app.addr).await;
    c.cmd("EHLO client.example.org", "250").await;
    c.cmd("MAIL FROM:<carol@example.org>", "250").await;
    let r = c.cmd("RCPT TO:<alice@example.test>", "554 5.7.1").await;
    assert_eq!(
        r,
        "554 5.7.1 Service unavailable; Client host [::1] blocked using bl.test\r\n"
    );
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl_across_sessions() {
    // dnsmasq gives its own records a TTL of 0 unless told otherwise.
    let mut records = zones();
    records.push("--local-ttl=300".into());
    let app = TestApp::spawn_with_dns(Backend::Sqlite, &records, |c| {
        lists(c);
        c.dns.cache_size = 4096;
    })
    .await;
    let dns = app.dns.as_ref().unwrap();
    for _ in 0..3 {
        for client in ["127.0.0.1", "127.0.0.2"] {
            let mut c = Client::connect(client, app.addr).await;
            c.cmd("EHLO client.example.org", "250").await;
            let expect = if client == "127.0.0.1" { "554" } else { "250" };
            c.transaction(&[("alice@example.test", expect)]).await;
            c.cmd("QUIT", "221").await;
        }
    }
    // The listing is asked once for the three sessions. (dnsmasq's
    // NXDOMAIN for 127.0.0.2 carries no SOA, so it may not be cached, RFC
    // 2308 §5; a real list's does.)
    assert_eq!(queries(dns, "1.0.0.127.bl.test"), 1, "{}", dns.log());
    assert_eq!(queries(dns, "1.0.0.127.score.test"), 1, "{}", dns.log());
}
