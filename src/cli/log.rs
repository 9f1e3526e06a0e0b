//! `boxtrap log`: a mailbox's activity log, newest first.

use super::Admin;
use super::output::one_line;
use clap::Args;

/// `boxtrap log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The mailbox (any case).
    #[arg(long, value_name = "MAILBOX")]
    mailbox: String,
    /// How many entries, newest first.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
}

pub async fn run(admin: &Admin, args: LogArgs) -> anyhow::Result<()> {
    let s = admin.mailbox(&args.mailbox).await?;
    for a in admin.store.activity(s.id, args.limit).await? {
        let sender = if a.sender.is_empty() {
            "<>".to_owned()
        } else {
            one_line(&a.sender)
        };
        say!(
            "{}  {}  {}  {}",
            a.at.log_format(),
            a.action,
            sender,
            one_line(&a.detail)
        );
    }
    Ok(())
}
