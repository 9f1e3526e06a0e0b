//! The parsed-record cache mail-auth consults before it asks the DNS: SPF,
//! DKIM key and DMARC records, each kept until its DNS TTL runs out (the
//! `valid_until` mail-auth gives), at most `capacity` of them. With it, a
//! sender's records are parsed once (an RSA key decoded once, not for
//! every message), not on every message as the resolver's own cache of raw
//! answers would have it.

use mail_auth::{ResolverCache, Txt};
use std::borrow::Borrow;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The longest any entry is kept, whatever its TTL says.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// A bounded, TTL-respecting cache of parsed TXT records, shared by every
/// clone.
#[derive(Clone)]
pub struct TxtCache(moka::sync::Cache<Box<str>, (Txt, Instant)>);

impl TxtCache {
    /// A cache of at most `capacity` records.
    pub fn new(capacity: u64) -> TxtCache {
        TxtCache(
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(MAX_TTL)
                .build(),
        )
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.0.get(name) {
            Some((txt, valid_until)) if valid_until > Instant::now() => Some(txt),
            Some(_) => {
                self.0.invalidate(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove(name).map(|(txt, _)| txt)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        if valid_until > Instant::now() {
            self.0.insert(key, (value, valid_until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::Error;

    #[test]
    fn an_entry_lives_until_its_ttl_and_no_longer() {
        let cache = TxtCache::new(10);
        let now = Instant::now();
        cache.insert(
            "a.example.".into(),
            Txt::Error(Error::ParseError),
            now + Duration::from_secs(60),
        );
        assert!(cache.get("a.example.").is_some());
        cache.insert("b.example.".into(), Txt::Error(Error::ParseError), now);
        assert!(
            cache.get("b.example.").is_none(),
            "already expired: not kept"
        );
        assert!(cache.remove("a.example.").is_some());
        assert!(cache.get("a.example.").is_none());
    }
}
