//! The signing certificate of a bundle: that it chains to a certificate authority of
//! the trust root, and who it names (the CI job that Fulcio issued it to).

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use super::ProvenanceError;
use super::root::Authority;

/// What Fulcio wrote into the certificate about the job that signed
/// (`1.3.6.1.4.1.57264.1.*`, docs: fulcio `oid-info.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigningIdentity {
    /// The subject alternative name: for CI the workflow, e.g.
    /// `https://github.com/acme/lib/.github/workflows/release.yml@refs/heads/main`.
    pub subject: Option<String>,
    /// The OIDC issuer that vouched for the job.
    pub issuer: Option<String>,
    /// `https://github.com/acme/lib`.
    pub source_repository: Option<String>,
    /// The commit the job built.
    pub source_digest: Option<String>,
    pub source_ref: Option<String>,
    pub build_config: Option<String>,
    /// The run, e.g. `https://github.com/acme/lib/actions/runs/42/attempts/1`.
    pub run_invocation: Option<String>,
}

const FULCIO: &str = "1.3.6.1.4.1.57264.1.";

impl SigningIdentity {
    fn of(certificate: &X509Certificate<'_>) -> SigningIdentity {
        let mut identity = SigningIdentity::default();
        if let Ok(Some(names)) = certificate.subject_alternative_name() {
            identity.subject = names.value.general_names.iter().find_map(|name| match name {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                GeneralName::RFC822Name(email) => Some((*email).to_owned()),
                _ => None,
            });
        }
        // The first (v1) extensions hold raw strings, the later ones DER UTF8Strings;
        // Fulcio writes both, and the later ones win.
        let mut legacy_repository = None;
        for extension in certificate.extensions() {
            let oid = extension.oid.to_id_string();
            let Some(arc) = oid.strip_prefix(FULCIO) else {
                continue;
            };
            let raw = || std::str::from_utf8(extension.value).ok().map(str::to_owned);
            let utf8 = || {
                x509_parser::der_parser::der::parse_der_utf8string(extension.value)
                    .ok()
                    .and_then(|(_, s)| s.as_str().ok().map(str::to_owned))
            };
            match arc {
                "1" => identity.issuer = identity.issuer.take().or_else(raw),
                "3" => identity.source_digest = identity.source_digest.take().or_else(raw),
                "5" => legacy_repository = raw(),
                "6" => identity.source_ref = identity.source_ref.take().or_else(raw),
                "8" => identity.issuer = utf8().or(identity.issuer.take()),
                "12" => identity.source_repository = utf8(),
                "13" => identity.source_digest = utf8().or(identity.source_digest.take()),
                "14" => identity.source_ref = utf8().or(identity.source_ref.take()),
                "18" => identity.build_config = utf8(),
                "21" => identity.run_invocation = utf8(),
                _ => {}
            }
        }
        if identity.source_repository.is_none() {
            identity.source_repository = legacy_repository.map(|r| format!("https://github.com/{r}"));
        }
        identity
    }

    /// The repository as `host/path`, lower-cased: what package.json's `repository`
    /// and a trusted publisher's repository are compared with.
    pub fn repository_key(&self) -> Option<String> {
        self.source_repository.as_deref().and_then(super::repository_key)
    }
}

/// Checks the leaf against the authorities valid at `at` and says who it names.
pub(super) fn verify(leaf_der: &[u8], authorities: &[Authority], at: i64) -> Result<SigningIdentity, ProvenanceError> {
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|e| ProvenanceError::Certificate(e.to_string()))?;
    let validity = leaf.validity();
    if at < validity.not_before.timestamp() || at > validity.not_after.timestamp() {
        return Err(ProvenanceError::CertificateExpired {
            signed_at: super::iso(at),
            not_before: super::iso(validity.not_before.timestamp()),
            not_after: super::iso(validity.not_after.timestamp()),
        });
    }
    let trusted = authorities
        .iter()
        .filter(|a| a.valid.contains(at))
        .any(|authority| chains_to(&leaf, authority, at));
    if !trusted {
        return Err(ProvenanceError::UntrustedCertificate);
    }
    Ok(SigningIdentity::of(&leaf))
}

fn chains_to(leaf: &X509Certificate<'_>, authority: &Authority, at: i64) -> bool {
    let mut parsed = Vec::with_capacity(authority.chain.len());
    for der in &authority.chain {
        match X509Certificate::from_der(der) {
            Ok((_, certificate)) => parsed.push(certificate),
            Err(_) => return false,
        }
    }
    let mut child = leaf;
    for issuer in &parsed {
        let validity = issuer.validity();
        if child.issuer() != issuer.subject()
            || at < validity.not_before.timestamp()
            || at > validity.not_after.timestamp()
            || child.verify_signature(Some(issuer.public_key())).is_err()
        {
            return false;
        }
        child = issuer;
    }
    // The chain ends at a self-signed root.
    child.verify_signature(None).is_ok()
}
