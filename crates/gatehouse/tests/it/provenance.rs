//! Provenance: Sigstore bundles attached to a publish are verified before the version
//! enters, stored, and served where npm looks for them (`dist.attestations` and
//! `-/npm/v1/attestations/{name}@{version}`); an upstream's attestations pass through.
//! Bundles come from a fake Sigstore whose trust root the server is given, and the
//! real npm's `npm audit signatures` verifies what the server serves, offline.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text};
use crate::support::fake_upstream::FakeUpstream;
use crate::support::oidc::{ALICE_PASSWORD, AUDIENCE, FakeIssuer, alice, exchanged_token, trust_github};
use crate::support::sigstore::{CertIdentity, FakeSigstore};
use crate::support::*;
use crate::web_app;

const SLSA_V1: &str = "https://slsa.dev/provenance/v1";

/// `publish_body` for `name@version` with a `.sigstore` attachment as libnpmpublish
/// sends it: the bundle's JSON as text, not base64.
fn with_bundle(mut body: Value, bundle_text: &str) -> Value {
    let name = body["name"].as_str().expect("name").to_owned();
    let version = body["dist-tags"]["latest"].as_str().expect("version").to_owned();
    body["_attachments"][format!("{name}-{version}.sigstore")] = json!({
        "content_type": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "data": bundle_text,
        "length": bundle_text.len(),
    });
    body
}

fn attestations_path(name: &str, version: &str) -> String {
    format!("-/npm/v1/attestations/{}@{version}", name.replacen('/', "%2f", 1))
}

#[test]
fn bundles_that_are_no_provenance_are_refused_and_nothing_is_stored() {
    let server = TestServer::start();
    let token = server.admin_token();
    let blobs = blob_count(&server);
    let envelope = json!({"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": []});
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "not JSON",
            "{ this is not json".into(),
            "not valid JSON of a Sigstore bundle",
        ),
        (
            "another media type",
            json!({"mediaType": "application/json", "verificationMaterial": {}, "dsseEnvelope": envelope}).to_string(),
            "is not a Sigstore bundle's",
        ),
        (
            "no envelope",
            json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {}})
                .to_string(),
            "has no DSSE envelope",
        ),
        (
            "no signature",
            json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {},
                   "dsseEnvelope": envelope})
            .to_string(),
            "exactly one signature",
        ),
        ("too large", " ".repeat(300 * 1024), "larger than 262144 bytes"),
    ];
    for (label, bundle, needle) in cases {
        let body = with_bundle(publish_body("signed", "1.0.0"), &bundle);
        let message = expect_error(publish(&server, "default", &token, &body), 400);
        assert!(message.contains("provenance refused"), "{label}: {message}");
        assert!(message.contains(needle), "{label}: {message}");
        assert!(
            packument(&server, "default", &token, "signed").is_none(),
            "{label}: nothing published"
        );
        assert_eq!(blob_count(&server), blobs, "{label}: no tarball stored");
    }

    // An attachment named for another version, or with no data, is no bundle either.
    let mut body = publish_body("signed", "1.0.0");
    body["_attachments"]["signed-9.9.9.sigstore"] = json!({"data": "{}"});
    let message = expect_error(publish(&server, "default", &token, &body), 400);
    assert!(message.contains("may carry \"signed-1.0.0.sigstore\""), "{message}");
    let mut body = publish_body("signed", "1.0.0");
    body["_attachments"]["signed-1.0.0.sigstore"] = json!({"length": 2});
    let message = expect_error(publish(&server, "default", &token, &body), 400);
    assert!(message.contains("has no \"data\" string"), "{message}");
    assert!(packument(&server, "default", &token, "signed").is_none());
}

#[test]
fn a_publish_cannot_claim_attestations_it_did_not_bring() {
    let server = TestServer::start();
    let token = server.admin_token();
    let mut body = publish_body("claims", "1.0.0");
    body["versions"]["1.0.0"]["dist"]["attestations"] = json!({
        "url": "https://evil.example/-/npm/v1/attestations/claims@1.0.0",
        "provenance": {"predicateType": SLSA_V1},
    });
    assert_eq!(publish(&server, "default", &token, &body).status(), 201);
    let doc = packument(&server, "default", &token, "claims").expect("published");
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"].get("attestations"),
        None,
        "the claim is dropped: {doc}"
    );
    let message = expect_error(
        get_from(&server, "default", &attestations_path("claims", "1.0.0"), &token),
        404,
    );
    assert!(message.contains("claims@1.0.0 has no attestations"), "{message}");
    let message = expect_error(
        get_from(&server, "default", &attestations_path("claims", "2.0.0"), &token),
        404,
    );
    assert!(message.contains("version not found"), "{message}");
}

#[test]
fn an_upstreams_attestations_pass_through_at_this_registrys_url() {
    let fake = FakeUpstream::start();
    fake.publish("@acme/signed", "1.0.0");
    fake.publish("@acme/signed", "1.1.0");
    fake.edit("@acme/signed", |doc| {
        doc["versions"]["1.0.0"]["dist"]["attestations"] = json!({
            "url": "https://registry.npmjs.org/-/npm/v1/attestations/@acme%2fsigned@1.0.0",
            "provenance": {"predicateType": SLSA_V1},
        });
    });
    let upstream_answer = json!({"attestations": [
        {"predicateType": SLSA_V1, "bundle": {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}}
    ]});
    fake.set_raw_packument(
        "-/npm/v1/attestations/@acme/signed@1.0.0",
        upstream_answer.to_string().into_bytes(),
    );
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ));
    let token = server.admin_token();
    let registry = server.registry_url("default");

    let doc = packument(&server, "default", &token, "@acme/signed").expect("proxied");
    let dist = &doc["versions"]["1.0.0"]["dist"];
    assert_eq!(
        dist["attestations"],
        json!({"url": format!("{registry}-/npm/v1/attestations/@acme%2fsigned@1.0.0"),
               "provenance": {"predicateType": SLSA_V1}}),
        "npm fetches from the registry it installs from"
    );
    let path = attestations_path("@acme/signed", "1.0.0");
    let served: Value = get_from(&server, "default", &path, &token).json().expect("json");
    assert_eq!(served, upstream_answer);
    // npm asks the host for the URL's path; the root form answers from the root registry.
    let at_root: Value = authed(http().get(format!("{}/{path}", server.base)), &token)
        .send()
        .expect("root")
        .json()
        .expect("json");
    assert_eq!(at_root, upstream_answer);

    // Once pulled, the version is held here; its attestations still come from upstream.
    let tarball = get_from(&server, "default", "@acme/signed/-/signed-1.0.0.tgz", &token);
    assert_eq!(tarball.status(), 200);
    let served: Value = get_from(&server, "default", &path, &token).json().expect("json");
    assert_eq!(served, upstream_answer);

    let message = expect_error(
        get_from(&server, "default", &attestations_path("@acme/signed", "1.1.0"), &token),
        404,
    );
    assert!(message.contains("has no attestations"), "{message}");

    // An upstream that answers with something else is named, not passed on.
    fake.set_raw_packument("-/npm/v1/attestations/@acme/signed@1.0.0", b"<html>".to_vec());
    let message = expect_error(get_from(&server, "default", &path, &token), 502);
    assert!(
        message.contains("something other than a list of attestations"),
        "{message}"
    );
}

/// Hex SHA-512 of a tarball, as a provenance statement's subject names it.
fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha512::digest(bytes))
}

fn purl(name: &str, version: &str) -> String {
    format!("pkg:npm/{}@{version}", name.replacen('@', "%40", 1))
}

/// A publish body for `name@version` whose manifest and packed package.json name
/// `repository`, and its tarball.
fn body_from_repository(name: &str, version: &str, repository: Option<&str>) -> (Value, Vec<u8>) {
    let mut manifest = json!({ "name": name, "version": version, "main": "index.js" });
    if let Some(url) = repository {
        manifest["repository"] = json!({"type": "git", "url": url});
    }
    let tgz = tarball(&[
        ("package/package.json", manifest.to_string().as_bytes()),
        (
            "package/index.js",
            format!("module.exports = '{version}';\n").as_bytes(),
        ),
    ]);
    let mut body = publish_body_with(name, version, "latest", &tgz);
    if let Some(url) = repository {
        body["versions"][version]["repository"] = json!({"type": "git", "url": url});
    }
    (body, tgz)
}

struct Stack {
    sigstore: FakeSigstore,
    github: FakeIssuer,
    server: TestServer,
    /// Alice's token: she maintains @acme/lib.
    alice: String,
}

/// A server trusting the fake Sigstore and the fake GitHub issuer; `@acme/lib@1.0.0`
/// published by alice, its release workflow trusted.
fn stack() -> Stack {
    let sigstore = FakeSigstore::start();
    let github = FakeIssuer::start();
    let server = TestServer::start_with_config(&format!(
        "[provenance]\ntrusted_root = {:?}\n[oidc.issuers.github]\nkind = \"github\"\nissuer = \"{}\"\n",
        sigstore.trusted_root_path().display().to_string(),
        github.url
    ));
    let alice = alice(&server);
    publish_ok(&server, "default", &alice, "@acme/lib", "1.0.0");
    trust_github(&server, "@acme/lib", "acme/lib", &[]);
    Stack {
        sigstore,
        github,
        server,
        alice,
    }
}

impl Stack {
    /// What the release job's exchange gives it.
    fn ci_token(&self) -> String {
        let jwt = self
            .github
            .token(&self.github.github_claims("acme/lib", "release.yml", AUDIENCE));
        exchanged_token(&self.server, Some("default"), "@acme/lib", &jwt)
    }

    /// The certificate Fulcio gives the release job: its repository, ref, commit, run.
    fn job_identity(&self) -> CertIdentity {
        CertIdentity::github("acme/lib", "release.yml", "refs/heads/main", "5f1c2a9e0d4b7c3a", 4242)
            .with_issuer(&self.github.url)
    }
}

const REPOSITORY: &str = "git+https://github.com/acme/lib.git";

/// `body` with the bundle for `purl`/`sha512` signed as `identity` attached.
fn signed(sigstore: &FakeSigstore, body: Value, purl_: &str, sha512: &str, identity: &CertIdentity) -> Value {
    with_bundle(body, &sigstore.bundle(purl_, sha512, identity).to_string())
}

#[test]
fn a_ci_jobs_provenance_is_checked_against_the_job_stored_and_served() {
    let stack = stack();
    let (server, sigstore) = (&stack.server, &stack.sigstore);
    let token = stack.ci_token();
    let job = stack.job_identity();
    let (body, tgz) = body_from_repository("@acme/lib", "1.1.0", Some(REPOSITORY));
    let sha512 = sha512_hex(&tgz);
    let this = purl("@acme/lib", "1.1.0");
    let blobs = blob_count(server);

    // The payload of a good bundle with its statement changed after signing.
    let mut tampered = sigstore.bundle(&this, &sha512, &job);
    let payload = tampered["dsseEnvelope"]["payload"].as_str().expect("payload");
    let mut statement: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(payload).expect("b64")).expect("json");
    statement["predicate"]["buildDefinition"]["externalParameters"] = json!({"workflow": "evil"});
    tampered["dsseEnvelope"]["payload"] =
        json!(base64::engine::general_purpose::STANDARD.encode(statement.to_string()));
    let stranger = FakeSigstore::start();
    let other_commit = CertIdentity::github("acme/lib", "release.yml", "refs/heads/main", "0000000000000000", 4242)
        .with_issuer(&stack.github.url);
    let other_repository =
        CertIdentity::github("acme/other", "release.yml", "refs/heads/main", "5f1c2a9e0d4b7c3a", 4242)
            .with_issuer(&stack.github.url);
    let refusals: Vec<(&str, Value, &str)> = vec![
        (
            "a bundle for another tarball",
            signed(sigstore, body.clone(), &this, &sha512_hex(b"other bytes"), &job),
            "the provenance is for another tarball",
        ),
        (
            "a bundle for another version",
            signed(sigstore, body.clone(), &purl("@acme/lib", "9.9.9"), &sha512, &job),
            "the provenance is for pkg:npm/%40acme/lib@9.9.9, not for pkg:npm/%40acme/lib@1.1.0",
        ),
        (
            "a statement changed after signing",
            with_bundle(body.clone(), &tampered.to_string()),
            "does not verify with its certificate's key",
        ),
        (
            "a bundle of another Sigstore",
            signed(&stranger, body.clone(), &this, &sha512, &job),
            "which the trust root does not list",
        ),
        (
            "a certificate of another commit",
            signed(sigstore, body.clone(), &this, &sha512, &other_commit),
            "signed for the commit \"0000000000000000\", but the trusted publisher's token was for \"5f1c2a9e0d4b7c3a\"",
        ),
        (
            "a certificate of another repository",
            signed(sigstore, body.clone(), &this, &sha512, &other_repository),
            "signed for the repository \"https://github.com/acme/other\"",
        ),
        (
            "a certificate of another issuer",
            signed(
                sigstore,
                body.clone(),
                &this,
                &sha512,
                &job.clone().with_issuer("https://issuer.example"),
            ),
            "signed for the issuer \"https://issuer.example\"",
        ),
        (
            "package.json naming another repository",
            signed(
                sigstore,
                body_from_repository("@acme/lib", "1.1.0", Some("https://github.com/acme/fork")).0,
                &this,
                &sha512_hex(&body_from_repository("@acme/lib", "1.1.0", Some("https://github.com/acme/fork")).1),
                &job,
            ),
            "\"repository.url\" is \"https://github.com/acme/fork\", but the provenance was built from https://github.com/acme/lib",
        ),
    ];
    for (label, body, needle) in refusals {
        let message = expect_error(publish(server, "default", &token, &body), 400);
        assert!(message.starts_with("provenance refused: "), "{label}: {message}");
        assert!(message.contains(needle), "{label}: {message}");
        let doc = packument(server, "default", &stack.alice, "@acme/lib").expect("lib");
        assert!(doc["versions"].get("1.1.0").is_none(), "{label}: nothing published");
        assert_eq!(blob_count(server), blobs, "{label}: no tarball stored");
    }

    let bundle = sigstore.bundle(&this, &sha512, &job);
    let response = publish(server, "default", &token, &with_bundle(body, &bundle.to_string()));
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
    let doc = packument(server, "default", &stack.alice, "@acme/lib").expect("lib");
    let version = &doc["versions"]["1.1.0"];
    assert_eq!(
        version["dist"]["attestations"],
        json!({"url": format!("{}{}", server.registry_url("default"), attestations_path("@acme/lib", "1.1.0")),
               "provenance": {"predicateType": SLSA_V1}})
    );
    assert_eq!(version["_npmUser"]["trustedPublisher"]["run_id"], "4242");
    let served: Value = get_from(
        server,
        "default",
        &attestations_path("@acme/lib", "1.1.0"),
        &stack.alice,
    )
    .json()
    .expect("json");
    assert_eq!(
        served,
        json!({"attestations": [{"predicateType": SLSA_V1, "bundle": bundle}]})
    );
    // The version published by hand has none, and says so.
    let message = expect_error(
        get_from(
            server,
            "default",
            &attestations_path("@acme/lib", "1.0.0"),
            &stack.alice,
        ),
        404,
    );
    assert!(message.contains("@acme/lib@1.0.0 has no attestations"), "{message}");

    // The web app's version page says it is signed and links the attestations.
    let cookie = web_app::sign_in(server, "alice", ALICE_PASSWORD);
    let page = |version: &str| {
        web_app::text(
            web_app::get(
                server,
                &cookie,
                &format!("/-/ui/r/default/p/@acme/lib?version={version}"),
            ),
            200,
        )
    };
    let signed = page("1.1.0");
    let provenance = format!(
        "<dt>Provenance</dt><dd>signed ({SLSA_V1}), <a href=\"{}{}\">attestations</a></dd>",
        server.registry_url("default"),
        attestations_path("@acme/lib", "1.1.0")
    );
    assert!(signed.contains(&provenance), "{provenance} not on the page:\n{signed}");
    assert!(signed.contains("<dt>run</dt><dd>4242</dd>"), "{signed}");
    assert!(!page("1.0.0").contains("<dt>Provenance</dt>"));
}

#[test]
fn a_token_publish_with_provenance_must_name_the_repository_it_was_built_from() {
    let stack = stack();
    let (server, sigstore) = (&stack.server, &stack.sigstore);
    let job = stack.job_identity();
    let (body, tgz) = body_from_repository("@acme/lib", "1.2.0", None);
    let this = purl("@acme/lib", "1.2.0");
    let message = expect_error(
        publish(
            server,
            "default",
            &stack.alice,
            &signed(sigstore, body, &this, &sha512_hex(&tgz), &job),
        ),
        400,
    );
    assert!(
        message.contains("package.json has no \"repository\": provenance built from https://github.com/acme/lib needs"),
        "{message}"
    );
    let doc = packument(server, "default", &stack.alice, "@acme/lib").expect("lib");
    assert!(doc["versions"].get("1.2.0").is_none());

    // Every spelling npm accepts for the same repository matches.
    let (body, tgz) = body_from_repository("@acme/lib", "1.2.0", Some("github:Acme/lib"));
    let response = publish(
        server,
        "default",
        &stack.alice,
        &signed(sigstore, body, &this, &sha512_hex(&tgz), &job),
    );
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
    let doc = packument(server, "default", &stack.alice, "@acme/lib").expect("lib");
    assert_eq!(
        doc["versions"]["1.2.0"]["dist"]["attestations"]["provenance"]["predicateType"],
        SLSA_V1
    );
    assert_eq!(doc["versions"]["1.2.0"]["_npmUser"]["name"], "alice");
}

#[test]
fn a_promotion_carries_the_attestations_along() {
    let stack = stack();
    let (server, sigstore) = (&stack.server, &stack.sigstore);
    server.cli_ok(&["registry", "create", "prod"]);
    server.cli_ok(&["registry", "create", "dev", "--upstream", "registry:prod"]);
    let (body, tgz) = body_from_repository("@acme/app", "1.0.0", Some("https://github.com/acme/lib"));
    let body = signed(
        sigstore,
        body,
        &purl("@acme/app", "1.0.0"),
        &sha512_hex(&tgz),
        &stack.job_identity(),
    );
    // Login tokens are good for one registry each.
    let (dev, prod) = (
        server.login("dev", "admin", ADMIN_PASSWORD),
        server.login("prod", "admin", ADMIN_PASSWORD),
    );
    let response = publish(server, "dev", &dev, &body);
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
    server.cli_ok(&["push", "dev", "@acme/app@1.0.0", "--to", "registry:prod"]);

    let path = attestations_path("@acme/app", "1.0.0");
    let in_dev: Value = get_from(server, "dev", &path, &dev).json().expect("json");
    let in_prod: Value = get_from(server, "prod", &path, &prod).json().expect("json");
    assert_eq!(in_prod, in_dev);
    assert_eq!(in_prod["attestations"][0]["predicateType"], SLSA_V1);
    let doc = packument(server, "prod", &prod, "@acme/app").expect("promoted");
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"]["attestations"]["url"],
        format!("{}{path}", server.registry_url("prod")),
        "served at the registry it is read from"
    );
}

#[test]
fn npm_audit_signatures_verifies_our_own_provenance_and_an_upstreams() {
    if clients_or_skip("provenance::npm_audit_signatures").is_none() {
        return;
    }
    let sigstore = FakeSigstore::start();
    let fake = FakeUpstream::start();
    // A public package with provenance, and one whose upstream serves a bundle of other bytes.
    for (name, forged) in [("@up/signed", false), ("@up/forged", true)] {
        let tgz = fake.publish(name, "1.0.0");
        let bytes = if forged { b"other bytes".to_vec() } else { tgz };
        let bundle = sigstore.bundle(
            &purl(name, "1.0.0"),
            &sha512_hex(&bytes),
            &CertIdentity::github(&name[1..], "release.yml", "refs/heads/main", "abc123", 7),
        );
        fake.edit(name, |doc| {
            // Registry signatures would need the upstream's keys; this is about provenance.
            doc["versions"]["1.0.0"]["dist"]
                .as_object_mut()
                .expect("dist")
                .remove("signatures");
            doc["versions"]["1.0.0"]["dist"]["attestations"] = json!({
                "url": format!("https://registry.npmjs.org/{}", attestations_path(name, "1.0.0")),
                "provenance": {"predicateType": SLSA_V1},
            });
        });
        fake.set_raw_packument(
            &format!("-/npm/v1/attestations/{name}@1.0.0"),
            json!({"attestations": [{"predicateType": SLSA_V1, "bundle": bundle}]})
                .to_string()
                .into_bytes(),
        );
    }
    let server = TestServer::start_with_config(&format!(
        "[provenance]\ntrusted_root = {:?}\n[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        sigstore.trusted_root_path().display().to_string(),
        fake.url
    ));
    let token = server.admin_token();
    // Ours, published with the provenance of a GitHub Actions job.
    let (body, tgz) = body_from_repository("@acme/lib", "1.0.0", Some(REPOSITORY));
    let identity = CertIdentity::github("acme/lib", "release.yml", "refs/heads/main", "abc123", 7);
    let body = signed(
        &sigstore,
        body,
        &purl("@acme/lib", "1.0.0"),
        &sha512_hex(&tgz),
        &identity,
    );
    assert_eq!(publish(&server, "default", &token, &body).status(), 201);

    // npm refreshes Sigstore's TUF metadata online: the mirror stands in for its host.
    let mirror = sigstore.tuf_mirror();
    let mut project = Project::new(ClientKind::Npm);
    for (key, value) in sigstore.npm_env().into_iter().chain(mirror.env()) {
        project = project.with_env(&key, &value);
    }
    let project = project
        .with_env("NO_PROXY", "127.0.0.1")
        .with_env("no_proxy", "127.0.0.1");
    project.configure(&server.registry_url("default"), &token);
    project.install(&[("@acme/lib", "1.0.0"), ("@up/signed", "1.0.0")]);
    let audited = output_text(&project.run(&["audit", "signatures"]));
    assert!(audited.contains("2 packages have verified attestations"), "{audited}");
    let asked = mirror.requests();
    assert!(asked.iter().any(|p| p == "/timestamp.json"), "{asked:?}");

    // A bundle that names other bytes is caught by npm, however it got here.
    project.install(&[("@up/forged", "1.0.0")]);
    let refused = output_text(&project.run_failing(&["audit", "signatures"]));
    assert!(
        refused.contains("@up/forged@1.0.0") && refused.contains("doesn't match what was signed"),
        "{refused}"
    );
}
