//! Pushing a version to one of the registry's upstreams: to another registry of
//! this server (promotion, e.g. `dev` → `prod`: same bytes, same integrity, through
//! the target's admission), or to a remote npm registry (a publish, with the
//! upstream's stored credentials).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use gatehouse_npm::integrity::Digests;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use gatehouse_store::blobs::{BlobKey, Blobs};
use gatehouse_store::{AuditAction, AuditEntry, Meta, Registry};
use serde_json::{Value, json};

use super::client::UpstreamError;
use super::pull::Pulls;
use super::spec::UpstreamSpec;
use super::{Source, Upstreams};
use crate::admission::{Admission, AdmissionError, Attestations, Candidate, Origin};
use crate::packument_cache::{self, PackumentCache};
use crate::services::Actor;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the target refused the version: {0}")]
    Refused(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Storage failed; the cause is kept for the log.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

/// Pushes versions to registries' upstreams.
pub struct Promotion {
    meta: Meta,
    blobs: Blobs,
    packuments: PackumentCache,
    upstreams: Arc<Upstreams>,
    pulls: Arc<Pulls>,
    admission: Arc<Admission>,
}

impl Promotion {
    pub fn new(
        meta: Meta,
        blobs: Blobs,
        packuments: PackumentCache,
        upstreams: Arc<Upstreams>,
        pulls: Arc<Pulls>,
        admission: Arc<Admission>,
    ) -> Self {
        Promotion {
            meta,
            blobs,
            packuments,
            upstreams,
            pulls,
            admission,
        }
    }

    /// Copies `name@version` from `from` to its upstream `to` (as written in the
    /// registry's upstream list: `registry:prod`, a URL, `npmjs`). Returns a summary.
    pub async fn push(
        &self,
        from: &Registry,
        name: &PackageName,
        version: &Version,
        to: &str,
        actor: &Actor,
    ) -> Result<String, PushError> {
        let spec = UpstreamSpec::parse(to).map_err(|e| PushError::Invalid(e.to_string()))?;
        let row = self
            .meta
            .upstreams(from.id)
            .await
            .map_err(|e| PushError::Internal(e.into()))?
            .into_iter()
            .find(|row| UpstreamSpec::parse(&row.spec).is_ok_and(|s| s == spec))
            .ok_or_else(|| PushError::Invalid(format!("{spec} is not an upstream of registry {}", from.name)))?;
        let blob = self
            .pulls
            .ensure_local(from, name, version.as_str())
            .await
            .map_err(|e| PushError::NotFound(format!("{name}@{version} is not available in {}: {e}", from.name)))?;
        let prepared = self
            .packuments
            .get(from, name)
            .await
            .map_err(|e| PushError::Internal(e.into()))?;
        let mut manifest = packument_cache::version_manifest(prepared.clone(), version.to_string())
            .await
            .map_err(|e| PushError::Internal(e.into()))?
            .ok_or_else(|| PushError::NotFound(format!("{name}@{version} is not in {}", from.name)))?;
        if let Some(Value::Object(dist)) = manifest.get_mut("dist") {
            dist.remove("tarball");
        }
        let bytes = self.read_blob(&blob.sha512_hex).await?;
        let source = self
            .upstreams
            .source(&row)
            .map_err(|e| PushError::Invalid(e.to_string()))?;
        let summary = match source {
            Source::Registry(target_name) => {
                let target = self
                    .meta
                    .registry(&target_name)
                    .await
                    .map_err(|e| PushError::Internal(e.into()))?
                    .ok_or_else(|| PushError::NotFound(format!("no registry named {target_name}")))?;
                let digests = Digests::of(&bytes);
                // Verified when it was published into `from`; the manifest still says so.
                let attestations = self
                    .meta
                    .attestations(from.id, name, version.as_str())
                    .await
                    .map_err(|e| PushError::Internal(e.into()))?;
                self.admission
                    .admit(Candidate {
                        registry: &target,
                        target: None,
                        name: name.clone(),
                        version: version.clone(),
                        manifest,
                        tarball: bytes,
                        staged: None,
                        digests,
                        tags: Vec::new(),
                        publisher: None,
                        origin: Origin::Promotion {
                            from: from.name.to_string(),
                        },
                        client_addr: None,
                        policy: None,
                        provenance: attestations.map(Attestations::Verified),
                    })
                    .await
                    .map_err(|e| match e {
                        AdmissionError::Refused(_)
                        | AdmissionError::VersionExists(_)
                        | AdmissionError::NameTaken(_) => PushError::Refused(e.to_string()),
                        other => PushError::Internal(other.into()),
                    })?;
                format!("promoted {name}@{version} from {} to {target_name}", from.name)
            }
            Source::Remote { remote, label, .. } => {
                let tag = prepared
                    .dist_tags
                    .iter()
                    .find(|(_, v)| v.as_str() == version.as_str())
                    .map_or("latest", |(t, _)| t.as_str())
                    .to_owned();
                let url = format!("{}{}", remote.base, name.escaped());
                let mut published = manifest;
                if let Some(Value::Object(dist)) = published.get_mut("dist") {
                    let tarball = format!("{}{name}/-/{}-{version}.tgz", remote.base, name.basename());
                    dist.insert("tarball".into(), Value::String(tarball));
                }
                let body = json!({
                    "_id": name.to_string(),
                    "name": name.to_string(),
                    "dist-tags": { tag: version.as_str() },
                    "versions": { version.as_str(): published },
                    "access": null,
                    "_attachments": { format!("{name}-{version}.tgz"): {
                        "content_type": "application/octet-stream",
                        "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
                        "length": bytes.len(),
                    }},
                });
                self.upstreams
                    .client
                    .publish(&url, &remote.auth, &body)
                    .await
                    .map_err(|e| match e {
                        UpstreamError::Status(_, code) if (400..500).contains(&code) => {
                            PushError::Refused(format!("{label} answered HTTP {code}"))
                        }
                        other => PushError::Upstream(other),
                    })?;
                format!("published {name}@{version} from {} to {label}", from.name)
            }
        };
        let audited = self
            .meta
            .append_audit(&AuditEntry {
                actor: actor.name.clone(),
                action: AuditAction::VersionPush,
                registry: Some(from.name.to_string()),
                package: Some(name.to_string()),
                version: Some(version.to_string()),
                detail: Some(format!("to={spec}")),
                client_addr: actor.client_addr.map(|ip| ip.to_string()),
            })
            .await;
        if let Err(e) = audited {
            tracing::error!(error = %e, "could not write the audit entry of a push");
        }
        Ok(summary)
    }

    async fn read_blob(&self, sha512_hex: &str) -> Result<Bytes, PushError> {
        let key = BlobKey::parse_hex(sha512_hex).map_err(|e| PushError::Internal(e.into()))?;
        self.blobs
            .read(&key)
            .await
            .map_err(|e| PushError::Internal(e.into()))?
            .ok_or_else(|| PushError::Internal(format!("blob {sha512_hex} is missing").into()))
    }
}
