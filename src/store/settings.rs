//! Per-mailbox challenge-response settings, the extra addresses that count
//! as a mailbox, owners' template overrides and the challenge token keys.

use super::column::IntFlag;
use super::digest::DigestFrequency;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use sqlx::AnyConnection;

/// A mailbox's challenge-response settings (BoxTrapper's per-account
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailboxSettings {
    pub id: i64,
    pub address: String,
    #[sqlx(try_from = "IntFlag")]
    pub challenge_enabled: bool,
    /// Name on challenge mails; empty for none.
    pub display_name: String,
    /// Days held mail (and its challenge) is kept before it is purged.
    pub keep_days: i64,
    /// Spam score, in tenths of a point, below which mail is delivered
    /// without a challenge; `None`: off. New mailboxes: −25 (−2.5).
    pub spam_bypass_below: Option<i64>,
    /// Spam score, in tenths of a point, at or above which mail is held
    /// without a challenge; `None`: off. New mailboxes: 50 (5.0).
    pub spam_no_challenge_at: Option<i64>,
    /// Mail from an allowed sender also allows the other addresses in its
    /// To/Cc (capped per message, see the quarantine). Off by default
    /// (migration 0004 turned it off in every existing mailbox): until
    /// SPF/DKIM/DMARC exist, the sender it trusts can be forged.
    #[sqlx(try_from = "IntFlag")]
    pub whitelist_by_association: bool,
    /// People the owner writes to are allowed (once submission exists).
    #[sqlx(try_from = "IntFlag")]
    pub auto_whitelist_sent: bool,
    /// Send `verifyreleased` after a release.
    #[sqlx(try_from = "IntFlag")]
    pub notify_released: bool,
    /// Send `blacklist` when a blocked sender's mail is discarded after acceptance.
    #[sqlx(try_from = "IntFlag")]
    pub notify_blocked: bool,
    /// Held messages the quarantine may hold before new mail is refused
    /// at RCPT (452 4.2.2); `None`: the server's `[challenge]
    /// quarantine_max_messages`; 0: no limit.
    pub quarantine_max_messages: Option<i64>,
    /// Bytes the quarantine may hold, likewise; `None`: the server's
    /// `[challenge] quarantine_max_bytes`; 0: no limit.
    pub quarantine_max_bytes: Option<i64>,
    /// Further addresses that count as this mailbox (a table of their own,
    /// read separately).
    #[sqlx(skip)]
    pub extra_addresses: Vec<String>,
    /// Changes with every edit of the sender lists (read-only here).
    pub rules_version: i64,
    /// How often the owner gets a digest of newly held mail.
    pub digest: DigestFrequency,
    /// The owner's IANA time zone (`Europe/Berlin`), checked with
    /// [`parse_time_zone`] before it is saved; `UTC` by default (migration
    /// 0012). The owner's pages show times in it.
    pub time_zone: String,
}

/// The settings and extra addresses of mailbox `$1`, one row per address
/// (built once: it runs for every message to a challenge-response mailbox).
static SETTINGS_WITH_EXTRAS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("m.{c}")).collect();
    format!(
        "SELECT {}, a.address AS extra_address FROM mailboxes m
         LEFT JOIN mailbox_addresses a ON a.mailbox_id = m.id
         WHERE m.id = $1 ORDER BY a.address",
        columns.join(", ")
    )
});

/// A settings row joined with one of the mailbox's extra addresses.
#[derive(sqlx::FromRow)]
struct WithExtra {
    #[sqlx(flatten)]
    settings: MailboxSettings,
    extra_address: Option<String>,
}

const COLUMNS: &str = "id, address, challenge_enabled, display_name, keep_days, spam_bypass_below, \
     spam_no_challenge_at, whitelist_by_association, auto_whitelist_sent, notify_released, notify_blocked, rules_version, \
     quarantine_max_messages, quarantine_max_bytes, digest, time_zone";

impl Store {
    /// A mailbox's settings with its extra addresses, in one query (it is
    /// read for every message to a mailbox with challenge-response on).
    pub async fn mailbox_settings(&self, mailbox_id: i64) -> Result<MailboxSettings, StoreError> {
        let rows: Vec<WithExtra> =
            sqlx::query_as(sqlx::AssertSqlSafe(SETTINGS_WITH_EXTRAS.as_str()))
                .bind(mailbox_id)
                .fetch_all(self.pool())
                .await?;
        let mut rows = rows.into_iter();
        let first = rows
            .next()
            .ok_or_else(|| StoreError::NotFound(format!("no mailbox with id {mailbox_id}")))?;
        let mut s = first.settings;
        s.extra_addresses = std::iter::once(first.extra_address)
            .chain(rows.map(|r| r.extra_address))
            .flatten()
            .collect();
        Ok(s)
    }

    /// The settings of the mailbox with this lookup key (`alice@example.test`).
    pub async fn mailbox_settings_by_address(
        &self,
        key: &str,
    ) -> Result<MailboxSettings, StoreError> {
        let id: i64 = sqlx::query_scalar("SELECT id FROM mailboxes WHERE address = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no such mailbox: {key}")))?;
        self.mailbox_settings(id).await
    }

    /// Writes every setting except the address and the extra addresses.
    pub async fn update_mailbox_settings(&self, s: &MailboxSettings) -> Result<(), StoreError> {
        let mut conn = self.writer().acquire().await?;
        write_settings(&mut conn, s).await
    }

    /// Writes every setting (as [`Store::update_mailbox_settings`]) and adds
    /// and removes extra addresses, all in one transaction: a refused
    /// address leaves everything as it was.
    pub async fn change_mailbox_settings(
        &self,
        s: &MailboxSettings,
        add: &[String],
        remove: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        write_settings(&mut tx, s).await?;
        for address in remove {
            let done =
                sqlx::query("DELETE FROM mailbox_addresses WHERE mailbox_id = $1 AND address = $2")
                    .bind(s.id)
                    .bind(address)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "{address} is not an address of {}",
                    s.address
                )));
            }
        }
        for address in add {
            sqlx::query("INSERT INTO mailbox_addresses (mailbox_id, address) VALUES ($1, $2)")
                .bind(s.id)
                .bind(address)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if StoreError::is_unique_violation(&e) {
                        StoreError::Conflict(format!(
                            "{address} is already an address of {}",
                            s.address
                        ))
                    } else {
                        e.into()
                    }
                })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The mailboxes that list `address` among their extra addresses.
    pub async fn extra_address_owners(&self, address: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT m.address FROM mailbox_addresses a JOIN mailboxes m ON m.id = a.mailbox_id
             WHERE a.address = $1 ORDER BY m.address",
        )
        .bind(address)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn add_extra_address(
        &self,
        mailbox_id: i64,
        address: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO mailbox_addresses (mailbox_id, address) VALUES ($1, $2)")
            .bind(mailbox_id)
            .bind(address)
            .execute(self.writer())
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::Conflict(format!("{address} is already an address of this mailbox"))
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    pub async fn remove_extra_address(
        &self,
        mailbox_id: i64,
        address: &str,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("DELETE FROM mailbox_addresses WHERE mailbox_id = $1 AND address = $2")
                .bind(mailbox_id)
                .bind(address)
                .execute(self.writer())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "{address} is not an address of this mailbox"
            )));
        }
        Ok(())
    }

    /// An owner's override of a template, if any.
    pub async fn template_override(
        &self,
        mailbox_id: i64,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT body FROM template_overrides WHERE mailbox_id = $1 AND name = $2",
        )
        .bind(mailbox_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Saves (`Some`) or removes (`None`) an override. Validation is the caller's.
    pub async fn set_template_override(
        &self,
        mailbox_id: i64,
        name: &str,
        body: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM template_overrides WHERE mailbox_id = $1 AND name = $2")
            .bind(mailbox_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if let Some(body) = body {
            sqlx::query(
                "INSERT INTO template_overrides (mailbox_id, name, body, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(mailbox_id)
            .bind(name)
            .bind(body)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every challenge token key with its state, and the id of the one
    /// that signs, in one read.
    pub async fn token_keys(&self) -> Result<TokenKeys, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, value FROM settings WHERE name LIKE 'token_key%'")
                .fetch_all(self.pool())
                .await?;
        let mut keys: Vec<StoredKey> = Vec::new();
        let mut retired = std::collections::HashMap::new();
        let mut revoked = std::collections::HashMap::new();
        let mut current = None;
        for (name, value) in rows {
            let id = |prefix: &str| {
                name.strip_prefix(prefix)
                    .and_then(|i| i.parse::<u32>().ok())
            };
            if name == "token_key_current" {
                current = value.parse().ok();
            } else if let Some(id) = id("token_key.") {
                keys.push(StoredKey {
                    id,
                    hex: value,
                    retired: None,
                    revoked_at: None,
                });
            } else if let Some(id) = id("token_key_retired.") {
                let mut times = value
                    .split(' ')
                    .filter_map(|t| t.parse().ok())
                    .map(Timestamp);
                if let (Some(at), Some(until)) = (times.next(), times.next()) {
                    retired.insert(id, (at, until));
                }
            } else if let Some(id) = id("token_key_revoked.")
                && let Ok(at) = value.parse()
            {
                revoked.insert(id, Timestamp(at));
            }
        }
        for k in &mut keys {
            k.retired = retired.get(&k.id).copied();
            k.revoked_at = revoked.get(&k.id).copied();
        }
        keys.sort_by_key(|k| k.id);
        Ok(TokenKeys { keys, current })
    }

    /// Stores a new key and makes it current, in one transaction. The key
    /// that was current (if another) is retired at `now`, verifying the
    /// tokens it signed until `valid_until`; its id is returned.
    pub async fn add_token_key(
        &self,
        id: u32,
        hex: &str,
        now: Timestamp,
        valid_until: Timestamp,
    ) -> Result<Option<u32>, StoreError> {
        let mut tx = self.begin_write().await?;
        let previous: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'token_key_current'")
                .fetch_optional(&mut *tx)
                .await?;
        let previous = previous
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|p| *p != id);
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2)")
            .bind(format!("token_key.{id}"))
            .bind(hex)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if StoreError::is_unique_violation(&e) {
                    StoreError::Conflict(format!("token key {id} exists"))
                } else {
                    e.into()
                }
            })?;
        sqlx::query("DELETE FROM settings WHERE name = 'token_key_current'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ('token_key_current', $1)")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some(p) = previous {
            insert_retired(&mut tx, p, now, valid_until).await?;
        }
        tx.commit().await?;
        Ok(previous)
    }

    /// Records that key `id` stopped signing at `at` and verifies until
    /// `valid_until`; a record made earlier stands.
    pub async fn retire_token_key(
        &self,
        id: u32,
        at: Timestamp,
        valid_until: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer().acquire().await?;
        insert_retired(&mut conn, id, at, valid_until).await
    }

    /// Revokes key `id` at `at`: it verifies nothing from then on. Returns
    /// false when it was revoked already (the first time stands).
    pub async fn revoke_token_key(&self, id: u32, at: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(format!("token_key_revoked.{id}"))
        .bind(at.0.to_string())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// When the last token signed so far, or about to be signed by a key
    /// retired `now`, expires: the latest expiry of an open challenge, or
    /// `now` plus the longest keep-days of any mailbox, whichever is later.
    pub async fn latest_token_expiry(&self, now: Timestamp) -> Result<Timestamp, StoreError> {
        let (keep_days, open): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MAX(keep_days) FROM mailboxes),
                    (SELECT MAX(expires_at) FROM challenges WHERE state = 'open')",
        )
        .fetch_one(self.pool())
        .await?;
        let by_keep_days = now.plus_secs(keep_days.unwrap_or(0).max(0) * 86400);
        Ok(by_keep_days.max(Timestamp(open.unwrap_or(i64::MIN))))
    }
}

// ---- settings as typed -------------------------------------------------
//
// What `boxtrap mailbox set` and the owner's /settings page (and its JSON
// API) accept, checked in one place. Each error says what was expected,
// without the field's name: the caller names the field.

/// Days held mail may be kept: 1 to 365.
pub const KEEP_DAYS: std::ops::RangeInclusive<i64> = 1..=365;

/// Longest display name accepted, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// `on`, `yes`, `true` or `off`, `no`, `false`, in any case.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// A display name for challenge mails: no control characters, at most
/// [`MAX_DISPLAY_NAME_CHARS`]; trimmed. `""`: none.
pub fn parse_display_name(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err("control characters (line breaks, tabs...) are not allowed".into());
    }
    if s.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!("longer than {MAX_DISPLAY_NAME_CHARS} characters"));
    }
    Ok(s.trim().to_owned())
}

/// Days to keep held mail: a whole number in [`KEEP_DAYS`].
pub fn parse_keep_days(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|d| KEEP_DAYS.contains(d))
        .ok_or_else(|| {
            format!(
                "expected a whole number of days from {} to {}",
                KEEP_DAYS.start(),
                KEEP_DAYS.end()
            )
        })
}

/// A spam score threshold as typed (`5`, `5.0`, `-2.5`, `+2`) in tenths
/// of a point, or `None` for `off`.
/// One decimal at most, −100 to 100.
pub fn parse_spam_score(s: &str) -> Result<Option<i64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad =
        || "expected a score such as 5.0 (one decimal at most, -100 to 100) or off".to_owned();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (whole, tenth) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits =
        |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || tenth.len() != 1 || !all_digits(tenth) {
        return Err(bad());
    }
    let value =
        whole.parse::<i64>().map_err(|_| bad())? * 10 + tenth.parse::<i64>().map_err(|_| bad())?;
    if value > 1000 {
        return Err(bad());
    }
    Ok(Some(if neg { -value } else { value }))
}

/// A spam score in tenths as [`parse_spam_score`] reads it back: `-2.5`,
/// `5.0`, or `off`.
pub fn spam_score_text(tenths: Option<i64>) -> String {
    match tenths {
        None => "off".into(),
        Some(t) => {
            let sign = if t < 0 { "-" } else { "" };
            format!("{sign}{}.{}", t.abs() / 10, t.abs() % 10)
        }
    }
}

/// A digest frequency: never, hourly, daily or weekly (any case).
pub fn parse_digest(s: &str) -> Result<DigestFrequency, String> {
    s.trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| "expected never, hourly, daily or weekly".to_owned())
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`; any case), checked
/// against the bundled time zone database and returned as the database
/// spells it.
pub fn parse_time_zone(s: &str) -> Result<String, String> {
    let t = s.trim();
    let bad = || {
        "expected a time zone name from the IANA database, such as Europe/Berlin, America/New_York or UTC"
            .to_owned()
    };
    if t.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    let tz = jiff::tz::db().get(t).map_err(|_| bad())?;
    Ok(tz.iana_name().unwrap_or(t).to_owned())
}

/// Inserts `token_key_retired.<id>` unless it exists.
async fn insert_retired(
    conn: &mut AnyConnection,
    id: u32,
    at: Timestamp,
    valid_until: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(format!("token_key_retired.{id}"))
        .bind(format!("{} {}", at.0, valid_until.0))
        .execute(conn)
        .await?;
    Ok(())
}

/// One challenge token key as stored: settings rows `token_key.<id>` (the
/// secret), `token_key_retired.<id>` and `token_key_revoked.<id>`. No
/// `Debug`: the secret is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// What tokens carry to name it.
    pub id: u32,
    /// The secret, 64 hex digits.
    pub hex: String,
    /// When it stopped signing, and until when it verifies the tokens it
    /// signed (the last of them expires then).
    pub retired: Option<(Timestamp, Timestamp)>,
    /// When `boxtrap key retire` revoked it: it verifies nothing.
    pub revoked_at: Option<Timestamp>,
}

/// Every token key, by id, and the id of the current one (which signs).
#[derive(Clone)]
pub struct TokenKeys {
    /// Every stored key, by id, revoked ones included.
    pub keys: Vec<StoredKey>,
    /// The id in `token_key_current`; with a configured secret, the key
    /// that signed before it (now retired).
    pub current: Option<u32>,
}

impl TokenKeys {
    /// The key with this id.
    pub fn get(&self, id: u32) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The id a new key takes: one more than any stored, or 1.
    pub fn next_id(&self) -> Option<u32> {
        match self.keys.iter().map(|k| k.id).max() {
            Some(max) => max.checked_add(1),
            None => Some(1),
        }
    }
}

/// The UPDATE behind [`Store::update_mailbox_settings`], on any connection.
async fn write_settings(conn: &mut AnyConnection, s: &MailboxSettings) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE mailboxes SET challenge_enabled = $1, display_name = $2, keep_days = $3,
            spam_bypass_below = $4, whitelist_by_association = $5, auto_whitelist_sent = $6,
            notify_released = $7, notify_blocked = $8, quarantine_max_messages = $10,
            quarantine_max_bytes = $11, spam_no_challenge_at = $12, digest = $13,
            time_zone = $14
         WHERE id = $9",
    )
    .bind(i64::from(s.challenge_enabled))
    .bind(&s.display_name)
    .bind(s.keep_days)
    .bind(s.spam_bypass_below)
    .bind(i64::from(s.whitelist_by_association))
    .bind(i64::from(s.auto_whitelist_sent))
    .bind(i64::from(s.notify_released))
    .bind(i64::from(s.notify_blocked))
    .bind(s.id)
    .bind(s.quarantine_max_messages)
    .bind(s.quarantine_max_bytes)
    .bind(s.spam_no_challenge_at)
    .bind(s.digest.as_str())
    .bind(&s.time_zone)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Domain, EmailAddress};
    use crate::both_backends;

    both_backends!(
        token_keys_keep_their_retirement_and_revocation,
        |store: Store| async move {
            let t = |s| Timestamp::from_secs(s);
            assert!(store.token_keys().await.unwrap().keys.is_empty());
            assert_eq!(store.token_keys().await.unwrap().next_id(), Some(1));
            let hex = |c: char| c.to_string().repeat(64);
            assert_eq!(
                store
                    .add_token_key(1, &hex('a'), t(10), t(20))
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .add_token_key(2, &hex('b'), t(100), t(200))
                    .await
                    .unwrap(),
                Some(1),
                "the key that signed is retired in the same transaction"
            );
            assert!(matches!(
                store.add_token_key(2, &hex('c'), t(1), t(2)).await,
                Err(StoreError::Conflict(_))
            ));
            // A retirement already recorded stands.
            store.retire_token_key(1, t(500), t(600)).await.unwrap();
            assert!(store.revoke_token_key(1, t(300)).await.unwrap());
            assert!(!store.revoke_token_key(1, t(400)).await.unwrap());
            let keys = store.token_keys().await.unwrap();
            assert_eq!(keys.current, Some(2));
            assert_eq!(keys.next_id(), Some(3));
            let one = keys.get(1).unwrap();
            assert_eq!(one.hex, hex('a'));
            assert_eq!(one.retired, Some((t(100), t(200))));
            assert_eq!(one.revoked_at, Some(t(300)));
            let two = keys.get(2).unwrap();
            assert_eq!((two.retired, two.revoked_at), (None, None));
        }
    );

    both_backends!(
        the_latest_token_expiry_covers_keep_days_and_open_challenges,
        |store: Store| async move {
            let now = Timestamp::from_secs(1_000_000);
            assert_eq!(store.latest_token_expiry(now).await.unwrap(), now);
            store
                .add_domain(&Domain::parse("example.test").unwrap(), now)
                .await
                .unwrap();
            for m in ["alice@example.test", "bob@example.test"] {
                store
                    .add_mailbox(&EmailAddress::parse(m).unwrap(), "", now)
                    .await
                    .unwrap();
            }
            let mut bob = store
                .mailbox_settings_by_address("bob@example.test")
                .await
                .unwrap();
            bob.keep_days = 40;
            store.update_mailbox_settings(&bob).await.unwrap();
            assert_eq!(
                store.latest_token_expiry(now).await.unwrap(),
                now.plus_secs(40 * 86400),
                "the longest keep-days"
            );
            // An open challenge made when bob kept mail for 90 days.
            let late = now.plus_secs(90 * 86400);
            sqlx::query(
                "INSERT INTO challenges (mailbox_id, sender, sender_domain, state, created_at, expires_at)
                 VALUES ($1, 'x@y.example', 'y.example', 'open', $2, $3)",
            )
            .bind(bob.id)
            .bind(now.0)
            .bind(late.0)
            .execute(store.writer())
            .await
            .unwrap();
            assert_eq!(store.latest_token_expiry(now).await.unwrap(), late);
        }
    );

    both_backends!(
        a_refused_address_change_leaves_the_settings_as_they_were,
        |store: Store| async move {
            let now = Timestamp::from_secs(1000);
            store
                .add_domain(&Domain::parse("example.test").unwrap(), now)
                .await
                .unwrap();
            for m in ["alice@example.test", "bob@example.test"] {
                store
                    .add_mailbox(&EmailAddress::parse(m).unwrap(), "", now)
                    .await
                    .unwrap();
            }
            let alice = store
                .mailbox_settings_by_address("alice@example.test")
                .await
                .unwrap();
            let mut changed = alice.clone();
            changed.keep_days = 30;
            changed.challenge_enabled = true;
            store
                .change_mailbox_settings(&changed, &["a@old.example".into()], &[])
                .await
                .unwrap();
            let saved = store.mailbox_settings(alice.id).await.unwrap();
            assert_eq!(saved.keep_days, 30);
            assert!(saved.challenge_enabled);
            assert_eq!(saved.extra_addresses, ["a@old.example"]);
            assert_eq!(
                store.extra_address_owners("a@old.example").await.unwrap(),
                ["alice@example.test"]
            );
            assert!(
                store
                    .extra_address_owners("b@old.example")
                    .await
                    .unwrap()
                    .is_empty()
            );

            // A removal that finds nothing, or an added duplicate, undoes
            // the whole change.
            let mut again = saved.clone();
            again.keep_days = 2;
            let e = store
                .change_mailbox_settings(
                    &again,
                    &["b@old.example".into()],
                    &["x@old.example".into()],
                )
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::NotFound(_)), "{e}");
            let e = store
                .change_mailbox_settings(&again, &["a@old.example".into()], &[])
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            assert_eq!(store.mailbox_settings(alice.id).await.unwrap(), saved);

            store
                .change_mailbox_settings(&saved, &[], &["a@old.example".into()])
                .await
                .unwrap();
            assert!(
                store
                    .mailbox_settings(alice.id)
                    .await
                    .unwrap()
                    .extra_addresses
                    .is_empty()
            );
        }
    );
}
