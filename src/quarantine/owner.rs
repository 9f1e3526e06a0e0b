//! What a mailbox's owner does to held mail from the web UI and the JSON
//! API: one set of actions on a set of held messages (one, a selection, or
//! everything a search matched), each reporting what it did.
//!
//! Targets are `(id, sender)` pairs the caller read scoped by the owner's
//! mailbox; the actions act on that mailbox only. A release delivers the
//! original bytes to this one mailbox (as [`Quarantine::release_one`]
//! does, with the trace of the main log's `R=quarantine` line) and never
//! screens the message again.

use super::release::ReleasedBy;
use super::{Quarantine, QuarantineError};
use crate::clock::Timestamp;
use crate::policy::rules::{ListKind, SenderRule};
use crate::store::deleted::ActedBy;
use crate::store::held::{ActivityAction, sender_domain};
use crate::store::lists::{RuleAdded, RuleSource};
use serde::Serialize;
use std::collections::BTreeSet;

crate::store::column::text_enum! {
    /// An owner's action on held mail (`action` in the API and the forms).
    pub enum OwnerAction("action") {
        /// Deliver these messages.
        Deliver = "deliver",
        /// Deliver everything held from these messages' senders.
        DeliverAll = "deliver_all",
        /// Allow these senders and deliver everything held from them.
        Allow = "allow",
        /// Allow these senders' domains and deliver everything held from them.
        AllowDomain = "allow_domain",
        /// Block these senders and delete what is held from them.
        Block = "block",
        /// Block these senders' domains and delete what is held from them.
        BlockDomain = "block_domain",
        /// Ignore these senders (drop their mail silently) and delete what is held from them.
        Ignore = "ignore",
        /// Delete these messages.
        Delete = "delete",
        /// Delete everything held from these messages' senders.
        DeleteAll = "delete_all",
        /// Restore these deleted messages to the quarantine.
        Undelete = "undelete",
        /// Mark these messages seen.
        MarkSeen = "mark_seen",
        /// Mark these messages not seen.
        MarkUnseen = "mark_unseen",
    }
}

/// What an action did, in counts: what the owner is told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionReport {
    pub delivered: usize,
    /// Deleted softly: restorable until the sweeper purges them.
    pub deleted: usize,
    /// When they were deleted (microseconds since the epoch): the same for
    /// every message one action deleted, so an "Undo" can name them all
    /// (`undelete` with `deleted_at`); `None` when none was.
    pub deleted_at: Option<i64>,
    /// Deleted messages restored to the quarantine.
    pub restored: usize,
    /// Messages marked seen or not seen.
    pub marked: usize,
    /// Rules added to the lists, as `"allow from ^bob@example\.com$"`.
    pub rules_added: Vec<String>,
    /// Messages already being delivered, or gone, when the action came.
    pub skipped: usize,
    /// Senders that could not be listed: the list is full, or the message
    /// has no From: address.
    pub not_listed: Vec<String>,
}

impl Quarantine {
    /// Carries out `action` for the owner of `mailbox_id` on `targets`
    /// (`(held id, From: address)`, read scoped by that mailbox). Rules go
    /// on the lists within `[challenge] max_rules_per_list`.
    pub async fn owner_act(
        &self,
        mailbox_id: i64,
        action: OwnerAction,
        targets: &[(i64, String)],
    ) -> Result<ActionReport, QuarantineError> {
        self.owner_act_by(mailbox_id, action, targets, ActedBy::default())
            .await
    }

    /// [`Quarantine::owner_act`], recording `by` (an admin acting for the
    /// owner, the web client's address) in the activity lines of deletes
    /// and restores.
    pub async fn owner_act_by(
        &self,
        mailbox_id: i64,
        action: OwnerAction,
        targets: &[(i64, String)],
        by: ActedBy<'_>,
    ) -> Result<ActionReport, QuarantineError> {
        let mut report = ActionReport::default();
        // One time for every delete of this action: its "Undo" key.
        let now = self.clock.now();
        let ids: Vec<i64> = targets.iter().map(|(id, _)| *id).collect();
        let senders: BTreeSet<&str> = targets.iter().map(|(_, s)| s.as_str()).collect();
        let domains: BTreeSet<String> = senders
            .iter()
            .map(|s| sender_domain(s))
            .filter(|d| !d.is_empty())
            .collect();
        match action {
            OwnerAction::Deliver => {
                self.deliver_counted(&ids, &mut report).await?;
            }
            OwnerAction::Delete => {
                self.delete_counted(mailbox_id, &ids, now, by, &mut report)
                    .await?;
            }
            OwnerAction::DeliverAll => {
                let mut all = Vec::new();
                for s in &senders {
                    all.extend(self.store.held_ids_from(mailbox_id, Some(s), None).await?);
                }
                self.deliver_counted(&all, &mut report).await?;
            }
            OwnerAction::DeleteAll => {
                let mut all = Vec::new();
                for s in &senders {
                    all.extend(self.store.held_ids_from(mailbox_id, Some(s), None).await?);
                }
                self.delete_counted(mailbox_id, &all, now, by, &mut report)
                    .await?;
            }
            OwnerAction::Undelete => {
                let back = self.store.restore_held(mailbox_id, &ids, now, by).await?;
                report.restored = back.len();
                report.skipped = ids.len() - back.len();
            }
            OwnerAction::MarkSeen | OwnerAction::MarkUnseen => {
                let seen = action == OwnerAction::MarkSeen;
                report.marked = self.store.mark_seen(mailbox_id, &ids, seen, now).await?;
            }
            OwnerAction::Allow => {
                for s in senders {
                    if s.is_empty() {
                        report
                            .not_listed
                            .push("a message without a From: address".into());
                        continue;
                    }
                    let rule = SenderRule::exact_sender(s);
                    // Listed first, within the limit; release_sender then
                    // finds the rule there.
                    if self
                        .list(mailbox_id, ListKind::Allow, &rule, &mut report)
                        .await?
                    {
                        report.delivered += self
                            .release_sender(mailbox_id, s, ReleasedBy::Owner)
                            .await?;
                    }
                }
            }
            OwnerAction::AllowDomain => {
                for d in &domains {
                    let rule = domain_rule(d)?;
                    if self
                        .list(mailbox_id, ListKind::Allow, &rule, &mut report)
                        .await?
                    {
                        let ids = self.store.held_ids_from(mailbox_id, None, Some(d)).await?;
                        self.deliver_counted(&ids, &mut report).await?;
                    }
                }
            }
            OwnerAction::Block | OwnerAction::Ignore => {
                let kind = if action == OwnerAction::Block {
                    ListKind::Block
                } else {
                    ListKind::Ignore
                };
                for s in senders {
                    if s.is_empty() {
                        report
                            .not_listed
                            .push("a message without a From: address".into());
                        continue;
                    }
                    let rule = SenderRule::exact_sender(s);
                    let from = (Some(s), None);
                    self.list_and_delete(mailbox_id, kind, &rule, from, (now, by), &mut report)
                        .await?;
                }
            }
            OwnerAction::BlockDomain => {
                for d in &domains {
                    let rule = domain_rule(d)?;
                    let from = (None, Some(d.as_str()));
                    self.list_and_delete(
                        mailbox_id,
                        ListKind::Block,
                        &rule,
                        from,
                        (now, by),
                        &mut report,
                    )
                    .await?;
                }
            }
        }
        Ok(report)
    }

    /// Lists `rule`, then deletes what is held from the sender or domain
    /// `from` at `when.0` (nothing when the list is full).
    async fn list_and_delete(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
        from: (Option<&str>, Option<&str>),
        when: (Timestamp, ActedBy<'_>),
        report: &mut ActionReport,
    ) -> Result<(), QuarantineError> {
        if self.list(mailbox_id, kind, rule, report).await? {
            let ids = self.store.held_ids_from(mailbox_id, from.0, from.1).await?;
            self.delete_counted(mailbox_id, &ids, when.0, when.1, report)
                .await?;
        }
        Ok(())
    }

    async fn deliver_counted(
        &self,
        ids: &[i64],
        report: &mut ActionReport,
    ) -> Result<(), QuarantineError> {
        let delivered = self.release_many(ids).await?;
        report.delivered += delivered;
        report.skipped += ids.len() - delivered;
        Ok(())
    }

    async fn delete_counted(
        &self,
        mailbox_id: i64,
        ids: &[i64],
        now: Timestamp,
        by: ActedBy<'_>,
        report: &mut ActionReport,
    ) -> Result<(), QuarantineError> {
        let gone = self.delete_held(mailbox_id, ids, now, by).await?.len();
        report.deleted += gone;
        report.skipped += ids.len() - gone;
        if gone > 0 {
            report.deleted_at = Some(now.0);
        }
        Ok(())
    }

    /// Puts `rule` on the list within the limit; `false` when the list is
    /// full (said in the report). A rule already there counts as listed.
    async fn list(
        &self,
        mailbox_id: i64,
        kind: ListKind,
        rule: &SenderRule,
        report: &mut ActionReport,
    ) -> Result<bool, QuarantineError> {
        let limit = self.config.max_rules_per_list as usize;
        let now = self.clock.now();
        // Allowed from the quarantine reads as a release by the owner;
        // a block or ignore as the owner's own entry.
        let source = match kind {
            ListKind::Allow => RuleSource::Release(ReleasedBy::Owner.as_str().to_owned()),
            _ => RuleSource::Owner,
        };
        let line = format!("{} {}", kind.as_str(), rule.to_line());
        match self
            .store
            .add_rule_within(mailbox_id, kind, rule, limit, &source, now)
            .await?
        {
            RuleAdded::Added => {
                self.store
                    .log_activity(
                        mailbox_id,
                        now,
                        ActivityAction::ListChanged,
                        rule.pattern(),
                        &format!("added to the {} list by the owner", kind.as_str()),
                    )
                    .await?;
                report.rules_added.push(line);
                Ok(true)
            }
            RuleAdded::AlreadyThere => Ok(true),
            RuleAdded::ListFull { rules, limit } => {
                report.not_listed.push(format!(
                    "{line} (the {} list is full: {rules} of {limit} rules)",
                    kind.as_str()
                ));
                Ok(false)
            }
        }
    }
}

/// `from .*@example\.com$`: every address at the domain (not its subdomains).
fn domain_rule(domain: &str) -> Result<SenderRule, QuarantineError> {
    SenderRule::domain(domain).map_err(|e| {
        QuarantineError::Store(crate::store::StoreError::Conflict(format!(
            "no rule can be made for the domain {domain:?}: {e}"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_read_by_name() {
        assert_eq!(
            "deliver_all".parse::<OwnerAction>().unwrap(),
            OwnerAction::DeliverAll
        );
        assert!("explode".parse::<OwnerAction>().is_err());
    }
}
