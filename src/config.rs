//! Configuration: the TOML file, `BOXTRAP_*` environment overrides and the
//! embedded defaults that make `boxtrap serve` work with no file at all.
//!
//! Every key is documented here and in `config.example.toml`; a test checks
//! the two never drift apart. Unknown keys are refused, naming the key, so a
//! typo never silently falls back to a default.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration, after defaults, file and environment are merged.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite database, Maildirs and logs live unless their own
    /// keys say otherwise. Relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// The name this server gives in its greeting, EHLO reply and
    /// `Received:` headers. Defaults to the machine's host name.
    pub hostname: String,
    pub smtp: SmtpConfig,
    pub web: WebConfig,
    pub database: DatabaseConfig,
    pub delivery: DeliveryConfig,
    /// What a spam score does, server-wide (`[spam]`, see [`crate::spam`]).
    pub spam: crate::spam::SpamConfig,
    /// SpamAssassin's spamd, asked for each message's score (`[spamd]`).
    pub spamd: crate::spam::SpamdConfig,
    pub challenge: ChallengeConfig,
    /// Sender authentication of incoming mail: SPF, DKIM, DMARC, ARC.
    pub auth: crate::auth::AuthConfig,
    pub outbound: OutboundConfig,
    pub log: LogConfig,
    /// The one DNS resolver of the server: outbound MX lookups, DNS
    /// blocklists, SPF, DKIM and DMARC all ask it.
    pub dns: DnsConfig,
    /// DNS blocklists (RFC 5782) the SMTP client's address is looked up in
    /// at the first RCPT, each one `[[dnsbl]]` table.
    pub dnsbl: Vec<DnsblZone>,
    /// DNS allowlists (RFC 5782 §2.1 "DNSWL"): a client listed in any of
    /// them skips every `dnsbl` zone. Each one `[[dnswl]]` table.
    pub dnswl: Vec<DnswlZone>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses the SMTP receiver listens on.
    pub listen: Vec<SocketAddr>,
    /// Largest message accepted, in bytes (a number, or "25M", "512K").
    /// Advertised with the SIZE extension and enforced on the data itself.
    pub max_message_size: ByteSize,
    /// Message data all sessions together may hold in memory, in bytes:
    /// messages being received and messages being stored. When it is
    /// spent, MAIL with a larger `SIZE=` and DATA get `452 4.3.1` (RFC 1870
    /// §6.1) and a transfer that would go over it gets `421 4.3.1`. At
    /// least `max_message_size`. Default: a sixteenth of the machine's
    /// memory (or of the cgroup's memory limit), between 128M and 512M.
    pub max_inflight_data: ByteSize,
    /// Recipients accepted per transaction; further RCPTs get 452 4.5.3.
    pub max_recipients: usize,
    /// Longest command line accepted, including CRLF (RFC 5321 §4.5.3.1.4
    /// sets 512 as the minimum a server must accept).
    pub max_line_length: usize,
    /// Refused commands tolerated per session before the client is
    /// disconnected with 421: unknown, malformed or out-of-sequence commands
    /// and refused recipients alike (as Postfix's `smtpd_hard_error_limit`),
    /// which also stops address harvesting.
    pub max_errors: u32,
    /// Concurrent SMTP sessions in total.
    pub max_connections: usize,
    /// Concurrent SMTP sessions from one client: one IPv4 address, or one
    /// IPv6 network of `ipv6_prefix_length` bits.
    pub max_connections_per_ip: usize,
    /// Prefix length, in bits (32 to 128), of the IPv6 network that counts
    /// as one client for `max_connections_per_ip`: 64 counts a /64 (one
    /// site's LAN, RFC 4291 §2.5.1) once; 128 counts each address.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub ipv6_prefix_length: u8,
    /// How long to wait for the next command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    pub command_timeout: HumanDuration,
    /// How long to wait for each block of message data (RFC 5321 §4.5.3.2.5: 3 minutes).
    pub data_timeout: HumanDuration,
    /// Time for one whole command line, from when the server is ready for
    /// it to its CRLF, however the bytes trickle in (as Exim's
    /// `smtp_receive_timeout` bounds a line). Over it: `421 4.4.2`.
    pub command_time_limit: HumanDuration,
    /// Time for one whole message, from the 354 reply to the final
    /// `CRLF.CRLF` (RFC 5321 §4.1.1.4), however the bytes trickle in.
    /// Over it: `421 4.4.2`, and the message is abandoned.
    pub message_time_limit: HumanDuration,
    /// Subaddress separator: mail to `alice+tag@` reaches `alice@`. Empty turns it off.
    pub recipient_delimiter: String,
    /// Local mailbox that receives mail for `postmaster@` of every local
    /// domain without a postmaster mailbox or alias of its own (RFC 5321
    /// §4.5.1 requires postmaster to work). Empty: only explicit ones.
    pub postmaster: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address of the web interface (verification pages, owner UI, metrics).
    pub listen: SocketAddr,
    /// Public URL prefix used in links in challenge mails; defaults to
    /// `http://` plus the listen address.
    pub base_url: String,
    /// How long a client has to send a whole request head (request line and
    /// headers), counted from when the connection opens or the previous
    /// response was sent; so also how long an idle keep-alive connection
    /// stays open. Then the connection is closed.
    pub header_timeout: HumanDuration,
    /// How long one request may take from its complete head to its response,
    /// reading its body included: a body still arriving then gets 408, a
    /// page still being made 503.
    pub request_timeout: HumanDuration,
    /// A connection on which no byte is read or written for this long is
    /// closed, whatever it is doing (e.g. a client that stops reading its
    /// responses). Must be longer than `request_timeout`.
    pub idle_timeout: HumanDuration,
    /// Concurrent web connections in total, counted apart from SMTP's; a
    /// connection over the limit gets 503 and is closed.
    pub max_connections: usize,
    /// Concurrent web connections from one client IPv4 address or IPv6 /64;
    /// over the limit, 503. Behind a reverse proxy every connection comes
    /// from the proxy's address.
    pub max_connections_per_ip: usize,
    /// Largest request body accepted, in bytes (a number, or "64K"); a larger
    /// one gets 413. Bodies are read into memory whole, so this times
    /// `max_connections` bounds their memory.
    pub max_body_size: ByteSize,
    /// An owner's web session ends after this long without a request;
    /// they sign in again.
    pub session_idle: HumanDuration,
    /// An owner's web session ends this long after sign-in, however
    /// active. At least `session_idle`.
    pub session_lifetime: HumanDuration,
}

impl WebConfig {
    /// Refuses a bad `[web]` value, naming its key.
    fn validate(&self) -> Result<(), String> {
        for (key, d) in [
            ("header_timeout", self.header_timeout),
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.0.is_zero() {
                return Err(format!("web.{key}: must be longer than 0"));
            }
        }
        if self.idle_timeout.0 <= self.request_timeout.0 {
            return Err(format!(
                "web.idle_timeout: {} must be longer than web.request_timeout ({}), \
                 or a slow request is cut off without an answer",
                self.idle_timeout, self.request_timeout
            ));
        }
        if self.session_idle.0 < Duration::from_secs(60) {
            return Err("web.session_idle: must be at least 1m".into());
        }
        if self.session_lifetime.0 < self.session_idle.0 {
            return Err(format!(
                "web.session_lifetime: {} must be at least web.session_idle ({})",
                self.session_lifetime, self.session_idle
            ));
        }
        if self.max_connections == 0 {
            return Err("web.max_connections: must be at least 1".into());
        }
        if self.max_connections_per_ip == 0 {
            return Err("web.max_connections_per_ip: must be at least 1".into());
        }
        if self.max_body_size.0 < 1024 {
            return Err("web.max_body_size: must be at least 1K".into());
        }
        if usize::try_from(self.max_body_size.0).is_err() {
            return Err("web.max_body_size: too large for this machine".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`. Empty means a
    /// SQLite database at `<data_dir>/boxtrap.db`.
    pub url: String,
    /// Most connections the pool opens to the database.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Root of the Maildirs: mailbox `alice@example.test` is delivered to
    /// `<maildir_root>/example.test/alice/`. Empty means `<data_dir>/mail`.
    pub maildir_root: PathBuf,
    /// First wait before retrying a delivery that failed temporarily; each
    /// further attempt waits twice as long, up to `retry_max_interval`.
    pub retry_interval: HumanDuration,
    /// Longest wait between two retries.
    pub retry_max_interval: HumanDuration,
    /// How long a deferred delivery is retried before it fails for good.
    pub retry_for: HumanDuration,
    /// How often the retry worker looks for deliveries that are due.
    pub queue_run_interval: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeConfig {
    /// HMAC key for challenge tokens, 64 hex digits. Empty means a key
    /// generated on first start and kept in the database (shared by all
    /// nodes); `boxtrap key rotate` replaces it, old keys still verify.
    pub secret: String,
    /// Mails to senders (challenges and notices: `returnverify`,
    /// `blacklist`, `verifyreleased`) one mailbox may send per hour.
    pub max_per_mailbox_hour: u32,
    /// Mails to senders at one domain per day, across all mailboxes.
    pub max_per_domain_day: u32,
    /// Mails to one sender address per day, across all mailboxes.
    pub max_per_address_day: u32,
    /// Mails to senders per hour from the whole server (every node sharing
    /// the database).
    pub max_global_hour: u32,
    /// How often the sweeper purges expired held mail and challenges.
    pub sweep_interval: HumanDuration,
    /// How long outbound mail (challenges, notices) is kept after it was
    /// queued, once it is sent or has failed for good. Mail still queued is
    /// kept whatever its age, and so is a failed challenge mail while the
    /// mail it was about is still held (`quarantine show` gives its error).
    /// At least 2 days.
    pub keep_outbound: HumanDuration,
    /// How long answered and expired challenges are kept after they were
    /// issued. Open challenges, and those held mail or queued outbound mail
    /// still refers to, are kept whatever their age. At least 2 days.
    pub keep_challenges: HumanDuration,
    /// How long lines of the mailboxes' activity logs are kept. At least 2 days.
    pub keep_activity: HumanDuration,
    /// How long held mail the owner deleted can still be restored, counted
    /// from its deletion; the sweeper then purges it. At least an hour.
    pub keep_deleted: HumanDuration,
    /// Held messages one mailbox's quarantine may hold, counting every
    /// held message: at that count new mail for the mailbox is refused at
    /// RCPT with 452 4.2.2 until some is released, deleted or expires.
    /// 0: no limit. `boxtrap mailbox set --quarantine-max-messages`
    /// overrides it for one mailbox.
    pub quarantine_max_messages: u64,
    /// Bytes one mailbox's quarantine may hold (a number, or "500M"), as
    /// for `quarantine_max_messages`. 0: no limit; otherwise at least 1M.
    pub quarantine_max_bytes: ByteSize,
    /// Most `To:`/`Cc:` addresses one message from an allowed sender adds
    /// to the allow list, for a mailbox with whitelist-by-association on;
    /// the rest are left off and the activity log says so. 0 adds none.
    pub max_associates_per_message: u32,
    /// Most rules one sender list (allow, block or ignore) of one mailbox
    /// holds: `list add`, `list import` and whitelist-by-association add
    /// nothing beyond it (1 to 25,000).
    pub max_rules_per_list: u32,
}

/// The shortest retention a `[challenge] keep_*` key takes: the sending
/// caps count the last day of outbound mail and challenges, so two days of
/// them are always kept.
pub const MIN_RETENTION: Duration = Duration::from_secs(2 * 86400);
/// The longest retention a `[challenge] keep_*` key takes: ten years.
pub const MAX_RETENTION: Duration = Duration::from_secs(3650 * 86400);
/// The smallest quarantine byte quota other than 0 (no limit), in bytes:
/// anything less is surely a missing unit ("500" meant "500M").
pub const MIN_QUARANTINE_BYTES: u64 = 1 << 20;

impl ChallengeConfig {
    /// Refuses a bad retention or quarantine quota, naming its key.
    fn check_retention_and_quota(&self) -> Result<(), String> {
        for (key, d) in [
            ("keep_outbound", self.keep_outbound),
            ("keep_challenges", self.keep_challenges),
            ("keep_activity", self.keep_activity),
        ] {
            if d.0 < MIN_RETENTION {
                return Err(format!(
                    "challenge.{key}: {d} is shorter than 2d (the sending caps count \
                     the last day of mail to senders, so two days are always kept)"
                ));
            }
            if d.0 > MAX_RETENTION {
                return Err(format!(
                    "challenge.{key}: {d} is longer than 3650d (ten years)"
                ));
            }
        }
        let d = self.keep_deleted;
        if d.0 < Duration::from_secs(3600) {
            return Err(format!(
                "challenge.keep_deleted: {d} is shorter than 1h (an owner must have time to undo a delete)"
            ));
        }
        if d.0 > MAX_RETENTION {
            return Err(format!(
                "challenge.keep_deleted: {d} is longer than 3650d (ten years)"
            ));
        }
        let bytes = self.quarantine_max_bytes;
        if bytes.0 != 0 && bytes.0 < MIN_QUARANTINE_BYTES {
            return Err(format!(
                "challenge.quarantine_max_bytes: {bytes} is less than 1M \
                 (give a unit, e.g. \"500M\"; 0 for no limit)"
            ));
        }
        if i64::try_from(bytes.0).is_err() {
            return Err(format!(
                "challenge.quarantine_max_bytes: {bytes} is too large"
            ));
        }
        if i64::try_from(self.quarantine_max_messages).is_err() {
            return Err(format!(
                "challenge.quarantine_max_messages: {} is too large",
                self.quarantine_max_messages
            ));
        }
        Ok(())
    }
}

/// Defines a config enum read from and written as its lower-case word;
/// an unknown word is refused naming the key and the words it takes.
macro_rules! config_word {
    ($(#[$doc:meta])* $name:ident($key:literal) { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                match s.as_str() {
                    $($word => Ok($name::$variant),)+
                    _ => Err(format!(
                        concat!($key, ": {:?} is not one of ", config_word!(@list $($word),+)),
                        s
                    )),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@list $first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

config_word! {
    /// How challenge mails leave (`outbound.mode`).
    OutboundMode("outbound.mode") {
        /// The smarthost when one is set, else the file outbox.
        Auto = "auto",
        /// `.eml` files in the outbox; nothing is sent.
        File = "file",
        /// Through `outbound.smarthost`.
        Smarthost = "smarthost",
        /// To each recipient domain's MX.
        Direct = "direct",
    }
}

config_word! {
    /// STARTTLS towards the smarthost (`outbound.smarthost_tls`, RFC 3207).
    TlsPolicy("outbound.smarthost_tls") {
        /// Plain text.
        Off = "off",
        /// When offered; a failed upgrade fails the attempt.
        Opportunistic = "opportunistic",
        /// Refuse to send without it.
        Required = "required",
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// How challenge mails leave: "file" writes `.eml` files to `outbox_dir`
    /// (nothing is sent; for trying boxtrap out), "smarthost" relays through
    /// `smarthost`, "direct" delivers to each recipient domain's MX.
    /// "auto": smarthost when one is set, else file.
    pub mode: OutboundMode,
    /// Where "file" mode writes messages. Empty means `<data_dir>/outbox`.
    pub outbox_dir: PathBuf,
    /// Relay host as "host:port".
    pub smarthost: String,
    /// STARTTLS towards the smarthost: "off", "opportunistic" or "required".
    pub smarthost_tls: TlsPolicy,
    /// SMTP AUTH user name for the smarthost; empty means no AUTH.
    pub smarthost_user: String,
    pub smarthost_password: String,
    /// Name sent in EHLO; empty means `hostname`.
    pub helo_name: String,
    /// Port used for direct delivery to an MX (25; tests use another).
    pub mx_port: u16,
    /// Deliveries in progress at once, over all destinations; in "direct"
    /// mode never more than one at a time to one recipient domain, so a
    /// domain whose servers stall holds up only its own mail.
    pub max_concurrent: usize,
    /// Most addresses tried in one delivery attempt in "direct" mode,
    /// over all the domain's mail exchangers in preference order, and
    /// most exchanger names looked up (Postfix's `smtp_mx_address_limit`).
    pub mx_address_limit: usize,
    /// Lets "direct" mode connect to addresses that are not on the public
    /// internet: loopback, private (RFC 1918, RFC 4193), link-local,
    /// shared (100.64.0.0/10), documentation, multicast and reserved
    /// ranges, IPv4-mapped or not. Off: such an MX or address literal is a
    /// permanent failure, and nothing connects to it.
    pub allow_private_destinations: bool,
    /// Time limit for the TCP connection to one address (Postfix's
    /// `smtp_connect_timeout`).
    pub connect_timeout: HumanDuration,
    /// Time limit for the server's 220 greeting and its reply to EHLO
    /// (RFC 5321 §4.5.3.2.1; Postfix's `smtp_helo_timeout`).
    pub greeting_timeout: HumanDuration,
    /// Time limit for the reply to each of STARTTLS (with the TLS
    /// handshake), AUTH, MAIL, RCPT, DATA and QUIT (RFC 5321 §4.5.3.2.2-4;
    /// Postfix's `smtp_mail_timeout`, `smtp_rcpt_timeout`).
    pub command_timeout: HumanDuration,
    /// Time limit for sending the message and the reply to its final dot
    /// (RFC 5321 §4.5.3.2.5-6; Postfix's `smtp_data_done_timeout`).
    pub data_timeout: HumanDuration,
    /// Most time one delivery attempt may take, all exchangers and
    /// addresses together (the limits above are per step), so a server that
    /// answers each command just in time cannot hold a delivery for hours.
    pub timeout: HumanDuration,
    /// First wait before retrying a message that failed temporarily; each
    /// further attempt waits twice as long, up to `retry_max_interval`.
    pub retry_interval: HumanDuration,
    pub retry_max_interval: HumanDuration,
    /// How long a message is retried before it fails for good.
    pub retry_for: HumanDuration,
    /// How often the outbound worker looks for messages to send.
    pub run_interval: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Exim-style main log (one line per arrival, delivery, deferral,
    /// failure). Empty means `<data_dir>/log/mainlog`.
    pub main_log: PathBuf,
    /// Refused transactions. Empty means `<data_dir>/log/rejectlog`.
    pub reject_log: PathBuf,
}

/// The `[dns]` section: the one resolver every DNS question goes to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Recursive DNS servers ("ip:port"), asked over UDP with TCP fallback.
    /// Empty means the `nameserver` lines of /etc/resolv.conf (port 53).
    /// /etc/hosts is never read.
    pub servers: Vec<SocketAddr>,
    /// How long to wait for the answer to one query before trying again
    /// or the next server.
    pub timeout: HumanDuration,
    /// Queries sent for one question before it is a temporary failure
    /// (at least 1; as resolv.conf's `options attempts:`), so one question
    /// takes at most `timeout` × `attempts`.
    pub attempts: usize,
    /// Answers (DNS responses) kept in the resolver's cache, each for its
    /// TTL (negative answers too, RFC 2308). 0 turns the cache off.
    pub cache_size: u64,
}

config_word! {
    /// What a listing in a DNS blocklist does (`dnsbl.action`).
    DnsblAction("dnsbl.action") {
        /// Every RCPT gets `554 5.7.1` naming the zone (except postmaster).
        Reject = "reject",
        /// The zone's `score` is added to the message's spam score.
        Score = "score",
    }
}

/// One `[[dnsbl]]` table: a DNS blocklist zone (RFC 5782 §2).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblZone {
    /// The list's zone, e.g. `zen.spamhaus.org`: the client 192.0.2.1 is
    /// looked up as `1.2.0.192.zen.spamhaus.org` (A records).
    pub zone: String,
    /// "reject" (the default, as Postfix's `reject_rbl_client`) or "score".
    #[serde(default = "default_dnsbl_action")]
    pub action: DnsblAction,
    /// Added to the message's spam score when the client is listed (with
    /// "reject", only mail to postmaster gets through to be scored).
    /// Default 1.0.
    #[serde(default = "default_dnsbl_score")]
    pub score: f64,
    /// The answers that count as listed (`127.0.0.2`, ...). Empty: any
    /// answer in 127.0.0.0/8 except 127.255.255.0/24, which lists such as
    /// Spamhaus use for "query refused" rather than a listing.
    #[serde(default)]
    pub returns: Vec<std::net::Ipv4Addr>,
}

/// One `[[dnswl]]` table: a DNS allowlist zone, looked up as a `dnsbl` one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnswlZone {
    /// The list's zone, e.g. `list.dnswl.org`.
    pub zone: String,
    /// The answers that count as listed; empty as for `dnsbl.returns`.
    #[serde(default)]
    pub returns: Vec<std::net::Ipv4Addr>,
}

fn default_dnsbl_action() -> DnsblAction {
    DnsblAction::Reject
}

fn default_dnsbl_score() -> f64 {
    1.0
}

/// Whether `zone` is a domain name a blocklist can live under: labels of
/// letters, digits, `-` and `_` (not starting or ending with `-`), 1 to
/// 63 characters each, at most 189 characters in all so that an IPv6
/// query name (64 characters of nibbles, RFC 5782 §2.4) still fits the
/// 253 of RFC 1035 §2.3.4. A trailing dot is allowed.
fn check_zone(key: &str, zone: &str) -> Result<(), String> {
    let name = zone.strip_suffix('.').unwrap_or(zone);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.is_empty() || name.len() > 189 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{key}: {zone:?} is not a domain name (letters, digits, '-' and '_' in labels \
             separated by dots, at most 189 characters)"
        ));
    }
    Ok(())
}

impl Config {
    /// Refuses a bad `[dns]`, `[[dnsbl]]` or `[[dnswl]]` value, naming its
    /// key (`dnsbl[1].zone`, counting from 0).
    fn validate_dns(&self) -> Result<(), String> {
        if self.dns.timeout.0.is_zero() {
            return Err("dns.timeout: must be more than 0".into());
        }
        if self.dns.attempts == 0 {
            return Err("dns.attempts: must be at least 1".into());
        }
        for (i, z) in self.dnsbl.iter().enumerate() {
            check_zone(&format!("dnsbl[{i}].zone"), &z.zone)?;
            if !z.score.is_finite() {
                return Err(format!("dnsbl[{i}].score: {} is not a number", z.score));
            }
        }
        for (i, z) in self.dnswl.iter().enumerate() {
            check_zone(&format!("dnswl[{i}].zone"), &z.zone)?;
        }
        Ok(())
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: HumanDuration(Duration::from_secs(5)),
            attempts: 2,
            cache_size: 4096,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            hostname: default_hostname(),
            smtp: SmtpConfig::default(),
            web: WebConfig::default(),
            database: DatabaseConfig::default(),
            delivery: DeliveryConfig::default(),
            spam: crate::spam::SpamConfig::default(),
            spamd: crate::spam::SpamdConfig::default(),
            challenge: ChallengeConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            outbound: OutboundConfig::default(),
            log: LogConfig::default(),
            dns: DnsConfig::default(),
            dnsbl: Vec::new(),
            dnswl: Vec::new(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            max_message_size: ByteSize(25 * 1024 * 1024),
            max_inflight_data: default_inflight_data(),
            max_recipients: 100,
            max_line_length: 2048,
            max_errors: 20,
            max_connections: 500,
            max_connections_per_ip: 50,
            ipv6_prefix_length: 64,
            command_timeout: HumanDuration(Duration::from_secs(300)),
            data_timeout: HumanDuration(Duration::from_secs(180)),
            command_time_limit: HumanDuration(Duration::from_secs(300)),
            message_time_limit: HumanDuration(Duration::from_secs(3600)),
            recipient_delimiter: "+".into(),
            postmaster: String::new(),
        }
    }
}

/// The default `smtp.max_inflight_data`: a sixteenth of the memory this
/// process may use (the machine's `MemTotal`, or the cgroup v2
/// `memory.max` when lower), in whole MiB, between 128M and 512M; 256M
/// when neither can be read.
fn default_inflight_data() -> ByteSize {
    const MIB: u64 = 1024 * 1024;
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let memory = match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(m), None) | (None, Some(m)) => m,
        (None, None) => return ByteSize(256 * MIB),
    };
    ByteSize((memory / 16 / MIB).clamp(128, 512) * MIB)
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_url: String::new(),
            header_timeout: HumanDuration(Duration::from_secs(10)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            max_connections: 256,
            max_connections_per_ip: 32,
            max_body_size: ByteSize(64 * 1024),
            session_idle: HumanDuration(Duration::from_secs(30 * 60)),
            session_lifetime: HumanDuration(Duration::from_secs(12 * 3600)),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            max_connections: 16,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            maildir_root: PathBuf::new(),
            retry_interval: HumanDuration(Duration::from_secs(60)),
            retry_max_interval: HumanDuration(Duration::from_secs(3600)),
            retry_for: HumanDuration(Duration::from_secs(5 * 24 * 3600)),
            queue_run_interval: HumanDuration(Duration::from_secs(30)),
        }
    }
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        ChallengeConfig {
            secret: String::new(),
            max_per_mailbox_hour: 30,
            max_per_domain_day: 50,
            max_per_address_day: 10,
            max_global_hour: 500,
            sweep_interval: HumanDuration(Duration::from_secs(300)),
            keep_outbound: HumanDuration(Duration::from_secs(30 * 86400)),
            keep_challenges: HumanDuration(Duration::from_secs(30 * 86400)),
            keep_activity: HumanDuration(Duration::from_secs(90 * 86400)),
            keep_deleted: HumanDuration(Duration::from_secs(7 * 86400)),
            quarantine_max_messages: 10_000,
            quarantine_max_bytes: ByteSize(500 * 1024 * 1024),
            max_associates_per_message: 10,
            max_rules_per_list: 5000,
        }
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            mode: OutboundMode::Auto,
            outbox_dir: PathBuf::new(),
            smarthost: String::new(),
            smarthost_tls: TlsPolicy::Opportunistic,
            smarthost_user: String::new(),
            smarthost_password: String::new(),
            helo_name: String::new(),
            mx_port: 25,
            max_concurrent: 20,
            mx_address_limit: 5,
            allow_private_destinations: false,
            connect_timeout: HumanDuration(Duration::from_secs(30)),
            greeting_timeout: HumanDuration(Duration::from_secs(300)),
            command_timeout: HumanDuration(Duration::from_secs(300)),
            data_timeout: HumanDuration(Duration::from_secs(600)),
            timeout: HumanDuration(Duration::from_secs(1800)),
            retry_interval: HumanDuration(Duration::from_secs(300)),
            retry_max_interval: HumanDuration(Duration::from_secs(3 * 3600)),
            retry_for: HumanDuration(Duration::from_secs(2 * 86400)),
            run_interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            main_log: PathBuf::new(),
            reject_log: PathBuf::new(),
        }
    }
}

fn default_hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Highest `challenge.max_rules_per_list` accepted: measured up to 22,002
/// rules (`cargo bench --bench lists`), screening a message stays under
/// 0.1 ms even when every rule is a regex.
const MAX_RULES_PER_LIST: u32 = 25_000;

/// Big public recursive resolvers (Google, Cloudflare, Quad9, OpenDNS),
/// whose queries DNS lists refuse: a `[[dnsbl]]` asked through them lists
/// nobody.
const PUBLIC_RESOLVERS: &[&str] = &[
    "8.8.8.8",
    "8.8.4.4",
    "1.1.1.1",
    "1.0.0.1",
    "9.9.9.9",
    "149.112.112.112",
    "208.67.222.222",
    "208.67.220.220",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "2620:fe::fe",
    "2620:fe::9",
];

/// Environment variables with the `BOXTRAP_` prefix that are not config keys.
const RESERVED_ENV: &[&str] = &["BOXTRAP_CONFIG", "BOXTRAP_LOG"];

impl Config {
    /// Loads the defaults, then `path` (if any), then `BOXTRAP_*` variables
    /// from `env`, and checks the result.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_owned(),
                    error,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BOXTRAP_") && !RESERVED_ENV.contains(&k.as_str()))
            .collect();
        env.sort();
        for (var, value) in env {
            apply_env(&mut table, &var, &value)?;
        }
        let source = path
            .map(Path::to_owned)
            .unwrap_or_else(|| "(defaults)".into());
        for (section, key, _) in MOVED_KEYS {
            let present = table
                .get(*section)
                .and_then(|t| t.as_table())
                .is_some_and(|t| t.contains_key(*key));
            if let Some(hint) = moved_key(section, key).filter(|_| present) {
                return Err(ConfigError::Parse {
                    path: source,
                    message: hint,
                });
            }
        }
        let config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                path: source,
                message: e.to_string().trim_end().to_owned(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Settings that are valid but that an admin should know about, one
    /// sentence each: `check-config` prints them and `serve` logs them at
    /// start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.smtp.postmaster.is_empty() {
            out.push(format!(
                "smtp.postmaster is not set: RCPT TO:<Postmaster> and postmaster@ of a domain \
                 without its own postmaster mailbox or alias reach nobody unless \
                 postmaster@{} routes (RFC 5321 §4.5.1 requires postmaster to work)",
                self.hostname
            ));
        }
        if !self.dnsbl.is_empty() || !self.dnswl.is_empty() {
            for server in &self.dns.servers {
                if PUBLIC_RESOLVERS.contains(&server.ip().to_string().as_str()) {
                    out.push(format!(
                        "dns.servers: {} is a public resolver; DNS lists such as Spamhaus \
                         refuse queries that come through one (answering 127.255.255.x), so \
                         the [[dnsbl]] zones would list nobody: use a resolver of your own",
                        server.ip()
                    ));
                }
            }
        }
        out
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            return bad(format!("hostname: {:?} is not a host name", self.hostname));
        }
        if self.smtp.listen.is_empty() {
            return bad("smtp.listen: at least one address is needed".into());
        }
        if self.smtp.max_line_length < 512 {
            return bad("smtp.max_line_length: RFC 5321 requires at least 512".into());
        }
        if self.smtp.max_recipients == 0 {
            return bad("smtp.max_recipients: must be at least 1".into());
        }
        if self.smtp.max_connections == 0 || self.smtp.max_connections_per_ip == 0 {
            return bad(
                "smtp.max_connections and max_connections_per_ip must be at least 1".into(),
            );
        }
        if self.smtp.max_message_size.0 < 1024 {
            return bad("smtp.max_message_size: must be at least 1K".into());
        }
        if self.smtp.max_inflight_data.0 < self.smtp.max_message_size.0 {
            return bad(format!(
                "smtp.max_inflight_data: {} is less than smtp.max_message_size ({}), so a \
                 message of that size could never be received",
                self.smtp.max_inflight_data, self.smtp.max_message_size
            ));
        }
        if !(32..=128).contains(&self.smtp.ipv6_prefix_length) {
            return bad(format!(
                "smtp.ipv6_prefix_length: {} is not between 32 and 128 (64 counts each /64 \
                 as one client, 128 each address)",
                self.smtp.ipv6_prefix_length
            ));
        }
        for (key, limit) in [
            ("command_time_limit", self.smtp.command_time_limit),
            ("message_time_limit", self.smtp.message_time_limit),
        ] {
            if limit.0 < Duration::from_secs(1) {
                return bad(format!("smtp.{key}: {limit} is less than 1s"));
            }
        }
        if !self.smtp.postmaster.is_empty()
            && crate::address::EmailAddress::parse(&self.smtp.postmaster).is_err()
        {
            return bad(format!(
                "smtp.postmaster: {:?} is not an address",
                self.smtp.postmaster
            ));
        }
        if self.smtp.recipient_delimiter.chars().count() > 1 {
            return bad("smtp.recipient_delimiter: must be one character or empty".into());
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections: must be at least 1".into());
        }
        let url = &self.database.url;
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return bad(format!(
                "database.url: {url:?} must start with sqlite: or postgres://"
            ));
        }
        let secret = &self.challenge.secret;
        if !secret.is_empty()
            && (secret.len() != 64 || !secret.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return bad("challenge.secret: must be 64 hex digits (32 bytes), or empty".into());
        }
        self.challenge
            .check_retention_and_quota()
            .map_err(ConfigError::Invalid)?;
        if !(1..=MAX_RULES_PER_LIST).contains(&self.challenge.max_rules_per_list) {
            return bad(format!(
                "challenge.max_rules_per_list: {} is not between 1 and {MAX_RULES_PER_LIST}",
                self.challenge.max_rules_per_list
            ));
        }
        let o = &self.outbound;
        if o.mode == OutboundMode::Smarthost && o.smarthost.is_empty() {
            return bad("outbound.mode: \"smarthost\" needs outbound.smarthost".into());
        }
        if !o.smarthost.is_empty()
            && !o
                .smarthost
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return bad(format!(
                "outbound.smarthost: {:?} is not host:port",
                o.smarthost
            ));
        }
        if !o.smarthost_user.is_empty() && o.smarthost_tls == TlsPolicy::Off {
            return bad(
                "outbound.smarthost_user: AUTH would send the password in clear text; \
                 set outbound.smarthost_tls to \"required\""
                    .into(),
            );
        }
        if o.max_concurrent == 0 {
            return bad("outbound.max_concurrent: must be at least 1".into());
        }
        if o.mx_address_limit == 0 {
            return bad("outbound.mx_address_limit: must be at least 1".into());
        }
        for (key, limit) in [
            ("outbound.connect_timeout", o.connect_timeout),
            ("outbound.greeting_timeout", o.greeting_timeout),
            ("outbound.command_timeout", o.command_timeout),
            ("outbound.data_timeout", o.data_timeout),
            ("outbound.timeout", o.timeout),
        ] {
            if limit.0.is_zero() {
                return bad(format!("{key}: must be more than 0"));
            }
        }
        if o.retry_interval.0 < Duration::from_secs(1) {
            return bad("outbound.retry_interval: must be at least 1s".into());
        }
        self.spam.validate().map_err(ConfigError::Invalid)?;
        self.spamd.validate().map_err(ConfigError::Invalid)?;
        self.web.validate().map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        self.validate_dns().map_err(ConfigError::Invalid)?;
        let base = &self.web.base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
            return bad(format!(
                "web.base_url: {:?} must start with http:// or https://",
                self.web.base_url
            ));
        }
        Ok(())
    }

    /// The database URL with the SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("boxtrap.db").display())
        } else {
            self.database.url.clone()
        }
    }

    pub fn maildir_root(&self) -> PathBuf {
        or_default(&self.delivery.maildir_root, || self.data_dir.join("mail"))
    }

    pub fn main_log_path(&self) -> PathBuf {
        or_default(&self.log.main_log, || self.data_dir.join("log/mainlog"))
    }

    pub fn reject_log_path(&self) -> PathBuf {
        or_default(&self.log.reject_log, || self.data_dir.join("log/rejectlog"))
    }

    pub fn outbox_dir(&self) -> PathBuf {
        or_default(&self.outbound.outbox_dir, || self.data_dir.join("outbox"))
    }

    /// The outbound mode with "auto" resolved: never [`OutboundMode::Auto`].
    pub fn outbound_mode(&self) -> OutboundMode {
        match self.outbound.mode {
            OutboundMode::Auto if self.outbound.smarthost.is_empty() => OutboundMode::File,
            OutboundMode::Auto => OutboundMode::Smarthost,
            m => m,
        }
    }

    pub fn base_url(&self) -> String {
        if self.web.base_url.is_empty() {
            format!("http://{}", self.web.listen)
        } else {
            self.web.base_url.trim_end_matches('/').to_owned()
        }
    }
}

fn or_default(path: &Path, default: impl FnOnce() -> PathBuf) -> PathBuf {
    if path.as_os_str().is_empty() {
        default()
    } else {
        path.to_owned()
    }
}

/// Sections whose keys can be set as `BOXTRAP_<SECTION>_<KEY>`.
const SECTIONS: &[&str] = &[
    "smtp",
    "web",
    "database",
    "delivery",
    "spam",
    "spamd",
    "challenge",
    "outbound",
    "log",
    "dns",
];

/// Keys that moved, as (old key, where it is now): named with the new
/// place rather than refused as unknown.
const MOVED_KEYS: &[(&str, &str, &str)] = &[("outbound", "dns_servers", "[dns] servers")];

/// The hint for a key that moved, if `section.key` is one.
fn moved_key(section: &str, key: &str) -> Option<String> {
    MOVED_KEYS
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(s, k, to)| format!("`{s}.{k}` moved to `{to}`"))
}

/// `BOXTRAP_SMTP_MAX_RECIPIENTS=20` sets `smtp.max_recipients`;
/// `BOXTRAP_DATA_DIR=/srv/mail` sets `data_dir`. The value is read as the
/// key's type: strings stay strings (`BOXTRAP_HOSTNAME=123` is a host
/// name), numbers and booleans are parsed, and `smtp.listen` takes a
/// comma-separated list. A variable that names no key is refused by name.
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    let key = var["BOXTRAP_".len()..].to_ascii_lowercase();
    let (section, field) = match key.split_once('_') {
        Some((s, f)) if SECTIONS.contains(&s) => (Some(s), f.to_owned()),
        _ => (None, key.clone()),
    };
    let defaults = toml::Table::try_from(Config::default())
        .map_err(|e| err(format!("cannot describe the defaults: {e}")))?;
    let default = match section {
        None => defaults.get(&field),
        Some(s) => defaults
            .get(s)
            .and_then(|t| t.as_table())
            .and_then(|t| t.get(&field)),
    };
    let Some(default) = default.filter(|d| !d.is_table()) else {
        if let Some(hint) = section.and_then(|s| moved_key(s, &field)) {
            return Err(err(hint));
        }
        let name = section.map_or(field.clone(), |s| format!("{s}.{field}"));
        return Err(err(format!(
            "no config key {name} (see config.example.toml)"
        )));
    };
    let parsed = typed_env_value(default, value);
    let target = match section {
        None => table,
        Some(s) => table
            .entry(s.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| err(format!("[{s}] in the config file is not a table")))?,
    };
    target.insert(field, parsed);
    Ok(())
}

/// Reads an environment value as the type of the key's default.
fn typed_env_value(default: &toml::Value, value: &str) -> toml::Value {
    let literal = || {
        format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match default {
        toml::Value::String(_) => toml::Value::String(value.to_owned()),
        toml::Value::Array(_) => match literal() {
            Some(v @ toml::Value::Array(_)) => v,
            _ => toml::Value::Array(
                value
                    .split(',')
                    .map(|s| toml::Value::String(s.trim().to_owned()))
                    .collect(),
            ),
        },
        _ => literal().unwrap_or_else(|| toml::Value::String(value.to_owned())),
    }
}

/// A byte count written as a number or with a K/M/G suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let t = t
            .strip_suffix("iB")
            .or_else(|| t.strip_suffix('B'))
            .unwrap_or(t);
        let (digits, mult) = match t.char_indices().last() {
            Some((i, 'K' | 'k')) => (&t[..i], 1024),
            Some((i, 'M' | 'm')) => (&t[..i], 1024 * 1024),
            Some((i, 'G' | 'g')) => (&t[..i], 1024 * 1024 * 1024),
            _ => (t, 1),
        };
        let n: u64 = digits.trim().parse().map_err(|_| {
            format!("{s:?} is not a size (use a number of bytes, or e.g. 512K, 25M)")
        })?;
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if n >= m && n.is_multiple_of(m) {
                return write!(f, "{}{unit}", n / m);
            }
        }
        write!(f, "{n}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A duration written as "300ms", "30s", "5m", "2h", "5d", or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<HumanDuration, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (use e.g. 300ms, 30s, 5m, 2h, 5d)"))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            _ => {
                return Err(format!("{s:?} has an unknown unit (use ms, s, m, h or d)"));
            }
        };
        Ok(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        for (unit, m) in [("d", 86400), ("h", 3600), ("m", 60)] {
            if s >= m && s.is_multiple_of(m) {
                return write!(f, "{}{unit}", s / m);
            }
        }
        write!(f, "{s}s")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(HumanDuration(Duration::from_secs(n))),
            Raw::S(s) => HumanDuration::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn retention_and_quarantine_quota_are_read_and_bad_ones_refused_by_name() {
        let c = Config::load(None, Vec::new()).unwrap();
        let ch = &c.challenge;
        assert_eq!(
            (ch.keep_outbound, ch.keep_challenges, ch.keep_activity),
            (
                HumanDuration(Duration::from_secs(30 * 86400)),
                HumanDuration(Duration::from_secs(30 * 86400)),
                HumanDuration(Duration::from_secs(90 * 86400)),
            )
        );
        assert_eq!(
            (ch.quarantine_max_messages, ch.quarantine_max_bytes),
            (10_000, ByteSize(500 << 20))
        );
        let c = load_str(
            "[challenge]\nkeep_outbound = \"2d\"\nkeep_challenges = 259200\n\
             keep_activity = \"365d\"\nquarantine_max_messages = 0\n\
             quarantine_max_bytes = \"1G\"\n",
            &[("BOXTRAP_CHALLENGE_KEEP_ACTIVITY", "7d")],
        )
        .unwrap();
        let ch = &c.challenge;
        assert_eq!(ch.keep_outbound.0, Duration::from_secs(2 * 86400));
        assert_eq!(ch.keep_challenges.0, Duration::from_secs(3 * 86400));
        assert_eq!(ch.keep_activity.0, Duration::from_secs(7 * 86400));
        assert_eq!(ch.keep_deleted.0, Duration::from_secs(7 * 86400));
        let c = load_str("[challenge]\nkeep_deleted = \"1h\"\n", &[]).unwrap();
        assert_eq!(c.challenge.keep_deleted.0, Duration::from_secs(3600));
        assert_eq!(ch.quarantine_max_messages, 0);
        assert_eq!(ch.quarantine_max_bytes, ByteSize(1 << 30));
        for (text, named) in [
            (
                "keep_outbound = \"1d\"",
                "challenge.keep_outbound: 1d is shorter than 2d",
            ),
            (
                "keep_outbound = \"47h\"",
                "challenge.keep_outbound: 47h is shorter than 2d",
            ),
            (
                "keep_challenges = 0",
                "challenge.keep_challenges: 0s is shorter than 2d",
            ),
            (
                "keep_activity = \"12h\"",
                "challenge.keep_activity: 12h is shorter than 2d",
            ),
            (
                "keep_activity = \"3651d\"",
                "challenge.keep_activity: 3651d is longer than 3650d",
            ),
            (
                "quarantine_max_bytes = 500",
                "challenge.quarantine_max_bytes: 500 is less than 1M",
            ),
            (
                "quarantine_max_bytes = \"1023K\"",
                "challenge.quarantine_max_bytes: 1023K is less than 1M",
            ),
            ("quarantine_max_messages = -1", "quarantine_max_messages"),
            ("quarantine_max_bytes = \"lots\"", "\"lots\" is not a size"),
            ("keep_outbound = \"30 days\"", "unknown unit"),
            (
                "keep_deleted = \"59m\"",
                "challenge.keep_deleted: 59m is shorter than 1h",
            ),
            (
                "keep_deleted = \"3651d\"",
                "challenge.keep_deleted: 3651d is longer than 3650d",
            ),
        ] {
            let e = load_str(&format!("[challenge]\n{text}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{text}: {e}");
        }
        let e = load_str("", &[("BOXTRAP_CHALLENGE_KEEP_OUTBOUND", "1d")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("challenge.keep_outbound: 1d"), "{e}");
    }

    #[test]
    fn defaults_work_without_a_file() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(c.web.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.database_url(), "sqlite://./data/boxtrap.db");
        assert_eq!(c.maildir_root(), PathBuf::from("./data/mail"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = load_str("[smtp]\nmax_recipent = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_recipent"), "{e}");
        let e = load_str("colour = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load_str(
            "hostname = \"mx.example.test\"\n[smtp]\nmax_recipients = 5\n",
            &[
                ("BOXTRAP_SMTP_MAX_RECIPIENTS", "7"),
                ("BOXTRAP_SMTP_LISTEN", "127.0.0.1:25,[::1]:25"),
                ("BOXTRAP_DATA_DIR", "/srv/boxtrap"),
                ("BOXTRAP_CONFIG", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.smtp.max_recipients, 7);
        assert_eq!(c.smtp.listen.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/srv/boxtrap"));
        assert_eq!(c.hostname, "mx.example.test");
    }

    #[test]
    fn unknown_environment_keys_are_refused_by_name() {
        let e = load_str("", &[("BOXTRAP_SMTP_MAX_RECIPENTS", "7")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("BOXTRAP_SMTP_MAX_RECIPENTS"), "{e}");
        assert!(e.contains("smtp.max_recipents"), "{e}");
        let e = load_str("", &[("BOXTRAP_COLOUR", "red")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("BOXTRAP_COLOUR"), "{e}");
        let e = load_str("", &[("BOXTRAP_SMTP", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("BOXTRAP_SMTP"), "{e}");
    }

    #[test]
    fn environment_values_take_the_type_of_their_key() {
        let c = load_str(
            "",
            &[
                ("BOXTRAP_HOSTNAME", "123"),
                ("BOXTRAP_SMTP_LISTEN", "[::1]:25"),
                ("BOXTRAP_WEB_LISTEN", "[::1]:8080"),
                ("BOXTRAP_SMTP_COMMAND_TIMEOUT", "90"),
            ],
        )
        .unwrap();
        assert_eq!(c.hostname, "123");
        assert_eq!(c.smtp.listen, vec!["[::1]:25".parse().unwrap()]);
        assert_eq!(c.web.listen, "[::1]:8080".parse().unwrap());
        assert_eq!(c.smtp.command_timeout.0, Duration::from_secs(90));
        let c = load_str(
            "",
            &[("BOXTRAP_SMTP_LISTEN", "[\"127.0.0.1:25\", \"[::1]:25\"]")],
        )
        .unwrap();
        assert_eq!(c.smtp.listen.len(), 2);
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        let c = load_str(
            "[smtp]\nmax_message_size = \"10M\"\ncommand_timeout = \"2m\"\ndata_timeout = 45\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.smtp.max_message_size, ByteSize(10 << 20));
        assert_eq!(c.smtp.command_timeout.0, Duration::from_secs(120));
        assert_eq!(c.smtp.data_timeout.0, Duration::from_secs(45));
        assert_eq!(ByteSize::parse("512K").unwrap(), ByteSize(512 << 10));
        assert_eq!(ByteSize::parse("1MiB").unwrap(), ByteSize(1 << 20));
        assert_eq!(
            HumanDuration::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert!(ByteSize::parse("lots").is_err());
        assert!(HumanDuration::parse("5 fortnights").is_err());
        let e = load_str("[smtp]\ncommand_timeout = \"5x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let e = load_str("[smtp]\nmax_line_length = 100\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("smtp.max_line_length"), "{e}");
        let e = load_str("[database]\nurl = \"mysql://x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.url"), "{e}");
        let e = load_str("[smtp]\nlisten = [\"nowhere\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn smtp_resource_limits_are_read_and_bad_ones_refused_by_name() {
        let c = load_str(
            "[smtp]\nmax_inflight_data = \"1G\"\nipv6_prefix_length = 56\n\
             command_time_limit = \"2m\"\nmessage_time_limit = \"30m\"\n",
            &[("BOXTRAP_SMTP_IPV6_PREFIX_LENGTH", "48")],
        )
        .unwrap();
        assert_eq!(c.smtp.max_inflight_data, ByteSize(1 << 30));
        assert_eq!(c.smtp.ipv6_prefix_length, 48);
        assert_eq!(c.smtp.command_time_limit.0, Duration::from_secs(120));
        assert_eq!(c.smtp.message_time_limit.0, Duration::from_secs(1800));
        for (text, key) in [
            (
                "max_inflight_data = \"10M\"",
                "smtp.max_inflight_data: 10M is less than smtp.max_message_size (25M)",
            ),
            (
                "ipv6_prefix_length = 0",
                "smtp.ipv6_prefix_length: 0 is not between 32 and 128",
            ),
            (
                "ipv6_prefix_length = 6",
                "smtp.ipv6_prefix_length: 6 is not",
            ),
            (
                "ipv6_prefix_length = 129",
                "smtp.ipv6_prefix_length: 129 is not",
            ),
            ("ipv6_prefix_length = 300", "ipv6_prefix_length"),
            (
                "command_time_limit = 0",
                "smtp.command_time_limit: 0s is less than 1s",
            ),
            (
                "message_time_limit = \"500ms\"",
                "smtp.message_time_limit: 500ms is less than 1s",
            ),
            ("message_time_limit = \"forever\"", "message_time_limit"),
            ("max_inflight_data = \"lots\"", "max_inflight_data"),
        ] {
            let e = load_str(&format!("[smtp]\n{text}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_default_data_budget_is_sized_to_the_machine() {
        let c = Config::load(None, Vec::new()).unwrap();
        let budget = c.smtp.max_inflight_data.0;
        assert!(budget >= 128 << 20, "{budget}");
        assert!(budget.is_multiple_of(1 << 20), "{budget}");
        assert!(budget >= c.smtp.max_message_size.0);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        assert!(budget <= 512 << 20, "{budget}");
        assert!(
            budget <= (kib * 1024 / 16).max(128 << 20),
            "{budget} for {kib} KiB"
        );
    }

    #[test]
    fn bad_web_limits_are_refused_by_name() {
        for (text, key) in [
            ("header_timeout = 0", "web.header_timeout"),
            ("request_timeout = \"0s\"", "web.request_timeout"),
            ("idle_timeout = \"30s\"", "web.idle_timeout"),
            ("max_connections = 0", "web.max_connections"),
            ("max_connections_per_ip = 0", "web.max_connections_per_ip"),
            ("max_body_size = 100", "web.max_body_size"),
            ("max_body_size = \"lots\"", "max_body_size"),
            ("header_timeout = \"soon\"", "header_timeout"),
        ] {
            let e = load_str(&format!("[web]\n{text}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let c = load_str(
            "[web]\nheader_timeout = \"5s\"\nrequest_timeout = \"20s\"\nidle_timeout = \"2m\"\n\
             max_connections = 100\nmax_connections_per_ip = 10\nmax_body_size = \"1M\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.web.header_timeout.0, Duration::from_secs(5));
        assert_eq!(c.web.request_timeout.0, Duration::from_secs(20));
        assert_eq!(c.web.idle_timeout.0, Duration::from_secs(120));
        assert_eq!(c.web.max_connections, 100);
        assert_eq!(c.web.max_connections_per_ip, 10);
        assert_eq!(c.web.max_body_size, ByteSize(1 << 20));
    }

    #[test]
    fn an_unknown_mode_or_tls_word_is_refused_naming_the_key_and_the_words() {
        let e = load_str("[outbound]\nmode = \"carrier-pigeon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "outbound.mode: \"carrier-pigeon\" is not one of auto, file, smarthost, direct"
            ),
            "{e}"
        );
        let e = load_str("", &[("BOXTRAP_OUTBOUND_SMARTHOST_TLS", "always")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "outbound.smarthost_tls: \"always\" is not one of off, opportunistic, required"
            ),
            "{e}"
        );
    }

    #[test]
    fn smarthost_auth_needs_tls() {
        let e = load_str(
            "[outbound]\nsmarthost = \"relay.example.net:587\"\nsmarthost_user = \"u\"\nsmarthost_tls = \"off\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("outbound.smarthost_user"), "{e}");
        assert!(
            load_str(
                "[outbound]\nsmarthost = \"relay.example.net:587\"\nsmarthost_user = \"u\"\n",
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn units_round_trip_through_display() {
        for s in ["25M", "512K", "1G", "1000"] {
            assert_eq!(ByteSize::parse(s).unwrap().to_string(), s);
        }
        for s in ["5m", "3h", "5d", "250ms", "45s"] {
            assert_eq!(HumanDuration::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn the_dns_section_is_read_and_the_old_outbound_key_refused_with_a_hint() {
        let c = load_str(
            "[dns]\nservers = [\"127.0.0.1:5353\"]\ntimeout = \"2s\"\nattempts = 3\n\
             cache_size = 0\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.dns.servers, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(c.dns.timeout.0, Duration::from_secs(2));
        assert_eq!((c.dns.attempts, c.dns.cache_size), (3, 0));
        let d = Config::default().dns;
        assert_eq!((d.timeout.0, d.attempts), (Duration::from_secs(5), 2));

        let e = load_str("[outbound]\ndns_servers = [\"127.0.0.1:53\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`outbound.dns_servers` moved to `[dns] servers`"),
            "{e}"
        );
        let e = load_str("", &[("BOXTRAP_OUTBOUND_DNS_SERVERS", "127.0.0.1:53")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`outbound.dns_servers` moved to `[dns] servers`"),
            "{e}"
        );
        let c = load_str("", &[("BOXTRAP_DNS_SERVERS", "127.0.0.1:53,[::1]:53")]).unwrap();
        assert_eq!(c.dns.servers.len(), 2);

        for (text, key) in [
            ("[dns]\ntimeout = 0\n", "dns.timeout"),
            ("[dns]\nattempts = 0\n", "dns.attempts"),
        ] {
            let e = load_str(text, &[]).unwrap_err().to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn dns_lists_asked_through_a_public_resolver_are_warned_about() {
        let public = |c: &Config| {
            c.warnings()
                .into_iter()
                .filter(|w| w.starts_with("dns.servers: "))
                .collect::<Vec<_>>()
        };
        let c = load_str("[dns]\nservers = [\"8.8.8.8:53\", \"127.0.0.1:53\"]\n", &[]).unwrap();
        assert!(public(&c).is_empty(), "no lists, nothing to warn about");
        let c = load_str(
            "[dns]\nservers = [\"8.8.8.8:53\", \"127.0.0.1:53\"]\n[[dnsbl]]\nzone = \"bl.test\"\n",
            &[],
        )
        .unwrap();
        let w = public(&c);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("dns.servers: 8.8.8.8 is a public resolver"),
            "{w:?}"
        );
    }

    #[test]
    fn dns_lists_are_read_with_their_defaults_and_bad_ones_refused_by_name() {
        let c = load_str(
            "[[dnsbl]]\nzone = \"zen.spamhaus.org\"\nreturns = [\"127.0.0.2\", \"127.0.0.3\"]\n\
             [[dnsbl]]\nzone = \"bl.example.\"\naction = \"score\"\nscore = 2.5\n\
             [[dnswl]]\nzone = \"list.dnswl.org\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.dnsbl,
            vec![
                DnsblZone {
                    zone: "zen.spamhaus.org".into(),
                    action: DnsblAction::Reject,
                    score: 1.0,
                    returns: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
                },
                DnsblZone {
                    zone: "bl.example.".into(),
                    action: DnsblAction::Score,
                    score: 2.5,
                    returns: vec![],
                },
            ]
        );
        assert_eq!(c.dnswl[0].zone, "list.dnswl.org");

        let long = format!("{}{}.test", "a".repeat(60), ".b".repeat(70));
        for (text, want) in [
            (
                "[[dnsbl]]\nzone = \"\"\n",
                "dnsbl[0].zone: \"\" is not a domain name",
            ),
            (
                "[[dnsbl]]\nzone = \"ok.test\"\n[[dnsbl]]\nzone = \"bad zone\"\n",
                "dnsbl[1].zone: \"bad zone\" is not a domain name",
            ),
            ("[[dnsbl]]\nzone = \"-x.test\"\n", "dnsbl[0].zone"),
            ("[[dnsbl]]\nzone = \"a..test\"\n", "dnsbl[0].zone"),
            (&format!("[[dnsbl]]\nzone = \"{long}\"\n"), "dnsbl[0].zone"),
            ("[[dnswl]]\nzone = \"x/y\"\n", "dnswl[0].zone"),
            (
                "[[dnsbl]]\nzone = \"a.test\"\nscore = nan\n",
                "dnsbl[0].score: NaN",
            ),
            (
                "[[dnsbl]]\nzone = \"a.test\"\nscore = inf\n",
                "dnsbl[0].score",
            ),
        ] {
            let e = load_str(text, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        // Words, addresses and keys are checked when the file is read.
        for (text, want) in [
            (
                "[[dnsbl]]\nzone = \"a.test\"\naction = \"block\"\n",
                "dnsbl.action: \"block\" is not one of reject, score",
            ),
            (
                "[[dnsbl]]\nzone = \"a.test\"\nreturns = [\"127.0.0.300\"]\n",
                "returns",
            ),
            (
                "[[dnsbl]]\nzone = \"a.test\"\nreturns = [\"::1\"]\n",
                "returns",
            ),
            ("[[dnsbl]]\naction = \"score\"\n", "zone"),
            ("[[dnswl]]\nzone = \"a.test\"\nscore = 1.0\n", "score"),
        ] {
            let e = load_str(text, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
