//! The `[auth]` section: how incoming mail is authenticated and what the
//! results may do. [`crate::config::Config`] holds it as `auth`; the keys
//! are documented here and in `config.example.toml`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// DMARC identifier alignment (RFC 7489 §3.1): how an SPF- or
/// DKIM-authenticated domain must match the `From:` domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Alignment {
    /// The same organizational domain (`mail.example.org` aligns with
    /// `example.org`); DMARC's default.
    #[default]
    Relaxed,
    /// Exactly the same domain.
    Strict,
}

impl Alignment {
    /// The config word: `"relaxed"` or `"strict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alignment::Relaxed => "relaxed",
            Alignment::Strict => "strict",
        }
    }
}

impl TryFrom<String> for Alignment {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "relaxed" => Ok(Alignment::Relaxed),
            "strict" => Ok(Alignment::Strict),
            _ => Err(format!(
                "auth.alignment: {s:?} is not one of relaxed, strict"
            )),
        }
    }
}

impl From<Alignment> for String {
    fn from(a: Alignment) -> String {
        a.as_str().to_owned()
    }
}

impl fmt::Display for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[auth]`: sender authentication of incoming mail (SPF, DKIM, DMARC, ARC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Check SPF, DKIM, DMARC and ARC at all. Off: no check is made and no
    /// `Authentication-Results:` header added, no sender counts as
    /// authenticated (so only `challenge_unauthenticated` gets anyone a
    /// challenge), nothing is refused for DMARC. For a server behind a
    /// gateway that checks, and for measuring what the checks cost.
    pub enabled: bool,
    /// The authserv-id of the `Authentication-Results:` header boxtrap adds
    /// (RFC 8601 §2.5); incoming headers claiming it are removed first.
    /// Empty means `hostname`.
    pub authserv_id: String,
    /// Refuse mail that fails DMARC where the From: domain publishes
    /// `p=reject` with `550 5.7.1` at the end of DATA (RFC 7489 §6.6.2).
    /// Off: such mail is held without a challenge, like `p=quarantine`.
    pub dmarc_reject: bool,
    /// How an SPF- or DKIM-authenticated domain must match the From:
    /// domain for the sender to count as authenticated (and be challenged):
    /// "relaxed" (same organizational domain) or "strict" (same domain).
    pub alignment: Alignment,
    /// ARC sealers (RFC 8617, the `d=` of an `ARC-Seal`) trusted to vouch
    /// for mail they forwarded: when the newest ARC set is sealed by one of
    /// these domains, the chain validates and its recorded results say
    /// DMARC (or an aligned DKIM or SPF) passed, a DMARC failure is taken
    /// as forwarding damage and not enforced. Domain names.
    pub trusted_arc_sealers: Vec<String>,
    /// Server-wide relaxed mode: challenge an unknown sender unless SPF,
    /// DKIM or DMARC fails, instead of only senders whose From: address is
    /// authenticated; for senders whose domain publishes nothing.
    pub challenge_unauthenticated: bool,
    /// Our own domains for which that relaxed mode applies even when
    /// `challenge_unauthenticated` is off. Domain names.
    pub challenge_unauthenticated_domains: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            authserv_id: String::new(),
            dmarc_reject: true,
            alignment: Alignment::Relaxed,
            trusted_arc_sealers: Vec::new(),
            challenge_unauthenticated: false,
            challenge_unauthenticated_domains: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Refuses a bad `[auth]` value, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.authserv_id.is_empty() && !is_authserv_id(&self.authserv_id) {
            return Err(format!(
                "auth.authserv_id: {:?} is not a domain name (RFC 8601 §2.5)",
                self.authserv_id
            ));
        }
        for (key, list) in [
            ("trusted_arc_sealers", &self.trusted_arc_sealers),
            (
                "challenge_unauthenticated_domains",
                &self.challenge_unauthenticated_domains,
            ),
        ] {
            if let Some(bad) = list.iter().find(|d| !is_domain_name(d)) {
                return Err(format!("auth.{key}: {bad:?} is not a domain name"));
            }
        }
        Ok(())
    }

    /// The authserv-id to use: `authserv_id`, or `hostname` when it is empty.
    pub fn authserv_id_or<'a>(&'a self, hostname: &'a str) -> &'a str {
        if self.authserv_id.is_empty() {
            hostname
        } else {
            &self.authserv_id
        }
    }

    /// Whether `sealer` (an ARC-Seal `d=`) is in `trusted_arc_sealers`,
    /// compared case-insensitively, a trailing dot ignored.
    pub fn is_trusted_sealer(&self, sealer: &str) -> bool {
        let sealer = sealer.trim_end_matches('.');
        self.trusted_arc_sealers
            .iter()
            .any(|t| t.trim_end_matches('.').eq_ignore_ascii_case(sealer))
    }

    /// Whether the relaxed mode ("challenge unless SPF, DKIM or DMARC
    /// fails") applies to mail for `our_domain`: `challenge_unauthenticated`
    /// is on, or the domain is in `challenge_unauthenticated_domains`
    /// (case-insensitively).
    pub fn challenges_unauthenticated(&self, our_domain: &str) -> bool {
        self.challenge_unauthenticated
            || self
                .challenge_unauthenticated_domains
                .iter()
                .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(our_domain))
    }
}

/// A DNS domain name in its ASCII form (RFC 1035 §2.3.1, with RFC 1123
/// §2.1's leading digits): labels of letters, digits and hyphens, 1 to 63
/// octets, not starting or ending with a hyphen; at most 253 octets; one
/// trailing dot allowed. Underscores are allowed too, as DNS names of
/// services use them.
pub fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An authserv-id we can write as an RFC 8601 `value` token: a domain name.
fn is_authserv_id(id: &str) -> bool {
    is_domain_name(id)
}
