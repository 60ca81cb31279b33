//! Upstream management from the CLI, and pushing versions to upstreams:
//! promotion between registries of one server, and publishing to a remote one.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn fails(out: std::process::Output) -> String {
    assert!(!out.status.success(), "command should fail");
    String::from_utf8(out.stderr).expect("utf8")
}

#[test]
fn upstreams_are_managed_from_the_cli() {
    let server = TestServer::start();
    ok(server.cli(&["registry", "create", "prod"], ""));
    ok(server.cli(
        &[
            "registry",
            "create",
            "dev",
            "--upstream",
            "registry:prod",
            "--upstream",
            "npmjs",
        ],
        "",
    ));
    assert_eq!(
        ok(server.cli(&["registry", "upstream", "list", "dev"], "")),
        "registry:prod\tauth:none\tpublic\nnpmjs\tauth:none\tpublic\n"
    );
    ok(server.cli(
        &[
            "registry",
            "upstream",
            "add",
            "dev",
            "https://npm.example.com/r/x",
            "--token",
            "t0k",
            "--internal",
        ],
        "",
    ));
    let listed = ok(server.cli(&["registry", "upstream", "list", "dev"], ""));
    assert!(
        listed.ends_with("https://npm.example.com/r/x/\tauth:token\tinternal\n"),
        "{listed}"
    );
    assert!(!listed.contains("t0k"), "credentials are never printed");

    assert!(fails(server.cli(&["registry", "upstream", "add", "dev", "npmjs"], "")).contains("already has"));
    assert!(
        fails(server.cli(&["registry", "upstream", "add", "dev", "registry:dev"], "")).contains("its own upstream")
    );
    assert!(fails(server.cli(&["registry", "upstream", "add", "dev", "registry:nope"], "")).contains("no registry"));
    assert!(fails(server.cli(&["registry", "upstream", "add", "dev", "ftp://x"], "")).contains("invalid upstream"));
    ok(server.cli(&["registry", "upstream", "remove", "dev", "npmjs"], ""));
    assert!(fails(server.cli(&["registry", "upstream", "remove", "dev", "npmjs"], "")).contains("has no upstream"));
    let listed = ok(server.cli(&["registry", "upstream", "list", "dev"], ""));
    assert!(!listed.contains("npmjs"), "{listed}");
}

#[test]
fn promotion_copies_the_same_bytes_to_the_upstream_registry() {
    let server = TestServer::start();
    ok(server.cli(&["registry", "create", "prod"], ""));
    ok(server.cli(&["registry", "create", "dev", "--upstream", "registry:prod"], ""));
    let dev = server.login("dev", "admin", ADMIN_PASSWORD);
    let prod = server.login("prod", "admin", ADMIN_PASSWORD);
    let bytes = package_tarball("@acme/app", "1.0.0");
    let response = publish(
        &server,
        "dev",
        &dev,
        &publish_body_with("@acme/app", "1.0.0", "latest", &bytes),
    );
    assert_eq!(response.status(), 201);
    assert!(packument(&server, "prod", &prod, "@acme/app").is_none());

    let out = ok(server.cli(&["push", "dev", "@acme/app@1.0.0", "--to", "registry:prod"], ""));
    assert!(out.contains("promoted @acme/app@1.0.0 from dev to prod"), "{out}");

    // The running server sees the CLI's change (through the database's change log).
    let mut promoted = None;
    assert!(eventually(Duration::from_secs(5), || {
        promoted = packument(&server, "prod", &prod, "@acme/app");
        promoted.is_some()
    }));
    let promoted: Value = promoted.expect("promoted");
    let original = packument(&server, "dev", &dev, "@acme/app").expect("exists");
    assert_eq!(
        promoted["versions"]["1.0.0"]["dist"]["integrity"],
        original["versions"]["1.0.0"]["dist"]["integrity"]
    );
    assert_eq!(promoted["versions"]["1.0.0"]["_npmUser"]["name"], "admin");
    assert_eq!(promoted["dist-tags"]["latest"], "1.0.0");
    let tarball = get_from(&server, "prod", "@acme/app/-/app-1.0.0.tgz", &prod);
    assert_eq!(tarball.bytes().expect("bytes").as_ref(), bytes.as_slice());

    let again = fails(server.cli(&["push", "dev", "@acme/app@1.0.0", "--to", "registry:prod"], ""));
    assert!(again.contains("cannot publish over"), "{again}");
    let not_upstream = fails(server.cli(&["push", "prod", "@acme/app@1.0.0", "--to", "registry:dev"], ""));
    assert!(
        not_upstream.contains("is not an upstream of registry prod"),
        "{not_upstream}"
    );
    let missing = fails(server.cli(&["push", "dev", "@acme/app@9.9.9", "--to", "registry:prod"], ""));
    assert!(missing.contains("not available"), "{missing}");
    let audit = ok(server.cli(&["audit"], ""));
    assert!(
        audit.contains("version.push") && audit.contains("version.promote"),
        "{audit}"
    );
}

#[test]
fn pushing_to_a_remote_registry_publishes_with_the_upstream_token() {
    let remote = TestServer::start();
    let remote_token = remote.admin_token();
    let server = TestServer::start();
    let local = server.admin_token();
    publish_ok(&server, "default", &local, "shipped", "2.0.0");
    let url = remote.registry_url("default");
    ok(server.cli(
        &["registry", "upstream", "add", "default", &url, "--token", &remote_token],
        "",
    ));

    let out = ok(server.cli(&["push", "default", "shipped@2.0.0", "--to", &url], ""));
    assert!(out.contains("published shipped@2.0.0"), "{out}");
    let there = packument(&remote, "default", &remote_token, "shipped").expect("published remotely");
    let here = packument(&server, "default", &local, "shipped").expect("exists");
    assert_eq!(
        there["versions"]["2.0.0"]["dist"]["integrity"],
        here["versions"]["2.0.0"]["dist"]["integrity"]
    );
    // A second push is refused by the remote, and says so.
    let again = fails(server.cli(&["push", "default", "shipped@2.0.0", "--to", &url], ""));
    assert!(again.contains("HTTP 403"), "{again}");
}

#[test]
fn the_admin_api_pushes_for_administrators_only() {
    let server = TestServer::start();
    ok(server.cli(&["registry", "create", "prod"], ""));
    ok(server.cli(&["registry", "create", "dev", "--upstream", "registry:prod"], ""));
    let dev = server.login("dev", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "dev", &dev, "api-pkg", "1.0.0");
    server.add_user("mallory", "mallory-password");
    let member = server.login("dev", "mallory", "mallory-password");
    let url = format!("{}/-/api/v1/registries/dev/push", server.base);
    let body = serde_json::json!({"package": "api-pkg", "version": "1.0.0", "to": "registry:prod"});

    assert_eq!(http().post(&url).json(&body).send().expect("post").status(), 401);
    let refused = http().post(&url).bearer_auth(&member).json(&body).send().expect("post");
    assert!(expect_error(refused, 403).contains("administrators"));
    let bad = http()
        .post(&url)
        .bearer_auth(&dev)
        .json(&serde_json::json!({"package": "api-pkg"}))
        .send()
        .expect("post");
    assert_eq!(bad.status(), 400);

    let pushed: Value = http()
        .post(&url)
        .bearer_auth(&dev)
        .json(&body)
        .send()
        .expect("post")
        .json()
        .expect("json");
    assert_eq!(pushed["ok"], true);
    let prod = server.login("prod", "admin", ADMIN_PASSWORD);
    assert!(packument(&server, "prod", &prod, "api-pkg").is_some());
    let listed: Value = http()
        .get(format!("{}/-/api/v1/registries", server.base))
        .bearer_auth(&dev)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(listed["registries"][0]["name"], "default");
    assert_eq!(listed["registries"][1]["upstreams"][0], "registry:prod");
}

/// A CI pipeline publishes to `prod` and installs through `dev` (upstream
/// `registry:prod`) in its next step: the tarball, still in the blob journal, is
/// pulled through at once.
#[test]
fn a_version_published_a_moment_ago_is_pulled_through_a_registry_upstream() {
    let server = TestServer::start();
    ok(server.cli(&["registry", "create", "prod"], ""));
    ok(server.cli(&["registry", "create", "dev", "--upstream", "registry:prod"], ""));
    let token = server.create_token(&["--user", "admin"]);
    for i in 0..20 {
        let name = format!("race-{i}");
        let tarball = package_tarball(&name, "1.0.0");
        let published = publish(
            &server,
            "prod",
            &token,
            &publish_body_with(&name, "1.0.0", "latest", &tarball),
        );
        assert_eq!(published.status(), 201);
        let pulled = get_from(&server, "dev", &format!("{name}/-/{name}-1.0.0.tgz"), &token);
        assert_eq!(pulled.status(), 200, "{name}: {}", server.log());
        assert_eq!(
            pulled.bytes().expect("body").as_ref(),
            tarball.as_slice(),
            "{name}: the published bytes"
        );
    }
}
