//! Provenance: Sigstore bundles attached to a publish are verified before the version
//! enters, stored, and served where npm looks for them (`dist.attestations` and
//! `-/npm/v1/attestations/{name}@{version}`); an upstream's attestations pass through.

use serde_json::{Value, json};

use crate::support::fake_upstream::FakeUpstream;
use crate::support::*;

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
