//! Tarball digests, and checking them against what a package manifest declares
//! (`dist.integrity`, a Subresource Integrity string, and `dist.shasum`, hex SHA-1).

use std::fmt;
use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// Standard base64 that also accepts digests whose `=` padding was dropped.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Every digest a manifest may declare for a tarball. npm clients send sha512 and sha1; the
/// other two are kept so that any SRI hash a client can produce can also be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub sha512: [u8; 64],
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
    pub sha384: [u8; 48],
}

impl Digests {
    pub fn of(bytes: &[u8]) -> Self {
        let mut writer = DigestWriter::new();
        writer.update(bytes);
        writer.finish()
    }

    /// The `dist.integrity` value: `sha512-<base64>`.
    pub fn sri_sha512(&self) -> String {
        sri(Algorithm::Sha512, &self.sha512)
    }

    /// The `dist.shasum` value: lower-case hex SHA-1.
    pub fn shasum_hex(&self) -> String {
        hex::encode(self.sha1)
    }

    pub fn sha512_hex(&self) -> String {
        hex::encode(self.sha512)
    }

    fn get(&self, algorithm: Algorithm) -> &[u8] {
        match algorithm {
            Algorithm::Sha1 => &self.sha1,
            Algorithm::Sha256 => &self.sha256,
            Algorithm::Sha384 => &self.sha384,
            Algorithm::Sha512 => &self.sha512,
        }
    }
}

/// Computes [`Digests`] over data that arrives in pieces, such as a tarball being streamed to
/// storage.
#[derive(Clone, Default)]
pub struct DigestWriter {
    sha512: Sha512,
    sha1: Sha1,
    sha256: Sha256,
    sha384: Sha384,
}

impl DigestWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha512.update(bytes);
        self.sha1.update(bytes);
        self.sha256.update(bytes);
        self.sha384.update(bytes);
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha512: self.sha512.finalize().into(),
            sha1: self.sha1.finalize().into(),
            sha256: self.sha256.finalize().into(),
            sha384: self.sha384.finalize().into(),
        }
    }
}

impl io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A hash algorithm an SRI string may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// SRI algorithm names are lower case; anything else is an algorithm we don't know.
    fn from_sri_name(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a tarball does not match its manifest. The messages are shown to npm users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("tarball has no integrity or shasum")]
    Missing,
    #[error("invalid integrity: expected space-separated <algorithm>-<base64 digest> entries")]
    MalformedIntegrity,
    #[error("invalid integrity: the {algorithm} entry is not a base64 {algorithm} digest")]
    MalformedDigest { algorithm: Algorithm },
    #[error("invalid shasum: expected 40 hexadecimal characters")]
    MalformedShasum,
    #[error("integrity mismatch: the tarball's {algorithm} is {actual}, the manifest declares {declared}")]
    IntegrityMismatch {
        algorithm: Algorithm,
        actual: String,
        declared: String,
    },
    #[error("shasum mismatch: the tarball's sha1 is {actual}, the manifest declares {declared}")]
    ShasumMismatch { actual: String, declared: String },
}

/// Checks a tarball's digests against the manifest's `dist.integrity` and `dist.shasum`.
///
/// Every recognised hash must match (several may be given, space-separated, as in
/// `sha512-… sha1-…`). Hashes with algorithms we don't know are ignored, as SRI prescribes, but
/// at least one hash we can check must be present, or nothing would be verified.
pub fn verify_declared(
    digests: &Digests,
    declared_integrity: Option<&str>,
    declared_shasum: Option<&str>,
) -> Result<(), IntegrityError> {
    let entries = match declared_integrity {
        Some(integrity) => parse_sri(integrity)?,
        None => Vec::new(),
    };
    let shasum = declared_shasum.map(parse_shasum).transpose()?;
    if entries.is_empty() && shasum.is_none() {
        return Err(IntegrityError::Missing);
    }
    for (algorithm, declared) in entries {
        let actual = digests.get(algorithm);
        if actual != declared.as_slice() {
            return Err(IntegrityError::IntegrityMismatch {
                algorithm,
                actual: sri(algorithm, actual),
                declared: sri(algorithm, &declared),
            });
        }
    }
    match shasum {
        Some(declared) if declared != digests.sha1 => Err(IntegrityError::ShasumMismatch {
            actual: digests.shasum_hex(),
            declared: hex::encode(declared),
        }),
        _ => Ok(()),
    }
}

/// The recognised `(algorithm, digest)` entries of an SRI string.
fn parse_sri(integrity: &str) -> Result<Vec<(Algorithm, Vec<u8>)>, IntegrityError> {
    let mut entries = Vec::new();
    for entry in integrity.split_ascii_whitespace() {
        let (name, rest) = entry.split_once('-').ok_or(IntegrityError::MalformedIntegrity)?;
        let Some(algorithm) = Algorithm::from_sri_name(name) else {
            continue;
        };
        // SRI lets options follow the digest (`sha512-…?foo`); none concern us.
        let encoded = rest.split_once('?').map_or(rest, |(digest, _)| digest);
        let digest = LENIENT_BASE64
            .decode(encoded)
            .ok()
            .filter(|digest| digest.len() == algorithm.digest_len())
            .ok_or(IntegrityError::MalformedDigest { algorithm })?;
        entries.push((algorithm, digest));
    }
    Ok(entries)
}

fn parse_shasum(shasum: &str) -> Result<[u8; 20], IntegrityError> {
    let mut digest = [0; 20];
    hex::decode_to_slice(shasum, &mut digest).map_err(|_| IntegrityError::MalformedShasum)?;
    Ok(digest)
}

fn sri(algorithm: Algorithm, digest: &[u8]) -> String {
    format!("{algorithm}-{}", general_purpose::STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    // Reference values from `printf hello | openssl dgst -sha512 -binary | base64` etc.;
    // OTHER_SHA512 is the digest of "world".
    const HELLO_SHA512: &str =
        "sha512-m3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw==";
    const HELLO_SHA1_HEX: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
    const HELLO_SHA256: &str = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
    const HELLO_SHA384: &str = "sha384-WeF0h3dEjGnea4ANejO7+5/xtGPkQ1TDVTvNucZm+pASWjx5+QOXvfX2oT3oKGhP";
    const HELLO_SHA1_SRI: &str = "sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=";
    const OTHER_SHA512: &str =
        "sha512-EYU99A9LK5GdOBX2R5LljQhmN2eklLy7OMCyOJ2RQLuxcCgbSoR753V73hLJzQBUzjZS0K06GgySurtpeYJG7g==";

    fn hello() -> Digests {
        Digests::of(b"hello")
    }

    #[test]
    fn digests_match_reference_values() {
        let digests = hello();
        assert_eq!(digests.sri_sha512(), HELLO_SHA512);
        assert_eq!(digests.shasum_hex(), HELLO_SHA1_HEX);
        assert_eq!(
            digests.sha512_hex(),
            "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043"
        );
        assert_eq!(sri(Algorithm::Sha256, &digests.sha256), HELLO_SHA256);
        assert_eq!(sri(Algorithm::Sha384, &digests.sha384), HELLO_SHA384);
    }

    #[test]
    fn writer_matches_one_shot() {
        let mut writer = DigestWriter::new();
        writer.write_all(b"he").unwrap();
        writer.update(b"");
        writer.write_all(b"llo").unwrap();
        assert_eq!(writer.finish(), hello());
    }

    #[test]
    fn accepts_matching_declarations() {
        let digests = hello();
        let ok = |integrity: Option<&str>, shasum: Option<&str>| verify_declared(&digests, integrity, shasum);
        assert_eq!(ok(Some(HELLO_SHA512), Some(HELLO_SHA1_HEX)), Ok(()));
        assert_eq!(ok(Some(HELLO_SHA512), None), Ok(()));
        assert_eq!(ok(None, Some(HELLO_SHA1_HEX)), Ok(()));
        assert_eq!(ok(None, Some(&HELLO_SHA1_HEX.to_uppercase())), Ok(()));
        assert_eq!(ok(Some(HELLO_SHA256), None), Ok(()));
        assert_eq!(ok(Some(HELLO_SHA384), None), Ok(()));
        assert_eq!(ok(Some(HELLO_SHA1_SRI), None), Ok(()));
        let several = format!("{HELLO_SHA512} {HELLO_SHA1_SRI}\n{HELLO_SHA384}");
        assert_eq!(ok(Some(&several), None), Ok(()));
        let with_option = format!("{HELLO_SHA512}?foo");
        assert_eq!(ok(Some(&with_option), None), Ok(()));
        let unpadded = HELLO_SHA512.trim_end_matches('=');
        assert_eq!(ok(Some(unpadded), None), Ok(()));
    }

    #[test]
    fn ignores_unknown_algorithms_alongside_known_ones() {
        let integrity = format!("md5-XUFAKrxLKna5cZ2REBfFkg== {HELLO_SHA512} sha3-whatever");
        assert_eq!(verify_declared(&hello(), Some(&integrity), None), Ok(()));
    }

    #[test]
    fn requires_something_to_check() {
        for (integrity, shasum) in [
            (None, None),
            (Some(""), None),
            (Some("   "), None),
            (Some("md5-XUFAKrxLKna5cZ2REBfFkg=="), None),
            (Some("SHA512-abc"), None),
        ] {
            assert_eq!(
                verify_declared(&hello(), integrity, shasum),
                Err(IntegrityError::Missing),
                "{integrity:?}"
            );
        }
    }

    #[test]
    fn rejects_mismatches() {
        assert_eq!(
            verify_declared(&hello(), Some(OTHER_SHA512), Some(HELLO_SHA1_HEX)),
            Err(IntegrityError::IntegrityMismatch {
                algorithm: Algorithm::Sha512,
                actual: HELLO_SHA512.into(),
                declared: OTHER_SHA512.into(),
            })
        );
        // One bad entry among good ones is enough to refuse.
        let mixed = format!("{HELLO_SHA512} sha1-AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(matches!(
            verify_declared(&hello(), Some(&mixed), None),
            Err(IntegrityError::IntegrityMismatch {
                algorithm: Algorithm::Sha1,
                ..
            })
        ));
        let zeros = "0".repeat(40);
        assert_eq!(
            verify_declared(&hello(), Some(HELLO_SHA512), Some(&zeros)),
            Err(IntegrityError::ShasumMismatch {
                actual: HELLO_SHA1_HEX.into(),
                declared: zeros.clone(),
            })
        );
    }

    #[test]
    fn rejects_malformed_declarations() {
        let cases: &[(Option<&str>, Option<&str>, IntegrityError)] = &[
            (Some("sha512"), None, IntegrityError::MalformedIntegrity),
            (
                Some(&format!("{HELLO_SHA512} garbage")),
                None,
                IntegrityError::MalformedIntegrity,
            ),
            (
                Some("sha512-not base64!"),
                None,
                IntegrityError::MalformedDigest {
                    algorithm: Algorithm::Sha512,
                },
            ),
            (
                Some("sha512-"),
                None,
                IntegrityError::MalformedDigest {
                    algorithm: Algorithm::Sha512,
                },
            ),
            (
                // A sha1-sized digest under the sha512 label.
                Some("sha512-qvTGHdzF6KLavt4PO0gs2a6pQ00="),
                None,
                IntegrityError::MalformedDigest {
                    algorithm: Algorithm::Sha512,
                },
            ),
            (None, Some("abc"), IntegrityError::MalformedShasum),
            (
                None,
                Some(&format!("{HELLO_SHA1_HEX}0")),
                IntegrityError::MalformedShasum,
            ),
            (None, Some(&"g".repeat(40)), IntegrityError::MalformedShasum),
            (None, Some(""), IntegrityError::MalformedShasum),
        ];
        for (integrity, shasum, expected) in cases {
            assert_eq!(
                verify_declared(&hello(), *integrity, *shasum).as_ref(),
                Err(expected),
                "{integrity:?} {shasum:?}"
            );
        }
    }

    #[test]
    fn error_messages_read_well() {
        let message = verify_declared(&hello(), Some(OTHER_SHA512), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!("integrity mismatch: the tarball's sha512 is {HELLO_SHA512}, the manifest declares {OTHER_SHA512}")
        );
        assert_eq!(
            IntegrityError::MalformedDigest {
                algorithm: Algorithm::Sha256
            }
            .to_string(),
            "invalid integrity: the sha256 entry is not a base64 sha256 digest"
        );
    }
}
