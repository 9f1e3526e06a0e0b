//! A mail boxtrap sends to a sender (a challenge, `returnverify`,
//! `blacklist`, `verifyreleased`; BoxTrapper's four templates), gathered
//! before the database transaction that queues it and built inside that
//! transaction without any I/O: the challenge's token needs the id of the
//! challenge row, and nothing may be awaited while the write lock is held.
//!
//! Building can fail (an owner's template that no longer renders falls back
//! to the default; an address or Message-ID lettre cannot write is refused).
//! A failure is the caller's to contain: a held message stays held, without
//! its challenge, and the reason says why.

use super::compose::{ComposeError, ComposeInput, compose};
use super::sign::Signers;
use super::templates::{self, TemplateError, TemplateName, TemplateVars};
use crate::clock::Timestamp;
use crate::policy::facts::challenge_message_id;

/// Everything a notice mail is made of, except its token.
#[derive(Debug, Clone)]
pub struct Notice {
    pub name: TemplateName,
    /// The owner's override, or the default text.
    pub template: String,
    /// The template's variables; `token` and `link` are set by [`Notice::build`].
    pub vars: TemplateVars,
    /// The address that was mailed (for a challenge) or the mailbox.
    pub from_address: String,
    /// The mailbox's display name ("" = none).
    pub from_name: String,
    pub to: String,
    /// The original's Message-ID, with `<>`, when there is one.
    pub in_reply_to: Option<String>,
    /// The mailbox address, for the marker header.
    pub marker: String,
    /// Our host name, the right side of our Message-IDs.
    pub hostname: String,
    /// Where the verification pages are served, without a trailing `/`.
    pub base_url: String,
    pub date: Timestamp,
    /// The DKIM keys of the sending domain; none: sent unsigned.
    pub dkim: Signers,
}

/// Why a notice could not be built; nothing is sent.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the built-in {0} template fails: {1}")]
    Template(&'static str, TemplateError),
    #[error("cannot build the {0} mail: {1}")]
    Compose(&'static str, ComposeError),
}

/// The verification link for a token.
pub fn link(base_url: &str, token: &str) -> String {
    format!("{base_url}/verify/{token}")
}

/// A built notice.
#[derive(Debug, Clone)]
pub struct Built {
    /// RFC 5322 message, CRLF line endings, DKIM-signed with every key in
    /// [`Notice::dkim`]: the bytes that go out.
    pub data: Vec<u8>,
    /// Set when the original's Message-ID could not be used and the mail
    /// went out without `In-Reply-To` (the reply still matches by token).
    pub dropped_in_reply_to: Option<ComposeError>,
}

impl Notice {
    /// Renders the template, composes the mail and DKIM-signs it; `token`
    /// is the challenge's (`verify`) or `None`. Pure: no I/O.
    pub fn build(&self, token: Option<&str>) -> Result<Built, NoticeError> {
        let name = self.name;
        let link = token.map(|t| link(&self.base_url, t)).unwrap_or_default();
        let mut vars = self.vars.clone();
        vars.token = token.unwrap_or_default().to_owned();
        vars.link = link.clone();
        // An owner's override that no longer renders falls back to the default.
        let rendered = match templates::render(name, &self.template, &vars) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(mailbox = %self.marker, template = name.as_str(), error = %e, "template override failed; using the default");
                templates::render(name, templates::default_text(name), &vars)
                    .map_err(|e| NoticeError::Template(name.as_str(), e))?
            }
        };
        let message_id = match token {
            Some(t) => challenge_message_id(t, &self.hostname),
            None => format!(
                "<boxtrap.{}.{}@{}>",
                name.as_str(),
                self.date.0,
                self.hostname
            ),
        };
        let input = ComposeInput {
            rendered: &rendered,
            from_address: &self.from_address,
            from_name: &self.from_name,
            to: &self.to,
            in_reply_to: self.in_reply_to.as_deref(),
            message_id,
            link: token.map(|_| link.as_str()),
            marker: &self.marker,
            date: self.date,
        };
        match compose(&input) {
            Ok(c) => Ok(Built {
                data: self.sign(c.data),
                dropped_in_reply_to: None,
            }),
            // RFC 5322 §3.6.4 makes In-Reply-To optional: an original id we
            // cannot repeat costs the threading, not the mail.
            Err(
                e @ ComposeError::BadMessageId {
                    field: "In-Reply-To",
                    ..
                },
            ) => {
                let c = compose(&ComposeInput {
                    in_reply_to: None,
                    ..input
                })
                .map_err(|e| NoticeError::Compose(name.as_str(), e))?;
                Ok(Built {
                    data: self.sign(c.data),
                    dropped_in_reply_to: Some(e),
                })
            }
            Err(e) => Err(NoticeError::Compose(name.as_str(), e)),
        }
    }

    /// The composed mail with its DKIM signatures; a signature that cannot
    /// be made (never seen: the keys were checked when read) costs the
    /// signatures, logged, not the mail.
    fn sign(&self, data: Vec<u8>) -> Vec<u8> {
        match self.dkim.sign(&data) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!(mailbox = %self.marker, to = %self.to, error = %e, "mail sent without its DKIM signatures");
                data
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(to: &str, in_reply_to: Option<&str>) -> Notice {
        Notice {
            name: TemplateName::Verify,
            template: templates::default_text(TemplateName::Verify).to_owned(),
            vars: TemplateVars::sample(),
            from_address: "alice@example.test".into(),
            from_name: "Alice".into(),
            to: to.into(),
            in_reply_to: in_reply_to.map(str::to_owned),
            marker: "alice@example.test".into(),
            hostname: "mx.example.test".into(),
            base_url: "http://127.0.0.1:8080".into(),
            date: Timestamp(1_700_000_000_000_000),
            dkim: Signers::default(),
        }
    }

    #[test]
    fn a_challenge_carries_its_link_and_threads_under_the_original() {
        let b = notice("bob@example.org", Some("<orig@example.org>"))
            .build(Some("TOKEN123"))
            .unwrap();
        let text = String::from_utf8(b.data).unwrap();
        assert!(text.contains("http://127.0.0.1:8080/verify/TOKEN123"));
        assert!(text.contains("In-Reply-To: <orig@example.org>"));
        assert!(b.dropped_in_reply_to.is_none());
    }

    #[test]
    fn an_unusable_original_message_id_drops_in_reply_to_not_the_challenge() {
        let b = notice("bob@example.org", Some("not an id"))
            .build(Some("TOKEN123"))
            .unwrap();
        let text = String::from_utf8(b.data).unwrap();
        assert!(!text.contains("In-Reply-To"));
        assert!(text.contains("/verify/TOKEN123"));
        assert!(b.dropped_in_reply_to.is_some());
    }

    #[test]
    fn an_address_that_cannot_be_written_is_an_error_naming_it() {
        let e = notice("@example.org", None).build(Some("T")).unwrap_err();
        assert!(e.to_string().contains("@example.org"), "{e}");
    }
}
