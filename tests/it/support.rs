//! The test harness: a boxtrap started in-process on port 0 with a temp
//! data directory, a manual clock and a recording transport, typed views of
//! what it holds and sends, and an SMTP client whose helpers read like the
//! dialogue.

use boxtrap::address::{Domain, EmailAddress};
use boxtrap::app::{App, AppDeps};
use boxtrap::clock::{ManualClock, Timestamp};
use boxtrap::config::{Config, HumanDuration, OutboundMode, TlsPolicy};
use boxtrap::delivery::Delivery;
use boxtrap::outbound::Outbound;
use boxtrap::outbound::transport::{Recording, Transport};
use boxtrap::policy::rules::{ListKind, SenderRule};
use boxtrap::quarantine::Quarantine;
use boxtrap::store::Store;
use boxtrap::store::held::{ActivityAction, HeldSummary};
use boxtrap::store::lists::RuleSource;
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// 2026-11-27 14:05:53 UTC.
pub const T0: i64 = 1_795_788_353;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Every bound SMTP address (several when `smtp.listen` has several).
    pub addrs: Vec<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub clock: ManualClock,
    pub delivery: Arc<Delivery>,
    pub quarantine: Arc<Quarantine>,
    pub outbound: Arc<Outbound>,
    pub web: SocketAddr,
    /// What the server handed to its transport; `None` when it sends
    /// through the transport its config names.
    recording: Option<Recording>,
    /// The test's own DNS server ([`TestApp::spawn_with_dns`]); `None`:
    /// the shared one where nothing is published.
    pub dns: Option<TestDns>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// SQLite, default limits, domain example.test with mailboxes alice and
    /// bob and the alias team -> alice, bob. Outbound mail is recorded, not
    /// sent: read it with [`TestApp::outbox`].
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Backend::Sqlite, |_| {}).await
    }

    pub async fn spawn_on(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::start(backend, tweak, Some(Recording::new())).await
    }

    /// As [`TestApp::spawn_with`], with a DNS server of its own publishing
    /// `records` ([`TestDns::start`]; see [`spf`]), and the server's
    /// default authentication policy: only authenticated senders are
    /// challenged.
    pub async fn spawn_with_dns(
        backend: Backend,
        records: &[String],
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dns = TestDns::start(records);
        let addr = dns.addr;
        let mut app = TestApp::start(
            backend,
            |c| {
                c.dns.servers = vec![addr];
                c.auth.challenge_unauthenticated = false;
                tweak(c);
            },
            Some(Recording::new()),
        )
        .await;
        app.dns = Some(dns);
        app
    }

    /// As [`TestApp::spawn_with`], but outbound mail leaves through the
    /// transport the config names (the file outbox by default, or a
    /// smarthost) instead of being recorded.
    pub async fn spawn_with_config_transport(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        TestApp::start(backend, tweak, None).await
    }

    async fn start(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        recording: Option<Recording>,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, Vec::new()).unwrap();
        config.data_dir = dir.path().to_owned();
        config.hostname = "mx.example.test".into();
        config.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.web.listen = "127.0.0.1:0".parse().unwrap();
        config.smtp.command_timeout = HumanDuration(Duration::from_secs(30));
        config.smtp.data_timeout = HumanDuration(Duration::from_secs(30));
        // The retry worker is driven by hand with run_queue_once().
        config.delivery.queue_run_interval = HumanDuration(Duration::from_secs(3600));
        // Likewise the outbound worker (run_once) and the sweeper (sweep_once).
        config.outbound.run_interval = HumanDuration(Duration::from_secs(3600));
        config.challenge.sweep_interval = HumanDuration(Duration::from_secs(3600));
        config.database.url = match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => boxtrap::testing::fresh_postgres_database().await,
        };
        // DNS on loopback only, where nothing is published: no sender is
        // authenticated, so challenges go out in the admin's relaxed mode
        // (unless SPF, DKIM or DMARC fails). Tests of authentication
        // start their own TestDns and turn the relaxed mode off.
        config.dns.servers = vec![TestDns::shared().addr];
        config.auth.challenge_unauthenticated = true;
        tweak(&mut config);
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let app = App::build(
            config.clone(),
            AppDeps {
                clock: Arc::new(clock.clone()),
                transport: recording.clone().map(|r| Arc::new(Transport::Recording(r))),
                ..AppDeps::default()
            },
        )
        .await
        .unwrap();
        let addr = app.smtp_addrs()[0];
        let addrs = app.smtp_addrs().to_vec();
        let store = app.store().clone();
        let delivery = app.delivery();
        let quarantine = app.quarantine();
        let outbound = app.outbound();
        let web = app.web_addr();
        let now = Timestamp::from_secs(T0);
        store
            .add_domain(&Domain::parse("example.test").unwrap(), now)
            .await
            .unwrap();
        for m in ["alice@example.test", "bob@example.test"] {
            store.add_mailbox(&addr_of(m), "", now).await.unwrap();
        }
        store
            .add_alias(
                &addr_of("team@example.test"),
                &[addr_of("alice@example.test"), addr_of("bob@example.test")],
                now,
            )
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            addrs,
            dir,
            store,
            clock,
            delivery,
            quarantine,
            outbound,
            web,
            recording,
            dns: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn smtp(&self) -> Smtp {
        Smtp::connect(self.addr).await
    }

    /// Starts the graceful shutdown; `stopped` waits for it to finish.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub async fn stopped(&mut self) {
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }

    pub fn maildir(&self, mailbox: &str) -> PathBuf {
        let (local, domain) = mailbox.split_once('@').unwrap();
        self.dir.path().join("mail").join(domain).join(local)
    }

    /// The files in a mailbox's `new/`, sorted by name, with their content.
    pub fn messages(&self, mailbox: &str) -> Vec<(String, Vec<u8>)> {
        messages_in(&self.maildir(mailbox).join("new"))
    }

    /// Adds a local domain and mailboxes (beyond the example.test seed).
    pub async fn add_mailboxes(&self, addresses: &[&str]) {
        let now = Timestamp::from_secs(T0);
        for a in addresses {
            let a = addr_of(a);
            if self.store.domain_id(a.domain()).await.unwrap().is_none() {
                self.store.add_domain(a.domain(), now).await.unwrap();
            }
            self.store.add_mailbox(&a, "", now).await.unwrap();
        }
    }

    /// Turns challenge-response on for a mailbox.
    pub async fn challenge_on(&self, mailbox: &str) {
        let mut s = self
            .store
            .mailbox_settings_by_address(mailbox)
            .await
            .unwrap();
        s.challenge_enabled = true;
        self.store.update_mailbox_settings(&s).await.unwrap();
    }

    /// An HTTP request to the web listener: (status, body).
    pub async fn http(&self, method: &str, path: &str) -> (u16, String) {
        http(self.web, method, path).await
    }

    /// Every mail the server handed to its transport, oldest first.
    pub fn outbox(&self) -> Vec<OutMail> {
        let recording = self.recording.as_ref().expect(
            "this TestApp sends through its configured transport; read what reached the peer",
        );
        recording
            .sent()
            .into_iter()
            .map(|s| OutMail::parse(s.env_from, s.rcpt, &s.data))
            .collect()
    }

    /// The challenges sent to `rcpt`, oldest first.
    pub fn challenges_to(&self, rcpt: &str) -> Vec<ChallengeMail> {
        self.outbox()
            .into_iter()
            .filter(|m| m.rcpt == rcpt)
            .filter_map(OutMail::challenge)
            .collect()
    }

    /// The challenges delivered into one of this server's mailboxes (when
    /// it is another server's smarthost), oldest first.
    pub fn challenges_in(&self, mailbox: &str) -> Vec<ChallengeMail> {
        self.messages(mailbox)
            .iter()
            .filter_map(|(_, data)| OutMail::delivered(data).challenge())
            .collect()
    }

    /// Every held message, newest first.
    pub async fn held(&self) -> Vec<HeldSummary> {
        self.store.list_held(None, None).await.unwrap()
    }

    pub async fn mailbox_id(&self, mailbox: &str) -> i64 {
        let settings = self.store.mailbox_settings_by_address(mailbox).await;
        settings.unwrap().id
    }

    /// What a mailbox's activity log recorded, newest first.
    pub async fn activity(&self, mailbox: &str) -> Vec<ActivityAction> {
        let id = self.mailbox_id(mailbox).await;
        let lines = self.store.activity(id, 100).await.unwrap();
        lines.into_iter().map(|a| a.action).collect()
    }

    /// A mailbox's allow list, as rule lines (`from ^bob@example\.org$`).
    pub async fn allow_list(&self, mailbox: &str) -> Vec<String> {
        let id = self.mailbox_id(mailbox).await;
        let rules = self.store.rules(id, ListKind::Allow).await.unwrap();
        rules.iter().map(SenderRule::to_line).collect()
    }

    /// Adds one rule line (`from .*@spam\.example`) to a mailbox's list.
    pub async fn add_rule(&self, mailbox: &str, list: ListKind, line: &str) {
        let id = self.mailbox_id(mailbox).await;
        let rule = SenderRule::parse(line).unwrap();
        let now = Timestamp::from_secs(T0);
        self.store
            .add_rule(id, list, &rule, &RuleSource::Admin, now)
            .await
            .unwrap();
    }

    pub async fn remove_rule(&self, mailbox: &str, list: ListKind, line: &str) {
        let id = self.mailbox_id(mailbox).await;
        let rule = SenderRule::parse(line).unwrap();
        self.store.remove_rule(id, list, &rule).await.unwrap();
    }

    pub fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }

    pub fn rejectlog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/rejectlog")).unwrap_or_default()
    }

    /// Sends one message in a fresh session and returns the queue id.
    pub async fn send(&self, from: &str, to: &[&str], body: &str) -> String {
        let mut s = self.smtp().await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0").await;
        for r in to {
            s.cmd(&format!("RCPT TO:<{r}>"), "250 2.1.5").await;
        }
        s.cmd("DATA", "354").await;
        let reply = s.data(body).await;
        assert!(reply.starts_with("250 2.0.0 OK id="), "{reply}");
        s.cmd("QUIT", "221").await;
        queue_id_of(&reply)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

pub fn addr_of(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

pub fn messages_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

pub fn queue_id_of(reply: &str) -> String {
    reply.trim_end().rsplit("id=").next().unwrap().to_owned()
}

/// An SMTP client for tests.
pub struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    pub greeting: String,
}

impl Smtp {
    pub async fn connect(addr: SocketAddr) -> Smtp {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        let mut s = Smtp {
            reader: BufReader::new(r),
            writer: w,
            greeting: String::new(),
        };
        s.greeting = s.reply().await;
        s
    }

    /// Reads one whole (possibly multi-line) reply; empty at end of stream.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                .await
                .expect("no reply within 30 s")
                .unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Sends a command line and checks the reply starts with `expect`.
    pub async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        let r = self.reply().await;
        assert!(
            r.starts_with(expect),
            "{line:?}: expected {expect:?}, got {r:?}"
        );
        r
    }

    /// Sends a message body (CRLF line endings, dot-stuffed here) and the
    /// end-of-data mark; returns the reply.
    pub async fn data(&mut self, body: &str) -> String {
        let mut wire = String::new();
        for line in body.split_inclusive("\r\n") {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
        }
        if !wire.is_empty() && !wire.ends_with("\r\n") {
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.send_raw(wire.as_bytes()).await;
        self.reply().await
    }

    /// True once the server has closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Generates a test per backend from one async body taking a `Backend`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::support::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                ($body)($crate::support::Backend::Postgres).await;
            }
        }
    };
}

// --- The real binary, run as a child process -------------------------------

/// A `boxtrap` command with no `BOXTRAP_*` variables inherited from the
/// environment running the tests, so only what a test sets applies.
pub fn boxtrap_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_boxtrap"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BOXTRAP_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1").stdin(std::process::Stdio::null());
    cmd
}

/// A config file in `dir` with `data_dir = dir`, SMTP on 127.0.0.1:0, the
/// given database URL (empty: SQLite in `dir`) and `extra` TOML appended.
pub fn write_test_config(dir: &Path, database_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("boxtrap.toml");
    let text = format!(
        "data_dir = {data_dir:?}\n\
         hostname = \"mx.example.test\"\n\
         {extra}\n\
         [smtp]\n\
         listen = [\"127.0.0.1:0\"]\n\
         command_timeout = \"30s\"\n\
         data_timeout = \"30s\"\n\
         [database]\n\
         url = {database_url:?}\n\
         max_connections = 4\n\
         [web]\n\
         listen = \"127.0.0.1:0\"\n",
        data_dir = dir.display().to_string(),
    );
    // As TestApp: DNS on loopback where nothing is published, and the
    // relaxed mode, unless `extra` says otherwise.
    let mut text = text;
    if !extra.contains("[dns]") {
        text.push_str(&format!(
            "[dns]\nservers = [\"{}\"]\n",
            TestDns::shared().addr
        ));
    }
    if !extra.contains("[auth]") {
        text.push_str("[auth]\nchallenge_unauthenticated = true\n");
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `boxtrap --config CONFIG ARGS...` with `stdin` as standard input,
/// for at most 60 s.
/// The real binary run against one config file: what the CLI test modules
/// share. Implementors say where their config file is.
pub trait AdminCommands {
    fn config_path(&self) -> &Path;

    fn run(&self, args: &[&str]) -> CmdOutput {
        run_boxtrap(self.config_path(), args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        run_boxtrap(self.config_path(), args, Some(stdin))
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success, "boxtrap {args:?} failed: {out:#?}");
        out.stdout
    }

    /// Runs a command that must fail with one of `codes`; returns its output.
    fn refused(&self, args: &[&str], codes: &[i32]) -> CmdOutput {
        let out = self.run(args);
        assert!(
            !out.success,
            "boxtrap {args:?} should have failed: {out:#?}"
        );
        assert!(out.code.is_some_and(|c| codes.contains(&c)), "{out:#?}");
        out
    }
}

pub fn run_boxtrap(config: &Path, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let mut cmd = boxtrap_command();
    cmd.arg("--config").arg(config).args(args);
    run_command(cmd, stdin)
}

pub fn run_command(mut cmd: std::process::Command, stdin: Option<&str>) -> CmdOutput {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let described = format!("{cmd:?}");
    let mut child = ChildGuard(Some(cmd.spawn().expect("cannot start boxtrap")));
    if let Some(input) = stdin {
        let mut pipe = child.get().stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    // Read both pipes on threads so a full pipe never blocks the child.
    let mut out = child.get().stdout.take().unwrap();
    let mut err = child.get().stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    let status = child
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{described} did not finish within 60 s"));
    CmdOutput {
        success: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// Owns a child process and SIGKILLs it when dropped, so a failing test
/// never leaves one behind.
pub struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    pub fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child already reaped")
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.get().try_wait().unwrap() {
                self.0 = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `boxtrap serve` as a child process, with its SMTP address read from its
/// log and its stderr collected (and always drained).
pub struct ServerProcess {
    child: ChildGuard,
    pub addr: SocketAddr,
    log: Arc<std::sync::Mutex<String>>,
}

impl ServerProcess {
    /// Starts `boxtrap --config CONFIG serve` and waits (at most 60 s) until
    /// it logs `SMTP listening addr=...`.
    pub fn start(config: &Path) -> ServerProcess {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut cmd = boxtrap_command();
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env("BOXTRAP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(Some(cmd.spawn().expect("cannot start boxtrap serve")));
        let stderr = child.get().stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = log.clone();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if let Some(addr) = listening_addr(&text) {
                    let _ = tx.send(addr);
                }
                shared.lock().unwrap().push_str(&text);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(e) => {
                let status = child.get().try_wait().unwrap();
                panic!(
                    "boxtrap serve did not report its SMTP address ({e:?}; exit status {status:?}); \
                     its log:\n{}",
                    log.lock().unwrap()
                )
            }
        };
        ServerProcess { child, addr, log }
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&mut self) -> u32 {
        self.child.get().id()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill9();
    }

    /// SIGTERM, then waits up to 60 s for the graceful shutdown to finish.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        match self.child.wait_timeout(Duration::from_secs(60)) {
            Some(status) => status,
            None => panic!(
                "boxtrap serve did not stop within 60 s of SIGTERM; its log:\n{}",
                self.log()
            ),
        }
    }
}

/// The address in a `SMTP listening addr=HOST:PORT` log line, tolerating
/// colour codes and other fields around it.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip a CSI sequence: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let rest = &plain[plain.find("SMTP listening")? + "SMTP listening".len()..];
    let value = &rest[rest.find("addr=")? + "addr=".len()..];
    let value: String = value
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '}')
        .collect();
    value.trim_matches('"').parse().ok()
}

/// The value of the first `Message-ID:` header in a message (with `<>`).
pub fn header_message_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    for line in text.lines() {
        if line.is_empty() {
            return None;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("message-id")
        {
            return Some(value.trim().to_owned());
        }
    }
    None
}

/// A minimal HTTP/1.1 client (one request per connection) for the web tests.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("no HTTP response within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// Challenge-response helpers shared by challenge.rs and browser.rs.

/// One mail as it left (or, read from a peer's Maildir, as it arrived),
/// parsed once.
#[derive(Debug, Clone)]
pub struct OutMail {
    /// The envelope sender, `""` for the null sender `<>`.
    pub env_from: String,
    pub rcpt: String,
    /// The whole message.
    pub raw: String,
    /// The text/plain part, its transfer encoding undone.
    pub text: String,
    /// Unfolded (RFC 5322 §2.2.3), in order.
    headers: Vec<(String, String)>,
}

impl OutMail {
    fn parse(env_from: String, rcpt: String, data: &[u8]) -> OutMail {
        let raw = String::from_utf8_lossy(data).into_owned();
        let text = mail_parser::MessageParser::default()
            .parse(data)
            .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
            .unwrap_or_default();
        let mut unfolded: Vec<String> = Vec::new();
        for line in raw.lines().take_while(|l| !l.is_empty()) {
            match (line.starts_with([' ', '\t']), unfolded.last_mut()) {
                (true, Some(last)) => last.push_str(line),
                _ => unfolded.push(line.to_owned()),
            }
        }
        let headers = unfolded
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect();
        OutMail {
            env_from,
            rcpt,
            raw,
            text,
            headers,
        }
    }

    /// A copy in a Maildir: the envelope read back from its `Return-Path`
    /// and `Delivered-To`.
    fn delivered(data: &[u8]) -> OutMail {
        let mut mail = OutMail::parse(String::new(), String::new(), data);
        let path = mail.header("Return-Path").unwrap_or_default();
        mail.env_from = path.trim_matches(['<', '>']).to_owned();
        mail.rcpt = mail.header("Delivered-To").unwrap_or_default().to_owned();
        mail
    }

    /// A header's value, unfolded; the first when it repeats.
    pub fn header(&self, name: &str) -> Option<&str> {
        let (_, value) = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        Some(value)
    }

    /// The mail as a challenge, when it is one: the only mail that carries
    /// a verification link. Panics when its subject lacks the `verify#`
    /// token a reply needs.
    pub fn challenge(self) -> Option<ChallengeMail> {
        let link = self
            .text
            .split_whitespace()
            .find(|w| w.contains("/verify/"))?
            .to_owned();
        let subject = self.header("Subject").unwrap_or_default();
        let token = token_in(subject);
        Some(ChallengeMail {
            token,
            link,
            mail: self,
        })
    }
}

/// A challenge mail, its token and link read once.
#[derive(Debug, Clone)]
pub struct ChallengeMail {
    /// From `Subject: ... [verify#TOKEN]`, what a reply carries back.
    pub token: String,
    /// The verification link in the text part.
    pub link: String,
    pub mail: OutMail,
}

impl ChallengeMail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.mail.header(name)
    }
}

/// `mx` hosts example.test, where alice has challenge-response on, and
/// sends its challenges through `peer` (another boxtrap, hosting
/// example.org) as its smarthost, so every challenge travels over SMTP.
/// Most tests need less: a [`TestApp`] records what it sends.
pub struct Pair {
    pub mx: TestApp,
    pub peer: TestApp,
}

pub async fn pair_with(backend: Backend, tweak: impl FnOnce(&mut boxtrap::config::Config)) -> Pair {
    let peer = TestApp::spawn_on(backend).await;
    peer.add_mailboxes(&["bob@example.org", "carol@example.org", "dave@example.org"])
        .await;
    let smarthost = peer.addr.to_string();
    let mx = TestApp::spawn_with_config_transport(backend, |c| {
        c.outbound.mode = OutboundMode::Smarthost;
        c.outbound.smarthost = smarthost;
        c.outbound.smarthost_tls = TlsPolicy::Off;
        c.web.base_url = "https://mail.example.test".into();
        tweak(c);
    })
    .await;
    mx.challenge_on("alice@example.test").await;
    Pair { mx, peer }
}

pub async fn pair(backend: Backend) -> Pair {
    pair_with(backend, |_| {}).await
}

/// Sends one message over SMTP and returns the reply to the end of data.
pub async fn send_raw(app: &TestApp, env_from: &str, to: &str, body: &str) -> String {
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd(&format!("MAIL FROM:<{env_from}>"), "250").await;
    s.cmd(&format!("RCPT TO:<{to}>"), "250").await;
    s.cmd("DATA", "354").await;
    let r = s.data(body).await;
    s.cmd("QUIT", "221").await;
    r
}

/// The token in a challenge's `Subject: ... [verify#TOKEN]`.
pub fn token_in(text: &str) -> String {
    let start = text.find("verify#").expect("a verify# token") + "verify#".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The raw text of the challenges that reached `mailbox` on the peer
/// (browser.rs; [`TestApp::challenges_in`] parses them).
pub fn challenges(peer: &TestApp, mailbox: &str) -> Vec<String> {
    peer.messages(mailbox)
        .iter()
        .map(|m| String::from_utf8_lossy(&m.1).into_owned())
        .filter(|t| t.contains("X-Boxtrap-Challenge:"))
        .collect()
}

// --- clients of a server that may be killed -----------------------------

/// A fallible SMTP client: a refused or missing reply is a value to
/// report, never a panic inside a client task.
pub struct FallibleSmtp {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl FallibleSmtp {
    /// Connects and reads the greeting, which must be 220.
    pub async fn connect(addr: SocketAddr) -> io::Result<FallibleSmtp> {
        let stream = TcpStream::connect(addr).await?;
        let (r, w) = stream.into_split();
        let mut c = FallibleSmtp {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.reply().await?;
        if !greeting.starts_with("220") {
            return Err(io::Error::other(format!("greeting: {greeting:?}")));
        }
        Ok(c)
    }

    /// One whole (possibly multi-line) reply.
    pub async fn reply(&mut self) -> io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.r.read_line(&mut line))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in 30 s"))??;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {all:?}"),
                ));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all.trim_end().to_owned());
            }
        }
    }

    /// Sends `bytes` and reads the reply.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<String> {
        self.w.write_all(bytes).await?;
        self.reply().await
    }

    /// Sends a command line and reads the reply.
    pub async fn cmd(&mut self, line: &str) -> io::Result<String> {
        self.send(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends `bytes` and fails unless the reply starts with `code`.
    pub async fn send_expect(&mut self, bytes: &[u8], code: &str) -> io::Result<String> {
        let r = self.send(bytes).await?;
        if !r.starts_with(code) {
            return Err(io::Error::other(format!("expected {code}, got {r:?}")));
        }
        Ok(r)
    }

    /// Sends a command line and fails unless the reply starts with `code`.
    pub async fn expect(&mut self, line: &str, code: &str) -> io::Result<String> {
        self.send_expect(format!("{line}\r\n").as_bytes(), code)
            .await
    }
}

/// What concurrent clients saw of a server that is killed mid-stream,
/// shared between them.
pub struct KillRecord {
    pub next: AtomicU64,
    /// Set just before the SIGKILL: errors after it are expected.
    pub killed: AtomicBool,
    /// Message numbers whose DATA was answered 250.
    pub acked: Mutex<HashSet<u64>>,
    /// Message numbers whose data was (at least partly) sent.
    pub attempted: Mutex<HashSet<u64>>,
    /// Anything unexpected before the kill: a refusal, a dropped connection.
    pub errors: Mutex<Vec<String>>,
    pub acked_count: watch::Sender<usize>,
}

impl KillRecord {
    pub fn error(&self, e: String) {
        if !self.killed.load(Ordering::SeqCst) {
            self.errors.lock().unwrap().push(e);
        }
    }
}

// --- what a test's own runtime logged through `tracing` -----------------

/// The `tracing` output of one test's runtime (formatted as `boxtrap serve`
/// writes it to stderr, without colours or times), and a line for every
/// panic on that runtime's threads. Cheap to clone; clones share the text.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines at ERROR level, and the panics.
    pub fn errors_and_panics(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.trim_start().starts_with("ERROR") || l.starts_with("PANIC"))
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> CapturedLog {
        self.clone()
    }
}

/// Panic sinks by thread name, for the one panic hook that feeds them.
static PANIC_SINKS: Mutex<Vec<(String, CapturedLog)>> = Mutex::new(Vec::new());
static PANIC_HOOK: std::sync::Once = std::sync::Once::new();

/// Runs `test` on a runtime of its own (`worker_threads` workers), whose
/// threads (workers, blocking pool, and the calling thread while it waits)
/// send their `tracing` events, filtered by `filter` (`EnvFilter` syntax,
/// e.g. `info,sqlx=warn` as `boxtrap serve` uses), to a [`CapturedLog`]
/// handed to `test`. A panic on one of the runtime's threads (which tokio
/// would otherwise only turn into a dropped connection) is noted in the
/// same log as a line starting with `PANIC`. `name` must be unique among
/// the tests running at once (it names the runtime's threads). Other tests'
/// logging is not affected: no global subscriber is installed.
pub fn run_capturing_log<F, Fut>(
    name: &str,
    worker_threads: usize,
    filter: &str,
    test: F,
) -> Fut::Output
where
    F: FnOnce(CapturedLog) -> Fut,
    Fut: std::future::Future,
{
    let log = CapturedLog::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(log.clone())
            .with_ansi(false)
            .without_time()
            .finish(),
    );
    let thread_name = format!("{name}-rt");
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(name) = std::thread::current().name()
                && let Ok(sinks) = PANIC_SINKS.lock()
            {
                for (n, sink) in sinks.iter() {
                    if n == name {
                        let mut sink = sink.clone();
                        let _ = io::Write::write_all(
                            &mut sink,
                            format!(
                                "PANIC on thread {name}: {}\n",
                                info.to_string().replace('\n', " ")
                            )
                            .as_bytes(),
                        );
                    }
                }
            }
            previous(info)
        }));
    });
    PANIC_SINKS
        .lock()
        .unwrap()
        .push((thread_name.clone(), log.clone()));
    let for_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .thread_name(thread_name.clone())
        // The guard is leaked on purpose: the dispatcher stays the thread's
        // default for the thread's whole life.
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&for_threads)))
        .build()
        .unwrap();
    let out = {
        let _default = tracing::dispatcher::set_default(&dispatch);
        runtime.block_on(test(log.clone()))
    };
    runtime.shutdown_timeout(Duration::from_secs(10));
    PANIC_SINKS
        .lock()
        .unwrap()
        .retain(|(n, _)| *n != thread_name);
    out
}

/// dnsmasq's option publishing `record` as the TXT record of `name`, e.g.
/// `txt("example.org", "v=spf1 ip4:127.0.0.1 -all")`
/// ([`boxtrap::testing::txt_record`]).
pub fn txt(name: &str, record: &str) -> String {
    boxtrap::testing::txt_record(name, record)
}

/// An SPF record (RFC 7208) for `domain` that passes the test clients
/// (127.0.0.1) and fails everyone else.
pub fn spf(domain: &str) -> String {
    txt(domain, "v=spf1 ip4:127.0.0.1 -all")
}

/// A private DNS server on loopback for one test or one test binary
/// ([`boxtrap::testing::Dnsmasq`]): `records` in dnsmasq's option syntax
/// (see [`spf`], [`txt`]), and every other name NXDOMAIN (`--local=/#/`),
/// so SPF, DKIM and DMARC find nothing else published.
pub struct TestDns {
    pub addr: SocketAddr,
    server: boxtrap::testing::Dnsmasq,
}

impl TestDns {
    pub fn start(records: &[String]) -> TestDns {
        let args = [vec!["--local=/#/".to_owned()], records.to_vec()].concat();
        let server = boxtrap::testing::Dnsmasq::start(&args);
        TestDns {
            addr: server.addr,
            server,
        }
    }

    /// The one server every test of this binary shares that needs no
    /// records of its own: every name is NXDOMAIN, so nothing is published
    /// and no sender is authenticated.
    pub fn shared() -> &'static TestDns {
        static DNS: std::sync::OnceLock<TestDns> = std::sync::OnceLock::new();
        DNS.get_or_init(|| TestDns::start(&[]))
    }

    /// What dnsmasq logged (every question).
    pub fn log(&self) -> String {
        self.server.log()
    }
}
