//! Serving the web routes with every resource bounded: an accept loop with
//! its own connection caps (in total and per client, apart from SMTP's),
//! hyper's HTTP/1 with a header read timeout, an idle timeout on every
//! connection, and a time and size limit on every request.
//!
//! A connection over a cap gets a short `503` and is closed at once, so a
//! flood of web connections holds at most `web.max_connections` (plus
//! [`MAX_REFUSING`] being refused) open files, never the ones SMTP needs.

use crate::config::WebConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// Connections over a cap that may be in the middle of their refusal at
/// once (each holds an open file for at most [`REFUSAL_LINGER`]); beyond
/// that a refused connection is closed without waiting for its request.
pub const MAX_REFUSING: usize = 32;

/// How long a refused connection is kept open to read away the request it
/// sends, so the client reads the 503 instead of a reset.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// The largest request head (request line and headers) read, in bytes; a
/// larger one gets 431.
const MAX_HEAD_SIZE: usize = 32 * 1024;

/// hyper's read and write buffer per connection, in bytes.
const MAX_BUFFER: usize = 64 * 1024;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `web.max_connections` are open.
    Total,
    /// `web.max_connections_per_ip` are open from this client's address
    /// (IPv4) or /64 (IPv6).
    PerClient,
}

impl Refused {
    fn reason(self) -> &'static str {
        match self {
            Refused::Total => "too many connections",
            Refused::PerClient => "too many connections from this address",
        }
    }

    /// The whole answer, written before the request is read.
    fn response(self) -> String {
        let body = match self {
            Refused::Total => "The server is busy. Please try again in a minute.\n",
            Refused::PerClient => {
                "Too many connections from your address. Please try again in a minute.\n"
            }
        };
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             retry-after: 60\r\ncache-control: no-store\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// The address a client is counted under: an IPv4 address itself, an IPv6
/// address's /64 (one customer's network, as providers hand them out).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = !0u128 << 64;
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Open web connections, in total and per client, shared by the accept loop
/// and the connections it runs.
pub struct WebLimits {
    /// One permit per open connection; all back means none is open.
    total: Arc<Semaphore>,
    max_total: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_per_client: usize,
}

impl WebLimits {
    /// At most `max_total` connections, and `max_per_client` from one
    /// [`client_key`].
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<WebLimits> {
        Arc::new(WebLimits {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_client: Mutex::new(HashMap::new()),
            max_per_client,
        })
    }

    /// A place for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refused> {
        let key = client_key(ip);
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = per_client.entry(key).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        *n += 1;
        Ok(Admission {
            limits: self.clone(),
            key,
            _permit: permit,
        })
    }

    /// Waits until every admitted connection has ended.
    pub async fn wait_idle(&self) {
        let _ = self.total.acquire_many(self.max_total as u32).await;
    }
}

/// An open connection's place in the limits; given back on drop.
pub struct Admission {
    limits: Arc<WebLimits>,
    key: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per_client = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.key);
            }
        }
    }
}

/// Serves `router` on `listener` under the limits of `config` until
/// `shutdown` becomes true; then stops accepting, lets requests in progress
/// finish (up to `request_timeout` and 5 s more) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: WebConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = WebLimits::new(config.max_connections, config.max_connections_per_ip);
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let refusals = Arc::new(RefusalLog::default());
    let router = bounded(router, &config);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout.0)
        .keep_alive(true)
        .max_header_size(MAX_HEAD_SIZE)
        .max_buf_size(MAX_BUFFER);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(error = %e, "web accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match limits.admit(peer.ip()) {
            Ok(admission) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    // Handlers that need the client's address (the
                    // sign-in throttle) read it as ConnectInfo.
                    TowerToHyperService::new(
                        router
                            .clone()
                            .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
                    ),
                    builder.clone(),
                    config.idle_timeout.0,
                    shutdown.clone(),
                    admission,
                ));
            }
            Err(why) => {
                refusals.note(peer, why);
                refuse(stream, why, &refusing);
            }
        }
    }
    drop(listener);
    let grace = config.request_timeout.0 + Duration::from_secs(5);
    if tokio::time::timeout(grace, limits.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("web connections still open after the grace period; leaving them");
    }
}

/// Runs one admitted connection until the client or a timeout ends it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
    builder: Arc<http1::Builder>,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
    admission: Admission,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        let idle_at = activity.last() + idle_timeout;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %peer, error = %e, "web connection ended");
                }
                break;
            }
            () = tokio::time::sleep_until(idle_at) => {
                if activity.last() + idle_timeout <= Instant::now() {
                    tracing::debug!(peer = %peer, "web connection idle too long: closed");
                    break;
                }
            }
            _ = shutdown.wait_for(|v| *v), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(admission);
}

/// Answers a connection over a cap with 503 and closes it.
fn refuse(mut stream: TcpStream, why: Refused, refusing: &Arc<Semaphore>) {
    let answer = why.response();
    match refusing.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                    stream.write_all(answer.as_bytes()).await?;
                    stream.shutdown().await?;
                    // Read the request away (a little of it), so closing
                    // does not reset the connection before the client has
                    // read the answer.
                    let mut buf = [0u8; 4096];
                    let mut left: usize = 64 * 1024;
                    while left > 0 {
                        let n = stream.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        left = left.saturating_sub(n);
                    }
                    io::Result::Ok(())
                })
                .await;
                drop(permit);
            });
        }
        Err(_) => {
            // Too many refusals at once: say it if the socket takes it
            // now, and close.
            let _ = stream.try_write(answer.as_bytes());
        }
    }
}

/// Logs refused connections: the first at once, then at most one line per
/// [`RefusalLog::EVERY`] with how many more there were, so a flood does not
/// flood the log as well.
#[derive(Default)]
struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&self, peer: SocketAddr, why: Refused) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, unlogged) = &mut *state;
        let now = Instant::now();
        if last.is_some_and(|t| now < t + Self::EVERY) {
            *unlogged += 1;
            return;
        }
        tracing::warn!(
            peer = %peer,
            reason = why.reason(),
            refused_since_last_line = *unlogged,
            "web connection refused"
        );
        *last = Some(now);
        *unlogged = 0;
    }
}

/// When a connection last moved a byte either way.
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records every byte read or written in its
/// [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The per-request limits: `request_timeout` and `max_body_size`.
#[derive(Clone, Copy)]
struct Bounds {
    request_timeout: Duration,
    max_body: usize,
}

/// `router` with every request bounded in time and body size.
fn bounded(router: Router, config: &WebConfig) -> Router {
    let bounds = Bounds {
        request_timeout: config.request_timeout.0,
        // validate() refuses sizes that do not fit.
        max_body: usize::try_from(config.max_body_size.0).unwrap_or(usize::MAX),
    };
    router.layer(axum::middleware::from_fn_with_state(bounds, bound_request))
}

/// Reads the body whole (up to `max_body`) and runs the handler, both
/// within `request_timeout` of the head's arrival.
async fn bound_request(State(b): State<Bounds>, req: Request, next: Next) -> Response {
    let deadline = Instant::now() + b.request_timeout;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > b.max_body as u64) {
        return too_large();
    }
    let body =
        match tokio::time::timeout_at(deadline, Limited::new(body, b.max_body).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "web request body could not be read");
                return closing(super::page(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "<p>The request could not be read.</p>",
                ));
            }
            Err(_) => {
                return closing(super::page(
                    StatusCode::REQUEST_TIMEOUT,
                    "Request timed out",
                    "<p>The request did not arrive in time. Please try again.</p>",
                ));
            }
        };
    let path = parts.uri.path().to_owned();
    let req = Request::from_parts(parts, Body::from(body));
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(path = %path, "web request took longer than web.request_timeout");
            let mut r = super::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "<p>Your request took too long. Please try again in a few minutes.</p>",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            r
        }
    }
}

fn too_large() -> Response {
    closing(super::page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request too large",
        "<p>The request is larger than this server accepts.</p>",
    ))
}

/// Marks a response as the connection's last: its request was not read
/// whole.
fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_64_and_ipv4_per_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), v4);
    }

    #[test]
    fn caps_count_per_client_and_in_total_and_free_on_drop() {
        let limits = WebLimits::new(3, 2);
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let a = limits.admit(one).unwrap();
        let b = limits.admit(same_64).unwrap();
        assert_eq!(limits.admit(one).err(), Some(Refused::PerClient));
        let c = limits.admit(other).unwrap();
        assert_eq!(
            limits.admit("192.0.2.2".parse().unwrap()).err(),
            Some(Refused::Total)
        );
        drop(a);
        let d = limits.admit(one).unwrap();
        drop((b, c, d));
        assert!(limits.per_client.lock().unwrap().is_empty());
        assert_eq!(limits.total.available_permits(), 3);
    }

    #[test]
    fn the_refusal_is_a_whole_http_response() {
        let r = Refused::PerClient.response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("connection: close"));
    }
}
