//! Users.

use super::*;

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        name: &str,
        email: Option<&str>,
        password_hash: &str,
        is_admin: bool,
    ) -> StoreResult<User> {
        let row = sqlx::query(&format!(
            "INSERT INTO users (name, email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING {}",
            USER_COLUMNS.replace("users.", "")
        ))
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(is_admin)
        .bind(now_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => Conflict::UserExists.into(),
            other => other,
        })?;
        user_from_row(&row)
    }

    async fn user(&self, name: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn set_password_hash(&self, user: UserId, password_hash: &str) -> StoreResult<()> {
        let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user.0)
            .execute(&self.writer)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_user_disabled(&self, user: UserId, disabled: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(now_millis))
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "credentials", None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_user_admin(&self, user: UserId, admin: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET is_admin = $1 WHERE id = $2")
            .bind(admin)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "credentials", None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_user(&self, user: UserId) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "credentials", None).await?;
        log_change(&mut *tx, "registry", None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_login_failures(&self, name: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(format!("user:{name}"))
            .execute(&self.writer)
            .await?;
        log_named_change(&self.writer, "unlock", None, Some(name)).await
    }

    async fn count_login_failure(&self, key: &str, now: Millis, window_ends: Millis) -> StoreResult<u32> {
        // Windows that ended are removed a few at a time (guessing at many names must
        // not grow the table without bound).
        sqlx::query(
            "DELETE FROM login_failures WHERE key IN (SELECT key FROM login_failures WHERE expires_at <= $1 LIMIT 100)",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        // One statement: concurrent failures each count.
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO login_failures (key, count, expires_at) VALUES ($1, 1, $3)
             ON CONFLICT (key) DO UPDATE SET
                 count = CASE WHEN login_failures.expires_at <= $2 THEN 1 ELSE login_failures.count + 1 END,
                 expires_at = CASE WHEN login_failures.expires_at <= $2 THEN $3 ELSE login_failures.expires_at END
             RETURNING count",
        )
        .bind(key)
        .bind(now)
        .bind(window_ends)
        .fetch_one(&self.writer)
        .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn login_failures(&self, key: &str, now: Millis) -> StoreResult<u32> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT count FROM login_failures WHERE key = $1 AND expires_at > $2")
                .bind(key)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
        Ok(count.map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)))
    }
}
