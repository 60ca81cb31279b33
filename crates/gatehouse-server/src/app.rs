//! The application: configuration plus the long-lived parts, composed. Only the HTTP
//! layer and the CLI see it; every part below takes exactly what it uses.

use std::sync::Arc;

use gatehouse_npm::tarball::TarballLimits;
use gatehouse_store::blobs::Blobs;
use gatehouse_store::registry::RegistryName;
use gatehouse_store::storage::{self, JournalTask, OpenError, Storage};
use gatehouse_store::{ChangeKind, Meta, Registry, StoreError};

use crate::access::AccessCache;
use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::auth::session::Sessions;
use crate::auth::web_login::WebLogins;
use crate::config::{Config, PublicUrl};
use crate::firewall::Firewall;
use crate::oidc::Issuers;
use crate::packument_cache::PackumentCache;
use crate::services::{Actor, Caches, Creation, NewUser, ServiceError, Services, UpstreamRequest};
use crate::upstream::Upstreams;
use crate::upstream::pull::Pulls;
use crate::upstream::push::Promotion;
use crate::upstream::spec::UpstreamSpec;

pub struct App {
    pub config: Config,
    pub public_url: PublicUrl,
    pub meta: Meta,
    /// The one way anything reads or writes a tarball.
    pub blobs: Blobs,
    pub packuments: PackumentCache,
    /// Policies, and what the rules need per package.
    pub firewall: Arc<Firewall>,
    pub auth: Arc<Authenticator>,
    pub web_logins: WebLogins,
    /// New tokens on their way to the one page that mints and shows them.
    pub shown_once: crate::http::ui::ShownOnce,
    /// Web app sign-ins.
    pub sessions: Sessions,
    /// Package pages' READMEs, rendered once per change.
    pub readmes: crate::readme::Readmes,
    pub upstreams: Arc<Upstreams>,
    /// Registries and roles, read on every request.
    pub access: Arc<AccessCache>,
    pub admission: Arc<Admission>,
    /// Tarball pulls, so concurrent downloads of a version share one.
    pub pulls: Arc<Pulls>,
    pub promotion: Promotion,
    pub services: Services,
    /// Trusted publishing's OIDC issuers and their keys.
    pub issuers: Arc<Issuers>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path} is not usable: {cause}")]
    DataDir {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] OpenError),
    // Printed with their sources (`{:#}`), so the messages don't repeat them.
    #[error("metadata store")]
    Store(#[from] StoreError),
    #[error("GATEHOUSE_ADMIN_PASSWORD: {0}")]
    AdminPassword(ServiceError),
    #[error("registry {registry}: {cause}")]
    Registry {
        registry: RegistryName,
        cause: ServiceError,
    },
    #[error("cannot set up the upstream HTTP client")]
    Http(#[from] reqwest::Error),
}

/// How often the change log is read when no wake-up comes first (PostgreSQL's
/// `LISTEN` wakes the reader at once; SQLite has no such thing).
const CHANGE_POLL: std::time::Duration = std::time::Duration::from_millis(500);
/// How often rows older than an hour are dropped from the change log.
const CHANGE_PRUNE: std::time::Duration = std::time::Duration::from_secs(600);

/// The registry every fresh installation starts with.
pub const DEFAULT_REGISTRY: &str = "default";

/// Opens the stores the configuration names, for a command that works on them
/// without serving (the CLI): the server writes journaled blobs, not the command.
pub async fn open_storage(config: &Config) -> Result<Storage, OpenError> {
    storage::open(
        config.database.clone(),
        config.blobs.clone(),
        config.durability,
        JournalTask::LeaveToServer,
    )
    .await
}

/// The write services as a command without caches uses them.
pub fn cli_services(meta: &Meta) -> Services {
    Services::new(meta.clone(), Caches::default())
}

impl App {
    /// Opens the stores and applies first-start setup: the `default` registry, the
    /// registries of the config file, and the `admin` user from the environment.
    pub async fn start(
        config: Config,
        public_url: PublicUrl,
        admin_password: Option<String>,
    ) -> Result<Arc<App>, StartError> {
        // The data directory holds the embedded stores by default, and is created on
        // first start.
        let fresh = !tokio::fs::try_exists(&config.data_dir).await.unwrap_or(false);
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(|cause| StartError::DataDir {
                path: config.data_dir.clone(),
                cause,
            })?;
        if fresh {
            tracing::info!(path = %config.data_dir.display(), "created the data directory");
        }
        let storage = storage::open(
            config.database.clone(),
            config.blobs.clone(),
            config.durability,
            JournalTask::Run,
        )
        .await?;
        let app = App::compose(config, public_url, storage)?;
        ensure_registries(&app.meta, &app.services, &app.config).await?;
        match admin_password {
            Some(password) => ensure_admin(&app.meta, &app.services, password).await?,
            None if !app.meta.users().await?.iter().any(|u| u.is_admin) => tracing::warn!(
                "no administrator exists: create one with `gatehouse user add NAME --admin --password-stdin`, \
                 or start once with GATEHOUSE_ADMIN_PASSWORD set"
            ),
            None => {}
        }
        Ok(app)
    }

    /// The application for a command that pulls or pushes (`gatehouse warm`, `push`)
    /// next to a server: no first-start setup (the configuration's registries are the
    /// server's to apply), and the server writes the journaled blobs.
    pub async fn for_command(config: Config, public_url: PublicUrl) -> Result<Arc<App>, StartError> {
        let storage = open_storage(&config).await?;
        App::compose(config, public_url, storage)
    }

    fn compose(config: Config, public_url: PublicUrl, storage: Storage) -> Result<Arc<App>, StartError> {
        let Storage { meta, blobs } = storage;
        let upstreams = Arc::new(Upstreams::new(
            meta.clone(),
            &config.upstream,
            config.packument_cache_bytes,
        )?);
        let firewall = Firewall::new(meta.clone(), config.advisories.stale_after.millis);
        let packuments = PackumentCache::new(
            meta.clone(),
            upstreams.clone(),
            public_url.clone(),
            config.upstream.clone(),
            firewall.clone(),
            config.packument_cache_bytes,
            matches!(config.database.url, gatehouse_store::storage::DatabaseUrl::Postgres(_)),
        );
        let limits = TarballLimits {
            max_unpacked_bytes: config.limits.max_unpacked_bytes,
            max_entries: config.limits.max_tarball_entries,
            ..TarballLimits::default()
        };
        let admission = Arc::new(Admission::new(
            meta.clone(),
            blobs.clone(),
            packuments.clone(),
            firewall.clone(),
            limits,
            config.internal_by_default,
            config.provenance_root.clone(),
        ));
        let pulls = Pulls::new(
            meta.clone(),
            blobs.clone(),
            packuments.clone(),
            upstreams.clone(),
            admission.clone(),
        );
        let promotion = Promotion::new(
            meta.clone(),
            blobs.clone(),
            packuments.clone(),
            upstreams.clone(),
            pulls.clone(),
            admission.clone(),
        );
        // The issuers' discovery documents and keys: the upstreams' timeouts, no redirects.
        let oidc_client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_millis(config.upstream.connect_timeout_ms))
            .timeout(std::time::Duration::from_millis(config.upstream.first_byte_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let issuers = Arc::new(Issuers::new(&config.oidc, &public_url, oidc_client));
        let auth = Arc::new(Authenticator::new(meta.clone()));
        let access = AccessCache::new(meta.clone());
        let services = Services::new(
            meta.clone(),
            Caches {
                packuments: Some(packuments.clone()),
                access: Some(access.clone()),
                auth: Some(auth.clone()),
                firewall: Some(firewall.clone()),
            },
        );
        Ok(Arc::new(App {
            auth,
            web_logins: WebLogins::new(meta.clone()),
            shown_once: crate::http::ui::ShownOnce::new(meta.clone()),
            readmes: crate::readme::Readmes::new(),
            sessions: Sessions::new(
                meta.clone(),
                std::time::Duration::from_millis(u64::try_from(config.web.session_ttl.millis).unwrap_or(0)),
            ),
            access,
            upstreams,
            admission,
            pulls,
            promotion,
            services,
            issuers,
            config,
            public_url,
            meta,
            blobs,
            packuments,
            firewall,
        }))
    }

    /// `{public}/r/{registry}` — the base of every URL we hand out for a registry.
    pub fn registry_base(&self, registry: &Registry) -> String {
        self.packuments.registry_base(registry)
    }

    /// Follows the database's change log so that changes made by other processes
    /// (the CLI, other replicas) reach this process's caches at once when the
    /// database wakes us, within `CHANGE_POLL` otherwise.
    /// Runs until the process ends.
    pub fn watch_changes(self: &Arc<Self>) {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = app.meta.last_change().await.unwrap_or(0);
            let wakeups = app.meta.change_wakeups();
            let mut last_prune = std::time::Instant::now();
            loop {
                match &wakeups {
                    Some(wakeups) => {
                        let _ = tokio::time::timeout(CHANGE_POLL, wakeups.notified()).await;
                    }
                    None => tokio::time::sleep(CHANGE_POLL).await,
                }
                match app.meta.changes_since(seen).await {
                    Ok(changes) => {
                        for change in changes {
                            seen = seen.max(change.seq);
                            match change.kind {
                                // Applied to the caches when this process made it (and a
                                // pull updates its entry rather than dropping it).
                                ChangeKind::Package(_) if change.own => {}
                                ChangeKind::Package(name) => {
                                    // Also the parsed upstream documents: a purge there
                                    // dropped the stored copies they came from.
                                    app.upstreams.fetcher.forget(&name);
                                    app.packuments.invalidate_everywhere(&name);
                                }
                                ChangeKind::Registry => {
                                    app.firewall.forget_policies();
                                    app.packuments.invalidate_all();
                                    app.access.invalidate_all();
                                }
                                // This process saw to what an import or a policy of its own touched.
                                ChangeKind::Advisories | ChangeKind::Policy if change.own => {}
                                ChangeKind::Advisories => {
                                    app.firewall.forget_advisories_basis();
                                    let packuments = app.packuments.clone();
                                    tokio::spawn(async move { packuments.refresh(None).await });
                                }
                                ChangeKind::Policy => {
                                    app.firewall.forget_policies();
                                    let packuments = app.packuments.clone();
                                    tokio::spawn(async move { packuments.refresh(None).await });
                                }
                                ChangeKind::Credentials => app.auth.forget_tokens(),
                                // Failed logins are counted in the store: nothing cached.
                                ChangeKind::LoginUnlocked(_) => {}
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
                }
                if last_prune.elapsed() >= CHANGE_PRUNE {
                    last_prune = std::time::Instant::now();
                    let hour_ago = gatehouse_store::now_millis() - 3_600_000;
                    if let Err(e) = app.meta.prune_changes(hour_ago).await {
                        tracing::warn!(error = %e, "cannot prune the change log");
                    }
                }
            }
        });
    }
}

/// The `default` registry on a fresh install, and the registries of the config file.
/// Everything is checked before anything is written: a bad entry changes nothing.
async fn ensure_registries(meta: &Meta, services: &Services, config: &Config) -> Result<(), StartError> {
    let registry_error = |registry: &RegistryName| {
        let registry = registry.clone();
        move |cause| StartError::Registry { registry, cause }
    };
    let default = RegistryName::parse(DEFAULT_REGISTRY).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let existing = meta.registries().await?;
    let mut wanted = Vec::with_capacity(config.registries.len());
    for (name, settings) in &config.registries {
        let upstreams = match &settings.upstreams {
            None => None,
            Some(specs) => {
                let mut upstreams = Vec::with_capacity(specs.len());
                for raw in specs {
                    let spec = UpstreamSpec::parse(raw).map_err(|e| StartError::Registry {
                        registry: name.clone(),
                        cause: ServiceError::Invalid(e.to_string()),
                    })?;
                    if let UpstreamSpec::Registry(other) = &spec
                        && !config.registries.contains_key(other)
                        && !existing.iter().any(|r| &r.name == other)
                    {
                        return Err(StartError::Registry {
                            registry: name.clone(),
                            cause: ServiceError::NotFound(format!("upstream {spec}: no registry named \"{other}\"")),
                        });
                    }
                    upstreams.push(UpstreamRequest::plain(spec));
                }
                Some(upstreams)
            }
        };
        wanted.push((name, settings.public, upstreams));
    }
    if existing.is_empty() && !config.registries.contains_key(&default) {
        // A fresh install proxies the public registry out of the box.
        let created = services
            .create_registry(
                &Actor::system(),
                &default,
                false,
                &[UpstreamRequest::plain(UpstreamSpec::Npmjs)],
            )
            .await;
        match created {
            Ok(_) => tracing::info!(registry = %default, "created registry with the public npm registry as upstream"),
            // Another process starting at the same moment created it.
            Err(ServiceError::Conflict(_)) => {}
            Err(e) => return Err(registry_error(&default)(e)),
        }
    }
    // Every registry first, then the upstream lists (which may name each other).
    let mut registries = Vec::with_capacity(wanted.len());
    for (name, public, upstreams) in wanted {
        let registry = match existing.iter().find(|r| &r.name == name) {
            Some(registry) if registry.public_read != public => {
                services
                    .set_registry_public(&Actor::system(), registry, public)
                    .await
                    .map_err(registry_error(name))?;
                registry.clone()
            }
            Some(registry) => registry.clone(),
            None => match services.create_registry(&Actor::system(), name, public, &[]).await {
                Ok(created) => {
                    tracing::info!(registry = %name, public, "created registry");
                    created
                }
                // Another process starting at the same moment created it.
                Err(ServiceError::Conflict(_)) => services.registry(name).await.map_err(registry_error(name))?,
                Err(e) => return Err(registry_error(name)(e)),
            },
        };
        registries.push((registry, upstreams));
    }
    for (registry, upstreams) in registries {
        if let Some(upstreams) = upstreams {
            services
                .set_upstreams(&registry, &upstreams)
                .await
                .map_err(registry_error(&registry.name))?;
        }
        let wanted = config.registries.get(&registry.name).and_then(|s| s.policy_document());
        if let Some(document) = wanted {
            let current = meta.policy(registry.id).await?.map(|row| row.document);
            if current.as_deref() != Some(document.as_str()) {
                services
                    .set_policy(&Actor::system(), &registry, Some(&document))
                    .await
                    .map_err(registry_error(&registry.name))?;
            }
        }
    }
    Ok(())
}

/// The `admin` user from `GATEHOUSE_ADMIN_PASSWORD`, unless it exists.
async fn ensure_admin(meta: &Meta, services: &Services, password: String) -> Result<(), StartError> {
    if meta.user("admin").await?.is_some() {
        tracing::info!(
            "GATEHOUSE_ADMIN_PASSWORD ignored: user admin exists (change its password with `gatehouse user passwd admin --password-stdin`)"
        );
        return Ok(());
    }
    let new = NewUser {
        name: "admin",
        email: None,
        password,
        admin: true,
    };
    match services
        .create_user(&Actor::system(), new, Creation::ByAdministrator)
        .await
    {
        Ok(_) => tracing::info!("created user admin from GATEHOUSE_ADMIN_PASSWORD"),
        // Another process starting at the same moment created it.
        Err(ServiceError::Conflict(_)) => {}
        Err(e) => return Err(StartError::AdminPassword(e)),
    }
    Ok(())
}
