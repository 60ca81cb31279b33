//! Builds the full and abbreviated packuments of a package from its stored rows.
//! Done once per change (see `packument_cache`), never per request.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::name::PackageName;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A maintainer as packuments list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    pub name: String,
    pub email: Option<String>,
}

/// What a packument is built from: one package as a registry holds it, whoever stores it.
pub struct PackageView<'a> {
    pub name: &'a PackageName,
    pub rev: i64,
    pub created_at: Millis,
    pub modified_at: Millis,
    pub dist_tags: &'a BTreeMap<String, String>,
    pub maintainers: &'a [Maintainer],
    /// Every version ever published, unpublished ones included (for `time`).
    pub versions: Vec<VersionView<'a>>,
}

/// One version of a [`PackageView`].
pub struct VersionView<'a> {
    pub version: &'a str,
    /// The manifest as stored: JSON object text.
    pub manifest: &'a str,
    pub published_at: Millis,
    pub deprecated: Option<&'a str>,
    /// Unpublished versions keep their `time` entry and nothing else.
    pub unpublished: bool,
}

/// Fields of a version manifest kept in the abbreviated ("corgi") document: npm's
/// registry-side list plus what pnpm, yarn and bun read (protocol notes §1.4).
const ABBREVIATED_VERSION_FIELDS: &[&str] = &[
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "acceptDependencies",
    "bin",
    "directories",
    "dist",
    "engines",
    "funding",
    "os",
    "cpu",
    "libc",
    "license",
    "_hasShrinkwrap",
    "hasInstallScript",
];

/// Top-level fields copied from the `latest` version into the full document.
const HOISTED_FIELDS: &[&str] = &[
    "description",
    "author",
    "repository",
    "homepage",
    "bugs",
    "license",
    "keywords",
];

/// `2015-03-24T00:12:24.039Z`, the only time format npm clients expect.
pub fn iso_time(millis: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The canonical tarball URL: `{base}/{name}/-/{basename}-{version}.tgz`, where
/// `base` is the registry's absolute URL without a trailing slash.
/// Points a version's `dist` URLs at this registry: the tarball, and the attestations
/// when it has them (npm fetches them from the registry it installs from, by this
/// URL's path; an upstream's are passed through from there).
pub fn point_dist_here(dist: &mut Map<String, Value>, registry_base: &str, name: &PackageName, version: &str) {
    dist.insert(
        "tarball".into(),
        Value::String(tarball_url(registry_base, name, version)),
    );
    if let Some(Value::Object(attestations)) = dist.get_mut("attestations") {
        attestations.insert(
            "url".into(),
            Value::String(attestations_url(registry_base, name, version)),
        );
    }
}

/// Where a version's attestations are served, as the public registry spells it
/// (`/-/npm/v1/attestations/@scope%2fname@1.0.0`).
pub fn attestations_url(registry_base: &str, name: &PackageName, version: &str) -> String {
    format!(
        "{registry_base}/-/npm/v1/attestations/{}@{version}",
        name.as_str().replacen('/', "%2f", 1)
    )
}

pub fn tarball_url(registry_base: &str, name: &PackageName, version: &str) -> String {
    format!("{registry_base}/{name}/-/{}", tarball_file_name(name, version))
}

pub fn tarball_file_name(name: &PackageName, version: &str) -> String {
    format!("{}-{version}.tgz", name.basename())
}

/// The `_rev` clients echo back in `/-rev/{rev}` URLs.
pub fn rev_string(rev: i64) -> String {
    format!("{rev}-{:016x}", rev.unsigned_abs().wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Parses the number back out of a `_rev` (`"7-…"` → 7).
pub fn parse_rev(rev: &str) -> Option<i64> {
    rev.split('-').next()?.parse().ok()
}

pub struct Packuments {
    pub full: Value,
    pub abbreviated: Value,
}

/// Builds both documents. `None` when no version is live (fully unpublished).
pub fn build(record: &PackageView<'_>, registry_base: &str) -> Result<Option<Packuments>, serde_json::Error> {
    let mut live: Vec<(semver_key::Key, &VersionView<'_>)> = record
        .versions
        .iter()
        .filter(|v| !v.unpublished)
        .map(|v| (semver_key::Key::of(v.version), v))
        .collect();
    if live.is_empty() {
        return Ok(None);
    }
    live.sort_by(|a, b| a.0.cmp(&b.0));

    let mut versions = Map::new();
    let mut latest_readme: Option<(Value, Option<Value>)> = None;
    let latest = record.dist_tags.get("latest");
    for (_, stored) in &live {
        let mut manifest: Map<String, Value> = serde_json::from_str(stored.manifest)?;
        let readme = manifest.remove("readme");
        let readme_file = manifest.remove("readmeFilename");
        if latest.is_some_and(|l| l == stored.version) {
            latest_readme = readme.map(|r| (r, readme_file));
        }
        if let Some(message) = stored.deprecated {
            manifest.insert("deprecated".into(), Value::String(message.to_owned()));
        }
        let dist = manifest.entry("dist").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(dist) = dist {
            point_dist_here(dist, registry_base, record.name, stored.version);
        }
        versions.insert(stored.version.to_owned(), Value::Object(manifest));
    }

    let mut time = Map::new();
    time.insert("created".into(), Value::String(iso_time(record.created_at)));
    time.insert("modified".into(), Value::String(iso_time(record.modified_at)));
    // Unpublished versions keep their `time` entry, as on the public registry.
    for stored in &record.versions {
        time.insert(stored.version.to_owned(), Value::String(iso_time(stored.published_at)));
    }
    let maintainers: Vec<Value> = record
        .maintainers
        .iter()
        .map(|m| json!({ "name": m.name, "email": m.email.clone().unwrap_or_default() }))
        .collect();

    let mut full = Map::new();
    full.insert("_id".into(), Value::String(record.name.to_string()));
    full.insert("_rev".into(), Value::String(rev_string(record.rev)));
    full.insert("name".into(), Value::String(record.name.to_string()));
    if let Some(Value::Object(latest_manifest)) = latest.and_then(|v| versions.get(v)) {
        for field in HOISTED_FIELDS {
            if let Some(value) = latest_manifest.get(*field) {
                full.insert((*field).to_owned(), value.clone());
            }
        }
    }
    let mut dist_tags = json!(record.dist_tags);
    // Versions only pulled from an upstream carry no tags of their own; served alone
    // (a frozen registry asks no upstream), `latest` is the highest stable one.
    if !record.dist_tags.contains_key("latest")
        && let (Value::Object(tags), Some(latest)) = (&mut dist_tags, super::merge::highest_stable(&versions))
    {
        tags.insert("latest".into(), Value::String(latest));
    }
    full.insert("dist-tags".into(), dist_tags);
    full.insert("versions".into(), Value::Object(versions));
    full.insert("time".into(), Value::Object(time.clone()));
    full.insert("maintainers".into(), Value::Array(maintainers));
    if let Some((readme, readme_file)) = latest_readme {
        full.insert("readme".into(), readme);
        if let Some(file) = readme_file {
            full.insert("readmeFilename".into(), file);
        }
    }
    full.insert("_attachments".into(), Value::Object(Map::new()));

    let full = Value::Object(full);
    let abbreviated = abbreviate(&full);
    Ok(Some(Packuments { full, abbreviated }))
}

/// The abbreviated ("corgi") document of a full one: install fields only, plus
/// `time` (not in npm's format, but cheap, and pnpm/bun release-age gates use it).
pub fn abbreviate(full: &Value) -> Value {
    let abbreviated_versions = |versions: Option<&Value>| -> Map<String, Value> {
        versions
            .and_then(Value::as_object)
            .map(|versions| {
                versions
                    .iter()
                    .map(|(version, manifest)| {
                        let fields: Map<String, Value> = ABBREVIATED_VERSION_FIELDS
                            .iter()
                            .filter_map(|field| manifest.get(*field).map(|v| ((*field).to_owned(), v.clone())))
                            .collect();
                        (version.clone(), Value::Object(fields))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = abbreviated_versions(full.get("versions"));
    let mut abbreviated = Map::new();
    abbreviated.insert("name".into(), full.get("name").cloned().unwrap_or(Value::Null));
    // Absent rather than null when unknown: bun refuses a document whose `modified` is null.
    if let Some(modified) = full
        .get("time")
        .and_then(|t| t.get("modified"))
        .filter(|m| m.is_string())
    {
        abbreviated.insert("modified".into(), modified.clone());
    }
    abbreviated.insert(
        "dist-tags".into(),
        full.get("dist-tags").cloned().unwrap_or_else(|| json!({})),
    );
    abbreviated.insert("versions".into(), Value::Object(versions));
    abbreviated.insert("time".into(), full.get("time").cloned().unwrap_or_else(|| json!({})));
    // npm reads it from either document (see `withhold`).
    if let Some(restrictions) = full.get("policyRestrictions") {
        abbreviated.insert(
            "policyRestrictions".into(),
            json!({
                "versions": abbreviated_versions(restrictions.get("versions")),
                "message": restrictions.get("message").cloned().unwrap_or(Value::Null),
            }),
        );
    }
    Value::Object(abbreviated)
}

/// Orders version strings by semver precedence; unparsable ones sort first, by text.
pub mod semver_key {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    pub enum Key {
        Invalid(String),
        Valid(semver::Version, String),
    }

    impl Key {
        pub fn of(raw: &str) -> Key {
            match semver::Version::parse(raw) {
                Ok(v) => Key::Valid(v, raw.to_owned()),
                Err(_) => Key::Invalid(raw.to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows a test package is built from; `view` borrows them.
    struct Rows {
        name: PackageName,
        dist_tags: BTreeMap<String, String>,
        maintainers: Vec<Maintainer>,
        versions: Vec<(&'static str, String, Option<&'static str>, bool)>,
    }

    impl Rows {
        fn view(&self) -> PackageView<'_> {
            PackageView {
                name: &self.name,
                rev: 3,
                created_at: 1_600_000_000_000,
                modified_at: 1_700_000_000_000,
                dist_tags: &self.dist_tags,
                maintainers: &self.maintainers,
                versions: self
                    .versions
                    .iter()
                    .map(|(version, manifest, deprecated, unpublished)| VersionView {
                        version,
                        manifest,
                        published_at: 1_700_000_000_000,
                        deprecated: *deprecated,
                        unpublished: *unpublished,
                    })
                    .collect(),
            }
        }
    }

    fn manifest(v: &str) -> String {
        json!({
            "name": "@acme/lib", "version": v, "description": format!("desc {v}"),
            "readme": format!("readme {v}"), "scripts": {"test": "x"},
            "dependencies": {"a": "^1"}, "dist": {"integrity": "sha512-x", "shasum": "y"}
        })
        .to_string()
    }

    fn record() -> Rows {
        Rows {
            name: PackageName::parse("@acme/lib").expect("valid"),
            dist_tags: BTreeMap::from([("latest".to_owned(), "1.10.0".to_owned())]),
            maintainers: vec![Maintainer {
                name: "alice".into(),
                email: None,
            }],
            versions: vec![
                ("1.10.0", manifest("1.10.0"), None, false),
                ("1.2.0", manifest("1.2.0"), Some("use 1.10"), false),
                ("0.1.0", manifest("0.1.0"), None, true),
            ],
        }
    }

    #[test]
    fn full_document_has_sorted_versions_rewritten_tarballs_and_complete_time() {
        let docs = build(&record().view(), "http://h/r/x").expect("builds").expect("live");
        let full = &docs.full;
        let keys: Vec<&String> = full["versions"].as_object().expect("obj").keys().collect();
        assert_eq!(keys, ["1.2.0", "1.10.0"]);
        assert_eq!(
            full["versions"]["1.10.0"]["dist"]["tarball"],
            "http://h/r/x/@acme/lib/-/lib-1.10.0.tgz"
        );
        assert_eq!(full["versions"]["1.2.0"]["deprecated"], "use 1.10");
        assert!(full["versions"]["1.2.0"].get("readme").is_none());
        assert_eq!(full["readme"], "readme 1.10.0");
        assert_eq!(full["description"], "desc 1.10.0");
        assert_eq!(full["time"]["0.1.0"], "2023-11-14T22:13:20.000Z");
        assert_eq!(full["_rev"].as_str().map(parse_rev), Some(Some(3)));
    }

    #[test]
    fn abbreviated_document_keeps_install_fields_only() {
        let docs = build(&record().view(), "http://h/r/x").expect("builds").expect("live");
        let v = &docs.abbreviated["versions"]["1.10.0"];
        assert_eq!(v["dependencies"]["a"], "^1");
        assert!(v.get("scripts").is_none());
        assert!(v.get("description").is_none());
        assert_eq!(docs.abbreviated["modified"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn abbreviated_document_without_a_modified_time_has_no_modified_field() {
        let full = json!({"name": "a", "dist-tags": {}, "versions": {}, "time": {"1.0.0": "2020-01-01T00:00:00.000Z"}});
        assert!(abbreviate(&full).get("modified").is_none());
    }

    #[test]
    fn fully_unpublished_package_has_no_document() {
        let mut r = record();
        for v in &mut r.versions {
            v.3 = true;
        }
        assert!(build(&r.view(), "http://h/r/x").expect("builds").is_none());
    }
}
