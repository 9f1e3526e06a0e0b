//! Admin commands for challenge-response: per-mailbox settings (`mailbox
//! set|show`), sender lists, the quarantine itself (the `exim -bp` habits),
//! the activity log, template overrides, token keys and the outbound queue.
//!
//! Every value is checked before anything is written, and a refusal names
//! the bad value. Text that came from a message (subjects, names, headers)
//! is printed with its control characters defused, so a hostile mail cannot
//! drive the admin's terminal.

use crate::address::EmailAddress;
use crate::app::{AppDeps, Services, open_store};
use crate::challenge::templates::{self, MAX_TEMPLATE_BYTES, TemplateError, TemplateName};
use crate::challenge::token::TokenKey;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::Config;
use crate::policy::rules::{self, ListKind, SenderRule};
use crate::quarantine::Quarantine;
use crate::quarantine::release::ReleasedBy;
use crate::store::held::{HeldState, HeldSummary};
use crate::store::settings::MailboxSettings;
use crate::store::{Store, StoreError};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// --- Command line -----------------------------------------------------------

/// `boxtrap mailbox set`: every option is optional, at least one is needed.
#[derive(Debug, Args)]
pub struct MailboxSetArgs {
    /// The mailbox (any case).
    address: String,
    /// Challenge-response for this mailbox.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    challenge: Option<bool>,
    /// Name shown on challenge mails ("" for none).
    #[arg(long, value_name = "NAME", value_parser = display_name)]
    display_name: Option<String>,
    /// Days held mail is kept before it is purged (1 to 365).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(1..=365))]
    keep_days: Option<i64>,
    /// Spam score below which mail skips the challenge (e.g. 5.0), or off.
    #[arg(long, value_name = "SCORE|off", value_parser = spam_score)]
    spam_bypass_below: Option<SpamBypass>,
    /// Mail from an allowed sender also allows the other addresses in its To/Cc.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    whitelist_by_association: Option<bool>,
    /// People the owner writes to are allowed automatically.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    auto_whitelist_sent: Option<bool>,
    /// Send the `verifyreleased` mail after a sender verified.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    notify_released: Option<bool>,
    /// Send the `blacklist` mail when a blocked sender's mail is discarded.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    notify_blocked: Option<bool>,
    /// Another address that counts as this mailbox (repeatable).
    #[arg(long, value_name = "ADDR")]
    add_address: Vec<String>,
    /// Stop counting ADDR as this mailbox (repeatable).
    #[arg(long, value_name = "ADDR")]
    remove_address: Vec<String>,
}

/// A spam score threshold in tenths, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpamBypass(Option<i64>);

#[derive(Debug, Subcommand)]
pub enum ListCmd {
    /// Add a rule to a mailbox's allow, block or ignore list.
    #[command(
        long_about = "Add a rule to a mailbox's allow, block or ignore list.\n\n\
        RULE is BoxTrapper syntax: `from|to|cc|subject PATTERN`, the pattern a \
        case-insensitive, unanchored regular expression (e.g. 'from .*@example\\.com'). \
        A bare address without spaces (bob@example.org) is shorthand for the rule \
        matching exactly that sender: from ^bob@example\\.org$"
    )]
    Add {
        /// The mailbox (any case).
        mailbox: String,
        /// allow, block or ignore.
        #[arg(value_parser = list_kind)]
        list: ListKind,
        /// `from|to|cc|subject PATTERN`, or a bare address for exactly that sender.
        rule: String,
    },
    /// Remove a rule (written as it was added, or as `list show` prints it).
    Remove {
        /// The mailbox (any case).
        mailbox: String,
        /// allow, block or ignore.
        #[arg(value_parser = list_kind)]
        list: ListKind,
        /// `from|to|cc|subject PATTERN`, or a bare address for exactly that sender.
        rule: String,
    },
    /// Print a list's rules, one per line.
    Show {
        /// The mailbox (any case).
        mailbox: String,
        /// allow, block or ignore.
        #[arg(value_parser = list_kind)]
        list: ListKind,
    },
    /// Add the rules of a list file (BoxTrapper syntax); all or nothing.
    Import {
        /// The mailbox (any case).
        mailbox: String,
        /// allow, block or ignore.
        #[arg(value_parser = list_kind)]
        list: ListKind,
        /// The list file; standard input when omitted or `-`.
        file: Option<PathBuf>,
        /// Replace the list instead of adding to it.
        #[arg(long)]
        replace: bool,
    },
    /// Print a list in the syntax `list import` reads.
    Export {
        /// The mailbox (any case).
        mailbox: String,
        /// allow, block or ignore.
        #[arg(value_parser = list_kind)]
        list: ListKind,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// One line per held message (`exim -bp`): id, age, size, mailbox, sender, subject, reason.
    List {
        /// Only this mailbox's.
        #[arg(long, value_name = "MAILBOX")]
        mailbox: Option<String>,
        /// Only mail from this sender.
        #[arg(long, value_name = "ADDRESS")]
        sender: Option<String>,
    },
    /// Number of held messages (`exim -bpc`).
    Count {
        /// Only this mailbox's.
        #[arg(long, value_name = "MAILBOX")]
        mailbox: Option<String>,
    },
    /// Everything about one held message, then its headers.
    Show {
        /// The held message's id (from `quarantine list`).
        id: String,
        /// Print the whole message, not only its headers.
        #[arg(long)]
        body: bool,
    },
    /// Deliver one held message (its sender stays unknown), or --sender's
    /// held mail for --mailbox (and allow the sender).
    Release(Target),
    /// Delete one held message, or everything held from --sender for --mailbox.
    Delete(Target),
}

/// One held message by id, or all from a sender for a mailbox.
#[derive(Debug, Args)]
pub struct Target {
    /// The held message's id (from `quarantine list`).
    #[arg(
        conflicts_with_all = ["sender", "mailbox"],
        required_unless_present = "sender"
    )]
    id: Option<String>,
    /// Every message held from this sender (needs --mailbox).
    #[arg(long, value_name = "ADDRESS", requires = "mailbox")]
    sender: Option<String>,
    /// The mailbox the sender's mail is held for.
    #[arg(long, value_name = "MAILBOX", requires = "sender")]
    mailbox: Option<String>,
}

/// `boxtrap log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The mailbox (any case).
    #[arg(long, value_name = "MAILBOX")]
    mailbox: String,
    /// How many entries, newest first.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Print a mailbox's template: its override, or the default (marked as such).
    #[command(
        long_about = "Print a mailbox's template: its override, or the built-in default. \
        The default is preceded by a `# default ...` line that is not part of the text."
    )]
    Show {
        /// The mailbox (any case).
        mailbox: String,
        /// verify, verifyreleased, returnverify or blacklist.
        #[arg(value_parser = template_name)]
        name: TemplateName,
    },
    /// Save an override from FILE or standard input, after checking it.
    Set {
        /// The mailbox (any case).
        mailbox: String,
        /// verify, verifyreleased, returnverify or blacklist.
        #[arg(value_parser = template_name)]
        name: TemplateName,
        /// The template file; standard input when omitted or `-`.
        file: Option<PathBuf>,
    },
    /// Drop the override: the default applies again.
    Reset {
        /// The mailbox (any case).
        mailbox: String,
        /// verify, verifyreleased, returnverify or blacklist.
        #[arg(value_parser = template_name)]
        name: TemplateName,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// List the challenge token keys by id, marking the current one (never the secrets).
    List,
    /// Make a new key current; older keys keep verifying their tokens until they expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum OutboundCmd {
    /// One line per outbound message: id, age, kind, recipient, state, attempts, last error.
    List,
}

// --- Value parsers ------------------------------------------------------------

fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// Longest display name accepted, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 100;

fn display_name(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err("control characters (line breaks, tabs...) are not allowed".into());
    }
    if s.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!("longer than {MAX_DISPLAY_NAME_CHARS} characters"));
    }
    Ok(s.trim().to_owned())
}

/// `5`, `5.0`, `-1.5` (stored in tenths) or `off`.
fn spam_score(s: &str) -> Result<SpamBypass, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(SpamBypass(None));
    }
    let bad =
        || "expected a score such as 5.0 (one decimal at most, -100 to 100) or off".to_owned();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (whole, tenth) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits =
        |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || tenth.len() != 1 || !all_digits(tenth) {
        return Err(bad());
    }
    let value =
        whole.parse::<i64>().map_err(|_| bad())? * 10 + tenth.parse::<i64>().map_err(|_| bad())?;
    if value > 1000 {
        return Err(bad());
    }
    Ok(SpamBypass(Some(if neg { -value } else { value })))
}

fn list_kind(s: &str) -> Result<ListKind, String> {
    s.parse::<ListKind>().map_err(|e| e.to_string())
}

fn template_name(s: &str) -> Result<TemplateName, String> {
    s.parse::<TemplateName>().map_err(|e| e.to_string())
}

// --- Shared helpers -------------------------------------------------------------

fn parse_address(what: &str, s: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(s.trim()).with_context(|| format!("invalid {what} {s:?}"))
}

/// A sender as held mail and challenges store it: the address, lower case.
fn parse_sender(s: &str) -> anyhow::Result<String> {
    parse_address("sender address", s)?;
    Ok(s.trim().to_lowercase())
}

/// The settings of the mailbox named on the command line, in any case.
async fn find_mailbox(store: &Store, arg: &str) -> anyhow::Result<MailboxSettings> {
    let key = parse_address("mailbox address", arg)?.lookup_key();
    match store.mailbox_settings_by_address(&key).await {
        Ok(s) => Ok(s),
        Err(StoreError::NotFound(_)) => {
            bail!("no such mailbox: {key} (see `boxtrap mailbox list`)")
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_held_id(s: &str) -> anyhow::Result<i64> {
    match s.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => bail!(
            "invalid held message id {s:?} (expected a number from `boxtrap quarantine list`)"
        ),
    }
}

async fn open_quarantine(config: &Config) -> anyhow::Result<Arc<Quarantine>> {
    Ok(Services::build(config, &AppDeps::default())
        .await?
        .quarantine)
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Text from a message on one line: control characters become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// [`one_line`], cut to `max` characters with an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    let s = one_line(s);
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if s.chars().count() > max => format!("{}…", &s[..cut]),
        _ => s,
    }
}

/// Message text for the terminal: CRLF becomes LF; other control
/// characters except tab become U+FFFD, so no escape sequence gets through.
fn printable(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .replace("\r\n", "\n")
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn angle(sender: &str) -> String {
    if sender.is_empty() {
        "<>".into()
    } else {
        format!("<{}>", one_line(sender))
    }
}

/// Reads FILE, or standard input for `None` and `-`, up to `limit` bytes.
/// Returns the text and a name for it in messages.
fn read_input(file: Option<&Path>, limit: u64) -> anyhow::Result<(String, String)> {
    let (name, reader): (String, Box<dyn Read>) = match file {
        None => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) if p == Path::new("-") => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) => (
            p.display().to_string(),
            Box::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            ),
        ),
    };
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() as u64 > limit {
        bail!("{name} is larger than the limit of {limit} bytes; nothing was changed");
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name} is not UTF-8 text (byte {}); nothing was changed",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok((text, name))
}

// --- mailbox set / show -------------------------------------------------------------

pub async fn mailbox_set(config: Config, args: MailboxSetArgs) -> anyhow::Result<()> {
    let MailboxSetArgs {
        address,
        challenge,
        display_name,
        keep_days,
        spam_bypass_below,
        whitelist_by_association,
        auto_whitelist_sent,
        notify_released,
        notify_blocked,
        add_address,
        remove_address,
    } = args;
    if challenge.is_none()
        && display_name.is_none()
        && keep_days.is_none()
        && spam_bypass_below.is_none()
        && whitelist_by_association.is_none()
        && auto_whitelist_sent.is_none()
        && notify_released.is_none()
        && notify_blocked.is_none()
        && add_address.is_empty()
        && remove_address.is_empty()
    {
        bail!("nothing to change: give at least one option (see `boxtrap mailbox set --help`)");
    }
    let store = open_store(&config).await?;
    let old = find_mailbox(&store, &address).await?;
    let mut s = old.clone();

    // Every address is checked before anything is written.
    let mut add: Vec<String> = Vec::new();
    for a in &add_address {
        let parsed = parse_address("address", a)?;
        let key = parsed.lookup_key();
        if key == s.address {
            bail!("{key} is the mailbox's own address; nothing changed");
        }
        if s.extra_addresses.contains(&key) {
            bail!(
                "{key} is already an address of {}; nothing changed",
                s.address
            );
        }
        if store.find_mailbox(&parsed).await?.is_some() {
            bail!("{key} is a mailbox of its own; nothing changed");
        }
        if let Some(owner) = store.extra_address_owners(&key).await?.into_iter().next() {
            bail!("{key} is already an address of {owner}; nothing changed");
        }
        if !add.contains(&key) {
            add.push(key);
        }
    }
    let mut remove: Vec<String> = Vec::new();
    for a in &remove_address {
        let key = parse_address("address", a)?.lookup_key();
        if add.contains(&key) {
            bail!("{key} is both added and removed; nothing changed");
        }
        if !s.extra_addresses.contains(&key) {
            bail!("{key} is not an address of {}; nothing changed", s.address);
        }
        if !remove.contains(&key) {
            remove.push(key);
        }
    }

    if let Some(v) = challenge {
        s.challenge_enabled = v;
    }
    if let Some(v) = display_name {
        s.display_name = v;
    }
    if let Some(v) = keep_days {
        s.keep_days = v;
    }
    if let Some(SpamBypass(v)) = spam_bypass_below {
        s.spam_bypass_below = v;
    }
    if let Some(v) = whitelist_by_association {
        s.whitelist_by_association = v;
    }
    if let Some(v) = auto_whitelist_sent {
        s.auto_whitelist_sent = v;
    }
    if let Some(v) = notify_released {
        s.notify_released = v;
    }
    if let Some(v) = notify_blocked {
        s.notify_blocked = v;
    }
    store.change_mailbox_settings(&s, &add, &remove).await?;

    say!("updated mailbox {}", s.address);
    let (before, after) = (settings_lines(&old), settings_lines(&s));
    for ((key, was), (_, now)) in before.iter().zip(&after) {
        if was != now {
            say!("  {key}: {now} (was {was})");
        }
    }
    for a in &add {
        say!("  added address {a}");
    }
    for a in &remove {
        say!("  removed address {a}");
    }
    Ok(())
}

fn spam_text(tenths: Option<i64>) -> String {
    match tenths {
        None => "off".into(),
        Some(t) => {
            let sign = if t < 0 { "-" } else { "" };
            format!("{sign}{}.{}", t.abs() / 10, t.abs() % 10)
        }
    }
}

/// The settings `mailbox set` changes, as (key, value) in display order.
fn settings_lines(s: &MailboxSettings) -> Vec<(&'static str, String)> {
    vec![
        ("challenge", on(s.challenge_enabled).into()),
        ("display-name", s.display_name.clone()),
        ("keep-days", s.keep_days.to_string()),
        ("spam-bypass-below", spam_text(s.spam_bypass_below)),
        (
            "whitelist-by-association",
            on(s.whitelist_by_association).into(),
        ),
        ("auto-whitelist-sent", on(s.auto_whitelist_sent).into()),
        ("notify-released", on(s.notify_released).into()),
        ("notify-blocked", on(s.notify_blocked).into()),
    ]
}

pub async fn mailbox_show(config: Config, address: String) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let s = find_mailbox(&store, &address).await?;
    say!("address: {}", s.address);
    for (key, value) in settings_lines(&s) {
        say!("{key}: {value}");
    }
    let extra = if s.extra_addresses.is_empty() {
        "none".to_owned()
    } else {
        s.extra_addresses.join(", ")
    };
    say!("extra-addresses: {extra}");
    for kind in [ListKind::Allow, ListKind::Block, ListKind::Ignore] {
        say!("{kind}-rules: {}", store.rules(s.id, kind).await?.len());
    }
    let mut overridden = Vec::new();
    for name in TemplateName::ALL {
        if store
            .template_override(s.id, name.as_str())
            .await?
            .is_some()
        {
            overridden.push(name.as_str());
        }
    }
    say!(
        "template-overrides: {}",
        if overridden.is_empty() {
            "none".to_owned()
        } else {
            overridden.join(", ")
        }
    );
    say!("held: {}", store.list_held(Some(s.id), None).await?.len());
    Ok(())
}

// --- list ----------------------------------------------------------------------

/// A rule as typed on the command line: BoxTrapper syntax, or a bare
/// address for exactly that sender.
fn parse_rule(text: &str) -> anyhow::Result<SenderRule> {
    let t = text.trim();
    if !t.is_empty() && !t.contains(char::is_whitespace) && EmailAddress::parse(t).is_ok() {
        return Ok(SenderRule::exact_sender(t));
    }
    SenderRule::parse(t).with_context(|| format!("invalid rule {text:?}"))
}

pub async fn list(config: Config, cmd: ListCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        ListCmd::Add {
            mailbox,
            list,
            rule,
        } => {
            let rule = parse_rule(&rule)?;
            let s = find_mailbox(&store, &mailbox).await?;
            if store.add_rule(s.id, list, &rule, now()).await? {
                say!(
                    "added to the {list} list of {}: {}",
                    s.address,
                    rule.to_line()
                );
            } else {
                say!(
                    "the {list} list of {} already has: {}",
                    s.address,
                    rule.to_line()
                );
            }
        }
        ListCmd::Remove {
            mailbox,
            list,
            rule,
        } => {
            let rule = parse_rule(&rule)?;
            let s = find_mailbox(&store, &mailbox).await?;
            match store.remove_rule(s.id, list, &rule).await {
                Ok(()) => say!(
                    "removed from the {list} list of {}: {}",
                    s.address,
                    rule.to_line()
                ),
                Err(StoreError::NotFound(_)) => bail!(
                    "the {list} list of {} has no rule `{}` (see `boxtrap list show {} {list}`)",
                    s.address,
                    rule.to_line(),
                    s.address
                ),
                Err(e) => return Err(e.into()),
            }
        }
        ListCmd::Show { mailbox, list } => {
            let s = find_mailbox(&store, &mailbox).await?;
            for rule in store.rules(s.id, list).await? {
                say!("{}", rule.to_line());
            }
        }
        ListCmd::Import {
            mailbox,
            list,
            file,
            replace,
        } => {
            let s = find_mailbox(&store, &mailbox).await?;
            let (text, name) = read_input(file.as_deref(), MAX_LIST_BYTES)?;
            let rules = rules::parse_list(&text).map_err(|e| {
                let line = text
                    .strip_prefix('\u{feff}')
                    .unwrap_or(&text)
                    .lines()
                    .nth(e.line - 1)
                    .unwrap_or("");
                anyhow::anyhow!(
                    "{name}: {e}\n  {} | {}\nnothing was imported",
                    e.line,
                    one_line(line.trim_end())
                )
            })?;
            let added = store
                .import_rules(s.id, list, &rules, replace, now())
                .await?;
            let verb = if replace { "replaced" } else { "extended" };
            say!(
                "{verb} the {list} list of {}: {added} rule(s) added ({} read)",
                s.address,
                rules.len()
            );
        }
        ListCmd::Export { mailbox, list } => {
            let s = find_mailbox(&store, &mailbox).await?;
            let rules = store.rules(s.id, list).await?;
            say!(
                "{}",
                rules::export_list(list, &rules).trim_end_matches('\n')
            );
        }
    }
    Ok(())
}

/// Largest list file `list import` reads.
const MAX_LIST_BYTES: u64 = 16 * 1024 * 1024;

// --- quarantine --------------------------------------------------------------------

fn held_line(h: &HeldSummary, now: Timestamp) -> String {
    let state = if h.state == HeldState::Held {
        String::new()
    } else {
        format!(" ({})", h.state)
    };
    format!(
        "{:>6} {:>4} {:>7} {} {} \"{}\" {}{state}",
        h.id,
        age(now.secs() - h.arrived_at.secs()),
        h.size,
        h.mailbox,
        angle(&h.sender),
        shorten(&h.subject, 50),
        h.reason,
    )
}

pub async fn quarantine_cmd(config: Config, cmd: QuarantineCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        QuarantineCmd::List { mailbox, sender } => {
            let mailbox_id = match mailbox {
                Some(m) => Some(find_mailbox(&store, &m).await?.id),
                None => None,
            };
            let sender = sender.as_deref().map(parse_sender).transpose()?;
            let now = now();
            for h in store.list_held(mailbox_id, sender.as_deref()).await? {
                say!("{}", held_line(&h, now));
            }
        }
        QuarantineCmd::Count { mailbox } => {
            let mailbox_id = match mailbox {
                Some(m) => Some(find_mailbox(&store, &m).await?.id),
                None => None,
            };
            say!("{}", store.list_held(mailbox_id, None).await?.len());
        }
        QuarantineCmd::Show { id, body } => {
            let id = parse_held_id(&id)?;
            let Some(h) = store.held(id).await? else {
                bail!("no held message {id} (see `boxtrap quarantine list`)");
            };
            show_held(&store, &h, body).await?;
        }
        QuarantineCmd::Release(target) => release(&config, &store, target).await?,
        QuarantineCmd::Delete(target) => delete(&config, &store, target).await?,
    }
    Ok(())
}

async fn show_held(store: &Store, h: &HeldSummary, body: bool) -> anyhow::Result<()> {
    let now = now();
    let s = store.mailbox_settings(h.mailbox_id).await?;
    say!("id: {}", h.id);
    say!("mailbox: {}", h.mailbox);
    say!("state: {}", h.state);
    say!("queue-id: {}", h.queue_id);
    say!("recipient: <{}>", one_line(&h.original_rcpt));
    say!("envelope-sender: {}", angle(&h.env_sender));
    say!("sender: {}", angle(&h.sender));
    say!("sender-name: {}", one_line(&h.sender_name));
    say!("subject: {}", one_line(&h.subject));
    say!("message-id: {}", one_line(&h.message_id));
    say!("date: {}", one_line(&h.date_header));
    say!("size: {}", h.size);
    say!(
        "arrived: {} ({} ago)",
        h.arrived_at.log_format(),
        age(now.secs() - h.arrived_at.secs())
    );
    say!(
        "expires: {} (keep-days {})",
        h.arrived_at.plus_secs(s.keep_days * 86400).log_format(),
        s.keep_days
    );
    say!("reason: {}", h.reason);
    say!("reason-detail: {}", one_line(&h.reason_detail));
    match h.challenge_id {
        None => say!("challenge: none"),
        Some(cid) => match store.challenge(cid).await? {
            Some(c) => {
                say!(
                    "challenge: {} ({}, expires {})",
                    c.id,
                    c.state,
                    c.expires_at.log_format()
                );
                if let Some(err) = store.challenge_delivery_error(cid).await? {
                    say!("challenge-delivery-error: {}", one_line(&err));
                }
            }
            None => say!("challenge: {cid} (gone)"),
        },
    }
    let data = store.held_data(h.id).await?.unwrap_or_default();
    let shown = if body {
        &data[..]
    } else {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 2)
            .or_else(|| data.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
            .unwrap_or(data.len());
        &data[..end]
    };
    say!();
    say!("{}", printable(shown).trim_end_matches('\n'));
    Ok(())
}

/// The mailbox and sender named by `--mailbox` and `--sender`.
async fn sender_target(
    store: &Store,
    mailbox: Option<String>,
    sender: Option<String>,
) -> anyhow::Result<(MailboxSettings, String)> {
    let (Some(mailbox), Some(sender)) = (mailbox, sender) else {
        bail!("give a held message id, or --sender and --mailbox");
    };
    let sender = parse_sender(&sender)?;
    let s = find_mailbox(store, &mailbox).await?;
    Ok((s, sender))
}

async fn release(config: &Config, store: &Store, target: Target) -> anyhow::Result<()> {
    if let Some(id) = target.id {
        let id = parse_held_id(&id)?;
        let Some(h) = store.held(id).await? else {
            bail!("no held message {id} (see `boxtrap quarantine list`)");
        };
        if h.state != HeldState::Held {
            bail!("held message {id} is already being released");
        }
        let q = open_quarantine(config).await?;
        if !q.release_one(id).await? {
            bail!(
                "held message {id} could not be delivered now; see the main log ({}); \
                 the sweeper of `boxtrap serve` will retry",
                config.main_log_path().display()
            );
        }
        say!(
            "released message {id} from {} to {} (the sender is not allowed; \
             use `quarantine release --sender` for that)",
            angle(&h.sender),
            h.mailbox
        );
        return Ok(());
    }
    let (s, sender) = sender_target(store, target.mailbox, target.sender).await?;
    let waiting = store.list_held(Some(s.id), Some(&sender)).await?;
    if !waiting.iter().any(|h| h.state == HeldState::Held) {
        bail!(
            "no mail from {sender} is held for {}; to allow the sender anyway: \
             boxtrap list add {} allow {sender}",
            s.address,
            s.address
        );
    }
    let q = open_quarantine(config).await?;
    let n = q.release_sender(s.id, &sender, ReleasedBy::Owner).await?;
    say!(
        "released {n} message(s) from {sender} to {}; {sender} is on the allow list",
        s.address
    );
    let left = store.list_held(Some(s.id), Some(&sender)).await?.len();
    if left > 0 {
        bail!(
            "{left} message(s) from {sender} could not be delivered now; see the main log ({})",
            config.main_log_path().display()
        );
    }
    Ok(())
}

async fn delete(config: &Config, store: &Store, target: Target) -> anyhow::Result<()> {
    if let Some(id) = target.id {
        let id = parse_held_id(&id)?;
        let Some(h) = store.held(id).await? else {
            bail!("no held message {id} (see `boxtrap quarantine list`)");
        };
        if h.state != HeldState::Held {
            bail!("held message {id} is being released and cannot be deleted");
        }
        let q = open_quarantine(config).await?;
        if !q.delete_one(id).await? {
            bail!("held message {id} is gone (released or deleted meanwhile)");
        }
        say!(
            "deleted message {id} from {} to {}",
            angle(&h.sender),
            h.mailbox
        );
        return Ok(());
    }
    let (s, sender) = sender_target(store, target.mailbox, target.sender).await?;
    let held: Vec<_> = store
        .list_held(Some(s.id), Some(&sender))
        .await?
        .into_iter()
        .filter(|h| h.state == HeldState::Held)
        .collect();
    if held.is_empty() {
        bail!("no mail from {sender} is held for {}", s.address);
    }
    let q = open_quarantine(config).await?;
    let mut n = 0;
    for h in &held {
        if q.delete_one(h.id).await? {
            n += 1;
        }
    }
    say!("deleted {n} message(s) from {sender} to {}", s.address);
    Ok(())
}

// --- log ------------------------------------------------------------------------------

pub async fn log(config: Config, args: LogArgs) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let s = find_mailbox(&store, &args.mailbox).await?;
    for a in store.activity(s.id, args.limit).await? {
        let sender = if a.sender.is_empty() {
            "<>".to_owned()
        } else {
            one_line(&a.sender)
        };
        say!(
            "{}  {}  {}  {}",
            a.at.log_format(),
            a.action,
            sender,
            one_line(&a.detail)
        );
    }
    Ok(())
}

// --- template -------------------------------------------------------------------------

/// The line a template error points at, if any.
fn error_line(e: &TemplateError) -> Option<usize> {
    match e {
        TemplateError::ForbiddenTag { line, .. } | TemplateError::ForbiddenOperator { line } => {
            Some(*line)
        }
        TemplateError::UnknownVariable { line, .. }
        | TemplateError::Syntax { line, .. }
        | TemplateError::Render { line, .. } => *line,
        _ => None,
    }
}

pub async fn template(config: Config, cmd: TemplateCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        TemplateCmd::Show { mailbox, name } => {
            let s = find_mailbox(&store, &mailbox).await?;
            match store.template_override(s.id, name.as_str()).await? {
                Some(text) => say!("{}", text.trim_end_matches('\n')),
                None => {
                    say!("# default {name} template ({} has no override)", s.address);
                    say!("{}", templates::default_text(name).trim_end_matches('\n'));
                }
            }
        }
        TemplateCmd::Set {
            mailbox,
            name,
            file,
        } => {
            let s = find_mailbox(&store, &mailbox).await?;
            let (text, source) = read_input(file.as_deref(), MAX_TEMPLATE_BYTES as u64)?;
            if let Err(e) = templates::validate(name, &text) {
                let mut msg = format!("{source}: the {name} template is refused: {e}");
                if let Some(n) = error_line(&e)
                    && let Some(line) = text.lines().nth(n.saturating_sub(1))
                {
                    msg.push_str(&format!("\n  {n} | {}", one_line(line.trim_end())));
                }
                msg.push_str("\nnothing was saved");
                bail!(msg);
            }
            store
                .set_template_override(s.id, name.as_str(), Some(&text), now())
                .await?;
            say!(
                "saved the {name} template of {} ({} bytes)",
                s.address,
                text.len()
            );
        }
        TemplateCmd::Reset { mailbox, name } => {
            let s = find_mailbox(&store, &mailbox).await?;
            let had = store
                .template_override(s.id, name.as_str())
                .await?
                .is_some();
            store
                .set_template_override(s.id, name.as_str(), None, now())
                .await?;
            if had {
                say!(
                    "reset the {name} template of {}: the default applies",
                    s.address
                );
            } else {
                say!("{} had no {name} override: the default applies", s.address);
            }
        }
    }
    Ok(())
}

// --- key ------------------------------------------------------------------------------

pub async fn key(config: Config, cmd: KeyCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let configured = !config.challenge.secret.is_empty();
    match cmd {
        KeyCmd::List => {
            let (keys, current) = store.token_keys().await?;
            if configured {
                say!("0  current  (the [challenge] secret in the configuration)");
            } else if keys.is_empty() {
                say!("no token keys yet: `boxtrap serve` or `boxtrap key rotate` makes the first");
            }
            for (id, _) in keys {
                if configured && id == 0 {
                    continue;
                }
                let mark = if !configured && Some(id) == current {
                    "  current"
                } else {
                    ""
                };
                say!("{id}{mark}");
            }
        }
        KeyCmd::Rotate => {
            if configured {
                bail!(
                    "the [challenge] secret in the configuration is the token key, so there \
                     is nothing to rotate here; to use keys kept in the database (which \
                     `key rotate` manages), remove the secret from the configuration"
                );
            }
            // The first key, if there is none yet, exactly as `serve` makes it.
            crate::challenge::issue::load_keyring(&store, &config.challenge).await?;
            let (keys, _) = store.token_keys().await?;
            let max = keys.iter().map(|(id, _)| *id).max().unwrap_or(0);
            let id = max
                .checked_add(1)
                .context("no token key id is left (the largest is in use)")?;
            let key = TokenKey::generate(id);
            store.add_token_key(id, &key.to_hex(), true).await?;
            say!(
                "token key {id} is now current; older keys still verify the tokens they \
                 signed until those expire"
            );
            say!("restart running `boxtrap serve` processes so they sign new challenges with it");
        }
    }
    Ok(())
}

// --- outbound ---------------------------------------------------------------------------

pub async fn outbound(config: Config, cmd: OutboundCmd) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        OutboundCmd::List => {
            let now = now();
            for o in store.list_outbound().await? {
                say!(
                    "{:>6} {:>4} {} {} {} attempts={} {}",
                    o.id,
                    age(now.secs() - o.created_at.secs()),
                    o.kind,
                    angle(&o.rcpt),
                    o.state,
                    o.attempts,
                    one_line(&o.last_error)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_scores_are_read_in_tenths() {
        for (text, tenths) in [
            ("5", Some(50)),
            ("5.0", Some(50)),
            ("4.5", Some(45)),
            ("-1.5", Some(-15)),
            ("+2", Some(20)),
            ("0", Some(0)),
            ("100", Some(1000)),
            ("off", None),
            ("OFF", None),
        ] {
            assert_eq!(spam_score(text), Ok(SpamBypass(tenths)), "{text}");
        }
        for bad in [
            "", "five", "5.", ".5", "5.25", "100.1", "1e3", "5,0", "--1", "1000",
        ] {
            assert!(spam_score(bad).is_err(), "{bad}");
        }
        assert_eq!(spam_text(Some(50)), "5.0");
        assert_eq!(spam_text(Some(-15)), "-1.5");
        assert_eq!(spam_text(Some(-5)), "-0.5");
        assert_eq!(spam_text(None), "off");
    }

    #[test]
    fn a_bare_address_is_the_exact_sender_rule() {
        assert_eq!(
            parse_rule("Bob@Example.org").unwrap(),
            SenderRule::exact_sender("bob@example.org")
        );
        assert_eq!(
            parse_rule("from .*@example\\.com").unwrap().to_line(),
            "from .*@example\\.com"
        );
        assert!(parse_rule("bob@example.org extra").is_err());
        assert!(parse_rule("from (unclosed").is_err());
    }

    #[test]
    fn message_text_cannot_reach_the_terminal_raw() {
        assert_eq!(one_line("a\r\nb\x1b[31mc"), "a  b [31mc");
        assert_eq!(
            printable(b"A: 1\r\nB:\t\x1b]0;x\x07\r\n"),
            "A: 1\nB:\t\u{fffd}]0;x\u{fffd}\n"
        );
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
        assert_eq!(age(-5), "0s");
        assert_eq!(age(300), "5m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(2 * 86400 + 5), "2d");
    }
}
