//! Registries, their upstreams and who may do what in them.

use gatehouse_store::registry::{RegistryName, Role};
use gatehouse_store::{AuditAction, Conflict, NewUpstream, Registry, StoreError, User};

use super::{Actor, Audited, ServiceError, ServiceResult, Services};
use crate::upstream::spec::UpstreamSpec;

/// An upstream to add to a registry.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub spec: UpstreamSpec,
    /// Bearer token for a remote registry (also used to push to it).
    pub token: Option<String>,
    /// `user:password` for a remote registry.
    pub basic_auth: Option<String>,
    /// Trusted with packages flagged internal.
    pub internal: bool,
}

/// What `change_upstream` does to one upstream.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamChange {
    Earlier,
    Later,
    Internal(bool),
}

impl UpstreamRequest {
    pub fn plain(spec: UpstreamSpec) -> Self {
        UpstreamRequest {
            spec,
            token: None,
            basic_auth: None,
            internal: false,
        }
    }
}

impl Services {
    pub async fn registry(&self, name: &RegistryName) -> ServiceResult<Registry> {
        self.meta
            .registry(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no registry named \"{name}\"")))
    }

    pub async fn registries(&self) -> ServiceResult<Vec<Registry>> {
        Ok(self.meta.registries().await?)
    }

    /// Creates a registry with its upstreams; every upstream is checked before
    /// anything is written.
    pub async fn create_registry(
        &self,
        actor: &Actor,
        name: &RegistryName,
        public: bool,
        upstreams: &[UpstreamRequest],
    ) -> ServiceResult<Registry> {
        for upstream in upstreams {
            self.check_upstream(name, upstream).await?;
        }
        let registry = match self.meta.create_registry(name, public).await {
            Ok(registry) => registry,
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "a registry named \"{name}\" already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if !upstreams.is_empty() {
            self.meta.set_upstreams(registry.id, &rows(upstreams)).await?;
        }
        self.caches.registry_changed();
        let detail = upstreams
            .iter()
            .map(|u| u.spec.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let entry = Audited::new(AuditAction::RegistryCreate)
            .registry(&registry)
            .detail(format!("public={public} upstreams={detail}"));
        self.record(actor, entry).await;
        Ok(registry)
    }

    pub async fn set_registry_public(&self, actor: &Actor, registry: &Registry, public: bool) -> ServiceResult<()> {
        self.meta.set_registry_public(registry.id, public).await?;
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::RegistryVisibility)
            .registry(registry)
            .detail(format!("public={public}"));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Deletes a registry and everything in it; refused while another registry pulls
    /// from it.
    pub async fn delete_registry(&self, actor: &Actor, registry: &Registry) -> ServiceResult<()> {
        let mut users = Vec::new();
        for other in self.meta.registries().await? {
            let pulls_from_it = self.meta.upstreams(other.id).await?.iter().any(|u| {
                UpstreamSpec::parse(&u.spec).is_ok_and(|s| s == UpstreamSpec::Registry(registry.name.clone()))
            });
            if pulls_from_it {
                users.push(other.name.to_string());
            }
        }
        if !users.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "registry {} is an upstream of {}; remove it from their upstreams first",
                registry.name,
                users.join(", ")
            )));
        }
        self.meta.delete_registry(registry.id).await?;
        self.caches.registry_changed();
        self.record(actor, Audited::new(AuditAction::RegistryDelete).registry(registry))
            .await;
        Ok(())
    }

    /// Renames a registry: it is served at `/r/NEW/` from now on; registries pulling
    /// from it and tokens limited to it follow.
    pub async fn rename_registry(&self, actor: &Actor, registry: &Registry, new: &RegistryName) -> ServiceResult<()> {
        match self.meta.rename_registry(registry.id, &registry.name, new).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "a registry named \"{new}\" already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        self.caches.registry_changed();
        self.caches.credentials_changed();
        let entry = Audited::new(AuditAction::RegistryRename)
            .registry(registry)
            .detail(format!("{} -> {new}", registry.name));
        self.record(actor, entry).await;
        Ok(())
    }

    /// A copy of `registry` named `name`: its settings, upstreams, grants, claims and
    /// packages (their tarballs are shared, not copied).
    pub async fn clone_registry(
        &self,
        actor: &Actor,
        registry: &Registry,
        name: &RegistryName,
    ) -> ServiceResult<Registry> {
        let clone = match self.meta.clone_registry(registry.id, name).await {
            Ok(clone) => clone,
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "a registry named \"{name}\" already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::RegistryClone)
            .registry(&clone)
            .detail(format!("from {}", registry.name));
        self.record(actor, entry).await;
        Ok(clone)
    }

    /// What every logged-in user may do without a grant: `None` (nothing), read or publish.
    pub async fn set_default_role(&self, actor: &Actor, registry: &Registry, role: Option<Role>) -> ServiceResult<()> {
        if role == Some(Role::Admin) {
            return Err(ServiceError::Invalid(
                "the default role can be none, read or publish; grant admin to users one by one".into(),
            ));
        }
        self.meta.set_default_role(registry.id, role).await?;
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::RegistryDefaultRole)
            .registry(registry)
            .detail(role.map_or("none", Role::as_str));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Grants `role` to `user` on `registry`, or (`None`) removes the grant.
    pub async fn set_member_role(
        &self,
        actor: &Actor,
        registry: &Registry,
        user: &User,
        role: Option<Role>,
    ) -> ServiceResult<()> {
        self.meta.set_member_role(registry.id, user.id, role).await?;
        self.caches.registry_changed();
        let entry = match role {
            Some(role) => Audited::new(AuditAction::RegistryGrant).detail(format!("{} {role}", user.name)),
            None => Audited::new(AuditAction::RegistryRevoke).detail(user.name.clone()),
        };
        self.record(actor, entry.registry(registry)).await;
        Ok(())
    }

    /// Appends an upstream to the registry's list.
    pub async fn add_upstream(
        &self,
        actor: &Actor,
        registry: &Registry,
        upstream: &UpstreamRequest,
    ) -> ServiceResult<()> {
        self.check_upstream(&registry.name, upstream).await?;
        match self.meta.add_upstream(registry.id, &row(upstream)).await {
            Ok(()) => {}
            Err(StoreError::Conflict(Conflict::UpstreamExists)) => {
                return Err(ServiceError::Conflict(format!(
                    "{} already has upstream {}",
                    registry.name, upstream.spec
                )));
            }
            Err(e) => return Err(e.into()),
        }
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::RegistryUpstreamAdd)
            .registry(registry)
            .detail(upstream.spec.to_string());
        self.record(actor, entry).await;
        Ok(())
    }

    pub async fn remove_upstream(&self, actor: &Actor, registry: &Registry, spec: &UpstreamSpec) -> ServiceResult<()> {
        if !self.meta.remove_upstream(registry.id, &spec.to_string()).await? {
            return Err(ServiceError::NotFound(format!(
                "{} has no upstream {spec}",
                registry.name
            )));
        }
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::RegistryUpstreamRemove)
            .registry(registry)
            .detail(spec.to_string());
        self.record(actor, entry).await;
        Ok(())
    }

    /// Moves an upstream one place earlier (`earlier`) or later in the order they are
    /// asked, or sets its internal flag; the rest of the list stays as it is.
    pub async fn change_upstream(
        &self,
        actor: &Actor,
        registry: &Registry,
        spec: &UpstreamSpec,
        change: UpstreamChange,
    ) -> ServiceResult<()> {
        let mut list: Vec<NewUpstream> = self
            .meta
            .upstreams(registry.id)
            .await?
            .into_iter()
            .map(|u| NewUpstream {
                spec: u.spec,
                token: u.token,
                basic_auth: u.basic_auth,
                internal: u.internal,
            })
            .collect();
        let shown = spec.to_string();
        let Some(at) = list.iter().position(|u| u.spec == shown) else {
            return Err(ServiceError::NotFound(format!(
                "{} has no upstream {spec}",
                registry.name
            )));
        };
        let detail = match change {
            UpstreamChange::Earlier if at > 0 => {
                list.swap(at, at - 1);
                format!("{spec} moved to place {at}")
            }
            UpstreamChange::Later if at + 1 < list.len() => {
                list.swap(at, at + 1);
                format!("{spec} moved to place {}", at + 2)
            }
            UpstreamChange::Earlier | UpstreamChange::Later => return Ok(()),
            UpstreamChange::Internal(internal) => {
                list[at].internal = internal;
                format!("{spec} internal={internal}")
            }
        };
        self.meta.set_upstreams(registry.id, &list).await?;
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::RegistryUpstreamChange)
            .registry(registry)
            .detail(detail);
        self.record(actor, entry).await;
        Ok(())
    }

    /// Replaces the registry's whole upstream list (the configuration file's).
    pub async fn set_upstreams(&self, registry: &Registry, upstreams: &[UpstreamRequest]) -> ServiceResult<()> {
        for upstream in upstreams {
            self.check_upstream(&registry.name, upstream).await?;
        }
        self.meta.set_upstreams(registry.id, &rows(upstreams)).await?;
        self.caches.registry_changed();
        Ok(())
    }

    /// A registry upstream must be another registry that exists; credentials go with URLs.
    async fn check_upstream(&self, registry: &RegistryName, upstream: &UpstreamRequest) -> ServiceResult<()> {
        if let UpstreamSpec::Registry(other) = &upstream.spec {
            if other == registry {
                return Err(ServiceError::Invalid("a registry cannot be its own upstream".into()));
            }
            if self.meta.registry(other).await?.is_none() {
                return Err(ServiceError::NotFound(format!(
                    "upstream registry:{other}: no registry named \"{other}\""
                )));
            }
        }
        if upstream.basic_auth.as_deref().is_some_and(|b| !b.contains(':')) {
            return Err(ServiceError::Invalid(
                "basic credentials take the form user:password".into(),
            ));
        }
        Ok(())
    }
}

fn row(upstream: &UpstreamRequest) -> NewUpstream {
    NewUpstream {
        spec: upstream.spec.to_string(),
        token: upstream.token.clone(),
        basic_auth: upstream.basic_auth.clone(),
        internal: upstream.internal,
    }
}

fn rows(upstreams: &[UpstreamRequest]) -> Vec<NewUpstream> {
    upstreams.iter().map(row).collect()
}
