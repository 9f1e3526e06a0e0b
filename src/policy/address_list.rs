//! The addresses of an address header (`From:`, `To:`, `Cc:`), read from
//! the value as written (RFC 5322 §3.4, with the obsolete forms of §4.4).
//!
//! mail-parser gives display names well (RFC 2047 decoding), but it loses
//! what an address needs to be answered: a quoted local part without angle
//! brackets (`"bob"@example.org`) comes back as the display name `bob` and
//! the address `@example.org`, quoted-pairs lose their backslash, and an
//! `[IPv6:...]` literal without brackets is read as a group. This module
//! scans the raw value for each mailbox's addr-spec and keeps it exactly as
//! written: quoted strings and domain literals verbatim, comments and
//! folding white space dropped, groups flattened, a source route removed.
//! Whether an addr-spec is an address boxtrap can use is
//! [`crate::address::EmailAddress::parse_relaxed`]'s question.

use crate::address::{AddressError, EmailAddress};

/// The addr-spec of every mailbox in an address-list value, in order, as
/// written (`"john doe"@example.org`, `bob@[IPv6:2001:db8::1]`). Mailboxes
/// with nothing in them (an empty group `undisclosed-recipients:;`) give
/// nothing. Never fails: unbalanced quotes or brackets end at the end of
/// the value.
pub fn addr_specs(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // The current mailbox: tokens outside angle brackets, and the content
    // of the angle brackets once seen (which wins over the tokens).
    let mut bare = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    // White space was skipped since the last character kept.
    let mut space = false;
    let finish = |bare: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let spec = angle.take().unwrap_or_else(|| std::mem::take(bare));
        bare.clear();
        let spec = strip_source_route(spec.trim());
        if !spec.is_empty() {
            out.push(spec.to_owned());
        }
    };
    while let Some(c) = chars.next() {
        match c {
            // RFC 5322 §3.2.2: comments nest and may hold quoted-pairs.
            '(' => {
                let mut depth = 1;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Quoted strings and domain literals are kept verbatim.
            '"' | '[' => {
                let close = if c == '"' { '"' } else { ']' };
                let buf = target(in_angle, &mut angle, &mut bare);
                if std::mem::take(&mut space)
                    && buf.chars().next_back().is_some_and(|p| !"@.".contains(p))
                {
                    buf.push(' ');
                }
                buf.push(c);
                while let Some(c) = chars.next() {
                    buf.push(c);
                    if c == '\\' {
                        if let Some(escaped) = chars.next() {
                            buf.push(escaped);
                        }
                    } else if c == close {
                        break;
                    }
                }
            }
            '<' if !in_angle => {
                space = false;
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => {
                space = false;
                in_angle = false;
            }
            ',' if !in_angle => finish(&mut bare, &mut angle, &mut out),
            // A group's display name ends at its colon (an addr-spec has no
            // colon outside a literal); the group ends at its semicolon.
            ':' if !in_angle && angle.is_none() && !bare.contains('@') => bare.clear(),
            ';' if !in_angle => finish(&mut bare, &mut angle, &mut out),
            // Folding white space around `@` and `.` is dropped (RFC 5322
            // §4.4 obs-local-part and obs-domain); between two words it is
            // kept, so `john doe@example.org` stays an invalid address and
            // is not silently read as `johndoe@example.org`.
            c if c.is_whitespace() => space = true,
            c => {
                let buf = target(in_angle, &mut angle, &mut bare);
                if std::mem::take(&mut space)
                    && buf.chars().next_back().is_some_and(|p| !"@.".contains(p))
                    && !"@.".contains(c)
                {
                    buf.push(' ');
                }
                buf.push(c);
            }
        }
    }
    finish(&mut bare, &mut angle, &mut out);
    out
}

/// Where the next character of the current mailbox goes.
fn target<'b>(
    in_angle: bool,
    angle: &'b mut Option<String>,
    bare: &'b mut String,
) -> &'b mut String {
    if in_angle {
        angle.get_or_insert_with(String::new)
    } else {
        bare
    }
}

/// RFC 5321 §4.1.2 / RFC 5322 §4.4 obs-route: `@a,@b:user@d` is `user@d`.
fn strip_source_route(spec: &str) -> &str {
    if spec.starts_with('@')
        && let Some(i) = spec.find(':')
    {
        return &spec[i + 1..];
    }
    spec
}

/// The form boxtrap keeps a sender address in: lower case, the domain
/// without a trailing root dot, and a quoted local part unquoted when the
/// quotes change nothing (`"bob"@example.org` is `bob@example.org`, RFC
/// 5321 §4.1.2). Errors say what is wrong with the address as written.
pub fn canonical(spec: &str) -> Result<String, AddressError> {
    let address = EmailAddress::parse_relaxed(spec, true)?;
    let local = address.local_part();
    let local = match local.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Some(inner) if is_dot_atom(inner) => inner,
        _ => local,
    };
    // Domain names are already lower case; literals stay as written.
    Ok(format!("{}@{}", local.to_lowercase(), address.domain()))
}

/// RFC 5322 §3.2.3 dot-atom-text: atext atoms joined by single dots.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_specs_are_kept_as_written() {
        let cases: &[(&str, &[&str])] = &[
            ("bob@example.org", &["bob@example.org"]),
            ("Bob <bob@example.org>", &["bob@example.org"]),
            (
                "John Doe <\"john doe\"@example.org>",
                &["\"john doe\"@example.org"],
            ),
            ("\"bob\"@example.org", &["\"bob\"@example.org"]),
            ("\"j d\"@x.example", &["\"j d\"@x.example"]),
            (r#"<"a\"b"@x.example>"#, &[r#""a\"b"@x.example"#]),
            ("bob@[192.0.2.1]", &["bob@[192.0.2.1]"]),
            ("bob@[IPv6:2001:db8::1]", &["bob@[IPv6:2001:db8::1]"]),
            ("bob@example.org.", &["bob@example.org."]),
            ("den...4ik@mailru.example", &["den...4ik@mailru.example"]),
            ("bob@example.org (Bob)", &["bob@example.org"]),
            (
                "Bob (the (nested) one) <bob@example.org>",
                &["bob@example.org"],
            ),
            ("bob @ example.org", &["bob@example.org"]),
            ("bob . smith @ example . org", &["bob.smith@example.org"]),
            ("John Doe <john doe@example.org>", &["john doe@example.org"]),
            ("john doe@example.org", &["john doe@example.org"]),
            (
                "<@relay.example,@r2.example:bob@example.org>",
                &["bob@example.org"],
            ),
            (
                "\"Doe, John\" <j@x.example>, k@y.example",
                &["j@x.example", "k@y.example"],
            ),
            (
                "undisclosed-recipients:;, team: carol@example.test, Dave <dave@example.test>;, eve@example.test",
                &[
                    "carol@example.test",
                    "dave@example.test",
                    "eve@example.test",
                ],
            ),
            ("=?utf-8?q?a=40b?= <x@y.example>", &["x@y.example"]),
            ("", &[]),
            ("<>", &[]),
            ("bob", &["bob"]),
            (
                "\"unterminated@example.org",
                &["\"unterminated@example.org"],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(addr_specs(value), *want, "value: {value:?}");
        }
    }

    #[test]
    fn canonical_forms_drop_what_changes_nothing() {
        let ok = [
            ("Bob@Example.ORG", "bob@example.org"),
            ("\"bob\"@example.org", "bob@example.org"),
            ("\"b.o.b\"@example.org", "b.o.b@example.org"),
            ("\"John Doe\"@example.org", "\"john doe\"@example.org"),
            ("\"a..b\"@example.org", "\"a..b\"@example.org"),
            ("bob@example.org.", "bob@example.org"),
            ("bob@[192.0.2.1]", "bob@[192.0.2.1]"),
            ("bob@[IPv6:2001:db8::1]", "bob@[IPv6:2001:db8::1]"),
            ("den...4ik@mailru.example", "den...4ik@mailru.example"),
            ("hanako.@docomo.example", "hanako.@docomo.example"),
        ];
        for (spec, want) in ok {
            assert_eq!(canonical(spec).as_deref(), Ok(want), "spec: {spec:?}");
        }
        for bad in [
            "bob",
            "@example.org",
            "bob@",
            "bob@bad_domain.example",
            "a b@x.example",
        ] {
            assert!(canonical(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
