//! The owner's quarantine page with 1,000,000 held messages: how long the
//! server takes to answer it, against the same page of a mailbox with
//! 1,000 held messages measured in the same run (quote the ratio; the
//! absolute figures move with the machine).
//!
//! ```sh
//! cargo bench --bench quarantine                       # SQLite, then PostgreSQL
//! cargo bench --bench quarantine -- sqlite --runs 51   # one backend, more runs
//! cargo bench --bench quarantine -- --count 100000     # a smaller big mailbox
//! ```
//!
//! PostgreSQL needs `PG_TEST_URL` (as the tests do; `bash scripts/test.sh
//! --setup-only` prints it): the bench makes a database of its own there
//! and drops it at the end. SQLite lives in a temporary directory under
//! `/var/tmp`. Each filled database takes about 6 GB (the message bodies
//! are stored, as the server stores them) and is deleted afterwards.
//!
//! For each backend it builds the server in-process ([`App`], the real
//! router and store), fills two mailboxes directly through the store's
//! connection pool in large transactions (`big@bench.example` with
//! `--count` messages, `ref@bench.example` with 1,000; about 1,000
//! distinct senders each, one challenge per sender, realistic subjects and
//! sizes: see [`Corpus`]), runs `ANALYZE`, signs both owners in over HTTP
//! and then measures, `--runs` times each after 3 warm-ups, interleaved:
//!
//! - `GET /quarantine` (the newest 25) and a deep page (`?after=` the
//!   cursor 90% of the way down), timed by the client from connect to the
//!   last byte over loopback, so an upper bound of the server's time;
//! - `GET /quarantine/{id}` of the newest message;
//! - the page searching by sender (`q=from:`) and by subject;
//! - [`Store::held_page`] itself, the query those pages run (26 rows);
//! - "Allow sender and deliver all" for a sender with 100 held messages
//!   (`Quarantine::release_sender`: each delivered into the Maildir);
//! - "Deliver all from this sender" for 100 held messages
//!   (`Quarantine::owner_act` with `deliver_all`, see [`hooks`]).
//!
//! It prints the medians (and 90th percentiles) as a Markdown table with
//! the ratio big/reference, then the query plan of the page's query on
//! that backend (`EXPLAIN QUERY PLAN` / `EXPLAIN`).

use boxtrap::address::{Domain, EmailAddress};
use boxtrap::app::{App, AppDeps};
use boxtrap::clock::{Clock, SystemClock, Timestamp};
use boxtrap::config::{Config, HumanDuration};
use boxtrap::quarantine::Quarantine;
use boxtrap::quarantine::owner::OwnerAction;
use boxtrap::quarantine::release::ReleasedBy;
use boxtrap::store::Store;
use boxtrap::store::digest::DigestFrequency;
use boxtrap::store::search::HeldQuery;
use boxtrap::store::web::HeldCursor;
use boxtrap::web::owner::encode_cursor;
use sqlx::Row;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: &str = "big@bench.example";
const REFERENCE: &str = "ref@bench.example";
const PASSWORD: &str = "bench password";
/// Held messages in the reference mailbox.
const REFERENCE_COUNT: usize = 1000;
/// Distinct senders per mailbox.
const SENDERS: usize = 1000;
/// Rows per INSERT statement and statements per transaction.
const ROWS_PER_INSERT: usize = 500;
const INSERTS_PER_TX: usize = 20;
/// The page's size and what it asks the store for (one more, to know
/// whether there is a next page).
const PAGE: i64 = 25;
/// The sender searched for: the one in the middle of
/// [`Corpus::senders`] (about 700 messages in the big mailbox).
const SEARCHED_SENDER: usize = 500;
/// Messages of one sender released at once.
const RELEASED: usize = 100;

/// A deterministic pseudo-random stream (splitmix64): every run fills the
/// same mailboxes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const FIRST: [&str; 20] = [
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kira",
    "Liam", "Maya", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara",
];
const LAST: [&str; 10] = [
    "Smith", "Müller", "Garcia", "Rossi", "Dubois", "Novak", "Kowalski", "Jensen", "Silva",
    "Tanaka",
];
const DOMAINS: [&str; 12] = [
    "gmail.example",
    "outlook.example",
    "yahoo.example",
    "shop.example.org",
    "news.example.com",
    "bank.example.net",
    "newsletter.example.io",
    "promo.example.biz",
    "university.example.edu",
    "supplier.example.de",
    "crm.example.co.uk",
    "cheap-pills.example.ru",
];
const SUBJECTS: [&str; 16] = [
    "Your invoice {n}",
    "Re: meeting on {d}",
    "Order #{n} has shipped",
    "Weekly newsletter {d}",
    "Last chance: {n}% off everything",
    "Password reset request",
    "Your account statement for {d}",
    "Invitation: project review {d}",
    "Fwd: minutes of {d}",
    "You have won a {n} EUR voucher!!!",
    "Delivery failed for parcel {n}",
    "Security alert: new sign-in",
    "Quote request {n}",
    "Re: Re: holiday plans",
    "Cheap meds, no prescription {n}",
    "Invoice overdue - final notice {n}",
];

/// The senders and words the held mail is made of.
struct Corpus {
    /// `(address, display name)`, about [`SENDERS`] of them.
    senders: Vec<(String, String)>,
    /// Filler text for bodies, sliced at random offsets.
    words: String,
}

impl Corpus {
    fn new() -> Corpus {
        let mut rng = Rng(7);
        let senders = (0..SENDERS)
            .map(|i| {
                let first = FIRST[i % FIRST.len()];
                let last = LAST[(i / FIRST.len()) % LAST.len()];
                let domain = DOMAINS[rng.below(DOMAINS.len())];
                let local = format!("{}.{}{}", first, last, i / 200).to_lowercase();
                (format!("{local}@{domain}"), format!("{first} {last}"))
            })
            .collect();
        let vocabulary = [
            "the", "offer", "meeting", "invoice", "please", "account", "click", "here", "attached",
            "regards", "tomorrow", "payment", "delivery", "update", "free", "price", "team",
            "report", "password", "confirm", "order", "week", "thanks", "project", "review",
        ];
        let mut words = String::with_capacity(300 * 1024);
        while words.len() < 256 * 1024 {
            words.push_str(vocabulary[rng.below(vocabulary.len())]);
            words.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        Corpus { senders, words }
    }

    /// A message size in bytes: 70% 1–4 KiB, 25% 4–12 KiB, 5% 12–64 KiB.
    fn size(rng: &mut Rng) -> usize {
        let u = rng.unit();
        let (lo, hi) = match rng.below(100) {
            0..=69 => (1024.0, 4096.0),
            70..=94 => (4096.0, 12288.0),
            _ => (12288.0, 65536.0),
        };
        (lo + u * (hi - lo)) as usize
    }

    /// The sender of a message: a few senders send most of the mail.
    fn sender(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        ((u * u) * self.senders.len() as f64) as usize
    }
}

/// One held row as the bulk insert binds it.
struct FillRow {
    queue_id: String,
    env_sender: String,
    sender: String,
    sender_name: String,
    subject: String,
    message_id: String,
    date_header: String,
    arrived_at: i64,
    reason: &'static str,
    reason_detail: &'static str,
    challenge_id: Option<i64>,
    data: Vec<u8>,
    spam_score: Option<i64>,
}

fn make_row(
    corpus: &Corpus,
    rng: &mut Rng,
    mailbox: &str,
    n: usize,
    at: i64,
    challenges: &[i64],
) -> FillRow {
    let s = corpus.sender(rng);
    let (sender, name) = &corpus.senders[s];
    let day = Timestamp(at).log_format()[..10].to_owned();
    let subject = SUBJECTS[rng.below(SUBJECTS.len())]
        .replace("{n}", &(rng.below(90_000) + 10_000).to_string())
        .replace("{d}", &day);
    let message_id = format!(
        "<{n}.{}@{}>",
        rng.next(),
        sender.split('@').nth(1).unwrap_or("x")
    );
    let date_header = format!("{} +0000", Timestamp(at).log_format());
    let head = format!(
        "Received: from mail.example ([192.0.2.{}]) by mx.bench.example with ESMTP id B{n:010}\r\n\
         From: {name} <{sender}>\r\nTo: {mailbox}\r\nSubject: {subject}\r\n\
         Message-ID: {message_id}\r\nDate: {date_header}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
        rng.below(250) + 1
    );
    let size = Corpus::size(rng).max(head.len() + 16);
    let mut data = head.into_bytes();
    while data.len() < size {
        let from = rng.below(corpus.words.len() - 4096);
        let take = (size - data.len()).min(4096);
        data.extend_from_slice(&corpus.words.as_bytes()[from..from + take]);
    }
    let (reason, reason_detail, spam_score) = match rng.below(100) {
        0..=59 => (
            "unknown-sender",
            "unknown sender; a challenge was sent",
            None,
        ),
        60..=84 => (
            "challenge-open",
            "unknown sender; a challenge is already waiting for an answer",
            None,
        ),
        85..=94 => ("spam", "spam score 9.5 is over 8.0", Some(95)),
        _ => ("role-sender", "sent by an automated address", None),
    };
    FillRow {
        queue_id: format!("B{n:010}.{mailbox}"),
        env_sender: sender.clone(),
        sender: sender.clone(),
        sender_name: name.clone(),
        subject,
        message_id,
        date_header,
        arrived_at: at,
        reason,
        reason_detail,
        challenge_id: Some(challenges[s]),
        data,
        spam_score,
    }
}

/// One challenge per sender (most sent, some failed), each with its
/// `verify` mail; returns the challenge ids by sender.
async fn fill_challenges(store: &Store, mailbox_id: i64, corpus: &Corpus, now: i64) -> Vec<i64> {
    let mut tx = store.writer().begin().await.unwrap();
    let mut ids = Vec::with_capacity(corpus.senders.len());
    for (i, (sender, _)) in corpus.senders.iter().enumerate() {
        let domain = sender.split('@').nth(1).unwrap_or("");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO challenges (mailbox_id, sender, sender_domain, state, created_at, expires_at)
             VALUES ($1, $2, $3, 'open', $4, $5) RETURNING id",
        )
        .bind(mailbox_id)
        .bind(sender)
        .bind(domain)
        .bind(now - 86_400_000_000)
        .bind(now + 30 * 86_400_000_000)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let (state, error) = if i % 10 == 9 {
            ("failed", "550 5.1.1 no such user")
        } else {
            ("sent", "")
        };
        sqlx::query(
            "INSERT INTO outbound_messages (kind, mailbox_id, challenge_id, env_from, rcpt, rcpt_domain,
                 data, state, attempts, next_attempt_at, last_error, created_at, done_at)
             VALUES ('verify', $1, $2, '', $3, $4, $5, $6, 1, $7, $8, $7, $7)",
        )
        .bind(mailbox_id)
        .bind(id)
        .bind(sender)
        .bind(domain)
        .bind(&b"Subject: Please confirm\r\n\r\n..."[..])
        .bind(state)
        .bind(now - 86_000_000_000)
        .bind(error)
        .execute(&mut *tx)
        .await
        .unwrap();
        ids.push(id);
    }
    tx.commit().await.unwrap();
    ids
}

/// Fills `mailbox` with `count` held messages arriving evenly over the
/// last 14 days up to `now`, oldest first (so ids grow with time, as they
/// do), in transactions of [`ROWS_PER_INSERT`] × [`INSERTS_PER_TX`] rows.
async fn fill(store: &Store, mailbox: &str, count: usize, corpus: &Corpus, now: i64) {
    let mailbox_id = mailbox_id(store, mailbox).await;
    let challenges = fill_challenges(store, mailbox_id, corpus, now).await;
    let span = 14 * 86_400_000_000i64;
    let start = now - span;
    let mut rng = Rng(mailbox_id as u64 * 1_000_003);
    let began = Instant::now();
    let mut n = 0;
    while n < count {
        let mut tx = store.writer().begin().await.unwrap();
        for _ in 0..INSERTS_PER_TX {
            if n >= count {
                break;
            }
            let rows: Vec<FillRow> = (n..count.min(n + ROWS_PER_INSERT))
                .map(|i| {
                    let at = start + (span / count as i64) * i as i64 + rng.below(1_000_000) as i64;
                    make_row(corpus, &mut rng, mailbox, i, at, &challenges)
                })
                .collect();
            n += rows.len();
            insert_rows(&mut tx, mailbox_id, mailbox, &rows).await;
        }
        tx.commit().await.unwrap();
        if n % 100_000 < ROWS_PER_INSERT * INSERTS_PER_TX {
            eprintln!(
                "  {mailbox}: {n} held ({:.0} rows/s)",
                n as f64 / began.elapsed().as_secs_f64()
            );
        }
    }
}

/// Inserts held rows for one mailbox in one statement.
async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    mailbox_id: i64,
    mailbox: &str,
    rows: &[FillRow],
) {
    // Parameters bound per row ($1 and $2 are shared).
    const COLS: usize = 14;
    let mut sql = String::from(
        "INSERT INTO held_messages (mailbox_id, queue_id, rcpt_index, env_sender, original_rcpt,
        sender, sender_name, subject, message_id, date_header, size, arrived_at, reason, reason_detail,
        challenge_id, data, auth_results, spam_score, spam_report) VALUES ",
    );
    for r in 0..rows.len() {
        let b = r * COLS;
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "($1, ${}, 0, ${}, $2, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, \
             'mx.bench.example; spf=none; dkim=none; dmarc=none', ${}, '')",
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10,
            b + 11,
            b + 12,
            b + 13,
            b + 14,
            b + 15,
            b + 16,
        ));
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(mailbox_id)
        .bind(mailbox);
    for r in rows {
        q = q
            .bind(&r.queue_id)
            .bind(&r.env_sender)
            .bind(&r.sender)
            .bind(&r.sender_name)
            .bind(&r.subject)
            .bind(&r.message_id)
            .bind(&r.date_header)
            .bind(r.data.len() as i64)
            .bind(r.arrived_at)
            .bind(r.reason)
            .bind(r.reason_detail)
            .bind(r.challenge_id)
            .bind(&r.data)
            .bind(r.spam_score);
    }
    q.execute(conn).await.unwrap();
}

/// Holds [`RELEASED`] new messages from a sender of their own (the
/// `round`th) for the mailbox, arriving now; returns the sender.
async fn hold_batch(
    store: &Store,
    corpus: &Corpus,
    owner: &Owner,
    mailbox: &str,
    round: usize,
) -> String {
    let sender = format!("batch{round}@bulk-{}.example", owner.id);
    let mut rng = Rng(round as u64 + 99);
    let now = SystemClock.now().0;
    let rows: Vec<FillRow> = (0..RELEASED)
        .map(|i| {
            let mut r = make_row(
                corpus,
                &mut rng,
                mailbox,
                10_000_000 * (round + 1) + i,
                now,
                &[0; SENDERS],
            );
            r.sender = sender.clone();
            r.env_sender = sender.clone();
            r.challenge_id = None;
            r
        })
        .collect();
    let mut conn = store.writer().acquire().await.unwrap();
    insert_rows(&mut conn, owner.id, mailbox, &rows).await;
    sender
}

async fn mailbox_id(store: &Store, mailbox: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM mailboxes WHERE address = $1")
        .bind(mailbox)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// The cursor of the row `offset` rows down the mailbox's list.
async fn cursor_at(store: &Store, mailbox_id: i64, offset: i64) -> HeldCursor {
    let row = sqlx::query(
        "SELECT arrived_at, id FROM held_messages WHERE mailbox_id = $1
         ORDER BY arrived_at DESC, id DESC LIMIT 1 OFFSET $2",
    )
    .bind(mailbox_id)
    .bind(offset)
    .fetch_one(store.pool())
    .await
    .unwrap();
    HeldCursor {
        arrived_at: Timestamp(row.get::<i64, _>(0)),
        id: row.get(1),
    }
}

/// One HTTP/1.1 request on a new loopback connection; the status, the
/// body, and the time from connect to the last byte.
async fn http(
    web: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, Duration) {
    let began = Instant::now();
    let mut s = TcpStream::connect(web).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let took = began.elapsed();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text, took)
}

/// Signs `mailbox` in; its session cookie header line.
async fn sign_in(web: SocketAddr, mailbox: &str) -> String {
    let form = format!(
        "address={}&password={}",
        mailbox.replace('@', "%40"),
        PASSWORD.replace(' ', "+")
    );
    let (status, text, _) = http(
        web,
        "POST",
        "/login",
        &format!("Origin: http://{web}\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
        &form,
    )
    .await;
    assert_eq!(status, 303, "sign-in of {mailbox} failed: {text}");
    let cookie = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    format!("Cookie: {cookie}\r\n")
}

/// What one measurement does once; returns the time it took.
type Probe<'a> =
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Duration> + 'a>> + 'a>;

/// One line of the table: the same thing on the big mailbox and on the
/// reference one.
struct Measure<'a> {
    name: String,
    big: Probe<'a>,
    reference: Probe<'a>,
}

/// A mailbox as the measurements see it.
struct Owner {
    id: i64,
    address: &'static str,
    cookie: String,
    deep: HeldCursor,
    newest: i64,
}

fn page_probe<'a>(web: SocketAddr, owner: &'a Owner, path: String) -> Probe<'a> {
    Box::new(move || {
        let path = path.clone();
        Box::pin(async move {
            let (status, text, took) = http(web, "GET", &path, &owner.cookie, "").await;
            assert_eq!(status, 200, "{path}: {}", &text[..text.len().min(500)]);
            took
        })
    })
}

fn store_probe<'a>(store: &'a Store, owner: &'a Owner, deep: bool) -> Probe<'a> {
    Box::new(move || {
        Box::pin(async move {
            let began = Instant::now();
            let rows = store
                .held_page(
                    owner.id,
                    &HeldQuery::default(),
                    deep.then_some(owner.deep),
                    PAGE + 1,
                )
                .await
                .unwrap();
            let took = began.elapsed();
            assert_eq!(rows.len() as i64, PAGE + 1);
            took
        })
    })
}

/// The measurements, each on the big and the reference mailbox.
fn measures<'a>(
    web: SocketAddr,
    store: &'a Store,
    held: &'a Held,
    big: &'a Owner,
    small: &'a Owner,
) -> Vec<Measure<'a>> {
    let page = |name: &str, path: &dyn Fn(&Owner) -> String| Measure {
        name: name.to_owned(),
        big: page_probe(web, big, path(big)),
        reference: page_probe(web, small, path(small)),
    };
    let mut all = vec![
        page("GET /quarantine (newest 25)", &|_| "/quarantine".to_owned()),
        page("GET /quarantine?after= (90% down)", &|o| {
            format!("/quarantine?limit=25&after={}", encode_cursor(o.deep))
        }),
        page("GET /quarantine?limit=100", &|_| {
            "/quarantine?limit=100".to_owned()
        }),
        page("GET /quarantine?q=from: (one sender)", &|_| {
            let sender = &held.corpus.senders[SEARCHED_SENDER].0;
            format!("/quarantine?q=from:{}", sender.replace('@', "%40"))
        }),
        page("GET /quarantine?q=subject:invoice", &|_| {
            "/quarantine?q=subject:invoice".to_owned()
        }),
        page("GET /quarantine/{id} (newest)", &|o| {
            format!("/quarantine/{}", o.newest)
        }),
        Measure {
            name: "Store::held_page, first 26".into(),
            big: store_probe(store, big, false),
            reference: store_probe(store, small, false),
        },
        Measure {
            name: "Store::held_page, 26 at 90% down".into(),
            big: store_probe(store, big, true),
            reference: store_probe(store, small, true),
        },
    ];
    all.push(Measure {
        name: format!("allow sender and deliver all: {RELEASED} messages"),
        big: release_probe(held, big),
        reference: release_probe(held, small),
    });
    all.extend(hooks(held, big, small));
    all
}

/// What the release measurement needs: the quarantine that releases and
/// the corpus its messages are made from, with a counter so every run
/// has a sender of its own.
struct Held {
    store: Store,
    quarantine: Arc<Quarantine>,
    corpus: Corpus,
    round: Cell<usize>,
}

/// Gives a new sender [`RELEASED`] held messages (not timed), then times
/// `Quarantine::release_sender` for them (the owner's "Allow sender and
/// deliver all"): each is delivered into the Maildir and the sender
/// allowed.
fn release_probe<'a>(held: &'a Held, owner: &'a Owner) -> Probe<'a> {
    Box::new(move || {
        Box::pin(async move {
            let round = held.round.get();
            held.round.set(round + 1);
            let sender = hold_batch(&held.store, &held.corpus, owner, owner.address, round).await;
            let began = Instant::now();
            let n = held
                .quarantine
                .release_sender(owner.id, &sender, ReleasedBy::Owner)
                .await
                .unwrap();
            let took = began.elapsed();
            assert_eq!(n, RELEASED, "{sender}");
            took
        })
    })
}

/// Gives a new sender [`RELEASED`] held messages (not timed), then times
/// the owner's "Deliver all from this sender" (`Quarantine::owner_act`
/// with `deliver_all`, the page's and the API's action): each is
/// delivered into the Maildir, the sender is not allowed.
fn deliver_all_probe<'a>(held: &'a Held, owner: &'a Owner) -> Probe<'a> {
    Box::new(move || {
        Box::pin(async move {
            let round = held.round.get();
            held.round.set(round + 1);
            let sender = hold_batch(&held.store, &held.corpus, owner, owner.address, round).await;
            let first = held
                .store
                .held_ids_from(owner.id, Some(&sender), None)
                .await
                .unwrap()[0];
            let began = Instant::now();
            let r = held
                .quarantine
                .owner_act(
                    owner.id,
                    OwnerAction::DeliverAll,
                    &[(first, sender.clone())],
                )
                .await
                .unwrap();
            let took = began.elapsed();
            assert_eq!(r.delivered, RELEASED, "{sender}");
            took
        })
    })
}

/// The owner's "deliver all from this sender" (the searches by sender
/// and subject are the page probes above).
fn hooks<'a>(held: &'a Held, big: &'a Owner, small: &'a Owner) -> Vec<Measure<'a>> {
    vec![Measure {
        name: format!("deliver all from this sender: {RELEASED} messages"),
        big: deliver_all_probe(held, big),
        reference: deliver_all_probe(held, small),
    }]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The page's query plan, by the backend's own EXPLAIN. The query is
/// [`Store::held_page`]'s (src/store/web.rs), copied: keep them in step.
async fn explain(store: &Store, postgres: bool, owner: &Owner, which: &str) {
    let query =
        "SELECT h.id, h.arrived_at, h.env_sender, h.sender, h.sender_name, h.subject, h.size,
                h.reason, h.reason_detail, h.state, h.challenge_id,
                c.state AS challenge_state,
                o.state AS mail_state, o.done_at AS mail_done_at, o.last_error AS mail_error
         FROM held_messages h
         LEFT JOIN challenges c ON c.id = h.challenge_id
         LEFT JOIN outbound_messages o ON o.id = (
             SELECT MIN(x.id) FROM outbound_messages x
             WHERE x.challenge_id = h.challenge_id AND x.kind = 'verify')
         WHERE h.mailbox_id = $1 AND (h.arrived_at, h.id) < ($2, $3)
         ORDER BY h.arrived_at DESC, h.id DESC
         LIMIT $4";
    let (prefix, col) = if postgres {
        ("EXPLAIN (ANALYZE, COSTS OFF) ", 0)
    } else {
        ("EXPLAIN QUERY PLAN ", 3)
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{prefix}{query}")))
        .bind(owner.id)
        .bind(owner.deep.arrived_at.0)
        .bind(owner.deep.id)
        .bind(PAGE + 1)
        .fetch_all(store.pool())
        .await
        .unwrap();
    println!("\nPlan of the page's query (page 90% down, {which} mailbox):\n```");
    for r in rows {
        println!("{}", r.get::<String, _>(col));
    }
    println!("```");
}

struct Args {
    backends: Vec<String>,
    count: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        backends: Vec::new(),
        count: 1_000_000,
        runs: 21,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "sqlite" | "postgres" => a.backends.push(arg),
            "--count" => a.count = it.next().and_then(|n| n.parse().ok()).expect("--count N"),
            "--runs" => a.runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            _ => {} // `cargo bench` passes --bench
        }
    }
    if a.backends.is_empty() {
        a.backends = vec!["sqlite".into(), "postgres".into()];
    }
    a
}

async fn run_backend(backend: &str, args: &Args) {
    let dir = tempfile::Builder::new()
        .prefix("boxtrap-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let postgres = backend == "postgres";
    let url = if postgres {
        boxtrap::testing::fresh_postgres_database().await
    } else {
        String::new()
    };
    let mut config = Config::load(None, Vec::new()).unwrap();
    config.data_dir = dir.path().to_owned();
    config.hostname = "mx.bench.example".into();
    config.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.web.listen = "127.0.0.1:0".parse().unwrap();
    config.database.url = url.clone();
    config.dns.servers = vec!["127.0.0.1:53".parse().unwrap()];
    // No background pass runs while measuring.
    let hour = HumanDuration(Duration::from_secs(3600));
    config.delivery.queue_run_interval = hour;
    config.outbound.run_interval = hour;
    config.challenge.sweep_interval = hour;
    let app = App::build(config, AppDeps::default()).await.unwrap();
    let store = app.store().clone();
    let quarantine = app.quarantine();
    let web = app.web_addr();
    let now = SystemClock.now().0;
    let hash = boxtrap::password::hash(PASSWORD).unwrap();
    store
        .add_domain(&Domain::parse("bench.example").unwrap(), Timestamp(now))
        .await
        .unwrap();
    for m in [BIG, REFERENCE] {
        let a = EmailAddress::parse(m).unwrap();
        let r = store.add_mailbox(&a, &hash, Timestamp(now)).await.unwrap();
        store
            .set_digest(r.id, DigestFrequency::Never)
            .await
            .unwrap();
    }
    let corpus = Corpus::new();
    let began = Instant::now();
    eprintln!(
        "{backend}: filling {BIG} with {} and {REFERENCE} with {REFERENCE_COUNT}",
        args.count
    );
    fill(&store, REFERENCE, REFERENCE_COUNT, &corpus, now).await;
    fill(&store, BIG, args.count, &corpus, now).await;
    sqlx::query("ANALYZE")
        .execute(store.writer())
        .await
        .unwrap();
    let fill_time = began.elapsed();
    eprintln!("{backend}: filled in {:.0} s", fill_time.as_secs_f64());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let owner = |mailbox: &'static str, count: usize| {
        let store = store.clone();
        async move {
            let id = mailbox_id(&store, mailbox).await;
            Owner {
                id,
                address: mailbox,
                cookie: sign_in(web, mailbox).await,
                deep: cursor_at(&store, id, (count as i64) * 9 / 10).await,
                newest: cursor_at(&store, id, 0).await.id,
            }
        }
    };
    let big = owner(BIG, args.count).await;
    let small = owner(REFERENCE, REFERENCE_COUNT).await;
    let held = Held {
        store: store.clone(),
        quarantine,
        corpus,
        round: Cell::new(0),
    };
    let all = measures(web, &store, &held, &big, &small);
    let mut times: Vec<(Vec<Duration>, Vec<Duration>)> =
        all.iter().map(|_| Default::default()).collect();
    for round in 0..args.runs + 3 {
        for (m, t) in all.iter().zip(times.iter_mut()) {
            let b = (m.big)().await;
            let r = (m.reference)().await;
            if round >= 3 {
                t.0.push(b);
                t.1.push(r);
            }
        }
    }
    println!(
        "\n### {backend}: {} held (big) vs {REFERENCE_COUNT} (reference), median of {} runs (p90)\n",
        args.count, args.runs
    );
    println!("filled in {:.0} s\n", fill_time.as_secs_f64());
    println!("| measurement | big | reference | ratio |");
    println!("|---|---|---|---|");
    for (m, (mut b, mut r)) in all.iter().zip(times) {
        b.sort();
        r.sort();
        let (mb, mr) = (percentile(&b, 0.5), percentile(&r, 0.5));
        println!(
            "| {} | {} ({}) | {} ({}) | {:.2}x |",
            m.name,
            ms(mb),
            ms(percentile(&b, 0.9)),
            ms(mr),
            ms(percentile(&r, 0.9)),
            mb.as_secs_f64() / mr.as_secs_f64()
        );
    }
    explain(&store, postgres, &big, "big").await;
    explain(&store, postgres, &small, "reference").await;
    drop(all);
    let _ = stop.send(());
    let _ = server.await;
    store.close().await;
    if postgres {
        drop_database(&url).await;
    }
}

/// Drops the bench's own PostgreSQL database (from `PG_TEST_URL`'s).
async fn drop_database(url: &str) {
    use sqlx::Connection;
    let name = url
        .rsplit('/')
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("");
    assert!(
        name.starts_with("boxtrap_t_"),
        "not the bench's database: {url}"
    );
    let base = std::env::var("PG_TEST_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let args = args();
    for b in &args.backends {
        run_backend(b, &args).await;
    }
}
