//! Provenance: the Sigstore bundle `npm publish --provenance` attaches as
//! `{name}-{version}.sigstore`. A DSSE envelope holds an in-toto statement naming the
//! tarball; a short-lived certificate from a certificate authority of the trust root
//! (Fulcio) signed it; a transparency log (Rekor) vouches for when.
//!
//! Pure and bounded like `tarball.rs`: one error per refusal, no IO. What is checked:
//! the statement's one subject is this package version and this tarball's sha512; the
//! envelope's signature verifies with the certificate's key; a log of the trust root
//! signed the entry's timestamp, and the entry records this signature; the certificate
//! chains to an authority of the trust root and was valid at that time. Who the
//! certificate names is returned for the caller to compare with who published.
//! Not checked: the certificate transparency SCT, Rekor v2 inclusion proofs.

mod certificate;
mod key;
pub mod root;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use certificate::SigningIdentity;
pub use root::{RootError, TrustedRoot};

use root::{ChainJson, LogIdJson, RawBytesJson};

use super::name::PackageName;
use super::trust::PublishedBy;
use super::version::Version;

/// A bundle is a few kilobytes; anything past this is not one.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;

const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvenanceError {
    #[error("the provenance bundle is larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    #[error("the provenance bundle is not valid JSON of a Sigstore bundle: {0}")]
    Json(String),
    #[error("the provenance bundle's media type {0:?} is not a Sigstore bundle's")]
    MediaType(String),
    #[error("the provenance bundle has no DSSE envelope: npm provenance is an in-toto statement in one")]
    NoEnvelope,
    #[error("the provenance envelope carries {0:?}, not an in-toto statement ({IN_TOTO_PAYLOAD})")]
    PayloadType(String),
    #[error("the provenance envelope must carry exactly one signature, it has {0}")]
    Signatures(usize),
    #[error("the provenance bundle's {0} is not base64")]
    Base64(&'static str),
    #[error("the provenance statement is not an in-toto statement: {0}")]
    Statement(String),
    #[error("the provenance statement must name exactly one subject, it names {0}")]
    Subjects(usize),
    #[error("the provenance is for {found}, not for {expected}")]
    SubjectName { found: String, expected: String },
    #[error("the provenance is for another tarball: its subject's sha512 is {found}, this tarball's is {expected}")]
    SubjectDigest { found: String, expected: String },
    #[error("the provenance bundle carries no signing certificate")]
    NoCertificate,
    #[error("the provenance signing certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the provenance signing certificate's key cannot verify: {0}")]
    Key(String),
    #[error(
        "the provenance signature does not verify with its certificate's key: the statement was changed after signing"
    )]
    BadSignature,
    #[error(
        "the provenance bundle has no transparency-log entry with a signed entry timestamp, so when it was signed cannot be verified"
    )]
    NoLogEntry,
    #[error("the provenance was logged in transparency log {0}, which the trust root does not list")]
    UnknownLog(String),
    #[error("the transparency log's signed entry timestamp does not verify: the entry was changed or forged")]
    BadEntryTimestamp,
    #[error("the transparency-log entry records another signature or statement than this bundle's")]
    EntryMismatch,
    #[error(
        "the provenance signing certificate does not chain to a certificate authority of this registry's Sigstore trust root"
    )]
    UntrustedCertificate,
    #[error(
        "the provenance signing certificate was not valid when the entry was logged ({signed_at}; valid {not_before} to {not_after})"
    )]
    CertificateExpired {
        signed_at: String,
        not_before: String,
        not_after: String,
    },
    #[error("the provenance signing certificate names no source repository, so it cannot be matched with this package")]
    NoSourceRepository,
    #[error(
        "package.json has no \"repository\": provenance built from {certificate} needs \"repository.url\" to name that repository"
    )]
    NoRepository { certificate: String },
    #[error("package.json's \"repository.url\" is {declared:?}, but the provenance was built from {certificate}")]
    RepositoryMismatch { declared: String, certificate: String },
    #[error(
        "the provenance was signed for {what} {certificate:?}, but the trusted publisher's token was for {publisher:?}"
    )]
    PublisherMismatch {
        what: &'static str,
        certificate: String,
        publisher: String,
    },
}

/// What a verified bundle says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub predicate_type: String,
    pub identity: SigningIdentity,
    /// When the transparency log recorded the signature (Unix seconds).
    pub signed_at: i64,
}

impl Provenance {
    /// The certificate's source repository against package.json's `repository`, as
    /// the public registry compares them; `required` when no trusted publisher vouches
    /// for the job.
    pub fn check_repository(
        &self,
        manifest: &serde_json::Map<String, Value>,
        required: bool,
    ) -> Result<(), ProvenanceError> {
        let certificate = self.identity.source_repository.clone().unwrap_or_default();
        let Some(built_from) = self.identity.repository_key() else {
            return Err(ProvenanceError::NoSourceRepository);
        };
        match manifest_repository(manifest) {
            Some(declared) if repository_key(declared).as_deref() == Some(built_from.as_str()) => Ok(()),
            Some(declared) => Err(ProvenanceError::RepositoryMismatch {
                declared: declared.to_owned(),
                certificate,
            }),
            None if required => Err(ProvenanceError::NoRepository { certificate }),
            None => Ok(()),
        }
    }

    /// The certificate against the OIDC token that published: same issuer, same
    /// repository, same commit.
    pub fn check_publisher(&self, publisher: &PublishedBy) -> Result<(), ProvenanceError> {
        let mismatch = |what, certificate: &str, publisher: &str| ProvenanceError::PublisherMismatch {
            what,
            certificate: certificate.to_owned(),
            publisher: publisher.to_owned(),
        };
        let identity = &self.identity;
        let issuer = identity.issuer.as_deref().unwrap_or_default();
        if issuer.trim_end_matches('/') != publisher.issuer.trim_end_matches('/') {
            return Err(mismatch("the issuer", issuer, &publisher.issuer));
        }
        if let Some(repository) = &publisher.repository {
            let key = identity.repository_key().ok_or(ProvenanceError::NoSourceRepository)?;
            let path = key.split_once('/').map_or("", |(_, path)| path);
            if path != repository.to_ascii_lowercase() {
                let certificate = identity.source_repository.as_deref().unwrap_or_default();
                return Err(mismatch("the repository", certificate, repository));
            }
        }
        if let (Some(sha), Some(digest)) = (&publisher.sha, &identity.source_digest)
            && !sha.eq_ignore_ascii_case(digest)
        {
            return Err(mismatch("the commit", digest, sha));
        }
        Ok(())
    }
}

/// The package URL npm puts in the statement: `pkg:npm/%40scope/name@1.0.0`.
pub fn purl(name: &PackageName, version: &Version) -> String {
    let name = name.as_str();
    match name.strip_prefix('@') {
        Some(scoped) => format!("pkg:npm/%40{scoped}@{version}"),
        None => format!("pkg:npm/{name}@{version}"),
    }
}

/// Verifies `bundle` as the provenance of the tarball whose sha512 is `sha512_hex`.
pub fn verify(
    bundle: &[u8],
    root: &TrustedRoot,
    name: &PackageName,
    version: &Version,
    sha512_hex: &str,
) -> Result<Provenance, ProvenanceError> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(ProvenanceError::TooLarge);
    }
    let bundle: BundleJson = serde_json::from_slice(bundle).map_err(|e| ProvenanceError::Json(e.to_string()))?;
    if !bundle.media_type.starts_with("application/vnd.dev.sigstore.bundle") {
        return Err(ProvenanceError::MediaType(bundle.media_type));
    }
    let envelope = bundle.dsse_envelope.ok_or(ProvenanceError::NoEnvelope)?;
    if envelope.payload_type != IN_TOTO_PAYLOAD {
        return Err(ProvenanceError::PayloadType(envelope.payload_type));
    }
    let [signature] = envelope.signatures.as_slice() else {
        return Err(ProvenanceError::Signatures(envelope.signatures.len()));
    };
    let payload = base64("envelope payload", &envelope.payload)?;
    let signature = base64("envelope signature", &signature.sig)?;
    let predicate_type = check_statement(&payload, &purl(name, version), sha512_hex)?;

    let material = bundle.verification_material;
    let leaf = match (&material.certificate, &material.x509_certificate_chain) {
        (Some(certificate), _) => &certificate.raw_bytes,
        (None, Some(chain)) => {
            &chain
                .certificates
                .first()
                .ok_or(ProvenanceError::NoCertificate)?
                .raw_bytes
        }
        (None, None) => return Err(ProvenanceError::NoCertificate),
    };
    let leaf = base64("signing certificate", leaf)?;
    let key = leaf_key(&leaf)?;
    if !key.verifies(&pae(&envelope.payload_type, &payload), &signature) {
        return Err(ProvenanceError::BadSignature);
    }
    let signed_at = logged_at(&material.tlog_entries, root, &payload, &signature)?;
    let identity = certificate::verify(&leaf, &root.authorities, signed_at)?;
    Ok(Provenance {
        predicate_type,
        identity,
        signed_at,
    })
}

/// The statement's predicate type, once its one subject is this tarball.
fn check_statement(payload: &[u8], expected_purl: &str, sha512_hex: &str) -> Result<String, ProvenanceError> {
    let statement: StatementJson =
        serde_json::from_slice(payload).map_err(|e| ProvenanceError::Statement(e.to_string()))?;
    if !statement.kind.starts_with("https://in-toto.io/Statement/") {
        return Err(ProvenanceError::Statement(format!("_type is {:?}", statement.kind)));
    }
    let [subject] = statement.subject.as_slice() else {
        return Err(ProvenanceError::Subjects(statement.subject.len()));
    };
    if subject.name != expected_purl {
        return Err(ProvenanceError::SubjectName {
            found: subject.name.clone(),
            expected: expected_purl.to_owned(),
        });
    }
    let found = subject.digest.get("sha512").map(String::as_str).unwrap_or("(none)");
    if !found.eq_ignore_ascii_case(sha512_hex) {
        return Err(ProvenanceError::SubjectDigest {
            found: found.to_owned(),
            expected: sha512_hex.to_owned(),
        });
    }
    Ok(statement.predicate_type)
}

fn leaf_key(der: &[u8]) -> Result<key::VerifyingKey, ProvenanceError> {
    use x509_parser::prelude::FromDer as _;
    let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| ProvenanceError::Certificate(e.to_string()))?;
    key::VerifyingKey::from_spki(leaf.public_key()).map_err(ProvenanceError::Key)
}

/// DSSE's pre-authentication encoding: what the signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The time a log of the trust root vouches for, from the first entry whose signed
/// entry timestamp verifies and which records this envelope.
fn logged_at(
    entries: &[TlogEntryJson],
    root: &TrustedRoot,
    payload: &[u8],
    signature: &[u8],
) -> Result<i64, ProvenanceError> {
    let mut error = ProvenanceError::NoLogEntry;
    for entry in entries {
        let Some(promise) = &entry.inclusion_promise else {
            continue;
        };
        let key_id = base64("transparency log id", &entry.log_id.key_id)?;
        let (Some(integrated_time), Some(log_index)) = (entry.integrated_time.value(), entry.log_index.value()) else {
            error = ProvenanceError::BadEntryTimestamp;
            continue;
        };
        let Some(log) = root
            .logs
            .iter()
            .find(|l| l.key_id == key_id && l.valid.contains(integrated_time))
        else {
            error = ProvenanceError::UnknownLog(hex::encode(&key_id));
            continue;
        };
        // Rekor signs the canonical JSON of these four fields, keys in order.
        let signed = format!(
            "{{\"body\":{},\"integratedTime\":{integrated_time},\"logID\":\"{}\",\"logIndex\":{log_index}}}",
            Value::String(entry.canonicalized_body.clone()),
            hex::encode(&key_id),
        );
        let set = base64("signed entry timestamp", &promise.signed_entry_timestamp)?;
        if !log.key.verifies(signed.as_bytes(), &set) {
            error = ProvenanceError::BadEntryTimestamp;
            continue;
        }
        let body = base64("transparency-log entry", &entry.canonicalized_body)?;
        if !records(&body, payload, signature) {
            error = ProvenanceError::EntryMismatch;
            continue;
        }
        return Ok(integrated_time);
    }
    Err(error)
}

/// Whether a Rekor entry body (kind `dsse` or `intoto`) records this payload and signature.
fn records(body: &[u8], payload: &[u8], signature: &[u8]) -> bool {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let spec = &body["spec"];
    let payload_hash = hex::encode(Sha256::digest(payload));
    let signature_b64 = STANDARD.encode(signature);
    let (hash, signatures, field) = match body["kind"].as_str() {
        Some("dsse") => (&spec["payloadHash"]["value"], &spec["signatures"], "signature"),
        // intoto 0.0.2 base64-encodes the (already base64) signature once more.
        Some("intoto") => (
            &spec["content"]["payloadHash"]["value"],
            &spec["content"]["envelope"]["signatures"],
            "sig",
        ),
        _ => return false,
    };
    let signed_here = |recorded: &str| {
        recorded == signature_b64
            || STANDARD
                .decode(recorded)
                .is_ok_and(|once| once == signature || once == signature_b64.as_bytes())
    };
    hash.as_str() == Some(payload_hash.as_str())
        && signatures
            .as_array()
            .is_some_and(|list| list.iter().any(|s| s[field].as_str().is_some_and(signed_here)))
}

/// A repository URL as `host/path`, lower-cased, whatever form package.json or a
/// certificate wrote it in: `git+https://github.com/A/b.git`, `github:a/b`, `a/b`,
/// `git@github.com:a/b.git` and `https://github.com/a/b` are all `github.com/a/b`.
pub fn repository_key(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = if let Some(shorthand) = url.strip_prefix("github:") {
        format!("github.com/{shorthand}")
    } else if let Some(shorthand) = url.strip_prefix("gitlab:") {
        format!("gitlab.com/{shorthand}")
    } else if let Some(scp) = url.strip_prefix("git@") {
        scp.replacen(':', "/", 1)
    } else if let Some((_, rest)) = url.split_once("://") {
        // Drop a user (`ssh://git@host/...`).
        rest.rsplit_once('@')
            .filter(|(user, _)| !user.contains('/'))
            .map_or(rest, |(_, host)| host)
            .to_owned()
    } else if url.matches('/').count() == 1 && !url.contains(':') {
        format!("github.com/{url}")
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    (rest.contains('/') && !rest.is_empty()).then(|| rest.to_ascii_lowercase())
}

/// The repository URL package.json declares (`"repository": "…"` or `{"url": "…"}`).
pub fn manifest_repository(manifest: &serde_json::Map<String, Value>) -> Option<&str> {
    match manifest.get("repository")? {
        Value::String(url) => Some(url),
        Value::Object(repository) => repository.get("url")?.as_str(),
        _ => None,
    }
}

fn base64(what: &'static str, text: &str) -> Result<Vec<u8>, ProvenanceError> {
    STANDARD.decode(text).map_err(|_| ProvenanceError::Base64(what))
}

fn iso(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleJson {
    media_type: String,
    verification_material: MaterialJson,
    dsse_envelope: Option<EnvelopeJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialJson {
    /// Bundles v0.1 and v0.2.
    x509_certificate_chain: Option<ChainJson>,
    /// Bundles v0.3.
    certificate: Option<RawBytesJson>,
    #[serde(default)]
    tlog_entries: Vec<TlogEntryJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntryJson {
    log_index: Int64,
    log_id: LogIdJson,
    integrated_time: Int64,
    inclusion_promise: Option<PromiseJson>,
    canonicalized_body: String,
}

/// Protobuf's JSON writes 64-bit integers as strings; accept numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64 {
    Text(String),
    Number(i64),
}

impl Int64 {
    fn value(&self) -> Option<i64> {
        match self {
            Int64::Text(text) => text.parse().ok(),
            Int64::Number(n) => Some(*n),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromiseJson {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeJson {
    payload: String,
    payload_type: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Deserialize)]
struct SignatureJson {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementJson {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<SubjectJson>,
    predicate_type: String,
}

#[derive(Deserialize)]
struct SubjectJson {
    name: String,
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_escape_the_scope() {
        let version = Version::parse("1.0.0").unwrap();
        assert_eq!(
            purl(&PackageName::parse("@acme/lib").unwrap(), &version),
            "pkg:npm/%40acme/lib@1.0.0"
        );
        assert_eq!(
            purl(&PackageName::parse("left-pad").unwrap(), &version),
            "pkg:npm/left-pad@1.0.0"
        );
    }

    #[test]
    fn repository_urls_in_every_form_compare_equal() {
        for url in [
            "git+https://github.com/Acme/Lib.git",
            "https://github.com/acme/lib",
            "https://github.com/acme/lib/",
            "git://github.com/acme/lib.git",
            "ssh://git@github.com/acme/lib.git",
            "git@github.com:acme/lib.git",
            "github:acme/lib",
            "acme/lib",
        ] {
            assert_eq!(repository_key(url).as_deref(), Some("github.com/acme/lib"), "{url}");
        }
        assert_eq!(
            repository_key("https://gitlab.com/group/sub/project").as_deref(),
            Some("gitlab.com/group/sub/project")
        );
        assert_eq!(repository_key(""), None);
        assert_eq!(repository_key("not a url"), None);
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }

    #[test]
    fn malformed_bundles_are_refused_one_error_each() {
        let name = PackageName::parse("lib").unwrap();
        let version = Version::parse("1.0.0").unwrap();
        let trusted = TrustedRoot {
            authorities: Vec::new(),
            logs: Vec::new(),
        };
        let check = |bundle: &[u8]| verify(bundle, &trusted, &name, &version, "00").unwrap_err();
        assert_eq!(check(&vec![b' '; MAX_BUNDLE_BYTES + 1]), ProvenanceError::TooLarge);
        assert!(matches!(check(b"{"), ProvenanceError::Json(_)));
        let bundle = |media: &str, envelope: Value| {
            serde_json::to_vec(&serde_json::json!({
                "mediaType": media,
                "verificationMaterial": {"tlogEntries": []},
                "dsseEnvelope": envelope,
            }))
            .unwrap()
        };
        let v03 = "application/vnd.dev.sigstore.bundle.v0.3+json";
        assert_eq!(
            check(&bundle("text/plain", Value::Null)),
            ProvenanceError::MediaType("text/plain".into())
        );
        assert_eq!(check(&bundle(v03, Value::Null)), ProvenanceError::NoEnvelope);
        let envelope = |payload_type: &str, payload: &[u8], signatures: usize| {
            serde_json::json!({
                "payloadType": payload_type,
                "payload": STANDARD.encode(payload),
                "signatures": vec![serde_json::json!({"sig": "AA=="}); signatures],
            })
        };
        assert_eq!(
            check(&bundle(v03, envelope("text/plain", b"{}", 1))),
            ProvenanceError::PayloadType("text/plain".into())
        );
        assert_eq!(
            check(&bundle(v03, envelope(IN_TOTO_PAYLOAD, b"{}", 2))),
            ProvenanceError::Signatures(2)
        );
        assert!(matches!(
            check(&bundle(v03, envelope(IN_TOTO_PAYLOAD, b"[]", 1))),
            ProvenanceError::Statement(_)
        ));
        let statement = |subjects: Value| {
            serde_json::to_vec(&serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "predicateType": "https://slsa.dev/provenance/v1",
                "subject": subjects,
            }))
            .unwrap()
        };
        assert_eq!(
            check(&bundle(
                v03,
                envelope(IN_TOTO_PAYLOAD, &statement(serde_json::json!([])), 1)
            )),
            ProvenanceError::Subjects(0)
        );
        let other = statement(serde_json::json!([{"name": "pkg:npm/other@1.0.0", "digest": {"sha512": "00"}}]));
        assert_eq!(
            check(&bundle(v03, envelope(IN_TOTO_PAYLOAD, &other, 1))),
            ProvenanceError::SubjectName {
                found: "pkg:npm/other@1.0.0".into(),
                expected: "pkg:npm/lib@1.0.0".into()
            }
        );
        let wrong = statement(serde_json::json!([{"name": "pkg:npm/lib@1.0.0", "digest": {"sha512": "ff"}}]));
        assert_eq!(
            check(&bundle(v03, envelope(IN_TOTO_PAYLOAD, &wrong, 1))),
            ProvenanceError::SubjectDigest {
                found: "ff".into(),
                expected: "00".into()
            }
        );
        let right = statement(serde_json::json!([{"name": "pkg:npm/lib@1.0.0", "digest": {"sha512": "00"}}]));
        assert_eq!(
            check(&bundle(v03, envelope(IN_TOTO_PAYLOAD, &right, 1))),
            ProvenanceError::NoCertificate
        );
    }
}
