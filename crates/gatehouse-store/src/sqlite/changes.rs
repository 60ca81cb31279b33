//! The change log other processes follow.

use super::*;

#[async_trait]
impl ChangeLog for SqliteStore {
    async fn last_change(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>> {
        sqlx::query("SELECT seq, kind, name, writer IS $2 AS own FROM changes WHERE seq > $1 ORDER BY seq LIMIT 10000")
            .bind(seq)
            .bind(&self.writer_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                let name: Option<String> = r.try_get("name")?;
                Ok(Change {
                    seq: r.try_get("seq")?,
                    kind: change_kind(&kind, name)?,
                    own: r.try_get("own")?,
                })
            })
            .collect()
    }

    async fn prune_changes(&self, before: Millis) -> StoreResult<()> {
        sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
