//! The test harness: a boxtrap started in-process on port 0 with a temp
//! data directory and a manual clock, and an SMTP client whose helpers read
//! like the dialogue.

use boxtrap::address::{Domain, EmailAddress};
use boxtrap::app::{App, AppDeps};
use boxtrap::clock::{ManualClock, Timestamp};
use boxtrap::config::{Config, HumanDuration};
use boxtrap::delivery::Delivery;
use boxtrap::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
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
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub store: Store,
    pub clock: ManualClock,
    pub delivery: Arc<Delivery>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// SQLite, default limits, domain example.test with mailboxes alice and
    /// bob and the alias team -> alice, bob.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Backend::Sqlite, |_| {}).await
    }

    pub async fn spawn_on(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, Vec::new()).unwrap();
        config.data_dir = dir.path().to_owned();
        config.hostname = "mx.example.test".into();
        config.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.smtp.command_timeout = HumanDuration(Duration::from_secs(30));
        config.smtp.data_timeout = HumanDuration(Duration::from_secs(30));
        // The retry worker is driven by hand with run_queue_once().
        config.delivery.queue_run_interval = HumanDuration(Duration::from_secs(3600));
        config.database.url = match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => boxtrap::testing::fresh_postgres_database().await,
        };
        tweak(&mut config);
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let app = App::build(
            config.clone(),
            AppDeps {
                clock: Arc::new(clock.clone()),
            },
        )
        .await
        .unwrap();
        let addr = app.smtp_addrs()[0];
        let store = app.store().clone();
        let delivery = app.delivery();
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
            dir,
            config,
            store,
            clock,
            delivery,
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
