//! A tiny ESMTP server on loopback for the outbound tests: it records what
//! it receives, counts connections (all, and open at once), and can be
//! told to misbehave: refuse recipients, break STARTTLS, never greet,
//! stall at one command, answer slowly, or hold each session before its
//! greeting until the test lets it go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

#[derive(Clone, Default)]
pub struct Behaviour {
    /// Reply to every RCPT (e.g. "550 5.1.1 no such user"); None accepts.
    pub rcpt_reply: Option<&'static str>,
    /// Advertise STARTTLS, answer 220, then send garbage instead of TLS.
    pub broken_starttls: bool,
    /// Accept connections and never say anything.
    pub silent: bool,
    /// Never answer the command that starts with this ("MAIL", "DATA"),
    /// or, for ".", the end of the data.
    pub stall_at: Option<&'static str>,
    /// Wait this long before each reply, the greeting included.
    pub reply_delay: Duration,
    /// Each session waits for a permit here before its greeting (see
    /// [`TestSmtp::release`]).
    pub gate: Option<Arc<Semaphore>>,
}

#[derive(Debug, Clone, Default)]
pub struct Received {
    pub ehlo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

/// Orders events across all test servers of a process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Counters shared by the server's sessions.
#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    open: AtomicUsize,
    most_open: AtomicUsize,
    /// (sequence number, "open" or "close") of each connection.
    log: Mutex<Vec<(u64, &'static str)>>,
}

impl Counts {
    fn note(&self, what: &'static str) {
        let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push((n, what));
    }
}

pub struct TestSmtp {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    counts: Arc<Counts>,
    /// Bumped on every connection, message and close.
    events: watch::Receiver<u64>,
    gate: Option<Arc<Semaphore>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestSmtp {
    /// A server on a free port of 127.0.0.1.
    pub async fn start(behaviour: Behaviour) -> TestSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestSmtp::serve_on(listener, behaviour)
    }

    /// A server on `listener`.
    pub fn serve_on(listener: TcpListener, behaviour: Behaviour) -> TestSmtp {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Counts::default());
        let (bump, events) = watch::channel(0u64);
        let bump = Arc::new(bump);
        let gate = behaviour.gate.clone();
        let (out, c) = (received.clone(), counts.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                let open = c.open.fetch_add(1, Ordering::SeqCst) + 1;
                c.most_open.fetch_max(open, Ordering::SeqCst);
                c.note("open");
                bump.send_modify(|n| *n += 1);
                let (b, out, c, bump) = (behaviour.clone(), out.clone(), c.clone(), bump.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, b, out, &bump).await;
                    c.open.fetch_sub(1, Ordering::SeqCst);
                    c.note("close");
                    bump.send_modify(|n| *n += 1);
                });
            }
        });
        TestSmtp {
            addr,
            received,
            counts,
            events,
            gate,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at once.
    pub fn most_open(&self) -> usize {
        self.counts.most_open.load(Ordering::SeqCst)
    }

    /// Where this server's first `what` ("open", "close") falls among the
    /// events of all test servers.
    pub fn first(&self, what: &str) -> Option<u64> {
        let log = self.counts.log.lock().unwrap();
        log.iter().find(|(_, w)| *w == what).map(|(n, _)| *n)
    }

    /// As [`TestSmtp::first`], for the last one.
    pub fn last(&self, what: &str) -> Option<u64> {
        let log = self.counts.log.lock().unwrap();
        log.iter().rev().find(|(_, w)| *w == what).map(|(n, _)| *n)
    }

    /// Lets `n` held sessions (see [`Behaviour::gate`]) greet.
    pub fn release(&self, n: usize) {
        self.gate.as_ref().expect("no gate").add_permits(n);
    }

    /// Waits until `done` holds, re-checking on each connection, message
    /// and close; fails the test after 30 s (a bound, not a measurement).
    pub async fn wait_until(&self, what: &str, done: impl Fn(&TestSmtp) -> bool) {
        let mut events = self.events.clone();
        let wait = async {
            while !done(self) {
                events.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("{} never saw: {what}", self.addr));
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    b: Behaviour,
    out: Arc<Mutex<Vec<Received>>>,
    bump: &watch::Sender<u64>,
) -> std::io::Result<()> {
    let stall = || tokio::time::sleep(Duration::from_secs(3600));
    if b.silent {
        stall().await;
        return Ok(());
    }
    if let Some(gate) = &b.gate {
        // Held; a client that hangs up meanwhile ends the session.
        let mut byte = [0u8; 1];
        tokio::select! {
            permit = gate.acquire() => permit.unwrap().forget(),
            _ = stream.peek(&mut byte) => return Ok(()),
        }
    }
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    tokio::time::sleep(b.reply_delay).await;
    w.write_all(b"220 test.example ESMTP\r\n").await?;
    let mut tx = Received::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let upper = text.to_ascii_uppercase();
        if b.stall_at.is_some_and(|c| upper.starts_with(c)) {
            stall().await;
        }
        let reply: String = if upper.starts_with("EHLO ") {
            tx.ehlo = text[5..].to_owned();
            let tls = if b.broken_starttls {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            format!("250-test.example\r\n{tls}250-8BITMIME\r\n250 SIZE 10000000")
        } else if upper == "STARTTLS" && b.broken_starttls {
            w.write_all(b"220 2.0.0 go ahead\r\nthis is not a TLS record\r\n")
                .await?;
            return Ok(());
        } else if upper.starts_with("MAIL FROM:") {
            tx.mail_from = text[10..].to_owned();
            "250 2.1.0 ok".into()
        } else if upper.starts_with("RCPT TO:") {
            match b.rcpt_reply {
                Some(reply) => reply.into(),
                None => {
                    tx.rcpt_to.push(text[8..].to_owned());
                    "250 2.1.5 ok".into()
                }
            }
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                // RFC 5321 §4.5.2: remove one leading dot.
                let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
                data.extend_from_slice(unstuffed);
            }
            if b.stall_at == Some(".") {
                stall().await;
            }
            tx.data = data;
            out.lock().unwrap().push(tx.clone());
            bump.send_modify(|n| *n += 1);
            tx = Received {
                ehlo: tx.ehlo.clone(),
                ..Received::default()
            };
            "250 2.0.0 queued as T1".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok".into()
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 not implemented here".into()
        };
        tokio::time::sleep(b.reply_delay).await;
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// `n` listeners on one port, at 127.0.0.1, 127.0.0.2, ... (direct MX
/// delivery uses one port, `outbound.mx_port`, for every exchanger).
pub async fn listeners_on_one_port(n: u8) -> (u16, Vec<TcpListener>) {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for i in 2..=n {
            match TcpListener::bind(("127.0.0.".to_owned() + &i.to_string(), port)).await {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == n as usize {
            return (port, all);
        }
    }
    panic!("no port free on 127.0.0.1 to 127.0.0.{n}");
}

/// A listener that takes no more connections: its backlog is full and it
/// never accepts, so a connection attempt hangs until the client gives
/// up (Linux drops the SYN). The returned streams fill the backlog.
pub fn full_listener() -> (SocketAddr, std::net::TcpListener, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let listener: std::net::TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => return (addr, listener, fillers),
        }
    }
    panic!("the backlog of {addr} never filled up");
}
