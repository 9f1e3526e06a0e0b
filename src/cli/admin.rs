//! Admin commands: domains, mailboxes, aliases and the delivery queue.
//! Each validates its arguments before touching the database and names the
//! bad value when it refuses one.

use crate::address::{Domain, EmailAddress};
use crate::app::{AppDeps, Services, open_log, open_store};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::Config;
use crate::delivery::maildir::Maildirs;
use crate::password;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a local domain.
    Add { domain: String },
    /// List local domains with their mailbox and alias counts.
    List,
    /// Remove a domain that has no mailboxes or aliases left.
    Remove { domain: String },
}

#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input instead of
    /// prompting.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum MailboxCmd {
    /// Add a mailbox (its domain must exist). Asks for the owner's password.
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
        /// Create the mailbox without a password (the owner cannot log in).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
    },
    /// List mailboxes.
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove a mailbox and its aliases; its Maildir stays on disk.
    Remove { address: String },
    /// Set a mailbox owner's password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Change a mailbox's challenge-response settings and extra addresses.
    Set(super::quarantine::MailboxSetArgs),
    /// Print a mailbox's settings, extra addresses and list sizes.
    Show {
        /// The mailbox (any case).
        address: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Make ALIAS deliver to one or more local mailboxes.
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// List aliases and their targets.
    List {
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove an alias, or only its delivery to TARGET.
    Remove {
        alias: String,
        target: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// One line per queued delivery: id, age, size, sender, recipient, state.
    List,
    /// Number of queued messages (`exim -bpc`).
    Count,
    /// Retry every pending delivery now (`exim -qff`).
    Run,
    /// Delete a queued message and all its deliveries.
    Delete { queue_id: String },
}

fn parse_domain(s: &str) -> anyhow::Result<Domain> {
    let d = Domain::parse(s).with_context(|| format!("invalid domain {s:?}"))?;
    if d.as_str().starts_with('[') {
        bail!("invalid domain {s:?}: an address literal cannot be a local domain");
    }
    Ok(d)
}

fn parse_address(s: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(s).with_context(|| format!("invalid address {s:?}"))
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

fn now() -> Timestamp {
    SystemClock.now()
}

fn read_password(src: &PasswordSource) -> anyhow::Result<String> {
    let pw = if src.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for a password on; use --password-stdin");
        }
        let a = rpassword::prompt_password("Password: ").context("cannot read password")?;
        let b = rpassword::prompt_password("Again: ").context("cannot read password")?;
        if a != b {
            bail!("the two passwords differ; nothing changed");
        }
        a
    };
    Ok(password::hash(&pw)?)
}

pub async fn domain(config: Config, cmd: DomainCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        DomainCmd::Add { domain } => {
            let d = parse_domain(&domain)?;
            store.add_domain(&d, now()).await?;
            say!("added domain {d}");
        }
        DomainCmd::List => {
            for d in store.list_domains().await? {
                say!(
                    "{}  mailboxes={} aliases={}",
                    d.name,
                    d.mailboxes,
                    d.aliases
                );
            }
        }
        DomainCmd::Remove { domain } => {
            let d = parse_domain(&domain)?;
            store.remove_domain(&d).await?;
            say!("removed domain {d}");
        }
    }
    Ok(())
}

pub async fn mailbox(config: Config, cmd: MailboxCmd) -> anyhow::Result<()> {
    match cmd {
        MailboxCmd::Add {
            address,
            password,
            no_password,
        } => {
            let a = parse_local_address(&address)?;
            let store = open_store(&config).await?;
            if store.domain_id(a.domain()).await?.is_none() {
                bail!(
                    "domain {} is not a local domain; add it first with `boxtrap domain add {}`",
                    a.domain(),
                    a.domain()
                );
            }
            let hash = if no_password {
                String::new()
            } else {
                read_password(&password)?
            };
            let m = store.add_mailbox(&a, &hash, now()).await?;
            let maildirs = Maildirs::new(config.maildir_root(), &config.hostname);
            say!(
                "added mailbox {} (Maildir {})",
                m.address,
                maildirs.path_for(&m.address).display()
            );
        }
        MailboxCmd::List { domain } => {
            let store = open_store(&config).await?;
            let d = domain.as_deref().map(parse_domain).transpose()?;
            for m in store.list_mailboxes(d.as_ref().map(|d| d.as_str())).await? {
                say!("{}", m.address);
            }
        }
        MailboxCmd::Remove { address } => {
            let a = parse_address(&address)?;
            let store = open_store(&config).await?;
            store.remove_mailbox(&a).await?;
            say!(
                "removed mailbox {} (its Maildir was left on disk)",
                a.lookup_key()
            );
        }
        MailboxCmd::Passwd { address, password } => {
            let a = parse_address(&address)?;
            let store = open_store(&config).await?;
            if store.find_mailbox(&a).await?.is_none() {
                bail!("no such mailbox: {}", a.lookup_key());
            }
            let hash = read_password(&password)?;
            store.set_password_hash(&a, &hash).await?;
            say!("password changed for {}", a.lookup_key());
        }
        MailboxCmd::Set(args) => super::quarantine::mailbox_set(config, args).await?,
        MailboxCmd::Show { address } => super::quarantine::mailbox_show(config, address).await?,
    }
    Ok(())
}

pub async fn alias(config: Config, cmd: AliasCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        AliasCmd::Add { alias, targets } => {
            let a = parse_local_address(&alias)?;
            let t = targets
                .iter()
                .map(|t| parse_address(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store.add_alias(&a, &t, now()).await?;
            let names: Vec<_> = t.iter().map(|t| t.lookup_key()).collect();
            say!("added alias {} -> {}", a.lookup_key(), names.join(", "));
        }
        AliasCmd::List { domain } => {
            let d = domain.as_deref().map(parse_domain).transpose()?;
            for a in store.list_aliases(d.as_ref().map(|d| d.as_str())).await? {
                say!("{} -> {}", a.address, a.targets.join(", "));
            }
        }
        AliasCmd::Remove { alias, target } => {
            let a = parse_address(&alias)?;
            let t = target.as_deref().map(parse_address).transpose()?;
            store.remove_alias(&a, t.as_ref()).await?;
            say!("removed alias {}", a.lookup_key());
        }
    }
    Ok(())
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub async fn queue(config: Config, cmd: QueueCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        QueueCmd::List => {
            let now = now();
            for e in store.list_queue().await? {
                let sender = if e.sender.is_empty() {
                    "<>".into()
                } else {
                    format!("<{}>", e.sender)
                };
                say!(
                    "{:>4} {:>6} {} {} -> {} {} attempts={} next={} {}",
                    age(now.secs() - e.arrived_at.secs()),
                    e.size,
                    e.queue_id,
                    sender,
                    e.mailbox,
                    e.state,
                    e.attempts,
                    e.next_attempt_at.log_format(),
                    e.last_error
                );
            }
        }
        QueueCmd::Count => {
            let mut ids: Vec<_> = store
                .list_queue()
                .await?
                .into_iter()
                .map(|e| e.queue_id)
                .collect();
            ids.dedup();
            say!("{}", ids.len());
        }
        QueueCmd::Run => {
            let n = store.make_all_due(now()).await?;
            let delivery = Services::build(&config, &AppDeps::default())
                .await?
                .delivery;
            // Each pass takes a batch; claimed or deferred deliveries are not
            // due again, so this ends when everything was tried once.
            let mut attempted = 0;
            loop {
                let n = delivery.run_queue_once().await?;
                if n == 0 {
                    break;
                }
                attempted += n;
            }
            say!("{n} pending, {attempted} attempted; see the main log for results");
        }
        QueueCmd::Delete { queue_id } => {
            if !crate::queue_id::is_queue_id(&queue_id) {
                bail!("invalid queue id {queue_id:?} (expected the XXXXXX-XXXXXX-XX form)");
            }
            store.delete_queued(&queue_id).await?;
            let log = open_log(&config, Arc::new(SystemClock))?;
            log.main(&format!(
                "{queue_id} removed by the admin (boxtrap queue delete)"
            ));
            say!("deleted {queue_id}");
        }
    }
    Ok(())
}
