//! The SMTP listener: accepts connections, enforces the connection limits
//! (in total and per client IP), runs a session for each, and on shutdown
//! stops accepting and waits for the sessions to finish.

use super::reply::codes;
use super::session::{SmtpContext, run_session};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Connection counts shared by all listeners of one server.
pub struct ConnectionLimits {
    /// One permit per session; all permits back means no session is running.
    total: Arc<Semaphore>,
    max_total: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        let mut per_ip = self.per_ip.lock().ok()?;
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(Admission {
            limits: self.clone(),
            ip,
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
    ip: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut per_ip) = self.limits.per_ip.lock()
            && let Some(n) = per_ip.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
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
            Some(admission) => {
                tokio::spawn(async move {
                    run_session(&ctx, stream, peer, shutdown).await;
                    drop(admission);
                });
            }
            None => {
                tracing::warn!(peer = %peer, "connection refused: too many connections");
                ctx.log.connection_refused(peer, "too many connections");
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    codes::too_many_connections(&ctx.hostname).write_to(&mut out);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
    }
}
