//! Mail addresses and domain names, parsed once at the edge (SMTP command,
//! CLI argument, From: header) so the rest of the program only ever sees
//! valid ones.
//!
//! Two grammars, one type:
//!
//! - **strict** ([`EmailAddress::parse`], [`EmailAddress::parse_with`]):
//!   RFC 5321 §4.1.2 `Mailbox` as written, with the §4.5.3.1 size limits.
//!   Used for the addresses boxtrap creates itself (mailboxes, aliases,
//!   `smtp.postmaster`), so nothing of ours is ever odd.
//! - **relaxed** ([`EmailAddress::parse_relaxed`]): for addresses that come
//!   from the world (MAIL FROM, RCPT TO, a From: header), as Postfix does
//!   with `strict_rfc821_envelopes = no`: dot-strings may have empty atoms
//!   (`taro..yamada`, `hanako.`, `.a`: RFC 5322 §4.4 obs-local-part, issued
//!   by Japanese and Russian mobile carriers for years) and the local part
//!   may be longer than 64 octets (VERP and SRS senders), as long as the
//!   whole address fits the RFC 5321 §4.5.3.1.3 path limit
//!   ([`MAX_ADDRESS_LEN`]). [`EmailAddress::is_strict`] tells whether such
//!   an address would also pass the strict grammar.
//!
//! Both refuse: no `@domain`, an empty local part, a bad domain, whitespace,
//! control characters and `<>()[],;:\@"` outside quotes, and non-ASCII
//! without SMTPUTF8 (RFC 6531, allowed where the caller says so).

use std::fmt;

/// Longest local part the strict grammar takes (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// Longest address either grammar takes, in octets: RFC 5321 §4.5.3.1.3
/// allows a path of 256 octets including its `<` and `>`, which leaves 254
/// for `local@domain` (the figure RFC 3696's erratum 1690 gives too).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Why an address or domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address has no @domain part")]
    NoDomain,
    #[error("local part is empty")]
    EmptyLocalPart,
    /// A quoted local part that is not an RFC 5321 §4.1.2 `Quoted-string`
    /// (unterminated, a bare `"` inside, a `\` at the end, or text after
    /// the closing quote).
    #[error("local part is not valid (RFC 5321 §4.1.2 Quoted-string)")]
    BadLocalPart,
    /// A character that may not appear in an unquoted local part (or, for
    /// control characters, anywhere in one).
    #[error("local part contains {0:?}, which is not allowed there (RFC 5321 §4.1.2)")]
    BadLocalPartChar(char),
    /// Strict grammar only: `a..b`, `.a` or `a.` (the relaxed grammar
    /// takes them, as RFC 5322 §4.4 obs-local-part).
    #[error(
        "local part has an empty atom (a leading, trailing or doubled dot; RFC 5321 §4.1.2 Dot-string)"
    )]
    EmptyAtom,
    /// Strict grammar only (RFC 5321 §4.5.3.1.1).
    #[error("local part is longer than 64 octets")]
    LocalPartTooLong,
    /// The whole address is over [`MAX_ADDRESS_LEN`] (RFC 5321 §4.5.3.1.3).
    #[error("address is {len} octets long, over the limit of {max} (RFC 5321 §4.5.3.1.3)")]
    PathTooLong { len: usize, max: usize },
    #[error("domain {0:?} is not valid")]
    BadDomain(String),
    #[error("domain is longer than 255 octets")]
    DomainTooLong,
    #[error("non-ASCII address needs SMTPUTF8")]
    NeedsUtf8,
}

/// A domain name, stored in lower case (comparisons are case-insensitive,
/// RFC 5321 §2.4). Address literals (`[192.0.2.1]`) are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub fn parse(s: &str) -> Result<Domain, AddressError> {
        Self::parse_with(s, true)
    }

    fn parse_with(s: &str, utf8: bool) -> Result<Domain, AddressError> {
        let bad = || AddressError::BadDomain(s.to_owned());
        if s.len() > 255 {
            return Err(AddressError::DomainTooLong);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(bad)?;
            let ok = match inner.strip_prefix("IPv6:").or(inner.strip_prefix("ipv6:")) {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => inner.parse::<std::net::Ipv4Addr>().is_ok(),
            };
            return if ok {
                Ok(Domain(s.to_owned()))
            } else {
                Err(bad())
            };
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(bad());
        }
        for label in s.split('.') {
            let b = label.as_bytes();
            if b.is_empty() || b.len() > 63 || b[0] == b'-' || b[b.len() - 1] == b'-' {
                return Err(bad());
            }
            for c in label.chars() {
                let ok = c.is_ascii_alphanumeric()
                    || c == '-'
                    || (utf8 && !c.is_ascii() && !c.is_control() && !c.is_whitespace());
                if !ok {
                    return Err(if !c.is_ascii() {
                        AddressError::NeedsUtf8
                    } else {
                        bad()
                    });
                }
            }
        }
        Ok(Domain(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `local@domain`. The local part keeps the case it was written in (it is
/// the remote system's to interpret, RFC 5321 §2.4); the domain is lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: Domain,
}

fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (utf8 && !c.is_ascii() && !c.is_control())
}

/// Which grammar a local part is checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grammar {
    Strict,
    Relaxed,
}

/// Checks a local part (without its `@domain`).
fn check_local(local: &str, utf8: bool, grammar: Grammar) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if grammar == Grammar::Strict && local.len() > MAX_LOCAL_PART_LEN {
        return Err(AddressError::LocalPartTooLong);
    }
    if let Some(q) = local.strip_prefix('"') {
        // Quoted-string: qtextSMTP or quoted-pairSMTP, the same in both
        // grammars (RFC 5321 §4.1.2).
        let q = q.strip_suffix('"').ok_or(AddressError::BadLocalPart)?;
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(' '..='~') => {}
                    Some(c) if c.is_control() => return Err(AddressError::BadLocalPartChar(c)),
                    _ => return Err(AddressError::BadLocalPart),
                },
                '"' => return Err(AddressError::BadLocalPart),
                ' '..='~' => {}
                c if !c.is_ascii() && !c.is_control() => {
                    if !utf8 {
                        return Err(AddressError::NeedsUtf8);
                    }
                }
                c => return Err(AddressError::BadLocalPartChar(c)),
            }
        }
        return Ok(());
    }
    // Dot-string: atoms separated by dots; the relaxed grammar lets atoms
    // be empty but still wants one character that is not a dot.
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c, utf8)) {
        return Err(if !c.is_ascii() && !c.is_control() {
            AddressError::NeedsUtf8
        } else {
            AddressError::BadLocalPartChar(c)
        });
    }
    match grammar {
        Grammar::Strict if local.split('.').any(str::is_empty) => Err(AddressError::EmptyAtom),
        Grammar::Relaxed if local.chars().all(|c| c == '.') => Err(AddressError::EmptyLocalPart),
        _ => Ok(()),
    }
}

impl EmailAddress {
    /// Parses an address in the strict grammar, allowing UTF-8 (for CLI
    /// input and SMTPUTF8 sessions). Same as `parse_with(s, true)`.
    pub fn parse(s: &str) -> Result<EmailAddress, AddressError> {
        Self::parse_with(s, true)
    }

    /// Parses `local@domain` in the strict grammar: RFC 5321 §4.1.2
    /// `Mailbox` (`Dot-string` or `Quoted-string`, then a domain or an
    /// address literal), a local part of at most 64 octets and an address
    /// of at most [`MAX_ADDRESS_LEN`]. A trailing root dot on the domain is
    /// dropped. Non-ASCII is refused unless `utf8` (RFC 6531).
    ///
    /// Use it for addresses boxtrap creates; for addresses from the world
    /// use [`parse_relaxed`](Self::parse_relaxed).
    pub fn parse_with(s: &str, utf8: bool) -> Result<EmailAddress, AddressError> {
        Self::parse_grammar(s, utf8, Grammar::Strict)
    }

    /// Parses an address from the world (MAIL FROM, RCPT TO, a From:
    /// header) the way Postfix does with `strict_rfc821_envelopes = no`:
    ///
    /// - dot-strings may have empty atoms: `taro..yamada@docomo.example`,
    ///   `hanako.@docomo.example`, `.a@example.org` (RFC 5322 §4.4
    ///   obs-local-part); a local part of dots only is still empty;
    /// - the local part may be longer than 64 octets (VERP, SRS; RFC 5321
    ///   §4.5.3.1 asks servers to avoid such limits), as long as the whole
    ///   address is at most [`MAX_ADDRESS_LEN`] octets (RFC 5321
    ///   §4.5.3.1.3), else [`AddressError::PathTooLong`];
    /// - quoted local parts, domains and address literals as in the strict
    ///   grammar.
    ///
    /// Refused as in the strict grammar: no `@domain`, an empty local part,
    /// a bad domain, whitespace, control characters and `<>()[],;:\@"`
    /// outside quotes, non-ASCII unless `utf8`.
    ///
    /// ```
    /// use boxtrap::address::EmailAddress;
    /// let a = EmailAddress::parse_relaxed("taro..yamada@docomo.example", false).unwrap();
    /// assert!(!a.is_strict());
    /// assert!(EmailAddress::parse_relaxed("postmaster", false).is_err());
    /// ```
    pub fn parse_relaxed(s: &str, utf8: bool) -> Result<EmailAddress, AddressError> {
        Self::parse_grammar(s, utf8, Grammar::Relaxed)
    }

    fn parse_grammar(s: &str, utf8: bool, grammar: Grammar) -> Result<EmailAddress, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        // The domain holds no '@', a quoted local part may.
        let at = s.rfind('@').ok_or(AddressError::NoDomain)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        check_local(local, utf8, grammar)?;
        let domain = Domain::parse_with(domain, utf8)?;
        if s.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::PathTooLong {
                len: s.len(),
                max: MAX_ADDRESS_LEN,
            });
        }
        Ok(EmailAddress {
            local: local.to_owned(),
            domain,
        })
    }

    /// Whether this address also passes the strict grammar
    /// ([`parse_with`](Self::parse_with)): false for a local part over 64
    /// octets or with empty atoms. A challenge composer can use it to
    /// decide whether it may address mail to it as written.
    pub fn is_strict(&self) -> bool {
        check_local(&self.local, true, Grammar::Strict).is_ok()
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The form used to look up local mailboxes: local part and domain both
    /// in lower case (boxtrap treats its own local parts case-insensitively).
    pub fn lookup_key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.0.is_ascii()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl EmailAddress {
    /// The address as lettre's type, for the mail boxtrap sends. lettre's
    /// own parser refuses addresses that are in use and that RFC 5321 lets
    /// us answer (a local part over 64 octets, `taro..yamada`, an
    /// `[IPv6:...]` literal), so boxtrap's parsers decide; what they accept
    /// holds no white space outside quotes and no control character, so it
    /// cannot break the SMTP command or header lettre writes it into.
    pub fn to_lettre(&self) -> lettre::Address {
        lettre::Address::new_dangerous(&self.local, self.domain.as_str())
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmailAddress::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ordinary_and_quoted_addresses() {
        let a = EmailAddress::parse("Alice.Smith+tag@Example.TEST").unwrap();
        assert_eq!(a.local_part(), "Alice.Smith+tag");
        assert_eq!(a.domain().as_str(), "example.test");
        assert_eq!(a.to_string(), "Alice.Smith+tag@example.test");
        assert_eq!(a.lookup_key(), "alice.smith+tag@example.test");
        assert!(a.is_strict());
        let q = EmailAddress::parse(r#""john doe\"x"@example.test"#).unwrap();
        assert_eq!(q.local_part(), r#""john doe\"x""#);
        assert!(EmailAddress::parse(r#""a@b"@example.test"#).is_ok());
        assert!(EmailAddress::parse("u@[192.0.2.1]").is_ok());
        assert!(EmailAddress::parse("u@[IPv6:2001:db8::1]").is_ok());
        assert_eq!(
            EmailAddress::parse("u@example.test.").unwrap().to_string(),
            "u@example.test"
        );
    }

    #[test]
    fn refuses_malformed_addresses_with_the_reason() {
        use AddressError::*;
        let cases = [
            ("", Empty),
            ("alice", NoDomain),
            ("Postmaster", NoDomain),
            ("@example.test", EmptyLocalPart),
            ("a..b@example.test", EmptyAtom),
            (".a@example.test", EmptyAtom),
            ("a.@example.test", EmptyAtom),
            ("a b@example.test", BadLocalPartChar(' ')),
            ("a(b)@example.test", BadLocalPartChar('(')),
            ("a\tb@example.test", BadLocalPartChar('\t')),
            ("a@b@example.test", BadLocalPartChar('@')),
            ("a\"b@example.test", BadLocalPartChar('"')),
            ("\"unterminated@example.test", BadLocalPart),
            ("\"a\"b\"@example.test", BadLocalPart),
            ("\"a\u{7}\"@example.test", BadLocalPartChar('\u{7}')),
            ("a@", BadDomain(String::new())),
            ("a@-bad.test", BadDomain("-bad.test".into())),
            ("a@bad..test", BadDomain("bad..test".into())),
            ("a@bad_domain.test", BadDomain("bad_domain.test".into())),
            ("a@[300.1.1.1]", BadDomain("[300.1.1.1]".into())),
        ];
        for (input, err) in cases {
            assert_eq!(EmailAddress::parse(input), Err(err), "{input:?}");
        }
        let long = format!("{}@example.test", "a".repeat(65));
        assert_eq!(EmailAddress::parse(&long), Err(LocalPartTooLong));
        assert_eq!(
            LocalPartTooLong.to_string(),
            "local part is longer than 64 octets"
        );
    }

    #[test]
    fn relaxed_takes_long_local_parts_up_to_the_path_limit() {
        let verp = "linux-secnews-return-67-legit-lists-secfocus=lists.example-corpus.test\
                    @securityfocus.example";
        assert_eq!(verp.find('@'), Some(70));
        assert_eq!(
            EmailAddress::parse_with(verp, false),
            Err(AddressError::LocalPartTooLong)
        );
        let a = EmailAddress::parse_relaxed(verp, false).unwrap();
        assert_eq!(a.to_string(), verp);
        assert!(!a.is_strict());
        // 254 octets is the most (a 256-octet path with its brackets).
        let domain = "@example.test";
        let fits = format!("{}{domain}", "a".repeat(MAX_ADDRESS_LEN - domain.len()));
        assert_eq!(fits.len(), 254);
        assert!(EmailAddress::parse_relaxed(&fits, false).is_ok());
        let over = format!("a{fits}");
        let err = EmailAddress::parse_relaxed(&over, false).unwrap_err();
        assert_eq!(err, AddressError::PathTooLong { len: 255, max: 254 });
        assert_eq!(
            err.to_string(),
            "address is 255 octets long, over the limit of 254 (RFC 5321 §4.5.3.1.3)"
        );
        // The strict grammar has the path limit too.
        let long_domain = format!(
            "abcdefghij@{}.{}.test",
            vec!["b".repeat(63); 3].join("."),
            "c".repeat(50)
        );
        assert!(matches!(
            EmailAddress::parse(&long_domain),
            Err(AddressError::PathTooLong { .. })
        ));
    }

    #[test]
    fn relaxed_takes_empty_atoms_as_mobile_carriers_issue_them() {
        for s in [
            "taro..yamada@docomo.example",
            "hanako.@docomo.example",
            ".hanako@docomo.example",
            "den...4ik@mailru.example",
            "a.b@example.test.",
        ] {
            let a = EmailAddress::parse_relaxed(s, false).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(a.to_string(), s.trim_end_matches('.'));
            assert_eq!(a.is_strict(), s == "a.b@example.test.", "{s}");
        }
        assert_eq!(
            EmailAddress::parse_relaxed("hanako.@DoCoMo.example", false)
                .unwrap()
                .lookup_key(),
            "hanako.@docomo.example"
        );
    }

    #[test]
    fn relaxed_still_refuses_what_cannot_be_routed_or_written() {
        use AddressError::*;
        let cases = [
            ("", Empty),
            ("Postmaster", NoDomain),
            ("bob", NoDomain),
            ("@example.org", EmptyLocalPart),
            ("...@example.org", EmptyLocalPart),
            ("a b@example.org", BadLocalPartChar(' ')),
            ("a\r\nb@example.org", BadLocalPartChar('\r')),
            ("a<b@example.org", BadLocalPartChar('<')),
            ("a>b@example.org", BadLocalPartChar('>')),
            ("a,b@example.org", BadLocalPartChar(',')),
            ("a;b@example.org", BadLocalPartChar(';')),
            ("a:b@example.org", BadLocalPartChar(':')),
            ("a[b@example.org", BadLocalPartChar('[')),
            ("a\\b@example.org", BadLocalPartChar('\\')),
            ("a\"b\"@example.org", BadLocalPartChar('"')),
            ("\"open@example.org", BadLocalPart),
            ("a@", BadDomain(String::new())),
            ("a@exa mple.org", BadDomain("exa mple.org".into())),
            ("a@[192.0.2.1", BadDomain("[192.0.2.1".into())),
            ("jö@example.org", NeedsUtf8),
            ("jo@exämple.org", NeedsUtf8),
            ("\"jö\"@example.org", NeedsUtf8),
        ];
        for (input, err) in cases {
            assert_eq!(
                EmailAddress::parse_relaxed(input, false),
                Err(err),
                "{input:?}"
            );
        }
        // Quoted local parts, literals and UTF-8 (with SMTPUTF8) as in strict.
        for s in [
            "\"john doe\"@example.org",
            "\"a..b\"@example.org",
            "bob@[192.0.2.1]",
            "bob@[IPv6:2001:db8::1]",
        ] {
            let a = EmailAddress::parse_relaxed(s, false).unwrap();
            assert_eq!(a.to_string(), s);
            assert!(a.is_strict(), "{s}");
        }
        assert!(EmailAddress::parse_relaxed("jösé..x@exämple.test", true).is_ok());
    }

    #[test]
    fn utf8_needs_smtputf8() {
        assert!(EmailAddress::parse_with("jösé@exämple.test", true).is_ok());
        assert_eq!(
            EmailAddress::parse_with("jösé@example.test", false),
            Err(AddressError::NeedsUtf8)
        );
    }
}
