//! Files, keys and logs under attack (issue 10, item 5), each attack as
//! its test: a local user reading the data directory, a token forged with a
//! key that was rotated away or revoked or past its challenge's expiry, a
//! Message-ID that drives the admin's terminal, a database password in
//! output and errors, and a verify page that tells which challenge ids exist.

use crate::support::*;
use boxtrap::challenge::issue::{revoke_key, rotate_key};
use boxtrap::challenge::token::{self, Claims, Keyring, TokenKey};
use boxtrap::clock::{Clock, Timestamp};
use boxtrap::config::{ChallengeConfig, Config};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALICE: &str = "alice@example.test";
const DAY: i64 = 86400;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// --- The real binary under a umask ------------------------------------------

/// `boxtrap --config CONFIG ARGS...` run by `sh` after `umask UMASK`, with no
/// `BOXTRAP_*` variables inherited.
fn under_umask(umask: &str, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_boxtrap"))
        .arg("--config")
        .arg(config)
        .args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BOXTRAP_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

fn admin(umask: &str, config: &Path, args: &[&str]) -> CmdOutput {
    let out = run_command(under_umask(umask, config, args), None);
    assert!(
        out.success,
        "boxtrap {args:?} (umask {umask}) failed: {out:#?}"
    );
    out
}

/// A config whose data directory boxtrap has to create itself; outbound
/// mail goes to the file outbox, checked every second.
fn config_in(dir: &Path) -> PathBuf {
    let path = dir.join("boxtrap.toml");
    let text = format!(
        "data_dir = {:?}\nhostname = \"mx.example.test\"\n\
         [smtp]\nlisten = [\"127.0.0.1:0\"]\n\
         [web]\nlisten = \"127.0.0.1:0\"\n\
         [outbound]\nrun_interval = \"1s\"\n\
         [dns]\nservers = [\"{}\"]\n[auth]\nchallenge_unauthenticated = true\n",
        dir.join("data").display().to_string(),
        TestDns::shared().addr
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `boxtrap serve` started under a umask; SIGKILLed if the test fails.
struct Served {
    child: Option<std::process::Child>,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Served {
    fn start(umask: &str, config: &Path) -> Served {
        use std::io::BufRead;
        let mut cmd = under_umask(umask, config, &["serve"]);
        cmd.env("BOXTRAP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start boxtrap serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                let mut l = shared.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut served = Served {
            child: Some(child),
            addr: "127.0.0.1:1".parse().unwrap(),
            log,
        };
        served.addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start; its log:\n{}", served.log()));
        served
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and wait for the graceful stop. serve takes SIGTERM once it
    /// is serving (after it logs `web listening`); before, it would die of it.
    fn stop(mut self) {
        for _ in 0..600 {
            if self.log().contains("web listening") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn send_to(addr: std::net::SocketAddr, from: &str, to: &str, body: &str) {
    let mut s = Smtp::connect(addr).await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd(&format!("MAIL FROM:<{from}>"), "250").await;
    s.cmd(&format!("RCPT TO:<{to}>"), "250").await;
    s.cmd("DATA", "354").await;
    let reply = s.data(body).await;
    assert!(reply.starts_with("250"), "{reply}");
    s.cmd("QUIT", "221").await;
}

fn letter(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello.\r\n"
    )
}

/// What a local user could read before: with umask 000 the data directory
/// was 0777, the database (keys, password hashes, held mail) and its WAL
/// 0644, the logs and the outbox's live links 0666, the Maildir
/// directories 0777; with umask 022, 0755 and 0644.
async fn everything_written_is_private(umask: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let data = dir.path().join("data");
    // The admin commands come first and create the data directory, the
    // database and the logs.
    admin(umask, &config, &["domain", "add", "example.test"]);
    for m in [ALICE, "bob@example.test"] {
        admin(umask, &config, &["mailbox", "add", m, "--no-password"]);
    }
    admin(
        umask,
        &config,
        &["mailbox", "set", ALICE, "--challenge", "on"],
    );
    let server = Served::start(umask, &config);
    send_to(
        server.addr,
        "carol@example.org",
        "bob@example.test",
        &letter("carol@example.org", "bob@example.test", "plain"),
    )
    .await;
    send_to(
        server.addr,
        "dave@example.org",
        ALICE,
        &letter("dave@example.org", ALICE, "held"),
    )
    .await;
    let outbox = data.join("outbox");
    let mut eml = Vec::new();
    for _ in 0..300 {
        eml = messages_in(&outbox);
        if !eml.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        eml.len(),
        1,
        "the challenge reached the outbox; log:\n{}",
        server.log()
    );

    let db = data.join("boxtrap.db");
    let mut files: Vec<PathBuf> = vec![
        db.clone(),
        data.join("boxtrap.db-wal"),
        data.join("boxtrap.db-shm"),
        data.join("log/mainlog"),
        data.join("log/rejectlog"),
        outbox.join(&eml[0].0),
    ];
    let bob = data.join("mail/example.test/bob");
    let delivered = messages_in(&bob.join("new"));
    assert_eq!(delivered.len(), 1);
    files.push(bob.join("new").join(&delivered[0].0));
    let dirs = [
        data.clone(),
        data.join("log"),
        outbox.clone(),
        data.join("mail"),
        data.join("mail/example.test"),
        bob.clone(),
        bob.join("tmp"),
        bob.join("new"),
        bob.join("cur"),
    ];
    // Read while serve runs: the WAL and shared-memory files exist now.
    let modes: Vec<(String, u32)> = files
        .iter()
        .chain(&dirs)
        .map(|p| (p.display().to_string(), mode(p)))
        .collect();
    let log = server.log();
    server.stop();
    for (path, m) in &modes[..files.len()] {
        assert_eq!(*m, 0o600, "umask {umask}: {path} is {m:04o}");
    }
    for (path, m) in &modes[files.len()..] {
        assert_eq!(*m, 0o700, "umask {umask}: {path} is {m:04o}");
    }
    assert!(!log.contains("open to other users"), "{log}");
}

#[tokio::test]
async fn data_files_and_directories_are_private_under_umask_000() {
    everything_written_is_private("000").await;
}

#[tokio::test]
async fn data_files_and_directories_are_private_under_umask_022() {
    everything_written_is_private("022").await;
}

#[tokio::test]
async fn modes_found_wider_at_start_are_warned_about_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let data = dir.path().join("data");
    admin("022", &config, &["domain", "add", "example.test"]);
    // As an older boxtrap left them.
    let (db, mainlog) = (data.join("boxtrap.db"), data.join("log/mainlog"));
    chmod(&data, 0o755);
    chmod(&db, 0o644);
    chmod(&mainlog, 0o644);
    // A group the admin trusts is not warned about.
    chmod(&data.join("log/rejectlog"), 0o640);

    let checked = admin("022", &config, &["check-config"]).stdout;
    let server = Served::start("022", &config);
    let log = server.log();
    server.stop();
    for (path, m) in [(&data, "0755"), (&db, "0644"), (&mainlog, "0644")] {
        let kind = if path.is_dir() { "directory" } else { "file" };
        let warning = format!(
            "{kind} {} has mode {m}, open to other users",
            path.display()
        );
        assert!(log.contains(&warning), "serve warns: {warning}\n{log}");
        assert!(
            checked.contains(&format!("# warning: {warning}")),
            "check-config warns: {warning}\n{checked}"
        );
    }
    assert!(!log.contains("rejectlog has mode"), "{log}");
    assert_eq!(
        (mode(&data), mode(&db), mode(&mainlog)),
        (0o755, 0o644, 0o644),
        "modes an admin set are kept"
    );
}

// --- Keys -------------------------------------------------------------------

/// The `[challenge]` settings `key rotate` reads (its sweep interval).
fn challenge_config() -> ChallengeConfig {
    Config::load(None, Vec::new()).unwrap().challenge
}

/// What a local user who copied the database holds: key `id`'s secret.
async fn stolen_key(app: &TestApp, id: u32) -> TokenKey {
    let keys = app.store.token_keys().await.unwrap();
    TokenKey::from_hex(id, &keys.get(id).unwrap().hex).unwrap()
}

/// A token for `challenge_id` (to `sender`, for alice) signed with `key`.
fn forge(key: &TokenKey, challenge_id: i64, sender: &str, expires: Timestamp) -> String {
    token::issue(
        &Keyring::new(key.clone(), vec![]),
        &Claims {
            mailbox: ALICE,
            sender,
            challenge_id,
            expires,
        },
    )
}

/// `from` writes to alice and is challenged; the challenge's token.
async fn challenged(app: &TestApp, from: &str, subject: &str) -> String {
    app.send(from, &[ALICE], &letter(from, ALICE, subject))
        .await;
    app.outbound.run_once().await.unwrap();
    let mut got = app.challenges_to(from);
    assert_eq!(got.len(), 1, "one challenge to {from}");
    got.remove(0).token
}

async fn nothing_released(app: &TestApp, held: usize) {
    assert!(app.messages(ALICE).is_empty(), "nothing delivered to alice");
    assert_eq!(app.held().await.len(), held, "still held");
    assert!(app.allow_list(ALICE).await.is_empty(), "nobody allowed");
}

/// Before: `key rotate` kept key 1 verifying forever, and a token forged
/// with a copy of it released held mail (200, delivered).
#[tokio::test]
async fn a_token_forged_with_a_retired_key_past_its_validity_releases_nothing() {
    let app = TestApp::spawn().await;
    app.challenge_on(ALICE).await;
    let old = stolen_key(&app, 1).await;
    let now = Timestamp::from_secs(T0);
    let (new, retired) = rotate_key(&app.store, &challenge_config(), now)
        .await
        .unwrap();
    let (_, valid_until) = retired.unwrap();
    assert_eq!(new, 2);
    // Alice keeps mail 15 days: key 1's tokens are all gone by then.
    assert!(valid_until >= now.plus_secs(15 * DAY), "{valid_until:?}");
    assert!(valid_until <= now.plus_secs(16 * DAY), "{valid_until:?}");

    // Past that, serve has long picked up key 2 (the sweeper reloads).
    app.clock.set(Timestamp(valid_until.0 + 1_000_000));
    app.quarantine.sweep_once().await.unwrap();
    let genuine = challenged(&app, "carol@example.org", "lunch").await;
    let parts = token::decode(&genuine).unwrap();
    assert_eq!(parts.key_id, 2, "new challenges are signed with key 2");

    let later = app.clock.now().plus_secs(30 * DAY);
    let forged = forge(&old, parts.challenge_id, "carol@example.org", later);
    for method in ["GET", "POST"] {
        let (status, page) = app.http(method, &format!("/verify/{forged}")).await;
        assert_eq!(status, 404, "{method}: {page}");
        assert!(page.contains("This link is not valid"), "{page}");
    }
    nothing_released(&app, 1).await;
    // The genuine link works, so only the key was refused.
    let (status, _) = app.http("GET", &format!("/verify/{genuine}")).await;
    assert_eq!(status, 200);
}

/// Before: there was no `key retire`; the only remedy was a new key, and
/// the old one kept verifying forever.
#[tokio::test]
async fn key_retire_revokes_a_key_at_once() {
    let app = TestApp::spawn().await;
    app.challenge_on(ALICE).await;
    let genuine = challenged(&app, "bob@example.org", "hi").await;
    let id = token::decode(&genuine).unwrap().challenge_id;
    let old = stolen_key(&app, 1).await;
    let now = Timestamp::from_secs(T0);
    rotate_key(&app.store, &challenge_config(), now)
        .await
        .unwrap();
    let forged = forge(&old, id, "bob@example.org", now.plus_secs(DAY));
    // Within its validity a retired key still verifies: this is the leak.
    let (status, _) = app.http("GET", &format!("/verify/{forged}")).await;
    assert_eq!(status, 200, "a retired key verifies until revoked");

    assert!(revoke_key(&app.store, 1, now).await.unwrap());
    for token in [&forged, &genuine] {
        for method in ["GET", "POST"] {
            let (status, page) = app.http(method, &format!("/verify/{token}")).await;
            assert_eq!(status, 404, "{method} after revocation: {page}");
        }
    }
    nothing_released(&app, 1).await;
}

/// Before: a token was good until the expiry it carried, so one forged with
/// a far expiry released mail whose challenge had expired (the sweeper not
/// having run yet).
#[tokio::test]
async fn a_token_never_outlives_its_challenges_stored_expiry() {
    let app = TestApp::spawn().await;
    app.challenge_on(ALICE).await;
    let genuine = challenged(&app, "bob@example.org", "hi").await;
    let id = token::decode(&genuine).unwrap().challenge_id;
    let key = stolen_key(&app, 1).await;
    let forged = forge(
        &key,
        id,
        "bob@example.org",
        Timestamp::from_secs(T0 + 365 * DAY),
    );
    let (status, _) = app.http("GET", &format!("/verify/{forged}")).await;
    assert_eq!(status, 200, "its signature is good");

    // Alice keeps mail 15 days; the sweeper has not run.
    app.clock.advance_secs(15 * DAY + 1);
    for token in [&forged, &genuine] {
        let (status, page) = app.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 410, "{page}");
        assert!(page.contains("expired"), "{page}");
    }
    nothing_released(&app, 1).await;
}

/// The admin's view of the same: states in `key list`, `key retire`
/// refusing the current key and an unknown one.
#[test]
fn key_list_shows_each_keys_state_and_retire_refuses_what_it_cannot_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let run = |args: &[&str]| run_command(under_umask("022", &config, args), None);
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.success, "{args:?}: {out:#?}");
        out.stdout
    };
    assert_eq!(ok(&["key", "list"]), "1  current\n");
    let out = ok(&["key", "rotate"]);
    assert!(out.starts_with("token key 2 is now current\n"), "{out}");
    assert!(
        out.contains("token key 1 is retired: it verifies the tokens it signed until"),
        "{out}"
    );
    let listed = ok(&["key", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].starts_with("1  retired  ") && lines[0].contains(", verifies its tokens until "),
        "{listed}"
    );
    assert_eq!(lines[1], "2  current");

    for (args, says) in [
        (
            &["key", "retire", "2"][..],
            "token key 2 is the current one",
        ),
        (&["key", "retire", "9"], "no such token key: 9"),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(1), "{out:#?}");
        assert!(out.stderr.contains(says), "{out:#?}");
    }
    assert!(ok(&["key", "retire", "1"]).starts_with("token key 1 is revoked"));
    assert_eq!(
        ok(&["key", "retire", "1"]),
        "token key 1 was already revoked\n"
    );
    let listed = ok(&["key", "list"]);
    assert!(listed.starts_with("1  revoked  "), "{listed}");
    assert!(
        listed
            .split_whitespace()
            .all(|w| w.len() < 32 || !w.chars().all(|c| c.is_ascii_hexdigit())),
        "ids, states and times, never a secret: {listed}"
    );
}

// --- The verify page --------------------------------------------------------

/// Before: 404 "does not belong to any waiting message" for an id that does
/// not exist, 403 "altered" for a bad tag on one that does.
#[tokio::test]
async fn the_verify_page_answers_an_unknown_id_and_a_tampered_token_alike() {
    let app = TestApp::spawn().await;
    app.challenge_on(ALICE).await;
    let genuine = challenged(&app, "bob@example.org", "hi").await;
    let id = token::decode(&genuine).unwrap().challenge_id;
    let mut t: Vec<char> = genuine.chars().collect();
    t[40] = if t[40] == 'A' { 'B' } else { 'A' };
    let tampered: String = t.into_iter().collect();
    let key = stolen_key(&app, 1).await;
    let expires = Timestamp::from_secs(T0 + DAY);
    let stranger = TokenKey::generate(1);
    let cases = [
        ("tampered tag, real id", tampered),
        (
            "real key, unknown id",
            forge(&key, id + 1000, "bob@example.org", expires),
        ),
        (
            "wrong key, real id",
            forge(&stranger, id, "bob@example.org", expires),
        ),
        (
            "wrong key, unknown id",
            forge(&stranger, 999_999, "bob@example.org", expires),
        ),
        (
            "unknown key id, real id",
            forge(&TokenKey::generate(77), id, "bob@example.org", expires),
        ),
    ];
    for method in ["GET", "POST"] {
        let mut answers = Vec::new();
        for (what, token) in &cases {
            let (status, page) = app.http(method, &format!("/verify/{token}")).await;
            assert_eq!(status, 404, "{method} {what}: {page}");
            answers.push((what, page));
        }
        for (what, page) in &answers[1..] {
            assert_eq!(
                *page, answers[0].1,
                "{method}: {what} and {} differ",
                answers[0].0
            );
        }
    }
    nothing_released(&app, 1).await;
}

// --- The main log -----------------------------------------------------------

/// Before: the `<=` line carried the raw bytes, so `tail mainlog` cleared
/// the admin's screen (ESC[2J) and could retitle the terminal.
#[tokio::test]
async fn a_message_id_with_terminal_escapes_reaches_the_mainlog_escaped() {
    let app = TestApp::spawn().await;
    let body = "From: bob@example.org\r\nTo: alice@example.test\r\n\
                Message-ID: <\u{1b}[2J\u{1b}]0;owned\u{7}@evil.example>\r\nSubject: hi\r\n\r\nHello.\r\n";
    let id = app.send("bob@example.org", &[ALICE], body).await;
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<nobody@example.test>", "550").await;
    s.cmd("QUIT", "221").await;
    let main = app.mainlog();
    let arrival = main
        .lines()
        .find(|l| l.contains(&format!("{id} <= ")))
        .unwrap_or_else(|| panic!("{main}"));
    assert!(
        arrival.ends_with(" id=<\\033[2J\\033]0;owned\\007@evil.example>"),
        "{arrival}"
    );
    for log in [main, app.rejectlog()] {
        assert!(
            !log.chars().any(|c| c.is_control() && c != '\n'),
            "no control character but the line ends: {log:?}"
        );
    }
}

// --- Database passwords -----------------------------------------------------

fn config_with_url(dir: &Path, url: &str) -> PathBuf {
    write_test_config(dir, url, "")
}

/// Before: `check-config` printed `?password=hunter2` as it was, and an
/// error opening the database repeated the whole URL; sqlx logged the
/// value of `sslpassword` (a parameter it does not read) at every attempt.
#[test]
fn a_database_password_is_redacted_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    for (url, shown) in [
        (
            "postgres://boxtrap@127.0.0.1:1/db?password=hunter2",
            "postgres://boxtrap@127.0.0.1:1/db?password=***",
        ),
        (
            "postgres://boxtrap@127.0.0.1:1/db?sslmode=disable&password=hunter2",
            "postgres://boxtrap@127.0.0.1:1/db?sslmode=disable&password=***",
        ),
        (
            "postgres://boxtrap:hunter2@127.0.0.1:1/db",
            "postgres://boxtrap:***@127.0.0.1:1/db",
        ),
    ] {
        let out = run_boxtrap(&config_with_url(dir.path(), url), &["check-config"], None);
        assert!(out.success, "{out:#?}");
        assert!(out.stdout.contains(&format!("url = {shown:?}")), "{out:#?}");
        assert!(!format!("{out:?}").contains("hunter2"), "{out:#?}");
    }

    // A parameter the driver does not read is refused by name: sqlx would
    // log its value.
    let config = config_with_url(
        dir.path(),
        "postgres://boxtrap@127.0.0.1:1/db?sslpassword=swordfish",
    );
    for args in [&["check-config"][..], &["migrate"]] {
        let out = run_boxtrap(&config, args, None);
        assert_eq!(out.code, Some(1), "{out:#?}");
        assert!(
            out.stderr.contains("\"sslpassword\" is not supported"),
            "{out:#?}"
        );
        assert!(!format!("{out:?}").contains("swordfish"), "{out:#?}");
    }

    // A TOML error quotes the line it stopped at.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[database]\nurl = postgres://u:hunter2@h/db\n").unwrap();
    let out = run_boxtrap(&bad, &["check-config"], None);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(!format!("{out:?}").contains("hunter2"), "{out:#?}");
}

/// The server refuses the password: the error names the URL, redacted,
/// and the cause, never the password.
#[test]
fn a_connection_error_never_prints_the_password() {
    let server = std::env::var("PG_TEST_URL").expect("PG_TEST_URL must name a PostgreSQL server");
    let rest = server.split_once("://").unwrap().1;
    let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let user = rest
        .rsplit_once('@')
        .map_or("boxtrap", |(u, _)| u.split(':').next().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://{user}@{host_and_db}?password=not-the-password-hunter2");
    let out = run_boxtrap(&config_with_url(dir.path(), &url), &["migrate"], None);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("cannot open database postgres://"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("password=***"), "{out:#?}");
    assert!(
        out.stderr.contains("password authentication failed"),
        "{out:#?}"
    );
    assert!(!format!("{out:?}").contains("hunter2"), "{out:#?}");
}
