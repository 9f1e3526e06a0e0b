//! DKIM for the mail boxtrap sends to senders (RFC 6376): the keys
//! (made by `boxtrap dkim generate`, kept by `crate::store::dkim`), the
//! DNS records that publish them, and the signatures on challenges and
//! notices.
//!
//! Every challenge and notice passes through [`super::notice::Notice::build`],
//! which composes the final bytes and signs them there with [`Signers`]:
//! one `DKIM-Signature:` per key of the sending domain (Ed25519 per
//! RFC 8463 and RSA-SHA256 when both exist; receivers use the one they
//! understand), relaxed/relaxed canonicalization (RFC 6376 §3.4), no body
//! length limit (`l=`) and no expiry (`x=`). Nothing changes the message
//! afterwards: the outbound queue stores and sends these bytes as they are.
//!
//! A mail from a domain with no key goes out unsigned; `boxtrap
//! check-config` names such domains.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};

use crate::store::dkim::{DkimAlgorithm, StoredDkimKey};

/// Size of the RSA keys boxtrap makes, in bits: RFC 8301 §3.2 asks
/// signers for at least 1024 and recommends 2048, which fits a DNS TXT
/// record (in 255-byte strings) without EDNS trouble.
pub const RSA_BITS: usize = 2048;

/// The headers each signature covers (RFC 6376 §5.4): what a reader sees
/// and what threads, marks and structures our mail. A header the message
/// lacks is signed as absent, so it cannot be added on the way. From,
/// To, Subject, Date and Message-ID are listed twice ("over-signed",
/// RFC 6376 §8.15): a second copy added on the way breaks the signature.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Auto-Submitted",
    "Precedence",
    "X-Auto-Response-Suppress",
    super::compose::MARKER_HEADER,
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
];

/// Why a key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkimError {
    /// The key generator failed (no randomness from the system).
    #[error("cannot generate an {algorithm} key: {reason}")]
    Generate {
        algorithm: &'static str,
        reason: String,
    },
    /// A stored key is not a PKCS#8 key of its algorithm.
    #[error("the {algorithm} DKIM key {selector}._domainkey.{domain} is unusable: {reason}")]
    BadKey {
        algorithm: &'static str,
        selector: String,
        domain: String,
        reason: String,
    },
    /// mail-auth refused to sign (a message without any header to sign).
    #[error("cannot sign with {selector}._domainkey.{domain}: {reason}")]
    Sign {
        selector: String,
        domain: String,
        reason: String,
    },
    /// RFC 6376 §3.1: a selector is one or more DNS labels.
    #[error(
        "invalid DKIM selector {0:?}: use letters, digits and '-' in labels of at most 63 \
         characters separated by '.', neither starting nor ending with '-'"
    )]
    BadSelector(String),
}

/// A new private key of `algorithm`, PKCS#8 DER (RFC 5208): Ed25519 from
/// ring, RSA-[`RSA_BITS`] from the `rsa` crate (ring makes no RSA keys;
/// it signs with them). Takes a second or so for RSA.
pub fn generate(algorithm: DkimAlgorithm) -> Result<Vec<u8>, DkimError> {
    let failed = |reason: String| DkimError::Generate {
        algorithm: algorithm.label(),
        reason,
    };
    match algorithm {
        DkimAlgorithm::Ed25519 => Ed25519Key::generate_pkcs8().map_err(|e| failed(e.to_string())),
        DkimAlgorithm::Rsa => {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| failed(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
            Ok(der.as_bytes().to_vec())
        }
    }
}

fn bad_key(key: &StoredDkimKey, reason: impl ToString) -> DkimError {
    DkimError::BadKey {
        algorithm: key.algorithm.label(),
        selector: key.selector.clone(),
        domain: key.domain.clone(),
        reason: reason.to_string(),
    }
}

/// The public key as the `p=` tag of the DNS record carries it, before
/// base64: for Ed25519 the 32-byte key (RFC 8463 §4.2), for RSA the
/// SubjectPublicKeyInfo DER (RFC 6376 §3.6.1, as opendkim publishes it).
pub fn public_key(key: &StoredDkimKey) -> Result<Vec<u8>, DkimError> {
    match key.algorithm {
        DkimAlgorithm::Ed25519 => Ok(Ed25519Key::from_pkcs8_der(&key.private_key)
            .map_err(|e| bad_key(key, e))?
            .public_key()),
        DkimAlgorithm::Rsa => {
            let private = rsa::RsaPrivateKey::from_pkcs8_der(&key.private_key)
                .map_err(|e| bad_key(key, e))?;
            let spki = private
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| bad_key(key, e))?;
            Ok(spki.as_bytes().to_vec())
        }
    }
}

/// One DNS TXT record to publish: `name` fully qualified with its final
/// dot, `text` the record's value as one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// Fully qualified, ending in `.`: `sel._domainkey.example.test.`.
    pub name: String,
    /// The value, unsplit: `v=DKIM1; k=ed25519; p=...`.
    pub text: String,
}

impl TxtRecord {
    /// The record as a zone-file line (RFC 1035 §5.1): the value in quoted
    /// strings of at most 255 bytes each (RFC 1035 §3.3.14; a resolver
    /// joins them, RFC 6376 §3.6.2.2), e.g.
    /// `sel._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=..."`.
    pub fn zone_line(&self) -> String {
        let strings: Vec<String> = self
            .text
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!("{} IN TXT {}", self.name, strings.join(" "))
    }
}

/// The DKIM key record of `key` (RFC 6376 §3.6.1): at
/// `<selector>._domainkey.<domain>.`, `v=DKIM1; k=<ed25519|rsa>; p=<base64>`.
pub fn dkim_record(key: &StoredDkimKey) -> Result<TxtRecord, DkimError> {
    Ok(TxtRecord {
        name: format!("{}._domainkey.{}.", key.selector, key.domain),
        text: format!(
            "v=DKIM1; k={}; p={}",
            key.algorithm.as_str(),
            STANDARD.encode(public_key(key)?)
        ),
    })
}

/// The SPF record (RFC 7208) for the name boxtrap greets with (`EHLO`):
/// challenges go out from the null sender `<>`, so receivers check the
/// HELO identity (RFC 7208 §2.3). `v=spf1 a -all` passes the addresses the
/// name itself resolves to and fails the rest. `None` for an IP address,
/// which has no record.
pub fn helo_spf_record(helo_name: &str) -> Option<TxtRecord> {
    if helo_name.parse::<std::net::IpAddr>().is_ok() || helo_name.is_empty() {
        return None;
    }
    Some(TxtRecord {
        name: format!("{}.", helo_name.trim_end_matches('.')),
        text: "v=spf1 a -all".to_owned(),
    })
}

/// Checks a selector (RFC 6376 §3.1: `selector = sub-domain`) and returns
/// it lower-cased.
pub fn check_selector(selector: &str) -> Result<String, DkimError> {
    let ok = !selector.is_empty()
        && selector.len() <= 200
        && selector.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(selector.to_ascii_lowercase())
    } else {
        Err(DkimError::BadSelector(selector.to_owned()))
    }
}

/// The warning for `domain`, which has challenge-response mailboxes and
/// no DKIM key, with the command that fixes it: what `check-config`
/// prints and `serve` logs when it starts.
pub fn unsigned_domain_warning(domain: &str) -> String {
    format!(
        "{domain} has challenge-response mailboxes and no DKIM key: its challenges and \
         notices go out unsigned, and receivers that check DKIM or DMARC may refuse them; \
         `boxtrap dkim generate {domain}` makes the keys and prints the DNS records to publish"
    )
}

/// One key, parsed, ready to sign for its domain and selector.
pub struct Signer {
    domain: String,
    selector: String,
    algorithm: DkimAlgorithm,
    signer: DkimSigner<DkimKey, Done>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signer({} {}._domainkey.{})",
            self.algorithm, self.selector, self.domain
        )
    }
}

impl Signer {
    /// Parses a stored key. Checks the key (ring validates an RSA key as
    /// it reads it), so reuse a `Signer` rather than making one per mail.
    pub fn new(key: &StoredDkimKey) -> Result<Signer, DkimError> {
        let parsed: DkimKey = match key.algorithm {
            DkimAlgorithm::Ed25519 => Ed25519Key::from_pkcs8_der(&key.private_key)
                .map_err(|e| bad_key(key, e))?
                .into(),
            // Deprecated for `from_key_der`, which takes a type of
            // rustls-pki-types, a crate boxtrap does not depend on directly.
            #[allow(deprecated)]
            DkimAlgorithm::Rsa => RsaKey::<Sha256>::from_pkcs8_der(&key.private_key)
                .map_err(|e| bad_key(key, e))?
                .into(),
        };
        let signer = DkimSigner::from_key(parsed)
            .domain(key.domain.clone())
            .selector(key.selector.clone())
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Signer {
            domain: key.domain.clone(),
            selector: key.selector.clone(),
            algorithm: key.algorithm,
            signer,
        })
    }

    /// The `DKIM-Signature:` header field for `message` (CRLF line
    /// endings), folded, ending in CRLF. `t=` is the wall clock's time of
    /// signing (mail-auth reads it).
    pub fn signature(&self, message: &[u8]) -> Result<String, DkimError> {
        self.signer
            .sign(message)
            .map(|s| s.to_header())
            .map_err(|e| DkimError::Sign {
                selector: self.selector.clone(),
                domain: self.domain.clone(),
                reason: e.to_string(),
            })
    }

    /// The signing domain, `d=`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector, `s=`.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The key's algorithm; it signs as `a=ed25519-sha256` or `a=rsa-sha256`.
    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }
}

/// The keys a mail is signed with: none (sent unsigned), or every key of
/// the sending domain. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Signers(Arc<Vec<Arc<Signer>>>);

impl Signers {
    /// Signs with each of `signers`, in this order (top first).
    pub fn new(signers: Vec<Arc<Signer>>) -> Signers {
        Signers(Arc::new(signers))
    }

    /// No key: [`Signers::sign`] returns the message as it is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys, in signing order.
    pub fn iter(&self) -> impl Iterator<Item = &Signer> {
        self.0.iter().map(|s| &**s)
    }

    /// `message` with one `DKIM-Signature:` per key on top, each over the
    /// message as given (so neither signs the other). Ed25519 first when
    /// the keys are in [`crate::store::Store::dkim_keys`] order: a verifier
    /// that checks only the first signature it understands (RFC 6376 §6.1)
    /// still finds the RSA one. Pure: no I/O.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        if self.is_empty() {
            return Ok(message.to_vec());
        }
        let mut headers = String::new();
        for s in self.iter() {
            headers.push_str(&s.signature(message)?);
        }
        let mut out = Vec::with_capacity(headers.len() + message.len());
        out.extend_from_slice(headers.as_bytes());
        out.extend_from_slice(message);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn stored(algorithm: DkimAlgorithm, selector: &str, der: Vec<u8>) -> StoredDkimKey {
        StoredDkimKey {
            domain: "example.test".into(),
            selector: selector.into(),
            algorithm,
            private_key: der,
            created_at: Timestamp::from_secs(1),
        }
    }

    const MESSAGE: &[u8] = b"From: alice@example.test\r\nTo: bob@example.net\r\n\
        Subject: hi\r\nDate: Fri, 27 Nov 2026 14:05:53 +0000\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n";

    /// The tag=value pairs of a DKIM-Signature header, unfolded.
    fn tags(header: &str) -> Vec<(String, String)> {
        let value = header.split_once(':').unwrap().1;
        let unfolded: String = value.split_whitespace().collect();
        unfolded
            .split(';')
            .filter(|t| !t.is_empty())
            .map(|t| {
                let (k, v) = t.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn tag<'t>(tags: &'t [(String, String)], name: &str) -> &'t str {
        &tags.iter().find(|(k, _)| k == name).unwrap().1
    }

    #[test]
    fn keys_are_made_read_back_and_published() {
        let ed = stored(
            DkimAlgorithm::Ed25519,
            "e",
            generate(DkimAlgorithm::Ed25519).unwrap(),
        );
        let rsa = stored(
            DkimAlgorithm::Rsa,
            "r",
            generate(DkimAlgorithm::Rsa).unwrap(),
        );
        assert_eq!(public_key(&ed).unwrap().len(), 32, "RFC 8463: the bare key");
        let spki = public_key(&rsa).unwrap();
        // SubjectPublicKeyInfo of a 2048-bit key: 294 bytes, rsaEncryption OID.
        assert_eq!(spki.len(), 294);
        assert!(
            spki.windows(9)
                .any(|w| w == [6, 9, 42, 134, 72, 134, 247, 13, 1])
        );

        let r = dkim_record(&ed).unwrap();
        assert_eq!(r.name, "e._domainkey.example.test.");
        assert!(r.text.starts_with("v=DKIM1; k=ed25519; p="), "{}", r.text);
        assert_eq!(
            r.zone_line(),
            format!("e._domainkey.example.test. IN TXT \"{}\"", r.text)
        );
        let r = dkim_record(&rsa).unwrap();
        assert!(
            r.text
                .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
        );
        let line = r.zone_line();
        let strings: Vec<&str> = line
            .split_once(" IN TXT ")
            .unwrap()
            .1
            .split("\" \"")
            .map(|s| s.trim_matches('"'))
            .collect();
        assert!(strings.len() == 2 && strings[0].len() == 255, "{line}");
        assert_eq!(strings.concat(), r.text);

        let broken = stored(DkimAlgorithm::Rsa, "r", ed.private_key.clone());
        let e = Signer::new(&broken).unwrap_err();
        assert!(e.to_string().contains("r._domainkey.example.test"), "{e}");
        assert!(public_key(&broken).is_err());
    }

    #[test]
    fn each_key_adds_one_signature_on_top_of_the_unchanged_message() {
        let keys = [
            stored(
                DkimAlgorithm::Ed25519,
                "e",
                generate(DkimAlgorithm::Ed25519).unwrap(),
            ),
            stored(
                DkimAlgorithm::Rsa,
                "r",
                generate(DkimAlgorithm::Rsa).unwrap(),
            ),
        ];
        let signers = Signers::new(
            keys.iter()
                .map(|k| Arc::new(Signer::new(k).unwrap()))
                .collect(),
        );
        let signed = signers.sign(MESSAGE).unwrap();
        assert!(signed.ends_with(MESSAGE));
        let top = String::from_utf8(signed[..signed.len() - MESSAGE.len()].to_vec()).unwrap();
        let headers: Vec<String> = top
            .split("\r\nDKIM-Signature")
            .map(|h| h.trim_start_matches("DKIM-Signature").to_owned())
            .collect();
        assert_eq!(headers.len(), 2, "{top}");
        for (h, (a, s)) in headers
            .iter()
            .zip([("ed25519-sha256", "e"), ("rsa-sha256", "r")])
        {
            let t = tags(h);
            assert_eq!(tag(&t, "a"), a);
            assert_eq!(tag(&t, "s"), s);
            assert_eq!(tag(&t, "d"), "example.test");
            assert_eq!(tag(&t, "c"), "relaxed/relaxed");
            let h = tag(&t, "h").to_ascii_lowercase();
            assert!(h.starts_with("message-id:date:subject:to:from:"), "{h}");
            for name in [
                "in-reply-to",
                "auto-submitted",
                "content-type",
                "x-boxtrap-challenge",
            ] {
                assert!(h.split(':').any(|x| x == name), "{name} in {h}");
            }
            assert_eq!(h.matches("from").count(), 2, "From over-signed: {h}");
        }
        assert_eq!(Signers::default().sign(MESSAGE).unwrap(), MESSAGE);
    }

    #[test]
    fn selectors_are_dns_labels() {
        assert_eq!(check_selector("2026-11.Ed").unwrap(), "2026-11.ed");
        assert_eq!(check_selector("boxtrap-rsa").unwrap(), "boxtrap-rsa");
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", "ä", &"a".repeat(64)] {
            let e = check_selector(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn the_helo_spf_record_is_for_a_name_only() {
        let r = helo_spf_record("mx.example.test").unwrap();
        assert_eq!(r.zone_line(), "mx.example.test. IN TXT \"v=spf1 a -all\"");
        assert!(helo_spf_record("192.0.2.1").is_none());
    }
}
