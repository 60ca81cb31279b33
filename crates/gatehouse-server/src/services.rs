//! Every write that is not a new version (those go through `admission`): each
//! validates, writes to the store, drops what this process cached, and audits. The
//! npm routes, the admin API and the CLI all call these, so a rule lives in one place.
//!
//! Other processes learn of a write from the store's change log; `Caches` only makes
//! this process see it at once. The CLI has no caches of its own.

mod packages;
mod policy;
mod registries;
mod trust;
mod users;

use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_npm::name::PackageName;
use gatehouse_store::{AuditAction, AuditEntry, Meta, Registry, RegistryId, StoreError};

pub use policy::{ExceptionRequest, parse_expiry, split_spec};
pub use registries::{UpstreamChange, UpstreamRequest};
pub use trust::{ExchangeError, Exchanged, TrustConfig};
pub use users::{Creation, NewUser, TokenRef};

use crate::access::AccessCache;
use crate::auth::Authenticator;
use crate::auth::password::PasswordError;
use crate::firewall::Firewall;
use crate::packument_cache::PackumentCache;

/// Who asks for a write, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub name: Option<String>,
    pub client_addr: Option<IpAddr>,
}

impl Actor {
    /// An administrator at the command line.
    pub fn cli() -> Self {
        Actor {
            name: Some("cli".into()),
            client_addr: None,
        }
    }

    /// The server itself (first-start setup).
    pub fn system() -> Self {
        Actor {
            name: Some("system".into()),
            client_addr: None,
        }
    }
}

/// A write refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or a concurrent change won; the message says what.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// What this process caches and a write must drop. Empty in the CLI.
#[derive(Clone, Default)]
pub struct Caches {
    pub packuments: Option<PackumentCache>,
    pub access: Option<Arc<AccessCache>>,
    pub auth: Option<Arc<Authenticator>>,
    pub firewall: Option<Arc<Firewall>>,
}

impl Caches {
    async fn package_changed(&self, registry: RegistryId, name: &PackageName) {
        if let Some(packuments) = &self.packuments {
            packuments.invalidate(registry, name).await;
        }
    }

    async fn upstream_copies_purged(&self, registry: RegistryId, name: &PackageName) {
        if let Some(packuments) = &self.packuments {
            packuments.purge(registry, name).await;
        }
    }

    fn registry_changed(&self) {
        if let Some(packuments) = &self.packuments {
            packuments.invalidate_all();
        }
        if let Some(access) = &self.access {
            access.invalidate_all();
        }
    }

    /// A policy changed: prepared packages are decided again (others' requests keep
    /// being served from the old entries meanwhile; the change's own waits for it).
    async fn policy_changed(&self) {
        if let Some(firewall) = &self.firewall {
            firewall.forget_policies();
        }
        if let Some(packuments) = &self.packuments {
            packuments.refresh(None).await;
        }
    }

    /// New advisory data: the packages it names are decided again, as for a policy.
    async fn advisories_changed(&self, packages: &[String]) {
        if let Some(firewall) = &self.firewall {
            firewall.forget_advisories_basis();
        }
        if let Some(packuments) = &self.packuments {
            packuments
                .refresh(Some(
                    packages.iter().filter_map(|n| PackageName::parse(n).ok()).collect(),
                ))
                .await;
        }
    }

    fn credentials_changed(&self) {
        if let Some(auth) = &self.auth {
            auth.forget_tokens();
        }
    }
}

/// The write services. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    meta: Meta,
    caches: Caches,
}

/// What an audit entry says beyond who did it.
struct Audited<'a> {
    action: AuditAction,
    registry: Option<&'a Registry>,
    package: Option<&'a PackageName>,
    version: Option<&'a str>,
    detail: Option<String>,
}

impl<'a> Audited<'a> {
    fn new(action: AuditAction) -> Self {
        Audited {
            action,
            registry: None,
            package: None,
            version: None,
            detail: None,
        }
    }

    fn registry(mut self, registry: &'a Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    fn package(mut self, package: &'a PackageName) -> Self {
        self.package = Some(package);
        self
    }

    fn version(mut self, version: &'a str) -> Self {
        self.version = Some(version);
        self
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl Services {
    pub fn new(meta: Meta, caches: Caches) -> Self {
        Services { meta, caches }
    }

    /// Writes an audit entry. A failure to log is itself logged and never fails the
    /// write it records: that has happened already.
    pub async fn audit(&self, actor: &Actor, action: AuditAction, registry: Option<&Registry>, detail: Option<String>) {
        let mut entry = Audited::new(action);
        entry.registry = registry;
        entry.detail = detail;
        self.record(actor, entry).await;
    }

    async fn record(&self, actor: &Actor, entry: Audited<'_>) {
        let action = entry.action;
        let written = self
            .meta
            .append_audit(&AuditEntry {
                actor: actor.name.clone(),
                action,
                registry: entry.registry.map(|r| r.name.to_string()),
                package: entry.package.map(ToString::to_string),
                version: entry.version.map(str::to_owned),
                detail: entry.detail,
                client_addr: actor.client_addr.map(|ip| ip.to_string()),
            })
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, %action, "could not write audit log entry");
        }
    }
}
