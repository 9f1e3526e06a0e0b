//! DKIM-signed challenges: `boxtrap dkim generate` and `show` run as the
//! real binary, and the challenges and notices a running boxtrap sent are
//! checked by an independent verifier, Debian's python3-dkim (dkimpy),
//! against exactly the DNS records the CLI printed (tests/peers/dkim_verify.py
//! answers its lookups from them: no DNS).

use crate::on_both_backends;
use crate::support::*;
use boxtrap::address::Domain;
use boxtrap::challenge::sign;
use boxtrap::clock::Timestamp;
use boxtrap::store::dkim::{DkimAlgorithm, NewDkimKey};
use std::path::{Path, PathBuf};

/// Debian's Python: python3-dkim is installed for it, not for any other
/// `python3` that may come first on PATH (pyenv, venvs).
const PYTHON: &str = "/usr/bin/python3";

/// A temp data directory with a config file pointing at it (SQLite).
struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl AdminCommands for Cli {
    fn config_path(&self) -> &Path {
        &self.config
    }
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = write_test_config(dir.path(), "", "");
        Cli { _dir: dir, config }
    }

    fn fails(&self, args: &[&str]) -> String {
        self.refused(args, &[1]).stderr
    }
}

/// The TXT record lines of a `dkim generate`/`show` output; asserts every
/// other line is a zone-file comment, so the output pastes into a zone.
fn record_lines(out: &str) -> Vec<String> {
    for line in out.lines() {
        assert!(
            line.starts_with(';') || line.contains(" IN TXT \""),
            "neither a record nor a comment: {line:?}\n{out}"
        );
    }
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

/// The DKIM record lines (not the SPF one).
fn dkim_lines(out: &str) -> Vec<String> {
    record_lines(out)
        .into_iter()
        .filter(|l| l.contains("._domainkey."))
        .collect()
}

/// A record line's name and its strings.
fn split_record(line: &str) -> (&str, Vec<&str>) {
    let (name, rest) = line.split_once(" IN TXT ").unwrap();
    let strings = rest.split("\" \"").map(|s| s.trim_matches('"')).collect();
    (name, strings)
}

fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

#[test]
fn generate_prints_the_records_show_repeats_them_and_refusals_name_the_problem() {
    let cli = Cli::new();
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", "alice@example.test", "--no-password"]);

    let err = cli.fails(&["dkim", "generate", "nowhere.test"]);
    assert!(err.contains("nowhere.test is not a local domain"), "{err}");
    let err = cli.fails(&["dkim", "show", "example.test"]);
    assert!(err.contains("example.test has no DKIM key"), "{err}");
    assert!(err.contains("boxtrap dkim generate example.test"), "{err}");
    let err = cli.fails(&["dkim", "generate", "example.test", "--selector", "bad_one"]);
    assert!(err.contains("\"bad_one\""), "{err}");

    let out = cli.ok(&["dkim", "generate", "example.test"]);
    let records = record_lines(&out);
    assert_eq!(records.len(), 3, "{out}");
    // Ed25519 (RFC 8463): the 32-byte key, 44 base64 characters.
    let (name, strings) = split_record(&records[0]);
    let ed_selector = name.strip_suffix("._domainkey.example.test.").unwrap();
    assert!(
        ed_selector.len() == 11
            && ed_selector.ends_with("-ed")
            && ed_selector[..8].bytes().all(|b| b.is_ascii_digit()),
        "a dated selector: {name}"
    );
    assert_eq!(strings.len(), 1);
    let key = strings[0].strip_prefix("v=DKIM1; k=ed25519; p=").unwrap();
    assert!(key.len() == 44 && is_base64(key), "{key}");
    // RSA-2048: the SubjectPublicKeyInfo, in 255-byte strings.
    let (name, strings) = split_record(&records[1]);
    assert_eq!(
        name,
        format!("{}-rsa._domainkey.example.test.", &ed_selector[..8])
    );
    assert_eq!(strings.len(), 2, "{}", records[1]);
    assert_eq!(strings[0].len(), 255);
    let key = strings
        .concat()
        .strip_prefix("v=DKIM1; k=rsa; p=")
        .unwrap()
        .to_owned();
    assert!(
        key.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
        "{key}"
    );
    assert!(key.len() == 392 && is_base64(&key), "{key}");
    // SPF for the HELO name: challenges go out from <>.
    assert_eq!(records[2], "mx.example.test. IN TXT \"v=spf1 a -all\"");
    assert!(out.contains("RFC 7208 §2.3"), "{out}");

    // show prints them again.
    let shown = cli.ok(&["dkim", "show", "EXAMPLE.test"]);
    assert_eq!(record_lines(&shown), records);

    // Once more: refused, the existing key named; --replace needs a new
    // selector (the one in use is refused); with one, both keys are replaced.
    let err = cli.fails(&["dkim", "generate", "example.test"]);
    assert!(
        err.contains(&format!(
            "example.test already has an Ed25519 DKIM key (selector {ed_selector}"
        )),
        "{err}"
    );
    assert!(err.contains("--replace"), "{err}");
    let err = cli.fails(&[
        "dkim",
        "generate",
        "example.test",
        "--replace",
        "--selector",
        &ed_selector[..8],
    ]);
    assert!(err.contains("needs a new selector"), "{err}");
    assert!(err.contains(ed_selector), "{err}");
    assert_eq!(
        record_lines(&cli.ok(&["dkim", "show", "example.test"])),
        records
    );

    let out = cli.ok(&[
        "dkim",
        "generate",
        "example.test",
        "--replace",
        "--selector",
        "Next",
    ]);
    assert!(
        out.contains(&format!(
            "replaced the Ed25519 key with selector {ed_selector}"
        )),
        "{out}"
    );
    let now = dkim_lines(&cli.ok(&["dkim", "show", "example.test"]));
    assert_eq!(now.len(), 2);
    assert!(now[0].starts_with("next-ed._domainkey.example.test. IN TXT \"v=DKIM1; k=ed25519; p="));
    assert!(now[1].starts_with("next-rsa._domainkey.example.test. IN TXT \"v=DKIM1; k=rsa; p="));
    assert_ne!(now[0], records[0], "a new key");

    // One algorithm: the selector as given.
    cli.ok(&["domain", "add", "other.test"]);
    let out = cli.ok(&[
        "dkim",
        "generate",
        "other.test",
        "--algorithm",
        "ed25519",
        "--selector",
        "solo",
    ]);
    let lines = dkim_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("solo._domainkey.other.test. IN TXT \"v=DKIM1; k=ed25519; p="));
    // Its RSA key can be added later without --replace.
    let out = cli.ok(&["dkim", "generate", "other.test", "--algorithm", "rsa"]);
    assert_eq!(dkim_lines(&out).len(), 2, "both keys shown: {out}");
}

#[test]
fn check_config_names_each_challenging_domain_without_a_key() {
    let cli = Cli::new();
    let check = |cli: &Cli| cli.ok(&["check-config"]);
    // No database yet: nothing to say, and none is created.
    let out = check(&cli);
    assert!(!out.contains("DKIM"), "{out}");
    assert!(!cli._dir.path().join("boxtrap.db").exists());

    for d in ["example.test", "other.test", "quiet.test"] {
        cli.ok(&["domain", "add", d]);
    }
    for m in ["alice@example.test", "bob@other.test", "carol@quiet.test"] {
        cli.ok(&["mailbox", "add", m, "--no-password"]);
    }
    for m in ["alice@example.test", "bob@other.test"] {
        cli.ok(&["mailbox", "set", m, "--challenge", "on"]);
    }
    let warning = |d: &str| {
        format!(
            "# warning: {d} has challenge-response mailboxes and no DKIM key: its challenges \
             and notices go out unsigned"
        )
    };
    let fix = |d: &str| format!("`boxtrap dkim generate {d}` makes the keys");
    let out = check(&cli);
    for d in ["example.test", "other.test"] {
        assert!(out.contains(&warning(d)), "{out}");
        assert!(out.contains(&fix(d)), "{out}");
    }
    assert!(
        !out.contains("quiet.test"),
        "no challenge-response there: {out}"
    );

    cli.ok(&["dkim", "generate", "example.test", "--algorithm", "ed25519"]);
    let out = check(&cli);
    assert!(!out.contains(&warning("example.test")), "{out}");
    assert!(out.contains(&warning("other.test")), "{out}");
}

/// Runs dkim_verify.py on `message` with `records` (zone-file lines) as
/// its only DNS; returns its lines: `<i> a=... d=... s=... pass|fail`.
fn verify(message: &[u8], records: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (msg, zone) = (dir.path().join("message.eml"), dir.path().join("zone"));
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&zone, records.join("\n") + "\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim_verify.py");
    let out = std::process::Command::new(PYTHON)
        .arg(&script)
        .arg(&msg)
        .arg(&zone)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {PYTHON} {}: {e} (scripts/test.sh installs python3-dkim)",
                script.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dkim_verify.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// One DKIM-Signature header per line of `message`, unfolded.
fn signature_tags(message: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in message.lines().take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line.trim());
            }
            continue;
        }
        out.extend(current.take());
        if let Some(v) = line.strip_prefix("DKIM-Signature:") {
            current = Some(v.trim().to_owned());
        }
    }
    out.extend(current);
    out.iter()
        .map(|sig| {
            sig.split(';')
                .filter_map(|t| t.trim().split_once('='))
                .find(|(k, _)| *k == tag)
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// `message` with its body changed a little, as a forwarder rewriting a
/// link would.
fn with_changed_body(message: &str) -> String {
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    let body = body.replacen("/verify/", "/verify-now/", 1);
    assert_ne!(
        format!("{head}\r\n\r\n{body}"),
        message,
        "the body has a link"
    );
    format!("{head}\r\n\r\n{body}")
}

on_both_backends!(
    a_sent_challenge_and_notice_verify_with_an_independent_verifier,
    |backend| async move {
        let mut url = String::new();
        let app = TestApp::spawn_with(backend, |c| url = c.database.url.clone()).await;
        app.challenge_on("alice@example.test").await;

        // The admin makes the keys with the real binary, against the
        // database the server is running on, and publishes what it printed.
        let config = write_test_config(app.dir.path(), &url, "");
        let out = tokio::task::spawn_blocking(move || {
            run_boxtrap(&config, &["dkim", "generate", "example.test"], None)
        })
        .await
        .unwrap();
        assert!(out.success, "{out:#?}");
        let records = record_lines(&out.stdout);

        // bob (unknown to alice) writes; the challenge goes out.
        let body = "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Lunch?\r\n\
                    Message-ID: <m1@example.org>\r\nDate: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\n\
                    Hello Alice.\r\n";
        let r = send_raw(&app, "bob@example.org", "alice@example.test", body).await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert_eq!(app.outbound.run_once().await.unwrap(), 1);
        let sent = app.outbox();
        assert_eq!(sent.len(), 1);
        let challenge = sent[0].raw.clone();
        assert_eq!(sent[0].env_from, "", "from <>");

        // Both signatures, Ed25519 on top, verify; each over the headers
        // a reader sees.
        let selector = |suffix: &str| {
            let name = records
                .iter()
                .find(|r| r.contains(&format!("-{suffix}._domainkey.")))
                .unwrap();
            name.split_once("._domainkey.").unwrap().0.to_owned()
        };
        let (ed, rsa) = (selector("ed"), selector("rsa"));
        assert_eq!(
            verify(challenge.as_bytes(), &records),
            [
                format!("0 a=ed25519-sha256 d=example.test s={ed} pass"),
                format!("1 a=rsa-sha256 d=example.test s={rsa} pass"),
            ],
            "{challenge}"
        );
        for h in signature_tags(&challenge, "h") {
            let h = h.to_ascii_lowercase();
            for name in [
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "in-reply-to",
                "references",
                "mime-version",
                "content-type",
                "auto-submitted",
            ] {
                assert!(h.split(':').any(|x| x == name), "{name} not in h={h}");
            }
        }

        // Changed on the way: the body, or a header it covers: both fail.
        assert_eq!(
            verify(with_changed_body(&challenge).as_bytes(), &records),
            [
                format!("0 a=ed25519-sha256 d=example.test s={ed} fail"),
                format!("1 a=rsa-sha256 d=example.test s={rsa} fail"),
            ]
        );
        let subject = challenge.replacen("Subject: Re: Lunch?", "Subject: Re: Dinner?", 1);
        assert_ne!(subject, challenge);
        assert!(
            verify(subject.as_bytes(), &records)
                .iter()
                .all(|l| l.ends_with(" fail"))
        );
        // Records of other keys (the key was replaced, the DNS is stale):
        // fail too, so the check above is not a formality.
        let mut stale = records.clone();
        let other = Cli::new();
        other.ok(&["domain", "add", "example.test"]);
        let other_records = dkim_lines(&other.ok(&["dkim", "generate", "example.test"]));
        stale.retain(|r| !r.contains("._domainkey."));
        stale.extend(other_records);
        assert!(
            verify(challenge.as_bytes(), &stale)
                .iter()
                .all(|l| l.ends_with(" fail"))
        );

        // bob confirms by the link; the notice that follows is signed too.
        let link = app.challenges_to("bob@example.org").remove(0).link;
        let path = &link[link.find("/verify/").unwrap()..];
        let (status, _) = app.http("POST", path).await;
        assert_eq!(status, 200);
        assert_eq!(app.outbound.run_once().await.unwrap(), 1);
        let notice = app.outbox().remove(1);
        assert_eq!(notice.rcpt, "bob@example.org");
        assert!(
            notice.clone().challenge().is_none(),
            "a notice: {}",
            notice.raw
        );
        assert_eq!(
            verify(notice.raw.as_bytes(), &records),
            [
                format!("0 a=ed25519-sha256 d=example.test s={ed} pass"),
                format!("1 a=rsa-sha256 d=example.test s={rsa} pass"),
            ],
            "{}",
            notice.raw
        );
    }
);

on_both_backends!(
    a_domain_without_a_key_sends_unsigned,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on("alice@example.test").await;
        let body = "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Hi\r\n\
                    Message-ID: <m2@example.org>\r\n\r\nHello.\r\n";
        send_raw(&app, "bob@example.org", "alice@example.test", body).await;
        assert_eq!(app.outbound.run_once().await.unwrap(), 1);
        let sent = app.outbox().remove(0);
        assert!(sent.header("DKIM-Signature").is_none(), "{}", sent.raw);
        assert_eq!(verify(sent.raw.as_bytes(), &[]), ["no DKIM-Signature"]);
    }
);

/// The zone lines of a domain's stored keys, as `dkim show` prints them.
async fn published(app: &TestApp, domain: &str) -> Vec<String> {
    let keys = app.store.dkim_keys(domain).await.unwrap();
    keys.iter()
        .map(|k| sign::dkim_record(k).unwrap().zone_line())
        .collect()
}

// A challenge speaks as the address that was mailed, so it is signed by
// that address's domain (aligned with its From: for DMARC); when that
// domain has no key, by the mailbox's domain, which still vouches for it.
on_both_backends!(
    the_domain_of_the_address_mailed_signs_else_the_mailboxs,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on("alice@example.test").await;
        let now = Timestamp::from_secs(T0);
        for (domain, alias) in [
            ("other.test", "team@other.test"),
            ("bare.test", "a@bare.test"),
        ] {
            app.store
                .add_domain(&Domain::parse(domain).unwrap(), now)
                .await
                .unwrap();
            app.store
                .add_alias(&addr_of(alias), &[addr_of("alice@example.test")], now)
                .await
                .unwrap();
        }
        for (domain, selector, algorithm) in [
            ("example.test", "main", DkimAlgorithm::Ed25519),
            ("other.test", "other", DkimAlgorithm::Rsa),
        ] {
            let key = NewDkimKey {
                selector: selector.into(),
                algorithm,
                private_key: sign::generate(algorithm).unwrap(),
            };
            let d = Domain::parse(domain).unwrap();
            app.store
                .add_dkim_keys(&d, &[key], false, now)
                .await
                .unwrap();
        }
        let mut records = published(&app, "example.test").await;
        records.extend(published(&app, "other.test").await);

        for (n, (to, expected)) in [
            (
                "team@other.test",
                "0 a=rsa-sha256 d=other.test s=other pass",
            ),
            (
                "a@bare.test",
                "0 a=ed25519-sha256 d=example.test s=main pass",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let sender = format!("sender{n}@example.org");
            let body = format!(
                "From: {sender}\r\nTo: {to}\r\nSubject: Hello\r\nMessage-ID: <a{n}@example.org>\r\n\r\nHi.\r\n"
            );
            let r = send_raw(&app, &sender, to, &body).await;
            assert!(r.starts_with("250 2.0.0"), "{r}");
            assert_eq!(app.outbound.run_once().await.unwrap(), 1);
            let challenge = app.challenges_to(&sender).remove(0);
            assert!(challenge.header("From").unwrap().contains(to));
            assert_eq!(verify(challenge.mail.raw.as_bytes(), &records), [expected]);
        }
    }
);

// Over the wire: the challenge crosses SMTP to a second boxtrap (the
// first one's smarthost, hosting bob) and is read from bob's Maildir, LF
// line endings and the receiver's own headers on top: the signatures
// survive the transfer and the delivery.
on_both_backends!(
    a_challenge_that_crossed_smtp_still_verifies,
    |backend| async move {
        let Pair { mx, peer } = pair(backend).await;
        let now = Timestamp::from_secs(T0);
        let keys: Vec<NewDkimKey> = [
            ("wire-ed", DkimAlgorithm::Ed25519),
            ("wire-rsa", DkimAlgorithm::Rsa),
        ]
        .into_iter()
        .map(|(selector, algorithm)| NewDkimKey {
            selector: selector.into(),
            algorithm,
            private_key: sign::generate(algorithm).unwrap(),
        })
        .collect();
        let d = Domain::parse("example.test").unwrap();
        mx.store.add_dkim_keys(&d, &keys, false, now).await.unwrap();
        let records = published(&mx, "example.test").await;

        let body = "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: Over the wire\r\n\
                    Message-ID: <w1@example.org>\r\n\r\nHello.\r\n";
        let r = send_raw(&mx, "bob@example.org", "alice@example.test", body).await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert_eq!(mx.outbound.run_once().await.unwrap(), 1);
        let delivered = peer.messages("bob@example.org");
        assert_eq!(delivered.len(), 1);
        let raw = &delivered[0].1;
        assert!(
            !raw.windows(2).any(|w| w == b"\r\n"),
            "stored with LF endings"
        );
        assert_eq!(
            verify(raw, &records),
            [
                "0 a=ed25519-sha256 d=example.test s=wire-ed pass",
                "1 a=rsa-sha256 d=example.test s=wire-rsa pass",
            ],
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
);
