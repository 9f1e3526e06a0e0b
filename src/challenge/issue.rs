//! Challenges issued and verified: the token keys (loaded, created on
//! first start, reloaded when a token names a key this node has not seen),
//! the link, the notice mails to senders and the check of a token that
//! comes back by link or reply. The quarantine decides *when* to challenge;
//! this module owns *what* a challenge is.

use super::notice::{self, Built, Notice, NoticeError};
use super::templates::{self, TemplateName, TemplateVars};
use super::token::{self, Claims, Keyring, TokenError, TokenKey};
use crate::clock::{Clock, Timestamp};
use crate::config::{ChallengeConfig, Config};
use crate::policy::facts::MessageFacts;
use crate::store::held::{self, ActivityAction, ChallengeState, NewOutbound, SendCaps};
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use std::sync::{Arc, RwLock};

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

/// Why the token keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("token key {id} is unusable: {error}")]
    Unusable { id: u32, error: TokenError },
    #[error("the current token key {0} is missing")]
    Missing(u32),
}

/// Loads the token keys, creating the first one (or taking the configured
/// secret) when there is none.
pub async fn load_keyring(store: &Store, config: &ChallengeConfig) -> Result<Keyring, KeyError> {
    let bad = |id: u32| move |error: TokenError| KeyError::Unusable { id, error };
    if !config.secret.is_empty() {
        let key = TokenKey::from_hex(0, &config.secret).map_err(bad(0))?;
        let (stored, _) = store.token_keys().await?;
        let others = stored
            .iter()
            .filter(|(id, _)| *id != 0)
            .filter_map(|(id, hex)| TokenKey::from_hex(*id, hex).ok())
            .collect();
        return Ok(Keyring::new(key, others));
    }
    let (mut stored, mut current) = store.token_keys().await?;
    if current.is_none() {
        let key = TokenKey::generate(1);
        match store.add_token_key(1, &key.to_hex(), true).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        (stored, current) = store.token_keys().await?;
    }
    let current_id = current.unwrap_or(1);
    let mut keys: Vec<TokenKey> = Vec::new();
    for (id, hex) in &stored {
        keys.push(TokenKey::from_hex(*id, hex).map_err(bad(*id))?);
    }
    let pos = keys
        .iter()
        .position(|k| k.id == current_id)
        .ok_or(KeyError::Missing(current_id))?;
    let cur = keys.remove(pos);
    Ok(Keyring::new(cur, keys))
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
}

const DAY: i64 = 86400;

impl Challenges {
    pub async fn new(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Challenges, KeyError> {
        let keyring = load_keyring(&store, &config.challenge).await?;
        Ok(Challenges {
            store,
            clock,
            config: config.challenge.clone(),
            base_url: config.base_url(),
            hostname: config.hostname.clone(),
            keyring: RwLock::new(keyring),
        })
    }

    /// The keys tokens are signed and checked with.
    pub fn keyring(&self) -> Keyring {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub async fn reload_keys(&self) -> Result<(), KeyError> {
        let k = load_keyring(&self.store, &self.config).await?;
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

    /// Gathers a notice mail from `from` (the address that was mailed, or
    /// the mailbox) to `to`: the template text, its variables, the headers.
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

    /// Checks a token: well-formed, signed by one of our keys for the
    /// challenge it names, not expired, not used.
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        let now = self.clock.now();
        let parts = token::decode(token).map_err(|_| VerifyError::Malformed)?;
        let c = match self.store.challenge(parts.challenge_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(VerifyError::Unknown),
            Err(e) => {
                tracing::error!(error = %e, "challenge lookup failed");
                return Err(VerifyError::Unknown);
            }
        };
        let mut result = token::verify(&self.keyring(), &parts, &c.mailbox, &c.sender, now);
        if let Err(TokenError::UnknownKey(_)) = result
            && self.reload_keys().await.is_ok()
        {
            result = token::verify(&self.keyring(), &parts, &c.mailbox, &c.sender, now);
        }
        match result {
            Ok(()) => {}
            Err(TokenError::Expired) => return Err(VerifyError::Expired),
            Err(TokenError::BadSignature) | Err(TokenError::UnknownKey(_)) => {
                return Err(VerifyError::BadSignature);
            }
            Err(_) => return Err(VerifyError::Malformed),
        }
        match c.state {
            ChallengeState::Open => {}
            ChallengeState::Expired => return Err(VerifyError::Expired),
            ChallengeState::Verified => return Err(VerifyError::AlreadyUsed),
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
