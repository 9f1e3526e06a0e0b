//! The transports against a fake ESMTP server on loopback, and direct MX
//! delivery against the map-based resolver and a real DNS server (dnsmasq)
//! on loopback.

use super::*;
use crate::config::HumanDuration;
use crate::config::{OutboundMode, TlsPolicy};
use crate::dns::StaticResolver;
use crate::outbound::test_smtp::{
    Behaviour, TestSmtp, closed_port, full_listener, listeners_on_one_port,
};
use crate::testing::Dnsmasq;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// Test servers live on loopback: the tests allow non-public
/// destinations, except those about refusing them.
fn config() -> Config {
    let mut config = Config {
        hostname: "boxtrap.example.test".into(),
        ..Config::default()
    };
    let o = &mut config.outbound;
    o.allow_private_destinations = true;
    for t in [
        &mut o.connect_timeout,
        &mut o.greeting_timeout,
        &mut o.command_timeout,
        &mut o.data_timeout,
    ] {
        *t = HumanDuration(Duration::from_secs(10));
    }
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
    c.dns.servers = vec!["127.0.0.1:5353".parse().unwrap()];
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
async fn a_silent_server_times_out_at_the_greeting_as_temporary() {
    let server = TestSmtp::start(Behaviour {
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let mut c = smarthost_config(server.addr, TlsPolicy::Off);
    c.outbound.greeting_timeout = HumanDuration(Duration::from_millis(300));
    let t = Transport::from_config(&c, None).unwrap();
    let e = temporary(t.send(None, "bob@example.org", MESSAGE).await);
    assert!(
        e.ends_with("no greeting within 300ms (outbound.greeting_timeout)"),
        "{e}"
    );
}

// ---- direct MX, against dnsmasq on loopback ----

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

/// [`ZONE`] as [`Dnsmasq::start`] takes it.
fn zone() -> Vec<String> {
    ZONE.iter().map(|a| (*a).to_owned()).collect()
}

fn direct(dns: SocketAddr, mx_port: u16) -> Transport {
    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.dns.servers = vec![dns];
    c.outbound.mx_port = mx_port;
    Transport::from_config(&c, None).unwrap()
}

#[tokio::test]
async fn direct_delivery_follows_mx_preference_past_a_dead_exchanger() {
    let dns = Dnsmasq::start(&zone());
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
    let dns = Dnsmasq::start(&zone());
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
    c.dns.servers = vec![dead_dns];
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
    let dns = Dnsmasq::start(&zone());
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
    let dns = Dnsmasq::start(&zone());
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
    let dns = Dnsmasq::start(&zone());
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
    let dns = Dnsmasq::start(&zone());
    let t = direct(dns.addr, closed_port().await);
    let e = permanent(t.send(None, "bob@nx.test", MESSAGE).await);
    assert!(e.contains("nx.test does not exist"), "{e}\n{}", dns.log());
}

#[tokio::test]
async fn a_null_mx_is_permanent() {
    let dns = Dnsmasq::start(&zone());
    let t = direct(dns.addr, closed_port().await);
    let e = permanent(t.send(None, "bob@nullmx.test", MESSAGE).await);
    assert!(e.contains("null MX"), "{e}\n{}", dns.log());
}

#[tokio::test]
async fn an_mx_host_without_address_is_permanent() {
    let dns = Dnsmasq::start(&zone());
    let t = direct(dns.addr, closed_port().await);
    let e = permanent(t.send(None, "bob@dangling.test", MESSAGE).await);
    assert!(e.contains("nowhere.test"), "{e}\n{}", dns.log());
}

#[tokio::test]
async fn a_refusing_dns_server_is_temporary() {
    // REFUSED (like SERVFAIL) says nothing about the domain: the DNS
    // may answer later, so the message waits (RFC 5321 §5.1 "temporary
    // error").
    let dns = Dnsmasq::start(&zone());
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

// ---- time limits, address limits, non-public destinations ----

/// Direct delivery to address literals at `port`, with `tweak` applied.
fn direct_to_port(port: u16, tweak: impl FnOnce(&mut Config)) -> Transport {
    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.mx_port = port;
    tweak(&mut c);
    Transport::from_config(&c, Some(Arc::new(StaticResolver::new()))).unwrap()
}

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

#[tokio::test]
async fn each_step_has_its_own_time_limit_and_the_error_names_it() {
    // Each limit differs, so the message shows which one ran out.
    let limits = |c: &mut Config| {
        c.outbound.connect_timeout = ms(400);
        c.outbound.greeting_timeout = ms(300);
        c.outbound.command_timeout = ms(200);
        c.outbound.data_timeout = ms(250);
    };
    let stalled = |stall_at| Behaviour {
        stall_at: Some(stall_at),
        ..Behaviour::default()
    };
    let cases = [
        (
            Behaviour {
                silent: true,
                ..Behaviour::default()
            },
            "no greeting within 300ms (outbound.greeting_timeout)",
        ),
        (
            stalled("EHLO"),
            "no greeting within 300ms (outbound.greeting_timeout)",
        ),
        (
            stalled("MAIL"),
            "no reply to MAIL within 200ms (outbound.command_timeout)",
        ),
        (
            stalled("RCPT"),
            "no reply to RCPT within 200ms (outbound.command_timeout)",
        ),
        (
            stalled("DATA"),
            "no reply to DATA within 200ms (outbound.command_timeout)",
        ),
        (
            stalled("."),
            "no reply to the end of the data within 250ms (outbound.data_timeout)",
        ),
    ];
    for (behaviour, want) in cases {
        let server = TestSmtp::start(behaviour).await;
        let t = direct_to_port(server.addr.port(), limits);
        let e = temporary(t.send(None, "bob@[127.0.0.1]", MESSAGE).await);
        assert!(e.ends_with(want), "want …{want}, got {e}");
        assert!(server.received().is_empty(), "{e}");
    }

    // A server whose backlog is full never completes the connection.
    let (addr, _listener, _fillers) = full_listener();
    let t = direct_to_port(addr.port(), limits);
    let e = temporary(t.send(None, "bob@[127.0.0.1]", MESSAGE).await);
    assert!(
        e.ends_with("no connection within 400ms (outbound.connect_timeout)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_answers_each_step_just_in_time_meets_the_attempt_limit() {
    // Every reply comes within its step's limit, but the whole attempt
    // (greeting, EHLO, MAIL, RCPT, DATA, end of data: six waits of 150 ms)
    // is longer than outbound.timeout.
    let server = TestSmtp::start(Behaviour {
        reply_delay: Duration::from_millis(150),
        ..Behaviour::default()
    })
    .await;
    let t = direct_to_port(server.addr.port(), |c| c.outbound.timeout = ms(500));
    let e = temporary(t.send(None, "bob@[127.0.0.1]", MESSAGE).await);
    assert!(
        e.contains("the delivery attempt took longer than 500ms (outbound.timeout)"),
        "{e}"
    );
    assert!(e.starts_with("mail for [127.0.0.1]"), "{e}");
}

/// A resolver that counts address lookups.
struct Counting {
    zone: StaticResolver,
    address_lookups: std::sync::atomic::AtomicUsize,
}

impl Resolver for Counting {
    fn mx<'a>(&'a self, domain: &'a str) -> crate::dns::Lookup<'a, Vec<crate::dns::Mx>> {
        self.zone.mx(domain)
    }

    fn ips<'a>(&'a self, host: &'a str) -> crate::dns::Lookup<'a, Vec<std::net::IpAddr>> {
        self.address_lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.zone.ips(host)
    }

    fn txt<'a>(&'a self, name: &'a str) -> crate::dns::Lookup<'a, Vec<String>> {
        self.zone.txt(name)
    }
}

#[tokio::test]
async fn at_most_mx_address_limit_addresses_are_tried_per_attempt() {
    // tarpit.test: ten MX hosts, each on its own loopback address, all of
    // which accept and never greet. multi.test: one MX host with the same
    // ten addresses.
    let (port, listeners) = listeners_on_one_port(10).await;
    let silent = Behaviour {
        silent: true,
        ..Behaviour::default()
    };
    let sinks: Vec<TestSmtp> = listeners
        .into_iter()
        .map(|l| TestSmtp::serve_on(l, silent.clone()))
        .collect();
    let mut zone = StaticResolver::new();
    for (i, sink) in sinks.iter().enumerate() {
        let host = format!("mx{i}.tarpit.test");
        zone = zone
            .with_mx("tarpit.test", 10 + i as u16, &host)
            .with_ip(&host, sink.addr.ip())
            .with_ip("mx.multi.test", sink.addr.ip());
    }
    let zone = zone.with_mx("multi.test", 10, "mx.multi.test");
    let connections = || sinks.iter().map(TestSmtp::connections).sum::<usize>();
    for (limit, rcpt, lookups) in [
        (None, "bob@tarpit.test", 5),
        (Some(3), "bob@tarpit.test", 3),
        (None, "bob@multi.test", 1),
    ] {
        let before = connections();
        let resolver = Arc::new(Counting {
            zone: zone.clone(),
            address_lookups: Default::default(),
        });
        let mut c = config();
        c.outbound.mode = OutboundMode::Direct;
        c.outbound.mx_port = port;
        c.outbound.greeting_timeout = ms(100);
        if let Some(limit) = limit {
            c.outbound.mx_address_limit = limit;
        }
        let want = c.outbound.mx_address_limit;
        let t = Transport::from_config(&c, Some(resolver.clone())).unwrap();
        let e = temporary(t.send(None, rcpt, MESSAGE).await);
        assert!(e.ends_with("(outbound.greeting_timeout)"), "{e}");
        // Each connection is counted when accepted; wait for the last one.
        sinks[0]
            .wait_until("the connections counted", |_| {
                connections() - before >= want
            })
            .await;
        assert_eq!(connections() - before, want, "{rcpt}, limit {want}");
        let looked_up = resolver
            .address_lookups
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(looked_up, lookups, "{rcpt}: address lookups");
    }
}

#[tokio::test]
async fn non_public_destinations_are_refused_without_a_connection_unless_allowed() {
    let server = TestSmtp::start(Behaviour::default()).await;
    let zone = StaticResolver::new()
        .with_mx("loopback.test", 10, "mx.loopback.test")
        .with_ip("mx.loopback.test", "127.0.0.1".parse().unwrap())
        .with_mx("private.test", 10, "mx.private.test")
        .with_ip("mx.private.test", "10.0.0.1".parse().unwrap())
        .with_mx("linklocal.test", 10, "mx.linklocal.test")
        .with_ip("mx.linklocal.test", "fe80::1".parse().unwrap())
        .with_mx("mapped.test", 10, "mx.mapped.test")
        .with_ip("mx.mapped.test", "::ffff:192.168.1.1".parse().unwrap())
        .with_ip("implicit.test", "100.64.0.1".parse().unwrap())
        .with_mx("two.test", 5, "mx1.two.test")
        .with_mx("two.test", 10, "mx2.two.test")
        .with_ip("mx1.two.test", "172.16.0.1".parse().unwrap())
        .with_ip("mx2.two.test", "127.0.0.1".parse().unwrap());
    let zone = Arc::new(zone);
    let mut c = config();
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.mx_port = server.addr.port();
    c.outbound.allow_private_destinations = false;
    let t = Transport::from_config(&c, Some(zone.clone())).unwrap();
    let cases = [
        (
            "bob@loopback.test",
            "mx.loopback.test [127.0.0.1] (loopback (127.0.0.0/8, RFC 1122))",
        ),
        (
            "bob@private.test",
            "mx.private.test [10.0.0.1] (private (10.0.0.0/8, RFC 1918))",
        ),
        (
            "bob@linklocal.test",
            "mx.linklocal.test [fe80::1] (link-local (fe80::/10, RFC 4291))",
        ),
        ("bob@mapped.test", "IPv4-mapped private (192.168.0.0/16"),
        ("bob@implicit.test", "implicit.test [100.64.0.1] (shared"),
        ("bob@two.test", "mx1.two.test [172.16.0.1] (private"),
        ("bob@two.test", "mx2.two.test [127.0.0.1] (loopback"),
        ("bob@[127.0.0.1]", "[127.0.0.1] [127.0.0.1] (loopback"),
        ("bob@[IPv6:::1]", "[::1] [::1] (loopback (::1/128"),
    ];
    for (rcpt, want) in cases {
        let e = permanent(t.send(None, rcpt, MESSAGE).await);
        assert!(e.contains(want), "{rcpt}: want {want}, got {e}");
        assert!(
            e.contains("not connecting to non-public addresses")
                && e.contains("(outbound.allow_private_destinations is off)"),
            "{rcpt}: {e}"
        );
    }
    assert_eq!(server.connections(), 0, "nothing connected");

    // The admin allows them: the same MX is used.
    c.outbound.allow_private_destinations = true;
    let t = Transport::from_config(&c, Some(zone)).unwrap();
    let said = t.send(None, "bob@loopback.test", MESSAGE).await.unwrap();
    assert!(said.starts_with("mx.loopback.test [127.0.0.1]"), "{said}");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn non_public_addresses_are_told_from_public_ones() {
    let non_public_ones = [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.5.6.7",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "100::1",
        "2001:2::1",
        "2001:db8::1",
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
    ];
    for ip in non_public_ones {
        assert!(
            non_public(ip.parse().unwrap()).is_some(),
            "{ip} is not public"
        );
    }
    let public_ones = [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.0.1.1",
        "192.169.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
        "3fff:1000::1",
        "2a00:1450::1",
    ];
    for ip in public_ones {
        assert_eq!(non_public(ip.parse().unwrap()), None, "{ip} is public");
    }
}
