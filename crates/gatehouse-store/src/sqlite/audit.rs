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

    async fn audit_entries(&self, query: &AuditQuery) -> StoreResult<Vec<(Millis, AuditEntryOwned)>> {
        sqlx::query(
            "SELECT id, at, actor, action, registry, package, version, detail, client_addr
             FROM audit_log
             WHERE ($2 IS NULL OR registry = $2) AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR action = $4)
               AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at <= $6) AND ($7 IS NULL OR id < $7)
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(query.limit))
        .bind(&query.registry)
        .bind(&query.actor)
        .bind(query.action.map(AuditAction::as_str))
        .bind(query.since)
        .bind(query.until)
        .bind(query.before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}
