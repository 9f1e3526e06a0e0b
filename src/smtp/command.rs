//! SMTP command lines (RFC 5321 §4.1), parsed without any I/O.
//!
//! The input is one line with its line ending already removed. Errors carry
//! the reply to send, so the session never has to guess a code.

use super::reply::{Reply, codes};
use crate::address::{AddressError, EmailAddress};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        /// `None` is the null reverse-path `<>` (bounces, challenges).
        from: Option<EmailAddress>,
        params: MailParams,
    },
    Rcpt {
        /// Which of RFC 5321 §4.1.1.3's three forms the client used.
        to: ForwardPath,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    /// Recognized commands boxtrap does not offer here (EXPN, TURN, ...).
    NotImplemented,
}

/// The argument of RCPT TO (RFC 5321 §4.1.1.3):
///
/// ```text
/// "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path )
/// ```
///
/// `<Postmaster@Domain>` is an ordinary address here (the router sends it to
/// that domain's postmaster), so it is [`ForwardPath::Address`]; only the
/// domain-less `<Postmaster>` needs a variant of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, in any letter case (RFC 5321 §4.5.1:
    /// "postmaster" is a case-insensitive reserved name every receiver must
    /// accept): this server's postmaster. Also taken as `<"postmaster">`
    /// (the quoted form is the same local part, RFC 5321 §4.1.2), without
    /// brackets and after a source route, like the other tolerated forms.
    Postmaster,
    /// `local@domain`, parsed with [`EmailAddress::parse_relaxed`].
    Address(EmailAddress),
}

impl ForwardPath {
    /// The address, `None` for the bare `<Postmaster>`.
    pub fn address(&self) -> Option<&EmailAddress> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Address(a) => Some(a),
        }
    }
}

impl std::fmt::Display for ForwardPath {
    /// As logged: `postmaster`, or the address.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("postmaster"),
            ForwardPath::Address(a) => a.fmt(f),
        }
    }
}

/// ESMTP parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 SIZE=, the client's estimate.
    pub size: Option<u64>,
    /// RFC 6152 BODY=8BITMIME.
    pub body_8bit: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
}

impl Command {
    pub fn parse(line: &[u8]) -> Result<Command, Reply> {
        let line = std::str::from_utf8(line)
            .map_err(|_| Reply::text(500, "5.5.2", "Command contains invalid UTF-8"))?;
        let (verb, rest) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let no_args = |cmd: Command| {
            // RFC 5321 §4.1.1: these take no argument (NOOP and HELP may).
            if rest.trim().is_empty() {
                Ok(cmd)
            } else {
                Err(Reply::text(
                    501,
                    "5.5.4",
                    "Syntax error: no parameters allowed",
                ))
            }
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => Ok(Command::Ehlo(parse_helo_name(rest)?)),
            "HELO" => Ok(Command::Helo(parse_helo_name(rest)?)),
            "MAIL" => parse_mail(rest),
            "RCPT" => parse_rcpt(rest),
            "DATA" => no_args(Command::Data),
            "RSET" => no_args(Command::Rset),
            "QUIT" => no_args(Command::Quit),
            "NOOP" => Ok(Command::Noop),
            "VRFY" => {
                if rest.trim().is_empty() {
                    Err(Reply::text(501, "5.5.4", "Syntax: VRFY <address>"))
                } else {
                    Ok(Command::Vrfy)
                }
            }
            "HELP" => Ok(Command::Help),
            "EXPN" | "TURN" | "ETRN" | "ATRN" | "SEND" | "SOML" | "SAML" | "BDAT" | "STARTTLS"
            | "AUTH" => Ok(Command::NotImplemented),
            _ => Err(codes::unknown_command()),
        }
    }
}

fn parse_helo_name(rest: &str) -> Result<String, Reply> {
    let name = rest.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.chars().any(char::is_control) {
        return Err(Reply::text(501, "5.5.4", "Syntax: EHLO hostname"));
    }
    Ok(name.to_owned())
}

/// Splits `FROM:<path> params` after the keyword, tolerating a space after
/// the colon as most MTAs do.
fn split_path<'a>(rest: &'a str, keyword: &str) -> Result<(&'a str, &'a str), Reply> {
    let syntax = || {
        Reply::text(
            501,
            "5.5.4",
            if keyword == "FROM:" {
                "Syntax: MAIL FROM:<address>"
            } else {
                "Syntax: RCPT TO:<address>"
            },
        )
    };
    if rest.len() < keyword.len() || !rest[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return Err(syntax());
    }
    let rest = rest[keyword.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>').ok_or_else(syntax)?;
        Ok((&inner[..end], inner[end + 1..].trim_start_matches(' ')))
    } else {
        // Path without brackets: accepted, as Postfix and Exim do by default.
        match rest.find(' ') {
            Some(i) => Ok((&rest[..i], &rest[i + 1..])),
            None if rest.is_empty() => Err(syntax()),
            None => Ok((rest, "")),
        }
    }
}

/// RFC 5321 §4.1.2: a source route (`@a,@b:user@d`) is accepted and ignored.
fn strip_source_route(path: &str) -> &str {
    if path.starts_with('@')
        && let Some(i) = path.find(':')
    {
        return &path[i + 1..];
    }
    path
}

fn address_reply(e: AddressError) -> Reply {
    match e {
        AddressError::NeedsUtf8 => codes::needs_smtputf8(),
        e @ AddressError::PathTooLong { .. } => codes::path_too_long(&e),
        e => Reply::text(553, "5.1.3", format!("Bad address syntax: {e}")),
    }
}

fn parse_mail(rest: &str) -> Result<Command, Reply> {
    let (path, params_str) = split_path(rest, "FROM:")?;
    let mut params = MailParams::default();
    for param in params_str.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                let n = v
                    .parse::<u64>()
                    .map_err(|_| Reply::text(501, "5.5.4", "Bad SIZE parameter"))?;
                params.size = Some(n);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => params.body_8bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.body_8bit = false,
            ("BODY", _) => return Err(Reply::text(501, "5.5.4", "Bad BODY parameter")),
            ("SMTPUTF8", None) => params.smtputf8 = true,
            _ => {
                return Err(codes::param_not_recognized(
                    "MAIL parameter not recognized or not implemented",
                ));
            }
        }
    }
    let path = strip_source_route(path);
    // Addresses from the world: relaxed grammar (long VERP/SRS local parts,
    // `taro..yamada@` mobile addresses); still needs a domain.
    let from = if path.is_empty() {
        None
    } else {
        Some(EmailAddress::parse_relaxed(path, params.smtputf8).map_err(address_reply)?)
    };
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(rest: &str) -> Result<Command, Reply> {
    let (path, params_str) = split_path(rest, "TO:")?;
    if !params_str.trim().is_empty() {
        return Err(codes::param_not_recognized(
            "RCPT parameters are not recognized or not implemented",
        ));
    }
    let path = strip_source_route(path);
    if path.is_empty() {
        return Err(Reply::text(501, "5.1.3", "Empty recipient address"));
    }
    if is_bare_postmaster(path) {
        return Ok(Command::Rcpt {
            to: ForwardPath::Postmaster,
        });
    }
    // UTF-8 in RCPT is checked against the transaction's SMTPUTF8 by the session.
    let to = EmailAddress::parse_relaxed(path, true).map_err(|e| match e {
        AddressError::NoDomain => Reply::text(
            553,
            "5.1.3",
            "Bad address syntax: address has no @domain part (only <Postmaster> may omit it)",
        ),
        e => address_reply(e),
    })?;
    Ok(Command::Rcpt {
        to: ForwardPath::Address(to),
    })
}

/// `Postmaster` or `"Postmaster"`, any letter case, no domain.
fn is_bare_postmaster(path: &str) -> bool {
    let local = path
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .unwrap_or(path);
    local.eq_ignore_ascii_case("postmaster")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, Reply> {
        Command::parse(s.as_bytes())
    }

    fn code(s: &str) -> (u16, &'static str) {
        let r = parse(s).unwrap_err();
        (r.code, r.status)
    }

    #[test]
    fn parses_the_dialogue_commands_case_insensitively() {
        assert_eq!(
            parse("EHLO client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            parse("helo [127.0.0.1]").unwrap(),
            Command::Helo("[127.0.0.1]".into())
        );
        assert_eq!(parse("data").unwrap(), Command::Data);
        assert_eq!(parse("RSET").unwrap(), Command::Rset);
        assert_eq!(parse("NOOP anything").unwrap(), Command::Noop);
        assert_eq!(parse("QUIT").unwrap(), Command::Quit);
        assert_eq!(parse("VRFY alice").unwrap(), Command::Vrfy);
        assert_eq!(parse("HELP").unwrap(), Command::Help);
        assert_eq!(parse("EXPN staff").unwrap(), Command::NotImplemented);
    }

    #[test]
    fn parses_mail_with_parameters() {
        let Command::Mail { from, params } =
            parse("MAIL FROM:<Bob@Example.ORG> SIZE=1234 BODY=8BITMIME").unwrap()
        else {
            panic!()
        };
        assert_eq!(from.unwrap().to_string(), "Bob@example.org");
        assert_eq!(params.size, Some(1234));
        assert!(params.body_8bit);
        let Command::Mail { from, .. } = parse("mail from:<>").unwrap() else {
            panic!()
        };
        assert!(from.is_none());
        // Tolerated deviations: space after the colon, no brackets, source route.
        assert!(matches!(
            parse("MAIL FROM: <a@b.test>"),
            Ok(Command::Mail { .. })
        ));
        assert!(matches!(
            parse("MAIL FROM:a@b.test"),
            Ok(Command::Mail { .. })
        ));
        let Command::Rcpt { to } = parse("RCPT TO:<@relay.test,@r2.test:c@d.test>").unwrap() else {
            panic!()
        };
        assert_eq!(to.to_string(), "c@d.test");
    }

    fn rcpt(s: &str) -> ForwardPath {
        match parse(s) {
            Ok(Command::Rcpt { to }) => to,
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    #[test]
    fn rcpt_takes_the_bare_postmaster_in_every_form() {
        // RFC 5321 §4.1.1.3: "<Postmaster>", case-insensitive (§4.5.1).
        for s in [
            "RCPT TO:<Postmaster>",
            "RCPT TO:<postmaster>",
            "RCPT TO:<POSTMASTER>",
            "rcpt to:<PostMaster>",
            "RCPT TO:<Postmaster> ",
            "RCPT TO: <Postmaster>",
            "RCPT TO:Postmaster",
            "RCPT TO:postmaster ",
            "RCPT TO:<\"postmaster\">",
            "RCPT TO:<\"PostMaster\">",
            "RCPT TO:<@relay.test:Postmaster>",
            "RCPT TO:<@a.test,@b.test:postmaster>",
        ] {
            assert_eq!(rcpt(s), ForwardPath::Postmaster, "{s:?}");
        }
        assert_eq!(ForwardPath::Postmaster.to_string(), "postmaster");
        assert_eq!(ForwardPath::Postmaster.address(), None);
        // With a domain it is an ordinary address; the router finds the
        // domain's postmaster (or refuses to relay).
        for (s, want) in [
            (
                "RCPT TO:<PostMaster@Example.TEST>",
                "PostMaster@example.test",
            ),
            (
                "RCPT TO:<postmaster@unknown.domain>",
                "postmaster@unknown.domain",
            ),
            (
                "RCPT TO:<@relay.test:Postmaster@example.test>",
                "Postmaster@example.test",
            ),
        ] {
            let ForwardPath::Address(a) = rcpt(s) else {
                panic!("{s:?}")
            };
            assert_eq!(a.to_string(), want);
        }
        // Other domain-less recipients are still refused, saying why.
        for s in [
            "RCPT TO:<bob>",
            "RCPT TO:<postmasters>",
            "RCPT TO:<post master>",
        ] {
            let r = parse(s).unwrap_err();
            assert_eq!((r.code, r.status), (553, "5.1.3"), "{s:?}");
        }
        let r = parse("RCPT TO:<bob>").unwrap_err();
        assert_eq!(
            r.lines[0],
            "Bad address syntax: address has no @domain part (only <Postmaster> may omit it)"
        );
        assert_eq!(code("RCPT TO:<Postmaster> NOTIFY=NEVER"), (555, "5.5.4"));
        assert_eq!(code("RCPT TO:<Postmaster"), (501, "5.5.4"));
    }

    #[test]
    fn mail_and_rcpt_take_addresses_from_the_world() {
        let verp = "linux-secnews-return-67-legit-lists-secfocus=lists.example-corpus.test\
                    @securityfocus.example";
        for addr in [
            verp,
            "taro..yamada@docomo.example",
            "hanako.@docomo.example",
            ".a@example.org",
            "\"john doe\"@example.org",
        ] {
            let Command::Mail { from, .. } = parse(&format!("MAIL FROM:<{addr}>")).unwrap() else {
                panic!()
            };
            assert_eq!(from.unwrap().to_string(), addr);
            let ForwardPath::Address(to) = rcpt(&format!("RCPT TO:<{addr}>")) else {
                panic!()
            };
            assert_eq!(to.to_string(), addr);
        }
        // Still refused: no domain, empty local part, bad characters, bad
        // domain, and a path over 256 octets (RFC 5321 §4.5.3.1.3).
        for (s, want, text) in [
            (
                "MAIL FROM:<bob>",
                (553, "5.1.3"),
                "address has no @domain part",
            ),
            (
                "MAIL FROM:<Postmaster>",
                (553, "5.1.3"),
                "address has no @domain part",
            ),
            (
                "MAIL FROM:<@example.org>",
                (553, "5.1.3"),
                "local part is empty",
            ),
            (
                "MAIL FROM:<...@example.org>",
                (553, "5.1.3"),
                "local part is empty",
            ),
            (
                "MAIL FROM:<a;b@example.org>",
                (553, "5.1.3"),
                "local part contains ';'",
            ),
            (
                "MAIL FROM:<a@bad_domain.example>",
                (553, "5.1.3"),
                "domain \"bad_domain.example\"",
            ),
            (
                "RCPT TO:<a\"b@example.org>",
                (553, "5.1.3"),
                "local part contains '\"'",
            ),
        ] {
            let r = parse(s).unwrap_err();
            assert_eq!((r.code, r.status), want, "{s:?}");
            assert!(r.lines[0].contains(text), "{s:?}: {:?}", r.lines[0]);
        }
        let long = format!("MAIL FROM:<{}@example.org>", "a".repeat(250));
        let r = parse(&long).unwrap_err();
        assert_eq!((r.code, r.status), (501, "5.1.3"));
        assert_eq!(
            r.lines[0],
            "Path too long: address is 262 octets long, over the limit of 254 (RFC 5321 §4.5.3.1.3)"
        );
    }

    #[test]
    fn refuses_bad_commands_with_the_right_code() {
        assert_eq!(code("FROB"), (500, "5.5.2"));
        assert_eq!(code("EHLO"), (501, "5.5.4"));
        assert_eq!(code("MAIL TO:<a@b.test>"), (501, "5.5.4"));
        assert_eq!(code("MAIL FROM:<a@b.test"), (501, "5.5.4"));
        assert_eq!(code("MAIL FROM:<a@b.test> SIZE=big"), (501, "5.5.4"));
        assert_eq!(code("MAIL FROM:<a@b.test> RET=FULL"), (555, "5.5.4"));
        assert_eq!(code("MAIL FROM:<not an address>"), (553, "5.1.3"));
        assert_eq!(code("MAIL FROM:<jö@b.test>"), (553, "5.6.7"));
        assert_eq!(code("RCPT TO:<>"), (501, "5.1.3"));
        assert_eq!(code("RCPT TO:<a@b.test> NOTIFY=NEVER"), (555, "5.5.4"));
        assert_eq!(code("DATA now"), (501, "5.5.4"));
        assert_eq!(code("VRFY"), (501, "5.5.4"));
        assert_eq!(Command::parse(b"EHLO \xff").unwrap_err().code, 500);
    }

    #[test]
    fn smtputf8_allows_utf8_sender() {
        let Command::Mail { from, params } = parse("MAIL FROM:<jö@bü.test> SMTPUTF8").unwrap()
        else {
            panic!()
        };
        assert!(params.smtputf8);
        assert_eq!(from.unwrap().to_string(), "jö@bü.test");
    }
}
