//! The sweeper's pass: held mail past its mailbox's keep-days is purged,
//! open challenges past their expiry are closed, and releases that died
//! midway (the process was killed) are finished.

use super::release::ReleasedBy;
use super::{Quarantine, QuarantineError};
use crate::store::held::ActivityAction;
use std::sync::Arc;

/// What one pass of the sweeper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Held messages removed after the mailbox's keep-days.
    pub expired: usize,
    /// Challenges closed unanswered.
    pub challenges_expired: usize,
    /// Releases cut short earlier, now delivered.
    pub releases_finished: usize,
}

impl Quarantine {
    /// One pass of the sweeper.
    pub async fn sweep_once(&self) -> Result<SweepReport, QuarantineError> {
        let now = self.clock.now();
        // Picks up `boxtrap key rotate` (or another node's new key) for signing.
        self.challenges.reload_keys().await?;
        let expired = self.store.expired_held(now).await?;
        for h in &expired {
            if self.store.remove_held(h.id).await? {
                self.removed(
                    h,
                    ActivityAction::Expired,
                    "expired after the mailbox's keep-days",
                )
                .await?;
            }
        }
        let challenges = self.store.expire_challenges(now).await?;
        for c in &challenges {
            self.store
                .log_activity(
                    c.mailbox_id,
                    now,
                    ActivityAction::ChallengeExpired,
                    &c.sender,
                    "no answer in time",
                )
                .await?;
        }
        let stale = self.store.stale_releases(now.plus_secs(-300)).await?;
        let mut finished = 0;
        for id in stale {
            if self.deliver_held(id, ReleasedBy::Resumed).await?.is_some() {
                finished += 1;
            }
        }
        Ok(SweepReport {
            expired: expired.len(),
            challenges_expired: challenges.len(),
            releases_finished: finished,
        })
    }

    /// Runs the sweeper until shutdown.
    pub async fn run_sweeper(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = self.config.sweep_interval.0;
        loop {
            if let Err(e) = self.sweep_once().await {
                tracing::error!(error = %e, "quarantine sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }
}
