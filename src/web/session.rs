//! Owners' sign-in sessions and the checks every owner request passes:
//! the session cookie, the CSRF token, the same-origin check and the
//! security headers.
//!
//! A session id is 32 random bytes (hex) that only the cookie carries; the
//! database keeps its SHA-256, so a copy of the table signs nobody in. A
//! new id is made at every sign-in (no fixation). Sessions end after
//! `[web] session_idle` without a request and `[web] session_lifetime`
//! after sign-in; expired rows are purged at each sign-in.

use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::store::web::WebSession;
use crate::store::{Store, StoreError};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The session cookie's name.
pub const COOKIE: &str = "boxtrap_session";

/// What the owner's pages need besides the store: the clock, the session
/// limits and how the site is reached.
#[derive(Clone)]
pub struct Sessions {
    pub clock: Arc<dyn Clock>,
    idle_secs: i64,
    lifetime_secs: i64,
    /// Cookies get `Secure` (`[web] base_url` is https).
    secure: bool,
    /// The origin of `[web] base_url` (`https://mail.example.com`), when
    /// set; requests are also same-origin when they match their `Host`.
    origin: Option<String>,
}

/// A signed-in request: the session and its id's hash.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: WebSession,
    pub id_hash: String,
}

impl Sessions {
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Sessions {
        let base = config.web.base_url.trim_end_matches('/');
        Sessions {
            clock,
            idle_secs: config.web.session_idle.0.as_secs() as i64,
            lifetime_secs: config.web.session_lifetime.0.as_secs() as i64,
            secure: base.starts_with("https://"),
            origin: (!base.is_empty()).then(|| origin_of(base).to_owned()),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The session the request's cookie names, if it is live; its last
    /// use becomes now.
    pub async fn current(
        &self,
        store: &Store,
        headers: &HeaderMap,
    ) -> Result<Option<SignedIn>, StoreError> {
        let Some(id) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        if !is_token(id) {
            return Ok(None);
        }
        let id_hash = hash_id(id);
        let now = self.now();
        let Some(session) = store
            .web_session(
                &id_hash,
                now.plus_secs(-self.idle_secs),
                now.plus_secs(-self.lifetime_secs),
            )
            .await?
        else {
            return Ok(None);
        };
        // Writes at most once a minute per session.
        if now.secs() - session.last_seen.secs() >= 60 {
            store.touch_web_session(&id_hash, now).await?;
        }
        Ok(Some(SignedIn { session, id_hash }))
    }

    /// Starts a session for the mailbox (purging expired ones first);
    /// returns the cookie to set and the session's CSRF token.
    pub async fn start(
        &self,
        store: &Store,
        mailbox_id: i64,
    ) -> Result<(HeaderValue, String), StoreError> {
        let now = self.now();
        store
            .purge_web_sessions(
                now.plus_secs(-self.idle_secs),
                now.plus_secs(-self.lifetime_secs),
            )
            .await?;
        let id = new_token();
        let csrf = new_token();
        store
            .create_web_session(&hash_id(&id), mailbox_id, &csrf, now)
            .await?;
        Ok((self.cookie_header(&id, self.lifetime_secs), csrf))
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie_header("", 0)
    }

    fn cookie_header(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ))
        .expect("cookie is ASCII")
    }

    /// Whether a state-changing request comes from our own pages: its
    /// `Origin` (or, without one, its `Referer`) is this site. `Err` says
    /// what was wrong, fit to show.
    pub fn same_origin(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ours = |origin: &str| {
            self.origin.as_deref() == Some(origin)
                || (!host.is_empty()
                    && (origin == format!("http://{host}") || origin == format!("https://{host}")))
        };
        if let Some(o) = headers.get(header::ORIGIN) {
            let o = o.to_str().unwrap_or("");
            return if ours(o) {
                Ok(())
            } else {
                Err("the request came from another site (its Origin is not this server)")
            };
        }
        match headers.get(header::REFERER).and_then(|r| r.to_str().ok()) {
            Some(r) if ours(origin_of(r)) && r[origin_of(r).len()..].starts_with('/') => Ok(()),
            Some(_) => Err("the request came from another site (its Referer is not this server)"),
            None => Err(
                "the request says neither where it came from (no Origin) nor which page sent it (no Referer)",
            ),
        }
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    let end = url[rest_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_at + i);
    &url[..end]
}

/// 32 random bytes, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b[..]);
    hex(&b)
}

/// Whether `s` looks like one of [`new_token`]'s.
fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SHA-256 of a session id, hex: what the database keeps.
pub fn hash_id(id: &str) -> String {
    hex(&Sha256::digest(id.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time that depends on their length only.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Security headers for every owner page; signed-in pages are never
/// stored by a cache.
pub fn secure_headers(r: &mut Response, signed_in: bool) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // same-origin, not no-referrer: with no-referrer a browser sends
    // `Origin: null` on our own forms' POSTs.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    if signed_in {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn sessions(base: &str) -> Sessions {
        let mut c = Config::default();
        c.web.base_url = base.into();
        Sessions::new(&c, Arc::new(ManualClock::new(Timestamp::from_secs(0))))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_needs_our_origin_or_referer() {
        let s = sessions("https://mail.example.com/");
        let ok = [
            vec![("origin", "https://mail.example.com")],
            vec![
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            vec![("referer", "https://mail.example.com/quarantine?x=1")],
        ];
        for h in ok {
            assert_eq!(s.same_origin(&headers(&h)), Ok(()), "{h:?}");
        }
        let bad = [
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "https://mail.example.com.evil.example")],
            vec![("host", "a:1"), ("origin", "http://a:12")],
            vec![("referer", "https://mail.example.com.evil.example/")],
            vec![("referer", "https://mail.example.com")],
            vec![],
        ];
        for h in bad {
            assert!(s.same_origin(&headers(&h)).is_err(), "{h:?}");
        }
        // An Origin that is not ours is refused even with our Referer.
        assert!(
            s.same_origin(&headers(&[
                ("origin", "https://evil.example"),
                ("referer", "https://mail.example.com/")
            ]))
            .is_err()
        );
    }

    #[test]
    fn cookies_are_read_and_set_with_their_flags() {
        let h = headers(&[("cookie", "a=1; boxtrap_session=abc; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let set = sessions("https://mail.example.com").cookie_header("x", 60);
        assert_eq!(
            set.to_str().unwrap(),
            "boxtrap_session=x; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        let plain = sessions("").cookie_header("x", 60);
        assert!(!plain.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn tokens_are_random_hex_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(is_token(&a) && !is_token("zz") && !is_token(&format!("{a}0")));
        assert_eq!(hash_id(&a).len(), 64);
        assert_ne!(hash_id(&a), a);
        assert!(same_secret(&a, &a.clone()) && !same_secret(&a, &b) && !same_secret(&a, ""));
    }
}
