//! A registry's policy: a TOML document, read once into typed rules.
//!
//! Every section is optional, and an absent section is off, with two exceptions
//! that keep what Gatehouse did before it had policies: malware is always blocked
//! (it has no section), and `[manifest]` blocks a pulled version whose manifest
//! differs from its tarball unless it says otherwise. Unknown keys, invalid SPDX
//! ids, bad ranges and bad durations are refused with the line they are on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::license::{LicenseList, ListedLicense};
use crate::range::VersionRange;
use crate::severity::Severity;

/// What new registries start with: the firewall is on from the first start, and
/// only what no team wants (malware, critical vulnerabilities, manifest confusion)
/// is refused outright; the rest is served with a notice.
pub const DEFAULT_POLICY: &str = r#"# Gatehouse's default policy: block malware, critical vulnerabilities and
# manifest confusion; serve everything else, with a notice for what deserves one.
mode = "enforce"

[vulnerabilities]
action = "block"
min_severity = "critical"

[vulnerabilities.severity]
high = "warn"
moderate = "warn"
low = "warn"

[install_scripts]
action = "warn"
only_new = true

[provenance]
action = "warn"

[manifest]
action = "block"
"#;

/// What a rule does with a version it objects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Off,
    Warn,
    Quarantine,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Warn => "warn",
            Action::Quarantine => "quarantine",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `enforce`: decide and act. `audit`: decide and record, serve anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// The rules, named as the policy's sections (and as exceptions name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Malware,
    Deny,
    Freeze,
    Review,
    Vulnerabilities,
    Licenses,
    ReleaseAge,
    InstallScripts,
    Provenance,
    Manifest,
}

impl Rule {
    pub const ALL: [Rule; 10] = [
        Rule::Malware,
        Rule::Deny,
        Rule::Freeze,
        Rule::Review,
        Rule::Vulnerabilities,
        Rule::Licenses,
        Rule::ReleaseAge,
        Rule::InstallScripts,
        Rule::Provenance,
        Rule::Manifest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Malware => "malware",
            Rule::Deny => "deny",
            Rule::Freeze => "freeze",
            Rule::Review => "review",
            Rule::Vulnerabilities => "vulnerabilities",
            Rule::Licenses => "licenses",
            Rule::ReleaseAge => "release_age",
            Rule::InstallScripts => "install_scripts",
            Rule::Provenance => "provenance",
            Rule::Manifest => "manifest",
        }
    }

    /// Whether an exception can lift this rule. Malware never; a freeze and a review
    /// are decisions of their own, changed by changing them.
    pub fn can_be_excepted(self) -> bool {
        !matches!(self, Rule::Malware | Rule::Freeze | Rule::Review)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown rule {0:?}: expected one of vulnerabilities, licenses, release_age, install_scripts, provenance, manifest, deny"
)]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

/// A package name or a glob over names: `event-stream`, `@acme/*`, `@types/*`, `lodash*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid package pattern {0:?}: expected a package name, optionally with * wildcards (\"@acme/*\")")]
pub struct BadPattern(pub String);

impl NamePattern {
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let ok = !text.is_empty()
            && text.len() <= 214
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "@/-._~*".contains(c));
        if ok {
            Ok(NamePattern(text.to_ascii_lowercase()))
        } else {
            Err(BadPattern(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*` matches any run of characters, `/` included.
    pub fn matches(&self, name: &str) -> bool {
        gatehouse_npm::name::glob_matches(&self.0, name)
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NamePattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A span of time written as `3d`, `12h`, `90m`, `1w`, `1d12h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age {
    pub millis: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number and a unit (s, m, h, d, w), like \"3d\" or \"12h\"")]
pub struct BadAge(pub String);

impl Age {
    pub fn parse(text: &str) -> Result<Self, BadAge> {
        let bad = || BadAge(text.to_owned());
        let mut millis: i64 = 0;
        let mut digits = String::new();
        let mut any = false;
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: i64 = match c {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                _ => return Err(bad()),
            };
            let n: i64 = digits.parse().map_err(|_| bad())?;
            millis = n
                .checked_mul(unit)
                .and_then(|m| millis.checked_add(m))
                .ok_or_else(bad)?;
            digits.clear();
            any = true;
        }
        if !any || !digits.is_empty() {
            return Err(bad());
        }
        Ok(Age { millis })
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (604_800_000, "w"),
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        let mut rest = self.millis;
        if rest == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in units {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Age::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A `[[deny]]` or `[[allow]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listed {
    pub package: NamePattern,
    #[serde(default = "VersionRange::any")]
    pub range: VersionRange,
    #[serde(default)]
    pub reason: String,
}

impl Listed {
    pub fn matches(&self, name: &str, version: &str) -> bool {
        self.package.matches(name) && self.range.contains(version)
    }
}

#[derive(Debug, Clone)]
pub struct Vulnerabilities {
    pub mode: Mode,
    /// What a finding of each severity does, lowest first.
    pub by_severity: [Action; 4],
}

impl Vulnerabilities {
    pub fn action(&self, severity: Severity) -> Action {
        self.by_severity[severity as usize]
    }
}

#[derive(Debug, Clone)]
pub struct Licenses {
    pub mode: Mode,
    pub list: Option<LicenseList>,
    /// For a license the list does not accept.
    pub action: Action,
    /// `SEE LICENSE IN …` or text that is no SPDX expression.
    pub unknown: Action,
    pub missing: Action,
}

#[derive(Debug, Clone)]
pub struct ReleaseAge {
    pub mode: Mode,
    pub min: Age,
    pub exclude: Vec<NamePattern>,
    /// Versions published to this registry are exempt unless this is false.
    pub exempt_published: bool,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct InstallScripts {
    pub mode: Mode,
    pub action: Action,
    pub allow: Vec<NamePattern>,
    /// Only a version that has install scripts its previous version did not.
    pub only_new: bool,
}

#[derive(Debug, Clone)]
pub struct Provenance {
    pub mode: Mode,
    pub action: Action,
    pub exclude: Vec<NamePattern>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub mode: Mode,
    pub action: Action,
}

/// A registry's policy, read and checked.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document as written, for `policy show`.
    pub source: String,
    /// The top-level mode: the sections' default, and the mode of `[[deny]]`.
    pub mode: Mode,
    pub freeze: bool,
    pub vulnerabilities: Option<Vulnerabilities>,
    pub licenses: Option<Licenses>,
    pub release_age: Option<ReleaseAge>,
    pub install_scripts: Option<InstallScripts>,
    pub provenance: Option<Provenance>,
    pub manifest: Manifest,
    pub deny: Vec<Listed>,
    pub allow: Vec<Listed>,
    /// Packages whose new versions must come through trusted publishing (OIDC from
    /// CI): a publish with any other credential is refused.
    pub trusted_publishing: Vec<NamePattern>,
}

/// Why a policy document was refused; the old policy stays in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Syntax, unknown keys and bad values, with the line (toml's message shows it).
    #[error("invalid policy: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid policy: [{section}] {why}")]
    Section { section: &'static str, why: String },
}

// The document as written; turned into `Policy` by `Policy::parse`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    freeze: bool,
    vulnerabilities: Option<VulnerabilitiesDoc>,
    licenses: Option<LicensesDoc>,
    release_age: Option<ReleaseAgeDoc>,
    install_scripts: Option<InstallScriptsDoc>,
    provenance: Option<ProvenanceDoc>,
    manifest: Option<ManifestDoc>,
    #[serde(default)]
    deny: Vec<Listed>,
    #[serde(default)]
    allow: Vec<Listed>,
    trusted_publishing: Option<TrustedPublishingDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedPublishingDoc {
    require: Vec<NamePattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VulnerabilitiesDoc {
    mode: Option<Mode>,
    action: Option<Action>,
    min_severity: Option<Severity>,
    severity: Option<SeverityDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeverityDoc {
    low: Option<Action>,
    moderate: Option<Action>,
    high: Option<Action>,
    critical: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LicensesDoc {
    mode: Option<Mode>,
    allow: Option<Vec<ListedLicense>>,
    deny: Option<Vec<ListedLicense>>,
    action: Option<Action>,
    unknown: Option<Action>,
    missing: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseAgeDoc {
    mode: Option<Mode>,
    min: Age,
    #[serde(default)]
    exclude: Vec<NamePattern>,
    exempt_published: Option<bool>,
    action: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallScriptsDoc {
    mode: Option<Mode>,
    action: Option<Action>,
    #[serde(default)]
    allow: Vec<NamePattern>,
    #[serde(default)]
    only_new: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvenanceDoc {
    mode: Option<Mode>,
    action: Option<Action>,
    #[serde(default)]
    exclude: Vec<NamePattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestDoc {
    mode: Option<Mode>,
    action: Option<Action>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let doc: Document = toml::from_str(text)?;
        let mode = doc.mode;
        let vulnerabilities = doc.vulnerabilities.map(|v| {
            let action = v.action.unwrap_or(Action::Block);
            let min = v.min_severity.unwrap_or(Severity::High);
            let mut by_severity = Severity::ALL.map(|s| if s >= min { action } else { Action::Off });
            if let Some(table) = v.severity {
                for (severity, action) in [
                    (Severity::Low, table.low),
                    (Severity::Moderate, table.moderate),
                    (Severity::High, table.high),
                    (Severity::Critical, table.critical),
                ] {
                    if let Some(action) = action {
                        by_severity[severity as usize] = action;
                    }
                }
            }
            Vulnerabilities {
                mode: v.mode.unwrap_or(mode),
                by_severity,
            }
        });
        let licenses = match doc.licenses {
            None => None,
            Some(l) => {
                let list = match (l.allow, l.deny) {
                    (Some(_), Some(_)) => {
                        return Err(PolicyError::Section {
                            section: "licenses",
                            why: "set `allow` or `deny`, not both".into(),
                        });
                    }
                    (Some(allow), None) => Some(LicenseList::Allow(allow)),
                    (None, Some(deny)) => Some(LicenseList::Deny(deny)),
                    (None, None) => None,
                };
                Some(Licenses {
                    mode: l.mode.unwrap_or(mode),
                    list,
                    action: l.action.unwrap_or(Action::Block),
                    unknown: l.unknown.unwrap_or(Action::Warn),
                    missing: l.missing.unwrap_or(Action::Warn),
                })
            }
        };
        let release_age = doc.release_age.map(|r| ReleaseAge {
            mode: r.mode.unwrap_or(mode),
            min: r.min,
            exclude: r.exclude,
            exempt_published: r.exempt_published.unwrap_or(true),
            action: r.action.unwrap_or(Action::Block),
        });
        if let Some(ReleaseAge {
            action: Action::Quarantine,
            ..
        }) = release_age
        {
            return Err(PolicyError::Section {
                section: "release_age",
                why: "action must be \"block\" (held until old enough), \"warn\" or \"off\"".into(),
            });
        }
        let install_scripts = doc.install_scripts.map(|s| InstallScripts {
            mode: s.mode.unwrap_or(mode),
            action: s.action.unwrap_or(Action::Quarantine),
            allow: s.allow,
            only_new: s.only_new,
        });
        let provenance = doc.provenance.map(|p| Provenance {
            mode: p.mode.unwrap_or(mode),
            action: p.action.unwrap_or(Action::Quarantine),
            exclude: p.exclude,
        });
        let manifest = doc.manifest.map_or(
            Manifest {
                mode,
                action: Action::Block,
            },
            |m| Manifest {
                mode: m.mode.unwrap_or(mode),
                action: m.action.unwrap_or(Action::Block),
            },
        );
        Ok(Policy {
            source: text.to_owned(),
            mode,
            freeze: doc.freeze,
            vulnerabilities,
            licenses,
            release_age,
            install_scripts,
            provenance,
            manifest,
            deny: doc.deny,
            allow: doc.allow,
            trusted_publishing: doc.trusted_publishing.map(|t| t.require).unwrap_or_default(),
        })
    }

    /// Whether new versions of `name` may only be published through trusted publishing.
    pub fn requires_trusted_publishing(&self, name: &str) -> bool {
        self.trusted_publishing.iter().any(|p| p.matches(name))
    }

    /// Whether a rule compares a version with the package's earlier ones (a new
    /// version can't be decided alone then).
    pub fn compares_with_history(&self) -> bool {
        self.provenance.is_some() || self.install_scripts.as_ref().is_some_and(|s| s.only_new)
    }

    /// The policy of a registry nobody has set one for.
    pub fn default_policy() -> Policy {
        // The constant is tested to parse (see the tests below).
        Policy::parse(DEFAULT_POLICY).unwrap_or_else(|_| Policy::off())
    }

    /// Nothing but what is always on (malware, manifest confusion).
    pub fn off() -> Policy {
        Policy {
            source: String::new(),
            mode: Mode::Enforce,
            freeze: false,
            vulnerabilities: None,
            licenses: None,
            release_age: None,
            install_scripts: None,
            provenance: None,
            manifest: Manifest {
                mode: Mode::Enforce,
                action: Action::Block,
            },
            deny: Vec::new(),
            allow: Vec::new(),
            trusted_publishing: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_publishing_can_be_required_for_chosen_packages() {
        let policy = Policy::parse("[trusted_publishing]\nrequire = [\"@acme/*\", \"tool\"]\n").expect("parses");
        assert!(policy.requires_trusted_publishing("@acme/lib"));
        assert!(policy.requires_trusted_publishing("tool"));
        assert!(!policy.requires_trusted_publishing("@other/lib"));
        assert!(!Policy::default_policy().requires_trusted_publishing("@acme/lib"));
        let err = Policy::parse("[trusted_publishing]\nrequired = []\n").expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `required`"), "{err}");
    }

    const EXAMPLE: &str = r#"
mode = "enforce"
freeze = false

[vulnerabilities]
action = "block"
min_severity = "high"

[licenses]
allow = ["MIT", "Apache-2.0", "ISC", "BSD-2-Clause", "BSD-3-Clause"]
action = "quarantine"
unknown = "quarantine"
missing = "warn"

[release_age]
min = "3d"
exclude = ["@acme/*"]

[install_scripts]
action = "quarantine"
allow = ["esbuild", "sharp"]
only_new = true

[[deny]]
package = "event-stream"
range = "3.3.6"
reason = "compromised release"
"#;

    #[test]
    fn the_documented_example_reads_as_written() {
        let policy = Policy::parse(EXAMPLE).expect("valid");
        let v = policy.vulnerabilities.as_ref().expect("section");
        assert_eq!(v.action(Severity::High), Action::Block);
        assert_eq!(v.action(Severity::Moderate), Action::Off);
        let l = policy.licenses.as_ref().expect("section");
        assert!(matches!(l.list, Some(LicenseList::Allow(ref ids)) if ids.len() == 5));
        assert_eq!(
            (l.action, l.unknown, l.missing),
            (Action::Quarantine, Action::Quarantine, Action::Warn)
        );
        let age = policy.release_age.as_ref().expect("section");
        assert_eq!(age.min.millis, 3 * 86_400_000);
        assert!(age.exclude[0].matches("@acme/ui") && age.exempt_published);
        assert!(policy.install_scripts.as_ref().is_some_and(|s| s.only_new));
        assert!(policy.deny[0].matches("event-stream", "3.3.6"));
        assert!(!policy.deny[0].matches("event-stream", "3.3.5"));
        assert_eq!(policy.manifest.action, Action::Block);
    }

    #[test]
    fn the_default_policy_parses_and_blocks_only_critical_findings() {
        let policy = Policy::parse(DEFAULT_POLICY).expect("the default policy parses");
        let v = policy.vulnerabilities.expect("section");
        assert_eq!(v.action(Severity::Critical), Action::Block);
        assert_eq!(v.action(Severity::High), Action::Warn);
        assert_eq!(v.action(Severity::Low), Action::Warn);
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let cases = [
            ("[release_age]\nmin = \"3 days\"\n", "line 2", "invalid duration"),
            (
                "[licenses]\nallow = [\"MIT\", \"Apache2\"]\n",
                "line 2",
                "\"Apache2\" is not an SPDX license id",
            ),
            (
                "[[deny]]\npackage = \"x\"\nrange = \"not a range\"\n",
                "line 3",
                "invalid version range",
            ),
            (
                "\n[vulnerabilities]\nactoin = \"block\"\n",
                "line 3",
                "unknown field `actoin`",
            ),
            (
                "[vulnerabilities]\nmin_severity = \"severe\"\n",
                "line 2",
                "unknown variant `severe`",
            ),
        ];
        for (text, line, what) in cases {
            let e = Policy::parse(text).expect_err(text).to_string();
            assert!(e.contains(line) && e.contains(what), "{text:?} → {e}");
        }
        let e = Policy::parse("[licenses]\nallow = [\"MIT\"]\ndeny = [\"GPL-3.0-only\"]\n").expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn an_empty_policy_keeps_only_the_manifest_rule() {
        let policy = Policy::parse("").expect("empty is valid");
        assert!(policy.vulnerabilities.is_none() && policy.licenses.is_none() && policy.release_age.is_none());
        assert_eq!(policy.manifest.action, Action::Block);
    }

    #[test]
    fn sections_inherit_the_top_level_mode_unless_they_set_their_own() {
        let policy = Policy::parse(
            "mode = \"audit\"\n[vulnerabilities]\naction = \"block\"\n[install_scripts]\nmode = \"enforce\"\n",
        )
        .expect("valid");
        assert_eq!(policy.vulnerabilities.expect("section").mode, Mode::Audit);
        assert_eq!(policy.install_scripts.expect("section").mode, Mode::Enforce);
    }

    #[test]
    fn name_patterns_and_ages() {
        let p = |s: &str| NamePattern::parse(s).expect("valid");
        assert!(p("@acme/*").matches("@acme/ui") && !p("@acme/*").matches("@acmex/ui"));
        assert!(p("lodash*").matches("lodash.merge") && p("lodash*").matches("lodash"));
        assert!(p("*-stream").matches("event-stream") && !p("*-stream").matches("streams"));
        assert!(!p("esbuild").matches("esbuild-wasm"));
        assert!(NamePattern::parse("a b").is_err());
        assert_eq!(Age::parse("1d12h").expect("valid").millis, 36 * 3_600_000);
        assert_eq!(Age::parse("36h").expect("valid").to_string(), "1d12h");
        assert!(Age::parse("3").is_err() && Age::parse("d").is_err() && Age::parse("3y").is_err());
    }
}
