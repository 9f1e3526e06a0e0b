//! The JSON API's sign-in and callers (src/web/api.rs) over real HTTP:
//! `POST /api/v1/login` gives a session cookie and its CSRF token; a
//! session's state-changing calls need `X-CSRF-Token`; personal API
//! tokens made by `boxtrap token create` act for their mailbox only until
//! revoked; every refusal is JSON naming what was wrong.

use crate::http::*;
use crate::on_both_backends;
use crate::support::*;

const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "alice correct horse";
const BOB: &str = "bob@example.test";
const BOB_PW: &str = "bob battery staple";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The value of `"field": "..."` in a JSON body.
fn field(body: &str, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_owned()
}

async fn api_login(app: &TestApp, address: &str, password: &str) -> Resp {
    let body = serde_json::json!({"address": address, "password": password}).to_string();
    request_from(
        "127.0.0.1",
        app.web,
        "POST",
        "/api/v1/login",
        &[JSON],
        &body,
    )
    .await
}

async fn get_as(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_from("127.0.0.1", app.web, "GET", path, headers, "").await
}

on_both_backends!(
    a_json_sign_in_gives_a_session_whose_changes_need_its_csrf_token,
    |backend: Backend| async move {
        let app = TestApp::spawn_on(backend).await;
        set_password(&app, ALICE, ALICE_PW).await;

        let r = api_login(&app, ALICE, ALICE_PW).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let csrf = field(&r.body, "csrf_token");
        assert_eq!(csrf.len(), 64, "{}", r.body);
        let cookie = format!("boxtrap_session={}", r.session_cookie().expect("a cookie"));

        let me = get_as(&app, "/api/v1/me", &[("Cookie", &cookie)]).await;
        assert_eq!(me.status, 200, "{me:?}");
        assert_eq!(field(&me.body, "address"), ALICE);
        assert_eq!(field(&me.body, "auth"), "session");

        // Logout without the header, with another token, from another site:
        // refused by name, and the session still works.
        for (extra, names) in [
            (vec![], "X-CSRF-Token"),
            (vec![("X-CSRF-Token", "0".repeat(64))], "not this session's"),
            (
                vec![
                    ("X-CSRF-Token", csrf.clone()),
                    ("Origin", "http://evil.example".to_owned()),
                ],
                "another site",
            ),
        ] {
            let mut h: Vec<(&str, &str)> = vec![("Cookie", &cookie)];
            h.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            let r = request_from("127.0.0.1", app.web, "POST", "/api/v1/logout", &h, "").await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(field(&r.body, "error").contains(names), "{}", r.body);
            let me = get_as(&app, "/api/v1/me", &[("Cookie", &cookie)]).await;
            assert_eq!(me.status, 200, "{me:?}");
        }
        let r = request_from(
            "127.0.0.1",
            app.web,
            "POST",
            "/api/v1/logout",
            &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
            "",
        )
        .await;
        assert_eq!(r.status, 204, "{r:?}");
        let me = get_as(&app, "/api/v1/me", &[("Cookie", &cookie)]).await;
        assert_eq!(me.status, 401, "{me:?}");
        assert!(
            field(&me.body, "error").contains("sign in first"),
            "{}",
            me.body
        );
    }
);

on_both_backends!(
    bad_sign_ins_get_json_errors_naming_what_was_wrong,
    |backend: Backend| async move {
        let app = TestApp::spawn_on(backend).await;
        set_password(&app, ALICE, ALICE_PW).await;
        let wrong = api_login(&app, ALICE, "nope").await;
        assert_eq!(wrong.status, 401, "{wrong:?}");
        assert_eq!(
            field(&wrong.body, "error"),
            "wrong mailbox address or password"
        );
        assert_eq!(wrong.session_cookie(), None);

        let post = |body: &'static str, headers: Vec<(&'static str, &'static str)>| {
            let web = app.web;
            async move { request_from("127.0.0.1", web, "POST", "/api/v1/login", &headers, body).await }
        };
        let cases = [
            ("{\"address\": \"a@b\"", vec![JSON], 400, "EOF"),
            (
                "{\"address\": \"a@b\"}",
                vec![JSON],
                400,
                "missing field `password`",
            ),
            (
                "{\"address\": \"a@b\", \"password\": \"x\", \"admin\": true}",
                vec![JSON],
                400,
                "unknown field `admin`",
            ),
            ("address=a&password=b", vec![], 415, "application/json"),
        ];
        for (body, headers, status, names) in cases {
            let r = post(body, headers).await;
            assert_eq!(r.status, status, "{body}: {r:?}");
            assert!(
                field(&r.body, "error").contains(names),
                "{body}: {}",
                r.body
            );
            assert_eq!(r.session_cookie(), None);
        }
        // Throttled as /login is: five failures, then 429 with Retry-After,
        // even with the right password.
        for _ in 0..4 {
            assert_eq!(api_login(&app, ALICE, "nope").await.status, 401);
        }
        let r = api_login(&app, ALICE, ALICE_PW).await;
        assert_eq!(r.status, 429, "{r:?}");
        assert!(r.header("retry-after").is_some(), "{r:?}");
        assert!(field(&r.body, "error").contains("too many"), "{}", r.body);
    }
);

#[tokio::test]
async fn an_api_token_from_the_cli_acts_for_its_mailbox_until_revoked() {
    let app = TestApp::spawn_on(Backend::Sqlite).await;
    // The CLI on the server's own database (SQLite in its data directory).
    let config = write_test_config(app.dir.path(), "", "");
    let run = |args: &[&str]| run_boxtrap(&config, args, None);

    let made = run(&["token", "create", "Alice@Example.test", "--name", "phone"]);
    assert!(made.success, "{made:#?}");
    let token = made.stdout.trim().to_owned();
    assert!(token.starts_with("bt_") && token.len() == 67, "{made:#?}");
    assert!(made.stderr.contains("not shown again"), "{made:#?}");
    let bearer = format!("Bearer {token}");

    let me = get_as(&app, "/api/v1/me", &[("Authorization", &bearer)]).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(field(&me.body, "address"), ALICE);
    assert_eq!(field(&me.body, "auth"), "token");
    // A token caller needs no CSRF header, and has no session to end.
    let r = request_from(
        "127.0.0.1",
        app.web,
        "POST",
        "/api/v1/logout",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(field(&r.body, "error").contains("revoke"), "{}", r.body);

    let listed = run(&["token", "list", ALICE]);
    assert!(listed.success, "{listed:#?}");
    assert!(
        listed.stdout.starts_with("1  phone  created "),
        "{listed:#?}"
    );
    assert!(listed.stdout.contains("last used"), "{listed:#?}");
    assert!(
        !listed.stdout.contains(&token[3..]),
        "the token itself is never shown again"
    );

    // Refusals name what was wrong and change nothing.
    let bad = run(&["token", "create", ALICE, "--name", " "]);
    assert!(
        !bad.success && bad.stderr.contains("token name"),
        "{bad:#?}"
    );
    let bad = run(&["token", "create", "nobody@example.test"]);
    assert!(
        !bad.success && bad.stderr.contains("no such mailbox"),
        "{bad:#?}"
    );
    let bad = run(&["token", "revoke", "bob@example.test", "1"]);
    assert!(
        !bad.success && bad.stderr.contains("has no API token 1"),
        "{bad:#?}"
    );
    assert_eq!(
        get_as(&app, "/api/v1/me", &[("Authorization", &bearer)])
            .await
            .status,
        200
    );

    for (header, names) in [
        ("Bearer bt_1234", "not one of boxtrap's"),
        ("Basic YWxpY2U6eA==", "Bearer"),
        (&*format!("Bearer bt_{}", "0".repeat(64)), "not valid"),
    ] {
        let r = get_as(&app, "/api/v1/me", &[("Authorization", header)]).await;
        assert_eq!(r.status, 401, "{header}: {r:?}");
        assert!(r.header("www-authenticate").is_some(), "{r:?}");
        assert!(
            field(&r.body, "error").contains(names),
            "{header}: {}",
            r.body
        );
    }

    let revoked = run(&["token", "revoke", ALICE, "1"]);
    assert!(revoked.success, "{revoked:#?}");
    let r = get_as(&app, "/api/v1/me", &[("Authorization", &bearer)]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(field(&r.body, "error").contains("revoked"), "{}", r.body);
}

#[tokio::test]
async fn unknown_api_urls_and_wrong_methods_get_json_errors() {
    let app = TestApp::spawn_on(Backend::Sqlite).await;
    set_password(&app, ALICE, ALICE_PW).await;
    let alice = ApiCaller::session(&app, ALICE, ALICE_PW).await;
    let anyone = ApiCaller {
        web: app.web,
        headers: vec![],
    };
    for caller in [&alice, &anyone] {
        for (method, path) in [
            ("GET", "/api/v1/nothing"),
            ("GET", "/api/v1/"),
            ("POST", "/api/v1/held/1/more"),
            ("GET", "/api/v1/lists/allow/1/2"),
        ] {
            let r = caller.call(method, path, "").await;
            assert_eq!(r.status, 404, "{method} {path}: {r:?}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.error(), "no such API URL (docs/openapi.yaml lists them)");
        }
        for (method, path, allow) in [
            ("DELETE", "/api/v1/me", "GET"),
            ("GET", "/api/v1/login", "POST"),
            ("PUT", "/api/v1/held/actions", "POST"),
            ("POST", "/api/v1/settings", "PATCH"),
        ] {
            let r = caller.call(method, path, "").await;
            assert_eq!(r.status, 405, "{method} {path}: {r:?}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert!(r.error().contains(method), "{r:?}");
            assert!(r.header("allow").unwrap().contains(allow), "{r:?}");
        }
    }
    // The pages keep their HTML 404.
    let r = request_from("127.0.0.1", app.web, "GET", "/api/v2/x", &[], "").await;
    assert_eq!(r.status, 404);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
}

on_both_backends!(
    owners_make_list_and_revoke_their_api_tokens_through_the_api,
    |backend: Backend| async move {
        let app = TestApp::spawn_on(backend).await;
        set_password(&app, ALICE, ALICE_PW).await;
        set_password(&app, BOB, BOB_PW).await;
        let alice = ApiCaller::session(&app, ALICE, ALICE_PW).await;
        let bob = ApiCaller::session(&app, BOB, BOB_PW).await;

        let made = alice
            .call("POST", "/api/v1/tokens", r#"{"name": "phone"}"#)
            .await;
        assert_eq!(made.status, 201, "{made:?}");
        let j = made.json();
        let token = j["token"].as_str().unwrap().to_owned();
        let id = j["id"].as_i64().unwrap();
        assert_eq!(j["name"], "phone");
        assert!(j["last_used"].is_null());
        let with_token = ApiCaller::token(&app, &token);
        let me = with_token.call("GET", "/api/v1/me", "").await;
        assert_eq!(me.json()["address"], ALICE);

        let listed = alice.call("GET", "/api/v1/tokens", "").await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let tokens = listed.json()["tokens"].as_array().unwrap().clone();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0]["id"], id);
        assert!(tokens[0]["last_used"].is_string(), "used just now");
        assert!(!listed.body.contains(&token[3..]), "never the secret again");

        // Refused by name, nothing made.
        for (caller, body, status, names) in [
            (&alice, r#"{"name": "  "}"#, 400, "token name"),
            (&alice, r#"{"name": "a\u0007b"}"#, 400, "token name"),
            (
                &alice,
                r#"{"name": "x", "admin": true}"#,
                400,
                "unknown field",
            ),
            (&alice, r#"{}"#, 400, "missing field `name`"),
            (&with_token, r#"{"name": "more"}"#, 403, "signed-in session"),
            (
                &alice.with("X-CSRF-Token", None),
                r#"{"name": "x"}"#,
                403,
                "X-CSRF-Token",
            ),
            (
                &alice.with("Origin", Some("http://evil.example")),
                r#"{"name": "x"}"#,
                403,
                "another site",
            ),
        ] {
            let r = caller.call("POST", "/api/v1/tokens", body).await;
            assert_eq!(r.status, status, "{body}: {r:?}");
            assert!(r.error().contains(names), "{body}: {r:?}");
        }
        assert_eq!(
            app.store
                .api_tokens(app.mailbox_id(ALICE).await)
                .await
                .unwrap()
                .len(),
            1
        );

        // Bob sees none of alice's tokens and cannot revoke hers.
        let bobs = bob.call("GET", "/api/v1/tokens", "").await;
        assert_eq!(bobs.json()["tokens"].as_array().unwrap().len(), 0);
        for path in [format!("/api/v1/tokens/{id}"), "/api/v1/tokens/x".into()] {
            let r = bob.call("DELETE", &path, "").await;
            assert_eq!(r.status, 404, "{r:?}");
            assert!(r.error().contains("no API token"), "{r:?}");
        }
        let r = alice
            .with("X-CSRF-Token", None)
            .call("DELETE", &format!("/api/v1/tokens/{id}"), "")
            .await;
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(with_token.call("GET", "/api/v1/me", "").await.status, 200);

        // A token may revoke itself; then it no longer works.
        let r = with_token
            .call("DELETE", &format!("/api/v1/tokens/{id}"), "")
            .await;
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(with_token.call("GET", "/api/v1/me", "").await.status, 401);
        let r = alice
            .call("DELETE", &format!("/api/v1/tokens/{id}"), "")
            .await;
        assert_eq!(r.status, 404, "{r:?}");
    }
);

on_both_backends!(
    the_settings_page_makes_shows_once_and_revokes_api_tokens,
    |backend: Backend| async move {
        let app = TestApp::spawn_on(backend).await;
        set_password(&app, ALICE, ALICE_PW).await;
        set_password(&app, BOB, BOB_PW).await;
        let (alice, _) = Browser::signed_in(&app, ALICE, ALICE_PW).await;
        let (bob, _) = Browser::signed_in(&app, BOB, BOB_PW).await;
        let page = alice.get("/settings").await;
        assert!(
            page.body.contains("You have no API tokens."),
            "{}",
            page.body
        );
        let csrf = page.csrf();

        let made = alice
            .post(
                "/settings/tokens",
                &format!("csrf={csrf}&name={}", enc("phone <script>x</script>")),
            )
            .await;
        assert_eq!(made.status, 200, "{made:?}");
        assert!(made.body.contains("it is not shown again"), "{}", made.body);
        assert!(
            made.body.contains("phone &#60;script&#62;"),
            "{}",
            made.body
        );
        assert!(!made.body.contains("<script>x"), "escaped");
        let at = made.body.find(">bt_").expect("the token shown") + 1;
        let token = made.body[at..at + 67].to_owned();
        let me = ApiCaller::token(&app, &token)
            .call("GET", "/api/v1/me", "")
            .await;
        assert_eq!(me.json()["address"], ALICE);

        let page = alice.get("/settings").await;
        assert!(!page.body.contains(&token[3..]), "shown only once");
        assert!(page.body.contains("phone &#60;script&#62;"));
        let id = app
            .store
            .api_tokens(app.mailbox_id(ALICE).await)
            .await
            .unwrap()[0]
            .id;
        let revoke = format!("/settings/tokens/{id}/revoke");
        assert!(page.body.contains(&revoke), "{}", page.body);
        assert!(!bob.get("/settings").await.body.contains(&revoke));

        // A bad name: refused by name, what was typed kept, nothing made.
        let bad = alice
            .post("/settings/tokens", &format!("csrf={csrf}&name=%20"))
            .await;
        assert_eq!(bad.status, 400, "{bad:?}");
        assert!(
            bad.body.contains("Nothing was made: token name"),
            "{}",
            bad.body
        );
        let long = "n".repeat(101);
        let bad = alice
            .post("/settings/tokens", &format!("csrf={csrf}&name={long}"))
            .await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains(&format!("value=\"{long}\"")));
        // No CSRF token, another site, bob with alice's id: refused.
        let r = alice.post("/settings/tokens", "name=x").await;
        assert_eq!(r.status, 403);
        let r = alice
            .post_with(
                &revoke,
                &format!("csrf={csrf}"),
                &[("Origin", "http://evil.example")],
            )
            .await;
        assert_eq!(r.status, 403);
        let bob_csrf = bob.get("/settings").await.csrf();
        let r = bob.post(&revoke, &format!("csrf={bob_csrf}")).await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(
            app.store
                .api_tokens(app.mailbox_id(ALICE).await)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            ApiCaller::token(&app, &token)
                .call("GET", "/api/v1/me", "")
                .await
                .status,
            200
        );

        let r = alice.post(&revoke, &format!("csrf={csrf}")).await;
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(
            r.header("location"),
            Some("/settings?done=token-revoked#tokens")
        );
        let page = alice.get("/settings?done=token-revoked").await;
        assert!(page.body.contains("The API token was revoked"));
        assert!(page.body.contains("You have no API tokens."));
        assert_eq!(
            ApiCaller::token(&app, &token)
                .call("GET", "/api/v1/me", "")
                .await
                .status,
            401
        );
    }
);
