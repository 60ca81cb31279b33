//! Policies, exceptions, reviews and decisions.

use super::*;

#[async_trait]
impl PolicyStore for PostgresStore {
    async fn policy(&self, registry: RegistryId) -> StoreResult<Option<PolicyRow>> {
        sqlx::query("SELECT document, updated_at, updated_by FROM policies WHERE registry_id = $1")
            .bind(registry.0)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| {
                Ok(PolicyRow {
                    document: r.try_get("document")?,
                    updated_at: r.try_get("updated_at")?,
                    updated_by: r.try_get("updated_by")?,
                })
            })
            .transpose()
    }

    async fn set_policy(&self, registry: RegistryId, document: Option<&str>, by: Option<&str>) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                match document {
                    Some(document) => {
                        sqlx::query(
                            "INSERT INTO policies (registry_id, document, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (registry_id) DO UPDATE SET document = excluded.document,
                                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                        )
                        .bind(registry.0)
                        .bind(document)
                        .bind(now_millis())
                        .bind(by)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM policies WHERE registry_id = $1")
                            .bind(registry.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                self.commit(tx, &[Logged::kind("policy", Some(registry))]).await
            })
        })
        .await
    }

    async fn exceptions(&self, registry: RegistryId, package: Option<&str>) -> StoreResult<Vec<ExceptionRow>> {
        sqlx::query(&format!(
            "SELECT {EXCEPTION_COLUMNS} FROM policy_exceptions
             WHERE registry_id = $1 AND ($2::text IS NULL OR package = $2) ORDER BY id"
        ))
        .bind(registry.0)
        .bind(package)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(exception_from_row)
        .collect()
    }

    async fn add_exception(&self, registry: RegistryId, new: &NewException) -> StoreResult<ExceptionRow> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                let row = sqlx::query(&format!(
                    "INSERT INTO policy_exceptions (registry_id, package, range, rule, expires_at, reason, created_by,
                                                    created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {EXCEPTION_COLUMNS}"
                ))
                .bind(registry.0)
                .bind(&new.package)
                .bind(&new.range)
                .bind(&new.rule)
                .bind(new.expires_at)
                .bind(&new.reason)
                .bind(&new.created_by)
                .bind(now_millis())
                .fetch_one(&mut *tx)
                .await?;
                let change = package_change(registry, &new.package);
                self.commit(tx, &[change]).await?;
                exception_from_row(&row)
            })
        })
        .await
    }

    async fn remove_exception(&self, registry: RegistryId, id: i64) -> StoreResult<Option<ExceptionRow>> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                let removed = sqlx::query(&format!(
                    "DELETE FROM policy_exceptions WHERE registry_id = $1 AND id = $2 RETURNING {EXCEPTION_COLUMNS}"
                ))
                .bind(registry.0)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(exception_from_row)
                .transpose()?;
                match &removed {
                    Some(removed) => self.commit(tx, &[package_change(registry, &removed.package)]).await?,
                    None => self.commit(tx, &[]).await?,
                }
                Ok(removed)
            })
        })
        .await
    }

    async fn reviews(&self, registry: RegistryId, package: &str) -> StoreResult<Vec<ReviewRow>> {
        sqlx::query(
            "SELECT package, version, verdict, reason, reviewed_by, reviewed_at FROM reviews
             WHERE registry_id = $1 AND package = $2 ORDER BY version",
        )
        .bind(registry.0)
        .bind(package)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ReviewRow {
                package: r.try_get("package")?,
                version: r.try_get("version")?,
                approved: r.try_get::<String, _>("verdict")? == "approved",
                reason: r.try_get("reason")?,
                reviewed_by: r.try_get("reviewed_by")?,
                reviewed_at: r.try_get("reviewed_at")?,
            })
        })
        .collect()
    }

    async fn set_review(&self, registry: RegistryId, review: &ReviewRow) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO reviews (registry_id, package, version, verdict, reason, reviewed_by, reviewed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (registry_id, package, version) DO UPDATE
                     SET verdict = excluded.verdict, reason = excluded.reason,
                         reviewed_by = excluded.reviewed_by, reviewed_at = excluded.reviewed_at",
                )
                .bind(registry.0)
                .bind(&review.package)
                .bind(&review.version)
                .bind(if review.approved { "approved" } else { "rejected" })
                .bind(&review.reason)
                .bind(&review.reviewed_by)
                .bind(review.reviewed_at)
                .execute(&mut *tx)
                .await?;
                self.commit(tx, &[package_change(registry, &review.package)]).await
            })
        })
        .await
    }

    async fn record_decisions(&self, registry: &Registry, rows: &[DecisionRow]) -> StoreResult<Vec<DecisionRow>> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                // Compare-then-write: two processes recording the same decisions
                // must not both find them new (and both audit them).
                advisory_lock(&mut tx, Lock::Decisions, &registry.id.0.to_string()).await?;
                let mut changed = Vec::new();
                for row in rows {
                    if record_decision(&mut tx, registry, row).await? {
                        changed.push(row.clone());
                    }
                }
                tx.commit().await?;
                Ok(changed)
            })
        })
        .await
    }

    async fn decisions(&self, registry: RegistryId, query: &DecisionQuery) -> StoreResult<Vec<DecisionRow>> {
        sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions d
             WHERE registry_id = $1 AND ($2::text IS NULL OR package = $2)
               AND CASE WHEN cardinality($3::text[]) = 0 THEN (verdict <> 'allow' OR would <> 'allow')
                        ELSE (verdict = ANY($3) OR would = ANY($3))
                   END
               AND (NOT $4 OR (verdict = 'quarantine' AND NOT EXISTS (
                        SELECT 1 FROM reviews r
                        WHERE r.registry_id = d.registry_id AND r.package = d.package AND r.version = d.version)))
             ORDER BY decided_at DESC, package, version LIMIT $5"
        ))
        .bind(registry.0)
        .bind(&query.package)
        .bind(&query.verdicts)
        .bind(query.unreviewed)
        .bind(i64::from(query.limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decision_from_row)
        .collect()
    }
}

fn package_change<'a>(registry: RegistryId, package: &'a str) -> Logged<'a> {
    Logged::Named {
        kind: "package",
        registry: Some(registry),
        name: Some(package),
    }
}

/// Stores one decision, as SQLite's `record_decisions` does; true when its outcome
/// changed (then it is audited too).
async fn record_decision(tx: &mut Tx<'_>, registry: &Registry, row: &DecisionRow) -> StoreResult<bool> {
    let before = sqlx::query(&format!(
        "SELECT {DECISION_COLUMNS} FROM decisions WHERE registry_id = $1 AND package = $2 AND version = $3"
    ))
    .bind(registry.id.0)
    .bind(&row.package)
    .bind(&row.version)
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(decision_from_row)
    .transpose()?;
    let same_outcome = before.as_ref().is_some_and(|b| {
        (&b.verdict, &b.would, &b.rule, &b.reason, &b.facts)
            == (&row.verdict, &row.would, &row.rule, &row.reason, &row.facts)
    });
    if same_outcome && before.as_ref().is_some_and(|b| b.basis == row.basis) {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO decisions (registry_id, package, version, verdict, would, rule, reason, findings, basis, facts,
                                decided_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (registry_id, package, version) DO UPDATE
         SET verdict = excluded.verdict, would = excluded.would, rule = excluded.rule, reason = excluded.reason,
             findings = excluded.findings, basis = excluded.basis, facts = excluded.facts,
             decided_at = excluded.decided_at",
    )
    .bind(registry.id.0)
    .bind(&row.package)
    .bind(&row.version)
    .bind(&row.verdict)
    .bind(&row.would)
    .bind(&row.rule)
    .bind(&row.reason)
    .bind(&row.findings)
    .bind(&row.basis)
    .bind(&row.facts)
    .bind(row.decided_at)
    .execute(&mut **tx)
    .await?;
    if same_outcome {
        return Ok(false);
    }
    let entry = AuditEntry {
        actor: Some("policy".into()),
        registry: Some(registry.name.as_str().to_owned()),
        package: Some(row.package.clone()),
        version: Some(row.version.clone()),
        detail: Some(decision_detail(row)),
        ..AuditEntry::new(AuditAction::PolicyDecision)
    };
    insert_audit(&mut **tx, row.decided_at, &entry).await?;
    Ok(true)
}
