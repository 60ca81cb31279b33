//! Dist-tags: the names (`latest`, `next`, `beta`…) that point at versions of a package.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// Tags are short labels; a bound keeps them cheap to store and log.
const MAX_LEN: usize = 128;

/// node-semver refuses version numbers above `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A validated dist-tag name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct DistTag(String);

/// Why a tag name was refused. The messages are shown to npm users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistTagError {
    #[error("Tag name must not be empty")]
    Empty,
    #[error("Tag name must be at most {MAX_LEN} characters long")]
    TooLong,
    #[error("Tag name must not start or end with whitespace: {tag:?}")]
    Whitespace { tag: String },
    #[error("Tag name can only contain URL-friendly characters: {tag:?}")]
    NotUrlSafe { tag: String },
    #[error("Tag name must not be a valid SemVer range: {tag}")]
    SemverRange { tag: String },
}

impl DistTag {
    /// Accepts what `npm dist-tag add` accepts, except that surrounding whitespace is an error
    /// here where npm would trim it.
    pub fn parse(s: &str) -> Result<Self, DistTagError> {
        let tag = || s.to_owned();
        if s.is_empty() {
            return Err(DistTagError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(DistTagError::TooLong);
        }
        if s.trim() != s {
            return Err(DistTagError::Whitespace { tag: tag() });
        }
        if !is_url_safe(s) {
            return Err(DistTagError::NotUrlSafe { tag: tag() });
        }
        // `npm install pkg@<spec>` reads a spec that is a valid range as a range, so such a tag
        // could never be installed by name.
        if is_semver_range(s) {
            return Err(DistTagError::SemverRange { tag: tag() });
        }
        Ok(Self(s.to_owned()))
    }

    /// The tag every package with versions has.
    pub fn latest() -> Self {
        Self("latest".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True if `encodeURIComponent(s) == s`.
fn is_url_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b))
}

/// Whether node-semver's `validRange(s)` (non-loose) returns non-null, for a string that is
/// already known to be URL-safe.
///
/// URL-safe strings hold no whitespace and none of `|<>=^+`, so no `||`, hyphen range,
/// comparison operator, caret or build metadata can occur, and what `Range` does shrinks to:
/// 1. `~` followed by an x-range (`~1.2`, `~vv1.x`) is a tilde range;
/// 2. otherwise an x-range (`1`, `1.x`, `*`, `v1.2.3-beta`) is one or two comparators;
/// 3. otherwise the first `*` is deleted and the rest must be a plain version or nothing.
///
/// In each case the versions that come out must keep major, minor and patch within
/// `Number.MAX_SAFE_INTEGER`.
fn is_semver_range(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('~') {
        return XRange::parse(rest).is_some_and(|range| range.is_valid_tilde());
    }
    if let Some(range) = XRange::parse(s) {
        return range.is_valid_xrange();
    }
    let rest = s.replacen('*', "", 1);
    rest.is_empty() || XRange::parse(&rest).is_some_and(|range| range.is_valid_version())
}

/// One component of an x-range.
#[derive(Clone, Copy)]
enum Part {
    Absent,
    /// `x`, `X` or `*`.
    Wildcard,
    /// Saturates at `u64::MAX`: anything that large is out of range anyway.
    Number(u64),
}

impl Part {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "x" | "X" | "*" => Some(Self::Wildcard),
            "0" => Some(Self::Number(0)),
            _ if !s.starts_with('0') && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Self::Number(s.parse().unwrap_or(u64::MAX)))
            }
            _ => None,
        }
    }

    /// node-semver's `isX`.
    fn is_x(self) -> bool {
        !matches!(self, Self::Number(_))
    }

    /// Fits a version, and so does the `n + 1` that tilde and x-ranges compute as upper bound.
    fn can_increment(self) -> bool {
        matches!(self, Self::Number(n) if n < MAX_SAFE_INTEGER)
    }

    fn fits(self) -> bool {
        matches!(self, Self::Number(n) if n <= MAX_SAFE_INTEGER)
    }
}

/// node-semver's `XRANGEPLAIN` without its `=`/whitespace prefixes and build metadata:
/// `v*` major (`.` minor (`.` patch (`-` prerelease)?)?)?
struct XRange {
    v_prefixes: usize,
    major: Part,
    minor: Part,
    patch: Part,
}

impl XRange {
    fn parse(s: &str) -> Option<Self> {
        let body = s.trim_start_matches('v');
        let (main, prerelease) = match body.split_once('-') {
            Some((main, prerelease)) => (main, Some(prerelease)),
            None => (body, None),
        };
        let mut parts = main.split('.');
        let major = Part::parse(parts.next()?)?;
        let minor = parts.next().map_or(Some(Part::Absent), Part::parse)?;
        let patch = parts.next().map_or(Some(Part::Absent), Part::parse)?;
        if parts.next().is_some() {
            return None;
        }
        if let Some(prerelease) = prerelease {
            // A prerelease may only follow a patch component.
            if matches!(patch, Part::Absent) || !is_prerelease(prerelease) {
                return None;
            }
        }
        Some(Self {
            v_prefixes: s.len() - body.len(),
            major,
            minor,
            patch,
        })
    }

    /// `replaceTilde`: `~x` is any version; otherwise the bounds are built from the numbers.
    fn is_valid_tilde(&self) -> bool {
        if self.major.is_x() {
            true
        } else if self.minor.is_x() {
            self.major.can_increment()
        } else if self.patch.is_x() {
            self.major.fits() && self.minor.can_increment()
        } else {
            self.major.fits() && self.minor.can_increment() && self.patch.fits()
        }
    }

    /// `replaceXRange`: wildcards must only trail (`1.x.3` is left as is and fails to parse).
    fn is_valid_xrange(&self) -> bool {
        let out_of_order = (self.major.is_x() && !self.minor.is_x()) || (self.minor.is_x() && !self.patch.is_x());
        if out_of_order {
            false
        } else if self.major.is_x() {
            true
        } else if self.minor.is_x() {
            self.major.can_increment()
        } else if self.patch.is_x() {
            self.major.fits() && self.minor.can_increment()
        } else {
            self.is_valid_version()
        }
    }

    /// node-semver's strict `FULL` version: at most one `v`, no wildcards.
    fn is_valid_version(&self) -> bool {
        self.v_prefixes <= 1 && self.major.fits() && self.minor.fits() && self.patch.fits()
    }
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`, numeric ones without leading zeros.
fn is_prerelease(s: &str) -> bool {
    s.split('.').all(|id| {
        let numeric = id.bytes().all(|b| b.is_ascii_digit());
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(numeric && id.len() > 1 && id.starts_with('0'))
    })
}

impl fmt::Display for DistTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DistTag {
    type Err = DistTagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for DistTag {
    type Error = DistTagError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl Serialize for DistTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_tags() {
        for s in [
            "latest", "next", "beta", "latest-1", "v-next", "rc1", "canary", "Next", "x-1",
        ] {
            assert_eq!(DistTag::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(DistTag::latest(), DistTag::parse("latest").unwrap());
    }

    #[test]
    fn refuses_ranges() {
        for s in [
            "1",
            "1.x",
            "v1",
            "1.2.3-beta",
            "x",
            "X",
            "*",
            "1.2.x",
            "*.*",
            "~1.2",
            "1.2.3",
        ] {
            assert_eq!(
                DistTag::parse(s),
                Err(DistTagError::SemverRange { tag: s.into() }),
                "{s}"
            );
        }
    }

    #[test]
    fn refuses_malformed_tags() {
        assert_eq!(DistTag::parse(""), Err(DistTagError::Empty));
        assert_eq!(DistTag::parse(&"a".repeat(129)), Err(DistTagError::TooLong));
        assert!(DistTag::parse(&"a".repeat(128)).is_ok());
        for s in [" latest", "latest ", "\tnext", "next\n"] {
            assert_eq!(
                DistTag::parse(s),
                Err(DistTagError::Whitespace { tag: s.into() }),
                "{s:?}"
            );
        }
        for s in [
            "=1.2.3",
            "^1.2.3",
            ">=1",
            "1 || 2",
            "a/b",
            "a%20b",
            "a b",
            "caf\u{e9}",
            "a+b",
        ] {
            assert_eq!(
                DistTag::parse(s),
                Err(DistTagError::NotUrlSafe { tag: s.into() }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            DistTag::parse("1.x").unwrap_err().to_string(),
            "Tag name must not be a valid SemVer range: 1.x"
        );
        assert_eq!(
            DistTag::parse("a/b").unwrap_err().to_string(),
            r#"Tag name can only contain URL-friendly characters: "a/b""#
        );
    }

    /// Expected answers come from node-semver 7.8.5 as bundled with npm 11:
    /// `require('semver').validRange(s) !== null`.
    #[test]
    fn range_check_matches_node_semver() {
        let cases: &[(&str, bool)] = &[
            ("1", true),
            ("1.x", true),
            ("v1", true),
            ("vv1", true),
            ("~1.2", true),
            ("~", false),
            ("~*", true),
            ("~x.1", true),
            ("~1.x.3", true),
            ("~v1.2.3", true),
            ("~vv1.2.3", true),
            ("~01", false),
            ("~latest", false),
            ("~1.2.3-beta", true),
            ("~1.2-beta", false),
            ("1.2.3-beta", true),
            ("1.2.3-beta.01", false),
            ("1.2.3-01", false),
            ("1.2.3-", false),
            ("1.2.3-a..b", false),
            ("x", true),
            ("X", true),
            ("*", true),
            ("**", false),
            ("*.*", true),
            ("*.*.*", true),
            ("x.x.x-beta", true),
            ("1.2.x", true),
            ("1.2.x-beta", true),
            ("1.x-beta", false),
            ("1.x.x", true),
            ("x.1", false),
            ("*.1", false),
            ("1.x.2", false),
            ("1.*.2", false),
            ("1.2.3*", true),
            ("*1.2.3", true),
            ("1.2*.3", true),
            ("1.2.3**", false),
            ("v*1.2.3", true),
            ("1*", false),
            ("1.2.3.4", false),
            ("01", false),
            ("1.01", false),
            ("v1.2.3", true),
            ("vv1.2.3", false),
            ("vv1.2", true),
            ("V1", false),
            ("latest", false),
            ("next", false),
            ("latest-1", false),
            ("v-next", false),
            ("rc1", false),
            ("1-beta", false),
            ("1.2-beta", false),
            ("1.2.3-beta-2.x", true),
            ("9007199254740991", false),
            ("9007199254740990", true),
            ("9007199254740991.0.0", true),
            ("9007199254740992.0.0", false),
            ("1.9007199254740991", false),
            ("1.9007199254740990", true),
            ("1.2.9007199254740991", true),
            ("1.2.9007199254740992", false),
            ("~9007199254740991.1", true),
            ("~1.9007199254740991", false),
            ("~9007199254740991", false),
            ("1.2.3-99999999999999999999", true),
            ("99999999999999999999999", false),
            ("", true),
        ];
        for &(s, expected) in cases {
            assert_eq!(is_semver_range(s), expected, "validRange({s:?})");
        }
    }
}
