//! The advisory database: imports in one transaction, lookups by package.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::*;

/// Advisories written per statement (as arrays, `unnest`ed).
const CHUNK: usize = 1000;

#[async_trait]
impl AdvisoryStore for PostgresStore {
    async fn import_advisories(
        &self,
        rows: &[AdvisoryRow],
        source: &str,
        replace: bool,
        skipped: u64,
    ) -> StoreResult<ImportSummary> {
        self.write(move || Box::pin(async move { self.import(rows, source, replace, skipped).await }))
            .await
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

impl PostgresStore {
    /// One attempt at `import_advisories` (the same counting as SQLite's).
    async fn import(
        &self,
        rows: &[AdvisoryRow],
        source: &str,
        replace: bool,
        skipped: u64,
    ) -> StoreResult<ImportSummary> {
        let mut tx = self.begin().await?;
        // Imports compare with what is stored, then write: one at a time.
        advisory_lock(&mut tx, Lock::Advisories, "").await?;
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
        // The packages an updated advisory named before may be others than now.
        for ids in updated_ids.chunks(CHUNK) {
            touched.extend(forget_packages(&mut tx, ids).await?);
        }
        for chunk in changed.chunks(CHUNK) {
            // An upsert may not touch one row twice in a statement: the last of an
            // id wins, as it does in SQLite's row-by-row upsert.
            let mut last: HashMap<&str, &AdvisoryRow> = HashMap::new();
            for row in chunk {
                last.insert(&row.id, row);
            }
            let ids: Vec<&str> = last.keys().copied().collect();
            let modified: Vec<Millis> = ids.iter().map(|id| last[id].modified).collect();
            let records: Vec<&str> = ids.iter().map(|id| last[id].record.as_str()).collect();
            sqlx::query(
                "INSERT INTO advisories (id, modified, record)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
                 ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, record = excluded.record",
            )
            .bind(&ids)
            .bind(&modified)
            .bind(&records)
            .execute(&mut *tx)
            .await?;
            let (packages, advisory_ids): (Vec<&str>, Vec<&str>) = chunk
                .iter()
                .flat_map(|r| r.packages.iter().map(|p| (p.as_str(), r.id.as_str())))
                .unzip();
            sqlx::query(
                "INSERT INTO advisory_packages (package, advisory_id)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&packages)
            .bind(&advisory_ids)
            .execute(&mut *tx)
            .await?;
            touched.extend(chunk.iter().flat_map(|r| r.packages.iter().cloned()));
        }
        if replace {
            let kept: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            let gone: Vec<&str> = existing
                .keys()
                .map(String::as_str)
                .filter(|id| !kept.contains(id))
                .collect();
            for ids in gone.chunks(CHUNK) {
                touched.extend(forget_packages(&mut tx, ids).await?);
                sqlx::query("DELETE FROM advisories WHERE id = ANY($1)")
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
        let changes: &[Logged] = if touched.is_empty() {
            &[]
        } else {
            &[Logged::Named {
                kind: "advisories",
                registry: None,
                name: None,
            }]
        };
        self.commit(tx, changes).await?;
        summary.packages = touched.into_iter().collect();
        Ok(summary)
    }
}

/// Drops what the advisories `ids` name; returns the packages.
async fn forget_packages(tx: &mut Tx<'_>, ids: &[&str]) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("DELETE FROM advisory_packages WHERE advisory_id = ANY($1) RETURNING package")
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?,
    )
}
