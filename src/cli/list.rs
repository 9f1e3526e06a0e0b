//! `boxtrap list`: a mailbox's allow, block and ignore lists, in
//! BoxTrapper's rule syntax, imported and exported whole.

use super::output::one_line;
use super::{Admin, read_input};
use crate::policy::rules::{self, ListKind, ParsedList, ReadRule};
use crate::store::StoreError;
use crate::store::lists::{Imported, RuleAdded, RuleSource, read_typed_rule};
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
        case-insensitive, unanchored regular expression (e.g. 'from .*@example\\.com'), \
        read as BoxTrapper reads it: a pattern in quotes is a literal ('from \
        \"a+b@x.example\"'), and `*@x.example` is `.*@x.example`. \
        A bare address without spaces (bob@example.org) is shorthand for the rule \
        matching exactly that sender: from ^bob@example\\.org$"
    )]
    Add(RuleArgs),
    /// Remove a rule (written as it was added, or as `list show` prints it).
    Remove(RuleArgs),
    /// Print a list's rules, one per line.
    Show(ListArgs),
    /// Add the rules of a list file (BoxTrapper syntax, read as `list add`
    /// reads a rule; a repeated rule once); all or nothing.
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
    async fn resolve(&self, admin: &Admin) -> anyhow::Result<(ReadRule, MailboxSettings)> {
        let rule = parse_rule(&self.rule)?;
        Ok((rule, admin.mailbox(&self.of.mailbox).await?))
    }
}

fn list_kind(s: &str) -> Result<ListKind, String> {
    s.parse::<ListKind>().map_err(|e| e.to_string())
}

/// The most rules one list may hold (`challenge.max_rules_per_list`).
fn rules_limit(admin: &Admin) -> usize {
    usize::try_from(admin.config.challenge.max_rules_per_list).unwrap_or(usize::MAX)
}

/// Largest list file `list import` reads.
const MAX_LIST_BYTES: u64 = 16 * 1024 * 1024;

/// A rule as typed on the command line ([`read_typed_rule`], as the
/// owner's lists page reads it too).
fn parse_rule(text: &str) -> anyhow::Result<ReadRule> {
    read_typed_rule(text).with_context(|| format!("invalid rule {text:?}"))
}

/// `  (written `*@x`, read as BoxTrapper reads it)` after a rule whose
/// pattern was rewritten; nothing otherwise.
fn rewrite_note(written: Option<&str>) -> String {
    written.map_or_else(String::new, |w| {
        format!(" (written `{}`, read as BoxTrapper reads it)", one_line(w))
    })
}

/// What `list import` says after the summary: each rewritten line and
/// each repeated line that was skipped, in line order.
fn import_notes(parsed: &ParsedList) -> Vec<String> {
    let rewrites = parsed.rewritten.iter().map(|r| {
        let note = format!(
            "  line {}: `{}` is read as `{}`",
            r.line,
            one_line(&r.written),
            one_line(r.rule.pattern())
        );
        (r.line, note)
    });
    let repeats = parsed.duplicates.iter().map(|d| {
        (
            d.line,
            format!("  line {}: repeats line {}, skipped", d.line, d.first),
        )
    });
    let mut notes: Vec<(usize, String)> = rewrites.chain(repeats).collect();
    notes.sort_by_key(|(line, _)| *line);
    notes.into_iter().map(|(_, note)| note).collect()
}

pub async fn run(admin: &Admin, cmd: ListCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        ListCmd::Add(args) => {
            let (ReadRule { rule, written }, s) = args.resolve(admin).await?;
            let list = args.of.list;
            let note = rewrite_note(written.as_deref());
            match store
                .add_rule_within(
                    s.id,
                    list,
                    &rule,
                    rules_limit(admin),
                    &RuleSource::Admin,
                    admin.now(),
                )
                .await?
            {
                RuleAdded::Added => say!(
                    "added to the {list} list of {}: {}{note}",
                    s.address,
                    rule.to_line()
                ),
                RuleAdded::AlreadyThere => say!(
                    "the {list} list of {} already has: {}{note}",
                    s.address,
                    rule.to_line()
                ),
                RuleAdded::ListFull { rules, limit } => bail!(
                    "the {list} list of {} is full: it holds {rules} rules, and \
                     challenge.max_rules_per_list is {limit}; remove rules first \
                     (`boxtrap list remove`) or raise the limit; nothing was added",
                    s.address
                ),
            }
        }
        ListCmd::Remove(args) => {
            let (ReadRule { rule, .. }, s) = args.resolve(admin).await?;
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
            let parsed = rules::parse_list(&text).map_err(|e| {
                let line = rules::list_lines(&text).nth(e.line - 1).unwrap_or("");
                anyhow::anyhow!(
                    "{name}: {e}\n  {} | {}\nnothing was imported",
                    e.line,
                    one_line(line.trim_end())
                )
            })?;
            let added = match store
                .import_rules(
                    s.id,
                    list,
                    &parsed.rules,
                    replace,
                    rules_limit(admin),
                    &RuleSource::Import,
                    admin.now(),
                )
                .await?
            {
                Imported::Added(n) => n,
                Imported::OverLimit { would_have, limit } => bail!(
                    "{name}: the {list} list of {} would hold {would_have} rules, over \
                     challenge.max_rules_per_list ({limit}); nothing was imported",
                    s.address
                ),
            };
            let verb = if replace { "replaced" } else { "extended" };
            let skipped = match parsed.duplicates.len() {
                0 => String::new(),
                1 => ", 1 repeated line skipped".to_string(),
                n => format!(", {n} repeated lines skipped"),
            };
            say!(
                "{verb} the {list} list of {}: {added} rule(s) added ({} read{skipped})",
                s.address,
                parsed.rules.len()
            );
            for note in import_notes(&parsed) {
                say!("{note}");
            }
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
    use crate::policy::rules::SenderRule;

    #[test]
    fn a_bare_address_is_the_exact_sender_rule() {
        assert_eq!(
            parse_rule("Bob@Example.org").unwrap().rule,
            SenderRule::exact_sender("bob@example.org")
        );
        assert_eq!(
            parse_rule("from .*@example\\.com").unwrap().rule.to_line(),
            "from .*@example\\.com"
        );
        assert!(parse_rule("bob@example.org extra").is_err());
        assert!(parse_rule("from (unclosed").is_err());
    }

    #[test]
    fn a_rule_on_the_command_line_is_read_as_a_list_line_is() {
        for line in [
            "from *@partner.example",
            "from 'newsletter+alice@shop.example'",
            "subject \\Qa.b\\E",
            "to sales@",
        ] {
            let typed = parse_rule(line).unwrap();
            let listed = rules::parse_list(line).unwrap();
            assert_eq!(listed.rules, std::slice::from_ref(&typed.rule), "{line}");
            assert_eq!(
                listed.rewritten.first().map(|r| r.written.clone()),
                typed.written,
                "{line}"
            );
        }
        let read = parse_rule("from *@partner.example").unwrap();
        assert_eq!(
            rewrite_note(read.written.as_deref()),
            " (written `*@partner.example`, read as BoxTrapper reads it)"
        );
        assert_eq!(rewrite_note(None), "");
        let error = parse_rule("from (?=x)").unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "invalid rule \"from (?=x)\": look-ahead (?=...) is a Perl regex feature boxtrap does not support"
        );
    }

    #[test]
    fn import_notes_name_each_rewritten_and_repeated_line() {
        let parsed =
            rules::parse_list("from *@p.example\nfrom .*@p.example\nto x\nto x\n").unwrap();
        assert_eq!(
            import_notes(&parsed),
            [
                "  line 1: `*@p.example` is read as `.*@p.example`",
                "  line 2: repeats line 1, skipped",
                "  line 4: repeats line 3, skipped",
            ]
        );
    }
}
