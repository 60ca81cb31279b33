//! The public keys Sigstore signs with: ECDSA on P-256 (signing certificates, Rekor)
//! or P-384, each with its curve's hash, signatures in ASN.1 DER.

use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

#[derive(Debug, Clone, Copy)]
enum Curve {
    P256,
    P384,
}

#[derive(Debug, Clone)]
pub(super) struct VerifyingKey {
    curve: Curve,
    /// The uncompressed point, as ring takes it.
    point: Vec<u8>,
}

impl VerifyingKey {
    pub fn from_spki_der(der: &[u8]) -> Result<VerifyingKey, String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|e| format!("not a DER public key: {e}"))?;
        VerifyingKey::from_spki(&spki)
    }

    pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<VerifyingKey, String> {
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(format!("key algorithm {} is not ECDSA", spki.algorithm.algorithm));
        }
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        let curve = match curve {
            Some(oid) if oid == OID_EC_P256 => Curve::P256,
            Some(oid) if oid == OID_NIST_EC_P384 => Curve::P384,
            other => return Err(format!("ECDSA curve {other:?} is neither P-256 nor P-384")),
        };
        Ok(VerifyingKey {
            curve,
            point: spki.subject_public_key.data.to_vec(),
        })
    }

    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm = match self.curve {
            Curve::P256 => &ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &ECDSA_P384_SHA384_ASN1,
        };
        UnparsedPublicKey::new(algorithm, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}
