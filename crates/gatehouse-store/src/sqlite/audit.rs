//! The audit log.

use super::*;

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, registry, package, version, detail, client_addr)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now_millis())
        .bind(&entry.actor)
        .bind(entry.action.as_str())
        .bind(&entry.registry)
        .bind(&entry.package)
        .bind(&entry.version)
        .bind(&entry.detail)
        .bind(&entry.client_addr)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<(Millis, AuditEntryOwned)>> {
        sqlx::query(
            "SELECT at, actor, action, registry, package, version, detail, client_addr
             FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("at")?,
                AuditEntryOwned {
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    registry: r.try_get("registry")?,
                    package: r.try_get("package")?,
                    version: r.try_get("version")?,
                    detail: r.try_get("detail")?,
                    client_addr: r.try_get("client_addr")?,
                },
            ))
        })
        .collect()
    }
}
