//! Sender authentication of incoming mail: SPF (RFC 7208), DKIM (RFC 6376,
//! RSA and Ed25519), DMARC (RFC 7489; mail-auth follows RFC 9989's DNS tree
//! walk for the organizational domain) and ARC (RFC 8617), behind our own
//! small interface over Stalwart's `mail-auth` 0.13.
//!
//! [`Authenticator::verify`] checks one message and gives [`AuthResults`],
//! plain data with no mail-auth types in it: the result word of each check
//! and the domain it concerns, DMARC's policy and disposition, and whether
//! a trusted ARC sealer stands in for a DMARC failure. The policy asks it
//! [`AuthResults::sender_authenticated`], [`AuthResults::any_failed`],
//! [`AuthResults::temporary_error`] and [`AuthResults::dmarc_failure`]; the
//! accept path adds [`AuthResults::header_value`] after removing forged
//! results with [`strip_own_results`]. [`AuthConfig`] is the `[auth]`
//! config section.
//!
//! This module decides nothing about a message's fate, and does not know
//! the SMTP session, the quarantine or the store.

mod cache;
mod config;
mod results;
mod strip;
#[cfg(test)]
mod tests;

pub use config::{Alignment, AuthConfig, is_domain_name};
pub use results::{
    ArcCheck, AuthResult, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, Mechanism, SpfCheck,
    SpfIdentity,
};
pub use strip::strip_own_results;

use cache::TxtCache;
use hickory_resolver::TokioResolver;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Dmarc, Policy, Psd};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, Parameters, SpfResult,
};
use std::collections::HashMap;
use std::net::IpAddr;

/// DKIM signatures checked per message (RFC 6376 §6.1 lets a verifier
/// limit them); further ones are recorded as `policy`, unchecked.
pub const MAX_DKIM_SIGNATURES: usize = 10;

/// Verifies incoming mail. Cheap to clone (the resolver inside is shared);
/// every check asks the DNS through the resolver it was built with (whose
/// cache is the only one).
/// Parsed records [`Authenticator`] keeps (each until its TTL runs out).
const TXT_CACHE_RECORDS: u64 = 10_000;

#[derive(Clone)]
pub struct Authenticator {
    inner: MessageAuthenticator,
    /// Parsed SPF, DKIM key and DMARC records, until their TTL runs out.
    txt: TxtCache,
    hostname: String,
    trusted_arc_sealers: Vec<String>,
}

impl Authenticator {
    /// An authenticator asking `resolver`. `hostname` is our host name, the
    /// receiving host of SPF (RFC 7208 §7.3 `%{r}`); `config` gives the
    /// trusted ARC sealers.
    pub fn new(resolver: TokioResolver, hostname: &str, config: &AuthConfig) -> Authenticator {
        Authenticator {
            inner: MessageAuthenticator(resolver),
            txt: TxtCache::new(TXT_CACHE_RECORDS),
            hostname: hostname.to_owned(),
            trusted_arc_sealers: config
                .trusted_arc_sealers
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Checks one message as received from `client_ip` after `HELO helo`
    /// and `MAIL FROM:<mail_from>` (`None` for the null sender `<>`):
    /// SPF for the MAIL FROM domain, or for the HELO name when the sender
    /// is null; DKIM for every signature; DMARC for the From: domain, with
    /// the alignment its record asks; ARC, recorded, and standing in for a
    /// DMARC failure when the newest set's sealer is trusted. `message` is
    /// the message as received (header and body, CRLF line ends). Never
    /// fails: a DNS failure is a `temperror` result.
    pub async fn verify(
        &self,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
    ) -> AuthResults {
        let mut dns_errors = Vec::new();
        let mut orgs = OrgDomains {
            auth: &self.inner,
            txt: &self.txt,
            memo: HashMap::new(),
        };
        let Some(mut parsed) = AuthenticatedMessage::parse(message) else {
            let (_, spf) = self.check_spf(client_ip, helo, mail_from).await;
            return AuthResults {
                spf,
                dkim: Vec::new(),
                dmarc: DmarcCheck {
                    result: AuthResult::None,
                    from_domain: String::new(),
                    policy: DmarcPolicy::None,
                    disposition: DmarcPolicy::None,
                    overridden_by_arc: None,
                    reason: Some("no header fields".into()),
                },
                arc: no_arc(),
                client_ip,
                dns_errors,
            };
        };

        // RFC 8301 §3.1: rsa-sha1 "MUST NOT be used for signing or
        // verifying"; RFC 6376 §6.1: verifiers may limit the signatures they
        // check (each costs a DNS lookup, and a message may carry hundreds).
        // Neither kind is checked, nor counts for DMARC: both are `policy`.
        let (sha1, mut rest): (Vec<_>, Vec<_>) = std::mem::take(&mut parsed.dkim_headers)
            .into_iter()
            .partition(|h| h.header.a == Algorithm::RsaSha1);
        let over = rest.split_off(rest.len().min(MAX_DKIM_SIGNATURES));
        parsed.dkim_headers = rest;
        let not_checked =
            |h: &mail_auth::common::headers::Header<'_, mail_auth::dkim::Signature>,
             why: String| DkimCheck {
                result: AuthResult::Policy,
                domain: h.header.d.trim_end_matches('.').to_ascii_lowercase(),
                selector: h.header.s.clone(),
                algorithm: algorithm_name(h.header.a).to_owned(),
                aligned: None,
                reason: Some(why),
            };
        let unchecked: Vec<DkimCheck> = sha1
            .iter()
            .map(|h| not_checked(h, "rsa-sha1 is not accepted (RFC 8301)".into()))
            .chain(over.iter().map(|h| {
                not_checked(
                    h,
                    format!("not checked: more than {MAX_DKIM_SIGNATURES} signatures"),
                )
            }))
            .collect();
        // SPF, DKIM and ARC wait for different DNS answers: ask at once.
        let ((spf_output, mut spf), dkim_output, arc_output) = tokio::join!(
            self.check_spf(client_ip, helo, mail_from),
            self.inner
                .verify_dkim(Parameters::new(&parsed).with_txt_cache(&self.txt)),
            self.inner
                .verify_arc(Parameters::new(&parsed).with_txt_cache(&self.txt)),
        );
        let spf_domain = spf.domain.clone();
        let dmarc_output = self
            .inner
            .verify_dmarc(
                Parameters::new(DmarcParameters::new(
                    &parsed,
                    &dkim_output,
                    &spf_domain,
                    &spf_output,
                ))
                .with_txt_cache(&self.txt),
            )
            .await;

        let from_domain = dmarc_output.domain().to_ascii_lowercase();
        spf.aligned = orgs
            .alignment(&spf.domain, &from_domain, &mut dns_errors)
            .await;
        let mut dkim = Vec::with_capacity(dkim_output.len());
        for out in &dkim_output {
            let sig = out.signature();
            let domain = sig
                .map(|s| {
                    mail_auth::common::to_a_label(&s.d)
                        .trim_end_matches('.')
                        .to_owned()
                })
                .unwrap_or_default();
            let (result, reason) = dkim_word(out.result());
            let aligned = if result == AuthResult::Pass {
                orgs.alignment(&domain, &from_domain, &mut dns_errors).await
            } else {
                None
            };
            dkim.push(DkimCheck {
                result,
                selector: sig.map(|s| s.s.clone()).unwrap_or_default(),
                algorithm: sig
                    .map(|s| algorithm_name(s.a).to_owned())
                    .unwrap_or_default(),
                domain,
                aligned,
                reason,
            });
        }

        dkim.extend(unchecked);
        let mut arc = self.arc_check(&arc_output);

        let (result, reason) = match dmarc_output.result() {
            DmarcResult::Pass => (AuthResult::Pass, None),
            DmarcResult::Fail(_) => (
                AuthResult::Fail,
                Some("no aligned SPF or DKIM pass".to_owned()),
            ),
            DmarcResult::TempError(e) => (AuthResult::TempError, Some(e.to_string())),
            DmarcResult::PermError(e) => (AuthResult::PermError, Some(e.to_string())),
            DmarcResult::None => (AuthResult::None, None),
        };
        let record = dmarc_output.dmarc_record();
        let policy = match (record, dmarc_output.policy()) {
            (None, _) => DmarcPolicy::None,
            (Some(_), Policy::Reject) => DmarcPolicy::Reject,
            (Some(_), Policy::Quarantine) => DmarcPolicy::Quarantine,
            (Some(_), Policy::None | Policy::Unspecified) => DmarcPolicy::None,
        };
        let mut overridden_by_arc = None;
        if result == AuthResult::Fail && arc.result == AuthResult::Pass && arc.sealer_trusted {
            let strict = |a: mail_auth::dmarc::Alignment| a == mail_auth::dmarc::Alignment::Strict;
            let adkim = record.is_some_and(|r| strict(r.adkim));
            let aspf = record.is_some_and(|r| strict(r.aspf));
            let newest = arc_output.sets().last().map(|s| s.results.value);
            if let Some(aar) = newest
                && sealed_results_vouch(
                    &parse_arc_results(aar),
                    &from_domain,
                    adkim,
                    aspf,
                    &mut orgs,
                    &mut dns_errors,
                )
                .await
            {
                overridden_by_arc = arc.sealer.clone();
            }
        }
        arc.sealed_results = arc_output
            .sets()
            .last()
            .map(|s| {
                parse_arc_results(s.results.value)
                    .into_iter()
                    .filter(|r| matches!(r.method.as_str(), "dmarc" | "dkim" | "spf"))
                    .map(|r| r.text)
                    .collect()
            })
            .unwrap_or_default();
        let disposition = if result == AuthResult::Fail && overridden_by_arc.is_none() {
            policy
        } else {
            DmarcPolicy::None
        };
        AuthResults {
            spf,
            dkim,
            dmarc: DmarcCheck {
                result,
                from_domain,
                policy,
                disposition,
                overridden_by_arc,
                reason,
            },
            arc,
            client_ip,
            dns_errors,
        }
    }

    /// [`Authenticator::verify`] within `limit`: when the DNS is slower
    /// (a check can take several lookups in turn, each up to the
    /// resolver's timeout), the checks are given up and every one is a
    /// `temperror` naming the limit, so the caller holds the message
    /// without a challenge and never refuses it.
    pub async fn verify_within(
        &self,
        limit: std::time::Duration,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
    ) -> AuthResults {
        match tokio::time::timeout(limit, self.verify(message, client_ip, helo, mail_from)).await {
            Ok(results) => results,
            Err(_) => {
                let why = format!("checks took longer than {} ms", limit.as_millis());
                let (identity, sender, domain) = match mail_from {
                    Some(addr) => (
                        SpfIdentity::MailFrom,
                        addr,
                        addr.rsplit_once('@').map_or(helo, |(_, d)| d),
                    ),
                    None => (SpfIdentity::Helo, helo, helo),
                };
                AuthResults {
                    client_ip,
                    dns_errors: vec![why.clone()],
                    spf: SpfCheck {
                        result: AuthResult::TempError,
                        identity,
                        sender: sender.to_owned(),
                        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
                        aligned: None,
                        reason: Some(why.clone()),
                    },
                    dkim: Vec::new(),
                    dmarc: DmarcCheck {
                        result: AuthResult::TempError,
                        from_domain: String::new(),
                        policy: DmarcPolicy::None,
                        disposition: DmarcPolicy::None,
                        overridden_by_arc: None,
                        reason: Some(why.clone()),
                    },
                    arc: ArcCheck {
                        result: AuthResult::TempError,
                        reason: Some(why),
                        ..no_arc()
                    },
                }
            }
        }
    }

    /// SPF for the MAIL FROM address, or for the HELO name (as
    /// `postmaster@helo`, RFC 7208 §2.3) when the sender is null. An
    /// identity without a usable domain (an address literal HELO, a bad
    /// name) is `none` without a lookup.
    async fn check_spf(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
    ) -> (mail_auth::SpfOutput, SpfCheck) {
        let (identity, sender, domain) = match mail_from {
            Some(addr) => (
                SpfIdentity::MailFrom,
                addr.to_owned(),
                addr.rsplit_once('@').map_or(helo, |(_, d)| d),
            ),
            None => (SpfIdentity::Helo, helo.to_owned(), helo),
        };
        let domain =
            mail_auth::common::to_a_label(domain.trim_end_matches('.')).to_ascii_lowercase();
        let mut check = SpfCheck {
            result: AuthResult::None,
            identity,
            sender,
            domain: String::new(),
            aligned: None,
            reason: None,
        };
        if !is_domain_name(&domain) {
            check.reason = Some(format!("{domain:?} is not a domain name"));
            return (mail_auth::SpfOutput::new(String::new()), check);
        }
        let output = match mail_from {
            Some(addr) => {
                self.inner
                    .verify_spf(
                        Parameters::new(SpfParameters::verify_mail_from(
                            ip,
                            helo,
                            &self.hostname,
                            addr,
                        ))
                        .with_txt_cache(&self.txt),
                    )
                    .await
            }
            None => {
                self.inner
                    .verify_spf(
                        Parameters::new(SpfParameters::verify_ehlo(ip, helo, &self.hostname))
                            .with_txt_cache(&self.txt),
                    )
                    .await
            }
        };
        check.result = match output.result() {
            SpfResult::Pass => AuthResult::Pass,
            SpfResult::Fail => AuthResult::Fail,
            SpfResult::SoftFail => AuthResult::SoftFail,
            SpfResult::Neutral => AuthResult::Neutral,
            SpfResult::TempError => AuthResult::TempError,
            SpfResult::PermError => AuthResult::PermError,
            SpfResult::None => AuthResult::None,
        };
        check.reason = output.explanation().map(str::to_owned);
        check.domain = domain;
        (output, check)
    }

    fn arc_check(&self, output: &mail_auth::ArcOutput<'_>) -> ArcCheck {
        let (result, reason) = match output.result() {
            DkimResult::Pass => (AuthResult::Pass, None),
            DkimResult::None => (AuthResult::None, None),
            DkimResult::TempError(e) => (AuthResult::TempError, Some(e.to_string())),
            DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
                (AuthResult::Fail, Some(e.to_string()))
            }
        };
        let sealer = output
            .sets()
            .iter()
            .max_by_key(|s| s.seal.header.i)
            .map(|s| s.seal.header.d.trim_end_matches('.').to_ascii_lowercase());
        let sealer_trusted = sealer
            .as_ref()
            .is_some_and(|s| self.trusted_arc_sealers.contains(s));
        ArcCheck {
            result,
            sets: u32::try_from(output.sets().len()).unwrap_or(u32::MAX),
            sealer,
            sealer_trusted,
            sealed_results: Vec::new(),
            reason,
        }
    }
}

fn no_arc() -> ArcCheck {
    ArcCheck {
        result: AuthResult::None,
        sets: 0,
        sealer: None,
        sealer_trusted: false,
        sealed_results: Vec::new(),
        reason: None,
    }
}

/// The RFC 8601 word for a DKIM result, and why when it did not pass. A
/// body hash that does not match is `fail` (RFC 6376 §6.1.3: PERMFAIL),
/// where mail-auth says neutral.
fn dkim_word(result: &DkimResult) -> (AuthResult, Option<String>) {
    use mail_auth::dkim::DkimError;
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::Neutral(e @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some(e.to_string()))
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(e.to_string())),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(e.to_string())),
        DkimResult::PermError(e) => (AuthResult::PermError, Some(e.to_string())),
        DkimResult::TempError(e) => (AuthResult::TempError, Some(e.to_string())),
        DkimResult::None => (AuthResult::None, None),
    }
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

/// Organizational domains (RFC 9989 §4.10.2, the DNS tree walk mail-auth's
/// DMARC uses), found once per message.
struct OrgDomains<'a> {
    auth: &'a MessageAuthenticator,
    txt: &'a TxtCache,
    memo: HashMap<String, Result<String, String>>,
}

impl OrgDomains<'_> {
    /// How `identity` aligns with the From: domain `from` (both lower case):
    /// `Strict` when equal, `Relaxed` when only their organizational domains
    /// are, as mail-auth decides relaxed alignment. A DNS failure is
    /// recorded in `dns_errors` and counts as not aligned.
    async fn alignment(
        &mut self,
        identity: &str,
        from: &str,
        dns_errors: &mut Vec<String>,
    ) -> Option<Alignment> {
        if identity.is_empty() || from.is_empty() {
            return None;
        }
        if identity == from {
            return Some(Alignment::Strict);
        }
        let from_org = match self.get(from).await {
            Ok(org) => org,
            Err(e) => {
                push_once(dns_errors, e);
                return None;
            }
        };
        let under = identity
            .strip_suffix(from_org.as_str())
            .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.'));
        if !under {
            return None;
        }
        match self.get(identity).await {
            Ok(org) if org == from_org => Some(Alignment::Relaxed),
            Ok(_) => None,
            Err(e) => {
                push_once(dns_errors, e);
                None
            }
        }
    }

    async fn get(&mut self, domain: &str) -> Result<String, String> {
        if let Some(found) = self.memo.get(domain) {
            return found.clone();
        }
        let found = organizational_domain(self.auth, self.txt, domain).await;
        self.memo.insert(domain.to_owned(), found.clone());
        found
    }
}

fn push_once(list: &mut Vec<String>, e: String) {
    if !list.contains(&e) {
        list.push(e);
    }
}

/// The organizational domain of `domain` by RFC 9989 §4.10.2's DNS tree
/// walk, as mail-auth 0.13 does it for DMARC: `_dmarc.` records from the
/// name up to the top-level domain (at most eight queries); a record with
/// `psd=n` names it, one with `psd=y` makes it the name one label below;
/// otherwise the record nearest the root; without records the domain
/// itself. A DNS failure (not NXDOMAIN/NODATA) is an error naming the name.
async fn organizational_domain(
    auth: &MessageAuthenticator,
    txt: &TxtCache,
    domain: &str,
) -> Result<String, String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let total = labels.len();
    if total < 2 {
        return Ok(domain.to_owned());
    }
    let mut found: Vec<(usize, Psd)> = Vec::new(); // (labels dropped, psd)
    let mut count = total;
    loop {
        let dropped = total - count;
        let name = labels[dropped..].join(".");
        let key = format!("_dmarc.{name}.");
        match auth.txt_lookup::<Dmarc>(key.as_str(), Some(txt)).await {
            Ok(record) => {
                let stop = matches!(record.psd, Psd::Yes | Psd::No);
                found.push((dropped, record.psd.clone()));
                if stop {
                    break;
                }
            }
            Err(e @ mail_auth::Error::Dns(mail_auth::DnsError::Resolver(_))) => {
                return Err(format!("{key}: {e}"));
            }
            Err(mail_auth::Error::Dns(_)) => {}
            Err(_) => return Ok(domain.to_owned()),
        }
        if count == 1 {
            break;
        }
        count = if count >= 8 { 7 } else { count - 1 };
    }
    for (dropped, psd) in &found {
        match psd {
            Psd::No => return Ok(labels[*dropped..].join(".")),
            Psd::Yes if *dropped > 0 => return Ok(labels[dropped - 1..].join(".")),
            _ => {}
        }
    }
    Ok(found
        .last()
        .map_or_else(|| domain.to_owned(), |(d, _)| labels[*d..].join(".")))
}

/// One result of an `ARC-Authentication-Results` field: `method`
/// (lower case), `result` (lower case), its properties, and the text.
#[derive(Debug)]
struct SealedResult {
    method: String,
    result: String,
    props: Vec<(String, String)>,
    text: String,
}

/// The results (RFC 8601 `resinfo`s) of an `ARC-Authentication-Results`
/// value (RFC 8617 §4.1.1: `i=N; authserv-id; resinfo; ...`), comments
/// removed and quoted values unquoted.
fn parse_arc_results(value: &[u8]) -> Vec<SealedResult> {
    // Drop comments and unfold, keeping quoted strings.
    let mut text = String::new();
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in String::from_utf8_lossy(value).chars() {
        if escaped {
            if depth == 0 {
                text.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 && quoted {
                    text.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                text.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            '\r' | '\n' | '\t' if depth == 0 => text.push(' '),
            '\r' | '\n' | '\t' => {}
            _ if depth == 0 => text.push(c),
            _ => {}
        }
    }
    split_outside_quotes(&text, ';')
        .into_iter()
        .skip(2) // i=N and the authserv-id
        .filter_map(|resinfo| {
            let words = split_outside_quotes(resinfo.trim(), ' ');
            let mut words = words.into_iter().filter(|w| !w.is_empty());
            let (method, result) = words.next()?.split_once('=')?;
            let method = method.split('/').next()?.trim().to_ascii_lowercase();
            let props = words
                .filter_map(|w| {
                    let (k, v) = w.split_once('=')?;
                    Some((k.to_ascii_lowercase(), v.trim_matches('"').to_owned()))
                })
                .collect::<Vec<_>>();
            Some(SealedResult {
                method,
                result: result.to_ascii_lowercase(),
                props,
                text: resinfo.split_whitespace().collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = quoted;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&text[start..]);
    out
}

/// Whether the results a trusted sealer recorded vouch for the From:
/// domain `from`: `dmarc=pass` for it, or a `dkim=pass` (`header.d`, or the
/// domain of `header.i`) or `spf=pass` (`smtp.mailfrom`'s domain) aligned
/// with it under the DMARC record's `adkim`/`aspf` (`true`: strict).
async fn sealed_results_vouch(
    results: &[SealedResult],
    from: &str,
    adkim_strict: bool,
    aspf_strict: bool,
    orgs: &mut OrgDomains<'_>,
    dns_errors: &mut Vec<String>,
) -> bool {
    let prop = |r: &SealedResult, name: &str| {
        r.props
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.rsplit('@').next().unwrap_or(v).to_ascii_lowercase())
    };
    for r in results.iter().filter(|r| r.result == "pass") {
        let (domain, strict) = match r.method.as_str() {
            "dmarc" => match prop(r, "header.from") {
                Some(d) => (d, true),
                None => continue,
            },
            "dkim" => match prop(r, "header.d").or_else(|| prop(r, "header.i")) {
                Some(d) => (d, adkim_strict),
                None => continue,
            },
            "spf" => match prop(r, "smtp.mailfrom") {
                Some(d) => (d, aspf_strict),
                None => continue,
            },
            _ => continue,
        };
        let domain = domain.trim_end_matches('.');
        match orgs.alignment(domain, from, dns_errors).await {
            Some(Alignment::Strict) => return true,
            Some(Alignment::Relaxed) if !strict => return true,
            _ => {}
        }
    }
    false
}
