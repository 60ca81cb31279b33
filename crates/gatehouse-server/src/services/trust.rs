//! Trusted publishing: the trust configurations of a package (which CI jobs may
//! publish it) and the exchange of a CI job's OIDC token for a token that publishes
//! that one package, in that one registry, for a few minutes.

use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::iso_time;
use gatehouse_npm::trust::{PublishedBy, PublisherKind, TrustRule};
use gatehouse_store::{AuditAction, Registry, TrustRow, User, now_millis};

use super::{Actor, Audited, ServiceError, ServiceResult, Services};
use crate::auth::token::{self, TokenSpec};
use crate::oidc::{Issuers, OidcError};

/// A stored configuration, read.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    pub row: TrustRow,
    pub rule: TrustRule,
}

impl TrustConfig {
    fn from_row(row: TrustRow) -> ServiceResult<TrustConfig> {
        let rule = serde_json::from_str(&row.rule)
            .map_err(|e| ServiceError::Store(gatehouse_store::StoreError::Corrupt(format!("trust rule: {e}"))))?;
        Ok(TrustConfig { row, rule })
    }

    /// As `npm trust list` shows it.
    pub fn to_npm(&self) -> serde_json::Value {
        self.rule.to_npm(&self.row.id.to_string())
    }
}

/// A token a CI job exchanged its OIDC token for.
#[derive(Debug)]
pub struct Exchanged {
    pub secret: String,
    pub expires_at: i64,
    pub registry: Registry,
    pub published_by: PublishedBy,
}

/// Why an exchange was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// No trust configuration matches; the message says which check failed.
    #[error("{0}")]
    NoMatch(String),
    /// The root form matched configurations in several registries.
    #[error("{0}")]
    Ambiguous(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<gatehouse_store::StoreError> for ExchangeError {
    fn from(e: gatehouse_store::StoreError) -> Self {
        ExchangeError::Service(e.into())
    }
}

impl Services {
    pub async fn trust_configs(&self, registry: &Registry, name: &PackageName) -> ServiceResult<Vec<TrustConfig>> {
        self.meta
            .trusted_publishers(Some(registry.id), name)
            .await?
            .into_iter()
            .map(TrustConfig::from_row)
            .collect()
    }

    /// Adds trust configurations; `creator` is the user whose token the exchanges mint
    /// (the package's first maintainer when its first version comes from CI). The caller
    /// has checked that `creator` may: a maintainer, or a registry admin for a new name.
    pub async fn add_trust(
        &self,
        actor: &Actor,
        registry: &Registry,
        name: &PackageName,
        creator: &User,
        rules: &[TrustRule],
    ) -> ServiceResult<Vec<TrustConfig>> {
        let mut added = Vec::with_capacity(rules.len());
        for rule in rules {
            let json = serde_json::to_string(rule).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            let row = self
                .meta
                .add_trusted_publisher(registry.id, name, rule.kind.as_str(), &json, &creator.name)
                .await?;
            let entry = Audited::new(AuditAction::TrustAdd)
                .registry(registry)
                .package(name)
                .detail(format!("id={} as={} {json}", row.id, creator.name));
            self.record(actor, entry).await;
            added.push(TrustConfig {
                row,
                rule: rule.clone(),
            });
        }
        Ok(added)
    }

    pub async fn remove_trust(
        &self,
        actor: &Actor,
        registry: &Registry,
        name: &PackageName,
        id: &str,
    ) -> ServiceResult<()> {
        let missing = || {
            ServiceError::NotFound(format!(
                "{name} has no trust configuration {id:?} in registry \"{}\"",
                registry.name
            ))
        };
        let id: i64 = id.parse().map_err(|_| missing())?;
        if !self.meta.remove_trusted_publisher(registry.id, name, id).await? {
            return Err(missing());
        }
        let entry = Audited::new(AuditAction::TrustRemove)
            .registry(registry)
            .package(name)
            .detail(format!("id={id}"));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Exchanges a CI job's OIDC token for a publish token of `name`, in `registry`, or
    /// (at the host root, `None`) in the one registry whose configuration matches.
    pub async fn exchange_oidc_token(
        &self,
        issuers: &Issuers,
        token_ttl_ms: i64,
        actor: &Actor,
        registry: Option<&Registry>,
        name: &PackageName,
        jwt: &str,
    ) -> Result<Exchanged, ExchangeError> {
        let verified = issuers.verify(jwt).await?;
        let rows = self.meta.trusted_publishers(registry.map(|r| r.id), name).await?;
        let mut mismatch = None;
        let mut matched = Vec::new();
        for row in rows.iter().cloned() {
            let config = TrustConfig::from_row(row)?;
            let right_issuer = match config.rule.kind {
                PublisherKind::Generic => config.rule.issuer.as_deref() == Some(verified.issuer.name.as_str()),
                kind => kind == verified.issuer.kind,
            };
            if !right_issuer {
                continue;
            }
            match config.rule.check(&verified.claims) {
                Ok(()) => matched.push(config),
                Err(why) => mismatch = mismatch.or(Some(why)),
            }
        }
        let where_ = match registry {
            Some(r) => format!("registry \"{}\"", r.name),
            None => "any registry".to_owned(),
        };
        let config = match matched.as_slice() {
            [] if rows.is_empty() => {
                return Err(ExchangeError::NoMatch(format!(
                    "{name} has no trust configuration in {where_}: a maintainer adds one, e.g. \
                     npm trust github {name} --repository OWNER/REPO --file release.yml --allow-publish"
                )));
            }
            [] => {
                let why = mismatch.map_or_else(
                    || format!("none is for issuer {}", verified.issuer.name),
                    |m| m.to_string(),
                );
                return Err(ExchangeError::NoMatch(format!(
                    "no trust configuration of {name} in {where_} matches this token: {why}"
                )));
            }
            [first, rest @ ..] => {
                if rest.iter().any(|c| c.row.registry_id != first.row.registry_id) {
                    let ids: Vec<_> = matched.iter().map(|c| c.row.registry_id).collect();
                    let names = self.registry_names(&ids).await?;
                    return Err(ExchangeError::Ambiguous(format!(
                        "this token matches trust configurations of {name} in several registries ({names}); \
                         publish to one of them: set the registry to its URL, …/r/NAME/"
                    )));
                }
                first.clone()
            }
        };
        let registry = match registry {
            Some(registry) => registry.clone(),
            None => self
                .meta
                .registries()
                .await?
                .into_iter()
                .find(|r| r.id == config.row.registry_id)
                .ok_or_else(|| ExchangeError::NoMatch(format!("{name} has no trust configuration in any registry")))?,
        };
        let creator = self.meta.user(&config.row.created_by).await?.ok_or_else(|| {
            ExchangeError::NoMatch(format!(
                "trust configuration {} of {name} was made by user \"{}\", who no longer exists; a maintainer \
                 makes it again",
                config.row.id, config.row.created_by
            ))
        })?;
        let published_by = PublishedBy::from_claims(config.rule.kind, &config.row.id.to_string(), &verified.claims);
        let by_json = serde_json::to_string(&published_by).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let expires_at = now_millis() + token_ttl_ms;
        let minted = token::issue(
            &self.meta,
            creator.id,
            TokenSpec {
                name: Some(format!("trusted publishing of {name}")),
                readonly: false,
                cidr_whitelist: Vec::new(),
                registries: vec![registry.name.to_string()],
                packages: vec![name.to_string()],
                expires_at: Some(expires_at),
                published_by: Some(by_json.clone()),
            },
        )
        .await
        .map_err(ServiceError::from)?;
        let entry = Audited::new(AuditAction::TokenExchange)
            .registry(&registry)
            .package(name)
            .detail(format!(
                "key={} config={} issuer={} expires={} {by_json}",
                minted.key,
                config.row.id,
                verified.issuer.name,
                iso_time(expires_at)
            ));
        self.record(actor, entry).await;
        Ok(Exchanged {
            secret: minted.secret,
            expires_at,
            registry,
            published_by,
        })
    }

    async fn registry_names(&self, ids: &[gatehouse_store::RegistryId]) -> ServiceResult<String> {
        let registries = self.meta.registries().await?;
        Ok(registries
            .iter()
            .filter(|r| ids.contains(&r.id))
            .map(|r| r.name.to_string())
            .collect::<Vec<_>>()
            .join(", "))
    }
}
