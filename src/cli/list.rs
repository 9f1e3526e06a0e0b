//! `boxtrap list`: a mailbox's allow, block and ignore lists, in
//! BoxTrapper's rule syntax, imported and exported whole.

use super::output::one_line;
use super::{Admin, read_input};
use crate::address::EmailAddress;
use crate::policy::rules::{self, ListKind, SenderRule};
use crate::store::StoreError;
use crate::store::settings::MailboxSettings;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
    Add(RuleArgs),
    /// Remove a rule (written as it was added, or as `list show` prints it).
    Remove(RuleArgs),
    /// Print a list's rules, one per line.
    Show(ListArgs),
    /// Add the rules of a list file (BoxTrapper syntax); all or nothing.
    Import {
        #[command(flatten)]
        of: ListArgs,
        /// The list file; standard input when omitted or `-`.
        file: Option<PathBuf>,
        /// Replace the list instead of adding to it.
        #[arg(long)]
        replace: bool,
    },
    /// Print a list in the syntax `list import` reads.
    Export(ListArgs),
}

/// One of a mailbox's lists.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The mailbox (any case).
    mailbox: String,
    /// allow, block or ignore.
    #[arg(value_parser = list_kind)]
    list: ListKind,
}

/// A rule of one of a mailbox's lists.
#[derive(Debug, Args)]
pub struct RuleArgs {
    #[command(flatten)]
    of: ListArgs,
    /// `from|to|cc|subject PATTERN`, or a bare address for exactly that sender.
    rule: String,
}

impl RuleArgs {
    /// The rule (checked first) and the mailbox whose list it is for.
    async fn resolve(&self, admin: &Admin) -> anyhow::Result<(SenderRule, MailboxSettings)> {
        let rule = parse_rule(&self.rule)?;
        Ok((rule, admin.mailbox(&self.of.mailbox).await?))
    }
}

fn list_kind(s: &str) -> Result<ListKind, String> {
    s.parse::<ListKind>().map_err(|e| e.to_string())
}

/// Largest list file `list import` reads.
const MAX_LIST_BYTES: u64 = 16 * 1024 * 1024;

/// A rule as typed on the command line: BoxTrapper syntax, or a bare
/// address for exactly that sender.
fn parse_rule(text: &str) -> anyhow::Result<SenderRule> {
    let t = text.trim();
    if !t.is_empty() && !t.contains(char::is_whitespace) && EmailAddress::parse(t).is_ok() {
        return Ok(SenderRule::exact_sender(t));
    }
    SenderRule::parse(t).with_context(|| format!("invalid rule {text:?}"))
}

pub async fn run(admin: &Admin, cmd: ListCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        ListCmd::Add(args) => {
            let (rule, s) = args.resolve(admin).await?;
            let list = args.of.list;
            if store.add_rule(s.id, list, &rule, admin.now()).await? {
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
        ListCmd::Remove(args) => {
            let (rule, s) = args.resolve(admin).await?;
            let list = args.of.list;
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
        ListCmd::Show(ListArgs { mailbox, list }) => {
            let s = admin.mailbox(&mailbox).await?;
            for rule in store.rules(s.id, list).await? {
                say!("{}", rule.to_line());
            }
        }
        ListCmd::Import {
            of: ListArgs { mailbox, list },
            file,
            replace,
        } => {
            let s = admin.mailbox(&mailbox).await?;
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
                .import_rules(s.id, list, &rules, replace, admin.now())
                .await?;
            let verb = if replace { "replaced" } else { "extended" };
            say!(
                "{verb} the {list} list of {}: {added} rule(s) added ({} read)",
                s.address,
                rules.len()
            );
        }
        ListCmd::Export(ListArgs { mailbox, list }) => {
            let s = admin.mailbox(&mailbox).await?;
            let rules = store.rules(s.id, list).await?;
            say!(
                "{}",
                rules::export_list(list, &rules).trim_end_matches('\n')
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
