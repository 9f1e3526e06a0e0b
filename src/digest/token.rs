//! The digest's signed links: HMAC-SHA256 with the server's token keys
//! (the challenge keyring, [`crate::challenge::token::Keyring`]), a kind of
//! token of its own: another MAC label and another length, so a challenge
//! token is never a digest token nor the other way round.
//!
//! A token names an action (review one message, deliver one message,
//! review everything in one digest, or in one domain digest), the mailbox (its id, and its address
//! bound by the MAC), the held messages (one id, or the digest's id range
//! `(first, last]`), the key that signed it and when it expires (the
//! message's own expiry). `now` is always an argument.
//!
//! Wire form, base64url without padding, 54 bytes → 72 chars:
//!
//! ```text
//! version(1) || action(1) || key_id(4) || mailbox_id(8) || first(8) || last(8) || expires_secs(8) || tag(16)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::challenge::token::{Keyring, TokenError, TokenKey};
use crate::clock::Timestamp;

/// The digest token format this code issues and accepts.
pub const DIGEST_TOKEN_VERSION: u8 = 1;

/// Length of a digest token as text.
pub const DIGEST_TOKEN_CHARS: usize = 72;

const DOMAIN_LABEL: &[u8] = b"boxtrap-digest";
const CONFIRM_LABEL: &[u8] = b"boxtrap-digest-confirm";
const TAG_LEN: usize = 16;
const SIGNED_LEN: usize = 1 + 1 + 4 + 8 + 8 + 8 + 8;
const RAW_LEN: usize = SIGNED_LEN + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// What a digest link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAction {
    /// Shows one held message (changes nothing).
    Review,
    /// Delivers one held message to the mailbox, after a confirmation.
    Deliver,
    /// Shows everything the digest listed, with one confirmed bulk deliver.
    ReviewAll,
    /// Shows everything a domain digest listed (every mailbox of the
    /// domain), with one confirmed bulk deliver. The token's "mailbox" is
    /// the subscription: its id, and [`domain_binding`] bound by the MAC.
    DomainReviewAll,
}

/// What a domain digest's "review all" token binds in place of a
/// mailbox's address: the subscription, its domain and its address, so
/// the token dies with the subscription and never passes for a mailbox's.
pub fn domain_binding(subscription: i64, domain: &str, address: &str) -> String {
    format!("domain-digest {subscription} {domain} {address}")
}

impl DigestAction {
    fn code(self) -> u8 {
        match self {
            DigestAction::Review => 1,
            DigestAction::Deliver => 2,
            DigestAction::ReviewAll => 3,
            DigestAction::DomainReviewAll => 4,
        }
    }

    fn from_code(c: u8) -> Option<DigestAction> {
        match c {
            1 => Some(DigestAction::Review),
            2 => Some(DigestAction::Deliver),
            3 => Some(DigestAction::ReviewAll),
            4 => Some(DigestAction::DomainReviewAll),
            _ => None,
        }
    }
}

/// What a digest token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestClaims<'a> {
    pub action: DigestAction,
    pub mailbox_id: i64,
    /// The mailbox's address: bound by the MAC, not carried.
    pub mailbox: &'a str,
    /// Review, deliver: the held message's id. Review all: the digest's
    /// range of held ids, `(first, last]`.
    pub first: i64,
    pub last: i64,
    /// Whole seconds (rounded down).
    pub expires: Timestamp,
}

/// The fields readable without a key; nothing here is trustworthy until
/// [`verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestTokenParts {
    pub action: DigestAction,
    pub key_id: u32,
    pub mailbox_id: i64,
    pub first: i64,
    pub last: i64,
    pub expires: Timestamp,
    tag: [u8; TAG_LEN],
}

/// Signs `claims` with the keyring's current key.
pub fn issue(keyring: &Keyring, claims: &DigestClaims) -> String {
    let key = keyring.current();
    let signed = signed_fields(
        claims.action,
        key.id,
        claims.mailbox_id,
        claims.first,
        claims.last,
        claims.expires.secs(),
    );
    let mut raw = [0u8; RAW_LEN];
    raw[..SIGNED_LEN].copy_from_slice(&signed);
    let tag = authenticate(key, &signed, claims.mailbox)
        .finalize()
        .into_bytes();
    raw[SIGNED_LEN..].copy_from_slice(&tag[..TAG_LEN]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Splits a token into its fields without checking its signature.
pub fn decode(token: &str) -> Result<DigestTokenParts, TokenError> {
    if token.len() != DIGEST_TOKEN_CHARS {
        return Err(TokenError::Malformed);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Malformed)?;
    let raw: [u8; RAW_LEN] = raw.try_into().map_err(|_| TokenError::Malformed)?;
    if raw[0] != DIGEST_TOKEN_VERSION {
        return Err(TokenError::UnsupportedVersion(raw[0]));
    }
    let action = DigestAction::from_code(raw[1]).ok_or(TokenError::Malformed)?;
    let be8 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[at..at + 8]);
        i64::from_be_bytes(b)
    };
    let mut key_id = [0u8; 4];
    key_id.copy_from_slice(&raw[2..6]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&raw[SIGNED_LEN..]);
    let expires = be8(30)
        .checked_mul(1_000_000)
        .map(Timestamp)
        .ok_or(TokenError::Malformed)?;
    Ok(DigestTokenParts {
        action,
        key_id: u32::from_be_bytes(key_id),
        mailbox_id: be8(6),
        first: be8(14),
        last: be8(22),
        expires,
        tag,
    })
}

/// Checks the key (a retired key only until its `valid_until`), the tag in
/// constant time against the mailbox's address, then the expiry.
pub fn verify(
    keyring: &Keyring,
    parts: &DigestTokenParts,
    mailbox: &str,
    now: Timestamp,
) -> Result<(), TokenError> {
    let key = keyring.verifying_key(parts.key_id, now)?;
    let signed = signed_fields(
        parts.action,
        parts.key_id,
        parts.mailbox_id,
        parts.first,
        parts.last,
        parts.expires.secs(),
    );
    authenticate(key, &signed, mailbox)
        .verify_truncated_left(&parts.tag)
        .map_err(|_| TokenError::BadSignature)?;
    if now > parts.expires {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// The value the confirmation page carries in its form's hidden field: a
/// MAC of the token under the key that signed it, so only a client that
/// loaded the page (and not one that POSTs to every URL it sees) can act.
pub fn confirmation(keyring: &Keyring, parts: &DigestTokenParts, token: &str) -> Option<String> {
    let key = keyring.find(parts.key_id)?;
    let mut mac = hmac_of(key);
    mac.update(CONFIRM_LABEL);
    mac.update(&[0]);
    mac.update(token.as_bytes());
    let tag = mac.finalize().into_bytes();
    Some(URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN]))
}

/// Whether `given` is the hidden field's value for this token (constant time).
pub fn confirmed(keyring: &Keyring, parts: &DigestTokenParts, token: &str, given: &str) -> bool {
    let Some(key) = keyring.find(parts.key_id) else {
        return false;
    };
    let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
        return false;
    };
    let mut mac = hmac_of(key);
    mac.update(CONFIRM_LABEL);
    mac.update(&[0]);
    mac.update(token.as_bytes());
    given.len() == TAG_LEN && mac.verify_truncated_left(&given).is_ok()
}

fn signed_fields(
    action: DigestAction,
    key_id: u32,
    mailbox_id: i64,
    first: i64,
    last: i64,
    expires_secs: i64,
) -> [u8; SIGNED_LEN] {
    let mut out = [0u8; SIGNED_LEN];
    out[0] = DIGEST_TOKEN_VERSION;
    out[1] = action.code();
    out[2..6].copy_from_slice(&key_id.to_be_bytes());
    out[6..14].copy_from_slice(&mailbox_id.to_be_bytes());
    out[14..22].copy_from_slice(&first.to_be_bytes());
    out[22..30].copy_from_slice(&last.to_be_bytes());
    out[30..38].copy_from_slice(&expires_secs.to_be_bytes());
    out
}

fn hmac_of(key: &TokenKey) -> HmacSha256 {
    // HMAC pads a short key with zeros to the block size (RFC 2104 §2), so
    // this equals HMAC(secret, ·) and cannot fail.
    let mut block = [0u8; 64];
    block[..key.secret.len()].copy_from_slice(&key.secret);
    <HmacSha256 as KeyInit>::new(&block.into())
}

fn authenticate(key: &TokenKey, signed: &[u8], mailbox: &str) -> HmacSha256 {
    let mut mac = hmac_of(key);
    mac.update(DOMAIN_LABEL);
    mac.update(&[0]);
    mac.update(signed);
    let folded = mailbox.to_lowercase();
    mac.update(&(folded.len() as u64).to_be_bytes());
    mac.update(folded.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::token::{self as challenge_token, Claims, RetiredKey};

    const NOW: Timestamp = Timestamp(1_795_788_353_000_000);

    fn keyring() -> Keyring {
        Keyring::new(
            TokenKey {
                id: 7,
                secret: [0xa5; 32],
            },
            vec![],
        )
    }

    fn claims(action: DigestAction) -> DigestClaims<'static> {
        DigestClaims {
            action,
            mailbox_id: 3,
            mailbox: "alice@example.test",
            first: 42,
            last: 42,
            expires: NOW.plus_secs(86400),
        }
    }

    fn check(token: &str, mailbox: &str, now: Timestamp) -> Result<DigestTokenParts, TokenError> {
        let parts = decode(token)?;
        verify(&keyring(), &parts, mailbox, now)?;
        Ok(parts)
    }

    #[test]
    fn a_token_round_trips_and_binds_everything() {
        let token = issue(&keyring(), &claims(DigestAction::Deliver));
        assert_eq!(token.len(), DIGEST_TOKEN_CHARS);
        let parts = check(&token, "Alice@example.test", NOW).unwrap();
        assert_eq!(parts.action, DigestAction::Deliver);
        assert_eq!((parts.mailbox_id, parts.first, parts.last), (3, 42, 42));
        assert_eq!(
            check(&token, "bob@example.test", NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            check(&token, "alice@example.test", NOW.plus_secs(86401)),
            Err(TokenError::Expired)
        );
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = URL_SAFE_NO_PAD.encode(&bad);
            assert!(check(&bad, "alice@example.test", NOW).is_err(), "byte {i}");
        }
    }

    #[test]
    fn review_never_becomes_deliver_and_challenge_tokens_are_not_digest_tokens() {
        let review = issue(&keyring(), &claims(DigestAction::Review));
        let mut raw = URL_SAFE_NO_PAD.decode(&review).unwrap();
        raw[1] = DigestAction::Deliver.code();
        assert_eq!(
            check(&URL_SAFE_NO_PAD.encode(&raw), "alice@example.test", NOW),
            Err(TokenError::BadSignature)
        );
        let challenge = challenge_token::issue(
            &keyring(),
            &Claims {
                mailbox: "alice@example.test",
                sender: "bob@example.org",
                challenge_id: 42,
                expires: NOW.plus_secs(86400),
            },
        );
        assert_eq!(decode(&challenge), Err(TokenError::Malformed));
        assert_eq!(challenge_token::decode(&review), Err(TokenError::Malformed));
    }

    #[test]
    fn a_retired_key_verifies_until_its_last_token_expired() {
        let old = keyring();
        let token = issue(&old, &claims(DigestAction::Review));
        let until = NOW.plus_secs(86400);
        let rotated = Keyring::new(
            TokenKey {
                id: 8,
                secret: [1; 32],
            },
            vec![RetiredKey {
                key: old.current().clone(),
                valid_until: until,
            }],
        );
        let parts = decode(&token).unwrap();
        assert_eq!(verify(&rotated, &parts, "alice@example.test", NOW), Ok(()));
        assert_eq!(
            verify(&rotated, &parts, "alice@example.test", until.plus_secs(1)),
            Err(TokenError::KeyRetired(7))
        );
    }

    #[test]
    fn the_confirmation_field_belongs_to_its_token() {
        let a = issue(&keyring(), &claims(DigestAction::Deliver));
        let b = issue(
            &keyring(),
            &DigestClaims {
                first: 43,
                last: 43,
                ..claims(DigestAction::Deliver)
            },
        );
        let pa = decode(&a).unwrap();
        let pb = decode(&b).unwrap();
        let ca = confirmation(&keyring(), &pa, &a).unwrap();
        assert!(confirmed(&keyring(), &pa, &a, &ca));
        assert!(!confirmed(&keyring(), &pb, &b, &ca));
        assert!(!confirmed(&keyring(), &pa, &a, ""));
        assert!(!confirmed(&keyring(), &pa, &a, "not base64!"));
    }
}
