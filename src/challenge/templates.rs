//! The texts of the mails boxtrap sends to senders, named as BoxTrapper names
//! them: `verify` (the challenge), `verifyreleased` (your mail was
//! delivered), `returnverify` (your reply matched nothing) and `blacklist`
//! (your mail was not accepted).
//!
//! A template is a `Subject: ...` line, an empty line and a plain-text body,
//! with minijinja `{{ variable }}` placeholders (see [`TemplateVars`]). This
//! module owns the defaults (`templates/*.txt`), checking an owner's
//! override before it is saved ([`validate`]) and rendering ([`render`]). It
//! does not own where overrides are stored or the MIME around the text
//! ([`super::compose`]).
//!
//! Templates are rendered without auto-escaping (the text is plain; the HTML
//! part is escaped in `compose`), with unknown variables as errors, with
//! only `if` / `elif` / `else` / `endif` / `raw` tags, no `*` operator and a
//! few linear filters, so that rendering time and output stay proportional
//! to the template's size whatever an owner writes. On top of that every
//! render is bounded: at most [`FUEL`] minijinja steps, a template of at
//! most [`MAX_TEMPLATE_BYTES`] and a result of at most
//! [`MAX_RENDERED_BYTES`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use minijinja::{Environment, UndefinedBehavior, Value, context};

/// Largest override accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;

/// Largest rendered text (subject and body), in bytes: a template that
/// repeats a variable many times is refused rather than sent.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024;

/// minijinja steps one render of one part may take (minijinja's "fuel").
/// The built-in texts take a few hundred; a template at the size limit
/// that only prints variables takes a few thousand.
pub const FUEL: u64 = 100_000;

/// Header values quoted from the original message are cut to this many
/// characters: enough to recognise the message, too little to carry a payload.
const MAX_QUOTED_CHARS: usize = 200;

/// Every variable a template may use; anything else is refused at save time.
pub const VARIABLES: [&str; 10] = [
    "sender",
    "sender_name",
    "subject",
    "date",
    "mailbox",
    "mailbox_name",
    "token",
    "link",
    "held_count",
    "keep_days",
];

/// Block tags an owner may use. Loops, macros, `set` and includes are
/// refused: without fuel they could make one render run for ever.
const ALLOWED_TAGS: [&str; 6] = ["if", "elif", "else", "endif", "raw", "endraw"];

/// Nesting depth for `if` blocks; no honest template comes near it.
const RECURSION_LIMIT: usize = 32;

/// One of the four texts boxtrap sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateName {
    /// The challenge itself.
    Verify,
    /// Sent after release: the held mail was delivered.
    VerifyReleased,
    /// A reply whose token matched no open challenge.
    ReturnVerify,
    /// A block-listed sender's mail was discarded (only if the owner asks).
    Blacklist,
}

impl TemplateName {
    /// Every template, in BoxTrapper's order.
    pub const ALL: [TemplateName; 4] = [
        TemplateName::Verify,
        TemplateName::VerifyReleased,
        TemplateName::ReturnVerify,
        TemplateName::Blacklist,
    ];

    /// BoxTrapper's name for the template (also its file name in `templates/`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TemplateName::Verify => "verify",
            TemplateName::VerifyReleased => "verifyreleased",
            TemplateName::ReturnVerify => "returnverify",
            TemplateName::Blacklist => "blacklist",
        }
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateName {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<TemplateName, TemplateError> {
        TemplateName::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| TemplateError::UnknownName(s.to_string()))
    }
}

/// Why a template was refused or could not be rendered. Each names the line
/// when there is one (counting the `Subject:` line as line 1).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown template {0:?} (expected verify, verifyreleased, returnverify or blacklist)")]
    UnknownName(String),
    #[error("template is {size} bytes; the limit is {MAX_TEMPLATE_BYTES}")]
    TooLarge { size: usize },
    #[error("the rendered text is {size} bytes; the limit is {MAX_RENDERED_BYTES}")]
    RenderedTooLarge { size: usize },
    #[error("a template must start with a \"Subject: ...\" line followed by an empty line")]
    MissingSubject,
    #[error("line {line}: {{% {tag} %}} is not allowed; only if, elif, else, endif and raw")]
    ForbiddenTag { tag: String, line: usize },
    #[error("line {line}: the * operator is not allowed")]
    ForbiddenOperator { line: usize },
    #[error("{}unknown variable {name:?} (known: {})", at(*line), VARIABLES.join(", "))]
    UnknownVariable { name: String, line: Option<usize> },
    #[error("{}syntax error: {message}", at(*line))]
    Syntax {
        message: String,
        line: Option<usize>,
    },
    #[error("{}{message}", at(*line))]
    Render {
        message: String,
        line: Option<usize>,
    },
    #[error("the verify template must show {{{{ link }}}} or {{{{ token }}}}")]
    MissingLink,
}

impl TemplateError {
    /// The line the error points at, if any (the `Subject:` line is 1).
    pub fn line(&self) -> Option<usize> {
        match self {
            TemplateError::ForbiddenTag { line, .. }
            | TemplateError::ForbiddenOperator { line } => Some(*line),
            TemplateError::UnknownVariable { line, .. }
            | TemplateError::Syntax { line, .. }
            | TemplateError::Render { line, .. } => *line,
            _ => None,
        }
    }
}

fn at(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// The built-in text of a template.
pub fn default_text(name: TemplateName) -> &'static str {
    match name {
        TemplateName::Verify => include_str!("../../templates/verify.txt"),
        TemplateName::VerifyReleased => include_str!("../../templates/verifyreleased.txt"),
        TemplateName::ReturnVerify => include_str!("../../templates/returnverify.txt"),
        TemplateName::Blacklist => include_str!("../../templates/blacklist.txt"),
    }
}

/// What a template can say. Header values from the original (`subject`,
/// `sender_name`, `date`) are made single-line and shortened when rendered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TemplateVars {
    /// The address being challenged (the original's `From:`).
    pub sender: String,
    /// Its display name, or "".
    pub sender_name: String,
    /// The original's subject.
    pub subject: String,
    /// The original's `Date:` header, as written.
    pub date: String,
    /// The address that was mailed.
    pub mailbox: String,
    /// The owner's display name, or "".
    pub mailbox_name: String,
    /// The challenge token (what a reply's `verify#<token>` carries).
    pub token: String,
    /// The full verification URL.
    pub link: String,
    /// Messages held from this sender (released, for `verifyreleased`).
    pub held_count: i64,
    /// How long held mail is kept.
    pub keep_days: i64,
}

impl TemplateVars {
    /// Realistic values, for validating overrides and for previews.
    pub fn sample() -> TemplateVars {
        let token = "AQAAAAEAAAAAAAAAKgAAAABrHVTBXRyaDns_QqjGHg-bLXToow";
        TemplateVars {
            sender: "bob@example.net".to_string(),
            sender_name: "Bob Example".to_string(),
            subject: "Lunch on Friday?".to_string(),
            date: "Fri, 27 Nov 2026 14:05:53 +0000".to_string(),
            mailbox: "alice@example.test".to_string(),
            mailbox_name: "Alice Example".to_string(),
            token: token.to_string(),
            link: format!("http://127.0.0.1:8080/verify/{token}"),
            held_count: 1,
            keep_days: 15,
        }
    }

    fn to_context(&self) -> Value {
        context! {
            sender => one_line(&self.sender),
            sender_name => quoted(&self.sender_name),
            subject => quoted(&self.subject),
            date => quoted(&self.date),
            mailbox => one_line(&self.mailbox),
            mailbox_name => quoted(&self.mailbox_name),
            token => one_line(&self.token),
            link => one_line(&self.link),
            held_count => self.held_count,
            keep_days => self.keep_days,
        }
    }
}

/// A rendered template, ready for [`super::compose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: never contains CR or LF.
    pub subject: String,
    /// Plain text, `\n` line endings, ending in a newline.
    pub body: String,
}

/// Checks an owner's override at save time: size limit, starts with a
/// Subject: line + blank line, parses as a minijinja template, renders with
/// sample vars in strict-undefined mode (unknown variable = error naming
/// it), and for Verify the text must use {{ link }} or {{ token }}. Errors
/// name what is wrong (with minijinja's line number when it has one).
pub fn validate(name: TemplateName, text: &str) -> Result<(), TemplateError> {
    let sample = TemplateVars::sample();
    let rendered = render(name, text, &sample)?;
    if name == TemplateName::Verify
        && !rendered.subject.contains(&sample.token)
        && !rendered.body.contains(&sample.token)
    {
        return Err(TemplateError::MissingLink);
    }
    Ok(())
}

/// Renders `text` (the default or an override) with `vars`.
pub fn render(
    name: TemplateName,
    text: &str,
    vars: &TemplateVars,
) -> Result<Rendered, TemplateError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge { size: text.len() });
    }
    let text = text.replace("\r\n", "\n");
    let (subject, body) = split(&text)?;
    check_constructs(subject, 1)?;
    check_constructs(body, 3)?;

    let env = environment();
    let ctx = vars.to_context();
    let subject = render_part(&env, name, subject, 1, &ctx)?;
    let body = render_part(&env, name, body, 3, &ctx)?;

    let mut body = body.replace("\r\n", "\n").replace('\r', "\n");
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let size = subject.len() + body.len();
    if size > MAX_RENDERED_BYTES {
        return Err(TemplateError::RenderedTooLarge { size });
    }
    Ok(Rendered {
        // RFC 5322 §2.2: a header field is one logical line; a CR or LF from
        // a variable or a literal must never start a new header.
        subject: one_line(&subject),
        body,
    })
}

/// `(subject template, body template)` of a whole template text.
fn split(text: &str) -> Result<(&str, &str), TemplateError> {
    let (first, rest) = text.split_once('\n').ok_or(TemplateError::MissingSubject)?;
    let subject = first
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("subject:"))
        .map(|_| &first[8..])
        .ok_or(TemplateError::MissingSubject)?;
    let body = match rest.split_once('\n') {
        Some((blank, body)) if blank.trim().is_empty() => body,
        None if rest.trim().is_empty() => "",
        _ => return Err(TemplateError::MissingSubject),
    };
    Ok((subject.trim(), body))
}

fn environment() -> Environment<'static> {
    // `empty()`: no globals such as `range`, no auto-escaping; then only
    // filters whose cost is linear in their input.
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_fuel(Some(FUEL));
    env.add_filter("upper", minijinja::filters::upper);
    env.add_filter("lower", minijinja::filters::lower);
    env.add_filter("title", minijinja::filters::title);
    env.add_filter("capitalize", minijinja::filters::capitalize);
    env.add_filter("trim", minijinja::filters::trim);
    env.add_filter("default", minijinja::filters::default);
    env
}

/// Renders one part; `first_line` is where it starts in the whole text.
fn render_part(
    env: &Environment<'static>,
    name: TemplateName,
    source: &str,
    first_line: usize,
    ctx: &Value,
) -> Result<String, TemplateError> {
    let line = |err: &minijinja::Error| err.line().map(|l| l + first_line - 1);
    let template = env
        .template_from_named_str(name.as_str(), source)
        .map_err(|err| TemplateError::Syntax {
            message: describe(&err),
            line: line(&err),
        })?;
    let unknown: BTreeSet<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !VARIABLES.contains(&v.as_str()))
        .collect();
    if let Some(unknown) = unknown.into_iter().next() {
        let line = line_of_variable(source, &unknown).map(|l| l + first_line - 1);
        return Err(TemplateError::UnknownVariable {
            name: unknown,
            line,
        });
    }
    template.render(ctx).map_err(|err| TemplateError::Render {
        message: describe(&err),
        line: line(&err),
    })
}

fn describe(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// The first line with a tag that mentions `name` as a whole word.
fn line_of_variable(source: &str, name: &str) -> Option<usize> {
    source
        .lines()
        .position(|l| {
            (l.contains("{{") || l.contains("{%"))
                && l.match_indices(name).any(|(i, _)| {
                    let word = |c: char| c.is_alphanumeric() || c == '_';
                    !l[..i].chars().next_back().is_some_and(word)
                        && !l[i + name.len()..].chars().next().is_some_and(word)
                })
        })
        .map(|i| i + 1)
}

/// Refuses the constructs that could make a render unbounded: block tags
/// other than [`ALLOWED_TAGS`] and the `*` operator (string and list
/// repetition). Scans every `{{`/`{%` span the way minijinja's lexer does
/// (strings skipped, a closer counts only outside brackets); inside
/// comments and raw blocks it sees more than minijinja, so it can only
/// refuse too much, never too little.
fn check_constructs(source: &str, first_line: usize) -> Result<(), TemplateError> {
    let bytes = source.as_bytes();
    let line_at = |i: usize| first_line + bytes[..i].iter().filter(|&&b| b == b'\n').count();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let closer: &[u8] = match (bytes[i], bytes[i + 1]) {
            (b'{', b'{') => b"}}",
            (b'{', b'%') => b"%}",
            _ => {
                i += 1;
                continue;
            }
        };
        let open = i;
        i += 2;
        if closer == b"%}" {
            let tag: String = source[i..]
                .trim_start_matches(['-', '+'])
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ALLOWED_TAGS.contains(&tag.as_str()) {
                return Err(TemplateError::ForbiddenTag {
                    tag,
                    line: line_at(open),
                });
            }
        }
        let mut balance: isize = 0;
        loop {
            match bytes.get(i) {
                // Unterminated: the parser reports it.
                None => return Ok(()),
                Some(&quote @ (b'"' | b'\'')) => {
                    i += 1;
                    while let Some(&b) = bytes.get(i) {
                        i += if b == b'\\' { 2 } else { 1 };
                        if b == quote {
                            break;
                        }
                    }
                }
                Some(_) if balance == 0 && bytes[i..].starts_with(closer) => {
                    i += 2;
                    break;
                }
                Some(b'*') => {
                    return Err(TemplateError::ForbiddenOperator { line: line_at(i) });
                }
                Some(b'(' | b'[' | b'{') => {
                    balance += 1;
                    i += 1;
                }
                Some(b')' | b']' | b'}') => {
                    balance -= 1;
                    i += 1;
                }
                Some(_) => i += 1,
            }
        }
    }
    Ok(())
}

/// Control characters (CR, LF, tabs, NUL...) become spaces, runs of
/// whitespace one space, ends trimmed.
pub(super) fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The original's subject as mail to its sender may quote it: one line, at
/// most [`MAX_SUBJECT_CHARS`] characters, links replaced. The sender has
/// proved nothing, so what they wrote must not make boxtrap carry their
/// payload (a link, a long text) to someone else.
pub fn quoted_subject(subject: &str) -> String {
    shortened(&without_links(subject), MAX_SUBJECT_CHARS)
}

/// The original's display name, as [`quoted_subject`] but shorter
/// ([`MAX_NAME_CHARS`]). The default texts do not use it.
pub fn quoted_name(name: &str) -> String {
    shortened(&without_links(name), MAX_NAME_CHARS)
}

/// The original's `Date:` as a date and nothing else (RFC 5322 §3.3):
/// comments dropped, only letters, digits, spaces and `:,+-` kept, at most
/// [`MAX_NAME_CHARS`] characters.
pub fn quoted_date(date: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in date.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_alphanumeric() || " :,+-".contains(c) => out.push(c),
            c if c.is_whitespace() => out.push(' '),
            _ => {}
        }
    }
    shortened(&out, MAX_NAME_CHARS)
}

/// Longest subject quoted in mail to a sender, in characters.
pub const MAX_SUBJECT_CHARS: usize = 80;
/// Longest display name or date quoted in mail to a sender, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// Words that are links (`scheme://...`, `www....`, `mailto:`) become
/// `[link]`.
fn without_links(s: &str) -> String {
    one_line(s)
        .split(' ')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let bare = lower.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            let link =
                lower.contains("://") || bare.starts_with("www.") || bare.starts_with("mailto:");
            if link { "[link]" } else { w }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`one_line`], cut to `max` characters with an ellipsis.
fn shortened(s: &str, max: usize) -> String {
    let line = one_line(s);
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line,
    }
}

/// [`one_line`], cut to [`MAX_QUOTED_CHARS`].
fn quoted(s: &str) -> String {
    let line = one_line(s);
    match line.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_sender_wrote_is_quoted_short_and_without_links() {
        assert_eq!(quoted_subject("Lunch on Friday?"), "Lunch on Friday?");
        assert_eq!(
            quoted_subject("Cheap pills at https://evil.example/buy now\r\nBcc: x"),
            "Cheap pills at [link] now Bcc: x"
        );
        assert_eq!(quoted_subject("visit www.evil.example!"), "visit [link]");
        assert_eq!(quoted_subject("(www.evil.example)"), "[link]");
        let long = "word ".repeat(40);
        let q = quoted_subject(&long);
        assert_eq!(q.chars().count(), MAX_SUBJECT_CHARS);
        assert!(q.ends_with('…'));
        assert_eq!(quoted_name("Bob <mailto:x@evil.example>"), "Bob [link]");
        assert!(quoted_name(&"n".repeat(100)).chars().count() <= MAX_NAME_CHARS + 1);
        assert_eq!(
            quoted_date("Fri, 27 Nov 2026 14:05:53 +0000 (visit evil.example)"),
            "Fri, 27 Nov 2026 14:05:53 +0000"
        );
        assert_eq!(quoted_date("<b>buy</b> http://x"), "bbuyb http:x");
    }

    fn verify_with(body: &str) -> String {
        format!("Subject: Re: {{{{ subject }}}} [verify#{{{{ token }}}}]\n\n{body}")
    }

    #[test]
    fn names_round_trip_as_boxtrapper_spells_them() {
        for name in TemplateName::ALL {
            assert_eq!(name.as_str().parse::<TemplateName>(), Ok(name));
        }
        assert_eq!(
            "VerifyReleased".parse::<TemplateName>(),
            Ok(TemplateName::VerifyReleased)
        );
        assert!(matches!(
            "welcome".parse::<TemplateName>(),
            Err(TemplateError::UnknownName(n)) if n == "welcome"
        ));
    }

    #[test]
    fn every_default_validates_and_renders() {
        let vars = TemplateVars::sample();
        for name in TemplateName::ALL {
            let text = default_text(name);
            assert_eq!(validate(name, text), Ok(()), "{name}");
            let r = render(name, text, &vars).unwrap();
            assert!(
                r.subject.contains("Lunch on Friday?"),
                "{name}: {}",
                r.subject
            );
            assert!(r.body.contains("alice@example.test"), "{name}: {}", r.body);
            assert!(!r.body.contains("{{") && !r.body.contains("{%"), "{name}");
            assert!(r.body.ends_with('\n'));
        }
    }

    #[test]
    fn the_default_challenge_carries_the_token_link_and_the_original_headers() {
        let vars = TemplateVars {
            held_count: 3,
            ..TemplateVars::sample()
        };
        let r = render(
            TemplateName::Verify,
            default_text(TemplateName::Verify),
            &vars,
        )
        .unwrap();
        assert_eq!(
            r.subject,
            format!("Re: Lunch on Friday? [verify#{}]", vars.token)
        );
        assert!(r.body.contains(&vars.link));
        assert!(
            r.body
                .contains("Your 3 messages are held for up to 15 days")
        );
        assert!(r.body.contains("From:    bob@example.net"));
        assert!(
            !r.body.contains("Bob Example"),
            "the sender's own words are not quoted"
        );
        assert!(r.body.contains("Date:    Fri, 27 Nov 2026 14:05:53 +0000"));
        assert!(r.body.contains("Alice Example\nonly accepts mail"));

        let anonymous = TemplateVars {
            sender_name: String::new(),
            mailbox_name: String::new(),
            subject: String::new(),
            ..TemplateVars::sample()
        };
        let r = render(
            TemplateName::Verify,
            default_text(TemplateName::Verify),
            &anonymous,
        )
        .unwrap();
        assert_eq!(r.subject, format!("Re: [verify#{}]", anonymous.token));
        assert!(r.body.starts_with("Hello,\n"));
        assert!(r.body.contains("From:    bob@example.net\n"));
        assert!(r.body.contains("alice@example.test\nonly accepts mail"));
        assert!(r.body.contains("Your message is held"));
    }

    #[test]
    fn a_verify_override_without_link_or_token_is_refused() {
        let text = "Subject: Please confirm\n\nReply to this message.\n";
        assert_eq!(
            validate(TemplateName::Verify, text),
            Err(TemplateError::MissingLink)
        );
        // The token hidden in a branch that never renders does not count.
        let hidden = "Subject: Confirm\n\n{% if false %}{{ link }}{% endif %}\n";
        assert_eq!(
            validate(TemplateName::Verify, hidden),
            Err(TemplateError::MissingLink)
        );
        assert_eq!(
            validate(TemplateName::Verify, "Subject: Confirm\n\nGo to {{link}}\n"),
            Ok(())
        );
        assert_eq!(validate(TemplateName::Blacklist, text), Ok(()));
    }

    #[test]
    fn an_unknown_variable_is_named_with_its_line() {
        let text = verify_with("Hi {{ sender }},\n\n{{ link }}\nFrom {{ sendr_name }}\n");
        let err = validate(TemplateName::Verify, &text).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownVariable {
                name: "sendr_name".to_string(),
                line: Some(6)
            }
        );
        assert!(
            err.to_string()
                .contains("line 6: unknown variable \"sendr_name\""),
            "{err}"
        );
        // Even on a branch the sample would not take.
        let text = verify_with("{{ link }}{% if held_count > 100 %}{{ nope }}{% endif %}");
        assert!(matches!(
            validate(TemplateName::Verify, &text),
            Err(TemplateError::UnknownVariable { name, .. }) if name == "nope"
        ));
        let subject = "Subject: {{ subjet }}\n\n{{ link }}\n";
        assert_eq!(
            validate(TemplateName::Verify, subject),
            Err(TemplateError::UnknownVariable {
                name: "subjet".to_string(),
                line: Some(1)
            })
        );
    }

    #[test]
    fn a_syntax_error_is_refused_with_its_line() {
        let text = verify_with("{{ link }}\n\n{% if sender %}unclosed\n");
        let err = validate(TemplateName::Verify, &text).unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
        let text = verify_with("{{ link }}\n{{ sender | }}\n");
        let err = validate(TemplateName::Verify, &text).unwrap_err();
        assert!(
            matches!(err, TemplateError::Syntax { line: Some(4), .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("line 4: syntax error"), "{err}");
    }

    #[test]
    fn a_template_needs_its_subject_line_and_blank_line() {
        for bad in [
            "",
            "Hello {{ link }}",
            "Dear {{ sender }}\n\n{{ link }}",
            "Subject: hi\n{{ link }}",
            "Subject: hi",
        ] {
            assert_eq!(
                validate(TemplateName::Verify, bad),
                Err(TemplateError::MissingSubject),
                "{bad:?}"
            );
        }
        let crlf = "subject: Re: {{ subject }}\r\n\r\nClick {{ link }}\r\n";
        let r = render(TemplateName::Verify, crlf, &TemplateVars::sample()).unwrap();
        assert_eq!(r.subject, "Re: Lunch on Friday?");
        assert!(!r.body.contains('\r'));
    }

    #[test]
    fn an_oversized_template_is_refused() {
        let text = verify_with(&format!(
            "{{{{ link }}}}\n{}",
            "x".repeat(MAX_TEMPLATE_BYTES)
        ));
        assert_eq!(
            validate(TemplateName::Verify, &text),
            Err(TemplateError::TooLarge { size: text.len() })
        );
    }

    #[test]
    fn a_template_whose_text_grows_too_large_when_rendered_is_refused() {
        // Under the template limit, but each `{{ link }}` prints ~100 bytes.
        let text = verify_with(&"{{ link }}{{ link }}\n".repeat(700));
        assert!(text.len() < MAX_TEMPLATE_BYTES);
        match validate(TemplateName::Verify, &text) {
            Err(TemplateError::RenderedTooLarge { size }) => assert!(size > MAX_RENDERED_BYTES),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loops_and_repetition_are_refused_so_renders_stay_bounded() {
        let cases = [
            (
                "{% for c in link %}{% for d in link %}x{% endfor %}{% endfor %}",
                "for",
            ),
            ("{%- macro m() %}{% endmacro %}", "macro"),
            ("{% set x = link %}", "set"),
            ("{% include 'verify' %}", "include"),
        ];
        for (body, tag) in cases {
            let err = validate(
                TemplateName::Verify,
                &verify_with(&format!("{{{{ link }}}}\n{body}")),
            );
            assert_eq!(
                err,
                Err(TemplateError::ForbiddenTag {
                    tag: tag.to_string(),
                    line: 4
                }),
                "{body}"
            );
        }
        for body in [
            "{{ link * 99999999 }}",
            "{% if ([1] * 99999999)|length %}x{% endif %}",
            "{{ {'a': {'b': 1}} ~ link * 3 }}",
            "{{ '}}' ~ link * 3 }}",
            "{{ 2 ** 3 }}",
        ] {
            assert_eq!(
                validate(
                    TemplateName::Verify,
                    &verify_with(&format!("{{{{ link }}}}\n{body}"))
                ),
                Err(TemplateError::ForbiddenOperator { line: 4 }),
                "{body}"
            );
        }
        // A star in plain text or inside a string is fine.
        let ok = verify_with("* Click: {{ link }}\n{{ '*' ~ sender ~ \"*\" }}\n");
        assert_eq!(validate(TemplateName::Verify, &ok), Ok(()));
        // Functions such as range() do not exist here.
        let range = verify_with("{{ link }}{{ range(10) }}");
        assert!(validate(TemplateName::Verify, &range).is_err());
    }

    #[test]
    fn simple_filters_and_conditions_work() {
        let text = verify_with(
            "{{ sender_name|upper }} {{ mailbox_name or mailbox }} {{ link }}\n\
             {% if held_count > 1 %}many{% elif held_count == 1 %}one{% else %}none{% endif %}\n",
        );
        let r = render(TemplateName::Verify, &text, &TemplateVars::sample()).unwrap();
        assert!(
            r.body.starts_with("BOB EXAMPLE Alice Example http://"),
            "{}",
            r.body
        );
        assert!(r.body.contains("\none\n"));
    }

    #[test]
    fn a_header_injection_in_the_original_subject_stays_on_one_line() {
        let vars = TemplateVars {
            subject: "x\r\nBcc: evil@x".to_string(),
            sender_name: "Bob\nX-Evil: 1".to_string(),
            ..TemplateVars::sample()
        };
        for name in TemplateName::ALL {
            let r = render(name, default_text(name), &vars).unwrap();
            assert!(!r.subject.contains(['\r', '\n']), "{name}: {:?}", r.subject);
            assert!(r.subject.contains("x Bcc: evil@x"), "{:?}", r.subject);
            assert!(
                !r.body.contains("\nBcc:") && !r.body.contains("\nX-Evil"),
                "{}",
                r.body
            );
        }
        // A newline written into the subject template itself is removed too.
        let text = "Subject: a {{ '\\r\\nBcc: evil@x' }}\n\n{{ link }}\n";
        let r = render(TemplateName::Verify, text, &vars).unwrap();
        assert_eq!(r.subject, "a Bcc: evil@x");
    }

    #[test]
    fn long_quoted_headers_are_shortened() {
        let vars = TemplateVars {
            subject: "a".repeat(5000),
            ..TemplateVars::sample()
        };
        let r = render(
            TemplateName::Verify,
            default_text(TemplateName::Verify),
            &vars,
        )
        .unwrap();
        assert!(r.subject.len() < 300, "{}", r.subject.len());
        assert!(r.subject.contains(&vars.token));
    }
}
