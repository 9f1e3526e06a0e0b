//! The `boxtrap` command line: `serve`, `check-config`, `migrate`, and the
//! admin commands that act on the same database as a running server.

/// `println!` that ignores a closed stdout (`boxtrap queue list | head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod admin;
mod quarantine;

use crate::app::{App, AppDeps};
use crate::config::Config;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    /// Local domains: mail for these is delivered here.
    #[command(subcommand)]
    Domain(admin::DomainCmd),
    /// Mailboxes: one Maildir and one owner each.
    #[command(subcommand)]
    Mailbox(admin::MailboxCmd),
    /// Aliases: extra addresses delivering into local mailboxes.
    #[command(subcommand)]
    Alias(admin::AliasCmd),
    /// Deliveries waiting for a retry (`exim -bp` for the delivery queue).
    #[command(subcommand)]
    Queue(admin::QueueCmd),
    /// Sender lists: a mailbox's allow, block and ignore rules.
    #[command(subcommand)]
    List(quarantine::ListCmd),
    /// Held mail: list, count, show, release, delete (`exim -bp` habits).
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCmd),
    /// A mailbox's activity log (held, challenged, released...), newest first.
    Log(quarantine::LogArgs),
    /// Per-mailbox challenge texts: verify, verifyreleased, returnverify, blacklist.
    #[command(subcommand)]
    Template(quarantine::TemplateCmd),
    /// Challenge token keys: list them, rotate to a new one.
    #[command(subcommand)]
    Key(quarantine::KeyCmd),
    /// Challenge mails and notices leaving boxtrap (the outbound queue).
    #[command(subcommand)]
    Outbound(quarantine::OutboundCmd),
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve => {
            let config = load_config(cli.config.as_deref())?;
            let app = App::build(config, AppDeps::default()).await?;
            app.run(shutdown_signal()).await
        }
        Cmd::CheckConfig { file } => {
            let path = file.or(cli.config);
            let config = load_config(path.as_deref())?;
            let shown = match &path {
                Some(p) => p.display().to_string(),
                None => "(embedded defaults)".into(),
            };
            say!("# {shown}: configuration OK; effective settings:");
            let mut shown_config = config.clone();
            shown_config.database.url = crate::app::redact(&config.database.url);
            if !shown_config.outbound.smarthost_password.is_empty() {
                shown_config.outbound.smarthost_password = "***".into();
            }
            if !shown_config.challenge.secret.is_empty() {
                shown_config.challenge.secret = "***".into();
            }
            let text = toml::to_string(&shown_config).context("cannot print the configuration")?;
            say!("{}", text.trim_end());
            Ok(())
        }
        Cmd::Migrate => {
            let config = load_config(cli.config.as_deref())?;
            crate::app::open_store(&config).await?;
            say!("database schema is up to date");
            Ok(())
        }
        Cmd::Domain(c) => admin::domain(load_config(cli.config.as_deref())?, c).await,
        Cmd::Mailbox(c) => admin::mailbox(load_config(cli.config.as_deref())?, c).await,
        Cmd::Alias(c) => admin::alias(load_config(cli.config.as_deref())?, c).await,
        Cmd::Queue(c) => admin::queue(load_config(cli.config.as_deref())?, c).await,
        Cmd::List(c) => quarantine::list(load_config(cli.config.as_deref())?, c).await,
        Cmd::Quarantine(c) => {
            quarantine::quarantine_cmd(load_config(cli.config.as_deref())?, c).await
        }
        Cmd::Log(a) => quarantine::log(load_config(cli.config.as_deref())?, a).await,
        Cmd::Template(c) => quarantine::template(load_config(cli.config.as_deref())?, c).await,
        Cmd::Key(c) => quarantine::key(load_config(cli.config.as_deref())?, c).await,
        Cmd::Outbound(c) => quarantine::outbound(load_config(cli.config.as_deref())?, c).await,
    }
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
