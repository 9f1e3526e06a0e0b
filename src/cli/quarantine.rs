//! `boxtrap quarantine`: held mail, with the `exim -bp` habits: list,
//! count, show, release and delete, one message by id or everything held
//! from a sender for a mailbox.

use super::output::{age, angle, one_line, printable, shorten};
use super::{Admin, parse_address_trimmed};
use crate::clock::Timestamp;
use crate::quarantine::owner::OwnerAction;
use crate::quarantine::release::ReleasedBy;
use crate::store::held::{HeldState, HeldSummary};
use crate::store::settings::MailboxSettings;
use anyhow::bail;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// One line per held message (`exim -bp`): id, age, size, mailbox, sender, subject, reason.
    List {
        /// Only this mailbox's.
        #[arg(long, value_name = "MAILBOX")]
        mailbox: Option<String>,
        /// Only mail from this sender.
        #[arg(long, value_name = "ADDRESS")]
        sender: Option<String>,
    },
    /// Number of held messages (`exim -bpc`).
    Count {
        /// Only this mailbox's.
        #[arg(long, value_name = "MAILBOX")]
        mailbox: Option<String>,
    },
    /// Everything about one held message, then its headers.
    Show {
        /// The held message's id (from `quarantine list`).
        id: String,
        /// Print the whole message, not only its headers.
        #[arg(long)]
        body: bool,
    },
    /// Deliver one held message (its sender stays unknown), or --sender's
    /// held mail for --mailbox (and allow the sender).
    Release(Target),
    /// Delete one held message, or everything held from --sender for
    /// --mailbox: softly, restorable for `challenge.keep_deleted`.
    Delete(Target),
    /// Restore a deleted held message to its quarantine.
    Restore {
        /// The deleted message's id (`quarantine show` still shows it).
        id: String,
    },
}

/// One held message by id, or all from a sender for a mailbox.
#[derive(Debug, Args)]
pub struct Target {
    /// The held message's id (from `quarantine list`).
    #[arg(
        conflicts_with_all = ["sender", "mailbox"],
        required_unless_present = "sender"
    )]
    id: Option<String>,
    /// Every message held from this sender (needs --mailbox).
    #[arg(long, value_name = "ADDRESS", requires = "mailbox")]
    sender: Option<String>,
    /// The mailbox the sender's mail is held for.
    #[arg(long, value_name = "MAILBOX", requires = "sender")]
    mailbox: Option<String>,
}

/// A sender as held mail and challenges store it: the address, lower case.
fn parse_sender(s: &str) -> anyhow::Result<String> {
    parse_address_trimmed("sender address", s)?;
    Ok(s.trim().to_lowercase())
}

fn parse_held_id(s: &str) -> anyhow::Result<i64> {
    match s.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => bail!(
            "invalid held message id {s:?} (expected a number from `boxtrap quarantine list`)"
        ),
    }
}

/// The id of `--mailbox`, when one is named.
async fn mailbox_id(admin: &Admin, mailbox: Option<String>) -> anyhow::Result<Option<i64>> {
    Ok(match mailbox {
        Some(m) => Some(admin.mailbox(&m).await?.id),
        None => None,
    })
}

/// The held message an id argument names, in any state.
async fn held_by_id(admin: &Admin, id: &str) -> anyhow::Result<HeldSummary> {
    let id = parse_held_id(id)?;
    match admin.store.held(id).await? {
        Some(h) => Ok(h),
        None => bail!("no held message {id} (see `boxtrap quarantine list`)"),
    }
}

fn held_line(h: &HeldSummary, now: Timestamp) -> String {
    let state = if h.state == HeldState::Held {
        String::new()
    } else {
        format!(" ({})", h.state)
    };
    format!(
        "{:>6} {:>4} {:>7} {} {} \"{}\" {}{state}",
        h.id,
        age(now.secs() - h.arrived_at.secs()),
        h.size,
        h.mailbox,
        angle(&h.sender),
        shorten(&h.subject, 50),
        h.reason,
    )
}

pub async fn run(admin: &Admin, cmd: QuarantineCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        QuarantineCmd::List { mailbox, sender } => {
            let mailbox_id = mailbox_id(admin, mailbox).await?;
            let sender = sender.as_deref().map(parse_sender).transpose()?;
            let now = admin.now();
            for h in store.list_held(mailbox_id, sender.as_deref()).await? {
                say!("{}", held_line(&h, now));
            }
        }
        QuarantineCmd::Count { mailbox } => {
            let mailbox_id = mailbox_id(admin, mailbox).await?;
            say!("{}", store.list_held(mailbox_id, None).await?.len());
        }
        QuarantineCmd::Show { id, body } => {
            let h = held_by_id(admin, &id).await?;
            show(admin, &h, body).await?;
        }
        QuarantineCmd::Release(target) => release(admin, target).await?,
        QuarantineCmd::Delete(target) => delete(admin, target).await?,
        QuarantineCmd::Restore { id } => {
            let h = held_by_id(admin, &id).await?;
            if h.state != HeldState::Deleted {
                bail!("held message {} is not deleted (state {})", h.id, h.state);
            }
            let back = admin
                .quarantine
                .owner_act(
                    h.mailbox_id,
                    OwnerAction::Undelete,
                    &[(h.id, h.sender.clone())],
                )
                .await?;
            if back.restored != 1 {
                bail!("held message {} is gone (purged meanwhile)", h.id);
            }
            say!(
                "restored message {} from {} to the quarantine of {}",
                h.id,
                angle(&h.sender),
                h.mailbox
            );
        }
    }
    Ok(())
}

async fn show(admin: &Admin, h: &HeldSummary, body: bool) -> anyhow::Result<()> {
    let store = &admin.store;
    let now = admin.now();
    let s = store.mailbox_settings(h.mailbox_id).await?;
    say!("id: {}", h.id);
    say!("mailbox: {}", h.mailbox);
    say!("state: {}", h.state);
    say!("queue-id: {}", h.queue_id);
    say!("recipient: <{}>", one_line(&h.original_rcpt));
    say!("envelope-sender: {}", angle(&h.env_sender));
    say!("sender: {}", angle(&h.sender));
    say!("sender-name: {}", one_line(&h.sender_name));
    say!("subject: {}", one_line(&h.subject));
    say!("message-id: {}", one_line(&h.message_id));
    say!("date: {}", one_line(&h.date_header));
    say!("size: {}", h.size);
    say!(
        "arrived: {} ({} ago)",
        h.arrived_at.log_format(),
        age(now.secs() - h.arrived_at.secs())
    );
    match store.deleted_at(h.id).await? {
        Some(at) if h.state == HeldState::Deleted => {
            let keep = i64::try_from(admin.quarantine.keep_deleted().as_secs()).unwrap_or(i64::MAX);
            say!(
                "deleted: {} (purged at {}; `boxtrap quarantine restore {}` until then)",
                at.log_format(),
                at.plus_secs(keep).log_format(),
                h.id
            );
        }
        _ => say!(
            "expires: {} (keep-days {})",
            h.arrived_at.plus_secs(s.keep_days * 86400).log_format(),
            s.keep_days
        ),
    }
    say!("reason: {}", h.reason);
    say!("reason-detail: {}", one_line(&h.reason_detail));
    if !h.auth_results.is_empty() {
        say!("authentication: {}", one_line(&h.auth_results));
    }
    match h.spam_score {
        Some(t) => {
            let sign = if t < 0 { "-" } else { "" };
            say!(
                "spam-score: {sign}{}.{} ({})",
                t.abs() / 10,
                t.abs() % 10,
                one_line(&h.spam_report)
            );
        }
        None if !h.spam_report.is_empty() => {
            say!("spam-score: none ({})", one_line(&h.spam_report))
        }
        None => {}
    }
    match h.challenge_id {
        None => say!("challenge: none"),
        Some(cid) => match store.challenge(cid).await? {
            Some(c) => {
                say!(
                    "challenge: {} ({}, expires {})",
                    c.id,
                    c.state,
                    c.expires_at.log_format()
                );
                if let Some(err) = store.challenge_delivery_error(cid).await? {
                    say!("challenge-delivery-error: {}", one_line(&err));
                }
            }
            None => say!("challenge: {cid} (gone)"),
        },
    }
    let data = store.held_data(h.id).await?.unwrap_or_default();
    let shown = if body {
        &data[..]
    } else {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 2)
            .or_else(|| data.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
            .unwrap_or(data.len());
        &data[..end]
    };
    say!();
    say!("{}", printable(shown).trim_end_matches('\n'));
    Ok(())
}

/// What `release` or `delete` is asked to do, for the refusals that differ.
#[derive(Debug, Clone, Copy)]
enum Action {
    Release,
    Delete,
}

/// What a [`Target`] names, checked to be still held.
enum Held {
    /// One message by id, in state held.
    One(HeldSummary),
    /// Everything held from `sender` for `mailbox`: at least one message,
    /// each in state held.
    FromSender {
        mailbox: MailboxSettings,
        sender: String,
        held: Vec<HeldSummary>,
    },
}

/// Resolves a target by id or by sender and mailbox, and refuses it unless
/// something there is still held (not already claimed by a release).
async fn still_held(admin: &Admin, target: Target, action: Action) -> anyhow::Result<Held> {
    if let Some(id) = target.id {
        let h = held_by_id(admin, &id).await?;
        if h.state == HeldState::Deleted {
            match action {
                Action::Release => bail!(
                    "held message {} is deleted; restore it first: boxtrap quarantine restore {}",
                    h.id,
                    h.id
                ),
                Action::Delete => bail!("held message {} is already deleted", h.id),
            }
        }
        if h.state != HeldState::Held {
            match action {
                Action::Release => bail!("held message {} is already being released", h.id),
                Action::Delete => {
                    bail!(
                        "held message {} is being released and cannot be deleted",
                        h.id
                    )
                }
            }
        }
        return Ok(Held::One(h));
    }
    let (Some(mailbox), Some(sender)) = (target.mailbox, target.sender) else {
        bail!("give a held message id, or --sender and --mailbox");
    };
    let sender = parse_sender(&sender)?;
    let mailbox = admin.mailbox(&mailbox).await?;
    let held: Vec<_> = admin
        .store
        .list_held(Some(mailbox.id), Some(&sender))
        .await?
        .into_iter()
        .filter(|h| h.state == HeldState::Held)
        .collect();
    if held.is_empty() {
        let none = format!("no mail from {sender} is held for {}", mailbox.address);
        match action {
            Action::Release => bail!(
                "{none}; to allow the sender anyway: boxtrap list add {} allow {sender}",
                mailbox.address
            ),
            Action::Delete => bail!(none),
        }
    }
    Ok(Held::FromSender {
        mailbox,
        sender,
        held,
    })
}

async fn release(admin: &Admin, target: Target) -> anyhow::Result<()> {
    let main_log = admin.config.main_log_path();
    match still_held(admin, target, Action::Release).await? {
        Held::One(h) => {
            if !admin.quarantine.release_one(h.id).await? {
                bail!(
                    "held message {} could not be delivered now; see the main log ({}); \
                     the sweeper of `boxtrap serve` will retry",
                    h.id,
                    main_log.display()
                );
            }
            say!(
                "released message {} from {} to {} (the sender is not allowed; \
                 use `quarantine release --sender` for that)",
                h.id,
                angle(&h.sender),
                h.mailbox
            );
        }
        Held::FromSender {
            mailbox, sender, ..
        } => {
            let n = admin
                .quarantine
                .release_sender(mailbox.id, &sender, ReleasedBy::Owner)
                .await?;
            say!(
                "released {n} message(s) from {sender} to {}; {sender} is on the allow list",
                mailbox.address
            );
            let left = admin
                .store
                .list_held(Some(mailbox.id), Some(&sender))
                .await?
                .len();
            if left > 0 {
                bail!(
                    "{left} message(s) from {sender} could not be delivered now; \
                     see the main log ({})",
                    main_log.display()
                );
            }
        }
    }
    Ok(())
}

async fn delete(admin: &Admin, target: Target) -> anyhow::Result<()> {
    match still_held(admin, target, Action::Delete).await? {
        Held::One(h) => {
            if !admin.quarantine.delete_one(h.id).await? {
                bail!(
                    "held message {} is gone (released or deleted meanwhile)",
                    h.id
                );
            }
            say!(
                "deleted message {} from {} to {} (`boxtrap quarantine restore {}` undoes it)",
                h.id,
                angle(&h.sender),
                h.mailbox,
                h.id
            );
        }
        Held::FromSender {
            mailbox,
            sender,
            held,
        } => {
            let mut n = 0;
            for h in &held {
                if admin.quarantine.delete_one(h.id).await? {
                    n += 1;
                }
            }
            say!(
                "deleted {n} message(s) from {sender} to {}",
                mailbox.address
            );
        }
    }
    Ok(())
}
