//! The advisory database: imports in one transaction, lookups by package.

use std::collections::{BTreeSet, HashMap};

use super::*;

#[async_trait]
impl AdvisoryStore for SqliteStore {
    async fn import_advisories(
        &self,
        rows: &[AdvisoryRow],
        source: &str,
        replace: bool,
        skipped: u64,
    ) -> StoreResult<ImportSummary> {
        let mut tx = self.write_tx().await?;
        let existing: HashMap<String, Millis> = sqlx::query("SELECT id, modified FROM advisories")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("modified")?)))
            .collect::<StoreResult<_>>()?;
        let mut summary = ImportSummary {
            skipped,
            ..ImportSummary::default()
        };
        // Written in chunks of set-based statements over JSON arrays (`json_each`): an
        // import of 20,000 advisories is a few hundred statements, not 100,000.
        let mut touched = BTreeSet::new();
        let mut changed: Vec<&AdvisoryRow> = Vec::new();
        let mut updated_ids: Vec<&str> = Vec::new();
        for row in rows {
            match existing.get(&row.id) {
                Some(&modified) if modified >= row.modified => summary.unchanged += 1,
                Some(_) => {
                    summary.updated += 1;
                    updated_ids.push(&row.id);
                    changed.push(row);
                }
                None => {
                    summary.added += 1;
                    changed.push(row);
                }
            }
        }
        let json =
            |value: serde_json::Value| serde_json::to_string(&value).map_err(|e| StoreError::Corrupt(e.to_string()));
        // The packages an updated advisory named before may be others than now.
        for ids in updated_ids.chunks(CHUNK) {
            for package in forget_packages(&mut tx, &json(serde_json::json!(ids))?).await? {
                touched.insert(package);
            }
        }
        for chunk in changed.chunks(CHUNK) {
            let advisories: Vec<serde_json::Value> = chunk
                .iter()
                .map(|r| serde_json::json!({"id": r.id, "modified": r.modified, "record": r.record}))
                .collect();
            sqlx::query(
                "INSERT INTO advisories (id, modified, record)
                 SELECT json_extract(value, '$.id'), json_extract(value, '$.modified'), json_extract(value, '$.record')
                 FROM json_each($1) WHERE true
                 ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, record = excluded.record",
            )
            .bind(json(serde_json::Value::Array(advisories))?)
            .execute(&mut *tx)
            .await?;
            let named: Vec<serde_json::Value> = chunk
                .iter()
                .flat_map(|r| r.packages.iter().map(|p| serde_json::json!({"package": p, "id": r.id})))
                .collect();
            sqlx::query(
                "INSERT INTO advisory_packages (package, advisory_id)
                 SELECT json_extract(value, '$.package'), json_extract(value, '$.id') FROM json_each($1) WHERE true
                 ON CONFLICT DO NOTHING",
            )
            .bind(json(serde_json::Value::Array(named))?)
            .execute(&mut *tx)
            .await?;
            touched.extend(chunk.iter().flat_map(|r| r.packages.iter().cloned()));
        }
        if replace {
            let kept: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            let gone: Vec<&str> = existing
                .keys()
                .map(String::as_str)
                .filter(|id| !kept.contains(id))
                .collect();
            for ids in gone.chunks(CHUNK) {
                let ids = json(serde_json::json!(ids))?;
                for package in forget_packages(&mut tx, &ids).await? {
                    touched.insert(package);
                }
                sqlx::query("DELETE FROM advisories WHERE id IN (SELECT value FROM json_each($1))")
                    .bind(ids)
                    .execute(&mut *tx)
                    .await?;
            }
            summary.removed = gone.len() as u64;
        }
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO advisory_imports (imported_at, source, replaced, added, updated, unchanged, removed, skipped)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now_millis())
        .bind(source)
        .bind(replace)
        .bind(count(summary.added))
        .bind(count(summary.updated))
        .bind(count(summary.unchanged))
        .bind(count(summary.removed))
        .bind(count(summary.skipped))
        .execute(&mut *tx)
        .await?;
        if !touched.is_empty() {
            log_change(&mut *tx, "advisories", None).await?;
        }
        tx.commit().await?;
        summary.packages = touched.into_iter().collect();
        Ok(summary)
    }

    async fn advisories_for(&self, package: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT a.record FROM advisory_packages p JOIN advisories a ON a.id = p.advisory_id
             WHERE p.package = $1 ORDER BY a.id",
        )
        .bind(package)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn advisory_stats(&self) -> StoreResult<AdvisoryStats> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM advisories) AS advisories,
                    (SELECT count(DISTINCT package) FROM advisory_packages) AS packages,
                    (SELECT max(modified) FROM advisories) AS newest",
        )
        .fetch_one(&self.pool)
        .await?;
        let last_import = sqlx::query(
            "SELECT imported_at, source, replaced, added, updated, unchanged, removed, skipped
             FROM advisory_imports ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| -> StoreResult<AdvisoryImport> {
            let count = |column: &str| -> StoreResult<u64> { Ok(r.try_get::<i64, _>(column)?.max(0).unsigned_abs()) };
            Ok(AdvisoryImport {
                imported_at: r.try_get("imported_at")?,
                source: r.try_get("source")?,
                replaced: r.try_get("replaced")?,
                summary: ImportSummary {
                    added: count("added")?,
                    updated: count("updated")?,
                    unchanged: count("unchanged")?,
                    removed: count("removed")?,
                    skipped: count("skipped")?,
                    packages: Vec::new(),
                },
            })
        })
        .transpose()?;
        Ok(AdvisoryStats {
            advisories: row.try_get::<i64, _>("advisories")?.max(0).unsigned_abs(),
            packages: row.try_get::<i64, _>("packages")?.max(0).unsigned_abs(),
            newest_modified: row.try_get("newest")?,
            last_import,
        })
    }
}

/// Advisories written per statement.
const CHUNK: usize = 1000;

/// Drops what the advisories `ids` (a JSON array) name; returns the packages.
async fn forget_packages(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, ids: &str) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "DELETE FROM advisory_packages WHERE advisory_id IN (SELECT value FROM json_each($1)) RETURNING package",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?)
}
