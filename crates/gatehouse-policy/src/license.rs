//! What license a version declares, and whether a policy's list allows it.
//!
//! npm manifests say it many ways: an SPDX expression (`MIT OR Apache-2.0`), a lax one
//! (`Apache 2.0`, `GPLv3`, `MIT/X11`), `UNLICENSED` (proprietary: not SPDX's
//! `Unlicense`), `SEE LICENSE IN <file>`, the legacy `license: {type}` object and
//! `licenses: [{type}]` array, or nothing at all.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use spdx::{Expression, LicenseReq, Licensee, ParseMode};

/// A version's license, as read from its manifest.
#[derive(Debug)]
pub enum Declared {
    /// An SPDX expression (boxed: it is large, the others are small); `corrected`
    /// when it only parsed leniently.
    Spdx {
        expression: Box<Expression>,
        corrected: bool,
    },
    /// `UNLICENSED`: proprietary, all rights reserved.
    Unlicensed,
    /// `SEE LICENSE IN <file>`: a custom license nobody has classified.
    SeeFile(String),
    /// Text that is no license expression.
    Unparseable(String),
    Missing,
}

impl Declared {
    pub fn of(manifest: &Map<String, Value>) -> Declared {
        match manifest.get("license") {
            Some(Value::String(text)) => return Declared::parse(text),
            // Legacy `{type, url}`.
            Some(Value::Object(legacy)) => {
                if let Some(Value::String(kind)) = legacy.get("type") {
                    return Declared::parse(kind);
                }
            }
            _ => {}
        }
        // Legacy `licenses: [{type, url}, …]`: any one of them (OR).
        if let Some(Value::Array(list)) = manifest.get("licenses") {
            let kinds: Vec<&str> = list
                .iter()
                .filter_map(|entry| match entry {
                    Value::String(kind) => Some(kind.as_str()),
                    Value::Object(legacy) => legacy.get("type").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            if !kinds.is_empty() {
                let joined = kinds
                    .iter()
                    .map(|k| {
                        if kinds.len() > 1 {
                            format!("({k})")
                        } else {
                            (*k).to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" OR ");
                return Declared::parse(&joined);
            }
        }
        Declared::Missing
    }

    pub fn parse(text: &str) -> Declared {
        let text = text.trim();
        if text.is_empty() {
            return Declared::Missing;
        }
        if text.eq_ignore_ascii_case("UNLICENSED") || text.eq_ignore_ascii_case("UNLICENCED") {
            return Declared::Unlicensed;
        }
        let upper = text.to_ascii_uppercase();
        if let Some(file) = upper
            .strip_prefix("SEE LICENSE IN ")
            .or_else(|| upper.strip_prefix("SEE LICENCE IN "))
        {
            return Declared::SeeFile(text[text.len() - file.len()..].trim().to_owned());
        }
        if let Ok(expression) = Expression::parse(text) {
            return Declared::Spdx {
                expression: Box::new(expression),
                corrected: false,
            };
        }
        match Expression::parse_mode(text, ParseMode::LAX) {
            Ok(expression) => Declared::Spdx {
                expression: Box::new(expression),
                corrected: true,
            },
            Err(_) => Declared::Unparseable(text.to_owned()),
        }
    }
}

impl fmt::Display for Declared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Declared::Spdx { expression, .. } => write!(f, "{expression}"),
            Declared::Unlicensed => f.write_str("UNLICENSED"),
            Declared::SeeFile(file) => write!(f, "SEE LICENSE IN {file}"),
            Declared::Unparseable(text) => write!(f, "{text:?} (not an SPDX expression)"),
            Declared::Missing => f.write_str("no license"),
        }
    }
}

/// One entry of a policy's `allow` or `deny` list: an SPDX license id, optionally
/// `WITH` an exception, or `UNLICENSED`. Checked when the policy is read.
#[derive(Debug, Clone)]
pub enum ListedLicense {
    Spdx(Licensee),
    Unlicensed,
}

#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an SPDX license id (see https://spdx.org/licenses/): {detail}")]
pub struct UnknownLicense {
    pub text: String,
    pub detail: String,
}

impl ListedLicense {
    pub fn parse(text: &str) -> Result<Self, UnknownLicense> {
        if text == "UNLICENSED" {
            return Ok(ListedLicense::Unlicensed);
        }
        Licensee::parse(text)
            .map(ListedLicense::Spdx)
            .map_err(|e| UnknownLicense {
                text: text.to_owned(),
                detail: e.reason.to_string(),
            })
    }

    fn satisfies(&self, req: &LicenseReq) -> bool {
        match self {
            ListedLicense::Spdx(licensee) => licensee.satisfies(req),
            ListedLicense::Unlicensed => false,
        }
    }
}

impl<'de> Deserialize<'de> for ListedLicense {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ListedLicense::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which licenses a policy accepts.
#[derive(Debug, Clone)]
pub enum LicenseList {
    /// Only these (an expression passes when a choice of its `OR` branches is all listed).
    Allow(Vec<ListedLicense>),
    /// Anything but these.
    Deny(Vec<ListedLicense>),
}

/// What the list says of a declared license.
#[derive(Debug, PartialEq, Eq)]
pub enum LicenseVerdict {
    Accepted,
    /// Listed as denied, or not on the allow list; the licenses that failed.
    Refused(Vec<String>),
    /// `SEE LICENSE IN …` or text that is no expression: a person must look.
    Unknown,
    Missing,
}

impl LicenseList {
    pub fn judge(&self, declared: &Declared) -> LicenseVerdict {
        match declared {
            Declared::Missing => LicenseVerdict::Missing,
            Declared::SeeFile(_) | Declared::Unparseable(_) => LicenseVerdict::Unknown,
            Declared::Unlicensed => {
                let listed = |list: &[ListedLicense]| list.iter().any(|l| matches!(l, ListedLicense::Unlicensed));
                let accepted = match self {
                    LicenseList::Allow(list) => listed(list),
                    LicenseList::Deny(list) => !listed(list),
                };
                if accepted {
                    LicenseVerdict::Accepted
                } else {
                    LicenseVerdict::Refused(vec!["UNLICENSED".to_owned()])
                }
            }
            Declared::Spdx { expression, .. } => {
                let result = match self {
                    LicenseList::Allow(list) => {
                        expression.evaluate_with_failures(|req| list.iter().any(|l| l.satisfies(req)))
                    }
                    LicenseList::Deny(list) => {
                        expression.evaluate_with_failures(|req| !list.iter().any(|l| l.satisfies(req)))
                    }
                };
                match result {
                    Ok(()) => LicenseVerdict::Accepted,
                    Err(failed) => LicenseVerdict::Refused(failed.iter().map(|r| r.req.to_string()).collect()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn declared(manifest: Value) -> Declared {
        Declared::of(manifest.as_object().expect("object"))
    }

    fn list(ids: &[&str]) -> Vec<ListedLicense> {
        ids.iter()
            .map(|id| ListedLicense::parse(id).expect("valid id"))
            .collect()
    }

    #[test]
    fn every_way_a_manifest_says_its_license_is_read() {
        assert!(matches!(
            declared(json!({"license": "MIT"})),
            Declared::Spdx { corrected: false, .. }
        ));
        assert!(matches!(
            declared(json!({"license": "Apache 2.0"})),
            Declared::Spdx { corrected: true, .. }
        ));
        assert!(matches!(
            declared(json!({"license": "UNLICENSED"})),
            Declared::Unlicensed
        ));
        assert!(
            matches!(declared(json!({"license": "SEE LICENSE IN LICENSE.md"})), Declared::SeeFile(f) if f == "LICENSE.md")
        );
        assert!(matches!(
            declared(json!({"license": "my own terms"})),
            Declared::Unparseable(_)
        ));
        assert!(matches!(declared(json!({"name": "x"})), Declared::Missing));
        assert!(matches!(
            declared(json!({"license": {"type": "MIT", "url": "x"}})),
            Declared::Spdx { .. }
        ));
        let legacy = declared(json!({"licenses": [{"type": "MIT"}, {"type": "Apache-2.0"}]}));
        assert_eq!(legacy.to_string(), "(MIT) OR (Apache-2.0)");
    }

    #[test]
    fn allow_lists_pass_an_or_by_one_branch_and_an_and_by_all() {
        let allow = LicenseList::Allow(list(&["MIT", "ISC"]));
        let judge = |text: &str| allow.judge(&Declared::parse(text));
        assert_eq!(judge("MIT OR GPL-3.0-only"), LicenseVerdict::Accepted);
        assert_eq!(
            judge("MIT AND GPL-3.0-only"),
            LicenseVerdict::Refused(vec!["GPL-3.0-only".into()])
        );
        assert_eq!(judge("UNLICENSED"), LicenseVerdict::Refused(vec!["UNLICENSED".into()]));
        assert_eq!(judge("SEE LICENSE IN x"), LicenseVerdict::Unknown);
    }

    #[test]
    fn deny_lists_refuse_only_what_they_name() {
        let deny = LicenseList::Deny(list(&["GPL-3.0-only", "AGPL-3.0-only"]));
        let judge = |text: &str| deny.judge(&Declared::parse(text));
        assert_eq!(judge("MIT"), LicenseVerdict::Accepted);
        assert_eq!(judge("MIT OR GPL-3.0-only"), LicenseVerdict::Accepted);
        assert_eq!(
            judge("AGPL-3.0-only"),
            LicenseVerdict::Refused(vec!["AGPL-3.0-only".into()])
        );
        assert_eq!(judge("UNLICENSED"), LicenseVerdict::Accepted);
    }

    #[test]
    fn list_entries_must_be_spdx_ids() {
        assert!(ListedLicense::parse("Apache-2.0 WITH LLVM-exception").is_ok());
        let e = ListedLicense::parse("MIT-ish").expect_err("unknown id");
        assert!(e.to_string().contains("\"MIT-ish\" is not an SPDX license id"), "{e}");
    }
}
