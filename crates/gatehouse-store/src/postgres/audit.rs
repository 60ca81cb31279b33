//! The audit log.

use super::*;

#[async_trait]
impl AuditLog for PostgresStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        insert_audit(&self.pool, now_millis(), entry).await
    }

    async fn audit_entries(&self, query: &AuditQuery) -> StoreResult<Vec<(Millis, AuditEntryOwned)>> {
        sqlx::query(
            "SELECT id, at, actor, action, registry, package, version, detail, client_addr
             FROM audit_log
             WHERE ($2::text IS NULL OR registry = $2) AND ($3::text IS NULL OR actor = $3)
               AND ($4::text IS NULL OR action = $4) AND ($5::bigint IS NULL OR at >= $5)
               AND ($6::bigint IS NULL OR at <= $6) AND ($7::bigint IS NULL OR id < $7)
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
