//! The one way a version enters a registry. Publish calls it today; pulls from an
//! upstream and promotions will too, so every check added here (policy, manifest
//! consistency) guards all of them.
//!
//! Order matters for crash safety: a blob is durable by the time the metadata commit
//! that refers to it is. Either its file is written (and fsynced) first, or, for a
//! small tarball, its bytes are journaled in that very commit and its file written
//! after it (see `blob_journal`). A crash leaves at worst an unreferenced blob.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::app::App;
use crate::blob_journal;
use crate::npm::dist_tag::DistTag;
use crate::npm::integrity::Digests;
use crate::npm::name::PackageName;
use crate::npm::tarball::{self, TarballError, TarballInfo, TarballLimits};
use crate::npm::version::Version;
use crate::store::blobs::{BlobError, BlobKey, StagedBlob};
use crate::store::{AuditEntry, BlobRef, NewVersion, PublishTarget, Registry, StoreError, User};

/// A version asking to enter a registry.
pub struct Candidate<'a> {
    pub registry: &'a Registry,
    /// The package as the caller read it, when it exists and was read (publishes).
    pub target: Option<&'a PublishTarget>,
    pub name: PackageName,
    pub version: Version,
    pub manifest: Map<String, Value>,
    pub tarball: Bytes,
    /// The tarball already written to storage as it streamed in (pulls); `None`
    /// stores `tarball` itself.
    pub staged: Option<Box<dyn StagedBlob>>,
    pub digests: Digests,
    pub tags: Vec<DistTag>,
    pub publisher: Option<&'a User>,
    pub origin: Origin,
    pub client_addr: Option<String>,
}

/// How the version arrived.
#[derive(Debug, Clone)]
pub enum Origin {
    Publish,
    /// Pulled from an upstream on first download; its manifest passes through
    /// unchanged and it keeps the upstream's publish time.
    Upstream {
        label: String,
        published_at: Option<i64>,
    },
    /// Pushed from another registry of this server: same bytes, same manifest.
    Promotion {
        from: String,
    },
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Publish => "publish".into(),
            Origin::Upstream { label, .. } => format!("upstream:{label}"),
            Origin::Promotion { from } => format!("promotion:{from}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The tarball or manifest is unacceptable; the message says why.
    #[error("{0}")]
    Rejected(String),
    #[error("You cannot publish over the previously published versions: {0}.")]
    VersionExists(String),
    #[error("package name \"{0}\" differs only in case from an existing package; names are unique ignoring case")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

pub struct Admitted {
    pub created_package: bool,
}

pub async fn admit(app: &App, candidate: Candidate<'_>) -> Result<Admitted, AdmissionError> {
    let Candidate {
        registry,
        target,
        name,
        version,
        manifest,
        tarball,
        staged,
        digests,
        tags,
        publisher,
        origin,
        client_addr,
    } = candidate;

    // Cheap early refusal, before any bytes are written; the store's unique
    // constraint still decides races between concurrent publishes.
    let taken = match target {
        Some(target) => target.release_taken,
        None => {
            app.meta
                .release_taken(registry.id, &name, version.release_key())
                .await?
        }
    };
    if taken {
        return Err(AdmissionError::VersionExists(version.to_string()));
    }

    let limits = TarballLimits {
        max_unpacked_bytes: app.config.limits.max_unpacked_bytes,
        max_entries: app.config.limits.max_tarball_entries,
        ..TarballLimits::default()
    };
    let inspected = inspect(&tarball, limits)
        .await
        .map_err(|e| AdmissionError::Rejected(e.to_string()))?;
    check_manifest_matches_tarball(&name, &version, &manifest, &inspected)?;
    let manifest = match origin {
        Origin::Publish => served_manifest(manifest, &name, &version, &inspected, &digests, publisher),
        Origin::Upstream { .. } | Origin::Promotion { .. } => manifest,
    };
    let pulled = matches!(origin, Origin::Upstream { .. });
    let deprecated = manifest.get("deprecated").and_then(Value::as_str).map(str::to_owned);

    let key = BlobKey::from_bytes(digests.sha512);
    // Small tarballs ride in the metadata commit instead of waiting for the disk; the
    // journal's task writes their files after it.
    let journal = match staged {
        Some(staged) => {
            staged.commit(&key).await?;
            None
        }
        None if tarball.len() <= blob_journal::MAX_BYTES && app.blobs.syncs() => Some(tarball.clone()),
        None => {
            app.blobs.put(&key, tarball.clone()).await?;
            None
        }
    };
    let journaled = journal.is_some();

    let new = NewVersion {
        registry_id: registry.id,
        name: name.clone(),
        version: version.as_str().to_owned(),
        release_key: version.release_key().to_owned(),
        manifest: Value::Object(manifest).to_string(),
        blob: BlobRef {
            sha512_hex: key.to_hex(),
            size: tarball.len() as u64,
        },
        publisher: publisher.map(|u| u.id),
        publisher_name: publisher.map(|u| u.name.clone()),
        deprecated,
        source: origin.describe(),
        tags: tags.iter().map(|t| t.as_str().to_owned()).collect(),
        // Names first published here are internal (dependency-confusion guard);
        // names that arrive from an upstream are not.
        internal_if_new: !pulled && app.config.internal_by_default,
        published_at: match origin {
            Origin::Upstream { published_at, .. } => published_at,
            Origin::Publish | Origin::Promotion { .. } => None,
        },
        claim_latest: !pulled,
        audit: AuditEntry {
            actor: publisher.map(|u| u.name.clone()),
            action: match origin {
                Origin::Publish => "version.publish",
                Origin::Upstream { .. } => "version.pull",
                Origin::Promotion { .. } => "version.promote",
            },
            registry: Some(registry.name.to_string()),
            package: Some(name.to_string()),
            version: Some(version.to_string()),
            detail: Some(format!("source={} sha512={}", origin.describe(), key.to_hex())),
            client_addr,
        },
        known_package: target.map(|t| t.package),
        journal,
    };
    let inserted = app.meta.insert_version(&new).await.map_err(|e| match e {
        StoreError::Conflict("version exists") => AdmissionError::VersionExists(version.to_string()),
        StoreError::Conflict(_) => AdmissionError::NameTaken(name.to_string()),
        other => AdmissionError::Store(other),
    })?;
    if journaled {
        app.journal.committed();
    }
    if pulled {
        if let Err(e) = app.packuments.record_pull(registry.id, &name).await {
            tracing::warn!(error = %e, pkg.name = %name, "cannot update the prepared packument after a pull; dropping it");
            app.packuments.invalidate(registry.id, &name).await;
        }
    } else {
        app.packuments.invalidate(registry.id, &name).await;
    }
    tracing::info!(registry.name = %registry.name, pkg.name = %name, pkg.version = %version, "version admitted");
    Ok(Admitted {
        created_package: inserted.created_package,
    })
}

/// What a tarball may unpack to when it is inspected in place, on the request's task.
const IN_PLACE_LIMITS: TarballLimits = TarballLimits {
    max_unpacked_bytes: 1024 * 1024,
    max_entries: 2_000,
    max_package_json_bytes: 1024 * 1024,
};

/// Inspects a tarball. Most are small, and a trip to the blocking pool and back costs
/// more than inspecting them; but inflating is bounded by the limits, not by the
/// input's size (a 32 KiB gzip bomb is tens of MB of work). So a small tarball is
/// first inspected in place within tight limits (a millisecond at most), and only one
/// that outgrows them is inspected again, with the real limits, on the blocking pool.
async fn inspect(bytes: &Bytes, limits: TarballLimits) -> Result<TarballInfo, TarballError> {
    let tight = TarballLimits {
        max_unpacked_bytes: limits.max_unpacked_bytes.min(IN_PLACE_LIMITS.max_unpacked_bytes),
        max_entries: limits.max_entries.min(IN_PLACE_LIMITS.max_entries),
        max_package_json_bytes: limits
            .max_package_json_bytes
            .min(IN_PLACE_LIMITS.max_package_json_bytes),
    };
    if bytes.len() <= crate::offload::IN_PLACE_BYTES {
        match tarball::inspect(bytes, &tight) {
            Err(TarballError::TooLarge { .. } | TarballError::TooManyEntries { .. }) if tight != limits => {}
            done => return done,
        }
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || tarball::inspect(&bytes, &limits))
        .await
        .map_err(|e| TarballError::Corrupt(format!("inspection failed: {e}")))?
}

/// Manifest-confusion guard: what `npm view` shows must be what installs. The
/// fields npm acts on at install time must agree with the tarball's package.json.
fn check_manifest_matches_tarball(
    name: &PackageName,
    version: &Version,
    manifest: &Map<String, Value>,
    tarball: &TarballInfo,
) -> Result<(), AdmissionError> {
    let packed = &tarball.manifest;
    if packed.get("name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(AdmissionError::Rejected(format!(
            "the tarball's package.json names {:?}, but the publish is for \"{name}\"",
            packed.get("name").and_then(Value::as_str).unwrap_or("nothing")
        )));
    }
    let packed_version = packed.get("version").and_then(Value::as_str).unwrap_or("nothing");
    if Version::parse(packed_version)
        .map(|v| v.as_str() != version.as_str())
        .unwrap_or(true)
    {
        return Err(AdmissionError::Rejected(format!(
            "the tarball's package.json has version \"{packed_version}\", but the publish is for {version}"
        )));
    }
    for field in ["dependencies", "optionalDependencies", "peerDependencies"] {
        if non_empty_object(manifest.get(field)) != non_empty_object(packed.get(field)) {
            return Err(AdmissionError::Rejected(format!(
                "manifest {field} differ from the tarball's package.json; publish the package.json you packed"
            )));
        }
    }
    for script in ["preinstall", "install", "postinstall"] {
        let declared = manifest.get("scripts").and_then(|s| s.get(script));
        let packed_script = packed.get("scripts").and_then(|s| s.get(script));
        // npm adds `install: node-gyp rebuild` to the manifest when binding.gyp exists.
        let implied = script == "install" && tarball.has_binding_gyp && packed_script.is_none();
        if declared != packed_script && !implied {
            return Err(AdmissionError::Rejected(format!(
                "manifest scripts.{script} differs from the tarball's package.json"
            )));
        }
    }
    Ok(())
}

fn non_empty_object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object).filter(|m| !m.is_empty())
}

/// The manifest as we store and serve it: client-controlled bookkeeping fields are
/// dropped, registry-computed ones (publisher, sizes, install-script flag) are set.
fn served_manifest(
    mut manifest: Map<String, Value>,
    name: &PackageName,
    version: &Version,
    tarball: &TarballInfo,
    digests: &Digests,
    publisher: Option<&User>,
) -> Map<String, Value> {
    const KEEP_UNDERSCORED: &[&str] = &["_nodeVersion", "_npmVersion", "_hasShrinkwrap"];
    manifest.retain(|k, _| !k.starts_with('_') || KEEP_UNDERSCORED.contains(&k.as_str()));
    // bun sends non-standard copies of the digests at the top level.
    for stray in ["integrity", "shasum"] {
        manifest.remove(stray);
    }
    manifest.insert("_id".into(), Value::String(format!("{name}@{version}")));
    if let Some(user) = publisher {
        manifest.insert(
            "_npmUser".into(),
            serde_json::json!({ "name": user.name, "email": user.email.clone().unwrap_or_default() }),
        );
    }
    let has_install_script = manifest.get("scripts").and_then(Value::as_object).is_some_and(|s| {
        ["preinstall", "install", "postinstall"]
            .iter()
            .any(|k| s.contains_key(*k))
    }) || tarball.has_binding_gyp;
    if has_install_script {
        manifest.insert("hasInstallScript".into(), Value::Bool(true));
    } else {
        manifest.remove("hasInstallScript");
    }
    manifest.insert("_hasShrinkwrap".into(), Value::Bool(tarball.has_shrinkwrap));
    let mut dist = match manifest.remove("dist") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    dist.remove("tarball");
    dist.insert("integrity".into(), Value::String(digests.sri_sha512()));
    dist.insert("shasum".into(), Value::String(digests.shasum_hex()));
    dist.insert("fileCount".into(), Value::from(tarball.file_count));
    dist.insert("unpackedSize".into(), Value::from(tarball.unpacked_size));
    manifest.insert("dist".into(), Value::Object(dist));
    manifest
}
