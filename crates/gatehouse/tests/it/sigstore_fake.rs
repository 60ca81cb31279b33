//! The fake Sigstore is faithful: its bundles verify with the server's verifier and
//! with the real npm's sigstore library, offline, against its own trust root; a
//! tampered bundle or a leaf without a valid SCT is refused by both where they check.
//! (`provenance.rs` runs the real `npm audit signatures` against the server with it.)

use std::path::PathBuf;
use std::process::Command;

use gatehouse_npm::name::PackageName;
use gatehouse_npm::provenance::{self, ProvenanceError};
use gatehouse_npm::version::Version;
use serde_json::Value;

use crate::support::sigstore::{CertIdentity, FakeSigstore, Sct, write_json};

const SHA512: &str = "3c9909afec25354d551dae21590bb26e38d53f2173b8d3dc3eee4c047e7ab1c1eb8b85103e3be7ba613b31bb5c9c36214dc9f14a42fd7a2fdb84856bca5c44c2";

fn github() -> CertIdentity {
    CertIdentity::github(
        "acme/lib",
        "release.yml",
        "refs/heads/main",
        "0123456789abcdef0123456789abcdef01234567",
        4242,
    )
}

fn verify(sigstore: &FakeSigstore, bundle: &Value, sha512: &str) -> Result<provenance::Provenance, ProvenanceError> {
    let bundle = serde_json::to_vec(bundle).expect("JSON");
    let name = PackageName::parse("@acme/lib").expect("name");
    let version = Version::parse("1.0.0").expect("version");
    provenance::verify(&bundle, &sigstore.trusted_root(), &name, &version, sha512)
}

#[test]
fn bundles_verify_with_the_servers_verifier_and_name_the_job() {
    let sigstore = FakeSigstore::start();
    for identity in [
        github(),
        CertIdentity::gitlab("acme/group/lib", "refs/tags/v1.0.0", "abcdef0"),
    ] {
        let bundle = sigstore.bundle("pkg:npm/%40acme/lib@1.0.0", SHA512, &identity);
        let verified = verify(&sigstore, &bundle, SHA512).expect("the fake's bundle verifies");
        assert_eq!(verified.identity, identity.signing_identity());
        assert_eq!(verified.predicate_type, "https://slsa.dev/provenance/v1");
        let other = SHA512.replace('3', "4");
        assert!(matches!(
            verify(&sigstore, &bundle, &other),
            Err(ProvenanceError::SubjectDigest { .. })
        ));
    }
    let issuer = github().with_issuer("https://issuer.example");
    let bundle = sigstore.bundle("pkg:npm/%40acme/lib@1.0.0", SHA512, &issuer);
    let verified = verify(&sigstore, &bundle, SHA512).expect("verifies");
    assert_eq!(verified.identity.issuer.as_deref(), Some("https://issuer.example"));

    // Another fake's trust root trusts none of it.
    let stranger = FakeSigstore::start();
    let json = serde_json::to_vec(&bundle).expect("JSON");
    let refused = provenance::verify(
        &json,
        &stranger.trusted_root(),
        &PackageName::parse("@acme/lib").expect("name"),
        &Version::parse("1.0.0").expect("version"),
        SHA512,
    );
    assert!(matches!(refused, Err(ProvenanceError::UnknownLog(_))), "{refused:?}");
}

/// The `sigstore` module of the npm the client tests run (installed with them), or
/// `None` (a skip; a failure under CI=true).
fn npm_sigstore(test: &str) -> Option<PathBuf> {
    let clients = crate::support::clients::clients_or_skip(test)?;
    let module = clients.node_modules().join("npm/node_modules/sigstore");
    assert!(
        module.is_dir(),
        "{test}: npm has no sigstore module at {}",
        module.display()
    );
    Some(module)
}

/// Runs npm's `sigstore.verify(bundle, {tufCachePath, tufForceCache: true})` with every
/// network attempt sent to a closed port: Ok, or the error's message.
fn node_verify(module: &std::path::Path, sigstore: &FakeSigstore, bundle: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_json(dir.path(), "bundle.json", bundle);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = format!("http://127.0.0.1:{}", closed.local_addr().expect("addr").port());
    drop(closed);
    let script = r#"
const [module, bundle, tuf] = process.argv.slice(1);
require(module)
  .verify(JSON.parse(require('fs').readFileSync(bundle, 'utf8')), {tufCachePath: tuf, tufForceCache: true})
  .then(() => console.log('verified'), (e) => {
    console.error(e.message + (e.cause ? ' (cause: ' + e.cause.message + ')' : ''));
    process.exit(1);
  });
"#;
    let mut command = Command::new("node");
    command
        .arg("-e")
        .arg(script)
        .arg(module)
        .arg(&path)
        .arg(sigstore.tuf_cache())
        .env("HTTPS_PROXY", &proxy)
        .env("HTTP_PROXY", &proxy)
        .env("https_proxy", &proxy)
        .env("http_proxy", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for (key, value) in sigstore.npm_env() {
        command.env(key, value);
    }
    let output = command.output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if output.status.success() && stdout.contains("verified") {
        Ok(())
    } else {
        Err(stderr)
    }
}

#[test]
fn npms_sigstore_verifies_bundles_offline_and_refuses_tampered_ones() {
    let Some(module) = npm_sigstore("npms_sigstore_verifies_bundles_offline_and_refuses_tampered_ones") else {
        return;
    };
    let sigstore = FakeSigstore::start();
    let bundle = sigstore.bundle("pkg:npm/%40acme/lib@1.0.0", SHA512, &github());
    node_verify(&module, &sigstore, &bundle).expect("npm's sigstore verifies the fake's bundle");
    // Twice: the second run reads the TUF cache the first left behind.
    node_verify(&module, &sigstore, &bundle).expect("and again from the same cache");

    // The statement changed after signing.
    let mut tampered = bundle.clone();
    let payload = tampered["dsseEnvelope"]["payload"]
        .as_str()
        .expect("payload")
        .to_owned();
    let mut statement: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, payload).expect("base64"),
    )
    .expect("JSON");
    statement["subject"][0]["digest"]["sha512"] = Value::String("00".repeat(64));
    tampered["dsseEnvelope"]["payload"] = Value::String(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        serde_json::to_vec(&statement).expect("JSON"),
    ));
    let message = node_verify(&module, &sigstore, &tampered).expect_err("a tampered bundle is refused");
    assert!(message.contains("DSSE payload hash mismatch"), "{message}");

    // The log's signed entry timestamp no longer matches.
    let mut forged = bundle.clone();
    let entry = &mut forged["verificationMaterial"]["tlogEntries"][0];
    let logged: i64 = entry["integratedTime"].as_str().expect("time").parse().expect("number");
    // A second later: the certificate was still valid, but the log never signed that.
    entry["integratedTime"] = Value::String((logged + 1).to_string());
    let message = node_verify(&module, &sigstore, &forged).expect_err("a forged time is refused");
    assert!(message.contains("inclusion promise could not be verified"), "{message}");
}

#[test]
fn npms_sigstore_requires_a_valid_sct() {
    let Some(module) = npm_sigstore("npms_sigstore_requires_a_valid_sct") else {
        return;
    };
    let sigstore = FakeSigstore::start();
    let missing = sigstore.bundle_with("pkg:npm/%40acme/lib@1.0.0", SHA512, &github(), Sct::Missing);
    let message = node_verify(&module, &sigstore, &missing).expect_err("no SCT is refused");
    assert!(message.contains("expected 1 SCTs, got 0"), "{message}");
    let garbled = sigstore.bundle_with("pkg:npm/%40acme/lib@1.0.0", SHA512, &github(), Sct::Garbled);
    let message = node_verify(&module, &sigstore, &garbled).expect_err("a bad SCT is refused");
    assert!(message.contains("SCT verification failed"), "{message}");
    // The server does not check SCTs: both still verify there.
    verify(&sigstore, &missing, SHA512).expect("the server ignores the SCT");
}
