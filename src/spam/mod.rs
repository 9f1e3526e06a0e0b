//! The spam score of a message: the built-in GTUBE test and, when
//! `[spamd] address` is set, SpamAssassin's `spamd` asked over the spamc
//! protocol ([`spamd`]).
//!
//! Owns: the score ([`SpamVerdict`], with the rules that made it up so the
//! owner can see why), the outcome of asking ([`SpamCheck`]: scored,
//! skipped, or spamd unavailable), the `X-Spam-Score`/`X-Spam-Status`
//! header lines (and removing those a sender put in the message:
//! [`strip_spam_headers`]), the one-line summary kept as the held
//! message's reason, and the `[spam]` and `[spamd]` config sections.
//!
//! Does not own: what a score does. The SMTP accept path refuses at
//! [`SpamConfig::reject_score`], and the policy compares the score with the
//! mailbox's bands. A spamd that is down, slow or answers garbage never
//! fails a transaction: the caller gets [`SpamCheck::Unavailable`] with the
//! reason, logs it, and the mail flows unscored.

pub mod spamd;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

use crate::config::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use spamd::{SpamdClient, SpamdError};

/// The SpamAssassin test string (GTUBE, "Generic Test for Unsolicited Bulk
/// Email"): a message containing it anywhere scores [`GTUBE_SCORE`].
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The score of a message containing [`GTUBE`], as SpamAssassin gives it.
pub const GTUBE_SCORE: f64 = 1000.0;

/// SpamAssassin's default `required_score`: the threshold reported with a
/// built-in GTUBE score, when spamd was not asked.
pub const DEFAULT_REQUIRED: f64 = 5.0;

/// The port spamd listens on by default, used when `[spamd] address` has
/// none.
pub const SPAMD_PORT: u16 = 783;

/// Where a score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamSource {
    /// The built-in [`GTUBE`] test (spamd was not asked).
    Gtube,
    /// SpamAssassin's spamd.
    Spamd,
}

/// A message's spam score and what made it up.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamVerdict {
    /// The total score, in SpamAssassin points (spamd reports one decimal).
    pub score: f64,
    /// The threshold at or above which the scorer calls the message spam
    /// (spamd's `required_score`; [`DEFAULT_REQUIRED`] for GTUBE).
    pub required: f64,
    /// Whether the scorer called it spam (spamd's `Spam: True`, compared
    /// on the unrounded score).
    pub is_spam: bool,
    /// The rules that hit, as (rule name, points), in the order spamd
    /// listed them. Names are `[A-Za-z0-9_]+`. Points are those spamd's
    /// report printed (one decimal, or whole numbers from 1000 up); rules
    /// worth about 0 (informational) are included.
    pub rules: Vec<(String, f64)>,
    /// Who scored it.
    pub source: SpamSource,
}

/// Why a message was not scored, though nothing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `[spamd] address` is empty: only GTUBE is checked.
    NoSpamd,
    /// The message is larger than `[spamd] max_size` (both in bytes), so it
    /// was not sent (as spamc does with its 500K default).
    TooBig { size: u64, max_size: u64 },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoSpamd => write!(f, "no spamd configured ([spamd] address is empty)"),
            SkipReason::TooBig { size, max_size } => write!(
                f,
                "message of {size} bytes is larger than [spamd] max_size ({max_size} bytes)"
            ),
        }
    }
}

/// The outcome of scoring one message. Never an error that should fail
/// the SMTP transaction: [`SpamCheck::Unavailable`] is for the log.
#[derive(Debug)]
pub enum SpamCheck {
    /// The message was scored.
    Scored(SpamVerdict),
    /// The message was not sent to spamd, by configuration.
    Skipped(SkipReason),
    /// spamd was asked but gave no usable answer (down, too slow, refused
    /// the message or answered garbage); the message is unscored.
    Unavailable(SpamdError),
}

impl SpamCheck {
    /// The verdict, if the message was scored.
    pub fn verdict(&self) -> Option<&SpamVerdict> {
        match self {
            SpamCheck::Scored(v) => Some(v),
            _ => None,
        }
    }

    /// One line for the stored reason or the log: the verdict's
    /// [`SpamVerdict::summary`], else `spam score not checked: <why>`.
    pub fn summary(&self) -> String {
        match self {
            SpamCheck::Scored(v) => v.summary(),
            SpamCheck::Skipped(why) => format!("spam score not checked: {why}"),
            SpamCheck::Unavailable(why) => format!("spam score not checked: {why}"),
        }
    }
}

/// Most rules [`SpamVerdict::summary`] names.
const SUMMARY_RULES: usize = 5;

/// Header lines are folded before they pass this many characters
/// (RFC 5322 §2.1.1's recommended 78).
const FOLD_AT: usize = 78;

/// A score as SpamAssassin prints it: one decimal, and never "-0.0".
fn points(x: f64) -> String {
    let s = format!("{x:.1}");
    if s == "-0.0" { "0.0".to_owned() } else { s }
}

impl SpamVerdict {
    /// The verdict for a message containing [`GTUBE`].
    pub fn gtube() -> SpamVerdict {
        SpamVerdict {
            score: GTUBE_SCORE,
            required: DEFAULT_REQUIRED,
            is_spam: true,
            rules: vec![("GTUBE".to_owned(), GTUBE_SCORE)],
            source: SpamSource::Gtube,
        }
    }

    /// The header lines to add to the message, each ending in CRLF, in
    /// SpamAssassin's own wording:
    ///
    /// ```text
    /// X-Spam-Score: 7.3
    /// X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99,URIBL_BLOCK
    /// ```
    ///
    /// `tests=none` when no rule hit; a long rule list is folded after a
    /// comma onto lines starting with a tab, as SpamAssassin folds it.
    /// The caller first removes those the sender put in the message
    /// ([`strip_spam_headers`]).
    pub fn header_lines(&self) -> String {
        let score = points(self.score);
        let mut status = format!(
            "X-Spam-Status: {}, score={score} required={} tests=",
            if self.is_spam { "Yes" } else { "No" },
            points(self.required)
        );
        if self.rules.is_empty() {
            status.push_str("none");
        }
        let mut line_len = status.len();
        for (i, (name, _)) in self.rules.iter().enumerate() {
            let piece = if i + 1 < self.rules.len() {
                format!("{name},")
            } else {
                name.clone()
            };
            if i > 0 && line_len + piece.len() > FOLD_AT {
                status.push_str("\r\n\t");
                line_len = 1;
            }
            status.push_str(&piece);
            line_len += piece.len();
        }
        format!("X-Spam-Score: {score}\r\n{status}\r\n")
    }

    /// One line for the held message's stored reason:
    /// `spam score 7.3 (BAYES_99 3.5, URIBL_BLOCK 2.0, ...)`: the rules
    /// worth the most points first (at most five, then `...`), leaving out
    /// those worth 0.0; just `spam score 0.0` when none is left.
    pub fn summary(&self) -> String {
        let mut rules: Vec<&(String, f64)> = self
            .rules
            .iter()
            .filter(|(_, p)| points(*p) != "0.0")
            .collect();
        rules.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let mut out = format!("spam score {}", points(self.score));
        if rules.is_empty() {
            return out;
        }
        let listed: Vec<String> = rules
            .iter()
            .take(SUMMARY_RULES)
            .map(|(name, p)| format!("{name} {}", points(*p)))
            .collect();
        out.push_str(" (");
        out.push_str(&listed.join(", "));
        if rules.len() > SUMMARY_RULES {
            out.push_str(", ...");
        }
        out.push(')');
        out
    }
}

/// The header fields SpamAssassin adds, which [`strip_spam_headers`]
/// removes from arriving mail (compared case-insensitively). Other
/// `X-Spam-*` fields (`X-Spam-Arrest`, a challenge-response system's) are
/// not ours and stay.
pub const SPAM_HEADERS: &[&str] = &[
    "X-Spam-Score",
    "X-Spam-Status",
    "X-Spam-Flag",
    "X-Spam-Level",
    "X-Spam-Report",
    "X-Spam-Checker-Version",
];

/// The message without the [`SPAM_HEADERS`] fields it arrived with, each
/// with its folded continuation lines: a sender must not be able to write
/// `X-Spam-Status: No` into the mailbox next to ours. Only the header
/// section is looked at; every other field, the blank line and the body
/// are kept byte for byte (lines may end in CRLF or LF). Borrowed when
/// nothing was removed.
pub fn strip_spam_headers(message: &[u8]) -> Cow<'_, [u8]> {
    let line_end = |from: usize| {
        message[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| from + i + 1)
    };
    let ours = |field: &[u8]| {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return false;
        };
        let name = field[..colon].trim_ascii_end();
        SPAM_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut removed = false;
    let mut pos = 0;
    while pos < message.len() {
        let first = line_end(pos);
        if matches!(&message[pos..first], b"\r\n" | b"\n") {
            break;
        }
        let mut end = first;
        while end < message.len() && matches!(message[end], b' ' | b'\t') {
            end = line_end(end);
        }
        if ours(&message[pos..end]) {
            if !removed {
                kept.extend_from_slice(&message[..pos]);
                removed = true;
            }
        } else if removed {
            kept.extend_from_slice(&message[pos..end]);
        }
        pos = end;
    }
    if !removed {
        return Cow::Borrowed(message);
    }
    kept.extend_from_slice(&message[pos..]);
    Cow::Owned(kept)
}

/// Whether `message` (header and body, raw bytes) contains [`GTUBE`]
/// anywhere.
pub fn contains_gtube(message: &[u8]) -> bool {
    let first = GTUBE[0];
    let mut rest = message;
    while rest.len() >= GTUBE.len() {
        match rest.iter().position(|&b| b == first) {
            Some(i) if rest.len() - i >= GTUBE.len() => {
                if &rest[i..i + GTUBE.len()] == GTUBE {
                    return true;
                }
                rest = &rest[i + 1..];
            }
            _ => return false,
        }
    }
    false
}

/// Scores messages: GTUBE first (without asking spamd), then spamd if one
/// is configured. Cheap to clone; one per server.
#[derive(Debug, Clone)]
pub struct SpamScorer {
    spamd: Option<SpamdClient>,
}

impl SpamScorer {
    /// A scorer for the `[spamd]` section; errors name the bad key (the
    /// same checks as [`SpamdConfig::validate`]).
    pub fn new(config: &SpamdConfig) -> Result<SpamScorer, String> {
        config.validate()?;
        let spamd = config.socket_addr()?.map(|addr| SpamdClient {
            addr,
            timeout: config.timeout.0,
            max_size: config.max_size.0,
            user: (!config.user.is_empty()).then(|| config.user.clone()),
        });
        Ok(SpamScorer { spamd })
    }

    /// A scorer asking `client`.
    pub fn with_client(client: SpamdClient) -> SpamScorer {
        SpamScorer {
            spamd: Some(client),
        }
    }

    /// A scorer with GTUBE only.
    pub fn gtube_only() -> SpamScorer {
        SpamScorer { spamd: None }
    }

    /// The spamd client, if one is configured.
    pub fn spamd(&self) -> Option<&SpamdClient> {
        self.spamd.as_ref()
    }

    /// Scores `message` (the whole message as it will be stored, header
    /// and body, CRLF line ends). Takes at most the spamd timeout.
    pub async fn check(&self, message: &[u8]) -> SpamCheck {
        if contains_gtube(message) {
            return SpamCheck::Scored(SpamVerdict::gtube());
        }
        match &self.spamd {
            None => SpamCheck::Skipped(SkipReason::NoSpamd),
            Some(client) => client.check(message).await,
        }
    }
}

/// The `[spamd]` section: SpamAssassin's spamd, asked over the spamc
/// protocol at the end of DATA.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamdConfig {
    /// spamd's TCP address, "ip:port" (`127.0.0.1:783`, `[::1]:783`); an
    /// IP without a port means port 783. Empty (the default): spamd is not
    /// asked, and only GTUBE is scored. Host names are refused: no DNS
    /// lookup at DATA time.
    pub address: String,
    /// Most time one message's exchange with spamd may take, connecting,
    /// sending and the answer together; past it the message is unscored
    /// and the log says so. More than 0, at most 5 minutes.
    pub timeout: HumanDuration,
    /// Messages larger than this (bytes) are not sent to spamd and go
    /// unscored, as spamc's 500K default does.
    pub max_size: ByteSize,
    /// Sent as spamd's `User:` header, whose preferences spamd applies
    /// (letters, digits and `._@+-`); empty: not sent.
    pub user: String,
}

impl Default for SpamdConfig {
    fn default() -> Self {
        SpamdConfig {
            address: String::new(),
            timeout: HumanDuration(Duration::from_secs(10)),
            max_size: ByteSize(500 * 1024),
            user: String::new(),
        }
    }
}

/// The longest `[spamd] timeout`: a client waits 10 minutes for the reply
/// to its final dot (RFC 5321 §4.5.3.2.6); spam checking must leave room.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// The largest `[spamd] max_size`.
const MAX_MAX_SIZE: u64 = 256 * 1024 * 1024;

impl SpamdConfig {
    /// spamd's address, or None when `address` is empty. Errors name the
    /// key.
    pub fn socket_addr(&self) -> Result<Option<SocketAddr>, String> {
        let a = self.address.trim();
        if a.is_empty() {
            return Ok(None);
        }
        if let Ok(addr) = a.parse::<SocketAddr>() {
            return Ok(Some(addr));
        }
        let bare = a.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(a).parse::<IpAddr>() {
            return Ok(Some(SocketAddr::new(ip, SPAMD_PORT)));
        }
        Err(format!(
            "spamd.address: {:?} is not an IP address with an optional port, such as \
             \"127.0.0.1:783\" or \"[::1]:783\" (host names are not looked up)",
            self.address
        ))
    }

    /// Refuses a bad value, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        self.socket_addr()?;
        if self.timeout.0.is_zero() || self.timeout.0 > MAX_TIMEOUT {
            return Err(format!(
                "spamd.timeout: {} is not more than 0 and at most 5m",
                self.timeout
            ));
        }
        if self.max_size.0 == 0 || self.max_size.0 > MAX_MAX_SIZE {
            return Err(format!(
                "spamd.max_size: {} is not between 1 byte and 256M (turn spamd off with \
                 address = \"\")",
                self.max_size
            ));
        }
        let user_ok = |c: char| c.is_ascii_alphanumeric() || "._@+-".contains(c);
        if self.user.len() > 255 || !self.user.chars().all(user_ok) {
            return Err(format!(
                "spamd.user: {:?} may only have letters, digits and ._@+- (at most 255)",
                self.user
            ));
        }
        Ok(())
    }
}

/// The `[spam]` section: what the server does with a score, whoever the
/// message is for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamConfig {
    /// A message scoring at or above this (SpamAssassin points) is refused
    /// at the end of DATA with `550 5.7.1`, for every recipient. Default
    /// 15; GTUBE scores 1000, so above 1000 nothing is ever refused.
    pub reject_score: f64,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig { reject_score: 15.0 }
    }
}

impl SpamConfig {
    /// Refuses a bad value, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.reject_score.is_finite() || self.reject_score <= 0.0 {
            return Err(format!(
                "spam.reject_score: {} is not a number above 0",
                self.reject_score
            ));
        }
        Ok(())
    }

    /// Whether `verdict` is refused at the end of DATA.
    pub fn rejects(&self, verdict: &SpamVerdict) -> bool {
        verdict.score >= self.reject_score
    }
}
