//! A fake Sigstore, all in memory: a Fulcio-like certificate authority (self-signed
//! P-384 root), a Rekor log key and a certificate-transparency log key (both P-256).
//!
//! [`FakeSigstore::bundle`] makes the provenance bundle `npm publish --provenance`
//! attaches (bundle v0.3, a DSSE envelope with an in-toto SLSA statement, a Fulcio-like
//! leaf with an embedded SCT, one Rekor `dsse` entry with a signed entry timestamp and
//! an inclusion proof whose checkpoint the log signed). [`FakeSigstore::trusted_root_path`]
//! is the `trusted_root.json` the server is configured with, and [`FakeSigstore::npm_cache`]
//! an npm cache whose `_tuf` holds a TUF repository of our own serving that trust root,
//! so the real npm (pacote and `npm audit signatures` call `sigstore.verify` with
//! `tufForceCache: true`) verifies our bundles without any network.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SanType, SerialNumber,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

/// The Rekor log's name in checkpoints; sigstore-js matches it against the log's base URL.
const REKOR_ORIGIN: &str = "rekor.gatehouse.test";
/// The TUF mirror `@sigstore/tuf` uses by default; its cache directory is named after it.
const TUF_MIRROR_DIR: &str = "tuf-repo-cdn.sigstore.dev";
const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const IN_TOTO: &str = "application/vnd.in-toto+json";
/// Fulcio's OID arc: `1.3.6.1.4.1.57264.1.N`.
const FULCIO: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 0];
/// The embedded SCT list extension (RFC 6962).
const SCT_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

/// Who a signing certificate names: the CI job, as Fulcio writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub issuer: String,
    /// The subject alternative name (URI): the workflow file at the ref.
    pub subject: String,
    /// `https://github.com/owner/repo`.
    pub source_repository: String,
    /// Only GitHub's legacy extension `.5` holds it (`owner/repo`).
    pub repository_path: String,
    pub sha: String,
    pub git_ref: String,
    pub build_config: String,
    pub run_invocation: String,
    pub trigger: String,
    pub runner: String,
    /// `https://github.com/owner`.
    pub owner: String,
    /// The workflow's path in the repository.
    pub workflow_path: String,
    /// GitHub Actions or GitLab CI (what the SLSA predicate's buildType says).
    pub gitlab: bool,
}

impl CertIdentity {
    /// A GitHub Actions job of `repository` (`owner/repo`) running `workflow_file`
    /// (`release.yml`, under `.github/workflows/`) at `git_ref` (`refs/heads/main`).
    pub fn github(repository: &str, workflow_file: &str, git_ref: &str, sha: &str, run_id: u64) -> CertIdentity {
        let source_repository = format!("https://github.com/{repository}");
        let workflow_path = format!(".github/workflows/{workflow_file}");
        let subject = format!("{source_repository}/{workflow_path}@{git_ref}");
        let owner = repository.split('/').next().unwrap_or_default();
        CertIdentity {
            issuer: "https://token.actions.githubusercontent.com".to_owned(),
            build_config: subject.clone(),
            subject,
            run_invocation: format!("{source_repository}/actions/runs/{run_id}/attempts/1"),
            repository_path: repository.to_owned(),
            source_repository,
            sha: sha.to_owned(),
            git_ref: git_ref.to_owned(),
            trigger: "push".to_owned(),
            runner: "github-hosted".to_owned(),
            owner: format!("https://github.com/{owner}"),
            workflow_path,
            gitlab: false,
        }
    }

    /// A GitLab CI job of `project_path` (`group/project`) at `git_ref`.
    pub fn gitlab(project_path: &str, git_ref: &str, sha: &str) -> CertIdentity {
        let source_repository = format!("https://gitlab.com/{project_path}");
        // Fulcio writes GitLab's config path after a double slash.
        let subject = format!("{source_repository}//.gitlab-ci.yml@{git_ref}");
        let owner = project_path.rsplit_once('/').map_or(project_path, |(group, _)| group);
        CertIdentity {
            issuer: "https://gitlab.com".to_owned(),
            build_config: subject.clone(),
            subject,
            run_invocation: format!("{source_repository}/-/jobs/4242"),
            repository_path: project_path.to_owned(),
            source_repository,
            sha: sha.to_owned(),
            git_ref: git_ref.to_owned(),
            trigger: "push".to_owned(),
            runner: "gitlab-hosted".to_owned(),
            owner: format!("https://gitlab.com/{owner}"),
            workflow_path: ".gitlab-ci.yml".to_owned(),
            gitlab: true,
        }
    }

    pub fn with_issuer(mut self, issuer: &str) -> CertIdentity {
        self.issuer = issuer.to_owned();
        self
    }

    /// What `gatehouse_npm::provenance::verify` should read back from the certificate.
    pub fn signing_identity(&self) -> gatehouse_npm::provenance::SigningIdentity {
        gatehouse_npm::provenance::SigningIdentity {
            subject: Some(self.subject.clone()),
            issuer: Some(self.issuer.clone()),
            source_repository: Some(self.source_repository.clone()),
            source_digest: Some(self.sha.clone()),
            source_ref: Some(self.git_ref.clone()),
            build_config: Some(self.build_config.clone()),
            run_invocation: Some(self.run_invocation.clone()),
        }
    }

    /// Fulcio's extensions in its order, as (arc, DER content of the extension value).
    fn extensions(&self) -> Vec<(u64, Vec<u8>)> {
        let utf8 = |s: &str| der(0x0c, s.as_bytes());
        let raw = |s: &str| s.as_bytes().to_vec();
        let mut out = vec![(1, raw(&self.issuer))];
        if !self.gitlab {
            // The deprecated v1 extensions, still written for GitHub.
            out.extend([
                (2, raw(&self.trigger)),
                (3, raw(&self.sha)),
                (4, raw("Release")),
                (5, raw(&self.repository_path)),
                (6, raw(&self.git_ref)),
            ]);
        }
        out.extend([
            (8, utf8(&self.issuer)),
            (9, utf8(&self.build_config)),
            (10, utf8(&self.sha)),
            (11, utf8(&self.runner)),
            (12, utf8(&self.source_repository)),
            (13, utf8(&self.sha)),
            (14, utf8(&self.git_ref)),
            (15, utf8("123456789")),
            (16, utf8(&self.owner)),
            (17, utf8("987654")),
            (18, utf8(&self.build_config)),
            (19, utf8(&self.sha)),
            (20, utf8(&self.trigger)),
            (21, utf8(&self.run_invocation)),
        ]);
        out
    }

    /// The SLSA v1 predicate npm's provenance carries for this job.
    fn predicate(&self) -> Value {
        let build_type = if self.gitlab {
            "https://github.com/npm/cli/gitlab/v0alpha1"
        } else {
            "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"
        };
        json!({
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": {
                    "workflow": {
                        "ref": self.git_ref,
                        "repository": self.source_repository,
                        "path": self.workflow_path,
                    }
                },
                "internalParameters": {
                    "github": {"event_name": self.trigger, "repository_id": "123456789", "repository_owner_id": "987654"}
                },
                "resolvedDependencies": [{
                    "uri": format!("git+{}@{}", self.source_repository, self.git_ref),
                    "digest": {"gitCommit": self.sha},
                }],
            },
            "runDetails": {
                "builder": {"id": format!("https://github.com/actions/runner/{}", self.runner)},
                "metadata": {"invocationId": self.run_invocation},
            },
        })
    }
}

/// How [`FakeSigstore::bundle_with`] breaks the leaf's SCT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sct {
    /// What Fulcio does: an SCT by the trust root's CT log over the precertificate.
    Valid,
    /// No SCT extension at all.
    Missing,
    /// An SCT whose signature does not verify.
    Garbled,
}

struct Key {
    pair: EcdsaKeyPair,
    /// The same key for rcgen to certify.
    certified: KeyPair,
    spki: Vec<u8>,
    /// sha256 of the SPKI DER: the log id.
    id: [u8; 32],
}

impl Key {
    fn p256(rng: &SystemRandom) -> Key {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng).expect("P-256 key");
        let rcgen = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &PKCS_ECDSA_P256_SHA256)
            .expect("rcgen reads ring's PKCS#8");
        let spki = rcgen::PublicKeyData::subject_public_key_info(&rcgen);
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), rng).expect("P-256");
        Key {
            pair,
            certified: rcgen,
            id: Sha256::digest(&spki).into(),
            spki,
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("ECDSA signs")
            .as_ref()
            .to_vec()
    }
}

pub struct FakeSigstore {
    dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_der: Vec<u8>,
    rekor: Key,
    ctlog: Key,
}

impl FakeSigstore {
    /// A new CA and logs, their trust root written, the npm cache seeded.
    pub fn start() -> FakeSigstore {
        let rng = SystemRandom::new();
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let mut ca_params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "gatehouse.test");
        name.push(DnType::CommonName, "fake-fulcio");
        ca_params.distinguished_name = name;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = now();
        ca_params.not_before = datetime(now - 86_400);
        ca_params.not_after = datetime(now + 10 * 365 * 86_400);
        let ca_der = ca_params.self_signed(&ca_key).expect("CA certificate").der().to_vec();
        let sigstore = FakeSigstore {
            dir: tempfile::tempdir().expect("tempdir"),
            ca_params,
            ca_key,
            ca_der,
            rekor: Key::p256(&rng),
            ctlog: Key::p256(&rng),
        };
        let root = serde_json::to_vec_pretty(&sigstore.trusted_root_json(now)).expect("JSON");
        std::fs::write(sigstore.trusted_root_path(), &root).expect("write trusted_root.json");
        sigstore.seed_tuf(&root, now);
        sigstore
    }

    pub fn trusted_root_path(&self) -> PathBuf {
        self.dir.path().join("trusted_root.json")
    }

    /// The trust root the server verifies with.
    pub fn trusted_root(&self) -> gatehouse_npm::provenance::TrustedRoot {
        let json = std::fs::read(self.trusted_root_path()).expect("read trusted_root.json");
        gatehouse_npm::provenance::TrustedRoot::parse(&json).expect("our trust root parses")
    }

    /// An npm cache whose `_tuf` serves our trust root (`npm_config_cache`).
    pub fn npm_cache(&self) -> PathBuf {
        self.dir.path().join("npm-cache")
    }

    /// Where `sigstore.verify`'s `tufCachePath` points: pacote's `<cache>/_tuf`.
    pub fn tuf_cache(&self) -> PathBuf {
        self.npm_cache().join("_tuf")
    }

    /// The environment that points npm at [`npm_cache`](Self::npm_cache).
    pub fn npm_env(&self) -> Vec<(String, String)> {
        vec![("npm_config_cache".to_owned(), self.npm_cache().display().to_string())]
    }

    /// The provenance bundle for `purl` (`pkg:npm/name@1.0.0`) of the tarball whose
    /// sha512 is `sha512_hex`, signed by the job `identity`.
    pub fn bundle(&self, purl: &str, sha512_hex: &str, identity: &CertIdentity) -> Value {
        self.bundle_with(purl, sha512_hex, identity, Sct::Valid)
    }

    pub fn bundle_with(&self, purl: &str, sha512_hex: &str, identity: &CertIdentity, sct: Sct) -> Value {
        let now = now();
        let rng = SystemRandom::new();
        let leaf_key = Key::p256(&rng);
        let leaf = self.leaf(&leaf_key, identity, now, sct);

        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": purl, "digest": {"sha512": sha512_hex}}],
            "predicateType": SLSA_V1,
            "predicate": identity.predicate(),
        });
        let payload = serde_json::to_vec(&statement).expect("JSON");
        let signature = leaf_key.sign(&pae(IN_TOTO, &payload));
        let envelope = json!({
            "payload": STANDARD.encode(&payload),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": STANDARD.encode(&signature), "keyid": ""}],
        });

        // The Rekor dsse v0.0.1 entry, in canonical JSON as Rekor stores it.
        let leaf_pem = pem("CERTIFICATE", &leaf);
        let body = canonical(&json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(canonical(&envelope)))},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&payload))},
                "signatures": [{
                    "signature": STANDARD.encode(&signature),
                    "verifier": STANDARD.encode(leaf_pem.as_bytes()),
                }],
            },
        }));
        let body_b64 = STANDARD.encode(&body);
        let log_index: u64 = 123_456_789;
        let log_id_hex = hex::encode(self.rekor.id);
        let set_payload = canonical(&json!({
            "body": body_b64,
            "integratedTime": now,
            "logID": log_id_hex,
            "logIndex": log_index,
        }));
        let set = self.rekor.sign(&set_payload);

        // A two-leaf tree: our entry at index 1, some other entry at 0.
        let sibling = Sha256::digest(b"\x00another entry").to_vec();
        let leaf_hash = Sha256::new().chain_update([0u8]).chain_update(&body).finalize();
        let root_hash = Sha256::new()
            .chain_update([1u8])
            .chain_update(&sibling)
            .chain_update(leaf_hash)
            .finalize();
        let note = format!("{REKOR_ORIGIN} - 1\n2\n{}\n", STANDARD.encode(root_hash));
        let mut note_signature = self.rekor.id[..4].to_vec();
        note_signature.extend(self.rekor.sign(note.as_bytes()));
        let checkpoint = format!("{note}\n\u{2014} {REKOR_ORIGIN} {}\n", STANDARD.encode(note_signature));

        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": STANDARD.encode(&leaf)},
                "tlogEntries": [{
                    "logIndex": log_index.to_string(),
                    "logId": {"keyId": STANDARD.encode(self.rekor.id)},
                    "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                    "integratedTime": now.to_string(),
                    "inclusionPromise": {"signedEntryTimestamp": STANDARD.encode(set)},
                    "inclusionProof": {
                        "logIndex": "1",
                        "rootHash": STANDARD.encode(root_hash),
                        "treeSize": "2",
                        "hashes": [STANDARD.encode(&sibling)],
                        "checkpoint": {"envelope": checkpoint},
                    },
                    "canonicalizedBody": body_b64,
                }],
                "timestampVerificationData": {},
            },
            "dsseEnvelope": envelope,
        })
    }

    /// The leaf Fulcio would issue: empty subject, the workflow as SAN, Fulcio's
    /// extensions, and last the SCT over the precertificate (the same TBS without it).
    fn leaf(&self, key: &Key, identity: &CertIdentity, now: i64, sct: Sct) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = datetime(now - 60);
        params.not_after = datetime(now + 540);
        let mut serial = Sha256::digest(&key.spki)[..20].to_vec();
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.subject_alt_names = vec![SanType::URI(identity.subject.clone().try_into().expect("IA5 SAN"))];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        for (arc, content) in identity.extensions() {
            let mut oid = FULCIO;
            oid[8] = arc;
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(&oid, content));
        }
        let public = &key.certified;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let precert = params.signed_by(public, &issuer).expect("precertificate");
        if sct == Sct::Missing {
            return precert.der().to_vec();
        }
        let precert_tbs = tbs(precert.der());
        let timestamp_ms = u64::try_from(now).expect("after 1970") * 1000;
        // RFC 6962 3.2: what the log signs for a precertificate entry.
        let mut signed = vec![0u8, 0u8];
        signed.extend(timestamp_ms.to_be_bytes());
        signed.extend(1u16.to_be_bytes());
        signed.extend(Sha256::digest(spki_of(&self.ca_der)));
        signed.extend(&u32::try_from(precert_tbs.len()).expect("small").to_be_bytes()[1..]);
        signed.extend(&precert_tbs);
        signed.extend(0u16.to_be_bytes());
        let mut signature = self.ctlog.sign(&signed);
        if sct == Sct::Garbled {
            let last = signature.len() - 2;
            signature[last] ^= 0x55;
        }
        let mut one = vec![0u8];
        one.extend(self.ctlog.id);
        one.extend(timestamp_ms.to_be_bytes());
        one.extend(0u16.to_be_bytes());
        one.extend([4u8, 3u8]); // sha256, ecdsa
        one.extend(u16::try_from(signature.len()).expect("small").to_be_bytes());
        one.extend(&signature);
        let mut list = u16::try_from(one.len() + 2).expect("small").to_be_bytes().to_vec();
        list.extend(u16::try_from(one.len()).expect("small").to_be_bytes());
        list.extend(&one);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(SCT_OID, der(0x04, &list)));
        let cert = params.signed_by(public, &issuer).expect("certificate");
        cert.der().to_vec()
    }

    fn trusted_root_json(&self, now: i64) -> Value {
        let since = chrono::DateTime::from_timestamp(now - 86_400, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let log = |key: &Key, url: &str| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": STANDARD.encode(&key.spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": since},
                },
                "logId": {"keyId": STANDARD.encode(key.id)},
            })
        };
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, &format!("https://{REKOR_ORIGIN}"))],
            "certificateAuthorities": [{
                "subject": {"organization": "gatehouse.test", "commonName": "fake-fulcio"},
                "uri": "https://fulcio.gatehouse.test",
                "certChain": {"certificates": [{"rawBytes": STANDARD.encode(&self.ca_der)}]},
                "validFor": {"start": since},
            }],
            "ctlogs": [log(&self.ctlog, "https://ctfe.gatehouse.test/test")],
            "timestampAuthorities": [],
        })
    }

    /// A TUF repository of our own in `<npm cache>/_tuf/tuf-repo-cdn.sigstore.dev`:
    /// one ed25519 key for all four roles, `trusted_root.json` its only target. tuf-js
    /// with `forceCache` loads it all from there and never fetches.
    fn seed_tuf(&self, trusted_root: &[u8], now: i64) {
        let dir = self.tuf_cache().join(TUF_MIRROR_DIR);
        std::fs::create_dir_all(dir.join("targets")).expect("mkdir TUF cache");
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519");
        let public =
            json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(key.public_key())}});
        let key_id = hex::encode(Sha256::digest(canonical(&public)));
        let expires = chrono::DateTime::from_timestamp(now + 365 * 86_400, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let role = json!({"keyids": [key_id], "threshold": 1});
        let sign = |signed: Value| -> Vec<u8> {
            let sig = key.sign(&canonical(&signed));
            serde_json::to_vec_pretty(&json!({
                "signed": signed,
                "signatures": [{"keyid": key_id, "sig": hex::encode(sig.as_ref())}],
            }))
            .expect("JSON")
        };
        let meta = |bytes: &[u8]| json!({"version": 1, "length": bytes.len(), "hashes": {"sha256": hex::encode(Sha256::digest(bytes))}});
        let root = sign(json!({
            "_type": "root",
            "spec_version": "1.0",
            "version": 1,
            "expires": expires,
            "consistent_snapshot": true,
            "keys": {key_id.clone(): public},
            "roles": {"root": role, "snapshot": role, "targets": role, "timestamp": role},
        }));
        let targets = sign(json!({
            "_type": "targets",
            "spec_version": "1.0",
            "version": 1,
            "expires": expires,
            "targets": {"trusted_root.json": {
                "length": trusted_root.len(),
                "hashes": {
                    "sha256": hex::encode(Sha256::digest(trusted_root)),
                    "sha512": hex::encode(Sha512::digest(trusted_root)),
                },
            }},
        }));
        let snapshot = sign(json!({
            "_type": "snapshot",
            "spec_version": "1.0",
            "version": 1,
            "expires": expires,
            "meta": {"targets.json": meta(&targets)},
        }));
        let timestamp = sign(json!({
            "_type": "timestamp",
            "spec_version": "1.0",
            "version": 1,
            "expires": expires,
            "meta": {"snapshot.json": meta(&snapshot)},
        }));
        for (name, bytes) in [
            ("root.json", &root),
            ("targets.json", &targets),
            ("snapshot.json", &snapshot),
            ("timestamp.json", &timestamp),
        ] {
            std::fs::write(dir.join(name), bytes).expect("write TUF metadata");
        }
        std::fs::write(dir.join("targets/trusted_root.json"), trusted_root).expect("write TUF target");
    }
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("time")
}

fn datetime(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).expect("time")
}

/// The raw TBSCertificate of a DER certificate.
fn tbs(certificate: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer as _;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(certificate).expect("our certificate parses");
    parsed.tbs_certificate.as_ref().to_vec()
}

fn spki_of(certificate: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer as _;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(certificate).expect("our certificate parses");
    parsed.public_key().raw.to_vec()
}

/// One DER TLV with a primitive tag (UTF8String 0x0c, OCTET STRING 0x04): the
/// values of Fulcio's and the SCT extensions, which rcgen takes pre-encoded.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(content);
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// DSSE's pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Canonical JSON: keys sorted, no whitespace, integers only. For the ASCII text this
/// fake writes, OLPC canonical JSON (TUF) and RFC 8785 (Rekor) are the same bytes.
pub fn canonical(value: &Value) -> Vec<u8> {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out.into_bytes()
}

/// Writes `value` as `dir/name` and returns its path (bundles for node to read).
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).expect("JSON")).expect("write JSON");
    path
}

/// Sigstore's TUF mirror (`https://tuf-repo-cdn.sigstore.dev`) as an HTTPS man in the
/// middle, for `npm audit signatures`: unlike pacote it refreshes TUF without
/// `forceCache`, asking the mirror for `2.root.json` (a 404 says v1 is current) and
/// `timestamp.json` (ours again, the same version). Everything else is a 404.
/// Point node at it with [`TufMirror::env`]: `HTTPS_PROXY` to this CONNECT proxy and
/// `NODE_EXTRA_CA_CERTS` to the CA of its certificate.
pub struct TufMirror {
    pub proxy: String,
    ca_pem: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TufMirror {
    /// The paths asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HTTPS_PROXY".to_owned(), self.proxy.clone()),
            ("https_proxy".to_owned(), self.proxy.clone()),
            ("NODE_EXTRA_CA_CERTS".to_owned(), self.ca_pem.display().to_string()),
        ]
    }
}

impl Drop for TufMirror {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop.
        let _ = std::net::TcpStream::connect(self.proxy.trim_start_matches("http://"));
    }
}

impl FakeSigstore {
    pub fn tuf_mirror(&self) -> TufMirror {
        use std::io::{BufRead as _, BufReader, Write as _};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse test TUF mirror CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let ca_pem = self.dir.path().join("tuf-mirror-ca.pem");
        std::fs::write(&ca_pem, pem("CERTIFICATE", ca.der())).expect("write CA");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let params = CertificateParams::new(vec![TUF_MIRROR_DIR.to_owned()]).expect("params");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
            .expect("certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("TLS config");
        let config = Arc::new(config);
        let timestamp =
            std::fs::read(self.tuf_cache().join(TUF_MIRROR_DIR).join("timestamp.json")).expect("read timestamp.json");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let proxy = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let config = config.clone();
                let timestamp = timestamp.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    // CONNECT host:443 HTTP/1.1, then headers up to a blank line.
                    if reader.read_line(&mut line).is_err() || !line.starts_with("CONNECT ") {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                            break;
                        }
                    }
                    let mut stream = reader.into_inner();
                    if stream
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                    let Ok(connection) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let tls = rustls::StreamOwned::new(connection, stream);
                    let mut reader = BufReader::new(tls);
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                            break;
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    log.lock().expect("lock").push(path.clone());
                    let (status, body) = if path == "/timestamp.json" {
                        ("200 OK", timestamp)
                    } else {
                        ("404 Not Found", b"not found".to_vec())
                    };
                    let mut tls = reader.into_inner();
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes());
                    let _ = tls.write_all(&body);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TufMirror {
            proxy,
            ca_pem,
            stop,
            requests,
        }
    }
}
