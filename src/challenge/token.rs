//! Challenge tokens: HMAC-SHA256 signed, expiring, carried in the link and
//! in the challenge's `Subject:` (`verify#<token>`).
//!
//! A token names a challenge (its row id), the key that signed it and when it
//! expires, and its tag binds the mailbox and the challenged sender without
//! carrying them: the verifier looks the challenge up by id and supplies both.
//! This module owns the wire form, signing, and the constant-time check. It
//! does not own single use (the challenge row records that it was used), key
//! storage (the store keeps the keys; config may give one) or reading the
//! clock (`now` is always an argument).
//!
//! A key that no longer signs is a [`RetiredKey`]: it verifies the tokens
//! it signed until the last of them has expired (its `valid_until`), and
//! nothing after; a revoked key is not in the keyring at all.
//!
//! Wire form, base64url without padding (RFC 4648 §5), 37 bytes → 50 chars:
//!
//! ```text
//! version(1) || key_id(4, BE) || challenge_id(8, BE) || expires_secs(8, BE) || tag(16)
//! ```
//!
//! `tag` is the first 128 bits of HMAC-SHA256 (RFC 2104, truncation per
//! RFC 2104 §5) over a domain label and every field, the two addresses
//! lower-cased and length-prefixed so that no two inputs share a MAC input.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::clock::Timestamp;

/// The token format this code issues and accepts.
pub const TOKEN_VERSION: u8 = 1;

/// Length of a token as text (what fits in a Subject line and a URL path).
pub const TOKEN_CHARS: usize = 50;

/// Separates our MACs from any other use of the same key.
const DOMAIN_LABEL: &[u8] = b"boxtrap-challenge";
const TAG_LEN: usize = 16;
const SIGNED_LEN: usize = 1 + 4 + 8 + 8;
const RAW_LEN: usize = SIGNED_LEN + TAG_LEN;
/// HMAC-SHA256's block size: shorter keys are zero-padded to it (RFC 2104 §2).
const HMAC_BLOCK_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused, or a key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token at all: wrong length, not base64url, or not canonical.
    #[error("malformed token")]
    Malformed,
    /// A well-formed token of a version this code does not know.
    #[error("unsupported token version {0}")]
    UnsupportedVersion(u8),
    /// Signed with a key that is no longer (or never was) in the keyring.
    #[error("token signed with unknown key {0}")]
    UnknownKey(u32),
    /// Signed with a retired key whose tokens have all expired: whatever
    /// it signs now is forged.
    #[error("token signed with key {0}, retired and past its last token's expiry")]
    KeyRetired(u32),
    /// The tag does not match: tampered, or for another mailbox or sender.
    #[error("bad token signature")]
    BadSignature,
    /// Genuine, but past its expiry.
    #[error("token expired")]
    Expired,
    /// A key given as hex could not be read; says why.
    #[error("bad token key: {0}")]
    BadKey(String),
}

/// One HMAC key with the id that tokens carry to name it.
#[derive(Clone)]
pub struct TokenKey {
    /// Carried in every token so the verifier picks the right key after a rotation.
    pub id: u32,
    /// Never printed: `Debug` redacts it.
    pub secret: [u8; 32],
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TokenKey {
    /// A fresh random key from the thread's CSPRNG.
    pub fn generate(id: u32) -> TokenKey {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret[..]);
        TokenKey { id, secret }
    }

    /// The secret as 64 lower-case hex digits (how the store and config keep it).
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.secret {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Reads a secret written by [`TokenKey::to_hex`] (either case,
    /// surrounding whitespace ignored).
    pub fn from_hex(id: u32, hex: &str) -> Result<TokenKey, TokenError> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(TokenError::BadKey(format!(
                "expected 64 hex digits, got {} characters",
                hex.chars().count()
            )));
        }
        let mut secret = [0u8; 32];
        for (byte, pair) in secret.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(TokenKey { id, secret })
    }

    fn mac(&self) -> HmacSha256 {
        // Zero-padding the key to the block size is exactly what HMAC does
        // with a short key (RFC 2104 §2), so this equals HMAC(secret, ·) and
        // cannot fail the way `new_from_slice` nominally can.
        let mut block = [0u8; HMAC_BLOCK_LEN];
        block[..self.secret.len()].copy_from_slice(&self.secret);
        <HmacSha256 as KeyInit>::new(&block.into())
    }
}

fn hex_digit(c: u8) -> Result<u8, TokenError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(TokenError::BadKey(format!(
            "not a hex digit: {:?}",
            char::from(c)
        ))),
    }
}

/// A key that no longer signs new tokens.
#[derive(Debug, Clone)]
pub struct RetiredKey {
    /// The key itself, still needed to check what it signed.
    pub key: TokenKey,
    /// When the last token it signed expires: after this it verifies
    /// nothing, so a copy of it (an old backup, a leaked database) forges
    /// nothing either.
    pub valid_until: Timestamp,
}

/// The key that signs new tokens plus retired keys that still verify theirs.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: TokenKey,
    retired: Vec<RetiredKey>,
}

impl Keyring {
    /// `current` signs and verifies; each retired key verifies until its
    /// `valid_until`.
    pub fn new(current: TokenKey, retired: Vec<RetiredKey>) -> Keyring {
        Keyring { current, retired }
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &TokenKey {
        &self.current
    }

    /// The key with this id, current or retired (valid or not).
    pub fn find(&self, id: u32) -> Option<&TokenKey> {
        self.lookup(id).map(|(k, _)| k)
    }

    /// The key with this id if it may still verify a token at `now`: the
    /// current key, or a retired one until its `valid_until` (for other
    /// token kinds signed with the same keys, such as the digest's links).
    pub fn verifying_key(&self, id: u32, now: Timestamp) -> Result<&TokenKey, TokenError> {
        let (key, valid_until) = self.lookup(id).ok_or(TokenError::UnknownKey(id))?;
        if valid_until.is_some_and(|until| now > until) {
            return Err(TokenError::KeyRetired(id));
        }
        Ok(key)
    }

    /// The key with this id and, for a retired one, until when it verifies.
    fn lookup(&self, id: u32) -> Option<(&TokenKey, Option<Timestamp>)> {
        if self.current.id == id {
            return Some((&self.current, None));
        }
        self.retired
            .iter()
            .find(|r| r.key.id == id)
            .map(|r| (&r.key, Some(r.valid_until)))
    }
}

/// What a token proves; mailbox and sender are bound by the MAC but not
/// carried in the token (the verifier looks the challenge up by id and
/// supplies them).
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    pub mailbox: &'a str,
    pub sender: &'a str,
    pub challenge_id: i64,
    /// Kept to whole seconds (rounded down), so a token never outlives this.
    pub expires: Timestamp,
}

/// Signs `claims` with the keyring's current key; the result is URL-safe
/// and [`TOKEN_CHARS`] long.
pub fn issue(keyring: &Keyring, claims: &Claims) -> String {
    let key = keyring.current();
    let mut raw = [0u8; RAW_LEN];
    raw[..SIGNED_LEN].copy_from_slice(&signed_fields(
        TOKEN_VERSION,
        key.id,
        claims.challenge_id,
        claims.expires.secs(),
    ));
    let mac = authenticate(key, &raw[..SIGNED_LEN], claims.mailbox, claims.sender)
        .finalize()
        .into_bytes();
    raw[SIGNED_LEN..].copy_from_slice(&mac[..TAG_LEN]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The parts readable without a key (to find the challenge row by id).
/// Nothing here is trustworthy until [`verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParts {
    pub version: u8,
    pub key_id: u32,
    pub challenge_id: i64,
    pub expires: Timestamp,
    tag: [u8; TAG_LEN],
}

/// Splits a token into its fields without checking its signature.
pub fn decode(token: &str) -> Result<TokenParts, TokenError> {
    if token.len() != TOKEN_CHARS {
        return Err(TokenError::Malformed);
    }
    // The no-padding engine refuses `=` and non-zero trailing bits
    // (RFC 4648 §3.5), so each token has exactly one spelling.
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Malformed)?;
    let raw: [u8; RAW_LEN] = raw.try_into().map_err(|_| TokenError::Malformed)?;
    let version = raw[0];
    if version != TOKEN_VERSION {
        return Err(TokenError::UnsupportedVersion(version));
    }
    let mut key_id = [0u8; 4];
    let mut challenge_id = [0u8; 8];
    let mut expires = [0u8; 8];
    let mut tag = [0u8; TAG_LEN];
    key_id.copy_from_slice(&raw[1..5]);
    challenge_id.copy_from_slice(&raw[5..13]);
    expires.copy_from_slice(&raw[13..21]);
    tag.copy_from_slice(&raw[SIGNED_LEN..]);
    // An expiry no Timestamp can hold was never issued by us.
    let expires = i64::from_be_bytes(expires)
        .checked_mul(1_000_000)
        .map(Timestamp)
        .ok_or(TokenError::Malformed)?;
    Ok(TokenParts {
        version,
        key_id: u32::from_be_bytes(key_id),
        challenge_id: i64::from_be_bytes(challenge_id),
        expires,
        tag,
    })
}

/// Checks that the key may still verify (a retired key only until its
/// `valid_until`), the tag in constant time, then expiry against `now` (a
/// token is still good at the second it expires, not after). Mailbox and
/// sender are compared case-insensitively.
pub fn verify(
    keyring: &Keyring,
    parts: &TokenParts,
    mailbox: &str,
    sender: &str,
    now: Timestamp,
) -> Result<(), TokenError> {
    if parts.version != TOKEN_VERSION {
        return Err(TokenError::UnsupportedVersion(parts.version));
    }
    let (key, valid_until) = keyring
        .lookup(parts.key_id)
        .ok_or(TokenError::UnknownKey(parts.key_id))?;
    if valid_until.is_some_and(|until| now > until) {
        return Err(TokenError::KeyRetired(parts.key_id));
    }
    let signed = signed_fields(
        parts.version,
        parts.key_id,
        parts.challenge_id,
        parts.expires.secs(),
    );
    // `verify_truncated_left` compares with `subtle`'s constant-time equality.
    authenticate(key, &signed, mailbox, sender)
        .verify_truncated_left(&parts.tag)
        .map_err(|_| TokenError::BadSignature)?;
    if now > parts.expires {
        return Err(TokenError::Expired);
    }
    Ok(())
}

fn signed_fields(
    version: u8,
    key_id: u32,
    challenge_id: i64,
    expires_secs: i64,
) -> [u8; SIGNED_LEN] {
    let mut out = [0u8; SIGNED_LEN];
    out[0] = version;
    out[1..5].copy_from_slice(&key_id.to_be_bytes());
    out[5..13].copy_from_slice(&challenge_id.to_be_bytes());
    out[13..21].copy_from_slice(&expires_secs.to_be_bytes());
    out
}

/// The MAC over the label, the token's signed fields and the two bound
/// addresses; variable-length fields carry an 8-byte length so field
/// boundaries cannot shift.
fn authenticate(key: &TokenKey, signed: &[u8], mailbox: &str, sender: &str) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(DOMAIN_LABEL);
    mac.update(&[0]);
    mac.update(signed);
    for address in [mailbox, sender] {
        let folded = address.to_lowercase();
        mac.update(&(folded.len() as u64).to_be_bytes());
        mac.update(folded.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_795_788_353_000_000);

    fn key(id: u32, fill: u8) -> TokenKey {
        TokenKey {
            id,
            secret: [fill; 32],
        }
    }

    fn keyring() -> Keyring {
        Keyring::new(key(7, 0xa5), vec![])
    }

    fn claims() -> Claims<'static> {
        Claims {
            mailbox: "alice@example.test",
            sender: "Bob@Sender.test",
            challenge_id: 42,
            expires: NOW.plus_secs(15 * 86400),
        }
    }

    fn raw_of(token: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(token).unwrap()
    }

    fn check(
        keyring: &Keyring,
        token: &str,
        mailbox: &str,
        sender: &str,
        now: Timestamp,
    ) -> Result<(), TokenError> {
        let parts = decode(token)?;
        verify(keyring, &parts, mailbox, sender, now)
    }

    #[test]
    fn a_fresh_token_verifies_and_decodes_to_its_claims() {
        let token = issue(&keyring(), &claims());
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        let parts = decode(&token).unwrap();
        assert_eq!(parts.version, TOKEN_VERSION);
        assert_eq!(parts.key_id, 7);
        assert_eq!(parts.challenge_id, 42);
        assert_eq!(parts.expires, claims().expires);
        assert_eq!(
            verify(
                &keyring(),
                &parts,
                "alice@example.test",
                "Bob@Sender.test",
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn tampering_with_any_byte_never_verifies() {
        let token = issue(&keyring(), &claims());
        let raw = raw_of(&token);
        for i in 0..raw.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = raw.clone();
                bad[i] ^= flip;
                let result = check(
                    &keyring(),
                    &URL_SAFE_NO_PAD.encode(&bad),
                    "alice@example.test",
                    "bob@sender.test",
                    NOW,
                );
                let expires = i64::from_be_bytes(bad[13..21].try_into().unwrap());
                let expected = match i {
                    0 => TokenError::UnsupportedVersion(bad[0]),
                    1..=4 => {
                        TokenError::UnknownKey(u32::from_be_bytes(bad[1..5].try_into().unwrap()))
                    }
                    13..=20 if expires.checked_mul(1_000_000).is_none() => TokenError::Malformed,
                    _ => TokenError::BadSignature,
                };
                assert_eq!(result, Err(expected), "byte {i} ^ {flip:#x}");
            }
        }
    }

    #[test]
    fn tampering_with_any_character_never_verifies() {
        let token = issue(&keyring(), &claims());
        for i in 0..token.len() {
            let mut chars: Vec<char> = token.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let bad: String = chars.into_iter().collect();
            let result = check(
                &keyring(),
                &bad,
                "alice@example.test",
                "bob@sender.test",
                NOW,
            );
            assert!(result.is_err(), "char {i}: {bad}");
        }
    }

    #[test]
    fn a_token_for_another_mailbox_or_sender_is_refused() {
        let token = issue(&keyring(), &claims());
        let other = |mailbox, sender| check(&keyring(), &token, mailbox, sender, NOW);
        assert_eq!(
            other("carol@example.test", "bob@sender.test"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            other("alice@example.test", "mallory@sender.test"),
            Err(TokenError::BadSignature)
        );
        // Swapping the two fields must not collide either.
        assert_eq!(
            other("bob@sender.test", "alice@example.test"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(other("ALICE@example.test", "bob@SENDER.TEST"), Ok(()));
    }

    #[test]
    fn length_prefixes_keep_shifted_boundaries_apart() {
        let a = Claims {
            mailbox: "ab",
            sender: "c",
            ..claims()
        };
        let token = issue(&keyring(), &a);
        assert_eq!(check(&keyring(), &token, "ab", "c", NOW), Ok(()));
        assert_eq!(
            check(&keyring(), &token, "a", "bc", NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = issue(&Keyring::new(key(7, 0x11), vec![]), &claims());
        assert_eq!(
            check(
                &keyring(),
                &token,
                "alice@example.test",
                "bob@sender.test",
                NOW
            ),
            Err(TokenError::BadSignature)
        );
    }

    fn retired(id: u32, fill: u8, valid_until: Timestamp) -> RetiredKey {
        RetiredKey {
            key: key(id, fill),
            valid_until,
        }
    }

    #[test]
    fn after_rotation_old_tokens_verify_and_unknown_key_ids_are_named() {
        let old = Keyring::new(key(1, 0x01), vec![]);
        let token = issue(&old, &claims());
        let rotated = Keyring::new(
            key(2, 0x02),
            vec![retired(1, 0x01, claims().expires.plus_secs(300))],
        );
        assert_eq!(
            check(
                &rotated,
                &token,
                "alice@example.test",
                "bob@sender.test",
                NOW
            ),
            Ok(())
        );
        let new_token = issue(&rotated, &claims());
        assert_eq!(decode(&new_token).unwrap().key_id, 2);
        let retired = Keyring::new(key(2, 0x02), vec![]);
        assert_eq!(
            check(
                &retired,
                &token,
                "alice@example.test",
                "bob@sender.test",
                NOW
            ),
            Err(TokenError::UnknownKey(1))
        );
    }

    #[test]
    fn a_retired_key_verifies_nothing_after_its_last_token_expired() {
        let until = NOW.plus_secs(15 * 86400 + 300);
        let rotated = Keyring::new(key(2, 0x02), vec![retired(1, 0x01, until)]);
        // Forged with a copy of the retired key, claiming a year of life.
        let forged = issue(
            &Keyring::new(key(1, 0x01), vec![]),
            &Claims {
                expires: NOW.plus_secs(365 * 86400),
                ..claims()
            },
        );
        let at = |now| {
            check(
                &rotated,
                &forged,
                "alice@example.test",
                "bob@sender.test",
                now,
            )
        };
        assert_eq!(at(NOW), Ok(()), "until then it is as good as the key");
        assert_eq!(at(until), Ok(()));
        assert_eq!(at(Timestamp(until.0 + 1)), Err(TokenError::KeyRetired(1)));
        assert_eq!(at(until.plus_secs(86400)), Err(TokenError::KeyRetired(1)));
        // The current key has no such limit.
        let fresh = issue(&rotated, &claims());
        assert_eq!(
            check(
                &rotated,
                &fresh,
                "alice@example.test",
                "bob@sender.test",
                NOW
            ),
            Ok(())
        );
        assert_eq!(rotated.find(1).map(|k| k.id), Some(1));
    }

    #[test]
    fn a_token_is_good_until_its_expiry_second_and_not_after() {
        let token = issue(&keyring(), &claims());
        let expires = claims().expires;
        let at = |now| {
            check(
                &keyring(),
                &token,
                "alice@example.test",
                "bob@sender.test",
                now,
            )
        };
        assert_eq!(at(Timestamp(expires.0 - 1)), Ok(()));
        assert_eq!(at(expires), Ok(()));
        assert_eq!(at(Timestamp(expires.0 + 1)), Err(TokenError::Expired));
        assert_eq!(at(expires.plus_secs(86400)), Err(TokenError::Expired));
    }

    #[test]
    fn sub_second_expiry_is_rounded_down() {
        let c = Claims {
            expires: Timestamp(NOW.0 + 1_500_000),
            ..claims()
        };
        let token = issue(&keyring(), &c);
        assert_eq!(decode(&token).unwrap().expires, NOW.plus_secs(1));
    }

    #[test]
    fn malformed_text_is_refused_before_any_key_is_used() {
        let token = issue(&keyring(), &claims());
        let cases = [
            String::new(),
            token[..token.len() - 1].to_string(),
            token[..10].to_string(),
            format!("{token}A"),
            format!("{token}="),
            format!(" {token}"),
            token.replace(|_| true, "!"),
            format!("{}+", &token[..token.len() - 1]),
            "verify#".repeat(8),
        ];
        for bad in cases {
            assert_eq!(decode(&bad), Err(TokenError::Malformed), "{bad:?}");
        }
        // Non-zero trailing bits: same bytes, a second spelling.
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 1;
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.find(chars[last]).unwrap();
        chars[last] = alphabet.as_bytes()[pos ^ 1] as char;
        let respelled: String = chars.into_iter().collect();
        assert_eq!(decode(&respelled), Err(TokenError::Malformed));
    }

    #[test]
    fn another_version_is_named() {
        let mut raw = raw_of(&issue(&keyring(), &claims()));
        raw[0] = 2;
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode(&raw)),
            Err(TokenError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn keys_round_trip_through_hex_and_never_print_their_secret() {
        let k = TokenKey::generate(3);
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        let back = TokenKey::from_hex(3, &hex.to_uppercase()).unwrap();
        assert_eq!(back.secret, k.secret);
        assert_ne!(TokenKey::generate(3).secret, k.secret);
        let shown = format!("{:?}", Keyring::new(k, vec![]));
        assert!(!shown.contains(&hex), "{shown}");
        assert!(shown.contains("redacted"));
        assert!(matches!(
            TokenKey::from_hex(1, "abc"),
            Err(TokenError::BadKey(_))
        ));
        assert!(matches!(
            TokenKey::from_hex(1, &"g".repeat(64)),
            Err(TokenError::BadKey(_))
        ));
    }

    #[test]
    fn a_known_key_gives_a_stable_token() {
        // Pins the MAC input layout: changing it would orphan every token in flight.
        let token = issue(&keyring(), &claims());
        assert_eq!(token, issue(&keyring(), &claims()));
        let mut expected = HmacSha256::new_from_slice(&[0xa5; 32]).unwrap();
        expected.update(b"boxtrap-challenge\0");
        expected.update(&raw_of(&token)[..SIGNED_LEN]);
        expected.update(&18u64.to_be_bytes());
        expected.update(b"alice@example.test");
        expected.update(&15u64.to_be_bytes());
        expected.update(b"bob@sender.test");
        let tag = expected.finalize().into_bytes();
        assert_eq!(&raw_of(&token)[SIGNED_LEN..], &tag[..TAG_LEN]);
    }
}
