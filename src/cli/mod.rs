//! The `boxtrap` command line: `serve`, `check-config`, `migrate`, and the
//! admin commands that act on the same database as a running server.
//!
//! One module per top-level command, its clap arguments with it. The
//! commands that touch the database share one `Admin` context, built once
//! per process with the wiring `serve` uses ([`Services::build`]): one
//! store pool, the main log, delivery, the quarantine and the clock. Each
//! command checks its values and names the bad one when it refuses it.

#[macro_use]
mod output;

mod alias;
mod config;
mod digest;
mod dkim;
mod domain;
mod key;
mod list;
mod log;
mod mailbox;
mod outbound;
mod quarantine;
mod queue;
mod template;
mod token;
pub(crate) use token::check_token_name;

use crate::address::{Domain, EmailAddress};
use crate::app::{App, AppDeps, Services};
use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::delivery::Delivery;
use crate::mainlog::MainLog;
use crate::quarantine::Quarantine;
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// boxtrap: a mail server with challenge-response quarantine.
#[derive(Debug, Parser)]
#[command(name = "boxtrap", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML); without one, the embedded defaults apply.
    /// BOXTRAP_* environment variables override both.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "BOXTRAP_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the SMTP receiver and delivery workers until SIGINT or SIGTERM.
    Serve,
    /// Check a configuration file without starting anything, and print the
    /// effective settings.
    CheckConfig {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
    },
    /// Create or update the database schema (serve does this on start too).
    Migrate,
    #[command(flatten)]
    Admin(AdminCmd),
}

/// The commands that work on the database, through one admin context.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Local domains: mail for these is delivered here.
    #[command(subcommand)]
    Domain(domain::DomainCmd),
    /// Mailboxes: one Maildir and one owner each.
    #[command(subcommand)]
    Mailbox(mailbox::MailboxCmd),
    /// Aliases: extra addresses delivering into local mailboxes.
    #[command(subcommand)]
    Alias(alias::AliasCmd),
    /// Deliveries waiting for a retry (`exim -bp` for the delivery queue).
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// Sender lists: a mailbox's allow, block and ignore rules.
    #[command(subcommand)]
    List(list::ListCmd),
    /// Held mail: list, count, show, release, delete (`exim -bp` habits).
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCmd),
    /// A mailbox's activity log (held, challenged, released...), newest first.
    Log(log::LogArgs),
    /// Per-mailbox challenge texts: verify, verifyreleased, returnverify, blacklist.
    #[command(subcommand)]
    Template(template::TemplateCmd),
    /// Challenge token keys: list them, rotate to a new one.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Challenge mails and notices leaving boxtrap (the outbound queue).
    #[command(subcommand)]
    Outbound(outbound::OutboundCmd),
    /// DKIM keys that sign a domain's challenges and notices, and the DNS
    /// records to publish for them.
    #[command(subcommand)]
    Dkim(dkim::DkimCmd),
    /// Owners' personal API tokens for /api/v1/: create, list, revoke.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Domain digests: an address subscribed to the held mail of a whole domain.
    #[command(subcommand)]
    Digest(digest::DigestCmd),
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

/// Runs the command line. `check-config` only reads a database that
/// exists (for its DKIM warnings), never creates or migrates one.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let deps = AppDeps::default();
    match cli.command {
        Cmd::Serve => {
            let config = load_config(cli.config.as_deref())?;
            let app = App::build(config, deps).await?;
            app.run(shutdown_signal()).await
        }
        Cmd::CheckConfig { file } => config::check(file.or(cli.config).as_deref()).await,
        Cmd::Migrate => config::migrate(&load_config(cli.config.as_deref())?).await,
        Cmd::Admin(cmd) => {
            let admin = Admin::open(load_config(cli.config.as_deref())?, &deps).await?;
            let done = admin.run(cmd).await;
            admin.store.close().await;
            done
        }
    }
}

/// What the database commands work with, built once per process.
struct Admin {
    config: Config,
    store: Store,
    log: MainLog,
    delivery: Arc<Delivery>,
    quarantine: Arc<Quarantine>,
    /// The only source of "now" for the admin commands.
    clock: Arc<dyn Clock>,
}

impl Admin {
    /// Wires the parts as `serve` does: opening the store migrates it, and
    /// building the quarantine makes the first token key if there is none.
    async fn open(config: Config, deps: &AppDeps) -> anyhow::Result<Admin> {
        let Services {
            store,
            log,
            delivery,
            quarantine,
        } = Services::build(&config, deps).await?;
        Ok(Admin {
            config,
            store,
            log,
            delivery,
            quarantine,
            clock: deps.clock.clone(),
        })
    }

    async fn run(&self, cmd: AdminCmd) -> anyhow::Result<()> {
        match cmd {
            AdminCmd::Domain(c) => domain::run(self, c).await,
            AdminCmd::Mailbox(c) => mailbox::run(self, c).await,
            AdminCmd::Alias(c) => alias::run(self, c).await,
            AdminCmd::Queue(c) => queue::run(self, c).await,
            AdminCmd::List(c) => list::run(self, c).await,
            AdminCmd::Quarantine(c) => quarantine::run(self, c).await,
            AdminCmd::Log(a) => log::run(self, a).await,
            AdminCmd::Template(c) => template::run(self, c).await,
            AdminCmd::Key(c) => key::run(self, c).await,
            AdminCmd::Outbound(c) => outbound::run(self, c).await,
            AdminCmd::Dkim(c) => dkim::run(self, c).await,
            AdminCmd::Token(c) => token::run(self, c).await,
            AdminCmd::Digest(c) => digest::run(self, c).await,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The settings of the mailbox named on the command line, in any case.
    async fn mailbox(&self, arg: &str) -> anyhow::Result<MailboxSettings> {
        let key = parse_address_trimmed("mailbox address", arg)?.lookup_key();
        match self.store.mailbox_settings_by_address(&key).await {
            Ok(s) => Ok(s),
            Err(StoreError::NotFound(_)) => {
                bail!("no such mailbox: {key} (see `boxtrap mailbox list`)")
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// An address argument taken as typed.
fn parse_address(s: &str) -> anyhow::Result<EmailAddress> {
    address_argument("address", s, s)
}

/// An address argument with blanks around it forgiven, as the
/// challenge-response commands take it; a refusal names it as `what`.
fn parse_address_trimmed(what: &str, s: &str) -> anyhow::Result<EmailAddress> {
    address_argument(what, s, s.trim())
}

/// Parses `text`, refusing with `what` and the argument as typed.
fn address_argument(what: &str, typed: &str, text: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(text).with_context(|| format!("invalid {what} {typed:?}"))
}

/// Mailbox and alias names become directory names and must be simple.
fn parse_local_address(s: &str) -> anyhow::Result<EmailAddress> {
    let a = parse_address(s)?;
    if a.local_part().starts_with('"')
        || a.local_part().contains('/')
        || a.domain().as_str().starts_with('[')
    {
        bail!(
            "invalid address {s:?}: mailboxes and aliases need a plain local part and a domain name"
        );
    }
    Ok(a)
}

fn parse_domain(s: &str) -> anyhow::Result<Domain> {
    let d = Domain::parse(s).with_context(|| format!("invalid domain {s:?}"))?;
    if d.as_str().starts_with('[') {
        bail!("invalid domain {s:?}: an address literal cannot be a local domain");
    }
    Ok(d)
}

/// Reads FILE, or standard input for `None` and `-`, up to `limit` bytes.
/// Returns the text and a name for it in messages.
fn read_input(file: Option<&Path>, limit: u64) -> anyhow::Result<(String, String)> {
    let (name, reader): (String, Box<dyn Read>) = match file {
        None => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) if p == Path::new("-") => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) => (
            p.display().to_string(),
            Box::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            ),
        ),
    };
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() as u64 > limit {
        bail!("{name} is larger than the limit of {limit} bytes; nothing was changed");
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name} is not UTF-8 text (byte {}); nothing was changed",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok((text, name))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
