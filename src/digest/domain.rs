//! Domain digests: an admin subscribes an address (a local mailbox or any
//! other) to a digest of the mail held for every mailbox of one of our
//! domains (`boxtrap digest subscribe`, the `/admin/digests` page). The
//! pass that sends them is [`super::Digests::run_once`]; this is what the
//! CLI and the page share: reading what was typed, naming the field that
//! is wrong, and the changes themselves.

use crate::address::{Domain, EmailAddress};
use crate::clock::Timestamp;
use crate::store::digest::{DigestFrequency, DomainDigest, Subscribed};
use crate::store::{Store, StoreError};

/// A subscription as typed, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Where the digest goes, in lower case (as mailboxes are looked up):
    /// one subscription per address and domain, whatever the case typed.
    pub address: String,
    /// One of our domains (checked by the store when it is saved).
    pub domain: String,
    pub frequency: DigestFrequency,
}

/// Why a subscription was refused: the field (as the CLI and the form
/// name it) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct Refused {
    pub field: &'static str,
    pub why: String,
}

fn refused(field: &'static str, why: String) -> Refused {
    Refused { field, why }
}

/// The address a digest goes to: a plain address (no display name, no
/// address literal), in lower case.
pub fn parse_address(typed: &str) -> Result<String, Refused> {
    let t = typed.trim();
    let a = EmailAddress::parse(t)
        .map_err(|e| refused("address", format!("{t:?} is not an email address ({e})")))?;
    if a.domain().as_str().starts_with('[') {
        return Err(refused(
            "address",
            format!("{t:?}: an address literal cannot receive digests"),
        ));
    }
    Ok(a.lookup_key().to_lowercase())
}

/// The domain of a subscription, in lower case.
pub fn parse_domain(typed: &str) -> Result<String, Refused> {
    let t = typed.trim();
    match Domain::parse(t) {
        Ok(d) if !d.as_str().starts_with('[') => Ok(d.as_str().to_owned()),
        _ => Err(refused(
            "domain",
            format!("{t:?} is not a domain name such as example.com"),
        )),
    }
}

/// hourly, daily or weekly (never is no subscription: unsubscribe).
pub fn parse_frequency(typed: &str) -> Result<DigestFrequency, Refused> {
    let t = typed.trim();
    match t.to_ascii_lowercase().parse::<DigestFrequency>() {
        Ok(DigestFrequency::Never) => Err(refused(
            "frequency",
            "never is no subscription; unsubscribe instead".to_owned(),
        )),
        Ok(f) => Ok(f),
        Err(_) => Err(refused(
            "frequency",
            format!("{t:?} is not hourly, daily or weekly"),
        )),
    }
}

/// Checks a whole subscription, the first bad field first.
pub fn parse(address: &str, domain: &str, frequency: &str) -> Result<Subscription, Refused> {
    Ok(Subscription {
        address: parse_address(address)?,
        domain: parse_domain(domain)?,
        frequency: parse_frequency(frequency)?,
    })
}

/// Why a subscription could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// A field is wrong (the domain is not ours): nothing was changed.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(StoreError),
}

/// Saves a checked subscription (or changes its frequency).
pub async fn subscribe(
    store: &Store,
    s: &Subscription,
    now: Timestamp,
) -> Result<Subscribed, SubscribeError> {
    match store
        .subscribe_domain_digest(&s.domain, &s.address, s.frequency, now)
        .await
    {
        Ok(done) => Ok(done),
        Err(StoreError::NotFound(_)) => Err(refused(
            "domain",
            format!(
                "{} is not one of our domains (see `boxtrap domain list`)",
                s.domain
            ),
        )
        .into()),
        Err(e) => Err(SubscribeError::Store(e)),
    }
}

/// The subscriptions, by domain and address.
pub async fn list(store: &Store) -> Result<Vec<DomainDigest>, StoreError> {
    store.domain_digests().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_is_checked_and_named() {
        let s = parse(" Admin@Example.TEST ", "Example.Test", "Weekly").unwrap();
        assert_eq!(s.address, "admin@example.test");
        assert_eq!(s.domain, "example.test");
        assert_eq!(s.frequency, DigestFrequency::Weekly);
        assert_eq!(
            parse("nobody", "example.test", "daily").unwrap_err().field,
            "address"
        );
        assert_eq!(
            parse("a@[127.0.0.1]", "example.test", "daily")
                .unwrap_err()
                .field,
            "address"
        );
        assert_eq!(
            parse("a@b.test", "not a domain", "daily")
                .unwrap_err()
                .field,
            "domain"
        );
        assert_eq!(
            parse("a@b.test", "example.test", "monthly")
                .unwrap_err()
                .field,
            "frequency"
        );
        let never = parse("a@b.test", "example.test", "never").unwrap_err();
        assert_eq!(
            never.to_string(),
            "frequency: never is no subscription; unsubscribe instead"
        );
    }
}
