//! Pulling a tarball from an upstream into a registry, on first download.
//!
//! The bytes are fetched whole (within the size and time limits), checked against
//! the upstream's `dist.integrity`/`shasum` before a single byte is served, and
//! admitted like a publish (source `upstream:…`). A mismatch is refused and nothing
//! is stored. Concurrent downloads of one version share one pull.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::Source;
use super::client::UpstreamError;
use super::spec::origin;
use crate::admission::{self, AdmissionError, Candidate, Origin};
use crate::app::App;
use crate::npm::integrity::{self, Digests};
use crate::npm::name::PackageName;
use crate::npm::version::Version;
use crate::packument_cache::{CacheError, RemoteTarball};
use crate::store::blobs::BlobKey;
use crate::store::{BlobRef, Registry};

#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("version not found")]
    NotFound,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream's bytes or metadata are unacceptable; nothing was stored.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

impl From<CacheError> for PullError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Absent => PullError::NotFound,
            other => PullError::Internal(other.to_string()),
        }
    }
}

/// Registry upstream chains are followed this deep when pulling.
const MAX_CHAIN: u8 = 4;

/// The blob of `name@version` in `registry`, pulling it from an upstream if needed.
pub async fn ensure_local(
    app: &App,
    registry: &Registry,
    name: &PackageName,
    version: &str,
) -> Result<BlobRef, PullError> {
    ensure_at_depth(app, registry, name, version, 0).await
}

fn ensure_at_depth<'a>(
    app: &'a App,
    registry: &'a Registry,
    name: &'a PackageName,
    version: &'a str,
    depth: u8,
) -> futures_util::future::BoxFuture<'a, Result<BlobRef, PullError>> {
    Box::pin(async move {
        let prepared = app.packuments.get(registry, name).await?;
        if let Some(blob) = prepared.tarballs.get(version) {
            return Ok(blob.clone());
        }
        let offered = prepared.remote.get(version).ok_or(PullError::NotFound)?;
        let key = (registry.id, name.clone(), version.to_owned());
        let result = app
            .pulls
            .try_get_with(key, async {
                pull(app, registry, name, version, offered, depth).await.map(Arc::new)
            })
            .await
            .map(|blob| (*blob).clone())
            .map_err(|e| (*e).clone());
        // Don't keep failures around: the next request may succeed.
        if result.is_err() {
            app.pulls
                .invalidate(&(registry.id, name.clone(), version.to_owned()))
                .await;
        }
        result
    })
}

async fn pull(
    app: &App,
    registry: &Registry,
    name: &PackageName,
    version: &str,
    offered: &RemoteTarball,
    depth: u8,
) -> Result<BlobRef, PullError> {
    let bytes = match &offered.source {
        Source::Remote { remote, label, .. } => {
            let fetcher = &app.upstreams.fetcher;
            if fetcher.is_suspended(remote.id) {
                return Err(UpstreamError::CircuitOpen(label.clone()).into());
            }
            let url = match offered.version.tarball.as_deref() {
                Some(url) => url.to_owned(),
                None => format!("{}{}/-/{}-{version}.tgz", remote.base, name, name.basename()),
            };
            // Only fetch from the upstream's own origin: a packument must not be able
            // to send us to another host (or an internal address).
            if origin(&url) != origin(&remote.base) {
                return Err(PullError::Refused(format!(
                    "upstream {label} lists a tarball on another host ({url}); refused"
                )));
            }
            let result = app.upstreams.client.tarball(&url, &remote.auth).await;
            match &result {
                Ok(_) => fetcher.note_success(remote.id),
                Err(e) => fetcher.note_failure(remote.id, e),
            }
            result?
        }
        Source::Registry(other) => {
            if depth >= MAX_CHAIN {
                return Err(PullError::Refused("registry upstream chain too deep".into()));
            }
            let other_registry = app
                .meta
                .registry(other)
                .await
                .map_err(|e| PullError::Internal(e.to_string()))?
                .ok_or(PullError::NotFound)?;
            let blob = ensure_at_depth(app, &other_registry, name, version, depth + 1).await?;
            read_blob(app, &blob).await?
        }
    };
    let check = bytes.clone();
    let digests = tokio::task::spawn_blocking(move || Digests::of(&check))
        .await
        .map_err(|e| PullError::Internal(e.to_string()))?;
    let manifest = &offered.version.manifest;
    let dist = manifest.get("dist").and_then(Value::as_object);
    integrity::verify_declared(
        &digests,
        dist.and_then(|d| d.get("integrity")).and_then(Value::as_str),
        dist.and_then(|d| d.get("shasum")).and_then(Value::as_str),
    )
    .map_err(|e| {
        tracing::warn!(upstream = %offered.source.label(), pkg.name = %name, pkg.version = version, error = %e, "upstream tarball refused");
        PullError::Refused(format!("upstream {} served a bad tarball for {name}@{version}: {e}", offered.source.label()))
    })?;
    let version_parsed = Version::parse(version).map_err(|e| PullError::Refused(e.to_string()))?;
    let mut manifest = manifest.clone();
    if let Some(Value::Object(dist)) = manifest.get_mut("dist") {
        dist.remove("tarball");
    }
    let published_at = offered
        .version
        .published
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let blob = BlobRef {
        sha512_hex: digests.sha512_hex(),
        size: bytes.len() as u64,
    };
    let admitted = admission::admit(
        app,
        Candidate {
            registry,
            name: name.clone(),
            version: version_parsed,
            manifest,
            tarball: bytes,
            digests,
            tags: Vec::new(),
            publisher: None,
            origin: Origin::Upstream {
                label: offered.source.label(),
                published_at,
            },
            client_addr: None,
        },
    )
    .await;
    match admitted {
        // Someone else pulled (or published) it meanwhile: same version, fine.
        Ok(_) | Err(AdmissionError::VersionExists(_)) => Ok(blob),
        Err(AdmissionError::Rejected(why)) => Err(PullError::Refused(format!(
            "upstream version {name}@{version} refused: {why}"
        ))),
        Err(e) => Err(PullError::Internal(e.to_string())),
    }
}

async fn read_blob(app: &App, blob: &BlobRef) -> Result<Bytes, PullError> {
    let key = BlobKey::parse_hex(&blob.sha512_hex).map_err(|e| PullError::Internal(e.to_string()))?;
    app.blobs
        .read(&key)
        .await
        .map_err(|e| PullError::Internal(e.to_string()))?
        .ok_or_else(|| PullError::Internal(format!("blob {} is missing", blob.sha512_hex)))
}
