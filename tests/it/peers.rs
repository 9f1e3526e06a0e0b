//! Real clients nobody here wrote: swaks, Python's smtplib, and a real
//! Postfix relaying into boxtrap on loopback.

use crate::support::*;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;

async fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/test.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn swaks_delivers_with_pipelining() {
    let app = TestApp::spawn().await;
    let (ok, out) = run(Command::new("swaks")
        .args(["--server", &app.addr.to_string(), "--pipeline"])
        .args([
            "--from",
            "bob@example.org",
            "--to",
            "alice+swaks@example.test",
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "Sent by swaks.\n.leading dot\n",
        ]))
    .await;
    assert!(ok, "swaks failed:\n{out}");
    assert!(out.contains("250 2.0.0 OK id="), "{out}");
    let msgs = app.messages("alice@example.test");
    assert_eq!(msgs.len(), 1);
    let text = String::from_utf8_lossy(&msgs[0].1);
    assert!(text.contains("Subject: via swaks\n"), "{text}");
    assert!(text.contains("\nSent by swaks.\n.leading dot\n"), "{text}");
    assert!(!text.contains('\r'), "stored with LF line endings");

    // swaks as an attacker: an unknown user is refused and swaks says so.
    let (ok, out) = run(Command::new("swaks")
        .args(["--server", &app.addr.to_string()])
        .args(["--from", "bob@example.org", "--to", "mallory@example.test"]))
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("550 5.1.1"), "{out}");
}

const SMTPLIB_SCRIPT: &str = r#"
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, local_hostname="py.example.org") as s:
    code, ext = s.ehlo()
    assert code == 250 and s.has_extn("pipelining") and s.has_extn("smtputf8"), ext
    m = EmailMessage()
    m["From"] = "Jörg <jörg@example.org>"
    m["To"] = "alice@example.test, nobody@example.test"
    m["Subject"] = "Grüße aus Python"
    m["Message-ID"] = "<py-1@example.org>"
    m.set_content("Hallo Alice,\n.eine Zeile mit Punkt\n")
    refused = s.send_message(m, mail_options=["SMTPUTF8"])
    print("refused", refused)
    assert list(refused) == ["nobody@example.test"] and refused["nobody@example.test"][0] == 550
    try:
        s.sendmail("bob@example.org", ["alice@elsewhere.test"], "Subject: relay?\r\n\r\nno\r\n")
        raise SystemExit("relay was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        print("relay refused", e.recipients)
print("ok")
"#;

#[tokio::test]
async fn python_smtplib_sends_utf8_mail_and_sees_refusals() {
    let app = TestApp::spawn().await;
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        SMTPLIB_SCRIPT,
        "127.0.0.1",
        &app.addr.port().to_string(),
    ]))
    .await;
    assert!(ok, "smtplib script failed:\n{out}");
    assert!(
        out.contains("relay refused {'alice@elsewhere.test': (550, b'5.7.1 Relaying denied')}"),
        "{out}"
    );
    let msgs = app.messages("alice@example.test");
    assert_eq!(msgs.len(), 1);
    let text = String::from_utf8(msgs[0].1.clone()).unwrap();
    assert!(
        text.starts_with("Return-Path: <jörg@example.org>\n"),
        "{text}"
    );
    assert!(text.contains("with UTF8SMTP id"), "{text}");
    assert!(text.contains("\n.eine Zeile mit Punkt\n"), "{text}");
    assert!(app.mainlog().contains("id=<py-1@example.org>"));
}

/// A private Postfix instance (tests/peers/postfix-relay.sh) stopped on drop.
struct PostfixRelay {
    dir: tempfile::TempDir,
    script: PathBuf,
    port: u16,
}

impl PostfixRelay {
    async fn start(target: u16) -> PostfixRelay {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/postfix-relay.sh");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (ok, out) = run(Command::new("bash").arg(&script).args([
            "start",
            dir.path().to_str().unwrap(),
            &port.to_string(),
            &target.to_string(),
        ]))
        .await;
        assert!(ok, "cannot start Postfix:\n{out}");
        PostfixRelay { dir, script, port }
    }

    fn log(&self) -> String {
        let out = std::process::Command::new("bash")
            .arg(&self.script)
            .args(["log", self.dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PostfixRelay {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(&self.script)
            .args(["stop", self.dir.path().to_str().unwrap()])
            .output();
    }
}

#[tokio::test]
async fn a_real_postfix_relays_mail_into_boxtrap() {
    let app = TestApp::spawn().await;
    let postfix = PostfixRelay::start(app.addr.port()).await;
    let mut s = Smtp::connect(format!("127.0.0.1:{}", postfix.port).parse().unwrap()).await;
    assert!(s.greeting.starts_with("220"), "{}", s.greeting);
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<bob@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("RCPT TO:<team@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    let r = s.data("From: bob@example.org\r\nSubject: through Postfix\r\nMessage-ID: <pf-1@example.org>\r\n\r\nrelayed\r\n").await;
    assert!(r.starts_with("250"), "{r}");
    s.cmd("QUIT", "221").await;

    let mut waited = Duration::ZERO;
    while (app.messages("alice@example.test").is_empty()
        || app.messages("bob@example.test").is_empty())
        && waited < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let alice = app.messages("alice@example.test");
    assert_eq!(alice.len(), 1, "Postfix log:\n{}", postfix.log());
    assert_eq!(
        app.messages("bob@example.test").len(),
        1,
        "Postfix log:\n{}",
        postfix.log()
    );
    let text = String::from_utf8_lossy(&alice[0].1);
    assert!(text.contains("Received: from postfix-peer.example.test ([127.0.0.1])\n\tby mx.example.test (boxtrap) with ESMTP id"), "{text}");
    assert!(
        text.contains("by postfix-peer.example.test (Postfix)"),
        "Postfix's own Received header: {text}"
    );
    assert!(text.ends_with("\n\nrelayed\n"), "{text}");
    let log = postfix.log();
    assert!(
        log.contains("status=sent (250 2.0.0 OK id="),
        "Postfix saw our 250 with the queue id:\n{log}"
    );
}
