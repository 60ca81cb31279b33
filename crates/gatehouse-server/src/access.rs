//! Who may do what: the access rules every surface (npm routes, admin API) applies,
//! and the cache of registries and roles they read on every request.

use std::sync::Arc;

use gatehouse_npm::name::PackageName;
use gatehouse_store::registry::{RegistryName, Role};
use gatehouse_store::{Maintainer, Meta, Registry, RegistryId, StoreError, UserId};
use moka::future::Cache;

use crate::auth::Principal;
use crate::store_cache::StoreCache;

/// A refusal, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "authentication required: log in with `npm login --registry {registry_url}/` or configure a token for this registry"
    )]
    LoginRequired { registry_url: String },
    #[error("user \"{user}\" has no access to registry \"{registry}\"; ask an administrator for a role")]
    NoRole { user: String, registry: RegistryName },
    #[error("this token is read-only; use a token with publish scope to change packages")]
    ReadOnlyToken,
    #[error("user \"{user}\" may not publish to registry \"{registry}\"; ask an administrator for the publish role")]
    NoPublishRole { user: String, registry: RegistryName },
    #[error("You do not have permission to change \"{package}\". Are you logged in as the correct user?")]
    NotMaintainer { package: PackageName },
    #[error("this token is limited to other packages and may not be used for \"{package}\"")]
    TokenForOtherPackages { package: PackageName },
    #[error("this token is not valid for registry \"{registry}\"; use a token created for it")]
    TokenForOtherRegistry { registry: RegistryName },
    #[error(
        "this token came from trusted publishing and only publishes new versions of {packages}; \
         use a maintainer's own token for anything else"
    )]
    TrustedPublishingOnly { packages: String },
    #[error("the admin API needs an administrator's token")]
    AdminLoginRequired,
    #[error("the admin API is for administrators with a read-write token")]
    AdminOnly,
}

/// One caller's standing in one registry: what every access check reads.
pub struct Access<'a> {
    pub registry: &'a Registry,
    pub principal: Option<&'a Principal>,
    /// The caller's role in the registry (`None`: no access beyond public reads).
    pub role: Option<Role>,
    /// `{public}/r/{registry}`, named in the login hint.
    pub registry_url: &'a str,
}

impl<'a> Access<'a> {
    /// Private registries answer 401 to anonymous callers, so clients ask for credentials.
    pub fn require_read(&self) -> Result<(), AccessError> {
        match (self.principal, self.role) {
            _ if self.registry.public_read => Ok(()),
            (None, _) => Err(self.login_required()),
            (Some(_), Some(_)) => Ok(()),
            (Some(p), None) => Err(AccessError::NoRole {
                user: p.user.name.clone(),
                registry: self.registry.name.clone(),
            }),
        }
    }

    /// A signed-in caller, acting as themselves (not through a trusted-publishing token,
    /// which only publishes: see [`Access::require_publisher`]).
    pub fn require_user(&self) -> Result<&'a Principal, AccessError> {
        let principal = self.principal.ok_or_else(|| self.login_required())?;
        refuse_trusted_publishing(principal)?;
        Ok(principal)
    }

    /// A caller allowed to change things: logged in with publish rights, and not
    /// through a read-only token.
    pub fn require_writer(&self) -> Result<&'a Principal, AccessError> {
        let principal = self.require_user()?;
        self.require_publish_role(principal)
    }

    /// A caller allowed to publish: a writer, or a trusted-publishing token (its
    /// package limit is checked with the package).
    pub fn require_publisher(&self) -> Result<&'a Principal, AccessError> {
        let principal = self.principal.ok_or_else(|| self.login_required())?;
        self.require_publish_role(principal)
    }

    fn require_publish_role(&self, principal: &'a Principal) -> Result<&'a Principal, AccessError> {
        if principal.is_readonly() {
            return Err(AccessError::ReadOnlyToken);
        }
        if self.role < Some(Role::Publish) {
            return Err(AccessError::NoPublishRole {
                user: principal.user.name.clone(),
                registry: self.registry.name.clone(),
            });
        }
        Ok(principal)
    }

    /// A writer who maintains the package, or administers the registry.
    pub fn require_maintainer(
        &self,
        package: &PackageName,
        maintainers: &[Maintainer],
    ) -> Result<&'a Principal, AccessError> {
        let principal = self.require_writer()?;
        let name = &principal.user.name;
        if self.role == Some(Role::Admin) || maintainers.iter().any(|m| &m.name == name) {
            Ok(principal)
        } else {
            Err(AccessError::NotMaintainer {
                package: package.clone(),
            })
        }
    }

    /// A token limited to other packages is refused, whether or not the package exists.
    pub fn check_token_package(&self, package: &PackageName) -> Result<(), AccessError> {
        match self.principal {
            Some(principal) if !principal.may_use_package(package.as_str()) => {
                Err(AccessError::TokenForOtherPackages {
                    package: package.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    fn login_required(&self) -> AccessError {
        AccessError::LoginRequired {
            registry_url: self.registry_url.to_owned(),
        }
    }
}

/// A token limited to other registries is refused there.
pub fn check_token_registry(principal: &Principal, registry: &RegistryName) -> Result<(), AccessError> {
    if principal.may_use_registry(registry.as_str()) {
        Ok(())
    } else {
        Err(AccessError::TokenForOtherRegistry {
            registry: registry.clone(),
        })
    }
}

/// A trusted-publishing token is refused for everything but a publish.
fn refuse_trusted_publishing(principal: &Principal) -> Result<(), AccessError> {
    match &principal.token {
        Some(token) if token.published_by.is_some() => Err(AccessError::TrustedPublishingOnly {
            packages: token.packages.join(", "),
        }),
        _ => Ok(()),
    }
}

/// The admin API: administrators with a read-write credential.
pub fn require_admin(principal: Option<&Principal>) -> Result<&Principal, AccessError> {
    let principal = principal.ok_or(AccessError::AdminLoginRequired)?;
    refuse_trusted_publishing(principal)?;
    if !principal.user.is_admin || principal.is_readonly() {
        return Err(AccessError::AdminOnly);
    }
    Ok(principal)
}

/// Registries by name and users' roles in them, as every request needs them. Kept
/// until the change log says a registry changed.
pub struct AccessCache {
    meta: Meta,
    registries: StoreCache<RegistryName, Registry>,
    roles: StoreCache<(RegistryId, UserId), Option<Role>>,
}

impl AccessCache {
    pub fn new(meta: Meta) -> Arc<Self> {
        Arc::new(AccessCache {
            meta,
            registries: StoreCache::new(Cache::builder().max_capacity(10_000).build()),
            roles: StoreCache::new(Cache::builder().max_capacity(100_000).build()),
        })
    }

    /// The registry named `name`; unknown names are not remembered (a new registry is
    /// served at once).
    pub async fn registry(&self, name: &RegistryName) -> Result<Option<Registry>, StoreError> {
        if let Some(registry) = self.registries.get(name).await {
            return Ok(Some(registry));
        }
        let read = self.registries.mark();
        let found = self.meta.registry(name).await?;
        if let Some(registry) = &found {
            self.registries.insert(read, name.clone(), registry.clone()).await;
        }
        Ok(found)
    }

    /// The role granted to `user` on `registry` (not counting defaults).
    pub async fn member_role(&self, registry: RegistryId, user: UserId) -> Result<Option<Role>, StoreError> {
        if let Some(role) = self.roles.get(&(registry, user)).await {
            return Ok(role);
        }
        let read = self.roles.mark();
        let role = self.meta.member_role(registry, user).await?;
        self.roles.insert(read, (registry, user), role).await;
        Ok(role)
    }

    /// Global admins administer everything; otherwise an explicit grant, else the
    /// registry's default for logged-in users. A read-only token caps the role at read.
    pub async fn effective_role(&self, registry: &Registry, principal: &Principal) -> Result<Option<Role>, StoreError> {
        let role = if principal.user.is_admin {
            Some(Role::Admin)
        } else {
            self.member_role(registry.id, principal.user.id)
                .await?
                .or(registry.default_role)
        };
        Ok(if principal.is_readonly() {
            role.map(|r| r.min(Role::Read))
        } else {
            role
        })
    }

    pub fn invalidate_all(&self) {
        self.registries.invalidate_all();
        self.roles.invalidate_all();
    }
}
