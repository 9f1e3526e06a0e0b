//! BoxTrapper list files through the real CLI: a file written for cPanel
//! (`*@domain`, quoted literals, repeats, CRLF) imports unchanged and the
//! running server then delivers, holds, refuses or drops mail as the file
//! says; a Perl-only construct names its line and changes nothing; `list
//! add` reads a rule as `list import` does.
//!
//! Each test starts one boxtrap in-process and runs the `boxtrap` binary
//! against the same database, as an administrator would next to a running
//! server.

use crate::on_both_backends;
use crate::support::*;
use std::path::PathBuf;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// A running boxtrap with alice's challenge-response on, and a config file
/// that points the CLI at its database.
struct Server {
    app: TestApp,
    config: PathBuf,
}

impl Server {
    async fn start(backend: Backend) -> Server {
        let mut url = String::new();
        let app = TestApp::spawn_with(backend, |c| url = c.database.url.clone()).await;
        app.challenge_on(ALICE).await;
        let config = write_test_config(app.dir.path(), &url, "");
        Server { app, config }
    }

    /// Runs `boxtrap --config ... ARGS` off the runtime's thread.
    async fn boxtrap(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_boxtrap(&config, &args, stdin.as_deref())
        })
        .await
        .unwrap()
    }

    /// A command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.boxtrap(args, None).await;
        assert!(out.success, "boxtrap {args:?} failed: {out:#?}");
        out.stdout
    }

    /// A command that must be refused (exit 1, nothing on stdout); its
    /// stderr.
    async fn refused(&self, args: &[&str]) -> String {
        let out = self.boxtrap(args, None).await;
        assert_eq!(out.code, Some(1), "boxtrap {args:?}: {out:#?}");
        assert_eq!(out.stdout, "", "{out:#?}");
        out.stderr
    }

    /// A file in the server's data directory.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.app.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    async fn show(&self, mailbox: &str, list: &str) -> Vec<String> {
        let out = self.ok(&["list", "show", mailbox, list]).await;
        out.lines().map(str::to_owned).collect()
    }

    /// `from` (envelope and `From:` alike) writes to alice with this
    /// subject; the reply to the end of DATA.
    async fn write_to_alice(&self, from: &str, subject: &str) -> String {
        let id = format!(
            "{}.{}@client.example.org",
            subject.len(),
            from.replace('@', ".")
        );
        let body = format!(
            "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
             Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\nHello Alice.\r\n"
        );
        send_raw(&self.app, from, ALICE, &body).await
    }

    /// What became of one message to alice: how many messages her Maildir
    /// and the quarantine hold after it.
    async fn counts(&self) -> (usize, usize) {
        (self.app.messages(ALICE).len(), self.app.held().await.len())
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

on_both_backends!(
    a_boxtrapper_file_imports_unchanged_and_mail_goes_where_it_says,
    |backend| async move {
        let server = Server::start(backend).await;
        // As a cPanel user writes them: CRLF, `*@domain`, quoted literals,
        // trailing blanks, comments, a repeat.
        let allow = server.file(
            "white-list.txt",
            "# BoxTrapper whitelist\r\n\
             from *@partner.example\r\n\
             from 'newsletter+alice@shop.example'   \r\n\
             from *@partner.example\r\n\
             \r\n\
             subject \"[Project X]\"\r\n",
        );
        let block = server.file(
            "black-list.txt",
            "from *@spam.example\r\nfrom \"x+y@bulk.example\"\r\n",
        );
        let ignore = server.file("ignore-list.txt", "subject 'WIN $$$ NOW'\r\n");

        let out = server.ok(&["list", "import", ALICE, "allow", &allow]).await;
        assert_eq!(
            lines(&out),
            [
                "extended the allow list of alice@example.test: 3 rule(s) added \
                 (3 read, 1 repeated line skipped)",
                "  line 2: `*@partner.example` is read as `.*@partner.example`",
                "  line 3: `'newsletter+alice@shop.example'` is read as \
                 `newsletter\\+alice@shop\\.example`",
                "  line 4: repeats line 2, skipped",
                "  line 6: `\"[Project X]\"` is read as `\\[Project X\\]`",
            ]
        );
        server.ok(&["list", "import", ALICE, "block", &block]).await;
        server
            .ok(&["list", "import", ALICE, "ignore", &ignore])
            .await;
        assert_eq!(
            server.show(ALICE, "allow").await,
            [
                "from .*@partner.example",
                "from newsletter\\+alice@shop\\.example",
                "subject \\[Project X\\]",
            ]
        );
        assert_eq!(
            server.show(ALICE, "block").await,
            ["from .*@spam.example", "from x\\+y@bulk\\.example"]
        );
        assert_eq!(
            server.show(ALICE, "ignore").await,
            ["subject WIN \\$\\$\\$ NOW"]
        );

        // Allowed: delivered to alice's Maildir, nothing held.
        for (from, subject) in [
            ("x@partner.example", "hello"),
            ("Y@Partner.Example", "case does not matter"),
            ("newsletter+alice@shop.example", "news"),
            ("carol@example.org", "Re: [Project X] notes"),
        ] {
            let before = server.counts().await;
            let r = server.write_to_alice(from, subject).await;
            assert!(r.starts_with("250"), "{from}: {r}");
            assert_eq!(
                server.counts().await,
                (before.0 + 1, before.1),
                "{from} {subject:?} is delivered"
            );
        }
        // Not on the list: held. The quoted pattern is a literal, so the
        // `+` is not a regex repetition (`newsletter+alice` as a regex
        // would match `newsletteralice`), and `[Project X]` is not a class.
        for (from, subject) in [
            ("x@other.example", "hello"),
            ("newsletteralice@shop.example", "news"),
            ("dave@example.org", "Project X"),
            ("xxy@bulk.example", "offer"),
        ] {
            let before = server.counts().await;
            let r = server.write_to_alice(from, subject).await;
            assert!(r.starts_with("250"), "{from}: {r}");
            assert_eq!(
                server.counts().await,
                (before.0, before.1 + 1),
                "{from} {subject:?} is held"
            );
        }
        // Blocked: refused in the session; ignored: accepted and dropped.
        for from in ["y@spam.example", "x+y@bulk.example"] {
            let before = server.counts().await;
            let r = server.write_to_alice(from, "buy").await;
            assert!(r.starts_with("550 5.7.1"), "{from}: {r}");
            assert_eq!(server.counts().await, before, "{from}");
        }
        let before = server.counts().await;
        let r = server
            .write_to_alice("zed@example.org", "WIN $$$ NOW")
            .await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(server.counts().await, before, "ignored");

        // The export reads back to the same rules, with nothing to report.
        let export = server.ok(&["list", "export", ALICE, "allow"]).await;
        let out = server
            .boxtrap(&["list", "import", BOB, "allow", "-"], Some(&export))
            .await;
        assert!(out.success, "{out:#?}");
        assert_eq!(
            out.stdout,
            "extended the allow list of bob@example.test: 3 rule(s) added (3 read)\n"
        );
        assert_eq!(
            server.show(BOB, "allow").await,
            server.show(ALICE, "allow").await
        );
        assert_eq!(server.ok(&["list", "export", BOB, "allow"]).await, export);
        // Importing the original file again adds nothing new.
        let out = server.ok(&["list", "import", ALICE, "allow", &allow]).await;
        assert!(
            out.starts_with(
                "extended the allow list of alice@example.test: 0 rule(s) added \
                 (3 read, 1 repeated line skipped)\n"
            ),
            "{out}"
        );
    }
);

/// A list file whose line `at` is `bad` (the others are good rules).
fn file_with(bad: &str, at: usize) -> String {
    (1..=8)
        .map(|n| match n {
            _ if n == at => format!("{bad}\r\n"),
            1 => "# BoxTrapper whitelist\r\n".to_string(),
            _ => format!("from *@friend{n}.example\r\n"),
        })
        .collect()
}

#[tokio::test]
async fn a_line_boxtrap_cannot_read_names_its_line_and_what_is_wrong_and_changes_nothing() {
    let server = Server::start(Backend::Sqlite).await;
    server
        .ok(&["list", "add", ALICE, "allow", "from ^carol@example\\.org$"])
        .await;
    let before = server.show(ALICE, "allow").await;
    let cases = [
        (
            "from ^(?=.*@partner)",
            7,
            "line 7: look-ahead (?=...) is a Perl regex feature boxtrap does not support",
        ),
        (
            "from (?<!www\\.)partner\\.example",
            2,
            "line 2: negative look-behind (?<!...) is a Perl regex feature boxtrap does not support",
        ),
        (
            "from ^(\\w)\\1@",
            3,
            "line 3: backreference \\1 is a Perl regex feature boxtrap does not support",
        ),
        (
            "from \\w++@partner",
            4,
            "line 4: possessive quantifier `++` is a Perl regex feature boxtrap does not support",
        ),
        (
            "from (?>\\w+)@partner",
            5,
            "line 5: atomic group (?>...) is a Perl regex feature boxtrap does not support",
        ),
        (
            "subject *SPAM*",
            6,
            "line 6: the pattern starts with `*`, which repeats nothing",
        ),
        (
            "from ''",
            8,
            "line 8: the pattern is empty once read (quotes, \\Q...\\E, comments): \
             it would match every message",
        ),
        ("from bob\\y", 2, "line 2: `\\y` is not a regex escape"),
        (
            "from (unclosed",
            3,
            "line 3: invalid regular expression: unclosed group",
        ),
        ("form *@partner.example", 4, "line 4: unknown field 'form'"),
    ];
    for (bad, at, says) in cases {
        let text = file_with(bad, at);
        let path = server.file("list.txt", &text);
        for args in [
            vec!["list", "import", ALICE, "allow", path.as_str()],
            vec!["list", "import", ALICE, "allow", "--replace", path.as_str()],
        ] {
            let err = server.refused(&args).await;
            assert!(err.contains(says), "{bad:?}: {err}");
            assert!(err.contains(&format!("  {at} | {bad}\n")), "{bad:?}: {err}");
            assert!(err.contains("nothing was imported"), "{bad:?}: {err}");
            assert_eq!(server.show(ALICE, "allow").await, before, "{bad:?}");
        }
    }
    // Nothing was imported, so mail from the good lines' domains is held.
    let r = server.write_to_alice("x@friend3.example", "hi").await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(server.counts().await, (0, 1));

    // A lone CR ends a line as well: the error names the line an editor
    // shows.
    let path = server.file("cr.txt", "from a@x\rfrom b@x\rfrom (?=c)\r");
    let err = server
        .refused(&["list", "import", ALICE, "allow", &path])
        .await;
    assert!(err.contains("line 3: look-ahead"), "{err}");
    assert!(err.contains("  3 | from (?=c)\n"), "{err}");
}

#[tokio::test]
async fn list_add_and_remove_read_a_rule_as_list_import_does() {
    let server = Server::start(Backend::Sqlite).await;
    let out = server
        .ok(&["list", "add", ALICE, "allow", "from *@partner.example"])
        .await;
    assert_eq!(
        out,
        "added to the allow list of alice@example.test: from .*@partner.example \
         (written `*@partner.example`, read as BoxTrapper reads it)\n"
    );
    let out = server
        .ok(&["list", "add", ALICE, "allow", "from '.*@partner.example'"])
        .await;
    assert_eq!(
        out,
        "added to the allow list of alice@example.test: from \\.\\*@partner\\.example \
         (written `'.*@partner.example'`, read as BoxTrapper reads it)\n"
    );
    let out = server
        .ok(&["list", "add", ALICE, "allow", "from .*@partner.example"])
        .await;
    assert_eq!(
        out,
        "the allow list of alice@example.test already has: from .*@partner.example\n"
    );
    let r = server.write_to_alice("x@partner.example", "hi").await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(server.counts().await, (1, 0), "delivered");

    // The same line in a file is the same rule: nothing new.
    let path = server.file("allow.txt", "from *@partner.example\n");
    let out = server.ok(&["list", "import", ALICE, "allow", &path]).await;
    assert!(
        out.starts_with(
            "extended the allow list of alice@example.test: 0 rule(s) added (1 read)\n"
        ),
        "{out}"
    );

    let err = server
        .refused(&["list", "add", ALICE, "allow", "from ^(?!bob)"])
        .await;
    assert!(
        err.contains(
            "negative look-ahead (?!...) is a Perl regex feature boxtrap does not support"
        ),
        "{err}"
    );

    // Removing takes the rule as written, too.
    server
        .ok(&["list", "remove", ALICE, "allow", "from *@partner.example"])
        .await;
    assert_eq!(
        server.show(ALICE, "allow").await,
        ["from \\.\\*@partner\\.example"]
    );
    let r = server.write_to_alice("y@partner.example", "again").await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(server.counts().await, (1, 1), "held now");
}
