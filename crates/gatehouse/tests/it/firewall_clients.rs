//! The firewall with the real clients: every one installs the newest version the
//! policy serves when the newest is blocked or too young; `npm ci` of a lockfile that pins a
//! blocked version fails saying why; `npm audit`, `pnpm audit`, `yarn npm audit`
//! and `bun audit` report an imported advisory; approving a
//! quarantined version makes it installable.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text};
use crate::support::fake_upstream::FakeUpstream;
use crate::support::firewall::osv_fixtures;
use crate::support::*;

const PASSWORD: &str = "e2e-password-1";

/// Publishes `name@version` (a package whose index.js names its version).
fn publish_version(server: &TestServer, token: &str, name: &str, version: &str) {
    publish_ok(server, "default", token, name, version);
}

fn set_policy(server: &TestServer, policy: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy).expect("write policy");
    let out = server.cli(
        &["policy", "set", "default", "--file", file.to_str().expect("path")],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn latest(server: &TestServer, token: &str, name: &str) -> Value {
    packument(server, "default", token, name).expect("packument")["dist-tags"]["latest"].clone()
}

/// A user's token and the server with `@fw/pkg` 1.0.0 and 1.1.0, 1.1.0 denied.
fn server_with_a_denied_newest(kind: ClientKind) -> (TestServer, String) {
    let server = TestServer::start();
    let admin = server.admin_token();
    for v in ["1.0.0", "1.1.0"] {
        publish_version(&server, &admin, "@fw/pkg", v);
    }
    set_policy(
        &server,
        "[[deny]]\npackage = \"@fw/pkg\"\nrange = \"1.1.0\"\nreason = \"the 1.1.0 release is compromised\"\n",
    );
    // Set by another process: the change log carries it (slow on a loaded machine).
    assert!(
        eventually(Duration::from_secs(20), || latest(&server, &admin, "@fw/pkg")
            == "1.0.0"),
        "the policy reaches the server"
    );
    let user = format!("fw-{}", kind.slug());
    server.add_user(&user, PASSWORD);
    let token = server.login("default", &user, PASSWORD);
    (server, token)
}

fn newest_allowed_version_is_installed(kind: ClientKind) {
    if clients_or_skip(&format!("firewall_clients::{}", kind.slug())).is_none() {
        return;
    }
    let (server, token) = server_with_a_denied_newest(kind);
    let app = Project::new(kind);
    app.configure(&server.registry_url("default"), &token);
    app.install(&[("@fw/pkg", "^1.0.0")]);
    assert_eq!(
        app.read_installed("@fw/pkg", "index.js"),
        "module.exports = '@fw/pkg@1.0.0';\n",
        "{kind:?} installs the newest version the policy serves"
    );
    let locked = app.lockfile();
    assert_eq!(locked.get("@fw/pkg").version, "1.0.0");
}

#[test]
fn npm_installs_the_newest_allowed_version() {
    newest_allowed_version_is_installed(ClientKind::Npm);
}

#[test]
fn pnpm_installs_the_newest_allowed_version() {
    newest_allowed_version_is_installed(ClientKind::Pnpm);
}

#[test]
fn yarn_classic_installs_the_newest_allowed_version() {
    newest_allowed_version_is_installed(ClientKind::YarnClassic);
}

#[test]
fn yarn_berry_installs_the_newest_allowed_version() {
    newest_allowed_version_is_installed(ClientKind::YarnBerry);
}

#[test]
fn bun_installs_the_newest_allowed_version() {
    newest_allowed_version_is_installed(ClientKind::Bun);
}

/// Through a proxy whose newest upstream version is younger than the minimum release
/// age, the client installs the one before it (and its lockfile says so).
fn too_young_versions_are_not_installed(kind: ClientKind) {
    if clients_or_skip(&format!("firewall_clients::young_{}", kind.slug())).is_none() {
        return;
    }
    let fake = FakeUpstream::start();
    fake.publish("young-pkg", "1.0.0");
    fake.publish("young-pkg", "1.1.0");
    let just_now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    fake.edit("young-pkg", |doc| doc["time"]["1.1.0"] = json!(just_now));
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n\
         [registries.default.policy.release_age]\nmin = \"2d\"\n",
        fake.url
    ));
    let app = Project::new(kind);
    app.configure(&server.registry_url("default"), &server.admin_token());
    app.install(&[("young-pkg", "^1.0.0")]);
    assert_eq!(
        app.read_installed("young-pkg", "index.js"),
        "module.exports = 'young-pkg@1.0.0';\n"
    );
    assert_eq!(app.lockfile().get("young-pkg").version, "1.0.0");
    assert_eq!(fake.hits("young-pkg/-/young-pkg-1.1.0.tgz"), 0);
}

#[test]
fn npm_does_not_install_a_version_younger_than_the_release_age() {
    too_young_versions_are_not_installed(ClientKind::Npm);
}

#[test]
fn pnpm_does_not_install_a_version_younger_than_the_release_age() {
    too_young_versions_are_not_installed(ClientKind::Pnpm);
}

#[test]
fn yarn_classic_does_not_install_a_version_younger_than_the_release_age() {
    too_young_versions_are_not_installed(ClientKind::YarnClassic);
}

#[test]
fn yarn_berry_does_not_install_a_version_younger_than_the_release_age() {
    too_young_versions_are_not_installed(ClientKind::YarnBerry);
}

#[test]
fn bun_does_not_install_a_version_younger_than_the_release_age() {
    too_young_versions_are_not_installed(ClientKind::Bun);
}

#[test]
fn npm_ci_of_a_lockfile_pinning_a_blocked_version_fails_with_the_reason() {
    if clients_or_skip("firewall_clients::npm_ci").is_none() {
        return;
    }
    let server = TestServer::start();
    let admin = server.admin_token();
    for v in ["1.0.0", "1.1.0"] {
        publish_version(&server, &admin, "@fw/pinned", v);
    }
    let registry = server.registry_url("default");
    // The project locked 1.1.0 before the policy said no.
    let before = Project::new(ClientKind::Npm);
    before.configure(&registry, &admin);
    before.install(&[("@fw/pinned", "1.1.0")]);
    set_policy(
        &server,
        "[[deny]]\npackage = \"@fw/pinned\"\nrange = \"1.1.0\"\nreason = \"the 1.1.0 release is compromised\"\n",
    );
    assert!(eventually(Duration::from_secs(5), || latest(
        &server,
        &admin,
        "@fw/pinned"
    ) == "1.0.0"));

    let ci = Project::new(ClientKind::Npm);
    ci.configure(&registry, &admin);
    ci.copy_from(&before, &["package.json", "package-lock.json"]);
    let out = ci.run_failing(&["ci"]);
    let text = output_text(&out);
    assert!(text.contains("403"), "{text}");
    assert!(
        text.contains("@fw/pinned@1.1.0 is blocked by the policy of registry \"default\" (deny)")
            && text.contains("the 1.1.0 release is compromised"),
        "npm shows which rule and why: {text}"
    );
    assert!(!ci.dir.join("node_modules/@fw/pinned").exists(), "nothing installed");
}

#[test]
fn approving_a_quarantined_version_makes_it_installable() {
    if clients_or_skip("firewall_clients::approve").is_none() {
        return;
    }
    let server = TestServer::start();
    let admin = server.admin_token();
    set_policy(&server, "[install_scripts]\naction = \"quarantine\"\n");
    // A publish that runs a postinstall script: stored, but held for review.
    let manifest = json!({"name": "@fw/native", "version": "1.0.0", "scripts": {"postinstall": "node -e 0"}});
    let bytes = tarball(&[
        ("package/package.json", manifest.to_string().as_bytes()),
        ("package/index.js", b"module.exports = 'native';\n"),
    ]);
    let mut body = publish_body_with("@fw/native", "1.0.0", "latest", &bytes);
    body["versions"]["1.0.0"]["scripts"] = json!({"postinstall": "node -e 0"});
    let response = publish(&server, "default", &admin, &body);
    let notice = response
        .headers()
        .get("npm-notice")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(response.status(), 201);
    assert!(
        notice.is_some_and(|n| n.contains("is quarantined")),
        "the publisher is told"
    );

    let app = Project::new(ClientKind::Npm);
    app.configure(&server.registry_url("default"), &admin);
    let refused = app.install_refused(&[("@fw/native", "1.0.0")]);
    let text = output_text(&refused);
    assert!(
        text.contains("is quarantined by the policy of registry \"default\" (install_scripts)"),
        "{text}"
    );

    let out = server.cli(&["quarantine", "approve", "default", "@fw/native@1.0.0"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(eventually(Duration::from_secs(5), || {
        get_from(&server, "default", "@fw/native/-/native-1.0.0.tgz", &admin).status() == 200
    }));
    let app = Project::new(ClientKind::Npm);
    app.configure(&server.registry_url("default"), &admin);
    app.install(&[("@fw/native", "1.0.0")]);
    assert_eq!(
        app.read_installed("@fw/native", "index.js"),
        "module.exports = 'native';\n"
    );
}

/// Every client's audit reports GHSA-35jh-r3h4-6jhm for lodash 4.17.20, from the
/// registry's own advisory database (no internet here). Not yarn 1: its `yarn audit`
/// always asks https://registry.yarnpkg.com (`YARN_REGISTRY` in yarn 1.22.22's
/// audit command), whatever registry is configured.
fn audit_reports_an_imported_advisory(kind: ClientKind) {
    if clients_or_skip(&format!("firewall_clients::audit_{}", kind.slug())).is_none() {
        return;
    }
    let server = TestServer::start();
    let admin = server.admin_token();
    publish_version(&server, &admin, "lodash", "4.17.20");
    let import = server.cli(
        &[
            "advisories",
            "import",
            osv_fixtures().join("github-reviewed").to_str().expect("path"),
        ],
        "",
    );
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    // The default policy serves a high-severity finding with a warning.
    assert!(eventually(Duration::from_secs(5), || {
        get_from(&server, "default", "lodash/-/lodash-4.17.20.tgz", &admin)
            .headers()
            .get("npm-notice")
            .is_some()
    }));
    let app = Project::new(kind);
    app.configure(&server.registry_url("default"), &admin);
    app.install(&[("lodash", "4.17.20")]);
    let args: &[&str] = match kind {
        ClientKind::YarnBerry => &["npm", "audit", "--all", "--recursive"],
        _ => &["audit"],
    };
    let out = app.run_failing(args);
    let text = output_text(&out);
    assert!(
        text.contains("GHSA-35jh-r3h4-6jhm") || text.contains("Command Injection in lodash"),
        "{kind:?} reports the advisory: {text}"
    );
}

#[test]
fn npm_audit_reports_an_imported_advisory() {
    audit_reports_an_imported_advisory(ClientKind::Npm);
}

#[test]
fn pnpm_audit_reports_an_imported_advisory() {
    audit_reports_an_imported_advisory(ClientKind::Pnpm);
}

#[test]
fn yarn_berry_audit_reports_an_imported_advisory() {
    audit_reports_an_imported_advisory(ClientKind::YarnBerry);
}

#[test]
fn bun_audit_reports_an_imported_advisory() {
    audit_reports_an_imported_advisory(ClientKind::Bun);
}
