//! The Exim-style main log and reject log: one line per event, greppable by
//! queue id, with Exim's flags so admins' habits carry over:
//!
//! ```text
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k <= bob@example.org H=(client.test) [192.0.2.7]:40312 P=esmtp S=1834 id=<x@example.org>
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k => alice@example.test <alice+news@example.test> R=local T=maildir
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k == carol@example.test <carol@example.test> R=local T=maildir defer: No space left on device (os error 28)
//! 2026-11-27 14:06:53 1wH3kL-0004dR-2k ** carol@example.test <carol@example.test> R=local T=maildir: retry time exceeded: No space left on device (os error 28)
//! 2026-11-27 14:05:53 1wH3kL-0004dR-2k Completed
//! ```
//!
//! Held and dropped copies are pseudo-deliveries, as Exim writes
//! `:blackhole:`: `=> :quarantine: alice@example.test <alice@example.test>
//! R=quarantine (why)`. Mail boxtrap sends (challenges, notices) is logged
//! under its outbound id, `OB<n>`, with the template as the router.
//!
//! Every line is built by one typed method per event ([`MainLog::arrival`],
//! [`MainLog::delivered`], [`MainLog::deferred`], [`MainLog::failed`],
//! [`MainLog::completed`], ...), so the shapes that exigrep-style tools
//! depend on are written in one place.
//!
//! Structured `tracing` output to stderr is separate; this file is for admins.
//! Files are reopened when logrotate moves them away.

use crate::clock::Clock;
use crate::envelope::Envelope;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often to check whether the file was rotated away.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

struct LogFile {
    path: PathBuf,
    file: File,
    checked: Instant,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            file,
            checked: Instant::now(),
        })
    }

    fn write_line(&mut self, line: &str) {
        if self.checked.elapsed() >= REOPEN_CHECK {
            self.checked = Instant::now();
            let moved = match (std::fs::metadata(&self.path), self.file.metadata()) {
                (Ok(on_disk), Ok(open)) => {
                    on_disk.ino() != open.ino() || on_disk.dev() != open.dev()
                }
                _ => true,
            };
            if moved && let Ok(f) = LogFile::open(&self.path) {
                *self = f;
            }
        }
        // One write(2) per line on an O_APPEND file: lines from several
        // processes (serve and the CLI) never interleave.
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write log line");
        }
    }
}

/// Exim's `R=` (the part that decided) and `T=` (what wrote the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    pub router: &'a str,
    pub transport: Option<&'a str>,
}

impl Via<'static> {
    /// Local delivery into a Maildir: `R=local T=maildir`.
    pub const LOCAL: Via<'static> = Via {
        router: "local",
        transport: Some("maildir"),
    };
    /// A released held message into its Maildir: `R=quarantine T=maildir`.
    pub const RELEASE: Via<'static> = Via {
        router: "quarantine",
        transport: Some("maildir"),
    };
    /// A decision of the quarantine with no transport: `R=quarantine`.
    pub const QUARANTINE: Via<'static> = Via {
        router: "quarantine",
        transport: None,
    };
}

impl Display for Via<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "R={}", self.router)?;
        if let Some(t) = self.transport {
            write!(f, " T={t}")?;
        }
        Ok(())
    }
}

/// Who a recipient line is about: the final address, and the address as
/// the client wrote it when that is known (`alice@x <alice+tag@x>`).
#[derive(Debug, Clone, Copy)]
pub struct Rcpt<'a> {
    pub address: &'a str,
    pub original: Option<&'a str>,
}

impl<'a> Rcpt<'a> {
    pub fn new(address: &'a str, original: &'a str) -> Rcpt<'a> {
        Rcpt {
            address,
            original: Some(original),
        }
    }

    pub fn bare(address: &'a str) -> Rcpt<'a> {
        Rcpt {
            address,
            original: None,
        }
    }
}

impl Display for Rcpt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.original {
            Some(o) => write!(f, "{} <{o}>", self.address),
            None => f.write_str(self.address),
        }
    }
}

/// The header value of `Message-ID`, for the `<=` line's `id=`.
fn message_id(data: &[u8]) -> Option<String> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..end]);
    head.split("\r\n")
        .find(|l| {
            l.get(..11)
                .is_some_and(|k| k.eq_ignore_ascii_case("message-id:"))
        })
        .map(|l| l[11..].trim().to_owned())
}

/// The main log and the reject log.
#[derive(Clone)]
pub struct MainLog {
    main: Arc<Mutex<LogFile>>,
    reject: Arc<Mutex<LogFile>>,
    clock: Arc<dyn Clock>,
}

impl MainLog {
    pub fn open(main: &Path, reject: &Path, clock: Arc<dyn Clock>) -> std::io::Result<MainLog> {
        Ok(MainLog {
            main: Arc::new(Mutex::new(LogFile::open(main)?)),
            reject: Arc::new(Mutex::new(LogFile::open(reject)?)),
            clock,
        })
    }

    fn stamp(&self, text: &str) -> String {
        format!("{} {}\n", self.clock.now().log_format(), text)
    }

    /// Writes one event line to the main log.
    pub fn main(&self, text: &str) {
        let line = self.stamp(text);
        if let Ok(mut f) = self.main.lock() {
            f.write_line(&line);
        }
    }

    /// `<=`: a message was accepted (stored, and the client told 250).
    pub fn arrival(&self, env: &Envelope, data: &[u8]) {
        let c = &env.client;
        let sender = match &env.sender {
            Some(s) => s.to_string(),
            None => "<>".into(),
        };
        let id = message_id(data)
            .map(|id| format!(" id={id}"))
            .unwrap_or_default();
        self.main(&format!(
            "{} <= {sender} H=({}) [{}]:{} P={} S={}{id}",
            env.queue_id,
            c.helo,
            c.addr.ip(),
            c.addr.port(),
            c.protocol,
            data.len(),
        ));
    }

    /// `=>`: delivered; `note` is what the transport said, or how a
    /// release came about.
    pub fn delivered(&self, id: &str, rcpt: Rcpt, via: Via, note: Option<&str>) {
        let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
        self.main(&format!("{id} => {rcpt} {via}{note}"));
    }

    /// `=> :quarantine:`: the recipient's copy is held.
    pub fn held(&self, id: &str, rcpt: Rcpt, why: &str) {
        self.main(&format!(
            "{id} => :quarantine: {rcpt} {} ({why})",
            Via::QUARANTINE
        ));
    }

    /// `=> :blackhole:`: the recipient's copy is dropped on purpose.
    pub fn discarded(&self, id: &str, rcpt: Rcpt, why: &str) {
        self.main(&format!(
            "{id} => :blackhole: {rcpt} {} ({why})",
            Via::QUARANTINE
        ));
    }

    /// `==`: deferred; it will be tried again.
    pub fn deferred(&self, id: &str, rcpt: Rcpt, via: Via, error: &dyn Display) {
        self.main(&format!("{id} == {rcpt} {via} defer: {error}"));
    }

    /// `**`: failed for good (or removed: expired, deleted by the owner).
    pub fn failed(&self, id: &str, rcpt: Rcpt, via: Via, why: &dyn Display) {
        self.main(&format!("{id} ** {rcpt} {via}: {why}"));
    }

    /// Every recipient of the message is done with.
    pub fn completed(&self, id: &str) {
        self.main(&format!("{id} Completed"));
    }

    /// A `451` after DATA: nothing was stored; the client will try again.
    pub fn temporarily_rejected(&self, id: &str, client: &str, what: &str, error: &dyn Display) {
        self.main(&format!(
            "{id} {client} temporarily rejected after DATA: {what}: {error}"
        ));
    }

    /// A refused command or message: `H=(helo) [ip]:port F=<sender>
    /// rejected RCPT <x>: unknown user`, in the reject log.
    pub fn rejected(&self, client: &str, from: &str, what: &str, why: &str) {
        self.reject(&format!("{client} F=<{from}> rejected {what}: {why}"));
    }

    /// A connection turned away before the greeting, in the reject log.
    pub fn connection_refused(&self, peer: std::net::SocketAddr, why: &str) {
        self.reject(&format!(
            "H=[{}]:{} connection refused: {why}",
            peer.ip(),
            peer.port()
        ));
    }

    /// A session ended for too many refused commands, in the reject log.
    pub fn too_many_errors(&self, client: &str, errors: u32) {
        self.reject(&format!(
            "{client} too many errors ({errors}), connection dropped"
        ));
    }

    /// A session ended because the client sent nothing in time.
    pub fn timeout(&self, ip: std::net::IpAddr) {
        self.main(&format!("SMTP command timeout on connection from [{ip}]"));
    }

    /// Writes a refusal to the reject log, and to the main log as Exim does.
    pub fn reject(&self, text: &str) {
        let line = self.stamp(text);
        if let Ok(mut f) = self.main.lock() {
            f.write_line(&line);
        }
        if let Ok(mut f) = self.reject.lock() {
            f.write_line(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::envelope::ClientInfo;

    #[test]
    fn finds_the_message_id_in_the_header_only() {
        assert_eq!(
            message_id(b"Subject: x\r\nMessage-ID: <a@b.test>\r\n\r\nMessage-ID: <no>\r\n")
                .as_deref(),
            Some("<a@b.test>")
        );
        assert_eq!(message_id(b"Subject: x\r\n\r\nMessage-ID: <no>\r\n"), None);
    }

    #[test]
    fn every_event_has_its_exim_shape() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("mainlog");
        let clock = ManualClock::new(Timestamp::from_secs(1_795_788_353));
        let log = MainLog::open(&m, &dir.path().join("rejectlog"), Arc::new(clock)).unwrap();
        let q = "1wH3kL-0004dR-2k";
        let env = Envelope {
            queue_id: q.into(),
            sender: Some(crate::address::EmailAddress::parse("bob@example.org").unwrap()),
            recipients: Vec::new(),
            arrived: Timestamp::from_secs(1_795_788_353),
            client: ClientInfo {
                helo: "client.test".into(),
                addr: "192.0.2.7:40312".parse().unwrap(),
                protocol: "esmtp",
            },
        };
        let data = b"Message-ID: <x@example.org>\r\nSubject: s\r\n\r\nMessage-ID: <no>\r\n";
        log.arrival(&env, data);
        let alice = Rcpt::new("alice@example.test", "alice+news@example.test");
        log.delivered(q, alice, Via::LOCAL, None);
        log.deferred(q, alice, Via::LOCAL, &"No space left on device");
        log.failed(q, alice, Via::LOCAL, &"retry time exceeded: disk");
        log.held(q, alice, "unknown sender; a challenge was sent");
        log.discarded(q, alice, "sender is on the ignore list (from x)");
        log.delivered(q, alice, Via::RELEASE, Some("link"));
        log.delivered(
            "OB7",
            Rcpt::bare("bob@example.org"),
            Via {
                router: "verify",
                transport: Some("file"),
            },
            Some("written to outbox"),
        );
        log.completed(q);
        log.temporarily_rejected(
            q,
            "H=(c) [192.0.2.7]",
            "message could not be stored",
            &"disk",
        );
        log.rejected(
            "H=(c) [192.0.2.7]:1",
            "b@x.test",
            "RCPT <n@example.test>",
            "unknown user",
        );
        log.connection_refused("192.0.2.7:1".parse().unwrap(), "too many connections");
        log.too_many_errors("H=(c) [192.0.2.7]:1", 10);
        log.timeout("192.0.2.7".parse().unwrap());
        let want = [
            "1wH3kL-0004dR-2k <= bob@example.org H=(client.test) [192.0.2.7]:40312 P=esmtp S=61 id=<x@example.org>",
            "1wH3kL-0004dR-2k => alice@example.test <alice+news@example.test> R=local T=maildir",
            "1wH3kL-0004dR-2k == alice@example.test <alice+news@example.test> R=local T=maildir defer: No space left on device",
            "1wH3kL-0004dR-2k ** alice@example.test <alice+news@example.test> R=local T=maildir: retry time exceeded: disk",
            "1wH3kL-0004dR-2k => :quarantine: alice@example.test <alice+news@example.test> R=quarantine (unknown sender; a challenge was sent)",
            "1wH3kL-0004dR-2k => :blackhole: alice@example.test <alice+news@example.test> R=quarantine (sender is on the ignore list (from x))",
            "1wH3kL-0004dR-2k => alice@example.test <alice+news@example.test> R=quarantine T=maildir (link)",
            "OB7 => bob@example.org R=verify T=file (written to outbox)",
            "1wH3kL-0004dR-2k Completed",
            "1wH3kL-0004dR-2k H=(c) [192.0.2.7] temporarily rejected after DATA: message could not be stored: disk",
            "H=(c) [192.0.2.7]:1 F=<b@x.test> rejected RCPT <n@example.test>: unknown user",
            "H=[192.0.2.7]:1 connection refused: too many connections",
            "H=(c) [192.0.2.7]:1 too many errors (10), connection dropped",
            "SMTP command timeout on connection from [192.0.2.7]",
        ];
        let got: Vec<String> = std::fs::read_to_string(&m)
            .unwrap()
            .lines()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap().to_owned())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn writes_stamped_lines_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (m, r) = (
            dir.path().join("log/mainlog"),
            dir.path().join("log/rejectlog"),
        );
        let clock = ManualClock::new(Timestamp::from_secs(1_795_788_353));
        let log = MainLog::open(&m, &r, Arc::new(clock)).unwrap();
        log.main("1wH3kL-0004dR-2k <= bob@example.org");
        log.reject("H=[127.0.0.1] rejected RCPT <x@example.test>: No such user here");
        let main = std::fs::read_to_string(&m).unwrap();
        assert_eq!(
            main,
            "2026-11-27 14:05:53 1wH3kL-0004dR-2k <= bob@example.org\n\
             2026-11-27 14:05:53 H=[127.0.0.1] rejected RCPT <x@example.test>: No such user here\n"
        );
        assert_eq!(std::fs::read_to_string(&r).unwrap().lines().count(), 1);

        std::fs::rename(&m, dir.path().join("log/mainlog.1")).unwrap();
        log.main.lock().unwrap().checked -= REOPEN_CHECK;
        log.main("after rotation");
        assert!(
            std::fs::read_to_string(&m)
                .unwrap()
                .ends_with("after rotation\n")
        );
    }
}
