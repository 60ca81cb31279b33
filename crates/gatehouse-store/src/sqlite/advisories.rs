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
        let mut touched = BTreeSet::new();
        for row in rows {
            match existing.get(&row.id) {
                Some(&modified) if modified >= row.modified => {
                    summary.unchanged += 1;
                    continue;
                }
                Some(_) => {
                    // The packages it named before may be different ones.
                    for package in packages_of(&mut tx, &row.id).await? {
                        touched.insert(package);
                    }
                    sqlx::query("DELETE FROM advisory_packages WHERE advisory_id = $1")
                        .bind(&row.id)
                        .execute(&mut *tx)
                        .await?;
                    summary.updated += 1;
                }
                None => summary.added += 1,
            }
            sqlx::query(
                "INSERT INTO advisories (id, modified, record) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, record = excluded.record",
            )
            .bind(&row.id)
            .bind(row.modified)
            .bind(&row.record)
            .execute(&mut *tx)
            .await?;
            for package in &row.packages {
                sqlx::query(
                    "INSERT INTO advisory_packages (package, advisory_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(package)
                .bind(&row.id)
                .execute(&mut *tx)
                .await?;
                touched.insert(package.clone());
            }
        }
        if replace {
            let kept: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            for id in existing.keys().filter(|id| !kept.contains(id.as_str())) {
                for package in packages_of(&mut tx, id).await? {
                    touched.insert(package);
                }
                sqlx::query("DELETE FROM advisories WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                summary.removed += 1;
            }
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

async fn packages_of(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, id: &str) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT package FROM advisory_packages WHERE advisory_id = $1")
            .bind(id)
            .fetch_all(&mut **tx)
            .await?,
    )
}
