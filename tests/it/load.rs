//! The accept path under concurrent load, on both backends: many SMTP
//! clients at once, each message to alice (challenge-response on, so every
//! copy is held in the database) and to bob (plain, so his copy goes into
//! his Maildir), while the background jobs and an administrator work on the
//! same database. Every DATA must get its 250 (never `451 4.3.0` because
//! the database was busy), every message must be held or delivered exactly
//! once, and each sender challenged exactly once; the same after a
//! `kill -9` in the middle of the stream and a restart (there bob's
//! Maildir is blocked, so his copies go through the database queue too,
//! beside alice's held ones).

use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::Timestamp;
use boxtrap::policy::rules::{ListKind, SenderRule};
use boxtrap::store::Store;
use boxtrap::store::held::{ActivityAction, HeldSummary, OutboundRow};
use boxtrap::store::lists::RuleSource;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Distinct unknown senders; message `n` is from `sender{n % SENDERS}`.
const SENDERS: u64 = 20;
/// A rate limit no test here comes near.
const NO_LIMIT: u32 = 1_000_000;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn sender_of(n: u64) -> String {
    format!("sender{}@remote.example", n % SENDERS)
}

fn message_id_of(n: u64) -> String {
    format!("<load-{n}@remote.example>")
}

/// The number in one of our Message-IDs.
fn number_of(message_id: &str) -> Option<u64> {
    message_id
        .strip_prefix("<load-")?
        .strip_suffix("@remote.example>")?
        .parse()
        .ok()
}

/// Message `n` on the wire, end-of-data mark included. The From: header is
/// the envelope sender; a last line shows the message arrived whole.
fn message(n: u64) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: {ALICE}, {BOB}\r\nSubject: load {n}\r\nMessage-ID: {id}\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\n",
        from = sender_of(n),
        id = message_id_of(n),
    );
    for i in 0..(n % 32 + 8) {
        m.push_str(&format!(
            "{n:08} line {i:04} the quick brown fox jumps over the lazy dog\r\n"
        ));
    }
    m.push_str(&format!("end of message {n}\r\n.\r\n"));
    m.into_bytes()
}

/// What became of one transaction.
enum Sent {
    /// DATA was answered 250.
    Acked,
    /// The server refused a step (the reply says which); the session can go on.
    Refused(String),
}

/// One transaction for message `n` to alice and bob. `on_data` runs once
/// the message itself is about to go out (it may be stored from then on).
async fn transaction(c: &mut FallibleSmtp, n: u64, on_data: impl FnOnce()) -> io::Result<Sent> {
    let from = sender_of(n);
    let steps = [
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{ALICE}>"), "250"),
        (format!("RCPT TO:<{BOB}>"), "250"),
        ("DATA".to_owned(), "354"),
    ];
    for (line, want) in &steps {
        let r = c.cmd(line).await?;
        if !r.starts_with(want) {
            // Back to a clean state for the next message.
            c.cmd("RSET").await?;
            return Ok(Sent::Refused(format!(
                "message {n}: {line:?} answered {r:?}"
            )));
        }
    }
    on_data();
    let r = c.send(&message(n)).await?;
    if r.starts_with("250") {
        Ok(Sent::Acked)
    } else {
        Ok(Sent::Refused(format!("message {n}: DATA answered {r:?}")))
    }
}

/// Held rows by message number; panics on a row that is not one of ours.
fn held_by_number(held: &[HeldSummary]) -> BTreeMap<u64, Vec<&HeldSummary>> {
    let mut by = BTreeMap::<u64, Vec<&HeldSummary>>::new();
    for h in held {
        let n = number_of(&h.message_id)
            .unwrap_or_else(|| panic!("a held row that is not ours: {h:?}"));
        by.entry(n).or_default().push(h);
    }
    by
}

/// Challenge mails ("verify") queued, per recipient.
fn verify_mails_per_sender(outbound: &[OutboundRow]) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for o in outbound.iter().filter(|o| o.kind == "verify") {
        *per.entry(o.rcpt.clone()).or_insert(0) += 1;
    }
    per
}

/// Message number -> copies in a Maildir's `new/` and `cur/`. Every file
/// there must be one of ours, whole.
fn delivered_copies(maildir: &Path) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for sub in ["new", "cur"] {
        for (name, content) in messages_in(&maildir.join(sub)) {
            let n = header_message_id(&content)
                .and_then(|id| number_of(&id))
                .unwrap_or_else(|| panic!("{sub}/{name} has none of our Message-IDs"));
            let text = String::from_utf8_lossy(&content);
            assert!(
                text.ends_with(&format!("\nend of message {n}\n")),
                "{sub}/{name} is not whole: {:?}",
                &text[text.len().saturating_sub(120)..]
            );
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

/// Open challenges per sender, straight from the table.
async fn open_challenges_per_sender(store: &Store) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT sender, COUNT(*) FROM challenges WHERE state = 'open' GROUP BY sender",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Numbers that appear more than once in `counts`.
fn duplicates(counts: &BTreeMap<u64, usize>) -> Vec<(u64, usize)> {
    counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect()
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

// --- 1. In-process: 100 clients, background jobs and an admin at once ----

const CLIENTS: u64 = 100;
const CONNECTIONS_PER_CLIENT: u64 = 2;
const MESSAGES_PER_CONNECTION: u64 = 2;
const MESSAGES: u64 = CLIENTS * CONNECTIONS_PER_CLIENT * MESSAGES_PER_CONNECTION;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_all_get_250_and_every_copy_is_held_or_delivered_once_sqlite() {
    concurrent_senders_all_get_250(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_all_get_250_and_every_copy_is_held_or_delivered_once_postgres() {
    concurrent_senders_all_get_250(Backend::Postgres).await;
}

/// Errors and rounds of the background loops, shared with the test.
#[derive(Default)]
struct Background {
    errors: Mutex<Vec<String>>,
    /// Rounds made, per loop.
    rounds: Mutex<BTreeMap<&'static str, usize>>,
}

/// Runs `round` again and again (a short pause between) until `stop`.
fn keep_running<F, Fut>(
    name: &'static str,
    stop: Arc<AtomicBool>,
    background: Arc<Background>,
    mut round: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            if let Err(e) = round(i).await {
                background
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("{name}: {e}"));
            }
            *background.rounds.lock().unwrap().entry(name).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The background jobs, driven by hand, and an administrator, each in its
/// own loop until `stop`.
fn background_work(
    app: &TestApp,
    alice_id: i64,
    stop: &Arc<AtomicBool>,
    background: &Arc<Background>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let quarantine = app.quarantine.clone();
    let outbound = app.outbound.clone();
    let delivery = app.delivery.clone();
    let (admin, admin2) = (app.store.clone(), app.store.clone());
    vec![
        keep_running("sweep_once", stop.clone(), background.clone(), move |_| {
            let q = quarantine.clone();
            async move { q.sweep_once().await.map(|_| ()).map_err(|e| e.to_string()) }
        }),
        keep_running(
            "outbound run_once",
            stop.clone(),
            background.clone(),
            move |_| {
                let o = outbound.clone();
                async move { o.run_once().await.map(|_| ()).map_err(|e| e.to_string()) }
            },
        ),
        keep_running(
            "run_queue_once",
            stop.clone(),
            background.clone(),
            move |_| {
                let d = delivery.clone();
                async move {
                    d.run_queue_once()
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        ),
        // The administrator looks at the quarantine and renames bob...
        keep_running(
            "admin: list held, rename bob",
            stop.clone(),
            background.clone(),
            move |i| {
                let store = admin.clone();
                async move {
                    store
                        .list_held(None, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut s = store
                        .mailbox_settings_by_address(BOB)
                        .await
                        .map_err(|e| e.to_string())?;
                    s.display_name = format!("Bob {i}");
                    store
                        .update_mailbox_settings(&s)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        ),
        // ...and adds senders (none of ours) to alice's allow list.
        keep_running(
            "admin: allow a friend of alice",
            stop.clone(),
            background.clone(),
            move |i| {
                let store = admin2.clone();
                async move {
                    let rule = SenderRule::exact_sender(&format!("friend{i}@elsewhere.example"));
                    store
                        .add_rule(
                            alice_id,
                            ListKind::Allow,
                            &rule,
                            &RuleSource::Admin,
                            Timestamp::from_secs(T0),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        ),
    ]
}

async fn concurrent_senders_all_get_250(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.challenge.max_per_mailbox_hour = NO_LIMIT;
        c.challenge.max_per_domain_day = NO_LIMIT;
        c.challenge.max_per_address_day = NO_LIMIT;
        c.challenge.max_global_hour = NO_LIMIT;
        c.smtp.max_connections_per_ip = 2 * CLIENTS as usize;
    })
    .await;
    app.challenge_on(ALICE).await;
    let alice = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    let bob = app.store.mailbox_settings_by_address(BOB).await.unwrap();
    assert!(!bob.challenge_enabled);

    let stop = Arc::new(AtomicBool::new(false));
    let background = Arc::new(Background::default());
    let loops = background_work(&app, alice.id, &stop, &background);

    let started = Instant::now();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addr, failures, acked) = (app.addr, failures.clone(), acked.clone());
            tokio::spawn(async move {
                for conn in 0..CONNECTIONS_PER_CLIENT {
                    let first = (client * CONNECTIONS_PER_CLIENT + conn) * MESSAGES_PER_CONNECTION;
                    let run = async {
                        let mut c = FallibleSmtp::connect(addr).await?;
                        let r = c.cmd("EHLO load.remote.example").await?;
                        if !r.starts_with("250") {
                            return Err(io::Error::other(format!("EHLO answered {r:?}")));
                        }
                        for n in first..first + MESSAGES_PER_CONNECTION {
                            match transaction(&mut c, n, || {}).await? {
                                Sent::Acked => {
                                    acked.fetch_add(1, Ordering::SeqCst);
                                }
                                Sent::Refused(why) => failures.lock().unwrap().push(why),
                            }
                        }
                        let r = c.cmd("QUIT").await?;
                        if !r.starts_with("221") {
                            return Err(io::Error::other(format!("QUIT answered {r:?}")));
                        }
                        Ok(())
                    };
                    if let Err(e) = run.await {
                        failures.lock().unwrap().push(format!(
                            "client {client}, messages {first}..{}: {e}",
                            first + MESSAGES_PER_CONNECTION
                        ));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("a client did not finish within 120 s")
            .unwrap();
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in loops {
        t.await.unwrap();
    }
    let rounds = background.rounds.lock().unwrap().clone();
    println!(
        "{} under load: {} of {MESSAGES} messages acknowledged in {elapsed:?} \
         by {CLIENTS} clients; background rounds meanwhile: {rounds:?}",
        backend_name(backend),
        acked.load(Ordering::SeqCst),
    );

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {MESSAGES} transactions failed:\n{}\nmain log excerpt:\n{}",
        failures.len(),
        failures.join("\n"),
        log_lines_about_trouble(&app.mainlog())
    );
    assert_eq!(acked.load(Ordering::SeqCst), MESSAGES as usize);
    let background_errors = background.errors.lock().unwrap().clone();
    assert!(
        background_errors.is_empty(),
        "background jobs and admin actions failed under load:\n{}",
        background_errors.join("\n")
    );
    assert_eq!(
        rounds.len(),
        5,
        "every background loop ran while the clients did: {rounds:?}"
    );

    // Alice: exactly one held row per message, none delivered.
    let held = app.store.list_held(Some(alice.id), None).await.unwrap();
    let by_number = held_by_number(&held);
    let twice: Vec<_> = by_number
        .iter()
        .filter(|(_, rows)| rows.len() > 1)
        .map(|(n, rows)| (*n, rows.len()))
        .collect();
    assert!(twice.is_empty(), "held more than once: {twice:?}");
    let missing: Vec<u64> = (0..MESSAGES)
        .filter(|n| !by_number.contains_key(n))
        .collect();
    assert!(missing.is_empty(), "acknowledged but not held: {missing:?}");
    assert_eq!(held.len(), MESSAGES as usize);
    for h in &held {
        let n = number_of(&h.message_id).unwrap();
        assert_eq!(h.sender, sender_of(n), "{h:?}");
        assert_eq!(h.mailbox, ALICE, "{h:?}");
        assert!(
            ["unknown-sender", "challenge-open"].contains(&h.reason.as_str()),
            "held for a reason other than the challenge: {h:?}"
        );
        assert!(
            h.challenge_id.is_some(),
            "held without its challenge: {h:?}"
        );
    }
    assert!(
        app.messages(ALICE).is_empty(),
        "nothing of alice's is delivered"
    );
    let held_for_bob = app.store.list_held(Some(bob.id), None).await.unwrap();
    assert!(
        held_for_bob.is_empty(),
        "bob holds nothing: {held_for_bob:?}"
    );

    // One challenge per sender, and all of a sender's held mail waits on it.
    let outbound = app.store.list_outbound().await.unwrap();
    let per_sender = verify_mails_per_sender(&outbound);
    let want: BTreeMap<String, usize> = (0..SENDERS).map(|s| (sender_of(s), 1)).collect();
    assert_eq!(
        per_sender, want,
        "one challenge mail per sender; all outbound: {outbound:?}"
    );
    let mut challenge_of = BTreeMap::<&str, BTreeSet<i64>>::new();
    for h in &held {
        challenge_of
            .entry(h.sender.as_str())
            .or_default()
            .insert(h.challenge_id.unwrap());
    }
    let split: Vec<_> = challenge_of
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        split.is_empty(),
        "a sender's held mail waits on several challenges: {split:?}"
    );
    let first_of_sender = held.iter().filter(|h| h.reason == "unknown-sender").count();
    assert_eq!(
        first_of_sender, SENDERS as usize,
        "one message per sender opened the challenge, the rest joined it"
    );
    let open = open_challenges_per_sender(&app.store).await;
    let want: BTreeMap<String, i64> = (0..SENDERS).map(|s| (sender_of(s), 1)).collect();
    assert_eq!(open, want, "one open challenge per sender");

    // Bob: every message exactly once in his Maildir.
    let copies = delivered_copies(&app.maildir(BOB));
    assert!(
        duplicates(&copies).is_empty(),
        "delivered to bob more than once: {:?}",
        duplicates(&copies)
    );
    let missing: Vec<u64> = (0..MESSAGES).filter(|n| !copies.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged, not delivered to bob: {missing:?}"
    );
    assert_eq!(copies.len(), MESSAGES as usize);

    let log = app.mainlog();
    assert!(
        !log.contains("temporarily rejected"),
        "{}",
        log_lines_about_trouble(&log)
    );
    assert!(
        !log.to_lowercase().contains("database is locked"),
        "{}",
        log_lines_about_trouble(&log)
    );
    let arrivals = log.lines().filter(|l| l.contains(" <= ")).count();
    assert_eq!(arrivals, MESSAGES as usize, "one arrival line per message");
}

/// The main-log lines a failure message should show (not all 1000+).
fn log_lines_about_trouble(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("temporarily rejected")
                || l.contains("locked")
                || l.contains("busy")
                || l.contains(" == ")
                || l.contains(" ** ")
        })
        .take(50)
        .collect();
    if lines.is_empty() {
        "(no deferral, rejection or lock in the main log)".to_owned()
    } else {
        lines.join("\n")
    }
}

// --- 2. kill -9 of `boxtrap serve` under the same load, and a restart -----

const CRASH_CLIENTS: usize = 50;
const CRASH_MESSAGES_PER_CONNECTION: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_load_loses_and_duplicates_nothing_acknowledged_sqlite() {
    kill_9_under_concurrent_load(String::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_load_loses_and_duplicates_nothing_acknowledged_postgres() {
    kill_9_under_concurrent_load(boxtrap::testing::fresh_postgres_database().await).await;
}

/// Sends messages, a few per connection, until the server goes away.
async fn crash_client(addr: SocketAddr, record: Arc<KillRecord>) {
    loop {
        let run = async {
            let mut c = FallibleSmtp::connect(addr).await?;
            let r = c.cmd("EHLO load.remote.example").await?;
            if !r.starts_with("250") {
                return Err(io::Error::other(format!("EHLO answered {r:?}")));
            }
            for _ in 0..CRASH_MESSAGES_PER_CONNECTION {
                let n = record.next.fetch_add(1, Ordering::SeqCst);
                let sent = transaction(&mut c, n, || {
                    record.attempted.lock().unwrap().insert(n);
                })
                .await?;
                match sent {
                    Sent::Acked => {
                        record.acked.lock().unwrap().insert(n);
                        record.acked_count.send_modify(|c| *c += 1);
                    }
                    Sent::Refused(why) => record.error(why),
                }
            }
            c.cmd("QUIT").await?;
            Ok::<(), io::Error>(())
        };
        if let Err(e) = run.await {
            record.error(e.to_string());
            if record.killed.load(Ordering::SeqCst) {
                return;
            }
            // Not killed yet: a connection the server dropped. Do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if record.killed.load(Ordering::SeqCst) {
            return;
        }
    }
}

async fn kill_9_under_concurrent_load(database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_test_config(
        dir.path(),
        &database_url,
        &format!(
            "[delivery]\nqueue_run_interval = \"1h\"\n\
             [challenge]\nmax_per_mailbox_hour = {NO_LIMIT}\nmax_per_domain_day = {NO_LIMIT}\n\
             max_per_address_day = {NO_LIMIT}\n\
             max_global_hour = {NO_LIMIT}\n"
        ),
    );
    // Room for every client: the [smtp] table is write_test_config's.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[smtp]\n"), "{text}");
    let text = text.replacen(
        "[smtp]\n",
        &format!("[smtp]\nmax_connections_per_ip = {}\n", 4 * CRASH_CLIENTS),
        1,
    );
    std::fs::write(&config, text).unwrap();
    for args in [
        &["domain", "add", "example.test"][..],
        &["mailbox", "add", ALICE, "--no-password"],
        &["mailbox", "add", BOB, "--no-password"],
        &["mailbox", "set", ALICE, "--challenge", "on"],
    ] {
        let out = run_boxtrap(&config, args, None);
        assert!(out.success, "{args:?}: {out:#?}");
    }
    // A file where bob's Maildir should be: his copies go through the
    // database queue before the 250, beside alice's held copies.
    let mail = dir.path().join("mail/example.test");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(mail.join("bob"), b"in the way").unwrap();

    let server = ServerProcess::start(&config);
    let (acked_count, mut acked_rx) = watch::channel(0usize);
    let record = Arc::new(KillRecord {
        next: AtomicU64::new(0),
        killed: AtomicBool::new(false),
        acked: Mutex::new(HashSet::new()),
        attempted: Mutex::new(HashSet::new()),
        errors: Mutex::new(Vec::new()),
        acked_count,
    });
    let started = Instant::now();
    let clients: Vec<_> = (0..CRASH_CLIENTS)
        .map(|_| tokio::spawn(crash_client(server.addr, record.clone())))
        .collect();

    // Somewhere between 100 and 200 acknowledged messages in, with every
    // client mid-stream, pull the plug.
    let threshold = 100 + (rand::random::<u64>() % 100) as usize;
    let reached = tokio::time::timeout(
        Duration::from_secs(60),
        acked_rx.wait_for(|n| *n >= threshold),
    )
    .await
    .map(|r| r.map(|_| ()));
    let errors_before_kill = record.errors.lock().unwrap().clone();
    assert!(
        reached.is_ok(),
        "only {} messages acknowledged in 60 s; client errors: {errors_before_kill:#?}; \
         server log:\n{}",
        *acked_rx.borrow(),
        server.log()
    );
    record.killed.store(true, Ordering::SeqCst);
    let server_log = server.log();
    server.kill9();
    let at_kill = started.elapsed();

    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("a client did not notice the server was gone")
            .unwrap();
    }
    let errors = record.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} errors before the server was killed:\n{}\nserver log:\n{server_log}",
        errors.len(),
        errors.join("\n")
    );
    let acked = record.acked.lock().unwrap().clone();
    let attempted = record.attempted.lock().unwrap().clone();

    // Unblock bob, restart on the same data, retry the queue, stop cleanly.
    std::fs::remove_file(mail.join("bob")).unwrap();
    let server = ServerProcess::start(&config);
    let out = run_boxtrap(&config, &["queue", "run"], None);
    assert!(out.success, "queue run: {out:#?}");
    let out = run_boxtrap(&config, &["queue", "count"], None);
    assert!(out.success, "queue count: {out:#?}");
    assert_eq!(
        out.stdout.trim(),
        "0",
        "deliveries left to do after the restart and a queue run: {}",
        run_boxtrap(&config, &["queue", "list"], None).stdout
    );
    let log = server.log();
    let status = server.terminate();
    assert!(status.success(), "serve exited with {status}; log:\n{log}");

    // Bob: every acknowledged message exactly once, nothing never sent.
    let bob = delivered_copies(&mail.join("bob"));
    assert!(
        duplicates(&bob).is_empty(),
        "delivered to bob more than once: {:?}",
        duplicates(&bob)
    );
    let mut lost: Vec<u64> = acked
        .iter()
        .filter(|n| !bob.contains_key(n))
        .copied()
        .collect();
    lost.sort();
    assert!(
        lost.is_empty(),
        "acknowledged, not delivered to bob: {lost:?}"
    );
    let phantom: Vec<_> = bob.keys().filter(|n| !attempted.contains(n)).collect();
    assert!(
        phantom.is_empty(),
        "delivered to bob, never sent: {phantom:?}"
    );
    // tmp/ may hold a half-written file the kill interrupted, never one
    // that was acknowledged.
    for (name, content) in messages_in(&mail.join("bob/tmp")) {
        if let Some(n) = header_message_id(&content).and_then(|id| number_of(&id)) {
            assert!(
                !acked.contains(&n),
                "bob's tmp/{name} holds acknowledged {n}"
            );
        }
    }
    let alice_copies = delivered_copies(&mail.join("alice"));
    assert!(
        alice_copies.is_empty(),
        "alice's mail is held, not delivered: {alice_copies:?}"
    );

    // Alice: every acknowledged message held exactly once, whole.
    let url = if database_url.is_empty() {
        format!("sqlite://{}", dir.path().join("boxtrap.db").display())
    } else {
        database_url.clone()
    };
    let store = Store::open(&url, 1).await.unwrap();
    let held = store.list_held(None, None).await.unwrap();
    assert!(
        held.iter().all(|h| h.mailbox == ALICE),
        "only alice holds mail: {:?}",
        held.iter()
            .filter(|h| h.mailbox != ALICE)
            .collect::<Vec<_>>()
    );
    let by_number = held_by_number(&held);
    let twice: Vec<_> = by_number
        .iter()
        .filter(|(_, rows)| rows.len() > 1)
        .map(|(n, rows)| (*n, rows.len()))
        .collect();
    assert!(twice.is_empty(), "held more than once: {twice:?}");
    let mut lost: Vec<u64> = acked
        .iter()
        .filter(|n| !by_number.contains_key(n))
        .copied()
        .collect();
    lost.sort();
    assert!(
        lost.is_empty(),
        "acknowledged, not held for alice: {lost:?}"
    );
    let phantom: Vec<_> = by_number
        .keys()
        .filter(|n| !attempted.contains(n))
        .collect();
    assert!(phantom.is_empty(), "held, never sent: {phantom:?}");
    for n in &acked {
        let h = by_number[n][0];
        assert_eq!(h.sender, sender_of(*n), "{h:?}");
        assert!(
            h.challenge_id.is_some(),
            "held without its challenge: {h:?}"
        );
        let data = store.held_data(h.id).await.unwrap().unwrap();
        assert!(
            String::from_utf8_lossy(&data).contains(&format!("\nend of message {n}\r\n")),
            "held message {n} is not whole"
        );
    }

    // At most one challenge per sender, exactly one for every sender with
    // acknowledged mail, and each sender's held mail waits on that one.
    let open = open_challenges_per_sender(&store).await;
    let several: Vec<_> = open.iter().filter(|(_, c)| **c > 1).collect();
    assert!(several.is_empty(), "several open challenges: {several:?}");
    let outbound = store.list_outbound().await.unwrap();
    let per_sender = verify_mails_per_sender(&outbound);
    let senders_acked: BTreeSet<String> = acked.iter().map(|n| sender_of(*n)).collect();
    for s in &senders_acked {
        assert_eq!(
            per_sender.get(s),
            Some(&1),
            "one challenge mail to {s}: {per_sender:?}"
        );
        assert_eq!(open.get(s), Some(&1), "an open challenge for {s}: {open:?}");
    }
    assert!(
        per_sender.values().all(|c| *c == 1),
        "a sender challenged twice: {per_sender:?}"
    );
    let mut challenge_of = BTreeMap::<&str, BTreeSet<i64>>::new();
    for h in &held {
        challenge_of
            .entry(h.sender.as_str())
            .or_default()
            .extend(h.challenge_id);
    }
    let split: Vec<_> = challenge_of
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        split.is_empty(),
        "a sender's held mail waits on several challenges: {split:?}"
    );
    store.close().await;

    let main_log = std::fs::read_to_string(dir.path().join("log/mainlog")).unwrap_or_default();
    assert!(
        !main_log.contains("temporarily rejected")
            && !main_log.to_lowercase().contains("database is locked"),
        "{}",
        log_lines_about_trouble(&main_log)
    );
    println!(
        "kill -9 under load ({}): killed after {at_kill:?}; {} sent, {} acknowledged, \
         {} held for alice, {} delivered to bob, {} senders challenged",
        if database_url.is_empty() {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        attempted.len(),
        acked.len(),
        held.len(),
        bob.len(),
        per_sender.len()
    );
}

// --- 3. A sender that cannot be challenged ---------------------------------

on_both_backends!(
    a_sender_that_cannot_be_challenged_is_held_without_one_and_the_other_recipients_get_their_copies,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on(ALICE).await;
        // `john doe@example.org`: a space in an unquoted local part. No
        // challenge can be sent to it; that must cost this copy its
        // challenge, not the message a 451, and not bob his copy.
        let body = format!(
            "From: John Doe <john doe@example.org>\r\nTo: {ALICE}, {BOB}\r\n\
             Subject: unchallengeable\r\nMessage-ID: <bad-from@example.org>\r\n\r\nHello.\r\n"
        );
        let mut s = app.smtp().await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd("MAIL FROM:<john@example.org>", "250").await;
        s.cmd(&format!("RCPT TO:<{ALICE}>"), "250").await;
        s.cmd(&format!("RCPT TO:<{BOB}>"), "250").await;
        s.cmd("DATA", "354").await;
        let reply = s.data(&body).await;
        assert!(
            reply.starts_with("250 2.0.0"),
            "{reply}\nmain log:\n{}",
            app.mainlog()
        );
        s.cmd("QUIT", "221").await;

        let held = app.store.list_held(None, None).await.unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        let h = &held[0];
        assert_eq!(h.mailbox, ALICE);
        assert_eq!(h.message_id, "<bad-from@example.org>");
        assert_eq!(h.sender, "john@example.org", "the envelope sender stands in");
        assert_eq!(h.reason, "unusable-from", "{h:?}");
        assert!(
            h.reason_detail.contains("\"john doe@example.org\"")
                && h.reason_detail.contains("not allowed"),
            "the detail names the address and what is wrong with it: {:?}",
            h.reason_detail
        );
        assert_eq!(h.challenge_id, None, "{h:?}");

        let outbound = app.store.list_outbound().await.unwrap();
        assert!(
            outbound.iter().all(|o| o.kind != "verify"),
            "no challenge queued: {outbound:?}"
        );
        assert_eq!(app.outbound.run_once().await.unwrap(), 0);
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM challenges")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        assert_eq!(open, 0, "no challenge row left behind");

        let to_bob = app.messages(BOB);
        assert_eq!(to_bob.len(), 1, "bob has his copy");
        assert_eq!(
            header_message_id(&to_bob[0].1).as_deref(),
            Some("<bad-from@example.org>")
        );
        assert!(app.messages(ALICE).is_empty());

        let alice = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
        let activity = app.store.activity(alice.id, 10).await.unwrap();
        assert!(
            activity
                .iter()
                .any(|a| a.action == ActivityAction::Held && a.detail.contains("john doe")),
            "{activity:?}"
        );
        assert!(
            activity.iter().all(|a| a.action != ActivityAction::Challenged),
            "{activity:?}"
        );
        let log = app.mainlog();
        assert!(
            log.contains(&format!("=> :quarantine: {ALICE} <{ALICE}> R=quarantine")),
            "{log}"
        );
        assert!(log.contains(&format!("=> {BOB} <{BOB}> R=local T=maildir")), "{log}");
        assert!(!log.contains("temporarily rejected"), "{log}");
    }
);
