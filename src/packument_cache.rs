//! Prepared packuments: for each (registry, package) the full and abbreviated
//! documents are serialized and gzipped once per change, with an ETag per
//! representation. Requests only copy `Bytes` handles. Every write to a package
//! invalidates its entry, builds already running included; concurrent misses share
//! one build (moka coalesces them).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::npm::name::PackageName;
use crate::npm::packument;
use crate::store::{BlobRef, Meta, PackageRecord, RegistryId, StoreError};

/// One serialized representation of a packument.
pub struct Representation {
    pub body: Bytes,
    pub gzip: Bytes,
    pub etag: String,
}

impl Representation {
    fn of(value: &serde_json::Value, kind: &str) -> Result<Self, CacheError> {
        let body = serde_json::to_vec(value).map_err(|e| CacheError::Build(e.to_string()))?;
        let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::new(5));
        encoder.write_all(&body).map_err(|e| CacheError::Build(e.to_string()))?;
        let gzip = encoder.finish().map_err(|e| CacheError::Build(e.to_string()))?;
        // Hash of the exact bytes served; the kind keeps full and abbreviated ETags apart.
        let digest = Sha256::new().chain_update(kind).chain_update(&body).finalize();
        Ok(Representation {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            body: Bytes::from(body),
            gzip: Bytes::from(gzip),
        })
    }

    fn weight(&self) -> usize {
        self.body.len() + self.gzip.len()
    }
}

pub struct Documents {
    pub full: Representation,
    pub abbreviated: Representation,
}

/// Everything requests for one package need, built once per change.
pub struct Prepared {
    pub record: PackageRecord,
    /// `None` when every version is unpublished.
    pub documents: Option<Documents>,
    /// Live version → its tarball blob.
    pub tarballs: HashMap<String, BlobRef>,
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum CacheError {
    #[error("package not found")]
    Absent,
    #[error("store: {0}")]
    Store(String),
    #[error("cannot build packument: {0}")]
    Build(String),
    /// Never leaves this module: a writer was waiting out the builds in flight (see
    /// [`PackumentCache::invalidate`]); the caller asks again.
    #[error("packument is being invalidated")]
    Retry,
}

impl From<StoreError> for CacheError {
    fn from(e: StoreError) -> Self {
        CacheError::Store(e.to_string())
    }
}

type Key = (RegistryId, PackageName);

/// Tries of the cache before `get` reads through it (see `CacheError::Retry`).
const MAX_ATTEMPTS: usize = 8;

#[derive(Clone)]
pub struct PackumentCache {
    entries: Cache<Key, Arc<Prepared>>,
    meta: Meta,
}

impl PackumentCache {
    pub fn new(meta: Meta, max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Key, p: &Arc<Prepared>| {
                let docs = p
                    .documents
                    .as_ref()
                    .map_or(0, |d| d.full.weight() + d.abbreviated.weight());
                u32::try_from(docs + 1024).unwrap_or(u32::MAX)
            })
            .build();
        PackumentCache { entries, meta }
    }

    /// The prepared package, loading and building it on a miss.
    /// `registry_base` is the registry's absolute URL (tarball URLs are built from it).
    pub async fn get(
        &self,
        registry: RegistryId,
        name: &PackageName,
        registry_base: &str,
    ) -> Result<Arc<Prepared>, CacheError> {
        let key = (registry, name.clone());
        for _ in 0..MAX_ATTEMPTS {
            match self
                .entries
                .try_get_with(key.clone(), self.load(registry, name, registry_base))
                .await
            {
                Err(e) if matches!(*e, CacheError::Retry) => tokio::task::yield_now().await,
                result => return result.map_err(|e| (*e).clone()),
            }
        }
        // Writers kept this package busy: read it without caching.
        self.load(registry, name, registry_base).await
    }

    /// Drops the package's entry after a change has been committed to the store.
    ///
    /// A build that read the store before the commit may still be running, and moka
    /// caches its result when it finishes, which would serve the old packument until
    /// the next change. So first join the build in flight (or find what it already
    /// cached), then drop the entry: every build that starts after that reads the change.
    /// Joining runs nothing when there is nothing in flight; readers that happen to join
    /// that empty run get `Retry` and ask again.
    pub async fn invalidate(&self, registry: RegistryId, name: &PackageName) {
        let key = (registry, name.clone());
        let _ = self
            .entries
            .try_get_with(key.clone(), async { Err(CacheError::Retry) })
            .await;
        self.entries.invalidate(&key).await;
    }

    async fn load(
        &self,
        registry: RegistryId,
        name: &PackageName,
        registry_base: &str,
    ) -> Result<Arc<Prepared>, CacheError> {
        let record = self.meta.package(registry, name).await?.ok_or(CacheError::Absent)?;
        let base = registry_base.to_owned();
        let prepared = tokio::task::spawn_blocking(move || prepare(record, &base))
            .await
            .map_err(|e| CacheError::Build(e.to_string()))??;
        Ok(Arc::new(prepared))
    }
}

fn prepare(record: PackageRecord, registry_base: &str) -> Result<Prepared, CacheError> {
    let documents = packument::build(&record, registry_base)
        .map_err(|e| CacheError::Build(e.to_string()))?
        .map(|docs| {
            Ok::<_, CacheError>(Documents {
                full: Representation::of(&docs.full, "full")?,
                abbreviated: Representation::of(&docs.abbreviated, "abbreviated")?,
            })
        })
        .transpose()?;
    let tarballs = record
        .live_versions()
        .map(|v| (v.version.clone(), v.blob.clone()))
        .collect();
    Ok(Prepared {
        record,
        documents,
        tarballs,
    })
}
