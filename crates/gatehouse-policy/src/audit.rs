//! `npm audit` answered from local advisory data (firewall.md §3): the bulk endpoint npm 7+
//! uses (`POST /-/npm/v1/security/advisories/bulk`) and the quick one older npm, pnpm ≤ 10
//! and Yarn fall back to (`…/security/audits/quick`, `…/security/audits`). Request bodies
//! in (already un-gzipped), report JSON out, sorted so the same data gives the same bytes.
//!
//! Both builders return a JSON object the caller may extend (a freshness note belongs in a
//! header for bulk, whose every top-level key is read as a package name; in `metadata` for
//! quick).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::advisory::{Advisory, NOTHING_PATCHED};
use crate::severity::Severity;

/// Name/version pairs in one bulk request (a large lockfile has a few thousand).
pub const MAX_BULK_PAIRS: usize = 100_000;
/// Packages in one quick-audit tree.
pub const MAX_TREE_PACKAGES: usize = 100_000;
/// Nesting of `dependencies` in a quick-audit tree (serde_json stops at 128 JSON levels,
/// two per tree level, before this).
pub const MAX_TREE_DEPTH: usize = 60;
/// All `a>b>c` paths of a quick-audit tree together: each repeats its ancestors' names.
const MAX_PATH_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("not a bulk audit request (expected {{\"<package>\": [\"<version>\", …]}}): {0}")]
    BulkBody(String),
    #[error("not a quick audit request (expected a lockfile-v1 tree {{\"name\", \"dependencies\": {{…}}}}): {0}")]
    QuickBody(String),
    #[error("audit request too large: more than {limit} {what}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("audit request too deep: dependencies nested more than {limit} levels at {path}")]
    TooDeep { path: String, limit: usize },
}

/// Reads a bulk request: `{"<name>": ["<version>", …]}`.
pub fn bulk_request(body: &[u8]) -> Result<BTreeMap<String, Vec<String>>, AuditError> {
    let request: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(body).map_err(|e| AuditError::BulkBody(e.to_string()))?;
    // A name with no version still costs a lookup.
    let pairs = request.values().fold(0usize, |n, v| n.saturating_add(v.len().max(1)));
    if pairs > MAX_BULK_PAIRS {
        return Err(AuditError::TooLarge {
            what: "name/version pairs",
            limit: MAX_BULK_PAIRS,
        });
    }
    Ok(request)
}

/// The bulk report: per requested name, the advisories that affect at least one of its
/// requested versions (`{"<name>": [{"id", "url", "title", "severity", "vulnerable_versions",
/// "cwe", "cvss"}]}`); names without findings are left out.
pub fn bulk_report(request: &BTreeMap<String, Vec<String>>, lookup: impl Fn(&str) -> Vec<Advisory>) -> Value {
    let mut report = Map::new();
    for (name, versions) in request {
        let found: Vec<Value> = advisories_for(&lookup, name)
            .iter()
            .filter(|a| versions.iter().any(|v| a.affects(name, v)))
            .map(|a| {
                json!({
                    "id": numeric_id(&a.id, name),
                    "url": a.url,
                    "title": title(a, name),
                    "severity": a.severity.as_str(),
                    "vulnerable_versions": a.vulnerable_versions(name),
                    "cwe": a.cwe,
                    "cvss": cvss(a),
                })
            })
            .collect();
        if !found.is_empty() {
            report.insert(name.clone(), Value::Array(found));
        }
    }
    Value::Object(report)
}

/// A quick-audit request: the root and every package installed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickRequest {
    pub name: Option<String>,
    pub version: Option<String>,
    /// In tree order, each name's children sorted.
    pub installed: Vec<Installed>,
}

/// One package in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    /// As the lockfile has it (`""` when it has none); what is not a version matches nothing.
    pub version: String,
    /// How it is reached from the root: `a>b>c`.
    pub path: String,
    pub dev: bool,
    pub optional: bool,
}

// The lockfile-v1 shape npm 6, pnpm ≤ 10 and Yarn send; `requires`, `integrity`,
// `install`, `remove` and `metadata` are not needed and not read.
#[derive(Deserialize)]
struct RawQuick {
    name: Option<String>,
    version: Option<String>,
    dependencies: Option<BTreeMap<String, RawDependency>>,
}

#[derive(Deserialize)]
struct RawDependency {
    version: Option<String>,
    dev: Option<bool>,
    optional: Option<bool>,
    dependencies: Option<BTreeMap<String, RawDependency>>,
}

/// Reads a quick-audit (`audits/quick`, `audits`) body.
pub fn quick_request(body: &[u8]) -> Result<QuickRequest, AuditError> {
    let raw: RawQuick = serde_json::from_slice(body).map_err(|e| AuditError::QuickBody(e.to_string()))?;
    let mut tree = Tree {
        installed: Vec::new(),
        path_bytes: 0,
    };
    if let Some(dependencies) = &raw.dependencies {
        tree.collect(dependencies, "", 1)?;
    }
    Ok(QuickRequest {
        name: raw.name,
        version: raw.version,
        installed: tree.installed,
    })
}

struct Tree {
    installed: Vec<Installed>,
    path_bytes: usize,
}

impl Tree {
    fn collect(
        &mut self,
        dependencies: &BTreeMap<String, RawDependency>,
        parent: &str,
        depth: usize,
    ) -> Result<(), AuditError> {
        for (name, dependency) in dependencies {
            let path = if parent.is_empty() {
                name.clone()
            } else {
                format!("{parent}>{name}")
            };
            if depth > MAX_TREE_DEPTH {
                return Err(AuditError::TooDeep {
                    path,
                    limit: MAX_TREE_DEPTH,
                });
            }
            if self.installed.len() >= MAX_TREE_PACKAGES {
                return Err(AuditError::TooLarge {
                    what: "packages in the dependency tree",
                    limit: MAX_TREE_PACKAGES,
                });
            }
            self.path_bytes += path.len();
            if self.path_bytes > MAX_PATH_BYTES {
                return Err(AuditError::TooLarge {
                    what: "bytes of dependency paths",
                    limit: MAX_PATH_BYTES,
                });
            }
            self.installed.push(Installed {
                name: name.clone(),
                version: dependency.version.clone().unwrap_or_default(),
                path: path.clone(),
                dev: dependency.dev.unwrap_or(false),
                optional: dependency.optional.unwrap_or(false),
            });
            if let Some(children) = &dependency.dependencies {
                self.collect(children, &path, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The quick-audit report: `{actions, advisories: {"<id>": {…, findings}}, muted, metadata}`,
/// with `metadata.vulnerabilities` counting affected paths, as npm 6 printed them.
pub fn quick_report(request: &QuickRequest, lookup: impl Fn(&str) -> Vec<Advisory>) -> Value {
    struct Finding<'a> {
        paths: Vec<&'a str>,
        dev: bool,
        optional: bool,
    }
    struct Hit<'a> {
        advisory: Advisory,
        findings: BTreeMap<&'a str, Finding<'a>>,
    }

    let mut known: BTreeMap<&str, Vec<Advisory>> = BTreeMap::new();
    // Keyed by (advisory id, package): one GHSA may name lodash and lodash-es.
    let mut hits: BTreeMap<(String, &str), Hit> = BTreeMap::new();
    let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
    for package in &request.installed {
        let advisories = known
            .entry(package.name.as_str())
            .or_insert_with(|| advisories_for(&lookup, &package.name));
        for advisory in advisories.iter().filter(|a| a.affects(&package.name, &package.version)) {
            let hit = hits
                .entry((advisory.id.clone(), package.name.as_str()))
                .or_insert_with(|| Hit {
                    advisory: advisory.clone(),
                    findings: BTreeMap::new(),
                });
            let finding = hit.findings.entry(package.version.as_str()).or_insert(Finding {
                paths: Vec::new(),
                dev: true,
                optional: true,
            });
            finding.paths.push(&package.path);
            finding.dev &= package.dev;
            finding.optional &= package.optional;
            *counts.entry(advisory.severity).or_default() += 1;
        }
    }

    let mut advisories = Map::new();
    for ((_, name), hit) in &hits {
        let a = &hit.advisory;
        let id = numeric_id(&a.id, name);
        let patched = a.patched_versions(name);
        let recommendation = if a.malware {
            format!("Remove {name}: it contains malicious code.")
        } else if patched == NOTHING_PATCHED {
            format!("No fixed version of {name} is known: remove it or replace it.")
        } else {
            format!("Upgrade {name} to a version in {patched}.")
        };
        let findings: Vec<Value> = hit
            .findings
            .iter()
            .map(|(version, f)| {
                let mut paths = f.paths.clone();
                paths.sort_unstable();
                json!({"version": version, "paths": paths, "dev": f.dev, "optional": f.optional, "bundled": false})
            })
            .collect();
        advisories.insert(
            id.to_string(),
            json!({
                "id": id,
                "title": title(a, name),
                "module_name": name,
                "severity": a.severity.as_str(),
                "vulnerable_versions": a.vulnerable_versions(name),
                "patched_versions": patched,
                "url": a.url,
                "cwe": a.cwe,
                "cves": std::iter::once(&a.id).chain(&a.aliases).filter(|n| n.starts_with("CVE-")).collect::<Vec<_>>(),
                "overview": if a.details.is_empty() { &a.summary } else { &a.details },
                "recommendation": recommendation,
                "findings": findings,
            }),
        );
    }

    let count = |s: Severity| counts.get(&s).copied().unwrap_or(0);
    let dev = request.installed.iter().filter(|p| p.dev).count();
    let optional = request.installed.iter().filter(|p| p.optional).count();
    json!({
        "actions": [],
        "advisories": advisories,
        "muted": [],
        "metadata": {
            "vulnerabilities": {
                "info": 0,
                "low": count(Severity::Low),
                "moderate": count(Severity::Moderate),
                "high": count(Severity::High),
                "critical": count(Severity::Critical),
            },
            "dependencies": request.installed.len() - dev,
            "devDependencies": dev,
            "optionalDependencies": optional,
            "totalDependencies": request.installed.len(),
        },
    })
}

/// The advisories for one name, each once, in id order.
fn advisories_for(lookup: &impl Fn(&str) -> Vec<Advisory>, name: &str) -> Vec<Advisory> {
    let mut advisories = lookup(name);
    advisories.sort_by(|a, b| a.id.cmp(&b.id));
    advisories.dedup_by(|a, b| a.id == b.id);
    advisories
}

fn title(advisory: &Advisory, name: &str) -> String {
    if advisory.malware {
        format!("Malicious code in {name}")
    } else {
        advisory.summary.clone()
    }
}

/// npm reads `cvss` as `{score, vectorString}`; the registry sends `0` and `null` without one.
fn cvss(advisory: &Advisory) -> Value {
    match &advisory.cvss {
        Some(c) => json!({"score": c.score, "vectorString": c.vector}),
        None => json!({"score": 0, "vectorString": null}),
    }
}

/// npm wants a number for an advisory id. This one is stable across processes and
/// versions (FNV-1a over the advisory id and package name, as npm's own data numbers each
/// advisory per package), and below 2^53 so JavaScript reads it exactly.
pub fn numeric_id(advisory_id: &str, package: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in advisory_id.bytes().chain([0]).chain(package.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash & ((1 << 53) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::tests::{LODASH_COMMAND_INJECTION, advisory};

    fn lookup(name: &str) -> Vec<Advisory> {
        let all = [
            advisory(LODASH_COMMAND_INJECTION),
            advisory("github-reviewed/2022/01/GHSA-29mw-wpgm-hmr9/GHSA-29mw-wpgm-hmr9.json"),
            advisory("malicious/MAL-2025-191025.json"),
        ];
        all.into_iter().filter(|a| a.packages().any(|p| p == name)).collect()
    }

    #[test]
    fn bulk_finds_lodash_4_17_20_and_not_4_17_21() {
        let request = bulk_request(br#"{"lodash": ["4.17.20"], "left-pad": ["1.3.0"]}"#).expect("request");
        let report = bulk_report(&request, lookup);
        let lodash = report["lodash"].as_array().expect("findings for lodash");
        assert_eq!(lodash.len(), 2);
        let injection = &lodash[1];
        assert_eq!(injection["url"], "https://github.com/advisories/GHSA-35jh-r3h4-6jhm");
        assert_eq!(injection["title"], "Command Injection in lodash");
        assert_eq!(injection["severity"], "high");
        assert_eq!(injection["vulnerable_versions"], "<4.17.21");
        assert_eq!(injection["cwe"], json!(["CWE-77", "CWE-94"]));
        assert_eq!(injection["cvss"]["score"], 7.2);
        assert_eq!(
            injection["cvss"]["vectorString"],
            "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"
        );
        assert_eq!(injection["id"], numeric_id("GHSA-35jh-r3h4-6jhm", "lodash"));
        assert_eq!(lodash[0]["severity"], "moderate");
        assert!(report.get("left-pad").is_none(), "no findings, no key: {report}");

        let fixed = bulk_report(&bulk_request(br#"{"lodash": ["4.17.21"]}"#).expect("request"), lookup);
        assert_eq!(fixed, json!({}));
        let either = bulk_report(
            &bulk_request(br#"{"lodash": ["4.17.21", "4.17.20"]}"#).expect("request"),
            lookup,
        );
        assert_eq!(either["lodash"].as_array().map(Vec::len), Some(2));
        assert_eq!(bulk_report(&request, lookup), report, "deterministic");
    }

    #[test]
    fn bulk_reports_malware_as_npm_shows_it() {
        let report = bulk_report(&bulk_request(br#"{"02-echo": ["0.0.7"]}"#).expect("request"), lookup);
        let finding = &report["02-echo"][0];
        assert_eq!(finding["title"], "Malicious code in 02-echo");
        assert_eq!(finding["severity"], "critical");
        assert_eq!(finding["cvss"], json!({"score": 0, "vectorString": null}));
        assert_eq!(finding["vulnerable_versions"], "0.0.7");
    }

    #[test]
    fn bulk_requests_are_checked() {
        for (body, says) in [
            (&b"[]"[..], "expected"),
            (br#"{"lodash": "4.17.20"}"#, "invalid type"),
            (br#"{"lodash": [4]}"#, "invalid type"),
            (b"not json", "expected"),
        ] {
            let e = bulk_request(body).expect_err("refused");
            assert!(
                e.to_string().contains(says) && e.to_string().starts_with("not a bulk audit request"),
                "{e}"
            );
        }
        let versions: Vec<String> = (0..=MAX_BULK_PAIRS).map(|i| format!("1.0.{i}")).collect();
        let body = serde_json::to_vec(&json!({ "a": versions })).expect("json");
        assert!(matches!(bulk_request(&body), Err(AuditError::TooLarge { .. })));
        assert!(bulk_request(b"{}").expect("empty").is_empty());
    }

    const QUICK: &str = r#"{
        "name": "app", "version": "1.0.0",
        "requires": {"lodash": "^4.17.0", "tool": "^1.0.0"},
        "dependencies": {
            "lodash": {"version": "4.17.20", "integrity": "sha512-x", "requires": {}},
            "tool": {"version": "1.0.0", "dev": true, "requires": {"lodash": "4.17.15"},
                     "dependencies": {"lodash": {"version": "4.17.15", "dev": true}}},
            "fsevents": {"version": "2.0.0", "optional": true},
            "lodash-es": {"version": "4.17.21"}
        },
        "install": [], "remove": [], "metadata": {"npm_version": "6.14.18"}
    }"#;

    #[test]
    fn quick_collects_the_tree_with_paths() {
        let request = quick_request(QUICK.as_bytes()).expect("request");
        assert_eq!(request.name.as_deref(), Some("app"));
        let paths: Vec<(&str, &str, bool)> = request
            .installed
            .iter()
            .map(|p| (p.path.as_str(), p.version.as_str(), p.dev))
            .collect();
        assert_eq!(
            paths,
            [
                ("fsevents", "2.0.0", false),
                ("lodash", "4.17.20", false),
                ("lodash-es", "4.17.21", false),
                ("tool", "1.0.0", true),
                ("tool>lodash", "4.17.15", true),
            ]
        );
        assert!(request.installed[0].optional);
    }

    #[test]
    fn quick_finds_lodash_4_17_20_and_not_4_17_21() {
        let report = quick_report(&quick_request(QUICK.as_bytes()).expect("request"), lookup);
        let id = numeric_id("GHSA-35jh-r3h4-6jhm", "lodash");
        let advisory = &report["advisories"][id.to_string()];
        assert_eq!(advisory["id"], id);
        assert_eq!(advisory["module_name"], "lodash");
        assert_eq!(advisory["severity"], "high");
        assert_eq!(advisory["vulnerable_versions"], "<4.17.21");
        assert_eq!(advisory["patched_versions"], ">=4.17.21");
        assert_eq!(advisory["cves"], json!(["CVE-2021-23337"]));
        assert_eq!(advisory["url"], "https://github.com/advisories/GHSA-35jh-r3h4-6jhm");
        assert_eq!(advisory["recommendation"], "Upgrade lodash to a version in >=4.17.21.");
        assert_eq!(
            advisory["findings"],
            json!([
                {"version": "4.17.15", "paths": ["tool>lodash"], "dev": true, "optional": false, "bundled": false},
                {"version": "4.17.20", "paths": ["lodash"], "dev": false, "optional": false, "bundled": false},
            ])
        );
        assert!(
            report["advisories"]
                .get(numeric_id("GHSA-35jh-r3h4-6jhm", "lodash-es").to_string())
                .is_none(),
            "lodash-es 4.17.21 is fixed"
        );
        assert_eq!(
            report["advisories"].as_object().map(|a| a.len()),
            Some(2),
            "injection and ReDoS"
        );
        assert_eq!(
            report["metadata"],
            json!({
                "vulnerabilities": {"info": 0, "low": 0, "moderate": 2, "high": 2, "critical": 0},
                "dependencies": 3, "devDependencies": 2, "optionalDependencies": 1, "totalDependencies": 5,
            })
        );
        assert_eq!(
            (report["actions"].clone(), report["muted"].clone()),
            (json!([]), json!([]))
        );

        let fixed = br#"{"name": "app", "dependencies": {"lodash": {"version": "4.17.21"}}}"#;
        let report = quick_report(&quick_request(fixed).expect("request"), lookup);
        assert_eq!(report["advisories"], json!({}));
        assert_eq!(report["metadata"]["totalDependencies"], 1);
    }

    #[test]
    fn quick_requests_are_checked_and_bounded() {
        for body in [
            &b"[]"[..],
            br#"{"dependencies": []}"#,
            br#"{"dependencies": {"a": {"dev": "yes"}}}"#,
        ] {
            let e = quick_request(body).expect_err("refused");
            assert!(e.to_string().starts_with("not a quick audit request"), "{e}");
        }
        let mut deep = String::from(r#"{"version": "1.0.0"}"#);
        for _ in 0..MAX_TREE_DEPTH + 1 {
            deep = format!(r#"{{"version": "1.0.0", "dependencies": {{"a": {deep}}}}}"#);
        }
        // serde_json's own nesting limit or ours: refused either way, never a stack overflow.
        assert!(quick_request(format!(r#"{{"dependencies": {{"a": {deep}}}}}"#).as_bytes()).is_err());
        let mut shallow = String::from(r#"{"version": "1.0.0"}"#);
        for _ in 0..20 {
            shallow = format!(r#"{{"version": "1.0.0", "dependencies": {{"a": {shallow}}}}}"#);
        }
        let request = quick_request(format!(r#"{{"dependencies": {{"a": {shallow}}}}}"#).as_bytes()).expect("20 deep");
        assert_eq!(request.installed.last().map(|p| p.path.matches('>').count()), Some(20));

        let many: BTreeMap<String, Value> = (0..=MAX_TREE_PACKAGES)
            .map(|i| (format!("p{i}"), json!({"version": "1.0.0"})))
            .collect();
        let body = serde_json::to_vec(&json!({ "dependencies": many })).expect("json");
        assert!(matches!(quick_request(&body), Err(AuditError::TooLarge { .. })));
    }

    #[test]
    fn numeric_ids_are_stable_and_fit_javascript() {
        assert_eq!(
            numeric_id("GHSA-35jh-r3h4-6jhm", "lodash"),
            numeric_id("GHSA-35jh-r3h4-6jhm", "lodash")
        );
        assert_ne!(
            numeric_id("GHSA-35jh-r3h4-6jhm", "lodash"),
            numeric_id("GHSA-35jh-r3h4-6jhm", "lodash-es")
        );
        assert_ne!(numeric_id("GHSA-a", "bc"), numeric_id("GHSA-ab", "c"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            let id = numeric_id(&format!("MAL-2025-{i}"), "x");
            assert!(id < 1 << 53);
            assert!(seen.insert(id), "collision at {i}");
        }
    }
}
