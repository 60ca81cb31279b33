//! A Sigstore trust root (`trusted_root.json`, media type
//! `application/vnd.dev.sigstore.trustedroot+json;version=0.1`): the certificate
//! authorities that issue signing certificates (Fulcio) and the transparency logs whose
//! signed entry timestamps say when a signature was made (Rekor).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::key::VerifyingKey;

/// The trust root's JSON is read whole; a real one is about 6 KB.
pub const MAX_ROOT_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub struct TrustedRoot {
    pub(super) authorities: Vec<Authority>,
    pub(super) logs: Vec<TransparencyLog>,
}

#[derive(Debug)]
pub(super) struct Authority {
    /// DER certificates, the issuing one first and the root last.
    pub chain: Vec<Vec<u8>>,
    pub valid: Validity,
}

#[derive(Debug)]
pub(super) struct TransparencyLog {
    pub key_id: Vec<u8>,
    pub key: VerifyingKey,
    pub valid: Validity,
}

/// Seconds since the Unix epoch, the end open when absent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Validity {
    pub start: i64,
    pub end: Option<i64>,
}

impl Validity {
    pub fn contains(self, at: i64) -> bool {
        at >= self.start && self.end.is_none_or(|end| at <= end)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    #[error("the Sigstore trust root is larger than {MAX_ROOT_BYTES} bytes")]
    TooLarge,
    #[error("the Sigstore trust root is not valid JSON of a trusted root: {0}")]
    Json(String),
    #[error("the Sigstore trust root has a bad {what}: {detail}")]
    Entry { what: &'static str, detail: String },
    #[error("the Sigstore trust root lists no certificate authority, so no provenance could ever be verified")]
    NoAuthority,
    #[error("the Sigstore trust root lists no transparency log with a key Gatehouse can use (ECDSA P-256 or P-384)")]
    NoLog,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootJson {
    #[serde(default)]
    tlogs: Vec<LogJson>,
    #[serde(default)]
    certificate_authorities: Vec<AuthorityJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogJson {
    public_key: PublicKeyJson,
    log_id: LogIdJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyJson {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    valid_for: Option<ValidForJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogIdJson {
    pub key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityJson {
    cert_chain: ChainJson,
    valid_for: Option<ValidForJson>,
}

#[derive(Deserialize)]
pub(super) struct ChainJson {
    pub certificates: Vec<RawBytesJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawBytesJson {
    pub raw_bytes: String,
}

#[derive(Deserialize)]
struct ValidForJson {
    start: Option<String>,
    end: Option<String>,
}

/// Sigstore's public-good instance (the one `npm publish --provenance` signs with), as
/// npm's `@sigstore/tuf` seeds it; used unless the configuration names another.
const PUBLIC_GOOD: &[u8] = include_bytes!("sigstore_public_good.json");

impl TrustedRoot {
    /// The trust root of Sigstore's public-good instance.
    pub fn public_good() -> TrustedRoot {
        // A test below parses it; the embedded file cannot change at run time.
        TrustedRoot::parse(PUBLIC_GOOD).expect("the embedded Sigstore trust root parses")
    }

    pub fn parse(json: &[u8]) -> Result<TrustedRoot, RootError> {
        if json.len() > MAX_ROOT_BYTES {
            return Err(RootError::TooLarge);
        }
        let root: RootJson = serde_json::from_slice(json).map_err(|e| RootError::Json(e.to_string()))?;
        let mut authorities = Vec::new();
        for authority in root.certificate_authorities {
            let chain = authority
                .cert_chain
                .certificates
                .iter()
                .map(|c| decode("certificate authority certificate", &c.raw_bytes))
                .collect::<Result<Vec<_>, _>>()?;
            if chain.is_empty() {
                return Err(entry("certificate authority", "its certificate chain is empty"));
            }
            authorities.push(Authority {
                chain,
                valid: validity("certificate authority", authority.valid_for.as_ref())?,
            });
        }
        if authorities.is_empty() {
            return Err(RootError::NoAuthority);
        }
        let mut logs = Vec::new();
        for log in root.tlogs {
            // Rekor v2 logs (Ed25519, checkpoints only) sign no entry timestamps: skipped.
            if !log.public_key.key_details.starts_with("PKIX_ECDSA") {
                continue;
            }
            let der = decode("transparency log key", &log.public_key.raw_bytes)?;
            let key = VerifyingKey::from_spki_der(&der).map_err(|e| entry("transparency log key", e))?;
            logs.push(TransparencyLog {
                key_id: decode("transparency log id", &log.log_id.key_id)?,
                key,
                valid: validity("transparency log", log.public_key.valid_for.as_ref())?,
            });
        }
        if logs.is_empty() {
            return Err(RootError::NoLog);
        }
        Ok(TrustedRoot { authorities, logs })
    }
}

fn entry(what: &'static str, detail: impl Into<String>) -> RootError {
    RootError::Entry {
        what,
        detail: detail.into(),
    }
}

fn decode(what: &'static str, text: &str) -> Result<Vec<u8>, RootError> {
    STANDARD
        .decode(text)
        .map_err(|e| entry(what, format!("not base64: {e}")))
}

fn validity(what: &'static str, valid_for: Option<&ValidForJson>) -> Result<Validity, RootError> {
    let time = |text: &Option<String>| -> Result<Option<i64>, RootError> {
        text.as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp())
                    .map_err(|e| entry(what, format!("validity time {t:?}: {e}")))
            })
            .transpose()
    };
    Ok(Validity {
        start: valid_for
            .map(|v| time(&v.start))
            .transpose()?
            .flatten()
            .unwrap_or(i64::MIN),
        end: valid_for.map(|v| time(&v.end)).transpose()?.flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_good_root_has_fulcio_and_rekor() {
        let root = TrustedRoot::parse(PUBLIC_GOOD).expect("parses");
        assert!(root.authorities.len() >= 2, "Fulcio's current and retired chains");
        assert!(!root.logs.is_empty(), "Rekor");
        // Every log's id is the SHA-256 of its key, as bundles name it.
        assert!(root.logs.iter().all(|log| log.key_id.len() == 32));
    }

    #[test]
    fn broken_roots_say_what_is_wrong() {
        assert!(matches!(
            TrustedRoot::parse(b"{\"certificateAuthorities\": 1}"),
            Err(RootError::Json(_))
        ));
        assert_eq!(
            TrustedRoot::parse(br#"{"mediaType":"x","certificateAuthorities":[],"tlogs":[]}"#).unwrap_err(),
            RootError::NoAuthority
        );
        assert_eq!(
            TrustedRoot::parse(&vec![b' '; MAX_ROOT_BYTES + 1]).unwrap_err(),
            RootError::TooLarge
        );
    }
}
