//! Real mail: the SpamAssassin public corpus (3,250 messages from 2002–2003,
//! `../shared/corpus/spamassassin`, see its README) replayed over SMTP by a
//! few concurrent clients, each message in one transaction to a mailbox with
//! challenge-response on (`cr@`) and a plain one (`plain@`).
//!
//! For every message: no 4xx, ever; a 5xx only where the message itself
//! calls for one of the documented refusals, decided here from the message
//! and not from the server's answer (a bare CR or LF in the data: `550
//! 5.5.2` after the data; an envelope sender without a domain: `553 5.1.3`
//! at MAIL); the plain mailbox gets every accepted message exactly once,
//! byte for byte; the challenge-response mailbox holds or delivers every
//! accepted message exactly once (a held copy byte for byte too); and
//! neither the main log nor the `tracing` output has a panic, an ERROR line
//! or a `temporarily rejected`. Every finding is collected, grouped by kind
//! and listed by message file before the test fails, not just the first.
//!
//! It prints what the quarantine made of each folder (held reasons,
//! challenges sent), so that a change in classification shows.
//!
//! The corpus is found at `SPAMASSASSIN_CORPUS`, else
//! `CARGO_MANIFEST_DIR/../shared/corpus/spamassassin`, else the machine's
//! `/work/shared/corpus/spamassassin`; a missing corpus fails the test.

use crate::support::*;
use boxtrap::spam::testing::TestSpamd;
use boxtrap::store::held::{HeldSummary, OutboundState};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Challenge-response on.
const CR: &str = "cr@example.test";
/// Challenge-response off.
const PLAIN: &str = "plain@example.test";
/// The folders and how many messages each has (the corpus README).
const FOLDERS: [(&str, usize); 3] = [("easy-ham-1", 2500), ("hard-ham-1", 250), ("spam-1", 500)];
/// Concurrent SMTP clients.
const CONNECTIONS: usize = 16;
/// A challenge rate limit the corpus cannot reach: every message may be
/// challenged.
const NO_LIMIT: u32 = 1_000_000;

#[test]
fn spamassassin_corpus_sqlite() {
    run_capturing_log("corpus-sqlite", 2, "info,sqlx=warn", |log| {
        replay(Backend::Sqlite, log, Spamd::On)
    });
}

#[test]
fn spamassassin_corpus_postgres() {
    run_capturing_log("corpus-postgres", 2, "info,sqlx=warn", |log| {
        replay(Backend::Postgres, log, Spamd::Off)
    });
}

// --- the corpus -----------------------------------------------------------

/// Where the project's machines keep the shared corpus, beside every
/// checkout's parent (`/work/main` and `/work/shared`).
const MACHINE_CORPUS: &str = "/work/shared/corpus/spamassassin";

pub(crate) fn corpus_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/spamassassin");
    let dir = match std::env::var_os("SPAMASSASSIN_CORPUS") {
        Some(d) => PathBuf::from(d),
        // A clone elsewhere (CI clones into a scratch directory) uses the
        // machine's copy.
        None if !beside.is_dir() => PathBuf::from(MACHINE_CORPUS),
        None => beside,
    };
    assert!(
        dir.is_dir(),
        "the corpus is missing: {} is not a directory (it holds {:?}; set SPAMASSASSIN_CORPUS \
         to its path)",
        dir.display(),
        FOLDERS.map(|(f, _)| f)
    );
    dir
}

/// What the server must answer, decided from the message alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 250 to MAIL, both RCPTs and the data.
    Accepted,
    /// `553 5.1.3` to MAIL: the envelope sender has no domain.
    SenderWithoutDomain,
    /// `550 5.5.2` after the data: a line ends in a bare CR or LF.
    BareNewline,
}

struct Message {
    folder: &'static str,
    /// `folder/file`, as findings name it.
    file: String,
    /// The envelope sender; empty for `<>`.
    sender: String,
    /// The message as the server must store it: the file without its mbox
    /// `From ` line, every LF made CRLF, ending in CRLF.
    crlf: Vec<u8>,
    /// What follows DATA on the wire: `crlf` dot-stuffed, and `.` CRLF.
    wire: Vec<u8>,
    eight_bit: bool,
    expect: Expect,
}

fn load_corpus(dir: &Path) -> Vec<Message> {
    let mut all = Vec::new();
    for (folder, count) in FOLDERS {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(folder))
            .unwrap_or_else(|e| panic!("cannot read {}/{folder}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            count,
            "{}/{folder} should hold {count} messages",
            dir.display()
        );
        for name in names {
            let raw = std::fs::read(dir.join(folder).join(&name)).unwrap();
            all.push(Message::prepare(folder, format!("{folder}/{name}"), &raw));
        }
    }
    all
}

impl Message {
    fn prepare(folder: &'static str, file: String, raw: &[u8]) -> Message {
        // The mbox separator line, when there is one, is not part of the message.
        let original = if raw.starts_with(b"From ") {
            match raw.iter().position(|&b| b == b'\n') {
                Some(i) => &raw[i + 1..],
                None => &[][..],
            }
        } else {
            raw
        };
        let mut crlf = Vec::with_capacity(original.len() + original.len() / 20 + 2);
        for &b in original {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        if !crlf.is_empty() && !crlf.ends_with(b"\r\n") {
            crlf.extend_from_slice(b"\r\n");
        }
        let mut wire = Vec::with_capacity(crlf.len() + 64);
        for line in crlf.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
        }
        wire.extend_from_slice(b".\r\n");
        let sender = envelope_sender(header_block(original));
        let expect = if sender_without_domain(&sender) {
            Expect::SenderWithoutDomain
        } else if has_bare_newline(&crlf) {
            Expect::BareNewline
        } else {
            Expect::Accepted
        };
        Message {
            folder,
            file,
            sender,
            eight_bit: crlf.iter().any(|b| !b.is_ascii()),
            crlf,
            wire,
            expect,
        }
    }
}

/// A CR not followed by LF, or an LF not preceded by CR.
fn has_bare_newline(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => data.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || data[i - 1] != b'\r',
        _ => false,
    })
}

fn sender_without_domain(sender: &str) -> bool {
    !sender.is_empty()
        && sender
            .rsplit_once('@')
            .is_none_or(|(_, domain)| domain.trim().is_empty())
}

/// The header section: everything before the first empty line.
fn header_block(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\n") {
        return &[];
    }
    match message.windows(2).position(|w| w == b"\n\n") {
        Some(i) => &message[..i + 1],
        None => message,
    }
}

/// The first `name:` header's value, unfolded (RFC 5322 §2.2.3).
fn header_value(headers: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if line.len() > name.len()
                    && line.is_char_boundary(name.len())
                    && line[..name.len()].eq_ignore_ascii_case(name)
                    && line[name.len()..]
                        .trim_start_matches([' ', '\t'])
                        .starts_with(':')
                {
                    let colon = line.find(':').unwrap();
                    value = Some(line[colon + 1..].to_owned());
                }
            }
        }
    }
    value.map(|v| v.trim().to_owned())
}

/// The envelope sender, as the corpus README says: `Return-Path:`, else
/// `From:`, as a bare address; empty (`<>`) when neither names one.
fn envelope_sender(headers: &[u8]) -> String {
    header_value(headers, "Return-Path")
        .or_else(|| header_value(headers, "From"))
        .map(|v| bare_address(&v))
        .unwrap_or_default()
}

/// `Name <addr>`, `<addr>`, `addr (Comment)` or `addr`: the addr. Quoted
/// strings and comments are skipped when looking for the angle brackets.
fn bare_address(value: &str) -> String {
    let mut outside = String::new();
    let (mut quoted, mut depth, mut escaped) = (false, 0usize, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            if depth == 0 {
                outside.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    outside.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                outside.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            '<' if !quoted && depth == 0 => {
                let rest = &value[i + 1..];
                let end = rest.find('>').unwrap_or(rest.len());
                return rest[..end].trim().to_owned();
            }
            c if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    // No angle brackets: the first address of a list, comments removed.
    let first = outside.split(',').next().unwrap_or_default().trim();
    first
        .split_whitespace()
        .find(|w| w.contains('@'))
        .or_else(|| first.split_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}

// --- the replay -----------------------------------------------------------

/// The server's answers in one transaction; `None` where the step was not
/// reached.
#[derive(Debug, Default)]
struct Replies {
    mail: Option<String>,
    rcpt_cr: Option<String>,
    rcpt_plain: Option<String>,
    data: Option<String>,
    end: Option<String>,
    /// The connection failed (closed, timed out, a greeting or EHLO refused).
    broken: Option<String>,
}

impl Replies {
    fn ok(r: &Option<String>, code: &str) -> bool {
        r.as_deref().is_some_and(|r| r.starts_with(code))
    }

    fn accepted(&self) -> bool {
        Replies::ok(&self.end, "250")
    }

    fn queue_id(&self) -> Option<String> {
        self.end
            .as_deref()
            .filter(|r| r.starts_with("250"))
            .and_then(|r| r.rsplit_once("id="))
            .map(|(_, id)| id.trim().to_owned())
    }
}

/// One transaction, step by step. `Ok(true)` when every step succeeded and
/// the session can carry the next message.
async fn transaction(c: &mut FallibleSmtp, m: &Message, r: &mut Replies) -> io::Result<bool> {
    let mut params = String::new();
    if m.eight_bit {
        params.push_str(" BODY=8BITMIME");
    }
    if !m.sender.is_ascii() {
        params.push_str(" SMTPUTF8");
    }
    r.mail = Some(c.cmd(&format!("MAIL FROM:<{}>{params}", m.sender)).await?);
    if !Replies::ok(&r.mail, "250") {
        return Ok(false);
    }
    r.rcpt_cr = Some(c.cmd(&format!("RCPT TO:<{CR}>")).await?);
    r.rcpt_plain = Some(c.cmd(&format!("RCPT TO:<{PLAIN}>")).await?);
    let (to_cr, to_plain) = (
        Replies::ok(&r.rcpt_cr, "250"),
        Replies::ok(&r.rcpt_plain, "250"),
    );
    if !to_cr && !to_plain {
        return Ok(false);
    }
    r.data = Some(c.cmd("DATA").await?);
    if !Replies::ok(&r.data, "354") {
        return Ok(false);
    }
    r.end = Some(c.send(&m.wire).await?);
    Ok(to_cr && to_plain && r.accepted())
}

/// Sends every message over `CONNECTIONS` concurrent sessions. A session
/// that saw a refusal is reset and closed, so the next message starts
/// afresh and refusals never add up to `smtp.max_errors`.
async fn send_all(addr: SocketAddr, messages: Arc<Vec<Message>>) -> Vec<Replies> {
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (messages, next) = (messages.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut session: Option<FallibleSmtp> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(m) = messages.get(i) else { break };
                    let mut r = Replies::default();
                    let result: io::Result<()> = async {
                        if session.is_none() {
                            let mut c = FallibleSmtp::connect(addr).await?;
                            let ehlo = c.cmd("EHLO corpus.client.example").await?;
                            if !ehlo.starts_with("250") {
                                return Err(io::Error::other(format!("EHLO answered {ehlo:?}")));
                            }
                            session = Some(c);
                        }
                        let c = session.as_mut().unwrap();
                        if !transaction(c, m, &mut r).await? {
                            c.cmd("RSET").await?;
                            let _ = c.cmd("QUIT").await;
                            session = None;
                        }
                        Ok(())
                    }
                    .await;
                    if let Err(e) = result {
                        r.broken = Some(e.to_string());
                        session = None;
                    }
                    done.push((i, r));
                }
                if let Some(mut c) = session {
                    let _ = c.cmd("QUIT").await;
                }
                done
            })
        })
        .collect();
    let mut replies: Vec<Option<Replies>> = (0..messages.len()).map(|_| None).collect();
    for c in clients {
        let done = tokio::time::timeout(Duration::from_secs(600), c)
            .await
            .expect("a client did not finish within 600 s")
            .unwrap();
        for (i, r) in done {
            replies[i] = Some(r);
        }
    }
    replies.into_iter().map(|r| r.unwrap()).collect()
}

// --- findings -------------------------------------------------------------

/// Something unexpected about one message (or, with `file` empty, about
/// the run as a whole).
struct Finding {
    file: String,
    /// What went wrong, without what is particular to the message, so that
    /// findings group by kind.
    kind: String,
    detail: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, file: &str, kind: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Finding {
            file: file.to_owned(),
            kind: kind.into(),
            detail: detail.into(),
        });
    }

    /// Kinds, most frequent first, with their count and an example file.
    fn by_kind(&self) -> String {
        let mut kinds: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for f in &self.0 {
            let e = kinds.entry(&f.kind).or_insert((0, &f.file));
            e.0 += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        kinds
            .iter()
            .map(|(kind, (n, example))| format!("  {n:5} × {kind}\n          e.g. {example}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn listing(&self) -> String {
        self.0
            .iter()
            .map(|f| {
                let file = if f.file.is_empty() { "(run)" } else { &f.file };
                format!("  {file}: {}: {}", f.kind, f.detail)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A reply with what is particular to one message taken out (quoted parts,
/// queue ids), for grouping.
fn reply_kind(reply: &str) -> String {
    let reply = reply.lines().last().unwrap_or_default();
    let reply = match reply.find("id=") {
        Some(i) => &reply[..i + 3],
        None => reply,
    };
    let mut out = String::new();
    for (i, part) in reply.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { "…" } else { part });
    }
    out
}

/// The replies of one transaction against what the message calls for.
fn check_replies(m: &Message, r: &Replies, findings: &mut Findings) {
    let steps = [
        (format!("MAIL FROM:<{}>", m.sender), "MAIL", &r.mail),
        (format!("RCPT TO:<{CR}>"), "RCPT cr", &r.rcpt_cr),
        (format!("RCPT TO:<{PLAIN}>"), "RCPT plain", &r.rcpt_plain),
        ("DATA".to_owned(), "DATA", &r.data),
        ("end of data".to_owned(), "end of data", &r.end),
    ];
    if let Some(e) = &r.broken {
        let at = steps
            .iter()
            .rev()
            .find(|(_, _, reply)| reply.is_some())
            .map(|(_, step, _)| format!("after {step}"))
            .unwrap_or_else(|| "before MAIL".to_owned());
        findings.add(
            &m.file,
            format!("session failed {at}: {}", reply_kind(e)),
            e.clone(),
        );
    }
    let want: [Option<&str>; 5] = match m.expect {
        Expect::Accepted => [
            Some("250"),
            Some("250"),
            Some("250"),
            Some("354"),
            Some("250 2.0.0 OK id="),
        ],
        Expect::SenderWithoutDomain => [Some("553 5.1.3"), None, None, None, None],
        Expect::BareNewline => [
            Some("250"),
            Some("250"),
            Some("250"),
            Some("354"),
            Some("550 5.5.2"),
        ],
    };
    // The first step that goes wrong is the finding (what follows it
    // follows from it), and every 4xx besides. A step not reached because
    // an earlier one failed is reported there.
    let mut deviated = false;
    for ((line, step, reply), want) in steps.iter().zip(want) {
        let Some(reply) = reply else { continue };
        if want.is_some_and(|w| reply.starts_with(w)) || (deviated && !reply.starts_with('4')) {
            continue;
        }
        deviated = true;
        let what = if reply.starts_with('4') {
            "4xx"
        } else if reply.starts_with('5') {
            "unexpected 5xx"
        } else {
            "unexpected reply"
        };
        let wanted = want.map_or("no such step".to_owned(), |w| format!("{w}…"));
        findings.add(
            &m.file,
            format!("{what} to {step}: {}", reply_kind(reply)),
            format!(
                "{line} answered {reply:?} (expected {wanted}; {:?})",
                m.expect
            ),
        );
    }
}

// --- what the mailboxes hold ------------------------------------------------

/// The queue id in a Maildir file name `<secs>.<queue-id>_<index>.<host>,S=<size>`.
fn queue_id_of_file(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('.')?;
    let (unique, _) = rest.split_once('.')?;
    Some(unique.rsplit_once('_')?.0)
}

/// Maildir files (`new/name` or `cur/name`, content) by queue id.
type FilesByQueueId = HashMap<String, Vec<(String, Vec<u8>)>>;

/// Every file in a Maildir (`new/` and `cur/`) by queue id, and the names
/// of files that name none.
fn maildir_by_queue_id(maildir: &Path) -> (FilesByQueueId, Vec<String>) {
    let mut by = FilesByQueueId::new();
    let mut unnamed = Vec::new();
    for sub in ["new", "cur"] {
        for (name, data) in messages_in(&maildir.join(sub)) {
            match queue_id_of_file(&name) {
                Some(id) => by
                    .entry(id.to_owned())
                    .or_default()
                    .push((format!("{sub}/{name}"), data)),
                None => unnamed.push(format!("{sub}/{name}")),
            }
        }
    }
    (by, unnamed)
}

/// Splits off the first line (without its line end) of `data`.
fn first_line<'a>(data: &'a [u8], eol: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let i = data.windows(eol.len()).position(|w| w == eol)?;
    Some((&data[..i], &data[i + eol.len()..]))
}

/// Takes the header fields boxtrap puts on top of a message off the front
/// of `data`: our `Authentication-Results:` (required), SpamAssassin's
/// `X-Spam-Score:` and `X-Spam-Status:` (when the message was scored; the
/// score is returned), then our `Received:` ([`strip_received`]).
fn strip_ours<'a>(
    data: &'a [u8],
    queue_id: &str,
    eol: &[u8],
) -> Result<(&'a [u8], Option<f64>), String> {
    let mut rest = data;
    let field = |name: &str, rest: &mut &'a [u8]| -> Option<String> {
        if !rest.starts_with(name.as_bytes()) {
            return None;
        }
        let mut value = String::new();
        let mut first = true;
        while let Some((line, after)) = first_line(rest, eol) {
            if !first && !line.starts_with(b"\t") && !line.starts_with(b" ") {
                break;
            }
            value.push_str(&String::from_utf8_lossy(line));
            first = false;
            *rest = after;
        }
        Some(value)
    };
    let results =
        field("Authentication-Results: mx.example.test;", &mut rest).ok_or_else(|| {
            format!(
                "no Authentication-Results: of ours: {}",
                excerpt(&data[..data.len().min(80)])
            )
        })?;
    if !results.contains("spf=") || !results.contains("dmarc=") {
        return Err(format!(
            "our Authentication-Results: lacks results: {results:?}"
        ));
    }
    let score = field("X-Spam-Score: ", &mut rest).map(|v| {
        v["X-Spam-Score: ".len()..]
            .trim()
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    });
    if score.is_some() && field("X-Spam-Status: ", &mut rest).is_none() {
        return Err("X-Spam-Score: without X-Spam-Status:".into());
    }
    Ok((strip_received(rest, queue_id, eol)?, score))
}

/// What boxtrap stores of `crlf` below its own header fields: the message
/// as sent without the `X-Spam-*` verdict fields and the
/// `Authentication-Results:` claiming our authserv-id that it removes.
fn as_stored(crlf: &[u8]) -> Vec<u8> {
    let without_spam = boxtrap::spam::strip_spam_headers(crlf);
    boxtrap::auth::strip_own_results(&without_spam, "mx.example.test").into_owned()
}

/// Takes our `Received:` header (`Received: from ...;` EOL TAB date EOL)
/// off the front of `data`, checking it names `queue_id`.
fn strip_received<'a>(data: &'a [u8], queue_id: &str, eol: &[u8]) -> Result<&'a [u8], String> {
    if !data.starts_with(b"Received: from ") {
        return Err(format!(
            "no Received: header of ours: {}",
            excerpt(&data[..data.len().min(80)])
        ));
    }
    let mut end_of_clauses = b";".to_vec();
    end_of_clauses.extend_from_slice(eol);
    end_of_clauses.push(b'\t');
    let i = data
        .windows(end_of_clauses.len())
        .position(|w| w == end_of_clauses)
        .ok_or("our Received: header has no date line")?;
    let header = &data[..i];
    if !String::from_utf8_lossy(header).contains(&format!(" id {queue_id}")) {
        return Err(format!(
            "our Received: header does not name {queue_id}: {}",
            excerpt(header)
        ));
    }
    let (_, rest) = first_line(&data[i + end_of_clauses.len()..], eol)
        .ok_or("our Received: header has no end")?;
    Ok(rest)
}

fn excerpt(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Where two byte strings first differ, with some context.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let from = i.saturating_sub(30);
    format!(
        "{} bytes, expected {}; first difference at byte {i}: got {} expected {}",
        got.len(),
        want.len(),
        excerpt(&got[from..got.len().min(i + 40)]),
        excerpt(&want[from..want.len().min(i + 40)]),
    )
}

/// CRLF back to LF, as a Maildir stores a message.
fn to_lf(crlf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(crlf.len());
    for line in crlf.split_inclusive(|&b| b == b'\n') {
        match line.strip_suffix(b"\r\n") {
            Some(text) => {
                out.extend_from_slice(text);
                out.push(b'\n');
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// A Maildir copy: `Return-Path:`, `Delivered-To:`, our header fields
/// ([`strip_ours`]), then the message as sent ([`as_stored`]), byte for
/// byte (with LF line ends). Returns the spam score it carries.
fn check_maildir_copy(
    m: &Message,
    mailbox: &str,
    queue_id: &str,
    file: &[u8],
) -> Result<Option<f64>, (String, String)> {
    let header = |why: String| ("header lines added by boxtrap are wrong".to_owned(), why);
    let (return_path, rest) =
        first_line(file, b"\n").ok_or_else(|| header("an empty file".into()))?;
    let return_path = String::from_utf8_lossy(return_path);
    let want = format!("Return-Path: <{}>", m.sender);
    if !return_path.eq_ignore_ascii_case(&want) {
        return Err(header(format!("{return_path:?}, expected {want:?}")));
    }
    let (delivered_to, rest) =
        first_line(rest, b"\n").ok_or_else(|| header("no Delivered-To:".into()))?;
    let want = format!("Delivered-To: {mailbox}");
    if delivered_to != want.as_bytes() {
        return Err(header(format!(
            "{}, expected {want:?}",
            excerpt(delivered_to)
        )));
    }
    let (body, score) = strip_ours(rest, queue_id, b"\n").map_err(header)?;
    let want = to_lf(&as_stored(&m.crlf));
    if body != want.as_slice() {
        return Err((
            "the message differs from what was sent".to_owned(),
            first_difference(body, &want),
        ));
    }
    Ok(score)
}

// --- the tally --------------------------------------------------------------

/// The default spam band a score falls in (`None`: not scored).
fn band(score: Option<f64>) -> &'static str {
    match score {
        None => "not scored (no spamd, or larger than spamd.max_size)",
        Some(s) if s.is_nan() => "an X-Spam-Score that is no number",
        Some(s) if s < -2.5 => "below -2.5: delivered, no challenge",
        Some(s) if s < 5.0 => "-2.5 to 5: held and challenged",
        Some(s) if s < 15.0 => "5 to 15: held, no challenge",
        Some(_) => "15 and up: refused at DATA by default",
    }
}

/// Counts per row label and folder, printed as a table.
#[derive(Default)]
struct Tally(BTreeMap<String, BTreeMap<&'static str, usize>>);

impl Tally {
    fn add(&mut self, row: impl Into<String>, folder: &'static str) {
        *self
            .0
            .entry(row.into())
            .or_default()
            .entry(folder)
            .or_default() += 1;
    }

    fn table(&self, title: &str) -> String {
        let width = self
            .0
            .keys()
            .map(|k| k.chars().count())
            .chain([title.chars().count()])
            .max()
            .unwrap_or(0);
        let mut out = format!("{title:<width$}");
        for (folder, _) in FOLDERS {
            out.push_str(&format!(" {folder:>11}"));
        }
        out.push_str(&format!(" {:>7}\n", "total"));
        for (row, counts) in &self.0 {
            out.push_str(&format!("{row:<width$}"));
            for (folder, _) in FOLDERS {
                out.push_str(&format!(
                    " {:>11}",
                    counts.get(folder).copied().unwrap_or(0)
                ));
            }
            out.push_str(&format!(" {:>7}\n", counts.values().sum::<usize>()));
        }
        out
    }
}

/// The `why` of `automated mail (why); held without a challenge`.
fn automated_why(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("automated mail (")?
        .rsplit_once("); held without a challenge")
        .map(|(why, _)| why)
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

// --- the test -----------------------------------------------------------------

/// Whether a real spamd scores the replay. It adds about 8 minutes (spamd
/// scores some 6 messages a second here), so one backend's run has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spamd {
    On,
    Off,
}

async fn replay(backend: Backend, tracing_log: CapturedLog, spamd: Spamd) {
    let started = Instant::now();
    let messages = Arc::new(load_corpus(&corpus_dir()));
    let app = TestApp::spawn_with(backend, |c| {
        // Scored by a real spamd; nothing refused for its score, so that
        // every message is accepted and counted in its band.
        if spamd == Spamd::On {
            c.spamd.address = TestSpamd::shared().addr().to_string();
            c.spamd.timeout = boxtrap::config::HumanDuration(Duration::from_secs(60));
        }
        c.spam.reject_score = 1_000_000.0;
        c.challenge.max_per_mailbox_hour = NO_LIMIT;
        c.challenge.max_per_domain_day = NO_LIMIT;
        c.challenge.max_per_address_day = NO_LIMIT;
        c.challenge.max_global_hour = NO_LIMIT;
    })
    .await;
    app.add_mailboxes(&[CR, PLAIN]).await;
    app.challenge_on(CR).await;
    let cr_id = app.mailbox_id(CR).await;

    let sending = Instant::now();
    let replies = send_all(app.addr, messages.clone()).await;
    let sent_in = sending.elapsed();

    let mut findings = Findings::default();
    // The spam score of every message delivered to the plain mailbox, by
    // the default bands of a mailbox.
    let mut bands = Tally::default();
    // Per folder: messages delivered to plain, and those scoring 5 or more.
    let mut spammy = HashMap::<&'static str, (usize, usize)>::new();
    for (m, r) in messages.iter().zip(&replies) {
        check_replies(m, r, &mut findings);
    }

    // Queue ids of the accepted messages, which name their copies.
    let mut by_queue_id = HashMap::<String, usize>::new();
    for (i, r) in replies.iter().enumerate() {
        if let Some(id) = r.queue_id()
            && let Some(other) = by_queue_id.insert(id.clone(), i)
        {
            findings.add(
                &messages[i].file,
                "two messages acknowledged with one queue id",
                format!("{id}, also {}", messages[other].file),
            );
        }
    }

    // The plain mailbox: every accepted message exactly once, byte for byte.
    let (mut plain, unnamed) = maildir_by_queue_id(&app.maildir(PLAIN));
    for name in unnamed {
        findings.add("", "plain: a file named unlike a delivery", name);
    }
    for (m, r) in messages.iter().zip(&replies) {
        let Some(id) = r.queue_id() else { continue };
        if !Replies::ok(&r.rcpt_plain, "250") {
            continue;
        }
        match plain.remove(&id).unwrap_or_default().as_slice() {
            [] => findings.add(
                &m.file,
                "plain: accepted, not delivered",
                format!("queue id {id}"),
            ),
            [(_, data)] => match check_maildir_copy(m, PLAIN, &id, data) {
                Err((kind, detail)) => findings.add(&m.file, format!("plain: {kind}"), detail),
                Ok(score) => {
                    bands.add(band(score), m.folder);
                    let e = spammy.entry(m.folder).or_default();
                    e.0 += 1;
                    e.1 += usize::from(score.is_some_and(|s| s >= 5.0));
                }
            },
            copies => findings.add(
                &m.file,
                "plain: delivered more than once",
                format!(
                    "{} copies: {:?}",
                    copies.len(),
                    copies.iter().map(|c| &c.0).collect::<Vec<_>>()
                ),
            ),
        }
    }
    for (id, copies) in plain {
        findings.add(
            "",
            "plain: a delivery of no acknowledged message",
            format!(
                "queue id {id}: {:?}",
                copies.iter().map(|c| &c.0).collect::<Vec<_>>()
            ),
        );
    }

    // The challenge-response mailbox: every accepted message held or
    // delivered, exactly once.
    let held = app.store.list_held(Some(cr_id), None).await.unwrap();
    let mut held_by_id = HashMap::<String, Vec<&HeldSummary>>::new();
    for h in &held {
        held_by_id.entry(h.queue_id.clone()).or_default().push(h);
    }
    let (mut cr_files, unnamed) = maildir_by_queue_id(&app.maildir(CR));
    for name in unnamed {
        findings.add("", "cr: a file named unlike a delivery", name);
    }
    let mut tally = Tally::default();
    let mut challenge_folder = HashMap::<i64, &'static str>::new();
    let mut challenge_failed = BTreeMap::<String, (usize, String)>::new();
    for (m, r) in messages.iter().zip(&replies) {
        let Some(id) = r.queue_id() else {
            let row = match m.expect {
                Expect::Accepted => "not accepted (unexpected refusal)",
                _ => "not accepted (expected refusal)",
            };
            tally.add(row, m.folder);
            continue;
        };
        if !Replies::ok(&r.rcpt_cr, "250") {
            tally.add("not accepted for cr (RCPT refused)", m.folder);
            continue;
        }
        let rows = held_by_id.remove(&id).unwrap_or_default();
        let files = cr_files.remove(&id).unwrap_or_default();
        match (rows.as_slice(), files.as_slice()) {
            ([h], []) => {
                tally.add(format!("held: {}", h.reason), m.folder);
                if let Some(why) = automated_why(&h.reason_detail) {
                    tally.add(format!("held: automated: {why}"), m.folder);
                }
                if h.reason == "unknown-sender"
                    && let Some(c) = h.challenge_id
                {
                    challenge_folder.insert(c, m.folder);
                }
                if h.reason == "challenge-failed" {
                    let e = challenge_failed
                        .entry(h.reason_detail.clone())
                        .or_insert((0, m.file.clone()));
                    e.0 += 1;
                }
                match app.store.held_data(h.id).await.unwrap() {
                    None => findings.add(&m.file, "cr: held row without data", format!("{h:?}")),
                    Some(data) => match strip_ours(&data, &id, b"\r\n") {
                        Err(why) => {
                            findings.add(&m.file, "cr: held copy lacks our header fields", why)
                        }
                        Ok((body, _)) if body != as_stored(&m.crlf).as_slice() => findings.add(
                            &m.file,
                            "cr: held copy differs from what was sent",
                            first_difference(body, &as_stored(&m.crlf)),
                        ),
                        Ok(_) => {}
                    },
                }
            }
            ([], [(_, data)]) => {
                tally.add("delivered (spam score below the bypass score)", m.folder);
                if let Err((kind, detail)) = check_maildir_copy(m, CR, &id, data) {
                    findings.add(&m.file, format!("cr: {kind}"), detail);
                }
            }
            ([], []) => {
                tally.add("neither held nor delivered", m.folder);
                findings.add(
                    &m.file,
                    "cr: accepted, neither held nor delivered",
                    format!("queue id {id}, sender <{}>", m.sender),
                );
            }
            (rows, files) => {
                tally.add("held or delivered more than once", m.folder);
                findings.add(
                    &m.file,
                    "cr: held or delivered more than once",
                    format!(
                        "{} held rows ({:?}), {} Maildir files",
                        rows.len(),
                        rows.iter().map(|h| &h.reason).collect::<Vec<_>>(),
                        files.len()
                    ),
                );
            }
        }
    }
    for (id, rows) in held_by_id {
        findings.add(
            "",
            "cr: held, but no acknowledged message",
            format!("queue id {id}: {rows:?}"),
        );
    }
    for (id, files) in cr_files {
        findings.add(
            "",
            "cr: a delivery of no acknowledged message",
            format!(
                "queue id {id}: {:?}",
                files.iter().map(|c| &c.0).collect::<Vec<_>>()
            ),
        );
    }

    // The challenges go out (to the recording transport: never further).
    let mut rounds = 0;
    while app.outbound.run_once().await.unwrap() > 0 {
        rounds += 1;
        assert!(rounds < 1000, "the outbound queue does not drain");
    }
    let outbound = app.store.list_outbound().await.unwrap();
    let recorded = app.outbox().len();
    let sent = outbound
        .iter()
        .filter(|o| o.state == OutboundState::Sent)
        .count();
    if recorded != sent {
        findings.add(
            "",
            "outbound: transport and queue disagree",
            format!("{recorded} mails recorded, {sent} rows sent"),
        );
    }
    for o in &outbound {
        if o.state != OutboundState::Sent {
            findings.add(
                "",
                format!("outbound: a {} mail not sent", o.kind),
                format!("{o:?}"),
            );
        }
        if o.kind != "verify" {
            findings.add("", format!("outbound: a {} mail", o.kind), format!("{o:?}"));
            continue;
        }
        match o.challenge_id.and_then(|c| challenge_folder.get(&c)) {
            Some(folder) => tally.add("challenges sent", folder),
            None => findings.add(
                "",
                "outbound: a challenge for no message held as unknown-sender",
                format!("{o:?}"),
            ),
        }
    }

    let stop = Instant::now();
    let mut app = app;
    app.begin_shutdown();
    app.stopped().await;
    let stopped_in = stop.elapsed();
    // The logs, once the server has stopped: no panic, no error, no 451.
    let mainlog = app.mainlog();
    for line in mainlog.lines() {
        let lower = line.to_lowercase();
        if lower.contains("temporarily rejected") || lower.contains("panic") {
            findings.add("", "main log: trouble", line);
        } else if line.contains(" == ") || line.contains(" ** ") {
            findings.add("", "main log: a deferred or failed delivery", line);
        }
    }
    let traced = tracing_log.text();
    // The capture itself works: it saw the server start and stop.
    if !traced.contains("SMTP listening") || !traced.contains("stopped") {
        findings.add(
            "",
            "tracing: the capture saw nothing of the server",
            format!("{traced:?}"),
        );
    }
    for line in tracing_log.errors_and_panics() {
        findings.add("", "tracing: an ERROR line or a panic", line);
    }
    for line in traced
        .lines()
        .filter(|l| l.contains("temporarily rejected"))
    {
        findings.add("", "tracing: temporarily rejected", line);
    }

    let accepted = replies.iter().filter(|r| r.accepted()).count();
    let expected_refusals = messages
        .iter()
        .filter(|m| m.expect != Expect::Accepted)
        .count();
    let total = started.elapsed();
    println!(
        "\n{}: {} corpus messages replayed over {CONNECTIONS} connections in {sent_in:.1?} \
         ({:.0}/s); {accepted} accepted, {expected_refusals} to be refused by the rules; \
         {} held for {CR}; {} outbound mails; {} lines of tracing output; shutdown \
         {stopped_in:.1?}; whole test {total:.1?}",
        backend_name(backend),
        messages.len(),
        messages.len() as f64 / sent_in.as_secs_f64(),
        held.len(),
        outbound.len(),
        traced.lines().count(),
    );
    println!(
        "\n{}",
        tally.table(&format!("{} — {CR}", backend_name(backend)))
    );
    if spamd == Spamd::On {
        println!(
            "\n{}",
            bands.table(&format!(
                "{} — spamd score, default bands",
                backend_name(backend)
            ))
        );
        // spamd tells spam from ham: most spam is held without a
        // challenge, hardly any easy ham is.
        let share = |folder: &str| {
            let (all, high) = spammy.get(folder).copied().unwrap_or_default();
            high as f64 / all.max(1) as f64
        };
        if share("spam-1") < 0.5 || share("easy-ham-1") > 0.02 {
            findings.add(
                "",
                "spamd: scores do not tell spam from ham",
                format!(
                    "{:.0}% of spam-1 and {:.1}% of easy-ham-1 scored 5 or more",
                    share("spam-1") * 100.0,
                    share("easy-ham-1") * 100.0
                ),
            );
        }
    }
    if !challenge_failed.is_empty() {
        println!("challenge-failed, by detail:");
        for (detail, (n, example)) in &challenge_failed {
            println!("  {n:5} × {detail}\n          e.g. {example}");
        }
    }
    let warnings: Vec<&str> = traced
        .lines()
        .filter(|l| l.trim_start().starts_with("WARN"))
        .collect();
    if !warnings.is_empty() {
        println!("tracing output at WARN level ({}):", warnings.len());
        for w in warnings.iter().take(20) {
            println!("  {w}");
        }
    }
    if !findings.0.is_empty() {
        let report = format!(
            "{}: {} findings in {} messages and the run, by kind:\n{}\n\nevery finding:\n{}",
            backend_name(backend),
            findings.0.len(),
            {
                let mut files: Vec<_> = findings
                    .0
                    .iter()
                    .map(|f| f.file.as_str())
                    .filter(|f| !f.is_empty())
                    .collect();
                files.sort();
                files.dedup();
                files.len()
            },
            findings.by_kind(),
            findings.listing()
        );
        println!(
            "\n{}: unexpected findings, by kind:\n{}",
            backend_name(backend),
            findings.by_kind()
        );
        panic!("{report}");
    }
}

// --- the test's own helpers -----------------------------------------------------

#[test]
fn the_envelope_sender_is_the_bare_address_of_return_path_else_from() {
    let cases = [
        (
            "Return-Path: <a@b.example>\nFrom: c@d.example\n",
            "a@b.example",
        ),
        ("Return-Path: whisper@oz.net\n", "whisper@oz.net"),
        ("Return-Path: <>\nFrom: c@d.example\n", ""),
        ("return-path:\n <folded@b.example>\n", "folded@b.example"),
        ("From: \"Doe, <John>\" <john@d.example>\n", "john@d.example"),
        ("From: whisper@oz.net (David <LeBlanc>)\n", "whisper@oz.net"),
        ("From: \"bob\"@example.org\n", "\"bob\"@example.org"),
        ("From: a@b.example, c@d.example\n", "a@b.example"),
        ("Subject: none\n", ""),
        ("Return-Path: <MAILER-DAEMON>\n", "MAILER-DAEMON"),
        // Only the header section counts.
        ("Subject: x\n\nReturn-Path: <a@b.example>\n", ""),
    ];
    for (headers, want) in cases {
        let got = envelope_sender(header_block(headers.as_bytes()));
        assert_eq!(got, want, "{headers:?}");
    }
    assert!(sender_without_domain("MAILER-DAEMON"));
    assert!(sender_without_domain("bob@"));
    assert!(!sender_without_domain(""));
    assert!(!sender_without_domain("a@b.example"));
}

#[test]
fn a_corpus_file_goes_on_the_wire_without_its_mbox_line_in_crlf_dot_stuffed() {
    let raw = b"From a@b.example  Thu Aug 22 12:36:23 2002\nReturn-Path: <a@b.example>\n\
                Subject: x\n\n.hidden\nend";
    let m = Message::prepare("easy-ham-1", "easy-ham-1/x".into(), raw);
    assert_eq!(m.sender, "a@b.example");
    assert_eq!(
        m.crlf,
        b"Return-Path: <a@b.example>\r\nSubject: x\r\n\r\n.hidden\r\nend\r\n"
    );
    assert_eq!(
        m.wire,
        b"Return-Path: <a@b.example>\r\nSubject: x\r\n\r\n..hidden\r\nend\r\n.\r\n"
    );
    assert_eq!(m.expect, Expect::Accepted);
    assert!(!m.eight_bit);
    let bare = Message::prepare("spam-1", "spam-1/x".into(), b"Subject: x\n\na\rb\n");
    assert_eq!(bare.expect, Expect::BareNewline);
    let nodomain = Message::prepare("spam-1", "spam-1/y".into(), b"Return-Path: <x>\n\nb\n");
    assert_eq!(nodomain.expect, Expect::SenderWithoutDomain);
    assert!(has_bare_newline(b"a\r\nb\n"));
    assert!(has_bare_newline(b"\n"));
    assert!(!has_bare_newline(b"a\r\nb\r\n"));
}

#[test]
fn a_maildir_copy_is_checked_byte_for_byte_after_the_added_headers() {
    let m = Message::prepare(
        "easy-ham-1",
        "easy-ham-1/x".into(),
        b"Return-Path: <A@B.example>\nSubject: x\n\nbody\n",
    );
    let file = |body: &str| {
        format!(
            "Return-Path: <A@b.example>\nDelivered-To: plain@example.test\n\
             Authentication-Results: mx.example.test;\n\tspf=none smtp.mailfrom=A@b.example;\n\
             \tdkim=none;\n\tdmarc=none header.from=b.example;\n\tarc=none\n\
             X-Spam-Score: 7.3\nX-Spam-Status: Yes, score=7.3 required=5.0 tests=A,\n\tB\n\
             Received: from corpus.client.example ([127.0.0.1])\n\tby mx.example.test (boxtrap) \
             with ESMTP id Q1-x-00;\n\tFri, 27 Nov 2026 14:05:53 +0000\n{body}"
        )
        .into_bytes()
    };
    let whole = "Return-Path: <A@B.example>\nSubject: x\n\nbody\n";
    assert_eq!(
        check_maildir_copy(&m, PLAIN, "Q1-x-00", &file(whole)),
        Ok(Some(7.3))
    );
    // Without our Authentication-Results, the header lines are wrong.
    let no_results = String::from_utf8(file(whole))
        .unwrap()
        .replace("Authentication-Results: mx.example.test;", "X-Other: x");
    let (kind, _) = check_maildir_copy(&m, PLAIN, "Q1-x-00", no_results.as_bytes()).unwrap_err();
    assert_eq!(kind, "header lines added by boxtrap are wrong");
    let (kind, detail) =
        check_maildir_copy(&m, PLAIN, "Q1-x-00", &file(&whole.replace("body", "bodY")))
            .unwrap_err();
    assert_eq!(kind, "the message differs from what was sent");
    assert!(detail.contains("first difference at byte"), "{detail}");
    let (kind, _) =
        check_maildir_copy(&m, PLAIN, "Q1-x-00", &file(&whole[..whole.len() - 1])).unwrap_err();
    assert_eq!(kind, "the message differs from what was sent");
    let (kind, _) = check_maildir_copy(&m, PLAIN, "Q2-x-00", &file(whole)).unwrap_err();
    assert_eq!(kind, "header lines added by boxtrap are wrong");
    let (kind, _) = check_maildir_copy(&m, CR, "Q1-x-00", &file(whole)).unwrap_err();
    assert_eq!(kind, "header lines added by boxtrap are wrong");
    assert_eq!(
        queue_id_of_file("1795788353.1xWwob-fBC8Uw-00_1.mx.example.test,S=467"),
        Some("1xWwob-fBC8Uw-00")
    );
}

#[test]
fn the_log_capture_sees_errors_and_panics_on_the_runtime_threads() {
    let log = run_capturing_log("corpus-capture-check", 1, "info", |log| async move {
        tracing::info!("on the calling thread");
        tokio::spawn(async { tracing::error!("on a worker") })
            .await
            .unwrap();
        tokio::task::spawn_blocking(|| tracing::warn!("on the blocking pool"))
            .await
            .unwrap();
        let panicked = tokio::spawn(async {
            panic!("a deliberate panic, to check the capture sees it");
        })
        .await;
        assert!(panicked.is_err());
        log
    });
    let text = log.text();
    assert!(text.contains("on the calling thread"), "{text}");
    assert!(text.contains("on the blocking pool"), "{text}");
    let errors = log.errors_and_panics();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("on a worker"), "{errors:?}");
    assert!(
        errors[1].starts_with("PANIC") && errors[1].contains("a deliberate panic"),
        "{errors:?}"
    );
}
