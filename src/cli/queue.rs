//! `boxtrap queue`: deliveries waiting for a retry (`exim -bp` habits).

use super::Admin;
use super::output::{age, angle};
use anyhow::bail;
use clap::Subcommand;

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

pub async fn run(admin: &Admin, cmd: QueueCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        QueueCmd::List => {
            let now = admin.now();
            for e in store.list_queue().await? {
                say!(
                    "{:>4} {:>6} {} {} -> {} {} attempts={} next={} {}",
                    age(now.secs() - e.arrived_at.secs()),
                    e.size,
                    e.queue_id,
                    angle(&e.sender),
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
            let n = store.make_all_due(admin.now()).await?;
            // Each pass takes a batch; claimed or deferred deliveries are not
            // due again, so this ends when everything was tried once.
            let mut attempted = 0;
            loop {
                let n = admin.delivery.run_queue_once().await?;
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
            admin.log.main(&format!(
                "{queue_id} removed by the admin (boxtrap queue delete)"
            ));
            say!("deleted {queue_id}");
        }
    }
    Ok(())
}
