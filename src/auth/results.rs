//! [`AuthResults`]: what SPF, DKIM, DMARC and ARC said about one message,
//! as plain data, and the questions the policy asks of it.

use super::config::Alignment;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A result word of RFC 8601 §2.7 (the words SPF, DKIM, DMARC and ARC share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResult {
    /// Authenticated.
    Pass,
    /// Checked and not authenticated (SPF `-all`, a bad DKIM signature or
    /// body hash, DMARC without an aligned pass).
    Fail,
    /// SPF `~all`: probably not authorized (RFC 7208 §2.6.5).
    SoftFail,
    /// No assertion (SPF `?all`; a DKIM signature that could not be
    /// processed, RFC 8601 §2.7.1).
    Neutral,
    /// Nothing to check: no record, no signature.
    None,
    /// A DNS failure: the answer may differ later (RFC 7208 §2.6.6).
    TempError,
    /// A record that cannot be used: malformed, too many lookups, no key.
    PermError,
    /// Verified, but not acceptable to local policy (RFC 8601 §2.7.1).
    Policy,
}

impl AuthResult {
    /// The RFC 8601 word: `pass`, `fail`, `softfail`, `neutral`, `none`,
    /// `temperror`, `permerror` or `policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
            AuthResult::Policy => "policy",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mechanism that authenticated a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// SPF (RFC 7208) for the envelope sender (or HELO name).
    Spf,
    /// A DKIM signature (RFC 6376).
    Dkim,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::Spf => "SPF",
            Mechanism::Dkim => "DKIM",
        })
    }
}

/// A DMARC policy (RFC 7489 §6.3 `p=`, `sp=`; RFC 9989 `np=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    /// No action asked.
    None,
    /// Treat as suspicious (we hold it without a challenge).
    Quarantine,
    /// Refuse it.
    Reject,
}

impl DmarcPolicy {
    /// `none`, `quarantine` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

impl fmt::Display for DmarcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which identity SPF checked (RFC 7208 §2.3, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfIdentity {
    /// The MAIL FROM address.
    MailFrom,
    /// The HELO/EHLO name, checked when MAIL FROM is null (`<>`).
    Helo,
}

/// The SPF check (RFC 7208).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfCheck {
    pub result: AuthResult,
    pub identity: SpfIdentity,
    /// The identity as given: the MAIL FROM address, or the HELO name.
    pub sender: String,
    /// The domain whose SPF record was evaluated, lower case (empty when
    /// the identity has no usable domain, e.g. an address literal HELO).
    pub domain: String,
    /// How `domain` aligns with the From: domain: `Some(Strict)` when equal
    /// (aligned in both modes), `Some(Relaxed)` when only the organizational
    /// domains are equal, `None` when not aligned or there is no From: domain.
    pub aligned: Option<Alignment>,
    /// Why the result is what it is, when there is more to say.
    pub reason: Option<String>,
}

/// One DKIM signature's check (RFC 6376).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimCheck {
    pub result: AuthResult,
    /// The signing domain, `d=`, lower case (empty for a signature that
    /// could not be parsed).
    pub domain: String,
    /// The selector, `s=`.
    pub selector: String,
    /// `rsa-sha256`, `ed25519-sha256`, `rsa-sha1` (empty when unknown).
    pub algorithm: String,
    /// As [`SpfCheck::aligned`], for `domain`; worked out for passing
    /// signatures only (`None` for the others).
    pub aligned: Option<Alignment>,
    /// Why it did not pass.
    pub reason: Option<String>,
}

/// The DMARC check (RFC 7489; mail-auth follows RFC 9989's DNS tree walk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcCheck {
    /// `pass`, `fail`, `none` (no record, or no single From: domain),
    /// `temperror` or `permerror`.
    pub result: AuthResult,
    /// The From: domain (RFC 5322.From), lower case; empty when the
    /// message has none or several different ones.
    pub from_domain: String,
    /// The policy that applies to this From: domain (`p=` for the domain,
    /// `sp=`/`np=` for a subdomain, one level lower for `t=y`); `None`
    /// without a record.
    pub policy: DmarcPolicy,
    /// What the domain asks done with this message (RFC 7489 §7.2.1.1):
    /// `policy` when DMARC failed and no trusted ARC sealer stands in,
    /// otherwise `None`.
    pub disposition: DmarcPolicy,
    /// The trusted ARC sealer whose chain vouches for this message, when a
    /// DMARC failure is not enforced because of it (RFC 7489 §7.2.1.1
    /// `local_policy` override, RFC 8617 §7.2).
    pub overridden_by_arc: Option<String>,
    /// Why the result is what it is, when there is more to say.
    pub reason: Option<String>,
}

/// The ARC check (RFC 8617).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcCheck {
    /// `pass` (the chain validates), `fail`, `none` (no ARC sets) or
    /// `temperror`.
    pub result: AuthResult,
    /// ARC sets in the chain.
    pub sets: u32,
    /// The newest set's sealer: `d=` of the highest-instance `ARC-Seal`.
    pub sealer: Option<String>,
    /// `sealer` is in `auth.trusted_arc_sealers`.
    pub sealer_trusted: bool,
    /// What the newest `ARC-Authentication-Results` recorded for DMARC,
    /// DKIM and SPF when the sealer received the message, e.g.
    /// `dmarc=pass header.from=example.org`.
    pub sealed_results: Vec<String>,
    /// Why it did not pass.
    pub reason: Option<String>,
}

/// What SPF, DKIM, DMARC and ARC said about one message. Plain data:
/// `Clone`, serde (`Serialize`/`Deserialize`) for storage, and
/// [`AuthResults::header_value`] / [`AuthResults::summary`] for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    /// The client's IP address (for `smtp.remote-ip`).
    pub client_ip: std::net::IpAddr,
    /// DNS failures outside the checks below (finding an organizational
    /// domain for alignment), each naming the name looked up.
    pub dns_errors: Vec<String>,
    pub spf: SpfCheck,
    /// One entry per `DKIM-Signature:` field: those checked in header
    /// order, then those left unchecked as `policy` (rsa-sha1, RFC 8301
    /// §3.1; beyond [`super::MAX_DKIM_SIGNATURES`]).
    pub dkim: Vec<DkimCheck>,
    pub dmarc: DmarcCheck,
    pub arc: ArcCheck,
}

impl AuthResults {
    /// Whether the From: address is authenticated: a passing DKIM signature
    /// whose `d=` aligns with the From: domain, or an SPF pass for a MAIL
    /// FROM domain (the HELO name for a null sender, RFC 7489 §3.1.2) that
    /// aligns with it. `alignment`: `Relaxed` (same organizational domain)
    /// or `Strict` (same domain). Gives the mechanism and the authenticated
    /// domain; DKIM is preferred, as it survives forwarding.
    pub fn sender_authenticated(&self, alignment: Alignment) -> Option<(Mechanism, String)> {
        let ok = |aligned: Option<Alignment>| match aligned {
            Some(Alignment::Strict) => true,
            Some(Alignment::Relaxed) => alignment == Alignment::Relaxed,
            None => false,
        };
        if let Some(d) = self
            .dkim
            .iter()
            .find(|d| d.result == AuthResult::Pass && ok(d.aligned))
        {
            return Some((Mechanism::Dkim, d.domain.clone()));
        }
        (self.spf.result == AuthResult::Pass && ok(self.spf.aligned))
            .then(|| (Mechanism::Spf, self.spf.domain.clone()))
    }

    /// Something positively failed: SPF `fail` (not `softfail`), a DKIM
    /// signature that failed with no signature passing, or DMARC `fail`.
    /// Says which, for the log and the held message's reason. For the
    /// relaxed mode "challenge unless SPF, DKIM or DMARC fails".
    pub fn any_failed(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.spf.result == AuthResult::Fail {
            why.push(format!("SPF fail ({})", self.spf.domain));
        }
        if !self.dkim.iter().any(|d| d.result == AuthResult::Pass)
            && let Some(d) = self.dkim.iter().find(|d| d.result == AuthResult::Fail)
        {
            why.push(format!(
                "DKIM fail ({}{})",
                d.domain,
                d.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        if self.dmarc.result == AuthResult::Fail {
            why.push(format!(
                "DMARC fail ({}, p={})",
                self.dmarc.from_domain, self.dmarc.policy
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// A DNS failure kept some check from finishing (a `temperror`
    /// anywhere): the caller holds the message without a challenge and
    /// never refuses it. Says which checks.
    pub fn temporary_error(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.spf.result == AuthResult::TempError {
            why.push(format!("SPF temperror ({})", self.spf.domain));
        }
        for d in self
            .dkim
            .iter()
            .filter(|d| d.result == AuthResult::TempError)
        {
            why.push(format!("DKIM temperror ({})", d.domain));
        }
        if self.dmarc.result == AuthResult::TempError {
            why.push(format!("DMARC temperror ({})", self.dmarc.from_domain));
        }
        if self.arc.result == AuthResult::TempError {
            why.push(format!(
                "ARC temperror ({})",
                self.arc.sealer.as_deref().unwrap_or("")
            ));
        }
        why.extend(self.dns_errors.iter().map(|e| format!("DNS: {e}")));
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// DMARC failed and the From: domain's policy (`p=`, or `sp=`/`np=`
    /// for a subdomain, lowered by `t=y`) is `reject` or `quarantine`, and
    /// no trusted ARC sealer vouches for the message
    /// ([`DmarcCheck::overridden_by_arc`]). `None` otherwise, also when a
    /// trusted sealer's chain could not be checked for a DNS failure (then
    /// [`AuthResults::temporary_error`] says so): a DNS failure never refuses.
    pub fn dmarc_failure(&self) -> Option<DmarcPolicy> {
        let undecided = self.arc.result == AuthResult::TempError && self.arc.sealer_trusted;
        (self.dmarc.result == AuthResult::Fail
            && self.dmarc.overridden_by_arc.is_none()
            && !undecided
            && self.dmarc.policy != DmarcPolicy::None)
            .then_some(self.dmarc.policy)
    }

    /// The `Authentication-Results:` header field (RFC 8601 §2.2) with
    /// `authserv_id`, folded one result per line, ending in CRLF: e.g.
    /// `Authentication-Results: mx.example.test;\r\n\tspf=pass
    /// smtp.mailfrom=a@example.org;\r\n\tdkim=pass header.d=example.org
    /// header.s=sel;\r\n\tdmarc=pass header.from=example.org
    /// policy.dmarc=reject;\r\n\tarc=none\r\n`. Values from the client
    /// (addresses, HELO) are quoted where RFC 8601's grammar needs it, and
    /// control characters are dropped, so the field cannot be split.
    pub fn header_value(&self, authserv_id: &str) -> String {
        let mut parts = Vec::new();
        let spf = &self.spf;
        let mut p = format!("spf={}", spf.result);
        push_comment(&mut p, spf.reason.as_deref());
        match spf.identity {
            SpfIdentity::MailFrom => {
                p.push_str(" smtp.mailfrom=");
                p.push_str(&pvalue(&spf.sender));
            }
            SpfIdentity::Helo => {
                p.push_str(" smtp.helo=");
                p.push_str(&pvalue(&spf.sender));
            }
        }
        parts.push(p);
        if self.dkim.is_empty() {
            parts.push("dkim=none".into());
        }
        for d in &self.dkim {
            let mut p = format!("dkim={}", d.result);
            push_comment(&mut p, d.reason.as_deref());
            if !d.domain.is_empty() {
                p.push_str(" header.d=");
                p.push_str(&pvalue(&d.domain));
            }
            if !d.selector.is_empty() {
                p.push_str(" header.s=");
                p.push_str(&pvalue(&d.selector));
            }
            if !d.algorithm.is_empty() {
                p.push_str(" header.a=");
                p.push_str(&pvalue(&d.algorithm));
            }
            parts.push(p);
        }
        let m = &self.dmarc;
        let mut p = format!("dmarc={}", m.result);
        let note = m
            .overridden_by_arc
            .as_ref()
            .map(|s| format!("not enforced: ARC sealed by trusted {s}"))
            .or_else(|| m.reason.clone());
        push_comment(&mut p, note.as_deref());
        if !m.from_domain.is_empty() {
            p.push_str(" header.from=");
            p.push_str(&pvalue(&m.from_domain));
            p.push_str(" policy.dmarc=");
            p.push_str(m.policy.as_str());
        }
        parts.push(p);
        let a = &self.arc;
        let mut p = format!("arc={}", a.result);
        let note = match (&a.sealer, &a.reason) {
            (Some(s), _) if a.result == AuthResult::Pass => Some(format!(
                "{} sets, sealed by {}{}",
                a.sets,
                s,
                if a.sealer_trusted { ", trusted" } else { "" }
            )),
            (_, r) => r.clone(),
        };
        push_comment(&mut p, note.as_deref());
        if a.result != AuthResult::None {
            p.push_str(" smtp.remote-ip=");
            p.push_str(&self.client_ip.to_string());
        }
        parts.push(p);
        let mut out = format!("Authentication-Results: {}", clean(authserv_id));
        for part in parts {
            out.push_str(";\r\n\t");
            out.push_str(&part);
        }
        out.push_str("\r\n");
        out
    }

    /// Plain words for the mailbox owner, e.g. `SPF pass (example.org),
    /// DKIM pass (example.org), DMARC pass (p=reject)`; ARC is named when
    /// the message has ARC sets.
    pub fn summary(&self) -> String {
        let mut out = Vec::new();
        out.push(if self.spf.domain.is_empty() {
            format!("SPF {}", self.spf.result)
        } else {
            format!("SPF {} ({})", self.spf.result, self.spf.domain)
        });
        if self.dkim.is_empty() {
            out.push("DKIM none".into());
        } else {
            let sigs: Vec<String> = self
                .dkim
                .iter()
                .map(|d| {
                    if d.domain.is_empty() {
                        d.result.to_string()
                    } else {
                        format!("{} ({})", d.result, d.domain)
                    }
                })
                .collect();
            out.push(format!("DKIM {}", sigs.join(", ")));
        }
        let m = &self.dmarc;
        out.push(match (&m.overridden_by_arc, m.from_domain.is_empty()) {
            (_, true) => format!("DMARC {}", m.result),
            (Some(sealer), false) => format!(
                "DMARC {} (p={}, not enforced: forwarded by trusted ARC sealer {sealer})",
                m.result, m.policy
            ),
            (None, false) if m.result == AuthResult::None => "DMARC none".to_owned(),
            (None, false) => format!("DMARC {} (p={})", m.result, m.policy),
        });
        if self.arc.result != AuthResult::None {
            out.push(match &self.arc.sealer {
                Some(s) => format!(
                    "ARC {} (sealed by {s}{})",
                    self.arc.result,
                    if self.arc.sealer_trusted {
                        ", trusted"
                    } else {
                        ""
                    }
                ),
                None => format!("ARC {}", self.arc.result),
            });
        }
        out.join(", ")
    }
}

/// `text` without control characters (so a header cannot be split).
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// A comment ` (text)` with parentheses and backslashes left out.
fn push_comment(out: &mut String, text: Option<&str>) {
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        let t: String = clean(text)
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | '\\'))
            .collect();
        out.push_str(" (");
        out.push_str(&t);
        out.push(')');
    }
}

/// An RFC 8601 `pvalue` (§2.2): as it is when it is a MIME token (RFC
/// 2045 §5.1) or `local-part@domain` of atext and dots, else a
/// quoted-string.
fn pvalue(value: &str) -> String {
    let v = clean(value);
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c);
    let plain = !v.is_empty()
        && match v.rsplit_once('@') {
            Some((local, domain)) => {
                !domain.is_empty()
                    && local.chars().all(atext)
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            }
            None => v.chars().all(token),
        };
    if plain {
        v
    } else {
        let mut q = String::with_capacity(v.len() + 2);
        q.push('"');
        for c in v.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> AuthResults {
        AuthResults {
            client_ip: "192.0.2.1".parse().unwrap(),
            dns_errors: Vec::new(),
            spf: SpfCheck {
                result: AuthResult::SoftFail,
                identity: SpfIdentity::MailFrom,
                sender: "a@example.org".into(),
                domain: "example.org".into(),
                aligned: Some(Alignment::Strict),
                reason: None,
            },
            dkim: vec![DkimCheck {
                result: AuthResult::Fail,
                domain: "example.org".into(),
                selector: "s".into(),
                algorithm: "rsa-sha256".into(),
                aligned: None,
                reason: Some("body hash did not verify".into()),
            }],
            dmarc: DmarcCheck {
                result: AuthResult::Fail,
                from_domain: "example.org".into(),
                policy: DmarcPolicy::Reject,
                disposition: DmarcPolicy::Reject,
                overridden_by_arc: None,
                reason: None,
            },
            arc: ArcCheck {
                result: AuthResult::None,
                sets: 0,
                sealer: None,
                sealer_trusted: false,
                sealed_results: Vec::new(),
                reason: None,
            },
        }
    }

    #[test]
    fn dmarc_failure_is_enforced_only_when_nothing_stands_in_or_is_undecided() {
        let r = results();
        assert_eq!(r.dmarc_failure(), Some(DmarcPolicy::Reject));

        let mut q = results();
        q.dmarc.policy = DmarcPolicy::Quarantine;
        assert_eq!(q.dmarc_failure(), Some(DmarcPolicy::Quarantine));

        let mut none = results();
        none.dmarc.policy = DmarcPolicy::None;
        assert_eq!(none.dmarc_failure(), None);

        let mut vouched = results();
        vouched.dmarc.overridden_by_arc = Some("lists.example.net".into());
        assert_eq!(vouched.dmarc_failure(), None);

        // A trusted sealer whose chain could not be checked: no refusal.
        let mut undecided = results();
        undecided.arc.result = AuthResult::TempError;
        undecided.arc.sealer = Some("lists.example.net".into());
        undecided.arc.sealer_trusted = true;
        assert_eq!(undecided.dmarc_failure(), None);
        assert!(
            undecided
                .temporary_error()
                .unwrap()
                .contains("ARC temperror")
        );
        // ... but an untrusted one changes nothing.
        undecided.arc.sealer_trusted = false;
        assert_eq!(undecided.dmarc_failure(), Some(DmarcPolicy::Reject));

        let mut temp = results();
        temp.dmarc.result = AuthResult::TempError;
        assert_eq!(temp.dmarc_failure(), None);
        assert!(temp.temporary_error().unwrap().contains("DMARC temperror"));
    }

    #[test]
    fn any_failed_ignores_softfail_and_a_failing_signature_beside_a_passing_one() {
        let mut r = results();
        r.dmarc.result = AuthResult::None;
        assert_eq!(
            r.any_failed().as_deref(),
            Some("DKIM fail (example.org: body hash did not verify)")
        );
        r.dkim.push(DkimCheck {
            result: AuthResult::Pass,
            domain: "esp.example.net".into(),
            selector: "s".into(),
            algorithm: "ed25519-sha256".into(),
            aligned: None,
            reason: None,
        });
        assert_eq!(r.any_failed(), None, "softfail and an outweighed DKIM fail");
        // Passing but not aligned: not the sender.
        assert_eq!(r.sender_authenticated(Alignment::Relaxed), None);
        r.spf.result = AuthResult::Pass;
        assert_eq!(
            r.sender_authenticated(Alignment::Strict),
            Some((Mechanism::Spf, "example.org".into()))
        );
    }

    #[test]
    fn pvalues_are_quoted_when_the_grammar_needs_it() {
        assert_eq!(pvalue("a.b+c@example.org"), "a.b+c@example.org");
        assert_eq!(pvalue("example.org"), "example.org");
        assert_eq!(pvalue("a b@example.org"), "\"a b@example.org\"");
        assert_eq!(pvalue("x;y"), "\"x;y\"");
        assert_eq!(pvalue("q\"\\@x.test"), "\"q\\\"\\\\@x.test\"");
        assert_eq!(pvalue("a\r\nb@x.test"), "ab@x.test");
        assert_eq!(pvalue(""), "\"\"");
        let mut c = String::new();
        push_comment(&mut c, Some("bad (key)\r\n\\"));
        assert_eq!(c, " (bad key)");
    }
}
