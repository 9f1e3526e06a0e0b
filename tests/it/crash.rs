//! `kill -9` in the middle of a stream of messages: after a restart, every
//! message that got its 250 is in the Maildir exactly once, nothing is in
//! it twice, and nothing is left over to be delivered later.
//!
//! Each message goes to alice, delivered into her Maildir before the 250,
//! and to bob, whose Maildir is blocked so his copy goes through the
//! database queue before the 250: both ways of keeping a promise are cut
//! short by the kill.

use crate::support::*;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const CLIENTS: usize = 8;
const MESSAGES_PER_CONNECTION: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_sqlite() {
    kill_9_loses_nothing_acknowledged(String::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_postgres() {
    kill_9_loses_nothing_acknowledged(boxtrap::testing::fresh_postgres_database().await).await;
}

async fn kill_9_loses_nothing_acknowledged(database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    // The retry worker is left to `boxtrap queue run`.
    let config = write_test_config(
        dir.path(),
        &database_url,
        "[delivery]\nqueue_run_interval = \"1h\"\n",
    );
    for args in [
        &["domain", "add", "example.test"][..],
        &["mailbox", "add", "alice@example.test", "--no-password"],
        &["mailbox", "add", "bob@example.test", "--no-password"],
    ] {
        let out = run_boxtrap(&config, args, None);
        assert!(out.success, "{args:?}: {out:#?}");
    }
    // A file where bob's Maildir should be: his deliveries are queued.
    let mail = dir.path().join("mail/example.test");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(mail.join("bob"), b"in the way").unwrap();

    let server = ServerProcess::start(&config);
    let (acked_count, mut acked_rx) = watch::channel(0usize);
    let record = Arc::new(KillRecord {
        next: AtomicU64::new(1),
        killed: AtomicBool::new(false),
        acked: Mutex::new(HashSet::new()),
        attempted: Mutex::new(HashSet::new()),
        errors: Mutex::new(Vec::new()),
        acked_count,
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(server.addr, record.clone())))
        .collect();

    // Somewhere between 80 and 160 acknowledged messages in, with every
    // client mid-stream, pull the plug.
    let threshold = 80 + (rand::random::<u64>() % 80) as usize;
    let reached = tokio::time::timeout(
        Duration::from_secs(120),
        acked_rx.wait_for(|n| *n >= threshold),
    )
    .await
    .map(|r| r.map(|_| ()));
    let errors_before_kill = record.errors.lock().unwrap().clone();
    assert!(
        reached.is_ok(),
        "only {} messages acknowledged in 120 s; client errors: {errors_before_kill:?}; server log:\n{}",
        *acked_rx.borrow(),
        server.log()
    );
    record.killed.store(true, Ordering::SeqCst);
    server.kill9();

    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("a client did not notice the server was gone")
            .unwrap();
    }
    let errors = record.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "errors before the server was killed: {errors:?}"
    );
    let acked = record.acked.lock().unwrap().clone();
    let attempted = record.attempted.lock().unwrap().clone();

    // Bob's copy of everything acknowledged is in the queue, and maybe of
    // some messages the kill cut short.
    let out = run_boxtrap(&config, &["queue", "count"], None);
    assert!(out.success, "queue count: {out:#?}");
    let queued: usize = out.stdout.trim().parse().unwrap();
    assert!(
        queued >= acked.len() && queued <= attempted.len(),
        "{queued} queued for {} acknowledged and {} sent",
        acked.len(),
        attempted.len()
    );

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

    let mut summary = Vec::new();
    for mailbox in ["alice", "bob"] {
        let (delivered, leftovers) = check_maildir(&mail.join(mailbox), &acked, &attempted);
        let unacked_delivered = delivered.keys().filter(|id| !acked.contains(id)).count();
        summary.push(format!(
            "{mailbox}: {} delivered, {unacked_delivered} of them without acknowledgement, \
             {leftovers} left in tmp/",
            delivered.len()
        ));
    }
    println!(
        "kill -9 ({}): {} sent, {} acknowledged, {queued} queued for bob at the kill; {}",
        if database_url.is_empty() {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        attempted.len(),
        acked.len(),
        summary.join("; ")
    );
}

/// Checks one Maildir after the crash and restart: every acknowledged
/// message exactly once, nothing twice, nothing that was never sent, and
/// nothing in tmp/ that counts. Returns the delivered counts and the
/// number of tmp/ leftovers.
fn check_maildir(
    maildir: &Path,
    acked: &HashSet<u64>,
    attempted: &HashSet<u64>,
) -> (BTreeMap<u64, usize>, usize) {
    let who = maildir.display();
    let delivered = delivered_ids(maildir);
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{who}: delivered more than once: {twice:?}"
    );
    let mut lost: Vec<_> = acked
        .iter()
        .filter(|id| !delivered.contains_key(id))
        .collect();
    lost.sort();
    assert!(
        lost.is_empty(),
        "{who}: acknowledged with 250 but not delivered: {lost:?}"
    );
    let phantom: Vec<_> = delivered
        .keys()
        .filter(|id| !attempted.contains(id))
        .collect();
    assert!(
        phantom.is_empty(),
        "{who}: delivered but never sent: {phantom:?}"
    );

    // tmp/ may hold a half-written file of a delivery the kill interrupted;
    // none of it may be something acknowledged or already in new/.
    let new_names: Vec<String> = messages_in(&maildir.join("new"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let leftovers = messages_in(&maildir.join("tmp"));
    for (name, content) in &leftovers {
        assert!(
            !new_names.iter().any(|n| n.starts_with(name.as_str())),
            "{who}: tmp/{name} is also in new/"
        );
        if let Some(id) = header_message_id(content).and_then(|id| crash_number(&id)) {
            assert!(
                !acked.contains(&id),
                "{who}: tmp/{name} holds acknowledged message {id}"
            );
        }
    }

    (delivered, leftovers.len())
}

/// Sends messages until the server goes away; records what was sent and
/// what was acknowledged.
async fn client(addr: SocketAddr, record: Arc<KillRecord>) {
    loop {
        if let Err(e) = session(addr, &record).await {
            record.error(e.to_string());
            if record.killed.load(Ordering::SeqCst) || e.kind() == io::ErrorKind::ConnectionRefused
            {
                return;
            }
        }
    }
}

/// One connection: a few messages, then QUIT.
async fn session(addr: SocketAddr, record: &KillRecord) -> io::Result<()> {
    let mut c = FallibleSmtp::connect(addr).await?;
    c.expect("EHLO crash.example.org", "250").await?;
    for _ in 0..MESSAGES_PER_CONNECTION {
        let n = record.next.fetch_add(1, Ordering::SeqCst);
        c.expect("MAIL FROM:<crash@example.org>", "250").await?;
        c.expect("RCPT TO:<alice@example.test>", "250").await?;
        c.expect("RCPT TO:<bob@example.test>", "250").await?;
        c.expect("DATA", "354").await?;
        record.attempted.lock().unwrap().insert(n);
        c.send_expect(&message(n), "250").await?;
        record.acked.lock().unwrap().insert(n);
        record.acked_count.send_modify(|c| *c += 1);
    }
    c.expect("QUIT", "221").await?;
    Ok(())
}

/// Message number `n` on the wire, end-of-data mark included: some KB of
/// body so a kill often lands mid-transfer, and a last line that shows the
/// message arrived whole.
fn message(n: u64) -> Vec<u8> {
    let mut m = format!(
        "From: crash@example.org\r\nTo: alice@example.test, bob@example.test\r\nSubject: crash {n}\r\n\
         Message-ID: <{n}@crash.test>\r\n\r\n"
    );
    for i in 0..(n % 64 + 16) {
        m.push_str(&format!(
            "{n:08} line {i:04} the quick brown fox jumps over the lazy dog\r\n"
        ));
    }
    m.push_str(&format!("end of message {n}\r\n.\r\n"));
    m.into_bytes()
}

fn crash_number(message_id: &str) -> Option<u64> {
    message_id
        .strip_prefix('<')?
        .strip_suffix("@crash.test>")?
        .parse()
        .ok()
}

/// Message number -> how many times it is in `new/` and `cur/`. Every file
/// there must be one of ours, whole.
fn delivered_ids(maildir: &Path) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for sub in ["new", "cur"] {
        for (name, content) in messages_in(&maildir.join(sub)) {
            let id = header_message_id(&content)
                .and_then(|id| crash_number(&id))
                .unwrap_or_else(|| panic!("{sub}/{name} has no crash-test Message-ID"));
            let text = String::from_utf8_lossy(&content);
            assert!(
                text.ends_with(&format!("\nend of message {id}\n")),
                "{sub}/{name} is not whole: {:?}",
                &text[text.len().saturating_sub(120)..]
            );
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}
