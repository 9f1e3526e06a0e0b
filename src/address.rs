//! Mail addresses and domain names, parsed once at the edge (SMTP command,
//! CLI argument) so the rest of the program only ever sees valid ones.
//!
//! Syntax is RFC 5321 §4.1.2 (`Mailbox`, `Domain`, address literals) with
//! RFC 6531 UTF-8 allowed where the caller says SMTPUTF8 is in force.

use std::fmt;

/// Why an address or domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address has no @domain part")]
    NoDomain,
    #[error("local part is not valid (RFC 5321 §4.1.2)")]
    BadLocalPart,
    #[error("local part is longer than 64 octets")]
    LocalPartTooLong,
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

impl EmailAddress {
    /// Parses an address, allowing UTF-8 (for CLI input and SMTPUTF8 sessions).
    pub fn parse(s: &str) -> Result<EmailAddress, AddressError> {
        Self::parse_with(s, true)
    }

    /// Parses an address; non-ASCII is refused unless `utf8` (RFC 6531).
    pub fn parse_with(s: &str, utf8: bool) -> Result<EmailAddress, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let at = s.rfind('@').ok_or(AddressError::NoDomain)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.is_empty() {
            return Err(AddressError::BadLocalPart);
        }
        if local.len() > 64 {
            return Err(AddressError::LocalPartTooLong);
        }
        if !utf8 && !s.is_ascii() {
            return Err(AddressError::NeedsUtf8);
        }
        if let Some(q) = local.strip_prefix('"') {
            // Quoted-string: qtextSMTP or quoted-pairSMTP.
            let q = q.strip_suffix('"').ok_or(AddressError::BadLocalPart)?;
            let mut chars = q.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(' '..='~') => {}
                        _ => return Err(AddressError::BadLocalPart),
                    },
                    '"' => return Err(AddressError::BadLocalPart),
                    ' '..='~' => {}
                    c if utf8 && !c.is_ascii() && !c.is_control() => {}
                    _ => return Err(AddressError::BadLocalPart),
                }
            }
        } else {
            // Dot-string: atoms separated by single dots.
            for atom in local.split('.') {
                if atom.is_empty() || !atom.chars().all(|c| is_atext(c, utf8)) {
                    return Err(AddressError::BadLocalPart);
                }
            }
        }
        Ok(EmailAddress {
            local: local.to_owned(),
            domain: Domain::parse_with(domain, utf8)?,
        })
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
        let q = EmailAddress::parse(r#""john doe\"x"@example.test"#).unwrap();
        assert_eq!(q.local_part(), r#""john doe\"x""#);
        assert!(EmailAddress::parse("u@[192.0.2.1]").is_ok());
        assert!(EmailAddress::parse("u@[IPv6:2001:db8::1]").is_ok());
        assert!(EmailAddress::parse("u@example.test.").is_ok());
    }

    #[test]
    fn refuses_malformed_addresses_with_the_reason() {
        use AddressError::*;
        let cases = [
            ("", Empty),
            ("alice", NoDomain),
            ("@example.test", BadLocalPart),
            ("a..b@example.test", BadLocalPart),
            (".a@example.test", BadLocalPart),
            ("a b@example.test", BadLocalPart),
            ("a(b)@example.test", BadLocalPart),
            ("\"unterminated@example.test", BadLocalPart),
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
