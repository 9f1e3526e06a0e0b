//! DNS blocklists and allowlists (RFC 5782): is the SMTP client's address
//! listed in the `[[dnsbl]]` zones, or in a `[[dnswl]]` zone that excuses
//! it from them?
//!
//! The client 192.0.2.99 is looked up as `99.2.0.192.<zone>` (RFC 5782
//! §2.1), 2001:db8::1 as its 32 nibbles reversed (§2.4), A records only.
//! Every zone is asked at once, each lookup within a time limit; answers
//! are cached by the resolver (hickory's cache, `dns.cache_size`). A zone
//! that does not answer (timeout, SERVFAIL, REFUSED) lists nobody: the
//! failure is recorded in the verdict and logged, and mail is never
//! refused because of it.
//!
//! This module owns the query names, the return-code filters and the
//! verdict; the SMTP session decides what a verdict does at RCPT
//! (`554 5.7.1` for a `reject` zone) and the quarantine what its score
//! does.

use crate::config::{Config, DnsblAction, DnsblZone, DnswlZone};
use crate::dns::{DnsError, Resolver};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// A zone that lists the client.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsblHit {
    /// The zone as configured, without a trailing dot (`zen.spamhaus.org`).
    pub zone: String,
    /// The A record that counted as a listing (`127.0.0.2`): what the list
    /// says about the client (RFC 5782 §2.3).
    pub answer: IpAddr,
    /// The zone's `score` (for a `reject` zone too).
    pub score: f64,
}

/// What the DNS lists say about one client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsblVerdict {
    /// The first `[[dnswl]]` zone (in config order) that lists the client;
    /// when set, every blocklist result is ignored (`reject` is `None`,
    /// `score_hits` empty).
    pub allowlisted: Option<String>,
    /// The first `action = "reject"` zone (in config order) that lists the
    /// client: its RCPTs are refused, except to postmaster.
    pub reject: Option<DnsblHit>,
    /// The `action = "score"` zones that list the client, in config order.
    pub score_hits: Vec<DnsblHit>,
    /// Lookups that failed (no answer in time, SERVFAIL, an answer that is
    /// not a listing code), one line each naming the zone. They list
    /// nobody.
    pub errors: Vec<String>,
}

impl DnsblVerdict {
    /// The sum of the `score` zones' scores (the reject zone's not
    /// included): what the DNS lists add to the message's spam score.
    pub fn score(&self) -> f64 {
        self.score_hits.iter().map(|h| h.score).sum()
    }
}

/// The configured lists and the resolver they are asked through.
pub struct Dnsbl {
    resolver: Arc<dyn Resolver>,
    blocklists: Vec<DnsblZone>,
    allowlists: Vec<DnswlZone>,
    /// Longest wait for one zone's answer: `dns.timeout` × `dns.attempts`,
    /// what the resolver itself would take at most for a server that does
    /// not answer.
    timeout: Duration,
}

/// One zone's answer to one client.
enum Answer {
    Listed(IpAddr),
    NotListed,
    Failed(String),
}

impl Dnsbl {
    /// The `[[dnsbl]]` and `[[dnswl]]` zones of `config` (validated when
    /// it was loaded), asked through `resolver`.
    pub fn new(config: &Config, resolver: Arc<dyn Resolver>) -> Dnsbl {
        let attempts = u32::try_from(config.dns.attempts.max(1)).unwrap_or(u32::MAX);
        Dnsbl {
            resolver,
            blocklists: config.dnsbl.clone(),
            allowlists: config.dnswl.clone(),
            timeout: config.dns.timeout.0.saturating_mul(attempts),
        }
    }

    /// Lists nothing and asks nothing: no zones configured.
    pub fn disabled(resolver: Arc<dyn Resolver>) -> Dnsbl {
        Dnsbl {
            resolver,
            blocklists: Vec::new(),
            allowlists: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Whether no zone is configured (then [`Dnsbl::check`] asks nothing).
    pub fn is_empty(&self) -> bool {
        self.blocklists.is_empty() && self.allowlists.is_empty()
    }

    /// Looks `client` up in every zone at once and says what they list.
    /// Never fails: a zone that cannot be asked is in `errors` (and logged
    /// as a warning) and lists nobody.
    pub async fn check(&self, client: IpAddr) -> DnsblVerdict {
        let mut verdict = DnsblVerdict::default();
        if self.is_empty() {
            return verdict;
        }
        let client = unmapped(client);
        let zones = self
            .allowlists
            .iter()
            .map(|z| (z.zone.as_str(), z.returns.as_slice()))
            .chain(
                self.blocklists
                    .iter()
                    .map(|z| (z.zone.as_str(), z.returns.as_slice())),
            );
        let mut lookups = tokio::task::JoinSet::new();
        for (i, (zone, returns)) in zones.enumerate() {
            let resolver = self.resolver.clone();
            let zone = zone.trim_end_matches('.').to_owned();
            let returns = returns.to_vec();
            let limit = self.timeout;
            lookups.spawn(async move {
                let answer = lookup(&*resolver, client, &zone, &returns, limit).await;
                (i, answer)
            });
        }
        let mut answers: Vec<Option<Answer>> = Vec::new();
        answers.resize_with(self.allowlists.len() + self.blocklists.len(), || None);
        while let Some(joined) = lookups.join_next().await {
            match joined {
                Ok((i, answer)) => answers[i] = Some(answer),
                Err(e) => verdict
                    .errors
                    .push(format!("a DNS list lookup failed: {e}")),
            }
        }
        let (allow, block) = answers.split_at(self.allowlists.len());
        for (zone, answer) in self.allowlists.iter().zip(allow) {
            match answer {
                Some(Answer::Listed(_)) if verdict.allowlisted.is_none() => {
                    verdict.allowlisted = Some(zone.zone.trim_end_matches('.').to_owned());
                }
                Some(Answer::Failed(e)) => verdict.errors.push(e.clone()),
                _ => {}
            }
        }
        for (zone, answer) in self.blocklists.iter().zip(block) {
            let hit = |answer: &IpAddr| DnsblHit {
                zone: zone.zone.trim_end_matches('.').to_owned(),
                answer: *answer,
                score: zone.score,
            };
            match answer {
                Some(Answer::Listed(a)) if verdict.allowlisted.is_none() => match zone.action {
                    DnsblAction::Reject if verdict.reject.is_none() => {
                        verdict.reject = Some(hit(a));
                    }
                    DnsblAction::Reject => {}
                    DnsblAction::Score => verdict.score_hits.push(hit(a)),
                },
                Some(Answer::Failed(e)) if verdict.allowlisted.is_none() => {
                    verdict.errors.push(e.clone())
                }
                _ => {}
            }
        }
        for e in &verdict.errors {
            tracing::warn!(client = %client, error = %e, "DNS list lookup failed; not listed");
        }
        if let Some(zone) = &verdict.allowlisted {
            tracing::debug!(client = %client, zone = %zone, "client on a DNS allowlist");
        }
        for hit in verdict.reject.iter().chain(&verdict.score_hits) {
            tracing::info!(client = %client, zone = %hit.zone, answer = %hit.answer, "client on a DNS blocklist");
        }
        verdict
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The name to look `client` up as in `zone` (RFC 5782 §2.1, §2.4):
/// `99.2.0.192.zone` for 192.0.2.99; for IPv6, the 32 nibbles of the
/// address, least significant first, each a label
/// (`1.0.0.0....8.b.d.0.1.0.0.2.zone` for 2001:db8::1). An IPv4-mapped
/// IPv6 address is looked up as its IPv4 address.
pub fn query_name(client: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    let mut name = String::with_capacity(64 + zone.len());
    match unmapped(client) {
        IpAddr::V4(v4) => {
            for octet in v4.octets().iter().rev() {
                let _ = write!(name, "{octet}.");
            }
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
        }
    }
    name.push_str(zone);
    name
}

/// Whether `answer` means "listed" for a zone with these `returns`: one of
/// them, or, when there are none, any address in 127.0.0.0/8 (RFC 5782
/// §2.1) outside 127.255.255.0/24. `Err` for an answer that is no
/// listing code at all (outside 127.0.0.0/8, or 127.255.255.x, which lists
/// such as Spamhaus give for a refused query), whatever `returns` says.
pub fn is_listing(answer: Ipv4Addr, returns: &[Ipv4Addr]) -> Result<bool, String> {
    let [a, b, c, _] = answer.octets();
    if a != 127 {
        return Err(format!(
            "answered {answer}, which is not in 127.0.0.0/8 (RFC 5782 §2.1): \
             is the zone name right, or the resolver rewriting answers?"
        ));
    }
    if (b, c) == (255, 255) {
        return Err(format!(
            "answered {answer}: the list refuses the query (e.g. through a public \
             resolver, or over its free query limit)"
        ));
    }
    Ok(returns.is_empty() || returns.contains(&answer))
}

/// One zone's answer for `client`, within `limit`.
async fn lookup(
    resolver: &dyn Resolver,
    client: IpAddr,
    zone: &str,
    returns: &[Ipv4Addr],
    limit: Duration,
) -> Answer {
    let name = query_name(client, zone);
    let answers = match tokio::time::timeout(limit, resolver.ipv4(&name)).await {
        Err(_) => {
            return Answer::Failed(format!(
                "{zone}: no answer for {name} within {}",
                crate::config::HumanDuration(limit)
            ));
        }
        Ok(Err(DnsError::NxDomain(_) | DnsError::NoRecords(_))) => return Answer::NotListed,
        Ok(Err(DnsError::Temporary(e))) => return Answer::Failed(format!("{zone}: {e}")),
        Ok(Ok(answers)) => answers,
    };
    let mut listed = None;
    let mut odd = None;
    for a in answers {
        match is_listing(a, returns) {
            Ok(true) => {
                listed.get_or_insert(IpAddr::V4(a));
            }
            Ok(false) => {}
            Err(e) => {
                odd.get_or_insert(e);
            }
        }
    }
    match (listed, odd) {
        (Some(a), _) => Answer::Listed(a),
        (None, Some(e)) => Answer::Failed(format!("{zone}: {name} {e}")),
        (None, None) => Answer::NotListed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use crate::dns::{Lookup, Mx, StaticResolver};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn zone(zone: &str, action: DnsblAction, score: f64, returns: &[&str]) -> DnsblZone {
        DnsblZone {
            zone: zone.into(),
            action,
            score,
            returns: returns.iter().map(|r| r.parse().unwrap()).collect(),
        }
    }

    fn dnsbl(
        resolver: impl Resolver + 'static,
        blocklists: Vec<DnsblZone>,
        allowlists: &[&str],
    ) -> Dnsbl {
        let config = Config {
            dnsbl: blocklists,
            dnswl: allowlists
                .iter()
                .map(|z| DnswlZone {
                    zone: (*z).into(),
                    returns: Vec::new(),
                })
                .collect(),
            dns: crate::config::DnsConfig {
                timeout: HumanDuration(Duration::from_secs(2)),
                ..Default::default()
            },
            ..Config::default()
        };
        Dnsbl::new(&config, Arc::new(resolver))
    }

    #[test]
    fn ipv4_clients_are_asked_as_reversed_octets() {
        assert_eq!(
            query_name(ip("192.0.2.99"), "zen.spamhaus.org"),
            "99.2.0.192.zen.spamhaus.org"
        );
        assert_eq!(query_name(ip("127.0.0.2"), "bl.test."), "2.0.0.127.bl.test");
        // IPv4-mapped IPv6 is the IPv4 client.
        assert_eq!(
            query_name(ip("::ffff:192.0.2.99"), "bl.test"),
            "99.2.0.192.bl.test"
        );
    }

    #[test]
    fn ipv6_clients_are_asked_as_reversed_nibbles() {
        // RFC 5782 §2.4's own example.
        assert_eq!(
            query_name(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        let name = query_name(ip("::1"), "bl.test");
        assert_eq!(name, format!("1.{}bl.test", "0.".repeat(31)));
    }

    #[test]
    fn answers_count_only_inside_127_and_through_the_returns_filter() {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(is_listing(v4("127.0.0.2"), &[]), Ok(true));
        assert_eq!(is_listing(v4("127.0.0.10"), &[]), Ok(true));
        let only = [v4("127.0.0.2"), v4("127.0.0.3")];
        assert_eq!(is_listing(v4("127.0.0.3"), &only), Ok(true));
        assert_eq!(is_listing(v4("127.0.0.10"), &only), Ok(false));
        assert!(is_listing(v4("192.0.2.1"), &[]).is_err());
        assert!(is_listing(v4("127.255.255.254"), &[]).is_err());
        assert!(is_listing(v4("127.255.255.254"), &[v4("127.255.255.254")]).is_err());
    }

    #[tokio::test]
    async fn reject_and_score_zones_give_their_hits_and_the_score_sums() {
        let r = StaticResolver::new()
            .with_ip("2.2.0.192.reject.test", ip("127.0.0.2"))
            .with_ip("2.2.0.192.pbl.test", ip("127.0.0.10"))
            .with_ip("2.2.0.192.score1.test", ip("127.0.0.2"))
            .with_ip("2.2.0.192.score2.test", ip("127.0.0.4"))
            .with_ip("2.2.0.192.score2.test", ip("127.0.0.5"))
            .with_ip("2.2.0.192.filtered.test", ip("127.0.0.9"));
        let d = dnsbl(
            r,
            vec![
                // Listed, but not with a code this zone counts.
                zone("pbl.test", DnsblAction::Reject, 0.0, &["127.0.0.2"]),
                zone("filtered.test", DnsblAction::Score, 9.0, &["127.0.0.2"]),
                zone("score1.test", DnsblAction::Score, 1.5, &[]),
                zone(
                    "reject.test",
                    DnsblAction::Reject,
                    5.0,
                    &["127.0.0.2", "127.0.0.3"],
                ),
                zone("score2.test", DnsblAction::Score, 2.0, &["127.0.0.5"]),
                zone("clean.test", DnsblAction::Score, 7.0, &[]),
            ],
            &[],
        );
        let v = d.check(ip("192.0.2.2")).await;
        assert_eq!(
            v.reject,
            Some(DnsblHit {
                zone: "reject.test".into(),
                answer: ip("127.0.0.2"),
                score: 5.0
            })
        );
        let zones: Vec<(&str, IpAddr)> = v
            .score_hits
            .iter()
            .map(|h| (h.zone.as_str(), h.answer))
            .collect();
        assert_eq!(
            zones,
            [
                ("score1.test", ip("127.0.0.2")),
                ("score2.test", ip("127.0.0.5"))
            ]
        );
        assert_eq!(v.score(), 3.5);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert_eq!(v.allowlisted, None);

        // Another client is on none of them.
        let v = d.check(ip("192.0.2.3")).await;
        assert_eq!(v, DnsblVerdict::default());
    }

    #[tokio::test]
    async fn ipv6_clients_are_listed_through_their_nibbles() {
        let client = ip("2001:db8::2");
        let r = StaticResolver::new().with_ip(&query_name(client, "bl.test"), ip("127.0.0.2"));
        let d = dnsbl(r, vec![zone("bl.test", DnsblAction::Reject, 1.0, &[])], &[]);
        assert_eq!(d.check(client).await.reject.unwrap().zone, "bl.test");
        assert!(d.check(ip("2001:db8::3")).await.reject.is_none());
    }

    #[tokio::test]
    async fn an_allowlisted_client_skips_every_blocklist() {
        let r = StaticResolver::new()
            .with_ip("2.2.0.192.bl.test", ip("127.0.0.2"))
            .with_ip("2.2.0.192.score.test", ip("127.0.0.2"))
            .with_ip("2.2.0.192.wl.test", ip("127.0.10.1"))
            .failing("2.2.0.192.broken.test");
        let lists = vec![
            zone("bl.test", DnsblAction::Reject, 1.0, &[]),
            zone("score.test", DnsblAction::Score, 1.0, &[]),
            zone("broken.test", DnsblAction::Reject, 1.0, &[]),
        ];
        let d = dnsbl(r.clone(), lists.clone(), &["nx-wl.test", "wl.test"]);
        let v = d.check(ip("192.0.2.2")).await;
        assert_eq!(
            v,
            DnsblVerdict {
                allowlisted: Some("wl.test".into()),
                ..DnsblVerdict::default()
            }
        );
        // Without the allowlist the same client is refused.
        let d = dnsbl(r, lists, &["nx-wl.test"]);
        let v = d.check(ip("192.0.2.2")).await;
        assert_eq!(v.score(), 1.0);
        assert_eq!(v.reject.unwrap().zone, "bl.test");
    }

    #[tokio::test]
    async fn dns_failures_and_odd_answers_never_list_and_are_recorded() {
        let r = StaticResolver::new()
            .failing("2.2.0.192.servfail.test")
            .with_ip("2.2.0.192.hijacked.test", ip("198.51.100.7"))
            .with_ip("2.2.0.192.refused.test", ip("127.255.255.254"));
        let d = dnsbl(
            r,
            vec![
                zone("servfail.test", DnsblAction::Reject, 1.0, &[]),
                zone("hijacked.test", DnsblAction::Reject, 1.0, &[]),
                zone("refused.test", DnsblAction::Score, 1.0, &[]),
            ],
            &["servfail.test"],
        );
        let v = d.check(ip("192.0.2.2")).await;
        assert_eq!((v.reject.as_ref(), v.score()), (None, 0.0));
        assert_eq!(v.allowlisted, None);
        assert_eq!(v.errors.len(), 4, "{:?}", v.errors);
        assert!(v.errors[0].starts_with("servfail.test: "), "{:?}", v.errors);
        assert!(v.errors[2].contains("198.51.100.7"), "{:?}", v.errors);
        assert!(v.errors[3].contains("refuses the query"), "{:?}", v.errors);
    }

    /// Never answers.
    struct Silent;

    impl Resolver for Silent {
        fn mx<'a>(&'a self, _: &'a str) -> Lookup<'a, Vec<Mx>> {
            Box::pin(std::future::pending())
        }
        fn ips<'a>(&'a self, _: &'a str) -> Lookup<'a, Vec<IpAddr>> {
            Box::pin(std::future::pending())
        }
        fn txt<'a>(&'a self, _: &'a str) -> Lookup<'a, Vec<String>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zone_that_never_answers_times_out_unlisted_and_all_zones_wait_together() {
        let d = dnsbl(
            Silent,
            vec![
                zone("slow1.test", DnsblAction::Reject, 1.0, &[]),
                zone("slow2.test", DnsblAction::Reject, 1.0, &[]),
            ],
            &["slow-wl.test"],
        );
        let start = tokio::time::Instant::now();
        let v = d.check(ip("192.0.2.2")).await;
        // dns.timeout 2s × dns.attempts 2, once for all three zones.
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        assert_eq!(v.reject, None);
        assert_eq!(v.errors.len(), 3, "{:?}", v.errors);
        assert!(
            v.errors[1].contains("slow1.test: no answer for 2.2.0.192.slow1.test within 4s"),
            "{:?}",
            v.errors
        );
    }

    #[tokio::test]
    async fn without_zones_nothing_is_asked() {
        let d = Dnsbl::disabled(Arc::new(Silent));
        assert!(d.is_empty());
        assert_eq!(d.check(ip("192.0.2.2")).await, DnsblVerdict::default());
    }
}
