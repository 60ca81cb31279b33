//! Changes to packages that exist: deprecations, unpublishing, dist-tags, owners, the
//! internal flag.

use std::collections::BTreeMap;

use gatehouse_npm::dist_tag::DistTag;
use gatehouse_npm::name::PackageName;
use gatehouse_store::{AuditAction, Claim, PackageRecord, Registry};

use super::{Actor, Audited, ServiceError, ServiceResult, Services};

/// A package as a listing shows it.
#[derive(Debug, Clone)]
pub struct PackageSummary {
    pub name: PackageName,
    pub latest: Option<String>,
    /// Live versions.
    pub versions: usize,
    pub origin: PackageOrigin,
    pub internal: bool,
}

/// Where a package's versions came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageOrigin {
    /// Published here (at least one version).
    Published,
    /// Only pulled from an upstream or promoted from another registry.
    Pulled,
}

impl PackageOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageOrigin::Published => "published",
            PackageOrigin::Pulled => "pulled",
        }
    }
}

impl Services {
    /// The package as `registry` holds it.
    pub async fn package_record(&self, registry: &Registry, name: &PackageName) -> ServiceResult<PackageRecord> {
        self.meta
            .package(registry.id, name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("{} holds no package {name}", registry.name)))
    }

    /// The packages `registry` holds, by name.
    pub async fn packages(&self, registry: &Registry) -> ServiceResult<Vec<PackageSummary>> {
        let mut out = Vec::new();
        for name in self.meta.all_packages(registry.id).await? {
            let Some(record) = self.meta.package(registry.id, &name).await? else {
                continue;
            };
            // Published versions have a publisher; pulled and promoted ones don't.
            let origin = if record.live_versions().any(|v| v.publisher.is_some()) {
                PackageOrigin::Published
            } else {
                PackageOrigin::Pulled
            };
            out.push(PackageSummary {
                latest: record.dist_tags.get("latest").cloned(),
                versions: record.live_versions().count(),
                origin,
                internal: record.internal,
                name,
            });
        }
        Ok(out)
    }

    /// Sets (`Some`) or clears (`None`) the deprecation messages of existing versions;
    /// versions whose message is unchanged are left alone. Returns how many changed.
    pub async fn deprecate(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        messages: Vec<(String, Option<String>)>,
    ) -> ServiceResult<usize> {
        let changes: Vec<(String, Option<String>)> = messages
            .into_iter()
            .filter(|(version, message)| {
                let stored = record.versions.iter().find(|v| &v.version == version);
                stored.is_some_and(|s| s.unpublished_at.is_none() && &s.deprecated != message)
            })
            .collect();
        if changes.is_empty() {
            return Ok(0);
        }
        self.meta.set_deprecations(record.id, &changes).await?;
        self.caches.package_changed(registry.id, &record.name).await;
        for (version, message) in &changes {
            let action = if message.is_some() {
                AuditAction::VersionDeprecate
            } else {
                AuditAction::VersionUndeprecate
            };
            let mut entry = Audited::new(action)
                .registry(registry)
                .package(&record.name)
                .version(version);
            entry.detail = message.clone();
            self.record(actor, entry).await;
        }
        Ok(changes.len())
    }

    /// Unpublishes some versions (npm unpublish name@version): their numbers stay
    /// taken and their `time` entries stay. `dist_tags` are the tags the client
    /// computed for what remains. `expected_rev` refuses a stale client.
    pub async fn unpublish_versions(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        expected_rev: Option<i64>,
        versions: &[String],
        dist_tags: &BTreeMap<String, String>,
    ) -> ServiceResult<()> {
        self.meta
            .unpublish_versions(record.id, expected_rev, versions, dist_tags)
            .await?;
        self.caches.package_changed(registry.id, &record.name).await;
        for version in versions {
            let entry = Audited::new(AuditAction::VersionUnpublish)
                .registry(registry)
                .package(&record.name)
                .version(version);
            self.record(actor, entry).await;
        }
        Ok(())
    }

    /// An administrator's removal of one version: unpublished like `npm unpublish
    /// name@version` (the number stays taken); `latest` moves to the highest release left.
    pub async fn delete_version(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        version: &str,
    ) -> ServiceResult<()> {
        if !record.live_versions().any(|v| v.version == version) {
            return Err(ServiceError::NotFound(format!(
                "{}@{version} is not in registry {}",
                record.name, registry.name
            )));
        }
        let mut rest = record.clone();
        rest.versions.retain(|v| v.version != version);
        let mut tags = BTreeMap::new();
        if record.dist_tags.get("latest").is_some_and(|v| v == version)
            && let Some(latest) = highest_release(&rest)
        {
            tags.insert("latest".to_owned(), latest);
        }
        self.unpublish_versions(actor, registry, record, Some(record.rev), &[version.to_owned()], &tags)
            .await
    }

    /// Unpublishes every version of a package.
    pub async fn unpublish_package(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        expected_rev: Option<i64>,
    ) -> ServiceResult<()> {
        self.meta.unpublish_package(record.id, expected_rev).await?;
        self.caches.package_changed(registry.id, &record.name).await;
        let entry = Audited::new(AuditAction::PackageUnpublish)
            .registry(registry)
            .package(&record.name);
        self.record(actor, entry).await;
        Ok(())
    }

    /// Points `tag` at `version`, which the package must hold.
    pub async fn set_dist_tag(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        tag: &DistTag,
        version: &str,
    ) -> ServiceResult<()> {
        if !record.live_versions().any(|v| v.version == version) {
            return Err(ServiceError::NotFound(format!(
                "version not found: {}@{version}",
                record.name
            )));
        }
        self.meta.set_dist_tag(record.id, tag.as_str(), version).await?;
        self.caches.package_changed(registry.id, &record.name).await;
        let entry = Audited::new(AuditAction::DistTagSet)
            .registry(registry)
            .package(&record.name)
            .version(version)
            .detail(format!("tag={tag}"));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Removes `tag`; `latest` can only be moved.
    pub async fn remove_dist_tag(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        tag: &str,
    ) -> ServiceResult<()> {
        if tag == "latest" {
            return Err(ServiceError::Invalid(
                "the latest tag cannot be removed; move it instead".into(),
            ));
        }
        if !self.meta.remove_dist_tag(record.id, tag).await? {
            return Err(ServiceError::NotFound(format!(
                "dist-tag \"{tag}\" not found on {}",
                record.name
            )));
        }
        self.caches.package_changed(registry.id, &record.name).await;
        let entry = Audited::new(AuditAction::DistTagRemove)
            .registry(registry)
            .package(&record.name)
            .detail(format!("tag={tag}"));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Replaces the package's maintainers with the users named `owners`.
    pub async fn set_owners(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        expected_rev: Option<i64>,
        owners: &[String],
    ) -> ServiceResult<()> {
        if owners.is_empty() {
            return Err(ServiceError::Invalid("a package must keep at least one owner".into()));
        }
        let mut ids = Vec::with_capacity(owners.len());
        for owner in owners {
            let user = self
                .meta
                .user(owner)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no user named \"{owner}\"")))?;
            ids.push(user.id);
        }
        self.meta.set_maintainers(record.id, expected_rev, &ids).await?;
        self.caches.package_changed(registry.id, &record.name).await;
        let entry = Audited::new(AuditAction::PackageOwners)
            .registry(registry)
            .package(&record.name)
            .detail(owners.join(","));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Flags a package internal (never resolved from untrusted upstreams), or not.
    pub async fn set_internal(
        &self,
        actor: &Actor,
        registry: &Registry,
        name: &PackageName,
        internal: bool,
    ) -> ServiceResult<()> {
        let record = self
            .meta
            .package(registry.id, name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("{} holds no package {name}", registry.name)))?;
        self.meta.set_internal(record.id, internal).await?;
        // An internal package takes no tags from untrusted upstreams: one that only
        // has pulled versions (pulls bring no tags of their own) needs a `latest`.
        if internal
            && !record.dist_tags.contains_key("latest")
            && let Some(latest) = highest_release(&record)
        {
            self.meta.set_dist_tag(record.id, "latest", &latest).await?;
        }
        self.caches.package_changed(registry.id, name).await;
        let entry = Audited::new(AuditAction::PackageInternal)
            .registry(registry)
            .package(name)
            .detail(format!("internal={internal}"));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Drops the registry's stored upstream copies of `name`: the next request asks the
    /// upstreams again. Returns how many copies there were.
    pub async fn purge_upstream_copies(
        &self,
        actor: &Actor,
        registry: &Registry,
        name: &PackageName,
    ) -> ServiceResult<u64> {
        let purged = self.meta.purge_packuments(registry.id, name).await?;
        self.caches.upstream_copies_purged(registry.id, name).await;
        let entry = Audited::new(AuditAction::PackagePurge)
            .registry(registry)
            .package(name)
            .detail(format!("copies={purged}"));
        self.record(actor, entry).await;
        Ok(purged)
    }

    /// Claims a name, or a whole scope (`@acme/*`), for a registry: it may then be
    /// published there even while an upstream serves it. Also for names the registry
    /// doesn't hold yet.
    pub async fn claim(&self, actor: &Actor, registry: &Registry, pattern: &str) -> ServiceResult<()> {
        check_claim_pattern(pattern)?;
        self.meta.add_claim(registry.id, pattern, actor.name.as_deref()).await?;
        let entry = Audited::new(AuditAction::PackageClaim)
            .registry(registry)
            .detail(pattern.to_owned());
        self.record(actor, entry).await;
        Ok(())
    }

    pub async fn unclaim(&self, actor: &Actor, registry: &Registry, pattern: &str) -> ServiceResult<()> {
        if !self.meta.remove_claim(registry.id, pattern).await? {
            return Err(ServiceError::NotFound(format!(
                "{pattern} is not claimed for registry {}",
                registry.name
            )));
        }
        let entry = Audited::new(AuditAction::PackageUnclaim)
            .registry(registry)
            .detail(pattern.to_owned());
        self.record(actor, entry).await;
        Ok(())
    }

    pub async fn claims(&self, registry: &Registry) -> ServiceResult<Vec<Claim>> {
        Ok(self.meta.claims(registry.id).await?)
    }

    /// Whether `name` is claimed for `registry`, by itself or with its scope.
    pub async fn is_claimed(&self, registry: &Registry, name: &PackageName) -> ServiceResult<bool> {
        let claims = self.meta.claims(registry.id).await?;
        Ok(claims.iter().any(|c| claim_covers(&c.pattern, name)))
    }
}

/// The highest live version that is not a prerelease, else the highest live one.
fn highest_release(record: &PackageRecord) -> Option<String> {
    let mut versions: Vec<semver::Version> = record
        .live_versions()
        .filter_map(|v| semver::Version::parse(&v.version).ok())
        .collect();
    versions.sort();
    versions
        .iter()
        .rev()
        .find(|v| v.pre.is_empty())
        .or(versions.last())
        .map(ToString::to_string)
}

/// A claim names one package (`left-pad`, `@acme/ui`) or one whole scope (`@acme/*`).
fn check_claim_pattern(pattern: &str) -> ServiceResult<()> {
    let invalid = |why: &str| {
        ServiceError::Invalid(format!(
            "cannot claim {pattern:?}: claim a package name or a whole scope (@scope/*): {why}"
        ))
    };
    if pattern.trim_end_matches("/*").contains('*') {
        return Err(invalid("* stands only for a whole scope"));
    }
    let as_name = match pattern.strip_suffix("/*") {
        Some(scope) if scope.starts_with('@') => format!("{scope}/x"),
        _ => pattern.to_owned(),
    };
    PackageName::parse(&as_name)
        .map(|_| ())
        .map_err(|e| invalid(&e.to_string()))
}

fn claim_covers(pattern: &str, name: &PackageName) -> bool {
    match pattern.strip_suffix("/*") {
        Some(scope) => name.scope().is_some_and(|s| s == scope.trim_start_matches('@')),
        None => pattern == name.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_cover_a_name_or_a_whole_scope() {
        let name = |raw: &str| PackageName::parse(raw).expect("name");
        assert!(claim_covers("left-pad", &name("left-pad")));
        assert!(!claim_covers("left-pad", &name("left-pad2")));
        assert!(claim_covers("@acme/*", &name("@acme/ui")));
        assert!(!claim_covers("@acme/*", &name("@acmex/ui")));
        assert!(!claim_covers("@acme/*", &name("acme")));
        for good in ["left-pad", "@acme/ui", "@acme/*"] {
            assert!(check_claim_pattern(good).is_ok(), "{good}");
        }
        for bad in ["*", "left-*", "@acme", "../x", "@/*"] {
            assert!(check_claim_pattern(bad).is_err(), "{bad}");
        }
    }
}
