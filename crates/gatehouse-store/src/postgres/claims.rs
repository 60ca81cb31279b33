//! Names claimed for registries.

use super::*;

#[async_trait]
impl ClaimStore for PostgresStore {
    async fn add_claim(&self, registry: RegistryId, pattern: &str, claimed_by: Option<&str>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO claims (registry_id, pattern, claimed_by, claimed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (registry_id, pattern) DO NOTHING",
        )
        .bind(registry.0)
        .bind(pattern)
        .bind(claimed_by)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_claim(&self, registry: RegistryId, pattern: &str) -> StoreResult<bool> {
        let removed = sqlx::query("DELETE FROM claims WHERE registry_id = $1 AND pattern = $2")
            .bind(registry.0)
            .bind(pattern)
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn claims(&self, registry: RegistryId) -> StoreResult<Vec<Claim>> {
        sqlx::query("SELECT pattern, claimed_by, claimed_at FROM claims WHERE registry_id = $1 ORDER BY pattern")
            .bind(registry.0)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(Claim {
                    pattern: row.try_get("pattern")?,
                    claimed_by: row.try_get("claimed_by")?,
                    claimed_at: row.try_get("claimed_at")?,
                })
            })
            .collect()
    }
}
