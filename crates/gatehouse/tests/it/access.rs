//! Access control: roles, scoped tokens, attacks on authentication.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::*;

fn get(server: &TestServer, registry: &str, path: &str, token: &str) -> reqwest::blocking::Response {
    http()
        .get(format!("{}{path}", server.registry_url(registry)))
        .bearer_auth(token)
        .send()
        .expect("get")
}

fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

#[test]
fn a_read_only_token_is_refused_on_every_write_endpoint() {
    let server = TestServer::start();
    let admin = server.admin_token();
    publish_ok(&server, "default", &admin, "guarded", "1.0.0");
    let ro = server.create_token(&["--user", "admin", "--read-only", "--registry", "default"]);
    let base = server.registry_url("default");
    let before = packument(&server, "default", &admin, "guarded").expect("exists");
    let rev = before["_rev"].as_str().expect("rev").to_owned();
    let blobs = blob_count(&server);

    let mut deprecated = before.clone();
    deprecated["versions"]["1.0.0"]["deprecated"] = json!("no");
    let attempts: Vec<(&str, reqwest::blocking::RequestBuilder)> = vec![
        (
            "publish",
            http()
                .put(format!("{base}guarded"))
                .json(&publish_body("guarded", "1.0.1")),
        ),
        (
            "publish new",
            http().put(format!("{base}fresh")).json(&publish_body("fresh", "1.0.0")),
        ),
        (
            "dist-tag add",
            http()
                .put(format!("{base}-/package/guarded/dist-tags/beta"))
                .json(&json!("1.0.0")),
        ),
        (
            "dist-tag rm",
            http().delete(format!("{base}-/package/guarded/dist-tags/latest")),
        ),
        ("deprecate", http().put(format!("{base}guarded")).json(&deprecated)),
        ("unpublish", http().delete(format!("{base}guarded/-rev/{rev}"))),
        (
            "owner add",
            http()
                .put(format!("{base}guarded/-rev/{rev}"))
                .json(&json!({"_id": "guarded", "_rev": rev, "maintainers": [{"name": "admin"}, {"name": "x"}]})),
        ),
        (
            "token create",
            http()
                .post(format!("{base}-/npm/v1/tokens"))
                .json(&json!({"password": ADMIN_PASSWORD})),
        ),
    ];
    for (what, request) in attempts {
        let error = expect_error(request.bearer_auth(&ro).send().expect("send"), 403);
        assert!(error.contains("read-only"), "{what}: {error}");
    }
    let after = packument(&server, "default", &admin, "guarded").expect("exists");
    assert_eq!(before, after, "nothing changed");
    assert_eq!(blob_count(&server), blobs);
    assert!(packument(&server, "default", &admin, "fresh").is_none());
    // Reading still works.
    assert_eq!(get(&server, "default", "guarded", &ro).status(), 200);
}

#[test]
fn registry_package_and_address_limits_are_enforced() {
    let server = TestServer::start_with_config("[registries.team]\n");
    let admin = server.admin_token();
    let team_admin = server.login("team", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "default", &admin, "@acme/lib", "1.0.0");
    publish_ok(&server, "default", &admin, "other-lib", "1.0.0");
    publish_ok(&server, "team", &team_admin, "team-lib", "1.0.0");

    let team_only = server.create_token(&["--user", "admin", "--registry", "team"]);
    assert_eq!(get(&server, "team", "team-lib", &team_only).status(), 200);
    let error = expect_error(get(&server, "default", "@acme%2flib", &team_only), 403);
    assert!(error.contains("not valid for registry"), "{error}");

    let acme_only = server.create_token(&["--user", "admin", "--package", "@acme/*"]);
    assert_eq!(get(&server, "default", "@acme%2flib", &acme_only).status(), 200);
    for path in ["other-lib", "does-not-exist", "other-lib/-/other-lib-1.0.0.tgz"] {
        let error = expect_error(get(&server, "default", path, &acme_only), 403);
        assert!(error.contains("limited to other packages"), "{path}: {error}");
    }
    let refused = publish(&server, "default", &acme_only, &publish_body("other-lib", "1.0.1"));
    assert_eq!(refused.status(), 403);
    publish_ok(&server, "default", &acme_only, "@acme/lib", "1.0.1");

    let lan_only = server.create_token(&["--user", "admin", "--cidr", "10.0.0.0/8"]);
    let error = expect_error(get(&server, "default", "@acme%2flib", &lan_only), 403);
    assert!(error.contains("may not be used from 127.0.0.1"), "{error}");
    // Without trusted proxies, X-Forwarded-For is ignored: no spoofing into the range.
    let spoofed = http()
        .get(format!("{}@acme%2flib", server.registry_url("default")))
        .bearer_auth(&lan_only)
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .expect("get");
    assert_eq!(spoofed.status(), 403);
    let loopback = server.create_token(&["--user", "admin", "--cidr", "127.0.0.0/8"]);
    assert_eq!(get(&server, "default", "@acme%2flib", &loopback).status(), 200);
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let server = TestServer::start_with_config("trusted_proxies = [\"127.0.0.1/32\"]\n");
    let lan_only = server.create_token(&["--user", "admin", "--cidr", "10.0.0.0/8"]);
    let with_hops = |hops: &str| {
        http()
            .get(format!("{}-/whoami", server.registry_url("default")))
            .bearer_auth(&lan_only)
            .header("x-forwarded-for", hops)
            .send()
            .expect("get")
            .status()
    };
    assert_eq!(with_hops("10.1.2.3"), 200);
    // The right-most untrusted hop is the client; a forged left part changes nothing.
    assert_eq!(with_hops("10.9.9.9, 192.0.2.7"), 403);
    assert_eq!(with_hops("10.1.2.3, 127.0.0.1"), 200);
    assert_eq!(with_hops("garbage"), 403);
}

/// Behind a load balancer the admin API sees the caller's address, as the npm routes do:
/// an admin token limited to the office network works from there, through the balancer.
#[test]
fn the_admin_api_honours_trusted_proxies() {
    let server = TestServer::start_with_config("trusted_proxies = [\"127.0.0.1/32\"]\n");
    let office_only = server.create_token(&["--user", "admin", "--cidr", "10.0.0.0/8"]);
    let from = |forwarded_for: &str| {
        http()
            .get(format!("{}/-/api/v1/registries", server.base))
            .bearer_auth(&office_only)
            .header("x-forwarded-for", forwarded_for)
            .send()
            .expect("get")
    };
    let inside = from("10.1.2.3");
    assert_eq!(inside.status(), 200);
    let listed: serde_json::Value = inside.json().expect("json");
    assert_eq!(listed["registries"][0]["name"], "default");
    let outside = expect_error(from("192.0.2.7"), 403);
    assert!(outside.contains("192.0.2.7"), "names the address refused: {outside}");
    // The failed-login limits count the caller's address, not the balancer's: one
    // address guessing passwords is stopped, everyone else behind the balancer is not.
    let with_password = |user: &str, password: &str, forwarded_for: &str| {
        http()
            .get(format!("{}/-/api/v1/registries", server.base))
            .basic_auth(user, Some(password))
            .header("x-forwarded-for", forwarded_for)
            .send()
            .expect("get")
            .status()
    };
    for i in 0..50 {
        assert_eq!(
            with_password(&format!("guess{i}"), "wrong-password", "198.51.100.9"),
            401
        );
    }
    assert_eq!(with_password("guess50", "wrong-password", "198.51.100.9"), 429);
    assert_eq!(with_password("admin", ADMIN_PASSWORD, "203.0.113.5"), 200);
}

#[test]
fn expired_revoked_and_malformed_credentials_get_401_without_leaking() {
    let server = TestServer::start();
    let admin = server.admin_token();
    publish_ok(&server, "default", &admin, "secret-pkg", "1.0.0");
    let short = server.create_token(&["--user", "admin", "--expires", "1s"]);
    assert!(eventually(Duration::from_secs(5), || {
        get(&server, "default", "secret-pkg", &short).status() == 401
    }));
    let error = expect_error(get(&server, "default", "secret-pkg", &short), 401);
    assert!(error.contains("this token expired at 20"), "{error}");

    let revoked = server.create_token(&["--user", "admin", "--name", "to-revoke"]);
    assert_eq!(get(&server, "default", "secret-pkg", &revoked).status(), 200);
    let list = String::from_utf8_lossy(&server.cli(&["token", "list"], "").stdout).into_owned();
    assert!(!list.contains(&revoked), "token list never shows values");
    let key = list
        .lines()
        .find(|l| l.ends_with("to-revoke"))
        .and_then(|l| l.split('\t').next())
        .expect("listed")
        .to_owned();
    assert!(server.cli(&["token", "revoke", &key], "").status.success());
    // The CLI is another process: the server learns of the revocation from the change log.
    assert!(eventually(Duration::from_secs(5), || {
        get(&server, "default", "secret-pkg", &revoked).status() == 401
    }));
    let error = expect_error(get(&server, "default", "secret-pkg", &revoked), 401);
    assert!(error.contains("this token was revoked"), "{error}");
    // Each 401 says what was wrong.
    for (header, says) in [
        ("Bearer not-a-token".to_owned(), "not a Gatehouse token"),
        (format!("Bearer gth_{}", "x".repeat(43)), "not known to this server"),
        (
            basic("someone-else", &admin),
            "belongs to another user than \"someone-else\"",
        ),
    ] {
        let response = http()
            .get(format!("{}secret-pkg", server.registry_url("default")))
            .header("authorization", &header)
            .send()
            .expect("get");
        let error = expect_error(response, 401);
        assert!(error.contains(says), "{header}: {error}");
    }

    let mut wrong_secret = admin.clone();
    wrong_secret.replace_range(10..11, if &admin[10..11] == "A" { "B" } else { "A" });
    let huge = format!("Bearer gth_{}", "a".repeat(20_000));
    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Basic !!!".to_owned(),
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("no-colon")),
        "Digest username=\"admin\"".to_owned(),
        "Bearer not-a-token".to_owned(),
        format!("Bearer {wrong_secret}"),
        huge,
        basic("admin", "wrong-password"),
    ] {
        let response = http()
            .get(format!("{}secret-pkg", server.registry_url("default")))
            .header("authorization", &header)
            .send()
            .expect("get");
        let error = expect_error(response, 401);
        assert!(!error.contains("secret-pkg"), "{error}");
        assert!(!error.to_lowercase().contains("panic"), "{error}");
    }
    // Private registries answer the same to anonymous callers whether a package exists or not.
    for path in ["secret-pkg", "no-such-pkg"] {
        let response = http()
            .get(format!("{}{path}", server.registry_url("default")))
            .send()
            .expect("get");
        assert_eq!(response.status(), 401, "{path}");
    }
    // The server still answers, and the audit log recorded failures without secrets.
    assert_eq!(get(&server, "default", "secret-pkg", &admin).status(), 200);
    let audit = String::from_utf8_lossy(&server.cli(&["audit", "--limit", "200"], "").stdout).into_owned();
    assert!(audit.contains("auth.failed"));
    assert!(
        !audit.contains(&admin[4..]) && !audit.contains(&revoked[4..]),
        "no secrets in the audit log"
    );
}

#[test]
fn password_guessing_is_rate_limited_per_user() {
    let server = TestServer::start();
    server.add_user("frank", "frank-password");
    let login = |password: &str| {
        http()
            .put(format!(
                "{}-/user/org.couchdb.user:frank",
                server.registry_url("default")
            ))
            .json(&json!({"name": "frank", "password": password}))
            .send()
            .expect("put")
    };
    for _ in 0..10 {
        assert_eq!(login("guess-guess").status(), 401);
    }
    let limited = login("frank-password");
    assert_eq!(limited.headers()["retry-after"], "900");
    assert!(expect_error(limited, 429).contains("too many failed logins"));
    // Another user from the same address is not locked out by frank's attacker.
    assert!(server.login("default", "admin", ADMIN_PASSWORD).starts_with("gth_"));
    let audit = String::from_utf8_lossy(&server.cli(&["audit", "--limit", "50"], "").stdout).into_owned();
    assert!(audit.matches("auth.login_failed").count() >= 10, "{audit}");
}

#[test]
fn registry_roles_decide_who_reads_and_publishes() {
    let server = TestServer::start();
    let admin = server.admin_token();
    publish_ok(&server, "default", &admin, "roles-pkg", "1.0.0");
    server.add_user("gina", "gina-password");
    assert!(
        server
            .cli(&["registry", "default-role", "default", "none"], "")
            .status
            .success()
    );
    let gina = server.login("default", "gina", "gina-password");
    // Each CLI change reaches the running server through the change log, within moments.
    let within = Duration::from_secs(5);
    assert!(eventually(within, || get(&server, "default", "roles-pkg", &gina)
        .status()
        == 403));
    for path in ["roles-pkg", "missing-pkg"] {
        let error = expect_error(get(&server, "default", path, &gina), 403);
        assert!(error.contains("no access to registry"), "{error}");
    }
    assert!(
        server
            .cli(&["registry", "grant", "default", "gina", "read"], "")
            .status
            .success()
    );
    assert!(eventually(within, || get(&server, "default", "roles-pkg", &gina)
        .status()
        == 200));
    let error = expect_error(
        publish(&server, "default", &gina, &publish_body("gina-pkg", "1.0.0")),
        403,
    );
    assert!(error.contains("may not publish"), "{error}");
    assert!(
        server
            .cli(&["registry", "grant", "default", "gina", "publish"], "")
            .status
            .success()
    );
    assert!(eventually(within, || {
        publish(&server, "default", &gina, &publish_body("gina-pkg", "1.0.0")).status() == 201
    }));
    // Publishing rights don't extend to other people's packages.
    assert_eq!(
        publish(&server, "default", &gina, &publish_body("roles-pkg", "1.0.1")).status(),
        403
    );
    assert!(
        server
            .cli(&["registry", "grant", "default", "gina", "admin"], "")
            .status
            .success()
    );
    assert!(eventually(within, || {
        publish(&server, "default", &gina, &publish_body("roles-pkg", "1.0.1")).status() == 201
    }));
}

#[test]
fn npm_token_endpoints_create_list_and_revoke() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let base = server.registry_url("default");
    let wrong = http()
        .post(format!("{base}-/npm/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"password": "not-it-at-all", "cidr_whitelist": []}))
        .send()
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let bad_cidr = http()
        .post(format!("{base}-/npm/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"password": ADMIN_PASSWORD, "cidr_whitelist": ["10.0.0.0/99"]}))
        .send()
        .expect("post");
    assert!(expect_error(bad_cidr, 400).contains("invalid CIDR"));

    let created: Value = http()
        .post(format!("{base}-/npm/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"password": ADMIN_PASSWORD, "name": "ci", "packages_and_scopes_permission": "read-only"}))
        .send()
        .expect("post")
        .json()
        .expect("json");
    let token = created["token"].as_str().expect("token");
    assert!(token.starts_with("gth_"));
    assert_eq!(created["readonly"], true);

    let list: Value = get(&server, "default", "-/npm/v1/tokens", &admin).json().expect("json");
    assert!(list["urls"].is_object(), "npm needs urls");
    let objects = list["objects"].as_array().expect("objects");
    assert_eq!(list["total"], objects.len());
    let listed = objects.iter().find(|o| o["key"] == created["key"]).expect("listed");
    assert_eq!(listed["readonly"], true);
    assert!(!listed["token"].as_str().expect("display").contains(&token[10..]));

    let key = created["key"].as_str().expect("key");
    let revoke = http()
        .delete(format!("{base}-/npm/v1/tokens/token/{key}"))
        .bearer_auth(&admin)
        .send()
        .expect("delete");
    assert_eq!(revoke.status(), 204);
    assert_eq!(get(&server, "default", "-/whoami", token).status(), 401);
}

/// Replays the requests Unity's Package Manager makes for a scoped registry, with
/// `.upmconfig.toml` `token` (Bearer) and `_auth` (Basic) credentials.
#[test]
fn unity_package_manager_requests_succeed() {
    let server = TestServer::start();
    let admin = server.admin_token();
    publish_ok(&server, "default", &admin, "com.acme.tools", "1.2.0");
    publish_ok(&server, "default", &admin, "com.acme.core", "2.0.0");
    let upm = server.create_token(&["--user", "admin", "--read-only", "--registry", "default"]);
    let base = server.registry_url("default");
    for auth in [
        format!("Bearer {upm}"),
        basic("admin", ADMIN_PASSWORD),
        basic("admin", &upm),
        // Unity's documented `_auth` form: base64("email:token"); the token decides.
        basic("dev@acme.example", &upm),
    ] {
        let search: Value = http()
            .get(format!("{base}-/v1/search?text=com.acme&from=0&size=250"))
            .header("authorization", &auth)
            .header("user-agent", "UnityEditor/6000.0 (UPM)")
            .send()
            .expect("search")
            .json()
            .expect("json");
        assert_eq!(search["total"], 2, "{auth}");
        let all: Value = http()
            .get(format!("{base}-/all"))
            .header("authorization", &auth)
            .send()
            .expect("all")
            .json()
            .expect("json");
        assert_eq!(all["com.acme.tools"]["dist-tags"]["latest"], "1.2.0");
        let doc: Value = http()
            .get(format!("{base}com.acme.tools"))
            .header("authorization", &auth)
            .send()
            .expect("packument")
            .json()
            .expect("json");
        let tarball = doc["versions"]["1.2.0"]["dist"]["tarball"].as_str().expect("tarball");
        let response = http()
            .get(tarball)
            .header("authorization", &auth)
            .send()
            .expect("tarball");
        assert_eq!(response.status(), 200);
    }
    let anonymous = http()
        .get(format!("{base}-/v1/search?text=com.acme"))
        .send()
        .expect("search");
    assert_eq!(anonymous.status(), 401);
}

#[test]
fn logging_in_with_a_token_as_the_password_returns_that_token() {
    let server = TestServer::start_with_config("[registries.elsewhere]\n");
    server.add_user("hana", "hana-password");
    let token = server.create_token(&["--user", "hana", "--read-only", "--registry", "default"]);
    let login = |user: &str, password: &str| {
        http()
            .put(format!(
                "{}-/user/org.couchdb.user:{user}",
                server.registry_url("default")
            ))
            .json(&json!({"name": user, "password": password}))
            .send()
            .expect("put")
    };
    let body: Value = login("hana", &token).json().expect("json");
    assert_eq!(body["token"], token.as_str(), "no new, stronger token is minted");
    // The token must belong to the user who logs in.
    assert!(expect_error(login("admin", &token), 401).contains("incorrect username or token"));
    let mut wrong = token.clone();
    wrong.replace_range(10..11, if &token[10..11] == "x" { "y" } else { "x" });
    assert_eq!(login("hana", &wrong).status(), 401);
    let other_registry = server.create_token(&["--user", "hana", "--registry", "elsewhere"]);
    assert_eq!(login("hana", &other_registry).status(), 403);
}

/// The bodies npm 11 sends for `npm token create`: each token does what was asked,
/// never more, and a limit Gatehouse can't enforce is refused with nothing created.
#[test]
fn npm_11_token_requests_grant_exactly_what_they_ask() {
    let server = TestServer::start();
    server.add_user("tess", "tess-password-1");
    let login = server.login("default", "tess", "tess-password-1");
    let admin = server.admin_token();
    publish_ok(&server, "default", &admin, "someone-elses", "1.0.0");
    let create = |body: Value| {
        http()
            .post(format!("{}-/npm/v1/tokens", server.registry_url("default")))
            .bearer_auth(&login)
            .json(&body)
            .send()
            .expect("create")
    };
    let token_of = |response: reqwest::blocking::Response| -> (String, Option<String>) {
        assert_eq!(response.status(), 201);
        let notice = response
            .headers()
            .get("npm-notice")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().expect("json");
        (body["token"].as_str().expect("token").to_owned(), notice)
    };
    let publishes = |token: &str, name: &str| publish(&server, "default", token, &publish_body(name, "1.0.0")).status();
    let reads = |token: &str, name: &str| get(&server, "default", name, token).status();

    // `--read-only`: npm 11 sends nothing for it; the answer says how to ask.
    let (plain, notice) = token_of(create(json!({"name": null, "password": "tess-password-1"})));
    assert!(notice.is_some_and(|n| n.contains("--packages-and-scopes-permission read-only")));
    assert_eq!(publishes(&plain, "tess-plain"), 201);

    let (read_only, notice) = token_of(create(json!({
        "password": "tess-password-1", "packages_and_scopes_permission": "read-only"
    })));
    assert_eq!(notice, None);
    assert_eq!(reads(&read_only, "someone-elses"), 200);
    let refused = expect_error(
        publish(&server, "default", &read_only, &publish_body("tess-ro", "1.0.0")),
        403,
    );
    assert!(refused.contains("read-only"), "{refused}");

    let (scoped, _) = token_of(create(json!({
        "password": "tess-password-1", "packages": ["tess-one"], "scopes": ["@tess"],
        "packages_and_scopes_permission": "read-write"
    })));
    assert_eq!(publishes(&scoped, "tess-one"), 201);
    assert_eq!(publishes(&scoped, "@tess/lib"), 201);
    assert_eq!(publishes(&scoped, "tess-two"), 403);
    assert_eq!(reads(&scoped, "someone-elses"), 403);

    let (all, _) = token_of(create(json!({
        "password": "tess-password-1", "packages_all": true, "packages_and_scopes_permission": "read-write",
        "expires": 30
    })));
    assert_eq!(reads(&all, "someone-elses"), 200);

    let before = String::from_utf8_lossy(&server.cli(&["token", "list", "--user", "tess"], "").stdout)
        .lines()
        .count();
    for (body, says) in [
        (
            json!({"password": "tess-password-1", "packages_and_scopes_permission": "no-access"}),
            "no-access",
        ),
        (
            json!({"password": "tess-password-1", "orgs": ["acme"], "orgs_permission": "read-write"}),
            "no organisations",
        ),
        (
            json!({"password": "tess-password-1", "scopes": ["@Bad Scope"]}),
            "not an npm scope",
        ),
    ] {
        let error = expect_error(create(body.clone()), 400);
        assert!(error.contains(says), "{body}: {error}");
    }
    let after = String::from_utf8_lossy(&server.cli(&["token", "list", "--user", "tess"], "").stdout)
        .lines()
        .count();
    assert_eq!(after, before, "a refused request creates no token");
}

/// Administrators manage users' lifecycles from the CLI and the admin API: a disabled
/// user's tokens stop at once, a lockout can be cleared, the last admin stays.
#[test]
fn users_are_disabled_unlocked_promoted_and_deleted() {
    let server = TestServer::start();
    server.add_user("dora", "dora-password-1");
    let dora = server.create_token(&["--user", "dora"]);
    let admin = server.create_token(&["--user", "admin"]);
    let api = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = http()
            .request(method, format!("{}/-/api/v1/users{path}", server.base))
            .bearer_auth(&admin);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
        .expect("api")
    };
    let whoami = |token: &str| get(&server, "default", "-/whoami", token);
    assert_eq!(whoami(&dora).status(), 200);

    // Disabled through the API: refused on the very next request, password logins too.
    assert_eq!(
        api(reqwest::Method::PATCH, "/dora", Some(json!({"disabled": true}))).status(),
        200
    );
    let error = expect_error(whoami(&dora), 403);
    assert_eq!(error, "the account \"dora\" is disabled; ask an administrator");
    let login = http()
        .put(format!(
            "{}-/user/org.couchdb.user:dora",
            server.registry_url("default")
        ))
        .json(&json!({ "name": "dora", "password": "dora-password-1" }))
        .send()
        .expect("login");
    assert!(expect_error(login, 403).contains("is disabled"));
    let listed: Value = api(reqwest::Method::GET, "", None).json().expect("json");
    let row = listed["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["name"] == "dora")
        .cloned();
    assert_eq!(row.map(|u| u["disabled"].clone()), Some(json!(true)));
    // Enabled from the CLI, another process: the server follows its change log.
    assert!(server.cli(&["user", "enable", "dora"], "").status.success());
    assert!(eventually(Duration::from_secs(5), || whoami(&dora).status() == 200));
    assert!(server.cli(&["user", "disable", "dora"], "").status.success());
    assert!(eventually(Duration::from_secs(5), || whoami(&dora).status() == 403));
    assert!(server.cli(&["user", "enable", "dora"], "").status.success());

    // A lockout is cleared for the user name on the running server.
    for _ in 0..10 {
        let failed = http()
            .get(format!("{}-/whoami", server.registry_url("default")))
            .basic_auth("dora", Some("wrong-password"))
            .send()
            .expect("get");
        assert_eq!(failed.status(), 401);
    }
    let locked = http()
        .get(format!("{}-/whoami", server.registry_url("default")))
        .basic_auth("dora", Some("dora-password-1"))
        .send()
        .expect("get");
    assert_eq!(locked.status(), 429);
    assert!(server.cli(&["user", "unlock", "dora"], "").status.success());
    assert!(eventually(Duration::from_secs(5), || {
        http()
            .get(format!("{}-/whoami", server.registry_url("default")))
            .basic_auth("dora", Some("dora-password-1"))
            .send()
            .expect("get")
            .status()
            == 200
    }));

    // Admin on and off; the last administrator can't be removed.
    assert_eq!(
        api(reqwest::Method::PATCH, "/dora", Some(json!({"admin": true}))).status(),
        200
    );
    let listed: Value = http()
        .get(format!("{}/-/api/v1/users", server.base))
        .bearer_auth(&dora)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert!(
        listed["users"].as_array().is_some_and(|u| u.len() == 2),
        "dora administers now"
    );
    assert_eq!(
        api(reqwest::Method::PATCH, "/dora", Some(json!({"admin": false}))).status(),
        200
    );
    let only = expect_error(api(reqwest::Method::DELETE, "/admin", None), 409);
    assert!(only.contains("only administrator"), "{only}");
    let typo = expect_error(
        api(reqwest::Method::PATCH, "/dora", Some(json!({"disabld": true}))),
        400,
    );
    assert!(typo.contains("disabled"), "{typo}");

    // Deleted: their tokens are gone with them.
    assert_eq!(api(reqwest::Method::DELETE, "/dora", None).status(), 204);
    assert_eq!(whoami(&dora).status(), 401);
    assert_eq!(
        expect_error(api(reqwest::Method::DELETE, "/dora", None), 404),
        "no user named \"dora\""
    );
    let audit = String::from_utf8_lossy(&server.cli(&["audit", "--limit", "100"], "").stdout).into_owned();
    for action in [
        "user.disable",
        "user.enable",
        "user.unlock",
        "user.admin",
        "user.delete",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
}

/// What the CLI sets up, the admin API sets up too; a bad request changes nothing.
#[test]
fn users_and_registries_are_created_through_the_admin_api() {
    let server = TestServer::start();
    let admin = server.create_token(&["--user", "admin"]);
    let post = |path: &str, body: Value| {
        http()
            .post(format!("{}/-/api/v1/{path}", server.base))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .expect("post")
    };
    let created = post("users", json!({"name": "finn", "password": "finn-password-1"}));
    assert_eq!(created.status(), 201);
    server.login("default", "finn", "finn-password-1");
    assert!(
        expect_error(
            post("users", json!({"name": "finn", "password": "finn-password-2"})),
            409
        )
        .contains("already exists")
    );
    assert!(
        expect_error(
            post("users", json!({"name": "Bad Name", "password": "long-enough-1"})),
            400
        )
        .contains("invalid user name")
    );
    assert!(expect_error(post("users", json!({"name": "short", "password": "x"})), 400).contains("at least 8"));

    let created: Value = post("registries", json!({"name": "apps", "upstreams": ["registry:default"]}))
        .json()
        .expect("json");
    assert_eq!(created["url"], server.registry_url("apps"));
    let refused = post("registries", json!({"name": "half", "upstreams": ["registry:nowhere"]}));
    assert!(expect_error(refused, 404).contains("no registry named \"nowhere\""));
    let registries = String::from_utf8_lossy(&server.cli(&["registry", "list"], "").stdout).into_owned();
    assert!(
        registries.contains("apps\t") && !registries.contains("half"),
        "{registries}"
    );
    let users = String::from_utf8_lossy(&server.cli(&["user", "list"], "").stdout).into_owned();
    assert!(users.contains("finn\tmember") && !users.contains("short"), "{users}");
}
