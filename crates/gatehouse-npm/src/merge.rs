//! Merging a package's local document with its upstreams' documents.
//!
//! Rules (also in ARCHITECTURE.md):
//! - versions: local versions win; then each upstream in order adds the versions
//!   nobody before it had. Upstream manifests pass through unchanged except
//!   `dist.tarball`, which points at this registry. Entries whose name or version
//!   disagree with the package are dropped (bad input from an upstream).
//! - dist-tags: the first upstream that has a tag wins among upstreams; local tags
//!   override them; tags pointing at versions that aren't in the merge are dropped,
//!   and `latest` falls back to the highest stable version.
//! - time: the union; for a version, local wins, then the first upstream;
//!   `created` is the earliest and `modified` the latest of all (of the version
//!   times when no document has them).
//! - the other top-level fields (readme, description, maintainers, …) come from the
//!   document that owns `latest`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::name::PackageName;
use super::packument::{point_dist_here, semver_key};

/// A version offered by an upstream and not held here yet.
#[derive(Debug, Clone)]
pub struct RemoteVersion {
    /// Index into the upstream list the merge was given.
    pub source: usize,
    /// Where the upstream said the tarball is. (The manifest itself is in the merged
    /// document, as served; it is not kept twice.)
    pub tarball: Option<String>,
    /// `time[version]` as the upstream sent it.
    pub published: Option<String>,
}

pub struct Merged {
    pub full: Value,
    pub remote: HashMap<String, RemoteVersion>,
}

/// `local` is the local full document (tarball URLs already ours) and whether the
/// local package has dist-tags of its own; `upstreams` are full upstream documents.
pub fn merge(
    name: &PackageName,
    registry_base: &str,
    local: Option<(&Value, bool)>,
    upstreams: &[&Value],
) -> Option<Merged> {
    let mut versions = Map::new();
    let mut owner: HashMap<String, Option<usize>> = HashMap::new();
    if let Some((doc, _)) = local
        && let Some(local_versions) = doc.get("versions").and_then(Value::as_object)
    {
        for (version, manifest) in local_versions {
            versions.insert(version.clone(), manifest.clone());
            owner.insert(version.clone(), None);
        }
    }
    let mut remote = HashMap::new();
    for (index, doc) in upstreams.iter().enumerate() {
        let Some(offered) = doc.get("versions").and_then(Value::as_object) else {
            continue;
        };
        for (version, manifest) in offered {
            if versions.contains_key(version) {
                continue;
            }
            let Some(manifest) = acceptable(name, version, manifest) else {
                tracing::debug!(pkg.name = %name, pkg.version = %version, "dropping an inconsistent upstream version");
                continue;
            };
            let mut served = manifest.clone();
            let original = served
                .get("dist")
                .and_then(|d| d.get("tarball"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(Value::Object(dist)) = served.get_mut("dist") {
                point_dist_here(dist, registry_base, name, version);
            }
            remote.insert(
                version.clone(),
                RemoteVersion {
                    source: index,
                    tarball: original,
                    published: doc
                        .get("time")
                        .and_then(|t| t.get(version))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
            );
            versions.insert(version.clone(), Value::Object(served));
            owner.insert(version.clone(), Some(index));
        }
    }
    if versions.is_empty() {
        return None;
    }

    let mut tags = Map::new();
    for doc in upstreams.iter().rev() {
        if let Some(upstream_tags) = doc.get("dist-tags").and_then(Value::as_object) {
            tags.extend(upstream_tags.clone());
        }
    }
    if let Some((doc, true)) = local
        && let Some(local_tags) = doc.get("dist-tags").and_then(Value::as_object)
    {
        tags.extend(local_tags.clone());
    }
    tags.retain(|_, v| v.as_str().is_some_and(|v| versions.contains_key(v)));
    if !tags.contains_key("latest")
        && let Some(latest) = highest_stable(&versions)
    {
        tags.insert("latest".into(), Value::String(latest));
    }

    let mut time = Map::new();
    let sources = upstreams.iter().rev().copied().chain(local.map(|(doc, _)| doc));
    let (mut created, mut modified): (Option<String>, Option<String>) = (None, None);
    for doc in sources {
        let Some(doc_time) = doc.get("time").and_then(Value::as_object) else {
            continue;
        };
        for (key, value) in doc_time {
            let Some(text) = value.as_str() else { continue };
            match key.as_str() {
                "created" => created = min_time(created, text),
                "modified" => modified = max_time(modified, text),
                _ => {
                    time.insert(key.clone(), value.clone());
                }
            }
        }
    }
    // Some registries (mirrors) send version times only. Clients expect both summary
    // times (bun refuses an abbreviated document without `modified`): derive them.
    let version_times = || time.values().filter_map(Value::as_str);
    let created = created.or_else(|| version_times().fold(None, min_time));
    let modified = modified.or_else(|| version_times().fold(None, max_time));
    if let Some(created) = created {
        time.insert("created".into(), Value::String(created));
    }
    if let Some(modified) = modified {
        time.insert("modified".into(), Value::String(modified));
    }

    let latest_owner = tags
        .get("latest")
        .and_then(Value::as_str)
        .and_then(|v| owner.get(v).copied());
    let metadata_source = match (latest_owner, local) {
        (Some(None), Some((doc, _))) => Some(doc),
        (Some(Some(index)), _) => upstreams.get(index).copied(),
        _ => local.map(|(doc, _)| doc).or_else(|| upstreams.first().copied()),
    };
    let mut full = Map::new();
    full.insert("_id".into(), Value::String(name.to_string()));
    full.insert("name".into(), Value::String(name.to_string()));
    if let Some(source) = metadata_source.and_then(Value::as_object) {
        for (key, value) in source {
            let own = matches!(
                key.as_str(),
                "_id" | "_rev" | "name" | "versions" | "dist-tags" | "time" | "_attachments" | "users"
            );
            if !own && !key.starts_with('_') {
                full.insert(key.clone(), value.clone());
            }
        }
    }
    let mut ordered: Vec<(String, Value)> = versions.into_iter().collect();
    ordered.sort_by(|a, b| semver_key::Key::of(&a.0).cmp(&semver_key::Key::of(&b.0)));
    full.insert("dist-tags".into(), Value::Object(tags));
    full.insert("versions".into(), Value::Object(ordered.into_iter().collect()));
    full.insert("time".into(), Value::Object(time));
    full.insert("_attachments".into(), json!({}));
    Some(Merged {
        full: Value::Object(full),
        remote,
    })
}

/// An upstream version entry we can serve: an object whose name and version match.
/// Old packages carry versions that aren't strict semver (`1.0.0beta`); they pass
/// through as long as they are safe in a URL path.
fn acceptable<'a>(name: &PackageName, version: &str, manifest: &'a Value) -> Option<&'a Map<String, Value>> {
    let manifest = manifest.as_object()?;
    let safe_version = !version.is_empty()
        && version.len() <= 256
        && !version.contains("..")
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    let consistent = safe_version
        && manifest.get("name").and_then(Value::as_str) == Some(name.as_str())
        && manifest.get("version").and_then(Value::as_str) == Some(version);
    consistent.then_some(manifest)
}

/// The highest stable version (the highest of all when none is stable): what `latest`
/// falls back to.
pub(crate) fn highest_stable(versions: &Map<String, Value>) -> Option<String> {
    let parsed = versions
        .keys()
        .filter_map(|v| semver::Version::parse(v).ok().map(|p| (p, v)));
    let stable = parsed
        .clone()
        .filter(|(p, _)| p.pre.is_empty())
        .max_by(|a, b| a.0.cmp(&b.0));
    stable
        .or_else(|| parsed.max_by(|a, b| a.0.cmp(&b.0)))
        .map(|(_, v)| v.clone())
}

/// ISO-8601 times compare as text once normalised to UTC; compare parsed when possible.
fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

fn min_time(current: Option<String>, candidate: &str) -> Option<String> {
    match current {
        Some(c) if parse_time(&c) <= parse_time(candidate) => Some(c),
        _ => Some(candidate.to_owned()),
    }
}

fn max_time(current: Option<String>, candidate: &str) -> Option<String> {
    match current {
        Some(c) if parse_time(&c) >= parse_time(candidate) => Some(c),
        _ => Some(candidate.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> PackageName {
        PackageName::parse("corp-utils").unwrap()
    }

    fn doc(versions: &[&str], latest: &str, tarball_host: &str) -> Value {
        let mut v = Map::new();
        let mut time = Map::new();
        for version in versions {
            v.insert(
                (*version).to_owned(),
                json!({"name": "corp-utils", "version": version, "dist": {
                    "tarball": format!("{tarball_host}/corp-utils/-/corp-utils-{version}.tgz"),
                    "integrity": "sha512-x", "signatures": [{"keyid": "k", "sig": "s"}]},
                    "_npmUser": {"name": "pub", "trustedPublisher": {"id": "github"}}}),
            );
            time.insert(
                (*version).to_owned(),
                json!(format!("2020-01-0{}T00:00:00.000Z", version.len() % 9)),
            );
        }
        time.insert("created".into(), json!("2019-01-01T00:00:00.000Z"));
        time.insert("modified".into(), json!("2021-01-01T00:00:00.000Z"));
        json!({"name": "corp-utils", "readme": format!("from {tarball_host}"), "dist-tags": {"latest": latest},
               "versions": v, "time": time})
    }

    #[test]
    fn local_versions_win_and_upstream_fields_pass_through() {
        let local = doc(&["1.0.0"], "1.0.0", "http://us");
        let up = doc(&["1.0.0", "2.0.0"], "2.0.0", "http://up");
        let merged = merge(&name(), "http://us/r/x", Some((&local, true)), &[&up]).unwrap();
        let full = &merged.full;
        assert_eq!(
            full["versions"]["1.0.0"]["dist"]["tarball"],
            "http://us/corp-utils/-/corp-utils-1.0.0.tgz"
        );
        assert_eq!(
            full["versions"]["2.0.0"]["dist"]["tarball"],
            "http://us/r/x/corp-utils/-/corp-utils-2.0.0.tgz"
        );
        assert_eq!(full["versions"]["2.0.0"]["dist"]["signatures"][0]["sig"], "s");
        assert_eq!(
            full["versions"]["2.0.0"]["_npmUser"]["trustedPublisher"]["id"],
            "github"
        );
        assert_eq!(full["dist-tags"]["latest"], "1.0.0", "local tags win");
        assert_eq!(full["readme"], "from http://us");
        assert!(merged.remote.contains_key("2.0.0") && !merged.remote.contains_key("1.0.0"));
        assert_eq!(
            merged.remote["2.0.0"].tarball.as_deref(),
            Some("http://up/corp-utils/-/corp-utils-2.0.0.tgz")
        );
    }

    #[test]
    fn pulled_only_packages_look_like_the_upstream() {
        let local = doc(&["1.0.0"], "1.0.0", "http://us");
        let up = doc(&["1.0.0", "2.0.0"], "2.0.0", "http://up");
        let merged = merge(&name(), "http://us/r/x", Some((&local, false)), &[&up]).unwrap();
        assert_eq!(merged.full["dist-tags"]["latest"], "2.0.0");
        assert_eq!(merged.full["readme"], "from http://up");
        assert_eq!(merged.full["time"]["created"], "2019-01-01T00:00:00.000Z");
    }

    #[test]
    fn inconsistent_upstream_entries_are_dropped() {
        let mut up = doc(&["1.0.0", "2.0.0"], "2.0.0", "http://up");
        up["versions"]["2.0.0"]["name"] = json!("evil");
        up["versions"]["3.0.0-x!"] = json!({"name": "corp-utils", "version": "3.0.0-x!"});
        up["versions"]["../../x"] = json!({"name": "corp-utils", "version": "../../x"});
        up["versions"]["0.9.0beta"] = json!({"name": "corp-utils", "version": "0.9.0beta"});
        let merged = merge(&name(), "http://us/r/x", None, &[&up]).unwrap();
        let versions: Vec<&String> = merged.full["versions"].as_object().unwrap().keys().collect();
        assert_eq!(versions, ["0.9.0beta", "1.0.0"]);
        assert_eq!(merged.full["dist-tags"]["latest"], "1.0.0", "latest falls back");
    }

    #[test]
    fn summary_times_are_derived_when_the_upstream_sends_version_times_only() {
        let mut up = doc(&["1.0.0", "1.10.0"], "1.10.0", "http://up");
        let time = up["time"].as_object_mut().unwrap();
        time.remove("created");
        time.remove("modified");
        // Mirrors write microseconds and an offset; the order is by instant, not text.
        time.insert("1.0.0".into(), json!("2020-01-01T00:00:00.000000+00:00"));
        time.insert("1.10.0".into(), json!("2020-06-01T00:00:00.000Z"));
        let merged = merge(&name(), "http://us/r/x", None, &[&up]).unwrap();
        assert_eq!(merged.full["time"]["created"], "2020-01-01T00:00:00.000000+00:00");
        assert_eq!(merged.full["time"]["modified"], "2020-06-01T00:00:00.000Z");
    }

    #[test]
    fn first_upstream_wins_between_upstreams() {
        let a = doc(&["1.0.0"], "1.0.0", "http://a");
        let b = doc(&["1.0.0", "1.1.0"], "1.1.0", "http://b");
        let merged = merge(&name(), "http://us/r/x", None, &[&a, &b]).unwrap();
        assert_eq!(merged.remote["1.0.0"].source, 0);
        assert_eq!(merged.remote["1.1.0"].source, 1);
        assert_eq!(merged.full["dist-tags"]["latest"], "1.0.0");
        assert!(merge(&name(), "http://us/r/x", None, &[]).is_none());
    }
}
