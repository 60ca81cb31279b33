//! Trust configurations for trusted publishing.

use super::*;

#[async_trait]
impl TrustStore for SqliteStore {
    async fn add_trusted_publisher(
        &self,
        registry: RegistryId,
        name: &PackageName,
        kind: &str,
        rule: &str,
        created_by: &str,
    ) -> StoreResult<TrustRow> {
        let row = sqlx::query(
            "INSERT INTO trusted_publishers (registry_id, name, kind, rule, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, registry_id, name, kind, rule, created_by, created_at",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .bind(kind)
        .bind(rule)
        .bind(created_by)
        .bind(now_millis())
        .fetch_one(&self.writer)
        .await?;
        trust_from_row(&row)
    }

    async fn trusted_publishers(&self, registry: Option<RegistryId>, name: &PackageName) -> StoreResult<Vec<TrustRow>> {
        sqlx::query(
            "SELECT id, registry_id, name, kind, rule, created_by, created_at FROM trusted_publishers
             WHERE name = $1 AND ($2 IS NULL OR registry_id = $2) ORDER BY id",
        )
        .bind(name.as_str())
        .bind(registry.map(|r| r.0))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(trust_from_row)
        .collect()
    }

    async fn remove_trusted_publisher(&self, registry: RegistryId, name: &PackageName, id: i64) -> StoreResult<bool> {
        let removed = sqlx::query("DELETE FROM trusted_publishers WHERE registry_id = $1 AND name = $2 AND id = $3")
            .bind(registry.0)
            .bind(name.as_str())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(removed.rows_affected() > 0)
    }
}
