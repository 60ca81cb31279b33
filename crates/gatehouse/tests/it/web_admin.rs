//! The administrators' pages of the web app over HTTP: Users (create, make admin,
//! disable, reset a password, grant roles) and the Audit log (filters, paging).
//! Each refusal says why and changes nothing.

use serde_json::{Value, json};

use crate::support::*;
use crate::web_app::{get, location, post, post_from, sign_in, text};

/// Follows the redirect a form answers with and returns the page it leads to.
fn after(server: &TestServer, cookie: &str, response: reqwest::blocking::Response) -> String {
    assert_eq!(response.status(), 303, "a form answers with a redirect");
    text(get(server, cookie, &location(&response)), 200)
}

fn user_list(server: &TestServer) -> String {
    server.cli_ok(&["user", "list"])
}

#[test]
fn administrators_manage_users_in_the_web_app() {
    let server = TestServer::start();
    server.cli_ok(&["registry", "create", "team"]);
    server.add_user("dana", "dana-password-1");
    let admin = sign_in(&server, "admin", ADMIN_PASSWORD);
    let dana = sign_in(&server, "dana", "dana-password-1");

    // Not for everyone: no link, and the page and its forms say who may.
    let home = text(get(&server, &dana, "/-/ui/"), 200);
    assert!(!home.contains("href=\"/-/ui/users\"") && !home.contains("href=\"/-/ui/audit\""));
    let refused = text(get(&server, &dana, "/-/ui/users"), 403);
    assert!(refused.contains("The Users page is for administrators"), "{refused}");
    let before = user_list(&server);
    let refused = post(
        &server,
        &dana,
        "/-/ui/users",
        &[("name", "mallory"), ("password", "mallory-password"), ("admin", "on")],
    );
    assert_eq!(refused.status(), 403);
    assert_eq!(user_list(&server), before, "nothing created");

    let page = text(get(&server, &admin, "/-/ui/users"), 200);
    assert!(page.contains("href=\"/-/ui/users\">Users</a>") && page.contains("href=\"/-/ui/audit\">Audit log</a>"));
    assert!(page.contains("<td>dana</td>"), "{page}");

    // Create, with every bad form refused and nothing stored.
    for (form, status, message) in [
        (
            vec![("name", "Carol!"), ("password", "carol-password-1")],
            400,
            "invalid user name \"Carol!\"",
        ),
        (
            vec![("name", "carol"), ("password", "short")],
            400,
            "password must be at least 8 characters",
        ),
        (
            vec![("name", "dana"), ("password", "another-password")],
            409,
            "a user named \"dana\" already exists",
        ),
    ] {
        let answer = text(post(&server, &admin, "/-/ui/users", &form), status);
        assert!(answer.contains(message), "{form:?}: {answer}");
        assert_eq!(user_list(&server), before, "{form:?}: nothing created");
    }
    let created = after(
        &server,
        &admin,
        post(
            &server,
            &admin,
            "/-/ui/users",
            &[
                ("name", "carol"),
                ("email", "carol@example.com"),
                ("password", "carol-password-1"),
            ],
        ),
    );
    assert!(created.contains("Created user carol."), "{created}");
    assert!(created.contains("<td>carol@example.com</td>"));
    let carol = sign_in(&server, "carol", "carol-password-1");
    assert_eq!(get(&server, &carol, "/-/ui/users").status(), 403);

    // Make admin, and back; the last administrator stays one.
    let made = after(
        &server,
        &admin,
        post(&server, &admin, "/-/ui/users/carol", &[("change", "admin")]),
    );
    assert!(made.contains("carol is now an administrator."), "{made}");
    assert_eq!(get(&server, &carol, "/-/ui/users").status(), 200);
    let undone = after(
        &server,
        &admin,
        post(&server, &admin, "/-/ui/users/carol", &[("change", "user")]),
    );
    assert!(undone.contains("carol is no longer an administrator."));
    let last = text(post(&server, &admin, "/-/ui/users/admin", &[("change", "user")]), 409);
    assert!(
        last.contains("admin is the only administrator; make someone else one first"),
        "{last}"
    );
    assert_eq!(
        get(&server, &admin, "/-/ui/users").status(),
        200,
        "still an administrator"
    );

    // Disable: no sign-in, no tokens; enable again. Nobody disables themselves.
    let token = server.login("team", "carol", "carol-password-1");
    let disabled = after(
        &server,
        &admin,
        post(&server, &admin, "/-/ui/users/carol", &[("change", "disable")]),
    );
    assert!(disabled.contains("carol is disabled"), "{disabled}");
    let refused = post(
        &server,
        "",
        "/-/ui/login",
        &[
            ("username", "carol"),
            ("password", "carol-password-1"),
            ("next", "/-/ui/"),
        ],
    );
    assert!(text(refused, 403).contains("This account is disabled"));
    let refused = expect_error(get_from(&server, "team", "-/whoami", &token), 403);
    assert!(refused.contains("disabled"), "{refused}");
    after(
        &server,
        &admin,
        post(&server, &admin, "/-/ui/users/carol", &[("change", "enable")]),
    );
    assert_eq!(get_from(&server, "team", "-/whoami", &token).status(), 200);
    let own = text(
        post(&server, &admin, "/-/ui/users/admin", &[("change", "disable")]),
        409,
    );
    assert!(own.contains("You cannot disable your own account"), "{own}");

    // Reset a password: the old one stops working.
    let short = text(
        post(
            &server,
            &admin,
            "/-/ui/password-reset",
            &[("user", "carol"), ("password", "short")],
        ),
        400,
    );
    assert!(short.contains("at least 8 characters"));
    server.login("team", "carol", "carol-password-1");
    let reset = after(
        &server,
        &admin,
        post(
            &server,
            &admin,
            "/-/ui/password-reset",
            &[("user", "carol"), ("password", "carol-password-2")],
        ),
    );
    assert!(reset.contains("carol's password was reset"), "{reset}");
    let old = http()
        .put(format!("{}-/user/org.couchdb.user:carol", server.registry_url("team")))
        .json(&json!({"name": "carol", "password": "carol-password-1"}))
        .send()
        .expect("login");
    assert_eq!(old.status(), 401);
    server.login("team", "carol", "carol-password-2");

    // Grants per registry, shown on the Users page and the registry's Access tab.
    let granted = after(
        &server,
        &admin,
        post(
            &server,
            &admin,
            "/-/ui/grants",
            &[("user", "carol"), ("registry", "team"), ("role", "publish")],
        ),
    );
    assert!(granted.contains("carol now has publish in team."), "{granted}");
    assert!(granted.contains("team: publish"), "{granted}");
    let access = text(get(&server, &admin, "/-/ui/r/team/access"), 200);
    assert!(access.contains("<tr><td>carol</td><td>publish</td></tr>"), "{access}");
    let unknown = text(
        post(
            &server,
            &admin,
            "/-/ui/grants",
            &[("user", "nobody"), ("registry", "team"), ("role", "read")],
        ),
        404,
    );
    assert!(unknown.contains("no user named \"nobody\""), "{unknown}");

    // From another site: refused, nothing changed.
    let before = user_list(&server);
    let forged = post_from(
        &server,
        "http://127.0.0.1:1",
        &admin,
        "/-/ui/users/dana",
        &[("change", "admin")],
    );
    assert_eq!(forged.status(), 403);
    assert_eq!(user_list(&server), before);
}

#[test]
fn the_audit_log_filters_and_pages_without_skipping_an_entry() {
    let server = TestServer::start();
    let token = server.admin_token();
    let api = |path: &str| format!("{}/-/api/v1{path}", server.base);
    let names: Vec<String> = (0..57).map(|i| format!("audited-{i:02}")).collect();
    for name in &names {
        let created = http()
            .post(api("/registries"))
            .bearer_auth(&token)
            .json(&json!({ "name": name }))
            .send()
            .expect("create");
        assert_eq!(created.status(), 201, "{name}");
    }
    server.add_user("erin", "erin-password-1");
    let erin = sign_in(&server, "erin", "erin-password-1");
    let refused = text(get(&server, &erin, "/-/ui/audit?action=registry.create"), 403);
    assert!(refused.contains("The audit log is for administrators"), "{refused}");

    let admin = sign_in(&server, "admin", ADMIN_PASSWORD);
    let page = text(get(&server, &admin, "/-/ui/audit"), 200);
    for label in ["Registry", "User", "Action"] {
        assert!(page.contains(&format!("<label>{label}")), "a filter labelled {label}");
    }

    // Two pages of the 57 creations, newest first, each exactly once.
    let first = text(
        get(&server, &admin, "/-/ui/audit?action=registry.create&user=admin"),
        200,
    );
    let shown = |page: &str| -> Vec<String> {
        names
            .iter()
            .filter(|n| page.contains(&format!("<td>{n}</td>")))
            .cloned()
            .collect()
    };
    let first_names = shown(&first);
    assert_eq!(first_names.len(), 50, "a page holds 50 entries");
    let older = first
        .split("<a href=\"/-/ui/audit?")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to older entries");
    assert!(first.contains(">Older entries</a>"));
    let second = text(get(&server, &admin, &format!("/-/ui/audit?{older}")), 200);
    let second_names = shown(&second);
    assert_eq!(second_names.len(), 7);
    assert!(!second.contains("Older entries"), "the last page");
    let mut all = [first_names.clone(), second_names].concat();
    all.sort();
    assert_eq!(all, names, "every entry once");
    assert!(first_names.contains(&"audited-56".to_owned()), "newest first");

    // Narrowed by registry and by user; a time nobody can read is refused.
    let one = text(get(&server, &admin, "/-/ui/audit?registry=audited-03"), 200);
    assert_eq!(shown(&one), vec!["audited-03".to_owned()]);
    assert!(
        one.contains("<option selected>audited-03</option>"),
        "the filter stays chosen"
    );
    let nobody = text(
        get(&server, &admin, "/-/ui/audit?user=erin&action=registry.create"),
        200,
    );
    assert!(nobody.contains("No entries match."));
    let bad = text(get(&server, &admin, "/-/ui/audit?from=yesterday"), 400);
    assert!(
        bad.contains("From: \"yesterday\" is not a time like 2026-12-01T09:30 (UTC)."),
        "{bad}"
    );
    let bad = text(get(&server, &admin, "/-/ui/audit?action=registry.explode"), 400);
    assert!(bad.contains("unknown action \"registry.explode\""), "{bad}");
    let future = text(get(&server, &admin, "/-/ui/audit?from=2999-01-01T00:00"), 200);
    assert!(future.contains("No entries match."));
    let api_entries: Value = http()
        .get(api("/audit?action=registry.create&user=admin&limit=1000"))
        .bearer_auth(&token)
        .send()
        .expect("api")
        .json()
        .expect("json");
    assert_eq!(
        api_entries["entries"].as_array().map(Vec::len),
        Some(57),
        "the API agrees"
    );
}
