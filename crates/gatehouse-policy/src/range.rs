//! npm version ranges (`>=1.2.0 <2`, `^4.17`, `3.3.6`, `1.x || >=2.5.0`), matched as
//! `npm audit` matches advisories: prereleases included, so `2.0.0-rc.1` is in `>=1.0.0`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed npm range, kept with the text it was written as (for messages).
#[derive(Clone)]
pub struct VersionRange {
    text: String,
    parsed: nodejs_semver::Range,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid version range {text:?}: {detail}")]
pub struct RangeError {
    pub text: String,
    pub detail: String,
}

impl VersionRange {
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let text = text.trim();
        // npm's `*` is every version; node-semver's parse of it leaves out `0.0.0-…`.
        if text.is_empty() || text == "*" || text.eq_ignore_ascii_case("x") {
            return Ok(VersionRange::any());
        }
        nodejs_semver::Range::parse(text)
            .map(|parsed| VersionRange {
                text: text.to_owned(),
                parsed,
            })
            .map_err(|e| RangeError {
                text: text.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Every version, prereleases included.
    pub fn any() -> Self {
        VersionRange {
            text: "*".to_owned(),
            parsed: nodejs_semver::Range::any(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `version` is in the range, prereleases included; a version npm cannot
    /// parse is in no range.
    pub fn contains(&self, version: &str) -> bool {
        parse_version(version).is_some_and(|v| self.parsed.satisfies_with_prerelease(&v, true))
    }
}

/// A version as node-semver reads it (`None` for text it refuses).
pub fn parse_version(version: &str) -> Option<nodejs_semver::Version> {
    nodejs_semver::Version::parse(version).ok()
}

impl fmt::Debug for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionRange({:?})", self.text)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for VersionRange {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Serialize for VersionRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        VersionRange::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> VersionRange {
        VersionRange::parse(text).expect("valid range")
    }

    #[test]
    fn ranges_match_as_npm_audit_does() {
        assert!(range("<4.17.21").contains("4.17.20"));
        assert!(!range("<4.17.21").contains("4.17.21"));
        assert!(range("3.3.6").contains("3.3.6"));
        assert!(!range("3.3.6").contains("3.3.7"));
        assert!(range("1.x || >=2.5.0").contains("2.6.0"));
        assert!(range(">=1.0.0").contains("2.0.0-rc.1"), "prereleases are included");
        assert!(range("<1.2.3").contains("1.2.3-beta"));
        assert!(VersionRange::any().contains("0.0.1-alpha"));
    }

    #[test]
    fn nonsense_is_refused_and_unparseable_versions_match_nothing() {
        let e = VersionRange::parse("not a range").expect_err("invalid");
        assert!(e.to_string().contains("not a range"), "{e}");
        assert!(!range("*").contains("not-a-version"));
    }
}
