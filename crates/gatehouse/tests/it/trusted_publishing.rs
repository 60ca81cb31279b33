//! Trusted publishing: the real npm 11 publishes from a (fake) GitHub Actions job and a
//! GitLab CI job with no token stored anywhere, `npm trust` manages the configurations,
//! and every forged, stale or misdirected OIDC token is refused saying which check
//! failed, with nothing published.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text};
use crate::support::oidc::{
    self, ACTIONS_REQUEST_TOKEN, ALICE_PASSWORD, AUDIENCE, FakeIssuer, IssuerMode, alice, exchange, exchange_url,
    exchanged_token, trust_github,
};
use crate::support::*;
use crate::web_app;

fn server_trusting(github: &FakeIssuer, gitlab: &FakeIssuer, ttl: &str) -> TestServer {
    TestServer::start_with_config(&format!(
        "[oidc]\ntoken_ttl = \"{ttl}\"\n\
         [oidc.issuers.github]\nkind = \"github\"\nissuer = \"{}\"\n\
         [oidc.issuers.gitlab]\nkind = \"gitlab\"\nissuer = \"{}\"\n",
        github.url, gitlab.url
    ))
}

fn exchanges_audited(server: &TestServer) -> usize {
    server
        .cli_ok(&["audit", "--action", "token.exchange", "--limit", "1000"])
        .lines()
        .filter(|l| l.contains("token.exchange"))
        .count()
}

/// The id of the package's first trust configuration in `default`, as `trust list` prints it.
fn first_trust_id(server: &TestServer, name: &str) -> String {
    server
        .cli_ok(&["trust", "list", "default", name])
        .lines()
        .nth(1)
        .and_then(|l| l.split('\t').next())
        .expect("a trust configuration")
        .to_owned()
}

#[test]
fn npm_publishes_from_github_actions_with_no_token_stored() {
    if clients_or_skip("trusted_publishing::github").is_none() {
        return;
    }
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    let token = alice(&server);
    let registry = server.registry_url("default");

    // A maintainer publishes by hand once, then trusts the release workflow with npm.
    let dev = Project::new(ClientKind::Npm);
    dev.configure(&registry, &token);
    dev.write_package("@acme/lib", "1.0.0", "module.exports = 1;\n");
    dev.publish();
    let trusted = dev.run(&[
        "trust",
        "github",
        "@acme/lib",
        "--repository",
        "acme/lib",
        "--file",
        "release.yml",
        "--allow-publish",
        "--yes",
    ]);
    assert!(
        output_text(&trusted).contains("release.yml"),
        "{}",
        output_text(&trusted)
    );
    let listed = output_text(&dev.run(&["trust", "list", "@acme/lib", "--json"]));
    assert!(
        listed.contains("\"repository\": \"acme/lib\"") && listed.contains("\"file\": \"release.yml\""),
        "{listed}"
    );
    let id = first_trust_id(&server, "@acme/lib");

    // The CI job: GitHub's environment, the ID-token endpoint, no token configured.
    github.set_actions_claims(github.github_claims("acme/lib", "release.yml", ""));
    let ci = Project::new(ClientKind::Npm)
        .with_env("GITHUB_ACTIONS", "true")
        .with_env("ACTIONS_ID_TOKEN_REQUEST_URL", &github.actions_request_url())
        .with_env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", ACTIONS_REQUEST_TOKEN);
    ci.configure_registry(&registry);
    ci.write_package("@acme/lib", "1.1.0", "module.exports = 2;\n");
    ci.publish();
    assert!(
        !ci.sandbox.read_home(".npmrc").contains("_authToken"),
        "no token stored"
    );

    let doc = packument(&server, "default", &token, "@acme/lib").expect("packument");
    let publisher = &doc["versions"]["1.1.0"]["_npmUser"];
    assert_eq!(publisher["name"], "GitHub Actions");
    assert_eq!(publisher["trustedPublisher"]["id"], "github");
    assert_eq!(publisher["trustedPublisher"]["oidcConfigId"], id.as_str());
    assert_eq!(publisher["trustedPublisher"]["repository"], "acme/lib");
    assert_eq!(publisher["trustedPublisher"]["workflow"], "release.yml");
    assert_eq!(publisher["trustedPublisher"]["ref"], "refs/heads/main");
    assert_eq!(publisher["trustedPublisher"]["sha"], "5f1c2a9e0d4b7c3a");
    assert_eq!(publisher["trustedPublisher"]["run_id"], "4242");
    // npm view shows the publisher as it shows any (`name <email>`).
    let viewed = output_text(&dev.run(&["view", "@acme/lib@1.1.0", "_npmUser"]));
    assert!(viewed.contains("GitHub Actions"), "{viewed}");
    // So does the version's page in the web app, with the run it came from.
    let cookie = web_app::sign_in(&server, "alice", ALICE_PASSWORD);
    let page = web_app::text(
        web_app::get(&server, &cookie, "/-/ui/r/default/p/@acme/lib?version=1.1.0"),
        200,
    );
    for shown in [
        "<dt>Published by</dt><dd>GitHub Actions</dd>",
        "<dt>repository</dt><dd>acme/lib</dd>",
        "<dt>workflow</dt><dd>release.yml</dd>",
        "<dt>ref</dt><dd>refs/heads/main</dd>",
        "<dt>commit</dt><dd>5f1c2a9e0d4b7c3a</dd>",
        "<dt>run</dt><dd>4242</dd>",
    ] {
        assert!(page.contains(shown), "{shown} not on the page:\n{page}");
    }
    let audit = server.cli_ok(&["audit", "--action", "token.exchange"]);
    assert!(
        audit.contains("acme/lib") && audit.contains("4242"),
        "the claims are on record: {audit}"
    );

    // Revoked with npm: the next run exchanges nothing and publishes nothing.
    dev.run(&["trust", "revoke", "@acme/lib", "--id", &id, "--yes"]);
    ci.write_package("@acme/lib", "1.2.0", "module.exports = 3;\n");
    ci.publish_refused();
    let doc = packument(&server, "default", &token, "@acme/lib").expect("packument");
    assert!(doc["versions"].get("1.2.0").is_none());
}

#[test]
fn yarn_berry_publishes_from_github_actions_with_no_token_stored() {
    if clients_or_skip("trusted_publishing::yarn_berry").is_none() {
        return;
    }
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    let token = alice(&server);
    publish_ok(&server, "default", &token, "@acme/yarned", "1.0.0");
    trust_github(&server, "@acme/yarned", "acme/yarned", &[]);

    // yarn asks for `npm:HOST:PORT` and sends the exchange under the registry's URL.
    github.set_actions_claims(github.github_claims("acme/yarned", "release.yml", ""));
    // yarn tries OIDC only when `CI` is set too.
    let ci = Project::new(ClientKind::YarnBerry)
        .with_env("CI", "true")
        .with_env("GITHUB_ACTIONS", "true")
        .with_env("ACTIONS_ID_TOKEN_REQUEST_URL", &github.actions_request_url())
        .with_env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", ACTIONS_REQUEST_TOKEN);
    ci.configure_registry(&server.registry_url("default"));
    ci.write_package("@acme/yarned", "1.1.0", "module.exports = 2;\n");
    ci.publish();
    let yarnrc = std::fs::read_to_string(ci.dir.join(".yarnrc.yml")).unwrap_or_default();
    assert!(!yarnrc.contains("npmAuthToken"), "no token stored: {yarnrc}");

    let doc = packument(&server, "default", &token, "@acme/yarned").expect("packument");
    let publisher = &doc["versions"]["1.1.0"]["_npmUser"]["trustedPublisher"];
    assert_eq!(publisher["id"], "github", "{doc}");
    assert_eq!(publisher["repository"], "acme/yarned");
    assert_eq!(publisher["workflow"], "release.yml");
    let audit = server.cli_ok(&["audit", "--action", "token.exchange"]);
    assert!(audit.contains("acme/yarned"), "{audit}");
}

#[test]
fn a_gitlab_job_publishes_the_first_version_of_a_new_package() {
    if clients_or_skip("trusted_publishing::gitlab").is_none() {
        return;
    }
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    let token = alice(&server);
    // A name nobody published: an administrator trusts CI for it, naming its maintainer.
    let out = server.cli(
        &[
            "trust",
            "add",
            "default",
            "@acme/born",
            "--gitlab",
            "acme/born",
            "--file",
            ".gitlab-ci.yml",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(output_text(&out).contains("name the user who will maintain it with --owner USER"));
    server.cli_ok(&[
        "trust",
        "add",
        "default",
        "@acme/born",
        "--gitlab",
        "acme/born",
        "--file",
        ".gitlab-ci.yml",
        "--owner",
        "alice",
    ]);
    let id_token = gitlab.token(&gitlab.gitlab_claims("acme/born", ".gitlab-ci.yml", AUDIENCE));
    let ci = Project::new(ClientKind::Npm)
        .with_env("GITLAB_CI", "true")
        .with_env("NPM_ID_TOKEN", &id_token);
    ci.configure_registry(&server.registry_url("default"));
    ci.write_package("@acme/born", "0.1.0", "module.exports = 'born';\n");
    ci.publish();
    let doc = packument(&server, "default", &token, "@acme/born").expect("born in CI");
    assert_eq!(doc["maintainers"][0]["name"], "alice", "the trust's owner maintains it");
    let publisher = &doc["versions"]["0.1.0"]["_npmUser"]["trustedPublisher"];
    assert_eq!(publisher["id"], "gitlab");
    assert_eq!(publisher["workflow"], ".gitlab-ci.yml");
    assert_eq!(publisher["run_id"], "777");
}

#[test]
fn forged_stale_and_misdirected_oidc_tokens_are_refused() {
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    alice(&server);
    trust_github(&server, "@acme/lib", "acme/lib", &["--environment", "prod"]);
    trust_github(&server, "@acme/other", "acme/other", &[]);
    let mut good = github.github_claims("acme/lib", "release.yml", AUDIENCE);
    good["environment"] = json!("prod");
    // The good claims with one of them changed.
    let with = |claim: &str, value: Value| {
        let mut changed = good.clone();
        changed[claim] = value;
        changed
    };
    let now = oidc::now();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            github.token(&with("exp", json!(now - 120))),
            401,
            "the OIDC token expired",
        ),
        (
            "not yet valid",
            github.token(&with("nbf", json!(now + 600))),
            401,
            "is not valid yet",
        ),
        (
            "issued in the future",
            github.token(&with("iat", json!(now + 600))),
            401,
            "issued in the future",
        ),
        (
            "wrong audience",
            github.token(&with("aud", json!("npm:registry.npmjs.org"))),
            400,
            "this registry accepts npm:127.0.0.1",
        ),
        (
            "unknown issuer",
            github.token(&with("iss", json!("https://evil.example"))),
            401,
            "is not trusted here",
        ),
        (
            "unknown key id",
            github.token_with_unknown_key(&good),
            401,
            "which issuer github does not publish",
        ),
        ("alg none", oidc::forged("none", &good, ""), 401, "signed with \"none\""),
        (
            "HS256 with the public key",
            oidc::hs256_with_public_key(&good),
            401,
            "signed with \"HS256\"",
        ),
        (
            "tampered payload",
            oidc::tampered(&github.token(&with("repository", json!("evil/lib"))), &good),
            401,
            "signature does not verify",
        ),
        ("not a JWT", "gth_not-a-jwt".to_owned(), 401, "is not a JWT"),
        (
            "wrong workflow",
            github.token(&with(
                "workflow_ref",
                json!("acme/lib/.github/workflows/ci.yml@refs/heads/main"),
            )),
            404,
            "the workflow file of workflow_ref is \"ci.yml\"",
        ),
        (
            "wrong environment",
            github.token(&with("environment", json!("staging"))),
            404,
            "environment is \"staging\"",
        ),
        (
            "another package's token",
            github.token(&github.github_claims("acme/other", "release.yml", AUDIENCE)),
            404,
            "repository is \"acme/other\"",
        ),
    ];
    for (case, jwt, status, message) in &cases {
        for registry in [Some("default"), None] {
            let (got, body) = exchange(&server, registry, "@acme/lib", jwt);
            assert_eq!(got, *status, "{case} ({registry:?}): {body}");
            let text = body["error"].as_str().unwrap_or_default();
            assert!(text.contains(message), "{case}: {text}");
            assert_eq!(body["message"], body["error"], "{case}");
        }
    }
    let (status, body) = exchange(&server, Some("default"), "@acme/unknown", &github.token(&good));
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has no trust configuration"),
        "{body}"
    );
    let missing = http()
        .post(exchange_url(&server, Some("default"), "@acme/lib"))
        .send()
        .expect("no credential");
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(exchanges_audited(&server), 0, "no token was minted");
    assert!(
        packument(&server, "default", &server.admin_token(), "@acme/lib").is_none(),
        "nothing published"
    );

    // ES256 tokens verify too; the good token is exchanged at both addresses.
    exchanged_token(&server, Some("default"), "@acme/lib", &github.token_es256(&good));
    exchanged_token(&server, None, "@acme/lib", &github.token(&good));
    assert_eq!(exchanges_audited(&server), 2);
    // Revoked: the same token, replayed, is refused.
    let id = first_trust_id(&server, "@acme/lib");
    server.cli_ok(&["trust", "remove", "default", "@acme/lib", &id]);
    let (status, body) = exchange(&server, Some("default"), "@acme/lib", &github.token(&good));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has no trust configuration")
    );
}

#[test]
fn an_exchanged_token_publishes_its_package_and_nothing_else() {
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    let alice_token = alice(&server);
    publish_ok(&server, "default", &alice_token, "@acme/lib", "1.0.0");
    publish_ok(&server, "default", &alice_token, "@acme/other", "1.0.0");
    trust_github(&server, "@acme/lib", "acme/lib", &[]);
    server.cli_ok(&["registry", "create", "other"]);
    let jwt = github.token(&github.github_claims("acme/lib", "release.yml", AUDIENCE));
    let token = exchanged_token(&server, Some("default"), "@acme/lib", &jwt);

    assert_eq!(
        publish(&server, "default", &token, &publish_body("@acme/lib", "1.1.0")).status(),
        201
    );
    let other = expect_error(
        publish(&server, "default", &token, &publish_body("@acme/other", "1.1.0")),
        403,
    );
    assert!(other.contains("limited to other packages"), "{other}");
    let elsewhere = expect_error(
        publish(&server, "other", &token, &publish_body("@acme/lib", "9.0.0")),
        403,
    );
    assert!(elsewhere.contains("not valid for registry \"other\""), "{elsewhere}");
    let base = server.registry_url("default");
    let refusals = [
        http()
            .put(format!("{base}-/package/@acme%2flib/dist-tags/beta"))
            .json(&json!("1.0.0")),
        http().delete(format!("{base}@acme%2flib/-rev/1")),
        http()
            .post(format!("{base}-/npm/v1/tokens"))
            .json(&json!({"password": ALICE_PASSWORD})),
        http().get(format!("{base}-/npm/v1/tokens")),
        http()
            .post(format!("{base}-/package/@acme%2flib/trust"))
            .json(&json!([])),
        http().get(format!("{}/-/api/v1/registries", server.base)),
    ];
    for request in refusals {
        let message = expect_error(authed(request, &token).send().expect("request"), 403);
        assert!(
            message.contains("only publishes new versions of @acme/lib"),
            "{message}"
        );
    }
    let doc = packument(&server, "default", &alice_token, "@acme/lib").expect("lib");
    assert_eq!(
        doc["dist-tags"],
        json!({"latest": "1.1.0"}),
        "no tag moved, nothing unpublished"
    );
    let other_admin = server.login("other", "admin", ADMIN_PASSWORD);
    assert!(packument(&server, "other", &other_admin, "@acme/lib").is_none());

    // The policy can insist: then a maintainer's own token no longer publishes it.
    let policy = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(policy.path(), "[trusted_publishing]\nrequire = [\"@acme/lib\"]\n").expect("policy");
    server.cli_ok(&[
        "policy",
        "set",
        "default",
        "--file",
        policy.path().to_str().expect("utf-8"),
    ]);
    // Every attempt is a new version: until the policy reaches the server, one may get in.
    let (version, refused) = (1..100)
        .find_map(|patch| {
            let version = format!("1.2.{patch}");
            let response = publish(&server, "default", &alice_token, &publish_body("@acme/lib", &version));
            if response.status() == 403 {
                return Some((version, expect_error(response, 403)));
            }
            std::thread::sleep(Duration::from_millis(50));
            None
        })
        .expect("the policy reaches the server");
    assert!(
        refused.contains("requires new versions of @acme/lib to come through trusted publishing"),
        "{refused}"
    );
    let doc = packument(&server, "default", &alice_token, "@acme/lib").expect("lib");
    assert!(
        doc["versions"].get(&version).is_none(),
        "the refused version is not stored"
    );
    assert_eq!(
        publish(&server, "default", &alice_token, &publish_body("@acme/other", "1.2.0")).status(),
        201
    );
    assert_eq!(
        publish(&server, "default", &token, &publish_body("@acme/lib", "1.3.0")).status(),
        201
    );
}

#[test]
fn an_exchanged_token_stops_at_the_end_of_its_lifetime() {
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "2s");
    alice(&server);
    trust_github(&server, "@acme/lib", "acme/lib", &[]);
    let token = exchanged_token(
        &server,
        None,
        "@acme/lib",
        &github.token(&github.github_claims("acme/lib", "release.yml", AUDIENCE)),
    );
    std::thread::sleep(Duration::from_millis(2_500));
    let message = expect_error(
        publish(&server, "default", &token, &publish_body("@acme/lib", "1.0.0")),
        401,
    );
    assert!(message.contains("this token expired"), "{message}");
    assert!(packument(&server, "default", &server.admin_token(), "@acme/lib").is_none());
}

#[test]
fn the_root_exchange_finds_the_one_registry_that_trusts_the_job() {
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    alice(&server);
    server.cli_ok(&["registry", "create", "staging"]);
    trust_github(&server, "@acme/lib", "acme/lib", &[]);
    server.cli_ok(&[
        "trust",
        "add",
        "staging",
        "@acme/lib",
        "--github",
        "acme/lib",
        "--file",
        "release.yml",
        "--owner",
        "alice",
    ]);
    let jwt = github.token(&github.github_claims("acme/lib", "release.yml", AUDIENCE));
    let (status, body) = exchange(&server, None, "@acme/lib", &jwt);
    assert_eq!(status, 409, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("several registries (default, staging)"), "{message}");
    let (status, body) = exchange(&server, Some("staging"), "@acme/lib", &jwt);
    assert_eq!((status, body["registry"].as_str()), (201, Some("staging")), "{body}");
    server.cli_ok(&["trust", "remove", "staging", "@acme/lib", "2"]);
    let (status, body) = exchange(&server, None, "@acme/lib", &jwt);
    assert_eq!((status, body["registry"].as_str()), (201, Some("default")), "{body}");
}

#[test]
fn issuer_keys_are_cached_refetched_on_rotation_and_a_broken_issuer_is_named() {
    let (github, gitlab) = (FakeIssuer::start(), FakeIssuer::start());
    let server = server_trusting(&github, &gitlab, "5m");
    alice(&server);
    trust_github(&server, "@acme/lib", "acme/lib", &[]);
    let claims = github.github_claims("acme/lib", "release.yml", AUDIENCE);
    for _ in 0..3 {
        exchanged_token(&server, Some("default"), "@acme/lib", &github.token(&claims));
    }
    assert_eq!(github.jwks_hits(), 1, "the keys are fetched once");
    // An unknown key id refetches, at most once a minute.
    for _ in 0..3 {
        let (status, _) = exchange(
            &server,
            Some("default"),
            "@acme/lib",
            &github.token_with_unknown_key(&claims),
        );
        assert_eq!(status, 401);
    }
    assert_eq!(github.jwks_hits(), 1, "no refetch within a minute of the last");

    // An issuer that serves garbage, or is down, before any key was fetched.
    gitlab.set_mode(IssuerMode::Garbage);
    server.cli_ok(&[
        "trust",
        "add",
        "default",
        "@acme/lib",
        "--gitlab",
        "acme/lib",
        "--file",
        ".gitlab-ci.yml",
        "--owner",
        "alice",
    ]);
    let gitlab_jwt = gitlab.token(&gitlab.gitlab_claims("acme/lib", ".gitlab-ci.yml", AUDIENCE));
    let (status, body) = exchange(&server, Some("default"), "@acme/lib", &gitlab_jwt);
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot get the keys of issuer gitlab"),
        "{body}"
    );

    gitlab.set_mode(IssuerMode::Down);
    let (status, body) = exchange(&server, Some("default"), "@acme/lib", &gitlab_jwt);
    assert_eq!(status, 502, "still named within the refetch interval: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("openid-configuration is not JSON"),
        "{body}"
    );
    assert_eq!(exchanges_audited(&server), 3);

    // Rotation: a token signed with the new key fetches the keys again.
    let server = TestServer::start_with_config(&format!(
        "[oidc]\njwks_refetch_after = \"1s\"\n[oidc.issuers.github]\nkind = \"github\"\nissuer = \"{}\"\n",
        github.url
    ));
    alice(&server);
    trust_github(&server, "@acme/lib", "acme/lib", &[]);
    exchanged_token(&server, Some("default"), "@acme/lib", &github.token(&claims));
    let before = github.jwks_hits();
    github.rotate();
    std::thread::sleep(Duration::from_millis(1_200));
    exchanged_token(&server, Some("default"), "@acme/lib", &github.token(&claims));
    assert_eq!(github.jwks_hits(), before + 1, "fetched once more, for the new key");
}
