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
//! Every line is written as Exim writes it with `string_printing()`: a
//! control character in a value that came from outside (an address, the
//! Message-ID, the HELO name, an error text) becomes a printable escape
//! (`\n`, `\r`, `\t`, `\b`, `\v`, `\f`, else three octal digits per byte:
//! ESC is `\033`), so nothing a sender writes can reach an admin's terminal
//! as a control sequence or split a line in two. See [`escape_controls`].
//!
//! Structured `tracing` output to stderr is separate; this file is for admins.
//! Files are created with mode 0600 in a 0700 directory ([`crate::filemode`])
//! and reopened when logrotate moves them away.

use crate::clock::Clock;
use crate::envelope::Envelope;
use crate::filemode;
use std::borrow::Cow;
use std::fmt::Display;
use std::fs::File;
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
            filemode::create_dir_all(dir)?;
        }
        let file = filemode::open_append(path)?;
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

/// Whether a character is written as an escape: the C0 and C1 controls
/// and DEL, and the characters that move or reorder text on a terminal
/// without being controls (line and paragraph separators, bidi marks,
/// embeddings, overrides and isolates).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with the control characters, the line separators and the bidi
/// controls written as Exim's `string_printing()` writes a non-printing one: `\n`, `\r`, `\t`, `\b`,
/// `\v`, `\f`, or a backslash and three octal digits for each of its UTF-8
/// bytes (ESC is `\033`, U+202E is `\342\200\256`). Everything else,
/// UTF-8 addresses included, is kept as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
        }
    }
    Cow::Owned(out)
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
        format!(
            "{} {}\n",
            self.clock.now().log_format(),
            escape_controls(text)
        )
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
            dnsbl: Vec::new(),
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
    fn control_characters_are_escaped_as_exim_does() {
        assert!(matches!(
            escape_controls("bob@example.org <ré@ü.example>"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("<\u{1b}[2J\u{1b}]0;pwned\u{7}@x>"),
            "<\\033[2J\\033]0;pwned\\007@x>"
        );
        assert_eq!(
            escape_controls("a\r\nb\tc\u{8}\u{b}\u{c}\0\u{7f}"),
            "a\\r\\nb\\tc\\b\\v\\f\\000\\177"
        );
        // C1 controls and text-reordering characters, byte by byte.
        assert_eq!(escape_controls("\u{9b}2J"), "\\302\\2332J");
        assert_eq!(
            escape_controls("x\u{202e}gpj.exe\u{2028}y"),
            "x\\342\\200\\256gpj.exe\\342\\200\\250y"
        );
    }

    #[test]
    fn a_hostile_message_id_and_helo_reach_the_log_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let (m, r) = (dir.path().join("mainlog"), dir.path().join("rejectlog"));
        let clock = ManualClock::new(Timestamp::from_secs(1_795_788_353));
        let log = MainLog::open(&m, &r, Arc::new(clock)).unwrap();
        let env = Envelope {
            queue_id: "1wH3kL-0004dR-2k".into(),
            sender: None,
            recipients: Vec::new(),
            arrived: Timestamp::from_secs(1_795_788_353),
            client: ClientInfo {
                helo: "evil\u{1b}[31m".into(),
                addr: "192.0.2.7:40312".parse().unwrap(),
                protocol: "esmtp",
            },
            dnsbl: Vec::new(),
        };
        log.arrival(
            &env,
            b"Message-ID: <\x1b[2J\x1b[1;1Hfake line\n@x>\r\n\r\nbody\r\n",
        );
        log.rejected(
            "H=(evil\u{1b}[31m) [192.0.2.7]:1",
            "b\u{7}@x",
            "RCPT <a@b>",
            "no\nsuch user",
        );
        let main = std::fs::read_to_string(&m).unwrap();
        assert!(
            !main.contains('\u{1b}') && !main.contains('\u{7}'),
            "{main:?}"
        );
        assert_eq!(main.lines().count(), 2, "{main}");
        assert!(
            main.contains("H=(evil\\033[31m) [192.0.2.7]:40312 P=esmtp S=46 id=<\\033[2J\\033[1;1Hfake line\\n@x>"),
            "{main}"
        );
        let reject = std::fs::read_to_string(&r).unwrap();
        assert!(
            reject.ends_with("F=<b\\007@x> rejected RCPT <a@b>: no\\nsuch user\n"),
            "{reject}"
        );
    }

    #[test]
    fn log_files_are_private_to_boxtrap() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (m, r) = (
            dir.path().join("log/mainlog"),
            dir.path().join("log/rejectlog"),
        );
        let clock = ManualClock::new(Timestamp::from_secs(1_795_788_353));
        let _log = MainLog::open(&m, &r, Arc::new(clock)).unwrap();
        for p in [dir.path().join("log"), m, r] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}: {mode:o}", p.display());
        }
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
