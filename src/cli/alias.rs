//! `boxtrap alias`: extra addresses delivering into local mailboxes.

use super::{Admin, parse_address, parse_domain, parse_local_address};
use clap::Subcommand;

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

pub async fn run(admin: &Admin, cmd: AliasCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        AliasCmd::Add { alias, targets } => {
            let a = parse_local_address(&alias)?;
            let t = targets
                .iter()
                .map(|t| parse_address(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store.add_alias(&a, &t, admin.now()).await?;
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
