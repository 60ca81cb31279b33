//! Package versions: strict SemVer 2.0.0, kept exactly as published.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// node-semver refuses longer version strings.
const MAX_LEN: usize = 256;

/// node-semver stores version numbers as JavaScript numbers and refuses anything above
/// `Number.MAX_SAFE_INTEGER`, so npm could not install a version with a bigger component.
const MAX_COMPONENT: u64 = (1 << 53) - 1;

/// A published version such as `1.2.3`, `2.0.0-beta.1` or `1.0.0+build.5`.
///
/// Equality and hashing use the exact string (`1.0.0+a` and `1.0.0+b` are different keys in a
/// packument). Ordering is SemVer precedence, with the string as a tie-break so that the order
/// is total and agrees with `==`; [`Version::same_release`] is the "is this a republish?" test.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Version {
    raw: String,
    parsed: semver::Version,
}

/// Why a version string was refused. The messages are shown to npm users as they are.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("invalid version: the version is empty")]
    Empty,
    #[error("invalid version: longer than {MAX_LEN} characters")]
    TooLong,
    #[error("invalid version {version:?}: must not start with \"v\" or \"=\"")]
    Prefixed { version: String },
    #[error("invalid version {version:?}: must not contain whitespace")]
    Whitespace { version: String },
    #[error("invalid version {version:?}: not a SemVer 2.0.0 version ({detail})")]
    NotSemver { version: String, detail: semver::Error },
    #[error("invalid version {version:?}: major, minor and patch must be at most {MAX_COMPONENT}")]
    NumberTooLarge { version: String },
}

impl Version {
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let version = || s.to_owned();
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(VersionError::TooLong);
        }
        // The semver crate refuses these too, but npm users mostly meet them as `v1.2.3` from a
        // git tag, and deserve a hint rather than a parser position.
        if s.starts_with(['v', 'V', '=']) {
            return Err(VersionError::Prefixed { version: version() });
        }
        if s.contains(char::is_whitespace) {
            return Err(VersionError::Whitespace { version: version() });
        }
        let parsed = semver::Version::parse(s).map_err(|detail| VersionError::NotSemver {
            version: version(),
            detail,
        })?;
        if [parsed.major, parsed.minor, parsed.patch]
            .iter()
            .any(|&n| n > MAX_COMPONENT)
        {
            return Err(VersionError::NumberTooLarge { version: version() });
        }
        Ok(Self {
            raw: s.to_owned(),
            parsed,
        })
    }

    /// The version exactly as published.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn semver(&self) -> &semver::Version {
        &self.parsed
    }

    /// The version without its build metadata: npm treats `1.0.0+a` and `1.0.0+b` as
    /// one release.
    pub fn release_key(&self) -> &str {
        self.raw.split_once('+').map_or(&self.raw, |(release, _)| release)
    }

    pub fn is_prerelease(&self) -> bool {
        !self.parsed.pre.is_empty()
    }

    /// Equal apart from build metadata: npm treats `1.0.0+a` and `1.0.0+b` as the same version,
    /// so publishing one when the other exists is a conflict.
    pub fn same_release(&self, other: &Self) -> bool {
        self.parsed.cmp_precedence(&other.parsed) == Ordering::Equal
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parsed
            .cmp_precedence(&other.parsed)
            .then_with(|| self.raw.cmp(&other.raw))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Version {
    type Error = VersionError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepts_strict_semver() {
        for s in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0.3.7",
            "1.0.0-x.7.z.92",
            "1.0.0-x-y-z.--",
            "1.0.0-alpha+001",
            "1.0.0+20130313144700",
            "1.0.0-beta+exp.sha.5114f85",
            "1.0.0+21AF26D3----117B344092BD",
            "9007199254740991.0.0",
        ] {
            assert_eq!(v(s).as_str(), s);
        }
    }

    #[test]
    fn refuses_non_semver() {
        for s in [
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+",
            "1.2.3+a..b",
            "1.2.3+a+b",
            "1.2.3-a_b",
            "1.2.3-\u{e9}",
            "-1.2.3",
            "1.2.x",
            "latest",
            "1.2.3\0",
        ] {
            assert!(
                matches!(Version::parse(s), Err(VersionError::NotSemver { .. })),
                "{s:?}"
            );
        }
    }

    #[test]
    fn refuses_prefixes_whitespace_and_oversize() {
        assert!(matches!(Version::parse(""), Err(VersionError::Empty)));
        for s in ["v1.2.3", "V1.2.3", "=1.2.3"] {
            assert!(matches!(Version::parse(s), Err(VersionError::Prefixed { .. })), "{s}");
        }
        for s in [" 1.2.3", "1.2.3 ", "1.2.3\n", "1. 2.3"] {
            assert!(
                matches!(Version::parse(s), Err(VersionError::Whitespace { .. })),
                "{s:?}"
            );
        }
        let long = format!("1.0.0-{}", "a".repeat(251));
        assert!(matches!(Version::parse(&long), Err(VersionError::TooLong)));
        assert!(Version::parse(&long[..256]).is_ok());
        for s in [
            "9007199254740992.0.0",
            "0.9007199254740992.0",
            "0.0.18446744073709551615",
        ] {
            assert!(
                matches!(Version::parse(s), Err(VersionError::NumberTooLarge { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            Version::parse("v1.0.0").unwrap_err().to_string(),
            r#"invalid version "v1.0.0": must not start with "v" or "=""#
        );
        let message = Version::parse("1.0").unwrap_err().to_string();
        assert!(
            message.starts_with(r#"invalid version "1.0": not a SemVer 2.0.0 version ("#),
            "{message}"
        );
    }

    #[test]
    fn orders_by_precedence() {
        let ordered = [
            "0.9.9",
            "1.0.0-0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.0+a",
            "1.0.0+b",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        let mut shuffled: Vec<Version> = ordered.iter().rev().map(|s| v(s)).collect();
        shuffled.sort();
        let sorted: Vec<&str> = shuffled.iter().map(Version::as_str).collect();
        assert_eq!(sorted, ordered);
    }

    #[test]
    fn build_metadata_is_the_same_release_but_a_different_key() {
        let a = v("1.0.0+a");
        let b = v("1.0.0+b");
        assert!(a.same_release(&b));
        assert!(a.same_release(&v("1.0.0")));
        assert_ne!(a, b);
        assert_ne!(a.cmp(&b), Ordering::Equal);
        assert!(!v("1.0.0-rc.1").same_release(&v("1.0.0")));
        assert!(!v("1.0.0").same_release(&v("1.0.1")));
        assert_eq!(a.release_key(), "1.0.0");
        assert_eq!(v("1.0.0-rc.1+build.5").release_key(), "1.0.0-rc.1");
    }

    #[test]
    fn ordering_agrees_with_equality() {
        let versions = ["1.0.0", "1.0.0+a", "1.0.0+b", "1.0.0-a", "2.0.0"].map(v);
        for x in &versions {
            for y in &versions {
                assert_eq!(x == y, x.cmp(y) == Ordering::Equal, "{x} vs {y}");
                assert_eq!(x.cmp(y), y.cmp(x).reverse(), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn prerelease() {
        assert!(v("1.0.0-beta.1").is_prerelease());
        assert!(!v("1.0.0").is_prerelease());
        assert!(!v("1.0.0+build").is_prerelease());
    }

    #[test]
    fn serde_round_trip_validates() {
        let version = v("1.2.3-beta+build");
        assert_eq!(serde_json::to_string(&version).unwrap(), r#""1.2.3-beta+build""#);
        let back: Version = serde_json::from_str(r#""1.2.3-beta+build""#).unwrap();
        assert_eq!(back, version);
        assert!(serde_json::from_str::<Version>(r#""v1""#).is_err());
    }
}
