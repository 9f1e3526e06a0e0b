//! Support for tests of this crate and its integration tests; not part of
//! the product. PostgreSQL tests need `PG_TEST_URL` (set by
//! `scripts/test.sh`) and fail without it: a missing peer is a failure,
//! never a skip.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let base = std::env::var("PG_TEST_URL").unwrap_or_else(|_| {
        panic!(
            "PG_TEST_URL is not set: PostgreSQL tests need a server. \
             Run the suite with `bash scripts/test.sh`, which starts one."
        )
    });
    let mut conn = PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PG_TEST_URL ({base}): {e}"));
    let name = format!("boxtrap_t_{:016x}", rand::random::<u64>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    match base.rfind('/') {
        Some(i) if i > base.find("://").map(|s| s + 2).unwrap_or(0) => {
            let query = base[i..].find('?').map(|q| &base[i + q..]).unwrap_or("");
            format!("{}/{name}{query}", &base[..i])
        }
        _ => format!("{base}/{name}"),
    }
}

/// A private DNS server for tests: Debian's dnsmasq on a free loopback
/// port, answering only from its command line (`args`, in dnsmasq's option
/// syntax: `--txt-record=...`, `--mx-host=...`, `--local=/#/` to make every
/// other name NXDOMAIN; see [`txt_record`]), logging every question.
///
/// It runs under a small `sh` watchdog that reads our end of a pipe and
/// stops dnsmasq when the pipe closes: on drop, or when the test process
/// ends however it ends, so a shared instance in a `static` goes away too.
/// A missing dnsmasq panics (scripts/test.sh installs dnsmasq-base): a test
/// that needs it fails, it is never skipped.
pub struct Dnsmasq {
    /// Where it answers (UDP and TCP).
    pub addr: std::net::SocketAddr,
    log: std::path::PathBuf,
    dir: std::path::PathBuf,
    watchdog: std::sync::Mutex<Option<(std::process::Child, std::process::ChildStdin)>>,
}

/// Starts dnsmasq with `$@` in the background, waits for stdin to close,
/// then stops it and removes the directory `$1`.
const DNSMASQ_WATCHDOG: &str = r#"dir=$1; shift
"$@" 2>>"$dir/dnsmasq.log" </dev/null &
pid=$!
while read -r _; do :; done
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir"
"#;

impl Dnsmasq {
    /// Starts one with `args`; panics, saying why, if it cannot.
    pub fn start(args: &[String]) -> Dnsmasq {
        use std::process::{Command, Stdio};
        use std::time::Duration;
        let bin = ["/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("dnsmasq not found: install dnsmasq-base (bash scripts/test.sh does)");
        let dir = std::env::temp_dir().join(format!(
            "boxtrap-dnsmasq-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let log = dir.join("dnsmasq.log");
        for _ in 0..10 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("a free loopback port")
                .port();
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(DNSMASQ_WATCHDOG)
                .arg("boxtrap-dnsmasq-watchdog")
                .arg(&dir)
                .arg(bin)
                .args([
                    "--keep-in-foreground",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--log-facility=-",
                    "--log-queries",
                ])
                .arg(format!("--port={port}"))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run sh for dnsmasq");
            let stdin = child.stdin.take().expect("piped stdin");
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            // Up to 10 s: a loaded machine (the whole suite on two cores)
            // can take seconds to start it.
            for _ in 0..1000 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Dnsmasq {
                        addr,
                        log,
                        dir,
                        watchdog: std::sync::Mutex::new(Some((child, stdin))),
                    };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "dnsmasq did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// What dnsmasq logged: every question (`query[TXT] name from ...`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.lock().ok().and_then(|mut w| w.take()) {
            drop(stdin);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// dnsmasq's option publishing `text` as the TXT record of `name`. On its
/// command line quotes are kept as text and a comma starts the record's
/// next string, so `text` is cut into strings of at most 255 octets (RFC
/// 7208 §3.3, RFC 6376 §3.6.2.2: SPF and DKIM join them again); it must
/// have no comma.
pub fn txt_record(name: &str, text: &str) -> String {
    assert!(!text.contains(','), "a TXT text with a comma: {text}");
    let strings: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!("--txt-record={name},{}", strings.join(","))
}
