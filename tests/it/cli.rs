//! The admin command line, driven as an administrator would: the real
//! binary, a config file, exit codes, stdout and stderr.

use crate::support::*;
use boxtrap::store::Store;
use std::path::{Path, PathBuf};

/// A temp data directory with a config file pointing at it (SQLite).
struct Cli {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl AdminCommands for Cli {
    fn config_path(&self) -> &Path {
        &self.config
    }
}

impl Cli {
    fn new() -> Cli {
        Cli::with_extra("")
    }

    fn with_extra(extra: &str) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = write_test_config(dir.path(), "", extra);
        Cli { dir, config }
    }

    /// Runs a command that must be refused (exit 1); returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        self.refused(args, &[1]).stderr
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("boxtrap.db").display())
    }

    async fn password_hash(&self, address: &str) -> Option<String> {
        let store = Store::open(&self.database_url(), 1).await.unwrap();
        let h = store.password_hash(&addr_of(address)).await.unwrap();
        store.close().await;
        h
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn domains_are_added_listed_and_removed_and_bad_ones_refused_by_name() {
    let cli = Cli::new();
    assert_eq!(cli.ok(&["domain", "list"]), "");
    assert_eq!(
        cli.ok(&["domain", "add", "example.test"]),
        "added domain example.test\n"
    );
    assert_eq!(
        lines(&cli.ok(&["domain", "list"])),
        ["example.test  mailboxes=0 aliases=0"]
    );

    let err = cli.fails(&["domain", "add", "bad_domain!"]);
    assert!(err.contains("bad_domain!"), "{err}");
    let err = cli.fails(&["domain", "add", "example.test"]);
    assert!(err.contains("already exists"), "{err}");
    // The same domain in another spelling is the same domain.
    let err = cli.fails(&["domain", "add", "EXAMPLE.Test."]);
    assert!(err.contains("already exists"), "{err}");
    let err = cli.fails(&["domain", "add", "[192.0.2.1]"]);
    assert!(err.contains("[192.0.2.1]"), "{err}");
    assert!(err.contains("address literal"), "{err}");
    assert_eq!(
        lines(&cli.ok(&["domain", "list"])),
        ["example.test  mailboxes=0 aliases=0"],
        "refused commands changed nothing"
    );

    // A domain with a mailbox cannot go, and says why.
    cli.ok(&["mailbox", "add", "alice@example.test", "--no-password"]);
    assert_eq!(
        lines(&cli.ok(&["domain", "list"])),
        ["example.test  mailboxes=1 aliases=0"]
    );
    let err = cli.fails(&["domain", "remove", "example.test"]);
    assert!(err.contains("example.test"), "{err}");
    assert!(err.contains("mailbox"), "the reason is named: {err}");
    assert!(err.contains("remove them first"), "{err}");
    assert!(cli.ok(&["domain", "list"]).contains("example.test"));

    cli.ok(&["mailbox", "remove", "alice@example.test"]);
    assert_eq!(
        cli.ok(&["domain", "remove", "example.test"]),
        "removed domain example.test\n"
    );
    assert_eq!(cli.ok(&["domain", "list"]), "");
    let err = cli.fails(&["domain", "remove", "example.test"]);
    assert!(err.contains("no such domain"), "{err}");
}

#[tokio::test]
async fn mailboxes_take_passwords_from_stdin_and_refuse_bad_input() {
    let cli = Cli::new();
    cli.ok(&["domain", "add", "example.test"]);

    // Unknown domain: refused, with the command that would fix it.
    let err = cli.fails(&["mailbox", "add", "alice@nowhere.test", "--no-password"]);
    assert!(err.contains("nowhere.test"), "{err}");
    assert!(err.contains("boxtrap domain add nowhere.test"), "{err}");

    // Not an address: refused, naming it.
    let err = cli.fails(&["mailbox", "add", "not an address", "--no-password"]);
    assert!(err.contains("not an address"), "{err}");
    let err = cli.fails(&["mailbox", "add", "alice@@example.test", "--no-password"]);
    assert!(err.contains("alice@@example.test"), "{err}");

    let err = cli.fails(&[
        "mailbox",
        "add",
        "\"john doe\"@example.test",
        "--no-password",
    ]);
    assert!(err.contains("john doe"), "{err}");
    assert!(err.contains("plain local part"), "{err}");

    // No terminal to ask on, and no --password-stdin: refused, with the fix.
    let err = cli.fails(&["mailbox", "add", "alice@example.test"]);
    assert!(err.contains("--password-stdin"), "{err}");
    // An empty password is refused too.
    let out = cli.run_stdin(
        &["mailbox", "add", "alice@example.test", "--password-stdin"],
        "\n",
    );
    assert!(!out.success, "{out:#?}");
    assert!(out.stderr.contains("password is empty"), "{out:#?}");
    assert_eq!(cli.ok(&["mailbox", "list"]), "");

    // Too short a password: refused, and no mailbox half-made.
    let out = cli.run_stdin(
        &["mailbox", "add", "alice@example.test", "--password-stdin"],
        "short\n",
    );
    assert!(!out.success, "{out:#?}");
    assert!(out.stderr.contains("shorter than 8"), "{out:#?}");
    assert_eq!(cli.ok(&["mailbox", "list"]), "");
    assert_eq!(cli.password_hash("alice@example.test").await, None);

    // The password is the first line of stdin, without its line ending.
    let out = cli.run_stdin(
        &["mailbox", "add", "alice@example.test", "--password-stdin"],
        "correct horse battery\r\nsecond line is ignored\n",
    );
    assert!(out.success, "{out:#?}");
    assert!(
        out.stdout.starts_with("added mailbox alice@example.test"),
        "{out:#?}"
    );
    let first = cli.password_hash("alice@example.test").await.unwrap();
    assert!(first.starts_with("$argon2id$"), "{first}");
    assert!(boxtrap::password::verify("correct horse battery", &first));
    assert!(!boxtrap::password::verify("correct horse", &first));

    // Without a password: created, but no password opens it.
    cli.ok(&["mailbox", "add", "Bob@Example.TEST", "--no-password"]);
    let bob = cli.password_hash("bob@example.test").await.unwrap();
    assert!(!boxtrap::password::verify("", &bob));
    assert!(!boxtrap::password::verify("correct horse battery", &bob));

    let err = cli.fails(&["mailbox", "add", "alice@example.test", "--no-password"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        lines(&cli.ok(&["mailbox", "list"])),
        ["alice@example.test", "bob@example.test"]
    );
    cli.ok(&["domain", "add", "other.test"]);
    cli.ok(&["mailbox", "add", "carol@other.test", "--no-password"]);
    assert_eq!(
        lines(&cli.ok(&["mailbox", "list", "--domain", "other.test"])),
        ["carol@other.test"]
    );

    // passwd: a new hash that takes the new password and not the old one.
    let out = cli.run_stdin(
        &[
            "mailbox",
            "passwd",
            "alice@example.test",
            "--password-stdin",
        ],
        "tr0ub4dor&3 staple\n",
    );
    assert!(out.success, "{out:#?}");
    let second = cli.password_hash("alice@example.test").await.unwrap();
    assert_ne!(first, second);
    assert!(boxtrap::password::verify("tr0ub4dor&3 staple", &second));
    assert!(!boxtrap::password::verify("correct horse battery", &second));
    // A refused change keeps the old hash.
    let out = cli.run_stdin(
        &[
            "mailbox",
            "passwd",
            "alice@example.test",
            "--password-stdin",
        ],
        "2short\n",
    );
    assert!(!out.success, "{out:#?}");
    assert_eq!(
        cli.password_hash("alice@example.test").await.unwrap(),
        second
    );
    let out = cli.run_stdin(
        &[
            "mailbox",
            "passwd",
            "nobody@example.test",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    assert!(!out.success, "{out:#?}");
    assert!(
        out.stderr.contains("no such mailbox: nobody@example.test"),
        "{out:#?}"
    );

    // remove: the mailbox and its aliases go; other aliases stay.
    cli.ok(&[
        "alias",
        "add",
        "team@example.test",
        "alice@example.test",
        "bob@example.test",
    ]);
    cli.ok(&["alias", "add", "boss@example.test", "alice@example.test"]);
    assert!(
        cli.ok(&["mailbox", "remove", "alice@example.test"])
            .starts_with("removed mailbox alice@example.test")
    );
    assert_eq!(
        lines(&cli.ok(&["mailbox", "list"])),
        ["bob@example.test", "carol@other.test"]
    );
    assert_eq!(cli.password_hash("alice@example.test").await, None);
    assert_eq!(
        lines(&cli.ok(&["alias", "list"])),
        ["team@example.test -> bob@example.test"]
    );
    let err = cli.fails(&["mailbox", "remove", "alice@example.test"]);
    assert!(err.contains("alice@example.test"), "{err}");
}

#[test]
fn aliases_deliver_only_to_local_mailboxes() {
    let cli = Cli::new();
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", "alice@example.test", "--no-password"]);
    cli.ok(&["mailbox", "add", "bob@example.test", "--no-password"]);

    let err = cli.fails(&["alias", "add", "team@example.test", "nobody@example.test"]);
    assert!(err.contains("nobody@example.test"), "{err}");
    assert!(err.contains("not a local mailbox"), "{err}");
    let err = cli.fails(&["alias", "add", "team@example.test", "someone@example.org"]);
    assert!(err.contains("not a local mailbox"), "{err}");
    assert_eq!(cli.ok(&["alias", "list"]), "", "nothing half-made");

    assert_eq!(
        cli.ok(&[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "bob@example.test"
        ]),
        "added alias team@example.test -> alice@example.test, bob@example.test\n"
    );
    assert_eq!(
        lines(&cli.ok(&["alias", "list"])),
        ["team@example.test -> alice@example.test, bob@example.test"]
    );
    assert_eq!(
        lines(&cli.ok(&["domain", "list"])),
        ["example.test  mailboxes=2 aliases=1"],
        "one alias, however many targets"
    );
    // A domain that only has an alias cannot go either.
    cli.ok(&["domain", "add", "other.test"]);
    cli.ok(&[
        "alias",
        "add",
        "postmaster@other.test",
        "alice@example.test",
    ]);
    let err = cli.fails(&["domain", "remove", "other.test"]);
    assert!(err.contains("alias"), "the reason is named: {err}");
    cli.ok(&["alias", "remove", "postmaster@other.test"]);
    cli.ok(&["domain", "remove", "other.test"]);
    // An alias cannot shadow a mailbox.
    let err = cli.fails(&["alias", "add", "alice@example.test", "bob@example.test"]);
    assert!(err.contains("already a mailbox"), "{err}");

    cli.ok(&["alias", "remove", "team@example.test", "bob@example.test"]);
    assert_eq!(
        lines(&cli.ok(&["alias", "list"])),
        ["team@example.test -> alice@example.test"]
    );
    cli.ok(&["alias", "remove", "team@example.test"]);
    assert_eq!(cli.ok(&["alias", "list"]), "");
}

#[test]
fn queue_commands_work_on_an_empty_queue_and_refuse_bad_ids() {
    let cli = Cli::new();
    assert_eq!(cli.ok(&["queue", "count"]), "0\n");
    assert_eq!(cli.ok(&["queue", "list"]), "");
    assert!(
        cli.ok(&["queue", "run"])
            .starts_with("0 pending, 0 attempted")
    );
    let err = cli.fails(&["queue", "delete", "not-an-id"]);
    assert!(err.contains("not-an-id"), "{err}");
    assert!(err.contains("invalid queue id"), "{err}");
    let err = cli.fails(&["queue", "delete", "1wH3kL-0004dR-2k"]);
    assert!(err.contains("no queued message 1wH3kL-0004dR-2k"), "{err}");
}

#[test]
fn migrate_creates_the_schema() {
    let cli = Cli::new();
    assert!(!cli.dir.path().join("boxtrap.db").exists());
    assert_eq!(cli.ok(&["migrate"]), "database schema is up to date\n");
    assert!(cli.dir.path().join("boxtrap.db").exists());
    // Again: nothing to do, still fine.
    cli.ok(&["migrate"]);
}

/// The effective settings `check-config` prints after its first line.
fn printed_settings(stdout: &str) -> toml::Table {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    assert!(first.contains("configuration OK"), "{stdout}");
    rest.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("check-config output is not TOML: {e}\n{stdout}"))
}

#[test]
fn check_config_accepts_a_good_file_and_prints_the_effective_settings() {
    let cli = Cli::new();
    let out = run_boxtrap(&cli.config, &["check-config"], None);
    assert!(out.success, "{out:#?}");
    let settings = printed_settings(&out.stdout);
    assert_eq!(settings["hostname"].as_str(), Some("mx.example.test"));
    assert_eq!(settings["smtp"]["max_recipients"].as_integer(), Some(100));
    // Valid, but worth knowing: no postmaster is configured.
    assert!(
        out.stdout
            .contains("# warning: smtp.postmaster is not set: RCPT TO:<Postmaster>"),
        "{out:#?}"
    );
    let mut cmd = boxtrap_command();
    cmd.arg("check-config")
        .arg(&cli.config)
        .env("BOXTRAP_SMTP_POSTMASTER", "alice@example.test");
    let out = run_command(cmd, None);
    assert!(out.success, "{out:#?}");
    assert!(
        !out.stdout.contains("smtp.postmaster is not set"),
        "{out:#?}"
    );

    // The file as an argument; an environment override shows up.
    let mut cmd = boxtrap_command();
    cmd.arg("check-config")
        .arg(&cli.config)
        .env("BOXTRAP_SMTP_MAX_RECIPIENTS", "7");
    let out = run_command(cmd, None);
    assert!(out.success, "{out:#?}");
    assert!(
        out.stdout
            .starts_with(&format!("# {}: configuration OK", cli.config.display())),
        "{out:#?}"
    );
    let settings = printed_settings(&out.stdout);
    assert_eq!(settings["smtp"]["max_recipients"].as_integer(), Some(7));
    assert_eq!(settings["hostname"].as_str(), Some("mx.example.test"));
}

#[test]
fn check_config_refuses_an_unknown_key_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[smtp]\nmax_recipents = 5\n").unwrap();
    let mut cmd = boxtrap_command();
    cmd.arg("check-config").arg(&path);
    let out = run_command(cmd, None);
    assert!(!out.success, "{out:#?}");
    assert!(out.stderr.contains("max_recipents"), "{out:#?}");
    assert!(!out.stdout.contains("configuration OK"), "{out:#?}");
    // A file that is not there is named too.
    let missing = dir.path().join("missing.toml");
    let mut cmd = boxtrap_command();
    cmd.arg("check-config").arg(&missing);
    let out = run_command(cmd, None);
    assert!(!out.success, "{out:#?}");
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "{out:#?}"
    );
    // An unknown key from the environment too.
    let cli = Cli::new();
    let mut cmd = boxtrap_command();
    cmd.arg("check-config")
        .arg(&cli.config)
        .env("BOXTRAP_SMTP_MAX_RECIPENTS", "7");
    let out = run_command(cmd, None);
    assert!(!out.success, "{out:#?}");
    assert!(out.stderr.contains("max_recipents"), "{out:#?}");
}

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

fn read_example_config() -> String {
    let path = example_config();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn the_example_config_passes_check_config() {
    let mut cmd = boxtrap_command();
    cmd.arg("check-config").arg(example_config());
    let out = run_command(cmd, None);
    assert!(out.success, "{out:#?}");
    assert!(out.stdout.contains("configuration OK"), "{out:#?}");
}

/// Every key of the default config, as (section, key): ("", "data_dir"),
/// ("", "smtp") for the section itself, ("smtp", "listen"), ...
fn default_config_keys() -> Vec<(String, String)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
        for (key, value) in table {
            out.push((prefix.to_owned(), key.clone()));
            if let toml::Value::Table(t) = value {
                let inner = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&inner, t, out);
            }
        }
    }
    let text = toml::to_string(&boxtrap::config::Config::default()).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mut out = Vec::new();
    walk("", &table, &mut out);
    out
}

/// A line without its leading whitespace and, if commented out, its `#`.
fn uncommented(line: &str) -> &str {
    let l = line.trim_start();
    l.strip_prefix('#').map(str::trim_start).unwrap_or(l)
}

/// `smtp` for a `[smtp]` or `# [smtp]` line.
fn section_header(line: &str) -> Option<&str> {
    let name = uncommented(line)
        .strip_prefix('[')?
        .trim_end()
        .strip_suffix(']')?
        .trim();
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    plain.then_some(name)
}

/// The keys config.example.toml documents, set or commented out, as
/// (section, key); section headers count as keys of their parent, with
/// `[smtp]` and `# [smtp]` both opening the section.
fn documented_keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(name) = section_header(line) {
            let (parent, key) = name.rsplit_once('.').unwrap_or(("", name));
            out.push((parent.to_owned(), key.to_owned()));
            section = name.to_owned();
            continue;
        }
        let l = uncommented(line);
        if let Some((key, _)) = l.split_once('=') {
            let key = key.trim_end();
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                out.push((section.clone(), key.to_owned()));
            }
        }
    }
    out
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

/// Keys of the default config that `text` does not document.
fn undocumented_keys(text: &str) -> Vec<String> {
    let documented = documented_keys(text);
    default_config_keys()
        .iter()
        .filter(|k| !documented.contains(k))
        .map(|(section, key)| dotted(section, key))
        .collect()
}

/// Keys and sections `text` documents that boxtrap does not have. Only
/// lines that are valid TOML once uncommented count, so prose in comments
/// is left alone.
fn stale_keys(text: &str) -> Vec<String> {
    let keys = default_config_keys();
    let mut section = String::new();
    let mut stale = Vec::new();
    for line in text.lines() {
        if let Some(name) = section_header(line) {
            section = name.to_owned();
            if !keys.iter().any(|(s, k)| s.is_empty() && *k == section) {
                stale.push(format!("[{section}]"));
            }
            continue;
        }
        if let Ok(t) = uncommented(line).parse::<toml::Table>() {
            for key in t.keys() {
                if !keys.iter().any(|(s, k)| *s == section && k == key) {
                    stale.push(dotted(&section, key));
                }
            }
        }
    }
    stale
}

#[test]
fn every_config_key_is_documented_in_the_example_config() {
    let keys = default_config_keys();
    assert!(keys.len() > 20, "walked too few keys: {keys:?}");
    let missing = undocumented_keys(&read_example_config());
    assert!(
        missing.is_empty(),
        "config.example.toml does not document (as `key =` or `# key =` in its section): {missing:?}"
    );
}

#[test]
fn the_example_config_documents_no_key_that_does_not_exist() {
    // The other direction: a commented-out `# key = value` for a key boxtrap
    // no longer has would mislead (uncommented ones fail check-config).
    let stale = stale_keys(&read_example_config());
    assert!(
        stale.is_empty(),
        "config.example.toml documents keys boxtrap does not have: {stale:?}"
    );
}

#[test]
fn the_values_set_in_the_example_config_are_the_defaults() {
    // The file promises "every key, with its default value": the keys it
    // sets (not the commented-out examples) must say what boxtrap does
    // without them.
    let example: toml::Table = read_example_config().parse().unwrap();
    let defaults: toml::Table = toml::to_string(&boxtrap::config::Config::default())
        .unwrap()
        .parse()
        .unwrap();
    let mut differ = Vec::new();
    for (key, value) in &example {
        match value {
            toml::Value::Table(section) => {
                for (k, v) in section {
                    let default = defaults.get(key).and_then(|d| d.get(k));
                    if default != Some(v) {
                        differ.push(format!("{key}.{k} = {v} (default: {default:?})"));
                    }
                }
            }
            v => {
                if defaults.get(key) != Some(v) {
                    differ.push(format!("{key} = {v} (default: {:?})", defaults.get(key)));
                }
            }
        }
    }
    assert!(
        differ.is_empty(),
        "config.example.toml gives values that are not the defaults: {differ:?}"
    );
}

#[test]
fn the_config_docs_checks_notice_drift() {
    // The two checks above, on a copy of the example that has drifted.
    let text = read_example_config();
    let drifted: String = text
        .lines()
        .filter(|l| !l.starts_with("max_errors =") && !l.starts_with("# reject_log ="))
        .map(|l| match l {
            "[smtp]" => "[smtp]\n# max_recipents = 5\n",
            l => l,
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    let drifted = drifted.replace("\n[web]", "\n[web]\n# colour = \"red\"");
    // Judged against the real file, so this test holds whatever the real
    // file's own state (the two tests above report that).
    let added = |check: fn(&str) -> Vec<String>, changed: &str| {
        let before = check(&text);
        let mut v: Vec<String> = check(changed)
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        added(undocumented_keys, &drifted),
        ["log.reject_log", "smtp.max_errors"]
    );
    assert_eq!(
        added(stale_keys, &drifted),
        ["smtp.max_recipents", "web.colour"]
    );
    // A key documented in the wrong section does not count.
    let moved: String = text
        .lines()
        .filter(|l| !l.starts_with("max_recipients ="))
        .map(|l| match l {
            "[delivery]" => "[delivery]\n# max_recipients = 100",
            l => l,
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    assert_eq!(added(undocumented_keys, &moved), ["smtp.max_recipients"]);
    assert_eq!(added(stale_keys, &moved), ["delivery.max_recipients"]);
}

#[test]
fn help_works_for_every_command_and_subcommand() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["check-config"],
        &["migrate"],
        &["domain"],
        &["domain", "add"],
        &["domain", "list"],
        &["domain", "remove"],
        &["mailbox"],
        &["mailbox", "add"],
        &["mailbox", "list"],
        &["mailbox", "remove"],
        &["mailbox", "passwd"],
        &["alias"],
        &["alias", "add"],
        &["alias", "list"],
        &["alias", "remove"],
        &["queue"],
        &["queue", "list"],
        &["queue", "count"],
        &["queue", "run"],
        &["queue", "delete"],
    ];
    for words in commands {
        let mut cmd = boxtrap_command();
        cmd.args(*words).arg("--help");
        let out = run_command(cmd, None);
        assert!(out.success, "{words:?} --help: {out:#?}");
        let usage = ["boxtrap"]
            .iter()
            .chain(words.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            out.stdout.contains(&format!("Usage: {usage}")),
            "{words:?} --help: {out:#?}"
        );
        // Each group's help lists its subcommands.
        let subs: Vec<&str> = commands
            .iter()
            .filter(|c| c.len() == words.len() + 1 && c.starts_with(words))
            .map(|c| c[words.len()])
            .collect();
        for sub in subs {
            assert!(
                out.stdout
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
                "{words:?} --help does not list {sub}: {}",
                out.stdout
            );
        }
    }
    // A command that does not exist is a usage error, not a crash.
    let mut cmd = boxtrap_command();
    cmd.arg("mailbox").arg("frobnicate");
    let out = run_command(cmd, None);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("frobnicate"), "{out:#?}");
}

#[tokio::test]
async fn the_cli_and_a_running_server_share_the_database() {
    let cli = Cli::new();
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", "alice@example.test", "--no-password"]);
    let server = ServerProcess::start(&cli.config);

    let mut s = Smtp::connect(server.addr).await;
    assert!(
        s.greeting.starts_with("220 mx.example.test"),
        "{}",
        s.greeting
    );
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<dave@example.org>", "250").await;
    s.cmd("RCPT TO:<alice@example.test>", "250").await;
    s.cmd("RCPT TO:<carol@example.test>", "550").await;

    // Added while the server runs, in another process: known at once.
    cli.ok(&["mailbox", "add", "carol@example.test", "--no-password"]);
    s.cmd("RCPT TO:<carol@example.test>", "250").await;
    s.cmd("DATA", "354").await;
    let reply = s
        .data("Subject: hello\r\nMessage-ID: <shared-1@example.org>\r\n\r\nhi\r\n")
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    s.cmd("QUIT", "221").await;
    let carol = messages_in(&cli.dir.path().join("mail/example.test/carol/new"));
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert_eq!(
        header_message_id(&carol[0].1).as_deref(),
        Some("<shared-1@example.org>")
    );

    // And removed while it runs: refused at once.
    cli.ok(&["mailbox", "remove", "carol@example.test"]);
    let mut s = Smtp::connect(server.addr).await;
    s.cmd("EHLO client.example.org", "250").await;
    s.cmd("MAIL FROM:<dave@example.org>", "250").await;
    s.cmd("RCPT TO:<carol@example.test>", "550").await;
    s.cmd("QUIT", "221").await;

    let status = server.terminate();
    assert!(status.success(), "serve exited with {status}");
}

/// Queues `n` messages for `mailbox` straight into the database, as a
/// server whose Maildir delivery failed would have, due in ten years.
/// Returns their queue ids.
async fn enqueue_for(cli: &Cli, mailbox: &str, n: usize) -> Vec<String> {
    use boxtrap::clock::Timestamp;
    use boxtrap::store::queue::{NewQueuedMessage, NewQueuedRecipient};
    let store = Store::open(&cli.database_url(), 1).await.unwrap();
    let mailbox_id = store
        .find_mailbox(&addr_of(mailbox))
        .await
        .unwrap()
        .unwrap()
        .id;
    let now = Timestamp::from_secs(T0);
    let mut ids = Vec::new();
    for i in 0..n {
        let queue_id = boxtrap::queue_id::new_queue_id(now);
        let data = format!("Subject: queued {i}\r\nMessage-ID: <{i}@queue.test>\r\n\r\nbody\r\n");
        store
            .enqueue(&NewQueuedMessage {
                queue_id: &queue_id,
                sender: "carol@example.org",
                arrived_at: now,
                data: data.as_bytes(),
                recipients: vec![NewQueuedRecipient {
                    rcpt_index: 0,
                    mailbox_id,
                    original: mailbox.into(),
                    next_attempt_at: Timestamp::from_secs(T0 + 10 * 365 * 86400),
                    last_error: "disk full".into(),
                }],
            })
            .await
            .unwrap();
        ids.push(queue_id);
    }
    store.close().await;
    ids
}

/// The Message-IDs in a mailbox's `new/`.
fn message_ids_in(cli: &Cli, mailbox: &str) -> Vec<String> {
    let (local, domain) = mailbox.split_once('@').unwrap();
    let new = cli
        .dir
        .path()
        .join("mail")
        .join(domain)
        .join(local)
        .join("new");
    let mut ids: Vec<String> = messages_in(&new)
        .iter()
        .map(|(name, m)| header_message_id(m).unwrap_or_else(|| panic!("{name}: no Message-ID")))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn queued_deliveries_are_listed_run_and_deleted_and_hold_their_mailbox() {
    let cli = Cli::new();
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", "bob@example.test", "--no-password"]);
    let ids = enqueue_for(&cli, "bob@example.test", 3).await;
    assert_eq!(cli.ok(&["queue", "count"]), "3\n");
    let list = cli.ok(&["queue", "list"]);
    assert_eq!(lines(&list).len(), 3, "{list}");
    for id in &ids {
        let line = list.lines().find(|l| l.contains(id.as_str()));
        let line = line.unwrap_or_else(|| panic!("{id} not listed: {list}"));
        assert!(
            line.contains("<carol@example.org> -> bob@example.test pending"),
            "{line}"
        );
        assert!(line.contains("disk full"), "{line}");
    }

    // A mailbox with deliveries waiting cannot be removed.
    let err = cli.fails(&["mailbox", "remove", "bob@example.test"]);
    assert!(err.contains("bob@example.test"), "{err}");
    assert!(err.contains("queue"), "the reason is named: {err}");

    assert_eq!(
        cli.ok(&["queue", "delete", &ids[0]]),
        format!("deleted {}\n", ids[0])
    );
    assert_eq!(cli.ok(&["queue", "count"]), "2\n");
    assert!(!cli.ok(&["queue", "list"]).contains(ids[0].as_str()));
    let err = cli.fails(&["queue", "delete", &ids[0]]);
    assert!(
        err.contains(&format!("no queued message {}", ids[0])),
        "{err}"
    );

    // Not due for years, delivered now; the deleted one never.
    let out = cli.ok(&["queue", "run"]);
    assert!(out.starts_with("2 pending, 2 attempted"), "{out}");
    assert_eq!(cli.ok(&["queue", "count"]), "0\n");
    assert_eq!(
        message_ids_in(&cli, "bob@example.test"),
        ["<1@queue.test>", "<2@queue.test>"]
    );
    let mainlog = std::fs::read_to_string(cli.dir.path().join("log/mainlog")).unwrap();
    for id in &ids[1..] {
        assert!(
            mainlog.contains(&format!("{id} => bob@example.test")),
            "{mainlog}"
        );
    }
    // Nothing left to do: again changes nothing.
    assert!(
        cli.ok(&["queue", "run"])
            .starts_with("0 pending, 0 attempted")
    );
    assert_eq!(message_ids_in(&cli, "bob@example.test").len(), 2);
    cli.ok(&["mailbox", "remove", "bob@example.test"]);
}

#[tokio::test]
async fn queue_run_retries_every_pending_delivery() {
    // `boxtrap queue run` promises every pending delivery now (Exim's
    // -qff), however long the queue: more than one worker pass takes.
    const QUEUED: usize = 250;
    let cli = Cli::new();
    cli.ok(&["domain", "add", "example.test"]);
    cli.ok(&["mailbox", "add", "bob@example.test", "--no-password"]);
    enqueue_for(&cli, "bob@example.test", QUEUED).await;
    assert_eq!(cli.ok(&["queue", "count"]), format!("{QUEUED}\n"));
    assert_eq!(lines(&cli.ok(&["queue", "list"])).len(), QUEUED);

    let out = cli.ok(&["queue", "run"]);
    assert!(
        out.starts_with(&format!("{QUEUED} pending, {QUEUED} attempted")),
        "queue run left deliveries behind: {out}"
    );
    assert_eq!(cli.ok(&["queue", "count"]), "0\n");
    let ids = message_ids_in(&cli, "bob@example.test");
    assert_eq!(ids.len(), QUEUED);
    ids.windows(2)
        .for_each(|w| assert_ne!(w[0], w[1], "delivered twice"));
}
