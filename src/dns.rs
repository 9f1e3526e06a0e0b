//! DNS lookups behind one small seam: [`Resolver`] answers the questions
//! boxtrap asks (MX, addresses, TXT), with [`HickoryResolver`] for the real
//! thing and [`StaticResolver`], made of plain maps, for tests (as mox's
//! mock resolver). Direct MX delivery and the DNS blocklists ask through
//! it; SPF, DKIM and DMARC (mail-auth) take the hickory resolver itself.
//!
//! The server has one resolver, built by [`build`] from the `[dns]`
//! section (servers, timeout, attempts, cache), held in a [`Dns`] that
//! hands it out both ways. It does not decide what an answer means for
//! mail: the outbound transport and [`crate::dnsbl`] do.
//!
//! The answers keep the distinction RFC 5321 §5.1 and every mail check
//! depend on: the name does not exist ([`DnsError::NxDomain`], final), it
//! exists without records of that type ([`DnsError::NoRecords`], final),
//! or the DNS did not answer ([`DnsError::Temporary`], try later).

use crate::config::DnsConfig;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

/// A lookup's future; resolvers are used as `Arc<dyn Resolver>`.
pub type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("{0} does not exist")]
    NxDomain(String),
    /// The name exists but has no records of the type asked for (NODATA).
    #[error("{0} has no such records")]
    NoRecords(String),
    /// SERVFAIL, REFUSED, a timeout, a malformed name: the DNS may answer later.
    #[error("{0}")]
    Temporary(String),
}

/// One MX record (RFC 5321 §5.1). `exchange` is lower case without the
/// trailing dot; the root (a null MX, RFC 7505) is `"."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: String,
}

/// The lookups boxtrap makes. Names are given without a trailing dot and
/// are looked up as absolute names (no search domains).
pub trait Resolver: Send + Sync {
    /// The MX records of `domain`, in the order the DNS gave them.
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>>;
    /// The IPv4 and IPv6 addresses of `host`.
    fn ips<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>>;
    /// The TXT records of `name`, each one's strings joined (RFC 7208 §3.3).
    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>>;
    /// The A records of `name` only (DNS blocklists, RFC 5782 §2.1). By
    /// default the IPv4 addresses of [`Resolver::ips`]; a name with only
    /// AAAA records has none ([`DnsError::NoRecords`]).
    fn ipv4<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<std::net::Ipv4Addr>> {
        Box::pin(async move {
            let v4: Vec<_> = self
                .ips(name)
                .await?
                .into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .collect();
            if v4.is_empty() {
                return Err(DnsError::NoRecords(name.to_owned()));
            }
            Ok(v4)
        })
    }
}

/// Why the resolver could not be built from `[dns]`: `key` is the config
/// key to fix (`dns.servers`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BuildError {
    pub key: &'static str,
    pub message: String,
}

/// The server's DNS: the [`Resolver`] boxtrap's own checks ask, and the
/// hickory resolver behind it for code that needs hickory itself
/// (mail-auth's `MessageAuthenticator(pub TokioResolver)`). Cheap to clone.
#[derive(Clone)]
pub struct Dns {
    pub resolver: Arc<dyn Resolver>,
    /// `None` when a test replaced the resolver with a fake
    /// (`AppDeps.resolver`): then there is no real DNS to give out.
    pub hickory: Option<TokioResolver>,
}

impl Dns {
    /// One resolver built from `[dns]` (see [`build`]), given out both ways.
    pub fn from_config(config: &DnsConfig) -> Result<Dns, BuildError> {
        let hickory = build(config)?;
        Ok(Dns {
            resolver: Arc::new(HickoryResolver::new(hickory.clone())),
            hickory: Some(hickory),
        })
    }

    /// A replacement resolver (a [`StaticResolver`] in tests); no hickory.
    pub fn fake(resolver: Arc<dyn Resolver>) -> Dns {
        Dns {
            resolver,
            hickory: None,
        }
    }
}

/// Builds the server's hickory resolver from `[dns]`: `servers` (or, when
/// empty, the `nameserver` lines of /etc/resolv.conf), each asked over UDP
/// with TCP fallback for truncated answers; `timeout` per query,
/// `attempts` queries per question, a cache of `cache_size` answers;
/// absolute names only (no search domains) and never /etc/hosts. Needs no
/// async runtime until the first lookup.
///
/// Errors name the key: `dns.servers: empty, and /etc/resolv.conf has no
/// usable nameserver line`.
pub fn build(config: &DnsConfig) -> Result<TokioResolver, BuildError> {
    build_with(config, Path::new("/etc/resolv.conf"))
}

fn build_with(config: &DnsConfig, resolv_conf: &Path) -> Result<TokioResolver, BuildError> {
    let servers_error = |message: String| BuildError {
        key: "dns.servers",
        message,
    };
    let servers = if config.servers.is_empty() {
        let text = std::fs::read_to_string(resolv_conf).map_err(|e| {
            servers_error(format!(
                "empty, and {} cannot be read: {e}",
                resolv_conf.display()
            ))
        })?;
        let servers = parse_resolv_conf(&text);
        if servers.is_empty() {
            return Err(servers_error(format!(
                "empty, and {} has no usable nameserver line",
                resolv_conf.display()
            )));
        }
        servers
    } else {
        config.servers.clone()
    };
    let name_servers = servers
        .iter()
        .map(|server| {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            NameServerConfig::new(server.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    // Mail routing comes from the DNS only, never this machine's /etc/hosts.
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = config.timeout.0;
    // hickory's `attempts` counts retries after the first query; ours
    // counts queries (as resolv.conf's `options attempts:`).
    options.attempts = config.attempts.max(1) - 1;
    options.cache_size = config.cache_size;
    builder.build().map_err(|e| BuildError {
        key: "dns",
        message: format!("cannot build a resolver: {e}"),
    })
}

/// The real resolver: hickory, asking exactly the configured servers over
/// UDP with TCP fallback, never reading /etc/hosts.
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// Asks through `inner` (see [`build`]); clones of one `TokioResolver`
    /// share its cache and connections.
    pub fn new(inner: TokioResolver) -> HickoryResolver {
        HickoryResolver { inner }
    }
}

/// The `nameserver` lines of a resolv.conf (port 53); everything else,
/// and addresses that do not parse (such as scoped IPv6), is ignored.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(ip)) => ip.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

fn absolute(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_utf8(name)
        .map_err(|e| DnsError::Temporary(format!("{name:?} is not a domain name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Lower case, no trailing dot; the root stays `"."`.
fn normal(name: &Name) -> String {
    if name.is_root() {
        return ".".into();
    }
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

fn failure(name: &str, what: &str, e: hickory_resolver::net::NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain(name.to_owned())
    } else if e.is_no_records_found() {
        DnsError::NoRecords(name.to_owned())
    } else {
        DnsError::Temporary(format!("{what} lookup for {name}: {e}"))
    }
}

impl Resolver for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .mx_lookup(absolute(domain)?)
                .await
                .map_err(|e| failure(domain, "MX", e))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: normal(&mx.exchange),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .lookup_ip(absolute(host)?)
                .await
                .map_err(|e| failure(host, "address", e))?;
            Ok(lookup.iter().collect())
        })
    }

    fn ipv4<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<std::net::Ipv4Addr>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .lookup(absolute(name)?, RecordType::A)
                .await
                .map_err(|e| failure(name, "A", e))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect())
        })
    }

    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .lookup(absolute(name)?, RecordType::TXT)
                .await
                .map_err(|e| failure(name, "TXT", e))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }
}

/// A resolver made of maps, for tests: names not in any map do not exist;
/// names marked failing answer [`DnsError::Temporary`].
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    mx: HashMap<String, Vec<Mx>>,
    ips: HashMap<String, Vec<IpAddr>>,
    txt: HashMap<String, Vec<String>>,
    failing: HashSet<String>,
}

impl StaticResolver {
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds an MX record (`"."` for a null MX).
    pub fn with_mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        self.mx.entry(key(domain)).or_default().push(Mx {
            preference,
            exchange: key(exchange),
        });
        self
    }

    pub fn with_ip(mut self, host: &str, ip: IpAddr) -> Self {
        self.ips.entry(key(host)).or_default().push(ip);
        self
    }

    pub fn with_txt(mut self, name: &str, text: &str) -> Self {
        self.txt.entry(key(name)).or_default().push(text.to_owned());
        self
    }

    /// Every lookup of `name` fails for now (SERVFAIL).
    pub fn failing(mut self, name: &str) -> Self {
        self.failing.insert(key(name));
        self
    }

    fn exists(&self, name: &str) -> bool {
        self.mx.contains_key(name) || self.ips.contains_key(name) || self.txt.contains_key(name)
    }

    fn answer<T: Clone>(
        &self,
        name: &str,
        map: &HashMap<String, Vec<T>>,
    ) -> Result<Vec<T>, DnsError> {
        let name = key(name);
        if self.failing.contains(&name) {
            return Err(DnsError::Temporary(format!("lookup for {name}: SERVFAIL")));
        }
        match map.get(&name) {
            Some(records) => Ok(records.clone()),
            None if self.exists(&name) => Err(DnsError::NoRecords(name)),
            None => Err(DnsError::NxDomain(name)),
        }
    }
}

fn key(name: &str) -> String {
    if name == "." {
        return ".".into();
    }
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Resolver for StaticResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>> {
        Box::pin(async move { self.answer(domain, &self.mx) })
    }

    fn ips<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>> {
        Box::pin(async move { self.answer(host, &self.ips) })
    }

    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
        Box::pin(async move { self.answer(name, &self.txt) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameserver_lines_are_read() {
        let text = "# comment\nnameserver 192.0.2.53\nsearch example.test\n\
                    nameserver 2001:db8::53\nnameserver fe80::1%eth0\noptions ndots:2\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn without_servers_the_resolver_needs_resolv_conf_and_says_which_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("resolv.conf");
        let e = build_with(&DnsConfig::default(), &missing).unwrap_err();
        assert_eq!(e.key, "dns.servers");
        assert!(
            e.to_string().starts_with("dns.servers: empty, and ")
                && e.message.contains("cannot be read"),
            "{e}"
        );
        std::fs::write(&missing, "search example.test\n").unwrap();
        let e = build_with(&DnsConfig::default(), &missing).unwrap_err();
        assert!(e.message.contains("no usable nameserver line"), "{e}");
        std::fs::write(&missing, "nameserver 192.0.2.53\n").unwrap();
        assert!(build_with(&DnsConfig::default(), &missing).is_ok());
        // Configured servers need no resolv.conf.
        let config = DnsConfig {
            servers: vec!["127.0.0.1:5353".parse().unwrap()],
            ..DnsConfig::default()
        };
        let dns = Dns::from_config(&config).unwrap();
        assert!(dns.hickory.is_some());
        assert!(Dns::fake(Arc::new(StaticResolver::new())).hickory.is_none());
    }

    #[tokio::test]
    async fn a_silent_server_gets_attempts_queries_each_within_the_timeout() {
        // A DNS server that reads queries and never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        silent.set_nonblocking(true).unwrap();
        for attempts in [1, 3] {
            let config = DnsConfig {
                servers: vec![silent.local_addr().unwrap()],
                timeout: crate::config::HumanDuration(std::time::Duration::from_millis(200)),
                attempts,
                cache_size: 0,
            };
            let r = HickoryResolver::new(build(&config).unwrap());
            let start = std::time::Instant::now();
            let e = r.ipv4("2.0.0.127.bl.test").await.unwrap_err();
            let took = start.elapsed();
            assert!(matches!(e, DnsError::Temporary(_)), "{e:?}");
            let mut queries = 0;
            let mut buf = [0u8; 512];
            while silent.recv(&mut buf).is_ok() {
                queries += 1;
            }
            assert_eq!(queries, attempts, "attempts = {attempts}");
            let most = std::time::Duration::from_millis(200 * attempts as u64 + 150);
            assert!(took < most, "attempts = {attempts}: took {took:?}");
        }
    }

    #[tokio::test]
    async fn the_default_ipv4_lookup_keeps_a_records_only() {
        let r = StaticResolver::new()
            .with_ip("both.test", "2001:db8::1".parse().unwrap())
            .with_ip("both.test", "192.0.2.1".parse().unwrap())
            .with_ip("v6.test", "2001:db8::1".parse().unwrap());
        assert_eq!(
            r.ipv4("both.test").await,
            Ok(vec!["192.0.2.1".parse().unwrap()])
        );
        assert_eq!(
            r.ipv4("v6.test").await,
            Err(DnsError::NoRecords("v6.test".into()))
        );
    }

    #[tokio::test]
    async fn the_static_resolver_tells_missing_names_from_missing_records() {
        let r = StaticResolver::new()
            .with_mx("Example.ORG.", 10, "mx1.example.org.")
            .with_ip("mx1.example.org", "192.0.2.1".parse().unwrap())
            .failing("broken.test");
        assert_eq!(
            r.mx("example.org").await.unwrap(),
            vec![Mx {
                preference: 10,
                exchange: "mx1.example.org".into()
            }]
        );
        assert_eq!(
            r.mx("mx1.example.org").await,
            Err(DnsError::NoRecords("mx1.example.org".into()))
        );
        assert_eq!(
            r.ips("nx.test").await,
            Err(DnsError::NxDomain("nx.test".into()))
        );
        assert!(matches!(
            r.txt("broken.test").await,
            Err(DnsError::Temporary(_))
        ));
    }
}
