//! Growth (issue 10, item 7): a quarantine cannot grow without bound, and
//! the tables the quarantine leaves behind (outbound mail, challenges, the
//! activity log) are purged after their retention, keeping what is still
//! needed. Each attack as written is the test: fill a mailbox's quarantine
//! over SMTP, then try one more.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::config::{ByteSize, HumanDuration};
use boxtrap::store::held::{ActivityAction, OutboundState};
use std::path::Path;
use std::time::Duration;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const DAY: i64 = 86400;

fn mail(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n\r\n{body}\r\n"
    )
}

/// A stranger (`s<n>@example.org`) writes to `to`; the reply to DATA.
async fn stranger_writes(app: &TestApp, n: u32, to: &str, body: &str) -> String {
    let from = format!("s{n}@example.org");
    send_raw(
        app,
        &from,
        to,
        &mail(&from, to, &format!("hello {n}"), body),
    )
    .await
}

/// What `RCPT TO:<to>` gets from a stranger, in a session of its own.
async fn rcpt_reply(app: &TestApp, to: &str) -> String {
    let mut s = app.smtp().await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<late@example.org>", "250").await;
    let r = s.cmd(&format!("RCPT TO:<{to}>"), "").await;
    s.cmd("QUIT", "221").await;
    r
}

/// The details of a mailbox's activity lines with this action, newest first.
async fn activity_of(app: &TestApp, mailbox: &str, action: ActivityAction) -> Vec<String> {
    let id = app.mailbox_id(mailbox).await;
    let lines = app.store.activity(id, 1000).await.unwrap();
    lines
        .into_iter()
        .filter(|a| a.action == action)
        .map(|a| a.detail)
        .collect()
}

async fn rows(app: &TestApp, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

async fn set_quota(app: &TestApp, mailbox: &str, messages: Option<i64>, bytes: Option<i64>) {
    let mut s = app
        .store
        .mailbox_settings_by_address(mailbox)
        .await
        .unwrap();
    (s.quarantine_max_messages, s.quarantine_max_bytes) = (messages, bytes);
    app.store.update_mailbox_settings(&s).await.unwrap();
}

on_both_backends!(
    a_full_quarantine_gets_452_for_its_recipient_only_until_mail_goes,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| c.challenge.quarantine_max_messages = 3).await;
        app.challenge_on(ALICE).await;
        for n in 0..3 {
            let r = stranger_writes(&app, n, ALICE, "Hello.").await;
            assert!(r.starts_with("250 2.0.0"), "{r}");
        }
        assert_eq!(app.held().await.len(), 3);

        // The next message: alice's RCPT (directly or through the alias
        // team, which reaches her) waits with 452 4.2.2 before DATA; bob,
        // in the same transaction, gets his copy.
        let mut s = app.smtp().await;
        s.cmd("EHLO client.example.org", "250").await;
        s.cmd("MAIL FROM:<s3@example.org>", "250").await;
        let r = s.cmd("RCPT TO:<alice@example.test>", "452").await;
        assert_eq!(r, "452 4.2.2 Mailbox full, try again later\r\n");
        s.cmd("RCPT TO:<team@example.test>", "452 4.2.2").await;
        s.cmd("RCPT TO:<bob@example.test>", "250 2.1.5").await;
        s.cmd("DATA", "354").await;
        let r = s.data(&mail("s3@example.org", BOB, "hello", "Hi.")).await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        s.cmd("QUIT", "221").await;
        assert_eq!(app.held().await.len(), 3, "nothing more held for alice");
        assert_eq!(app.messages(BOB).len(), 1);
        assert!(app.messages(ALICE).is_empty());
        let rejects = app.rejectlog();
        assert!(
            rejects.contains(
                "F=<s3@example.org> rejected RCPT <alice@example.test>: quarantine of \
                 alice@example.test is full: 3 messages, "
            ),
            "{rejects}"
        );
        assert!(rejects.contains("(quota 3 messages, 500M)"), "{rejects}");
        assert!(
            rejects.contains("rejected RCPT <team@example.test>: quarantine of alice"),
            "{rejects}"
        );

        // Refused again: still one line in the activity log for the crossing.
        assert!(rcpt_reply(&app, ALICE).await.starts_with("452 4.2.2"));
        let full = activity_of(&app, ALICE, ActivityAction::QuarantineFull).await;
        assert_eq!(full.len(), 1, "{full:?}");
        assert!(
            full[0].starts_with("quarantine full: 3 messages, ")
                && full[0].ends_with(" bytes; new mail refused"),
            "{full:?}"
        );
        assert!(
            activity_of(&app, BOB, ActivityAction::QuarantineFull)
                .await
                .is_empty()
        );

        // The owner deletes one: there is room, and the crossing back is noted.
        let oldest = app.held().await.last().unwrap().id;
        assert!(app.quarantine.delete_one(oldest).await.unwrap());
        let r = stranger_writes(&app, 4, ALICE, "Hello again.").await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert_eq!(app.held().await.len(), 3);
        let room = activity_of(&app, ALICE, ActivityAction::QuarantineRoom).await;
        assert_eq!(room.len(), 1, "{room:?}");
        assert!(
            room[0].starts_with("quarantine has room again: 2 messages, "),
            "{room:?}"
        );

        // Full again: a new crossing, a new line.
        assert!(rcpt_reply(&app, ALICE).await.starts_with("452 4.2.2"));
        assert_eq!(
            activity_of(&app, ALICE, ActivityAction::QuarantineFull)
                .await
                .len(),
            2
        );

        // The sweeper purges the held mail after the keep-days (15): room
        // again, noted by the sweeper before any mail comes.
        app.clock.advance_secs(15 * DAY + 1);
        let swept = app.quarantine.sweep_once().await.unwrap();
        assert_eq!(swept.expired, 3);
        let room = activity_of(&app, ALICE, ActivityAction::QuarantineRoom).await;
        assert_eq!(room[0], "quarantine has room again: 0 messages, 0 bytes");
        assert!(rcpt_reply(&app, ALICE).await.starts_with("250 2.1.5"));
        let r = stranger_writes(&app, 5, ALICE, "Hello, finally.").await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        assert_eq!(app.held().await.len(), 1);
    }
);

on_both_backends!(
    the_byte_quota_and_the_server_default_bind_challenge_response_mailboxes_only,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| {
            c.challenge.quarantine_max_messages = 1000;
            c.challenge.quarantine_max_bytes = ByteSize(1 << 20);
        })
        .await;
        app.challenge_on(ALICE).await;
        // 600 KiB a message: the second still fits (the quarantine holds
        // less than 1M when it is offered), the third does not.
        let big = ("x".repeat(76) + "\r\n").repeat(600 * 1024 / 78);
        for n in 0..2 {
            let r = stranger_writes(&app, n, ALICE, &big).await;
            assert!(r.starts_with("250 2.0.0"), "{r}");
        }
        let held: i64 = app.held().await.iter().map(|h| h.size).sum();
        assert!(held > 1 << 20, "{held}");
        assert!(rcpt_reply(&app, ALICE).await.starts_with("452 4.2.2"));
        let rejects = app.rejectlog();
        assert!(
            rejects.contains(&format!(
                "quarantine of alice@example.test is full: 2 messages, {held} bytes \
                 (quota 1000 messages, 1M)"
            )),
            "{rejects}"
        );

        // bob has challenge-response off: his mail goes to the Maildir,
        // and no quarantine quota applies to it.
        for n in 10..13 {
            let r = stranger_writes(&app, n, BOB, &big).await;
            assert!(r.starts_with("250 2.0.0"), "{r}");
        }
        assert_eq!(app.messages(BOB).len(), 3);

        // alice's own quota wins over the server's: 0 bytes is no limit...
        set_quota(&app, ALICE, None, Some(0)).await;
        let r = stranger_writes(&app, 3, ALICE, "Small.").await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        // ... and 3 messages is three.
        set_quota(&app, ALICE, Some(3), Some(0)).await;
        assert!(rcpt_reply(&app, ALICE).await.starts_with("452 4.2.2"));
        assert_eq!(app.held().await.len(), 3);
    }
);

on_both_backends!(
    retention_purges_old_outbound_mail_challenges_and_activity_but_keeps_what_is_needed,
    |backend| async move {
        let app = TestApp::spawn_with(backend, |c| {
            c.challenge.keep_activity = HumanDuration(Duration::from_secs(30 * DAY as u64));
        })
        .await;
        app.challenge_on(ALICE).await;
        let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
        s.keep_days = 60;
        app.store.update_mailbox_settings(&s).await.unwrap();

        // Day 0: three strangers are held and challenged; the challenges go out.
        for n in 0..3 {
            let r = stranger_writes(&app, n, ALICE, "Hello.").await;
            assert!(r.starts_with("250 2.0.0"), "{r}");
        }
        assert_eq!(app.outbound.run_once().await.unwrap(), 3);
        // s0 answers: its mail is released and its challenge verified; the
        // verifyreleased notice goes out too.
        let token = app.challenges_to("s0@example.org").remove(0).token;
        let (status, _) = app.http("POST", &format!("/verify/{token}")).await;
        assert_eq!(status, 200);
        assert_eq!(app.outbound.run_once().await.unwrap(), 1);
        // s3's challenge stays queued: the outbound worker does not run again.
        let r = stranger_writes(&app, 3, ALICE, "Hello.").await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
        let activity = rows(&app, "activity").await;
        assert_eq!(
            (
                rows(&app, "outbound_messages").await,
                rows(&app, "challenges").await,
                rows(&app, "held_messages").await,
            ),
            (5, 4, 3)
        );
        assert!(activity >= 10, "{activity}");

        // Nothing is younger than its retention yet.
        app.clock.advance_secs(29 * DAY);
        let swept = app.quarantine.sweep_once().await.unwrap();
        assert_eq!(
            (
                swept.outbound_purged,
                swept.challenges_purged,
                swept.activity_purged
            ),
            (0, 0, 0)
        );

        // Day 31: the sent mail, the answered challenge and the old
        // activity lines go. The queued challenge mail and the open
        // challenges (their held mail is kept 60 days) stay.
        app.clock.advance_secs(2 * DAY);
        let swept = app.quarantine.sweep_once().await.unwrap();
        assert_eq!(
            (
                swept.outbound_purged,
                swept.challenges_purged,
                swept.activity_purged as i64
            ),
            (4, 1, activity)
        );
        let outbound = app.store.list_outbound().await.unwrap();
        assert_eq!(outbound.len(), 1);
        assert_eq!(
            (outbound[0].state, outbound[0].rcpt.as_str()),
            (OutboundState::Queued, "s3@example.org")
        );
        assert_eq!(rows(&app, "challenges").await, 3);
        assert_eq!(rows(&app, "activity").await, 0);
        assert_eq!(app.held().await.len(), 3);

        // Day 61: the held mail expires and closes its challenges; those
        // nothing refers to go in the same pass, s3's stays while its
        // challenge mail is queued.
        app.clock.advance_secs(30 * DAY);
        let swept = app.quarantine.sweep_once().await.unwrap();
        assert_eq!(
            (
                swept.expired,
                swept.challenges_expired,
                swept.challenges_purged
            ),
            (3, 3, 2)
        );
        let left: Vec<String> = sqlx::query_scalar("SELECT sender FROM challenges")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
        assert_eq!(left, ["s3@example.org"]);
        assert_eq!(rows(&app, "outbound_messages").await, 1);
    }
);

/// A SQLite data directory with example.test and alice, for the CLI.
struct Admin {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl AdminCommands for Admin {
    fn config_path(&self) -> &Path {
        &self.config
    }
}

impl Admin {
    fn new(extra: &str) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let config = write_test_config(dir.path(), "", extra);
        let admin = Admin { _dir: dir, config };
        admin.ok(&["domain", "add", "example.test"]);
        admin.ok(&["mailbox", "add", ALICE, "--no-password"]);
        admin
    }
}

#[test]
fn quotas_are_set_and_shown_and_bad_values_are_refused_by_name() {
    let admin = Admin::new("");
    let shown = admin.ok(&["mailbox", "show", ALICE]);
    assert!(
        shown.ends_with(
            "held: 0\nheld-bytes: 0\nquarantine-max-messages: 10000 (default)\n\
             quarantine-max-bytes: 500M (default)\n"
        ),
        "{shown}"
    );
    let out = admin.ok(&[
        "mailbox",
        "set",
        ALICE,
        "--quarantine-max-messages",
        "250",
        "--quarantine-max-bytes",
        "200M",
    ]);
    assert!(
        out.contains("  quarantine-max-messages: 250 (was 10000 (default))\n"),
        "{out}"
    );
    assert!(
        out.contains("  quarantine-max-bytes: 200M (was 500M (default))\n"),
        "{out}"
    );
    let shown = admin.ok(&["mailbox", "show", ALICE]);
    assert!(
        shown.ends_with("quarantine-max-messages: 250\nquarantine-max-bytes: 200M\n"),
        "{shown}"
    );

    // Refused by name, and nothing changes: not even the good option beside it.
    for (option, value, named) in [
        ("--quarantine-max-bytes", "500", "500 is less than 1M"),
        ("--quarantine-max-bytes", "lots", "\"lots\" is not a size"),
        ("--quarantine-max-bytes", "-1M", "\"-1M\" is not a size"),
        ("--quarantine-max-bytes", "9000000000G", "is too large"),
        (
            "--quarantine-max-messages",
            "-1",
            "expected a number of messages",
        ),
        (
            "--quarantine-max-messages",
            "many",
            "expected a number of messages",
        ),
    ] {
        let arg = format!("{option}={value}");
        let all = ["mailbox", "set", ALICE, "--keep-days", "30", &arg];
        let out = admin.refused(&all, &[1, 2]);
        assert!(out.stderr.contains(named), "{arg}: {out:?}");
        assert!(out.stderr.contains(option), "{arg}: {out:?}");
    }
    assert_eq!(admin.ok(&["mailbox", "show", ALICE]), shown);

    // 0 is no limit; default goes back to the server's.
    admin.ok(&["mailbox", "set", ALICE, "--quarantine-max-messages", "0"]);
    let out = admin.ok(&["mailbox", "set", ALICE, "--quarantine-max-bytes", "default"]);
    assert!(
        out.contains("  quarantine-max-bytes: 500M (default) (was 200M)\n"),
        "{out}"
    );
    let shown = admin.ok(&["mailbox", "show", ALICE]);
    assert!(
        shown
            .ends_with("quarantine-max-messages: no limit\nquarantine-max-bytes: 500M (default)\n"),
        "{shown}"
    );
}

#[test]
fn retention_and_quota_keys_are_checked_by_name() {
    for (extra, named) in [
        (
            "[challenge]\nkeep_outbound = \"1d\"\n",
            "challenge.keep_outbound: 1d is shorter than 2d",
        ),
        (
            "[challenge]\nkeep_challenges = \"36h\"\n",
            "challenge.keep_challenges: 36h is shorter than 2d",
        ),
        ("[challenge]\nkeep_activity = \"1y\"\n", "unknown unit"),
        (
            "[challenge]\nquarantine_max_bytes = 1000\n",
            "challenge.quarantine_max_bytes: 1000 is less than 1M",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_test_config(dir.path(), "", extra);
        let out = run_boxtrap(&config, &["check-config"], None);
        assert!(!out.success, "{extra}: {out:?}");
        assert!(out.stderr.contains(named), "{extra}: {out:?}");
    }
    // The environment is checked the same way.
    let dir = tempfile::tempdir().unwrap();
    let config = write_test_config(dir.path(), "", "");
    let mut cmd = boxtrap_command();
    cmd.arg("--config")
        .arg(&config)
        .arg("check-config")
        .env("BOXTRAP_CHALLENGE_KEEP_OUTBOUND", "47h");
    let out = run_command(cmd, None);
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("challenge.keep_outbound: 47h is shorter than 2d"),
        "{out:?}"
    );
    // Good values are shown with the effective settings.
    let out = run_boxtrap(&config, &["check-config"], None);
    assert!(out.success, "{out:?}");
    for line in [
        "keep_outbound = \"30d\"",
        "keep_challenges = \"30d\"",
        "keep_activity = \"90d\"",
        "quarantine_max_messages = 10000",
        "quarantine_max_bytes = \"500M\"",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
}
