//! Policies, exceptions, reviews and decisions.

use super::*;

#[async_trait]
impl PolicyStore for SqliteStore {
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
        let mut tx = self.write_tx().await?;
        match document {
            Some(document) => {
                sqlx::query(
                    "INSERT INTO policies (registry_id, document, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (registry_id) DO UPDATE
                     SET document = excluded.document, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
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
        log_change(&mut *tx, "policy", Some(registry)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn exceptions(&self, registry: RegistryId, package: Option<&str>) -> StoreResult<Vec<ExceptionRow>> {
        // Two statements rather than `$2 IS NULL OR …`, which keeps SQLite off the index.
        let filter = if package.is_some() {
            "AND package = $2"
        } else {
            "AND $2 IS NULL"
        };
        sqlx::query(&format!(
            "SELECT {EXCEPTION_COLUMNS} FROM policy_exceptions WHERE registry_id = $1 {filter} ORDER BY id"
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
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO policy_exceptions (registry_id, package, range, rule, expires_at, reason, created_by, created_at)
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
        log_named_change(&mut *tx, "package", Some(registry), Some(&new.package)).await?;
        tx.commit().await?;
        exception_from_row(&row)
    }

    async fn remove_exception(&self, registry: RegistryId, id: i64) -> StoreResult<Option<ExceptionRow>> {
        let mut tx = self.write_tx().await?;
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
        if let Some(removed) = &removed {
            log_named_change(&mut *tx, "package", Some(registry), Some(&removed.package)).await?;
        }
        tx.commit().await?;
        Ok(removed)
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
        let mut tx = self.write_tx().await?;
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
        log_named_change(&mut *tx, "package", Some(registry), Some(&review.package)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_decisions(&self, registry: &Registry, rows: &[DecisionRow]) -> StoreResult<Vec<DecisionRow>> {
        let mut tx = self.write_tx().await?;
        let mut changed = Vec::new();
        for row in rows {
            let before = sqlx::query(&format!(
                "SELECT {DECISION_COLUMNS} FROM decisions WHERE registry_id = $1 AND package = $2 AND version = $3"
            ))
            .bind(registry.id.0)
            .bind(&row.package)
            .bind(&row.version)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(decision_from_row)
            .transpose()?;
            let same_outcome = before.as_ref().is_some_and(|b| {
                (&b.verdict, &b.would, &b.rule, &b.reason, &b.facts)
                    == (&row.verdict, &row.would, &row.rule, &row.reason, &row.facts)
            });
            if same_outcome && before.as_ref().is_some_and(|b| b.basis == row.basis) {
                continue;
            }
            sqlx::query(
                "INSERT INTO decisions (registry_id, package, version, verdict, would, rule, reason, findings, basis, facts, decided_at)
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
            .execute(&mut *tx)
            .await?;
            if same_outcome {
                continue;
            }
            let detail = decision_detail(row);
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, registry, package, version, detail, client_addr)
                 VALUES ($1, 'policy', $2, $3, $4, $5, $6, NULL)",
            )
            .bind(row.decided_at)
            .bind(AuditAction::PolicyDecision.as_str())
            .bind(registry.name.as_str())
            .bind(&row.package)
            .bind(&row.version)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
            changed.push(row.clone());
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn decisions(&self, registry: RegistryId, query: &DecisionQuery) -> StoreResult<Vec<DecisionRow>> {
        let verdicts = serde_json::to_string(&query.verdicts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let filter = if query.package.is_some() {
            "AND package = $2"
        } else {
            "AND $2 IS NULL"
        };
        sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions d
             WHERE registry_id = $1 {filter}
               AND CASE WHEN json_array_length($3) = 0 THEN (verdict != 'allow' OR would != 'allow')
                        ELSE (verdict IN (SELECT value FROM json_each($3)) OR would IN (SELECT value FROM json_each($3)))
                   END
               AND (NOT $4 OR (verdict = 'quarantine' AND NOT EXISTS (
                        SELECT 1 FROM reviews r
                        WHERE r.registry_id = d.registry_id AND r.package = d.package AND r.version = d.version)))
             ORDER BY decided_at DESC, package, version LIMIT $5"
        ))
        .bind(registry.0)
        .bind(&query.package)
        .bind(verdicts)
        .bind(query.unreviewed)
        .bind(i64::from(query.limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decision_from_row)
        .collect()
    }
}
