//! Upstream packuments, cached: fresh copies are used as they are, older ones are
//! revalidated with `ETag`/`Last-Modified`, concurrent requests for one name share
//! one upstream request, 404s are remembered briefly, and when an upstream fails
//! the last stored copy is served (stale-if-error) behind a circuit breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use serde_json::Value;

use super::client::{Fetched, UpstreamAuth, UpstreamClient, UpstreamError};
use crate::config::UpstreamSettings;
use crate::store_cache::Changes;
use gatehouse_npm::name::PackageName;
use gatehouse_store::{Meta, StoredPackument, UpstreamId, now_millis};

/// A remote registry as the fetcher needs it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub id: UpstreamId,
    /// Base URL with a trailing slash.
    pub base: String,
    pub auth: UpstreamAuth,
}

/// What an upstream says about a name.
pub enum UpstreamDoc {
    Found {
        doc: Arc<Value>,
        /// Served from the stored copy because the upstream failed.
        stale: bool,
    },
    NotFound,
}

struct Entry {
    doc: Arc<UpstreamDoc>,
    ttl: Duration,
    /// Bytes the entry stands for, for the cache's size bound.
    weight: u32,
}

struct EntryExpiry;

impl Expiry<(UpstreamId, PackageName), Arc<Entry>> for EntryExpiry {
    fn expire_after_create(&self, _: &(UpstreamId, PackageName), entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// While stale copies are served because of a failure, try the upstream again this often.
const STALE_RETRY: Duration = Duration::from_secs(10);

/// A parsed document is kept in memory only this long: enough for the concurrent
/// builds that share one fetch. The stored copy in the database is the cache (it
/// says when to revalidate); the prepared packuments are what requests read. Parsed
/// JSON is many times its text, so keeping it longer is what filled memory.
const HOLD_PARSED: Duration = Duration::from_secs(5);

pub struct PackumentFetcher {
    meta: Meta,
    client: UpstreamClient,
    settings: UpstreamSettings,
    entries: Cache<(UpstreamId, PackageName), Arc<Entry>>,
    /// Counts `forget`s: a fetch one overtook drops its entry (`store_cache.rs` says why).
    forgotten: Changes,
    breakers: Mutex<HashMap<UpstreamId, Breaker>>,
}

#[derive(Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl PackumentFetcher {
    pub fn new(meta: Meta, client: UpstreamClient, settings: &UpstreamSettings, max_bytes: u64) -> Self {
        PackumentFetcher {
            meta,
            client,
            settings: settings.clone(),
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, e: &Arc<Entry>| e.weight)
                .expire_after(EntryExpiry)
                .support_invalidation_closures()
                .build(),
            forgotten: Changes::default(),
            breakers: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the parsed documents of `name` from every upstream: the next request
    /// reads the stored copy (or, when it was purged, asks the upstream).
    pub fn forget(&self, name: &PackageName) {
        self.forgotten.record();
        let name = name.clone();
        if let Err(e) = self.entries.invalidate_entries_if(move |key, _| key.1 == name) {
            tracing::error!(error = %e, "cannot forget upstream documents");
        }
    }

    pub async fn get(&self, remote: &Remote, name: &PackageName) -> Result<Arc<UpstreamDoc>, UpstreamError> {
        let key = (remote.id, name.clone());
        let read = self.forgotten.mark();
        let entry = self
            .entries
            .try_get_with(key.clone(), self.fetch(remote, name))
            .await
            .map_err(|e| (*e).clone())?;
        self.forgotten.drop_if_overtaken(&self.entries, &key, read).await;
        Ok(entry.doc.clone())
    }

    async fn fetch(&self, remote: &Remote, name: &PackageName) -> Result<Arc<Entry>, UpstreamError> {
        let stored = self.meta.stored_packument(remote.id, name).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read stored upstream packument");
            None
        });
        let max_age = Duration::from_secs(self.settings.max_age_secs);
        if let Some(copy) = &stored
            && now_millis() - copy.fetched_at < i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX)
        {
            // Fresh enough (e.g. fetched before a restart): no request at all.
            let remaining = max_age.saturating_sub(Duration::from_millis(
                u64::try_from(now_millis() - copy.fetched_at).unwrap_or(0),
            ));
            return found(copy, false, remaining).await;
        }
        let url = format!("{}{}", remote.base, name.escaped());
        let result = if self.breaker_open(remote.id) {
            Err(UpstreamError::CircuitOpen(remote.base.clone()))
        } else {
            let etag = stored.as_ref().and_then(|s| s.etag.as_deref());
            let modified = stored.as_ref().and_then(|s| s.last_modified.as_deref());
            self.client.packument(&url, &remote.auth, etag, modified).await
        };
        match result {
            Ok(fetched) => {
                self.record_success(remote.id);
                self.accept(remote, name, stored, fetched, max_age).await
            }
            Err(error) => {
                self.record_failure(remote.id, &error);
                match stored {
                    Some(copy) => {
                        tracing::warn!(upstream = %remote.base, pkg.name = %name, error = %error, "upstream failed; serving the stored copy");
                        found(&copy, true, STALE_RETRY).await
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn accept(
        &self,
        remote: &Remote,
        name: &PackageName,
        stored: Option<StoredPackument>,
        fetched: Fetched,
        max_age: Duration,
    ) -> Result<Arc<Entry>, UpstreamError> {
        match fetched {
            Fetched::NotModified => {
                let Some(copy) = stored else {
                    return Err(UpstreamError::Invalid(
                        remote.base.clone(),
                        "304 without a stored copy".into(),
                    ));
                };
                if let Err(e) = self.meta.touch_packument(remote.id, name, now_millis()).await {
                    tracing::error!(error = %e, "cannot record upstream revalidation");
                }
                found(&copy, false, max_age).await
            }
            Fetched::NotFound => {
                if stored.is_some()
                    && let Err(e) = self.meta.delete_packument(remote.id, name).await
                {
                    tracing::error!(error = %e, "cannot drop stored upstream packument");
                }
                Ok(Arc::new(Entry {
                    doc: Arc::new(UpstreamDoc::NotFound),
                    ttl: Duration::from_secs(self.settings.not_found_ttl_secs),
                    weight: 256,
                }))
            }
            Fetched::Body {
                body,
                etag,
                last_modified,
            } => {
                let copy = StoredPackument {
                    body: body.to_vec(),
                    etag,
                    last_modified,
                    fetched_at: now_millis(),
                };
                let entry = found(&copy, false, max_age).await.map_err(|e| match e {
                    UpstreamError::Invalid(_, why) => UpstreamError::Invalid(remote.base.clone(), why),
                    other => other,
                })?;
                if let UpstreamDoc::Found { doc, .. } = entry.doc.as_ref()
                    && doc.get("name").and_then(Value::as_str) != Some(name.as_str())
                {
                    return Err(UpstreamError::Invalid(
                        remote.base.clone(),
                        format!("packument for {name} names another package"),
                    ));
                }
                if let Err(e) = self.meta.store_packument(remote.id, name, &copy).await {
                    tracing::error!(error = %e, "cannot store upstream packument");
                }
                Ok(entry)
            }
        }
    }

    fn breaker_open(&self, id: UpstreamId) -> bool {
        let Ok(breakers) = self.breakers.lock() else {
            return false;
        };
        breakers
            .get(&id)
            .and_then(|b| b.open_until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn record_success(&self, id: UpstreamId) {
        if let Ok(mut breakers) = self.breakers.lock() {
            breakers.remove(&id);
        }
    }

    fn record_failure(&self, id: UpstreamId, error: &UpstreamError) {
        if matches!(error, UpstreamError::CircuitOpen(_)) {
            return;
        }
        if let Ok(mut breakers) = self.breakers.lock() {
            let breaker = breakers.entry(id).or_default();
            breaker.consecutive_failures += 1;
            if breaker.consecutive_failures >= self.settings.breaker_failures {
                tracing::warn!(upstream.id = id.0, "upstream failing repeatedly; circuit breaker open");
                breaker.open_until = Some(Instant::now() + Duration::from_secs(self.settings.breaker_open_secs));
                breaker.consecutive_failures = 0;
            }
        }
    }

    /// Whether calls to this upstream are currently suspended (for tarball pulls too).
    pub fn is_suspended(&self, id: UpstreamId) -> bool {
        self.breaker_open(id)
    }

    pub fn note_failure(&self, id: UpstreamId, error: &UpstreamError) {
        self.record_failure(id, error);
    }

    pub fn note_success(&self, id: UpstreamId) {
        self.record_success(id);
    }
}

/// Parses a stored copy (off the runtime: packuments can be megabytes).
async fn found(copy: &StoredPackument, stale: bool, ttl: Duration) -> Result<Arc<Entry>, UpstreamError> {
    let body = copy.body.clone();
    let doc: Value = tokio::task::spawn_blocking(move || serde_json::from_slice(&body))
        .await
        .map_err(|e| UpstreamError::Invalid(String::new(), e.to_string()))?
        .map_err(|e| UpstreamError::Invalid(String::new(), format!("packument is not valid JSON: {e}")))?;
    if !doc.get("versions").is_some_and(Value::is_object) {
        return Err(UpstreamError::Invalid(
            String::new(),
            "packument has no versions object".into(),
        ));
    }
    Ok(Arc::new(Entry {
        doc: Arc::new(UpstreamDoc::Found {
            doc: Arc::new(doc),
            stale,
        }),
        ttl: ttl.min(HOLD_PARSED),
        // Parsed JSON takes a few times its text; close enough for a memory bound.
        weight: u32::try_from(copy.body.len().saturating_mul(3)).unwrap_or(u32::MAX),
    }))
}
