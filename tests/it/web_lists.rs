//! The owner's lists page (`/lists`) over real HTTP on the TestApp's web
//! listener: adding in the simple mode and in BoxTrapper's syntax,
//! removing, the tester, import and export, where each entry came from,
//! bad rules refused by name with nothing changed, the list size limit,
//! another mailbox's entries (404), CSRF and Origin (403), and escaping.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::Timestamp;
use boxtrap::policy::rules::ListKind;
use boxtrap::store::held::{self, NewHeld};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const PW: &str = "alice correct horse";

/// One HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CSRF token in the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        self.body[at + 19..at + 19 + 64].to_owned()
    }
}

/// One request over a fresh connection.
async fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    request_bytes(to, method, path, headers, body.as_bytes()).await
}

/// [`request`] with a body of any bytes.
async fn request_bytes(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req).await.unwrap();
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

/// A signed-in browser: its session cookie, and our own Origin on POSTs.
struct Browser {
    web: SocketAddr,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn sign_in(app: &TestApp, address: &str) -> Browser {
        let h = boxtrap::password::hash(PW).unwrap();
        app.store
            .set_password_hash(&addr_of(address), &h)
            .await
            .unwrap();
        let origin = format!("http://{}", app.web);
        let form = format!("address={}&password={}", enc(address), enc(PW));
        let r = request(
            app.web,
            "POST",
            "/login",
            &[
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &form,
        )
        .await;
        assert_eq!(r.status, 303, "{r:?}");
        let c = r.header("set-cookie").unwrap();
        let cookie = c
            .strip_prefix("boxtrap_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut b = Browser {
            web: app.web,
            cookie,
            csrf: String::new(),
        };
        b.csrf = b.get("/lists").await.csrf();
        b
    }

    fn cookie(&self) -> String {
        format!("boxtrap_session={}", self.cookie)
    }

    async fn get(&self, path: &str) -> Resp {
        request(self.web, "GET", path, &[("Cookie", &self.cookie())], "").await
    }

    /// A form POST with these headers instead of our own Origin.
    async fn post_with(&self, path: &str, form: &str, extra: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie();
        let mut h = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        h.extend_from_slice(extra);
        request(self.web, "POST", path, &h, form).await
    }

    /// A form POST from our own page, with the CSRF token.
    async fn post(&self, path: &str, form: &str) -> Resp {
        let origin = format!("http://{}", self.web);
        let form = format!("csrf={}&{form}", self.csrf);
        self.post_with(path, &form, &[("Origin", &origin)]).await
    }

    async fn add(&self, list: &str, mode: &str, entry: &str) -> Resp {
        self.post(
            "/lists/add",
            &format!("list={list}&mode={mode}&entry={}", enc(entry)),
        )
        .await
    }

    /// The import form as the page sends it (`multipart/form-data`),
    /// with `file` as the chosen file (`filename`, bytes) and `csrf`
    /// as the token field's value.
    async fn import_file(&self, list: &str, csrf: &str, text: &str, file: (&str, &[u8])) -> Resp {
        let boundary = "----boxtrapTestBoundary7MA4YWxk";
        let mut body = Vec::new();
        for (name, value) in [
            ("csrf", csrf),
            ("list", list),
            ("how", "add"),
            ("text", text),
        ] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 Content-Type: text/plain\r\n\r\n",
                file.0
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.1);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let origin = format!("http://{}", self.web);
        let ctype = format!("multipart/form-data; boundary={boundary}");
        let cookie = self.cookie();
        request_bytes(
            self.web,
            "POST",
            "/lists/import",
            &[
                ("Cookie", &cookie),
                ("Origin", &origin),
                ("Content-Type", &ctype),
            ],
            &body,
        )
        .await
    }

    async fn import(&self, list: &str, how: &str, text: &str) -> Resp {
        self.post(
            "/lists/import",
            &format!("list={list}&how={how}&text={}", enc(text)),
        )
        .await
    }
}

/// Form-encodes a value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A mailbox's list as rule lines.
async fn list(app: &TestApp, mailbox: &str, kind: ListKind) -> Vec<String> {
    let id = app.mailbox_id(mailbox).await;
    let rules = app.store.rules(id, kind).await.unwrap();
    rules.iter().map(|r| r.to_line()).collect()
}

/// The id of the entry with this rule line on a mailbox's list.
async fn entry_id(app: &TestApp, mailbox: &str, kind: ListKind, line: &str) -> i64 {
    let id = app.mailbox_id(mailbox).await;
    let entries = app.store.list_entries(id, kind).await.unwrap();
    entries
        .iter()
        .find(|e| e.rule.to_line() == line)
        .unwrap_or_else(|| panic!("{line} not on the list"))
        .id
}

/// Everything on all three of a mailbox's lists.
async fn all_lists(app: &TestApp, mailbox: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for kind in ListKind::ALL {
        out.push(list(app, mailbox, kind).await);
    }
    out
}

/// The day of T0, as the page shows dates.
fn today() -> String {
    Timestamp::from_secs(T0).log_format()[..10].to_owned()
}

fn assert_redirect(r: &Resp, to: &str) {
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some(to), "{r:?}");
}

/// Puts a message from `sender` in `mailbox`'s quarantine; its id.
async fn hold(app: &TestApp, mailbox: &str, sender: &str) -> i64 {
    let data = format!("From: {sender}\r\nTo: {mailbox}\r\nSubject: hi\r\n\r\nBody.\r\n");
    let id = app.mailbox_id(mailbox).await;
    let mut tx = app.store.begin_write().await.unwrap();
    let hid = held::insert_held(
        &mut tx,
        &NewHeld {
            mailbox_id: id,
            queue_id: "1wH3kL-000001-3k",
            rcpt_index: 0,
            env_sender: sender,
            original_rcpt: mailbox,
            sender,
            sender_name: "",
            subject: "hi",
            message_id: "<w1@example.org>",
            date_header: "",
            arrived_at: Timestamp::from_secs(T0 - 600),
            reason: "rate-limited",
            reason_detail: "challenge rate limit reached",
            challenge_id: None,
            data: data.as_bytes(),
            auth_results: "",
            spam_score: None,
            spam_report: "",
            attachments: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hid
}

on_both_backends!(
    entries_are_added_and_removed_and_say_where_they_came_from,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        // Not signed in: to the sign-in page and back.
        let r = request(app.web, "GET", "/lists", &[], "").await;
        assert_redirect(&r, "/login?next=/lists");

        let b = Browser::sign_in(&app, ALICE).await;
        let page = b.get("/lists").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert!(
            page.header("content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        for label in [
            "<label for=\"add-entry\">",
            "<label for=\"test-address\">",
            "<label for=\"import-text\">",
        ] {
            assert!(page.body.contains(label), "{label}");
        }
        assert_eq!(page.body.matches("This list is empty.").count(), 3);

        // The simple mode: an address, a whole domain.
        let r = b.add("allow", "simple", "Bob@Example.org").await;
        assert_redirect(&r, "/lists?done=added.allow#allow");
        let r = b.add("block", "simple", "*@Spam.example").await;
        assert_redirect(&r, "/lists?done=added.block#block");
        // BoxTrapper's syntax, read as `boxtrap list add` reads it.
        let r = b.add("ignore", "rule", r"subject ^\[lottery\]").await;
        assert_redirect(&r, "/lists?done=added.ignore#ignore");
        let r = b.add("allow", "rule", "from *@partner.example").await;
        assert_redirect(&r, "/lists?done=added.allow#allow");
        // Twice: nothing changes.
        let r = b.add("allow", "simple", "bob@example.org").await;
        assert_redirect(&r, "/lists?done=already.allow#allow");
        assert_eq!(
            all_lists(&app, ALICE).await,
            [
                vec![r"subject ^\[lottery\]".to_owned()],
                vec![r"from .*@spam\.example$".to_owned()],
                vec![
                    r"from ^bob@example\.org$".to_owned(),
                    "from .*@partner.example".to_owned()
                ],
            ]
        );

        // Released from the quarantine page; added by an admin.
        let held = hold(&app, ALICE, "carol@example.net").await;
        let r = b.post(&format!("/quarantine/{held}/allow"), "").await;
        assert_eq!(r.status, 303, "{r:?}");
        app.add_rule(ALICE, ListKind::Block, r"from ^dave@example\.net$")
            .await;

        let page = b.get("/lists?done=added.allow").await;
        assert!(page.body.contains("Added to your allow list."));
        let day = today();
        // Addresses and domains are shown as typed, not as their rules.
        for (rule, origin) in [
            (
                "<code class=\"rule\">bob@example.org</code>",
                format!("added by you on {day}"),
            ),
            (
                "<code class=\"rule\">carol@example.net</code>",
                format!("added from quarantine on {day}"),
            ),
            (
                "<code class=\"rule\">dave@example.net</code>",
                format!("added by an administrator on {day}"),
            ),
        ] {
            let at = page.body.find(rule).unwrap_or_else(|| panic!("{rule}"));
            let rest = &page.body[at..];
            let line = &rest[..rest.find("</li>").unwrap()];
            assert!(line.contains(&origin), "{rule}: {line}");
        }

        // Remove one.
        let id = entry_id(&app, ALICE, ListKind::Allow, r"from ^bob@example\.org$").await;
        assert!(
            page.body
                .contains(&format!("action=\"/lists/allow/{id}/remove\""))
        );
        let r = b.post(&format!("/lists/allow/{id}/remove"), "").await;
        assert_redirect(&r, "/lists?done=removed.allow#allow");
        assert!(
            !list(&app, ALICE, ListKind::Allow)
                .await
                .contains(&r"from ^bob@example\.org$".to_owned())
        );
        // Again: it is not there any more.
        let r = b.post(&format!("/lists/allow/{id}/remove"), "").await;
        assert_eq!(r.status, 404, "{r:?}");
        // A GET changes nothing.
        let id = entry_id(&app, ALICE, ListKind::Block, r"from .*@spam\.example$").await;
        let r = b.get(&format!("/lists/block/{id}/remove")).await;
        assert_eq!(r.status, 405, "{r:?}");
        assert_eq!(list(&app, ALICE, ListKind::Block).await.len(), 2);
    }
);

on_both_backends!(
    bad_entries_are_refused_by_name_keeping_what_was_typed,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| c.challenge.max_rules_per_list = 2).await;
        let b = Browser::sign_in(&app, ALICE).await;
        b.add("allow", "simple", "friend@example.org").await;
        let before = all_lists(&app, ALICE).await;

        for (list, mode, entry, reason) in [
            (
                "allow",
                "rule",
                "from (?=x)",
                "look-ahead (?=...) is a Perl regex feature",
            ),
            ("allow", "rule", "form bob", "unknown field &#39;form&#39;"),
            (
                "block",
                "rule",
                "subject (unclosed",
                "invalid regular expression",
            ),
            ("allow", "simple", "bob smith@example.org", "it has spaces"),
            (
                "allow",
                "simple",
                "*@bad_domain",
                "is not an address or *@domain",
            ),
            ("allow", "simple", "", "Enter an address"),
            (
                "grey",
                "simple",
                "bob@example.org",
                "Choose the allow, block or ignore list.",
            ),
        ] {
            let r = b.add(list, mode, entry).await;
            assert_eq!(r.status, 400, "{entry}: {r:?}");
            assert!(r.body.contains(reason), "{entry}: {}", r.body);
            assert!(r.body.contains("role=\"alert\""), "{entry}");
            // What was typed is back in the field, and the mode with it.
            let typed = format!(
                "value=\"{}\"",
                entry.replace('\'', "&#39;").replace('"', "&#34;")
            );
            assert!(r.body.contains(&typed), "{entry}: {typed}");
            if mode == "rule" {
                assert!(r.body.contains("value=\"rule\" checked"), "{entry}");
            }
            assert_eq!(all_lists(&app, ALICE).await, before, "{entry}");
        }

        // The list's size limit, with what to do about it.
        let r = b.add("allow", "simple", "second@example.org").await;
        assert_eq!(r.status, 303);
        let r = b.add("allow", "simple", "third@example.org").await;
        assert_eq!(r.status, 409, "{r:?}");
        assert!(
            r.body
                .contains("Your allow list is full: it holds 2 rules and this server allows 2"),
            "{}",
            r.body
        );
        assert!(r.body.contains("value=\"third@example.org\""));
        let r = b.import("allow", "add", "from ^a@x\\.example$\n").await;
        assert_eq!(r.status, 409, "{r:?}");
        assert!(
            r.body
                .contains("would hold 3 rules, over this server&#39;s limit of 2")
        );
        assert_eq!(list(&app, ALICE, ListKind::Allow).await.len(), 2);
        // Other lists have their own room.
        let r = b.add("block", "simple", "third@example.org").await;
        assert_eq!(r.status, 303);
    }
);

on_both_backends!(
    lists_are_exported_and_imported_all_or_nothing,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let b = Browser::sign_in(&app, ALICE).await;

        // A BoxTrapper file: CRLF, comments, `*@`, a repeat.
        let file = "# my list\r\nfrom *@partner.example\r\n\r\nfrom ^bob@example\\.org$\r\nsubject ^\\[ok\\]\r\nfrom *@partner.example\r\n";
        let r = b.import("allow", "add", file).await;
        assert_redirect(&r, "/lists?done=imported.allow.3.3#allow");
        let page = b.get("/lists?done=imported.allow.3.3").await;
        assert!(
            page.body
                .contains("Imported into your allow list: 3 new of 3 rules read.")
        );
        assert!(page.body.contains(&format!("imported on {}", today())));

        let r = b.get("/lists/allow/export").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"allow-list.txt\"")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let exported = r.body.clone();
        let rules: Vec<&str> = exported.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            rules,
            [
                "from .*@partner.example",
                r"from ^bob@example\.org$",
                r"subject ^\[ok\]"
            ]
        );

        // A bad line: its number and why, nothing imported, the text kept.
        let before = all_lists(&app, ALICE).await;
        let bad = "from ^new@x\\.example$\nto team@\nfrom (?<=x)y\nfrom ok@\n";
        for how in ["add", "replace"] {
            let r = b.import("allow", how, bad).await;
            assert_eq!(r.status, 400, "{r:?}");
            assert!(
                r.body
                    .contains("Line 3: look-behind (?&#60;=...) is a Perl regex feature"),
                "{}",
                r.body
            );
            assert!(r.body.contains("Nothing was imported."));
            assert!(
                r.body
                    .contains("from ^new@x\\.example$\nto team@\nfrom (?&#60;=x)y")
            );
            assert_eq!(all_lists(&app, ALICE).await, before);
        }
        let r = b.import("allow", "sometimes", "to x@\n").await;
        assert_eq!(r.status, 400);
        assert_eq!(all_lists(&app, ALICE).await, before);

        // Replace: the list becomes exactly the file; the export reads back.
        let r = b.import("allow", "replace", "to team@\n").await;
        assert_redirect(&r, "/lists?done=replaced.allow.1#allow");
        assert_eq!(list(&app, ALICE, ListKind::Allow).await, ["to team@"]);
        let r = b.import("allow", "replace", &exported).await;
        assert_eq!(r.status, 303);
        assert_eq!(b.get("/lists/allow/export").await.body, exported);
        // Into another list.
        let r = b.import("block", "add", "from .*@spam\\.example\n").await;
        assert_redirect(&r, "/lists?done=imported.block.1.1#block");
        assert_eq!(
            b.get("/lists/block/export").await.body.lines().last(),
            Some(r"from .*@spam\.example")
        );
        let r = b.get("/lists/grey/export").await;
        assert_eq!(r.status, 404);
    }
);

on_both_backends!(
    the_tester_names_the_rule_that_fires_as_the_policy_does,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on(ALICE).await;
        let b = Browser::sign_in(&app, ALICE).await;
        b.add("allow", "simple", "bob@example.org").await;
        b.add("allow", "simple", "*@partner.example").await;
        b.add("block", "simple", "*@spam.example").await;
        b.add("ignore", "rule", "subject lottery").await;
        let before = all_lists(&app, ALICE).await;

        let test = |address: &str, subject: &str| {
            format!("/lists?test={}&subject={}", enc(address), enc(subject))
        };
        for (address, subject, says) in [
            (
                "Bob@Example.org",
                "",
                "The allow list decides: its entry “bob@example.org” (added by you on",
            ),
            (
                "anyone@partner.example",
                "",
                "The allow list decides: its entry “*@partner.example”",
            ),
            (
                "x@spam.example",
                "hello",
                "The block list decides: its entry “*@spam.example”",
            ),
            // Ignore is checked first, as the policy does.
            (
                "bob@example.org",
                "You won the LOTTERY",
                "The ignore list decides: its entry “subject lottery”",
            ),
            (
                "x@sub.partner.example",
                "",
                "No entry matches x@sub.partner.example",
            ),
        ] {
            let page = b.get(&test(address, subject)).await;
            assert_eq!(page.status, 200, "{address}");
            assert!(page.body.contains(says), "{address}: {}", page.body);
            assert!(page.body.contains(&format!("value=\"{}\"", address)));
        }
        let page = b.get(&test("not an address", "")).await;
        assert_eq!(page.status, 400);
        assert!(
            page.body.contains("is not an email address"),
            "{}",
            page.body
        );
        assert!(page.body.contains("value=\"not an address\""));
        assert_eq!(all_lists(&app, ALICE).await, before);

        // The mail itself goes as the tester said.
        let text = "From: x@spam.example\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhi\r\n";
        let reply = send_raw(&app, "x@spam.example", ALICE, text).await;
        assert!(reply.starts_with('5'), "blocked: {reply}");
    }
);

on_both_backends!(
    another_mailbox_neither_sees_nor_removes_my_entries,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let alice = Browser::sign_in(&app, ALICE).await;
        alice
            .add("allow", "simple", "secretfriend@example.org")
            .await;
        let id = entry_id(
            &app,
            ALICE,
            ListKind::Allow,
            r"from ^secretfriend@example\.org$",
        )
        .await;

        let bob = Browser::sign_in(&app, BOB).await;
        let page = bob.get("/lists").await;
        assert!(!page.body.contains("secretfriend"));
        assert!(
            !bob.get("/lists/allow/export")
                .await
                .body
                .contains("secretfriend")
        );
        let tested = bob.get("/lists?test=secretfriend%40example.org").await;
        assert!(tested.body.contains("No entry matches"));
        for path in [
            format!("/lists/allow/{id}/remove"),
            format!("/lists/block/{id}/remove"),
            "/lists/allow/x/remove".to_owned(),
            "/lists/grey/1/remove".to_owned(),
        ] {
            let r = bob.post(&path, "").await;
            assert_eq!(r.status, 404, "{path}: {r:?}");
        }
        // Alice's own entry in the wrong list is not found either.
        let r = alice.post(&format!("/lists/block/{id}/remove"), "").await;
        assert_eq!(r.status, 404);
        assert_eq!(
            list(&app, ALICE, ListKind::Allow).await,
            [r"from ^secretfriend@example\.org$"]
        );
    }
);

on_both_backends!(
    posts_without_the_token_or_from_elsewhere_change_nothing,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let b = Browser::sign_in(&app, ALICE).await;
        b.add("allow", "simple", "friend@example.org").await;
        let id = entry_id(&app, ALICE, ListKind::Allow, r"from ^friend@example\.org$").await;
        let before = all_lists(&app, ALICE).await;
        let own = format!("http://{}", app.web);
        let forms = [
            (
                "/lists/add".to_owned(),
                "list=allow&mode=simple&entry=eve%40evil.example".to_owned(),
            ),
            (format!("/lists/allow/{id}/remove"), String::new()),
            (
                "/lists/import".to_owned(),
                "list=allow&how=replace&text=to+x%40".to_owned(),
            ),
        ];
        for (path, form) in &forms {
            let with_token = format!("csrf={}&{form}", b.csrf);
            let wrong_token = format!("csrf={}&{form}", "0".repeat(64));
            for (body, headers, why) in [
                (
                    form.clone(),
                    vec![("Origin", own.as_str())],
                    "no security token",
                ),
                (
                    wrong_token,
                    vec![("Origin", own.as_str())],
                    "not this session",
                ),
                (
                    with_token.clone(),
                    vec![("Origin", "http://evil.example")],
                    "",
                ),
                (with_token, vec![], ""),
            ] {
                let r = b.post_with(path, &body, &headers).await;
                assert_eq!(r.status, 403, "{path} {headers:?}: {r:?}");
                assert!(r.body.contains(why), "{path}: {}", r.body);
                assert_eq!(all_lists(&app, ALICE).await, before, "{path}");
            }
        }
    }
);

on_both_backends!(
    hostile_patterns_and_sources_are_escaped,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let b = Browser::sign_in(&app, ALICE).await;
        let r = b
            .add("block", "rule", "subject <script>alert(1)</script>")
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        app.add_rule(ALICE, ListKind::Ignore, "subject a\u{1b}\\[1mb\u{202e}c")
            .await;
        let page = b.get("/lists?test=%3Cb%3Ex%40example.org").await;
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(
            page.body
                .contains("subject &#60;script&#62;alert(1)&#60;/script&#62;")
        );
        assert!(!page.body.contains('\u{1b}'));
        assert!(!page.body.contains('\u{202e}'));
        assert!(page.body.contains("subject a\u{241b}\\[1mb\u{fffd}c"));
        assert!(!page.body.contains("<b>x"));
        // A result code from the URL shows only our own sentences.
        let page = b.get("/lists?done=%3Cscript%3E.allow").await;
        assert!(!page.body.contains("<script>"));
    }
);

on_both_backends!(
    an_entry_added_by_association_names_its_message,
    |backend| async move {
        let app = TestApp::spawn_with_dns(backend, &[spf("example.org")], |_| {}).await;
        app.challenge_on(ALICE).await;
        let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
        s.whitelist_by_association = true;
        app.store.update_mailbox_settings(&s).await.unwrap();
        let b = Browser::sign_in(&app, ALICE).await;
        b.add("allow", "simple", "bob@example.org").await;
        let text = "From: bob@example.org\r\nTo: alice@example.test\r\nCc: carol@example.org\r\n\
                    Subject: lunch\r\nMessage-ID: <lunch-1@example.org>\r\n\r\nhi\r\n";
        let reply = send_raw(&app, "bob@example.org", ALICE, text).await;
        assert!(reply.starts_with("250"), "{reply}");
        let page = b.get("/lists").await;
        let at = page
            .body
            .find("<code class=\"rule\">carol@example.org</code>")
            .unwrap();
        let line = &page.body[at..at + page.body[at..].find("</li>").unwrap()];
        assert!(
            line.contains("by association from message &#60;lunch-1@example.org&#62; (queue id "),
            "{line}"
        );
    }
);

impl Browser {
    /// A JSON API call with the session cookie; `csrf` adds
    /// `X-CSRF-Token`, `content_type` describes `body`.
    async fn api(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
        csrf: bool,
    ) -> Resp {
        let cookie = self.cookie();
        let mut h = vec![("Cookie", cookie.as_str())];
        if !content_type.is_empty() {
            h.push(("Content-Type", content_type));
        }
        if csrf {
            h.push(("X-CSRF-Token", self.csrf.as_str()));
        }
        request(self.web, method, path, &h, body).await
    }

    async fn api_json(&self, method: &str, path: &str, body: &str) -> Resp {
        self.api(method, path, "application/json", body, true).await
    }
}

/// The `"error"` of a JSON error answer.
fn json_error_of(r: &Resp) -> String {
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{r:?}"))
        .to_owned()
}

fn json_of(r: &Resp) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

on_both_backends!(
    the_json_api_reads_replaces_adds_removes_and_tests,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| c.challenge.max_rules_per_list = 3).await;
        let b = Browser::sign_in(&app, ALICE).await;

        let r = b.api("GET", "/api/v1/lists/allow", "", "", false).await;
        assert_eq!(r.status, 200, "{r:?}");
        let v = json_of(&r);
        assert_eq!(v["list"], "allow");
        assert_eq!(v["limit"], 3);
        assert_eq!(v["rules"], serde_json::json!([]));

        // Add: an address, then a rule; twice is no change.
        let r = b
            .api_json(
                "POST",
                "/api/v1/lists/allow",
                r#"{"address": "Bob@Example.org"}"#,
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        let v = json_of(&r);
        assert_eq!(v["added"], true);
        assert_eq!(v["entry"]["rule"], r"from ^bob@example\.org$");
        assert_eq!(v["entry"]["source"], "owner");
        assert_eq!(v["entry"]["origin"], "added by you");
        assert_eq!(
            v["entry"]["added"],
            format!(
                "{}Z",
                Timestamp::from_secs(T0).log_format().replace(' ', "T")
            )
        );
        let r = b
            .api_json(
                "POST",
                "/api/v1/lists/allow",
                r#"{"rule": "bob@example.org"}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(json_of(&r)["added"], false);
        let before = all_lists(&app, ALICE).await;

        // Bad input: named, nothing changed.
        for (method, body, status, says) in [
            (
                "POST",
                r#"{"rule": "from (?=x)"}"#,
                400,
                "look-ahead (?=...)",
            ),
            (
                "POST",
                r#"{"address": "*@bad_domain"}"#,
                400,
                "is not an address or *@domain",
            ),
            ("POST", r#"{}"#, 400, "give either \"rule\""),
            (
                "POST",
                r#"{"rule": "to x@", "address": "a@b.example"}"#,
                400,
                "give either",
            ),
            (
                "POST",
                r#"{"rule": 1}"#,
                400,
                "the request body is not valid",
            ),
            (
                "PUT",
                r#"{"rules": ["from ^a@x\\.example$", "to team@", "from (?<=x)y"]}"#,
                400,
                "rules[2] (\"from (?<=x)y\"): look-behind",
            ),
            (
                "PUT",
                r#"{"rules": ["to a@", "to b@", "to c@", "to d@"]}"#,
                409,
                "would hold 4 rules, over this server's limit of 3",
            ),
        ] {
            let r = b.api_json(method, "/api/v1/lists/allow", body).await;
            assert_eq!(r.status, status, "{body}: {r:?}");
            let e = json_error_of(&r);
            assert!(e.contains(says), "{body}: {e}");
            assert_eq!(all_lists(&app, ALICE).await, before, "{body}");
        }
        let r = b
            .api(
                "PUT",
                "/api/v1/lists/allow",
                "text/plain",
                "to a@\nform b\n",
                true,
            )
            .await;
        assert_eq!(r.status, 400);
        assert!(json_error_of(&r).starts_with("line 2 (\"form b\"): unknown field 'form'"));
        assert_eq!(all_lists(&app, ALICE).await, before);
        let r = b.api_json("GET", "/api/v1/lists/grey", "").await;
        assert_eq!(r.status, 404);
        assert!(json_error_of(&r).contains("allow, block and ignore"));

        // PUT replaces the list: JSON, or a list file.
        let r = b
            .api_json(
                "PUT",
                "/api/v1/lists/allow",
                r#"{"rules": ["to team@", "from *@p.example", "to team@"]}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let rules: Vec<String> = json_of(&r)["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["rule"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(rules, ["to team@", "from .*@p.example"]);
        assert_eq!(list(&app, ALICE, ListKind::Allow).await, rules);
        let file = b.get("/lists/allow/export").await.body;
        let r = b
            .api(
                "PUT",
                "/api/v1/lists/block",
                "text/plain; charset=utf-8",
                &file,
                true,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(list(&app, ALICE, ListKind::Block).await, rules);
        assert_eq!(json_of(&r)["rules"][0]["origin"], "imported");

        // The tester.
        let r = b
            .api(
                "GET",
                "/api/v1/lists/test?address=x%40P.example",
                "",
                "",
                false,
            )
            .await;
        let v = json_of(&r);
        assert_eq!(v["fired"]["list"], "block", "{v}");
        assert_eq!(v["fired"]["rule"], "from .*@p.example");
        assert_eq!(v["effect"], "refused (the sending server is told)");
        let r = b
            .api(
                "GET",
                "/api/v1/lists/test?address=nobody%40q.example",
                "",
                "",
                false,
            )
            .await;
        assert_eq!(json_of(&r)["fired"], serde_json::Value::Null);
        let r = b
            .api("GET", "/api/v1/lists/test?address=nope", "", "", false)
            .await;
        assert_eq!(r.status, 400);
        assert!(json_error_of(&r).contains("is not an email address"));

        // Remove.
        let id = entry_id(&app, ALICE, ListKind::Allow, "to team@").await;
        let path = format!("/api/v1/lists/allow/{id}");
        let r = b.api("DELETE", &path, "", "", true).await;
        assert_eq!(r.status, 204, "{r:?}");
        let r = b.api("DELETE", &path, "", "", true).await;
        assert_eq!(r.status, 404);
        assert_eq!(json_error_of(&r), "no such entry on this list");
        assert_eq!(
            list(&app, ALICE, ListKind::Allow).await,
            ["from .*@p.example"]
        );
    }
);

on_both_backends!(
    the_json_api_needs_the_csrf_header_and_keeps_mailboxes_apart,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let alice = Browser::sign_in(&app, ALICE).await;
        alice
            .api_json(
                "POST",
                "/api/v1/lists/allow",
                r#"{"address": "friend@example.org"}"#,
            )
            .await;
        let id = entry_id(&app, ALICE, ListKind::Allow, r"from ^friend@example\.org$").await;
        let before = all_lists(&app, ALICE).await;
        let remove = format!("/api/v1/lists/allow/{id}");
        let calls = [
            (
                "POST",
                "/api/v1/lists/allow",
                r#"{"address": "eve@evil.example"}"#,
            ),
            ("PUT", "/api/v1/lists/allow", r#"{"rules": []}"#),
            ("DELETE", remove.as_str(), ""),
        ];
        for (method, path, body) in calls {
            // No X-CSRF-Token.
            let r = alice
                .api(method, path, "application/json", body, false)
                .await;
            assert_eq!(r.status, 403, "{method} {path}: {r:?}");
            assert!(json_error_of(&r).contains("X-CSRF-Token"));
            // Another site's page.
            let cookie = alice.cookie();
            let h = [
                ("Cookie", cookie.as_str()),
                ("Content-Type", "application/json"),
                ("X-CSRF-Token", alice.csrf.as_str()),
                ("Origin", "http://evil.example"),
            ];
            let r = request(app.web, method, path, &h, body).await;
            assert_eq!(r.status, 403, "{method} {path}: {r:?}");
            // Not signed in.
            let r = request(
                app.web,
                method,
                path,
                &[("Content-Type", "application/json")],
                body,
            )
            .await;
            assert_eq!(r.status, 401, "{method} {path}: {r:?}");
            assert_eq!(all_lists(&app, ALICE).await, before, "{method} {path}");
        }

        // Bob sees only his own lists and cannot remove alice's entry.
        let bob = Browser::sign_in(&app, BOB).await;
        let r = bob.api("GET", "/api/v1/lists/allow", "", "", false).await;
        assert_eq!(json_of(&r)["rules"], serde_json::json!([]));
        for path in [remove.clone(), format!("/api/v1/lists/block/{id}")] {
            let r = bob.api("DELETE", &path, "", "", true).await;
            assert_eq!(r.status, 404, "{path}: {r:?}");
        }
        let r = bob
            .api(
                "GET",
                "/api/v1/lists/test?address=friend%40example.org",
                "",
                "",
                false,
            )
            .await;
        assert_eq!(json_of(&r)["fired"], serde_json::Value::Null);
        assert_eq!(all_lists(&app, ALICE).await, before);
    }
);

on_both_backends!(
    the_site_navigation_links_to_admin_for_admins_only,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let alice = app.mailbox_id(ALICE).await;
        app.store.set_admin(alice, true).await.unwrap();
        let a = Browser::sign_in(&app, ALICE).await;
        let b = Browser::sign_in(&app, BOB).await;
        let link = "<a href=\"/admin\">Admin</a>";
        for path in ["/lists", "/quarantine", "/settings", "/activity", "/admin"] {
            let page = a.get(path).await;
            assert_eq!(page.status, 200, "{path}");
            assert!(page.body.contains(link), "{path}: {}", page.body);
        }
        for path in ["/lists", "/quarantine", "/settings", "/activity"] {
            let page = b.get(path).await;
            assert_eq!(page.status, 200, "{path}");
            assert!(
                !page.body.contains("href=\"/admin"),
                "{path}: {}",
                page.body
            );
        }
        // Made an admin, bob sees it on his next page; not signed in, nobody.
        app.store
            .set_admin(app.mailbox_id(BOB).await, true)
            .await
            .unwrap();
        assert!(b.get("/lists").await.body.contains(link));
        let login = request(app.web, "GET", "/login", &[], "").await;
        assert!(!login.body.contains("href=\"/admin"), "{}", login.body);
    }
);

on_both_backends!(
    a_list_file_is_imported_from_the_form_all_or_nothing_and_refused_by_name,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let b = Browser::sign_in(&app, ALICE).await;
        let page = b.get("/lists").await;
        assert!(page.body.contains("enctype=\"multipart/form-data\""));
        assert!(
            page.body
                .contains("<input type=\"file\" id=\"import-file\" name=\"file\"")
        );

        // The file stands for the textarea.
        let file = b"# exported\r\nfrom ^bob@example\\.org$\r\nsubject ^\\[ok\\]\r\n";
        let r = b
            .import_file("allow", &b.csrf, "", ("allow.txt", file))
            .await;
        assert_redirect(&r, "/lists?done=imported.allow.2.2#allow");
        assert_eq!(
            list(&app, ALICE, ListKind::Allow).await,
            [r"from ^bob@example\.org$", r"subject ^\[ok\]"]
        );
        // Without a file, the textarea as before.
        let r = b
            .import_file("block", &b.csrf, "to team@\n", ("", b""))
            .await;
        assert_redirect(&r, "/lists?done=imported.block.1.1#block");

        // Refused by the file's name or the line, nothing changed.
        let before = all_lists(&app, ALICE).await;
        let big = vec![b'#'; 48 * 1024 + 1];
        for (name, bytes, says) in [
            (
                "bad<b>.txt",
                &b"from ^a@x\\.example$\nfrom (?<=x)y\n"[..],
                "Line 2: look-behind",
            ),
            (
                "latin1.txt",
                &b"from caf\xe9@x.example\n"[..],
                "The file \u{201c}latin1.txt\u{201d} is not UTF-8 text",
            ),
            (
                "huge.txt",
                &big[..],
                "The file \u{201c}huge.txt\u{201d} is 49153 bytes, more than the 49152 bytes",
            ),
        ] {
            let r = b.import_file("allow", &b.csrf, "", (name, bytes)).await;
            assert_eq!(r.status, 400, "{name}: {r:?}");
            assert!(r.body.contains(says), "{name}: {}", r.body);
            assert!(r.body.contains("Nothing was imported."), "{name}");
            assert!(!r.body.contains("bad<b>"), "escaped");
            assert_eq!(all_lists(&app, ALICE).await, before, "{name}");
        }
        // No CSRF token, or another session's: 403, nothing changed.
        for token in [
            "",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let r = b
                .import_file("allow", token, "", ("allow.txt", b"to x@\n"))
                .await;
            assert_eq!(r.status, 403, "{r:?}");
            assert_eq!(all_lists(&app, ALICE).await, before);
        }
    }
);
