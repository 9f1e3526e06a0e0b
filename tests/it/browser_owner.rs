//! The mailbox owner's pages in a real browser: Debian's headless Chromium,
//! driven through chromedriver by tests/peers/owner_browser.py, walks them
//! as alice would. She signs in, finds mail that arrived over SMTP in her
//! quarantine, opens an HTML mail carrying a script and remote images
//! (the script never runs; no image is fetched until she clicks "Load
//! images", and then only the https one, as the page promises), goes to
//! the newer message and back with the page's links, allows
//! its sender (the message lands in her Maildir), answers a digest link
//! with its button, finds the sender on /lists and tests the address
//! there, opens /settings and /templates, edits the verify text and
//! previews it (nothing saved), reads /activity and, as an admin, /admin,
//! looks at the pages at phone width (390
//! px) and signs out. No page but the HTML part's logs a console error
//! (the browser's own request for /favicon.ico gets 204, so logs none).
//!
//! Every page the walk visits (the sender's verification page too) is also
//! checked for accessibility (WCAG 2.2 AA): axe-core (installed by
//! scripts/test.sh into tests/peers/node_modules; the test fails without
//! it) runs in each page and in the HTML part's frame with the WCAG 2.0,
//! 2.1 and 2.2 A/AA rules and must find nothing; the walk's own checks
//! want `lang`, a skip link to the content as the first Tab stop, a
//! visible outline on every Tab stop it presses to, a label on every field
//! and targets of at least 24 by 24 pixels; result messages must be in a
//! live region (`role="status"`/`alert`). A few pages are walked again in
//! the dark colour scheme.
//!
//! Every page is saved as a screenshot; set `BROWSER_SCREENSHOTS=DIR`
//! (CONTRIBUTING.md suggests `target/screenshots`) to keep them for a look.

use crate::browser::json_strings;
use crate::on_both_backends;
use crate::support::*;
use boxtrap::digest::Digests;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

/// Debian's Python: python3-selenium is installed for it only.
const PYTHON: &str = "/usr/bin/python3";
/// (axe-core takes a few seconds a page on a slow machine.)
const WALK_LIMIT: Duration = Duration::from_secs(480);
const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "alice correct horse";
/// What the mail's script would write everywhere it could.
const RAN: &str = "SCRIPT RAN";
/// A verify text typed into /templates/verify (`\n`: a line break, as
/// owner_browser.py's `setval` reads it).
const EDITED_TEMPLATE: &str = "Subject: Please confirm: {{ subject }}\\n\\n\
    Edited in a real browser for {{ mailbox }}.\\n\\n  {{ link }}\\n";

/// A loopback TCP server standing in for a sender's image host: it counts
/// connections (any, even a TLS handshake it cannot answer) and answers
/// plain HTTP with a 404.
#[derive(Clone)]
struct ImageHost {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl ImageHost {
    async fn start() -> ImageHost {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut buf = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        ImageHost { port, connections }
    }

    fn seen(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// One step of the walk as the browser reported it, with what the image
/// hosts had seen by then.
#[derive(Debug)]
struct Step {
    step: String,
    url: String,
    title: String,
    text: String,
    /// The console's errors and warnings since the step before.
    errors: String,
    /// Connections the plain-http image host had had.
    http_seen: usize,
    /// Connections the https image host had had.
    https_seen: usize,
    /// axe-core's WCAG A/AA violations, one a line.
    axe: String,
    /// What the walk's own accessibility checks found, one a line.
    a11y: String,
    /// The text of the page's live regions, one a line.
    live: String,
}

impl Step {
    fn shows(&self, wanted: &str) -> bool {
        self.text.contains(wanted)
    }

    #[track_caller]
    fn assert_shows(&self, wanted: &[&str]) {
        for w in wanted {
            assert!(self.shows(w), "{w:?} not on {}:\n{}", self.url, self.text);
        }
    }

    /// The console's errors and warnings (the browser's own request for
    /// `/favicon.ico` gets 204 and logs nothing).
    fn page_errors(&self) -> Vec<&str> {
        self.errors.lines().collect()
    }

    /// Nothing found by axe-core or by the walk's own checks.
    #[track_caller]
    fn assert_accessible(&self) {
        assert!(
            self.axe.is_empty() && self.a11y.is_empty(),
            "accessibility problems on {} ({}):\naxe-core:\n{}\nown checks:\n{}",
            self.url,
            self.title,
            self.axe,
            self.a11y
        );
    }

    /// `wanted` is shown in a live region, so a screen reader announces it.
    #[track_caller]
    fn assert_announced(&self, wanted: &str) {
        assert!(
            self.live.contains(wanted),
            "{wanted:?} is not in a live region on {}; live regions:\n{}",
            self.url,
            self.live
        );
    }

    /// No console error or warning from the page.
    #[track_caller]
    fn assert_clean(&self) {
        assert!(
            self.page_errors().is_empty(),
            "console errors on {}:\n{}",
            self.url,
            self.errors
        );
    }
}

/// The steps of a walk: one line each, fields separated by tabs, read by
/// owner_browser.py (its docstring lists the verbs).
#[derive(Default)]
struct Plan {
    lines: Vec<String>,
    shots: Vec<String>,
}

impl Plan {
    fn add(&mut self, fields: &[&str]) -> &mut Plan {
        assert!(fields.iter().all(|f| !f.contains(['\t', '\n'])));
        self.lines.push(fields.join("\t"));
        self
    }

    /// A step that saves a screenshot named `shot`.
    fn shot(&mut self, verb: &str, arg: &str, shot: &str) -> &mut Plan {
        self.shots.push(shot.to_owned());
        self.add(&[verb, arg, shot])
    }
}

/// Runs owner_browser.py over `plan` with screenshots going to `shots`, at
/// most [`WALK_LIMIT`]; returns the steps it reported, each with the image
/// hosts' counts at the moment it was reported.
async fn walk(plan: &Plan, shots: &Path, hosts: (&ImageHost, &ImageHost)) -> Vec<Step> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/owner_browser.py");
    let plan_file = shots.join("plan.txt");
    std::fs::write(&plan_file, plan.lines.join("\n") + "\n").unwrap();
    let axe = axe_js();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script).arg(&plan_file).arg(shots).arg(&axe);
    // Its own process group, so chromedriver and Chromium can be killed
    // with it if it hangs.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {PYTHON} {}: {e} (scripts/test.sh installs python3, chromium, \
             chromium-driver and python3-selenium)",
            script.display()
        )
    });
    let group = child.id().expect("just started");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let read = async {
        let mut steps = Vec::new();
        // Each line is read as it comes, so the image hosts' counts are
        // those of that moment.
        while let Some(line) = stdout.next_line().await.unwrap() {
            if line.trim().is_empty() {
                continue;
            }
            // Shown with the test's output when it fails (a walk cut off
            // by the time limit too).
            eprintln!("{line}");
            let fields = json_strings(&line)
                .unwrap_or_else(|| panic!("not a JSON line of strings: {line:?}"));
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no {k:?} in {line:?}"))
            };
            let audit = |k: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no accessibility check ({k:?}) in {line:?}"))
            };
            steps.push(Step {
                step: get("step"),
                url: get("url"),
                title: get("title"),
                text: get("text"),
                errors: get("errors"),
                http_seen: hosts.0.seen(),
                https_seen: hosts.1.seen(),
                axe: audit("axe"),
                a11y: audit("a11y"),
                live: audit("live"),
            });
        }
        let mut err = String::new();
        stderr.read_to_string(&mut err).await.unwrap();
        (steps, err, child.wait().await.unwrap())
    };
    let (steps, err, status) = match tokio::time::timeout(WALK_LIMIT, read).await {
        Ok(done) => done,
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            panic!("owner_browser.py did not finish within {WALK_LIMIT:?}");
        }
    };
    assert!(
        status.success(),
        "owner_browser.py failed ({status}) after {} steps:\n{steps:#?}\n{err}",
        steps.len()
    );
    for name in &plan.shots {
        assert_screenshot(&shots.join(name));
    }
    steps
}

/// axe-core's script, as scripts/test.sh installs it (`npm ci` in
/// tests/peers, pinned by its package-lock.json). Missing: a failure.
fn axe_js() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/node_modules/axe-core/axe.min.js");
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs it (npm ci --prefix tests/peers)",
        path.display()
    );
    path
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

/// Copies the screenshots to `$BROWSER_SCREENSHOTS/owner-{backend}/`, if set.
fn keep_screenshots(from: &Path, names: &[String], backend: Backend) {
    let Some(dir) = std::env::var_os("BROWSER_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(dir).join(match backend {
        Backend::Sqlite => "owner-sqlite",
        Backend::Postgres => "owner-postgres",
    });
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        std::fs::copy(from.join(name), dir.join(name)).unwrap();
    }
}

/// An HTML mail from a shop: a script that would rewrite the page and its
/// title, an `onerror` handler, and two remote images, one over plain
/// http and one over https, on the two image hosts.
fn shop_mail(http: u16, https: u16) -> String {
    format!(
        "From: Shop <news@shop.example.org>\r\nTo: {ALICE}\r\nSubject: Spring sale\r\n\
         Message-ID: <sale@shop.example.org>\r\nDate: Fri, 27 Nov 2026 14:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSpring sale: 20% off.\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><head><title>Shop news</title>\
         <script>document.title='{RAN}'</script></head><body>\r\n\
         <h1>Spring sale</h1>\r\n\
         <p>Everything 20% off this week. See the <a href=\"https://shop.example.org/deal\">deal</a>.</p>\r\n\
         <script>document.title='{RAN}'; parent.document.title='{RAN}'; \
         document.body.innerHTML='{RAN}'; top.location='http://127.0.0.1:{http}/moved'</script>\r\n\
         <img src=\"http://127.0.0.1:{http}/pixel.png\" alt=\"plain pixel\" width=\"1\" height=\"1\">\r\n\
         <img src=\"https://127.0.0.1:{https}/banner.png\" alt=\"Spring banner\" width=\"300\" height=\"60\">\r\n\
         <img src=\"x\" onerror=\"document.title='{RAN}'\" alt=\"broken\">\r\n\
         </body></html>\r\n--b1--\r\n"
    )
}

async fn hold(app: &TestApp, from: &str, body: &str) {
    let r = send_raw(app, from, ALICE, body).await;
    assert!(r.starts_with("250"), "{r}");
}

/// The digest's "Deliver" link of the item whose subject line is `subject`,
/// as a path.
fn digest_deliver_link(digest: &str, subject: &str) -> String {
    let lines: Vec<&str> = digest.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("Subject: {subject}"))
        .unwrap_or_else(|| panic!("no item {subject:?} in {digest}"));
    let url = lines[at..]
        .iter()
        .take(6)
        .find_map(|l| l.trim().strip_prefix("Deliver: "))
        .unwrap_or_else(|| panic!("no deliver link for {subject:?} in {digest}"));
    let path = &url[url.find("/digest/").expect("a digest link")..];
    path.trim().to_owned()
}

/// The mail in alice's Maildir whose headers carry `Subject: {subject}`.
fn delivered(app: &TestApp, subject: &str) -> usize {
    app.messages(ALICE)
        .iter()
        .filter(|(_, m)| {
            String::from_utf8_lossy(m)
                .lines()
                .any(|l| l.trim_end() == format!("Subject: {subject}"))
        })
        .count()
}

on_both_backends!(
    an_owner_walks_her_pages_in_a_real_browser,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        app.challenge_on(ALICE).await;
        let hash = boxtrap::password::hash(ALICE_PW).unwrap();
        app.store
            .set_password_hash(&addr_of(ALICE), &hash)
            .await
            .unwrap();
        let http_host = ImageHost::start().await;
        let https_host = ImageHost::start().await;

        // Three strangers write; all three are held.
        hold(
            &app,
            "news@shop.example.org",
            &shop_mail(http_host.port, https_host.port),
        )
        .await;
        hold(
            &app,
            "carol@example.org",
            &format!(
                "From: Carol <carol@example.org>\r\nTo: {ALICE}\r\nSubject: Minutes of Tuesday\r\n\r\n\
                 The minutes are attached.\r\n"
            ),
        )
        .await;
        hold(
            &app,
            "eve@example.net",
            &format!(
                "From: \"Eve <b>x</b>\" <eve@example.net>\r\nTo: {ALICE}\r\n\
                 Subject: <script>alert(1)</script> invoice \u{202e}fdp.exe\r\n\r\nPay now.\r\n"
            ),
        )
        .await;
        let held = app.held().await;
        assert_eq!(held.len(), 3);
        assert!(app.messages(ALICE).is_empty());
        let shop = held
            .iter()
            .find(|h| h.sender == "news@shop.example.org")
            .unwrap()
            .id;
        let eve = held
            .iter()
            .find(|h| h.sender == "eve@example.net")
            .unwrap()
            .id;
        let alice = app.mailbox_id(ALICE).await;
        app.store.set_admin(alice, true).await.unwrap();

        // The digest lists the three; carol's item gets used from it.
        let report = Digests::new(app.quarantine.clone())
            .run_once()
            .await
            .unwrap();
        assert_eq!(report.sent, 1);
        let digest = String::from_utf8_lossy(&app.messages(ALICE)[0].1).into_owned();
        let digest_link = digest_deliver_link(&digest, "Minutes of Tuesday");
        // eve's challenge: its link opens the sender's verification page.
        app.outbound.run_once().await.unwrap();
        let verify_link = app
            .challenges_to("eve@example.net")
            .pop()
            .expect("a challenge to eve")
            .link;
        let verify_path = &verify_link[verify_link.find("/verify/").expect("a /verify/ link")..];

        let base = format!("http://{}", app.web);
        let url = |path: &str| format!("{base}{path}");
        let mut plan = Plan::default();
        plan.add(&["size", "1024", "900"])
            .shot("get", &url("/quarantine"), "01-login.png")
            .add(&["type", "input[name=address]", ALICE])
            .add(&["type", "input[name=password]", ALICE_PW])
            .shot(
                "click",
                "main form button[type=submit]",
                "02-quarantine.png",
            )
            .shot("link", "Spring sale", "03-message.png")
            .shot("frame", "iframe", "04-message-html-part.png")
            .shot("link", "Load images", "05-message-images.png")
            .shot("frame", "iframe", "06-message-html-part-images.png")
            .shot(
                "get",
                &url(&format!("/quarantine/{shop}/html")),
                "07-html-part-alone.png",
            )
            .shot(
                "get",
                &url(&format!("/quarantine/{shop}")),
                "08-message-again.png",
            )
            .shot("link", "Newer message", "08a-message-newer.png")
            .shot("link", "Older message", "08b-message-older.png")
            .shot(
                "click",
                &format!("form[action='/quarantine/{shop}/allow'] button"),
                "09-allowed.png",
            )
            .shot("get", &url(&digest_link), "10-digest-link.png")
            .shot(
                "click",
                "main form button[type=submit]",
                "11-digest-done.png",
            )
            .shot("get", &url("/lists"), "12-lists.png")
            .add(&["type", "#test-address", "news@shop.example.org"])
            .shot("click", "#test form button", "13-lists-tested.png")
            .shot("get", &url("/settings"), "14-settings.png")
            .shot("get", &url("/templates"), "15-templates.png")
            .shot("get", &url("/templates/verify"), "16-template-verify.png")
            .add(&["setval", "textarea#text", EDITED_TEMPLATE])
            .shot("click", "button[value=preview]", "17-template-preview.png")
            .shot("get", &url("/templates"), "18-templates-unchanged.png")
            .shot("get", &url("/activity"), "19-activity.png")
            .shot("get", &url("/admin"), "20-admin.png")
            .shot(
                "get",
                &url(&format!("/admin/mailboxes/{alice}")),
                "21-admin-mailbox.png",
            )
            .shot("get", &url("/quarantine?view=sender"), "22-by-sender.png")
            .shot(
                "get",
                &url("/quarantine?q=from%3Aeve%40example.net"),
                "23-search.png",
            )
            .shot("get", &url(verify_path), "24-verify-page.png")
            .add(&["size", "390", "844"])
            .shot("get", &url("/quarantine"), "25-phone-quarantine.png")
            .shot(
                "get",
                &url(&format!("/quarantine/{eve}")),
                "26-phone-message.png",
            )
            .shot("get", &url("/lists"), "27-phone-lists.png")
            .shot("get", &url("/settings"), "28-phone-settings.png")
            .shot("get", &url("/templates/verify"), "29-phone-template.png")
            .shot("get", &url("/activity"), "30-phone-activity.png")
            .shot("get", &url("/admin"), "31-phone-admin.png")
            .add(&["size", "1024", "900"])
            .add(&["scheme", "dark"])
            .shot("get", &url("/quarantine"), "32-dark-quarantine.png")
            .shot(
                "get",
                &url(&format!("/quarantine/{eve}")),
                "33-dark-message.png",
            )
            .shot("get", &url("/settings"), "34-dark-settings.png")
            .add(&["scheme", "light"])
            .shot(
                "click",
                "form[action='/logout'] button",
                "35-signed-out.png",
            );
        let shots = tempfile::tempdir().unwrap();
        let steps = walk(&plan, shots.path(), (&http_host, &https_host)).await;
        // Kept before anything is checked: a failure is worth a look too.
        keep_screenshots(shots.path(), &plan.shots, backend);
        let [
            login,
            quarantine,
            message,
            frame,
            images,
            frame_images,
            alone,
            again,
            newer,
            older,
            allowed,
            digest_page,
            digest_done,
            lists,
            tested,
            settings,
            templates,
            verify,
            preview,
            unchanged,
            activity,
            admin,
            admin_mailbox,
            by_sender,
            search,
            verify_page,
            phone_list,
            phone_message,
            phone_pages @ ..,
            dark_list,
            dark_message,
            dark_settings,
            signed_out,
        ] = &steps[..]
        else {
            panic!("expected 37 steps: {steps:#?}")
        };
        assert_eq!(phone_pages.len(), 5, "{steps:#?}");

        // Every page, every frame: WCAG 2.2 AA as axe-core and the walk's
        // own checks see it.
        for step in &steps {
            step.assert_accessible();
        }
        // Result messages are announced.
        allowed.assert_announced("1 delivered, sender allowed.");
        tested.assert_announced("allow");
        digest_done.assert_announced("delivered");
        signed_out.assert_announced("You are signed out.");

        // Sign-in.
        assert!(login.url.contains("/login?next=/quarantine"), "{login:?}");
        assert_eq!(login.title, "Sign in – boxtrap");
        login.assert_clean();
        assert_eq!(
            quarantine.title, "Your quarantine – boxtrap",
            "{quarantine:?}"
        );
        assert_eq!(quarantine.url, url("/quarantine"));
        quarantine.assert_shows(&[
            "Signed in as alice@example.test",
            "Spring sale",
            "Minutes of Tuesday",
            "<script>alert(1)</script> invoice \u{fffd}fdp.exe",
            "news@shop.example.org",
        ]);
        quarantine.assert_clean();
        // alice is an admin: her site navigation has the link.
        assert!(quarantine.text.contains("\nAdmin\n"), "{quarantine:?}");

        // The HTML mail: shown, its script dead, no image fetched.
        assert_eq!(message.url, url(&format!("/quarantine/{shop}")));
        assert!(!message.title.contains(RAN), "{message:?}");
        message.assert_shows(&["Remote images are blocked.", "Spring sale: 20% off."]);
        assert_eq!(frame.step, "frame");
        assert!(
            frame.shows("Everything 20% off this week.") && !frame.shows(RAN),
            "{frame:?}"
        );
        assert!(!frame.title.contains(RAN), "{frame:?}");
        assert_eq!(
            (frame.http_seen, frame.https_seen),
            (0, 0),
            "no image fetched before \"Load images\""
        );

        // "Load images": https only, as the page says; the script still dead.
        assert_eq!(images.url, url(&format!("/quarantine/{shop}?images=1")));
        images.assert_shows(&["Remote images (https only) are loaded"]);
        assert!(!images.title.contains(RAN) && !frame_images.shows(RAN));
        assert!(
            frame_images.https_seen > 0,
            "the https image was asked for once images were loaded"
        );
        assert_eq!(frame_images.http_seen, 0, "plain http images stay blocked");
        assert!(!alone.title.contains(RAN) && !alone.shows(RAN), "{alone:?}");
        assert!(alone.shows("Everything 20% off this week."), "{alone:?}");
        again.assert_shows(&["Remote images are blocked."]);

        // Newer and older, in the quarantine's order (newest first): the
        // shop's mail is the oldest, carol's the next newer one, with
        // links both ways; at the ends a note instead of a link.
        again.assert_shows(&["Newer message", "This is the oldest."]);
        assert!(!again.shows("Older message"), "{again:?}");
        assert_eq!(newer.title, "Minutes of Tuesday – boxtrap", "{newer:?}");
        newer.assert_shows(&["Newer message", "Older message"]);
        assert_eq!(older.url, url(&format!("/quarantine/{shop}")), "{older:?}");

        // Allow the sender: delivered to the Maildir, gone from the list.
        allowed.assert_shows(&["1 delivered, sender allowed."]);
        assert!(!allowed.shows("Spring sale"), "{allowed:?}");
        allowed.assert_clean();
        assert_eq!(delivered(&app, "Spring sale"), 1);

        // The digest link: a page, then its button delivers carol's mail.
        digest_page.assert_shows(&["Minutes of Tuesday"]);
        digest_page.assert_clean();
        assert!(digest_done.shows("delivered"), "{digest_done:?}");
        digest_done.assert_clean();
        assert_eq!(delivered(&app, "Minutes of Tuesday"), 1);

        // The lists: the allowed sender, and the tester naming its entry,
        // shown as the address, not as the rule the release added.
        let rule = "news@shop.example.org";
        assert!(!lists.shows(r"from ^news@shop\.example\.org$"), "{lists:?}");
        lists.assert_shows(&[rule, "added from quarantine"]);
        tested.assert_shows(&[rule]);
        assert!(
            tested.url.contains("test=news%40shop.example.org"),
            "{tested:?}"
        );
        assert!(tested.shows("allow"), "{tested:?}");
        for page in [
            lists,
            tested,
            settings,
            templates,
            verify,
            preview,
            unchanged,
            activity,
            admin,
            admin_mailbox,
        ] {
            assert!(!page.title.starts_with("Not found"), "{page:?}");
            page.assert_clean();
        }
        settings.assert_shows(&["Save settings"]);
        templates.assert_shows(&["verify", "verifyreleased", "returnverify", "blacklist"]);

        // The activity log names the allowed sender; alice, an admin, sees
        // both mailboxes and her own quarantine from /admin.
        activity.assert_shows(&["news@shop.example.org"]);
        admin.assert_shows(&[ALICE, "bob@example.test"]);
        admin_mailbox.assert_shows(&["<script>alert(1)</script> invoice"]);

        // A template edited and previewed, not saved.
        preview.assert_shows(&[
            "Preview on a sample message",
            "Subject: Please confirm: Lunch on Friday?",
            "Edited in a real browser for alice@example.test.",
        ]);
        assert!(!unchanged.shows("Your own text."), "{unchanged:?}");

        // Phone width: what is left, readable.
        phone_list.assert_shows(&["<script>alert(1)</script> invoice"]);
        assert!(!phone_list.shows("Minutes of Tuesday"));
        phone_list.assert_clean();
        phone_message.assert_shows(&[
            "Pay now.",
            "eve@example.net",
            "This is the newest.",
            "This is the oldest.",
        ]);
        phone_message.assert_clean();
        for page in phone_pages {
            page.assert_clean();
        }

        // The by-sender view, a search, the sender's verification page
        // (in the owner pages' look) and the dark colour scheme.
        by_sender.assert_shows(&["eve@example.net"]);
        search.assert_shows(&["<script>alert(1)</script> invoice"]);
        assert!(!search.shows("Minutes of Tuesday"), "{search:?}");
        verify_page.assert_shows(&["boxtrap", "Please confirm your message", "eve@example.net"]);
        for page in [
            by_sender,
            search,
            verify_page,
            dark_list,
            dark_message,
            dark_settings,
        ] {
            page.assert_clean();
        }
        dark_message.assert_shows(&["Pay now."]);

        // Signed out.
        assert_eq!(signed_out.title, "Sign in – boxtrap", "{signed_out:?}");
        signed_out.assert_shows(&["You are signed out."]);

        // Nothing ever reached the plain-http host; eve's mail is still held.
        assert_eq!(http_host.seen(), 0);
        let left = app.held().await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, eve);
    }
);
