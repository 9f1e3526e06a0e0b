//! `boxtrap digest`: domain digests. An admin subscribes an address (a
//! local mailbox, or any address) to a digest of the mail held for every
//! mailbox of one of our domains ([`crate::digest::domain`]); the server's
//! digest pass sends it (a local mailbox gets it in its Maildir, another
//! address through the outbound queue).

use super::Admin;
use crate::digest::domain::{self, SubscribeError};
use crate::store::digest::Subscribed;
use anyhow::bail;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DigestCmd {
    /// Subscribe ADDRESS to a digest of the mail held for every mailbox
    /// of DOMAIN (again: change its frequency). The first digest lists
    /// only mail held from now on.
    Subscribe {
        /// Where the digest goes: a local mailbox (into its Maildir) or any
        /// address (through the outbound queue).
        address: String,
        /// One of our domains.
        #[arg(long)]
        domain: String,
        /// How often: hourly, daily or weekly.
        #[arg(long, default_value = "daily", value_name = "hourly|daily|weekly")]
        frequency: String,
    },
    /// End ADDRESS's digest of DOMAIN; its links stop working.
    Unsubscribe {
        /// The subscribed address.
        address: String,
        /// The domain it is subscribed to.
        #[arg(long)]
        domain: String,
    },
    /// List the domain digest subscriptions.
    List,
}

pub async fn run(admin: &Admin, cmd: DigestCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        DigestCmd::Subscribe {
            address,
            domain,
            frequency,
        } => {
            let s = domain::parse(&address, &domain, &frequency)?;
            match domain::subscribe(store, &s, admin.now()).await {
                Ok(Subscribed::New) => say!(
                    "subscribed {} to the {} digest of {}",
                    s.address,
                    s.frequency,
                    s.domain
                ),
                Ok(Subscribed::Changed(was)) => say!(
                    "{} gets the digest of {}: {} (was {was})",
                    s.address,
                    s.domain,
                    s.frequency
                ),
                Err(SubscribeError::Refused(r)) => bail!("{r}"),
                Err(SubscribeError::Store(e)) => return Err(e.into()),
            }
        }
        DigestCmd::Unsubscribe { address, domain } => {
            let address = domain::parse_address(&address)?;
            let domain = domain::parse_domain(&domain)?;
            if !store.unsubscribe_domain_digest(&domain, &address).await? {
                bail!(
                    "address: {address} is not subscribed to the digest of {domain} \
                     (see `boxtrap digest list`)"
                );
            }
            say!("unsubscribed {address} from the digest of {domain}");
        }
        DigestCmd::List => {
            let subs = domain::list(store).await?;
            if subs.is_empty() {
                say!("no domain digests (see `boxtrap digest subscribe`)");
            }
            for s in subs {
                let last = s.last_at.map_or_else(
                    || "never".to_owned(),
                    |t| crate::clock::Timestamp(t).log_format() + " UTC",
                );
                say!(
                    "{}  {}  {}  last sent: {last}",
                    s.domain,
                    s.address,
                    s.frequency
                );
            }
        }
    }
    Ok(())
}
