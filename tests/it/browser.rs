//! The sender's verification page in a real browser: Debian's headless
//! Chromium, driven through chromedriver by tests/peers/browser.py, opens
//! the link from a real challenge the way bob would, reads what is waiting
//! and presses the button.
//!
//! Set `BROWSER_SCREENSHOTS=DIR` to keep the screenshots for a look.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Debian's Python: python3-selenium is installed for it, not for any
/// other `python3` that may come first on PATH (pyenv, venvs).
const PYTHON: &str = "/usr/bin/python3";
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// One page as the browser showed it.
#[derive(Debug)]
struct Step {
    step: String,
    title: String,
    text: String,
}

/// Runs browser.py on `url` with screenshots going to `shots`, at most 90 s;
/// returns the pages it reported.
async fn browse(url: &str, shots: &Path, click: bool) -> Vec<Step> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/browser.py");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script).arg(url).arg(shots);
    if !click {
        cmd.arg("--no-click");
    }
    // Its own process group, so chromedriver and Chromium can be killed
    // with it if it hangs.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {PYTHON} {}: {e} (scripts/test.sh installs python3, chromium, \
             chromium-driver and python3-selenium)",
            script.display()
        )
    });
    let group = child.id().expect("just started");
    let out = match tokio::time::timeout(BROWSER_LIMIT, child.wait_with_output()).await {
        Ok(out) => out.expect("waiting for browser.py"),
        Err(_) => {
            // Dropping the wait killed python; now the browser it started.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            panic!("browser.py did not finish within {BROWSER_LIMIT:?} on {url}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser.py {url} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields = json_strings(line)
                .unwrap_or_else(|| panic!("not a JSON line of strings: {line:?}\n{stderr}"));
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no {k:?} in {line:?}"))
            };
            Step {
                step: get("step"),
                title: get("title"),
                text: get("text"),
            }
        })
        .collect()
}

/// The members of a flat JSON object whose values are all strings, such as
/// browser.py's `{"step": "get", "title": "...", "text": "..."}`; `None`
/// for anything else.
pub(crate) fn json_strings(line: &str) -> Option<Vec<(String, String)>> {
    let mut it = line.trim().chars().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::Chars>| {
        while it.next_if(|c| c.is_ascii_whitespace()).is_some() {}
    };
    if it.next()? != '{' {
        return None;
    }
    let mut out = Vec::new();
    skip_ws(&mut it);
    if it.next_if_eq(&'}').is_some() {
        return (it.next().is_none()).then_some(out);
    }
    loop {
        skip_ws(&mut it);
        let key = json_string(&mut it)?;
        skip_ws(&mut it);
        if it.next()? != ':' {
            return None;
        }
        skip_ws(&mut it);
        let value = json_string(&mut it)?;
        out.push((key, value));
        skip_ws(&mut it);
        match it.next()? {
            ',' => continue,
            '}' => return it.next().is_none().then_some(out),
            _ => return None,
        }
    }
}

/// One JSON string, its opening quote next in `it`.
fn json_string(it: &mut std::iter::Peekable<std::str::Chars>) -> Option<String> {
    fn hex4(it: &mut std::iter::Peekable<std::str::Chars>) -> Option<u32> {
        let digits: String = it.by_ref().take(4).collect();
        if digits.len() != 4 {
            return None;
        }
        u32::from_str_radix(&digits, 16).ok()
    }
    if it.next()? != '"' {
        return None;
    }
    let mut s = String::new();
    loop {
        match it.next()? {
            '"' => return Some(s),
            '\\' => s.push(match it.next()? {
                '"' => '"',
                '\\' => '\\',
                '/' => '/',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => {
                    let hi = hex4(it)?;
                    let code = if (0xD800..0xDC00).contains(&hi) {
                        if it.next()? != '\\' || it.next()? != 'u' {
                            return None;
                        }
                        let lo = hex4(it)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return None;
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    char::from_u32(code)?
                }
                _ => return None,
            }),
            c if (c as u32) < 0x20 => return None,
            c => s.push(c),
        }
    }
}

/// A real PNG screenshot with something on it, not an empty canvas.
fn assert_screenshot(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() > 2048,
        "{} is only {} bytes: a blank page?",
        path.display(),
        bytes.len()
    );
}

/// Copies the screenshots to `$BROWSER_SCREENSHOTS`, if set, as `name`.
fn keep_screenshots(shots: &[(PathBuf, &str)]) {
    let Some(dir) = std::env::var_os("BROWSER_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (from, name) in shots {
        std::fs::copy(from, dir.join(name)).unwrap();
    }
}

#[test]
fn json_strings_reads_what_python_prints() {
    let got = json_strings(
        r#"{"step": "get", "title": "Thank you", "text": "Fish \u0026 chips\n\u2014 \"ok\" \ud83d\udc1f"}"#,
    )
    .unwrap();
    assert_eq!(
        got,
        [
            ("step".to_owned(), "get".to_owned()),
            ("title".to_owned(), "Thank you".to_owned()),
            (
                "text".to_owned(),
                "Fish & chips\n\u{2014} \"ok\" \u{1f41f}".to_owned()
            ),
        ]
    );
    assert_eq!(json_strings("{}"), Some(vec![]));
    assert_eq!(json_strings(r#"{"a": 1}"#), None);
    assert_eq!(json_strings(r#"{"a": "b"} x"#), None);
    assert_eq!(json_strings(r#"{"a": "b"#), None);
}

#[tokio::test]
async fn a_sender_confirms_in_a_real_browser() {
    let Pair { mx, peer } = pair(Backend::Sqlite).await;
    // `&` must reach the browser escaped and show as itself.
    let subject = "Fish & chips on Friday?";
    let r = send_raw(
        &mx,
        "bob@example.org",
        "alice@example.test",
        &format!(
            "From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
             Message-ID: <fish@example.org>\r\nDate: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\n\
             Hello Alice.\r\n"
        ),
    )
    .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(mx.messages("alice@example.test").is_empty(), "held");
    assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
    let got = challenges(&peer, "bob@example.org");
    assert_eq!(got.len(), 1);
    let token = token_in(&got[0]);
    let url = format!("http://{}/verify/{token}", mx.web);

    // Opening the link shows what waits, and delivers nothing by itself.
    let look = tempfile::tempdir().unwrap();
    let steps = browse(&url, look.path(), false).await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(
        steps[0].title, "Please confirm your message – boxtrap",
        "{steps:?}"
    );
    assert!(
        mx.messages("alice@example.test").is_empty(),
        "a visit alone must not deliver"
    );
    assert_eq!(mx.store.list_held(None, None).await.unwrap().len(), 1);

    // Bob reads the page and presses the button.
    let shots = tempfile::tempdir().unwrap();
    let steps = browse(&url, shots.path(), true).await;
    let [get, post] = &steps[..] else {
        panic!("expected a get and a post step: {steps:?}")
    };
    assert_eq!(get.step, "get");
    assert_eq!(
        get.title, "Please confirm your message – boxtrap",
        "{get:?}"
    );
    for wanted in [
        subject,
        "alice@example.test only accepts mail from senders it knows",
        "Mail from bob@example.org is waiting to be delivered",
        "Yes, I sent this \u{2014} deliver it",
    ] {
        assert!(
            get.text.contains(wanted),
            "{wanted:?} not on the page:\n{}",
            get.text
        );
    }
    assert!(!get.text.contains("&amp;"), "double-escaped:\n{}", get.text);
    assert_eq!(post.step, "post");
    assert_eq!(post.title, "Thank you – boxtrap", "{post:?}");
    assert!(
        post.text
            .contains("Your message to alice@example.test has been delivered."),
        "{}",
        post.text
    );
    let delivered = mx.messages("alice@example.test");
    assert_eq!(delivered.len(), 1, "delivered once the button was pressed");
    let text = String::from_utf8_lossy(&delivered[0].1);
    assert!(text.contains(&format!("Subject: {subject}\n")), "{text}");
    assert!(mx.store.list_held(None, None).await.unwrap().is_empty());
    assert_screenshot(&shots.path().join("verify-page.png"));
    assert_screenshot(&shots.path().join("confirmed.png"));

    // The same link again: already used, and nothing changes.
    let again = tempfile::tempdir().unwrap();
    let steps = browse(&url, again.path(), false).await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].title, "Already confirmed – boxtrap", "{steps:?}");
    assert!(
        steps[0].text.contains("already been used"),
        "{}",
        steps[0].text
    );
    assert_screenshot(&again.path().join("verify-page.png"));
    assert_eq!(mx.messages("alice@example.test").len(), 1);

    keep_screenshots(&[
        (shots.path().join("verify-page.png"), "verify-page.png"),
        (shots.path().join("confirmed.png"), "confirmed.png"),
        (
            again.path().join("verify-page.png"),
            "already-confirmed.png",
        ),
    ]);
}
