//! Tests of the spam score: GTUBE, a real spamd (Debian's, started by
//! [`TestSpamd`]) on real corpus mail, fake peers that refuse, stall or
//! answer garbage, the headers, the summary and the config.

use super::testing::{TestSpamd, free_port};
use super::*;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The exchange with the real spamd: scanning takes well under a second,
/// but the machine may be busy.
const REAL_TIMEOUT: Duration = Duration::from_secs(60);

fn gtube_message() -> Vec<u8> {
    let mut m = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: test\r\n\r\nThis is \
                  the GTUBE:\r\n"
        .to_vec();
    m.extend_from_slice(GTUBE);
    m.extend_from_slice(b"\r\n");
    m
}

const PLAIN: &[u8] =
    b"From: a@example.test\r\nTo: b@example.test\r\nSubject: lunch\r\n\r\nSee you at noon.\r\n";

/// The shared corpus (see tests/it/corpus.rs): `SPAMASSASSIN_CORPUS`, else
/// beside the checkout, else the machine's copy. Missing fails the test.
fn corpus_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/spamassassin");
    let dir = match std::env::var_os("SPAMASSASSIN_CORPUS") {
        Some(d) => PathBuf::from(d),
        None if !beside.is_dir() => PathBuf::from("/work/shared/corpus/spamassassin"),
        None => beside,
    };
    assert!(
        dir.is_dir(),
        "the corpus is missing: {} is not a directory (set SPAMASSASSIN_CORPUS)",
        dir.display()
    );
    dir
}

/// The first message (by name) of a corpus folder, as it would arrive:
/// without its mbox `From ` line, with CRLF line ends.
fn first_corpus_message(folder: &str) -> (String, Vec<u8>) {
    let dir = corpus_dir().join(folder);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let name = names.first().expect("an empty corpus folder").clone();
    let raw = std::fs::read(dir.join(&name)).unwrap();
    let raw = match raw.strip_prefix(b"From ") {
        Some(rest) => &rest[rest.iter().position(|&b| b == b'\n').unwrap() + 1..],
        None => &raw[..],
    };
    let mut crlf = Vec::with_capacity(raw.len() + raw.len() / 20);
    for &b in raw {
        if b == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    (format!("{folder}/{name}"), crlf)
}

fn verdict(score: f64, required: f64, rules: &[(&str, f64)]) -> SpamVerdict {
    SpamVerdict {
        score,
        required,
        is_spam: score >= required,
        rules: rules.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        source: SpamSource::Spamd,
    }
}

// --- GTUBE, without spamd ----------------------------------------------

#[tokio::test]
async fn gtube_scores_1000_without_spamd() {
    let check = SpamScorer::gtube_only().check(&gtube_message()).await;
    let SpamCheck::Scored(v) = check else {
        panic!("{check:?}")
    };
    assert_eq!(v, SpamVerdict::gtube());
    assert_eq!(v.score, 1000.0);
    assert_eq!(v.source, SpamSource::Gtube);
    assert_eq!(v.rules, [("GTUBE".to_string(), 1000.0)]);

    // With a spamd configured that is not there: not asked at all.
    let closed = SpamdClient::new(
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        REAL_TIMEOUT,
    );
    let check = SpamScorer::with_client(closed)
        .check(&gtube_message())
        .await;
    assert_eq!(check.verdict().map(|v| v.source), Some(SpamSource::Gtube));
}

#[tokio::test]
async fn without_spamd_a_message_is_skipped() {
    let check = SpamScorer::gtube_only().check(PLAIN).await;
    assert!(
        matches!(check, SpamCheck::Skipped(SkipReason::NoSpamd)),
        "{check:?}"
    );
    assert_eq!(
        check.summary(),
        "spam score not checked: no spamd configured ([spamd] address is empty)"
    );
}

#[test]
fn gtube_is_found_anywhere_and_only_whole() {
    assert!(contains_gtube(GTUBE));
    assert!(contains_gtube(&gtube_message()));
    let mut header = b"Subject: ".to_vec();
    header.extend_from_slice(GTUBE);
    assert!(contains_gtube(&header));
    assert!(!contains_gtube(&GTUBE[..GTUBE.len() - 1]));
    assert!(!contains_gtube(&GTUBE[1..]));
    assert!(!contains_gtube(PLAIN));
    assert!(!contains_gtube(b""));
    let mut broken = GTUBE.to_vec();
    broken[30] = b'x';
    assert!(!contains_gtube(&broken));
}

// --- a real spamd ------------------------------------------------------

#[tokio::test]
async fn a_real_spamd_scores_a_corpus_spam_high_and_a_ham_low() {
    let spamd = TestSpamd::shared();
    let scorer = SpamScorer::with_client(spamd.client(REAL_TIMEOUT));
    spamd.client(REAL_TIMEOUT).ping().await.unwrap();

    let (name, spam) = first_corpus_message("spam-1");
    let check = scorer.check(&spam).await;
    let Some(v) = check.verdict() else {
        panic!("{name}: {check:?}\nspamd log:\n{}", spamd.log())
    };
    assert_eq!(v.source, SpamSource::Spamd);
    assert_eq!(v.required, 5.0, "{name}: {v:?}");
    assert!(v.is_spam && v.score >= 7.0, "{name} scored low: {v:?}");
    // The rules add up to the score (each printed to one decimal).
    let sum: f64 = v.rules.iter().map(|(_, p)| p).sum();
    assert!(
        (sum - v.score).abs() <= 0.05 * v.rules.len() as f64 + 0.05,
        "{name}: rules add up to {sum}, score {}: {v:?}",
        v.score
    );
    assert!(v.rules.len() >= 3, "{name}: {v:?}");
    assert!(
        v.summary()
            .starts_with(&format!("spam score {} (", points(v.score)))
    );

    let (name, ham) = first_corpus_message("easy-ham-1");
    let check = scorer.check(&ham).await;
    let Some(v) = check.verdict() else {
        panic!("{name}: {check:?}\nspamd log:\n{}", spamd.log())
    };
    assert!(!v.is_spam && v.score < 2.0, "{name} scored high: {v:?}");
}

#[tokio::test]
async fn a_real_spamd_scores_gtube_and_sees_the_user_header() {
    let spamd = TestSpamd::shared();
    let mut client = spamd.client(REAL_TIMEOUT);
    client.user = Some("boxtrap-test".into());
    let v = client.report(&gtube_message()).await.unwrap();
    assert!(v.is_spam && v.score >= 990.0, "{v:?}");
    assert!(
        v.rules.iter().any(|(n, p)| n == "GTUBE" && *p == 1000.0),
        "{v:?}"
    );
    assert!(spamd.log().contains("boxtrap-test"), "{}", spamd.log());
}

// --- spamd missing, stalled or confused ----------------------------------

#[tokio::test]
async fn spamd_stopped_is_unavailable_at_once() {
    let spamd = TestSpamd::start();
    let client = spamd.client(Duration::from_secs(30));
    client.ping().await.unwrap();
    drop(spamd);
    let started = Instant::now();
    let check = SpamScorer::with_client(client).check(PLAIN).await;
    assert!(
        matches!(check, SpamCheck::Unavailable(SpamdError::Connect { .. })),
        "{check:?}"
    );
    // Refused at once, not after the 30 s timeout.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        check
            .summary()
            .starts_with("spam score not checked: cannot connect to spamd at 127.0.0.1:"),
        "{}",
        check.summary()
    );
}

#[tokio::test(start_paused = true)]
async fn a_spamd_that_never_answers_is_unavailable_after_the_timeout() {
    // Connections are accepted (by the kernel) and never answered.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = SpamdClient::new(listener.local_addr().unwrap(), Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    let check = client.check(PLAIN).await;
    let SpamCheck::Unavailable(SpamdError::Timeout { after, .. }) = check else {
        panic!("{check:?}")
    };
    assert_eq!(after, Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(11));
    assert!(
        check_text(&client)
            .await
            .contains("did not answer within 10s")
    );
}

async fn check_text(client: &SpamdClient) -> String {
    client.check(PLAIN).await.summary()
}

/// A fake spamd answering each connection `answer` after reading the
/// request; returns its address and the requests it read.
async fn fake_spamd(
    answer: Vec<u8>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            conn.read_to_end(&mut request).await.unwrap();
            let _ = tx.send(request);
            let _ = conn.write_all(&answer).await;
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn the_request_is_spamc_1_5_with_length_user_and_message() {
    let (addr, mut requests) = fake_spamd(
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 1.2 / 5.0\r\n\r\n".to_vec(),
    )
    .await;
    let mut client = SpamdClient::new(addr, Duration::from_secs(30));
    client.user = Some("alice".into());
    let check = client.check(PLAIN).await;
    assert_eq!(
        check.verdict().map(|v| (v.score, v.is_spam)),
        Some((1.2, false))
    );
    let mut expected = format!(
        "REPORT SPAMC/1.5\r\nContent-length: {}\r\nUser: alice\r\n\r\n",
        PLAIN.len()
    )
    .into_bytes();
    expected.extend_from_slice(PLAIN);
    assert_eq!(
        String::from_utf8(requests.recv().await.unwrap()).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[tokio::test]
async fn garbage_and_refusals_are_unavailable_not_errors() {
    for (answer, expect) in [
        (&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], "answered garbage"),
        (b"", "answered garbage: an empty answer"),
        (
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 2\r\n\r\nok",
            "answered garbage: no Spam: header",
        ),
        (
            b"SPAMD/1.0 76 Bad header line: (EOF)\r\n",
            "refused the message: code 76 Bad header line: (EOF)",
        ),
    ] {
        let (addr, _requests) = fake_spamd(answer.to_vec()).await;
        let check = SpamdClient::new(addr, Duration::from_secs(30))
            .check(PLAIN)
            .await;
        assert!(
            matches!(check, SpamCheck::Unavailable(_)),
            "{answer:?}: {check:?}"
        );
        assert!(check.summary().contains(expect), "{}", check.summary());
    }
    // An endless answer is cut off.
    let (addr, _requests) = fake_spamd(vec![b'x'; spamd::MAX_ANSWER + 10]).await;
    let check = SpamdClient::new(addr, Duration::from_secs(30))
        .check(PLAIN)
        .await;
    assert!(
        check.summary().contains("an answer longer than"),
        "{}",
        check.summary()
    );
}

#[tokio::test]
async fn a_message_over_max_size_is_skipped_without_connecting() {
    // Nothing listens there: asking would be Unavailable.
    let mut client = SpamdClient::new(
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        Duration::from_secs(30),
    );
    client.max_size = PLAIN.len() as u64 - 1;
    let check = client.check(PLAIN).await;
    assert_eq!(
        format!("{check:?}"),
        format!(
            "Skipped(TooBig {{ size: {}, max_size: {} }})",
            PLAIN.len(),
            PLAIN.len() - 1
        )
    );
    assert_eq!(
        check.summary(),
        format!(
            "spam score not checked: message of {} bytes is larger than [spamd] max_size \
             ({} bytes)",
            PLAIN.len(),
            PLAIN.len() - 1
        )
    );
    // At the limit it is sent (and, nothing listening, unavailable).
    client.max_size = PLAIN.len() as u64;
    assert!(matches!(
        client.check(PLAIN).await,
        SpamCheck::Unavailable(SpamdError::Connect { .. })
    ));
}

// --- headers and summary ---------------------------------------------------

#[test]
fn headers_use_spamassassins_wording() {
    let v = verdict(
        7.3,
        5.0,
        &[("BAYES_99", 3.5), ("URIBL_BLOCK", 2.0), ("RDNS", 1.8)],
    );
    assert_eq!(
        v.header_lines(),
        "X-Spam-Score: 7.3\r\n\
         X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99,URIBL_BLOCK,RDNS\r\n"
    );
    // Under the threshold it is "No", whatever the rules.
    let v = verdict(4.9, 5.0, &[("BAYES_99", 3.5), ("URIBL_BLOCK", 1.4)]);
    assert_eq!(
        v.header_lines(),
        "X-Spam-Score: 4.9\r\n\
         X-Spam-Status: No, score=4.9 required=5.0 tests=BAYES_99,URIBL_BLOCK\r\n"
    );
    let v = verdict(-0.04, 5.0, &[]);
    assert_eq!(
        v.header_lines(),
        "X-Spam-Score: 0.0\r\nX-Spam-Status: No, score=0.0 required=5.0 tests=none\r\n"
    );
    assert_eq!(
        SpamVerdict::gtube().header_lines(),
        "X-Spam-Score: 1000.0\r\nX-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE\r\n"
    );
}

#[test]
fn a_long_tests_list_is_folded_after_a_comma() {
    let names = [
        "FSL_HELO_NON_FQDN_1",
        "INVALID_DATE_TZ_ABSURD",
        "FREEMAIL_ENVFROM_END_DIGIT",
        "FREEMAIL_FROM",
        "HTML_MESSAGE",
        "RDNS_NONE",
    ];
    let rules: Vec<(&str, f64)> = names.iter().map(|n| (*n, 1.0)).collect();
    let h = verdict(6.0, 5.0, &rules).header_lines();
    assert_eq!(
        h,
        "X-Spam-Score: 6.0\r\n\
         X-Spam-Status: Yes, score=6.0 required=5.0 tests=FSL_HELO_NON_FQDN_1,\r\n\
         \tINVALID_DATE_TZ_ABSURD,FREEMAIL_ENVFROM_END_DIGIT,FREEMAIL_FROM,HTML_MESSAGE,\r\n\
         \tRDNS_NONE\r\n"
    );
    assert!(h.split("\r\n").all(|l| l.len() <= 78), "{h}");
}

#[test]
fn the_summary_names_the_rules_worth_most() {
    let v = verdict(
        7.3,
        5.0,
        &[
            ("NO_RELAYS", -0.0),
            ("URIBL_BLOCK", 2.0),
            ("BAYES_99", 3.5),
            ("HTML_MESSAGE", 0.001),
            ("DKIM_VALID", -0.1),
            ("RDNS_NONE", 1.3),
            ("MIME_HTML_ONLY", 0.1),
            ("FREEMAIL_FROM", 0.5),
        ],
    );
    assert_eq!(
        v.summary(),
        "spam score 7.3 (BAYES_99 3.5, URIBL_BLOCK 2.0, RDNS_NONE 1.3, FREEMAIL_FROM 0.5, \
         DKIM_VALID -0.1, ...)"
    );
    assert_eq!(
        verdict(1.5, 5.0, &[("A", 1.0), ("B", 0.5)]).summary(),
        "spam score 1.5 (A 1.0, B 0.5)"
    );
    assert_eq!(
        verdict(0.0, 5.0, &[("NO_RELAYS", -0.0)]).summary(),
        "spam score 0.0"
    );
    assert_eq!(
        SpamVerdict::gtube().summary(),
        "spam score 1000.0 (GTUBE 1000.0)"
    );
    assert_eq!(
        SpamCheck::Scored(SpamVerdict::gtube()).summary(),
        "spam score 1000.0 (GTUBE 1000.0)"
    );
}

#[test]
fn spam_headers_that_arrive_with_the_message_are_removed() {
    let message = b"Received: from a\r\n\
        X-Spam-Status: No, score=-5.0 required=5.0\r\n\
        \ttests=FORGED\r\n\
        Subject: hi\r\n\
        x-spam-flag: NO\r\n\
        X-Spam-Arrest: challenge\r\n\
        X-Spam-Score : -5\r\n\
        \r\n\
        X-Spam-Status: in the body stays\r\n";
    let stripped = strip_spam_headers(message);
    assert_eq!(
        String::from_utf8_lossy(&stripped),
        "Received: from a\r\n\
         Subject: hi\r\n\
         X-Spam-Arrest: challenge\r\n\
         \r\n\
         X-Spam-Status: in the body stays\r\n"
    );
    // LF line ends, a removed first field, a message without a body.
    assert_eq!(
        &*strip_spam_headers(b"X-Spam-Level: ***\n  more\nFrom: a\n"),
        b"From: a\n"
    );
    assert!(matches!(strip_spam_headers(PLAIN), Cow::Borrowed(_)));
    assert!(matches!(strip_spam_headers(b""), Cow::Borrowed(_)));
    // Our own lines are removed too: strip first, then add them.
    let mut ours = SpamVerdict::gtube().header_lines().into_bytes();
    ours.extend_from_slice(PLAIN);
    assert_eq!(&*strip_spam_headers(&ours), PLAIN);
}

// --- config -------------------------------------------------------------------

fn spamd_config(toml_text: &str) -> Result<SpamdConfig, String> {
    let c: SpamdConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    c.validate()?;
    Ok(c)
}

#[test]
fn spamd_config_defaults_and_addresses() {
    let c = SpamdConfig::default();
    assert_eq!(c.socket_addr(), Ok(None));
    assert_eq!(c.timeout.0, Duration::from_secs(10));
    assert_eq!(c.max_size.0, 512_000);
    assert!(SpamScorer::new(&c).unwrap().spamd().is_none());

    for (address, expect) in [
        ("127.0.0.1:783", "127.0.0.1:783"),
        ("127.0.0.1:11783", "127.0.0.1:11783"),
        ("127.0.0.1", "127.0.0.1:783"),
        ("[::1]:784", "[::1]:784"),
        ("::1", "[::1]:783"),
        ("[::1]", "[::1]:783"),
    ] {
        let c = spamd_config(&format!(
            "address = {address:?}\ntimeout = \"2s\"\nuser = \"a.b@c\"\n"
        ))
        .unwrap();
        let scorer = SpamScorer::new(&c).unwrap();
        let client = scorer.spamd().unwrap();
        assert_eq!(client.addr.to_string(), expect);
        assert_eq!(client.timeout, Duration::from_secs(2));
        assert_eq!(client.max_size, 512_000);
        assert_eq!(client.user.as_deref(), Some("a.b@c"));
    }
}

#[test]
fn bad_spam_config_is_refused_naming_the_key() {
    for (text, key) in [
        ("address = \"spamd.example.test:783\"", "spamd.address"),
        ("address = \"127.0.0.1:99999\"", "spamd.address"),
        ("timeout = \"0s\"", "spamd.timeout"),
        ("timeout = \"6m\"", "spamd.timeout"),
        ("max_size = 0", "spamd.max_size"),
        ("max_size = \"1G\"", "spamd.max_size"),
        ("user = \"a b\"", "spamd.user"),
        ("user = \"a\\r\\nSpam: True\"", "spamd.user"),
    ] {
        let e = spamd_config(text).unwrap_err();
        assert!(e.starts_with(&format!("{key}:")), "{text}: {e}");
        // SpamScorer::new checks the same.
        let c: SpamdConfig = toml::from_str(text).unwrap();
        assert_eq!(SpamScorer::new(&c).unwrap_err(), e);
    }
    let e = spamd_config("adress = \"127.0.0.1\"").unwrap_err();
    assert!(e.contains("adress"), "{e}");

    for bad in ["0.0", "-3.0", "nan", "inf"] {
        let c: SpamConfig = toml::from_str(&format!("reject_score = {bad}")).unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.starts_with("spam.reject_score:"), "{bad}: {e}");
    }
    let c = SpamConfig::default();
    assert_eq!(c.reject_score, 15.0);
    assert!(c.validate().is_ok());
    assert!(c.rejects(&verdict(15.0, 5.0, &[])));
    assert!(!c.rejects(&verdict(14.9, 5.0, &[])));
}

#[test]
fn the_example_config_sets_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let spamd: SpamdConfig = table["spamd"].clone().try_into().unwrap();
    assert_eq!(spamd, SpamdConfig::default());
    let spam: SpamConfig = table["spam"].clone().try_into().unwrap();
    assert_eq!(spam, SpamConfig::default());
}

#[test]
fn the_sections_load_from_the_file_and_the_environment() {
    use crate::config::Config;
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let c = Config::load(
        None,
        env(&[
            ("BOXTRAP_SPAMD_ADDRESS", "127.0.0.1:11783"),
            ("BOXTRAP_SPAMD_TIMEOUT", "3s"),
            ("BOXTRAP_SPAM_REJECT_SCORE", "20.5"),
        ]),
    )
    .unwrap();
    assert_eq!(c.spamd.address, "127.0.0.1:11783");
    assert_eq!(c.spamd.timeout.0, Duration::from_secs(3));
    assert_eq!(c.spam.reject_score, 20.5);

    let e = Config::load(None, env(&[("BOXTRAP_SPAMD_TIMEOUT", "0s")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("spamd.timeout"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("boxtrap.toml");
    std::fs::write(
        &path,
        "[spam]\nreject_score = 12.0\n[spamd]\naddress = \"[::1]\"\nmax_size = \"1M\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), Vec::new()).unwrap();
    assert_eq!(c.spam.reject_score, 12.0);
    let client = SpamScorer::new(&c.spamd).unwrap().spamd().cloned().unwrap();
    assert_eq!(client.addr.to_string(), "[::1]:783");
    assert_eq!(client.max_size, 1 << 20);

    std::fs::write(&path, "[spamd]\naddress = \"localhost:783\"\n").unwrap();
    let e = Config::load(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spamd.address") && e.contains("localhost:783"),
        "{e}"
    );
    std::fs::write(&path, "[spam]\nreject_scor = 10.0\n").unwrap();
    let e = Config::load(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("reject_scor"), "{e}");
}
