//! Outbound mail under attack, end to end: strangers write to a mailbox
//! with challenge-response on, and the challenges go to MX hosts the
//! strangers chose (`outbound.mode = "direct"`, the map resolver, sinks on
//! loopback addresses). A domain whose MX hosts stall holds up no one
//! else's challenge; an attempt tries at most `mx_address_limit`
//! addresses; an MX on a non-public address is refused without a
//! connection unless the admin allows it.

use crate::support::{Smtp, T0, addr_of};
use boxtrap::address::Domain;
use boxtrap::app::{App, AppDeps};
use boxtrap::clock::{ManualClock, Timestamp};
use boxtrap::config::{Config, HumanDuration, OutboundMode};
use boxtrap::dns::StaticResolver;
use boxtrap::outbound::Outbound;
use boxtrap::store::Store;
use boxtrap::store::held::{OutboundRow, OutboundState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

const ALICE: &str = "alice@example.test";

/// A boxtrap hosting example.test, alice with challenge-response on,
/// sending its challenges straight to the MX hosts `zone` names, at
/// `mx_port`.
struct Mx {
    addr: SocketAddr,
    store: Store,
    outbound: Arc<Outbound>,
    dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Mx {
    async fn start(zone: StaticResolver, mx_port: u16, tweak: impl FnOnce(&mut Config)) -> Mx {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, Vec::new()).unwrap();
        config.data_dir = dir.path().to_owned();
        config.hostname = "mx.example.test".into();
        config.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.web.listen = "127.0.0.1:0".parse().unwrap();
        // The outbound worker is driven by hand with run_once().
        config.outbound.run_interval = HumanDuration(Duration::from_secs(3600));
        config.delivery.queue_run_interval = HumanDuration(Duration::from_secs(3600));
        config.challenge.sweep_interval = HumanDuration(Duration::from_secs(3600));
        config.outbound.mode = OutboundMode::Direct;
        config.outbound.mx_port = mx_port;
        // The map resolver is no hickory resolver, so no sender is
        // authenticated: challenge them in the admin's relaxed mode.
        config.auth.challenge_unauthenticated = true;
        tweak(&mut config);
        let app = App::build(
            config,
            AppDeps {
                clock: Arc::new(ManualClock::new(Timestamp::from_secs(T0))),
                resolver: Some(Arc::new(zone)),
                transport: None,
            },
        )
        .await
        .unwrap();
        let addr = app.smtp_addrs()[0];
        let store = app.store().clone();
        let outbound = app.outbound();
        let now = Timestamp::from_secs(T0);
        store
            .add_domain(&Domain::parse("example.test").unwrap(), now)
            .await
            .unwrap();
        store.add_mailbox(&addr_of(ALICE), "", now).await.unwrap();
        let mut settings = store.mailbox_settings_by_address(ALICE).await.unwrap();
        settings.challenge_enabled = true;
        store.update_mailbox_settings(&settings).await.unwrap();
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        Mx {
            addr,
            store,
            outbound,
            dir,
            _stop: stop,
        }
    }

    /// `from` writes to alice; her server holds the mail and queues a
    /// challenge to `from`.
    async fn write_to_alice(&self, from: &str) {
        let mut s = Smtp::connect(self.addr).await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd(&format!("MAIL FROM:<{from}>"), "250").await;
        s.cmd(&format!("RCPT TO:<{ALICE}>"), "250").await;
        s.cmd("DATA", "354").await;
        let body = format!(
            "From: {from}\r\nTo: {ALICE}\r\nSubject: Hello\r\nMessage-ID: <{}>\r\n\
             Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello Alice.\r\n",
            from.replace('@', ".")
        );
        let r = s.data(&body).await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        s.cmd("QUIT", "221").await;
    }

    /// The outbound message (a challenge) to `rcpt`.
    async fn challenge_to(&self, rcpt: &str) -> OutboundRow {
        let all = self.store.list_outbound().await.unwrap();
        all.into_iter()
            .find(|m| m.rcpt == rcpt)
            .unwrap_or_else(|| panic!("no challenge to {rcpt}"))
    }

    fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }
}

/// A mail exchanger on loopback: accepts everything, or (a tarpit)
/// accepts connections and never greets. Counts connections; every
/// connection and message bumps `events`.
struct Sink {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
    events: watch::Receiver<u64>,
}

impl Sink {
    fn start(listener: TcpListener, tarpit: bool) -> Sink {
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (bump, events) = watch::channel(0u64);
        let bump = Arc::new(bump);
        let (c, o, r) = (connections.clone(), open.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                bump.send_modify(|n| *n += 1);
                let (o, r, bump) = (o.clone(), r.clone(), bump.clone());
                tokio::spawn(async move {
                    if tarpit {
                        // Reads nothing, says nothing, until the client leaves.
                        let mut byte = [0u8; 1];
                        let _ = stream.peek(&mut byte).await;
                    } else {
                        let _ = converse(stream, &r, &bump).await;
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                    bump.send_modify(|n| *n += 1);
                });
            }
        });
        Sink {
            addr,
            connections,
            open,
            received,
            events,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds; fails after 30 s (a bound, not a measure).
    async fn wait_until(&self, what: &str, done: impl Fn(&Sink) -> bool) {
        let mut events = self.events.clone();
        let wait = async {
            while !done(self) {
                events.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("{} never saw: {what}", self.addr));
    }
}

/// A minimal SMTP server side: records each message's RCPT TO.
async fn converse(
    stream: tokio::net::TcpStream,
    received: &Mutex<Vec<String>>,
    bump: &watch::Sender<u64>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.example ESMTP\r\n").await?;
    let mut rcpt = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-sink.example\r\n250 8BITMIME"
        } else if upper.starts_with("RCPT TO:") {
            rcpt = line.trim_end()[8..].to_owned();
            "250 2.1.5 ok"
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
            }
            received.lock().unwrap().push(rcpt.clone());
            bump.send_modify(|n| *n += 1);
            "250 2.0.0 queued"
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "250 2.0.0 ok"
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// `n` listeners on one port, at 127.0.0.1, 127.0.0.2, ...: direct
/// delivery uses one port (`outbound.mx_port`) for every exchanger.
async fn listeners_on_one_port(n: u8) -> (u16, Vec<TcpListener>) {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for i in 2..=n {
            match TcpListener::bind((format!("127.0.0.{i}"), port)).await {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == n as usize {
            return (port, all);
        }
    }
    panic!("no port free on 127.0.0.1 to 127.0.0.{n}");
}

/// good.example's MX is a sink at 127.0.0.1; tarpit.example has ten MX
/// hosts at 127.0.0.2 to 127.0.0.11 that accept and never greet.
async fn good_and_tarpit() -> (u16, Sink, Vec<Sink>, StaticResolver) {
    let (port, listeners) = listeners_on_one_port(11).await;
    let mut listeners = listeners.into_iter();
    let good = Sink::start(listeners.next().unwrap(), false);
    let tarpits: Vec<Sink> = listeners.map(|l| Sink::start(l, true)).collect();
    let mut zone = StaticResolver::new()
        .with_mx("good.example", 10, "mx.good.example")
        .with_ip("mx.good.example", good.addr.ip());
    for (i, t) in tarpits.iter().enumerate() {
        let host = format!("mx{i}.tarpit.example");
        zone = zone
            .with_mx("tarpit.example", 10, &host)
            .with_ip(&host, t.addr.ip());
    }
    (port, good, tarpits, zone)
}

fn loopback_allowed(c: &mut Config) {
    c.outbound.allow_private_destinations = true;
}

#[tokio::test]
async fn a_tarpitting_mx_domain_does_not_delay_another_domains_challenge() {
    let (port, good, tarpits, zone) = good_and_tarpit().await;
    let mx = Mx::start(zone, port, |c| {
        loopback_allowed(c);
        // Long enough that the tarpit attempt outlives the test.
        c.outbound.greeting_timeout = HumanDuration(Duration::from_secs(120));
    })
    .await;
    // The tarpit's challenge is queued first: one message at a time, it
    // would be tried first and hold the other back for 10 greeting limits.
    mx.write_to_alice("mallory@tarpit.example").await;
    mx.write_to_alice("carol@good.example").await;
    let tarpit_row = mx.challenge_to("mallory@tarpit.example").await;
    let good_row = mx.challenge_to("carol@good.example").await;
    assert!(tarpit_row.id < good_row.id);

    let outbound = mx.outbound.clone();
    let run = tokio::spawn(async move { outbound.run_once().await });
    good.wait_until("carol's challenge", |g| g.received().len() == 1)
        .await;
    assert_eq!(good.received(), ["<carol@good.example>"]);
    // Meanwhile the tarpit's attempt is still on its first MX host.
    let open: usize = tarpits.iter().map(Sink::open).sum();
    assert_eq!(open, 1, "one connection to the tarpit, still waiting");
    let tarpit_row = mx.challenge_to("mallory@tarpit.example").await;
    assert_eq!(
        (tarpit_row.state, tarpit_row.attempts),
        (OutboundState::Queued, 0),
        "the tarpit's attempt has not finished"
    );
    assert!(!run.is_finished());
    run.abort();
}

#[tokio::test]
async fn an_attempt_tries_at_most_mx_address_limit_addresses() {
    let (port, _good, tarpits, zone) = good_and_tarpit().await;
    let mx = Mx::start(zone, port, |c| {
        loopback_allowed(c);
        c.outbound.greeting_timeout = HumanDuration(Duration::from_millis(200));
    })
    .await;
    mx.write_to_alice("mallory@tarpit.example").await;
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    let connections = || tarpits.iter().map(Sink::connections).sum::<usize>();
    tarpits[0]
        .wait_until("five connections", |_| connections() >= 5)
        .await;
    assert_eq!(
        connections(),
        5,
        "outbound.mx_address_limit = 5 of 10 MX hosts"
    );
    let row = mx.challenge_to("mallory@tarpit.example").await;
    assert_eq!((row.state, row.attempts), (OutboundState::Queued, 1));
    assert!(
        row.last_error
            .ends_with("no greeting within 200ms (outbound.greeting_timeout)"),
        "{}",
        row.last_error
    );
    let log = mx.mainlog();
    assert!(
        log.contains(&format!("OB{} == mallory@tarpit.example", row.id)),
        "{log}"
    );
}

#[tokio::test]
async fn by_default_an_mx_on_a_non_public_address_is_refused_without_a_connection() {
    let (port, listeners) = listeners_on_one_port(1).await;
    let sink = Sink::start(listeners.into_iter().next().unwrap(), false);
    let zone = StaticResolver::new()
        .with_mx("evil.example", 10, "mx1.evil.example")
        .with_mx("evil.example", 20, "mx2.evil.example")
        .with_mx("evil.example", 30, "mx3.evil.example")
        .with_ip("mx1.evil.example", "127.0.0.1".parse().unwrap())
        .with_ip("mx2.evil.example", "10.0.0.1".parse().unwrap())
        .with_ip("mx3.evil.example", "fe80::1".parse().unwrap());
    // The embedded default: allow_private_destinations = false.
    let mx = Mx::start(zone.clone(), port, |_| {}).await;
    mx.write_to_alice("mallory@evil.example").await;
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    let row = mx.challenge_to("mallory@evil.example").await;
    assert_eq!(
        row.state,
        OutboundState::Failed,
        "permanent: {}",
        row.last_error
    );
    assert_eq!(
        row.last_error,
        "mail for evil.example: not connecting to non-public addresses: \
         mx1.evil.example [127.0.0.1] (loopback (127.0.0.0/8, RFC 1122)), \
         mx2.evil.example [10.0.0.1] (private (10.0.0.0/8, RFC 1918)), \
         mx3.evil.example [fe80::1] (link-local (fe80::/10, RFC 4291)) \
         (outbound.allow_private_destinations is off)"
    );
    assert_eq!(sink.connections(), 0, "nothing connected to 127.0.0.1");
    let log = mx.mainlog();
    assert!(
        log.contains(&format!("OB{} ** mallory@evil.example", row.id)),
        "{log}"
    );

    // With the admin's permission the same MX is used.
    let mx = Mx::start(zone, port, loopback_allowed).await;
    mx.write_to_alice("mallory@evil.example").await;
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    let row = mx.challenge_to("mallory@evil.example").await;
    assert_eq!(row.state, OutboundState::Sent, "{}", row.last_error);
    assert_eq!(sink.received(), ["<mallory@evil.example>"]);
}
