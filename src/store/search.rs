//! Searching a mailbox's held mail: the owner's query language and the SQL
//! it becomes.
//!
//! A query is words and `operator:value` terms, all of which must match;
//! `-` before a term negates it, and a value with spaces is quoted
//! (`subject:"big deal"`):
//!
//! | term | matches |
//! |---|---|
//! | `from:bob@example.com` | that From: address (indexed) |
//! | `from:example.com`, `from:@example.com` | that From: domain (indexed; subdomains are domains of their own) |
//! | `from:bob` | `bob` in the From: address or name |
//! | `subject:invoice` | `invoice` in the subject |
//! | `reason:spam` | the reason code it was held for (`quarantine show` prints it) |
//! | `challenge:none`, `sent`, `queued`, `bounced`, `answered`, `expired` | the challenge state |
//! | `has:attachment` | a message with at least one attachment |
//! | `before:2026-11-30`, `after:2026-11-01` | arrived before / on or after that day (UTC), or `after:7d` (the last 7 days; also `h`) |
//! | `larger:1M`, `smaller:10K` | size in bytes (K and M are 1024-based) |
//! | `is:seen`, `is:unseen` | opened or marked seen by the owner, or not |
//! | `in:deleted` | deleted by the owner and not yet purged (only then: every other query leaves deleted mail out) |
//! | any other word | the word in the subject, the From: address or the From: name |
//!
//! Text matches ignore ASCII case. A query that does not parse is refused
//! with [`SearchError`] naming the term and what was wrong.

use crate::clock::Timestamp;

/// Held-mail reason codes a `reason:` term accepts (as
/// `policy::Reason::code` writes them).
pub const REASONS: &[&str] = &[
    "unknown-sender",
    "challenge-open",
    "challenge-shared",
    "challenge-off",
    "no-sender",
    "unusable-from",
    "null-sender",
    "role-sender",
    "own-address",
    "automated",
    "rate-limited",
    "spam",
    "not-authenticated",
    "auth-temporary",
    "challenge-failed",
];

/// The challenge states a `challenge:` term accepts.
pub const CHALLENGE_STATES: &[&str] = &["none", "sent", "queued", "bounced", "answered", "expired"];

/// The most terms one query may have.
pub const MAX_TERMS: usize = 20;

/// A query that could not be read: the term and what was wrong with it,
/// fit to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

/// One condition on a held message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The From: address, exactly (lower case).
    FromAddress(String),
    /// The From: domain, exactly (lower case, no `@`).
    FromDomain(String),
    /// Text in the From: address or name.
    FromText(String),
    Subject(String),
    Reason(String),
    /// One of [`CHALLENGE_STATES`].
    Challenge(String),
    HasAttachment,
    /// Arrived before this time.
    Before(Timestamp),
    /// Arrived at or after this time.
    After(Timestamp),
    /// Larger than this many bytes.
    Larger(i64),
    /// Smaller than this many bytes.
    Smaller(i64),
    /// Text in the subject, the From: address or the From: name.
    Text(String),
    /// Seen by the owner (opened or marked seen).
    Seen,
    /// Not seen by the owner.
    Unseen,
    /// Deleted by the owner and not yet purged. A query without this term
    /// reads only mail that is not deleted.
    Deleted,
}

/// A parsed query: every term must match (a negated one must not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldQuery {
    pub terms: Vec<(bool, Term)>,
}

/// A value bound into the SQL a query becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Int(i64),
    Text(String),
}

impl HeldQuery {
    /// Reads `q` (see the module docs); `now` anchors `after:7d`.
    pub fn parse(q: &str, now: Timestamp) -> Result<HeldQuery, SearchError> {
        let mut terms = Vec::new();
        for raw in split(q)? {
            if terms.len() == MAX_TERMS {
                return Err(SearchError(format!(
                    "too many search terms: at most {MAX_TERMS}"
                )));
            }
            let (negated, body) = match raw.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => (true, rest.to_owned()),
                _ => (false, raw.clone()),
            };
            terms.push((negated, term(&body, now)?));
        }
        Ok(HeldQuery { terms })
    }

    /// The deleted mail (`in:deleted`).
    pub fn deleted() -> HeldQuery {
        HeldQuery {
            terms: vec![(false, Term::Deleted)],
        }
    }

    /// Whether a `challenge:` term needs the challenge tables joined.
    pub fn reads_challenges(&self) -> bool {
        self.terms
            .iter()
            .any(|(_, t)| matches!(t, Term::Challenge(_)))
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the query reads deleted mail (`in:deleted`, not negated).
    pub fn reads_deleted(&self) -> bool {
        self.terms
            .iter()
            .any(|(negated, t)| !negated && *t == Term::Deleted)
    }

    /// The query as a SQL condition on `held_messages h` (joined with
    /// `challenges c` and the challenge's first `outbound_messages o`, as
    /// the quarantine page's query is), with placeholders numbered from
    /// `first`. Deleted mail is left out unless the query asks for it.
    pub fn sql(&self, first: usize) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let mut parts = Vec::new();
        if !self.terms.iter().any(|(_, t)| *t == Term::Deleted) {
            parts.push("h.state <> 'deleted'".to_owned());
        }
        for (negated, t) in &self.terms {
            let mut next = |b: Bind| {
                binds.push(b);
                format!("${}", first + binds.len() - 1)
            };
            let cond = match t {
                Term::FromAddress(a) => format!("h.sender = {}", next(Bind::Text(a.clone()))),
                Term::FromDomain(d) => format!("h.sender_domain = {}", next(Bind::Text(d.clone()))),
                Term::FromText(x) => {
                    let p = next(Bind::Text(contains(x)));
                    format!(
                        "(LOWER(h.sender) LIKE {p} ESCAPE '\\' OR LOWER(h.sender_name) LIKE {p} ESCAPE '\\')"
                    )
                }
                Term::Subject(x) => {
                    let p = next(Bind::Text(contains(x)));
                    format!("LOWER(h.subject) LIKE {p} ESCAPE '\\'")
                }
                Term::Text(x) => {
                    let p = next(Bind::Text(contains(x)));
                    format!(
                        "(LOWER(h.subject) LIKE {p} ESCAPE '\\' OR LOWER(h.sender) LIKE {p} ESCAPE '\\' \
                         OR LOWER(h.sender_name) LIKE {p} ESCAPE '\\')"
                    )
                }
                Term::Reason(r) => format!("h.reason = {}", next(Bind::Text(r.clone()))),
                Term::Challenge(s) => challenge_sql(s),
                Term::HasAttachment => "COALESCE(h.attachments, 0) > 0".to_owned(),
                Term::Before(t) => format!("h.arrived_at < {}", next(Bind::Int(t.0))),
                Term::After(t) => format!("h.arrived_at >= {}", next(Bind::Int(t.0))),
                Term::Larger(n) => format!("h.size > {}", next(Bind::Int(*n))),
                Term::Smaller(n) => format!("h.size < {}", next(Bind::Int(*n))),
                Term::Seen => "h.seen_at IS NOT NULL".to_owned(),
                Term::Unseen => "h.seen_at IS NULL".to_owned(),
                Term::Deleted => "h.state = 'deleted'".to_owned(),
            };
            parts.push(if *negated {
                format!("NOT ({cond})")
            } else {
                cond
            });
        }
        (parts.join(" AND "), binds)
    }

    /// The query written back in its canonical form (for links and the
    /// search box).
    pub fn text(&self) -> String {
        self.terms
            .iter()
            .map(|(neg, t)| {
                let body = match t {
                    Term::FromAddress(a) => format!("from:{}", quote(a)),
                    Term::FromDomain(d) => format!("from:@{}", quote(d)),
                    Term::FromText(x) => format!("from:{}", quote(x)),
                    Term::Subject(x) => format!("subject:{}", quote(x)),
                    Term::Reason(r) => format!("reason:{r}"),
                    Term::Challenge(s) => format!("challenge:{s}"),
                    Term::HasAttachment => "has:attachment".to_owned(),
                    Term::Before(t) => format!("before:{}", &t.log_format()[..10]),
                    Term::After(t) => format!("after:{}", &t.log_format()[..10]),
                    Term::Larger(n) => format!("larger:{n}"),
                    Term::Smaller(n) => format!("smaller:{n}"),
                    Term::Text(x) => quote(x),
                    Term::Seen => "is:seen".to_owned(),
                    Term::Unseen => "is:unseen".to_owned(),
                    Term::Deleted => "in:deleted".to_owned(),
                };
                if *neg { format!("-{body}") } else { body }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The condition for one `challenge:` state.
fn challenge_sql(state: &str) -> String {
    match state {
        "none" => "h.challenge_id IS NULL",
        "answered" => "c.state = 'verified'",
        "expired" => "c.state = 'expired'",
        "sent" => "(c.state = 'open' AND o.state = 'sent')",
        "queued" => "(c.state = 'open' AND (o.state IS NULL OR o.state = 'queued'))",
        "bounced" => "(c.state = 'open' AND o.state = 'failed')",
        _ => unreachable!("checked when parsed"),
    }
    .to_owned()
}

/// Splits a query into terms at spaces outside double quotes; quotes are
/// removed (`subject:"a b"` is one term, `subject:a b`).
fn split(q: &str) -> Result<Vec<String>, SearchError> {
    if q.chars().count() > 500 {
        return Err(SearchError(
            "the search is too long: at most 500 characters".into(),
        ));
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in q.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c if c.is_control() => {
                return Err(SearchError(
                    "the search has a control character in it".into(),
                ));
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(SearchError(format!(
            "a quote is not closed in {q:?}: close it with \""
        )));
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

/// One term, without its `-`.
fn term(t: &str, now: Timestamp) -> Result<Term, SearchError> {
    let Some((op, value)) = t.split_once(':') else {
        return Ok(Term::Text(t.to_lowercase()));
    };
    let op = op.to_ascii_lowercase();
    let known = [
        "from",
        "subject",
        "reason",
        "challenge",
        "has",
        "before",
        "after",
        "larger",
        "smaller",
        "is",
        "in",
    ];
    if !known.contains(&op.as_str()) {
        // Words with a colon in them ("re:") are words, unless they look
        // like an operator someone mistyped.
        if op.chars().all(|c| c.is_ascii_alphabetic()) && op.len() > 2 && !value.is_empty() {
            return Err(SearchError(format!(
                "unknown search operator {op:?}: use from:, subject:, reason:, challenge:, \
                 has:attachment, before:, after:, larger:, smaller:, is:seen, is:unseen \
                 or in:deleted"
            )));
        }
        return Ok(Term::Text(t.to_lowercase()));
    }
    if value.is_empty() {
        return Err(SearchError(format!("{op}: needs a value after the colon")));
    }
    let lower = value.to_lowercase();
    Ok(match op.as_str() {
        "from" => from_term(&lower),
        "subject" => Term::Subject(lower),
        "reason" => {
            if !REASONS.contains(&lower.as_str()) {
                return Err(SearchError(format!(
                    "reason:{value} is not a reason mail is held for; one of: {}",
                    REASONS.join(", ")
                )));
            }
            Term::Reason(lower)
        }
        "challenge" => {
            if !CHALLENGE_STATES.contains(&lower.as_str()) {
                return Err(SearchError(format!(
                    "challenge:{value} is not a challenge state; one of: {}",
                    CHALLENGE_STATES.join(", ")
                )));
            }
            Term::Challenge(lower)
        }
        "has" => {
            if !matches!(lower.as_str(), "attachment" | "attachments") {
                return Err(SearchError(format!(
                    "has:{value} is not known; has:attachment is"
                )));
            }
            Term::HasAttachment
        }
        "is" => match lower.as_str() {
            "seen" => Term::Seen,
            "unseen" => Term::Unseen,
            _ => {
                return Err(SearchError(format!(
                    "is:{value} is not known; is:seen and is:unseen are"
                )));
            }
        },
        "in" => {
            if lower != "deleted" {
                return Err(SearchError(format!(
                    "in:{value} is not known; in:deleted is (the quarantine itself needs no term)"
                )));
            }
            Term::Deleted
        }
        "before" => Term::Before(when(&op, value, now)?),
        "after" => Term::After(when(&op, value, now)?),
        "larger" | "smaller" => {
            let n = crate::config::ByteSize::parse(value)
                .ok()
                .and_then(|b| i64::try_from(b.0).ok())
                .ok_or_else(|| {
                    SearchError(format!(
                        "{op}:{value} is not a size: use bytes or e.g. 100K, 2M"
                    ))
                })?;
            if op == "larger" {
                Term::Larger(n)
            } else {
                Term::Smaller(n)
            }
        }
        _ => unreachable!("known operators only"),
    })
}

fn from_term(v: &str) -> Term {
    match v.split_once('@') {
        Some(("", domain)) if looks_like_domain(domain) => Term::FromDomain(domain.to_owned()),
        Some((local, domain)) if !local.is_empty() && looks_like_domain(domain) => {
            Term::FromAddress(v.to_owned())
        }
        None if looks_like_domain(v) => Term::FromDomain(v.to_owned()),
        _ => Term::FromText(v.to_owned()),
    }
}

fn looks_like_domain(d: &str) -> bool {
    d.contains('.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && d.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
}

/// A day (`2026-11-30`, midnight UTC) or an age (`7d`, `12h`: that long
/// before `now`).
fn when(op: &str, v: &str, now: Timestamp) -> Result<Timestamp, SearchError> {
    let bad = || {
        SearchError(format!(
            "{op}:{v} is not a date: use a day as 2026-11-30, or an age as 7d or 12h"
        ))
    };
    if let Some(n) = v.strip_suffix(['d', 'h']) {
        let n: i64 = n.parse().map_err(|_| bad())?;
        let unit = if v.ends_with('d') { 86400 } else { 3600 };
        if !(0..=36500).contains(&n) {
            return Err(bad());
        }
        return Ok(now.plus_secs(-n * unit));
    }
    let mut parts = v.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse(), m.parse(), d.parse()) else {
        return Err(bad());
    };
    Timestamp::from_date(y, m, d).ok_or_else(bad)
}

/// `%x%` for LIKE, with `%`, `_` and `\` in `x` matched as themselves.
fn contains(x: &str) -> String {
    format!("%{}%", like_escape(x))
}

fn like_escape(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    for c in x.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn quote(x: &str) -> String {
    if x.chars().any(|c| c.is_whitespace() || c == '"') || x.is_empty() {
        format!("\"{}\"", x.replace('"', ""))
    } else {
        x.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_date(2026, 11, 30).unwrap().plus_secs(3600)
    }

    fn parse(q: &str) -> Vec<(bool, Term)> {
        HeldQuery::parse(q, now()).unwrap().terms
    }

    #[test]
    fn terms_operators_negation_and_quotes_are_read() {
        assert_eq!(
            parse(r#"from:Bob@Example.COM -subject:"Big  Deal" invoice has:attachment"#),
            vec![
                (false, Term::FromAddress("bob@example.com".into())),
                (true, Term::Subject("big  deal".into())),
                (false, Term::Text("invoice".into())),
                (false, Term::HasAttachment),
            ]
        );
        assert_eq!(
            parse("from:@example.com from:example.org from:bob"),
            vec![
                (false, Term::FromDomain("example.com".into())),
                (false, Term::FromDomain("example.org".into())),
                (false, Term::FromText("bob".into())),
            ]
        );
        assert_eq!(
            parse("before:2026-11-01 after:7d larger:1M smaller:10K"),
            vec![
                (
                    false,
                    Term::Before(Timestamp::from_date(2026, 11, 1).unwrap())
                ),
                (false, Term::After(now().plus_secs(-7 * 86400))),
                (false, Term::Larger(1 << 20)),
                (false, Term::Smaller(10 << 10)),
            ]
        );
        // A word with a colon that is no operator is a word; a lone "-" too.
        assert_eq!(
            parse("re: - x:y"),
            vec![
                (false, Term::Text("re:".into())),
                (false, Term::Text("-".into())),
                (false, Term::Text("x:y".into())),
            ]
        );
        assert!(parse("  ").is_empty());
    }

    #[test]
    fn bad_terms_are_refused_naming_the_term() {
        for (q, names) in [
            ("form:bob", "unknown search operator \"form\""),
            ("reason:nope", "reason:nope is not a reason"),
            (
                "challenge:maybe",
                "challenge:maybe is not a challenge state",
            ),
            ("has:pictures", "has:pictures is not known"),
            ("before:2026-02-30", "before:2026-02-30 is not a date"),
            ("after:yesterday", "after:yesterday is not a date"),
            ("larger:huge", "larger:huge is not a size"),
            ("subject:", "subject: needs a value"),
            ("subject:\"open", "a quote is not closed"),
            ("a\u{7}b", "control character"),
        ] {
            let e = HeldQuery::parse(q, now()).unwrap_err();
            assert!(e.0.contains(names), "{q}: {e}");
        }
        let many = "a ".repeat(MAX_TERMS + 1);
        assert!(
            HeldQuery::parse(&many, now())
                .unwrap_err()
                .0
                .contains("too many")
        );
    }

    #[test]
    fn the_sql_binds_every_value_and_escapes_like_wildcards() {
        let q = HeldQuery::parse("from:@ex.com -subject:50%_off reason:spam", now()).unwrap();
        let (sql, binds) = q.sql(3);
        assert_eq!(
            sql,
            "h.state <> 'deleted' AND h.sender_domain = $3 \
             AND NOT (LOWER(h.subject) LIKE $4 ESCAPE '\\') AND h.reason = $5"
        );
        assert_eq!(
            binds,
            vec![
                Bind::Text("ex.com".into()),
                Bind::Text("%50\\%\\_off%".into()),
                Bind::Text("spam".into()),
            ]
        );
        assert_eq!(HeldQuery::default().sql(1).0, "h.state <> 'deleted'");
    }

    #[test]
    fn deleted_mail_is_read_only_by_in_deleted() {
        let sql = |q: &str| HeldQuery::parse(q, now()).unwrap().sql(1).0;
        assert_eq!(sql("in:deleted"), "h.state = 'deleted'");
        assert_eq!(
            sql("in:deleted is:unseen"),
            "h.state = 'deleted' AND h.seen_at IS NULL"
        );
        // Negated, it reads what is not deleted, as no term does.
        assert_eq!(sql("-in:deleted"), "NOT (h.state = 'deleted')");
        assert_eq!(
            sql("is:seen"),
            "h.state <> 'deleted' AND h.seen_at IS NOT NULL"
        );
        assert!(
            HeldQuery::parse("in:deleted", now())
                .unwrap()
                .reads_deleted()
        );
        assert!(
            !HeldQuery::parse("-in:deleted", now())
                .unwrap()
                .reads_deleted()
        );
        for (q, names) in [
            ("in:trash", "in:trash is not known; in:deleted is"),
            ("is:read", "is:read is not known; is:seen and is:unseen are"),
        ] {
            let e = HeldQuery::parse(q, now()).unwrap_err();
            assert!(e.0.contains(names), "{q}: {e}");
        }
    }

    #[test]
    fn the_canonical_text_parses_back_to_the_same_query() {
        let q = HeldQuery::parse(
            r#"from:bob@x.com -from:@y.org subject:"a b" challenge:none has:attachment before:2026-01-02 larger:2048 hello is:unseen -is:seen in:deleted"#,
            now(),
        )
        .unwrap();
        assert_eq!(HeldQuery::parse(&q.text(), now()).unwrap(), q);
    }

    #[test]
    fn dates_are_checked_and_round_trip() {
        assert_eq!(
            Timestamp::from_date(2026, 11, 27).unwrap().log_format(),
            "2026-11-27 00:00:00"
        );
        assert_eq!(
            Timestamp::from_date(2024, 2, 29).unwrap().log_format(),
            "2024-02-29 00:00:00"
        );
        assert_eq!(Timestamp::from_date(2026, 2, 29), None);
        assert_eq!(Timestamp::from_date(2026, 13, 1), None);
    }
}
