//! Upstream lists and the stored upstream packuments.

use super::*;

#[async_trait]
impl UpstreamStore for SqliteStore {
    async fn upstreams(&self, registry: RegistryId) -> StoreResult<Vec<UpstreamRow>> {
        sqlx::query(
            "SELECT id, spec, token, basic_auth, internal FROM upstreams WHERE registry_id = $1 ORDER BY position, id",
        )
        .bind(registry.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(upstream_from_row)
        .collect()
    }

    async fn add_upstream(&self, registry: RegistryId, upstream: &NewUpstream) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let next: i64 =
            sqlx::query_scalar("SELECT coalesce(max(position), 0) + 1 FROM upstreams WHERE registry_id = $1")
                .bind(registry.0)
                .fetch_one(&mut *tx)
                .await?;
        insert_upstream(&mut tx, registry, next, upstream).await?;
        registry_changed(&mut tx, registry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_upstream(&self, registry: RegistryId, spec: &str) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM upstreams WHERE registry_id = $1 AND spec = $2")
            .bind(registry.0)
            .bind(spec)
            .execute(&mut *tx)
            .await?;
        registry_changed(&mut tx, registry).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_upstreams(&self, registry: RegistryId, upstreams: &[NewUpstream]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let specs: Vec<&str> = upstreams.iter().map(|u| u.spec.as_str()).collect();
        let existing: Vec<(i64, String)> = sqlx::query_as("SELECT id, spec FROM upstreams WHERE registry_id = $1")
            .bind(registry.0)
            .fetch_all(&mut *tx)
            .await?;
        for (id, spec) in existing {
            if !specs.contains(&spec.as_str()) {
                sqlx::query("DELETE FROM upstreams WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (position, upstream) in (1_i64..).zip(upstreams) {
            let updated = sqlx::query(
                "UPDATE upstreams SET position = $1, token = $2, basic_auth = $3, internal = $4
                 WHERE registry_id = $5 AND spec = $6",
            )
            .bind(position)
            .bind(&upstream.token)
            .bind(&upstream.basic_auth)
            .bind(upstream.internal)
            .bind(registry.0)
            .bind(&upstream.spec)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                insert_upstream(&mut tx, registry, position, upstream).await?;
            }
        }
        registry_changed(&mut tx, registry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn stored_packument(&self, upstream: UpstreamId, name: &PackageName) -> StoreResult<Option<StoredPackument>> {
        sqlx::query(
            "SELECT body, etag, last_modified, fetched_at FROM upstream_packuments WHERE upstream_id = $1 AND name = $2",
        )
        .bind(upstream.0)
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(StoredPackument {
                body: r.try_get("body")?,
                etag: r.try_get("etag")?,
                last_modified: r.try_get("last_modified")?,
                fetched_at: r.try_get("fetched_at")?,
            })
        })
        .transpose()
    }

    async fn store_packument(
        &self,
        upstream: UpstreamId,
        name: &PackageName,
        doc: &StoredPackument,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO upstream_packuments (upstream_id, name, body, etag, last_modified, fetched_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (upstream_id, name) DO UPDATE SET body = excluded.body, etag = excluded.etag,
                 last_modified = excluded.last_modified, fetched_at = excluded.fetched_at",
        )
        .bind(upstream.0)
        .bind(name.as_str())
        .bind(&doc.body)
        .bind(&doc.etag)
        .bind(&doc.last_modified)
        .bind(doc.fetched_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn touch_packument(&self, upstream: UpstreamId, name: &PackageName, fetched_at: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE upstream_packuments SET fetched_at = $1 WHERE upstream_id = $2 AND name = $3")
            .bind(fetched_at)
            .bind(upstream.0)
            .bind(name.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn purge_packuments(&self, registry: RegistryId, name: &PackageName) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let purged = sqlx::query(
            "DELETE FROM upstream_packuments
             WHERE name = $2 AND upstream_id IN (SELECT id FROM upstreams WHERE registry_id = $1)",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO changes (kind, registry_id, name, at, writer)
             VALUES ('package', $1, $2, $3, (SELECT id FROM temp.writer_identity))",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(purged)
    }

    async fn delete_packument(&self, upstream: UpstreamId, name: &PackageName) -> StoreResult<()> {
        sqlx::query("DELETE FROM upstream_packuments WHERE upstream_id = $1 AND name = $2")
            .bind(upstream.0)
            .bind(name.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

async fn insert_upstream(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    registry: RegistryId,
    position: i64,
    upstream: &NewUpstream,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO upstreams (registry_id, position, spec, token, basic_auth, internal) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(registry.0)
    .bind(position)
    .bind(&upstream.spec)
    .bind(&upstream.token)
    .bind(&upstream.basic_auth)
    .bind(upstream.internal)
    .execute(&mut **tx)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => Conflict::UpstreamExists.into(),
        other => other,
    })?;
    Ok(())
}
