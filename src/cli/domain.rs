//! `boxtrap domain`: the local domains, whose mail is delivered here.

use super::{Admin, parse_domain};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a local domain.
    Add { domain: String },
    /// List local domains with their mailbox and alias counts.
    List,
    /// Remove a domain that has no mailboxes or aliases left.
    Remove { domain: String },
}

pub async fn run(admin: &Admin, cmd: DomainCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        DomainCmd::Add { domain } => {
            let d = parse_domain(&domain)?;
            store.add_domain(&d, admin.now()).await?;
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
