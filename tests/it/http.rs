//! A small HTTP/1.1 client for the web tests: one request per connection
//! from a chosen loopback address, and a browser-like client that keeps the
//! owner's session cookie and sends our own `Origin` on POSTs.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// One HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The session id a `Set-Cookie` gives (`""`: a clearing one).
    pub fn session_cookie(&self) -> Option<String> {
        let c = self.header("set-cookie")?;
        let v = c.strip_prefix("boxtrap_session=")?;
        Some(v.split(';').next().unwrap_or("").to_owned())
    }

    /// The CSRF token in the page's forms.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        self.body[at + 19..at + 19 + 64].to_owned()
    }
}

/// One request over a fresh connection from the loopback address `src`.
pub async fn request_from(
    src: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    let typed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if method != "GET" && !typed {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("no HTTP response within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A browser: keeps the session cookie and sends our own Origin on POSTs.
pub struct Browser {
    pub web: SocketAddr,
    pub src: &'static str,
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            web: app.web,
            src: "127.0.0.1",
            cookie: None,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.web)
    }

    pub async fn get(&self, path: &str) -> Resp {
        let cookie = self.cookie.as_ref().map(|c| format!("boxtrap_session={c}"));
        let mut h = Vec::new();
        if let Some(c) = &cookie {
            h.push(("Cookie", c.as_str()));
        }
        request_from(self.src, self.web, "GET", path, &h, "").await
    }

    /// A POST with extra headers (an Origin of our own unless given).
    pub async fn post_with(&self, path: &str, form: &str, extra: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie.as_ref().map(|c| format!("boxtrap_session={c}"));
        let origin = self.origin();
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("origin") || k.eq_ignore_ascii_case("referer"))
        {
            h.push(("Origin", origin.as_str()));
        }
        if let Some(c) = &cookie {
            h.push(("Cookie", c.as_str()));
        }
        request_from(self.src, self.web, "POST", path, &h, form).await
    }

    pub async fn post(&self, path: &str, form: &str) -> Resp {
        self.post_with(path, form, &[]).await
    }

    pub async fn login(&mut self, address: &str, password: &str) -> Resp {
        let r = self
            .post(
                "/login",
                &format!("address={}&password={}", enc(address), enc(password)),
            )
            .await;
        if let Some(c) = r.session_cookie() {
            self.cookie = Some(c);
        }
        r
    }

    /// Signs in (expecting success) and returns the quarantine page.
    pub async fn signed_in(app: &TestApp, address: &str, password: &str) -> (Browser, Resp) {
        let mut b = Browser::new(app);
        let r = b.login(address, password).await;
        assert_eq!(r.status, 303, "{r:?}");
        let page = b.get("/quarantine").await;
        assert_eq!(page.status, 200, "{page:?}");
        (b, page)
    }
}

/// Form-encodes a value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn set_password(app: &TestApp, mailbox: &str, pw: &str) {
    let h = boxtrap::password::hash(pw).unwrap();
    app.store
        .set_password_hash(&addr_of(mailbox), &h)
        .await
        .unwrap();
}

/// A JSON API caller: a session (`Cookie` + `X-CSRF-Token`, our Origin)
/// or a token (`Authorization: Bearer`).
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub web: SocketAddr,
    pub headers: Vec<(String, String)>,
}

impl ApiCaller {
    /// Signs in with `POST /api/v1/login` (expecting success).
    pub async fn session(app: &TestApp, address: &str, password: &str) -> ApiCaller {
        let body = serde_json::json!({"address": address, "password": password}).to_string();
        let r = request_from(
            "127.0.0.1",
            app.web,
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
        let cookie = r.session_cookie().expect("a session cookie");
        ApiCaller {
            web: app.web,
            headers: vec![
                ("Cookie".into(), format!("boxtrap_session={cookie}")),
                ("X-CSRF-Token".into(), csrf),
                ("Origin".into(), format!("http://{}", app.web)),
            ],
        }
    }

    /// A caller with a personal API token.
    pub fn token(app: &TestApp, token: &str) -> ApiCaller {
        ApiCaller {
            web: app.web,
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        }
    }

    /// This caller without the header `name` (case-insensitive), or with
    /// `value` instead when given.
    pub fn with(&self, name: &str, value: Option<&str>) -> ApiCaller {
        let mut c = self.clone();
        c.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            c.headers.push((name.to_owned(), v.to_owned()));
        }
        c
    }

    /// One call; a non-empty body is sent as JSON.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> Resp {
        let mut h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !body.is_empty() {
            h.push(("Content-Type", "application/json"));
        }
        request_from("127.0.0.1", self.web, method, path, &h, body).await
    }
}

impl Resp {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The `error` of a JSON refusal.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {self:?}"))
            .to_owned()
    }
}
