//! The outbound worker against sinks on loopback and the map resolver:
//! several domains at once, one message at a time per domain, nothing
//! claimed before it starts, claims given back on stop.

use super::*;
use crate::clock::ManualClock;
use crate::config::{Config, OutboundMode};
use crate::dns::StaticResolver;
use crate::outbound::test_smtp::{Behaviour, TestSmtp, listeners_on_one_port};
use crate::store::held::{NewOutbound, insert_outbound};
use tokio::sync::Semaphore;

fn t0() -> Timestamp {
    Timestamp::from_secs(1_795_788_353)
}

struct Setup {
    store: Store,
    outbound: Arc<Outbound>,
    _db: crate::store::testing::TestDb,
    _dir: tempfile::TempDir,
}

/// An outbound worker sending directly to `zone`'s exchangers at `port`
/// (loopback sinks, so non-public destinations are allowed).
async fn setup(port: u16, zone: StaticResolver, tweak: impl FnOnce(&mut Config)) -> Setup {
    let db = crate::store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config {
        hostname: "boxtrap.example.test".into(),
        ..Config::default()
    };
    c.outbound.mode = OutboundMode::Direct;
    c.outbound.mx_port = port;
    c.outbound.allow_private_destinations = true;
    tweak(&mut c);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    let log = MainLog::open(
        &dir.path().join("mainlog"),
        &dir.path().join("rejectlog"),
        clock.clone(),
    )
    .unwrap();
    let transport = Transport::from_config(&c, Some(Arc::new(zone))).unwrap();
    let outbound = Outbound::new(
        db.store.clone(),
        Arc::new(transport),
        clock,
        log,
        &c.outbound,
    )
    .with_stop_grace(Duration::from_millis(200));
    Setup {
        store: db.store.clone(),
        outbound: Arc::new(outbound),
        _db: db,
        _dir: dir,
    }
}

async fn queue(store: &Store, rcpt: &str) -> i64 {
    let rcpt = rcpt.to_owned();
    store
        .write(move |c| {
            let rcpt = rcpt.clone();
            Box::pin(async move {
                let o = NewOutbound {
                    kind: "verify",
                    mailbox_id: None,
                    challenge_id: None,
                    env_from: "",
                    rcpt: &rcpt,
                    data: b"Subject: x\r\n\r\nx\r\n",
                    now: t0(),
                };
                insert_outbound(c, &o).await
            })
        })
        .await
        .unwrap()
}

/// What is due a second after the start (the manual clock moves on a
/// microsecond per reading), long before any claim's lease ends.
async fn due_ids(store: &Store) -> Vec<i64> {
    let due = store.due_outbound(t0().plus_secs(1), 0, 100).await.unwrap();
    due.into_iter().map(|r| r.id).collect()
}

/// one.test's exchanger holds every session before its greeting until the
/// test lets it go; two.test's answers at once.
async fn two_domains() -> (u16, TestSmtp, TestSmtp, StaticResolver) {
    let (port, mut listeners) = listeners_on_one_port(2).await;
    let two = TestSmtp::serve_on(listeners.pop().unwrap(), Behaviour::default());
    let one = TestSmtp::serve_on(
        listeners.pop().unwrap(),
        Behaviour {
            gate: Some(Arc::new(Semaphore::new(0))),
            ..Behaviour::default()
        },
    );
    let zone = StaticResolver::new()
        .with_mx("one.test", 10, "mx.one.test")
        .with_ip("mx.one.test", one.addr.ip())
        .with_mx("two.test", 10, "mx.two.test")
        .with_ip("mx.two.test", two.addr.ip());
    (port, one, two, zone)
}

#[tokio::test]
async fn one_message_at_a_time_per_domain_while_other_domains_go_beside_it() {
    let (port, one, two, zone) = two_domains().await;
    let s = setup(port, zone, |_| {}).await;
    for rcpt in ["a1@one.test", "a2@One.Test.", "b1@two.test", "b2@two.test"] {
        queue(&s.store, rcpt).await;
    }
    let outbound = s.outbound.clone();
    let run = tokio::spawn(async move { outbound.run_once().await });

    // two.test gets both its messages, one after the other, while
    // one.test's first delivery is still waiting for its greeting.
    two.wait_until("two messages", |t| t.received().len() == 2)
        .await;
    assert_eq!(two.most_open(), 1, "two.test: one connection at a time");
    assert_eq!(one.open(), 1, "one.test's first delivery is in progress");
    assert_eq!(one.connections(), 1, "and its second has not started");
    assert!(!run.is_finished());

    one.release(2);
    assert_eq!(run.await.unwrap().unwrap(), 4);
    assert_eq!(one.received().len(), 2);
    assert_eq!(one.most_open(), 1, "one.test: never two at once");
    let states: Vec<_> = s.store.list_outbound().await.unwrap();
    assert!(
        states.iter().all(|m| m.state == OutboundState::Sent),
        "{states:?}"
    );
}

#[tokio::test]
async fn no_more_than_max_concurrent_deliveries_at_once() {
    let (port, one, two, zone) = two_domains().await;
    // One place: two.test waits for one.test's delivery.
    let s = setup(port, zone, |c| c.outbound.max_concurrent = 1).await;
    queue(&s.store, "a@one.test").await;
    queue(&s.store, "b@two.test").await;
    let outbound = s.outbound.clone();
    let run = tokio::spawn(async move { outbound.run_once().await });
    one.wait_until("a connection", |o| o.connections() == 1)
        .await;
    one.release(1);
    assert_eq!(run.await.unwrap().unwrap(), 2);
    assert_eq!(two.received().len(), 1);
    assert!(
        two.first("open") > one.last("close"),
        "two.test's delivery started after one.test's ended"
    );
}

#[tokio::test]
async fn the_worker_claims_only_what_it_starts_and_gives_back_its_claims_when_stopped() {
    let (port, one, _two, zone) = two_domains().await;
    let s = setup(port, zone, |_| {}).await;
    let first = queue(&s.store, "a1@one.test").await;
    let second = queue(&s.store, "a2@one.test").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(s.outbound.clone().run(Duration::from_secs(3600), stopped));
    one.wait_until("a connection", |o| o.connections() == 1)
        .await;
    // The first is claimed (leased, not due); the second waits unclaimed,
    // so a crash now would lose neither: the lease lapses, the second is due.
    assert_eq!(due_ids(&s.store).await, [second]);

    // Stopping: the stuck delivery is dropped after the grace, and its
    // claim given back, unattempted.
    stop.send(true).unwrap();
    worker.await.unwrap();
    assert_eq!(due_ids(&s.store).await, [second, first]);
    let rows = s.store.list_outbound().await.unwrap();
    assert!(rows.iter().all(|m| m.attempts == 0), "{rows:?}");
    one.wait_until("the connection closed", |o| o.open() == 0)
        .await;
}

#[test]
fn the_destination_domain_ignores_case_and_the_root_dot() {
    assert_eq!(destination_domain("Bob@Example.ORG."), "example.org");
    assert_eq!(destination_domain("\"a@b\"@x.test"), "x.test");
    assert_eq!(
        destination_domain("dave@[IPv6:2001:DB8::1]"),
        "[ipv6:2001:db8::1]"
    );
}

#[test]
fn bad_outbound_limits_are_refused_by_name() {
    for (var, value, key) in [
        (
            "BOXTRAP_OUTBOUND_MAX_CONCURRENT",
            "0",
            "outbound.max_concurrent",
        ),
        (
            "BOXTRAP_OUTBOUND_MX_ADDRESS_LIMIT",
            "0",
            "outbound.mx_address_limit",
        ),
        (
            "BOXTRAP_OUTBOUND_CONNECT_TIMEOUT",
            "0s",
            "outbound.connect_timeout",
        ),
        (
            "BOXTRAP_OUTBOUND_GREETING_TIMEOUT",
            "0s",
            "outbound.greeting_timeout",
        ),
        (
            "BOXTRAP_OUTBOUND_COMMAND_TIMEOUT",
            "0",
            "outbound.command_timeout",
        ),
        (
            "BOXTRAP_OUTBOUND_DATA_TIMEOUT",
            "0ms",
            "outbound.data_timeout",
        ),
        ("BOXTRAP_OUTBOUND_TIMEOUT", "0s", "outbound.timeout"),
        (
            "BOXTRAP_OUTBOUND_RETRY_INTERVAL",
            "500ms",
            "outbound.retry_interval",
        ),
    ] {
        let e = Config::load(None, vec![(var.to_owned(), value.to_owned())])
            .err()
            .unwrap_or_else(|| panic!("{var}={value} was accepted"))
            .to_string();
        assert!(e.contains(key), "{var}={value}: {e}");
    }
    let c = Config::load(None, Vec::new()).unwrap();
    assert_eq!(c.outbound.max_concurrent, 20);
    assert_eq!(c.outbound.mx_address_limit, 5);
    assert!(!c.outbound.allow_private_destinations);
}

#[tokio::test]
async fn through_a_smarthost_messages_to_one_domain_go_side_by_side() {
    // Every message goes to the same relay, so recipient domains take no
    // turns: both are in progress at once.
    let gate = Arc::new(Semaphore::new(0));
    let relay = TestSmtp::start(Behaviour {
        gate: Some(gate),
        ..Behaviour::default()
    })
    .await;
    let s = setup(0, StaticResolver::new(), |c| {
        c.outbound.mode = OutboundMode::Smarthost;
        c.outbound.smarthost = relay.addr.to_string();
        c.outbound.smarthost_tls = crate::config::TlsPolicy::Off;
    })
    .await;
    queue(&s.store, "a1@one.test").await;
    queue(&s.store, "a2@one.test").await;
    let outbound = s.outbound.clone();
    let run = tokio::spawn(async move { outbound.run_once().await });
    relay
        .wait_until("two connections at once", |r| r.open() == 2)
        .await;
    relay.release(2);
    assert_eq!(run.await.unwrap().unwrap(), 2);
    assert_eq!(relay.received().len(), 2);
}
