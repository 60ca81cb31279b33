//! The package page: README, versions with their status (served, quarantined,
//! blocked, deprecated; where they came from, who published them and when),
//! dist-tags, dependencies, license, install commands, provenance, and what the
//! firewall found. Read from the same prepared document the npm routes serve.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use gatehouse_store::registry::Role;

use super::registries::RegistryHead;
use super::{Nav, UiError, UiResult, Viewer, render, when};
use crate::app::App;
use crate::packument_cache::Prepared;

/// Versions listed on the page, newest first; the rest are counted.
const SHOWN_VERSIONS: usize = 200;

struct VersionRow {
    version: String,
    /// served | quarantined | blocked | deprecated
    status: &'static str,
    /// Why it is not served, or the deprecation message, or a warning.
    detail: String,
    source: String,
    publisher: String,
    published: String,
    provenance: bool,
}

/// Who published the version shown, and how.
struct Publisher {
    name: String,
    /// A trusted publish: the CI run (`repository`, `workflow`, `ref`, `run`).
    run: Vec<(&'static str, String)>,
}

struct Provenance {
    predicate: String,
    url: String,
}

#[derive(Template)]
#[template(path = "ui/package.html")]
struct PackagePage {
    nav: Nav,
    head: RegistryHead,
    name: String,
    /// The version the sidebar describes (`?version=`, else `latest`).
    shown: String,
    description: String,
    license: String,
    deprecated: Option<String>,
    dist_tags: Vec<(String, String)>,
    versions: Vec<VersionRow>,
    more_versions: usize,
    dependencies: Vec<(String, String)>,
    installs: Vec<(&'static str, String)>,
    publisher: Option<Publisher>,
    provenance: Option<Provenance>,
    /// Sanitised HTML (see `crate::readme`).
    readme: Option<Arc<str>>,
    stale: bool,
}

impl PackagePage {
    fn version_href(&self, version: &str) -> String {
        format!(
            "/-/ui/r/{}/p/{}?version={}",
            self.head.name,
            super::package_path(&self.name),
            percent_encoding::utf8_percent_encode(version, percent_encoding::NON_ALPHANUMERIC)
        )
    }
}

#[derive(Deserialize, Default)]
pub struct PackageQuery {
    version: Option<String>,
}

/// `GET /-/ui/r/{registry}/p/{name}`
pub async fn page(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((registry, name)): Path<(String, String)>,
    Query(query): Query<PackageQuery>,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &registry, Role::Read).await?;
    let not_found = || {
        UiError::Refused(
            StatusCode::NOT_FOUND,
            format!("There is no package \"{name}\" in registry \"{}\".", registry.name),
        )
    };
    let package = PackageName::parse(&name).map_err(|_| not_found())?;
    let prepared = app.packuments.get(&registry, &package).await?;
    if prepared.documents.is_none() && prepared.policy.withheld.is_empty() {
        return Err(not_found());
    }
    let etag = prepared.documents.as_ref().map(|d| d.full.etag.clone());
    let doc = {
        let prepared = Arc::clone(&prepared);
        tokio::task::spawn_blocking(move || full_document(&prepared))
            .await
            .map_err(|e| UiError::Api(crate::http::error::ApiError::Internal(e.into())))??
    };
    let readme = match (etag, doc.get("readme").and_then(Value::as_str)) {
        (Some(etag), Some(text)) if !text.trim().is_empty() => {
            let key = format!("{}:{etag}", registry.name);
            Some(app.readmes.html(&key, text.to_owned()).await)
        }
        _ => None,
    };
    let head = RegistryHead::new(&app, &registry, role, "Packages");
    Ok(render(&describe(
        viewer.nav(),
        head,
        &package,
        &prepared,
        &doc,
        query.version,
        readme,
    )))
}

/// The served full document, parsed (empty when nothing is served).
fn full_document(prepared: &Prepared) -> Result<Map<String, Value>, crate::packument_cache::CacheError> {
    let Some(documents) = &prepared.documents else {
        return Ok(Map::new());
    };
    let json = documents.full.json()?;
    serde_json::from_slice(&json).map_err(|e| crate::packument_cache::CacheError::Build(e.to_string()))
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

fn describe(
    nav: Nav,
    head: RegistryHead,
    package: &PackageName,
    prepared: &Prepared,
    doc: &Map<String, Value>,
    asked: Option<String>,
    readme: Option<Arc<str>>,
) -> PackagePage {
    let empty = Map::new();
    let versions = doc.get("versions").and_then(Value::as_object).unwrap_or(&empty);
    let times = doc.get("time").and_then(Value::as_object).unwrap_or(&empty);
    let latest = prepared.dist_tags.get("latest").cloned();
    let shown = asked
        .filter(|v| versions.contains_key(v))
        .or(latest)
        .or_else(|| versions.keys().next_back().cloned())
        .unwrap_or_default();
    let manifest = versions.get(&shown).and_then(Value::as_object).unwrap_or(&empty);

    let mut rows: Vec<(Option<Version>, VersionRow)> = Vec::new();
    for (version, manifest) in versions {
        let manifest = manifest.as_object().unwrap_or(&empty);
        let deprecated = manifest
            .get("deprecated")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty());
        let warning = prepared.policy.warnings.get(version);
        let held = prepared
            .local
            .as_ref()
            .and_then(|l| l.versions.iter().find(|v| v.version == *version));
        let source = match (held, prepared.remote.get(version)) {
            (Some(record), _) => held_source(&record.source),
            (None, Some(remote)) => format!("offered by {}", remote.source.label()),
            (None, None) => String::new(),
        };
        let row = VersionRow {
            version: version.clone(),
            status: if deprecated.is_some() { "deprecated" } else { "served" },
            detail: deprecated
                .map(str::to_owned)
                .or_else(|| warning.cloned())
                .unwrap_or_default(),
            source,
            publisher: manifest
                .get("_npmUser")
                .map(|u| text(u.get("name")))
                .unwrap_or_default(),
            published: times
                .get(version)
                .and_then(Value::as_str)
                .map(iso_to_when)
                .unwrap_or_default(),
            provenance: manifest.get("dist").and_then(|d| d.get("attestations")).is_some(),
        };
        rows.push((Version::parse(version).ok(), row));
    }
    for (version, withheld) in &prepared.policy.withheld {
        let row = &withheld.row;
        let published = prepared
            .policy
            .candidates
            .iter()
            .find(|c| &c.version == version)
            .and_then(|c| c.published_at)
            .map(when)
            .unwrap_or_default();
        let rule = row.rule.clone().unwrap_or_default();
        rows.push((
            Version::parse(version).ok(),
            VersionRow {
                version: version.clone(),
                status: if row.verdict == "quarantine" {
                    "quarantined"
                } else {
                    "blocked"
                },
                detail: if rule.is_empty() {
                    row.reason.clone()
                } else {
                    format!("{rule}: {}", row.reason)
                },
                source: String::new(),
                publisher: String::new(),
                published,
                provenance: false,
            },
        ));
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    let more_versions = rows.len().saturating_sub(SHOWN_VERSIONS);
    let versions_shown = rows.into_iter().take(SHOWN_VERSIONS).map(|(_, row)| row).collect();

    let publisher = manifest.get("_npmUser").and_then(Value::as_object).map(|user| {
        let mut run = Vec::new();
        if let Some(Value::Object(tp)) = user.get("trustedPublisher") {
            for (key, label) in [
                ("id", "trusted publisher"),
                ("repository", "repository"),
                ("workflow", "workflow"),
                ("ref", "ref"),
                ("sha", "commit"),
                ("run_id", "run"),
                ("environment", "environment"),
            ] {
                if let Some(value) = tp.get(key).and_then(Value::as_str) {
                    run.push((label, value.to_owned()));
                }
            }
        }
        Publisher {
            name: text(user.get("name")),
            run,
        }
    });
    let provenance = manifest
        .get("dist")
        .and_then(|d| d.get("attestations"))
        .and_then(Value::as_object)
        .map(|a| Provenance {
            predicate: a
                .get("provenance")
                .and_then(|p| p.get("predicateType"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            url: a.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
        });
    let dependencies = manifest
        .get("dependencies")
        .and_then(Value::as_object)
        .map(|deps| deps.iter().map(|(k, v)| (k.clone(), text(Some(v)))).collect())
        .unwrap_or_default();
    let name = package.to_string();
    let spec = if shown.is_empty() {
        name.clone()
    } else {
        format!("{name}@{shown}")
    };
    PackagePage {
        nav,
        head,
        installs: vec![
            ("npm", format!("npm install {spec}")),
            ("pnpm", format!("pnpm add {spec}")),
            ("Yarn", format!("yarn add {spec}")),
            ("Bun", format!("bun add {spec}")),
        ],
        description: text(manifest.get("description").or_else(|| doc.get("description"))),
        license: text(manifest.get("license")),
        deprecated: manifest
            .get("deprecated")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        dist_tags: prepared.dist_tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        versions: versions_shown,
        more_versions,
        dependencies,
        publisher,
        provenance,
        readme,
        stale: prepared.stale,
        shown,
        name,
    }
}

/// Where a held version came from, from its recorded source.
fn held_source(source: &str) -> String {
    match source.split_once(':') {
        Some(("upstream", label)) => format!("pulled from {label}"),
        Some(("promotion", from)) => format!("promoted from {from}"),
        Some(("import", from)) => format!("imported from {from}"),
        _ => "published here".to_owned(),
    }
}

/// An ISO time from a packument, as the page shows times.
fn iso_to_when(iso: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(iso).map_or_else(|_| iso.to_owned(), |t| when(t.timestamp_millis()))
}
