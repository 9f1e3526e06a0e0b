//! Whitelist by association under attack (issue 10, item 2): an allowed
//! sender's mail with 20,000 `Cc:` addresses adds nobody while the setting
//! is off (its default) and at most `challenge.max_associates_per_message`
//! when it is on, each with an activity line naming the message; a forged
//! `From:` or envelope adds nobody; association stops at
//! `challenge.max_rules_per_list`, and so do `list add` and `list import`,
//! changing nothing; the migration turns the old default off.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::config::Config;
use boxtrap::policy::rules::ListKind;
use boxtrap::store::Store;
use boxtrap::store::held::{Activity, ActivityAction};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.org";
const BOB_RULE: &str = r"from ^bob@example\.org$";

/// Alice with challenge-response on and bob on her allow list; bob's
/// domain publishes SPF passing the test clients, so mail from bob is
/// authenticated when its envelope sender is in example.org.
async fn alice_allowing_bob(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let app = TestApp::spawn_with_dns(backend, &[spf("example.org")], tweak).await;
    app.challenge_on(ALICE).await;
    app.add_rule(ALICE, ListKind::Allow, BOB_RULE).await;
    app
}

async fn association(app: &TestApp, on: bool) {
    let mut s = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
    s.whitelist_by_association = on;
    app.store.update_mailbox_settings(&s).await.unwrap();
}

/// A message from `from` to alice, with `cc` as its `Cc:` addresses, one
/// folded line each.
fn group_mail(from: &str, to: &[&str], cc: &[String], message_id: &str) -> String {
    let mut text = format!("From: {from}\r\nTo: {}\r\n", to.join(", "));
    if !cc.is_empty() {
        text.push_str(&format!("Cc: {}\r\n", cc.join(",\r\n ")));
    }
    text.push_str(&format!(
        "Subject: team lunch\r\nMessage-ID: {message_id}\r\n\r\nhi all\r\n"
    ));
    text
}

/// `n` addresses at evil.example, numbered from `from`.
fn attackers(from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("attacker{i}@evil.example"))
        .collect()
}

/// One message from `who` (envelope and `From:`) to alice; the reply to DATA.
async fn write_to_alice(app: &TestApp, who: &str, id: &str) -> String {
    let text =
        format!("From: {who}\r\nTo: {ALICE}\r\nSubject: hello\r\nMessage-ID: <{id}>\r\n\r\nhi\r\n");
    send_raw(app, who, ALICE, &text).await
}

async fn activity(app: &TestApp) -> Vec<Activity> {
    let id = app.mailbox_id(ALICE).await;
    app.store.activity(id, 1000).await.unwrap()
}

/// The activity lines that put someone on the allow list by association.
async fn associated(app: &TestApp) -> Vec<Activity> {
    activity(app)
        .await
        .into_iter()
        .filter(|a| {
            a.action == ActivityAction::Allowed
                && a.detail.starts_with("whitelisted by association")
        })
        .collect()
}

on_both_backends!(
    twenty_thousand_cc_addresses_add_nobody_while_the_setting_is_off_its_default,
    |backend| async move {
        let app = alice_allowing_bob(backend, |_| {}).await;
        let settings = app.store.mailbox_settings_by_address(ALICE).await.unwrap();
        assert!(!settings.whitelist_by_association, "off by default");

        let cc = attackers(0, 20_000);
        let mail = group_mail(BOB, &[ALICE], &cc, "<attack@example.org>");
        let r = send_raw(&app, BOB, ALICE, &mail).await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.messages(ALICE).len(), 1, "bob's mail is delivered");
        assert_eq!(app.allow_list(ALICE).await, [BOB_RULE]);
        assert!(associated(&app).await.is_empty());

        // The attacker's next mail is held, not delivered; evil.example
        // publishes no SPF or DKIM, so no challenge goes there either.
        let r = write_to_alice(&app, "attacker0@evil.example", "next@evil.example").await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.messages(ALICE).len(), 1);
        let held = app.held().await;
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].reason, "not-authenticated");
        app.outbound.run_once().await.unwrap();
        assert!(app.challenges_to("attacker0@evil.example").is_empty());
    }
);

on_both_backends!(
    twenty_thousand_cc_addresses_add_at_most_the_cap_each_recorded_with_the_message,
    |backend| async move {
        let app = alice_allowing_bob(backend, |_| {}).await;
        association(&app, true).await;

        let cc = attackers(0, 20_000);
        let mail = group_mail(BOB, &[ALICE], &cc, "<attack@example.org>");
        let r = send_raw(&app, BOB, ALICE, &mail).await;
        assert!(r.starts_with("250"), "{r}");
        let queue_id = queue_id_of(&r);
        assert_eq!(app.messages(ALICE).len(), 1);

        // The default cap: the first ten Cc addresses, in header order.
        let allow = app.allow_list(ALICE).await;
        assert_eq!(allow.len(), 11, "{allow:?}");
        for i in 0..10 {
            let rule = format!(r"from ^attacker{i}@evil\.example$");
            assert!(allow.contains(&rule), "{rule} in {allow:?}");
        }
        let lines = associated(&app).await;
        assert_eq!(lines.len(), 10, "{lines:#?}");
        for line in &lines {
            assert!(line.sender.starts_with("attacker"), "{line:?}");
            assert_eq!(
                line.detail,
                format!(
                    "whitelisted by association: in the Cc of message <attack@example.org> \
                     (queue id {queue_id}), from bob@example.org"
                )
            );
        }
        let left_off: Vec<Activity> = activity(&app)
            .await
            .into_iter()
            .filter(|a| a.detail.contains("left off"))
            .collect();
        assert_eq!(left_off.len(), 1, "{left_off:#?}");
        assert_eq!(left_off[0].sender, BOB);
        assert_eq!(
            left_off[0].detail,
            format!(
                "whitelist by association: 10 added, 19990 more To/Cc address(es) of message \
                 <attack@example.org> (queue id {queue_id}) left off: at most 10 per message \
                 (challenge.max_associates_per_message)"
            )
        );

        // One that made it in is delivered; the eleventh is held.
        let r = write_to_alice(&app, "attacker9@evil.example", "a9@evil.example").await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.messages(ALICE).len(), 2);
        let r = write_to_alice(&app, "attacker10@evil.example", "a10@evil.example").await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.messages(ALICE).len(), 2);
        assert_eq!(app.held().await.len(), 1);

        // The same list again adds the next ten, no more.
        let mail = group_mail(BOB, &[ALICE], &cc, "<attack2@example.org>");
        let r = send_raw(&app, BOB, ALICE, &mail).await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.allow_list(ALICE).await.len(), 21);
    }
);

on_both_backends!(
    a_forged_from_or_envelope_adds_nobody,
    |backend| async move {
        let app = alice_allowing_bob(backend, |_| {}).await;
        association(&app, true).await;
        let cases = [
            // (envelope sender, From:, why nobody is added)
            (
                "mallory@evil.example",
                BOB,
                "the envelope's domain is not bob's",
            ),
            (
                BOB,
                "mallory@evil.example",
                "the allowed address is only the envelope",
            ),
            ("", BOB, "the null sender"),
            (
                "bob@mail.example.org",
                BOB,
                "a subdomain that publishes no SPF",
            ),
        ];
        for (i, (env, from, why)) in cases.into_iter().enumerate() {
            let cc = vec![format!("friend{i}@evil.example")];
            let mail = group_mail(from, &[ALICE], &cc, &format!("<forged{i}@evil.example>"));
            let r = send_raw(&app, env, ALICE, &mail).await;
            assert!(r.starts_with("250"), "{why}: {r}");
            assert_eq!(
                app.messages(ALICE).len(),
                i + 1,
                "{why}: delivered as allowed"
            );
            assert_eq!(app.allow_list(ALICE).await, [BOB_RULE], "{why}");
        }
        assert!(associated(&app).await.is_empty());

        // An SPF pass for bob's domain (the envelope is a bounce address
        // there) authenticates From: (DMARC's relaxed alignment): carol is
        // added.
        let cc = vec!["carol@example.net".to_string()];
        let mail = group_mail(BOB, &[ALICE], &cc, "<real@example.org>");
        let r = send_raw(&app, "bob-bounces@example.org", ALICE, &mail).await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(
            app.allow_list(ALICE).await,
            [BOB_RULE, r"from ^carol@example\.net$"]
        );
    }
);

#[tokio::test]
async fn addresses_that_reach_the_mailbox_or_are_allowed_already_are_not_added() {
    let app = alice_allowing_bob(Backend::Sqlite, |_| {}).await;
    association(&app, true).await;
    app.add_rule(ALICE, ListKind::Allow, r"from .*@partner\.example")
        .await;
    // team@ is an alias of alice and bob; alice+lunch@ reaches alice.
    let to = [ALICE, "team@example.test", "Alice+Lunch@example.test"];
    let cc = vec![
        "dave@partner.example".to_string(),
        BOB.to_string(),
        "carol@example.net".to_string(),
        "carol@example.net".to_string(),
    ];
    let mail = group_mail(BOB, &to, &cc, "<team@example.org>");
    let r = send_raw(&app, BOB, ALICE, &mail).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(
        app.allow_list(ALICE).await,
        [
            BOB_RULE,
            r"from .*@partner\.example",
            r"from ^carol@example\.net$"
        ]
    );
    let lines = associated(&app).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0].sender, "carol@example.net");
}

on_both_backends!(
    association_stops_at_the_list_limit_and_says_so,
    |backend| async move {
        let app = alice_allowing_bob(backend, |c| {
            c.challenge.max_associates_per_message = 3;
            c.challenge.max_rules_per_list = 5;
        })
        .await;
        association(&app, true).await;

        let mail = group_mail(BOB, &[ALICE], &attackers(0, 20), "<one@example.org>");
        send_raw(&app, BOB, ALICE, &mail).await;
        assert_eq!(app.allow_list(ALICE).await.len(), 4, "the cap of 3");

        let mail = group_mail(BOB, &[ALICE], &attackers(100, 20), "<two@example.org>");
        let r = send_raw(&app, BOB, ALICE, &mail).await;
        assert!(r.starts_with("250"), "{r}");
        assert_eq!(app.allow_list(ALICE).await.len(), 5, "the list is full");
        let full: Vec<Activity> = activity(&app)
            .await
            .into_iter()
            .filter(|a| a.detail.contains("<two@example.org>") && a.detail.contains("left off"))
            .collect();
        assert_eq!(full.len(), 1, "{full:#?}");
        assert!(
            full[0]
                .detail
                .starts_with("whitelist by association: 1 added, 19 more")
                && full[0].detail.ends_with(
                    "left off: the allow list is full (5 rules, \
                     challenge.max_rules_per_list is 5)"
                ),
            "{}",
            full[0].detail
        );

        let mail = group_mail(BOB, &[ALICE], &attackers(200, 20), "<three@example.org>");
        send_raw(&app, BOB, ALICE, &mail).await;
        assert_eq!(app.allow_list(ALICE).await.len(), 5);
        assert_eq!(
            app.messages(ALICE).len(),
            3,
            "bob's mail is still delivered"
        );
    }
);

/// Runs the real `boxtrap` against `config` off the runtime's thread.
async fn boxtrap(config: &std::path::Path, args: &[&str]) -> CmdOutput {
    let config = config.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_boxtrap(&config, &args, None)
    })
    .await
    .unwrap()
}

on_both_backends!(
    list_add_and_import_refuse_beyond_the_limit_and_change_nothing,
    |backend| async move {
        let mut url = String::new();
        let app = TestApp::spawn_with(backend, |c| url = c.database.url.clone()).await;
        let dir = app.dir.path();
        let config = write_test_config(dir, &url, "[challenge]\nmax_rules_per_list = 3\n");
        let ok = |out: CmdOutput| {
            assert!(out.success, "{out:#?}");
            out.stdout
        };
        let refused = |out: CmdOutput| {
            assert_eq!(out.code, Some(1), "{out:#?}");
            assert_eq!(out.stdout, "", "{out:#?}");
            out.stderr
        };
        for a in ["a@x.example", "b@x.example", "c@x.example"] {
            ok(boxtrap(&config, &["list", "add", ALICE, "allow", a]).await);
        }
        let show = |list: &'static str| {
            let config = config.clone();
            async move { ok(boxtrap(&config, &["list", "show", ALICE, list]).await) }
        };
        let three = show("allow").await;
        assert_eq!(three.lines().count(), 3, "{three}");

        let e = refused(boxtrap(&config, &["list", "add", ALICE, "allow", "d@x.example"]).await);
        assert!(
            e.contains(
                "the allow list of alice@example.test is full: it holds 3 rules, and \
                 challenge.max_rules_per_list is 3"
            ) && e.contains("nothing was added"),
            "{e}"
        );
        assert_eq!(show("allow").await, three);
        // A rule the full list already has is no error; another list has room.
        let out = ok(boxtrap(&config, &["list", "add", ALICE, "allow", "a@x.example"]).await);
        assert!(out.contains("already has"), "{out}");
        ok(boxtrap(&config, &["list", "add", ALICE, "block", "from spam"]).await);

        let two_more = dir.join("two-more.txt");
        std::fs::write(&two_more, "from ^a@x\\.example$\nfrom ^e@x\\.example$\n").unwrap();
        let path = two_more.display().to_string();
        let e = refused(boxtrap(&config, &["list", "import", ALICE, "allow", &path]).await);
        assert!(
            e.contains(
                "the allow list of alice@example.test would hold 4 rules, over \
                 challenge.max_rules_per_list (3); nothing was imported"
            ),
            "{e}"
        );
        assert_eq!(show("allow").await, three);

        let four = dir.join("four.txt");
        std::fs::write(&four, "from ^1@y\\.example$\nfrom ^2@y\\.example$\nfrom ^3@y\\.example$\nfrom ^4@y\\.example$\n").unwrap();
        let path = four.display().to_string();
        let e = refused(
            boxtrap(
                &config,
                &["list", "import", ALICE, "allow", "--replace", &path],
            )
            .await,
        );
        assert!(e.contains("would hold 4 rules"), "{e}");
        assert_eq!(show("allow").await, three);

        // Replacing with as many rules as the limit is fine.
        let replacement = dir.join("three.txt");
        std::fs::write(
            &replacement,
            "from ^a@x\\.example$\nfrom ^1@y\\.example$\nfrom ^2@y\\.example$\n",
        )
        .unwrap();
        let path = replacement.display().to_string();
        ok(boxtrap(
            &config,
            &["list", "import", ALICE, "allow", "--replace", &path],
        )
        .await);
        assert_eq!(
            show("allow").await,
            "from ^a@x\\.example$\nfrom ^1@y\\.example$\nfrom ^2@y\\.example$\n"
        );
    }
);

#[tokio::test]
async fn a_limit_out_of_range_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (value, named) in [
        (
            "0",
            "challenge.max_rules_per_list: 0 is not between 1 and 25000",
        ),
        (
            "25001",
            "challenge.max_rules_per_list: 25001 is not between 1 and 25000",
        ),
    ] {
        let extra = format!("[challenge]\nmax_rules_per_list = {value}\n");
        let config = write_test_config(dir.path(), "", &extra);
        let out = boxtrap(&config, &["check-config"]).await;
        assert!(!out.success, "{out:#?}");
        assert!(out.stderr.contains(named), "{out:#?}");
    }
}

/// Runs the migrations before 0004 only (copied to `into`), as a server
/// of the old version left the database.
async fn migrate_to_the_old_default(store: &Store, backend: Backend, into: &std::path::Path) {
    let dir = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0004" {
            std::fs::copy(&path, into.join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(into.to_owned()).await.unwrap();
    migrator.run(store.pool()).await.unwrap();
}

on_both_backends!(
    the_migration_turns_the_old_default_off_in_existing_mailboxes,
    |backend| async move {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("old.db").display()),
            Backend::Postgres => boxtrap::testing::fresh_postgres_database().await,
        };
        let store = Store::connect(&url, 2).await.unwrap();
        migrate_to_the_old_default(&store, backend, &dir.path().join("old")).await;
        let now = boxtrap::clock::Timestamp::from_secs(T0);
        let domain = boxtrap::address::Domain::parse("example.test").unwrap();
        store.add_domain(&domain, now).await.unwrap();
        // As the old version made them (today's add_mailbox writes columns
        // later migrations add).
        for m in [ALICE, "bob@example.test"] {
            sqlx::query(
                "INSERT INTO mailboxes (domain_id, address, password_hash, created_at)
                 SELECT id, $1, '', $2 FROM domains WHERE name = 'example.test'",
            )
            .bind(m)
            .bind(now.0)
            .execute(store.pool())
            .await
            .unwrap();
        }
        let on: Vec<i64> =
            sqlx::query_scalar("SELECT whitelist_by_association FROM mailboxes ORDER BY address")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(on, [1, 1], "the old default");

        store.migrate().await.unwrap();
        for m in [ALICE, "bob@example.test"] {
            let s = store.mailbox_settings_by_address(m).await.unwrap();
            assert!(!s.whitelist_by_association, "{m}");
        }
        // A mailbox made after the migration starts with it off; turning
        // it on still works.
        store
            .add_mailbox(&addr_of("carol@example.test"), "", now)
            .await
            .unwrap();
        let mut carol = store
            .mailbox_settings_by_address("carol@example.test")
            .await
            .unwrap();
        assert!(!carol.whitelist_by_association);
        carol.whitelist_by_association = true;
        store.update_mailbox_settings(&carol).await.unwrap();
        let carol = store.mailbox_settings(carol.id).await.unwrap();
        assert!(carol.whitelist_by_association);
        store.close().await;
    }
);
