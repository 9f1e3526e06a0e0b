//! The checks at the end of DATA, before the quarantine screens a message:
//! who sent it (SPF, DKIM, DMARC and ARC through [`crate::auth`]) and how
//! spammy it is ([`crate::spam`]: GTUBE, SpamAssassin's spamd, and the DNS
//! blocklists' score zones the session found at RCPT).
//!
//! Two outcomes only. A message is refused with `550 5.7.1` when its
//! From: domain's DMARC policy says reject (RFC 7489 §6.6.3; `[auth]
//! dmarc_reject`) or its score reaches `[spam] reject_score`. Otherwise it
//! goes on with our `Authentication-Results:` (RFC 8601), after every
//! incoming one claiming our authserv-id is removed (§5), and SpamAssassin's
//! `X-Spam-Score`/`X-Spam-Status` when it was scored (every `X-Spam-*`
//! verdict field the message arrived with is removed first); the results travel
//! to the policy as [`Checks`]. Nothing here fails a transaction: a DNS
//! failure is a temporary result (held without a challenge, never
//! refused), and spamd down or slow leaves the message unscored, logged.

use super::reply::Reply;
use crate::auth::{AuthConfig, AuthResults, Authenticator, DmarcPolicy, strip_own_results};
use crate::envelope::Envelope;
use crate::policy::SenderAuth;
use crate::quarantine::Checks;
use crate::spam::{SpamCheck, SpamConfig, SpamScorer, strip_spam_headers};
use std::borrow::Cow;

/// What the checks decided about one message.
#[derive(Debug)]
pub enum Checked {
    /// Refused for every recipient: the client is told `reply`; `why`
    /// goes to the rejectlog.
    Refuse { reply: Reply, why: String },
    /// Goes on to the quarantine and delivery as `data` (with our header
    /// fields on top) with what the checks found.
    Pass { data: Vec<u8>, checks: Checks },
}

/// The checks, built once per server.
pub struct MessageChecks {
    /// `None` when `[auth] enabled` is off or the server has no real
    /// resolver (a test's fake one): then no sender is authenticated.
    authenticator: Option<Authenticator>,
    /// How long SPF, DKIM, DMARC and ARC together may take (their DNS
    /// lookups chain); past it they are `temperror`.
    auth_time_limit: std::time::Duration,
    auth: AuthConfig,
    authserv_id: String,
    scorer: SpamScorer,
    spam: SpamConfig,
}

impl MessageChecks {
    /// The checks for `auth` (`authenticator` is used only when
    /// `auth.enabled`), our `hostname` (the default authserv-id), the
    /// scorer and `[spam]`. `auth_time_limit` bounds the authentication
    /// checks of one message.
    pub fn new(
        authenticator: Option<Authenticator>,
        auth: &AuthConfig,
        auth_time_limit: std::time::Duration,
        hostname: &str,
        scorer: SpamScorer,
        spam: &SpamConfig,
    ) -> MessageChecks {
        MessageChecks {
            authenticator: authenticator.filter(|_| auth.enabled),
            auth_time_limit,
            authserv_id: auth.authserv_id_or(hostname).to_owned(),
            auth: auth.clone(),
            scorer,
            spam: spam.clone(),
        }
    }

    /// Checks `data` (the message with our `Received:` on top, CRLF line
    /// ends) sent with `env`. SPF, DKIM, DMARC and spamd run concurrently;
    /// the whole takes at most the longer of the DNS and spamd timeouts.
    pub async fn check(&self, env: &Envelope, data: Vec<u8>) -> Checked {
        let data = match strip_own_results(&data, &self.authserv_id) {
            Cow::Borrowed(_) => data,
            Cow::Owned(stripped) => stripped,
        };
        // A sender must not write a verdict next to ours.
        let data = match strip_spam_headers(&data) {
            Cow::Borrowed(_) => data,
            Cow::Owned(stripped) => stripped,
        };
        let sender = env.sender.as_ref().map(|s| s.to_string());
        let verify = async {
            match &self.authenticator {
                Some(a) => Some(
                    a.verify_within(
                        self.auth_time_limit,
                        &data,
                        env.client.addr.ip(),
                        &env.client.helo,
                        sender.as_deref(),
                    )
                    .await,
                ),
                None => None,
            }
        };
        let (auth, spam) = tokio::join!(verify, self.scorer.check(&data));

        if let Some(results) = &auth
            && self.auth.dmarc_reject
            && results.dmarc_failure() == Some(DmarcPolicy::Reject)
        {
            let domain = &results.dmarc.from_domain;
            return Checked::Refuse {
                reply: Reply::text(
                    550,
                    "5.7.1",
                    format!(
                        "Email from {domain} is not accepted: it fails the DMARC policy \
                         {domain} publishes (p=reject)"
                    ),
                ),
                why: format!("DMARC policy of {domain} is reject: {}", results.summary()),
            };
        }

        if let SpamCheck::Unavailable(why) = &spam {
            tracing::warn!(queue_id = %env.queue_id, "spamd unavailable, message not scored: {why}");
        }
        // DNS blocklists' score zones add to the score (the session found
        // them at the first RCPT).
        let spam_score = match (spam.verdict(), env.dnsbl.is_empty()) {
            (Some(v), _) => Some(v.score + env.dnsbl_score()),
            (None, false) => Some(env.dnsbl_score()),
            (None, true) => None,
        };
        let mut spam_report = spam.summary();
        for hit in &env.dnsbl {
            spam_report.push_str(&format!(
                "; client listed on {} ({}): {:+.1}",
                hit.zone, hit.answer, hit.score
            ));
        }
        if let Some(score) = spam_score
            && score >= self.spam.reject_score
        {
            return Checked::Refuse {
                reply: Reply::text(
                    550,
                    "5.7.1",
                    format!(
                        "Message refused as spam (score {score:.1}, the limit is {:.1})",
                        self.spam.reject_score
                    ),
                ),
                why: format!("spam score {score:.1}: {spam_report}"),
            };
        }

        let (sender_auth, header) = match &auth {
            Some(results) => (
                self.sender_auth(results),
                results.header_value(&self.authserv_id),
            ),
            None => (
                SenderAuth::Unauthenticated {
                    failed: None,
                    results: if self.auth.enabled {
                        "not checked: the server has no DNS resolver".into()
                    } else {
                        "not checked: [auth] enabled is false".into()
                    },
                },
                String::new(),
            ),
        };
        // The stored value: the header field's value unfolded on one line.
        let auth_results = header
            .trim_end()
            .strip_prefix("Authentication-Results:")
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut top = header.into_bytes();
        if let Some(v) = spam.verdict() {
            top.extend_from_slice(v.header_lines().as_bytes());
        }
        let data = if top.is_empty() {
            data
        } else {
            top.extend_from_slice(&data);
            top
        };
        Checked::Pass {
            data,
            checks: Checks {
                auth: sender_auth,
                auth_results,
                spam_score,
                spam_report,
            },
        }
    }

    /// Whether the From: address proved itself, for the policy.
    fn sender_auth(&self, results: &AuthResults) -> SenderAuth {
        if let Some((mechanism, domain)) = results.sender_authenticated(self.auth.alignment) {
            return SenderAuth::Authenticated(format!("{mechanism} {domain}"));
        }
        if let Some(why) = results.temporary_error() {
            return SenderAuth::Temporary(why);
        }
        SenderAuth::Unauthenticated {
            failed: results.any_failed(),
            results: results.summary(),
        }
    }
}
