//! Wiring: [`App::build`] turns a [`Config`] into running parts with their
//! listeners bound (port 0 works, so tests run side by side), and
//! [`App::run`] serves until the shutdown future completes.
//!
//! Everything non-deterministic comes in through [`AppDeps`]: the clock,
//! the DNS resolver and the outbound transport.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::delivery::maildir::Maildirs;
use crate::delivery::router::Router;
use crate::dns::Resolver;
use crate::mainlog::MainLog;
use crate::outbound::Outbound;
use crate::outbound::transport::Transport;
use crate::quarantine::Quarantine;
use crate::retry::RetryPolicy;
use crate::smtp::accept::Accept;
use crate::smtp::server::{self, ConnectionLimits};
use crate::smtp::session::SmtpContext;
use crate::store::Store;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The seams tests replace: everything non-deterministic or outside the
/// process. `None` means "build it from the config".
#[derive(Clone)]
pub struct AppDeps {
    pub clock: Arc<dyn Clock>,
    /// The DNS resolver for direct MX delivery (and, later, mail checks).
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
    smtp: Arc<SmtpContext>,
    smtp_listeners: Vec<TcpListener>,
    smtp_addrs: Vec<SocketAddr>,
    web_listener: TcpListener,
    web_addr: SocketAddr,
}

/// Opens the store and log named by `config`; shared with the admin CLI.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    Store::open(&url, config.database.max_connections)
        .await
        .with_context(|| format!("cannot open database {}", redact(&url)))
}

/// Hides a password in a database URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
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
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let Services {
            store,
            log,
            delivery,
            quarantine,
        } = Services::build(&config, &deps).await?;
        let transport = match &deps.transport {
            Some(t) => t.clone(),
            None => Arc::new(
                Transport::from_config(&config, deps.resolver.clone())
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

    /// Serves until `shutdown` completes, then stops accepting, answers new
    /// commands with 421, lets messages in transfer finish, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = ConnectionLimits::new(
            self.config.smtp.max_connections,
            self.config.smtp.max_connections_per_ip,
        );
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
        let sender = tokio::spawn(
            self.outbound
                .clone()
                .run(self.config.outbound.run_interval.0, stop_rx.clone()),
        );
        let web = crate::web::router(crate::web::WebState {
            store: self.store.clone(),
            quarantine: self.quarantine.clone(),
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
        let _ = sender.await;
        let _ = web_task.await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_database_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact("sqlite://./data/x.db"),
            "sqlite://./data/x.db"
        );
    }
}
