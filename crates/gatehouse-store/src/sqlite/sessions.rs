//! Web app sessions.

use super::*;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, new: &NewWebSession<'_>) -> StoreResult<()> {
        let now = now_millis();
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at, last_seen, client_addr, user_agent)
             VALUES ($1, $2, $3, $4, $3, $5, $6)",
        )
        .bind(new.id_hash)
        .bind(new.user.0)
        .bind(now)
        .bind(new.expires_at)
        .bind(new.client_addr)
        .bind(new.user_agent)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: Millis) -> StoreResult<Option<WebSession>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, s.created_at, s.expires_at, s.last_seen
             FROM web_sessions s JOIN users ON users.id = s.user_id
             WHERE s.id_hash = $1 AND s.expires_at > $2"
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let session = WebSession {
            user: user_from_row(&row)?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_seen: row.try_get("last_seen")?,
        };
        // A minute's precision is enough for "last seen", and spares the writer.
        if now - session.last_seen > 60_000 {
            sqlx::query("UPDATE web_sessions SET last_seen = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash)
                .execute(&self.writer)
                .await?;
        }
        Ok(Some(session))
    }

    async fn end_session(&self, id_hash: &str) -> StoreResult<bool> {
        let ended = sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(ended.rows_affected() > 0)
    }

    async fn end_sessions_of(&self, user: UserId) -> StoreResult<u64> {
        let ended = sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(user.0)
            .execute(&self.writer)
            .await?;
        Ok(ended.rows_affected())
    }

    async fn put_handoff(&self, key: &str, value: &str, expires_at: Millis) -> StoreResult<()> {
        let now = now_millis();
        // A bounded number, by the index: the work per put stays small however many
        // expired (npm web logins may be started by anyone).
        sqlx::query("DELETE FROM handoffs WHERE key IN (SELECT key FROM handoffs WHERE expires_at <= $1 LIMIT 100)")
            .bind(now)
            .execute(&self.writer)
            .await?;
        sqlx::query(
            "INSERT INTO handoffs (key, value, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(value)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn handoff(&self, key: &str, now: Millis) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM handoffs WHERE key = $1 AND expires_at > $2")
                .bind(key)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn take_handoff(&self, key: &str, now: Millis) -> StoreResult<Option<String>> {
        // One statement: the row goes to whoever deletes it.
        Ok(
            sqlx::query_scalar("DELETE FROM handoffs WHERE key = $1 AND expires_at > $2 RETURNING value")
                .bind(key)
                .bind(now)
                .fetch_optional(&self.writer)
                .await?,
        )
    }
}
