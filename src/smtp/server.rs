//! The SMTP listener and the limits every session shares: it accepts
//! connections, enforces the connection limits (in total and per client,
//! an IPv6 client being its whole `/64` by default), hands each session the
//! server-wide budget for message data in memory ([`DataBudget`]), and on
//! shutdown stops accepting and waits for the sessions to finish.

use super::reply::codes;
use super::session::{SmtpContext, run_session};
use crate::config::SmtpConfig;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Where a connection comes from, as the per-client limit counts it: an
/// IPv4 address, or an IPv6 network of `smtp.ipv6_prefix_length` bits.
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, RFC 4291 §2.5.5.2) is
/// its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// The address with the host bits cleared.
    network: IpAddr,
    /// Prefix length in bits: 32 for IPv4, `ipv6_prefix_length` for IPv6.
    prefix: u8,
}

impl Source {
    /// The source `ip` counts as, with IPv6 networks of `ipv6_prefix`
    /// bits (1 to 128; 128 counts each address on its own).
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> Source {
        let v6 = match ip {
            IpAddr::V4(_) => {
                return Source {
                    network: ip,
                    prefix: 32,
                };
            }
            IpAddr::V6(v6) => v6,
        };
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Source {
                network: IpAddr::V4(v4),
                prefix: 32,
            };
        }
        let prefix = ipv6_prefix.min(128);
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        Source {
            network: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
            prefix,
        }
    }
}

impl fmt::Display for Source {
    /// `192.0.2.7`, `2001:db8:1:2::/64`, or a full IPv6 address for /128.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.network {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) if self.prefix == 128 => write!(f, "{v6}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{}", self.prefix),
        }
    }
}

/// The server-wide budget for message data held in memory
/// (`smtp.max_inflight_data`, in bytes): every session in DATA, and every
/// message being stored, holds a [`Charge`] for the bytes it keeps. When
/// the budget is spent, new messages are refused with `452 4.3.1` (RFC
/// 1870 §6.1, RFC 3463 "mail system full") and a transfer that would go
/// over it is ended with `421 4.3.1`, so memory for message data never
/// exceeds the budget, however many clients send at once.
#[derive(Debug)]
pub struct DataBudget {
    limit: u64,
    used: AtomicU64,
}

impl DataBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<DataBudget> {
        Arc::new(DataBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by sessions right now.
    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Bytes still free.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.in_use())
    }

    /// An empty charge against this budget.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            held: 0,
        }
    }
}

/// What one session holds of the [`DataBudget`]; given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<DataBudget>,
    held: u64,
}

impl Charge {
    /// Makes the charge `bytes`. Growing fails, changing nothing, when the
    /// budget has less than the difference free; shrinking always works.
    pub fn set(&mut self, bytes: u64) -> bool {
        if bytes <= self.held {
            self.budget
                .used
                .fetch_sub(self.held - bytes, Ordering::AcqRel);
            self.held = bytes;
            return true;
        }
        let more = bytes - self.held;
        let limit = self.budget.limit;
        let grown = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&n| n <= limit)
            })
            .is_ok();
        if grown {
            self.held = bytes;
        }
        grown
    }

    /// Bytes this charge holds.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The budget it is charged against.
    pub fn budget(&self) -> &DataBudget {
        &self.budget
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Connection counts and the data budget, shared by all listeners of one
/// server.
pub struct ConnectionLimits {
    /// One permit per session; all permits back means no session is running.
    total: Arc<Semaphore>,
    max_total: usize,
    per_source: Mutex<HashMap<Source, usize>>,
    max_per_source: usize,
    ipv6_prefix: u8,
    data: Arc<DataBudget>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// `smtp.max_connections` sessions are running.
    Total,
    /// `smtp.max_connections_per_ip` sessions from this source are running.
    PerSource(Source),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Total => f.write_str("too many connections"),
            Refusal::PerSource(s) => write!(f, "too many connections from {s}"),
        }
    }
}

impl ConnectionLimits {
    /// The limits `smtp.max_connections`, `max_connections_per_ip` (IPv6
    /// clients counted per `ipv6_prefix_length` network) and
    /// `max_inflight_data` set.
    pub fn new(config: &SmtpConfig) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(config.max_connections)),
            max_total: config.max_connections,
            per_source: Mutex::new(HashMap::new()),
            max_per_source: config.max_connections_per_ip,
            ipv6_prefix: config.ipv6_prefix_length,
            data: DataBudget::new(config.max_inflight_data.0),
        })
    }

    /// The budget for message data in memory.
    pub fn data_budget(&self) -> &Arc<DataBudget> {
        &self.data
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let source = Source::of(ip, self.ipv6_prefix);
        let mut per_source = self
            .per_source
            .lock()
            .map_err(|_| Refusal::PerSource(source))?;
        let n = per_source.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(Refusal::PerSource(source));
        }
        *n += 1;
        Ok(Admission {
            limits: self.clone(),
            source,
            _permit: permit,
        })
    }

    /// Waits until every session has ended.
    pub async fn wait_idle(&self) {
        let _ = self.total.acquire_many(self.max_total as u32).await;
    }
}

/// A running session's place in the limits; freed on drop.
struct Admission {
    limits: Arc<ConnectionLimits>,
    source: Source,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut per_source) = self.limits.per_source.lock()
            && let Some(n) = per_source.get_mut(&self.source)
        {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<SmtpContext>,
    limits: Arc<ConnectionLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        match limits.admit(peer.ip()) {
            Ok(admission) => {
                let budget = limits.data_budget().clone();
                tokio::spawn(async move {
                    run_session(&ctx, stream, peer, &budget, shutdown).await;
                    drop(admission);
                });
            }
            Err(why) => {
                tracing::warn!(peer = %peer, "connection refused: {why}");
                ctx.log.connection_refused(peer, &why.to_string());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    codes::too_many_connections(&ctx.hostname).write_to(&mut out);
                    // A client that does not read must not keep this task.
                    let write = stream.write_all(&out);
                    let _ = tokio::time::timeout(ctx.config.command_timeout.0, write).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_source: usize, ipv6_prefix: u8) -> Arc<ConnectionLimits> {
        let config = SmtpConfig {
            max_connections: 100,
            max_connections_per_ip: per_source,
            ipv6_prefix_length: ipv6_prefix,
            ..SmtpConfig::default()
        };
        ConnectionLimits::new(&config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn three_ipv6_clients_from_one_64_count_as_one_source() {
        let l = limits(2, 64);
        let a = l.admit(ip("2001:db8:1:2::a")).unwrap();
        let _b = l.admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).unwrap();
        let refused = l.admit(ip("2001:db8:1:2:1234::7")).err();
        let network = Source::of(ip("2001:db8:1:2::"), 64);
        assert_eq!(refused, Some(Refusal::PerSource(network)));
        assert_eq!(
            Refusal::PerSource(network).to_string(),
            "too many connections from 2001:db8:1:2::/64"
        );
        // The next /64 is another client.
        let _c = l.admit(ip("2001:db8:1:3::a")).unwrap();
        // A slot freed in the /64 is usable by any address in it.
        drop(a);
        let _d = l.admit(ip("2001:db8:1:2::99")).unwrap();
    }

    #[test]
    fn the_prefix_length_is_configurable_and_128_counts_each_address() {
        let l = limits(1, 128);
        let _a = l.admit(ip("2001:db8::1")).unwrap();
        let _b = l.admit(ip("2001:db8::2")).unwrap();
        assert!(l.admit(ip("2001:db8::1")).is_err());
        assert_eq!(
            Source::of(ip("2001:db8::1"), 128).to_string(),
            "2001:db8::1"
        );
        let l = limits(1, 48);
        let _a = l.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(l.admit(ip("2001:db8:1:ffff::1")).is_err());
        assert!(l.admit(ip("2001:db8:2::1")).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let l = limits(1, 64);
        let _a = l.admit(ip("192.0.2.7")).unwrap();
        let refused = l.admit(ip("::ffff:192.0.2.7")).err();
        assert_eq!(
            refused.map(|r| r.to_string()).as_deref(),
            Some("too many connections from 192.0.2.7")
        );
        // Another IPv4 address, mapped or not, is another client.
        assert!(l.admit(ip("::ffff:192.0.2.8")).is_ok());
        // IPv4 clients are never grouped.
        assert!(l.admit(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn the_total_limit_is_named_apart_from_the_per_client_one() {
        let config = SmtpConfig {
            max_connections: 1,
            ..SmtpConfig::default()
        };
        let l = ConnectionLimits::new(&config);
        let _a = l.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(l.admit(ip("192.0.2.2")).err(), Some(Refusal::Total));
    }

    #[test]
    fn a_charge_grows_only_within_the_budget_and_is_given_back_on_drop() {
        let budget = DataBudget::new(100);
        let mut a = budget.charge();
        let mut b = budget.charge();
        assert!(a.set(60));
        assert!(!b.set(41), "60 + 41 is over 100");
        assert_eq!(b.held(), 0);
        assert!(b.set(40));
        assert_eq!(budget.available(), 0);
        assert!(a.set(10), "shrinking always works");
        assert_eq!(budget.in_use(), 50);
        drop(a);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }
}
