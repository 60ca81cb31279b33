//! The firewall's writes: policies, the advisory database, exceptions and reviews.
//! Each is checked before anything is stored (a bad policy or exception changes
//! nothing), and every one makes the decisions it affects be made again.

use gatehouse_npm::name::PackageName;
use gatehouse_policy::advisory::Advisory;
use gatehouse_policy::document::{Age, Policy, Rule};
use gatehouse_policy::range::VersionRange;
use gatehouse_store::{
    AdvisoryRow, AuditAction, DecisionQuery, DecisionRow, ExceptionRow, ImportSummary, Millis, NewException, Registry,
    ReviewRow, now_millis,
};

use super::{Actor, Audited, ServiceError, ServiceResult, Services};

/// `NAME@RANGE` or `NAME@VERSION` as the commands take it (`@scope/name@^1`).
pub fn split_spec(spec: &str) -> ServiceResult<(PackageName, &str)> {
    let at = spec
        .char_indices()
        .skip(1)
        .filter(|(_, c)| *c == '@')
        .map(|(i, _)| i)
        .last()
        .ok_or_else(|| ServiceError::Invalid(format!("expected NAME@VERSION (or NAME@RANGE), got {spec:?}")))?;
    let name = PackageName::parse(&spec[..at]).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok((name, &spec[at + 1..]))
}

/// An exception's expiry: a duration from now (`7d`) or an RFC 3339 time.
pub fn parse_expiry(text: &str, now: Millis) -> ServiceResult<Millis> {
    let at = match Age::parse(text) {
        Ok(age) => now.saturating_add(age.millis),
        Err(_) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                ServiceError::Invalid(format!(
                    "invalid expiry {text:?}: expected a duration (\"7d\", \"12h\") or an RFC 3339 time (\"2027-01-31T00:00:00Z\")"
                ))
            })?
            .timestamp_millis(),
    };
    if at <= now {
        return Err(ServiceError::Invalid(format!(
            "the expiry {text:?} is in the past; an exception must expire in the future"
        )));
    }
    Ok(at)
}

/// A new exception, as asked for.
pub struct ExceptionRequest<'a> {
    /// `NAME@RANGE`.
    pub spec: &'a str,
    pub rule: &'a str,
    pub expires: &'a str,
    pub reason: &'a str,
}

impl Services {
    /// Checks and stores a registry's policy; `None` goes back to the default one.
    pub async fn set_policy(&self, actor: &Actor, registry: &Registry, document: Option<&str>) -> ServiceResult<()> {
        if let Some(document) = document {
            Policy::parse(document).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        self.meta
            .set_policy(registry.id, document, actor.name.as_deref())
            .await?;
        self.caches.policy_changed().await;
        let detail = match document {
            Some(_) => "set",
            None => "reset to the default policy",
        };
        self.record(
            actor,
            Audited::new(AuditAction::PolicySet).registry(registry).detail(detail),
        )
        .await;
        Ok(())
    }

    /// The registry's policy document (the default one if it has none of its own).
    pub async fn policy_document(&self, registry: &Registry) -> ServiceResult<(String, bool)> {
        Ok(match self.meta.policy(registry.id).await? {
            Some(row) => (row.document, false),
            None => (gatehouse_policy::document::DEFAULT_POLICY.to_owned(), true),
        })
    }

    /// Stores what an advisory import read, in one transaction.
    pub async fn import_advisories(
        &self,
        actor: &Actor,
        advisories: &[Advisory],
        skipped: u64,
        source: &str,
        replace: bool,
    ) -> ServiceResult<ImportSummary> {
        let rows = advisories
            .iter()
            .map(|a| {
                Ok(AdvisoryRow {
                    id: a.id.clone(),
                    modified: a.modified,
                    packages: a.packages().map(str::to_owned).collect(),
                    record: serde_json::to_string(a).map_err(|e| ServiceError::Invalid(e.to_string()))?,
                })
            })
            .collect::<ServiceResult<Vec<_>>>()?;
        let summary = self.meta.import_advisories(&rows, source, replace, skipped).await?;
        self.caches.advisories_changed(&summary.packages).await;
        let detail = format!(
            "{source}: {} added, {} updated, {} unchanged, {} removed, {} skipped",
            summary.added, summary.updated, summary.unchanged, summary.removed, summary.skipped
        );
        self.record(actor, Audited::new(AuditAction::AdvisoriesImport).detail(detail))
            .await;
        Ok(summary)
    }

    pub async fn add_exception(
        &self,
        actor: &Actor,
        registry: &Registry,
        request: &ExceptionRequest<'_>,
    ) -> ServiceResult<ExceptionRow> {
        let (name, range) = split_spec(request.spec)?;
        let range = VersionRange::parse(range).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let rule: Rule = request
            .rule
            .parse()
            .map_err(|e: gatehouse_policy::document::UnknownRule| ServiceError::Invalid(e.to_string()))?;
        if !rule.can_be_excepted() {
            return Err(ServiceError::Invalid(format!(
                "the {rule} rule takes no exceptions{}",
                if rule == Rule::Malware {
                    ": malware is always blocked"
                } else {
                    ""
                }
            )));
        }
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(ServiceError::Invalid("an exception needs a reason (--reason)".into()));
        }
        let expires_at = parse_expiry(request.expires, now_millis())?;
        let row = self
            .meta
            .add_exception(
                registry.id,
                &NewException {
                    package: name.to_string(),
                    range: range.to_string(),
                    rule: rule.as_str().to_owned(),
                    expires_at,
                    reason: reason.to_owned(),
                    created_by: actor.name.clone(),
                },
            )
            .await?;
        self.caches.package_changed(registry.id, &name).await;
        let detail = format!(
            "#{} {name}@{range} --rule {rule} until {}: {reason}",
            row.id,
            gatehouse_npm::packument::iso_time(expires_at)
        );
        self.record(
            actor,
            Audited::new(AuditAction::PolicyExceptionAdd)
                .registry(registry)
                .package(&name)
                .detail(detail),
        )
        .await;
        Ok(row)
    }

    pub async fn exceptions(&self, registry: &Registry) -> ServiceResult<Vec<ExceptionRow>> {
        Ok(self.meta.exceptions(registry.id, None).await?)
    }

    pub async fn remove_exception(&self, actor: &Actor, registry: &Registry, id: i64) -> ServiceResult<ExceptionRow> {
        let removed = self
            .meta
            .remove_exception(registry.id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("registry {} has no exception #{id}", registry.name)))?;
        if let Ok(name) = PackageName::parse(&removed.package) {
            self.caches.package_changed(registry.id, &name).await;
            self.record(
                actor,
                Audited::new(AuditAction::PolicyExceptionRemove)
                    .registry(registry)
                    .package(&name)
                    .detail(format!(
                        "#{id} {}@{} --rule {}",
                        removed.package, removed.range, removed.rule
                    )),
            )
            .await;
        }
        Ok(removed)
    }

    /// Approves (served from then on) or rejects (blocked) a quarantined version.
    pub async fn review(
        &self,
        actor: &Actor,
        registry: &Registry,
        spec: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let (name, version) = split_spec(spec)?;
        let decided = self
            .meta
            .decisions(
                registry.id,
                &DecisionQuery {
                    package: Some(name.to_string()),
                    verdicts: Vec::new(),
                    unreviewed: false,
                    limit: 100_000,
                },
            )
            .await?;
        let reviewed = self.meta.reviews(registry.id, name.as_str()).await?;
        let quarantined = decided
            .iter()
            .any(|d| d.version == version && d.verdict == "quarantine");
        let was_reviewed = reviewed.iter().any(|r| r.version == version);
        if !quarantined && !was_reviewed {
            return Err(ServiceError::NotFound(format!(
                "{name}@{version} is not in the quarantine queue of registry {} (see: gatehouse quarantine list {})",
                registry.name, registry.name
            )));
        }
        self.meta
            .set_review(
                registry.id,
                &ReviewRow {
                    package: name.to_string(),
                    version: version.to_owned(),
                    approved: approve,
                    reason: reason.map(str::to_owned),
                    reviewed_by: actor.name.clone(),
                    reviewed_at: now_millis(),
                },
            )
            .await?;
        self.caches.package_changed(registry.id, &name).await;
        let action = if approve {
            AuditAction::QuarantineApprove
        } else {
            AuditAction::QuarantineReject
        };
        let mut entry = Audited::new(action).registry(registry).package(&name).version(version);
        if let Some(reason) = reason {
            entry = entry.detail(reason.to_owned());
        }
        self.record(actor, entry).await;
        Ok(())
    }

    pub async fn advisory_stats(&self) -> ServiceResult<gatehouse_store::AdvisoryStats> {
        Ok(self.meta.advisory_stats().await?)
    }

    /// Stored decisions: the quarantine queue (`unreviewed`), or all that are not `allow`.
    pub async fn decisions(&self, registry: &Registry, query: &DecisionQuery) -> ServiceResult<Vec<DecisionRow>> {
        Ok(self.meta.decisions(registry.id, query).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_at_the_last_at_sign() {
        let (name, range) = split_spec("@acme/ui@^1.2").expect("valid");
        assert_eq!((name.as_str(), range), ("@acme/ui", "^1.2"));
        let (name, version) = split_spec("lodash@4.17.20").expect("valid");
        assert_eq!((name.as_str(), version), ("lodash", "4.17.20"));
        assert!(split_spec("lodash").is_err());
        assert!(split_spec("@acme/ui").is_err());
    }

    #[test]
    fn expiries_are_durations_or_times_and_never_past() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_expiry("7d", now).expect("valid"), now + 7 * 86_400_000);
        assert!(parse_expiry("2030-01-01T00:00:00Z", now).is_ok());
        let e = parse_expiry("2020-01-01T00:00:00Z", now).expect_err("past");
        assert!(e.to_string().contains("in the past"), "{e}");
        assert!(parse_expiry("soon", now).is_err());
    }
}
