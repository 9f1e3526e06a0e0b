//! A client for SpamAssassin's spamd, speaking the spamc protocol
//! (SPAMC/1.5) over TCP.
//!
//! The protocol (SpamAssassin's `spamd/PROTOCOL`): the client sends a
//! request line, headers, a blank line and the message, then shuts down its
//! side of the connection:
//!
//! ```text
//! REPORT SPAMC/1.5\r\n
//! Content-length: <bytes of the message>\r\n
//! User: <name>\r\n                       (optional)
//! \r\n
//! <the message>
//! ```
//!
//! spamd answers a status line (`SPAMD/<version> <code> <text>`, code 0
//! `EX_OK`, otherwise a `sysexits.h` code and nothing more), headers, a
//! blank line and a body, then closes:
//!
//! ```text
//! SPAMD/1.1 0 EX_OK\r\n
//! Content-length: 973\r\n
//! Spam: True ; 1000.0 / 5.0\r\n          (is spam ; score / required)
//! \r\n
//! <the report>
//! ```
//!
//! For `REPORT` the body is the report, whose table of rules
//! (` pts rule name   description` / `---- ----...` / `1000 GTUBE  BODY: ...`)
//! gives each rule's points; description lines that wrap are indented past
//! the name. `PING` (no headers, no body) is answered `SPAMD/1.5 0 PONG`.
//! Unknown headers are ignored, both ways.

use super::{SkipReason, SpamCheck, SpamSource, SpamVerdict};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The protocol version this client speaks.
pub const PROTOCOL: &str = "SPAMC/1.5";

/// Longest answer read from spamd (a report is a few KiB); more is garbage.
pub const MAX_ANSWER: usize = 256 * 1024;

/// Why spamd gave no usable answer. Each names spamd's address.
#[derive(Debug, thiserror::Error)]
pub enum SpamdError {
    /// The TCP connection failed (nothing listens: refused at once).
    #[error("cannot connect to spamd at {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    /// Sending the request or reading the answer failed.
    #[error("talking to spamd at {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    /// The whole exchange took longer than `after` (the client's timeout).
    #[error("spamd at {addr} did not answer within {}", crate::config::HumanDuration(*after))]
    Timeout { addr: SocketAddr, after: Duration },
    /// spamd answered with a non-zero `sysexits.h` code, e.g. 76
    /// (`EX_PROTOCOL`) for a request it could not parse.
    #[error("spamd at {addr} refused the message: code {code} {message}")]
    Refused {
        addr: SocketAddr,
        code: u32,
        message: String,
    },
    /// Not the spamc protocol, or not what was asked for.
    #[error("spamd at {addr} answered garbage: {what}")]
    Garbage { addr: SocketAddr, what: String },
}

/// A spamd at one address. Each call opens its own connection.
#[derive(Debug, Clone)]
pub struct SpamdClient {
    /// spamd's TCP address.
    pub addr: SocketAddr,
    /// Most time one call may take, connecting, sending and the answer
    /// together.
    pub timeout: Duration,
    /// Messages larger than this (bytes) are not sent.
    pub max_size: u64,
    /// Sent as the `User:` header when set.
    pub user: Option<String>,
}

impl SpamdClient {
    /// A client for `addr` with spamc's defaults: no `User:`, a 500K
    /// message limit, and `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> SpamdClient {
        SpamdClient {
            addr,
            timeout,
            max_size: 500 * 1024,
            user: None,
        }
    }

    /// Scores `message` (never an error: see [`SpamCheck`]). A message
    /// larger than `max_size` is [`SpamCheck::Skipped`] without connecting.
    pub async fn check(&self, message: &[u8]) -> SpamCheck {
        let size = message.len() as u64;
        if size > self.max_size {
            return SpamCheck::Skipped(SkipReason::TooBig {
                size,
                max_size: self.max_size,
            });
        }
        match self.report(message).await {
            Ok(v) => SpamCheck::Scored(v),
            Err(e) => SpamCheck::Unavailable(e),
        }
    }

    /// Sends `message` with `REPORT` and reads the score, the threshold
    /// and the rules that hit. Ignores `max_size`.
    pub async fn report(&self, message: &[u8]) -> Result<SpamVerdict, SpamdError> {
        let mut request = format!("REPORT {PROTOCOL}\r\nContent-length: {}\r\n", message.len());
        if let Some(user) = &self.user {
            request.push_str(&format!("User: {user}\r\n"));
        }
        request.push_str("\r\n");
        let answer = self.exchange(request.as_bytes(), message).await?;
        parse_report(&answer).map_err(|what| self.garbage_or_refused(what))
    }

    /// Asks spamd whether it is alive (`PING`, answered `PONG`).
    pub async fn ping(&self) -> Result<(), SpamdError> {
        let request = format!("PING {PROTOCOL}\r\n\r\n");
        let answer = self.exchange(request.as_bytes(), b"").await?;
        let parsed = parse_answer(&answer).map_err(|w| self.garbage_or_refused(w))?;
        if parsed.text != "PONG" {
            return Err(self.garbage_or_refused(Problem::Garbage(format!(
                "{:?} instead of PONG",
                String::from_utf8_lossy(first_line(&answer))
            ))));
        }
        Ok(())
    }

    fn garbage_or_refused(&self, p: Problem) -> SpamdError {
        match p {
            Problem::Refused { code, message } => SpamdError::Refused {
                addr: self.addr,
                code,
                message,
            },
            Problem::Garbage(what) => SpamdError::Garbage {
                addr: self.addr,
                what,
            },
        }
    }

    /// Connects, sends `head` and `body`, shuts down the sending side and
    /// reads the answer: to the end of its `Content-length` body, or until
    /// spamd closes. All within `timeout`.
    async fn exchange(&self, head: &[u8], body: &[u8]) -> Result<Vec<u8>, SpamdError> {
        let addr = self.addr;
        let io = |source| SpamdError::Io { addr, source };
        let talk = async {
            let mut conn = TcpStream::connect(addr)
                .await
                .map_err(|source| SpamdError::Connect { addr, source })?;
            conn.write_all(head).await.map_err(io)?;
            conn.write_all(body).await.map_err(io)?;
            conn.shutdown().await.map_err(io)?;
            let mut answer = Vec::with_capacity(4096);
            loop {
                let mut buf = [0u8; 8192];
                let n = conn.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok(answer);
                }
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_ANSWER {
                    return Err(SpamdError::Garbage {
                        addr,
                        what: format!("an answer longer than {MAX_ANSWER} bytes"),
                    });
                }
                if answer_complete(&answer) {
                    return Ok(answer);
                }
            }
        };
        match tokio::time::timeout(self.timeout, talk).await {
            Ok(result) => result,
            Err(_) => Err(SpamdError::Timeout {
                addr,
                after: self.timeout,
            }),
        }
    }
}

/// What was wrong with an answer.
#[derive(Debug, PartialEq)]
enum Problem {
    Refused { code: u32, message: String },
    Garbage(String),
}

fn first_line(answer: &[u8]) -> &[u8] {
    let end = answer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(answer.len());
    let line = &answer[..end.min(200)];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The end of the header block (`\r\n\r\n`, or `\n\n` from a lax peer) and
/// where the body starts.
fn header_end(answer: &[u8]) -> Option<(usize, usize)> {
    let crlf = answer.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = answer.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l + 1 < c => Some((l, l + 2)),
        (Some(c), _) => Some((c, c + 4)),
        (None, Some(l)) => Some((l, l + 2)),
        (None, None) => None,
    }
}

/// Whether `answer` holds a whole answer: a failure's status line, a
/// `PONG`, or headers and as many body bytes as `Content-length` says.
fn answer_complete(answer: &[u8]) -> bool {
    if answer.contains(&b'\n') {
        let line = String::from_utf8_lossy(first_line(answer));
        let mut words = line.split_whitespace().skip(1);
        let code = words.next();
        if code.is_some_and(|c| c != "0") || words.next() == Some("PONG") {
            return true;
        }
    }
    let Some((end, body)) = header_end(answer) else {
        return false;
    };
    let length = String::from_utf8_lossy(&answer[..end])
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        });
    length.is_some_and(|n| answer.len() - body >= n)
}

/// An answer taken apart.
struct Answer<'a> {
    /// The status text (`EX_OK`, `PONG`).
    text: String,
    /// (name, value), in order.
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

/// Takes apart an answer whose status code is 0 (`EX_OK`).
fn parse_answer(answer: &[u8]) -> Result<Answer<'_>, Problem> {
    if answer.is_empty() {
        return Err(Problem::Garbage("an empty answer".into()));
    }
    let line = String::from_utf8_lossy(first_line(answer)).into_owned();
    let mut words = line.splitn(3, ' ');
    let version = words.next().unwrap_or("");
    let code = words.next().and_then(|c| c.parse::<u32>().ok());
    let text = words.next().unwrap_or("").trim().to_owned();
    let Some(code) = code.filter(|_| version.starts_with("SPAMD/")) else {
        return Err(Problem::Garbage(format!(
            "{line:?} is not a spamd status line"
        )));
    };
    if code != 0 {
        return Err(Problem::Refused {
            code,
            message: text,
        });
    }
    let (head, body) = match header_end(answer) {
        Some((end, body)) => (&answer[..end], &answer[body..]),
        // A bare status line (PONG).
        None => (answer, &answer[answer.len()..]),
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    Ok(Answer {
        text,
        headers,
        body,
    })
}

/// Reads a `Spam: True ; 7.3 / 5.0` value as (is spam, score, required).
fn parse_spam_header(value: &str) -> Option<(bool, f64, f64)> {
    let (flag, numbers) = value.split_once(';')?;
    let is_spam = match flag.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => true,
        "false" | "no" => false,
        _ => return None,
    };
    let (score, required) = numbers.split_once('/')?;
    let score: f64 = score.trim().parse().ok()?;
    let required: f64 = required.trim().parse().ok()?;
    (score.is_finite() && required.is_finite()).then_some((is_spam, score, required))
}

fn rule_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The rules of a report's table: the lines after the `---- ----` rule
/// under ` pts rule name`, each `<points> <NAME> <description>`, until a
/// blank line. Lines indented more than the points column are wrapped
/// descriptions. A report without the table (a changed `report`
/// template) gives no rules.
fn parse_rules(report: &str) -> Vec<(String, f64)> {
    let mut rules = Vec::new();
    let mut in_table = false;
    for line in report.lines() {
        let line = line.trim_end_matches('\r');
        if !in_table {
            in_table = line.starts_with("----") && line.contains(" ---");
            continue;
        }
        if line.trim().is_empty() {
            break;
        }
        let indent = line.len() - line.trim_start().len();
        if indent > 4 {
            continue;
        }
        let mut words = line.split_whitespace();
        let points = words.next().and_then(|p| p.parse::<f64>().ok());
        let name = words.next().filter(|n| rule_name_ok(n));
        if let (Some(points), Some(name)) = (points.filter(|p| p.is_finite()), name) {
            rules.push((name.to_owned(), points));
        }
    }
    rules
}

/// Reads the answer to `REPORT`.
fn parse_report(answer: &[u8]) -> Result<SpamVerdict, Problem> {
    let Answer { headers, body, .. } = parse_answer(answer)?;
    let spam = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("spam"))
        .ok_or_else(|| Problem::Garbage("no Spam: header".into()))?;
    let (is_spam, score, required) = parse_spam_header(&spam.1).ok_or_else(|| {
        Problem::Garbage(format!("Spam: {:?} is not \"True ; 7.3 / 5.0\"", spam.1))
    })?;
    Ok(SpamVerdict {
        score,
        required,
        is_spam,
        rules: parse_rules(&String::from_utf8_lossy(body)),
        source: SpamSource::Spamd,
    })
}

#[cfg(test)]
pub(super) mod parse_tests {
    use super::*;

    /// spamd 4.0.1's answer to `REPORT` for a corpus spam (captured), with
    /// a long rule name and wrapped descriptions.
    pub const REPORT: &str = "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 9.4 / 5.0\r\n\r\n\
Spam detection software, running on the system \"vm\",\n\
has identified this incoming email as possible spam.\n\
\n\
Content analysis details:   (9.4 points, 5.0 required)\n\
\n\
 pts rule name              description\n\
---- ---------------------- --------------------------------------------------\n\
 2.4 FSL_HELO_NON_FQDN_1    No description available.\n\
 0.3 INVALID_DATE_TZ_ABSURD Invalid Date: header (timezone does not exist)\n\
 0.2 FREEMAIL_ENVFROM_END_DIGIT Envelope-from freemail username ends in\n\
                            digit\n\
                            [12a1mailbot1(at)web.de]\n\
 0.0 FREEMAIL_FROM          Sender email is commonly abused enduser mail provider\n\
-0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n\
 2.4 RDNS_NONE              Delivered to internal network by a host with no rDNS\n\
1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n\
-1.9 BAYES_00               BODY: Bayes spam probability is 0 to 1%\n\
\n";

    #[test]
    fn a_report_gives_the_score_and_every_rule_with_its_points() {
        let v = parse_report(REPORT.as_bytes()).unwrap();
        assert_eq!((v.is_spam, v.score, v.required), (true, 9.4, 5.0));
        assert_eq!(v.source, SpamSource::Spamd);
        let rules: Vec<(&str, f64)> = v.rules.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        assert_eq!(
            rules,
            [
                ("FSL_HELO_NON_FQDN_1", 2.4),
                ("INVALID_DATE_TZ_ABSURD", 0.3),
                ("FREEMAIL_ENVFROM_END_DIGIT", 0.2),
                ("FREEMAIL_FROM", 0.0),
                ("NO_RELAYS", -0.0),
                ("RDNS_NONE", 2.4),
                ("GTUBE", 1000.0),
                ("BAYES_00", -1.9),
            ]
        );
    }

    #[test]
    fn a_report_without_the_table_gives_the_score_and_no_rules() {
        let v =
            parse_report(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.5 / 6.5\r\n\r\nsome template\n")
                .unwrap();
        assert_eq!((v.is_spam, v.score, v.required), (false, -0.5, 6.5));
        assert!(v.rules.is_empty());
    }

    #[test]
    fn refusals_and_garbage_are_told_apart() {
        assert_eq!(
            parse_report(b"SPAMD/1.0 76 Bad header line: (EOF)\r\n").unwrap_err(),
            Problem::Refused {
                code: 76,
                message: "Bad header line: (EOF)".into()
            }
        );
        for garbage in [
            &b""[..],
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\n\r\nabc",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: maybe ; 1 / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7 5\r\n\r\n",
        ] {
            assert!(
                matches!(parse_report(garbage), Err(Problem::Garbage(_))),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn an_answer_is_complete_at_its_content_length_or_status() {
        assert!(!answer_complete(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\n"
        ));
        assert!(!answer_complete(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\n\r\nabc"
        ));
        assert!(answer_complete(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\n\r\nabcde"
        ));
        assert!(answer_complete(b"SPAMD/1.5 0 PONG\r\n"));
        assert!(answer_complete(b"SPAMD/1.0 76 Bad header line\r\n"));
        // Without Content-length, only the end of the connection ends it.
        assert!(!answer_complete(
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n\r\n"
        ));
    }
}
