//! Routing a recipient address (Exim's routers): is it ours, and which
//! mailboxes does it reach?
//!
//! Order, as Postfix's local(8) and Exim's `local_part_suffix` do it: the
//! whole address as a mailbox or alias first, then with the `+tag`
//! subaddress removed. Matching is case-insensitive.

use crate::address::EmailAddress;
use crate::store::mailboxes::MailboxRef;
use crate::store::{Store, StoreError};

/// One mailbox a recipient address reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mailbox: MailboxRef,
    /// Challenge-response is on for the mailbox.
    pub challenge: bool,
}

/// Where a recipient address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One or more local mailboxes.
    Local(Vec<Target>),
    /// A local domain, but no such mailbox or alias.
    UnknownUser,
    /// Not one of our domains: relaying.
    NotLocal,
}

#[derive(Clone)]
pub struct Router {
    store: Store,
    /// Subaddress separator, e.g. '+'; `None` turns subaddressing off.
    delimiter: Option<char>,
    /// Lookup key of the mailbox that takes postmaster@ mail by default.
    postmaster: Option<String>,
}

impl Router {
    pub fn new(store: Store, delimiter: &str, postmaster: &str) -> Router {
        Router {
            store,
            delimiter: delimiter.chars().next(),
            postmaster: EmailAddress::parse(postmaster).ok().map(|a| a.lookup_key()),
        }
    }

    /// One query for a known address (mailboxes exist only in local
    /// domains); the domain is looked at only when that finds nothing.
    pub async fn route(&self, rcpt: &EmailAddress) -> Result<Route, StoreError> {
        let key = rcpt.lookup_key();
        let found = self.store.resolve_for_delivery(&key).await?;
        if !found.is_empty() {
            return Ok(to_mailboxes(found));
        }
        if self.store.domain_id(rcpt.domain()).await?.is_none() {
            return Ok(Route::NotLocal);
        }
        if let Some(d) = self.delimiter {
            let local = rcpt.local_part().to_lowercase();
            if let Some((base, _tag)) = local.split_once(d)
                && !base.is_empty()
            {
                let found = self
                    .store
                    .resolve_for_delivery(&format!("{base}@{}", rcpt.domain()))
                    .await?;
                if !found.is_empty() {
                    return Ok(to_mailboxes(found));
                }
            }
        }
        // RFC 5321 §4.5.1: postmaster must reach someone.
        if let Some(pm) = &self.postmaster
            && rcpt.local_part().eq_ignore_ascii_case("postmaster")
        {
            let found = self.store.resolve_for_delivery(pm).await?;
            if !found.is_empty() {
                return Ok(to_mailboxes(found));
            }
            tracing::warn!(postmaster = %pm, "smtp.postmaster names no local mailbox");
        }
        Ok(Route::UnknownUser)
    }
}

fn to_mailboxes(found: Vec<(MailboxRef, bool)>) -> Route {
    Route::Local(
        found
            .into_iter()
            .map(|(mailbox, challenge)| Target { mailbox, challenge })
            .collect(),
    )
}
