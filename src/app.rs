//! Wiring: [`App::build`] turns a [`Config`] into running parts with their
//! listeners bound (port 0 works, so tests run side by side), and
//! [`App::run`] serves until the shutdown future completes.
//!
//! Everything non-deterministic comes in through [`AppDeps`]: the clock,
//! the DNS resolver and the outbound transport.

use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::delivery::maildir::Maildirs;
use crate::delivery::router::Router;
use crate::dns::{Dns, Resolver};
use crate::dnsbl::Dnsbl;
use crate::filemode;
use crate::mainlog::MainLog;
use crate::outbound::Outbound;
use crate::outbound::transport::Transport;
use crate::quarantine::Quarantine;
use crate::retry::RetryPolicy;
use crate::smtp::accept::Accept;
use crate::smtp::checks::MessageChecks;
use crate::smtp::server::{self, ConnectionLimits};
use crate::smtp::session::SmtpContext;
use crate::spam::SpamScorer;
use crate::store::Store;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The seams tests replace: everything non-deterministic or outside the
/// process. `None` means "build it from the config".
#[derive(Clone)]
pub struct AppDeps {
    pub clock: Arc<dyn Clock>,
    /// The DNS resolver for direct MX delivery and DNS blocklists; `None`
    /// builds the server's one resolver from `[dns]`.
    pub resolver: Option<Arc<dyn Resolver>>,
    /// How outbound mail leaves (a [`Transport::Recording`] in tests).
    pub transport: Option<Arc<Transport>>,
}

impl Default for AppDeps {
    fn default() -> Self {
        AppDeps {
            clock: Arc::new(SystemClock),
            resolver: None,
            transport: None,
        }
    }
}

/// The parts of a server without its listeners and workers: the store, the
/// logs, delivery and the quarantine, wired one way. [`App::build`] and the
/// admin CLI both start from here, so they cannot drift apart.
pub struct Services {
    pub store: Store,
    pub log: MainLog,
    pub delivery: Arc<Delivery>,
    pub quarantine: Arc<Quarantine>,
}

impl Services {
    pub async fn build(config: &Config, deps: &AppDeps) -> anyhow::Result<Services> {
        let store = open_store(config).await?;
        let log = open_log(config, deps.clock.clone())?;
        let maildirs = Arc::new(Maildirs::new(config.maildir_root(), &config.hostname));
        let delivery = Arc::new(Delivery::new(
            maildirs,
            store.clone(),
            log.clone(),
            deps.clock.clone(),
            RetryPolicy::from(&config.delivery),
        ));
        let quarantine = Arc::new(
            Quarantine::new(
                config,
                store.clone(),
                deps.clock.clone(),
                log.clone(),
                delivery.clone(),
            )
            .await
            .context("cannot set up the quarantine")?,
        );
        Ok(Services {
            store,
            log,
            delivery,
            quarantine,
        })
    }
}

/// A built server, listeners bound, not yet serving.
pub struct App {
    config: Config,
    store: Store,
    delivery: Arc<Delivery>,
    quarantine: Arc<Quarantine>,
    outbound: Arc<Outbound>,
    /// The server's one resolver, for whatever asks the DNS.
    dns: Dns,
    smtp: Arc<SmtpContext>,
    smtp_listeners: Vec<TcpListener>,
    smtp_addrs: Vec<SocketAddr>,
    web_listener: TcpListener,
    web_addr: SocketAddr,
}

/// Opens the store and log named by `config`; shared with the admin CLI.
///
/// A SQLite database file is created here, before SQLite opens it, with
/// mode 0600 in a 0700 directory: SQLite gives its `-wal` and `-shm` files
/// the mode of the database file. No error says the database password:
/// the URL is shown redacted and the password is struck from every cause.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    check_database_url(&url)?;
    let shown = redact(&url);
    if let Some(path) = sqlite_path(&url) {
        create_private_file(&path)
            .with_context(|| format!("cannot create database {}", path.display()))?;
    }
    match Store::open(&url, config.database.max_connections).await {
        Ok(store) => Ok(store),
        Err(e) => {
            let causes: Vec<String> =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .map(|e| strike_secrets(&e.to_string(), &url))
                .collect();
            let mut err = anyhow::anyhow!("{}", causes.last().cloned().unwrap_or_default());
            for cause in causes.iter().rev().skip(1) {
                err = err.context(cause.clone());
            }
            Err(err.context(format!("cannot open database {shown}")))
        }
    }
}

/// The connection parameters sqlx's PostgreSQL driver reads from a URL.
/// sqlx logs any other parameter with its value, so a mistyped or
/// unsupported one (`sslpassword`) would print a secret: it is refused.
const POSTGRES_URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Refuses a PostgreSQL URL with a parameter boxtrap's driver does not
/// read, naming the parameter and never its value. Shared by `serve`, the
/// admin commands and `check-config`.
pub fn check_database_url(url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(());
    }
    let Some((_, query)) = url.split_once('?') else {
        return Ok(());
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = percent_decode(pair.split_once('=').map_or(pair, |(n, _)| n));
        let known = POSTGRES_URL_PARAMETERS.contains(&name.as_str())
            || (name.starts_with("options[") && name.ends_with(']'));
        if !known {
            anyhow::bail!(
                "database.url: the parameter {name:?} is not supported (boxtrap reads {})",
                POSTGRES_URL_PARAMETERS.join(", ")
            );
        }
    }
    Ok(())
}

/// The file of a `sqlite:` URL that may create it (`mode=rwc`, the default
/// boxtrap uses); `None` for PostgreSQL, in-memory and read-only databases.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
    let creates = query
        .split('&')
        .find_map(|p| p.strip_prefix("mode="))
        .is_none_or(|m| m == "rwc");
    if file.is_empty() || file == ":memory:" || !creates {
        return None;
    }
    Some(PathBuf::from(file))
}

/// Creates `path` empty with mode 0600 (and its directory with 0700) if
/// it does not exist; an existing file is left as it is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        filemode::create_dir_all(dir)?;
    }
    filemode::open_append(path).map(drop)
}

/// Hides every secret a database URL can carry: the password of
/// `user:password@`, and the value of each query parameter whose name
/// (percent-decoded, in any case) contains `pass` or `secret`
/// (`?password=`, `&password=`, `sslpassword=`). When the URL is too odd to
/// read, more is hidden rather than less.
pub fn redact(url: &str) -> String {
    let url = redact_userinfo(url);
    match url.split_once('?') {
        Some((head, query)) => format!("{head}?{}", redact_query(query)),
        None => url,
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some(s) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[s + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &rest[at..]),
        None => url.to_owned(),
    }
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(&percent_decode(name)) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("pass") || name.contains("secret")
}

/// The secrets of a database URL as they may be echoed: raw and
/// percent-decoded.
fn url_secrets(url: &str) -> Vec<String> {
    let mut raw = Vec::new();
    if let Some(s) = url.find("://") {
        let rest = &url[s + 3..];
        if let Some(at) = rest.rfind('@')
            && let Some((_, password)) = rest[..at].split_once(':')
        {
            raw.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && is_secret_name(&percent_decode(name))
            {
                raw.push(value.to_owned());
            }
        }
    }
    let mut all: Vec<String> = raw
        .iter()
        .flat_map(|v| [v.clone(), percent_decode(v)])
        .filter(|v| !v.is_empty())
        .collect();
    // Longest first, so a secret that contains another is struck whole.
    all.sort_by_key(|v| std::cmp::Reverse(v.len()));
    all.dedup();
    all
}

/// `text` (an error message) with `url` shown redacted and each of its
/// secrets struck out wherever it appears.
fn strike_secrets(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact(url));
    for secret in url_secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Redacts free text (an error message about to be printed): every
/// `scheme://` URL in it as [`redact`] does, and the value after any
/// `...pass...=` or `...secret...=` (a query parameter or a TOML line that
/// a parse error quotes).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |p| p + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
            .map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    redact_assignments(&out)
}

/// Hides the value in each `name = value` / `name=value` whose name
/// contains `pass` or `secret`, up to the end of its quotes or the next
/// white space or `&`.
fn redact_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let before = rest[..eq].trim_end();
        let name_start = before
            .rfind(|c: char| !(c.is_alphanumeric() || "_-.%".contains(c)))
            .map_or(0, |p| p + 1);
        let name = &before[name_start..];
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        if name.is_empty() || !is_secret_name(&percent_decode(name)) {
            continue;
        }
        let value = rest.trim_start();
        out.push_str(&rest[..rest.len() - value.len()]);
        let end = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].find(q).map_or(value.len(), |e| e + 2),
            _ => value
                .find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(value.len()),
        };
        if end > 0 && value[..end] != *"***" {
            out.push_str("***");
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// `%XX` sequences decoded (bad ones kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A warning for each place boxtrap keeps data that other users can open:
/// the data directory, the SQLite database and its `-wal` and `-shm`
/// files, the logs and their directory, the outbox and the Maildir root.
/// Modes are left as they are (an admin may have given a group read
/// access); `serve` logs these when it starts and `check-config` prints them.
pub fn file_warnings(config: &Config) -> Vec<String> {
    let mut paths = vec![config.data_dir.clone()];
    if let Some(db) = sqlite_path(&config.database_url()) {
        for suffix in ["-wal", "-shm"] {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            paths.push(p.into());
        }
        paths.insert(1, db);
    }
    for log in [config.main_log_path(), config.reject_log_path()] {
        if let Some(dir) = log.parent() {
            paths.push(dir.to_owned());
        }
        paths.push(log);
    }
    paths.push(config.outbox_dir());
    paths.push(config.maildir_root());
    let mut seen = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .filter_map(|p| filemode::too_open(&p))
        .collect()
}

pub fn open_log(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<MainLog> {
    let (main, reject) = (config.main_log_path(), config.reject_log_path());
    MainLog::open(&main, &reject, clock)
        .with_context(|| format!("cannot open log file {}", main.display()))
}

/// Binds a listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:25`
/// and `[::]:25` can both be configured, and IPv4 clients never appear as
/// `::ffff:` addresses.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

impl App {
    pub async fn build(config: Config, deps: AppDeps) -> anyhow::Result<App> {
        filemode::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let Services {
            store,
            log,
            delivery,
            quarantine,
        } = Services::build(&config, &deps).await?;
        for w in file_warnings(&config) {
            tracing::warn!("{w}");
        }
        match store.challenge_domains_without_dkim().await {
            Ok(domains) => {
                for d in domains {
                    tracing::warn!("{}", crate::challenge::sign::unsigned_domain_warning(&d));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read which domains have DKIM keys"),
        }
        let dns = match &deps.resolver {
            Some(r) => Dns::fake(r.clone()),
            None => Dns::from_config(&config.dns).context("cannot set up the DNS resolver")?,
        };
        let spam_scorer = SpamScorer::new(&config.spamd).map_err(anyhow::Error::msg)?;
        let transport = match &deps.transport {
            Some(t) => t.clone(),
            None => Arc::new(
                Transport::from_config(&config, Some(dns.resolver.clone()))
                    .context("cannot set up outbound mail")?,
            ),
        };
        let outbound = Arc::new(Outbound::new(
            store.clone(),
            transport,
            deps.clock.clone(),
            log.clone(),
            &config.outbound,
        ));
        let smtp = Arc::new(SmtpContext {
            config: config.smtp.clone(),
            hostname: config.hostname.clone(),
            handler: Arc::new(Accept {
                router: Router::new(
                    store.clone(),
                    &config.smtp.recipient_delimiter,
                    &config.smtp.postmaster,
                ),
                quarantine: quarantine.clone(),
                delivery: delivery.clone(),
                dnsbl: Arc::new(Dnsbl::new(&config, dns.resolver.clone())),
                checks: Arc::new(MessageChecks::new(
                    dns.hickory
                        .clone()
                        .map(|r| Authenticator::new(r, &config.hostname, &config.auth)),
                    &config.auth,
                    // SPF can chain lookups (RFC 7208 §4.6.4 allows 10).
                    (config.dns.timeout.0 * (config.dns.attempts.max(1) as u32) * 2)
                        .max(std::time::Duration::from_secs(1)),
                    &config.hostname,
                    spam_scorer,
                    &config.spam,
                )),
                log: log.clone(),
            }),
            log,
            clock: deps.clock.clone(),
        });
        let mut smtp_listeners = Vec::new();
        let mut smtp_addrs = Vec::new();
        for addr in &config.smtp.listen {
            let l = listen(*addr).with_context(|| format!("cannot listen for SMTP on {addr}"))?;
            smtp_addrs.push(l.local_addr()?);
            smtp_listeners.push(l);
        }
        let web_listener = listen(config.web.listen)
            .with_context(|| format!("cannot listen for HTTP on {}", config.web.listen))?;
        let web_addr = web_listener.local_addr()?;
        Ok(App {
            web_listener,
            web_addr,
            config,
            store,
            delivery,
            quarantine,
            outbound,
            dns,
            smtp,
            smtp_listeners,
            smtp_addrs,
        })
    }

    /// The SMTP addresses actually bound (with real ports for port 0).
    pub fn smtp_addrs(&self) -> &[SocketAddr] {
        &self.smtp_addrs
    }

    /// The web address actually bound.
    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn delivery(&self) -> Arc<Delivery> {
        self.delivery.clone()
    }

    pub fn quarantine(&self) -> Arc<Quarantine> {
        self.quarantine.clone()
    }

    pub fn outbound(&self) -> Arc<Outbound> {
        self.outbound.clone()
    }

    /// The server's DNS: the resolver seam and, unless a test replaced it,
    /// the hickory resolver (for mail-auth).
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// Serves until `shutdown` completes, then stops accepting, answers new
    /// commands with 421, lets messages in transfer finish, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = ConnectionLimits::new(&self.config.smtp);
        for w in self.config.warnings() {
            tracing::warn!("{w}");
        }
        let mut tasks = Vec::new();
        for listener in self.smtp_listeners {
            tracing::info!(addr = %listener.local_addr()?, "SMTP listening");
            tasks.push(tokio::spawn(server::serve(
                listener,
                self.smtp.clone(),
                limits.clone(),
                stop_rx.clone(),
            )));
        }
        let worker = tokio::spawn(
            self.delivery
                .clone()
                .run_queue(self.config.delivery.queue_run_interval.0, stop_rx.clone()),
        );
        let sweeper = tokio::spawn(self.quarantine.clone().run_sweeper(stop_rx.clone()));
        let digests = tokio::spawn(
            crate::digest::Digests::new(self.quarantine.clone())
                .run(self.config.challenge.sweep_interval.0, stop_rx.clone()),
        );
        let sender = tokio::spawn(
            self.outbound
                .clone()
                .run(self.config.outbound.run_interval.0, stop_rx.clone()),
        );
        let web = crate::web::router(crate::web::WebState {
            store: self.store.clone(),
            quarantine: self.quarantine.clone(),
            sessions: crate::web::session::Sessions::new(&self.config, self.smtp.clock.clone()),
        });
        tracing::info!(addr = %self.web_addr, "web listening");
        crate::web::open_files::report(&self.config);
        let web_task = tokio::spawn(crate::web::listener::serve(
            self.web_listener,
            web,
            self.config.web.clone(),
            stop_rx.clone(),
        ));
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        // Sessions in DATA may take up to one data timeout per block; give
        // them that, then leave.
        let grace = self.config.smtp.data_timeout.0 + Duration::from_secs(5);
        if tokio::time::timeout(grace, limits.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("sessions still running after the grace period; exiting anyway");
        }
        let _ = worker.await;
        let _ = sweeper.await;
        let _ = digests.await;
        let _ = sender.await;
        let _ = web_task.await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_database_passwords_in_every_form() {
        let cases = [
            ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://u:se%40cr@t@h:5432/db",
                "postgresql://u:***@h:5432/db",
            ),
            (
                "postgres://u@h/db?password=secret",
                "postgres://u@h/db?password=***",
            ),
            (
                "postgres://u@h/db?sslmode=require&password=secret&application_name=bt",
                "postgres://u@h/db?sslmode=require&password=***&application_name=bt",
            ),
            (
                "postgres://u@h/db?sslpassword=secret&PassWord=other",
                "postgres://u@h/db?sslpassword=***&PassWord=***",
            ),
            (
                "postgres://h/db?p%61ssword=secret",
                "postgres://h/db?p%61ssword=***",
            ),
            ("postgres://u:pa?ss@h/db", "postgres://u:***@h/db"),
            // An '@' in the query: more is hidden, never less.
            (
                "postgres://u:pw@h/db?application_name=me@x",
                "postgres://u:***@x",
            ),
            (
                "postgres://h/db?password=a@b",
                "postgres://h/db?password=***",
            ),
            ("sqlite://./data/x.db", "sqlite://./data/x.db"),
            ("sqlite:x.db?mode=rwc", "sqlite:x.db?mode=rwc"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn secrets_are_struck_from_error_texts() {
        let url = "postgres://u:p%40ss@h/db?password=hunter2&sslmode=disable";
        let text = format!("cannot reach {url}: auth for p@ss and p%40ss and hunter2 failed");
        let struck = strike_secrets(&text, url);
        for secret in ["p@ss", "p%40ss", "hunter2"] {
            assert!(!struck.contains(secret), "{struck}");
        }
        assert!(
            struck.contains("postgres://u:***@h/db?password=***&sslmode=disable"),
            "{struck}"
        );
    }

    #[test]
    fn free_text_loses_urls_and_secret_assignments() {
        let text = "TOML parse error at line 3\n  |\n3 | url = postgres://u:hunter2@h/db?password=swordfish\n\
                    4 | smarthost_password = \"x y\"\nsecret=00aa&b=1 password authentication failed";
        let out = redact_text(text);
        for secret in ["hunter2", "swordfish", "x y", "00aa"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("postgres://u:***@h/db?password=***"), "{out}");
        assert!(out.contains("smarthost_password = ***"), "{out}");
        assert!(out.contains("secret=***&b=1"), "{out}");
        assert!(out.contains("password authentication failed"), "{out}");
        assert_eq!(redact_text("plain text, a=b"), "plain text, a=b");
    }

    #[test]
    fn unknown_postgres_parameters_are_refused_by_name_only() {
        assert!(check_database_url("postgres://u@h/db?sslmode=require&password=x").is_ok());
        assert!(check_database_url("postgres://u@h/db?options[search_path]=a").is_ok());
        assert!(check_database_url("sqlite://x.db?mode=rwc").is_ok());
        let e = check_database_url("postgres://u@h/db?sslpassword=swordfish")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"sslpassword\"") && !e.contains("swordfish"),
            "{e}"
        );
    }

    #[test]
    fn sqlite_files_boxtrap_may_create() {
        assert_eq!(
            sqlite_path("sqlite://./data/b.db"),
            Some("./data/b.db".into())
        );
        assert_eq!(sqlite_path("sqlite:b.db?mode=rwc"), Some("b.db".into()));
        assert_eq!(sqlite_path("sqlite:b.db?mode=ro"), None);
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
