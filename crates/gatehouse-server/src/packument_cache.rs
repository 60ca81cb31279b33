//! Prepared packuments: for each (registry, package) the full and abbreviated
//! documents — local versions merged with the upstreams' — are serialized and
//! gzipped once per change, with an ETag per representation. Requests only copy
//! `Bytes` handles. Writes invalidate entries; entries built from upstream data
//! expire when that data needs revalidation. Concurrent misses share one build.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures_util::StreamExt as _;
use moka::Expiry;
use moka::future::Cache;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{PublicUrl, UpstreamSettings};
use crate::firewall::{Candidate, Firewall, PackageRules, Withheld};
use crate::store_cache::{Changes, ReadMark};
use crate::upstream::fetch::UpstreamDoc;
use crate::upstream::{Source, Upstreams};
use gatehouse_npm::merge::{self, RemoteVersion};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::{self, rev_string};
use gatehouse_npm::withhold::withhold;
use gatehouse_store::{
    BlobRef, DecisionRow, Meta, Millis, PackageRecord, Registry, RegistryId, StoreError, VersionRecord, now_millis,
};

/// How long an inflated document stays after its last request.
const IDENTITY_IDLE: Duration = Duration::from_secs(60);

/// On a database other processes write (replicas), a prepared entry is rebuilt at
/// least this often, whatever the change log says: a safety net for a missed change
/// (one test run saw an acknowledged version stay unlisted on another replica, before
/// `drop_if_overtaken`; ARCHITECTURE.md, known gaps). The ETag is of the content, so
/// a rebuild does not break revalidation.
const SHARED_MAX_AGE: Duration = Duration::from_secs(5);

/// One serialized representation of a packument, kept gzipped only: every client
/// that installs asks for gzip (npm, pnpm, yarn and bun do), so the JSON text is
/// inflated on demand for the rare one that doesn't. This keeps a prepared entry at
/// about a tenth of its JSON size.
#[derive(Clone)]
pub struct Representation {
    pub gzip: Bytes,
    pub etag: String,
}

impl Representation {
    fn of(value: &Value, kind: &str) -> Result<Self, CacheError> {
        let body = serde_json::to_vec(value).map_err(|e| CacheError::Build(e.to_string()))?;
        let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::new(5));
        encoder.write_all(&body).map_err(|e| CacheError::Build(e.to_string()))?;
        let gzip = encoder.finish().map_err(|e| CacheError::Build(e.to_string()))?;
        // Hash of the exact bytes served; the kind keeps full and abbreviated ETags apart.
        let digest = Sha256::new().chain_update(kind).chain_update(&body).finalize();
        Ok(Representation {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            gzip: Bytes::from(gzip),
        })
    }

    /// The JSON text (inflated; CPU work proportional to the document's size).
    pub fn json(&self) -> Result<Vec<u8>, CacheError> {
        let mut json = Vec::with_capacity(self.gzip.len() * 8);
        GzDecoder::new(self.gzip.as_ref())
            .read_to_end(&mut json)
            .map_err(|e| CacheError::Build(e.to_string()))?;
        Ok(json)
    }

    fn weight(&self) -> usize {
        self.gzip.len() + self.etag.len()
    }
}

#[derive(Clone)]
pub struct Documents {
    pub full: Representation,
    pub abbreviated: Representation,
}

/// A version an upstream offers that this registry does not hold yet.
#[derive(Clone)]
pub struct RemoteTarball {
    /// Shared by every version the upstream offers.
    pub source: Arc<Source>,
    pub version: RemoteVersion,
}

/// Everything requests for one package need, built once per change.
pub struct Prepared {
    /// The package as stored here, if it is.
    pub local: Option<PackageRecord>,
    /// `None` when no version is visible (fully unpublished, nothing upstream).
    pub documents: Option<Documents>,
    pub dist_tags: BTreeMap<String, String>,
    /// Milliseconds since the epoch, for `Last-Modified`.
    pub modified_at: i64,
    /// Versions held here → their tarball blob.
    pub tarballs: HashMap<String, BlobRef>,
    /// Versions only an upstream has, pulled on first download.
    pub remote: HashMap<String, RemoteTarball>,
    /// Some upstream data came from a stored copy because the upstream failed.
    pub stale: bool,
    /// What the registry's policy decided for every version.
    pub policy: Arc<PolicyOutcome>,
    /// When upstream data must be revalidated, or a decision changes by itself;
    /// `None` when neither happens.
    ttl: Option<Duration>,
    built_at: Instant,
}

/// The policy's decisions, as the routes and admission need them.
pub struct PolicyOutcome {
    pub rules: Arc<PackageRules>,
    /// Every version, as the rules see it: a pull judges its version again with what
    /// its tarball shows.
    pub candidates: Vec<Candidate>,
    /// Versions not served (out of the documents); their tarballs answer 403.
    pub withheld: BTreeMap<String, Withheld>,
    /// Versions served with a notice.
    pub warnings: HashMap<String, String>,
    /// Said with the packument: dist-tags that had to move.
    pub notice: Option<String>,
}

impl PolicyOutcome {
    /// Nothing withheld, nothing to say: a document with no name, or none at all.
    fn undecided(rules: Arc<PackageRules>, candidates: Vec<Candidate>) -> Self {
        PolicyOutcome {
            rules,
            candidates,
            withheld: BTreeMap::new(),
            warnings: HashMap::new(),
            notice: None,
        }
    }
}

impl Prepared {
    /// Roughly the bytes this entry holds, for the cache's bound.
    fn weight(&self) -> usize {
        let documents = self
            .documents
            .as_ref()
            .map_or(0, |d| d.full.weight() + d.abbreviated.weight());
        documents + self.remote.len() * 192 + self.tarballs.len() * 224 + self.policy.candidates.len() * 160 + 1024
    }

    /// One version's manifest as the full document serves it, found without building
    /// the rest of the document (it can be megabytes). Blocking: call it off the runtime.
    pub fn version_manifest(&self, version: &str) -> Result<Option<Map<String, Value>>, CacheError> {
        #[derive(serde::Deserialize)]
        struct Versions<'a> {
            #[serde(borrow, default)]
            versions: HashMap<Cow<'a, str>, &'a RawValue>,
        }
        let Some(documents) = &self.documents else {
            return Ok(None);
        };
        let json = documents.full.json()?;
        let doc: Versions = serde_json::from_slice(&json).map_err(|e| CacheError::Build(e.to_string()))?;
        doc.versions
            .get(version)
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
            .map_err(|e| CacheError::Build(e.to_string()))
    }
}

/// [`Prepared::version_manifest`] on the blocking pool.
pub async fn version_manifest(
    prepared: Arc<Prepared>,
    version: String,
) -> Result<Option<Map<String, Value>>, CacheError> {
    tokio::task::spawn_blocking(move || prepared.version_manifest(&version))
        .await
        .map_err(|e| CacheError::Build(e.to_string()))?
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum CacheError {
    #[error("package not found")]
    Absent,
    /// The registry is frozen and never held the package.
    #[error("registry {0} is frozen: it serves only the packages it holds, and takes no new ones")]
    Frozen(String),
    #[error("{0}")]
    Upstream(String),
    #[error("store: {0}")]
    Store(String),
    #[error("cannot build packument: {0}")]
    Build(String),
    /// Never leaves this module: a writer was waiting out the builds in flight (see
    /// [`PackumentCache::invalidate`]); the caller asks again.
    #[error("packument is being invalidated")]
    Retry,
}

impl From<crate::firewall::FirewallError> for CacheError {
    fn from(e: crate::firewall::FirewallError) -> Self {
        CacheError::Store(e.to_string())
    }
}

impl From<StoreError> for CacheError {
    fn from(e: StoreError) -> Self {
        CacheError::Store(e.to_string())
    }
}

type Key = (RegistryId, PackageName);

struct PreparedExpiry;

impl Expiry<Key, Arc<Prepared>> for PreparedExpiry {
    fn expire_after_create(&self, _: &Key, value: &Arc<Prepared>, _: Instant) -> Option<Duration> {
        // From when the data was read, also for entries updated after a pull.
        value.ttl.map(|ttl| ttl.saturating_sub(value.built_at.elapsed()))
    }
}

/// Tries of the cache before `get` reads through it (see `CacheError::Retry`).
const MAX_ATTEMPTS: usize = 8;

/// Packages decided again at a time by [`PackumentCache::refresh`].
const REFRESH_JOBS: usize = 2;

/// Registry upstream chains (`team` → `default` → …) are followed this deep, no further.
const MAX_CHAIN: u8 = 4;

#[derive(Clone)]
pub struct PackumentCache {
    entries: Cache<Key, Arc<Prepared>>,
    /// The JSON text of documents asked for without gzip, by ETag: inflated once and
    /// shared by every request that wants it meanwhile, so neither the work nor the
    /// memory grows with the number of such clients. Dropped after a minute unused.
    identity: Cache<String, Bytes>,
    meta: Meta,
    upstreams: Arc<Upstreams>,
    public_url: PublicUrl,
    settings: UpstreamSettings,
    firewall: Arc<Firewall>,
    /// Bumped by every invalidation; a build that sees it move doesn't keep its result.
    generation: Arc<Changes>,
    /// `SHARED_MAX_AGE` when other processes write the database.
    shared_max_age: Option<Duration>,
}

impl PackumentCache {
    pub fn new(
        meta: Meta,
        upstreams: Arc<Upstreams>,
        public_url: PublicUrl,
        settings: UpstreamSettings,
        firewall: Arc<Firewall>,
        max_bytes: u64,
        shared_database: bool,
    ) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Key, p: &Arc<Prepared>| u32::try_from(p.weight()).unwrap_or(u32::MAX))
            .expire_after(PreparedExpiry)
            .support_invalidation_closures()
            .build();
        let identity = Cache::builder()
            .max_capacity(max_bytes / 4)
            .weigher(|_: &String, json: &Bytes| u32::try_from(json.len()).unwrap_or(u32::MAX))
            .time_to_idle(IDENTITY_IDLE)
            .build();
        PackumentCache {
            entries,
            identity,
            meta,
            upstreams,
            public_url,
            settings,
            firewall,
            generation: Arc::new(Changes::default()),
            shared_max_age: shared_database.then_some(SHARED_MAX_AGE),
        }
    }

    /// `repr` as JSON text, for a client that does not take gzip.
    pub async fn identity(&self, repr: &Representation) -> Result<Bytes, CacheError> {
        let inflate = {
            let repr = repr.clone();
            // Big documents take milliseconds to inflate: off the runtime.
            async move {
                tokio::task::spawn_blocking(move || repr.json().map(Bytes::from))
                    .await
                    .map_err(|e| CacheError::Build(e.to_string()))?
            }
        };
        self.identity
            .try_get_with(repr.etag.clone(), inflate)
            .await
            .map_err(|e| (*e).clone())
    }

    pub fn registry_base(&self, registry: &Registry) -> String {
        format!("{}/r/{}", self.public_url.as_str(), registry.name)
    }

    /// The prepared package, loading and building it on a miss.
    pub async fn get(&self, registry: &Registry, name: &PackageName) -> Result<Arc<Prepared>, CacheError> {
        self.get_at_depth(registry, name, 0).await
    }

    fn get_at_depth<'a>(
        &'a self,
        registry: &'a Registry,
        name: &'a PackageName,
        depth: u8,
    ) -> futures_util::future::BoxFuture<'a, Result<Arc<Prepared>, CacheError>> {
        Box::pin(async move {
            let key = (registry.id, name.clone());
            for _ in 0..MAX_ATTEMPTS {
                // Set when this call builds the entry (a miss); joining another's build is a hit.
                let built = AtomicBool::new(false);
                let load = async {
                    built.store(true, Ordering::Relaxed);
                    self.load(registry, name, depth).await
                };
                let read = self.generation.mark();
                let result = self.entries.try_get_with(key.clone(), load).await;
                let built = built.load(Ordering::Relaxed);
                crate::metrics::global().cache_lookup("packument", !built);
                if built && result.is_ok() {
                    self.drop_if_overtaken(&key, read).await;
                }
                match result {
                    Err(e) if matches!(*e, CacheError::Retry) => tokio::task::yield_now().await,
                    result => return result.map_err(|e| (*e).clone()),
                }
            }
            // Writers kept this package busy: read it without caching.
            self.load(registry, name, depth).await
        })
    }

    /// Drops an entry just inserted if a change arrived since `read` was taken.
    ///
    /// The build checks the generation when it finishes, but moka inserts its result
    /// afterwards, and an [`Self::invalidate_everywhere`] registered in between spares
    /// it (moka's predicates apply only to entries older than themselves): the entry,
    /// read before the change, would be served until the next one. This closes that
    /// window (it is how a replica missed another's publish).
    async fn drop_if_overtaken(&self, key: &Key, read: ReadMark) {
        self.generation.drop_if_overtaken(&self.entries, key, read).await;
    }

    /// Drops a package's entries after a change to it was committed.
    ///
    /// A build that read the store before the commit may still be running, and moka
    /// would cache its result, serving the old packument until the next change. So
    /// first join the build in flight for this registry (caching nothing), then drop
    /// the entry: the writer's next read starts a fresh build. Builds elsewhere (other
    /// registries see this one through registry upstreams) notice the generation
    /// change when they finish and don't keep their result.
    pub async fn invalidate(&self, registry: RegistryId, name: &PackageName) {
        self.generation.record();
        let key = (registry, name.clone());
        let _ = self
            .entries
            .try_get_with(key.clone(), async { Err(CacheError::Retry) })
            .await;
        self.entries.invalidate(&key).await;
        self.invalidate_everywhere(name);
    }

    /// A version of `name` was pulled into `registry`. What clients see doesn't change
    /// (the version was listed already, as the upstream's), only where its tarball
    /// comes from: so the entry is updated in place. Dropping it would re-merge the
    /// upstream documents once per pulled tarball, and the generation change would
    /// discard every build in flight meanwhile (a cold install pulls hundreds).
    pub async fn record_pull(&self, registry: RegistryId, name: &PackageName) -> Result<(), CacheError> {
        let key = (registry, name.clone());
        let read = self.generation.mark();
        // A build in flight may have read the store before the pull: join it first.
        let _ = self
            .entries
            .try_get_with(key.clone(), async { Err(CacheError::Retry) })
            .await;
        let Some(current) = self.entries.get(&key).await else {
            return Ok(());
        };
        let local = self.meta.package(registry, name).await?;
        let tarballs = held_tarballs(local.as_ref());
        let remote = current
            .remote
            .iter()
            .filter(|(version, _)| !tarballs.contains_key(*version))
            .map(|(version, offered)| (version.clone(), offered.clone()))
            .collect();
        let updated = Prepared {
            local,
            documents: current.documents.clone(),
            dist_tags: current.dist_tags.clone(),
            modified_at: current.modified_at,
            tarballs,
            remote,
            stale: current.stale,
            policy: current.policy.clone(),
            ttl: current.ttl,
            built_at: current.built_at,
        };
        self.entries.insert(key.clone(), Arc::new(updated)).await;
        self.drop_if_overtaken(&key, read).await;
        Ok(())
    }

    /// Drops a package's entries in every registry (changes made by other processes).
    pub fn invalidate_everywhere(&self, name: &PackageName) {
        self.generation.record();
        let name = name.clone();
        if let Err(e) = self.entries.invalidate_entries_if(move |key, _| key.1 == name) {
            tracing::error!(error = %e, "cannot invalidate cached packuments");
        }
    }

    /// Forgets `name`'s upstream documents as well as its prepared entries: after its
    /// stored upstream copies were purged.
    pub async fn purge(&self, registry: RegistryId, name: &PackageName) {
        self.upstreams.fetcher.forget(name);
        self.invalidate(registry, name).await;
    }

    pub fn invalidate_all(&self) {
        self.generation.record();
        self.entries.invalidate_all();
    }

    /// Decides the prepared packages again, serving each old entry until its new one
    /// is ready: for changes that alter decisions but no stored package (a policy, the
    /// advisory database), so that re-deciding never makes a request wait. Returns
    /// when every entry is replaced (the change's own request waits; spawn it to not).
    /// `names`: only these packages (in every registry); `None`: all.
    pub async fn refresh(&self, names: Option<Vec<PackageName>>) {
        let wanted: Option<std::collections::HashSet<PackageName>> = names.map(|n| n.into_iter().collect());
        let keys: Vec<Key> = self
            .entries
            .iter()
            .map(|(key, _)| (*key).clone())
            .filter(|(_, name)| wanted.as_ref().is_none_or(|w| w.contains(name)))
            .collect();
        if keys.is_empty() {
            return;
        }
        let depths = match self.registry_depths().await {
            Ok(depths) => depths,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh prepared packuments; dropping them");
                self.invalidate_all();
                return;
            }
        };
        // A registry behind another is built from that one's entry: upstream
        // registries first, so no downstream entry is rebuilt from an old one.
        let mut keys = keys;
        keys.sort_by_key(|key| depths.get(&key.0).map_or(0, |(_, depth)| *depth));
        for level in keys.chunk_by(|a, b| depths.get(&a.0).map(|d| d.1) == depths.get(&b.0).map(|d| d.1)) {
            futures_util::stream::iter(level.iter().cloned())
                .for_each_concurrent(REFRESH_JOBS, |key| {
                    let depths = &depths;
                    async move { self.refresh_one(depths, key).await }
                })
                .await;
        }
    }

    /// Every registry, with how many registry upstreams deep its chain is.
    async fn registry_depths(&self) -> Result<HashMap<RegistryId, (Registry, u8)>, StoreError> {
        let registries = self.meta.registries().await?;
        let mut behind: HashMap<RegistryId, Vec<RegistryId>> = HashMap::new();
        for registry in &registries {
            for row in self.meta.upstreams(registry.id).await? {
                if let Ok(crate::upstream::spec::UpstreamSpec::Registry(name)) =
                    crate::upstream::spec::UpstreamSpec::parse(&row.spec)
                    && let Some(upstream) = registries.iter().find(|r| r.name == name)
                {
                    behind.entry(registry.id).or_default().push(upstream.id);
                }
            }
        }
        fn depth(id: RegistryId, behind: &HashMap<RegistryId, Vec<RegistryId>>, left: u8) -> u8 {
            match behind.get(&id) {
                Some(ups) if left > 0 => 1 + ups.iter().map(|u| depth(*u, behind, left - 1)).max().unwrap_or(0),
                _ => 0,
            }
        }
        Ok(registries
            .into_iter()
            .map(|r| {
                let d = depth(r.id, &behind, MAX_CHAIN);
                (r.id, (r, d))
            })
            .collect())
    }

    async fn refresh_one(&self, registries: &HashMap<RegistryId, (Registry, u8)>, key: Key) {
        let Some((registry, _)) = registries.get(&key.0) else {
            self.entries.invalidate(&key).await;
            return;
        };
        let read = self.generation.mark();
        match self.load(registry, &key.1, 0).await {
            // A write since the build started made it old already: drop it instead
            // (checked again after the insert, which may race with the write's own drop).
            Ok(fresh) if !self.generation.since(read) => {
                self.entries.insert(key.clone(), fresh).await;
                self.drop_if_overtaken(&key, read).await;
            }
            _ => self.entries.invalidate(&key).await,
        }
    }

    async fn load(&self, registry: &Registry, name: &PackageName, depth: u8) -> Result<Arc<Prepared>, CacheError> {
        let read = self.generation.mark();
        let local = self.meta.package(registry.id, name).await?;
        let rules = self.firewall.rules(registry, name).await?;
        let base = self.registry_base(registry);
        let internal = local.as_ref().is_some_and(|r| r.internal);
        let frozen = rules.policy.policy.freeze;
        if frozen && local.is_none() {
            return Err(CacheError::Frozen(registry.name.to_string()));
        }
        let mut gathered = Gathered::default();
        // A frozen registry does not ask its upstreams for anything new.
        let upstreams = if frozen {
            Vec::new()
        } else {
            self.meta.upstreams(registry.id).await?
        };
        for row in upstreams {
            let source = match self.upstreams.source(&row) {
                Ok(source) => source,
                Err(e) => {
                    tracing::error!(error = %e, registry.name = %registry.name, "skipping an invalid upstream");
                    continue;
                }
            };
            self.gather(&source, name, internal, depth, &mut gathered).await;
        }
        if local.is_none() && gathered.docs.is_empty() {
            return Err(match gathered.error {
                Some(error) => CacheError::Upstream(error),
                None => CacheError::Absent,
            });
        }
        let settings_ttl = gathered.ttl;
        let started = Instant::now();
        let (mut prepared, changed) =
            tokio::task::spawn_blocking(move || prepare(local, gathered, &base, settings_ttl, rules))
                .await
                .map_err(|e| CacheError::Build(e.to_string()))??;
        self.firewall.record(registry, changed);
        let stale = self.generation.since(read);
        if stale {
            // Something changed while we built: hand this to whoever waits, keep none of it.
            prepared.ttl = Some(Duration::ZERO);
        }
        if let Some(max) = self.shared_max_age {
            prepared.ttl = Some(prepared.ttl.map_or(max, |ttl| ttl.min(max)));
        }
        tracing::debug!(pkg.name = %name, registry.name = %registry.name, elapsed = ?started.elapsed(), stale, "packument built");
        Ok(Arc::new(prepared))
    }

    /// Asks one upstream about `name`, adding what it offers to `gathered`.
    async fn gather(&self, source: &Source, name: &PackageName, internal: bool, depth: u8, gathered: &mut Gathered) {
        match source {
            Source::Remote {
                remote,
                internal: trusted,
                ..
            } => {
                // Dependency-confusion guard: internal names never come from untrusted upstreams.
                if internal && !trusted {
                    return;
                }
                match self.upstreams.fetcher.get(remote, name).await {
                    Ok(doc) => match doc.as_ref() {
                        UpstreamDoc::Found { doc, stale } => {
                            gathered.stale |= stale;
                            gathered.shorten(Duration::from_secs(if *stale {
                                10
                            } else {
                                self.settings.max_age_secs
                            }));
                            gathered.docs.push((Arc::new(source.clone()), doc.clone()));
                        }
                        UpstreamDoc::NotFound => {
                            gathered.shorten(Duration::from_secs(self.settings.not_found_ttl_secs));
                        }
                    },
                    Err(e) => {
                        tracing::warn!(upstream = %source.label(), pkg.name = %name, error = %e, "upstream unavailable");
                        gathered.shorten(Duration::from_secs(10));
                        gathered.error.get_or_insert(e.to_string());
                    }
                }
            }
            Source::Registry(other) => {
                if depth >= MAX_CHAIN {
                    tracing::warn!(upstream = %source.label(), "registry upstream chain too deep (or a cycle); not following");
                    return;
                }
                let Ok(Some(other_registry)) = self.meta.registry(other).await else {
                    return;
                };
                match self.get_at_depth(&other_registry, name, depth + 1).await {
                    Ok(prepared) => {
                        if internal && !prepared.local.as_ref().is_some_and(|r| r.internal) {
                            return;
                        }
                        gathered.stale |= prepared.stale;
                        if let Some(ttl) = prepared.ttl {
                            gathered.shorten(ttl);
                        } else {
                            // A local change there invalidates us too; recheck now and then anyway.
                            gathered.shorten(Duration::from_secs(self.settings.max_age_secs));
                        }
                        if let Some(docs) = &prepared.documents
                            && let Ok(json) = docs.full.json()
                            && let Ok(doc) = serde_json::from_slice::<Value>(&json)
                        {
                            gathered.docs.push((Arc::new(source.clone()), Arc::new(doc)));
                        }
                    }
                    Err(CacheError::Absent) => gathered.shorten(Duration::from_secs(self.settings.not_found_ttl_secs)),
                    Err(e) => {
                        gathered.shorten(Duration::from_secs(10));
                        gathered.error.get_or_insert(e.to_string());
                    }
                }
            }
        }
    }
}

/// What the upstreams said while loading one package.
#[derive(Default)]
struct Gathered {
    docs: Vec<(Arc<Source>, Arc<Value>)>,
    stale: bool,
    ttl: Option<Duration>,
    error: Option<String>,
}

impl Gathered {
    fn shorten(&mut self, ttl: Duration) {
        self.ttl = Some(self.ttl.map_or(ttl, |current| current.min(ttl)));
    }
}

/// The versions a package holds here → their tarball blobs.
fn held_tarballs(local: Option<&PackageRecord>) -> HashMap<String, BlobRef> {
    local
        .into_iter()
        .flat_map(PackageRecord::live_versions)
        .map(|v| (v.version.clone(), v.blob.clone()))
        .collect()
}

/// The policy applied to a merged full document: withheld versions out, tags moved.
/// Returns the document (`None` when no version is left), what was decided, the
/// decisions to record, and when one changes by itself.
fn screen(
    mut full: Value,
    local: Option<&PackageRecord>,
    rules: Arc<PackageRules>,
    now: Millis,
) -> (Option<Value>, PolicyOutcome, Vec<DecisionRow>, Option<Millis>) {
    let name = full
        .get("name")
        .and_then(Value::as_str)
        .and_then(|n| PackageName::parse(n).ok());
    let held: HashMap<&str, &VersionRecord> = local
        .into_iter()
        .flat_map(PackageRecord::live_versions)
        .map(|v| (v.version.as_str(), v))
        .collect();
    let candidates: Vec<Candidate> = full
        .get("versions")
        .and_then(Value::as_object)
        .map(|versions| {
            versions
                .iter()
                .filter_map(|(version, manifest)| {
                    let mut candidate = Candidate::new(version, manifest.as_object()?);
                    candidate.published_at = full
                        .get("time")
                        .and_then(|t| t.get(version))
                        .and_then(Value::as_str)
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.timestamp_millis());
                    if let Some(record) = held.get(version.as_str()) {
                        candidate.held = true;
                        candidate.published_here = record.published_here();
                        candidate.tarball = record.facts.as_deref().and_then(|f| serde_json::from_str(f).ok());
                    }
                    Some(candidate)
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(name) = name else {
        return (
            Some(full),
            PolicyOutcome::undecided(rules, candidates),
            Vec::new(),
            None,
        );
    };
    let judgement = rules.judge(&name, &candidates, now);
    let messages: BTreeMap<String, String> = judgement
        .withheld
        .iter()
        .map(|(version, withheld)| (version.clone(), withheld.refusal.message.clone()))
        .collect();
    let moves = withhold(&mut full, &messages);
    let notice = moves.first().map(|m| match &m.to {
        Some(to) => format!(
            "{name}: dist-tag \"{}\" held back from {} to {to}. {}",
            m.tag, m.from, messages[&m.from]
        ),
        None => format!(
            "{name}: dist-tag \"{}\" ({}) is withheld. {}",
            m.tag, m.from, messages[&m.from]
        ),
    });
    let empty = full
        .get("versions")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let outcome = PolicyOutcome {
        rules,
        candidates,
        withheld: judgement.withheld,
        warnings: judgement.warnings,
        notice,
    };
    ((!empty).then_some(full), outcome, judgement.changed, judgement.until)
}

fn prepare(
    local: Option<PackageRecord>,
    gathered: Gathered,
    registry_base: &str,
    ttl: Option<Duration>,
    rules: Arc<PackageRules>,
) -> Result<(Prepared, Vec<DecisionRow>), CacheError> {
    let local_docs = match &local {
        Some(record) => {
            packument::build(&record.view(), registry_base).map_err(|e| CacheError::Build(e.to_string()))?
        }
        None => None,
    };
    let tarballs = held_tarballs(local.as_ref());
    let local_modified = local.as_ref().map_or(0, |r| r.modified_at);
    let rev = local.as_ref().map_or(0, |r| r.rev);

    let (full, remote) = if gathered.docs.is_empty() {
        (local_docs.map(|d| d.full), HashMap::new())
    } else {
        let name = local
            .as_ref()
            .map(|r| r.name.clone())
            .or_else(|| {
                gathered.docs[0]
                    .1
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|n| PackageName::parse(n).ok())
            })
            .ok_or_else(|| CacheError::Build("upstream document has no name".into()))?;
        let has_own_tags = local.as_ref().is_some_and(|r| !r.dist_tags.is_empty());
        let docs: Vec<&Value> = gathered.docs.iter().map(|(_, d)| d.as_ref()).collect();
        match merge::merge(
            &name,
            registry_base,
            local_docs.as_ref().map(|d| (&d.full, has_own_tags)),
            &docs,
        ) {
            Some(merged) => {
                let remote = merged
                    .remote
                    .into_iter()
                    .map(|(version, offered)| {
                        let source = gathered.docs[offered.source].0.clone();
                        (
                            version,
                            RemoteTarball {
                                source,
                                version: offered,
                            },
                        )
                    })
                    .collect();
                (Some(merged.full), remote)
            }
            None => (None, HashMap::new()),
        }
    };

    let now = now_millis();
    let (full, policy, changed, until) = match full {
        Some(full) => screen(full, local.as_ref(), rules, now),
        None => (None, PolicyOutcome::undecided(rules, Vec::new()), Vec::new(), None),
    };
    // A held-back version appears by itself once old enough; an exception expires.
    let ttl = match until {
        Some(until) => {
            let left = Duration::from_millis(u64::try_from(until - now).unwrap_or(0).max(1_000));
            Some(ttl.map_or(left, |ttl| ttl.min(left)))
        }
        None => ttl,
    };
    let (documents, dist_tags, modified_at) = match full {
        Some(mut full) => {
            if let Value::Object(map) = &mut full {
                map.insert("_rev".into(), Value::String(rev_string(rev)));
            }
            let dist_tags: BTreeMap<String, String> = full
                .get("dist-tags")
                .and_then(Value::as_object)
                .map(|tags| {
                    tags.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            let modified = full
                .get("time")
                .and_then(|t| t.get("modified"))
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(local_modified, |t| t.timestamp_millis().max(local_modified));
            let abbreviated = packument::abbreviate(&full);
            let documents = Documents {
                full: Representation::of(&full, "full")?,
                abbreviated: Representation::of(&abbreviated, "abbreviated")?,
            };
            (Some(documents), dist_tags, modified)
        }
        None => (None, BTreeMap::new(), local_modified),
    };
    let prepared = Prepared {
        local,
        documents,
        dist_tags,
        modified_at,
        tarballs,
        remote,
        stale: gathered.stale,
        policy: Arc::new(policy),
        ttl,
        built_at: Instant::now(),
    };
    Ok((prepared, changed))
}
