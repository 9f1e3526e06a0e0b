//! The challenge-response admin commands, driven as an administrator would:
//! the real binary against a config file, with held mail put in place
//! through the store API (as the SMTP hook would have held it).

use crate::on_both_backends;
use crate::support::*;
use boxtrap::clock::{Clock, SystemClock, Timestamp};
use boxtrap::store::Store;
use boxtrap::store::held::{self, ActivityAction, NewHeld, NewOutbound, OutboundState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A temp data directory, a config file pointing at it, and the domain
/// example.test with the mailboxes alice and bob.
struct Admin {
    dir: tempfile::TempDir,
    config: PathBuf,
    url: String,
}

impl AdminCommands for Admin {
    fn config_path(&self) -> &Path {
        &self.config
    }
}

impl Admin {
    fn sqlite() -> Admin {
        Admin::with("", "")
    }

    async fn on(backend: Backend) -> Admin {
        match backend {
            Backend::Sqlite => Admin::sqlite(),
            Backend::Postgres => {
                Admin::with(&boxtrap::testing::fresh_postgres_database().await, "")
            }
        }
    }

    fn with(database_url: &str, extra: &str) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let config = write_test_config(dir.path(), database_url, extra);
        let url = if database_url.is_empty() {
            format!("sqlite://{}", dir.path().join("boxtrap.db").display())
        } else {
            database_url.to_owned()
        };
        let admin = Admin { dir, config, url };
        admin.ok(&["domain", "add", "example.test"]);
        admin.ok(&["mailbox", "add", "alice@example.test", "--no-password"]);
        admin.ok(&["mailbox", "add", "bob@example.test", "--no-password"]);
        admin
    }

    /// Runs a command that must fail (1 for a refused value, 2 for a
    /// usage error clap caught); returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.refused(args, &[1, 2]);
        assert_eq!(out.stdout, "", "a refusal prints nothing on stdout");
        out.stderr
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    async fn store(&self) -> Store {
        Store::open(&self.url, 1).await.unwrap()
    }

    /// Holds a message from `sender` for `mailbox` that arrived `ago` seconds
    /// ago, as the quarantine would (with a `held` activity line), and
    /// returns its id. With `challenge`, an open challenge goes with it.
    async fn hold(
        &self,
        mailbox: &str,
        sender: &str,
        subject: &str,
        ago: i64,
        challenge: bool,
    ) -> i64 {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let queue_id = format!("1wH3kL-{n:06}-2k");
        let arrived = SystemClock.now().plus_secs(-ago);
        let data = format!(
            "Received: from client.example.org by mx.example.test\r\n\
             From: Bob Sender <{sender}>\r\n\
             To: {mailbox}\r\n\
             Subject: {subject}\r\n\
             Message-ID: <m{n}@example.org>\r\n\
             \r\n\
             The body of message {n}.\r\n"
        );
        let store = self.store().await;
        let s = store.mailbox_settings_by_address(mailbox).await.unwrap();
        let mut tx = store.begin_write().await.unwrap();
        let challenge_id = if challenge {
            let expires = arrived.plus_secs(86400);
            held::insert_challenge(&mut tx, s.id, sender, mailbox, arrived, expires)
                .await
                .unwrap()
        } else {
            None
        };
        let id = held::insert_held(
            &mut tx,
            &NewHeld {
                mailbox_id: s.id,
                queue_id: &queue_id,
                rcpt_index: 0,
                env_sender: sender,
                original_rcpt: mailbox,
                sender,
                sender_name: "Bob Sender",
                subject,
                message_id: &format!("<m{n}@example.org>"),
                date_header: "Fri, 27 Nov 2026 14:05:53 +0000",
                arrived_at: arrived,
                reason: "unknown-sender",
                reason_detail: "unknown sender; a challenge was sent",
                challenge_id,
                data: data.as_bytes(),
                auth_results: "",
                spam_score: None,
                spam_report: "",
                attachments: None,
            },
        )
        .await
        .unwrap();
        held::add_activity(
            &mut tx,
            s.id,
            arrived,
            ActivityAction::Held,
            sender,
            "unknown sender; a challenge was sent",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store.close().await;
        id
    }

    /// The messages delivered into a mailbox's `new/`.
    fn delivered(&self, mailbox: &str) -> Vec<(String, Vec<u8>)> {
        let (local, domain) = mailbox.split_once('@').unwrap();
        messages_in(
            &self
                .dir
                .path()
                .join("mail")
                .join(domain)
                .join(local)
                .join("new"),
        )
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn mailbox_settings_round_trip_and_bad_values_change_nothing() {
    let admin = Admin::sqlite();
    let defaults = admin.ok(&["mailbox", "show", "alice@example.test"]);
    assert_eq!(
        lines(&defaults),
        [
            "address: alice@example.test",
            "challenge: off",
            "display-name: ",
            "keep-days: 15",
            "spam-bypass-below: -2.5",
            "spam-no-challenge-at: 5.0",
            "whitelist-by-association: off",
            "auto-whitelist-sent: on",
            "notify-released: on",
            "notify-blocked: off",
            "extra-addresses: none",
            "allow-rules: 0",
            "block-rules: 0",
            "ignore-rules: 0",
            "template-overrides: none",
            "digest: daily (last sent: never)",
            "admin: off",
            "held: 0",
            "held-bytes: 0",
            "quarantine-max-messages: 10000 (default)",
            "quarantine-max-bytes: 500M (default)",
        ]
    );

    let out = admin.ok(&[
        "mailbox",
        "set",
        "ALICE@Example.Test",
        "--challenge",
        "on",
        "--display-name",
        "Alice Example",
        "--keep-days",
        "30",
        "--spam-bypass-below",
        "-5.0",
        "--spam-no-challenge-at",
        "off",
        "--whitelist-by-association",
        "off",
        "--auto-whitelist-sent",
        "off",
        "--notify-released",
        "off",
        "--notify-blocked",
        "on",
        "--add-address",
        "Alice@Old-Provider.example",
        "--add-address",
        "a.example@example.org",
    ]);
    assert!(
        out.starts_with("updated mailbox alice@example.test\n"),
        "{out}"
    );
    assert!(out.contains("  keep-days: 30 (was 15)\n"), "{out}");
    assert!(
        out.contains("  added address alice@old-provider.example\n"),
        "{out}"
    );
    let shown = admin.ok(&["mailbox", "show", "alice@EXAMPLE.test"]);
    assert_eq!(
        lines(&shown)[..11],
        [
            "address: alice@example.test",
            "challenge: on",
            "display-name: Alice Example",
            "keep-days: 30",
            "spam-bypass-below: -5.0",
            "spam-no-challenge-at: off",
            "whitelist-by-association: off",
            "auto-whitelist-sent: off",
            "notify-released: off",
            "notify-blocked: on",
            "extra-addresses: a.example@example.org, alice@old-provider.example",
        ]
    );

    // Bad values are refused naming them, and nothing changes — not even
    // the good options given alongside.
    let refusals: [(&[&str], &str); 12] = [
        (&["--keep-days", "0"], "'0'"),
        (&["--keep-days", "366"], "'366'"),
        (&["--keep-days", "ten"], "'ten'"),
        (&["--challenge", "maybe"], "'maybe'"),
        (&["--spam-bypass-below", "5.25"], "'5.25'"),
        (&["--spam-bypass-below", "high"], "'high'"),
        (
            &["--display-name", "Alice\r\nBcc: x@example.org"],
            "control characters",
        ),
        (&["--add-address", "not an address"], "not an address"),
        (
            &["--add-address", "bob@example.test"],
            "bob@example.test is a mailbox",
        ),
        (&["--add-address", "alice@example.test"], "own address"),
        (
            &["--remove-address", "never@example.org"],
            "never@example.org is not an address",
        ),
        (
            &[
                "--add-address",
                "x@example.org",
                "--remove-address",
                "x@example.org",
            ],
            "both added and removed",
        ),
    ];
    for (args, named) in refusals {
        let mut all = vec![
            "mailbox",
            "set",
            "alice@example.test",
            "--notify-blocked",
            "off",
        ];
        all.extend_from_slice(args);
        let err = admin.fails(&all);
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let err = admin.fails(&["mailbox", "set", "alice@example.test"]);
    assert!(err.contains("at least one option"), "{err}");
    // Another mailbox's extra address cannot be bob's too.
    let err = admin.fails(&[
        "mailbox",
        "set",
        "bob@example.test",
        "--add-address",
        "ALICE@old-provider.example",
    ]);
    assert!(
        err.contains("already an address of alice@example.test"),
        "{err}"
    );
    assert_eq!(admin.ok(&["mailbox", "show", "alice@example.test"]), shown);

    // Off again, and an address removed.
    admin.ok(&[
        "mailbox",
        "set",
        "alice@example.test",
        "--spam-bypass-below",
        "off",
        "--remove-address",
        "a.example@example.org",
    ]);
    let shown = admin.ok(&["mailbox", "show", "alice@example.test"]);
    assert!(shown.contains("\nspam-bypass-below: off\n"), "{shown}");
    assert!(
        shown.contains("\nextra-addresses: alice@old-provider.example\n"),
        "{shown}"
    );

    let err = admin.fails(&["mailbox", "show", "nobody@example.test"]);
    assert!(
        err.contains("no such mailbox: nobody@example.test"),
        "{err}"
    );
    let err = admin.fails(&["mailbox", "set", "nobody@example.test", "--challenge", "on"]);
    assert!(
        err.contains("no such mailbox: nobody@example.test"),
        "{err}"
    );
}

#[test]
fn sender_rules_are_added_shown_and_removed() {
    let admin = Admin::sqlite();
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "allow"]),
        ""
    );
    admin.ok(&[
        "list",
        "add",
        "alice@example.test",
        "allow",
        "from .*@example\\.com",
    ]);
    // A bare address is the rule for exactly that sender.
    let out = admin.ok(&[
        "list",
        "add",
        "Alice@Example.test",
        "allow",
        "Bob@Example.org",
    ]);
    assert_eq!(
        out,
        "added to the allow list of alice@example.test: from ^bob@example\\.org$\n"
    );
    let out = admin.ok(&[
        "list",
        "add",
        "alice@example.test",
        "allow",
        "bob@example.org",
    ]);
    assert!(out.contains("already has"), "{out}");
    admin.ok(&[
        "list",
        "add",
        "alice@example.test",
        "block",
        "subject  viagra",
    ]);
    admin.ok(&["list", "add", "alice@example.test", "ignore", "to ^list@"]);
    assert_eq!(
        lines(&admin.ok(&["list", "show", "alice@example.test", "allow"])),
        ["from .*@example\\.com", "from ^bob@example\\.org$"]
    );
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "block"]),
        "subject viagra\n"
    );
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "ignore"]),
        "to ^list@\n"
    );
    let shown = admin.ok(&["mailbox", "show", "alice@example.test"]);
    assert!(
        shown.contains("allow-rules: 2\nblock-rules: 1\nignore-rules: 1\n"),
        "{shown}"
    );

    // Bad rules, lists and mailboxes are refused by name.
    for (args, named) in [
        (
            ["alice@example.test", "allow", "form bob@example.org"],
            "form",
        ),
        (
            ["alice@example.test", "allow", "from (unclosed"],
            "unclosed",
        ),
        (["alice@example.test", "allow", "from"], "missing pattern"),
        (
            ["alice@example.test", "allow", "bob@example.org extra"],
            "bob@example.org extra",
        ),
        (["alice@example.test", "greylist", "from x"], "greylist"),
        (
            ["nobody@example.test", "allow", "from x"],
            "no such mailbox: nobody@example.test",
        ),
        (["not-an-address", "allow", "from x"], "not-an-address"),
    ] {
        let mut all = vec!["list", "add"];
        all.extend_from_slice(&args);
        let err = admin.fails(&all);
        assert!(err.contains(named), "{args:?}: {err}");
    }
    assert_eq!(
        lines(&admin.ok(&["list", "show", "alice@example.test", "allow"])),
        ["from .*@example\\.com", "from ^bob@example\\.org$"]
    );

    // Removing takes the rule as added, or as shown.
    admin.ok(&[
        "list",
        "remove",
        "alice@example.test",
        "allow",
        "BOB@example.org",
    ]);
    admin.ok(&[
        "list",
        "remove",
        "alice@example.test",
        "allow",
        "from .*@example\\.com",
    ]);
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "allow"]),
        ""
    );
    let err = admin.fails(&[
        "list",
        "remove",
        "alice@example.test",
        "allow",
        "from .*@example\\.com",
    ]);
    assert!(err.contains("has no rule `from .*@example\\.com`"), "{err}");
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "block"]),
        "subject viagra\n"
    );
}

#[test]
fn a_list_import_is_all_or_nothing_and_an_export_imports_back() {
    let admin = Admin::sqlite();
    admin.ok(&[
        "list",
        "add",
        "alice@example.test",
        "allow",
        "from ^carol@example\\.net$",
    ]);
    let before = admin.ok(&["list", "show", "alice@example.test", "allow"]);

    let bad = admin.file(
        "bad.txt",
        "from .*@example\\.com\n# friends\nfrom (unclosed\nto ^sales@\nsubject invoice\n",
    );
    let out = admin.run(&["list", "import", "alice@example.test", "allow", &bad]);
    assert!(!out.success, "{out:#?}");
    assert!(out.stderr.contains("line 3"), "{out:#?}");
    assert!(
        out.stderr.contains("invalid regular expression"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("nothing was imported"), "{out:#?}");
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "allow"]),
        before
    );
    // The same from standard input, and with --replace: still nothing.
    let text = std::fs::read_to_string(&bad).unwrap();
    let out = admin.run_stdin(
        &["list", "import", "alice@example.test", "allow", "--replace"],
        &text,
    );
    assert!(!out.success && out.stderr.contains("line 3"), "{out:#?}");
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "allow"]),
        before
    );

    // A good file (BoxTrapper's own comments and blank lines) adds to the list.
    let good = admin.file(
        "good.txt",
        "# whitelist\nfrom .*@example\\.com\n\nto ^sales@\nsubject invoice\nfrom ^carol@example\\.net$\n",
    );
    let out = admin.ok(&["list", "import", "alice@example.test", "allow", &good]);
    assert!(out.contains("3 rule(s) added (4 read)"), "{out}");
    assert_eq!(
        lines(&admin.ok(&["list", "show", "alice@example.test", "allow"])),
        [
            "from ^carol@example\\.net$",
            "from .*@example\\.com",
            "to ^sales@",
            "subject invoice"
        ]
    );

    // Export, then import into bob's empty list and with --replace into
    // alice's: the same rules come back.
    let export = admin.ok(&["list", "export", "alice@example.test", "allow"]);
    assert!(export.starts_with("# boxtrap allow list"), "{export}");
    let shown = admin.ok(&["list", "show", "alice@example.test", "allow"]);
    let out = admin.run_stdin(
        &["list", "import", "bob@example.test", "allow", "-"],
        &export,
    );
    assert!(out.success, "{out:#?}");
    assert!(out.stdout.contains("4 rule(s) added"), "{out:#?}");
    assert_eq!(
        admin.ok(&["list", "show", "bob@example.test", "allow"]),
        shown
    );
    assert_eq!(
        admin.ok(&["list", "export", "bob@example.test", "allow"]),
        export
    );

    let only = admin.file("only.txt", "from ^dave@example\\.net$\n");
    let out = admin.ok(&[
        "list",
        "import",
        "alice@example.test",
        "allow",
        "--replace",
        &only,
    ]);
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "allow"]),
        "from ^dave@example\\.net$\n"
    );
    let out = admin.run_stdin(
        &["list", "import", "alice@example.test", "allow", "--replace"],
        &export,
    );
    assert!(out.success, "{out:#?}");
    assert_eq!(
        admin.ok(&["list", "show", "alice@example.test", "allow"]),
        shown
    );

    let err = admin.fails(&[
        "list",
        "import",
        "alice@example.test",
        "allow",
        "/nonexistent/list.txt",
    ]);
    assert!(err.contains("/nonexistent/list.txt"), "{err}");
}

#[test]
fn templates_are_checked_before_they_are_saved() {
    let admin = Admin::sqlite();
    let default = admin.ok(&["template", "show", "alice@example.test", "verify"]);
    assert!(
        default.starts_with("# default verify template"),
        "{default}"
    );
    assert!(
        default.contains("{{ link }}") || default.contains("{{link}}"),
        "{default}"
    );

    // A challenge that does not carry the link or token is refused.
    let no_link = admin.file(
        "nolink.txt",
        "Subject: Please confirm\n\nJust reply to this message.\n",
    );
    let err = admin.fails(&["template", "set", "alice@example.test", "verify", &no_link]);
    assert!(err.contains("{{ link }}"), "{err}");
    assert!(err.contains("nothing was saved"), "{err}");
    // An unknown variable is refused with its line.
    let typo = "Subject: Re: {{ subject }}\n\nHello {{ sender }},\nclick {{ link }}\nAlice ({{ mailbox_nam }})\n";
    let out = admin.run_stdin(
        &["template", "set", "alice@example.test", "verify", "-"],
        typo,
    );
    assert!(!out.success, "{out:#?}");
    assert!(out.stderr.contains("line 5"), "{out:#?}");
    assert!(out.stderr.contains("mailbox_nam"), "{out:#?}");
    assert!(
        out.stderr.contains("Alice ({{ mailbox_nam }})"),
        "the line is shown: {out:#?}"
    );
    // Too large.
    let big = admin.file(
        "big.txt",
        &format!("Subject: x\n\n{{{{ link }}}}\n{}\n", "x".repeat(20_000)),
    );
    let err = admin.fails(&["template", "set", "alice@example.test", "verify", &big]);
    assert!(err.contains("limit"), "{err}");
    let err = admin.fails(&["template", "set", "alice@example.test", "welcome", &no_link]);
    assert!(err.contains("welcome"), "{err}");
    assert_eq!(
        admin.ok(&["template", "show", "alice@example.test", "verify"]),
        default
    );

    let good = "Subject: Re: {{ subject }} [verify#{{ token }}]\n\nHi {{ sender_name }}, please click {{ link }}\n";
    let path = admin.file("good.txt", good);
    let out = admin.ok(&["template", "set", "Alice@Example.test", "verify", &path]);
    assert!(
        out.starts_with("saved the verify template of alice@example.test"),
        "{out}"
    );
    assert_eq!(
        admin.ok(&["template", "show", "alice@example.test", "verify"]),
        good
    );
    assert!(
        admin
            .ok(&["mailbox", "show", "alice@example.test"])
            .contains("template-overrides: verify\n")
    );
    // Other mailboxes and other templates keep their defaults.
    assert_eq!(
        admin.ok(&["template", "show", "bob@example.test", "verify"]),
        default.replace("(alice@example.test has", "(bob@example.test has")
    );
    assert!(
        admin
            .ok(&["template", "show", "alice@example.test", "blacklist"])
            .starts_with("# default blacklist")
    );
    // A bad text later does not touch the saved one.
    admin.fails(&["template", "set", "alice@example.test", "verify", &no_link]);
    assert_eq!(
        admin.ok(&["template", "show", "alice@example.test", "verify"]),
        good
    );

    let out = admin.ok(&["template", "reset", "alice@example.test", "verify"]);
    assert!(out.contains("the default applies"), "{out}");
    assert_eq!(
        admin.ok(&["template", "show", "alice@example.test", "verify"]),
        default
    );
    // The printed default, without its marker line, is a valid override.
    let text = default.split_once('\n').unwrap().1;
    let out = admin.run_stdin(&["template", "set", "alice@example.test", "verify"], text);
    assert!(out.success, "{out:#?}");
    assert_eq!(
        admin.ok(&["template", "show", "alice@example.test", "verify"]),
        text
    );
}

#[test]
fn key_rotation_adds_a_current_key_and_keeps_the_old_ones() {
    let admin = Admin::sqlite();
    let out = admin.ok(&["key", "rotate"]);
    assert!(out.starts_with("token key 2 is now current"), "{out}");
    admin.ok(&["key", "rotate"]);
    let listed = admin.ok(&["key", "list"]);
    let keys = lines(&listed);
    assert_eq!(keys.len(), 3, "{listed}");
    assert!(keys[0].starts_with("1  retired  "), "{listed}");
    assert!(keys[1].starts_with("2  retired  "), "{listed}");
    assert_eq!(keys[2], "3  current");
    // Never a secret: ids, states and times only.
    assert!(listed.lines().all(|l| l.len() < 100), "{listed}");

    // With a configured secret there is nothing to rotate.
    let secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let configured = Admin::with("", &format!("[challenge]\nsecret = {secret:?}\n"));
    let err = configured.fails(&["key", "rotate"]);
    assert!(err.contains("[challenge] secret"), "{err}");
    let listed = configured.ok(&["key", "list"]);
    assert!(listed.starts_with("0  current"), "{listed}");
    assert!(!listed.contains(secret), "{listed}");
}

#[tokio::test]
async fn held_mail_is_listed_counted_and_shown() {
    let admin = Admin::sqlite();
    assert_eq!(admin.ok(&["quarantine", "count"]), "0\n");
    assert_eq!(admin.ok(&["quarantine", "list"]), "");
    let long = "A subject that goes on and on well past the fifty characters of a line";
    let first = admin
        .hold(
            "alice@example.test",
            "bob@example.org",
            long,
            3 * 86400 - 5,
            true,
        )
        .await;
    let second = admin
        .hold(
            "alice@example.test",
            "carol@example.net",
            "Lunch on Friday?",
            300,
            false,
        )
        .await;
    let third = admin
        .hold(
            "bob@example.test",
            "bob@example.org",
            "Hello \x1b[31mBob",
            2 * 3600 + 30,
            false,
        )
        .await;

    assert_eq!(admin.ok(&["quarantine", "count"]), "3\n");
    assert_eq!(
        admin.ok(&["quarantine", "count", "--mailbox", "ALICE@example.test"]),
        "2\n"
    );
    assert_eq!(
        admin.ok(&["quarantine", "count", "--mailbox", "bob@example.test"]),
        "1\n"
    );

    let listed = admin.ok(&["quarantine", "list"]);
    let rows = lines(&listed);
    assert_eq!(rows.len(), 3, "{listed}");
    // Newest first; id, age, size, mailbox, sender, subject, reason.
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(cols[0], second.to_string(), "{listed}");
    assert_eq!(cols[1], "5m", "{listed}");
    assert!(cols[2].parse::<u64>().unwrap() > 100, "{listed}");
    assert_eq!(
        &cols[3..5],
        ["alice@example.test", "<carol@example.net>"],
        "{listed}"
    );
    assert!(
        rows[0].ends_with("\"Lunch on Friday?\" unknown-sender"),
        "{listed}"
    );
    assert!(
        rows[1].starts_with(&format!("{third:>6} {:>4} ", "2h")),
        "{listed}"
    );
    assert!(
        !listed.contains('\x1b'),
        "no escape reaches the terminal: {listed:?}"
    );
    assert!(
        rows[2].starts_with(&format!("{first:>6} {:>4} ", "2d")),
        "{listed}"
    );
    let shown_subject = rows[2].split('"').nth(1).unwrap();
    assert_eq!(shown_subject.chars().count(), 50, "{shown_subject}");
    assert!(shown_subject.ends_with('…'), "{shown_subject}");

    let only = admin.ok(&[
        "quarantine",
        "list",
        "--mailbox",
        "alice@example.test",
        "--sender",
        "Bob@Example.org",
    ]);
    assert_eq!(lines(&only).len(), 1, "{only}");
    assert!(only.trim_start().starts_with(&first.to_string()), "{only}");
    assert_eq!(
        lines(&admin.ok(&["quarantine", "list", "--sender", "bob@example.org"])).len(),
        2
    );

    let shown = admin.ok(&["quarantine", "show", &first.to_string()]);
    for expected in [
        format!("id: {first}\n"),
        "mailbox: alice@example.test\n".into(),
        "state: held\n".into(),
        "sender: <bob@example.org>\n".into(),
        "sender-name: Bob Sender\n".into(),
        format!("subject: {long}\n"),
        "reason: unknown-sender\n".into(),
        "reason-detail: unknown sender; a challenge was sent\n".into(),
        "expires: ".into(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} in {shown}");
    }
    assert!(
        shown.contains("\nchallenge: ") && shown.contains(" (open, expires "),
        "{shown}"
    );
    assert!(
        shown.contains("\n\nReceived: from client.example.org"),
        "{shown}"
    );
    assert!(shown.contains("\nSubject: A subject"), "{shown}");
    assert!(
        !shown.contains("The body of message"),
        "headers only: {shown}"
    );
    assert!(!shown.contains('\r'), "{shown:?}");
    let with_body = admin.ok(&["quarantine", "show", &first.to_string(), "--body"]);
    assert!(with_body.contains("The body of message"), "{with_body}");
    let shown = admin.ok(&["quarantine", "show", &third.to_string()]);
    assert!(shown.contains("challenge: none\n"), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown:?}");

    let err = admin.fails(&["quarantine", "show", "9999"]);
    assert!(err.contains("no held message 9999"), "{err}");
    let err = admin.fails(&["quarantine", "show", "abc"]);
    assert!(err.contains("\"abc\""), "{err}");
    let err = admin.fails(&["quarantine", "list", "--mailbox", "nobody@example.test"]);
    assert!(
        err.contains("no such mailbox: nobody@example.test"),
        "{err}"
    );
    let err = admin.fails(&["quarantine", "list", "--sender", "not an address"]);
    assert!(err.contains("not an address"), "{err}");
}

on_both_backends!(
    held_mail_is_released_and_deleted_from_the_command_line,
    |backend| async move {
        let admin = Admin::on(backend).await;
        let one = admin
            .hold(
                "alice@example.test",
                "dave@example.org",
                "Just this one",
                60,
                false,
            )
            .await;
        let bobs: Vec<i64> = {
            let mut ids = Vec::new();
            // The first opened a challenge; the second joined it.
            for (i, subject) in ["First from Bob", "Second from Bob"].iter().enumerate() {
                ids.push(
                    admin
                        .hold(
                            "alice@example.test",
                            "bob@example.org",
                            subject,
                            120,
                            i == 0,
                        )
                        .await,
                );
            }
            ids
        };
        let spam = admin
            .hold(
                "alice@example.test",
                "spam@example.net",
                "Cheap pills",
                30,
                false,
            )
            .await;
        let spam2 = admin
            .hold(
                "alice@example.test",
                "spam@example.net",
                "More pills",
                20,
                false,
            )
            .await;
        let other = admin
            .hold(
                "bob@example.test",
                "spam@example.net",
                "Pills for Bob",
                10,
                false,
            )
            .await;
        assert!(admin.delivered("alice@example.test").is_empty());

        // One message: delivered, its sender not allowed.
        let out = admin.ok(&["quarantine", "release", &one.to_string()]);
        assert!(
            out.starts_with(&format!("released message {one} ")),
            "{out}"
        );
        let delivered = admin.delivered("alice@example.test");
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        assert!(String::from_utf8_lossy(&delivered[0].1).contains("Subject: Just this one"));
        assert_eq!(
            admin.ok(&["list", "show", "alice@example.test", "allow"]),
            ""
        );
        let err = admin.fails(&["quarantine", "release", &one.to_string()]);
        assert!(err.contains(&format!("no held message {one}")), "{err}");

        // Everything from a sender: delivered, and the sender allowed.
        let out = admin.ok(&[
            "quarantine",
            "release",
            "--sender",
            "BOB@example.org",
            "--mailbox",
            "Alice@Example.test",
        ]);
        assert!(
            out.starts_with("released 2 message(s) from bob@example.org"),
            "{out}"
        );
        assert_eq!(admin.delivered("alice@example.test").len(), 3);
        assert_eq!(
            admin.ok(&["list", "show", "alice@example.test", "allow"]),
            "from ^bob@example\\.org$\n"
        );
        for id in &bobs {
            admin.fails(&["quarantine", "show", &id.to_string()]);
        }
        let err = admin.fails(&[
            "quarantine",
            "release",
            "--sender",
            "bob@example.org",
            "--mailbox",
            "alice@example.test",
        ]);
        assert!(
            err.contains("no mail from bob@example.org is held"),
            "{err}"
        );

        // Delete one, then everything from a sender for one mailbox.
        let out = admin.ok(&["quarantine", "delete", &spam.to_string()]);
        assert!(
            out.starts_with(&format!("deleted message {spam} ")),
            "{out}"
        );
        let out = admin.ok(&[
            "quarantine",
            "delete",
            "--sender",
            "spam@example.net",
            "--mailbox",
            "alice@example.test",
        ]);
        assert!(
            out.starts_with("deleted 1 message(s) from spam@example.net"),
            "{out}"
        );
        // Deleted softly: shown as deleted, out of the list and the count,
        // restorable.
        let shown = admin.ok(&["quarantine", "show", &spam2.to_string()]);
        assert!(shown.contains("state: deleted\n"), "{shown}");
        assert!(shown.contains("deleted: "), "{shown}");
        assert!(
            shown.contains(&format!("`boxtrap quarantine restore {spam2}` until then")),
            "{shown}"
        );
        assert_eq!(
            admin.delivered("alice@example.test").len(),
            3,
            "nothing deleted was delivered"
        );
        assert_eq!(
            admin.ok(&["quarantine", "count", "--mailbox", "alice@example.test"]),
            "0\n"
        );
        // Bob's own copy from the same sender is untouched.
        let left = admin.ok(&["quarantine", "list"]);
        assert_eq!(lines(&left).len(), 1, "{left}");
        assert!(left.trim_start().starts_with(&other.to_string()), "{left}");
        assert!(admin.delivered("bob@example.test").is_empty());
        let err = admin.fails(&["quarantine", "delete", &spam.to_string()]);
        assert!(
            err.contains(&format!("held message {spam} is already deleted")),
            "{err}"
        );
        let err = admin.fails(&["quarantine", "release", &spam.to_string()]);
        assert!(
            err.contains(&format!(
                "restore it first: boxtrap quarantine restore {spam}"
            )),
            "{err}"
        );
        // Restored: back in the list and the count; deliverable again.
        let out = admin.ok(&["quarantine", "restore", &spam.to_string()]);
        assert!(
            out.starts_with(&format!("restored message {spam} from <spam@example.net>")),
            "{out}"
        );
        assert_eq!(
            admin.ok(&["quarantine", "count", "--mailbox", "alice@example.test"]),
            "1\n"
        );
        let err = admin.fails(&["quarantine", "restore", &spam.to_string()]);
        assert!(err.contains("is not deleted (state held)"), "{err}");
        admin.ok(&["quarantine", "delete", &spam.to_string()]);

        // Bad targets.
        for (args, named) in [
            (vec!["quarantine", "release"], "<ID>"),
            (
                vec!["quarantine", "release", "--sender", "bob@example.org"],
                "--mailbox",
            ),
            (
                vec!["quarantine", "delete", "1", "--sender", "bob@example.org"],
                "--sender",
            ),
            (vec!["quarantine", "delete", "x1"], "\"x1\""),
            (
                vec![
                    "quarantine",
                    "delete",
                    "--sender",
                    "bob@example.org",
                    "--mailbox",
                    "zed@example.test",
                ],
                "no such mailbox: zed@example.test",
            ),
        ] {
            let err = admin.fails(&args);
            assert!(err.contains(named), "{args:?}: {err}");
        }

        // The activity log tells the story, newest first.
        let log = admin.ok(&["log", "--mailbox", "alice@example.test"]);
        let entries = lines(&log);
        let actions: Vec<&str> = entries
            .iter()
            .map(|l| l.split("  ").nth(1).unwrap())
            .collect();
        // Two deletes, then one restored and deleted again.
        assert_eq!(
            actions.iter().filter(|a| **a == "deleted").count(),
            3,
            "{log}"
        );
        assert_eq!(
            actions.iter().filter(|a| **a == "restored").count(),
            1,
            "{log}"
        );
        assert_eq!(
            actions.iter().filter(|a| **a == "released").count(),
            3,
            "{log}"
        );
        assert_eq!(
            actions.iter().filter(|a| **a == "allowed").count(),
            1,
            "{log}"
        );
        assert_eq!(actions.iter().filter(|a| **a == "held").count(), 5, "{log}");
        assert_eq!(actions[0], "deleted", "newest first: {log}");
        assert!(
            entries
                .iter()
                .any(|l| l.contains("  deleted  spam@example.net  More pills")),
            "{log}"
        );
        let held_line = entries.iter().find(|l| l.contains("  held  ")).unwrap();
        assert!(
            held_line.ends_with("  held  spam@example.net  unknown sender; a challenge was sent"),
            "{log}"
        );
        // `YYYY-MM-DD HH:MM:SS  action  sender  detail`.
        assert_eq!(held_line.as_bytes()[4], b'-', "{held_line}");
        assert_eq!(held_line.as_bytes()[13], b':', "{held_line}");
        assert_eq!(
            lines(&admin.ok(&["log", "--mailbox", "alice@example.test", "--limit", "2"])),
            entries[..2]
        );
        admin.fails(&["log", "--mailbox", "alice@example.test", "--limit", "0"]);
        let err = admin.fails(&["log", "--mailbox", "nobody@example.test"]);
        assert!(err.contains("no such mailbox"), "{err}");
        let bobs_log = admin.ok(&["log", "--mailbox", "bob@example.test"]);
        assert_eq!(lines(&bobs_log).len(), 1, "only bob's own mail: {bobs_log}");
        assert!(
            bobs_log.contains("  held  spam@example.net  "),
            "{bobs_log}"
        );
    }
);

#[tokio::test]
async fn the_outbound_queue_is_listed() {
    let admin = Admin::sqlite();
    assert_eq!(admin.ok(&["outbound", "list"]), "");
    let store = admin.store().await;
    let s = store
        .mailbox_settings_by_address("alice@example.test")
        .await
        .unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let id = held::insert_outbound(
        &mut conn,
        &NewOutbound {
            kind: "verify",
            mailbox_id: Some(s.id),
            challenge_id: None,
            env_from: "",
            rcpt: "bob@example.org",
            data: b"Subject: x\r\n\r\nx\r\n",
            now: SystemClock.now().plus_secs(-7200),
        },
    )
    .await
    .unwrap();
    drop(conn);
    store
        .outbound_attempted(
            id,
            OutboundState::Queued,
            Timestamp(0),
            "451 4.3.0 try again later",
            SystemClock.now(),
        )
        .await
        .unwrap();
    store.close().await;
    let listed = admin.ok(&["outbound", "list"]);
    assert_eq!(
        listed,
        format!(
            "{id:>6}   2h verify <bob@example.org> queued attempts=1 451 4.3.0 try again later\n"
        )
    );
}

#[test]
fn every_new_command_explains_itself() {
    let admin = Admin::sqlite();
    for path in [
        &["mailbox", "set"][..],
        &["mailbox", "show"],
        &["list"],
        &["list", "add"],
        &["list", "remove"],
        &["list", "show"],
        &["list", "import"],
        &["list", "export"],
        &["quarantine"],
        &["quarantine", "list"],
        &["quarantine", "count"],
        &["quarantine", "show"],
        &["quarantine", "release"],
        &["quarantine", "delete"],
        &["log"],
        &["template"],
        &["template", "show"],
        &["template", "set"],
        &["template", "reset"],
        &["key"],
        &["key", "list"],
        &["key", "rotate"],
        &["outbound"],
        &["outbound", "list"],
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let out = admin.ok(&args);
        let first = out.lines().next().unwrap_or("");
        assert!(
            first.len() > 10 && !first.starts_with("Usage"),
            "{path:?}: {out}"
        );
    }
    let help = admin.ok(&["list", "add", "--help"]);
    assert!(help.contains("bare address"), "{help}");
}
