//! A private spamd for tests; not part of the product.
//!
//! [`TestSpamd::start`] runs Debian's spamd (package `spamd`, installed by
//! `scripts/test.sh`) as the current user on a free loopback port, with
//! its own temporary directory for site config, home and log: network
//! tests off (`--local`), no user preferences, no Bayes and no
//! auto-learning, the rules shipped in `/usr/share/spamassassin` (never
//! ones fetched by `sa-update`). It returns once spamd answers `PING`. A
//! missing spamd panics: a test that needs it fails, it is never skipped.
//!
//! spamd runs under a small `sh` watchdog reading our end of a pipe: when
//! the [`TestSpamd`] is dropped, or the test process exits however it
//! exits, the pipe closes and the watchdog stops spamd and removes the
//! directory. So [`TestSpamd::shared`] (one per test process, since perl
//! takes a second or two to compile the rules) cleans up too.

use super::SpamdClient;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The rules Debian's `spamassassin` package ships.
pub const RULES_DIR: &str = "/usr/share/spamassassin";

/// How long spamd may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The site config of a test spamd (`local.cf`): nothing learns, nothing
/// is looked up.
const LOCAL_CF: &str = "\
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
use_dcc 0
";

/// Stops spamd when its stdin (our pipe) closes, then removes the
/// directory. `$1` is the directory, the rest spamd's command line.
const WATCHDOG: &str = r#"dir=$1; shift
"$@" 2>>"$dir/spamd.log" </dev/null &
pid=$!
read -r _ || true
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir"
"#;

/// A running spamd on loopback, stopped when dropped.
#[derive(Debug)]
pub struct TestSpamd {
    addr: SocketAddr,
    dir: PathBuf,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl TestSpamd {
    /// The spamd shared by every test of this process, started on first use.
    pub fn shared() -> &'static TestSpamd {
        static SHARED: OnceLock<TestSpamd> = OnceLock::new();
        SHARED.get_or_init(TestSpamd::start)
    }

    /// Starts a spamd of its own; panics, saying why, if it cannot.
    pub fn start() -> TestSpamd {
        let spamd = ["/usr/sbin/spamd", "/usr/bin/spamd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "spamd is not installed (Debian package `spamd`; `bash scripts/test.sh` \
                     installs it): the spam score tests need a real spamd"
                )
            });
        assert!(
            Path::new(RULES_DIR).join("10_default_prefs.cf").exists(),
            "SpamAssassin's rules are missing from {RULES_DIR} (Debian package `spamassassin`)"
        );
        let dir = std::env::temp_dir().join(format!(
            "boxtrap-spamd-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let home = dir.join("home");
        std::fs::create_dir_all(&home)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
        // Debian's *.pre files load the plugins the shipped rules expect.
        if let Ok(entries) = std::fs::read_dir("/etc/spamassassin") {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "pre") {
                    let _ = std::fs::copy(&path, dir.join(e.file_name()));
                }
            }
        }
        std::fs::write(dir.join("local.cf"), LOCAL_CF).expect("writing local.cf");
        // Run as root, spamd scans as `nobody`, who must read the config.
        set_mode(&dir, 0o755);
        set_mode(&home, 0o755);

        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("boxtrap-spamd-watchdog")
            .arg(&dir)
            .arg(spamd)
            .args(["--local", "--nouser-config", "--syslog=stderr"])
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--siteconfigpath={}", dir.display()))
            .arg(format!("--configpath={RULES_DIR}"))
            .arg(format!("--helper-home-dir={}", home.display()))
            .args(["--max-children=2", "--min-children=1", "--min-spare=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh for spamd: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let spamd = TestSpamd {
            addr,
            dir,
            watchdog: Mutex::new(Some((child, stdin))),
        };
        spamd.wait_until_answering();
        spamd
    }

    /// spamd's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client of this spamd with `timeout` and spamc's 500K limit.
    pub fn client(&self, timeout: Duration) -> SpamdClient {
        SpamdClient::new(self.addr, timeout)
    }

    /// What spamd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("spamd.log")).unwrap_or_default()
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(self.addr) {
                return;
            }
            let exited = self
                .watchdog
                .lock()
                .map(|mut w| {
                    w.as_mut()
                        .is_some_and(|(c, _)| c.try_wait().ok().flatten().is_some())
                })
                .unwrap_or(false);
            assert!(
                !exited && Instant::now() < deadline,
                "spamd on {} did not answer PING within {START_TIMEOUT:?}{}; its log:\n{}",
                self.addr,
                if exited { " (it exited)" } else { "" },
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestSpamd {
    fn drop(&mut self) {
        let taken = self.watchdog.get_mut().ok().and_then(Option::take);
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Whether spamd at `addr` answers `PING` with `PONG` (blocking, short
/// timeouts).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    if conn.write_all(b"PING SPAMC/1.5\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.starts_with("SPAMD/") && answer.contains(" 0 PONG")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}
