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
        // nodejs-semver skips what it can't read (`1.2.3.4 || >2` reads as `>2`);
        // node-semver refuses the whole range, and so do we.
        if let Some(bad) = text.split("||").flat_map(comparators).find(|c| !is_comparator(c)) {
            return Err(RangeError {
                text: text.to_owned(),
                detail: format!("invalid comparator {bad:?}"),
            });
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
    // nodejs-semver reads a version at the start of the text and ignores the rest
    // (`1.2.3.4` is 1.2.3, `1.2.3 || 2` too).
    if !is_loose_version(version) {
        return None;
    }
    nodejs_semver::Version::parse(version.trim()).ok()
}

/// node-semver's loose version: `[v=\s]*1.2.3`, a prerelease with or without its
/// `-` (`1.2.3beta`), build metadata; leading zeros allowed.
fn is_loose_version(text: &str) -> bool {
    let text = text
        .trim()
        .trim_start_matches(|c: char| c == 'v' || c == '=' || c.is_whitespace());
    let (text, build) = match text.split_once('+') {
        Some((text, build)) => (text, Some(build)),
        None => (text, None),
    };
    let mut rest = text;
    for part in 0..3 {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        if part < 2 {
            let Some(after) = rest.strip_prefix('.') else {
                return false;
            };
            rest = after;
        }
    }
    (rest.is_empty() || identifiers(rest, false)) && build.is_none_or(|b| identifiers(b, false))
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`; `strict`: numeric ones
/// without leading zeros.
fn identifiers(text: &str, strict: bool) -> bool {
    text.split('.').all(|id| {
        let numeric = id.bytes().all(|b| b.is_ascii_digit());
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(strict && numeric && id.len() > 1 && id.starts_with('0'))
    })
}

/// The comparators of one `||` alternative as node-semver splits them: a hyphen range
/// is its two ends; an operator written apart from its version (`>= 1.2.3`) is joined.
fn comparators(alternative: &str) -> Vec<String> {
    let words: Vec<&str> = alternative.split_whitespace().collect();
    if let [lo, "-", hi] = words[..] {
        return vec![lo.to_owned(), hi.to_owned()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut pending = String::new();
    for word in words {
        pending.push_str(word);
        if !word.chars().all(|c| "<>=~^v".contains(c)) {
            out.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        out.push(pending);
    }
    out
}

/// One comparator node-semver accepts: an operator (`<`, `<=`, `>`, `>=`, `=`, `~`,
/// `~>`, `^`) or none, then `[v=]*` and a partial version: `1`, `1.2`, `1.x`, `*`,
/// `1.2.3-rc.1+build`.
fn is_comparator(comparator: &str) -> bool {
    let version = ["~>", "~", "^", ">=", "<=", ">", "<", "="]
        .iter()
        .find_map(|op| comparator.strip_prefix(op))
        .unwrap_or(comparator)
        .trim_start_matches(['v', '=']);
    let (version, build) = match version.split_once('+') {
        Some((version, build)) => (version, Some(build)),
        None => (version, None),
    };
    let (version, pre) = match version.split_once('-') {
        Some((version, pre)) => (version, Some(pre)),
        None => (version, None),
    };
    let parts: Vec<&str> = version.split('.').collect();
    let number_or_x = |part: &&str| {
        matches!(*part, "x" | "X" | "*")
            || (!part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && !(part.len() > 1 && part.starts_with('0')))
    };
    let full = parts.len() == 3;
    (1..=3).contains(&parts.len())
        && parts.iter().all(number_or_x)
        && pre.is_none_or(|p| full && identifiers(p, true))
        && build.is_none_or(|b| full && identifiers(b, false))
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
    /// Found by the `version_range` fuzz target: nodejs-semver read `1.2.31.x` as
    /// 1.2.31 and dropped `1.2.31.x ||` from a range, where node-semver refuses both;
    /// a typo in a `[[deny]]` range quietly meant something else.
    #[test]
    fn text_node_semver_refuses_is_refused() {
        for bad in [
            "1.2.31.x || >82.5.0",
            "3.3.6.1",
            ">=1.2.3.4",
            "1.2.3 foo",
            "1.2-beta",
            "01.2.3",
            "^1.2.3-01",
        ] {
            assert!(VersionRange::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            ">= 1.2.3 < 2",
            "~> 1.2",
            "^ 1.x",
            "1.2.3 - 2.3.4",
            "=1.2.3",
            "v1.2.3",
            "1.2.3-rc.1+build.5 || 2.X || *",
            "<0.0.0-0",
            "1.x ||",
        ] {
            assert!(VersionRange::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["1.2.31.x", "1.2.3.4", "1.2.3 foo", "1.2", "1.2.3+", "1.2.3-a..b"] {
            assert!(parse_version(bad).is_none(), "{bad:?}");
            assert!(!VersionRange::any().contains(bad), "{bad:?}");
        }
        for good in ["1.2.3", " v1.2.3 ", "1.2.3beta", "1.2.3-", "01.2.3", "1.2.3+build.01"] {
            assert!(parse_version(good).is_some(), "{good:?}");
        }
    }
}
