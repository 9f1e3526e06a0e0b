//! Challenges issued and verified: the token keys (loaded, created on
//! first start, rotated, retired and revoked, read afresh for every token
//! that comes back), the link, the notice mails to senders and the check
//! of a token that comes back by link or reply. The quarantine decides
//! *when* to challenge; this module owns *what* a challenge is.
//!
//! A key that stops signing (`boxtrap key rotate`, or set aside by a
//! configured secret) is retired: it verifies the tokens it signed until
//! the last of them expires (the latest expiry of an open challenge, or
//! the longest keep-days from the moment it was retired, whichever is
//! later, plus one `challenge.sweep_interval`, the time a running `serve`
//! takes to pick up a new key), then nothing. `boxtrap key retire ID`
//! revokes one at once. Whatever a token says, it releases nothing after
//! its challenge's stored expiry.
//!
//! [`Challenges::verify`] answers a made-up challenge id and a bad tag on
//! a real one alike ([`VerifyError::Unknown`] and
//! [`VerifyError::BadSignature`] are told apart only for the log): both
//! read the keys and look the id up, and both compute the MAC, so neither
//! the page nor its timing says which ids exist.

use super::notice::{self, Built, Notice, NoticeError};
use super::sign::{Signer, Signers};
use super::templates::{self, TemplateName, TemplateVars};
use super::token::{self, Claims, Keyring, RetiredKey, TokenError, TokenKey};
use crate::clock::{Clock, Timestamp};
use crate::config::{ChallengeConfig, Config};
use crate::policy::facts::MessageFacts;
use crate::store::held::{self, ActivityAction, ChallengeState, NewOutbound, SendCaps};
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Why a token did not release anything; shown on the verification page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("this link is not valid")]
    Malformed,
    #[error("this link has been tampered with")]
    BadSignature,
    #[error("this link has expired")]
    Expired,
    #[error("this link does not belong to any waiting message")]
    Unknown,
    #[error("this link has already been used")]
    AlreadyUsed,
    /// The database could not be read: nothing is known about the link
    /// (503, try again).
    #[error("the link cannot be checked right now")]
    Unavailable,
}

/// Whether `address` (as mailed) is the mailbox's own: its address or an
/// extra address, with or without a `+subaddress`; not an alias.
fn is_own_address(s: &MailboxSettings, address: &str) -> bool {
    let address = address.to_lowercase();
    let base = match address.split_once('@') {
        Some((local, domain)) => match local.split_once('+') {
            Some((base, _)) if !base.is_empty() => format!("{base}@{domain}"),
            _ => address.clone(),
        },
        None => address.clone(),
    };
    [&address, &base].into_iter().any(|a| {
        *a == s.address.to_lowercase() || s.extra_addresses.iter().any(|x| x.to_lowercase() == *a)
    })
}

/// A verified token: which challenge it answers.
#[derive(Debug, Clone)]
pub struct Verified {
    pub challenge_id: i64,
    pub mailbox_id: i64,
    pub mailbox: String,
    /// The address the challenge spoke as (the one the sender mailed): what
    /// pages shown to the sender name, never the mailbox behind an alias.
    pub addressed_to: String,
    pub sender: String,
}

/// Why the token keys could not be loaded or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keys could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored or configured secret is not 64 hex digits.
    #[error("token key {id} is unusable: {error}")]
    Unusable { id: u32, error: TokenError },
    /// Every id up to `u32::MAX` is taken.
    #[error("no token key id is left (the largest is in use)")]
    NoIdLeft,
}

/// Until when a key that stops signing at `now` must verify what it
/// signed: the latest expiry of a token signed so far or about to be
/// signed (see [`Store::latest_token_expiry`]), plus one sweep interval,
/// the time a running `serve` may go on signing with it before it reloads
/// the keys.
pub async fn retired_key_valid_until(
    store: &Store,
    config: &ChallengeConfig,
    now: Timestamp,
) -> Result<Timestamp, StoreError> {
    let lag = i64::try_from(config.sweep_interval.0.as_secs()).unwrap_or(i64::MAX);
    Ok(store.latest_token_expiry(now).await?.plus_secs(lag))
}

/// Makes a new key current; the one that signed until now is retired and
/// verifies its tokens until [`retired_key_valid_until`]. Returns the new
/// key's id and, if there was one, the retired key's id and validity.
pub async fn rotate_key(
    store: &Store,
    config: &ChallengeConfig,
    now: Timestamp,
) -> Result<(u32, Option<(u32, Timestamp)>), KeyError> {
    let id = store
        .token_keys()
        .await?
        .next_id()
        .ok_or(KeyError::NoIdLeft)?;
    let until = retired_key_valid_until(store, config, now).await?;
    let key = TokenKey::generate(id);
    let previous = store.add_token_key(id, &key.to_hex(), now, until).await?;
    Ok((id, previous.map(|p| (p, until))))
}

/// Loads the token keys, creating the first one (or taking the configured
/// secret) when there is none. A stored key that does not sign but has no
/// retirement record (retired by a version of boxtrap that kept none, or
/// set aside by a configured secret) is retired now; a revoked key is left
/// out. Without a configured secret, a current key that is missing,
/// retired or revoked is replaced by a new one.
pub async fn load_keyring(
    store: &Store,
    config: &ChallengeConfig,
    now: Timestamp,
) -> Result<Keyring, KeyError> {
    let bad = |id: u32| move |error: TokenError| KeyError::Unusable { id, error };
    let configured = !config.secret.is_empty();
    let mut stored = store.token_keys().await?;
    if !configured {
        let signing = stored
            .current
            .and_then(|id| stored.get(id))
            .filter(|k| k.retired.is_none() && k.revoked_at.is_none());
        if signing.is_none() {
            match rotate_key(store, config, now).await {
                // Another process made it first: take theirs.
                Ok(_) | Err(KeyError::Store(StoreError::Conflict(_))) => {}
                Err(e) => return Err(e),
            }
            stored = store.token_keys().await?;
        }
    }
    let signing = if configured { None } else { stored.current };
    let unrecorded: Vec<u32> = stored
        .keys
        .iter()
        .filter(|k| Some(k.id) != signing && k.retired.is_none() && k.revoked_at.is_none())
        .map(|k| k.id)
        .collect();
    if !unrecorded.is_empty() {
        let until = retired_key_valid_until(store, config, now).await?;
        for id in unrecorded {
            store.retire_token_key(id, now, until).await?;
        }
        stored = store.token_keys().await?;
    }
    let mut current = None;
    let mut retired = Vec::new();
    for k in &stored.keys {
        if k.revoked_at.is_some() || (configured && k.id == 0) {
            continue;
        }
        let key = TokenKey::from_hex(k.id, &k.hex).map_err(bad(k.id))?;
        match k.retired {
            Some((_, valid_until)) if Some(k.id) != signing => {
                retired.push(RetiredKey { key, valid_until })
            }
            _ if Some(k.id) == signing => current = Some(key),
            _ => {}
        }
    }
    let current = match current {
        Some(key) => key,
        None if configured => TokenKey::from_hex(0, &config.secret).map_err(bad(0))?,
        // Only when another process retired the new key in between.
        None => {
            return Err(StoreError::Conflict(
                "the current token key changed while loading; try again".into(),
            )
            .into());
        }
    };
    Ok(Keyring::new(current, retired))
}

/// Revokes key `id` at `now` (`boxtrap key retire`): no token it signed
/// verifies from then on, in this process or any other. The key that
/// signs cannot be revoked (rotate first). Returns false when it was
/// revoked already.
pub async fn revoke_key(store: &Store, id: u32, now: Timestamp) -> Result<bool, StoreError> {
    let stored = store.token_keys().await?;
    if stored.get(id).is_none() {
        return Err(StoreError::NotFound(format!(
            "no such token key: {id} (see `boxtrap key list`)"
        )));
    }
    if stored.current == Some(id) {
        return Err(StoreError::InUse(format!(
            "token key {id} is the current one, which signs new challenges: run \
             `boxtrap key rotate` first, then retire it"
        )));
    }
    store.revoke_token_key(id, now).await
}

/// A challenge about to be opened with a held message: its mail is built
/// inside the transaction that holds the message, once the challenge row
/// has the id the token signs. Owned, so the transaction can run on the
/// database writer (and again, on PostgreSQL, after a serialization failure).
#[derive(Debug, Clone)]
pub struct ChallengeDraft {
    pub notice: Notice,
    keyring: Keyring,
    mailbox: String,
    pub expires: Timestamp,
}

impl ChallengeDraft {
    /// Signs the token for challenge `id` to `sender` and builds its mail.
    /// Pure: no I/O.
    pub fn build(&self, id: i64, sender: &str) -> Result<Built, NoticeError> {
        let token = token::issue(
            &self.keyring,
            &Claims {
                mailbox: &self.mailbox,
                sender,
                challenge_id: id,
                expires: self.expires,
            },
        );
        self.notice.build(Some(&token))
    }
}

/// Issues and verifies challenges; shared by the quarantine and the web pages.
pub struct Challenges {
    store: Store,
    clock: Arc<dyn Clock>,
    config: ChallengeConfig,
    base_url: String,
    hostname: String,
    /// Loaded at start; reloaded when a token names a key we do not know
    /// (another node or `boxtrap key rotate` made it), and by the sweeper.
    keyring: RwLock<Keyring>,
    /// DKIM keys read so far, parsed, by domain, selector and creation
    /// time; a domain's entries are dropped when its keys change.
    dkim: Mutex<HashMap<(String, String, i64), Arc<Signer>>>,
}

const DAY: i64 = 86400;

impl Challenges {
    pub async fn new(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Challenges, KeyError> {
        let keyring = load_keyring(&store, &config.challenge, clock.now()).await?;
        Ok(Challenges {
            store,
            clock,
            config: config.challenge.clone(),
            base_url: config.base_url(),
            hostname: config.hostname.clone(),
            keyring: RwLock::new(keyring),
            dkim: Mutex::new(HashMap::new()),
        })
    }

    /// The keys tokens are signed and checked with.
    pub fn keyring(&self) -> Keyring {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reads the keys afresh: a key rotated, retired or revoked by the
    /// admin CLI or another node counts from now on.
    pub async fn reload_keys(&self) -> Result<(), KeyError> {
        let k = load_keyring(&self.store, &self.config, self.clock.now()).await?;
        if let Ok(mut w) = self.keyring.write() {
            *w = k;
        }
        Ok(())
    }

    /// The verification link for a token.
    pub fn link(&self, token: &str) -> String {
        notice::link(&self.base_url, token)
    }

    /// Gathers a challenge to `sender` for a message that was mailed to
    /// `rcpt` (the address used: the mailbox, an alias or an extra address).
    pub async fn draft(
        &self,
        s: &MailboxSettings,
        rcpt: &str,
        sender: &str,
        facts: &MessageFacts,
        now: Timestamp,
    ) -> Result<ChallengeDraft, StoreError> {
        Ok(ChallengeDraft {
            notice: self
                .notice(s, rcpt, TemplateName::Verify, sender, facts, 1)
                .await?,
            keyring: self.keyring(),
            mailbox: s.address.clone(),
            expires: now.plus_secs(s.keep_days * DAY),
        })
    }

    /// The DKIM keys that sign mail from `from` (the address that was
    /// mailed): those of its domain or, when it has none (an extra address
    /// elsewhere), those of the mailbox's domain; none: sent unsigned. Read
    /// for every mail, so a key `boxtrap dkim generate` made signs from
    /// the next mail on, in every process; each key is parsed once. A
    /// stored key that cannot be read is logged and left out.
    pub async fn dkim_signers(&self, from: &str, mailbox: &str) -> Result<Signers, StoreError> {
        let domain_of = |address: &str| {
            let (_, domain) = address.rsplit_once('@')?;
            crate::address::Domain::parse(domain).ok()
        };
        let mut keys = Vec::new();
        for domain in [domain_of(from), domain_of(mailbox)].into_iter().flatten() {
            keys = self.store.dkim_keys(domain.as_str()).await?;
            if !keys.is_empty() {
                break;
            }
        }
        let mut cache = match self.dkim.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(domain) = keys.first().map(|k| k.domain.clone()) {
            cache.retain(|(d, s, at), _| {
                *d != domain
                    || keys
                        .iter()
                        .any(|k| k.selector == *s && k.created_at.0 == *at)
            });
        }
        let mut signers = Vec::new();
        for k in &keys {
            let id = (k.domain.clone(), k.selector.clone(), k.created_at.0);
            if let Some(s) = cache.get(&id) {
                signers.push(s.clone());
                continue;
            }
            match Signer::new(k) {
                Ok(s) => {
                    let s = Arc::new(s);
                    cache.insert(id, s.clone());
                    signers.push(s);
                }
                Err(e) => tracing::warn!(error = %e, "DKIM key left out"),
            }
        }
        Ok(Signers::new(signers))
    }

    /// Gathers a notice mail from `from` (the address that was mailed, or
    /// the mailbox) to `to`: the template text, its variables, the headers
    /// and the DKIM keys that sign it.
    pub async fn notice(
        &self,
        s: &MailboxSettings,
        from: &str,
        name: TemplateName,
        to: &str,
        facts: &MessageFacts,
        held_count: i64,
    ) -> Result<Notice, StoreError> {
        let template = match self.store.template_override(s.id, name.as_str()).await? {
            Some(t) => t,
            None => templates::default_text(name).to_owned(),
        };
        // Speak as the address that was mailed, never the mailbox behind
        // it: an alias does not reveal whose mailbox it reaches, nor the
        // owner's name.
        let own = is_own_address(s, from);
        let mailbox_name = if own {
            s.display_name.clone()
        } else {
            String::new()
        };
        Ok(Notice {
            name,
            template,
            vars: TemplateVars {
                sender: to.to_owned(),
                // What the sender wrote reaches an address that has proved
                // nothing: quoted short, without links or control characters.
                sender_name: templates::quoted_name(facts.from_name.as_deref().unwrap_or("")),
                subject: templates::quoted_subject(&facts.subject),
                date: templates::quoted_date(facts.date.as_deref().unwrap_or("")),
                mailbox: from.to_owned(),
                mailbox_name: mailbox_name.clone(),
                token: String::new(),
                link: String::new(),
                held_count,
                keep_days: s.keep_days,
            },
            from_address: from.to_owned(),
            from_name: mailbox_name,
            to: to.to_owned(),
            in_reply_to: facts.message_id.clone(),
            marker: from.to_owned(),
            hostname: self.hostname.clone(),
            base_url: self.base_url.clone(),
            date: self.clock.now(),
            dkim: self.dkim_signers(from, &s.address).await?,
        })
    }

    /// Queues a notice (no token) to `to`, from `from` (the address that
    /// was mailed). Returns whether it was queued. Counted against the
    /// caps with the insert, in one write: a notice beyond a cap is not
    /// sent, and the activity log says which cap. A notice that cannot be
    /// built is logged and skipped. Neither ever fails the message that
    /// caused it.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_notice(
        &self,
        s: &MailboxSettings,
        from: &str,
        name: TemplateName,
        to: &str,
        facts: &MessageFacts,
        held_count: Option<i64>,
        caps: &SendCaps,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let notice = self
            .notice(s, from, name, to, facts, held_count.unwrap_or(0))
            .await?;
        let mail = match notice.build(None) {
            Ok(b) => b.data,
            Err(e) => {
                tracing::warn!(mailbox = %s.address, to, error = %e, "notice not sent");
                self.store
                    .log_activity(s.id, now, ActivityAction::NoticeFailed, to, &e.to_string())
                    .await?;
                return Ok(false);
            }
        };
        let job = Arc::new((s.id, name, to.to_owned(), mail, *caps, now));
        let capped = self
            .store
            .write(move |conn| {
                let job = job.clone();
                Box::pin(async move {
                    let (mailbox_id, name, to, mail, caps, now) = &*job;
                    let cap =
                        held::send_cap_reached(conn, caps, Some(*mailbox_id), to, *now).await?;
                    if cap.is_none() {
                        held::insert_outbound(
                            conn,
                            &NewOutbound {
                                kind: name.as_str(),
                                mailbox_id: Some(*mailbox_id),
                                challenge_id: None,
                                env_from: "",
                                rcpt: to,
                                data: mail,
                                now: *now,
                            },
                        )
                        .await?;
                    }
                    Ok(cap)
                })
            })
            .await?;
        if let Some(cap) = capped {
            self.store
                .log_activity(
                    s.id,
                    now,
                    ActivityAction::NoticeFailed,
                    to,
                    &format!("{name} not sent: rate limit reached ({cap})"),
                )
                .await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Whether `token` was issued by this server to `sender` for
    /// `mailbox` (the mailbox's address), whatever became of its challenge
    /// since: answered, expired or purged. Its signature covers both
    /// addresses, so a token made up, tampered with or issued to someone
    /// else is never taken for one.
    pub fn issued_to(&self, token: &str, mailbox: &str, sender: &str) -> bool {
        let Ok(parts) = token::decode(token) else {
            return false;
        };
        matches!(
            token::verify(&self.keyring(), &parts, mailbox, sender, self.clock.now()),
            Ok(()) | Err(TokenError::Expired)
        )
    }

    /// Checks a token: well-formed, signed by a key that may still verify
    /// (the current one, or a retired one until its last token expired)
    /// for the challenge it names, within both its own expiry and its
    /// challenge's stored one, not used.
    ///
    /// The keys are read afresh (a revocation counts at once) and the
    /// challenge looked up whatever the token says; when there is no such
    /// challenge the MAC is computed over stand-in addresses, so an unknown
    /// id ([`VerifyError::Unknown`]) and a bad tag
    /// ([`VerifyError::BadSignature`]) cost the same and the page shows
    /// them alike.
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        let parts = token::decode(token).map_err(|_| VerifyError::Malformed)?;
        if let Err(e) = self.reload_keys().await {
            tracing::error!(error = %e, "cannot read the token keys; using those loaded before");
        }
        let now = self.clock.now();
        let row = match self.store.challenge(parts.challenge_id).await {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(error = %e, "challenge lookup failed");
                return Err(VerifyError::Unavailable);
            }
        };
        const STAND_IN: &str = "unknown@challenge.invalid";
        let (mailbox, sender) = row.as_ref().map_or((STAND_IN, STAND_IN), |c| {
            (c.mailbox.as_str(), c.sender.as_str())
        });
        let signature = token::verify(&self.keyring(), &parts, mailbox, sender, now);
        let refused = match (&row, signature) {
            (_, Err(TokenError::Malformed | TokenError::UnsupportedVersion(_))) => {
                Some(VerifyError::Malformed)
            }
            (None, _) => Some(VerifyError::Unknown),
            (Some(_), Ok(())) => None,
            (Some(_), Err(TokenError::Expired)) => Some(VerifyError::Expired),
            (Some(_), Err(_)) => Some(VerifyError::BadSignature),
        };
        if let Some(e) = refused {
            // Both kinds of forgery leave the same trace.
            tracing::info!(challenge = parts.challenge_id, key = parts.key_id, error = %e, "token refused");
            return Err(e);
        }
        let Some(c) = row else {
            return Err(VerifyError::Unknown);
        };
        match c.state {
            ChallengeState::Open => {}
            ChallengeState::Expired => return Err(VerifyError::Expired),
            ChallengeState::Verified => return Err(VerifyError::AlreadyUsed),
        }
        // The token's own expiry is what its signer wrote; the row's is
        // what this server decided, and it wins.
        if now > c.expires_at {
            return Err(VerifyError::Expired);
        }
        Ok(Verified {
            challenge_id: c.id,
            mailbox_id: c.mailbox_id,
            addressed_to: if c.addressed_to.is_empty() {
                c.mailbox.clone()
            } else {
                c.addressed_to
            },
            mailbox: c.mailbox,
            sender: c.sender,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    const DAY: i64 = 86400;

    fn config(secret: &str) -> ChallengeConfig {
        let mut c = Config::load(None, Vec::new()).unwrap().challenge;
        c.secret = secret.to_owned();
        c
    }

    fn ids(k: &Keyring) -> (u32, Vec<u32>) {
        let current = k.current().id;
        let others = (1..10)
            .filter(|i| *i != current && k.find(*i).is_some())
            .collect();
        (current, others)
    }

    #[tokio::test]
    async fn keys_are_made_rotated_retired_and_revoked() {
        let db = testing::sqlite().await;
        let store = &db.store;
        let c = config("");
        let now = Timestamp::from_secs(1_000_000);
        let first = load_keyring(store, &c, now).await.unwrap();
        assert_eq!(ids(&first), (1, vec![]));
        assert_eq!(
            ids(&load_keyring(store, &c, now).await.unwrap()),
            (1, vec![])
        );

        let (id, retired) = rotate_key(store, &c, now).await.unwrap();
        let lag = c.sweep_interval.0.as_secs() as i64;
        // No mailbox: nothing signed can outlive the lag.
        assert_eq!((id, retired), (2, Some((1, now.plus_secs(lag)))));
        let k = load_keyring(store, &c, now).await.unwrap();
        assert_eq!(ids(&k), (2, vec![1]));

        assert!(matches!(
            revoke_key(store, 2, now).await,
            Err(StoreError::InUse(_))
        ));
        assert!(matches!(
            revoke_key(store, 9, now).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(revoke_key(store, 1, now).await.unwrap());
        assert!(!revoke_key(store, 1, now).await.unwrap());
        assert_eq!(
            ids(&load_keyring(store, &c, now).await.unwrap()),
            (2, vec![])
        );
    }

    #[tokio::test]
    async fn keys_retired_without_a_record_get_one_and_a_configured_secret_retires_the_rest() {
        let db = testing::sqlite().await;
        let store = &db.store;
        let now = Timestamp::from_secs(1_000_000);
        // As an older boxtrap left them: two keys, 2 current, no records.
        let hex = |c: char| c.to_string().repeat(64);
        store.add_token_key(1, &hex('1'), now, now).await.unwrap();
        sqlx::query("DELETE FROM settings WHERE name LIKE 'token_key_retired.%'")
            .execute(store.writer())
            .await
            .unwrap();
        store.add_token_key(2, &hex('2'), now, now).await.unwrap();
        sqlx::query("DELETE FROM settings WHERE name LIKE 'token_key_retired.%'")
            .execute(store.writer())
            .await
            .unwrap();
        let c = config("");
        load_keyring(store, &c, now).await.unwrap();
        let lag = c.sweep_interval.0.as_secs() as i64;
        let keys = store.token_keys().await.unwrap();
        assert_eq!(
            keys.get(1).unwrap().retired,
            Some((now, now.plus_secs(lag)))
        );
        assert_eq!(keys.get(2).unwrap().retired, None);

        // A configured secret signs; every stored key is retired.
        let configured = config(&"ab".repeat(32));
        let later = now.plus_secs(DAY);
        let k = load_keyring(store, &configured, later).await.unwrap();
        assert_eq!(ids(&k), (0, vec![1, 2]));
        let keys = store.token_keys().await.unwrap();
        assert_eq!(keys.get(2).unwrap().retired.map(|r| r.0), Some(later));
        // The secret taken away again: key 2 is retired, so a new one signs.
        let k = load_keyring(store, &config(""), later).await.unwrap();
        assert_eq!(ids(&k), (3, vec![1, 2]));
    }
}
