//! Sender-list rules in BoxTrapper's syntax, so existing lists import
//! unchanged: one rule per line, `from|to|cc|subject <regex>`, the regex
//! matched case-insensitively and unanchored; `#` starts a comment line.
//!
//! This module owns the rule syntax (parsing, validating, exporting) and
//! matching one rule against a message's [`MessageFacts`]. It does not store
//! lists or decide what a match means: the store keeps the rules as the
//! lines [`SenderRule::to_line`] produces, and the policy evaluates the
//! ignore, block and allow lists in that order.

use std::{fmt, str::FromStr};

use regex::{Regex, RegexBuilder};

use crate::policy::facts::MessageFacts;

/// Longest pattern accepted, in characters.
const MAX_PATTERN_CHARS: usize = 1000;

/// Cap on a compiled pattern (and on its lazy DFA cache), so a hostile rule
/// such as `from (\w{100}){100}` is refused instead of eating memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Which of a mailbox's three sender lists a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Deliver: the sender is known.
    Allow,
    /// Refuse in the SMTP session (or discard when recipients disagree).
    Block,
    /// Drop silently (logged).
    Ignore,
}

impl ListKind {
    /// Every list, in evaluation order: ignore, then block, then allow.
    pub const ALL: [ListKind; 3] = [ListKind::Ignore, ListKind::Block, ListKind::Allow];

    /// The lower-case name used in the CLI, the store and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Allow => "allow",
            ListKind::Block => "block",
            ListKind::Ignore => "ignore",
        }
    }
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListKind {
    type Err = RuleError;

    /// `allow`, `block`, `ignore`, and BoxTrapper's names `white`, `black`,
    /// `whitelist`, `blacklist`; case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" | "white" | "whitelist" => Ok(ListKind::Allow),
            "block" | "black" | "blacklist" => Ok(ListKind::Block),
            "ignore" => Ok(ListKind::Ignore),
            _ => Err(RuleError::UnknownList(s.to_string())),
        }
    }
}

/// What part of a message a rule's pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    /// The `From:` address, and the envelope sender.
    From,
    /// Each `To:` address.
    To,
    /// Each `Cc:` address.
    Cc,
    /// The decoded subject.
    Subject,
}

impl RuleField {
    /// The keyword as written in a rule.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleField::From => "from",
            RuleField::To => "to",
            RuleField::Cc => "cc",
            RuleField::Subject => "subject",
        }
    }
}

impl fmt::Display for RuleField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuleField {
    type Err = RuleError;

    /// The rule keyword, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "from" => Ok(RuleField::From),
            "to" => Ok(RuleField::To),
            "cc" => Ok(RuleField::Cc),
            "subject" => Ok(RuleField::Subject),
            _ => Err(RuleError::UnknownField(s.to_string())),
        }
    }
}

/// Why a rule (or a list name) was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    /// A blank or comment line where a rule was expected.
    #[error("empty rule (expected `from|to|cc|subject PATTERN`)")]
    Empty,
    /// The first word is not a field keyword.
    #[error("unknown field '{0}' (expected from, to, cc or subject)")]
    UnknownField(String),
    /// A field keyword with nothing after it.
    #[error("missing pattern (expected `from|to|cc|subject PATTERN`)")]
    MissingPattern,
    /// The pattern spans lines; lists are line-based, so it could not be
    /// exported and imported again.
    #[error("the pattern contains a line break")]
    LineBreak,
    /// The pattern is longer than 1000 characters.
    #[error("pattern longer than {MAX_PATTERN_CHARS} characters")]
    TooLong,
    /// The pattern is not a valid regular expression, or compiles too big.
    #[error("invalid regular expression: {0}")]
    BadRegex(String),
    /// Not the name of a list.
    #[error("unknown list '{0}' (expected allow, block or ignore)")]
    UnknownList(String),
}

/// An error in a list file: which line, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {error}")]
pub struct ListError {
    /// 1-based line number in the imported text.
    pub line: usize,
    /// What is wrong with that line.
    pub error: RuleError,
}

/// One rule of a sender list: a field and a case-insensitive, unanchored
/// regular expression.
#[derive(Debug, Clone)]
pub struct SenderRule {
    field: RuleField,
    /// The pattern as written, kept for display and export.
    pattern: String,
    matcher: Matcher,
}

/// How a rule matches a value. Every rule written by a person is a regex;
/// [`SenderRule::exact_sender`] falls back to a literal only for an address
/// too long to compile, so that it can stay infallible.
#[derive(Debug, Clone)]
enum Matcher {
    Regex(Regex),
    /// A lower-cased address compared for equality, ignoring case.
    Exact(String),
}

impl Matcher {
    fn is_match(&self, value: &str) -> bool {
        match self {
            Matcher::Regex(regex) => regex.is_match(value),
            Matcher::Exact(address) => value.trim().to_lowercase() == *address,
        }
    }
}

impl SenderRule {
    /// Parses one rule line: the field keyword (case-insensitive), one or
    /// more spaces or tabs, then the pattern to the end of the line with
    /// trailing whitespace trimmed.
    pub fn parse(line: &str) -> Result<SenderRule, RuleError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Err(RuleError::Empty);
        }
        let (keyword, pattern) = line
            .split_once([' ', '\t'])
            .map_or((line, ""), |(keyword, rest)| (keyword, rest));
        let field = keyword.parse::<RuleField>()?;
        SenderRule::new(field, pattern)
    }

    /// A rule from its parts. Surrounding whitespace of the pattern is
    /// dropped, as [`SenderRule::parse`] would.
    pub fn new(field: RuleField, pattern: &str) -> Result<SenderRule, RuleError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(RuleError::MissingPattern);
        }
        if pattern.contains(['\r', '\n']) {
            return Err(RuleError::LineBreak);
        }
        if pattern.chars().count() > MAX_PATTERN_CHARS {
            return Err(RuleError::TooLong);
        }
        let regex = compile(pattern).map_err(|e| RuleError::BadRegex(e.to_string()))?;
        Ok(SenderRule {
            field,
            pattern: pattern.to_string(),
            matcher: Matcher::Regex(regex),
        })
    }

    /// A rule that matches exactly this sender: `from ^alice@example\.com$`
    /// (lower-cased, regex-escaped). Release uses it to allow a verified
    /// sender without allowing look-alikes.
    pub fn exact_sender(address: &str) -> SenderRule {
        let address = address.trim().to_lowercase();
        let pattern = format!("^{}$", regex::escape(&address));
        let matcher = compile(&pattern).map_or(Matcher::Exact(address), Matcher::Regex);
        SenderRule {
            field: RuleField::From,
            pattern,
            matcher,
        }
    }

    /// The field the pattern is matched against.
    pub fn field(&self) -> RuleField {
        self.field
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The rule as one line of a list file, e.g. `from .*@example\.com`;
    /// [`SenderRule::parse`] reads it back to the same rule.
    pub fn to_line(&self) -> String {
        format!("{} {}", self.field, self.pattern)
    }

    /// Whether the rule matches the message: `from` against the `From:`
    /// address and the envelope sender (either one matching is enough),
    /// `to` and `cc` against each address of that header, `subject`
    /// against the decoded subject.
    pub fn matches(&self, facts: &MessageFacts, envelope_sender: &str) -> bool {
        let any = |values: &[String]| values.iter().any(|v| self.matcher.is_match(v));
        match self.field {
            RuleField::From => {
                facts
                    .from
                    .as_deref()
                    .is_some_and(|from| self.matcher.is_match(from))
                    || (!envelope_sender.is_empty() && self.matcher.is_match(envelope_sender))
            }
            RuleField::To => any(&facts.to),
            RuleField::Cc => any(&facts.cc),
            RuleField::Subject => self.matcher.is_match(&facts.subject),
        }
    }
}

/// Two rules are equal when they read the same: same field, same pattern.
impl PartialEq for SenderRule {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.pattern == other.pattern
    }
}

impl Eq for SenderRule {}

impl fmt::Display for SenderRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.pattern)
    }
}

impl FromStr for SenderRule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SenderRule::parse(s)
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Parses a whole list file, all or nothing: blank lines and lines starting
/// with `#` are skipped, any other line must be a rule. The error names the
/// first bad line (1-based) and why, e.g.
/// `line 3: unknown field 'form' (expected from, to, cc or subject)`.
pub fn parse_list(text: &str) -> Result<Vec<SenderRule>, ListError> {
    // A byte-order mark from a Windows editor is not part of the first rule.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(index, line)| {
            SenderRule::parse(line).map_err(|error| ListError {
                line: index + 1,
                error,
            })
        })
        .collect()
}

/// Exports rules in the same syntax, one per line, after a header comment;
/// [`parse_list`] reads the result back to the same rules.
pub fn export_list(kind: ListKind, rules: &[SenderRule]) -> String {
    let mut out = format!(
        "# boxtrap {kind} list: one rule per line, `from|to|cc|subject PATTERN`,\n\
         # the pattern a case-insensitive, unanchored regular expression (BoxTrapper syntax).\n"
    );
    for rule in rules {
        out.push_str(&rule.to_line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(line: &str) -> SenderRule {
        SenderRule::parse(line).unwrap()
    }

    fn facts(from: Option<&str>, to: &[&str], cc: &[&str], subject: &str) -> MessageFacts {
        MessageFacts {
            from: from.map(str::to_string),
            to: to.iter().map(|s| s.to_string()).collect(),
            cc: cc.iter().map(|s| s.to_string()).collect(),
            subject: subject.to_string(),
            ..MessageFacts::default()
        }
    }

    #[test]
    fn good_rules_parse() {
        let cases = [
            ("from .*@example\\.com", RuleField::From, ".*@example\\.com"),
            (
                "FROM alice@example.com",
                RuleField::From,
                "alice@example.com",
            ),
            ("To\t\t^sales@", RuleField::To, "^sales@"),
            (
                "cc   team@example\\.org   ",
                RuleField::Cc,
                "team@example\\.org",
            ),
            (
                "subject  [Invoice #42]  \r",
                RuleField::Subject,
                "[Invoice #42]",
            ),
            (
                "subject hello world  again",
                RuleField::Subject,
                "hello world  again",
            ),
            ("  from bob@", RuleField::From, "bob@"),
            ("from #notacomment", RuleField::From, "#notacomment"),
            (
                "from (?-i)^CaseSensitive@x$",
                RuleField::From,
                "(?-i)^CaseSensitive@x$",
            ),
            ("from \\w+@\\w+\\.com", RuleField::From, "\\w+@\\w+\\.com"),
        ];
        for (line, field, pattern) in cases {
            let rule = SenderRule::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(rule.field(), field, "line {line:?}");
            assert_eq!(rule.pattern(), pattern, "line {line:?}");
        }
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let long = format!("from {}", "a".repeat(MAX_PATTERN_CHARS + 1));
        type Check = fn(&RuleError) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("", |e| *e == RuleError::Empty),
            ("   ", |e| *e == RuleError::Empty),
            ("# a comment", |e| *e == RuleError::Empty),
            ("form alice@example.com", |e| {
                *e == RuleError::UnknownField("form".into())
            }),
            ("from:alice@example.com", |e| {
                *e == RuleError::UnknownField("from:alice@example.com".into())
            }),
            ("alice@example.com", |e| {
                *e == RuleError::UnknownField("alice@example.com".into())
            }),
            ("bcc x", |e| *e == RuleError::UnknownField("bcc".into())),
            ("from", |e| *e == RuleError::MissingPattern),
            ("subject \t ", |e| *e == RuleError::MissingPattern),
            ("from a\nb", |e| *e == RuleError::LineBreak),
            (&long, |e| *e == RuleError::TooLong),
            ("from (unclosed", |e| matches!(e, RuleError::BadRegex(_))),
            ("from [z-a]", |e| matches!(e, RuleError::BadRegex(_))),
            ("from (?<!x)y", |e| matches!(e, RuleError::BadRegex(_))),
            (
                "from (\\w{100}){100}",
                |e| matches!(e, RuleError::BadRegex(m) if m.contains("size limit")),
            ),
        ];
        for (line, check) in cases {
            match SenderRule::parse(line) {
                Ok(rule) => panic!("{line:?} parsed as {rule}"),
                Err(error) => assert!(check(&error), "{line:?} gave {error:?}"),
            }
        }
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            RuleError::UnknownField("form".into()).to_string(),
            "unknown field 'form' (expected from, to, cc or subject)"
        );
        assert_eq!(
            RuleError::TooLong.to_string(),
            "pattern longer than 1000 characters"
        );
        let Err(RuleError::BadRegex(message)) = SenderRule::parse("from (x") else {
            panic!("expected a regex error");
        };
        assert!(message.contains("unclosed group"), "{message}");
    }

    #[test]
    fn rules_match_the_right_field() {
        let plain = facts(
            Some("alice@example.com"),
            &["sales@shop.example", "Bob@Shop.example"],
            &["team@lists.example.org"],
            "Your Invoice #42 is ready",
        );
        let cases = [
            // rule, envelope sender, facts, expected
            ("from .*@example\\.com", "", &plain, true),
            ("from ALICE@EXAMPLE.COM", "", &plain, true),
            ("from lice@exam", "", &plain, true),
            ("from ^lice@", "", &plain, false),
            ("from alice@example\\.com$", "", &plain, true),
            ("from example\\.org", "", &plain, false),
            ("from sales@shop", "", &plain, false),
            (
                "from bounces@lists\\.example",
                "list-bounces@lists.example",
                &plain,
                true,
            ),
            ("from bounces@lists\\.example", "", &plain, false),
            ("to ^sales@", "", &plain, true),
            ("to ^bob@shop\\.example$", "", &plain, true),
            ("to alice", "", &plain, false),
            ("to team@lists", "", &plain, false),
            ("cc team@lists", "", &plain, true),
            ("cc sales", "", &plain, false),
            ("subject invoice #\\d+", "", &plain, true),
            ("subject ^invoice", "", &plain, false),
            ("subject (?-i)invoice", "", &plain, false),
            ("subject alice", "", &plain, false),
        ];
        for (line, envelope, facts, want) in cases {
            assert_eq!(rule(line).matches(facts, envelope), want, "rule {line:?}");
        }
    }

    #[test]
    fn from_rules_use_the_envelope_sender_when_there_is_no_from() {
        let anonymous = facts(None, &[], &[], "");
        assert!(rule("from @example\\.com").matches(&anonymous, "bob@example.com"));
        assert!(!rule("from @example\\.com").matches(&anonymous, ""));
        assert!(!rule("from ^$").matches(&anonymous, ""));
        assert!(rule("subject ^$").matches(&anonymous, ""));
        assert!(!rule("to .").matches(&anonymous, "bob@example.com"));
    }

    #[test]
    fn a_list_parses_all_or_nothing_with_line_numbers() {
        let text = "\u{feff}# allow list\n\
                    \n\
                    from .*@example\\.com\n\
                    \t# indented comment\r\n\
                    subject ^\\[rust-users\\]  \r\n\
                    TO billing@\n";
        let rules = parse_list(text).unwrap();
        assert_eq!(
            rules.iter().map(SenderRule::to_line).collect::<Vec<_>>(),
            [
                "from .*@example\\.com",
                "subject ^\\[rust-users\\]",
                "to billing@"
            ]
        );

        let bad = "from a@example\\.com\n# comment\nform b@example.com\nto c@\nsubject (";
        let error = parse_list(bad).unwrap_err();
        assert_eq!(error.line, 3);
        assert_eq!(error.error, RuleError::UnknownField("form".into()));
        assert_eq!(
            error.to_string(),
            "line 3: unknown field 'form' (expected from, to, cc or subject)"
        );

        let error = parse_list("from a\nfrom b\ncc c\nto d\nsubject (x").unwrap_err();
        assert_eq!(error.line, 5);
        assert!(matches!(error.error, RuleError::BadRegex(_)));

        assert_eq!(parse_list("").unwrap(), []);
        assert_eq!(parse_list("# nothing but comments\n\n").unwrap(), []);
    }

    #[test]
    fn export_then_import_gives_the_same_rules() {
        let rules = vec![
            rule("from .*@example\\.com"),
            rule("To ^sales@shop\\.example$"),
            rule("cc team@"),
            rule("subject #urgent  and   spaced"),
            SenderRule::exact_sender("Alice.B+tag@Example.com"),
        ];
        let text = export_list(ListKind::Allow, &rules);
        assert!(text.starts_with("# boxtrap allow list"), "{text}");
        assert!(
            text.ends_with("from ^alice\\.b\\+tag@example\\.com$\n"),
            "{text}"
        );
        assert_eq!(parse_list(&text).unwrap(), rules);
        for rule in &rules {
            assert_eq!(&SenderRule::parse(&rule.to_line()).unwrap(), rule);
        }
        assert_eq!(
            export_list(ListKind::Ignore, &[]).lines().count(),
            2,
            "only the header comment"
        );
    }

    #[test]
    fn exact_sender_matches_only_that_address() {
        let allowed = SenderRule::exact_sender("a.b+c@x.com");
        assert!(matches!(allowed.matcher, Matcher::Regex(_)));
        let longest = format!("{}@{}.example", "l".repeat(64), "d".repeat(180));
        assert!(matches!(
            SenderRule::exact_sender(&longest).matcher,
            Matcher::Regex(_)
        ));
        assert_eq!(allowed.to_line(), "from ^a\\.b\\+c@x\\.com$");
        let cases = [
            ("a.b+c@x.com", true),
            ("A.B+C@X.COM", true),
            ("aXb+c@x.com", false),
            ("a.bbc@x.com", false),
            ("a.b+c@xycom", false),
            ("za.b+c@x.com", false),
            ("a.b+c@x.com.evil", false),
        ];
        for (from, want) in cases {
            let message = facts(Some(from), &[], &[], "");
            assert_eq!(allowed.matches(&message, ""), want, "from {from:?}");
        }
        assert!(allowed.matches(&facts(None, &[], &[], ""), "A.b+c@x.com"));
    }

    #[test]
    fn exact_sender_of_an_absurdly_long_address_still_matches_exactly() {
        let address = format!("{}@example.com", "x".repeat(20_000));
        let allowed = SenderRule::exact_sender(&address);
        assert!(matches!(allowed.matcher, Matcher::Exact(_)));
        assert!(allowed.matches(&facts(Some(&address.to_uppercase()), &[], &[], ""), ""));
        assert!(!allowed.matches(&facts(Some(&address[1..]), &[], &[], ""), ""));
    }

    #[test]
    fn list_kinds_parse_and_display() {
        let cases = [
            ("allow", ListKind::Allow),
            ("block", ListKind::Block),
            ("ignore", ListKind::Ignore),
            ("white", ListKind::Allow),
            ("black", ListKind::Block),
            ("Whitelist", ListKind::Allow),
            ("BLACKLIST", ListKind::Block),
        ];
        for (name, kind) in cases {
            assert_eq!(name.parse::<ListKind>(), Ok(kind), "{name}");
        }
        assert_eq!(
            "grey".parse::<ListKind>(),
            Err(RuleError::UnknownList("grey".into()))
        );
        for kind in ListKind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(kind.as_str().parse::<ListKind>(), Ok(kind));
        }
        for field in [
            RuleField::From,
            RuleField::To,
            RuleField::Cc,
            RuleField::Subject,
        ] {
            assert_eq!(field.as_str().parse::<RuleField>(), Ok(field));
        }
    }
}
