//! Routing a recipient address (Exim's routers): is it ours, and which
//! mailboxes does it reach?
//!
//! Order, as Postfix's local(8) and Exim's `local_part_suffix` do it: the
//! whole address as a mailbox or alias first, then with the `+tag`
//! subaddress removed. Matching is case-insensitive, and a quoted local
//! part that needs no quotes is the same as the unquoted one
//! (`"alice"@example.test` is `alice@example.test`, RFC 5321 §4.1.2), as
//! in Postfix and Exim.
//!
//! Recipients come parsed with the relaxed grammar
//! ([`EmailAddress::parse_relaxed`]); one that is not a mailbox or alias
//! (`taro..yamada@`, a 70-octet local part) simply is an unknown user.
//! The bare `RCPT TO:<Postmaster>` is qualified by the SMTP session
//! (`smtp::session`) before it gets here.

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
        let local = lookup_local(rcpt);
        let key = format!("{local}@{}", rcpt.domain());
        let found = self.store.resolve_for_delivery(&key).await?;
        if !found.is_empty() {
            return Ok(to_mailboxes(found));
        }
        if self.store.domain_id(rcpt.domain()).await?.is_none() {
            return Ok(Route::NotLocal);
        }
        if let Some(d) = self.delimiter
            && let Some((base, _tag)) = local.split_once(d)
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
        // RFC 5321 §4.5.1: postmaster must reach someone.
        if let Some(pm) = &self.postmaster
            && local == "postmaster"
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

/// The local part as looked up: lower case, and without quotes when what
/// they hold is a plain dot-atom (`"Alice"` → `alice`; `"john doe"` keeps
/// its quotes, as no mailbox of ours can have such a name).
fn lookup_local(rcpt: &EmailAddress) -> String {
    let local = rcpt.local_part();
    if let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"'))
        && !inner.is_empty()
        && inner.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
    {
        return inner.to_lowercase();
    }
    local.to_lowercase()
}

fn to_mailboxes(found: Vec<(MailboxRef, bool)>) -> Route {
    Route::Local(
        found
            .into_iter()
            .map(|(mailbox, challenge)| Target { mailbox, challenge })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> String {
        lookup_local(&EmailAddress::parse_relaxed(s, true).unwrap())
    }

    #[test]
    fn quotes_that_change_nothing_are_ignored_for_lookup() {
        assert_eq!(local("Alice@example.test"), "alice");
        assert_eq!(local("\"Alice\"@example.test"), "alice");
        assert_eq!(local("\"PostMaster\"@example.test"), "postmaster");
        assert_eq!(local("\"a.b+tag\"@example.test"), "a.b+tag");
        assert_eq!(local("\"john doe\"@example.test"), "\"john doe\"");
        assert_eq!(local("\"a..b\"@example.test"), "\"a..b\"");
        assert_eq!(local("\"a\\b\"@example.test"), "\"a\\b\"");
        assert_eq!(local("taro..yamada@example.test"), "taro..yamada");
    }
}
