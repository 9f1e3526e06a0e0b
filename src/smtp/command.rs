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
        to: EmailAddress,
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
    let from = if path.is_empty() {
        None
    } else {
        Some(EmailAddress::parse_with(path, params.smtputf8).map_err(address_reply)?)
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
    // UTF-8 in RCPT is checked against the transaction's SMTPUTF8 by the session.
    let to = EmailAddress::parse_with(path, true).map_err(address_reply)?;
    Ok(Command::Rcpt { to })
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
