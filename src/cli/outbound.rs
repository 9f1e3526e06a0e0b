//! `boxtrap outbound`: challenge mails and notices leaving boxtrap.

use super::Admin;
use super::output::{age, angle, one_line};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OutboundCmd {
    /// One line per outbound message: id, age, kind, recipient, state, attempts, last error.
    List,
}

pub async fn run(admin: &Admin, cmd: OutboundCmd) -> anyhow::Result<()> {
    match cmd {
        OutboundCmd::List => {
            let now = admin.now();
            for o in admin.store.list_outbound().await? {
                say!(
                    "{:>6} {:>4} {} {} {} attempts={} {}",
                    o.id,
                    age(now.secs() - o.created_at.secs()),
                    o.kind,
                    angle(&o.rcpt),
                    o.state,
                    o.attempts,
                    one_line(&o.last_error)
                );
            }
        }
    }
    Ok(())
}
