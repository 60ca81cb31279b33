//! The application: configuration plus the long-lived parts every request uses.

use std::sync::Arc;

use crate::auth::web_login::WebLogins;
use crate::auth::{Authenticator, password};
use crate::blob_journal::{self, BlobJournal, JournalError};
use crate::config::{Config, PublicUrl};
use crate::packument_cache::PackumentCache;
use crate::registry::RegistryName;
use crate::store::blobs::{Blobs, FsBlobStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{AuditEntry, ChangeKind, Meta, NewUpstream, Registry, RegistryId, StoreError, UserId};
use crate::upstream::Upstreams;
use crate::upstream::pull::Pulls;
use crate::upstream::spec::UpstreamSpec;
use moka::future::Cache;

pub struct App {
    pub config: Config,
    pub public_url: PublicUrl,
    pub meta: Meta,
    pub blobs: Blobs,
    pub packuments: PackumentCache,
    pub auth: Authenticator,
    pub web_logins: WebLogins,
    pub upstreams: Arc<Upstreams>,
    /// Registries and roles, read on every request.
    pub access: AccessCache,
    /// Tarball pulls in flight, so concurrent downloads of a version share one.
    pub pulls: Pulls,
    /// Reads blobs from their files or, until those are written, from the blob
    /// journal; writes the journaled ones in the background.
    pub journal: BlobJournal,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path} is not usable: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    #[error("blob store: {0}")]
    Blobs(#[from] crate::store::blobs::BlobError),
    #[error("blob journal: {0}")]
    Journal(#[from] JournalError),
    #[error("GATEHOUSE_ADMIN_PASSWORD: {0}")]
    AdminPassword(#[from] password::PasswordError),
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("cannot set up the upstream HTTP client: {0}")]
    Http(String),
}

/// How often the change log is read.
const CHANGE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The registry every fresh installation starts with.
pub const DEFAULT_REGISTRY: &str = "default";

/// Opens the metadata store in the data dir (creating both if needed).
pub async fn open_meta(config: &Config) -> Result<Meta, StartError> {
    let dir = &config.data_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| StartError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    let store = SqliteStore::open(&config.database_path(), config.durability).await?;
    Ok(Arc::new(store))
}

impl App {
    /// Opens the stores and applies first-start setup: the `default` registry, the
    /// registries of the config file, and the `admin` user from the environment.
    pub async fn start(
        config: Config,
        public_url: PublicUrl,
        admin_password: Option<String>,
    ) -> Result<Arc<App>, StartError> {
        let meta = open_meta(&config).await?;
        let blobs: Blobs = Arc::new(FsBlobStore::open(&config.blob_dir(), config.durability).await?);
        // Before anything is served: a blob a crash lost must be back first.
        blob_journal::recover(&meta, &blobs).await?;
        let journal = BlobJournal::start(meta.clone(), blobs.clone());
        ensure_registries(&meta, &config).await?;
        if let Some(password) = admin_password {
            ensure_admin(&meta, password).await?;
        }
        let upstreams = Arc::new(
            Upstreams::new(meta.clone(), &config.upstream, config.packument_cache_bytes)
                .map_err(|e| StartError::Http(e.to_string()))?,
        );
        let packuments = PackumentCache::new(
            meta.clone(),
            upstreams.clone(),
            public_url.clone(),
            config.upstream.clone(),
            config.packument_cache_bytes,
        );
        Ok(Arc::new(App {
            auth: Authenticator::new(meta.clone()),
            web_logins: WebLogins::default(),
            access: AccessCache::new(meta.clone()),
            upstreams,
            pulls: Pulls::default(),
            journal,
            config,
            public_url,
            meta,
            blobs,
            packuments,
        }))
    }

    /// `{public}/r/{registry}` — the base of every URL we hand out for a registry.
    pub fn registry_base(&self, registry: &Registry) -> String {
        self.packuments.registry_base(registry)
    }

    /// Follows the database's change log so that changes made by other processes
    /// (the CLI, other replicas) reach this process's prepared packuments within
    /// `CHANGE_POLL`. Runs until the process ends.
    pub fn watch_changes(self: &Arc<Self>) {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = app.meta.last_change().await.unwrap_or(0);
            let mut ticks: u64 = 0;
            loop {
                tokio::time::sleep(CHANGE_POLL).await;
                ticks += 1;
                match app.meta.changes_since(seen).await {
                    Ok(changes) => {
                        for change in changes {
                            seen = seen.max(change.seq);
                            match change.kind {
                                // Applied to the caches when this process made it (and a
                                // pull updates its entry rather than dropping it).
                                ChangeKind::Package(_) if change.own => {}
                                ChangeKind::Package(name) => app.packuments.invalidate_everywhere(&name),
                                ChangeKind::Registry => {
                                    app.packuments.invalidate_all();
                                    app.access.invalidate_all();
                                }
                                ChangeKind::Credentials => app.auth.forget_tokens(),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
                }
                if ticks % 1200 == 0 {
                    let hour_ago = crate::store::now_millis() - 3_600_000;
                    if let Err(e) = app.meta.prune_changes(hour_ago).await {
                        tracing::warn!(error = %e, "cannot prune the change log");
                    }
                }
            }
        });
    }

    /// Best-effort audit: a failure to log is itself logged, never fails the request.
    pub async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.meta.append_audit(&entry).await {
            tracing::error!(error = %e, action = entry.action, "could not write audit log entry");
        }
    }
}

async fn ensure_registries(meta: &Meta, config: &Config) -> Result<(), StartError> {
    let default = RegistryName::parse(DEFAULT_REGISTRY).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let first_start = meta.registries().await?.is_empty();
    if first_start && !config.registries.contains_key(&default) {
        // A fresh install proxies the public registry out of the box.
        let registry = meta.create_registry(&default, false).await?;
        meta.add_upstream(
            registry.id,
            &NewUpstream {
                spec: UpstreamSpec::Npmjs.to_string(),
                ..NewUpstream::default()
            },
        )
        .await?;
        tracing::info!(registry = %default, "created registry with the public npm registry as upstream");
    }
    for (name, settings) in &config.registries {
        let registry = match meta.registry(name).await? {
            Some(existing) => {
                if existing.public_read != settings.public {
                    meta.set_registry_public(existing.id, settings.public).await?;
                }
                existing
            }
            None => {
                tracing::info!(registry = %name, public = settings.public, "created registry");
                meta.create_registry(name, settings.public).await?
            }
        };
        if let Some(specs) = &settings.upstreams {
            let mut upstreams = Vec::with_capacity(specs.len());
            for raw in specs {
                let spec = UpstreamSpec::parse(raw).map_err(|e| StartError::Registry {
                    registry: name.to_string(),
                    message: e.to_string(),
                })?;
                upstreams.push(NewUpstream {
                    spec: spec.to_string(),
                    ..NewUpstream::default()
                });
            }
            meta.set_upstreams(registry.id, &upstreams).await?;
        }
    }
    Ok(())
}

async fn ensure_admin(meta: &Meta, password: String) -> Result<(), StartError> {
    if meta.user("admin").await?.is_some() {
        return Ok(());
    }
    let hash = password::hash(password).await?;
    match meta.create_user("admin", None, &hash, true).await {
        Ok(_) | Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    meta.append_audit(&AuditEntry {
        actor: Some("system".into()),
        action: "user.create",
        detail: Some("admin created from GATEHOUSE_ADMIN_PASSWORD".into()),
        ..AuditEntry::default()
    })
    .await?;
    tracing::info!("created user admin from GATEHOUSE_ADMIN_PASSWORD");
    Ok(())
}

/// Registries by name and users' roles in them, as every request needs them. Kept
/// until the change log says a registry changed (at most `CHANGE_POLL` for changes
/// made by other processes).
pub struct AccessCache {
    meta: Meta,
    registries: Cache<RegistryName, Registry>,
    roles: Cache<(RegistryId, UserId), Option<crate::registry::Role>>,
}

impl AccessCache {
    fn new(meta: Meta) -> Self {
        AccessCache {
            meta,
            registries: Cache::builder().max_capacity(10_000).build(),
            roles: Cache::builder().max_capacity(100_000).build(),
        }
    }

    /// The registry named `name`; unknown names are not remembered (a new registry is
    /// served at once).
    pub async fn registry(&self, name: &RegistryName) -> Result<Option<Registry>, StoreError> {
        if let Some(registry) = self.registries.get(name).await {
            return Ok(Some(registry));
        }
        let found = self.meta.registry(name).await?;
        if let Some(registry) = &found {
            self.registries.insert(name.clone(), registry.clone()).await;
        }
        Ok(found)
    }

    /// The role granted to `user` on `registry` (not counting defaults).
    pub async fn member_role(
        &self,
        registry: RegistryId,
        user: UserId,
    ) -> Result<Option<crate::registry::Role>, StoreError> {
        if let Some(role) = self.roles.get(&(registry, user)).await {
            return Ok(role);
        }
        let role = self.meta.member_role(registry, user).await?;
        self.roles.insert((registry, user), role).await;
        Ok(role)
    }

    pub fn invalidate_all(&self) {
        self.registries.invalidate_all();
        self.roles.invalidate_all();
    }
}
