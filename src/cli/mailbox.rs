//! `boxtrap mailbox`: mailboxes (one Maildir and one owner each), their
//! owners' passwords, and their challenge-response settings and extra
//! addresses (`mailbox set|show`).

use super::{Admin, parse_address, parse_address_trimmed, parse_domain, parse_local_address};
use crate::challenge::templates::TemplateName;
use crate::config::{ByteSize, ChallengeConfig, MIN_QUARANTINE_BYTES};
use crate::delivery::maildir::Maildirs;
use crate::password;
use crate::policy::rules::ListKind;
use crate::store::settings::{
    MailboxSettings, parse_digest, parse_display_name, parse_keep_days, parse_on_off,
    parse_spam_score, spam_score_text,
};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal};

#[derive(Debug, Subcommand)]
pub enum MailboxCmd {
    /// Add a mailbox (its domain must exist). Asks for the owner's password.
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
        /// Create the mailbox without a password (the owner cannot log in).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
    },
    /// List mailboxes.
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove a mailbox and its aliases; its Maildir stays on disk.
    Remove { address: String },
    /// Set a mailbox owner's password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Change a mailbox's challenge-response settings and extra addresses.
    Set(MailboxSetArgs),
    /// Print a mailbox's settings, extra addresses and list sizes.
    Show {
        /// The mailbox (any case).
        address: String,
    },
}

#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input instead of
    /// prompting.
    #[arg(long)]
    password_stdin: bool,
}

/// `boxtrap mailbox set`: every option is optional, at least one is needed.
#[derive(Debug, Args)]
pub struct MailboxSetArgs {
    /// The mailbox (any case).
    address: String,
    /// Challenge-response for this mailbox.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    challenge: Option<bool>,
    /// Name shown on challenge mails ("" for none).
    #[arg(long, value_name = "NAME", value_parser = parse_display_name)]
    display_name: Option<String>,
    /// Days held mail is kept before it is purged (1 to 365).
    #[arg(long, value_name = "DAYS", value_parser = parse_keep_days)]
    keep_days: Option<i64>,
    /// Spam score below which mail is delivered without a challenge
    /// (default -2.5), or off.
    #[arg(long, value_name = "SCORE|off", value_parser = spam_score, allow_negative_numbers = true)]
    spam_bypass_below: Option<SpamBypass>,
    /// Spam score at or above which mail is held without a challenge
    /// (default 5.0), or off. Mail at or above the server's
    /// spam.reject_score is refused before it is held.
    #[arg(long, value_name = "SCORE|off", value_parser = spam_score, allow_negative_numbers = true)]
    spam_no_challenge_at: Option<SpamBypass>,
    /// Mail from an allowed sender also allows the other addresses in its
    /// To/Cc (off by default): only when its From: is on the allow list and
    /// its envelope sender has the same domain, at most
    /// challenge.max_associates_per_message per message.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    whitelist_by_association: Option<bool>,
    /// People the owner writes to are allowed automatically.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    auto_whitelist_sent: Option<bool>,
    /// Send the `verifyreleased` mail after a sender verified.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    notify_released: Option<bool>,
    /// Send the `blacklist` mail when a blocked sender's mail is discarded.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    notify_blocked: Option<bool>,
    /// Held messages the quarantine may hold before new mail is refused
    /// with 452 4.2.2 (0: no limit; default: the server's [challenge]
    /// quarantine_max_messages).
    #[arg(long, value_name = "N|default", value_parser = message_quota)]
    quarantine_max_messages: Option<Quota>,
    /// Bytes the quarantine may hold, e.g. 200M (at least 1M; 0: no limit;
    /// default: the server's [challenge] quarantine_max_bytes).
    #[arg(long, value_name = "SIZE|default", value_parser = byte_quota)]
    quarantine_max_bytes: Option<Quota>,
    /// How often the owner gets a digest of newly held mail (default daily).
    #[arg(long, value_name = "never|hourly|daily|weekly", value_parser = parse_digest)]
    digest: Option<crate::store::digest::DigestFrequency>,
    /// The owner is an admin: the web UI's /admin pages show every
    /// mailbox, its challenge switch and quarantine, and let the owner act
    /// for other owners (recorded in their activity logs).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    admin: Option<bool>,
    /// Another address that counts as this mailbox (repeatable).
    #[arg(long, value_name = "ADDR")]
    add_address: Vec<String>,
    /// Stop counting ADDR as this mailbox (repeatable).
    #[arg(long, value_name = "ADDR")]
    remove_address: Vec<String>,
}

/// A mailbox's own quarantine quota (0: no limit), or `None` for the
/// server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota(Option<i64>);

/// A number of messages, or `default`.
fn message_quota(s: &str) -> Result<Quota, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("default") {
        return Ok(Quota(None));
    }
    t.parse::<u64>()
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .map(|n| Quota(Some(n)))
        .ok_or_else(|| "expected a number of messages (0 for no limit) or default".to_owned())
}

/// A size (`200M`, `1G`, a number of bytes), or `default`.
fn byte_quota(s: &str) -> Result<Quota, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("default") {
        return Ok(Quota(None));
    }
    let size = ByteSize::parse(t)?;
    if size.0 != 0 && size.0 < MIN_QUARANTINE_BYTES {
        return Err(format!(
            "{size} is less than 1M (give a unit, e.g. 200M; 0 for no limit)"
        ));
    }
    i64::try_from(size.0)
        .map(|n| Quota(Some(n)))
        .map_err(|_| format!("{s:?} is too large"))
}

/// A spam score threshold in tenths, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpamBypass(Option<i64>);

/// A spam score threshold (see [`parse_spam_score`]).
fn spam_score(s: &str) -> Result<SpamBypass, String> {
    parse_spam_score(s).map(SpamBypass)
}

fn read_password(src: &PasswordSource) -> anyhow::Result<String> {
    let pw = if src.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for a password on; use --password-stdin");
        }
        let a = rpassword::prompt_password("Password: ").context("cannot read password")?;
        let b = rpassword::prompt_password("Again: ").context("cannot read password")?;
        if a != b {
            bail!("the two passwords differ; nothing changed");
        }
        a
    };
    Ok(password::hash(&pw)?)
}

pub async fn run(admin: &Admin, cmd: MailboxCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        MailboxCmd::Add {
            address,
            password,
            no_password,
        } => {
            let a = parse_local_address(&address)?;
            if store.domain_id(a.domain()).await?.is_none() {
                bail!(
                    "domain {} is not a local domain; add it first with `boxtrap domain add {}`",
                    a.domain(),
                    a.domain()
                );
            }
            let hash = if no_password {
                String::new()
            } else {
                read_password(&password)?
            };
            let m = store.add_mailbox(&a, &hash, admin.now()).await?;
            let maildirs = Maildirs::new(admin.config.maildir_root(), &admin.config.hostname);
            say!(
                "added mailbox {} (Maildir {})",
                m.address,
                maildirs.path_for(&m.address).display()
            );
        }
        MailboxCmd::List { domain } => {
            let d = domain.as_deref().map(parse_domain).transpose()?;
            let admins = store.admins().await?;
            for m in store.list_mailboxes(d.as_ref().map(|d| d.as_str())).await? {
                if admins.contains(&m.address) {
                    say!("{} (admin)", m.address);
                } else {
                    say!("{}", m.address);
                }
            }
        }
        MailboxCmd::Remove { address } => {
            let a = parse_address(&address)?;
            store.remove_mailbox(&a).await?;
            say!(
                "removed mailbox {} (its Maildir was left on disk)",
                a.lookup_key()
            );
        }
        MailboxCmd::Passwd { address, password } => {
            let a = parse_address(&address)?;
            if store.find_mailbox(&a).await?.is_none() {
                bail!("no such mailbox: {}", a.lookup_key());
            }
            let hash = read_password(&password)?;
            store.set_password_hash(&a, &hash).await?;
            say!("password changed for {}", a.lookup_key());
        }
        MailboxCmd::Set(args) => set(admin, args).await?,
        MailboxCmd::Show { address } => show(admin, &address).await?,
    }
    Ok(())
}

async fn set(admin: &Admin, args: MailboxSetArgs) -> anyhow::Result<()> {
    let MailboxSetArgs {
        address,
        challenge,
        display_name,
        keep_days,
        spam_bypass_below,
        spam_no_challenge_at,
        whitelist_by_association,
        auto_whitelist_sent,
        notify_released,
        notify_blocked,
        quarantine_max_messages,
        quarantine_max_bytes,
        digest,
        admin: make_admin,
        add_address,
        remove_address,
    } = args;
    if challenge.is_none()
        && display_name.is_none()
        && keep_days.is_none()
        && spam_bypass_below.is_none()
        && spam_no_challenge_at.is_none()
        && whitelist_by_association.is_none()
        && auto_whitelist_sent.is_none()
        && notify_released.is_none()
        && notify_blocked.is_none()
        && quarantine_max_messages.is_none()
        && quarantine_max_bytes.is_none()
        && digest.is_none()
        && make_admin.is_none()
        && add_address.is_empty()
        && remove_address.is_empty()
    {
        bail!("nothing to change: give at least one option (see `boxtrap mailbox set --help`)");
    }
    let store = &admin.store;
    let old = admin.mailbox(&address).await?;
    let mut s = old.clone();

    // Every address is checked before anything is written.
    let mut add: Vec<String> = Vec::new();
    for a in &add_address {
        let parsed = parse_address_trimmed("address", a)?;
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
        let key = parse_address_trimmed("address", a)?.lookup_key();
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
    if let Some(SpamBypass(v)) = spam_no_challenge_at {
        s.spam_no_challenge_at = v;
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
    if let Some(Quota(v)) = quarantine_max_messages {
        s.quarantine_max_messages = v;
    }
    if let Some(Quota(v)) = quarantine_max_bytes {
        s.quarantine_max_bytes = v;
    }
    if let Some(d) = digest {
        s.digest = d;
    }
    store.change_mailbox_settings(&s, &add, &remove).await?;
    let admin_was = store.is_admin(s.id).await?;
    if let Some(a) = make_admin {
        store.set_admin(s.id, a).await?;
    }

    say!("updated mailbox {}", s.address);
    if let Some(now) = digest
        && now != old.digest
    {
        say!("  digest: {now} (was {})", old.digest);
    }
    let quota = &admin.config.challenge;
    let (mut before, mut after) = (settings_lines(&old), settings_lines(&s));
    before.extend(quota_lines(&old, quota));
    after.extend(quota_lines(&s, quota));
    for ((key, was), (_, now)) in before.iter().zip(&after) {
        if was != now {
            say!("  {key}: {now} (was {was})");
        }
    }
    if let Some(a) = make_admin
        && a != admin_was
    {
        say!("  admin: {} (was {})", on(a), on(admin_was));
    }
    for a in &add {
        say!("  added address {a}");
    }
    for a in &remove {
        say!("  removed address {a}");
    }
    Ok(())
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The settings `mailbox set` changes, as (key, value) in display order.
fn settings_lines(s: &MailboxSettings) -> Vec<(&'static str, String)> {
    vec![
        ("challenge", on(s.challenge_enabled).into()),
        ("display-name", s.display_name.clone()),
        ("keep-days", s.keep_days.to_string()),
        ("spam-bypass-below", spam_score_text(s.spam_bypass_below)),
        (
            "spam-no-challenge-at",
            spam_score_text(s.spam_no_challenge_at),
        ),
        (
            "whitelist-by-association",
            on(s.whitelist_by_association).into(),
        ),
        ("auto-whitelist-sent", on(s.auto_whitelist_sent).into()),
        ("notify-released", on(s.notify_released).into()),
        ("notify-blocked", on(s.notify_blocked).into()),
    ]
}

/// The quarantine quota, as (key, value): the mailbox's own, or the
/// server's default marked so; 0 is "no limit".
fn quota_lines(s: &MailboxSettings, c: &ChallengeConfig) -> Vec<(&'static str, String)> {
    let shown = |own: Option<i64>, default: u64, text: fn(u64) -> String| match own {
        Some(0) => "no limit".to_owned(),
        Some(n) => text(n.unsigned_abs()),
        None if default == 0 => "no limit (default)".to_owned(),
        None => format!("{} (default)", text(default)),
    };
    vec![
        (
            "quarantine-max-messages",
            shown(s.quarantine_max_messages, c.quarantine_max_messages, |n| {
                n.to_string()
            }),
        ),
        (
            "quarantine-max-bytes",
            shown(s.quarantine_max_bytes, c.quarantine_max_bytes.0, |n| {
                ByteSize(n).to_string()
            }),
        ),
    ]
}

/// `none`, or the items separated by commas.
fn joined_or_none(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn show(admin: &Admin, address: &str) -> anyhow::Result<()> {
    let store = &admin.store;
    let s = admin.mailbox(address).await?;
    say!("address: {}", s.address);
    for (key, value) in settings_lines(&s) {
        say!("{key}: {value}");
    }
    say!("extra-addresses: {}", joined_or_none(&s.extra_addresses));
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
    say!("template-overrides: {}", joined_or_none(&overridden));
    if let Some(d) = store.digest_state(s.id).await? {
        let last = d.last_at.map_or("never".to_owned(), |t| {
            crate::clock::Timestamp(t).log_format() + " UTC"
        });
        say!("digest: {} (last sent: {last})", d.digest);
    }
    say!("admin: {}", on(store.is_admin(s.id).await?));
    say!("held: {}", store.list_held(Some(s.id), None).await?.len());
    let used = store.quarantine_use(&[s.id]).await?;
    say!("held-bytes: {}", used.first().map_or(0, |u| u.bytes));
    for (key, value) in quota_lines(&s, &admin.config.challenge) {
        say!("{key}: {value}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_quotas_are_read_and_bad_ones_refused() {
        for (text, quota) in [
            ("default", None),
            ("DEFAULT", None),
            ("0", Some(0)),
            ("250", Some(250)),
            (" 10000 ", Some(10_000)),
        ] {
            assert_eq!(message_quota(text), Ok(Quota(quota)), "{text}");
        }
        for bad in ["", "-1", "ten", "1.5", "1e3", "99999999999999999999"] {
            assert!(message_quota(bad).is_err(), "{bad}");
        }
        for (text, quota) in [
            ("default", None),
            ("0", Some(0)),
            ("1M", Some(1 << 20)),
            ("200M", Some(200 << 20)),
            ("2G", Some(2 << 30)),
            ("1048576", Some(1 << 20)),
        ] {
            assert_eq!(byte_quota(text), Ok(Quota(quota)), "{text}");
        }
        for (bad, named) in [
            ("500", "500 is less than 1M"),
            ("1023K", "1023K is less than 1M"),
            ("-1M", "is not a size"),
            ("lots", "is not a size"),
            ("99999999999G", "too large"),
        ] {
            let e = byte_quota(bad).unwrap_err();
            assert!(e.contains(named), "{bad}: {e}");
        }
    }

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
        assert_eq!(spam_score_text(Some(50)), "5.0");
        assert_eq!(spam_score_text(Some(-15)), "-1.5");
        assert_eq!(spam_score_text(Some(-5)), "-0.5");
        assert_eq!(spam_score_text(None), "off");
    }
}
